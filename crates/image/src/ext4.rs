//! The root file system: `mkfs.ext4 -d` writes the staged sysroot straight into the disk
//! file at the partition's offset (no loop device), keeping owners, modes, hardlinks and
//! xattrs (file capabilities).
//!
//! Reproducibility: our own mke2fs.conf (the host's cannot change the features), the UUID
//! and hash seed given, `E2FSPROGS_FAKE_TIME` for the superblock and creation times, and
//! entries added in sorted order (mke2fs does that). What mke2fs copies from the staging
//! tree as it is: modification and access times (clamped beforehand, see
//! [`crate::fsutil::clamp_times`]) and change times, which no one can set on the host; so
//! afterwards debugfs sets every used inode's ctime (and atime, which mke2fs's own reading
//! may have moved) to the build time. It also puts back
//! the immutable flag that ostree-style deployments carry.

use crate::error::{ImageError, IoContext, Result};
use crate::gpt::Guid;
use std::path::Path;
use trellis_tools::Tool;

/// What mke2fs may use: Debian 12's ext4 defaults, pinned here so that the image does not
/// depend on the build host's /etc/mke2fs.conf. Linux 5.10+ and systemd-boot's ext4-less
/// boot path (the kernel is on the ESP) are fine with all of them.
const MKE2FS_CONF: &str = "[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// ext4's immutable inode flag (`chattr +i`).
const IMMUTABLE_FL: u32 = 0x10;

pub struct Ext4 {
    pub uuid: Guid,
    pub hash_seed: Guid,
    pub label: &'static str,
    /// Seconds since the epoch for every time mke2fs and debugfs write.
    pub timestamp: u64,
    /// Byte offset of the partition in the disk file, and its size.
    pub offset: u64,
    pub size: u64,
}

/// `FILE?offset=N`: how e2fsprogs tools open a file system inside a disk image.
fn at_offset(disk: &Path, offset: u64) -> String {
    format!("{}?offset={offset}", disk.display())
}

/// Make the file system in `disk` from `tree`. `work` holds the config and command files;
/// `immutable` lists directories (absolute paths inside the file system) to seal.
pub fn make(
    disk: &Path,
    tree: &Path,
    work: &Path,
    fs: &Ext4,
    immutable: &[String],
    multi_xattr: bool,
) -> Result<()> {
    let conf = work.join("mke2fs.conf");
    std::fs::write(&conf, MKE2FS_CONF).ctx("write", &conf)?;
    let fake_time = fs.timestamp.to_string();
    let blocks = fs.size / crate::size::BLOCK;
    let ext = format!(
        "offset={},hash_seed={},root_owner=0:0",
        fs.offset, fs.hash_seed
    );
    let r = Tool::new("mkfs.ext4")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-I", "256", "-i"])
        .arg(crate::size::BYTES_PER_INODE.to_string())
        .arg("-m")
        .arg(crate::size::RESERVED_PERCENT.to_string())
        .args(["-L", fs.label, "-U"])
        .arg(fs.uuid.to_string())
        .args(["-E", &ext, "-d"])
        .arg(tree)
        .arg(disk)
        .arg(blocks.to_string())
        .env("MKE2FS_CONFIG", &conf)
        .env("E2FSPROGS_FAKE_TIME", &fake_time)
        .run();
    if let Err(e) = r {
        let tail = e.stderr_tail();
        if [
            "No space left",
            "Could not allocate block",
            "Could not allocate inode",
        ]
        .iter()
        .any(|m| tail.contains(m))
        {
            return Err(ImageError::RootFull {
                size: fs.size,
                detail: tail.to_string(),
            });
        }
        return Err(e.into());
    }
    fix_up(disk, work, fs, immutable, multi_xattr)
}

/// Run a debugfs command file on the file system, in `work` (command and value files are
/// named relative to it, so that no path needs quoting). debugfs exits 0 whatever its
/// commands did: anything on stderr but its banner is an error. Returns its stdout.
fn debugfs(dev: &str, work: &Path, name: &str, cmds: &str, write: bool, t: u64) -> Result<String> {
    let file = work.join(name);
    std::fs::write(&file, cmds).ctx("write", &file)?;
    let mut tool = Tool::new("debugfs");
    if write {
        tool = tool.arg("-w");
    }
    let out = tool
        .args(["-f", name])
        .arg(dev)
        .current_dir(work)
        .env("E2FSPROGS_FAKE_TIME", t.to_string())
        .run()?;
    let errors: Vec<String> = out
        .stderr_text()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("debugfs "))
        .map(str::to_string)
        .collect();
    if !errors.is_empty() {
        return Err(ImageError::Invalid(format!(
            "debugfs -f {} {dev} failed:\n  {}",
            file.display(),
            errors.join("\n  ")
        )));
    }
    Ok(out.stdout_text())
}

/// Inodes with two or more extended attributes, and their names, from the output of
/// `ea_list <INO>` commands. Names that a command line could not carry are left out (with
/// their inode).
pub fn multi_xattr_inodes(out: &str) -> Vec<(u32, Vec<String>)> {
    let plain = |n: &str| {
        !n.is_empty()
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-+@:".contains(&b))
    };
    let mut found: Vec<(u32, Vec<String>, bool)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("debugfs: ea_list <") {
            if let Some(ino) = rest.strip_suffix('>').and_then(|n| n.parse().ok()) {
                found.push((ino, Vec::new(), true));
            }
        } else if let (Some(cur), Some(rest)) = (found.last_mut(), line.strip_prefix("  ")) {
            match rest.split_once(" (") {
                Some((name, _)) if plain(name) => cur.1.push(name.to_string()),
                _ => cur.2 = false,
            }
        }
    }
    found
        .into_iter()
        .filter(|(_, names, ok)| *ok && names.len() >= 2)
        .map(|(ino, names, _)| (ino, names))
        .collect()
}

/// Put every inode's extended attributes in name order. mke2fs stores them in the order
/// the staging file system lists them, which is each file system's own (tmpfs sorts in
/// reverse, ext4 keeps the order they were set in): removed and set again in name order,
/// they are the same whatever the build host's file system.
fn sort_xattrs(dev: &str, work: &Path, inodes: &[u32], t: u64) -> Result<usize> {
    let list: String = inodes.iter().map(|i| format!("ea_list <{i}>\n")).collect();
    let listed = debugfs(dev, work, "ea-list.cmds", &list, false, t)?;
    let multi = multi_xattr_inodes(&listed);
    if multi.is_empty() {
        return Ok(0);
    }
    let value = |ino: u32, name: &str| format!("xattr-{ino}-{name}");
    let mut get = String::new();
    let mut set = String::new();
    for (ino, names) in &multi {
        let mut sorted = names.clone();
        sorted.sort();
        set += &format!("ea_rm <{ino}> {}\n", sorted.join(" "));
        for n in &sorted {
            get += &format!("ea_get -f {} <{ino}> {n}\n", value(*ino, n));
            set += &format!("ea_set -f {} <{ino}> {n}\n", value(*ino, n));
        }
    }
    debugfs(dev, work, "ea-get.cmds", &get, false, t)?;
    debugfs(dev, work, "ea-set.cmds", &set, true, t)?;
    Ok(multi.len())
}

/// After mke2fs: extended attributes in name order (when the tree has inodes with several;
/// `multi_xattr` says whether it does), every used inode's change and access times set to
/// the build time, and the immutable flag on `immutable`.
fn fix_up(
    disk: &Path,
    work: &Path,
    fs: &Ext4,
    immutable: &[String],
    multi_xattr: bool,
) -> Result<()> {
    let dev = at_offset(disk, fs.offset);
    let dump = Tool::new("dumpe2fs").arg(&dev).run()?.stdout_text();
    let used = used_inodes(&dump)
        .map_err(|why| ImageError::Invalid(format!("reading dumpe2fs's report on {dev}: {why}")))?;
    // 1 and 3-10 are reserved inodes mke2fs wrote with the fake time already.
    let inodes: Vec<u32> = used.into_iter().filter(|&i| i == 2 || i >= 11).collect();
    if multi_xattr {
        sort_xattrs(&dev, work, &inodes, fs.timestamp)?;
    }
    let mut cmds = String::new();
    for ino in &inodes {
        cmds += &format!(
            "sif <{ino}> ctime @{t}\nsif <{ino}> atime @{t}\n",
            t = fs.timestamp
        );
    }
    for path in immutable {
        let stat = Tool::new("debugfs")
            .args(["-R", &format!("stat \"{path}\"")])
            .arg(&dev)
            .run()?
            .stdout_text();
        let flags = inode_flags(&stat).ok_or_else(|| {
            ImageError::Invalid(format!("debugfs shows no inode flags for {path} in {dev}"))
        })?;
        cmds += &format!("sif \"{path}\" flags {:#x}\n", flags | IMMUTABLE_FL);
    }
    debugfs(&dev, work, "fix-up.cmds", &cmds, true, fs.timestamp)?;
    Ok(())
}

fn parse_ranges(list: &str, out: &mut Vec<(u32, u32)>) -> std::result::Result<(), String> {
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("bad range {part:?}"))?;
        let b: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("bad range {part:?}"))?;
        out.push((a, b));
    }
    Ok(())
}

/// The inodes in use, from `dumpe2fs` output: every inode of every group that its
/// `Free inodes:` list does not name.
pub fn used_inodes(dump: &str) -> std::result::Result<Vec<u32>, String> {
    let mut per_group = None;
    let mut group: Option<u32> = None;
    let mut used = Vec::new();
    for line in dump.lines() {
        if let Some(v) = line.strip_prefix("Inodes per group:") {
            per_group = Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("bad inodes per group {v:?}"))?,
            );
        } else if let Some(n) = line
            .strip_prefix("Group ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|n| n.trim().parse::<u32>().ok())
        {
            // (Not "Group descriptor size:" of the header.)
            group = Some(n);
        } else if let (Some(g), Some(list)) =
            (group, line.trim_start().strip_prefix("Free inodes:"))
        {
            if !line.starts_with(' ') {
                continue;
            }
            let per = per_group.ok_or("no \"Inodes per group\" before the groups")?;
            let mut free = Vec::new();
            parse_ranges(list, &mut free)?;
            let first = g * per + 1;
            for ino in first..first + per {
                if !free.iter().any(|&(a, b)| (a..=b).contains(&ino)) {
                    used.push(ino);
                }
            }
            group = None;
        }
    }
    if per_group.is_none() || used.is_empty() {
        return Err("no group descriptors found".into());
    }
    Ok(used)
}

/// `Flags: 0x80000` of debugfs's `stat`.
pub fn inode_flags(stat: &str) -> Option<u32> {
    let (_, rest) = stat.split_once("Flags: ")?;
    let word = rest.split_whitespace().next()?;
    u32::from_str_radix(word.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "Filesystem volume name:   root
Inode count:              16384
Group descriptor size:    64
Free inodes:              16320
Inodes per group:         8

Group 0: (Blocks 1-8192) csum 0x0f36 [ITABLE_ZEROED]
  Primary superblock at 1, Group descriptors at 2-2
  Free blocks: 1000-8192
  Free inodes: 5-6, 8
Group 1: (Blocks 8193-16384) csum 0x4cf3 [INODE_UNINIT]
  Free blocks: 8193-16384
  Free inodes: 9-16
Group 2: (Blocks 16385-24576) csum 0x3038
  Free blocks: 
  Free inodes: 
";

    #[test]
    fn used_inodes_are_the_complement_of_the_free_lists() {
        let used = used_inodes(DUMP).unwrap();
        assert_eq!(used, vec![1, 2, 3, 4, 7, 17, 18, 19, 20, 21, 22, 23, 24]);
        assert!(used_inodes("nothing").is_err());
        assert!(used_inodes("Inodes per group: 8\nGroup 0:\n  Free inodes: x-1\n").is_err());
    }

    #[test]
    fn inodes_with_several_xattrs() {
        let out = "debugfs: ea_list <42>
Extended attributes:
  user.zeta (1) = \"1\"
  user.alpha (3) = \"two\"
debugfs: ea_list <51>
Extended attributes:
  security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 
debugfs: ea_list <12>
debugfs: ea_list <60>
Extended attributes:
  user.a b (1) = \"1\"
  user.c (1) = \"1\"
";
        assert_eq!(
            multi_xattr_inodes(out),
            vec![(42, vec!["user.zeta".to_string(), "user.alpha".to_string()])]
        );
    }

    #[test]
    fn flags_of_a_stat() {
        let s = "Inode: 13   Type: directory    Mode:  0755   Flags: 0x80000\nGeneration: 0";
        assert_eq!(inode_flags(s), Some(0x80000));
        assert_eq!(inode_flags("Inode: 13"), None);
    }
}
