//! The content phase: hash every file, and store the ones the repository lacks, on all cores.

use super::{CommitStats, Progress};
use crate::checksum::Checksum;
use crate::error::{Error, IoContext, Result};
use crate::format::{ContentHasher, FileHeader, content_checksum};
use crate::repo::Repo;
use rayon::prelude::*;
use rustix::fs::OFlags;
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::PathBuf;

/// Files up to this size are read once into memory; larger ones are hashed in a stream and
/// read a second time only if the object is new.
const INLINE_MAX: u64 = 4 * 1024 * 1024;

thread_local! {
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One content object to hash and store.
#[derive(Debug)]
pub enum ContentJob {
    /// A regular file on disk.
    Path {
        path: PathBuf,
        header: FileHeader,
        size: u64,
    },
    /// A symlink; the header carries the target.
    Symlink { header: FileHeader },
    /// Payload already in memory (from a tar stream).
    Bytes { header: FileHeader, data: Vec<u8> },
    /// The same object as an earlier job (a hardlink).
    SameAs(usize),
    /// A checksum computed and stored earlier.
    Known(Checksum),
}

impl ContentJob {
    fn size(&self) -> u64 {
        match self {
            ContentJob::Path { size, .. } => *size,
            ContentJob::Bytes { data, .. } => data.len() as u64,
            _ => 0,
        }
    }
}

struct Stored {
    csum: Checksum,
    new: bool,
    size: u64,
}

/// Hash and store every job; returns the checksum of each, by job index.
pub fn store_contents(
    repo: &Repo,
    jobs: Vec<ContentJob>,
    stats: &mut CommitStats,
    progress: &dyn Progress,
) -> Result<Vec<Checksum>> {
    let countable = jobs
        .iter()
        .filter(|j| !matches!(j, ContentJob::SameAs(_) | ContentJob::Known(_)))
        .count();
    if countable > 0 {
        progress.total(countable as u64, jobs.iter().map(ContentJob::size).sum());
    }
    let results: Vec<Option<Stored>> = jobs
        .par_iter()
        .map(|job| {
            let stored = store_one(repo, job)?;
            if let Some(s) = &stored {
                progress.advance(1, s.size);
            }
            Ok(stored)
        })
        .collect::<Result<_>>()?;
    let mut sums = Vec::with_capacity(jobs.len());
    for (i, (job, r)) in jobs.iter().zip(results).enumerate() {
        let csum = match (job, r) {
            (_, Some(s)) => {
                if s.new {
                    stats.new_objects += 1;
                    stats.new_content_objects += 1;
                    stats.new_content_bytes += s.size;
                }
                s.csum
            }
            (ContentJob::Known(c), None) => *c,
            (ContentJob::SameAs(j), None) if *j < i => sums[*j],
            _ => {
                return Err(Error::Invalid(format!(
                    "internal: hardlink job {i} refers forward"
                )));
            }
        };
        sums.push(csum);
    }
    Ok(sums)
}

/// Hash and store one in-memory object (used by streaming sources).
pub(super) fn store_bytes(
    repo: &Repo,
    header: &FileHeader,
    data: &[u8],
) -> Result<(Checksum, bool)> {
    let csum = content_checksum(header, data);
    let new = repo.write_content_bytes(&csum, header, data)?;
    Ok((csum, new))
}

fn store_one(repo: &Repo, job: &ContentJob) -> Result<Option<Stored>> {
    Ok(Some(match job {
        ContentJob::SameAs(_) | ContentJob::Known(_) => return Ok(None),
        ContentJob::Symlink { header } => {
            let (csum, new) = store_bytes(repo, header, &[])?;
            Stored { csum, new, size: 0 }
        }
        ContentJob::Bytes { header, data } => {
            let (csum, new) = store_bytes(repo, header, data)?;
            Stored {
                csum,
                new,
                size: data.len() as u64,
            }
        }
        ContentJob::Path { path, header, size } => {
            // O_NOFOLLOW: the scan saw a regular file; never follow a symlink swapped in since.
            let fd = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .ctx("open", path)?;
            let mut f = File::from(fd);
            let changed = || {
                Error::Invalid(format!(
                    "{}: file changed while being committed",
                    path.display()
                ))
            };
            if *size <= INLINE_MAX {
                // One read buffer per thread, reused: see repo::content's DeflateScratch.
                READ_BUF.with_borrow_mut(|buf| {
                    buf.clear();
                    f.read_to_end(buf).ctx("read", path)?;
                    if buf.len() as u64 != *size {
                        return Err(changed());
                    }
                    let (csum, new) = store_bytes(repo, header, buf)?;
                    Ok(Stored {
                        csum,
                        new,
                        size: *size,
                    })
                })?
            } else {
                let mut hasher = ContentHasher::new(header);
                let n = std::io::copy(
                    &mut BufReader::with_capacity(256 * 1024, &mut f),
                    &mut hasher,
                )
                .ctx("read", path)?;
                if n != *size {
                    return Err(changed());
                }
                let csum = hasher.finish();
                f.rewind().ctx("seek", path)?;
                let new = repo.write_content(
                    &csum,
                    header,
                    &mut BufReader::with_capacity(256 * 1024, f),
                    *size,
                )?;
                Stored {
                    csum,
                    new,
                    size: *size,
                }
            }
        }
    }))
}
