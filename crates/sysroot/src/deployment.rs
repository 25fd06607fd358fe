//! A deployment: one checked-out commit in a stateroot, with what its boot entry needs.

use crate::kargs::Kargs;
use crate::layout;
use crate::origin::Origin;
use std::path::{Path, PathBuf};
use trellis_store::Checksum;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The stateroot (`ostree/deploy/OSNAME`).
    pub osname: String,
    /// The deployed commit.
    pub csum: Checksum,
    /// Numbers deployments of the same commit in the same stateroot: `CSUM.SERIAL`.
    pub serial: u32,
    /// SHA-256 of kernel ‖ initramfs ‖ devicetree: names `boot/ostree/OS-BOOTCSUM`.
    pub bootcsum: String,
    /// Numbers the deployments that share a bootcsum (the last part of `ostree=`).
    pub bootserial: u32,
    pub origin: Option<Origin>,
    /// Kernel arguments, without the `ostree=` that the boot entry adds.
    pub kargs: Kargs,
    /// The commit's `version` metadata.
    pub version: Option<String>,
    /// Staged: checked out, waiting to be finalized at shutdown; it has no boot entry.
    pub staged: bool,
}

impl Deployment {
    /// `CSUM.SERIAL`, the name of its directory.
    pub fn name(&self) -> String {
        format!("{}.{}", self.csum, self.serial)
    }

    /// `SYSROOT/ostree/deploy/OS/deploy/CSUM.SERIAL`.
    pub fn dir(&self, sysroot: &Path) -> PathBuf {
        deploy_dir(sysroot, &self.osname).join(self.name())
    }

    /// `SYSROOT/ostree/deploy/OS/deploy/CSUM.SERIAL.origin`.
    pub fn origin_path(&self, sysroot: &Path) -> PathBuf {
        deploy_dir(sysroot, &self.osname).join(format!("{}.origin", self.name()))
    }

    /// The same deployment (stateroot, commit and serial), whatever else differs.
    pub fn same(&self, other: &Deployment) -> bool {
        self.osname == other.osname && self.csum == other.csum && self.serial == other.serial
    }

    pub fn refspec(&self) -> Option<&str> {
        self.origin.as_ref().and_then(Origin::refspec)
    }

    pub fn is_pinned(&self) -> bool {
        self.origin.as_ref().is_some_and(Origin::is_pinned)
    }
}

/// `SYSROOT/ostree/deploy/OS/deploy`.
pub fn deploy_dir(sysroot: &Path, osname: &str) -> PathBuf {
    layout::stateroot(sysroot, osname).join("deploy")
}

/// Split a deployment directory name `CSUM.SERIAL`.
pub fn parse_deploy_name(name: &str) -> Option<(Checksum, u32)> {
    let (csum, serial) = name.split_once('.')?;
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Checksum::from_hex(csum).ok()?, serial.parse().ok()?))
}

/// The deployment directories present in a stateroot, as (commit, serial), sorted.
/// Origin files and anything else that is not `CSUM.SERIAL` are skipped.
pub fn list_deploy_dirs(sysroot: &Path, osname: &str) -> crate::Result<Vec<(Checksum, u32)>> {
    use crate::error::IoContext;
    let dir = deploy_dir(sysroot, osname);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if crate::error::is_not_found(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx("list", dir),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.ctx("list", &dir)?;
        let is_dir = entry.file_type().ctx("stat", entry.path())?.is_dir();
        if let (true, Some(parsed)) = (
            is_dir,
            entry.file_name().to_str().and_then(parse_deploy_name),
        ) {
            out.push(parsed);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_names() {
        let c = "5d0e1e6607327ff8d8e019c2d3b7c242f792ad0346a8898cbb702219d1bb3d40";
        let (csum, serial) = parse_deploy_name(&format!("{c}.12")).unwrap();
        assert_eq!((csum.to_hex(), serial), (c.to_string(), 12));
        for bad in [
            c.to_string(),
            format!("{c}."),
            format!("{c}.x"),
            format!("{c}.0.origin"),
            "abc.0".to_string(),
        ] {
            assert!(parse_deploy_name(&bad).is_none(), "{bad}");
        }
    }
}
