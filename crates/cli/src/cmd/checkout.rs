use crate::RepoArg;
use crate::output::print_json;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_store::checkout::{CheckoutOptions, checkout};

/// Check out a commit into a directory (as `ostree checkout`).
///
/// The result is the committed tree: contents, modes, owners, xattrs and symlinks (owners
/// and privileged xattrs need root). Files are hardlinked from bare repositories on the same
/// filesystem and copied otherwise. Nothing is ever written outside DEST, even when DEST
/// holds symlinks pointing elsewhere.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Ref or commit to check out.
    rev: String,
    /// Target directory; created if missing. Must be empty unless --union.
    dest: PathBuf,
    /// Check out only this path of the commit.
    #[arg(long, value_name = "PATH")]
    subpath: Option<String>,
    /// Overlay onto an existing directory, replacing files that are there.
    #[arg(long)]
    union: bool,
    /// Do not apply owners or privileged xattrs (as `ostree checkout -U`).
    #[arg(short = 'U', long)]
    user_mode: bool,
    /// Copy files even where hardlinks are possible.
    #[arg(long)]
    force_copy: bool,
    /// Print what was checked out as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let opts = CheckoutOptions {
        subpath: a.subpath.clone(),
        union: a.union,
        user_mode: a.user_mode,
        force_copy: a.force_copy,
    };
    let stats = checkout(&repo, &a.rev, &a.dest, &opts)
        .with_context(|| format!("checking out {} into {}", a.rev, a.dest.display()))?;
    if a.json {
        print_json(&serde_json::json!({
            "commit": stats.commit.map(|c| c.to_hex()),
            "dirs": stats.dirs,
            "files": stats.files,
            "symlinks": stats.symlinks,
            "hardlinked": stats.hardlinked,
            "bytes_copied": stats.bytes_copied,
        }))?;
    }
    Ok(ExitCode::SUCCESS)
}
