//! The repository summary `(a(s(taya{sv}))a{sv})` (spec §5.1).

use super::{FormatError, be64};
use crate::checksum::Checksum;
use crate::gvariant::{self, Type, Value};
use std::sync::LazyLock;

static TYPE: LazyLock<Type> =
    LazyLock::new(|| Type::parse("(a(s(taya{sv}))a{sv})").expect("static type"));

pub const SUMMARY_COMMIT_TIMESTAMP: &str = "ostree.commit.timestamp";
pub const SUMMARY_COMMIT_VERSION: &str = "ostree.commit.version";
pub const SUMMARY_LAST_MODIFIED: &str = "ostree.summary.last-modified";
pub const SUMMARY_MODE: &str = "ostree.summary.mode";
pub const SUMMARY_TOMBSTONES: &str = "ostree.summary.tombstone-commits";
pub const SUMMARY_INDEXED_DELTAS: &str = "ostree.summary.indexed-deltas";

#[derive(Clone, Debug, PartialEq)]
pub struct SummaryRef {
    pub name: String,
    /// Size of the commit object in bytes: clients use it as the download limit.
    pub commit_size: u64,
    pub commit: Checksum,
    pub metadata: Vec<(String, Value)>,
}

impl SummaryRef {
    pub fn timestamp(&self) -> Option<u64> {
        match self
            .metadata
            .iter()
            .find(|(k, _)| k == SUMMARY_COMMIT_TIMESTAMP)?
            .1
        {
            Value::U64(t) => Some(t.swap_bytes()),
            _ => None,
        }
    }

    pub fn version(&self) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == SUMMARY_COMMIT_VERSION)?
            .1
            .as_str()
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Summary {
    /// Sorted by name (clients binary-search them).
    pub refs: Vec<SummaryRef>,
    pub metadata: Vec<(String, Value)>,
}

impl Summary {
    /// Per-ref metadata as `ostree summary -u` writes it: version before timestamp, the
    /// order its GVariantDict (a hash table) yields for these two keys, so that the bytes
    /// match ostree's.
    pub fn ref_metadata(timestamp: u64, version: Option<&str>) -> Vec<(String, Value)> {
        let mut m = Vec::new();
        if let Some(v) = version {
            m.push((SUMMARY_COMMIT_VERSION.to_string(), Value::str(v)));
        }
        m.push((SUMMARY_COMMIT_TIMESTAMP.to_string(), be64(timestamp)));
        m
    }

    /// Repository metadata as `ostree summary -u` writes it, in its order.
    pub fn repo_metadata(mode: &str, last_modified: u64) -> Vec<(String, Value)> {
        vec![
            (SUMMARY_MODE.to_string(), Value::str(mode)),
            (SUMMARY_LAST_MODIFIED.to_string(), be64(last_modified)),
            (SUMMARY_TOMBSTONES.to_string(), Value::Bool(false)),
            (SUMMARY_INDEXED_DELTAS.to_string(), Value::Bool(true)),
        ]
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut refs: Vec<&SummaryRef> = self.refs.iter().collect();
        refs.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let entry_ty = Type::parse("(s(taya{sv}))").expect("static type");
        gvariant::to_bytes(&Value::Tuple(vec![
            Value::Array(
                entry_ty,
                refs.into_iter()
                    .map(|r| {
                        Value::Tuple(vec![
                            Value::str(r.name.clone()),
                            Value::Tuple(vec![
                                // Host (little-endian) order, unlike its neighbours: ostree#1990.
                                Value::U64(r.commit_size),
                                Value::Bytes(r.commit.0.to_vec()),
                                Value::vardict(r.metadata.clone()),
                            ]),
                        ])
                    })
                    .collect(),
            ),
            Value::vardict(self.metadata.clone()),
        ]))
    }

    pub fn parse(data: &[u8]) -> Result<Summary, FormatError> {
        let v = gvariant::from_bytes(&TYPE, data)?;
        let bad = || FormatError::Truncated("summary");
        let m = v.as_tuple().ok_or_else(bad)?;
        let mut refs = Vec::new();
        for e in m[0].as_array().ok_or_else(bad)? {
            let t = e.as_tuple().ok_or_else(bad)?;
            let inner = t[1].as_tuple().ok_or_else(bad)?;
            let commit_size = match inner[0] {
                Value::U64(s) => s,
                _ => return Err(bad()),
            };
            let b = inner[1].as_bytes().ok_or_else(bad)?;
            let commit = Checksum::from_slice(b).ok_or(FormatError::BadChecksumLength {
                what: "summary ref",
                len: b.len(),
            })?;
            let metadata = inner[2]
                .vardict_entries()
                .ok_or_else(bad)?
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            refs.push(SummaryRef {
                name: t[0].as_str().ok_or_else(bad)?.to_string(),
                commit_size,
                commit,
                metadata,
            });
        }
        if refs
            .windows(2)
            .any(|w| w[0].name.as_bytes() >= w[1].name.as_bytes())
        {
            return Err(FormatError::Unsorted {
                what: "summary ref",
                name: String::new(),
            });
        }
        let metadata = m[1]
            .vardict_entries()
            .ok_or_else(bad)?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Ok(Summary { refs, metadata })
    }

    pub fn find(&self, name: &str) -> Option<&SummaryRef> {
        self.refs
            .binary_search_by(|r| r.name.as_bytes().cmp(name.as_bytes()))
            .ok()
            .map(|i| &self.refs[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary written by `ostree summary -u` (2022.7) parses and re-serializes to the
    /// same bytes.
    #[test]
    fn ostree_summary_round_trips() {
        let bytes = include_bytes!("../../tests/data/ostree-2022.7.summary");
        let s = Summary::parse(bytes).unwrap();
        assert_eq!(s.refs.len(), 1);
        assert_eq!(s.refs[0].name, "main");
        assert_eq!(s.refs[0].commit_size, 158);
        assert_eq!(
            s.refs[0].commit.to_hex(),
            "ed3fb07e95905aad491f5e143f7e12445164dc7fae568106cd5369eca948d397"
        );
        assert_eq!(s.refs[0].timestamp(), Some(1577923200));
        assert_eq!(s.to_bytes(), bytes.to_vec());
        let keys: Vec<_> = s.metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                SUMMARY_MODE,
                SUMMARY_LAST_MODIFIED,
                SUMMARY_TOMBSTONES,
                SUMMARY_INDEXED_DELTAS
            ]
        );
        let rebuilt = Summary {
            refs: s.refs.clone(),
            metadata: Summary::repo_metadata("archive-z2", 1795692478),
        };
        assert_eq!(rebuilt.to_bytes(), bytes.to_vec());
    }

    #[test]
    fn refs_are_written_sorted() {
        let c = Checksum::of(b"c");
        let mk = |n: &str| SummaryRef {
            name: n.into(),
            commit_size: 1,
            commit: c,
            metadata: vec![],
        };
        let s = Summary {
            refs: vec![mk("z"), mk("a")],
            metadata: vec![],
        };
        let back = Summary::parse(&s.to_bytes()).unwrap();
        assert_eq!(back.refs[0].name, "a");
        assert!(back.find("z").is_some() && back.find("b").is_none());
    }
}
