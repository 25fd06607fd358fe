use super::FormatError;

/// Check a directory entry name as OSTree does: UTF-8, not empty, not `.` or `..`, no `/`.
/// (NUL cannot occur in a name that came from a GVariant string or the kernel.)
pub fn validate_filename(name: &[u8]) -> Result<&str, FormatError> {
    let shown = || String::from_utf8_lossy(name).into_owned();
    let why = match name {
        b"" => Some("empty name"),
        b"." => Some("self-referential name '.'"),
        b".." => Some("path uplink name '..'"),
        _ if name.contains(&b'/') => Some("contains '/'"),
        _ if name.contains(&0) => Some("contains a NUL byte"),
        _ => None,
    };
    if let Some(why) = why {
        return Err(FormatError::BadName { name: shown(), why });
    }
    std::str::from_utf8(name).map_err(|_| FormatError::BadName {
        name: shown(),
        why: "not valid UTF-8 (OSTree stores names as UTF-8 strings)",
    })
}

/// Check a ref name against `^([\w\d][-._\w\d]*/)*[\w\d][-._\w\d]*$`.
pub fn validate_ref_name(name: &str) -> Result<(), FormatError> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
                && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(FormatError::BadRefName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert!(validate_filename(b"ok.txt").is_ok());
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", b"\xff\xfe"] {
            assert!(validate_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ref_names() {
        for good in ["main", "debian/bookworm/amd64", "a.b-c_d", "ostree/0/1/0"] {
            assert!(validate_ref_name(good).is_ok(), "{good}");
        }
        for bad in ["", "/a", "a/", "a//b", "-a", ".a", "a/.b", "a b", "a:b"] {
            assert!(validate_ref_name(bad).is_err(), "{bad}");
        }
    }
}
