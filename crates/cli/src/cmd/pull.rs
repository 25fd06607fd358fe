use crate::RepoArg;
use crate::output::print_json;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use trellis_store::{Checksum, Repo};
use trellis_transport::pull::{
    self, LocalPullOptions, PullOptions, PullOutcome, PullProgress, PulledRef,
};

/// Pull commits from a remote (as `ostree pull`).
///
/// Resolves each REF through the remote's summary (or refs/heads/REF when it has none),
/// then fetches the commit and every object of its tree that the repository lacks, many
/// requests at once on kept-alive connections (HTTP/2 when an https server offers it).
/// Every object is checked against its checksum before it is stored. With the remote's
/// sign-verify on, a commit must carry an ed25519 signature by one of its keys, and a
/// summary.sig that does not verify is refused; nothing of a refused commit gets a ref.
/// The ref written is refs/remotes/REMOTE/REF (refs/heads/REF with --mirror), and only
/// once the whole commit is in place. An interrupted pull can be run again: it fetches only
/// what is still missing.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The remote, as added with `trellis remote add` (`REMOTE:REF` is accepted too).
    #[arg(value_name = "REMOTE")]
    remote: String,
    /// Refs or commit checksums to pull. None: with --mirror every ref in the remote's
    /// summary, otherwise the remote's `branches` option.
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// Also pull N parents of each commit (their trees too); -1 for the whole history.
    /// Parents the remote does not have are skipped.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    depth: i64,
    /// Write refs/heads/REF instead of refs/remotes/REMOTE/REF. With no REF, pull every
    /// ref in the remote's summary and copy summary and summary.sig as they are.
    #[arg(long)]
    mirror: bool,
    /// Fetch only commits and their detached metadata; they stay marked partial
    /// (state/COMMIT.commitpartial) until a full pull completes them.
    #[arg(long)]
    commit_metadata_only: bool,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Threads that fetch, verify and store objects, each with its own connections and
    /// an equal share of the requests in flight [default: one per core, at most 8].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    threads: Option<u16>,
    /// Seconds to wait for a connection, an answer or the next data before a request is
    /// tried again (and, after --retries, the pull fails naming the object).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    timeout: f64,
    /// Further attempts after a connection error, a timeout or a server error (5xx); a
    /// corrupt object is never retried.
    #[arg(long, value_name = "N", default_value_t = 2)]
    retries: u32,
    /// Print a JSON summary of what was fetched.
    #[arg(long)]
    json: bool,
}

/// Copy commits from another repository on this machine (as `ostree pull-local`).
///
/// SRC may be of any mode. Objects are verified against their checksums and written in
/// this repository's mode; when both repositories have the same mode and share a
/// filesystem they are hardlinked. Writes refs/heads/REF (refs/remotes/NAME/REF with
/// --remote); with no REF, every local ref of SRC.
#[derive(clap::Args)]
pub struct LocalArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The repository to copy from.
    #[arg(value_name = "SRC")]
    src: PathBuf,
    /// Refs or commit checksums in SRC. None: every local ref of SRC.
    #[arg(value_name = "REF")]
    refs: Vec<String>,
    /// Also copy N parents of each commit; -1 for the whole history.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    depth: i64,
    /// Write refs/remotes/NAME/REF instead of refs/heads/REF.
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Print a JSON summary of what was copied.
    #[arg(long)]
    json: bool,
}

/// Objects done of those known, bytes received and the rate, on stderr.
struct Bar {
    pb: ProgressBar,
    start: Instant,
    bytes: AtomicU64,
}

impl Bar {
    fn new(what: &str) -> Bar {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} objects, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        pb.enable_steady_tick(Duration::from_millis(200));
        Bar {
            pb,
            start: Instant::now(),
            bytes: AtomicU64::new(0),
        }
    }
}

impl PullProgress for Bar {
    fn queued(&self, objects: u64) {
        self.pb.set_length(objects);
    }

    fn fetched(&self, objects: u64, bytes: u64) {
        self.pb.inc(objects);
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        self.pb.set_message(format!(
            "{:.1} MB, {:.1} MB/s",
            total as f64 / 1e6,
            total as f64 / 1e6 / secs
        ));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.pb.finish_and_clear();
    }
}

fn hex(c: &Option<Checksum>) -> Option<String> {
    c.as_ref().map(Checksum::to_hex)
}

fn ref_json(r: &PulledRef) -> serde_json::Value {
    serde_json::json!({
        "remote_ref": r.remote_ref,
        "ref": r.local_ref,
        "commit": r.commit.to_hex(),
        "previous": hex(&r.previous),
    })
}

fn report(out: &PullOutcome, source: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({
            "source": source,
            "refs": out.refs.iter().map(ref_json).collect::<Vec<_>>(),
            "fetched": out.fetched,
            "fetched_total": out.fetched.total(),
            "already_present": out.already_present,
            "bytes": out.bytes,
            "requests": out.requests,
            "seconds": out.elapsed.as_secs_f64(),
            "summary_copied": out.summary_copied,
            "partial": out.partial.iter().map(Checksum::to_hex).collect::<Vec<_>>(),
            "recovered_checked": out.recovered.checked,
            "recovered_removed": out.recovered.removed.len(),
        }));
    }
    if !out.recovered.removed.is_empty() {
        eprintln!(
            "a write interrupted by a power loss left {} damaged objects (of {} checked); \
             they were removed and fetched again where needed",
            out.recovered.removed.len(),
            out.recovered.checked
        );
    }
    for r in &out.refs {
        let from = r.remote_ref.as_deref().unwrap_or("commit");
        match (&r.local_ref, &r.previous) {
            (Some(l), Some(p)) if *p == r.commit => {
                println!("{from} -> {l}: {} (unchanged)", r.commit)
            }
            (Some(l), Some(p)) => println!("{from} -> {l}: {p} -> {}", r.commit),
            (Some(l), None) => println!("{from} -> {l}: {}", r.commit),
            (None, _) => println!("{from}: {}", r.commit),
        }
    }
    for c in &out.partial {
        println!("{c}: commit metadata only (partial)");
    }
    let f = &out.fetched;
    let secs = out.elapsed.as_secs_f64();
    println!(
        "{} objects fetched ({} content, {} metadata), {:.1} MB in {secs:.2} s ({:.1} MB/s, {} requests); {} already present",
        f.total(),
        f.file,
        f.total() - f.file,
        out.bytes as f64 / 1e6,
        out.bytes as f64 / 1e6 / secs.max(1e-3),
        out.requests,
        out.already_present
    );
    Ok(())
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let (remote, mut refs) = match a.remote.split_once(':') {
        Some((r, first)) => (r.to_string(), vec![first.to_string()]),
        None => (a.remote.clone(), Vec::new()),
    };
    refs.extend(a.refs.iter().cloned());
    if !(a.timeout.is_finite() && a.timeout > 0.0) {
        anyhow::bail!(
            "--timeout {}: expected a number of seconds above 0",
            a.timeout
        );
    }
    let mut opts = PullOptions::new(&remote, refs);
    opts.depth = a.depth;
    opts.mirror = a.mirror;
    opts.commit_metadata_only = a.commit_metadata_only;
    opts.concurrency = usize::from(a.concurrency);
    if let Some(n) = a.threads {
        opts.threads = usize::from(n);
    }
    opts.timeout = Duration::from_secs_f64(a.timeout);
    opts.retries = a.retries;
    let out = {
        let bar = Bar::new("pull");
        pull::pull(&repo, &opts, &bar)
    };
    let out = out.with_context(|| format!("pulling from remote {remote}"))?;
    report(&out, &remote, a.json)?;
    Ok(ExitCode::SUCCESS)
}

pub fn run_local(a: LocalArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let src = Repo::open(&a.src)
        .with_context(|| format!("opening source repository {}", a.src.display()))?;
    let opts = LocalPullOptions {
        refs: a.refs.clone(),
        depth: a.depth,
        remote: a.remote.clone(),
    };
    if let Some(r) = &opts.remote {
        trellis_store::remote::validate_remote_name(r)?;
    }
    let out = {
        let bar = Bar::new("pull-local");
        pull::pull_local(&repo, &src, &opts, &bar)
    };
    let out = out.with_context(|| format!("copying from {}", a.src.display()))?;
    report(&out, &a.src.display().to_string(), a.json)?;
    Ok(ExitCode::SUCCESS)
}
