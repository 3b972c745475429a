//! Checks the parts of a request the scan does not read: that every string is UTF-8 and
//! every nested message (attributes and their values, events, links, the status, the
//! resource and the scope) is well-formed protobuf with the wire types OTLP defines. With
//! these checks, a request the scan accepts decodes with any protobuf library, so a span
//! that would make a backend refuse its whole batch is turned away at the edge instead.
//!
//! Called by [`crate::wire::scan`]: a defect inside a span rejects that span alone (OTLP
//! partial success); one in a resource or scope header refuses the request. Unknown fields
//! are skipped (when their wire type is valid), as protobuf does, so newer OTLP fields pass.

use std::ops::Range;

pub use super::reader::Malformed;
use super::reader::{Reader, WT_I32, WT_I64, WT_LEN, WT_VARINT};

/// Deepest nesting of attribute values (an array in a map in an array…) that is accepted.
/// Protobuf libraries stop at 100 nested messages (prost counts every one), an array level
/// costs two (`ArrayValue` and `AnyValue`) and counts one here, a map level costs three
/// (`KeyValueList`, `KeyValue`, `AnyValue`) and counts two (so 20 maps), and an event's
/// attribute value starts 7 messages deep: what is accepted stays under 100 wherever the
/// attribute is.
pub const MAX_DEPTH: u32 = 40;

type Checked = Result<(), Malformed>;

/// A UTF-8 string field.
#[inline]
pub fn string(body: &[u8], range: Range<usize>, what: &'static str) -> Checked {
    let at = range.start;
    if utf8(&body[range]) {
        Ok(())
    } else {
        Err(Malformed {
            what,
            why: "is not valid UTF-8",
            at,
        })
    }
}

/// Whether `b` is UTF-8: attribute keys and values are short and nearly always ASCII, which
/// is checked a word at a time before the full decoder is asked.
#[inline(always)]
fn utf8(b: &[u8]) -> bool {
    ascii(b) || std::str::from_utf8(b).is_ok()
}

/// Whether every byte is below 0x80: an OR of 8-byte words, the last one overlapping the
/// one before (attribute keys and values are mostly 8 to 40 bytes: a byte-wise fold spent
/// a quarter of the scan on them; see docs/benchmarks.md).
#[inline(always)]
fn ascii(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word_of = |w: &[u8]| w.first_chunk::<8>().map_or(0, |w| u64::from_ne_bytes(*w));
    let word = |at: usize| word_of(&b[at..]);
    match b.len() {
        // Up to 32 bytes, two or four words that may overlap, without a loop.
        n @ 8..=16 => (word(0) | word(n - 8)) & HIGH == 0,
        n @ 17..=32 => (word(0) | word(8) | word(n - 16) | word(n - 8)) & HIGH == 0,
        n @ 33.. => {
            b.chunks_exact(8)
                .map(word_of)
                .fold(word(n - 8), |acc, w| acc | w)
                & HIGH
                == 0
        }
        n @ 4..=7 => {
            let half = |w: &[u8]| w.first_chunk::<4>().map_or(0, |w| u32::from_ne_bytes(*w));
            (half(b) | half(&b[n - 4..])) & 0x8080_8080 == 0
        }
        _ => b.iter().fold(0u8, |acc, &x| acc | x) < 0x80,
    }
}

/// The common attribute, checked without the general walk: `key` then a `value` holding
/// one string, bool, int or double, every length in one byte. `None` when the attribute
/// has another shape (the general walk then decides); `Some(ok)` otherwise.
#[inline(always)]
fn simple_key_value(kv: &[u8]) -> Option<bool> {
    // [0x0a, klen, key.., 0x12, vlen, value..]
    let (&[0x0a, klen], rest) = kv.split_first_chunk::<2>()? else {
        return None;
    };
    let klen = usize::from(klen);
    if klen >= 0x80 || rest.len() < klen + 2 {
        return None;
    }
    let (key, rest) = rest.split_at(klen);
    let (&[0x12, vlen], value) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    if usize::from(vlen) != value.len() || vlen >= 0x80 {
        return None;
    }
    let value_ok = match value {
        [] => true,
        // A string attribute whose bytes are all ASCII (tags and one-byte lengths are):
        // one check covers key and value.
        [0x0a, slen, s @ ..] if usize::from(*slen) == s.len() => {
            return Some(ascii(kv) || (utf8(key) && utf8(s)));
        }
        // A varint: continuation bits on all but the last byte, at most ten bytes, and a
        // tenth byte holds only the 64th bit.
        [0x10 | 0x18, v @ ..] => {
            v.last().is_some_and(|b| *b < 0x80)
                && (v.len() < 10 || (v.len() == 10 && v[9] <= 1))
                && v[..v.len() - 1].iter().all(|b| *b >= 0x80)
        }
        [0x21, d @ ..] => d.len() == 8,
        _ => return None,
    };
    Some(value_ok && utf8(key))
}

/// Walks a message's fields: `known` checks a field it knows and returns `Ok(false)` for
/// one it does not, which is then skipped by its wire type.
#[inline]
fn fields(
    body: &[u8],
    range: Range<usize>,
    what: &'static str,
    mut known: impl FnMut(&mut Reader<'_>, u32, u8, usize) -> Result<bool, Malformed>,
) -> Checked {
    let mut r = Reader::new(body, range.start, range.end);
    while let Some((field, wt, at)) = r.tag(what)? {
        if !known(&mut r, field, wt, at)? {
            r.skip(field, wt, at, what)?;
        }
    }
    Ok(())
}

fn wrong(what: &'static str, at: usize) -> Malformed {
    Malformed {
        what,
        why: "has a field with a wrong wire type",
        at,
    }
}

/// A `KeyValue` (an attribute): `key = 1` string, `value = 2` AnyValue, `key_strindex = 3`.
/// The common shape is checked inline (the scan calls this for every span attribute: as
/// a call it cost about 15 instructions an attribute), any other by the general walk.
#[inline(always)]
pub fn key_value(body: &[u8], range: Range<usize>, depth: u32) -> Checked {
    if simple_key_value(&body[range.clone()]) == Some(true) {
        return Ok(());
    }
    key_value_walk(body, range, depth)
}

/// A `KeyValue` with its key or value written twice is refused: protobuf decoders merge
/// the two (the last key, the values' fields in order), and a reader that took one of them
/// (an attribute policy, a `mask` action, OTTL) would see something else than the backend
/// does. No SDK writes one.
#[inline(never)]
fn key_value_walk(body: &[u8], range: Range<usize>, depth: u32) -> Checked {
    const WHAT: &str = "attribute";
    let (mut keys, mut values) = (0u8, 0u8);
    fields(body, range, WHAT, |r, field, wt, at| {
        let twice = |why| Malformed {
            what: WHAT,
            why,
            at,
        };
        match (field, wt) {
            (1, WT_LEN) => {
                keys += 1;
                if keys > 1 {
                    return Err(twice("has its key twice"));
                }
                string(body, r.len_delimited(WHAT)?, "attribute key")?
            }
            (2, WT_LEN) => {
                values += 1;
                if values > 1 {
                    return Err(twice("has its value twice"));
                }
                any_value(body, r.len_delimited(WHAT)?, depth + 1)?
            }
            // key_strindex (int32), for dictionary-encoded signals.
            (3, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (1..=3, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// An `AnyValue`: string 1, bool 2, int 3, double 4, array 5, kvlist 6, bytes 7,
/// string_value_strindex 8.
pub fn any_value(body: &[u8], range: Range<usize>, depth: u32) -> Checked {
    const WHAT: &str = "attribute value";
    if depth > MAX_DEPTH {
        return Err(Malformed {
            what: WHAT,
            why: "nests too deep",
            at: range.start,
        });
    }
    fields(body, range, WHAT, |r, field, wt, at| {
        match (field, wt) {
            (1, WT_LEN) => string(body, r.len_delimited(WHAT)?, "string value")?,
            (2 | 3, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (4, WT_I64) => {
                r.fixed64(WHAT)?;
            }
            (5 | 6, WT_LEN) => {
                // ArrayValue { values = 1: AnyValue }, KeyValueList { values = 1: KeyValue }.
                let inner = r.len_delimited(WHAT)?;
                let array = field == 5;
                fields(body, inner, WHAT, |r, f, wt, at| {
                    match (f, wt) {
                        (1, WT_LEN) if array => any_value(body, r.len_delimited(WHAT)?, depth + 1)?,
                        (1, WT_LEN) => key_value(body, r.len_delimited(WHAT)?, depth + 1)?,
                        (1, _) => return Err(wrong(WHAT, at)),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            (7, WT_LEN) => {
                r.len_delimited(WHAT)?;
            }
            // string_value_strindex (int32), for dictionary-encoded signals.
            (8, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (1..=8, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A `Span.Event`: time 1, name 2, attributes 3, dropped count 4.
pub fn event(body: &[u8], range: Range<usize>) -> Checked {
    const WHAT: &str = "event";
    fields(body, range, WHAT, |r, field, wt, at| {
        match (field, wt) {
            (1, WT_I64) => {
                r.fixed64(WHAT)?;
            }
            (2, WT_LEN) => string(body, r.len_delimited(WHAT)?, "event name")?,
            (3, WT_LEN) => key_value(body, r.len_delimited(WHAT)?, 0)?,
            (4, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (1..=4, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// An id of `len` bytes where one of `n` (or none, 0) belongs. pdata, and so every backend
/// built on the Collector, refuses a whole request with one id of another length, so such
/// a span is refused alone here instead.
#[inline]
pub fn id_len(len: usize, n: usize, what: &'static str, at: usize) -> Checked {
    if len == 0 || len == n {
        return Ok(());
    }
    Err(Malformed {
        what,
        why: if n == 8 {
            "is not 8 bytes"
        } else {
            "is not 16 bytes"
        },
        at,
    })
}

/// A `Span.Link`: trace id 1, span id 2, trace state 3, attributes 4, dropped count 5,
/// flags 6.
pub fn link(body: &[u8], range: Range<usize>) -> Checked {
    const WHAT: &str = "link";
    fields(body, range, WHAT, |r, field, wt, at| {
        match (field, wt) {
            (1, WT_LEN) => id_len(r.len_delimited(WHAT)?.len(), 16, "link trace_id", at)?,
            (2, WT_LEN) => id_len(r.len_delimited(WHAT)?.len(), 8, "link span_id", at)?,
            (3, WT_LEN) => string(body, r.len_delimited(WHAT)?, "link trace_state")?,
            (4, WT_LEN) => key_value(body, r.len_delimited(WHAT)?, 0)?,
            (5, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (6, WT_I32) => {
                r.skip(field, wt, at, WHAT)?;
            }
            (1..=6, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// A `Resource`: attributes 1, dropped count 2, entity refs 3 (strings only).
pub fn resource(body: &[u8], range: Range<usize>) -> Checked {
    const WHAT: &str = "resource";
    fields(body, range, WHAT, |r, field, wt, at| {
        match (field, wt) {
            (1, WT_LEN) => key_value(body, r.len_delimited(WHAT)?, 0)?,
            (2, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (3, WT_LEN) => {
                // EntityRef { schema_url = 1, type = 2, id_keys = 3, description_keys = 4 }.
                let inner = r.len_delimited(WHAT)?;
                fields(body, inner, "entity_ref", |r, f, wt, at| {
                    match (f, wt) {
                        (1..=4, WT_LEN) => string(body, r.len_delimited(WHAT)?, "entity_ref")?,
                        (1..=4, _) => return Err(wrong("entity_ref", at)),
                        _ => return Ok(false),
                    }
                    Ok(true)
                })?;
            }
            (1..=3, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

/// An `InstrumentationScope`: name 1, version 2, attributes 3, dropped count 4.
pub fn scope(body: &[u8], range: Range<usize>) -> Checked {
    const WHAT: &str = "scope";
    fields(body, range, WHAT, |r, field, wt, at| {
        match (field, wt) {
            (1 | 2, WT_LEN) => string(body, r.len_delimited(WHAT)?, "scope name or version")?,
            (3, WT_LEN) => key_value(body, r.len_delimited(WHAT)?, 0)?,
            (4, WT_VARINT) => {
                r.varint(WHAT)?;
            }
            (1..=4, _) => return Err(wrong(WHAT, at)),
            _ => return Ok(false),
        }
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use crate::test_util::{kv, FakeOtlp};
    use crate::wire::scan::SpanDefect;
    use crate::wire::{Scan, ScanError};
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue};
    use prost::Message;

    /// Encodes `req` with the first span's name replaced by `name` (raw bytes).
    fn with_raw_name(name: &[u8]) -> Vec<u8> {
        let mut req = FakeOtlp::traces(3).spans(1).seed(1).build();
        req.resource_spans[0].scope_spans[0].spans[0].name = "X".repeat(name.len());
        let mut body = req.encode_to_vec();
        let marker = "X".repeat(name.len());
        let at = body
            .windows(marker.len())
            .position(|w| w == marker.as_bytes())
            .unwrap_or_default();
        body[at..at + name.len()].copy_from_slice(name);
        body
    }

    /// Guarantees: the word-at-a-time ASCII check agrees with std's for every length up
    /// to 40 and a byte at or over 0x80 at every position (the overlapping last word and
    /// the 4-to-7-byte halves included).
    #[test]
    fn the_ascii_check_finds_a_high_byte_anywhere() {
        for len in 0..=40usize {
            let clean = vec![b'a'; len];
            assert!(super::ascii(&clean), "{len} ASCII bytes");
            for at in 0..len {
                for high in [0x80u8, 0xc3, 0xff] {
                    let mut b = clean.clone();
                    b[at] = high;
                    assert!(!super::ascii(&b), "{len} bytes, {high:#x} at {at}");
                    assert_eq!(super::utf8(&b), std::str::from_utf8(&b).is_ok());
                }
            }
        }
    }

    #[test]
    fn a_span_with_a_name_that_is_not_utf8_is_rejected_alone() {
        let body = with_raw_name(b"ab\xffcd");
        let mut scan = Scan::default();
        let scanned = scan.scan_request(&body).unwrap_or_else(|_| unreachable!());
        assert_eq!((scanned.valid, scanned.rejected), (2, 1));
        assert!(
            scanned.message.contains("name is not valid UTF-8"),
            "{}",
            scanned.message
        );
        assert!(matches!(
            scan.first_defect,
            Some(SpanDefect::Malformed(m)) if m.what == "name"
        ));
    }

    /// Scenario: a span of seven attributes, the third long (a two-byte length, off the
    /// scan's one-byte fast path), and a value of invalid UTF-8 at each other position in
    /// turn; then the same span with an attribute cut short (its length past the span's
    /// end) in the middle of the run.
    /// Guarantees: wherever the bad value sits in the run, its span alone is rejected for
    /// it, the long attribute read either way; a truncated attribute in a run rejects its
    /// span alone too (its siblings are read), reported at its length byte as the general
    /// path reports it.
    #[test]
    fn a_bad_attribute_anywhere_in_the_run_rejects_its_span() {
        const LONG: usize = 2;
        let request = |bad: Option<usize>| {
            let mut req = FakeOtlp::traces(3).spans(1).seed(5).attrs(0).build();
            let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
            for a in 0..7 {
                let value = match a {
                    LONG => "L".repeat(300),
                    _ if Some(a) == bad => "~~~~".into(),
                    _ => format!("v{a}"),
                };
                span.attributes.push(kv(&format!("k{a}"), &value));
            }
            req.encode_to_vec()
        };
        for bad in (0..7).filter(|a| *a != LONG) {
            let mut body = request(Some(bad));
            let at = body
                .windows(4)
                .position(|w| w == b"~~~~")
                .unwrap_or_default();
            body[at] = 0xff;
            let mut scan = Scan::default();
            let scanned = scan.scan_request(&body).unwrap_or_else(|_| unreachable!());
            assert_eq!((scanned.valid, scanned.rejected), (2, 1), "bad at {bad}");
            assert!(
                scanned.message.contains("not valid UTF-8"),
                "{}",
                scanned.message
            );
        }
        // The fifth attribute (k4) claims 0x7f bytes: past the span's end.
        let mut body = request(None);
        let at = body
            .windows(4)
            .position(|w| w == b"\x0a\x02k4")
            .unwrap_or_default()
            - 1;
        assert_eq!(body[at - 1], 0x4a, "the attribute's tag");
        body[at] = 0x7f;
        let mut scan = Scan::default();
        let scanned = scan.scan_request(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((scanned.valid, scanned.rejected), (2, 1));
        assert!(
            matches!(
                scan.first_defect,
                Some(SpanDefect::Malformed(m)) if m.what == "attributes" && m.why == "is truncated" && m.at == at
            ),
            "{:?}",
            scan.first_defect
        );
    }

    /// Scenario: a span attribute whose `KeyValue` writes its value twice (an empty one
    /// first, as a `mask` bypass would) or its key twice.
    /// Guarantees: the span is rejected alone, naming what is doubled; its siblings pass.
    #[test]
    fn an_attribute_with_its_key_or_value_twice_is_rejected_alone() {
        for (patch, why) in [
            // value {}, then a 10-byte key, then the original value: same length.
            (&b"\x12\x00\x0a\x0aAAAAAAAAAA"[..], "has its value twice"),
            (&b"\x0a\x01x\x0a\x09AAAAAAAAA"[..], "has its key twice"),
        ] {
            let mut req = FakeOtlp::traces(3).spans(1).seed(4).build();
            req.resource_spans[0].scope_spans[0].spans[0]
                .attributes
                .push(kv("AAAAAAAAAAAA", "BB"));
            let mut body = req.encode_to_vec();
            let original = b"\x0a\x0cAAAAAAAAAAAA";
            let at = body
                .windows(original.len())
                .position(|w| w == original)
                .unwrap_or_default();
            assert_eq!(patch.len(), original.len());
            body[at..at + patch.len()].copy_from_slice(patch);
            let mut scan = Scan::default();
            let scanned = scan.scan_request(&body).unwrap_or_else(|_| unreachable!());
            assert_eq!((scanned.valid, scanned.rejected), (2, 1), "{why}");
            assert!(scanned.message.contains(why), "{}", scanned.message);
        }
    }

    /// Scenario: a span id of 7 bytes, a parent id of 9, a link trace id of 5, a link span
    /// id of 3; and empty ids, which protobuf and pdata read as none.
    /// Guarantees: each wrong length rejects its span alone, naming the id (a backend on
    /// pdata refuses a whole request with one); empty ids pass.
    #[test]
    fn ids_of_the_wrong_length_reject_their_span_alone() {
        use opentelemetry_proto::tonic::trace::v1::span::Link;
        type Mutate = fn(&mut opentelemetry_proto::tonic::trace::v1::Span);
        let cases: [(Mutate, &str); 5] = [
            (|s| s.span_id = vec![1; 7], "span_id is not 8 bytes"),
            (
                |s| s.parent_span_id = vec![1; 9],
                "parent_span_id is not 8 bytes",
            ),
            (
                |s| {
                    s.links.push(Link {
                        trace_id: vec![1; 5],
                        span_id: vec![1; 8],
                        ..Default::default()
                    })
                },
                "link trace_id is not 16 bytes",
            ),
            (
                |s| {
                    s.links.push(Link {
                        trace_id: vec![1; 16],
                        span_id: vec![1; 3],
                        ..Default::default()
                    })
                },
                "link span_id is not 8 bytes",
            ),
            (
                |s| {
                    s.parent_span_id.clear();
                    s.links.push(Link::default());
                },
                "",
            ),
        ];
        for (mutate, why) in cases {
            let mut req = FakeOtlp::traces(3).spans(1).seed(5).build();
            mutate(&mut req.resource_spans[0].scope_spans[0].spans[0]);
            let mut scan = Scan::default();
            let scanned = scan
                .scan_request(&req.encode_to_vec())
                .unwrap_or_else(|_| unreachable!());
            if why.is_empty() {
                assert_eq!((scanned.valid, scanned.rejected), (3, 0));
            } else {
                assert_eq!((scanned.valid, scanned.rejected), (2, 1), "{why}");
                assert!(scanned.message.contains(why), "{}", scanned.message);
            }
        }
    }

    /// Scenario: a scan reused after a request of 50,000 spans, trimmed.
    /// Guarantees: it keeps room for no more than `RETAINED_SPANS` spans, and scans the
    /// next request as a fresh one would.
    #[test]
    fn a_trimmed_scan_keeps_little_and_scans_alike() {
        let big = FakeOtlp::traces(25_000)
            .spans(2)
            .seed(6)
            .build()
            .encode_to_vec();
        let small = FakeOtlp::traces(3).spans(2).seed(7).build().encode_to_vec();
        let mut scan = Scan::default();
        scan.scan(&big).unwrap_or_else(|_| unreachable!());
        assert!(scan.spans.capacity() >= 50_000);
        scan.trim();
        assert!(scan.spans.capacity() <= Scan::RETAINED_SPANS);
        assert!(scan.spans.is_empty());
        scan.scan(&small).unwrap_or_else(|_| unreachable!());
        let mut fresh = Scan::default();
        fresh.scan(&small).unwrap_or_else(|_| unreachable!());
        assert_eq!(scan.spans, fresh.spans);
        assert_eq!(scan.headers, fresh.headers);
        // Empty resources, no span: 100,000 of them.
        let empty = b"\x0a\x00".repeat(100_000);
        scan.scan(&empty).unwrap_or_else(|_| unreachable!());
        assert!(scan.resources.capacity() >= 100_000);
        scan.trim();
        assert!(scan.resources.capacity() <= Scan::RETAINED_SPANS / 4);
    }

    #[test]
    fn attribute_values_are_checked_however_deep() {
        let mut req = FakeOtlp::traces(2).spans(1).seed(2).build();
        // Three levels of arrays around a string: fine.
        let mut value = AnyValue {
            value: Some(any_value::Value::StringValue("ok".into())),
        };
        for _ in 0..3 {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let mut attr = kv("nested", "");
        attr.value = Some(value.clone());
        req.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .push(attr.clone());
        let mut scan = Scan::default();
        scan.scan(&req.encode_to_vec()).unwrap_or_default();
        assert_eq!((scan.spans.len(), scan.rejected), (2, 0));

        // Past MAX_DEPTH: the span is rejected.
        for _ in 0..super::MAX_DEPTH {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        attr.value = Some(value);
        req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![attr];
        scan.scan(&req.encode_to_vec()).unwrap_or_default();
        assert_eq!((scan.spans.len(), scan.rejected), (1, 1));
        assert!(scan
            .first_defect
            .is_some_and(|d| d.to_string().contains("nests too deep")));
    }

    /// Scenario: a span attribute's value nested in 39 and 40 arrays, 20 and 21 maps.
    /// Guarantees: the limits operations.md states: 39 arrays and 20 maps are taken, one
    /// more of either rejects the span.
    #[test]
    fn the_nesting_limits_are_as_documented() {
        use opentelemetry_proto::tonic::common::v1::{KeyValue, KeyValueList};
        let arrays = |n: usize| {
            (0..n).fold(AnyValue::default(), |v, _| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            })
        };
        let maps = |n: usize| {
            (0..n).fold(AnyValue::default(), |v, _| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: "k".into(),
                        value: Some(v),
                        ..Default::default()
                    }],
                })),
            })
        };
        for (value, rejected) in [
            (arrays(39), 0),
            (arrays(40), 1),
            (maps(20), 0),
            (maps(21), 1),
        ] {
            let mut req = FakeOtlp::traces(2).spans(1).seed(2).build();
            let mut attr = kv("nested", "");
            attr.value = Some(value);
            req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![attr];
            let mut scan = Scan::default();
            // The request is taken either way; only the nested span may be rejected.
            scan.scan(&req.encode_to_vec()).unwrap();
            assert_eq!(scan.rejected, rejected, "{:?}", scan.first_defect);
        }
    }

    #[test]
    fn a_resource_attribute_that_is_not_utf8_refuses_the_request() {
        let mut req = FakeOtlp::traces(2).spans(1).seed(3).build();
        let resource = req.resource_spans[0]
            .resource
            .get_or_insert_with(Default::default);
        resource.attributes.push(kv("host.name", "QQQQ"));
        let mut body = req.encode_to_vec();
        let at = body
            .windows(4)
            .position(|w| w == b"QQQQ")
            .unwrap_or_default();
        body[at] = 0xc3; // a lead byte with no continuation
        let err = Scan::default().scan(&body).unwrap_err();
        assert!(
            matches!(err, ScanError::Malformed(m) if m.what == "string value"),
            "{err}"
        );
    }

    /// Found by the fuzz target: `key_strindex` (KeyValue field 3) is an int32, and prost
    /// refuses it sent as bytes.
    #[test]
    fn known_fields_of_newer_otlp_keep_their_wire_types() {
        // KeyValue { key: "k", 3: bytes "x" } and KeyValue { key: "k", 3: varint 7 }.
        let bad = [0x0a, 0x01, b'k', 0x1a, 0x01, b'x'];
        let good = [0x0a, 0x01, b'k', 0x18, 0x07];
        assert!(super::key_value(&bad, 0..bad.len(), 0).is_err());
        assert!(super::key_value(&good, 0..good.len(), 0).is_ok());
        // AnyValue { 8: bytes } is refused, AnyValue { 8: varint } taken.
        let bad = [0x42, 0x01, b'x'];
        let good = [0x40, 0x05];
        assert!(super::any_value(&bad, 0..bad.len(), 0).is_err());
        assert!(super::any_value(&good, 0..good.len(), 0).is_ok());
    }

    /// Scenario: a span attribute of maps nested 20 deep, and 21 deep (operations.md: "20
    /// maps"). Guarantees: 20 is taken, 21 rejects the span alone.
    #[test]
    fn maps_nest_twenty_deep() {
        use opentelemetry_proto::tonic::common::v1::KeyValueList;
        let nested = |levels: usize| {
            let mut value = AnyValue {
                value: Some(any_value::Value::StringValue("deep".into())),
            };
            for _ in 0..levels {
                let mut inner = kv("k", "");
                inner.value = Some(value);
                value = AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: vec![inner],
                    })),
                };
            }
            let mut attr = kv("map", "");
            attr.value = Some(value);
            let mut req = FakeOtlp::traces(1).spans(1).resources(1).seed(9).build();
            req.resource_spans[0].scope_spans[0].spans[0].attributes = vec![attr];
            let mut scan = Scan::default();
            scan.scan(&req.encode_to_vec()).unwrap_or_default();
            (scan.spans.len(), scan.rejected)
        };
        assert_eq!(nested(20), (1, 0));
        assert_eq!(nested(21), (0, 1));
    }

    /// Found in review: nesting counted in attribute levels let through values prost
    /// refuses at 100 nested messages. The deepest value accepted, in an event (the deepest
    /// place an attribute sits), must decode with prost.
    #[test]
    fn the_deepest_value_accepted_decodes_with_prost() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let mut value = AnyValue {
            value: Some(any_value::Value::StringValue("deep".into())),
        };
        // key_value counts one level for the value itself, and one per array.
        for _ in 0..super::MAX_DEPTH - 1 {
            value = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![value],
                })),
            };
        }
        let mut attr = kv("deep", "");
        attr.value = Some(value.clone());
        let mut req = FakeOtlp::traces(1).spans(1).resources(1).seed(5).build();
        req.resource_spans[0].scope_spans[0].spans[0].events = vec![Event {
            name: "e".into(),
            attributes: vec![attr.clone()],
            ..Default::default()
        }];
        let body = req.encode_to_vec();
        let mut scan = Scan::default();
        scan.scan(&body).unwrap_or_default();
        assert_eq!((scan.spans.len(), scan.rejected), (1, 0));
        assert!(ExportTraceServiceRequest::decode(&body[..]).is_ok());
        // One level more is refused.
        attr.value = Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        });
        req.resource_spans[0].scope_spans[0].spans[0].events[0].attributes = vec![attr];
        scan.scan(&req.encode_to_vec()).unwrap_or_default();
        assert_eq!((scan.spans.len(), scan.rejected), (0, 1));
    }

    /// Found in review: a status message sent twice is decoded twice by prost, so both
    /// must be UTF-8.
    #[test]
    fn every_status_message_is_checked() {
        // Span { trace_id, status { message "\xff", message "ok" } }.
        let mut span = vec![0x0a, 16];
        span.extend_from_slice(&[1; 16]);
        span.extend_from_slice(&[0x7a, 7, 0x12, 1, 0xff, 0x12, 2, b'o', b'k']);
        let mut scope = vec![0x12, span.len() as u8];
        scope.extend_from_slice(&span);
        let mut rs = vec![0x12, scope.len() as u8];
        rs.extend_from_slice(&scope);
        let mut body = vec![0x0a, rs.len() as u8];
        body.extend_from_slice(&rs);
        let mut scan = Scan::default();
        scan.scan(&body).unwrap_or_default();
        assert_eq!((scan.spans.len(), scan.rejected), (0, 1));
    }

    /// Found by the property test: the fast path for int attributes let a ten-byte varint
    /// with a tenth byte past the 64th bit through.
    #[test]
    fn an_int_attribute_of_more_than_64_bits_is_refused() {
        // KeyValue { key: "k", value: AnyValue { int_value: ten-byte varint } }.
        let mut kv = vec![0x0a, 0x01, b'k', 0x12, 0x0b, 0x18];
        kv.extend_from_slice(&[0xff; 9]);
        kv.push(0x02);
        assert!(super::key_value(&kv, 0..kv.len(), 0).is_err());
        *kv.last_mut().unwrap_or(&mut 0) = 0x01;
        assert!(super::key_value(&kv, 0..kv.len(), 0).is_ok());
    }

    #[test]
    fn a_tenth_varint_byte_past_64_bits_is_refused() {
        // ExportTraceServiceRequest { 99: varint of ten bytes, the last one 0x02 }.
        let mut body = vec![(99 << 3) as u8 | 0x80, 0x06];
        body.extend_from_slice(&[0xff; 9]);
        body.push(0x02);
        assert!(matches!(
            Scan::default().scan(&body),
            Err(ScanError::BadVarint { .. })
        ));
        *body.last_mut().unwrap_or(&mut 0) = 0x01;
        assert!(Scan::default().scan(&body).is_ok());
    }
}
