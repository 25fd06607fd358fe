//! Content ("file") objects: the checksum header, the archive `.filez` header and the
//! bare-user `user.ostreemeta` xattr.

use super::{FormatError, PERMISSION_BITS, S_IFLNK, S_IFMT, S_IFREG, be32, be64};
use crate::checksum::Checksum;
use crate::gvariant::{self, Type, Value};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// Extended attributes as (name without its NUL, value), sorted by name and unique.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

static ARCHIVE_HEADER_TYPE: LazyLock<Type> =
    LazyLock::new(|| Type::parse("(tuuuusa(ayay))").expect("static type"));
static META_TYPE: LazyLock<Type> =
    LazyLock::new(|| Type::parse("(uuua(ayay))").expect("static type"));

/// The metadata of a content object: everything but the payload.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FileHeader {
    pub uid: u32,
    pub gid: u32,
    /// Full `st_mode`, file-type bits included.
    pub mode: u32,
    /// The link target for symlinks, empty for regular files.
    pub symlink_target: String,
    pub xattrs: Xattrs,
}

pub(super) fn xattrs_value(xattrs: &Xattrs) -> Value {
    Value::Array(
        Type::parse("(ayay)").expect("static type"),
        xattrs
            .iter()
            .map(|(n, v)| {
                let mut name = n.clone();
                name.push(0);
                Value::Tuple(vec![Value::Bytes(name), Value::Bytes(v.clone())])
            })
            .collect(),
    )
}

pub(super) fn xattrs_from_value(v: &Value) -> Result<Xattrs, FormatError> {
    let items = v.as_array().ok_or(FormatError::BadXattrs)?;
    let mut out: Xattrs = Vec::with_capacity(items.len());
    for item in items {
        let t = item.as_tuple().ok_or(FormatError::BadXattrs)?;
        let (Some(name), Some(value)) = (t[0].as_bytes(), t[1].as_bytes()) else {
            return Err(FormatError::BadXattrs);
        };
        let name = name.strip_suffix(&[0]).ok_or(FormatError::BadXattrs)?;
        if name.is_empty() || name.contains(&0) {
            return Err(FormatError::BadXattrs);
        }
        out.push((name.to_vec(), value.to_vec()));
    }
    Ok(out)
}

/// Sorted and unique, as ostree (since v2024.10) requires.
pub(super) fn xattrs_canonical(xattrs: &Xattrs) -> bool {
    xattrs.windows(2).all(|w| w[0].0 < w[1].0)
}

fn u32_be(v: &Value) -> Option<u32> {
    match v {
        Value::U32(x) => Some(x.swap_bytes()),
        _ => None,
    }
}

impl FileHeader {
    pub fn regular(uid: u32, gid: u32, mode: u32, xattrs: Xattrs) -> FileHeader {
        FileHeader {
            uid,
            gid,
            mode: S_IFREG | (mode & PERMISSION_BITS),
            symlink_target: String::new(),
            xattrs,
        }
    }

    pub fn symlink(uid: u32, gid: u32, target: String, xattrs: Xattrs) -> FileHeader {
        FileHeader {
            uid,
            gid,
            mode: S_IFLNK | 0o777,
            symlink_target: target,
            xattrs,
        }
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Regular file or symlink, permission bits only, canonical xattrs, targets only on links.
    pub fn validate(&self) -> Result<(), FormatError> {
        let kind = self.mode & S_IFMT;
        if (kind != S_IFREG && kind != S_IFLNK) || self.mode & !(S_IFMT | PERMISSION_BITS) != 0 {
            return Err(FormatError::BadMode {
                what: "content object",
                mode: self.mode,
            });
        }
        if kind == S_IFLNK && self.symlink_target.is_empty() {
            return Err(FormatError::BadMode {
                what: "symlink without a target",
                mode: self.mode,
            });
        }
        if kind == S_IFREG && !self.symlink_target.is_empty() {
            return Err(FormatError::BadMode {
                what: "regular file with a link target",
                mode: self.mode,
            });
        }
        if !xattrs_canonical(&self.xattrs) {
            return Err(FormatError::BadXattrs);
        }
        Ok(())
    }

    /// `H = (uuuusa(ayay))`, the header that is hashed.
    fn checksum_header(&self) -> Value {
        Value::Tuple(vec![
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            be32(0),
            Value::Str(self.symlink_target.clone()),
            xattrs_value(&self.xattrs),
        ])
    }

    /// `BE32(len H) ‖ 0000 ‖ H`: what is hashed before the payload.
    pub fn checksum_prefix(&self) -> Vec<u8> {
        length_prefixed(&self.checksum_header())
    }

    /// `BE32(len Z) ‖ 0000 ‖ Z`, the start of a `.filez` object, for a payload of `size` bytes.
    pub fn archive_prefix(&self, size: u64) -> Vec<u8> {
        length_prefixed(&Value::Tuple(vec![
            be64(size),
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            be32(0),
            Value::Str(self.symlink_target.clone()),
            xattrs_value(&self.xattrs),
        ]))
    }

    /// Parse the start of a `.filez` object: the header, the inflated payload size and the
    /// offset where the raw-deflate stream begins.
    pub fn parse_archive_prefix(data: &[u8]) -> Result<(FileHeader, u64, usize), FormatError> {
        if data.len() < 8 {
            return Err(FormatError::Truncated("archive content header"));
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let end = 8usize.checked_add(len).filter(|&e| e <= data.len());
        let end = end.ok_or(FormatError::Truncated("archive content header"))?;
        let v = gvariant::from_bytes(&ARCHIVE_HEADER_TYPE, &data[8..end])?;
        let m = v
            .as_tuple()
            .ok_or(FormatError::Truncated("archive content header"))?;
        let size = match &m[0] {
            Value::U64(x) => x.swap_bytes(),
            _ => return Err(FormatError::Truncated("archive content header")),
        };
        let bad = || FormatError::Truncated("archive content header");
        let rdev = u32_be(&m[4]).ok_or_else(bad)?;
        if rdev != 0 {
            return Err(FormatError::Rdev(rdev));
        }
        let header = FileHeader {
            uid: u32_be(&m[1]).ok_or_else(bad)?,
            gid: u32_be(&m[2]).ok_or_else(bad)?,
            mode: u32_be(&m[3]).ok_or_else(bad)?,
            symlink_target: m[5].as_str().ok_or_else(bad)?.to_string(),
            xattrs: xattrs_from_value(&m[6])?,
        };
        header.validate()?;
        Ok((header, size, end))
    }

    /// The bare-user `user.ostreemeta` value `(uuua(ayay))`.
    pub fn ostreemeta(&self) -> Vec<u8> {
        gvariant::to_bytes(&Value::Tuple(vec![
            be32(self.uid),
            be32(self.gid),
            be32(self.mode),
            xattrs_value(&self.xattrs),
        ]))
    }

    /// Rebuild a header from a bare-user object's `user.ostreemeta` (and, for symlinks, the
    /// target stored as the file's content).
    pub fn from_ostreemeta(meta: &[u8], symlink_target: String) -> Result<FileHeader, FormatError> {
        let v = gvariant::from_bytes(&META_TYPE, meta)?;
        let m = v
            .as_tuple()
            .ok_or(FormatError::Truncated("user.ostreemeta"))?;
        let bad = || FormatError::Truncated("user.ostreemeta");
        let mode = u32_be(&m[2]).ok_or_else(bad)?;
        let header = FileHeader {
            uid: u32_be(&m[0]).ok_or_else(bad)?,
            gid: u32_be(&m[1]).ok_or_else(bad)?,
            mode,
            symlink_target: if mode & S_IFMT == S_IFLNK {
                symlink_target
            } else {
                String::new()
            },
            xattrs: xattrs_from_value(&m[3])?,
        };
        header.validate()?;
        Ok(header)
    }
}

fn length_prefixed(v: &Value) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    gvariant::write_into(v, &mut out);
    let len = (out.len() - 8) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Streams a content object's payload into its checksum.
pub struct ContentHasher(Sha256);

impl ContentHasher {
    pub fn new(header: &FileHeader) -> ContentHasher {
        let mut h = Sha256::new();
        h.update(header.checksum_prefix());
        ContentHasher(h)
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> Checksum {
        Checksum(self.0.finalize().into())
    }
}

impl std::io::Write for ContentHasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The checksum of a content object whose payload is fully in memory.
pub fn content_checksum(header: &FileHeader, payload: &[u8]) -> Checksum {
    let mut h = ContentHasher::new(header);
    h.update(payload);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        let hello = FileHeader::regular(0, 0, 0o644, vec![]);
        assert_eq!(
            content_checksum(&hello, b"hello\n").to_hex(),
            "44f778e59f0a4748d6b0c90a47347212a231c4ad1e8f7ea5c5dffc7749153a6b"
        );
        let link = FileHeader::symlink(0, 0, "hello.txt".into(), vec![]);
        assert_eq!(
            content_checksum(&link, b"").to_hex(),
            "f66efa496a72379413c44593de510dc344beb045294f1a543da87b2b6118db35"
        );
        let x = FileHeader::regular(
            1000,
            100,
            0o644,
            vec![
                (b"user.alpha".to_vec(), b"two".to_vec()),
                (b"user.zeta".to_vec(), b"1".to_vec()),
            ],
        );
        assert_eq!(
            content_checksum(&x, b"x").to_hex(),
            "15555c927669d9e328b828f9b2ae9414e8b5368394c3d9b48989434b0ecd8262"
        );
        assert_eq!(
            hex::encode(x.ostreemeta()),
            hex::encode(
                b"\x00\x00\x03\xe8\x00\x00\x00\x64\x00\x00\x81\xa4user.alpha\x00two\x0buser.zeta\x001\x0a\x0f\x1b"
            )
        );
    }

    #[test]
    fn archive_header_round_trip() {
        let hello = FileHeader::regular(0, 0, 0o644, vec![]);
        let prefix = hello.archive_prefix(6);
        assert_eq!(
            hex::encode(&prefix),
            "0000001a0000000000000000000000060000000000000000000081a4000000000019"
        );
        let (h, size, end) = FileHeader::parse_archive_prefix(&prefix).unwrap();
        assert_eq!((h, size, end), (hello, 6, prefix.len()));
    }

    #[test]
    fn refuses_bad_modes() {
        let mut h = FileHeader::regular(0, 0, 0o644, vec![]);
        h.mode = 0o020644; // a character device
        assert!(h.validate().is_err());
        let unsorted = FileHeader::regular(
            0,
            0,
            0o644,
            vec![(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])],
        );
        assert!(unsorted.validate().is_err());
    }
}
