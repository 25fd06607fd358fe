//! `cargo xtask quickstart`: the README's main job on a fresh Debian 12 machine. Installs
//! the Debian packages that are missing, builds trellis, and runs `trellis build` on the
//! example manifest: compose into build/repo, then a bootable disk image build/disk.qcow2.

use crate::{cargo, deps, run_status, show, target_dir, workspace_root};
use anyhow::{Context, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

#[derive(Args)]
pub struct QuickstartArgs {
    /// The manifest to build.
    #[arg(long, default_value = "examples/minimal.toml")]
    manifest: PathBuf,
    /// The repository to compose into (created as an archive repository if missing).
    #[arg(long, default_value = "build/repo")]
    repo: PathBuf,
    /// The disk image to write (qcow2).
    #[arg(long, default_value = "build/disk.qcow2")]
    image: PathBuf,
    /// The remote the image upgrades from. The default is `trellis serve` on this machine
    /// as a QEMU guest with user-mode networking sees it.
    #[arg(long, default_value = "http://10.0.2.2:8080")]
    remote_url: String,
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
    let image = root.join(&a.image);
    // `trellis image` writes into an existing directory; a fresh checkout has no build/.
    if let Some(dir) = image.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut build = Command::new(&trellis);
    build
        .arg("build")
        .arg(root.join(&a.manifest))
        .arg("--repo")
        .arg(&repo)
        .arg("-o")
        .arg(&image)
        .args(["--format", "qcow2", "--remote-url", &a.remote_url]);
    eprintln!("xtask: {}", show(&build));
    let status = run_status(&mut build)?;
    if !status.success() {
        bail!("{} failed ({status})", show(&build));
    }
    let t = trellis.display();
    eprintln!(
        "\nxtask: built {image} from {manifest} (history in {repo}).\n  \
         history:  {t} log --repo {repo} debian/bookworm/amd64\n  \
         serve it: {t} serve --repo {repo}   # the image's remote, {url}\n  \
         boot it:  cp /usr/share/OVMF/OVMF_VARS_4M.fd build/vars.fd; \
         qemu-system-x86_64 -m 1536 -machine q35 -nographic \
         -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
         -drive if=pflash,format=raw,file=build/vars.fd -drive if=virtio,file={image} \
         -nic user,model=virtio-net-pci",
        image = a.image.display(),
        manifest = a.manifest.display(),
        repo = a.repo.display(),
        url = a.remote_url,
    );
    Ok(ExitCode::SUCCESS)
}
