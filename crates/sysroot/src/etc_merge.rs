//! The `/etc` three-way merge of a new deployment.
//!
//! * base: the old deployment's `usr/etc` (the defaults it shipped with);
//! * local: the old deployment's `etc` (what the admin has now);
//! * new: the new deployment's `usr/etc` (the new defaults), already copied to its `etc`.
//!
//! What the admin changed (base → local) is applied to the new `etc`: removed paths are
//! removed, modified and added files, symlinks and directories are copied over. So files
//! that only the new OS changed take the new version, and files the admin changed keep the
//! admin's version.
//!
//! **Conflict rule: the local version wins**, as in ostree. A conflict is a path the admin
//! changed (or removed, or added) that the new OS also changed relative to base; the local
//! state is kept and the path is reported in [`EtcMergeReport::conflicts`], so the admin
//! can look at the new default in `/usr/etc`. When the local change needs a directory where
//! the new OS has something else, that something is replaced by a directory (reported too).
//!
//! Entries are compared by type, owner, mode and content (or symlink target); xattrs and
//! times are ignored, as ostree ignores them (SELinux labels differ between the two
//! copies). Sockets, FIFOs and device nodes in the local `/etc` are not carried over and
//! are reported as ignored. Nothing is ever written through a symlink of the new tree.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use rustix::fs::{FileType, Mode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One path both sides changed; the local version was kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EtcConflict {
    /// Relative to `/etc`.
    pub path: String,
    pub why: String,
}

/// What the merge did. Paths are relative to `/etc`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EtcMergeReport {
    /// Local modifications carried into the new deployment.
    pub modified: Vec<String>,
    /// Local additions carried over.
    pub added: Vec<String>,
    /// Local removals applied to the new deployment.
    pub removed: Vec<String>,
    /// Paths changed on both sides (the local version was kept).
    pub conflicts: Vec<EtcConflict>,
    /// Local special files that were not carried over.
    pub ignored: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        uid: u32,
        gid: u32,
        digest: [u8; 32],
    },
    Symlink {
        uid: u32,
        gid: u32,
        target: PathBuf,
    },
    Dir {
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Special,
}

impl Node {
    fn is_dir(&self) -> bool {
        matches!(self, Node::Dir { .. })
    }
}

type Tree = BTreeMap<PathBuf, Node>;

/// Snapshot a directory tree (not following symlinks). A missing root is an empty tree.
fn scan(root: &Path) -> Result<Tree> {
    let mut out = Tree::new();
    if std::fs::symlink_metadata(root).is_err() {
        return Ok(out);
    }
    scan_dir(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn scan_dir(root: &Path, rel: &Path, out: &mut Tree) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .ctx("list", &dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx("list", &dir)?;
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let p = root.join(&rel);
        let md = std::fs::symlink_metadata(&p).ctx("stat", &p)?;
        let ft = md.file_type();
        let node = if ft.is_symlink() {
            Node::Symlink {
                uid: md.uid(),
                gid: md.gid(),
                target: std::fs::read_link(&p).ctx("read symlink", &p)?,
            }
        } else if ft.is_dir() {
            Node::Dir {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
            }
        } else if ft.is_file() {
            let mut h = Sha256::new();
            let mut f = std::fs::File::open(&p).ctx("open", &p)?;
            std::io::copy(&mut f, &mut h).ctx("read", &p)?;
            Node::File {
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                digest: h.finalize().into(),
            }
        } else {
            Node::Special
        };
        let dir = node.is_dir();
        out.insert(rel.clone(), node);
        if dir {
            scan_dir(root, &rel, out)?;
        }
    }
    Ok(())
}

/// Whether `p` or anything below it differs between two snapshots.
fn subtree_differs(a: &Tree, b: &Tree, p: &Path) -> bool {
    let below = |t: &'_ Tree| {
        t.range(p.to_path_buf()..)
            .take_while(|(k, _)| k.starts_with(p))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    below(a) != below(b)
}

fn shown(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

struct Merger<'a> {
    local_root: &'a Path,
    new_etc: &'a Path,
    new_fd: OwnedFd,
    report: EtcMergeReport,
}

impl Merger<'_> {
    fn conflict(&mut self, p: &Path, why: &str) {
        self.report.conflicts.push(EtcConflict {
            path: shown(p),
            why: why.to_string(),
        });
    }

    /// Open the parent directory of `rel` in the new `/etc`, creating missing directories
    /// (with the local directory's owner and mode) and replacing non-directories.
    fn parent_fd(&mut self, rel: &Path) -> Result<OwnedFd> {
        let mut fd = fsutil::open_beneath(self.new_fd.as_fd(), Path::new(""))
            .ctx("open directory", self.new_etc)?;
        let mut so_far = PathBuf::new();
        let Some(parent) = rel.parent() else {
            return Ok(fd);
        };
        for comp in parent.components() {
            let name = comp.as_os_str();
            so_far.push(name);
            let shown_path = self.new_etc.join(&so_far);
            match fsutil::type_at(fd.as_fd(), name).ctx("stat", &shown_path)? {
                Some(FileType::Directory) => {}
                other => {
                    if other.is_some() {
                        self.conflict(
                            &so_far,
                            "the new OS has a non-directory here; replaced by the local directory to hold local changes",
                        );
                        fsutil::remove_at(fd.as_fd(), name, &shown_path)?;
                    }
                    rustix::fs::mkdirat(fd.as_fd(), name, Mode::from_raw_mode(0o700))
                        .ctx("create directory", &shown_path)?;
                    let sub = fsutil::open_beneath(fd.as_fd(), Path::new(name))
                        .ctx("open directory", &shown_path)?;
                    fsutil::copy_dir_meta(
                        &self.local_root.join(&so_far),
                        sub.as_fd(),
                        &shown_path,
                    )?;
                }
            }
            fd = fsutil::open_beneath(fd.as_fd(), Path::new(name))
                .ctx("open directory", &shown_path)?;
        }
        Ok(fd)
    }

    /// Replace `rel` in the new `/etc` with the local version. Returns whether a whole
    /// directory was copied (so its contents need no further work).
    fn apply(&mut self, rel: &Path, local: &Node) -> Result<bool> {
        let parent = self.parent_fd(rel)?;
        let Some(name) = rel.file_name() else {
            return Ok(false);
        };
        let dest = self.new_etc.join(rel);
        let src = self.local_root.join(rel);
        let existing = fsutil::type_at(parent.as_fd(), name).ctx("stat", &dest)?;
        if local.is_dir() && existing == Some(FileType::Directory) {
            let fd = fsutil::open_beneath(parent.as_fd(), Path::new(name))
                .ctx("open directory", &dest)?;
            fsutil::copy_dir_meta(&src, fd.as_fd(), &dest)?;
            return Ok(false);
        }
        fsutil::remove_at(parent.as_fd(), name, &dest)?;
        fsutil::copy_at(&src, parent.as_fd(), name, &dest)?;
        Ok(local.is_dir())
    }

    fn remove(&mut self, rel: &Path) -> Result<()> {
        let dest = self.new_etc.join(rel);
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Ok(());
        };
        // A parent that is missing or not a directory in the new tree: nothing to remove.
        let Ok(pfd) = fsutil::open_beneath(self.new_fd.as_fd(), parent) else {
            return Ok(());
        };
        fsutil::remove_at(pfd.as_fd(), name, &dest)
    }
}

/// Merge the admin's changes from the old deployment `old` into the new deployment `new`
/// (whose `etc` must already be a copy of its `usr/etc`). See the module documentation.
pub fn merge(old: &Path, new: &Path) -> Result<EtcMergeReport> {
    let base_root = old.join("usr/etc");
    let local_root = old.join("etc");
    let new_etc = new.join("etc");
    let base = scan(&base_root)?;
    let local = scan(&local_root)?;
    let defaults = scan(&new.join("usr/etc"))?;
    if !new_etc.is_dir() {
        return Err(Error::Corrupt {
            path: new_etc,
            why: "missing; the new deployment has no /etc to merge into".into(),
        });
    }
    let mut m = Merger {
        local_root: &local_root,
        new_etc: &new_etc,
        new_fd: fsutil::open_dir(&new_etc)?,
        report: EtcMergeReport::default(),
    };

    // Removals: the top of each subtree the admin deleted.
    for p in base.keys() {
        if local.contains_key(p) {
            continue;
        }
        let parent_kept = match p.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => {
                matches!(local.get(parent), Some(Node::Dir { .. }))
            }
            _ => true,
        };
        if !parent_kept {
            continue;
        }
        if defaults.contains_key(p) && subtree_differs(&base, &defaults, p) {
            m.conflict(
                p,
                "removed locally and changed in the new OS; the removal wins",
            );
        }
        m.report.removed.push(shown(p));
        m.remove(p)?;
    }

    // Modifications and additions, parents before children.
    let mut copied: BTreeSet<PathBuf> = BTreeSet::new();
    for (p, l) in &local {
        if p.ancestors().skip(1).any(|a| copied.contains(a)) {
            continue;
        }
        if matches!(l, Node::Special) {
            m.report.ignored.push(shown(p));
            continue;
        }
        match base.get(p) {
            Some(b) if b == l => continue,
            Some(b) => {
                match defaults.get(p) {
                    Some(n) if n == b => {}
                    Some(_) => m.conflict(
                        p,
                        "changed locally and in the new OS; the local version wins",
                    ),
                    None => m.conflict(
                        p,
                        "changed locally and removed in the new OS; the local version is kept",
                    ),
                }
                m.report.modified.push(shown(p));
            }
            None => {
                if let Some(n) = defaults.get(p)
                    && n != l
                    && !(n.is_dir() && l.is_dir())
                {
                    m.conflict(p, "added locally and in the new OS; the local version wins");
                }
                m.report.added.push(shown(p));
            }
        }
        if m.apply(p, l)? {
            copied.insert(p.clone());
        }
    }

    // systemd's ConditionNeedsUpdate=/etc units must run on the first boot.
    m.remove(Path::new(".updated"))?;
    Ok(m.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(p: &Path, data: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn copy(src: &Path, dst: &Path) {
        let parent = fsutil::open_dir(dst.parent().unwrap()).unwrap();
        fsutil::copy_at(src, parent.as_fd(), dst.file_name().unwrap(), dst).unwrap();
    }

    /// old/usr/etc, old/etc (a copy, then edited), new/usr/etc and new/etc (a copy).
    fn setup(
        edit_base: impl Fn(&Path),
        edit_local: impl Fn(&Path),
        edit_new: impl Fn(&Path),
    ) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let old = tmp.path().join("old");
        let new = tmp.path().join("new");
        let base = old.join("usr/etc");
        write(&base.join("hostname"), "debian\n");
        write(&base.join("os-release"), "ID=test\nVERSION=1\n");
        write(&base.join("motd"), "hello\n");
        write(&base.join("gone-locally"), "x\n");
        write(&base.join("conf.d/a.conf"), "a=1\n");
        std::os::unix::fs::symlink("os-release", base.join("release-link")).unwrap();
        edit_base(&base);
        copy(&base, &old.join("etc"));
        edit_local(&old.join("etc"));
        std::fs::create_dir_all(new.join("usr")).unwrap();
        copy(&base, &new.join("usr/etc"));
        edit_new(&new.join("usr/etc"));
        copy(&new.join("usr/etc"), &new.join("etc"));
        (tmp, old, new)
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn local_edits_kept_new_defaults_taken_conflicts_reported() {
        let (_tmp, old, new) = setup(
            |_| {},
            |etc| {
                write(&etc.join("hostname"), "myhost\n");
                write(&etc.join("motd"), "local motd\n");
                write(&etc.join("added/x.conf"), "mine\n");
                std::fs::remove_file(etc.join("gone-locally")).unwrap();
            },
            |etc| {
                write(&etc.join("os-release"), "ID=test\nVERSION=2\n");
                write(&etc.join("motd"), "new motd\n");
                write(&etc.join("brand-new"), "from the OS\n");
            },
        );
        let r = merge(&old, &new).unwrap();
        let etc = new.join("etc");
        assert_eq!(read(&etc.join("hostname")), "myhost\n");
        assert_eq!(read(&etc.join("os-release")), "ID=test\nVERSION=2\n");
        assert_eq!(read(&etc.join("motd")), "local motd\n");
        assert_eq!(read(&etc.join("added/x.conf")), "mine\n");
        assert_eq!(read(&etc.join("brand-new")), "from the OS\n");
        assert!(!etc.join("gone-locally").exists());
        assert_eq!(r.modified, ["hostname", "motd"]);
        assert_eq!(r.added, ["added"]);
        assert_eq!(r.removed, ["gone-locally"]);
        assert_eq!(r.conflicts.len(), 1);
        assert_eq!(r.conflicts[0].path, "motd");
        assert!(r.conflicts[0].why.contains("local version wins"));
    }

    #[test]
    fn modes_symlinks_and_type_changes() {
        let (_tmp, old, new) = setup(
            |_| {},
            |etc| {
                std::fs::set_permissions(etc.join("motd"), std::fs::Permissions::from_mode(0o600))
                    .unwrap();
                std::fs::remove_file(etc.join("release-link")).unwrap();
                std::os::unix::fs::symlink("/elsewhere", etc.join("release-link")).unwrap();
                write(&etc.join("conf.d/b.conf"), "b=2\n");
            },
            |etc| {
                // The new OS turns conf.d into a symlink: the local addition needs a
                // directory, and the local side wins.
                std::fs::remove_dir_all(etc.join("conf.d")).unwrap();
                std::os::unix::fs::symlink("/usr/share/conf.d", etc.join("conf.d")).unwrap();
            },
        );
        let r = merge(&old, &new).unwrap();
        let etc = new.join("etc");
        assert_eq!(etc.join("motd").metadata().unwrap().mode() & 0o7777, 0o600);
        assert_eq!(
            std::fs::read_link(etc.join("release-link")).unwrap(),
            Path::new("/elsewhere")
        );
        assert!(etc.join("conf.d").symlink_metadata().unwrap().is_dir());
        assert_eq!(read(&etc.join("conf.d/b.conf")), "b=2\n");
        assert_eq!(r.modified, ["motd", "release-link"]);
        assert_eq!(r.added, ["conf.d/b.conf"]);
        assert_eq!(r.conflicts.len(), 1, "{r:?}");
        assert_eq!(r.conflicts[0].path, "conf.d");
        // Nothing was written through the symlink to /usr/share.
        assert!(!Path::new("/usr/share/conf.d/b.conf").exists());
    }

    #[test]
    fn removal_of_a_file_the_os_changed_is_a_conflict_and_the_removal_wins() {
        let (_tmp, old, new) = setup(
            |_| {},
            |etc| std::fs::remove_dir_all(etc.join("conf.d")).unwrap(),
            |etc| write(&etc.join("conf.d/a.conf"), "a=2\n"),
        );
        let r = merge(&old, &new).unwrap();
        assert!(!new.join("etc/conf.d").exists());
        assert_eq!(r.removed, ["conf.d"]);
        assert_eq!(r.conflicts.len(), 1, "{r:?}");
        assert_eq!(r.conflicts[0].path, "conf.d");
        assert!(r.conflicts[0].why.contains("removal wins"));
        assert_eq!(r.modified.len() + r.added.len(), 0);
    }

    #[test]
    fn unchanged_etc_changes_nothing() {
        let (_tmp, old, new) = setup(
            |_| {},
            |_| {},
            |etc| write(&etc.join("hostname"), "newdefault\n"),
        );
        let r = merge(&old, &new).unwrap();
        assert_eq!(r, EtcMergeReport::default());
        assert_eq!(read(&new.join("etc/hostname")), "newdefault\n");
    }
}
