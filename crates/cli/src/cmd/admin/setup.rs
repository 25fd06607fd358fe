//! `trellis admin init-fs` and `os-init`.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

/// Create a sysroot's top-level layout in DIR (as `ostree admin init-fs`).
///
/// Makes boot, dev, home, proc, run, sys, root, tmp, ostree/deploy and a bare repository
/// in ostree/repo. Existing parts are kept.
#[derive(clap::Args)]
pub struct InitFsArgs {
    /// The directory to become a sysroot (created if missing).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

pub fn init_fs(a: &InitFsArgs) -> anyhow::Result<ExitCode> {
    trellis_sysroot::layout::init_fs(&a.dir)
        .with_context(|| format!("initializing sysroot {}", a.dir.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Create a stateroot for an OS (as `ostree admin os-init`).
///
/// A stateroot, ostree/deploy/OS, holds the OS's deployments and the /var they share.
#[derive(clap::Args)]
pub struct OsInitArgs {
    /// The OS name (letters, digits, '_', '-', '.').
    #[arg(value_name = "OS")]
    os: String,
}

pub fn os_init(admin: &super::Args, a: &OsInitArgs) -> anyhow::Result<ExitCode> {
    let created = trellis_sysroot::layout::os_init(&admin.sysroot, &a.os)
        .with_context(|| format!("creating stateroot {} in {}", a.os, admin.sysroot.display()))?;
    if created {
        println!("ostree/deploy/{} initialized as a stateroot", a.os);
    } else {
        println!("ostree/deploy/{} already exists", a.os);
    }
    Ok(ExitCode::SUCCESS)
}
