#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The demo, in-process and short, with the checks the issue asks for.

use std::net::SocketAddr;

use tailgate_loadtest::demo::{run_demo, DemoConfig};
use tailgate_loadtest::drive::{DriveConfig, Protocol};
use tailgate_loadtest::generate::GenConfig;
use tokio::time::Duration;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("valid socket address")
}

fn config(protocol: Protocol, rate: f64, secs: u64, tolerance: f64, host: u8) -> DemoConfig {
    DemoConfig {
        router: addr("127.0.0.1:0"),
        router_http: Some(addr("127.0.0.1:0")),
        gateways: (0..3)
            .map(|i| addr(&format!("127.0.{host}.{}:0", 2 + i)))
            .collect(),
        sink: addr("127.0.0.1:0"),
        drive: DriveConfig {
            target: String::new(),
            protocol,
            rate,
            duration: Duration::from_secs(secs),
            batch: 256,
            max_in_flight: 16,
            retry_for: Duration::from_secs(10),
            gen: GenConfig {
                spans_per_trace: 4,
                attrs_per_span: 3,
                seed: 7,
                ..GenConfig::default()
            },
        },
        decision_wait: Duration::from_millis(1500),
        policies: None,
        baseline_percentage: 5.0,
        baseline_tolerance: tolerance,
        progress: false,
    }
}

/// Scenario: router → three gateways (each on its own 127.0.0.x address) → sink, driven
/// over OTLP/gRPC for a few seconds with error, slow and normal traces whose spans arrive
/// in several requests.
/// Guarantees: every error and slow trace reaches the backend whole and from one gateway,
/// no span is duplicated or unaccounted for, and the baseline share is 5% ± 1%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_over_grpc_keeps_what_the_policy_says_and_loses_nothing() {
    let report = run_demo(config(Protocol::Grpc, 6000.0, 5, 0.01, 0))
        .await
        .unwrap();
    let text = report.render();
    assert!(report.traces_sent > 5000, "{text}");
    assert!(
        report.error_traces_sent > 100 && report.slow_traces_sent > 100,
        "{text}"
    );
    assert_eq!(report.error_traces_kept, report.error_traces_sent, "{text}");
    assert_eq!(report.slow_traces_kept, report.slow_traces_sent, "{text}");
    assert_eq!(report.incomplete_kept_traces, 0, "{text}");
    assert_eq!(report.duplicate_spans, 0, "{text}");
    assert_eq!(report.unaccounted_spans, 0, "{text}");
    assert!((report.baseline_keep_share - 0.05).abs() <= 0.01, "{text}");
    assert!(report.components.dropped_by_policy > 0, "{text}");
    // Traces are decided decision_wait (1.5 s) after their first span, and their last span
    // is sent up to 1.5 s after the first.
    assert!(report.decision_latency_ms.p50 > 0.0, "{text}");
    assert!(report.decision_latency_ms.max < 1500.0 + 5000.0, "{text}");
    assert!(report.passed, "{text}");
}

/// Scenario: the same cluster driven over OTLP/HTTP (protobuf) at a lower rate.
/// Guarantees: the HTTP receiver feeds the same path: kept traces whole, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_over_http_keeps_traces_whole() {
    let mut cfg = config(Protocol::Http, 2000.0, 2, 0.05, 1);
    cfg.drive.target = String::new();
    let report = run_demo(cfg).await.unwrap();
    let text = report.render();
    assert!(report.traces_sent > 500, "{text}");
    assert_eq!(report.error_traces_kept, report.error_traces_sent, "{text}");
    assert_eq!(report.slow_traces_kept, report.slow_traces_sent, "{text}");
    assert_eq!(report.incomplete_kept_traces, 0, "{text}");
    assert_eq!(report.unaccounted_spans, 0, "{text}");
    assert_eq!(report.spans_refused, 0, "{text}");
}

/// Scenario: the demo with the user's own policy file (`demo --policies`): a whole
/// Collector config whose `tail_sampling` keeps errors only, with a 1 s wait.
/// Guarantees: the gateways decide with that file, not the demo's (every error trace kept,
/// no slow or other trace: the demo's baseline would keep 5% of them); the report names
/// the file and runs only the checks any policy passes (no baseline check, which would
/// fail here), all of which pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_with_the_users_policies_decides_with_them() {
    let dir = tailgate_core::test_util::scratch_dir("demo-policies").unwrap();
    let path = dir.join("collector.yaml");
    std::fs::write(
        &path,
        "processors:\n  tail_sampling:\n    decision_wait: 1s\n    policies:\n      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n",
    )
    .unwrap();
    let mut cfg = config(Protocol::Grpc, 3000.0, 2, 0.01, 2);
    cfg.policies = Some(path.clone());
    let report = run_demo(cfg).await.unwrap();
    let text = report.render();
    assert!(report.error_traces_sent > 10, "{text}");
    assert_eq!(report.error_traces_kept, report.error_traces_sent, "{text}");
    assert_eq!(report.slow_traces_kept, 0, "{text}");
    assert_eq!(report.baseline_keep_share, 0.0, "{text}");
    assert_eq!(report.policies, Some(path.display().to_string()));
    assert!(
        report.checks.iter().all(|c| !c.name.contains("baseline")),
        "{text}"
    );
    assert!(text.contains("policies: "), "{text}");
    assert!(report.passed, "{text}");
}
