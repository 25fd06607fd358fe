//! The sysext error type: every variant names the extension, image, file, tool or URL it
//! is about, and says what to do where there is something to do.

use std::path::{Path, PathBuf};
use trellis_tools::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum SysextError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
    #[error(transparent)]
    Compose(#[from] trellis_compose::ComposeError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A name with a path separator, a leading dot, a version separator...
    #[error("invalid extension name {name:?}: {why}")]
    BadName { name: String, why: String },
    /// An image that is not what it claims to be (unreadable, corrupt, wrong layout).
    #[error("{}: {why}", path.display())]
    BadImage { path: PathBuf, why: String },
    /// Downloading from the remote failed.
    #[error("fetching {url}: {why}")]
    Fetch { url: String, why: String },
    /// A hash or signature that does not verify: nothing was installed.
    #[error("{0}")]
    Verify(String),
    /// The operation needs root (mounts, chroot, file ownership).
    #[error("{0}")]
    NeedsRoot(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = SysextError> = std::result::Result<T, E>;

trellis_store::io_context!(pub SysextError);

pub(crate) fn bad_image(path: &Path, why: impl Into<String>) -> SysextError {
    SysextError::BadImage {
        path: path.to_path_buf(),
        why: why.into(),
    }
}
