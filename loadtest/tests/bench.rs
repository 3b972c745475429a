#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! `bench router --tls` as a user runs it, briefly: the real router binary, TLS from the
//! load generator to the router and from the router to the sinks.

use std::time::Duration;

use tailgate_loadtest::bench::{bench_router, RouterBench};

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
