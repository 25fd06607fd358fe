//! `trellis admin`: the device side, on a sysroot with OSTree's layout (as `ostree admin`).

mod deploy;
mod extensions;
mod manage;
mod setup;
mod status;
mod upgrade;

use anyhow::Context;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_sysroot::{EspConfig, Host, Sysroot};

/// Where the physical root is mounted on a booted trellis system.
const BOOTED_SYSROOT: &str = "/sysroot";

/// Manage deployments on a sysroot (as `ostree admin`).
///
/// A sysroot is the physical root of an image-based system: a bare repository in
/// ostree/repo, deployments in ostree/deploy/OS/deploy, boot entries in boot/loader. Its
/// layout is OSTree's, so `ostree admin status` lists what trellis deploys. Every command
/// works on the running system (its physical root, /sysroot, the default when
/// /run/ostree-booted exists) or, with --sysroot, on a directory (an image being built, or
/// a test).
#[derive(clap::Args)]
pub struct Args {
    /// The physical root to work on. Default: /sysroot on a booted trellis system; required
    /// anywhere else.
    #[arg(long = "sysroot", global = true, value_name = "DIR")]
    sysroot_arg: Option<PathBuf>,
    /// --sysroot, or its default once known.
    #[arg(skip)]
    sysroot: PathBuf,
    /// Also keep systemd-boot entries (with kernel copies) on this EFI system partition.
    /// Default: `sysroot.esp` in the sysroot repo's config, relative to the sysroot.
    #[arg(long, global = true, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// Boot counting on the ESP: new entries get this many tries before systemd-boot falls
    /// back to the previous one. Default: `sysroot.boot-counting-tries` in the config.
    #[arg(long, global = true, value_name = "N")]
    boot_counting_tries: Option<u32>,
    /// Testing: the running root (default /), compared with deployments to find the booted
    /// one.
    #[arg(long, global = true, hide = true, value_name = "DIR")]
    host_root: Option<PathBuf>,
    /// Testing: the running system's /run (holds ostree-booted and the staged state).
    #[arg(long, global = true, hide = true, value_name = "DIR")]
    host_run: Option<PathBuf>,
    /// Testing: the kernel command line (default /proc/cmdline).
    #[arg(long, global = true, hide = true, value_name = "FILE")]
    host_cmdline: Option<PathBuf>,
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
    Upgrade(upgrade::UpgradeArgs),
    #[command(alias = "finalize-staged")]
    Finalize(upgrade::FinalizeArgs),
}

impl Args {
    /// The running system, as the hidden test options describe it.
    fn host(&self) -> Host {
        let d = Host::default();
        Host {
            root: self.host_root.clone().unwrap_or(d.root),
            run: self.host_run.clone().unwrap_or(d.run),
            cmdline: self.host_cmdline.clone().unwrap_or(d.cmdline),
        }
    }

    /// Whether this is the machine's own running system (no test stand-ins for it).
    fn is_real_host(&self) -> bool {
        self.host_root.is_none() && self.host_run.is_none() && self.host_cmdline.is_none()
    }

    /// Open the sysroot named by --sysroot, with the ESP options applied.
    fn open(&self) -> anyhow::Result<Sysroot> {
        let mut sr = Sysroot::open_with(&self.sysroot, self.host())
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

pub fn run(mut a: Args) -> anyhow::Result<ExitCode> {
    a.sysroot = match &a.sysroot_arg {
        Some(dir) => dir.clone(),
        None => {
            let marker = a
                .host()
                .run
                .join(trellis_sysroot::prepare_root::BOOTED_MARKER);
            if !marker.exists() && !matches!(a.command, Command::InitFs(_)) {
                anyhow::bail!(
                    "this is not a booted trellis system (there is no {}): say which sysroot \
                     to work on with --sysroot DIR",
                    marker.display()
                );
            }
            PathBuf::from(BOOTED_SYSROOT)
        }
    };
    match &a.command {
        Command::InitFs(c) => setup::init_fs(c),
        Command::OsInit(c) => setup::os_init(&a, c),
        Command::Deploy(c) => deploy::run(&a, c),
        Command::Status(c) => status::run(&a, c),
        Command::Rollback(c) => manage::rollback(&a, c),
        Command::Cleanup(c) => manage::cleanup(&a, c),
        Command::Kargs(c) => manage::kargs(&a, c),
        Command::Upgrade(c) => upgrade::upgrade(&a, c),
        Command::Finalize(c) => upgrade::finalize(&a, c),
    }
}
