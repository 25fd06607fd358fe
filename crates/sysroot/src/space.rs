//! Disk space needed by a deployment, checked before anything is written.
//!
//! A deployment is a hardlink farm into the bare repository, so the sysroot pays for its
//! directories and for the copy of `/etc`, not for file contents. Content not yet in the
//! repository (an upgrade that still has to pull) is the caller's `extra_repo_bytes`.
//! The kernel and initramfs cost space in `/boot` only when it is another file system
//! (otherwise they are hardlinked), and on the ESP unless that kernel is already there.
//! Block-size rounding is counted per file and per directory, so the estimate errs on
//! the safe side.

use crate::error::{Error, Result};
use crate::sysroot::Sysroot;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;
use trellis_store::tree::{self, EntryKind, TreeEntry};
use trellis_store::{Checksum, Repo};

const BLOCK: u64 = 4096;
/// Entries, origin file, bootlinks, refs and the like.
const MARGIN: u64 = 1 << 20;

fn blocks(n: u64) -> u64 {
    n.div_ceil(BLOCK).max(1) * BLOCK
}

/// A commit's kernel as the repo holds it: enough to size and checksum it before any
/// checkout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitKernel {
    pub kver: String,
    /// Bytes of the files that go to a boot partition.
    pub bytes: u64,
    pub bootcsum: String,
}

fn file_in(repo: &Repo, commit: &Checksum, path: &str) -> Result<Option<(Checksum, u64)>> {
    match tree::resolve_path(repo, commit, path) {
        Ok(TreeEntry::File { checksum }) => {
            let e = tree::file_entry(repo, path.to_string(), checksum)?;
            Ok((e.kind == EntryKind::File).then_some((checksum, e.size)))
        }
        Ok(TreeEntry::Dir { .. }) => Ok(None),
        Err(trellis_store::Error::PathNotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn hash_object(repo: &Repo, h: &mut Sha256, csum: &Checksum) -> Result<()> {
    let (_, _, mut reader) = repo.open_content(csum)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| Error::Io {
            op: "read object",
            path: repo.object_path(trellis_store::ObjectType::File, csum),
            source: e,
        })?;
        if n == 0 {
            return Ok(());
        }
        h.update(&buf[..n]);
    }
}

/// Hash a `dtb/` directory's files in bytewise name order, recursively, like ostree.
fn hash_tree(repo: &Repo, h: &mut Sha256, tree_csum: &Checksum, bytes: &mut u64) -> Result<()> {
    let t = repo.load_dirtree(tree_csum)?;
    let mut names: Vec<(&str, Option<Checksum>, Option<Checksum>)> = Vec::new();
    for (n, c) in &t.files {
        names.push((n, Some(*c), None));
    }
    for (n, tc, _) in &t.dirs {
        names.push((n, None, Some(*tc)));
    }
    names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (_, file, dir) in names {
        if let Some(c) = file {
            let (header, size, _) = repo.open_content(&c)?;
            if !header.is_symlink() {
                *bytes += blocks(size);
                hash_object(repo, h, &c)?;
            }
        } else if let Some(tc) = dir {
            hash_tree(repo, h, &tc, bytes)?;
        }
    }
    Ok(())
}

/// Find and checksum a commit's kernel from the repository (the same rules as
/// [`crate::kernel::find`] applies to a checkout).
pub fn commit_kernel(repo: &Repo, commit: &Checksum) -> Result<Option<CommitKernel>> {
    let mut kvers: Vec<String> = match tree::resolve_path(repo, commit, "/usr/lib/modules") {
        Ok(TreeEntry::Dir { tree, .. }) => repo
            .load_dirtree(&tree)?
            .dirs
            .iter()
            .map(|(n, _, _)| n.clone())
            .collect(),
        Ok(TreeEntry::File { .. }) | Err(trellis_store::Error::PathNotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    kvers.sort_by(|a, b| crate::bootconfig::version_cmp(b, a));
    for kver in kvers {
        let dir = format!("/usr/lib/modules/{kver}");
        let Some((vmlinuz, vsize)) = file_in(repo, commit, &format!("{dir}/vmlinuz"))? else {
            continue;
        };
        let mut h = Sha256::new();
        let mut bytes = blocks(vsize);
        hash_object(repo, &mut h, &vmlinuz)?;
        for name in ["initramfs.img", "initramfs"] {
            if let Some((c, size)) = file_in(repo, commit, &format!("{dir}/{name}"))? {
                bytes += blocks(size);
                hash_object(repo, &mut h, &c)?;
                break;
            }
        }
        if let Some((c, size)) = file_in(repo, commit, &format!("{dir}/devicetree"))? {
            bytes += blocks(size);
            hash_object(repo, &mut h, &c)?;
        } else if let Ok(TreeEntry::Dir { tree, .. }) =
            tree::resolve_path(repo, commit, &format!("{dir}/dtb"))
        {
            hash_tree(repo, &mut h, &tree, &mut bytes)?;
        }
        if let Some((_, size)) = file_in(repo, commit, &format!("{dir}/.vmlinuz.hmac"))? {
            bytes += blocks(size);
        }
        return Ok(Some(CommitKernel {
            kver,
            bytes,
            bootcsum: hex::encode(h.finalize()),
        }));
    }
    Ok(None)
}

/// Directories and files of a commit (walking dirtrees only), and the bytes of `/usr/etc`
/// (or `/etc`) whose files are copied, not linked.
#[derive(Default)]
struct TreeCounts {
    dirs: u64,
    etc_bytes: u64,
    etc_entries: u64,
}

fn count_tree(
    repo: &Repo,
    tree_csum: &Checksum,
    in_etc: bool,
    path: &str,
    out: &mut TreeCounts,
) -> Result<()> {
    let t = repo.load_dirtree(tree_csum)?;
    out.dirs += 1;
    if in_etc {
        out.etc_entries += 1;
        for (_, c) in &t.files {
            let (header, size, _) = repo.open_content(c)?;
            out.etc_entries += 1;
            out.etc_bytes += if header.is_symlink() { 0 } else { blocks(size) };
        }
    }
    for (name, sub, _) in &t.dirs {
        let p = format!("{path}/{name}");
        let etc = in_etc || p == "/usr/etc" || p == "/etc";
        count_tree(repo, sub, etc, &p, out)?;
    }
    Ok(())
}

/// What a deployment of a commit needs, per file system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceNeeds {
    /// On the sysroot's file system (deployment, `/etc` copy, boot files if /boot is the
    /// same file system, content still to be pulled).
    pub sysroot_bytes: u64,
    pub sysroot_inodes: u64,
    /// On /boot when it is a separate file system.
    pub boot_bytes: u64,
    /// On the ESP.
    pub esp_bytes: u64,
    /// The commit's kernel.
    pub kernel: Option<CommitKernel>,
}

/// Estimate what deploying `commit` into stateroot `osname` needs.
pub fn estimate(
    sr: &Sysroot,
    commit: &Checksum,
    osname: &str,
    extra_repo_bytes: u64,
) -> Result<SpaceNeeds> {
    let repo = sr.repo();
    let c = repo.load_commit(commit)?;
    let mut counts = TreeCounts::default();
    count_tree(repo, &c.root_tree, false, "", &mut counts)?;
    let kernel = commit_kernel(repo, commit)?;
    let mut needs = SpaceNeeds {
        sysroot_bytes: counts.dirs * BLOCK + counts.etc_bytes + MARGIN + extra_repo_bytes,
        sysroot_inodes: counts.dirs + counts.etc_entries + 64,
        ..SpaceNeeds::default()
    };
    if let Some(k) = &kernel {
        let name = format!("{osname}-{}", k.bootcsum);
        let boot = sr.path().join("boot");
        if !boot.join("ostree").join(&name).is_dir() {
            let deploy = sr.path().join(crate::layout::DEPLOY);
            if crate::fsutil::same_device(&boot, &deploy)? {
                // Hardlinked, not copied.
            } else {
                // Plus the new boot version's entries, a few blocks.
                needs.boot_bytes = k.bytes + BLOCK * 16;
            }
        }
        if let Some(esp) = sr.esp()
            && !esp.dir.join(crate::esp::KERNEL_DIR).join(&name).is_dir()
        {
            needs.esp_bytes = k.bytes + BLOCK * 8;
        }
    }
    needs.kernel = kernel;
    Ok(needs)
}

fn check_fs(path: &Path, what: &str, bytes: u64, inodes: u64) -> Result<()> {
    let st = rustix::fs::statvfs(path).map_err(|e| Error::Io {
        op: "statvfs",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    if bytes > available {
        return Err(Error::NoSpace {
            path: path.to_path_buf(),
            what: what.to_string(),
            needed: bytes,
            available,
        });
    }
    // File systems without an inode limit (btrfs, FAT) report zero inodes.
    if st.f_files > 0 && inodes > st.f_favail {
        return Err(Error::NoInodes {
            path: path.to_path_buf(),
            what: what.to_string(),
            needed: inodes,
            available: st.f_favail,
        });
    }
    Ok(())
}

/// Fail with [`Error::NoSpace`] when a file system lacks what `needs` asks of it.
pub fn check(sr: &Sysroot, needs: &SpaceNeeds, what: &str) -> Result<()> {
    let deploy = sr.path().join(crate::layout::DEPLOY);
    check_fs(&deploy, what, needs.sysroot_bytes, needs.sysroot_inodes)?;
    if needs.boot_bytes > 0 {
        check_fs(
            &sr.path().join("boot"),
            &format!("{what} (kernel in /boot)"),
            needs.boot_bytes,
            4,
        )?;
    }
    if let (Some(esp), true) = (sr.esp(), needs.esp_bytes > 0) {
        // The ESP directory may not exist yet (a first deploy into an image): its parent's
        // file system is what the copy will fill.
        let existing = esp
            .dir
            .ancestors()
            .find(|p| p.is_dir())
            .unwrap_or(Path::new("/"));
        check_fs(
            existing,
            &format!("{what} (kernel on the ESP)"),
            needs.esp_bytes,
            4,
        )?;
    }
    Ok(())
}
