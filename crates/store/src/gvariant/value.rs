use super::Type;

/// A GVariant value. `Bytes` is the compact form of `ay`; every other array is `Array`,
/// which carries its element type so that empty arrays still know their type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Bool(bool),
    Byte(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    Handle(i32),
    I64(i64),
    U64(u64),
    Double(f64),
    Str(String),
    ObjectPath(String),
    Signature(String),
    Variant(Box<Value>),
    Maybe(Type, Option<Box<Value>>),
    Bytes(Vec<u8>),
    Array(Type, Vec<Value>),
    Tuple(Vec<Value>),
    DictEntry(Box<Value>, Box<Value>),
}

impl Value {
    pub fn type_of(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Byte(_) => Type::Byte,
            Value::I16(_) => Type::I16,
            Value::U16(_) => Type::U16,
            Value::I32(_) => Type::I32,
            Value::U32(_) => Type::U32,
            Value::Handle(_) => Type::Handle,
            Value::I64(_) => Type::I64,
            Value::U64(_) => Type::U64,
            Value::Double(_) => Type::Double,
            Value::Str(_) => Type::Str,
            Value::ObjectPath(_) => Type::ObjectPath,
            Value::Signature(_) => Type::Signature,
            Value::Variant(_) => Type::Variant,
            Value::Maybe(t, _) => Type::Maybe(Box::new(t.clone())),
            Value::Bytes(_) => Type::Array(Box::new(Type::Byte)),
            Value::Array(t, _) => Type::Array(Box::new(t.clone())),
            Value::Tuple(ms) => Type::Tuple(ms.iter().map(Value::type_of).collect()),
            Value::DictEntry(k, v) => Type::DictEntry(Box::new(k.type_of()), Box::new(v.type_of())),
        }
    }

    /// `s` value.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// `as` value.
    pub fn strv<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array(
            Type::Str,
            items
                .iter()
                .map(|s| Value::Str(s.as_ref().to_string()))
                .collect(),
        )
    }

    /// `aay` value.
    pub fn bytes_array(items: Vec<Vec<u8>>) -> Value {
        Value::Array(
            Type::Array(Box::new(Type::Byte)),
            items.into_iter().map(Value::Bytes).collect(),
        )
    }

    /// `a{sv}` value from (key, value) pairs, in the given order.
    pub fn vardict(entries: Vec<(String, Value)>) -> Value {
        Value::Array(
            Type::DictEntry(Box::new(Type::Str), Box::new(Type::Variant)),
            entries
                .into_iter()
                .map(|(k, v)| {
                    Value::DictEntry(
                        Box::new(Value::Str(k)),
                        Box::new(Value::Variant(Box::new(v))),
                    )
                })
                .collect(),
        )
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The elements of an array (any element type except bytes).
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, items) => Some(items),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(ms) => Some(ms),
            _ => None,
        }
    }

    /// Unwrap one level of `v`.
    pub fn as_variant(&self) -> Option<&Value> {
        match self {
            Value::Variant(v) => Some(v),
            _ => None,
        }
    }

    /// The entries of an `a{sv}`, as (key, inner value) pairs.
    pub fn vardict_entries(&self) -> Option<Vec<(&str, &Value)>> {
        let items = self.as_array()?;
        items
            .iter()
            .map(|e| match e {
                Value::DictEntry(k, v) => Some((k.as_str()?, v.as_variant()?)),
                _ => None,
            })
            .collect()
    }

    /// Look up a key in an `a{sv}`: the first match, as GLib's `g_variant_lookup` does.
    pub fn vardict_lookup(&self, key: &str) -> Option<&Value> {
        self.vardict_entries()?
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Prints a value in GVariant text format, close to what `ostree show` prints.
impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Byte(b) => write!(f, "0x{b:02x}"),
            Value::I16(x) => write!(f, "{x}"),
            Value::U16(x) => write!(f, "{x}"),
            Value::I32(x) | Value::Handle(x) => write!(f, "{x}"),
            Value::U32(x) => write!(f, "{x}"),
            Value::I64(x) => write!(f, "{x}"),
            Value::U64(x) => write!(f, "{x}"),
            Value::Double(x) => write!(f, "{x}"),
            Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => write!(f, "{s:?}"),
            Value::Variant(v) => write!(f, "<{v}>"),
            Value::Maybe(_, None) => f.write_str("nothing"),
            Value::Maybe(_, Some(v)) => write!(f, "just {v}"),
            Value::Bytes(b) => {
                if let Some(s) = b
                    .strip_suffix(&[0])
                    .and_then(|s| std::str::from_utf8(s).ok())
                {
                    write!(f, "b{s:?}")
                } else {
                    write!(f, "[")?;
                    for (i, x) in b.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "0x{x:02x}")?;
                    }
                    write!(f, "]")
                }
            }
            Value::Array(t, items) => {
                let dict = matches!(t, Type::DictEntry(..));
                f.write_str(if dict { "{" } else { "[" })?;
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match x {
                        Value::DictEntry(k, v) => write!(f, "{k}: {v}")?,
                        _ => write!(f, "{x}")?,
                    }
                }
                f.write_str(if dict { "}" } else { "]" })
            }
            Value::Tuple(ms) => {
                f.write_str("(")?;
                for (i, x) in ms.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{x}")?;
                }
                if ms.len() == 1 {
                    f.write_str(",")?;
                }
                f.write_str(")")
            }
            Value::DictEntry(k, v) => write!(f, "{{{k}, {v}}}"),
        }
    }
}
