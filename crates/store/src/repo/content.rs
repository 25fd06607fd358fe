//! Content objects in each repository mode (spec §4).

use super::{Repo, RepoMode, zero_times};
use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::format::FileHeader;
use crate::xattr::{self, Target};
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::{Compress, FlushCompress, Status};
use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Uid};
use std::cell::RefCell;
use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;

/// The name of the bare-user metadata xattr.
pub const OSTREEMETA: &str = "user.ostreemeta";

/// Largest archive header we accept (headers hold xattrs, which are small in practice).
const MAX_HEADER: usize = 16 * 1024 * 1024;

/// A content object's payload, streamed.
pub enum ContentReader {
    Empty,
    Plain(BufReader<File>),
    Deflate(Box<DeflateDecoder<BufReader<File>>>),
}

impl Read for ContentReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ContentReader::Empty => Ok(0),
            ContentReader::Plain(r) => r.read(buf),
            ContentReader::Deflate(r) => r.read(buf),
        }
    }
}

impl Repo {
    /// Store a content object whose checksum the caller computed (and will have verified).
    /// `payload` yields exactly `size` bytes for a regular file; it is not read for symlinks.
    /// Returns whether the object was new.
    ///
    /// Objects that are regular files on disk are written unnamed (`O_TMPFILE`) in their
    /// `objects/XX/` directory and linked there once complete: one directory entry instead
    /// of a create and a rename through `tmp/`, whose directory lock every writer would
    /// share. Without `O_TMPFILE`, and for bare symlinks, the named file in `tmp/` is used.
    pub fn write_content(
        &self,
        csum: &Checksum,
        header: &FileHeader,
        payload: &mut dyn Read,
        size: u64,
    ) -> Result<bool> {
        self.write_content_from(csum, header, Payload::Stream(payload, size))
    }

    /// [`Repo::write_content`] for a payload already in memory, which is then written (or
    /// compressed) straight from `data`, without a copy through a read buffer.
    pub fn write_content_bytes(
        &self,
        csum: &Checksum,
        header: &FileHeader,
        data: &[u8],
    ) -> Result<bool> {
        self.write_content_from(csum, header, Payload::Bytes(data))
    }

    fn write_content_from(
        &self,
        csum: &Checksum,
        header: &FileHeader,
        payload: Payload<'_>,
    ) -> Result<bool> {
        if self.has_object(ObjectType::File, csum)? {
            return Ok(false);
        }
        self.write_absent_content(csum, header, payload)
    }

    /// [`Repo::write_content`] for a caller that has just seen that the object is absent
    /// (one lookup less per object). Should it appear meanwhile, the link finds it there.
    pub(crate) fn write_absent_content(
        &self,
        csum: &Checksum,
        header: &FileHeader,
        mut payload: Payload<'_>,
    ) -> Result<bool> {
        let bare_symlink =
            header.is_symlink() && matches!(self.mode, RepoMode::Bare | RepoMode::BareUserOnly);
        if !bare_symlink && let Some(mut u) = self.unnamed_object(ObjectType::File, csum)? {
            self.fill_content_file(&mut u.file, &u.dest, header, &mut payload)?;
            return u.link();
        }
        let tmp = self.tmp_path();
        let r = self
            .write_content_tmp(&tmp, header, &mut payload)
            .and_then(|()| self.install_object(&tmp, ObjectType::File, csum));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map(|()| true)
    }

    fn write_content_tmp(
        &self,
        tmp: &Path,
        h: &FileHeader,
        payload: &mut Payload<'_>,
    ) -> Result<()> {
        if h.is_symlink() && matches!(self.mode, RepoMode::Bare | RepoMode::BareUserOnly) {
            if self.mode == RepoMode::BareUserOnly {
                require_canonical_owner(h)?;
            }
            rustix::fs::symlinkat(h.symlink_target.as_str(), CWD, tmp)
                .ctx("create symlink", tmp)?;
            if self.mode == RepoMode::Bare {
                rustix::fs::chownat(
                    CWD,
                    tmp,
                    Some(Uid::from_raw(h.uid)),
                    Some(Gid::from_raw(h.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .ctx("chown", tmp)?;
                for (n, v) in &h.xattrs {
                    xattr::set::<File>(Target::NoFollow(tmp), n, v).ctx("set xattr on", tmp)?;
                }
            }
            rustix::fs::utimensat(CWD, tmp, &zero_times(), AtFlags::SYMLINK_NOFOLLOW)
                .ctx("set times on", tmp)?;
            return Ok(());
        }
        let mut f = File::create(tmp).ctx("create", tmp)?;
        self.fill_content_file(&mut f, tmp, h, payload)
    }

    /// Write a content object that is a regular file on disk into `f` (`path` names it in
    /// errors), in this repository's layout: the archive form, a bare file with its owner,
    /// mode and xattrs, or a bare-user file (a symlink's target as its content, NUL-ended
    /// as ostree writes it) with `user.ostreemeta`. Times are 0 everywhere but archive.
    fn fill_content_file(
        &self,
        f: &mut File,
        path: &Path,
        h: &FileHeader,
        payload: &mut Payload<'_>,
    ) -> Result<()> {
        let symlink = h.is_symlink();
        let size = payload.size();
        let perms = h.mode & 0o7777;
        match self.mode {
            RepoMode::Archive => {
                f.write_all(&h.archive_prefix(if symlink { 0 } else { size }))
                    .ctx("write", path)?;
                if !symlink {
                    payload.deflate_into(self.zlib_level, f, path)?;
                }
            }
            RepoMode::Bare | RepoMode::BareUserOnly => {
                payload.copy_into(f, path)?;
                if self.mode == RepoMode::Bare {
                    // chown first: it clears setuid/setgid, which fchmod then sets.
                    rustix::fs::fchown(&*f, Some(Uid::from_raw(h.uid)), Some(Gid::from_raw(h.gid)))
                        .ctx("chown", path)?;
                    for (n, v) in &h.xattrs {
                        xattr::set(Target::Fd(f.as_fd()), n, v).ctx("set xattr on", path)?;
                    }
                } else {
                    require_canonical_owner(h)?;
                }
                rustix::fs::fchmod(&*f, Mode::from_raw_mode(perms)).ctx("chmod", path)?;
                rustix::fs::futimens(&*f, &zero_times()).ctx("set times on", path)?;
            }
            RepoMode::BareUser => {
                let disk_mode = if symlink {
                    f.write_all(h.symlink_target.as_bytes())
                        .ctx("write", path)?;
                    f.write_all(&[0]).ctx("write", path)?;
                    0o644
                } else {
                    payload.copy_into(f, path)?;
                    (perms & 0o775) | 0o400
                };
                xattr::set(
                    Target::Fd(f.as_fd()),
                    OSTREEMETA.as_bytes(),
                    &h.ostreemeta(),
                )
                .ctx("set xattr on", path)?;
                rustix::fs::fchmod(&*f, Mode::from_raw_mode(disk_mode)).ctx("chmod", path)?;
                rustix::fs::futimens(&*f, &zero_times()).ctx("set times on", path)?;
            }
        }
        Ok(())
    }

    /// Open a content object: its header, payload size and payload stream.
    pub fn open_content(&self, csum: &Checksum) -> Result<(FileHeader, u64, ContentReader)> {
        let path = self.object_path(ObjectType::File, csum);
        let corrupt = |why: String| Error::Corrupt {
            ty: ObjectType::File,
            csum: *csum,
            why,
        };
        let missing = |e: std::io::Error| {
            if e.kind() == ErrorKind::NotFound {
                Error::Missing {
                    ty: ObjectType::File,
                    csum: *csum,
                }
            } else {
                Error::Io {
                    op: "open",
                    path: path.clone(),
                    source: e,
                }
            }
        };
        match self.mode {
            RepoMode::Archive => {
                let mut f = BufReader::new(File::open(&path).map_err(missing)?);
                let mut head = [0u8; 8];
                f.read_exact(&mut head)
                    .map_err(|_| corrupt("truncated header".into()))?;
                let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
                if len > MAX_HEADER {
                    return Err(corrupt(format!("header length {len} is implausible")));
                }
                let mut buf = head.to_vec();
                buf.resize(8 + len, 0);
                f.read_exact(&mut buf[8..])
                    .map_err(|_| corrupt("truncated header".into()))?;
                let (header, size, _) =
                    FileHeader::parse_archive_prefix(&buf).map_err(|source| Error::BadObject {
                        ty: ObjectType::File,
                        csum: *csum,
                        source,
                    })?;
                let reader = if header.is_symlink() {
                    ContentReader::Empty
                } else {
                    ContentReader::Deflate(Box::new(DeflateDecoder::new(f)))
                };
                Ok((header, size, reader))
            }
            RepoMode::Bare | RepoMode::BareUserOnly => {
                let st = rustix::fs::statat(CWD, &path, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| missing(e.into()))?;
                let owner = if self.mode == RepoMode::Bare {
                    (st.st_uid, st.st_gid)
                } else {
                    (0, 0)
                };
                if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                    let target = std::fs::read_link(&path).ctx("read link", &path)?;
                    let target = target
                        .into_os_string()
                        .into_string()
                        .map_err(|_| corrupt("symlink target is not UTF-8".into()))?;
                    let xattrs = if self.mode == RepoMode::Bare {
                        xattr::read_all::<File>(Target::NoFollow(&path))
                            .ctx("read xattrs of", &path)?
                    } else {
                        Vec::new()
                    };
                    Ok((
                        FileHeader::symlink(owner.0, owner.1, target, xattrs),
                        0,
                        ContentReader::Empty,
                    ))
                } else {
                    let f = File::open(&path).map_err(missing)?;
                    let xattrs = if self.mode == RepoMode::Bare {
                        xattr::read_all(Target::Fd(f.as_fd())).ctx("read xattrs of", &path)?
                    } else {
                        Vec::new()
                    };
                    let header = FileHeader::regular(owner.0, owner.1, st.st_mode, xattrs);
                    Ok((
                        header,
                        st.st_size as u64,
                        ContentReader::Plain(BufReader::new(f)),
                    ))
                }
            }
            RepoMode::BareUser => {
                let mut f = File::open(&path).map_err(missing)?;
                let meta = xattr::read_one(Target::Fd(f.as_fd()), OSTREEMETA)
                    .ctx("read xattrs of", &path)?
                    .ok_or_else(|| corrupt(format!("no {OSTREEMETA} xattr")))?;
                let size = f.metadata().ctx("stat", &path)?.len();
                let probe = FileHeader::from_ostreemeta(&meta, "-".into()).map_err(|source| {
                    Error::BadObject {
                        ty: ObjectType::File,
                        csum: *csum,
                        source,
                    }
                })?;
                if probe.is_symlink() {
                    let mut target = String::new();
                    f.read_to_string(&mut target)
                        .map_err(|_| corrupt("symlink target is not UTF-8".into()))?;
                    // The target is stored NUL-terminated (see the writer).
                    if let Some(nul) = target.find('\0') {
                        target.truncate(nul);
                    }
                    let header = FileHeader::from_ostreemeta(&meta, target).map_err(|source| {
                        Error::BadObject {
                            ty: ObjectType::File,
                            csum: *csum,
                            source,
                        }
                    })?;
                    Ok((header, 0, ContentReader::Empty))
                } else {
                    Ok((probe, size, ContentReader::Plain(BufReader::new(f))))
                }
            }
        }
    }

    /// Read a content object fully and check that it hashes to its name.
    pub fn verify_content(&self, csum: &Checksum) -> Result<FileHeader> {
        let (header, size, mut reader) = self.open_content(csum)?;
        let corrupt = |why: String| Error::Corrupt {
            ty: ObjectType::File,
            csum: *csum,
            why,
        };
        let mut hasher = crate::format::ContentHasher::new(&header);
        let n = std::io::copy(&mut reader, &mut hasher)
            .map_err(|e| corrupt(format!("unreadable payload: {e}")))?;
        if n != size {
            return Err(corrupt(format!("payload is {n} bytes, header says {size}")));
        }
        let actual = hasher.finish();
        if actual != *csum {
            return Err(corrupt(format!("content hashes to {actual}")));
        }
        Ok(header)
    }
}

/// A content object's payload: streamed (exactly `size` bytes are expected), or in memory.
pub(crate) enum Payload<'a> {
    Stream(&'a mut dyn Read, u64),
    Bytes(&'a [u8]),
}

impl Payload<'_> {
    fn size(&self) -> u64 {
        match self {
            Payload::Stream(_, size) => *size,
            Payload::Bytes(b) => b.len() as u64,
        }
    }

    fn copy_into(&mut self, f: &mut File, path: &Path) -> Result<()> {
        match self {
            Payload::Stream(r, size) => copy_exact(*r, f, *size, path),
            Payload::Bytes(b) => f.write_all(b).ctx("write", path),
        }
    }

    fn deflate_into(&mut self, level: u32, f: &mut File, path: &Path) -> Result<()> {
        match self {
            Payload::Stream(r, size) => deflate_exact(level, *r, f, *size, path),
            Payload::Bytes(b) if b.len() as u64 <= WHOLE_MAX => deflate_slice(level, b, f, path),
            Payload::Bytes(b) => deflate_exact(level, &mut &b[..], f, b.len() as u64, path),
        }
    }
}

fn require_canonical_owner(h: &FileHeader) -> Result<()> {
    if h.uid != 0 || h.gid != 0 || !h.xattrs.is_empty() {
        return Err(Error::Invalid(format!(
            "bare-user-only repositories cannot store owner {}:{} or xattrs",
            h.uid, h.gid
        )));
    }
    Ok(())
}

/// Per-thread compression state and buffers, reused from object to object: allocating a
/// deflate state and large buffers per object costs page faults (fresh mmap'd memory) for
/// every file of a commit.
struct DeflateScratch {
    compress: Option<(u32, Compress)>,
    whole: Option<(u32, libdeflater::Compressor)>,
    input: Vec<u8>,
    output: Vec<u8>,
}

thread_local! {
    static DEFLATE: RefCell<DeflateScratch> = const {
        RefCell::new(DeflateScratch {
            compress: None,
            whole: None,
            input: Vec::new(),
            output: Vec::new(),
        })
    };
}

const CHUNK: usize = 64 * 1024;

/// Payloads up to this size are compressed in one piece by libdeflate, which is about 1.7x
/// faster than streaming zlib at the same level (and compresses a little better); larger
/// ones stream, so that memory stays bounded.
const WHOLE_MAX: u64 = 4 << 20;

/// Raw-deflate exactly `size` bytes of `src` into `dst`, at `level`.
fn deflate_exact(
    level: u32,
    src: &mut dyn Read,
    dst: &mut File,
    size: u64,
    path: &Path,
) -> Result<()> {
    if size <= WHOLE_MAX {
        return deflate_whole(level, src, dst, size as usize, path);
    }
    let compress_err =
        |e: flate2::CompressError| Error::Invalid(format!("{}: compressing: {e}", path.display()));
    DEFLATE.with_borrow_mut(|scratch| {
        let DeflateScratch {
            compress,
            input,
            output,
            ..
        } = scratch;
        let c = match compress {
            Some((l, c)) if *l == level => {
                c.reset();
                c
            }
            slot => {
                &mut slot
                    .insert((level, Compress::new(Compression::new(level), false)))
                    .1
            }
        };
        input.resize(CHUNK, 0);
        output.resize(CHUNK, 0);
        let mut remaining = size;
        loop {
            let want = remaining.min(CHUNK as u64) as usize;
            let n = read_up_to(src, &mut input[..want]).ctx("read", path)?;
            if n < want {
                return Err(changed_size(path, size));
            }
            remaining -= n as u64;
            let flush = if remaining == 0 {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let mut pending = &input[..n];
            loop {
                let (in0, out0) = (c.total_in(), c.total_out());
                let status = c.compress(pending, output, flush).map_err(compress_err)?;
                let consumed = (c.total_in() - in0) as usize;
                let produced = (c.total_out() - out0) as usize;
                dst.write_all(&output[..produced]).ctx("write", path)?;
                pending = &pending[consumed..];
                let done = match flush {
                    FlushCompress::Finish => status == Status::StreamEnd,
                    _ => pending.is_empty() && produced < output.len(),
                };
                if done {
                    break;
                }
            }
            if remaining == 0 {
                break;
            }
        }
        let mut extra = [0u8; 1];
        if src.read(&mut extra).unwrap_or(0) != 0 {
            return Err(changed_size(path, size));
        }
        Ok(())
    })
}

/// [`deflate_exact`] for a payload that fits in memory: read it whole, compress it in one call.
fn deflate_whole(
    level: u32,
    src: &mut dyn Read,
    dst: &mut File,
    size: usize,
    path: &Path,
) -> Result<()> {
    let mut input = DEFLATE.with_borrow_mut(|s| std::mem::take(&mut s.input));
    input.resize(size + 1, 0);
    // One byte more than expected: a payload that grew is caught here.
    let r = read_up_to(src, &mut input[..size + 1])
        .ctx("read", path)
        .and_then(|n| {
            if n != size {
                return Err(changed_size(path, size as u64));
            }
            deflate_slice(level, &input[..size], dst, path)
        });
    DEFLATE.with_borrow_mut(|s| s.input = input);
    r
}

/// Raw-deflate all of `data` into `dst` in one libdeflate call.
fn deflate_slice(level: u32, data: &[u8], dst: &mut File, path: &Path) -> Result<()> {
    let lvl = libdeflater::CompressionLvl::new(level as i32)
        .map_err(|e| Error::Invalid(format!("zlib level {level} is out of range (0-9): {e:?}")))?;
    DEFLATE.with_borrow_mut(|scratch| {
        let DeflateScratch { whole, output, .. } = scratch;
        let c = match whole {
            Some((l, c)) if *l == level => c,
            slot => &mut slot.insert((level, libdeflater::Compressor::new(lvl))).1,
        };
        output.resize(c.deflate_compress_bound(data.len()), 0);
        let len = c
            .deflate_compress(data, output)
            .map_err(|e| Error::Invalid(format!("{}: compressing: {e:?}", path.display())))?;
        dst.write_all(&output[..len]).ctx("write", path)
    })
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn changed_size(path: &Path, size: u64) -> Error {
    Error::Invalid(format!(
        "{}: payload changed size while being stored (expected {size} bytes)",
        path.display()
    ))
}

/// Copy exactly `size` bytes: a source that changes length while being committed is an error
/// rather than a silently wrong object.
fn copy_exact(src: &mut dyn Read, dst: &mut dyn Write, size: u64, path: &Path) -> Result<()> {
    // Whole files up to COPY_CHUNK go in one read and one write (std::io::copy would move
    // them 8 KiB at a time: a syscall pair each).
    COPY_BUF.with_borrow_mut(|buf| {
        buf.resize(COPY_CHUNK, 0);
        let mut left = size;
        while left > 0 {
            let want = left.min(COPY_CHUNK as u64) as usize;
            let n = read_up_to(src, &mut buf[..want]).ctx("read", path)?;
            if n < want {
                return Err(changed_size(path, size));
            }
            dst.write_all(&buf[..n]).ctx("write", path)?;
            left -= n as u64;
        }
        let mut extra = [0u8; 1];
        if src.read(&mut extra).unwrap_or(0) != 0 {
            return Err(changed_size(path, size));
        }
        Ok(())
    })
}

const COPY_CHUNK: usize = 1024 * 1024;

thread_local! {
    static COPY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}
