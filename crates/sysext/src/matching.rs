//! Whether an extension matches an OS: the rules systemd-sysext 252 applies
//! (`extension_release_validate`), in its order, each refusal with the reason.
//!
//! 252 has no `ID_LIKE` matching: an extension for `ID=debian` does not merge on a host
//! with `ID=ubuntu ID_LIKE=debian`. Newer systemd accepts that; we follow 252, the version
//! Debian 12 ships, so that "matches" here means "merges there".

use crate::osrelease::OsRelease;
use serde::Serialize;

/// Which kind of system the extension is merged into (`SYSEXT_SCOPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    System,
    Initrd,
    Portable,
}

impl Scope {
    fn word(self) -> &'static str {
        match self {
            Scope::System => "system",
            Scope::Initrd => "initrd",
            Scope::Portable => "portable",
        }
    }
}

/// The OS an extension is checked against: the fields systemd reads from its os-release,
/// and its architecture (systemd's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostOs {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub sysext_level: Option<String>,
    pub architecture: String,
    pub scope: Scope,
}

impl HostOs {
    /// From an os-release file, for a running system (scope `system`).
    pub fn new(os_release: &OsRelease, architecture: &str) -> HostOs {
        HostOs {
            id: os_release.get("ID").map(str::to_string),
            version_id: os_release.get("VERSION_ID").map(str::to_string),
            sysext_level: os_release.get("SYSEXT_LEVEL").map(str::to_string),
            architecture: architecture.to_string(),
            scope: Scope::System,
        }
    }

    /// "debian 12 (x86-64)", for messages.
    pub fn describe(&self) -> String {
        let mut s = self.id.clone().unwrap_or_else(|| "(no ID)".into());
        if let Some(v) = &self.version_id {
            s += &format!(" {v}");
        }
        if let Some(l) = &self.sysext_level {
            s += &format!(" SYSEXT_LEVEL={l}");
        }
        s + &format!(" ({})", self.architecture)
    }
}

/// The outcome of matching one extension against one OS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    /// It would be merged; why (which rule accepted it).
    Match(String),
    /// It would be skipped; why.
    Mismatch(String),
}

impl Verdict {
    pub fn matches(&self) -> bool {
        matches!(self, Verdict::Match(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Verdict::Match(r) | Verdict::Mismatch(r) => r,
        }
    }
}

/// Decide as systemd-sysext 252 does whether an extension with release fields `ext`
/// merges on `host`.
pub fn validate(ext: &OsRelease, host: &HostOs) -> Verdict {
    use Verdict::{Match, Mismatch};
    // 1. No release data at all.
    if ext.is_empty() {
        return Mismatch("the extension-release file carries no release data".into());
    }
    // 2. Scope: an extension without SYSEXT_SCOPE is for "system portable".
    let scope = ext.get("SYSEXT_SCOPE").unwrap_or("system portable");
    if !scope.split_whitespace().any(|w| w == host.scope.word()) {
        return Mismatch(format!(
            "SYSEXT_SCOPE={scope:?} does not include {:?}",
            host.scope.word()
        ));
    }
    // 3. Architecture.
    if let Some(arch) = ext.get("ARCHITECTURE")
        && arch != "_any"
        && arch != host.architecture
    {
        return Mismatch(format!(
            "ARCHITECTURE={arch} but the OS runs on {}",
            host.architecture
        ));
    }
    // 4. ID is required.
    let Some(id) = ext.get("ID") else {
        return Mismatch("the extension-release file has no ID".into());
    };
    // 5. ID=_any skips the version checks.
    if id == "_any" {
        return Match("ID=_any matches every OS".into());
    }
    let Some(host_id) = host.id.as_deref() else {
        return Mismatch(
            "the OS's os-release has no ID (systemd-sysext refuses to merge anything)".into(),
        );
    };
    // 6. Same ID (252: no ID_LIKE).
    if id != host_id {
        return Mismatch(format!("ID={id} but the OS has ID={host_id}"));
    }
    // 7.-10. Levels when both have one, else VERSION_ID when the host has one.
    if let (Some(hl), Some(el)) = (host.sysext_level.as_deref(), ext.get("SYSEXT_LEVEL")) {
        return if hl == el {
            Match(format!("ID={id} and SYSEXT_LEVEL={el} match"))
        } else {
            Mismatch(format!(
                "SYSEXT_LEVEL={el} but the OS has SYSEXT_LEVEL={hl}"
            ))
        };
    }
    if let Some(hv) = host.version_id.as_deref() {
        return match ext.get("VERSION_ID") {
            Some(ev) if ev == hv => Match(format!("ID={id} and VERSION_ID={ev} match")),
            Some(ev) => Mismatch(format!("VERSION_ID={ev} but the OS has VERSION_ID={hv}")),
            None => Mismatch(format!(
                "the extension has no VERSION_ID{} and the OS has VERSION_ID={hv}",
                if host.sysext_level.is_none() {
                    " (SYSEXT_LEVEL is used only when the OS has one too)"
                } else {
                    " nor SYSEXT_LEVEL"
                }
            )),
        };
    }
    Match(format!(
        "ID={id} matches and the OS has no VERSION_ID{}",
        if host.sysext_level.is_some() {
            " (the extension has no SYSEXT_LEVEL)"
        } else {
            " nor SYSEXT_LEVEL (a rolling release)"
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(fields: &[(&str, &str)]) -> HostOs {
        HostOs::new(&OsRelease::from_fields(fields.iter().copied()), "x86-64")
    }

    fn ext(fields: &[(&str, &str)]) -> OsRelease {
        OsRelease::from_fields(fields.iter().copied())
    }

    fn check(e: &[(&str, &str)], h: &[(&str, &str)]) -> Verdict {
        validate(&ext(e), &host(h))
    }

    const DEBIAN12: &[(&str, &str)] = &[("ID", "debian"), ("VERSION_ID", "12")];

    #[test]
    fn the_rules_in_order() {
        let m = |v: Verdict| {
            assert!(v.matches(), "{v:?}");
        };
        let no = |v: Verdict, why: &str| {
            assert!(!v.matches(), "{v:?}");
            assert!(v.reason().contains(why), "{why:?} not in {v:?}");
        };
        no(check(&[], DEBIAN12), "no release data");
        no(
            check(&[("ID", "debian"), ("SYSEXT_SCOPE", "initrd")], DEBIAN12),
            "SYSEXT_SCOPE",
        );
        m(check(
            &[
                ("ID", "debian"),
                ("VERSION_ID", "12"),
                ("SYSEXT_SCOPE", "initrd system"),
            ],
            DEBIAN12,
        ));
        no(
            check(&[("ID", "debian"), ("ARCHITECTURE", "arm64")], DEBIAN12),
            "ARCHITECTURE=arm64",
        );
        no(check(&[("VERSION_ID", "12")], DEBIAN12), "no ID");
        m(check(&[("ID", "_any"), ("ARCHITECTURE", "_any")], DEBIAN12));
        no(
            check(&[("ID", "fedora"), ("VERSION_ID", "12")], DEBIAN12),
            "ID=fedora but the OS has ID=debian",
        );
        // 252 ignores ID_LIKE.
        no(
            check(
                &[("ID", "debian"), ("VERSION_ID", "12")],
                &[
                    ("ID", "ubuntu"),
                    ("ID_LIKE", "debian"),
                    ("VERSION_ID", "12"),
                ],
            ),
            "ID=debian",
        );
        m(check(&[("ID", "debian")], &[("ID", "debian")]));
        // Both levels: VERSION_ID is ignored.
        m(check(
            &[
                ("ID", "debian"),
                ("VERSION_ID", "11"),
                ("SYSEXT_LEVEL", "1.0"),
            ],
            &[
                ("ID", "debian"),
                ("VERSION_ID", "12"),
                ("SYSEXT_LEVEL", "1.0"),
            ],
        ));
        no(
            check(
                &[("ID", "debian"), ("SYSEXT_LEVEL", "2")],
                &[("ID", "debian"), ("SYSEXT_LEVEL", "1")],
            ),
            "SYSEXT_LEVEL=2",
        );
        // A level alone does not satisfy a host that has only VERSION_ID.
        no(
            check(&[("ID", "debian"), ("SYSEXT_LEVEL", "1.0")], DEBIAN12),
            "no VERSION_ID",
        );
        no(
            check(&[("ID", "debian"), ("VERSION_ID", "11")], DEBIAN12),
            "VERSION_ID=11 but the OS has VERSION_ID=12",
        );
        m(check(&[("ID", "debian"), ("VERSION_ID", "12")], DEBIAN12));
        // Host with a level and no VERSION_ID, extension without a level.
        m(check(
            &[("ID", "debian")],
            &[("ID", "debian"), ("SYSEXT_LEVEL", "1")],
        ));
        no(check(&[("ID", "debian")], &[("VERSION_ID", "12")]), "no ID");
    }
}
