//! Compare two commits' trees, as `ostree diff` does.
//!
//! Subtrees with the same dirtree checksum are skipped without being read. A path is:
//! * `Modified` when it is a file (or symlink) in both with different content objects, a
//!   directory in both with different metadata (owner, mode, xattrs), or a file in one and
//!   a directory in the other (the directory's contents are then not listed);
//! * `Added` when only the second tree has it; an added directory is listed with all of
//!   its contents;
//! * `Removed` when only the first tree has it; as in ostree, a removed directory is
//!   listed alone, not its contents.
//!
//! The result is sorted by path (bytewise).

use crate::checksum::Checksum;
use crate::error::Result;
use crate::format::DirTree;
use crate::repo::Repo;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiffKind {
    Added,
    Removed,
    Modified,
}

impl DiffKind {
    /// The letter `ostree diff` prints: `A`, `D` or `M`.
    pub fn letter(self) -> char {
        match self {
            DiffKind::Added => 'A',
            DiffKind::Removed => 'D',
            DiffKind::Modified => 'M',
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DiffEntry {
    pub kind: DiffKind,
    /// Absolute path in the commits, e.g. `/usr/bin/ls`.
    pub path: String,
}

/// Compare the trees of two revs (refs, checksums, `REF^`).
pub fn diff(repo: &Repo, a: &str, b: &str) -> Result<Vec<DiffEntry>> {
    let a = repo.resolve_rev(a)?;
    let b = repo.resolve_rev(b)?;
    diff_commits(repo, &a, &b)
}

/// Compare the trees of two commits.
pub fn diff_commits(repo: &Repo, a: &Checksum, b: &Checksum) -> Result<Vec<DiffEntry>> {
    let ca = repo.load_commit(a)?;
    let cb = repo.load_commit(b)?;
    let mut out = Vec::new();
    diff_dirs(repo, "", &ca.root_tree, &cb.root_tree, &mut out)?;
    out.sort_by(|x, y| x.path.as_bytes().cmp(y.path.as_bytes()));
    Ok(out)
}

/// An entry of a directory: a file's content checksum, or a directory's tree and meta.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Node {
    File(Checksum),
    Dir(Checksum, Checksum),
}

fn entries(t: &DirTree) -> BTreeMap<&[u8], Node> {
    t.files
        .iter()
        .map(|(n, c)| (n.as_bytes(), Node::File(*c)))
        .chain(
            t.dirs
                .iter()
                .map(|(n, tr, m)| (n.as_bytes(), Node::Dir(*tr, *m))),
        )
        .collect()
}

fn diff_dirs(
    repo: &Repo,
    prefix: &str,
    a: &Checksum,
    b: &Checksum,
    out: &mut Vec<DiffEntry>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let ta = repo.load_dirtree(a)?;
    let tb = repo.load_dirtree(b)?;
    let ea = entries(&ta);
    let eb = entries(&tb);
    let path_of = |name: &[u8]| format!("{prefix}/{}", String::from_utf8_lossy(name));
    for (name, na) in &ea {
        let path = path_of(name);
        match (na, eb.get(name)) {
            (_, None) => out.push(DiffEntry {
                kind: DiffKind::Removed,
                path,
            }),
            (Node::File(x), Some(Node::File(y))) => {
                if x != y {
                    out.push(DiffEntry {
                        kind: DiffKind::Modified,
                        path,
                    });
                }
            }
            (Node::Dir(ta, ma), Some(Node::Dir(tb, mb))) => {
                if ma != mb {
                    out.push(DiffEntry {
                        kind: DiffKind::Modified,
                        path: path.clone(),
                    });
                }
                diff_dirs(repo, &path, ta, tb, out)?;
            }
            // A type change.
            (_, Some(_)) => out.push(DiffEntry {
                kind: DiffKind::Modified,
                path,
            }),
        }
    }
    for (name, nb) in &eb {
        if ea.contains_key(name) {
            continue;
        }
        let path = path_of(name);
        out.push(DiffEntry {
            kind: DiffKind::Added,
            path: path.clone(),
        });
        if let Node::Dir(t, _) = nb {
            add_all(repo, &path, t, out)?;
        }
    }
    Ok(())
}

fn add_all(repo: &Repo, prefix: &str, tree: &Checksum, out: &mut Vec<DiffEntry>) -> Result<()> {
    let t = repo.load_dirtree(tree)?;
    for (name, _) in &t.files {
        out.push(DiffEntry {
            kind: DiffKind::Added,
            path: format!("{prefix}/{name}"),
        });
    }
    for (name, sub, _) in &t.dirs {
        let path = format!("{prefix}/{name}");
        out.push(DiffEntry {
            kind: DiffKind::Added,
            path: path.clone(),
        });
        add_all(repo, &path, sub, out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::fixtures::*;
    use std::os::unix::fs::symlink;

    fn parse_ostree_diff(out: &str) -> Vec<DiffEntry> {
        let mut v: Vec<DiffEntry> = out
            .lines()
            .map(|l| {
                let (k, p) = l.split_once(char::is_whitespace).unwrap();
                let kind = match k {
                    "A" => DiffKind::Added,
                    "D" => DiffKind::Removed,
                    "M" => DiffKind::Modified,
                    other => panic!("unexpected diff line {other:?}"),
                };
                DiffEntry {
                    kind,
                    path: p.trim().to_string(),
                }
            })
            .collect();
        v.sort_by(|x, y| x.path.as_bytes().cmp(y.path.as_bytes()));
        v
    }

    #[test]
    fn lists_added_removed_and_modified_like_ostree() {
        for mode in ["archive", "bare"] {
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("src");
            write(&src.join("f"), b"a", 0o644);
            write(&src.join("same/deep/file"), b"unchanged", 0o644);
            write(&src.join("sub/g"), b"b", 0o644);
            write(&src.join("sub/deep/h"), b"c", 0o644);
            write(&src.join("gone/x/y"), b"d", 0o644);
            write(&src.join("t/z"), b"e", 0o644);
            write(&src.join("mode"), b"m", 0o644);
            write(&src.join("tolink"), b"regular", 0o644);
            symlink("f", src.join("l")).unwrap();
            let repo_path = init_repo(tmp.path(), mode);
            let c1 = commit(&repo_path, "main", &src, &[]);

            write(&src.join("sub/g"), b"B", 0o644); // content change
            std::fs::remove_dir_all(src.join("gone")).unwrap(); // removed directory
            write(&src.join("new/n2/q"), b"q", 0o644); // added directory tree
            write(&src.join("new-file"), b"n", 0o644); // added file
            std::fs::remove_dir_all(src.join("t")).unwrap(); // directory becomes a file
            write(&src.join("t"), b"now a file", 0o644);
            chmod(&src.join("sub/deep"), 0o700); // directory metadata change
            chmod(&src.join("mode"), 0o600); // file mode change
            std::fs::remove_file(src.join("tolink")).unwrap(); // file becomes a symlink
            symlink("f", src.join("tolink")).unwrap();
            std::fs::remove_file(src.join("l")).unwrap(); // symlink target change
            symlink("sub/g", src.join("l")).unwrap();
            let c2 = commit(&repo_path, "main", &src, &[]);

            let repo = Repo::open(&repo_path).unwrap();
            let ours = diff(&repo, "main^", "main").unwrap();
            let expected: Vec<(DiffKind, &str)> = vec![
                (DiffKind::Removed, "/gone"),
                (DiffKind::Modified, "/l"),
                (DiffKind::Modified, "/mode"),
                (DiffKind::Added, "/new"),
                (DiffKind::Added, "/new-file"),
                (DiffKind::Added, "/new/n2"),
                (DiffKind::Added, "/new/n2/q"),
                (DiffKind::Modified, "/sub/deep"),
                (DiffKind::Modified, "/sub/g"),
                (DiffKind::Modified, "/t"),
                (DiffKind::Modified, "/tolink"),
            ];
            let got: Vec<(DiffKind, &str)> =
                ours.iter().map(|e| (e.kind, e.path.as_str())).collect();
            assert_eq!(got, expected, "{mode}");
            // The oracle agrees, line for line.
            let theirs = ostree(&[
                "diff",
                &format!("--repo={}", repo_path.display()),
                &c1.to_hex(),
                &c2.to_hex(),
            ]);
            assert_eq!(ours, parse_ostree_diff(&theirs), "{mode}");
            // Reversed: additions become removals (listed alone) and vice versa.
            let back = diff_commits(&repo, &c2, &c1).unwrap();
            let theirs = ostree(&[
                "diff",
                &format!("--repo={}", repo_path.display()),
                &c2.to_hex(),
                &c1.to_hex(),
            ]);
            assert_eq!(back, parse_ostree_diff(&theirs), "{mode} reversed");
            assert!(back.contains(&DiffEntry {
                kind: DiffKind::Added,
                path: "/gone/x/y".into()
            }));
            assert!(diff(&repo, "main", &c2.to_hex()).unwrap().is_empty());
        }
    }

    #[test]
    fn identical_subtrees_are_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("big/tree/file"), b"same", 0o644);
        write(&src.join("top"), b"1", 0o644);
        let repo_path = init_repo(tmp.path(), "archive");
        let c1 = commit(&repo_path, "main", &src, &[]);
        write(&src.join("top"), b"2", 0o644);
        let c2 = commit(&repo_path, "main", &src, &[]);
        let repo = Repo::open(&repo_path).unwrap();
        // Remove the shared subtree's dirtree: a diff that read it would fail.
        let big = match crate::tree::resolve_path(&repo, &c1, "/big").unwrap() {
            crate::tree::TreeEntry::Dir { tree, .. } => tree,
            _ => unreachable!(),
        };
        std::fs::remove_file(repo.object_path(crate::ObjectType::DirTree, &big)).unwrap();
        let d = diff_commits(&repo, &c1, &c2).unwrap();
        assert_eq!(
            d,
            vec![DiffEntry {
                kind: DiffKind::Modified,
                path: "/top".into()
            }]
        );
        assert_eq!(d[0].kind.letter(), 'M');
    }
}
