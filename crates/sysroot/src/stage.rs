//! Staged deployments (spec §7.5), for upgrades of a running system: the checkout and
//! origin are written at once, while the `/etc` merge and the boot entries wait until
//! shutdown (`finalize_staged`, run by a systemd unit), so that changes the admin makes
//! to `/etc` until then are carried over.
//!
//! The state between the two is [`crate::staged_state::StagedState`] in
//! `/run/ostree/staged-deployment`. The staged commit is held by a deployment ref, so a
//! prune in between cannot delete it.

use crate::bootconfig;
use crate::cleanup;
use crate::deploy::{self, DeployOptions};
use crate::deployment::Deployment;
use crate::error::{Error, IoContext, Result};
use crate::etc_merge::EtcMergeReport;
use crate::fsutil;
use crate::layout;
use crate::staged_state::{DeploymentId, StagedState};
use crate::status::{self, State};
use crate::sysroot::Sysroot;
use crate::write::{self, WriteOutcome};

/// What staging did.
#[derive(Clone, Debug)]
pub struct StageOutcome {
    pub deployment: Deployment,
    /// The deployment whose `/etc` will be merged at finalization.
    pub merge: Option<Deployment>,
    /// A previously staged deployment this one replaced.
    pub replaced: Option<Deployment>,
}

/// Stage `rev` to become the default at the next shutdown. Only on a booted system.
/// `opts.kargs` given here are recorded; otherwise the merge deployment's apply at
/// finalization. `opts.retain` and `opts.no_cleanup` do not apply.
pub fn stage(sr: &Sysroot, rev: &str, opts: &DeployOptions) -> Result<StageOutcome> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    if state.booted().is_none() {
        return Err(Error::NotBooted(
            "staging needs a booted system (use an immediate deploy for --sysroot)".into(),
        ));
    }
    let p = deploy::prepare(sr, &state, rev, opts)?;
    let mut d = p.deployment;
    d.staged = true;
    let st = StagedState {
        target: DeploymentId::of(&d),
        merge: p.merge.as_ref().map(DeploymentId::of),
        kargs: opts.kargs.clone(),
        locked: false,
    };
    let r = write::write_staged_state(sr, &st);
    if let Err(e) = r {
        let _ = fsutil::remove_tree(&d.origin_path(sr.path()));
        let _ = fsutil::remove_tree(&d.dir(sr.path()));
        return Err(e);
    }
    let replaced = state.staged().filter(|old| !old.same(&d)).cloned();
    if let Some(old) = &replaced {
        fsutil::remove_tree(&old.origin_path(sr.path()))?;
        fsutil::remove_tree(&old.dir(sr.path()))?;
    }
    let mut refs = vec![d.clone()];
    refs.extend(state.nonstaged());
    bootconfig::write_deployment_refs(sr.repo(), state.bootversion, state.subbootversion, &refs)?;
    layout::bump_mtime(sr.path())?;
    Ok(StageOutcome {
        deployment: d,
        merge: p.merge,
        replaced,
    })
}

/// What finalization did.
#[derive(Clone, Debug)]
pub enum FinalizeOutcome {
    /// Nothing was staged.
    NothingStaged,
    /// Finalization is locked (`/run/ostree/staged-deployment-locked` or the state's
    /// `locked`); the staged deployment stays staged.
    Locked(Deployment),
    Finalized(Box<Finalized>),
}

/// A finalized deployment.
#[derive(Clone, Debug)]
pub struct Finalized {
    pub deployment: Deployment,
    pub etc: Option<EtcMergeReport>,
    pub write: WriteOutcome,
}

/// Finalize the staged deployment: merge `/etc`, seal it and make it the default boot
/// entry. Run at shutdown. On failure, the reason is also written to
/// `/boot/ostree/finalize-failure.stamp` (as ostree does) and the boot configuration is
/// left as it was.
pub fn finalize_staged(sr: &Sysroot) -> Result<FinalizeOutcome> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    let result = finalize_locked(sr, &state);
    if let Err(e) = &result {
        let stamp = sr.path().join(layout::FINALIZE_FAILURE);
        if let Some(parent) = stamp.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(&stamp, e.to_string());
    }
    result
}

fn finalize_locked(sr: &Sysroot, state: &State) -> Result<FinalizeOutcome> {
    let (Some(staged), Some(st)) = (state.staged(), state.staged_state.as_ref()) else {
        return Ok(FinalizeOutcome::NothingStaged);
    };
    if st.locked
        || sr
            .host()
            .run
            .join("ostree/staged-deployment-locked")
            .exists()
    {
        return Ok(FinalizeOutcome::Locked(staged.clone()));
    }
    let merge = match &st.merge {
        None => None,
        Some(m) => Some(
            state
                .deployments
                .iter()
                .find(|d| !d.staged && m.matches(d))
                .cloned()
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "the merge deployment {} {}.{} of the staged deployment is gone",
                        m.osname, m.csum, m.serial
                    ))
                })?,
        ),
    };
    // Forget the state first: an interrupted finalization must not be retried on a
    // half-merged /etc; the deployment is then simply not deployed and cleanup removes it.
    let p = sr.staged_state_path();
    std::fs::remove_file(&p).ctx("remove", &p)?;

    let mut d = staged.clone();
    d.staged = false;
    if st.kargs.is_none() {
        d.kargs = merge.as_ref().map(|m| m.kargs.clone()).unwrap_or_default();
    }
    let etc = deploy::finish(sr, &d, merge.as_ref())?;

    let mut without = state.clone();
    without.deployments.retain(|x| !x.staged);
    without.staged = None;
    without.staged_state = None;
    without.booted = state
        .booted()
        .and_then(|b| without.deployments.iter().position(|x| x.same(b)));
    let list = deploy::list_with(&without, &d, merge.as_ref(), false);
    let write = write::write_deployments(sr, &without, list)?;
    let after = status::load(sr)?;
    cleanup::cleanup_locked(sr, &after, false)?;
    let deployment = after
        .deployments
        .iter()
        .find(|x| x.same(&d))
        .cloned()
        .unwrap_or(d);
    Ok(FinalizeOutcome::Finalized(Box::new(Finalized {
        deployment,
        etc,
        write,
    })))
}
