//! `trellis build`: compose a manifest, then make a disk image of the result.

use super::compose::ComposeInput;
use super::image::{self, ImageFlags};
use crate::output::print_json;
use anyhow::Context;
use std::process::ExitCode;
use trellis_compose::Manifest;
use trellis_image::RemoteSpec;
use trellis_store::sign::PublicKey;
use trellis_store::{Repo, RepoMode};

/// Compose a manifest and make a bootable disk image of it, in one command (needs root).
///
/// Runs `trellis compose MANIFEST` (the repository is created, in archive mode, if it does
/// not exist), then `trellis image` of the manifest's ref. The image's remote defaults to
/// the manifest's [remote] (name, url, public-key); --remote-url and --remote-key override
/// it, and --no-remote makes an image that cannot upgrade. The stateroot defaults to the
/// manifest's os.name.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    input: ComposeInput,
    #[command(flatten)]
    image: ImageFlags,
}

fn manifest_remote(m: &Manifest) -> anyhow::Result<Option<RemoteSpec>> {
    let Some(r) = &m.remote else {
        return Ok(None);
    };
    let keys = match &r.public_key {
        Some(k) => vec![
            PublicKey::from_base64(k, "remote.public-key")
                .with_context(|| format!("{}: remote.public-key", m.path.display()))?,
        ],
        None => Vec::new(),
    };
    Ok(Some(RemoteSpec {
        name: r.name.clone(),
        url: r.url.clone(),
        keys,
    }))
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    // Everything that can be checked is, before a compose of minutes.
    let manifest = Manifest::load(&a.input.manifest)?;
    let remote = image::resolve_remote(&a.image, manifest_remote(&manifest)?)?;
    let opts = image::options(
        &a.image,
        &manifest.os.ref_name,
        remote,
        Some(&manifest.os.name),
    )?;
    trellis_image::build::check_prerequisites(&opts)?;
    if !a.input.repo.repo.join("config").exists() {
        Repo::init(&a.input.repo.repo, RepoMode::Archive)
            .with_context(|| format!("creating repository {}", a.input.repo.repo.display()))?;
        eprintln!(
            "build: created archive repository {}",
            a.input.repo.repo.display()
        );
    }
    let composed = super::compose::compose_manifest(&a.input)?;
    if !a.image.json {
        super::compose::print_text(&composed);
        println!();
    }
    let out = image::build(&a.input.repo, &opts)?;
    if a.image.json {
        print_json(&serde_json::json!({
            "compose": super::compose::to_json(&composed),
            "image": image::to_json(&out),
        }))?;
    } else {
        image::print_text(&out);
    }
    Ok(ExitCode::SUCCESS)
}
