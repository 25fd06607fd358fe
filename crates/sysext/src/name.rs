//! Extension names and versions: what systemd accepts, narrowed to what is safe as a file
//! name on a device and unambiguous in a published `NAME_VERSION.raw`.

use crate::error::{Result, SysextError};
use std::path::Path;

/// The suffix systemd requires of a regular-file image.
pub const RAW_SUFFIX: &str = ".raw";

/// Longest name accepted (a file name must fit in 255 bytes with `_VERSION.raw`).
const MAX_NAME: usize = 128;
const MAX_VERSION: usize = 64;

/// Check an extension name. Names become file names (`NAME.raw`, `extension-release.NAME`)
/// on devices, so anything that could leave a directory or be misread is refused: path
/// separators, leading dots, control characters. `_` and `+` are refused too, because
/// systemd (and sysupdate) read them as the start of a version and of a tries counter.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(SysextError::BadName {
            name: name.to_string(),
            why: why.to_string(),
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME {
        return bad(&format!("longer than {MAX_NAME} bytes"));
    }
    if name.contains('/') || name.contains('\\') {
        return bad("contains a path separator; a name is one file name, like \"debug\"");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a control character");
    }
    if name.starts_with('.') {
        return bad("starts with '.' (hidden files, '.' and '..' are not extension names)");
    }
    if name.contains('_') {
        return bad("contains '_', which separates the version in NAME_VERSION.raw");
    }
    if name.contains('+') {
        return bad("contains '+', which systemd reads as a boot-tries counter");
    }
    if name.ends_with(RAW_SUFFIX) {
        return bad("ends in .raw; give the name without the suffix");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'))
    {
        return bad("use ASCII letters, digits, '-' and '.'");
    }
    Ok(())
}

/// Check a version (SYSEXT_VERSION_ID, the `VERSION` of `NAME_VERSION.raw`).
pub fn validate_version(version: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(SysextError::Invalid(format!(
            "invalid extension version {version:?}: {why}"
        )))
    };
    if version.is_empty() {
        return bad("empty");
    }
    if version.len() > MAX_VERSION {
        return bad(&format!("longer than {MAX_VERSION} bytes"));
    }
    if !version.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must start with a letter or digit");
    }
    if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'~' | b'^'))
    {
        return bad("use ASCII letters, digits, '.', '-', '~' and '^' (no '_', '+' or '/')");
    }
    Ok(())
}

/// Turn any text (a Debian version, a commit version) into a valid version fragment:
/// characters outside the version alphabet become '.'.
pub fn sanitize_version(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '~' | '^') {
                c
            } else {
                '.'
            }
        })
        .collect();
    mapped
        .trim_start_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The name systemd 252 gives an image: a directory's name, or a file's name without
/// `.raw`. (Newer systemd also strips `.sysext` and a `_VERSION`; 252 does not, so an
/// image must be named exactly after its extension-release file.)
pub fn image_name(path: &Path, is_dir: bool) -> Option<String> {
    let file = path.file_name()?.to_str()?;
    if is_dir {
        return Some(file.to_string());
    }
    file.strip_suffix(RAW_SUFFIX).map(str::to_string)
}

/// `NAME_VERSION.raw`, the published file name.
pub fn published_file(name: &str, version: &str) -> String {
    format!("{name}_{version}{RAW_SUFFIX}")
}

/// `NAME_VERSION.release`, the published copy of the image's extension-release file.
pub fn published_release(name: &str, version: &str) -> String {
    format!("{name}_{version}.release")
}

/// Split a published `NAME_VERSION.raw` into its name and version.
pub fn parse_published(file: &str) -> Option<(&str, &str)> {
    let stem = file.strip_suffix(RAW_SUFFIX)?;
    let (name, version) = stem.split_once('_')?;
    (validate_name(name).is_ok() && validate_version(version).is_ok()).then_some((name, version))
}

/// `NAME` or `NAME@VERSION`, as `trellis sysext install` takes it.
pub fn parse_spec(spec: &str) -> Result<(String, Option<String>)> {
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (spec, None),
    };
    validate_name(name)?;
    if let Some(v) = version {
        validate_version(v)?;
    }
    Ok((name.to_string(), version.map(str::to_string)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["debug", "gdb-tools", "a", "x1.2"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("a/b", "path separator"),
            ("../etc", "path separator"),
            ("..", "starts with '.'"),
            (".hidden", "starts with '.'"),
            ("a_1", "'_'"),
            ("a+1", "'+'"),
            ("x.raw", ".raw"),
            ("a b", "ASCII"),
            ("a\nb", "control"),
        ] {
            let e = validate_name(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn versions() {
        assert!(validate_version("12.1-3~rc1").is_ok());
        for bad in ["", "1_2", "1+2", "1/2", ".1", "1 2"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sanitize_version("1:13.1-3+b1"), "1.13.1-3.b1");
        assert!(validate_version(&sanitize_version("1:13.1-3+b1")).is_ok());
    }

    #[test]
    fn published_names_round_trip() {
        let f = published_file("debug", "12.3-1");
        assert_eq!(f, "debug_12.3-1.raw");
        assert_eq!(parse_published(&f), Some(("debug", "12.3-1")));
        assert_eq!(parse_published("debug.raw"), None);
        assert_eq!(parse_published("../x_1.raw"), None);
        assert_eq!(parse_published("debug_1.release"), None);
    }

    #[test]
    fn image_names_and_specs() {
        assert_eq!(
            image_name(Path::new("/x/debug.raw"), false).as_deref(),
            Some("debug")
        );
        assert_eq!(image_name(Path::new("/x/debug.img"), false), None);
        assert_eq!(
            image_name(Path::new("/x/debug"), true).as_deref(),
            Some("debug")
        );
        assert_eq!(
            parse_spec("debug@1.2").unwrap(),
            ("debug".to_string(), Some("1.2".to_string()))
        );
        assert!(parse_spec("a/b").is_err());
        assert!(parse_spec("a@1/2").is_err());
    }
}
