#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A short run of `tailgate-loadtest chaos`: the real router and gateway binaries as
//! processes on 127.0.9.x to 127.0.11.x, DNS on loopback, every scenario, at a low rate.

use std::path::PathBuf;
use std::time::Duration;

use tailgate_loadtest::chaos::{run_chaos, ChaosConfig, Scenario};

use crate::common;
use common::binaries;

/// The scenarios of each run below, each run on its own subnet.
const SCALING: [Scenario; 2] = [Scenario::ScaleUp, Scenario::ScaleDown];
const RESTARTS: [Scenario; 2] = [Scenario::RollingRestart, Scenario::Kill];
const OUTAGE_AND_RELOAD: [Scenario; 2] = [Scenario::Outage, Scenario::Reload];

/// Runs `scenarios` in order on their own cluster, on 127.0.`subnet`.x, and checks what
/// every scenario promises.
///
/// The six scenarios run as three runs of two, side by side on three subnets (the harness
/// keeps runs apart by subnet, port and work folder): one after the other they took 129 s
/// of CI's test stage, and a cluster at this rate keeps a third of one core busy.
async fn run_and_check(
    scenarios: &[Scenario],
    subnet: u8,
) -> tailgate_loadtest::chaos::ChaosReport {
    let (gateway_bin, router_bin) = binaries();
    let port = std::net::TcpListener::bind((std::net::Ipv4Addr::new(127, 0, subnet, 1), 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let workdir = std::env::temp_dir().join(format!(
        "tailgate-chaos-test-{}-{subnet}",
        std::process::id()
    ));
    let cfg = ChaosConfig {
        loadtest_bin: PathBuf::from(env!("CARGO_BIN_EXE_tailgate-loadtest")),
        gateway_bin,
        router_bin,
        scenarios: scenarios.to_vec(),
        rate: 1500.0,
        phase: Duration::from_secs(5),
        // Debug binaries on two cores lag: leave room between a trace's spread (0.8 s) and
        // its decision, so that what is checked is the cluster's changes, not late spans.
        decision_wait: Duration::from_secs(3),
        outage: Duration::from_secs(4),
        redistribute: true,
        port,
        subnet,
        dns_interval: Duration::from_millis(500),
        baseline_percentage: 5.0,
        workdir: workdir.clone(),
        progress: false,
    };
    let report = run_chaos(cfg).await.unwrap();
    let table = report.render();
    assert_eq!(report.scenarios.len(), scenarios.len(), "{table}");
    for s in &report.scenarios {
        assert!(s.report.spans_sent > 0, "{table}");
        assert!(s.kept_traces > 0, "{table}");
    }
    assert!(report.passed, "{table}\nlogs: {}", workdir.display());
    // The processes' logs stay for a failed run.
    std::fs::remove_dir_all(&workdir).ok();
    report
}

/// Scenario: three gateways behind a router, under steady load, scale up to five; five
/// scale down to two with SIGTERM; three go through a rolling restart, and a kill -9 of
/// one; the backend goes down for a while; the policy file is replaced.
/// Guarantees: for every planned change, the outage and the reload, no span is
/// unaccounted for, at most 0.1% of kept traces are incomplete and every error trace is
/// kept; the kill loses at most what the killed gateway held, and the report says how
/// much that was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stays_whole_through_every_change() {
    // The three runs side by side: the test harness runs only as many tests at once as
    // there are cores, two here, so three tests would take two turns.
    let (scaling, restarts, _) = tokio::join!(
        run_and_check(&SCALING, 9),
        run_and_check(&RESTARTS, 10),
        run_and_check(&OUTAGE_AND_RELOAD, 11),
    );
    assert_eq!(scaling.scenarios.len(), SCALING.len());
    let kill = restarts
        .scenarios
        .iter()
        .find(|s| s.scenario == Scenario::Kill)
        .unwrap();
    assert!(
        kill.held_by_killed_gateway.is_some(),
        "{}",
        restarts.render()
    );
}

/// Every scenario is in one of the runs above.
#[test]
fn every_scenario_is_run() {
    for s in Scenario::ALL {
        assert!(
            [&SCALING[..], &RESTARTS[..], &OUTAGE_AND_RELOAD[..]]
                .iter()
                .any(|group| group.contains(&s)),
            "{s:?} is run by no test"
        );
    }
}
