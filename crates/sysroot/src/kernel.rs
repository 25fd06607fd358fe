//! Finding a deployment's kernel (spec §7.3 step 3): `usr/lib/modules/KVER/vmlinuz`, with
//! optional `initramfs.img` (or `initramfs`), `devicetree` (or a `dtb/` directory) and
//! `.vmlinuz.hmac`. The bootcsum is the SHA-256 of vmlinuz ‖ initramfs ‖ devicetree (the
//! `dtb/` files in sorted order, recursively), exactly as ostree computes it.
//!
//! Paths are never followed through symlinks: with `--sysroot DIR`, an absolute symlink in
//! a tree would resolve against the host. When several module directories hold a kernel,
//! the highest version wins (ostree takes whichever `readdir` returns first).

use crate::error::{Error, IoContext, Result, is_not_found};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Devicetree {
    File(PathBuf),
    Dir(PathBuf),
}

/// Where a tree's kernel and its companions are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    pub kver: String,
    pub vmlinuz: PathBuf,
    pub initramfs: Option<PathBuf>,
    pub devicetree: Option<Devicetree>,
    pub hmac: Option<PathBuf>,
}

/// One file to install next to the kernel in a boot directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootFile {
    pub src: PathBuf,
    /// Its name in the boot directory (`vmlinuz-KVER`, `initramfs-KVER.img`, …).
    pub name: String,
}

fn is_regular(p: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(md) => Ok(md.file_type().is_file()),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).ctx("stat", p),
    }
}

fn is_dir(p: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(p) {
        Ok(md) => Ok(md.file_type().is_dir()),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).ctx("stat", p),
    }
}

/// Find the kernel in a checked-out tree. `what` names the tree in the error.
pub fn find(root: &Path, what: &str) -> Result<KernelLayout> {
    let modules = root.join("usr/lib/modules");
    let mut kvers = Vec::new();
    match std::fs::read_dir(&modules) {
        Ok(rd) => {
            for entry in rd {
                let entry = entry.ctx("list", &modules)?;
                if let Some(name) = entry.file_name().to_str()
                    && entry.file_type().ctx("stat", entry.path())?.is_dir()
                {
                    kvers.push(name.to_string());
                }
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e).ctx("list", modules),
    }
    kvers.sort_by(|a, b| crate::bootconfig::version_cmp(b, a));
    for kver in kvers {
        let dir = modules.join(&kver);
        let vmlinuz = dir.join("vmlinuz");
        if !is_regular(&vmlinuz)? {
            continue;
        }
        let mut initramfs = None;
        for name in ["initramfs.img", "initramfs"] {
            if is_regular(&dir.join(name))? {
                initramfs = Some(dir.join(name));
                break;
            }
        }
        let devicetree = if is_regular(&dir.join("devicetree"))? {
            Some(Devicetree::File(dir.join("devicetree")))
        } else if is_dir(&dir.join("dtb"))? {
            Some(Devicetree::Dir(dir.join("dtb")))
        } else {
            None
        };
        let hmac = Some(dir.join(".vmlinuz.hmac")).filter(|p| p.exists());
        return Ok(KernelLayout {
            kver,
            vmlinuz,
            initramfs,
            devicetree,
            hmac,
        });
    }
    Err(Error::NoKernel {
        what: what.to_string(),
    })
}

fn hash_file(h: &mut Sha256, p: &Path) -> Result<()> {
    let mut f = std::fs::File::open(p).ctx("open", p)?;
    std::io::copy(&mut f, h).ctx("read", p)?;
    Ok(())
}

fn hash_dir(h: &mut Sha256, dir: &Path) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ctx("list", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .ctx("list", dir)?;
    // ostree sorts with strcmp, i.e. bytewise.
    names.sort();
    for n in names {
        let p = dir.join(n);
        if is_dir(&p)? {
            hash_dir(h, &p)?;
        } else if is_regular(&p)? {
            hash_file(h, &p)?;
        }
    }
    Ok(())
}

impl KernelLayout {
    /// SHA-256 (hex) of vmlinuz ‖ initramfs ‖ devicetree.
    pub fn bootcsum(&self) -> Result<String> {
        let mut h = Sha256::new();
        hash_file(&mut h, &self.vmlinuz)?;
        if let Some(i) = &self.initramfs {
            hash_file(&mut h, i)?;
        }
        match &self.devicetree {
            Some(Devicetree::File(p)) => hash_file(&mut h, p)?,
            Some(Devicetree::Dir(p)) => hash_dir(&mut h, p)?,
            None => {}
        }
        Ok(hex::encode(h.finalize()))
    }

    pub fn kernel_name(&self) -> String {
        format!("vmlinuz-{}", self.kver)
    }

    pub fn initramfs_name(&self) -> Option<String> {
        self.initramfs
            .as_ref()
            .map(|_| format!("initramfs-{}.img", self.kver))
    }

    /// The single files a boot directory gets (a `dtb/` directory is separate).
    pub fn boot_files(&self) -> Vec<BootFile> {
        let mut out = vec![BootFile {
            src: self.vmlinuz.clone(),
            name: self.kernel_name(),
        }];
        if let (Some(src), Some(name)) = (&self.initramfs, self.initramfs_name()) {
            out.push(BootFile {
                src: src.clone(),
                name,
            });
        }
        if let Some(Devicetree::File(src)) = &self.devicetree {
            out.push(BootFile {
                src: src.clone(),
                name: format!("devicetree-{}", self.kver),
            });
        }
        if let Some(src) = &self.hmac {
            out.push(BootFile {
                src: src.clone(),
                name: format!(".{}.hmac", self.kernel_name()),
            });
        }
        out
    }

    /// The `devicetree` (file) or `fdtdir` (directory) line of a boot entry, relative to
    /// the boot directory.
    pub fn devicetree_key(&self) -> Option<(&'static str, String)> {
        match &self.devicetree {
            Some(Devicetree::File(_)) => Some(("devicetree", format!("devicetree-{}", self.kver))),
            Some(Devicetree::Dir(_)) => Some(("fdtdir", "dtb".to_string())),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, data: &[u8]) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn bootcsum_matches_the_observed_ostree_value() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("usr/lib/modules/5.10.0");
        write(&m.join("vmlinuz"), b"KERNEL");
        write(&m.join("initramfs.img"), b"INITRD");
        let k = find(tmp.path(), "test tree").unwrap();
        assert_eq!(k.kver, "5.10.0");
        // Spec §7.3: sha256("KERNEL" + "INITRD"), the directory name ostree chose.
        assert_eq!(
            k.bootcsum().unwrap(),
            "fb13acf66d021b3783543b13f262f424ca339a8546258f6319333a83c111dc09"
        );
        let names: Vec<_> = k.boot_files().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["vmlinuz-5.10.0", "initramfs-5.10.0.img"]);
    }

    #[test]
    fn devicetree_dir_and_newest_kernel() {
        let tmp = tempfile::tempdir().unwrap();
        let mods = tmp.path().join("usr/lib/modules");
        write(&mods.join("6.1.0/vmlinuz"), b"K1");
        write(&mods.join("6.10.0/vmlinuz"), b"K2");
        write(&mods.join("6.10.0/dtb/b/y.dtb"), b"Y");
        write(&mods.join("6.10.0/dtb/a.dtb"), b"A");
        // A directory without a kernel is skipped even though its version is highest.
        std::fs::create_dir_all(mods.join("7.0.0")).unwrap();
        let k = find(tmp.path(), "t").unwrap();
        assert_eq!(k.kver, "6.10.0");
        assert!(k.initramfs.is_none());
        assert_eq!(k.devicetree_key(), Some(("fdtdir", "dtb".to_string())));
        let expect = hex::encode(Sha256::digest(b"K2AY"));
        assert_eq!(k.bootcsum().unwrap(), expect);
    }

    #[test]
    fn no_kernel_is_an_error_naming_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        write(&tmp.path().join("usr/lib/modules/6.1.0/modules.dep"), b"");
        let err = find(tmp.path(), "commit abc").unwrap_err();
        assert!(err.to_string().contains("commit abc"), "{err}");
        // A symlinked vmlinuz is not followed.
        let m = tmp.path().join("usr/lib/modules/6.1.0");
        std::os::unix::fs::symlink("/boot/vmlinuz", m.join("vmlinuz")).unwrap();
        assert!(matches!(find(tmp.path(), "t"), Err(Error::NoKernel { .. })));
    }
}
