//! The store's error type: every variant names the object, file or ref it is about.

use crate::checksum::{BadChecksum, Checksum, ObjectType};
use crate::format::FormatError;
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
    #[error("{path} is not an OSTree repository: {why}")]
    NotARepo { path: PathBuf, why: String },
    #[error("repository config {path}: {why}")]
    BadConfig { path: PathBuf, why: String },
    #[error("{ty} object {csum} is missing")]
    Missing { ty: ObjectType, csum: Checksum },
    #[error("{ty} object {csum} is corrupt: {why}")]
    Corrupt {
        ty: ObjectType,
        csum: Checksum,
        why: String,
    },
    #[error("{ty} object {csum}: {source}")]
    BadObject {
        ty: ObjectType,
        csum: Checksum,
        #[source]
        source: FormatError,
    },
    #[error("{path}: {source}")]
    BadInput {
        path: String,
        #[source]
        source: FormatError,
    },
    #[error("{path}: {why}")]
    Unsupported { path: String, why: String },
    #[error("ref {0:?} not found")]
    RefNotFound(String),
    #[error("{0:?} is neither a ref nor a commit checksum")]
    BadRev(String),
    #[error(transparent)]
    BadChecksum(#[from] BadChecksum),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("path {path:?} not found in commit {commit}")]
    PathNotFound { commit: Checksum, path: String },
    #[error("checkout target {path}: {why}")]
    UnsafeTarget { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Defines, in the calling crate, the `IoContext` trait: `ctx(op, path)` turns a std or
/// rustix I/O error into the given error type's `Io { op, path, source }` variant, which
/// every trellis error type has. One definition for every crate, each with its own type.
#[macro_export]
macro_rules! io_context {
    ($vis:vis $err:ident) => {
        /// Attach the operation and path to an I/O error.
        $vis trait IoContext<T> {
            fn ctx(
                self,
                op: &'static str,
                path: impl Into<::std::path::PathBuf>,
            ) -> ::std::result::Result<T, $err>;
        }

        // std's and rustix's errors alike (rustix's Errno converts into std's).
        impl<T, E: Into<::std::io::Error>> IoContext<T> for ::std::result::Result<T, E> {
            fn ctx(
                self,
                op: &'static str,
                path: impl Into<::std::path::PathBuf>,
            ) -> ::std::result::Result<T, $err> {
                self.map_err(|e| $err::Io {
                    op,
                    path: path.into(),
                    source: e.into(),
                })
            }
        }
    };
}

io_context!(pub Error);
