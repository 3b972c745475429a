#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `attributes:` actions on kept spans (issue 16): what the backends get is scrubbed, what
//! the policies decide on is not.

mod common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use tailgate_core::test_util::{kv, FakeOtlp};
use tailgate_gateway::attributes::{ActionConfig, ActionValue, AttributesConfig};
use tailgate_gateway::export::{DebugConfig, ExporterConfig};

/// Keeps only traces whose span carries user.email = a@b.c: a policy reading the very key
/// that is deleted on the way out.
const KEEP_ALICE: &str = "decision_wait: 200ms\npolicies:\n  - {name: alice, type: string_attribute, string_attribute: {key: user.email, values: [a@b.c]}}\n";

/// Scenario: spans with `user.email` (deleted), `user.id` (hashed) and
/// `http.request.header.authorization` (deleted by pattern), exported over OTLP/gRPC and to
/// the `debug` file; the plan keeps traces by `user.email`.
/// Guarantees: the policy saw the original email (Alice's traces kept, Bob's dropped); no
/// scrubbed key or value reaches either output; `user.id` arrives as the SHA-256 of its
/// value; other attributes arrive unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_spans_leave_scrubbed_and_policies_see_the_originals() {
    let path = std::env::temp_dir().join(format!("tailgate-scrub-{}.jsonl", std::process::id()));
    std::fs::remove_file(&path).ok();
    let debug_path = path.to_string_lossy().into_owned();
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 61],
        common::plan(KEEP_ALICE),
        |c| {
            c.attributes = AttributesConfig {
                actions: vec![
                    ActionConfig {
                        key: Some("user.email".into()),
                        pattern: None,
                        action: "delete".into(),
                        value: None,
                    },
                    ActionConfig {
                        key: None,
                        pattern: Some("^http\\.request\\.header\\.".into()),
                        action: "delete".into(),
                        value: None,
                    },
                    ActionConfig {
                        key: Some("user.id".into()),
                        pattern: None,
                        action: "hash".into(),
                        value: None,
                    },
                    // insert keeps an existing value, and adds a missing one.
                    ActionConfig {
                        key: Some("http.route".into()),
                        pattern: None,
                        action: "insert".into(),
                        value: Some(ActionValue::String("/overwritten".into())),
                    },
                    ActionConfig {
                        key: Some("deployment.environment".into()),
                        pattern: None,
                        action: "insert".into(),
                        value: Some(ActionValue::String("prod".into())),
                    },
                    // update changes an existing value (a mask), and adds nothing.
                    ActionConfig {
                        key: None,
                        pattern: Some("^user\\.tier$".into()),
                        action: "update".into(),
                        value: Some(ActionValue::Int(7)),
                    },
                    ActionConfig {
                        key: Some("never.there".into()),
                        pattern: None,
                        action: "update".into(),
                        value: Some(ActionValue::Bool(true)),
                    },
                    // upsert does both.
                    ActionConfig {
                        key: Some("team".into()),
                        pattern: None,
                        action: "upsert".into(),
                        value: Some(ActionValue::String("payments".into())),
                    },
                ],
            };
            let mut debug = DebugConfig {
                path: Some(debug_path.clone()),
                batch: Default::default(),
                queue_bytes: 1 << 20,
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
        let req = ExportTraceServiceRequest::decode(body).unwrap();
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
    gw.stop().await;
    std::fs::remove_file(&path).ok();
}
