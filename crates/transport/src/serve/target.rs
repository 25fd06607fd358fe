//! Mapping a request path onto a file beneath one of the served roots. Pure: no I/O.
//!
//! The path is decoded and checked here, before anything touches the file system; the
//! kernel (`openat2` with `RESOLVE_BENEATH`) then keeps symlinks from leading out.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// Top-level files of the repository that clients fetch.
const REPO_FILES: &[&str] = &[
    "config",
    "summary",
    "summary.sig",
    "summary.idx",
    "summary.idx.sig",
];

/// Top-level directories of the repository that clients fetch. Everything else (`tmp/`,
/// `state/`, `.lock`, `extensions/`) is private to the machine holding the repository.
const REPO_DIRS: &[&str] = &["objects", "refs", "deltas", "delta-indexes", "summaries"];

/// Loose objects named by the checksum of what they hold. `.commitmeta` is not among them:
/// it is keyed by its commit and changes when signatures are added.
const OBJECT_EXTS: &[&str] = &["commit", "dirtree", "dirmeta", "filez"];

/// Whether `name` is a top-level name the repository serves (for collision checks).
pub(crate) fn is_repo_name(name: &str) -> bool {
    REPO_FILES.contains(&name) || REPO_DIRS.contains(&name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CachePolicy {
    /// Named by content (objects, deltas): never changes once written.
    Immutable,
    /// Mutable (refs, summary, config, extra directories): clients must revalidate.
    Revalidate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    Repo,
    /// Index into the configured extra directories.
    Extra(usize),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub root: Root,
    /// Relative to the root; every segment is a plain name (no `.`, `..`, `/` or NUL).
    pub rel: PathBuf,
    pub cache: CachePolicy,
    /// `<64 hex>.<ext>` when the path names a content-addressed loose object: the basis
    /// of its ETag.
    pub object: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not a path this server could ever serve safely (400).
    Malformed(&'static str),
    /// A well-formed path outside what is served, or a directory (404).
    NotServed,
}

/// Resolve the path part of a request URI. `extra` holds the names of the extra
/// directories, in configuration order.
pub(crate) fn resolve(raw: &str, extra: &[String]) -> Result<Target, Refusal> {
    let rest = raw
        .strip_prefix('/')
        .ok_or(Refusal::Malformed("path must start with /"))?;
    let decoded = percent_decode(rest.as_bytes())?;
    if decoded.is_empty() || decoded.ends_with(b"/") {
        // Directories are never listed.
        return Err(Refusal::NotServed);
    }
    let segments: Vec<&[u8]> = decoded.split(|&b| b == b'/').collect();
    for s in &segments {
        match *s {
            b"" => return Err(Refusal::Malformed("empty path segment (//)")),
            b"." | b".." => return Err(Refusal::Malformed("dot segment")),
            _ => {}
        }
    }
    let (first, below) = segments
        .split_first()
        .ok_or(Refusal::Malformed("empty path"))?;
    let first = std::str::from_utf8(first).map_err(|_| Refusal::NotServed)?;
    let repo_file = REPO_FILES.contains(&first) && below.is_empty();
    let in_repo_dir = REPO_DIRS.contains(&first) && !below.is_empty();
    let (root, rel_segments) = if repo_file || in_repo_dir {
        (Root::Repo, &segments[..])
    } else if let Some(i) = extra.iter().position(|n| n == first) {
        if below.is_empty() {
            return Err(Refusal::NotServed);
        }
        (Root::Extra(i), below)
    } else {
        return Err(Refusal::NotServed);
    };
    let detached_meta = decoded.ends_with(b".commitmeta");
    let cache = match (root, first) {
        (Root::Repo, "objects") if !detached_meta => CachePolicy::Immutable,
        (Root::Repo, "deltas") => CachePolicy::Immutable,
        _ => CachePolicy::Revalidate,
    };
    let object = match (root, rel_segments) {
        (Root::Repo, [b"objects", dir, name]) => object_name(dir, name),
        _ => None,
    };
    let mut rel = PathBuf::with_capacity(decoded.len());
    for s in rel_segments {
        rel.push(OsStr::from_bytes(s));
    }
    Ok(Target {
        root,
        rel,
        cache,
        object,
    })
}

/// `objects/XX/<62 hex>.<ext>` → `<64 hex>.<ext>`, if the names have exactly that shape.
fn object_name(dir: &[u8], name: &[u8]) -> Option<String> {
    let is_hex = |b: &[u8]| b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let name = std::str::from_utf8(name).ok()?;
    let (rest, ext) = name.split_once('.')?;
    if dir.len() == 2
        && is_hex(dir)
        && rest.len() == 62
        && is_hex(rest.as_bytes())
        && OBJECT_EXTS.contains(&ext)
    {
        Some(format!("{}{rest}.{ext}", std::str::from_utf8(dir).ok()?))
    } else {
        None
    }
}

/// Strict percent-decoding: a `%` must be followed by two hex digits. Encoded `/` and
/// backslashes are refused, so that decoding can never create a separator, and so is NUL
/// in any form. `+` stays `+` (static delta names contain it unescaped).
fn percent_decode(s: &[u8]) -> Result<Vec<u8>, Refusal> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                s.get(i + 1).copied().and_then(hex),
                s.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(Refusal::Malformed("bad percent-encoding"));
            };
            match h << 4 | l {
                b'/' | b'\\' => return Err(Refusal::Malformed("encoded separator")),
                0 => return Err(Refusal::Malformed("NUL in path")),
                d => out.push(d),
            }
            i += 3;
        } else {
            match b {
                b'\\' => return Err(Refusal::Malformed("backslash in path")),
                0 => return Err(Refusal::Malformed("NUL in path")),
                _ => out.push(b),
            }
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBJ: &str =
        "/objects/ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789.filez";

    fn extra() -> Vec<String> {
        vec!["ext".to_string()]
    }

    #[test]
    fn objects_are_immutable_and_named() {
        let t = resolve(OBJ, &extra()).expect("object path");
        assert_eq!(t.root, Root::Repo);
        assert_eq!(t.cache, CachePolicy::Immutable);
        assert_eq!(
            t.object.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789.filez")
        );
        assert_eq!(t.rel, PathBuf::from(&OBJ[1..]));
        // Not an object name: served, but validated by metadata instead.
        let t = resolve("/objects/ab/cd.filez", &extra()).expect("odd name");
        assert_eq!(t.object, None);
        assert_eq!(t.cache, CachePolicy::Immutable);
        // Detached metadata gains signatures over time.
        let meta = OBJ.replace(".filez", ".commitmeta");
        let t = resolve(&meta, &extra()).expect("commitmeta");
        assert_eq!(t.object, None);
        assert_eq!(t.cache, CachePolicy::Revalidate);
    }

    #[test]
    fn mutable_files_revalidate() {
        for p in [
            "/summary",
            "/summary.sig",
            "/config",
            "/refs/heads/main",
            "/delta-indexes/XN/abc.index",
        ] {
            let t = resolve(p, &extra()).unwrap_or_else(|e| panic!("{p}: {e:?}"));
            assert_eq!(t.cache, CachePolicy::Revalidate, "{p}");
            assert_eq!(t.root, Root::Repo);
        }
        let t = resolve("/deltas/XN/YK+o_x/superblock", &extra()).expect("delta");
        assert_eq!(t.cache, CachePolicy::Immutable);
        assert_eq!(t.rel, PathBuf::from("deltas/XN/YK+o_x/superblock"));
    }

    #[test]
    fn private_parts_of_the_repo_are_not_served() {
        for p in [
            "/",
            "/tmp/x",
            "/state/x.commitpartial",
            "/.lock",
            "/objects",
            "/objects/",
            "/refs/heads/",
            "/config/x",
            "/summary/x",
            "/extensions/x",
            "/ext",
            "/ext/",
        ] {
            assert_eq!(resolve(p, &extra()), Err(Refusal::NotServed), "{p}");
        }
    }

    #[test]
    fn traversal_and_malformed_paths_are_refused() {
        for p in [
            "/..",
            "/../etc/passwd",
            "/refs/../../etc/passwd",
            "/refs/%2e%2e/%2E%2e/etc/passwd",
            "/refs/heads/%2e",
            "/refs/./heads/main",
            "/refs/heads/..%2f..%2fetc",
            "/refs/heads/..%2F..%2Fetc",
            "/refs/heads/a%5c..",
            "/refs/heads/a\\b",
            "/refs//heads/main",
            "/refs/heads/main%00",
            "/refs/heads/%zz",
            "/refs/heads/%2",
            "refs/heads/main",
            "*",
            "/ext/../config",
            "/ext/%2e%2e/x",
        ] {
            assert!(
                matches!(resolve(p, &extra()), Err(Refusal::Malformed(_))),
                "{p} was not refused as malformed"
            );
        }
    }

    #[test]
    fn extra_directories_map_below_their_root() {
        let t = resolve("/ext/a/b%20c.raw", &extra()).expect("extra file");
        assert_eq!(t.root, Root::Extra(0));
        assert_eq!(t.rel, PathBuf::from("a/b c.raw"));
        assert_eq!(t.cache, CachePolicy::Revalidate);
        assert_eq!(t.object, None);
    }

    #[test]
    fn non_utf8_names_decode_to_bytes() {
        let t = resolve("/refs/heads/%ff", &extra()).expect("non-UTF-8 ref");
        assert_eq!(t.rel.as_os_str().as_bytes(), b"refs/heads/\xff");
    }
}
