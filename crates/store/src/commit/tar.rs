//! Committing straight from a tar archive (plain, gzip, zstd or xz), without unpacking it.
//!
//! Members are read in order; payloads are gathered into bounded batches that are hashed
//! and stored on all cores, so memory stays flat whatever the archive's size.

use super::dir::{Built, special};
use super::store::{ContentJob, store_bytes};
use super::tree::{MDir, MNode};
use super::{CommitStats, Progress};
use crate::checksum::Checksum;
use crate::error::{Error, IoContext, Result};
use crate::format::{ContentHasher, DirMeta, FileHeader, Xattrs, validate_filename};
use crate::repo::Repo;
use rayon::prelude::*;
use std::fs::File;
use std::io::{BufReader, Read, Seek, Write};
use std::path::{Component, Path};

/// Flush a batch once it holds this many payload bytes or members.
const BATCH_BYTES: u64 = 32 * 1024 * 1024;
const BATCH_MEMBERS: usize = 2048;
/// Members larger than this are spooled to a temporary file instead of memory.
const SPOOL_OVER: u64 = 16 * 1024 * 1024;

/// Open a possibly compressed archive, detecting the compression from its first bytes.
pub fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let mut f = File::open(path).ctx("open", path)?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut f, &mut magic).ctx("read", path)?;
    f.rewind().ctx("seek", path)?;
    let r = BufReader::with_capacity(256 * 1024, f);
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(r)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).ctx("open zstd stream", path)?)
        }
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => {
            Box::new(xz2::read::XzDecoder::new_multi_decoder(r))
        }
        _ => Box::new(r),
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

struct Pending {
    job: usize,
    header: FileHeader,
    data: Vec<u8>,
}

struct TarScan<'a> {
    repo: &'a Repo,
    root: MDir,
    jobs: Vec<ContentJob>,
    batch: Vec<Pending>,
    batch_bytes: u64,
    stats: CommitStats,
    progress: &'a dyn Progress,
}

pub fn scan(
    repo: &Repo,
    path: &Path,
    skip_special: bool,
    warnings: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<Built> {
    let mut archive = tar::Archive::new(open_archive(path)?);
    let shown = path.display().to_string();
    let mut s = TarScan {
        repo,
        root: MDir::new(DirMeta::new(0, 0, 0o755, Vec::new())),
        jobs: Vec::new(),
        batch: Vec::new(),
        batch_bytes: 0,
        stats: CommitStats::default(),
        progress,
    };
    let bad_archive =
        |e: std::io::Error| Error::Invalid(format!("{shown}: not a readable tar archive: {e}"));
    for entry in archive.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let raw_path = entry.path().map_err(bad_archive)?.into_owned();
        let member = format!("{shown}:{}", raw_path.display());
        let parts = split_member_path(&raw_path, &member)?;
        let h = entry.header();
        let uid = h.uid().map_err(bad_archive)? as u32;
        let gid = h.gid().map_err(bad_archive)? as u32;
        let mode = h.mode().map_err(bad_archive)?;
        let kind = h.entry_type();
        let xattrs = pax_xattrs(&mut entry, &member)?;
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                let meta = DirMeta::new(uid, gid, mode, xattrs);
                s.set_dir(&parts, meta, &member)?;
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let size = entry.size();
                let header = FileHeader::regular(uid, gid, mode, xattrs);
                s.stats.files += 1;
                s.stats.bytes += size;
                let job = s.jobs.len();
                if size > SPOOL_OVER {
                    let csum = s.store_spooled(&mut entry, &header, size, &member)?;
                    s.jobs.push(ContentJob::Known(csum));
                } else {
                    let mut data = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut data).map_err(bad_archive)?;
                    s.jobs.push(ContentJob::Known(Checksum([0; 32])));
                    s.batch_bytes += data.len() as u64;
                    s.batch.push(Pending { job, header, data });
                    if s.batch_bytes >= BATCH_BYTES || s.batch.len() >= BATCH_MEMBERS {
                        s.flush()?;
                    }
                }
                s.insert(&parts, MNode::File(job), &member)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::Invalid(format!("{member}: symlink without a target")))?;
                let target =
                    String::from_utf8(target.into_owned()).map_err(|_| Error::Unsupported {
                        path: member.clone(),
                        why: "symlink target is not valid UTF-8, which OSTree cannot store".into(),
                    })?;
                s.stats.symlinks += 1;
                let header = FileHeader::symlink(uid, gid, target, xattrs);
                let (csum, new) = store_bytes(repo, &header, &[])?;
                s.count_new(new, 0);
                s.jobs.push(ContentJob::Known(csum));
                let job = s.jobs.len() - 1;
                s.insert(&parts, MNode::File(job), &member)?;
            }
            T::Link => {
                let target = entry.link_name().map_err(bad_archive)?.ok_or_else(|| {
                    Error::Invalid(format!("{member}: hardlink without a target"))
                })?;
                let tparts = split_member_path(&target, &member)?;
                let job = match s.lookup(&tparts) {
                    Some(MNode::File(j)) => *j,
                    _ => {
                        return Err(Error::Invalid(format!(
                            "{member}: hardlink to {} which is not an earlier regular file in the archive",
                            target.display()
                        )));
                    }
                };
                s.insert(&parts, MNode::File(job), &member)?;
            }
            T::Char => special(&member, "character device", skip_special, warnings)?,
            T::Block => special(&member, "block device", skip_special, warnings)?,
            T::Fifo => special(&member, "FIFO", skip_special, warnings)?,
            other => {
                return Err(Error::Unsupported {
                    path: member,
                    why: format!("unsupported tar entry type {other:?}"),
                });
            }
        }
    }
    s.flush()?;
    Ok(Built {
        root: s.root,
        jobs: s.jobs,
        stats: s.stats,
    })
}

/// Member path to validated components; `./` and a leading `/` are dropped, `..` refused.
fn split_member_path(p: &Path, member: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => {
                use std::os::unix::ffi::OsStrExt;
                let name = validate_filename(n.as_bytes()).map_err(|source| Error::BadInput {
                    path: member.to_string(),
                    source,
                })?;
                parts.push(name.to_string());
            }
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::Invalid(format!(
                    "{member}: member path contains '..'"
                )));
            }
        }
    }
    Ok(parts)
}

/// xattrs from PAX `SCHILY.xattr.NAME` records (what GNU tar and mmdebstrap write).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, member: &str) -> Result<Xattrs> {
    let mut out = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| Error::Invalid(format!("{member}: bad PAX header: {e}")))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| Error::Invalid(format!("{member}: bad PAX header: {e}")))?;
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.")
                && !name.is_empty()
            {
                out.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

impl TarScan<'_> {
    fn count_new(&mut self, new: bool, size: u64) {
        if new {
            self.stats.new_objects += 1;
            self.stats.new_content_objects += 1;
            self.stats.new_content_bytes += size;
        }
        self.progress.advance(1, size);
    }

    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let stored: Vec<(usize, Checksum, bool, u64)> = batch
            .par_iter()
            .map(|p| {
                store_bytes(self.repo, &p.header, &p.data)
                    .map(|(c, new)| (p.job, c, new, p.data.len() as u64))
            })
            .collect::<Result<_>>()?;
        for (job, csum, new, size) in stored {
            self.jobs[job] = ContentJob::Known(csum);
            self.count_new(new, size);
        }
        Ok(())
    }

    fn store_spooled(
        &mut self,
        entry: &mut impl Read,
        header: &FileHeader,
        size: u64,
        member: &str,
    ) -> Result<Checksum> {
        let tmp = self.repo.tmp_path();
        let result = (|| {
            let mut f = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)
                .ctx("create", &tmp)?;
            let mut hasher = ContentHasher::new(header);
            let mut buf = vec![0u8; 256 * 1024];
            let mut total = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(|e| Error::Invalid(format!("{member}: {e}")))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                f.write_all(&buf[..n]).ctx("write", &tmp)?;
                total += n as u64;
            }
            if total != size {
                return Err(Error::Invalid(format!(
                    "{member}: truncated member ({total} of {size} bytes)"
                )));
            }
            let csum = hasher.finish();
            f.rewind().ctx("seek", &tmp)?;
            let new = self
                .repo
                .write_content(&csum, header, &mut BufReader::new(f), size)?;
            Ok((csum, new))
        })();
        let _ = std::fs::remove_file(&tmp);
        let (csum, new) = result?;
        self.count_new(new, size);
        Ok(csum)
    }

    fn parent_of(&mut self, parts: &[String], member: &str) -> Result<&mut MDir> {
        let mut dir = &mut self.root;
        for p in parts {
            let node = dir
                .entries
                .entry(p.clone())
                .or_insert_with(|| MNode::Dir(MDir::new(DirMeta::new(0, 0, 0o755, Vec::new()))));
            dir = match node {
                MNode::Dir(d) => d,
                MNode::File(_) => {
                    return Err(Error::Invalid(format!(
                        "{member}: a parent path component is not a directory"
                    )));
                }
            };
        }
        Ok(dir)
    }

    fn insert(&mut self, parts: &[String], node: MNode, member: &str) -> Result<()> {
        let Some((name, parents)) = parts.split_last() else {
            return Err(Error::Invalid(format!(
                "{member}: the archive root must be a directory"
            )));
        };
        self.parent_of(parents, member)?
            .entries
            .insert(name.clone(), node);
        Ok(())
    }

    fn set_dir(&mut self, parts: &[String], meta: DirMeta, member: &str) -> Result<()> {
        let Some((name, parents)) = parts.split_last() else {
            self.root.meta = meta;
            return Ok(());
        };
        let parent = self.parent_of(parents, member)?;
        match parent.entries.get_mut(name) {
            Some(MNode::Dir(d)) => d.meta = meta,
            _ => {
                parent
                    .entries
                    .insert(name.clone(), MNode::Dir(MDir::new(meta)));
            }
        }
        Ok(())
    }

    fn lookup(&self, parts: &[String]) -> Option<&MNode> {
        let (name, parents) = parts.split_last()?;
        let mut dir = &self.root;
        for p in parents {
            match dir.entries.get(p)? {
                MNode::Dir(d) => dir = d,
                MNode::File(_) => return None,
            }
        }
        dir.entries.get(name)
    }
}
