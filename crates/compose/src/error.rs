//! The compose error type: every variant names the manifest field, tool, file or remote it
//! is about.

use crate::manifest::ManifestError;
use std::path::{Path, PathBuf};
use trellis_tools::ToolError;

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error(transparent)]
    Store(#[from] trellis_store::Error),
    #[error("fetching the tip of {refspec} from remote {remote:?}: {source}")]
    Pull {
        remote: String,
        refspec: String,
        #[source]
        source: trellis_transport::pull::PullError,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The tree is not what the step expects (no kernel, both /etc and /usr/etc, ...).
    #[error("{path}: {why}")]
    Tree { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = ComposeError> = std::result::Result<T, E>;

trellis_store::io_context!(pub ComposeError);

pub(crate) fn tree_error(path: &Path, why: impl Into<String>) -> ComposeError {
    ComposeError::Tree {
        path: path.to_path_buf(),
        why: why.into(),
    }
}
