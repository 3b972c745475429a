#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! docs/migrating.md's translation of a Honeycomb Refinery rules file
//! (examples/refinery-rules.yaml → examples/from-refinery.yaml) decides as the rules do,
//! end to end, and Honeycomb's `SampleRate` field is written on kept spans.

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{
    status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};
use prost::Message;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn attr(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// What each kind of trace is, and what the Refinery rules do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// Root `http.route: /healthz/ready`, with a 503 child: dropped (the drop rule is first).
    Health,
    /// A child with `http.response.status_code: 503` (an int): kept, rate 1.
    ServerError,
    /// A child with `http.status_code: "502"` (a string; `Datatype: int` converts): kept.
    OldServerError,
    /// A child with status ERROR: kept, rate 1.
    Error,
    /// A child with a span attribute named `error` and no ERROR status (Honeycomb's
    /// `error` field exists for either): kept, rate 1.
    ErrorAttribute,
    /// A root with `http.status_code: "n/a"` (no number: `Int` gives nil, the comparison
    /// is false, no error) and a child with a 503: kept by the child, rate 1.
    NotANumber,
    /// A root lasting 6 s: kept, rate 1.
    Slow,
    /// A 6 s child under a short root: the slow rule needs the root (Scope: span).
    SlowChild,
    /// Nothing of the above: 1 in 100, rate 100.
    Other,
}

fn trace(id: [u8; 16], kind: Kind) -> Vec<Span> {
    let start = 1_764_000_000_000_000_000u64;
    let span = |n: u8, parent: Option<u8>, millis: u64| Span {
        trace_id: id.to_vec(),
        span_id: vec![n; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("span {n}"),
        start_time_unix_nano: start,
        end_time_unix_nano: start + millis * 1_000_000,
        ..Default::default()
    };
    let mut root = span(1, None, if kind == Kind::Slow { 6_000 } else { 40 });
    let mut child = span(2, Some(1), if kind == Kind::SlowChild { 6_000 } else { 10 });
    root.attributes.push(attr(
        "http.route",
        Value::StringValue(
            if kind == Kind::Health {
                "/healthz/ready"
            } else {
                "/api/pay"
            }
            .into(),
        ),
    ));
    match kind {
        Kind::NotANumber => {
            root.attributes
                .push(attr("http.status_code", Value::StringValue("n/a".into())));
            child
                .attributes
                .push(attr("http.response.status_code", Value::IntValue(503)));
        }
        Kind::Health | Kind::ServerError => child
            .attributes
            .push(attr("http.response.status_code", Value::IntValue(503))),
        Kind::OldServerError => child
            .attributes
            .push(attr("http.status_code", Value::StringValue("502".into()))),
        Kind::Error => {
            child.status = Some(Status {
                code: StatusCode::Error as i32,
                message: String::new(),
            })
        }
        Kind::ErrorAttribute => child
            .attributes
            .push(attr("error", Value::StringValue("timeout".into()))),
        _ => child
            .attributes
            .push(attr("http.response.status_code", Value::IntValue(200))),
    }
    vec![root, child]
}

/// Scenario: the translated policy file (its waits shortened for the test) on a gateway;
/// two traces of each notable kind and 1,000 ordinary ones, each sent whole.
/// Guarantees: health checks are dropped though they hold a 503 (Refinery's first rule);
/// server errors (an int, or a string as `Datatype: int` reads it), errors (a status or an
/// `error` attribute, as Honeycomb's `error` field) and slow roots are kept with `SampleRate` 1; a slow child under a quick root is not a slow request;
/// ordinary traces are kept 1 in 100 (between 3 and 25 of 1,000) with `SampleRate` 100, an
/// integer as Honeycomb reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_translated_refinery_rules_decide_as_the_rules_do() {
    let text = std::fs::read_to_string(root().join("examples/from-refinery.yaml")).unwrap();
    let text = text
        .replace("decision_wait: 60s ", "decision_wait: 300ms ")
        .replace(
            "decision_wait_after_root_received: 2s ",
            "decision_wait_after_root_received: 100ms ",
        );
    assert!(text.contains("decision_wait: 300ms") && text.contains("received: 100ms"));
    let gw = common::spawn_gateway([127, 0, 0, 11], common::plan(&text), |_, _| {}).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
        .await
        .unwrap();
    let mut sent: HashMap<Vec<u8>, Kind> = HashMap::new();
    let notable = [
        Kind::Health,
        Kind::ServerError,
        Kind::OldServerError,
        Kind::Error,
        Kind::ErrorAttribute,
        Kind::NotANumber,
        Kind::Slow,
        Kind::SlowChild,
    ];
    let kinds = notable
        .iter()
        .chain(notable.iter())
        .copied()
        .chain(std::iter::repeat_n(Kind::Other, 1_000));
    let mut spans = Vec::new();
    for (i, kind) in kinds.enumerate() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let hash = xxhash_rust::xxh3::xxh3_64(&id[..8]);
        id[8..].copy_from_slice(&hash.to_be_bytes());
        sent.insert(id.to_vec(), kind);
        spans.extend(trace(id, kind));
    }
    for chunk in spans.chunks(500) {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: chunk.to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        client.export(request).await.unwrap();
    }
    gw.settle(Duration::from_secs(10)).await;

    let mut kept: HashMap<Vec<u8>, (Kind, Vec<i64>)> = HashMap::new();
    for body in gw.backend.bodies() {
        let request = ExportTraceServiceRequest::decode(body).unwrap();
        for span in request
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
        {
            let rate = match span
                .attributes
                .iter()
                .find(|kv| kv.key == "SampleRate")
                .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            {
                Some(Value::IntValue(n)) => *n,
                other => panic!("SampleRate {other:?}"),
            };
            let kind = sent[&span.trace_id];
            kept.entry(span.trace_id)
                .or_insert((kind, Vec::new()))
                .1
                .push(rate);
        }
    }
    let count = |k: Kind| kept.values().filter(|(kind, _)| *kind == k).count();
    assert_eq!(count(Kind::Health), 0, "health checks dropped");
    for k in [
        Kind::ServerError,
        Kind::OldServerError,
        Kind::Error,
        Kind::ErrorAttribute,
        Kind::NotANumber,
        Kind::Slow,
    ] {
        assert_eq!(count(k), 2, "{k:?} kept");
    }
    let others = count(Kind::Other) + count(Kind::SlowChild);
    assert!((3..=25).contains(&others), "1 in 100 of the rest: {others}");
    for (kind, rates) in kept.values() {
        assert_eq!(rates.len(), 2, "whole traces");
        let want = match kind {
            Kind::Other | Kind::SlowChild => 100,
            _ => 1,
        };
        assert!(rates.iter().all(|r| *r == want), "{kind:?}: {rates:?}");
    }
    gw.stop().await;
}

/// Scenario: docs/migrating.md shows the translated file.
/// Guarantees: what it shows is examples/from-refinery.yaml as tested above, and the rules
/// file it translates is the one in examples/.
#[test]
fn the_doc_shows_the_tested_files() {
    let doc = std::fs::read_to_string(root().join("docs/migrating.md")).unwrap();
    for file in [
        "examples/from-refinery.yaml",
        "examples/refinery-rules.yaml",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        // The doc shows the files without their two comment lines at the top.
        let body: String = text
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            doc.contains(&body),
            "docs/migrating.md shows {file} as it is"
        );
    }
    // Its Honeycomb exporter block loads (the key given in place of the variable).
    let start = doc.find("```yaml\nexport:\n  otlp/honeycomb:").unwrap() + "```yaml\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    let dir = tailgate_core::test_util::scratch_dir("gw-honeycomb").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        block.replace("${env:HONEYCOMB_API_KEY}", "hcaik_test"),
    )
    .unwrap();
    let config = tailgate_gateway::GatewayConfig::load(&path).unwrap();
    let tailgate_gateway::export::ExporterConfig::OtlpGrpc(honeycomb) =
        &config.export.exporters[0].1
    else {
        panic!("{:?}", config.export.exporters)
    };
    assert!(honeycomb.uses_tls());
    assert_eq!(honeycomb.headers["x-honeycomb-team"], "hcaik_test");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: docs/migrating.md's "Rule order" snippet (a drop rule below a keep rule, with
/// a `not` of it: a Refinery user's trial found the plain translation dropped a
/// `/healthz` trace with an error that Refinery keeps) after a keep-errors policy, and
/// its recording recipe's two files.
/// Guarantees: a `/healthz` trace with an error is kept, one without is dropped, another
/// route is kept by the rest; the recipe's gateway config and policies load.
#[test]
fn the_rule_order_snippet_decides_as_refinery() {
    let doc = std::fs::read_to_string(root().join("docs/migrating.md")).unwrap();
    // A ```yaml block of the doc, the indent of its opening line taken off every line.
    let block = |opening: &str| -> String {
        let start = doc.find(opening).unwrap_or_else(|| panic!("{opening}")) + "```yaml\n".len();
        let body = &doc[start..];
        let body = &body[..body.find("```").unwrap()];
        let indent = body.len() - body.trim_start_matches(' ').len();
        body.lines()
            .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
            .collect()
    };
    let drop = block("```yaml\n  - name: drop health checks");
    let policies = format!(
        "policies:\n  - {{name: keep errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}\n{}  - {{name: rest, type: always_sample}}\n",
        drop.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let file = tailgate_gateway::PolicyFile::parse(Path::new("order.yaml"), &policies)
        .unwrap_or_else(|e| panic!("{e}\n{policies}"));
    let line = |id: u8, route: &str, code: u8| {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{id:032x}","spanId":"{id:016x}","name":"GET","startTimeUnixNano":"1000","endTimeUnixNano":"2000","attributes":[{{"key":"http.route","value":{{"stringValue":"{route}"}}}}],"status":{{"code":{code}}}}}]}}]}}]}}"#
        )
    };
    let traces = [
        line(1, "/healthz", 2),
        line(2, "/healthz", 0),
        line(3, "/pay", 0),
    ]
    .join("\n");
    let kept = |id: u8| {
        tailgate_gateway::explain::explain(&file, &traces, Some(u128::from(id).to_be_bytes()))
            .unwrap()
            .trace
            .unwrap()
            .sampled
    };
    assert!(
        kept(1),
        "a /healthz trace with an error is kept, as Refinery keeps it"
    );
    assert!(!kept(2), "a plain /healthz trace is dropped");
    assert!(kept(3));
    // The recording recipe: its files load.
    let dir = tailgate_core::test_util::scratch_dir("gw-record").unwrap();
    let config = dir.join("record.yaml");
    std::fs::write(&config, block("```yaml\n# record.yaml")).unwrap();
    tailgate_gateway::GatewayConfig::load(&config).unwrap();
    tailgate_gateway::PolicyFile::parse(
        Path::new("keep-all.yaml"),
        &block("```yaml\n# keep-all.yaml"),
    )
    .unwrap();
}
