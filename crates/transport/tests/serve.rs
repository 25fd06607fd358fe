//! `serve` over real sockets: ranges, validators and 304s, cache headers, 404/405, path
//! traversal (sent as raw bytes: HTTP clients normalise `..` away), extra directories,
//! keep-alive and HTTP/2.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trellis_store::{Repo, RepoMode};
use trellis_transport::serve::{
    BackgroundServer, ServeConfig, ServeError, Server, spawn_background,
};

const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-ROOT";
const BIG_LEN: usize = 3 * 1024 * 1024 + 17;

fn checksum_path(ext: &str, fill: &str) -> String {
    format!("objects/ab/{}.{ext}", fill.repeat(31))
}

/// Not random, but incompressible enough and different at every offset.
fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    tmp: tempfile::TempDir,
    repo: PathBuf,
    big: Vec<u8>,
    big_path: String,
    small_path: String,
    addr: SocketAddr,
    _server: BackgroundServer,
}

/// An archive repo holding a large and a small object, a ref, a summary, plus a secret
/// file beside it and symlinks that try to reach it.
fn fixture_with(extra: impl FnOnce(&Path) -> Vec<(String, PathBuf)>) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    Repo::init(&repo, RepoMode::Archive).expect("init archive repo");
    std::fs::write(tmp.path().join("secret.txt"), SECRET).expect("write secret");
    std::fs::create_dir_all(repo.join("objects/ab")).expect("mkdir objects/ab");
    let big = pattern(BIG_LEN);
    let big_path = checksum_path("filez", "cd");
    let small_path = checksum_path("dirtree", "ef");
    std::fs::write(repo.join(&big_path), &big).expect("write big object");
    std::fs::write(repo.join(&small_path), b"small dirtree bytes").expect("write small");
    std::fs::write(
        repo.join("refs/heads/main"),
        format!("{}\n", "ab".repeat(32)),
    )
    .expect("write ref");
    std::fs::write(repo.join("summary"), b"summary bytes").expect("write summary");
    std::fs::write(repo.join("tmp/staged"), SECRET).expect("write tmp file");
    // A ref alias inside the repo is fine; these others all point out of it.
    symlink("main", repo.join("refs/heads/alias")).expect("alias");
    symlink("/etc/passwd", repo.join("refs/heads/evil")).expect("abs symlink");
    symlink("../../../secret.txt", repo.join("refs/heads/evil-rel")).expect("rel symlink");
    symlink(tmp.path(), repo.join("refs/heads/evil-dir")).expect("dir symlink");
    symlink("/etc", repo.join("refs/evil-etc")).expect("dir symlink");
    let extra = extra(tmp.path());
    let mut cfg = ServeConfig::new(&repo);
    cfg.bind = "127.0.0.1:0".parse().expect("addr");
    cfg.extra = extra;
    let (addr, server) = spawn_background(cfg).expect("start server");
    Fixture {
        tmp,
        repo,
        big,
        big_path,
        small_path,
        addr,
        _server: server,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| Vec::new())
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `request` verbatim and read until the server closes the connection.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request).expect("send request");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read response");
    out
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    parse(&raw_exchange(addr, req.as_bytes()))
}

fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(addr, "GET", path, headers)
}

#[test]
fn objects_are_served_whole_with_immutable_caching() {
    let f = fixture();
    let r = get(f.addr, &format!("/{}", f.big_path), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG_LEN);
    assert!(r.body == f.big, "streamed body differs from the file");
    assert_eq!(
        r.header("content-length"),
        Some(BIG_LEN.to_string().as_str())
    );
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    let etag = format!("\"ab{}.filez-{:x}\"", "cd".repeat(31), BIG_LEN);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.header("last-modified").is_some());

    let r = get(f.addr, &format!("/{}", f.small_path), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"small dirtree bytes");
    let etag = format!("\"ab{}.dirtree\"", "ef".repeat(31));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
}

#[test]
fn mutable_files_must_be_revalidated() {
    let f = fixture();
    for path in ["/summary", "/config", "/refs/heads/main"] {
        let r = get(f.addr, path, &[]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{path}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    }
    let r = get(f.addr, "/config", &[]);
    assert!(String::from_utf8_lossy(&r.body).contains("mode=archive-z2"));
    // A ref alias (a symlink inside the repo) is followed.
    let alias = get(f.addr, "/refs/heads/alias", &[]);
    assert_eq!(alias.status, 200);
    assert_eq!(alias.body, format!("{}\n", "ab".repeat(32)).as_bytes());

    // Rewriting the summary (by rename, as every writer does) changes its ETag.
    let before = get(f.addr, "/summary", &[]);
    let old_tag = before.header("etag").expect("etag").to_string();
    let staged = f.repo.join("summary.new");
    std::fs::write(&staged, b"new summary").expect("write");
    std::fs::rename(&staged, f.repo.join("summary")).expect("rename");
    let after = get(f.addr, "/summary", &[("If-None-Match", &old_tag)]);
    assert_eq!(after.status, 200);
    assert_eq!(after.body, b"new summary");
    assert_ne!(after.header("etag"), Some(old_tag.as_str()));
}

#[test]
fn byte_ranges() {
    let f = fixture();
    let path = format!("/{}", f.big_path);
    let len = BIG_LEN as u64;
    let cases: [(&str, u64, u64); 5] = [
        ("bytes=0-9", 0, 10),
        ("bytes=100-", 100, len),
        ("bytes=-1000", len - 1000, len),
        ("bytes=1000000-2999999", 1_000_000, 3_000_000),
        ("bytes=5-99999999999", 5, len),
    ];
    for (range, start, end) in cases {
        let r = get(f.addr, &path, &[("Range", range)]);
        assert_eq!(r.status, 206, "{range}");
        let expected_range = format!("bytes {start}-{}/{len}", end - 1);
        assert_eq!(
            r.header("content-range"),
            Some(expected_range.as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start).to_string().as_str())
        );
        assert!(
            r.body == f.big[start as usize..end as usize],
            "{range}: wrong bytes"
        );
    }
    let r = get(f.addr, &path, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    assert!(r.body.is_empty());
    // Several ranges: the whole file is a valid answer.
    let r = get(f.addr, &path, &[("Range", "bytes=0-1,5-6")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG_LEN);
    // A range on a small file, answered from memory.
    let r = get(f.addr, "/summary", &[("Range", "bytes=-5")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, b"bytes");
}

#[test]
fn conditional_requests() {
    let f = fixture();
    let path = format!("/{}", f.big_path);
    let full = get(f.addr, &path, &[]);
    let etag = full.header("etag").expect("etag").to_string();
    let lm = full
        .header("last-modified")
        .expect("last-modified")
        .to_string();

    let r = get(f.addr, &path, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        r.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let r = get(f.addr, &path, &[("If-None-Match", "\"something-else\"")]);
    assert_eq!(r.status, 200);
    let r = get(
        f.addr,
        &path,
        &[("If-None-Match", "\"a\""), ("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 304, "a tag on a second If-None-Match line");

    let r = get(f.addr, "/refs/heads/main", &[]);
    let ref_lm = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let r = get(
        f.addr,
        "/refs/heads/main",
        &[("If-Modified-Since", &ref_lm)],
    );
    assert_eq!(r.status, 304);
    let r = get(
        f.addr,
        "/refs/heads/main",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:01 GMT")],
    );
    assert_eq!(r.status, 200);

    // If-Range: the range only while the validator still matches.
    let r = get(
        f.addr,
        &path,
        &[("Range", "bytes=0-3"), ("If-Range", &etag)],
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &f.big[..4]);
    let r = get(f.addr, &path, &[("Range", "bytes=0-3"), ("If-Range", &lm)]);
    assert_eq!(r.status, 206);
    let r = get(
        f.addr,
        &path,
        &[("Range", "bytes=0-3"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), BIG_LEN);
}

/// Drop a file's pages from the page cache: the server must then read it on its
/// blocking pool, with the same result.
fn evict(path: &Path) {
    let f = std::fs::File::open(path).expect("open");
    f.sync_all().expect("sync");
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
}

#[test]
fn files_not_in_the_page_cache_are_served_too() {
    let f = fixture();
    for round in 0..3 {
        evict(&f.repo.join(&f.big_path));
        evict(&f.repo.join("refs/heads/main"));
        let r = get(f.addr, &format!("/{}", f.big_path), &[]);
        assert_eq!(r.status, 200, "round {round}");
        assert!(r.body == f.big, "round {round}: wrong bytes");
        let r = get(
            f.addr,
            &format!("/{}", f.big_path),
            &[("Range", "bytes=-300000")],
        );
        assert!(
            r.body == f.big[BIG_LEN - 300_000..],
            "round {round}: wrong range"
        );
        evict(&f.repo.join(&f.big_path));
        let r = get(f.addr, "/refs/heads/main", &[]);
        assert_eq!(r.body, format!("{}\n", "ab".repeat(32)).as_bytes());
    }
}

#[test]
fn head_gets_the_headers_without_a_body() {
    let f = fixture();
    let r = request(f.addr, "HEAD", &format!("/{}", f.big_path), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(BIG_LEN.to_string().as_str())
    );
    assert!(r.body.is_empty());
    let r = request(f.addr, "HEAD", "/missing", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn other_methods_are_refused() {
    let f = fixture();
    for m in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(f.addr, m, "/config", &[("Content-Length", "0")]);
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{m}");
    }
    assert!(f.repo.join("config").is_file());
}

#[test]
fn missing_private_and_directory_paths_are_404() {
    let f = fixture();
    for path in [
        "/",
        "/objects",
        "/objects/",
        "/objects/ab",
        "/objects/ab/",
        "/refs/heads",
        "/refs/heads/nope",
        &checksum_path("commit", "00").replace("objects", "/objects"),
        "/tmp/staged",
        "/state",
        "/.lock",
        "/extensions/x",
        "/summary.sig",
    ] {
        let r = get(f.addr, path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET), "{path}");
    }
}

fn assert_refused(addr: SocketAddr, raw_path: &str) {
    let raw = raw_exchange(
        addr,
        format!("GET {raw_path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        !text.contains(SECRET),
        "{raw_path} leaked the secret: {text}"
    );
    assert!(
        !text.contains("root:x:0:0"),
        "{raw_path} leaked /etc/passwd: {text}"
    );
    assert!(
        !text.contains("127.0.0.1"),
        "{raw_path} leaked /etc/hosts: {text}"
    );
    // hyper itself answers 400 to some request lines; either way no 2xx.
    let status = text.split(' ').nth(1).unwrap_or("");
    assert!(
        ["400", "403", "404"].contains(&status),
        "{raw_path}: unexpected answer {text}"
    );
}

#[test]
fn nothing_outside_the_root_is_reachable() {
    let f = fixture();
    for p in [
        "/../secret.txt",
        "/../../../../../../etc/passwd",
        "/refs/../../secret.txt",
        "/refs/heads/../../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2e/secret.txt",
        "/refs/%2e%2e/%2e%2e/secret.txt",
        "/refs/%2E%2e/%2E%2E/%2e%2e/etc/passwd",
        "/refs/heads/..%2f..%2f..%2fsecret.txt",
        "/refs/heads/..%2F..%2F..%2Fsecret.txt",
        "/refs%2f..%2f..%2fsecret.txt",
        "/refs/heads/..%5c..%5csecret.txt",
        "/refs/heads/.%2e/.%2e/.%2e/secret.txt",
        "/refs//heads/main",
        "//etc/passwd",
        "/refs/heads/main%00",
        "/./config",
        "/refs/heads/evil",
        "/refs/heads/evil-rel",
        "/refs/heads/evil-dir/secret.txt",
        "/refs/heads/evil-dir/repo/config",
        "/refs/evil-etc/passwd",
        "/refs/evil-etc/hosts",
        "/refs/heads/evil-dir",
        "http://localhost/../secret.txt",
    ] {
        assert_refused(f.addr, p);
    }
    // The repository's own files are still served after all that.
    assert_eq!(get(f.addr, "/refs/heads/main", &[]).status, 200);
}

#[test]
fn special_files_are_not_opened() {
    let f = fixture();
    let fifo = f.repo.join("refs/heads/fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(st.success());
    // Opening a FIFO for reading would block until a writer came; the server must not.
    let r = get(f.addr, "/refs/heads/fifo", &[]);
    assert_eq!(r.status, 404);
}

#[test]
fn extra_directories() {
    let f = fixture_with(|tmp| {
        let ext = tmp.join("ext");
        std::fs::create_dir_all(ext.join("sub")).expect("mkdir ext");
        std::fs::write(ext.join("sub/image.raw"), b"extension image").expect("write");
        symlink("../../repo/config", ext.join("sub/escape")).expect("symlink");
        symlink("image.raw", ext.join("sub/inside")).expect("symlink");
        vec![("ext".to_string(), ext)]
    });
    let r = get(f.addr, "/ext/sub/image.raw", &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"extension image");
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    assert_eq!(get(f.addr, "/ext/sub/inside", &[]).body, b"extension image");
    assert_eq!(get(f.addr, "/ext/sub/", &[]).status, 404);
    assert_eq!(get(f.addr, "/ext/sub", &[]).status, 404);
    // The repository's config is outside this root, even though it is served elsewhere.
    assert_eq!(get(f.addr, "/ext/sub/escape", &[]).status, 404);
    assert_refused(f.addr, "/ext/../config");
    assert_refused(f.addr, "/ext/%2e%2e/secret.txt");
    assert_refused(f.addr, "/ext/sub/%2E%2E/%2e%2e/secret.txt");
    // The repository is still served beside it.
    assert_eq!(get(f.addr, "/summary", &[]).status, 200);
}

#[test]
fn bad_extra_names_and_non_archive_repos_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    Repo::init(&repo, RepoMode::Archive).expect("init");
    for name in [
        "objects", "refs", "summary", "config", "deltas", "..", ".x", "a/b", "", "x y",
    ] {
        let mut cfg = ServeConfig::new(&repo);
        cfg.bind = "127.0.0.1:0".parse().expect("addr");
        cfg.extra = vec![(name.to_string(), tmp.path().to_path_buf())];
        match spawn_background(cfg) {
            Err(ServeError::BadDirName { .. }) => {}
            other => panic!("extra name {name:?} accepted: {:?}", other.map(|(a, _)| a)),
        }
    }
    let mut cfg = ServeConfig::new(&repo);
    cfg.bind = "127.0.0.1:0".parse().expect("addr");
    cfg.extra = vec![
        ("dup".to_string(), tmp.path().to_path_buf()),
        ("dup".to_string(), tmp.path().to_path_buf()),
    ];
    assert!(matches!(
        spawn_background(cfg),
        Err(ServeError::BadDirName { .. })
    ));

    let bare = tmp.path().join("bare");
    Repo::init(&bare, RepoMode::BareUser).expect("init bare-user");
    let mut cfg = ServeConfig::new(&bare);
    cfg.bind = "127.0.0.1:0".parse().expect("addr");
    let err = spawn_background(cfg)
        .err()
        .expect("bare-user repo must be refused");
    assert!(
        matches!(
            err,
            ServeError::NotArchive {
                mode: RepoMode::BareUser,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("archive"), "{err}");

    let mut cfg = ServeConfig::new(tmp.path().join("nothing-here"));
    cfg.bind = "127.0.0.1:0".parse().expect("addr");
    assert!(matches!(spawn_background(cfg), Err(ServeError::Repo(_))));
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let f = fixture();
    let mut req = String::new();
    for _ in 0..20 {
        req.push_str("GET /refs/heads/main HTTP/1.1\r\nHost: localhost\r\n\r\n");
    }
    req.push_str("GET /summary HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let raw = raw_exchange(f.addr, req.as_bytes());
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 21, "{text}");
    assert!(text.ends_with("summary bytes"), "{text}");
}

#[test]
fn stopping_the_background_server_closes_the_port() {
    let f = fixture();
    let addr = f.addr;
    assert_eq!(get(addr, "/summary", &[]).status, 200);
    drop(f);
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_multiplexes() {
    let f = fixture();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let base = format!("http://{}", f.addr);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let path = if i % 2 == 0 {
            f.big_path.clone()
        } else {
            f.small_path.clone()
        };
        let (client, url) = (client.clone(), format!("{base}/{path}"));
        tasks.push(tokio::spawn(async move {
            let r = client.get(url).send().await.expect("h2 request");
            assert_eq!(r.version(), reqwest::Version::HTTP_2);
            assert_eq!(r.status(), 200);
            r.bytes().await.expect("h2 body").len()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let len = t.await.expect("task");
        let expected = if i % 2 == 0 { BIG_LEN } else { 19 };
        assert_eq!(len, expected);
    }
    let r = client
        .head(format!("{base}/{}", f.big_path))
        .send()
        .await
        .expect("h2 head");
    assert_eq!(r.content_length(), Some(BIG_LEN as u64));
    let r = client
        .get(format!("{base}/{}", f.big_path))
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("h2 range");
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.expect("body").as_ref(), &f.big[10..20]);
    drop(f.tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_stops_on_the_shutdown_future() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    Repo::init(&repo, RepoMode::Archive).expect("init");
    let mut cfg = ServeConfig::new(&repo);
    cfg.bind = "127.0.0.1:0".parse().expect("addr");
    let server = Server::bind(cfg).await.expect("bind");
    let addr = server.local_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = rx.await;
    }));
    let r = reqwest::get(format!("http://{addr}/config"))
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    tx.send(()).expect("signal");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("server stopped in time")
        .expect("task");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// Send `request` and read until the server closes the connection, or give up after two
/// seconds of silence (a connection kept open): whether it was closed, and the bytes.
fn exchange_until_idle(addr: SocketAddr, request: &[u8]) -> (bool, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.write_all(request).expect("send request");
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (true, out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (false, out);
            }
            Err(_) => return (true, out),
        }
    }
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let f = fixture();
    let (closed, raw) = exchange_until_idle(f.addr, b"GET /summary HTTP/1.0\r\n\r\n");
    assert!(closed, "an HTTP/1.0 connection stayed open");
    let r = parse(&raw);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"summary bytes"[..]));
    let (closed, raw) = exchange_until_idle(
        f.addr,
        b"GET /summary HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(!closed, "a keep-alive HTTP/1.0 connection was closed");
    let r = parse(&raw);
    assert_eq!(r.header("connection"), Some("keep-alive"));
    // HTTP/1.1 stays open by default, and says nothing about it.
    let (closed, raw) = exchange_until_idle(f.addr, b"GET /summary HTTP/1.1\r\n\r\n");
    assert!(!closed);
    assert_eq!(parse(&raw).header("connection"), None);
}

#[test]
fn a_request_with_a_body_is_answered_and_the_connection_closed() {
    let f = fixture();
    // Were the body read as the next request, this would answer the ref too.
    let smuggled = "GET /refs/heads/main HTTP/1.1\r\n\r\n";
    let req = format!(
        "GET /summary HTTP/1.1\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    let (closed, raw) = exchange_until_idle(f.addr, req.as_bytes());
    assert!(closed);
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    let req =
        format!("POST /summary HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}");
    let (closed, raw) = exchange_until_idle(f.addr, req.as_bytes());
    assert!(closed);
    let r = parse(&raw);
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn malformed_and_oversized_heads_are_refused_and_closed() {
    let f = fixture();
    let (closed, raw) = exchange_until_idle(f.addr, b"GET /sum mary HTTP/1.1\r\n\r\n");
    assert!(closed);
    assert_eq!(parse(&raw).status, 400);
    let big = format!(
        "GET /summary HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
        "x".repeat(70 * 1024)
    );
    let (closed, raw) = exchange_until_idle(f.addr, big.as_bytes());
    assert!(closed);
    assert_eq!(parse(&raw).status, 431);
    let (closed, raw) = exchange_until_idle(f.addr, b"GET /summary HTTP/2.5\r\n\r\n");
    assert!(closed);
    assert_eq!(parse(&raw).status, 505);
}

#[test]
fn queries_absolute_targets_and_heads_sent_in_pieces() {
    let f = fixture();
    let r = get(f.addr, "/summary?ignored=1", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"summary bytes"[..]));
    let target = format!("http://{}/summary", f.addr);
    let r = get(f.addr, &target, &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"summary bytes"[..]));
    // A head that arrives a few bytes at a time is answered once it is whole.
    let mut s = TcpStream::connect(f.addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    for piece in [
        "GE",
        "T /summ",
        "ary HTTP/1.1\r\nHo",
        "st: x\r\nConnection: close\r",
        "\n\r\n",
    ] {
        s.write_all(piece.as_bytes()).expect("send");
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let r = parse(&raw);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"summary bytes"[..]));
}

#[test]
fn pipelined_gets_heads_and_misses_come_back_in_order() {
    let f = fixture();
    let req = format!(
        "HEAD /{big} HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\nGET /{small} HTTP/1.1\r\n\r\n\
         GET /{big} HTTP/1.1\r\nRange: bytes=5-9\r\n\r\nGET /summary HTTP/1.1\r\nConnection: close\r\n\r\n",
        big = f.big_path,
        small = f.small_path
    );
    let raw = raw_exchange(f.addr, req.as_bytes());
    let text = String::from_utf8_lossy(&raw);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(statuses, ["200", "404", "200", "206", "200"], "{text}");
    assert!(text.contains("small dirtree bytes"));
    assert!(text.ends_with("summary bytes"));
    let five = &f.big[5..10];
    assert!(
        raw.windows(5).any(|w| w == five),
        "the range's bytes are missing"
    );
}

#[test]
fn an_h2c_upgrade_is_answered_on_http_1_1() {
    // What libcurl, and so ostree, sends on every plain-HTTP connection.
    let f = fixture();
    let (closed, raw) = exchange_until_idle(
        f.addr,
        b"GET /summary HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
          Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
    );
    assert!(!closed, "the connection was not kept");
    assert!(raw.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(parse(&raw).body, b"summary bytes");
}
