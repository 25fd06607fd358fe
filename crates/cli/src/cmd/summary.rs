//! `trellis summary`: regenerate, show or verify the repository summary (as `ostree summary`).

use super::keys::{keys_that_verify, load_public_keys, report_verification};
use crate::RepoArg;
use crate::output::{print_json, value_to_json};
use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_store::format::{SUMMARY_COMMIT_TIMESTAMP, SUMMARY_LAST_MODIFIED, Summary};
use trellis_store::gvariant::Value;
use trellis_store::sign::{SecretKey, parse_vardict, signatures_in};

/// Keys whose `t` values ostree stores big-endian.
const BIG_ENDIAN_TIMES: [&str; 3] = [
    SUMMARY_COMMIT_TIMESTAMP,
    SUMMARY_LAST_MODIFIED,
    "ostree.summary.expires",
];

/// Regenerate, show or verify the repository summary (as `ostree summary`).
///
/// The summary lists every local ref with its commit, size, timestamp and version; pulling
/// clients read it instead of refs/heads, so it must be regenerated after refs change
/// (`trellis publish` does that by itself). A signed summary comes with summary.sig, an
/// `a{sv}` holding `ostree.sign.ed25519` signatures over the exact summary bytes.
#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("action")
        .required(true)
        .args(["update", "view", "verify"])
))]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Regenerate summary from the local refs. Without --sign-key, a stale summary.sig is
    /// removed so that it never vouches for another summary.
    #[arg(short = 'u', long)]
    update: bool,
    /// With -u: sign the new summary with this secret key (from `trellis keygen`) and write
    /// summary.sig.
    #[arg(long, value_name = "FILE", requires = "update")]
    sign_key: Option<PathBuf>,
    /// Print the refs and repository metadata of the existing summary file.
    #[arg(short = 'v', long)]
    view: bool,
    /// Check summary.sig against the existing summary; exits non-zero unless a signature
    /// verifies with a key in --keys-file.
    #[arg(long, requires = "keys_file")]
    verify: bool,
    /// With --verify: the trusted public keys, one base64 key per line.
    #[arg(long, value_name = "PUBFILE", requires = "verify")]
    keys_file: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let summary_path = repo.path().join("summary");
    let sig_path = repo.path().join("summary.sig");
    if a.update {
        // Load the key first: a bad key must not leave an unsigned summary behind.
        let key = a
            .sign_key
            .as_deref()
            .map(|p| {
                SecretKey::from_file(p)
                    .with_context(|| format!("loading secret key {}", p.display()))
            })
            .transpose()?;
        // Exclusive, as ostree: no ref moves while the summary is being built from them.
        let _lock = repo.lock_exclusive()?;
        let summary = repo
            .update_summary(key.as_ref())
            .with_context(|| format!("updating {}", summary_path.display()))?;
        if a.json {
            print_json(&summary_json(&summary, key.is_some().then_some(1)))?;
        } else {
            let signed = key
                .map(|k| format!(", signed with ed25519 key {}", k.public().to_base64()))
                .unwrap_or_default();
            println!(
                "updated {}: {} refs{signed}",
                summary_path.display(),
                summary.refs.len()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }

    let bytes = std::fs::read(&summary_path).with_context(|| {
        format!(
            "reading {} (create it with `trellis summary -u`)",
            summary_path.display()
        )
    })?;
    let sig_meta = match std::fs::read(&sig_path) {
        Ok(b) => {
            Some(parse_vardict(&b).with_context(|| format!("parsing {}", sig_path.display()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", sig_path.display())),
    };

    if let Some(keys_file) = &a.keys_file {
        let keys = load_public_keys(keys_file)?;
        let meta = sig_meta.unwrap_or_default();
        let good = keys_that_verify(&bytes, &meta, &keys);
        let what = format!("summary of {}", repo.path().display());
        return report_verification(&what, signatures_in(&meta).len(), &good, keys_file, a.json);
    }

    let summary =
        Summary::parse(&bytes).with_context(|| format!("parsing {}", summary_path.display()))?;
    let n_sigs = sig_meta.as_deref().map(|m| signatures_in(m).len());
    if a.json {
        print_json(&summary_json(&summary, n_sigs))?;
    } else {
        print_view(&summary, n_sigs);
    }
    Ok(ExitCode::SUCCESS)
}

/// A `t` value as seconds, undoing ostree's big-endian storage for the keys that use it.
fn time_value(key: &str, v: &Value) -> Option<u64> {
    match v {
        Value::U64(t) if BIG_ENDIAN_TIMES.contains(&key) => Some(t.swap_bytes()),
        _ => None,
    }
}

/// ISO 8601 in UTC, the form `ostree summary --view` prints.
fn iso_time(ts: u64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]+00");
    i64::try_from(ts)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ts}"))
}

fn meta_json(meta: &[(String, Value)]) -> serde_json::Map<String, serde_json::Value> {
    meta.iter()
        .map(|(k, v)| {
            let j = time_value(k, v).map_or_else(|| value_to_json(v), serde_json::Value::from);
            (k.clone(), j)
        })
        .collect()
}

fn summary_json(s: &Summary, signatures: Option<usize>) -> serde_json::Value {
    let refs: Vec<_> = s
        .refs
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.name,
                "commit": r.commit.to_hex(),
                "size": r.commit_size,
                "timestamp": r.timestamp(),
                "version": r.version(),
                "metadata": meta_json(&r.metadata),
            })
        })
        .collect();
    serde_json::json!({
        "refs": refs,
        "metadata": meta_json(&s.metadata),
        "signatures": signatures,
    })
}

/// Print a metadata entry with ostree's label for the keys it knows.
fn print_meta(indent: &str, key: &str, v: &Value) {
    let label = match key {
        "ostree.commit.version" => "Version",
        "ostree.commit.timestamp" => "Timestamp",
        "ostree.summary.mode" => "Repository Mode",
        "ostree.summary.last-modified" => "Last-Modified",
        "ostree.summary.tombstone-commits" => "Has Tombstone Commits",
        "ostree.summary.expires" => "Expires",
        "ostree.summary.collection-id" => "Collection ID",
        _ => "",
    };
    let shown = match (time_value(key, v), v) {
        (Some(t), _) => iso_time(t),
        (None, Value::Str(s)) => s.clone(),
        (None, Value::Bool(b)) if !label.is_empty() => if *b { "Yes" } else { "No" }.into(),
        (None, other) => other.to_string(),
    };
    if label.is_empty() {
        println!("{indent}{key}: {shown}");
    } else {
        println!("{indent}{label} ({key}): {shown}");
    }
}

fn print_view(s: &Summary, signatures: Option<usize>) {
    for r in &s.refs {
        println!("* {}", r.name);
        println!("    Latest Commit ({} bytes):", r.commit_size);
        println!("      {}", r.commit);
        for (k, v) in &r.metadata {
            print_meta("    ", k, v);
        }
        println!();
    }
    for (k, v) in &s.metadata {
        print_meta("", k, v);
    }
    match signatures {
        Some(n) => println!("Signatures (summary.sig): {n} ed25519"),
        None => println!("Signatures (summary.sig): none"),
    }
}
