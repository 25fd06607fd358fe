//! SHA-256 object checksums and object types.

use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 object checksum (OSTree's object name).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(pub [u8; 32]);

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0:?} is not a checksum: expected 64 lowercase hexadecimal characters")]
pub struct BadChecksum(pub String);

impl Checksum {
    pub fn of(data: &[u8]) -> Checksum {
        Checksum(Sha256::digest(data).into())
    }

    pub fn from_hex(s: &str) -> Result<Checksum, BadChecksum> {
        let bad = || BadChecksum(s.chars().take(80).collect());
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad())?;
        Ok(Checksum(out))
    }

    pub fn from_slice(b: &[u8]) -> Option<Checksum> {
        b.try_into().ok().map(Checksum)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Relative path of the loose object: `XX/YYYY….ext`.
    pub fn loose_path(&self, ext: &str) -> String {
        let h = self.to_hex();
        format!("{}/{}.{ext}", &h[..2], &h[2..])
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Checksum({})", self.to_hex())
    }
}

impl std::str::FromStr for Checksum {
    type Err = BadChecksum;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Checksum::from_hex(s)
    }
}

/// The kinds of object a repository holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    File,
    DirTree,
    DirMeta,
    Commit,
    TombstoneCommit,
    CommitMeta,
}

impl ObjectType {
    /// File extension of a loose object; content in archive repos is `filez`.
    pub fn extension(self, archive: bool) -> &'static str {
        match self {
            ObjectType::File if archive => "filez",
            ObjectType::File => "file",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::TombstoneCommit => "tombstone-commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    pub fn from_extension(ext: &str) -> Option<ObjectType> {
        Some(match ext {
            "file" | "filez" => ObjectType::File,
            "dirtree" => ObjectType::DirTree,
            "dirmeta" => ObjectType::DirMeta,
            "commit" => ObjectType::Commit,
            "tombstone-commit" => ObjectType::TombstoneCommit,
            "commitmeta" => ObjectType::CommitMeta,
            _ => return None,
        })
    }

    /// The name OSTree uses in messages and in `ostree.sizes`.
    pub fn name(self) -> &'static str {
        match self {
            ObjectType::File => "file",
            ObjectType::DirTree => "dirtree",
            ObjectType::DirMeta => "dirmeta",
            ObjectType::Commit => "commit",
            ObjectType::TombstoneCommit => "tombstone-commit",
            ObjectType::CommitMeta => "commitmeta",
        }
    }

    /// Whether the object is GVariant metadata stored identically in every mode.
    pub fn is_metadata(self) -> bool {
        !matches!(self, ObjectType::File)
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_refusals() {
        let c = Checksum::of(b"x");
        assert_eq!(Checksum::from_hex(&c.to_hex()).unwrap(), c);
        assert!(Checksum::from_hex(&c.to_hex().to_uppercase()).is_err());
        assert!(Checksum::from_hex("abc").is_err());
        assert!(Checksum::from_hex(&"g".repeat(64)).is_err());
        assert_eq!(
            c.loose_path("commit")[..3],
            c.to_hex()[..2].to_string() + "/"
        );
    }
}
