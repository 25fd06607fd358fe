use crate::RepoArg;
use anyhow::Context;
use std::process::ExitCode;
use trellis_store::{Repo, RepoMode};

/// Create a repository (as `ostree init`).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Storage mode: archive (for serving over HTTP), bare (deployments, needs root) or
    /// bare-user (unprivileged). `archive-z2` is accepted as an alias of archive.
    #[arg(long, default_value = "bare", value_parser = parse_mode)]
    mode: RepoMode,
}

fn parse_mode(s: &str) -> Result<RepoMode, String> {
    RepoMode::parse(s).ok_or_else(|| {
        format!("unknown mode {s:?}; use archive, bare, bare-user or bare-user-only")
    })
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    Repo::init(&a.repo.repo, a.mode)
        .with_context(|| format!("initializing repository {}", a.repo.repo.display()))?;
    Ok(ExitCode::SUCCESS)
}
