#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A gateway on its own: every span it receives is accounted for.

use crate::common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tailgate_core::test_util::FakeOtlp;

const POLICIES: &str = "decision_wait: 300ms\npolicies:\n  - name: errors\n    type: status_code\n    status_code: {status_codes: [ERROR]}\n  - name: half\n    type: probabilistic\n    probabilistic: {sampling_percentage: 50}\n";

/// Scenario: a gateway (errors + 50% policy) receives 40 requests of 20 traces each over
/// gRPC, plus one malformed request, and exports to a capturing backend.
/// Guarantees: once settled, received = exported + dropped by policy (nothing rejected,
/// refused or failed); the backend has exactly the exported spans; every trace with an error
/// span reached the backend whole; the malformed request was refused and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_received_span_is_exported_or_dropped_by_policy() {
    let gw = common::spawn_gateway([127, 0, 0, 5], common::plan(POLICIES), |_, _| {}).await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    let plan = gw.plan.clone();

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut sent: Vec<ExportTraceServiceRequest> = Vec::new();
    for seed in 0..40 {
        let req = FakeOtlp::traces(20).spans(5).seed(seed + 100).build();
        client.export(req.clone()).await.unwrap();
        sent.push(req);
    }
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    raw.ready().await.unwrap();
    let bad = raw
        .unary(
            tonic::Request::new(bytes::Bytes::from_static(&[0x0a, 0x7f])),
            http::uri::PathAndQuery::from_static(tailgate_core::wire::TRACE_EXPORT_PATH),
            tailgate_core::wire::RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total: u64 = sent
        .iter()
        .map(|r| {
            r.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len() as u64)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(stats.received_spans.get(), total);
    assert_eq!(stats.in_flight_spans(), 0);
    // Every byte charged while queued for a shard was taken off once buffered.
    assert_eq!(stats.shard_queue_bytes.get(), 0);
    assert_eq!(stats.malformed_requests.get(), 1);
    assert_eq!(
        stats.refused_requests[0].get(),
        1,
        "counted by reason: invalid"
    );
    assert!(stats
        .render()
        .contains("tailgate_gateway_refused_requests_total{reason=\"invalid\"} 1"));
    let (exported, dropped) = (stats.exported_spans.get(), stats.dropped_spans.get());
    assert!(
        exported > 0 && dropped > 0,
        "exported {exported}, dropped {dropped}"
    );
    assert_eq!(exported + dropped, total);
    assert_eq!(
        stats.refused_spans.get() + stats.rejected_spans() + stats.export_failed_spans.get(),
        0
    );
    assert_eq!(backend.spans(), exported);

    // Each policy gave one verdict per decided trace; the errors policy sampled the traces
    // with an error span.
    let decided =
        stats.traces_sampled.get() + stats.traces_not_sampled.get() + stats.traces_dropped.get();
    let verdicts = plan.load().verdict_counts();
    assert_eq!(verdicts.len(), 2);
    for counts in &verdicts {
        assert_eq!(counts.iter().sum::<u64>(), decided);
    }

    // Every trace with an error span arrived whole.
    let mut at_backend = std::collections::HashMap::<Vec<u8>, usize>::new();
    for body in backend.bodies() {
        for rs in ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
        {
            for ss in rs.scope_spans {
                for s in ss.spans {
                    *at_backend.entry(s.trace_id).or_default() += 1;
                }
            }
        }
    }
    let mut per_trace = std::collections::HashMap::<Vec<u8>, (usize, bool)>::new();
    for req in &sent {
        for s in req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let e = per_trace.entry(s.trace_id.clone()).or_default();
            e.0 += 1;
            e.1 |= s.status.as_ref().is_some_and(|st| st.code == 2);
        }
    }
    let errors: Vec<_> = per_trace.iter().filter(|(_, (_, err))| *err).collect();
    assert!(!errors.is_empty());
    assert_eq!(
        verdicts[0][0],
        errors.len() as u64,
        "errors policy verdicts"
    );
    for (id, (n, _)) in errors {
        assert_eq!(at_backend.get(id), Some(n), "error trace {id:?} incomplete");
    }
    for (id, n) in &at_backend {
        assert_eq!(per_trace[id].0, *n, "kept trace {id:?} incomplete");
    }

    gw.stop().await;
}
