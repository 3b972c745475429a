//! Protobuf trace requests written as OTLP/JSON, one line each, straight from the wire
//! bytes to the output.
//!
//! Data comes from the gateway's `debug` exporter (the kept requests it would send); the
//! lines go to its output, where `tailgate-gateway explain --traces` reads them back
//! through [`super::otlp_json`].
//!
//! Decoding into the generated structs and writing them with serde held a request many
//! times over while it was written: an empty span event is 2 bytes of protobuf, a
//! 100-byte struct and 70 bytes of JSON, so a 1 MB request of empty events took ~100 MB
//! and a hostile sender could take the gateway far past its memory bound through a
//! `debug` exporter. Here each field is written as it is read, so what writing holds is
//! the output's buffer. serde_json also wrote a NaN or infinite double as `null` (an
//! attribute without a value once read back); here they are `"NaN"`, `"Infinity"` and
//! `"-Infinity"`, as protobuf's JSON mapping writes them.
//!
//! The mapping is protobuf's JSON mapping as OTLP specifies it: lowerCamelCase names, ids
//! in hex, `bytes` values in base64, 64-bit integers as strings, enums as numbers. A field
//! absent from the wire is left out, and so is a scalar written at its default (zero, or
//! empty: the same value in proto3, which most encoders leave out and some write), as
//! the Collector's file exporter writes them; unknown fields are skipped, as decoders
//! skip them.

use std::io::{self, Write};

use crate::wire::attrs::{next_field_slice, read_varint};

/// Why a request could not be written as OTLP/JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonWriteError {
    /// The bytes are not an `ExportTraceServiceRequest`: the message whose field could not
    /// be read.
    #[error("invalid OTLP protobuf trace request: malformed {0}")]
    Malformed(&'static str),
    /// Writing failed.
    #[error("cannot write OTLP/JSON: {0}")]
    Io(#[from] io::Error),
}

/// How deep messages may nest: prost's limit, which every span the receivers accept is
/// under ([`crate::wire::validate::MAX_DEPTH`] counts array and map levels, two and three
/// messages each).
const MAX_DEPTH: u32 = 100;

/// Writes `body`, an encoded `ExportTraceServiceRequest`, to `out` as one line of OTLP/JSON
/// (no newline). On an error part of the line may have been written: check the request
/// with [`io::sink`] first where that matters.
pub fn write_json(body: &[u8], out: &mut impl Write) -> Result<(), JsonWriteError> {
    message(Msg::Request, body, out, 0)
}

/// Protobuf messages of an `ExportTraceServiceRequest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Msg {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
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
}

/// How a field is written.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    /// `bytes` as lowercase hex (trace and span ids).
    Hex,
    /// `bytes` as base64.
    Base64,
    /// A varint written as a number (uint32, enums as int32).
    Uint32,
    Enum,
    Bool,
    /// int64 as a string.
    Int64,
    /// fixed64 as a string.
    Fixed64,
    /// fixed32 as a number.
    Fixed32,
    Double,
    Message(Msg),
}

/// A field: number, JSON name, kind, whether repeated.
type Field = (u32, &'static str, Kind, bool);

fn fields(msg: Msg) -> &'static [Field] {
    use Kind::*;
    match msg {
        Msg::Request => &[(1, "resourceSpans", Message(Msg::ResourceSpans), true)],
        Msg::ResourceSpans => &[
            (1, "resource", Message(Msg::Resource), false),
            (2, "scopeSpans", Message(Msg::ScopeSpans), true),
            (3, "schemaUrl", Str, false),
        ],
        Msg::Resource => &[
            (1, "attributes", Message(Msg::KeyValue), true),
            (2, "droppedAttributesCount", Uint32, false),
            (3, "entityRefs", Message(Msg::EntityRef), true),
        ],
        Msg::EntityRef => &[
            (1, "schemaUrl", Str, false),
            (2, "type", Str, false),
            (3, "idKeys", Str, true),
            (4, "descriptionKeys", Str, true),
        ],
        Msg::ScopeSpans => &[
            (1, "scope", Message(Msg::Scope), false),
            (2, "spans", Message(Msg::Span), true),
            (3, "schemaUrl", Str, false),
        ],
        Msg::Scope => &[
            (1, "name", Str, false),
            (2, "version", Str, false),
            (3, "attributes", Message(Msg::KeyValue), true),
            (4, "droppedAttributesCount", Uint32, false),
        ],
        Msg::Span => &[
            (1, "traceId", Hex, false),
            (2, "spanId", Hex, false),
            (3, "traceState", Str, false),
            (4, "parentSpanId", Hex, false),
            (16, "flags", Fixed32, false),
            (5, "name", Str, false),
            (6, "kind", Enum, false),
            (7, "startTimeUnixNano", Fixed64, false),
            (8, "endTimeUnixNano", Fixed64, false),
            (9, "attributes", Message(Msg::KeyValue), true),
            (10, "droppedAttributesCount", Uint32, false),
            (11, "events", Message(Msg::Event), true),
            (12, "droppedEventsCount", Uint32, false),
            (13, "links", Message(Msg::Link), true),
            (14, "droppedLinksCount", Uint32, false),
            (15, "status", Message(Msg::Status), false),
        ],
        Msg::Event => &[
            (1, "timeUnixNano", Fixed64, false),
            (2, "name", Str, false),
            (3, "attributes", Message(Msg::KeyValue), true),
            (4, "droppedAttributesCount", Uint32, false),
        ],
        Msg::Link => &[
            (1, "traceId", Hex, false),
            (2, "spanId", Hex, false),
            (3, "traceState", Str, false),
            (4, "attributes", Message(Msg::KeyValue), true),
            (5, "droppedAttributesCount", Uint32, false),
            (6, "flags", Fixed32, false),
        ],
        Msg::Status => &[(2, "message", Str, false), (3, "code", Enum, false)],
        Msg::KeyValue => &[
            (1, "key", Str, false),
            (2, "value", Message(Msg::AnyValue), false),
        ],
        // A oneof: only its last member on the wire is written (see `any_value`).
        Msg::AnyValue => &[
            (1, "stringValue", Str, false),
            (2, "boolValue", Bool, false),
            (3, "intValue", Int64, false),
            (4, "doubleValue", Double, false),
            (5, "arrayValue", Message(Msg::ArrayValue), false),
            (6, "kvlistValue", Message(Msg::KeyValueList), false),
            (7, "bytesValue", Base64, false),
        ],
        Msg::ArrayValue => &[(1, "values", Message(Msg::AnyValue), true)],
        Msg::KeyValueList => &[(1, "values", Message(Msg::KeyValue), true)],
    }
}

fn name(msg: Msg) -> &'static str {
    match msg {
        Msg::Request => "ExportTraceServiceRequest",
        Msg::ResourceSpans => "ResourceSpans",
        Msg::Resource => "Resource",
        Msg::EntityRef => "EntityRef",
        Msg::ScopeSpans => "ScopeSpans",
        Msg::Scope => "InstrumentationScope",
        Msg::Span => "Span",
        Msg::Event => "Span.Event",
        Msg::Link => "Span.Link",
        Msg::Status => "Status",
        Msg::KeyValue => "KeyValue",
        Msg::AnyValue => "AnyValue",
        Msg::ArrayValue => "ArrayValue",
        Msg::KeyValueList => "KeyValueList",
    }
}

/// The wire type a field of `kind` must have.
fn wire_type(kind: Kind) -> u8 {
    match kind {
        Kind::Uint32 | Kind::Enum | Kind::Bool | Kind::Int64 => 0,
        Kind::Fixed64 | Kind::Double => 1,
        Kind::Fixed32 => 5,
        Kind::Str | Kind::Hex | Kind::Base64 | Kind::Message(_) => 2,
    }
}

/// The fields of `buf` with number `number`, as value ranges; checks each field's wire
/// type against `kind`, and reads the whole message (an error where it is malformed), so a
/// pass over it also checks it.
fn occurrences(
    msg: Msg,
    buf: &[u8],
    number: u32,
    kind: Kind,
) -> impl Iterator<Item = Result<(usize, usize), JsonWriteError>> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        if pos >= buf.len() {
            return None;
        }
        let Some((field, wt, start, end)) = next_field_slice(buf, &mut pos) else {
            pos = buf.len();
            return Some(Err(JsonWriteError::Malformed(name(msg))));
        };
        if field == number {
            if wt != wire_type(kind) {
                pos = buf.len();
                return Some(Err(JsonWriteError::Malformed(name(msg))));
            }
            return Some(Ok((start, end)));
        }
    })
}

fn message(msg: Msg, buf: &[u8], out: &mut impl Write, depth: u32) -> Result<(), JsonWriteError> {
    if depth > MAX_DEPTH {
        return Err(JsonWriteError::Malformed(name(msg)));
    }
    if msg == Msg::AnyValue {
        return any_value(buf, out, depth);
    }
    out.write_all(b"{")?;
    let mut first = true;
    for &(number, key, kind, repeated) in fields(msg) {
        if repeated {
            let mut any = false;
            for found in occurrences(msg, buf, number, kind) {
                let (s, e) = found?;
                if !any {
                    begin_key(out, &mut first, key)?;
                    out.write_all(b"[")?;
                    any = true;
                } else {
                    out.write_all(b",")?;
                }
                value(kind, &buf[s..e], out, depth)?;
            }
            if any {
                out.write_all(b"]")?;
            }
        } else {
            // Protobuf decoders keep the last of a singular scalar field, and merge the
            // occurrences of a singular message field (the same as reading their payloads
            // one after the other).
            let mut found: Vec<(usize, usize)> = Vec::new();
            for f in occurrences(msg, buf, number, kind) {
                let f = f?;
                match kind {
                    Kind::Message(_) => found.push(f),
                    _ => found = vec![f],
                }
            }
            // A scalar at its default is left out, as when the encoder left it out (proto3:
            // the two are the same value); some encoders (the JavaScript SDK's) write
            // zeros. The oneof members of `AnyValue` are written apart, zero or not.
            let default = match (kind, found.as_slice()) {
                (Kind::Message(_), _) | (_, []) => found.is_empty(),
                (_, [.., (s, e)]) => is_default(kind, &buf[*s..*e]),
            };
            if !default {
                begin_key(out, &mut first, key)?;
                merged(kind, buf, &found, out, depth)?;
            }
        }
    }
    // Fields none of the lists names are skipped; the message has been read whole by
    // each of its fields' passes (`occurrences` reads to the end, or fails), so it is
    // well-formed.
    out.write_all(b"}")?;
    Ok(())
}

/// An `AnyValue`: the last member of its oneof on the wire (merged with the occurrences
/// of the same message member just before it, as decoders merge them), or `{}`.
fn any_value(buf: &[u8], out: &mut impl Write, depth: u32) -> Result<(), JsonWriteError> {
    let mut pos = 0;
    let mut last: Option<(u32, &'static str, Kind)> = None;
    let mut found: Vec<(usize, usize)> = Vec::new();
    while pos < buf.len() {
        let Some((field, wt, start, end)) = next_field_slice(buf, &mut pos) else {
            return Err(JsonWriteError::Malformed(name(Msg::AnyValue)));
        };
        if let Some(&(_, key, kind, _)) = fields(Msg::AnyValue).iter().find(|f| f.0 == field) {
            if wt != wire_type(kind) {
                return Err(JsonWriteError::Malformed(name(Msg::AnyValue)));
            }
            let same_message =
                matches!(kind, Kind::Message(_)) && last.is_some_and(|(f, _, _)| f == field);
            if !same_message {
                found.clear();
            }
            found.push((start, end));
            last = Some((field, key, kind));
        }
    }
    out.write_all(b"{")?;
    if let Some((_, key, kind)) = last {
        let mut first = true;
        begin_key(out, &mut first, key)?;
        merged(kind, buf, &found, out, depth)?;
    }
    out.write_all(b"}")?;
    Ok(())
}

/// The value of a field found at `found` (several only for a message field that came more
/// than once: merged, by reading their payloads as one).
fn merged(
    kind: Kind,
    buf: &[u8],
    found: &[(usize, usize)],
    out: &mut impl Write,
    depth: u32,
) -> Result<(), JsonWriteError> {
    match found {
        [(s, e)] => value(kind, &buf[*s..*e], out, depth),
        _ => {
            let joined: Vec<u8> = found
                .iter()
                .flat_map(|&(s, e)| &buf[s..e])
                .copied()
                .collect();
            value(kind, &joined, out, depth)
        }
    }
}

fn begin_key(out: &mut impl Write, first: &mut bool, key: &str) -> io::Result<()> {
    if !*first {
        out.write_all(b",")?;
    }
    *first = false;
    out.write_all(b"\"")?;
    out.write_all(key.as_bytes())?;
    out.write_all(b"\":")
}

/// One field's value; `v` is its payload (length-delimited) or its encoded value.
fn value(kind: Kind, v: &[u8], out: &mut impl Write, depth: u32) -> Result<(), JsonWriteError> {
    let fixed = |n: usize| -> Result<[u8; 8], JsonWriteError> {
        let mut b = [0u8; 8];
        let src = v
            .get(..n)
            .ok_or(JsonWriteError::Malformed("fixed-width field"))?;
        b[..n].copy_from_slice(src);
        Ok(b)
    };
    match kind {
        Kind::Str => {
            let s = std::str::from_utf8(v).map_err(|_| JsonWriteError::Malformed("string"))?;
            serde_json::to_writer(&mut *out, s).map_err(io::Error::from)?;
        }
        Kind::Hex => {
            out.write_all(b"\"")?;
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            for b in v {
                out.write_all(&[DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 15)]])?;
            }
            out.write_all(b"\"")?;
        }
        Kind::Base64 => {
            out.write_all(b"\"")?;
            {
                let mut enc = base64::write::EncoderWriter::new(
                    &mut *out,
                    &base64::engine::general_purpose::STANDARD,
                );
                enc.write_all(v)?;
                enc.finish()?;
            }
            out.write_all(b"\"")?;
        }
        Kind::Uint32 => write!(out, "{}", varint(v)? as u32)?,
        Kind::Enum => write!(out, "{}", varint(v)? as i32)?,
        Kind::Bool => out.write_all(if varint(v)? != 0 { b"true" } else { b"false" })?,
        Kind::Int64 => write!(out, "\"{}\"", varint(v)? as i64)?,
        Kind::Fixed64 => write!(out, "\"{}\"", u64::from_le_bytes(fixed(8)?))?,
        Kind::Fixed32 => {
            let b = fixed(4)?;
            write!(out, "{}", u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
        }
        Kind::Double => {
            let d = f64::from_le_bytes(fixed(8)?);
            if d.is_nan() {
                out.write_all(b"\"NaN\"")?;
            } else if d == f64::INFINITY {
                out.write_all(b"\"Infinity\"")?;
            } else if d == f64::NEG_INFINITY {
                out.write_all(b"\"-Infinity\"")?;
            } else {
                serde_json::to_writer(&mut *out, &d).map_err(io::Error::from)?;
            }
        }
        Kind::Message(msg) => message(msg, v, out, depth + 1)?,
    }
    Ok(())
}

/// Whether `v`, a scalar field's payload or encoded value, is its type's default: empty,
/// zero, or a double of +0.0 (whose bits are all zero; -0.0 is written).
fn is_default(kind: Kind, v: &[u8]) -> bool {
    match kind {
        Kind::Uint32 | Kind::Enum | Kind::Bool | Kind::Int64 => {
            matches!(read_varint(v, 0), (0, read) if read > 0)
        }
        Kind::Str | Kind::Hex | Kind::Base64 => v.is_empty(),
        Kind::Fixed64 | Kind::Fixed32 | Kind::Double => v.iter().all(|&b| b == 0),
        Kind::Message(_) => false,
    }
}

fn varint(v: &[u8]) -> Result<u64, JsonWriteError> {
    match read_varint(v, 0) {
        (_, 0) => Err(JsonWriteError::Malformed("varint")),
        (n, _) => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::FakeOtlp;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, KeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use prost::Message as _;

    fn json(req: &ExportTraceServiceRequest) -> String {
        let mut out = Vec::new();
        write_json(&req.encode_to_vec(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// What `json` reads back as, through the OTLP/JSON reader.
    fn read_back(json: &str) -> ExportTraceServiceRequest {
        let proto = super::super::otlp_json::to_protobuf(json.as_bytes()).unwrap();
        ExportTraceServiceRequest::decode(&proto[..]).unwrap()
    }

    fn double(key: &str, d: f64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::DoubleValue(d)),
            }),
            ..Default::default()
        }
    }

    /// Every double of a request's attributes, in order, as bits.
    fn doubles(req: &ExportTraceServiceRequest) -> Vec<u64> {
        fn value(v: &AnyValue, out: &mut Vec<u64>) {
            match &v.value {
                Some(Value::DoubleValue(d)) => out.push(d.to_bits()),
                Some(Value::ArrayValue(a)) => a.values.iter().for_each(|v| value(v, out)),
                Some(Value::KvlistValue(l)) => attrs(&l.values, out),
                _ => {}
            }
        }
        fn attrs(kvs: &[KeyValue], out: &mut Vec<u64>) {
            kvs.iter()
                .flat_map(|kv| &kv.value)
                .for_each(|v| value(v, out));
        }
        let mut out = Vec::new();
        for rs in &req.resource_spans {
            attrs(
                &rs.resource.clone().unwrap_or_default().attributes,
                &mut out,
            );
            for ss in &rs.scope_spans {
                attrs(&ss.scope.clone().unwrap_or_default().attributes, &mut out);
                for s in &ss.spans {
                    attrs(&s.attributes, &mut out);
                    s.events.iter().for_each(|e| attrs(&e.attributes, &mut out));
                    s.links.iter().for_each(|l| attrs(&l.attributes, &mut out));
                }
            }
        }
        out
    }

    /// Scenario: requests written by the generated code with every field of every message
    /// set (events, links, status, every attribute kind incl. nested arrays and lists,
    /// bytes, negative ints, schema URLs, flags), 20 seeds.
    /// Guarantees: the JSON reads back to the same request, and is what serde writes of
    /// the generated structs but for the default values it leaves out.
    #[test]
    fn written_json_reads_back_to_the_same_request() {
        for seed in 0..20 {
            let req = crate::test_util::every_field(seed);
            let out = json(&req);
            assert!(!out.contains('\n'));
            assert_eq!(read_back(&out), req, "seed {seed}");
            // Field for field what serde writes, defaults aside.
            let ours: serde_json::Value = serde_json::from_str(&out).unwrap();
            let theirs = serde_json::to_value(&req).unwrap();
            assert_eq!(strip_defaults(theirs), ours, "seed {seed}");
        }
    }

    /// `v` without the default values protobuf encoders leave out (and serde writes), but
    /// for the members of `AnyValue`'s oneof (`stringValue: ""` says which kind it is).
    fn strip_defaults(v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        match v {
            J::Object(m) => J::Object(
                m.into_iter()
                    .filter(|(k, v)| {
                        let default = [J::from(0), J::from(""), J::from("0"), J::Array(vec![])];
                        !matches!(v, J::Null) && (k.ends_with("Value") || !default.contains(v))
                    })
                    .map(|(k, v)| (k, strip_defaults(v)))
                    .collect(),
            ),
            J::Array(a) => J::Array(a.into_iter().map(strip_defaults).collect()),
            v => v,
        }
    }

    /// Scenario: NaN, +∞ and −∞ as span, event, link, resource and scope attributes, in
    /// arrays and key-value lists, beside finite doubles (the smallest subnormals, 0, −0,
    /// the largest double).
    /// Guarantees: the JSON names the non-finite ones as protobuf's JSON mapping does
    /// (serde_json wrote `null`), and reads back to the same bits for every double (NaN as
    /// NaN).
    #[test]
    fn non_finite_doubles_are_written_as_their_names() {
        let mut req = FakeOtlp::traces(1).spans(1).build();
        let values = [
            f64::NAN,
            f64::from_bits(1),
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::MAX,
        ];
        let attrs: Vec<KeyValue> = values
            .iter()
            .enumerate()
            .map(|(i, d)| double(&format!("d{i}"), *d))
            .collect();
        let nested = |attrs: Vec<KeyValue>| KeyValue {
            key: "nested".into(),
            value: Some(AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(Value::KvlistValue(KeyValueList { values: attrs })),
                    }],
                })),
            }),
            ..Default::default()
        };
        let rs = &mut req.resource_spans[0];
        rs.resource.get_or_insert_with(Default::default).attributes = attrs.clone();
        rs.scope_spans[0]
            .scope
            .get_or_insert_with(Default::default)
            .attributes = vec![nested(attrs.clone())];
        let span = &mut rs.scope_spans[0].spans[0];
        span.attributes = attrs.clone();
        span.events.push(Event {
            name: "e".into(),
            attributes: vec![nested(attrs.clone())],
            ..Default::default()
        });
        span.links.push(Link {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            attributes: attrs,
            ..Default::default()
        });

        let out = json(&req);
        assert!(!out.contains("null"), "{out}");
        assert_eq!(out.matches(r#"{"doubleValue":"NaN"}"#).count(), 5);
        assert_eq!(out.matches(r#"{"doubleValue":"Infinity"}"#).count(), 5);
        assert_eq!(out.matches(r#"{"doubleValue":"-Infinity"}"#).count(), 5);
        let (want, got) = (doubles(&req), doubles(&read_back(&out)));
        assert_eq!(want.len(), 5 * values.len());
        assert_eq!(got.len(), want.len());
        for (w, g) in want.iter().zip(&got) {
            let (w, g) = (f64::from_bits(*w), f64::from_bits(*g));
            assert!(
                w.to_bits() == g.to_bits() || (w.is_nan() && g.is_nan()),
                "{w} {g}"
            );
        }
    }

    /// Scenario: a 1 MB request of spans with 2,000 empty events each (the finding: the
    /// `debug` exporter held ~100 MB per such request while writing it).
    /// Guarantees: the line goes out as it is made, in pieces of a few bytes (nothing of
    /// the request's size is built first); it has every event.
    #[test]
    fn empty_events_are_streamed_not_held() {
        let mut req = FakeOtlp::traces(1).spans(250).build();
        let spans = req
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans);
        for s in spans {
            s.events = vec![Event::default(); 2000];
        }
        let body = req.encode_to_vec();
        assert!(body.len() > 1_000_000, "{}", body.len());
        /// Counts what is written, and the largest single write.
        struct Count {
            bytes: usize,
            braces: usize,
            largest: usize,
        }
        impl Write for Count {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.bytes += b.len();
                self.braces += b.iter().filter(|&&c| c == b'{').count();
                self.largest = self.largest.max(b.len());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count {
            bytes: 0,
            braces: 0,
            largest: 0,
        };
        write_json(&body, &mut count).unwrap();
        assert!(count.bytes > body.len(), "{}", count.bytes);
        // Every event is written, an object each, in small pieces.
        assert!(count.braces > 250 * 2000, "{}", count.braces);
        assert!(count.largest < 100, "{}", count.largest);
    }

    /// A request of one resource (`resource`: its fields inside `ResourceSpans`, before the
    /// scope) with one scope holding one span encoded as `span`, all lengths under 128:
    /// decoded, and written as JSON (checked to read back to the same request).
    fn written_by_hand(resource: &[u8], span: &[u8]) -> (ExportTraceServiceRequest, String) {
        let mut scope_spans = vec![0x12, span.len() as u8];
        scope_spans.extend(span);
        let mut rs_bytes = resource.to_vec();
        rs_bytes.extend([0x12, scope_spans.len() as u8]);
        rs_bytes.extend(scope_spans);
        let mut body = vec![0x0a, rs_bytes.len() as u8];
        body.extend(rs_bytes);
        let decoded = ExportTraceServiceRequest::decode(&body[..]).unwrap();
        let mut out = Vec::new();
        write_json(&body, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(read_back(&out), decoded, "{out}");
        (decoded, out)
    }

    /// Scenario: a span whose encoder wrote its default values (as the JavaScript SDK
    /// does): `droppedAttributesCount` 0, `kind` 0, an empty `traceState`, a status of code
    /// 0, flags 0, and an attribute whose value is the int 0.
    /// Guarantees: the defaults are left out, as the Collector's file exporter leaves
    /// them out (a trial with real SDKs found them written); the attribute's 0 is kept (a
    /// oneof member is a value, not a default); the line reads back to the same request.
    #[test]
    fn default_values_on_the_wire_are_left_out() {
        let mut req = FakeOtlp::traces(1).spans(1).build();
        req.resource_spans.truncate(1);
        let rs = &mut req.resource_spans[0];
        rs.scope_spans[0].spans.truncate(1);
        let span = &mut rs.scope_spans[0].spans[0];
        span.events.clear();
        span.links.clear();
        span.attributes.clear();
        span.status = None;
        span.trace_state.clear();
        span.kind = 0;
        span.dropped_attributes_count = 0;
        span.flags = 0;
        let mut span_bytes = span.encode_to_vec();
        span_bytes.extend([0x50, 0x00]); // droppedAttributesCount: 0
        span_bytes.extend([0x30, 0x00]); // kind: 0
        span_bytes.extend([0x1a, 0x00]); // traceState: ""
        span_bytes.extend([0x7a, 0x02, 0x18, 0x00]); // status { code: 0 }
        span_bytes.extend([0x85, 0x01, 0, 0, 0, 0]); // flags: 0 (fixed32, field 16)
        span_bytes.extend([0x4a, 0x07, 0x0a, 0x01, b'z', 0x12, 0x02, 0x18, 0x00]); // z = 0
        let (_, out) = written_by_hand(&[], &span_bytes);
        for key in [
            "droppedAttributesCount",
            "\"kind\"",
            "traceState",
            "flags",
            "\"code\"",
        ] {
            assert!(!out.contains(key), "{key} in {out}");
        }
        assert!(out.contains(r#""status":{}"#), "{out}");
        assert!(
            out.contains(r#"{"key":"z","value":{"intValue":"0"}}"#),
            "{out}"
        );
    }

    /// Scenario: a span whose `status` comes twice (the code in the first, the message in
    /// the second), a resource sent twice (an attribute in each), an `AnyValue` holding
    /// two `arrayValue`s, and one whose string is followed by an int.
    /// Guarantees: written as decoders read them: message fields merged, the last scalar
    /// of a oneof kept, and two arrays of one oneof member concatenated.
    #[test]
    fn repeated_message_fields_are_merged_as_decoders_merge_them() {
        let mut req = FakeOtlp::traces(1).spans(1).build();
        req.resource_spans.truncate(1);
        let rs = &mut req.resource_spans[0];
        rs.resource = Some(Default::default());
        rs.scope_spans[0].spans.truncate(1);
        let span = &mut rs.scope_spans[0].spans[0];
        span.status = None;
        span.attributes.clear();
        span.events.clear();
        span.links.clear();
        // The duplicates are appended to the span's and the resource's encodings, and the
        // request around them is written by hand.
        let status_code = [0x7a, 0x02, 0x18, 0x02]; // status { code: 2 }
        let status_msg = [0x7a, 0x03, 0x12, 0x01, b'x']; // status { message: "x" }
        let mut span_bytes = span.encode_to_vec();
        span_bytes.extend_from_slice(&status_code);
        span_bytes.extend_from_slice(&status_msg);
        // attributes: a = [1] then arrayValue [2] again in the same AnyValue; b: "s" then 7.
        let arr = |n: u8| vec![0x2a, 0x04, 0x0a, 0x02, 0x18, n];
        let mut a_value = arr(1);
        a_value.extend(arr(2));
        let kv = |k: u8, v: &[u8]| {
            let mut kv = vec![0x0a, 0x01, k, 0x12, v.len() as u8];
            kv.extend_from_slice(v);
            let mut f = vec![0x4a, kv.len() as u8];
            f.extend(kv);
            f
        };
        span_bytes.extend(kv(b'a', &a_value));
        span_bytes.extend(kv(b'b', &[0x0a, 0x01, b's', 0x18, 0x07]));
        // resource: { attributes: [r1=1] } twice.
        let res_attr = |k: u8| {
            let mut a = kv(k, &[0x18, 0x01]);
            a[0] = 0x0a; // attributes is field 1 of Resource
            let mut f = vec![0x0a, a.len() as u8];
            f.extend(a);
            f
        };
        let mut resource = res_attr(b'p');
        resource.extend(res_attr(b'q'));
        let (decoded, out) = written_by_hand(&resource, &span_bytes);
        let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(
            span.status.as_ref().map(|s| (s.code, s.message.as_str())),
            Some((2, "x"))
        );
        assert_eq!(
            decoded.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .len(),
            2
        );
        assert!(
            out.contains(r#""arrayValue":{"values":[{"intValue":"1"},{"intValue":"2"}]}"#),
            "{out}"
        );
        assert!(
            out.contains(r#"{"key":"b","value":{"intValue":"7"}}"#),
            "{out}"
        );
    }

    /// Scenario: the deepest values the receivers accept: 39 nested arrays in an event's
    /// attribute, 20 nested maps in a span's (`wire::validate`'s limits).
    /// Guarantees: written (the first form of this writer stopped at 64 messages deep and
    /// failed such a batch whole), and read back the same.
    #[test]
    fn the_deepest_accepted_values_are_written() {
        let mut arrays = AnyValue::default();
        for _ in 0..39 {
            arrays = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue {
                    values: vec![arrays],
                })),
            };
        }
        let mut maps = AnyValue::default();
        for _ in 0..20 {
            maps = AnyValue {
                value: Some(Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "m".into(),
                        value: Some(maps),
                        ..Default::default()
                    }],
                })),
            };
        }
        let mut req = FakeOtlp::traces(1).spans(1).build();
        let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
        let kv = |key: &str, v: AnyValue| KeyValue {
            key: key.into(),
            value: Some(v),
            ..Default::default()
        };
        span.attributes = vec![kv("maps", maps)];
        span.events = vec![Event {
            attributes: vec![kv("arrays", arrays)],
            ..Default::default()
        }];
        let body = req.encode_to_vec();
        let mut out = Vec::new();
        write_json(&body, &mut out).unwrap();
        assert_eq!(
            ExportTraceServiceRequest::decode(&body[..]).unwrap(),
            req,
            "the fixture is what prost reads"
        );
        assert!(out.len() > body.len());
    }

    /// Scenario: bytes that are not a request (cut short, a wrong wire type, a string that
    /// is not UTF-8, values nesting past the limit).
    /// Guarantees: refused as malformed, naming the message, never a panic.
    #[test]
    fn malformed_requests_are_refused_naming_the_message() {
        let body = FakeOtlp::traces(1).spans(2).build().encode_to_vec();
        let cut = &body[..body.len() - 3];
        for (bytes, what) in [
            (cut, "ExportTraceServiceRequest"),
            (&b"\x08\x01"[..], "ExportTraceServiceRequest"),
            (&b"\x0a\x04\x1a\x02\xff\xfe"[..], "string"),
        ] {
            match write_json(bytes, &mut io::sink()) {
                Err(JsonWriteError::Malformed(m)) => assert_eq!(m, what, "{bytes:?}"),
                other => panic!("{bytes:?}: {other:?}"),
            }
        }
        // An AnyValue nesting arrays 100 deep.
        let mut v = AnyValue::default();
        for _ in 0..100 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut req = FakeOtlp::traces(1).spans(1).build();
        req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(v),
            ..Default::default()
        }];
        assert!(matches!(
            write_json(&req.encode_to_vec(), &mut io::sink()),
            Err(JsonWriteError::Malformed(_))
        ));
    }
}
