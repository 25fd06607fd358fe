//! The fuzz harness for trellis-store's parsers, kept apart from libFuzzer so that it can be
//! called from anywhere (the `objects` fuzz target, a regression test over saved artifacts).
//!
//! [`check`] feeds one input to every parser. None may panic, and whatever a parser accepts
//! must serialize back to exactly the input (but for the `.filez` header's padding, which
//! ostree skips unread): the parsers accept only normal-form data, and a checksum is only
//! meaningful over canonical bytes.

use std::sync::LazyLock;
use trellis_store::format::{Commit, DirMeta, DirTree, FileHeader};
use trellis_store::gvariant::{self, Type};

/// The GVariant types OSTree stores: commit, dirtree, dirmeta / `user.ostreemeta`, the
/// `.filez` header, detached metadata, and the summary.
pub const TYPES: &[&str] = &[
    "(a{sv}aya(say)sstayay)",
    "(a(say)a(sayay))",
    "(uuua(ayay))",
    "(tuuuusa(ayay))",
    "a{sv}",
    "(a(s(taya{sv}))a{sv})",
];

static PARSED_TYPES: LazyLock<Vec<Type>> = LazyLock::new(|| {
    TYPES
        .iter()
        .map(|s| Type::parse(s).unwrap_or_else(|e| panic!("harness type {s}: {e}")))
        .collect()
});

/// Run every parser over `data`; panics (the fuzzer's failure signal) on a broken invariant.
pub fn check(data: &[u8]) {
    for ty in PARSED_TYPES.iter() {
        if let Ok(v) = gvariant::from_bytes(ty, data) {
            assert_eq!(&v.type_of(), ty, "parsed value has another type");
            assert_eq!(gvariant::to_bytes(&v), data, "{ty}: not a round trip");
        }
        // The lenient parser must not panic either; it need not round-trip.
        let _ = gvariant::from_bytes_lenient(ty, data);
    }
    if let Ok(c) = Commit::parse(data) {
        assert_eq!(c.to_bytes(), data, "commit: not a round trip");
    }
    if let Ok(t) = DirTree::parse(data) {
        assert_eq!(t.to_bytes(), data, "dirtree: not a round trip");
    }
    if let Ok(m) = DirMeta::parse(data) {
        assert_eq!(m.to_bytes(), data, "dirmeta: not a round trip");
    }
    if let Ok((h, size, end)) = FileHeader::parse_archive_prefix(data) {
        assert!(end <= data.len(), "archive header ends past the input");
        // Bytes 4..8 are padding that ostree skips unread, so only the rest must round-trip.
        let again = h.archive_prefix(size);
        assert_eq!(again.len(), end, "archive header: another length");
        assert_eq!(
            again[..4],
            data[..4],
            "archive header: another length prefix"
        );
        assert_eq!(again[8..], data[8..end], "archive header: not a round trip");
    }
    if let Ok(h) = FileHeader::from_ostreemeta(data, "target".to_string()) {
        assert_eq!(h.ostreemeta(), data, "user.ostreemeta: not a round trip");
    }
}
