//! What the manifest asks for beyond packages, done inside the bootstrapped tree: host
//! name, overlay files, the user, kernel arguments, the trellis binary and its initramfs
//! integration and systemd units, the hooks, then the units to enable.

use crate::chroot::Chroot;
use crate::error::{ComposeError, IoContext, Result};
use crate::fsutil;
use crate::manifest::{Manifest, User};
use std::path::Path;
use trellis_tools::Tool;

/// Where the manifest's kernel arguments go: systemd's kernel-install convention, read
/// when boot entries are written.
pub const KERNEL_CMDLINE: &str = "usr/lib/kernel/cmdline";

/// Where the trellis binary goes in the tree.
pub const TRELLIS_BIN: &str = "usr/bin/trellis";

/// Services must not start while the tree is customized (Debian's policy-rc.d protocol).
const POLICY_RC_D: &str = "usr/sbin/policy-rc.d";

/// Everything before the initramfs. `trellis_binary` is installed as /usr/bin/trellis.
pub fn customize(
    chroot: &Chroot,
    m: &Manifest,
    trellis_binary: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let tree = chroot.tree();
    fsutil::write_file(&tree.join(POLICY_RC_D), b"#!/bin/sh\nexit 101\n", 0o755)?;
    hostname(tree, &m.system.hostname)?;
    if let Some(dir) = &m.system.overlay {
        log(&format!("overlay {}", dir.display()));
        overlay(chroot, dir)?;
    }
    if let Some(u) = &m.user {
        log(&format!("user {}", u.name));
        user(chroot, u)?;
    }
    if !m.system.kernel_cmdline.is_empty() {
        let line = format!("{}\n", m.system.kernel_cmdline.join(" "));
        fsutil::write_file(&tree.join(KERNEL_CMDLINE), line.as_bytes(), 0o644)?;
    }
    install_trellis(chroot, trellis_binary)?;
    crate::initramfs::install_integration(tree)?;
    crate::units::install(tree)?;
    for h in &m.hooks {
        log(&format!("hook {:?}", h.name));
        hook(chroot, h).map_err(|e| match e {
            ComposeError::Tool(t) => ComposeError::Invalid(format!("hook {:?}: {t}", h.name)),
            e => e,
        })?;
    }
    let mut units = crate::units::to_enable(tree, m)?;
    units.extend(m.system.units.iter().cloned());
    if !units.is_empty() {
        log(&format!("enable {}", units.join(" ")));
        chroot.tool("systemctl").arg("enable").args(&units).run()?;
    }
    fsutil::remove(&tree.join(POLICY_RC_D))?;
    Ok(())
}

fn hostname(tree: &Path, name: &str) -> Result<()> {
    fsutil::write_file(
        &tree.join("etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    let short = name.split('.').next().unwrap_or(name);
    let hosts = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{name}{}\n\n::1\t\tlocalhost ip6-localhost \
         ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n",
        if short != name {
            format!(" {short}")
        } else {
            String::new()
        }
    );
    fsutil::write_file(&tree.join("etc/hosts"), hosts.as_bytes(), 0o644)
}

/// Copy the overlay in with the tree's own tar, inside the chroot: paths resolve as they
/// will on the system (a `lib/...` file lands in /usr/lib through the /lib symlink, an
/// absolute symlink in the tree never leads to the host), files are owned by root, and
/// existing directories keep their modes.
fn overlay(chroot: &Chroot, dir: &Path) -> Result<()> {
    let archive = overlay_tar(dir)?;
    chroot
        .tool("tar")
        .args([
            "-x",
            "-f",
            "-",
            "-C",
            "/",
            "--no-overwrite-dir",
            "--keep-directory-symlink",
            "--no-same-owner",
        ])
        .stdin(archive)
        .run()?;
    Ok(())
}

/// The overlay as a tar archive, entries sorted, owned by root.
fn overlay_tar(dir: &Path) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut paths = Vec::new();
    collect(dir, Path::new(""), &mut paths)?;
    for rel in paths {
        let path = dir.join(&rel);
        let md = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&md, tar::HeaderMode::Deterministic);
        h.set_uid(0);
        h.set_gid(0);
        {
            use std::os::unix::fs::MetadataExt;
            h.set_mode(md.mode() & 0o7777);
        }
        if md.is_symlink() {
            let target = std::fs::read_link(&path).ctx("read symlink", &path)?;
            b.append_link(&mut h, &rel, &target).ctx("archive", &path)?;
        } else if md.is_dir() {
            b.append_data(&mut h, &rel, std::io::empty())
                .ctx("archive", &path)?;
        } else if md.is_file() {
            let f = std::fs::File::open(&path).ctx("open", &path)?;
            b.append_data(&mut h, &rel, f).ctx("archive", &path)?;
        } else {
            return Err(crate::error::tree_error(
                &path,
                "is not a file, directory or symlink; an overlay holds only those",
            ));
        }
    }
    b.into_inner().ctx("archive", dir)
}

fn collect(root: &Path, rel: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .ctx("read directory", &dir)?
        .collect::<std::io::Result<_>>()
        .ctx("read directory", &dir)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        out.push(r.clone());
        if e.file_type().ctx("stat", e.path())?.is_dir() {
            collect(root, &r, out)?;
        }
    }
    Ok(())
}

fn user(chroot: &Chroot, u: &User) -> Result<()> {
    let mut t = chroot
        .tool("useradd")
        .args(["--create-home", "--shell", &u.shell]);
    if !u.groups.is_empty() {
        t = t.arg("--groups").arg(u.groups.join(","));
    }
    // '*' rather than the default '!': no password, yet not a locked account (sshd
    // refuses key logins to locked accounts in some configurations).
    let hash = u.password_hash.as_deref().unwrap_or("*");
    t.args(["--password", hash]).arg(&u.name).run()?;
    if !u.ssh_authorized_keys.is_empty() {
        let keys = format!("{}\n", u.ssh_authorized_keys.join("\n"));
        chroot
            .script(
                "home=$(getent passwd \"$1\" | cut -d: -f6)\n\
                 install -d -m 700 -o \"$1\" -g \"$(id -gn \"$1\")\" \"$home/.ssh\"\n\
                 umask 077\n\
                 cat > \"$home/.ssh/authorized_keys\"\n\
                 chown \"$1:$(id -gn \"$1\")\" \"$home/.ssh/authorized_keys\"",
                &[&u.name],
            )
            .stdin(keys)
            .run()?;
    }
    Ok(())
}

/// Install the running trellis as /usr/bin/trellis, without its debug info when `strip`
/// is at hand, and check that it runs inside the tree (its C library and the libraries it
/// links must be the tree's).
fn install_trellis(chroot: &Chroot, binary: &Path) -> Result<()> {
    let dest = chroot.tree().join(TRELLIS_BIN);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    fsutil::remove(&dest)?;
    if trellis_tools::which("strip").is_some() {
        Tool::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&dest)
            .arg(binary)
            .run()?;
    } else {
        std::fs::copy(binary, &dest).ctx("copy", binary)?;
    }
    fsutil::set_mode(&dest, 0o755)?;
    chroot
        .tool(&format!("/{TRELLIS_BIN}"))
        .arg("--version")
        .run()
        .map_err(|e| {
            ComposeError::Invalid(format!(
                "{} does not run inside the tree (it must link only against libraries the \
                 tree has, e.g. a glibc no newer than the suite's): {e}",
                binary.display()
            ))
        })?;
    Ok(())
}

fn hook(chroot: &Chroot, h: &crate::manifest::Hook) -> Result<()> {
    if h.chroot {
        chroot.script(&h.run, &[]).run()?;
    } else {
        let mut t = Tool::new("sh")
            .args(["-e", "-c", &h.run])
            .current_dir(chroot.tree())
            .env("TRELLIS_ROOT", chroot.tree());
        for (k, v) in chroot.env() {
            t = t.env(k, v);
        }
        t.run()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_archive_is_sorted_root_owned_and_keeps_modes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("etc/motd.d")).unwrap();
        std::fs::write(d.join("etc/motd.d/hello"), "hi\n").unwrap();
        std::fs::write(d.join("b-script"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            d.join("b-script"),
            std::os::unix::fs::PermissionsExt::from_mode(0o750),
        )
        .unwrap();
        std::os::unix::fs::symlink("/usr/share/x", d.join("a-link")).unwrap();
        // Explicit modes: the test must not depend on the umask.
        for (p, mode) in [
            ("etc", 0o755),
            ("etc/motd.d", 0o755),
            ("etc/motd.d/hello", 0o644),
        ] {
            std::fs::set_permissions(
                d.join(p),
                std::os::unix::fs::PermissionsExt::from_mode(mode),
            )
            .unwrap();
        }
        let bytes = overlay_tar(d).unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let path = e.path().unwrap().display().to_string();
            let mode = h.mode().unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            seen.push((path, mode, link));
        }
        assert_eq!(
            seen,
            [
                (
                    "a-link".to_string(),
                    0o777,
                    Some("/usr/share/x".to_string())
                ),
                ("b-script".to_string(), 0o750, None),
                ("etc".to_string(), 0o755, None),
                ("etc/motd.d".to_string(), 0o755, None),
                ("etc/motd.d/hello".to_string(), 0o644, None),
            ]
        );
    }
}
