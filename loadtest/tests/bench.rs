#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `bench router --tls` and `bench gateway --tls` as a user runs them, briefly: the real
//! binaries, TLS from the load generator in and from the binary out.

use std::time::Duration;

use tailgate_loadtest::bench::{bench_gateway, bench_router, GatewayBench, RouterBench};

mod common;

/// A one-second router bench of small requests through the router binary, plaintext.
fn one_second_of_router_bench() -> RouterBench {
    let (_, router_bin) = common::binaries();
    RouterBench {
        router_bin,
        duration: Duration::from_secs(1),
        spans_per_request: 64,
        concurrency: 2,
        connections: 1,
        pin_cpu: None,
        tls: false,
        relay_bin: None,
        rate: None,
    }
}

/// Scenario: one second of plaintext, then one second of TLS on both hops, through the
/// router binary (debug build, so figures mean nothing here; docs/benchmarks.md has them).
/// Guarantees: both variants deliver, the second over TLS (a TLS handshake failure would
/// leave the sinks empty), and every span the router accepted reached a sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_bench_runs_plaintext_and_tls() {
    let _alone = GATEWAY_BENCHES.lock().await;
    let results = bench_router(&RouterBench {
        tls: true,
        ..one_second_of_router_bench()
    })
    .await
    .unwrap();
    assert_eq!(
        results.iter().map(|r| r.tls).collect::<Vec<_>>(),
        [false, true]
    );
    for r in &results {
        assert!(r.spans_sent > 0, "{r:?}");
        assert!(r.all_spans_counted, "{r:?}");
    }
}

/// One bench at a time: each picks a free port on 127.0.1.1 and releases it before its
/// server binds it, so two at once could pick the same one.
static GATEWAY_BENCHES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Scenario: one second of load over TLS into the gateway binary, kept traces exported
/// over TLS to the counting backend, decision_wait 1 s.
/// Guarantees: the gateway took spans over TLS, exported the kept ones over TLS (a failed
/// handshake on either side would leave the backend empty or the run unsettled), and every
/// span was accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bench_runs_over_tls() {
    let _alone = GATEWAY_BENCHES.lock().await;
    let (gateway_bin, _) = common::binaries();
    let r = bench_gateway(&GatewayBench {
        gateway_bin,
        duration: Duration::from_secs(1),
        decision_wait: Duration::from_secs(1),
        spans_per_request: 64,
        concurrency: 2,
        max_buffered_bytes: None,
        with_peers: false,
        pin_cpu: None,
        tls: true,
        ..GatewayBench::default()
    })
    .await
    .unwrap();
    assert!(r.tls);
    assert!(r.spans_sent > 0, "{r:?}");
    assert!(r.spans_at_backend > 0, "{r:?}");
    assert!(r.all_spans_settled, "{r:?}");
}

/// Scenario: `bench gateway --saturate` for one second: pre-encoded requests of 2-span
/// traces replayed from two connections.
/// Guarantees: the replayed requests carry fresh, whole traces (every span sent is decided
/// and the kept ones exported: a repeated id would be a late span of a decided trace, not a
/// new trace), and the result says how busy the gateway was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bench_saturates_with_replayed_requests() {
    let _alone = GATEWAY_BENCHES.lock().await;
    let (gateway_bin, _) = common::binaries();
    let r = bench_gateway(&GatewayBench {
        gateway_bin,
        duration: Duration::from_secs(1),
        decision_wait: Duration::from_secs(1),
        spans_per_request: 128,
        concurrency: 4,
        connections: 2,
        spans_per_trace: 2,
        saturate: true,
        warmup: Some(Duration::from_millis(500)),
        ..GatewayBench::default()
    })
    .await
    .unwrap();
    assert!(r.saturate && r.spans_per_trace == 2);
    // The steady-state window is what is left of driving after the warm-up.
    let window = r
        .steady_window_seconds
        .expect("a warm-up gives a steady window");
    assert!((0.4..0.9).contains(&window), "{r:?}");
    assert!(
        r.steady_cpu_seconds_per_million_spans
            .is_some_and(|c| c > 0.0),
        "{r:?}"
    );
    assert!(r.spans_sent > 0, "{r:?}");
    assert!(r.all_spans_settled, "{r:?}");
    assert!(r.spans_at_backend > 0, "{r:?}");
    assert!(r.server_core_utilisation > 0.0, "{r:?}");
    assert!(r.at_peak_buffered.live_traces > 0, "{r:?}");
    assert!(
        r.at_peak_buffered.held_bytes >= r.at_peak_buffered.buffered_bytes,
        "{r:?}"
    );
}

/// Scenario: one second of load through the reference relay (`tailgate-loadtest relay`) in
/// the router's place, as `bench router --relay` runs it.
/// Guarantees: the relay splits by trace id and forwards every span it answered OK for to
/// the sinks, so the floor the router is compared with does the same work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_relay_delivers_every_span_it_accepts() {
    let _alone = GATEWAY_BENCHES.lock().await;
    let results = bench_router(&RouterBench {
        concurrency: 4,
        connections: 2,
        relay_bin: Some(env!("CARGO_BIN_EXE_tailgate-loadtest").into()),
        ..one_second_of_router_bench()
    })
    .await
    .unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    let r = &results[0];
    assert_eq!(
        (r.server.as_str(), r.compression.as_str()),
        ("relay", "none")
    );
    assert!(r.spans_sent > 0, "{r:?}");
    assert_eq!(r.refused_spans, 0, "{r:?}");
    assert!(r.all_spans_counted, "{r:?}");
}

/// Scenario: one second at a set rate (`bench router --rate`) through the reference relay:
/// 50 requests of 64 spans are due in that second, where unpaced the same load sends many
/// times more.
/// Guarantees: the pacing offers no more than the rate (the CPU per span at a sustainable
/// rate is measured at that rate) and does not starve the run either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_run_offers_the_rate_and_no_more() {
    let _alone = GATEWAY_BENCHES.lock().await;
    let rate = 3_200;
    let cfg = RouterBench {
        concurrency: 4,
        connections: 2,
        relay_bin: Some(env!("CARGO_BIN_EXE_tailgate-loadtest").into()),
        rate: Some(rate),
        ..one_second_of_router_bench()
    };
    let results = bench_router(&cfg).await.unwrap();
    let r = &results[0];
    let due = rate * cfg.duration.as_secs();
    assert!(r.spans_sent <= due, "{r:?}");
    assert!(r.spans_sent >= due / 4, "{r:?}");
    assert!(r.all_spans_counted, "{r:?}");
}
