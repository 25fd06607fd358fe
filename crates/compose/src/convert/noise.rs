//! Per-build noise: files that differ from one build to the next (or from one host to the
//! next) without the manifest changing, or that must be unique per machine.

use crate::error::{IoContext, Result};
use crate::fsutil;
use std::path::Path;

/// Removed outright (relative to the tree).
const FILES: &[&str] = &[
    // mmdebstrap copies the build host's resolver configuration in.
    "etc/resolv.conf",
    // Backups that shadow's tools and dpkg leave behind.
    "etc/passwd-",
    "etc/group-",
    "etc/shadow-",
    "etc/gshadow-",
    "etc/subuid-",
    "etc/subgid-",
    "etc/.pwd.lock",
    // Per machine; a symlink to /etc/machine-id is kept.
    "var/lib/dbus/machine-id",
    // Caches rebuilt at boot.
    "var/lib/systemd/catalog/database",
    "var/lib/initramfs-tools",
    // Symlinks the kernel's postinst makes; the kernel lives in /usr/lib/modules.
    "vmlinuz",
    "vmlinuz.old",
    "initrd.img",
    "initrd.img.old",
    "boot/vmlinuz",
    "boot/vmlinuz.old",
    "boot/initrd.img",
    "boot/initrd.img.old",
];

/// Directories whose files (not subdirectories) are removed, recursively.
const FILES_UNDER: &[&str] = &["var/log", "var/lib/apt/lists"];

/// Remove the noise; returns how many paths went.
pub fn remove(tree: &Path) -> Result<usize> {
    let mut n = 0;
    for f in FILES {
        let p = tree.join(f);
        // A symlink at var/lib/dbus/machine-id points at /etc/machine-id: not noise.
        if *f == "var/lib/dbus/machine-id" && fsutil::lstat(&p)?.is_some_and(|m| m.is_symlink()) {
            continue;
        }
        if *f == "etc/resolv.conf" && fsutil::lstat(&p)?.is_some_and(|m| m.is_symlink()) {
            continue;
        }
        n += usize::from(fsutil::remove(&p)?);
    }
    for d in FILES_UNDER {
        n += remove_files_under(&tree.join(d), &|_| true)?;
    }
    n += fsutil::empty_dir(&tree.join("var/tmp"))?;
    // Downloaded packages and caches go; debconf's database (in /var/cache for history's
    // sake) is what maintainer scripts answered, and stays.
    n += remove_files_under(&tree.join("var/cache"), &|p| {
        !(p.parent().is_some_and(|d| d.ends_with("var/cache/debconf"))
            && p.extension().is_some_and(|e| e == "dat"))
    })?;
    // Whatever the .deb cache held (directories included), but apt's partial/.
    let archives = tree.join("var/cache/apt/archives");
    if fsutil::lstat(&archives)?.is_some_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(&archives).ctx("read directory", &archives)? {
            let entry = entry.ctx("read directory", &archives)?;
            if entry.file_name() != "partial" {
                n += usize::from(fsutil::remove(&entry.path())?);
            }
        }
    }
    // dpkg's and debconf's "-old" backups, and lock files.
    for d in ["var/lib/dpkg", "var/cache/debconf"] {
        n += remove_files_under(&tree.join(d), &|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.ends_with("-old"))
        })?;
    }
    for f in [
        "var/lib/dpkg/lock",
        "var/lib/dpkg/lock-frontend",
        "var/lib/dpkg/triggers/Lock",
    ] {
        n += usize::from(fsutil::remove(&tree.join(f))?);
    }
    n += machine_id(tree)?;
    n += ssh_host_keys(tree)?;
    Ok(n)
}

/// Empty /etc/machine-id, so that systemd makes one per machine at first boot.
fn machine_id(tree: &Path) -> Result<usize> {
    let p = tree.join("etc/machine-id");
    match fsutil::lstat(&p)? {
        Some(m) if m.is_file() && m.len() > 0 => {
            fsutil::write_file(&p, b"", 0o444)?;
            Ok(1)
        }
        _ => Ok(0),
    }
}

/// SSH host keys are per machine: remove them, and have them made at first boot.
fn ssh_host_keys(tree: &Path) -> Result<usize> {
    let dir = tree.join("etc/ssh");
    let mut n = 0;
    if fsutil::lstat(&dir)?.is_some_and(|m| m.is_dir()) {
        for entry in std::fs::read_dir(&dir).ctx("read directory", &dir)? {
            let entry = entry.ctx("read directory", &dir)?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("ssh_host_") {
                n += usize::from(fsutil::remove(&entry.path())?);
            }
        }
    }
    if fsutil::lstat(&tree.join("usr/sbin/sshd"))?.is_some() {
        let units = tree.join("usr/lib/systemd/system");
        fsutil::write_file(&units.join(SSH_KEYGEN_UNIT), SSH_KEYGEN.as_bytes(), 0o644)?;
        let wants = units.join("ssh.service.wants");
        fsutil::ensure_dir(&wants, 0o755)?;
        fsutil::symlink(
            &format!("../{SSH_KEYGEN_UNIT}"),
            &wants.join(SSH_KEYGEN_UNIT),
        )?;
    }
    Ok(n)
}

pub const SSH_KEYGEN_UNIT: &str = "trellis-ssh-hostkeys.service";

const SSH_KEYGEN: &str = "\
# Installed by trellis compose: host keys are per machine, so the image has none and each
# machine makes its own before sshd first starts.
[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
";

/// Remove the non-directories under `dir` that `select` picks; keep every directory.
fn remove_files_under(dir: &Path, select: &dyn Fn(&Path) -> bool) -> Result<usize> {
    if !fsutil::lstat(dir)?.is_some_and(|m| m.is_dir()) {
        return Ok(0);
    }
    let mut n = 0;
    for entry in std::fs::read_dir(dir).ctx("read directory", dir)? {
        let entry = entry.ctx("read directory", dir)?;
        let path = entry.path();
        let ft = entry.file_type().ctx("stat", &path)?;
        if ft.is_dir() {
            n += remove_files_under(&path, select)?;
        } else if select(&path) {
            std::fs::remove_file(&path).ctx("remove", &path)?;
            n += 1;
        }
    }
    Ok(n)
}
