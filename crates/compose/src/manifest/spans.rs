//! From a byte offset in the manifest to what an error should say: the line, and the
//! dotted name of the field there.

use toml::de::{DeTable, DeValue};

/// 1-based line of byte `offset`.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted path (`debian.packages`, `hooks[1].run`) of the deepest key or value that
/// covers `offset`, if the text is valid TOML.
pub fn field_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<(usize, String)> = None;
    walk_table(root.get_ref(), offset, "", 0, &mut best);
    best.map(|(_, p)| p)
}

fn consider(best: &mut Option<(usize, String)>, depth: usize, path: String) {
    if best.as_ref().is_none_or(|(d, _)| depth >= *d) {
        *best = Some((depth, path));
    }
}

fn walk_table(
    t: &DeTable<'_>,
    offset: usize,
    prefix: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    for (k, v) in t.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if k.span().contains(&offset) || v.span().contains(&offset) {
            consider(best, depth + 1, path.clone());
        }
        // Tables declared with a [header] may not span their keys, so look inside every
        // one rather than only those whose span covers the offset.
        walk_value(v.get_ref(), offset, &path, depth + 1, best);
    }
}

fn walk_value(
    v: &DeValue<'_>,
    offset: usize,
    path: &str,
    depth: usize,
    best: &mut Option<(usize, String)>,
) {
    match v {
        DeValue::Table(t) => walk_table(t, offset, path, depth, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                let is_table = matches!(item.get_ref(), DeValue::Table(_));
                // Elements of a scalar array are named by the array (`debian.packages`);
                // elements of an array of tables by their index (`hooks[1]`).
                if is_table {
                    if item.span().contains(&offset) {
                        consider(best, depth + 1, p.clone());
                    }
                    walk_value(item.get_ref(), offset, &p, depth + 1, best);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let t = "a\nb\nc";
        assert_eq!(line_of(t, 0), 1);
        assert_eq!(line_of(t, 2), 2);
        assert_eq!(line_of(t, 4), 3);
        assert_eq!(line_of(t, 100), 3);
    }

    #[test]
    fn fields_are_found_by_offset() {
        let t = "[os]\nname = \"x\"\n\n[debian]\npackages = [\n  \"a\",\n  \"b\",\n]\n\n\
                 [[hooks]]\nname = \"h\"\n\n[[hooks]]\nrun = 5\n";
        let at = |needle: &str| field_at(t, t.find(needle).unwrap());
        assert_eq!(at("\"x\"").as_deref(), Some("os.name"));
        assert_eq!(at("\"b\"").as_deref(), Some("debian.packages"));
        assert_eq!(at("5").as_deref(), Some("hooks[1].run"));
        assert_eq!(at("name = \"h\"").as_deref(), Some("hooks[0].name"));
    }
}
