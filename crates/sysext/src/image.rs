//! Reading an extension image: a directory, or a raw erofs or squashfs file system.
//!
//! Raw images are read without mounting them: `unsquashfs` or `fsck.erofs --extract`
//! unpacks them into a private temporary directory. Both check every block they read, so
//! a corrupt image fails here, with the tool's words, before anything uses it.

use crate::error::{IoContext, Result, bad_image};
use crate::fsutil;
use crate::name;
use crate::osrelease::OsRelease;
use serde::Serialize;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use trellis_tools::Tool;

/// Where the release file of extension NAME lives, relative to the image root.
pub const RELEASE_DIR: &str = "usr/lib/extension-release.d";

pub fn release_path(name: &str) -> String {
    format!("{RELEASE_DIR}/extension-release.{name}")
}

const SQUASHFS_MAGIC: &[u8; 4] = b"hsqs";
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
const EROFS_SUPER_OFFSET: usize = 1024;

/// An image's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Dir,
    Erofs,
    Squashfs,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "dir" | "directory" => Some(Format::Dir),
            "erofs" => Some(Format::Erofs),
            "squashfs" => Some(Format::Squashfs),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Dir => "dir",
            Format::Erofs => "erofs",
            Format::Squashfs => "squashfs",
        }
    }

    pub fn is_raw(self) -> bool {
        self != Format::Dir
    }
}

/// Tell an image's format from what it is (a directory) or from its superblock magic.
pub fn detect(path: &Path) -> Result<Format> {
    let md = std::fs::metadata(path).ctx("stat", path)?;
    if md.is_dir() {
        return Ok(Format::Dir);
    }
    if !md.is_file() {
        return Err(bad_image(
            path,
            "is neither a directory nor a regular file (block devices are not read)",
        ));
    }
    let mut head = Vec::with_capacity(4608);
    std::fs::File::open(path)
        .ctx("open", path)?
        .take(4608)
        .read_to_end(&mut head)
        .ctx("read", path)?;
    if head.starts_with(SQUASHFS_MAGIC) {
        return Ok(Format::Squashfs);
    }
    if let Some(m) = head.get(EROFS_SUPER_OFFSET..EROFS_SUPER_OFFSET + 4)
        && u32::from_le_bytes([m[0], m[1], m[2], m[3]]) == EROFS_MAGIC
    {
        return Ok(Format::Erofs);
    }
    if head.get(512..520) == Some(b"EFI PART") || head.get(4096..4104) == Some(b"EFI PART") {
        return Err(bad_image(
            path,
            "is a GPT disk image (a DDI); trellis reads extensions that are a directory or a \
             bare erofs or squashfs file system",
        ));
    }
    Err(bad_image(
        path,
        format!(
            "is not an extension image: no squashfs or erofs superblock ({} bytes; an \
             image is a directory, or a file made by `trellis sysext build --format \
             erofs|squashfs`)",
            md.len()
        ),
    ))
}

/// An image opened for reading: `root` is the directory itself, or where a raw image was
/// unpacked (removed on drop).
#[derive(Debug)]
pub struct OpenImage {
    pub path: PathBuf,
    /// The name systemd 252 gives it (file name without `.raw`), if it has one.
    pub name: Option<String>,
    pub format: Format,
    pub root: PathBuf,
    pub size: u64,
    _scratch: Option<tempfile::TempDir>,
}

/// Open `path`: directories are read in place; raw images are unpacked under `scratch`.
pub fn open(path: &Path, scratch: &Path) -> Result<OpenImage> {
    let format = detect(path)?;
    let name = name::image_name(path, format == Format::Dir);
    if format == Format::Dir {
        return Ok(OpenImage {
            path: path.to_path_buf(),
            name,
            format,
            root: path.to_path_buf(),
            size: du(path)?,
            _scratch: None,
        });
    }
    let size = std::fs::metadata(path).ctx("stat", path)?.len();
    std::fs::create_dir_all(scratch).ctx("create directory", scratch)?;
    let tmp = tempfile::Builder::new()
        .prefix("trellis-sysext-read-")
        .tempdir_in(scratch)
        .ctx("create directory in", scratch)?;
    let root = tmp.path().join("root");
    extract(path, format, &root)?;
    Ok(OpenImage {
        path: path.to_path_buf(),
        name,
        format,
        root,
        size,
        _scratch: Some(tmp),
    })
}

fn extract(path: &Path, format: Format, dest: &Path) -> Result<()> {
    let tool = match format {
        Format::Squashfs => Tool::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(dest)
            .arg(path),
        Format::Erofs => {
            std::fs::create_dir(dest).ctx("create directory", dest)?;
            Tool::new("fsck.erofs")
                .arg(format!("--extract={}", dest.display()))
                .arg(path)
        }
        Format::Dir => return Ok(()),
    };
    match tool.run() {
        Ok(_) => Ok(()),
        Err(e @ trellis_tools::ToolError::Missing { .. }) => Err(e.into()),
        Err(e) => Err(bad_image(
            path,
            format!("is a corrupt or unreadable {} image: {e}", format.as_str()),
        )),
    }
}

/// Bytes used by a directory tree (file sizes, as `du --apparent-size`).
fn du(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in fsutil::sorted_entries(dir)? {
        let md = e.metadata().ctx("stat", e.path())?;
        n += md.len();
        if md.is_dir() {
            n += du(&e.path())?;
        }
    }
    Ok(n)
}

/// One file in an image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Relative to the image root, `/`-separated.
    pub path: String,
    /// `d`, `-`, `l`, or `?` for anything else.
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl FileEntry {
    /// `ls -l`-like line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{}{:04o} {:>5} {:>5} {:>10} {}",
            self.kind,
            self.mode & 0o7777,
            self.uid,
            self.gid,
            self.size,
            self.path
        );
        if let Some(t) = &self.target {
            s += &format!(" -> {t}");
        }
        s
    }
}

/// Every entry under `root`, sorted, depth first (the root itself excluded).
pub fn list_files(root: &Path) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    walk(root, "", &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<FileEntry>) -> Result<()> {
    for e in fsutil::sorted_entries(dir)? {
        let path = e.path();
        let md = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_file() {
            '-'
        } else {
            '?'
        };
        let target = ft
            .is_symlink()
            .then(|| std::fs::read_link(&path).ctx("read symlink", &path))
            .transpose()?
            .map(|t| t.to_string_lossy().into_owned());
        out.push(FileEntry {
            path: r.clone(),
            kind,
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: if ft.is_file() { md.len() } else { 0 },
            target,
        });
        if ft.is_dir() {
            walk(&path, &r, out)?;
        }
    }
    Ok(())
}

/// The release files under `usr/lib/extension-release.d` of an image root: (suffix after
/// `extension-release.`, whether it is a regular file).
pub fn release_candidates(root: &Path) -> Result<Vec<(String, bool)>> {
    let dir = root.join(RELEASE_DIR);
    match fsutil::lstat(&dir)? {
        Some(m) if m.is_dir() => {}
        _ => return Ok(Vec::new()),
    }
    let mut out = Vec::new();
    for e in fsutil::sorted_entries(&dir)? {
        let n = e.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = n.strip_prefix("extension-release.") {
            let regular = e.file_type().ctx("stat", e.path())?.is_file();
            out.push((suffix.to_string(), regular));
        }
    }
    Ok(out)
}

/// The release file of extension `name` in an image root, if present as a regular file.
pub fn read_release(root: &Path, name: &str) -> Result<Option<OsRelease>> {
    let p = root.join(release_path(name));
    match fsutil::lstat(&p)? {
        Some(m) if m.is_file() => {
            if m.len() > 1024 * 1024 {
                return Err(bad_image(&p, "is larger than 1 MiB; not a release file"));
            }
            let text = std::fs::read(&p).ctx("read", &p)?;
            Ok(Some(OsRelease::parse(&String::from_utf8_lossy(&text))))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_by_magic() {
        let d = tempfile::tempdir().unwrap();
        let sq = d.path().join("a.raw");
        let mut data = b"hsqs".to_vec();
        data.resize(8192, 0);
        std::fs::write(&sq, &data).unwrap();
        assert_eq!(detect(&sq).unwrap(), Format::Squashfs);
        let er = d.path().join("b.raw");
        let mut data = vec![0u8; 8192];
        data[1024..1028].copy_from_slice(&EROFS_MAGIC.to_le_bytes());
        std::fs::write(&er, &data).unwrap();
        assert_eq!(detect(&er).unwrap(), Format::Erofs);
        let gpt = d.path().join("c.raw");
        let mut data = vec![0u8; 8192];
        data[512..520].copy_from_slice(b"EFI PART");
        std::fs::write(&gpt, &data).unwrap();
        assert!(detect(&gpt).unwrap_err().to_string().contains("GPT"));
        let junk = d.path().join("d.raw");
        std::fs::write(&junk, b"not an image").unwrap();
        let e = detect(&junk).unwrap_err().to_string();
        assert!(e.contains("not an extension image"), "{e}");
        assert_eq!(detect(d.path()).unwrap(), Format::Dir);
    }

    #[test]
    fn lists_and_reads_release() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ext");
        std::fs::create_dir_all(root.join(RELEASE_DIR)).unwrap();
        std::fs::write(root.join(release_path("ext")), "ID=debian\n").unwrap();
        std::fs::write(
            root.join(format!("{RELEASE_DIR}/extension-release.other")),
            "",
        )
        .unwrap();
        std::os::unix::fs::symlink("x", root.join("usr/link")).unwrap();
        let files = list_files(&root).unwrap();
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr/lib",
                "usr/lib/extension-release.d",
                "usr/lib/extension-release.d/extension-release.ext",
                "usr/lib/extension-release.d/extension-release.other",
                "usr/link"
            ]
        );
        assert_eq!(files[5].target.as_deref(), Some("x"));
        assert_eq!(
            read_release(&root, "ext").unwrap().unwrap().get("ID"),
            Some("debian")
        );
        assert_eq!(read_release(&root, "nope").unwrap(), None);
        assert_eq!(
            release_candidates(&root).unwrap(),
            [("ext".to_string(), true), ("other".to_string(), true)]
        );
    }
}
