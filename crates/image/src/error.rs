//! The image builder's error type: every variant names the object, file or option it is
//! about and, where there is one, what to do.

use crate::size::human;
use std::path::{Path, PathBuf};
use trellis_transport::pull::PullError;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
    #[error(transparent)]
    Sysroot(#[from] trellis_sysroot::Error),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Tool(#[from] trellis_tools::ToolError),
    #[error("partition table: {0}")]
    Gpt(#[from] crate::gpt::GptError),
    #[error(
        "building a disk image needs root: the image's repository and deployment keep the \
         tree's owners, modes and file capabilities (run it with sudo)"
    )]
    NotRoot,
    #[error("ref {ref_name:?} is not in repository {}: list its refs with `trellis refs --repo {}`", repo.display(), repo.display())]
    RefNotFound { ref_name: String, repo: PathBuf },
    #[error(
        "commit {commit} has no systemd-boot (/{path} is missing): add the Debian package \
         systemd-boot to the manifest's packages and compose again"
    )]
    NoSystemdBoot { commit: String, path: String },
    #[error("commit {commit} is for {arch}; trellis image only makes x86-64 (amd64) disks")]
    UnsupportedArch { commit: String, arch: String },
    #[error(
        "{what} is too small: {} given, the content needs at least {} (use a larger size, \
         or `auto`)", human(*given), human(*needed)
    )]
    TooSmall {
        what: String,
        given: u64,
        needed: u64,
    },
    #[error(
        "the {size} root file system ran out of space while the tree was copied in: give a \
         larger --size (or `auto`)\n{detail}", size = human(*size)
    )]
    RootFull { size: u64, detail: String },
    #[error("{0}")]
    Invalid(String),
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

trellis_store::io_context!(pub(crate) ImageError);
