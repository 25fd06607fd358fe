//! OSTree object formats as pure functions over bytes (spec: ostree-format.md §3–5).

mod commit;
mod content;
mod dirmeta;
mod dirtree;
pub mod keyfile;
mod names;
mod summary;

pub use commit::{Commit, META_REF_BINDING, META_VERSION};
pub use content::{ContentHasher, FileHeader, Xattrs, content_checksum};
pub use dirmeta::DirMeta;
pub use dirtree::DirTree;
pub use names::{validate_filename, validate_ref_name};
pub use summary::*;

use crate::gvariant::GvError;

pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFDIR: u32 = 0o040000;
/// Permission bits plus setuid, setgid and sticky: everything OSTree allows besides the type.
pub const PERMISSION_BITS: u32 = 0o7777;

/// Why bytes are not a valid OSTree object.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum FormatError {
    #[error(transparent)]
    GVariant(#[from] GvError),
    #[error("invalid mode {mode:#o} for a {what}")]
    BadMode { what: &'static str, mode: u32 },
    #[error("invalid file name {name:?}: {why}")]
    BadName { name: String, why: &'static str },
    #[error("invalid ref name {0:?}")]
    BadRefName(String),
    #[error("{what} entries are not sorted or not unique at {name:?}")]
    Unsorted { what: &'static str, name: String },
    #[error("{what} holds a checksum of {len} bytes instead of 32")]
    BadChecksumLength { what: &'static str, len: usize },
    #[error("content header has a non-zero rdev {0}")]
    Rdev(u32),
    #[error("extended attributes are not sorted, unique and non-empty")]
    BadXattrs,
    #[error("object data is truncated: {0}")]
    Truncated(&'static str),
}

pub(crate) fn be32(x: u32) -> crate::gvariant::Value {
    crate::gvariant::Value::U32(x.swap_bytes())
}

pub(crate) fn be64(x: u64) -> crate::gvariant::Value {
    crate::gvariant::Value::U64(x.swap_bytes())
}
