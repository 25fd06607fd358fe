//! The booted-device commands: `trellis admin upgrade` from a `trellis serve` remote with
//! signed commits, `admin finalize` writing boot entries (and systemd-boot entries with
//! boot counting), `admin status` on a booted system, faults (a refused signature, a
//! downgrade, too little space, a full disk, kills at every stage), and `trellis
//! prepare-root` in a private mount namespace.
//!
//! A "booted system" is a sysroot in /dev/shm with the running system's state faked by the
//! hidden `--host-root` (the booted deployment's directory: the same device and inode as
//! `/` on a real device), `--host-run` (a /run with ostree-booted) and `--host-cmdline`.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const KVER: &str = "6.1.0-test";
const OS: &str = "testos";
const REF: &str = "testos/stable";
/// Commit timestamps: version N is committed at BASE_TIME + N hours.
const BASE_TIME: u64 = 1_700_000_000;

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn write(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// Clear the immutable flag of deployments under `root`, so that the temp dir can go.
fn unseal(root: &Path) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg("find \"$1\" -path '*/ostree/deploy/*/deploy/*' -maxdepth 8 -type d -prune -exec chattr -i {} + 2>/dev/null; true")
        .arg("sh")
        .arg(root)
        .status();
}

/// A small OS tree as trellis composes them; `kernel` is the vmlinuz content.
fn os_tree(root: &Path, version: &str, kernel: &str) {
    let m = root.join("usr/lib/modules").join(KVER);
    write(&m.join("vmlinuz"), kernel);
    write(&m.join("initramfs.img"), "INITRD");
    write(
        &root.join("usr/lib/os-release"),
        "PRETTY_NAME=\"Trellis Test OS\"\nID=testos\n",
    );
    write(&root.join("usr/etc/hostname"), "device\n");
    write(&root.join("usr/etc/motd"), "welcome\n");
    write(
        &root.join("usr/bin/hello"),
        &format!("#!/bin/sh\necho version {version}\n"),
    );
    for d in ["var", "sysroot", "boot", "dev", "proc", "sys", "run", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::os::unix::fs::symlink("sysroot/ostree", root.join("ostree")).expect("symlink");
}

/// `trellis serve` on a free port, stopped when dropped.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(repo: &Path) -> Served {
        let mut child = trellis(&["serve", "--bind", "127.0.0.1:0", "--repo", p(repo)])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start trellis serve");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr pipe"));
        let mut first = String::new();
        stderr.read_line(&mut first).expect("read serve banner");
        let url = first
            .trim()
            .split(" at ")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected banner from trellis serve: {first:?}"))
            .trim_end_matches('/')
            .to_string();
        // Keep draining stderr so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A build server (an archive repo served over HTTP, commits signed with `key`) and a
/// device (a sysroot with an ESP, the remote configured with the trusted key, version 1.0
/// deployed and booted).
struct Device {
    tmp: tempfile::TempDir,
    src: PathBuf,
    sysroot: PathBuf,
    run: PathBuf,
    cmdline: PathBuf,
    /// The booted deployment's directory (the fake running root).
    booted: PathBuf,
    key: PathBuf,
    /// Kept for its lifetime: the server stops when the device goes.
    _server: Served,
    c1: String,
}

impl Drop for Device {
    fn drop(&mut self) {
        unseal(self.tmp.path());
    }
}

impl Device {
    fn new() -> Device {
        let tmp = tempfile::tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
        let sysroot = tmp.path().join("sysroot");
        Device::with_sysroot(tmp, sysroot)
    }

    /// A device whose sysroot is at `sysroot` (e.g. on a small file system).
    fn with_sysroot(tmp: tempfile::TempDir, sysroot: PathBuf) -> Device {
        let key = tmp.path().join("k1");
        let public = run_ok(&mut trellis(&["keygen", "-o", p(&key)]));
        let src = tmp.path().join("src");
        init_repo(&src, "archive");
        let server = Served::start(&src);
        run_ok(&mut trellis(&["admin", "init-fs", p(&sysroot)]));
        run_ok(&mut trellis(&[
            "admin",
            "--sysroot",
            p(&sysroot),
            "os-init",
            OS,
        ]));
        let repo = sysroot.join("ostree/repo");
        run_ok(&mut trellis(&[
            "remote",
            "add",
            "--repo",
            p(&repo),
            "--sign-verify-key",
            public.trim(),
            "origin",
            &server.url,
        ]));
        let mut cfg = read(&repo.join("config"));
        cfg.push_str("\n[sysroot]\nesp=efi\nboot-counting-tries=3\n");
        write(&repo.join("config"), &cfg);
        let run = tmp.path().join("run");
        let cmdline = tmp.path().join("cmdline");
        let mut d = Device {
            tmp,
            src,
            sysroot,
            run,
            cmdline,
            booted: PathBuf::new(),
            key,
            _server: server,
            c1: String::new(),
        };
        d.c1 = d.publish("1.0", 1, "KERNEL1", |_| {});
        run_ok(&mut trellis(&["pull", "--repo", p(&repo), "origin", REF]));
        run_ok(&mut trellis(&[
            "admin",
            "--sysroot",
            p(&d.sysroot),
            "deploy",
            "--karg",
            "rw",
            &format!("origin:{REF}"),
        ]));
        // The image's first boot went well: systemd-bless-boot dropped the counter.
        let entries = d.esp_entries_dir();
        std::fs::rename(
            entries.join("trellis-testos-1+3.conf"),
            entries.join("trellis-testos-1.conf"),
        )
        .expect("bless the first entry");
        let c1 = d.c1.clone();
        d.boot(&c1);
        d
    }

    fn repo(&self) -> PathBuf {
        self.sysroot.join("ostree/repo")
    }

    fn esp_entries_dir(&self) -> PathBuf {
        self.sysroot.join("efi/loader/entries")
    }

    fn deploy_dir(&self, csum: &str, serial: u32) -> PathBuf {
        self.sysroot
            .join(format!("ostree/deploy/{OS}/deploy/{csum}.{serial}"))
    }

    /// Commit version `v` (at BASE_TIME + `hour` hours) to the served repo, signed with
    /// the device's trusted key.
    fn publish(&self, v: &str, hour: u64, kernel: &str, edit: impl Fn(&Path)) -> String {
        self.publish_signed(v, hour, kernel, &self.key, edit)
    }

    fn publish_signed(
        &self,
        v: &str,
        hour: u64,
        kernel: &str,
        key: &Path,
        edit: impl Fn(&Path),
    ) -> String {
        let tree = self.tmp.path().join(format!("tree-{v}"));
        let _ = std::fs::remove_dir_all(&tree);
        os_tree(&tree, v, kernel);
        edit(&tree);
        let ts = (BASE_TIME + hour * 3600).to_string();
        commit_dir(
            p(&self.src),
            REF,
            &tree,
            &[
                "--version",
                v,
                "-s",
                &format!("version {v}"),
                "--timestamp",
                &ts,
                "--sign-key",
                p(key),
            ],
        )
    }

    /// "Reboot" into the deployment of commit `csum`: a fresh /run with only the marker,
    /// the fake root its directory, the command line its boot entry's.
    fn boot(&mut self, csum: &str) {
        let _ = std::fs::remove_dir_all(&self.run);
        write(&self.run.join("ostree-booted"), "");
        // The sysroot as it is on disk, before anything is booted.
        let st: Value = serde_json::from_str(&run_ok(&mut trellis(&[
            "admin",
            "--sysroot",
            p(&self.sysroot),
            "status",
            "--json",
        ])))
        .expect("status JSON");
        let d = st["deployments"]
            .as_array()
            .expect("deployments")
            .iter()
            .find(|d| d["checksum"] == csum)
            .unwrap_or_else(|| panic!("no deployment of {csum} to boot: {st}"));
        self.booted = PathBuf::from(d["path"].as_str().expect("path"));
        let entries = self.sysroot.join("boot/loader/entries");
        let options = list(&entries)
            .iter()
            .map(|n| read(&entries.join(n)))
            .find_map(|text| {
                let opts = text.lines().find_map(|l| l.strip_prefix("options "))?;
                let link = opts.split(' ').find_map(|a| a.strip_prefix("ostree="))?;
                let target =
                    std::fs::read_link(self.sysroot.join(link.trim_start_matches('/'))).ok()?;
                target
                    .to_string_lossy()
                    .contains(csum)
                    .then(|| opts.to_string())
            })
            .unwrap_or_else(|| panic!("no boot entry for {csum}"));
        write(&self.cmdline, &format!("{options}\n"));
    }

    fn admin_cmd(&self, args: &[&str]) -> Command {
        let mut c = trellis(&[
            "admin",
            "--sysroot",
            p(&self.sysroot),
            "--host-root",
            p(&self.booted),
            "--host-run",
            p(&self.run),
            "--host-cmdline",
            p(&self.cmdline),
        ]);
        c.args(args);
        c
    }

    fn admin(&self, args: &[&str]) -> String {
        run_ok(&mut self.admin_cmd(args))
    }

    fn admin_raw(&self, args: &[&str]) -> Output {
        run_raw(&mut self.admin_cmd(args))
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.admin(&["status", "--json"])).expect("status JSON")
    }

    fn upgrade_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["upgrade", "--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.admin(&a)).expect("upgrade JSON")
    }

    /// The remote ref in the device's repo.
    fn origin_ref(&self) -> String {
        read(&self.repo().join(format!("refs/remotes/origin/{REF}")))
            .trim()
            .to_string()
    }

    fn has_commit(&self, csum: &str) -> bool {
        self.repo()
            .join(format!("objects/{}/{}.commit", &csum[..2], &csum[2..]))
            .exists()
    }

    /// Every object file, ref and partial marker of the device's repo (with the ref's
    /// commit), and the deployments, for "nothing was written" checks. (Empty fan-out
    /// directories a prune leaves behind are not counted.)
    fn snapshot(&self) -> Vec<String> {
        let out = sh(&format!(
            "cd {} && {{ find ostree/repo/objects ostree/repo/refs ostree/repo/state ! -type d -printf '%p %s\\n'; \
             find ostree/deploy/{OS}/deploy -mindepth 1 -maxdepth 1; \
             cat ostree/repo/refs/remotes/origin/{REF}; ls {}/ostree 2>/dev/null || true; }} | sort",
            p(&self.sysroot),
            p(&self.run),
        ));
        out.lines().map(str::to_string).collect()
    }
}

/// (role, checksum) of each deployment in `admin status --json`.
fn roles(st: &Value) -> Vec<(String, String)> {
    st["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| {
            (
                d["role"].as_str().unwrap_or("-").to_string(),
                d["checksum"].as_str().expect("checksum").to_string(),
            )
        })
        .collect()
}

/// The commits `ostree admin status` lists, in order.
fn ostree_order(sysroot: &Path) -> Vec<String> {
    let text = run_ok(&mut ostree(&[
        "admin",
        "status",
        &format!("--sysroot={}", sysroot.display()),
    ]));
    text.lines()
        .filter_map(|l| {
            l.trim_start_matches(['*', ' '])
                .strip_prefix(&format!("{OS} "))
        })
        .map(|rest| rest.split('.').next().unwrap_or_default().to_string())
        .collect()
}

fn role(r: &str, c: &str) -> (String, String) {
    (r.to_string(), c.to_string())
}

#[test]
fn upgrade_stages_and_finalize_writes_the_boot_entries() {
    let mut dev = Device::new();
    let c1 = dev.c1.clone();
    // The booted deployment is marked, in text and JSON.
    assert_eq!(roles(&dev.status()), [role("booted", &c1)]);
    let text = dev.admin(&["status"]);
    assert!(
        text.starts_with(&format!("* {OS} {c1}.0 (booted)")),
        "{text}"
    );

    // Nothing new on the server.
    let out = dev.admin_raw(&["upgrade", "--check"]);
    assert_eq!(out.status.code(), Some(77), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).starts_with("no update"),
        "{}",
        stdout_of(&out)
    );
    let out = dev.admin_raw(&["upgrade"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).starts_with("no update"),
        "{}",
        stdout_of(&out)
    );

    // Version 2.0 with a new kernel: --check sees it and writes nothing.
    let c2 = dev.publish("2.0", 2, "KERNEL2", |_| {});
    let before = dev.snapshot();
    let out = dev.admin_raw(&["upgrade", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        stdout_of(&out).starts_with(&format!("update available: origin:{REF} is at 2.0 ({c2})")),
        "{}",
        stdout_of(&out)
    );
    let j = dev.upgrade_json(&["--check"]);
    assert_eq!(j["update_available"], true);
    assert_eq!(j["action"], "available");
    assert_eq!(j["checksum"], c2.as_str());
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.origin_ref(), c1);
    assert!(!dev.run.join("ostree/staged-deployment").exists());

    // The upgrade stages it; the admin's /etc change made afterwards is carried over at
    // finalization.
    let j = dev.upgrade_json(&[]);
    assert_eq!(j["action"], "staged", "{j}");
    assert_eq!(j["checksum"], c2.as_str());
    assert_eq!(j["version"], "2.0");
    assert_eq!(j["deployment"], format!("{c2}.0"));
    assert_eq!(j["from"]["checksum"], c1.as_str());
    let bytes = j["bytes_downloaded"].as_u64().expect("bytes");
    assert!(bytes > 0, "{j}");
    assert!(j["objects_fetched"].as_u64().expect("objects") > 0, "{j}");
    assert!(j["space"]["needed"].as_u64().expect("needed") > 0, "{j}");
    assert_eq!(dev.origin_ref(), c2);
    assert!(dev.run.join("ostree/staged-deployment").is_file());
    assert_eq!(
        roles(&dev.status()),
        [role("staged", &c2), role("booted", &c1)]
    );
    // The staged deployment is not a boot entry yet, on the sysroot nor on the ESP.
    assert_eq!(ostree_order(&dev.sysroot), std::slice::from_ref(&c1));
    assert_eq!(list(&dev.esp_entries_dir()), ["trellis-testos-1.conf"]);
    write(&dev.booted.join("etc/motd"), "changed by the admin\n");

    // Running it again changes nothing.
    let j = dev.upgrade_json(&[]);
    assert_eq!(j["action"], "no-update", "{j}");
    let out = dev.admin_raw(&["upgrade", "--check"]);
    assert_eq!(out.status.code(), Some(77));

    // Finalize, as at shutdown.
    let out = dev.admin(&["finalize"]);
    assert!(out.contains(&format!("Finalized {OS} {c2}.0")), "{out}");
    assert_eq!(
        roles(&dev.status()),
        [role("pending", &c2), role("booted", &c1)]
    );
    assert!(!dev.run.join("ostree/staged-deployment").exists());
    assert_eq!(
        read(&dev.deploy_dir(&c2, 0).join("etc/motd")),
        "changed by the admin\n"
    );
    assert_eq!(ostree_order(&dev.sysroot), [c2.clone(), c1.clone()]);
    // The new entry has all its tries; the blessed one stays blessed.
    let entries = dev.esp_entries_dir();
    assert_eq!(
        list(&entries),
        ["trellis-testos-1.conf", "trellis-testos-2+3.conf"]
    );
    let new = read(&entries.join("trellis-testos-2+3.conf"));
    assert!(
        new.starts_with(&format!("# trellis-deployment {OS} {c2}.0\n")),
        "{new}"
    );
    assert!(new.contains("title Trellis Test OS 2.0"), "{new}");
    assert!(new.contains("options rw ostree=/ostree/boot."), "{new}");
    let bootcsum2 = trellis_store::Checksum::of(b"KERNEL2INITRD").to_hex();
    assert!(
        new.contains(&format!("linux /trellis/{OS}-{bootcsum2}/vmlinuz-{KVER}")),
        "{new}"
    );
    assert_eq!(
        read(
            &dev.sysroot
                .join(format!("efi/trellis/{OS}-{bootcsum2}/vmlinuz-{KVER}"))
        ),
        "KERNEL2"
    );
    assert_eq!(list(&dev.sysroot.join("boot/loader/entries")).len(), 2);
    // Nothing left to finalize: quiet success.
    assert_eq!(dev.admin(&["finalize"]), "");

    // Reboot into 2.0: it is booted, and up to date.
    dev.boot(&c2);
    assert_eq!(
        roles(&dev.status()),
        [role("booted", &c2), role("rollback", &c1)]
    );
    assert_eq!(dev.upgrade_json(&[])["action"], "no-update");
}

#[test]
fn a_commit_signed_by_another_key_is_refused_and_leaves_nothing() {
    let dev = Device::new();
    let other = dev.tmp.path().join("k2");
    run_ok(&mut trellis(&["keygen", "-o", p(&other)]));
    let bad = dev.publish_signed("2.0", 2, "KERNEL1", &other, |_| {});
    let before = dev.snapshot();
    for args in [&["upgrade"][..], &["upgrade", "--check"]] {
        let out = dev.admin_raw(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr_of(&out);
        assert!(err.contains(&format!("commit {bad} refused")), "{err}");
        assert!(err.contains("signature"), "{err}");
        assert_eq!(dev.snapshot(), before, "{args:?} wrote something");
        assert_eq!(dev.origin_ref(), dev.c1);
        assert!(!dev.has_commit(&bad));
        assert!(!dev.run.join("ostree/staged-deployment").exists());
    }
    // A good commit after it goes through.
    let good = dev.publish("3.0", 3, "KERNEL1", |_| {});
    assert_eq!(dev.upgrade_json(&[])["checksum"], good.as_str());
}

#[test]
fn an_older_commit_is_not_a_downgrade_target_unless_allowed() {
    let dev = Device::new();
    // The server's ref moves to a commit made before the booted one.
    let old = dev.publish("0.9", 0, "KERNEL1", |_| {});
    let before = dev.snapshot();
    let out = dev.admin_raw(&["upgrade"]);
    assert!(!out.status.success());
    let err = stderr_of(&out);
    assert!(err.contains("refusing to downgrade"), "{err}");
    assert!(err.contains("--allow-downgrade"), "{err}");
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.origin_ref(), dev.c1);
    let j = dev.upgrade_json(&["--allow-downgrade"]);
    assert_eq!(j["action"], "staged");
    assert_eq!(j["checksum"], old.as_str());
}

#[test]
fn a_sysroot_that_is_not_running_gets_the_update_deployed_at_once() {
    let dev = Device::new();
    let c2 = dev.publish("2.0", 2, "KERNEL1", |_| {});
    // Without the host stand-ins this is a sysroot being worked on, not a running system.
    let out = run_ok(&mut trellis(&[
        "admin",
        "--sysroot",
        p(&dev.sysroot),
        "upgrade",
    ]));
    assert!(out.contains(&format!("Deployed {OS} {c2}.0")), "{out}");
    assert_eq!(ostree_order(&dev.sysroot), [c2, dev.c1.clone()]);
    // --reboot makes no sense there.
    let out = run_raw(&mut trellis(&[
        "admin",
        "--sysroot",
        p(&dev.sysroot),
        "upgrade",
        "--reboot",
    ]));
    assert!(!out.status.success());
    assert!(
        stderr_of(&out).contains("--reboot needs a booted"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn without_sysroot_an_unbooted_machine_is_told_to_give_one() {
    assert!(!Path::new("/run/ostree-booted").exists());
    for args in [
        &["admin", "status"][..],
        &["admin", "upgrade"],
        &["admin", "finalize"],
    ] {
        let out = run_raw(&mut trellis(args));
        assert!(!out.status.success(), "{args:?}");
        let err = stderr_of(&out);
        assert!(err.contains("not a booted trellis system"), "{err}");
        assert!(err.contains("--sysroot DIR"), "{err}");
    }
}

/// A tmpfs of `size` on a temporary directory, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(dir: PathBuf, size: &str) -> SmallFs {
        std::fs::create_dir_all(&dir).expect("mkdir");
        run_ok(Command::new("mount").args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "tmpfs",
            p(&dir),
        ]));
        SmallFs { dir }
    }

    fn free(&self) -> u64 {
        sh(&format!("df --output=avail -B1 {} | tail -1", p(&self.dir)))
            .trim()
            .parse()
            .expect("df")
    }

    /// Fill the file system up to `leave` bytes free.
    fn fill(&self, leave: u64) -> PathBuf {
        let f = self.dir.join("fill");
        let n = self.free().saturating_sub(leave);
        run_ok(Command::new("fallocate").args(["-l", &n.to_string(), p(&f)]));
        f
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        unseal(&self.dir);
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn too_little_space_is_refused_before_anything_is_written() {
    // Dropped in reverse order: the device, then the file system, then its mount point.
    let fs_dir = tempfile::tempdir_in("/dev/shm").expect("temp dir");
    let fs = SmallFs::mount(fs_dir.path().join("small"), "32m");
    let tmp = tempfile::tempdir_in("/dev/shm").expect("temp dir");
    let dev = Device::with_sysroot(tmp, fs.dir.join("sysroot"));
    let c2 = dev.publish("2.0", 2, "KERNEL2", |_| {});
    let fill = fs.fill(256 * 1024);
    let before = dev.snapshot();
    let out = dev.admin_raw(&["upgrade"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.contains("not enough space"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    assert!(err.contains(&c2), "{err}");
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.origin_ref(), dev.c1);
    assert!(!dev.run.join("ostree/staged-deployment").exists());

    // With the space back, the same upgrade goes through.
    std::fs::remove_file(fill).expect("rm fill");
    assert_eq!(dev.upgrade_json(&[])["action"], "staged");
}

#[test]
fn a_disk_that_fills_up_during_the_download_is_left_as_it_was() {
    // Dropped in reverse order: the device, then the file system, then its mount point.
    let fs_dir = tempfile::tempdir_in("/dev/shm").expect("temp dir");
    let fs = SmallFs::mount(fs_dir.path().join("small"), "32m");
    let tmp = tempfile::tempdir_in("/dev/shm").expect("temp dir");
    let dev = Device::with_sysroot(tmp, fs.dir.join("sysroot"));
    // 6 MB of new content, on a disk with 4 MB free: enough for the check (the commit
    // does not say how much it brings), not for the download.
    let c2 = dev.publish("2.0", 2, "KERNEL1", |t| {
        let mut data = Vec::new();
        let mut x: u64 = 1;
        for _ in 0..(6 << 20) / 8 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        std::fs::write(t.join("usr/share-big"), data).expect("write big");
    });
    let fill = fs.fill(4 << 20);
    let before = dev.snapshot();
    let out = dev.admin_raw(&["upgrade"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout_of(&out));
    let err = stderr_of(&out);
    assert!(err.contains("filled up while downloading"), "{err}");
    assert!(err.contains("the disk is as before"), "{err}");
    assert_eq!(dev.snapshot(), before);
    assert_eq!(dev.origin_ref(), dev.c1);
    assert!(fs.free() >= (4 << 20) - (64 << 10), "{} free", fs.free());

    std::fs::remove_file(fill).expect("rm fill");
    let j = dev.upgrade_json(&[]);
    assert_eq!(j["action"], "staged");
    assert_eq!(j["checksum"], c2.as_str());
}

/// Start `cmd` and kill it (SIGKILL) after `us` microseconds.
fn kill_after(mut cmd: Command, us: u64) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_micros(us));
    let _ = child.kill();
    let _ = child.wait();
}

/// Whatever the interruption, the sysroot is one both tools read, whose default boot
/// entry is one of `ok` and complete on disk, with ESP entries for existing kernels.
fn assert_bootable(dev: &Device, ok: &[&str], when: &str) -> String {
    let st = dev.status();
    let entries: Vec<&Value> = st["deployments"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|d| d["staged"] == false)
        .collect();
    assert!(!entries.is_empty(), "{when}: no deployments");
    for d in &entries {
        let c = d["checksum"].as_str().expect("checksum");
        assert!(ok.contains(&c), "{when}: unknown {c}");
        let dir = PathBuf::from(d["path"].as_str().expect("path"));
        assert!(
            dir.join("usr/bin/hello").is_file(),
            "{when}: {}",
            dir.display()
        );
        assert!(
            dir.join("etc/hostname").is_file(),
            "{when}: {}",
            dir.display()
        );
    }
    let order: Vec<String> = entries
        .iter()
        .map(|d| d["checksum"].as_str().expect("checksum").to_string())
        .collect();
    assert_eq!(ostree_order(&dev.sysroot), order, "{when}");
    let esp = dev.sysroot.join("efi");
    for name in list(&dev.esp_entries_dir()) {
        let text = read(&dev.esp_entries_dir().join(&name));
        for l in text.lines() {
            if let Some(f) = l
                .strip_prefix("linux ")
                .or_else(|| l.strip_prefix("initrd "))
            {
                assert!(
                    esp.join(f.trim_start_matches('/')).is_file(),
                    "{when}: {name}: {f}"
                );
            }
            if let Some(o) = l.strip_prefix("options ") {
                let link = o
                    .split(' ')
                    .find_map(|a| a.strip_prefix("ostree="))
                    .expect("ostree=");
                let target = dev.sysroot.join(link.trim_start_matches('/'));
                assert!(
                    target.join("usr/bin/hello").is_file(),
                    "{when}: {name}: {link}"
                );
            }
        }
    }
    order[0].clone()
}

#[test]
fn killed_upgrades_and_finalizations_leave_a_bootable_system_and_retries_succeed() {
    let mut dev = Device::new();
    let c1 = dev.c1.clone();
    let many = |t: &Path| {
        for i in 0..3000 {
            write(
                &t.join(format!("usr/share/data/{}/{i}", i % 30)),
                &format!("2.0 {i}\n"),
            );
        }
    };
    // A kernel large enough that copying it to the ESP takes a while.
    let kernel = "K".repeat(8 << 20);
    let c2 = dev.publish("2.0", 2, &kernel, many);
    // An upgrade takes some 800 ms here (debug build, 3000 files): kill it while it
    // downloads and while it stages.
    for ms in [5, 30, 80, 150, 300, 500, 650, 800, 1000, 1200] {
        kill_after(dev.admin_cmd(&["upgrade"]), ms * 1000);
        let when = format!("upgrade killed after {ms} ms");
        assert_eq!(assert_bootable(&dev, &[&c1], &when), c1, "{when}");
        assert_eq!(
            roles(&dev.status()).last(),
            Some(&role("booted", &c1)),
            "{when}"
        );
    }
    let j = dev.upgrade_json(&[]);
    assert!(j["action"] == "staged" || j["action"] == "no-update", "{j}");
    assert_eq!(roles(&dev.status())[0], role("staged", &c2));

    // Kill the finalization (at shutdown, the machine losing power) all along the way: it
    // takes a few ms. Each time the machine reboots into its default entry; when that is
    // the new one, a newer one is published; the upgrade is retried and staged again.
    let mut known = vec![c1.clone(), c2.clone()];
    let mut target = c2.clone();
    let (mut kept, mut switched) = (0, 0);
    let delays = (0..2000).step_by(100).chain((2000..=20_000).step_by(1000));
    for (i, us) in delays.enumerate() {
        kill_after(dev.admin_cmd(&["finalize"]), us);
        let when = format!("finalize killed after {us} µs");
        let ok: Vec<&str> = known.iter().map(String::as_str).collect();
        let default = assert_bootable(&dev, &ok, &when);
        dev.boot(&default);
        if default == target {
            switched += 1;
            let v = format!("{}.0", i + 3);
            target = dev.publish(&v, i as u64 + 3, &kernel, |_| {});
            known.push(target.clone());
        } else {
            kept += 1;
        }
        let j = dev.upgrade_json(&[]);
        assert_eq!(j["action"], "staged", "{when}: {j}");
        assert_eq!(j["checksum"], target.as_str(), "{when}");
    }
    // Both sides of the switch were hit.
    assert!(kept > 0 && switched > 0, "kept {kept}, switched {switched}");
    // The last finalization completes.
    dev.admin(&["finalize"]);
    let ok: Vec<&str> = known.iter().map(String::as_str).collect();
    assert_eq!(assert_bootable(&dev, &ok, "at the end"), target);
    dev.boot(&target);
    assert_eq!(dev.upgrade_json(&[])["action"], "no-update");
    dev.admin(&["cleanup"]);
    run_ok(&mut ostree(&[
        "fsck",
        &format!("--repo={}", p(&dev.repo())),
    ]));
}

/// Run `script` (sh -eu, with the arguments) in a private mount namespace.
fn in_namespace(script: &str, args: &[&str]) -> Output {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-euc", script, "sh"])
        .args(args);
    run_raw(&mut c)
}

#[test]
fn prepare_root_mounts_the_deployment_in_a_namespace() {
    let dev = Device::new();
    let root = dev.tmp.path().join("rootmnt");
    std::fs::create_dir(&root).expect("mkdir");
    let deployment = dev.booted.clone();
    let run = dev.tmp.path().join("initrd-run");
    // As initramfs-tools does: the physical root mounted at $rootmnt, then prepare-root,
    // then what the booted system sees.
    let script = r#"
        ROOT=$1 SYSROOT=$2 CMDLINE=$3 RUN=$4 TRELLIS=$5
        mount --bind "$SYSROOT" "$ROOT"
        "$TRELLIS" prepare-root --cmdline "$CMDLINE" --run "$RUN" "$ROOT"
        echo "root $(stat -c %d:%i "$ROOT")"
        findmnt -rn -o TARGET,FSROOT,OPTIONS | awk -v r="$ROOT" 'index($1, r) == 1 { print "mount " $0 }'
        if touch "$ROOT/usr/probe" 2>/dev/null; then echo "usr writable"; else echo "usr read-only"; fi
        echo var > "$ROOT/var/probe"
        echo etc > "$ROOT/etc/probe"
        ls "$ROOT/sysroot/ostree/deploy"
        test -L "$ROOT/ostree" && ls "$ROOT/ostree/deploy"
        test -L "$ROOT/boot/loader" && echo "boot has the entries"
        echo "status $("$TRELLIS" admin --sysroot "$ROOT/sysroot" --host-root "$ROOT" --host-run "$RUN" --host-cmdline "$CMDLINE" status --json | tr -d '\n ')"
    "#;
    let out = in_namespace(
        script,
        &[
            p(&root),
            p(&dev.sysroot),
            p(&dev.cmdline),
            p(&run),
            trellis_bin(),
        ],
    );
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}\n{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(&format!("trellis prepare-root: booting {OS} {}.0", dev.c1)),
        "{}",
        stderr_of(&out)
    );
    // The root is the deployment directory itself.
    let want = sh(&format!("stat -c %d:%i {}", p(&deployment)));
    assert!(text.contains(&format!("root {want}\n")), "{text}");
    let mounts: Vec<(&str, &str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("mount "))
        .map(|l| {
            let mut f = l.split(' ');
            (
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
                f.next().unwrap_or_default(),
            )
        })
        .collect();
    let find = |target: &Path, fsroot_end: &str| {
        mounts
            .iter()
            .find(|(t, f, _)| Path::new(t) == target && f.ends_with(fsroot_end))
            .unwrap_or_else(|| {
                panic!(
                    "no mount of *{fsroot_end} at {}: {mounts:?}",
                    target.display()
                )
            })
            .2
    };
    let rel = deployment
        .strip_prefix(&dev.sysroot)
        .expect("deployment in sysroot")
        .to_str()
        .expect("utf-8");
    assert!(find(&root, rel).starts_with("rw"));
    assert!(find(&root.join("usr"), &format!("{rel}/usr")).starts_with("ro"));
    assert!(find(&root.join("var"), &format!("ostree/deploy/{OS}/var")).starts_with("rw"));
    assert!(find(&root.join("sysroot"), "/sysroot").starts_with("rw"));
    assert!(find(&root.join("boot"), "/sysroot/boot").starts_with("rw"));
    assert!(text.contains("usr read-only"), "{text}");
    assert!(text.contains("boot has the entries"), "{text}");
    // /var is the stateroot's, /etc the deployment's own.
    assert_eq!(
        read(&dev.sysroot.join(format!("ostree/deploy/{OS}/var/probe"))),
        "var\n"
    );
    assert_eq!(read(&deployment.join("etc/probe")), "etc\n");
    assert!(run.join("ostree-booted").is_file());
    // Status, run the way the booted system runs it, marks the booted deployment.
    let status = text
        .lines()
        .find_map(|l| l.strip_prefix("status "))
        .expect("status line");
    let st: Value = serde_json::from_str(status).expect("status JSON");
    assert_eq!(roles(&st), [role("booted", &dev.c1)]);
    assert_eq!(st["booted_system"], true);
    // Nothing of it leaked out of the namespace.
    assert!(list(&root).is_empty(), "{:?}", list(&root));
}

#[test]
fn prepare_root_says_what_is_wrong_and_fixes_a_read_only_root() {
    let dev = Device::new();
    let root = dev.tmp.path().join("rootmnt");
    std::fs::create_dir(&root).expect("mkdir");
    let run = dev.tmp.path().join("initrd-run");
    let cmdline = read(&dev.cmdline);
    let cmdfile = |name: &str, text: &str| {
        let f = dev.tmp.path().join(name);
        write(&f, text);
        f
    };
    let rel = dev
        .booted
        .strip_prefix(&dev.sysroot)
        .expect("deployment in sysroot")
        .to_str()
        .expect("utf-8")
        .to_string();
    let no_arg = cmdfile("c-none", "root=/dev/vda2 rw quiet\n");
    let stale = cmdfile(
        "c-stale",
        &cmdline.replace("ostree=/ostree/boot.", "ostree=/ostree/boot.x"),
    );
    let missing = cmdfile(
        "c-missing",
        &format!("rw ostree=/ostree/boot.0/{OS}/{}/0\n", "0".repeat(64)),
    );
    let good = cmdfile("c-good", &cmdline);
    // The physical root is a copy on a tmpfs of the namespace's own, so that it can be made
    // read-only and have parts removed.
    let script = r#"
        ROOT=$1 SYSROOT=$2 RUN=$3 TRELLIS=$4 NOARG=$5 STALE=$6 MISSING=$7 GOOD=$8 REL=$9
        mount -t tmpfs -o size=64m tmpfs "$ROOT"
        cp -a "$SYSROOT/." "$ROOT/"
        try() { if "$TRELLIS" prepare-root --run "$RUN" --cmdline "$1" "$ROOT" 2>&1; then echo "ok"; else echo "exit $?"; fi; }
        echo "== noarg"; try "$NOARG"
        echo "== stale"; try "$STALE"
        echo "== missing"; try "$MISSING"
        rmdir "$ROOT/$REL/sysroot"
        echo "== nosysroot"; try "$GOOD"
        if test -e "$RUN/ostree-booted"; then echo "marker too early"; fi
        mkdir "$ROOT/$REL/sysroot"
        mount -o remount,ro "$ROOT"
        echo "== readonly"; try "$GOOD"
        touch "$ROOT/sysroot/probe" && echo "sysroot writable"
        test -f "$RUN/ostree-booted" && echo "marker written"
    "#;
    let out = in_namespace(
        script,
        &[
            p(&root),
            p(&dev.sysroot),
            p(&run),
            trellis_bin(),
            p(&no_arg),
            p(&stale),
            p(&missing),
            p(&good),
            &rel,
        ],
    );
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text}\n{}", stderr_of(&out));
    let section = |name: &str| -> String {
        text.split(&format!("== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("== ").next())
            .unwrap_or_else(|| panic!("no section {name}: {text}"))
            .to_string()
    };
    let one_error_line = |s: &str, needle: &str| {
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].starts_with("trellis prepare-root: error: "), "{s}");
        assert!(lines[0].contains(needle), "{s}");
        assert_eq!(lines[1], "exit 1", "{s}");
    };
    one_error_line(
        &section("noarg"),
        "no ostree= argument on the kernel command line",
    );
    one_error_line(&section("stale"), "malformed");
    one_error_line(
        &section("missing"),
        "does not exist in the root file system",
    );
    one_error_line(&section("nosysroot"), "no empty /sysroot directory");
    let ro = section("readonly");
    assert!(
        ro.contains("was read-only; remounted it read-write"),
        "{ro}"
    );
    assert!(ro.contains(&format!("booting {OS} {}.0", dev.c1)), "{ro}");
    assert!(ro.contains("\nok\n"), "{ro}");
    assert!(text.contains("sysroot writable"), "{text}");
    assert!(text.contains("marker written"), "{text}");
    // Failed attempts do not mark the system as booted.
    assert!(!text.contains("marker too early"), "{text}");
    assert!(list(&root).is_empty(), "{:?}", list(&root));
}
