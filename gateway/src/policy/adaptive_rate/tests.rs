use super::*;
use crate::buffer::trace::{TraceAttr, TraceSummary};
use bytes::Bytes;

#[test]
fn fair_share_protects_quiet_keys_and_meets_the_target() {
    let rates = [1000.0, 300.0, 50.0, 10.0, 1.0];
    let p = fair_probabilities(&rates, 100.0, 0.0001, 1.0);
    let kept: f64 = rates.iter().zip(&p).map(|(r, p)| r * p).sum();
    assert!((kept - 100.0).abs() < 0.01, "{kept}");
    // The quiet keys are kept whole; the loud ones share the rest equally.
    assert_eq!(p[3], 1.0);
    assert_eq!(p[4], 1.0);
    let loud = rates[0] * p[0];
    assert!((loud - rates[1] * p[1]).abs() < 0.01);
    assert!((loud - rates[2] * p[2]).abs() < 0.01);
    // Under the target everything is kept; bounds hold.
    assert_eq!(
        fair_probabilities(&rates, 10_000.0, 0.0001, 1.0),
        vec![1.0; 5]
    );
    let p = fair_probabilities(&rates, 0.001, 0.01, 0.5);
    assert!(p.iter().all(|p| (0.01..=0.5).contains(p)), "{p:?}");
}

fn trace(service: &'static str, n: u64) -> ([u8; 16], TraceSummary) {
    trace_of(Bytes::from_static(service.as_bytes()), n)
}

/// A one-span trace `n` whose root's `service.name` (key 0) is `service`.
fn trace_of(service: Bytes, n: u64) -> ([u8; 16], TraceSummary) {
    let mut s = TraceSummary::default();
    s.add_span(0, 1, 0, true);
    s.add_attrs(&[TraceAttr {
        key: 0,
        value: AttrValue::Str(service),
        from_resource: true,
        from_root: true,
    }]);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_be_bytes());
    id[8..].copy_from_slice(&(n.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_be_bytes());
    (id, s)
}

/// Drives `secs` seconds of a skewed mix through the policy in 10 ms steps and returns
/// the traces kept in each second.
fn drive(policy: &AdaptiveRatePolicy, secs: u64) -> Vec<u64> {
    // Traces per second by service: one loud, a few medium, one quiet.
    let mix: [(&str, u64); 5] = [
        ("checkout", 2000),
        ("search", 600),
        ("auth", 150),
        ("emails", 20),
        ("cron", 2),
    ];
    let t0 = Instant::now();
    let mut n = 0u64;
    let mut per_second = Vec::new();
    let mut quiet_kept = 0u64;
    for sec in 0..secs {
        let mut kept = 0;
        for step in 0..100u64 {
            let now = t0 + Duration::from_millis(sec * 1000 + step * 10);
            for (service, rate) in mix {
                // Spread each service's traces evenly over the 100 steps of a second.
                let count = (rate * (step + 1)) / 100 - (rate * step) / 100;
                for _ in 0..count {
                    n += 1;
                    let (id, s) = trace(service, n);
                    let view = TraceView {
                        trace_id: &id,
                        summary: &s,
                        spans: crate::buffer::Spans::EMPTY,
                        now,
                    };
                    if policy.evaluate(&view) == Verdict::Sampled {
                        kept += 1;
                        if service == "cron" && sec >= 1 {
                            quiet_kept += 1;
                        }
                    }
                }
            }
        }
        per_second.push(kept);
    }
    // The quiet service is never starved: after the first interval, its traces are kept.
    assert_eq!(quiet_kept, (secs - 1) * 2, "cron kept {quiet_kept}");
    per_second
}

#[test]
fn converges_to_the_target_within_ten_percent_on_a_skewed_mix() {
    let cfg = AdaptiveRateConfig {
        target_traces_per_second: Some(100.0),
        keys: vec!["service.name".into()],
        interval: Duration::from_secs(2),
        ..Default::default()
    };
    cfg.validate().unwrap();
    let policy = AdaptiveRatePolicy::new(&cfg, vec![0]);
    let per_second = drive(&policy, 15);
    // The first (1 s) interval keeps at most its target.
    assert!(per_second[0] <= 100, "{per_second:?}");
    // After three intervals (1 s, then every 2 s), every interval is within 10% of the
    // target (200 traces per 2 s).
    for (i, pair) in per_second[5..].chunks(2).enumerate() {
        let kept: u64 = pair.iter().sum::<u64>() * 2 / pair.len() as u64;
        assert!(
            (180..=220).contains(&kept),
            "interval {i} after convergence: kept {kept}, per second: {per_second:?}"
        );
    }
    let probs = policy.key_probabilities();
    assert_eq!(probs.len(), 5, "{probs:?}");
    assert_eq!(probs[0].0, "checkout");
    assert!(probs[0].1 < 0.05, "{probs:?}");
    let cron = probs.iter().find(|(k, _)| k == "cron").unwrap();
    assert_eq!(cron.1, 1.0);
}

#[test]
fn same_probabilities_give_the_same_decision_for_the_same_trace() {
    let cfg = AdaptiveRateConfig {
        target_traces_per_second: Some(50.0),
        keys: vec!["service.name".into()],
        interval: Duration::from_secs(1),
        ..Default::default()
    };
    let (a, b) = (
        AdaptiveRatePolicy::new(&cfg, vec![0]),
        AdaptiveRatePolicy::new(&cfg, vec![0]),
    );
    drive(&a, 3);
    drive(&b, 3);
    // Two gateways measure nearly the same rates, so nearly the same probability, and the
    // decision is a pure function of the trace id and that probability.
    let now = Instant::now() + Duration::from_millis(3500);
    let (mut agreed, mut kept) = (0, 0);
    for n in 1_000_000..1_010_000u64 {
        let (id, s) = trace("checkout", n);
        let view = TraceView {
            trace_id: &id,
            summary: &s,
            spans: crate::buffer::Spans::EMPTY,
            now,
        };
        let (pa, pb) = (a.probability(&view), b.probability(&view));
        assert!((pa - pb).abs() / pa < 0.05, "{pa} vs {pb}");
        let va = xxh3_64_with_seed(&id, SEED) >> 8 >= threshold(pa);
        let vb = xxh3_64_with_seed(&id, SEED) >> 8 >= threshold(pb);
        agreed += u32::from(va == vb);
        kept += u32::from(va);
    }
    assert!(kept > 0);
    assert!(agreed >= 9_950, "{agreed} of 10000 agree");
}

#[test]
fn bad_settings_are_named() {
    let bad = |f: fn(&mut AdaptiveRateConfig)| {
        let mut c = AdaptiveRateConfig {
            target_traces_per_second: Some(10.0),
            ..Default::default()
        };
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert!(matches!(
        bad(|c| c.target_spans_per_second = Some(1.0)),
        SettingError::Conflict { problem, .. } if problem.contains("exclusive")
    ));
    assert!(matches!(
        bad(|c| c.target_traces_per_second = None),
        SettingError::Conflict { key, .. } if key == "target_traces_per_second"
    ));
    assert!(matches!(
        bad(|c| c.min_probability = 2.0),
        SettingError::OutOfRange { key, found, .. } if key == "min_probability" && found == "2"
    ));
    assert!(matches!(
        bad(|c| c.smoothing = 0.0),
        SettingError::OutOfRange { key, .. } if key == "smoothing"
    ));
    assert!(matches!(
        bad(|c| c.keys = vec![String::new()]),
        SettingError::Empty { key } if key == "keys[0]"
    ));
}

/// Scenario: keys written as Refinery writes a root span's fields (`root.http.route`,
/// a Refinery user's trial: the literal name matched nothing, so all traces shared a key).
/// Guarantees: the plan reads the attribute (`http.route`); `root.name` stays the root
/// span's name.
#[test]
fn root_prefixed_keys_read_the_attribute() {
    let file = crate::PolicyFile::parse(
        std::path::Path::new("p.yaml"),
        "policies:\n  - {name: a, type: adaptive_rate, adaptive_rate: {target_traces_per_second: 5, keys: [root.http.route, root.name, service.name]}}\n",
    )
    .unwrap();
    let plan = crate::PolicyPlan::compile(&file);
    assert_eq!(
        plan.attribute_keys(),
        ["http.route", field_keys::ROOT_NAME, "service.name"]
    );
}

/// Scenario: a sender whose every trace has its own 100 KB `service.name` (a black-box
/// check took a gateway to 6.9 GB this way, uncharged by its limits), against a policy
/// tracking at most 50 keys.
/// Guarantees: keys seen in an interval stay at most `max_keys` (plus "(other)", which
/// takes the rest), names keep at most 128 bytes of a value, and the table after the
/// recompute holds at most `max_keys` keys; the long keys are still told apart by their
/// whole values (two values alike in their first 128 bytes are two keys).
#[test]
fn a_flood_of_long_distinct_keys_is_bounded() {
    let cfg = AdaptiveRateConfig {
        target_traces_per_second: Some(100.0),
        keys: vec!["service.name".into()],
        interval: Duration::from_secs(1),
        max_keys: 50,
        ..Default::default()
    };
    cfg.validate().unwrap();
    let policy = AdaptiveRatePolicy::new(&cfg, vec![0]);
    let t0 = Instant::now();
    let long = |i: u64| {
        let mut v = vec![b'x'; 100_000];
        v.extend_from_slice(i.to_string().as_bytes());
        Bytes::from(v)
    };
    let evaluate = |i: u64, now: Instant| {
        let (id, s) = trace_of(long(i), i);
        policy.evaluate(&TraceView {
            trace_id: &id,
            summary: &s,
            spans: crate::buffer::Spans::EMPTY,
            now,
        })
    };
    for i in 0..2_000 {
        evaluate(i, t0 + Duration::from_millis(100));
    }
    {
        let new = policy.new_keys.lock().unwrap();
        assert!(new.len() <= 51, "{} keys noted", new.len());
        assert!(new.contains_key(&other_hash()));
        assert!(
            new.values().all(|(name, _)| name.len() <= MAX_NAME_VALUE_BYTES + 3),
            "a name kept more than a value's first bytes"
        );
        // Alike in their first 128 bytes, told apart by the rest.
        assert!(new.len() > 2);
    }
    // The recompute (due after the first second) keeps at most max_keys.
    evaluate(5_000, t0 + Duration::from_millis(1_500));
    assert!(policy.key_probabilities().len() <= 50);
}
