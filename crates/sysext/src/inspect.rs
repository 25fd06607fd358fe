//! `trellis sysext inspect`: an image's name, release data, files, and the OS it is for.

use crate::check::{self, Problem};
use crate::error::Result;
use crate::image::{self, FileEntry, Format};
use crate::osrelease::OsRelease;
use serde::Serialize;
use std::path::Path;

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub image: String,
    pub name: Option<String>,
    pub format: Format,
    /// Image file size (raw), or content bytes (directory).
    pub size: u64,
    pub release: Option<OsRelease>,
    /// The OS it is for, in words ("debian 12 on x86-64").
    pub matches: Option<String>,
    pub problems: Vec<Problem>,
    pub files: Vec<FileEntry>,
}

/// Read an image (unpacking raw ones under `scratch`).
pub fn inspect(path: &Path, scratch: &Path) -> Result<Inspection> {
    let img = image::open(path, scratch)?;
    let f = check::structure(&img)?;
    let files = image::list_files(&img.root)?;
    Ok(Inspection {
        image: f.image,
        name: f.name,
        format: f.format,
        size: img.size,
        matches: f.release.as_ref().map(describe_target),
        release: f.release,
        problems: f.problems,
        files,
    })
}

/// What OS a release file selects, in words.
pub fn describe_target(r: &OsRelease) -> String {
    let id = r.get("ID").unwrap_or("(no ID: matches nothing)");
    let mut s = if id == "_any" {
        "any OS".to_string()
    } else {
        let mut s = id.to_string();
        match (r.get("SYSEXT_LEVEL"), r.get("VERSION_ID")) {
            (Some(l), Some(v)) => {
                s += &format!(" with SYSEXT_LEVEL={l} (or, without one, VERSION_ID={v})")
            }
            (Some(l), None) => s += &format!(" with SYSEXT_LEVEL={l}"),
            (None, Some(v)) => s += &format!(" {v}"),
            (None, None) => s += " (any version)",
        }
        s
    };
    match r.get("ARCHITECTURE") {
        Some(a) if a != "_any" => s += &format!(" on {a}"),
        _ => s += " on any architecture",
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_in_words() {
        let r = OsRelease::parse("ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\n");
        assert_eq!(describe_target(&r), "debian 12 on x86-64");
        let r = OsRelease::parse("ID=_any\n");
        assert_eq!(describe_target(&r), "any OS on any architecture");
    }
}
