#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Fan-out: every configured exporter gets every kept span, each with its own queue and
//! accounting, and one exporter's outage holds kept traces back instead of losing them.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_gateway::config::BufferConfig;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 300ms\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: half, type: probabilistic, probabilistic: {sampling_percentage: 50}}\n";

/// Scenario: a gateway exports to an OTLP/gRPC backend, an OTLP/HTTP backend (zstd) and a
/// `debug` file. The HTTP backend is down for the first second of the load and comes back.
/// Guarantees: both backends and the debug file get exactly the kept spans; per-exporter
/// counters agree with them; received = exported + dropped, nothing failed; the debug file
/// replays through `explain` to the same keep count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_exporter_gets_every_kept_span_through_an_outage() {
    let stop = CancellationToken::new();
    let (grpc_addr, grpc_backend) = common::capture_backend(&stop).await;
    let (http_addr, http_backend) =
        CaptureBackend::start_http("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    http_backend.set_unavailable(true);
    let debug_path =
        std::env::temp_dir().join(format!("tailgate-fanout-{}.jsonl", std::process::id()));
    std::fs::remove_file(&debug_path).ok();
    let config_text = format!(
        "receive: {{grpc: '127.0.0.14:0', http: null}}\nbuffer: {{shards: 2}}\nexport:\n  otlp_grpc/primary: {{endpoint: 'http://{grpc_addr}', compression: gzip}}\n  otlp_http/archive: {{endpoint: 'http://{http_addr}', compression: zstd, retry: {{initial_interval: 50ms, max_interval: 200ms}}}}\n  debug: {{path: '{}'}}\nadmin: null\nmetrics: null\n",
        debug_path.display()
    );
    let config_path =
        std::env::temp_dir().join(format!("tailgate-fanout-{}.yaml", std::process::id()));
    std::fs::write(&config_path, &config_text).unwrap();
    let config = GatewayConfig::load(&config_path).unwrap();
    assert_eq!(config.export.exporters.len(), 3);
    let receive = ReceiveConfig {
        grpc: Some(SocketAddr::from(([127, 0, 0, 14], 0))),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let file = PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap();
    let gateway = Gateway::start(
        &GatewayConfig {
            receive,
            buffer: BufferConfig {
                shards: 2,
                ..Default::default()
            },
            ..config
        },
        PolicyPlan::compile(&file),
    )
    .unwrap();
    let stats = gateway.stats().clone();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    for seed in 0..30 {
        let req = FakeOtlp::traces(10).spans(3).seed(7000 + seed).build();
        client.export(req).await.unwrap();
        if seed == 20 {
            http_backend.set_unavailable(false);
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let received = stats.received_spans.get();
    let exported = stats.exported_spans.get();
    assert_eq!(received, 900);
    assert!(
        exported > 0 && exported < received,
        "{exported}: {}",
        stats.render()
    );
    assert_eq!(received, exported + stats.dropped_spans.get());
    assert_eq!(stats.export_failed_spans.get(), 0);
    assert_eq!(grpc_backend.spans(), exported);
    assert_eq!(
        http_backend.spans(),
        exported,
        "the archive caught up after its outage"
    );
    let per: Vec<(String, u64, u64)> = stats
        .exporters()
        .iter()
        .map(|e| (e.name.clone(), e.sent_spans.get(), e.failed_spans.get()))
        .collect();
    assert_eq!(per.len(), 3);
    for (name, sent, failed) in &per {
        assert_eq!((*sent, *failed), (exported, 0), "{name}");
    }
    let metrics = stats.render();
    assert!(
        metrics
            .contains("tailgate_gateway_exporter_sent_spans_total{exporter=\"otlp_http/archive\"}"),
        "{metrics}"
    );

    // The debug file replays through explain to the same kept spans (everything in it was
    // kept, so a keep-all plan keeps all of it).
    let text = std::fs::read_to_string(&debug_path).unwrap();
    let all = PolicyFile::parse(
        Path::new("p.yaml"),
        "policies:\n  - {name: all, type: always_sample}\n",
    )
    .unwrap();
    let e = tailgate_gateway::explain::explain(&all, &text, None).unwrap();
    assert_eq!(e.spans, exported);
    assert_eq!(e.kept_spans, exported);

    stop.cancel();
    served.await.unwrap().unwrap();
    std::fs::remove_file(&debug_path).ok();
    std::fs::remove_file(&config_path).ok();
}

/// Scenario: a backend refuses, whole and for good (`INVALID_ARGUMENT`), any request that
/// holds one particular span; that span arrives among 99 others from other traces, all
/// kept and batched together.
/// Guarantees (issue 14, item 4): the exporter sends the halves of a refused request apart,
/// down to the one span, so only that span fails: the 99 others reach the backend, and the
/// accounting says 99 exported and 1 failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_the_backend_refuses_fails_alone() {
    let stop = CancellationToken::new();
    let (config, backend) = refusing_backend(41, 2, b"POISON-SPAN", &stop).await;
    let mut req = FakeOtlp::traces(100).spans(1).seed(77).build();
    req.resource_spans[0].scope_spans[0].spans[37].name = "POISON-SPAN".into();
    let stats = keep_all_and_settle(&config, req, &stop).await;
    assert_eq!(backend.spans(), 99);
    assert_eq!(stats.exported_spans.get(), 99);
    assert_eq!(stats.export_failed_spans.get(), 1);
    stop.cancel();
}

/// Scenario: a backend (or a proxy before it) refuses every request as malformed (a
/// schema it does not take), here 1,000 kept spans in one batch; then the same with only
/// the spans of one of the two resources refused (500 bad spans); then with eight bad
/// spans, one in each eighth of the batch.
/// Guarantees: refusing everything, every span is counted failed after 19 requests: the
/// 15 of the halving's first four levels (all refused: at least eight bad spans), three
/// single spans from parts apart (all refused: the batch is refused whole) and one more
/// part; not 2n - 1 = 1,999 requests nor the 176 of the bad-span budget (a black-box check
/// saw a batch take 7 s to fail at 40 ms an answer, and intake stop behind it). With half
/// the spans bad, the clean half is exported and the bad half fails within the budget;
/// with eight bad spans spread out, only they fail (a single clean span is taken, so the
/// halving goes on): no clean span is failed with the bad ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_everything_is_not_flooded_by_halving() {
    // (which spans are bad by resource and position, spans failed, requests refused)
    type Case = (fn(usize, usize) -> bool, u64, std::ops::RangeInclusive<u64>);
    let cases: [Case; 3] = [
        (|_, _| true, 1000, 19..=19),
        (|r, _| r == 0, 500, 2..=400),
        (|_, j| [60, 185, 310, 435].contains(&j), 8, 2..=400),
    ];
    for (bad, failed, requests) in cases {
        let stop = CancellationToken::new();
        let (config, backend) = refusing_backend(43, 1, b"EVERY-SPAN", &stop).await;
        let mut req = FakeOtlp::traces(1000).spans(1).seed(79).build();
        for (r, rs) in req.resource_spans.iter_mut().enumerate() {
            for (j, s) in rs.scope_spans[0].spans.iter_mut().enumerate() {
                if bad(r, j) {
                    s.name = "EVERY-SPAN".into();
                }
            }
        }
        let stats = keep_all_and_settle(&config, req, &stop).await;
        assert_eq!(stats.export_failed_spans.get(), failed);
        assert_eq!(stats.exported_spans.get(), 1000 - failed);
        assert_eq!(backend.spans(), 1000 - failed);
        let sent = backend.poisoned_requests();
        assert!(requests.contains(&sent), "{sent} requests refused");
        stop.cancel();
    }
}

/// Scenario: two backends, each refusing for good any request that holds its own poison
/// span; the two poison spans are different traces among 100 kept and exported together.
/// Guarantees: a span counts as failed when any exporter failed it, per trace even when the
/// shard hands kept traces over in batches: 2 failed and 98 exported, each backend 99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_failing_different_traces_of_one_batch_fail_both() {
    let mut req = FakeOtlp::traces(100).spans(1).seed(78).build();
    req.resource_spans[0].scope_spans[0].spans[10].name = "POISON-A".into();
    req.resource_spans[0].scope_spans[0].spans[40].name = "POISON-B".into();
    two_poisons(42, req, 1, 2).await;
}

/// The same with traces of 2 spans over three services, so that the exporters regroup
/// each batch by resource before sending; one trace's two spans are under different
/// resources, one poisoned for each backend.
/// Guarantees: the failures come back to that trace's ticket, which counts the most one
/// exporter failed of it (1, as documented), not to two other traces (2): regrouping
/// moved the spans, and the mapping back must follow them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_charged_to_their_traces_when_a_batch_is_regrouped() {
    let mut req = FakeOtlp::traces(100).spans(2).resources(3).seed(79).build();
    // A trace with a span under resource 0 and one under resource 1.
    let ids = |r: usize, req: &ExportTraceServiceRequest| -> Vec<Vec<u8>> {
        let spans = &req.resource_spans[r].scope_spans[0].spans;
        spans.iter().map(|s| s.trace_id.clone()).collect()
    };
    let under_1 = ids(1, &req);
    let a = ids(0, &req)
        .into_iter()
        .find(|id| under_1.contains(id))
        .expect("some trace spans resources 0 and 1");
    for (r, marker) in [(0, "POISON-A"), (1, "POISON-B")] {
        let spans = &mut req.resource_spans[r].scope_spans[0].spans;
        let span = spans.iter_mut().find(|s| s.trace_id == a).unwrap();
        span.name = marker.into();
    }
    two_poisons(45, req, 1, 1).await;
}

/// Sends `req` (200 spans at most) through a gateway on 127.0.0.`ip` exporting to two
/// backends, one refusing requests that hold POISON-A, the other POISON-B, each span
/// alone; checks that each backend took all but its `poisoned` spans, that `failed` spans
/// count failed and the rest exported.
async fn two_poisons(ip: u8, req: ExportTraceServiceRequest, poisoned: u64, failed: u64) {
    let total: u64 = req
        .resource_spans
        .iter()
        .map(|rs| {
            rs.scope_spans
                .iter()
                .map(|ss| ss.spans.len() as u64)
                .sum::<u64>()
        })
        .sum();
    let stop = CancellationToken::new();
    let mut backends = Vec::new();
    for poison in [&b"POISON-A"[..], b"POISON-B"] {
        let (addr, backend) = common::capture_backend(&stop).await;
        backend.refuse_requests_containing(Some(poison));
        backends.push((addr, backend));
    }
    let config = one_shard_gateway(
        ip,
        &format!(
            "  otlp_grpc/a: {{endpoint: 'http://{}', batch: {{timeout: 300ms}}}}\n  otlp_grpc/b: {{endpoint: 'http://{}', batch: {{timeout: 300ms}}}}\n",
            backends[0].0, backends[1].0
        ),
    );
    let stats = keep_all_and_settle(&config, req, &stop).await;
    assert_eq!(backends[0].1.spans(), total - poisoned);
    assert_eq!(backends[1].1.spans(), total - poisoned);
    assert_eq!(
        stats.export_failed_spans.get(),
        failed,
        "{}",
        stats.render()
    );
    assert_eq!(stats.exported_spans.get(), total - failed);
    stop.cancel();
}

/// Scenario: an OTLP/gRPC and an OTLP/HTTP backend whose message limit (16 KiB) is under
/// the exporters' `batch.max_bytes` (the default 3 MiB), 400 kept spans exported in one
/// batch.
/// Guarantees: the requests they refuse as too large (RESOURCE_EXHAUSTED without
/// RetryInfo, 413) are halved until they pass: every span reaches both, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_backends_limit_are_halved_until_they_pass() {
    const LIMIT: usize = 16 << 10;
    let stop = CancellationToken::new();
    let (grpc_addr, grpc) = common::capture_backend(&stop).await;
    let (http_addr, http) =
        CaptureBackend::start_http("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    for b in [&grpc, &http] {
        b.refuse_requests_over(Some(LIMIT));
    }
    let config = one_shard_gateway(
        43,
        &format!("  otlp: {{endpoint: 'http://{grpc_addr}', batch: {{timeout: 300ms}}}}\n  otlphttp: {{endpoint: 'http://{http_addr}', batch: {{timeout: 300ms}}}}\n"),
    );
    let req = FakeOtlp::traces(400).spans(1).attrs(4).seed(91).build();
    let stats = keep_all_and_settle(&config, req, &stop).await;
    for (name, b) in [("grpc", &grpc), ("http", &http)] {
        assert!(
            b.too_large_requests() > 0,
            "{name}: nothing was over its limit"
        );
        assert_eq!(b.spans(), 400, "{name}: {}", stats.render());
        // Halved only as far as the limit needs: requests of many spans, not one each.
        let requests = b.bodies().len();
        assert!(requests <= 100, "{name}: {requests} requests for 400 spans");
    }
    assert_eq!(stats.export_failed_spans.get(), 0, "{}", stats.render());
    assert_eq!(stats.exported_spans.get(), 400);
    stop.cancel();
}

/// Scenario: a gRPC backend that refuses every request as too large (a limit no span
/// fits, or a quota it reports the same way: RESOURCE_EXHAUSTED without RetryInfo), 400
/// kept spans.
/// Guarantees: all 400 count failed after about log2(400) requests (halving down to one
/// span, then no part as large as one refused is sent), not one request per span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_refusing_everything_as_too_large_gets_few_requests() {
    let req = FakeOtlp::traces(400).spans(1).seed(92).build();
    let sent = refused_as_too_large(44, req, 400).await;
    assert!((2..=24).contains(&sent), "{sent} requests for 400 spans");
}

/// The same with spans each a byte smaller than the one before (what a sender controls):
/// each lone span is smaller than any refused so far.
/// Guarantees: the halving budget (16 log2 n) still bounds the requests, which the lone
/// spans spend too: under 160 for 400 spans, not one each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_decreasing_size_do_not_each_get_a_request() {
    // One trace: its spans reach the exporter in the request's order.
    let mut req = FakeOtlp::traces(1).spans(400).seed(93).build();
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    for (i, span) in spans.iter_mut().enumerate() {
        span.attributes.clear();
        span.name = "n".repeat(1000 - i);
    }
    let sent = refused_as_too_large(46, req, 400).await;
    assert!(sent <= 160, "{sent} requests for 400 spans");
}

/// Exports `req` (`spans` spans) to a gRPC backend on 127.0.0.`ip` refusing every request
/// as too large; checks every span counts failed and none arrived; the requests it got.
async fn refused_as_too_large(ip: u8, req: ExportTraceServiceRequest, spans: u64) -> u64 {
    let stop = CancellationToken::new();
    let (addr, backend) = common::capture_backend(&stop).await;
    backend.refuse_requests_over(Some(1));
    let config = one_shard_gateway(
        ip,
        &format!("  otlp: {{endpoint: 'http://{addr}', batch: {{timeout: 300ms}}}}\n"),
    );
    let stats = keep_all_and_settle(&config, req, &stop).await;
    assert_eq!(stats.export_failed_spans.get(), spans, "{}", stats.render());
    assert_eq!(backend.spans(), 0);
    stop.cancel();
    backend.too_large_requests()
}

/// A backend refusing, as malformed, every request that holds `marker`, and the config of
/// a gateway of `shards` shards receiving on 127.0.0.`ip` that exports to it in batches.
async fn refusing_backend(
    ip: u8,
    shards: usize,
    marker: &[u8],
    stop: &CancellationToken,
) -> (GatewayConfig, std::sync::Arc<CaptureBackend>) {
    let (backend_addr, backend) = common::capture_backend(stop).await;
    backend.refuse_requests_containing(Some(marker));
    let receive = ReceiveConfig {
        grpc: Some(format!("127.0.0.{ip}:0").parse().unwrap()),
        http: None,
        ..Default::default()
    };
    let mut export =
        tailgate_gateway::export::OtlpGrpcConfig::new(format!("http://{backend_addr}"));
    export.batch.timeout = Duration::from_millis(300);
    let config = GatewayConfig {
        buffer: BufferConfig {
            shards,
            ..Default::default()
        },
        ..GatewayConfig::new(
            receive,
            tailgate_gateway::config::ExportConfig::otlp_grpc(export),
        )
    };
    (config, backend)
}

/// The config of a one-shard gateway receiving OTLP/gRPC on 127.0.0.`ip` with the
/// `export:` entries `exporters` (YAML lines indented under `export:`), loaded from a file
/// as a user's would be.
fn one_shard_gateway(ip: u8, exporters: &str) -> GatewayConfig {
    let text = format!(
        "receive: {{grpc: '127.0.0.{ip}:0', http: null}}\nbuffer: {{shards: 1}}\nexport:\n{exporters}admin: null\nmetrics: null\n"
    );
    let path = std::env::temp_dir().join(format!(
        "tailgate-exporters-{}-{ip}.yaml",
        std::process::id()
    ));
    std::fs::write(&path, &text).unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    config
}

/// Starts a gateway with `config` and a keep-everything plan (`decision_wait` 200ms),
/// sends it `req` and waits (at most 10 s) until every span is settled; its counters.
async fn keep_all_and_settle(
    config: &GatewayConfig,
    req: opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
    stop: &CancellationToken,
) -> std::sync::Arc<tailgate_gateway::metrics::GatewayStats> {
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let plan = PolicyPlan::compile(
        &PolicyFile::parse(
            Path::new("p.yaml"),
            "decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n",
        )
        .unwrap(),
    );
    let gateway = Gateway::start(config, plan).unwrap();
    let stats = gateway.stats().clone();
    tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(5)));
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.export(req).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stats
}
