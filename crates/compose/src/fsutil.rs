//! Small filesystem helpers for working inside a tree: nothing here follows a symlink at
//! the last component, so a link in the tree can never make us touch the host.

use crate::error::{IoContext, Result};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// `lstat`, or `None` when the path does not exist.
pub fn lstat(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).ctx("stat", path),
    }
}

/// Remove a file, symlink or directory tree; absent is fine.
pub fn remove(path: &Path) -> Result<bool> {
    match lstat(path)? {
        None => Ok(false),
        Some(m) if m.is_dir() => {
            std::fs::remove_dir_all(path).ctx("remove", path)?;
            Ok(true)
        }
        Some(_) => {
            std::fs::remove_file(path).ctx("remove", path)?;
            Ok(true)
        }
    }
}

/// Remove everything inside `dir`, keeping `dir` itself (and its mode).
pub fn empty_dir(dir: &Path) -> Result<usize> {
    let Some(m) = lstat(dir)? else {
        return Ok(0);
    };
    if !m.is_dir() {
        return Ok(0);
    }
    let mut n = 0;
    for entry in std::fs::read_dir(dir).ctx("read directory", dir)? {
        let entry = entry.ctx("read directory", dir)?;
        remove(&entry.path())?;
        n += 1;
    }
    Ok(n)
}

/// Create `dir` (and missing parents, 0755) with `mode`, unless it exists.
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    if lstat(dir)?.is_some_and(|m| m.is_dir()) {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    std::fs::create_dir(dir).ctx("create directory", dir)?;
    set_mode(dir, mode)
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}

/// Write a whole file with `mode`, replacing what was there.
pub fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    if lstat(path)?.is_some_and(|m| !m.is_file()) {
        remove(path)?;
    }
    std::fs::write(path, data).ctx("write", path)?;
    set_mode(path, mode)
}

/// Make `link` a symlink to `target`, replacing a file or link (not a directory) there.
pub fn symlink(target: &str, link: &Path) -> Result<()> {
    if let Some(m) = lstat(link)? {
        if m.is_dir() {
            return Err(crate::error::tree_error(
                link,
                format!("is a directory; expected to make it a symlink to {target}"),
            ));
        }
        std::fs::remove_file(link).ctx("remove", link)?;
    }
    std::os::unix::fs::symlink(target, link).ctx("create symlink", link)
}

pub fn rename(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    std::fs::rename(from, to).ctx("rename", from)
}

/// Whether `dir` is a directory with nothing in it.
pub fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir)
        .ctx("read directory", dir)?
        .next()
        .is_none())
}
