//! Changing the boot configuration of existing deployments: rollback (reorder) and the
//! default deployment's kernel arguments.

use crate::deployment::Deployment;
use crate::error::{Error, Result};
use crate::kargs::Kargs;
use crate::status;
use crate::sysroot::Sysroot;
use crate::write::{self, WriteOutcome};

/// What a rollback did.
#[derive(Clone, Debug)]
pub struct RollbackOutcome {
    /// The deployment that is now the default.
    pub new_default: Deployment,
    /// The one that was the default before.
    pub old_default: Deployment,
    pub write: WriteOutcome,
}

/// Make the previous deployment the default, as `rpm-ostree rollback` does:
/// * booted into the default: the deployment after the booted one becomes the default;
/// * booted into an older one (a newer one is pending): the booted one becomes the default
///   again;
/// * not booted (an image, `--sysroot`): the first two entries swap.
///
/// Nothing is deleted, so a second rollback undoes the first. A staged deployment is
/// dropped (it would have become the default at shutdown).
pub fn rollback(sr: &Sysroot) -> Result<RollbackOutcome> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    let mut list = state.nonstaged();
    let old_default = list
        .first()
        .cloned()
        .ok_or_else(|| Error::Invalid("there are no deployments".into()))?;
    let target = match state.booted() {
        Some(b) if !b.same(&old_default) => list.iter().position(|d| d.same(b)),
        _ => state
            .rollback_index()
            .and_then(|i| state.deployments.get(i))
            .and_then(|r| list.iter().position(|d| d.same(r))),
    };
    let Some(t) = target.filter(|&t| t > 0) else {
        return Err(Error::Invalid(
            "there is no deployment to roll back to".into(),
        ));
    };
    let d = list.remove(t);
    list.insert(0, d.clone());
    let write = write::write_deployments(sr, &state, list)?;
    Ok(RollbackOutcome {
        new_default: d,
        old_default,
        write,
    })
}

/// Replace the kernel arguments of the default deployment (in place: it gets new boot
/// entries, no new deployment). `edit` receives the current arguments.
pub fn set_default_kargs(
    sr: &Sysroot,
    edit: impl FnOnce(&mut Kargs),
) -> Result<(Kargs, WriteOutcome)> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    let mut list = state.nonstaged();
    let Some(first) = list.first_mut() else {
        return Err(Error::Invalid("there are no deployments".into()));
    };
    edit(&mut first.kargs);
    let kargs = first.kargs.clone();
    if state.staged().is_some() {
        return Err(Error::Invalid(
            "a deployment is staged; change its kernel arguments when staging it".into(),
        ));
    }
    let write = write::write_deployments(sr, &state, list)?;
    Ok((kargs, write))
}
