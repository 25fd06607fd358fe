//! `serve`: an archive repository as a read-only static HTTP remote.
//!
//! HTTP/1.1 with keep-alive and pipelining (served by `h1`) and HTTP/2 (prior knowledge,
//! h2c, served by hyper) share one port. Only GET and HEAD are answered, with strong
//! ETags, Last-Modified, conditional requests and single byte ranges. Content-addressed
//! files (objects, deltas) are cacheable for a year; refs, summary and config must be
//! revalidated.
//!
//! Safety: a request path is decoded strictly and refused if it holds `.` or `..`
//! segments, empty segments, NUL, backslashes or encoded slashes; the file is then opened
//! with `openat2(RESOLVE_BENEATH)` relative to the served root, so no symlink can lead
//! outside it. Only the parts of the repository that clients fetch are served (`config`,
//! `summary*`, `objects/`, `refs/`, `deltas/`, `delta-indexes/`, `summaries/`), never
//! `tmp/` or `state/`, and directories are never listed.

mod conditional;
mod files;
mod h1;
mod handler;
mod rewind;
mod target;
mod workers;

use files::RootDir;
use handler::Site;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use trellis_store::{Repo, RepoMode};
use workers::Workers;

/// How long open connections get to finish their current responses at shutdown.
const GRACE: Duration = Duration::from_secs(5);

/// Called once per response (method, path, status, length): the library never prints.
pub type AccessLog = Arc<dyn Fn(&AccessRecord) + Send + Sync>;

/// One answered request, for an access log.
#[derive(Clone, Debug)]
pub struct AccessRecord {
    pub peer: SocketAddr,
    pub method: http::Method,
    /// The path as requested, before decoding.
    pub path: String,
    pub version: http::Version,
    pub status: u16,
    /// The Content-Length of the response (what a GET sends; HEAD sends no body).
    pub bytes: u64,
    /// Why a 500 happened.
    pub error: Option<String>,
}

/// What to serve and where.
#[derive(Clone)]
pub struct ServeConfig {
    /// An archive-mode repository.
    pub repo: PathBuf,
    pub bind: SocketAddr,
    /// Extra directories served beside the repository: `(name, dir)` is served under
    /// `/name/`. A name must be one plain path segment that the repository does not use.
    pub extra: Vec<(String, PathBuf)>,
    pub access_log: Option<AccessLog>,
}

impl ServeConfig {
    /// Serve `repo` on 127.0.0.1:8080 with no extra directories and no access log.
    pub fn new(repo: impl Into<PathBuf>) -> ServeConfig {
        ServeConfig {
            repo: repo.into(),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            extra: Vec::new(),
            access_log: None,
        }
    }
}

impl std::fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeConfig")
            .field("repo", &self.repo)
            .field("bind", &self.bind)
            .field("extra", &self.extra)
            .field("access_log", &self.access_log.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Repo(#[from] trellis_store::Error),
    #[error(
        "{} is a {mode} repository; only archive repositories can be served over HTTP \
         (ostree clients refuse to pull from other modes)",
        path.display()
    )]
    NotArchive { path: PathBuf, mode: RepoMode },
    #[error("opening {} to serve it", path.display())]
    OpenRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot resolve paths safely beneath {}: openat2 with RESOLVE_BENEATH failed \
         (Linux 5.6 or later is needed)",
        path.display()
    )]
    NoOpenat2 {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("extra directory name {name:?}: {why}")]
    BadDirName { name: String, why: &'static str },
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the server's runtime")]
    Runtime(#[source] std::io::Error),
    #[error("installing the SIGINT/SIGTERM handlers")]
    Signal(#[source] std::io::Error),
    #[error("the server thread ended before it reported its address")]
    ThreadGone,
}

/// A bound server; nothing is answered until [`Server::run_until`] runs.
pub struct Server {
    /// One descriptor of the listening socket per worker thread.
    listeners: Vec<std::net::TcpListener>,
    addr: SocketAddr,
    site: Arc<Site>,
    h2: Arc<http2::Builder<TokioExecutor>>,
    workers: Workers,
}

impl Server {
    /// Check the repository and the extra directories, then bind the address.
    pub async fn bind(cfg: ServeConfig) -> Result<Server, ServeError> {
        let site = Arc::new(open_site(&cfg)?);
        let bind_error = |source| ServeError::Bind {
            addr: cfg.bind,
            source,
        };
        let listener = std::net::TcpListener::bind(cfg.bind).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let workers = Workers::per_core().map_err(ServeError::Runtime)?;
        // Every worker accepts on the socket itself: a connection handed from an accepting
        // thread to a worker cost two wake-ups more (the hand-over and the end of the
        // connection), which showed at ostree's rate of reconnections.
        let mut listeners = Vec::new();
        for _ in 1..workers.handles().len() {
            listeners.push(listener.try_clone().map_err(bind_error)?);
        }
        listeners.push(listener);
        Ok(Server {
            listeners,
            addr,
            site,
            h2: Arc::new(h2_builder()),
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `shutdown` completes, then stop accepting, let open connections finish
    /// their responses (for a few seconds at most) and return.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let loops: Vec<_> = self
            .listeners
            .into_iter()
            .zip(self.workers.handles())
            .map(|(listener, worker)| {
                let (site, h2, stop) = (
                    Arc::clone(&self.site),
                    Arc::clone(&self.h2),
                    stop_rx.clone(),
                );
                worker.spawn(accept_loop(listener, site, h2, stop))
            })
            .collect();
        shutdown.await;
        let _ = stop_tx.send(true);
        for l in loops {
            let _ = l.await;
        }
    }
}

/// A worker's share of the server: accept connections and serve them on this thread until
/// `stop`, then let them finish their responses (for a few seconds at most).
async fn accept_loop(
    listener: std::net::TcpListener,
    site: Arc<Site>,
    h2: Arc<http2::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    // Registered with the reactor of the worker this runs on.
    let Ok(listener) = TcpListener::from_std(listener) else {
        return;
    };
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let (site, h2, stop) = (Arc::clone(&site), Arc::clone(&h2), stop.clone());
                    conns.spawn(connection(stream, peer, site, h2, stop));
                }
                // Out of descriptors and the like: back off instead of spinning; a
                // failure of one pending connection only concerns that client.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(GRACE, drain).await.is_err() {
        conns.abort_all();
    }
}

fn open_site(cfg: &ServeConfig) -> Result<Site, ServeError> {
    let repo = Repo::open(&cfg.repo)?;
    if !repo.mode().is_archive() {
        return Err(ServeError::NotArchive {
            path: cfg.repo.clone(),
            mode: repo.mode(),
        });
    }
    let open_root = |path: &PathBuf| {
        let root = RootDir::open(path).map_err(|source| ServeError::OpenRoot {
            path: path.clone(),
            source,
        })?;
        files::probe_openat2(&root).map_err(|source| ServeError::NoOpenat2 {
            path: path.clone(),
            source,
        })?;
        Ok::<_, ServeError>(root)
    };
    let mut extra_names: Vec<String> = Vec::new();
    let mut extra = Vec::new();
    for (name, path) in &cfg.extra {
        check_dir_name(name, &extra_names)?;
        extra.push(open_root(path)?);
        extra_names.push(name.clone());
    }
    Ok(Site {
        repo: open_root(&cfg.repo)?,
        extra_names,
        extra,
        log: cfg.access_log.clone(),
    })
}

fn check_dir_name(name: &str, taken: &[String]) -> Result<(), ServeError> {
    let bad = |why| ServeError::BadDirName {
        name: name.to_string(),
        why,
    };
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || !plain || name.starts_with('.') {
        return Err(bad(
            "use letters, digits, '-', '_' and '.', not starting with '.'",
        ));
    }
    if target::is_repo_name(name) {
        return Err(bad("the repository itself serves this name"));
    }
    if taken.iter().any(|t| t == name) {
        return Err(bad("given twice"));
    }
    Ok(())
}

fn h2_builder() -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    // Larger windows than the 64 KiB default keep multiplexed object fetches from
    // stalling on flow control.
    b.timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(8 << 20);
    b
}

/// One connection: HTTP/1.1 by our own loop, or HTTP/2 with prior knowledge (h2c) by
/// hyper, told apart by the first bytes.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    site: Arc<Site>,
    h2: Arc<http2::Builder<TokioExecutor>>,
    mut stop: watch::Receiver<bool>,
) {
    // Small responses go out at once instead of waiting on Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let (stream, read) = match h1::serve(stream, peer, Arc::clone(&site), &mut stop).await {
        h1::End::Closed => return,
        h1::End::Http2(stream, read) => (stream, read),
    };
    let service = service_fn(move |req| {
        let site = Arc::clone(&site);
        async move { Ok::<_, Infallible>(handler::handle(site, peer, req).await) }
    });
    let io = TokioIo::new(rewind::Rewind::new(read.freeze(), stream));
    let conn = h2.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone, which only happens once the server is done.
    let _ = stop.wait_for(|s| *s).await;
}

/// A server running on its own thread and runtime; dropping it stops the server.
pub struct BackgroundServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BackgroundServer {
    /// Stop the server and wait for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start a server on a thread of its own, for synchronous callers (tests, tools). Returns
/// once the address is bound; the server stops when the handle is dropped.
pub fn spawn_background(cfg: ServeConfig) -> Result<(SocketAddr, BackgroundServer), ServeError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("trellis-serve".into())
        .spawn(move || {
            // Accepting only: the connections run on the server's worker threads.
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(ServeError::Runtime(e)));
                    return;
                }
            };
            rt.block_on(async move {
                match Server::bind(cfg).await {
                    Ok(server) => {
                        let _ = ready_tx.send(Ok(server.local_addr()));
                        server
                            .run_until(async {
                                let _ = stop_rx.await;
                            })
                            .await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .map_err(ServeError::Runtime)?;
    let mut handle = BackgroundServer {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv() {
        Ok(Ok(addr)) => Ok((addr, handle)),
        Ok(Err(e)) => {
            handle.shutdown();
            Err(e)
        }
        Err(_) => {
            handle.shutdown();
            Err(ServeError::ThreadGone)
        }
    }
}

/// Serve in the foreground until SIGINT or SIGTERM, for the command line. `ready` is
/// called with the bound address before the first request is accepted.
pub fn serve_until_signal(
    cfg: ServeConfig,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    // Accepting and signals only: the connections run on the server's worker threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Signal)?;
        let mut term = signal(SignalKind::terminate()).map_err(ServeError::Signal)?;
        let server = Server::bind(cfg).await?;
        ready(server.local_addr());
        server
            .run_until(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            })
            .await;
        Ok(())
    })
}
