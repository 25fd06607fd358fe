//! Check a repository's integrity, as `ostree fsck` does.
//!
//! Every ref must point at a commit that exists. Every commit object in the repository is
//! checked: metadata objects must hash to their name and parse in strict GVariant normal
//! form (which `ostree pull` requires); content objects are re-hashed from their header and
//! payload. Everything reachable from a commit is checked, except for commits marked
//! partial (`state/<commit>.commitpartial`), whose trees are skipped and counted.
//!
//! All problems are collected, not just the first: each names the object's type and
//! checksum, and why it is bad. Work runs on all cores. Garbage, truncated or missing
//! objects are reported, never a panic.

use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, Result};
use crate::format::{Commit, DirMeta, DirTree};
use crate::repo::Repo;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// The stages of a check, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsckPhase {
    /// Refs point at commits that exist.
    Refs,
    /// Commit objects (and their detached metadata).
    Commits,
    /// Dirtree and dirmeta objects, walked level by level (the total grows as it goes).
    Metadata,
    /// Content objects, re-hashed.
    Content,
}

/// Progress, reported from any thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsckProgress {
    pub phase: FsckPhase,
    pub done: u64,
    pub total: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// The object is referenced but absent.
    Missing,
    /// The object exists but does not hash to its name, does not parse, or is unreadable.
    Corrupt,
}

/// One bad object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsckProblem {
    pub ty: ObjectType,
    pub checksum: Checksum,
    pub kind: ProblemKind,
    /// What is wrong, and what references the object.
    pub reason: String,
}

impl std::fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ProblemKind::Missing => "missing",
            ProblemKind::Corrupt => "corrupt",
        };
        write!(f, "{} {} {kind}: {}", self.ty, self.checksum, self.reason)
    }
}

/// The result of a check. The repository is sound when `problems` is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Refs checked (local, remote and collection refs).
    pub refs: u64,
    /// Commits whose trees were checked.
    pub commits: u64,
    /// Commits marked partial: the commit object was checked, its tree skipped.
    pub partial_commits: u64,
    /// Dirtree and dirmeta objects checked.
    pub metadata_objects: u64,
    /// Content objects checked.
    pub content_objects: u64,
    /// Every problem found, sorted by type and checksum.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

fn problem(ty: ObjectType, checksum: Checksum, err: &Error, referrer: &str) -> FsckProblem {
    let (kind, why) = match err {
        Error::Missing { .. } => (ProblemKind::Missing, "absent".to_string()),
        Error::Corrupt { why, .. } => (ProblemKind::Corrupt, why.clone()),
        Error::BadObject { source, .. } => (ProblemKind::Corrupt, source.to_string()),
        other => (ProblemKind::Corrupt, other.to_string()),
    };
    FsckProblem {
        ty,
        checksum,
        kind,
        reason: format!("{why} (referenced by {referrer})"),
    }
}

/// A metadata object: its bytes must hash to its name and parse strictly.
fn check_metadata<T>(
    repo: &Repo,
    ty: ObjectType,
    csum: &Checksum,
    parse: fn(&[u8]) -> std::result::Result<T, crate::format::FormatError>,
) -> Result<T> {
    let data = repo.read_metadata_verified(ty, csum)?;
    parse(&data).map_err(|source| Error::BadObject {
        ty,
        csum: *csum,
        source,
    })
}

/// One object, checked as the whole-repository check does (metadata hashed and parsed
/// strictly, content re-hashed, detached metadata parsed).
pub(crate) fn check_object(repo: &Repo, ty: ObjectType, csum: &Checksum) -> Result<()> {
    match ty {
        ObjectType::File => repo.verify_content(csum).map(drop),
        ObjectType::Commit => check_metadata(repo, ty, csum, Commit::parse).map(drop),
        ObjectType::DirTree => check_metadata(repo, ty, csum, DirTree::parse).map(drop),
        ObjectType::DirMeta => check_metadata(repo, ty, csum, DirMeta::parse).map(drop),
        ObjectType::CommitMeta => repo.load_commitmeta(csum).map(drop),
        ObjectType::TombstoneCommit => Ok(()),
    }
}

/// Every ref with its commit: local, remote (`REMOTE:NAME`) and collection refs
/// (`(COLLECTION, NAME)` under `refs/mirrors`, shown as `COLLECTION:NAME`).
pub fn all_refs(repo: &Repo) -> Result<Vec<(String, Checksum)>> {
    let mut out: Vec<(String, Checksum)> = repo
        .list_refs()?
        .into_iter()
        .map(|r| (r.name, r.commit))
        .collect();
    let mirrors = repo.path().join("refs/mirrors");
    let Ok(collections) = std::fs::read_dir(&mirrors) else {
        return Ok(out);
    };
    for coll in collections.flatten() {
        let Ok(name) = coll.file_name().into_string() else {
            continue;
        };
        walk_ref_files(&coll.path(), &name, &mut out);
    }
    out.sort();
    Ok(out)
}

fn walk_ref_files(dir: &std::path::Path, prefix: &str, out: &mut Vec<(String, Checksum)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let path = e.path();
        let shown = if prefix.contains(':') {
            format!("{prefix}/{name}")
        } else {
            format!("{prefix}:{name}")
        };
        if path.is_dir() {
            walk_ref_files(&path, &shown, out);
        } else if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(c) = Checksum::from_hex(text.trim())
        {
            out.push((shown, c));
        }
    }
}

/// Check the whole repository; see the module documentation. `progress` is called from
/// worker threads. Errors are only returned when the repository cannot be listed at all;
/// bad objects are reported in the [`FsckReport`].
pub fn fsck<F>(repo: &Repo, progress: F) -> Result<FsckReport>
where
    F: Fn(FsckProgress) + Sync,
{
    let mut report = FsckReport::default();
    let mut problems: BTreeMap<(ObjectType, Checksum), FsckProblem> = BTreeMap::new();
    let mut add = |p: FsckProblem| {
        problems.entry((p.ty, p.checksum)).or_insert(p);
    };

    // Refs.
    let refs = all_refs(repo)?;
    report.refs = refs.len() as u64;
    for (i, (name, commit)) in refs.iter().enumerate() {
        if !repo.has_object(ObjectType::Commit, commit)? {
            add(FsckProblem {
                ty: ObjectType::Commit,
                checksum: *commit,
                kind: ProblemKind::Missing,
                reason: format!("absent (referenced by ref {name})"),
            });
        }
        progress(FsckProgress {
            phase: FsckPhase::Refs,
            done: i as u64 + 1,
            total: refs.len() as u64,
        });
    }

    // Commits.
    let commits: Vec<Checksum> = repo
        .list_objects()?
        .into_iter()
        .filter(|(ty, _)| *ty == ObjectType::Commit)
        .map(|(_, c)| c)
        .collect();
    let done = AtomicU64::new(0);
    let total = commits.len() as u64;
    let checked: Vec<(Checksum, bool, Result<Commit>, Result<()>)> = commits
        .par_iter()
        .map(|c| {
            let commit = check_metadata(repo, ObjectType::Commit, c, Commit::parse);
            let meta = repo.load_commitmeta(c).map(drop);
            let partial = repo.is_partial(c);
            progress(FsckProgress {
                phase: FsckPhase::Commits,
                done: done.fetch_add(1, Ordering::Relaxed) + 1,
                total,
            });
            (*c, partial, commit, meta)
        })
        .collect();

    // Roots of the walk: (dirtree, dirmeta, referrer).
    let mut trees: Vec<(Checksum, String)> = Vec::new();
    let mut metas: Vec<(Checksum, String)> = Vec::new();
    for (csum, partial, commit, meta) in checked {
        if let Err(e) = meta {
            add(problem(
                ObjectType::CommitMeta,
                csum,
                &e,
                &format!("commit {csum}"),
            ));
        }
        let commit = match commit {
            Ok(c) => c,
            Err(e) => {
                add(problem(ObjectType::Commit, csum, &e, "the object store"));
                continue;
            }
        };
        if partial {
            report.partial_commits += 1;
            continue;
        }
        report.commits += 1;
        trees.push((commit.root_tree, format!("commit {csum}")));
        metas.push((commit.root_meta, format!("commit {csum}")));
    }

    // Metadata, breadth first; each level on all cores.
    let mut seen: HashSet<(ObjectType, Checksum)> = HashSet::new();
    let mut content: Vec<(Checksum, String)> = Vec::new();
    let meta_done = AtomicU64::new(0);
    let meta_total = AtomicU64::new(0);
    while !trees.is_empty() || !metas.is_empty() {
        trees.retain(|(c, _)| seen.insert((ObjectType::DirTree, *c)));
        metas.retain(|(c, _)| seen.insert((ObjectType::DirMeta, *c)));
        meta_total.fetch_add((trees.len() + metas.len()) as u64, Ordering::Relaxed);
        let tick = || {
            progress(FsckProgress {
                phase: FsckPhase::Metadata,
                done: meta_done.fetch_add(1, Ordering::Relaxed) + 1,
                total: meta_total.load(Ordering::Relaxed),
            })
        };
        let meta_results: Vec<FsckProblem> = metas
            .par_iter()
            .filter_map(|(c, referrer)| {
                let r = check_metadata(repo, ObjectType::DirMeta, c, DirMeta::parse);
                tick();
                r.err()
                    .map(|e| problem(ObjectType::DirMeta, *c, &e, referrer))
            })
            .collect();
        let tree_results: Vec<(Checksum, String, Result<DirTree>)> = trees
            .par_iter()
            .map(|(c, referrer)| {
                let r = check_metadata(repo, ObjectType::DirTree, c, DirTree::parse);
                tick();
                (*c, referrer.clone(), r)
            })
            .collect();
        report.metadata_objects += (trees.len() + metas.len()) as u64;
        meta_results.into_iter().for_each(&mut add);
        let mut next_trees = Vec::new();
        let mut next_metas = Vec::new();
        for (c, referrer, r) in tree_results {
            match r {
                Ok(t) => {
                    let me = format!("dirtree {c}");
                    for (_, f) in t.files {
                        if seen.insert((ObjectType::File, f)) {
                            content.push((f, me.clone()));
                        }
                    }
                    for (_, st, sm) in t.dirs {
                        next_trees.push((st, me.clone()));
                        next_metas.push((sm, me.clone()));
                    }
                }
                Err(e) => add(problem(ObjectType::DirTree, c, &e, &referrer)),
            }
        }
        trees = next_trees;
        metas = next_metas;
    }

    // Content, on all cores.
    let done = AtomicU64::new(0);
    let total = content.len() as u64;
    report.content_objects = total;
    let content_problems: Vec<FsckProblem> = content
        .par_iter()
        .filter_map(|(c, referrer)| {
            let r = repo.verify_content(c);
            progress(FsckProgress {
                phase: FsckPhase::Content,
                done: done.fetch_add(1, Ordering::Relaxed) + 1,
                total,
            });
            r.err().map(|e| problem(ObjectType::File, *c, &e, referrer))
        })
        .collect();
    content_problems.into_iter().for_each(&mut add);

    report.problems = problems.into_values().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::fixtures::*;
    use crate::tree::{self, TreeEntry};
    use std::path::Path;
    use std::sync::Mutex;

    fn setup(mode: &str) -> (tempfile::TempDir, Repo, Checksum) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        rich_tree(&src);
        let repo_path = init_repo(tmp.path(), mode);
        commit(&repo_path, "main", &src, &[]);
        write(&src.join("second"), b"second commit", 0o644);
        let c = commit(&repo_path, "main", &src, &[]);
        (tmp, Repo::open(&repo_path).unwrap(), c)
    }

    fn ostree_fsck(repo: &Repo) -> (bool, String) {
        ostree_status(&["fsck", &format!("--repo={}", repo.path().display())])
    }

    fn file_csum(repo: &Repo, commit: &Checksum, path: &str) -> Checksum {
        match tree::resolve_path(repo, commit, path).unwrap() {
            TreeEntry::File { checksum } => checksum,
            TreeEntry::Dir { .. } => panic!("{path} is a directory"),
        }
    }

    fn dir_csums(repo: &Repo, commit: &Checksum, path: &str) -> (Checksum, Checksum) {
        match tree::resolve_path(repo, commit, path).unwrap() {
            TreeEntry::Dir { tree, meta } => (tree, meta),
            TreeEntry::File { .. } => panic!("{path} is a file"),
        }
    }

    fn clean_repo_is_clean(mode: &str) {
        let (_tmp, repo, _) = setup(mode);
        let phases = Mutex::new(Vec::new());
        let report = fsck(&repo, |p| phases.lock().unwrap().push(p)).unwrap();
        assert!(report.is_clean(), "{mode}: {:?}", report.problems);
        assert_eq!(
            (report.refs, report.commits, report.partial_commits),
            (1, 2, 0)
        );
        // Every object in the repository was reached and checked.
        let objects = repo.list_objects().unwrap();
        let count = |ty| objects.iter().filter(|(t, _)| *t == ty).count() as u64;
        assert_eq!(report.content_objects, count(ObjectType::File), "{mode}");
        assert_eq!(
            report.metadata_objects,
            count(ObjectType::DirTree) + count(ObjectType::DirMeta),
            "{mode}"
        );
        let phases = phases.into_inner().unwrap();
        let last_content = phases
            .iter()
            .filter(|p| p.phase == FsckPhase::Content)
            .map(|p| p.done)
            .max();
        assert_eq!(last_content, Some(report.content_objects));
        assert!(ostree_fsck(&repo).0);
    }

    #[test]
    fn clean_archive_repo() {
        clean_repo_is_clean("archive");
    }

    #[test]
    fn clean_bare_repo() {
        clean_repo_is_clean("bare");
    }

    #[test]
    fn clean_bare_user_repo() {
        clean_repo_is_clean("bare-user");
    }

    fn corrupt_file(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut data = std::fs::read(path).unwrap();
        f(&mut data);
        // In place, so that a bare-user object keeps its user.ostreemeta (root may write
        // read-only objects).
        std::fs::write(path, &data).unwrap();
    }

    fn reports_every_problem(mode: &str) {
        let (_tmp, repo, c) = setup(mode);
        let hello = file_csum(&repo, &c, "/hello.txt");
        let big = file_csum(&repo, &c, "/big.bin");
        let deep = file_csum(&repo, &c, "/a/b/c/d/e/deep.txt");
        let (etc_tree, _) = dir_csums(&repo, &c, "/etc");
        let (_, tmp_meta) = dir_csums(&repo, &c, "/tmp");

        // A changed byte in a content object, at the end so that archive headers parse.
        corrupt_file(&repo.object_path(ObjectType::File, &big), |d| {
            let n = d.len();
            d[n - 2] ^= 0x55;
        });
        // A truncated dirtree.
        corrupt_file(&repo.object_path(ObjectType::DirTree, &etc_tree), |d| {
            d.truncate(d.len() / 2)
        });
        // Missing objects.
        std::fs::remove_file(repo.object_path(ObjectType::File, &hello)).unwrap();
        std::fs::remove_file(repo.object_path(ObjectType::DirMeta, &tmp_meta)).unwrap();
        // Garbage where a content object belongs.
        corrupt_file(&repo.object_path(ObjectType::File, &deep), |d| {
            *d = b"\xff\xff\xff\xffgarbage".to_vec()
        });

        let report = fsck(&repo, |_| {}).unwrap();
        let found: Vec<(ObjectType, Checksum, ProblemKind)> = report
            .problems
            .iter()
            .map(|p| (p.ty, p.checksum, p.kind))
            .collect();
        let mut expected = vec![
            (ObjectType::File, big, ProblemKind::Corrupt),
            (ObjectType::DirTree, etc_tree, ProblemKind::Corrupt),
            (ObjectType::File, hello, ProblemKind::Missing),
            (ObjectType::DirMeta, tmp_meta, ProblemKind::Missing),
        ];
        // A bare object is whatever file is there: only archive and bare-user ones have a
        // header that garbage breaks; for bare, garbage is a wrong checksum. Corrupt either way.
        expected.push((ObjectType::File, deep, ProblemKind::Corrupt));
        expected.sort();
        let mut found_sorted = found.clone();
        found_sorted.sort();
        assert_eq!(found_sorted, expected, "{mode}: {:#?}", report.problems);
        let etc = report
            .problems
            .iter()
            .find(|p| p.checksum == etc_tree)
            .unwrap();
        assert!(etc.reason.contains("dirtree "), "{}", etc.reason);
        assert!(!report.is_clean());
        // The oracle agrees that the repository is broken.
        assert!(!ostree_fsck(&repo).0);
    }

    #[test]
    fn reports_every_problem_archive() {
        reports_every_problem("archive");
    }

    #[test]
    fn reports_every_problem_bare() {
        reports_every_problem("bare");
    }

    #[test]
    fn reports_every_problem_bare_user() {
        reports_every_problem("bare-user");
    }

    #[test]
    fn partial_commits_are_skipped_and_counted() {
        let (tmp, repo, c) = setup("archive");
        // A commit whose tree only it references, corrupted, then marked partial.
        let src = tmp.path().join("other");
        write(&src.join("only-here"), b"unique content", 0o644);
        let other = commit(repo.path(), "other", &src, &[]);
        let unique = file_csum(&repo, &other, "/only-here");
        std::fs::remove_file(repo.object_path(ObjectType::File, &unique)).unwrap();
        assert!(!fsck(&repo, |_| {}).unwrap().is_clean());
        repo.mark_partial(&other).unwrap();
        let report = fsck(&repo, |_| {}).unwrap();
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!((report.commits, report.partial_commits), (2, 1));
        let _ = c;
    }

    #[test]
    fn ref_to_missing_commit_and_bad_commits() {
        let (_tmp, repo, c) = setup("bare");
        let ghost = Checksum::of(b"no such commit");
        repo.set_ref("ghost", Some(&ghost)).unwrap();
        // A commit that does not parse, stored under the hash of its bytes.
        let junk = b"\x01\x02 not a commit".to_vec();
        let junk_csum = Checksum::of(&junk);
        let p = repo.object_path(ObjectType::Commit, &junk_csum);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &junk).unwrap();
        // A valid commit stored under the wrong name.
        let good = std::fs::read(repo.object_path(ObjectType::Commit, &c)).unwrap();
        let wrong = Checksum::of(b"wrong name");
        let p = repo.object_path(ObjectType::Commit, &wrong);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &good).unwrap();

        let report = fsck(&repo, |_| {}).unwrap();
        let by = |csum: Checksum| {
            report
                .problems
                .iter()
                .find(|p| p.checksum == csum)
                .unwrap_or_else(|| panic!("{csum} not reported: {:?}", report.problems))
        };
        let g = by(ghost);
        assert_eq!((g.ty, g.kind), (ObjectType::Commit, ProblemKind::Missing));
        assert!(g.reason.contains("ref ghost"));
        let j = by(junk_csum);
        assert_eq!((j.ty, j.kind), (ObjectType::Commit, ProblemKind::Corrupt));
        let w = by(wrong);
        assert_eq!((w.ty, w.kind), (ObjectType::Commit, ProblemKind::Corrupt));
        assert!(w.reason.contains("hashes to"), "{}", w.reason);
        assert_eq!(report.problems.len(), 3, "{:?}", report.problems);
        assert_eq!(report.commits, 2);
    }

    /// Truncations and garbage of every metadata type and of content objects: reported,
    /// never a panic.
    #[test]
    fn never_panics_on_garbage() {
        for mode in ["archive", "bare-user", "bare"] {
            let (_tmp, repo, c) = setup(mode);
            let commit_bytes = std::fs::read(repo.object_path(ObjectType::Commit, &c)).unwrap();
            let (root_tree, root_meta) = dir_csums(&repo, &c, "/");
            let hello = file_csum(&repo, &c, "/hello.txt");
            let targets = [
                (ObjectType::Commit, c),
                (ObjectType::DirTree, root_tree),
                (ObjectType::DirMeta, root_meta),
                (ObjectType::File, hello),
            ];
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for (ty, csum) in targets {
                let path = repo.object_path(ty, &csum);
                let original = std::fs::read(&path).unwrap_or_default();
                let mut variants: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff; 7]];
                for cut in [
                    1,
                    8,
                    9,
                    original.len() / 2,
                    original.len().saturating_sub(1),
                ] {
                    variants.push(original[..cut.min(original.len())].to_vec());
                }
                for _ in 0..4 {
                    let mut v = original.clone();
                    for b in v.iter_mut() {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        if seed % 5 == 0 {
                            *b = seed as u8;
                        }
                    }
                    variants.push(v);
                }
                for v in variants {
                    corrupt_file(&path, |d| *d = v.clone());
                    let report = fsck(&repo, |_| {}).unwrap();
                    if v != original {
                        assert!(
                            report
                                .problems
                                .iter()
                                .any(|p| p.ty == ty && p.checksum == csum),
                            "{mode} {ty} {} bytes: {:?}",
                            v.len(),
                            report.problems
                        );
                    }
                }
                corrupt_file(&path, |d| *d = original.clone());
            }
            assert!(fsck(&repo, |_| {}).unwrap().is_clean());
            let _ = commit_bytes;
        }
    }
}
