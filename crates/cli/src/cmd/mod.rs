pub mod admin;
pub mod build;
pub mod checkout;
pub mod commit;
pub mod compose;
pub mod export;
pub mod image;
pub mod import;
pub mod init;
pub mod keys;
pub mod maint;
pub mod prepare_root;
pub mod publish;
pub mod pull;
pub mod read;
pub mod refs;
pub mod remote;
pub mod serve;
pub mod summary;
pub mod sysext;

use anyhow::Context;
use trellis_store::Repo;

/// Open the repository named by `--repo`, with the path in the error.
pub fn open_repo(r: &crate::RepoArg) -> anyhow::Result<Repo> {
    Repo::open(&r.repo).with_context(|| format!("opening repository {}", r.repo.display()))
}
