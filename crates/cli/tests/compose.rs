//! `trellis compose` for real: mmdebstrap builds the example manifest (a minimal bookworm
//! with linux-image-amd64 and systemd). Three composes in all, sharing one .deb cache
//! outside the repository ($TRELLIS_TEST_CACHE/debs, default /var/cache/trellis-test):
//! the example; the example again (no new commit); and a changed package list composed
//! into a fresh repository whose manifest names an HTTP remote holding the first build
//! (the chain continues, and only the tip commit object is fetched). The second and third
//! run side by side. Needs root and the Debian mirror.

mod common;

use common::{ostree, run_ok, run_raw, sh, trellis};
use serde_json::Value as Json;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use trellis_transport::serve::{AccessRecord, ServeConfig, spawn_background};

const REF: &str = "debian/bookworm/amd64";

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/minimal.toml")
}

fn cache() -> String {
    let base = std::env::var("TRELLIS_TEST_CACHE").unwrap_or("/var/cache/trellis-test".into());
    format!("{base}/debs")
}

/// A work directory on disk (a tree is ~700 MB: not for a tmpfs /tmp).
fn workdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trellis-compose-test-")
        .tempdir_in("/var/tmp")
        .unwrap()
}

fn init_archive(repo: &Path) {
    run_ok(&mut trellis(&[
        "init",
        "--repo",
        &repo.to_string_lossy(),
        "--mode",
        "archive",
    ]));
}

/// Compose `manifest` into `repo`; the parsed `--json` output.
fn compose(manifest: &Path, repo: &Path, keep: Option<&Path>) -> Json {
    let mut args = vec![
        "compose".to_string(),
        manifest.display().to_string(),
        "--repo".into(),
        repo.display().to_string(),
        "--cache".into(),
        cache(),
        "--json".into(),
    ];
    if let Some(k) = keep {
        args.extend(["--keep-rootfs".into(), k.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_ok(&mut trellis(&args));
    let json: Json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!(
        "compose {} into {}: {} ({})",
        manifest.display(),
        repo.display(),
        json["commit"],
        json["timings"]
    );
    json
}

fn commit_objects(repo: &Path) -> usize {
    sh(&format!(
        "find {}/objects -name '*.commit' | wc -l",
        repo.display()
    ))
    .parse()
    .unwrap()
}

fn tmpfiles(k: &Path) -> Vec<String> {
    std::fs::read_to_string(k.join("usr/lib/tmpfiles.d/trellis-var.conf"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn link(k: &Path, rel: &str) -> String {
    std::fs::read_link(k.join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .display()
        .to_string()
}

fn empty_dir(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
        && std::fs::read_dir(p).unwrap().next().is_none()
}

/// The converted tree, item by item against the list.
fn check_layout(k: &Path, repo: &Path) {
    // /etc moved to /usr/etc.
    assert!(!k.join("etc").exists());
    assert_eq!(
        std::fs::read_to_string(k.join("usr/etc/hostname")).unwrap(),
        "trellis\n"
    );
    // State directories under /var, with symlinks; media to run/media.
    for (from, to) in [
        ("home", "var/home"),
        ("mnt", "var/mnt"),
        ("opt", "var/opt"),
        ("srv", "var/srv"),
        ("root", "var/roothome"),
        ("usr/local", "../var/usrlocal"),
        ("media", "run/media"),
        ("ostree", "sysroot/ostree"),
    ] {
        assert_eq!(link(k, from), to, "{from}");
    }
    assert!(empty_dir(&k.join("sysroot")));
    // The commit's /var is empty; what packages put there is in tmpfiles.d.
    assert!(empty_dir(&k.join("var")));
    let tf = tmpfiles(k);
    let has = |l: &str| tf.iter().any(|x| x == l);
    for l in [
        "d /var/roothome 0700 root root -",
        "C /var/roothome/.bashrc - - - - /usr/share/factory/var/roothome/.bashrc",
        "d /var/home/admin 0755 admin admin -",
        "d /var/usrlocal/bin 0755 root root -",
        "d /var/log/journal 2755 root systemd-journal -",
        "d /var/cache/apt/archives/partial 0700 _apt root -",
        "L /var/lib/dpkg - - - - /usr/lib/sysimage/dpkg",
    ] {
        assert!(has(l), "missing {l:?} in {tf:#?}");
    }
    assert!(k.join("usr/share/factory/var/roothome/.bashrc").is_file());
    // The dpkg database is under /usr.
    let status = std::fs::read_to_string(k.join("usr/lib/sysimage/dpkg/status")).unwrap();
    assert!(status.contains("Package: systemd\n"));
    assert!(k.join("usr/lib/sysimage/dpkg/info/systemd.list").is_file());
    // /dev, /proc, /sys, /run and /tmp are empty.
    for d in ["dev", "proc", "sys", "run", "tmp"] {
        assert!(empty_dir(&k.join(d)), "{d}");
    }
    // File capabilities are kept, in the tree and in the commit.
    let caps = sh(&format!(
        "getfattr -n security.capability --only-values {}/usr/bin/ping | od -An -tx1 | head -c 12",
        k.display()
    ));
    assert!(!caps.is_empty());
    let ls = run_ok(&mut ostree(&[
        "ls",
        "-X",
        &format!("--repo={}", repo.display()),
        REF,
        "/usr/bin/ping",
    ]));
    assert!(ls.contains("security.capability"), "{ls}");
    // Per-build noise is gone.
    assert_eq!(
        std::fs::metadata(k.join("usr/etc/machine-id"))
            .unwrap()
            .len(),
        0
    );
    for f in [
        "usr/etc/resolv.conf",
        "usr/etc/passwd-",
        "usr/etc/shadow-",
        "vmlinuz",
        "initrd.img",
    ] {
        assert!(std::fs::symlink_metadata(k.join(f)).is_err(), "{f}");
    }
    assert!(
        !tf.iter()
            .any(|l| l.contains("/var/log/") && l.starts_with('C')),
        "{tf:#?}"
    );
    // Kernel and initramfs in /usr/lib/modules/KVER; /boot empty.
    let kver = sh(&format!("ls {}/usr/lib/modules", k.display()));
    let modules = k.join("usr/lib/modules").join(&kver);
    assert!(modules.join("vmlinuz").metadata().unwrap().len() > 1_000_000);
    assert!(modules.join("initramfs.img").metadata().unwrap().len() > 1_000_000);
    assert!(empty_dir(&k.join("boot")));
    // The initramfs holds trellis and the script that runs prepare-root.
    let listing = sh(&format!(
        "chroot {} lsinitramfs /usr/lib/modules/{kver}/initramfs.img",
        k.display()
    ));
    for want in ["usr/bin/trellis", "scripts/local-bottom/trellis"] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} not in the initramfs"
        );
    }
    let script =
        std::fs::read_to_string(k.join("usr/share/initramfs-tools/scripts/local-bottom/trellis"))
            .unwrap();
    assert!(script.contains("trellis prepare-root"));
    // The trellis installed in the tree runs there.
    let v = sh(&format!(
        "chroot {} /usr/bin/trellis --version",
        k.display()
    ));
    assert!(v.starts_with("trellis "), "{v}");
    assert_eq!(
        std::fs::metadata(k.join("usr/bin/trellis")).unwrap().mode() & 0o7777,
        0o755
    );
    // What the manifest asked for: overlay, user, units, hook, kernel arguments.
    assert!(k.join("usr/etc/systemd/network/20-wired.network").is_file());
    let passwd = std::fs::read_to_string(k.join("usr/etc/passwd")).unwrap();
    assert!(
        passwd.lines().any(|l| l.starts_with("admin:x:1000:")),
        "{passwd}"
    );
    assert_eq!(
        link(
            k,
            "usr/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
        ),
        "/lib/systemd/system/systemd-networkd.service"
    );
    assert!(link(k, "usr/etc/systemd/system/default.target").ends_with("multi-user.target"));
    assert_eq!(
        std::fs::read_to_string(k.join("usr/lib/kernel/cmdline")).unwrap(),
        "console=tty0 console=ttyS0,115200\n"
    );
}

fn meta(repo: &Path, key: &str) -> String {
    run_ok(&mut ostree(&[
        "show",
        &format!("--repo={}", repo.display()),
        REF,
        &format!("--print-metadata-key={key}"),
    ]))
}

#[test]
fn compose_the_example_then_again_then_chained_over_http() {
    let w = workdir();
    let r1 = w.path().join("r1");
    let k1 = w.path().join("k1");
    init_archive(&r1);

    // 1. The example.
    let first = compose(&example(), &r1, Some(&k1));
    let c1 = first["commit"].as_str().unwrap().to_string();
    assert_eq!(first["unchanged"], false);
    assert_eq!(first["parent"], Json::Null);
    assert_eq!(
        run_ok(&mut ostree(&[
            "rev-parse",
            &format!("--repo={}", r1.display()),
            REF
        ])),
        c1
    );
    assert!(first["files"].as_u64().unwrap() > 5000, "{first}");
    assert!(first["new_objects"].as_u64().unwrap() > 5000, "{first}");
    let version = first["version"].as_str().unwrap().to_string();
    assert!(
        version.len() == 10
            && version.ends_with(".0")
            && version[..8].bytes().all(|b| b.is_ascii_digit()),
        "{version}"
    );
    check_layout(&k1, &r1);
    assert_eq!(meta(&r1, "version"), format!("'{version}'"));
    let digest = sh(&format!(
        "sha256sum {} | cut -d' ' -f1",
        example().display()
    ));
    assert_eq!(meta(&r1, "trellis.manifest-sha256"), format!("'{digest}'"));
    let packages = meta(&r1, "trellis.packages");
    assert!(packages.contains("('systemd', '"), "{packages}");
    assert!(packages.contains("('linux-image-amd64', '"), "{packages}");
    let fsck = run_ok(&mut ostree(&["fsck", &format!("--repo={}", r1.display())]));
    assert!(fsck.contains("no errors found"), "{fsck}");

    // The remote for step 3: a snapshot of r1 now, served over HTTP, every request logged.
    let served = w.path().join("served");
    sh(&format!("cp -al {} {}", r1.display(), served.display()));
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut cfg = ServeConfig::new(&served);
    cfg.bind = "127.0.0.1:0".parse().unwrap();
    let sink = log.clone();
    cfg.access_log = Some(Arc::new(move |r: &AccessRecord| {
        sink.lock()
            .unwrap()
            .push(format!("{} {} {}", r.method, r.path, r.status));
    }));
    let (addr, server) = spawn_background(cfg).unwrap();

    // A changed package list, naming that remote.
    let example_dir = example().parent().unwrap().canonicalize().unwrap();
    let text = std::fs::read_to_string(example())
        .unwrap()
        .replace(
            "    \"iputils-ping\",\n",
            "    \"iputils-ping\",\n    \"less\",\n",
        )
        .replace(
            "overlay = \"overlay\"",
            &format!("overlay = \"{}/overlay\"", example_dir.display()),
        );
    assert!(text.contains("\"less\""));
    let m2 = w.path().join("changed.toml");
    std::fs::write(
        &m2,
        format!("{text}\n[remote]\nname = \"origin\"\nurl = \"http://{addr}/\"\n"),
    )
    .unwrap();
    let r2 = w.path().join("r2");
    init_archive(&r2);

    let (again, chained) = std::thread::scope(|s| {
        // 2. The example again: no new commit.
        let a = s.spawn(|| compose(&example(), &r1, None));
        // 3. The changed list into r2, which lacks the ref: chained to the remote's tip.
        let c = s.spawn(|| compose(&m2, &r2, None));
        (a.join().unwrap(), c.join().unwrap())
    });
    server.stop();

    assert_eq!(again["unchanged"], true, "{again}");
    assert_eq!(again["commit"].as_str(), Some(c1.as_str()));
    assert_eq!(again["new_objects"], 0, "{again}");
    assert_eq!(commit_objects(&r1), 1);
    assert_eq!(
        run_ok(&mut ostree(&[
            "rev-parse",
            &format!("--repo={}", r1.display()),
            REF
        ])),
        c1
    );

    let c2 = chained["commit"].as_str().unwrap().to_string();
    assert_eq!(chained["unchanged"], false, "{chained}");
    assert_ne!(c2, c1);
    assert_eq!(chained["parent"].as_str(), Some(c1.as_str()), "{chained}");
    assert_eq!(chained["parent_from_remote"], "origin");
    assert!(meta(&r2, "trellis.packages").contains("('less', '"));
    let v2 = chained["version"].as_str().unwrap();
    assert_ne!(v2, version, "the version follows the parent's");
    // ostree agrees: the new commit, then the first build, whose tree was not fetched.
    let log_out = run_ok(&mut ostree(&[
        "log",
        &format!("--repo={}", r2.display()),
        REF,
    ]));
    let pos2 = log_out
        .find(&format!("commit {c2}"))
        .unwrap_or_else(|| panic!("{log_out}"));
    let pos1 = log_out
        .find(&format!("commit {c1}"))
        .unwrap_or_else(|| panic!("{log_out}"));
    assert!(pos2 < pos1, "{log_out}");
    assert!(log_out.contains(&format!("Version: {v2}")), "{log_out}");
    let parent = run_ok(&mut ostree(&[
        "rev-parse",
        &format!("--repo={}", r2.display()),
        &format!("{REF}^"),
    ]));
    assert_eq!(parent, c1);

    // Only the summary (or the ref) and the tip's .commit/.commitmeta were requested.
    let requests = log.lock().unwrap().clone();
    eprintln!("requests to the remote: {requests:#?}");
    let objects: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/objects/"))
        .collect();
    assert!(!objects.is_empty());
    for r in &objects {
        assert!(
            r.contains(&format!("{}.commit", &c1[2..]))
                || r.contains(&format!("{}.commitmeta", &c1[2..])),
            "unexpected object request {r}"
        );
    }
    assert!(
        requests.len() <= 5,
        "more than summary, its signature, config and the tip commit: {requests:#?}"
    );
    assert_eq!(
        chained["parent_requests"].as_u64().map(|n| n as usize),
        Some(requests.len())
    );

    for j in [&first, &again, &chained] {
        eprintln!("timings: {}", j["timings"]);
    }
}

#[test]
fn unknown_package_is_reported_at_its_line_and_nothing_is_committed() {
    let w = workdir();
    let text = std::fs::read_to_string(example()).unwrap().replace(
        "    \"zstd\",\n",
        "    \"zstd\",\n    \"no-such-package-trellis\",\n",
    );
    let line = text[..text.find("no-such-package-trellis").unwrap()]
        .matches('\n')
        .count()
        + 1;
    let m = w.path().join("bad.toml");
    // The overlay is relative to the manifest.
    std::fs::write(&m, text).unwrap();
    sh(&format!(
        "cp -r {}/overlay {}/",
        example().parent().unwrap().display(),
        w.path().display()
    ));
    let repo = w.path().join("repo");
    init_archive(&repo);
    let out = run_raw(&mut trellis(&[
        "compose",
        &m.to_string_lossy(),
        "--repo",
        &repo.to_string_lossy(),
        "--cache",
        &cache(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let want = format!(
        "{}:{line}: debian.packages: unknown package \"no-such-package-trellis\"",
        m.display()
    );
    assert!(stderr.contains(&want), "{want:?} not in:\n{stderr}");
    assert_eq!(commit_objects(&repo), 0);
    assert!(run_ok(&mut trellis(&["refs", "--repo", &repo.to_string_lossy()])).is_empty());
    // The work directory went with the failure.
    let tmp = sh(&format!("ls -A {}/tmp", repo.display()));
    assert!(!tmp.contains("compose-"), "{tmp}");
}

#[test]
fn a_missing_tool_is_reported_with_its_package() {
    let w = workdir();
    let repo = w.path().join("repo");
    init_archive(&repo);
    let out = run_raw(
        trellis(&[
            "compose",
            &example().to_string_lossy(),
            "--repo",
            &repo.to_string_lossy(),
            "--cache",
            &w.path().join("cache").to_string_lossy(),
        ])
        .env("PATH", w.path()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("mmdebstrap is not installed (install the Debian package mmdebstrap"),
        "{stderr}"
    );
    assert_eq!(commit_objects(&repo), 0);
}

#[test]
fn manifest_errors_stop_before_any_work() {
    let w = workdir();
    let repo = w.path().join("repo");
    init_archive(&repo);
    let m = w.path().join("m.toml");
    std::fs::write(
        &m,
        "[os]\nname = \"debian\"\nref = \"debian/bookworm/amd64\"\n\n[debian]\nsuite = \"bookworm\"\n\
         packages = [\"systemd\"]\n",
    )
    .unwrap();
    let out = run_raw(&mut trellis(&[
        "compose",
        &m.to_string_lossy(),
        "--repo",
        &repo.to_string_lossy(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:7: debian.packages: no kernel", m.display())),
        "{stderr}"
    );
}
