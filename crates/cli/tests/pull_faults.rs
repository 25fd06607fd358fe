//! `trellis pull` against a server that misbehaves: a corrupted, truncated or missing
//! object, a server that stops answering, and a pull killed with SIGKILL. Each failure
//! names the object and writes no ref; a re-run against a healthy server completes and
//! fetches only what the first run did not store (the server counts the requests).

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

#[derive(Clone, Debug, PartialEq)]
enum Fault {
    None,
    /// Flip a byte in the middle of this file.
    Corrupt(String),
    /// Send only the first half of this file (with a matching Content-Length).
    Truncate(String),
    /// Answer 404 for this file.
    Missing(String),
    /// Read the request for this file and never answer.
    Hang(String),
    /// Wait this long before answering any object request.
    Slow(Duration),
}

struct State {
    fault: Fault,
    /// Requested paths, in order.
    log: Vec<String>,
}

/// A tiny HTTP/1.1 keep-alive file server over a directory, with injected faults.
struct FaultServer {
    url: String,
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultServer {
    fn start(root: &Path) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            fault: Fault::None,
            log: Vec::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (root, st, sp) = (root.to_path_buf(), state.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, st, sp) = (root.clone(), st.clone(), sp.clone());
                std::thread::spawn(move || serve_conn(conn, &root, &st, &sp));
            }
        });
        FaultServer {
            url: format!("http://127.0.0.1:{port}/"),
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn set(&self, fault: Fault) {
        let mut s = self.state.lock().expect("state");
        s.fault = fault;
        s.log.clear();
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().expect("state").log.clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(conn: TcpStream, root: &Path, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut out = conn;
    loop {
        // Request line and headers; a read timeout just means "look at the stop flag".
        let mut request_line = String::new();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            match reader.read_line(&mut request_line) {
                Ok(0) => return,
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) => return,
                Ok(_) if h == "\r\n" || h == "\n" => break,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .trim_start_matches('/')
            .to_string();
        let fault = {
            let mut s = state.lock().expect("state");
            s.log.push(path.clone());
            s.fault.clone()
        };
        let file = root.join(&path);
        let mut body = if path.contains("..") {
            None
        } else {
            std::fs::read(&file).ok()
        };
        match &fault {
            Fault::Hang(f) if *f == path => {
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                return;
            }
            Fault::Missing(f) if *f == path => body = None,
            Fault::Corrupt(f) if *f == path => {
                if let Some(b) = body.as_mut() {
                    let mid = b.len() / 2;
                    b[mid] ^= 0x5a;
                }
            }
            Fault::Truncate(f) if *f == path => {
                if let Some(b) = body.as_mut() {
                    b.truncate(b.len() / 2);
                }
            }
            Fault::Slow(d) if path.starts_with("objects/") => std::thread::sleep(*d),
            _ => {}
        }
        let r = match body {
            Some(b) => out
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        b.len()
                    )
                    .as_bytes(),
                )
                .and_then(|()| out.write_all(&b)),
            None => out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
        if r.is_err() {
            return;
        }
    }
}

/// An ostree archive repo of a tree with `n` small files and a few larger ones, with a
/// summary. Returns (repo, commit).
fn make_src(dir: &Path, n: usize) -> (PathBuf, String) {
    let tree = dir.join("tree");
    sh(&format!(
        "mkdir -p {t}/a/b {t}/c && for i in $(seq 1 {n}); do echo \"file $i\" > {t}/a/f$i; done \
         && head -c 1500000 /dev/urandom > {t}/c/random && seq 1 300000 > {t}/a/b/seq \
         && ln -s ../c/random {t}/a/link",
        t = tree.display()
    ));
    let repo = dir.join("src");
    run_ok(&mut ostree(&[
        "init",
        &format!("--repo={}", repo.display()),
        "--mode=archive",
    ]));
    let c = run_ok(&mut ostree(&[
        "commit",
        &format!("--repo={}", repo.display()),
        "-b",
        "main",
        "-s",
        "faults",
        p(&tree),
    ]));
    run_ok(&mut ostree(&[
        "summary",
        "-u",
        &format!("--repo={}", repo.display()),
    ]));
    (repo, c)
}

/// Relative paths (`objects/XX/….ext`) of every object in an archive repo.
fn object_paths(repo: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for d in std::fs::read_dir(repo.join("objects")).expect("objects") {
        let d = d.expect("entry").path();
        for f in std::fs::read_dir(&d).expect("objects/XX") {
            let f = f.expect("entry").path();
            out.insert(
                f.strip_prefix(repo)
                    .expect("under repo")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out
}

/// The same object paths as a repo of another mode names them (`.file` → `.filez`).
fn as_archive_paths(paths: BTreeSet<String>) -> BTreeSet<String> {
    paths
        .into_iter()
        .map(|p| match p.strip_suffix(".file") {
            Some(s) => format!("{s}.filez"),
            None => p,
        })
        .collect()
}

/// The largest `.filez` of the repo (a real payload, not a symlink).
fn largest_filez(repo: &Path) -> String {
    object_paths(repo)
        .into_iter()
        .filter(|p| p.ends_with(".filez"))
        .max_by_key(|p| {
            std::fs::metadata(repo.join(p))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .expect("a .filez")
}

fn checksum_of(rel: &str) -> String {
    let name = rel.trim_start_matches("objects/");
    let (dir, rest) = name.split_once('/').expect("XX/rest");
    format!("{dir}{}", rest.split('.').next().unwrap_or(""))
}

fn dst_repo(dir: &Path, name: &str, mode: &str, url: &str) -> PathBuf {
    let r = dir.join(name);
    init_repo(&r, mode);
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&r),
        "origin",
        url,
    ]));
    r
}

fn refs_of(repo: &Path) -> String {
    run_ok(&mut trellis(&["refs", "--repo", p(repo)]))
}

fn assert_clean(repo: &Path) {
    let o = run_ok(&mut ostree(&[
        "fsck",
        &format!("--repo={}", repo.display()),
    ]));
    assert!(o.contains("no errors found"), "{o}");
}

/// After a failed pull: a re-run against the healthy server completes, and every object
/// it requests was missing (each once); nothing stored by the failed run is fetched again.
fn rerun_fetches_only_missing(server: &FaultServer, src: &Path, dst: &Path, commit: &str) {
    let stored = as_archive_paths(object_paths(dst));
    let missing: BTreeSet<String> = object_paths(src).difference(&stored).cloned().collect();
    assert!(!missing.is_empty());
    server.set(Fault::None);
    // More threads than cores, and a share of the requests that does not divide evenly.
    run_ok(&mut trellis(&[
        "pull",
        "--repo",
        p(dst),
        "origin",
        "main",
        "--threads",
        "4",
        "--concurrency",
        "5",
    ]));
    let log = server.log();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in log.iter().filter(|r| r.starts_with("objects/")) {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    for (path, n) in &counts {
        assert_eq!(*n, 1, "{path} requested {n} times");
        // Detached metadata is always asked for again (new signatures may have come).
        assert!(
            missing.contains(*path) || path.ends_with(".commitmeta"),
            "{path} was stored by the failed run, but fetched again"
        );
    }
    for m in &missing {
        assert!(
            counts.contains_key(m.as_str()),
            "{m} was missing but not fetched"
        );
    }
    assert_eq!(refs_of(dst), "origin:main");
    assert!(!dst.join(format!("state/{commit}.commitpartial")).exists());
    assert_clean(dst);
}

fn assert_failed_naming(out: &std::process::Output, csum: &str, also: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("failed as expected: {}", err.trim());
    assert!(!out.status.success(), "the pull succeeded");
    assert!(err.contains(csum), "the error does not name {csum}: {err}");
    assert!(err.contains(also), "the error does not say {also:?}: {err}");
}

#[test]
fn corrupt_truncated_missing_and_hanging_objects_fail_cleanly_and_resume() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, commit) = make_src(tmp.path(), 60);
    let server = FaultServer::start(&src);
    let victim = largest_filez(&src);
    let csum = checksum_of(&victim);
    let cases = [
        ("corrupt", Fault::Corrupt(victim.clone()), "corrupt"),
        ("truncated", Fault::Truncate(victim.clone()), "truncated"),
        (
            "missing",
            Fault::Missing(victim.clone()),
            "not on the remote",
        ),
        ("hang", Fault::Hang(victim.clone()), "timed out"),
    ];
    for (i, (name, fault, says)) in cases.into_iter().enumerate() {
        let mode = if i % 2 == 0 { "archive" } else { "bare-user" };
        let dst = dst_repo(tmp.path(), name, mode, &server.url);
        server.set(fault);
        let start = Instant::now();
        let out = run_raw(&mut trellis(&[
            "pull",
            "--repo",
            p(&dst),
            "origin",
            "main",
            "--timeout",
            "1",
            "--retries",
            "1",
            // Lanes other than the failing one must stop too.
            "--threads",
            "3",
        ]));
        assert_failed_naming(&out, &csum, says);
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name}: took too long"
        );
        assert_eq!(refs_of(&dst), "", "{name}: a failed pull wrote a ref");
        // The victim is large enough to be spooled to tmp/: nothing of it may remain.
        let leftovers: Vec<_> = std::fs::read_dir(dst.join("tmp"))
            .expect("tmp")
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .collect();
        assert!(leftovers.is_empty(), "{name}: left in tmp/: {leftovers:?}");
        assert!(
            dst.join(format!("state/{commit}.commitpartial")).exists(),
            "{name}: the incomplete commit is not marked partial"
        );
        let requests = server.log().iter().filter(|r| **r == victim).count();
        // A timeout is retried (--retries 1); a 404 or a bad object is not.
        let expected = if name == "hang" { 2 } else { 1 };
        assert_eq!(
            requests, expected,
            "{name}: {victim} requested {requests} times"
        );
        rerun_fetches_only_missing(&server, &src, &dst, &commit);
    }
}

/// Start a pull into `dst` and SIGKILL it once about a third of the objects have been
/// asked for.
fn kill_pull_midway(server: &FaultServer, dst: &Path, total: usize) {
    server.set(Fault::Slow(Duration::from_millis(15)));
    let before = server.log().len();
    let mut child = trellis(&[
        "pull",
        "--repo",
        p(dst),
        "origin",
        "main",
        "--concurrency",
        "4",
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("start pull");
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.log()[before..]
        .iter()
        .filter(|r| r.starts_with("objects/"))
        .count()
        < total / 3
    {
        assert!(Instant::now() < deadline, "the pull made no progress");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the pull ended too soon"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
}

fn write_markers(repo: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(repo.join("state"))
        .expect("state/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "writing"))
        .collect()
}

#[test]
fn killed_pull_resumes_fetching_only_what_is_missing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, commit) = make_src(tmp.path(), 400);
    let server = FaultServer::start(&src);
    let total = object_paths(&src).len();
    for mode in ["archive", "bare-user"] {
        let dst = dst_repo(tmp.path(), &format!("killed-{mode}"), mode, &server.url);
        kill_pull_midway(&server, &dst, total);
        assert_eq!(refs_of(&dst), "", "{mode}: a killed pull wrote a ref");
        assert!(dst.join(format!("state/{commit}.commitpartial")).exists());
        let stored = object_paths(&dst).len();
        assert!(
            stored > 10 && stored < total,
            "{mode}: {stored} of {total} stored"
        );
        rerun_fetches_only_missing(&server, &src, &dst, &commit);
        // The killed writer's marker went with the next write (its process is gone).
        assert_eq!(write_markers(&dst), Vec::<PathBuf>::new());
    }
}

/// A machine that loses power mid-pull can keep objects that were linked but whose data
/// never reached the disk. The next pull, in a later boot, must not trust them.
#[test]
fn pull_after_a_power_loss_refetches_objects_whose_data_was_lost() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (src, commit) = make_src(tmp.path(), 400);
    let server = FaultServer::start(&src);
    let total = object_paths(&src).len();
    for mode in ["archive", "bare-user"] {
        let dst = dst_repo(tmp.path(), &format!("power-{mode}"), mode, &server.url);
        kill_pull_midway(&server, &dst, total);
        // The killed pull's marker, as an earlier boot would have left it.
        let markers = write_markers(&dst);
        assert_eq!(markers.len(), 1, "{mode}: {markers:?}");
        std::fs::rename(
            &markers[0],
            dst.join("state/00000000-0000-0000-0000-000000000000-1.writing"),
        )
        .expect("rename marker");
        // Every third stored content object lost its data.
        let lost: Vec<String> = object_paths(&dst)
            .into_iter()
            .filter(|o| o.ends_with(".file") || o.ends_with(".filez"))
            .step_by(3)
            .collect();
        assert!(
            lost.len() > 5,
            "{mode}: only {} content objects",
            lost.len()
        );
        for o in &lost {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dst.join(o))
                .and_then(|f| f.set_len(0))
                .expect("empty an object");
        }
        server.set(Fault::None);
        let before = server.log().len();
        let out = trellis(&["pull", "--repo", p(&dst), "origin", "main"])
            .output()
            .expect("pull");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{mode}: {err}");
        assert!(
            err.contains(&format!("{} damaged objects", lost.len())),
            "{mode}: the pull should say what it removed: {err}"
        );
        let fetched: BTreeSet<String> = server.log()[before..].iter().cloned().collect();
        for o in as_archive_paths(lost.into_iter().collect()) {
            assert!(fetched.contains(&o), "{mode}: {o} was not fetched again");
        }
        assert_eq!(refs_of(&dst), "origin:main");
        assert!(!dst.join(format!("state/{commit}.commitpartial")).exists());
        assert_eq!(write_markers(&dst), Vec::<PathBuf>::new());
        assert_clean(&dst);
    }
}
