//! OTLP/JSON trace requests transcoded to protobuf as they are parsed.
//!
//! Data comes from the OTLP/HTTP receiver (`Content-Type: application/json`, browser SDKs
//! and some agents) and from `tailgate-gateway explain`; it goes on as the protobuf body
//! the scan and the rest of the pipeline read.
//!
//! Decoding into the generated structs first cost memory by the object, not by the byte:
//! every `{}` of a span list became a 256-byte `Span`, so a 16 MiB body (20 KB gzipped)
//! held about 1.4 GB while it was decoded, none of it counted against any limit. Here each
//! JSON object is written straight out as its protobuf encoding, which is no larger than
//! its JSON (field names go, ids and numbers shrink; the tests check the worst shapes), so
//! what a request holds stays within a small multiple of its body however its objects
//! are shaped.
//!
//! The mapping is protobuf's JSON mapping as OTLP specifies it: field names in
//! lowerCamelCase (the `.proto` names are accepted too), trace and span ids as hex, `bytes`
//! values as base64, 64-bit integers as strings or numbers, enums as integers or names,
//! `null` as absent, and unknown fields ignored. Scalars at their default value are left
//! out, as protobuf encoders do (the members of `AnyValue`'s oneof are kept: they say which
//! kind the value is), so a request written by the generated code transcodes to the fields
//! it encodes (in the JSON's order).

use std::fmt;

use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Protobuf messages of an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    /// `Resource.entity_refs` (development in OTLP, kept as the protobuf path keeps it).
    EntityRef,
}

/// How a field's JSON value is read and encoded.
#[derive(Debug, Clone, Copy)]
enum Ty {
    One(Msg),
    List(Msg),
    Str,
    /// A repeated string: each element written, empty ones too.
    Strs,
    /// Trace and span ids: hex.
    Id,
    /// `bytes` values: base64.
    Base64,
    /// An unsigned 32-bit varint (counts), as a number or a decimal string.
    Varint,
    /// A signed 64-bit varint (`intValue`), in two's complement as protobuf writes it.
    Int64,
    /// An enum: an integer or one of these names.
    Enum(&'static [&'static str]),
    Fixed64,
    Fixed32,
    Double,
    Bool,
}

/// A known field: its number, type, and whether it is a oneof member (kept at default).
#[derive(Debug, Clone, Copy)]
struct Field {
    num: u32,
    ty: Ty,
    oneof: bool,
    /// Its JSON name (lowerCamelCase), for errors.
    name: &'static str,
}

const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// The field `key` names in `msg` (lowerCamelCase or the `.proto` name); `None` for an
/// unknown one, which is skipped.
fn field(msg: Msg, key: &str) -> Option<Field> {
    use Ty::*;
    let f = |num, ty, name| {
        Some(Field {
            num,
            ty,
            oneof: false,
            name,
        })
    };
    match (msg, key) {
        (Msg::Request, "resourceSpans" | "resource_spans") => {
            f(1, List(Msg::ResourceSpans), "resourceSpans")
        }
        (Msg::ResourceSpans, "resource") => f(1, Ty::One(Msg::Resource), "resource"),
        (Msg::ResourceSpans, "scopeSpans" | "scope_spans") => {
            f(2, List(Msg::ScopeSpans), "scopeSpans")
        }
        // OTLP's names before v0.15: written as their protobuf fields, and read as the scan
        // reads those (only when a resource has no `scopeSpans`). The Collector's current
        // JSON reader skips them (older ones read them); kept here rather than lose the
        // spans (docs/operations.md).
        (Msg::ResourceSpans, "instrumentationLibrarySpans" | "instrumentation_library_spans") => {
            f(1000, List(Msg::ScopeSpans), "instrumentationLibrarySpans")
        }
        (Msg::ScopeSpans, "instrumentationLibrary" | "instrumentation_library") => {
            f(1, Ty::One(Msg::Scope), "instrumentationLibrary")
        }
        (Msg::ResourceSpans | Msg::ScopeSpans, "schemaUrl" | "schema_url") => {
            f(3, Str, "schemaUrl")
        }
        (Msg::Resource, "attributes") => f(1, List(Msg::KeyValue), "attributes"),
        (Msg::Resource, "droppedAttributesCount" | "dropped_attributes_count") => {
            f(2, Varint, "droppedAttributesCount")
        }
        (Msg::Resource, "entityRefs" | "entity_refs") => f(3, List(Msg::EntityRef), "entityRefs"),
        (Msg::EntityRef, "schemaUrl" | "schema_url") => f(1, Str, "schemaUrl"),
        (Msg::EntityRef, "type") => f(2, Str, "type"),
        (Msg::EntityRef, "idKeys" | "id_keys") => f(3, Strs, "idKeys"),
        (Msg::EntityRef, "descriptionKeys" | "description_keys") => f(4, Strs, "descriptionKeys"),
        (Msg::ScopeSpans, "scope") => f(1, Ty::One(Msg::Scope), "scope"),
        (Msg::ScopeSpans, "spans") => f(2, List(Msg::Span), "spans"),
        (Msg::Scope, "name") => f(1, Str, "name"),
        (Msg::Scope, "version") => f(2, Str, "version"),
        (Msg::Scope, "attributes") => f(3, List(Msg::KeyValue), "attributes"),
        (Msg::Scope, "droppedAttributesCount" | "dropped_attributes_count") => {
            f(4, Varint, "droppedAttributesCount")
        }
        (Msg::Span, "traceId" | "trace_id") => f(1, Id, "traceId"),
        (Msg::Span, "spanId" | "span_id") => f(2, Id, "spanId"),
        (Msg::Span, "traceState" | "trace_state") => f(3, Str, "traceState"),
        (Msg::Span, "parentSpanId" | "parent_span_id") => f(4, Id, "parentSpanId"),
        (Msg::Span, "flags") => f(16, Fixed32, "flags"),
        (Msg::Span, "name") => f(5, Str, "name"),
        (Msg::Span, "kind") => f(6, Enum(SPAN_KINDS), "kind"),
        (Msg::Span, "startTimeUnixNano" | "start_time_unix_nano") => {
            f(7, Fixed64, "startTimeUnixNano")
        }
        (Msg::Span, "endTimeUnixNano" | "end_time_unix_nano") => f(8, Fixed64, "endTimeUnixNano"),
        (Msg::Span, "attributes") => f(9, List(Msg::KeyValue), "attributes"),
        (Msg::Span, "droppedAttributesCount" | "dropped_attributes_count") => {
            f(10, Varint, "droppedAttributesCount")
        }
        (Msg::Span, "events") => f(11, List(Msg::Event), "events"),
        (Msg::Span, "droppedEventsCount" | "dropped_events_count") => {
            f(12, Varint, "droppedEventsCount")
        }
        (Msg::Span, "links") => f(13, List(Msg::Link), "links"),
        (Msg::Span, "droppedLinksCount" | "dropped_links_count") => {
            f(14, Varint, "droppedLinksCount")
        }
        (Msg::Span, "status") => f(15, Ty::One(Msg::Status), "status"),
        (Msg::Event, "timeUnixNano" | "time_unix_nano") => f(1, Fixed64, "timeUnixNano"),
        (Msg::Event, "name") => f(2, Str, "name"),
        (Msg::Event, "attributes") => f(3, List(Msg::KeyValue), "attributes"),
        (Msg::Event, "droppedAttributesCount" | "dropped_attributes_count") => {
            f(4, Varint, "droppedAttributesCount")
        }
        (Msg::Link, "traceId" | "trace_id") => f(1, Id, "traceId"),
        (Msg::Link, "spanId" | "span_id") => f(2, Id, "spanId"),
        (Msg::Link, "traceState" | "trace_state") => f(3, Str, "traceState"),
        (Msg::Link, "attributes") => f(4, List(Msg::KeyValue), "attributes"),
        (Msg::Link, "droppedAttributesCount" | "dropped_attributes_count") => {
            f(5, Varint, "droppedAttributesCount")
        }
        (Msg::Link, "flags") => f(6, Fixed32, "flags"),
        (Msg::Status, "message") => f(2, Str, "message"),
        (Msg::Status, "code") => f(3, Enum(STATUS_CODES), "code"),
        (Msg::KeyValue, "key") => f(1, Str, "key"),
        (Msg::KeyValue, "value") => f(2, Ty::One(Msg::AnyValue), "value"),
        (Msg::ArrayValue, "values") => f(1, List(Msg::AnyValue), "values"),
        (Msg::KeyValueList, "values") => f(1, List(Msg::KeyValue), "values"),
        (Msg::AnyValue, key) => {
            let (num, ty, name) = match key {
                "stringValue" | "string_value" => (1, Str, "stringValue"),
                "boolValue" | "bool_value" => (2, Bool, "boolValue"),
                "intValue" | "int_value" => (3, Int64, "intValue"),
                "doubleValue" | "double_value" => (4, Double, "doubleValue"),
                "arrayValue" | "array_value" => (5, Ty::One(Msg::ArrayValue), "arrayValue"),
                "kvlistValue" | "kvlist_value" => (6, Ty::One(Msg::KeyValueList), "kvlistValue"),
                "bytesValue" | "bytes_value" => (7, Base64, "bytesValue"),
                _ => return None,
            };
            Some(Field {
                num,
                ty,
                oneof: true,
                name,
            })
        }
        _ => None,
    }
}

/// Converts an OTLP/JSON `ExportTraceServiceRequest` to its protobuf encoding.
///
/// A lone surrogate escape (`\ud83d` not followed by its low half, or a low half alone)
/// is read as U+FFFD, as the Collector's reader (json-iterator) reads it: JavaScript SDKs
/// send them, since their attribute length limit cuts strings by UTF-16 unit and can cut
/// an emoji in two, and `JSON.stringify` escapes the half left. serde_json refuses them,
/// so a body it refuses for a syntax error is read again with those escapes replaced:
/// the common body pays nothing, and one with such an escape is copied once (see
/// [`to_protobuf_in_place`] to patch a body that is the caller's to change).
pub fn to_protobuf(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    transcode(body).or_else(|e| {
        if e.is_syntax() && next_lone_surrogate(body, 0).is_some() {
            let mut fixed = body.to_vec();
            replace_lone_surrogates(&mut fixed);
            transcode(&fixed)
        } else {
            Err(e)
        }
    })
}

/// As [`to_protobuf`], patching the lone surrogate escapes of `body` in place (each is
/// six bytes, as `\ufffd` is) when it must be read again, so that no copy is made.
pub fn to_protobuf_in_place(body: &mut [u8]) -> Result<Vec<u8>, serde_json::Error> {
    transcode(body).or_else(|e| {
        if e.is_syntax() && replace_lone_surrogates(body) {
            transcode(body)
        } else {
            Err(e)
        }
    })
}

/// Replaces every lone surrogate escape in `json`'s strings with `\ufffd`; true if any
/// was.
fn replace_lone_surrogates(json: &mut [u8]) -> bool {
    let mut from = 0;
    let mut any = false;
    while let Some(lone) = next_lone_surrogate(json, from) {
        json[lone.at..lone.at + 6].copy_from_slice(br"\ufffd");
        if lone.and_next {
            json[lone.at + 6..lone.at + 12].copy_from_slice(br"\ufffd");
        }
        any = true;
        from = lone.resume;
    }
    any
}

/// A lone surrogate escape found by [`next_lone_surrogate`].
#[derive(Debug, PartialEq)]
struct Lone {
    /// Where its backslash is.
    at: usize,
    /// Whether the escape right after it, which json-iterator reads as its would-be other
    /// half, is a surrogate too, and so also U+FFFD there.
    and_next: bool,
    /// Where to look for the next one: past the escape, or past both when one follows.
    resume: usize,
}

/// The first lone surrogate escape at or after `from`, as json-iterator (the Collector's
/// reader) finds them: after a surrogate it reads the next `\u` escape as the other half;
/// a high half and a low half make a character, anything else makes U+FFFD for the first
/// and, when the second is a surrogate, for it too (so in `\ud83d\ud83d\ude00` all three
/// are). `from` is 0 or a [`Lone::resume`], so it is never inside an escape. Malformed
/// escapes are left for serde_json to report.
fn next_lone_surrogate(json: &[u8], from: usize) -> Option<Lone> {
    let unit = |at: usize| -> Option<u16> {
        let digits = json.get(at..at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        u16::from_str_radix(text, 16).ok()
    };
    let escape_at = |at: usize| json.get(at) == Some(&b'\\') && json.get(at + 1) == Some(&b'u');
    let surrogate = |u: u16| (0xD800..=0xDFFF).contains(&u);
    // Whether `from` is inside a string: the quotes before it, less escaped ones. Only the
    // first call scans from 0; later ones resume inside the string they left.
    let mut in_string = from > 0;
    let mut i = from;
    while i < json.len() {
        match json[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            b'\\' if in_string => {
                let Some(u) = unit(i + 2).filter(|_| escape_at(i)) else {
                    i += 2;
                    continue;
                };
                if !surrogate(u) {
                    i += 6;
                    continue;
                }
                let next = unit(i + 8).filter(|_| escape_at(i + 6));
                match next {
                    Some(l) if (0xD800..=0xDBFF).contains(&u) && (0xDC00..=0xDFFF).contains(&l) => {
                        i += 12;
                    }
                    Some(n) => {
                        return Some(Lone {
                            at: i,
                            and_next: surrogate(n),
                            resume: i + 12,
                        })
                    }
                    None => {
                        return Some(Lone {
                            at: i,
                            and_next: false,
                            resume: i + 6,
                        })
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn transcode(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut out = Vec::with_capacity(body.len() / 2);
    Message {
        msg: Msg::Request,
        out: &mut out,
    }
    .deserialize(&mut de)?;
    de.end()?;
    // The guess above is for JSON that is mostly span data; a body of ignored fields
    // (padding, unknown keys) converts to far less, and the request's buffered spans would
    // keep the whole guess alive, uncounted. Give back what was not used.
    out.shrink_to_fit();
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, num: u32, wire_type: u8) {
    put_varint(out, u64::from(num) << 3 | u64::from(wire_type));
}

fn put_len_delimited(out: &mut Vec<u8>, num: u32, bytes: &[u8]) {
    put_tag(out, num, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The fields of one JSON object, written to `out` as one message's fields.
struct Message<'a> {
    msg: Msg,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Message<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Message<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an OTLP {:?} object", self.msg)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(known) = map.next_key_seed(Key(self.msg))? {
            match known {
                Some(field) => map.next_value_seed(Value {
                    field,
                    out: &mut *self.out,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A key of a message's object, read as the field it names (`None`: unknown).
struct Key(Msg);

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Option<Field>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Field>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = Option<Field>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<Field>, E> {
        Ok(field(self.0, key))
    }
}

/// One field's value, written to `out` with its tag.
struct Value<'a> {
    field: Field,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Value<'_> {
    /// Writes a scalar, unless it is at its default outside a oneof.
    fn scalar<E: de::Error>(self, s: Scalar<'_>) -> Result<(), E> {
        let Field {
            num,
            ty,
            oneof,
            name,
        } = self.field;
        let out = self.out;
        let bad = |what: &str| Err(E::custom(format_args!("field \"{name}\": {what}")));
        match (ty, s) {
            (Ty::Str, Scalar::Str(v)) => {
                if oneof || !v.is_empty() {
                    put_len_delimited(out, num, v.as_bytes());
                }
            }
            (Ty::Id, Scalar::Str(v)) => {
                match hex(v) {
                    Some(bytes) if bytes.is_empty() => {}
                    Some(bytes) => put_len_delimited(out, num, &bytes),
                    // Not hex: written as a one-byte id, a length no id field has, so the
                    // scan rejects this span alone (partial success, "… is not 8 bytes"), as
                    // it does a hex id of the wrong length, rather than the whole request.
                    None => put_len_delimited(out, num, &[0]),
                }
            }
            (Ty::Base64, Scalar::Str(v)) => {
                let e = &base64::engine::general_purpose::STANDARD;
                let url = &base64::engine::general_purpose::URL_SAFE;
                let trimmed = v.trim_end_matches('=');
                let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(trimmed)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
                    .or_else(|_| e.decode(v))
                    .or_else(|_| url.decode(v));
                let Ok(bytes) = decoded else {
                    return bad("a bytes value must be base64");
                };
                if oneof || !bytes.is_empty() {
                    put_len_delimited(out, num, &bytes);
                }
            }
            (Ty::Varint | Ty::Int64 | Ty::Enum(_), s) => {
                let v = match (ty, s) {
                    (Ty::Enum(names), Scalar::Str(name)) if names.contains(&name) => {
                        names.iter().position(|n| *n == name).unwrap_or(0) as u64
                    }
                    (Ty::Int64, s) => match s.signed() {
                        Some(v) => v as u64,
                        None => return bad("expected a 64-bit integer"),
                    },
                    // An enum is an int32: a negative one (which the protobuf receivers
                    // take, and the `debug` exporter writes back) is a 10-byte varint, as
                    // protobuf encodes it.
                    (Ty::Enum(_), s) => match s.signed().filter(|v| i32::try_from(*v).is_ok()) {
                        Some(v) => v as u64,
                        None => return bad("expected a 32-bit integer or an enum name"),
                    },
                    // Counts are uint32; enums are read up to int32's maximum.
                    (_, s) => match s.unsigned().filter(|v| *v <= u64::from(u32::MAX)) {
                        Some(v) if !matches!(ty, Ty::Enum(_)) || v <= i32::MAX as u64 => v,
                        _ => return bad("expected a 32-bit unsigned integer"),
                    },
                };
                if oneof || v != 0 {
                    put_tag(out, num, 0);
                    put_varint(out, v);
                }
            }
            (Ty::Fixed64, s) => {
                let Some(v) = s.unsigned() else {
                    return bad("expected a 64-bit unsigned integer");
                };
                if oneof || v != 0 {
                    put_tag(out, num, 1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            (Ty::Fixed32, s) => {
                let Some(v) = s.unsigned().and_then(|v| u32::try_from(v).ok()) else {
                    return bad("expected a 32-bit unsigned integer");
                };
                if oneof || v != 0 {
                    put_tag(out, num, 5);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            (Ty::Double, s) => {
                let Some(v) = s.double() else {
                    return bad("expected a number");
                };
                if oneof || v.to_bits() != 0 {
                    put_tag(out, num, 1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
            (Ty::Bool, Scalar::Bool(v)) => {
                if oneof || v {
                    put_tag(out, num, 0);
                    out.push(u8::from(v));
                }
            }
            _ => return bad("unexpected kind of value"),
        }
        Ok(())
    }
}

/// A JSON scalar.
enum Scalar<'s> {
    Str(&'s str),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Scalar<'_> {
    /// As an unsigned field reads it: a number or decimal string of 0 or more; a float
    /// (`1.7e18`, as some encoders write large numbers) only when it is a whole number in
    /// range.
    fn unsigned(&self) -> Option<u64> {
        match *self {
            Scalar::U64(v) => Some(v),
            Scalar::F64(v) if v.fract() == 0.0 && (0.0..1.8446744073709552e19).contains(&v) => {
                Some(v as u64)
            }
            Scalar::Str(s) => s.parse::<u64>().ok(),
            _ => None,
        }
    }

    /// As an `int64` field reads it: a number or decimal string in range.
    fn signed(&self) -> Option<i64> {
        match *self {
            Scalar::U64(v) => i64::try_from(v).ok(),
            Scalar::I64(v) => Some(v),
            Scalar::F64(v)
                if v.fract() == 0.0
                    && (-9.223372036854776e18..9.223372036854776e18).contains(&v) =>
            {
                Some(v as i64)
            }
            Scalar::Str(s) => s.parse::<i64>().ok(),
            _ => None,
        }
    }

    fn double(&self) -> Option<f64> {
        match *self {
            Scalar::U64(v) => Some(v as f64),
            Scalar::I64(v) => Some(v as f64),
            Scalar::F64(v) => Some(v),
            Scalar::Str("NaN") => Some(f64::NAN),
            Scalar::Str("Infinity") => Some(f64::INFINITY),
            Scalar::Str("-Infinity") => Some(f64::NEG_INFINITY),
            Scalar::Str(s) => s.parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

/// Lower- or upper-case hex to bytes.
fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of field \"{}\"", self.field.name)
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.scalar(Scalar::Str(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.scalar(Scalar::U64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.scalar(Scalar::I64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.scalar(Scalar::F64(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.scalar(Scalar::Bool(v))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let Ty::One(msg) = self.field.ty else {
            return Err(de::Error::custom(format_args!(
                "field \"{}\": unexpected object",
                self.field.name
            )));
        };
        let mut inner = Vec::new();
        Message {
            msg,
            out: &mut inner,
        }
        .visit_map(map)?;
        put_len_delimited(self.out, self.field.num, &inner);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Ty::Strs = self.field.ty {
            while let Some(s) = seq.next_element::<String>()? {
                put_len_delimited(self.out, self.field.num, s.as_bytes());
            }
            return Ok(());
        }
        let Ty::List(msg) = self.field.ty else {
            return Err(de::Error::custom(format_args!(
                "field \"{}\": unexpected list",
                self.field.name
            )));
        };
        let mut inner = Vec::new();
        while seq
            .next_element_seed(Element {
                msg,
                out: &mut inner,
            })?
            .is_some()
        {
            put_len_delimited(self.out, self.field.num, &inner);
            inner.clear();
        }
        Ok(())
    }
}

/// One message of a list (`null` is not one).
struct Element<'a> {
    msg: Msg,
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(Message {
            msg: self.msg,
            out: self.out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message as _;

    /// Scenario: an OTLP/JSON request with a byte that is not UTF-8 inside a span's name.
    /// Guarantees: the whole request is refused (JSON is UTF-8), as docs/operations.md says.
    #[test]
    fn json_that_is_not_utf8_is_refused_whole() {
        let mut json = br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"aXb"}]}]}]}"#.to_vec();
        let at = json.windows(3).position(|w| w == b"aXb").unwrap();
        json[at + 1] = 0xff;
        assert!(to_protobuf(&json).is_err());
    }

    /// Scenario: an OTLP/JSON request as senders before OTLP v0.15 wrote it
    /// (`instrumentationLibrarySpans`, `instrumentationLibrary`).
    /// Guarantees: its spans are read, under their library as the scope.
    #[test]
    fn deprecated_json_names_are_read() {
        let json = r#"{"resourceSpans":[{"instrumentationLibrarySpans":[{"instrumentationLibrary":{"name":"old-lib"},"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"a"}]}]}]}"#;
        let body = to_protobuf(json.as_bytes()).unwrap();
        let mut scan = crate::wire::Scan::default();
        scan.scan(&body).unwrap();
        assert_eq!(scan.spans.len(), 1);
        let scope = scan.scope_header(0);
        assert!(scope.windows(7).any(|w| w == b"old-lib"), "{scope:?}");
    }

    /// Scenario: a resource with entity references in OTLP/JSON (a black-box check found
    /// them dropped, where the protobuf path and the Collector keep them).
    /// Guarantees: they convert to `Resource.entity_refs` (field 3) with every key.
    #[test]
    fn entity_refs_are_kept() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct EntityRef {
            #[prost(string, tag = "1")]
            schema_url: String,
            #[prost(string, tag = "2")]
            r#type: String,
            #[prost(string, repeated, tag = "3")]
            id_keys: Vec<String>,
            #[prost(string, repeated, tag = "4")]
            description_keys: Vec<String>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct Resource {
            #[prost(message, repeated, tag = "3")]
            entity_refs: Vec<EntityRef>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct ResourceSpans {
            #[prost(message, optional, tag = "1")]
            resource: Option<Resource>,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct Request {
            #[prost(message, repeated, tag = "1")]
            resource_spans: Vec<ResourceSpans>,
        }
        let json = r#"{"resourceSpans":[{"resource":{"entityRefs":[{"schemaUrl":"s","type":"service","idKeys":["service.name","service.namespace"],"description_keys":["", "d"]}]}}]}"#;
        let body = to_protobuf(json.as_bytes()).unwrap();
        let req = Request::decode(body.as_slice()).unwrap();
        let refs = &req.resource_spans[0].resource.as_ref().unwrap().entity_refs;
        assert_eq!(
            refs,
            &[EntityRef {
                schema_url: "s".into(),
                r#type: "service".into(),
                id_keys: vec!["service.name".into(), "service.namespace".into()],
                description_keys: vec!["".into(), "d".into()],
            }]
        );
        assert!(to_protobuf(
            br#"{"resourceSpans":[{"resource":{"entityRefs":[{"idKeys":[1]}]}}]}"#
        )
        .is_err());
    }

    /// Scenario: double attribute values whose shortest decimal form needs every digit.
    /// Guarantees: each converts to exactly the double it names (as protobuf carries it),
    /// not to a neighbour one step off.
    #[test]
    fn doubles_convert_exactly() {
        for d in [
            1.5e-300_f64,
            0.1,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            9007199254740993.0,
            5e-324,
        ] {
            let body = format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"a","attributes":[{{"key":"d","value":{{"doubleValue":{d:e}}}}}]}}]}}]}}]}}"#
            );
            let out = to_protobuf(body.as_bytes()).unwrap();
            let req = ExportTraceServiceRequest::decode(&out[..]).unwrap();
            let value = &req.resource_spans[0].scope_spans[0].spans[0].attributes[0].value;
            let got = match value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::DoubleValue(x)) => *x,
                other => panic!("{other:?}"),
            };
            assert_eq!(got.to_bits(), d.to_bits(), "{d:e} came back as {got:e}");
        }
    }

    /// Scenario: a request of one small span and a megabyte of an ignored field.
    /// Guarantees: the protobuf holds no more memory than its length (buffered spans keep
    /// it alive, and only its length is counted against the limits).
    #[test]
    fn ignored_bulk_leaves_no_spare_capacity() {
        let body = format!(
            r#"{{"padding":"{}","resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"a"}}]}}]}}]}}"#,
            "x".repeat(1 << 20)
        );
        let out = to_protobuf(body.as_bytes()).unwrap();
        assert!(out.len() < 100, "{}", out.len());
        assert!(out.capacity() < 1024, "{}", out.capacity());
    }

    /// Scenario: requests written by the generated code (every span field, events, links,
    /// status, attribute kinds incl. arrays, doubles, bytes and negative ints) as JSON.
    /// Guarantees: the transcoder writes every field the generated code encodes, and no
    /// other: the bytes decode to the same request and are as long.
    #[test]
    fn generated_json_transcodes_to_the_same_bytes() {
        for seed in 0..20 {
            let req = crate::test_util::every_field(seed);
            let json = serde_json::to_vec(&req).unwrap();
            let out = to_protobuf(&json).unwrap();
            // Field for field what the generated code writes (in JSON's key order, where
            // prost writes `flags` last), so exactly as long.
            assert_eq!(out.len(), req.encode_to_vec().len(), "seed {seed}");
            assert_eq!(
                ExportTraceServiceRequest::decode(&out[..]).unwrap(),
                req,
                "seed {seed}"
            );
        }
    }

    /// Scenario: 200,000 empty spans in 600 KB of JSON (the finding: 5.5 million of them,
    /// 16 MB, held about 1.4 GB while decoded into structs).
    /// Guarantees: the protobuf written is no larger than the JSON, and it decodes to as
    /// many spans.
    #[test]
    fn empty_objects_cost_their_bytes_not_a_struct_each() {
        let n = 200_000usize;
        let mut json = String::from(r#"{"resourceSpans":[{"scopeSpans":[{"spans":["#);
        json.push_str(&"{},".repeat(n - 1));
        json.push_str("{}]}]}]}");
        let out = to_protobuf(json.as_bytes()).unwrap();
        assert!(out.len() <= json.len(), "{} > {}", out.len(), json.len());
        assert!(out.capacity() <= json.len());
        let req = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), n);
    }

    /// Scenario: spans of the smallest JSON for each kind of field (a number where
    /// protobuf writes ten bytes, an empty object, an empty oneof member...), 1,000 each.
    /// Guarantees: the protobuf is no larger than the JSON for any of them.
    #[test]
    fn no_field_shape_grows_past_its_json() {
        for span in [
            r#"{"kind":2147483647}"#,
            r#"{"flags":4294967295}"#,
            r#"{"startTimeUnixNano":18446744073709551615}"#,
            r#"{"droppedAttributesCount":4294967295}"#,
            r#"{"status":{"code":2}}"#,
            r#"{"events":[{}]}"#,
            r#"{"links":[{}]}"#,
            r#"{"attributes":[{}]}"#,
            r#"{"attributes":[{"value":{"intValue":-1}}]}"#,
            r#"{"attributes":[{"value":{"doubleValue":1}}]}"#,
            r#"{"attributes":[{"value":{"boolValue":false}}]}"#,
            r#"{"attributes":[{"value":{"stringValue":""}}]}"#,
            r#"{"attributes":[{"value":{"bytesValue":""}}]}"#,
            r#"{"attributes":[{"value":{"arrayValue":{"values":[{}]}}}]}"#,
            r#"{"attributes":[{"value":{"kvlistValue":{"values":[{}]}}}]}"#,
        ] {
            let spans = vec![span; 1_000].join(",");
            let json = format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#);
            let out = to_protobuf(json.as_bytes()).unwrap();
            assert!(
                out.len() <= json.len(),
                "{span}: {} > {}",
                out.len(),
                json.len()
            );
        }
    }

    /// Scenario: the spec's forms that the generated structs do not all take: `.proto`
    /// field names, enum names, numbers as strings and strings as numbers, `null`, unknown
    /// fields (inside an attribute value too), URL-safe base64, upper-case hex.
    /// Guarantees: each reads as protobuf's JSON mapping says.
    #[test]
    fn the_spec_forms_are_read() {
        let json = r#"{"resource_spans":[{"scopeSpans":[{"spans":[{
            "traceId":"0102030405060708090A0B0C0D0E0F10","span_id":"0102030405060708",
            "kind":"SPAN_KIND_SERVER","startTimeUnixNano":1.7e18,"endTimeUnixNano":"7",
            "status":{"code":"STATUS_CODE_ERROR","unknown":[1,{"a":2}]},"parentSpanId":null,
            "attributes":[{"key":"k","value":{"stringValue":"x","foo":1}},
                          {"key":"b","value":{"bytesValue":"_-8"}},
                          {"key":"i","value":{"intValue":7.0}},
                          {"key":"n","value":{"doubleValue":"NaN"}}],
            "somethingNew":{"x":[]}}]}]}]}"#;
        let out = to_protobuf(json.as_bytes()).unwrap();
        let req = ExportTraceServiceRequest::decode(&out[..]).unwrap();
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_id, (1..=16).collect::<Vec<u8>>());
        assert_eq!(s.span_id, (1..=8).collect::<Vec<u8>>());
        assert_eq!(
            (s.kind, s.start_time_unix_nano, s.end_time_unix_nano),
            (2, 1_700_000_000_000_000_000, 7)
        );
        assert_eq!(s.status.as_ref().unwrap().code, 2);
        let val = |i: usize| {
            s.attributes[i]
                .value
                .as_ref()
                .unwrap()
                .value
                .clone()
                .unwrap()
        };
        assert_eq!(val(0), any_value::Value::StringValue("x".into()));
        assert_eq!(val(1), any_value::Value::BytesValue(vec![0xff, 0xef]));
        assert_eq!(val(2), any_value::Value::IntValue(7));
        assert!(matches!(val(3), any_value::Value::DoubleValue(d) if d.is_nan()));
    }

    /// Scenario: ids that are not hex (odd length, a non-hex digit, a non-ASCII character)
    /// in each id field of a span and a link.
    /// Guarantees: the request transcodes; each such id becomes a one-byte id, which the
    /// scan rejects with its span alone (see receive.rs for the partial success).
    #[test]
    fn an_id_that_is_not_hex_becomes_an_id_of_no_valid_length() {
        for bad in ["xyz", "zz", "0102030405060708090a0b0c0d0e0f1g", "é1"] {
            for field in ["traceId", "spanId", "parentSpanId"] {
                let json = format!(
                    r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"{field}":"{bad}","name":"a"}}]}}]}}]}}"#
                );
                let req =
                    ExportTraceServiceRequest::decode(&to_protobuf(json.as_bytes()).unwrap()[..])
                        .unwrap();
                let span = &req.resource_spans[0].scope_spans[0].spans[0];
                let id = match field {
                    "traceId" => &span.trace_id,
                    "spanId" => &span.span_id,
                    _ => &span.parent_span_id,
                };
                assert_eq!(id, &vec![0u8], "{json}");
            }
            let json = format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"links":[{{"traceId":"{bad}","spanId":"{bad}"}}]}}]}}]}}]}}"#
            );
            let req = ExportTraceServiceRequest::decode(&to_protobuf(json.as_bytes()).unwrap()[..])
                .unwrap();
            let link = &req.resource_spans[0].scope_spans[0].spans[0].links[0];
            assert_eq!((&link.trace_id, &link.span_id), (&vec![0u8], &vec![0u8]));
        }
        // Beside a good span, in the scan both receivers run next: one rejected, one kept.
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"01020304050607zz","name":"bad"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"good"}]}]}]}"#;
        let body = to_protobuf(json.as_bytes()).unwrap();
        let mut scan = crate::wire::scan::Scan::default();
        let scanned = scan.scan_request(&body).unwrap();
        assert_eq!((scanned.valid, scanned.rejected), (1, 1));
        assert!(scanned.message.contains("span_id"), "{}", scanned.message);
    }

    /// Scenario: a span attribute nested 41 arrays or 30 maps deep (what
    /// docs/operations.md names as refused whole over OTLP/JSON).
    /// Guarantees: the whole request is refused, naming the JSON reader's reason, where
    /// over protobuf only the span would be; 30 arrays or 25 maps deep still read.
    #[test]
    fn too_deep_json_refuses_the_request() {
        let nested = |n: usize| {
            format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{}1{}}}]}}]}}]}}]}}"#,
                r#"{"arrayValue":{"values":["#.repeat(n) + r#"{"intValue":"#,
                "}".to_owned() + &"]}}".repeat(n)
            )
        };
        assert!(to_protobuf(nested(30).as_bytes()).is_ok());
        let err = to_protobuf(nested(41).as_bytes()).unwrap_err().to_string();
        assert!(err.contains("recursion limit"), "{err}");
        let maps = |n: usize| {
            format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"attributes":[{{"key":"k","value":{}{{"intValue":1}}{}}}]}}]}}]}}]}}"#,
                r#"{"kvlistValue":{"values":[{"key":"m","value":"#.repeat(n),
                "}]}}".repeat(n)
            )
        };
        assert!(to_protobuf(maps(25).as_bytes()).is_ok());
        let err = to_protobuf(maps(30).as_bytes()).unwrap_err().to_string();
        assert!(err.contains("recursion limit"), "{err}");
    }

    /// The first span's name and its first attribute's key and string value.
    fn first_span_strings(proto: &[u8]) -> (String, String, String) {
        let req = ExportTraceServiceRequest::decode(proto).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        let attr = &span.attributes[0];
        let Some(any_value::Value::StringValue(v)) =
            attr.value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("not a string value: {attr:?}");
        };
        (span.name.clone(), attr.key.clone(), v)
    }

    /// Scenario: strings with lone surrogate escapes, as a JavaScript SDK writes them when
    /// its attribute length limit cuts an emoji in two: a high half at a string's end, a
    /// high half before a whole pair, a low half alone, in a name, a key and a value;
    /// beside them an escaped backslash before `u`.
    /// Guarantees: each lone half reads as U+FFFD, and a half before a pair takes the
    /// pair's first half with it, as json-iterator (the Collector's reader) reads them;
    /// the literal backslash is kept; both entry points agree, and the in-place one
    /// patches those escapes and nothing else.
    #[test]
    fn lone_surrogates_read_as_replacement_characters() {
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"cut \ud83d","attributes":[{"key":"k\udc00","value":{"stringValue":"\ud83d\ud83d\ude00 \\ud800 \u00e9"}}]}]}]}]}"#;
        let want = (
            "cut \u{FFFD}".to_owned(),
            "k\u{FFFD}".to_owned(),
            "\u{FFFD}\u{FFFD}\u{FFFD} \\ud800 \u{e9}".to_owned(),
        );
        assert_eq!(
            first_span_strings(&to_protobuf(json.as_bytes()).unwrap()),
            want
        );
        let mut body = json.as_bytes().to_vec();
        assert_eq!(
            first_span_strings(&to_protobuf_in_place(&mut body).unwrap()),
            want
        );
        let patched = String::from_utf8(body).unwrap();
        let expected = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"cut \ufffd","attributes":[{"key":"k\ufffd","value":{"stringValue":"\ufffd\ufffd\ufffd \\ud800 \u00e9"}}]}]}]}]}"#;
        assert_eq!(patched, expected);
        // Other syntax errors stay errors, with or without a lone escape.
        for bad in [
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\ud800"}]}]}]"#,
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"\ud80"}]}]}]}"#,
        ] {
            assert!(to_protobuf(bad.as_bytes()).is_err(), "{bad}");
            assert!(
                to_protobuf_in_place(&mut bad.as_bytes().to_vec()).is_err(),
                "{bad}"
            );
        }
    }

    /// Scenario: each way a surrogate escape can be followed, in a span name.
    /// Guarantees: read as json-iterator reads it: a high half and a low half make one
    /// character; otherwise the first is U+FFFD and the escape after it is read as its
    /// would-be other half (U+FFFD when a surrogate, itself when not).
    #[test]
    fn surrogate_escapes_read_as_json_iterator_reads_them() {
        for (escapes, want) in [
            (r"\ud83d\ude00", "\u{1F600}"),
            (r"\ud83d", "\u{FFFD}"),
            (r"\ude00", "\u{FFFD}"),
            (r"\ud83dx", "\u{FFFD}x"),
            (r"\ud83d\n", "\u{FFFD}\n"),
            (r"\ud83d\u0041", "\u{FFFD}A"),
            (r"\ude00\u0041", "\u{FFFD}A"),
            (r"\ud83d\ud83d\ude00", "\u{FFFD}\u{FFFD}\u{FFFD}"),
            (r"\ude00\ud83d\ude00", "\u{FFFD}\u{FFFD}\u{FFFD}"),
            (r"\ude00\ude00", "\u{FFFD}\u{FFFD}"),
            (r"\ud83d\u0041\ud83d\ude00", "\u{FFFD}A\u{1F600}"),
            (r"\\ud83d", r"\ud83d"),
        ] {
            let json = format!(
                r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"{escapes}"}}]}}]}}]}}"#
            );
            let req = ExportTraceServiceRequest::decode(&to_protobuf(json.as_bytes()).unwrap()[..])
                .unwrap();
            assert_eq!(
                req.resource_spans[0].scope_spans[0].spans[0].name, want,
                "{escapes}"
            );
        }
    }

    /// Scenario: malformed values. Guarantees: refused with what and where.
    #[test]
    fn malformed_values_are_refused_naming_the_field() {
        for (json, what) in [
            (r#"{"resourceSpans":5}"#, "field \"resourceSpans\""),
            // The JSON name, not the protobuf field number (5 would mean `name` here and
            // nothing to the sender).
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":5}]}]}]}"#,
                "field \"name\"",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"k","value":{"boolValue":"true"}}]}]}]}]}"#,
                "field \"boolValue\"",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SIDEWAYS"}]}]}]}"#,
                "integer",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[null]}]}]}"#,
                "object",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":2147483648}]}]}]}"#,
                "32-bit integer",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":-1}]}]}]}"#,
                "unsigned",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedAttributesCount":"-1"}]}]}]}"#,
                "unsigned",
            ),
            (
                r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"droppedEventsCount":4294967296}]}]}]}"#,
                "unsigned",
            ),
            (
                r#"{"resourceSpans":[{"resource":{"attributes":[{"value":{"intValue":"9223372036854775808"}}]}}]}"#,
                "64-bit",
            ),
            (r#"{"resourceSpans":[]} trailing"#, "trailing"),
        ] {
            let err = to_protobuf(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(what), "{json}: {err}");
        }
        // A negative enum is an int32 as any other (the protobuf receivers take it).
        let json =
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":-1,"status":{"code":-2}}]}]}]}"#;
        let req =
            ExportTraceServiceRequest::decode(&to_protobuf(json.as_bytes()).unwrap()[..]).unwrap();
        let span = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.kind, span.status.as_ref().unwrap().code), (-1, -2));
    }
}
