//! Origin files: `ostree/deploy/OS/deploy/CSUM.SERIAL.origin`, a key file saying where a
//! deployment came from and so what an upgrade follows:
//!
//! ```text
//! [origin]
//! refspec=REMOTE:REF        # or a local REF, or a commit checksum (nothing to follow)
//! override-commit=CSUM      # optional: stay on this commit
//! ```
//!
//! Other groups and keys (rpm-ostree's, bootc's) are kept as they are when rewritten.

use crate::error::{Error, IoContext, Result, is_not_found};
use std::path::Path;
use trellis_store::format::keyfile::KeyFile;

const GROUP: &str = "origin";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin(KeyFile);

impl Origin {
    /// `[origin] refspec=REFSPEC`, as `ostree admin deploy REFSPEC` writes it.
    pub fn from_refspec(refspec: &str) -> Origin {
        let mut kf = KeyFile::default();
        kf.set(GROUP, "refspec", refspec);
        Origin(kf)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Origin> {
        KeyFile::parse(text)
            .map(Origin)
            .map_err(|e| Error::Corrupt {
                path: path.to_path_buf(),
                why: format!("origin file: {e}"),
            })
    }

    /// The refspec an upgrade follows.
    pub fn refspec(&self) -> Option<&str> {
        self.0.get(GROUP, "refspec")
    }

    /// A commit the deployment is pinned to, if any.
    pub fn override_commit(&self) -> Option<&str> {
        self.0.get(GROUP, "override-commit")
    }

    pub fn set_refspec(&mut self, refspec: &str) {
        self.0.set(GROUP, "refspec", refspec);
    }

    pub fn set_override_commit(&mut self, commit: Option<&str>) {
        match commit {
            Some(c) => self.0.set(GROUP, "override-commit", c),
            None => {
                self.0.remove_key(GROUP, "override-commit");
            }
        }
    }

    /// ostree's "pinned" deployments, kept whatever is deployed after them.
    pub fn is_pinned(&self) -> bool {
        matches!(
            self.0.get_bool("libostree-transient", "pinned"),
            Some(Ok(true))
        )
    }

    pub fn keyfile(&self) -> &KeyFile {
        &self.0
    }

    pub fn keyfile_mut(&mut self) -> &mut KeyFile {
        &mut self.0
    }

    pub fn to_text(&self) -> String {
        self.0.to_text()
    }

    /// Read an origin file; `None` when there is none (ostree allows that).
    pub fn read(path: &Path) -> Result<Option<Origin>> {
        match std::fs::read_to_string(path) {
            Ok(text) => Origin::parse(&text, path).map(Some),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e).ctx("read", path),
        }
    }

    /// Replace an origin file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic(path, self.to_text().as_bytes(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refspec_origin_is_what_ostree_writes() {
        let o = Origin::from_refspec("testos/stable");
        assert_eq!(o.to_text(), "[origin]\nrefspec=testos/stable\n");
        assert_eq!(o.refspec(), Some("testos/stable"));
        assert!(!o.is_pinned());
    }

    #[test]
    fn keeps_foreign_groups_and_reads_pins() {
        let text = "[origin]\nrefspec=r:a/b\n\n[rpmostree]\nrequested-packages=vim\n\n[libostree-transient]\npinned=true\n";
        let mut o = Origin::parse(text, Path::new("x.origin")).unwrap();
        assert!(o.is_pinned());
        o.set_override_commit(Some("abc"));
        assert_eq!(o.override_commit(), Some("abc"));
        o.set_override_commit(None);
        o.set_refspec("r:a/c");
        assert_eq!(o.to_text(), text.replace("a/b", "a/c"));
        let err = Origin::parse("garbage", Path::new("bad.origin")).unwrap_err();
        assert!(err.to_string().contains("bad.origin"), "{err}");
    }
}
