//! File-system helpers shared by the sysroot modules: atomic replacement of files and
//! symlinks, the immutable flag, and fd-relative copy and removal that never follow a
//! symlink out of the tree being written.
//!
//! Writes into a deployment (its `/etc` above all) must not follow symlinks: with
//! `--sysroot DIR`, an absolute symlink in the tree would otherwise resolve against the
//! host's root. So directories are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` and the last component is handled with `*at` calls that do not
//! follow it.

use crate::error::{Error, IoContext, Result};
use rustix::fs::{
    AtFlags, CWD, FileType, Gid, IFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use trellis_store::xattr::{self, Target};

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Open a directory, refusing a symlink in the last component.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, DIR_FLAGS, Mode::empty()).ctx("open directory", path)
}

/// Open the directory `rel` below `root` without following any symlink on the way.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, rel: &Path) -> rustix::io::Result<OwnedFd> {
    let rel: &Path = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        root,
        rel,
        DIR_FLAGS,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    )
}

/// `name`'s file type in `dir`, without following it; `None` when absent.
pub(crate) fn type_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Point `link` at `target`, replacing whatever symlink is there in one rename.
pub(crate) fn symlink_replace(target: &str, link: &Path) -> Result<()> {
    let mut tmp = link.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if !crate::error::is_not_found(&e) => return Err(e).ctx("remove", &tmp),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).ctx("create symlink", &tmp)?;
    std::fs::rename(&tmp, link).ctx("rename into", link)
}

/// Write a whole file through a temporary name in the same directory, then rename it into
/// place. With `sync`, the data reaches the disk before the rename.
pub(crate) fn write_atomic(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let Some(name) = path.file_name() else {
        return Err(Error::Invalid(format!("{} names no file", path.display())));
    };
    let mut tmp_name = OsStr::new(".").to_os_string();
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(data).ctx("write", &tmp)?;
        if sync {
            f.sync_all().ctx("sync", &tmp)?;
        }
        std::fs::rename(&tmp, path).ctx("rename into", path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

pub(crate) fn fsync_dir(path: &Path) -> Result<()> {
    let fd = open_dir(path)?;
    rustix::fs::fsync(&fd).ctx("fsync", path)
}

/// Flush the file system holding `path`.
pub(crate) fn syncfs(path: &Path) -> Result<()> {
    let fd = open_dir(path)?;
    rustix::fs::syncfs(&fd).ctx("syncfs", path)
}

/// Whether the error means the file system has no such flag (tmpfs before 6.0, FAT, ...):
/// ostree then carries on without it, and so do we.
fn flags_unsupported(e: Errno) -> bool {
    matches!(e, Errno::NOTTY | Errno::OPNOTSUPP | Errno::INVAL)
}

/// Set or clear the immutable attribute (`chattr +i`) of a directory, as ostree seals a
/// deployment's root so that nothing renames or deletes its top-level entries.
pub(crate) fn set_immutable(path: &Path, on: bool) -> Result<()> {
    let fd = open_dir(path)?;
    let flags = match rustix::fs::ioctl_getflags(&fd) {
        Ok(f) => f,
        Err(e) if flags_unsupported(e) => return Ok(()),
        Err(e) => return Err(e).ctx("read attributes of", path),
    };
    let new = if on {
        flags | IFlags::IMMUTABLE
    } else {
        flags - IFlags::IMMUTABLE
    };
    if new == flags {
        return Ok(());
    }
    match rustix::fs::ioctl_setflags(&fd, new) {
        Err(e) if flags_unsupported(e) => Ok(()),
        r => r.ctx("set attributes of", path),
    }
}

/// Whether a directory carries the immutable attribute.
pub fn is_immutable(path: &Path) -> Result<bool> {
    let fd = open_dir(path)?;
    match rustix::fs::ioctl_getflags(&fd) {
        Ok(f) => Ok(f.contains(IFlags::IMMUTABLE)),
        Err(e) if flags_unsupported(e) => Ok(false),
        Err(e) => Err(e).ctx("read attributes of", path),
    }
}

/// `rm -rf path`, never following symlinks; a missing path is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Invalid(format!(
            "refusing to remove {}",
            path.display()
        )));
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let pfd = match rustix::fs::open(parent, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e).ctx("open directory", parent),
    };
    remove_at(pfd.as_fd(), name, path)
}

/// `rm -rf` of `name` in `dir`. A directory that is immutable (an old deployment) has the
/// flag cleared first.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<()> {
    match type_at(dir, name).ctx("stat", shown)? {
        None => Ok(()),
        Some(FileType::Directory) => {
            let fd = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())
                .ctx("open directory", shown)?;
            if let Ok(f) = rustix::fs::ioctl_getflags(&fd)
                && f.contains(IFlags::IMMUTABLE)
            {
                rustix::fs::ioctl_setflags(&fd, f - IFlags::IMMUTABLE)
                    .ctx("clear the immutable flag of", shown)?;
            }
            for child in list_names(fd.as_fd(), shown)? {
                remove_at(fd.as_fd(), &child, &shown.join(&child))?;
            }
            rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).ctx("remove directory", shown)
        }
        Some(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).ctx("remove", shown),
    }
}

/// The entries of a directory (without `.` and `..`), sorted.
pub(crate) fn list_names(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut d = rustix::fs::Dir::read_from(dir).ctx("list", shown)?;
    let mut out = Vec::new();
    while let Some(entry) = d.read() {
        let entry = entry.ctx("list", shown)?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    out.sort();
    Ok(out)
}

fn times_of(md: &std::fs::Metadata) -> Timestamps {
    use std::os::unix::fs::MetadataExt;
    Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    }
}

/// Copy `src` (a file, symlink or directory tree, not followed) to `name` in `dst_dir`,
/// keeping owner, mode, xattrs and times. The destination name must not exist.
pub(crate) fn copy_at(
    src: &Path,
    dst_dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(src).ctx("stat", src)?;
    let ft = md.file_type();
    let (uid, gid) = (Some(Uid::from_raw(md.uid())), Some(Gid::from_raw(md.gid())));
    if ft.is_symlink() {
        let target = std::fs::read_link(src).ctx("read symlink", src)?;
        rustix::fs::symlinkat(&target, dst_dir, name).ctx("create symlink", shown)?;
        rustix::fs::chownat(dst_dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
            .ctx("chown", shown)?;
        return rustix::fs::utimensat(dst_dir, name, &times_of(&md), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("set times on", shown);
    }
    let mode = Mode::from_raw_mode(md.mode() & 0o7777);
    let xattrs = xattr::read_all::<File>(Target::NoFollow(src)).ctx("read xattrs of", src)?;
    if ft.is_dir() {
        rustix::fs::mkdirat(dst_dir, name, Mode::from_raw_mode(0o700))
            .ctx("create directory", shown)?;
        let fd = rustix::fs::openat(dst_dir, name, DIR_FLAGS, Mode::empty())
            .ctx("open directory", shown)?;
        let src_fd = open_dir(src)?;
        for child in list_names(src_fd.as_fd(), src)? {
            copy_at(&src.join(&child), fd.as_fd(), &child, &shown.join(&child))?;
        }
        return finish(fd.as_fd(), uid, gid, &xattrs, mode, &times_of(&md), shown);
    }
    if !ft.is_file() {
        return Err(Error::Corrupt {
            path: src.to_path_buf(),
            why: "is not a regular file, symlink or directory; cannot copy it".into(),
        });
    }
    let mut input = File::from(
        rustix::fs::open(
            src,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", src)?,
    );
    let out = rustix::fs::openat(
        dst_dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ctx("create", shown)?;
    let mut out = File::from(out);
    std::io::copy(&mut input, &mut out).ctx("copy to", shown)?;
    finish(out.as_fd(), uid, gid, &xattrs, mode, &times_of(&md), shown)
}

/// Owner first (it clears setuid bits and capabilities), then xattrs, mode and times.
fn finish(
    fd: BorrowedFd<'_>,
    uid: Option<Uid>,
    gid: Option<Gid>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    mode: Mode,
    times: &Timestamps,
    shown: &Path,
) -> Result<()> {
    rustix::fs::fchown(fd, uid, gid).ctx("chown", shown)?;
    for (n, v) in xattrs {
        xattr::set(Target::Fd(fd), n, v).ctx("set xattr on", shown)?;
    }
    rustix::fs::fchmod(fd, mode).ctx("chmod", shown)?;
    rustix::fs::futimens(fd, times).ctx("set times on", shown)
}

/// Give the directory `fd` the owner, mode and xattrs of `src` (a directory).
pub(crate) fn copy_dir_meta(src: &Path, fd: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(src).ctx("stat", src)?;
    let xattrs = xattr::read_all::<File>(Target::NoFollow(src)).ctx("read xattrs of", src)?;
    finish(
        fd,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        &xattrs,
        Mode::from_raw_mode(md.mode() & 0o7777),
        &times_of(&md),
        shown,
    )
}

/// Whether two paths are on the same file system.
pub(crate) fn same_device(a: &Path, b: &Path) -> Result<bool> {
    let sa = rustix::fs::stat(a).ctx("stat", a)?;
    let sb = rustix::fs::stat(b).ctx("stat", b)?;
    Ok(sa.st_dev == sb.st_dev)
}

/// (device, inode) of a path, following symlinks.
pub(crate) fn dev_ino(path: &Path) -> Result<(u64, u64)> {
    let st = rustix::fs::statat(CWD, path, AtFlags::empty()).ctx("stat", path)?;
    Ok((st.st_dev, st.st_ino))
}

/// An exclusive lock on a lock file, released (and the file removed) on drop.
///
/// The protocol is libglnx's, which ostree uses for `ostree/lock`: an OFD `fcntl` write
/// lock on the whole file; the holder unlinks the file when done, so a waiter that gets a
/// lock on an unlinked file tries again.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = rustix::fs::fcntl_lock(&self.file, rustix::fs::FlockOperation::Unlock);
    }
}

pub(crate) fn lock_exclusive(path: &Path) -> Result<FileLock> {
    loop {
        let fd = rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx("open", path)?;
        rustix::fs::fcntl_lock(&fd, rustix::fs::FlockOperation::LockExclusive).ctx("lock", path)?;
        if rustix::fs::fstat(&fd).ctx("stat", path)?.st_nlink > 0 {
            return Ok(FileLock {
                file: File::from(fd),
                path: path.to_path_buf(),
            });
        }
    }
}
