//! `trellis admin upgrade` and `trellis admin finalize`.

use crate::output::print_json;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use trellis_store::{Checksum, Repo};
use trellis_sysroot::stage::FinalizeOutcome;
use trellis_sysroot::upgrade::{
    Action, UpgradeHooks, UpgradeOptions, UpgradeOutcome, upgrade as run_upgrade,
};
use trellis_tools::Tool;
use trellis_transport::pull::PullProgress;

/// The unit that finalizes a staged deployment at shutdown (shipped by `trellis compose`).
const FINALIZE_UNIT: &str = "trellis-finalize-staged.service";

/// Exit code of `--check` when there is no update (rpm-ostree's convention).
const EXIT_NO_UPDATE: u8 = 77;

/// Download and stage the newest commit of the booted deployment's origin (as `ostree
/// admin upgrade`).
///
/// The origin (REMOTE:REF, recorded at deploy time) is pulled from the remote configured in
/// the sysroot's repository, with its signature checked when the remote has sign-verify
/// set: first only the commit, so that a refused signature or "no update" costs one
/// request and writes nothing; then, after checking the free space, its tree (an
/// interrupted download resumes where it stopped). On a booted system the new commit is
/// staged: /etc is merged and the boot entry written at shutdown, by
/// trellis-finalize-staged.service, which this command starts first. On a sysroot that is
/// not the running system (--sysroot DIR), it is deployed at once.
///
/// A commit older than the booted one is refused (--allow-downgrade accepts it). Running
/// the command again after an interruption completes the work.
///
/// Exit codes: 0 when an update was staged, there was none, or (--check) one is
/// available; 77 with --check when there is none; 1 on errors.
#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// Only check whether an update exists (fetches the commit object alone, stages
    /// nothing); exits 77 when there is none.
    #[arg(long)]
    check: bool,
    /// Reboot once the update is staged (`systemctl reboot`), to boot it at once.
    #[arg(long)]
    reboot: bool,
    /// Accept a commit older than the booted one.
    #[arg(long)]
    allow_downgrade: bool,
    /// The stateroot (default: the booted deployment's, or the only one).
    #[arg(long = "os", value_name = "OS")]
    os: Option<String>,
    /// Seconds to wait for a connection, an answer or the next data before a request is
    /// tried again.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
    /// Further attempts after a connection error, a timeout or a server error.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: u32,
    /// Print the result as JSON (progress still goes to stderr).
    #[arg(long)]
    json: bool,
}

/// Download progress on stderr: a bar on a terminal, otherwise a line every few seconds
/// (a log keeps them readable). The bar appears only once the download of the tree starts,
/// not while the commit alone is checked.
struct Progress {
    terminal: bool,
    bar: OnceLock<ProgressBar>,
    start: Instant,
    objects: AtomicU64,
    total: AtomicU64,
    bytes: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            bar: OnceLock::new(),
            start: Instant::now(),
            objects: AtomicU64::new(0),
            total: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn bar(&self) -> Option<&ProgressBar> {
        if !self.terminal {
            return None;
        }
        Some(self.bar.get_or_init(|| {
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template("download [{bar:30}] {pos}/{len} objects, {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            pb.enable_steady_tick(Duration::from_millis(500));
            pb
        }))
    }

    fn line(&self) -> String {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        format!(
            "download: {}/{} objects, {:.1} MB, {:.1} MB/s",
            self.objects.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs
        )
    }

    fn finish(&self) {
        match self.bar.get() {
            Some(pb) => pb.finish_and_clear(),
            None if !self.terminal && self.objects.load(Ordering::Relaxed) > 0 => {
                eprintln!("{}", self.line())
            }
            None => {}
        }
    }
}

impl PullProgress for Progress {
    fn queued(&self, objects: u64) {
        self.total.store(objects, Ordering::Relaxed);
        if let Some(pb) = self.bar() {
            pb.set_length(objects);
        }
    }

    fn fetched(&self, objects: u64, bytes: u64) {
        self.objects.fetch_add(objects, Ordering::Relaxed);
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        match self.bar() {
            Some(pb) => {
                pb.inc(objects);
                pb.set_message(format!("{:.1} MB", total as f64 / 1e6));
            }
            None => {
                let Ok(mut last) = self.last_line.lock() else {
                    return;
                };
                if last.elapsed() >= Duration::from_secs(2) {
                    *last = Instant::now();
                    eprintln!("{}", self.line());
                }
            }
        }
    }
}

/// What `admin upgrade` does right before staging, on the machine's own booted system: the
/// finalize unit must be running (its stop at shutdown is what finalizes), and the
/// installed system extensions are checked against the new OS.
struct BeforeStage {
    real: bool,
    /// The remote of the booted deployment's origin, for extensions built for the new OS.
    remote: Option<String>,
}

impl UpgradeHooks for BeforeStage {
    fn before_stage(&self, repo: &Repo, commit: &Checksum) -> Result<(), String> {
        if !self.real {
            return Ok(());
        }
        super::extensions::check_for_new_os(Path::new("/"), repo, self.remote.as_deref(), commit);
        let fail = |why: String| {
            format!(
                "cannot start {FINALIZE_UNIT}, which finalizes a staged deployment at \
                 shutdown, so nothing was staged: {why}"
            )
        };
        Tool::new("systemctl")
            .args(["start", FINALIZE_UNIT])
            .run()
            .map_err(|e| fail(e.to_string()))?;
        // A unit whose condition failed "starts" without being active, and then does
        // nothing at shutdown.
        Tool::new("systemctl")
            .args(["is-active", "--quiet", FINALIZE_UNIT])
            .run()
            .map(drop)
            .map_err(|_| fail("it is not active after `systemctl start`".into()))
    }
}

fn commit_label(version: Option<&str>, csum: &str) -> String {
    match version {
        Some(v) => format!("{v} ({csum})"),
        None => csum.to_string(),
    }
}

fn json_of(out: &UpgradeOutcome, rebooting: bool) -> serde_json::Value {
    let (action, deployment) = match &out.action {
        Action::NoUpdate => ("no-update", None),
        Action::Available => ("available", None),
        Action::Staged(s) => ("staged", Some(s.deployment.name())),
        Action::Deployed(d) => ("deployed", Some(d.deployment.name())),
    };
    serde_json::json!({
        "refspec": out.refspec,
        "from": {
            "osname": out.from.osname,
            "deployment": out.from.name(),
            "checksum": out.from.csum.to_hex(),
            "version": out.from.version,
        },
        "checksum": out.commit.to_hex(),
        "version": out.version,
        "timestamp": out.timestamp,
        "update_available": !matches!(out.action, Action::NoUpdate),
        "action": action,
        "deployment": deployment,
        "bytes_downloaded": out.bytes_downloaded,
        "objects_fetched": out.objects_fetched,
        "damaged_objects_removed": out.damaged_removed,
        "space": out.space.as_ref().map(|s| serde_json::json!({
            "needed": s.needed,
            "download": s.download,
            "reserve": s.reserve,
            "available": s.available,
        })),
        "rebooting": rebooting,
    })
}

pub fn upgrade(admin: &super::Args, a: &UpgradeArgs) -> anyhow::Result<ExitCode> {
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        anyhow::bail!(
            "--timeout {}: expected a number of seconds above 0",
            a.timeout
        );
    }
    if a.reboot && a.check {
        anyhow::bail!("--reboot and --check do not go together: --check stages nothing");
    }
    let sr = admin.open()?;
    let state = trellis_sysroot::load(&sr)
        .with_context(|| format!("reading sysroot {}", admin.sysroot.display()))?;
    let booted = state.booted().is_some();
    let remote = state
        .booted()
        .and_then(|d| d.refspec())
        .and_then(|r| r.split_once(':'))
        .map(|(remote, _)| remote.to_string());
    let real = admin.is_real_host() && booted;
    if a.reboot && !real {
        anyhow::bail!(
            "--reboot needs a booted trellis system; {} is not the running one",
            admin.sysroot.display()
        );
    }
    let opts = UpgradeOptions {
        osname: a.os.clone(),
        check_only: a.check,
        allow_downgrade: a.allow_downgrade,
        timeout: Duration::from_secs_f64(a.timeout),
        retries: a.retries,
        ..UpgradeOptions::default()
    };
    let hooks = BeforeStage {
        real: real && Path::new("/run/systemd/system").is_dir(),
        remote,
    };
    let out = {
        let progress = Progress::new();
        let r = run_upgrade(&sr, &opts, &progress, &hooks);
        progress.finish();
        r
    }
    .with_context(|| format!("upgrading in {}", admin.sysroot.display()))?;

    let rebooting = a.reboot && matches!(out.action, Action::Staged(_));
    if a.json {
        print_json(&json_of(&out, rebooting))?;
    } else {
        let new = commit_label(out.version.as_deref(), &out.commit.to_hex());
        let from = commit_label(out.from.version.as_deref(), &out.from.csum.to_hex());
        match &out.action {
            Action::NoUpdate => println!("no update: {} is at {new}", out.refspec),
            Action::Available => {
                println!(
                    "update available: {} is at {new} (booted: {from})",
                    out.refspec
                )
            }
            Action::Staged(s) => {
                if let Some(r) = &s.replaced {
                    println!("Replaced the staged deployment {}", r.name());
                }
                println!(
                    "Staged {} {}: {new}, from {}; it becomes the default at the next reboot",
                    s.deployment.osname,
                    s.deployment.name(),
                    out.refspec
                );
            }
            Action::Deployed(d) => println!(
                "Deployed {} {}: {new}, from {}",
                d.deployment.osname,
                d.deployment.name(),
                out.refspec
            ),
        }
        if out.damaged_removed > 0 {
            println!(
                "Removed {} objects damaged by a power loss during an earlier download",
                out.damaged_removed
            );
        }
        if out.bytes_downloaded > 0 || out.objects_fetched > 0 {
            println!(
                "Downloaded {} bytes ({} objects)",
                out.bytes_downloaded, out.objects_fetched
            );
        }
    }
    if rebooting {
        Tool::new("systemctl")
            .arg("reboot")
            .run()
            .context("rebooting into the staged deployment")?;
    }
    if a.check && matches!(out.action, Action::NoUpdate) {
        return Ok(ExitCode::from(EXIT_NO_UPDATE));
    }
    Ok(ExitCode::SUCCESS)
}

/// Finalize a staged deployment: merge /etc and make it the default boot entry.
///
/// Run at shutdown by trellis-finalize-staged.service (as `ostree admin finalize-staged`).
/// The /etc of the booted deployment, with the admin's changes up to now, is merged into
/// the staged one; the new boot entries (and systemd-boot entries on the ESP, with boot
/// counting) replace the old ones in one atomic switch, so an interruption leaves the old
/// entries in place. With nothing staged it does nothing and exits 0.
#[derive(clap::Args)]
pub struct FinalizeArgs {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn finalize(admin: &super::Args, a: &FinalizeArgs) -> anyhow::Result<ExitCode> {
    let sr = admin.open()?;
    let out = trellis_sysroot::stage::finalize_staged(&sr).with_context(|| {
        format!(
            "finalizing the staged deployment in {}",
            admin.sysroot.display()
        )
    })?;
    match out {
        FinalizeOutcome::NothingStaged => {
            if a.json {
                print_json(&serde_json::json!({ "finalized": null }))?;
            }
        }
        FinalizeOutcome::Locked(d) => {
            if a.json {
                print_json(&serde_json::json!({ "finalized": null, "locked": d.name() }))?;
            } else {
                println!(
                    "The staged deployment {} {} is locked; it stays staged",
                    d.osname,
                    d.name()
                );
            }
        }
        FinalizeOutcome::Finalized(f) => {
            let d = &f.deployment;
            if a.json {
                print_json(&serde_json::json!({
                    "finalized": d.name(),
                    "osname": d.osname,
                    "version": d.version,
                    "bootversion": f.write.bootversion,
                    "etc": f.etc.as_ref().and_then(|e| serde_json::to_value(e).ok()),
                    "esp_entries_written": f.write.esp.as_ref().map(|e| e.entries_written.clone()),
                }))?;
            } else {
                if let Some(etc) = &f.etc {
                    super::deploy::print_etc_report(etc);
                }
                println!(
                    "Finalized {} {}: the default boot entry from now on",
                    d.osname,
                    d.name()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
