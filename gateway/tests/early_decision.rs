#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `decision_wait_after_root_received`: traces whose root arrived are decided early.

use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_gateway::config::{BufferConfig, ExportConfig};
use tailgate_gateway::export::OtlpGrpcConfig;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Scenario: decision_wait is 60 s but decision_wait_after_root_received is 200 ms; every
/// trace sent has its root span.
/// Guarantees: all traces are decided and exported within seconds, long before
/// decision_wait, and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_with_a_root_are_decided_after_the_grace() {
    let stop = CancellationToken::new();
    let (backend_addr, backend) =
        CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    let receive = ReceiveConfig {
        grpc: Some("127.0.0.8:0".parse().unwrap()),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let config = GatewayConfig {
        receive,
        buffer: BufferConfig {
            shards: 2,
            ..Default::default()
        },
        export: ExportConfig {
            otlp_grpc: OtlpGrpcConfig::new(format!("http://{backend_addr}")),
        },
        admin: None,
    };
    let yaml = "decision_wait: 60s\ndecision_wait_after_root_received: 200ms\npolicies:\n  - {name: all, type: always_sample}\n";
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), yaml).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let stats = gateway.stats().clone();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));

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
    stop.cancel();
    served.await.unwrap().unwrap();
}
