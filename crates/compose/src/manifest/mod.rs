//! The compose manifest: a TOML file describing one OS tree (docs/manifest.md).
//!
//! Parsing is strict: unknown fields and wrong types are errors, and every error names the
//! field (`debian.packages`) and its line. Semantic checks (a kernel among the packages,
//! a supported architecture, valid names) point at the line of the offending value, so
//! that a mistake is found before a two-minute bootstrap rather than after it.

mod raw;
mod spans;

use raw::Raw;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The one architecture trellis composes for now.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["amd64"];

/// mmdebstrap variants a manifest may ask for (the larger ones add nothing a manifest
/// cannot list itself).
pub const VARIANTS: &[&str] = &[
    "essential",
    "apt",
    "required",
    "minbase",
    "important",
    "standard",
];

/// SOURCE_DATE_EPOCH when the manifest gives none: Debian 12's release day. It fixes every
/// date that packages write into the tree (the password-change day in /etc/shadow, the
/// initramfs timestamps), so that an unchanged manifest gives an unchanged tree. A real
/// date rather than 0: a zero "last password change" forces a change at first login.
pub const DEFAULT_SOURCE_DATE_EPOCH: u64 = 1_686_355_200;

pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// A manifest error: the file, the line when known, the field, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {}{message}", path.display(), at_line(*line), field_prefix(field))]
pub struct ManifestError {
    pub path: PathBuf,
    /// 1-based line of the value (or key) at fault.
    pub line: Option<usize>,
    /// Dotted field name, e.g. `debian.packages` or `hooks[1].run`.
    pub field: Option<String>,
    pub message: String,
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Os {
    /// The OS (stateroot) name deployments are made under.
    pub name: String,
    /// The ref the commit goes to, e.g. `debian/bookworm/amd64`.
    pub ref_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debian {
    pub suite: String,
    pub mirror: String,
    pub architecture: String,
    pub components: Vec<String>,
    pub variant: String,
    /// As written: names, optionally with `=VERSION` or `/RELEASE`.
    pub packages: Vec<String>,
    pub source_date_epoch: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    pub hostname: String,
    /// Absolute path of the overlay directory.
    pub overlay: Option<PathBuf>,
    pub kernel_cmdline: Vec<String>,
    pub units: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password_hash: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub groups: Vec<String>,
    pub shell: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteSpec {
    pub name: String,
    pub url: String,
    /// Base64 ed25519 public key commits from the remote must be signed with.
    pub public_key: Option<String>,
}

/// Upgrades on the device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Upgrades {
    /// Enable trellis-upgrade.timer: download and stage updates daily.
    pub automatic: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    /// `PREFIX` + `YYYYMMDD.N`, N counting the builds of one (UTC) day.
    #[default]
    Date,
    /// `PREFIX` + `N`, one more than the parent's.
    Counter,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionScheme {
    pub scheme: Scheme,
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub name: String,
    /// A shell script, run with `sh -e -c`.
    pub run: String,
    /// Run inside the tree (chroot), or on the host in the tree's directory.
    pub chroot: bool,
}

/// A validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub path: PathBuf,
    /// SHA-256 of the manifest file, hex.
    pub digest: String,
    pub os: Os,
    pub debian: Debian,
    pub system: System,
    pub user: Option<User>,
    pub remote: Option<RemoteSpec>,
    /// Absolute path of the ed25519 secret key to sign commits with.
    pub signing_key: Option<PathBuf>,
    pub upgrades: Upgrades,
    pub version: VersionScheme,
    pub hooks: Vec<Hook>,
    /// Line of each package name as written in `debian.packages`.
    package_lines: HashMap<String, usize>,
    packages_line: usize,
}

impl Manifest {
    /// Read and validate a manifest file. Relative paths in it are relative to its
    /// directory.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            line: None,
            field: None,
            message: format!("cannot read it: {e}"),
        })?;
        Manifest::parse(&text, path)
    }

    /// Validate manifest text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            ManifestError {
                path: path.to_path_buf(),
                line: offset.map(|o| spans::line_of(text, o)),
                field: offset.and_then(|o| spans::field_at(text, o)),
                message: e.message().trim().to_string(),
            }
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let v = Validator {
            text,
            path,
            dir: &dir,
        };
        v.manifest(raw, hex(&Sha256::digest(text.as_bytes())))
    }

    /// The line of `package` in `debian.packages` (matched by name, ignoring a
    /// `=VERSION` or `/RELEASE` suffix), else the line of the list.
    pub fn package_line(&self, package: &str) -> usize {
        self.package_lines
            .get(package)
            .copied()
            .unwrap_or(self.packages_line)
    }

    /// An error about a field of this manifest, at `line`.
    pub fn error(&self, line: Option<usize>, field: &str, message: String) -> ManifestError {
        ManifestError {
            path: self.path.clone(),
            line,
            field: Some(field.to_string()),
            message,
        }
    }

    /// Bare package names (without `=VERSION` or `/RELEASE`).
    pub fn package_names(&self) -> impl Iterator<Item = &str> {
        self.debian.packages.iter().map(|p| package_name(p))
    }
}

/// The package name in an apt request `NAME`, `NAME=VERSION` or `NAME/RELEASE`.
pub fn package_name(request: &str) -> &str {
    request.split(['=', '/']).next().unwrap_or(request)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
    dir: &'a Path,
}

type Res<T> = Result<T, ManifestError>;

impl Validator<'_> {
    fn err<T>(&self, at: &Spanned<T>, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.to_path_buf(),
            line: Some(spans::line_of(self.text, at.span().start)),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    fn line<T>(&self, at: &Spanned<T>) -> usize {
        spans::line_of(self.text, at.span().start)
    }

    fn check(
        &self,
        v: &Spanned<String>,
        field: &str,
        ok: impl Fn(&str) -> bool,
        why: &str,
    ) -> Res<String> {
        if ok(v.get_ref()) {
            Ok(v.get_ref().clone())
        } else {
            Err(self.err(v, field, format!("{:?} {why}", v.get_ref())))
        }
    }

    fn relative_path(&self, v: &Spanned<String>, field: &str, dir: bool) -> Res<PathBuf> {
        let p = self.dir.join(v.get_ref());
        let md = std::fs::metadata(&p)
            .map_err(|e| self.err(v, field, format!("{}: {e}", p.display())))?;
        if dir != md.is_dir() {
            let what = if dir { "a directory" } else { "a file" };
            return Err(self.err(v, field, format!("{} is not {what}", p.display())));
        }
        std::path::absolute(&p).map_err(|e| self.err(v, field, format!("{}: {e}", p.display())))
    }

    fn manifest(&self, raw: Raw, digest: String) -> Res<Manifest> {
        let os = Os {
            name: self.check(
                &raw.os.name,
                "os.name",
                is_os_name,
                "is not a valid OS name (letters, digits, '.', '_' and '-')",
            )?,
            ref_name: self.check(
                &raw.os.ref_name,
                "os.ref",
                |r| trellis_store::format::validate_ref_name(r).is_ok(),
                "is not a valid ref name (e.g. debian/bookworm/amd64)",
            )?,
        };
        let (debian, package_lines, packages_line) = self.debian(raw.debian)?;
        let system = self.system(raw.system, &os)?;
        let user = raw.user.map(|u| self.user(u)).transpose()?;
        let remote = raw.remote.map(|r| self.remote(r)).transpose()?;
        let signing_key = raw
            .signing
            .map(|s| self.relative_path(&s.key, "signing.key", false))
            .transpose()?;
        let upgrades = Upgrades {
            automatic: raw.upgrades.and_then(|u| u.automatic).unwrap_or(false),
        };
        let version = VersionScheme {
            scheme: raw.version.scheme,
            prefix: match raw.version.prefix {
                Some(p) => self.check(
                    &p,
                    "version.prefix",
                    |s| !s.chars().any(char::is_whitespace),
                    "must not contain spaces",
                )?,
                None => String::new(),
            },
        };
        let mut hooks = Vec::new();
        for (i, h) in raw.hooks.into_iter().enumerate() {
            let name = self.check(
                &h.name,
                &format!("hooks[{i}].name"),
                |s| !s.trim().is_empty(),
                "is empty",
            )?;
            let run = self.check(
                &h.run,
                &format!("hooks[{i}].run"),
                |s| !s.trim().is_empty(),
                "is empty",
            )?;
            hooks.push(Hook {
                name,
                run,
                chroot: h.chroot.unwrap_or(true),
            });
        }
        Ok(Manifest {
            path: self.path.to_path_buf(),
            digest,
            os,
            debian,
            system,
            user,
            remote,
            signing_key,
            upgrades,
            version,
            hooks,
            package_lines,
            packages_line,
        })
    }

    fn debian(&self, d: raw::RawDebian) -> Res<(Debian, HashMap<String, usize>, usize)> {
        let suite = self.check(
            &d.suite,
            "debian.suite",
            |s| is_word(s, "-."),
            "is not a suite name (e.g. bookworm)",
        )?;
        let mirror = match d.mirror {
            Some(m) => self.check(
                &m,
                "debian.mirror",
                is_url,
                "is not an http, https or file URL",
            )?,
            None => DEFAULT_MIRROR.to_string(),
        };
        let architecture = match d.architecture {
            Some(a) if !SUPPORTED_ARCHITECTURES.contains(&a.get_ref().as_str()) => {
                return Err(self.err(
                    &a,
                    "debian.architecture",
                    format!(
                        "architecture {:?} is not supported yet: trellis composes {} only",
                        a.get_ref(),
                        SUPPORTED_ARCHITECTURES.join(", ")
                    ),
                ));
            }
            Some(a) => a.into_inner(),
            None => "amd64".to_string(),
        };
        let components = match d.components {
            Some(c) => {
                let mut out = Vec::new();
                for x in c.get_ref() {
                    out.push(self.check(
                        x,
                        "debian.components",
                        |s| is_word(s, "-/"),
                        "is not a component name (e.g. main)",
                    )?);
                }
                if out.is_empty() {
                    return Err(self.err(&c, "debian.components", "is empty (use at least main)"));
                }
                out
            }
            None => vec!["main".to_string()],
        };
        let variant = match d.variant {
            Some(v) => self.check(
                &v,
                "debian.variant",
                |s| VARIANTS.contains(&s),
                &format!("is not one of {}", VARIANTS.join(", ")),
            )?,
            None => "minbase".to_string(),
        };
        let packages_line = self.line(&d.packages);
        let mut packages = Vec::new();
        let mut lines = HashMap::new();
        for p in d.packages.get_ref() {
            let req = self.check(
                p,
                "debian.packages",
                is_package_request,
                "is not a package name (NAME, NAME=VERSION or NAME/RELEASE)",
            )?;
            lines
                .entry(package_name(&req).to_string())
                .or_insert(self.line(p));
            packages.push(req);
        }
        if !packages.iter().any(|p| is_kernel(package_name(p))) {
            return Err(self.err(
                &d.packages,
                "debian.packages",
                "no kernel among the packages: add one, e.g. \"linux-image-amd64\"",
            ));
        }
        let source_date_epoch = d.source_date_epoch.unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
        Ok((
            Debian {
                suite,
                mirror,
                architecture,
                components,
                variant,
                packages,
                source_date_epoch,
            },
            lines,
            packages_line,
        ))
    }

    fn system(&self, s: Option<raw::RawSystem>, os: &Os) -> Res<System> {
        let Some(s) = s else {
            return Ok(System {
                hostname: os.name.clone(),
                overlay: None,
                kernel_cmdline: Vec::new(),
                units: Vec::new(),
            });
        };
        let hostname = match &s.hostname {
            Some(h) => self.check(
                h,
                "system.hostname",
                is_hostname,
                "is not a valid host name (letters, digits and '-', dot-separated labels of \
                 at most 63)",
            )?,
            None => os.name.clone(),
        };
        let overlay = s
            .overlay
            .as_ref()
            .map(|o| self.relative_path(o, "system.overlay", true))
            .transpose()?;
        let mut kernel_cmdline = Vec::new();
        for k in s.kernel_cmdline.iter().flatten() {
            kernel_cmdline.push(self.check(
                k,
                "system.kernel-cmdline",
                |a| !a.is_empty() && !a.chars().any(|c| c.is_whitespace() || c.is_control()),
                "must be one argument without spaces",
            )?);
        }
        let mut units = Vec::new();
        for u in s.units.iter().flatten() {
            units.push(self.check(
                u,
                "system.units",
                is_unit_name,
                "is not a systemd unit name (e.g. systemd-networkd.service)",
            )?);
        }
        Ok(System {
            hostname,
            overlay,
            kernel_cmdline,
            units,
        })
    }

    fn user(&self, u: raw::RawUser) -> Res<User> {
        let name = self.check(
            &u.name,
            "user.name",
            |n| is_user_name(n) && n != "root",
            "is not a valid user name (lower-case letters, digits, '_' and '-'; not root)",
        )?;
        let password_hash = u
            .password_hash
            .as_ref()
            .map(|h| {
                self.check(
                    h,
                    "user.password-hash",
                    |s| s.starts_with('$') && !s.contains([':', '\n']),
                    "is not a crypt(3) hash (make one with `mkpasswd -m yescrypt` or \
                     `openssl passwd -6`)",
                )
            })
            .transpose()?;
        let mut keys = Vec::new();
        for k in u.ssh_authorized_keys.iter().flatten() {
            keys.push(self.check(
                k,
                "user.ssh-authorized-keys",
                |s| !s.contains('\n') && s.split_whitespace().count() >= 2,
                "is not one OpenSSH public key line (TYPE BASE64 [COMMENT])",
            )?);
        }
        if password_hash.is_none() && keys.is_empty() {
            return Err(self.err(
                &u.name,
                "user",
                "give a password-hash or ssh-authorized-keys, or the user cannot log in",
            ));
        }
        let mut groups = Vec::new();
        for g in u.groups.iter().flatten() {
            groups.push(self.check(g, "user.groups", is_user_name, "is not a group name")?);
        }
        let shell = match &u.shell {
            Some(s) => self.check(
                s,
                "user.shell",
                |p| p.starts_with('/') && !p.contains(char::is_whitespace),
                "is not an absolute path",
            )?,
            None => "/bin/bash".to_string(),
        };
        Ok(User {
            name,
            password_hash,
            ssh_authorized_keys: keys,
            groups,
            shell,
        })
    }

    fn remote(&self, r: raw::RawRemote) -> Res<RemoteSpec> {
        let name = self.check(
            &r.name,
            "remote.name",
            |n| trellis_store::remote::validate_remote_name(n).is_ok(),
            "is not a valid remote name (letters, digits, '_', '-' and '.')",
        )?;
        let url = self.check(
            &r.url,
            "remote.url",
            is_url,
            "is not an http, https or file URL",
        )?;
        let public_key = r
            .public_key
            .as_ref()
            .map(|k| {
                self.check(
                    k,
                    "remote.public-key",
                    |s| trellis_store::sign::PublicKey::from_base64(s, "remote.public-key").is_ok(),
                    "is not a base64 ed25519 public key (as `trellis keygen` prints)",
                )
            })
            .transpose()?;
        Ok(RemoteSpec {
            name,
            url,
            public_key,
        })
    }
}

/// Whether `name` is a kernel image package (Debian's `linux-image-*`).
pub fn is_kernel(name: &str) -> bool {
    name.strip_prefix("linux-image-").is_some_and(|rest| {
        !rest.is_empty() && !rest.ends_with("-dbg") && !rest.ends_with("-dbgsym")
    })
}

fn is_word(s: &str, extra: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

fn is_os_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn is_url(s: &str) -> bool {
    ["http://", "https://", "file:///"]
        .iter()
        .any(|p| s.len() > p.len() && s.starts_with(p))
        && !s.contains(char::is_whitespace)
}

/// Debian policy names (`[a-z0-9][a-z0-9+.-]+`), optionally `=VERSION` or `/RELEASE`.
fn is_package_request(s: &str) -> bool {
    let name = package_name(s);
    let rest = &s[name.len()..];
    let name_ok = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && is_word(name, "+.-");
    let rest_ok = rest.is_empty()
        || (rest.len() > 1
            && rest[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.~:-_".contains(c)));
    name_ok && rest_ok
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn is_unit_name(s: &str) -> bool {
    const SUFFIXES: &[&str] = &[
        ".service",
        ".socket",
        ".timer",
        ".target",
        ".path",
        ".mount",
        ".automount",
        ".swap",
    ];
    SUFFIXES.iter().any(|x| s.len() > x.len() && s.ends_with(x))
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c))
}

fn is_user_name(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

#[cfg(test)]
mod tests;
