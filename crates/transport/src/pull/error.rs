//! The pull's error type: every variant names the remote, object or URL it is about.

use trellis_store::Checksum;

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Boxed, as is the store error in `Verify`, so that results stay small.
    #[error(transparent)]
    Store(Box<trellis_store::Error>),
    #[error("remote {remote:?}: {why}")]
    Remote { remote: String, why: String },
    #[error("{what} ({url}): {why}")]
    Fetch {
        what: String,
        url: Box<str>,
        why: String,
    },
    #[error("{what} is not on the remote ({url}: {status})")]
    NotFound {
        what: String,
        url: Box<str>,
        status: String,
    },
    /// The store's error already names the object; it is shown, not chained, so that it is
    /// printed once.
    #[error("{url}: {cause}")]
    Verify {
        url: Box<str>,
        cause: Box<trellis_store::Error>,
    },
    /// `what` names the object, e.g. `dirtree object 8f3a…`.
    #[error("{what} from {url}: {why}")]
    BadObject {
        what: String,
        url: Box<str>,
        why: String,
    },
    #[error("commit {commit} refused: {why}")]
    Signature { commit: Checksum, why: String },
    #[error("summary of remote {remote:?} refused: {why}")]
    Summary { remote: String, why: String },
    #[error("ref {name:?} not found on remote {remote:?} ({why})")]
    RefNotFound {
        remote: String,
        name: String,
        why: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = PullError> = std::result::Result<T, E>;

// URLs are `Box<str>` and the store's error is boxed so that the error stays at 72 bytes:
// callers embed it in their own errors, and large `Err` variants slow every `Result`.
const _: () = assert!(std::mem::size_of::<PullError>() <= 72);

impl From<trellis_store::Error> for PullError {
    fn from(e: trellis_store::Error) -> PullError {
        PullError::Store(Box::new(e))
    }
}

impl From<tokio::task::JoinError> for PullError {
    fn from(e: tokio::task::JoinError) -> PullError {
        PullError::Internal(format!("a worker task failed: {e}"))
    }
}

/// An error and its causes, one after the other (reqwest's own message names only the
/// outermost layer).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
