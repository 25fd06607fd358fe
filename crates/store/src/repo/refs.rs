//! Refs: `refs/heads/NAME` (local) and `refs/remotes/REMOTE/NAME`, each holding `HEX\n`.

use super::Repo;
use crate::checksum::Checksum;
use crate::error::{Error, IoContext, Result};
use crate::format::validate_ref_name;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A ref and the commit it points to. Remote refs are named `REMOTE:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RefEntry {
    pub name: String,
    pub commit: Checksum,
}

impl Repo {
    fn ref_path(&self, remote: Option<&str>, name: &str) -> PathBuf {
        match remote {
            None => self.path.join("refs/heads").join(name),
            Some(r) => self.path.join("refs/remotes").join(r).join(name),
        }
    }

    fn read_ref_file(&self, path: &Path, shown: &str) -> Result<Option<Checksum>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let c = Checksum::from_hex(text.trim()).map_err(|_| {
                    Error::Invalid(format!(
                        "ref {shown} ({}) does not hold a commit checksum",
                        path.display()
                    ))
                })?;
                Ok(Some(c))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            // A directory here means the name is a prefix of other refs, not a ref.
            Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
            Err(e) => Err(e).ctx("read ref", path),
        }
    }

    /// The commit of a local ref, or of `REMOTE:NAME`.
    pub fn read_ref(&self, refspec: &str) -> Result<Option<Checksum>> {
        let (remote, name) = split_refspec(refspec)?;
        self.read_ref_file(&self.ref_path(remote, name), refspec)
    }

    /// Resolve a checksum, a ref (local first, then `REMOTE/NAME` under refs/remotes) or
    /// `REMOTE:NAME`, each optionally followed by `^` (parent) any number of times.
    pub fn resolve_rev(&self, rev: &str) -> Result<Checksum> {
        let base = rev.trim_end_matches('^');
        let parents = rev.len() - base.len();
        let mut c = if let Ok(c) = Checksum::from_hex(base) {
            c
        } else if base.contains(':') {
            self.read_ref(base)?
                .ok_or_else(|| Error::RefNotFound(base.to_string()))?
        } else {
            if validate_ref_name(base).is_err() {
                return Err(Error::BadRev(rev.to_string()));
            }
            match self.read_ref_file(&self.ref_path(None, base), base)? {
                Some(c) => c,
                None => self
                    .read_ref_file(&self.path.join("refs/remotes").join(base), base)?
                    .ok_or_else(|| Error::RefNotFound(base.to_string()))?,
            }
        };
        for _ in 0..parents {
            c = self.load_commit(&c)?.parent.ok_or_else(|| {
                Error::Invalid(format!("commit {c} has no parent (resolving {rev})"))
            })?;
        }
        Ok(c)
    }

    /// Point a ref at a commit (atomically, through a rename), or delete it with `None`.
    pub fn set_ref(&self, refspec: &str, commit: Option<&Checksum>) -> Result<()> {
        let (remote, name) = split_refspec(refspec)?;
        let path = self.ref_path(remote, name);
        match commit {
            Some(c) => self.write_file_atomic(&path, format!("{c}\n").as_bytes()),
            None => match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    Err(Error::RefNotFound(refspec.to_string()))
                }
                Err(e) => Err(e).ctx("remove ref", path),
            },
        }
    }

    /// All refs, local ones by name and remote ones as `REMOTE:NAME`, sorted.
    pub fn list_refs(&self) -> Result<Vec<RefEntry>> {
        let mut out = Vec::new();
        let heads = self.path.join("refs/heads");
        self.walk_refs(&heads, &heads, None, &mut out)?;
        let remotes = self.path.join("refs/remotes");
        if let Ok(rd) = std::fs::read_dir(&remotes) {
            for entry in rd {
                let entry = entry.ctx("list", &remotes)?;
                let Some(remote) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let dir = entry.path();
                if dir.is_dir() {
                    self.walk_refs(&dir, &dir, Some(&remote), &mut out)?;
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Local refs only (what a summary lists).
    pub fn list_local_refs(&self) -> Result<Vec<RefEntry>> {
        Ok(self
            .list_refs()?
            .into_iter()
            .filter(|r| !r.name.contains(':'))
            .collect())
    }

    fn walk_refs(
        &self,
        root: &Path,
        dir: &Path,
        remote: Option<&str>,
        out: &mut Vec<RefEntry>,
    ) -> Result<()> {
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).ctx("list", dir),
        };
        for entry in rd {
            let entry = entry.ctx("list", dir)?;
            let path = entry.path();
            let ft = entry.file_type().ctx("stat", &path)?;
            if ft.is_dir() {
                self.walk_refs(root, &path, remote, out)?;
                continue;
            }
            let Some(rel) = path.strip_prefix(root).ok().and_then(|p| p.to_str()) else {
                continue;
            };
            let name = match remote {
                Some(r) => format!("{r}:{rel}"),
                None => rel.to_string(),
            };
            if let Some(commit) = self.read_ref_file(&path, &name)? {
                out.push(RefEntry { name, commit });
            }
        }
        Ok(())
    }
}

/// Split `REMOTE:NAME` or `NAME`, validating both parts.
pub fn split_refspec(refspec: &str) -> Result<(Option<&str>, &str)> {
    let (remote, name) = match refspec.split_once(':') {
        Some((r, n)) => (Some(r), n),
        None => (None, refspec),
    };
    if let Some(r) = remote
        && (r.contains('/') || validate_ref_name(r).is_err())
    {
        return Err(Error::Invalid(format!(
            "invalid remote name {r:?} in {refspec:?}"
        )));
    }
    validate_ref_name(name).map_err(|_| {
        Error::Invalid(format!(
            "invalid ref name {name:?}: use letters, digits, '_', '-' and '.', with '/' between parts"
        ))
    })?;
    Ok((remote, name))
}
