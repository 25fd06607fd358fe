//! `cargo xtask`: developer tasks for trellis.
//!
//! - `cargo xtask test`: make sure the Debian minbase fixture exists
//!   (`scripts/debian-fixture.sh`), then run every workspace test with `TRELLIS_DEBIAN_ROOTFS`
//!   pointing at it (cargo-nextest when installed, else `cargo test`).
//! - `cargo xtask e2e`: compose, image, boot in QEMU, upgrade, roll back, fall back and
//!   survive faults (see `e2e`).
//! - `cargo xtask bench commit`: `ostree commit` against `trellis commit`, measured side by side
//!   in the same run: wall time and peak RSS of each child, and ratios.

mod bench_pull;
mod deps;
mod e2e;
mod quickstart;

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const FIXTURE_SCRIPT: &str = "scripts/debian-fixture.sh";
const ROOTFS_ENV: &str = "TRELLIS_DEBIAN_ROOTFS";
const BENCH_TIMESTAMP: &str = "2020-01-01T00:00:00Z";
const BENCH_SUBJECT: &str = "bench";
const BENCH_REF: &str = "main";

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "trellis developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the Debian fixture if needed, then run every workspace test.
    Test(TestArgs),
    /// The README's main job: install what is missing, build trellis, compose the example
    /// manifest into build/repo and make the bootable disk image build/disk.qcow2.
    Quickstart(quickstart::QuickstartArgs),
    /// The end-to-end run in QEMU: compose the example, make a disk image, boot it, upgrade,
    /// roll back, fall back from a deployment that cannot boot, and survive faults.
    E2e(e2e::E2eArgs),
    /// Benchmarks against the real `ostree`, measured in the same run.
    Bench {
        #[command(subcommand)]
        target: BenchTarget,
    },
    /// Write and free MIB MiB of memory (run by the benchmarks before each timed run).
    #[command(hide = true)]
    Prefault { mib: usize },
}

#[derive(Args)]
struct TestArgs {
    /// Extra arguments for `cargo nextest run` (or `cargo test`), e.g. a test filter.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

#[derive(Subcommand)]
enum BenchTarget {
    /// `ostree commit` against `trellis commit` (first commit and an unchanged re-commit).
    Commit(CommitBench),
    /// `ostree pull` against `trellis pull` from nginx and `trellis serve` on loopback.
    Pull(bench_pull::PullBench),
}

#[derive(Args)]
struct CommitBench {
    /// Tree to commit [default: the Debian minbase fixture]. Device nodes, FIFOs and sockets
    /// are left out (ostree cannot commit them): if there are any, a stripped copy is used.
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Timed runs of each measurement, each into a fresh repo; medians are reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Repo modes to measure.
    #[arg(long, value_delimiter = ',', default_values = ["archive", "bare-user"])]
    modes: Vec<Mode>,
    /// Where the repos (and the stripped tree) go [default: $TMPDIR or /tmp]. Use the
    /// filesystem you care about; the tree and the repos should share it.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Use this trellis binary instead of building `trellis-cli` in release mode.
    #[arg(long, value_name = "PATH")]
    trellis: Option<PathBuf>,
    #[command(flatten)]
    prefault: Prefault,
}

/// Memory written and freed before each timed run (see [`Prefault::run`]).
#[derive(Args, Clone, Copy)]
pub(crate) struct Prefault {
    /// MiB of memory to write and free before each timed run, so that the run's new page
    /// cache comes from pages the hypervisor has already backed (0: off). See README.md.
    #[arg(long = "prefault-mib", value_name = "MIB", default_value_t = 512)]
    mib: usize,
}

impl Prefault {
    /// Write `mib` MiB of fresh memory and give it back.
    ///
    /// On a VM whose balloon device reports free memory to the host (virtio-balloon free
    /// page reporting, as on the machines these benchmarks were written on), the host
    /// discards what the guest frees within seconds, and the next write to such a page
    /// faults in the host: 400 MiB of page cache took 0.73 s to write there instead of
    /// 0.08 s. A pull or a commit writes 160-180 MiB of new page cache, so each tool's
    /// time would carry 0.2-0.4 s of this, varying with what the host took back. Pages
    /// written and freed just before the run head the kernel's free lists, and the run's
    /// page cache is made of them, as it would be on a machine without that device.
    ///
    /// A child process does the writing: in this one, the memory would raise the peak
    /// RSS that the timed tools inherit from it at exec.
    pub(crate) fn run(self) -> Result<()> {
        if self.mib > 0 {
            let exe = std::env::current_exe().context("finding the xtask binary")?;
            run_ok(Command::new(exe).args(["prefault", &self.mib.to_string()]))?;
        }
        Ok(())
    }

    pub(crate) fn describe(self) -> String {
        match self.mib {
            0 => "no memory prefaulted before the runs".to_string(),
            n => format!("{n} MiB of memory written and freed before each run"),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Archive,
    BareUser,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Mode::Archive => "archive",
            Mode::BareUser => "bare-user",
        })
    }
}

fn main() -> Result<ExitCode> {
    match Cli::parse().cmd {
        Cmd::Test(a) => test(&a),
        Cmd::Quickstart(a) => quickstart::run(&a),
        Cmd::E2e(a) => e2e::run(&a),
        Cmd::Bench {
            target: BenchTarget::Commit(a),
        } => bench_commit(&a).map(|()| ExitCode::SUCCESS),
        Cmd::Bench {
            target: BenchTarget::Pull(a),
        } => bench_pull::run(&a).map(|()| ExitCode::SUCCESS),
        Cmd::Prefault { mib } => {
            std::hint::black_box(vec![1u8; mib << 20]);
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn workspace_root() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask's manifest directory has no parent")?;
    Ok(root.to_path_buf())
}

/// The cargo that runs us (so that the same toolchain builds everything), else `cargo`.
fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => root.join(d), // `join` keeps an absolute path as it is.
        None => root.join("target"),
    }
}

fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Run with inherited stdio; an error only if it could not be started.
fn run_status(cmd: &mut Command) -> Result<ExitStatus> {
    cmd.stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", show(cmd)))
}

/// Run, requiring success; stdout is returned, stderr shown on failure.
fn run_ok(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}):\n{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("{} printed non-UTF-8", show(cmd)))
}

/// A child's exit status as our own exit code (128 + signal for a killed child, as shells do).
fn exit_code(status: ExitStatus) -> ExitCode {
    match (status.code(), status.signal()) {
        (Some(c), _) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(1)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// The Debian minbase tree: `$TRELLIS_DEBIAN_ROOTFS` if set, else built (once) by the script.
fn debian_fixture(root: &Path) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(ROOTFS_ENV) {
        let p = PathBuf::from(p);
        ensure!(
            p.is_dir(),
            "{ROOTFS_ENV}={} is not a directory",
            p.display()
        );
        return Ok(p);
    }
    let script = root.join(FIXTURE_SCRIPT);
    let mut cmd = Command::new("bash");
    cmd.arg(&script).stderr(Stdio::inherit());
    let stdout = run_ok(&mut cmd)?;
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .with_context(|| format!("{} printed no path", script.display()))?;
    let p = PathBuf::from(line);
    ensure!(
        p.is_dir(),
        "{} printed {}, which is not a directory",
        script.display(),
        p.display()
    );
    Ok(p)
}

/// Depth-first walk that does not follow symlinks; `f` sees every entry below `dir`.
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata) -> Result<()>) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        f(&path, &meta)?;
        if meta.is_dir() {
            walk(&path, f)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// cargo xtask test

fn test(a: &TestArgs) -> Result<ExitCode> {
    let root = workspace_root()?;
    deps::ensure_debian_packages(&root)?;
    let mut cmd = cargo();
    cmd.current_dir(&root);
    let dir = debian_fixture(&root).context("the tests need the Debian fixture")?;
    eprintln!("xtask: {ROOTFS_ENV}={}", dir.display());
    cmd.env(ROOTFS_ENV, dir);
    let nextest = cargo()
        .args(["nextest", "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        eprintln!("xtask: cargo-nextest is not installed; using cargo test");
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(&a.args);
    eprintln!("xtask: {}", show(&cmd));
    Ok(exit_code(run_status(&mut cmd)?))
}

// ---------------------------------------------------------------------------------------------
// cargo xtask bench commit

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    Ostree,
    Trellis,
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Tool::Ostree => "ostree",
            Tool::Trellis => "trellis",
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Commit,
    Recommit,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Op::Commit => "commit",
            Op::Recommit => "recommit",
        })
    }
}

/// One child process, measured.
struct Sample {
    wall: Duration,
    /// Peak resident set size of the child, KiB (`ru_maxrss`).
    max_rss_kib: u64,
    stdout: String,
}

/// All runs of one (mode, op, tool).
struct Series {
    mode: Mode,
    op: Op,
    tool: Tool,
    walls: Vec<Duration>,
    rss: Vec<u64>,
    /// Apparent size of the repo after the operation, bytes (last run).
    repo_bytes: u64,
    checksum: Option<String>,
}

impl Series {
    fn median_wall(&self) -> Duration {
        median(&self.walls)
    }
    fn min_wall(&self) -> Duration {
        self.walls.iter().copied().min().unwrap_or_default()
    }
    fn median_rss(&self) -> u64 {
        median(&self.rss)
    }
}

fn median<T: Copy + Ord + Default>(xs: &[T]) -> T {
    let mut v = xs.to_vec();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn bench_commit(a: &CommitBench) -> Result<()> {
    let root = workspace_root()?;
    let ostree_version = run_ok(Command::new("ostree").arg("--version"))
        .context("the benchmark needs the ostree CLI: apt-get install ostree")?;
    let ostree_version = ostree_version
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version: "))
        .unwrap_or("?")
        .trim_matches('\'')
        .to_string();

    let trellis = match &a.trellis {
        Some(p) => p.clone(),
        None => {
            eprintln!("xtask: building trellis (release)");
            let mut build = cargo();
            build
                .current_dir(&root)
                .args(["build", "--release", "-p", "trellis-cli"]);
            let status = run_status(&mut build)?;
            ensure!(status.success(), "{} failed ({status})", show(&build));
            target_dir(&root).join("release").join("trellis")
        }
    };
    ensure!(
        trellis.is_file(),
        "no trellis binary at {}",
        trellis.display()
    );

    let workdir = a.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("trellis-bench-")
        .tempdir_in(&workdir)
        .with_context(|| format!("cannot make a directory in {}", workdir.display()))?;
    let source = match &a.tree {
        Some(t) => t.clone(),
        None => debian_fixture(&root)?,
    };
    let tree = commit_ready_tree(&source, work.path())?;

    let t = Instant::now();
    let (files, bytes) = warm_up(&tree)?;
    eprintln!(
        "xtask: warm-up read of {}: {files} files, {:.1} MiB in {:.2} s",
        tree.display(),
        mib(bytes),
        t.elapsed().as_secs_f64()
    );

    let mut series: Vec<Series> = Vec::new();
    for &mode in &a.modes {
        for op in [Op::Commit, Op::Recommit] {
            for tool in [Tool::Ostree, Tool::Trellis] {
                series.push(Series {
                    mode,
                    op,
                    tool,
                    walls: Vec::new(),
                    rss: Vec::new(),
                    repo_bytes: 0,
                    checksum: None,
                });
            }
        }
        // Repos stay until the end. ext4 without a journal (as on this machine's disk) will
        // not reuse an inode freed less than 60 s ago (6 min while its inode table block is
        // dirty), and every allocation scans past such inodes again: deleting one run's repo
        // made the next run pay seconds of inode scans for it.
        for run in 1..=a.runs {
            // Alternate which tool goes first, so that neither always meets a warmer cache.
            let order = if run % 2 == 1 {
                [Tool::Ostree, Tool::Trellis]
            } else {
                [Tool::Trellis, Tool::Ostree]
            };
            for tool in order {
                let repo = work.path().join(format!("repo-{tool}-{mode}-{run}"));
                init_repo(tool, &trellis, mode, &repo)?;
                for op in [Op::Commit, Op::Recommit] {
                    eprintln!("xtask: [{mode} run {run}/{}] {tool} {op}", a.runs);
                    a.prefault.run()?;
                    let sample = measure(&mut commit_cmd(tool, &trellis, &repo, &tree))?;
                    let s = series
                        .iter_mut()
                        .find(|s| s.mode == mode && s.op == op && s.tool == tool)
                        .context("internal: no series")?;
                    s.walls.push(sample.wall);
                    s.rss.push(sample.max_rss_kib);
                    s.repo_bytes = dir_bytes(&repo)?;
                    s.checksum = last_checksum(&sample.stdout);
                }
            }
        }
    }

    print_report(a, &tree, files, bytes, &ostree_version, &series);
    let t = Instant::now();
    let repos: Vec<PathBuf> = fs::read_dir(work.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("repo-"))
        })
        .collect();
    for repo in repos {
        fs::remove_dir_all(&repo).with_context(|| format!("cannot remove {}", repo.display()))?;
    }
    eprintln!(
        "xtask: removed the benchmark repos in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `source` itself if ostree can commit it, else a copy without device nodes, FIFOs and
/// sockets (the fixture has /dev nodes) under `work`.
fn commit_ready_tree(source: &Path, work: &Path) -> Result<PathBuf> {
    ensure!(source.is_dir(), "{} is not a directory", source.display());
    let mut special = 0usize;
    walk(source, &mut |_, m| {
        special += usize::from(is_special(m));
        Ok(())
    })?;
    if special == 0 {
        return Ok(source.to_path_buf());
    }
    let copy = work.join("tree");
    eprintln!(
        "xtask: copying {} to {} without its {special} special files",
        source.display(),
        copy.display()
    );
    let mut cp = Command::new("cp");
    cp.arg("-a")
        .arg("--reflink=auto")
        .arg("--")
        .arg(source)
        .arg(&copy);
    run_ok(&mut cp)?;
    let mut doomed = Vec::new();
    walk(&copy, &mut |p, m| {
        if is_special(m) {
            doomed.push(p.to_path_buf());
        }
        Ok(())
    })?;
    for p in doomed {
        fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
    }
    Ok(copy)
}

fn is_special(m: &fs::Metadata) -> bool {
    let t = m.file_type();
    t.is_block_device() || t.is_char_device() || t.is_fifo() || t.is_socket()
}

/// Read every regular file once, so that both tools start from a warm page cache.
fn warm_up(tree: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    walk(tree, &mut |p, m| {
        if m.is_file() {
            let mut f =
                fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            bytes += io::copy(&mut f, &mut io::sink())
                .with_context(|| format!("cannot read {}", p.display()))?;
            files += 1;
        }
        Ok(())
    })?;
    Ok((files, bytes))
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0u64;
    walk(dir, &mut |_, m| {
        if m.is_file() {
            total += m.len();
        }
        Ok(())
    })?;
    Ok(total)
}

fn init_repo(tool: Tool, trellis: &Path, mode: Mode, repo: &Path) -> Result<()> {
    let mut cmd = match tool {
        Tool::Ostree => {
            let mut c = Command::new("ostree");
            c.arg("init")
                .arg(format!("--repo={}", repo.display()))
                .arg(format!("--mode={mode}"));
            c
        }
        Tool::Trellis => {
            let mut c = Command::new(trellis);
            c.arg("init")
                .arg("--repo")
                .arg(repo)
                .arg("--mode")
                .arg(mode.to_string());
            c
        }
    };
    run_ok(&mut cmd).map(drop)
}

fn commit_cmd(tool: Tool, trellis: &Path, repo: &Path, tree: &Path) -> Command {
    match tool {
        Tool::Ostree => {
            let mut c = Command::new("ostree");
            c.arg("commit")
                .arg(format!("--repo={}", repo.display()))
                .args(["-b", BENCH_REF])
                .arg(format!("--tree=dir={}", tree.display()))
                .arg(format!("--timestamp={BENCH_TIMESTAMP}"))
                .args(["-s", BENCH_SUBJECT]);
            c
        }
        Tool::Trellis => {
            let mut c = Command::new(trellis);
            c.arg("commit")
                .arg("--repo")
                .arg(repo)
                .args(["-b", BENCH_REF])
                .arg(tree)
                .args(["--subject", BENCH_SUBJECT, "--timestamp", BENCH_TIMESTAMP]);
            c
        }
    }
}

/// The last line of `stdout` if it is a SHA-256 in hex (both CLIs print the new commit).
fn last_checksum(stdout: &str) -> Option<String> {
    let line = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    (line.len() == 64 && line.bytes().all(|b| b.is_ascii_hexdigit())).then(|| line.to_string())
}

/// Run `cmd` to completion after a `sync(2)`, measuring its wall time and peak RSS.
fn measure(cmd: &mut Command) -> Result<Sample> {
    // Write back what earlier runs left dirty, so that it is not billed to this one.
    // SAFETY: sync(2) has no arguments and cannot fail.
    unsafe { libc::sync() };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    let mut out = child.stdout.take().context("child stdout is not piped")?;
    let mut err = child.stderr.take().context("child stderr is not piped")?;
    let (stdout, stderr) = std::thread::scope(|s| {
        let e = s.spawn(move || {
            let mut b = Vec::new();
            err.read_to_end(&mut b).map(|_| b)
        });
        let mut b = Vec::new();
        let o = out.read_to_end(&mut b).map(|_| b);
        (o, e.join())
    });
    // Reap the child before looking at the pipes' results, so that no error leaves a zombie.
    let (status, max_rss_kib) = wait4(child.id())?;
    let wall = start.elapsed();
    let stdout = stdout.context("reading the child's stdout")?;
    let stderr = stderr
        .map_err(|_| anyhow!("the stderr reader panicked"))?
        .context("reading the child's stderr")?;
    if !status.success() {
        bail!(
            "{} failed ({status}):\n{}",
            show(cmd),
            String::from_utf8_lossy(&stderr).trim_end()
        );
    }
    Ok(Sample {
        wall,
        max_rss_kib,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
    })
}

/// Reap our child `pid` with wait4(2): its exit status and peak RSS in KiB.
fn wait4(pid: u32) -> Result<(ExitStatus, u64)> {
    let pid = libc::pid_t::try_from(pid).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is a plain C struct for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (std's Child is never waited on);
        // both pointers are to live locals of the right types.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e).context("wait4");
        }
    }
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    Ok((ExitStatus::from_raw(status), rss))
}

fn print_report(
    a: &CommitBench,
    tree: &Path,
    files: u64,
    bytes: u64,
    ostree_version: &str,
    series: &[Series],
) {
    println!();
    println!(
        "commit benchmark: {} ({files} files, {:.1} MiB), ostree {ostree_version}, \
         {} run(s) each, median [min]",
        tree.display(),
        mib(bytes),
        a.runs
    );
    println!("{}", a.prefault.describe());
    println!(
        "{:<10} {:<9} {:<8} {:>18} {:>13} {:>9}",
        "mode", "op", "tool", "wall time s", "peak RSS MiB", "repo MiB"
    );
    for s in series {
        println!(
            "{:<10} {:<9} {:<8} {:>18} {:>13.1} {:>9.1}",
            s.mode,
            s.op,
            s.tool,
            format!(
                "{:.2} [{:.2}]",
                s.median_wall().as_secs_f64(),
                s.min_wall().as_secs_f64()
            ),
            s.median_rss() as f64 / 1024.0,
            mib(s.repo_bytes)
        );
    }

    println!();
    println!("ratios ostree/trellis (above 1: trellis is faster / uses less memory)");
    println!("{:<10} {:<9} {:>8} {:>9}", "mode", "op", "time", "peak RSS");
    let find = |mode, op, tool| {
        series
            .iter()
            .find(|s| s.mode == mode && s.op == op && s.tool == tool)
    };
    for &mode in &a.modes {
        for op in [Op::Commit, Op::Recommit] {
            let (Some(o), Some(t)) = (find(mode, op, Tool::Ostree), find(mode, op, Tool::Trellis))
            else {
                continue;
            };
            let time = o.median_wall().as_secs_f64() / t.median_wall().as_secs_f64().max(1e-9);
            let rss = o.median_rss() as f64 / (t.median_rss().max(1)) as f64;
            println!("{:<10} {:<9} {:>7.2}x {:>8.2}x", mode, op, time, rss);
        }
    }

    println!();
    for &mode in &a.modes {
        let o = find(mode, Op::Commit, Tool::Ostree).and_then(|s| s.checksum.clone());
        let t = find(mode, Op::Commit, Tool::Trellis).and_then(|s| s.checksum.clone());
        match (o, t) {
            (Some(o), Some(t)) if o == t => println!("{mode}: same commit checksum {o}"),
            (o, t) => println!(
                "{mode}: commit checksums differ: ostree {}, trellis {}",
                o.as_deref().unwrap_or("(none printed)"),
                t.as_deref().unwrap_or("(none printed)")
            ),
        }
    }
}
