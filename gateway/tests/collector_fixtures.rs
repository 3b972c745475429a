#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Policy files written the way Collector users write them load and decide as documented.

use std::path::Path;

use tailgate_gateway::buffer::{TraceAttr, TraceSummary, TraceView};
use tailgate_gateway::{PolicyFile, PolicyPlan};

/// Scenario: a `tail_sampling:` block in flow style with ten policies of eight kinds,
/// including `and` and a regex `drop`.
/// Guarantees: it loads unchanged, with the processor options applied, and the plan keeps
/// and drops as the policies say.
#[test]
fn collector_style_block_loads_and_decides() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/collector_style.yaml");
    let file = PolicyFile::load(&path).unwrap();
    assert_eq!(file.policies.len(), 10);
    assert_eq!(file.num_traces, 100);
    let plan = PolicyPlan::compile(&file);
    assert_eq!(plan.decision_cache_size, Some(100_000));
    let keys = plan.attribute_keys().to_vec();
    let attr = |k: &str, v: &'static str| TraceAttr {
        key: keys.iter().position(|x| x == k).unwrap() as u16,
        value: tailgate_core::wire::attrs::AttrValue::Str(bytes::Bytes::from_static(v.as_bytes())),
        from_resource: false,
        from_root: false,
    };
    let mut s = TraceSummary::default();
    s.add_span(0, 1_000_000, 0, true);
    // always_sample keeps an ordinary trace...
    assert!(
        plan.decide(&TraceView {
            trace_id: &[3; 16],
            summary: &s,
            now: tokio::time::Instant::now(),
        })
        .sampled
    );
    // ...but the drop policy beats it for health checks (regex, not anchored).
    s.add_attrs(&[attr("url.path", "/api/health")]);
    assert!(
        !plan
            .decide(&TraceView {
                trace_id: &[3; 16],
                summary: &s,
                now: tokio::time::Instant::now(),
            })
            .sampled
    );
}
