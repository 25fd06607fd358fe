//! Which Debian package provides a program, for the "not installed" message.

/// (program, Debian package) for the tools trellis runs. Debian 12 names.
const PROVIDERS: &[(&str, &str)] = &[
    ("apt-get", "apt"),
    ("bootctl", "systemd"),
    ("chroot", "coreutils"),
    ("cpio", "cpio"),
    ("dpkg", "dpkg"),
    ("dpkg-deb", "dpkg"),
    ("dpkg-query", "dpkg"),
    ("dracut", "dracut"),
    ("losetup", "mount"),
    ("lsinitramfs", "initramfs-tools-core"),
    ("mcopy", "mtools"),
    ("mkfs.erofs", "erofs-utils"),
    ("mkfs.ext4", "e2fsprogs"),
    ("mkfs.fat", "dosfstools"),
    ("mkfs.vfat", "dosfstools"),
    ("mkinitramfs", "initramfs-tools-core"),
    ("mksquashfs", "squashfs-tools"),
    ("mmd", "mtools"),
    ("mmdebstrap", "mmdebstrap"),
    ("mount", "mount"),
    ("objcopy", "binutils"),
    ("ostree", "ostree"),
    ("qemu-img", "qemu-utils"),
    ("qemu-system-x86_64", "qemu-system-x86"),
    ("setfattr", "attr"),
    ("sfdisk", "fdisk"),
    ("sgdisk", "gdisk"),
    ("strip", "binutils"),
    ("systemd-dissect", "systemd-container"),
    ("systemd-sysext", "systemd"),
    ("tar", "tar"),
    ("umount", "mount"),
    ("unmkinitramfs", "initramfs-tools-core"),
    ("unshare", "util-linux"),
    ("unsquashfs", "squashfs-tools"),
    ("xz", "xz-utils"),
    ("zstd", "zstd"),
];

/// The Debian package that provides `program` (a name or a path), if trellis knows it.
pub fn debian_package(program: &str) -> Option<&'static str> {
    let name = program.rsplit('/').next().unwrap_or(program);
    PROVIDERS
        .binary_search_by(|(p, _)| (*p).cmp(name))
        .ok()
        .map(|i| PROVIDERS[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_for_binary_search() {
        assert!(PROVIDERS.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn known_tools() {
        for (prog, pkg) in [
            ("mmdebstrap", "mmdebstrap"),
            ("mkfs.ext4", "e2fsprogs"),
            ("mkfs.erofs", "erofs-utils"),
            ("mksquashfs", "squashfs-tools"),
            ("qemu-img", "qemu-utils"),
            ("systemd-sysext", "systemd"),
            ("unmkinitramfs", "initramfs-tools-core"),
            ("/usr/sbin/mkfs.ext4", "e2fsprogs"),
        ] {
            assert_eq!(debian_package(prog), Some(pkg), "{prog}");
        }
        assert_eq!(debian_package("no-such-tool"), None);
    }
}
