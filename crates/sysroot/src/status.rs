//! Reading a sysroot back, as ostree does (spec §7.4): the boot entries of the current
//! boot version are the list of deployments, newest (highest `version`) first; each
//! entry's `ostree=` bootlink leads to a deployment directory `CSUM.SERIAL`.
//!
//! On a booted system, the booted deployment is the one whose directory is the running
//! root (same device and inode), or failing that the one the kernel command line's
//! `ostree=` names; a staged deployment (see [`crate::staged_state`]) comes first.

use crate::bootconfig::{self, BootLink};
use crate::deployment::{Deployment, parse_deploy_name};
use crate::error::{Error, IoContext, Result, is_not_found};
use crate::fsutil;
use crate::kargs::Kargs;
use crate::origin::Origin;
use crate::staged_state::StagedState;
use crate::sysroot::Sysroot;
use std::path::Path;
use trellis_store::Checksum;

/// The deployments of a sysroot and which is which.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    pub bootversion: u32,
    pub subbootversion: u32,
    /// The staged deployment (if any) first, then the boot entries' order.
    pub deployments: Vec<Deployment>,
    /// Whether the sysroot is the running system's.
    pub booted_system: bool,
    pub booted: Option<usize>,
    pub staged: Option<usize>,
    /// The staged state file, when there is a staged deployment.
    pub staged_state: Option<StagedState>,
}

impl State {
    pub fn booted(&self) -> Option<&Deployment> {
        self.booted.and_then(|i| self.deployments.get(i))
    }

    pub fn staged(&self) -> Option<&Deployment> {
        self.staged.and_then(|i| self.deployments.get(i))
    }

    /// The deployments that have boot entries, in order.
    pub fn nonstaged(&self) -> Vec<Deployment> {
        self.deployments
            .iter()
            .filter(|d| !d.staged)
            .cloned()
            .collect()
    }

    /// The deployment the next boot starts (the first with a boot entry), unless one is
    /// staged.
    pub fn default_deployment(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| !d.staged)
    }

    /// The deployment `rollback` would make the default: the first one after the booted
    /// deployment (of the same OS); when not booted, the second entry.
    pub fn rollback_index(&self) -> Option<usize> {
        match self.booted {
            Some(b) => {
                let os = &self.deployments.get(b)?.osname;
                (b + 1..self.deployments.len()).find(|&i| &self.deployments[i].osname == os)
            }
            None => self
                .deployments
                .iter()
                .enumerate()
                .filter(|(_, d)| !d.staged)
                .nth(1)
                .map(|(i, _)| i),
        }
    }

    /// Deployments with a boot entry placed before the booted one: they start on the next
    /// boot (what ostree calls pending).
    pub fn is_pending(&self, i: usize) -> bool {
        self.booted.is_some_and(|b| i < b) && self.deployments.get(i).is_some_and(|d| !d.staged)
    }

    /// The deployment whose `/etc` a new one of `osname` merges: the booted one if it is
    /// of that OS, otherwise the first of that OS.
    pub fn merge_deployment(&self, osname: &str) -> Option<&Deployment> {
        if let Some(b) = self.booted()
            && b.osname == osname
        {
            return Some(b);
        }
        self.deployments
            .iter()
            .find(|d| !d.staged && d.osname == osname)
    }
}

/// The commit's `version` metadata, or nothing when the commit is not in the repo.
pub(crate) fn commit_version(sr: &Sysroot, csum: &Checksum) -> Option<String> {
    sr.repo()
        .load_commit(csum)
        .ok()
        .and_then(|c| c.version().map(str::to_string))
}

/// Kernel arguments a deployment carries: the entry's options without `ostree=` and
/// without the `init=/ostree/…` ostree adds for kernels that lack an initramfs.
pub(crate) fn carried_kargs(options: &str) -> Kargs {
    let mut k = Kargs::parse(options).without_ostree();
    if k.get("init")
        .is_some_and(|v| v.starts_with("/ostree/boot."))
    {
        k.delete("init");
    }
    k
}

fn load_entry(sr: &Sysroot, path: &Path, entry: &bootconfig::BootEntry) -> Result<Deployment> {
    let corrupt = |why: String| Error::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    let arg = entry
        .ostree_arg()
        .ok_or_else(|| corrupt("no ostree= kernel argument".into()))?;
    let link = BootLink::parse(arg).ok_or_else(|| {
        corrupt(format!(
            "invalid ostree={arg}, expected ostree=/ostree/boot.BOOTVERSION/OSNAME/BOOTCSUM/SERIAL"
        ))
    })?;
    let link_path = sr.path().join(link.rel_path());
    let target = std::fs::read_link(&link_path).ctx("read bootlink", &link_path)?;
    let base = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let (csum, serial) = parse_deploy_name(base).ok_or_else(|| Error::Corrupt {
        path: link_path.clone(),
        why: format!(
            "points to {}, not a deployment CHECKSUM.SERIAL",
            target.display()
        ),
    })?;
    let mut d = Deployment {
        osname: link.osname,
        csum,
        serial,
        bootcsum: link.bootcsum,
        bootserial: link.bootserial,
        origin: None,
        kargs: carried_kargs(entry.get("options").unwrap_or_default()),
        version: commit_version(sr, &csum),
        staged: false,
    };
    let dir = d.dir(sr.path());
    if !dir.is_dir() {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            why: format!("its deployment {} does not exist", dir.display()),
        });
    }
    d.origin = Origin::read(&d.origin_path(sr.path()))?;
    Ok(d)
}

fn booted_from_cmdline(sr: &Sysroot, deployments: &[Deployment]) -> Result<Option<usize>> {
    let cmdline = match std::fs::read_to_string(&sr.host().cmdline) {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e).ctx("read", &sr.host().cmdline),
    };
    let Some(link) = Kargs::parse(&cmdline)
        .get("ostree")
        .and_then(BootLink::parse)
    else {
        return Ok(None);
    };
    let Ok(target) = std::fs::read_link(sr.path().join(link.rel_path())) else {
        return Ok(None);
    };
    let Some((csum, serial)) = target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_deploy_name)
    else {
        return Ok(None);
    };
    Ok(deployments
        .iter()
        .position(|d| d.osname == link.osname && d.csum == csum && d.serial == serial))
}

/// Read the sysroot's deployments.
pub fn load(sr: &Sysroot) -> Result<State> {
    let bootversion = bootconfig::read_bootversion(sr.path())?;
    let subbootversion = bootconfig::read_subbootversion(sr.path(), bootversion)?;
    let mut deployments = Vec::new();
    for (path, entry) in bootconfig::read_entries(sr.path(), bootversion)? {
        deployments.push(load_entry(sr, &path, &entry)?);
    }
    let mut booted = None;
    let mut staged_state = None;
    let marked = sr.host().run.join("ostree-booted").exists();
    if marked {
        let root = fsutil::dev_ino(&sr.host().root)?;
        for (i, d) in deployments.iter().enumerate() {
            if fsutil::dev_ino(&d.dir(sr.path()))? == root {
                booted = Some(i);
                break;
            }
        }
    }
    let booted_system = booted.is_some() || sr.is_booted_system()?;
    if booted_system {
        if booted.is_none() {
            booted = booted_from_cmdline(sr, &deployments)?;
        }
        let p = sr.staged_state_path();
        match std::fs::read(&p) {
            Ok(data) => staged_state = Some(StagedState::parse(&data, &p)?),
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).ctx("read", p),
        }
    }
    let mut staged = None;
    if let Some(st) = &staged_state {
        let t = &st.target;
        let mut d = Deployment {
            osname: t.osname.clone(),
            csum: t.csum,
            serial: t.serial,
            bootcsum: t.bootcsum.clone(),
            bootserial: 0,
            origin: None,
            kargs: st.kargs.clone().unwrap_or_default(),
            version: commit_version(sr, &t.csum),
            staged: true,
        };
        if st.kargs.is_none()
            && let Some(m) = st
                .merge
                .as_ref()
                .and_then(|m| deployments.iter().find(|d| m.matches(d)))
        {
            d.kargs = m.kargs.clone();
        }
        d.origin = Origin::read(&d.origin_path(sr.path()))?;
        deployments.insert(0, d);
        staged = Some(0);
        booted = booted.map(|b| b + 1);
    }
    Ok(State {
        bootversion,
        subbootversion,
        deployments,
        booted_system,
        booted,
        staged,
        staged_state,
    })
}
