//! `cargo xtask quickstart`: the README's main job on a fresh Debian 12 machine. Installs
//! the Debian packages that are missing, builds trellis, creates the repository if needed and
//! composes the example manifest into it.

use crate::{cargo, deps, run_status, show, target_dir, workspace_root};
use anyhow::{Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

#[derive(Args)]
pub struct QuickstartArgs {
    /// The manifest to compose.
    #[arg(long, default_value = "examples/minimal.toml")]
    manifest: PathBuf,
    /// The repository to compose into (created as an archive repository if missing).
    #[arg(long, default_value = "build/repo")]
    repo: PathBuf,
}

pub fn run(a: &QuickstartArgs) -> Result<ExitCode> {
    let root = workspace_root()?;
    deps::ensure_debian_packages(&root)?;
    let status =
        run_status(
            cargo()
                .current_dir(&root)
                .args(["build", "--release", "-p", "trellis-cli"]),
        )?;
    if !status.success() {
        bail!("building trellis failed ({status})");
    }
    let trellis = target_dir(&root).join("release/trellis");
    let repo = root.join(&a.repo);
    let manifest = root.join(&a.manifest);
    if !repo.join("objects").is_dir() {
        let mut init = Command::new(&trellis);
        init.arg("init")
            .arg("--repo")
            .arg(&repo)
            .args(["--mode", "archive"]);
        eprintln!("xtask: {}", show(&init));
        if !run_status(&mut init)?.success() {
            bail!("{} failed", show(&init));
        }
    }
    let mut compose = Command::new(&trellis);
    compose
        .arg("compose")
        .arg(&manifest)
        .arg("--repo")
        .arg(&repo);
    eprintln!("xtask: {}", show(&compose));
    let status = run_status(&mut compose)?;
    if !status.success() {
        bail!("{} failed ({status})", show(&compose));
    }
    eprintln!(
        "\nxtask: composed {} into {}.\n  history:   {} log --repo {} debian/bookworm/amd64\n  serve it:  {} serve --repo {}",
        a.manifest.display(),
        a.repo.display(),
        trellis.display(),
        repo.display(),
        trellis.display(),
        repo.display()
    );
    Ok(ExitCode::SUCCESS)
}
