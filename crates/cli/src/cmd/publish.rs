//! `trellis publish`: upload an archive repository to a web root or object storage.

use crate::RepoArg;
use crate::output::print_json;
use crate::progress::Bar;
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_store::sign::SecretKey;
use trellis_transport::publish::{
    DestSpec, Destination, PublishOptions, PublishReport, publish_blocking,
};

/// Publish an archive repository to a directory or to S3, uploading only what is new.
///
/// DEST is a directory (created if missing; serve it with any static web server or
/// `trellis serve`) or s3://BUCKET/PREFIX. S3 is configured by the usual environment:
/// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, and
/// AWS_ENDPOINT_URL for S3-compatible servers (http:// endpoints are allowed).
///
/// Objects the destination lacks go first, then every published commit's .commitmeta
/// (signatures may have changed) and the new commits, then config (if missing), the refs
/// that changed, and last the summary and its signature, regenerated on every publish
/// (locally too). Each file lands atomically, so a client pulling during a publish always
/// sees a consistent repository; an interrupted publish is finished by running it again.
///
/// With --ref, other refs already on the destination are kept and still listed in the
/// published summary. Refs are never deleted from the destination.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Destination: a directory, file:///PATH, or s3://BUCKET/PREFIX.
    #[arg(value_name = "DEST")]
    dest: String,
    /// Publish only this local ref; repeatable. Default: every local ref.
    #[arg(long = "ref", value_name = "REF")]
    refs: Vec<String>,
    /// Parents to publish for each ref: 0 for the ref's commit alone, -1 for all history.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true, value_name = "N")]
    depth: i64,
    /// Sign the summary with this ed25519 secret key (from `trellis keygen`).
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Allow replacing a signed summary on the destination with an unsigned one (its
    /// summary.sig is deleted). Without it, publishing unsigned over a signed summary fails.
    #[arg(long, conflicts_with = "sign_key")]
    unsigned: bool,
    /// Concurrent uploads.
    #[arg(long, default_value_t = 8, value_name = "N")]
    jobs: usize,
    /// Print what was uploaded as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let sign_key = a
        .sign_key
        .as_deref()
        .map(|p| {
            SecretKey::from_file(p).with_context(|| format!("loading secret key {}", p.display()))
        })
        .transpose()?;
    let spec = DestSpec::parse(&a.dest)?;
    let dest = Destination::open(&spec).with_context(|| format!("opening {}", a.dest))?;
    let opts = PublishOptions {
        refs: a.refs.clone(),
        depth: super::export::parse_depth(a.depth)?,
        sign_key,
        unsigned: a.unsigned,
        jobs: a.jobs.max(1),
    };
    let bar = Bar::new("publishing");
    let report = publish_blocking(&repo, &dest, &opts, &bar);
    bar.finish();
    let report = report
        .with_context(|| format!("publishing {} to {}", repo.path().display(), dest.name()))?;
    if a.json {
        print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &PublishReport) {
    println!(
        "uploaded {} objects ({} commits) and {} commitmeta, {:.1} MB; {} objects already there",
        r.objects_uploaded,
        r.commits_uploaded,
        r.commitmeta_uploaded,
        r.bytes_uploaded as f64 / 1e6,
        r.objects_skipped
    );
    if r.config_uploaded {
        println!("config uploaded");
    }
    for c in &r.refs_updated {
        match &c.old {
            Some(old) => println!("ref {}: {old} -> {}", c.name, c.new),
            None => println!("ref {}: {}", c.name, c.new),
        }
    }
    let signed = if r.summary_signed { ", signed" } else { "" };
    println!(
        "summary: {} refs{signed}{}",
        r.summary_refs,
        if r.summary_signature_removed {
            " (stale summary.sig removed)"
        } else {
            ""
        }
    );
}
