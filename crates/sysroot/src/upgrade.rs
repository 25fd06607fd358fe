//! Upgrading a deployment to the newest commit of its origin (`ostree admin upgrade`).
//!
//! 1. The deployment followed is the booted one (or, on a sysroot that is not running, the
//!    default one); its origin says `REMOTE:REF` (or a local `REF`, or pins a commit with
//!    `override-commit`).
//! 2. Only the commit object and its detached metadata are fetched first: the signature
//!    is verified (when the remote asks for it) before anything else is downloaded, and the
//!    commit tells whether there is an update at all. `check_only` stops here, and puts the
//!    ref back where it was.
//! 3. The free space is checked before the tree is downloaded: what the deployment needs
//!    (sized from the deployment followed, which the new one resembles) plus the content
//!    still missing when the commit lists its objects' sizes (`ostree.sizes`), plus the
//!    reserve the repository keeps free (`core.min-free-space-percent`, default 3%, or
//!    `core.min-free-space-size`). When the disk fills up during the download anyway, the
//!    ref is put back and the unreferenced objects are pruned: the disk is as before.
//! 4. The tree is pulled (an interrupted pull resumes: only missing objects are fetched).
//! 5. On a booted system the new commit is staged (finalized at shutdown); on a sysroot
//!    that is not running it is deployed at once. The origin is kept as it was.
//!
//! Running it again after an interruption at any point finishes the work; a commit that is
//! already staged or booted is "no update".

use crate::cleanup;
use crate::deploy::{self, DeployOptions, DeployOutcome};
use crate::deployment::{self, Deployment};
use crate::error::Error;
use crate::layout;
use crate::space::{self, SpaceNeeds};
use crate::stage::{self, StageOutcome};
use crate::status;
use crate::sysroot::Sysroot;
use std::path::PathBuf;
use std::time::Duration;
use trellis_store::repo::split_refspec;
use trellis_store::{Checksum, ObjectType};
use trellis_transport::pull::{self, NoProgress, PullError, PullOptions, PullProgress};

/// How to upgrade.
#[derive(Clone, Debug)]
pub struct UpgradeOptions {
    /// The stateroot; default: the booted deployment's, or the only one.
    pub osname: Option<String>,
    /// Only find out whether there is an update (fetches the commit object, nothing else).
    pub check_only: bool,
    /// Accept a commit older than the deployment followed (refused by default: a remote
    /// serving an old, validly signed commit must not roll a device back).
    pub allow_downgrade: bool,
    /// Pull settings, as for `trellis pull`.
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
}

impl Default for UpgradeOptions {
    fn default() -> UpgradeOptions {
        UpgradeOptions {
            osname: None,
            check_only: false,
            allow_downgrade: false,
            concurrency: 32,
            timeout: Duration::from_secs(30),
            retries: 2,
        }
    }
}

/// Called by [`upgrade`] at the points where the caller has work to do.
pub trait UpgradeHooks {
    /// Right before `commit` (complete in `repo`) is staged: the place to make sure that
    /// something will finalize it at shutdown, or to look at what the new OS will be (an
    /// error stops the upgrade with nothing staged).
    fn before_stage(&self, repo: &trellis_store::Repo, commit: &Checksum) -> Result<(), String> {
        let _ = (repo, commit);
        Ok(())
    }
}

/// Hooks that do nothing.
pub struct NoHooks;
impl UpgradeHooks for NoHooks {}

/// What the upgrade did.
#[derive(Clone, Debug)]
pub enum Action {
    /// The origin's commit is the one booted (or already staged).
    NoUpdate,
    /// There is an update (`check_only`).
    Available,
    Staged(Box<StageOutcome>),
    /// Deployed at once (a sysroot that is not the running system).
    Deployed(Box<DeployOutcome>),
}

/// The result of an upgrade.
#[derive(Clone, Debug)]
pub struct UpgradeOutcome {
    /// The deployment whose origin was followed.
    pub from: Deployment,
    /// Its origin's refspec.
    pub refspec: String,
    /// The commit the origin names now.
    pub commit: Checksum,
    pub version: Option<String>,
    pub timestamp: u64,
    pub action: Action,
    /// Bytes received from the remote (commit metadata and content).
    pub bytes_downloaded: u64,
    /// Objects fetched from the remote.
    pub objects_fetched: u64,
    /// Damaged objects, left by a power loss during an earlier download, removed (and
    /// fetched again) before this one.
    pub damaged_removed: u64,
    /// The space checked for before the download, when there was one.
    pub space: Option<SpaceCheck>,
}

/// The space check before the download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceCheck {
    /// Bytes needed on the sysroot's file system, the reserve included.
    pub needed: u64,
    /// Content still to download, from the commit's `ostree.sizes`; `None` when the commit
    /// does not list sizes (then only the deployment and the reserve are checked).
    pub download: Option<u64>,
    pub reserve: u64,
    pub available: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(transparent)]
    Sysroot(#[from] Error),
    #[error("pulling {refspec}")]
    Pull {
        refspec: String,
        #[source]
        source: Box<PullError>,
    },
    #[error("stateroot {osname:?} has no deployment to upgrade")]
    NoDeployment { osname: String },
    #[error(
        "deployment {osname} {name} has no origin refspec to follow; deploy a REMOTE:REF (e.g. `trellis admin deploy origin:debian/bookworm/amd64`)"
    )]
    NoOrigin { osname: String, name: String },
    #[error(
        "{refspec} now names commit {commit} (from {new_time}), older than the deployed {current} (from {current_time}); refusing to downgrade (use --allow-downgrade to accept it)"
    )]
    Downgrade {
        refspec: String,
        commit: Checksum,
        new_time: u64,
        current: Checksum,
        current_time: u64,
    },
    #[error(
        "not enough space on {path} for the upgrade to {commit}: {needed} bytes needed ({what}), {available} available; nothing was written"
    )]
    NoSpace {
        path: PathBuf,
        commit: Checksum,
        needed: u64,
        available: u64,
        what: String,
    },
    #[error(
        "the disk holding {path} filled up while downloading {commit}; the partial download was removed, so the disk is as before: free some space and run the upgrade again"
    )]
    DiskFull {
        path: PathBuf,
        commit: Checksum,
        #[source]
        source: Box<PullError>,
    },
    #[error("{0}")]
    Hook(String),
    /// Putting the ref back after an upgrade stopped short failed too.
    #[error("{first}; then putting the ref back failed too: {undo}")]
    Undo {
        first: Box<UpgradeError>,
        undo: Box<UpgradeError>,
    },
}

pub type Result<T, E = UpgradeError> = std::result::Result<T, E>;

/// What the metadata pull changed, to put back when the upgrade stops short.
struct MetaPull {
    local_ref: Option<String>,
    previous: Option<Checksum>,
}

fn pull_options(opts: &UpgradeOptions, remote: &str, rev: &str) -> PullOptions {
    let mut p = PullOptions::new(remote, vec![rev.to_string()]);
    p.concurrency = opts.concurrency.max(1);
    p.timeout = opts.timeout;
    p.retries = opts.retries;
    p
}

/// Put the ref back and drop the commit object the metadata pull left partial, so that a
/// refused or checked upgrade leaves the repository as it was. A ref that already named
/// the partial commit (an interrupted earlier upgrade) goes back to `fallback`, the commit
/// deployed from it, so that nothing keeps the partial download alive.
fn undo_metadata_pull(
    sr: &Sysroot,
    mp: &MetaPull,
    commit: &Checksum,
    fallback: &Checksum,
) -> Result<()> {
    let repo = sr.repo();
    let partial = repo.is_partial(commit);
    if let Some(l) = &mp.local_ref {
        let back = match mp.previous {
            Some(p) if p != *commit => Some(p),
            Some(_) if partial => Some(*fallback),
            Some(_) => None,
            None => {
                match repo.set_ref(l, None) {
                    Ok(()) | Err(trellis_store::Error::RefNotFound(_)) => {}
                    Err(e) => return Err(Error::from(e).into()),
                }
                None
            }
        };
        if let Some(b) = back {
            repo.set_ref(l, Some(&b)).map_err(Error::from)?;
        }
    }
    if partial {
        repo.delete_object(ObjectType::CommitMeta, commit)
            .map_err(Error::from)?;
        repo.delete_object(ObjectType::Commit, commit)
            .map_err(Error::from)?;
        repo.clear_partial(commit).map_err(Error::from)?;
        // The fan-out directory the commit was alone in, if it was: best effort.
        if let Some(dir) = repo.object_path(ObjectType::Commit, commit).parent() {
            let _ = std::fs::remove_dir(dir);
        }
    }
    Ok(())
}

/// Whether an error comes from a full disk (`ENOSPC`, `EDQUOT`) somewhere in its causes.
fn is_disk_full(e: &PullError) -> bool {
    fn io_full(e: &std::io::Error) -> bool {
        matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) || matches!(e.raw_os_error(), Some(28 | 122))
    }
    fn walk(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(c) = cur {
            if let Some(io) = c.downcast_ref::<std::io::Error>()
                && io_full(io)
            {
                return true;
            }
            if let Some(trellis_store::Error::Io { source, .. }) =
                c.downcast_ref::<trellis_store::Error>()
                && io_full(source)
            {
                return true;
            }
            cur = c.source();
        }
        false
    }
    match e {
        PullError::Store(s) | PullError::Verify { cause: s, .. } => walk(s.as_ref()),
        other => {
            walk(other)
                || other.to_string().contains("No space left on device")
                || other.to_string().contains("Disk quota exceeded")
        }
    }
}

/// Decode `ostree.sizes` (spec §3.6): per object, 32 checksum bytes, the archived and the
/// unpacked size as LEB128 varints, then (in newer commits) one byte of object type.
pub fn parse_sizes(v: &trellis_store::gvariant::Value) -> Option<Vec<(Checksum, ObjectType, u64)>> {
    fn varint(b: &[u8], pos: &mut usize) -> Option<u64> {
        let mut out: u64 = 0;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*pos)?;
            *pos += 1;
            out |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(out);
            }
        }
        None
    }
    let mut out = Vec::new();
    for item in v.as_array()? {
        let b = item.as_bytes()?;
        let csum = Checksum(b.get(..32)?.try_into().ok()?);
        let mut pos = 32;
        let _archived = varint(b, &mut pos)?;
        let unpacked = varint(b, &mut pos)?;
        let ty = match b.get(pos) {
            None | Some(1) => ObjectType::File,
            Some(2) => ObjectType::DirTree,
            Some(3) => ObjectType::DirMeta,
            Some(_) => return None,
        };
        out.push((csum, ty, unpacked));
    }
    Some(out)
}

const BLOCK: u64 = 4096;

/// Bytes the objects listed in `ostree.sizes` that the repo lacks take, block-rounded.
fn missing_content(
    sr: &Sysroot,
    commit: &trellis_store::format::Commit,
) -> Result<Option<(u64, u64)>> {
    let Some(sizes) = commit.meta("ostree.sizes").and_then(parse_sizes) else {
        return Ok(None);
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    for (csum, ty, size) in sizes {
        if !sr.repo().has_object(ty, &csum).map_err(Error::from)? {
            bytes += size.div_ceil(BLOCK).max(1) * BLOCK;
            inodes += 1;
        }
    }
    Ok(Some((bytes, inodes)))
}

/// The space ostree keeps free in a repository: `core.min-free-space-size` (`NMB`,
/// `NGB`, `NTB`, powers of 2) or `core.min-free-space-percent` (default 3) of the file
/// system.
fn reserve(sr: &Sysroot, fs_bytes: u64) -> Result<u64> {
    let cfg = sr.repo().config();
    let bad = |k: &str, v: &str| {
        Error::Invalid(format!(
            "{}: core.{k} {v:?} is not valid (e.g. min-free-space-percent=3, min-free-space-size=500MB)",
            sr.repo().path().join("config").display()
        ))
    };
    if let Some(v) = cfg.get("core", "min-free-space-size") {
        let t = v.trim();
        let (num, mult) = [("TB", 1u64 << 40), ("GB", 1 << 30), ("MB", 1 << 20)]
            .iter()
            .find_map(|(s, m)| t.strip_suffix(s).map(|n| (n, *m)))
            .ok_or_else(|| bad("min-free-space-size", v))?;
        let n: u64 = num
            .trim()
            .parse()
            .map_err(|_| bad("min-free-space-size", v))?;
        return Ok(n.saturating_mul(mult));
    }
    let pct = match cfg.get("core", "min-free-space-percent") {
        None => 3,
        Some(v) => match v.trim().parse::<u64>() {
            Ok(p) if p <= 99 => p,
            _ => return Err(bad("min-free-space-percent", v).into()),
        },
    };
    Ok(fs_bytes / 100 * pct)
}

/// Check the space for the upgrade to `commit` before its tree is downloaded.
fn check_space(
    sr: &Sysroot,
    from: &Deployment,
    commit_csum: &Checksum,
    commit: &trellis_store::format::Commit,
) -> Result<SpaceCheck> {
    // The new deployment is sized like the one it replaces: same directories, same /etc.
    let like: SpaceNeeds = space::estimate(sr, &from.csum, &from.osname, 0)?;
    let download = missing_content(sr, commit)?;
    let path = sr.path().join(layout::DEPLOY);
    let st = rustix::fs::statvfs(&path).map_err(|e| Error::Io {
        op: "statvfs",
        path: path.clone(),
        source: e.into(),
    })?;
    let available = st.f_bavail.saturating_mul(st.f_frsize);
    let reserve = reserve(sr, st.f_blocks.saturating_mul(st.f_frsize))?;
    let (dl_bytes, dl_inodes) = download.unwrap_or((0, 0));
    let needed = like.sysroot_bytes + dl_bytes + reserve;
    let check = SpaceCheck {
        needed,
        download: download.map(|d| d.0),
        reserve,
        available,
    };
    if needed > available {
        let what = match download {
            Some((d, _)) => format!(
                "{d} to download, {} for the deployment, {reserve} kept free",
                like.sysroot_bytes
            ),
            None => format!(
                "{} for the deployment, {reserve} kept free; the commit does not list its download size",
                like.sysroot_bytes
            ),
        };
        return Err(UpgradeError::NoSpace {
            path,
            commit: *commit_csum,
            needed,
            available,
            what,
        });
    }
    let inodes = like.sysroot_inodes + dl_inodes;
    if st.f_files > 0 && inodes > st.f_favail {
        return Err(UpgradeError::NoSpace {
            path,
            commit: *commit_csum,
            needed: inodes,
            available: st.f_favail,
            what: "inodes".into(),
        });
    }
    Ok(check)
}

/// Deployment directories no boot entry or staged state names (an interrupted stage).
fn has_leftovers(sr: &Sysroot, state: &status::State, osname: &str) -> Result<bool> {
    let dirs = deployment::list_deploy_dirs(sr.path(), osname)?;
    Ok(dirs.iter().any(|(c, s)| {
        !state
            .deployments
            .iter()
            .any(|d| d.osname == osname && d.csum == *c && d.serial == *s)
    }))
}

/// Upgrade the booted (or default) deployment of a stateroot to the newest commit of its
/// origin. See the module documentation for the steps.
pub fn upgrade(
    sr: &Sysroot,
    opts: &UpgradeOptions,
    progress: &dyn PullProgress,
    hooks: &dyn UpgradeHooks,
) -> Result<UpgradeOutcome> {
    let state = status::load(sr)?;
    let osname = deploy::resolve_osname(sr, &state, opts.osname.as_deref())?;
    let from = state
        .booted()
        .filter(|b| b.osname == osname)
        .or_else(|| {
            state
                .deployments
                .iter()
                .find(|d| !d.staged && d.osname == osname)
        })
        .cloned()
        .ok_or_else(|| UpgradeError::NoDeployment {
            osname: osname.clone(),
        })?;
    let no_origin = || UpgradeError::NoOrigin {
        osname: from.osname.clone(),
        name: from.name(),
    };
    let origin = from.origin.clone().ok_or_else(no_origin)?;
    let refspec = origin.refspec().ok_or_else(no_origin)?.to_string();
    let (remote, refname) = split_refspec(&refspec).map_err(Error::from)?;
    let rev = origin.override_commit().unwrap_or(refname).to_string();
    let staged = state.staged().filter(|s| s.osname == osname).cloned();
    let repo = sr.repo();
    let pull_err = |source| UpgradeError::Pull {
        refspec: refspec.clone(),
        source: Box::new(source),
    };

    let mut bytes_downloaded = 0;
    let mut objects_fetched = 0;
    let mut damaged_removed = 0;
    let (new, meta) = match remote {
        Some(r) => {
            let mut p = pull_options(opts, r, &rev);
            p.commit_metadata_only = true;
            let out = pull::pull(repo, &p, &NoProgress).map_err(pull_err)?;
            bytes_downloaded += out.bytes;
            objects_fetched += out.fetched.total();
            damaged_removed += out.recovered.removed.len() as u64;
            let pulled = out.refs.first().ok_or_else(|| {
                Error::Invalid(format!("pulling {rev} from {r} returned no commit"))
            })?;
            let mp = MetaPull {
                local_ref: pulled.local_ref.clone(),
                previous: pulled.previous,
            };
            (pulled.commit, Some(mp))
        }
        None => (repo.resolve_rev(&rev).map_err(Error::from)?, None),
    };
    let undo = |e: UpgradeError| -> UpgradeError {
        if let Some(mp) = &meta
            && let Err(u) = undo_metadata_pull(sr, mp, &new, &from.csum)
        {
            return UpgradeError::Undo {
                first: Box::new(e),
                undo: Box::new(u),
            };
        }
        e
    };
    let commit = repo.load_commit(&new).map_err(Error::from)?;
    let mut out = UpgradeOutcome {
        from: from.clone(),
        refspec: refspec.clone(),
        commit: new,
        version: commit.version().map(str::to_string),
        timestamp: commit.timestamp,
        action: Action::NoUpdate,
        bytes_downloaded,
        objects_fetched,
        damaged_removed,
        space: None,
    };
    if new == from.csum || staged.as_ref().is_some_and(|s| s.csum == new) {
        return Ok(out);
    }
    if let Ok(cur) = repo.load_commit(&from.csum)
        && commit.timestamp < cur.timestamp
        && !opts.allow_downgrade
    {
        return Err(undo(UpgradeError::Downgrade {
            refspec,
            commit: new,
            new_time: commit.timestamp,
            current: from.csum,
            current_time: cur.timestamp,
        }));
    }
    if opts.check_only {
        if let Some(mp) = &meta {
            undo_metadata_pull(sr, mp, &new, &from.csum)?;
        }
        out.action = Action::Available;
        return Ok(out);
    }

    if let Some(r) = remote {
        out.space = Some(check_space(sr, &from, &new, &commit).map_err(undo)?);
        // The tree of exactly the commit checked above (by checksum: the remote's ref may
        // have moved since; and no summary or detached metadata is fetched twice).
        let p = pull_options(opts, r, &new.to_hex());
        match pull::pull(repo, &p, progress) {
            Ok(o) => {
                out.bytes_downloaded += o.bytes;
                out.objects_fetched += o.fetched.total();
                out.damaged_removed += o.recovered.removed.len() as u64;
            }
            Err(e) if is_disk_full(&e) => {
                if let Some(mp) = &meta {
                    undo_metadata_pull(sr, mp, &new, &from.csum)?;
                }
                cleanup::cleanup(sr, true)?;
                return Err(UpgradeError::DiskFull {
                    path: repo.path().to_path_buf(),
                    commit: new,
                    source: Box::new(e),
                });
            }
            Err(e) => return Err(pull_err(e)),
        }
    }
    if repo.is_partial(&new) {
        return Err(Error::PartialCommit(new.to_hex()).into());
    }

    // An interrupted stage leaves a checkout no boot entry names; clear it first so that
    // the new one gets serial 0 again and the space is back.
    if has_leftovers(sr, &state, &osname)? {
        cleanup::cleanup(sr, false)?;
    }
    let dopts = DeployOptions {
        osname: Some(osname),
        origin: Some(origin),
        ..DeployOptions::default()
    };
    let rev = new.to_hex();
    out.action = if state.booted().is_some() {
        hooks.before_stage(repo, &new).map_err(UpgradeError::Hook)?;
        Action::Staged(Box::new(stage::stage(sr, &rev, &dopts)?))
    } else {
        Action::Deployed(Box::new(deploy::deploy(sr, &rev, &dopts)?))
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_store::gvariant::Value;

    #[test]
    fn sizes_are_decoded_with_and_without_the_type_byte() {
        let c1 = [1u8; 32];
        let c2 = [2u8; 32];
        let mut e1 = c1.to_vec();
        e1.extend([0x25, 0x01, 0x01]);
        let mut e2 = c2.to_vec();
        // 300 = 0xac 0x02; no type byte: a file.
        e2.extend([0x10, 0xac, 0x02]);
        let mut e3 = [3u8; 32].to_vec();
        e3.extend([0x05, 0x07, 0x02]);
        let v = Value::bytes_array(vec![e1, e2, e3]);
        let parsed = parse_sizes(&v).unwrap();
        assert_eq!(
            parsed,
            vec![
                (Checksum(c1), ObjectType::File, 1),
                (Checksum(c2), ObjectType::File, 300),
                (Checksum([3u8; 32]), ObjectType::DirTree, 7),
            ]
        );
        // Truncated entries are refused, not misread.
        let v = Value::bytes_array(vec![vec![1u8; 20]]);
        assert!(parse_sizes(&v).is_none());
        let mut bad = c1.to_vec();
        bad.extend([0x80]);
        assert!(parse_sizes(&Value::bytes_array(vec![bad])).is_none());
    }

    #[test]
    fn disk_full_is_found_among_the_causes() {
        let enospc = std::io::Error::from_raw_os_error(28);
        let e = PullError::Store(Box::new(trellis_store::Error::Io {
            op: "write",
            path: "/x".into(),
            source: enospc,
        }));
        assert!(is_disk_full(&e));
        let e = PullError::Verify {
            url: "http://h/x".into(),
            cause: Box::new(trellis_store::Error::Io {
                op: "write",
                path: "/x".into(),
                source: std::io::Error::from_raw_os_error(28),
            }),
        };
        assert!(is_disk_full(&e));
        let e = PullError::Invalid("something else".into());
        assert!(!is_disk_full(&e));
    }
}
