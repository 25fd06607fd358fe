//! Identifiers derived from the commit: the same commit gives the same disk GUID,
//! partition GUIDs, file-system UUID, directory hash seed and FAT volume ID, so that the
//! same input gives the same bytes.

use crate::gpt::Guid;
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageIds {
    pub disk: Guid,
    pub esp_partition: Guid,
    pub root_partition: Guid,
    /// The ext4 file system's UUID (`root=UUID=...`).
    pub root_fs: Guid,
    /// ext4's directory-index hash seed.
    pub root_hash_seed: Guid,
    /// The FAT volume ID (`UUID=XXXX-XXXX` in fstab).
    pub esp_volume_id: u32,
}

fn seed(purpose: &str, commit: &str) -> String {
    format!("trellis-image:{purpose}:{commit}")
}

impl ImageIds {
    pub fn for_commit(commit: &str) -> ImageIds {
        let h = Sha256::digest(seed("esp-volume-id", commit).as_bytes());
        ImageIds {
            disk: Guid::derive(&seed("disk", commit)),
            esp_partition: Guid::derive(&seed("esp-partition", commit)),
            root_partition: Guid::derive(&seed("root-partition", commit)),
            root_fs: Guid::derive(&seed("root-fs", commit)),
            root_hash_seed: Guid::derive(&seed("root-hash-seed", commit)),
            esp_volume_id: u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
        }
    }
}

/// A FAT volume ID as blkid, udev and fstab write it: `1A2B-3C4D`.
pub fn volume_id_text(id: u32) -> String {
    format!("{:04X}-{:04X}", id >> 16, id & 0xffff)
}

/// How the summary shows a GUID.
#[derive(Clone, Debug, Serialize)]
pub struct IdsReport {
    pub disk: String,
    pub esp_partition: String,
    pub root_partition: String,
    pub root_fs: String,
    pub esp_volume_id: String,
}

impl From<&ImageIds> for IdsReport {
    fn from(i: &ImageIds) -> IdsReport {
        IdsReport {
            disk: i.disk.to_string(),
            esp_partition: i.esp_partition.to_string(),
            root_partition: i.root_partition.to_string(),
            root_fs: i.root_fs.to_string(),
            esp_volume_id: volume_id_text(i.esp_volume_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_the_commit_only_and_differ_from_each_other() {
        let c = "a".repeat(64);
        let a = ImageIds::for_commit(&c);
        assert_eq!(a, ImageIds::for_commit(&c));
        let b = ImageIds::for_commit(&"b".repeat(64));
        assert_ne!(a.disk, b.disk);
        assert_ne!(a.esp_volume_id, b.esp_volume_id);
        let all = [
            a.disk,
            a.esp_partition,
            a.root_partition,
            a.root_fs,
            a.root_hash_seed,
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn volume_id_format() {
        assert_eq!(volume_id_text(0x1a2b_3c4d), "1A2B-3C4D");
        assert_eq!(volume_id_text(0x0000_00ff), "0000-00FF");
    }
}
