//! Reads selected attributes off encoded spans and resources, for the policies that need
//! them. Only keys in the wanted list are decoded; string values stay views into the
//! request bytes. Spans carry `attributes` as field 9 (`KeyValue { key = 1, value = 2 }`,
//! `AnyValue { string_value = 1, bool_value = 2, int_value = 3, double_value = 4, … }`);
//! a resource header carries `resource = 1` → `Resource { attributes = 1 }`.

use bytes::Bytes;

/// An attribute value as the policies read it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    /// A string (a view into the request bytes).
    Str(Bytes),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// Any other kind (array, map, bytes): present, but neither string, bool nor number.
    Other,
}

impl AttrValue {
    /// The value as the Collector's `Str()` reads it: "" for non-strings.
    pub fn as_str(&self) -> &[u8] {
        match self {
            AttrValue::Str(b) => b,
            _ => b"",
        }
    }

    /// The value as the Collector's `Int()` reads it: 0 for non-integers.
    pub fn as_int(&self) -> i64 {
        match self {
            AttrValue::Int(i) => *i,
            _ => 0,
        }
    }

    /// The value as the Collector's `Bool()` reads it: false for non-booleans.
    pub fn as_bool(&self) -> bool {
        matches!(self, AttrValue::Bool(true))
    }
}

/// Calls `found(key index, value)` for every attribute of `span` (a span message's bytes,
/// a view into a shared buffer) whose key is in `wanted`. Malformed attributes are skipped:
/// the span was validated structurally by the scan already.
pub fn span_attributes(span: &Bytes, wanted: &[String], found: impl FnMut(u16, AttrValue)) {
    key_values(span, 9, wanted, found);
}

/// Same for a resource header (the fields of a `ResourceSpans` but its scopes).
pub fn resource_attributes(
    header: &Bytes,
    wanted: &[String],
    mut found: impl FnMut(u16, AttrValue),
) {
    let mut pos = 0;
    while let Some((field, wt, start, end)) = next_field(header, &mut pos) {
        if field == 1 && wt == 2 {
            key_values(&header.slice(start..end), 1, wanted, &mut found);
        }
    }
}

fn key_values(
    msg: &Bytes,
    attr_field: u32,
    wanted: &[String],
    mut found: impl FnMut(u16, AttrValue),
) {
    if wanted.is_empty() {
        return;
    }
    let mut pos = 0;
    while let Some((field, wt, start, end)) = next_field(msg, &mut pos) {
        if field != attr_field || wt != 2 {
            continue;
        }
        let kv = &msg[start..end];
        let (mut key, mut value) = (None, None);
        let mut p = 0;
        while let Some((f, w, s, e)) = next_field_slice(kv, &mut p) {
            match (f, w) {
                (1, 2) => key = Some(&kv[s..e]),
                (2, 2) => value = Some((start + s, start + e)),
                _ => {}
            }
        }
        let Some(key) = key else {
            continue;
        };
        let Some(idx) = wanted.iter().position(|w| w.as_bytes() == key) else {
            continue;
        };
        // A key without a value is present, with an empty value, as pdata reads it (an
        // empty `AnyValue`: `Int()` 0, `Bool()` false, `Str()` ""), not absent.
        let value = match value {
            Some((vs, ve)) => any_value(&msg.slice(vs..ve)),
            None => AttrValue::Other,
        };
        found(idx as u16, value);
    }
}

/// The number an encoded `AnyValue` holds (an `int_value` or a `double_value`), read as
/// the attribute reader reads it (the last value field wins; fields `AnyValue` does not have are
/// skipped); `None` for a string, a bool, an array, a map or bytes.
pub fn any_value_number(v: &[u8]) -> Option<f64> {
    let mut pos = 0;
    let mut out = None;
    while let Some((field, wt, start, end)) = next_field_slice(v, &mut pos) {
        out = match (field, wt) {
            (3, 0) => Some(read_varint(v, start).0 as i64 as f64),
            (4, 1) => v
                .get(start..end)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(f64::from_le_bytes),
            (1..=7, _) => None,
            _ => continue,
        };
    }
    out
}

fn any_value(v: &Bytes) -> AttrValue {
    let mut pos = 0;
    let mut out = AttrValue::Other;
    while let Some((field, wt, start, end)) = next_field(v, &mut pos) {
        out = match (field, wt) {
            (1, 2) => AttrValue::Str(v.slice(start..end)),
            (2, 0) => AttrValue::Bool(read_varint(v, start).0 != 0),
            (3, 0) => AttrValue::Int(read_varint(v, start).0 as i64),
            (4, 1) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&v[start..start + 8]);
                AttrValue::Double(f64::from_le_bytes(b))
            }
            // Arrays, maps, bytes: values no string or number policy matches.
            (5..=7, _) => AttrValue::Other,
            // A field AnyValue does not have is skipped, as protobuf decoders do: it does
            // not replace the value read before it.
            _ => continue,
        };
    }
    out
}

fn next_field(buf: &Bytes, pos: &mut usize) -> Option<(u32, u8, usize, usize)> {
    next_field_slice(buf, pos)
}

/// Reads the field at `*pos` of a protobuf message: `(field number, wire type, start, end)`
/// of its value (for a length-delimited field, the payload without its length; for a
/// group, its fields and its end tag), advancing `*pos` past it. `None` at the end or at
/// a malformed field.
#[inline]
pub fn next_field_slice(buf: &[u8], pos: &mut usize) -> Option<(u32, u8, usize, usize)> {
    if *pos >= buf.len() {
        return None;
    }
    let (key, n) = read_varint(buf, *pos);
    if n == 0 {
        return None;
    }
    *pos += n;
    let (field, wt) = ((key >> 3) as u32, (key & 7) as u8);
    let start = *pos;
    let end = match wt {
        0 => {
            let (_, n) = read_varint(buf, *pos);
            if n == 0 {
                return None;
            }
            *pos + n
        }
        1 => *pos + 8,
        5 => *pos + 4,
        // A group (an unknown field sent so): skipped whole, its range its fields and end.
        3 => {
            let end = super::reader::group_end(buf, *pos, field)?;
            *pos = end;
            return Some((field, wt, start, end));
        }
        2 => {
            let (len, n) = read_varint(buf, *pos);
            if n == 0 {
                return None;
            }
            let s = *pos + n;
            let e = s.checked_add(usize::try_from(len).ok()?)?;
            if e > buf.len() {
                return None;
            }
            *pos = e;
            return Some((field, wt, s, e));
        }
        _ => return None,
    };
    if end > buf.len() {
        return None;
    }
    *pos = end;
    Some((field, wt, start, end))
}

/// Reads a varint at `pos`: `(value, bytes read)`, `(0, 0)` when malformed or cut short.
/// Inlined with a one-byte fast path: tags and most lengths in a span are under 128. The
/// walks over bytes the scan already accepted use this rather than the scan's checked
/// [`super::reader`]: going through the reader cost the OTTL span walk 38% in an A/B
/// (docs/benchmarks.md).
#[inline]
pub fn read_varint(buf: &[u8], pos: usize) -> (u64, usize) {
    match buf.get(pos) {
        Some(&b) if b < 0x80 => (u64::from(b), 1),
        Some(_) => read_varint_long(buf, pos),
        None => (0, 0),
    }
}

/// [`read_varint`] of two bytes or more.
fn read_varint_long(buf: &[u8], pos: usize) -> (u64, usize) {
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&b) = buf.get(pos + i) else {
            return (0, 0);
        };
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (v, i + 1);
        }
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: an AnyValue of a string followed by a field AnyValue does not have, and
    /// one ending in an array. Guarantees: the unknown field is skipped, as decoders skip
    /// it (it replaced the string, so `keep == yes` missed a span the Collector matches);
    /// a known field still replaces the value (the last of a oneof wins).
    #[test]
    fn unknown_fields_of_a_value_are_skipped() {
        let string_then_unknown = Bytes::from_static(b"\x0a\x03yes\x78\x01");
        assert_eq!(
            any_value(&string_then_unknown),
            AttrValue::Str(Bytes::from_static(b"yes"))
        );
        let string_then_array = Bytes::from_static(b"\x0a\x03yes\x2a\x00");
        assert_eq!(any_value(&string_then_array), AttrValue::Other);
        // An unknown field sent as a group (field 15: start 0x7b, a varint, end 0x7c)
        // is skipped whole, and the fields after it are read.
        let string_then_group = Bytes::from_static(b"\x0a\x03yes\x7b\x08\x01\x7c");
        assert_eq!(
            any_value(&string_then_group),
            AttrValue::Str(Bytes::from_static(b"yes"))
        );
        let group_then_string = Bytes::from_static(b"\x7b\x08\x01\x7c\x0a\x02no");
        assert_eq!(
            any_value(&group_then_string),
            AttrValue::Str(Bytes::from_static(b"no"))
        );
        let mut pos = 0;
        let fields: Vec<_> = std::iter::from_fn(|| next_field_slice(&group_then_string, &mut pos))
            .map(|(f, wt, _, _)| (f, wt))
            .collect();
        assert_eq!(fields, [(15, 3), (1, 2)]);
    }
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span};
    use prost::Message;

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn wanted_span_and_resource_attributes_are_read() {
        let span = Span {
            name: "x".into(),
            attributes: vec![
                kv("http.route", any_value::Value::StringValue("/pay".into())),
                kv("retries", any_value::Value::IntValue(-3)),
                kv("cached", any_value::Value::BoolValue(true)),
                kv("ratio", any_value::Value::DoubleValue(0.5)),
                kv("ignored", any_value::Value::StringValue("x".into())),
            ],
            ..Default::default()
        };
        let wanted = [
            "cached".to_string(),
            "http.route".into(),
            "retries".into(),
            "ratio".into(),
            "service.name".into(),
        ];
        let mut got = Vec::new();
        span_attributes(&Bytes::from(span.encode_to_vec()), &wanted, |k, v| {
            got.push((k, v))
        });
        assert_eq!(
            got,
            vec![
                (1, AttrValue::Str(Bytes::from_static(b"/pay"))),
                (2, AttrValue::Int(-3)),
                (0, AttrValue::Bool(true)),
                (3, AttrValue::Double(0.5)),
            ]
        );
        // A resource header: the ResourceSpans fields except scope_spans.
        let rs = ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue("shop".into()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![],
            schema_url: "s".into(),
        };
        let mut got = Vec::new();
        resource_attributes(&Bytes::from(rs.encode_to_vec()), &wanted, |k, v| {
            got.push((k, v))
        });
        assert_eq!(got, vec![(4, AttrValue::Str(Bytes::from_static(b"shop")))]);
    }

    /// Scenario: a span whose attribute `k` has no value (`{"key":"k"}`), then `k` again
    /// with a value; another key with an empty `AnyValue`.
    /// Guarantees: both are present with an empty value (`Other`), as pdata reads them (the
    /// Collector's `numeric_attribute` then reads 0 and `boolean_attribute` false), and
    /// the value-less `k` is found first, as pdata's `Get` finds the first of a key.
    #[test]
    fn a_key_without_a_value_is_present_and_empty() {
        let span = Span {
            attributes: vec![
                KeyValue {
                    key: "k".into(),
                    ..Default::default()
                },
                kv("k", any_value::Value::IntValue(7)),
                KeyValue {
                    key: "e".into(),
                    value: Some(AnyValue { value: None }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut got = Vec::new();
        let wanted = ["k".to_string(), "e".into()];
        span_attributes(&Bytes::from(span.encode_to_vec()), &wanted, |k, v| {
            got.push((k, v))
        });
        assert_eq!(
            got,
            vec![
                (0, AttrValue::Other),
                (0, AttrValue::Int(7)),
                (1, AttrValue::Other)
            ]
        );
    }
}
