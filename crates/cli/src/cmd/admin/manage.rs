//! `trellis admin rollback`, `cleanup` and `kargs`.

use crate::output::print_json;
use anyhow::Context;
use std::process::ExitCode;

/// Make the previous deployment the default boot entry again.
///
/// Booted into the default deployment, the one after it becomes the default; booted into
/// an older one, that one does. Nothing is deleted, so a second rollback undoes the first.
/// A staged deployment is dropped.
#[derive(clap::Args)]
pub struct RollbackArgs {}

pub fn rollback(admin: &super::Args, _a: &RollbackArgs) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let out = trellis_sysroot::rollback::rollback(&sr)
        .with_context(|| format!("rolling back in {}", admin.sysroot.display()))?;
    println!(
        "Default deployment is now {} {} (was {})",
        out.new_default.osname,
        out.new_default.name(),
        out.old_default.name()
    );
    Ok(ExitCode::SUCCESS)
}

/// Remove what no boot entry uses: old deployments, unused kernels in /boot and on the
/// ESP, and the repository's unreferenced objects.
#[derive(clap::Args)]
pub struct CleanupArgs {
    /// Keep the repository's objects; only remove deployments and boot files.
    #[arg(long)]
    no_prune: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn cleanup(admin: &super::Args, a: &CleanupArgs) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let r = trellis_sysroot::cleanup::cleanup(&sr, !a.no_prune)
        .with_context(|| format!("cleaning up {}", admin.sysroot.display()))?;
    if a.json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    for d in &r.deployments_removed {
        println!("Removed deployment {d}");
    }
    for b in &r.boot_dirs_removed {
        println!("Removed /boot/ostree/{b}");
    }
    if let Some(esp) = &r.esp {
        for k in &esp.kernels_removed {
            println!("Removed ESP kernel {k}");
        }
    }
    if r.pruned {
        println!(
            "Pruned {} object(s), freed {} bytes",
            r.objects_pruned, r.bytes_freed
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Show or change the kernel arguments of the default deployment.
///
/// Changes rewrite the boot entries (atomically); the deployment itself stays.
#[derive(clap::Args)]
pub struct KargsArgs {
    /// Append an argument (repeatable).
    #[arg(long, value_name = "NAME[=VALUE]")]
    append: Vec<String>,
    /// Set an argument, replacing all with the same name (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    replace: Vec<String>,
    /// Delete NAME=VALUE exactly, or every NAME argument (repeatable).
    #[arg(long, value_name = "NAME[=VALUE]")]
    delete: Vec<String>,
    /// Print the arguments as JSON.
    #[arg(long)]
    json: bool,
}

pub fn kargs(admin: &super::Args, a: &KargsArgs) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let kargs = if a.append.is_empty() && a.replace.is_empty() && a.delete.is_empty() {
        let state = trellis_sysroot::load(&sr).context("reading the sysroot")?;
        let Some(d) = state.default_deployment() else {
            anyhow::bail!("there are no deployments in {}", admin.sysroot.display());
        };
        d.kargs.clone()
    } else {
        let mut missing = Vec::new();
        let (k, _) = trellis_sysroot::rollback::set_default_kargs(&sr, |k| {
            for arg in &a.delete {
                if !k.delete(arg) {
                    missing.push(arg.clone());
                }
            }
            for arg in &a.replace {
                k.replace(arg);
            }
            for arg in &a.append {
                k.append(arg);
            }
        })
        .with_context(|| format!("changing kernel arguments in {}", admin.sysroot.display()))?;
        for m in missing {
            eprintln!("warning: no kernel argument {m:?} to delete");
        }
        k
    };
    if a.json {
        print_json(&kargs)?;
    } else {
        println!("{kargs}");
    }
    Ok(ExitCode::SUCCESS)
}
