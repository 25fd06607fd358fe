//! Kernel command-line arguments, as kept in a boot entry's `options` line.
//!
//! Arguments are separated by spaces; a double-quoted part may contain spaces
//! (`foo="a b"`). The key of `name=value` is `name`; of a bare flag, the flag itself.

use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Kargs(Vec<String>);

/// The key of one argument: the part before the first `=`.
pub fn key_of(arg: &str) -> &str {
    arg.split_once('=').map_or(arg, |(k, _)| k)
}

impl Kargs {
    pub fn new() -> Kargs {
        Kargs::default()
    }

    /// Split a command line into arguments.
    pub fn parse(line: &str) -> Kargs {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        for c in line.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                c if c.is_whitespace() && !quoted => {
                    if !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        Kargs(out)
    }

    pub fn from_args<S: AsRef<str>>(args: &[S]) -> Kargs {
        let mut k = Kargs::new();
        for a in args {
            k.append(a.as_ref());
        }
        k
    }

    pub fn args(&self) -> &[String] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value of the last `key=value` (`Some("")` for a bare `key`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|a| key_of(a) == key)
            .map(|a| a.split_once('=').map_or("", |(_, v)| v))
    }

    /// Add an argument at the end, even if its key is already present.
    pub fn append(&mut self, arg: &str) {
        // Arguments come from users too: split "a b" into two rather than storing a space.
        for a in Kargs::parse(arg).0 {
            self.0.push(a);
        }
    }

    /// Set an argument: every argument with the same key is replaced by this one (at the
    /// position of the first); without one, it is appended.
    pub fn replace(&mut self, arg: &str) {
        let key = key_of(arg).to_string();
        match self.0.iter().position(|a| key_of(a) == key) {
            Some(first) => {
                self.0[first] = arg.to_string();
                let mut i = 0;
                self.0.retain(|a| {
                    let keep = i == first || key_of(a) != key;
                    i += 1;
                    keep
                });
            }
            None => self.0.push(arg.to_string()),
        }
    }

    /// Remove `key=value` exactly, or every argument with that key when `arg` has no `=`.
    /// Returns whether anything was removed.
    pub fn delete(&mut self, arg: &str) -> bool {
        let before = self.0.len();
        if arg.contains('=') {
            self.0.retain(|a| a != arg);
        } else {
            self.0.retain(|a| key_of(a) != arg);
        }
        before != self.0.len()
    }

    /// The arguments a deployment carries over: everything but the `ostree=` that points
    /// at a particular boot version.
    pub fn without_ostree(&self) -> Kargs {
        let mut k = self.clone();
        k.delete("ostree");
        k
    }
}

impl std::fmt::Display for Kargs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let k = Kargs::parse("  root=LABEL=root rw  quiet foo=\"a b\" ");
        assert_eq!(k.args(), ["root=LABEL=root", "rw", "quiet", "foo=\"a b\""]);
        assert_eq!(k.to_string(), "root=LABEL=root rw quiet foo=\"a b\"");
        assert_eq!(k.get("root"), Some("LABEL=root"));
        assert_eq!(k.get("rw"), Some(""));
        assert_eq!(k.get("nope"), None);
        assert!(Kargs::parse("").is_empty());
    }

    #[test]
    fn replace_append_delete() {
        let mut k = Kargs::parse("console=tty0 rw console=ttyS0 ostree=/ostree/boot.0/a/b/0");
        k.replace("console=ttyS1");
        assert_eq!(
            k.to_string(),
            "console=ttyS1 rw ostree=/ostree/boot.0/a/b/0"
        );
        k.replace("quiet");
        k.append("console=tty0");
        assert_eq!(
            k.to_string(),
            "console=ttyS1 rw ostree=/ostree/boot.0/a/b/0 quiet console=tty0"
        );
        assert_eq!(
            k.without_ostree().to_string(),
            "console=ttyS1 rw quiet console=tty0"
        );
        assert!(k.delete("console=tty0"));
        assert!(!k.delete("console=tty9"));
        assert!(k.delete("console"));
        assert_eq!(k.to_string(), "rw ostree=/ostree/boot.0/a/b/0 quiet");
        k.append("a=1 b=2");
        assert_eq!(k.args().len(), 5);
    }
}
