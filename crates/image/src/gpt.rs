//! The GUID partition table, as bytes: a pure function of the layout.
//!
//! A disk of N 512-byte sectors holds:
//!
//! ```text
//! LBA 0          protective MBR (one partition of type 0xEE over the whole disk)
//! LBA 1          primary header (92 bytes, CRC32 over itself and over the entry array)
//! LBA 2..=33     primary entry array: 128 entries of 128 bytes
//! ...            partitions, between LBA 34 and N-34
//! LBA N-33..N-2  backup entry array
//! LBA N-1        backup header (its own LBA and the primary's swapped)
//! ```
//!
//! GUIDs are kept in their textual (RFC 4122, big-endian) byte order; on disk the first
//! three fields are little-endian.

use sha2::{Digest, Sha256};
use std::fmt;

pub const SECTOR: u64 = 512;
/// Entries in the array, and the size of one: the values every tool writes.
pub const ENTRIES: u32 = 128;
pub const ENTRY_SIZE: u32 = 128;
const HEADER_SIZE: u32 = 92;
/// Sectors the entry array takes (128 × 128 bytes).
const ARRAY_SECTORS: u64 = (ENTRIES as u64 * ENTRY_SIZE as u64) / SECTOR;
/// The first LBA a partition may start at: after the MBR, the header and the array.
pub const FIRST_USABLE: u64 = 2 + ARRAY_SECTORS;

/// Discoverable Partitions Specification types.
pub const TYPE_ESP: Guid = Guid::parse_const("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
pub const TYPE_ROOT_X86_64: Guid = Guid::parse_const("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");

/// A GUID in textual byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

const fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl Guid {
    /// Parse `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` at compile time (for the constants).
    const fn parse_const(s: &str) -> Guid {
        let b = s.as_bytes();
        assert!(b.len() == 36);
        let mut out = [0u8; 16];
        let mut i = 0;
        let mut o = 0;
        while i < 36 {
            if b[i] == b'-' {
                i += 1;
                continue;
            }
            out[o] = hex_val(b[i]) << 4 | hex_val(b[i + 1]);
            o += 1;
            i += 2;
        }
        assert!(o == 16);
        Guid(out)
    }

    /// Parse the textual form; `None` when it is not one.
    pub fn parse(s: &str) -> Option<Guid> {
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] || !s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return None;
        }
        Some(Guid::parse_const(s))
    }

    /// A version-4-shaped GUID derived from `seed` (SHA-256), so that the same input always
    /// gives the same GUID.
    pub fn derive(seed: &str) -> Guid {
        let h = Sha256::digest(seed.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[..16]);
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        Guid(b)
    }

    /// The mixed-endian form GPT stores.
    pub fn to_disk(self) -> [u8; 16] {
        let b = self.0;
        let mut d = b;
        d[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        d[4..6].copy_from_slice(&[b[5], b[4]]);
        d[6..8].copy_from_slice(&[b[7], b[6]]);
        d
    }

    pub fn from_disk(d: &[u8; 16]) -> Guid {
        let mut b = *d;
        b[0..4].copy_from_slice(&[d[3], d[2], d[1], d[0]]);
        b[4..6].copy_from_slice(&[d[5], d[4]]);
        b[6..8].copy_from_slice(&[d[7], d[6]]);
        Guid(b)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, x) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One partition: sectors `first_lba..=last_lba`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    pub type_guid: Guid,
    pub guid: Guid,
    pub first_lba: u64,
    pub last_lba: u64,
    pub attributes: u64,
    /// At most 36 UTF-16 code units.
    pub name: String,
}

/// A whole table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gpt {
    pub disk_guid: Guid,
    /// Size of the disk in sectors.
    pub sectors: u64,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GptError {
    #[error("a {sectors}-sector disk is too small for a partition table")]
    DiskTooSmall { sectors: u64 },
    #[error("partition {index} ({name:?}): {why}")]
    BadPartition {
        index: usize,
        name: String,
        why: String,
    },
    #[error("more than {ENTRIES} partitions")]
    TooManyPartitions,
    #[error("not a GPT disk: {0}")]
    Parse(String),
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = flate2::Crc::new();
    c.update(data);
    c.sum()
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn get_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

fn get_guid(buf: &[u8], at: usize) -> Guid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[at..at + 16]);
    Guid::from_disk(&b)
}

impl Gpt {
    /// The last LBA (the backup header).
    pub fn last_lba(&self) -> u64 {
        self.sectors - 1
    }

    /// The last LBA a partition may end at (before the backup entry array).
    pub fn last_usable(&self) -> u64 {
        self.sectors - 2 - ARRAY_SECTORS
    }

    /// Where the backup entry array starts, in bytes; [`Gpt::backup`] is written there.
    pub fn backup_offset(&self) -> u64 {
        (self.last_usable() + 1) * SECTOR
    }

    /// Partitions must lie in the usable area, in order, without overlapping, with names
    /// that fit.
    pub fn validate(&self) -> Result<(), GptError> {
        if self.sectors < FIRST_USABLE * 2 + 1 {
            return Err(GptError::DiskTooSmall {
                sectors: self.sectors,
            });
        }
        if self.partitions.len() > ENTRIES as usize {
            return Err(GptError::TooManyPartitions);
        }
        let mut prev_end = FIRST_USABLE - 1;
        for (index, p) in self.partitions.iter().enumerate() {
            let bad = |why: String| GptError::BadPartition {
                index,
                name: p.name.clone(),
                why,
            };
            if p.first_lba <= prev_end {
                return Err(bad(format!(
                    "starts at LBA {}, before LBA {} (overlap or outside the usable area)",
                    p.first_lba,
                    prev_end + 1
                )));
            }
            if p.last_lba < p.first_lba || p.last_lba > self.last_usable() {
                return Err(bad(format!(
                    "ends at LBA {}, outside {}..={}",
                    p.last_lba,
                    p.first_lba,
                    self.last_usable()
                )));
            }
            if p.name.encode_utf16().count() > 36 {
                return Err(bad("name longer than 36 UTF-16 units".into()));
            }
            prev_end = p.last_lba;
        }
        Ok(())
    }

    fn entry_array(&self) -> Vec<u8> {
        let mut a = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut a[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_disk());
            e[16..32].copy_from_slice(&p.guid.to_disk());
            put_u64(e, 32, p.first_lba);
            put_u64(e, 40, p.last_lba);
            put_u64(e, 48, p.attributes);
            for (j, unit) in p.name.encode_utf16().take(36).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
            }
        }
        a
    }

    fn header(&self, my_lba: u64, alternate_lba: u64, entries_lba: u64, array_crc: u32) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        put_u32(&mut h, 8, 0x0001_0000);
        put_u32(&mut h, 12, HEADER_SIZE);
        put_u64(&mut h, 24, my_lba);
        put_u64(&mut h, 32, alternate_lba);
        put_u64(&mut h, 40, FIRST_USABLE);
        put_u64(&mut h, 48, self.last_usable());
        h[56..72].copy_from_slice(&self.disk_guid.to_disk());
        put_u64(&mut h, 72, entries_lba);
        put_u32(&mut h, 80, ENTRIES);
        put_u32(&mut h, 84, ENTRY_SIZE);
        put_u32(&mut h, 88, array_crc);
        let crc = crc32(&h[..HEADER_SIZE as usize]);
        put_u32(&mut h, 16, crc);
        h
    }

    fn protective_mbr(&self) -> Vec<u8> {
        let mut m = vec![0u8; SECTOR as usize];
        let e = &mut m[446..462];
        // Status 0, CHS start 0/0/2, type 0xEE, CHS end "as large as possible".
        e[0..8].copy_from_slice(&[0x00, 0x00, 0x02, 0x00, 0xee, 0xff, 0xff, 0xff]);
        put_u32(e, 8, 1);
        put_u32(e, 12, u32::try_from(self.sectors - 1).unwrap_or(u32::MAX));
        m[510] = 0x55;
        m[511] = 0xaa;
        m
    }

    /// LBA 0 to 33: the protective MBR, the primary header and the primary entry array.
    pub fn primary(&self) -> Result<Vec<u8>, GptError> {
        self.validate()?;
        let array = self.entry_array();
        let crc = crc32(&array);
        let mut out = self.protective_mbr();
        out.extend(self.header(1, self.last_lba(), 2, crc));
        out.extend(array);
        Ok(out)
    }

    /// The backup entry array and header: the last 33 sectors, at [`Gpt::backup_offset`].
    pub fn backup(&self) -> Result<Vec<u8>, GptError> {
        self.validate()?;
        let array = self.entry_array();
        let crc = crc32(&array);
        let mut out = array;
        out.extend(self.header(self.last_lba(), 1, self.last_usable() + 1, crc));
        Ok(out)
    }

    /// Read a table back from the first 34 sectors of a disk of `sectors` sectors,
    /// checking both CRCs (the tests' and the tools' view of what was written).
    pub fn parse(primary: &[u8], sectors: u64) -> Result<Gpt, GptError> {
        let need = (FIRST_USABLE * SECTOR) as usize;
        if primary.len() < need {
            return Err(GptError::Parse(format!(
                "{} bytes, need {need}",
                primary.len()
            )));
        }
        let h = &primary[SECTOR as usize..2 * SECTOR as usize];
        if &h[0..8] != b"EFI PART" {
            return Err(GptError::Parse("no \"EFI PART\" signature at LBA 1".into()));
        }
        let size = get_u32(h, 12) as usize;
        if !(HEADER_SIZE as usize..=SECTOR as usize).contains(&size) {
            return Err(GptError::Parse(format!("header size {size}")));
        }
        let mut copy = h[..size].to_vec();
        copy[16..20].fill(0);
        if crc32(&copy) != get_u32(h, 16) {
            return Err(GptError::Parse("header CRC mismatch".into()));
        }
        let (count, esize) = (get_u32(h, 80), get_u32(h, 84));
        if count != ENTRIES || esize != ENTRY_SIZE || get_u64(h, 72) != 2 {
            return Err(GptError::Parse(format!(
                "unexpected entry array: {count} entries of {esize} bytes at LBA {}",
                get_u64(h, 72)
            )));
        }
        let array = &primary[2 * SECTOR as usize..need];
        if crc32(array) != get_u32(h, 88) {
            return Err(GptError::Parse("entry array CRC mismatch".into()));
        }
        let mut partitions = Vec::new();
        for e in array.chunks(ENTRY_SIZE as usize) {
            let type_guid = get_guid(e, 0);
            if type_guid.0 == [0; 16] {
                continue;
            }
            let units: Vec<u16> = e[56..128]
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .take_while(|&u| u != 0)
                .collect();
            partitions.push(Partition {
                type_guid,
                guid: get_guid(e, 16),
                first_lba: get_u64(e, 32),
                last_lba: get_u64(e, 40),
                attributes: get_u64(e, 48),
                name: String::from_utf16_lossy(&units),
            });
        }
        Ok(Gpt {
            disk_guid: get_guid(h, 56),
            sectors,
            partitions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Gpt {
        Gpt {
            disk_guid: Guid::derive("disk"),
            sectors: 8 * 2048,
            partitions: vec![
                Partition {
                    type_guid: TYPE_ESP,
                    guid: Guid::derive("esp"),
                    first_lba: 2048,
                    last_lba: 4095,
                    attributes: 0,
                    name: "esp".into(),
                },
                Partition {
                    type_guid: TYPE_ROOT_X86_64,
                    guid: Guid::derive("root"),
                    first_lba: 4096,
                    last_lba: 7 * 2048 - 1,
                    attributes: 0,
                    name: "root".into(),
                },
            ],
        }
    }

    #[test]
    fn guid_text_and_disk_order() {
        assert_eq!(TYPE_ESP.to_string(), "c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
        // The on-disk form of the ESP type, as every partitioner writes it.
        assert_eq!(
            TYPE_ESP.to_disk(),
            [
                0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e,
                0xc9, 0x3b
            ]
        );
        assert_eq!(
            Guid::from_disk(&TYPE_ROOT_X86_64.to_disk()),
            TYPE_ROOT_X86_64
        );
        assert_eq!(
            Guid::parse("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"),
            Some(TYPE_ROOT_X86_64)
        );
        assert_eq!(Guid::parse("4f68bce3e8cd4db196e7fbcaf984b709"), None);
        assert_eq!(Guid::parse("zf68bce3-e8cd-4db1-96e7-fbcaf984b709"), None);
    }

    #[test]
    fn derived_guids_are_stable_and_v4_shaped() {
        let a = Guid::derive("trellis-image:disk:abc");
        assert_eq!(a, Guid::derive("trellis-image:disk:abc"));
        assert_ne!(a, Guid::derive("trellis-image:disk:abd"));
        let s = a.to_string();
        assert_eq!(&s[14..15], "4", "{s}");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }

    #[test]
    fn layout_of_the_bytes() {
        let g = sample();
        let p = g.primary().unwrap();
        assert_eq!(p.len(), 34 * 512);
        assert_eq!(&p[510..512], &[0x55, 0xaa]);
        assert_eq!(p[446 + 4], 0xee);
        assert_eq!(get_u32(&p, 446 + 12), 8 * 2048 - 1);
        assert_eq!(&p[512..520], b"EFI PART");
        assert_eq!(get_u64(&p, 512 + 32), 8 * 2048 - 1);
        assert_eq!(get_u64(&p, 512 + 48), 8 * 2048 - 34);
        let b = g.backup().unwrap();
        assert_eq!(b.len(), 33 * 512);
        assert_eq!(g.backup_offset() + b.len() as u64, g.sectors * 512);
        let bh = &b[32 * 512..];
        assert_eq!(&bh[0..8], b"EFI PART");
        assert_eq!(get_u64(bh, 24), g.last_lba());
        assert_eq!(get_u64(bh, 32), 1);
        assert_eq!(get_u64(bh, 72), g.last_usable() + 1);
        // Same array, same CRC in both headers.
        assert_eq!(&b[..32 * 512], &p[2 * 512..]);
        assert_eq!(get_u32(bh, 88), get_u32(&p, 512 + 88));
    }

    #[test]
    fn round_trips_through_parse() {
        let g = sample();
        let p = g.primary().unwrap();
        assert_eq!(Gpt::parse(&p, g.sectors).unwrap(), g);
        let mut bad = p.clone();
        bad[2 * 512 + 40] ^= 1;
        assert!(matches!(
            Gpt::parse(&bad, g.sectors),
            Err(GptError::Parse(m)) if m.contains("entry array CRC")
        ));
        let mut bad = p;
        bad[512 + 60] ^= 1;
        assert!(matches!(
            Gpt::parse(&bad, g.sectors),
            Err(GptError::Parse(m)) if m.contains("header CRC")
        ));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let mut g = sample();
        g.partitions[1].first_lba = 4000;
        assert!(matches!(
            g.primary(),
            Err(GptError::BadPartition { index: 1, .. })
        ));
        let mut g = sample();
        g.partitions[1].last_lba = g.sectors - 10;
        assert!(matches!(g.validate(), Err(GptError::BadPartition { .. })));
        let mut g = sample();
        g.partitions[0].first_lba = 10;
        assert!(g.validate().is_err());
        let mut g = sample();
        g.partitions[0].name = "x".repeat(37);
        assert!(g.validate().is_err());
        let g = Gpt {
            sectors: 40,
            partitions: vec![],
            ..sample()
        };
        assert!(matches!(g.validate(), Err(GptError::DiskTooSmall { .. })));
    }

    /// sfdisk reads what we write: types, names, GUIDs and extents.
    #[test]
    fn sfdisk_reads_the_table() {
        if trellis_tools::which("sfdisk").is_none() {
            panic!("sfdisk is missing: apt-get install fdisk");
        }
        let g = sample();
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.raw");
        let f = std::fs::File::create(&disk).unwrap();
        f.set_len(g.sectors * SECTOR).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&g.primary().unwrap(), 0).unwrap();
        f.write_all_at(&g.backup().unwrap(), g.backup_offset())
            .unwrap();
        drop(f);
        let out = trellis_tools::Tool::new("sfdisk")
            .arg("--json")
            .arg(&disk)
            .run()
            .unwrap()
            .stdout_text();
        let lower = out.to_lowercase();
        assert!(
            lower.contains(&format!("\"id\": \"{}\"", g.disk_guid)),
            "{out}"
        );
        for p in &g.partitions {
            assert!(
                lower.contains(&format!("\"type\": \"{}\"", p.type_guid)),
                "{out}"
            );
            assert!(
                lower.contains(&format!("\"uuid\": \"{}\"", p.guid)),
                "{out}"
            );
            assert!(out.contains(&format!("\"name\": \"{}\"", p.name)), "{out}");
            assert!(
                out.contains(&format!("\"start\": {}", p.first_lba)),
                "{out}"
            );
        }
        // sfdisk --verify checks both headers, both arrays and the MBR.
        let v = trellis_tools::Tool::new("sfdisk")
            .arg("--verify")
            .arg(&disk)
            .run()
            .unwrap();
        assert!(
            v.stdout_text().contains("No errors detected"),
            "{}",
            v.stdout_text()
        );
    }
}
