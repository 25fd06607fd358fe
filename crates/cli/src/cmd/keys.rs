//! `trellis keygen` and `trellis sign`: ed25519 keys and commit signatures, in ostree's
//! encodings (`ostree.sign.ed25519` in the detached metadata) so that either tool can check
//! what the other signed.

use crate::RepoArg;
use crate::output::print_json;
use anyhow::{Context, bail};
use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trellis_store::ObjectType;
use trellis_store::gvariant::Value;
use trellis_store::sign::{PublicKey, SecretKey, signatures_in};

/// Generate an ed25519 key pair for signing commits and summaries.
///
/// FILE gets the secret key: one line of base64 of the 64-byte seed ‖ public key (the form
/// `ostree sign --keys-file` reads), mode 0600. FILE.pub gets the public key: one line of
/// base64 of 32 bytes, the form a remote's `verification-ed25519-key` or
/// `verification-ed25519-file` expects. The public key is also printed. Existing files are
/// never overwritten.
#[derive(clap::Args)]
pub struct KeygenArgs {
    /// Where to write the secret key; the public key goes to FILE.pub.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// Print the file names and the public key as JSON.
    #[arg(long)]
    json: bool,
}

/// Sign a commit with an ed25519 key, or check its signatures (as `ostree sign`).
///
/// Signing adds the signature to the commit's detached metadata (`ostree.sign.ed25519`),
/// keeping the signatures already there. With --verify, exits 0 when at least one signature
/// verifies with one of the public keys in --keys-file and names the keys that verified;
/// otherwise exits non-zero and says why.
#[derive(clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The commit: a checksum or a ref.
    #[arg(value_name = "COMMIT")]
    commit: String,
    /// Secret key file (as written by `trellis keygen`); repeat to add several signatures.
    #[arg(
        long = "key",
        value_name = "SECRETFILE",
        required_unless_present = "verify",
        conflicts_with = "verify"
    )]
    keys: Vec<PathBuf>,
    /// Check the commit's signatures instead of adding one.
    #[arg(long, requires = "keys_file")]
    verify: bool,
    /// With --verify: the trusted public keys, one base64 key per line (e.g. a FILE.pub).
    #[arg(long, value_name = "PUBFILE", requires = "verify")]
    keys_file: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `path` with `suffix` appended to its file name (`key` → `key.pub`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = OsString::from(path.as_os_str());
    s.push(suffix);
    PathBuf::from(s)
}

/// Create `path` with `mode`, failing if anything (even a dangling symlink) is there.
fn write_new(path: &Path, mode: u32, text: &str) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

pub fn keygen(a: KeygenArgs) -> anyhow::Result<ExitCode> {
    let secret_path = a.output;
    let public_path = with_suffix(&secret_path, ".pub");
    // Check both before writing either, so a refusal leaves nothing behind.
    for p in [&secret_path, &public_path] {
        if p.symlink_metadata().is_ok() {
            bail!(
                "{} already exists; refusing to overwrite a key (choose another -o FILE)",
                p.display()
            );
        }
    }
    let key = SecretKey::generate().context("generating an ed25519 key")?;
    let public = key.public().to_base64();
    // The umask may only narrow the mode, so 0600 holds whatever it is.
    write_new(&secret_path, 0o600, &format!("{}\n", key.to_base64()))?;
    if let Err(e) = write_new(&public_path, 0o644, &format!("{public}\n")) {
        // A secret key without its public half is of little use; don't leave it half-made.
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    if a.json {
        print_json(&serde_json::json!({
            "secret_key_file": secret_path.display().to_string(),
            "public_key_file": public_path.display().to_string(),
            "public_key": public,
        }))?;
    } else {
        println!("{public}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every public key in a key file (one base64 key per line).
pub fn load_public_keys(path: &Path) -> anyhow::Result<Vec<PublicKey>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading public keys from {}", path.display()))?;
    Ok(PublicKey::list_from_text(
        &text,
        &path.display().to_string(),
    )?)
}

/// The trusted keys with which at least one of the signatures in `meta` over `data` verifies.
pub fn keys_that_verify(
    data: &[u8],
    meta: &[(String, Value)],
    keys: &[PublicKey],
) -> Vec<PublicKey> {
    let sigs = signatures_in(meta);
    keys.iter()
        .filter(|k| sigs.iter().any(|s| k.verify(data, s)))
        .copied()
        .collect()
}

/// Report a verification: which keys verified, or why none did. `what` names the signed
/// object ("commit X", "summary of R").
pub fn report_verification(
    what: &str,
    n_signatures: usize,
    good: &[PublicKey],
    keys_file: &Path,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ok = !good.is_empty();
    if json {
        print_json(&serde_json::json!({
            "object": what,
            "valid": ok,
            "signatures": n_signatures,
            "verified_by": good.iter().map(PublicKey::to_base64).collect::<Vec<_>>(),
        }))?;
    } else {
        for k in good {
            println!("{what}: valid ed25519 signature by key {}", k.to_base64());
        }
    }
    if ok {
        return Ok(ExitCode::SUCCESS);
    }
    if n_signatures == 0 {
        eprintln!("error: {what} has no ed25519 signature");
    } else {
        eprintln!(
            "error: {what}: none of its {n_signatures} ed25519 signature(s) verifies with a key in {}",
            keys_file.display()
        );
    }
    Ok(ExitCode::FAILURE)
}

pub fn sign(a: SignArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let commit = repo
        .resolve_rev(&a.commit)
        .with_context(|| format!("resolving {}", a.commit))?;
    if let Some(keys_file) = &a.keys_file {
        let keys = load_public_keys(keys_file)?;
        let bytes = repo
            .read_metadata_verified(ObjectType::Commit, &commit)
            .with_context(|| format!("reading commit {commit}"))?;
        let meta = repo
            .load_commitmeta(&commit)
            .with_context(|| format!("reading the detached metadata of commit {commit}"))?
            .unwrap_or_default();
        let good = keys_that_verify(&bytes, &meta, &keys);
        let what = format!("commit {commit}");
        return report_verification(&what, signatures_in(&meta).len(), &good, keys_file, a.json);
    }
    let keys = a
        .keys
        .iter()
        .map(|p| {
            SecretKey::from_file(p).with_context(|| format!("loading secret key {}", p.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let _lock = repo.lock_shared()?;
    let mut signed = Vec::new();
    for key in &keys {
        repo.sign_commit(&commit, key)
            .with_context(|| format!("signing commit {commit}"))?;
        signed.push(key.public().to_base64());
    }
    if a.json {
        print_json(&serde_json::json!({ "commit": commit.to_hex(), "signed_by": signed }))?;
    } else {
        for k in &signed {
            println!("commit {commit}: signed with ed25519 key {k}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
