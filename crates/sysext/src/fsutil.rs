//! Small filesystem helpers. Nothing here follows a symlink in the last component.

use crate::error::{IoContext, Result};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

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

/// A directory's entries, sorted by name (so that every walk is in the same order).
pub fn sorted_entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .ctx("read directory", dir)?
        .collect::<std::io::Result<_>>()
        .ctx("read directory", dir)?;
    v.sort_by_key(|e| e.file_name());
    Ok(v)
}

/// Write `data` to `dest` atomically: a temporary file beside it, synced, renamed over it.
pub fn write_atomic(dest: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = parent(dest);
    let mut tmp = tempfile::Builder::new()
        .prefix(".trellis-")
        .tempfile_in(dir)
        .ctx("create file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .ctx("chmod", tmp.path())?;
    tmp.as_file().sync_all().ctx("sync", tmp.path())?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .ctx("rename into", dest)?;
    sync_dir(dir)
}

/// fsync a directory, so that a rename in it is on disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("sync directory", dir)
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Set a path's mtime and atime (not following a symlink).
pub fn set_times(path: &Path, secs: i64) -> Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
    .ctx("set times of", path)
}

/// Read a file inside a root directory (an image, a device's root), resolving symlinks
/// as if `root` were `/`, so that an absolute link inside never reads the host's file.
/// `None` when it does not exist.
pub fn read_in_root(root: &Path, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
    let Some(p) = resolve_in_root(root, rel)? else {
        return Ok(None);
    };
    let md = match lstat(&p)? {
        Some(m) if m.is_file() => m,
        _ => return Ok(None),
    };
    if md.len() > max {
        return Err(crate::error::SysextError::Invalid(format!(
            "{} is {} bytes, more than the {max} expected",
            p.display(),
            md.len()
        )));
    }
    std::fs::read(&p).ctx("read", &p).map(Some)
}

/// Resolve `rel` under `root` following symlinks the way a chroot would (absolute targets
/// start again at `root`, `..` never climbs above it). `None` when a component is missing.
pub fn resolve_in_root(root: &Path, rel: &str) -> Result<Option<PathBuf>> {
    let mut stack: Vec<String> = Vec::new();
    let mut todo: Vec<String> = components(rel).rev().collect();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            stack.pop();
            continue;
        }
        let mut cur = root.to_path_buf();
        cur.extend(&stack);
        cur.push(&c);
        match lstat(&cur)? {
            None => return Ok(None),
            Some(m) if m.is_symlink() => {
                hops += 1;
                if hops > 40 {
                    return Ok(None);
                }
                let target = std::fs::read_link(&cur).ctx("read symlink", &cur)?;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    stack.clear();
                }
                todo.extend(components(&t).rev());
            }
            Some(_) => stack.push(c),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&stack);
    Ok(Some(p))
}

fn components(p: &str) -> impl DoubleEndedIterator<Item = String> + '_ {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stay_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=inside\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/hostname", root.join("etc/up")).unwrap();
        let read = |rel: &str| read_in_root(root, rel, 100).unwrap();
        assert_eq!(read("etc/os-release").unwrap(), b"ID=inside\n");
        assert_eq!(read("/etc/abs").unwrap(), b"ID=inside\n");
        // Climbing out stops at the root: /etc/hostname of the root, which is absent.
        assert_eq!(read("etc/up"), None);
        assert_eq!(read("nope"), None);
        assert!(read_in_root(root, "usr/lib/os-release", 3).is_err());
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
