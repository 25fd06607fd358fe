//! `trellis sysext build`: an extension holding what a set of Debian packages adds to a
//! base commit, as mkosi builds one over a base tree.
//!
//! 1. check the base commit out; 2. install the packages over it in an overlay with apt
//!    in a chroot ([`overlay`]); 3. keep what was added under /usr and /opt
//!    ([`collect`]); 4. write the extension-release file from the base's os-release;
//!    5. fix every timestamp to the base commit's; 6. pack ([`crate::pack`]).

pub mod collect;
pub mod overlay;

use crate::base::{self, BaseInfo};
use crate::error::{IoContext, Result, SysextError};
use crate::fsutil;
use crate::image::{self, Format};
use crate::matching::HostOs;
use crate::name;
use crate::osrelease::OsRelease;
use crate::pack;
use collect::{Collected, Dropped};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;
use trellis_compose::dpkg::Package;
use trellis_store::Repo;
use trellis_store::checkout::{CheckoutOptions, checkout_commit};

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The base commit: a ref or checksum in the repository.
    pub rev: String,
    pub name: String,
    /// Debian packages (`name`, `name=version`, `name/suite`).
    pub packages: Vec<String>,
    /// A directory to put the image in, or the image path itself.
    pub output: PathBuf,
    pub format: Format,
    /// SYSEXT_VERSION_ID; derived from the base and the packages when absent.
    pub version: Option<String>,
    /// The .deb cache shared with `trellis compose`.
    pub cache: PathBuf,
    /// Where the checkout and the overlay are made (on disk, not a small tmpfs).
    pub workdir: PathBuf,
}

/// Seconds spent in each step.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    pub checkout: f64,
    pub install: f64,
    pub collect: f64,
    pub pack: f64,
    pub total: f64,
}

/// What was built.
#[derive(Clone, Debug, Serialize)]
pub struct BuildReport {
    pub name: String,
    pub version: String,
    pub format: Format,
    pub output: PathBuf,
    /// Size of the image file (raw) or of its content (directory).
    pub size: u64,
    pub base: BaseInfo,
    /// The OS it matches.
    pub os: HostOs,
    pub release: OsRelease,
    pub packages: Vec<Package>,
    pub files: u64,
    pub symlinks: u64,
    pub dirs: u64,
    /// Bytes of file content in the extension.
    pub content_bytes: u64,
    /// Files in the extension that no installed package lists, besides the release file
    /// (made by maintainer scripts).
    pub not_packaged: Vec<String>,
    pub dropped: Vec<Dropped>,
    pub timings: Timings,
}

impl BuildReport {
    /// Dropped paths users should hear about.
    pub fn warnings(&self) -> impl Iterator<Item = &Dropped> {
        self.dropped.iter().filter(|d| d.reason.warns())
    }
}

/// Check a package argument: apt's package syntax, never an option.
pub fn validate_package(p: &str) -> Result<()> {
    let ok = p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && p.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b':' | b'=' | b'/' | b'~')
        });
    if ok {
        Ok(())
    } else {
        Err(SysextError::Invalid(format!(
            "invalid package {p:?}: give Debian package names (name, name=version or \
             name/suite)"
        )))
    }
}

/// Build an extension. Needs root (overlay mount, chroot, file ownership). apt's output
/// lines go to `on_line`.
pub fn build(
    repo: &Repo,
    opts: &BuildOptions,
    on_line: &mut dyn FnMut(&str),
) -> Result<BuildReport> {
    let t0 = Instant::now();
    name::validate_name(&opts.name)?;
    if opts.packages.is_empty() {
        return Err(SysextError::Invalid(
            "no packages: give --packages NAME[,NAME...]".into(),
        ));
    }
    for p in &opts.packages {
        validate_package(p)?;
    }
    if let Some(v) = &opts.version {
        name::validate_version(v)?;
    }
    if !rustix::process::geteuid().is_root() {
        return Err(SysextError::NeedsRoot(
            "sysext build needs root: it mounts an overlay and runs apt in a chroot in a \
             private mount namespace"
                .into(),
        ));
    }
    let mkfs = match opts.format {
        Format::Dir => None,
        Format::Erofs => Some("mkfs.erofs"),
        Format::Squashfs => Some("mksquashfs"),
    };
    let mut tools = vec!["unshare", "chroot", "mount"];
    tools.extend(mkfs);
    trellis_tools::require(&tools)?;
    let dest = pack::destination(&opts.output, &opts.name, opts.format)?;
    let base = base::read(repo, &opts.rev)?;
    if base.os_release.get("ID").is_none() {
        return Err(SysextError::Invalid(format!(
            "the os-release of commit {} has no ID: an extension needs one to match its base",
            base.commit
        )));
    }

    std::fs::create_dir_all(&opts.workdir).ctx("create directory", &opts.workdir)?;
    let work = tempfile::Builder::new()
        .prefix("trellis-sysext-build-")
        .tempdir_in(&opts.workdir)
        .ctx("create directory in", &opts.workdir)?;
    let w = work.path();
    let (base_dir, upper) = (w.join("base"), w.join("upper"));
    let commit = repo.resolve_rev(&base.commit)?;
    checkout_commit(repo, &commit, &base_dir, &CheckoutOptions::default())?;
    let t_checkout = t0.elapsed().as_secs_f64();

    let t1 = Instant::now();
    overlay::seed_cache(&opts.cache, &upper)?;
    let env = build_env(base.timestamp);
    overlay::install(
        &overlay::Layers {
            base: &base_dir,
            upper: &upper,
            work: &w.join("overlay-work"),
            merged: &w.join("merged"),
        },
        &opts.packages,
        &env,
        on_line,
    )?;
    overlay::adopt_debs(&upper, &opts.cache)?;
    let t_install = t1.elapsed().as_secs_f64();

    let t2 = Instant::now();
    let packages = collect::new_packages(&base_dir, &upper)?;
    if packages.is_empty() {
        return Err(SysextError::Invalid(format!(
            "nothing to add: {} already installed in the base commit {}",
            opts.packages.join(", "),
            base.commit
        )));
    }
    let packaged = collect::packaged_paths(&base_dir, &upper, &packages)?;
    let ext = w.join("ext");
    let collected = collect::collect(&base_dir, &upper, &ext, packages, &packaged)?;
    let version = match &opts.version {
        Some(v) => v.clone(),
        None => default_version(&base, &collected.packages),
    };
    let release = release_for(&base, &opts.name, &version, &collected.packages);
    write_release(&ext, &opts.name, &release)?;
    set_times_recursive(&ext, base.timestamp as i64)?;
    let t_collect = t2.elapsed().as_secs_f64();

    let t3 = Instant::now();
    let uuid = pack::uuid_from(&format!("{} {version} {}", opts.name, base.commit));
    let size = pack::pack(&ext, opts.format, &dest, base.timestamp, &uuid)?;
    let t_pack = t3.elapsed().as_secs_f64();

    let Collected {
        packages,
        files,
        symlinks,
        dirs,
        bytes,
        not_packaged,
        dropped,
    } = collected;
    Ok(BuildReport {
        name: opts.name.clone(),
        version,
        format: opts.format,
        output: dest,
        size,
        os: base.host(),
        base,
        release,
        packages,
        files: files + 1,
        symlinks,
        dirs,
        content_bytes: bytes,
        not_packaged,
        dropped,
        timings: Timings {
            checkout: t_checkout,
            install: t_install,
            collect: t_collect,
            pack: t_pack,
            total: t0.elapsed().as_secs_f64(),
        },
    })
}

/// The environment apt and the maintainer scripts run in.
fn build_env(epoch: u64) -> Vec<(String, String)> {
    [
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ("HOME", "/root"),
        ("LC_ALL", "C.UTF-8"),
        ("DEBIAN_FRONTEND", "noninteractive"),
        ("INITRD", "No"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([("SOURCE_DATE_EPOCH".to_string(), epoch.to_string())])
    .collect()
}

/// `BASEVERSION-HASH`: the base's version (or its date), and 8 hex digits of the
/// installed packages and their versions. Same inputs, same version; a new base sorts
/// newer.
pub fn default_version(base: &BaseInfo, packages: &[Package]) -> String {
    let base_part = base
        .version
        .as_deref()
        .map(name::sanitize_version)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| date_version(base.timestamp));
    let list: String = packages
        .iter()
        .map(|p| format!("{}:{}={}\n", p.name, p.architecture, p.version))
        .collect();
    let h = hex::encode(crate::sums::sha256(list.as_bytes()));
    format!("{base_part}-{}", &h[..8])
}

/// `YYYYMMDDHHMMSS` in UTC.
fn date_version(ts: u64) -> String {
    let days = (ts / 86400) as i64;
    let secs = ts % 86400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The extension-release fields: what the base's os-release says it must match, plus
/// what the extension is.
pub fn release_for(base: &BaseInfo, name: &str, version: &str, packages: &[Package]) -> OsRelease {
    let mut f: Vec<(String, String)> = Vec::new();
    let osr = &base.os_release;
    for key in ["ID", "VERSION_ID", "SYSEXT_LEVEL"] {
        if let Some(v) = osr.get(key) {
            f.push((key.into(), v.into()));
        }
    }
    f.push(("ARCHITECTURE".into(), base.architecture.clone()));
    f.push(("SYSEXT_ID".into(), name.into()));
    f.push(("SYSEXT_VERSION_ID".into(), version.into()));
    f.push(("TRELLIS_BASE_COMMIT".into(), base.commit.clone()));
    if let Some(v) = &base.version {
        f.push(("TRELLIS_BASE_VERSION".into(), v.clone()));
    }
    let list: Vec<String> = packages
        .iter()
        .map(|p| format!("{}={}", p.name, p.version))
        .collect();
    f.push(("TRELLIS_PACKAGES".into(), list.join(" ")));
    OsRelease::from_fields(f)
}

fn write_release(ext: &Path, name: &str, release: &OsRelease) -> Result<()> {
    let path = ext.join(image::release_path(name));
    let dir = fsutil::parent(&path);
    let mut cur = ext.to_path_buf();
    for c in Path::new(image::RELEASE_DIR).components() {
        cur.push(c);
        if fsutil::lstat(&cur)?.is_none() {
            std::fs::create_dir(&cur).ctx("create directory", &cur)?;
            std::fs::set_permissions(&cur, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .ctx("chmod", &cur)?;
        }
    }
    debug_assert_eq!(cur, dir);
    std::fs::write(&path, release.to_text()).ctx("write", &path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .ctx("chmod", &path)
}

/// Every entry's timestamps to `secs`, children before their directory.
fn set_times_recursive(path: &Path, secs: i64) -> Result<()> {
    let md = std::fs::symlink_metadata(path).ctx("stat", path)?;
    if md.is_dir() {
        for e in fsutil::sorted_entries(path)? {
            set_times_recursive(&e.path(), secs)?;
        }
    }
    fsutil::set_times(path, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> BaseInfo {
        BaseInfo {
            commit: "ab".repeat(32),
            timestamp: 1_700_000_000,
            version: Some("20240601.1".into()),
            os_release: OsRelease::parse("ID=debian\nVERSION_ID=\"12\"\nNAME=Debian\n"),
            dpkg_architecture: "amd64".into(),
            architecture: "x86-64".into(),
            packages: Vec::new(),
        }
    }

    fn pkg(n: &str, v: &str) -> Package {
        Package {
            name: n.into(),
            version: v.into(),
            architecture: "amd64".into(),
        }
    }

    #[test]
    fn release_fields() {
        let r = release_for(&base(), "debug", "1.0", &[pkg("strace", "6.1-0.1")]);
        assert_eq!(
            r.to_text(),
            format!(
                "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\nSYSEXT_ID=debug\n\
                 SYSEXT_VERSION_ID=1.0\nTRELLIS_BASE_COMMIT={}\nTRELLIS_BASE_VERSION=20240601.1\n\
                 TRELLIS_PACKAGES=\"strace=6.1-0.1\"\n",
                "ab".repeat(32)
            )
        );
        // It matches its own base.
        assert!(crate::matching::validate(&r, &base().host()).matches());
    }

    #[test]
    fn default_versions() {
        let a = default_version(&base(), &[pkg("strace", "6.1-0.1")]);
        assert!(a.starts_with("20240601.1-"), "{a}");
        assert!(name::validate_version(&a).is_ok());
        assert_eq!(a, default_version(&base(), &[pkg("strace", "6.1-0.1")]));
        assert_ne!(a, default_version(&base(), &[pkg("strace", "6.1-0.2")]));
        let mut b = base();
        b.version = None;
        assert!(default_version(&b, &[]).starts_with("20231114221320-"));
        assert_eq!(date_version(0), "19700101000000");
        assert_eq!(date_version(951_782_400), "20000229000000");
    }

    #[test]
    fn package_arguments() {
        for ok in [
            "gdb",
            "libc6=2.36-9",
            "strace/bookworm-backports",
            "g++",
            "lib32z1:i386",
        ] {
            assert!(validate_package(ok).is_ok(), "{ok}");
        }
        for bad in ["-o", "--allow-unauthenticated", "a b", "x;rm", ""] {
            assert!(validate_package(bad).is_err(), "{bad}");
        }
    }
}
