//! The parent of a new commit: the ref's tip in the local repository or, when the local
//! repository has no such ref and the manifest names a remote, the tip on the remote,
//! of which only the commit object (and its detached metadata) is fetched, never the tree
//! nor the history. The one place that talks to trellis-transport.

use crate::error::{ComposeError, Result};
use crate::manifest::RemoteSpec;
use trellis_store::{Checksum, Repo};
use trellis_transport::pull::{self, PullError, PullOptions};

/// What fetching the remote tip found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTip {
    /// The remote's tip, now in the local repository (marked partial: no tree), or `None`
    /// when the remote does not have the ref yet.
    pub commit: Option<Checksum>,
    /// HTTP requests made (or files read, for a file:// remote).
    pub requests: u64,
}

/// Configure `remote` in `repo` if it is not (or check that it points where the manifest
/// says), then fetch the commit object at the tip of `ref_name` there.
pub fn fetch_remote_tip(repo: &mut Repo, remote: &RemoteSpec, ref_name: &str) -> Result<RemoteTip> {
    ensure_remote(repo, remote)?;
    let mut opts = PullOptions::new(&remote.name, vec![ref_name.to_string()]);
    opts.depth = 0;
    opts.commit_metadata_only = true;
    match pull::pull(repo, &opts, &pull::NoProgress) {
        Ok(out) => Ok(RemoteTip {
            commit: out.refs.first().map(|r| r.commit),
            requests: out.requests,
        }),
        Err(PullError::RefNotFound { .. }) => Ok(RemoteTip {
            commit: None,
            requests: 0,
        }),
        Err(source) => Err(ComposeError::Pull {
            remote: remote.name.clone(),
            refspec: ref_name.to_string(),
            source,
        }),
    }
}

fn ensure_remote(repo: &mut Repo, remote: &RemoteSpec) -> Result<()> {
    if repo.remote_names().contains(&remote.name) {
        let have = repo.remote(&remote.name)?;
        if have.url.trim_end_matches('/') != remote.url.trim_end_matches('/') {
            return Err(ComposeError::Invalid(format!(
                "remote {:?} in {} has url {}, but the manifest says {}: fix one of them \
                 (trellis remote delete, or the manifest's remote.url)",
                remote.name,
                repo.path().display(),
                have.url,
                remote.url
            )));
        }
        return Ok(());
    }
    // trellis verifies ed25519 signatures, not GPG ones.
    let mut options = vec![("gpg-verify".to_string(), "false".to_string())];
    if let Some(k) = &remote.public_key {
        options.push(("sign-verify".to_string(), "true".to_string()));
        options.push(("verification-ed25519-key".to_string(), k.clone()));
    }
    repo.add_remote(&remote.name, &remote.url, &options, true)?;
    Ok(())
}
