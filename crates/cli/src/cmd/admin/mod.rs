//! `trellis admin`: the device side, on a sysroot with OSTree's layout (as `ostree admin`).

mod deploy;
mod manage;
mod setup;
mod status;

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_sysroot::{EspConfig, Sysroot};

/// Manage deployments on a sysroot (as `ostree admin`).
///
/// A sysroot is the physical root of an image-based system: a bare repository in
/// ostree/repo, deployments in ostree/deploy/OS/deploy, boot entries in boot/loader. Its
/// layout is OSTree's, so `ostree admin status` lists what trellis deploys. Every command
/// works on the running system (`/`, the default) or, with --sysroot, on a directory (an
/// image being built, or a test).
#[derive(clap::Args)]
pub struct Args {
    /// The physical root to work on.
    #[arg(long, global = true, default_value = "/", value_name = "DIR")]
    sysroot: PathBuf,
    /// Also keep systemd-boot entries (with kernel copies) on this EFI system partition.
    /// Default: `sysroot.esp` in the sysroot repo's config, relative to the sysroot.
    #[arg(long, global = true, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// Boot counting on the ESP: new entries get this many tries before systemd-boot falls
    /// back to the previous one. Default: `sysroot.boot-counting-tries` in the config.
    #[arg(long, global = true, value_name = "N")]
    boot_counting_tries: Option<u32>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    InitFs(setup::InitFsArgs),
    OsInit(setup::OsInitArgs),
    Deploy(deploy::Args),
    Status(status::Args),
    Rollback(manage::RollbackArgs),
    Cleanup(manage::CleanupArgs),
    Kargs(manage::KargsArgs),
}

impl Args {
    /// Open the sysroot named by --sysroot, with the ESP options applied.
    fn open(&self) -> anyhow::Result<Sysroot> {
        let mut sr = Sysroot::open(&self.sysroot)
            .with_context(|| format!("opening sysroot {}", self.sysroot.display()))?;
        let tries = self
            .boot_counting_tries
            .or_else(|| sr.esp().and_then(|e| e.tries))
            .filter(|&t| t > 0);
        match (&self.esp, sr.esp().cloned()) {
            (Some(dir), _) => sr.set_esp(Some(EspConfig {
                dir: dir.clone(),
                tries,
            })),
            (None, Some(cfg)) => sr.set_esp(Some(EspConfig { tries, ..cfg })),
            (None, None) if self.boot_counting_tries.is_some() => {
                anyhow::bail!(
                    "--boot-counting-tries needs an ESP: give --esp DIR or set sysroot.esp in {}",
                    sr.repo().path().join("config").display()
                );
            }
            (None, None) => {}
        }
        Ok(sr)
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match &a.command {
        Command::InitFs(c) => setup::init_fs(c),
        Command::OsInit(c) => setup::os_init(&a, c),
        Command::Deploy(c) => deploy::run(&a, c),
        Command::Status(c) => status::run(&a, c),
        Command::Rollback(c) => manage::rollback(&a, c),
        Command::Cleanup(c) => manage::cleanup(&a, c),
        Command::Kargs(c) => manage::kargs(&a, c),
    }
}
