//! GVariant type strings: parsing, alignment and fixed sizes.

use super::GvError;

/// A GVariant type, as far as OSTree's formats need them (every basic type and container).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    Bool,
    Byte,
    I16,
    U16,
    I32,
    U32,
    Handle,
    I64,
    U64,
    Double,
    Str,
    ObjectPath,
    Signature,
    Variant,
    Maybe(Box<Type>),
    Array(Box<Type>),
    Tuple(Vec<Type>),
    DictEntry(Box<Type>, Box<Type>),
}

/// Deepest container nesting we accept; real OSTree types nest at most 5 deep.
const MAX_DEPTH: usize = 64;

impl Type {
    /// Parse a complete type string such as `(a{sv}aya(say)sstayay)`.
    pub fn parse(s: &str) -> Result<Type, GvError> {
        let bytes = s.as_bytes();
        let (ty, used) = Self::parse_prefix(bytes, 0)?;
        if used != bytes.len() {
            return Err(GvError::BadType(s.to_string()));
        }
        Ok(ty)
    }

    fn parse_prefix(b: &[u8], depth: usize) -> Result<(Type, usize), GvError> {
        let bad = || GvError::BadType(String::from_utf8_lossy(b).into_owned());
        if depth > MAX_DEPTH {
            return Err(bad());
        }
        let c = *b.first().ok_or_else(bad)?;
        let simple = match c {
            b'b' => Some(Type::Bool),
            b'y' => Some(Type::Byte),
            b'n' => Some(Type::I16),
            b'q' => Some(Type::U16),
            b'i' => Some(Type::I32),
            b'u' => Some(Type::U32),
            b'h' => Some(Type::Handle),
            b'x' => Some(Type::I64),
            b't' => Some(Type::U64),
            b'd' => Some(Type::Double),
            b's' => Some(Type::Str),
            b'o' => Some(Type::ObjectPath),
            b'g' => Some(Type::Signature),
            b'v' => Some(Type::Variant),
            _ => None,
        };
        if let Some(t) = simple {
            return Ok((t, 1));
        }
        match c {
            b'm' => {
                let (inner, n) = Self::parse_prefix(&b[1..], depth + 1)?;
                Ok((Type::Maybe(Box::new(inner)), n + 1))
            }
            b'a' => {
                let (inner, n) = Self::parse_prefix(&b[1..], depth + 1)?;
                Ok((Type::Array(Box::new(inner)), n + 1))
            }
            b'(' => {
                let mut pos = 1;
                let mut members = Vec::new();
                loop {
                    match b.get(pos) {
                        None => return Err(bad()),
                        Some(b')') => return Ok((Type::Tuple(members), pos + 1)),
                        Some(_) => {
                            let (t, n) = Self::parse_prefix(&b[pos..], depth + 1)?;
                            members.push(t);
                            pos += n;
                        }
                    }
                }
            }
            b'{' => {
                let (k, n1) = Self::parse_prefix(&b[1..], depth + 1)?;
                if !k.is_basic() {
                    return Err(bad());
                }
                let (v, n2) = Self::parse_prefix(&b[1 + n1..], depth + 1)?;
                if b.get(1 + n1 + n2) != Some(&b'}') {
                    return Err(bad());
                }
                Ok((Type::DictEntry(Box::new(k), Box::new(v)), n1 + n2 + 2))
            }
            _ => Err(bad()),
        }
    }

    fn is_basic(&self) -> bool {
        !matches!(
            self,
            Type::Variant | Type::Maybe(_) | Type::Array(_) | Type::Tuple(_) | Type::DictEntry(..)
        )
    }

    /// Alignment in bytes (1, 2, 4 or 8).
    pub fn alignment(&self) -> usize {
        match self {
            Type::Bool | Type::Byte | Type::Str | Type::ObjectPath | Type::Signature => 1,
            Type::I16 | Type::U16 => 2,
            Type::I32 | Type::U32 | Type::Handle => 4,
            Type::I64 | Type::U64 | Type::Double | Type::Variant => 8,
            Type::Maybe(t) | Type::Array(t) => t.alignment(),
            Type::Tuple(ms) => ms.iter().map(Type::alignment).max().unwrap_or(1),
            Type::DictEntry(k, v) => k.alignment().max(v.alignment()),
        }
    }

    /// The serialized size of a fixed-size type, or `None` for variable-size types.
    pub fn fixed_size(&self) -> Option<usize> {
        match self {
            Type::Bool | Type::Byte => Some(1),
            Type::I16 | Type::U16 => Some(2),
            Type::I32 | Type::U32 | Type::Handle => Some(4),
            Type::I64 | Type::U64 | Type::Double => Some(8),
            Type::Str | Type::ObjectPath | Type::Signature | Type::Variant => None,
            Type::Maybe(_) | Type::Array(_) => None,
            Type::Tuple(ms) => tuple_fixed_size(ms.iter()),
            Type::DictEntry(k, v) => tuple_fixed_size([k.as_ref(), v.as_ref()].into_iter()),
        }
    }

    /// Members of a tuple or dict entry, in order.
    pub fn members(&self) -> Option<Vec<&Type>> {
        match self {
            Type::Tuple(ms) => Some(ms.iter().collect()),
            Type::DictEntry(k, v) => Some(vec![k.as_ref(), v.as_ref()]),
            _ => None,
        }
    }
}

fn tuple_fixed_size<'a>(members: impl Iterator<Item = &'a Type>) -> Option<usize> {
    let mut size = 0usize;
    let mut align = 1usize;
    for m in members {
        let a = m.alignment();
        align = align.max(a);
        size = size.next_multiple_of(a) + m.fixed_size()?;
    }
    // The unit tuple `()` occupies a single zero byte.
    if size == 0 {
        return Some(1);
    }
    Some(size.next_multiple_of(align))
}

impl std::fmt::Display for Type {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = match self {
            Type::Bool => "b",
            Type::Byte => "y",
            Type::I16 => "n",
            Type::U16 => "q",
            Type::I32 => "i",
            Type::U32 => "u",
            Type::Handle => "h",
            Type::I64 => "x",
            Type::U64 => "t",
            Type::Double => "d",
            Type::Str => "s",
            Type::ObjectPath => "o",
            Type::Signature => "g",
            Type::Variant => "v",
            Type::Maybe(t) => return write!(f, "m{t}"),
            Type::Array(t) => return write!(f, "a{t}"),
            Type::Tuple(ms) => {
                f.write_str("(")?;
                for m in ms {
                    write!(f, "{m}")?;
                }
                return f.write_str(")");
            }
            Type::DictEntry(k, v) => return write!(f, "{{{k}{v}}}"),
        };
        f.write_str(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_ostree_types() {
        for s in [
            "(a{sv}aya(say)sstayay)",
            "(a(say)a(sayay))",
            "(uuua(ayay))",
            "(tuuuusa(ayay))",
            "(a(s(taya{sv}))a{sv})",
            "a{sv}",
            "()",
            "maay",
        ] {
            assert_eq!(Type::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed() {
        for s in ["", "(", "a", "{vs}", "{ss", "z", "(u))", "{sss}"] {
            assert!(Type::parse(s).is_err(), "{s:?} should be refused");
        }
    }

    #[test]
    fn sizes_and_alignment() {
        assert_eq!(Type::parse("(uuu)").unwrap().fixed_size(), Some(12));
        assert_eq!(Type::parse("(yt)").unwrap().fixed_size(), Some(16));
        assert_eq!(Type::parse("(ty)").unwrap().fixed_size(), Some(16));
        assert_eq!(Type::parse("()").unwrap().fixed_size(), Some(1));
        assert_eq!(Type::parse("(us)").unwrap().fixed_size(), None);
        assert_eq!(Type::parse("a{sv}").unwrap().alignment(), 8);
    }
}
