//! `cargo xtask bench pull`: `ostree pull` against `trellis pull`, both from the same local
//! servers in the same run: nginx (a temp config on a loopback port) and `trellis serve`.
//! Each pull goes into a fresh archive or bare-user repo whose remote says
//! gpg-verify=false; wall time and peak RSS of each client are measured, and the ratios
//! printed, including `ostree pull` from nginx against `ostree pull` from `trellis serve`.

use super::{
    Mode, Prefault, Tool, cargo, commit_ready_tree, debian_fixture, measure, median, mib, run_ok,
    run_status, show, target_dir, walk, workspace_root,
};
use anyhow::{Context, Result, bail, ensure};
use clap::{Args, ValueEnum};
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BENCH_REF: &str = "main";

#[derive(Args)]
pub(crate) struct PullBench {
    /// Tree to commit into the served repo [default: the Debian minbase fixture]. Device
    /// nodes, FIFOs and sockets are left out.
    #[arg(long, value_name = "DIR")]
    tree: Option<PathBuf>,
    /// Timed pulls of each (mode, server, client), each into a fresh repo; medians are
    /// reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Repo modes to pull into.
    #[arg(long, value_delimiter = ',', default_values = ["archive", "bare-user"])]
    modes: Vec<Mode>,
    /// Servers to pull from.
    #[arg(long, value_delimiter = ',', default_values = ["nginx", "serve"])]
    servers: Vec<ServerKind>,
    /// `trellis pull --concurrency` [default: trellis's own default].
    #[arg(long, value_name = "N")]
    concurrency: Option<u16>,
    /// Where the served repo and the pulled repos go [default: $TMPDIR or /tmp].
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Use this trellis binary instead of building `trellis-cli` in release mode.
    #[arg(long, value_name = "PATH")]
    trellis: Option<PathBuf>,
    #[command(flatten)]
    prefault: Prefault,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    Nginx,
    Serve,
}

impl fmt::Display for ServerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            ServerKind::Nginx => "nginx",
            ServerKind::Serve => "serve",
        })
    }
}

/// A server on a loopback port; stopped (SIGTERM, then SIGKILL) when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    Ok(l.local_addr()?.port())
}

fn wait_for_port(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// nginx serving `root` with Debian's default tuning (worker_processes auto, sendfile,
/// tcp_nopush), its config, pid, logs and temp paths under `dir`.
fn start_nginx(root: &Path, dir: &Path) -> Result<Server> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let d = dir.display();
    for _ in 0..5 {
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        let text = format!(
            "worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
               keepalive_requests 100000;\n  default_type application/octet-stream;\n\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }}\n}}\n",
            root = root.display()
        );
        fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("the benchmark needs nginx: apt-get install nginx-light")?;
        if wait_for_port(&mut child, port) {
            return Ok(Server {
                child,
                url: format!("http://127.0.0.1:{port}/"),
            });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    bail!(
        "nginx did not start: {}",
        fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    )
}

/// `trellis serve` on a port the kernel picks; the address is read from its stderr.
fn start_serve(trellis: &Path, repo: &Path) -> Result<Server> {
    let mut child = Command::new(trellis)
        .arg("serve")
        .arg("--repo")
        .arg(repo)
        .args(["--bind", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} serve", trellis.display()))?;
    let stderr = child.stderr.take().context("serve's stderr is not piped")?;
    let mut lines = BufReader::new(stderr).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.context("reading serve's stderr")?;
        if let Some(u) = line
            .rsplit(" at ")
            .next()
            .filter(|u| u.starts_with("http://"))
        {
            url = Some(u.trim().to_string());
            break;
        }
    }
    // Keep draining, so that the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    match url {
        Some(url) => Ok(Server { child, url }),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            bail!("trellis serve printed no address")
        }
    }
}

fn trellis_binary(root: &Path, given: Option<&PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.clone(),
        None => {
            eprintln!("xtask: building trellis (release)");
            let mut build = cargo();
            build
                .current_dir(root)
                .args(["build", "--release", "-p", "trellis-cli"]);
            let status = run_status(&mut build)?;
            ensure!(status.success(), "{} failed ({status})", show(&build));
            target_dir(root).join("release").join("trellis")
        }
    };
    ensure!(path.is_file(), "no trellis binary at {}", path.display());
    Ok(path)
}

fn ostree_version() -> Result<String> {
    let out = run_ok(Command::new("ostree").arg("--version"))
        .context("the benchmark needs the ostree CLI: apt-get install ostree")?;
    Ok(out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version: "))
        .unwrap_or("?")
        .trim_matches('\'')
        .to_string())
}

/// Files under `dir/objects` (the object count of a repo).
fn object_count(repo: &Path) -> Result<u64> {
    let mut n = 0u64;
    walk(&repo.join("objects"), &mut |_, m| {
        n += u64::from(m.is_file());
        Ok(())
    })?;
    Ok(n)
}

/// A fresh repo of `mode` with remote `origin` at `url` and gpg-verify=false.
fn prepare_client(tool: Tool, trellis: &Path, mode: Mode, repo: &Path, url: &str) -> Result<()> {
    match tool {
        Tool::Ostree => {
            let r = format!("--repo={}", repo.display());
            run_ok(Command::new("ostree").args(["init", &r, &format!("--mode={mode}")]))?;
            run_ok(Command::new("ostree").args([
                "remote",
                "add",
                &r,
                "--no-gpg-verify",
                "origin",
                url,
            ]))?;
        }
        Tool::Trellis => {
            run_ok(
                Command::new(trellis)
                    .arg("init")
                    .arg("--repo")
                    .arg(repo)
                    .args(["--mode", &mode.to_string()]),
            )?;
            // `trellis remote add` writes gpg-verify=false itself.
            run_ok(
                Command::new(trellis)
                    .args(["remote", "add", "--repo"])
                    .arg(repo)
                    .args(["origin", url]),
            )?;
        }
    }
    Ok(())
}

fn pull_cmd(tool: Tool, trellis: &Path, repo: &Path, concurrency: Option<u16>) -> Command {
    match tool {
        Tool::Ostree => {
            let mut c = Command::new("ostree");
            c.arg("pull")
                .arg(format!("--repo={}", repo.display()))
                .args(["origin", BENCH_REF]);
            c
        }
        Tool::Trellis => {
            let mut c = Command::new(trellis);
            c.args(["pull", "--repo"])
                .arg(repo)
                .args(["origin", BENCH_REF]);
            if let Some(n) = concurrency {
                c.args(["--concurrency", &n.to_string()]);
            }
            c
        }
    }
}

struct Series {
    mode: Mode,
    server: ServerKind,
    tool: Tool,
    walls: Vec<Duration>,
    rss: Vec<u64>,
}

impl Series {
    fn wall(&self) -> f64 {
        median(&self.walls).as_secs_f64()
    }
    fn min_wall(&self) -> f64 {
        self.walls
            .iter()
            .min()
            .copied()
            .unwrap_or_default()
            .as_secs_f64()
    }
    fn rss_mib(&self) -> f64 {
        median(&self.rss) as f64 / 1024.0
    }
}

pub(crate) fn run(a: &PullBench) -> Result<()> {
    let root = workspace_root()?;
    let ostree_version = ostree_version()?;
    let trellis = trellis_binary(&root, a.trellis.as_ref())?;
    let workdir = a.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("trellis-bench-pull-")
        .tempdir_in(&workdir)
        .with_context(|| format!("cannot make a directory in {}", workdir.display()))?;
    // nginx's workers run as an unprivileged user: they must be able to reach the repo.
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", work.path().display()))?;
    let source = match &a.tree {
        Some(t) => t.clone(),
        None => debian_fixture(&root)?,
    };
    let tree = commit_ready_tree(&source, work.path())?;

    // The served repo: written by ostree, with a summary, as a real remote would be.
    let src = work.path().join("served");
    let src_flag = format!("--repo={}", src.display());
    run_ok(Command::new("ostree").args(["init", &src_flag, "--mode=archive"]))?;
    let t = Instant::now();
    let commit = run_ok(Command::new("ostree").args([
        "commit",
        &src_flag,
        "-b",
        BENCH_REF,
        "-s",
        "bench",
        &format!("--tree=dir={}", tree.display()),
    ]))?
    .trim()
    .to_string();
    run_ok(Command::new("ostree").args(["summary", "-u", &src_flag]))?;
    let objects = object_count(&src)?;
    let mut served_bytes = 0u64;
    walk(&src.join("objects"), &mut |_, m| {
        served_bytes += if m.is_file() { m.len() } else { 0 };
        Ok(())
    })?;
    eprintln!(
        "xtask: served repo: commit {commit}, {objects} objects, {:.1} MiB (made in {:.1} s)",
        mib(served_bytes),
        t.elapsed().as_secs_f64()
    );

    let mut servers = Vec::new();
    for &kind in &a.servers {
        let s = match kind {
            ServerKind::Nginx => start_nginx(&src, &work.path().join("nginx"))?,
            ServerKind::Serve => start_serve(&trellis, &src)?,
        };
        eprintln!("xtask: {kind} at {}", s.url);
        servers.push((kind, s));
    }

    let mut series: Vec<Series> = Vec::new();
    for &mode in &a.modes {
        for (kind, _) in &servers {
            for tool in [Tool::Ostree, Tool::Trellis] {
                series.push(Series {
                    mode,
                    server: *kind,
                    tool,
                    walls: Vec::new(),
                    rss: Vec::new(),
                });
            }
        }
    }
    // Pulled repos stay until the end: on ext4 without a journal, creating files soon after
    // deleting many costs extra inode scans, which would bill one run for the last one's
    // clean-up.
    let clients = work.path().join("clients");
    fs::create_dir_all(&clients)?;
    for run in 1..=a.runs {
        for &mode in &a.modes {
            for (kind, server) in &servers {
                // Alternate which client goes first, so that neither always meets a warmer
                // cache.
                let order = if run % 2 == 1 {
                    [Tool::Ostree, Tool::Trellis]
                } else {
                    [Tool::Trellis, Tool::Ostree]
                };
                for tool in order {
                    let repo = clients.join(format!("{tool}-{mode}-{kind}-{run}"));
                    prepare_client(tool, &trellis, mode, &repo, &server.url)?;
                    eprintln!(
                        "xtask: [{mode} run {run}/{}] {tool} pull from {kind}",
                        a.runs
                    );
                    a.prefault.run()?;
                    let sample = measure(&mut pull_cmd(tool, &trellis, &repo, a.concurrency))?;
                    let got = fs::read_to_string(repo.join("refs/remotes/origin").join(BENCH_REF))
                        .unwrap_or_default();
                    ensure!(
                        got.trim() == commit,
                        "{tool} pull into {} left origin:{BENCH_REF} at {:?}, not {commit}",
                        repo.display(),
                        got.trim()
                    );
                    let n = object_count(&repo)?;
                    ensure!(
                        n == objects,
                        "{tool} pull into {} stored {n} objects, the server has {objects}",
                        repo.display()
                    );
                    let s = series
                        .iter_mut()
                        .find(|s| s.mode == mode && s.server == *kind && s.tool == tool)
                        .context("internal: no series")?;
                    s.walls.push(sample.wall);
                    s.rss.push(sample.max_rss_kib);
                }
            }
        }
    }
    drop(servers);

    print_report(a, &tree, objects, served_bytes, &ostree_version, &series);
    let t = Instant::now();
    fs::remove_dir_all(&clients).with_context(|| format!("removing {}", clients.display()))?;
    eprintln!(
        "xtask: removed the pulled repos in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_report(
    a: &PullBench,
    tree: &Path,
    objects: u64,
    bytes: u64,
    ostree_version: &str,
    series: &[Series],
) {
    println!();
    println!(
        "pull benchmark: {} ({objects} objects, {:.1} MiB served), ostree {ostree_version}, \
         {} run(s) each, median [min]",
        tree.display(),
        mib(bytes),
        a.runs
    );
    println!("{}", a.prefault.describe());
    println!(
        "{:<10} {:<7} {:<8} {:>16} {:>13} {:>9}",
        "mode", "server", "client", "wall time s", "peak RSS MiB", "MB/s"
    );
    for s in series {
        println!(
            "{:<10} {:<7} {:<8} {:>16} {:>13.1} {:>9.1}",
            s.mode,
            s.server,
            s.tool,
            format!("{:.2} [{:.2}]", s.wall(), s.min_wall()),
            s.rss_mib(),
            bytes as f64 / 1e6 / s.wall().max(1e-9)
        );
    }
    let find = |mode: Mode, server: ServerKind, tool: Tool| {
        series
            .iter()
            .find(|s| s.mode == mode && s.server == server && s.tool == tool)
    };

    println!();
    println!(
        "ratios ostree/trellis, same server (above 1: trellis is faster / uses less memory); \
         time of the medians, and of the fastest runs (less sensitive to other load)"
    );
    println!(
        "{:<10} {:<7} {:>8} {:>8} {:>9}   target (medians)",
        "mode", "server", "time", "best", "peak RSS"
    );
    for &mode in &a.modes {
        for &server in &a.servers {
            let (Some(o), Some(t)) = (
                find(mode, server, Tool::Ostree),
                find(mode, server, Tool::Trellis),
            ) else {
                continue;
            };
            let time = o.wall() / t.wall().max(1e-9);
            let best = o.min_wall() / t.min_wall().max(1e-9);
            let rss = o.rss_mib() / t.rss_mib().max(1e-9);
            let goal = match mode {
                Mode::Archive => 4.0,
                Mode::BareUser => 2.5,
            };
            let verdict = if time >= goal { "met" } else { "NOT met" };
            println!(
                "{:<10} {:<7} {:>7.2}x {:>7.2}x {:>8.2}x   >= {goal}x: {verdict}",
                mode, server, time, best, rss
            );
        }
    }

    if a.servers.contains(&ServerKind::Nginx) && a.servers.contains(&ServerKind::Serve) {
        println!();
        println!("ratios nginx/serve, same client (above 1: trellis serve is faster)");
        println!(
            "(paired: the median of each run's ratio, from pulls made one after the other, \
             and its range; less sensitive to drift over the benchmark)"
        );
        println!(
            "{:<10} {:<8} {:>8} {:>8} {:>8} {:>15}   target (paired)",
            "mode", "client", "time", "best", "paired", "range"
        );
        for &mode in &a.modes {
            for tool in [Tool::Ostree, Tool::Trellis] {
                let (Some(n), Some(s)) = (
                    find(mode, ServerKind::Nginx, tool),
                    find(mode, ServerKind::Serve, tool),
                ) else {
                    continue;
                };
                let ratio = n.wall() / s.wall().max(1e-9);
                let best = n.min_wall() / s.min_wall().max(1e-9);
                let mut pairs: Vec<f64> = n
                    .walls
                    .iter()
                    .zip(&s.walls)
                    .map(|(n, s)| n.as_secs_f64() / s.as_secs_f64().max(1e-9))
                    .collect();
                pairs.sort_by(f64::total_cmp);
                let paired = pairs.get(pairs.len() / 2).copied().unwrap_or(0.0);
                let range = format!(
                    "{:.2}-{:.2}x",
                    pairs.first().copied().unwrap_or(0.0),
                    pairs.last().copied().unwrap_or(0.0)
                );
                let target = match tool {
                    Tool::Ostree if paired >= 1.0 => "  >= 1x (no slower): met",
                    Tool::Ostree => "  >= 1x (no slower): NOT met",
                    Tool::Trellis => "",
                };
                println!(
                    "{:<10} {:<8} {:>7.2}x {:>7.2}x {:>7.2}x {:>15}{target}",
                    mode, tool, ratio, best, paired, range
                );
            }
        }
    }
}
