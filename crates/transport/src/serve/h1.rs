//! HTTP/1.1 connections, served by a small loop of our own rather than through hyper.
//!
//! A repository is served as thousands of small GETs on a few kept-alive connections, and
//! hyper's per-request machinery (header maps, body and service plumbing, a task wake per
//! response) was about 40% of the server's CPU time against nginx's. This loop does what a
//! static file server needs and nothing else: it parses each request head with httparse,
//! answers it through the same [`handler::answer`] as HTTP/2, and writes the reply head
//! and a small body with one `writev`. Pipelined requests are answered in order.
//!
//! Request bodies are not read: a request that announces one (no GET or HEAD needs one)
//! is answered and the connection closed, so its bytes are never taken for a request.
//!
//! `Upgrade: h2c`, which libcurl (and so `ostree pull`) sends on every plain-HTTP
//! connection, is ignored, as nginx ignores it: tried, ostree 2022.7 multiplexed its whole
//! pull over one HTTP/2 connection but used 2.4 times the CPU (5.9 s instead of 2.4 s of
//! user time for the minbase commit) and sometimes stalled for half a minute.

use super::conditional::Conditions;
use super::files::ServeBody;
use super::handler::{self, Ask, HeaderText, Reply, ReplyBody, Sender, Site, plain};
use bytes::{Buf, BytesMut};
use http::{Method, StatusCode, Version};
use hyper::body::Body;
use rustix::net::SendFlags;
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

/// Largest request head (request line and header fields).
const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request.
const MAX_HEADERS: usize = 64;
/// Longest wait for a complete request head, counted from the end of the last reply.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the client to take the next bytes of a reply.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a connection ended.
pub(crate) enum End {
    /// Closed, by either side or after an error.
    Closed,
    /// The client opened with the HTTP/2 preface; these bytes have been read.
    Http2(TcpStream, BytesMut),
}

/// A request head, taken out of the read buffer.
struct Request {
    method: Method,
    path: String,
    version: Version,
    conditions: Conditions,
    /// The client wants the connection closed after this request (or, for HTTP/1.0,
    /// did not ask to keep it).
    close: bool,
    /// HTTP/1.0 with `Connection: keep-alive`: the reply says it too.
    keep_alive_10: bool,
    /// The request announces a body.
    has_body: bool,
}

/// Serve requests on `stream` until the client closes it, an error, or `stop`.
pub(crate) async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    site: Arc<Site>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let mut head = Vec::with_capacity(512);
    // One timer and one stop watch for the connection's life, rather than a timer
    // registered and a watcher queued for every read: their set-up was a noticeable part
    // of the cost of a small request.
    let idle = tokio::time::sleep(HEAD_TIMEOUT);
    let stopping = super::stopped(stop);
    tokio::pin!(idle, stopping);
    let mut wait = Wait {
        idle,
        stopping,
        stopped: false,
    };
    let mut first = true;
    loop {
        let req = match read_request(&mut stream, &mut buf, &mut wait, first).await {
            Read::Request(r) => r,
            Read::Http2 => return End::Http2(stream, buf),
            Read::Closed => return End::Closed,
            Read::Refused(reply) => {
                encode_head(&mut head, &reply, Connection::Close);
                let _ = write_reply(&mut stream, &head, reply.body).await;
                return End::Closed;
            }
        };
        first = false;
        let ask = Ask {
            method: req.method,
            path: &req.path,
            conditions: req.conditions,
        };
        let reply = handler::answer(&site, &ask, Sender::Sendfile).await;
        site.log(peer, &ask, req.version, &reply);
        let close = req.close || req.has_body || wait.stop_requested();
        let connection = match (close, req.keep_alive_10) {
            (true, _) => Connection::Close,
            (false, true) => Connection::KeepAlive,
            (false, false) => Connection::Default,
        };
        encode_head(&mut head, &reply, connection);
        if write_reply(&mut stream, &head, reply.body).await.is_err() || close {
            return End::Closed;
        }
    }
}

/// What a connection waiting for a request also watches: its idle timer and the server's
/// stop.
struct Wait<I, S> {
    idle: Pin<I>,
    stopping: Pin<S>,
    /// `stopping` has completed (it must not be polled again).
    stopped: bool,
}

impl<I, S> Wait<I, S>
where
    I: std::ops::DerefMut<Target = tokio::time::Sleep>,
    S: std::ops::DerefMut,
    S::Target: Future<Output = ()>,
{
    /// Whether the server is stopping, without waiting.
    fn stop_requested(&mut self) -> bool {
        if !self.stopped {
            let waker = std::task::Waker::noop();
            let mut cx = std::task::Context::from_waker(waker);
            self.stopped = self.stopping.as_mut().poll(&mut cx).is_ready();
        }
        self.stopped
    }
}

enum Read {
    Request(Request),
    Http2,
    Closed,
    /// A request that cannot be answered normally: send this, then close.
    Refused(Reply),
}

/// Read until `buf` holds a whole request head, and take it out.
async fn read_request<I, S>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    wait: &mut Wait<I, S>,
    first: bool,
) -> Read
where
    I: std::ops::DerefMut<Target = tokio::time::Sleep>,
    S: std::ops::DerefMut,
    S::Target: Future<Output = ()>,
{
    if wait.stop_requested() {
        return Read::Closed;
    }
    wait.idle.as_mut().reset(Instant::now() + HEAD_TIMEOUT);
    loop {
        if first {
            let n = buf.len().min(H2_PREFACE.len());
            if buf[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return Read::Http2;
                }
            } else if let Some(r) = take_request(buf) {
                return r;
            }
        } else if let Some(r) = take_request(buf) {
            return r;
        }
        if buf.len() >= MAX_HEAD {
            return Read::Refused(plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large\n",
            ));
        }
        buf.reserve(4 * 1024);
        tokio::select! {
            biased;
            r = stream.read_buf(buf) => match r {
                Ok(n) if n > 0 => {}
                // Closed or failed: nothing to answer.
                _ => return Read::Closed,
            },
            // Silent for too long.
            () = wait.idle.as_mut() => return Read::Closed,
            () = wait.stopping.as_mut() => {
                wait.stopped = true;
                return Read::Closed;
            }
        }
    }
}

/// Parse a request head at the start of `buf` and remove it; `None` when incomplete.
fn take_request(buf: &mut BytesMut) -> Option<Read> {
    if buf.is_empty() {
        return None;
    }
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut fields);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(httparse::Error::TooManyHeaders) => {
            return Some(Read::Refused(plain(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "too many header fields\n",
            )));
        }
        Err(httparse::Error::Version) if names_a_version(buf) => {
            return Some(Read::Refused(plain(
                StatusCode::HTTP_VERSION_NOT_SUPPORTED,
                "HTTP/1.0, HTTP/1.1, or HTTP/2 with prior knowledge\n",
            )));
        }
        Err(_) => return Some(Read::Refused(bad_request("malformed request\n"))),
    };
    let r = request_of(&parsed);
    buf.advance(len);
    Some(match r {
        Ok(r) => Read::Request(r),
        Err(why) => Read::Refused(bad_request(why)),
    })
}

/// Whether the request line is three words, the last a well-formed `HTTP/x.y`, so that the
/// version itself is what is refused (rather than a line with a space too many).
fn names_a_version(buf: &[u8]) -> bool {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let words: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    matches!(words[..], [_, _, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]]
        if major.is_ascii_digit() && minor.is_ascii_digit())
}

fn bad_request(text: &'static str) -> Reply {
    plain(StatusCode::BAD_REQUEST, text)
}

/// The request, or why it is a bad one.
fn request_of(p: &httparse::Request<'_, '_>) -> Result<Request, &'static str> {
    let method = match p.method.unwrap_or_default() {
        "GET" => Method::GET,
        "HEAD" => Method::HEAD,
        m => Method::from_bytes(m.as_bytes()).map_err(|_| "bad method\n")?,
    };
    let version = match p.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let path = target_path(p.path.unwrap_or_default())
        .ok_or("bad request target\n")?
        .to_string();
    let mut conditions = Conditions::default();
    let (mut close, mut keep_alive, mut has_body) = (false, false, false);
    for f in p.headers.iter() {
        // Values that are not visible ASCII are taken as absent, as hyper's to_str() does.
        let Some(value) = visible_ascii(f.value) else {
            continue;
        };
        let name = f.name;
        if conditions.add(name, value) {
            continue;
        }
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                close |= token.eq_ignore_ascii_case("close");
                keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| "bad Content-Length\n")?;
            has_body |= n > 0;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            has_body = true;
        }
    }
    let keep_alive_10 = version == Version::HTTP_10 && keep_alive && !close;
    Ok(Request {
        method,
        path,
        version,
        conditions,
        close: close || (version == Version::HTTP_10 && !keep_alive),
        keep_alive_10,
        has_body,
    })
}

fn visible_ascii(v: &[u8]) -> Option<&str> {
    if v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)) {
        std::str::from_utf8(v).ok().map(str::trim)
    } else {
        None
    }
}

/// The path of a request target in origin form (`/path?query`) or absolute form
/// (`http://host/path`), without the query.
fn target_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    Some(path.split_once('?').map_or(path, |(p, _)| p))
}

#[derive(Clone, Copy)]
enum Connection {
    /// HTTP/1.1 keep-alive: nothing to say.
    Default,
    KeepAlive,
    Close,
}

/// The status line and header fields of `reply`, into `out`.
fn encode_head(out: &mut Vec<u8>, reply: &Reply, connection: Connection) {
    out.clear();
    let status = reply.status;
    for part in [
        "HTTP/1.1 ",
        status.as_str(),
        " ",
        status.canonical_reason().unwrap_or(""),
        "\r\nDate: ",
    ] {
        out.extend_from_slice(part.as_bytes());
    }
    DATE.with_borrow_mut(|d| out.extend_from_slice(d.now().as_bytes()));
    out.extend_from_slice(b"\r\n");
    for (name, value) in reply.headers() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        match value {
            HeaderText::Static(v) => out.extend_from_slice(v.as_bytes()),
            HeaderText::Borrowed(v) => out.extend_from_slice(v.as_bytes()),
            HeaderText::Number(n) => {
                let _ = write!(out, "{n}");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(match connection {
        Connection::Default => b"\r\n",
        Connection::KeepAlive => b"Connection: keep-alive\r\n\r\n",
        Connection::Close => b"Connection: close\r\n\r\n",
    });
}

/// The Date header's value, formatted once a second.
struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}

thread_local! {
    static DATE: RefCell<DateCache> = const {
        RefCell::new(DateCache {
            second: 0,
            text: String::new(),
        })
    };
}

/// Send the head and the body.
async fn write_reply(stream: &mut TcpStream, head: &[u8], body: ReplyBody) -> io::Result<()> {
    match body {
        ReplyBody::None => write_all(stream, head, &[]).await,
        ReplyBody::Bytes(b) => write_all(stream, head, &b).await,
        ReplyBody::Small { file, start, end } => send_file(stream, head, &file, start, end).await,
        ReplyBody::File(file) => {
            write_all(stream, head, &[]).await?;
            let mut body = ServeBody::File(file);
            while let Some(frame) =
                std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
            {
                if let Ok(data) = frame?.into_data() {
                    write_all(stream, &data, &[]).await?;
                }
            }
            Ok(())
        }
    }
}

/// Send the head, then bytes `start..end` of `file` with sendfile(2), which copies them
/// from the page cache to the socket without a pass through this process. MSG_MORE holds
/// the head back until the body joins it, so that a small reply leaves in one segment.
async fn send_file(
    stream: &mut TcpStream,
    mut head: &[u8],
    file: &std::fs::File,
    start: u64,
    end: u64,
) -> io::Result<()> {
    let mut flags = SendFlags::NOSIGNAL;
    if end > start {
        flags |= SendFlags::MORE;
    }
    while !head.is_empty() {
        let n = nonblocking(stream, || rustix::net::send(&*stream, head, flags)).await?;
        head = &head[n..];
    }
    let mut offset = start;
    while offset < end {
        let count = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let n = nonblocking(stream, || {
            rustix::fs::sendfile(&*stream, file, Some(&mut offset), count)
        })
        .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            ));
        }
    }
    Ok(())
}

/// Run a write-side system call on the socket, waiting (at most [`WRITE_TIMEOUT`]) while
/// the socket's buffer is full.
async fn nonblocking(
    stream: &TcpStream,
    mut call: impl FnMut() -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    loop {
        match stream.try_io(Interest::WRITABLE, || call().map_err(io::Error::from)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match timeout(WRITE_TIMEOUT, stream.writable()).await {
                    Ok(r) => r?,
                    Err(_) => return Err(io::ErrorKind::TimedOut.into()),
                }
            }
            r => return r,
        }
    }
}

/// Write `a` then `b` with as few `writev` calls as the socket allows.
async fn write_all(stream: &mut TcpStream, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
    while !a.is_empty() || !b.is_empty() {
        let slices = [IoSlice::new(a), IoSlice::new(b)];
        let n = match timeout(WRITE_TIMEOUT, stream.write_vectored(&slices)).await {
            Ok(r) => r?,
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Option<Read> {
        let mut buf = BytesMut::from(raw.as_bytes());
        take_request(&mut buf)
    }

    fn request(raw: &str) -> Request {
        match parse(raw) {
            Some(Read::Request(r)) => r,
            _ => panic!("not a request: {raw:?}"),
        }
    }

    fn refused(raw: &str) -> u16 {
        match parse(raw) {
            Some(Read::Refused(r)) => r.status.as_u16(),
            _ => panic!("not refused: {raw:?}"),
        }
    }

    #[test]
    fn request_heads_are_taken_whole_and_in_order() {
        let mut buf =
            BytesMut::from(&b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b?q=1 HTTP/1.1\r\n"[..]);
        let Some(Read::Request(a)) = take_request(&mut buf) else {
            panic!("first request")
        };
        assert_eq!((a.method, a.path.as_str()), (Method::GET, "/a"));
        assert!(
            take_request(&mut buf).is_none(),
            "the second head is incomplete"
        );
        buf.extend_from_slice(b"\r\n");
        let Some(Read::Request(b)) = take_request(&mut buf) else {
            panic!("second request")
        };
        assert_eq!((b.method, b.path.as_str()), (Method::HEAD, "/b"));
        assert!(buf.is_empty());
    }

    #[test]
    fn connection_persistence_follows_the_version_and_the_header() {
        let r = request("GET / HTTP/1.1\r\n\r\n");
        assert!(!r.close && !r.keep_alive_10);
        let r = request("GET / HTTP/1.1\r\nConnection: Keep-Alive, close\r\n\r\n");
        assert!(r.close);
        let r = request("GET / HTTP/1.0\r\n\r\n");
        assert!(r.close);
        let r = request("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!r.close && r.keep_alive_10);
        let r = request("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(!r.has_body);
        let r = request("GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert!(r.has_body);
        let r = request("GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(r.has_body);
    }

    #[test]
    fn conditions_are_read_from_visible_ascii_fields() {
        let r = request(
            "GET /x HTTP/1.1\r\nIf-None-Match: \"a\"\r\nif-none-match: \"b\"\r\n\
             Range: bytes=0-1\r\nRange: bytes=5-6\r\nIf-Range: \"a\"\r\n\
             If-Modified-Since: café\r\n\r\n",
        );
        assert_eq!(r.conditions.if_none_match.as_deref(), Some("\"a\", \"b\""));
        assert_eq!(r.conditions.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(r.conditions.if_range.as_deref(), Some("\"a\""));
        assert_eq!(r.conditions.if_modified_since, None);
    }

    #[test]
    fn targets_in_absolute_form_and_with_queries() {
        assert_eq!(target_path("/a/b?x=1"), Some("/a/b"));
        assert_eq!(target_path("http://host:8080/a?x"), Some("/a"));
        assert_eq!(target_path("https://host"), Some("/"));
        assert_eq!(target_path("*"), None);
        assert_eq!(target_path("a/b"), None);
    }

    #[test]
    fn malformed_heads_are_refused() {
        assert_eq!(refused("GET /\x01 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(refused("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(refused("GET / HTTP/3.0\r\n\r\n"), 505);
        assert_eq!(refused("GET /a b HTTP/1.1\r\n\r\n"), 400);
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        assert_eq!(refused(&format!("GET / HTTP/1.1\r\n{many}\r\n")), 431);
    }

    #[test]
    fn heads_carry_status_date_fields_and_connection() {
        let mut out = Vec::new();
        let reply = plain(StatusCode::NOT_FOUND, "not found\n");
        encode_head(&mut out, &reply, Connection::Close);
        let text = String::from_utf8(out).expect("ascii");
        assert!(
            text.starts_with("HTTP/1.1 404 Not Found\r\nDate: "),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 10\r\n"), "{text}");
        assert!(text.ends_with("\r\nConnection: close\r\n\r\n"), "{text}");
    }
}
