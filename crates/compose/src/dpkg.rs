//! The installed packages, from the dpkg status file.

use crate::error::{IoContext, Result};
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
}

/// Installed packages listed in a dpkg `status` file, sorted by name.
pub fn installed(status: &Path) -> Result<Vec<Package>> {
    let text = std::fs::read_to_string(status).ctx("read", status)?;
    Ok(parse_status(&text))
}

pub fn parse_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut arch, mut installed) = (None, None, None, false);
        for line in stanza.lines() {
            // Continuation lines (descriptions, conffiles) start with a space.
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key.starts_with([' ', '\t']) {
                continue;
            }
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Architecture" => arch = Some(value),
                "Status" => installed = value.ends_with(" installed"),
                _ => {}
            }
        }
        if let (Some(n), true) = (name, installed) {
            out.push(Package {
                name: n.to_string(),
                version: version.unwrap_or_default().to_string(),
                architecture: arch.unwrap_or_default().to_string(),
            });
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installed_packages_only_sorted() {
        let status = "Package: zlib1g\nStatus: install ok installed\nPriority: optional\n\
                      Architecture: amd64\nVersion: 1:1.2.13.dfsg-1\nDescription: compression\n \
                      Version: not a field\n\n\
                      Package: removed\nStatus: deinstall ok config-files\nVersion: 1\n\
                      Architecture: amd64\n\n\
                      Package: base-files\nStatus: install ok installed\nArchitecture: amd64\n\
                      Version: 12.4+deb12u5\n";
        assert_eq!(
            parse_status(status),
            [
                Package {
                    name: "base-files".into(),
                    version: "12.4+deb12u5".into(),
                    architecture: "amd64".into()
                },
                Package {
                    name: "zlib1g".into(),
                    version: "1:1.2.13.dfsg-1".into(),
                    architecture: "amd64".into()
                },
            ]
        );
    }
}
