#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Differential tests of the wire scanner and re-framer against `prost`.

use bytes::BytesMut;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use proptest::prelude::*;
use prost::Message;
use tailgate_core::wire::reframe::{parts_of, Reframer};
use tailgate_core::wire::scan::Scan;

fn attr() -> impl Strategy<Value = KeyValue> {
    (
        "[a-z.]{1,12}",
        prop_oneof![
            "[ -~]{0,20}".prop_map(any_value::Value::StringValue),
            any::<i64>().prop_map(any_value::Value::IntValue),
            any::<bool>().prop_map(any_value::Value::BoolValue),
        ],
    )
        .prop_map(|(key, v)| KeyValue {
            key,
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        })
}

fn trace_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Mostly valid ids from a small pool, so several spans share a trace.
        20 => (1u8..6).prop_map(|b| vec![b; 16]),
        20 => proptest::collection::vec(any::<u8>(), 16).prop_filter("non-zero", |v| v.iter().any(|b| *b != 0)),
        1 => Just(vec![0u8; 16]),
        1 => proptest::collection::vec(any::<u8>(), 0..20).prop_filter("not 16", |v| v.len() != 16),
    ]
}

fn span() -> impl Strategy<Value = Span> {
    (
        trace_id(),
        proptest::collection::vec(any::<u8>(), 8),
        prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 8)],
        "[a-zA-Z/ ]{0,16}",
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(attr(), 0..5),
        proptest::option::of((0i32..3, "[a-z]{0,8}")),
        any::<u32>(),
        "[a-z=,]{0,10}",
    )
        .prop_map(
            |(trace_id, span_id, parent, name, start, end, attributes, status, flags, ts)| Span {
                trace_id,
                span_id,
                parent_span_id: parent,
                name,
                kind: 1,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: status.map(|(code, message)| Status { code, message }),
                flags,
                trace_state: ts,
                ..Default::default()
            },
        )
}

fn scope_spans() -> impl Strategy<Value = ScopeSpans> {
    (
        proptest::option::of("[a-z]{1,8}"),
        proptest::collection::vec(span(), 0..6),
        prop_oneof![Just(String::new()), Just("https://schema/1".to_string())],
    )
        .prop_map(|(name, spans, schema_url)| ScopeSpans {
            scope: name.map(|name| InstrumentationScope {
                name,
                version: "1.0".into(),
                ..Default::default()
            }),
            spans,
            schema_url,
        })
}

fn request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    proptest::collection::vec(
        (
            proptest::option::of(proptest::collection::vec(attr(), 0..4)),
            proptest::collection::vec(scope_spans(), 0..4),
            prop_oneof![Just(String::new()), Just("https://schema/r".to_string())],
        )
            .prop_map(|(attrs, scope_spans, schema_url)| ResourceSpans {
                resource: attrs.map(|attributes| Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans,
                schema_url,
            }),
        0..4,
    )
    .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}

fn valid(span: &Span) -> bool {
    span.trace_id.len() == 16 && span.trace_id.iter().any(|b| *b != 0)
}

/// Every valid span of a request, each with the resource and scope it sits under.
fn flatten(
    req: &ExportTraceServiceRequest,
) -> Vec<(Resource, String, InstrumentationScope, String, Span)> {
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        for ss in &rs.scope_spans {
            for s in &ss.spans {
                if valid(s) {
                    out.push((
                        rs.resource.clone().unwrap_or_default(),
                        rs.schema_url.clone(),
                        ss.scope.clone().unwrap_or_default(),
                        ss.schema_url.clone(),
                        s.clone(),
                    ));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Scenario: a random request, valid spans split over up to four destinations by a
    /// random assignment, each destination's request re-framed from the scan.
    /// Guarantees: prost decodes each re-framed request, and together they hold exactly the
    /// valid spans of the original, each under its own resource and scope, in order;
    /// invalid trace ids are counted, not forwarded; summary fields match prost's.
    #[test]
    fn scan_and_reframe_preserve_every_span(req in request(), seed in any::<u64>(), dests in 1usize..5) {
        let body = req.encode_to_vec();
        let mut scan = Scan::default();
        scan.scan(&body).unwrap();

        let expected = flatten(&req);
        let invalid = req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans).filter(|s| !valid(s)).count();
        prop_assert_eq!(scan.rejected as usize, invalid);
        prop_assert_eq!(scan.spans.len(), expected.len());

        for (entry, (_, _, _, _, span)) in scan.spans.iter().zip(&expected) {
            prop_assert_eq!(&entry.trace_id[..], &span.trace_id[..]);
            prop_assert_eq!(entry.start_unix_nano, span.start_time_unix_nano);
            prop_assert_eq!(entry.end_unix_nano, span.end_time_unix_nano);
            prop_assert_eq!(i32::from(entry.status_code), span.status.as_ref().map_or(0, |s| s.code));
            prop_assert_eq!(entry.is_root(), span.parent_span_id.is_empty());
        }

        let mut rng = fastrand_like(seed);
        let owner: Vec<usize> = scan.spans.iter().map(|_| (rng() as usize) % dests).collect();
        let mut reframer = Reframer::default();
        let mut got = Vec::new();
        for d in 0..dests {
            let parts: Vec<_> = (0..scan.spans.len()).filter(|&i| owner[i] == d).map(|i| parts_of(&body, &scan, i)).collect();
            let mut out = BytesMut::new();
            let n = reframer.encode(&parts, &mut out);
            prop_assert_eq!(n, out.len());
            let decoded = ExportTraceServiceRequest::decode(out.freeze()).unwrap();
            let flat = flatten(&decoded);
            let mine: Vec<_> = expected.iter().enumerate().filter(|(i, _)| owner[*i] == d).map(|(_, e)| e.clone()).collect();
            prop_assert_eq!(&flat, &mine);
            got.extend(flat);
        }
        prop_assert_eq!(got.len(), expected.len());
    }

    /// Scenario: two random requests split over a ring of one to four members by one
    /// reused `Splitter` (its scratch space carried from the first to the second), with and
    /// without the request's own bytes offered for the one-owner case.
    /// Guarantees: each part decodes to exactly the valid spans its owner has on the ring,
    /// in order, under their own resource and scope; the counts match; when one member owns
    /// every span and nothing was rejected, the part is the request's own bytes, uncopied.
    #[test]
    fn splitter_gives_each_owner_its_spans(a in request(), b in request(), members in 1usize..5) {
        use tailgate_core::ring::{Member, Ring};
        use tailgate_core::wire::split::Splitter;
        let ring = Ring::new((0..members).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
        let mut splitter = Splitter::default();
        for req in [a, b] {
            let body = bytes::Bytes::from(req.encode_to_vec());
            let mut scan = Scan::default();
            scan.scan(&body).unwrap();
            let expected = flatten(&req);
            let whole = (scan.rejected == 0).then_some(&body);
            for offer in [None, whole] {
                let parts = splitter.split(&ring, &body, &scan, offer);
                let mut total = 0;
                for (owner, n, part) in &parts {
                    let flat = flatten(&ExportTraceServiceRequest::decode(part.clone()).unwrap());
                    let mine: Vec<_> = expected
                        .iter()
                        .filter(|e| ring.owner_index(e.4.trace_id.as_slice().try_into().unwrap()) == Some(*owner))
                        .cloned()
                        .collect();
                    prop_assert_eq!(flat.len() as u64, *n);
                    prop_assert_eq!(&flat, &mine);
                    total += n;
                    if parts.len() == 1 && offer.is_some() {
                        prop_assert_eq!(part.as_ptr(), body.as_ptr());
                    }
                }
                prop_assert_eq!(total as usize, expected.len());
                let written: usize = parts.iter().map(|p| p.2.len()).sum();
                prop_assert!(written <= scan.split_bound(body.len(), members), "{} > bound", written);
            }
        }
    }

    /// Scenario: random requests split over one to four members with a part size cap from
    /// 64 bytes (smaller than most spans with their headers) to 4 KiB.
    /// Guarantees: each owner's parts, read in order, hold exactly its valid spans in their
    /// order under their own resource and scope; the counts add up; a request no larger
    /// than the cap is not cut; the repeated headers add at most the request's size to what
    /// the uncapped split may write.
    #[test]
    fn capped_split_cuts_parts_without_losing_or_reordering(req in request(), members in 1usize..5, cap in 64usize..4096) {
        use tailgate_core::ring::{Member, Ring};
        use tailgate_core::wire::split::Splitter;
        let ring = Ring::new((0..members).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
        let body = bytes::Bytes::from(req.encode_to_vec());
        let mut scan = Scan::default();
        scan.scan(&body).unwrap();
        let expected = flatten(&req);
        let whole = (scan.rejected == 0).then_some(&body);
        let parts = Splitter::default().split_capped(&ring, &body, &scan, whole, cap);
        let mut total = 0;
        for owner in 0..members {
            let mut got = Vec::new();
            for (_, n, part) in parts.iter().filter(|p| p.0 == owner) {
                let flat = flatten(&ExportTraceServiceRequest::decode(part.clone()).unwrap());
                prop_assert_eq!(flat.len() as u64, *n);
                prop_assert!(*n > 0);
                total += n;
                got.extend(flat);
            }
            let mine: Vec<_> = expected
                .iter()
                .filter(|e| ring.owner_index(e.4.trace_id.as_slice().try_into().unwrap()) == Some(owner))
                .cloned()
                .collect();
            prop_assert_eq!(&got, &mine);
        }
        prop_assert_eq!(total as usize, expected.len());
        if body.len() <= cap {
            prop_assert!(parts.len() <= members);
        }
        let written: usize = parts.iter().map(|p| p.2.len()).sum();
        let uncut = scan.split_bound(body.len(), members);
        let bound = uncut + tailgate_core::wire::split::cut_bound(&scan, body.len(), uncut, members, cap);
        prop_assert!(written <= bound, "{} > {}", written, bound);
    }

    /// Scenario: arbitrary bytes, and truncations of valid requests.
    /// Guarantees: the scanner never panics, and when prost rejects the bytes, so does the scan
    /// (a body the scan accepts decodes with prost, so a backend can read it).
    #[test]
    fn scan_rejects_what_prost_rejects(req in request(), cut in any::<prop::sample::Index>(), noise in proptest::collection::vec(any::<u8>(), 0..64)) {
        let body = req.encode_to_vec();
        let truncated = &body[..cut.index(body.len() + 1)];
        for bytes in [truncated, &noise[..]] {
            let mut scan = Scan::default();
            let ours = scan.scan(bytes);
            if ExportTraceServiceRequest::decode(bytes).is_err() {
                prop_assert!(ours.is_err(), "scan accepted what prost rejects: {:?}", bytes);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Scenario: valid requests with a few bytes overwritten, inserted or removed at random
    /// (what a fuzzer does; 31,449 of 2.2 M such bodies once passed the scan and then made
    /// a backend refuse the batch).
    /// Guarantees: the differential oracle holds: whatever the scan accepts re-frames into
    /// a request prost decodes, span for span (see `test_util::scan_oracle`; the fuzz target
    /// in `fuzz/` runs the same oracle with coverage guidance).
    #[test]
    fn mutated_requests_pass_the_prost_oracle(req in request(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6)) {
        let mut body = req.encode_to_vec();
        for (at, byte, kind) in edits {
            if body.is_empty() {
                break;
            }
            let i = at.index(body.len());
            match kind {
                0 => body[i] = byte,
                1 => body.insert(i, byte),
                _ => { body.remove(i); }
            }
        }
        if let Err(e) = tailgate_core::test_util::scan_oracle(&body) {
            prop_assert!(false, "{e}: {:?}", body);
        }
    }
}

fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    }
}

/// Scenario: one resource with a 100 KB attribute over 30 spans of different traces, split
/// among 3 gateways (the finding: admission counted the body, while every gateway's part
/// carries the resource).
/// Guarantees: the bound counts the resource once per gateway, and the parts fit in it.
#[test]
fn the_split_bound_counts_a_resource_per_gateway() {
    use tailgate_core::ring::{Member, Ring};
    use tailgate_core::wire::split::Splitter;
    let mut req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "big".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(100_000))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans::default()],
            ..Default::default()
        }],
    };
    for i in 0..30u8 {
        req.resource_spans[0].scope_spans[0].spans.push(Span {
            trace_id: vec![i + 1; 16],
            span_id: vec![1; 8],
            ..Default::default()
        });
    }
    let body = bytes::Bytes::from(req.encode_to_vec());
    let mut scan = Scan::default();
    scan.scan(&body).unwrap();
    let ring = Ring::new((0..3).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
    let parts = Splitter::default().split(&ring, &body, &scan, None);
    assert_eq!(parts.len(), 3);
    let written: usize = parts.iter().map(|p| p.2.len()).sum();
    let bound = scan.split_bound(body.len(), 3);
    assert!(written > body.len() + 2 * 100_000, "{written}");
    assert!(
        written <= bound && bound < written + 100,
        "{written} {bound}"
    );
    // One gateway: nothing is copied.
    assert_eq!(scan.split_bound(body.len(), 1), body.len());
}

/// Scenario: a span whose `trace_id` field has the wrong wire type, between two good
/// spans of another resource; then the same bad span cut short (a field's length past the
/// span's end, inside the span's own bounds).
/// Guarantees: the bad span is rejected alone, named with its message and offset; the
/// spans around it (another sender's, say) are accepted, as a bad span costs only its
/// own part of a request (docs/security.md).
#[test]
fn a_span_malformed_inside_its_bounds_is_rejected_alone() {
    let good = |id: u8| {
        let span = [&[0x0a, 16][..], &[id; 16], &[0x12, 8], &[id; 8]].concat();
        let scope = [&[0x12, span.len() as u8][..], &span].concat();
        [&[0x12, scope.len() as u8][..], &scope].concat()
    };
    for (bad_span, why) in [
        // trace_id as varint 5
        (&[0x08, 0x05][..], "has a field with a wrong wire type"),
        // name (5) claiming 9 bytes where 1 is left
        (&[0x2a, 0x09, b'x'][..], "is truncated"),
    ] {
        let scope = [&[0x12, bad_span.len() as u8][..], bad_span].concat();
        let bad = [&[0x12, scope.len() as u8][..], &scope].concat();
        let body: Vec<u8> = [good(1), bad, good(2)]
            .iter()
            .flat_map(|resource| [&[0x0a, resource.len() as u8][..], resource].concat())
            .collect();
        let mut scan = Scan::default();
        let scanned = scan.scan_request(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((scanned.valid, scanned.rejected), (2, 1), "{why}");
        assert!(scanned.message.contains(why), "{}", scanned.message);
        let ids: Vec<u8> = scan.spans.iter().map(|s| s.trace_id[0]).collect();
        assert_eq!(ids, [1, 2], "{why}");
    }
}

/// Scenario: a span whose `status` field appears twice (issue 14 item 12), as protobuf
/// merges it: `{code: ERROR}` then `{message: "x"}`, and `{code: OK}` then `{code: ERROR}`.
/// Guarantees: the scan reads the status prost decodes (the merged one), never UNSET.
#[test]
fn a_status_sent_twice_is_merged_as_protobuf_does() {
    for (first, second) in [
        (
            Status {
                code: 2,
                message: String::new(),
            },
            Status {
                code: 0,
                message: "x".into(),
            },
        ),
        (
            Status {
                code: 1,
                message: String::new(),
            },
            Status {
                code: 2,
                message: String::new(),
            },
        ),
    ] {
        let span = Span {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            status: Some(first.clone()),
            ..Default::default()
        };
        let mut bytes = span.encode_to_vec();
        // Append a second status field (15, length-delimited) to the span message.
        let extra = Span {
            status: Some(second),
            ..Default::default()
        }
        .encode_to_vec();
        bytes.extend_from_slice(&extra);
        let want = Span::decode(bytes.as_slice()).unwrap().status.unwrap().code;
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // Wrap the hand-made span bytes: scope_spans.spans = 2, resource_spans.scope_spans = 2.
        let mut scope = req.resource_spans[0].scope_spans[0].encode_to_vec();
        scope.push(0x12);
        prost::encoding::encode_varint(bytes.len() as u64, &mut scope);
        scope.extend_from_slice(&bytes);
        let mut rs = Vec::new();
        rs.push(0x12);
        prost::encoding::encode_varint(scope.len() as u64, &mut rs);
        rs.extend_from_slice(&scope);
        let mut body = vec![0x0a];
        prost::encoding::encode_varint(rs.len() as u64, &mut body);
        body.extend_from_slice(&rs);
        let mut scan = tailgate_core::wire::Scan::default();
        scan.scan(&body).unwrap();
        assert_eq!(scan.spans.len(), 1);
        assert_eq!(
            i32::from(scan.spans[0].status_code),
            want,
            "{first:?} then merged"
        );
        assert_eq!(want, 2);
    }
}

/// A request of `traces` one-span traces under one resource with `header` bytes of
/// attributes.
fn one_span_traces(traces: u32, header: usize) -> ExportTraceServiceRequest {
    let spans = (1..=traces)
        .map(|i| Span {
            trace_id: [i.to_be_bytes(), [7; 4], [8; 4], i.to_le_bytes()].concat(),
            span_id: vec![1; 8],
            name: "GET /".into(),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "big".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("x".repeat(header))),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

/// Scenario: 20,000 one-span traces (a 1 MB request, the shape that once reached a gateway
/// whole and was refused there on every retry) split over three members with a 64 KiB cap.
/// Guarantees: no part is over the cap, every span is in exactly one part, and the parts
/// are few (each nearly full).
#[test]
fn a_request_of_many_small_traces_is_cut_to_the_cap() {
    use tailgate_core::ring::{Member, Ring};
    use tailgate_core::wire::split::Splitter;
    let ring = Ring::new((0..3).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
    let body = bytes::Bytes::from(one_span_traces(20_000, 40).encode_to_vec());
    let mut scan = Scan::default();
    scan.scan(&body).unwrap();
    let cap = 64 << 10;
    let parts = Splitter::default().split_capped(&ring, &body, &scan, Some(&body), cap);
    assert!(
        parts.iter().all(|p| p.2.len() <= cap),
        "a part is over the cap"
    );
    assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), 20_000);
    let written: usize = parts.iter().map(|p| p.2.len()).sum();
    assert!(
        parts.len() <= written / (cap - 1024) + 3,
        "{} parts for {written} bytes",
        parts.len()
    );
    let mut ids: Vec<Vec<u8>> = parts
        .iter()
        .flat_map(|p| flatten(&ExportTraceServiceRequest::decode(p.2.clone()).unwrap()))
        .map(|e| e.4.trace_id)
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20_000);
}

/// Scenario: tiny spans under one resource header larger than the cap: 2,000 under 64 KiB
/// cut at 1 KiB, and 40,000 under 1 MiB cut at 64 KiB (the shape of a 6 MB header over
/// 200,000 spans that a gateway with a 64 MiB buffer refused for good when the cut weighed
/// span bytes alone).
/// Guarantees: parts are cut only once their spans outweigh the header they make the next
/// part repeat, weighing each span as a gateway charges it: the header is not repeated per
/// span (2,000 × 64 KiB), the whole stays within `cut_bound`, and each part's worst-case
/// charge at a gateway is about twice the header, not the header's whole share of spans.
#[test]
fn a_huge_header_is_not_repeated_per_span() {
    use tailgate_core::ring::{Member, Ring};
    use tailgate_core::wire::split::{cut_bound, Splitter, GATEWAY_SPAN_CHARGE};
    let ring = Ring::new([Member::new("10.0.0.1:4317")]);
    for (spans, header, cap) in [
        (2_000u32, 64usize << 10, 1024usize),
        (40_000, 1 << 20, 64 << 10),
    ] {
        let body = bytes::Bytes::from(one_span_traces(spans, header).encode_to_vec());
        let mut scan = Scan::default();
        scan.scan(&body).unwrap();
        let parts = Splitter::default().split_capped(&ring, &body, &scan, Some(&body), cap);
        assert_eq!(parts.iter().map(|p| p.1).sum::<u64>(), u64::from(spans));
        let written: usize = parts.iter().map(|p| p.2.len()).sum();
        assert!(parts.len() > 1, "the request was not cut at all");
        let uncut = scan.split_bound(body.len(), 1);
        let bound = uncut + cut_bound(&scan, body.len(), uncut, 1, cap);
        assert!(
            written <= bound,
            "{written} written for {}, bound {bound}",
            body.len()
        );
        for (_, n, part) in &parts {
            let charge = part.len() + *n as usize * GATEWAY_SPAN_CHARGE;
            assert!(
                charge <= 2 * header + cap + 1024,
                "a part of {n} spans may cost {charge} under a {header}-byte header"
            );
        }
    }
}

/// Scenario: tiny spans under a resource header of 1,500 bytes, cut at 1,700 bytes, as a
/// router cuts a request a gateway refused as too large.
/// Guarantees: `split_capped` keeps spans together until they outweigh the header (a part
/// over the cap); `split_cut_to` cuts at the cap whatever the header weighs, so every part
/// it writes fits, and no span is lost or repeated.
#[test]
fn a_refused_request_is_cut_to_the_cap_whatever_its_header_weighs() {
    use tailgate_core::ring::{Member, Ring};
    use tailgate_core::wire::split::Splitter;
    let ring = Ring::new([Member::new("10.0.0.1:4317")]);
    let (spans, header, cap) = (200u32, 1_500usize, 1_700usize);
    let body = bytes::Bytes::from(one_span_traces(spans, header).encode_to_vec());
    let mut scan = Scan::default();
    scan.scan(&body).unwrap();
    let weighed = Splitter::default().split_capped(&ring, &body, &scan, None, cap);
    assert!(
        weighed.iter().any(|p| p.2.len() > cap),
        "the rule kept no part over the cap"
    );
    let cut = Splitter::default().split_cut_to(&ring, &body, &scan, cap);
    assert_eq!(cut.iter().map(|p| p.1).sum::<u64>(), u64::from(spans));
    assert!(
        cut.iter().all(|p| p.2.len() <= cap),
        "largest {}",
        cut.iter().map(|p| p.2.len()).max().unwrap_or(0)
    );
}

/// A group of unknown field `field`: a varint, a nested group of `field + 1` holding a
/// string, then its end (what a proto2 sender, or a future field written so, puts in).
fn unknown_group(field: u64) -> Vec<u8> {
    let mut g = Vec::new();
    prost::encoding::encode_varint((field << 3) | 3, &mut g);
    g.extend_from_slice(&[0x08, 0x05]);
    prost::encoding::encode_varint(((field + 1) << 3) | 3, &mut g);
    g.extend_from_slice(&[0x12, 0x02, b'h', b'i']);
    prost::encoding::encode_varint(((field + 1) << 3) | 4, &mut g);
    prost::encoding::encode_varint((field << 3) | 4, &mut g);
    g
}

/// A request of one span of trace `id`, with `extra` appended to the span, the scope
/// spans, the resource spans and the request, as chosen.
fn with_extra(id: u8, extra: &[u8], at: [bool; 4]) -> Vec<u8> {
    let wrap = |tag: u8, inner: &[u8]| {
        let mut out = vec![tag];
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    };
    let pick = |on: bool| if on { extra } else { &[][..] };
    let span = [
        &[0x0a, 16][..],
        &[id; 16],
        &[0x12, 8],
        &[id; 8],
        pick(at[0]),
    ]
    .concat();
    let scope = [wrap(0x12, &span), pick(at[1]).to_vec()].concat();
    let resource = [wrap(0x12, &scope), pick(at[2]).to_vec()].concat();
    [wrap(0x0a, &resource), pick(at[3]).to_vec()].concat()
}

/// Scenario: unknown fields sent as protobuf groups (wire types 3 and 4, valid protobuf)
/// in a span, a scope's spans, a resource's spans and the request; then groups that are
/// not well-formed: an end without a start, an end of another group, a group never
/// closed, groups nested 9 deep.
/// Guarantees: well-formed groups are skipped as prost skips them (the span accepted, its
/// trace id read, the oracle satisfied; before, the span or the whole request was
/// refused as a wrong wire type); malformed ones are refused, never accepted into spans
/// prost cannot decode.
#[test]
fn unknown_fields_sent_as_groups_are_skipped() {
    let group = unknown_group(90);
    for at in [
        [true, false, false, false],
        [false, true, false, false],
        [false, false, true, false],
        [false, false, false, true],
        [true, true, true, true],
    ] {
        let body = with_extra(3, &group, at);
        let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(decoded.resource_spans[0].scope_spans[0].spans.len(), 1);
        let mut scan = Scan::default();
        let scanned = scan
            .scan_request(&body)
            .unwrap_or_else(|e| panic!("{at:?}: {e}"));
        assert_eq!((scanned.valid, scanned.rejected), (1, 0), "{at:?}");
        assert_eq!(scan.spans[0].trace_id, [3; 16]);
        tailgate_core::wire::oracle::scan_oracle(&body).unwrap();
    }
    let nested = |levels: u64| {
        let mut g = Vec::new();
        for f in 0..levels {
            prost::encoding::encode_varint(((100 + f) << 3) | 3, &mut g);
        }
        for f in (0..levels).rev() {
            prost::encoding::encode_varint(((100 + f) << 3) | 4, &mut g);
        }
        g
    };
    // Eight levels are skipped; nine are refused (no sender nests them at all).
    let body = with_extra(5, &nested(8), [true, false, false, true]);
    assert_eq!(Scan::default().scan_request(&body).map(|s| s.valid), Ok(1));
    ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    tailgate_core::wire::oracle::scan_oracle(&body).unwrap();
    let deep = nested(9);
    let stray_end = vec![0xd4, 0x05]; // field 90, wire type 4 (724 as a varint)
    let mismatched = [&group[..group.len() - 2], &[0xec, 0x05][..]].concat(); // ends 93
    let unclosed = group[..group.len() - 2].to_vec();
    for (bad, what) in [
        (&stray_end, "an end without a start"),
        (&mismatched, "the end of another group"),
        (&unclosed, "a group never closed"),
        (&deep, "groups 9 deep"),
    ] {
        for at in [[true, false, false, false], [false, false, false, true]] {
            let body = with_extra(4, bad, at);
            let mut scan = Scan::default();
            let accepted = scan.scan_request(&body).map(|s| s.valid).unwrap_or(0);
            assert_eq!(accepted, 0, "{what} at {at:?}");
            tailgate_core::wire::oracle::scan_oracle(&body).unwrap();
        }
    }
}
