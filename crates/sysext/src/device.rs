//! The device side: which extensions are installed and whether they match the OS; install
//! a published one (verified), remove one; `systemd-sysext refresh` after either.
//!
//! trellis installs into `/var/lib/extensions/NAME.raw` (the unversioned name systemd 252
//! needs) and records what it installed in `/var/lib/trellis/sysext/NAME.json`: the
//! version, the hash, where it came from and its release file, so that `status` and
//! [`would_stop_matching`] need no image tools on the device.

use crate::arch;
use crate::error::{IoContext, Result, SysextError, bad_image};
use crate::fetch::{MAX_RELEASE, Source};
use crate::fsutil;
use crate::image::{self, Format};
use crate::matching::{self, HostOs, Verdict};
use crate::name;
use crate::osrelease::OsRelease;
use crate::sums::Sums;
use crate::version;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use trellis_tools::Tool;

/// Where systemd-sysext 252 looks for extensions, first match of a name winning.
pub const SEARCH_DIRS: &[&str] = &[
    "etc/extensions",
    "run/extensions",
    "var/lib/extensions",
    "usr/lib/extensions",
    "usr/local/lib/extensions",
];
/// Where trellis installs.
pub const INSTALL_DIR: &str = "var/lib/extensions";
/// Where trellis records what it installed.
pub const STATE_DIR: &str = "var/lib/trellis/sysext";

/// What trellis recorded about an extension it installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub version: String,
    /// The published file it came from (`NAME_VERSION.raw`).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// The extensions URL it came from.
    pub source: String,
    /// Its extension-release file.
    pub release: String,
}

/// One extension found on the device.
#[derive(Clone, Debug, Serialize)]
pub struct Installed {
    pub name: String,
    pub path: PathBuf,
    /// `raw` or `directory`.
    pub kind: &'static str,
    /// Installed by trellis (with a record).
    pub managed: bool,
    pub version: Option<String>,
    pub release: Option<OsRelease>,
    /// Whether it matches the OS (absent when its release data could not be read).
    pub verdict: Option<Verdict>,
    /// Why the release data is unknown, or other remarks.
    pub note: Option<String>,
    /// Images of the same name in later search directories, hidden by this one.
    pub shadows: Vec<PathBuf>,
}

/// One published version, and whether it matches an OS.
#[derive(Clone, Debug, Serialize)]
pub struct Available {
    pub name: String,
    pub version: String,
    pub file: String,
    pub verdict: Verdict,
}

/// What an install did.
#[derive(Clone, Debug, Serialize)]
pub struct InstallReport {
    pub name: String,
    pub version: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// The version it replaced, if trellis had installed one.
    pub replaced: Option<String>,
    /// Why it matches the OS.
    pub matches: String,
    /// Warnings (an image of the same name that hides this one...).
    pub warnings: Vec<String>,
    pub refreshed: bool,
}

/// What to install.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    pub name: String,
    pub version: Option<String>,
    /// The OS the version must match; default: the device's (its os-release, the running
    /// kernel's architecture).
    pub os: Option<HostOs>,
    pub refresh: bool,
}

/// A root directory holding extensions: `/`, or a deployment or test tree.
pub struct Device {
    root: PathBuf,
}

impl Device {
    pub fn new(root: &Path) -> Device {
        Device {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn is_host_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The root's os-release, read as systemd does (/etc first, then /usr/lib).
    pub fn os_release(&self) -> Result<OsRelease> {
        for p in ["etc/os-release", "usr/lib/os-release"] {
            if let Some(data) = fsutil::read_in_root(&self.root, p, 1024 * 1024)? {
                return Ok(OsRelease::parse(&String::from_utf8_lossy(&data)));
            }
        }
        Err(SysextError::Invalid(format!(
            "{} has neither etc/os-release nor usr/lib/os-release",
            self.root.display()
        )))
    }

    /// The OS extensions must match here.
    pub fn host(&self) -> Result<HostOs> {
        Ok(HostOs::new(&self.os_release()?, &arch::host()))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root.join(STATE_DIR).join(format!("{name}.json"))
    }

    fn record(&self, name: &str) -> Result<Option<Record>> {
        let p = self.record_path(name);
        let data = match std::fs::read(&p) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).ctx("read", &p),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| SysextError::Invalid(format!("{}: {e}", p.display())))
    }

    /// Every extension image in the search directories, with its match against `os`
    /// (default: the root's OS). `scratch` is where unmanaged raw images are unpacked to
    /// read their release file.
    pub fn installed(&self, os: Option<&HostOs>, scratch: &Path) -> Result<Vec<Installed>> {
        let host = match os {
            Some(h) => h.clone(),
            None => self.host()?,
        };
        let mut out: Vec<Installed> = Vec::new();
        for dir in SEARCH_DIRS {
            let d = self.root.join(dir);
            if !fsutil::lstat(&d)?.is_some_and(|m| m.is_dir()) {
                continue;
            }
            for e in fsutil::sorted_entries(&d)? {
                let path = e.path();
                let fname = e.file_name().to_string_lossy().into_owned();
                if fname.starts_with('.') {
                    continue;
                }
                let is_dir = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
                let Some(n) = name::image_name(&path, is_dir) else {
                    continue;
                };
                if let Some(first) = out.iter_mut().find(|i| i.name == n) {
                    first.shadows.push(path);
                    continue;
                }
                out.push(self.describe(&n, &path, is_dir, dir, &host, scratch)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn describe(
        &self,
        n: &str,
        path: &Path,
        is_dir: bool,
        dir: &str,
        host: &HostOs,
        scratch: &Path,
    ) -> Result<Installed> {
        let mut it = Installed {
            name: n.to_string(),
            path: path.to_path_buf(),
            kind: if is_dir { "directory" } else { "raw" },
            managed: false,
            version: None,
            release: None,
            verdict: None,
            note: None,
            shadows: Vec::new(),
        };
        if is_dir {
            it.release = image::read_release(path, n)?;
            if it.release.is_none() {
                it.note = Some(if dir == "etc/extensions" {
                    "masks this name (a directory without a release file)".into()
                } else {
                    format!("has no {}", image::release_path(n))
                });
            }
        } else {
            let record = self.record(n)?;
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            match record {
                Some(r) if dir == INSTALL_DIR && r.size == size => {
                    it.managed = true;
                    it.version = Some(r.version.clone());
                    it.release = Some(OsRelease::parse(&r.release));
                }
                _ => match image::open(path, scratch) {
                    Ok(img) => {
                        it.release = image::read_release(&img.root, n)?;
                        if it.release.is_none() {
                            it.note = Some(format!("has no {}", image::release_path(n)));
                        }
                    }
                    Err(e) => it.note = Some(format!("cannot read it: {e}")),
                },
            }
        }
        if let Some(r) = &it.release {
            if it.version.is_none() {
                it.version = r.get("SYSEXT_VERSION_ID").map(str::to_string);
            }
            it.verdict = Some(matching::validate(r, host));
        }
        Ok(it)
    }

    /// Install a published extension: the newest version (or the one asked for) whose
    /// release matches the OS; downloaded next to its place, verified, renamed into
    /// place; then `systemd-sysext refresh` unless told not to.
    pub fn install(&self, source: &Source, opts: &InstallOptions) -> Result<InstallReport> {
        name::validate_name(&opts.name)?;
        if let Some(v) = &opts.version {
            name::validate_version(v)?;
        }
        let host = match &opts.os {
            Some(h) => h.clone(),
            None => self.host()?,
        };
        let index = source.index()?;
        let (version, verdict) = pick(source, &index, &opts.name, opts.version.as_deref(), &host)?;
        let dir = self.root.join(INSTALL_DIR);
        let dest = dir.join(format!("{}{}", opts.name, name::RAW_SUFFIX));
        if fsutil::lstat(&dest)?.is_some_and(|m| m.is_dir()) {
            return Err(SysextError::Invalid(format!(
                "{} is a directory: remove it before installing a raw image of that name",
                dest.display()
            )));
        }
        let mut warnings = Vec::new();
        for d in &SEARCH_DIRS[..2] {
            for candidate in [
                self.root.join(d).join(&opts.name),
                self.root
                    .join(d)
                    .join(format!("{}{}", opts.name, name::RAW_SUFFIX)),
            ] {
                if fsutil::lstat(&candidate)?.is_some() {
                    warnings.push(format!(
                        "{} hides the installed image (systemd uses the first it finds)",
                        candidate.display()
                    ));
                }
            }
        }
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        let file = name::published_file(&opts.name, &version);
        let release_file = name::published_release(&opts.name, &version);
        let release = source.fetch_small(&index, &release_file, MAX_RELEASE)?;
        let tmp = source.download(&index, &file, &dir)?;
        match image::detect(tmp.path()) {
            Ok(f) if f.is_raw() => {}
            Ok(Format::Dir) | Ok(_) | Err(_) => {
                return Err(bad_image(
                    Path::new(&file),
                    "is not an erofs or squashfs image; nothing is installed",
                ));
            }
        }
        let size = tmp.as_file().metadata().ctx("stat", tmp.path())?.len();
        std::fs::set_permissions(
            tmp.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .ctx("chmod", tmp.path())?;
        let replaced = self.record(&opts.name)?.map(|r| r.version);
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .ctx("rename into", &dest)?;
        fsutil::sync_dir(&dir)?;
        let sha256 = hex::encode(index.entries[&file]);
        let record = Record {
            name: opts.name.clone(),
            version: version.clone(),
            file,
            sha256: sha256.clone(),
            size,
            source: source.url.clone(),
            release: String::from_utf8_lossy(&release).into_owned(),
        };
        let state = self.root.join(STATE_DIR);
        std::fs::create_dir_all(&state).ctx("create directory", &state)?;
        let json = serde_json::to_vec_pretty(&record)
            .map_err(|e| SysextError::Invalid(format!("encoding the install record: {e}")))?;
        fsutil::write_atomic(&self.record_path(&opts.name), &json, 0o644)?;
        if opts.refresh {
            self.refresh()?;
        }
        Ok(InstallReport {
            name: opts.name.clone(),
            version,
            path: dest,
            sha256,
            size,
            replaced,
            matches: verdict,
            warnings,
            refreshed: opts.refresh,
        })
    }

    /// Remove an extension trellis installed; returns the removed image's path.
    pub fn remove(&self, n: &str, refresh: bool) -> Result<PathBuf> {
        name::validate_name(n)?;
        let dir = self.root.join(INSTALL_DIR);
        let raw = dir.join(format!("{n}{}", name::RAW_SUFFIX));
        match fsutil::lstat(&raw)? {
            Some(m) if m.is_file() || m.is_symlink() => {
                std::fs::remove_file(&raw).ctx("remove", &raw)?;
                fsutil::sync_dir(&dir)?;
            }
            Some(_) => {
                return Err(SysextError::Invalid(format!(
                    "{} is not a regular file; remove it yourself",
                    raw.display()
                )));
            }
            None => {
                let hint = if fsutil::lstat(&dir.join(n))?.is_some() {
                    format!(
                        " ({} is a directory image trellis did not install; remove it yourself)",
                        dir.join(n).display()
                    )
                } else {
                    String::new()
                };
                return Err(SysextError::Invalid(format!(
                    "extension {n:?} is not installed: no {}{hint}",
                    raw.display()
                )));
            }
        }
        fsutil::remove(&self.record_path(n))?;
        if refresh {
            self.refresh()?;
        }
        Ok(raw)
    }

    /// `systemd-sysext refresh` (with `--root` for anything but `/`).
    pub fn refresh(&self) -> Result<String> {
        let mut t = Tool::new("systemd-sysext").arg("refresh");
        if !self.is_host_root() {
            t = t.arg(format!("--root={}", self.root.display()));
        }
        let out = t.run()?;
        Ok(format!("{}{}", out.stdout_text(), out.stderr_text()))
    }
}

/// The published versions of `name`, newest first.
pub fn published_versions(index: &Sums, name: &str) -> Vec<String> {
    let mut v: Vec<String> = index
        .entries
        .keys()
        .filter_map(|f| name::parse_published(f))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
        .collect();
    v.sort_by(|a, b| version::compare(b, a));
    v
}

/// Every published extension version with its verdict against `os` (newest first per
/// name). Fetches each version's small release file.
pub fn available(source: &Source, os: &HostOs) -> Result<Vec<Available>> {
    let index = source.index()?;
    let mut names: Vec<String> = index
        .entries
        .keys()
        .filter_map(|f| name::parse_published(f).map(|(n, _)| n.to_string()))
        .collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for n in names {
        for v in published_versions(&index, &n) {
            let verdict = release_verdict(source, &index, &n, &v, os)?;
            out.push(Available {
                file: name::published_file(&n, &v),
                name: n.clone(),
                version: v,
                verdict,
            });
        }
    }
    Ok(out)
}

fn release_verdict(
    source: &Source,
    index: &Sums,
    n: &str,
    v: &str,
    os: &HostOs,
) -> Result<Verdict> {
    let rf = name::published_release(n, v);
    if !index.entries.contains_key(&rf) {
        return Ok(Verdict::Mismatch(format!(
            "no {rf} is published (cannot tell which OS it is for)"
        )));
    }
    let data = source.fetch_small(index, &rf, MAX_RELEASE)?;
    Ok(matching::validate(
        &OsRelease::parse(&String::from_utf8_lossy(&data)),
        os,
    ))
}

/// The newest published version of `name` (or exactly `version`) matching `os`, and why
/// it matches.
pub fn pick(
    source: &Source,
    index: &Sums,
    n: &str,
    version: Option<&str>,
    os: &HostOs,
) -> Result<(String, String)> {
    let all = published_versions(index, n);
    if all.is_empty() {
        let mut names: Vec<String> = index
            .entries
            .keys()
            .filter_map(|f| name::parse_published(f).map(|(n, _)| n.to_string()))
            .collect();
        names.dedup();
        return Err(SysextError::Invalid(format!(
            "no extension named {n:?} is published at {} (published: {})",
            source.url,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    let candidates: Vec<&String> = match version {
        Some(v) => {
            let c: Vec<_> = all.iter().filter(|x| x.as_str() == v).collect();
            if c.is_empty() {
                return Err(SysextError::Invalid(format!(
                    "{n}@{v} is not published at {} (versions: {})",
                    source.url,
                    all.join(", ")
                )));
            }
            c
        }
        None => all.iter().collect(),
    };
    let mut reasons = Vec::new();
    for v in candidates {
        match release_verdict(source, index, n, v, os)? {
            Verdict::Match(why) => return Ok((v.clone(), why)),
            Verdict::Mismatch(why) => reasons.push(format!("{v}: {why}")),
        }
    }
    Err(SysextError::Invalid(format!(
        "no published version of {n} matches this OS ({}): {}",
        os.describe(),
        reasons.join("; ")
    )))
}

/// An installed extension that would stop matching.
#[derive(Clone, Debug, Serialize)]
pub struct Mismatch {
    pub name: String,
    pub version: Option<String>,
    pub path: PathBuf,
    pub reason: String,
}

/// For `admin upgrade`: which extensions installed under `root` match the OS now but
/// would not match an OS with `new_os_release` (the staged commit's os-release text).
pub fn would_stop_matching(
    root: &Path,
    new_os_release: &str,
    scratch: &Path,
) -> Result<Vec<Mismatch>> {
    let dev = Device::new(root);
    let now = dev.host()?;
    let next = HostOs::new(&OsRelease::parse(new_os_release), &now.architecture);
    let mut out = Vec::new();
    for it in dev.installed(Some(&now), scratch)? {
        let (Some(rel), Some(v)) = (&it.release, &it.verdict) else {
            continue;
        };
        if !v.matches() {
            continue;
        }
        if let Verdict::Mismatch(reason) = matching::validate(rel, &next) {
            out.push(Mismatch {
                name: it.name,
                version: it.version,
                path: it.path,
                reason,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_with(os: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("usr/lib")).unwrap();
        std::fs::write(d.path().join("usr/lib/os-release"), os).unwrap();
        d
    }

    fn dir_ext(root: &Path, dir: &str, n: &str, release: Option<&str>) {
        let p = root.join(dir).join(n);
        std::fs::create_dir_all(p.join(image::RELEASE_DIR)).unwrap();
        if let Some(r) = release {
            std::fs::write(p.join(image::release_path(n)), r).unwrap();
        }
    }

    #[test]
    fn status_and_upgrade_warnings() {
        let r = root_with("ID=debian\nVERSION_ID=12\n");
        let root = r.path();
        dir_ext(
            root,
            INSTALL_DIR,
            "debug",
            Some("ID=debian\nVERSION_ID=12\n"),
        );
        dir_ext(root, INSTALL_DIR, "anyos", Some("ID=_any\n"));
        dir_ext(root, INSTALL_DIR, "old", Some("ID=debian\nVERSION_ID=11\n"));
        // Masked by an empty directory in /etc/extensions.
        dir_ext(
            root,
            INSTALL_DIR,
            "masked",
            Some("ID=debian\nVERSION_ID=12\n"),
        );
        dir_ext(root, "etc/extensions", "masked", None);
        let dev = Device::new(root);
        let all = dev.installed(None, root).unwrap();
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["anyos", "debug", "masked", "old"]);
        let get = |n: &str| all.iter().find(|i| i.name == n).unwrap();
        assert!(get("debug").verdict.as_ref().unwrap().matches());
        assert!(!get("old").verdict.as_ref().unwrap().matches());
        assert!(get("masked").verdict.is_none());
        assert!(get("masked").note.as_ref().unwrap().contains("masks"));
        assert_eq!(get("masked").shadows.len(), 1);

        let stop = would_stop_matching(root, "ID=debian\nVERSION_ID=13\n", root).unwrap();
        let names: Vec<_> = stop.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debug"]);
        assert!(
            stop[0]
                .reason
                .contains("VERSION_ID=12 but the OS has VERSION_ID=13")
        );
        assert!(
            would_stop_matching(root, "ID=debian\nVERSION_ID=12\n", root)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn remove_refuses_what_is_not_there() {
        let r = root_with("ID=debian\n");
        let dev = Device::new(r.path());
        let e = dev.remove("debug", false).unwrap_err().to_string();
        assert!(e.contains("not installed"), "{e}");
        assert!(dev.remove("../x", false).is_err());
        std::fs::create_dir_all(r.path().join(INSTALL_DIR)).unwrap();
        std::fs::write(r.path().join(INSTALL_DIR).join("debug.raw"), "x").unwrap();
        assert_eq!(
            dev.remove("debug", false).unwrap(),
            r.path().join(INSTALL_DIR).join("debug.raw")
        );
        assert!(!r.path().join(INSTALL_DIR).join("debug.raw").exists());
    }

    #[test]
    fn versions_newest_first() {
        let mut s = Sums::default();
        for f in [
            "debug_1.9.raw",
            "debug_1.10.raw",
            "debug_1.10.release",
            "other_5.raw",
            "junk",
        ] {
            s.entries.insert(f.to_string(), [0; 32]);
        }
        assert_eq!(published_versions(&s, "debug"), ["1.10", "1.9"]);
        assert_eq!(published_versions(&s, "nope"), Vec::<String>::new());
    }
}
