//! Installing packages over the base checkout, in an overlay, with apt inside a chroot.
//!
//! Everything runs in one `unshare --mount --pid` invocation: the overlay (the checkout as
//! the lower layer, an empty upper directory), /etc bound from /usr/etc, /proc, a small
//! /dev, the host's resolv.conf, and then apt-get in a chroot. The mounts exist only in
//! that private namespace and vanish with it, even if trellis is killed; a daemon a
//! maintainer script starts dies with the namespace's init. Afterwards the upper directory
//! holds exactly what the installation added or changed.

use crate::error::{IoContext, Result, SysextError};
use crate::fsutil;
use std::path::Path;
use trellis_tools::{Stream, Tool};

/// Runs on the host side, inside the namespace. `$1` base, `$2` upper, `$3` overlay work
/// directory, `$4` mount point, `$5` the host's resolv.conf (or empty); then packages.
const SCRIPT: &str = r#"
set -eu
base=$1 upper=$2 work=$3 m=$4 resolv=$5
shift 5
# redirect_dir and metacopy off: every change is a full copy in the upper directory.
mount -t overlay overlay \
    -o "lowerdir=$base,upperdir=$upper,workdir=$work,redirect_dir=off,metacopy=off,index=off" "$m"
# A composed commit keeps /etc in /usr/etc.
if [ -d "$m/usr/etc" ] && [ ! -L "$m/usr/etc" ]; then
    [ -d "$m/etc" ] || mkdir "$m/etc"
    mount --bind "$m/usr/etc" "$m/etc"
fi
# Its /var is empty: what apt and dpkg need, and the files /var had (kept in the factory).
mkdir -p "$m/var/lib" "$m/var/cache/apt/archives/partial" "$m/var/lib/apt/lists/partial" \
    "$m/var/log/apt" "$m/var/tmp"
if [ -d "$m/usr/share/factory/var" ]; then
    cp -a "$m/usr/share/factory/var/." "$m/var/"
fi
if [ -d "$m/usr/lib/sysimage/dpkg" ] && [ ! -e "$m/var/lib/dpkg" ] && [ ! -L "$m/var/lib/dpkg" ]; then
    ln -s /usr/lib/sysimage/dpkg "$m/var/lib/dpkg"
fi
# /opt is a link to /var/opt on the device; make it a directory here so that what
# packages put in /opt is seen and kept.
if [ -L "$m/opt" ]; then
    rm "$m/opt"
    mkdir -m 0755 "$m/opt"
fi
mkdir -p "$m/proc" "$m/dev" "$m/tmp" "$m/run"
mount -t proc proc "$m/proc"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$m/dev"
for n in null zero full random urandom tty; do
    : > "$m/dev/$n"
    mount --bind "/dev/$n" "$m/dev/$n"
done
mkdir "$m/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$m/dev/pts"
ln -s pts/ptmx "$m/dev/ptmx"
ln -s /proc/self/fd "$m/dev/fd"
mount -t tmpfs tmpfs "$m/tmp"
mount -t tmpfs tmpfs "$m/run"
if [ -n "$resolv" ] && [ -d "$m/etc" ]; then
    rm -f "$m/etc/resolv.conf"
    : > "$m/etc/resolv.conf"
    mount --bind "$resolv" "$m/etc/resolv.conf"
fi
# No service starts while packages are configured.
made_policy=
if [ ! -e "$m/usr/sbin/policy-rc.d" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$m/usr/sbin/policy-rc.d"
    chmod 0755 "$m/usr/sbin/policy-rc.d"
    made_policy=1
fi
apt_opts="-q -o Acquire::Languages=none -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0"
chroot "$m" apt-get $apt_opts update
chroot "$m" apt-get $apt_opts -y --no-install-recommends \
    -o Dpkg::Options::=--force-unsafe-io -o Dpkg::Options::=--force-confdef \
    -o Dpkg::Options::=--force-confold install "$@"
if [ -n "$made_policy" ]; then
    rm -f "$m/usr/sbin/policy-rc.d"
fi
"#;

/// The paths the build works in.
pub struct Layers<'a> {
    pub base: &'a Path,
    pub upper: &'a Path,
    pub work: &'a Path,
    pub merged: &'a Path,
}

/// Install `packages` over `layers.base`; changes land in `layers.upper`. Output lines of
/// apt go to `on_line`.
pub fn install(
    layers: &Layers<'_>,
    packages: &[String],
    env: &[(String, String)],
    on_line: &mut dyn FnMut(&str),
) -> Result<()> {
    for d in [layers.upper, layers.work, layers.merged] {
        std::fs::create_dir_all(d).ctx("create directory", d)?;
    }
    let resolv = host_resolv_conf();
    let mut t = Tool::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            SCRIPT,
            "trellis-sysext-build",
        ])
        .arg(layers.base)
        .arg(layers.upper)
        .arg(layers.work)
        .arg(layers.merged)
        .arg(resolv.as_deref().unwrap_or(""))
        .args(packages)
        .env_clear();
    for (k, v) in env {
        t = t.env(k, v);
    }
    t.run_with(&mut |_: Stream, line: &str| on_line(line))
        .map(drop)
        .map_err(|e| match unknown_package(e.stderr_tail()) {
            Some(p) => SysextError::Invalid(format!(
                "unknown package {p:?}: apt finds no such package in the base commit's \
                 sources (its /etc/apt/sources.list): {}",
                e.stderr_tail().trim()
            )),
            None => e.into(),
        })
}

/// The host's resolver configuration, for apt inside the chroot.
fn host_resolv_conf() -> Option<String> {
    let p = Path::new("/etc/resolv.conf");
    std::fs::metadata(p)
        .ok()
        .filter(std::fs::Metadata::is_file)
        .map(|_| p.display().to_string())
}

fn unknown_package(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("E: Unable to locate package ")
            .map(|n| n.trim().to_string())
            .or_else(|| {
                l.strip_prefix("E: Package '")
                    .and_then(|r| r.split_once('\''))
                    .map(|(n, _)| n.to_string())
            })
    })
}

/// Hardlink (or copy) the cached .debs into the upper layer's apt archive, so that apt
/// downloads only what the cache lacks. Returns how many were offered.
pub fn seed_cache(cache: &Path, upper: &Path) -> Result<usize> {
    let archives = upper.join("var/cache/apt/archives");
    std::fs::create_dir_all(archives.join("partial")).ctx("create directory", &archives)?;
    if fsutil::lstat(cache)?.is_none() {
        return Ok(0);
    }
    let mut n = 0;
    for e in fsutil::sorted_entries(cache)? {
        let name = e.file_name();
        let is_deb = Path::new(&name).extension().is_some_and(|x| x == "deb");
        if !is_deb || !e.file_type().ctx("stat", e.path())?.is_file() {
            continue;
        }
        let dest = archives.join(&name);
        if std::fs::hard_link(e.path(), &dest).is_err() {
            std::fs::copy(e.path(), &dest).ctx("copy", e.path())?;
        }
        n += 1;
    }
    Ok(n)
}

/// Move the .debs apt downloaded into the cache (each appears there whole, by rename).
pub fn adopt_debs(upper: &Path, cache: &Path) -> Result<usize> {
    let archives = upper.join("var/cache/apt/archives");
    if fsutil::lstat(&archives)?.is_none() {
        return Ok(0);
    }
    std::fs::create_dir_all(cache).ctx("create cache directory", cache)?;
    let mut n = 0;
    for e in fsutil::sorted_entries(&archives)? {
        let name = e.file_name();
        let is_deb = Path::new(&name).extension().is_some_and(|x| x == "deb");
        if !is_deb || !e.file_type().ctx("stat", e.path())?.is_file() {
            continue;
        }
        let dest = cache.join(&name);
        if fsutil::lstat(&dest)?.is_some() {
            continue;
        }
        let tmp = tempfile::Builder::new()
            .prefix(".adopt-")
            .tempfile_in(cache)
            .ctx("create file in", cache)?;
        std::fs::copy(e.path(), tmp.path()).ctx("copy", e.path())?;
        tmp.persist(&dest)
            .map_err(|e| e.error)
            .ctx("rename into", &dest)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_errors_name_the_package() {
        assert_eq!(
            unknown_package("W: x\nE: Unable to locate package nosuchpkg\n").as_deref(),
            Some("nosuchpkg")
        );
        assert_eq!(
            unknown_package("E: Package 'foo' has no installation candidate").as_deref(),
            Some("foo")
        );
        assert_eq!(unknown_package("E: other"), None);
    }

    #[test]
    fn cache_seeding_and_adoption() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        let upper = d.path().join("upper");
        std::fs::create_dir(&cache).unwrap();
        std::fs::write(cache.join("a_1_amd64.deb"), "a").unwrap();
        std::fs::write(cache.join("notes.txt"), "x").unwrap();
        assert_eq!(seed_cache(&cache, &upper).unwrap(), 1);
        let archives = upper.join("var/cache/apt/archives");
        assert!(archives.join("a_1_amd64.deb").is_file());
        std::fs::write(archives.join("b_1_amd64.deb"), "b").unwrap();
        assert_eq!(adopt_debs(&upper, &cache).unwrap(), 1);
        assert_eq!(std::fs::read(cache.join("b_1_amd64.deb")).unwrap(), b"b");
        assert_eq!(adopt_debs(&upper, &cache).unwrap(), 0);
    }
}
