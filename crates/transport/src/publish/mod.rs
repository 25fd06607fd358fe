//! Publish an archive repository to a directory (a web root) or object storage, uploading
//! only what the destination lacks, in an order that keeps it consistent for clients that
//! pull at any moment.
//!
//! Order, and why:
//! 1. dirtree, dirmeta and content objects the destination lacks (concurrently). Nothing
//!    names them yet, so their order does not matter.
//! 2. the `.commitmeta` of every published commit, always (signatures may have been added),
//!    then the `.commit` objects the destination lacks. A client fetches a commit's detached
//!    metadata before the commit, so the signature is there first.
//! 3. `config` if missing (clients read its mode once they see a summary).
//! 4. the refs that changed (`refs/heads/…`; clients without a summary read these).
//! 5. `summary`, then `summary.sig` (or, with `unsigned`, the stale signature is deleted).
//!    A client reads `summary.sig` first and, when it equals its cached copy, reuses its
//!    cached summary without fetching `summary`; uploading the summary first means such a
//!    client keeps the old, consistent pair until the new signature appears. A client
//!    reading in the short gap between the two uploads gets a pair that does not verify and
//!    fails closed (a retry succeeds); it never accepts a summary naming missing objects.
//!
//! Each step begins only after the previous one is complete and, for directories, synced
//! to disk; each file lands atomically (see [`dest`]). An interrupted publish leaves extra
//! objects but never a ref or summary naming something absent; running it again finishes.
//! An object counts as present on the destination only with the size of the local one, so
//! that a file cut short (a crash before the data reached the disk) is uploaded again.
//!
//! With `refs`, only those refs are uploaded; refs already on the destination are kept and
//! the new summary lists them all: it is built from the destination's refs after the
//! upload, with their commits read locally or from the destination. Refs on the destination
//! that the local repository lacks are never deleted. The local summary is regenerated too
//! (signed with the same key), so that the repository and its published copy agree.

pub mod dest;

pub use dest::{DestSpec, Destination};

use crate::export::{Selection, minimal_config, select};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use trellis_store::commit::Progress;
use trellis_store::format::{Commit, Summary, SummaryRef, validate_ref_name};
use trellis_store::gvariant::{self, Value};
use trellis_store::sign::{SecretKey, add_signature};
use trellis_store::{Checksum, ObjectType, Repo, RepoMode};

/// Largest metadata file read back from a destination.
const MAX_METADATA: u64 = 128 * 1024 * 1024;
const MAX_REF: u64 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "{path} is a {mode} repository; only archive repositories can be published (clients \
         fetch .filez objects)"
    )]
    NotArchive { path: PathBuf, mode: RepoMode },
    #[error("destination {dest:?}: {why}")]
    BadDestination { dest: String, why: String },
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{op} {path}: {source}")]
    Local {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the summary at {dest} is signed; pass a signing key to sign the new one, or allow \
         an unsigned summary (the stale summary.sig is then deleted)"
    )]
    WouldUnsign { dest: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Repo(#[from] trellis_store::Error),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

pub struct PublishOptions {
    /// Local refs to publish; empty for all.
    pub refs: Vec<String>,
    /// Parents to publish per ref; `None` for all of history.
    pub depth: Option<u32>,
    /// Sign the summary (published and local) with this key.
    pub sign_key: Option<SecretKey>,
    /// Allow replacing a signed summary on the destination by an unsigned one.
    pub unsigned: bool,
    /// Concurrent uploads.
    pub jobs: usize,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            refs: Vec::new(),
            depth: None,
            sign_key: None,
            unsigned: false,
            jobs: 8,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefChange {
    pub name: String,
    pub old: Option<String>,
    pub new: String,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PublishReport {
    pub destination: String,
    /// dirtree, dirmeta, content and commit objects uploaded.
    pub objects_uploaded: u64,
    /// Of which commits.
    pub commits_uploaded: u64,
    /// Objects the destination already had.
    pub objects_skipped: u64,
    /// Detached metadata uploaded (always, for every published commit that has some).
    pub commitmeta_uploaded: u64,
    /// Bytes of every file uploaded.
    pub bytes_uploaded: u64,
    pub config_uploaded: bool,
    pub refs_updated: Vec<RefChange>,
    pub refs_unchanged: u64,
    /// Refs the published summary lists.
    pub summary_refs: u64,
    pub summary_signed: bool,
    pub summary_signature_removed: bool,
}

fn object_rel(ty: ObjectType, c: &Checksum) -> String {
    format!("objects/{}", c.loose_path(ty.extension(true)))
}

fn signature_bytes(key: &SecretKey, summary: &[u8]) -> Vec<u8> {
    gvariant::to_bytes(&Value::vardict(add_signature(
        Vec::new(),
        key.sign(summary),
    )))
}

/// The objects a destination holds (`.filez`, `.dirtree`, `.dirmeta`, `.commit`), with
/// their sizes.
async fn dest_objects(
    dest: &Destination,
    jobs: usize,
) -> Result<HashMap<(ObjectType, Checksum), u64>, PublishError> {
    // One listing per `objects/XX/`, concurrently: object stores page listings, and 256
    // small ones in parallel beat one long sequential one.
    let lists: Vec<Vec<(String, u64)>> = futures::stream::iter(0..256u32)
        .map(|i| async move { dest.list(&format!("objects/{i:02x}")).await })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await?;
    let mut out = HashMap::new();
    for (rel, size) in lists.into_iter().flatten() {
        let Some(rest) = rel.strip_prefix("objects/") else {
            continue;
        };
        let Some((xx, file)) = rest.split_once('/') else {
            continue;
        };
        let Some((tail, ext)) = file.split_once('.') else {
            continue;
        };
        let ty = match ext {
            "filez" => ObjectType::File,
            "dirtree" => ObjectType::DirTree,
            "dirmeta" => ObjectType::DirMeta,
            "commit" => ObjectType::Commit,
            _ => continue,
        };
        if let Ok(c) = Checksum::from_hex(&format!("{xx}{tail}")) {
            out.insert((ty, c), size);
        }
    }
    Ok(out)
}

/// The destination's refs; `None` for a file that does not hold a checksum.
async fn dest_refs(
    dest: &Destination,
    jobs: usize,
) -> Result<BTreeMap<String, Option<Checksum>>, PublishError> {
    let names: Vec<String> = dest
        .list("refs/heads")
        .await?
        .into_iter()
        .filter_map(|(rel, _)| rel.strip_prefix("refs/heads/").map(str::to_string))
        .filter(|n| validate_ref_name(n).is_ok())
        .collect();
    futures::stream::iter(names)
        .map(|name| async move {
            let data = dest.get(&format!("refs/heads/{name}"), MAX_REF).await?;
            let commit = data.and_then(|d| {
                std::str::from_utf8(&d)
                    .ok()
                    .and_then(|t| Checksum::from_hex(t.trim()).ok())
            });
            Ok::<_, PublishError>((name, commit))
        })
        .buffer_unordered(jobs.max(1))
        .try_collect()
        .await
}

/// Upload objects from the local repository concurrently; returns (count, bytes).
async fn upload_objects(
    repo: &Repo,
    dest: &Destination,
    items: &[(ObjectType, Checksum)],
    jobs: usize,
    progress: &dyn Progress,
) -> Result<(u64, u64), PublishError> {
    futures::stream::iter(items)
        .map(|(ty, c)| async move {
            let immutable = *ty != ObjectType::CommitMeta;
            let n = dest
                .put_file(&object_rel(*ty, c), &repo.object_path(*ty, c), immutable)
                .await?;
            progress.advance(1, n);
            Ok::<u64, PublishError>(n)
        })
        .buffer_unordered(jobs.max(1))
        .try_fold((0u64, 0u64), |(k, b), n| async move { Ok((k + 1, b + n)) })
        .await
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Publish `repo` to `dest`; see the module documentation for what is uploaded and when.
pub async fn publish(
    repo: &Repo,
    dest: &Destination,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    if !repo.mode().is_archive() {
        return Err(PublishError::NotArchive {
            path: repo.path().to_path_buf(),
            mode: repo.mode(),
        });
    }
    let jobs = opts.jobs.max(1);
    let _lock = repo.lock_shared()?;
    let sel: Selection = select(repo, &opts.refs, opts.depth)?;
    let mut report = PublishReport {
        destination: dest.name().to_string(),
        ..PublishReport::default()
    };

    let present = dest_objects(dest, jobs).await?;
    let mut remote_refs = dest_refs(dest, jobs).await?;
    let signed_there = dest.exists("summary.sig").await?;
    if signed_there && opts.sign_key.is_none() && !opts.unsigned {
        return Err(PublishError::WouldUnsign {
            dest: dest.name().to_string(),
        });
    }

    let there = |o: &(ObjectType, Checksum)| {
        present
            .get(o)
            .is_some_and(|size| *size == file_size(&repo.object_path(o.0, &o.1)))
    };
    let missing: Vec<(ObjectType, Checksum)> =
        sel.objects.iter().filter(|o| !there(o)).copied().collect();
    let commits: Vec<(ObjectType, Checksum)> = sel
        .commits
        .iter()
        .map(|c| (ObjectType::Commit, *c))
        .filter(|o| !there(o))
        .collect();
    let mut metas = Vec::new();
    for c in &sel.commits {
        if repo.has_object(ObjectType::CommitMeta, c)? {
            metas.push((ObjectType::CommitMeta, *c));
        }
    }
    report.objects_skipped =
        (sel.objects.len() - missing.len() + sel.commits.len() - commits.len()) as u64;
    let planned = missing.iter().chain(&commits).chain(&metas);
    let total_bytes: u64 = planned
        .clone()
        .map(|(ty, c)| file_size(&repo.object_path(*ty, c)))
        .sum();
    progress.total(planned.count() as u64, total_bytes);

    // 1. Objects nothing names yet.
    let (n, bytes) = upload_objects(repo, dest, &missing, jobs, progress).await?;
    report.objects_uploaded += n;
    report.bytes_uploaded += bytes;
    dest.barrier()?;

    // 2. Detached metadata, then the commits.
    let (n, bytes) = upload_objects(repo, dest, &metas, jobs, progress).await?;
    report.commitmeta_uploaded = n;
    report.bytes_uploaded += bytes;
    dest.barrier()?;
    let (n, bytes) = upload_objects(repo, dest, &commits, jobs, progress).await?;
    report.objects_uploaded += n;
    report.commits_uploaded = n;
    report.bytes_uploaded += bytes;
    dest.barrier()?;

    // 3. config.
    if !dest.exists("config").await? {
        let cfg = minimal_config();
        report.bytes_uploaded += cfg.len() as u64;
        dest.put("config", Bytes::from(cfg), false).await?;
        report.config_uploaded = true;
    }

    // 4. Refs that changed.
    for r in &sel.refs {
        let old = remote_refs.get(&r.name).copied().flatten();
        if old == Some(r.commit) {
            report.refs_unchanged += 1;
            continue;
        }
        let data = format!("{}\n", r.commit);
        report.bytes_uploaded += data.len() as u64;
        dest.put(&format!("refs/heads/{}", r.name), Bytes::from(data), false)
            .await?;
        remote_refs.insert(r.name.clone(), Some(r.commit));
        report.refs_updated.push(RefChange {
            name: r.name.clone(),
            old: old.map(|c| c.to_hex()),
            new: r.commit.to_hex(),
        });
    }
    dest.barrier()?;

    // 5. The summary, then its signature.
    let key = opts.sign_key.as_ref();
    let local_summary = repo.update_summary(key)?;
    let mut final_refs = BTreeMap::new();
    for (name, commit) in &remote_refs {
        let commit = commit.ok_or_else(|| {
            PublishError::Invalid(format!(
                "{}/refs/heads/{name} does not hold a commit checksum; fix or delete it",
                dest.name()
            ))
        })?;
        final_refs.insert(name.clone(), commit);
    }
    let local_refs: BTreeMap<String, Checksum> = repo
        .list_local_refs()?
        .into_iter()
        .map(|r| (r.name, r.commit))
        .collect();
    let summary = if final_refs == local_refs {
        local_summary
    } else {
        summary_for(repo, dest, &final_refs).await?
    };
    let bytes = summary.to_bytes();
    report.summary_refs = summary.refs.len() as u64;
    report.bytes_uploaded += bytes.len() as u64;
    let sig = key.map(|k| signature_bytes(k, &bytes));
    dest.put("summary", Bytes::from(bytes), false).await?;
    match sig {
        Some(sig) => {
            report.bytes_uploaded += sig.len() as u64;
            dest.put("summary.sig", Bytes::from(sig), false).await?;
            report.summary_signed = true;
        }
        None if signed_there => {
            dest.delete("summary.sig").await?;
            report.summary_signature_removed = true;
        }
        None => {}
    }
    dest.barrier()?;
    Ok(report)
}

/// A summary of the destination's refs, with each commit read locally or from there.
async fn summary_for(
    repo: &Repo,
    dest: &Destination,
    refs: &BTreeMap<String, Checksum>,
) -> Result<Summary, PublishError> {
    let mut out = Vec::new();
    for (name, commit) in refs {
        let bytes = if repo.has_object(ObjectType::Commit, commit)? {
            repo.read_metadata(ObjectType::Commit, commit)?
        } else {
            let rel = object_rel(ObjectType::Commit, commit);
            let b = dest.get(&rel, MAX_METADATA).await?.ok_or_else(|| {
                PublishError::Invalid(format!(
                    "{}/refs/heads/{name} points at commit {commit}, which neither the \
                     destination nor the local repository has",
                    dest.name()
                ))
            })?;
            b.to_vec()
        };
        if Checksum::of(&bytes) != *commit {
            return Err(PublishError::Invalid(format!(
                "commit {commit} (ref {name}) does not hash to its name"
            )));
        }
        let parsed = Commit::parse(&bytes).map_err(|source| trellis_store::Error::BadObject {
            ty: ObjectType::Commit,
            csum: *commit,
            source,
        })?;
        out.push(SummaryRef {
            name: name.clone(),
            commit_size: bytes.len() as u64,
            commit: *commit,
            metadata: Summary::ref_metadata(parsed.timestamp, parsed.version()),
        });
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(Summary {
        refs: out,
        metadata: Summary::repo_metadata(RepoMode::Archive.config_name(), now),
    })
}

/// [`publish`] on a runtime of its own, for synchronous callers.
pub fn publish_blocking(
    repo: &Repo,
    dest: &Destination,
    opts: &PublishOptions,
    progress: &dyn Progress,
) -> Result<PublishReport, PublishError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Runtime)?;
    rt.block_on(publish(repo, dest, opts, progress))
}
