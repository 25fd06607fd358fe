//! Export and import: deterministic archives, round trips checked by `ostree fsck`, and
//! hostile archives refused without writing anything outside the repository.

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use tar::EntryType;
use trellis_store::commit::{self, CommitOptions, NoProgress, Source};
use trellis_store::format::Summary;
use trellis_store::sign::SecretKey;
use trellis_store::{Checksum, ObjectType, Repo, RepoMode};
use trellis_transport::export::{ExportError, ExportOptions, export};
use trellis_transport::import::{ImportError, ImportOptions, SummaryAction, import};

fn write_tree(dir: &Path, tag: &str) {
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc/empty")).unwrap();
    std::fs::write(dir.join("usr/bin/tool"), format!("#!/bin/sh\necho {tag}\n")).unwrap();
    std::fs::write(dir.join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(dir.join("etc/zero"), "").unwrap();
    let big: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    std::fs::write(dir.join("usr/big.bin"), big).unwrap();
    // Incompressible and over 4 MiB: imported through the streaming path, not the workers.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("usr/noise.bin"), noise).unwrap();
    let _ = std::fs::remove_file(dir.join("usr/link"));
    symlink("bin/tool", dir.join("usr/link")).unwrap();
    std::fs::write(dir.join(format!("usr/{tag}.txt")), tag).unwrap();
}

fn commit_tree(repo: &Repo, branch: &str, dir: &Path, ts: u64) -> Checksum {
    let opts = CommitOptions {
        branch: Some(branch.into()),
        subject: format!("commit at {ts}"),
        timestamp: Some(ts),
        ..CommitOptions::default()
    };
    commit::commit(repo, Source::Dir(dir), &opts, &NoProgress)
        .unwrap()
        .commit
}

/// An archive repo with history on `main`, a nested ref and a signed commit.
fn sample_repo(root: &Path) -> (Repo, Vec<Checksum>) {
    let repo = Repo::init(&root.join("src-repo"), RepoMode::Archive).unwrap();
    let tree = root.join("tree");
    write_tree(&tree, "one");
    let c1 = commit_tree(&repo, "main", &tree, 1_700_000_000);
    write_tree(&tree, "two");
    let c2 = commit_tree(&repo, "main", &tree, 1_700_000_100);
    let c3 = commit_tree(&repo, "debian/bookworm/amd64", &tree, 1_700_000_200);
    let key = SecretKey::generate().unwrap();
    repo.sign_commit(&c2, &key).unwrap();
    (repo, vec![c1, c2, c3])
}

fn export_bytes(repo: &Repo, opts: &ExportOptions) -> Vec<u8> {
    let mut out = Vec::new();
    export(repo, opts, &mut out, &NoProgress).unwrap();
    out
}

fn gz() -> ExportOptions {
    ExportOptions {
        gzip: true,
        ..ExportOptions::default()
    }
}

fn plain() -> ExportOptions {
    ExportOptions::default()
}

fn ostree_fsck(repo: &Path) {
    let out = Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .arg("fsck")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree fsck {}: {}{}",
        repo.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mtimes(dir: &Path, secs: i64) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let ts = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &p,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        if p.is_dir() && !p.is_symlink() {
            set_mtimes(&p, secs);
        }
    }
}

#[test]
fn export_is_deterministic() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = sample_repo(t.path());
    repo.update_summary(None).unwrap();
    let a = export_bytes(&repo, &gz());
    let b = export_bytes(&repo, &gz());
    assert_eq!(a, b, "two exports of the same repository differ");
    // No timestamp, no file name in the gzip header.
    assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);

    set_mtimes(repo.path(), 1_234_567_890);
    let c = export_bytes(&repo, &gz());
    assert_eq!(a, c, "file times leaked into the archive");

    // A repository built independently from the same content gives the same bytes.
    let t2 = tempfile::tempdir().unwrap();
    let (repo2, _) = sample_repo(t2.path());
    // The signature key differs between the two runs; compare the unsigned part.
    for r in [&repo, &repo2] {
        let c2 = r.resolve_rev("main").unwrap();
        r.write_commitmeta(&c2, Vec::new()).unwrap();
    }
    let opts = ExportOptions {
        refs: vec!["main".into()],
        ..plain()
    };
    assert_eq!(export_bytes(&repo, &opts), export_bytes(&repo2, &opts));

    // Every header is fixed: owners 0, mtime 0, no user or group names.
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(a.as_slice()));
    let mut names = Vec::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mtime().unwrap(), 0);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username_bytes().unwrap_or(b""), b"");
        assert_eq!(h.groupname_bytes().unwrap_or(b""), b"");
        let mode = h.mode().unwrap();
        match h.entry_type() {
            EntryType::Directory => assert_eq!(mode, 0o755),
            EntryType::Regular => assert_eq!(mode, 0o644),
            other => panic!("unexpected entry type {other:?}"),
        }
        names.push(String::from_utf8(e.path_bytes().into_owned()).unwrap());
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not sorted");
    for must in [
        "config",
        "summary",
        "refs/heads/main",
        "refs/heads/debian/bookworm/amd64",
        "tmp/",
    ] {
        assert!(names.iter().any(|n| n == must), "{must} missing: {names:?}");
    }
}

#[test]
fn round_trip_into_every_mode_is_fsck_clean() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    repo.update_summary(None).unwrap();
    let data = export_bytes(&repo, &gz());
    let src_refs = repo.list_refs().unwrap();
    let largest = repo
        .list_objects()
        .unwrap()
        .into_iter()
        .map(|(ty, c)| std::fs::metadata(repo.object_path(ty, &c)).unwrap().len())
        .max()
        .unwrap();
    assert!(
        largest > 4 * 1024 * 1024,
        "no object takes the streaming path"
    );
    for mode in [RepoMode::Archive, RepoMode::BareUser] {
        let dst = Repo::init(&t.path().join(format!("dst-{mode}")), mode).unwrap();
        let report = import(
            &dst,
            &mut data.as_slice(),
            &ImportOptions::default(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(report.refs.len(), 2);
        assert_eq!(report.commits_new, 3);
        // A summary states its repository's mode: only an archive repository takes it as is.
        if mode.is_archive() {
            assert_eq!(report.summary, SummaryAction::Imported);
            assert_eq!(
                std::fs::read(dst.path().join("summary")).unwrap(),
                std::fs::read(repo.path().join("summary")).unwrap()
            );
        } else {
            assert_eq!(report.summary, SummaryAction::Regenerated);
            let s = Summary::parse(&std::fs::read(dst.path().join("summary")).unwrap()).unwrap();
            assert_eq!(s.refs.len(), 2);
        }
        assert_eq!(dst.list_refs().unwrap(), src_refs);
        for c in &commits {
            assert!(dst.has_object(ObjectType::Commit, c).unwrap());
            assert!(!dst.is_partial(c), "{c} left partial");
        }
        assert_eq!(
            dst.load_commitmeta(&commits[1]).unwrap(),
            repo.load_commitmeta(&commits[1]).unwrap()
        );
        ostree_fsck(dst.path());

        // Importing again stores nothing and moves nothing.
        let again = import(
            &dst,
            &mut data.as_slice(),
            &ImportOptions::default(),
            &NoProgress,
        )
        .unwrap();
        assert_eq!(again.commits_new, 0);
        assert!(again.refs.is_empty());
        assert_eq!(again.refs_unchanged, 2);
    }
    // Archive to archive keeps the .filez bytes as they were.
    let dst = Repo::open(&t.path().join("dst-archive")).unwrap();
    for (ty, c) in repo.list_objects().unwrap() {
        assert_eq!(
            std::fs::read(repo.object_path(ty, &c)).unwrap(),
            std::fs::read(dst.object_path(ty, &c)).unwrap(),
            "{ty} {c}"
        );
    }
}

#[test]
fn extracted_archive_is_an_ostree_repository() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    let tarball = t.path().join("repo.tar");
    std::fs::write(&tarball, export_bytes(&repo, &plain())).unwrap();
    let x = t.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    ostree_fsck(&x);
    let out = Command::new("ostree")
        .arg(format!("--repo={}", x.display()))
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        commits[1].to_hex()
    );
}

#[test]
fn ref_and_depth_select_history() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    repo.update_summary(None).unwrap();
    let opts = ExportOptions {
        refs: vec!["main".into()],
        depth: Some(0),
        gzip: false,
    };
    let mut out = Vec::new();
    let report = export(&repo, &opts, &mut out, &NoProgress).unwrap();
    assert_eq!(report.commits, 1);
    assert!(!report.summary_included, "a partial export has no summary");
    let dst = Repo::init(&t.path().join("dst"), RepoMode::Archive).unwrap();
    import(
        &dst,
        &mut out.as_slice(),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert!(dst.has_object(ObjectType::Commit, &commits[1]).unwrap());
    assert!(!dst.has_object(ObjectType::Commit, &commits[0]).unwrap());
    assert_eq!(dst.list_refs().unwrap().len(), 1);
    ostree_fsck(dst.path());

    let all = ExportOptions {
        refs: vec!["main".into()],
        depth: None,
        gzip: false,
    };
    let mut out = Vec::new();
    assert_eq!(
        export(&repo, &all, &mut out, &NoProgress).unwrap().commits,
        2
    );
}

#[test]
fn stale_summary_is_left_out() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = sample_repo(t.path());
    repo.update_summary(None).unwrap();
    let tree = t.path().join("tree");
    write_tree(&tree, "three");
    commit_tree(&repo, "main", &tree, 1_700_000_300);
    let mut out = Vec::new();
    let report = export(&repo, &plain(), &mut out, &NoProgress).unwrap();
    assert!(!report.summary_included);
    assert!(report.summary_skipped.unwrap().contains("stale"));
}

#[test]
fn export_refuses_other_modes() {
    let t = tempfile::tempdir().unwrap();
    let repo = Repo::init(&t.path().join("r"), RepoMode::BareUser).unwrap();
    let err = export(&repo, &plain(), &mut Vec::new(), &NoProgress).unwrap_err();
    assert!(matches!(err, ExportError::NotArchive { .. }));
    assert!(err.to_string().contains("archive repository"), "{err}");
}

// ---- hostile archives -------------------------------------------------------------------

/// Append a member with a raw name (and link target), bypassing the tar crate's checks.
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: EntryType, data: &[u8], link: &[u8]) {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// A valid export of `repo` with `evil` appended by `add` (after every good member, so that
/// refs would be the only thing left to write).
fn tampered(repo: &Repo, add: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let good = export_bytes(repo, &plain());
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(good.as_slice());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let h = e.header().clone();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        b.append(&h, data.as_slice()).unwrap();
    }
    add(&mut b);
    b.into_inner().unwrap()
}

/// Import into a fresh repo under `work/`; returns the error. Checks that no ref was
/// written and nothing named `evil*` appeared anywhere under the temp dir.
fn refused(root: &Path, data: &[u8]) -> ImportError {
    let work = root.join(format!("work-{}", rand_suffix()));
    let dst = Repo::init(&work.join("repo"), RepoMode::Archive).unwrap();
    let err = import(&dst, &mut &data[..], &ImportOptions::default(), &NoProgress).unwrap_err();
    assert!(dst.list_refs().unwrap().is_empty(), "refs written: {err}");
    assert_eq!(find_named(root, "evil"), Vec::<PathBuf>::new(), "{err}");
    err
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn find_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_name().to_string_lossy().contains(needle) {
            out.push(p.clone());
        }
        if e.file_type().unwrap().is_dir() {
            out.extend(find_named(&p, needle));
        }
    }
    out
}

fn assert_refused(err: &ImportError, member: &str, why: &str) {
    let msg = err.to_string();
    assert!(
        msg.contains(member),
        "error does not name {member:?}: {msg}"
    );
    assert!(msg.contains(why), "error does not say {why:?}: {msg}");
}

#[test]
fn hostile_names_and_types_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let (repo, _) = sample_repo(t.path());
    let root = t.path().join("imports");
    std::fs::create_dir(&root).unwrap();
    let abs = format!("{}/evil-abs", root.display());
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            tampered(&repo, |b| {
                raw(b, b"../evil-up", EntryType::Regular, b"x", b"")
            }),
            "../evil-up",
            "'..'",
        ),
        (
            tampered(&repo, |b| {
                raw(
                    b,
                    b"refs/heads/../../../evil-ref",
                    EntryType::Regular,
                    b"x",
                    b"",
                )
            }),
            "evil-ref",
            "'..'",
        ),
        (
            tampered(&repo, |b| {
                raw(b, abs.as_bytes(), EntryType::Regular, b"x", b"")
            }),
            "evil-abs",
            "absolute",
        ),
        (
            tampered(&repo, |b| {
                raw(
                    b,
                    b"refs/heads/evil-link",
                    EntryType::Symlink,
                    b"",
                    b"/etc/passwd",
                )
            }),
            "refs/heads/evil-link",
            "symlink",
        ),
        (
            tampered(&repo, |b| {
                raw(b, b"objects/ab", EntryType::Symlink, b"", b"../../evil-dir")
            }),
            "objects/ab",
            "symlink",
        ),
        (
            tampered(&repo, |b| {
                raw(b, b"refs/heads/evil-hard", EntryType::Link, b"", b"config")
            }),
            "evil-hard",
            "hard link",
        ),
        (
            tampered(&repo, |b| raw(b, b"evil-fifo", EntryType::Fifo, b"", b"")),
            "evil-fifo",
            "FIFO",
        ),
        (
            tampered(&repo, |b| {
                raw(b, b"tmp/evil-dev", EntryType::Char, b"", b"")
            }),
            "evil-dev",
            "device",
        ),
        (
            tampered(&repo, |b| {
                raw(b, b"etc/evil", EntryType::Regular, b"x", b"")
            }),
            "etc/evil",
            "layout",
        ),
        (
            tampered(&repo, |b| {
                raw(b, b"objects/zz/evil.commit", EntryType::Regular, b"x", b"")
            }),
            "objects/zz/evil.commit",
            "layout",
        ),
    ];
    for (data, member, why) in cases {
        let err = refused(&root, &data);
        assert!(matches!(err, ImportError::Refused { .. }), "{err}");
        assert_refused(&err, member, why);
    }
    assert!(!root.parent().unwrap().join("evil-up").exists());
}

#[test]
fn bad_objects_are_refused_before_storage() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    let root = t.path().join("imports");
    std::fs::create_dir(&root).unwrap();

    // Bytes that do not hash to the name.
    let fake = Checksum::of(b"something else");
    let name = format!("objects/{}", fake.loose_path("dirmeta"));
    let dirmeta = std::fs::read(repo.object_path(
        ObjectType::DirMeta,
        &repo.load_commit(&commits[0]).unwrap().root_meta,
    ))
    .unwrap();
    let data = tampered(&repo, |b| {
        raw(b, name.as_bytes(), EntryType::Regular, &dirmeta, b"")
    });
    let err = refused(&root, &data);
    assert!(matches!(err, ImportError::BadObject { .. }), "{err}");
    assert_refused(&err, &name, "hashes to");
    let probe = Repo::init(&root.join("probe"), RepoMode::Archive).unwrap();
    assert!(!probe.has_object(ObjectType::DirMeta, &fake).unwrap());

    // A content object whose compressed payload is damaged: never stored.
    let (ty, victim) = repo
        .list_objects()
        .unwrap()
        .into_iter()
        .find(|(ty, c)| {
            *ty == ObjectType::File
                && std::fs::metadata(repo.object_path(*ty, c)).unwrap().len() > 1000
        })
        .unwrap();
    let mut bytes = std::fs::read(repo.object_path(ty, &victim)).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    let name = format!("objects/{}", victim.loose_path("filez"));
    let mut b = tar::Builder::new(Vec::new());
    raw(&mut b, name.as_bytes(), EntryType::Regular, &bytes, b"");
    let work = root.join("damaged");
    let dst = Repo::init(&work, RepoMode::BareUser).unwrap();
    let data = b.into_inner().unwrap();
    let err = import(&dst, &mut &data[..], &ImportOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, ImportError::BadObject { .. }), "{err}");
    assert_refused(&err, &name, "");
    assert!(!dst.has_object(ObjectType::File, &victim).unwrap());
    assert_eq!(
        std::fs::read_dir(work.join("tmp")).unwrap().count(),
        1,
        "temporary files left behind (only tmp/cache expected)"
    );

    // A bare-mode object and a bare repository's config.
    let name = format!("objects/{}", victim.loose_path("file"));
    let data = tampered(&repo, |b| {
        raw(b, name.as_bytes(), EntryType::Regular, b"x", b"")
    });
    assert_refused(&refused(&root, &data), &name, "bare-mode");
    let mut b = tar::Builder::new(Vec::new());
    let bare_config = b"[core]\nrepo_version=1\nmode=bare\n";
    raw(&mut b, b"config", EntryType::Regular, bare_config, b"");
    let data = b.into_inner().unwrap();
    assert_refused(&refused(&root, &data), "config", "\"bare\"");

    // Oversized metadata is refused from its header, before anything is read.
    let big = format!("objects/{}", fake.loose_path("commit"));
    let mut h = tar::Header::new_gnu();
    h.set_path(&big).unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(200 * 1024 * 1024);
    h.set_cksum();
    // Only the header: the data is never read.
    let data = h.as_bytes().to_vec();
    assert_refused(&refused(&root, &data), &big, "limit");
}

#[test]
fn refs_need_complete_commits() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    let root = t.path().join("imports");
    std::fs::create_dir(&root).unwrap();

    // A ref to a commit that is nowhere.
    let ghost = Checksum::of(b"ghost");
    let data = tampered(&repo, |b| {
        raw(
            b,
            b"refs/heads/ghost",
            EntryType::Regular,
            format!("{ghost}\n").as_bytes(),
            b"",
        )
    });
    let err = refused(&root, &data);
    assert!(matches!(err, ImportError::Ref { .. }), "{err}");
    assert_refused(&err, "ghost", "neither in the archive");

    // A commit without its tree: the ref is not written and the commit stays partial.
    let c = commits[2];
    let commit_bytes = std::fs::read(repo.object_path(ObjectType::Commit, &c)).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        format!("objects/{}", c.loose_path("commit")).as_bytes(),
        EntryType::Regular,
        &commit_bytes,
        b"",
    );
    raw(
        &mut b,
        b"refs/heads/hollow",
        EntryType::Regular,
        format!("{c}\n").as_bytes(),
        b"",
    );
    let data = b.into_inner().unwrap();
    let dst = Repo::init(&root.join("hollow"), RepoMode::Archive).unwrap();
    let err = import(&dst, &mut &data[..], &ImportOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, ImportError::Incomplete { .. }), "{err}");
    assert!(dst.list_refs().unwrap().is_empty());
    assert!(dst.is_partial(&c));

    // Marked partial by the archive itself, it is accepted as partial.
    let mut b = tar::Builder::new(Vec::new());
    raw(
        &mut b,
        format!("objects/{}", c.loose_path("commit")).as_bytes(),
        EntryType::Regular,
        &commit_bytes,
        b"",
    );
    raw(
        &mut b,
        format!("state/{c}.commitpartial").as_bytes(),
        EntryType::Regular,
        b"",
        b"",
    );
    let data = b.into_inner().unwrap();
    let dst = Repo::init(&root.join("partial"), RepoMode::Archive).unwrap();
    import(&dst, &mut &data[..], &ImportOptions::default(), &NoProgress).unwrap();
    assert!(dst.is_partial(&c));
}

#[test]
fn refs_move_only_forward_unless_forced() {
    let t = tempfile::tempdir().unwrap();
    let (repo, commits) = sample_repo(t.path());
    let data = export_bytes(&repo, &plain());
    let dst = Repo::init(&t.path().join("dst"), RepoMode::Archive).unwrap();
    // The destination's main is a descendant-free other line of history.
    let tree = t.path().join("other");
    write_tree(&tree, "other");
    let other = commit_tree(&dst, "main", &tree, 1_600_000_000);
    let err = import(
        &dst,
        &mut data.as_slice(),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(dst.read_ref("main").unwrap(), Some(other));
    let report = import(
        &dst,
        &mut data.as_slice(),
        &ImportOptions { force: true },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(dst.read_ref("main").unwrap(), Some(commits[1]));
    assert!(report.refs.iter().any(|r| r.old == Some(other.to_hex())));

    // An ancestor to its descendant is a plain fast-forward.
    let dst2 = Repo::init(&t.path().join("dst2"), RepoMode::Archive).unwrap();
    let old = ExportOptions {
        refs: vec!["main".into()],
        depth: None,
        gzip: false,
    };
    let mut first = Vec::new();
    export(&repo, &old, &mut first, &NoProgress).unwrap();
    import(
        &dst2,
        &mut first.as_slice(),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap();
    dst2.set_ref("main", Some(&commits[0])).unwrap();
    import(
        &dst2,
        &mut first.as_slice(),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(dst2.read_ref("main").unwrap(), Some(commits[1]));
}

#[test]
fn imports_a_tar_of_an_ostree_repository() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("ostree-repo");
    let tree = t.path().join("tree");
    write_tree(&tree, "ostree");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
    ok(Command::new("ostree")
        .arg(format!("--repo={}", src.display()))
        .args(["init", "--mode=archive"]));
    ok(Command::new("ostree")
        .arg(format!("--repo={}", src.display()))
        .args([
            "commit",
            "-b",
            "os/main",
            "-s",
            "x",
            "--timestamp=2024-01-01T00:00:00Z",
        ])
        .arg(&tree));
    ok(Command::new("ostree")
        .arg(format!("--repo={}", src.display()))
        .args(["summary", "-u"]));
    let tarball = t.path().join("repo.tar.gz");
    ok(Command::new("tar")
        .arg("czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("."));
    let dst = Repo::init(&t.path().join("dst"), RepoMode::BareUser).unwrap();
    let mut f = std::fs::File::open(&tarball).unwrap();
    let report = import(&dst, &mut f, &ImportOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.refs.len(), 1);
    assert_eq!(report.summary, SummaryAction::Regenerated);
    ostree_fsck(dst.path());
    let out = Command::new("ostree")
        .arg(format!("--repo={}", src.display()))
        .args(["rev-parse", "os/main"])
        .output()
        .unwrap();
    assert_eq!(
        dst.read_ref("os/main").unwrap().unwrap().to_hex(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}
