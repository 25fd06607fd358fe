//! The CPU and disk side of a pull, run off the async runtime: verify what arrived against
//! the checksum that names it, store it, and scan dirtrees for what is still missing.

use super::error::{PullError, Result};
use super::fetch::Body;
use std::path::Path;
use trellis_store::format::{Commit, DirMeta, DirTree, META_REF_BINDING};
use trellis_store::gvariant::Value;
use trellis_store::sign::{self, PublicKey};
use trellis_store::{Checksum, ObjectType, Repo};

/// What a dirtree holds that the walk must still visit.
#[derive(Default)]
pub(crate) struct Scan {
    /// Content objects not in the repository.
    pub missing_files: Vec<Checksum>,
    /// Dirmeta objects not in the repository.
    pub missing_dirmetas: Vec<Checksum>,
    /// Every subdirectory's dirtree: present ones are scanned too, since a present dirtree
    /// does not prove that its children are.
    pub subtrees: Vec<Checksum>,
    /// Children found already present.
    pub present: Vec<(ObjectType, Checksum)>,
}

fn bad(ty: ObjectType, csum: &Checksum, url: &str, why: impl Into<String>) -> PullError {
    PullError::BadObject {
        what: format!("{ty} object {csum}"),
        url: url.into(),
        why: why.into(),
    }
}

/// The bytes of a metadata object, which is always fetched into memory.
fn mem(ty: ObjectType, csum: &Checksum, url: &str, body: Body) -> Result<bytes::Bytes> {
    match body {
        Body::Mem(b) => Ok(b),
        Body::Spooled(_) => Err(bad(ty, csum, url, "metadata object was spooled")),
    }
}

fn check_hash(ty: ObjectType, csum: &Checksum, url: &str, data: &[u8]) -> Result<()> {
    let actual = Checksum::of(data);
    if actual != *csum {
        return Err(bad(ty, csum, url, format!("content hashes to {actual}")));
    }
    Ok(())
}

fn scan(repo: &Repo, tree: &DirTree) -> Result<Scan> {
    let mut s = Scan::default();
    for (_, c) in &tree.files {
        if repo.has_object(ObjectType::File, c)? {
            s.present.push((ObjectType::File, *c));
        } else {
            s.missing_files.push(*c);
        }
    }
    for (_, t, m) in &tree.dirs {
        if repo.has_object(ObjectType::DirMeta, m)? {
            s.present.push((ObjectType::DirMeta, *m));
        } else {
            s.missing_dirmetas.push(*m);
        }
        s.subtrees.push(*t);
    }
    Ok(s)
}

/// Verify a fetched dirtree (hash, structure, names), store it and scan it.
pub(crate) fn store_dirtree(repo: &Repo, csum: &Checksum, body: Body, url: &str) -> Result<Scan> {
    let data = mem(ObjectType::DirTree, csum, url, body)?;
    check_hash(ObjectType::DirTree, csum, url, &data)?;
    let tree =
        DirTree::parse(&data).map_err(|e| bad(ObjectType::DirTree, csum, url, e.to_string()))?;
    repo.write_metadata_as(ObjectType::DirTree, csum, &data)?;
    scan(repo, &tree)
}

/// Scan a dirtree that is already in the repository.
pub(crate) fn scan_local_dirtree(repo: &Repo, csum: &Checksum) -> Result<Scan> {
    let tree = repo.load_dirtree(csum)?;
    scan(repo, &tree)
}

/// Verify a fetched dirmeta (hash, structure) and store it.
pub(crate) fn store_dirmeta(repo: &Repo, csum: &Checksum, body: Body, url: &str) -> Result<bool> {
    let data = mem(ObjectType::DirMeta, csum, url, body)?;
    check_hash(ObjectType::DirMeta, csum, url, &data)?;
    DirMeta::parse(&data).map_err(|e| bad(ObjectType::DirMeta, csum, url, e.to_string()))?;
    Ok(repo.write_metadata_as(ObjectType::DirMeta, csum, &data)?)
}

/// Verify a fetched `.filez` and store it in the repository's mode.
pub(crate) fn store_content(repo: &Repo, csum: &Checksum, body: Body, url: &str) -> Result<bool> {
    let r = match &body {
        Body::Mem(b) => repo.write_filez_verified(csum, b),
        Body::Spooled(s) => repo.write_filez_file_verified(csum, &s.path),
    };
    r.map_err(|cause| PullError::Verify {
        url: url.into(),
        cause: Box::new(cause),
    })
}

/// What a commit must satisfy before it is written.
pub(crate) struct CommitCheck {
    /// Trusted ed25519 keys when the remote has `sign-verify`.
    pub keys: Option<Vec<PublicKey>>,
    pub metadata_only: bool,
}

/// A commit as it arrived (or as it already is in the repository).
pub(crate) struct CommitIn<'a> {
    pub csum: Checksum,
    /// The fetched `.commit`; `None` when the repository has it already.
    pub commit: Option<bytes::Bytes>,
    pub commit_url: &'a str,
    /// The fetched `.commitmeta`, if the remote has one.
    pub commitmeta: Option<bytes::Bytes>,
    pub commitmeta_url: &'a str,
    /// The ref it is pulled for, checked against the commit's `ostree.ref-binding`.
    pub binding: Option<&'a str>,
}

pub(crate) struct CommitOut {
    pub commit: Commit,
    /// The tree must be walked: the commit is new, or was left partial.
    pub walk_tree: bool,
    /// The `.commit` was fetched (the repository did not have it).
    pub fetched_commit: bool,
    pub wrote_commit: bool,
    pub wrote_commitmeta: bool,
}

/// Verify a commit (hash, structure, signature, ref binding), then mark it partial when its
/// tree is to be fetched, then write it and its detached metadata. Nothing is written when
/// a check fails.
pub(crate) fn store_commit(repo: &Repo, check: &CommitCheck, c: CommitIn<'_>) -> Result<CommitOut> {
    let csum = &c.csum;
    let local;
    let bytes: &[u8] = match &c.commit {
        Some(b) => {
            check_hash(ObjectType::Commit, csum, c.commit_url, b)?;
            b
        }
        None => {
            local = repo.read_metadata_verified(ObjectType::Commit, csum)?;
            &local
        }
    };
    let commit = Commit::parse(bytes)
        .map_err(|e| bad(ObjectType::Commit, csum, c.commit_url, e.to_string()))?;
    let meta = match &c.commitmeta {
        Some(m) => Some(sign::parse_vardict(m).map_err(|e| {
            bad(
                ObjectType::CommitMeta,
                csum,
                c.commitmeta_url,
                e.to_string(),
            )
        })?),
        None => None,
    };
    if let Some(keys) = &check.keys {
        verify_signature(csum, bytes, meta.as_deref(), keys)?;
    }
    if let Some(name) = c.binding {
        check_binding(csum, &commit, name)?;
    }
    let had = repo.has_object(ObjectType::Commit, csum)?;
    let walk_tree = !had || repo.is_partial(csum);
    if walk_tree {
        repo.mark_partial(csum)?;
    }
    let wrote_commit = match &c.commit {
        Some(b) if !had => repo.write_metadata_as(ObjectType::Commit, csum, b)?,
        _ => false,
    };
    let wrote_commitmeta = match &c.commitmeta {
        Some(m) => {
            let same = repo
                .read_metadata(ObjectType::CommitMeta, csum)
                .is_ok_and(|old| old == m.as_ref());
            if !same {
                repo.write_commitmeta_bytes(csum, m)?;
            }
            !same
        }
        None => false,
    };
    Ok(CommitOut {
        commit,
        walk_tree: walk_tree && !check.metadata_only,
        fetched_commit: c.commit.is_some(),
        wrote_commit,
        wrote_commitmeta,
    })
}

fn verify_signature(
    csum: &Checksum,
    bytes: &[u8],
    meta: Option<&[(String, Value)]>,
    keys: &[PublicKey],
) -> Result<()> {
    let refuse = |why: String| PullError::Signature { commit: *csum, why };
    let meta = meta.unwrap_or_default();
    let sigs = sign::signatures_in(meta);
    if sigs.is_empty() {
        return Err(refuse(
            "it carries no ed25519 signature, and the remote has sign-verify enabled".into(),
        ));
    }
    if !sign::verify_any(bytes, meta, keys) {
        return Err(refuse(format!(
            "none of its {} ed25519 signature(s) verifies with the remote's {} trusted key(s) \
             (signed by another key, or tampered with)",
            sigs.len(),
            keys.len()
        )));
    }
    Ok(())
}

fn check_binding(csum: &Checksum, commit: &Commit, name: &str) -> Result<()> {
    let Some(v) = commit.meta(META_REF_BINDING) else {
        return Ok(());
    };
    let bound: Vec<&str> = v
        .as_array()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if bound.contains(&name) {
        return Ok(());
    }
    Err(PullError::Signature {
        commit: *csum,
        why: format!(
            "it is bound to ref(s) {} (ostree.ref-binding), not to {name:?}",
            bound.join(", ")
        ),
    })
}

/// Whether `dir` is an archive repository (what a `file://` remote must be).
pub(crate) fn local_remote_mode(dir: &Path) -> Result<trellis_store::RepoMode> {
    Ok(Repo::open(dir)?.mode())
}
