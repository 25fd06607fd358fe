//! Sizes: parsing `--size`/`--free`, measuring what the staged trees take, and planning
//! the partitions from that.
//!
//! Disk layout, 1 MiB aligned: 1 MiB for the MBR and the primary GPT, the ESP, the root,
//! 1 MiB at the end for the backup GPT.

use crate::error::{ImageError, Result};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
/// The ESP never gets smaller than this: room for three kernel and initramfs pairs after
/// upgrades, and comfortably above FAT32's minimum cluster count.
pub const ESP_MIN: u64 = 256 * MIB;
/// Free space on the root by default: room for an upgrade's new files.
pub const DEFAULT_FREE: u64 = GIB;
/// The root file system's block size and bytes per inode (`mkfs.ext4 -b`, `-i`).
pub const BLOCK: u64 = 4096;
pub const BYTES_PER_INODE: u64 = 16384;
/// `mkfs.ext4 -m`: blocks reserved for root, in percent.
pub const RESERVED_PERCENT: u64 = 1;
/// Where the first partition starts, and what is kept free at the end for the backup GPT.
pub const HEAD: u64 = MIB;
pub const TAIL: u64 = MIB;

/// `auto`, or a number of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeSpec {
    Auto,
    Bytes(u64),
}

impl std::str::FromStr for SizeSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<SizeSpec, String> {
        if s.eq_ignore_ascii_case("auto") {
            Ok(SizeSpec::Auto)
        } else {
            parse_size(s).map(SizeSpec::Bytes)
        }
    }
}

/// `4G`, `512M`, `1536MiB`, `100000000`: binary units (K, M, G, T; an optional `iB` or
/// `B` after them).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let bad = || format!("{s:?} is not a size (e.g. 4G, 512M, 1536MiB or a number of bytes)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let unit = unit.trim().to_ascii_uppercase();
    let unit = unit
        .strip_suffix("IB")
        .or_else(|| unit.strip_suffix('B'))
        .unwrap_or(&unit);
    let mult: u64 = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Sizes as people read them: `1.5 GiB`, `300 MiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else if bytes >= MIB {
        format!("{:.0} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

pub fn align_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// What a staged tree will take: bytes in whole blocks, and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Measure a tree as a file system with `block`-byte blocks would store it: each inode
/// once (hardlinks share one), regular files and directories in whole blocks, short
/// symlinks inside the inode.
pub fn measure(root: &Path, block: u64) -> Result<Usage> {
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        usage.inodes += 1;
        let mut dir_bytes = 24u64;
        for e in std::fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let e = e.map_err(|e| ImageError::io("list", &dir, e))?;
            dir_bytes += 8 + align_up(e.file_name().len() as u64, 4);
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).map_err(|e| ImageError::io("stat", &p, e))?;
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            if m.nlink() > 1 && !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            usage.inodes += 1;
            if m.file_type().is_symlink() {
                // ext4 keeps targets under 60 bytes in the inode.
                if m.len() >= 60 {
                    usage.bytes += block;
                }
            } else if m.is_file() {
                usage.bytes += align_up(m.len(), block);
            }
        }
        usage.bytes += align_up(dir_bytes, block);
    }
    Ok(usage)
}

/// Where the partitions go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub disk: u64,
    pub esp_offset: u64,
    pub esp: u64,
    pub root_offset: u64,
    pub root: u64,
}

impl Plan {
    fn new(esp: u64, root: u64) -> Plan {
        Plan {
            disk: HEAD + esp + root + TAIL,
            esp_offset: HEAD,
            esp,
            root_offset: HEAD + esp,
            root,
        }
    }
}

/// ext4's journal for a file system of about `bytes` (mke2fs's table, rounded up).
fn journal(bytes: u64) -> u64 {
    if bytes < GIB {
        16 * MIB
    } else if bytes < 16 * GIB {
        64 * MIB
    } else {
        (bytes / 64).min(GIB)
    }
}

/// The smallest ext4 file system holding `data` bytes of blocks and `inodes` inodes plus
/// `free` bytes: content plus 15 % for metadata, the journal and a margin, over the share
/// that inode tables and reserved blocks leave.
pub fn root_size(content: Usage, free: u64) -> u64 {
    let want = content.bytes + content.bytes * 15 / 100 + free + 32 * MIB;
    let usable_per_mille = 1000 - 1000 * 256 / BYTES_PER_INODE - RESERVED_PERCENT * 10 - 10;
    let mut size = want * 1000 / usable_per_mille;
    size += journal(size);
    // Enough inodes for this content, and twice as many for an upgrade's new deployment.
    let inodes = content.inodes * 2 + 4096 + free / BYTES_PER_INODE;
    size = size.max(inodes * BYTES_PER_INODE);
    align_up(size, MIB)
}

/// An ESP for this content: three times the kernels (the booted, the previous and a new
/// deployment's), the rest once, 10 % for FAT, at least [`ESP_MIN`].
pub fn esp_size(kernels: u64, other: u64) -> u64 {
    let want = kernels * 3 + other;
    align_up((want + want / 10 + 8 * MIB).max(ESP_MIN), MIB)
}

/// Plan the disk. `esp_content` and `root_content` are what the staged trees take;
/// `kernels` the part of the ESP that each deployment adds again.
pub fn plan(
    size: SizeSpec,
    esp: SizeSpec,
    free: u64,
    root_content: Usage,
    esp_kernels: u64,
    esp_other: u64,
) -> Result<Plan> {
    let esp_min = esp_kernels + esp_other + 8 * MIB;
    let esp = match esp {
        SizeSpec::Auto => esp_size(esp_kernels, esp_other),
        SizeSpec::Bytes(n) => {
            let n = align_up(n, MIB);
            if n < esp_min.max(64 * MIB) {
                return Err(ImageError::TooSmall {
                    what: "the ESP (--esp-size)".into(),
                    given: n,
                    needed: align_up(esp_min.max(64 * MIB), MIB),
                });
            }
            n
        }
    };
    match size {
        SizeSpec::Auto => Ok(Plan::new(esp, root_size(root_content, free))),
        SizeSpec::Bytes(total) => {
            let root_min = root_size(root_content, 0);
            let needed = HEAD + esp + root_min + TAIL;
            let total = total / MIB * MIB;
            if total < needed {
                return Err(ImageError::TooSmall {
                    what: "the disk (--size)".into(),
                    given: total,
                    needed,
                });
            }
            Ok(Plan::new(esp, total - HEAD - esp - TAIL))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1536MiB"), Ok(1536 << 20));
        assert_eq!(parse_size("2gb"), Ok(2 << 30));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        for bad in ["", "G", "4X", "-1G", "1.5G", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!("auto".parse(), Ok(SizeSpec::Auto));
        assert_eq!("8G".parse(), Ok(SizeSpec::Bytes(8 << 30)));
    }

    #[test]
    fn auto_plan_is_aligned_and_holds_content_plus_free() {
        let content = Usage {
            bytes: 700 * MIB,
            inodes: 30_000,
        };
        let p = plan(SizeSpec::Auto, SizeSpec::Auto, GIB, content, 60 * MIB, MIB).unwrap();
        for v in [p.disk, p.esp, p.root, p.esp_offset, p.root_offset] {
            assert_eq!(v % MIB, 0);
        }
        assert_eq!(p.esp_offset, MIB);
        assert_eq!(p.root_offset, MIB + p.esp);
        assert_eq!(p.disk, p.root_offset + p.root + MIB);
        assert!(p.root > 700 * MIB + GIB, "{p:?}");
        assert!(p.root < 3 * GIB, "{p:?}");
        assert_eq!(p.esp, ESP_MIN, "{p:?}");
        // Big kernels: room for three of them.
        let big = plan(SizeSpec::Auto, SizeSpec::Auto, GIB, content, 100 * MIB, MIB).unwrap();
        assert!(big.esp >= 3 * 100 * MIB + MIB, "{big:?}");
        // More free space, a bigger root; the ESP stays.
        let q = plan(
            SizeSpec::Auto,
            SizeSpec::Auto,
            4 * GIB,
            content,
            60 * MIB,
            MIB,
        )
        .unwrap();
        assert!(q.root >= p.root + 3 * GIB);
        assert_eq!(q.esp, p.esp);
    }

    #[test]
    fn small_trees_get_the_minimum_esp_and_enough_inodes() {
        assert_eq!(esp_size(MIB, MIB), ESP_MIN);
        let many_small = Usage {
            bytes: 10 * MIB,
            inodes: 200_000,
        };
        assert!(root_size(many_small, 0) >= 400_000 * BYTES_PER_INODE);
    }

    #[test]
    fn fixed_size_gives_the_rest_to_root_or_says_what_is_needed() {
        let content = Usage {
            bytes: 700 * MIB,
            inodes: 30_000,
        };
        let p = plan(
            SizeSpec::Bytes(4 * GIB + 123),
            SizeSpec::Auto,
            GIB,
            content,
            60 * MIB,
            MIB,
        )
        .unwrap();
        assert_eq!(p.disk, 4 * GIB);
        assert_eq!(p.root, 4 * GIB - 2 * MIB - p.esp);
        let e = plan(
            SizeSpec::Bytes(GIB),
            SizeSpec::Auto,
            GIB,
            content,
            60 * MIB,
            MIB,
        )
        .unwrap_err();
        match e {
            ImageError::TooSmall { given, needed, .. } => {
                assert_eq!(given, GIB);
                assert!(needed > GIB);
            }
            other => panic!("{other}"),
        }
        let e = plan(
            SizeSpec::Auto,
            SizeSpec::Bytes(32 * MIB),
            GIB,
            content,
            60 * MIB,
            MIB,
        )
        .unwrap_err();
        assert!(e.to_string().contains("--esp-size"), "{e}");
    }

    #[test]
    fn measure_counts_hardlinks_once() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        std::fs::create_dir(r.join("d")).unwrap();
        std::fs::write(r.join("d/a"), vec![0u8; 5000]).unwrap();
        std::fs::hard_link(r.join("d/a"), r.join("b")).unwrap();
        std::fs::write(r.join("small"), b"x").unwrap();
        std::os::unix::fs::symlink("short", r.join("l1")).unwrap();
        std::os::unix::fs::symlink("x".repeat(80), r.join("l2")).unwrap();
        let u = measure(r, 4096).unwrap();
        // 2 dirs, a (once), small, 2 symlinks.
        assert_eq!(u.inodes, 6);
        // a: 2 blocks, small: 1, long symlink: 1, each dir: 1.
        assert_eq!(u.bytes, (2 + 1 + 1 + 2) * 4096);
    }
}
