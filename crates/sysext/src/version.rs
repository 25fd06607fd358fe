//! Ordering versions the way systemd and sysupdate do (the UAPI version format): numbers
//! compare as numbers, `~` marks something older than what it follows (`1.0~rc1` <
//! `1.0`), `-` separates a release (`1.0-2` < `1.0.1`), `^` a patch level (`1.0^p1` >
//! `1.0`), and a version with more segments is newer (`1.0.1` > `1.0`).

use std::cmp::Ordering;

fn valid(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'~' | b'-' | b'^' | b'.')
}

/// Compare two versions; `Greater` means `a` is newer.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        // Characters outside the version alphabet only separate segments.
        while a.first().is_some_and(|&c| !valid(c)) {
            a = &a[1..];
        }
        while b.first().is_some_and(|&c| !valid(c)) {
            b = &b[1..];
        }
        // '~' first: the side that has it is older, even than the end of the string.
        if a.first() == Some(&b'~') || b.first() == Some(&b'~') {
            let o = (a.first() != Some(&b'~')).cmp(&(b.first() != Some(&b'~')));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[1..];
            b = &b[1..];
        }
        if a.is_empty() || b.is_empty() {
            return a.cmp(b);
        }
        for sep in [b'-', b'^', b'.'] {
            if a.first() == Some(&sep) || b.first() == Some(&sep) {
                let o = (a.first() != Some(&sep)).cmp(&(b.first() != Some(&sep)));
                if o != Ordering::Equal {
                    // The side with the separator is older: the other continues the
                    // current segment (`1.0a` > `1.0.1`, `1.0.1` > `1.0-2`).
                    return o;
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let alphas = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_alphabetic()).count();
        if a.first().is_some_and(u8::is_ascii_digit) || b.first().is_some_and(u8::is_ascii_digit) {
            let (na, nb) = (digits(a), digits(b));
            // A number is newer than no number (a letter, or nothing).
            let o = (na != 0).cmp(&(nb != 0));
            if o != Ordering::Equal {
                return o;
            }
            let (sa, sb) = (&a[..na], &b[..nb]);
            let sa = &sa[sa.iter().take_while(|&&c| c == b'0').count()..];
            let sb = &sb[sb.iter().take_while(|&&c| c == b'0').count()..];
            let o = sa.len().cmp(&sb.len()).then_with(|| sa.cmp(sb));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[na..];
            b = &b[nb..];
        } else {
            let (na, nb) = (alphas(a), alphas(b));
            let n = na.min(nb);
            let o = a[..n].cmp(&b[..n]).then(na.cmp(&nb));
            if o != Ordering::Equal {
                return o;
            }
            a = &a[na..];
            b = &b[nb..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn ordering() {
        for (a, b, want) in [
            ("1", "1", Equal),
            ("1", "2", Less),
            ("10", "9", Greater),
            ("010", "10", Equal),
            ("1.0", "1.0.1", Less),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("1.0-2", "1.0.1", Less),
            ("1.0^p1", "1.0", Greater),
            ("1.0a", "1.0", Greater),
            ("1.0a", "1.0b", Less),
            ("1.0a", "1.0.1", Greater),
            ("12.20240601.1", "12.20240601.0", Greater),
            ("2", "10", Less),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
        let mut v = vec!["1.10", "1.9", "1.9~rc1", "1.9-1", "2~beta"];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(v, ["1.9~rc1", "1.9", "1.9-1", "1.10", "2~beta"]);
    }
}
