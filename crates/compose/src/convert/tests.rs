//! The conversion, item by item, on a small fake Debian tree.

use super::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use trellis_store::xattr::{self, Target};

fn write(root: &Path, rel: &str, data: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

fn mkdir(root: &Path, rel: &str, mode: u32) {
    let p = root.join(rel);
    fs::create_dir_all(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
}

fn link(root: &Path, rel: &str, target: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
}

fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    xattr::set(Target::<fs::File>::NoFollow(p), name.as_bytes(), value).unwrap();
}

fn get_xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    xattr::read_one(Target::<fs::File>::NoFollow(p), name).unwrap()
}

fn read_link(root: &Path, rel: &str) -> PathBuf {
    fs::read_link(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn absent(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_err()
}

/// A small tree shaped like what mmdebstrap leaves, with one of each case.
fn fake_tree(root: &Path) -> (String, String) {
    let me = rustix::process::getuid().as_raw();
    let my_group = rustix::process::getgid().as_raw();
    let (user, group) = ("builder".to_string(), "builders".to_string());
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).unwrap();
    write(
        root,
        "etc/passwd",
        &format!("{user}:x:{me}:{my_group}::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"),
    );
    write(
        root,
        "etc/group",
        &format!("{group}:x:{my_group}:\nnogroup:x:65534:\n"),
    );
    for f in ["passwd-", "group-", "shadow-", "gshadow-", ".pwd.lock"] {
        write(root, &format!("etc/{f}"), "old\n");
    }
    write(root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n");
    write(root, "etc/resolv.conf", "nameserver 10.0.0.1\n");
    write(root, "etc/hostname", "box\n");
    write(root, "etc/ssh/ssh_host_ed25519_key", "secret\n");
    write(root, "etc/ssh/ssh_host_ed25519_key.pub", "public\n");
    write(root, "etc/ssh/sshd_config", "# config\n");
    write(root, "etc/with-xattr", "x\n");
    set_xattr(&root.join("etc/with-xattr"), "user.trellis", b"etc");
    write(root, "usr/sbin/sshd", "");
    write(root, "usr/bin/ping", "ELF\n");
    set_xattr(&root.join("usr/bin/ping"), "user.trellis", b"cap");
    write(
        root,
        "usr/lib/tmpfiles.d/dbus.conf",
        "d /var/lib/dbus 0755 - - -\n",
    );
    // /usr/local as Debian ships it.
    for d in ["bin", "etc", "share/man", "src"] {
        mkdir(root, &format!("usr/local/{d}"), 0o755);
    }
    link(root, "usr/local/man", "share/man");
    mkdir(root, "home", 0o755);
    write(root, "root/.bashrc", "# root's bashrc\n");
    fs::set_permissions(root.join("root"), fs::Permissions::from_mode(0o700)).unwrap();
    mkdir(root, "mnt", 0o755);
    write(root, "opt/app/run.sh", "#!/bin/sh\n");
    mkdir(root, "srv", 0o755);
    mkdir(root, "media/cdrom", 0o755);
    // /var, with noise and state.
    write(root, "var/lib/dpkg/status", "Package: base-files\n");
    write(root, "var/lib/dpkg/status-old", "old\n");
    write(root, "var/lib/dpkg/lock", "");
    write(root, "var/lib/dpkg/lock-frontend", "");
    write(root, "var/lib/dpkg/triggers/Lock", "");
    write(root, "var/lib/dpkg/info/base-files.list", "/etc\n");
    write(root, "var/log/dpkg.log", "installed\n");
    write(root, "var/log/apt/history.log", "history\n");
    mkdir(root, "var/log/journal", 0o2755);
    write(
        root,
        "var/cache/apt/archives/base-files_12_amd64.deb",
        "deb",
    );
    write(root, "var/cache/ldconfig/aux-cache", "cache");
    mkdir(root, "var/cache/apt/archives/partial", 0o700);
    mkdir(root, "var/cache/apt/archives/stray-dir", 0o755);
    write(root, "var/cache/debconf/config.dat", "Name: x\n");
    write(root, "var/cache/debconf/config.dat-old", "Name: old\n");
    write(
        root,
        "var/lib/apt/lists/deb.debian.org_Packages",
        "Package: x\n",
    );
    mkdir(root, "var/lib/apt/lists/partial", 0o700);
    write(root, "var/lib/pam/seen", "seen\n");
    write(root, "var/lib/empty-file", "");
    write(root, "var/lib/name with space", "spaced\n");
    mkdir(root, "var/lib/dbus", 0o755);
    mkdir(root, "var/lib/sticky", 0o1777);
    write(root, "var/lib/systemd/catalog/database", "catalog");
    write(root, "var/tmp/leftover/file", "x");
    link(root, "var/spool/mail", "../mail");
    link(root, "var/run", "/run");
    // Per-build and run-time content.
    write(root, "dev/null", "");
    write(root, "proc/1/status", "");
    write(root, "sys/kernel/x", "");
    mkdir(root, "run/lock", 0o755);
    write(root, "tmp/junk", "x");
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    write(root, "boot/config-6.1.0", "CONFIG\n");
    link(root, "vmlinuz", "boot/vmlinuz-6.1.0");
    link(root, "initrd.img", "boot/initrd.img-6.1.0");
    (user, group)
}

fn tmpfiles_lines(root: &Path) -> Vec<String> {
    fs::read_to_string(root.join(TMPFILES_CONF))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn converts_a_fake_tree_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (user, group) = fake_tree(root);
    let report = convert(root).unwrap();
    let lines = tmpfiles_lines(root);
    let has = |l: &str| lines.iter().any(|x| x == l);

    // /etc moved to /usr/etc, with its xattrs; no /etc in the commit.
    assert!(absent(root, "etc"));
    assert_eq!(
        fs::read_to_string(root.join("usr/etc/hostname")).unwrap(),
        "box\n"
    );
    assert_eq!(
        get_xattr(&root.join("usr/etc/with-xattr"), "user.trellis").unwrap(),
        b"etc"
    );
    // File capabilities and other xattrs stay on their files.
    assert_eq!(
        get_xattr(&root.join("usr/bin/ping"), "user.trellis").unwrap(),
        b"cap"
    );

    // Per-build noise is gone.
    for f in [
        "usr/etc/passwd-",
        "usr/etc/group-",
        "usr/etc/shadow-",
        "usr/etc/gshadow-",
        "usr/etc/.pwd.lock",
        "usr/etc/resolv.conf",
        "usr/etc/ssh/ssh_host_ed25519_key",
        "usr/etc/ssh/ssh_host_ed25519_key.pub",
        "vmlinuz",
        "initrd.img",
        "usr/share/factory/var/log/dpkg.log",
        "usr/share/factory/var/cache/debconf/config.dat-old",
    ] {
        assert!(absent(root, f), "{f} should be gone");
    }
    assert_eq!(fs::read(root.join("usr/etc/machine-id")).unwrap(), b"");
    assert!(root.join("usr/etc/ssh/sshd_config").exists());
    // ...and machines make their own SSH host keys.
    let unit = root
        .join("usr/lib/systemd/system")
        .join(noise::SSH_KEYGEN_UNIT);
    assert!(fs::read_to_string(&unit).unwrap().contains("ssh-keygen -A"));
    assert!(
        root.join("usr/lib/systemd/system/ssh.service.wants")
            .join(noise::SSH_KEYGEN_UNIT)
            .exists()
    );
    assert!(report.noise_removed >= 15, "{report:?}");

    // /dev, /proc, /sys, /run and /tmp are empty; /tmp keeps its sticky mode.
    for d in EMPTIED {
        assert!(fs::read_dir(root.join(d)).unwrap().next().is_none(), "{d}");
    }
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );

    // State directories moved under /var, with symlinks.
    assert_eq!(read_link(root, "home"), Path::new("var/home"));
    assert_eq!(read_link(root, "mnt"), Path::new("var/mnt"));
    assert_eq!(read_link(root, "opt"), Path::new("var/opt"));
    assert_eq!(read_link(root, "srv"), Path::new("var/srv"));
    assert_eq!(read_link(root, "root"), Path::new("var/roothome"));
    assert_eq!(read_link(root, "usr/local"), Path::new("../var/usrlocal"));
    assert_eq!(read_link(root, "media"), Path::new("run/media"));
    assert_eq!(read_link(root, "ostree"), Path::new("sysroot/ostree"));
    assert_eq!(read_link(root, "efi"), Path::new("sysroot/efi"));
    let sysroot = fs::metadata(root.join("sysroot")).unwrap();
    assert!(sysroot.is_dir() && fs::read_dir(root.join("sysroot")).unwrap().next().is_none());

    // The commit's /var is empty: its content became tmpfiles entries.
    assert!(fs::read_dir(root.join("var")).unwrap().next().is_none());
    let owner = format!("{user} {group}");
    assert!(has(&format!("d /var/home 0755 {owner} -")), "{lines:#?}");
    assert!(
        has(&format!("d /var/roothome 0700 {owner} -")),
        "{lines:#?}"
    );
    assert!(has(
        "C /var/roothome/.bashrc - - - - /usr/share/factory/var/roothome/.bashrc"
    ));
    assert_eq!(
        fs::read_to_string(root.join("usr/share/factory/var/roothome/.bashrc")).unwrap(),
        "# root's bashrc\n"
    );
    assert!(has(&format!("d /var/opt/app 0755 {owner} -")));
    assert!(has(
        "C /var/opt/app/run.sh - - - - /usr/share/factory/var/opt/app/run.sh"
    ));
    assert!(has(&format!("d /var/usrlocal/bin 0755 {owner} -")));
    assert!(has("L /var/usrlocal/man - - - - share/man"));
    assert!(has(&format!("d /var/log/journal 2755 {owner} -")));
    assert!(has(&format!("d /var/lib/sticky 1777 {owner} -")));
    assert!(has(&format!("d /var/lib/apt/lists/partial 0700 {owner} -")));
    assert!(has(&format!(
        "d /var/cache/apt/archives/partial 0700 {owner} -"
    )));
    assert!(has(&format!("f /var/lib/empty-file 0644 {owner} -")));
    assert!(has(
        "C /var/lib/pam/seen - - - - /usr/share/factory/var/lib/pam/seen"
    ));
    assert!(has(
        "C /var/lib/name\\x20with\\x20space - - - - /usr/share/factory/var/lib/name\\x20with\\x20space"
    ));
    assert!(has(
        "C /var/cache/debconf/config.dat - - - - /usr/share/factory/var/cache/debconf/config.dat"
    ));
    assert!(has("L /var/spool/mail - - - - ../mail"));
    assert!(has("L /var/run - - - - /run"));
    // Logs, caches, apt lists and var/tmp leave no files behind.
    for l in &lines {
        for noise in [
            "dpkg.log",
            "history.log",
            ".deb",
            "aux-cache",
            "_Packages",
            "catalog/database",
            "leftover",
            "stray-dir",
        ] {
            assert!(!l.contains(noise), "{noise} kept: {l}");
        }
    }
    // What the tree's own tmpfiles.d already creates is not declared twice.
    assert!(
        !lines.iter().any(|l| l.contains(" /var/lib/dbus ")),
        "{lines:#?}"
    );
    assert_eq!(report.already_declared, 1);
    // Parents come before their children.
    let pos = |p: &str| lines.iter().position(|l| l.contains(p)).unwrap();
    assert!(pos("d /var/lib ") < pos("/var/lib/pam/seen"));

    // The dpkg database is kept under /usr, with /var/lib/dpkg pointing to it.
    let db = root.join(DPKG_DB);
    assert_eq!(
        fs::read_to_string(db.join("status")).unwrap(),
        "Package: base-files\n"
    );
    assert!(db.join("info/base-files.list").exists());
    for noise in ["status-old", "lock", "lock-frontend", "triggers/Lock"] {
        assert!(!db.join(noise).exists(), "{noise}");
    }
    assert!(has("L /var/lib/dpkg - - - - /usr/lib/sysimage/dpkg"));

    assert_eq!(report.tmpfiles_entries, lines.len());
    assert!(report.factory_files >= 5, "{report:?}");
}

#[test]
fn special_files_in_var_are_dropped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_tree(root);
    let fifo = root.join("var/lib/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    let report = convert(root).unwrap();
    assert_eq!(report.dropped, ["/var/lib/fifo"]);
}

#[test]
fn both_etc_and_usr_etc_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fake_tree(root);
    write(root, "usr/etc/motd", "hi\n");
    let e = convert(root).unwrap_err().to_string();
    assert!(e.contains("both /etc and /usr/etc"), "{e}");
}

#[test]
fn a_tree_without_etc_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = convert(dir.path()).unwrap_err().to_string();
    assert!(e.contains("etc: missing"), "{e}");
}
