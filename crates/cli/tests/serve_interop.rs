//! `trellis serve` as a remote for the real `ostree pull`: into archive and bare-user
//! repos, with and without a summary, full history with `--depth=-1`; the results must be
//! fsck-clean and check out to the committed tree.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `trellis serve --verbose` child process, with its access log collected.
struct Served {
    child: Child,
    addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(repo: &Path, extra: &[&str]) -> Served {
    let mut child = Command::new(trellis_bin())
        .args(["serve", "--verbose", "--bind", "127.0.0.1:0", "--repo"])
        .arg(repo)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start trellis serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr pipe"));
    let mut first = String::new();
    stderr.read_line(&mut first).expect("read serve banner");
    let expected_start = format!("serving {} at http://", repo.display());
    let addr = first
        .trim()
        .strip_prefix(&expected_start)
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected banner from trellis serve: {first:?}"))
        .to_string();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().expect("log lock").push(line);
        }
    });
    Served { child, addr, log }
}

impl Served {
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The access log once a line containing `needle` has arrived (it is read from the
    /// server's stderr by another thread, so it may lag the response), or after 10 s.
    fn wait_for_log(&self, needle: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.iter().any(|l| l.contains(needle)) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the server must exit by itself, successfully.
    fn stop(mut self) {
        run_ok(
            Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string()),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait().expect("wait for trellis serve") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "trellis serve exited with {status} on SIGTERM"
                    );
                    return;
                }
                None if Instant::now() > deadline => panic!("trellis serve ignored SIGTERM"),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn repo_arg(p: &Path) -> String {
    format!("--repo={}", p.display())
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A client repo of `mode` with remote `origin` pointing at `url`.
fn client(path: &Path, mode: &str, url: &str) {
    run_ok(&mut ostree(&[
        "init",
        &repo_arg(path),
        &format!("--mode={mode}"),
    ]));
    run_ok(&mut ostree(&[
        "remote",
        "add",
        &repo_arg(path),
        "--no-gpg-verify",
        "origin",
        url,
    ]));
}

fn assert_fsck_clean(repo: &Path) {
    let out = run_ok(&mut ostree(&["fsck", &repo_arg(repo)]));
    assert!(
        out.contains("no errors found"),
        "fsck of {}: {out}",
        repo.display()
    );
}

fn assert_checkout_matches(repo: &Path, rev: &str, tree: &Path, dest: &Path) {
    run_ok(&mut ostree(&["checkout", &repo_arg(repo), rev, s(dest)]));
    assert_same_tree(tree, dest);
}

#[test]
fn ostree_pulls_a_trellis_repo_without_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let repo = tmp.path().join("served");
    run_ok(&mut trellis(&[
        "init",
        "--repo",
        s(&repo),
        "--mode",
        "archive",
    ]));
    let commit = |subject: &str| {
        run_ok(&mut trellis(&[
            "commit",
            "--repo",
            s(&repo),
            "-b",
            "main",
            "-s",
            subject,
            s(&tree),
        ]))
    };
    let c1 = commit("first");
    // The second commit's tree, kept aside to compare with its checkout.
    let tree2 = tmp.path().join("tree2");
    sh(&format!("cp -a {} {}", tree.display(), tree2.display()));
    std::fs::write(tree2.join("added"), b"second build").expect("write");
    std::fs::remove_file(tree2.join("empty.txt")).expect("remove");
    let c2 = run_ok(&mut trellis(&[
        "commit",
        "--repo",
        s(&repo),
        "-b",
        "main",
        "-s",
        "second",
        s(&tree2),
    ]));
    assert_ne!(c1, c2);
    assert!(
        !repo.join("summary").exists(),
        "this test is about a repo without summary"
    );

    let server = serve(&repo, &[]);
    for mode in ["archive", "bare-user"] {
        let dest = tmp.path().join(format!("pull-{mode}"));
        client(&dest, mode, &server.url());
        run_ok(&mut ostree(&["pull", &repo_arg(&dest), "origin", "main"]));
        assert_eq!(
            run_ok(&mut ostree(&["rev-parse", &repo_arg(&dest), "origin:main"])),
            c2
        );
        assert_fsck_clean(&dest);
        assert_checkout_matches(
            &dest,
            "origin:main",
            &tree2,
            &tmp.path().join(format!("co-{mode}")),
        );
        // Without --depth only the tip was fetched.
        let parent = run_raw(&mut ostree(&["show", &repo_arg(&dest), &c1]));
        assert!(
            !parent.status.success(),
            "{mode}: the parent commit came along without --depth"
        );
    }

    let deep = tmp.path().join("pull-depth");
    client(&deep, "bare-user", &server.url());
    run_ok(&mut ostree(&[
        "pull",
        "--depth=-1",
        &repo_arg(&deep),
        "origin",
        "main",
    ]));
    assert_eq!(
        run_ok(&mut ostree(&[
            "rev-parse",
            &repo_arg(&deep),
            "origin:main^"
        ])),
        c1
    );
    let log = run_ok(&mut ostree(&["log", &repo_arg(&deep), "origin:main"]));
    assert!(
        log.contains(&format!("commit {c2}")) && log.contains(&format!("commit {c1}")),
        "{log}"
    );
    assert_fsck_clean(&deep);
    assert_checkout_matches(&deep, &c1, &tree, &tmp.path().join("co-first"));

    let log = server.wait_for_log("\"GET /refs/heads/main HTTP/1.1\" 200 65");
    assert!(
        log.iter()
            .any(|l| l.contains("\"GET /refs/heads/main HTTP/1.1\" 200 65")),
        "the ref was not fetched from refs/heads: {log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("\"GET /summary HTTP/1.1\" 404")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.contains(".filez HTTP/1.1\" 200")),
        "{log:#?}"
    );
    server.stop();
}

#[test]
fn ostree_pulls_an_ostree_repo_with_summary() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    make_fixture_tree(&tree);
    let repo = tmp.path().join("served");
    run_ok(&mut ostree(&["init", &repo_arg(&repo), "--mode=archive"]));
    let c1 = run_ok(&mut ostree(&[
        "commit",
        &repo_arg(&repo),
        "-b",
        "main",
        "-s",
        "first",
        s(&tree),
    ]));
    std::fs::write(tree.join("added"), b"second build").expect("write");
    let c2 = run_ok(&mut ostree(&[
        "commit",
        &repo_arg(&repo),
        "-b",
        "main",
        "-s",
        "second",
        s(&tree),
    ]));
    run_ok(&mut ostree(&["summary", "-u", &repo_arg(&repo)]));

    let server = serve(&repo, &[]);
    let dest = tmp.path().join("pull-bare-user");
    client(&dest, "bare-user", &server.url());
    run_ok(&mut ostree(&[
        "pull",
        "--depth=-1",
        &repo_arg(&dest),
        "origin",
        "main",
    ]));
    assert_eq!(
        run_ok(&mut ostree(&["rev-parse", &repo_arg(&dest), "origin:main"])),
        c2
    );
    assert_eq!(
        run_ok(&mut ostree(&[
            "rev-parse",
            &repo_arg(&dest),
            "origin:main^"
        ])),
        c1
    );
    assert_fsck_clean(&dest);
    assert_checkout_matches(&dest, "origin:main", &tree, &tmp.path().join("co"));

    // A mirror of all refs needs the summary, and copies it byte for byte.
    let mirror = tmp.path().join("mirror");
    client(&mirror, "archive", &server.url());
    run_ok(&mut ostree(&[
        "pull",
        "--mirror",
        &repo_arg(&mirror),
        "origin",
    ]));
    assert_eq!(
        run_ok(&mut ostree(&["rev-parse", &repo_arg(&mirror), "main"])),
        c2
    );
    assert_eq!(
        std::fs::read(mirror.join("summary")).expect("mirrored summary"),
        std::fs::read(repo.join("summary")).expect("summary")
    );
    assert_fsck_clean(&mirror);

    let refs_on_the_wire = server
        .wait_for_log("\"GET /config HTTP/1.1\" 200")
        .into_iter()
        .filter(|l| l.contains("/refs/heads/"))
        .count();
    assert_eq!(refs_on_the_wire, 0, "refs resolve through the summary");
    let log = server.log();
    assert!(
        log.iter()
            .any(|l| l.contains("\"GET /summary HTTP/1.1\" 200")),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("\"GET /config HTTP/1.1\" 200")),
        "{log:#?}"
    );
    server.stop();
}

#[test]
fn serve_refuses_non_archive_repos_and_serves_extra_dirs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bare = tmp.path().join("bare");
    run_ok(&mut trellis(&[
        "init",
        "--repo",
        s(&bare),
        "--mode",
        "bare-user",
    ]));
    let out = run_raw(&mut trellis(&[
        "serve",
        "--repo",
        s(&bare),
        "--bind",
        "127.0.0.1:0",
    ]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bare-user") && err.contains("archive"),
        "{err}"
    );

    let repo = tmp.path().join("repo");
    run_ok(&mut trellis(&[
        "init",
        "--repo",
        s(&repo),
        "--mode",
        "archive",
    ]));
    let ext = tmp.path().join("ext");
    std::fs::create_dir(&ext).expect("mkdir");
    std::fs::write(ext.join("a.raw"), b"extension image").expect("write");
    std::fs::write(tmp.path().join("secret"), b"SECRET").expect("write");

    let out = run_raw(&mut trellis(&[
        "serve",
        "--repo",
        s(&repo),
        "--bind",
        "127.0.0.1:0",
        "--dir",
        &format!("objects={}", ext.display()),
    ]));
    assert!(
        !out.status.success(),
        "a --dir named like a repo directory must be refused"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("objects"));

    let server = serve(&repo, &["--dir", &format!("ext={}", ext.display())]);
    let fetch = |path: &str| {
        let mut conn = std::net::TcpStream::connect(&server.addr).expect("connect");
        write!(
            conn,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut out = String::new();
        conn.read_to_string(&mut out).expect("read");
        out
    };
    let ok = fetch("/ext/a.raw");
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.ends_with("extension image"),
        "{ok}"
    );
    for evil in [
        "/ext/../secret",
        "/ext/%2e%2e/secret",
        "/ext/..%2fsecret",
        "/../secret",
    ] {
        let r = fetch(evil);
        assert!(
            r.starts_with("HTTP/1.1 400") || r.starts_with("HTTP/1.1 404"),
            "{evil}: {r}"
        );
        assert!(!r.contains("SECRET"), "{evil}: {r}");
    }
    assert!(
        server
            .wait_for_log("\"GET /ext/a.raw HTTP/1.1\" 200 15")
            .iter()
            .any(|l| l.contains("\"GET /ext/a.raw HTTP/1.1\" 200 15"))
    );
    server.stop();
}
