#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Adjusted counts on real requests: every kept span says with what probability it was
//! kept, in `tracestate` (`ot=th:…`) and in `sampling.adjusted_count`, combined with what a
//! head sampler already wrote; policies read `tracestate` and the root span's name off the
//! encoded spans.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;
use tailgate_core::test_util::FakeOtlp;

const POLICIES: &str = "decision_wait: 200ms
policies:
  - name: gold
    type: trace_state
    trace_state: {key: tier, values: [gold]}
  - name: half
    type: probabilistic
    probabilistic: {sampling_percentage: 50}
";

/// Scenario: 400 traces of 3 spans; a quarter carry `tier=gold` in their tracestate, a
/// quarter were head-sampled at 50% (`ot=th:8`). Policies keep gold traces and 50% of all.
/// Guarantees: gold traces are all kept with th:0 / count 1 (or th:8 / count 2 when also
/// head-sampled); others kept by the 50% policy carry th:8 / count 2, or th:c / count 4
/// after the head sampler; other vendors' entries survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_spans_carry_their_sampling_probability() {
    let gw = common::spawn_gateway([127, 0, 0, 9], common::plan(POLICIES), |_, _| {}).await;
    let (addr, backend, stats) = (gw.addr, gw.backend.clone(), gw.stats.clone());
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    // trace id → (gold, head-sampled)
    let mut sent: HashMap<Vec<u8>, (bool, bool)> = HashMap::new();
    for seed in 0..40 {
        let mut req = FakeOtlp::traces(10).spans(3).seed(900 + seed).build();
        for span in req
            .resource_spans
            .iter_mut()
            .flat_map(|r| r.scope_spans.iter_mut())
            .flat_map(|s| s.spans.iter_mut())
        {
            let k = span.trace_id[15] % 4;
            let (gold, head) = (k == 0, k == 1 || (k == 0 && span.trace_id[14] % 2 == 0));
            span.trace_state = match (gold, head) {
                (true, true) => "tier=gold,ot=th:8".into(),
                (true, false) => "vendor=x,tier=gold".into(),
                (false, true) => "ot=th:8;rv:ab,vendor=x".into(),
                (false, false) => String::new(),
            };
            sent.insert(span.trace_id.clone(), (gold, head));
        }
        client.export(req).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut kept_gold = 0;
    let mut by_case: HashMap<(bool, bool), usize> = HashMap::new();
    for body in backend.bodies() {
        for rs in ExportTraceServiceRequest::decode(body)
            .unwrap()
            .resource_spans
        {
            for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                let (gold, head) = sent[&span.trace_id];
                let count = span
                    .attributes
                    .iter()
                    .find(|kv| kv.key == "sampling.adjusted_count")
                    .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        Value::IntValue(i) => Some(*i),
                        _ => None,
                    })
                    .expect("every kept span has an integer adjusted count");
                let th = span.trace_state.split(',').next().unwrap().to_owned();
                let want = match (gold, head) {
                    (true, false) => ("ot=th:0", 1),
                    (true, true) => ("ot=th:8", 2),
                    (false, false) => ("ot=th:8", 2),
                    (false, true) => ("ot=th:c;rv:ab", 4),
                };
                assert_eq!((th.as_str(), count), want, "{:?}", span.trace_state);
                let survivors = match (gold, head) {
                    (true, false) => span.trace_state.ends_with("vendor=x,tier=gold"),
                    (false, true) => span.trace_state.ends_with(",vendor=x"),
                    _ => true,
                };
                assert!(survivors, "other entries survive: {:?}", span.trace_state);
                kept_gold += usize::from(gold);
                *by_case.entry((gold, head)).or_default() += 1;
            }
        }
    }
    let gold_sent = sent.values().filter(|(g, _)| *g).count();
    assert_eq!(kept_gold, gold_sent * 3, "every gold trace is kept whole");
    assert_eq!(
        by_case.len(),
        4,
        "all four cases were exercised: {by_case:?}"
    );
    gw.stop().await;
}
