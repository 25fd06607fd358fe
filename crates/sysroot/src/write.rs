//! Making a new list of deployments the sysroot's boot configuration: the one transaction
//! every deploy, rollback, kargs change and finalization ends with.
//!
//! As in ostree (`ostree_sysroot_write_deployments`): when the boot entries would change
//! (different count, kernels, kernel arguments or versions), the complete entry set of the
//! *other* boot version is written, with its bootlinks, and `boot/loader` is swapped to it
//! with one rename after a sync. Otherwise only the bootlinks are rebuilt and
//! `ostree/boot.B` swapped. Then the deployment refs are reset, the ESP (if any) is
//! synced, and the old boot version's files are removed — last, because until the ESP
//! points to the new boot version its entries still use the old bootlinks.

use crate::bootconfig::{self, EntryInput};
use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::esp::{self, EspItem, EspReport};
use crate::fsutil;
use crate::kernel::{self, KernelLayout};
use crate::layout;
use crate::staged_state::StagedState;
use crate::status::State;
use crate::sysroot::Sysroot;

/// What a write did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub bootversion: u32,
    pub subbootversion: u32,
    /// Whether a new boot version (new entries) was written, or only the bootlinks swapped.
    pub new_bootversion: bool,
    pub esp: Option<EspReport>,
    /// The staged deployment was dropped because it was not first in the new list.
    pub dropped_staged: bool,
}

fn same_bootconfig(a: &Deployment, b: &Deployment) -> bool {
    a.osname == b.osname
        && a.bootcsum == b.bootcsum
        && a.kargs.without_ostree() == b.kargs.without_ostree()
        && a.version == b.version
}

/// Kernel layout and OS name of each deployment, for entries.
fn describe(sr: &Sysroot, list: &[Deployment]) -> Result<Vec<(KernelLayout, String)>> {
    list.iter()
        .map(|d| {
            let dir = d.dir(sr.path());
            let layout = kernel::find(&dir, &format!("deployment {}", dir.display()))?;
            let name = bootconfig::os_release_name(&dir)?.unwrap_or_else(|| d.osname.clone());
            Ok((layout, name))
        })
        .collect()
}

fn entries_for(
    list: &[Deployment],
    described: &[(KernelLayout, String)],
    bootversion: u32,
    prefix: &str,
) -> Vec<bootconfig::BootEntry> {
    let show_osname = list.iter().any(|d| d.osname != list[0].osname);
    list.iter()
        .zip(described)
        .enumerate()
        .map(|(index, (d, (layout, os_name)))| {
            let input = EntryInput {
                deployment: d,
                index,
                count: list.len(),
                show_osname,
                layout,
                os_name,
            };
            bootconfig::make_entry(&input, bootversion, prefix)
        })
        .collect()
}

/// Remove the staged deployment: its state file and its directory.
pub(crate) fn drop_staged(sr: &Sysroot, staged: &Deployment) -> Result<()> {
    let p = sr.staged_state_path();
    match std::fs::remove_file(&p) {
        Err(e) if !crate::error::is_not_found(&e) => {
            return Err(Error::Io {
                op: "remove",
                path: p,
                source: e,
            });
        }
        _ => {}
    }
    let locked = sr.host().run.join("ostree/staged-deployment-locked");
    let _ = std::fs::remove_file(locked);
    fsutil::remove_tree(&staged.origin_path(sr.path()))?;
    fsutil::remove_tree(&staged.dir(sr.path()))
}

/// Sync the ESP with `list` at boot version `b`.
pub(crate) fn sync_esp(sr: &Sysroot, list: &[Deployment], b: u32) -> Result<Option<EspReport>> {
    let Some(cfg) = sr.esp() else {
        return Ok(None);
    };
    let described = describe(sr, list)?;
    let entries = entries_for(list, &described, b, esp::KERNEL_DIR);
    let items: Vec<EspItem<'_>> = list
        .iter()
        .zip(&described)
        .zip(entries)
        .map(|((d, (layout, _)), entry)| EspItem {
            deployment: d,
            layout,
            entry,
        })
        .collect();
    Ok(Some(esp::sync(cfg, &items)?))
}

/// Make `new` (index order, the default first) the sysroot's deployments. A staged
/// deployment stays staged only if it is first in `new`; otherwise it is dropped.
pub fn write_deployments(
    sr: &Sysroot,
    state: &State,
    new: Vec<Deployment>,
) -> Result<WriteOutcome> {
    let mut out = WriteOutcome::default();
    let keep_staged = match (state.staged(), new.first()) {
        (Some(st), Some(first)) => first.same(st),
        _ => false,
    };
    let mut staged_kept = None;
    if let Some(st) = state.staged() {
        if keep_staged {
            staged_kept = Some(st.clone());
        } else {
            drop_staged(sr, st)?;
            out.dropped_staged = true;
        }
    }
    let mut list: Vec<Deployment> = new.into_iter().filter(|d| !d.staged).collect();
    if list.is_empty() {
        return Err(Error::Invalid(
            "refusing to write a boot configuration without deployments".into(),
        ));
    }
    bootconfig::assign_bootserials(&mut list);
    if let Some(b) = state.booted()
        && !b.staged
        && !list.iter().any(|d| d.same(b))
    {
        return Err(Error::Invalid(format!(
            "refusing to remove the booted deployment {} {}",
            b.osname,
            b.name()
        )));
    }
    for d in &list {
        let dir = d.dir(sr.path());
        if !dir.is_dir() {
            return Err(Error::Corrupt {
                path: dir,
                why: "deployment directory is missing".into(),
            });
        }
    }

    let current = state.nonstaged();
    let requires_new = current.len() != list.len()
        || current
            .iter()
            .zip(&list)
            .any(|(a, b)| !same_bootconfig(a, b));
    let (b, s) = if requires_new {
        let b = 1 - state.bootversion.min(1);
        // The ESP may still name the other boot version's bootlinks, if an earlier write
        // was interrupted before its ESP sync: they are about to be replaced, so point the
        // ESP at the current ones first.
        if !current.is_empty() && sr.esp().is_some_and(|e| esp::names_bootversion(e, b)) {
            sync_esp(sr, &current, state.bootversion).map_err(|e| Error::EspSync {
                esp: sr.esp().map(|c| c.dir.clone()).unwrap_or_default(),
                source: Box::new(e),
            })?;
        }
        let described = describe(sr, &list)?;
        for (d, (layout, _)) in list.iter().zip(&described) {
            bootconfig::install_kernel(sr.path(), d, layout)?;
        }
        let entries = entries_for(&list, &described, b, "ostree");
        let named: Vec<(String, bootconfig::BootEntry)> = list
            .iter()
            .zip(entries)
            .enumerate()
            .map(|(i, (d, e))| (bootconfig::entry_file_name(i, list.len(), &d.osname), e))
            .collect();
        bootconfig::write_entries(sr.path(), b, &named)?;
        let s = bootconfig::create_bootlinks(sr.path(), b, &list)?;
        bootconfig::swap_bootlinks(sr.path(), b, s)?;
        bootconfig::swap_loader(sr.path(), b)?;
        (b, s)
    } else {
        let b = state.bootversion;
        let s = bootconfig::create_bootlinks(sr.path(), b, &list)?;
        fsutil::syncfs(sr.path())?;
        bootconfig::swap_bootlinks(sr.path(), b, s)?;
        (b, s)
    };
    out.bootversion = b;
    out.subbootversion = s;
    out.new_bootversion = requires_new;

    // Refs first: whatever happens on the ESP, a prune must not take the new commits.
    let mut with_staged = Vec::new();
    with_staged.extend(staged_kept);
    with_staged.extend(list.iter().cloned());
    bootconfig::write_deployment_refs(sr.repo(), b, s, &with_staged)?;

    out.esp = sync_esp(sr, &list, b).map_err(|e| Error::EspSync {
        esp: sr.esp().map(|c| c.dir.clone()).unwrap_or_default(),
        source: Box::new(e),
    })?;
    bootconfig::remove_other_bootversions(sr.path(), b, s)?;
    layout::bump_mtime(sr.path())?;
    Ok(out)
}

/// Rewrite the staged state file (after the staged deployment itself is on disk).
pub(crate) fn write_staged_state(sr: &Sysroot, st: &StagedState) -> Result<()> {
    let p = sr.staged_state_path();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).map_err(|source| Error::Io {
            op: "create directory",
            path: parent.to_path_buf(),
            source,
        })?;
    }
    fsutil::write_atomic(&p, &st.to_bytes(), false)
}
