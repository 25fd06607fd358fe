//! The EFI system partition: `mkfs.fat` formats FAT32 at the partition's offset in the disk
//! file and mtools (`mmd`, `mcopy`) fill it, without a loop device.
//!
//! Reproducibility: `--invariant` (then `-i` for our volume ID) fixes what mkfs.fat would
//! take from the clock or randomness; mcopy keeps the files' (clamped) modification times
//! and dates new directories with `SOURCE_DATE_EPOCH`, in UTC.

use crate::error::{ImageError, IoContext, Result};
use crate::gpt::SECTOR;
use std::collections::BTreeMap;
use std::path::Path;
use trellis_tools::Tool;

pub struct Fat {
    pub volume_id: u32,
    pub label: &'static str,
    pub timestamp: u64,
    pub offset: u64,
    pub size: u64,
}

/// The directories of `tree` (relative, parents first) and the regular files of each
/// directory, all sorted. FAT holds nothing else.
#[allow(clippy::type_complexity)]
fn list_tree(tree: &Path) -> Result<(Vec<String>, BTreeMap<String, Vec<String>>)> {
    let mut dirs = Vec::new();
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let path = tree.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&path)
            .ctx("list", &path)?
            .collect::<std::io::Result<_>>()
            .ctx("list", &path)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                return Err(ImageError::Invalid(format!(
                    "{}: not a UTF-8 name; the ESP cannot hold it",
                    e.path().display()
                )));
            };
            let child = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = e.file_type().ctx("stat", e.path())?;
            if ft.is_dir() {
                dirs.push(child.clone());
                stack.push(child);
            } else if ft.is_file() {
                files.entry(rel.clone()).or_default().push(name);
            } else {
                return Err(ImageError::Invalid(format!(
                    "{}: the ESP holds only files and directories",
                    e.path().display()
                )));
            }
        }
    }
    dirs.sort();
    Ok((dirs, files))
}

/// FAT32 needs at least 65525 clusters (tools that count fewer take it for FAT16 and
/// fail): the largest cluster, up to 4 KiB, that leaves a margin above that.
pub fn sectors_per_cluster(size: u64) -> u64 {
    [8, 4, 2]
        .into_iter()
        .find(|spc| size / (spc * SECTOR) >= 70_000)
        .unwrap_or(1)
}

/// Format the partition and copy `tree`'s content into its root.
pub fn make(disk: &Path, tree: &Path, fs: &Fat) -> Result<()> {
    let lba = (fs.offset / SECTOR).to_string();
    Tool::new("mkfs.fat")
        // --invariant first: it sets a volume ID of its own, which -i then replaces.
        .arg("--invariant")
        .arg("-i")
        .arg(format!("{:08X}", fs.volume_id))
        .args(["-F", "32", "-S", "512", "-s"])
        .arg(sectors_per_cluster(fs.size).to_string())
        .args(["-n", fs.label, "-h", &lba])
        .arg(format!("--offset={lba}"))
        .arg(disk)
        .arg((fs.size / 1024).to_string())
        .run()?;
    let (dirs, files) = list_tree(tree)?;
    let img = format!("{}@@{}", disk.display(), fs.offset);
    let mtools = |program: &str| {
        Tool::new(program)
            .env("SOURCE_DATE_EPOCH", fs.timestamp.to_string())
            .env("TZ", "UTC")
            .env("MTOOLS_SKIP_CHECK", "1")
    };
    // Directories first, then each directory's files, all in sorted order: `mcopy -s`
    // would follow the staging file system's readdir order, which differs between hosts.
    if !dirs.is_empty() {
        mtools("mmd")
            .arg("-i")
            .arg(&img)
            .args(dirs.iter().map(|d| format!("::/{d}")))
            .run()?;
    }
    for (dir, names) in files {
        mtools("mcopy")
            .args(["-m", "-Q", "-i"])
            .arg(&img)
            .args(names.iter().map(|n| tree.join(&dir).join(n)))
            .arg(format!("::/{dir}"))
            .run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::{GIB, MIB};

    #[test]
    fn tree_listing_is_sorted_with_parents_first() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        for d in ["loader/entries", "EFI/systemd", "EFI/BOOT"] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        for f in [
            "EFI/BOOT/BOOTX64.EFI",
            "loader/loader.conf",
            "loader/entries/b.conf",
            "loader/entries/a.conf",
        ] {
            std::fs::write(t.join(f), b"x").unwrap();
        }
        let (dirs, files) = list_tree(t).unwrap();
        assert_eq!(
            dirs,
            ["EFI", "EFI/BOOT", "EFI/systemd", "loader", "loader/entries"]
        );
        assert_eq!(files["loader/entries"], ["a.conf", "b.conf"]);
        assert_eq!(files["EFI/BOOT"], ["BOOTX64.EFI"]);
        assert!(!files.contains_key("EFI/systemd"));
        std::os::unix::fs::symlink("x", t.join("link")).unwrap();
        assert!(list_tree(t).is_err());
    }

    #[test]
    fn clusters_stay_above_the_fat32_minimum() {
        assert_eq!(sectors_per_cluster(256 * MIB), 4);
        assert_eq!(sectors_per_cluster(GIB), 8);
        assert_eq!(sectors_per_cluster(64 * MIB), 1);
        for size in [64 * MIB, 100 * MIB, 256 * MIB, 300 * MIB, 2 * GIB] {
            assert!(
                size / (sectors_per_cluster(size) * SECTOR) >= 70_000,
                "{size}"
            );
        }
    }
}
