//! Reading and writing systemd-tmpfiles.d(5) lines.

use crate::error::{IoContext, Result};
use std::collections::HashSet;
use std::path::Path;

/// Line types that create their path (as opposed to adjusting or removing it).
const CREATING: &[char] = &['f', 'F', 'd', 'D', 'v', 'q', 'Q', 'p', 'L', 'c', 'b', 'C'];

/// Paths that the tree's own tmpfiles.d files already create, so that ours does not
/// declare them twice (systemd-tmpfiles warns about duplicates).
pub fn declared_paths(tree: &Path) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for dir in ["usr/lib/tmpfiles.d", "usr/etc/tmpfiles.d", "etc/tmpfiles.d"] {
        let dir = tree.join(dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.ctx("read directory", &dir)?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "conf") {
                continue;
            }
            // A symlink to /dev/null masks a file; an unreadable one declares nothing.
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            out.extend(text.lines().filter_map(creating_path));
        }
    }
    Ok(out)
}

fn creating_path(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let ty = fields.next()?.chars().next()?;
    let path = fields.next()?.trim_matches('"');
    (CREATING.contains(&ty) && !path.contains('%')).then(|| path.to_string())
}

/// A path as a tmpfiles field: `%` doubled (specifiers), and bytes other than plain
/// printable ASCII as C escapes, which tmpfiles undoes.
pub fn escape_path(path: &[u8]) -> String {
    let mut out = String::new();
    for &b in path {
        match b {
            b'%' => out.push_str("%%"),
            b if b.is_ascii_graphic() && b != b'\\' && b != b'"' && b != b'\'' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_lines_only() {
        assert_eq!(
            creating_path("d /var/lib/dbus 0755 - - -").as_deref(),
            Some("/var/lib/dbus")
        );
        assert_eq!(
            creating_path("L+ /etc/mtab - - - - ../proc/self/mounts").as_deref(),
            Some("/etc/mtab")
        );
        assert_eq!(creating_path("z /dev/kvm 0660 - kvm -"), None);
        assert_eq!(creating_path("h /var/log/journal/%m - - - - +C"), None);
        assert_eq!(creating_path("# d /x"), None);
        assert_eq!(creating_path(""), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape_path(b"/var/lib/a b"), "/var/lib/a\\x20b");
        assert_eq!(escape_path(b"/var/50%"), "/var/50%%");
        assert_eq!(escape_path(b"/var/\xffx"), "/var/\\xffx");
    }
}
