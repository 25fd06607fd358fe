use crate::RepoArg;
use crate::output::print_json;
use anyhow::{Context, bail};
use std::process::ExitCode;

/// List, create or delete refs (as `ostree refs`).
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    repo: RepoArg,
    /// Create ref NAME pointing at the commit given as the argument.
    #[arg(long, value_name = "NAME", conflicts_with = "delete")]
    create: Option<String>,
    /// Delete the refs given as arguments.
    #[arg(long)]
    delete: bool,
    /// With --create: the commit (checksum or ref). With --delete: the refs. Otherwise: only
    /// list refs starting with this prefix.
    args: Vec<String>,
    /// Print refs and their commits as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    if let Some(name) = &a.create {
        let [rev] = a.args.as_slice() else {
            bail!("--create {name} takes exactly one commit (checksum or ref) to point at");
        };
        let commit = repo
            .resolve_rev(rev)
            .with_context(|| format!("resolving {rev}"))?;
        if repo.read_ref(name)?.is_some() {
            bail!("ref {name} already exists; delete it first or commit to it");
        }
        repo.load_commit(&commit)
            .with_context(|| format!("ref {name} must point at a commit in the repository"))?;
        repo.set_ref(name, Some(&commit))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.delete {
        if a.args.is_empty() {
            bail!("--delete needs the names of the refs to delete");
        }
        for name in &a.args {
            repo.set_ref(name, None)
                .with_context(|| format!("deleting ref {name}"))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let prefix = a.args.first().map(String::as_str).unwrap_or("");
    let refs: Vec<_> = repo
        .list_refs()?
        .into_iter()
        .filter(|r| r.name.starts_with(prefix))
        .collect();
    if a.json {
        let map: serde_json::Map<_, _> = refs
            .iter()
            .map(|r| (r.name.clone(), r.commit.to_hex().into()))
            .collect();
        print_json(&map)?;
    } else {
        for r in refs {
            println!("{}", r.name);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print the commit checksum a ref or revision names (`REF`, `REMOTE:REF`, `REV^`).
#[derive(clap::Args)]
pub struct RevParseArgs {
    #[command(flatten)]
    repo: RepoArg,
    rev: String,
}

pub fn rev_parse(a: RevParseArgs) -> anyhow::Result<ExitCode> {
    let repo = super::open_repo(&a.repo)?;
    println!("{}", repo.resolve_rev(&a.rev)?);
    Ok(ExitCode::SUCCESS)
}
