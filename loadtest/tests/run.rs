#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The load driver stopped early, as `tailgate-loadtest run` is on a signal.

use std::sync::Arc;
use std::time::Duration;

use tailgate_loadtest::drive::{drive_until, DriveConfig, Protocol};
use tailgate_loadtest::generate::GenConfig;
use tailgate_loadtest::sink::Sink;
use tokio_util::sync::CancellationToken;

/// Scenario: a minute of load at 2,000 spans/s into a sink, stopped once the sink holds
/// 500 spans; then the same into a sink refusing everything (retryable), stopped after
/// its first refusals, with requests retried for 30 s.
/// Guarantees: the driver returns soon after (a trial's run went on well past its
/// duration while refused, and a signal printed nothing), having sent far less than the
/// minute's load, without retrying for 30 s; every span it counts as sent was answered
/// (accepted, refused or rejected), and the sink holds exactly those accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_driver_returns_with_what_it_sent() {
    stopped_run(false).await;
    stopped_run(true).await;
}

/// A sink serving OTLP/gRPC on a loopback port until the token is cancelled.
async fn serve_sink() -> (
    Arc<Sink>,
    std::net::SocketAddr,
    CancellationToken,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let shutdown = CancellationToken::new();
    let sink = Arc::new(Sink::default());
    let listener = tailgate_core::receive::bind("sink", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(sink.clone().serve(listener, None, shutdown.clone()));
    (sink, addr, shutdown, served)
}

/// One run of [`a_stopped_driver_returns_with_what_it_sent`]: into a refusing sink or not.
async fn stopped_run(refusing: bool) {
    let (sink, addr, shutdown, served) = serve_sink().await;
    sink.set_unavailable(refusing);
    let cfg = DriveConfig {
        target: addr.to_string(),
        protocol: Protocol::Grpc,
        rate: 2_000.0,
        duration: Duration::from_secs(60),
        batch: 64,
        max_in_flight: 4,
        retry_for: Duration::from_secs(30),
        gen: GenConfig {
            spans_per_trace: 4,
            attrs_per_span: 2,
            seed: 3,
            ..GenConfig::default()
        },
    };
    let stop = CancellationToken::new();
    let stopper = {
        let (stop, sink) = (stop.clone(), sink.clone());
        tokio::spawn(async move {
            // Refusing, the sink holds nothing: a second of load is refused meanwhile.
            let deadline =
                tokio::time::Instant::now() + Duration::from_secs(if refusing { 1 } else { 20 });
            while (refusing || sink.unique_spans() < 500) && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.cancel();
        })
    };
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(25), drive_until(cfg, stop))
        .await
        .expect("the driver did not stop")
        .unwrap();
    stopper.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(25));
    let least = if refusing { 1 } else { 500 };
    assert!(
        r.spans_sent >= least && r.spans_sent < 60_000,
        "{}",
        r.spans_sent
    );
    assert_eq!(r.spans_refused > 0, refusing, "{}", r.spans_refused);
    assert_eq!(
        r.spans_accepted + r.spans_refused + r.spans_rejected,
        r.spans_sent
    );
    assert_eq!(sink.unique_spans(), r.spans_accepted);
    shutdown.cancel();
    served.await.unwrap().unwrap();
}

/// Scenario: one export to a sink compressed with zstd, as a router or Collector exporter
/// with `compression: zstd` sends (a user check: the sink refused it, "Content is
/// compressed with `zstd` which isn't supported", where a Collector's receiver takes it),
/// and one with gzip.
/// Guarantees: both are taken and their spans held.
#[tokio::test]
async fn the_sink_takes_zstd_and_gzip() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use tonic::codec::CompressionEncoding;
    let (sink, addr, shutdown, _served) = serve_sink().await;
    let mut held = 0;
    for (encoding, seed) in [
        (CompressionEncoding::Zstd, 1),
        (CompressionEncoding::Gzip, 2),
    ] {
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
            .send_compressed(encoding);
        let req = tailgate_core::test_util::FakeOtlp::traces(3)
            .spans(2)
            .seed(seed)
            .build();
        tokio::time::timeout(Duration::from_secs(10), client.export(req))
            .await
            .unwrap()
            .unwrap();
        held += 6;
        assert_eq!(sink.unique_spans(), held, "{encoding:?}");
    }
    shutdown.cancel();
}
