//! File-system helpers for the staging area: fixed timestamps, the immutable flag the
//! sysroot puts on deployments, and removing the whole staging area afterwards.

use crate::error::{IoContext, Result};
use rustix::fs::{AtFlags, CWD, IFlags, Mode, OFlags, Timespec, Timestamps};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use trellis_store::xattr;

/// Clamp every modification time under `root` (the root included, symlinks themselves,
/// never followed) to at most `t`, in whole seconds. Older times (the repository's objects
/// have mtime 0) are kept, and entries already in range are not touched at all (a bare
/// source repository may share inodes with the staging tree). Access and change times are
/// set in the file system afterwards ([`crate::ext4`]). Returns the entries changed.
pub fn clamp_times(root: &Path, t: u64) -> Result<u64> {
    let t = i64::try_from(t).unwrap_or(i64::MAX);
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).ctx("stat", &p)?;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).ctx("list", &p)? {
                stack.push(e.ctx("list", &p)?.path());
            }
        }
        if md.mtime() <= t && md.mtime_nsec() == 0 {
            continue;
        }
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: md.mtime().min(t),
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(CWD, &p, &times, AtFlags::SYMLINK_NOFOLLOW)
            .ctx("set times of", &p)?;
        n += 1;
    }
    Ok(n)
}

/// How many inodes under `root` carry two or more extended attributes (whose order the
/// file system decides; see [`crate::ext4`]).
pub fn count_multi_xattr(root: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut n = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).ctx("stat", &p)?;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).ctx("list", &p)? {
                stack.push(e.ctx("list", &p)?.path());
            }
        }
        let x = xattr::read_all(xattr::Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(&p))
            .ctx("read extended attributes of", &p)?;
        if x.len() >= 2 && seen.insert((md.dev(), md.ino())) {
            n += 1;
        }
    }
    Ok(n)
}

/// Clear `chattr +i` on a directory; file systems without the flag are fine.
pub fn clear_immutable(dir: &Path) -> Result<()> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open directory", dir)?;
    match rustix::fs::ioctl_getflags(&fd) {
        Ok(f) if f.contains(IFlags::IMMUTABLE) => {
            rustix::fs::ioctl_setflags(&fd, f - IFlags::IMMUTABLE)
                .ctx("clear the immutable flag of", dir)
        }
        _ => Ok(()),
    }
}

/// The deployment directories of a sysroot (`ostree/deploy/OS/deploy/CSUM.N`).
pub fn deployment_dirs(sysroot: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(oses) = std::fs::read_dir(sysroot.join("ostree/deploy")) else {
        return out;
    };
    for os in oses.flatten() {
        let Ok(deps) = std::fs::read_dir(os.path().join("deploy")) else {
            continue;
        };
        for d in deps.flatten() {
            if d.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(d.path());
            }
        }
    }
    out.sort();
    out
}

/// A staging directory that is removed, immutable deployments and all, when dropped.
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    /// A new hidden directory in `parent` (the output's directory: same file system, so
    /// the finished image is renamed, not copied).
    pub fn new_in(parent: &Path) -> Result<Staging> {
        let dir = tempfile::Builder::new()
            .prefix(".trellis-image-")
            .tempdir_in(parent)
            .ctx("create a staging directory in", parent)?;
        Ok(Staging { path: dir.keep() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        for d in deployment_dirs(&self.path.join(crate::build::ROOT_DIR)) {
            let _ = clear_immutable(&d);
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_clamped_and_symlinks_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path().join("r");
        std::fs::create_dir_all(r.join("d")).unwrap();
        std::fs::write(r.join("d/new"), b"x").unwrap();
        std::fs::write(r.join("old"), b"x").unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, b"x").unwrap();
        std::os::unix::fs::symlink(&outside, r.join("link")).unwrap();
        let old = Timestamps {
            last_access: Timespec {
                tv_sec: 5,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(CWD, r.join("old"), &old, AtFlags::empty()).unwrap();
        // r, d, d/new and the symlink are newer; "old" is left alone.
        assert_eq!(clamp_times(&r, 1_000_000).unwrap(), 4);
        let m = |p: &Path| std::fs::symlink_metadata(p).unwrap();
        for p in [r.clone(), r.join("d"), r.join("d/new"), r.join("link")] {
            assert_eq!(m(&p).mtime(), 1_000_000, "{}", p.display());
            assert_eq!(m(&p).mtime_nsec(), 0, "{}", p.display());
        }
        assert_eq!(m(&r.join("old")).mtime(), 0);
        assert_eq!(m(&r.join("old")).atime(), 5);
        assert!(m(&outside).mtime() > 1_000_000);
        // A second pass has nothing to do.
        assert_eq!(clamp_times(&r, 1_000_000).unwrap(), 0);
    }

    #[test]
    fn multi_xattr_inodes_are_counted_once() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        let set = |f: &str, n: &str| {
            xattr::set(
                xattr::Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(&r.join(f)),
                n.as_bytes(),
                b"v",
            )
            .unwrap()
        };
        std::fs::write(r.join("two"), b"x").unwrap();
        std::fs::hard_link(r.join("two"), r.join("two-again")).unwrap();
        std::fs::write(r.join("one"), b"x").unwrap();
        set("two", "user.b");
        set("two", "user.a");
        set("one", "user.a");
        assert_eq!(count_multi_xattr(r).unwrap(), 1);
    }

    #[test]
    fn staging_is_removed_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Staging::new_in(tmp.path()).unwrap();
        let p = s.path().to_path_buf();
        std::fs::create_dir_all(p.join("root/ostree/deploy/os/deploy/x.0")).unwrap();
        assert_eq!(deployment_dirs(&p.join("root")).len(), 1);
        drop(s);
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
