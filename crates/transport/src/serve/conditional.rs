//! Validators, conditional requests and byte ranges (RFC 9110 §8.8, §13, §14). Pure.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What identifies one version of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Validators {
    /// A strong entity tag, quoted.
    pub etag: String,
    /// Modification time in whole seconds since the epoch (absent before 1970).
    pub modified: Option<u64>,
}

impl Validators {
    /// `object` is a content-addressed object name (`<checksum>.<ext>`): its bytes follow
    /// from the name. Other files change in place or by rename, which the size, the
    /// nanosecond mtime and the inode number reveal.
    pub fn new(object: Option<&str>, size: u64, mtime: i64, mtime_ns: u64, ino: u64) -> Self {
        let etag = match object {
            // A .filez is named by what it inflates to; another zlib level gives other
            // bytes under the same name, so the size takes part.
            Some(name) if name.ends_with(".filez") => format!("\"{name}-{size:x}\""),
            Some(name) => format!("\"{name}\""),
            None => format!("\"{size:x}-{:x}.{mtime_ns:x}-{ino:x}\"", mtime),
        };
        Validators {
            etag,
            modified: u64::try_from(mtime).ok(),
        }
    }

    pub fn last_modified(&self) -> Option<String> {
        // Objects written together share their second: format each second once.
        thread_local! {
            static LAST: std::cell::RefCell<Option<(u64, String)>> =
                const { std::cell::RefCell::new(None) };
        }
        let s = self.modified?;
        Some(LAST.with_borrow_mut(|last| match last {
            Some((t, text)) if *t == s => text.clone(),
            _ => {
                let text = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(s));
                *last = Some((s, text.clone()));
                text
            }
        }))
    }
}

/// The request headers that make a GET conditional or partial (values that are not
/// visible ASCII are treated as absent).
#[derive(Clone, Debug, Default)]
pub(crate) struct Conditions {
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<String>,
    pub range: Option<String>,
    pub if_range: Option<String>,
}

impl Conditions {
    /// Take a request header field (`value` already known to be visible ASCII) if it is
    /// one of these. Of a repeated field the first counts, but If-None-Match is a list,
    /// which may be split over several fields: they are joined. Returns whether it was.
    pub fn add(&mut self, name: &str, value: &str) -> bool {
        if name.eq_ignore_ascii_case("if-none-match") {
            match &mut self.if_none_match {
                Some(list) => {
                    list.push_str(", ");
                    list.push_str(value);
                }
                None => self.if_none_match = Some(value.to_string()),
            }
            return true;
        }
        let slot = if name.eq_ignore_ascii_case("if-modified-since") {
            &mut self.if_modified_since
        } else if name.eq_ignore_ascii_case("range") {
            &mut self.range
        } else if name.eq_ignore_ascii_case("if-range") {
            &mut self.if_range
        } else {
            return false;
        };
        slot.get_or_insert_with(|| value.to_string());
        true
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    NotModified,
    Full,
    /// Bytes `start..end` (end exclusive).
    Partial {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

pub(crate) fn decide(c: &Conditions, v: &Validators, size: u64) -> Decision {
    // If-None-Match takes precedence; If-Modified-Since is only looked at without it.
    if let Some(inm) = &c.if_none_match {
        if list_matches(inm, &v.etag) {
            return Decision::NotModified;
        }
    } else if let (Some(ims), Some(modified)) = (&c.if_modified_since, v.modified) {
        if parse_date(ims).is_some_and(|since| modified <= since) {
            return Decision::NotModified;
        }
    }
    let Some(range) = &c.range else {
        return Decision::Full;
    };
    if let Some(ir) = &c.if_range {
        if !if_range_holds(ir, v) {
            return Decision::Full;
        }
    }
    match parse_range(range, size) {
        RangeSpec::Ignore => Decision::Full,
        RangeSpec::Unsatisfiable => Decision::Unsatisfiable,
        RangeSpec::Bytes { start, end } => Decision::Partial { start, end },
    }
}

/// If-None-Match uses the weak comparison: opaque tags equal once any `W/` is dropped.
fn list_matches(list: &str, etag: &str) -> bool {
    let list = list.trim();
    if list == "*" {
        return true;
    }
    let ours = etag.trim_start_matches("W/");
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == ours)
}

/// If-Range needs a strong match: our exact entity tag, or our exact Last-Modified date.
fn if_range_holds(value: &str, v: &Validators) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        return value == v.etag;
    }
    match (parse_date(value), v.modified) {
        (Some(d), Some(m)) => d == m,
        _ => false,
    }
}

fn parse_date(s: &str) -> Option<u64> {
    let t: SystemTime = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RangeSpec {
    /// Not a single byte range we understand: answer with the whole file.
    Ignore,
    Unsatisfiable,
    Bytes {
        start: u64,
        end: u64,
    },
}

/// A single `bytes=a-b`, `bytes=a-` or `bytes=-n`. Several ranges are answered with the
/// whole file, which RFC 9110 allows and which no OSTree client asks for.
pub(crate) fn parse_range(header: &str, size: u64) -> RangeSpec {
    let header = header.trim();
    let Some(spec) = header
        .get(..6)
        .filter(|unit| unit.eq_ignore_ascii_case("bytes="))
        .map(|_| header[6..].trim())
    else {
        return RangeSpec::Ignore;
    };
    if spec.contains(',') {
        return RangeSpec::Ignore;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeSpec::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        let Some(n) = number(last) else {
            return RangeSpec::Ignore;
        };
        if n == 0 {
            return RangeSpec::Unsatisfiable;
        }
        if size == 0 {
            // A suffix of an empty file is satisfiable but has no bytes to describe.
            return RangeSpec::Ignore;
        }
        return RangeSpec::Bytes {
            start: size.saturating_sub(n),
            end: size,
        };
    }
    let Some(start) = number(first) else {
        return RangeSpec::Ignore;
    };
    let last = if last.is_empty() {
        None
    } else {
        match number(last) {
            Some(l) if l >= start => Some(l),
            _ => return RangeSpec::Ignore,
        }
    };
    if start >= size {
        return RangeSpec::Unsatisfiable;
    }
    let end = last.map_or(size, |l| l.saturating_add(1).min(size));
    RangeSpec::Bytes { start, end }
}

/// Digits only: `str::parse` would also take a leading `+`.
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validators() -> Validators {
        Validators::new(None, 100, 1_000_000_000, 5, 42)
    }

    fn cond(f: impl FnOnce(&mut Conditions)) -> Conditions {
        let mut c = Conditions::default();
        f(&mut c);
        c
    }

    #[test]
    fn ranges() {
        use RangeSpec::*;
        assert_eq!(parse_range("bytes=0-9", 100), Bytes { start: 0, end: 10 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Bytes {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Bytes {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Bytes { start: 0, end: 100 }
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Bytes {
                start: 50,
                end: 100
            }
        );
        assert_eq!(parse_range("BYTES=1-1", 100), Bytes { start: 1, end: 2 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=200-300", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Ignore);
        for bad in [
            "bytes=5-1",
            "bytes=0-1,5-6",
            "bytes=+1-2",
            "bytes=a-b",
            "bytes=",
            "bytes=-",
            "items=0-1",
            "bytes 0-1",
            "bytes=99999999999999999999999-",
            "bytés=0-1",
        ] {
            assert_eq!(parse_range(bad, 100), Ignore, "{bad}");
        }
    }

    #[test]
    fn etags_for_objects_and_mutable_files() {
        let csum = "ab".repeat(32);
        let meta = Validators::new(Some(&format!("{csum}.dirtree")), 7, 1, 2, 3);
        assert_eq!(meta.etag, format!("\"{csum}.dirtree\""));
        let content = Validators::new(Some(&format!("{csum}.filez")), 255, 1, 2, 3);
        assert_eq!(content.etag, format!("\"{csum}.filez-ff\""));
        // A ref rewritten by rename gets another inode, hence another tag.
        let a = Validators::new(None, 65, 1_700_000_000, 1, 10);
        let b = Validators::new(None, 65, 1_700_000_000, 1, 11);
        assert_ne!(a.etag, b.etag);
        assert_eq!(Validators::new(None, 1, -5, 0, 1).modified, None);
        assert_eq!(
            validators().last_modified().as_deref(),
            Some("Sun, 09 Sep 2001 01:46:40 GMT")
        );
    }

    #[test]
    fn if_none_match() {
        let v = validators();
        let tag = v.etag.clone();
        let d = |c: Conditions| decide(&c, &v, 100);
        assert_eq!(
            d(cond(|c| c.if_none_match = Some(tag.clone()))),
            Decision::NotModified
        );
        assert_eq!(
            d(cond(|c| c.if_none_match = Some(format!("W/{tag}")))),
            Decision::NotModified
        );
        assert_eq!(
            d(cond(|c| c.if_none_match = Some(format!("\"x\", {tag}")))),
            Decision::NotModified
        );
        assert_eq!(
            d(cond(|c| c.if_none_match = Some("*".into()))),
            Decision::NotModified
        );
        assert_eq!(
            d(cond(|c| c.if_none_match = Some("\"other\"".into()))),
            Decision::Full
        );
        // A failed If-None-Match wins over a matching If-Modified-Since.
        assert_eq!(
            d(cond(|c| {
                c.if_none_match = Some("\"other\"".into());
                c.if_modified_since = Some("Sun, 09 Sep 2001 01:46:40 GMT".into());
            })),
            Decision::Full
        );
    }

    #[test]
    fn if_modified_since() {
        let v = validators();
        let d = |ims: &str| decide(&cond(|c| c.if_modified_since = Some(ims.into())), &v, 100);
        assert_eq!(d("Sun, 09 Sep 2001 01:46:40 GMT"), Decision::NotModified);
        assert_eq!(d("Mon, 10 Sep 2001 00:00:00 GMT"), Decision::NotModified);
        assert_eq!(d("Sun, 09 Sep 2001 01:46:39 GMT"), Decision::Full);
        assert_eq!(d("not a date"), Decision::Full);
    }

    #[test]
    fn if_range() {
        let v = validators();
        let tag = v.etag.clone();
        let d = |ir: &str| {
            decide(
                &cond(|c| {
                    c.range = Some("bytes=10-19".into());
                    c.if_range = Some(ir.into());
                }),
                &v,
                100,
            )
        };
        let partial = Decision::Partial { start: 10, end: 20 };
        assert_eq!(d(&tag), partial);
        assert_eq!(d("Sun, 09 Sep 2001 01:46:40 GMT"), partial);
        assert_eq!(d("\"stale\""), Decision::Full);
        assert_eq!(
            d(&format!("W/{tag}")),
            Decision::Full,
            "weak tags never match If-Range"
        );
        assert_eq!(d("Mon, 10 Sep 2001 00:00:00 GMT"), Decision::Full);
        assert_eq!(
            decide(&cond(|c| c.range = Some("bytes=500-".into())), &v, 100),
            Decision::Unsatisfiable
        );
    }
}
