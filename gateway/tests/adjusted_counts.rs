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
use tailgate_core::wire::span_fields::{sampling_randomness, threshold_value, tracestate_get};

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
/// after the head sampler, each threshold written only where the trace's randomness
/// (`rv`, or its id's last 56 bits) reaches it (the head sampler's removed otherwise, the
/// count kept in the attribute); other vendors' entries survive.
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
                // A head sampler's randomness, consistent with its 50% (at or above
                // 0x80…), sometimes below 25%'s threshold (0xc0…), sometimes above.
                (false, true) => format!(
                    "ot=th:8;rv:{:014x},vendor=x",
                    0x80_0000_0000_0000u64 | u64::from(span.trace_id[13]) << 48
                ),
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
    let mut consistency: HashMap<bool, usize> = HashMap::new();
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
                let first = span.trace_state.split(',').next().unwrap().to_owned();
                let (th, want_count) = match (gold, head) {
                    (true, false) => ("th:0", 1),
                    (true, true) => ("th:8", 2),
                    (false, false) => ("th:8", 2),
                    (false, true) => ("th:c", 4),
                };
                // The threshold is written only where the randomness (`rv`, or the id's
                // last 56 bits) reaches it; else the `ot` entry keeps only its `rv`.
                let ts = span.trace_state.as_bytes();
                let r = sampling_randomness(ts, &span.trace_id).unwrap();
                let consistent = r >= threshold_value(1.0 / want_count as f64);
                let rv = tracestate_get(ts, b"ot")
                    .and_then(|ot| ot.split(|&b| b == b';').find(|kv| kv.starts_with(b"rv:")))
                    .map(|rv| String::from_utf8_lossy(rv).into_owned());
                let want_first = match (consistent, rv) {
                    (true, None) => format!("ot={th}"),
                    (true, Some(rv)) => format!("ot={th};{rv}"),
                    (false, Some(rv)) => format!("ot={rv}"),
                    (false, None) => match (gold, head) {
                        (true, true) => "tier=gold".into(),
                        _ => String::new(),
                    },
                };
                assert_eq!(
                    (first.as_str(), count),
                    (want_first.as_str(), want_count),
                    "{:?}",
                    span.trace_state
                );
                *consistency.entry(consistent).or_default() += 1;
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
    assert_eq!(
        consistency.len(),
        2,
        "thresholds written and left out: {consistency:?}"
    );
    gw.stop().await;
}
