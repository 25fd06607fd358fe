use crate::RepoArg;
use crate::output::{format_time, print_json, value_to_json};
use anyhow::Context;
use std::io::Write;
use std::process::ExitCode;
use trellis_store::diff::DiffKind;
use trellis_store::format::Commit;
use trellis_store::tree::{self, EntryKind};
use trellis_store::{Checksum, Error};

fn commit_json(
    csum: &Checksum,
    c: &Commit,
    detached: Option<&[(String, trellis_store::gvariant::Value)]>,
) -> serde_json::Value {
    serde_json::json!({
        "commit": csum.to_hex(),
        "parent": c.parent.as_ref().map(Checksum::to_hex),
        "subject": c.subject,
        "body": c.body,
        "timestamp": c.timestamp,
        "date": format_time(c.timestamp),
        "version": c.version(),
        "root_tree": c.root_tree.to_hex(),
        "root_meta": c.root_meta.to_hex(),
        "content_checksum": c.content_checksum().to_hex(),
        "metadata": serde_json::Value::Object(c.metadata.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect()),
        "detached_metadata": detached.map(|d| serde_json::Value::Object(d.iter().map(|(k, v)| (k.clone(), value_to_json(v))).collect())),
    })
}

/// The block `ostree log` and `ostree show` print for one commit.
fn print_commit(csum: &Checksum, c: &Commit) {
    println!("commit {csum}");
    if let Some(p) = &c.parent {
        println!("Parent:  {p}");
    }
    println!("ContentChecksum:  {}", c.content_checksum());
    println!("Date:  {}", format_time(c.timestamp));
    if let Some(v) = c.version() {
        println!("Version: {v}");
    }
    println!();
    if !c.subject.is_empty() {
        println!("    {}", c.subject);
        println!();
    }
    if !c.body.is_empty() {
        for line in c.body.lines() {
            println!("    {line}");
        }
        println!();
    }
}

/// Show a commit and its ancestors, newest first (as `ostree log`).
#[derive(clap::Args)]
pub struct LogArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Ref or commit to start from.
    rev: String,
    /// Print the commits as a JSON array.
    #[arg(long)]
    json: bool,
}

pub fn log(a: LogArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let mut next = Some(repo.resolve_rev(&a.rev)?);
    let mut all = Vec::new();
    while let Some(csum) = next {
        let c = match repo.load_commit(&csum) {
            Ok(c) => c,
            // History cut by a depth-limited pull or by prune: stop, as ostree does.
            Err(Error::Missing { .. }) if !all.is_empty() || a.json => {
                if !a.json {
                    println!("<< History beyond this commit not fetched >>");
                }
                break;
            }
            Err(e) => return Err(e).with_context(|| format!("loading commit {csum}")),
        };
        next = c.parent;
        if a.json {
            all.push(commit_json(&csum, &c, None));
        } else {
            print_commit(&csum, &c);
            all.push(serde_json::Value::Null);
        }
    }
    if a.json {
        print_json(&all)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Show one commit: its fields and metadata (as `ostree show`).
#[derive(clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Ref or commit.
    rev: String,
    /// Print only the value of this metadata key.
    #[arg(long, value_name = "KEY")]
    print_metadata_key: Option<String>,
    /// Print all fields, metadata and detached metadata as JSON.
    #[arg(long)]
    json: bool,
}

pub fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let csum = repo.resolve_rev(&a.rev)?;
    let c = repo.load_commit(&csum)?;
    if let Some(key) = &a.print_metadata_key {
        let v = c
            .meta(key)
            .with_context(|| format!("commit {csum} has no metadata key {key:?}"))?;
        println!("{v}");
        return Ok(ExitCode::SUCCESS);
    }
    let detached = repo.load_commitmeta(&csum)?;
    if a.json {
        print_json(&commit_json(&csum, &c, detached.as_deref()))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_commit(&csum, &c);
    if !c.metadata.is_empty() {
        println!("Metadata:");
        for (k, v) in &c.metadata {
            println!("  {k}: {v}");
        }
    }
    if let Some(d) = detached.filter(|d| !d.is_empty()) {
        println!("Detached metadata:");
        for (k, v) in &d {
            println!("  {k}: {v}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// List files in a commit (as `ostree ls`): type and mode, owner, size, path.
#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Ref or commit.
    rev: String,
    /// Paths inside the commit [default: /].
    paths: Vec<String>,
    /// List directories recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// Also print each entry's checksums (content; dirtree and dirmeta for directories).
    #[arg(short = 'C', long)]
    checksum: bool,
    /// Print the entries as JSON.
    #[arg(long)]
    json: bool,
}

pub fn ls(a: LsArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let commit = repo.resolve_rev(&a.rev)?;
    let paths = if a.paths.is_empty() {
        vec!["/".to_string()]
    } else {
        a.paths.clone()
    };
    let mut json = Vec::new();
    for p in &paths {
        let entries = tree::list(&repo, &commit, p, a.recursive)
            .with_context(|| format!("listing {p} in {commit}"))?;
        for e in entries {
            if a.json {
                json.push(serde_json::json!({
                    "path": e.path,
                    "type": match e.kind { EntryKind::File => "file", EntryKind::Dir => "dir", EntryKind::Symlink => "symlink" },
                    "mode": format!("{:04o}", e.mode & 0o7777),
                    "uid": e.uid,
                    "gid": e.gid,
                    "size": e.size,
                    "checksum": e.checksum.to_hex(),
                    "dirmeta": e.dirmeta.map(|c| c.to_hex()),
                    "target": e.symlink_target,
                }));
            } else {
                println!("{}", e.ls_line(a.checksum));
            }
        }
    }
    if a.json {
        print_json(&json)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Print a file's contents from a commit (as `ostree cat`).
#[derive(clap::Args)]
pub struct CatArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// Ref or commit.
    rev: String,
    /// Path of the file inside the commit; symlinks inside the commit are followed.
    path: String,
}

pub fn cat(a: CatArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let commit = repo.resolve_rev(&a.rev)?;
    let (_, _, mut reader) = tree::open_file(&repo, &commit, &a.path)?;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut reader, &mut out)
        .with_context(|| format!("reading {} from {commit}", a.path))?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// List the paths added (A), removed (D) and modified (M) between two commits
/// (as `ostree diff`).
#[derive(clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    repo: RepoArg,
    /// The older ref or commit.
    from: String,
    /// The newer ref or commit.
    to: String,
    /// Print the changes as JSON.
    #[arg(long)]
    json: bool,
}

pub fn diff(a: DiffArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    let mut entries = trellis_store::diff::diff(&repo, &a.from, &a.to)?;
    // ostree prints modified, then removed, then added paths.
    entries.sort_by_key(|e| match e.kind {
        DiffKind::Modified => 0,
        DiffKind::Removed => 1,
        DiffKind::Added => 2,
    });
    if a.json {
        let v: Vec<_> = entries
            .iter()
            .map(|e| serde_json::json!({ "change": e.kind.letter().to_string(), "path": e.path }))
            .collect();
        print_json(&v)?;
    } else {
        for e in entries {
            println!("{}    {}", e.kind.letter(), e.path);
        }
    }
    Ok(ExitCode::SUCCESS)
}
