//! Writing a commit: from a directory or a tar archive to objects, dirtrees, a commit
//! object and finally the ref, in that order (crash-safe: a ref never names a commit whose
//! objects are not all on disk).

mod dir;
mod store;
mod tar;
mod tree;

use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, Result};
use crate::format::{Commit, META_REF_BINDING};
use crate::gvariant::Value;
use crate::repo::Repo;
use std::path::Path;

pub use store::ContentJob;

/// Which parent the new commit gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ParentChoice {
    /// The current tip of the branch, if it exists.
    #[default]
    BranchTip,
    /// No parent (`--orphan`).
    Orphan,
    Commit(Checksum),
}

#[derive(Clone, Debug, Default)]
pub struct CommitOptions {
    /// The ref to update (`-b`). Without it the commit is written but no ref moves.
    pub branch: Option<String>,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch; `None` for now.
    pub timestamp: Option<u64>,
    /// Metadata entries, in order. `ostree.ref-binding` is appended for the branch, as
    /// `ostree commit -b` does, unless `no_bindings`.
    pub metadata: Vec<(String, Value)>,
    pub parent: ParentChoice,
    /// Make no commit when the tree equals the parent's.
    pub skip_if_unchanged: bool,
    /// Drop device nodes, sockets and FIFOs with a warning instead of failing.
    pub skip_special: bool,
    pub no_bindings: bool,
    /// Sign the commit with this ed25519 key before the ref moves.
    pub sign_with: Option<crate::sign::SecretKey>,
}

/// Where the tree comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    Dir(&'a Path),
    /// A tar archive, plain or compressed with gzip, zstd or xz (detected from its magic).
    Tar(&'a Path),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CommitStats {
    pub files: u64,
    pub symlinks: u64,
    pub dirs: u64,
    /// Payload bytes of regular files (hardlinked files counted once).
    pub bytes: u64,
    /// Objects that were not in the repository before.
    pub new_objects: u64,
    pub new_content_objects: u64,
    pub new_content_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The new commit, or the parent when the tree was unchanged and skipped.
    pub commit: Checksum,
    pub parent: Option<Checksum>,
    pub root_tree: Checksum,
    pub root_meta: Checksum,
    /// True when `skip_if_unchanged` found the tree equal to the parent's.
    pub unchanged: bool,
    pub stats: CommitStats,
    /// Paths dropped under `skip_special`, with why.
    pub warnings: Vec<String>,
}

/// Progress of the content phase: called with (files done, bytes done) out of the totals
/// reported first by `total`.
pub trait Progress: Sync {
    fn total(&self, _files: u64, _bytes: u64) {}
    fn advance(&self, _files: u64, _bytes: u64) {}
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Commit a tree. The whole write happens under the repository's shared lock.
pub fn commit(
    repo: &Repo,
    source: Source<'_>,
    opts: &CommitOptions,
    progress: &dyn Progress,
) -> Result<CommitOutcome> {
    if let Some(b) = &opts.branch {
        crate::repo::split_refspec(b)?;
    }
    let session = repo.begin_write()?;
    let parent = match &opts.parent {
        ParentChoice::Orphan => None,
        ParentChoice::Commit(c) => {
            if !repo.has_object(ObjectType::Commit, c)? {
                return Err(Error::Missing {
                    ty: ObjectType::Commit,
                    csum: *c,
                });
            }
            Some(*c)
        }
        ParentChoice::BranchTip => match &opts.branch {
            Some(b) => repo.read_ref(b)?,
            None => None,
        },
    };

    let mut warnings = Vec::new();
    let built = match source {
        Source::Dir(path) => dir::scan(path, opts.skip_special, &mut warnings)?,
        Source::Tar(path) => tar::scan(repo, path, opts.skip_special, &mut warnings, progress)?,
    };
    let mut stats = built.stats.clone();
    let checksums = store::store_contents(repo, built.jobs, &mut stats, progress)?;
    let (root_tree, root_meta) = tree::write_tree(repo, &built.root, &checksums, &mut stats)?;

    if opts.skip_if_unchanged
        && let Some(p) = parent
    {
        let pc = repo.load_commit(&p)?;
        if pc.root_tree == root_tree && pc.root_meta == root_meta {
            return Ok(CommitOutcome {
                commit: p,
                parent: pc.parent,
                root_tree,
                root_meta,
                unchanged: true,
                stats,
                warnings,
            });
        }
    }

    let mut metadata = opts.metadata.clone();
    if let Some(b) = &opts.branch
        && !opts.no_bindings
    {
        metadata.push((META_REF_BINDING.to_string(), Value::strv(&[b.as_str()])));
    }
    let commit = Commit {
        metadata,
        parent,
        related: Vec::new(),
        subject: opts.subject.clone(),
        body: opts.body.clone(),
        timestamp: opts.timestamp.unwrap_or_else(now),
        root_tree,
        root_meta,
    };
    let bytes = commit.to_bytes();
    let csum = Checksum::of(&bytes);
    if !repo.has_object(ObjectType::Commit, &csum)? {
        repo.write_metadata(ObjectType::Commit, &bytes)?;
        stats.new_objects += 1;
    }
    if let Some(key) = &opts.sign_with {
        repo.sign_commit(&csum, key)?;
    }
    // Objects, the commit and its signature reach the disk before any ref names them.
    repo.sync()?;
    if let Some(b) = &opts.branch {
        repo.set_ref(b, Some(&csum))?;
    }
    session.finish()?;
    Ok(CommitOutcome {
        commit: csum,
        parent,
        root_tree,
        root_meta,
        unchanged: false,
        stats,
        warnings,
    })
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
