#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Processor options the Collector applies are applied: `maximum_trace_size_bytes` and
//! `drop_pending_traces_on_shutdown` (processor.go: an oversized trace is dropped
//! unevaluated; pending traces are dropped at shutdown instead of decided).

mod common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::test_util::FakeOtlp;

/// Scenario: maximum_trace_size_bytes of 1000; ten 1-span traces and ten 40-span traces.
/// Guarantees: the large traces are dropped without evaluation (counted by reason, their
/// spans dropped), the small ones kept by always_sample; every span accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_maximum_trace_size_bytes_are_dropped_unevaluated() {
    let gw = common::spawn_gateway(
        [127, 0, 0, 21],
        common::plan("decision_wait: 300ms\nmaximum_trace_size_bytes: 1000\npolicies:\n  - {name: all, type: always_sample}\n"),
        |_, _| {},
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
        .await
        .unwrap();
    client
        .export(FakeOtlp::traces(10).spans(1).seed(1).build())
        .await
        .unwrap();
    client
        .export(FakeOtlp::traces(10).spans(40).seed(2).build())
        .await
        .unwrap();
    gw.settle(Duration::from_secs(10)).await;
    assert_eq!(gw.stats.dropped_traces_oversize.get(), 10);
    assert_eq!(gw.stats.exported_spans.get(), 10);
    assert_eq!(gw.stats.dropped_spans.get(), 400);
    assert_eq!(gw.backend.spans(), 10);
    gw.stop().await;
}

/// Scenario: decision_wait 60 s, drop_pending_traces_on_shutdown: true; traces sent, then
/// the gateway stops. Guarantees: nothing is exported, every pending trace is counted as
/// dropped at shutdown. Without the option the same traces are decided, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_traces_are_dropped_at_shutdown_when_asked() {
    for (drop_pending, ip) in [(true, 22), (false, 23)] {
        let gw = common::spawn_gateway(
            [127, 0, 0, ip],
            common::plan(&format!("decision_wait: 60s\ndrop_pending_traces_on_shutdown: {drop_pending}\npolicies:\n  - {{name: all, type: always_sample}}\n")),
            |_, _| {},
        )
        .await;
        let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
            .await
            .unwrap();
        client
            .export(FakeOtlp::traces(5).spans(2).seed(3).build())
            .await
            .unwrap();
        let (stats, backend) = (gw.stats.clone(), gw.backend.clone());
        gw.stop().await;
        if drop_pending {
            assert_eq!(stats.dropped_traces_shutdown.get(), 5);
            assert_eq!(stats.dropped_spans.get(), 10);
            assert_eq!(backend.spans(), 0);
        } else {
            // Decided (always_sample keeps them) rather than dropped; the backend stops
            // with the gateway here, so delivery is not what this checks.
            assert_eq!(stats.dropped_traces_shutdown.get(), 0);
            assert_eq!(stats.dropped_spans.get(), 0);
        }
    }
}
