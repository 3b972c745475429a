#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Span-for-span accounting through a backend outage: every span the gateway receives ends
//! up exported, dropped by policy, refused (the sender was told to retry) or failed (the
//! backend stayed down past the retry bound), and nothing is in two places or none.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::forward::RetryConfig;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_gateway::config::{BufferConfig, ExportConfig};
use tailgate_gateway::export::OtlpGrpcConfig;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}\n";

/// Scenario: load runs through a gateway (errors + 50%) whose backend goes away for 1.5 s
/// and comes back. The retry bound is 300 ms, so exports during the outage fail; the hard
/// byte limit is small, so while failed exports are retried the gateway refuses senders.
/// Guarantees: received = exported + dropped by policy + refused + failed, span for span,
/// with every term non-zero; the backend holds exactly the exported spans; the sender saw
/// exactly the refused spans refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_is_exported_plus_dropped_plus_refused_plus_failed() {
    let stop = CancellationToken::new();
    let (backend_addr, backend) =
        CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    let receive = ReceiveConfig {
        grpc: Some(SocketAddr::from(([127, 0, 0, 15], 0))),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let mut export = OtlpGrpcConfig::new(format!("http://{backend_addr}"));
    export.retry = RetryConfig {
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(100),
        max_elapsed_time: Duration::from_millis(300),
    };
    export.batch.timeout = Duration::from_millis(20);
    let config = GatewayConfig {
        receive,
        buffer: BufferConfig {
            shards: 2,
            max_buffered_bytes: 16 * 1024,
            early_decision_bytes: Some(8 * 1024),
            ..Default::default()
        },
        export: ExportConfig::otlp_grpc(export),
        admin: None,
        metrics: None,
    };
    let file = PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap();
    let gateway = Gateway::start(&config, PolicyPlan::compile(&file)).unwrap();
    let stats = gateway.stats().clone();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (mut sent, mut refused_seen) = (0u64, 0u64);
    for seed in 0..120u64 {
        // The outage: from the 20th to the 80th request (10 ms apart plus sending time).
        match seed {
            20 => backend.set_unavailable(true),
            80 => backend.set_unavailable(false),
            _ => {}
        }
        let req = FakeOtlp::traces(4).spans(3).seed(9000 + seed).build();
        sent += 12;
        if let Err(status) = client.export(req).await {
            assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
            refused_seen += 12;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let received = stats.received_spans.get();
    let (exported, dropped) = (stats.exported_spans.get(), stats.dropped_spans.get());
    let (refused, failed) = (stats.refused_spans.get(), stats.export_failed_spans.get());
    let terms =
        format!("exported {exported}, dropped {dropped}, refused {refused}, failed {failed}");
    assert_eq!(received, sent);
    assert_eq!(stats.in_flight_spans(), 0, "{terms}");
    assert_eq!(received, exported + dropped + refused + failed, "{terms}");
    assert!(
        exported > 0 && dropped > 0 && refused > 0 && failed > 0,
        "{terms}"
    );
    assert_eq!(
        refused, refused_seen,
        "the sender saw exactly the refused spans refused"
    );
    assert_eq!(backend.spans(), exported);
    stop.cancel();
    served.await.unwrap().unwrap();
}
