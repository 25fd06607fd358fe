//! A repository on disk: its mode and config, loose objects, refs and locks.

mod content;
mod objects;
mod raw;
mod refs;
mod writing;

pub use content::ContentReader;
pub use refs::{RefEntry, split_refspec};
pub use writing::{Recovery, WriteSession};

use crate::error::{Error, IoContext, Result};
use crate::format::keyfile::KeyFile;
use rustix::fs::{FlockOperation, Mode, OFlags};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How content objects are stored (the config's `core.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RepoMode {
    /// `.filez`: raw-deflate payload behind a header; what HTTP remotes serve.
    Archive,
    /// Files with their real owner, mode and xattrs; needs root. Used for deployments.
    Bare,
    /// Payload with the metadata in the `user.ostreemeta` xattr; works unprivileged.
    BareUser,
    /// Payload with its mode only; owners are root and there are no xattrs.
    BareUserOnly,
}

impl RepoMode {
    /// Accepts ostree's names; `archive-z2` is an alias of `archive`.
    pub fn parse(s: &str) -> Option<RepoMode> {
        Some(match s {
            "archive" | "archive-z2" => RepoMode::Archive,
            "bare" => RepoMode::Bare,
            "bare-user" => RepoMode::BareUser,
            "bare-user-only" => RepoMode::BareUserOnly,
            _ => return None,
        })
    }

    /// The name written to `config`, exactly as `ostree init` writes it.
    pub fn config_name(self) -> &'static str {
        match self {
            RepoMode::Archive => "archive-z2",
            RepoMode::Bare => "bare",
            RepoMode::BareUser => "bare-user",
            RepoMode::BareUserOnly => "bare-user-only",
        }
    }

    pub fn is_archive(self) -> bool {
        self == RepoMode::Archive
    }
}

impl std::fmt::Display for RepoMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoMode::Archive => "archive",
            other => other.config_name(),
        })
    }
}

/// An open repository. Cheap to share between threads: every method takes `&self`.
#[derive(Debug)]
pub struct Repo {
    path: PathBuf,
    mode: RepoMode,
    config: KeyFile,
    zlib_level: u32,
}

/// Access and modification times of 0: OSTree stores and checks out every file with
/// mtime 0, since times are not part of an object.
pub(crate) fn zero_times() -> rustix::fs::Timestamps {
    let zero = rustix::fs::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: zero,
        last_modification: zero,
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A held lock on the repository's `.lock` file; released on drop.
#[derive(Debug)]
pub struct RepoLock {
    _file: File,
}

impl Repo {
    /// Create a repository, as `ostree init` does. An existing repository of the same mode
    /// is opened as it is; one of another mode is an error.
    pub fn init(path: &Path, mode: RepoMode) -> Result<Repo> {
        if path.join("objects").is_dir() {
            let repo = Repo::open(path)?;
            if repo.mode != mode {
                return Err(Error::Invalid(format!(
                    "{} is already a repository in mode {}, not {mode}",
                    path.display(),
                    repo.mode
                )));
            }
            return Ok(repo);
        }
        std::fs::create_dir_all(path).ctx("create directory", path)?;
        for d in [
            "tmp",
            "tmp/cache",
            "extensions",
            "state",
            "refs",
            "refs/heads",
            "refs/mirrors",
            "refs/remotes",
        ] {
            let p = path.join(d);
            match std::fs::create_dir(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(e).ctx("create directory", p);
                }
                _ => {}
            }
        }
        let mut config = KeyFile::default();
        config.set("core", "repo_version", "1");
        config.set("core", "mode", mode.config_name());
        let repo = Repo {
            path: path.to_path_buf(),
            mode,
            config,
            zlib_level: 6,
        };
        repo.write_config(&repo.config)?;
        // `objects/` last: its presence is what makes a directory a repository.
        std::fs::create_dir(path.join("objects")).ctx("create directory", path.join("objects"))?;
        Ok(repo)
    }

    pub fn open(path: &Path) -> Result<Repo> {
        let not_repo = |why: &str| Error::NotARepo {
            path: path.to_path_buf(),
            why: why.to_string(),
        };
        if !path.join("objects").is_dir() {
            return Err(not_repo(
                "no objects/ directory (create one with `trellis init --repo`)",
            ));
        }
        let config_path = path.join("config");
        let text = std::fs::read_to_string(&config_path).ctx("read", &config_path)?;
        let bad = |why: String| Error::BadConfig {
            path: config_path.clone(),
            why,
        };
        let config = KeyFile::parse(&text).map_err(|e| bad(e.to_string()))?;
        match config.get("core", "repo_version") {
            Some("1") => {}
            Some(v) => {
                return Err(bad(format!(
                    "unsupported core.repo_version {v:?}, expected 1"
                )));
            }
            None => return Err(bad("missing core.repo_version".into())),
        }
        if let Some(Ok(true)) = config.get_bool("core", "archive") {
            return Err(bad(
                "legacy core.archive=true is not supported; set core.mode".into(),
            ));
        }
        let mode_name = config.get("core", "mode").unwrap_or("bare");
        let mode = RepoMode::parse(mode_name).ok_or_else(|| {
            bad(format!(
                "unsupported core.mode {mode_name:?} (expected archive, archive-z2, bare, bare-user or bare-user-only)"
            ))
        })?;
        let zlib_level = match config.get("archive", "zlib-level") {
            None => 6,
            Some(v) => match v.trim().parse::<u32>() {
                Ok(l @ 1..=9) => l,
                _ => {
                    return Err(bad(format!(
                        "archive.zlib-level {v:?} is not a number from 1 to 9"
                    )));
                }
            },
        };
        Ok(Repo {
            path: path.to_path_buf(),
            mode,
            config,
            zlib_level,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mode(&self) -> RepoMode {
        self.mode
    }

    pub fn config(&self) -> &KeyFile {
        &self.config
    }

    /// Replace the config file atomically.
    pub fn write_config(&self, config: &KeyFile) -> Result<()> {
        self.write_file_atomic(&self.path.join("config"), config.to_text().as_bytes())
    }

    /// Re-read the config after another writer changed it.
    pub fn reload(&mut self) -> Result<()> {
        *self = Repo::open(&self.path)?;
        Ok(())
    }

    pub fn zlib_level(&self) -> u32 {
        self.zlib_level
    }

    /// A fresh name in `tmp/` for a file that will be renamed into place.
    pub(crate) fn tmp_path(&self) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.path
            .join("tmp")
            .join(format!("trellis-{}-{n}", std::process::id()))
    }

    /// Write a whole file through a temporary name and rename it into place.
    pub fn write_file_atomic(&self, dest: &Path, data: &[u8]) -> Result<()> {
        let tmp = self.tmp_path();
        let result = (|| {
            let mut f = File::create(&tmp).ctx("create", &tmp)?;
            f.write_all(data).ctx("write", &tmp)?;
            f.sync_all().ctx("sync", &tmp)?;
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).ctx("create directory", parent)?;
            }
            std::fs::rename(&tmp, dest).ctx("rename into", dest)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn lock(&self, op: FlockOperation) -> Result<RepoLock> {
        let p = self.path.join(".lock");
        let fd = rustix::fs::open(
            &p,
            OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx("open", &p)?;
        rustix::fs::fcntl_lock(&fd, op).ctx("lock", &p)?;
        Ok(RepoLock {
            _file: File::from(fd),
        })
    }

    /// A shared lock, held while objects and refs are written (as ostree does).
    pub fn lock_shared(&self) -> Result<RepoLock> {
        self.lock(FlockOperation::LockShared)
    }

    /// An exclusive lock, held while objects are deleted (prune).
    pub fn lock_exclusive(&self) -> Result<RepoLock> {
        self.lock(FlockOperation::LockExclusive)
    }

    /// Flush everything written so far to disk: one `syncfs` per transaction step instead of
    /// an fsync per object.
    pub fn sync(&self) -> Result<()> {
        let f = File::open(&self.path).ctx("open", &self.path)?;
        rustix::fs::syncfs(&f).ctx("syncfs", &self.path)
    }

    /// `state/`: partial-commit and write markers.
    fn state_dir(&self) -> PathBuf {
        self.path.join("state")
    }

    /// `state/<commit>.commitpartial`: the commit's tree may be incomplete.
    pub fn partial_marker(&self, commit: &crate::Checksum) -> PathBuf {
        self.state_dir().join(format!("{commit}.commitpartial"))
    }

    pub fn is_partial(&self, commit: &crate::Checksum) -> bool {
        self.partial_marker(commit).exists()
    }

    pub fn mark_partial(&self, commit: &crate::Checksum) -> Result<()> {
        let p = self.partial_marker(commit);
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).ctx("create directory", dir)?;
        File::create(&p).ctx("create", &p).map(drop)
    }

    pub fn clear_partial(&self, commit: &crate::Checksum) -> Result<()> {
        let p = self.partial_marker(commit);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("remove", p),
            _ => Ok(()),
        }
    }
}
