//! One request in, one response out.

use super::conditional::{Conditions, Decision, Validators, decide};
use super::files::{Blocking, FileStream, OpenFailure, RootDir, ServeBody, open_beneath, read_at};
use super::target::{CachePolicy, Refusal, Root, Target, resolve};
use super::{AccessLog, AccessRecord};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// Bodies up to this size are read along with opening the file; larger ones are streamed.
const INLINE_MAX: u64 = 256 * 1024;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const REVALIDATE: &str = "no-cache";

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
}

pub(crate) async fn handle<B>(
    site: Arc<Site>,
    peer: SocketAddr,
    req: Request<B>,
) -> Response<ServeBody> {
    let (resp, error) = respond(&site, &req).await;
    if let Some(log) = &site.log {
        let bytes = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        log(&AccessRecord {
            peer,
            method: req.method().clone(),
            path: req.uri().path().to_string(),
            version: req.version(),
            status: resp.status().as_u16(),
            bytes,
            error,
        });
    }
    resp
}

/// The response, and for a server error what went wrong (for the access log only:
/// clients are not told about the server's files).
async fn respond<B>(site: &Arc<Site>, req: &Request<B>) -> (Response<ServeBody>, Option<String>) {
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return (r, None);
        }
    };
    let target = match resolve(req.uri().path(), &site.extra_names) {
        Ok(t) => t,
        Err(Refusal::Malformed(why)) => {
            let r = plain(StatusCode::BAD_REQUEST, &format!("bad path: {why}\n"));
            return (r, None);
        }
        Err(Refusal::NotServed) => return (not_found(), None),
    };
    let conditions = conditions(req.headers());
    let prepared = match prepare(site, &target, &conditions, head, Blocking::Never) {
        Err(OpenFailure::WouldBlock) => {
            let site = Arc::clone(site);
            let blocking = move || prepare(&site, &target, &conditions, head, Blocking::Allowed);
            match tokio::task::spawn_blocking(blocking).await {
                Ok(p) => p,
                Err(join) => Err(OpenFailure::Io(std::io::Error::other(join))),
            }
        }
        other => other,
    };
    let error = match prepared {
        Ok(p) => return (p.into_response(), None),
        Err(OpenFailure::NotFound) => return (not_found(), None),
        Err(OpenFailure::Forbidden) => {
            return (plain(StatusCode::FORBIDDEN, "forbidden\n"), None);
        }
        Err(OpenFailure::Io(e)) => e.to_string(),
        // Only returned when blocking is not allowed.
        Err(OpenFailure::WouldBlock) => "read would block".to_string(),
    };
    let r = plain(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file\n");
    (r, Some(error))
}

fn conditions(h: &HeaderMap) -> Conditions {
    let get = |name: header::HeaderName| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // If-None-Match is a list, which may also be split over several header lines.
    let tags: Vec<&str> = h
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    Conditions {
        if_none_match: (!tags.is_empty()).then(|| tags.join(", ")),
        if_modified_since: get(header::IF_MODIFIED_SINCE),
        range: get(header::RANGE),
        if_range: get(header::IF_RANGE),
    }
}

/// Everything a response needs.
struct Prepared {
    decision: Decision,
    validators: Validators,
    cache: CachePolicy,
    size: u64,
    body: PreparedBody,
}

enum PreparedBody {
    None,
    Bytes(Bytes),
    File(FileStream),
}

fn prepare(
    site: &Site,
    target: &Target,
    conditions: &Conditions,
    head: bool,
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
            if end - start <= INLINE_MAX {
                PreparedBody::Bytes(read_at(&f.file, start, end - start, blocking)?)
            } else {
                PreparedBody::File(FileStream::new(f.file, start, end))
            }
        }
        _ => PreparedBody::None,
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
    fn into_response(self) -> Response<ServeBody> {
        let (status, length) = match self.decision {
            Decision::Full => (StatusCode::OK, Some(self.size)),
            Decision::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, Some(end - start)),
            Decision::NotModified => (StatusCode::NOT_MODIFIED, None),
            Decision::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Some(0)),
        };
        let body = match self.body {
            PreparedBody::None => ServeBody::Empty,
            PreparedBody::Bytes(b) => ServeBody::Bytes(Some(b)),
            PreparedBody::File(s) => ServeBody::File(s),
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        let h = r.headers_mut();
        let mut set = |name: header::HeaderName, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        set(header::ETAG, self.validators.etag.clone());
        if let Some(lm) = self.validators.last_modified() {
            set(header::LAST_MODIFIED, lm);
        }
        let cache = match self.cache {
            CachePolicy::Immutable => IMMUTABLE,
            CachePolicy::Revalidate => REVALIDATE,
        };
        set(header::CACHE_CONTROL, cache.to_string());
        if status != StatusCode::NOT_MODIFIED {
            set(header::ACCEPT_RANGES, "bytes".to_string());
            set(header::CONTENT_TYPE, "application/octet-stream".to_string());
        }
        if let Some(len) = length {
            set(header::CONTENT_LENGTH, len.to_string());
        }
        match self.decision {
            Decision::Partial { start, end } => set(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{}", end - 1, self.size),
            ),
            Decision::Unsatisfiable => {
                set(header::CONTENT_RANGE, format!("bytes */{}", self.size));
            }
            _ => {}
        }
        r
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ServeBody> {
    let body = Bytes::copy_from_slice(text.as_bytes());
    let len = body.len();
    let mut r = Response::new(ServeBody::Bytes(Some(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    r
}

fn not_found() -> Response<ServeBody> {
    plain(StatusCode::NOT_FOUND, "not found\n")
}
