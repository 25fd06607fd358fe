//! `trellis remote`: remotes as `[remote "NAME"]` groups in the repository config, written
//! and read the way `ostree remote` does.

use crate::RepoArg;
use crate::output::print_json;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::ExitCode;
use trellis_store::remote::validate_remote_name;
use trellis_store::sign::PublicKey;

/// Manage remotes: `[remote "NAME"]` groups in the repository config (as `ostree remote`).
///
/// The config is shared with ostree: `ostree remote list` sees what `trellis remote add`
/// wrote, and the other way round.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: RemoteCmd,
}

#[derive(clap::Subcommand)]
enum RemoteCmd {
    Add(AddArgs),
    List(ListArgs),
    Delete(DeleteArgs),
    ShowUrl(ShowUrlArgs),
}

/// Add a remote.
///
/// Writes `url`, then the --set options, then `gpg-verify=false` (trellis does not check GPG
/// signatures; ostree's default, true, would make every pull fail without a keyring) unless
/// --set gives gpg-verify. With a verification key it also writes
/// `verification-ed25519-key=` or `verification-ed25519-file=` and `sign-verify=ed25519`,
/// as `ostree remote add --sign-verify=ed25519=inline:KEY` does, so that pulls require an
/// ed25519 signature by that key.
#[derive(clap::Args)]
struct AddArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Do nothing if a remote with this name exists.
    #[arg(long)]
    if_not_exists: bool,
    /// Trusted ed25519 public key, base64 (as printed by `trellis keygen`).
    #[arg(long, value_name = "BASE64")]
    sign_verify_key: Option<String>,
    /// File of trusted ed25519 public keys, one base64 key per line (e.g. a keygen FILE.pub);
    /// stored as an absolute path.
    #[arg(long, value_name = "PATH")]
    sign_verify_file: Option<PathBuf>,
    /// Set a config option of the remote (e.g. contenturl=URL, branches=a;b); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Name of the remote: letters, digits, '_', '-' and '.'.
    #[arg(value_name = "NAME")]
    name: String,
    /// Where the repository is served: http://, https:// or file:///absolute/path.
    #[arg(value_name = "URL")]
    url: String,
}

/// List the configured remotes.
#[derive(clap::Args)]
struct ListArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Print each remote's URL after its name.
    #[arg(short = 'u', long)]
    show_urls: bool,
    /// Print names, URLs and all options as JSON.
    #[arg(long)]
    json: bool,
}

/// Delete a remote (its config group; refs already pulled from it stay).
#[derive(clap::Args)]
struct DeleteArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Succeed when no such remote exists.
    #[arg(long)]
    if_exists: bool,
    #[arg(value_name = "NAME")]
    name: String,
}

/// Print the URL of a remote.
#[derive(clap::Args)]
struct ShowUrlArgs {
    #[command(flatten)]
    repo: RepoArg,
    #[arg(value_name = "NAME")]
    name: String,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    match a.cmd {
        RemoteCmd::Add(a) => add(a),
        RemoteCmd::List(a) => list(a),
        RemoteCmd::Delete(a) => delete(a),
        RemoteCmd::ShowUrl(a) => show_url(a),
    }
}

/// Only URLs a pull can use: http(s) with a host, or file with an absolute path.
pub(crate) fn validate_url(s: &str) -> anyhow::Result<()> {
    let u = url::Url::parse(s).with_context(|| {
        format!("invalid remote URL {s:?}: expected http://HOST/…, https://HOST/… or file:///PATH")
    })?;
    match u.scheme() {
        "http" | "https" if u.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        "http" | "https" => bail!("invalid remote URL {s:?}: no host"),
        "file" if u.host_str().is_none_or(str::is_empty) && u.path().starts_with('/') => Ok(()),
        "file" => bail!("invalid remote URL {s:?}: use file:///absolute/path"),
        other => bail!(
            "invalid remote URL {s:?}: scheme {other:?} is not supported (use http, https or file)"
        ),
    }
}

/// A `--set KEY=VALUE`, checked so that it cannot break the key file.
fn parse_set(kv: &str) -> anyhow::Result<(String, String)> {
    let Some((k, v)) = kv.split_once('=') else {
        bail!("--set {kv:?}: expected KEY=VALUE");
    };
    if k.is_empty() || k.trim() != k || k.contains(['[', ']', '\n', '\r']) {
        bail!("--set {kv:?}: {k:?} is not a valid config key");
    }
    if v.contains(['\n', '\r']) {
        bail!("--set {kv:?}: the value may not contain a line break");
    }
    if k == "url" {
        bail!("--set url=…: give the URL as the second argument");
    }
    Ok((k.to_string(), v.to_string()))
}

fn add(a: AddArgs) -> anyhow::Result<ExitCode> {
    validate_remote_name(&a.name)?;
    validate_url(&a.url)?;
    let mut options = a
        .set
        .iter()
        .map(|kv| parse_set(kv))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let has = |opts: &[(String, String)], key: &str| opts.iter().any(|(k, _)| k == key);
    if !has(&options, "gpg-verify") {
        options.push(("gpg-verify".into(), "false".into()));
    }
    if let Some(k) = &a.sign_verify_key {
        let key = PublicKey::from_base64(k, "--sign-verify-key")?;
        options.push(("verification-ed25519-key".into(), key.to_base64()));
    }
    if let Some(p) = &a.sign_verify_file {
        // Check it now: a bad key file would otherwise only show up at the first pull.
        super::keys::load_public_keys(p)?;
        let abs =
            std::path::absolute(p).with_context(|| format!("making {} absolute", p.display()))?;
        let Some(s) = abs.to_str() else {
            bail!(
                "--sign-verify-file {}: the path is not UTF-8",
                abs.display()
            );
        };
        options.push(("verification-ed25519-file".into(), s.to_string()));
    }
    let keyed = a.sign_verify_key.is_some() || a.sign_verify_file.is_some();
    if keyed && !has(&options, "sign-verify") {
        options.push(("sign-verify".into(), "ed25519".into()));
    }
    let mut repo = super::open_repo(&a.repo)?;
    repo.add_remote(&a.name, &a.url, &options, a.if_not_exists)
        .with_context(|| format!("adding remote {}", a.name))?;
    Ok(ExitCode::SUCCESS)
}

fn list(a: ListArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let names = repo.remote_names();
    if a.json {
        let mut out = Vec::new();
        for name in &names {
            let r = repo.remote(name)?;
            let options: serde_json::Map<_, _> = r
                .options
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect();
            out.push(serde_json::json!({ "name": r.name, "url": r.url, "options": options }));
        }
        print_json(&out)?;
    } else if a.show_urls {
        let width = names.iter().map(String::len).max().unwrap_or(0);
        for name in &names {
            let r = repo.remote(name)?;
            println!("{name:<width$}  {}", r.url);
        }
    } else {
        for name in &names {
            println!("{name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(a: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut repo = super::open_repo(&a.repo)?;
    repo.delete_remote(&a.name, a.if_exists)
        .with_context(|| format!("deleting remote {}", a.name))?;
    Ok(ExitCode::SUCCESS)
}

fn show_url(a: ShowUrlArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    println!("{}", repo.remote(&a.name)?.url);
    Ok(ExitCode::SUCCESS)
}
