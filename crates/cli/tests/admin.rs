//! `trellis admin` against the real `ostree admin`: the sysroot layout item by item (spec
//! §7), `ostree admin status` listing what trellis deploys, the /etc three-way merge,
//! rollback, cleanup with a clean fsck, kernel arguments, systemd-boot entries with boot
//! counting on an ESP, the space check on a small tmpfs, and deployments made by each
//! tool on top of the other's sysroot.
//!
//! Sysroots live in /dev/shm: `ostree admin deploy` freezes and thaws the file system
//! holding /boot, which must not be the host's root.

mod common;
use common::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const KVER: &str = "6.1.0-test";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// A temporary sysroot; deployments are sealed with the immutable flag, so it is cleared
/// before the directory is removed.
struct Sr {
    tmp: tempfile::TempDir,
    path: PathBuf,
}

impl Drop for Sr {
    fn drop(&mut self) {
        unseal(self.tmp.path());
    }
}

fn unseal(root: &Path) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg("for d in \"$1\"/*/ostree/deploy/*/deploy/*/ \"$1\"/ostree/deploy/*/deploy/*/; do [ -d \"$d\" ] && chattr -i \"$d\"; done; true")
        .arg("sh")
        .arg(root)
        .status();
}

impl Sr {
    fn new() -> Sr {
        let tmp = tempfile::tempdir_in("/dev/shm").expect("temp dir in /dev/shm");
        let path = tmp.path().join("sysroot");
        Sr { tmp, path }
    }

    /// A sysroot made by `trellis admin init-fs` and `os-init testos`.
    fn trellis() -> Sr {
        let sr = Sr::new();
        run_ok(&mut trellis(&["admin", "init-fs", p(&sr.path)]));
        sr.admin(&["os-init", "testos"]);
        sr
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn repo(&self) -> String {
        p(&self.path.join("ostree/repo")).to_string()
    }

    fn admin_cmd(&self, args: &[&str]) -> Command {
        let mut c = trellis(&["admin", "--sysroot", p(&self.path)]);
        c.args(args);
        c
    }

    fn admin(&self, args: &[&str]) -> String {
        run_ok(&mut self.admin_cmd(args))
    }

    /// Build the fake OS tree for `version` and commit it to `testos/stable`.
    fn commit(&self, version: &str, edit: impl Fn(&Path)) -> String {
        let tree = self.dir(&format!("tree-{version}"));
        os_tree(&tree, version);
        edit(&tree);
        commit_dir(
            &self.repo(),
            "testos/stable",
            &tree,
            &["--version", version, "-s", &format!("version {version}")],
        )
    }

    fn status(&self) -> Value {
        serde_json::from_str(&self.admin(&["status", "--json"])).expect("status JSON")
    }

    fn ostree_status(&self) -> String {
        run_ok(&mut ostree(&[
            "admin",
            "status",
            &format!("--sysroot={}", self.path.display()),
        ]))
    }

    fn deploy_dir(&self, csum: &str, serial: u32) -> PathBuf {
        self.path
            .join(format!("ostree/deploy/testos/deploy/{csum}.{serial}"))
    }
}

fn write(path: &Path, data: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, data).expect("write");
}

/// A small OS tree laid out as trellis composes them.
fn os_tree(root: &Path, version: &str) {
    let m = root.join("usr/lib/modules").join(KVER);
    write(&m.join("vmlinuz"), "KERNEL");
    write(&m.join("initramfs.img"), "INITRD");
    write(
        &root.join("usr/lib/os-release"),
        "PRETTY_NAME=\"Trellis Test OS\"\nID=testos\n",
    );
    write(&root.join("usr/etc/hostname"), "debian\n");
    write(&root.join("usr/etc/motd"), "welcome\n");
    write(&root.join("usr/etc/issue"), "Test OS\n");
    write(&root.join("usr/etc/default/grub"), "GRUB_TIMEOUT=5\n");
    std::os::unix::fs::symlink("../usr/lib/os-release", root.join("usr/etc/os-release"))
        .expect("symlink");
    write(
        &root.join("usr/bin/hello"),
        &format!("#!/bin/sh\necho version {version}\n"),
    );
    std::fs::create_dir_all(root.join("var")).expect("var");
    std::fs::create_dir_all(root.join("sysroot")).expect("sysroot");
    std::os::unix::fs::symlink("sysroot/ostree", root.join("ostree")).expect("symlink");
}

fn sha256_hex(data: &[u8]) -> String {
    trellis_store::Checksum::of(data).to_hex()
}

fn readlink(p: &Path) -> String {
    std::fs::read_link(p)
        .unwrap_or_else(|e| panic!("readlink {}: {e}", p.display()))
        .to_string_lossy()
        .into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn checksums(status: &Value) -> Vec<String> {
    status["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .map(|d| d["checksum"].as_str().expect("checksum").to_string())
        .collect()
}

/// The commits `ostree admin status` lists, in order.
fn ostree_order(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix("testos "))
        .map(|rest| rest.split('.').next().unwrap_or_default().to_string())
        .collect()
}

fn immutable(dir: &Path) -> bool {
    trellis_sysroot::fsutil::is_immutable(dir).expect("read attributes")
}

#[test]
fn deploy_makes_the_layout_ostree_makes() {
    let sr = Sr::trellis();
    let c1 = sr.commit("1.0", |_| {});
    let out = sr.admin(&[
        "deploy",
        "--karg",
        "root=LABEL=root",
        "--karg",
        "rw",
        "testos/stable",
    ]);
    assert!(out.contains(&format!("Deployed testos {c1}.0")), "{out}");

    let root = &sr.path;
    let bootcsum = sha256_hex(b"KERNELINITRD");
    let dep = sr.deploy_dir(&c1, 0);
    // boot/loader -> loader.1 (the first swap from the implicit 0), boot/boot -> .
    assert_eq!(readlink(&root.join("boot/loader")), "loader.1");
    assert_eq!(readlink(&root.join("boot/boot")), ".");
    assert!(!root.join("boot/loader.0").exists());
    // The entry: name and exact content.
    let entries: Vec<String> = std::fs::read_dir(root.join("boot/loader.1/entries"))
        .expect("entries")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, ["ostree-1-testos.conf"]);
    let bdir = format!("/ostree/testos-{bootcsum}");
    assert_eq!(
        read(&root.join("boot/loader/entries/ostree-1-testos.conf")),
        format!(
            "title Trellis Test OS 1.0 (ostree:0)\nversion 1\noptions root=LABEL=root rw ostree=/ostree/boot.1/testos/{bootcsum}/0\nlinux {bdir}/vmlinuz-{KVER}\ninitrd {bdir}/initramfs-{KVER}.img\n"
        )
    );
    // Kernel files in /boot, hardlinked from the deployment (same file system).
    let kernel = root.join(format!("boot{bdir}/vmlinuz-{KVER}"));
    assert_eq!(read(&kernel), "KERNEL");
    assert_eq!(
        kernel.metadata().expect("stat").ino(),
        dep.join(format!("usr/lib/modules/{KVER}/vmlinuz"))
            .metadata()
            .expect("stat")
            .ino()
    );
    assert_eq!(
        read(&root.join(format!("boot{bdir}/initramfs-{KVER}.img"))),
        "INITRD"
    );
    // Bootlinks.
    assert_eq!(readlink(&root.join("ostree/boot.1")), "boot.1.1");
    assert_eq!(
        readlink(&root.join(format!("ostree/boot.1.1/testos/{bootcsum}/0"))),
        format!("../../../deploy/testos/deploy/{c1}.0")
    );
    // Deployment ref.
    assert_eq!(
        read(&root.join("ostree/repo/refs/heads/ostree/1/1/0")).trim(),
        c1
    );
    // Origin.
    assert_eq!(
        read(&dep.with_file_name(format!("{c1}.0.origin"))),
        "[origin]\nrefspec=testos/stable\n"
    );
    // /etc is a copy of /usr/etc; /usr is hardlinked to the repo's objects.
    let etc = dep.join("etc/hostname").metadata().expect("stat");
    let usr_etc = dep.join("usr/etc/hostname").metadata().expect("stat");
    assert_eq!(read(&dep.join("etc/hostname")), "debian\n");
    assert_ne!(etc.ino(), usr_etc.ino());
    assert_eq!(etc.nlink(), 1);
    assert!(dep.join("usr/bin/hello").metadata().expect("stat").nlink() >= 2);
    assert_eq!(
        readlink(&dep.join("etc/os-release")),
        "../usr/lib/os-release"
    );
    // Sealed.
    assert!(immutable(&dep));

    // ostree lists it.
    let st = sr.ostree_status();
    assert!(st.contains(&format!("testos {c1}.0")), "{st}");
    assert!(st.contains("origin refspec: testos/stable"), "{st}");
    assert!(st.contains("Version: 1.0"), "{st}");

    // The same commit deployed by ostree into a sysroot of its own gives the same entry,
    // bootlinks and refs.
    let theirs = sr.dir("ostree-sysroot");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    let t = p(&theirs);
    run_ok(&mut ostree(&["admin", "init-fs", t]));
    run_ok(&mut ostree(&[
        "admin",
        "os-init",
        "testos",
        &format!("--sysroot={t}"),
    ]));
    let trepo = format!("--repo={t}/ostree/repo");
    run_ok(&mut ostree(&[
        "pull-local",
        &trepo,
        &sr.repo(),
        "testos/stable",
    ]));
    run_ok(&mut ostree(&[
        "admin",
        "deploy",
        &format!("--sysroot={t}"),
        "--os=testos",
        "--karg=root=LABEL=root",
        "--karg=rw",
        "testos/stable",
    ]));
    for rel in [
        "boot/loader/entries/ostree-1-testos.conf".to_string(),
        format!("ostree/deploy/testos/deploy/{c1}.0.origin"),
        "ostree/repo/refs/heads/ostree/1/1/0".to_string(),
    ] {
        assert_eq!(read(&theirs.join(&rel)), read(&root.join(&rel)), "{rel}");
    }
    for link in [
        "boot/loader".to_string(),
        "ostree/boot.1".to_string(),
        format!("ostree/boot.1.1/testos/{bootcsum}/0"),
    ] {
        assert_eq!(
            readlink(&theirs.join(&link)),
            readlink(&root.join(&link)),
            "{link}"
        );
    }
    assert_same_tree(
        &theirs.join(format!("ostree/deploy/testos/deploy/{c1}.0/etc")),
        &dep.join("etc"),
    );
}

#[test]
fn second_deploy_merges_etc_and_comes_first() {
    let sr = Sr::trellis();
    let c1 = sr.commit("1.0", |_| {});
    sr.admin(&["deploy", "testos/stable"]);
    let etc1 = sr.deploy_dir(&c1, 0).join("etc");
    // The admin edits hostname and issue, adds a file and removes one.
    write(&etc1.join("hostname"), "myhost\n");
    write(&etc1.join("issue"), "my issue\n");
    write(&etc1.join("local.conf"), "mine\n");
    std::fs::remove_file(etc1.join("default/grub")).expect("rm");
    // The new OS changes motd only, and issue (a conflict).
    let c2 = sr.commit("2.0", |t| {
        write(&t.join("usr/etc/motd"), "welcome to 2.0\n");
        write(&t.join("usr/etc/issue"), "Test OS 2\n");
    });
    let out: Value =
        serde_json::from_str(&sr.admin(&["deploy", "--json", "testos/stable"])).expect("JSON");
    assert_eq!(out["checksum"], c2.as_str());
    assert_eq!(out["merged_from"], format!("{c1}.0").as_str());
    let etc = &out["etc"];
    assert_eq!(etc["modified"], serde_json::json!(["hostname", "issue"]));
    assert_eq!(etc["added"], serde_json::json!(["local.conf"]));
    assert_eq!(etc["removed"], serde_json::json!(["default/grub"]));
    let conflicts = etc["conflicts"].as_array().expect("conflicts");
    assert_eq!(conflicts.len(), 1, "{etc}");
    assert_eq!(conflicts[0]["path"], "issue");
    assert!(
        conflicts[0]["why"]
            .as_str()
            .unwrap_or_default()
            .contains("local version wins")
    );

    let etc2 = sr.deploy_dir(&c2, 0).join("etc");
    assert_eq!(read(&etc2.join("hostname")), "myhost\n");
    assert_eq!(read(&etc2.join("motd")), "welcome to 2.0\n");
    assert_eq!(read(&etc2.join("issue")), "my issue\n");
    assert_eq!(read(&etc2.join("local.conf")), "mine\n");
    assert!(!etc2.join("default/grub").exists());
    assert!(etc2.join("default").is_dir());

    // The new deployment is first for trellis and for ostree.
    let st = sr.status();
    assert_eq!(checksums(&st), [c2.clone(), c1.clone()]);
    assert_eq!(st["deployments"][0]["role"], "default");
    assert_eq!(st["deployments"][1]["role"], "rollback");
    assert_eq!(st["deployments"][0]["version"], "2.0");
    assert_eq!(ostree_order(&sr.ostree_status()), [c2.clone(), c1.clone()]);

    // The text form names both, with the conflict rule visible in a plain deploy.
    let c3 = sr.commit("3.0", |t| write(&t.join("usr/etc/hostname"), "debian3\n"));
    let out = sr.admin(&["deploy", "testos/stable"]);
    assert!(out.contains("conflict: /etc/hostname"), "{out}");
    assert_eq!(ostree_order(&sr.ostree_status()), [c3, c2]);
}

#[test]
fn rollback_swaps_the_order_both_ways() {
    let sr = Sr::trellis();
    let c1 = sr.commit("1.0", |_| {});
    sr.admin(&["deploy", "testos/stable"]);
    let c2 = sr.commit("2.0", |_| {});
    sr.admin(&["deploy", "testos/stable"]);
    assert_eq!(checksums(&sr.status()), [c2.clone(), c1.clone()]);
    let out = sr.admin(&["rollback"]);
    assert!(out.contains(&format!("now testos {c1}.0")), "{out}");
    assert_eq!(checksums(&sr.status()), [c1.clone(), c2.clone()]);
    assert_eq!(ostree_order(&sr.ostree_status()), [c1.clone(), c2.clone()]);
    // The entries were rewritten: the rolled-back-to deployment has the highest version.
    let entry = read(&sr.path.join("boot/loader/entries/ostree-2-testos.conf"));
    assert!(
        entry.starts_with("title Trellis Test OS 1.0 (ostree:0)\n"),
        "{entry}"
    );
    sr.admin(&["rollback"]);
    assert_eq!(checksums(&sr.status()), [c2.clone(), c1.clone()]);
    assert_eq!(ostree_order(&sr.ostree_status()), [c2, c1]);
}

#[test]
fn cleanup_removes_undeployed_deployments_and_prunes() {
    let sr = Sr::trellis();
    let c1 = sr.commit("1.0", |_| {});
    sr.admin(&["deploy", "testos/stable"]);
    let c2 = sr.commit("2.0", |_| {});
    sr.admin(&["deploy", "--no-prune", "testos/stable"]);
    let c3 = sr.commit("3.0", |_| {});
    sr.admin(&["deploy", "--no-prune", "testos/stable"]);
    // c1 is no longer deployed (only the new one and the merge deployment are kept), but
    // its directory and objects are still there.
    assert_eq!(checksums(&sr.status()), [c3.clone(), c2.clone()]);
    let d1 = sr.deploy_dir(&c1, 0);
    assert!(d1.is_dir() && immutable(&d1));
    let repo = trellis_store::Repo::open(Path::new(&sr.repo())).expect("repo");
    let c1sum = trellis_store::Checksum::from_hex(&c1).expect("checksum");
    assert!(
        repo.has_object(trellis_store::ObjectType::Commit, &c1sum)
            .expect("has")
    );
    let hello1 = d1.join("usr/bin/hello").metadata().expect("stat").ino();

    let out: Value = serde_json::from_str(&sr.admin(&["cleanup", "--json"])).expect("cleanup JSON");
    assert_eq!(
        out["deployments_removed"],
        serde_json::json!([format!("testos/{c1}.0")])
    );
    assert!(out["objects_pruned"].as_u64().unwrap_or(0) >= 3, "{out}");
    assert!(!d1.exists());
    assert!(!d1.with_file_name(format!("{c1}.0.origin")).exists());
    assert!(
        !repo
            .has_object(trellis_store::ObjectType::Commit, &c1sum)
            .expect("has")
    );
    // The only file unique to c1 (usr/bin/hello) is gone from the repo.
    let objects = sr.path.join("ostree/repo/objects");
    let still = Command::new("find")
        .arg(&objects)
        .args(["-inum", &hello1.to_string()])
        .output()
        .expect("find");
    assert!(
        still.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&still.stdout)
    );
    // Both tools find the repo sound and the deployments intact.
    run_ok(&mut ostree(&["fsck", &format!("--repo={}", sr.repo())]));
    run_ok(&mut trellis(&["fsck", "--repo", &sr.repo()]));
    assert_eq!(ostree_order(&sr.ostree_status()), [c3, c2]);
    // A second cleanup finds nothing to do.
    let again: Value =
        serde_json::from_str(&sr.admin(&["cleanup", "--json"])).expect("cleanup JSON");
    assert_eq!(again["deployments_removed"], serde_json::json!([]));
    assert_eq!(again["objects_pruned"], 0);
}

#[test]
fn kernel_arguments() {
    let sr = Sr::trellis();
    sr.commit("1.0", |_| {});
    sr.admin(&[
        "deploy",
        "--karg",
        "root=LABEL=root",
        "--karg",
        "rw",
        "testos/stable",
    ]);
    assert_eq!(sr.admin(&["kargs"]), "root=LABEL=root rw");
    let entry = |sr: &Sr| read(&sr.path.join("boot/loader/entries/ostree-1-testos.conf"));
    assert_eq!(
        sr.admin(&["kargs", "--append", "console=ttyS0", "--append", "quiet"]),
        "root=LABEL=root rw console=ttyS0 quiet"
    );
    assert!(
        entry(&sr)
            .contains("options root=LABEL=root rw console=ttyS0 quiet ostree=/ostree/boot.0/"),
        "{}",
        entry(&sr)
    );
    assert_eq!(
        sr.admin(&["kargs", "--delete", "quiet", "--replace", "root=LABEL=sys"]),
        "root=LABEL=sys rw console=ttyS0"
    );
    // ostree still reads the sysroot after the in-place change (a new boot version).
    assert!(sr.ostree_status().contains("testos "));
    // A new deployment inherits them; --karg-append adds to them.
    sr.commit("2.0", |_| {});
    sr.admin(&["deploy", "--karg-append", "console=tty0", "testos/stable"]);
    let st = sr.status();
    assert_eq!(
        st["deployments"][0]["kargs"],
        "root=LABEL=sys rw console=ttyS0 console=tty0"
    );
    assert_eq!(
        st["deployments"][1]["kargs"],
        "root=LABEL=sys rw console=ttyS0"
    );
    let json: Value = serde_json::from_str(&sr.admin(&["kargs", "--json"])).expect("JSON");
    assert_eq!(
        json,
        serde_json::json!(["root=LABEL=sys", "rw", "console=ttyS0", "console=tty0"])
    );
}

#[test]
fn ostree_deploys_on_a_trellis_sysroot() {
    let sr = Sr::trellis();
    let c1 = sr.commit("1.0", |_| {});
    sr.admin(&["deploy", "--karg", "root=LABEL=root", "testos/stable"]);
    write(&sr.deploy_dir(&c1, 0).join("etc/hostname"), "myhost\n");
    let c2 = sr.commit("2.0", |_| {});
    run_ok(&mut ostree(&[
        "admin",
        "deploy",
        &format!("--sysroot={}", sr.path.display()),
        "--os=testos",
        "testos/stable",
    ]));
    // ostree took our deployment as its merge deployment: /etc merged, kargs inherited.
    assert_eq!(
        read(&sr.deploy_dir(&c2, 0).join("etc/hostname")),
        "myhost\n"
    );
    let st = sr.status();
    assert_eq!(checksums(&st), [c2.clone(), c1.clone()]);
    assert_eq!(st["deployments"][0]["kargs"], "root=LABEL=root");
    assert_eq!(st["deployments"][0]["origin"], "testos/stable");
    // And trellis deploys on top of what ostree wrote.
    let c3 = sr.commit("3.0", |_| {});
    sr.admin(&["deploy", "testos/stable"]);
    assert_eq!(checksums(&sr.status()), [c3.clone(), c2.clone()]);
    assert_eq!(ostree_order(&sr.ostree_status()), [c3, c2]);
    run_ok(&mut ostree(&["fsck", &format!("--repo={}", sr.repo())]));
}

#[test]
fn trellis_reads_and_extends_an_ostree_sysroot() {
    let sr = Sr::new();
    std::fs::create_dir_all(&sr.path).expect("mkdir");
    let s = format!("--sysroot={}", sr.path.display());
    run_ok(&mut ostree(&["admin", "init-fs", p(&sr.path)]));
    run_ok(&mut ostree(&["admin", "os-init", "testos", &s]));
    let tree = sr.dir("tree");
    os_tree(&tree, "1.0");
    let repo = format!("--repo={}", sr.repo());
    let c1 = run_ok(&mut ostree(&[
        "commit",
        &repo,
        "-b",
        "testos/stable",
        "--add-metadata-string=version=1.0",
        &format!("--tree=dir={}", tree.display()),
    ]));
    run_ok(&mut ostree(&[
        "admin",
        "deploy",
        &s,
        "--os=testos",
        "--karg=rw",
        "testos/stable",
    ]));
    let st = sr.status();
    assert_eq!(checksums(&st), std::slice::from_ref(&c1));
    let d = &st["deployments"][0];
    assert_eq!(d["version"], "1.0");
    assert_eq!(d["origin"], "testos/stable");
    assert_eq!(d["kargs"], "rw");
    assert_eq!(d["bootcsum"], sha256_hex(b"KERNELINITRD").as_str());
    assert_eq!(st["bootversion"], 1);
    // Deploy the same commit again with trellis: serial 1, /etc merged, ostree agrees.
    write(&sr.deploy_dir(&c1, 0).join("etc/motd"), "edited\n");
    sr.admin(&["deploy", "--os", "testos", &c1]);
    let dep = sr.deploy_dir(&c1, 1);
    assert_eq!(read(&dep.join("etc/motd")), "edited\n");
    assert_eq!(
        read(&dep.with_file_name(format!("{c1}.1.origin"))),
        format!("[origin]\nrefspec={c1}\n")
    );
    let text = sr.ostree_status();
    assert!(text.contains(&format!("testos {c1}.1")), "{text}");
    assert!(text.contains(&format!("testos {c1}.0")), "{text}");
    let st = sr.status();
    assert_eq!(st["deployments"][0]["serial"], 1);
    assert_eq!(st["deployments"][1]["serial"], 0);
}

#[test]
fn esp_entries_with_boot_counting() {
    let sr = Sr::trellis();
    let esp = sr.dir("esp");
    let esp_s = p(&esp).to_string();
    let with_esp = |args: &[&str]| {
        let mut a = vec!["--esp", &esp_s, "--boot-counting-tries", "3"];
        a.extend_from_slice(args);
        sr.admin(&a)
    };
    let c1 = sr.commit("1.0", |_| {});
    with_esp(&["deploy", "--karg", "rw", "testos/stable"]);
    let bootcsum = sha256_hex(b"KERNELINITRD");
    let entries = esp.join("loader/entries");
    let list = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(list(&entries), ["trellis-testos-1+3.conf"]);
    let kdir = esp.join(format!("trellis/testos-{bootcsum}"));
    assert_eq!(read(&kdir.join(format!("vmlinuz-{KVER}"))), "KERNEL");
    assert_eq!(read(&kdir.join(format!("initramfs-{KVER}.img"))), "INITRD");
    assert_eq!(
        read(&entries.join("trellis-testos-1+3.conf")),
        format!(
            "# trellis-deployment testos {c1}.0\ntitle Trellis Test OS 1.0 (ostree:0)\nversion 1\noptions rw ostree=/ostree/boot.1/testos/{bootcsum}/0\nlinux /trellis/testos-{bootcsum}/vmlinuz-{KVER}\ninitrd /trellis/testos-{bootcsum}/initramfs-{KVER}.img\n"
        )
    );
    assert_eq!(read(&esp.join("loader/loader.conf")), "default trellis-*\n");

    // systemd-boot counts one try, then systemd-bless-boot marks the boot good.
    std::fs::rename(
        entries.join("trellis-testos-1+3.conf"),
        entries.join("trellis-testos-1+2-1.conf"),
    )
    .expect("rename");
    std::fs::rename(
        entries.join("trellis-testos-1+2-1.conf"),
        entries.join("trellis-testos-1.conf"),
    )
    .expect("rename");

    // A new deployment with a new kernel: it gets the counter; the blessed one stays
    // blessed under its new name, pointing at the new boot version.
    let c2 = sr.commit("2.0", |t| {
        write(
            &t.join(format!("usr/lib/modules/{KVER}/vmlinuz")),
            "KERNEL2",
        )
    });
    with_esp(&["deploy", "testos/stable"]);
    let bootcsum2 = sha256_hex(b"KERNEL2INITRD");
    assert_eq!(
        list(&entries),
        ["trellis-testos-1.conf", "trellis-testos-2+3.conf"]
    );
    let old = read(&entries.join("trellis-testos-1.conf"));
    assert!(
        old.starts_with(&format!("# trellis-deployment testos {c1}.0\n")),
        "{old}"
    );
    assert!(
        old.contains(&format!("ostree=/ostree/boot.0/testos/{bootcsum}/0")),
        "{old}"
    );
    let new = read(&entries.join("trellis-testos-2+3.conf"));
    assert!(
        new.contains(&format!("linux /trellis/testos-{bootcsum2}/vmlinuz-{KVER}")),
        "{new}"
    );
    assert!(
        new.contains(&format!("# trellis-deployment testos {c2}.0")),
        "{new}"
    );
    assert_eq!(list(&esp.join("trellis")), {
        let mut v = vec![format!("testos-{bootcsum}"), format!("testos-{bootcsum2}")];
        v.sort();
        v
    });
    // No temporary files are left behind.
    assert!(list(&entries).iter().all(|n| !n.ends_with(".tmp")));

    // The new one fails to boot three times: all tries used.
    std::fs::rename(
        entries.join("trellis-testos-2+3.conf"),
        entries.join("trellis-testos-2+0-3.conf"),
    )
    .expect("rename");
    // A third deployment drops the first: its entry and kernel go, the failed one keeps
    // its counter state.
    let c3 = sr.commit("3.0", |t| {
        write(
            &t.join(format!("usr/lib/modules/{KVER}/vmlinuz")),
            "KERNEL2",
        )
    });
    with_esp(&["deploy", "testos/stable"]);
    assert_eq!(
        list(&entries),
        ["trellis-testos-1+0-3.conf", "trellis-testos-2+3.conf"]
    );
    assert!(read(&entries.join("trellis-testos-2+3.conf")).contains(&format!("testos {c3}.0")));
    assert!(read(&entries.join("trellis-testos-1+0-3.conf")).contains(&format!("testos {c2}.0")));
    assert_eq!(list(&esp.join("trellis")), [format!("testos-{bootcsum2}")]);
    // The sysroot's own entries are there too, for ostree.
    assert_eq!(ostree_order(&sr.ostree_status()), [c3, c2]);
}

/// A 16 MiB tmpfs mounted on a temporary directory, unmounted when dropped.
struct SmallFs {
    dir: PathBuf,
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

#[test]
fn too_little_space_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mnt = tmp.path().join("small");
    std::fs::create_dir(&mnt).expect("mkdir");
    run_ok(Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs", p(&mnt)]));
    let _fs = SmallFs { dir: mnt.clone() };
    let sr_path = mnt.join("sysroot");
    run_ok(&mut trellis(&["admin", "init-fs", p(&sr_path)]));
    let admin = |args: &[&str]| {
        let mut c = trellis(&["admin", "--sysroot", p(&sr_path)]);
        c.args(args);
        c
    };
    run_ok(&mut admin(&["os-init", "testos"]));
    // 9 MiB in /usr/etc: stored once in the repo, it must be copied to /etc as well.
    let tree = tmp.path().join("tree");
    os_tree(&tree, "1.0");
    run_ok(
        Command::new("head")
            .args(["-c", "9437184", "/dev/urandom"])
            .stdout(std::fs::File::create(tree.join("usr/etc/big")).expect("create")),
    );
    let repo = p(&sr_path.join("ostree/repo")).to_string();
    let c = commit_dir(&repo, "testos/stable", &tree, &[]);
    let out = run_raw(&mut admin(&["deploy", "testos/stable"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not enough space"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let deploy = sr_path.join("ostree/deploy/testos/deploy");
    assert!(!deploy.exists() || std::fs::read_dir(&deploy).expect("list").next().is_none());
    assert!(!sr_path.join("boot/loader").exists());
    assert!(
        !sr_path
            .join(format!("ostree/deploy/testos/deploy/{c}.0"))
            .exists()
    );

    // Without the big file the same sysroot takes the deployment.
    std::fs::remove_file(tree.join("usr/etc/big")).expect("rm");
    let c2 = commit_dir(&repo, "testos/stable", &tree, &[]);
    run_ok(&mut admin(&["deploy", "testos/stable"]));
    run_ok(&mut admin(&["cleanup"]));
    let st: Value = serde_json::from_str(&run_ok(&mut admin(&["status", "--json"]))).expect("JSON");
    assert_eq!(checksums(&st), [c2]);
    unseal(&mnt);
}

#[test]
fn refusals_are_clear_and_write_nothing() {
    let sr = Sr::trellis();
    assert_eq!(sr.admin(&["status"]), "No deployments.");
    // Both /etc and /usr/etc.
    sr.commit("1.0", |t| {
        write(&t.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n")
    });
    let out = run_raw(&mut sr.admin_cmd(&["deploy", "testos/stable"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("both a populated /etc and /usr/etc"), "{err}");
    // No kernel.
    sr.commit("2.0", |t| {
        std::fs::remove_dir_all(t.join("usr/lib/modules")).expect("rm")
    });
    let out = run_raw(&mut sr.admin_cmd(&["deploy", "testos/stable"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no kernel found"), "{err}");
    // An unknown stateroot.
    sr.commit("3.0", |_| {});
    let out = run_raw(&mut sr.admin_cmd(&["deploy", "--os", "other", "testos/stable"]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("trellis admin os-init other"), "{err}");
    // Nothing was deployed by any of them.
    let deploy = sr.path.join("ostree/deploy/testos/deploy");
    assert!(!deploy.exists() || std::fs::read_dir(&deploy).expect("list").next().is_none());
    assert!(!sr.path.join("boot/loader").exists());
    // Rolling back with one deployment is refused too.
    sr.admin(&["deploy", "testos/stable"]);
    let out = run_raw(&mut sr.admin_cmd(&["rollback"]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no deployment to roll back to"));
}

#[test]
fn killed_deploys_leave_a_bootable_sysroot() {
    let sr = Sr::trellis();
    let many = |t: &Path, tag: &str| {
        for i in 0..3000 {
            write(
                &t.join(format!("usr/share/data/{}/{i}", i % 30)),
                &format!("{tag} {i}\n"),
            );
        }
    };
    let a = sr.commit("1.0", |t| many(t, "a"));
    let b = sr.commit("2.0", |t| many(t, "b"));
    sr.admin(&["deploy", &a]);
    // A deploy of this tree takes some 40 ms (debug build): kill it all along the way.
    let delays_ms: Vec<u64> = (0..=60).step_by(3).collect();
    for (i, delay) in delays_ms.iter().enumerate() {
        let target = if i % 2 == 0 { &b } else { &a };
        let mut child = sr
            .admin_cmd(&["deploy", target])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(*delay));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the moment, both tools read a consistent sysroot whose default
        // deployment is one of the two commits, complete on disk.
        let st = sr.status();
        let list = checksums(&st);
        assert!(!list.is_empty(), "after {delay} ms: no deployments");
        for c in &list {
            assert!(c == &a || c == &b, "after {delay} ms: unknown {c}");
        }
        for d in st["deployments"].as_array().expect("list") {
            let dir = PathBuf::from(d["path"].as_str().expect("path"));
            assert!(
                dir.join("usr/bin/hello").is_file(),
                "after {delay} ms: {}",
                dir.display()
            );
            assert!(
                dir.join("etc/hostname").is_file(),
                "after {delay} ms: {}",
                dir.display()
            );
        }
        let text = sr.ostree_status();
        assert_eq!(ostree_order(&text), list, "after {delay} ms");
    }
    // A deploy and a cleanup afterwards complete, and leave a sound repository.
    sr.admin(&["deploy", &b]);
    sr.admin(&["cleanup"]);
    assert_eq!(checksums(&sr.status())[0], b);
    run_ok(&mut ostree(&["fsck", &format!("--repo={}", sr.repo())]));
    let leftovers: Vec<_> = std::fs::read_dir(sr.path.join("ostree/deploy/testos/deploy"))
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2 * sr.status()["deployments"].as_array().map_or(0, Vec::len),
        "{leftovers:?}"
    );
}
