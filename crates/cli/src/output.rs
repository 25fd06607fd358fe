//! Printing data: human-readable text, or JSON with `--json`.

use serde::Serialize;
use trellis_store::gvariant::Value;

pub fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM:SS +0000`, the form `ostree log` prints.
pub fn format_time(ts: u64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] +0000");
    i64::try_from(ts)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| format!("@{ts}"))
}

/// Parse `--timestamp`: RFC 3339 (`2024-05-01T12:00:00Z`), or seconds since the epoch.
pub fn parse_time(s: &str) -> anyhow::Result<u64> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).map_err(|e| {
        anyhow::anyhow!("--timestamp {s:?} is not RFC 3339 (e.g. 2024-05-01T12:00:00Z) nor seconds since the epoch: {e}")
    })?;
    u64::try_from(t.unix_timestamp())
        .map_err(|_| anyhow::anyhow!("--timestamp {s:?} is before 1970"))
}

/// A GVariant value as JSON: strings, numbers, booleans, arrays and objects for `a{sv}`.
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Bool(b) => J::Bool(*b),
        Value::Byte(x) => J::from(*x),
        Value::I16(x) => J::from(*x),
        Value::U16(x) => J::from(*x),
        Value::I32(x) | Value::Handle(x) => J::from(*x),
        Value::U32(x) => J::from(*x),
        Value::I64(x) => J::from(*x),
        Value::U64(x) => J::from(*x),
        Value::Double(x) => J::from(*x),
        Value::Str(s) | Value::ObjectPath(s) | Value::Signature(s) => J::String(s.clone()),
        Value::Variant(inner) => value_to_json(inner),
        Value::Maybe(_, None) => J::Null,
        Value::Maybe(_, Some(x)) => value_to_json(x),
        Value::Bytes(b) => J::String(hex_or_text(b)),
        Value::Array(_, items) => {
            if let Some(entries) = v.vardict_entries() {
                J::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), value_to_json(v)))
                        .collect(),
                )
            } else {
                J::Array(items.iter().map(value_to_json).collect())
            }
        }
        Value::Tuple(ms) => J::Array(ms.iter().map(value_to_json).collect()),
        Value::DictEntry(k, v) => J::Array(vec![value_to_json(k), value_to_json(v)]),
    }
}

fn hex_or_text(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
