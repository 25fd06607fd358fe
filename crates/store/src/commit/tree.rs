//! The in-memory tree a commit is built from, and writing it as dirtree/dirmeta objects.

use super::CommitStats;
use crate::checksum::{Checksum, ObjectType};
use crate::error::Result;
use crate::format::{DirMeta, DirTree};
use crate::repo::Repo;
use std::collections::BTreeMap;

/// A directory: its metadata and its entries by name (`String` orders bytewise, as
/// OSTree's strcmp does).
#[derive(Debug)]
pub struct MDir {
    pub meta: DirMeta,
    pub entries: BTreeMap<String, MNode>,
}

#[derive(Debug)]
pub enum MNode {
    Dir(MDir),
    /// Index of the content job whose checksum this file has.
    File(usize),
}

impl MDir {
    pub fn new(meta: DirMeta) -> MDir {
        MDir {
            meta,
            entries: BTreeMap::new(),
        }
    }
}

/// Write the tree bottom-up; returns the root (dirtree, dirmeta) checksums.
pub fn write_tree(
    repo: &Repo,
    dir: &MDir,
    sums: &[Checksum],
    stats: &mut CommitStats,
) -> Result<(Checksum, Checksum)> {
    let mut tree = DirTree::default();
    for (name, node) in &dir.entries {
        match node {
            MNode::File(i) => tree.files.push((name.clone(), sums[*i])),
            MNode::Dir(sub) => {
                let (t, m) = write_tree(repo, sub, sums, stats)?;
                tree.dirs.push((name.clone(), t, m));
            }
        }
    }
    stats.dirs += 1;
    let meta = write_new(repo, ObjectType::DirMeta, &dir.meta.to_bytes(), stats)?;
    let tree = write_new(repo, ObjectType::DirTree, &tree.to_bytes(), stats)?;
    Ok((tree, meta))
}

fn write_new(
    repo: &Repo,
    ty: ObjectType,
    bytes: &[u8],
    stats: &mut CommitStats,
) -> Result<Checksum> {
    let csum = Checksum::of(bytes);
    if !repo.has_object(ty, &csum)? {
        repo.write_metadata(ty, bytes)?;
        stats.new_objects += 1;
    }
    Ok(csum)
}
