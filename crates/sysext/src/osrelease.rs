//! os-release and extension-release files: shell-style `KEY=VALUE` lines.

use serde::Serialize;

/// The fields of an os-release-format file, in file order (a later duplicate wins).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OsRelease {
    fields: Vec<(String, String)>,
}

impl OsRelease {
    /// Parse the text of an os-release or extension-release file. Lines that are not
    /// `KEY=VALUE` (comments, blank lines, garbage) are skipped, as systemd skips them.
    pub fn parse(text: &str) -> OsRelease {
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                continue;
            }
            fields.push((key.to_string(), unquote(value.trim())));
        }
        OsRelease { fields }
    }

    pub fn from_fields<I, K, V>(fields: I) -> OsRelease
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        OsRelease {
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A field's value; empty values count as absent, as in systemd.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.iter().all(|(_, v)| v.is_empty())
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }

    /// The file text: one `KEY=VALUE` per line, values quoted when they need it.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.fields {
            s.push_str(k);
            s.push('=');
            s.push_str(&quote(v));
            s.push('\n');
        }
        s
    }
}

/// Quote a value for an os-release file: bare when it is plain, double-quoted otherwise.
fn quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+' | b':'));
    if plain {
        return v.to_string();
    }
    let mut s = String::from("\"");
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('"');
    s
}

/// Undo shell quoting: "double" (with backslash escapes), 'single', or bare.
fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        return out;
    }
    if let Some(inner) = v.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return inner.to_string();
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_debian_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
                    VERSION_ID=\"12\"\nID=debian\n# comment\n\nnot a field\nEMPTY=\n";
        let r = OsRelease::parse(text);
        assert_eq!(r.get("ID"), Some("debian"));
        assert_eq!(r.get("VERSION_ID"), Some("12"));
        assert_eq!(r.get("PRETTY_NAME"), Some("Debian GNU/Linux 12 (bookworm)"));
        assert_eq!(r.get("EMPTY"), None);
        assert_eq!(r.get("MISSING"), None);
        assert!(!r.is_empty());
        assert!(OsRelease::parse("# nothing\n").is_empty());
    }

    #[test]
    fn quoting_round_trips() {
        let r = OsRelease::from_fields([
            ("ID", "debian"),
            ("TRELLIS_PACKAGES", "gdb=13.1-3 strace=6.1-0.1"),
            ("ODD", "a\"b$c\\d`e'f"),
            ("EMPTY", ""),
        ]);
        let text = r.to_text();
        assert!(text.starts_with("ID=debian\nTRELLIS_PACKAGES=\"gdb=13.1-3 strace=6.1-0.1\"\n"));
        assert_eq!(OsRelease::parse(&text), r);
        assert_eq!(OsRelease::parse("A='x y'\n").get("A"), Some("x y"));
    }
}
