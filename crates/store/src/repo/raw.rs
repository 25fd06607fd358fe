//! Objects received from elsewhere (a remote, another repository), stored only after they
//! are verified against the checksum that names them.
//!
//! Content arrives in archive form (`.filez`, spec §4.1): the header is parsed, the raw
//! deflate stream inflated to its exact end and the logical content re-hashed (§3.1). An
//! archive repository then keeps the received bytes as they are, without recompressing
//! them; other modes store the inflated payload through [`Repo::write_content`].

use super::Repo;
use super::content::Payload;
use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::format::{ContentHasher, FileHeader};
use crate::gvariant::{self, Type};
use flate2::{Decompress, FlushDecompress, Status};
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

/// Largest `.filez` header accepted (headers hold xattrs, which are small in practice).
const MAX_FILEZ_HEADER: usize = 16 * 1024 * 1024;

/// Payloads up to this size are inflated once into memory, hashed, then written; larger
/// ones are inflated twice (verify, then write) so that memory stays bounded.
const INFLATE_IN_MEMORY: u64 = 8 * 1024 * 1024;

fn corrupt(csum: &Checksum, why: impl Into<String>) -> Error {
    Error::Corrupt {
        ty: ObjectType::File,
        csum: *csum,
        why: why.into(),
    }
}

/// Inflate the raw deflate stream in `input` to its end, handing the payload to `sink`.
/// The stream must end exactly where the input does and yield exactly `size` bytes.
fn inflate_exact(
    csum: &Checksum,
    input: &mut dyn BufRead,
    size: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut d = Decompress::new(false);
    let mut out = vec![0u8; 64 * 1024];
    loop {
        let chunk = input
            .fill_buf()
            .map_err(|e| corrupt(csum, format!("unreadable compressed payload: {e}")))?;
        let at_eof = chunk.is_empty();
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(chunk, &mut out, FlushDecompress::None)
            .map_err(|e| corrupt(csum, format!("invalid compressed data: {e}")))?;
        let consumed = usize::try_from(d.total_in() - in0).unwrap_or(usize::MAX);
        let produced = usize::try_from(d.total_out() - out0).unwrap_or(usize::MAX);
        input.consume(consumed);
        if d.total_out() > size {
            return Err(longer(csum, size));
        }
        sink(&out[..produced])?;
        match status {
            Status::StreamEnd => break,
            _ if at_eof && produced == 0 => return Err(truncated(csum, d.total_out(), size)),
            _ => {}
        }
    }
    let rest = input
        .fill_buf()
        .map_err(|e| corrupt(csum, format!("unreadable compressed payload: {e}")))?;
    if !rest.is_empty() {
        return Err(trailing(csum));
    }
    if d.total_out() != size {
        return Err(shorter(csum, d.total_out(), size));
    }
    Ok(())
}

/// Per-thread inflate states and output buffer, reused from object to object: a fresh
/// state and buffer per object cost an allocation and page faults each.
#[derive(Default)]
struct InflateScratch {
    zlib: Option<Decompress>,
    libdeflate: Option<libdeflater::Decompressor>,
    out: Vec<u8>,
}

thread_local! {
    static INFLATE: std::cell::RefCell<InflateScratch> =
        std::cell::RefCell::new(InflateScratch::default());
}

/// Payloads up to this size are verified (archive mode) by one inflate call; the buffer of
/// a larger payload is given back after use.
const KEEP_SCRATCH: usize = 1024 * 1024;

/// Inflate the whole raw deflate stream `input`, which must end exactly where `input` does
/// and yield exactly `size` (at most [`KEEP_SCRATCH`]) bytes, in one call into a reused
/// buffer, and hand the payload to `use_payload`: no copies through a window and no
/// per-chunk calls as in [`inflate_exact`]. For objects whose `.filez` bytes are kept.
fn inflate_whole_strict<T>(
    csum: &Checksum,
    input: &[u8],
    size: u64,
    use_payload: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let size = usize::try_from(size.min(KEEP_SCRATCH as u64)).unwrap_or(0);
    INFLATE.with_borrow_mut(|scratch| {
        let d = scratch.zlib.get_or_insert_with(|| Decompress::new(false));
        d.reset(false);
        let out = &mut scratch.out;
        out.clear();
        // One byte of room more than the header says: a longer stream is caught.
        out.reserve_exact(size + 1);
        let status = d
            .decompress_vec(input, out, FlushDecompress::Finish)
            .map_err(|e| corrupt(csum, format!("invalid compressed data: {e}")))?;
        if out.len() > size {
            return Err(longer(csum, size as u64));
        }
        if status != Status::StreamEnd {
            return Err(truncated(csum, out.len() as u64, size as u64));
        }
        if d.total_in() != input.len() as u64 {
            return Err(trailing(csum));
        }
        if out.len() != size {
            return Err(shorter(csum, out.len() as u64, size as u64));
        }
        use_payload(out)
    })
}

/// Inflate the whole raw deflate stream `input`, which must yield exactly `size` (at most
/// [`INFLATE_IN_MEMORY`]) bytes, with libdeflate (about twice zlib's speed) into a reused
/// buffer, and hand the payload to `use_payload`. Bytes after the end of the stream are
/// not looked at: for objects stored inflated, whose `.filez` bytes are not kept.
fn inflate_whole<T>(
    csum: &Checksum,
    input: &[u8],
    size: u64,
    use_payload: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<T> {
    let size = usize::try_from(size.min(INFLATE_IN_MEMORY)).unwrap_or(0);
    INFLATE.with_borrow_mut(|scratch| {
        let d = scratch
            .libdeflate
            .get_or_insert_with(libdeflater::Decompressor::new);
        let out = &mut scratch.out;
        // Grown, never shrunk between small objects: no zero-filling per object.
        if out.len() < size {
            out.resize(size, 0);
        }
        let r = match d.deflate_decompress(input, &mut out[..size]) {
            Ok(n) if n == size => use_payload(&out[..size]),
            Ok(n) => Err(shorter(csum, n as u64, size as u64)),
            Err(libdeflater::DecompressionError::InsufficientSpace) => {
                Err(longer(csum, size as u64))
            }
            Err(libdeflater::DecompressionError::BadData) => Err(corrupt(
                csum,
                "invalid or truncated compressed data".to_string(),
            )),
        };
        if out.len() > KEEP_SCRATCH {
            *out = Vec::new();
        }
        r
    })
}

fn longer(csum: &Checksum, size: u64) -> Error {
    corrupt(
        csum,
        format!("payload is longer than the {size} bytes its header says"),
    )
}

fn shorter(csum: &Checksum, got: u64, size: u64) -> Error {
    corrupt(
        csum,
        format!("payload is {got} bytes, its header says {size}"),
    )
}

fn truncated(csum: &Checksum, got: u64, size: u64) -> Error {
    corrupt(
        csum,
        format!("truncated: the compressed payload ends after {got} of {size} bytes"),
    )
}

fn trailing(csum: &Checksum) -> Error {
    corrupt(csum, "bytes follow the end of the compressed payload")
}

/// Parse the header at the start of `.filez` bytes: (header, payload size, payload offset).
fn parse_filez_prefix(csum: &Checksum, data: &[u8]) -> Result<(FileHeader, u64, usize)> {
    FileHeader::parse_archive_prefix(data).map_err(|source| Error::BadObject {
        ty: ObjectType::File,
        csum: *csum,
        source,
    })
}

fn check_hash(csum: &Checksum, hasher: ContentHasher) -> Result<()> {
    let actual = hasher.finish();
    if actual != *csum {
        return Err(corrupt(csum, format!("content hashes to {actual}")));
    }
    Ok(())
}

/// Verify `.filez` bytes against the checksum that names them; returns the header and the
/// payload size. Nothing is kept of the payload.
fn verify_filez(csum: &Checksum, data: &[u8]) -> Result<(FileHeader, u64)> {
    let (header, size, off) = parse_filez_prefix(csum, data)?;
    let mut hasher = ContentHasher::new(&header);
    // A symlink has no body: its target is in the header (trailing bytes are ignored, as
    // ostree ignores them; they are not part of the checksum).
    if !header.is_symlink() && size <= KEEP_SCRATCH as u64 {
        inflate_whole_strict(csum, &data[off..], size, |b| {
            hasher.update(b);
            Ok(())
        })?;
    } else if !header.is_symlink() {
        inflate_exact(csum, &mut &data[off..], size, &mut |b| {
            hasher.update(b);
            Ok(())
        })?;
    }
    check_hash(csum, hasher)?;
    let size = if header.is_symlink() { 0 } else { size };
    Ok((header, size))
}

/// Read the header of a `.filez` file, leaving `r` at the start of the compressed payload.
fn read_filez_prefix(csum: &Checksum, r: &mut dyn Read) -> Result<(FileHeader, u64)> {
    let mut head = [0u8; 8];
    r.read_exact(&mut head)
        .map_err(|_| corrupt(csum, "truncated header"))?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FILEZ_HEADER {
        return Err(corrupt(csum, format!("header length {len} is implausible")));
    }
    let mut buf = head.to_vec();
    buf.resize(8 + len, 0);
    r.read_exact(&mut buf[8..])
        .map_err(|_| corrupt(csum, "truncated header"))?;
    let (header, size, _) = parse_filez_prefix(csum, &buf)?;
    Ok((header, size))
}

/// A payload stream over inflated `.filez` data (the second pass of large objects).
fn inflating_reader<R: BufRead>(r: R) -> flate2::bufread::DeflateDecoder<R> {
    flate2::bufread::DeflateDecoder::new(r)
}

impl Repo {
    /// A fresh path in the repository's `tmp/`, on the same filesystem as its objects: a
    /// place to spool a large download before [`Repo::write_filez_file_verified`].
    pub fn spool_path(&self) -> PathBuf {
        self.tmp_path()
    }

    /// Write bytes as an object (unnamed then linked, or through `tmp/` and a rename).
    /// Detached metadata replaces what is there, so it always takes the rename.
    pub(crate) fn install_bytes(&self, ty: ObjectType, csum: &Checksum, data: &[u8]) -> Result<()> {
        if ty != ObjectType::CommitMeta
            && let Some(mut u) = self.unnamed_object(ty, csum)?
        {
            u.file.write_all(data).ctx("write", &u.dest)?;
            return u.link().map(drop);
        }
        let tmp = self.tmp_path();
        let r = File::create(&tmp)
            .ctx("create", &tmp)
            .and_then(|mut f| f.write_all(data).ctx("write", &tmp))
            .and_then(|()| self.install_object(&tmp, ty, csum));
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }

    /// Store a metadata object under `csum`, after checking that its bytes hash to it.
    /// Returns whether it was new.
    pub fn write_metadata_as(&self, ty: ObjectType, csum: &Checksum, data: &[u8]) -> Result<bool> {
        if !ty.is_metadata() || ty == ObjectType::CommitMeta {
            return Err(Error::Invalid(format!(
                "write_metadata_as: {ty} objects are not named by their hash"
            )));
        }
        let actual = Checksum::of(data);
        if actual != *csum {
            return Err(Error::Corrupt {
                ty,
                csum: *csum,
                why: format!("its content hashes to {actual}"),
            });
        }
        if self.has_object(ty, csum)? {
            return Ok(false);
        }
        self.install_bytes(ty, csum, data)?;
        Ok(true)
    }

    /// Store a commit's detached metadata as received, replacing what was there. The bytes
    /// must be an `a{sv}` in normal form.
    pub fn write_commitmeta_bytes(&self, commit: &Checksum, data: &[u8]) -> Result<()> {
        let ty = Type::parse("a{sv}").map_err(crate::format::FormatError::from)?;
        gvariant::from_bytes(&ty, data).map_err(|e| Error::BadObject {
            ty: ObjectType::CommitMeta,
            csum: *commit,
            source: e.into(),
        })?;
        self.install_bytes(ObjectType::CommitMeta, commit, data)
    }

    /// Store `.filez` bytes in an archive repository as they are, without recompressing,
    /// once they are verified against `csum`. Returns whether the object was new.
    pub fn write_archive_object_verified(&self, csum: &Checksum, filez: &[u8]) -> Result<bool> {
        if !self.mode.is_archive() {
            return Err(Error::Invalid(format!(
                "{} is a {} repository: .filez bytes are stored as they are only in archive mode",
                self.path.display(),
                self.mode
            )));
        }
        if self.has_object(ObjectType::File, csum)? {
            return Ok(false);
        }
        verify_filez(csum, filez)?;
        self.install_bytes(ObjectType::File, csum, filez)?;
        Ok(true)
    }

    /// Store a content object received as `.filez` bytes, in this repository's mode, once it
    /// is verified against `csum`. Returns whether the object was new.
    pub fn write_filez_verified(&self, csum: &Checksum, filez: &[u8]) -> Result<bool> {
        if self.mode.is_archive() {
            return self.write_archive_object_verified(csum, filez);
        }
        if self.has_object(ObjectType::File, csum)? {
            return Ok(false);
        }
        let (header, size, off) = parse_filez_prefix(csum, filez)?;
        if header.is_symlink() {
            verify_filez(csum, filez)?;
            return self.write_absent_content(csum, &header, Payload::Bytes(&[]));
        }
        if size <= INFLATE_IN_MEMORY {
            return inflate_whole(csum, &filez[off..], size, |payload| {
                let mut hasher = ContentHasher::new(&header);
                hasher.update(payload);
                check_hash(csum, hasher)?;
                self.write_absent_content(csum, &header, Payload::Bytes(payload))
            });
        }
        verify_filez(csum, filez)?;
        let mut payload = inflating_reader(&filez[off..]);
        self.write_absent_content(csum, &header, Payload::Stream(&mut payload, size))
    }

    /// Like [`Repo::write_filez_verified`] for `.filez` data spooled to `path` (a file in
    /// this repository's `tmp/`, see [`Repo::spool_path`]). An archive repository takes the
    /// file itself (renamed into place); otherwise it is removed. Returns whether the object
    /// was new.
    pub fn write_filez_file_verified(&self, csum: &Checksum, path: &Path) -> Result<bool> {
        let r = self.write_filez_file_inner(csum, path);
        // Taken by a rename on success in archive mode; otherwise the spool is spent.
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != ErrorKind::NotFound && r.is_ok() => Err(e).ctx("remove", path),
            _ => r,
        }
    }

    fn write_filez_file_inner(&self, csum: &Checksum, path: &Path) -> Result<bool> {
        if self.has_object(ObjectType::File, csum)? {
            return Ok(false);
        }
        let open = || -> Result<BufReader<File>> {
            Ok(BufReader::with_capacity(
                256 * 1024,
                File::open(path).ctx("open", path)?,
            ))
        };
        let mut r = open()?;
        let (header, size) = read_filez_prefix(csum, &mut r)?;
        let mut hasher = ContentHasher::new(&header);
        if !header.is_symlink() {
            inflate_exact(csum, &mut r, size, &mut |b| {
                hasher.update(b);
                Ok(())
            })?;
        }
        check_hash(csum, hasher)?;
        if self.mode.is_archive() {
            self.install_object(path, ObjectType::File, csum)?;
            return Ok(true);
        }
        if header.is_symlink() {
            return self.write_absent_content(csum, &header, Payload::Bytes(&[]));
        }
        let mut r = open()?;
        read_filez_prefix(csum, &mut r)?;
        self.write_absent_content(
            csum,
            &header,
            Payload::Stream(&mut inflating_reader(r), size),
        )
    }

    /// Hardlink an object from another repository of the same mode (a local pull on one
    /// filesystem). `None` when that is impossible (other mode, other filesystem, or links
    /// refused) and the caller should copy instead; otherwise whether the object was new.
    /// The caller verifies the source object first.
    pub fn link_object_from(
        &self,
        src: &Repo,
        ty: ObjectType,
        csum: &Checksum,
    ) -> Result<Option<bool>> {
        if src.mode != self.mode {
            return Ok(None);
        }
        if self.has_object(ty, csum)? {
            return Ok(Some(false));
        }
        let from = src.object_path(ty, csum);
        let tmp = self.tmp_path();
        match std::fs::hard_link(&from, &tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::Missing { ty, csum: *csum });
            }
            // EXDEV, EPERM (protected_hardlinks), EMLINK: copy instead.
            Err(_) => return Ok(None),
        }
        self.install_object(&tmp, ty, csum)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .map(|()| Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoMode;
    use crate::format::content_checksum;
    use flate2::Compression;
    use flate2::write::DeflateEncoder;

    fn filez(header: &FileHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = header.archive_prefix(payload.len() as u64);
        let mut enc = DeflateEncoder::new(Vec::new(), Compression::new(6));
        enc.write_all(payload).unwrap();
        out.extend(enc.finish().unwrap());
        out
    }

    /// Inflate a `.filez` payload with each inflater: strictly in one piece, with
    /// libdeflate in one piece, and in chunks.
    fn inflate_each_way(csum: &Checksum, data: &[u8]) -> [Result<Vec<u8>>; 3] {
        let (_, size, off) = parse_filez_prefix(csum, data).unwrap();
        let strict = inflate_whole_strict(csum, &data[off..], size, |b| Ok(b.to_vec()));
        let fast = inflate_whole(csum, &data[off..], size, |b| Ok(b.to_vec()));
        let mut out = Vec::new();
        let chunked = inflate_exact(csum, &mut &data[off..], size, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .map(|()| out);
        [strict, fast, chunked]
    }

    #[test]
    fn verifies_and_refuses() {
        let h = FileHeader::regular(0, 0, 0o644, vec![]);
        let payload: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let csum = content_checksum(&h, &payload);
        let good = filez(&h, &payload);
        assert_eq!(verify_filez(&csum, &good).unwrap().1, payload.len() as u64);
        for r in inflate_each_way(&csum, &good) {
            assert_eq!(r.unwrap(), payload);
        }

        let mut truncated = good.clone();
        truncated.truncate(good.len() - 3);
        let e = verify_filez(&csum, &truncated).unwrap_err().to_string();
        assert!(e.contains(&csum.to_hex()) && e.contains("truncated"), "{e}");
        for r in inflate_each_way(&csum, &truncated) {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("truncated"), "{e}");
        }

        let mut flipped = good.clone();
        let n = flipped.len();
        flipped[n / 2] ^= 0x55;
        assert!(verify_filez(&csum, &flipped).is_err());

        // Bytes after the stream: refused where the .filez is kept as it is (archive).
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(verify_filez(&csum, &trailing).is_err());
        let [strict, fast, chunked] = inflate_each_way(&csum, &trailing);
        for r in [strict, chunked] {
            let e = r.unwrap_err().to_string();
            assert!(e.contains("bytes follow"), "{e}");
        }
        assert_eq!(fast.unwrap(), payload);

        // A header that promises fewer (or more) bytes than the stream holds.
        for claimed in [payload.len() as u64 - 1, payload.len() as u64 + 1] {
            let mut lying = h.archive_prefix(claimed);
            lying.extend_from_slice(&good[h.archive_prefix(payload.len() as u64).len()..]);
            assert!(verify_filez(&csum, &lying).is_err());
            for r in inflate_each_way(&csum, &lying) {
                let e = r.unwrap_err().to_string();
                assert!(e.contains("bytes"), "{e}");
            }
        }

        let other = Checksum::of(b"other");
        let e = verify_filez(&other, &good).unwrap_err().to_string();
        assert!(e.contains("hashes to"), "{e}");

        let link = FileHeader::symlink(0, 0, "target".into(), vec![]);
        let lc = content_checksum(&link, b"");
        assert!(verify_filez(&lc, &link.archive_prefix(0)).is_ok());
    }

    #[test]
    fn stores_in_every_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let h = FileHeader::regular(0, 0, 0o755, vec![]);
        let payload = b"#!/bin/sh\necho hi\n".repeat(1000);
        let csum = content_checksum(&h, &payload);
        let bytes = filez(&h, &payload);
        for mode in [RepoMode::Archive, RepoMode::BareUser] {
            let repo = Repo::init(&tmp.path().join(mode.to_string()), mode).unwrap();
            assert!(
                repo.write_filez_verified(&Checksum::of(b"x"), &bytes)
                    .is_err()
            );
            assert!(
                !repo
                    .has_object(ObjectType::File, &Checksum::of(b"x"))
                    .unwrap()
            );
            assert!(repo.write_filez_verified(&csum, &bytes).unwrap());
            assert!(!repo.write_filez_verified(&csum, &bytes).unwrap());
            repo.verify_content(&csum).unwrap();
            if mode.is_archive() {
                let stored = std::fs::read(repo.object_path(ObjectType::File, &csum)).unwrap();
                assert_eq!(stored, bytes, "archive keeps the received bytes");
            }
            // The spooled-file path gives the same result and consumes the spool.
            let repo2 = Repo::init(&tmp.path().join(format!("{mode}-2")), mode).unwrap();
            let spool = repo2.spool_path();
            std::fs::write(&spool, &bytes).unwrap();
            assert!(repo2.write_filez_file_verified(&csum, &spool).unwrap());
            assert!(!spool.exists());
            repo2.verify_content(&csum).unwrap();
        }
    }

    #[test]
    fn metadata_must_hash_to_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Repo::init(tmp.path(), RepoMode::Archive).unwrap();
        let data = crate::format::DirTree::default().to_bytes();
        let csum = Checksum::of(&data);
        assert!(
            repo.write_metadata_as(ObjectType::DirTree, &Checksum::of(b"no"), &data)
                .is_err()
        );
        assert!(
            repo.write_metadata_as(ObjectType::DirTree, &csum, &data)
                .unwrap()
        );
        assert!(
            !repo
                .write_metadata_as(ObjectType::DirTree, &csum, &data)
                .unwrap()
        );
        assert!(repo.write_commitmeta_bytes(&csum, b"\x01\x02").is_err());
    }
}
