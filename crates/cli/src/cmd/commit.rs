use crate::RepoArg;
use crate::output::{parse_time, print_json};
use crate::progress::Bar;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_store::Checksum;
use trellis_store::commit::{self, CommitOptions, ParentChoice, Source};
use trellis_store::format::META_VERSION;
use trellis_store::gvariant::Value;
use trellis_store::sign::SecretKey;

/// Commit a directory tree or a tar archive to a branch (as `ostree commit`).
///
/// Prints the new commit's checksum. With the same tree, subject, body, timestamp and
/// metadata, the checksum equals the one `ostree commit -b` gives.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Branch (ref) to commit to; its current tip becomes the parent.
    #[arg(short = 'b', long = "branch", value_name = "REF")]
    branch: String,
    /// Directory to commit.
    #[arg(
        value_name = "DIR",
        required_unless_present = "tar",
        conflicts_with = "tar"
    )]
    dir: Option<PathBuf>,
    /// Commit the contents of a tar archive (plain, gzip, zstd or xz) without unpacking it.
    #[arg(long, value_name = "FILE")]
    tar: Option<PathBuf>,
    /// One-line subject.
    #[arg(short = 's', long, default_value = "")]
    subject: String,
    /// Longer description.
    #[arg(long, default_value = "")]
    body: String,
    /// Commit time, RFC 3339 (2024-05-01T12:00:00Z) or seconds since the epoch; default now.
    #[arg(long, value_name = "TIME")]
    timestamp: Option<String>,
    /// Add a string to the commit metadata; repeatable, kept in the given order.
    #[arg(long = "add-metadata", value_name = "KEY=VALUE")]
    add_metadata: Vec<String>,
    /// Version string, stored under the metadata key `version` that `ostree admin status`
    /// and summaries read.
    #[arg(long = "version", value_name = "VERSION")]
    version_string: Option<String>,
    /// Parent commit (default: the branch's current tip).
    #[arg(long, value_name = "COMMIT", conflicts_with = "orphan")]
    parent: Option<String>,
    /// Make a commit with no parent.
    #[arg(long)]
    orphan: bool,
    /// Make no new commit when the tree equals the parent's; print the parent instead.
    #[arg(long)]
    skip_if_unchanged: bool,
    /// Drop device nodes, sockets and FIFOs with a warning instead of failing.
    #[arg(long)]
    skip_special: bool,
    /// Do not record the branch in `ostree.ref-binding`.
    #[arg(long)]
    no_bindings: bool,
    /// Sign the commit with this ed25519 secret key (from `trellis keygen`): the signature
    /// goes to the detached metadata as `ostree.sign.ed25519`.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    /// Print a JSON summary instead of the checksum.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let mut metadata = Vec::new();
    for kv in &a.add_metadata {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--add-metadata {kv:?}: expected KEY=VALUE");
        };
        if k.is_empty() {
            bail!("--add-metadata {kv:?}: the key is empty");
        }
        metadata.push((k.to_string(), Value::str(v)));
    }
    if let Some(v) = &a.version_string {
        metadata.push((META_VERSION.to_string(), Value::str(v.clone())));
    }
    let parent = match (&a.parent, a.orphan) {
        (_, true) => ParentChoice::Orphan,
        (Some(p), _) => ParentChoice::Commit(
            repo.resolve_rev(p)
                .with_context(|| format!("resolving --parent {p}"))?,
        ),
        (None, false) => ParentChoice::BranchTip,
    };
    let opts = CommitOptions {
        branch: Some(a.branch.clone()),
        subject: a.subject.clone(),
        body: a.body.clone(),
        timestamp: a.timestamp.as_deref().map(parse_time).transpose()?,
        metadata,
        parent,
        skip_if_unchanged: a.skip_if_unchanged,
        skip_special: a.skip_special,
        no_bindings: a.no_bindings,
        sign_with: a
            .sign_key
            .as_deref()
            .map(|p| {
                SecretKey::from_file(p)
                    .with_context(|| format!("loading secret key {}", p.display()))
            })
            .transpose()?,
    };
    let (source, shown) = match (&a.dir, &a.tar) {
        (_, Some(t)) => (Source::Tar(t), t.display().to_string()),
        (Some(d), None) => (Source::Dir(d), d.display().to_string()),
        (None, None) => bail!("give a DIR to commit or --tar FILE"),
    };
    let bar = Bar::new("commit");
    let out = commit::commit(&repo, source, &opts, &bar);
    bar.finish();
    let out = out.with_context(|| format!("committing {shown} to {}", a.branch))?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    if a.json {
        print_json(&serde_json::json!({
            "ref": a.branch,
            "commit": out.commit.to_hex(),
            "parent": out.parent.as_ref().map(Checksum::to_hex),
            "unchanged": out.unchanged,
            "root_tree": out.root_tree.to_hex(),
            "root_meta": out.root_meta.to_hex(),
            "stats": out.stats,
            "warnings": out.warnings,
        }))?;
    } else {
        if out.unchanged {
            eprintln!("tree unchanged; no new commit");
        }
        println!("{}", out.commit);
    }
    Ok(ExitCode::SUCCESS)
}
