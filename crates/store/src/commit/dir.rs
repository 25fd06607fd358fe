//! Scanning a directory into the in-memory tree and a list of content jobs.

use super::CommitStats;
use super::store::ContentJob;
use super::tree::{MDir, MNode};
use crate::error::{Error, IoContext, Result};
use crate::format::{DirMeta, FileHeader, validate_filename};
use crate::xattr::{self, Target};
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub struct Built {
    pub root: MDir,
    pub jobs: Vec<ContentJob>,
    pub stats: CommitStats,
}

struct Scanner<'w> {
    jobs: Vec<ContentJob>,
    stats: CommitStats,
    /// (dev, ino) of multiply-linked files already seen, to their job: stored once.
    links: HashMap<(u64, u64), usize>,
    skip_special: bool,
    warnings: &'w mut Vec<String>,
}

pub fn scan(root: &Path, skip_special: bool, warnings: &mut Vec<String>) -> Result<Built> {
    let md = std::fs::symlink_metadata(root).ctx("stat", root)?;
    if !md.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut s = Scanner {
        jobs: Vec::new(),
        stats: CommitStats::default(),
        links: HashMap::new(),
        skip_special,
        warnings,
    };
    let root_dir = s.dir(root, &md)?;
    Ok(Built {
        root: root_dir,
        jobs: s.jobs,
        stats: s.stats,
    })
}

fn xattrs_of(path: &Path) -> Result<crate::format::Xattrs> {
    xattr::read_all::<File>(Target::NoFollow(path)).ctx("read xattrs of", path)
}

/// What kind of special file a mode is, for messages.
pub(super) fn special_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Refuse or (with `skip`) drop a device node, socket or FIFO.
pub(super) fn special(
    path: &str,
    kind: &str,
    skip: bool,
    warnings: &mut Vec<String>,
) -> Result<()> {
    if skip {
        warnings.push(format!("skipped {kind} {path}"));
        return Ok(());
    }
    Err(Error::Unsupported {
        path: path.to_string(),
        why: format!(
            "is a {kind}; commits hold only regular files, symlinks and directories (pass --skip-special to drop such files)"
        ),
    })
}

impl Scanner<'_> {
    fn dir(&mut self, path: &Path, md: &Metadata) -> Result<MDir> {
        let mut dir = MDir::new(DirMeta::new(
            md.uid(),
            md.gid(),
            md.mode(),
            xattrs_of(path)?,
        ));
        for entry in std::fs::read_dir(path).ctx("list", path)? {
            let entry = entry.ctx("list", path)?;
            let name_os = entry.file_name();
            let child = entry.path();
            let name = validate_filename(name_os.as_bytes())
                .map_err(|source| Error::BadInput {
                    path: child.display().to_string(),
                    source,
                })?
                .to_string();
            let md = std::fs::symlink_metadata(&child).ctx("stat", &child)?;
            let ft = md.file_type();
            let node = if ft.is_dir() {
                MNode::Dir(self.dir(&child, &md)?)
            } else if ft.is_file() {
                let key = (md.dev(), md.ino());
                if md.nlink() > 1
                    && let Some(&first) = self.links.get(&key)
                {
                    self.jobs.push(ContentJob::SameAs(first));
                } else {
                    if md.nlink() > 1 {
                        self.links.insert(key, self.jobs.len());
                    }
                    self.stats.files += 1;
                    self.stats.bytes += md.len();
                    let header =
                        FileHeader::regular(md.uid(), md.gid(), md.mode(), xattrs_of(&child)?);
                    self.jobs.push(ContentJob::Path {
                        path: child.clone(),
                        header,
                        size: md.len(),
                    });
                }
                MNode::File(self.jobs.len() - 1)
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&child).ctx("read link", &child)?;
                let target =
                    target
                        .into_os_string()
                        .into_string()
                        .map_err(|_| Error::Unsupported {
                            path: child.display().to_string(),
                            why: "symlink target is not valid UTF-8, which OSTree cannot store"
                                .into(),
                        })?;
                self.stats.symlinks += 1;
                let header = FileHeader::symlink(md.uid(), md.gid(), target, xattrs_of(&child)?);
                self.jobs.push(ContentJob::Symlink { header });
                MNode::File(self.jobs.len() - 1)
            } else {
                special(
                    &child.display().to_string(),
                    special_kind(&ft),
                    self.skip_special,
                    self.warnings,
                )?;
                continue;
            };
            dir.entries.insert(name, node);
        }
        Ok(dir)
    }
}
