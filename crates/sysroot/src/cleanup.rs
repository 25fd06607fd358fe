//! Removing what no boot entry uses any more (ostree's `ostree_sysroot_cleanup`): the
//! other boot version's files, deployment directories that are not deployed (old ones,
//! or the remains of an interrupted deploy), kernel directories in `/boot` and on the ESP
//! that no deployment uses, and finally, optionally, the repository's unreferenced
//! objects (a refs-only prune at depth 0, with every deployment's commit held by its
//! `ostree/B/S/I` ref).
//!
//! The running root is never removed, whatever the boot entries say.

use crate::bootconfig;
use crate::deployment::{self, Deployment};
use crate::error::{IoContext, Result};
use crate::esp::EspReport;
use crate::fsutil;
use crate::layout;
use crate::status::{self, State};
use crate::sysroot::Sysroot;
use serde::Serialize;
use trellis_store::prune::{PruneOptions, prune};

/// What a cleanup removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Deployment directories removed, as `OS/CSUM.SERIAL`.
    pub deployments_removed: Vec<String>,
    /// Kernel directories removed from `/boot/ostree`.
    pub boot_dirs_removed: Vec<String>,
    pub esp: Option<EspReport>,
    /// Whether the repository was pruned.
    pub pruned: bool,
    pub objects_pruned: u64,
    pub bytes_freed: u64,
}

/// Clean up the sysroot; with `prune`, also delete the repository's unreferenced objects.
pub fn cleanup(sr: &Sysroot, prune: bool) -> Result<CleanupReport> {
    let _lock = sr.lock()?;
    let state = status::load(sr)?;
    cleanup_locked(sr, &state, prune)
}

fn is_deployed(state: &State, osname: &str, csum: &trellis_store::Checksum, serial: u32) -> bool {
    state
        .deployments
        .iter()
        .any(|d| d.osname == osname && d.csum == *csum && d.serial == serial)
}

pub(crate) fn cleanup_locked(
    sr: &Sysroot,
    state: &State,
    prune_repo: bool,
) -> Result<CleanupReport> {
    let mut report = CleanupReport::default();
    let (b, s) = (state.bootversion, state.subbootversion);
    let nonstaged: Vec<Deployment> = state.nonstaged();

    // The ESP must point at the current boot version before the other one goes.
    if !nonstaged.is_empty() {
        report.esp = crate::write::sync_esp(sr, &nonstaged, b)?;
    }
    bootconfig::remove_other_bootversions(sr.path(), b, s)?;
    fsutil::remove_tree(&sr.path().join("boot/loader.tmp"))?;
    bootconfig::write_deployment_refs(sr.repo(), b, s, &state.deployments)?;

    let root = fsutil::dev_ino(&sr.host().root)?;
    for os in crate::deploy::stateroots(sr.path())? {
        for (csum, serial) in deployment::list_deploy_dirs(sr.path(), &os)? {
            if is_deployed(state, &os, &csum, serial) {
                continue;
            }
            let dir = deployment::deploy_dir(sr.path(), &os).join(format!("{csum}.{serial}"));
            if fsutil::dev_ino(&dir)? == root {
                continue;
            }
            fsutil::remove_tree(&dir.with_file_name(format!("{csum}.{serial}.origin")))?;
            fsutil::remove_tree(&dir)?;
            report
                .deployments_removed
                .push(format!("{os}/{csum}.{serial}"));
        }
        // Origin files whose deployment is gone.
        let ddir = deployment::deploy_dir(sr.path(), &os);
        if let Ok(rd) = std::fs::read_dir(&ddir) {
            for e in rd {
                let e = e.ctx("list", &ddir)?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(base) = name.strip_suffix(".origin")
                    && deployment::parse_deploy_name(base).is_some()
                    && !ddir.join(base).exists()
                {
                    fsutil::remove_tree(&e.path())?;
                }
            }
        }
    }

    let boot_ostree = sr.path().join("boot/ostree");
    if let Ok(rd) = std::fs::read_dir(&boot_ostree) {
        for e in rd {
            let e = e.ctx("list", &boot_ostree)?;
            if !e.file_type().ctx("stat", e.path())?.is_dir() {
                continue;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Some((os, csum)) = name.rsplit_once('-') else {
                continue;
            };
            if trellis_store::Checksum::from_hex(csum).is_err() {
                continue;
            }
            let used = state
                .deployments
                .iter()
                .any(|d| d.osname == os && d.bootcsum == csum);
            if !used {
                fsutil::remove_tree(&e.path())?;
                report.boot_dirs_removed.push(name);
            }
        }
    }

    if prune_repo {
        let r = prune(
            sr.repo(),
            &PruneOptions {
                refs_only: true,
                depth: Some(0),
                ..PruneOptions::default()
            },
        )?;
        report.pruned = true;
        report.objects_pruned = r.objects_pruned;
        report.bytes_freed = r.bytes_freed;
    }
    layout::bump_mtime(sr.path())?;
    Ok(report)
}
