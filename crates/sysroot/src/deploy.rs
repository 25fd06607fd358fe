//! Deploying a commit (spec §7.3): check it out as hardlinks from the sysroot's repo into
//! `ostree/deploy/OS/deploy/CSUM.SERIAL`, give it an `/etc` (a copy of `usr/etc`, merged
//! with the admin's changes from the merge deployment), write its origin, seal it, and make
//! it the default boot entry.
//!
//! Everything that can be checked before writing is: the stateroot, the commit (present,
//! not partial, with a kernel, not holding both `/etc` and `/usr/etc`) and the free space.
//! A failure before the boot configuration is written removes the half-made deployment;
//! one after it leaves a complete deployment behind.

use crate::cleanup::{self, CleanupReport};
use crate::deployment::{self, Deployment};
use crate::error::{Error, IoContext, Result};
use crate::etc_merge::{self, EtcMergeReport};
use crate::fsutil;
use crate::kargs::Kargs;
use crate::layout;
use crate::origin::Origin;
use crate::space;
use crate::status::{self, State};
use crate::sysroot::Sysroot;
use crate::write::{self, WriteOutcome};
use std::os::fd::AsFd;
use std::path::Path;
use trellis_store::Checksum;
use trellis_store::checkout::{CheckoutOptions, CheckoutStats, checkout_commit};
use trellis_store::tree::{self, TreeEntry};

/// How to deploy.
#[derive(Clone, Debug, Default)]
pub struct DeployOptions {
    /// The stateroot; default: the booted deployment's, or the only one there is.
    pub osname: Option<String>,
    /// Kernel arguments; `None` keeps the merge deployment's.
    pub kargs: Option<Kargs>,
    /// The origin to record; default `refspec=` the revision as given.
    pub origin: Option<Origin>,
    /// Keep every existing deployment (by default only the booted one, the merge
    /// deployment, pinned ones and other stateroots' are kept, as in ostree).
    pub retain: bool,
    /// Do not remove old deployments and unused objects afterwards.
    pub no_cleanup: bool,
    /// Bytes the repository still needs for this commit (content an upgrade will pull),
    /// counted in the space check.
    pub extra_repo_bytes: u64,
}

/// What a deploy did.
#[derive(Clone, Debug)]
pub struct DeployOutcome {
    pub deployment: Deployment,
    /// The deployment whose `/etc` was merged.
    pub merged_from: Option<Deployment>,
    pub etc: Option<EtcMergeReport>,
    pub checkout: CheckoutStats,
    pub write: WriteOutcome,
    pub cleanup: Option<CleanupReport>,
}

/// The stateroots of a sysroot (directories of `ostree/deploy`).
pub fn stateroots(sysroot: &Path) -> Result<Vec<String>> {
    let dir = sysroot.join(layout::DEPLOY);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).ctx("list", &dir)? {
        let e = e.ctx("list", &dir)?;
        if e.file_type().ctx("stat", e.path())?.is_dir()
            && let Some(n) = e.file_name().to_str()
        {
            out.push(n.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// The stateroot an operation means: the given one, the booted deployment's, or the only
/// one there is.
pub fn resolve_osname(sr: &Sysroot, state: &State, given: Option<&str>) -> Result<String> {
    let os = match given {
        Some(os) => os.to_string(),
        None => match state.booted() {
            Some(b) => b.osname.clone(),
            None => {
                let all = stateroots(sr.path())?;
                match all.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        return Err(Error::Invalid(
                            "the sysroot has no stateroot; create one with `trellis admin os-init OS`"
                                .into(),
                        ));
                    }
                    many => {
                        return Err(Error::Invalid(format!(
                            "several stateroots ({}); say which with --os",
                            many.join(", ")
                        )));
                    }
                }
            }
        },
    };
    layout::validate_osname(&os)?;
    let root = layout::stateroot(sr.path(), &os);
    if !root.is_dir() {
        return Err(Error::NoStateroot {
            osname: os,
            path: root,
        });
    }
    Ok(os)
}

/// A checked-out deployment with its `/etc` and origin, not yet merged nor in the boot
/// configuration.
pub(crate) struct Prepared {
    pub deployment: Deployment,
    pub merge: Option<Deployment>,
    pub checkout: CheckoutStats,
}

fn dir_is_empty(repo: &trellis_store::Repo, tree_csum: &Checksum) -> Result<bool> {
    let t = repo.load_dirtree(tree_csum)?;
    Ok(t.files.is_empty() && t.dirs.is_empty())
}

/// Refuse a tree with both a populated `/etc` and `/usr/etc`, before writing anything.
fn check_etc(sr: &Sysroot, commit: &Checksum) -> Result<()> {
    let repo = sr.repo();
    let etc = match tree::resolve_path(repo, commit, "/etc") {
        Ok(TreeEntry::Dir { tree, .. }) => !dir_is_empty(repo, &tree)?,
        Ok(TreeEntry::File { .. }) | Err(trellis_store::Error::PathNotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let usr_etc = match tree::resolve_path(repo, commit, "/usr/etc") {
        Ok(_) => true,
        Err(trellis_store::Error::PathNotFound { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if etc && usr_etc {
        return Err(Error::BothEtc {
            commit: commit.to_hex(),
        });
    }
    Ok(())
}

/// `usr/etc` is the defaults; `etc` starts as a copy of it. A tree with only `/etc` has it
/// moved to `usr/etc` first (ostree's compatibility rule); an empty `/etc` next to
/// `/usr/etc` is dropped.
fn prepare_etc(dir: &Path, commit: &Checksum) -> Result<()> {
    let etc = dir.join("etc");
    let usr_etc = dir.join("usr/etc");
    let has = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    if has(&etc) {
        if has(&usr_etc) {
            if std::fs::read_dir(&etc).ctx("list", &etc)?.next().is_some() {
                return Err(Error::BothEtc {
                    commit: commit.to_hex(),
                });
            }
            std::fs::remove_dir(&etc).ctx("remove", &etc)?;
        } else {
            std::fs::rename(&etc, &usr_etc).ctx("rename into", &usr_etc)?;
        }
    }
    if has(&usr_etc) {
        let fd = fsutil::open_dir(dir)?;
        fsutil::copy_at(&usr_etc, fd.as_fd(), std::ffi::OsStr::new("etc"), &etc)?;
    }
    Ok(())
}

/// Everything up to and including the checkout, `/etc` copy and origin.
pub(crate) fn prepare(
    sr: &Sysroot,
    state: &State,
    rev: &str,
    opts: &DeployOptions,
) -> Result<Prepared> {
    let osname = resolve_osname(sr, state, opts.osname.as_deref())?;
    let repo = sr.repo();
    let commit = repo.resolve_rev(rev)?;
    repo.load_commit(&commit)?;
    if repo.is_partial(&commit) {
        return Err(Error::PartialCommit(commit.to_hex()));
    }
    check_etc(sr, &commit)?;
    let needs = space::estimate(sr, &commit, &osname, opts.extra_repo_bytes)?;
    let Some(kernel) = needs.kernel.clone() else {
        return Err(Error::NoKernel {
            what: format!("commit {commit}"),
        });
    };
    space::check(sr, &needs, &format!("deploying commit {commit}"))?;

    let merge = state.merge_deployment(&osname).cloned();
    let kargs = match (&opts.kargs, &merge) {
        (Some(k), _) => k.clone(),
        (None, Some(m)) => m.kargs.clone(),
        (None, None) => Kargs::new(),
    };
    let serial = deployment::list_deploy_dirs(sr.path(), &osname)?
        .iter()
        .filter(|(c, _)| *c == commit)
        .map(|(_, s)| s + 1)
        .max()
        .unwrap_or(0);
    let d = Deployment {
        osname,
        csum: commit,
        serial,
        bootcsum: kernel.bootcsum,
        bootserial: 0,
        origin: Some(
            opts.origin
                .clone()
                .unwrap_or_else(|| Origin::from_refspec(rev)),
        ),
        kargs,
        version: status::commit_version(sr, &commit),
        staged: false,
    };
    let dir = d.dir(sr.path());
    let deploy_dir = deployment::deploy_dir(sr.path(), &d.osname);
    std::fs::create_dir_all(&deploy_dir).ctx("create directory", &deploy_dir)?;
    // Leftovers of an interrupted deploy with the same name.
    fsutil::remove_tree(&dir)?;
    let result = (|| {
        let checkout = checkout_commit(repo, &commit, &dir, &CheckoutOptions::default())?;
        prepare_etc(&dir, &commit)?;
        // The checkout must have the kernel the repo said it has.
        crate::kernel::find(&dir, &format!("commit {commit}"))?;
        if let Some(o) = &d.origin {
            o.write(&d.origin_path(sr.path()))?;
        }
        Ok(checkout)
    })();
    match result {
        Ok(checkout) => Ok(Prepared {
            deployment: d,
            merge,
            checkout,
        }),
        Err(e) => {
            let _ = fsutil::remove_tree(&d.origin_path(sr.path()));
            let _ = fsutil::remove_tree(&dir);
            Err(e)
        }
    }
}

/// Merge `/etc`, drop the `.updated` stamps (so that systemd's ConditionNeedsUpdate
/// units run on the first boot), rewrite the origin and seal the deployment.
pub(crate) fn finish(
    sr: &Sysroot,
    d: &Deployment,
    merge: Option<&Deployment>,
) -> Result<Option<EtcMergeReport>> {
    let dir = d.dir(sr.path());
    let report = match merge {
        Some(m) => Some(etc_merge::merge(&m.dir(sr.path()), &dir)?),
        None => {
            fsutil::remove_tree(&dir.join("etc/.updated"))?;
            None
        }
    };
    fsutil::remove_tree(&layout::stateroot(sr.path(), &d.osname).join("var/.updated"))?;
    if let Some(o) = &d.origin {
        o.write(&d.origin_path(sr.path()))?;
    }
    fsutil::set_immutable(&dir, true)?;
    Ok(report)
}

/// The deployment list after adding `new` as the default, keeping what ostree keeps: the
/// booted and merge deployments, pinned ones and those of other stateroots (or all, with
/// `retain`).
pub(crate) fn list_with(
    state: &State,
    new: &Deployment,
    merge: Option<&Deployment>,
    retain: bool,
) -> Vec<Deployment> {
    let mut out = vec![new.clone()];
    for d in state.deployments.iter().filter(|d| !d.staged) {
        let keep = retain
            || d.is_pinned()
            || d.osname != new.osname
            || state.booted().is_some_and(|b| b.same(d))
            || merge.is_some_and(|m| m.same(d));
        if keep && !d.same(new) {
            out.push(d.clone());
        }
    }
    out
}

/// Deploy `rev` (a ref, `REMOTE:REF` or a commit checksum in the sysroot's repo) and make
/// it the default.
pub fn deploy(sr: &Sysroot, rev: &str, opts: &DeployOptions) -> Result<DeployOutcome> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    let p = prepare(sr, &state, rev, opts)?;
    let d = p.deployment;
    let list = list_with(&state, &d, p.merge.as_ref(), opts.retain);
    // Until the boot configuration names it, a failed deployment is removed again.
    let etc = match finish(sr, &d, p.merge.as_ref()) {
        Ok(etc) => etc,
        Err(e) => {
            let _ = fsutil::remove_tree(&d.origin_path(sr.path()));
            let _ = fsutil::remove_tree(&d.dir(sr.path()));
            return Err(e);
        }
    };
    let write = write::write_deployments(sr, &state, list)?;
    let cleanup = if opts.no_cleanup {
        None
    } else {
        let after = |e| Error::CleanupAfterDeploy {
            deployment: format!("{} {}", d.osname, d.name()),
            source: Box::new(e),
        };
        let state = status::load(sr).map_err(after)?;
        Some(cleanup::cleanup_locked(sr, &state, true).map_err(after)?)
    };
    let state = status::load(sr)?;
    let deployment = state
        .deployments
        .iter()
        .find(|x| x.same(&d))
        .cloned()
        .unwrap_or(d);
    Ok(DeployOutcome {
        deployment,
        merged_from: p.merge,
        etc,
        checkout: p.checkout,
        write,
        cleanup,
    })
}
