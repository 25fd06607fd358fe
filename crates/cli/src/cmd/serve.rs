use crate::RepoArg;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use trellis_transport::serve::{AccessRecord, ServeConfig, serve_until_signal};

/// Serve an archive repository read-only over HTTP, as a remote for `ostree pull` and
/// `trellis pull`.
///
/// Clients add it with `ostree remote add --no-gpg-verify NAME http://ADDR/`. Only what
/// clients fetch is served: config, summary, summary.sig, objects/, refs/, deltas/ and
/// delta-indexes/; never tmp/ or state/, and no directory listings. Paths that try to
/// leave the repository (`..`, encoded dots or slashes, symlinks pointing out) are
/// refused. Objects and deltas are sent with a one-year immutable Cache-Control; refs,
/// summary and config must be revalidated (ETag, Last-Modified). Range requests are
/// supported. HTTP/1.1 and HTTP/2 (h2c) share the port. Stop with Ctrl-C or SIGTERM.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Address and port to listen on. The default is reachable from this machine only;
    /// any other address exposes the repository to the network.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Also serve directory PATH under /NAME/ (repeatable), e.g. `--dir extensions=/srv/ext`.
    /// NAME must not be one the repository serves (objects, refs, summary, ...).
    #[arg(long = "dir", value_name = "NAME=PATH", value_parser = parse_dir)]
    dirs: Vec<(String, PathBuf)>,
    /// Log every request to stderr.
    #[arg(long, short)]
    verbose: bool,
}

fn parse_dir(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => {
            Ok((name.to_string(), PathBuf::from(path)))
        }
        _ => Err(format!("{s:?} is not NAME=PATH")),
    }
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = a.repo.repo;
    let mut cfg = ServeConfig::new(repo.clone());
    cfg.bind = a.bind;
    cfg.extra = a.dirs;
    if a.verbose {
        cfg.access_log = Some(Arc::new(log_request));
    }
    if !a.bind.ip().is_loopback() {
        eprintln!(
            "warning: {} is not a loopback address: the repository is reachable from the network",
            a.bind.ip()
        );
    }
    serve_until_signal(cfg, |addr| {
        eprintln!("serving {} at http://{addr}/", repo.display());
    })
    .with_context(|| format!("serving {}", repo.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn log_request(r: &AccessRecord) {
    let error = r
        .error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    eprintln!(
        "{} \"{} {} {:?}\" {} {}{error}",
        r.peer, r.method, r.path, r.version, r.status, r.bytes
    );
}
