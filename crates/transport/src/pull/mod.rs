//! Pulling commits from a remote (spec §6, recipe §10.2): `summary.sig` and `summary`, or
//! `refs/heads/REF`; then each commit's `.commitmeta` and `.commit`, verified (hash,
//! structure, ed25519 signature when the remote asks for it) before anything is written;
//! then the tree, breadth-first, many requests in flight on kept-alive connections.
//!
//! Every object is verified before it is stored. A commit is marked partial
//! (`state/C.commitpartial`) before it is written, and the marker goes only once its whole
//! tree is in place; refs are written last. An interrupted pull leaves verified objects
//! under no ref, and the next one fetches only what is missing.

mod error;
mod fetch;
mod local;
mod resolve;
mod store;
mod walk;

pub use error::{PullError, Result};
pub use local::{LocalPullOptions, pull_local};

use fetch::{FetchOptions, Fetcher};
use resolve::Verify;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use store::CommitCheck;
use trellis_store::remote::Remote;
use trellis_store::{Checksum, Repo, RepoMode};

/// Metadata objects larger than this are refused (ostree's `OSTREE_MAX_METADATA_SIZE`).
pub(crate) const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;

/// What to pull, and how.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// A remote configured in the repository (`[remote "NAME"]`).
    pub remote: String,
    /// Refs (or commit checksums) on the remote. Empty: with `mirror`, every ref in the
    /// remote's summary; otherwise the remote's `branches` option.
    pub refs: Vec<String>,
    /// Parents to pull below each commit: 0 only the commit, -1 the whole history.
    pub depth: i64,
    /// Write `refs/heads/REF` instead of `refs/remotes/REMOTE/REF`; when no ref is named,
    /// also copy the remote's summary and summary.sig as they are.
    pub mirror: bool,
    /// Fetch commits and their detached metadata only; they stay marked partial.
    pub commit_metadata_only: bool,
    /// Requests in flight.
    pub concurrency: usize,
    /// Threads that fetch, verify and store, each with its own connections (at most
    /// `concurrency` are used).
    pub threads: usize,
    /// Longest wait for a connection, response headers or the next body bytes.
    pub timeout: Duration,
    /// Further attempts after a connection error, a timeout or a 5xx answer (never after a
    /// checksum mismatch).
    pub retries: u32,
}

impl PullOptions {
    pub fn new(remote: &str, refs: Vec<String>) -> PullOptions {
        PullOptions {
            remote: remote.to_string(),
            refs,
            depth: 0,
            mirror: false,
            commit_metadata_only: false,
            concurrency: 32,
            threads: default_threads(),
            timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

/// Progress reports; called from one thread at a time.
pub trait PullProgress: Sync {
    /// The number of objects known to be needed grew to `objects` (it grows as dirtrees
    /// are read).
    fn queued(&self, _objects: u64) {}
    /// Objects were processed (fetched or found present); `bytes` were received.
    fn fetched(&self, _objects: u64, _bytes: u64) {}
}

/// Progress that goes nowhere.
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// Objects written, by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ObjectCounts {
    pub commit: u64,
    pub commitmeta: u64,
    pub dirtree: u64,
    pub dirmeta: u64,
    pub file: u64,
}

impl ObjectCounts {
    pub fn total(&self) -> u64 {
        self.commit + self.commitmeta + self.dirtree + self.dirmeta + self.file
    }
}

/// One ref pulled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledRef {
    /// The name on the remote (or the source repository); `None` for a pulled checksum.
    pub remote_ref: Option<String>,
    /// The ref written locally (`REMOTE:REF` or, mirroring, `REF`); `None` when none is.
    pub local_ref: Option<String>,
    pub commit: Checksum,
    /// What the local ref pointed to before.
    pub previous: Option<Checksum>,
}

/// What a pull did.
#[derive(Clone, Debug, Default)]
pub struct PullOutcome {
    pub refs: Vec<PulledRef>,
    pub fetched: ObjectCounts,
    /// Objects the walk needed and found already present.
    pub already_present: u64,
    /// Bytes received (or copied, for a local pull).
    pub bytes: u64,
    /// Requests made (HTTP attempts, or files read from a `file://` remote).
    pub requests: u64,
    pub elapsed: Duration,
    /// The remote's summary (and summary.sig) were copied (a mirror of every ref).
    pub summary_copied: bool,
    /// Commits left marked partial (`commit_metadata_only`).
    pub partial: Vec<Checksum>,
    /// Objects a power loss during an earlier write left damaged, checked and removed
    /// before this pull (which fetched them again if it needed them).
    pub recovered: trellis_store::Recovery,
}

fn remote_error(remote: &Remote, why: impl Into<String>) -> PullError {
    PullError::Remote {
        remote: remote.name.clone(),
        why: why.into(),
    }
}

/// trellis has no OpenPGP: a remote that asks for GPG verification (ostree's default) is
/// refused with a way forward rather than pulled unverified.
fn refuse_gpg(remote: &Remote) -> Result<()> {
    let summary = remote.get("gpg-verify-summary").map(str::trim);
    if remote.gpg_verify()? || matches!(summary, Some("true" | "1")) {
        return Err(remote_error(
            remote,
            "gpg-verify is on (ostree's default when the remote does not say \
             gpg-verify=false), but trellis does not implement GPG: sign commits with ed25519 \
             and set sign-verify=true with verification-ed25519-key, or set gpg-verify=false \
             (e.g. `ostree remote add --no-gpg-verify`)",
        ));
    }
    Ok(())
}

fn fetch_options(remote: &Remote, opts: &PullOptions) -> Result<FetchOptions> {
    let tls_permissive = match remote.get("tls-permissive").map(str::trim) {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            return Err(remote_error(
                remote,
                format!("tls-permissive={v:?} is not true or false"),
            ));
        }
    };
    Ok(FetchOptions {
        timeout: opts.timeout,
        retries: opts.retries,
        tls_permissive,
        tls_ca_path: remote.get("tls-ca-path").map(PathBuf::from),
        proxy: remote.get("proxy").map(str::to_string),
        connections: opts.concurrency,
    })
}

/// Threads of a pull: one per core, at most 8.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().min(8))
}

/// Pull refs from a configured remote into `repo`.
pub fn pull(repo: &Repo, opts: &PullOptions, progress: &dyn PullProgress) -> Result<PullOutcome> {
    let start = Instant::now();
    let remote = repo.remote(&opts.remote)?;
    refuse_gpg(&remote)?;
    let commit_keys = if remote.sign_verify()? {
        Some(remote.verification_keys()?)
    } else {
        None
    };
    let summary_keys = if remote.sign_verify_summary()? {
        Some(remote.verification_keys()?)
    } else {
        None
    };
    for keys in [&commit_keys, &summary_keys].into_iter().flatten() {
        if keys.is_empty() {
            return Err(remote_error(
                &remote,
                "sign-verify is on, but no verification-ed25519-key or \
                 verification-ed25519-file is configured",
            ));
        }
    }
    let fetcher = Fetcher::new(&remote.url, fetch_options(&remote, opts)?)?;
    if let Some(dir) = fetcher.local_dir() {
        let mode = store::local_remote_mode(dir)?;
        if mode != RepoMode::Archive {
            return Err(remote_error(
                &remote,
                format!(
                    "{} is a {mode} repository; a file:// remote must be an archive \
                     repository (use `trellis pull-local` to copy from this one)",
                    dir.display()
                ),
            ));
        }
    }
    if opts.refs.is_empty() && !opts.mirror && remote.get("branches").is_none() {
        return Err(PullError::Invalid(format!(
            "name a ref to pull from remote {:?} (or use --mirror to pull every ref)",
            remote.name
        )));
    }

    // The walk shares the repository with its threads.
    let shared = Arc::new(Repo::open(repo.path())?);
    let session = repo.begin_write()?;
    // Resolving runs on this thread, which then runs the first lane of the walk with the
    // same connections.
    let rt = walk::lane_runtime()?;
    let check = Arc::new(CommitCheck {
        keys: commit_keys.clone(),
        metadata_only: opts.commit_metadata_only,
    });
    let (summary, resolved) = rt.block_on(async {
        let verify = Verify {
            remote: &remote.name,
            commit_keys: commit_keys.as_deref(),
            summary_keys: summary_keys.as_deref(),
        };
        // Commits named by checksum need no summary to be resolved (nor does their
        // verification: it is of the commits' own signatures).
        let by_checksum = !opts.mirror
            && !opts.refs.is_empty()
            && opts.refs.iter().all(|r| Checksum::from_hex(r).is_ok());
        let summary = if by_checksum {
            None
        } else {
            resolve::fetch_summary(&fetcher, &verify).await?
        };
        let names: Vec<String> = if !opts.refs.is_empty() {
            opts.refs.clone()
        } else if opts.mirror {
            let s = summary.as_ref().ok_or_else(|| {
                remote_error(
                    &remote,
                    "mirroring every ref needs the remote's summary, and it has none \
                     (name the refs to mirror)",
                )
            })?;
            s.parsed.refs.iter().map(|r| r.name.clone()).collect()
        } else {
            remote
                .get("branches")
                .unwrap_or_default()
                .split([';', ','])
                .map(str::trim)
                .filter(|b| !b.is_empty())
                .map(str::to_string)
                .collect()
        };
        let resolved =
            resolve::resolve_refs(&fetcher, &remote.name, summary.as_ref(), &names).await?;
        Ok::<_, PullError>((summary, resolved))
    })?;
    let targets: Vec<walk::Target> = resolved.iter().map(|r| r.target.clone()).collect();
    let plan = walk::Plan {
        repo: shared,
        check,
        concurrency: opts.concurrency.max(1),
        lanes: opts.threads.max(1),
        depth: opts.depth,
    };
    let walked = walk::walk(&plan, &rt, &fetcher, &targets, progress)?;
    drop(rt);

    // Objects reach the disk before the markers go and the refs move.
    repo.sync()?;
    if !opts.commit_metadata_only {
        for c in &walked.walked {
            repo.clear_partial(c)?;
        }
    }
    let mut refs = Vec::new();
    for r in &resolved {
        let local_ref = r.name.as_ref().map(|n| match opts.mirror {
            true => n.clone(),
            false => format!("{}:{n}", remote.name),
        });
        let previous = match &local_ref {
            Some(l) => repo.read_ref(l)?,
            None => None,
        };
        if let Some(l) = &local_ref {
            repo.set_ref(l, Some(&r.target.commit))?;
        }
        refs.push(PulledRef {
            remote_ref: r.name.clone(),
            local_ref,
            commit: r.target.commit,
            previous,
        });
    }
    let mut summary_copied = false;
    if opts.mirror
        && opts.refs.is_empty()
        && let Some(s) = &summary
    {
        copy_summary(repo, s)?;
        summary_copied = true;
    }
    let partial = if opts.commit_metadata_only {
        resolved
            .iter()
            .map(|r| r.target.commit)
            .filter(|c| repo.is_partial(c))
            .collect()
    } else {
        Vec::new()
    };
    let recovered = session.recovery.clone();
    session.finish()?;
    Ok(PullOutcome {
        refs,
        fetched: walked.fetched,
        already_present: walked.already_present,
        bytes: fetcher.bytes(),
        requests: fetcher.requests(),
        elapsed: start.elapsed(),
        summary_copied,
        partial,
        recovered,
    })
}

/// A mirror of every ref gets the remote's summary byte for byte, and its signature (or no
/// signature, when the remote has none: a stale one would vouch for another summary).
fn copy_summary(repo: &Repo, s: &resolve::RemoteSummary) -> Result<()> {
    repo.write_file_atomic(&repo.path().join("summary"), &s.bytes)?;
    let sig = repo.path().join("summary.sig");
    match &s.sig {
        Some(b) => repo.write_file_atomic(&sig, b)?,
        None => match std::fs::remove_file(&sig) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(trellis_store::Error::Io {
                    op: "remove",
                    path: sig,
                    source: e,
                }
                .into());
            }
            _ => {}
        },
    }
    Ok(())
}
