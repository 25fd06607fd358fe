//! `pull-local`: copy commits from another repository on this machine, of any mode, through
//! the store API. Every object is verified before it is stored; objects are hardlinked when
//! both repositories have the same mode and share a filesystem.

use super::error::Result;
use super::{ObjectCounts, PullOutcome, PullProgress, PulledRef};
use rayon::prelude::*;
use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use trellis_store::format::{ContentHasher, DirMeta, DirTree};
use trellis_store::{Checksum, Error, ObjectType, Repo, RepoMode};

/// Payloads up to this size are read once into memory (hashed, then written); larger ones
/// are read twice, so that memory stays bounded.
const IN_MEMORY: u64 = 8 * 1024 * 1024;

/// What to copy.
#[derive(Clone, Debug, Default)]
pub struct LocalPullOptions {
    /// Refs or commit checksums in the source; empty: every local ref of the source.
    pub refs: Vec<String>,
    /// Parents to copy below each commit: 0 only the commit, -1 the whole history.
    pub depth: i64,
    /// Write `refs/remotes/REMOTE/REF` instead of `refs/heads/REF`.
    pub remote: Option<String>,
}

struct Counters {
    commit: AtomicU64,
    commitmeta: AtomicU64,
    dirtree: AtomicU64,
    dirmeta: AtomicU64,
    file: AtomicU64,
    present: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn new() -> Counters {
        let z = || AtomicU64::new(0);
        Counters {
            commit: z(),
            commitmeta: z(),
            dirtree: z(),
            dirmeta: z(),
            file: z(),
            present: z(),
            bytes: z(),
        }
    }

    fn count(&self, ty: ObjectType, new: bool, bytes: u64, progress: &dyn PullProgress) {
        let c = match (new, ty) {
            (false, _) => &self.present,
            (true, ObjectType::File) => &self.file,
            (true, ObjectType::DirTree) => &self.dirtree,
            (true, ObjectType::DirMeta) => &self.dirmeta,
            (true, ObjectType::CommitMeta) => &self.commitmeta,
            (true, _) => &self.commit,
        };
        c.fetch_add(1, Ordering::Relaxed);
        if new {
            self.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        progress.fetched(1, if new { bytes } else { 0 });
    }

    fn counts(&self) -> ObjectCounts {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ObjectCounts {
            commit: g(&self.commit),
            commitmeta: g(&self.commitmeta),
            dirtree: g(&self.dirtree),
            dirmeta: g(&self.dirmeta),
            file: g(&self.file),
        }
    }
}

/// Copy a dirmeta after checking its hash and structure in the source; returns (new, size).
fn copy_dirmeta(src: &Repo, dst: &Repo, csum: &Checksum) -> Result<(bool, u64)> {
    if dst.has_object(ObjectType::DirMeta, csum)? {
        return Ok((false, 0));
    }
    let data = src.read_metadata_verified(ObjectType::DirMeta, csum)?;
    DirMeta::parse(&data).map_err(|source| Error::BadObject {
        ty: ObjectType::DirMeta,
        csum: *csum,
        source,
    })?;
    Ok((
        dst.write_metadata_as(ObjectType::DirMeta, csum, &data)?,
        data.len() as u64,
    ))
}

/// Copy a content object, verified; returns (new, payload size).
fn copy_content(src: &Repo, dst: &Repo, csum: &Checksum) -> Result<(bool, u64)> {
    if dst.has_object(ObjectType::File, csum)? {
        return Ok((false, 0));
    }
    if src.mode() == dst.mode() {
        src.verify_content(csum)?;
        if let Some(new) = dst.link_object_from(src, ObjectType::File, csum)? {
            return Ok((new, 0));
        }
    }
    if src.mode() == RepoMode::Archive {
        // The .filez bytes carry the header and compressed payload: the destination
        // verifies and stores them in its own mode.
        let path = src.object_path(ObjectType::File, csum);
        let len = std::fs::metadata(&path)
            .map_err(|e| missing_or_io(e, csum, &path))?
            .len();
        if len <= IN_MEMORY {
            let data = std::fs::read(&path).map_err(|e| missing_or_io(e, csum, &path))?;
            return Ok((dst.write_filez_verified(csum, &data)?, len));
        }
        let spool = dst.spool_path();
        if let Err(e) = std::fs::copy(&path, &spool) {
            let _ = std::fs::remove_file(&spool);
            return Err(missing_or_io(e, csum, &path).into());
        }
        return Ok((dst.write_filez_file_verified(csum, &spool)?, len));
    }
    let (header, size, mut reader) = src.open_content(csum)?;
    let corrupt = |why: String| Error::Corrupt {
        ty: ObjectType::File,
        csum: *csum,
        why,
    };
    if size <= IN_MEMORY {
        let mut payload = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        reader
            .by_ref()
            .take(size + 1)
            .read_to_end(&mut payload)
            .map_err(|e| corrupt(format!("unreadable payload: {e}")))?;
        if payload.len() as u64 != size {
            return Err(corrupt(format!(
                "payload is {} bytes, its header says {size}",
                payload.len()
            ))
            .into());
        }
        let mut h = ContentHasher::new(&header);
        h.update(&payload);
        let actual = h.finish();
        if actual != *csum {
            return Err(corrupt(format!("content hashes to {actual}")).into());
        }
        return Ok((dst.write_content_bytes(csum, &header, &payload)?, size));
    }
    drop(reader);
    src.verify_content(csum)?;
    let (header, size, mut reader) = src.open_content(csum)?;
    Ok((dst.write_content(csum, &header, &mut reader, size)?, size))
}

fn missing_or_io(e: std::io::Error, csum: &Checksum, path: &std::path::Path) -> Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        Error::Missing {
            ty: ObjectType::File,
            csum: *csum,
        }
    } else {
        Error::Io {
            op: "read",
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Copy one commit and its detached metadata; returns whether its tree must be walked.
fn copy_commit(
    src: &Repo,
    dst: &Repo,
    csum: &Checksum,
    n: &Counters,
    p: &dyn PullProgress,
) -> Result<bool> {
    let data = src.read_metadata_verified(ObjectType::Commit, csum)?;
    trellis_store::format::Commit::parse(&data).map_err(|source| Error::BadObject {
        ty: ObjectType::Commit,
        csum: *csum,
        source,
    })?;
    let had = dst.has_object(ObjectType::Commit, csum)?;
    let walk = !had || dst.is_partial(csum);
    if walk {
        dst.mark_partial(csum)?;
    }
    let new = dst.write_metadata_as(ObjectType::Commit, csum, &data)?;
    n.count(ObjectType::Commit, new, data.len() as u64, p);
    match src.read_metadata(ObjectType::CommitMeta, csum) {
        Ok(meta) => {
            let same = dst
                .read_metadata(ObjectType::CommitMeta, csum)
                .is_ok_and(|old| old == meta);
            if !same {
                dst.write_commitmeta_bytes(csum, &meta)?;
            }
            n.count(ObjectType::CommitMeta, !same, meta.len() as u64, p);
        }
        Err(Error::Missing { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(walk)
}

/// Copy the trees of `roots` (root dirtree, root dirmeta) level by level, in parallel.
fn copy_trees(
    src: &Repo,
    dst: &Repo,
    roots: &[(Checksum, Checksum)],
    n: &Counters,
    p: &dyn PullProgress,
) -> Result<()> {
    let mut seen_trees: HashSet<Checksum> = HashSet::new();
    let mut metas: HashSet<Checksum> = HashSet::new();
    let mut files: HashSet<Checksum> = HashSet::new();
    let mut level: Vec<Checksum> = Vec::new();
    for (t, m) in roots {
        if seen_trees.insert(*t) {
            level.push(*t);
        }
        metas.insert(*m);
    }
    while !level.is_empty() {
        p.queued((seen_trees.len() + metas.len() + files.len()) as u64);
        let trees: Vec<DirTree> = level
            .par_iter()
            .map(|c| -> Result<DirTree> {
                let data = src.read_metadata_verified(ObjectType::DirTree, c)?;
                let tree = DirTree::parse(&data).map_err(|source| Error::BadObject {
                    ty: ObjectType::DirTree,
                    csum: *c,
                    source,
                })?;
                let new = dst.write_metadata_as(ObjectType::DirTree, c, &data)?;
                n.count(ObjectType::DirTree, new, data.len() as u64, p);
                Ok(tree)
            })
            .collect::<Result<_>>()?;
        level = Vec::new();
        for tree in trees {
            files.extend(tree.files.iter().map(|(_, c)| *c));
            for (_, t, m) in &tree.dirs {
                metas.insert(*m);
                if seen_trees.insert(*t) {
                    level.push(*t);
                }
            }
        }
    }
    p.queued((seen_trees.len() + metas.len() + files.len()) as u64);
    let metas: Vec<Checksum> = metas.into_iter().collect();
    metas.par_iter().try_for_each(|c| -> Result<()> {
        let (new, len) = copy_dirmeta(src, dst, c)?;
        n.count(ObjectType::DirMeta, new, len, p);
        Ok(())
    })?;
    let files: Vec<Checksum> = files.into_iter().collect();
    files.par_iter().try_for_each(|c| -> Result<()> {
        let (new, len) = copy_content(src, dst, c)?;
        n.count(ObjectType::File, new, len, p);
        Ok(())
    })?;
    Ok(())
}

/// Copy refs (and their history to `depth`) from `src` into `dst`.
pub fn pull_local(
    dst: &Repo,
    src: &Repo,
    opts: &LocalPullOptions,
    progress: &dyn PullProgress,
) -> Result<PullOutcome> {
    let start = Instant::now();
    let names: Vec<String> = if opts.refs.is_empty() {
        src.list_local_refs()?.into_iter().map(|r| r.name).collect()
    } else {
        opts.refs.clone()
    };
    let mut resolved = Vec::new();
    for name in &names {
        let commit = src.resolve_rev(name)?;
        let is_ref = Checksum::from_hex(name).is_err();
        resolved.push((is_ref.then(|| name.clone()), commit));
    }
    let session = dst.begin_write()?;
    let n = Counters::new();
    // Commits first (each marked partial before it is written), then every tree at once.
    let mut roots = Vec::new();
    let mut walked = Vec::new();
    let mut seen = HashSet::new();
    for (_, commit) in &resolved {
        let mut c = *commit;
        let mut depth = opts.depth;
        loop {
            if !seen.insert(c) {
                break;
            }
            if copy_commit(src, dst, &c, &n, progress)? {
                let commit = dst.load_commit(&c)?;
                roots.push((commit.root_tree, commit.root_meta));
                walked.push(c);
            }
            let parent = dst.load_commit(&c)?.parent;
            match parent {
                Some(p) if depth != 0 && src.has_object(ObjectType::Commit, &p)? => {
                    c = p;
                    depth = if depth > 0 { depth - 1 } else { depth };
                }
                _ => break,
            }
        }
    }
    copy_trees(src, dst, &roots, &n, progress)?;
    dst.sync()?;
    for c in &walked {
        dst.clear_partial(c)?;
    }
    let mut refs = Vec::new();
    for (name, commit) in resolved {
        let local_ref = name.as_ref().map(|n| match &opts.remote {
            Some(r) => format!("{r}:{n}"),
            None => n.clone(),
        });
        let previous = match &local_ref {
            Some(l) => dst.read_ref(l)?,
            None => None,
        };
        if let Some(l) = &local_ref {
            dst.set_ref(l, Some(&commit))?;
        }
        refs.push(PulledRef {
            remote_ref: name,
            local_ref,
            commit,
            previous,
        });
    }
    let recovered = session.recovery.clone();
    session.finish()?;
    Ok(PullOutcome {
        refs,
        fetched: n.counts(),
        already_present: n.present.load(Ordering::Relaxed),
        bytes: n.bytes.load(Ordering::Relaxed),
        requests: 0,
        elapsed: start.elapsed(),
        summary_copied: false,
        partial: Vec::new(),
        recovered,
    })
}
