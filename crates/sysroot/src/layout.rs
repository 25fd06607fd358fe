//! The sysroot's directory layout (spec §7.1–7.2): paths, `init-fs` and `os-init`.
//!
//! ```text
//! SYSROOT/boot/{loader -> loader.B, loader.B/entries/, ostree/OS-BOOTCSUM/, boot -> .}
//! SYSROOT/ostree/{repo/, deploy/OS/{var/, deploy/CSUM.SERIAL[.origin]}, boot.B -> boot.B.S}
//! ```

use crate::error::{Error, IoContext, Result};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use trellis_store::{Repo, RepoMode};

/// Where the sysroot's repository lives, relative to the sysroot.
pub const REPO: &str = "ostree/repo";
/// The per-OS stateroots.
pub const DEPLOY: &str = "ostree/deploy";
/// The lock ostree takes for every sysroot change; we take the same one.
pub const LOCK: &str = "ostree/lock";
/// Written (with the reason) when finalizing a staged deployment fails, as ostree does.
pub const FINALIZE_FAILURE: &str = "boot/ostree/finalize-failure.stamp";

/// Check an OS (stateroot) name: it becomes a directory name and part of boot paths.
pub fn validate_osname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadOsname(name.to_string()))
    }
}

/// `ostree/deploy/OS`.
pub fn stateroot(sysroot: &Path, osname: &str) -> PathBuf {
    sysroot.join(DEPLOY).join(osname)
}

fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if !path.is_dir() {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    why: "exists and is not a directory".into(),
                });
            }
            return Ok(());
        }
        Err(e) => return Err(e).ctx("create directory", path),
    }
    // The umask must not decide the mode of /tmp or /root.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).ctx("chmod", path)
}

/// Create the top-level layout of a physical root, as `ostree admin init-fs` does: the
/// mount points, `ostree/deploy` and a bare repository in `ostree/repo`. Existing parts are
/// kept, so running it twice is harmless.
pub fn init_fs(path: &Path) -> Result<Repo> {
    std::fs::create_dir_all(path).ctx("create directory", path)?;
    for (d, mode) in [
        ("boot", 0o755),
        ("dev", 0o755),
        ("home", 0o755),
        ("proc", 0o755),
        ("run", 0o755),
        ("sys", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
        ("ostree", 0o755),
        (DEPLOY, 0o755),
    ] {
        mkdir_mode(&path.join(d), mode)?;
    }
    Ok(Repo::init(&path.join(REPO), RepoMode::Bare)?)
}

/// Create the stateroot `ostree/deploy/OS` with its shared `var`, as `ostree admin
/// os-init` does in 2022.7 (`var/{tmp,lib,log}`, `var/run -> ../run`, `var/lock ->
/// ../run/lock`). Returns false when it already existed (and leaves it alone).
pub fn os_init(sysroot: &Path, osname: &str) -> Result<bool> {
    validate_osname(osname)?;
    let deploy = sysroot.join(DEPLOY);
    if !deploy.is_dir() {
        return Err(Error::NotASysroot {
            path: sysroot.to_path_buf(),
            why: format!(
                "{} is missing (run `trellis admin init-fs` first)",
                deploy.display()
            ),
        });
    }
    let root = stateroot(sysroot, osname);
    if root.join("var").is_dir() {
        return Ok(false);
    }
    mkdir_mode(&root, 0o755)?;
    let var = root.join("var");
    mkdir_mode(&var, 0o755)?;
    mkdir_mode(&var.join("tmp"), 0o1777)?;
    mkdir_mode(&var.join("lib"), 0o755)?;
    mkdir_mode(&var.join("log"), 0o755)?;
    for (name, target) in [("run", "../run"), ("lock", "../run/lock")] {
        let p = var.join(name);
        match std::os::unix::fs::symlink(target, &p) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).ctx("create symlink", p);
            }
            _ => {}
        }
    }
    bump_mtime(sysroot)?;
    Ok(true)
}

/// Touch `ostree/deploy`: ostree and its tools watch its mtime for changes.
pub(crate) fn bump_mtime(sysroot: &Path) -> Result<()> {
    let p = sysroot.join(DEPLOY);
    let now = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &p, &now, rustix::fs::AtFlags::empty()).ctx("touch", p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn osnames() {
        for ok in ["debian", "test-os", "os_1.2"] {
            validate_osname(ok).unwrap();
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "sp ace", "ü"] {
            assert!(validate_osname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn init_fs_and_os_init_make_the_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let sr = tmp.path().join("sysroot");
        let repo = init_fs(&sr).unwrap();
        assert_eq!(repo.mode(), RepoMode::Bare);
        let mode = |p: &str| sr.join(p).metadata().unwrap().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("root"), 0o700);
        assert_eq!(mode("boot"), 0o755);
        assert!(sr.join("ostree/deploy").is_dir());
        // Idempotent.
        init_fs(&sr).unwrap();

        assert!(os_init(&sr, "testos").unwrap());
        assert!(!os_init(&sr, "testos").unwrap());
        let var = sr.join("ostree/deploy/testos/var");
        assert_eq!(var.join("tmp").metadata().unwrap().mode() & 0o7777, 0o1777);
        assert_eq!(
            std::fs::read_link(var.join("run")).unwrap(),
            Path::new("../run")
        );
        assert_eq!(
            std::fs::read_link(var.join("lock")).unwrap(),
            Path::new("../run/lock")
        );
        assert!(matches!(
            os_init(&sr, "../x").unwrap_err(),
            Error::BadOsname(_)
        ));
        let err = os_init(&tmp.path().join("nothing"), "x").unwrap_err();
        assert!(matches!(err, Error::NotASysroot { .. }), "{err}");
    }
}
