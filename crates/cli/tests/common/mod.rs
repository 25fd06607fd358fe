//! Shared helpers for the CLI tests: running trellis and ostree, fixture trees, and
//! comparing two trees entry by entry.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn trellis_bin() -> &'static str {
    env!("CARGO_BIN_EXE_trellis")
}

/// Run a command, panicking with its stderr when it fails; returns trimmed stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn run_raw(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn trellis(args: &[&str]) -> Command {
    let mut c = Command::new(trellis_bin());
    c.args(args);
    c
}

pub fn ostree(args: &[&str]) -> Command {
    let mut c = Command::new("ostree");
    c.args(args);
    c
}

pub fn sh(script: &str) -> String {
    run_ok(Command::new("sh").args(["-euc", script]))
}

/// A tree with every case a commit must cover: regular, empty and large files, relative and
/// absolute symlinks, nested and empty directories, a hardlink, setuid/setgid/sticky bits,
/// non-root owners, and xattrs including security.capability. Needs root.
pub fn make_fixture_tree(root: &Path) {
    let r = root.display();
    sh(&format!(
        r#"
        mkdir -p {r}/sub/deep {r}/empty-dir {r}/sticky
        printf 'hello\n' > {r}/hello.txt
        : > {r}/empty.txt
        ln -s hello.txt {r}/link
        ln -s /nonexistent/absolute {r}/sub/abslink
        printf 'x' > {r}/sub/deep/owned
        ln {r}/hello.txt {r}/sub/hardlink
        cp /bin/true {r}/suid && chmod 4755 {r}/suid
        printf 'g' > {r}/sgid && chmod 2750 {r}/sgid
        chmod 1777 {r}/sticky
        chmod 0700 {r}/sub/deep
        chown 1000:100 {r}/sub/deep/owned
        chown -h 1000:100 {r}/link
        chown 1234:5678 {r}/sub
        setfattr -n user.alpha -v two {r}/hello.txt
        setfattr -n user.zeta -v 1 {r}/hello.txt
        setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= {r}/suid
        setfattr -n user.dirattr -v v {r}/sub
        head -c 6000000 /dev/urandom > {r}/big.bin
        seq 1 200000 > {r}/compressible.txt
        "#
    ));
}

/// What a tree entry looks like, for comparisons (mtimes excluded: commits drop them).
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Vec<u8>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let md = std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    let content = if md.file_type().is_symlink() {
        std::fs::read_link(p)
            .map(|t| t.into_os_string().into_encoded_bytes())
            .unwrap_or_default()
    } else if md.is_file() {
        std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    } else {
        Vec::new()
    };
    let xattrs = list_xattrs(p);
    let rel = p
        .strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    out.insert(
        rel,
        Entry {
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            content,
            xattrs,
        },
    );
    if md.is_dir() {
        for e in std::fs::read_dir(p).unwrap_or_else(|e| panic!("list {}: {e}", p.display())) {
            walk(root, &e.expect("dir entry").path(), out);
        }
    }
}

fn list_xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let out = run_raw(
        Command::new("getfattr")
            .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
            .arg(p),
    );
    let mut v: Vec<(String, Vec<u8>)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, val)| (k.to_string(), val.as_bytes().to_vec()))
        .collect();
    v.sort();
    v
}

/// Assert two trees are identical, naming the first differing path.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let ka: Vec<_> = sa.keys().collect();
    let kb: Vec<_> = sb.keys().collect();
    assert_eq!(
        ka,
        kb,
        "trees {} and {} hold different paths",
        a.display(),
        b.display()
    );
    for (k, ea) in &sa {
        let eb = &sb[k];
        // The root directory's own metadata depends on where the checkout was made.
        if k.as_os_str().is_empty() {
            continue;
        }
        assert_eq!(
            ea,
            eb,
            "{} differs between {} and {}",
            k.display(),
            a.display(),
            b.display()
        );
    }
}

/// The minbase Debian tree built by scripts/debian-fixture.sh (cached outside the repo).
pub fn debian_rootfs() -> PathBuf {
    let p = std::env::var_os("TRELLIS_DEBIAN_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/trellis-test/minbase"));
    if !p.join("usr/bin").is_dir() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/debian-fixture.sh");
        run_ok(Command::new("bash").arg(script).env(
            "TRELLIS_TEST_CACHE",
            p.parent().unwrap_or(Path::new("/tmp")),
        ));
    }
    assert!(
        p.join("usr/bin").is_dir(),
        "Debian fixture missing at {}",
        p.display()
    );
    p
}

/// `trellis init --repo DIR --mode MODE`; returns the repo path as a string.
pub fn init_repo(dir: &Path, mode: &str) -> String {
    let repo = dir.to_str().expect("utf-8 temp path").to_string();
    run_ok(&mut trellis(&["init", "--repo", &repo, "--mode", mode]));
    repo
}

/// `trellis commit --repo REPO -b BRANCH [EXTRA...] DIR`; returns the new commit.
pub fn commit_dir(repo: &str, branch: &str, dir: &Path, extra: &[&str]) -> String {
    let mut args = vec!["commit", "--repo", repo, "-b", branch];
    args.extend_from_slice(extra);
    args.push(dir.to_str().expect("utf-8 temp path"));
    run_ok(&mut trellis(&args))
}

/// The same commit, returning the whole output for commands expected to fail.
pub fn commit_dir_raw(repo: &str, branch: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["commit", "--repo", repo, "-b", branch];
    args.extend_from_slice(extra);
    args.push(dir.to_str().expect("utf-8 temp path"));
    run_raw(&mut trellis(&args))
}
