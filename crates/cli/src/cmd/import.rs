//! `trellis import`: read a repository tar archive into a repository.

use crate::RepoArg;
use crate::output::print_json;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use trellis_store::commit::Progress;
use trellis_store::{Repo, RepoMode};
use trellis_transport::import::{ImportOptions, ImportReport, SummaryAction, import};

/// Import a repository tar archive (tar or tar.gz) into a repository.
///
/// Reads what `trellis export` writes, and also a plain tar of an ostree archive-mode
/// repository. The repository is created (in --mode, archive by default) when it does not
/// exist yet; an existing one of any mode receives the objects in its own format.
///
/// The archive is treated as hostile: nothing is extracted by path. Members with absolute
/// paths or `..`, links, devices, FIFOs or names outside a repository's layout are refused,
/// naming the member. Every object is verified (metadata hashed and parsed, content
/// inflated and hashed) before it is stored, and refs move last, only when the commits they
/// name are complete. The archive's config is checked (it must be an archive repository)
/// but not copied. An existing ref moves only forward (to a descendant) unless --force.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// The archive to read, or `-` for standard input.
    #[arg(value_name = "ARCHIVE")]
    archive: PathBuf,
    /// Mode of the repository if it has to be created: archive, bare, bare-user or
    /// bare-user-only.
    #[arg(long, default_value = "archive", value_parser = parse_mode)]
    mode: RepoMode,
    /// Move refs to the archive's commits even when they do not descend from the current
    /// ones.
    #[arg(long)]
    force: bool,
    /// Print what was imported as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<RepoMode, String> {
    RepoMode::parse(s).ok_or_else(|| {
        format!("unknown mode {s:?}; use archive, bare, bare-user or bare-user-only")
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let path = &a.repo.repo;
    let repo = if path.join("objects").is_dir() {
        super::open_repo(&a.repo)?
    } else {
        Repo::init(path, a.mode)
            .with_context(|| format!("creating repository {}", path.display()))?
    };
    let opts = ImportOptions { force: a.force };
    let bar = Spinner::new();
    let shown = a.archive.display().to_string();
    let report = if a.archive.as_os_str() == "-" {
        let stdin = std::io::stdin();
        import(&repo, &mut stdin.lock(), &opts, &bar)
    } else {
        let mut f = std::fs::File::open(&a.archive).with_context(|| format!("opening {shown}"))?;
        import(&repo, &mut f, &opts, &bar)
    };
    bar.finish();
    let report = report.with_context(|| format!("importing {shown} into {}", path.display()))?;
    if a.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Members and bytes read so far: a stream's length is unknown until its end.
struct Spinner {
    pb: ProgressBar,
    bytes: AtomicU64,
}

impl Spinner {
    fn new() -> Spinner {
        let pb = ProgressBar::new_spinner();
        pb.set_style(
            ProgressStyle::with_template("importing {spinner} {pos} members, {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        Spinner {
            pb,
            bytes: AtomicU64::new(0),
        }
    }

    fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl Progress for Spinner {
    fn advance(&self, files: u64, bytes: u64) {
        self.pb.inc(files);
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.pb.set_message(format!("{:.1} MB", total as f64 / 1e6));
    }
}

fn print_report(r: &ImportReport) {
    println!(
        "imported {} new objects ({} commits, {:.1} MB of content); {} already present",
        r.objects_new,
        r.commits_new,
        r.content_bytes as f64 / 1e6,
        r.objects_present
    );
    for u in &r.refs {
        match &u.old {
            Some(old) => println!("ref {}: {old} -> {}", u.name, u.new),
            None => println!("ref {}: {}", u.name, u.new),
        }
    }
    if r.refs_unchanged > 0 {
        println!("{} refs unchanged", r.refs_unchanged);
    }
    match r.summary {
        SummaryAction::Imported => println!("summary imported from the archive"),
        SummaryAction::Regenerated => println!("summary regenerated (unsigned)"),
        SummaryAction::None => {}
    }
}
