//! Fetching a remote's files: HTTP(S) through a pooled client per pull thread (kept-alive
//! connections, HTTP/2 when TLS negotiates it), or a `file://` archive repository read from
//! disk.
//! Both answer the same question: the bytes at a path under the remote's URL, or "absent".

use super::error::{PullError, Result, chain};
use bytes::{Bytes, BytesMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use trellis_store::Repo;

/// Bodies larger than this go to a file in the repository's `tmp/` instead of memory, so
/// that many requests in flight stay within a bounded amount of memory.
pub(crate) const SPOOL_THRESHOLD: u64 = 1024 * 1024;

/// A fetched file.
pub(crate) enum Body {
    Mem(Bytes),
    /// Spooled to a file in the destination repository's `tmp/`.
    Spooled(Spool),
}

/// A spooled body: removed when dropped, so that a failed or cancelled pull leaves nothing
/// behind (the store renames or removes it first when it is used).
pub(crate) struct Spool {
    pub path: PathBuf,
    pub len: u64,
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Body {
    pub(crate) fn len(&self) -> u64 {
        match self {
            Body::Mem(b) => b.len() as u64,
            Body::Spooled(s) => s.len,
        }
    }
}

/// What to fetch.
pub(crate) struct Want<'a> {
    /// Path below the remote's base URL, e.g. `objects/ab/cdef….filez`.
    pub rel: &'a str,
    /// How errors name it, e.g. `file object abcd…`.
    pub what: &'a str,
    /// Refuse bodies larger than this.
    pub max: u64,
    /// 403, 404 and 410 mean "absent" (`None`) instead of an error.
    pub optional: bool,
    /// Spool bodies above [`SPOOL_THRESHOLD`] into this repository's `tmp/`.
    pub spool: Option<&'a Repo>,
}

/// How to talk to the remote.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Longest wait for a connection, response headers or the next body bytes.
    pub timeout: Duration,
    /// Further attempts after a connection error, a timeout or a 5xx answer.
    pub retries: u32,
    /// Accept any TLS certificate (the remote's `tls-permissive`).
    pub tls_permissive: bool,
    /// Extra trusted CA certificate, PEM (the remote's `tls-ca-path`).
    pub tls_ca_path: Option<PathBuf>,
    /// Proxy URL (the remote's `proxy`).
    pub proxy: Option<String>,
    /// Pooled connections kept per host.
    pub connections: usize,
}

enum Kind {
    Http {
        client: reqwest::Client,
        base: String,
    },
    File {
        base: PathBuf,
    },
}

pub(crate) struct Fetcher {
    kind: Kind,
    url: String,
    opts: FetchOptions,
    counts: Arc<Counts>,
}

/// Requests and bytes, shared by a fetcher and its siblings.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// Why one attempt failed, and whether another may succeed.
enum Attempt {
    Retry(String),
    Fatal(PullError),
}

impl Fetcher {
    pub(crate) fn new(url: &str, opts: FetchOptions) -> Result<Arc<Fetcher>> {
        Fetcher::with_counts(url, opts, Arc::default())
    }

    /// A fetcher of the same remote for another thread: its own connections, which are
    /// driven by the runtime that uses them, and the same counters.
    pub(crate) fn sibling(&self) -> Result<Arc<Fetcher>> {
        Fetcher::with_counts(&self.url, self.opts.clone(), Arc::clone(&self.counts))
    }

    fn with_counts(url: &str, opts: FetchOptions, counts: Arc<Counts>) -> Result<Arc<Fetcher>> {
        let parsed = url::Url::parse(url)
            .map_err(|e| PullError::Invalid(format!("remote URL {url:?} is not a URL: {e}")))?;
        let kind = match parsed.scheme() {
            "http" | "https" => Kind::Http {
                client: http_client(&parsed, &opts)?,
                base: url.trim_end_matches('/').to_string(),
            },
            "file" => Kind::File {
                base: parsed.to_file_path().map_err(|()| {
                    PullError::Invalid(format!("remote URL {url:?} is not a local path"))
                })?,
            },
            s => {
                return Err(PullError::Invalid(format!(
                    "remote URL {url:?}: unsupported scheme {s:?} (use http, https or file)"
                )));
            }
        };
        Ok(Arc::new(Fetcher {
            kind,
            url: url.to_string(),
            opts,
            counts,
        }))
    }

    /// The local directory of a `file://` remote.
    pub(crate) fn local_dir(&self) -> Option<&std::path::Path> {
        match &self.kind {
            Kind::File { base } => Some(base),
            Kind::Http { .. } => None,
        }
    }

    pub(crate) fn url_of(&self, rel: &str) -> String {
        match &self.kind {
            Kind::Http { base, .. } => format!("{base}/{rel}"),
            Kind::File { base } => format!("file://{}", base.join(rel).display()),
        }
    }

    /// Requests made (HTTP attempts, or files read).
    pub(crate) fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Body bytes received.
    pub(crate) fn bytes(&self) -> u64 {
        self.counts.bytes.load(Ordering::Relaxed)
    }

    pub(crate) async fn get(&self, w: &Want<'_>) -> Result<Option<Body>> {
        match &self.kind {
            Kind::Http { client, .. } => self.get_http(client, w).await,
            Kind::File { base } => self.get_file(base.join(w.rel), w).await,
        }
    }

    async fn get_http(&self, client: &reqwest::Client, w: &Want<'_>) -> Result<Option<Body>> {
        let url = self.url_of(w.rel);
        let mut last = String::new();
        for attempt in 0..=self.opts.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt.min(5))).await;
            }
            match self.attempt(client, &url, w).await {
                Ok(b) => return Ok(b),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        let tries = self.opts.retries + 1;
        Err(PullError::Fetch {
            what: w.what.to_string(),
            url: url.into(),
            why: format!(
                "{last} ({tries} attempt{})",
                if tries == 1 { "" } else { "s" }
            ),
        })
    }

    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &str,
        w: &Want<'_>,
    ) -> Result<Option<Body>, Attempt> {
        let t = self.opts.timeout;
        let timed_out =
            || Attempt::Retry(format!("timed out: no answer within {} s", t.as_secs_f64()));
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let mut resp = match tokio::time::timeout(t, client.get(url).send()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
            Ok(Err(e)) => return Err(Attempt::Retry(chain(&e))),
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let fatal = |why: String| {
            Attempt::Fatal(PullError::Fetch {
                what: w.what.to_string(),
                url: url.into(),
                why,
            })
        };
        if matches!(status.as_u16(), 403 | 404 | 410) {
            if w.optional {
                return Ok(None);
            }
            return Err(Attempt::Fatal(PullError::NotFound {
                what: w.what.to_string(),
                url: url.into(),
                status: format!("HTTP {status}"),
            }));
        }
        if status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
            return Err(Attempt::Retry(format!("server answered HTTP {status}")));
        }
        if !status.is_success() {
            return Err(fatal(format!("server answered HTTP {status}")));
        }
        if let Some(n) = resp.content_length()
            && n > w.max
        {
            return Err(fatal(format!(
                "{n} bytes exceed the limit of {} bytes",
                w.max
            )));
        }
        let spool_repo = w
            .spool
            .filter(|_| resp.content_length().is_none_or(|n| n > SPOOL_THRESHOLD));
        let mut buf = BytesMut::with_capacity(
            usize::try_from(resp.content_length().unwrap_or(0).min(SPOOL_THRESHOLD)).unwrap_or(0),
        );
        let mut spool: Option<(PathBuf, tokio::io::BufWriter<tokio::fs::File>)> = None;
        let mut total = 0u64;
        let result: Result<(), Attempt> = async {
            loop {
                let chunk = match tokio::time::timeout(t, resp.chunk()).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
                    Ok(Err(e)) => return Err(Attempt::Retry(chain(&e))),
                    Ok(Ok(None)) => return Ok(()),
                    Ok(Ok(Some(c))) => c,
                };
                total += chunk.len() as u64;
                self.counts
                    .bytes
                    .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                if total > w.max {
                    return Err(fatal(format!("more than the limit of {} bytes", w.max)));
                }
                if spool.is_none()
                    && let Some(repo) = spool_repo
                    && total > SPOOL_THRESHOLD
                {
                    let path = repo.spool_path();
                    let f = tokio::fs::File::create(&path)
                        .await
                        .map_err(|e| fatal(format!("cannot create {}: {e}", path.display())))?;
                    let mut wr = tokio::io::BufWriter::with_capacity(256 * 1024, f);
                    let r = wr.write_all(&buf).await;
                    spool = Some((path.clone(), wr));
                    r.map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?;
                    buf = BytesMut::new();
                }
                match &mut spool {
                    Some((path, wr)) => wr
                        .write_all(&chunk)
                        .await
                        .map_err(|e| fatal(format!("cannot write {}: {e}", path.display())))?,
                    None => buf.extend_from_slice(&chunk),
                }
            }
        }
        .await;
        match (result, spool) {
            (Ok(()), None) => Ok(Some(Body::Mem(buf.freeze()))),
            (Ok(()), Some((path, mut wr))) => match wr.flush().await {
                Ok(()) => Ok(Some(Body::Spooled(Spool { path, len: total }))),
                Err(e) => {
                    let _ = tokio::fs::remove_file(&path).await;
                    Err(fatal(format!("cannot write {}: {e}", path.display())))
                }
            },
            (Err(e), spool) => {
                if let Some((path, wr)) = spool {
                    drop(wr);
                    let _ = tokio::fs::remove_file(&path).await;
                }
                Err(e)
            }
        }
    }

    async fn get_file(&self, path: PathBuf, w: &Want<'_>) -> Result<Option<Body>> {
        self.counts.requests.fetch_add(1, Ordering::Relaxed);
        let url = self.url_of(w.rel);
        let what = w.what.to_string();
        let max = w.max;
        let optional = w.optional;
        let spool_to = w.spool.map(Repo::spool_path);
        let r = tokio::task::spawn_blocking(move || -> Result<Option<(Body, u64)>> {
            let fail = |why: String| PullError::Fetch {
                what: what.clone(),
                url: url.as_str().into(),
                why,
            };
            let md = match std::fs::metadata(&path) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if optional {
                        return Ok(None);
                    }
                    return Err(PullError::NotFound {
                        what,
                        url: url.into(),
                        status: "no such file".into(),
                    });
                }
                Err(e) => return Err(fail(e.to_string())),
            };
            if md.len() > max {
                return Err(fail(format!(
                    "{} bytes exceed the limit of {max} bytes",
                    md.len()
                )));
            }
            match spool_to {
                Some(dest) if md.len() > SPOOL_THRESHOLD => {
                    let n = std::fs::copy(&path, &dest).map_err(|e| {
                        let _ = std::fs::remove_file(&dest);
                        fail(format!("cannot copy to {}: {e}", dest.display()))
                    })?;
                    Ok(Some((Body::Spooled(Spool { path: dest, len: n }), n)))
                }
                _ => {
                    let data = std::fs::read(&path).map_err(|e| fail(e.to_string()))?;
                    let n = data.len() as u64;
                    Ok(Some((Body::Mem(Bytes::from(data)), n)))
                }
            }
        })
        .await??;
        Ok(r.map(|(body, n)| {
            self.counts.bytes.fetch_add(n, Ordering::Relaxed);
            body
        }))
    }
}

fn http_client(url: &url::Url, opts: &FetchOptions) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.timeout)
        .pool_max_idle_per_host(opts.connections.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .user_agent(concat!("trellis/", env!("CARGO_PKG_VERSION")));
    if url.scheme() == "http" {
        // Reading and parsing the system's CA bundle takes about 10 ms per client, and
        // a pull makes one per thread. A plain-HTTP remote needs it only if it redirects
        // to HTTPS; such a redirect is then checked against the built-in Mozilla roots
        // (and tls-ca-path, when set).
        b = b.tls_built_in_native_certs(false);
    }
    if opts.tls_permissive {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(p) = &opts.tls_ca_path {
        let pem = std::fs::read(p)
            .map_err(|e| PullError::Invalid(format!("tls-ca-path {}: {e}", p.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| PullError::Invalid(format!("tls-ca-path {}: {e}", p.display())))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    match &opts.proxy {
        Some(p) => {
            let proxy = reqwest::Proxy::all(p)
                .map_err(|e| PullError::Invalid(format!("proxy {p:?}: {}", chain(&e))))?;
            b = b.proxy(proxy);
        }
        // A proxy from the environment must not capture loopback traffic.
        None if is_loopback(url) => b = b.no_proxy(),
        None => {}
    }
    b.build()
        .map_err(|e| PullError::Invalid(format!("cannot set up HTTP: {}", chain(&e))))
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
