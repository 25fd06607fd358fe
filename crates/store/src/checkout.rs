//! Check a commit (or a subtree of it) out into a directory.
//!
//! The result reproduces the committed tree: contents, modes (setuid, setgid and sticky
//! included), owners, xattrs and symlinks; files and symlinks get mtime 0, as ostree's do,
//! and so do the directories the checkout creates.
//!
//! The destination is untrusted. Everything is written relative to directory fds that were
//! opened with `O_NOFOLLOW | O_DIRECTORY`, one validated name at a time, with calls that
//! never follow a symlink in the last component (`mkdirat`, `openat(O_CREAT|O_EXCL)`,
//! `linkat`, `symlinkat`, `unlinkat`, `fchownat(AT_SYMLINK_NOFOLLOW)`). So nothing is ever
//! written outside the destination, even when it already holds symlinks pointing outside:
//! in union mode an existing file or symlink is unlinked and created anew (never written
//! through), and an existing symlink where a directory belongs is refused with
//! [`Error::UnsafeTarget`].
//!
//! Content comes from the repository according to its mode: bare objects are hardlinked
//! (falling back to a copy across filesystems), bare-user-only objects are hardlinked when
//! their on-disk owner is the committed one (or owners do not matter, in user mode),
//! bare-user objects are copied and given their real metadata (the object itself carries
//! `user.ostreemeta` and a masked mode), and archive objects are decompressed. Files are
//! checked out on all cores. As with ostree, a hardlinked checkout shares inodes with the
//! repository: change its files by replacing them, never by writing into them (or use
//! `force_copy`).

use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::format::{DirMeta, FileHeader, PERMISSION_BITS};
use crate::repo::{ContentReader, Repo, RepoMode, zero_times};
use crate::tree::{self, TreeEntry};
use crate::xattr::{self, Target};
use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How to check out.
#[derive(Clone, Debug, Default)]
pub struct CheckoutOptions {
    /// Check out only this path of the commit (`/usr`, `/etc/os-release`). A directory's
    /// contents go straight into the destination, which gets the directory's metadata; a
    /// file goes into the destination directory under its own name.
    pub subpath: Option<String>,
    /// Merge into an existing destination: existing files and symlinks are replaced by the
    /// committed ones, existing directories are entered (and their metadata left alone),
    /// everything else is kept. Without it, a destination that exists must be empty.
    pub union: bool,
    /// Like `ostree checkout -U`: do not set owners or xattrs, and drop setuid/setgid. For
    /// unprivileged checkouts.
    pub user_mode: bool,
    /// Copy file contents even where a hardlink to the object would do.
    pub force_copy: bool,
}

/// What a checkout did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckoutStats {
    /// The commit that was checked out.
    pub commit: Option<Checksum>,
    /// Directories created or entered (the destination included).
    pub dirs: u64,
    /// Regular files checked out.
    pub files: u64,
    /// Symlinks checked out.
    pub symlinks: u64,
    /// Files and symlinks that are hardlinks to repository objects.
    pub hardlinked: u64,
    /// Bytes of file content written (copies and decompressions).
    pub bytes_copied: u64,
}

#[derive(Default)]
struct Counters {
    dirs: AtomicU64,
    files: AtomicU64,
    symlinks: AtomicU64,
    hardlinked: AtomicU64,
    bytes_copied: AtomicU64,
}

struct Ctx<'a> {
    repo: &'a Repo,
    opts: &'a CheckoutOptions,
    dest: &'a Path,
    /// Whether objects may be hardlinked at all (repo mode and options).
    may_link: bool,
    /// Set after the first EXDEV: the destination is on another filesystem.
    cross_device: AtomicBool,
    counters: Counters,
}

fn rel_join(rel: &Path, name: &str) -> PathBuf {
    if rel.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        rel.join(name)
    }
}

/// Check `rev` (a ref or a commit checksum) out into `dest`.
pub fn checkout(
    repo: &Repo,
    rev: &str,
    dest: &Path,
    opts: &CheckoutOptions,
) -> Result<CheckoutStats> {
    let commit = repo.resolve_rev(rev)?;
    checkout_commit(repo, &commit, dest, opts)
}

/// Check a commit out into `dest`; see [`checkout`].
pub fn checkout_commit(
    repo: &Repo,
    commit: &Checksum,
    dest: &Path,
    opts: &CheckoutOptions,
) -> Result<CheckoutStats> {
    let entry = match opts.subpath.as_deref() {
        None => tree::commit_root(repo, commit)?,
        Some(p) => tree::resolve_path(repo, commit, p)?,
    };
    let may_link = !opts.force_copy
        && match repo.mode() {
            RepoMode::Bare => !opts.user_mode,
            RepoMode::BareUserOnly => true,
            RepoMode::BareUser | RepoMode::Archive => false,
        };
    let ctx = Ctx {
        repo,
        opts,
        dest,
        may_link,
        cross_device: AtomicBool::new(false),
        counters: Counters::default(),
    };
    match entry {
        TreeEntry::Dir { tree, meta } => {
            let meta = repo.load_dirmeta(&meta)?;
            let (fd, ours) = open_dest(dest, opts.union, true)?;
            ctx.checkout_dir(&fd, Path::new(""), &tree, &meta, ours)?;
        }
        TreeEntry::File { checksum } => {
            let name = opts
                .subpath
                .as_deref()
                .and_then(|p| p.split('/').rfind(|c| !c.is_empty() && *c != "."))
                .ok_or_else(|| Error::Invalid("subpath names no file".into()))?;
            let (fd, _) = open_dest(dest, true, false)?;
            ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
            ctx.checkout_file(fd.as_fd(), Path::new(""), name, &checksum)?;
        }
    }
    let c = &ctx.counters;
    Ok(CheckoutStats {
        commit: Some(*commit),
        dirs: c.dirs.load(Ordering::Relaxed),
        files: c.files.load(Ordering::Relaxed),
        symlinks: c.symlinks.load(Ordering::Relaxed),
        hardlinked: c.hardlinked.load(Ordering::Relaxed),
        bytes_copied: c.bytes_copied.load(Ordering::Relaxed),
    })
}

/// Open a directory entry without following a symlink, with a clear error when it is a
/// symlink or not a directory.
fn open_dir_nofollow(dirfd: BorrowedFd<'_>, name: &Path, shown: &Path) -> Result<OwnedFd> {
    match rustix::fs::openat(
        dirfd,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(e @ (Errno::LOOP | Errno::NOTDIR)) => {
            let why = match rustix::fs::statat(dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    "is a symlink where the commit has a directory; refusing to follow it"
                }
                Ok(_) => "exists and is not a directory",
                Err(_) => return Err(e).ctx("open directory", shown),
            };
            Err(Error::UnsafeTarget {
                path: shown.to_path_buf(),
                why: why.into(),
            })
        }
        Err(e) => Err(e).ctx("open directory", shown),
    }
}

/// Create or open the destination. Returns its fd and whether the checkout owns it (and
/// so applies the committed directory metadata to it).
fn open_dest(dest: &Path, union: bool, require_empty: bool) -> Result<(OwnedFd, bool)> {
    let created = match rustix::fs::mkdir(dest, Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(e).ctx("create directory", dest),
    };
    let fd = open_dir_nofollow(CWD, dest, dest)?;
    if created {
        return Ok((fd, true));
    }
    if union {
        return Ok((fd, false));
    }
    if require_empty {
        let mut dir = rustix::fs::Dir::read_from(&fd).ctx("list", dest)?;
        while let Some(entry) = dir.read() {
            let entry = entry.ctx("list", dest)?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                return Err(Error::UnsafeTarget {
                    path: dest.to_path_buf(),
                    why: "exists and is not empty (check out with union to merge into it)".into(),
                });
            }
        }
    }
    // An existing empty destination is ours to set up.
    Ok((fd, true))
}

enum Child<'t> {
    File(&'t str, &'t Checksum),
    Dir(&'t str, &'t Checksum, &'t Checksum),
}

impl Ctx<'_> {
    fn shown(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.dest.to_path_buf()
        } else {
            self.dest.join(rel)
        }
    }

    fn checkout_dir(
        &self,
        fd: &OwnedFd,
        rel: &Path,
        tree_csum: &Checksum,
        meta: &DirMeta,
        ours: bool,
    ) -> Result<()> {
        let tree = self.repo.load_dirtree(tree_csum)?;
        self.counters.dirs.fetch_add(1, Ordering::Relaxed);
        if ours && !self.opts.user_mode {
            for (n, v) in &meta.xattrs {
                xattr::set(Target::Fd(fd.as_fd()), n, v).ctx("set xattr on", self.shown(rel))?;
            }
        }
        let children: Vec<Child<'_>> = tree
            .files
            .iter()
            .map(|(n, c)| Child::File(n, c))
            .chain(tree.dirs.iter().map(|(n, t, m)| Child::Dir(n, t, m)))
            .collect();
        children.par_iter().try_for_each(|child| match child {
            Child::File(name, csum) => self.checkout_file(fd.as_fd(), rel, name, csum),
            Child::Dir(name, t, m) => {
                let sub_rel = rel_join(rel, name);
                let shown = self.shown(&sub_rel);
                let meta = self.repo.load_dirmeta(m)?;
                let created = match rustix::fs::mkdirat(fd, *name, Mode::from_raw_mode(0o700)) {
                    Ok(()) => true,
                    Err(Errno::EXIST) if self.opts.union => false,
                    Err(Errno::EXIST) => {
                        return Err(Error::UnsafeTarget {
                            path: shown,
                            why: "already exists (check out with union to merge)".into(),
                        });
                    }
                    Err(e) => return Err(e).ctx("create directory", shown),
                };
                let sub = open_dir_nofollow(fd.as_fd(), Path::new(name), &shown)?;
                self.checkout_dir(&sub, &sub_rel, t, &meta, created)
            }
        })?;
        if ours {
            self.finish_dir(fd, rel, meta)?;
        }
        Ok(())
    }

    /// Owner, mode and mtime last, once the children exist: nobody else can use the
    /// directory while it is being filled (it is 0700 until now).
    fn finish_dir(&self, fd: &OwnedFd, rel: &Path, meta: &DirMeta) -> Result<()> {
        let shown = || self.shown(rel);
        if !self.opts.user_mode {
            rustix::fs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .ctx("chown", shown())?;
        }
        let mut mode = meta.mode & PERMISSION_BITS;
        if self.repo.mode() == RepoMode::BareUserOnly {
            // As ostree: bare-user-only trees never get world-writable or special dirs.
            mode &= 0o775;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).ctx("chmod", shown())?;
        rustix::fs::futimens(fd, &zero_times()).ctx("set times on", shown())
    }

    fn checkout_file(
        &self,
        dir: BorrowedFd<'_>,
        rel: &Path,
        name: &str,
        csum: &Checksum,
    ) -> Result<()> {
        let shown = self.shown(&rel_join(rel, name));
        if self.may_link
            && !self.cross_device.load(Ordering::Relaxed)
            && self.try_link(dir, name, csum, &shown)?
        {
            return Ok(());
        }
        let (header, size, reader) = self.repo.open_content(csum)?;
        if header.is_symlink() {
            self.write_symlink(dir, name, &header, &shown)?;
            self.counters.symlinks.fetch_add(1, Ordering::Relaxed);
        } else {
            self.write_file(dir, name, csum, &header, size, reader, &shown)?;
            self.counters.files.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Hardlink the object into place if its on-disk metadata is the committed one.
    /// Returns false when a copy must be made instead.
    fn try_link(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        csum: &Checksum,
        shown: &Path,
    ) -> Result<bool> {
        let obj = self.repo.object_path(ObjectType::File, csum);
        let st = match rustix::fs::statat(CWD, &obj, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                return Err(Error::Missing {
                    ty: ObjectType::File,
                    csum: *csum,
                });
            }
            Err(e) => return Err(e).ctx("stat", obj),
        };
        let ft = FileType::from_raw_mode(st.st_mode);
        let symlink = match ft {
            FileType::Symlink => true,
            FileType::RegularFile => false,
            _ => {
                return Err(Error::Corrupt {
                    ty: ObjectType::File,
                    csum: *csum,
                    why: format!("object is a {ft:?}"),
                });
            }
        };
        if self.repo.mode() == RepoMode::BareUserOnly {
            // The committed owner is 0:0 (the mode's convention); the object's is whoever
            // wrote it. It only matters when owners are applied.
            if !self.opts.user_mode && (st.st_uid != 0 || st.st_gid != 0) {
                return Ok(false);
            }
            if self.opts.user_mode && st.st_mode & 0o6000 != 0 {
                return Ok(false);
            }
        }
        let mut replaced = false;
        loop {
            match rustix::fs::linkat(CWD, &obj, dir, name, AtFlags::empty()) {
                Ok(()) => break,
                Err(Errno::EXIST) if self.opts.union && !replaced => {
                    self.unlink_existing(dir, name, shown)?;
                    replaced = true;
                }
                Err(Errno::EXIST) => return Err(exists(shown)),
                Err(Errno::XDEV) => {
                    self.cross_device.store(true, Ordering::Relaxed);
                    return Ok(false);
                }
                // Too many links, or hardlinks refused (protected_hardlinks): copy.
                Err(Errno::MLINK | Errno::PERM | Errno::ACCESS) => return Ok(false),
                Err(Errno::NOENT) => {
                    return Err(Error::Missing {
                        ty: ObjectType::File,
                        csum: *csum,
                    });
                }
                Err(e) => return Err(e).ctx("hardlink object to", shown),
            }
        }
        self.counters.hardlinked.fetch_add(1, Ordering::Relaxed);
        if symlink {
            self.counters.symlinks.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.files.fetch_add(1, Ordering::Relaxed);
        }
        Ok(true)
    }

    /// Union mode: remove an existing file or symlink (never a directory) so that a new
    /// one can be created in its place. Nothing is ever written through it.
    fn unlink_existing(&self, dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<()> {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(Errno::ISDIR) => Err(Error::UnsafeTarget {
                path: shown.to_path_buf(),
                why: "is a directory where the commit has a file".into(),
            }),
            Err(e) => Err(e).ctx("remove", shown),
        }
    }

    fn write_symlink(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        h: &FileHeader,
        shown: &Path,
    ) -> Result<()> {
        let mut replaced = false;
        loop {
            match rustix::fs::symlinkat(h.symlink_target.as_str(), dir, name) {
                Ok(()) => break,
                Err(Errno::EXIST) if self.opts.union && !replaced => {
                    self.unlink_existing(dir, name, shown)?;
                    replaced = true;
                }
                Err(Errno::EXIST) => return Err(exists(shown)),
                Err(e) => return Err(e).ctx("create symlink", shown),
            }
        }
        if !self.opts.user_mode {
            rustix::fs::chownat(
                dir,
                name,
                Some(Uid::from_raw(h.uid)),
                Some(Gid::from_raw(h.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .ctx("chown", shown)?;
            if !h.xattrs.is_empty() {
                // There is no lsetxattrat: name the link through its directory's fd, whose
                // /proc entry resolves to that very directory; the link itself is not
                // followed.
                let via = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
                for (n, v) in &h.xattrs {
                    xattr::set::<File>(Target::NoFollow(&via), n, v).ctx("set xattr on", shown)?;
                }
            }
        }
        rustix::fs::utimensat(dir, name, &zero_times(), AtFlags::SYMLINK_NOFOLLOW)
            .ctx("set times on", shown)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_file(
        &self,
        dir: BorrowedFd<'_>,
        name: &str,
        csum: &Checksum,
        h: &FileHeader,
        size: u64,
        reader: ContentReader,
        shown: &Path,
    ) -> Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let mut replaced = false;
        let fd = loop {
            match rustix::fs::openat(
                dir,
                name,
                flags | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => break fd,
                Err(Errno::EXIST) if self.opts.union && !replaced => {
                    self.unlink_existing(dir, name, shown)?;
                    replaced = true;
                }
                Err(Errno::EXIST) => return Err(exists(shown)),
                Err(e) => return Err(e).ctx("create", shown),
            }
        };
        let mut f = File::from(fd);
        // File-to-file copies go through copy_file_range (reflinks where supported).
        let copied = match reader {
            ContentReader::Plain(mut r) => std::io::copy(&mut r, &mut f),
            mut other => std::io::copy(&mut other, &mut f),
        };
        let n = copied.map_err(|e| Error::Corrupt {
            ty: ObjectType::File,
            csum: *csum,
            why: format!("reading its payload for {}: {e}", shown.display()),
        })?;
        if n != size {
            return Err(Error::Corrupt {
                ty: ObjectType::File,
                csum: *csum,
                why: format!("payload is {n} bytes, its header says {size}"),
            });
        }
        f.flush().ctx("write", shown)?;
        self.counters.bytes_copied.fetch_add(n, Ordering::Relaxed);
        let mut mode = h.mode & PERMISSION_BITS;
        if self.opts.user_mode {
            mode &= !0o6000;
        } else {
            // chown first (it clears setuid/setgid and file capabilities), then the
            // xattrs, then the mode.
            rustix::fs::fchown(&f, Some(Uid::from_raw(h.uid)), Some(Gid::from_raw(h.gid)))
                .ctx("chown", shown)?;
            for (n, v) in &h.xattrs {
                xattr::set(Target::Fd(f.as_fd()), n, v).ctx("set xattr on", shown)?;
            }
        }
        rustix::fs::fchmod(&f, Mode::from_raw_mode(mode)).ctx("chmod", shown)?;
        rustix::fs::futimens(&f, &zero_times()).ctx("set times on", shown)
    }
}

fn exists(shown: &Path) -> Error {
    Error::UnsafeTarget {
        path: shown.to_path_buf(),
        why: "already exists (check out with union to replace it)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::fixtures::*;
    use std::os::unix::fs::MetadataExt;

    const FULL: Compare = Compare {
        owners: true,
        xattrs: true,
    };

    fn setup(mode: &str, make: fn(&Path)) -> (tempfile::TempDir, PathBuf, Repo) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        make(&src);
        let repo_path = init_repo(tmp.path(), mode);
        commit(&repo_path, "main", &src, &[]);
        let repo = Repo::open(&repo_path).unwrap();
        (tmp, src, repo)
    }

    fn opts() -> CheckoutOptions {
        CheckoutOptions::default()
    }

    fn reproduces_tree(mode: &str) -> CheckoutStats {
        let (tmp, src, repo) = setup(mode, rich_tree);
        let dest = tmp.path().join("co");
        let stats = checkout(&repo, "main", &dest, &opts()).unwrap();
        assert_same_tree(&src, &dest, &FULL);
        assert_mtimes_zero(&dest, mode != "bare");
        // The capability survived (chown after setxattr would have dropped it).
        let caps = xattr::read_one::<File>(
            Target::NoFollow(&dest.join("bin/cap")),
            "security.capability",
        )
        .unwrap();
        assert_eq!(caps.as_deref(), Some(CAP_NET_RAW));
        assert_eq!(
            dest.join("bin/suid").symlink_metadata().unwrap().mode(),
            0o104755
        );
        // 13 regular files, 4 symlinks, 12 directories in rich_tree.
        assert_eq!(
            (stats.files, stats.symlinks, stats.dirs),
            (13, 4, 12),
            "{stats:?}"
        );
        stats
    }

    #[test]
    fn bare_checkout_reproduces_the_tree_with_hardlinks() {
        let stats = reproduces_tree("bare");
        assert_eq!(stats.hardlinked, 17);
        assert_eq!(stats.bytes_copied, 0);
    }

    #[test]
    fn archive_checkout_reproduces_the_tree() {
        let stats = reproduces_tree("archive");
        assert_eq!(stats.hardlinked, 0);
        assert!(stats.bytes_copied >= 1_500_000);
    }

    #[test]
    fn bare_user_checkout_reproduces_the_tree() {
        let stats = reproduces_tree("bare-user");
        assert_eq!(stats.hardlinked, 0);
    }

    #[test]
    fn bare_checkout_hardlinks_objects() {
        let (tmp, _src, repo) = setup("bare", rich_tree);
        let dest = tmp.path().join("co");
        checkout(&repo, "main", &dest, &opts()).unwrap();
        let TreeEntry::File { checksum } =
            tree::resolve_path(&repo, &repo.resolve_rev("main").unwrap(), "/hello.txt").unwrap()
        else {
            panic!()
        };
        let obj = repo.object_path(ObjectType::File, &checksum);
        assert_eq!(
            obj.metadata().unwrap().ino(),
            dest.join("hello.txt").metadata().unwrap().ino()
        );
        // force_copy makes independent files.
        let copy = tmp.path().join("copy");
        let stats = checkout(
            &repo,
            "main",
            &copy,
            &CheckoutOptions {
                force_copy: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(stats.hardlinked, 0);
        assert_ne!(
            obj.metadata().unwrap().ino(),
            copy.join("hello.txt").metadata().unwrap().ino()
        );
        assert_same_tree(&dest, &copy, &FULL);
    }

    #[test]
    fn bare_checkout_across_filesystems_copies() {
        let (_tmp, src, repo) = setup("bare", rich_tree);
        // /dev/shm is a tmpfs: another filesystem than the repository's.
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let dest = shm.path().join("co");
        let stats = checkout(&repo, "main", &dest, &opts()).unwrap();
        assert_eq!(stats.hardlinked, 0);
        assert!(stats.bytes_copied >= 1_500_000);
        assert_same_tree(&src, &dest, &FULL);
        assert_mtimes_zero(&dest, true);
    }

    #[test]
    fn bare_user_only_checkout_hardlinks() {
        let (tmp, src, repo) = setup("bare-user-only", plain_tree);
        let dest = tmp.path().join("co");
        let stats = checkout(&repo, "main", &dest, &opts()).unwrap();
        assert_eq!((stats.files, stats.symlinks, stats.hardlinked), (3, 1, 4));
        assert_same_tree(&src, &dest, &FULL);
        assert!(dest.join("bin/tool").metadata().unwrap().nlink() >= 2);
    }

    #[test]
    fn user_mode_skips_owners_xattrs_and_setuid() {
        let (tmp, _src, repo) = setup("bare", rich_tree);
        let dest = tmp.path().join("co");
        let stats = checkout(
            &repo,
            "main",
            &dest,
            &CheckoutOptions {
                user_mode: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(stats.hardlinked, 0);
        let md = dest.join("etc/owned").symlink_metadata().unwrap();
        assert_eq!((md.uid(), md.gid()), (0, 0));
        assert_eq!(
            dest.join("bin/suid").symlink_metadata().unwrap().mode(),
            0o100755
        );
        assert!(
            xattr::read_all::<File>(Target::NoFollow(&dest.join("etc/xattr")))
                .unwrap()
                .is_empty()
        );
        assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello\n");
    }

    #[test]
    fn subpath_directory_and_file() {
        let (tmp, src, repo) = setup("archive", rich_tree);
        let dest = tmp.path().join("etc");
        checkout(
            &repo,
            "main",
            &dest,
            &CheckoutOptions {
                subpath: Some("/etc".into()),
                ..opts()
            },
        )
        .unwrap();
        assert_same_tree(&src.join("etc"), &dest, &FULL);

        let one = tmp.path().join("one");
        let stats = checkout(
            &repo,
            "main",
            &one,
            &CheckoutOptions {
                subpath: Some("/etc/private/secret/.".into()),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(stats.files, 1);
        let names: Vec<_> = std::fs::read_dir(&one).unwrap().collect();
        assert_eq!(names.len(), 1);
        let md = one.join("secret").symlink_metadata().unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode()), (1000, 100, 0o100600));
        assert_eq!(std::fs::read(one.join("secret")).unwrap(), b"s3cret");

        let err = checkout(
            &repo,
            "main",
            &tmp.path().join("none"),
            &CheckoutOptions {
                subpath: Some("/etc/nope".into()),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(matches!(err, Error::PathNotFound { ref path, .. } if path == "/etc/nope"));
    }

    #[test]
    fn existing_destination_needs_union() {
        let (tmp, src, repo) = setup("bare", rich_tree);
        let dest = tmp.path().join("co");
        // An existing empty directory is fine.
        std::fs::create_dir(&dest).unwrap();
        checkout(&repo, "main", &dest, &opts()).unwrap();
        assert_same_tree(&src, &dest, &FULL);
        // A second checkout over it is refused without union...
        let err = checkout(&repo, "main", &dest, &opts()).unwrap_err();
        assert!(matches!(err, Error::UnsafeTarget { .. }), "{err}");
        // ...and with union replaces changed files, keeping extra ones.
        std::fs::remove_file(dest.join("hello.txt")).unwrap();
        write(&dest.join("hello.txt"), b"changed", 0o600);
        write(&dest.join("etc/extra"), b"mine", 0o644);
        std::fs::remove_file(dest.join("link")).unwrap();
        write(&dest.join("link"), b"was a symlink, now a file", 0o644);
        checkout(
            &repo,
            "main",
            &dest,
            &CheckoutOptions {
                union: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello\n");
        assert_eq!(std::fs::read(dest.join("etc/extra")).unwrap(), b"mine");
        std::fs::remove_file(dest.join("etc/extra")).unwrap();
        assert_same_tree(&src, &dest, &FULL);
    }

    /// dest/bin is a symlink to a directory outside dest: no mode may write through it.
    #[test]
    fn refuses_symlink_escape_in_every_mode() {
        for mode in ["bare", "archive", "bare-user"] {
            let (tmp, _src, repo) = setup(mode, rich_tree);
            let outside = tmp.path().join("outside");
            std::fs::create_dir(&outside).unwrap();
            for union in [false, true] {
                let dest = tmp.path().join(format!("co-{union}"));
                std::fs::create_dir(&dest).unwrap();
                std::os::unix::fs::symlink(&outside, dest.join("bin")).unwrap();
                let o = CheckoutOptions { union, ..opts() };
                let err = checkout(&repo, "main", &dest, &o).unwrap_err();
                match &err {
                    Error::UnsafeTarget { path, .. } if union => {
                        assert_eq!(path, &dest.join("bin"), "{mode}")
                    }
                    Error::UnsafeTarget { path, .. } => assert_eq!(path, &dest, "{mode}"),
                    other => panic!("{mode}: {other}"),
                }
                assert_eq!(
                    std::fs::read_dir(&outside).unwrap().count(),
                    0,
                    "{mode}: wrote outside"
                );
            }
            // A symlinked subdirectory deeper down, reached while merging.
            let dest = tmp.path().join("deep");
            checkout(&repo, "main", &dest, &opts()).unwrap();
            let cdir = dest.join("a/b/c");
            std::fs::remove_dir_all(&cdir).unwrap();
            std::os::unix::fs::symlink(&outside, &cdir).unwrap();
            let o = CheckoutOptions {
                union: true,
                ..opts()
            };
            let err = checkout(&repo, "main", &dest, &o).unwrap_err();
            assert!(
                matches!(&err, Error::UnsafeTarget { path, .. } if path == &cdir),
                "{mode}: {err}"
            );
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        }
    }

    /// With union, an existing symlink where the commit has a file is replaced, never
    /// written through.
    #[test]
    fn union_replaces_symlinks_instead_of_writing_through_them() {
        for mode in ["bare", "archive"] {
            let (tmp, src, repo) = setup(mode, rich_tree);
            let victim = tmp.path().join("victim");
            std::fs::write(&victim, b"precious").unwrap();
            let dest = tmp.path().join("co");
            std::fs::create_dir(&dest).unwrap();
            for name in ["hello.txt", "link", "empty.txt"] {
                std::os::unix::fs::symlink(&victim, dest.join(name)).unwrap();
            }
            let o = CheckoutOptions {
                union: true,
                ..opts()
            };
            checkout(&repo, "main", &dest, &o).unwrap();
            assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{mode}");
            assert_eq!(
                victim.metadata().unwrap().mode() & 0o7777,
                0o644,
                "{mode}: chmod went through"
            );
            assert_same_tree(&src.join("etc"), &dest.join("etc"), &FULL);
            assert!(
                dest.join("hello.txt")
                    .symlink_metadata()
                    .unwrap()
                    .file_type()
                    .is_file()
            );
            assert_eq!(std::fs::read(dest.join("hello.txt")).unwrap(), b"hello\n");
        }
    }

    #[test]
    fn refuses_symlink_as_destination_and_directory_in_place_of_file() {
        let (tmp, _src, repo) = setup("archive", rich_tree);
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let dest = tmp.path().join("dest-link");
        std::os::unix::fs::symlink(&outside, &dest).unwrap();
        let o = CheckoutOptions {
            union: true,
            ..opts()
        };
        let err = checkout(&repo, "main", &dest, &o).unwrap_err();
        assert!(matches!(&err, Error::UnsafeTarget { path, .. } if path == &dest));
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);

        let dest = tmp.path().join("co");
        std::fs::create_dir_all(dest.join("hello.txt")).unwrap();
        let err = checkout(&repo, "main", &dest, &o).unwrap_err();
        assert!(
            matches!(&err, Error::UnsafeTarget { path, .. } if path == &dest.join("hello.txt")),
            "{err}"
        );
    }

    #[test]
    fn missing_object_is_reported() {
        let (tmp, _src, repo) = setup("archive", rich_tree);
        let commit = repo.resolve_rev("main").unwrap();
        let TreeEntry::File { checksum } =
            tree::resolve_path(&repo, &commit, "/hello.txt").unwrap()
        else {
            panic!()
        };
        std::fs::remove_file(repo.object_path(ObjectType::File, &checksum)).unwrap();
        let err = checkout(&repo, "main", &tmp.path().join("co"), &opts()).unwrap_err();
        assert!(
            matches!(err, Error::Missing { ty: ObjectType::File, csum } if csum == checksum),
            "{err}"
        );
    }

    #[test]
    fn same_result_as_ostree_checkout() {
        let (tmp, _src, repo) = setup("archive", rich_tree);
        let theirs = tmp.path().join("theirs");
        ostree(&[
            "checkout",
            &format!("--repo={}", repo.path().display()),
            "main",
            theirs.to_str().unwrap(),
        ]);
        let ours = tmp.path().join("ours");
        checkout(&repo, "main", &ours, &opts()).unwrap();
        assert_same_tree(&theirs, &ours, &FULL);
    }
}
