#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Policy hot reload while traffic flows.

use crate::common;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::test_util::FakeOtlp;
use tokio::time::Instant;

const KEEP_ALL: &str = "decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n";
const KEEP_NONE: &str = "decision_wait: 200ms\npolicies:\n  - {name: none, type: probabilistic, probabilistic: {sampling_percentage: 0}}\n";

/// Scenario: a gateway starts with the default `num_traces` (50,000); a reload sets it to
/// 10, then 50 traces arrive (decided by time only a minute later).
/// Guarantees: the reloaded limit holds at once: at most 10 traces stay buffered, the
/// others are decided early and counted so. (It was fixed at start while
/// `tailgate_gateway_max_traces` showed the reloaded value: a black-box check saw the
/// gauge read 100,000 with live traces pinned at the 200 of the start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_num_traces_holds_at_once() {
    let wait = "decision_wait: 60s\npolicies:\n  - {name: all, type: always_sample}\n";
    let gw = common::spawn_gateway([127, 0, 0, 77], common::plan(wait), |_, _| {}).await;
    gw.plan.store(std::sync::Arc::new(common::plan(&format!(
        "num_traces: 10\n{wait}"
    ))));
    let mut client = TraceServiceClient::connect(format!("http://{}", gw.addr))
        .await
        .unwrap();
    client
        .export(FakeOtlp::traces(50).spans(2).seed(7).build())
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    // Both settle: a shard takes released traces off the live gauge in batches, after it
    // counts their early decisions (CI once read 11 live right after the 40th).
    while gw.stats.early_decisions.get() < 40 || gw.stats.live_traces.get() > 10 {
        assert!(
            Instant::now() < deadline,
            "{} decided early, {} live",
            gw.stats.early_decisions.get(),
            gw.stats.live_traces.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gw.stats.live_traces.get() <= 10);
    assert!(gw.stats.early_decisions.get() >= 40);
}

/// Scenario: a gateway keeps everything; while requests keep arriving, its policy file is
/// rewritten to keep nothing, then replaced by a broken file.
/// Guarantees: no span is lost across the swap (received = exported + dropped); traces
/// decided after the swap follow the new plan; the broken file is refused, counted, and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_switches_plans_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("tailgate-reload-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("policies.yaml");
    std::fs::write(&path, KEEP_ALL).unwrap();

    let watched = path.clone();
    let gw = common::spawn_gateway([127, 0, 0, 6], common::plan(KEEP_ALL), move |g, stop| {
        g.watch_policies(watched, Duration::from_millis(50), stop.clone());
    })
    .await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    let (plan, reloads) = (gw.plan.clone(), gw.reloads.clone());

    // Load: 60 requests of 10 traces, one every 10 ms, across the swap.
    let load = tokio::spawn(async move {
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        for seed in 0..60 {
            client
                .export(FakeOtlp::traces(10).spans(3).seed(seed).build())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    std::fs::write(&path, KEEP_NONE).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while plan.load().names() != ["none"] {
        assert!(Instant::now() < deadline, "the new plan never took effect");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    load.await.unwrap();

    // A broken file: refused, counted, and the plan stays.
    std::fs::write(&path, "policies:\n  - {name: x, type: sometimes}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads.error.get() == 0 {
        assert!(
            Instant::now() < deadline,
            "the broken file was never noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(plan.load().names(), ["none"]);

    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.in_flight_spans() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = 60 * 10 * 3;
    assert_eq!(stats.received_spans.get(), total);
    assert_eq!(
        stats.exported_spans.get() + stats.dropped_spans.get(),
        total,
        "spans lost across the reload"
    );
    assert!(
        stats.exported_spans.get() > 0,
        "nothing was kept before the swap"
    );
    assert!(
        stats.dropped_spans.get() > 0,
        "nothing was dropped after the swap"
    );
    assert_eq!(backend.spans(), stats.exported_spans.get());
    assert_eq!(reloads.ok.get(), 1);

    gw.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
