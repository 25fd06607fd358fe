//! An open sysroot: its path, its repository, the host it runs on and where its ESP is.

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::layout;
use std::path::{Path, PathBuf};
use trellis_store::Repo;

/// Where the running system's state is. Tests point these into temporary directories; on
/// a device they are the real `/`, `/run` and `/proc/cmdline`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The running root, compared (device and inode) with deployments to find the booted
    /// one: on a booted system `/` is a bind mount of its deployment's directory.
    pub root: PathBuf,
    /// `/run`: holds `ostree-booted` and `ostree/staged-deployment`.
    pub run: PathBuf,
    /// The kernel command line (its `ostree=` names the booted deployment).
    pub cmdline: PathBuf,
}

impl Default for Host {
    fn default() -> Host {
        Host {
            root: PathBuf::from("/"),
            run: PathBuf::from("/run"),
            cmdline: PathBuf::from("/proc/cmdline"),
        }
    }
}

/// systemd-boot entries on an EFI system partition, kept in step with the sysroot's own
/// entries (see [`crate::esp`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspConfig {
    /// The ESP's mount point (or, when building an image, the directory that becomes it).
    pub dir: PathBuf,
    /// Boot counting: new entries get `+TRIES` in their name, and systemd-boot falls back
    /// to the previous entry when a new one fails to boot that many times.
    pub tries: Option<u32>,
}

/// An open sysroot.
#[derive(Debug)]
pub struct Sysroot {
    path: PathBuf,
    repo: Repo,
    host: Host,
    esp: Option<EspConfig>,
}

impl Sysroot {
    /// Open the sysroot at `path` on this host.
    pub fn open(path: &Path) -> Result<Sysroot> {
        Sysroot::open_with(path, Host::default())
    }

    /// Open a sysroot, with the running system's state taken from `host`.
    ///
    /// The ESP comes from the repo config: `[sysroot] esp=PATH` (relative to the sysroot;
    /// `/boot/efi` means `SYSROOT/boot/efi`) and `boot-counting-tries=N`.
    pub fn open_with(path: &Path, host: Host) -> Result<Sysroot> {
        if !path.join(layout::DEPLOY).is_dir() {
            return Err(Error::NotASysroot {
                path: path.to_path_buf(),
                why: format!(
                    "{} is missing (create one with `trellis admin init-fs`)",
                    layout::DEPLOY
                ),
            });
        }
        let repo = Repo::open(&path.join(layout::REPO))?;
        let cfg = repo.config();
        let tries = match cfg.get("sysroot", "boot-counting-tries") {
            None => None,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    return Err(Error::Invalid(format!(
                        "{}: sysroot.boot-counting-tries {v:?} is not a number",
                        repo.path().join("config").display()
                    )));
                }
            },
        };
        let esp = cfg.get("sysroot", "esp").map(|p| EspConfig {
            dir: path.join(p.trim_start_matches('/')),
            tries,
        });
        Ok(Sysroot {
            path: path.to_path_buf(),
            repo,
            host,
            esp,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    pub fn esp(&self) -> Option<&EspConfig> {
        self.esp.as_ref()
    }

    /// Use (or, with `None`, stop using) an ESP, whatever the config says.
    pub fn set_esp(&mut self, esp: Option<EspConfig>) {
        self.esp = esp;
    }

    /// The lock ostree takes for every change (`ostree/lock`): trellis and ostree never
    /// change the same sysroot at once.
    pub fn lock(&self) -> Result<FileLock> {
        fsutil::lock_exclusive(&self.path.join(layout::LOCK))
    }

    /// Whether this sysroot is the running system's: `/run/ostree-booted` exists and the
    /// sysroot is the running root (`--sysroot /`). [`crate::status::load`] also counts a
    /// sysroot one of whose deployments is the running root.
    pub fn is_booted_system(&self) -> Result<bool> {
        if !self.host.run.join("ostree-booted").exists() {
            return Ok(false);
        }
        Ok(fsutil::dev_ino(&self.path)? == fsutil::dev_ino(&self.host.root)?)
    }

    /// `RUN/ostree/staged-deployment`.
    pub fn staged_state_path(&self) -> PathBuf {
        self.host.run.join("ostree/staged-deployment")
    }
}
