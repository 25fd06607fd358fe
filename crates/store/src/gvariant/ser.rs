use super::{Type, Value};

/// Serialize a value as a standalone GVariant (assumed to start 8-byte aligned).
pub fn to_bytes(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_into(v, &mut out);
    out
}

/// Append a value to `out`. Alignment is taken relative to the start of `out`, so `out`
/// must begin where the outermost value begins (or at a multiple of 8 before it).
pub fn write_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Bool(b) => out.push(u8::from(*b)),
        Value::Byte(b) => out.push(*b),
        Value::I16(x) => put(out, 2, &x.to_le_bytes()),
        Value::U16(x) => put(out, 2, &x.to_le_bytes()),
        Value::I32(x) | Value::Handle(x) => put(out, 4, &x.to_le_bytes()),
        Value::U32(x) => put(out, 4, &x.to_le_bytes()),
        Value::I64(x) => put(out, 8, &x.to_le_bytes()),
        Value::U64(x) => put(out, 8, &x.to_le_bytes()),
        Value::Double(x) => put(out, 8, &x.to_le_bytes()),
        Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
        Value::Variant(inner) => {
            pad(out, 8);
            write_into(inner, out);
            out.push(0);
            out.extend_from_slice(inner.type_of().to_string().as_bytes());
        }
        Value::Maybe(t, inner) => {
            if let Some(inner) = inner {
                pad(out, t.alignment());
                write_into(inner, out);
                if t.fixed_size().is_none() {
                    out.push(0);
                }
            }
        }
        Value::Bytes(b) => out.extend_from_slice(b),
        Value::Array(elem, items) => {
            pad(out, elem.alignment());
            let start = out.len();
            if elem.fixed_size().is_some() {
                for item in items {
                    write_into(item, out);
                }
            } else {
                let mut ends = Vec::with_capacity(items.len());
                for item in items {
                    pad(out, elem.alignment());
                    write_into(item, out);
                    ends.push(out.len() - start);
                }
                write_offsets(out, start, &ends);
            }
        }
        Value::Tuple(ms) => write_tuple(out, &v.type_of(), ms.iter()),
        Value::DictEntry(k, val) => {
            write_tuple(out, &v.type_of(), [k.as_ref(), val.as_ref()].into_iter())
        }
    }
}

fn write_tuple<'a>(
    out: &mut Vec<u8>,
    ty: &Type,
    members: impl ExactSizeIterator<Item = &'a Value>,
) {
    let align = ty.alignment();
    pad(out, align);
    let start = out.len();
    let n = members.len();
    if n == 0 {
        out.push(0);
        return;
    }
    let mut ends = Vec::new();
    for (i, m) in members.enumerate() {
        let mt = m.type_of();
        pad(out, mt.alignment());
        write_into(m, out);
        if mt.fixed_size().is_none() && i + 1 < n {
            ends.push(out.len() - start);
        }
    }
    if ty.fixed_size().is_some() {
        pad(out, align);
    } else {
        ends.reverse();
        write_offsets(out, start, &ends);
    }
}

fn put(out: &mut Vec<u8>, align: usize, bytes: &[u8]) {
    pad(out, align);
    out.extend_from_slice(bytes);
}

fn pad(out: &mut Vec<u8>, align: usize) {
    let target = out.len().next_multiple_of(align);
    out.resize(target, 0);
}

/// The smallest framing-offset width for a container whose body is `body` bytes long and
/// which carries `n` offsets.
pub(super) fn offset_width(body: usize, n: usize) -> usize {
    for (w, max) in [(1usize, 0xffu64), (2, 0xffff), (4, 0xffff_ffff)] {
        if (body + n * w) as u64 <= max {
            return w;
        }
    }
    8
}

fn write_offsets(out: &mut Vec<u8>, start: usize, ends: &[usize]) {
    let w = offset_width(out.len() - start, ends.len());
    for &e in ends {
        out.extend_from_slice(&(e as u64).to_le_bytes()[..w]);
    }
}
