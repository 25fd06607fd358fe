use crate::RepoArg;
use crate::output::print_json;
use crate::progress::Bar;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use trellis_compose::compose::{ComposeOptions, ComposeOutcome, ComposeProgress, Phase};
use trellis_compose::{Manifest, rootfs};
use trellis_store::Checksum;

/// Build a bootable Debian tree from a manifest and commit it (needs root).
///
/// The phases: find the parent (the ref's tip in the repository; without one, and with a
/// `[remote]` in the manifest, only the tip commit object is fetched from the remote);
/// bootstrap with mmdebstrap; customize inside the tree (host name, overlay, user, this
/// trellis binary as /usr/bin/trellis, hooks, units); make the initramfs, which runs
/// `trellis prepare-root`, and put kernel and initramfs in /usr/lib/modules/KVER/; convert
/// the tree (/etc to /usr/etc, state under /var, /var as tmpfiles.d entries, the dpkg
/// database under /usr); commit with the version, the manifest's digest and the package
/// list. An unchanged tree makes no new commit. Downloaded packages are cached between
/// runs (--cache). The manifest format is described in docs/manifest.md.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: ComposeInput,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// What a compose takes (`trellis compose` and `trellis build`).
#[derive(clap::Args)]
pub struct ComposeInput {
    /// The manifest (TOML).
    #[arg(value_name = "MANIFEST")]
    pub manifest: PathBuf,
    #[command(flatten)]
    pub repo: RepoArg,
    /// Keep the converted tree in DIR (which must not exist, or be empty) for inspection.
    #[arg(long, value_name = "DIR")]
    pub keep_rootfs: Option<PathBuf>,
    /// Where downloaded .deb files are kept between runs [default:
    /// /var/cache/trellis/debs for root, else $XDG_CACHE_HOME/trellis/debs].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Show the output of mmdebstrap and of each step.
    #[arg(long, short)]
    pub verbose: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let out = compose_manifest(&a.input)?;
    if a.json {
        print_json(&to_json(&out))?;
    } else {
        print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `trellis compose` does before printing (`trellis build` runs it too).
pub(crate) fn compose_manifest(input: &ComposeInput) -> anyhow::Result<ComposeOutcome> {
    let ComposeInput {
        manifest: manifest_path,
        repo: repo_arg,
        keep_rootfs,
        cache,
        verbose,
    } = input;
    let manifest = Manifest::load(manifest_path)?;
    let mut repo = super::open_repo(repo_arg)?;
    let opts = ComposeOptions {
        cache_dir: cache.clone().unwrap_or_else(rootfs::default_cache_dir),
        keep_rootfs: keep_rootfs.clone(),
        trellis_binary: std::env::current_exe()
            .context("finding the trellis binary to install into the tree")?,
        timestamp: None,
    };
    let progress = Progress {
        verbose: *verbose,
        bar: Bar::new("commit"),
        current: Mutex::new(None),
    };
    let out = trellis_compose::compose(&mut repo, &manifest, &opts, &progress);
    progress.end_phase();
    progress.bar.finish();
    out.with_context(|| {
        format!(
            "composing {} into {}",
            manifest_path.display(),
            repo_arg.repo.display()
        )
    })
}

struct Progress {
    verbose: bool,
    bar: Bar,
    current: Mutex<Option<(Phase, Instant)>>,
}

impl Progress {
    fn end_phase(&self) {
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        if let Some((p, started)) = cur.take() {
            eprintln!(
                "compose: {} done in {:.1} s",
                p.name(),
                started.elapsed().as_secs_f64()
            );
        }
    }
}

impl ComposeProgress for Progress {
    fn phase(&self, phase: Phase) {
        self.end_phase();
        eprintln!("compose: {}...", phase.name());
        if let Ok(mut cur) = self.current.lock() {
            *cur = Some((phase, Instant::now()));
        }
    }

    fn log(&self, line: &str) {
        if self.verbose {
            eprintln!("  {line}");
        }
    }

    fn commit_progress(&self) -> &dyn trellis_store::commit::Progress {
        &self.bar
    }
}

fn hex(c: &Option<Checksum>) -> Option<String> {
    c.as_ref().map(Checksum::to_hex)
}

pub(crate) fn to_json(o: &ComposeOutcome) -> serde_json::Value {
    serde_json::json!({
        "ref": o.ref_name,
        "commit": o.commit.to_hex(),
        "parent": hex(&o.parent),
        "parent_from_remote": o.parent_from_remote,
        "parent_requests": o.parent_requests,
        "version": o.version,
        "unchanged": o.unchanged,
        "files": o.stats.files,
        "size": o.stats.bytes,
        "new_objects": o.stats.new_objects,
        "stats": o.stats,
        "packages": o.packages,
        "kernel": o.kernel,
        "manifest_sha256": o.manifest_sha256,
        "convert": o.convert,
        "rootfs": o.rootfs,
        "timings": o.timings,
    })
}

pub(crate) fn print_text(o: &ComposeOutcome) {
    let parent = match (&o.parent, &o.parent_from_remote) {
        (Some(p), Some(r)) => format!("{p} (tip of remote {r})"),
        (Some(p), None) => p.to_hex(),
        (None, _) => "none".to_string(),
    };
    println!("ref:         {}", o.ref_name);
    println!("commit:      {}", o.commit);
    println!("parent:      {parent}");
    println!("version:     {}", o.version.as_deref().unwrap_or("-"));
    if o.unchanged {
        println!("unchanged:   yes, the tree equals the parent's: no new commit");
    }
    println!("files:       {}", o.stats.files);
    println!("size:        {:.1} MB", o.stats.bytes as f64 / 1e6);
    println!("new objects: {}", o.stats.new_objects);
    println!("packages:    {} (kernel {})", o.packages, o.kernel);
    if let Some(r) = &o.rootfs {
        println!("rootfs:      {}", r.display());
    }
    let t = &o.timings;
    println!(
        "time:        {:.1} s (bootstrap {:.1}, customize {:.1}, initramfs {:.1}, convert {:.1}, \
         commit {:.1})",
        t.total, t.bootstrap, t.customize, t.initramfs, t.convert, t.commit
    );
}
