//! `trellis admin deploy`.

use crate::output::print_json;
use anyhow::Context;
use std::process::ExitCode;
use trellis_sysroot::etc_merge::EtcMergeReport;
use trellis_sysroot::{DeployOptions, Kargs};

/// Deploy a commit and make it the default boot entry (as `ostree admin deploy`).
///
/// The commit must be in the sysroot's repository: a local ref, REMOTE:REF (pulled) or a
/// commit checksum. It is checked out as hardlinks into ostree/deploy/OS/deploy; its /etc
/// starts from /usr/etc and gets the admin's changes from the current deployment (a
/// three-way merge: local changes win, and conflicts are reported). The origin records
/// the refspec, for upgrades. Free space is checked before anything is written.
///
/// Kernel arguments are inherited from the current deployment; --karg and --karg-append
/// change them.
#[derive(clap::Args)]
pub struct Args {
    /// What to deploy: REF, REMOTE:REF or a commit checksum.
    #[arg(value_name = "REFSPEC|COMMIT")]
    rev: String,
    /// The stateroot (default: the booted deployment's, or the only one).
    #[arg(long = "os", value_name = "OS")]
    os: Option<String>,
    /// Set a kernel argument, replacing any with the same name (repeatable).
    #[arg(long = "karg", value_name = "NAME=VALUE")]
    karg: Vec<String>,
    /// Append a kernel argument, even if one with that name exists (repeatable).
    #[arg(long = "karg-append", value_name = "NAME=VALUE")]
    karg_append: Vec<String>,
    /// Start from no kernel arguments instead of the current deployment's.
    #[arg(long)]
    karg_none: bool,
    /// Keep all existing deployments (by default only the booted and the previous default
    /// one stay, as with ostree).
    #[arg(long)]
    retain: bool,
    /// Do not clean up afterwards (old deployments, unused kernels and objects stay until
    /// `trellis admin cleanup`).
    #[arg(long)]
    no_prune: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

fn etc_json(r: &EtcMergeReport) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}

pub fn run(admin: &super::Args, a: &Args) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let kargs = if a.karg.is_empty() && a.karg_append.is_empty() && !a.karg_none {
        None
    } else {
        let state = trellis_sysroot::load(&sr).context("reading the sysroot")?;
        let os = trellis_sysroot::deploy::resolve_osname(&sr, &state, a.os.as_deref())?;
        let mut k = match (a.karg_none, state.merge_deployment(&os)) {
            (false, Some(m)) => m.kargs.clone(),
            _ => Kargs::new(),
        };
        for arg in &a.karg {
            k.replace(arg);
        }
        for arg in &a.karg_append {
            k.append(arg);
        }
        Some(k)
    };
    let opts = DeployOptions {
        osname: a.os.clone(),
        kargs,
        retain: a.retain,
        no_cleanup: a.no_prune,
        ..DeployOptions::default()
    };
    let out = trellis_sysroot::deploy(&sr, &a.rev, &opts)
        .with_context(|| format!("deploying {} in {}", a.rev, admin.sysroot.display()))?;
    let d = &out.deployment;
    if a.json {
        print_json(&serde_json::json!({
            "osname": d.osname,
            "checksum": d.csum.to_hex(),
            "serial": d.serial,
            "bootcsum": d.bootcsum,
            "path": d.dir(sr.path()),
            "version": d.version,
            "origin": d.refspec(),
            "kargs": d.kargs.to_string(),
            "merged_from": out.merged_from.as_ref().map(|m| m.name()),
            "etc": out.etc.as_ref().map(etc_json),
            "files_linked": out.checkout.hardlinked,
            "bootversion": out.write.bootversion,
            "deployments_removed": out.cleanup.as_ref().map(|c| c.deployments_removed.clone()).unwrap_or_default(),
            "objects_pruned": out.cleanup.as_ref().map_or(0, |c| c.objects_pruned),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(etc) = &out.etc {
        print_etc_report(etc);
    }
    println!("Deployed {} {}", d.osname, d.name());
    if let Some(c) = &out.cleanup
        && (!c.deployments_removed.is_empty() || c.objects_pruned > 0)
    {
        println!(
            "Removed {} old deployment(s), pruned {} object(s) ({} bytes)",
            c.deployments_removed.len(),
            c.objects_pruned,
            c.bytes_freed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The /etc merge, as `admin deploy` and `admin finalize` report it.
pub(super) fn print_etc_report(etc: &EtcMergeReport) {
    println!(
        "Copying /etc changes: {} modified, {} removed, {} added",
        etc.modified.len(),
        etc.removed.len(),
        etc.added.len()
    );
    for c in &etc.conflicts {
        println!("  conflict: /etc/{}: {}", c.path, c.why);
    }
    for i in &etc.ignored {
        println!("  ignored: /etc/{i} (not a regular file, symlink or directory)");
    }
}
