//! The repository layout an imported archive may use: each member name maps to what it is,
//! or is refused with the reason.

use trellis_store::format::validate_ref_name;
use trellis_store::{Checksum, ObjectType};

/// What a member's name says it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Member {
    Dir,
    Config,
    Object(ObjectType, Checksum),
    Ref(String),
    Summary,
    SummarySig,
    Partial(Checksum),
    Skipped,
}

/// Match a member name against the repository layout. Leading `./` is accepted (what
/// `tar -C repo .` writes); everything else must be exact.
pub(super) fn classify(raw: &[u8], is_dir: bool) -> Result<(String, Member), String> {
    let name = std::str::from_utf8(raw).map_err(|_| "the name is not UTF-8".to_string())?;
    if name.starts_with('/') {
        return Err("absolute path".into());
    }
    let trimmed = name.strip_suffix('/').unwrap_or(name);
    if trimmed.len() != name.len() && !is_dir {
        return Err("a name ending in '/' that is not a directory".into());
    }
    let mut parts: Vec<&str> = trimmed.split('/').collect();
    while parts.first() == Some(&".") {
        parts.remove(0);
    }
    if parts == [""] {
        parts.clear();
    }
    if parts.contains(&"..") {
        return Err("'..' in the path".into());
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err("empty or '.' component in the path".into());
    }
    let clean = parts.join("/");
    let dir_or = |m: Member| if is_dir { Ok(Member::Dir) } else { Ok(m) };
    let not_layout = || Err("not part of a repository's layout".to_string());
    let is_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let member = match parts.as_slice() {
        [] if is_dir => Ok(Member::Dir),
        [] => Err("a file with no name".into()),
        ["config"] if !is_dir => Ok(Member::Config),
        ["summary"] if !is_dir => Ok(Member::Summary),
        ["summary.sig"] if !is_dir => Ok(Member::SummarySig),
        [".lock"] if !is_dir => Ok(Member::Skipped),
        ["objects"] if is_dir => Ok(Member::Dir),
        ["objects", xx] if is_dir && xx.len() == 2 && is_hex(xx) => Ok(Member::Dir),
        ["objects", xx, file] if !is_dir && xx.len() == 2 && is_hex(xx) => {
            let (rest, ext) = file
                .split_once('.')
                .ok_or_else(|| "an object name without an extension".to_string())?;
            let csum = Checksum::from_hex(&format!("{xx}{rest}"))
                .map_err(|_| "the object name is not 64 lowercase hex digits".to_string())?;
            match ext {
                "commit" => Ok(Member::Object(ObjectType::Commit, csum)),
                "commitmeta" => Ok(Member::Object(ObjectType::CommitMeta, csum)),
                "dirtree" => Ok(Member::Object(ObjectType::DirTree, csum)),
                "dirmeta" => Ok(Member::Object(ObjectType::DirMeta, csum)),
                "filez" => Ok(Member::Object(ObjectType::File, csum)),
                "tombstone-commit" => Ok(Member::Skipped),
                "file" => Err(
                    "a bare-mode content object; only archive-mode repositories \
                               (with .filez objects) can be imported"
                        .into(),
                ),
                _ => Err(format!("unknown object type .{ext}")),
            }
        }
        ["refs"] if is_dir => Ok(Member::Dir),
        ["refs", "heads"] | ["refs", "remotes"] if is_dir => Ok(Member::Dir),
        ["refs", "mirrors", ..] => Ok(Member::Skipped),
        ["refs", "heads", rest @ ..] => {
            let name = rest.join("/");
            validate_ref_name(&name).map_err(|_| format!("invalid ref name {name:?}"))?;
            dir_or(Member::Ref(name))
        }
        ["refs", "remotes", remote, rest @ ..] => {
            validate_ref_name(remote).map_err(|_| format!("invalid remote name {remote:?}"))?;
            if rest.is_empty() {
                if is_dir {
                    Ok(Member::Dir)
                } else {
                    not_layout()
                }
            } else {
                let name = rest.join("/");
                validate_ref_name(&name).map_err(|_| format!("invalid ref name {name:?}"))?;
                dir_or(Member::Ref(format!("{remote}:{name}")))
            }
        }
        ["state"] if is_dir => Ok(Member::Dir),
        ["state", file] if !is_dir => match file.strip_suffix(".commitpartial") {
            Some(hex) => Checksum::from_hex(hex)
                .map(Member::Partial)
                .map_err(|_| "a partial-commit marker not named by a checksum".into()),
            None => Ok(Member::Skipped),
        },
        ["state", ..] => Ok(Member::Skipped),
        [
            "tmp" | "extensions" | "deltas" | "delta-indexes" | "uncompressed-objects-cache",
            ..,
        ] => Ok(Member::Skipped),
        _ => not_layout(),
    }?;
    Ok((clean, member))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let hex = "ab".to_string() + &"c".repeat(62);
        let obj = format!("objects/ab/{}.filez", &hex[2..]);
        let c = Checksum::from_hex(&hex).unwrap();
        assert_eq!(
            classify(obj.as_bytes(), false).unwrap().1,
            Member::Object(ObjectType::File, c)
        );
        assert_eq!(
            classify(format!("./{obj}").as_bytes(), false).unwrap().0,
            obj
        );
        assert_eq!(
            classify(b"refs/remotes/origin/a/b", false).unwrap().1,
            Member::Ref("origin:a/b".into())
        );
        assert_eq!(classify(b"./", true).unwrap().1, Member::Dir);
        assert_eq!(classify(b"tmp/cache/x", false).unwrap().1, Member::Skipped);
        for (bad, why) in [
            (&b"/etc/passwd"[..], "absolute"),
            (b"../x", ".."),
            (b"refs/heads/../../x", ".."),
            (b"objects/ab/cd.filez", "64"),
            (b"objects/AB/x.filez", "layout"),
            (b"objects/ab/x", "extension"),
            (b"refs/heads/-bad", "ref name"),
            (b"random", "layout"),
            (b"config/", "'/'"),
            (b"a//b", "empty"),
            (b"\xff", "UTF-8"),
        ] {
            let err = classify(bad, false).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let bare = format!("objects/ab/{}.file", &hex[2..]);
        assert!(
            classify(bare.as_bytes(), false)
                .unwrap_err()
                .contains("bare")
        );
    }
}
