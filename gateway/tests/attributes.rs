#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Attribute policies on real requests: values are read from the encoded spans and
//! resources, not from decoded structs.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tailgate_core::test_util::FakeOtlp;

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - name: checkout-service\n    type: string_attribute\n    string_attribute: {key: service.name, values: [service-1]}\n  - name: some-values\n    type: string_attribute\n    string_attribute: {key: attr.0, values: ['^value-1'], enabled_regex_matching: true}\n";

fn str_attr(
    attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue],
    key: &str,
) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            _ => None,
        }
    })
}

/// Scenario: traces spread over two services (resource attribute `service.name`) with a
/// random string attribute on each span, through a gateway whose policies keep traces with
/// a span in `service-1` or a span whose `attr.0` starts with `value-1`.
/// Guarantees: exactly the traces the policies describe reach the backend, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribute_policies_keep_exactly_the_matching_traces() {
    let gw = common::spawn_gateway([127, 0, 0, 7], common::plan(POLICIES), |_, _| {}).await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut expected: HashMap<Vec<u8>, (usize, bool)> = HashMap::new();
    let mut why: HashMap<Vec<u8>, (bool, bool)> = HashMap::new();
    for seed in 0..20 {
        let req = FakeOtlp::traces(10)
            .spans(3)
            .resources(2)
            .attrs(2)
            .seed(500 + seed)
            .build();
        for rs in &req.resource_spans {
            let service =
                str_attr(&rs.resource.as_ref().unwrap().attributes, "service.name").unwrap();
            for span in rs.scope_spans.iter().flat_map(|s| &s.spans) {
                let e = expected.entry(span.trace_id.clone()).or_default();
                e.0 += 1;
                let value = str_attr(&span.attributes, "attr.0").unwrap();
                e.1 |= service == "service-1" || value.starts_with("value-1");
                let w = why.entry(span.trace_id.clone()).or_default();
                w.0 |= service == "service-1";
                w.1 |= value.starts_with("value-1");
            }
        }
        client.export(req).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    for body in backend.bodies() {
        for rs in ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
        {
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                *got.entry(span.trace_id).or_default() += 1;
            }
        }
    }
    let want: HashSet<&Vec<u8>> = expected
        .iter()
        .filter(|(_, (_, keep))| *keep)
        .map(|(id, _)| id)
        .collect();
    let kept: HashSet<&Vec<u8>> = got.keys().collect();
    assert!(
        !want.is_empty() && want.len() < expected.len(),
        "the fixture should keep some traces, not all"
    );
    let missing: Vec<_> = want.difference(&kept).map(|id| why[*id]).collect();
    let extra: Vec<_> = kept.difference(&want).map(|id| why[*id]).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {} {:?}; extra {} {:?}",
        missing.len(),
        &missing[..missing.len().min(8)],
        extra.len(),
        &extra[..extra.len().min(8)]
    );
    for (id, n) in &got {
        assert_eq!(*n, expected[id].0, "kept trace incomplete");
    }
    gw.stop().await;
}
