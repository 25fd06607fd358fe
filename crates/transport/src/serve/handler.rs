//! One request in, one reply out, whatever the protocol: a [`Reply`] is encoded by the
//! HTTP/1.1 loop (`h1`) or handed to hyper for HTTP/2.

use super::conditional::{Conditions, Decision, Validators, decide};
use super::files::{Blocking, FileStream, OpenFailure, RootDir, ServeBody, open_beneath, read_at};
use super::target::{CachePolicy, Refusal, Root, Target, resolve};
use super::{AccessLog, AccessRecord};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use std::net::SocketAddr;
use std::sync::Arc;

/// Bodies up to this size are read along with opening the file; larger ones are streamed.
const INLINE_MAX: u64 = 256 * 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";
const OCTETS: &str = "application/octet-stream";
const TEXT: &str = "text/plain; charset=utf-8";

pub(crate) struct Site {
    pub repo: RootDir,
    pub extra_names: Vec<String>,
    pub extra: Vec<RootDir>,
    pub log: Option<AccessLog>,
}

impl Site {
    fn root(&self, r: Root) -> Option<&RootDir> {
        match r {
            Root::Repo => Some(&self.repo),
            Root::Extra(i) => self.extra.get(i),
        }
    }

    /// Log an answered request, if there is an access log.
    pub fn log(&self, peer: SocketAddr, ask: &Ask<'_>, version: Version, reply: &Reply) {
        if let Some(log) = &self.log {
            log(&AccessRecord {
                peer,
                method: ask.method.clone(),
                path: ask.path.to_string(),
                version,
                status: reply.status.as_u16(),
                bytes: reply.length.unwrap_or(0),
                error: reply.error.clone(),
            });
        }
    }
}

/// What a request asks for.
pub(crate) struct Ask<'a> {
    pub method: Method,
    /// The path of the request target, before decoding, without the query.
    pub path: &'a str,
    pub conditions: Conditions,
}

/// A response before it is put on the wire. Fields that are `None` are not sent.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub cache: &'static str,
    pub content_type: Option<&'static str>,
    pub accept_ranges: bool,
    /// The Content-Length: what a GET gets (a HEAD gets the same header and no body).
    pub length: Option<u64>,
    pub content_range: Option<String>,
    pub allow: Option<&'static str>,
    pub body: ReplyBody,
    /// Why a 500 happened, for the access log only: clients are not told about the
    /// server's files.
    pub error: Option<String>,
}

pub(crate) enum ReplyBody {
    None,
    Bytes(Bytes),
    File(FileStream),
    /// Bytes `start..end` (at most [`INLINE_MAX`]) of a file found through the kernel's
    /// caches, for the sender to copy to the socket within the kernel (sendfile).
    Small {
        file: std::fs::File,
        start: u64,
        end: u64,
    },
}

impl Reply {
    /// Every header but Date, Connection and the framing of the protocol, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, HeaderText<'_>)> {
        let text = |v: &'static str| HeaderText::Static(v);
        [
            ("ETag", self.etag.as_deref().map(HeaderText::Borrowed)),
            (
                "Last-Modified",
                self.last_modified.as_deref().map(HeaderText::Borrowed),
            ),
            ("Cache-Control", Some(text(self.cache))),
            ("Accept-Ranges", self.accept_ranges.then_some(text("bytes"))),
            ("Content-Type", self.content_type.map(text)),
            ("Content-Length", self.length.map(HeaderText::Number)),
            (
                "Content-Range",
                self.content_range.as_deref().map(HeaderText::Borrowed),
            ),
            ("Allow", self.allow.map(text)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
    }

    /// For hyper (HTTP/2).
    fn into_response(self) -> Response<ServeBody> {
        let mut r = Response::new(ServeBody::Empty);
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        for (name, value) in self.headers() {
            if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
                h.insert(name, v);
            }
        }
        *r.body_mut() = match self.body {
            ReplyBody::None => ServeBody::Empty,
            ReplyBody::Bytes(b) => ServeBody::Bytes(Some(b)),
            ReplyBody::File(s) => ServeBody::File(s),
            ReplyBody::Small { file, start, end } => {
                ServeBody::File(FileStream::new(file, start, end))
            }
        };
        r
    }
}

/// A header value as the reply holds it.
pub(crate) enum HeaderText<'a> {
    Static(&'static str),
    Borrowed(&'a str),
    Number(u64),
}

impl std::fmt::Display for HeaderText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderText::Static(s) => f.write_str(s),
            HeaderText::Borrowed(s) => f.write_str(s),
            HeaderText::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A short text reply (errors).
pub(crate) fn plain(status: StatusCode, text: impl Into<Bytes>) -> Reply {
    let text: Bytes = text.into();
    Reply {
        status,
        etag: None,
        last_modified: None,
        cache: REVALIDATE,
        content_type: Some(TEXT),
        accept_ranges: false,
        length: Some(text.len() as u64),
        content_range: None,
        allow: None,
        body: ReplyBody::Bytes(text),
        error: None,
    }
}

fn not_found() -> Reply {
    plain(StatusCode::NOT_FOUND, "not found\n")
}

/// A request through hyper (HTTP/2).
pub(crate) async fn handle<B>(
    site: Arc<Site>,
    peer: SocketAddr,
    req: Request<B>,
) -> Response<ServeBody> {
    let ask = Ask {
        method: req.method().clone(),
        path: req.uri().path(),
        conditions: conditions(req.headers()),
    };
    let reply = answer(&site, &ask, Sender::Copying).await;
    site.log(peer, &ask, req.version(), &reply);
    reply.into_response()
}

/// How the reply's body will be sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sender {
    /// From buffers or a stream of chunks.
    Copying,
    /// Small bodies may come as [`ReplyBody::Small`].
    Sendfile,
}

/// The reply to a request.
pub(crate) async fn answer(site: &Arc<Site>, ask: &Ask<'_>, sender: Sender) -> Reply {
    let head = match ask.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.allow = Some("GET, HEAD");
            return r;
        }
    };
    let target = match resolve(ask.path, &site.extra_names) {
        Ok(t) => t,
        Err(Refusal::Malformed(why)) => {
            return plain(StatusCode::BAD_REQUEST, format!("bad path: {why}\n"));
        }
        Err(Refusal::NotServed) => return not_found(),
    };
    let prepared = match prepare(
        site,
        &target,
        &ask.conditions,
        head,
        sender,
        Blocking::Never,
    ) {
        Err(OpenFailure::WouldBlock) => {
            let site = Arc::clone(site);
            let conditions = ask.conditions.clone();
            let blocking =
                move || prepare(&site, &target, &conditions, head, sender, Blocking::Allowed);
            match tokio::task::spawn_blocking(blocking).await {
                Ok(p) => p,
                Err(join) => Err(OpenFailure::Io(std::io::Error::other(join))),
            }
        }
        other => other,
    };
    let error = match prepared {
        Ok(p) => return p.into_reply(),
        Err(OpenFailure::NotFound) => return not_found(),
        Err(OpenFailure::Forbidden) => return plain(StatusCode::FORBIDDEN, "forbidden\n"),
        Err(OpenFailure::Io(e)) => e.to_string(),
        // Only returned when blocking is not allowed.
        Err(OpenFailure::WouldBlock) => "read would block".to_string(),
    };
    let mut r = plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n");
    r.error = Some(error);
    r
}

fn conditions(h: &HeaderMap) -> Conditions {
    let mut c = Conditions::default();
    for (name, value) in h {
        if let Ok(v) = value.to_str() {
            c.add(name.as_str(), v);
        }
    }
    c
}

/// Everything a reply needs.
struct Prepared {
    decision: Decision,
    validators: Validators,
    cache: CachePolicy,
    size: u64,
    body: ReplyBody,
}

fn prepare(
    site: &Site,
    target: &Target,
    conditions: &Conditions,
    head: bool,
    sender: Sender,
    blocking: Blocking,
) -> Result<Prepared, OpenFailure> {
    let root = site.root(target.root).ok_or(OpenFailure::NotFound)?;
    let f = open_beneath(root, &target.rel, blocking)?;
    let validators = Validators::new(target.object.as_deref(), f.size, f.mtime, f.mtime_ns, f.ino);
    let decision = decide(conditions, &validators, f.size);
    let span = match decision {
        Decision::Full => Some((0, f.size)),
        Decision::Partial { start, end } => Some((start, end)),
        Decision::NotModified | Decision::Unsatisfiable => None,
    };
    let body = match span {
        Some((start, end)) if !head && end > start => {
            if end - start > INLINE_MAX {
                ReplyBody::File(FileStream::new(f.file, start, end))
            } else if sender == Sender::Sendfile && blocking == Blocking::Never {
                // Its path resolved from the dentry cache: its pages are most likely
                // cached too, and at worst sendfile waits for a small read. A file that
                // needed the disk to be found is read on the blocking pool instead.
                ReplyBody::Small {
                    file: f.file,
                    start,
                    end,
                }
            } else {
                ReplyBody::Bytes(read_at(&f.file, start, end - start, blocking)?)
            }
        }
        _ => ReplyBody::None,
    };
    Ok(Prepared {
        decision,
        validators,
        cache: target.cache,
        size: f.size,
        body,
    })
}

impl Prepared {
    fn into_reply(self) -> Reply {
        let (status, length) = match self.decision {
            Decision::Full => (StatusCode::OK, Some(self.size)),
            Decision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, Some(end - start)),
            Decision::NotModified => (StatusCode::NOT_MODIFIED, None),
            Decision::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Some(0)),
        };
        let modified = status != StatusCode::NOT_MODIFIED;
        let content_range = match self.decision {
            Decision::Partial { start, end } => {
                Some(format!("bytes {start}-{}/{}", end - 1, self.size))
            }
            Decision::Unsatisfiable => Some(format!("bytes */{}", self.size)),
            _ => None,
        };
        Reply {
            status,
            last_modified: self.validators.last_modified(),
            etag: Some(self.validators.etag),
            cache: match self.cache {
                CachePolicy::Immutable => IMMUTABLE,
                CachePolicy::Revalidate => REVALIDATE,
            },
            content_type: modified.then_some(OCTETS),
            accept_ranges: modified,
            length,
            content_range,
            allow: None,
            body: self.body,
            error: None,
        }
    }
}
