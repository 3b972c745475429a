#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Span-for-span accounting through a backend outage: every span the gateway receives ends
//! up exported, dropped by policy, refused (the sender was told to retry) or failed (the
//! backend stayed down past the retry bound), and nothing is in two places or none.

use crate::common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::forward::RetryConfig;
use tailgate_core::test_util::FakeOtlp;
use tailgate_gateway::export::ExporterConfig;

/// Sets the gateway's one exporter to retry 50 to 100 ms apart within `bound`, and to
/// send batches after 20 ms.
fn quick_retries(c: &mut tailgate_gateway::config::GatewayConfig, bound: Duration) {
    if let ExporterConfig::OtlpGrpc(e) = &mut c.export.exporters[0].1 {
        e.retry = RetryConfig {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(100),
            max_elapsed_time: bound,
        };
        e.batch.timeout = Duration::from_millis(20);
    }
}

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}\n";

/// Scenario: load runs through a gateway (errors + 50%) whose backend goes away for 1.5 s
/// and comes back. The retry bound is 300 ms, so exports during the outage fail; the hard
/// byte limit is small, so while failed exports are retried the gateway refuses senders.
/// Guarantees: received = exported + dropped by policy + refused + failed, span for span,
/// with every term non-zero; the backend holds exactly the exported spans; the sender saw
/// exactly the refused spans refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_is_exported_plus_dropped_plus_refused_plus_failed() {
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 15],
        common::plan(POLICIES),
        |c| {
            // A request is admitted at its worst case (about 8.5 KiB here, each span a
            // trace of its own), so the limit holds several requests.
            c.buffer.max_buffered_bytes = 64 * 1024;
            c.buffer.early_decision_bytes = Some(32 * 1024);
            quick_retries(c, Duration::from_millis(300));
        },
        |_, _| {},
    )
    .await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());

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
    gw.stop().await;
}

/// Scenario: the backend goes away for 1.5 s, five times the retry bound of 300 ms, while the
/// gateway has plenty of room (default byte limit and queue). Guarantees: holding the
/// undelivered batch costs no sender anything, so nothing is given up and nothing refused:
/// every kept span reaches the backend once it is back, and the outage shows in the
/// exporter's retry counters and clears from its "failing" gauge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_past_the_retry_bound_loses_nothing_while_there_is_room() {
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 16],
        common::plan(POLICIES),
        |c| {
            quick_retries(c, Duration::from_millis(300));
        },
        |_, _| {},
    )
    .await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut sent = 0u64;
    let mut saw_failing = false;
    for seed in 0..90u64 {
        match seed {
            10 => backend.set_unavailable(true),
            70 => backend.set_unavailable(false),
            _ => {}
        }
        let req = FakeOtlp::traces(4).spans(3).seed(7000 + seed).build();
        sent += 12;
        client.export(req).await.unwrap();
        saw_failing |= stats.exporters()[0].retry.is_failing();
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    gw.settle(Duration::from_secs(10)).await;

    let exporter = stats.exporters()[0].clone();
    let (exported, dropped) = (stats.exported_spans.get(), stats.dropped_spans.get());
    let (refused, failed) = (stats.refused_spans.get(), stats.export_failed_spans.get());
    let terms =
        format!("exported {exported}, dropped {dropped}, refused {refused}, failed {failed}");
    assert_eq!(stats.received_spans.get(), sent);
    assert_eq!(stats.in_flight_spans(), 0, "{terms}");
    assert_eq!((refused, failed), (0, 0), "{terms}");
    assert_eq!(sent, exported + dropped, "{terms}");
    assert_eq!(backend.spans(), exported);
    assert!(saw_failing, "the outage showed in the failing gauge");
    assert!(exporter.retry.retries.get() > 0);
    assert_eq!(exporter.retry.gave_up.get(), 0);
    assert!(!exporter.retry.is_failing(), "delivery cleared the gauge");
    gw.stop().await;
}

/// Scenario: the backend is down, the exporter's queue small (8 KiB) and the buffer 2 MiB;
/// every trace is kept; requests keep coming until one is refused; then the backend
/// returns.
/// Guarantees: kept spans the queue has no room for wait in the buffer (parked), so the
/// gateway goes on taking requests well past the queue's size, until the buffer is full;
/// the refusal then is one for memory, retryable, and names the exporter whose backend
/// the buffer waits for (a trial found senders refused at a few percent of the buffer
/// when shards waited on the queue: raising the buffer changed nothing). Nothing taken is
/// lost: once the backend is back, every accepted span is exported and nothing stays
/// parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fills_the_buffer_with_kept_spans_not_just_the_queue() {
    const QUEUE: u64 = 8 * 1024;
    let most_parked = outage_until_refused([127, 0, 0, 18], QUEUE).await;
    assert!(
        most_parked > 20 * QUEUE,
        "parked at most {most_parked} bytes beside a queue of {QUEUE}"
    );
}

/// Scenario: as above, with the exporter's queue (64 MiB) larger than the whole buffer.
/// Guarantees: the kept spans fill the buffer inside the queue (nothing is parked), and
/// the refusal still names the exporter whose backend the buffer waits for (a trial with
/// real SDKs found it named nothing then: only parked bytes were named).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_larger_than_the_buffer_is_named_in_the_refusal() {
    let most_parked = outage_until_refused([127, 0, 0, 94], 64 << 20).await;
    assert_eq!(most_parked, 0);
}

/// Runs the outage of the tests above on a gateway at `ip` whose exporter queues `queue`
/// bytes, checks the refusal and that nothing is lost, and returns the most bytes parked.
async fn outage_until_refused(ip: [u8; 4], queue: u64) -> u64 {
    let gw = common::spawn_gateway_configured(
        ip,
        common::plan("decision_wait: 100ms\npolicies:\n  - {name: all, type: always_sample}\n"),
        |c| {
            c.buffer.max_buffered_bytes = 2 << 20;
            quick_retries(c, Duration::from_secs(60));
            if let ExporterConfig::OtlpGrpc(e) = &mut c.export.exporters[0].1 {
                e.queue_bytes = queue;
            }
        },
        |_, _| {},
    )
    .await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    backend.set_unavailable(true);
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (mut accepted, mut refusal, mut most_parked) = (0u64, None, 0u64);
    let exporter = stats.exporters()[0].clone();
    for seed in 0..4_000u64 {
        let req = FakeOtlp::traces(4).spans(3).seed(5000 + seed).build();
        match client.export(req).await {
            Ok(_) => accepted += 12,
            Err(status) => {
                refusal = Some(status);
                break;
            }
        }
        most_parked = most_parked.max(exporter.parked_bytes.get());
    }
    let status = refusal.expect("no request was refused with the backend down");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status
            .message()
            .contains("gateway buffer is over its limit")
            && status
                .message()
                .contains(&format!("for exporter {}", exporter.name)),
        "{status:?}"
    );
    assert!(stats.refused_spans_memory.get() > 0);
    assert!(
        stats.pending_export_bytes.get() > (1 << 20),
        "kept spans pending export: {} bytes",
        stats.pending_export_bytes.get()
    );
    backend.set_unavailable(false);
    gw.settle(Duration::from_secs(30)).await;
    assert_eq!(stats.in_flight_spans(), 0);
    assert_eq!(stats.export_failed_spans.get(), 0);
    assert_eq!(stats.exported_spans.get(), accepted);
    assert_eq!(backend.spans(), accepted);
    assert_eq!(exporter.parked_bytes.get(), 0);
    gw.stop().await;
    most_parked
}

/// Scenario: two exporters, the second's backend down with an 8 KiB queue; every trace
/// is kept; 300 traces of 3 spans arrive; then the second backend returns.
/// Guarantees: the first backend gets every kept span while the second is down (its
/// batches wait apart: one backend's outage does not hold back another's), nothing is
/// refused, and once the second is back it gets every span too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backend_down_does_not_hold_back_another() {
    let stop = tokio_util::sync::CancellationToken::new();
    let (down_addr, down) = common::capture_backend(&stop).await;
    down.set_unavailable(true);
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 93],
        common::plan("decision_wait: 100ms\npolicies:\n  - {name: all, type: always_sample}\n"),
        |c| {
            quick_retries(c, Duration::from_secs(60));
            let mut second =
                tailgate_gateway::export::OtlpGrpcConfig::new(format!("http://{down_addr}"));
            second.queue_bytes = 8 * 1024;
            second.batch.timeout = Duration::from_millis(20);
            c.export
                .exporters
                .push(("otlp/down".into(), ExporterConfig::OtlpGrpc(second)));
        },
        |_, _| {},
    )
    .await;
    let (addr, up, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for seed in 0..100u64 {
        let req = FakeOtlp::traces(3).spans(3).seed(7000 + seed).build();
        client.export(req).await.unwrap();
    }
    let sent = 900;
    common::wait_for_spans(&[&up], sent, Duration::from_secs(20)).await;
    assert_eq!(
        up.spans(),
        sent,
        "the healthy backend waited for the down one"
    );
    assert_eq!(down.spans(), 0);
    assert!(stats.exporters()[1].parked_bytes.get() > 0);
    assert_eq!(stats.refused_spans.get(), 0);
    down.set_unavailable(false);
    gw.settle(Duration::from_secs(30)).await;
    assert_eq!(stats.in_flight_spans(), 0);
    assert_eq!(stats.exported_spans.get(), sent);
    assert_eq!(down.spans(), sent);
    assert_eq!(stats.exporters()[1].parked_bytes.get(), 0);
    gw.stop().await;
    stop.cancel();
}
