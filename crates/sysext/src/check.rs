//! `trellis sysext check`: would an image merge on an OS, and if not, why.
//!
//! Two kinds of findings. Problems with the image itself (its name, where its files are,
//! a forbidden os-release, a missing or misnamed release file) come first; then the
//! matching rules of systemd-sysext 252 ([`crate::matching`]) against the OS.

use crate::error::Result;
use crate::fsutil;
use crate::image::{self, Format, OpenImage, RELEASE_DIR};
use crate::matching::{self, HostOs, Verdict};
use crate::name;
use crate::osrelease::OsRelease;
use serde::Serialize;

/// The top-level directories systemd-sysext merges.
pub const HIERARCHIES: &[&str] = &["usr", "opt"];

/// One reason an image is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A stable keyword: `name`, `outside`, `os-release`, `release-missing`,
    /// `release-name`, `release-not-file`, `mismatch`.
    pub code: &'static str,
    pub message: String,
}

impl Problem {
    fn new(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
        }
    }
}

/// What was found out about one image.
#[derive(Clone, Debug, Serialize)]
pub struct Findings {
    pub image: String,
    pub name: Option<String>,
    pub format: Format,
    /// The release file's fields (from the file named after the image, or the only one).
    pub release: Option<OsRelease>,
    pub problems: Vec<Problem>,
}

/// The image's own problems, and its release data.
pub fn structure(img: &OpenImage) -> Result<Findings> {
    let mut problems = Vec::new();
    let root = &img.root;
    let valid_name = match &img.name {
        None => {
            problems.push(Problem::new(
                "name",
                "a raw image's file name must end in .raw (systemd ignores other files)",
            ));
            None
        }
        Some(n) => match name::validate_name(n) {
            Ok(()) => Some(n.clone()),
            Err(e) => {
                let hint = if n.contains('_') {
                    format!(
                        " (systemd 252 looks for extension-release.{n} in it; install it as \
                         {}.raw)",
                        n.split('_').next().unwrap_or(n)
                    )
                } else {
                    String::new()
                };
                problems.push(Problem::new("name", format!("{e}{hint}")));
                None
            }
        },
    };
    if fsutil::lstat(&root.join("usr/lib/os-release"))?.is_some() {
        problems.push(Problem::new(
            "os-release",
            "contains usr/lib/os-release: an extension must not carry one (systemd-sysext \
             252 then fails the whole merge, for every extension)",
        ));
    }
    let mut outside = Vec::new();
    for e in fsutil::sorted_entries(root)? {
        let n = e.file_name().to_string_lossy().into_owned();
        if !HIERARCHIES.contains(&n.as_str()) {
            outside.push(format!("/{n}"));
        }
    }
    if !outside.is_empty() {
        let shown: Vec<_> = outside.iter().take(10).cloned().collect();
        problems.push(Problem::new(
            "outside",
            format!(
                "has files outside /usr and /opt: {}{} (systemd-sysext merges only /usr and \
                 /opt; configuration belongs in a confext)",
                shown.join(", "),
                if outside.len() > 10 { ", ..." } else { "" }
            ),
        ));
    }
    let candidates = image::release_candidates(root)?;
    let mut release = None;
    if let Some(n) = &valid_name {
        match candidates.iter().find(|(c, _)| c == n) {
            Some((_, true)) => release = image::read_release(root, n)?,
            Some((_, false)) => problems.push(Problem::new(
                "release-not-file",
                format!(
                    "{} is not a regular file (systemd does not follow symlinks there)",
                    image::release_path(n)
                ),
            )),
            None if candidates.is_empty() => problems.push(Problem::new(
                "release-missing",
                format!(
                    "has no {}: systemd-sysext skips an image without its extension-release file",
                    image::release_path(n)
                ),
            )),
            None => {
                let others: Vec<_> = candidates.iter().map(|(c, _)| c.as_str()).collect();
                problems.push(Problem::new(
                    "release-name",
                    format!(
                        "the image is named {n:?} but its release file is for {}: systemd \
                         252 reads only {}/extension-release.{n} (rename the image {}{}, \
                         or rebuild it with --name {n})",
                        others.join(", "),
                        RELEASE_DIR,
                        others[0],
                        if img.format.is_raw() {
                            name::RAW_SUFFIX
                        } else {
                            ""
                        },
                    ),
                ));
            }
        }
    }
    if release.is_none()
        && let [(only, true)] = candidates.as_slice()
    {
        release = image::read_release(root, only)?;
    }
    Ok(Findings {
        image: img.path.display().to_string(),
        name: img.name.clone(),
        format: img.format,
        release,
        problems,
    })
}

/// The full check against an OS.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub findings: Findings,
    pub os: HostOs,
    /// The matching rules' verdict, when the image has release data.
    pub verdict: Option<Verdict>,
    /// True when systemd-sysext 252 would merge it.
    pub merges: bool,
}

impl CheckReport {
    /// Every reason it would not merge, problems first.
    pub fn reasons(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .findings
            .problems
            .iter()
            .map(|p| p.message.clone())
            .collect();
        if let Some(Verdict::Mismatch(r)) = &self.verdict {
            v.push(r.clone());
        }
        v
    }
}

pub fn check(img: &OpenImage, os: &HostOs) -> Result<CheckReport> {
    let findings = structure(img)?;
    let verdict = findings.release.as_ref().map(|r| matching::validate(r, os));
    let merges = findings.problems.is_empty() && verdict.as_ref().is_some_and(Verdict::matches);
    Ok(CheckReport {
        findings,
        os: os.clone(),
        verdict,
        merges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn debian12() -> HostOs {
        HostOs::new(
            &OsRelease::from_fields([("ID", "debian"), ("VERSION_ID", "12")]),
            "x86-64",
        )
    }

    fn make(root: &Path, name: &str, release: &str) {
        std::fs::create_dir_all(root.join(RELEASE_DIR)).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::write(root.join("usr/bin/tool"), "#!/bin/sh\n").unwrap();
        std::fs::write(root.join(image::release_path(name)), release).unwrap();
    }

    fn run(root: &Path) -> CheckReport {
        let img = image::open(root, Path::new("/tmp")).unwrap();
        check(&img, &debian12()).unwrap()
    }

    #[test]
    fn a_good_directory_image_merges() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("debug");
        make(
            &root,
            "debug",
            "ID=debian\nVERSION_ID=12\nARCHITECTURE=x86-64\n",
        );
        let r = run(&root);
        assert!(r.merges, "{:?}", r.reasons());
        assert!(r.reasons().is_empty());
    }

    #[test]
    fn refusals_say_why() {
        let d = tempfile::tempdir().unwrap();
        let wrong_id = d.path().join("a");
        make(&wrong_id, "a", "ID=fedora\nVERSION_ID=12\n");
        let r = run(&wrong_id);
        assert!(!r.merges);
        assert_eq!(r.reasons(), ["ID=fedora but the OS has ID=debian"]);

        let outside = d.path().join("b");
        make(&outside, "b", "ID=debian\nVERSION_ID=12\n");
        std::fs::create_dir_all(outside.join("etc")).unwrap();
        std::fs::write(outside.join("etc/conf"), "").unwrap();
        let r = run(&outside);
        assert!(!r.merges);
        assert_eq!(r.findings.problems[0].code, "outside");
        assert!(
            r.reasons()[0].contains("outside /usr and /opt: /etc"),
            "{:?}",
            r.reasons()
        );

        let osr = d.path().join("c");
        make(&osr, "c", "ID=debian\nVERSION_ID=12\n");
        std::fs::write(osr.join("usr/lib/os-release"), "ID=debian\n").unwrap();
        assert_eq!(run(&osr).findings.problems[0].code, "os-release");

        let misnamed = d.path().join("d");
        make(&misnamed, "other", "ID=debian\nVERSION_ID=12\n");
        let r = run(&misnamed);
        assert_eq!(r.findings.problems[0].code, "release-name");
        assert!(r.reasons()[0].contains("for other"), "{:?}", r.reasons());
        // The release data is still shown.
        assert_eq!(r.findings.release.unwrap().get("ID"), Some("debian"));

        let none = d.path().join("e");
        std::fs::create_dir_all(none.join("usr/bin")).unwrap();
        assert_eq!(run(&none).findings.problems[0].code, "release-missing");

        let versioned = d.path().join("f_1.2");
        make(&versioned, "f", "ID=debian\nVERSION_ID=12\n");
        let r = run(&versioned);
        assert_eq!(r.findings.problems[0].code, "name");
        assert!(
            r.reasons()[0].contains("install it as f.raw"),
            "{:?}",
            r.reasons()
        );
    }
}
