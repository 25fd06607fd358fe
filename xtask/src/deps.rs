//! The Debian packages the tests and the quick start need (scripts/debian-packages.txt),
//! installed with apt-get when missing and running as root.

use anyhow::{Context, Result, bail};
use std::path::Path;
use std::process::{Command, Stdio};

pub const PACKAGE_LIST: &str = "scripts/debian-packages.txt";

fn wanted(root: &Path) -> Result<Vec<String>> {
    let path = root.join(PACKAGE_LIST);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// Install whatever is missing from the list (as root), or say what to install.
pub fn ensure_debian_packages(root: &Path) -> Result<()> {
    let missing: Vec<String> = wanted(root)?
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !rustix::process::geteuid().is_root() {
        bail!(
            "missing Debian packages: {} (install them as root: apt-get install {})",
            missing.join(" "),
            missing.join(" ")
        );
    }
    eprintln!(
        "xtask: installing missing Debian packages: {}",
        missing.join(" ")
    );
    let status = Command::new("apt-get")
        .args(["-q", "update"])
        .status()
        .context("running apt-get update")?;
    if !status.success() {
        bail!("apt-get update failed ({status})");
    }
    let install = |extra: &[&str]| {
        Command::new("apt-get")
            .args(["-y", "-q", "--no-install-recommends", "install"])
            .args(extra)
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get install")
    };
    let mut status = install(&[])?;
    if !status.success() {
        // Some machines carry qemu-utils from bookworm-backports, which breaks bookworm's
        // qemu-system-x86; take bookworm's, as .ci/run does.
        eprintln!("xtask: retrying with bookworm's qemu-utils");
        status = install(&["--allow-downgrades", "qemu-utils/bookworm"])?;
    }
    if !status.success() {
        bail!("apt-get install {} failed ({status})", missing.join(" "));
    }
    Ok(())
}
