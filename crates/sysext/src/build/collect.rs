//! From the overlay's upper directory to the extension tree: keep what the packages added
//! under /usr and /opt, drop everything else, and say what was dropped and why.
//!
//! The rules (the result is purely additive: it never shadows a file of the base):
//! - whiteouts (deletions) are dropped: an extension cannot delete a base file;
//! - a file or symlink that exists in the base was modified, not added: dropped (so the
//!   extension cannot hide the base's copy, which base updates may change);
//! - `/usr/etc` is the base's /etc: configuration belongs in a confext, dropped;
//! - the dpkg database under `/usr/lib/sysimage/dpkg` is dropped whole: an updated
//!   `status` file in the extension would shadow the base's, and be wrong after the next
//!   base upgrade (the packages the extension holds are listed in its release file);
//! - everything outside /usr and /opt is dropped (systemd-sysext merges only those);
//! - directories that existed in the base and end up empty are removed, and so are new
//!   ones that are empty and no package ships;
//! - overlayfs's own `trusted.overlay.*` attributes are removed.

use crate::base::DPKG_STATUS_PATHS;
use crate::error::{IoContext, Result, SysextError};
use crate::fsutil;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use trellis_compose::dpkg::{self, Package};
use trellis_store::xattr::{self, Target};

use trellis_compose::convert::DPKG_DB;

/// Why a path of the upper directory is not in the extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DropReason {
    /// Deleted a base file (an overlay whiteout).
    Deletes,
    /// Changed a file, symlink or directory of the base.
    ModifiesBase,
    /// Configuration in /etc (the commit's /usr/etc).
    Etc,
    /// The dpkg database.
    DpkgDatabase,
    /// Written outside /usr and /opt (by a maintainer script).
    Outside,
    /// A device node, FIFO or socket.
    Special,
}

impl DropReason {
    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Deletes => "deletes a base file (an extension can only add files)",
            DropReason::ModifiesBase => {
                "changes a base file (an extension must not shadow the base)"
            }
            DropReason::Etc => "configuration in /etc (not part of a system extension)",
            DropReason::DpkgDatabase => "the dpkg database (it would shadow the base's)",
            DropReason::Outside => "outside /usr and /opt (not merged by systemd-sysext)",
            DropReason::Special => "a device node, FIFO or socket",
        }
    }

    /// Whether users should hear about it (the dpkg database is always dropped).
    pub fn warns(self) -> bool {
        self != DropReason::DpkgDatabase
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dropped {
    pub path: String,
    pub reason: DropReason,
}

/// What the extension tree holds, and what was left out.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Collected {
    /// Packages the installation added (name, version, architecture).
    pub packages: Vec<Package>,
    pub files: u64,
    pub symlinks: u64,
    pub dirs: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// Kept files and symlinks no new package lists (made by maintainer scripts).
    pub not_packaged: Vec<String>,
    pub dropped: Vec<Dropped>,
}

/// Files of our own making in the upper directory: the chroot's plumbing, apt's lists and
/// logs, the copy of /var from the factory. Dropped without a word.
const NOISE: &[&str] = &[
    "dev",
    "etc",
    "proc",
    "run",
    "tmp",
    "var/cache/apt",
    "var/cache/debconf",
    "var/cache/ldconfig",
    "var/lib/apt",
    "var/lib/dpkg",
    "var/log/apt",
    "var/log/dpkg.log",
    "var/tmp",
    // Our bind mount point for the host's resolver, and the loader cache that ldconfig
    // rewrites for every library (the loader finds libraries in the standard directories
    // without it).
    "usr/etc/resolv.conf",
    "usr/etc/ld.so.cache",
];

fn is_noise(rel: &str) -> bool {
    NOISE
        .iter()
        .any(|n| rel == *n || rel.strip_prefix(n).is_some_and(|r| r.starts_with('/')))
}

/// Compare the base's packages with those after the installation; the new ones, or an
/// error when the base's own packages would change.
pub fn new_packages(base: &Path, upper: &Path) -> Result<Vec<Package>> {
    let Some(rel) = DPKG_STATUS_PATHS
        .iter()
        .find(|p| base.join(p).is_file())
        .copied()
    else {
        return Err(SysextError::Invalid(
            "the base checkout has no dpkg status file".into(),
        ));
    };
    let before = dpkg::installed(&base.join(rel))?;
    let after_path = upper.join(rel);
    if !after_path.is_file() {
        return Ok(Vec::new());
    }
    let after = dpkg::installed(&after_path)?;
    let key = |p: &Package| (p.name.clone(), p.architecture.clone());
    let before_map: BTreeMap<_, _> = before.iter().map(|p| (key(p), p)).collect();
    let after_map: BTreeMap<_, _> = after.iter().map(|p| (key(p), p)).collect();
    let mut changed = Vec::new();
    for (k, b) in &before_map {
        match after_map.get(k) {
            None => changed.push(format!("{} {} (removed)", b.name, b.version)),
            Some(a) if a.version != b.version => {
                changed.push(format!("{} {} -> {}", b.name, b.version, a.version))
            }
            Some(_) => {}
        }
    }
    if !changed.is_empty() {
        return Err(SysextError::Invalid(format!(
            "installing these packages would change packages of the base commit: {}. An \
             extension can only add files; compose a newer base (the mirror has newer \
             versions than the base) or choose packages that fit it",
            changed.join(", ")
        )));
    }
    Ok(after_map
        .into_iter()
        .filter(|(k, _)| !before_map.contains_key(k))
        .map(|(_, p)| p.clone())
        .collect())
}

/// The paths (relative, `/usr`-merged) the new packages ship, from their dpkg file lists.
pub fn packaged_paths(base: &Path, upper: &Path, packages: &[Package]) -> Result<HashSet<String>> {
    let info = upper.join(DPKG_DB).join("info");
    let mut out = HashSet::new();
    for p in packages {
        let candidates = [
            info.join(format!("{}:{}.list", p.name, p.architecture)),
            info.join(format!("{}.list", p.name)),
        ];
        let Some(list) = candidates.iter().find(|c| c.is_file()) else {
            continue;
        };
        let text = std::fs::read_to_string(list).ctx("read", list)?;
        for line in text.lines() {
            let rel = line.trim_start_matches('/');
            if rel.is_empty() || rel == "." {
                continue;
            }
            out.insert(usr_merged(base, rel));
        }
    }
    Ok(out)
}

/// `/bin/x` is `/usr/bin/x` when the base's /bin is a symlink into /usr.
fn usr_merged(base: &Path, rel: &str) -> String {
    let (first, rest) = rel.split_once('/').unwrap_or((rel, ""));
    if matches!(first, "bin" | "sbin" | "lib" | "lib32" | "lib64" | "libx32")
        && std::fs::symlink_metadata(base.join(first)).is_ok_and(|m| m.is_symlink())
    {
        if rest.is_empty() {
            return format!("usr/{first}");
        }
        return format!("usr/{first}/{rest}");
    }
    rel.to_string()
}

struct Walk<'a> {
    base: &'a Path,
    packaged: &'a HashSet<String>,
    out: Collected,
}

/// Move /usr and /opt of `upper` into `ext` (which must not exist) and clean them up;
/// report everything else in `upper` that was dropped.
pub fn collect(
    base: &Path,
    upper: &Path,
    ext: &Path,
    packages: Vec<Package>,
    packaged: &HashSet<String>,
) -> Result<Collected> {
    std::fs::create_dir(ext).ctx("create directory", ext)?;
    std::fs::set_permissions(ext, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .ctx("chmod", ext)?;
    let mut w = Walk {
        base,
        packaged,
        out: Collected {
            packages,
            ..Default::default()
        },
    };
    for h in crate::check::HIERARCHIES {
        let src = upper.join(h);
        if fsutil::lstat(&src)?.is_some_and(|m| m.is_dir()) {
            let dst = ext.join(h);
            std::fs::rename(&src, &dst).ctx("move into the extension", &src)?;
            let keep = w.dir(&dst, h)?;
            strip_overlay_xattrs(&dst)?;
            if !keep {
                std::fs::remove_dir(&dst).ctx("remove", &dst)?;
            }
        }
    }
    // What is left in the upper directory was written outside /usr and /opt.
    report_outside(base, upper, "", &mut w.out)?;
    w.out
        .dropped
        .sort_by(|a, b| (a.reason, &a.path).cmp(&(b.reason, &b.path)));
    w.out.not_packaged.sort();
    Ok(w.out)
}

impl Walk<'_> {
    /// Clean directory `path` (relative `rel`); returns whether it is kept.
    fn dir(&mut self, path: &Path, rel: &str) -> Result<bool> {
        let mut kept_any = false;
        for e in fsutil::sorted_entries(path)? {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let r = format!("{rel}/{name}");
            if self.entry(&p, &r)? {
                kept_any = true;
            } else {
                fsutil::remove(&p)?;
            }
        }
        Ok(kept_any)
    }

    fn drop(&mut self, rel: &str, reason: DropReason) {
        if !is_noise(rel) {
            self.out.dropped.push(Dropped {
                path: format!("/{rel}"),
                reason,
            });
        }
    }

    /// Report every non-directory under `path` as dropped for `reason`.
    fn drop_tree(&mut self, path: &Path, rel: &str, reason: DropReason) -> Result<()> {
        let md = std::fs::symlink_metadata(path).ctx("stat", path)?;
        if md.is_dir() {
            for e in fsutil::sorted_entries(path)? {
                let r = format!("{rel}/{}", e.file_name().to_string_lossy());
                self.drop_tree(&e.path(), &r, reason)?;
            }
        } else {
            self.drop(rel, reason);
        }
        Ok(())
    }

    /// One entry; returns whether it is kept.
    fn entry(&mut self, path: &Path, rel: &str) -> Result<bool> {
        let md = std::fs::symlink_metadata(path).ctx("stat", path)?;
        let ft = md.file_type();
        if ft.is_char_device() && md.rdev() == 0 {
            self.drop(rel, DropReason::Deletes);
            return Ok(false);
        }
        if rel == "usr/etc" || rel.starts_with("usr/etc/") {
            self.drop_tree(path, rel, DropReason::Etc)?;
            return Ok(false);
        }
        if rel == DPKG_DB || rel.starts_with(&format!("{DPKG_DB}/")) {
            self.drop_tree(path, rel, DropReason::DpkgDatabase)?;
            return Ok(false);
        }
        let in_base = fsutil::lstat(&self.base.join(rel))?;
        if ft.is_dir() {
            match &in_base {
                Some(b) if !b.is_dir() => {
                    self.drop_tree(path, rel, DropReason::ModifiesBase)?;
                    return Ok(false);
                }
                _ => {}
            }
            let kept_any = self.dir(path, rel)?;
            let keep = kept_any || (in_base.is_none() && self.packaged.contains(rel));
            if keep {
                strip_overlay_xattrs(path)?;
                self.out.dirs += 1;
            }
            return Ok(keep);
        }
        if !(ft.is_file() || ft.is_symlink()) {
            self.drop(rel, DropReason::Special);
            return Ok(false);
        }
        if in_base.is_some() {
            self.drop(rel, DropReason::ModifiesBase);
            return Ok(false);
        }
        strip_overlay_xattrs(path)?;
        if ft.is_file() {
            self.out.files += 1;
            self.out.bytes += md.len();
        } else {
            self.out.symlinks += 1;
        }
        if !self.packaged.contains(rel) {
            self.out.not_packaged.push(format!("/{rel}"));
        }
        Ok(true)
    }
}

fn report_outside(base: &Path, dir: &Path, rel: &str, out: &mut Collected) -> Result<()> {
    for e in fsutil::sorted_entries(dir)? {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if is_noise(&r) {
            continue;
        }
        let md = std::fs::symlink_metadata(e.path()).ctx("stat", e.path())?;
        let whiteout = md.file_type().is_char_device() && md.rdev() == 0;
        if md.is_dir() {
            report_outside(base, &e.path(), &r, out)?;
        } else if !whiteout && !from_factory(base, &r)? {
            out.dropped.push(Dropped {
                path: format!("/{r}"),
                reason: DropReason::Outside,
            });
        }
    }
    Ok(())
}

/// Whether `rel` (under var/) is a copy the build made from the base's factory.
fn from_factory(base: &Path, rel: &str) -> Result<bool> {
    Ok(rel.starts_with("var/")
        && fsutil::lstat(&base.join(trellis_compose::convert::FACTORY).join(rel))?.is_some())
}

/// Remove overlayfs's bookkeeping attributes (`trusted.overlay.*`) from one path.
fn strip_overlay_xattrs(path: &Path) -> Result<()> {
    let all = xattr::read_all(Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(path))
        .ctx("read xattrs of", path)?;
    for (name, _) in all {
        if name.starts_with(b"trusted.overlay.") {
            let n = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&name);
            rustix::fs::lremovexattr(path, n)
                .map_err(std::io::Error::from)
                .ctx("remove xattr from", path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(p: &Path, data: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    fn whiteout(p: &Path) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    const STATUS_BEFORE: &str = "Package: dpkg\nStatus: install ok installed\n\
                                 Architecture: amd64\nVersion: 1.21\n";

    /// A base like a composed commit, and an upper directory as apt leaves it.
    fn fixture() -> (tempfile::TempDir, PathBufs) {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("base");
        let upper = d.path().join("upper");
        write(&base.join(format!("{DPKG_DB}/status")), STATUS_BEFORE);
        write(&base.join("usr/bin/sh"), "base");
        write(&base.join("usr/share/info/dir"), "base");
        write(&base.join("usr/share/doc/README"), "base");
        symlink("usr/lib", base.join("lib")).unwrap();
        symlink("var/opt", base.join("opt")).unwrap();
        std::fs::create_dir_all(base.join("usr/sbin")).unwrap();
        write(
            &upper.join(format!("{DPKG_DB}/status")),
            &format!(
                "{STATUS_BEFORE}\nPackage: tool\nStatus: install ok installed\n\
                 Architecture: amd64\nVersion: 2.0\n"
            ),
        );
        write(
            &upper.join(format!("{DPKG_DB}/info/tool.list")),
            "/.\n/usr\n/usr/bin\n/usr/bin/tool\n/lib/x86_64-linux-gnu/libtool.so.1\n\
             /usr/share/tool\n/opt/tool/bin\n",
        );
        write(&upper.join("usr/bin/tool"), "new");
        write(
            &upper.join("lib/x86_64-linux-gnu/libtool.so.1"),
            "not here: lib is a link",
        );
        std::fs::remove_dir_all(upper.join("lib")).unwrap();
        write(&upper.join("usr/lib/x86_64-linux-gnu/libtool.so.1"), "lib");
        symlink("tool", upper.join("usr/bin/tool-alias")).unwrap();
        write(&upper.join("usr/share/info/dir"), "changed");
        write(&upper.join("usr/share/tool/cache.bin"), "made by postinst");
        std::fs::create_dir_all(upper.join("usr/share/tool/empty")).unwrap();
        std::fs::create_dir_all(upper.join("usr/sbin")).unwrap();
        whiteout(&upper.join("usr/share/doc/README"));
        write(&upper.join("usr/etc/tool.conf"), "conf");
        write(&upper.join("usr/etc/resolv.conf"), "");
        write(&upper.join("opt/tool/bin"), "opt");
        write(&upper.join("var/lib/tool/state"), "state");
        write(&upper.join("var/log/apt/history.log"), "noise");
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        (d, PathBufs { base, upper })
    }

    struct PathBufs {
        base: std::path::PathBuf,
        upper: std::path::PathBuf,
    }

    #[test]
    fn keeps_additions_and_explains_the_rest() {
        let (d, p) = fixture();
        let pkgs = new_packages(&p.base, &p.upper).unwrap();
        assert_eq!(pkgs.len(), 1);
        assert_eq!(
            (pkgs[0].name.as_str(), pkgs[0].version.as_str()),
            ("tool", "2.0")
        );
        let packaged = packaged_paths(&p.base, &p.upper, &pkgs).unwrap();
        assert!(packaged.contains("usr/lib/x86_64-linux-gnu/libtool.so.1"));
        let ext = d.path().join("ext");
        let c = collect(&p.base, &p.upper, &ext, pkgs, &packaged).unwrap();
        let files = crate::image::list_files(&ext).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "opt",
                "opt/tool",
                "opt/tool/bin",
                "usr",
                "usr/bin",
                "usr/bin/tool",
                "usr/bin/tool-alias",
                "usr/lib",
                "usr/lib/x86_64-linux-gnu",
                "usr/lib/x86_64-linux-gnu/libtool.so.1",
                "usr/share",
                "usr/share/tool",
                "usr/share/tool/cache.bin",
            ]
        );
        assert_eq!((c.files, c.symlinks), (4, 1));
        assert_eq!(
            c.not_packaged,
            ["/usr/bin/tool-alias", "/usr/share/tool/cache.bin"]
        );
        let dropped: Vec<_> = c
            .dropped
            .iter()
            .map(|d| (d.path.as_str(), d.reason))
            .collect();
        assert_eq!(
            dropped,
            [
                ("/usr/share/doc/README", DropReason::Deletes),
                ("/usr/share/info/dir", DropReason::ModifiesBase),
                ("/usr/etc/tool.conf", DropReason::Etc),
                (
                    "/usr/lib/sysimage/dpkg/info/tool.list",
                    DropReason::DpkgDatabase
                ),
                ("/usr/lib/sysimage/dpkg/status", DropReason::DpkgDatabase),
                ("/var/lib/tool/state", DropReason::Outside),
            ]
        );
    }

    #[test]
    fn base_package_changes_are_refused() {
        let (_d, p) = fixture();
        write(
            &p.upper.join(format!("{DPKG_DB}/status")),
            "Package: dpkg\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.22\n",
        );
        let e = new_packages(&p.base, &p.upper).unwrap_err().to_string();
        assert!(e.contains("dpkg 1.21 -> 1.22"), "{e}");
    }

    #[test]
    fn overlay_attributes_are_removed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "").unwrap();
        xattr::set(
            Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(&f),
            b"trusted.overlay.origin",
            b"x",
        )
        .unwrap();
        xattr::set(
            Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(&f),
            b"user.keep",
            b"y",
        )
        .unwrap();
        strip_overlay_xattrs(&f).unwrap();
        let left = xattr::read_all(Target::<std::os::fd::BorrowedFd<'_>>::NoFollow(&f)).unwrap();
        assert_eq!(left, [(b"user.keep".to_vec(), b"y".to_vec())]);
    }
}
