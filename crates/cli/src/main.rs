//! The `trellis` command line.

mod cmd;
mod output;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// trellis: build, publish, boot and upgrade image-based Debian systems.
///
/// Repositories are OSTree repositories, byte for byte: the `ostree` CLI reads what
/// trellis writes and the other way round.
#[derive(Parser)]
#[command(name = "trellis", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that works on a repository.
#[derive(clap::Args, Clone, Debug)]
pub struct RepoArg {
    /// Path to the repository (as `ostree --repo`). Defaults to $TRELLIS_REPO.
    #[arg(long, env = "TRELLIS_REPO", value_name = "PATH")]
    pub repo: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    Init(cmd::init::Args),
    Commit(cmd::commit::Args),
    Compose(cmd::compose::Args),
    Image(cmd::image::Args),
    Build(cmd::build::Args),
    Log(cmd::read::LogArgs),
    Show(cmd::read::ShowArgs),
    Ls(cmd::read::LsArgs),
    Cat(cmd::read::CatArgs),
    Diff(cmd::read::DiffArgs),
    Refs(cmd::refs::Args),
    RevParse(cmd::refs::RevParseArgs),
    Checkout(cmd::checkout::Args),
    Fsck(cmd::maint::FsckArgs),
    Prune(cmd::maint::PruneArgs),
    Pull(cmd::pull::Args),
    PullLocal(cmd::pull::LocalArgs),
    Remote(cmd::remote::Args),
    Serve(cmd::serve::Args),
    Export(cmd::export::Args),
    Import(cmd::import::Args),
    Publish(cmd::publish::Args),
    Summary(cmd::summary::Args),
    Admin(cmd::admin::Args),
    PrepareRoot(cmd::prepare_root::Args),
    Keygen(cmd::keys::KeygenArgs),
    Sign(cmd::keys::SignArgs),
    Sysext(cmd::sysext::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(a) => cmd::init::run(a),
        Command::Commit(a) => cmd::commit::run(a),
        Command::Compose(a) => cmd::compose::run(a),
        Command::Image(a) => cmd::image::run(a),
        Command::Build(a) => cmd::build::run(a),
        Command::Log(a) => cmd::read::log(a),
        Command::Show(a) => cmd::read::show(a),
        Command::Ls(a) => cmd::read::ls(a),
        Command::Cat(a) => cmd::read::cat(a),
        Command::Diff(a) => cmd::read::diff(a),
        Command::Refs(a) => cmd::refs::run(a),
        Command::RevParse(a) => cmd::refs::rev_parse(a),
        Command::Checkout(a) => cmd::checkout::run(a),
        Command::Fsck(a) => cmd::maint::fsck(a),
        Command::Prune(a) => cmd::maint::prune(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::PullLocal(a) => cmd::pull::run_local(a),
        Command::Remote(a) => cmd::remote::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Publish(a) => cmd::publish::run(a),
        Command::Summary(a) => cmd::summary::run(a),
        Command::Admin(a) => cmd::admin::run(a),
        Command::PrepareRoot(a) => cmd::prepare_root::run(a),
        Command::Keygen(a) => cmd::keys::keygen(a),
        Command::Sign(a) => cmd::keys::sign(a),
        Command::Sysext(a) => cmd::sysext::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
