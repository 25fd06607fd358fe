//! The version a new commit gets, from the manifest's scheme and the parent's version.

use crate::manifest::{Scheme, VersionScheme};

/// The next version after `parent` (the parent commit's `version`), for a commit made at
/// `timestamp` (seconds since the epoch, UTC).
pub fn next_version(v: &VersionScheme, parent: Option<&str>, timestamp: u64) -> String {
    let after_prefix = parent.and_then(|p| p.strip_prefix(v.prefix.as_str()));
    match v.scheme {
        Scheme::Date => {
            let day = format!("{}{}", v.prefix, ymd(timestamp));
            let n = after_prefix
                .and_then(|rest| rest.strip_prefix(&day[v.prefix.len()..]))
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(0, |n| n + 1);
            format!("{day}.{n}")
        }
        Scheme::Counter => {
            let n = after_prefix
                .and_then(|n| n.parse::<u64>().ok())
                .map_or(1, |n| n + 1);
            format!("{}{n}", v.prefix)
        }
    }
}

fn ymd(timestamp: u64) -> String {
    let t = i64::try_from(timestamp)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 1_717_200_000; // 2024-06-01 00:00:00 UTC

    fn scheme(scheme: Scheme, prefix: &str) -> VersionScheme {
        VersionScheme {
            scheme,
            prefix: prefix.to_string(),
        }
    }

    #[test]
    fn date_versions_count_builds_of_the_day() {
        let s = scheme(Scheme::Date, "");
        assert_eq!(next_version(&s, None, DAY), "20240601.0");
        assert_eq!(next_version(&s, Some("20240601.0"), DAY), "20240601.1");
        assert_eq!(
            next_version(&s, Some("20240601.9"), DAY + 3600),
            "20240601.10"
        );
        assert_eq!(next_version(&s, Some("20240531.4"), DAY), "20240601.0");
        assert_eq!(next_version(&s, Some("garbage"), DAY), "20240601.0");
        let s = scheme(Scheme::Date, "12.");
        assert_eq!(
            next_version(&s, Some("12.20240601.2"), DAY),
            "12.20240601.3"
        );
        assert_eq!(next_version(&s, Some("20240601.2"), DAY), "12.20240601.0");
    }

    #[test]
    fn counter_versions() {
        let s = scheme(Scheme::Counter, "");
        assert_eq!(next_version(&s, None, DAY), "1");
        assert_eq!(next_version(&s, Some("41"), DAY), "42");
        let s = scheme(Scheme::Counter, "v");
        assert_eq!(next_version(&s, Some("v7"), DAY), "v8");
        assert_eq!(next_version(&s, Some("7"), DAY), "v1");
    }
}
