#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Policy files written the way Collector users write them load and decide as documented.

use std::path::Path;

use tailgate_gateway::buffer::{TraceAttr, TraceSummary, TraceView};
use tailgate_gateway::{PolicyFile, PolicyPlan};

/// A span string attribute under the plan key `k`.
fn str_attr(keys: &[String], k: &str, v: &'static str) -> TraceAttr {
    TraceAttr {
        key: keys.iter().position(|x| x == k).unwrap() as u16,
        value: tailgate_core::wire::attrs::AttrValue::Str(bytes::Bytes::from_static(v.as_bytes())),
        from_resource: false,
        from_root: false,
    }
}

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
    let attr = |k: &str, v: &'static str| str_attr(&keys, k, v);
    let mut s = TraceSummary::default();
    s.add_span(0, 1_000_000, 0, true);
    // always_sample keeps an ordinary trace...
    assert!(
        plan.decide(&TraceView {
            trace_id: &[3; 16],
            summary: &s,
            spans: tailgate_gateway::buffer::Spans::EMPTY,
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
                spans: tailgate_gateway::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            })
            .sampled
    );
}

/// Scenario: a policy file with every Collector policy type, written in
/// the flow style of the Collector's documentation, with a composite and an `and`.
/// Guarantees: it loads unchanged; the plan describes every policy; the documented
/// behaviours hold (drop beats everything, composite shares its budget, the `and` needs
/// both parts); an `ottl_condition` entry loads too.
#[test]
fn every_collector_policy_type_loads_and_decides_as_documented() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/collector_all_kinds.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let file = PolicyFile::parse(&path, &text).unwrap();
    assert_eq!(file.policies.len(), 16);
    let plan = PolicyPlan::compile(&file);
    let described = plan.describe();
    for name in plan.names() {
        assert!(
            described.contains(name.as_str()),
            "{name} missing from {described}"
        );
    }
    // Only the composite and the always_sample decide this plain trace... and drop wins
    // over both for a probe.
    let keys = plan.attribute_keys().to_vec();
    let attr = |k: &str, v: &'static str| str_attr(&keys, k, v);
    let mut s = TraceSummary::default();
    s.add_span(0, 1_000_000, 1, true);
    let d = plan.decide(&TraceView::new(&[5; 16], &s));
    assert!(d.sampled);
    assert_eq!(
        plan.names()[d.policy.unwrap() as usize],
        "keep-everything-in-debug"
    );
    s.add_attrs(&[attr("url.path", "/healthz")]);
    assert!(!plan.decide(&TraceView::new(&[5; 16], &s)).sampled);

    // The `and` and the composite on their own.
    let only = |name: &str| {
        let p = plan.names().iter().position(|n| n == name).unwrap();
        &plan.policies()[p]
    };
    let mut checkout = TraceSummary::default();
    checkout.add_span(0, 1_500_000_000, 0, true);
    checkout.add_attrs(&[attr("service.name", "checkout")]);
    use tailgate_gateway::policy::Verdict;
    assert_eq!(
        only("slow-checkout").evaluate(&TraceView::new(&[6; 16], &checkout)),
        Verdict::Sampled
    );
    let mut fast = TraceSummary::default();
    fast.add_span(0, 1_000_000, 0, true);
    fast.add_attrs(&[attr("service.name", "checkout")]);
    assert_eq!(
        only("slow-checkout").evaluate(&TraceView::new(&[6; 16], &fast)),
        Verdict::NotSampled
    );
    // The composite's `rest` share is 250 spans a second: 300-span traces never fit it,
    // 100-span ones fit twice in one second.
    let mut big = TraceSummary::default();
    for _ in 0..100 {
        big.add_span(0, 1_000_000, 1, false);
    }
    let composite = only("shared-budget");
    let now = tokio::time::Instant::now();
    let view = TraceView {
        trace_id: &[7; 16],
        summary: &big,
        spans: tailgate_gateway::buffer::Spans::EMPTY,
        now,
    };
    let kept = (0..5)
        .filter(|_| composite.evaluate(&view) == Verdict::Sampled)
        .count();
    assert!(
        (2..=4).contains(&kept),
        "250 spans/s keep 2 traces of 100 per second (4 if a second boundary passes): {kept}"
    );

    // The same file with an ottl_condition entry loads: every Collector policy type.
    let with_ottl = text.replacen(
        "      {\n        name: keep-everything-in-debug,",
        "      {\n        name: ottl,\n        type: ottl_condition,\n        ottl_condition: {error_mode: ignore, span: ['attributes[\"x\"] == 1']}\n      },\n      {\n        name: keep-everything-in-debug,",
        1,
    );
    assert_ne!(with_ottl, text);
    let file = PolicyFile::parse(&path, &with_ottl).unwrap();
    assert_eq!(file.policies.len(), 17);
}

/// Scenario: docs/policies.md shows `tailgate-gateway explain` run on the examples.
/// Guarantees: the text shown is what explain prints for those files today (the example
/// once showed an older latency wording).
#[test]
fn the_explain_example_in_the_docs_is_what_explain_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let doc = std::fs::read_to_string(root.join("docs/policies.md")).unwrap();
    let command = "$ tailgate-gateway explain --policies examples/policies.yaml --traces examples/traces.jsonl --trace-id ";
    let at = doc
        .find(command)
        .expect("the example is in docs/policies.md");
    let rest = &doc[at + command.len()..];
    let (id, rest) = rest.split_once('\n').unwrap();
    let shown = &rest[..rest.find("```").unwrap()];
    let file = PolicyFile::load(&root.join("examples/policies.yaml")).unwrap();
    let traces = std::fs::read_to_string(root.join("examples/traces.jsonl")).unwrap();
    let id = tailgate_gateway::explain::parse_trace_id(id).unwrap();
    let printed = tailgate_gateway::explain::explain(&file, &traces, Some(id))
        .unwrap()
        .render();
    assert_eq!(shown, printed);
}
