//! Navigating a commit's tree: resolve a path to an entry, list directories (`trellis ls`)
//! and stream a file's content (`trellis cat`).
//!
//! Paths are absolute or relative to the commit's root; empty components and `.` are
//! ignored and `..` goes up one level (never above the root), as in a chroot.

use crate::checksum::Checksum;
use crate::error::{Error, Result};
use crate::format::{DirMeta, DirTree, FileHeader, Xattrs};
use crate::repo::{ContentReader, Repo};
use rayon::prelude::*;

/// Most symlinks followed while resolving one path (Linux's limit).
const MAX_SYMLINKS: usize = 40;

/// What a path in a commit names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeEntry {
    /// A regular file or symlink: its content object.
    File { checksum: Checksum },
    /// A directory: its dirtree and dirmeta objects.
    Dir { tree: Checksum, meta: Checksum },
}

/// The type of a listed entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Symlink,
    Dir,
}

/// One line of a listing: everything `ostree ls -C -X` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListEntry {
    /// Absolute path inside the commit (`/` for the root).
    pub path: String,
    pub kind: EntryKind,
    /// Full `st_mode`, file-type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Payload size; 0 for symlinks and directories.
    pub size: u64,
    /// The content checksum of a file or symlink, the dirtree checksum of a directory.
    pub checksum: Checksum,
    /// The dirmeta checksum of a directory.
    pub dirmeta: Option<Checksum>,
    pub symlink_target: Option<String>,
    pub xattrs: Xattrs,
}

impl ListEntry {
    /// The line `ostree ls` prints for this entry (`-C` adds the checksums).
    pub fn ls_line(&self, checksums: bool) -> String {
        let t = match self.kind {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
        };
        let mut s = format!(
            "{t}0{:04o} {} {} {:6} ",
            self.mode & !crate::format::S_IFMT,
            self.uid,
            self.gid,
            self.size
        );
        if checksums {
            s += &format!("{} ", self.checksum);
            if let Some(meta) = self.dirmeta {
                s += &format!("{meta} ");
            }
        }
        s += &self.path;
        if let Some(t) = &self.symlink_target {
            s += &format!(" -> {t}");
        }
        s
    }

    /// The last path component (`/` for the root).
    pub fn name(&self) -> &str {
        match self.path.rsplit_once('/') {
            Some((_, "")) | None => &self.path,
            Some((_, name)) => name,
        }
    }
}

/// The root directory of a commit.
pub fn commit_root(repo: &Repo, commit: &Checksum) -> Result<TreeEntry> {
    let c = repo.load_commit(commit)?;
    Ok(TreeEntry::Dir {
        tree: c.root_tree,
        meta: c.root_meta,
    })
}

/// Resolve `path` without following symlinks (as `ostree ls` does): a symlink on the way
/// is not a directory, and a symlink at the end is returned as itself.
pub fn resolve_path(repo: &Repo, commit: &Checksum, path: &str) -> Result<TreeEntry> {
    resolve(repo, commit, path, false)
}

/// Resolve `path` following symlinks in every component, the last one included, as the
/// kernel would with the commit's root as `/`. Targets never leave the commit.
pub fn resolve_path_follow(repo: &Repo, commit: &Checksum, path: &str) -> Result<TreeEntry> {
    resolve(repo, commit, path, true)
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

fn resolve(repo: &Repo, commit: &Checksum, path: &str, follow: bool) -> Result<TreeEntry> {
    let not_found = || Error::PathNotFound {
        commit: *commit,
        path: path.to_string(),
    };
    let c = repo.load_commit(commit)?;
    let root = (c.root_tree, c.root_meta, repo.load_dirtree(&c.root_tree)?);
    // The directories from the root down to the current one (the root itself excluded).
    let mut stack: Vec<(Checksum, Checksum, DirTree)> = Vec::new();
    // Components still to walk, in reverse order so that symlink targets can be pushed.
    let mut pending: Vec<String> = components(path).rev().map(str::to_string).collect();
    let mut links = 0usize;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            stack.pop();
            continue;
        }
        let dir = stack.last().map_or(&root.2, |d| &d.2);
        if let Some((tree, meta)) = dir.dir(&comp) {
            let t = repo.load_dirtree(&tree)?;
            stack.push((tree, meta, t));
            continue;
        }
        let Some(checksum) = dir.file(&comp) else {
            return Err(not_found());
        };
        if !follow {
            if pending.is_empty() {
                return Ok(TreeEntry::File { checksum });
            }
            // A file (or an unfollowed symlink) used as a directory.
            return Err(not_found());
        }
        let (header, _, _) = repo.open_content(&checksum)?;
        if !header.is_symlink() {
            if pending.is_empty() {
                return Ok(TreeEntry::File { checksum });
            }
            return Err(not_found());
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(Error::Invalid(format!(
                "path {path:?} in commit {commit}: too many levels of symbolic links"
            )));
        }
        let target = &header.symlink_target;
        if target.starts_with('/') {
            stack.clear();
        }
        pending.extend(components(target).rev().map(str::to_string));
    }
    Ok(match stack.last() {
        Some((tree, meta, _)) => TreeEntry::Dir {
            tree: *tree,
            meta: *meta,
        },
        None => TreeEntry::Dir {
            tree: root.0,
            meta: root.1,
        },
    })
}

/// The canonical form of a path as listings print it: `/a/b`, or `/` for the root.
fn canonical(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in components(path) {
        if c == ".." {
            parts.pop();
        } else {
            parts.push(c);
        }
    }
    format!("/{}", parts.join("/"))
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// A listing slot: a directory is known at once, a file needs its content header.
enum Slot {
    Ready(ListEntry),
    File(String, Checksum),
}

fn dir_entry(path: String, tree: Checksum, meta_csum: Checksum, meta: DirMeta) -> ListEntry {
    ListEntry {
        path,
        kind: EntryKind::Dir,
        mode: meta.mode,
        uid: meta.uid,
        gid: meta.gid,
        size: 0,
        checksum: tree,
        dirmeta: Some(meta_csum),
        symlink_target: None,
        xattrs: meta.xattrs,
    }
}

/// The metadata of a content object as a listing entry.
pub fn file_entry(repo: &Repo, path: String, checksum: Checksum) -> Result<ListEntry> {
    let (header, size, _) = repo.open_content(&checksum)?;
    Ok(file_entry_from_header(path, checksum, header, size))
}

fn file_entry_from_header(
    path: String,
    checksum: Checksum,
    header: FileHeader,
    size: u64,
) -> ListEntry {
    let symlink = header.is_symlink();
    ListEntry {
        path,
        kind: if symlink {
            EntryKind::Symlink
        } else {
            EntryKind::File
        },
        mode: header.mode,
        uid: header.uid,
        gid: header.gid,
        size: if symlink { 0 } else { size },
        checksum,
        dirmeta: None,
        symlink_target: symlink.then_some(header.symlink_target),
        xattrs: header.xattrs,
    }
}

fn walk(
    repo: &Repo,
    path: &str,
    tree: &Checksum,
    recursive: bool,
    out: &mut Vec<Slot>,
) -> Result<()> {
    let t = repo.load_dirtree(tree)?;
    for (name, csum) in &t.files {
        out.push(Slot::File(child_path(path, name), *csum));
    }
    for (name, sub_tree, sub_meta) in &t.dirs {
        let p = child_path(path, name);
        let meta = repo.load_dirmeta(sub_meta)?;
        out.push(Slot::Ready(dir_entry(
            p.clone(),
            *sub_tree,
            *sub_meta,
            meta,
        )));
        if recursive {
            walk(repo, &p, sub_tree, true, out)?;
        }
    }
    Ok(())
}

/// List `path` as `ostree ls [-R]` does: the entry for `path` itself first; then, for a
/// directory, its files followed by its subdirectories (each list sorted by name), and with
/// `recursive` each subdirectory's own listing right after its entry. Symlinks are listed,
/// not followed.
pub fn list(repo: &Repo, commit: &Checksum, path: &str, recursive: bool) -> Result<Vec<ListEntry>> {
    let shown = canonical(path);
    let mut slots = Vec::new();
    match resolve_path(repo, commit, path)? {
        TreeEntry::File { checksum } => slots.push(Slot::File(shown, checksum)),
        TreeEntry::Dir { tree, meta } => {
            let m = repo.load_dirmeta(&meta)?;
            slots.push(Slot::Ready(dir_entry(shown.clone(), tree, meta, m)));
            walk(repo, &shown, &tree, recursive, &mut slots)?;
        }
    }
    // Reading content headers is the expensive part (one open per file): do it on all cores.
    slots
        .into_par_iter()
        .map(|slot| match slot {
            Slot::Ready(e) => Ok(e),
            Slot::File(p, c) => file_entry(repo, p, c),
        })
        .collect()
}

/// Open the file at `path` for reading (`trellis cat`), following symlinks inside the
/// commit. Returns the header, the payload size and the payload stream.
pub fn open_file(
    repo: &Repo,
    commit: &Checksum,
    path: &str,
) -> Result<(FileHeader, u64, ContentReader)> {
    match resolve_path_follow(repo, commit, path)? {
        TreeEntry::File { checksum } => repo.open_content(&checksum),
        TreeEntry::Dir { .. } => Err(Error::Invalid(format!(
            "{path:?} in commit {commit} is a directory, not a file"
        ))),
    }
}

/// Test fixtures shared by the workflow modules' tests: repositories made by the real
/// `ostree` CLI (the oracle), and tree comparison.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::checksum::Checksum;
    use crate::xattr::{self, Target};
    use rustix::fs::{AtFlags, CWD, FileType};
    use std::fs::File;
    use std::os::unix::fs::{PermissionsExt, symlink};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Run `ostree ARGS`, panicking with its stderr on failure; returns stdout.
    pub fn ostree(args: &[&str]) -> String {
        let out = Command::new("ostree")
            .args(args)
            .output()
            .expect("run ostree");
        assert!(
            out.status.success(),
            "ostree {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Run `ostree ARGS` and return (success, stdout+stderr).
    pub fn ostree_status(args: &[&str]) -> (bool, String) {
        let out = Command::new("ostree")
            .args(args)
            .output()
            .expect("run ostree");
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// `ostree init --mode=MODE` in `dir/repo`.
    pub fn init_repo(dir: &Path, mode: &str) -> PathBuf {
        let repo = dir.join("repo");
        ostree(&[
            "init",
            &format!("--repo={}", repo.display()),
            &format!("--mode={mode}"),
        ]);
        repo
    }

    /// `ostree commit -b BRANCH --tree=dir=SRC` (no `-b` for an empty branch), returning
    /// the commit checksum.
    pub fn commit(repo: &Path, branch: &str, src: &Path, extra: &[&str]) -> Checksum {
        let repo_arg = format!("--repo={}", repo.display());
        let tree_arg = format!("--tree=dir={}", src.display());
        let mut args = vec!["commit", &repo_arg, &tree_arg, "-s", "test"];
        if !branch.is_empty() {
            args.extend(["-b", branch]);
        }
        args.extend_from_slice(extra);
        let out = ostree(&args);
        Checksum::from_hex(out.trim()).expect("commit checksum")
    }

    pub fn write(path: &Path, data: &[u8], mode: u32) {
        if let Some(p) = path.parent() {
            std::fs::create_dir_all(p).unwrap();
        }
        std::fs::write(path, data).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn lchown(path: &Path, uid: u32, gid: u32) {
        rustix::fs::chownat(
            CWD,
            path,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
    }

    pub fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn setxattr(path: &Path, name: &str, value: &[u8]) {
        xattr::set::<File>(Target::NoFollow(path), name.as_bytes(), value).unwrap();
    }

    /// `security.capability` for `cap_net_raw+ep` (what `setcap` writes).
    pub const CAP_NET_RAW: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// A tree exercising everything a checkout must reproduce: special mode bits, owners,
    /// xattrs (including `security.capability` and xattrs on a symlink and a directory),
    /// symlinks (relative, absolute, dangling, owned), empty files and directories, shared
    /// content, deep nesting and a file larger than any buffer. Needs root.
    pub fn rich_tree(root: &Path) {
        std::fs::create_dir_all(root).unwrap();
        chmod(root, 0o755);
        write(&root.join("hello.txt"), b"hello\n", 0o644);
        write(&root.join("empty.txt"), b"", 0o600);
        write(&root.join("dup1"), b"same", 0o644);
        write(&root.join("dup2"), b"same", 0o644);
        let big: Vec<u8> = (0..1_500_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        write(&root.join("big.bin"), &big, 0o644);
        write(&root.join("bin/tool"), b"#!/bin/sh\necho tool\n", 0o755);
        write(&root.join("bin/suid"), b"suid", 0o644);
        chmod(&root.join("bin/suid"), 0o4755);
        write(&root.join("bin/sgid"), b"sgid", 0o644);
        chmod(&root.join("bin/sgid"), 0o2711);
        write(&root.join("bin/cap"), b"cap", 0o755);
        setxattr(&root.join("bin/cap"), "security.capability", CAP_NET_RAW);
        write(&root.join("etc/owned"), b"owned by 1000", 0o640);
        lchown(&root.join("etc/owned"), 1000, 100);
        write(&root.join("etc/xattr"), b"xattrs", 0o644);
        setxattr(&root.join("etc/xattr"), "user.foo", b"bar");
        setxattr(&root.join("etc/xattr"), "user.alpha", b"1");
        std::fs::create_dir_all(root.join("etc/private")).unwrap();
        write(&root.join("etc/private/secret"), b"s3cret", 0o600);
        lchown(&root.join("etc/private/secret"), 1000, 100);
        chmod(&root.join("etc/private"), 0o700);
        lchown(&root.join("etc/private"), 1000, 100);
        setxattr(&root.join("etc/private"), "user.dirattr", b"v");
        std::fs::create_dir_all(root.join("tmp")).unwrap();
        chmod(&root.join("tmp"), 0o1777);
        std::fs::create_dir_all(root.join("shared")).unwrap();
        chmod(&root.join("shared"), 0o2775);
        std::fs::create_dir_all(root.join("empty")).unwrap();
        chmod(&root.join("empty"), 0o755);
        write(&root.join("a/b/c/d/e/deep.txt"), b"deep", 0o644);
        symlink("hello.txt", root.join("link")).unwrap();
        symlink("/etc/passwd", root.join("abs")).unwrap();
        symlink("nowhere/at/all", root.join("dangling")).unwrap();
        symlink("../hello.txt", root.join("bin/ownedlink")).unwrap();
        lchown(&root.join("bin/ownedlink"), 1000, 100);
        setxattr(
            &root.join("bin/ownedlink"),
            "trusted.linkattr",
            b"on a symlink",
        );
        // Directories are created 0755 whatever the umask, so that the source is exact.
        for d in ["bin", "etc", "a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/e"] {
            chmod(&root.join(d), 0o755);
        }
    }

    /// A tree that bare-user-only can store as it is: root owned, no xattrs, no special bits.
    pub fn plain_tree(root: &Path) {
        std::fs::create_dir_all(root).unwrap();
        chmod(root, 0o755);
        write(&root.join("hello.txt"), b"hello\n", 0o644);
        write(&root.join("bin/tool"), b"#!/bin/sh\n", 0o755);
        write(&root.join("usr/share/doc/readme"), b"read me", 0o644);
        std::fs::create_dir_all(root.join("empty")).unwrap();
        symlink("hello.txt", root.join("link")).unwrap();
        for d in ["bin", "usr", "usr/share", "usr/share/doc", "empty"] {
            chmod(&root.join(d), 0o755);
        }
    }

    /// Everything observable about one path (mtimes aside).
    #[derive(Debug, PartialEq, Eq)]
    pub struct Node {
        pub rel: String,
        pub mode: u32,
        pub uid: u32,
        pub gid: u32,
        pub content: Option<Vec<u8>>,
        pub target: Option<String>,
        pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    }

    pub struct Compare {
        pub owners: bool,
        pub xattrs: bool,
    }

    /// Every path under `root` (root included, as ""), sorted, with its metadata.
    pub fn snapshot(root: &Path, cmp: &Compare) -> Vec<Node> {
        let mut out = Vec::new();
        fn rec(root: &Path, rel: &str, cmp: &Compare, out: &mut Vec<Node>) {
            let p = if rel.is_empty() {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            let st = rustix::fs::statat(CWD, &p, AtFlags::SYMLINK_NOFOLLOW).unwrap();
            let ft = FileType::from_raw_mode(st.st_mode);
            let xattrs = if cmp.xattrs {
                xattr::read_all::<File>(Target::NoFollow(&p)).unwrap()
            } else {
                Vec::new()
            };
            let (uid, gid) = if cmp.owners {
                (st.st_uid, st.st_gid)
            } else {
                (0, 0)
            };
            let mut node = Node {
                rel: rel.to_string(),
                mode: st.st_mode,
                uid,
                gid,
                content: None,
                target: None,
                xattrs,
            };
            match ft {
                FileType::RegularFile => node.content = Some(std::fs::read(&p).unwrap()),
                FileType::Symlink => {
                    node.target = Some(std::fs::read_link(&p).unwrap().display().to_string())
                }
                FileType::Directory => {
                    let mut names: Vec<String> = std::fs::read_dir(&p)
                        .unwrap()
                        .map(|e| e.unwrap().file_name().into_string().unwrap())
                        .collect();
                    names.sort();
                    out.push(node);
                    for n in names {
                        let r = if rel.is_empty() {
                            n
                        } else {
                            format!("{rel}/{n}")
                        };
                        rec(root, &r, cmp, out);
                    }
                    return;
                }
                other => panic!("unexpected file type {other:?} at {}", p.display()),
            }
            out.push(node);
        }
        rec(root, "", cmp, &mut out);
        out
    }

    /// Assert two trees are identical, entry by entry (clear messages on the first difference).
    pub fn assert_same_tree(expected: &Path, actual: &Path, cmp: &Compare) {
        let a = snapshot(expected, cmp);
        let b = snapshot(actual, cmp);
        let names = |v: &[Node]| v.iter().map(|n| n.rel.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b), "different paths");
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x, y, "entry {:?} differs", x.rel);
        }
    }

    /// Assert every regular file (and symlink, with `symlinks`) under `root` has mtime 0.
    /// (ostree leaves bare symlink objects with their creation time, and hardlinked
    /// checkouts share it.)
    pub fn assert_mtimes_zero(root: &Path, symlinks: bool) {
        for n in snapshot(
            root,
            &Compare {
                owners: false,
                xattrs: false,
            },
        ) {
            if n.content.is_some() || (symlinks && n.target.is_some()) {
                let st =
                    rustix::fs::statat(CWD, root.join(&n.rel), AtFlags::SYMLINK_NOFOLLOW).unwrap();
                assert_eq!(st.st_mtime, 0, "mtime of {}", n.rel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;
    use std::io::Read;

    fn ostree_format(entries: &[ListEntry], checksums: bool) -> String {
        entries
            .iter()
            .map(|e| e.ls_line(checksums) + "\n")
            .collect()
    }

    fn setup(mode: &str) -> (tempfile::TempDir, Repo, Checksum, String) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        rich_tree(&src);
        let repo_path = init_repo(tmp.path(), mode);
        let c = commit(&repo_path, "main", &src, &[]);
        let repo = Repo::open(&repo_path).unwrap();
        let arg = format!("--repo={}", repo_path.display());
        (tmp, repo, c, arg)
    }

    #[test]
    fn resolves_files_dirs_and_reports_missing_paths() {
        let (_tmp, repo, c, _) = setup("archive");
        let root = commit_root(&repo, &c).unwrap();
        assert_eq!(resolve_path(&repo, &c, "/").unwrap(), root);
        assert_eq!(resolve_path(&repo, &c, "").unwrap(), root);
        assert_eq!(resolve_path(&repo, &c, "/bin/..").unwrap(), root);
        assert!(matches!(
            resolve_path(&repo, &c, "/bin").unwrap(),
            TreeEntry::Dir { .. }
        ));
        let TreeEntry::File { checksum } = resolve_path(&repo, &c, "//etc/./owned").unwrap() else {
            panic!("a file")
        };
        let (h, size, _) = repo.open_content(&checksum).unwrap();
        assert_eq!((h.uid, h.gid, h.mode, size), (1000, 100, 0o100640, 13));
        for missing in ["/nope", "/etc/nope", "/hello.txt/x", "/link/x"] {
            match resolve_path(&repo, &c, missing) {
                Err(Error::PathNotFound { commit, path }) => {
                    assert_eq!((commit, path.as_str()), (c, missing))
                }
                other => panic!("{missing}: {other:?}"),
            }
        }
        // Without following, the symlink is returned as itself.
        let TreeEntry::File { checksum } = resolve_path(&repo, &c, "/link").unwrap() else {
            panic!("a file")
        };
        assert!(repo.open_content(&checksum).unwrap().0.is_symlink());
    }

    #[test]
    fn follows_symlinks_inside_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("usr/lib/os-release"), b"ID=test\n", 0o644);
        std::os::unix::fs::symlink("usr/lib", src.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", src.join("usr/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../usr/lib", src.join("usr/up")).unwrap();
        std::os::unix::fs::symlink("loop2", src.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", src.join("loop2")).unwrap();
        let repo_path = init_repo(tmp.path(), "archive");
        let c = commit(&repo_path, "main", &src, &[]);
        let repo = Repo::open(&repo_path).unwrap();
        let target = resolve_path(&repo, &c, "/usr/lib/os-release").unwrap();
        for p in [
            "/lib/os-release",
            "/usr/abs",
            "/usr/up/os-release",
            "lib/../lib/os-release",
        ] {
            assert_eq!(resolve_path_follow(&repo, &c, p).unwrap(), target, "{p}");
        }
        assert!(matches!(
            resolve_path(&repo, &c, "/lib/os-release"),
            Err(Error::PathNotFound { .. })
        ));
        assert!(matches!(
            resolve_path_follow(&repo, &c, "/loop1"),
            Err(Error::Invalid(m)) if m.contains("symbolic links")
        ));
        let (_, size, mut r) = open_file(&repo, &c, "/lib/os-release").unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!((size, s.as_str()), (8, "ID=test\n"));
        assert!(matches!(
            open_file(&repo, &c, "/lib"),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn listing_matches_ostree_ls() {
        for mode in ["archive", "bare", "bare-user"] {
            let (_tmp, repo, c, arg) = setup(mode);
            for (path, recursive) in [("/", false), ("/", true), ("/etc", true), ("/bin", false)] {
                let ours = list(&repo, &c, path, recursive).unwrap();
                let mut args = vec!["ls", &arg, "-C"];
                if recursive {
                    args.push("-R");
                }
                args.extend(["main", path]);
                assert_eq!(
                    ostree_format(&ours, true),
                    ostree(&args),
                    "{mode} ls {path} recursive={recursive}"
                );
            }
            // A file lists as itself.
            let one = list(&repo, &c, "/bin/suid", false).unwrap();
            assert_eq!(one.len(), 1);
            assert_eq!((one[0].mode, one[0].name()), (0o104755, "suid"));
            let caps = list(&repo, &c, "/bin/cap", false).unwrap();
            assert_eq!(
                caps[0].xattrs,
                vec![(b"security.capability".to_vec(), CAP_NET_RAW.to_vec())]
            );
            let root = list(&repo, &c, "/", false).unwrap();
            assert_eq!(root[0].name(), "/");
            assert!(matches!(
                list(&repo, &c, "/missing", false),
                Err(Error::PathNotFound { .. })
            ));
        }
    }

    #[test]
    fn cat_matches_ostree_cat() {
        let (_tmp, repo, c, arg) = setup("archive");
        for path in [
            "/big.bin",
            "/hello.txt",
            "/empty.txt",
            "/etc/private/secret",
        ] {
            let (_, size, mut r) = open_file(&repo, &c, path).unwrap();
            let mut ours = Vec::new();
            r.read_to_end(&mut ours).unwrap();
            assert_eq!(ours.len() as u64, size);
            let theirs = std::process::Command::new("ostree")
                .args(["cat", &arg, "main", path])
                .output()
                .unwrap();
            assert!(theirs.status.success());
            assert_eq!(ours, theirs.stdout, "{path}");
        }
    }
}
