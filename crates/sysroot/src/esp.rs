//! systemd-boot entries on an EFI system partition, kept in step with the sysroot.
//!
//! systemd-boot reads Boot Loader Specification entries from the ESP itself, and the ESP
//! is FAT (no symlinks, no hardlinks). So each deployment's kernel files are copied to
//! `ESP/trellis/OS-BOOTCSUM/`, and each deployment gets an entry
//! `ESP/loader/entries/trellis-OS-N[+LEFT[-DONE]].conf` (N = deployments − index, like
//! ostree's names, so the newest sorts first) with the same title and options as the
//! sysroot's entry and a first line `# trellis-deployment OS CSUM.SERIAL` naming it.
//!
//! **Boot counting.** With `tries` configured, a deployment that gets its first entry has
//! `+TRIES` in the entry name; systemd-boot decrements it on every attempt, and
//! systemd-bless-boot removes the counter after a good boot. An entry with no tries left
//! sorts last, so a deployment that keeps failing falls back to the previous one by
//! itself. Rewriting the entries (a new bootversion changes every `ostree=`) keeps each
//! deployment's counter state, found through the comment line.
//!
//! **Atomicity.** Kernel directories are filled under a temporary name and renamed into
//! place. Each entry is written to a temporary file, synced, and renamed over its final
//! name; stale entries are removed only after all new ones exist. Entries are written
//! oldest first, so that at every step of an interrupted sync the ESP still holds entries
//! for bootable deployments. `loader/loader.conf` gets `default trellis-*`.

use crate::bootconfig::BootEntry;
use crate::deployment::Deployment;
use crate::error::{IoContext, Result, is_not_found};
use crate::fsutil;
use crate::kernel::{Devicetree, KernelLayout};
use crate::sysroot::EspConfig;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

const MARK: &str = "# trellis-deployment ";
/// Where kernels live on the ESP.
pub const KERNEL_DIR: &str = "trellis";
const DEFAULT_PATTERN: &str = "trellis-*";

/// What a sync changed on the ESP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EspReport {
    /// Entry files written (new or changed).
    pub entries_written: Vec<String>,
    /// Stale entry files removed.
    pub entries_removed: Vec<String>,
    /// Kernel directories copied (`OS-BOOTCSUM`).
    pub kernels_copied: Vec<String>,
    /// Kernel directories no deployment uses any more.
    pub kernels_removed: Vec<String>,
}

/// A boot-counting state: tries left, and tries done when systemd-boot has counted any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counter {
    pub left: u32,
    pub done: Option<u32>,
}

/// Split an entry file name into its base and boot counter: `trellis-os-2+1-2.conf` →
/// (`trellis-os-2`, left 1, done 2). `None` when it is not a `.conf` file.
pub fn parse_entry_name(file: &str) -> Option<(String, Option<Counter>)> {
    let stem = file.strip_suffix(".conf")?;
    if let Some((base, counter)) = stem.rsplit_once('+') {
        let (left, done) = match counter.split_once('-') {
            Some((l, d)) => (l, Some(d)),
            None => (counter, None),
        };
        let num = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        if let Some(left) = num(left) {
            match done {
                None => return Some((base.to_string(), Some(Counter { left, done: None }))),
                Some(d) => {
                    if let Some(done) = num(d) {
                        return Some((
                            base.to_string(),
                            Some(Counter {
                                left,
                                done: Some(done),
                            }),
                        ));
                    }
                }
            }
        }
    }
    Some((stem.to_string(), None))
}

pub fn entry_file_name(base: &str, counter: Option<Counter>) -> String {
    match counter {
        None => format!("{base}.conf"),
        Some(Counter { left, done: None }) => format!("{base}+{left}.conf"),
        Some(Counter {
            left,
            done: Some(d),
        }) => format!("{base}+{left}-{d}.conf"),
    }
}

fn identity(d: &Deployment) -> String {
    format!("{} {}", d.osname, d.name())
}

/// One deployment to put on the ESP: its entry as the sysroot has it (with kernel paths
/// under `/trellis`) and where its kernel files are.
pub struct EspItem<'a> {
    pub deployment: &'a Deployment,
    pub layout: &'a KernelLayout,
    pub entry: BootEntry,
}

/// The entries currently on the ESP: file name → (deployment identity, counter).
/// Entry file name → (the deployment named by its comment line, its boot counter).
type Existing = BTreeMap<String, (Option<String>, Option<Counter>)>;

fn existing_entries(dir: &Path) -> Result<Existing> {
    let mut out = BTreeMap::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if is_not_found(&e) => return Ok(out),
        Err(e) => return Err(e).ctx("list", dir),
    };
    for e in rd {
        let e = e.ctx("list", dir)?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if !name.starts_with("trellis-") {
            continue;
        }
        let Some((_, counter)) = parse_entry_name(&name) else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).ctx("read", e.path())?;
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix(MARK))
            .map(|s| s.trim().to_string());
        out.insert(name, (id, counter));
    }
    Ok(out)
}

/// Whether any of our entries on the ESP boots through boot version `b`'s bootlinks
/// (`ostree=/ostree/boot.B/…`). An ESP whose entries cannot be read names none.
pub(crate) fn names_bootversion(esp: &EspConfig, b: u32) -> bool {
    let dir = esp.dir.join("loader/entries");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return false;
    };
    let needle = format!("ostree=/ostree/boot.{b}/");
    rd.flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("trellis-"))
        })
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)))
}

fn copy_file(src: &Path, dest: &Path) -> Result<()> {
    let mut input = std::fs::File::open(src).ctx("open", src)?;
    let mut out = std::fs::File::create(dest).ctx("create", dest)?;
    std::io::copy(&mut input, &mut out).ctx("copy to", dest)?;
    out.sync_all().ctx("sync", dest)
}

fn copy_dir(src: &Path, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest).ctx("create directory", dest)?;
    for e in std::fs::read_dir(src).ctx("list", src)? {
        let e = e.ctx("list", src)?;
        let ft = e.file_type().ctx("stat", e.path())?;
        let to = dest.join(e.file_name());
        if ft.is_dir() {
            copy_dir(&e.path(), &to)?;
        } else if ft.is_file() {
            copy_file(&e.path(), &to)?;
        }
    }
    Ok(())
}

/// Copy a deployment's kernel files to `ESP/trellis/OS-BOOTCSUM` unless already there.
fn install_kernel(esp: &Path, d: &Deployment, layout: &KernelLayout) -> Result<Option<String>> {
    let name = format!("{}-{}", d.osname, d.bootcsum);
    let root = esp.join(KERNEL_DIR);
    let dest = root.join(&name);
    if dest.is_dir() {
        return Ok(None);
    }
    let tmp = root.join(format!(".{name}.tmp"));
    fsutil::remove_tree(&tmp)?;
    std::fs::create_dir_all(&tmp).ctx("create directory", &tmp)?;
    for f in layout.boot_files() {
        copy_file(&f.src, &tmp.join(&f.name))?;
    }
    if let Some(Devicetree::Dir(src)) = &layout.devicetree {
        copy_dir(src, &tmp.join("dtb"))?;
    }
    std::fs::rename(&tmp, &dest).ctx("rename into", &dest)?;
    Ok(Some(name))
}

fn write_entry(dir: &Path, name: &str, text: &str) -> Result<()> {
    let dest = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let r = (|| {
        let mut f = std::fs::File::create(&tmp).ctx("create", &tmp)?;
        f.write_all(text.as_bytes()).ctx("write", &tmp)?;
        f.sync_all().ctx("sync", &tmp)?;
        std::fs::rename(&tmp, &dest).ctx("rename into", &dest)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Make sure `loader/loader.conf` selects our entries by default, keeping its other lines.
fn ensure_default(esp: &Path) -> Result<()> {
    let p = esp.join("loader/loader.conf");
    let old = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if is_not_found(&e) => String::new(),
        Err(e) => return Err(e).ctx("read", p),
    };
    let mut lines: Vec<String> = Vec::new();
    let mut found = false;
    for l in old.lines() {
        let key = l.split_whitespace().next();
        if key == Some("default") {
            if !found {
                lines.push(format!("default {DEFAULT_PATTERN}"));
            }
            found = true;
        } else {
            lines.push(l.to_string());
        }
    }
    if !found {
        lines.push(format!("default {DEFAULT_PATTERN}"));
    }
    let mut new = lines.join("\n");
    new.push('\n');
    if new != old {
        write_entry(&esp.join("loader"), "loader.conf", &new)?;
    }
    Ok(())
}

/// Bring the ESP in line with `items` (index order, the default first). See the module
/// documentation for the order of operations.
pub fn sync(esp: &EspConfig, items: &[EspItem<'_>]) -> Result<EspReport> {
    let mut report = EspReport::default();
    let entries_dir = esp.dir.join("loader/entries");
    std::fs::create_dir_all(&entries_dir).ctx("create directory", &entries_dir)?;
    let existing = existing_entries(&entries_dir)?;
    let mut counters: BTreeMap<String, Option<Counter>> = BTreeMap::new();
    for (id, c) in existing.values() {
        if let Some(id) = id {
            counters.entry(id.clone()).or_insert(*c);
        }
    }

    for it in items {
        if let Some(n) = install_kernel(&esp.dir, it.deployment, it.layout)? {
            report.kernels_copied.push(n);
        }
    }
    fsutil::syncfs(&esp.dir)?;

    let count = items.len();
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    for (index, it) in items.iter().enumerate().rev() {
        let d = it.deployment;
        let id = identity(d);
        let counter = match esp.tries {
            None => None,
            Some(t) => match counters.get(&id) {
                Some(c) => *c,
                None => Some(Counter {
                    left: t,
                    done: None,
                }),
            },
        };
        let base = format!("trellis-{}-{}", d.osname, count - index);
        let name = entry_file_name(&base, counter);
        let text = format!("{MARK}{id}\n{}", it.entry.to_text());
        let current = std::fs::read_to_string(entries_dir.join(&name)).ok();
        if current.as_deref() != Some(text.as_str()) {
            write_entry(&entries_dir, &name, &text)?;
            report.entries_written.push(name.clone());
        }
        wanted.insert(name);
    }
    for name in existing.keys() {
        if !wanted.contains(name) {
            let p = entries_dir.join(name);
            std::fs::remove_file(&p).ctx("remove", &p)?;
            report.entries_removed.push(name.clone());
        }
    }
    // Leftovers of interrupted writes.
    for e in std::fs::read_dir(&entries_dir).ctx("list", &entries_dir)? {
        let e = e.ctx("list", &entries_dir)?;
        if let Some(n) = e.file_name().to_str()
            && n.starts_with(".trellis-")
            && n.ends_with(".tmp")
        {
            std::fs::remove_file(e.path()).ctx("remove", e.path())?;
        }
    }
    ensure_default(&esp.dir)?;
    fsutil::syncfs(&esp.dir)?;

    let used: BTreeSet<String> = items
        .iter()
        .map(|it| format!("{}-{}", it.deployment.osname, it.deployment.bootcsum))
        .collect();
    let kdir = esp.dir.join(KERNEL_DIR);
    if kdir.is_dir() {
        for e in std::fs::read_dir(&kdir).ctx("list", &kdir)? {
            let e = e.ctx("list", &kdir)?;
            let Some(n) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !used.contains(&n) {
                fsutil::remove_tree(&e.path())?;
                if !n.starts_with('.') {
                    report.kernels_removed.push(n);
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names() {
        let c = |left, done| Some(Counter { left, done });
        assert_eq!(
            parse_entry_name("trellis-os-2.conf"),
            Some(("trellis-os-2".into(), None))
        );
        assert_eq!(
            parse_entry_name("trellis-os-2+3.conf"),
            Some(("trellis-os-2".into(), c(3, None)))
        );
        assert_eq!(
            parse_entry_name("trellis-os-2+0-3.conf"),
            Some(("trellis-os-2".into(), c(0, Some(3))))
        );
        assert_eq!(parse_entry_name("a+b.conf"), Some(("a+b".into(), None)));
        assert_eq!(parse_entry_name("trellis-os-2"), None);
        for (base, counter) in [("x", None), ("x", c(3, None)), ("x-1", c(1, Some(2)))] {
            let n = entry_file_name(base, counter);
            assert_eq!(parse_entry_name(&n), Some((base.to_string(), counter)));
        }
    }

    #[test]
    fn loader_conf_default_is_set_and_other_lines_kept() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("loader")).unwrap();
        let p = tmp.path().join("loader/loader.conf");
        std::fs::write(&p, "timeout 3\ndefault debian-*\neditor no\n").unwrap();
        ensure_default(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "timeout 3\ndefault trellis-*\neditor no\n"
        );
        std::fs::remove_file(&p).unwrap();
        ensure_default(tmp.path()).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "default trellis-*\n");
    }
}
