#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `attributes:` actions on kept spans (issue 16): what the backends get is scrubbed, what
//! the policies decide on is not.

use crate::common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use prost::Message;
use tailgate_core::test_util::{kv, FakeOtlp};
use tailgate_gateway::attributes::AttributesConfig;
use tailgate_gateway::export::{DebugConfig, ExporterConfig};

/// Keeps only traces whose span carries user.email = a@b.c: a policy reading the very key
/// that is deleted on the way out.
const KEEP_ALICE: &str = "decision_wait: 200ms\npolicies:\n  - {name: alice, type: string_attribute, string_attribute: {key: user.email, values: [a@b.c]}}\n";

/// The gateway's `attributes:` block: span, event and resource actions.
const SCRUB: &str = r#"
actions:
  - {key: user.email, action: delete}
  - {pattern: '^http\.request\.header\.', action: delete}
  - {key: user.id, action: hash}
  - {key: card, action: mask, value_pattern: '\d{4}(?:-\d{4}){3}'}
  - {key: session, action: mask}
  # insert keeps an existing value, and adds a missing one.
  - {key: http.route, action: insert, value: /overwritten}
  - {key: deployment.environment, action: insert, value: prod}
  # update changes an existing value, and adds nothing.
  - {pattern: '^user\.tier$', action: update, value: 7}
  - {key: never.there, action: update, value: true}
  # upsert does both.
  - {key: team, action: upsert, value: payments}
events:
  - {key: exception.message, action: mask, value_pattern: '[a-z]+@[a-z.]+'}
  - {key: user.email, action: delete}
resource:
  - {key: host.ip, action: delete}
  - {key: service.name, action: hash}
  - {key: k8s.cluster.name, action: upsert, value: eu-1}
"#;

/// Scenario: spans with `user.email` (deleted), `user.id` (hashed), a card number and a
/// session id (masked), `http.request.header.authorization` (deleted by pattern), events
/// with an email in their message and attributes, and resources with `host.ip` and
/// `service.name`; exported over OTLP/gRPC and to the `debug` file; the plan keeps traces
/// by `user.email`.
/// Guarantees: the policy saw the original email (Alice's traces kept, Bob's dropped); no
/// scrubbed key or value reaches either output, in spans, events or resources; hashed and
/// masked values arrive as documented; other attributes arrive unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_spans_leave_scrubbed_and_policies_see_the_originals() {
    let path = std::env::temp_dir().join(format!("tailgate-scrub-{}.jsonl", std::process::id()));
    std::fs::remove_file(&path).ok();
    let debug_path = path.to_string_lossy().into_owned();
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 61],
        common::plan(KEEP_ALICE),
        |c| {
            c.attributes = serde_yaml_ng::from_str::<AttributesConfig>(SCRUB).unwrap();
            let mut debug = DebugConfig {
                path: Some(debug_path.clone()),
                queue_bytes: 1 << 20,
                ..Default::default()
            };
            debug.batch.timeout = Duration::from_millis(20);
            c.export
                .exporters
                .push(("debug".into(), ExporterConfig::Debug(debug)));
        },
        |_, _| {},
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
        .await
        .unwrap();
    for (seed, email) in [(1u64, "a@b.c"), (2, "bob@b.c")] {
        let mut req = FakeOtlp::traces(3).spans(2).seed(seed).build();
        for span in req
            .resource_spans
            .iter_mut()
            .flat_map(|r| &mut r.scope_spans)
            .flat_map(|s| &mut s.spans)
        {
            span.attributes.push(kv("user.email", email));
            span.attributes.push(kv("user.id", "42"));
            span.attributes.push(kv(
                "http.request.header.authorization",
                "Bearer SECRET-TOKEN",
            ));
            span.attributes.push(kv("http.route", "/cart"));
            span.attributes.push(kv("user.tier", "gold"));
            span.attributes
                .push(kv("card", "paid with 4111-1111-1111-1111 today"));
            span.attributes.push(kv("session", "s3cr3t-session"));
            span.events.push(Event {
                name: "exception".into(),
                attributes: vec![
                    kv("exception.message", &format!("no account for {email}")),
                    kv("user.email", email),
                    kv("exception.type", "NotFound"),
                ],
                ..Default::default()
            });
        }
        for rs in &mut req.resource_spans {
            if let Some(resource) = rs.resource.as_mut() {
                resource.attributes.push(kv("host.ip", "10.1.2.3"));
            }
        }
        client.export(req).await.unwrap();
    }
    gw.settle(Duration::from_secs(10)).await;
    assert_eq!(gw.stats.exported_spans.get(), 6, "Alice's traces kept");
    assert_eq!(gw.stats.dropped_spans.get(), 6, "Bob's dropped");

    let mut seen = 0;
    for body in gw.backend.bodies() {
        let text = String::from_utf8_lossy(&body);
        assert!(!text.contains("user.email") && !text.contains("a@b.c"));
        assert!(!text.contains("authorization") && !text.contains("SECRET-TOKEN"));
        for secret in ["4111", "s3cr3t", "10.1.2.3", "host.ip", "service-"] {
            assert!(!text.contains(secret), "{secret} reached the backend");
        }
        let req = ExportTraceServiceRequest::decode(body).unwrap();
        for rs in &req.resource_spans {
            let resource = rs.resource.clone().unwrap_or_default();
            let value = |k: &str| {
                resource
                    .attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.clone()?.value)
            };
            let Some(any_value::Value::StringValue(service)) = value("service.name") else {
                panic!("service.name missing: {resource:?}");
            };
            assert_eq!(service.len(), 64, "a SHA-256 in hex: {service}");
            assert_eq!(
                value("k8s.cluster.name"),
                Some(any_value::Value::StringValue("eu-1".into()))
            );
        }
        for span in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let value = |k: &str| {
                span.attributes
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.clone()?.value)
            };
            assert_eq!(
                value("user.id"),
                Some(any_value::Value::StringValue(
                    "73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049".into()
                ))
            );
            assert_eq!(
                value("http.route"),
                Some(any_value::Value::StringValue("/cart".into()))
            );
            assert_eq!(
                value("deployment.environment"),
                Some(any_value::Value::StringValue("prod".into()))
            );
            assert_eq!(value("user.tier"), Some(any_value::Value::IntValue(7)));
            assert_eq!(value("never.there"), None);
            assert_eq!(
                value("team"),
                Some(any_value::Value::StringValue("payments".into()))
            );
            assert_eq!(
                value("card"),
                Some(any_value::Value::StringValue("paid with **** today".into()))
            );
            assert_eq!(
                value("session"),
                Some(any_value::Value::StringValue("****".into()))
            );
            let event = &span.events[0];
            let keys: Vec<&str> = event.attributes.iter().map(|a| a.key.as_str()).collect();
            assert_eq!(keys, ["exception.message", "exception.type"]);
            assert_eq!(
                event.attributes[0].value.clone().and_then(|v| v.value),
                Some(any_value::Value::StringValue("no account for ****".into()))
            );
            let keys: Vec<&str> = span.attributes.iter().map(|a| a.key.as_str()).collect();
            assert_eq!(keys.iter().filter(|k| **k == "team").count(), 1, "{keys:?}");
            seen += 1;
        }
    }
    assert_eq!(seen, 6);
    let debug = std::fs::read_to_string(&path).unwrap();
    assert!(
        debug.contains("http.route") && debug.contains("73475cb4"),
        "{debug}"
    );
    assert!(!debug.contains("user.email") && !debug.contains("SECRET-TOKEN"));
    assert!(!debug.contains("4111") && !debug.contains("10.1.2.3"));
    gw.stop().await;
    std::fs::remove_file(&path).ok();
}

/// Scenario: a `hash` action on `k`, a 4 MiB buffer, an exporter with a 256 KiB queue
/// whose backend holds every request unanswered; one trace of 1,600 spans, each with 100
/// small int values of `k` (about 1.6 MB as sent; hashed, each value becomes 64
/// characters: about 12 MB).
/// Guarantees: the trace is re-encoded and handed on in pieces, each charged as it is
/// made; what the queue has no room for waits in the buffer (parked) only while the
/// buffer is under its limit, so while the backend holds, what waits for the exporter
/// (`pending_export_bytes`) passes the queue's size but stays near the buffer's limit
/// (under 5 MiB), not the whole trace grown (a hostile-input check saw a gateway go past
/// its memory limit by the growth of what it kept); once the backend answers, every span
/// arrives, hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_that_grows_when_scrubbed_goes_out_in_pieces() {
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 62],
        common::plan("decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n"),
        |c| {
            c.attributes =
                serde_yaml_ng::from_str::<AttributesConfig>("actions: [{key: k, action: hash}]")
                    .unwrap();
            c.buffer.max_buffered_bytes = 4 << 20;
            if let ExporterConfig::OtlpGrpc(otlp) = &mut c.export.exporters[0].1 {
                otlp.queue_bytes = 256 << 10;
            }
        },
        |_, _| {},
    )
    .await;
    gw.backend.hold(true);
    let mut request = FakeOtlp::traces(1).spans(1_600).seed(77).build();
    let trace_id = request.resource_spans[0].scope_spans[0].spans[0]
        .trace_id
        .clone();
    for span in request
        .resource_spans
        .iter_mut()
        .flat_map(|r| r.scope_spans.iter_mut())
        .flat_map(|s| s.spans.iter_mut())
    {
        span.trace_id = trace_id.clone();
        span.attributes = (0..100)
            .map(|i| opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "k".into(),
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(any_value::Value::IntValue(i)),
                }),
                ..Default::default()
            })
            .collect();
    }
    let sent = request.encoded_len();
    let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
        .await
        .unwrap();
    client.export(request).await.unwrap();
    // While the backend holds: what waits for the exporter, at its most.
    let started = tokio::time::Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_secs(2) {
        most = most.max(gw.stats.pending_export_bytes.get());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(gw.backend.waiting() > 0, "the exporter is sending");
    assert!(
        most > 256 << 10,
        "kept spans past the queue wait: {most} bytes"
    );
    assert!(
        most < 5 << 20,
        "{most} bytes waited for the exporter (the trace was {sent} bytes as sent)"
    );
    gw.backend.hold(false);
    gw.settle(Duration::from_secs(20)).await;
    let mut spans = 0;
    for body in gw.backend.bodies() {
        for span in ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
        {
            let hashed = span.attributes.iter().filter(|kv| kv.key == "k").all(|kv| {
                matches!(kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        Some(any_value::Value::StringValue(s)) if s.len() == 64)
            });
            assert!(hashed);
            spans += 1;
        }
    }
    assert_eq!(spans, 1_600);
    gw.stop().await;
}
