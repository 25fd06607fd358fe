//! trellis-store: an OSTree-compatible object store.
//!
//! Layers, bottom up: [`gvariant`] and [`format`] are pure functions over bytes; [`repo`]
//! stores objects and refs on disk; the workflows (commit, checkout, fsck, prune, diff) sit
//! on top of a [`repo::Repo`].

pub mod checkout;
pub mod checksum;
pub mod commit;
pub mod diff;
pub mod error;
pub mod format;
pub mod fsck;
pub mod gvariant;
pub mod prune;
pub mod remote;
pub mod repo;
pub mod sign;
pub mod summary;
pub mod tree;
pub mod xattr;

pub use checksum::{Checksum, ObjectType};
pub use error::{Error, Result};
pub use repo::{Recovery, Repo, RepoMode, WriteSession};
