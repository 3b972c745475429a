#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A short run of `tailgate-loadtest chaos`: the real router and gateway binaries as
//! processes on 127.0.9.x, DNS on loopback, every scenario, at a low rate.

use std::path::PathBuf;
use std::time::Duration;

use tailgate_loadtest::chaos::{run_chaos, ChaosConfig, Scenario};

mod common;
use common::binaries;

/// Scenario: three gateways behind a router, under steady load, go through scale-up to
/// five, scale-down to two with SIGTERM, a rolling restart, a kill -9, a backend outage
/// and a policy reload.
/// Guarantees: for every planned change, the outage and the reload, no span is
/// unaccounted for, at most 0.1% of kept traces are incomplete and every error trace is
/// kept; the kill loses at most what the killed gateway held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stays_whole_through_every_change() {
    let (gateway_bin, router_bin) = binaries();
    let port = std::net::TcpListener::bind("127.0.9.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = ChaosConfig {
        loadtest_bin: PathBuf::from(env!("CARGO_BIN_EXE_tailgate-loadtest")),
        gateway_bin,
        router_bin,
        scenarios: Scenario::ALL.to_vec(),
        rate: 1500.0,
        phase: Duration::from_secs(5),
        // Debug binaries on two cores lag: leave room between a trace's spread (0.8 s) and
        // its decision, so that what is checked is the cluster's changes, not late spans.
        decision_wait: Duration::from_secs(3),
        outage: Duration::from_secs(4),
        redistribute: true,
        port,
        subnet: 9,
        dns_interval: Duration::from_millis(500),
        baseline_percentage: 5.0,
        workdir: std::env::temp_dir().join(format!("tailgate-chaos-test-{}", std::process::id())),
        progress: false,
    };
    let report = run_chaos(cfg).await.unwrap();
    let table = report.render();
    assert_eq!(report.scenarios.len(), 6, "{table}");
    for s in &report.scenarios {
        assert!(s.report.spans_sent > 0, "{table}");
        assert!(s.kept_traces > 0, "{table}");
    }
    let kill = report
        .scenarios
        .iter()
        .find(|s| s.scenario == Scenario::Kill)
        .unwrap();
    assert!(kill.held_by_killed_gateway.is_some(), "{table}");
    assert!(report.passed, "{table}");
}
