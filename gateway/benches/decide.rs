#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Deciding one trace with a 10-policy plan, as issue 5 asks (goal: under 1 µs per trace
//! without regexes). Two plans: ten non-regex policies of the common kinds, and the same
//! with a regex `string_attribute`. The trace has 8 spans' worth of summary and 3 attribute
//! values, the plan's keys.
//!
//! `ottl_condition`: one policy with a typical three-clause condition over a 20-span trace
//! (one resource, attributes like an HTTP server's) where every span is evaluated and none
//! matches, the condition's worst case (goal: under 2 µs per trace).

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tailgate_core::wire::attrs::AttrValue;
use tailgate_gateway::buffer::{TraceAttr, TraceSummary, TraceView};
use tailgate_gateway::{PolicyFile, PolicyPlan};

const PLAIN: &str = "policies:
  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}
  - {name: slow, type: latency, latency: {threshold_ms: 500}}
  - {name: very-slow, type: latency, latency: {threshold_ms: 2000, upper_threshold_ms: 60000}}
  - {name: big, type: span_count, span_count: {min_spans: 100}}
  - {name: vip, type: string_attribute, string_attribute: {key: customer.tier, values: [gold, platinum]}}
  - {name: 5xx, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}
  - {name: debug, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}
  - name: slow-vip
    type: and
    and: {and_sub_policy: [{name: s, type: latency, latency: {threshold_ms: 200}}, {name: v, type: string_attribute, string_attribute: {key: customer.tier, values: [gold]}}]}
  - name: no-tiny
    type: drop
    drop: {drop_sub_policy: [{name: one, type: span_count, span_count: {min_spans: 1, max_spans: 1}}]}
  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 5}}
";

fn summary(plan: &PolicyPlan) -> TraceSummary {
    let mut s = TraceSummary::default();
    for i in 0..8u64 {
        s.add_span(1_000 + i, 50_000_000 + i, 0, i == 0);
    }
    let key = |k: &str| {
        plan.attribute_keys()
            .iter()
            .position(|x| x == k)
            .unwrap_or(0) as u16
    };
    s.add_attrs(&[
        TraceAttr {
            key: key("customer.tier"),
            value: AttrValue::Str(bytes::Bytes::from_static(b"silver")),
            from_resource: true,
            from_root: false,
        },
        TraceAttr {
            key: key("http.status_code"),
            value: AttrValue::Int(200),
            from_resource: false,
            from_root: false,
        },
        TraceAttr {
            key: key("debug"),
            value: AttrValue::Bool(false),
            from_resource: false,
            from_root: false,
        },
    ]);
    s
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_10_policies");
    group.throughput(Throughput::Elements(1));
    let regex = PLAIN.replace(
        "values: [gold, platinum]}",
        "values: ['^(gold|platinum)$'], enabled_regex_matching: true}",
    );
    // Four policies swapped for the stateful kinds: adaptive_rate keyed by an attribute,
    // rate_limiting, a composite, and trace_state.
    let rated = PLAIN
        .replace(
            "{name: vip, type: string_attribute, string_attribute: {key: customer.tier, values: [gold, platinum]}}",
            "{name: adaptive, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 100, keys: [customer.tier]}}",
        )
        .replace(
            "{name: debug, type: boolean_attribute, boolean_attribute: {key: debug, value: true}}",
            "{name: budget, type: rate_limiting, rate_limiting: {spans_per_second: 1000}}",
        )
        .replace(
            "{name: 5xx, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}",
            "{name: shared, type: composite, composite: {max_total_spans_per_second: 1000, composite_sub_policy: [{name: 5xx, type: numeric_attribute, numeric_attribute: {key: http.status_code, min_value: 500, max_value: 599}}, {name: rest, type: always_sample}], rate_allocation: [{policy: 5xx, percent: 50}, {policy: rest, percent: 50}]}}",
        )
        .replace(
            "{name: big, type: span_count, span_count: {min_spans: 100}}",
            "{name: canary, type: trace_state, trace_state: {key: deploy, values: [canary]}}",
        );
    assert_ne!(rated, PLAIN);
    for (name, yaml) in [
        ("plain", PLAIN.to_owned()),
        ("with_regex", regex),
        ("rate_based", rated),
    ] {
        let file = PolicyFile::parse(Path::new("bench.yaml"), &yaml).expect("valid policies");
        assert_eq!(file.policies.len(), 10);
        let plan = PolicyPlan::compile(&file);
        let s = summary(&plan);
        let mut id = [7u8; 16];
        // The shards read the clock once per batch of decisions, not per trace.
        let now = tokio::time::Instant::now();
        group.bench_function(name, |b| {
            b.iter(|| {
                id[0] = id[0].wrapping_add(1);
                plan.decide(&TraceView {
                    trace_id: &id,
                    summary: &s,
                    spans: tailgate_gateway::buffer::Spans::EMPTY,
                    now,
                })
                .sampled
            })
        });
    }
    group.finish();
}

fn ottl_trace() -> (tailgate_gateway::buffer::SpanList, TraceSummary) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let s = |v: &str| any_value::Value::StringValue(v.into());
    let spans = (0..20u8)
        .map(|i| Span {
            trace_id: vec![9; 16],
            span_id: vec![i + 1; 8],
            parent_span_id: if i == 0 { vec![] } else { vec![1; 8] },
            name: format!("GET /api/items/{i}"),
            kind: 2,
            start_time_unix_nano: 1_000_000_000 + u64::from(i) * 1000,
            end_time_unix_nano: 1_050_000_000,
            attributes: vec![
                kv("http.request.method", s("GET")),
                kv("http.route", s("/api/items/{id}")),
                kv("url.path", s("/api/items/42")),
                kv("server.address", s("items.internal")),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                kv("network.protocol.version", s("1.1")),
            ],
            status: Some(Status::default()),
            ..Default::default()
        })
        .collect();
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", s("checkout")),
                    kv("service.version", s("1.4.2")),
                    kv("k8s.pod.name", s("checkout-7d9f8b6c5-x2k4p")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = bytes::Bytes::from(req.encode_to_vec());
    let file = PolicyFile::parse(
        Path::new("b.yaml"),
        "policies:\n  - {name: a, type: always_sample}\n",
    )
    .expect("valid policies");
    let plan = PolicyPlan::compile(&file);
    let mut scan = tailgate_core::wire::Scan::default();
    scan.scan(&body).expect("valid request");
    let mut summary = TraceSummary::default();
    let (req, incoming) = tailgate_gateway::buffer::incoming_spans(&body, &scan, &plan, None);
    let mut spans = tailgate_gateway::buffer::SpanList::new();
    for s in &incoming {
        summary.add_span(s.start, s.end, s.status_code, s.is_root);
        spans.push_in(&req, s.range);
    }
    (spans, summary)
}

fn bench_ottl(c: &mut Criterion) {
    let mut group = c.benchmark_group("ottl_condition_20_spans");
    group.throughput(Throughput::Elements(1));
    let yaml = r#"policies:
  - name: checkout-5xx
    type: ottl_condition
    ottl_condition:
      span:
        - 'resource.attributes["service.name"] == "checkout" and attributes["http.response.status_code"] >= 500 and kind == SPAN_KIND_SERVER'
"#;
    let file = PolicyFile::parse(Path::new("bench.yaml"), yaml).expect("valid policies");
    let plan = PolicyPlan::compile(&file);
    let (spans, summary) = ottl_trace();
    assert_eq!(spans.len(), 20);
    let id = [9u8; 16];
    let now = tokio::time::Instant::now();
    group.bench_function("three_clauses_no_match", |b| {
        b.iter(|| {
            plan.decide(&TraceView {
                trace_id: &id,
                summary: &summary,
                spans: spans.spans(),
                now,
            })
            .sampled
        })
    });
    group.finish();
}

criterion_group!(benches, bench, bench_ottl);
criterion_main!(benches);
