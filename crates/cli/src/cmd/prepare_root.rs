//! `trellis prepare-root`: run by the initramfs, before init switches to the real root.

use std::path::PathBuf;
use std::process::ExitCode;

/// Make the deployment named by the kernel command line's ostree= the root that init
/// switches to (run in the initramfs, as ostree-prepare-root).
///
/// ROOT is where the initramfs mounted the physical root file system (initramfs-tools'
/// $rootmnt). The ostree= bootlink is resolved inside ROOT, then the deployment is
/// bind-mounted over ROOT, with /var from its stateroot, /sysroot the physical root, /boot
/// the physical /boot (when it holds the boot entries) and /usr read-only, and
/// RUN/ostree-booted is written so that the booted system knows it runs a deployment. A
/// root mounted read-only is remounted read-write.
///
/// Any problem is one line on stderr (the console) naming it, and exit status 1, so that
/// the initramfs stops (and with panic=N reboots, which boot counting turns into a fallback
/// to the previous deployment).
#[derive(clap::Args)]
pub struct Args {
    /// The physical root's mount point.
    #[arg(value_name = "ROOT")]
    root: PathBuf,
    /// Read the kernel command line from this file.
    #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    /// The /run to write ostree-booted into (the initramfs moves it into the new root).
    #[arg(long, value_name = "DIR", default_value = "/run")]
    run: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let result = std::fs::read_to_string(&a.cmdline)
        .map_err(|e| {
            format!(
                "cannot read the kernel command line from {}: {e}",
                a.cmdline.display()
            )
        })
        .and_then(|cmdline| {
            trellis_sysroot::prepare_root::prepare_root(&a.root, &cmdline, &a.run)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(p) => {
            if p.remounted_rw {
                eprintln!(
                    "trellis prepare-root: {} was read-only; remounted it read-write",
                    a.root.display()
                );
            }
            eprintln!(
                "trellis prepare-root: booting {} {}",
                p.plan.osname, p.plan.name
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("trellis prepare-root: error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
