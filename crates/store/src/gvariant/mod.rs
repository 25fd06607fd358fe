//! GVariant serialization, the subset OSTree stores on disk and on the wire.
//!
//! Pure functions over bytes. Integers are written little-endian (the host order of every
//! platform OSTree ships on); callers byte-swap the fields OSTree stores big-endian.
//! Parsing is strict: only data in normal form is accepted, because `ostree pull` refuses
//! anything else and a checksum is only meaningful over canonical bytes.

mod de;
mod ser;
mod types;
mod value;

pub use de::{from_bytes, from_bytes_lenient};
pub use ser::{to_bytes, write_into};
pub use types::Type;
pub use value::Value;

/// Why bytes or a type string are not valid GVariant.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum GvError {
    #[error("invalid GVariant type string {0:?}")]
    BadType(String),
    #[error("malformed GVariant data for type {ty}: {why}")]
    Malformed { ty: String, why: &'static str },
    #[error("GVariant data for type {0} is not in normal form")]
    NotNormal(String),
    #[error("GVariant value nests deeper than {0} levels")]
    TooDeep(usize),
}
