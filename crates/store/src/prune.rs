//! Delete unreachable objects, with `ostree prune`'s semantics.
//!
//! * By default every commit in the repository is a root: only objects that no commit
//!   references (left over by interrupted writes) are deleted, and commits never are.
//!   `depth` limits how many parents of each commit are walked (this only matters for
//!   parents that are not themselves roots, i.e. never here; it is kept for parity).
//! * `refs_only`: the roots are the commits of refs (local, remote and collection refs),
//!   each followed through `depth` parents (`None`: all of history). Commits that no ref
//!   reaches are deleted, with their detached metadata and partial marker.
//! * `keep_younger_than` (implies `refs_only`, as in ostree): each ref's commit is kept,
//!   and so are its ancestors as long as they are at least that recent (the walk stops at
//!   the first older one). `depth`, when also given, keeps that many parents in addition.
//!
//! A commit whose parent is absent simply ends its history. A commit marked partial may
//! lack dirtrees and dirmetas; any other commit that references a missing dirtree makes
//! the prune fail before anything is deleted, since reachability cannot be known.
//!
//! Deletion happens under the repository's exclusive lock, commits first and content
//! last, so that an interrupted prune leaves unreachable objects rather than commits with
//! holes. With `core.tombstone-commits=true`, a `.tombstone-commit` is written for every
//! deleted commit, as ostree does.

use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::gvariant::{self, Value};
use crate::repo::Repo;
use std::collections::{HashMap, HashSet};
use std::io::Write;

/// What to keep; see the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Parents to walk from each root commit; `None` walks all of history.
    pub depth: Option<u32>,
    /// Keep ref commits' ancestors at least this recent (Unix seconds). Implies `refs_only`.
    pub keep_younger_than: Option<u64>,
    /// Roots are the refs' commits only, so unreferenced commits are deleted.
    pub refs_only: bool,
    /// Compute and report, delete nothing.
    pub dry_run: bool,
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Commit, dirtree, dirmeta and content objects in the repository before the prune.
    pub objects_total: u64,
    /// Objects deleted (all types).
    pub objects_pruned: u64,
    /// Of which commits.
    pub commits_pruned: u64,
    /// Of which content objects.
    pub content_pruned: u64,
    /// Storage freed: the sizes of the deleted object files.
    pub bytes_freed: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

/// The set of objects to keep.
pub type Reachable = HashSet<(ObjectType, Checksum)>;

struct Walker<'a> {
    repo: &'a Repo,
    reachable: Reachable,
    /// The most parents still to walk with which each commit was visited (`None`: all).
    visited: HashMap<Checksum, Option<u32>>,
}

/// Whether a visit with `prev` parents to go already covers one with `new`.
fn covers(prev: Option<u32>, new: Option<u32>) -> bool {
    match (prev, new) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(a), Some(b)) => a >= b,
    }
}

impl Walker<'_> {
    /// Keep a commit, its tree and `depth` of its parents.
    fn commit(&mut self, start: Checksum, depth: Option<u32>) -> Result<()> {
        let mut csum = start;
        let mut remaining = depth;
        loop {
            if let Some(prev) = self.visited.get(&csum)
                && covers(*prev, remaining)
            {
                return Ok(());
            }
            let commit = match self.repo.load_commit(&csum) {
                Ok(c) => c,
                // History may be cut short (depth-limited pulls, earlier prunes).
                Err(Error::Missing { .. }) => return Ok(()),
                Err(e) => return Err(e),
            };
            self.visited.insert(csum, remaining);
            if self.reachable.insert((ObjectType::Commit, csum)) {
                let partial = self.repo.is_partial(&csum);
                self.tree(commit.root_tree, commit.root_meta, partial)?;
            }
            match (remaining, commit.parent) {
                (Some(0), _) | (_, None) => return Ok(()),
                (r, Some(parent)) => {
                    remaining = r.map(|n| n - 1);
                    csum = parent;
                }
            }
        }
    }

    fn tree(&mut self, root_tree: Checksum, root_meta: Checksum, partial: bool) -> Result<()> {
        self.reachable.insert((ObjectType::DirMeta, root_meta));
        let mut stack = vec![root_tree];
        while let Some(t) = stack.pop() {
            if !self.reachable.insert((ObjectType::DirTree, t)) {
                continue;
            }
            let tree = match self.repo.load_dirtree(&t) {
                Ok(tree) => tree,
                Err(Error::Missing { .. }) if partial => continue,
                Err(e) => return Err(e),
            };
            for (_, f) in tree.files {
                self.reachable.insert((ObjectType::File, f));
            }
            for (_, st, sm) in tree.dirs {
                self.reachable.insert((ObjectType::DirMeta, sm));
                stack.push(st);
            }
        }
        Ok(())
    }
}

/// The objects a prune with `opts` keeps.
pub fn reachable(repo: &Repo, opts: &PruneOptions) -> Result<Reachable> {
    let mut w = Walker {
        repo,
        reachable: HashSet::new(),
        visited: HashMap::new(),
    };
    if opts.refs_only || opts.keep_younger_than.is_some() {
        for (_, commit) in crate::fsck::all_refs(repo)? {
            let Some(limit) = opts.keep_younger_than else {
                w.commit(commit, opts.depth)?;
                continue;
            };
            // The ref's own commit is always kept, whatever its age.
            w.commit(commit, Some(0))?;
            let mut next = Some(commit);
            while let Some(c) = next {
                match repo.load_commit(&c) {
                    Ok(parsed) if parsed.timestamp >= limit => {
                        w.commit(c, Some(0))?;
                        next = parsed.parent;
                    }
                    Ok(_) | Err(Error::Missing { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            if opts.depth.is_some() {
                w.commit(commit, opts.depth)?;
            }
        }
    } else {
        for (ty, commit) in repo.list_objects()? {
            if ty == ObjectType::Commit {
                w.commit(commit, opts.depth)?;
            }
        }
    }
    Ok(w.reachable)
}

/// The order in which unreachable objects are deleted: commits first, content last.
fn deletion_rank(ty: ObjectType) -> u8 {
    match ty {
        ObjectType::Commit => 0,
        ObjectType::DirTree => 1,
        ObjectType::DirMeta => 2,
        _ => 3,
    }
}

/// Prune the repository; see the module documentation.
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneReport> {
    // Reachability must not change between the walk and the deletions.
    let _lock = if opts.dry_run {
        repo.lock_shared()?
    } else {
        repo.lock_exclusive()?
    };
    let keep = reachable(repo, opts)?;
    let mut candidates: Vec<(ObjectType, Checksum)> = repo
        .list_objects()?
        .into_iter()
        .filter(|(ty, _)| {
            matches!(
                ty,
                ObjectType::Commit | ObjectType::DirTree | ObjectType::DirMeta | ObjectType::File
            )
        })
        .collect();
    let mut report = PruneReport {
        objects_total: candidates.len() as u64,
        dry_run: opts.dry_run,
        ..PruneReport::default()
    };
    candidates.retain(|o| !keep.contains(o));
    candidates.sort_by_key(|(ty, c)| (deletion_rank(*ty), *c));
    let tombstones = !opts.dry_run
        && matches!(
            repo.config().get_bool("core", "tombstone-commits"),
            Some(Ok(true))
        );
    for (ty, csum) in candidates {
        let path = repo.object_path(ty, &csum);
        let size = match std::fs::symlink_metadata(&path) {
            Ok(md) => md.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).ctx("stat", path),
        };
        if !opts.dry_run {
            if ty == ObjectType::Commit {
                // Detached metadata first: an interruption then leaves a plain unreachable
                // commit, which the next prune removes.
                repo.delete_object(ObjectType::CommitMeta, &csum)?;
            }
            repo.delete_object(ty, &csum)?;
            if ty == ObjectType::Commit {
                repo.clear_partial(&csum)?;
                if tombstones {
                    write_tombstone(repo, &csum)?;
                }
            }
        }
        report.objects_pruned += 1;
        report.bytes_freed += size;
        match ty {
            ObjectType::Commit => report.commits_pruned += 1,
            ObjectType::File => report.content_pruned += 1,
            _ => {}
        }
    }
    Ok(report)
}

/// `a{sv}` `{'commit': <b'HEX'>}` (the bytestring includes its NUL), stored as
/// `objects/XX/….tombstone-commit` under the deleted commit's checksum.
pub fn tombstone_bytes(commit: &Checksum) -> Vec<u8> {
    let mut hex = commit.to_hex().into_bytes();
    hex.push(0);
    gvariant::to_bytes(&Value::vardict(vec![(
        "commit".to_string(),
        Value::Bytes(hex),
    )]))
}

fn write_tombstone(repo: &Repo, commit: &Checksum) -> Result<()> {
    let tmp = repo.tmp_path();
    let r = (|| {
        let mut f = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(&tombstone_bytes(commit)).ctx("write", &tmp)?;
        drop(f);
        repo.install_object(&tmp, ObjectType::TombstoneCommit, commit)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::FileHeader;
    use crate::tree::fixtures::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    /// 2020-01-01, 2021-01-01, 2022-01-01 and mid-2020, mid-2022 (UTC).
    const Y2020: u64 = 1_577_836_800;
    const Y2021: u64 = 1_609_459_200;
    const Y2022: u64 = 1_640_995_200;
    const MID2020: u64 = 1_590_969_600;
    const MID2022: u64 = 1_654_041_600;

    struct History {
        _tmp: tempfile::TempDir,
        base: PathBuf,
        repo: PathBuf,
        main: Vec<Checksum>,
        dev: Vec<Checksum>,
        gone: Checksum,
        orphan: Checksum,
        remote: Checksum,
        loose_content: Checksum,
        loose_tree: Checksum,
    }

    fn ts(t: u64) -> String {
        format!("--timestamp=@{t}")
    }

    /// main: three commits; dev: two; a deleted branch; an orphan commit; a remote ref;
    /// detached metadata on the oldest commit; and objects no commit references.
    fn history(mode: &str) -> History {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let repo = init_repo(&base, mode);
        let src = base.join("src");
        write(&src.join("shared"), b"in every commit", 0o644);
        let mut main = Vec::new();
        for (i, t) in [Y2020, Y2021, Y2022].into_iter().enumerate() {
            write(&src.join("version"), format!("main {i}").as_bytes(), 0o644);
            write(&src.join(format!("dir{i}/only")), b"x", 0o644);
            let extra = if i == 0 {
                vec![ts(t), "--add-detached-metadata-string=note=old".into()]
            } else {
                vec![ts(t)]
            };
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            main.push(commit(&repo, "main", &src, &extra));
        }
        let dsrc = base.join("dsrc");
        let mut dev = Vec::new();
        for (i, t) in [MID2020, MID2022].into_iter().enumerate() {
            write(&dsrc.join("dev"), format!("dev {i}").as_bytes(), 0o644);
            dev.push(commit(&repo, "dev", &dsrc, &[&ts(t)]));
        }
        let gsrc = base.join("gsrc");
        write(&gsrc.join("gone"), b"deleted branch", 0o644);
        let gone = commit(&repo, "gone", &gsrc, &[&ts(Y2021)]);
        let r = Repo::open(&repo).unwrap();
        r.set_ref("gone", None).unwrap();
        let osrc = base.join("osrc");
        write(&osrc.join("orphan"), b"no ref", 0o644);
        let orphan = commit(&repo, "", &osrc, &["--orphan", &ts(Y2021)]);
        let rsrc = base.join("rsrc");
        write(&rsrc.join("remote"), b"from a remote", 0o644);
        let remote = commit(&repo, "", &rsrc, &["--orphan", &ts(Y2020)]);
        r.set_ref("origin:os/stable", Some(&remote)).unwrap();
        // Left over by an interrupted write: objects no commit references.
        let payload = b"loose payload";
        let h = FileHeader::regular(0, 0, 0o644, vec![]);
        let loose_content = crate::format::content_checksum(&h, payload);
        r.write_content(&loose_content, &h, &mut &payload[..], payload.len() as u64)
            .unwrap();
        let loose_tree = r
            .write_metadata(
                ObjectType::DirTree,
                &crate::format::DirTree {
                    files: vec![("loose".into(), loose_content)],
                    dirs: vec![],
                }
                .to_bytes(),
            )
            .unwrap();
        History {
            _tmp: tmp,
            base,
            repo,
            main,
            dev,
            gone,
            orphan,
            remote,
            loose_content,
            loose_tree,
        }
    }

    fn copy_repo(from: &Path, to: &Path) {
        let st = std::process::Command::new("cp")
            .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn objects(repo: &Path) -> BTreeSet<(ObjectType, Checksum)> {
        Repo::open(repo)
            .unwrap()
            .list_objects()
            .unwrap()
            .into_iter()
            .collect()
    }

    fn commits(repo: &Path) -> BTreeSet<Checksum> {
        objects(repo)
            .into_iter()
            .filter(|(t, _)| *t == ObjectType::Commit)
            .map(|(_, c)| c)
            .collect()
    }

    /// Parse "Total objects: N" and "Deleted M objects" from ostree prune's output.
    fn ostree_counts(out: &str) -> (u64, u64) {
        let num = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .and_then(|rest| rest.split_whitespace().next())
                .map(|n| n.parse::<u64>().unwrap())
        };
        (
            num("Total objects: ").unwrap(),
            num("Deleted ").unwrap_or(0),
        )
    }

    /// Prune copies of the same repository with ostree and with us: the same objects must
    /// survive, the counts must agree, and both results must fsck clean.
    fn same_as_ostree(h: &History, label: &str, args: &[&str], opts: PruneOptions) -> PruneReport {
        let theirs = h.base.join(format!("theirs-{label}"));
        let ours = h.base.join(format!("ours-{label}"));
        copy_repo(&h.repo, &theirs);
        copy_repo(&h.repo, &ours);
        let before = objects(&ours);
        let repo_arg = format!("--repo={}", theirs.display());
        let mut a = vec!["prune", repo_arg.as_str()];
        a.extend_from_slice(args);
        let out = ostree(&a);
        let report = prune(&Repo::open(&ours).unwrap(), &opts).unwrap();
        let after = objects(&ours);
        assert_eq!(objects(&theirs), after, "{label}: kept objects differ");
        let (total, deleted) = ostree_counts(&out);
        assert_eq!(
            (report.objects_total, report.objects_pruned),
            (total, deleted),
            "{label}: {out}"
        );
        let gone: u64 = before
            .difference(&after)
            .filter(|(t, _)| *t == ObjectType::Commit)
            .count() as u64;
        assert_eq!(report.commits_pruned, gone, "{label}");
        let (ok, text) = ostree_status(&["fsck", &format!("--repo={}", ours.display())]);
        assert!(ok, "{label}: fsck after prune: {text}");
        report
    }

    #[test]
    fn matches_ostree_prune() {
        for mode in ["archive", "bare"] {
            let h = history(mode);
            let all: BTreeSet<Checksum> = commits(&h.repo);
            assert_eq!(all.len(), 8);

            // Default: only the loose objects go; every commit stays.
            let r = same_as_ostree(&h, &format!("{mode}-default"), &[], PruneOptions::default());
            assert_eq!((r.objects_pruned, r.commits_pruned), (2, 0));
            let ours = h.base.join(format!("ours-{mode}-default"));
            let left = objects(&ours);
            assert!(!left.contains(&(ObjectType::File, h.loose_content)));
            assert!(!left.contains(&(ObjectType::DirTree, h.loose_tree)));
            assert_eq!(commits(&ours), all);

            same_as_ostree(
                &h,
                &format!("{mode}-depth0"),
                &["--depth=0"],
                PruneOptions {
                    depth: Some(0),
                    ..PruneOptions::default()
                },
            );

            // Refs only: the deleted branch and the orphan go, all history stays.
            same_as_ostree(
                &h,
                &format!("{mode}-refs"),
                &["--refs-only"],
                PruneOptions {
                    refs_only: true,
                    ..PruneOptions::default()
                },
            );
            let ours = h.base.join(format!("ours-{mode}-refs"));
            let mut expect: BTreeSet<Checksum> = h.main.iter().chain(&h.dev).copied().collect();
            expect.insert(h.remote);
            assert_eq!(commits(&ours), expect);
            assert!(!commits(&ours).contains(&h.gone));
            assert!(!commits(&ours).contains(&h.orphan));
            // The oldest commit's detached metadata went with nothing; it is still there.
            assert!(
                Repo::open(&ours)
                    .unwrap()
                    .load_commitmeta(&h.main[0])
                    .unwrap()
                    .is_some()
            );

            // Refs only, depth 1: main[0] and its detached metadata go.
            same_as_ostree(
                &h,
                &format!("{mode}-refs-depth1"),
                &["--refs-only", "--depth=1"],
                PruneOptions {
                    refs_only: true,
                    depth: Some(1),
                    ..PruneOptions::default()
                },
            );
            let ours = h.base.join(format!("ours-{mode}-refs-depth1"));
            let expect: BTreeSet<Checksum> = [h.main[1], h.main[2], h.dev[0], h.dev[1], h.remote]
                .into_iter()
                .collect();
            assert_eq!(commits(&ours), expect);
            assert!(
                !Repo::open(&ours)
                    .unwrap()
                    .object_path(ObjectType::CommitMeta, &h.main[0])
                    .exists()
            );

            // Refs only, depth 0: only the refs' own commits.
            same_as_ostree(
                &h,
                &format!("{mode}-refs-depth0"),
                &["--refs-only", "--depth=0"],
                PruneOptions {
                    refs_only: true,
                    depth: Some(0),
                    ..PruneOptions::default()
                },
            );
            let ours = h.base.join(format!("ours-{mode}-refs-depth0"));
            let expect: BTreeSet<Checksum> = [h.main[2], h.dev[1], h.remote].into_iter().collect();
            assert_eq!(commits(&ours), expect);

            // Keep younger than mid-2021: main[2], dev[1], and each ref's commit however old
            // (the remote's is from 2020).
            let cut = (Y2021 + Y2022) / 2;
            same_as_ostree(
                &h,
                &format!("{mode}-younger"),
                &[&format!("--keep-younger-than=@{cut}")],
                PruneOptions {
                    keep_younger_than: Some(cut),
                    ..PruneOptions::default()
                },
            );
            let ours = h.base.join(format!("ours-{mode}-younger"));
            assert_eq!(commits(&ours), expect);

            // Keep younger than 2020-02: main[1..] and dev[..] (all at least that recent).
            let cut = Y2020 + 31 * 86_400;
            same_as_ostree(
                &h,
                &format!("{mode}-younger2"),
                &[&format!("--keep-younger-than=@{cut}")],
                PruneOptions {
                    keep_younger_than: Some(cut),
                    ..PruneOptions::default()
                },
            );
            let ours = h.base.join(format!("ours-{mode}-younger2"));
            let expect: BTreeSet<Checksum> = [h.main[1], h.main[2], h.dev[0], h.dev[1], h.remote]
                .into_iter()
                .collect();
            assert_eq!(commits(&ours), expect);
        }
    }

    #[test]
    fn dry_run_deletes_nothing_and_reports_the_same() {
        let h = history("archive");
        let repo = Repo::open(&h.repo).unwrap();
        let before = objects(&h.repo);
        let opts = PruneOptions {
            refs_only: true,
            depth: Some(0),
            dry_run: true,
            ..PruneOptions::default()
        };
        let dry = prune(&repo, &opts).unwrap();
        assert!(dry.dry_run);
        assert_eq!(objects(&h.repo), before);
        // The freed size is the sum of the sizes of exactly the objects that go.
        let keep = reachable(&repo, &opts).unwrap();
        // (Detached metadata goes with its commit but, as in ostree, is not counted.)
        let expected_bytes: u64 = before
            .iter()
            .filter(|(t, _)| *t != ObjectType::CommitMeta)
            .filter(|o| !keep.contains(o))
            .map(|(t, c)| repo.object_path(*t, c).symlink_metadata().unwrap().len())
            .sum();
        let real = prune(
            &repo,
            &PruneOptions {
                dry_run: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(
            (dry.objects_pruned, dry.bytes_freed, dry.commits_pruned),
            (real.objects_pruned, real.bytes_freed, real.commits_pruned)
        );
        assert_eq!(real.bytes_freed, expected_bytes);
        assert!(real.bytes_freed > 0 && real.content_pruned > 0);
        let counted = |set: &BTreeSet<(ObjectType, Checksum)>| {
            set.iter()
                .filter(|(t, _)| *t != ObjectType::CommitMeta)
                .count() as u64
        };
        assert_eq!(
            counted(&objects(&h.repo)),
            counted(&before) - real.objects_pruned
        );
        // main[0] and its detached metadata are gone.
        // main[0], main[1], dev[0], the deleted branch's and the orphan.
        assert_eq!(real.commits_pruned, 5);
        assert!(
            !repo
                .object_path(ObjectType::CommitMeta, &h.main[0])
                .exists()
        );
        // Pruning again finds nothing.
        let again = prune(&repo, &opts).unwrap();
        assert_eq!(again.objects_pruned, 0);
    }

    #[test]
    fn deleted_commits_lose_partial_markers_and_get_tombstones() {
        let h = history("archive");
        let repo_arg = format!("--repo={}", h.repo.display());
        ostree(&["config", &repo_arg, "set", "core.tombstone-commits", "true"]);
        let repo = Repo::open(&h.repo).unwrap();
        repo.mark_partial(&h.orphan).unwrap();
        // The oracle's tombstone, from a copy.
        let theirs = h.base.join("theirs");
        copy_repo(&h.repo, &theirs);
        ostree(&[
            "prune",
            &format!("--repo={}", theirs.display()),
            &format!("--delete-commit={}", h.gone),
        ]);
        let expected = std::fs::read(
            Repo::open(&theirs)
                .unwrap()
                .object_path(ObjectType::TombstoneCommit, &h.gone),
        )
        .unwrap();
        assert_eq!(tombstone_bytes(&h.gone), expected);

        let report = prune(
            &repo,
            &PruneOptions {
                refs_only: true,
                ..PruneOptions::default()
            },
        )
        .unwrap();
        assert_eq!(report.commits_pruned, 2);
        assert!(!repo.is_partial(&h.orphan));
        for c in [h.gone, h.orphan] {
            assert!(!repo.has_object(ObjectType::Commit, &c).unwrap());
            assert_eq!(
                std::fs::read(repo.object_path(ObjectType::TombstoneCommit, &c)).unwrap(),
                tombstone_bytes(&c)
            );
        }
        // Tombstones are not objects a prune counts or deletes.
        let again = prune(
            &repo,
            &PruneOptions {
                refs_only: true,
                ..PruneOptions::default()
            },
        )
        .unwrap();
        assert_eq!(again.objects_pruned, 0);
        assert!(
            repo.has_object(ObjectType::TombstoneCommit, &h.gone)
                .unwrap()
        );
        let (ok, text) = ostree_status(&["fsck", &repo_arg]);
        assert!(ok, "{text}");
    }

    #[test]
    fn missing_dirtree_aborts_before_deleting() {
        let h = history("archive");
        let repo = Repo::open(&h.repo).unwrap();
        let c = repo.load_commit(&h.main[2]).unwrap();
        std::fs::remove_file(repo.object_path(ObjectType::DirTree, &c.root_tree)).unwrap();
        let before = objects(&h.repo);
        let err = prune(&repo, &PruneOptions::default()).unwrap_err();
        assert!(
            matches!(err, Error::Missing { ty: ObjectType::DirTree, csum } if csum == c.root_tree),
            "{err}"
        );
        assert_eq!(objects(&h.repo), before);
        // Marked partial, the commit's holes are expected and the prune proceeds; what
        // only the missing tree referenced is now unreachable, as in ostree.
        repo.mark_partial(&h.main[2]).unwrap();
        let report = prune(&repo, &PruneOptions::default()).unwrap();
        let version2 =
            crate::format::content_checksum(&FileHeader::regular(0, 0, 0o644, vec![]), b"main 2");
        assert!(before.contains(&(ObjectType::File, version2)));
        let after = objects(&h.repo);
        for gone in [
            (ObjectType::File, version2),
            (ObjectType::File, h.loose_content),
            (ObjectType::DirTree, h.loose_tree),
        ] {
            assert!(!after.contains(&gone), "{gone:?}");
        }
        assert_eq!(report.objects_pruned, 3);
        assert_eq!(after.len(), before.len() - 3);
    }
}
