//! Protobuf trace requests written as OTLP/JSON, one line each.
//!
//! Data comes from the gateway's `debug` exporter (the kept requests it would send); the
//! lines go to its output, where `tailgate-gateway explain --traces` reads them back
//! through [`super::otlp_json`].
//!
//! The generated structs' serde code does the writing, with one correction: serde_json
//! writes a NaN or infinite double as `null`, which reads back as an attribute without a
//! value, while protobuf's JSON mapping (and so OTLP/JSON) writes the strings `"NaN"`,
//! `"Infinity"` and `"-Infinity"`. Before writing, each non-finite double value is swapped
//! for a finite stand-in that no double of the request has, and the [`Formatter`] writes
//! the stand-ins as those strings. Doubles appear in a trace request only as attribute
//! values (`AnyValue.doubleValue`, nested in arrays and key-value lists at any depth).

use std::io;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use serde::Serialize as _;
use serde_json::ser::{CompactFormatter, Formatter};

/// Writes `request` as one line of OTLP/JSON (no newline).
pub fn to_json(mut request: ExportTraceServiceRequest) -> serde_json::Result<String> {
    let stand_ins = StandIns::swap_in(&mut request);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, stand_ins);
    request.serialize(&mut ser)?;
    // serde_json writes only UTF-8 (strings are `String`s, the rest ASCII).
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// The finite doubles that stand for NaN, +∞ and −∞ while a request is written (`None`
/// when it has no non-finite double, the usual case).
#[derive(Debug, Clone, Copy)]
struct StandIns(Option<[u64; 3]>);

impl StandIns {
    /// Replaces every non-finite double of `request` by its stand-in, chosen among the
    /// smallest positive subnormals so that no finite double of the request is one.
    fn swap_in(request: &mut ExportTraceServiceRequest) -> StandIns {
        let mut finite = Vec::new();
        let mut non_finite = false;
        for_each_double(request, &mut |d| {
            if d.is_finite() {
                finite.push(d.to_bits());
            } else {
                non_finite = true;
            }
        });
        if !non_finite {
            return StandIns(None);
        }
        finite.sort_unstable();
        let mut chosen = [0u64; 3];
        let mut bits = 0u64;
        for slot in &mut chosen {
            bits += 1;
            while finite.binary_search(&bits).is_ok() {
                bits += 1;
            }
            *slot = bits;
        }
        let [nan, inf, neg_inf] = chosen.map(f64::from_bits);
        for_each_double(request, &mut |d| {
            if d.is_nan() {
                *d = nan;
            } else if *d == f64::INFINITY {
                *d = inf;
            } else if *d == f64::NEG_INFINITY {
                *d = neg_inf;
            }
        });
        StandIns(Some(chosen))
    }
}

impl Formatter for StandIns {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        let name = match self.0 {
            Some([nan, _, _]) if value.to_bits() == nan => "\"NaN\"",
            Some([_, inf, _]) if value.to_bits() == inf => "\"Infinity\"",
            Some([_, _, neg_inf]) if value.to_bits() == neg_inf => "\"-Infinity\"",
            _ => return CompactFormatter.write_f64(writer, value),
        };
        writer.write_all(name.as_bytes())
    }
}

/// Calls `f` on every double value of `request`'s attributes: resources', scopes', spans',
/// events' and links', and inside arrays and key-value lists.
fn for_each_double(request: &mut ExportTraceServiceRequest, f: &mut impl FnMut(&mut f64)) {
    for rs in &mut request.resource_spans {
        if let Some(r) = &mut rs.resource {
            attributes(&mut r.attributes, f);
        }
        for ss in &mut rs.scope_spans {
            if let Some(s) = &mut ss.scope {
                attributes(&mut s.attributes, f);
            }
            for span in &mut ss.spans {
                attributes(&mut span.attributes, f);
                for e in &mut span.events {
                    attributes(&mut e.attributes, f);
                }
                for l in &mut span.links {
                    attributes(&mut l.attributes, f);
                }
            }
        }
    }
}

fn attributes(kvs: &mut [KeyValue], f: &mut impl FnMut(&mut f64)) {
    for kv in kvs {
        if let Some(v) = &mut kv.value {
            value(v, f);
        }
    }
}

fn value(v: &mut AnyValue, f: &mut impl FnMut(&mut f64)) {
    match &mut v.value {
        Some(Value::DoubleValue(d)) => f(d),
        Some(Value::ArrayValue(a)) => {
            for v in &mut a.values {
                value(v, f);
            }
        }
        Some(Value::KvlistValue(l)) => attributes(&mut l.values, f),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::FakeOtlp;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use prost::Message as _;

    fn double(key: &str, d: f64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::DoubleValue(d)),
            }),
            ..Default::default()
        }
    }

    /// Every double of a request in the order [`for_each_double`] visits them, as bits.
    fn doubles(mut req: ExportTraceServiceRequest) -> Vec<u64> {
        let mut out = Vec::new();
        for_each_double(&mut req, &mut |d| out.push(d.to_bits()));
        out
    }

    /// Scenario: NaN, +∞ and −∞ as span, event, link, resource and scope attributes, in
    /// arrays and key-value lists, beside finite doubles that are the first stand-ins
    /// (the smallest subnormals), 0, −0 and the largest double.
    /// Guarantees: the JSON names the non-finite ones as protobuf's JSON mapping does
    /// (never `null`), and reads back to the same bits for every double (NaN as NaN).
    #[test]
    fn non_finite_doubles_are_written_as_their_names() {
        let mut req = FakeOtlp::traces(1).spans(1).build();
        let tiny = |n: u64| f64::from_bits(n);
        let values = [
            f64::NAN,
            tiny(1),
            f64::INFINITY,
            tiny(2),
            f64::NEG_INFINITY,
            tiny(4),
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

        let json = to_json(req.clone()).unwrap();
        assert!(!json.contains(r#""doubleValue":null"#), "{json}");
        assert_eq!(json.matches(r#"{"doubleValue":"NaN"}"#).count(), 5);
        assert_eq!(json.matches(r#"{"doubleValue":"Infinity"}"#).count(), 5);
        assert_eq!(json.matches(r#"{"doubleValue":"-Infinity"}"#).count(), 5);

        let back = ExportTraceServiceRequest::decode(
            &super::super::otlp_json::to_protobuf(json.as_bytes()).unwrap()[..],
        )
        .unwrap();
        let (want, got) = (doubles(req), doubles(back));
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

    /// Scenario: a request with finite doubles only.
    /// Guarantees: written exactly as serde_json writes the generated structs.
    #[test]
    fn finite_doubles_are_written_as_serde_json_writes_them() {
        let mut req = FakeOtlp::traces(2).spans(2).build();
        req.resource_spans[0].scope_spans[0].spans[0].attributes =
            vec![double("a", 1.5e-300), double("b", f64::from_bits(1))];
        assert_eq!(
            to_json(req.clone()).unwrap(),
            serde_json::to_string(&req).unwrap()
        );
    }
}
