//! Boot Loader Specification entries in `boot/loader.B/entries/` and the links around them
//! (spec §7.3 steps 5–8, §7.4), written as ostree 2022.7 writes them:
//!
//! * entries `ostree-<N>-<OS>.conf`, N = deployments − index (the newest gets the highest),
//!   with keys in the order title, version, options, devicetree, linux, initrd;
//! * bootlinks `ostree/boot.B.S/OS/BOOTCSUM/BOOTSERIAL -> ../../../deploy/OS/deploy/CSUM.SERIAL`
//!   and `ostree/boot.B -> boot.B.S`;
//! * `boot/loader -> loader.B`, swapped with a rename: the switch between two complete sets
//!   of entries is atomic;
//! * the repo refs `ostree/B/S/INDEX`, which keep deployed commits from being pruned.

use crate::deployment::Deployment;
use crate::error::{Error, IoContext, Result, is_not_found};
use crate::fsutil;
use crate::kernel::KernelLayout;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use trellis_store::Repo;

/// One BLS entry: `key value` lines. Repeated keys (`initrd`) are kept in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootEntry {
    pub lines: Vec<(String, String)>,
}

/// The order ostree writes keys in; others follow in their own order.
const KEY_ORDER: [&str; 6] = [
    "title",
    "version",
    "options",
    "devicetree",
    "linux",
    "initrd",
];

impl BootEntry {
    /// Parse an entry: `key<space or tab>value` per line; blank lines and `#` comments
    /// are skipped.
    pub fn parse(text: &str) -> BootEntry {
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| match l.split_once([' ', '\t']) {
                Some((k, v)) => (k.to_string(), v.trim_start().to_string()),
                None => (l.to_string(), String::new()),
            })
            .collect();
        BootEntry { lines }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set the first `key` line, or add one.
    pub fn set(&mut self, key: &str, value: &str) {
        match self.lines.iter_mut().find(|(k, _)| k == key) {
            Some(l) => l.1 = value.to_string(),
            None => self.lines.push((key.to_string(), value.to_string())),
        }
    }

    /// The entry as a file, keys in ostree's order.
    pub fn to_text(&self) -> String {
        let rank = |k: &str| {
            KEY_ORDER
                .iter()
                .position(|o| *o == k)
                .unwrap_or(KEY_ORDER.len())
        };
        let mut lines: Vec<&(String, String)> = self.lines.iter().collect();
        lines.sort_by_key(|(k, _)| rank(k));
        let mut out = String::new();
        for (k, v) in lines {
            out.push_str(k);
            out.push(' ');
            out.push_str(v);
            out.push('\n');
        }
        out
    }

    /// The `ostree=` argument of the entry's options.
    pub fn ostree_arg(&self) -> Option<&str> {
        self.get("options")?
            .split_whitespace()
            .find_map(|a| a.strip_prefix("ostree="))
    }
}

/// Compare version strings as `strverscmp` does for the cases that matter here: runs of
/// digits compare as numbers, everything else bytewise.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let si = i;
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let na = trim_zeros(&a[si..i]);
            let nb = trim_zeros(&b[sj..j]);
            let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j))
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let first = d.iter().position(|&c| c != b'0').unwrap_or(d.len());
    &d[first..]
}

/// The parts of `ostree=/ostree/boot.B/OS/BOOTCSUM/SERIAL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootLink {
    pub bootversion: u32,
    pub osname: String,
    pub bootcsum: String,
    pub bootserial: u32,
}

impl BootLink {
    /// Parse the value of `ostree=`, checked against `^/ostree/boot.[01]/[^/]+/[^/]+/[0-9]+$`.
    pub fn parse(arg: &str) -> Option<BootLink> {
        let rest = arg.strip_prefix("/ostree/boot.")?;
        let mut parts = rest.split('/');
        let bootversion = match parts.next()? {
            "0" => 0,
            "1" => 1,
            _ => return None,
        };
        let osname = parts.next().filter(|s| !s.is_empty())?;
        let bootcsum = parts.next().filter(|s| !s.is_empty())?;
        let serial = parts.next()?;
        if parts.next().is_some()
            || serial.is_empty()
            || !serial.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(BootLink {
            bootversion,
            osname: osname.to_string(),
            bootcsum: bootcsum.to_string(),
            bootserial: serial.parse().ok()?,
        })
    }

    /// The path inside the sysroot, without the leading `/`.
    pub fn rel_path(&self) -> String {
        format!(
            "ostree/boot.{}/{}/{}/{}",
            self.bootversion, self.osname, self.bootcsum, self.bootserial
        )
    }
}

pub fn ostree_karg(bootversion: u32, d: &Deployment) -> String {
    format!(
        "ostree=/ostree/boot.{bootversion}/{}/{}/{}",
        d.osname, d.bootcsum, d.bootserial
    )
}

/// The current boot version: the target of `boot/loader` (`loader.0` or `loader.1`), or 0
/// when there is no link yet.
pub fn read_bootversion(sysroot: &Path) -> Result<u32> {
    let p = sysroot.join("boot/loader");
    match std::fs::symlink_metadata(&p) {
        Err(e) if is_not_found(&e) => return Ok(0),
        Err(e) => return Err(e).ctx("stat", p),
        Ok(md) if !md.file_type().is_symlink() => {
            return Err(Error::Corrupt {
                path: p,
                why: "is not a symbolic link".into(),
            });
        }
        Ok(_) => {}
    }
    let target = std::fs::read_link(&p).ctx("read symlink", &p)?;
    match target.to_str() {
        Some("loader.0") => Ok(0),
        Some("loader.1") => Ok(1),
        _ => Err(Error::Corrupt {
            path: p,
            why: format!(
                "points to {:?}; expected loader.0 or loader.1",
                target.display()
            ),
        }),
    }
}

/// The subbootversion of boot version `b`: the suffix of `ostree/boot.B`'s target, or 0.
pub fn read_subbootversion(sysroot: &Path, b: u32) -> Result<u32> {
    let p = sysroot.join(format!("ostree/boot.{b}"));
    match std::fs::read_link(&p) {
        Err(e) if is_not_found(&e) => Ok(0),
        Err(e) => Err(e).ctx("read symlink", p),
        Ok(t) => {
            let t = t.to_string_lossy();
            if t.ends_with(".0") {
                Ok(0)
            } else if t.ends_with(".1") {
                Ok(1)
            } else {
                Err(Error::Corrupt {
                    path: p,
                    why: format!("invalid target {t:?}"),
                })
            }
        }
    }
}

/// The entries of boot version `b` (`ostree-*.conf`, regular files), sorted by their
/// `version` key, highest first, as ostree sorts them.
pub fn read_entries(sysroot: &Path, b: u32) -> Result<Vec<(PathBuf, BootEntry)>> {
    let dir = sysroot.join(format!("boot/loader.{b}/entries"));
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("list", dir),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.ctx("list", &dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if !(name.starts_with("ostree-") && name.ends_with(".conf")) {
            continue;
        }
        if !std::fs::metadata(&path).ctx("stat", &path)?.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).ctx("read", &path)?;
        out.push((path, BootEntry::parse(&text)));
    }
    out.sort_by(
        |(pa, a), (pb, b)| match (a.get("version"), b.get("version")) {
            (Some(x), Some(y)) => version_cmp(y, x).then_with(|| pa.cmp(pb)),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => pa.cmp(pb),
        },
    );
    Ok(out)
}

/// PRETTY_NAME (or ID) from a deployment's os-release, unquoted as a shell would.
pub fn os_release_name(deployment_dir: &Path) -> Result<Option<String>> {
    for rel in ["usr/lib/os-release", "etc/os-release"] {
        let p = deployment_dir.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.file_type().is_file() => {}
            Ok(_) => continue,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e).ctx("stat", p),
        }
        let text = std::fs::read_to_string(&p).ctx("read", &p)?;
        let mut pretty = None;
        let mut id = None;
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                match k.trim() {
                    "PRETTY_NAME" => pretty = Some(shell_unquote(v.trim())),
                    "ID" => id = Some(shell_unquote(v.trim())),
                    _ => {}
                }
            }
        }
        return Ok(pretty.or(id));
    }
    Ok(None)
}

fn shell_unquote(v: &str) -> String {
    let mut out = String::new();
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                            Some(n) => {
                                out.push('\\');
                                out.push(n);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// What a boot entry says about one deployment.
pub(crate) struct EntryInput<'a> {
    pub deployment: &'a Deployment,
    pub index: usize,
    pub count: usize,
    pub show_osname: bool,
    pub layout: &'a KernelLayout,
    /// PRETTY_NAME or ID of the deployment's OS.
    pub os_name: &'a str,
}

/// The directory under the boot partition holding a deployment's kernel:
/// `ostree/OS-BOOTCSUM` (in `/boot`) or, with another prefix, `trellis/OS-BOOTCSUM` (ESP).
pub fn boot_dir_name(prefix: &str, d: &Deployment) -> String {
    format!("{prefix}/{}-{}", d.osname, d.bootcsum)
}

/// The entry ostree writes for a deployment. `prefix` is where kernels live relative to
/// the boot file system root (`/ostree` in /boot, `/trellis` on an ESP).
pub(crate) fn make_entry(input: &EntryInput<'_>, bootversion: u32, prefix: &str) -> BootEntry {
    let d = input.deployment;
    let mut title = input.os_name.to_string();
    if let Some(v) = d.version.as_deref().filter(|v| !v.is_empty())
        && !title.contains(v)
    {
        title.push(' ');
        title.push_str(v);
    }
    title.push_str(" (ostree");
    if input.show_osname {
        title.push(':');
        title.push_str(&d.osname);
    }
    title.push_str(&format!(":{})", input.index));
    let dir = format!("/{}", boot_dir_name(prefix, d));
    let mut kargs = d.kargs.without_ostree();
    if input.layout.initramfs.is_none() {
        kargs.replace(&format!(
            "init=/ostree/boot.{bootversion}/{}/{}/{}/usr/lib/ostree/ostree-prepare-root",
            d.osname, d.bootcsum, d.bootserial
        ));
    }
    kargs.replace(&ostree_karg(bootversion, d));
    let mut e = BootEntry::default();
    e.set("title", &title);
    e.set("version", &(input.count - input.index).to_string());
    e.set("options", &kargs.to_string());
    e.set("linux", &format!("{dir}/{}", input.layout.kernel_name()));
    if let Some(i) = input.layout.initramfs_name() {
        e.set("initrd", &format!("{dir}/{i}"));
    }
    if let Some((k, v)) = input.layout.devicetree_key() {
        e.set(k, &format!("{dir}/{v}"));
    }
    e
}

/// Bootserials number the deployments sharing a bootcsum, in list order.
pub(crate) fn assign_bootserials(deployments: &mut [Deployment]) {
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    for d in deployments {
        let n = seen.entry(d.bootcsum.clone()).or_insert(0);
        d.bootserial = *n;
        *n += 1;
    }
}

/// Build `ostree/boot.B.S` (S toggled from the current one) with a link per deployment.
/// Returns S. Nothing that is in use is touched: the current `boot.B.S` stays as it is.
pub(crate) fn create_bootlinks(sysroot: &Path, b: u32, deployments: &[Deployment]) -> Result<u32> {
    let s = 1 - read_subbootversion(sysroot, b)?.min(1);
    let dir = sysroot.join(format!("ostree/boot.{b}.{s}"));
    fsutil::remove_tree(&dir)?;
    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    for d in deployments {
        let parent = dir.join(&d.osname).join(&d.bootcsum);
        std::fs::create_dir_all(&parent).ctx("create directory", &parent)?;
        let target = format!("../../../deploy/{}/deploy/{}", d.osname, d.name());
        let link = parent.join(d.bootserial.to_string());
        std::os::unix::fs::symlink(&target, &link).ctx("create symlink", &link)?;
    }
    Ok(s)
}

/// Point `ostree/boot.B` at `boot.B.S` (one rename).
pub(crate) fn swap_bootlinks(sysroot: &Path, b: u32, s: u32) -> Result<()> {
    fsutil::symlink_replace(
        &format!("boot.{b}.{s}"),
        &sysroot.join(format!("ostree/boot.{b}")),
    )
}

/// Install a deployment's kernel files into `boot/ostree/OS-BOOTCSUM/`: hardlinks when
/// /boot is on the same file system, copies otherwise. Files already there are kept.
pub(crate) fn install_kernel(sysroot: &Path, d: &Deployment, layout: &KernelLayout) -> Result<()> {
    let dir = sysroot.join("boot").join(boot_dir_name("ostree", d));
    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    for f in layout.boot_files() {
        let dest = dir.join(&f.name);
        if dest.exists() {
            continue;
        }
        match std::fs::hard_link(&f.src, &dest) {
            Ok(()) => continue,
            // Another file system, or too many links: copy instead.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::CrossesDevices | std::io::ErrorKind::TooManyLinks
                ) => {}
            Err(e) => return Err(e).ctx("link", dest),
        }
        copy_file_atomic(&f.src, &dest)?;
    }
    if let Some(crate::kernel::Devicetree::Dir(src)) = &layout.devicetree {
        let dest = dir.join("dtb");
        if !dest.exists() {
            let tmp = dir.join(".dtb.tmp");
            fsutil::remove_tree(&tmp)?;
            let fd = fsutil::open_dir(&dir)?;
            fsutil::copy_at(
                src,
                std::os::fd::AsFd::as_fd(&fd),
                tmp.file_name().unwrap_or_default(),
                &tmp,
            )?;
            std::fs::rename(&tmp, &dest).ctx("rename into", &dest)?;
        }
    }
    Ok(())
}

/// Copy a file's content to `dest` through a temporary name, synced before the rename.
pub(crate) fn copy_file_atomic(src: &Path, dest: &Path) -> Result<()> {
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(dest.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = dest.with_file_name(tmp_name);
    let result = (|| {
        let mut input = std::fs::File::open(src).ctx("open", src)?;
        let mut out = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        std::io::copy(&mut input, &mut out).ctx("copy to", &tmp)?;
        out.sync_all().ctx("sync", &tmp)?;
        std::fs::rename(&tmp, dest).ctx("rename into", dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Write the complete entry set of boot version `b` into `boot/loader.B/entries`
/// (replacing whatever a crashed run left there).
pub(crate) fn write_entries(sysroot: &Path, b: u32, entries: &[(String, BootEntry)]) -> Result<()> {
    let loader = sysroot.join(format!("boot/loader.{b}"));
    fsutil::remove_tree(&loader)?;
    let dir = loader.join("entries");
    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    for (name, e) in entries {
        let p = dir.join(name);
        std::fs::write(&p, e.to_text()).ctx("write", &p)?;
    }
    Ok(())
}

/// The file name ostree 2022.7 gives the entry of deployment `index` out of `count`.
pub fn entry_file_name(index: usize, count: usize, osname: &str) -> String {
    format!("ostree-{}-{osname}.conf", count - index)
}

/// Make boot version `b` current: `boot/loader.tmp -> loader.B`, a sync of everything
/// written so far, then the rename over `boot/loader` and an fsync of `boot/`.
pub(crate) fn swap_loader(sysroot: &Path, b: u32) -> Result<()> {
    let boot = sysroot.join("boot");
    let bootlink = boot.join("boot");
    if std::fs::symlink_metadata(&bootlink).is_err() {
        std::os::unix::fs::symlink(".", &bootlink).ctx("create symlink", &bootlink)?;
    }
    let tmp = boot.join("loader.tmp");
    fsutil::remove_tree(&tmp)?;
    std::os::unix::fs::symlink(format!("loader.{b}"), &tmp).ctx("create symlink", &tmp)?;
    fsutil::syncfs(sysroot)?;
    fsutil::syncfs(&boot)?;
    std::fs::rename(&tmp, boot.join("loader")).ctx("rename into", boot.join("loader"))?;
    fsutil::fsync_dir(&boot)
}

/// Remove what belongs to the boot versions not in use: `boot/loader.OTHER`,
/// `ostree/boot.OTHER[.0|.1]` and `ostree/boot.B.(1-S)`.
pub(crate) fn remove_other_bootversions(sysroot: &Path, b: u32, s: u32) -> Result<()> {
    let other = 1 - b.min(1);
    for p in [
        format!("boot/loader.{other}"),
        format!("ostree/boot.{other}"),
        format!("ostree/boot.{other}.0"),
        format!("ostree/boot.{other}.1"),
        format!("ostree/boot.{b}.{}", 1 - s.min(1)),
    ] {
        fsutil::remove_tree(&sysroot.join(p))?;
    }
    Ok(())
}

/// Reset the refs `ostree/B/S/INDEX` to the given deployments (the staged one included),
/// deleting those of every other boot version.
pub(crate) fn write_deployment_refs(
    repo: &Repo,
    b: u32,
    s: u32,
    deployments: &[Deployment],
) -> Result<()> {
    let keep_prefix = format!("ostree/{b}/{s}/");
    for r in repo.list_local_refs()? {
        if r.name.starts_with("ostree/")
            && !r.name.starts_with(&keep_prefix)
            && is_deployment_ref(&r.name)
        {
            repo.set_ref(&r.name, None)?;
        }
    }
    let wanted: Vec<String> = (0..deployments.len())
        .map(|i| format!("{keep_prefix}{i}"))
        .collect();
    for r in repo.list_local_refs()? {
        if r.name.starts_with(&keep_prefix) && !wanted.contains(&r.name) {
            repo.set_ref(&r.name, None)?;
        }
    }
    for (name, d) in wanted.iter().zip(deployments) {
        repo.set_ref(name, Some(&d.csum))?;
    }
    // Empty directories left by deleted refs are harmless, but ostree's own listing skips
    // them, so tidy up the ones we own.
    for other in [
        format!("ostree/{}", 1 - b.min(1)),
        format!("ostree/{b}/{}", 1 - s.min(1)),
    ] {
        let p = repo.path().join("refs/heads").join(other);
        if p.is_dir() && dir_has_no_files(&p)? {
            fsutil::remove_tree(&p)?;
        }
    }
    Ok(())
}

fn is_deployment_ref(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    parts.len() == 4
        && parts[0] == "ostree"
        && matches!(parts[1], "0" | "1")
        && matches!(parts[2], "0" | "1")
        && parts[3].bytes().all(|b| b.is_ascii_digit())
}

fn dir_has_no_files(p: &Path) -> Result<bool> {
    for e in std::fs::read_dir(p).ctx("list", p)? {
        let e = e.ctx("list", p)?;
        if !e.file_type().ctx("stat", e.path())?.is_dir() || !dir_has_no_files(&e.path())? {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_key_order() {
        let text = "title Test OS 1 1.0 (ostree:0)\nversion 1\noptions root=LABEL=root rw ostree=/ostree/boot.1/testos/fb13/0\nlinux /ostree/testos-fb13/vmlinuz-6.1.0\ninitrd /ostree/testos-fb13/initramfs-6.1.0.img\n";
        let e = BootEntry::parse(text);
        assert_eq!(e.to_text(), text);
        assert_eq!(e.ostree_arg(), Some("/ostree/boot.1/testos/fb13/0"));
        let mut shuffled = BootEntry::parse("# comment\n\nlinux\t/k\nfoo bar\ntitle  T\n");
        shuffled.set("version", "3");
        assert_eq!(
            shuffled.to_text(),
            "title T\nversion 3\nlinux /k\nfoo bar\n"
        );
    }

    #[test]
    fn bootlinks_parse_like_ostree() {
        let l = BootLink::parse("/ostree/boot.1/testos/abc/12").unwrap();
        assert_eq!(
            (
                l.bootversion,
                l.osname.as_str(),
                l.bootcsum.as_str(),
                l.bootserial
            ),
            (1, "testos", "abc", 12)
        );
        assert_eq!(l.rel_path(), "ostree/boot.1/testos/abc/12");
        for bad in [
            "/ostree/boot.2/a/b/0",
            "/ostree/boot.0/a/b",
            "/ostree/boot.0/a/b/x",
            "/ostree/boot.0//b/0",
            "/ostree/boot.0/a/b/0/extra",
            "ostree/boot.0/a/b/0",
        ] {
            assert!(BootLink::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn versions_sort_numerically() {
        assert_eq!(version_cmp("10", "9"), Ordering::Greater);
        assert_eq!(version_cmp("6.1.0", "6.10.0"), Ordering::Less);
        assert_eq!(version_cmp("2", "2"), Ordering::Equal);
        assert_eq!(version_cmp("1.0a", "1.0"), Ordering::Greater);
        assert_eq!(version_cmp("007", "7"), Ordering::Equal);
    }

    #[test]
    fn os_release_names() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(os_release_name(tmp.path()).unwrap(), None);
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/os-release"), "ID=debian\n").unwrap();
        assert_eq!(
            os_release_name(tmp.path()).unwrap().as_deref(),
            Some("debian")
        );
        std::fs::create_dir_all(tmp.path().join("usr/lib")).unwrap();
        std::fs::write(
            tmp.path().join("usr/lib/os-release"),
            "# x\nPRETTY_NAME=\"Debian GNU/Linux 12 \\\"bookworm\\\"\"\nID=debian\n",
        )
        .unwrap();
        assert_eq!(
            os_release_name(tmp.path()).unwrap().as_deref(),
            Some("Debian GNU/Linux 12 \"bookworm\"")
        );
        assert_eq!(shell_unquote("'a b'c"), "a bc");
    }

    #[test]
    fn deployment_ref_names() {
        assert!(is_deployment_ref("ostree/0/1/0"));
        assert!(is_deployment_ref("ostree/1/0/12"));
        assert!(!is_deployment_ref("ostree/2/0/1"));
        assert!(!is_deployment_ref("ostree/stable"));
        assert!(!is_deployment_ref("ostree/0/1/0/x"));
    }
}
