//! What an extension needs to know about its base commit: the os-release it must match,
//! the architecture, the packages installed, the timestamp (the build's fixed date).

use crate::arch;
use crate::error::{Result, SysextError};
use crate::matching::HostOs;
use crate::osrelease::OsRelease;
use serde::Serialize;
use std::io::Read;
use trellis_compose::dpkg::{self, Package};
use trellis_store::{Checksum, Repo};

/// Where the os-release file may be in a commit, in the order it is looked for.
const OS_RELEASE_PATHS: &[&str] = &["usr/lib/os-release", "usr/etc/os-release", "etc/os-release"];

/// Where the dpkg status file may be: a composed commit keeps the database under /usr.
pub const DPKG_STATUS_PATHS: &[&str] = &["usr/lib/sysimage/dpkg/status", "var/lib/dpkg/status"];

const MAX_TEXT: u64 = 64 * 1024 * 1024;

/// A base commit, as far as extensions are concerned.
#[derive(Clone, Debug, Serialize)]
pub struct BaseInfo {
    pub commit: String,
    pub timestamp: u64,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    pub os_release: OsRelease,
    /// Debian's name (`amd64`).
    pub dpkg_architecture: String,
    /// systemd's name (`x86-64`).
    pub architecture: String,
    #[serde(skip)]
    pub packages: Vec<Package>,
}

impl BaseInfo {
    /// The OS an extension built on this commit runs on.
    pub fn host(&self) -> HostOs {
        HostOs::new(&self.os_release, &self.architecture)
    }
}

/// Read a base commit's release data and packages from the repository.
pub fn read(repo: &Repo, rev: &str) -> Result<BaseInfo> {
    let commit = repo.resolve_rev(rev)?;
    let c = repo.load_commit(&commit)?;
    let os_text = first_file(repo, &commit, OS_RELEASE_PATHS)?.ok_or_else(|| {
        SysextError::Invalid(format!(
            "commit {commit} ({rev}) has no os-release file (looked for {}): an extension \
             matches its base by ID and VERSION_ID from there",
            OS_RELEASE_PATHS.join(", ")
        ))
    })?;
    let status = first_file(repo, &commit, DPKG_STATUS_PATHS)?.ok_or_else(|| {
        SysextError::Invalid(format!(
            "commit {commit} ({rev}) has no dpkg database (looked for {}): extensions are \
             built with apt over a Debian commit made by `trellis compose`",
            DPKG_STATUS_PATHS.join(", ")
        ))
    })?;
    let packages = dpkg::parse_status(&status);
    let (dpkg_architecture, architecture) = architecture_of(&packages).ok_or_else(|| {
        SysextError::Invalid(format!(
            "commit {commit}: cannot tell its architecture (the dpkg package is not in its \
             dpkg status, or its architecture is unknown)"
        ))
    })?;
    Ok(BaseInfo {
        commit: commit.to_string(),
        timestamp: c.timestamp,
        version: c.version().map(str::to_string),
        os_release: OsRelease::parse(&os_text),
        dpkg_architecture,
        architecture,
        packages,
    })
}

/// The native architecture: the one dpkg itself is built for.
pub fn architecture_of(packages: &[Package]) -> Option<(String, String)> {
    let p = packages.iter().find(|p| p.name == "dpkg")?;
    let s = arch::from_debian(&p.architecture)?;
    Some((p.architecture.clone(), s.to_string()))
}

/// The text of the first of `paths` that exists in the commit (following symlinks).
fn first_file(repo: &Repo, commit: &Checksum, paths: &[&str]) -> Result<Option<String>> {
    for p in paths {
        match trellis_store::tree::open_file(repo, commit, p) {
            Ok((_, size, reader)) => {
                if size > MAX_TEXT {
                    return Err(SysextError::Invalid(format!(
                        "{p} in commit {commit} is {size} bytes; too large"
                    )));
                }
                let mut text = String::new();
                reader
                    .take(MAX_TEXT)
                    .read_to_string(&mut text)
                    .map_err(|e| {
                        SysextError::Invalid(format!("reading {p} in commit {commit}: {e}"))
                    })?;
                return Ok(Some(text));
            }
            Err(trellis_store::Error::PathNotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}
