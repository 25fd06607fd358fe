//! Converting a Debian root filesystem into the tree an image-based (OSTree-style) system
//! boots. Pure filesystem work on a directory: no chroot, no tools, so that it is tested on
//! small fake trees.
//!
//! What it does, in order:
//! 1. removes per-build noise ([`noise`]): logs, caches, apt lists, backups, locks, the
//!    machine id, SSH host keys, the host's resolv.conf, and the contents of /dev, /proc,
//!    /sys, /run and /tmp; so that an unchanged manifest gives an unchanged tree;
//! 2. moves /etc to /usr/etc (deployments copy it back and merge it on upgrade);
//! 3. keeps the dpkg database under /usr ([`DPKG_DB`]) so that what is installed is part of
//!    the commit, and points /var/lib/dpkg at it;
//! 4. moves home, mnt, opt, srv and root under /var (with symlinks), /usr/local to
//!    var/usrlocal, makes media a link to run/media, and adds /sysroot,
//!    `/ostree -> sysroot/ostree` and `/efi -> sysroot/efi` (a booted system mounts its
//!    ESP at /sysroot/efi; systemd-bless-boot and bootctl look for it at /efi);
//! 5. turns everything left in /var into systemd-tmpfiles entries ([`var`]), so that the
//!    commit's /var is empty and a deployment's /var is filled on first boot.
//!
//! Renames only: file capabilities and other xattrs stay with their files.

mod noise;
mod tmpfiles;
mod var;

use crate::error::{Result, tree_error};
use crate::fsutil;
use std::path::Path;

pub use var::{FACTORY, TMPFILES_CONF};

/// Where the dpkg database lives in the commit (the "sysimage" convention rpm also uses),
/// so that extension builds and package layering know what the base has installed.
pub const DPKG_DB: &str = "usr/lib/sysimage/dpkg";

/// Top-level directories that hold state, and where they go under /var.
pub const MOVED_TO_VAR: &[(&str, &str, &str)] = &[
    // (path in the tree, new place, symlink target from the old place)
    ("home", "var/home", "var/home"),
    ("mnt", "var/mnt", "var/mnt"),
    ("opt", "var/opt", "var/opt"),
    ("srv", "var/srv", "var/srv"),
    ("root", "var/roothome", "var/roothome"),
    ("usr/local", "var/usrlocal", "../var/usrlocal"),
];

/// Directories left empty: filled at run time by the kernel, systemd or a tmpfs.
pub const EMPTIED: &[&str] = &["dev", "proc", "sys", "run", "tmp"];

/// What the conversion did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConvertReport {
    /// Lines written to the tmpfiles.d file.
    pub tmpfiles_entries: usize,
    /// Files of /var kept under /usr/share/factory/var and copied back by tmpfiles.
    pub factory_files: usize,
    /// /var entries already declared by the tree's own tmpfiles.d files.
    pub already_declared: usize,
    /// Paths removed as per-build noise.
    pub noise_removed: usize,
    /// Special files (sockets, FIFOs, devices) found in /var and dropped.
    pub dropped: Vec<String>,
}

/// Convert the root filesystem at `tree` in place.
pub fn convert(tree: &Path) -> Result<ConvertReport> {
    let md = fsutil::lstat(tree)?.ok_or_else(|| tree_error(tree, "does not exist"))?;
    if !md.is_dir() {
        return Err(tree_error(tree, "is not a directory"));
    }
    let mut report = ConvertReport {
        noise_removed: noise::remove(tree)?,
        ..Default::default()
    };
    for d in EMPTIED {
        report.noise_removed += fsutil::empty_dir(&tree.join(d))?;
    }
    move_etc(tree)?;
    move_dpkg_db(tree)?;
    for (from, to, link) in MOVED_TO_VAR {
        move_to_var(tree, from, to, link)?;
    }
    fsutil::remove(&tree.join("media"))?;
    fsutil::symlink("run/media", &tree.join("media"))?;
    fsutil::ensure_dir(&tree.join("sysroot"), 0o755)?;
    fsutil::symlink("sysroot/ostree", &tree.join("ostree"))?;
    fsutil::remove(&tree.join("efi"))?;
    fsutil::symlink("sysroot/efi", &tree.join("efi"))?;
    var::to_tmpfiles(tree, &mut report)?;
    Ok(report)
}

fn move_etc(tree: &Path) -> Result<()> {
    let etc = tree.join("etc");
    let usr_etc = tree.join("usr/etc");
    let Some(m) = fsutil::lstat(&etc)? else {
        return Err(tree_error(&etc, "missing: a Debian tree has /etc"));
    };
    if !m.is_dir() {
        return Err(tree_error(&etc, "is not a directory"));
    }
    if let Some(u) = fsutil::lstat(&usr_etc)? {
        if !u.is_dir() || !fsutil::is_empty_dir(&usr_etc)? {
            return Err(tree_error(
                tree,
                "contains both /etc and /usr/etc (a deployment's /etc is made from /usr/etc; \
                 put default configuration in /etc only)",
            ));
        }
        fsutil::remove(&usr_etc)?;
    }
    fsutil::rename(&etc, &usr_etc)
}

fn move_dpkg_db(tree: &Path) -> Result<()> {
    let var_db = tree.join("var/lib/dpkg");
    let Some(m) = fsutil::lstat(&var_db)? else {
        return Ok(());
    };
    if !m.is_dir() {
        return Ok(());
    }
    let db = tree.join(DPKG_DB);
    if fsutil::lstat(&db)?.is_some() {
        return Err(tree_error(
            &db,
            "already exists; cannot move /var/lib/dpkg there",
        ));
    }
    fsutil::rename(&var_db, &db)?;
    // The link is made on the running system by tmpfiles (var::to_tmpfiles), like all of
    // /var; it is in the tree now only so that it becomes that entry.
    fsutil::symlink(&format!("/{DPKG_DB}"), &var_db)
}

fn move_to_var(tree: &Path, from: &str, to: &str, link: &str) -> Result<()> {
    let src = tree.join(from);
    let dst = tree.join(to);
    match fsutil::lstat(&src)? {
        Some(m) if m.is_dir() => {
            if let Some(d) = fsutil::lstat(&dst)? {
                if !d.is_dir() || !fsutil::is_empty_dir(&dst)? {
                    return Err(tree_error(
                        &dst,
                        format!("already exists; cannot move /{from} there"),
                    ));
                }
                fsutil::remove(&dst)?;
            }
            fsutil::rename(&src, &dst)?;
        }
        Some(m) if m.is_symlink() => {
            // Already a link (a converted tree, or a package's choice): keep where it
            // points only if that is our place.
            let target = std::fs::read_link(&src).map_err(|e| tree_error(&src, e.to_string()))?;
            if target != Path::new(link) {
                return Err(tree_error(
                    &src,
                    format!("is a symlink to {}; expected a directory", target.display()),
                ));
            }
        }
        Some(_) => return Err(tree_error(&src, "is not a directory")),
        None => {}
    }
    // Root's home is private, as Debian makes /root.
    let mode = if from == "root" { 0o700 } else { 0o755 };
    fsutil::ensure_dir(&dst, mode)?;
    fsutil::symlink(link, &src)
}

#[cfg(test)]
mod tests;
