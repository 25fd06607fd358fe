//! The kernel and the initramfs.
//!
//! The initramfs is made by the tree's own initramfs-tools, once, after everything else is
//! installed (package installs run with INITRD=No so that none is made per package). Two
//! files integrate trellis: a hook that copies /usr/bin/trellis (and the libraries it
//! links) into the initramfs, and a boot script that runs `trellis prepare-root` once the
//! root filesystem is mounted, on boots whose command line names a deployment (`ostree=`).
//! The kernel and initramfs then go where OSTree-style deployments look for them:
//! /usr/lib/modules/KVER/{vmlinuz,initramfs.img}.

use crate::chroot::Chroot;
use crate::error::{Result, tree_error};
use crate::fsutil;
use std::path::Path;

pub const HOOK: &str = "usr/share/initramfs-tools/hooks/trellis";
pub const BOOT_SCRIPT: &str = "usr/share/initramfs-tools/scripts/local-bottom/trellis";

const HOOK_TEXT: &str = r#"#!/bin/sh
# Installed by trellis compose: puts trellis into the initramfs, for prepare-root.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
. /usr/share/initramfs-tools/hook-functions
copy_exec /usr/bin/trellis /usr/bin
"#;

const BOOT_SCRIPT_TEXT: &str = r#"#!/bin/sh
# Installed by trellis compose: with the root filesystem mounted at $rootmnt, make the
# deployment named by ostree= on the kernel command line the root that init switches to.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in
prereqs) prereqs; exit 0 ;;
esac
. /scripts/functions
read -r cmdline < /proc/cmdline
case " $cmdline " in
*" ostree="*) ;;
*) exit 0 ;;
esac
/usr/bin/trellis prepare-root "${rootmnt}" || panic "trellis prepare-root failed"
"#;

/// Write the hook and the boot script into the tree.
pub fn install_integration(tree: &Path) -> Result<()> {
    fsutil::write_file(&tree.join(HOOK), HOOK_TEXT.as_bytes(), 0o755)?;
    fsutil::write_file(&tree.join(BOOT_SCRIPT), BOOT_SCRIPT_TEXT.as_bytes(), 0o755)
}

/// The one kernel in the tree: its version (a /boot/vmlinuz-KVER with modules).
pub fn kernel_version(tree: &Path) -> Result<String> {
    let boot = tree.join("boot");
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&boot) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(kver) = name.to_str().and_then(|n| n.strip_prefix("vmlinuz-")) else {
                continue;
            };
            if tree.join("usr/lib/modules").join(kver).is_dir() {
                found.push(kver.to_string());
            }
        }
    }
    found.sort();
    match found.len() {
        0 => Err(tree_error(
            &boot,
            "no kernel (vmlinuz-VERSION with /usr/lib/modules/VERSION): the packages must \
             install one, e.g. linux-image-amd64",
        )),
        1 => Ok(found.remove(0)),
        _ => Err(tree_error(
            &boot,
            format!(
                "several kernels ({}): a deployment boots one; install only one",
                found.join(", ")
            ),
        )),
    }
}

/// Make the initramfs for `kver` inside the tree and move kernel, initramfs, config and
/// System.map to /usr/lib/modules/KVER/.
pub fn build(chroot: &Chroot, kver: &str) -> Result<()> {
    let tree = chroot.tree();
    if fsutil::lstat(&tree.join("usr/sbin/mkinitramfs"))?.is_none() {
        return Err(tree_error(
            tree,
            "has no mkinitramfs: add initramfs-tools to debian.packages (dracut is not \
             supported yet)",
        ));
    }
    let modules = format!("usr/lib/modules/{kver}");
    chroot
        .tool("mkinitramfs")
        .arg("-o")
        .arg(format!("/{modules}/initramfs.img"))
        .arg(kver)
        .run()?;
    let dir = tree.join(&modules);
    for (from, to) in [
        (format!("vmlinuz-{kver}"), "vmlinuz"),
        (format!("config-{kver}"), "config"),
        (format!("System.map-{kver}"), "System.map"),
    ] {
        let src = tree.join("boot").join(&from);
        if fsutil::lstat(&src)?.is_some() {
            fsutil::rename(&src, &dir.join(to))?;
        }
    }
    fsutil::remove(&tree.join(format!("boot/initrd.img-{kver}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_one_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        assert!(
            kernel_version(t)
                .unwrap_err()
                .to_string()
                .contains("no kernel")
        );
        std::fs::create_dir_all(t.join("boot")).unwrap();
        std::fs::write(t.join("boot/vmlinuz-6.1.0-1-amd64"), "k").unwrap();
        // A vmlinuz without modules is not a kernel the tree can boot.
        assert!(kernel_version(t).is_err());
        std::fs::create_dir_all(t.join("usr/lib/modules/6.1.0-1-amd64")).unwrap();
        assert_eq!(kernel_version(t).unwrap(), "6.1.0-1-amd64");
        std::fs::write(t.join("boot/vmlinuz-6.1.0-2-amd64"), "k").unwrap();
        std::fs::create_dir_all(t.join("usr/lib/modules/6.1.0-2-amd64")).unwrap();
        let e = kernel_version(t).unwrap_err().to_string();
        assert!(
            e.contains("several kernels (6.1.0-1-amd64, 6.1.0-2-amd64)"),
            "{e}"
        );
    }

    #[test]
    fn integration_files_are_executable_shell() {
        let dir = tempfile::tempdir().unwrap();
        install_integration(dir.path()).unwrap();
        for f in [HOOK, BOOT_SCRIPT] {
            let p = dir.path().join(f);
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&p).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o755);
            // Both must at least parse as POSIX shell.
            trellis_tools::Tool::new("sh")
                .arg("-n")
                .arg(&p)
                .run()
                .unwrap();
        }
        let hook = std::fs::read_to_string(dir.path().join(HOOK)).unwrap();
        assert!(hook.contains("copy_exec /usr/bin/trellis /usr/bin"));
        let script = std::fs::read_to_string(dir.path().join(BOOT_SCRIPT)).unwrap();
        assert!(script.contains("/usr/bin/trellis prepare-root \"${rootmnt}\""));
    }

    #[test]
    fn boot_script_runs_only_for_deployments() {
        // Run the script's cmdline test with stand-ins for /proc/cmdline and trellis.
        let dir = tempfile::tempdir().unwrap();
        let script = BOOT_SCRIPT_TEXT
            .replace(
                ". /scripts/functions",
                "panic() { echo \"panic: $*\"; exit 1; }",
            )
            .replace("/proc/cmdline", "\"$CMDLINE\"")
            .replace("/usr/bin/trellis", "echo trellis");
        let p = dir.path().join("s");
        std::fs::write(&p, script).unwrap();
        let run = |cmdline: &str| {
            let f = dir.path().join("cmdline");
            std::fs::write(&f, cmdline).unwrap();
            trellis_tools::Tool::new("sh")
                .arg(&p)
                .env("CMDLINE", &f)
                .env("rootmnt", "/root")
                .run()
                .unwrap()
                .stdout_text()
        };
        assert_eq!(run("root=/dev/vda2 quiet\n"), "");
        assert_eq!(
            run("root=/dev/vda2 ostree=/ostree/boot.1/debian/abc/0 rw\n"),
            "trellis prepare-root /root\n"
        );
        assert_eq!(run("myostree=x\n"), "");
    }
}
