//! Packing an extension tree: as a directory, or as a raw erofs or squashfs image.
//!
//! Same tree, same bytes: the tree's timestamps are already fixed, and both tools are told
//! the build date and a filesystem UUID derived from the content's identity instead of
//! the clock and a random one. Both sort directory entries themselves. The result is
//! written beside the destination and renamed over it, so a reader never sees half an
//! image.

use crate::error::{IoContext, Result, SysextError};
use crate::fsutil;
use crate::image::Format;
use std::path::{Path, PathBuf};
use trellis_tools::Tool;

/// How raw images are compressed: lz4hc for erofs (what the Debian 12 kernel and
/// erofs-utils 1.5 both support), zstd for squashfs.
const EROFS_COMPRESSION: &str = "-zlz4hc,12";
const SQUASHFS_COMPRESSION: &str = "zstd";

/// Where the image for `name` goes when the user gave `output`: inside it when it is an
/// existing directory (and the format is raw, or the directory is not itself named for
/// the image), else `output` itself, which must then be named as systemd expects.
pub fn destination(output: &Path, name: &str, format: Format) -> Result<PathBuf> {
    let file_name = match format {
        Format::Dir => name.to_string(),
        _ => format!("{name}{}", crate::name::RAW_SUFFIX),
    };
    let is_dir = std::fs::metadata(output).is_ok_and(|m| m.is_dir());
    let dest = if is_dir && (format.is_raw() || output.file_name() != Some(file_name.as_ref())) {
        output.join(&file_name)
    } else {
        output.to_path_buf()
    };
    if dest.file_name() != Some(file_name.as_ref()) {
        return Err(SysextError::Invalid(format!(
            "output {}: an extension named {name:?} must be {} {file_name:?} (systemd \
             finds the release file by the image's name); give -o DIR or -o .../{file_name}",
            dest.display(),
            if format.is_raw() {
                "a file named"
            } else {
                "a directory named"
            },
        )));
    }
    if format == Format::Dir && fsutil::lstat(&dest)?.is_some() {
        return Err(SysextError::Invalid(format!(
            "output {} already exists; remove it first (a directory image is not replaced \
             in place)",
            dest.display()
        )));
    }
    if let Some(m) = fsutil::lstat(&dest)?
        && m.is_dir()
    {
        return Err(SysextError::Invalid(format!(
            "output {} is a directory; remove it or choose another path",
            dest.display()
        )));
    }
    Ok(dest)
}

/// A filesystem UUID from a seed (name, version, base commit): stable, and different for
/// different extensions.
pub fn uuid_from(seed: &str) -> String {
    let h = crate::sums::sha256(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    // Version 4 and RFC 4122 variant bits, so that tools take it for a valid UUID.
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Turn `tree` into the image at `dest`; returns its size in bytes (for a directory: the
/// content bytes). `tree` is consumed (moved or removed).
pub fn pack(tree: &Path, format: Format, dest: &Path, epoch: u64, uuid: &str) -> Result<u64> {
    let parent = fsutil::parent(dest);
    std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    match format {
        Format::Dir => {
            if std::fs::rename(tree, dest).is_err() {
                // Another filesystem: copy beside the destination, then rename.
                let tmp = tempfile::Builder::new()
                    .prefix(".trellis-sysext-")
                    .tempdir_in(parent)
                    .ctx("create directory in", parent)?;
                let staged = tmp.path().join("tree");
                Tool::new("cp")
                    .args(["-a", "--"])
                    .arg(tree)
                    .arg(&staged)
                    .run()?;
                std::fs::rename(&staged, dest).ctx("rename into", dest)?;
                fsutil::remove(tree)?;
            }
            fsutil::sync_dir(parent)?;
            crate::image::open(dest, parent).map(|i| i.size)
        }
        Format::Erofs | Format::Squashfs => {
            let tmp = tempfile::Builder::new()
                .prefix(".trellis-sysext-")
                .suffix(".raw")
                .tempfile_in(parent)
                .ctx("create file in", parent)?;
            let tool = match format {
                Format::Erofs => Tool::new("mkfs.erofs")
                    .arg(EROFS_COMPRESSION)
                    .arg(format!("-T{epoch}"))
                    .arg(format!("-U{uuid}"))
                    .arg("--quiet")
                    .arg(tmp.path())
                    .arg(tree),
                _ => Tool::new("mksquashfs")
                    .arg(tree)
                    .arg(tmp.path())
                    .args(["-noappend", "-no-progress", "-quiet", "-comp"])
                    .arg(SQUASHFS_COMPRESSION)
                    .arg("-mkfs-time")
                    .arg(epoch.to_string())
                    .arg("-all-time")
                    .arg(epoch.to_string()),
            };
            tool.run()?;
            tmp.as_file().sync_all().ctx("sync", tmp.path())?;
            let size = tmp.as_file().metadata().ctx("stat", tmp.path())?.len();
            std::fs::set_permissions(
                tmp.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .ctx("chmod", tmp.path())?;
            tmp.persist(dest)
                .map_err(|e| e.error)
                .ctx("rename into", dest)?;
            fsutil::sync_dir(parent)?;
            fsutil::remove(tree)?;
            Ok(size)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path();
        assert_eq!(
            destination(out, "debug", Format::Erofs).unwrap(),
            out.join("debug.raw")
        );
        assert_eq!(
            destination(&out.join("debug.raw"), "debug", Format::Squashfs).unwrap(),
            out.join("debug.raw")
        );
        assert_eq!(
            destination(out, "debug", Format::Dir).unwrap(),
            out.join("debug")
        );
        assert_eq!(
            destination(&out.join("debug"), "debug", Format::Dir).unwrap(),
            out.join("debug")
        );
        let e = destination(&out.join("x.raw"), "debug", Format::Erofs).unwrap_err();
        assert!(e.to_string().contains("\"debug.raw\""), "{e}");
        std::fs::create_dir(out.join("debug")).unwrap();
        assert!(destination(out, "debug", Format::Dir).is_err());
    }

    #[test]
    fn uuids_are_stable_and_valid() {
        let a = uuid_from("debug 1 abc");
        assert_eq!(a, uuid_from("debug 1 abc"));
        assert_ne!(a, uuid_from("debug 2 abc"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }
}
