//! Storing imported content objects: verified first, then written in the repository's own
//! mode (archive: the `.filez` bytes as they are; other modes: inflated by `write_content`).
//!
//! Small objects are read into memory by the archive reader and verified and stored by a
//! pool of worker threads (inflating and hashing is the costly part, and a tar stream can
//! only be read in order); large ones are streamed through a temporary file inline.

use super::ImportError;
use super::filez::{FilezCheck, Verified};
use flate2::read::DeflateDecoder;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use trellis_store::{Checksum, Error, ObjectType, Repo};

/// Objects up to this size are handed to the workers whole.
pub(super) const BUFFERED_MAX: u64 = 4 * 1024 * 1024;

/// A temporary file in the repository's `tmp/`, removed unless it was renamed away.
pub(super) struct TmpFile {
    pub path: PathBuf,
}

impl TmpFile {
    pub fn create(repo: &Repo) -> Result<(TmpFile, File), Error> {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = repo.path().join("tmp");
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!(
            "trellis-import-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| Error::Io {
                op: "create",
                path: path.clone(),
                source,
            })?;
        Ok((TmpFile { path }, f))
    }

    /// A temporary file holding `data`.
    pub fn with(repo: &Repo, data: &[u8]) -> Result<TmpFile, Error> {
        let (tmp, mut f) = TmpFile::create(repo)?;
        f.write_all(data).map_err(|source| Error::Io {
            op: "write",
            path: tmp.path.clone(),
            source,
        })?;
        Ok(tmp)
    }

    /// Rename into place as a loose object of the repository.
    pub fn install(self, repo: &Repo, ty: ObjectType, csum: &Checksum) -> Result<(), Error> {
        let dest = repo.object_path(ty, csum);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                op: "create directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        std::fs::rename(&self.path, &dest).map_err(|source| Error::Io {
            op: "rename into",
            path: dest,
            source,
        })
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn bad(member: &str, why: String) -> ImportError {
    ImportError::BadObject {
        member: member.into(),
        why,
    }
}

fn verified(member: &str, check: FilezCheck, csum: &Checksum) -> Result<Verified, ImportError> {
    let v = check.finish().map_err(|why| bad(member, why))?;
    if v.checksum != *csum {
        return Err(bad(member, format!("its content hashes to {}", v.checksum)));
    }
    Ok(v)
}

/// Verify and store an object held in memory.
fn store_buffered(
    repo: &Repo,
    member: &str,
    csum: &Checksum,
    data: &[u8],
) -> Result<(), ImportError> {
    let mut check = FilezCheck::new();
    check.feed(data).map_err(|why| bad(member, why))?;
    let v = verified(member, check, csum)?;
    if repo.mode().is_archive() {
        TmpFile::with(repo, data)?.install(repo, ObjectType::File, csum)?;
    } else if v.header.is_symlink() {
        repo.write_content(csum, &v.header, &mut std::io::empty(), 0)?;
    } else {
        let mut payload = DeflateDecoder::new(&data[v.offset..]);
        repo.write_content(csum, &v.header, &mut payload, v.size)?;
    }
    Ok(())
}

/// Verify and store an object streamed from the archive through a temporary file; returns
/// its size in the archive.
pub(super) fn store_streamed(
    repo: &Repo,
    member: &str,
    csum: &Checksum,
    entry: &mut dyn Read,
) -> Result<u64, ImportError> {
    let (tmp, mut f) = TmpFile::create(repo)?;
    let mut check = FilezCheck::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|source| ImportError::ReadMember {
                member: member.into(),
                source,
            })?;
        if n == 0 {
            break;
        }
        total += n as u64;
        check.feed(&buf[..n]).map_err(|why| bad(member, why))?;
        f.write_all(&buf[..n]).map_err(|source| Error::Io {
            op: "write",
            path: tmp.path.clone(),
            source,
        })?;
    }
    let v = verified(member, check, csum)?;
    if repo.mode().is_archive() {
        drop(f);
        tmp.install(repo, ObjectType::File, csum)?;
    } else if v.header.is_symlink() {
        repo.write_content(csum, &v.header, &mut std::io::empty(), 0)?;
    } else {
        f.seek(SeekFrom::Start(v.offset as u64))
            .map_err(|source| Error::Io {
                op: "seek",
                path: tmp.path.clone(),
                source,
            })?;
        let mut payload = DeflateDecoder::new(BufReader::new(f));
        repo.write_content(csum, &v.header, &mut payload, v.size)?;
    }
    Ok(total)
}

struct Job {
    member: String,
    csum: Checksum,
    data: Vec<u8>,
}

/// What the workers did, and the first error one of them met.
#[derive(Default)]
pub(super) struct Outcome {
    pub stored: AtomicU64,
    pub bytes: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<ImportError>>,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    fn fail(&self, e: ImportError) {
        if let Ok(mut slot) = self.error.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::Relaxed);
    }

    pub fn take_error(&self) -> Option<ImportError> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// Worker threads that verify and store buffered objects; a bounded queue keeps memory in
/// check (at most a few objects of [`BUFFERED_MAX`] per worker).
pub(super) struct Pool<'scope> {
    tx: Mutex<Option<SyncSender<Job>>>,
    handles: Mutex<Vec<std::thread::ScopedJoinHandle<'scope, ()>>>,
}

impl<'scope> Pool<'scope> {
    pub fn start<'env>(
        s: &'scope std::thread::Scope<'scope, 'env>,
        repo: &'env Repo,
        outcome: &'env Outcome,
    ) -> Pool<'scope> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (tx, rx) = sync_channel::<Job>(workers * 2);
        let rx: Arc<Mutex<Receiver<Job>>> = Arc::new(Mutex::new(rx));
        let handles = (0..workers)
            .map(|_| {
                let rx = Arc::clone(&rx);
                s.spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // After a failure, keep draining so that the reader never blocks.
                        if outcome.failed() {
                            continue;
                        }
                        match store_buffered(repo, &job.member, &job.csum, &job.data) {
                            Ok(()) => {
                                outcome.stored.fetch_add(1, Ordering::Relaxed);
                                outcome
                                    .bytes
                                    .fetch_add(job.data.len() as u64, Ordering::Relaxed);
                            }
                            Err(e) => outcome.fail(e),
                        }
                    }
                })
            })
            .collect();
        Pool {
            tx: Mutex::new(Some(tx)),
            handles: Mutex::new(handles),
        }
    }

    pub fn submit(&self, member: &str, csum: Checksum, data: Vec<u8>) -> Result<(), ImportError> {
        let job = Job {
            member: member.to_string(),
            csum,
            data,
        };
        let tx = self.tx.lock().ok().and_then(|tx| tx.clone());
        tx.and_then(|tx| tx.send(job).ok())
            .ok_or_else(|| ImportError::Read(std::io::Error::other("the import workers stopped")))
    }

    /// Wait until every submitted object is stored (or failed).
    pub fn finish(&self, outcome: &Outcome) {
        if let Ok(mut tx) = self.tx.lock() {
            *tx = None;
        }
        let handles = match self.handles.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Vec::new(),
        };
        for h in handles {
            if h.join().is_err() {
                outcome.fail(ImportError::Read(std::io::Error::other(
                    "an import worker panicked",
                )));
            }
        }
    }
}
