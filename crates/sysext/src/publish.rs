//! `trellis sysext publish`: put extension images beside a published repository, in
//! `DEST/extensions/`, listed in a signed `SHA256SUMS`.
//!
//! Layout (what a device, or systemd-sysupdate with `MatchPattern=NAME_@v.raw`, reads):
//!
//! ```text
//! DEST/extensions/NAME_VERSION.raw       the image (immutable under its name)
//! DEST/extensions/NAME_VERSION.release   its extension-release file, so that a device
//!                                        picks the version matching its OS without
//!                                        downloading every image
//! DEST/extensions/SHA256SUMS             sha256sum format, sorted by file name
//! DEST/extensions/SHA256SUMS.ed25519     base64 ed25519 signatures of SHA256SUMS
//! ```
//!
//! Order: images and release files first, then the signature file (signing both the new
//! index and the one it replaces), then `SHA256SUMS` by rename. A reader sees the old
//! index or the new one, each with a signature that verifies, and every file either lists
//! is already in place.

use crate::check;
use crate::error::{IoContext, Result, SysextError, bad_image};
use crate::fsutil;
use crate::image;
use crate::name;
use crate::sums::{self, SIG_FILE, SUMS_FILE, Sums};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use trellis_store::sign::SecretKey;

/// The directory beside the repository that holds extensions.
pub const EXTENSIONS_DIR: &str = "extensions";

/// One published image.
#[derive(Clone, Debug, Serialize)]
pub struct Published {
    pub name: String,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// False when the same bytes were already published under that name.
    pub uploaded: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PublishReport {
    pub dir: PathBuf,
    pub images: Vec<Published>,
    /// Entries in the new SHA256SUMS.
    pub entries: usize,
}

/// SHA-256 and size of a file, streamed.
pub fn hash_file(path: &Path) -> Result<([u8; 32], u64)> {
    let mut f = std::fs::File::open(path).ctx("open", path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).ctx("read", path)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Publish `images` into `dest`/extensions, signing the index with `key`. Each image is
/// unpacked under `scratch` and checked first: a raw image, named NAME.raw, with its
/// release file, a SYSEXT_VERSION_ID, nothing outside /usr and /opt.
pub fn publish(
    images: &[PathBuf],
    dest: &Path,
    key: &SecretKey,
    scratch: &Path,
) -> Result<PublishReport> {
    let dir = dest.join(EXTENSIONS_DIR);
    std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    let sums_path = dir.join(SUMS_FILE);
    let old_text = match std::fs::read(&sums_path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).ctx("read", &sums_path),
    };
    let mut index = match &old_text {
        Some(t) => Sums::parse(&String::from_utf8_lossy(t)).map_err(|e| {
            SysextError::Invalid(format!(
                "{}: {e} (fix or remove it before publishing)",
                sums_path.display()
            ))
        })?,
        None => Sums::default(),
    };

    // Check everything before writing anything.
    let mut staged = Vec::new();
    for img_path in images {
        let img = image::open(img_path, scratch)?;
        if !img.format.is_raw() {
            return Err(bad_image(
                img_path,
                "is a directory; publish raw images (build with --format erofs or squashfs)",
            ));
        }
        let f = check::structure(&img)?;
        if let Some(p) = f.problems.first() {
            return Err(bad_image(
                img_path,
                format!("not publishable: {}", p.message),
            ));
        }
        let (Some(n), Some(rel)) = (&f.name, &f.release) else {
            return Err(bad_image(img_path, "has no release data"));
        };
        let version = rel.get("SYSEXT_VERSION_ID").ok_or_else(|| {
            bad_image(
                img_path,
                "its release file has no SYSEXT_VERSION_ID; rebuild it with --version",
            )
        })?;
        name::validate_version(version)?;
        let release_text = std::fs::read(img.root.join(image::release_path(n)))
            .ctx("read", img.root.join(image::release_path(n)))?;
        staged.push((
            img_path.clone(),
            n.clone(),
            version.to_string(),
            release_text,
        ));
    }

    let mut report = Vec::new();
    for (img_path, n, version, release_text) in staged {
        let file = name::published_file(&n, &version);
        let rel_file = name::published_release(&n, &version);
        let (hash, size) = hash_file(&img_path)?;
        let target = dir.join(&file);
        let uploaded = match fsutil::lstat(&target)? {
            Some(_) => {
                let (have, _) = hash_file(&target)?;
                if have != hash {
                    return Err(SysextError::Invalid(format!(
                        "{} is already published with different content; a published version \
                         never changes (rebuild with a new --version)",
                        target.display()
                    )));
                }
                false
            }
            None => {
                copy_atomic(&img_path, &target)?;
                true
            }
        };
        fsutil::write_atomic(&dir.join(&rel_file), &release_text, 0o644)?;
        index.entries.insert(file.clone(), hash);
        index.entries.insert(rel_file, sums::sha256(&release_text));
        report.push(Published {
            name: n,
            version,
            file,
            sha256: hex::encode(hash),
            size,
            uploaded,
        });
    }

    let new_text = index.to_text();
    let mut sig = sums::sign_line(key, new_text.as_bytes());
    if let Some(old) = &old_text
        && old != new_text.as_bytes()
    {
        sig += &sums::sign_line(key, old);
    }
    fsutil::write_atomic(&dir.join(SIG_FILE), sig.as_bytes(), 0o644)?;
    fsutil::write_atomic(&sums_path, new_text.as_bytes(), 0o644)?;
    Ok(PublishReport {
        dir,
        entries: index.entries.len(),
        images: report,
    })
}

/// Copy a file to `dest` through a synced temporary file beside it.
fn copy_atomic(src: &Path, dest: &Path) -> Result<()> {
    let parent = fsutil::parent(dest);
    let tmp = tempfile::Builder::new()
        .prefix(".trellis-")
        .tempfile_in(parent)
        .ctx("create file in", parent)?;
    std::fs::copy(src, tmp.path()).ctx("copy", src)?;
    tmp.as_file().sync_all().ctx("sync", tmp.path())?;
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .ctx("chmod", tmp.path())?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .ctx("rename into", dest)?;
    Ok(())
}
