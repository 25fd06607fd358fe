//! `cargo xtask e2e`: the whole life of a trellis system in QEMU (TCG, OVMF, serial console).
//!
//! 1. Compose the example manifest (plus an autologin on the serial console, so the test can
//!    type), make a disk image whose remote is a `trellis serve` on the host's loopback
//!    (10.0.2.2 from the guest, through QEMU's user-mode network), boot it and check that
//!    `trellis admin status` shows one booted deployment.
//! 2. Compose a second commit with one more package and serve it.
//! 3. In the guest, change /etc, `trellis admin upgrade`, reboot: the new commit is booted,
//!    the package is there, the /etc change survived.
//! 4. `trellis admin rollback`, reboot: the first commit is booted again.
//! 5. Deploy a commit that cannot boot (its init exits): after the boot-counting tries,
//!    systemd-boot falls back to a good deployment by itself.
//! 6. Faults: a commit signed by another key is refused; QEMU killed while an upgrade
//!    downloads and right after it staged: the machine boots a good deployment and the retried
//!    upgrade succeeds.
//!
//! It prints the boot-to-login time, the upgrade time, and the bytes the guest downloaded for
//! the one-package change next to what `ostree pull` fetches for the same change (both
//! counted by the server).

mod manifest;
mod vm;

use crate::{cargo, deps, run_ok, run_status, show, target_dir, workspace_root};
use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use vm::{Vm, VmConfig};

const OS_REF: &str = "debian/bookworm/amd64";
/// How the guest reaches the host's loopback through QEMU's user-mode network.
const HOST_FROM_GUEST: &str = "10.0.2.2";
/// The prompt the serial autologin leads to.
const PROMPT: &str = "root@trellis:";
/// The kernel's first line on the serial console: a (re)boot has started.
const KERNEL_START: &str = "Linux version ";
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const CMD_TIMEOUT: Duration = Duration::from_secs(120);
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Args)]
pub struct E2eArgs {
    /// Where the repo, the images and the logs go (emptied first).
    #[arg(long, default_value = "/var/tmp/trellis-e2e")]
    workdir: PathBuf,
    /// Use this trellis binary instead of building `trellis-cli` in release mode.
    #[arg(long, value_name = "PATH")]
    trellis: Option<PathBuf>,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 1536)]
    memory: u32,
    /// Leave out the fault scenarios (step 6).
    #[arg(long)]
    no_faults: bool,
}

/// What the run measured, printed at the end.
#[derive(Default)]
struct Report {
    compose_secs: Vec<f64>,
    image_secs: f64,
    image_bytes: u64,
    boot_to_login_secs: Vec<f64>,
    upgrade_secs: f64,
    upgrade_bytes: u64,
    ostree_bytes: u64,
    reboot_into_upgrade_secs: f64,
    fallback_secs: f64,
    sysext_build_secs: Vec<f64>,
    sysext_bytes: u64,
}

struct Env {
    trellis: PathBuf,
    work: PathBuf,
    repo: PathBuf,
    key: PathBuf,
    serve_log: PathBuf,
    port: u16,
    vm_cfg: VmConfig,
}

impl Env {
    fn trellis(&self) -> Command {
        Command::new(&self.trellis)
    }

    fn trellis_ok(&self, args: &[&str]) -> Result<String> {
        let mut cmd = self.trellis();
        cmd.args(args);
        eprintln!("e2e: {}", show(&cmd));
        run_ok(&mut cmd)
    }

    /// Compose `manifest`; the new tip commit of OS_REF.
    fn compose(&self, manifest: &Path, report: &mut Report) -> Result<String> {
        let start = Instant::now();
        let mut cmd = self.trellis();
        cmd.arg("compose")
            .arg(manifest)
            .arg("--repo")
            .arg(&self.repo);
        eprintln!("e2e: {}", show(&cmd));
        let status = run_status(&mut cmd)?;
        ensure!(status.success(), "{} failed ({status})", show(&cmd));
        report.compose_secs.push(start.elapsed().as_secs_f64());
        self.update_summary()?;
        self.rev_parse(OS_REF)
    }

    fn rev_parse(&self, rev: &str) -> Result<String> {
        let repo = self.repo.to_string_lossy();
        Ok(self
            .trellis_ok(&["rev-parse", "--repo", &repo, rev])?
            .trim()
            .to_string())
    }

    fn update_summary(&self) -> Result<()> {
        let repo = self.repo.to_string_lossy();
        let key = self.key.to_string_lossy();
        self.trellis_ok(&["summary", "--repo", &repo, "-u", "--sign-key", &key])?;
        Ok(())
    }

    /// Where `trellis sysext publish` puts the extensions (served as /extensions/).
    fn extensions(&self) -> PathBuf {
        self.work.join("published/extensions")
    }

    /// Build the `debug` extension (gdb) over the tip of OS_REF and publish it.
    /// `dir` (under the work dir) gets debug.raw: systemd wants the file named after the
    /// extension.
    fn publish_debug_extension(&self, dir: &str, report: &mut Report) -> Result<()> {
        let repo = self.repo.to_string_lossy().into_owned();
        let out = self.work.join(dir);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let image = out.join("debug.raw");
        let start = Instant::now();
        self.trellis_ok(&[
            "sysext",
            "build",
            "--repo",
            &repo,
            "--ref",
            OS_REF,
            "--name",
            "debug",
            "--packages",
            "gdb",
            "--format",
            "erofs",
            "-o",
            &image.to_string_lossy(),
        ])?;
        report.sysext_build_secs.push(start.elapsed().as_secs_f64());
        report.sysext_bytes = fs::metadata(&image)?.len();
        let dest = self.work.join("published");
        self.trellis_ok(&[
            "sysext",
            "publish",
            "--sign-key",
            &self.key.to_string_lossy(),
            &image.to_string_lossy(),
            &dest.to_string_lossy(),
        ])?;
        Ok(())
    }

    /// Bytes the server has sent so far (its access log).
    fn served_bytes(&self) -> Result<u64> {
        let text = fs::read_to_string(&self.serve_log)
            .with_context(|| format!("reading {}", self.serve_log.display()))?;
        Ok(text.lines().filter_map(served_line_bytes).sum())
    }

    fn boot(&self, report: &mut Report) -> Result<Vm> {
        let start = Instant::now();
        let mut vm = Vm::start(&self.vm_cfg)?;
        login(&mut vm)?;
        report
            .boot_to_login_secs
            .push(start.elapsed().as_secs_f64());
        eprintln!(
            "e2e: guest logged in after {:.1}s",
            start.elapsed().as_secs_f64()
        );
        Ok(vm)
    }
}

/// The byte count of one access-log line of `trellis serve -v`:
/// `PEER "METHOD PATH VERSION" STATUS BYTES`.
fn served_line_bytes(line: &str) -> Option<u64> {
    let rest = line.rsplit_once('"')?.1;
    let mut fields = rest.split_whitespace();
    let status: u16 = fields.next()?.parse().ok()?;
    let bytes: u64 = fields.next()?.parse().ok()?;
    (status < 400).then_some(bytes)
}

/// Wait for the autologin shell, then quiet the kernel on the console.
fn login(vm: &mut Vm) -> Result<()> {
    vm.wait_for(PROMPT, BOOT_TIMEOUT)
        .context("waiting for the guest to boot to a shell")?;
    // The rest of the prompt line.
    vm.wait_for("# ", Duration::from_secs(30))?;
    // A wide terminal, so that bash echoes long commands whole instead of scrolling them.
    vm.ok(
        "dmesg -n 1; stty cols 1000; export TERM=dumb SYSTEMD_PAGER= SYSTEMD_COLORS=0",
        CMD_TIMEOUT,
    )?;
    Ok(())
}

/// Reboot the guest and wait for the shell again.
fn reboot(vm: &mut Vm, report: &mut Report) -> Result<f64> {
    let start = Instant::now();
    vm.send("systemctl reboot\n")?;
    // The old prompt may still be unread: wait for the new kernel first.
    vm.wait_for(KERNEL_START, BOOT_TIMEOUT)
        .context("waiting for the guest to restart")?;
    login(vm)?;
    let secs = start.elapsed().as_secs_f64();
    report.boot_to_login_secs.push(secs);
    eprintln!("e2e: rebooted to a shell in {secs:.1}s");
    Ok(secs)
}

/// After a good boot: no unit failed and systemd-bless-boot marked the booted entry good,
/// so every entry that still counts tries is one that used them all up (a broken one).
fn check_blessed(vm: &mut Vm) -> Result<()> {
    vm.ok(
        "for i in $(seq 90); do systemctl is-active -q systemd-bless-boot && break; sleep 2; done",
        Duration::from_secs(300),
    )?;
    let failed = vm.ok(
        "systemctl --failed --no-legend --plain | wc -l",
        CMD_TIMEOUT,
    )?;
    let count = failed
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    if count.trim() != "0" {
        let list = vm.ok("systemctl --failed --no-legend --plain", CMD_TIMEOUT)?;
        bail!("units failed in the guest:\n{list}");
    }
    let entries = vm.ok("ls /efi/loader/entries", CMD_TIMEOUT)?;
    ensure!(
        entries
            .lines()
            .filter(|e| e.ends_with(".conf"))
            .all(|e| !e.contains('+') || e.contains("+0-")),
        "the booted entry was not blessed:\n{entries}"
    );
    Ok(())
}

/// The checksum of the booted deployment, from `trellis admin status`.
fn booted_commit(vm: &mut Vm) -> Result<(String, String)> {
    let status = vm.ok("trellis admin status", CMD_TIMEOUT)?;
    let line = status
        .lines()
        .find(|l| l.starts_with("* "))
        .with_context(|| format!("no booted deployment in `trellis admin status`:\n{status}"))?;
    let name = line
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("unexpected status line {line:?}"))?;
    let commit = name.split('.').next().unwrap_or(name).to_string();
    Ok((commit, status))
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(l.local_addr()?.port())
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(a: &E2eArgs) -> Result<ExitCode> {
    let root = workspace_root()?;
    deps::ensure_debian_packages(&root)?;
    if !rustix::process::geteuid().is_root() {
        bail!("cargo xtask e2e composes Debian trees and builds disk images: run it as root");
    }
    let trellis = match &a.trellis {
        Some(t) => t.clone(),
        None => {
            let status = run_status(cargo().current_dir(&root).args([
                "build",
                "--release",
                "-p",
                "trellis-cli",
            ]))?;
            ensure!(status.success(), "building trellis failed ({status})");
            target_dir(&root).join("release/trellis")
        }
    };
    let work = a.workdir.clone();
    if work.exists() {
        fs::remove_dir_all(&work).with_context(|| format!("emptying {}", work.display()))?;
    }
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let env = Env {
        trellis,
        repo: work.join("repo"),
        key: work.join("signing.key"),
        serve_log: work.join("serve.log"),
        port: free_port()?,
        vm_cfg: VmConfig {
            disk: work.join("disk.qcow2"),
            vars: work.join("OVMF_VARS.fd"),
            serial_log: work.join("serial.log"),
            memory_mib: a.memory,
        },
        work,
    };
    let mut report = Report::default();
    let result = scenario(&env, &root, a, &mut report);
    if let Err(e) = &result {
        eprintln!("e2e: FAILED: {e:#}");
        eprintln!(
            "e2e: logs: {} (serial console), {} (server)",
            env.vm_cfg.serial_log.display(),
            env.serve_log.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn scenario(env: &Env, root: &Path, a: &E2eArgs, report: &mut Report) -> Result<()> {
    let work = &env.work;
    let repo = env.repo.to_string_lossy().into_owned();
    env.trellis_ok(&["keygen", "-o", &env.key.to_string_lossy()])?;
    let public = fs::read_to_string(env.key.with_extension("key.pub"))
        .context("reading the public key trellis keygen wrote")?;
    env.trellis_ok(&["init", "--repo", &repo, "--mode", "archive"])?;

    // 1. Compose, image, boot.
    let example = root.join("examples/minimal.toml");
    let v1_manifest = work.join("v1.toml");
    manifest::derive(&example, &v1_manifest, &env.key, &[])?;
    let v1 = env.compose(&v1_manifest, report)?;
    eprintln!("e2e: first commit {v1}");

    fs::create_dir_all(env.extensions())?;
    let serve_log = fs::File::create(&env.serve_log)?;
    let bind = format!("127.0.0.1:{}", env.port);
    let mut serve = env.trellis();
    serve
        .args(["serve", "-v", "--repo", &repo, "--bind", &bind, "--dir"])
        .arg(format!("extensions={}", env.extensions().display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(serve_log);
    let _server = Server(serve.spawn().context("starting trellis serve")?);

    let start = Instant::now();
    let url = format!("http://{HOST_FROM_GUEST}:{}", env.port);
    env.trellis_ok(&[
        "image",
        "--repo",
        &repo,
        "--ref",
        OS_REF,
        "-o",
        &env.vm_cfg.disk.to_string_lossy(),
        "--format",
        "qcow2",
        "--remote-url",
        &url,
        "--remote-key",
        public.trim(),
    ])?;
    report.image_secs = start.elapsed().as_secs_f64();
    report.image_bytes = fs::metadata(&env.vm_cfg.disk)?.len();
    VmConfig::fresh_vars(&env.vm_cfg.vars)?;

    let mut vm = env.boot(report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted == v1,
        "the guest booted {booted}, expected {v1}:\n{status}"
    );
    let deployments = status
        .lines()
        .filter(|l| l.len() > 2 && !l.starts_with("  "))
        .count();
    ensure!(
        deployments == 1,
        "expected one deployment in the fresh image:\n{status}"
    );

    // 2. A second commit with one more package.
    let v2_manifest = work.join("v2.toml");
    manifest::derive(&example, &v2_manifest, &env.key, &["strace"])?;
    let v2 = env.compose(&v2_manifest, report)?;
    ensure!(v2 != v1, "the second compose made no new commit");
    eprintln!("e2e: second commit {v2}");

    // 3. Change /etc, upgrade, reboot.
    vm.ok(
        "echo 'changed on the device' > /etc/trellis-e2e.conf && echo 'admin line' >> /etc/motd",
        CMD_TIMEOUT,
    )?;
    vm.run("strace -V", CMD_TIMEOUT).and_then(|(rc, _)| {
        ensure!(rc != 0, "strace is already in the first image");
        Ok(())
    })?;
    let before = env.served_bytes()?;
    let start = Instant::now();
    let out = vm.ok("trellis admin upgrade", UPGRADE_TIMEOUT)?;
    report.upgrade_secs = start.elapsed().as_secs_f64();
    report.upgrade_bytes = env.served_bytes()? - before;
    eprintln!("e2e: upgrade:\n{out}");
    report.reboot_into_upgrade_secs = reboot(&mut vm, report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted == v2,
        "after the upgrade the guest booted {booted}, expected {v2}:\n{status}"
    );
    vm.ok("strace -V", CMD_TIMEOUT)
        .context("the package added by the upgrade")?;
    let conf = vm.ok(
        "cat /etc/trellis-e2e.conf; tail -n 1 /etc/motd",
        CMD_TIMEOUT,
    )?;
    ensure!(
        conf.contains("changed on the device") && conf.contains("admin line"),
        "the /etc changes did not survive the upgrade:\n{conf}"
    );

    // What `ostree pull` fetches for the same change, from the same server: trellis must
    // fetch no more.
    report.ostree_bytes = ostree_pull_bytes(env, &v1)?;
    ensure!(
        report.upgrade_bytes <= report.ostree_bytes,
        "the upgrade fetched {} bytes, ostree pull {} for the same change",
        report.upgrade_bytes,
        report.ostree_bytes
    );

    // 4. Rollback.
    vm.ok("trellis admin rollback", CMD_TIMEOUT)?;
    reboot(&mut vm, report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted == v1,
        "after the rollback the guest booted {booted}, expected {v1}:\n{status}"
    );

    // 5. A deployment that cannot boot falls back by itself.
    vm.ok(
        &format!("trellis admin deploy {v2} --karg init=/bin/false"),
        CMD_TIMEOUT,
    )?;
    let start = Instant::now();
    vm.send("systemctl reboot\n")?;
    // Each failed try ends in a kernel panic; panic=10 reboots it.
    vm.wait_for("Kernel panic", BOOT_TIMEOUT)
        .context("the broken deployment should fail to boot")?;
    login(&mut vm)?;
    report.fallback_secs = start.elapsed().as_secs_f64();
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted == v1 || booted == v2,
        "after the failed boots the guest booted {booted}:\n{status}"
    );
    let kargs = vm.ok("cat /proc/cmdline", CMD_TIMEOUT)?;
    ensure!(
        !kargs.contains("init=/bin/false"),
        "the fallback booted the broken deployment: {kargs}"
    );
    let entries = vm.ok("ls /efi/loader/entries", CMD_TIMEOUT)?;
    ensure!(
        entries.contains("+0-"),
        "the broken entry should have used all its tries:\n{entries}"
    );
    check_blessed(&mut vm)?;

    // A system extension: install, use, and (after the faults) remove.
    env.publish_debug_extension("sysext-v1", report)?;
    vm.ok("trellis sysext install debug", UPGRADE_TIMEOUT)?;
    let gdb = vm.ok("gdb --version | head -n 1", CMD_TIMEOUT)?;
    ensure!(gdb.contains("GNU gdb"), "gdb from the extension: {gdb}");

    if !a.no_faults {
        vm = faults(env, vm, report, &v2)?;
    }
    vm.ok("trellis sysext remove debug", CMD_TIMEOUT)?;
    let (rc, _) = vm.run("command -v gdb", CMD_TIMEOUT)?;
    ensure!(
        rc != 0,
        "gdb is still there after the extension was removed"
    );
    vm.send("systemctl poweroff\n")?;
    vm.wait_exit(Duration::from_secs(300))?;
    Ok(())
}

/// Bytes `ostree pull` fetches to go from `from` to the tip, counted by the server.
fn ostree_pull_bytes(env: &Env, from: &str) -> Result<u64> {
    let orepo = env.work.join("ostree-repo");
    let orepo_s = orepo.to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{}", env.port);
    let ostree = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new("ostree");
        cmd.args(args);
        eprintln!("e2e: {}", show(&cmd));
        run_ok(&mut cmd)
    };
    ostree(&["init", "--repo", &orepo_s, "--mode", "bare-user"])?;
    // Without signature verification: Debian 12's ostree is built without ed25519
    // ("Requested signature type is not implemented"). It fetches summary.sig and the
    // detached metadata anyway, so the bytes compare like for like.
    ostree(&[
        "remote",
        "add",
        "--repo",
        &orepo_s,
        "--no-gpg-verify",
        "e2e",
        &url,
    ])?;
    ostree(&[
        "pull",
        "--repo",
        &orepo_s,
        "e2e",
        &format!("{OS_REF}@{from}"),
    ])?;
    // The guest had no summary cached (its first commit came in the image): neither may
    // ostree, which keeps the one of the pull above in tmp/cache.
    let cache = orepo.join("tmp/cache");
    if cache.exists() {
        fs::remove_dir_all(&cache).with_context(|| format!("removing {}", cache.display()))?;
    }
    let before = env.served_bytes()?;
    ostree(&["pull", "--repo", &orepo_s, "e2e", OS_REF])?;
    let bytes = env.served_bytes()? - before;
    let _ = fs::remove_dir_all(&orepo);
    Ok(bytes)
}

/// Step 6: a refused signature, and QEMU killed during an upgrade.
fn faults(env: &Env, mut vm: Vm, report: &mut Report, good: &str) -> Result<Vm> {
    let repo = env.repo.to_string_lossy().into_owned();
    let work = &env.work;
    // A child commit with a large new file, so that the download takes a while.
    let tree = work.join("v3-tree");
    env.trellis_ok(&["checkout", "--repo", &repo, good, &tree.to_string_lossy()])?;
    let blob = tree.join("usr/share/trellis-e2e-blob");
    let mut data = Vec::with_capacity(48 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < 48 << 20 {
        // xorshift: incompressible, so the download is as big as the file.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(&blob, &data)?;
    // A new OS version, which the installed extension does not match: the upgrade must
    // say so and fetch the extension built for it.
    let os_release = tree.join("usr/lib/os-release");
    let text = fs::read_to_string(&os_release)?;
    ensure!(
        text.contains("VERSION_ID=\"12\""),
        "unexpected os-release:\n{text}"
    );
    fs::write(
        &os_release,
        text.replace("VERSION_ID=\"12\"", "VERSION_ID=\"12.99\""),
    )?;

    // A commit signed by another key is refused, and nothing is staged.
    let other = work.join("other.key");
    env.trellis_ok(&["keygen", "-o", &other.to_string_lossy()])?;
    let tree_s = tree.to_string_lossy().into_owned();
    env.trellis_ok(&[
        "commit",
        "--repo",
        &repo,
        "-b",
        OS_REF,
        "--subject",
        "signed by a stranger",
        "--sign-key",
        &other.to_string_lossy(),
        &tree_s,
    ])?;
    env.update_summary()?;
    let (rc, out) = vm.run("trellis admin upgrade", UPGRADE_TIMEOUT)?;
    ensure!(
        rc != 0,
        "an upgrade to a commit signed by another key succeeded:\n{out}"
    );
    ensure!(
        out.to_lowercase().contains("sign"),
        "the refusal should talk about the signature:\n{out}"
    );
    let status = vm.ok("trellis admin status", CMD_TIMEOUT)?;
    ensure!(
        !status.contains("staged"),
        "a refused commit was staged:\n{status}"
    );
    eprintln!("e2e: wrong signature refused:\n{out}");

    // The same tree, signed properly.
    env.trellis_ok(&[
        "commit",
        "--repo",
        &repo,
        "-b",
        OS_REF,
        "--subject",
        "a big file",
        "--parent",
        good,
        "--sign-key",
        &env.key.to_string_lossy(),
        &tree_s,
    ])?;
    env.update_summary()?;
    let v3 = env.rev_parse(OS_REF)?;
    env.publish_debug_extension("sysext-v3", report)?;

    // Killed while downloading.
    let before = env.served_bytes()?;
    vm.send("trellis admin upgrade\n")?;
    let start = Instant::now();
    while env.served_bytes()? - before < 4 << 20 {
        ensure!(
            start.elapsed() < UPGRADE_TIMEOUT,
            "the upgrade never started downloading"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    vm.kill();
    eprintln!("e2e: killed the VM while it downloaded");
    let mut vm = env.boot(report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(booted != v3, "booted the half-downloaded commit?\n{status}");

    // Killed right after staging (the staged deployment lives until shutdown).
    let out = vm
        .ok("trellis admin upgrade", UPGRADE_TIMEOUT)
        .context("retrying the upgrade after the kill")?;
    ensure!(
        out.contains("would not be merged on the new OS") && out.contains("fetched debug"),
        "the upgrade should warn about the extension and fetch the one for the new OS:\n{out}"
    );
    vm.kill();
    eprintln!("e2e: killed the VM with a staged deployment");
    let mut vm = env.boot(report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted != v3,
        "an unfinalized staged deployment was booted:\n{status}"
    );

    // The retried upgrade completes.
    vm.ok("trellis admin upgrade", UPGRADE_TIMEOUT)?;
    reboot(&mut vm, report)?;
    let (booted, status) = booted_commit(&mut vm)?;
    ensure!(
        booted == v3,
        "after the retried upgrade the guest booted {booted}, expected {v3}:\n{status}"
    );
    check_blessed(&mut vm)?;
    let gdb = vm.ok("gdb --version | head -n 1", CMD_TIMEOUT)?;
    ensure!(
        gdb.contains("GNU gdb"),
        "the extension for the new OS is not merged: {gdb}"
    );
    Ok(vm)
}

fn print_report(r: &Report) {
    let list = |v: &[f64]| {
        v.iter()
            .map(|s| format!("{s:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("\ne2e: all steps passed");
    println!("  compose (s):                 {}", list(&r.compose_secs));
    println!(
        "  image (s, bytes):            {:.1}, {} MiB qcow2",
        r.image_secs,
        r.image_bytes >> 20
    );
    println!(
        "  boot to login (s, TCG):      {}",
        list(&r.boot_to_login_secs)
    );
    println!("  upgrade (s):                 {:.1}", r.upgrade_secs);
    println!(
        "  sysext build, gdb (s):       {}; erofs image {:.1} MiB",
        list(&r.sysext_build_secs),
        r.sysext_bytes as f64 / 1048576.0
    );
    println!(
        "  reboot into the upgrade (s): {:.1}",
        r.reboot_into_upgrade_secs
    );
    println!(
        "  fallback after a bad deployment (s): {:.1}",
        r.fallback_secs
    );
    println!(
        "  bytes for the one-package upgrade: trellis {} ({:.2} MiB), ostree pull {} ({:.2} MiB), ratio {:.3}",
        r.upgrade_bytes,
        r.upgrade_bytes as f64 / 1048576.0,
        r.ostree_bytes,
        r.ostree_bytes as f64 / 1048576.0,
        r.upgrade_bytes as f64 / r.ostree_bytes.max(1) as f64
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_bytes() {
        assert_eq!(
            served_line_bytes("127.0.0.1:4000 \"GET /objects/ab/cd.filez HTTP/1.1\" 200 1234"),
            Some(1234)
        );
        assert_eq!(
            served_line_bytes("127.0.0.1:4000 \"GET /x HTTP/1.1\" 404 0"),
            None
        );
        assert_eq!(
            served_line_bytes("serving repo at http://127.0.0.1:1/"),
            None
        );
    }
}
