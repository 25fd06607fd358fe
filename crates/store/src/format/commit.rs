use super::{FormatError, be64};
use crate::checksum::Checksum;
use crate::gvariant::{self, Type, Value};
use std::sync::LazyLock;

static TYPE: LazyLock<Type> =
    LazyLock::new(|| Type::parse("(a{sv}aya(say)sstayay)").expect("static type"));

/// A commit object `(a{sv}aya(say)sstayay)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// Metadata entries in stored order (ostree looks keys up linearly; order is hashed).
    pub metadata: Vec<(String, Value)>,
    pub parent: Option<Checksum>,
    pub related: Vec<(String, Checksum)>,
    pub subject: String,
    pub body: String,
    /// Seconds since the epoch, UTC.
    pub timestamp: u64,
    pub root_tree: Checksum,
    pub root_meta: Checksum,
}

pub const META_VERSION: &str = "version";
pub const META_REF_BINDING: &str = "ostree.ref-binding";

impl Commit {
    pub fn to_bytes(&self) -> Vec<u8> {
        gvariant::to_bytes(&Value::Tuple(vec![
            Value::vardict(self.metadata.clone()),
            Value::Bytes(self.parent.map(|p| p.0.to_vec()).unwrap_or_default()),
            Value::Array(
                Type::parse("(say)").expect("static type"),
                self.related
                    .iter()
                    .map(|(n, c)| {
                        Value::Tuple(vec![Value::str(n.clone()), Value::Bytes(c.0.to_vec())])
                    })
                    .collect(),
            ),
            Value::str(self.subject.clone()),
            Value::str(self.body.clone()),
            be64(self.timestamp),
            Value::Bytes(self.root_tree.0.to_vec()),
            Value::Bytes(self.root_meta.0.to_vec()),
        ]))
    }

    pub fn checksum(&self) -> Checksum {
        Checksum::of(&self.to_bytes())
    }

    pub fn parse(data: &[u8]) -> Result<Commit, FormatError> {
        let v = gvariant::from_bytes(&TYPE, data)?;
        let bad = || FormatError::Truncated("commit");
        let m = v.as_tuple().ok_or_else(bad)?;
        let metadata = m[0]
            .vardict_entries()
            .ok_or_else(bad)?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let parent = match m[1].as_bytes().ok_or_else(bad)? {
            [] => None,
            b => Some(
                Checksum::from_slice(b).ok_or(FormatError::BadChecksumLength {
                    what: "commit parent",
                    len: b.len(),
                })?,
            ),
        };
        let mut related = Vec::new();
        for r in m[2].as_array().ok_or_else(bad)? {
            let t = r.as_tuple().ok_or_else(bad)?;
            let b = t[1].as_bytes().ok_or_else(bad)?;
            let c = Checksum::from_slice(b).ok_or(FormatError::BadChecksumLength {
                what: "commit related object",
                len: b.len(),
            })?;
            related.push((t[0].as_str().ok_or_else(bad)?.to_string(), c));
        }
        let timestamp = match &m[5] {
            Value::U64(x) => x.swap_bytes(),
            _ => return Err(bad()),
        };
        let root = |i: usize, what: &'static str| {
            let b = m[i].as_bytes().ok_or_else(bad)?;
            Checksum::from_slice(b).ok_or(FormatError::BadChecksumLength { what, len: b.len() })
        };
        Ok(Commit {
            metadata,
            parent,
            related,
            subject: m[3].as_str().ok_or_else(bad)?.to_string(),
            body: m[4].as_str().ok_or_else(bad)?.to_string(),
            timestamp,
            root_tree: root(6, "commit root dirtree")?,
            root_meta: root(7, "commit root dirmeta")?,
        })
    }

    pub fn meta(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The `version` metadata string, if any.
    pub fn version(&self) -> Option<&str> {
        self.meta(META_VERSION).and_then(Value::as_str)
    }

    /// SHA-256 of the root dirtree and dirmeta checksums: `ostree show`'s ContentChecksum.
    pub fn content_checksum(&self) -> Checksum {
        let mut b = self.root_tree.0.to_vec();
        b.extend_from_slice(&self.root_meta.0);
        Checksum::of(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_commit() {
        let c = Commit {
            metadata: vec![(META_REF_BINDING.into(), Value::strv(&["test/main"]))],
            parent: None,
            related: vec![],
            subject: "subj".into(),
            body: String::new(),
            timestamp: 1577836800,
            root_tree: Checksum::from_hex(
                "8f3a84b4c69b5d6df8508ff746d310a38a982b9724c817496abe33331db061c6",
            )
            .unwrap(),
            root_meta: Checksum::from_hex(
                "446a0ef11b7cc167f3b603e585c7eeeeb675faa412d5ec73f62988eb0b6c5488",
            )
            .unwrap(),
        };
        let bytes = c.to_bytes();
        assert_eq!(bytes.len(), 126);
        assert_eq!(
            c.checksum().to_hex(),
            "5cd60a868289355266e2769ad17f388729291fdfe822afd99ccdc174a534d3de"
        );
        assert_eq!(Commit::parse(&bytes).unwrap(), c);
    }
}
