//! The GLib key-file syntax of OSTree's `config` and origin files: `[group]` headers and
//! `key=value` lines. Comments and blank lines are kept so that rewriting a file only
//! changes what was set.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyFile {
    /// Lines before the first group (comments).
    preamble: Vec<String>,
    groups: Vec<Group>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    name: String,
    lines: Vec<Line>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Line {
    Entry(String, String),
    Other(String),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("line {line}: {why}")]
pub struct KeyFileError {
    pub line: usize,
    pub why: &'static str,
}

impl KeyFile {
    pub fn parse(text: &str) -> Result<KeyFile, KeyFileError> {
        let mut kf = KeyFile::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_start();
            if line.is_empty() || line.starts_with('#') {
                match kf.groups.last_mut() {
                    Some(g) => g.lines.push(Line::Other(raw.to_string())),
                    None => kf.preamble.push(raw.to_string()),
                }
            } else if let Some(rest) = line.strip_prefix('[') {
                let name = rest.trim_end().strip_suffix(']').ok_or(KeyFileError {
                    line: i + 1,
                    why: "group header lacks its closing ']'",
                })?;
                if name.is_empty() || name.contains(['[', ']']) {
                    return Err(KeyFileError {
                        line: i + 1,
                        why: "invalid group name",
                    });
                }
                kf.groups.push(Group {
                    name: name.to_string(),
                    lines: Vec::new(),
                });
            } else {
                let (k, v) = line.split_once('=').ok_or(KeyFileError {
                    line: i + 1,
                    why: "expected key=value, a [group] or a # comment",
                })?;
                let group = kf.groups.last_mut().ok_or(KeyFileError {
                    line: i + 1,
                    why: "key=value before any [group]",
                })?;
                let key = k.trim_end();
                if key.is_empty() {
                    return Err(KeyFileError {
                        line: i + 1,
                        why: "empty key",
                    });
                }
                group
                    .lines
                    .push(Line::Entry(key.to_string(), unescape(v.trim_start())));
            }
        }
        Ok(kf)
    }

    pub fn get(&self, group: &str, key: &str) -> Option<&str> {
        let g = self.groups.iter().find(|g| g.name == group)?;
        g.lines.iter().rev().find_map(|l| match l {
            Line::Entry(k, v) if k == key => Some(v.as_str()),
            _ => None,
        })
    }

    /// GLib's boolean parsing: `true`/`false`, also `1`/`0`.
    pub fn get_bool(&self, group: &str, key: &str) -> Option<Result<bool, String>> {
        self.get(group, key).map(|v| match v.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            other => Err(other.to_string()),
        })
    }

    pub fn set(&mut self, group: &str, key: &str, value: &str) {
        let idx = match self.groups.iter().position(|g| g.name == group) {
            Some(i) => i,
            None => {
                if let Some(last) = self.groups.last_mut()
                    && !matches!(last.lines.last(), Some(Line::Other(l)) if l.trim().is_empty())
                {
                    last.lines.push(Line::Other(String::new()));
                }
                self.groups.push(Group {
                    name: group.to_string(),
                    lines: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[idx];
        for l in g.lines.iter_mut() {
            if let Line::Entry(k, v) = l
                && k == key
            {
                *v = value.to_string();
                return;
            }
        }
        // Insert before trailing blank lines so the group stays visually together.
        let at = g
            .lines
            .iter()
            .rposition(|l| matches!(l, Line::Entry(..)))
            .map_or(0, |i| i + 1);
        g.lines
            .insert(at, Line::Entry(key.to_string(), value.to_string()));
    }

    pub fn remove_key(&mut self, group: &str, key: &str) -> bool {
        let Some(g) = self.groups.iter_mut().find(|g| g.name == group) else {
            return false;
        };
        let before = g.lines.len();
        g.lines
            .retain(|l| !matches!(l, Line::Entry(k, _) if k == key));
        before != g.lines.len()
    }

    pub fn remove_group(&mut self, group: &str) -> bool {
        let before = self.groups.len();
        self.groups.retain(|g| g.name != group);
        before != self.groups.len()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g.name == group)
    }

    pub fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.iter().map(|g| g.name.as_str())
    }

    /// The (key, value) entries of a group, in file order.
    pub fn entries(&self, group: &str) -> Vec<(&str, &str)> {
        self.groups
            .iter()
            .filter(|g| g.name == group)
            .flat_map(|g| g.lines.iter())
            .filter_map(|l| match l {
                Line::Entry(k, v) => Some((k.as_str(), v.as_str())),
                Line::Other(_) => None,
            })
            .collect()
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for l in &self.preamble {
            out.push_str(l);
            out.push('\n');
        }
        for g in &self.groups {
            out.push('[');
            out.push_str(&g.name);
            out.push_str("]\n");
            for l in &g.lines {
                match l {
                    Line::Entry(k, v) => {
                        out.push_str(k);
                        out.push('=');
                        out.push_str(&escape(v));
                    }
                    Line::Other(o) => out.push_str(o),
                }
                out.push('\n');
            }
        }
        out
    }
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ' ' if i == 0 => out.push_str("\\s"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_set_and_write() {
        let text =
            "# top\n[core]\nrepo_version=1\nmode=archive-z2\n\n[remote \"origin\"]\nurl=http://x\n";
        let mut kf = KeyFile::parse(text).unwrap();
        assert_eq!(kf.to_text(), text);
        assert_eq!(kf.get("core", "mode"), Some("archive-z2"));
        assert_eq!(kf.get("remote \"origin\"", "url"), Some("http://x"));
        kf.set("core", "mode", "bare");
        kf.set("remote \"b\"", "url", "file:///r");
        assert!(kf.to_text().contains("mode=bare\n"));
        assert!(
            kf.to_text()
                .ends_with("url=http://x\n\n[remote \"b\"]\nurl=file:///r\n")
        );
        assert!(kf.remove_group("remote \"origin\""));
        assert!(!kf.has_group("remote \"origin\""));
    }

    #[test]
    fn errors_name_the_line() {
        let e = KeyFile::parse("[core]\nnonsense\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(KeyFile::parse("a=b\n").is_err());
        assert!(KeyFile::parse("[core\n").is_err());
    }

    #[test]
    fn escapes_round_trip() {
        let mut kf = KeyFile::default();
        kf.set("g", "k", " lead\tand\\slash");
        let back = KeyFile::parse(&kf.to_text()).unwrap();
        assert_eq!(back.get("g", "k"), Some(" lead\tand\\slash"));
    }
}
