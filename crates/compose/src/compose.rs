//! `compose`: the whole run, phase by phase, each timed.

use crate::chroot::Chroot;
use crate::convert::{self, ConvertReport, DPKG_DB};
use crate::error::{ComposeError, IoContext, Result};
use crate::manifest::Manifest;
use crate::{customize, dpkg, fsutil, initramfs, parent, rootfs, version};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use trellis_store::commit::{self, CommitOptions, CommitStats, ParentChoice, Source};
use trellis_store::format::META_VERSION;
use trellis_store::gvariant::{Type, Value};
use trellis_store::sign::SecretKey;
use trellis_store::{Checksum, Repo};

/// Commit metadata key: SHA-256 of the manifest file (`s`).
pub const META_MANIFEST_SHA256: &str = "trellis.manifest-sha256";
/// Commit metadata key: the installed packages, `a(sss)` of (name, version, architecture).
pub const META_PACKAGES: &str = "trellis.packages";

#[derive(Clone, Debug)]
pub struct ComposeOptions {
    /// Where downloaded .debs are kept between runs ([`rootfs::default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// Build the tree here and keep it (converted) for inspection; it must not exist or
    /// be empty. Otherwise the tree is built in the repository's tmp/ and removed.
    pub keep_rootfs: Option<PathBuf>,
    /// The trellis binary installed as /usr/bin/trellis (the CLI passes itself).
    pub trellis_binary: PathBuf,
    /// Commit time, seconds since the epoch; `None` for now.
    pub timestamp: Option<u64>,
}

/// The phases, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Finding the parent (possibly fetching the remote's tip commit).
    Parent,
    /// mmdebstrap.
    Bootstrap,
    /// Host name, overlay, user, trellis binary, hooks, units.
    Customize,
    /// The initramfs, and moving the kernel to /usr/lib/modules.
    Initramfs,
    /// The tree conversion.
    Convert,
    /// Writing objects, the commit and the ref.
    Commit,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Parent => "parent",
            Phase::Bootstrap => "bootstrap",
            Phase::Customize => "customize",
            Phase::Initramfs => "initramfs",
            Phase::Convert => "convert",
            Phase::Commit => "commit",
        }
    }
}

/// Progress reports. Called from the composing thread, except the commit phase's
/// [`commit::Progress`], which may be called from worker threads.
pub trait ComposeProgress: Sync {
    fn phase(&self, _phase: Phase) {}
    /// A line of output from a tool or a step (mmdebstrap's progress, a hook's name).
    fn log(&self, _line: &str) {}
    fn commit_progress(&self) -> &dyn commit::Progress {
        &commit::NoProgress
    }
}

pub struct NoProgress;
impl ComposeProgress for NoProgress {}

/// Seconds spent in each phase.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timings {
    pub parent: f64,
    pub bootstrap: f64,
    pub customize: f64,
    pub initramfs: f64,
    pub convert: f64,
    pub commit: f64,
    pub total: f64,
}

#[derive(Clone, Debug)]
pub struct ComposeOutcome {
    pub ref_name: String,
    /// The new commit, or the parent when the tree was unchanged.
    pub commit: Checksum,
    pub parent: Option<Checksum>,
    /// The remote the parent's commit object was fetched from, if it was.
    pub parent_from_remote: Option<String>,
    /// Requests the parent fetch made.
    pub parent_requests: u64,
    /// The commit's version (the parent's when unchanged).
    pub version: Option<String>,
    /// True when the tree equals the parent's: no new commit, the ref did not move.
    pub unchanged: bool,
    pub stats: CommitStats,
    pub packages: usize,
    pub kernel: String,
    pub manifest_sha256: String,
    pub convert: ConvertReport,
    /// The kept tree (`keep_rootfs`).
    pub rootfs: Option<PathBuf>,
    pub timings: Timings,
}

struct Clock {
    start: Instant,
    last: Instant,
}

impl Clock {
    fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let d = now - self.last;
        self.last = now;
        secs(d)
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Compose `m` into `repo`: build, convert and commit the tree to `m.os.ref_name`.
pub fn compose(
    repo: &mut Repo,
    m: &Manifest,
    opts: &ComposeOptions,
    progress: &dyn ComposeProgress,
) -> Result<ComposeOutcome> {
    let now = Instant::now();
    let mut clock = Clock {
        start: now,
        last: now,
    };
    let mut t = Timings::default();
    if !opts.trellis_binary.is_file() {
        return Err(ComposeError::Invalid(format!(
            "{}: not a file (the trellis binary to install into the tree)",
            opts.trellis_binary.display()
        )));
    }
    let sign_with = m
        .signing_key
        .as_deref()
        .map(|p| {
            SecretKey::from_file(p)
                .map_err(|e| ComposeError::Invalid(format!("signing key {}: {e}", p.display())))
        })
        .transpose()?;

    // Fetching the remote tip first: a bad remote fails before a long build.
    progress.phase(Phase::Parent);
    let ref_name = &m.os.ref_name;
    let mut remote_tip = None;
    let mut parent_requests = 0;
    if repo.read_ref(ref_name)?.is_none()
        && let Some(r) = &m.remote
    {
        let tip = parent::fetch_remote_tip(repo, r, ref_name)?;
        parent_requests = tip.requests;
        remote_tip = tip.commit.map(|c| (c, r.name.clone()));
    }
    t.parent = clock.lap();

    let (work, tree) = work_tree(repo, opts)?;
    progress.phase(Phase::Bootstrap);
    let staging = work.path().join("debs");
    rootfs::bootstrap(m, &tree, &opts.cache_dir, &staging, &mut |l| {
        progress.log(l)
    })?;
    t.bootstrap = clock.lap();

    progress.phase(Phase::Customize);
    let chroot = Chroot::new(&tree, m);
    customize::customize(&chroot, m, &opts.trellis_binary, &mut |l| progress.log(l))?;
    t.customize = clock.lap();

    progress.phase(Phase::Initramfs);
    let kernel = initramfs::kernel_version(&tree)?;
    initramfs::build(&chroot, &kernel)?;
    t.initramfs = clock.lap();

    progress.phase(Phase::Convert);
    let convert = convert::convert(&tree)?;
    let packages = dpkg::installed(&tree.join(DPKG_DB).join("status"))?;
    t.convert = clock.lap();

    progress.phase(Phase::Commit);
    // The local tip is read again now: another compose may have moved it meanwhile.
    let (parent, parent_from_remote) = match repo.read_ref(ref_name)? {
        Some(c) => (Some(c), None),
        None => match remote_tip {
            Some((c, r)) => (Some(c), Some(r)),
            None => (None, None),
        },
    };
    let parent_version = match &parent {
        Some(p) => repo.load_commit(p)?.version().map(str::to_string),
        None => None,
    };
    let timestamp = opts.timestamp.unwrap_or_else(now_secs);
    let version = version::next_version(&m.version, parent_version.as_deref(), timestamp);
    let commit_opts = CommitOptions {
        branch: Some(ref_name.clone()),
        subject: format!("{} {version}", m.os.name),
        body: String::new(),
        timestamp: Some(timestamp),
        metadata: metadata(&version, m, &packages),
        parent: match parent {
            Some(p) => ParentChoice::Commit(p),
            None => ParentChoice::Orphan,
        },
        skip_if_unchanged: true,
        skip_special: false,
        no_bindings: false,
        sign_with,
    };
    let out = commit::commit(
        repo,
        Source::Dir(&tree),
        &commit_opts,
        progress.commit_progress(),
    )?;
    t.commit = clock.lap();
    t.total = secs(clock.start.elapsed());

    let version = if out.unchanged {
        parent_version
    } else {
        Some(version)
    };
    Ok(ComposeOutcome {
        ref_name: ref_name.clone(),
        commit: out.commit,
        parent: out.parent,
        parent_from_remote,
        parent_requests,
        version,
        unchanged: out.unchanged,
        stats: out.stats,
        packages: packages.len(),
        kernel,
        manifest_sha256: m.digest.clone(),
        convert,
        rootfs: opts.keep_rootfs.clone(),
        timings: t,
    })
}

fn metadata(version: &str, m: &Manifest, packages: &[dpkg::Package]) -> Vec<(String, Value)> {
    let list = packages
        .iter()
        .map(|p| {
            Value::Tuple(vec![
                Value::str(p.name.clone()),
                Value::str(p.version.clone()),
                Value::str(p.architecture.clone()),
            ])
        })
        .collect();
    vec![
        (META_VERSION.to_string(), Value::str(version)),
        (
            META_MANIFEST_SHA256.to_string(),
            Value::str(m.digest.clone()),
        ),
        (
            META_PACKAGES.to_string(),
            Value::Array(Type::Tuple(vec![Type::Str, Type::Str, Type::Str]), list),
        ),
    ]
}

/// A work directory in the repository (same filesystem as the objects, and not a tmpfs
/// as /tmp may be), removed when the guard is dropped; and where the tree is built: the
/// kept directory, or in the work directory.
fn work_tree(repo: &Repo, opts: &ComposeOptions) -> Result<(tempfile::TempDir, PathBuf)> {
    let tmp = repo.path().join("tmp");
    let work = tempfile::Builder::new()
        .prefix("compose-")
        .tempdir_in(&tmp)
        .ctx("create directory in", &tmp)?;
    if let Some(dir) = &opts.keep_rootfs {
        if let Some(md) = fsutil::lstat(dir)? {
            if !md.is_dir() || !fsutil::is_empty_dir(dir)? {
                return Err(ComposeError::Invalid(format!(
                    "--keep-rootfs {}: exists and is not an empty directory",
                    dir.display()
                )));
            }
            std::fs::remove_dir(dir).ctx("remove", dir)?;
        }
        return Ok((work, dir.clone()));
    }
    let tree = work.path().join("rootfs");
    Ok((work, tree))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The (name, version, architecture) list a commit made by compose carries.
pub fn packages_of(meta: &Value) -> Option<Vec<dpkg::Package>> {
    let list = meta.vardict_lookup(META_PACKAGES)?;
    let list = list.as_variant().unwrap_or(list);
    list.as_array()?
        .iter()
        .map(|t| {
            let f = t.as_tuple()?;
            Some(dpkg::Package {
                name: f.first()?.as_str()?.to_string(),
                version: f.get(1)?.as_str()?.to_string(),
                architecture: f.get(2)?.as_str()?.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn package_metadata_round_trips_through_gvariant() {
        let text = "[os]\nname = \"debian\"\nref = \"debian/bookworm/amd64\"\n[debian]\n\
                    suite = \"bookworm\"\npackages = [\"linux-image-amd64\"]\n";
        let m = Manifest::parse(text, Path::new("m.toml")).unwrap();
        let pkgs = vec![
            dpkg::Package {
                name: "base-files".into(),
                version: "12.4".into(),
                architecture: "amd64".into(),
            },
            dpkg::Package {
                name: "tzdata".into(),
                version: "2024a-0+deb12u1".into(),
                architecture: "all".into(),
            },
        ];
        let md = metadata("20240601.0", &m, &pkgs);
        assert_eq!(md[0].0, "version");
        let dict = Value::vardict(md);
        let bytes = trellis_store::gvariant::to_bytes(&dict);
        let back =
            trellis_store::gvariant::from_bytes(&Type::parse("a{sv}").unwrap(), &bytes).unwrap();
        assert_eq!(packages_of(&back).unwrap(), pkgs);
        assert_eq!(
            back.vardict_lookup(META_MANIFEST_SHA256)
                .and_then(|v| v.as_variant().unwrap_or(v).as_str()),
            Some(m.digest.as_str())
        );
    }
}
