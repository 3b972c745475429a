//! The load driver stopped early, as `tailgate-loadtest run` is on a signal.

use std::sync::Arc;
use std::time::Duration;

use tailgate_loadtest::drive::{drive_until, DriveConfig, Protocol};
use tailgate_loadtest::generate::GenConfig;
use tailgate_loadtest::sink::Sink;
use tokio_util::sync::CancellationToken;

/// Scenario: a minute of load at 2,000 spans/s into a sink, stopped once the sink holds
/// 500 spans.
/// Guarantees: the driver returns soon after (a trial's run went on well past its
/// duration while refused, and a signal printed nothing), having sent far less than the
/// minute's load; every span it counts as sent was answered, and the sink holds exactly
/// those accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_driver_returns_with_what_it_sent() {
    let shutdown = CancellationToken::new();
    let sink = Arc::new(Sink::default());
    let listener = tailgate_core::receive::bind("sink", "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(sink.clone().serve(listener, None, shutdown.clone()));
    let cfg = DriveConfig {
        target: addr.to_string(),
        protocol: Protocol::Grpc,
        rate: 2_000.0,
        duration: Duration::from_secs(60),
        batch: 64,
        max_in_flight: 4,
        retry_for: Duration::from_secs(2),
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
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while sink.unique_spans() < 500 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.cancel();
        })
    };
    let started = tokio::time::Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(45), drive_until(cfg, stop))
        .await
        .expect("the driver did not stop")
        .unwrap();
    stopper.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(40));
    assert!(
        r.spans_sent >= 500 && r.spans_sent < 60_000,
        "{}",
        r.spans_sent
    );
    assert_eq!(
        r.spans_accepted + r.spans_refused + r.spans_rejected,
        r.spans_sent
    );
    assert_eq!(sink.unique_spans(), r.spans_accepted);
    shutdown.cancel();
    served.await.unwrap().unwrap();
}
