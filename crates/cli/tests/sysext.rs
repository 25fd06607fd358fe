//! `trellis sysext` for real: extensions built with apt over a base commit in the OSTree
//! layout (the Debian minbase fixture converted as compose converts, committed once and
//! shared between test processes under $TRELLIS_TEST_CACHE), merged over a checkout by
//! the real `systemd-sysext` 252 in a private mount namespace, published, served over
//! HTTP, installed, checked and refused. Needs root, the Debian mirror, erofs-utils,
//! squashfs-tools and openssl.

mod common;

use common::{debian_rootfs, run_ok, run_raw, sh, trellis};
use serde_json::Value as Json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use trellis_transport::serve::{ServeConfig, spawn_background};

const REF: &str = "debian/bookworm/sysext-test";

fn test_cache() -> PathBuf {
    PathBuf::from(std::env::var("TRELLIS_TEST_CACHE").unwrap_or("/var/cache/trellis-test".into()))
}

fn deb_cache() -> String {
    test_cache().join("debs").display().to_string()
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// A work directory on disk (/var/tmp: builds check a whole base tree out).
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trellis-sysext-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

/// The base: the minbase fixture converted to the commit layout (/usr/etc, the dpkg
/// database in /usr/lib/sysimage/dpkg, an empty /var, /opt a link to var/opt), committed
/// into a bare repository. Built once, under a lock, shared by every test process.
fn base_repo() -> PathBuf {
    let cache = test_cache();
    std::fs::create_dir_all(&cache).unwrap();
    let lock = File::create(cache.join(".sysext-base.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let dir = cache.join("sysext-base");
    let repo = dir.join("repo");
    if dir.join("complete").is_file() {
        return repo;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let work = workdir();
    let tree = work.path().join("tree");
    sh(&format!("cp -a {} {}", p(&debian_rootfs()), p(&tree)));
    trellis_compose::convert::convert(&tree).unwrap();
    let staging = cache.join(".sysext-base.tmp");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).unwrap();
    let srepo = staging.join("repo");
    common::init_repo(&srepo, "bare");
    common::commit_dir(
        p(&srepo),
        REF,
        &tree,
        &[
            "--timestamp",
            "2024-06-01T00:00:00Z",
            "--version",
            "12.20240601",
        ],
    );
    std::fs::write(staging.join("complete"), "").unwrap();
    std::fs::rename(&staging, &dir).unwrap();
    repo
}

/// `trellis sysext build ... --json`.
fn build(
    repo: &Path,
    name: &str,
    packages: &str,
    format: &str,
    out: &Path,
    extra: &[&str],
) -> Json {
    std::fs::create_dir_all(out).unwrap();
    let mut args = vec![
        "sysext",
        "build",
        "--repo",
        p(repo),
        "--ref",
        REF,
        "--name",
        name,
        "--packages",
        packages,
        "-o",
        p(out),
        "--format",
        format,
        "--json",
    ];
    let cache = deb_cache();
    args.extend(["--cache", &cache]);
    args.extend_from_slice(extra);
    let out = run_ok(&mut trellis(&args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn checkout(repo: &Path, dest: &Path) {
    run_ok(&mut trellis(&["checkout", "--repo", p(repo), REF, p(dest)]));
}

/// Run `script` in a private mount namespace where `root` is a shared bind mount of
/// itself and /run a fresh tmpfs: what systemd-sysext needs to merge into `root` (its
/// overlay reaches `root` through propagation), while nothing leaves the namespace.
fn in_namespace(root: &Path, script: &str) -> Output {
    let r = p(root);
    run_raw(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-euc",
        &format!(
            "mount -t tmpfs tmpfs /run\nmount --bind {r} {r}\nmount --make-shared {r}\n{script}"
        ),
    ]))
}

fn ok_output(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed ({}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn names(json: &Json, key: &str) -> Vec<String> {
    json[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Assertions every build report must pass.
fn check_report(r: &Json, name: &str, pkg: &str) {
    assert!(names(r, "packages").contains(&pkg.to_string()), "{r:#}");
    let rel = &r["release"];
    let fields: Vec<(String, String)> = serde_json::from_value(rel.clone()).unwrap();
    let get = |k: &str| fields.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
    assert_eq!(get("ID"), Some("debian"));
    assert_eq!(get("VERSION_ID"), Some("12"));
    assert_eq!(get("ARCHITECTURE"), Some("x86-64"));
    assert_eq!(get("SYSEXT_ID"), Some(name));
    assert!(get("TRELLIS_PACKAGES").unwrap().contains(pkg));
    // The packages fit the base: they delete and change none of its files (what is
    // dropped is the dpkg database, /etc, and state maintainer scripts write in /var).
    for d in r["dropped"].as_array().unwrap() {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            matches!(reason, "dpkg-database" | "etc" | "outside"),
            "unexpected drop {d} in {r:#}"
        );
    }
    let files = r["not_packaged"].as_array().unwrap();
    assert!(files.is_empty(), "files no package ships: {files:?}");
    eprintln!(
        "{name}: {} files, {} symlinks, {} dirs, {} content bytes, image {} bytes, \
         {:.1}s (checkout {:.1}s, install {:.1}s, collect {:.1}s, pack {:.1}s); \
         not packaged: {}; dropped: {}",
        r["files"],
        r["symlinks"],
        r["dirs"],
        r["content_bytes"],
        r["size"],
        r["timings"]["total"].as_f64().unwrap(),
        r["timings"]["checkout"].as_f64().unwrap(),
        r["timings"]["install"].as_f64().unwrap(),
        r["timings"]["collect"].as_f64().unwrap(),
        r["timings"]["pack"].as_f64().unwrap(),
        r["not_packaged"],
        r["dropped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["path"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// The real systemd-sysext merges the image over a checkout; `cmd` runs from the merged
/// tree and prints `expect`; after unmerge the tool is gone again.
fn merge_and_run(repo: &Path, image: &Path, tool: &str, cmd: &str, expect: &str) {
    let work = workdir();
    let root = work.path().join("root");
    checkout(repo, &root);
    assert!(!root.join(tool.trim_start_matches('/')).exists());
    let dir = root.join("var/lib/extensions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(image, dir.join(image.file_name().unwrap())).unwrap();
    let r = p(&root);
    let out = ok_output(&in_namespace(
        &root,
        &format!(
            "systemd-sysext --root={r} merge >&2\n\
             test -x {r}{tool}\n\
             chroot {r} {cmd}\n\
             systemd-sysext --root={r} unmerge >&2\n\
             test ! -e {r}{tool}"
        ),
    ));
    assert!(out.contains(expect), "{expect:?} not in {out:?}");
}

#[test]
fn strace_erofs_is_reproducible_and_merges() {
    let repo = base_repo();
    let work = workdir();
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let ra = build(&repo, "strace", "strace", "erofs", &a, &[]);
    let rb = build(&repo, "strace", "strace", "erofs", &b, &[]);
    check_report(&ra, "strace", "strace");
    let (ia, ib) = (a.join("strace.raw"), b.join("strace.raw"));
    assert_eq!(
        std::fs::read(&ia).unwrap(),
        std::fs::read(&ib).unwrap(),
        "two builds from the same inputs differ"
    );
    assert_eq!(ra["version"], rb["version"]);
    assert!(ra["version"].as_str().unwrap().starts_with("12.20240601-"));

    // inspect: the name, the release data, the files, the OS it is for.
    let i: Json = serde_json::from_str(&run_ok(&mut trellis(&[
        "sysext",
        "inspect",
        p(&ia),
        "--json",
    ])))
    .unwrap();
    assert_eq!(i["name"], "strace");
    assert_eq!(i["format"], "erofs");
    assert_eq!(i["matches"], "debian 12 on x86-64");
    assert_eq!(i["problems"].as_array().unwrap().len(), 0);
    let files: Vec<&str> = i["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for want in [
        "usr/bin/strace",
        "usr/lib/extension-release.d/extension-release.strace",
        "usr/share/doc/strace/copyright",
    ] {
        assert!(files.contains(&want), "{want} not in {files:?}");
    }
    assert!(files.iter().all(|f| f.starts_with("usr")), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.contains("sysimage/dpkg") || f.starts_with("usr/etc"))
    );
    let text = run_ok(&mut trellis(&["sysext", "inspect", p(&ia)]));
    assert!(text.contains("for:     debian 12 on x86-64"), "{text}");

    // check against the base commit: merges.
    let out = run_ok(&mut trellis(&[
        "sysext",
        "check",
        p(&ia),
        "--repo",
        p(&repo),
        "--ref",
        REF,
    ]));
    assert!(
        out.contains("strace: merges on debian 12 (x86-64)"),
        "{out}"
    );

    merge_and_run(
        &repo,
        &ia,
        "/usr/bin/strace",
        "strace -V",
        "strace -- version",
    );
}

#[test]
fn squashfs_and_directory_builds_are_reproducible() {
    let repo = base_repo();
    let work = workdir();
    let (a, b, d) = (
        work.path().join("a"),
        work.path().join("b"),
        work.path().join("d"),
    );
    let extra = ["--version", "1.0"];
    let ra = build(&repo, "strace", "strace", "squashfs", &a, &extra);
    build(&repo, "strace", "strace", "squashfs", &b, &extra);
    let rd = build(&repo, "strace", "strace", "dir", &d, &extra);
    check_report(&ra, "strace", "strace");
    assert_eq!(ra["version"], "1.0");
    let (ia, ib) = (a.join("strace.raw"), b.join("strace.raw"));
    assert_eq!(std::fs::read(&ia).unwrap(), std::fs::read(&ib).unwrap());
    // The directory holds what the squashfs image holds, with the same metadata.
    let unpacked = work.path().join("unpacked");
    run_ok(Command::new("unsquashfs").args(["-no-progress", "-quiet", "-d", p(&unpacked), p(&ia)]));
    common::assert_same_tree(&unpacked, &d.join("strace"));
    assert_eq!(rd["files"], ra["files"]);
    // Every timestamp is the base commit's.
    let mtimes = sh(&format!(
        "find {} -printf '%T@\\n' | sort -u",
        p(&d.join("strace"))
    ));
    assert_eq!(mtimes, "1717200000.0000000000");
    merge_and_run(
        &repo,
        &ia,
        "/usr/bin/strace",
        "strace -V",
        "strace -- version",
    );
}

#[test]
fn gdb_extension_runs_from_the_merged_tree() {
    let repo = base_repo();
    let work = workdir();
    let r = build(&repo, "debug", "gdb", "erofs", work.path(), &[]);
    check_report(&r, "debug", "gdb");
    let img = work.path().join("debug.raw");
    eprintln!(
        "debug (gdb): du of the image: {}",
        sh(&format!("du -h {}", p(&img)))
    );
    merge_and_run(&repo, &img, "/usr/bin/gdb", "gdb --version", "GNU gdb");
}

/// A directory extension NAME with `release` and a tool.
fn dir_ext(parent: &Path, name: &str, release: &str) -> PathBuf {
    let root = parent.join(name);
    std::fs::create_dir_all(root.join("usr/lib/extension-release.d")).unwrap();
    std::fs::create_dir_all(root.join("usr/bin")).unwrap();
    std::fs::write(
        root.join(format!(
            "usr/lib/extension-release.d/extension-release.{name}"
        )),
        release,
    )
    .unwrap();
    std::fs::write(
        root.join(format!("usr/bin/{name}")),
        format!("#!/bin/sh\necho {name}\n"),
    )
    .unwrap();
    sh(&format!("chmod 755 {}/usr/bin/{name}", p(&root)));
    root
}

fn squash(dir: &Path, out: &Path) {
    run_ok(Command::new("mksquashfs").args([
        p(dir),
        p(out),
        "-noappend",
        "-no-progress",
        "-quiet",
    ]));
}

fn check_json(img: &Path, repo: &Path) -> (bool, Json) {
    let o = run_raw(&mut trellis(&[
        "sysext",
        "check",
        p(img),
        "--repo",
        p(repo),
        "--ref",
        REF,
        "--json",
    ]));
    let j: Json =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    (o.status.success(), j)
}

#[test]
fn check_refuses_with_the_reason() {
    let repo = base_repo();
    let work = workdir();
    let w = work.path();
    let good = dir_ext(w, "good", "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\n");
    let (ok, j) = check_json(&good, &repo);
    assert!(ok, "{j:#}");
    assert_eq!(j["merges"], true);
    // The same as a raw image.
    let raw = w.join("good.raw");
    squash(&good, &raw);
    assert!(check_json(&raw, &repo).0);

    let cases: Vec<(PathBuf, &str)> = vec![
        (
            dir_ext(w, "wrongid", "ID=fedora\nVERSION_ID=12\n"),
            "ID=fedora but the OS has ID=debian",
        ),
        (
            dir_ext(w, "wrongversion", "ID=debian\nVERSION_ID=11\n"),
            "VERSION_ID=11 but the OS has VERSION_ID=12",
        ),
        (
            dir_ext(
                w,
                "wrongarch",
                "ID=debian\nVERSION_ID=12\nARCHITECTURE=arm64\n",
            ),
            "ARCHITECTURE=arm64 but the OS runs on x86-64",
        ),
        (
            {
                let d = dir_ext(w, "outside", "ID=debian\nVERSION_ID=12\n");
                std::fs::create_dir_all(d.join("etc/outside")).unwrap();
                std::fs::write(d.join("etc/outside/conf"), "x").unwrap();
                d
            },
            "has files outside /usr and /opt: /etc",
        ),
        (
            {
                let d = dir_ext(w, "withosr", "ID=debian\nVERSION_ID=12\n");
                std::fs::write(d.join("usr/lib/os-release"), "ID=debian\n").unwrap();
                d
            },
            "contains usr/lib/os-release",
        ),
        (
            {
                let d = dir_ext(w, "renamed", "ID=debian\nVERSION_ID=12\n");
                let to = w.join("other");
                std::fs::rename(&d, &to).unwrap();
                to
            },
            "the image is named \"other\" but its release file is for renamed",
        ),
    ];
    for (img, why) in cases {
        let (ok, j) = check_json(&img, &repo);
        assert!(!ok, "{} should not merge: {j:#}", img.display());
        assert_eq!(j["merges"], false);
        let mut all: Vec<&str> = j["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["message"].as_str().unwrap())
            .collect();
        if j["verdict"]["result"] == "mismatch" {
            all.push(j["verdict"]["reason"].as_str().unwrap());
        }
        assert!(all.iter().any(|m| m.contains(why)), "{why:?} not in {j:#}");
        // The text form says it too.
        let o = run_raw(&mut trellis(&[
            "sysext",
            "check",
            p(&img),
            "--repo",
            p(&repo),
            "--ref",
            REF,
        ]));
        assert_eq!(o.status.code(), Some(1));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("would NOT merge on debian 12 (x86-64)"),
            "{text}"
        );
        assert!(text.contains(why), "{why:?} not in {text}");
    }
}

/// A published remote: an archive repository with extensions beside it, served over HTTP.
struct Remote {
    dest: PathBuf,
    key: PathBuf,
    public: String,
    url: String,
    _server: trellis_transport::serve::BackgroundServer,
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let public = run_ok(&mut trellis(&["keygen", "-o", p(&key)]));
    (key, public)
}

fn remote(w: &Path, images: &[&Path]) -> Remote {
    let dest = w.join("published");
    common::init_repo(&dest, "archive");
    let (key, public) = keygen(w, "sign.key");
    let mut args = vec!["sysext", "publish"];
    args.extend(images.iter().map(|i| p(i)));
    args.extend([p(&dest), "--sign-key", p(&key)]);
    run_ok(&mut trellis(&args));
    let mut cfg = ServeConfig::new(&dest);
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    cfg.extra = vec![("extensions".into(), dest.join("extensions"))];
    let (addr, server) = spawn_background(cfg).unwrap();
    Remote {
        dest,
        key,
        public,
        url: format!("http://{addr}/"),
        _server: server,
    }
}

fn device_root(w: &Path, name: &str) -> PathBuf {
    let root = w.join(name);
    std::fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::fs::write(
        root.join("usr/lib/os-release"),
        "ID=debian\nVERSION_ID=\"12\"\nNAME=Debian\n",
    )
    .unwrap();
    root
}

fn install(r: &Remote, root: &Path, spec: &str, key: &str) -> Output {
    run_raw(&mut trellis(&[
        "sysext",
        "install",
        spec,
        "--root",
        p(root),
        "--url",
        &r.url,
        "--key",
        key,
        "--no-refresh",
    ]))
}

fn extension_files(root: &Path) -> Vec<String> {
    match std::fs::read_dir(root.join("var/lib/extensions")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn publish_install_verify_and_remove() {
    let work = workdir();
    let w = work.path();
    let v1 = dir_ext(
        &w.join("v1"),
        "hello",
        "ID=debian\nVERSION_ID=12\nSYSEXT_VERSION_ID=1.0\n",
    );
    let v2 = dir_ext(
        &w.join("v2"),
        "hello",
        "ID=debian\nVERSION_ID=13\nSYSEXT_VERSION_ID=2.0\n",
    );
    let (i1, i2) = (w.join("v1/hello.raw"), w.join("v2/hello.raw"));
    squash(&v1, &i1);
    squash(&v2, &i2);
    let r = remote(w, &[&i1, &i2]);
    let ext = r.dest.join("extensions");

    // The index: sysupdate's format, every image and release file, sorted; the signature
    // verifies with openssl, independently of trellis.
    let sums = std::fs::read_to_string(ext.join("SHA256SUMS")).unwrap();
    let sha1 = sh(&format!("sha256sum {} | cut -d' ' -f1", p(&i1)));
    assert!(sums.contains(&format!("{sha1}  hello_1.0.raw\n")), "{sums}");
    let files: Vec<&str> = sums.lines().map(|l| &l[66..]).collect();
    assert_eq!(
        files,
        [
            "hello_1.0.raw",
            "hello_1.0.release",
            "hello_2.0.raw",
            "hello_2.0.release"
        ]
    );
    assert!(
        sh(&format!(
            "cd {ext} && sha256sum -c SHA256SUMS >/dev/null && echo ok",
            ext = p(&ext)
        ))
        .ends_with("ok")
    );
    // The DER SubjectPublicKeyInfo header of an ed25519 key, then the raw 32 bytes.
    sh(&format!(
        "cd {w} && head -n1 {ext}/SHA256SUMS.ed25519 | base64 -d > sig.bin && \
         (printf '\\060\\052\\060\\005\\006\\003\\053\\145\\160\\003\\041\\000'; \
          echo {public} | base64 -d) > pub.der && \
         openssl pkey -pubin -inform DER -in pub.der -out pub.pem && \
         openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in {ext}/SHA256SUMS \
         -sigfile sig.bin",
        w = p(w),
        ext = p(&ext),
        public = r.public
    ));

    // Publishing the same again changes nothing; the same version with other bytes is
    // refused.
    let again = run_ok(&mut trellis(&[
        "sysext",
        "publish",
        p(&i1),
        p(&r.dest),
        "--sign-key",
        p(&r.key),
    ]));
    assert!(again.contains("unchanged"), "{again}");
    let v1b = dir_ext(
        &w.join("v1b"),
        "hello",
        "ID=debian\nVERSION_ID=12\nSYSEXT_VERSION_ID=1.0\n",
    );
    std::fs::write(v1b.join("usr/bin/extra"), "x").unwrap();
    let i1b = w.join("v1b/hello.raw");
    squash(&v1b, &i1b);
    let o = run_raw(&mut trellis(&[
        "sysext",
        "publish",
        p(&i1b),
        p(&r.dest),
        "--sign-key",
        p(&r.key),
    ]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("already published with different content"),
        "{}",
        stderr(&o)
    );

    // list: both versions, only 1.0 matches Debian 12.
    let root = device_root(w, "root");
    let list: Json = serde_json::from_str(&run_ok(&mut trellis(&[
        "sysext",
        "list",
        "--root",
        p(&root),
        "--url",
        &r.url,
        "--key",
        &r.public,
        "--json",
    ])))
    .unwrap();
    let rows: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["version"].as_str().unwrap().to_string(),
                x["verdict"]["result"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2.0".into(), "mismatch".into()),
            ("1.0".into(), "match".into())
        ]
    );

    // The same through the remote configured in the sysroot's repository (its URL and
    // verification key), as on a device; a remote without a key is refused.
    let sysroot = w.join("sysroot");
    let srepo = sysroot.join("ostree/repo");
    std::fs::create_dir_all(sysroot.join("ostree")).unwrap();
    common::init_repo(&srepo, "bare");
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&srepo),
        "origin",
        &r.url,
        "--sign-verify-key",
        &r.public,
    ]));
    let text = run_ok(&mut trellis(&[
        "sysext",
        "list",
        "--root",
        p(&root),
        "--sysroot",
        p(&sysroot),
    ]));
    assert!(text.contains("hello") && text.contains("matches"), "{text}");
    run_ok(&mut trellis(&[
        "remote",
        "add",
        "--repo",
        p(&srepo),
        "nokey",
        &r.url,
    ]));
    let o = run_raw(&mut trellis(&[
        "sysext",
        "list",
        "--root",
        p(&root),
        "--sysroot",
        p(&sysroot),
        "--remote",
        "nokey",
    ]));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("has no ed25519 verification key"),
        "{}",
        stderr(&o)
    );

    // install picks the newest matching version; 2.0 is refused with the reason.
    let o = install(&r, &root, "hello", &r.public);
    let out = ok_output(&o);
    assert!(out.contains("installed hello 1.0"), "{out}");
    let installed = root.join("var/lib/extensions/hello.raw");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&i1).unwrap()
    );
    assert_eq!(extension_files(&root), ["hello.raw"]);
    let o = install(&r, &root, "hello@2.0", &r.public);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("2.0: VERSION_ID=13 but the OS has VERSION_ID=12"),
        "{}",
        stderr(&o)
    );
    let st: Json = serde_json::from_str(&run_ok(&mut trellis(&[
        "sysext",
        "status",
        "--root",
        p(&root),
        "--json",
    ])))
    .unwrap();
    let e = &st["extensions"][0];
    assert_eq!(e["name"], "hello");
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["managed"], true);
    assert_eq!(e["verdict"]["result"], "match");

    // A wrong key, a tampered index, a missing signature, a corrupt image: each refused
    // with the reason, and nothing installed.
    let fresh = device_root(w, "fresh");
    let (_, other_public) = keygen(w, "other.key");
    let o = install(&r, &fresh, "hello", &other_public);
    assert!(
        stderr(&o).contains("does not verify with the trusted key"),
        "{}",
        stderr(&o)
    );

    let sums_path = ext.join("SHA256SUMS");
    let good_sums = std::fs::read_to_string(&sums_path).unwrap();
    std::fs::write(&sums_path, good_sums.replacen(&sha1, &"0".repeat(64), 1)).unwrap();
    let o = install(&r, &fresh, "hello", &r.public);
    assert!(
        stderr(&o).contains("does not verify with the trusted key"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&sums_path, &good_sums).unwrap();

    let sig_path = ext.join("SHA256SUMS.ed25519");
    let good_sig = std::fs::read(&sig_path).unwrap();
    std::fs::remove_file(&sig_path).unwrap();
    let o = install(&r, &fresh, "hello", &r.public);
    assert!(
        stderr(&o).contains("the extension index is not signed"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&sig_path, &good_sig).unwrap();

    let img_path = ext.join("hello_1.0.raw");
    let good_img = std::fs::read(&img_path).unwrap();
    let mut bad = good_img.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&img_path, &bad).unwrap();
    let o = install(&r, &fresh, "hello", &r.public);
    assert!(
        stderr(&o).contains("listed in the signed SHA256SUMS (corrupt or tampered download)"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&img_path, &good_img).unwrap();
    assert_eq!(extension_files(&fresh), Vec::<String>::new(), "left behind");
    // And with everything restored it installs.
    ok_output(&install(&r, &fresh, "hello", &r.public));

    // Names with path separators never reach the file system.
    for bad in ["../hello", "a/b", "hello/..", ".hidden"] {
        let o = install(&r, &fresh, bad, &r.public);
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("invalid extension name"),
            "{bad}: {}",
            stderr(&o)
        );
        let o = run_raw(&mut trellis(&[
            "sysext",
            "remove",
            bad,
            "--root",
            p(&fresh),
            "--no-refresh",
        ]));
        assert!(
            stderr(&o).contains("invalid extension name"),
            "{bad}: {}",
            stderr(&o)
        );
    }

    // remove, then remove again.
    let out = run_ok(&mut trellis(&[
        "sysext",
        "remove",
        "hello",
        "--root",
        p(&root),
        "--no-refresh",
    ]));
    assert!(out.contains("removed"), "{out}");
    assert!(!installed.exists());
    assert!(!root.join("var/lib/trellis/sysext/hello.json").exists());
    let o = run_raw(&mut trellis(&[
        "sysext",
        "remove",
        "hello",
        "--root",
        p(&root),
        "--no-refresh",
    ]));
    assert!(stderr(&o).contains("is not installed"), "{}", stderr(&o));
}

#[test]
fn installed_extension_is_merged_by_refresh_and_removed() {
    // The device flow end to end, with the real systemd-sysext refresh: install from the
    // served remote into a checkout of the base, run the tool, remove it.
    let repo = base_repo();
    let work = workdir();
    let w = work.path();
    let ext = dir_ext(
        &w.join("src"),
        "hello",
        "ID=debian\nVERSION_ID=12\nSYSEXT_VERSION_ID=1\n",
    );
    let img = w.join("src/hello.raw");
    squash(&ext, &img);
    let r = remote(w, &[&img]);
    let root = w.join("root");
    checkout(&repo, &root);
    let t = common::trellis_bin();
    let rt = p(&root);
    let out = ok_output(&in_namespace(
        &root,
        &format!(
            "{t} sysext install hello --root {rt} --url {url} --key {key}\n\
             chroot {rt} hello\n\
             {t} sysext status --root {rt}\n\
             {t} sysext remove hello --root {rt}\n\
             test ! -e {rt}/usr/bin/hello && echo gone",
            url = r.url,
            key = r.public
        ),
    ));
    assert!(out.contains("installed hello 1 as"), "{out}");
    assert!(out.contains("\nhello\n"), "{out}");
    assert!(out.contains("matches"), "{out}");
    assert!(out.trim_end().ends_with("gone"), "{out}");
}

#[test]
fn corrupt_images_and_bad_names_are_refused() {
    let work = workdir();
    let w = work.path();
    let good = dir_ext(
        w,
        "hello",
        "ID=debian\nVERSION_ID=12\nSYSEXT_VERSION_ID=1\n",
    );
    // Compressible content: squashfs checks only what it decompresses (zlib's checksum),
    // so the damage must land in a compressed block.
    sh(&format!("seq 1 200000 > {}/usr/bin/numbers", p(&good)));
    let sq = w.join("sq/hello.raw");
    std::fs::create_dir_all(sq.parent().unwrap()).unwrap();
    squash(&good, &sq);
    let er = w.join("er/hello.raw");
    std::fs::create_dir_all(er.parent().unwrap()).unwrap();
    std::fs::write(good.join("usr/bin/big"), "x".repeat(300_000)).unwrap();
    run_ok(Command::new("mkfs.erofs").args(["-zlz4hc", "--quiet", p(&er), p(&good)]));
    std::fs::remove_file(good.join("usr/bin/big")).unwrap();
    std::fs::remove_file(good.join("usr/bin/numbers")).unwrap();
    assert!(
        run_raw(&mut trellis(&["sysext", "inspect", p(&er)]))
            .status
            .success()
    );

    // Damage each: flipped bytes in the middle of the squashfs; a truncated erofs; junk.
    let mut data = std::fs::read(&sq).unwrap();
    let n = data.len();
    for b in &mut data[n / 3..n / 3 + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&sq, &data).unwrap();
    let data = std::fs::read(&er).unwrap();
    std::fs::write(&er, &data[..data.len() / 2]).unwrap();
    let junk = w.join("junk.raw");
    std::fs::write(&junk, "not an image at all").unwrap();

    let dest = w.join("published");
    let (key, _) = keygen(w, "k");
    let root = device_root(w, "root");
    for (img, why) in [
        (&sq, "corrupt or unreadable squashfs image"),
        (&er, "corrupt or unreadable erofs image"),
        (&junk, "is not an extension image"),
    ] {
        for args in [
            vec!["sysext", "inspect", p(img)],
            vec!["sysext", "check", p(img), "--root", p(&root)],
            vec!["sysext", "publish", p(img), p(&dest), "--sign-key", p(&key)],
        ] {
            let o = run_raw(&mut trellis(&args));
            assert!(!o.status.success(), "{args:?} succeeded");
            assert!(
                stderr(&o).contains(why),
                "{args:?}: {why:?} not in {}",
                stderr(&o)
            );
        }
    }
    // Nothing was published.
    assert!(!dest.join("extensions/SHA256SUMS").exists());

    // A name with a path separator is refused before anything is built.
    let o = run_raw(&mut trellis(&[
        "sysext",
        "build",
        "--repo",
        p(w),
        "--ref",
        REF,
        "--name",
        "a/b",
        "--packages",
        "strace",
        "-o",
        p(w),
    ]));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("path separator"), "{}", stderr(&o));
}
