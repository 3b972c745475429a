#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `bench router --tls` and `bench gateway --tls` as a user runs them, briefly: the real
//! binaries, TLS from the load generator in and from the binary out.

use std::time::Duration;

use tailgate_loadtest::bench::{bench_gateway, bench_router, GatewayBench, RouterBench};

mod common;

/// Scenario: one second of plaintext, then one second of TLS on both hops, through the
/// router binary (debug build, so figures mean nothing here; docs/benchmarks.md has them).
/// Guarantees: both variants deliver, the second over TLS (a TLS handshake failure would
/// leave the sinks empty), and every span the router accepted reached a sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_bench_runs_plaintext_and_tls() {
    let (_, router_bin) = common::binaries();
    let results = bench_router(&RouterBench {
        router_bin,
        duration: Duration::from_secs(1),
        spans_per_request: 64,
        concurrency: 2,
        connections: 1,
        pin_cpu: None,
        tls: true,
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

/// Scenario: one second of load over TLS into the gateway binary, kept traces exported
/// over TLS to the counting backend, decision_wait 1 s.
/// Guarantees: the gateway took spans over TLS, exported the kept ones over TLS (a failed
/// handshake on either side would leave the backend empty or the run unsettled), and every
/// span was accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_bench_runs_over_tls() {
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
    })
    .await
    .unwrap();
    assert!(r.tls);
    assert!(r.spans_sent > 0, "{r:?}");
    assert!(r.spans_at_backend > 0, "{r:?}");
    assert!(r.all_spans_settled, "{r:?}");
}
