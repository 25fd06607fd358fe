use crate::RepoArg;
use crate::output::{parse_time, print_json};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use trellis_store::fsck::{FsckPhase, ProblemKind, fsck as run_fsck};
use trellis_store::prune::{PruneOptions, prune as run_prune};

/// Check every commit and every object reachable from it (as `ostree fsck`).
///
/// Each bad or missing object is reported with its type and checksum; the exit status is
/// non-zero if anything is wrong. Commits still being pulled (.commitpartial) are skipped.
#[derive(clap::Args)]
pub struct FsckArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn fsck(a: FsckArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("fsck {msg} [{bar:30}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let report = run_fsck(&repo, |p| {
        bar.set_message(match p.phase {
            FsckPhase::Refs => "refs",
            FsckPhase::Commits => "commits",
            FsckPhase::Metadata => "metadata",
            FsckPhase::Content => "content",
        });
        bar.set_length(p.total);
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    let report = report.with_context(|| format!("checking {}", a.repo.repo.display()))?;
    if a.json {
        print_json(&serde_json::json!({
            "clean": report.is_clean(),
            "refs": report.refs,
            "commits": report.commits,
            "partial_commits": report.partial_commits,
            "metadata_objects": report.metadata_objects,
            "content_objects": report.content_objects,
            "problems": report.problems.iter().map(|p| serde_json::json!({
                "type": p.ty.name(),
                "checksum": p.checksum.to_hex(),
                "problem": match p.kind { ProblemKind::Missing => "missing", ProblemKind::Corrupt => "corrupt" },
                "reason": p.reason,
            })).collect::<Vec<_>>(),
        }))?;
    } else {
        for p in &report.problems {
            let kind = match p.kind {
                ProblemKind::Missing => "missing",
                ProblemKind::Corrupt => "corrupt",
            };
            println!("{kind} {} {}: {}", p.ty, p.checksum, p.reason);
        }
        println!(
            "checked {} commits, {} metadata and {} content objects{}: {}",
            report.commits,
            report.metadata_objects,
            report.content_objects,
            if report.partial_commits > 0 {
                format!(" ({} partial commits skipped)", report.partial_commits)
            } else {
                String::new()
            },
            if report.is_clean() {
                "no errors".to_string()
            } else {
                format!("{} errors", report.problems.len())
            }
        );
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Delete objects no ref needs (as `ostree prune`).
#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Keep only DEPTH parents of each kept commit (-1, the default, keeps all history).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    depth: i64,
    /// Delete commits older than this (RFC 3339 or seconds since the epoch), except the
    /// commits refs point at. Implies --refs-only.
    #[arg(long, value_name = "TIME")]
    keep_younger_than: Option<String>,
    /// Keep only what refs reach: commits no ref leads to are deleted.
    #[arg(long)]
    refs_only: bool,
    /// Report what would be deleted without deleting anything.
    #[arg(long)]
    no_prune: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn prune(a: PruneArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let depth = match a.depth {
        d if d < 0 => None,
        d => Some(u32::try_from(d).context("--depth is too large")?),
    };
    let opts = PruneOptions {
        depth,
        keep_younger_than: a.keep_younger_than.as_deref().map(parse_time).transpose()?,
        refs_only: a.refs_only,
        dry_run: a.no_prune,
    };
    let r =
        run_prune(&repo, &opts).with_context(|| format!("pruning {}", a.repo.repo.display()))?;
    if a.json {
        print_json(&serde_json::json!({
            "objects_total": r.objects_total,
            "objects_pruned": r.objects_pruned,
            "commits_pruned": r.commits_pruned,
            "content_pruned": r.content_pruned,
            "bytes_freed": r.bytes_freed,
            "dry_run": r.dry_run,
        }))?;
    } else {
        println!("Total objects: {}", r.objects_total);
        if r.objects_pruned == 0 {
            println!("No unreachable objects");
        } else {
            println!(
                "{} {} objects ({} commits, {} content), {} bytes",
                if r.dry_run { "Would delete" } else { "Deleted" },
                r.objects_pruned,
                r.commits_pruned,
                r.content_pruned,
                r.bytes_freed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
