use super::{FormatError, validate_filename};
use crate::checksum::Checksum;
use crate::gvariant::{self, Type, Value};
use std::sync::LazyLock;

static TYPE: LazyLock<Type> =
    LazyLock::new(|| Type::parse("(a(say)a(sayay))").expect("static type"));

/// A directory listing `(a(say)a(sayay))`: files by content checksum, subdirectories by
/// (dirtree, dirmeta) checksums. Both lists are sorted by name (strcmp).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DirTree {
    pub files: Vec<(String, Checksum)>,
    pub dirs: Vec<(String, Checksum, Checksum)>,
}

fn csum(v: &Value, what: &'static str) -> Result<Checksum, FormatError> {
    let b = v.as_bytes().ok_or(FormatError::Truncated("dirtree"))?;
    Checksum::from_slice(b).ok_or(FormatError::BadChecksumLength { what, len: b.len() })
}

impl DirTree {
    /// Serialize; entries are sorted here so that callers may add them in any order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut files: Vec<_> = self.files.iter().collect();
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut dirs: Vec<_> = self.dirs.iter().collect();
        dirs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let file_ty = Type::parse("(say)").expect("static type");
        let dir_ty = Type::parse("(sayay)").expect("static type");
        gvariant::to_bytes(&Value::Tuple(vec![
            Value::Array(
                file_ty,
                files
                    .into_iter()
                    .map(|(n, c)| {
                        Value::Tuple(vec![Value::str(n.clone()), Value::Bytes(c.0.to_vec())])
                    })
                    .collect(),
            ),
            Value::Array(
                dir_ty,
                dirs.into_iter()
                    .map(|(n, t, m)| {
                        Value::Tuple(vec![
                            Value::str(n.clone()),
                            Value::Bytes(t.0.to_vec()),
                            Value::Bytes(m.0.to_vec()),
                        ])
                    })
                    .collect(),
            ),
        ]))
    }

    pub fn checksum(&self) -> Checksum {
        Checksum::of(&self.to_bytes())
    }

    /// Parse and validate: names legal, each list strictly sorted, no name in both lists.
    pub fn parse(data: &[u8]) -> Result<DirTree, FormatError> {
        let v = gvariant::from_bytes(&TYPE, data)?;
        let m = v.as_tuple().ok_or(FormatError::Truncated("dirtree"))?;
        let mut tree = DirTree::default();
        for e in m[0].as_array().ok_or(FormatError::Truncated("dirtree"))? {
            let t = e.as_tuple().ok_or(FormatError::Truncated("dirtree"))?;
            let name = t[0].as_str().ok_or(FormatError::Truncated("dirtree"))?;
            validate_filename(name.as_bytes())?;
            tree.files
                .push((name.to_string(), csum(&t[1], "dirtree file entry")?));
        }
        for e in m[1].as_array().ok_or(FormatError::Truncated("dirtree"))? {
            let t = e.as_tuple().ok_or(FormatError::Truncated("dirtree"))?;
            let name = t[0].as_str().ok_or(FormatError::Truncated("dirtree"))?;
            validate_filename(name.as_bytes())?;
            tree.dirs.push((
                name.to_string(),
                csum(&t[1], "dirtree subdirectory tree")?,
                csum(&t[2], "dirtree subdirectory meta")?,
            ));
        }
        check_sorted(tree.files.iter().map(|f| f.0.as_str()), "file")?;
        check_sorted(tree.dirs.iter().map(|d| d.0.as_str()), "subdirectory")?;
        for (name, ..) in &tree.dirs {
            if tree
                .files
                .binary_search_by(|f| f.0.as_bytes().cmp(name.as_bytes()))
                .is_ok()
            {
                return Err(FormatError::Unsorted {
                    what: "dirtree (name is both a file and a directory)",
                    name: name.clone(),
                });
            }
        }
        Ok(tree)
    }

    pub fn file(&self, name: &str) -> Option<Checksum> {
        self.files
            .binary_search_by(|f| f.0.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| self.files[i].1)
    }

    pub fn dir(&self, name: &str) -> Option<(Checksum, Checksum)> {
        self.dirs
            .binary_search_by(|d| d.0.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| (self.dirs[i].1, self.dirs[i].2))
    }
}

fn check_sorted<'a>(
    names: impl Iterator<Item = &'a str>,
    what: &'static str,
) -> Result<(), FormatError> {
    let mut prev: Option<&str> = None;
    for n in names {
        if let Some(p) = prev
            && p.as_bytes() >= n.as_bytes()
        {
            return Err(FormatError::Unsorted {
                what,
                name: n.to_string(),
            });
        }
        prev = Some(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(DirTree::default().to_bytes(), vec![0]);
        assert_eq!(
            DirTree::default().checksum().to_hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        let a =
            Checksum::from_hex("12a6a4c85858fb7ebb480f7e16dc7862670cacabf06461574956b6cb8d32f127")
                .unwrap();
        let t = DirTree {
            files: vec![("a".into(), a)],
            dirs: vec![],
        };
        assert_eq!(t.to_bytes().len(), 37);
        assert_eq!(
            t.checksum().to_hex(),
            "7b25512a24310436bfef52df05521e74a2989e6bd6f225ba699a14ff3423e9ed"
        );
        assert_eq!(DirTree::parse(&t.to_bytes()).unwrap(), t);
    }

    #[test]
    fn refuses_bad_names_and_order() {
        let c = Checksum::of(b"");
        for name in [".", "..", "a/b", ""] {
            let t = DirTree {
                files: vec![(name.into(), c)],
                dirs: vec![],
            };
            assert!(DirTree::parse(&t.to_bytes()).is_err(), "{name:?}");
        }
        // Hand-serialize an unsorted list (to_bytes would sort it).
        let unsorted = gvariant::to_bytes(&Value::Tuple(vec![
            Value::Array(
                Type::parse("(say)").unwrap(),
                ["z", "a"]
                    .iter()
                    .map(|n| Value::Tuple(vec![Value::str(*n), Value::Bytes(c.0.to_vec())]))
                    .collect(),
            ),
            Value::Array(Type::parse("(sayay)").unwrap(), vec![]),
        ]));
        assert!(DirTree::parse(&unsorted).is_err());
    }
}
