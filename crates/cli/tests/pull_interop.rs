//! `trellis pull` and `trellis pull-local` against repositories written by the real
//! `ostree`, served by nginx (a temp config on a loopback port) and by `trellis serve`:
//! same commits, fsck-clean results (ostree's fsck and trellis's), identical checkouts,
//! `--depth`, `--mirror`, `--commit-metadata-only`, and ed25519 signature checks that leave
//! no ref behind when they refuse.

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trellis_store::format::Summary;
use trellis_store::{ObjectType, Repo};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn oflag(repo: &Path) -> String {
    format!("--repo={}", repo.display())
}

/// A server process on a loopback port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local addr").port()
}

fn wait_for_port(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// nginx (Debian's nginx-light) serving `root` statically, with its config, pid, logs and
/// temp paths under `work`.
fn nginx(root: &Path, work: &Path) -> Server {
    std::fs::create_dir_all(work).expect("mkdir");
    let w = work.display();
    for _ in 0..5 {
        let port = free_port();
        let conf = work.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                // One process, no workers: killing the child stops the server, and no
                // worker outlives the test.
                "master_process off;\ndaemon off;\npid {w}/nginx.pid;\n\
                 error_log {w}/error.log;\nevents {{ worker_connections 1024; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {w}/tmp-body;\n\
                 proxy_temp_path {w}/tmp-proxy;\n fastcgi_temp_path {w}/tmp-fastcgi;\n\
                 uwsgi_temp_path {w}/tmp-uwsgi;\n scgi_temp_path {w}/tmp-scgi;\n\
                 sendfile on;\n keepalive_requests 100000;\n\
                 default_type application/octet-stream;\n\
                 server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
                root = root.display(),
            ),
        )
        .expect("write nginx.conf");
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(work.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx-light)");
        if wait_for_port(&mut child, port) {
            return Server {
                child,
                url: format!("http://127.0.0.1:{port}/"),
            };
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "nginx did not start: {}",
        std::fs::read_to_string(work.join("error.log")).unwrap_or_default()
    );
}

/// `trellis serve` on a port the kernel picks; the address is read from its stderr.
fn trellis_serve(repo: &Path) -> Server {
    let mut child = trellis(&["serve", "--repo", p(repo), "--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trellis serve");
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.expect("read trellis serve stderr");
        if let Some(rest) = line.split(" at ").last()
            && rest.starts_with("http://")
        {
            url = Some(rest.trim().to_string());
            break;
        }
    }
    // Keep draining, so that the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let url = url.unwrap_or_else(|| panic!("trellis serve printed no address"));
    Server { child, url }
}

/// An ostree-written archive repo of `tree` with two commits on `main` (the second adds a
/// file), and a summary. Returns (repo, first commit, second commit).
fn ostree_archive(dir: &Path, tree: &Path) -> (PathBuf, String, String) {
    let repo = dir.join("src");
    run_ok(&mut ostree(&["init", &oflag(&repo), "--mode=archive"]));
    let commit = |subject: &str| {
        run_ok(&mut ostree(&[
            "commit",
            &oflag(&repo),
            "-b",
            "main",
            "-s",
            subject,
            "--timestamp=2020-01-01 00:00:00 +0000",
            p(tree),
        ]))
    };
    let c1 = commit("first");
    std::fs::write(tree.join("added-in-second"), b"second\n").expect("write");
    let c2 = commit("second");
    std::fs::remove_file(tree.join("added-in-second")).expect("remove");
    run_ok(&mut ostree(&["summary", "-u", &oflag(&repo)]));
    (repo, c1, c2)
}

fn new_repo(path: &Path, mode: &str, url: &str, extra: &[&str]) {
    init_repo(path, mode);
    let mut args = vec!["remote", "add", "--repo", p(path)];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["origin", url]);
    run_ok(&mut trellis(&args));
}

fn pull_json(repo: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["pull", "--repo", p(repo), "--json"];
    a.extend_from_slice(args);
    let out = run_ok(&mut trellis(&a));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("pull --json printed {out:?}: {e}"))
}

fn assert_fsck_clean(repo: &Path) {
    let o = run_ok(&mut ostree(&["fsck", &oflag(repo)]));
    assert!(
        o.contains("no errors found"),
        "ostree fsck {}: {o}",
        repo.display()
    );
    let t = run_ok(&mut trellis(&["fsck", "--repo", p(repo), "--json"]));
    let j: serde_json::Value = serde_json::from_str(&t).expect("fsck json");
    assert_eq!(j["clean"], true, "trellis fsck {}: {t}", repo.display());
}

fn objects(repo: &Path) -> BTreeSet<(ObjectType, String)> {
    Repo::open(repo)
        .expect("open repo")
        .list_objects()
        .expect("list objects")
        .into_iter()
        .map(|(t, c)| (t, c.to_hex()))
        .collect()
}

fn has_commit(repo: &Path, c: &str) -> bool {
    let (a, b) = c.split_at(2);
    repo.join(format!("objects/{a}/{b}.commit")).exists()
}

fn refs_of(repo: &Path) -> String {
    run_ok(&mut trellis(&["refs", "--repo", p(repo)]))
}

/// Pull the fixture tree's ostree repo in archive, bare-user and bare modes, over nginx and
/// `trellis serve`: same commit, fsck-clean, identical checkout, archive objects byte for
/// byte the server's (no recompression), and `--depth` 0, 1 and -1.
#[test]
fn fixture_tree_from_ostree_over_nginx_and_trellis_serve() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let (src, c1, c2) = ostree_archive(tmp.path(), &tree);
    let servers = [
        ("nginx", nginx(&src, &tmp.path().join("nginx"))),
        ("serve", trellis_serve(&src)),
    ];
    let src_objects = objects(&src);
    for (name, server) in &servers {
        for mode in ["archive", "bare-user", "bare"] {
            let dst = tmp.path().join(format!("{name}-{mode}"));
            new_repo(&dst, mode, &server.url, &[]);
            let j = pull_json(&dst, &["origin", "main"]);
            assert_eq!(j["refs"][0]["commit"], c2.as_str(), "{name} {mode}: {j}");
            assert_eq!(j["refs"][0]["ref"], "origin:main");
            assert!(j["fetched"]["file"].as_u64().unwrap_or(0) >= 8, "{j}");
            assert!(j["requests"].as_u64().unwrap_or(0) > 10, "{j}");
            assert_eq!(
                run_ok(&mut trellis(&[
                    "rev-parse",
                    "--repo",
                    p(&dst),
                    "origin:main"
                ])),
                c2
            );
            // Depth 0: the parent commit is not fetched.
            assert!(
                !has_commit(&dst, &c1),
                "{name} {mode}: parent fetched at depth 0"
            );
            assert_fsck_clean(&dst);
            let co = tmp.path().join(format!("co-{name}-{mode}"));
            run_ok(&mut ostree(&["checkout", &oflag(&dst), &c2, p(&co)]));
            std::fs::remove_file(co.join("added-in-second")).expect("the second commit's file");
            assert_same_tree(&tree, &co);
            if mode == "archive" {
                for (ty, c) in objects(&dst) {
                    let rel = format!("objects/{}/{}.{}", &c[..2], &c[2..], ty.extension(true));
                    let a = std::fs::read(src.join(&rel)).expect("source object");
                    let b = std::fs::read(dst.join(&rel)).expect("pulled object");
                    assert!(a == b, "{name}: {rel} differs from the server's bytes");
                }
            }
            // Depth 1 brings the parent and its tree; nothing already there is fetched.
            let j = pull_json(&dst, &["origin", "main", "--depth=1"]);
            assert!(
                has_commit(&dst, &c1),
                "{name} {mode}: --depth=1 left out the parent"
            );
            assert_eq!(
                j["fetched"]["file"], 0,
                "{name} {mode}: the parent adds no file: {j}"
            );
            assert_fsck_clean(&dst);
            // Depth -1 on a fresh repo: the whole history, with the archive's object set.
            let all = tmp.path().join(format!("{name}-{mode}-all"));
            new_repo(&all, mode, &server.url, &[]);
            pull_json(&all, &["origin", "main", "--depth=-1"]);
            assert!(has_commit(&all, &c1) && has_commit(&all, &c2));
            assert_eq!(
                objects(&all),
                src_objects,
                "{name} {mode}: --depth=-1 object set"
            );
            assert_fsck_clean(&all);
        }
    }
}

/// The Debian minbase rootfs committed by `ostree`, pulled through nginx and `trellis
/// serve` into archive and bare-user repos: same checksums, same objects, fsck-clean.
#[test]
fn debian_rootfs_from_ostree_over_nginx_and_trellis_serve() {
    let rootfs = debian_rootfs();
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("rootfs");
    sh(&format!(
        "cp -a {} {} && find {}/dev ! -type d ! -type l -delete",
        rootfs.display(),
        copy.display(),
        copy.display()
    ));
    let src = tmp.path().join("src");
    run_ok(&mut ostree(&["init", &oflag(&src), "--mode=archive"]));
    let c = run_ok(&mut ostree(&[
        "commit",
        &oflag(&src),
        "-b",
        "main",
        "-s",
        "debian",
        p(&copy),
    ]));
    run_ok(&mut ostree(&["summary", "-u", &oflag(&src)]));
    let src_objects = objects(&src);
    let servers = [
        ("nginx", nginx(&src, &tmp.path().join("nginx"))),
        ("serve", trellis_serve(&src)),
    ];
    for (name, server) in &servers {
        for mode in ["archive", "bare-user"] {
            let dst = tmp.path().join(format!("{name}-{mode}"));
            new_repo(&dst, mode, &server.url, &[]);
            let j = pull_json(&dst, &["origin", "main"]);
            assert_eq!(j["refs"][0]["commit"], c.as_str(), "{name} {mode}: {j}");
            assert_eq!(objects(&dst), src_objects, "{name} {mode}: object set");
            assert_eq!(
                j["fetched_total"].as_u64(),
                Some(src_objects.len() as u64),
                "{name} {mode}: {j}"
            );
            assert_fsck_clean(&dst);
            if *name == "serve" && mode == "bare-user" {
                let co = tmp.path().join("checkout");
                run_ok(&mut ostree(&["checkout", &oflag(&dst), &c, p(&co)]));
                assert_same_tree(&copy, &co);
            }
        }
    }
}

/// `--mirror` with no ref pulls every ref into refs/heads and copies summary and
/// summary.sig byte for byte; with a ref named, only that ref and no summary.
#[test]
fn mirror_pulls_every_ref_and_copies_the_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let (src, _, c2) = ostree_archive(tmp.path(), &tree);
    std::fs::write(tree.join("other-only"), b"other\n").expect("write");
    let other = run_ok(&mut ostree(&[
        "commit",
        &oflag(&src),
        "-b",
        "other/branch",
        p(&tree),
    ]));
    let key = tmp.path().join("key");
    run_ok(&mut trellis(&["keygen", "-o", p(&key)]));
    run_ok(&mut trellis(&[
        "summary",
        "--repo",
        p(&src),
        "-u",
        "--sign-key",
        p(&key),
    ]));
    assert!(src.join("summary.sig").exists());
    let server = trellis_serve(&src);

    let m = tmp.path().join("mirror");
    new_repo(&m, "archive", &server.url, &[]);
    let j = pull_json(&m, &["--mirror", "origin", "--depth=-1"]);
    assert_eq!(j["summary_copied"], true, "{j}");
    assert_eq!(refs_of(&m), "main\nother/branch");
    assert_eq!(
        run_ok(&mut trellis(&[
            "rev-parse",
            "--repo",
            p(&m),
            "other/branch"
        ])),
        other
    );
    for f in ["summary", "summary.sig"] {
        assert!(
            std::fs::read(src.join(f)).expect(f) == std::fs::read(m.join(f)).expect(f),
            "{f} differs from the server's"
        );
    }
    assert_eq!(objects(&m), objects(&src));
    assert_fsck_clean(&m);
    // The mirror is itself a remote that ostree can pull from.
    let o = tmp.path().join("ostree-client");
    run_ok(&mut ostree(&["init", &oflag(&o), "--mode=bare-user"]));
    let mirror_url = format!("file://{}", m.display());
    run_ok(&mut ostree(&[
        "remote",
        "add",
        &oflag(&o),
        "--no-gpg-verify",
        "m",
        &mirror_url,
    ]));
    run_ok(&mut ostree(&["pull", &oflag(&o), "m", "main"]));
    assert_eq!(
        run_ok(&mut ostree(&["rev-parse", &oflag(&o), "m:main"])),
        c2
    );

    let one = tmp.path().join("mirror-one");
    new_repo(&one, "bare-user", &server.url, &[]);
    let j = pull_json(&one, &["--mirror", "origin", "main"]);
    assert_eq!(j["summary_copied"], false);
    assert_eq!(refs_of(&one), "main");
    assert!(!one.join("summary").exists());
    assert_fsck_clean(&one);
}

/// `--commit-metadata-only` writes the commit and leaves it partial; a full pull then
/// completes it and removes the marker.
#[test]
fn commit_metadata_only_leaves_the_commit_partial() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let (src, _, c2) = ostree_archive(tmp.path(), &tree);
    let server = nginx(&src, &tmp.path().join("nginx"));
    let dst = tmp.path().join("dst");
    new_repo(&dst, "bare-user", &server.url, &[]);
    let j = pull_json(&dst, &["--commit-metadata-only", "origin", "main"]);
    assert_eq!(j["partial"][0], c2.as_str(), "{j}");
    assert_eq!(j["fetched"]["file"], 0);
    assert_eq!(j["fetched"]["dirtree"], 0);
    let marker = dst.join(format!("state/{c2}.commitpartial"));
    assert!(
        marker.exists(),
        "no .commitpartial after --commit-metadata-only"
    );
    assert!(has_commit(&dst, &c2));
    let log = run_ok(&mut ostree(&["log", &oflag(&dst), &c2]));
    assert!(log.contains("second"), "{log}");
    let fsck = run_ok(&mut ostree(&["fsck", &oflag(&dst)]));
    assert!(
        fsck.contains("partial"),
        "ostree fsck should skip the partial commit: {fsck}"
    );

    let j = pull_json(&dst, &["origin", "main"]);
    assert!(j["fetched"]["file"].as_u64().unwrap_or(0) >= 8, "{j}");
    assert!(!marker.exists(), "the full pull left the marker");
    assert_fsck_clean(&dst);
}

/// With sign-verify on: a commit signed with the trusted key is pulled; an unsigned one,
/// one signed by another key, and one behind a tampered summary are refused with a clear
/// error, and no ref (and no commit object) of theirs lands.
#[test]
fn signature_verification_refuses_and_writes_no_ref() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    init_repo(&src, "archive");
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).expect("mkdir");
    std::fs::write(tree.join("etc/os-release"), b"ID=debian\n").expect("write");
    let (good, other) = (tmp.path().join("good"), tmp.path().join("other"));
    run_ok(&mut trellis(&["keygen", "-o", p(&good)]));
    run_ok(&mut trellis(&["keygen", "-o", p(&other)]));
    let signed = commit_dir(p(&src), "signed", &tree, &[]);
    run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&src),
        &signed,
        "--key",
        p(&good),
    ]));
    std::fs::write(tree.join("unsigned"), b"u").expect("write");
    let unsigned = commit_dir(p(&src), "unsigned", &tree, &[]);
    std::fs::write(tree.join("other-key"), b"o").expect("write");
    let wrong = commit_dir(p(&src), "wrong-key", &tree, &[]);
    run_ok(&mut trellis(&[
        "sign",
        "--repo",
        p(&src),
        &wrong,
        "--key",
        p(&other),
    ]));
    run_ok(&mut trellis(&[
        "summary",
        "--repo",
        p(&src),
        "-u",
        "--sign-key",
        p(&good),
    ]));
    let server = trellis_serve(&src);
    let pubfile = format!("{}.pub", good.display());

    let dst = tmp.path().join("dst");
    new_repo(
        &dst,
        "bare-user",
        &server.url,
        &["--sign-verify-file", &pubfile],
    );
    let j = pull_json(&dst, &["origin", "signed"]);
    assert_eq!(j["refs"][0]["commit"], signed.as_str());
    assert_eq!(refs_of(&dst), "origin:signed");

    let refused = |refname: &str, commit: &str, expect: &str| {
        let out = run_raw(&mut trellis(&[
            "pull",
            "--repo",
            p(&dst),
            "origin",
            refname,
        ]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "pull of {refname} succeeded");
        assert!(err.contains(expect), "pull of {refname}: {err}");
        assert_eq!(refs_of(&dst), "origin:signed", "a refused pull wrote a ref");
        assert!(!dst.join(format!("refs/remotes/origin/{refname}")).exists());
        assert!(
            !has_commit(&dst, commit),
            "the refused commit {commit} was stored"
        );
    };
    refused("unsigned", &unsigned, "carries no ed25519 signature");
    refused(
        "wrong-key",
        &wrong,
        "none of its 1 ed25519 signature(s) verifies",
    );

    // A summary changed after it was signed, here pointing `signed` at another commit.
    let mut s = Summary::parse(&std::fs::read(src.join("summary")).expect("summary"))
        .expect("parse summary");
    let target = s
        .refs
        .iter_mut()
        .find(|r| r.name == "signed")
        .expect("signed ref");
    target.commit = trellis_store::Checksum::from_hex(&unsigned).expect("hex");
    std::fs::write(src.join("summary"), s.to_bytes()).expect("write summary");
    let fresh = tmp.path().join("fresh");
    new_repo(
        &fresh,
        "archive",
        &server.url,
        &["--sign-verify-file", &pubfile],
    );
    let out = run_raw(&mut trellis(&[
        "pull",
        "--repo",
        p(&fresh),
        "origin",
        "signed",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered summary was accepted");
    assert!(err.contains("summary") && err.contains("tampered"), "{err}");
    assert_eq!(refs_of(&fresh), "");
    assert!(!has_commit(&fresh, &unsigned) && !has_commit(&fresh, &signed));
}

/// A remote without gpg-verify=false (ostree's default is true) is refused with a way out.
#[test]
fn gpg_verify_remote_is_refused_with_advice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dst = tmp.path().join("dst");
    init_repo(&dst, "archive");
    run_ok(&mut ostree(&[
        "remote",
        "add",
        &oflag(&dst),
        "origin",
        "http://127.0.0.1:9/",
    ]));
    let out = run_raw(&mut trellis(&["pull", "--repo", p(&dst), "origin", "main"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("gpg-verify") && err.contains("sign-verify"),
        "{err}"
    );
}

/// `file://` remotes go through the same pull; `pull-local` copies between repos of any
/// mode, verified, hardlinking when the modes match.
#[test]
fn file_remote_and_pull_local() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let (src, c1, c2) = ostree_archive(tmp.path(), &tree);
    let url = format!("file://{}", src.display());

    let f = tmp.path().join("file-remote");
    new_repo(&f, "bare-user", &url, &[]);
    let j = pull_json(&f, &["origin", "main", "--depth=1"]);
    assert_eq!(j["refs"][0]["commit"], c2.as_str());
    assert!(has_commit(&f, &c1));
    assert_fsck_clean(&f);

    // archive -> bare-user, bare-user -> bare-user (hardlinks), bare-user -> archive.
    let bu = tmp.path().join("local-bu");
    init_repo(&bu, "bare-user");
    let out = run_ok(&mut trellis(&[
        "pull-local",
        "--repo",
        p(&bu),
        p(&src),
        "main",
        "--json",
    ]));
    let j: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["refs"][0]["ref"], "main");
    assert_eq!(j["refs"][0]["commit"], c2.as_str());
    assert!(!has_commit(&bu, &c1), "depth 0 copied the parent");
    assert_fsck_clean(&bu);

    let bu2 = tmp.path().join("local-bu2");
    init_repo(&bu2, "bare-user");
    run_ok(&mut trellis(&[
        "pull-local",
        "--repo",
        p(&bu2),
        p(&bu),
        "--remote",
        "up",
    ]));
    assert_eq!(refs_of(&bu2), "up:main");
    let (ty, c) = objects(&bu2)
        .into_iter()
        .find(|(t, _)| *t == ObjectType::File)
        .expect("a content object");
    let rel = format!("objects/{}/{}.{}", &c[..2], &c[2..], ty.extension(false));
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        std::fs::metadata(bu.join(&rel)).expect("stat"),
        std::fs::metadata(bu2.join(&rel)).expect("stat"),
    );
    assert_eq!(
        (a.dev(), a.ino()),
        (b.dev(), b.ino()),
        "same-mode objects are hardlinked"
    );
    assert_fsck_clean(&bu2);

    let ar = tmp.path().join("local-archive");
    init_repo(&ar, "archive");
    run_ok(&mut trellis(&[
        "pull-local",
        "--repo",
        p(&ar),
        p(&f),
        "origin:main",
        "--depth=-1",
    ]));
    assert_eq!(refs_of(&ar), "origin:main");
    assert!(has_commit(&ar, &c1) && has_commit(&ar, &c2));
    assert_eq!(objects(&ar), objects(&src));
    assert_fsck_clean(&ar);
    let co = tmp.path().join("co");
    run_ok(&mut ostree(&["checkout", &oflag(&ar), &c1, p(&co)]));
    assert_same_tree(&tree, &co);

    // A corrupt source object is refused, naming it, and no ref is written.
    let bad = tmp.path().join("bad-src");
    sh(&format!("cp -a {} {}", bu.display(), bad.display()));
    let victim = objects(&bad)
        .into_iter()
        .find(|(t, c)| {
            *t == ObjectType::File
                && std::fs::metadata(bad.join(format!("objects/{}/{}.file", &c[..2], &c[2..])))
                    .is_ok_and(|m| m.len() > 100 && m.file_type().is_file())
        })
        .expect("a regular content object")
        .1;
    let vp = bad.join(format!("objects/{}/{}.file", &victim[..2], &victim[2..]));
    let mut data = std::fs::read(&vp).expect("read");
    data[50] ^= 0xff;
    sh(&format!("chmod u+w {}", vp.display()));
    std::fs::write(&vp, data).expect("corrupt");
    let out_repo = tmp.path().join("from-bad");
    init_repo(&out_repo, "archive");
    let out = run_raw(&mut trellis(&[
        "pull-local",
        "--repo",
        p(&out_repo),
        p(&bad),
        "main",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a corrupt source object was copied");
    assert!(err.contains(&victim), "{err}");
    assert_eq!(refs_of(&out_repo), "");
}
