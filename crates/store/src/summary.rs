//! Regenerating a repository's `summary` (and `summary.sig`) from its local refs.

use crate::checksum::ObjectType;
use crate::error::{IoContext, Result};
use crate::format::{Commit, Summary, SummaryRef};
use crate::gvariant::{self, Value};
use crate::repo::Repo;
use crate::sign::{SecretKey, add_signature};
use std::io::ErrorKind;

impl Repo {
    /// Build the summary for the current local refs (`ostree summary -u`).
    pub fn build_summary(&self) -> Result<Summary> {
        let mut refs = Vec::new();
        for r in self.list_local_refs()? {
            let bytes = self.read_metadata(ObjectType::Commit, &r.commit)?;
            let commit = Commit::parse(&bytes).map_err(|source| crate::Error::BadObject {
                ty: ObjectType::Commit,
                csum: r.commit,
                source,
            })?;
            refs.push(SummaryRef {
                name: r.name,
                commit_size: bytes.len() as u64,
                commit: r.commit,
                metadata: Summary::ref_metadata(commit.timestamp, commit.version()),
            });
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Summary {
            refs,
            metadata: Summary::repo_metadata(self.mode().config_name(), now),
        })
    }

    /// Write `summary`, and `summary.sig` when a key is given; a stale `summary.sig` is
    /// removed when not signing, so that it never vouches for another summary.
    pub fn update_summary(&self, key: Option<&SecretKey>) -> Result<Summary> {
        let summary = self.build_summary()?;
        let bytes = summary.to_bytes();
        let sig_path = self.path().join("summary.sig");
        match key {
            Some(k) => {
                let sig =
                    gvariant::to_bytes(&Value::vardict(add_signature(Vec::new(), k.sign(&bytes))));
                self.write_file_atomic(&self.path().join("summary"), &bytes)?;
                self.write_file_atomic(&sig_path, &sig)?;
            }
            None => {
                match std::fs::remove_file(&sig_path) {
                    Err(e) if e.kind() != ErrorKind::NotFound => {
                        return Err(e).ctx("remove", sig_path);
                    }
                    _ => {}
                }
                self.write_file_atomic(&self.path().join("summary"), &bytes)?;
            }
        }
        Ok(summary)
    }
}
