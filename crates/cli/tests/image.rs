//! `trellis image` and `trellis build`: disk images checked with the field's tools.
//!
//! A fixture commit (the shared tree with hardlinks, owners, setuid bits and file
//! capabilities, plus a fake kernel, initramfs and systemd-boot) is made into images whose
//! partition table is read by sfdisk and sgdisk, whose file systems are checked by
//! fsck.fat and e2fsck on the extracted partitions, read with mtools and debugfs, and
//! mounted read-only (loop device, private mount namespace) so that the real `ostree`
//! lists the deployment and checks the repository. One test composes the example manifest
//! for real with `trellis build` (needs the Debian mirror, about two minutes).
//!
//! Images go to /var/tmp (sparse files of a few GiB) and /dev/shm.

mod common;
use common::*;
use serde_json::Value as Json;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const REF: &str = "test/x86_64";
const KVER: &str = "6.1.0-test";
const ESP_TYPE: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const ROOT_TYPE: &str = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709";
const URL: &str = "http://10.0.2.2:8080/repo";
const SYSTEMD_BOOT: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn workdir(base: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trellis-image-test-")
        .tempdir_in(base)
        .unwrap()
}

/// A bootable-looking tree: the shared fixture plus kernel, initramfs, systemd-boot,
/// os-release, default kernel arguments and an fstab.
fn boot_tree(root: &Path, with_systemd_boot: bool) {
    make_fixture_tree(root);
    let r = root.display();
    sh(&format!(
        r#"
        mkdir -p {r}/usr/lib/modules/{KVER} {r}/usr/lib/systemd/boot/efi {r}/usr/etc \
                 {r}/usr/lib/kernel {r}/sysroot {r}/var
        head -c 3000000 /dev/urandom > {r}/usr/lib/modules/{KVER}/vmlinuz
        head -c 2000000 /dev/urandom > {r}/usr/lib/modules/{KVER}/initramfs.img
        printf 'NAME="Test OS"\nID=testos\nPRETTY_NAME="Test OS 1"\n' > {r}/usr/lib/os-release
        printf 'console=ttyS0,115200 quiet\n' > {r}/usr/lib/kernel/cmdline
        printf '# UNCONFIGURED FSTAB FOR BASE SYSTEM\n' > {r}/usr/etc/fstab
        echo testhost > {r}/usr/etc/hostname
        ln -s sysroot/ostree {r}/ostree
        "#
    ));
    if with_systemd_boot {
        let mut efi = b"MZ fake systemd-boot ".to_vec();
        efi.extend((0..5000u32).flat_map(|i| i.to_le_bytes()));
        std::fs::write(root.join(SYSTEMD_BOOT), efi).unwrap();
    }
}

/// An archive repository with the fixture commit on REF (and, without systemd-boot, on
/// `test/no-boot`). Returns (repo, commit).
fn fixture_repo(dir: &Path) -> (String, String) {
    let repo = init_repo(&dir.join("repo"), "archive");
    let tree = dir.join("tree");
    boot_tree(&tree, true);
    let commit = commit_dir(
        &repo,
        REF,
        &tree,
        &[
            "-s",
            "testos 1.0",
            "--version",
            "1.0",
            "--timestamp",
            "1700000000",
        ],
    );
    std::fs::remove_file(tree.join(SYSTEMD_BOOT)).unwrap();
    commit_dir(&repo, "test/no-boot", &tree, &["-s", "no boot loader"]);
    (repo, commit)
}

fn image(repo: &str, out: &Path, extra: &[&str]) -> Json {
    image_of(repo, REF, out, extra)
}

fn image_of(repo: &str, ref_name: &str, out: &Path, extra: &[&str]) -> Json {
    let mut args = vec![
        "image",
        "--repo",
        repo,
        "--ref",
        ref_name,
        "-o",
        p(out),
        "--json",
    ];
    args.extend_from_slice(extra);
    let text = run_ok(&mut trellis(&args));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn sha256(path: &Path) -> String {
    run_ok(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Copy `size` bytes at `offset` of `disk` to `dest`, leaving holes where the disk has
/// zeros (the root partition is mostly empty).
fn extract(disk: &Path, offset: u64, size: u64, dest: &Path) {
    let mut src = std::fs::File::open(disk).unwrap();
    src.seek(SeekFrom::Start(offset)).unwrap();
    let mut out = std::fs::File::create(dest).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        src.read_exact(&mut buf[..n]).unwrap();
        if buf[..n].iter().all(|&b| b == 0) {
            out.seek(SeekFrom::Current(n as i64)).unwrap();
        } else {
            out.write_all(&buf[..n]).unwrap();
        }
        left -= n as u64;
    }
    out.set_len(size).unwrap();
}

struct Parts {
    esp: PathBuf,
    root: PathBuf,
}

/// The GPT as sfdisk reads it, checked against the JSON summary; the partitions extracted.
fn check_table(disk: &Path, json: &Json, dir: &Path) -> Parts {
    let table: Json =
        serde_json::from_str(&run_ok(Command::new("sfdisk").arg("--json").arg(disk))).unwrap();
    let t = &table["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["sectorsize"], 512);
    let lower = |v: &Json| v.as_str().unwrap().to_lowercase();
    assert_eq!(lower(&t["id"]), json["ids"]["disk"].as_str().unwrap());
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{table}");
    for (i, (name, ty, uuid)) in [
        ("esp", ESP_TYPE, &json["ids"]["esp_partition"]),
        ("root", ROOT_TYPE, &json["ids"]["root_partition"]),
    ]
    .into_iter()
    .enumerate()
    {
        let part = &parts[i];
        assert_eq!(part["name"], name);
        assert_eq!(lower(&part["type"]), ty);
        assert_eq!(lower(&part["uuid"]), uuid.as_str().unwrap());
        let start = part["start"].as_u64().unwrap();
        let size = part["size"].as_u64().unwrap();
        assert_eq!(start % 2048, 0, "partition {name} is not 1 MiB aligned");
        assert_eq!(
            size % 2048,
            0,
            "partition {name} is not a whole number of MiB"
        );
        assert_eq!(
            json["partitions"][i]["offset"].as_u64().unwrap(),
            start * 512
        );
        assert_eq!(json["partitions"][i]["size"].as_u64().unwrap(), size * 512);
    }
    let len = std::fs::metadata(disk).unwrap().len();
    assert_eq!(len, json["disk_size"].as_u64().unwrap());
    // sgdisk checks the backup header and array at the end of the disk too.
    let v = run_ok(Command::new("sgdisk").arg("-v").arg(disk));
    assert!(v.contains("No problems found"), "{v}");

    let part = |i: usize, name: &str| {
        let dest = dir.join(name);
        extract(
            disk,
            json["partitions"][i]["offset"].as_u64().unwrap(),
            json["partitions"][i]["size"].as_u64().unwrap(),
            &dest,
        );
        dest
    };
    let parts = Parts {
        esp: part(0, "esp.img"),
        root: part(1, "root.img"),
    };
    run_ok(Command::new("fsck.fat").arg("-n").arg(&parts.esp));
    run_ok(Command::new("e2fsck").arg("-fn").arg(&parts.root));
    let blkid = |f: &Path| run_ok(Command::new("blkid").args(["-p", "-o", "export"]).arg(f));
    let esp_id = blkid(&parts.esp);
    assert!(esp_id.contains("TYPE=vfat"), "{esp_id}");
    assert!(
        esp_id.contains(&format!(
            "UUID={}",
            json["ids"]["esp_volume_id"].as_str().unwrap()
        )),
        "{esp_id}"
    );
    let root_id = blkid(&parts.root);
    assert!(root_id.contains("TYPE=ext4"), "{root_id}");
    assert!(
        root_id.contains(&format!(
            "UUID={}",
            json["ids"]["root_fs"].as_str().unwrap()
        )),
        "{root_id}"
    );
    parts
}

fn mtype(esp: &Path, path: &str) -> Vec<u8> {
    let out = run_raw(
        Command::new("mtype")
            .args(["-i", p(esp)])
            .arg(format!("::{path}"))
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
    assert!(
        out.status.success(),
        "mtype {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn debugfs(root: &Path, cmd: &str) -> String {
    run_ok(Command::new("debugfs").args(["-R", cmd]).arg(root))
}

/// Run `script` with `$M` the root file system mounted read-only, in a private mount
/// namespace; returns its stdout.
fn with_mounted(root: &Path, dir: &Path, script: &str) -> String {
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let full = format!(
        "M={m}; mount -o loop,ro {r} \"$M\"; trap 'umount \"$M\"' EXIT; {script}",
        m = p(&mnt),
        r = p(root)
    );
    run_ok(Command::new("unshare").args(["-m", "sh", "-euc", &full]))
}

#[test]
fn image_of_a_fixture_commit() {
    let dir = workdir("/var/tmp");
    let (repo, commit) = fixture_repo(dir.path());
    let key_file = dir.path().join("signing.key");
    run_ok(&mut trellis(&["keygen", "-o", p(&key_file)]));
    let pubkey = std::fs::read_to_string(dir.path().join("signing.key.pub"))
        .unwrap()
        .trim()
        .to_string();
    let disk = dir.path().join("disk.raw");
    let json = image(
        &repo,
        &disk,
        &[
            "--remote-url",
            URL,
            "--remote-key",
            &format!("{}.pub", p(&key_file)),
        ],
    );
    eprintln!("{json}");
    assert_eq!(json["commit"], commit.as_str());
    assert_eq!(json["osname"], "testos");
    assert_eq!(json["version"], "1.0");
    assert_eq!(json["origin"], format!("origin:{REF}"));
    assert_eq!(json["signed_remote"], true);
    let fs_uuid = json["ids"]["root_fs"].as_str().unwrap().to_string();
    let volid = json["ids"]["esp_volume_id"].as_str().unwrap().to_string();
    let dep = format!("/ostree/deploy/testos/deploy/{commit}.0");
    assert_eq!(json["deployment"], dep.as_str());
    assert_eq!(
        json["kargs"],
        format!("root=UUID={fs_uuid} rw console=ttyS0,115200 quiet panic=10")
    );
    // Content plus the default 1 GiB free.
    let root_size = json["partitions"][1]["size"].as_u64().unwrap();
    assert!(root_size > 1 << 30 && root_size < 2 << 30, "{root_size}");
    assert!(json["partitions"][0]["size"].as_u64().unwrap() >= 256 << 20);
    // Nothing but the image is left next to it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");

    let parts = check_table(&disk, &json, dir.path());

    // The ESP: systemd-boot from the tree in both places, the kernel, one entry with boot
    // counting, loader.conf.
    let listing = run_ok(
        Command::new("mdir")
            .args(["-/", "-b", "-i", p(&parts.esp), "::/"])
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
    let boot = mtype(&parts.esp, "/EFI/BOOT/BOOTX64.EFI");
    assert!(boot.starts_with(b"MZ fake systemd-boot"));
    assert_eq!(boot.len(), 21 + 20000);
    assert_eq!(mtype(&parts.esp, "/EFI/systemd/systemd-bootx64.efi"), boot);
    let entry_name = listing
        .lines()
        .find(|l| l.starts_with("::/loader/entries/") && l.ends_with(".conf"))
        .unwrap_or_else(|| panic!("no loader entry:\n{listing}"))
        .to_string();
    assert_eq!(entry_name, "::/loader/entries/trellis-testos-1+3.conf");
    let entry = String::from_utf8(mtype(&parts.esp, entry_name.trim_start_matches("::"))).unwrap();
    let options = entry
        .lines()
        .find_map(|l| l.strip_prefix("options "))
        .unwrap_or_else(|| panic!("{entry}"));
    assert!(
        options.starts_with(&format!(
            "root=UUID={fs_uuid} rw console=ttyS0,115200 quiet panic=10 ostree=/ostree/boot.1/testos/"
        )),
        "{entry}"
    );
    let linux = entry
        .lines()
        .find_map(|l| l.strip_prefix("linux "))
        .unwrap();
    assert!(linux.starts_with("/trellis/testos-") && linux.ends_with(&format!("/vmlinuz-{KVER}")));
    let kernel = std::fs::read(
        dir.path()
            .join(format!("tree/usr/lib/modules/{KVER}/vmlinuz")),
    )
    .unwrap();
    assert!(
        mtype(&parts.esp, linux) == kernel,
        "the ESP's kernel differs from the tree's"
    );
    let initrd = entry
        .lines()
        .find_map(|l| l.strip_prefix("initrd "))
        .unwrap();
    assert_eq!(mtype(&parts.esp, initrd).len(), 2_000_000);
    assert_eq!(
        String::from_utf8(mtype(&parts.esp, "/loader/loader.conf")).unwrap(),
        "timeout 1\ndefault trellis-*\n"
    );

    // The root, read with debugfs: config, refs, origin, fstab, owners, links, xattrs, the
    // deployment's immutable flag.
    let config = debugfs(&parts.root, "cat /ostree/repo/config");
    for line in [
        "mode=bare",
        "[remote \"origin\"]",
        &format!("url={URL}"),
        "gpg-verify=false",
        &format!("verification-ed25519-key={pubkey}"),
        "sign-verify=ed25519",
        "[sysroot]",
        "esp=efi",
        "boot-counting-tries=3",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "no {line:?} in:\n{config}"
        );
    }
    assert_eq!(
        debugfs(
            &parts.root,
            &format!("cat /ostree/repo/refs/remotes/origin/{REF}")
        ),
        commit
    );
    assert_eq!(
        debugfs(&parts.root, &format!("cat {dep}.origin")),
        format!("[origin]\nrefspec=origin:{REF}")
    );
    assert_eq!(
        debugfs(&parts.root, &format!("cat {dep}/etc/fstab")),
        format!(
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\nUUID={volid} /sysroot/efi vfat umask=0077,shortname=winnt 0 2"
        )
    );
    let efi_dir = debugfs(&parts.root, "stat /efi");
    assert!(efi_dir.contains("Type: directory"), "{efi_dir}");
    let sealed = debugfs(&parts.root, &format!("stat {dep}"));
    let flags = sealed
        .split("Flags: 0x")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert!(
        u32::from_str_radix(flags, 16).unwrap() & 0x10 != 0,
        "{sealed}"
    );
    let owned = debugfs(&parts.root, &format!("stat {dep}/sub/deep/owned"));
    assert!(owned.contains("User:  1000   Group:   100"), "{owned}");
    let suid = debugfs(&parts.root, &format!("stat {dep}/suid"));
    assert!(suid.contains("Mode:  04755"), "{suid}");
    assert!(suid.contains("security.capability (20)"), "{suid}");
    // hello.txt and sub/hardlink are one object: the object and its two checkouts.
    let hello = debugfs(&parts.root, &format!("stat {dep}/hello.txt"));
    assert!(hello.contains("Links: 3"), "{hello}");
    // Every time is the commit's.
    assert!(hello.contains("ctime: 0x6553f100:00000000"), "{hello}");

    // Mounted: the real ostree lists the deployment and checks the repository, which holds
    // the one commit; checkouts share inodes with the objects; capabilities survive.
    let out = with_mounted(
        &parts.root,
        dir.path(),
        &format!(
            "ostree admin status --sysroot=\"$M\"; echo ---; \
             ostree fsck --repo=\"$M/ostree/repo\" >&2; \
             find \"$M/ostree/repo/objects\" -name '*.commit' | wc -l; \
             find \"$M/ostree/repo/objects\" -samefile \"$M{dep}/suid\" | wc -l; \
             getfattr -n security.capability -e base64 --absolute-names \"$M{dep}/suid\" | grep =; \
             stat -c %a \"$M/tmp\" \"$M/root\"; \
             readlink \"$M/boot/loader\""
        ),
    );
    let (status, rest) = out.split_once("---").unwrap();
    assert!(status.contains(&format!("testos {commit}.0")), "{status}");
    assert!(
        status.contains(&format!("origin refspec: origin:{REF}")),
        "{status}"
    );
    let rest: Vec<&str> = rest.split_whitespace().collect();
    assert_eq!(
        rest,
        [
            "1",
            "1",
            "security.capability=0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=",
            "1777",
            "700",
            "loader.1"
        ],
        "{out}"
    );
}

#[test]
fn same_commit_same_bytes_and_qcow2() {
    let dir = workdir("/var/tmp");
    let (repo, _) = fixture_repo(dir.path());
    let a = dir.path().join("a.raw");
    let ja = image(&repo, &a, &["--remote-url", URL]);
    // Another file system for the staging area (tmpfs), another day.
    let shm = workdir("/dev/shm");
    let b = shm.path().join("b.raw");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let jb = image(&repo, &b, &["--remote-url", URL]);
    assert_eq!(ja["ids"], jb["ids"]);
    assert_eq!(sha256(&a), sha256(&b), "two builds of one commit differ");
    // The timestamp changes the bytes, not the identifiers.
    let c = shm.path().join("c.raw");
    let out = run_ok(
        trellis(&[
            "image",
            "--repo",
            &repo,
            "--ref",
            REF,
            "-o",
            p(&c),
            "--json",
        ])
        .args(["--remote-url", URL])
        .env("SOURCE_DATE_EPOCH", "1800000000"),
    );
    let jc: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(jc["timestamp"], 1_800_000_000u64);
    assert_eq!(jc["ids"], ja["ids"]);
    assert_ne!(sha256(&a), sha256(&c));
    drop(shm);

    let q = dir.path().join("disk.qcow2");
    let jq = image(&repo, &q, &["--remote-url", URL, "--format", "qcow2"]);
    assert_eq!(jq["format"], "qcow2");
    let info: Json = serde_json::from_str(&run_ok(
        Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&q),
    ))
    .unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], ja["disk_size"]);
    assert!(jq["file_size"].as_u64().unwrap() < ja["disk_size"].as_u64().unwrap() / 10);
    // Same content as the raw image.
    let cmp = run_raw(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(&a)
            .arg(&q),
    );
    assert!(
        cmp.status.success(),
        "{}",
        String::from_utf8_lossy(&cmp.stdout)
    );
}

#[test]
fn options_change_the_image() {
    let dir = workdir("/var/tmp");
    let (repo, commit) = fixture_repo(dir.path());
    let disk = dir.path().join("small.raw");
    let json = image(
        &repo,
        &disk,
        &[
            "--no-remote",
            "--os",
            "other",
            "--size",
            "700M",
            "--esp-size",
            "100M",
            "--karg",
            "panic=0",
            "--karg-append",
            "console=tty0",
            "--boot-counting-tries",
            "0",
            "--loader-timeout",
            "0",
        ],
    );
    assert_eq!(json["disk_size"], 700u64 << 20);
    assert_eq!(json["partitions"][0]["size"], 100u64 << 20);
    assert_eq!(json["partitions"][1]["size"], (700u64 - 102) << 20);
    assert_eq!(json["origin"], REF);
    assert_eq!(json["osname"], "other");
    let fs_uuid = json["ids"]["root_fs"].as_str().unwrap();
    assert_eq!(
        json["kargs"],
        format!("root=UUID={fs_uuid} rw console=ttyS0,115200 quiet panic=0 console=tty0")
    );
    let parts = check_table(&disk, &json, dir.path());
    // No boot counting: a plain entry name; no menu.
    let listing = run_ok(
        Command::new("mdir")
            .args(["-/", "-b", "-i", p(&parts.esp), "::/loader"])
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
    assert!(
        listing.contains("::/loader/entries/trellis-other-1.conf"),
        "{listing}"
    );
    assert_eq!(
        String::from_utf8(mtype(&parts.esp, "/loader/loader.conf")).unwrap(),
        "timeout 0\ndefault trellis-*\n"
    );
    let config = debugfs(&parts.root, "cat /ostree/repo/config");
    assert!(!config.contains("[remote"), "{config}");
    assert!(!config.contains("boot-counting-tries"), "{config}");
    assert_eq!(
        debugfs(&parts.root, &format!("cat /ostree/repo/refs/heads/{REF}")),
        commit
    );
    assert_eq!(
        debugfs(
            &parts.root,
            &format!("cat /ostree/deploy/other/deploy/{commit}.0.origin")
        ),
        format!("[origin]\nrefspec={REF}")
    );
}

/// Only the listed names in `dir` (hidden staging directories included).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, names, "in {}", dir.display());
}

#[test]
fn errors_leave_nothing_behind() {
    let dir = workdir("/var/tmp");
    let (repo, _) = fixture_repo(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let disk = out_dir.join("disk.raw");
    std::fs::write(&disk, b"previous image").unwrap();
    let fail = |args: &[&str]| -> String {
        let mut all = vec!["image", "--repo", &repo, "-o", p(&disk)];
        all.extend_from_slice(args);
        let out = run_raw(&mut trellis(&all));
        assert!(!out.status.success(), "{all:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        // The old image is untouched and nothing else is there.
        assert_eq!(std::fs::read(&disk).unwrap(), b"previous image", "{err}");
        assert_only(&out_dir, &["disk.raw"]);
        err
    };
    let e = fail(&["--ref", "no/such/ref", "--remote-url", URL]);
    assert!(
        e.contains("ref \"no/such/ref\" is not in repository"),
        "{e}"
    );
    let e = fail(&["--ref", "test/no-boot", "--remote-url", URL]);
    assert!(
        e.contains("no systemd-boot") && e.contains("systemd-boot to the manifest"),
        "{e}"
    );
    // Found too small after the sysroot was staged: the staging area goes too.
    let e = fail(&["--ref", REF, "--remote-url", URL, "--size", "300M"]);
    assert!(
        e.contains("the disk (--size) is too small: 300 MiB given"),
        "{e}"
    );
    let e = fail(&["--ref", REF, "--remote-url", URL, "--esp-size", "10M"]);
    assert!(e.contains("--esp-size"), "{e}");
    let e = fail(&["--ref", REF]);
    assert!(e.contains("--remote-url"), "{e}");
    let e = fail(&["--ref", REF, "--remote-url", "ftp://x/"]);
    assert!(e.contains("scheme \"ftp\" is not supported"), "{e}");
    let e = fail(&[
        "--ref",
        REF,
        "--remote-url",
        URL,
        "--remote-key",
        "not-a-key",
    ]);
    assert!(e.contains("--remote-key"), "{e}");
    let e = fail(&["--ref", REF, "--remote-url", URL, "--os", "../x"]);
    assert!(e.contains("invalid OS name"), "{e}");
    let e = fail(&["--ref", REF, "--no-remote", "--format", "vmdk"]);
    assert!(e.contains("raw and qcow2"), "{e}");
    let e = fail(&["--ref", REF, "--no-remote", "--karg", "x", "--size", "lots"]);
    assert!(e.contains("is not a size"), "{e}");
    // Not root.
    let out = run_raw(
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                trellis_bin(),
            ])
            .args(["image", "--repo", &repo, "--ref", REF, "--no-remote", "-o"])
            .arg(&disk),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("needs root"), "{err}");
    assert_only(&out_dir, &["disk.raw"]);
}

/// The example manifest, composed and imaged in one command; the image holds a real
/// Debian tree with systemd-boot and a kernel.
#[test]
fn build_composes_and_images_the_example() {
    let dir = workdir("/var/tmp");
    let repo = dir.path().join("repo");
    let disk = dir.path().join("debian.raw");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/minimal.toml");
    let cache = format!(
        "{}/debs",
        std::env::var("TRELLIS_TEST_CACHE").unwrap_or("/var/cache/trellis-test".into())
    );
    let text = run_ok(&mut trellis(&[
        "build",
        p(&example),
        "--repo",
        p(&repo),
        "--cache",
        &cache,
        "-o",
        p(&disk),
        "--remote-url",
        URL,
        "--json",
    ]));
    let json: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    eprintln!("{}", json["image"]);
    // The repository was created, in archive mode, and holds the composed ref.
    let config = std::fs::read_to_string(repo.join("config")).unwrap();
    assert!(config.contains("mode=archive-z2"), "{config}");
    let commit = json["compose"]["commit"].as_str().unwrap();
    let img = &json["image"];
    assert_eq!(img["commit"], commit);
    assert_eq!(img["ref"], "debian/bookworm/amd64");
    assert_eq!(img["osname"], "debian");
    assert_eq!(img["origin"], "origin:debian/bookworm/amd64");
    let kargs = img["kargs"].as_str().unwrap();
    assert!(
        kargs.contains("console=ttyS0,115200") && kargs.ends_with("panic=10"),
        "{kargs}"
    );

    let parts = check_table(&disk, img, dir.path());
    let boot = mtype(&parts.esp, "/EFI/BOOT/BOOTX64.EFI");
    assert!(
        boot.starts_with(b"MZ") && boot.len() > 50_000,
        "not systemd-boot"
    );
    let listing = run_ok(
        Command::new("mdir")
            .args(["-/", "-b", "-i", p(&parts.esp), "::/"])
            .env("MTOOLS_SKIP_CHECK", "1"),
    );
    assert!(
        listing.contains("::/loader/entries/trellis-debian-1+3.conf"),
        "{listing}"
    );
    assert!(
        listing.lines().any(|l| l.contains("/vmlinuz-")),
        "{listing}"
    );
    let dep = img["deployment"].as_str().unwrap();
    let out = with_mounted(
        &parts.root,
        dir.path(),
        &format!(
            "ostree admin status --sysroot=\"$M\"; echo ---; \
             ostree fsck --repo=\"$M/ostree/repo\" >&2; \
             getfattr -n security.capability -e base64 --absolute-names \"$M{dep}/usr/bin/ping\" | grep =; \
             cat \"$M{dep}/etc/fstab\""
        ),
    );
    assert!(out.contains(&format!("debian {commit}.0")), "{out}");
    assert!(
        out.contains("origin refspec: origin:debian/bookworm/amd64"),
        "{out}"
    );
    // ping's file capability made it through compose, the repo and mkfs.
    assert!(out.contains("security.capability=0s"), "{out}");

    // `trellis image` of the same ref, with the same remote, gives the same bytes.
    let again = dir.path().join("again.raw");
    let j = image_of(
        p(&repo),
        "debian/bookworm/amd64",
        &again,
        &["--remote-url", URL],
    );
    assert_eq!(j["commit"], commit);
    assert_eq!(
        sha256(&disk),
        sha256(&again),
        "a real tree imaged twice differs"
    );
    assert!(
        out.contains(" /sysroot/efi vfat umask=0077,shortname=winnt 0 2"),
        "{out}"
    );
}
