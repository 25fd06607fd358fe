//! What the image is made from: the ref's tip commit and what its tree says about itself
//! (OS name, default kernel arguments, boot loader, architecture). Everything here is read
//! from the repository before anything is written, so that a wrong ref or a tree without
//! systemd-boot fails at once.

use crate::error::{ImageError, Result};
use std::io::Read;
use std::path::Path;
use trellis_store::format::validate_ref_name;
use trellis_store::tree::{self, TreeEntry};
use trellis_store::{Checksum, Repo};
use trellis_sysroot::Kargs;

/// systemd-boot for x86-64, where Debian's systemd-boot-efi puts it.
pub const SYSTEMD_BOOT_X64: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// The other architectures' boot loaders, to tell "wrong architecture" from "missing".
const OTHER_ARCHS: &[(&str, &str)] = &[
    ("usr/lib/systemd/boot/efi/systemd-bootaa64.efi", "arm64"),
    ("usr/lib/systemd/boot/efi/systemd-bootia32.efi", "i386"),
    (
        "usr/lib/systemd/boot/efi/systemd-bootriscv64.efi",
        "riscv64",
    ),
];
/// Default kernel arguments, in the order systemd's kernel-install reads them (the first
/// that exists wins); compose writes the manifest's `kernel-cmdline` to the second.
pub const CMDLINE_FILES: &[&str] = &["usr/etc/kernel/cmdline", "usr/lib/kernel/cmdline"];
/// The OS name when neither `--os`, the commit subject nor os-release gives one.
pub const DEFAULT_OSNAME: &str = "debian";
/// Files read from the tree are small; anything larger is not what we expect.
const MAX_TEXT: u64 = 64 * 1024;

#[derive(Clone, Debug)]
pub struct Source {
    pub ref_name: String,
    pub commit: Checksum,
    pub version: Option<String>,
    pub timestamp: u64,
    /// The stateroot the deployment goes to.
    pub osname: String,
    /// The tree's default kernel arguments.
    pub cmdline: Kargs,
}

fn exists(repo: &Repo, commit: &Checksum, path: &str) -> Result<bool> {
    match tree::resolve_path_follow(repo, commit, path) {
        Ok(TreeEntry::File { .. }) => Ok(true),
        Ok(TreeEntry::Dir { .. }) => Ok(false),
        Err(trellis_store::Error::PathNotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A small text file of the tree; `None` when absent.
fn read_text(repo: &Repo, commit: &Checksum, path: &str) -> Result<Option<String>> {
    let (_, size, reader) = match tree::open_file(repo, commit, path) {
        Ok(x) => x,
        Err(trellis_store::Error::PathNotFound { .. }) => return Ok(None),
        Err(trellis_store::Error::Invalid(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if size > MAX_TEXT {
        return Err(ImageError::Invalid(format!(
            "/{path} in commit {commit} is {size} bytes; expected a small text file"
        )));
    }
    let mut text = String::new();
    reader
        .take(MAX_TEXT)
        .read_to_string(&mut text)
        .map_err(|e| ImageError::io("read", Path::new(path), e))?;
    Ok(Some(text))
}

/// kernel-install's format: arguments on one or more lines, `#` comments.
pub fn parse_cmdline(text: &str) -> Kargs {
    let mut k = Kargs::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.is_empty() && !line.starts_with('#') {
            k.append(line);
        }
    }
    k
}

/// `ID=` of an os-release file, unquoted.
pub fn os_release_id(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.trim().strip_prefix("ID=")?;
        Some(v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// compose's subjects are `OSNAME VERSION`: the OS name, when the subject is that.
pub fn osname_from_subject(subject: &str, version: Option<&str>) -> Option<String> {
    let (name, rest) = subject.split_once(' ')?;
    (Some(rest) == version).then(|| name.to_string())
}

/// Check `ref_name` and read what the image needs from its tip.
pub fn inspect(repo: &Repo, ref_name: &str, osname: Option<&str>) -> Result<Source> {
    if Checksum::from_hex(ref_name).is_ok() || ref_name.contains(':') {
        return Err(ImageError::Invalid(format!(
            "--ref {ref_name:?}: give a ref name (e.g. debian/bookworm/amd64), not a commit or \
             REMOTE:REF; the image's origin follows it"
        )));
    }
    validate_ref_name(ref_name).map_err(|e| {
        ImageError::Invalid(format!("--ref {ref_name:?} is not a valid ref name: {e}"))
    })?;
    let commit = repo
        .read_ref(ref_name)?
        .ok_or_else(|| ImageError::RefNotFound {
            ref_name: ref_name.to_string(),
            repo: repo.path().to_path_buf(),
        })?;
    let c = repo.load_commit(&commit)?;
    if repo.is_partial(&commit) {
        return Err(ImageError::Invalid(format!(
            "commit {commit} ({ref_name}) is partial in {}: pull it again",
            repo.path().display()
        )));
    }
    if !exists(repo, &commit, SYSTEMD_BOOT_X64)? {
        for (path, arch) in OTHER_ARCHS {
            if exists(repo, &commit, path)? {
                return Err(ImageError::UnsupportedArch {
                    commit: commit.to_hex(),
                    arch: (*arch).to_string(),
                });
            }
        }
        return Err(ImageError::NoSystemdBoot {
            commit: commit.to_hex(),
            path: SYSTEMD_BOOT_X64.to_string(),
        });
    }
    let version = c.version().map(str::to_string);
    let valid = |n: &str| trellis_sysroot::layout::validate_osname(n).is_ok();
    let osname = match osname {
        Some(n) => {
            trellis_sysroot::layout::validate_osname(n)?;
            n.to_string()
        }
        None => match osname_from_subject(&c.subject, version.as_deref()).filter(|n| valid(n)) {
            Some(n) => n,
            None => read_text(repo, &commit, "usr/lib/os-release")?
                .as_deref()
                .and_then(os_release_id)
                .filter(|n| valid(n))
                .unwrap_or_else(|| DEFAULT_OSNAME.to_string()),
        },
    };
    let mut cmdline = Kargs::new();
    for f in CMDLINE_FILES {
        if let Some(text) = read_text(repo, &commit, f)? {
            cmdline = parse_cmdline(&text);
            break;
        }
    }
    Ok(Source {
        ref_name: ref_name.to_string(),
        commit,
        version,
        timestamp: c.timestamp,
        osname,
        cmdline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_files() {
        let k = parse_cmdline("# defaults\nconsole=tty0 console=ttyS0,115200\n\nquiet\n");
        assert_eq!(k.to_string(), "console=tty0 console=ttyS0,115200 quiet");
        assert!(parse_cmdline("").is_empty());
    }

    #[test]
    fn os_names() {
        assert_eq!(
            osname_from_subject("debian 20240601.0", Some("20240601.0")),
            Some("debian".into())
        );
        assert_eq!(osname_from_subject("Initial import", Some("1")), None);
        assert_eq!(osname_from_subject("debian 1", None), None);
        assert_eq!(
            os_release_id("NAME=\"Debian GNU/Linux\"\nID=debian\n"),
            Some("debian".into())
        );
        assert_eq!(
            os_release_id("ID=\"gardenlinux\"\n"),
            Some("gardenlinux".into())
        );
        assert_eq!(os_release_id("NAME=x\n"), None);
    }
}
