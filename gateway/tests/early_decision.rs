#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `decision_wait_after_root_received`: traces whose root arrived are decided early.

use crate::common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::test_util::FakeOtlp;
use tokio::time::Instant;

/// Scenario: decision_wait is 60 s but decision_wait_after_root_received is 200 ms; every
/// trace sent has its root span.
/// Guarantees: all traces are decided and exported within seconds, long before
/// decision_wait, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_with_a_root_are_decided_after_the_grace() {
    let gw = common::spawn_gateway([127, 0, 0, 8], common::plan("decision_wait: 60s\ndecision_wait_after_root_received: 200ms\npolicies:\n  - {name: all, type: always_sample}\n"), |_, _| {}).await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for seed in 0..5 {
        client
            .export(FakeOtlp::traces(10).spans(3).seed(seed).build())
            .await
            .unwrap();
    }
    let started = Instant::now();
    while stats.in_flight_spans() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "traces waited for decision_wait"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats.exported_spans.get(), 150);
    assert_eq!(backend.spans(), 150);
    gw.stop().await;
}
