//! The sysroot's error type: every variant names the file, deployment or setting it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
    #[error("{path} is not a sysroot: {why}")]
    NotASysroot { path: PathBuf, why: String },
    #[error(
        "stateroot {osname:?} does not exist ({path} is missing); create it with `trellis admin os-init {osname}`"
    )]
    NoStateroot { osname: String, path: PathBuf },
    #[error("invalid OS name {0:?}: use letters, digits, '_', '-' and '.', not starting with '.'")]
    BadOsname(String),
    /// Something on disk does not have the shape the layout requires.
    #[error("{path}: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("{what}: no kernel found (expected usr/lib/modules/KVER/vmlinuz)")]
    NoKernel { what: String },
    #[error("commit {commit} contains both a populated /etc and /usr/etc; it cannot be deployed")]
    BothEtc { commit: String },
    #[error(
        "not enough space on {path} for {what}: {needed} bytes needed, {available} available; nothing was written"
    )]
    NoSpace {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },
    #[error(
        "not enough inodes on {path} for {what}: {needed} needed, {available} available; nothing was written"
    )]
    NoInodes {
        path: PathBuf,
        what: String,
        needed: u64,
        available: u64,
    },
    #[error("{0}")]
    NotBooted(String),
    #[error("commit {0} is partial (an interrupted pull); pull it again before deploying")]
    PartialCommit(String),
    /// The new boot configuration is in place, but the ESP could not be brought in line;
    /// its old entries still boot (the old boot version is kept until it is).
    #[error(
        "the sysroot's boot entries were switched, but updating the systemd-boot entries on {esp} failed: {source}; `trellis admin cleanup` retries"
    )]
    EspSync {
        esp: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// The deployment succeeded; only the cleanup after it failed.
    #[error("{deployment} was deployed, but cleaning up afterwards failed: {source}")]
    CleanupAfterDeploy {
        deployment: String,
        #[source]
        source: Box<Error>,
    },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

trellis_store::io_context!(pub Error);

/// The `ENOENT` case of an I/O result, for "optional file" reads.
pub(crate) fn is_not_found(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}
