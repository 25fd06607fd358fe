//! Publishing: only new objects are uploaded, the result is pullable by `ostree`, and the
//! upload order keeps the destination consistent for clients reading at any moment.

use object_store::memory::InMemory;
use object_store::path::Path as StorePath;
use object_store::{Attribute, ObjectStore};
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use trellis_store::commit::{self, CommitOptions, NoProgress, Source};
use trellis_store::format::{Commit, DirTree, Summary};
use trellis_store::sign::{SecretKey, parse_vardict, verify_any};
use trellis_store::{Checksum, ObjectType, Repo, RepoMode};
use trellis_transport::publish::{
    DestSpec, Destination, PublishError, PublishOptions, PublishReport, publish_blocking,
};

fn write_tree(dir: &Path, tag: &str, files: usize) {
    std::fs::create_dir_all(dir.join("usr/share/doc")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/os-release"), format!("VERSION={tag}\n")).unwrap();
    std::fs::write(dir.join("etc/static"), "unchanged\n").unwrap();
    for i in 0..files {
        let sub = dir.join(format!("usr/share/doc/pkg{}", i % 50));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("f{i}")), format!("{tag} {i}\n").repeat(20)).unwrap();
    }
    let _ = std::fs::remove_file(dir.join("usr/link"));
    symlink("../etc/os-release", dir.join("usr/link")).unwrap();
}

fn commit_tree(repo: &Repo, branch: &str, dir: &Path, ts: u64) -> Checksum {
    let opts = CommitOptions {
        branch: Some(branch.into()),
        subject: format!("at {ts}"),
        timestamp: Some(ts),
        ..CommitOptions::default()
    };
    commit::commit(repo, Source::Dir(dir), &opts, &NoProgress)
        .unwrap()
        .commit
}

fn archive_repo(root: &Path) -> Repo {
    Repo::init(&root.join("repo"), RepoMode::Archive).unwrap()
}

fn publish_to(repo: &Repo, dest: &Destination, opts: &PublishOptions) -> PublishReport {
    publish_blocking(repo, dest, opts, &NoProgress).unwrap()
}

/// Objects a publish carries: everything but detached metadata.
fn uploadable(repo: &Repo) -> HashSet<(ObjectType, Checksum)> {
    repo.list_objects()
        .unwrap()
        .into_iter()
        .filter(|(ty, _)| *ty != ObjectType::CommitMeta)
        .collect()
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn ostree(repo: &Path) -> Command {
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

#[test]
fn publishes_only_what_is_new_and_ostree_pulls_it() {
    let t = tempfile::tempdir().unwrap();
    let repo = archive_repo(t.path());
    let tree = t.path().join("tree");
    write_tree(&tree, "1", 200);
    let c1 = commit_tree(&repo, "main", &tree, 1_700_000_000);
    let web = t.path().join("www/repo");
    let dest = Destination::dir(&web).unwrap();
    let opts = PublishOptions::default();

    let first = publish_to(&repo, &dest, &opts);
    let v1 = uploadable(&repo);
    assert_eq!(first.objects_uploaded, v1.len() as u64);
    assert_eq!(first.commits_uploaded, 1);
    assert_eq!(first.objects_skipped, 0);
    assert!(first.config_uploaded);
    assert_eq!(first.refs_updated.len(), 1);
    assert_eq!(first.summary_refs, 1);

    // Again: no object is uploaded (the files keep their inode), only the summary.
    let probe = web.join("objects").join(c1.loose_path("commit"));
    let inode = std::fs::metadata(&probe).unwrap().ino();
    let second = publish_to(&repo, &dest, &opts);
    assert_eq!(second.objects_uploaded, 0);
    assert_eq!(second.objects_skipped, v1.len() as u64);
    assert!(second.refs_updated.is_empty());
    assert_eq!(second.refs_unchanged, 1);
    assert!(!second.config_uploaded);
    assert_eq!(std::fs::metadata(&probe).unwrap().ino(), inode);

    // An object cut short on the destination (a crash before its data reached the disk)
    // does not count as present: it goes up again.
    std::fs::File::create(&probe).unwrap();
    let repaired = publish_to(&repo, &dest, &opts);
    assert_eq!(repaired.objects_uploaded, 1);
    assert_eq!(
        std::fs::read(&probe).unwrap(),
        std::fs::read(repo.object_path(ObjectType::Commit, &c1)).unwrap()
    );

    // A new commit: exactly its new objects go up.
    write_tree(&tree, "2", 220);
    let c2 = commit_tree(&repo, "main", &tree, 1_700_000_100);
    let new: HashSet<_> = uploadable(&repo).difference(&v1).copied().collect();
    let third = publish_to(&repo, &dest, &opts);
    assert_eq!(third.objects_uploaded, new.len() as u64);
    assert_eq!(third.commits_uploaded, 1);
    assert_eq!(third.refs_updated[0].new, c2.to_hex());
    assert_eq!(third.refs_updated[0].old, Some(c1.to_hex()));
    // The published summary is the local one, regenerated.
    assert_eq!(
        std::fs::read(web.join("summary")).unwrap(),
        std::fs::read(repo.path().join("summary")).unwrap()
    );

    // ostree pulls it into a bare-user repo: fsck-clean, same tree.
    let client = t.path().join("client");
    run_ok(ostree(&client).args(["init", "--mode=bare-user"]));
    run_ok(
        ostree(&client)
            .args(["remote", "add", "--no-gpg-verify", "origin"])
            .arg(format!("file://{}", web.display())),
    );
    run_ok(ostree(&client).args(["pull", "--depth=-1", "origin", "main"]));
    run_ok(ostree(&client).arg("fsck"));
    assert_eq!(
        run_ok(ostree(&client).args(["rev-parse", "origin:main"])),
        c2.to_hex()
    );
    assert_eq!(
        run_ok(ostree(&client).args(["rev-parse", "origin:main^"])),
        c1.to_hex()
    );
    let co = t.path().join("checkout");
    run_ok(
        ostree(&client)
            .args(["checkout", "-U", "origin:main"])
            .arg(&co),
    );
    run_ok(
        Command::new("diff")
            .args(["-r", "--no-dereference"])
            .arg(&tree)
            .arg(&co),
    );
}

/// Where a file sits in the publishing order.
fn rank(rel: &str) -> u8 {
    if rel == "summary.sig" {
        6
    } else if rel == "summary" {
        5
    } else if rel.starts_with("refs/") {
        4
    } else if rel == "config" {
        3
    } else if rel.ends_with(".commit") {
        2
    } else if rel.ends_with(".commitmeta") {
        1
    } else {
        0
    }
}

/// Files under `prefix/` in the order they were last written. InMemory's etag is a counter
/// incremented on every put, which makes it a record of the order.
async fn put_order(store: &InMemory, prefix: &str) -> Vec<(u64, String)> {
    use futures::TryStreamExt;
    let metas: Vec<_> = store
        .list(Some(&StorePath::parse(prefix).unwrap()))
        .try_collect()
        .await
        .unwrap();
    let mut out: Vec<(u64, String)> = metas
        .into_iter()
        .map(|m| {
            let etag = m.e_tag.unwrap().parse().unwrap();
            let rel = m.location.as_ref()[prefix.len() + 1..].to_string();
            (etag, rel)
        })
        .collect();
    out.sort();
    out
}

fn assert_ordered(order: &[(u64, String)]) {
    for w in order.windows(2) {
        assert!(
            rank(&w[0].1) <= rank(&w[1].1),
            "{} was written before {}: {order:#?}",
            w[1].1,
            w[0].1
        );
    }
}

#[tokio::test]
async fn object_store_upload_order_and_cache_headers() {
    let t = tempfile::tempdir().unwrap();
    let repo = archive_repo(t.path());
    let tree = t.path().join("tree");
    write_tree(&tree, "1", 30);
    let c1 = commit_tree(&repo, "main", &tree, 1_700_000_000);
    let key = SecretKey::generate().unwrap();
    repo.sign_commit(&c1, &key).unwrap();
    let store = Arc::new(InMemory::new());
    let dest = Destination::from_store(store.clone(), "os/debian", "memory://os/debian", true);
    let opts = PublishOptions {
        sign_key: Some(key.clone()),
        ..PublishOptions::default()
    };
    let r = trellis_transport::publish::publish(&repo, &dest, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(r.summary_signed);
    assert_eq!(r.commitmeta_uploaded, 1);
    let order = put_order(&store, "os/debian").await;
    assert_ordered(&order);
    let ranks: HashSet<u8> = order.iter().map(|(_, rel)| rank(rel)).collect();
    assert_eq!(
        ranks.len(),
        7,
        "every kind of file was published: {order:#?}"
    );
    let first_end = order.last().unwrap().0;

    // The signature covers the published summary.
    let get = |rel: &str| {
        let store = store.clone();
        let loc = StorePath::parse(format!("os/debian/{rel}")).unwrap();
        async move { store.get(&loc).await.unwrap() }
    };
    let summary = get("summary").await.bytes().await.unwrap();
    let sig = get("summary.sig").await.bytes().await.unwrap();
    assert!(verify_any(
        &summary,
        &parse_vardict(&sig).unwrap(),
        &[key.public()]
    ));
    // Objects are immutable for caches; what changes is not cached.
    let obj = get(&format!("objects/{}", c1.loose_path("commit"))).await;
    let cc = obj.attributes.get(&Attribute::CacheControl).unwrap();
    assert!(cc.as_ref().contains("immutable"), "{cc:?}");
    for rel in ["summary", "refs/heads/main"] {
        let r = get(rel).await;
        assert_eq!(
            r.attributes
                .get(&Attribute::CacheControl)
                .map(|v| v.as_ref()),
            Some("no-cache"),
            "{rel}"
        );
    }

    // A second commit: its files, in order, all after the first publish's.
    write_tree(&tree, "2", 40);
    commit_tree(&repo, "main", &tree, 1_700_000_100);
    let r = trellis_transport::publish::publish(&repo, &dest, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(r.objects_uploaded > 0 && r.objects_skipped > 0);
    let later: Vec<_> = put_order(&store, "os/debian")
        .await
        .into_iter()
        .filter(|(e, _)| *e > first_end)
        .collect();
    assert_ordered(&later);
    assert_eq!(later.last().unwrap().1, "summary.sig");

    // The S3 destination is the same code behind another store.
    let spec = DestSpec::parse("s3://my-bucket/os/debian").unwrap();
    assert_eq!(
        Destination::open(&spec).unwrap().name(),
        "s3://my-bucket/os/debian"
    );
}

/// Walk what a client would fetch: summary (or refs), commits, dirtrees; every object
/// named must exist. Returns the commits seen.
fn client_view(web: &Path) -> Vec<Checksum> {
    let obj =
        |ty: ObjectType, c: &Checksum| web.join("objects").join(c.loose_path(ty.extension(true)));
    let mut tips = Vec::new();
    if let Ok(bytes) = std::fs::read(web.join("summary")) {
        let s = Summary::parse(&bytes).unwrap();
        tips.extend(s.refs.iter().map(|r| r.commit));
    }
    if let Ok(text) = std::fs::read_to_string(web.join("refs/heads/main")) {
        tips.push(Checksum::from_hex(text.trim()).unwrap());
    }
    let mut seen = HashSet::new();
    for c in &tips {
        let bytes = std::fs::read(obj(ObjectType::Commit, c))
            .unwrap_or_else(|e| panic!("commit {c} named but absent: {e}"));
        let commit = Commit::parse(&bytes).unwrap();
        assert!(obj(ObjectType::DirMeta, &commit.root_meta).exists());
        let mut stack = vec![commit.root_tree];
        while let Some(t) = stack.pop() {
            if !seen.insert(t) {
                continue;
            }
            let bytes = std::fs::read(obj(ObjectType::DirTree, &t))
                .unwrap_or_else(|e| panic!("dirtree {t} of {c} absent: {e}"));
            let tree = DirTree::parse(&bytes).unwrap();
            for (name, f) in &tree.files {
                assert!(
                    obj(ObjectType::File, f).exists(),
                    "{name} ({f}) of commit {c} absent"
                );
            }
            for (_, st, sm) in &tree.dirs {
                assert!(obj(ObjectType::DirMeta, sm).exists());
                stack.push(*st);
            }
        }
    }
    tips
}

#[test]
fn a_client_reading_during_a_publish_sees_complete_commits() {
    let t = tempfile::tempdir().unwrap();
    let repo = archive_repo(t.path());
    let tree = t.path().join("tree");
    write_tree(&tree, "1", 400);
    commit_tree(&repo, "main", &tree, 1_700_000_000);
    let web = t.path().join("www");
    let dest = Destination::dir(&web).unwrap();
    publish_to(&repo, &dest, &PublishOptions::default());
    write_tree(&tree, "2", 3000);
    let c2 = commit_tree(&repo, "main", &tree, 1_700_000_100);

    let done = AtomicBool::new(false);
    let rounds = std::thread::scope(|s| {
        let publisher = s.spawn(|| {
            let opts = PublishOptions {
                jobs: 2,
                ..PublishOptions::default()
            };
            let r = publish_to(&repo, &dest, &opts);
            done.store(true, Ordering::SeqCst);
            r
        });
        let mut rounds = 0u64;
        let start = std::time::Instant::now();
        while !done.load(Ordering::SeqCst) && start.elapsed().as_secs() < 120 {
            client_view(&web);
            rounds += 1;
        }
        let r = publisher.join().unwrap();
        assert!(r.objects_uploaded > 3000);
        rounds
    });
    assert!(rounds > 0, "the reader never ran during the publish");
    assert!(client_view(&web).contains(&c2));
}

#[test]
fn publishing_some_refs_keeps_the_others_in_the_summary() {
    let t = tempfile::tempdir().unwrap();
    let repo = archive_repo(t.path());
    let tree = t.path().join("tree");
    write_tree(&tree, "1", 10);
    let a = commit_tree(&repo, "os/a", &tree, 1_700_000_000);
    write_tree(&tree, "2", 10);
    let b = commit_tree(&repo, "os/b", &tree, 1_700_000_100);
    let web = t.path().join("www");
    let dest = Destination::dir(&web).unwrap();
    let only = |r: &str| PublishOptions {
        refs: vec![r.to_string()],
        ..PublishOptions::default()
    };
    let names = || -> Vec<(String, Checksum)> {
        Summary::parse(&std::fs::read(web.join("summary")).unwrap())
            .unwrap()
            .refs
            .into_iter()
            .map(|r| (r.name, r.commit))
            .collect()
    };
    publish_to(&repo, &dest, &only("os/a"));
    assert_eq!(names(), vec![("os/a".to_string(), a)]);
    assert!(!web.join("refs/heads/os/b").exists());
    publish_to(&repo, &dest, &only("os/b"));
    assert_eq!(
        names(),
        vec![("os/a".to_string(), a), ("os/b".to_string(), b)]
    );

    // Another repository publishing its own ref: the summary keeps the refs it does not
    // have, reading their commits from the destination.
    let t2 = tempfile::tempdir().unwrap();
    let other = archive_repo(t2.path());
    let c = commit_tree(&other, "os/c", &tree, 1_700_000_200);
    let r = publish_to(&other, &dest, &PublishOptions::default());
    assert_eq!(r.summary_refs, 3);
    let listed = names();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2], ("os/c".to_string(), c));
    let s = Summary::parse(&std::fs::read(web.join("summary")).unwrap()).unwrap();
    assert_eq!(s.refs[0].timestamp(), Some(1_700_000_000));
    assert_eq!(
        s.refs[0].commit_size,
        std::fs::metadata(repo.object_path(ObjectType::Commit, &a))
            .unwrap()
            .len()
    );
}

#[test]
fn signatures_are_republished_and_never_dropped_silently() {
    let t = tempfile::tempdir().unwrap();
    let repo = archive_repo(t.path());
    let tree = t.path().join("tree");
    write_tree(&tree, "1", 10);
    let c = commit_tree(&repo, "main", &tree, 1_700_000_000);
    let web = t.path().join("www");
    let dest = Destination::dir(&web).unwrap();
    let key = SecretKey::generate().unwrap();
    let signed = PublishOptions {
        sign_key: Some(key.clone()),
        ..PublishOptions::default()
    };
    let r = publish_to(&repo, &dest, &signed);
    assert!(r.summary_signed);
    assert_eq!(r.commitmeta_uploaded, 0);
    let summary = std::fs::read(web.join("summary")).unwrap();
    let sig = std::fs::read(web.join("summary.sig")).unwrap();
    assert!(verify_any(
        &summary,
        &parse_vardict(&sig).unwrap(),
        &[key.public()]
    ));
    assert_eq!(std::fs::read(repo.path().join("summary.sig")).unwrap(), sig);

    // Publishing unsigned over a signed summary is refused, and changes nothing.
    let err = publish_blocking(&repo, &dest, &PublishOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, PublishError::WouldUnsign { .. }), "{err}");
    assert_eq!(std::fs::read(web.join("summary.sig")).unwrap(), sig);

    // A commit signed after its first publish: its commitmeta goes up again.
    repo.sign_commit(&c, &key).unwrap();
    let r = publish_to(&repo, &dest, &signed);
    assert_eq!(r.commitmeta_uploaded, 1);
    assert_eq!(r.objects_uploaded, 0);
    let rel = c.loose_path("commitmeta");
    assert_eq!(
        std::fs::read(web.join("objects").join(&rel)).unwrap(),
        std::fs::read(repo.path().join("objects").join(&rel)).unwrap()
    );

    // Explicitly unsigned: the stale signature goes.
    let unsigned = PublishOptions {
        unsigned: true,
        ..PublishOptions::default()
    };
    let r = publish_to(&repo, &dest, &unsigned);
    assert!(r.summary_signature_removed);
    assert!(!web.join("summary.sig").exists());
}

#[test]
fn only_archive_repositories_are_published() {
    let t = tempfile::tempdir().unwrap();
    let repo = Repo::init(&t.path().join("r"), RepoMode::BareUser).unwrap();
    let dest = Destination::dir(&t.path().join("www")).unwrap();
    let err = publish_blocking(&repo, &dest, &PublishOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, PublishError::NotArchive { .. }), "{err}");
}
