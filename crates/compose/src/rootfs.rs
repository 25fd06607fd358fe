//! The root filesystem, bootstrapped with mmdebstrap.
//!
//! Downloaded packages are kept between runs in a cache directory outside the repository
//! (mmdebstrap's documented `sync-in`/`sync-out` recipe), so that a rebuild downloads only
//! what changed. The package names are checked with `apt-get --simulate` right after the
//! package lists arrive, so that a typo fails in seconds, not after the essential set is
//! installed, and is reported at its line in the manifest.

use crate::error::{ComposeError, IoContext, Result};
use crate::fsutil;
use crate::manifest::Manifest;
use std::path::{Path, PathBuf};
use trellis_tools::{Stream, Tool};

/// The .deb cache when the caller names none: system-wide for root, per user otherwise.
pub fn default_cache_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/cache/trellis/debs");
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::env::temp_dir().join("trellis-cache"));
    base.join("trellis/debs")
}

/// Environment every step that runs package code gets: fixed dates (reproducible trees),
/// and no initramfs while packages are installed (compose makes it once, at the end).
pub fn build_env(m: &Manifest) -> Vec<(String, String)> {
    vec![
        (
            "SOURCE_DATE_EPOCH".to_string(),
            m.debian.source_date_epoch.to_string(),
        ),
        ("INITRD".to_string(), "No".to_string()),
    ]
}

/// Bootstrap `m`'s root filesystem into `target` (which must not exist, or be empty).
/// Packages come from and go to the `cache` directory, through `staging` (an empty
/// directory of this run, outside the cache: the cache's content is copied into the tree).
/// `on_line` gets mmdebstrap's output lines.
pub fn bootstrap(
    m: &Manifest,
    target: &Path,
    cache: &Path,
    staging: &Path,
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        return Err(ComposeError::Invalid(
            "compose needs root: mmdebstrap runs in root mode (device nodes, chroot, file \
             ownership)"
                .to_string(),
        ));
    }
    trellis_tools::require(&["mmdebstrap", "unshare", "chroot"])?;
    std::fs::create_dir_all(cache).ctx("create cache directory", cache)?;
    std::fs::create_dir_all(staging).ctx("create directory", staging)?;
    // Each run syncs out into its own directory, then moves finished files in: a reader
    // of the cache never sees a half-written .deb.
    let tool = mmdebstrap_command(m, target, cache, staging);
    match tool.run_with(&mut |_: Stream, line: &str| on_line(line)) {
        Ok(_) => {}
        Err(e) => return Err(unknown_package(m, e.stderr_tail()).unwrap_or(e.into())),
    }
    adopt_debs(staging, cache)?;
    // mmdebstrap creates the target 0700 when it makes it; the tree's root is /.
    fsutil::set_mode(target, 0o755)
}

fn mmdebstrap_command(m: &Manifest, target: &Path, cache: &Path, incoming: &Path) -> Tool {
    let d = &m.debian;
    let packages: Vec<String> = d.packages.iter().map(|p| shell_quote(p)).collect();
    let mut t = Tool::new("mmdebstrap")
        .arg("--mode=root")
        .arg(format!("--variant={}", d.variant))
        .arg(format!("--architectures={}", d.architecture))
        .arg(format!("--components={}", d.components.join(",")))
        .arg(format!("--include={}", d.packages.join(",")))
        // Nothing is fsynced until the commit, which syncs once: dpkg's per-file fsync
        // only slows the build.
        .arg("--dpkgopt=force-unsafe-io")
        // Keep the essential set's .debs until sync-out has copied them to the cache.
        .arg("--skip=essential/unlink")
        .arg("--setup-hook=mkdir -p \"$1/var/cache/apt/archives\"")
        .arg(format!(
            "--setup-hook=sync-in {} /var/cache/apt/archives/",
            shell_quote(&cache.to_string_lossy())
        ))
        .arg(format!(
            "--extract-hook=APT_CONFIG=\"$MMDEBSTRAP_APT_CONFIG\" apt-get install --simulate \
             -q=2 {} >/dev/null",
            packages.join(" ")
        ))
        .arg(format!(
            "--customize-hook=sync-out /var/cache/apt/archives {}",
            shell_quote(&incoming.to_string_lossy())
        ))
        .arg(&d.suite)
        .arg(target)
        .arg(&d.mirror);
    for (k, v) in build_env(m) {
        t = t.env(k, v);
    }
    t
}

/// apt's "unknown package" errors, as a manifest error at the package's line.
fn unknown_package(m: &Manifest, stderr: &str) -> Option<ComposeError> {
    for line in stderr.lines() {
        let l = line.trim();
        let name = l
            .strip_prefix("E: Unable to locate package ")
            .map(str::trim)
            .or_else(|| {
                l.strip_prefix("E: Package '")
                    .and_then(|r| r.split_once('\''))
                    .map(|(n, _)| n)
            })
            .or_else(|| {
                // E: Version '1.0' for 'foo' was not found
                l.strip_prefix("E: Version '")
                    .and_then(|r| r.split_once("' for '"))
                    .and_then(|(_, r)| r.split_once('\''))
                    .map(|(n, _)| n)
            });
        if let Some(name) = name {
            let d = &m.debian;
            return Some(
                m.error(
                    Some(m.package_line(name)),
                    "debian.packages",
                    format!(
                        "unknown package {name:?}: apt finds no such package in {} ({}) for {} \
                         at {} ({})",
                        d.suite,
                        d.components.join(", "),
                        d.architecture,
                        d.mirror,
                        l.trim_start_matches("E: ")
                    ),
                )
                .into(),
            );
        }
    }
    None
}

/// Move the .debs mmdebstrap synced out into the cache, each with one rename.
fn adopt_debs(incoming: &Path, cache: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(incoming).ctx("read directory", incoming)? {
        let entry = entry.ctx("read directory", incoming)?;
        let name = entry.file_name();
        let is_deb = Path::new(&name).extension().is_some_and(|e| e == "deb");
        if !is_deb || !entry.file_type().ctx("stat", entry.path())?.is_file() {
            continue;
        }
        let dest = cache.join(&name);
        if fsutil::lstat(&dest)?.is_some() {
            continue;
        }
        let src = entry.path();
        if std::fs::rename(&src, &dest).is_err() {
            // Another filesystem: copy beside the destination, then rename.
            let tmp = tempfile::Builder::new()
                .prefix(".adopt-")
                .tempfile_in(cache)
                .ctx("create file in", cache)?;
            std::fs::copy(&src, tmp.path()).ctx("copy", &src)?;
            tmp.persist(&dest)
                .map_err(|e| e.error)
                .ctx("rename into", &dest)?;
        }
        n += 1;
    }
    Ok(n)
}

/// Quote for mmdebstrap's hooks (a shell, or its shellwords parser for special hooks).
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let text = "[os]\nname = \"debian\"\nref = \"debian/bookworm/amd64\"\n\n[debian]\n\
                    suite = \"bookworm\"\npackages = [\n  \"linux-image-amd64\",\n  \
                    \"nosuchpkg\",\n  \"zstd=9.9\",\n]\n";
        Manifest::parse(text, Path::new("/m/minimal.toml")).unwrap()
    }

    #[test]
    fn apt_errors_become_manifest_errors_at_the_package_line() {
        let m = manifest();
        let e = unknown_package(
            &m,
            "I: x\nE: Unable to locate package nosuchpkg\nE: hook failed",
        )
        .unwrap();
        let ComposeError::Manifest(e) = e else {
            panic!("{e:?}")
        };
        assert_eq!(e.line, Some(9));
        assert_eq!(e.field.as_deref(), Some("debian.packages"));
        assert!(e.message.contains("unknown package \"nosuchpkg\""), "{e}");
        assert!(
            e.to_string()
                .starts_with("/m/minimal.toml:9: debian.packages: ")
        );

        let e = unknown_package(&m, "E: Version '9.9' for 'zstd' was not found").unwrap();
        assert!(e.to_string().contains(":10:"), "{e}");
        let e = unknown_package(&m, "E: Package 'zstd' has no installation candidate").unwrap();
        assert!(e.to_string().contains(":10:"), "{e}");
        assert!(unknown_package(&m, "E: something else").is_none());
    }

    #[test]
    fn mmdebstrap_command_line() {
        let m = manifest();
        let t = mmdebstrap_command(
            &m,
            Path::new("/w/rootfs"),
            Path::new("/c/debs"),
            Path::new("/c/debs/.in"),
        );
        let cl = t.command_line();
        for want in [
            "--mode=root",
            "--variant=minbase",
            "--architectures=amd64",
            "--include=linux-image-amd64,nosuchpkg,zstd=9.9",
            "'--setup-hook=sync-in '\\''/c/debs'\\'' /var/cache/apt/archives/'",
            "bookworm /w/rootfs http://deb.debian.org/debian",
        ] {
            assert!(cl.contains(want), "{want} not in {cl}");
        }
    }

    #[test]
    fn debs_are_adopted_once() {
        let cache = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let incoming = work.path().join("staging");
        std::fs::create_dir(&incoming).unwrap();
        std::fs::write(incoming.join("a_1_amd64.deb"), "new").unwrap();
        std::fs::write(incoming.join("b_1_amd64.deb"), "new").unwrap();
        std::fs::write(incoming.join("lock"), "").unwrap();
        std::fs::write(cache.path().join("b_1_amd64.deb"), "old").unwrap();
        assert_eq!(adopt_debs(&incoming, cache.path()).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(cache.path().join("a_1_amd64.deb")).unwrap(),
            "new"
        );
        assert_eq!(
            std::fs::read_to_string(cache.path().join("b_1_amd64.deb")).unwrap(),
            "old"
        );
        assert!(!cache.path().join("lock").exists());
    }
}
