//! `trellis export`, `import` and `publish` from the command line, checked against the real
//! `ostree`: archives round-trip to fsck-clean repositories with identical checkouts, and a
//! published directory is a remote `ostree pull` accepts over file:// and HTTP.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn ostree_repo(repo: &Path, args: &[&str]) -> String {
    let mut c = ostree(&[&format!("--repo={}", repo.display())]);
    c.args(args);
    run_ok(&mut c)
}

/// Fails with a message that contains every one of `needles`.
fn fails_with(cmd: &mut Command, needles: &[&str]) {
    let out = run_raw(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{cmd:?} succeeded");
    for n in needles {
        assert!(err.contains(n), "{cmd:?}: stderr lacks {n:?}: {err}");
    }
}

#[test]
fn export_import_round_trip_matches_the_committed_tree() {
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    make_fixture_tree(&tree);
    let repo = init_repo(&t.path().join("repo"), "archive");
    let c1 = commit_dir(&repo, "os/main", &tree, &["-s", "first"]);
    run_ok(&mut trellis(&["summary", "-u", "--repo", &repo]));

    let tarball = t.path().join("repo.tar.gz");
    let report = json(&run_ok(&mut trellis(&[
        "export",
        "--repo",
        &repo,
        "-o",
        s(&tarball),
        "--json",
    ])));
    assert_eq!(report["commits"], 1);
    assert_eq!(report["summary_included"], true);
    let bytes = std::fs::read(&tarball).expect("read export");
    // Standard output carries the same bytes.
    let out = run_raw(&mut trellis(&["export", "--repo", &repo, "-o", "-"]));
    assert!(out.status.success());
    assert_eq!(out.stdout, bytes, "-o - differs from -o FILE");
    // No temporary file is left beside the output.
    let names: Vec<_> = std::fs::read_dir(t.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains(".tmp-")),
        "{names:?}"
    );

    for mode in ["archive", "bare-user"] {
        // The repository does not exist yet: import creates it.
        let dst = t.path().join(format!("imported-{mode}"));
        let r = json(&run_ok(&mut trellis(&[
            "import",
            "--repo",
            s(&dst),
            "--mode",
            mode,
            s(&tarball),
            "--json",
        ])));
        assert_eq!(r["refs"][0]["new"], c1.as_str());
        let summary = if mode == "archive" {
            "imported"
        } else {
            "regenerated"
        };
        assert_eq!(r["summary"], summary);
        assert!(
            std::fs::read_to_string(dst.join("config"))
                .expect("config")
                .contains(&format!(
                    "mode={}",
                    if mode == "archive" {
                        "archive-z2"
                    } else {
                        mode
                    }
                ))
        );
        ostree_repo(&dst, &["fsck"]);
        assert_eq!(ostree_repo(&dst, &["rev-parse", "os/main"]), c1);
    }
    // Owners, modes and xattrs survive: check out as root from the archive copy.
    let co = t.path().join("co");
    ostree_repo(
        &t.path().join("imported-archive"),
        &["checkout", "os/main", s(&co)],
    );
    assert_same_tree(&tree, &co);

    // From standard input, into an existing repository: nothing new, nothing moved.
    let dst = t.path().join("imported-archive");
    let r = run_ok(Command::new("sh").arg("-c").arg(format!(
        "{} import --repo {} - --json < {}",
        trellis_bin(),
        dst.display(),
        tarball.display()
    )));
    let r = json(&r);
    assert_eq!(r["objects_new"], 0);
    assert_eq!(r["refs_unchanged"], 1);
}

#[test]
fn export_and_import_refuse_clearly() {
    let t = tempfile::tempdir().expect("tempdir");
    let bare = init_repo(&t.path().join("bare"), "bare-user");
    let out = t.path().join("x.tar.gz");
    fails_with(
        &mut trellis(&["export", "--repo", &bare, "-o", s(&out)]),
        &["bare-user repository", "needs an archive repository"],
    );
    assert!(!out.exists(), "a failed export left its output");

    let evil = t.path().join("evil.tar");
    sh(&format!(
        "cd {d} && mkdir -p src/refs/heads && ln -s /etc/passwd src/refs/heads/main && \
         tar cf {e} -C src refs",
        d = t.path().display(),
        e = evil.display()
    ));
    let dst = t.path().join("dst");
    fails_with(
        &mut trellis(&["import", "--repo", s(&dst), s(&evil)]),
        &["refs/heads/main", "symlink", "/etc/passwd"],
    );
    assert!(!dst.join("refs/heads/main").exists());

    fails_with(
        &mut trellis(&["publish", "--repo", &bare, "gs://bucket/x"]),
        &["unsupported scheme"],
    );
    fails_with(
        &mut trellis(&["publish", "--repo", &bare, s(&t.path().join("www"))]),
        &["only archive repositories can be published"],
    );
}

/// `trellis serve` on an ephemeral loopback port.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let mut child = Command::new(trellis_bin())
            .args(["serve", "--bind", "127.0.0.1:0", "--repo"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trellis serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr pipe"));
        let mut first = String::new();
        stderr.read_line(&mut first).expect("serve banner");
        let url = first
            .trim()
            .split_once(" at ")
            .map(|(_, u)| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| panic!("unexpected banner: {first:?}"));
        // Keep draining stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines().map_while(Result::ok) {});
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn published_directory_is_a_remote_ostree_pulls() {
    let t = tempfile::tempdir().expect("tempdir");
    let tree = t.path().join("tree");
    make_fixture_tree(&tree);
    let repo = init_repo(&t.path().join("repo"), "archive");
    let c1 = commit_dir(&repo, "os/main", &tree, &["-s", "one"]);
    let www = t.path().join("www/os");

    let first = json(&run_ok(&mut trellis(&[
        "publish",
        "--repo",
        &repo,
        s(&www),
        "--json",
    ])));
    assert!(first["objects_uploaded"].as_u64().expect("count") > 10);
    assert_eq!(first["config_uploaded"], true);
    let again = json(&run_ok(&mut trellis(&[
        "publish",
        "--repo",
        &repo,
        s(&www),
        "--json",
    ])));
    assert_eq!(again["objects_uploaded"], 0);
    assert_eq!(again["refs_updated"].as_array().map(Vec::len), Some(0));

    std::fs::write(tree.join("new-file"), "added\n").expect("write");
    let c2 = commit_dir(&repo, "os/main", &tree, &["-s", "two"]);
    let third = json(&run_ok(&mut trellis(&[
        "publish",
        "--repo",
        &repo,
        &format!("file://{}", www.display()),
        "--json",
    ])));
    // The new file, the root dirtree and the commit.
    assert_eq!(third["objects_uploaded"], 3);
    assert_eq!(third["commits_uploaded"], 1);

    // file:// into bare-user, then HTTP into archive (where ostree re-hashes every object).
    let via_file = t.path().join("client-file");
    ostree_repo(&via_file, &["init", "--mode=bare-user"]);
    ostree_repo(
        &via_file,
        &[
            "remote",
            "add",
            "--no-gpg-verify",
            "origin",
            &format!("file://{}", www.display()),
        ],
    );
    ostree_repo(&via_file, &["pull", "--depth=-1", "origin", "os/main"]);
    ostree_repo(&via_file, &["fsck"]);
    assert_eq!(ostree_repo(&via_file, &["rev-parse", "origin:os/main"]), c2);
    assert_eq!(
        ostree_repo(&via_file, &["rev-parse", "origin:os/main^"]),
        c1
    );

    let served = Served::start(&www);
    let via_http = t.path().join("client-http");
    ostree_repo(&via_http, &["init", "--mode=archive"]);
    ostree_repo(
        &via_http,
        &["remote", "add", "--no-gpg-verify", "origin", &served.url],
    );
    ostree_repo(&via_http, &["pull", "origin", "os/main"]);
    ostree_repo(&via_http, &["fsck"]);
    drop(served);
    let co = t.path().join("co");
    ostree_repo(&via_http, &["checkout", "origin:os/main", s(&co)]);
    assert_same_tree(&tree, &co);
}
