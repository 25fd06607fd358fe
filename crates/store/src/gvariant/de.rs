use super::{GvError, Type, Value};

const MAX_DEPTH: usize = 64;

/// Parse bytes as a value of type `ty`, accepting only normal-form data.
///
/// Normal form is checked by serializing the parsed value again and comparing: GVariant's
/// serialization of a value is unique, so any difference is a non-canonical encoding
/// (non-zero padding, wide offsets, trailing bytes).
pub fn from_bytes(ty: &Type, data: &[u8]) -> Result<Value, GvError> {
    let v = read(ty, data, 0)?;
    if super::to_bytes(&v) != data {
        return Err(GvError::NotNormal(ty.to_string()));
    }
    Ok(v)
}

/// Parse bytes that are well-framed but possibly not in normal form (for inspection tools).
pub fn from_bytes_lenient(ty: &Type, data: &[u8]) -> Result<Value, GvError> {
    read(ty, data, 0)
}

fn malformed(ty: &Type, why: &'static str) -> GvError {
    GvError::Malformed {
        ty: ty.to_string(),
        why,
    }
}

fn fixed<const N: usize>(ty: &Type, data: &[u8]) -> Result<[u8; N], GvError> {
    data.try_into()
        .map_err(|_| malformed(ty, "wrong size for a fixed-size value"))
}

fn read(ty: &Type, data: &[u8], depth: usize) -> Result<Value, GvError> {
    if depth > MAX_DEPTH {
        return Err(GvError::TooDeep(MAX_DEPTH));
    }
    Ok(match ty {
        Type::Bool => match fixed::<1>(ty, data)? {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return Err(malformed(ty, "boolean is neither 0 nor 1")),
        },
        Type::Byte => Value::Byte(fixed::<1>(ty, data)?[0]),
        Type::I16 => Value::I16(i16::from_le_bytes(fixed(ty, data)?)),
        Type::U16 => Value::U16(u16::from_le_bytes(fixed(ty, data)?)),
        Type::I32 => Value::I32(i32::from_le_bytes(fixed(ty, data)?)),
        Type::Handle => Value::Handle(i32::from_le_bytes(fixed(ty, data)?)),
        Type::U32 => Value::U32(u32::from_le_bytes(fixed(ty, data)?)),
        Type::I64 => Value::I64(i64::from_le_bytes(fixed(ty, data)?)),
        Type::U64 => Value::U64(u64::from_le_bytes(fixed(ty, data)?)),
        Type::Double => Value::Double(f64::from_le_bytes(fixed(ty, data)?)),
        Type::Str => Value::Str(read_str(ty, data)?),
        Type::ObjectPath => Value::ObjectPath(read_str(ty, data)?),
        Type::Signature => Value::Signature(read_str(ty, data)?),
        Type::Variant => {
            let zero = data
                .iter()
                .rposition(|&b| b == 0)
                .ok_or_else(|| malformed(ty, "variant has no type separator"))?;
            let type_str = std::str::from_utf8(&data[zero + 1..])
                .map_err(|_| malformed(ty, "variant type is not ASCII"))?;
            let inner_ty = Type::parse(type_str)?;
            Value::Variant(Box::new(read(&inner_ty, &data[..zero], depth + 1)?))
        }
        Type::Maybe(inner) => {
            if data.is_empty() {
                Value::Maybe((**inner).clone(), None)
            } else if inner.fixed_size().is_some() {
                let v = read(inner, data, depth + 1)?;
                Value::Maybe((**inner).clone(), Some(Box::new(v)))
            } else {
                let (last, body) = data.split_last().ok_or_else(|| malformed(ty, "empty"))?;
                if *last != 0 {
                    return Err(malformed(ty, "maybe lacks its trailing zero byte"));
                }
                let v = read(inner, body, depth + 1)?;
                Value::Maybe((**inner).clone(), Some(Box::new(v)))
            }
        }
        Type::Array(elem) => read_array(ty, elem, data, depth)?,
        Type::Tuple(_) | Type::DictEntry(..) => read_tuple(ty, data, depth)?,
    })
}

fn read_str(ty: &Type, data: &[u8]) -> Result<String, GvError> {
    let (last, body) = data
        .split_last()
        .ok_or_else(|| malformed(ty, "empty string data"))?;
    if *last != 0 {
        return Err(malformed(ty, "string is not NUL-terminated"));
    }
    if body.contains(&0) {
        return Err(malformed(ty, "string contains a NUL byte"));
    }
    String::from_utf8(body.to_vec()).map_err(|_| malformed(ty, "string is not valid UTF-8"))
}

fn width_for_size(size: usize) -> usize {
    match size as u64 {
        0 => 0,
        1..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

fn read_offset(data: &[u8], at: usize, w: usize) -> usize {
    let mut buf = [0u8; 8];
    buf[..w].copy_from_slice(&data[at..at + w]);
    // An offset larger than usize can never be in range; saturate so the bounds check fails.
    usize::try_from(u64::from_le_bytes(buf)).unwrap_or(usize::MAX)
}

fn read_array(ty: &Type, elem: &Type, data: &[u8], depth: usize) -> Result<Value, GvError> {
    if *elem == Type::Byte {
        return Ok(Value::Bytes(data.to_vec()));
    }
    let mut items = Vec::new();
    if let Some(size) = elem.fixed_size() {
        if data.len() % size != 0 {
            return Err(malformed(
                ty,
                "array length is not a multiple of its element size",
            ));
        }
        for chunk in data.chunks(size) {
            items.push(read(elem, chunk, depth + 1)?);
        }
    } else if !data.is_empty() {
        let w = width_for_size(data.len());
        let last_end = read_offset(data, data.len() - w, w);
        if last_end > data.len() || (data.len() - last_end) % w != 0 || last_end == data.len() {
            return Err(malformed(ty, "array framing offsets out of range"));
        }
        let n = (data.len() - last_end) / w;
        let align = elem.alignment();
        let mut pos = 0usize;
        for i in 0..n {
            let end = read_offset(data, last_end + i * w, w);
            let start = pos.next_multiple_of(align);
            if start > end || end > last_end {
                return Err(malformed(ty, "array element offsets out of order"));
            }
            items.push(read(elem, &data[start..end], depth + 1)?);
            pos = end;
        }
    }
    Ok(Value::Array(elem.clone(), items))
}

fn read_tuple(ty: &Type, data: &[u8], depth: usize) -> Result<Value, GvError> {
    let members = ty.members().unwrap_or_default();
    if let Some(size) = ty.fixed_size()
        && data.len() != size
    {
        return Err(malformed(ty, "wrong size for a fixed-size tuple"));
    }
    if members.is_empty() {
        return Ok(Value::Tuple(Vec::new()));
    }
    let n_offsets = members
        .iter()
        .enumerate()
        .filter(|(i, m)| m.fixed_size().is_none() && i + 1 < members.len())
        .count();
    let w = if ty.fixed_size().is_some() {
        0
    } else {
        width_for_size(data.len())
    };
    let table = n_offsets * w;
    if table > data.len() {
        return Err(malformed(ty, "tuple too short for its framing offsets"));
    }
    let body_end = data.len() - table;
    let mut pos = 0usize;
    let mut next_offset = 0usize;
    let mut values = Vec::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        let start = pos.next_multiple_of(m.alignment());
        let end = if let Some(size) = m.fixed_size() {
            start + size
        } else if i + 1 == members.len() {
            body_end
        } else {
            next_offset += 1;
            read_offset(data, data.len() - next_offset * w, w)
        };
        if start > end || end > body_end {
            return Err(malformed(ty, "tuple member out of range"));
        }
        values.push(read(m, &data[start..end], depth + 1)?);
        pos = end;
    }
    Ok(match ty {
        Type::DictEntry(..) => {
            let mut it = values.into_iter();
            match (it.next(), it.next()) {
                (Some(k), Some(v)) => Value::DictEntry(Box::new(k), Box::new(v)),
                _ => return Err(malformed(ty, "dict entry needs two members")),
            }
        }
        _ => Value::Tuple(values),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Type, Value, from_bytes, to_bytes};

    #[test]
    fn spec_vardict_example() {
        // Worked example 2.7 of the format spec.
        let v = Value::vardict(vec![
            ("version".into(), Value::str("1.0")),
            (
                "ostree.ref-binding".into(),
                Value::strv(&["os/x86_64/stable"]),
            ),
        ]);
        let bytes = to_bytes(&v);
        let expected = hex_lit(concat!(
            "76 65 72 73 69 6f 6e 00 31 2e 30 00 00 73 08 00",
            "6f 73 74 72 65 65 2e 72 65 66 2d 62 69 6e 64 69",
            "6e 67 00 00 00 00 00 00 6f 73 2f 78 38 36 5f 36",
            "34 2f 73 74 61 62 6c 65 00 11 00 61 73 13 0f 3e",
        ));
        assert_eq!(bytes.len(), 64);
        assert_eq!(bytes, expected);
        let back = from_bytes(&Type::parse("a{sv}").unwrap(), &bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn refuses_non_normal_padding() {
        let v = Value::vardict(vec![("a".into(), Value::U32(7))]);
        let mut bytes = to_bytes(&v);
        let ty = Type::parse("a{sv}").unwrap();
        assert!(from_bytes(&ty, &bytes).is_ok());
        // The key "a\0" is followed by padding before the 8-aligned variant.
        bytes[3] = 1;
        assert!(from_bytes(&ty, &bytes).is_err());
    }

    #[test]
    fn refuses_truncation_without_panicking() {
        let v = Value::vardict(vec![("k".into(), Value::strv(&["x", "yy"]))]);
        let bytes = to_bytes(&v);
        let ty = Type::parse("a{sv}").unwrap();
        for n in 0..bytes.len() {
            let _ = from_bytes(&ty, &bytes[..n]);
        }
    }

    fn hex_lit(s: &str) -> Vec<u8> {
        let clean: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        hex::decode(clean).unwrap()
    }
}
