#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Properties the simulation must keep whatever the scenario: every span accounted for,
//! the same report for the same seed, whole traces when nothing happens, and the
//! difference redistribution makes.

use tailgate_sim::cost::CostModel;
use tailgate_sim::engine::{run, Report};
use tailgate_sim::scenario::{Loaded, Scenario};

const KEEP_ALL: &str = "decision_wait: 5s\npolicies:\n  - {name: all, type: always_sample}\n";
const MIXED: &str = "decision_wait: 5s\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: slow, type: latency, latency: {threshold_ms: 500}}\n  - {name: some, type: probabilistic, probabilistic: {sampling_percentage: 10}}\n";

/// A scenario of `gateways` gateways at `rate` spans/s for `seconds`, with `events` (YAML
/// list) and `policies`, written next to its policy file in a directory of its own.
fn scenario(
    label: &str,
    policies: &str,
    gateways: usize,
    rate: f64,
    seconds: u64,
    extra: &str,
) -> Loaded {
    scenario_with(label, policies, gateways, rate, seconds, extra, "")
}

/// [`scenario`] with `workload_extra` (YAML lines indented under `workload:`).
fn scenario_with(
    label: &str,
    policies: &str,
    gateways: usize,
    rate: f64,
    seconds: u64,
    extra: &str,
    workload_extra: &str,
) -> Loaded {
    scenario_files(
        label,
        &[("p.yaml", policies)],
        gateways,
        rate,
        seconds,
        extra,
        workload_extra,
    )
}

/// [`scenario_with`] with `files` beside the scenario (`p.yaml` its policy file).
fn scenario_files(
    label: &str,
    files: &[(&str, &str)],
    gateways: usize,
    rate: f64,
    seconds: u64,
    extra: &str,
    workload_extra: &str,
) -> Loaded {
    let dir = std::env::temp_dir().join(format!("tailgate-sim-{label}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    // A `trace_size` of the caller's replaces the default one.
    let size = if workload_extra.contains("trace_size:") {
        ""
    } else {
        "  trace_size: {kind: lognormal, median: 8, sigma: 0.8}\n"
    };
    let text = format!(
        "name: {label}\nseed: 7\nduration: {seconds}s\ngateways: {gateways}\nrouters: 3\npolicies: p.yaml\nsample_traces_per_second: 300\n{extra}\nworkload:\n  rate: {{kind: steady, spans_per_second: {rate}}}\n{size}  duration: {{kind: lognormal, median: 300ms, sigma: 1.0}}\n{workload_extra}"
    );
    let path = dir.join("s.yaml");
    std::fs::write(&path, text).unwrap();
    let loaded = Scenario::load(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    loaded
}

fn go(loaded: &Loaded) -> Report {
    run(loaded, &CostModel::default(), |_, _| {})
}

/// Scenario: kills, a scale-down, a backend outage past the retry bound, a DNS outage and
/// a slow gateway, on a mixed plan. Guarantees: every followed span has exactly one fate
/// (sent = kept + dropped + refused + lost), the estimate for all traffic too, and the
/// failures show up where they should (spans lost to the kill and to the exporter).
#[test]
fn every_span_is_accounted_for() {
    let events = "events:\n  - {at: 20s, kind: kill, gateway: 2}\n  - {at: 40s, kind: scale_down, to: 4}\n  - {at: 50s, kind: backend_outage, for: 60s}\n  - {at: 60s, kind: dns_outage, for: 20s}\n  - {at: 30s, kind: slow, gateway: 1, factor: 3, for: 30s}\nexport_queue_bytes: 1000000\nbuffer: {max_buffered_bytes: 67108864}\nexport_retry: {initial_interval: 1s, max_interval: 5s, max_elapsed_time: 20s}\n";
    let r = go(&scenario("conserve", MIXED, 6, 200_000.0, 120, events));
    assert!(r.spans_followed.sent > 10_000.0);
    assert_eq!(
        r.spans_followed.unaccounted(),
        0.0,
        "{:?}",
        r.spans_followed
    );
    assert!(
        r.spans.unaccounted().abs() <= 1e-6 * r.spans.sent,
        "{:?}",
        r.spans
    );
    assert!(
        r.spans_followed.lost_killed > 0.0,
        "the kill loses what it buffered"
    );
    assert!(
        r.spans_followed.lost_export > 0.0,
        "the outage outlasts the retry bound"
    );
    assert!(r.spans_followed.kept > 0.0 && r.spans_followed.dropped > 0.0);
}

/// Scenario: the same scenario twice with one seed, and once with another.
/// Guarantees: the same seed gives the same report; another seed another one.
#[test]
fn a_seed_gives_one_report() {
    let events =
        "events:\n  - {at: 10s, kind: scale_up, to: 5}\n  - {at: 20s, kind: kill, gateway: 0}\n";
    let a = scenario("seed", MIXED, 4, 100_000.0, 40, events);
    let json = |r: &Report| {
        let mut r = r.clone();
        r.wall_seconds = 0.0;
        serde_json::to_string(&r).unwrap()
    };
    assert_eq!(json(&go(&a)), json(&go(&a)));
    let mut b = scenario("seed", MIXED, 4, 100_000.0, 40, events);
    b.scenario.seed = 8;
    assert_ne!(json(&go(&a)), json(&go(&b)));
}

/// Scenario: a keep-all plan and no event.
/// Guarantees: every trace is kept, whole, and every span reaches the backend.
#[test]
fn without_events_keep_all_keeps_every_trace_whole() {
    let r = go(&scenario("whole", KEEP_ALL, 5, 300_000.0, 30, ""));
    let f = &r.spans_followed;
    assert_eq!(f.kept, f.sent, "{f:?}");
    assert_eq!(r.traces.kept_incomplete, 0.0);
    assert_eq!(r.traces.split, 0.0);
    assert!((r.traces.kept - r.traces.sent).abs() <= 1e-6 * r.traces.sent);
    assert_eq!(r.policies[0].kept_share, r.policies[0].undisturbed_share);
}

/// Scenario: a scale-down from 8 to 5 gateways under load, with and without
/// `redistribute`. Guarantees: with it no kept trace is incomplete and nothing is lost;
/// without it traces are split and some kept ones are incomplete, as the real cluster
/// behaves (loadtest's chaos runs show the same).
#[test]
fn redistribution_keeps_traces_whole_through_a_scale_down() {
    let events = "events:\n  - {at: 20s, kind: scale_down, to: 5}\n";
    let with = go(&scenario("redistribute", MIXED, 8, 400_000.0, 60, events));
    assert_eq!(with.traces.kept_incomplete, 0.0, "{:?}", with.traces);
    assert_eq!(with.spans_followed.lost(), 0.0, "{:?}", with.spans_followed);
    let without = go(&scenario(
        "no-redistribute",
        MIXED,
        8,
        400_000.0,
        60,
        &format!("redistribute: false\n{events}"),
    ));
    assert!(without.traces.split > 0.0, "{:?}", without.traces);
    assert!(without.traces.kept_incomplete > 0.0, "{:?}", without.traces);
    // The parts of kept traces that their own decision dropped are spans lost, not
    // spans a policy dropped.
    assert!(
        without.spans_followed.lost_split > 0.0,
        "{:?}",
        without.spans_followed
    );
}

/// Scenario: 20 gateways, one of them 5× slower than it can bear, at a rate that keeps
/// the others under half their cores. Guarantees: only the slow gateway refuses, and the
/// recommendation grows with the load.
#[test]
fn an_overloaded_gateway_refuses_and_the_others_do_not() {
    let mut cost = CostModel::default();
    cost.gateway_cpu_per_span_s *= 100.0;
    let events = "events:\n  - {at: 5s, kind: slow, gateway: 3, factor: 5, for: 20s}\n";
    let loaded = scenario("slow", MIXED, 20, 200_000.0, 30, events);
    let r = run(&loaded, &cost, |_, _| {});
    assert!(r.spans_followed.refused > 0.0);
    let hot: Vec<_> = r
        .per_gateway
        .iter()
        .filter(|(_, cpu, _)| *cpu >= 0.99)
        .collect();
    assert_eq!(hot.len(), 1, "{:?}", r.per_gateway);
    let light = go(&loaded);
    assert!(r.recommended_gateways > light.recommended_gateways);
}

/// Scenario: the load test's chaos scenarios (scale-up, scale-down, rolling restart) as
/// `validate` runs them in the sim. Guarantees: they load; with redistribution no kept trace
/// is incomplete; without it some are, more for a rolling restart (three changes) than for
/// a scale-up (one), as the real runs measure (docs/sizing.md, "Is the sim right?").
#[test]
fn validate_builds_the_chaos_scenarios_in_the_sim() {
    use tailgate_loadtest::chaos::Scenario as Chaos;
    let share = |s: Chaos, redistribute: bool| {
        let loaded = tailgate_sim::validate::chaos_in_sim(s, redistribute).unwrap();
        go(&loaded).traces.incomplete_share
    };
    for s in [Chaos::ScaleUp, Chaos::ScaleDown, Chaos::RollingRestart] {
        assert_eq!(share(s, true), 0.0, "{s:?}");
    }
    let (up, rolling) = (
        share(Chaos::ScaleUp, false),
        share(Chaos::RollingRestart, false),
    );
    assert!(up > 0.0 && rolling > up, "{up} {rolling}");
    assert!(tailgate_sim::validate::chaos_in_sim(Chaos::Outage, false).is_err());
}

/// Scenario: a kill at 10 s then a scale-up from 4 to 6 at 12 s; and a kill naming a
/// position past the cluster. Guarantees: the killed pod leaves the list 10 s after the
/// kill without undoing the scale-up, its replacement joins 30 s after it, and a kill of
/// nobody changes nothing (no replacement either).
#[test]
fn kills_leave_and_are_replaced_without_undoing_other_changes() {
    use tailgate_sim::cluster::Timeline;
    let events = "events:\n  - {at: 10s, kind: kill, gateway: 0}\n  - {at: 12s, kind: scale_up, to: 6}\n  - {at: 15s, kind: kill, gateway: 99}\n";
    let loaded = scenario("kill-order", MIXED, 4, 1000.0, 60, events);
    let mut rng = fastrand::Rng::with_seed(1);
    let tl = Timeline::build(&loaded.scenario, 5.0, Vec::new(), &mut rng);
    let listed = |t: f64| tl.versions[tl.dns_version(t)].shares.len();
    assert_eq!(listed(5.0), 4);
    assert_eq!(listed(15.0), 6, "the scale-up, the killed pod still listed");
    assert_eq!(listed(25.0), 5, "the killed pod left, the scale-up stayed");
    assert_eq!(listed(45.0), 6, "its replacement joined");
    assert_eq!(
        tl.members.len(),
        7,
        "4 + 2 + one replacement; the kill of nobody adds none"
    );
    assert!(!tl.alive(0, 11.0) && tl.members[0].killed);
    // ... and is named, so that the loader refuses it.
    assert_eq!(tl.ignored.len(), 1, "{:?}", tl.ignored);
    assert_eq!(tl.ignored[0].0, 2);
    assert!(
        tl.ignored[0].1.contains("position 99, but 6"),
        "{:?}",
        tl.ignored
    );
    // A gateway killed and replaced leaves room for a later kill of the last position.
    let events =
        "events:\n  - {at: 10s, kind: kill, gateway: 1}\n  - {at: 50s, kind: kill, gateway: 1}\n";
    let loaded = scenario("kill-twice", MIXED, 2, 1000.0, 60, events);
    let ignored = tailgate_sim::cluster::ignored_events(&loaded.scenario);
    assert!(ignored.is_empty(), "{ignored:?}");
}

/// Scenario: a workload whose traces carry `tier` (gold on 20% of traces, on the root span;
/// silver on 50%; none on the rest) and `http.status` (500 on 10%, on every span), under a
/// plan keeping gold traces and 5xx traces and nothing else.
/// Guarantees: the attribute policies read the workload's attributes as a gateway's scan
/// would: each keeps its traces' share, the run keeps what the whole traces would, and a
/// root-only attribute is not seen by a part without the root.
#[test]
fn attribute_policies_read_the_workloads_attributes() {
    let plan = "decision_wait: 5s\npolicies:\n  - {name: gold, type: string_attribute, string_attribute: {key: tier, values: [gold]}}\n  - {name: errors5xx, type: numeric_attribute, numeric_attribute: {key: http.status, min_value: 500, max_value: 599}}\n";
    let attrs = "  attributes:\n    - {key: tier, values: [gold, silver], shares: [0.2, 0.5], on: root}\n    - {key: http.status, values: [500, 200], shares: [0.1, 0.9]}\n";
    let r = go(&scenario_with("attrs", plan, 4, 50_000.0, 60, "", attrs));
    let share = |name: &str| {
        let p = r.policies.iter().find(|p| p.name == name).unwrap();
        (p.kept_share, p.undisturbed_share)
    };
    let (gold, gold_whole) = share("gold");
    let (errors, errors_whole) = share("errors5xx");
    // gold is evaluated first: it keeps 20%; errors keeps the 10% of the other 80%.
    assert!((gold_whole - 0.2).abs() < 0.03, "gold {gold_whole}");
    assert!((errors_whole - 0.08).abs() < 0.02, "5xx {errors_whole}");
    assert!((gold - gold_whole).abs() < 0.02 && (errors - errors_whole).abs() < 0.02);
    let kept = r.traces.kept / r.traces.sent;
    assert!((0.2..0.35).contains(&kept), "kept {kept}");
}

/// Scenario: a light load (a few kept spans per second per gateway) with the exporters'
/// `export_batch.timeout` at 2 s, then at 10 ms.
/// Guarantees: a kept trace waits for its batch as the exporter's rule says: batches that
/// never fill close at their timeout, so the median export delay is about half of it.
#[test]
fn kept_traces_wait_for_their_batch_as_the_exporter_rule_says() {
    let delay = |timeout: &str| {
        let extra = format!("export_batch: {{timeout: {timeout}}}\n");
        go(&scenario("batch", KEEP_ALL, 2, 200.0, 30, &extra)).export_delay_s
    };
    let (slow, fast) = (delay("2s"), delay("10ms"));
    assert!((0.7..1.3).contains(&slow.p50), "{slow:?}");
    assert!(slow.max <= 2.0 + 1e-9, "{slow:?}");
    assert!(fast.p50 <= 0.01 && fast.max <= 0.01 + 1e-9, "{fast:?}");
}

/// Scenario: the same steady load with the policy file's `num_traces` far below the traces
/// a gateway holds over `decision_wait` (4 gateways, 200k spans/s of ~10-span traces,
/// 5 s: about 25,000 each), then with the default.
/// Guarantees: as a real gateway does, one holding `num_traces` decides traces early:
/// most traffic is decided early and decisions come well before the wait; with room, none
/// is. The early share weighs traffic, so the idle minute after the load does not dilute it.
#[test]
fn num_traces_decides_early_as_the_gateway_does() {
    let tight = MIXED.replace(
        "decision_wait: 5s\n",
        "decision_wait: 5s\nnum_traces: 2000\n",
    );
    let r = go(&scenario("numtraces", &tight, 4, 200_000.0, 60, ""));
    assert!(r.early_decision_share > 0.8, "{}", r.early_decision_share);
    assert!(r.decision_delay_s.p50 < 2.5, "{:?}", r.decision_delay_s);
    let r = go(&scenario("numtraces-room", MIXED, 4, 200_000.0, 60, ""));
    assert!(r.early_decision_share < 0.001, "{}", r.early_decision_share);
    assert!(r.decision_delay_s.p50 >= 4.9, "{:?}", r.decision_delay_s);
}

/// Scenario: as above, `num_traces: 2000` at the start and a `policy_reload` at 30 s of
/// 60 to the same policies without it (the default 50,000, room for the wait).
/// Guarantees: the gateways decide early until the reload and not after, as a gateway
/// applies a new `num_traces` from its next request: about half the traffic is decided
/// early (the sim once kept the first file's `num_traces` through a reload).
#[test]
fn a_reloaded_num_traces_holds_from_the_reload() {
    let tight = MIXED.replace(
        "decision_wait: 5s\n",
        "decision_wait: 5s\nnum_traces: 2000\n",
    );
    let events = "events:\n  - {at: 30s, kind: policy_reload, policies: q.yaml}\n";
    let r = go(&scenario_files(
        "numtraces-reload",
        &[("p.yaml", &tight), ("q.yaml", MIXED)],
        4,
        200_000.0,
        60,
        events,
        "",
    ));
    assert!(
        (0.3..0.7).contains(&r.early_decision_share),
        "{}",
        r.early_decision_share
    );
}

/// Scenario: 4 gateways at 20k spans/s for 60 s (room for 30 s), `decision_wait: 30s` and a
/// `policy_reload` at 30 s to the same policies with `decision_wait: 5s`; then 5 s with a
/// reload at 20 s to 20 s, beside the same run without it.
/// Guarantees: a reloaded `decision_wait` holds for traces first seen after the reload, as
/// on a gateway: the shorter wait is not counted as decisions made early, and its traces
/// wait behind those of the longer one (the buffer holds 30 s of traffic until then); the
/// longer one buffers about four times the spans (the sim once kept the first file's wait
/// through a reload in its load model).
#[test]
fn a_reloaded_decision_wait_holds_from_the_reload() {
    let long = MIXED.replace("decision_wait: 5s\n", "decision_wait: 30s\n");
    let reload =
        |at: u64| format!("events:\n  - {{at: {at}s, kind: policy_reload, policies: q.yaml}}\n");
    let r = go(&scenario_files(
        "wait-reload-short",
        &[("p.yaml", &long), ("q.yaml", MIXED)],
        4,
        20_000.0,
        60,
        &reload(30),
        "",
    ));
    assert!(r.early_decision_share < 0.01, "{}", r.early_decision_share);
    // Traces first seen after the shorter wait wait behind those of the longer one (the
    // gateway's deadlines are in first-seen order): at 50 s the buffer still holds about
    // 30 s of traffic, as at 25 s, not 5 s of it and the old wait's last 10 s.
    let base = CostModel::default().gateway_base_rss_bytes;
    let held_at = |t: f64| {
        let p = r
            .series
            .iter()
            .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
            .unwrap();
        p.rss.p50 - base
    };
    let (before, after) = (held_at(25.0), held_at(50.0));
    assert!(
        after > 0.85 * before,
        "{after} above base at 50 s, {before} at 25 s"
    );
    // Followed traces too: with the reload at 20 s, those first seen from 20 to 45 s are
    // decided at 50 s, so the median delay is well over 5 s (it is 5 s when each waits
    // its own wait, two thirds of the traffic coming after the reload).
    let early = go(&scenario_files(
        "wait-reload-early",
        &[("p.yaml", &long), ("q.yaml", MIXED)],
        4,
        20_000.0,
        60,
        &reload(20),
        "",
    ));
    assert!(
        early.decision_delay_s.p50 > 10.0,
        "{:?}",
        early.decision_delay_s
    );
    let longer = MIXED.replace("decision_wait: 5s\n", "decision_wait: 20s\n");
    let peak = |files: &[(&str, &str)], events: &str| {
        let r = go(&scenario_files(
            "wait-reload-long",
            files,
            4,
            20_000.0,
            60,
            events,
            "",
        ));
        assert!(r.early_decision_share < 0.01, "{}", r.early_decision_share);
        r.gateway_rss_bytes.max - base
    };
    let reloaded = peak(&[("p.yaml", MIXED), ("q.yaml", &longer)], &reload(20));
    let kept = peak(&[("p.yaml", MIXED)], "");
    assert!(
        (3.5..4.5).contains(&(reloaded / kept)),
        "{reloaded} above base with the reload, {kept} without"
    );
}

/// Scenario: the mixed policies for 60 s on 4 gateways, and the same with a
/// `policy_reload` at 30 s to a file with one more policy first (matching nothing).
/// Guarantees: each policy's kept share is reported by name across the reload: `errors`
/// keeps about the same share either way and the new policy none (the sim once read a
/// reloaded plan's policy indexes as the first file's, so `errors`' traces counted as
/// `slow`'s).
#[test]
fn kept_shares_follow_policy_names_across_a_reload() {
    let more = MIXED.replace(
        "policies:\n",
        "policies:\n  - {name: gold, type: string_attribute, string_attribute: {key: tier, values: [gold]}}\n",
    );
    let events = "events:\n  - {at: 30s, kind: policy_reload, policies: q.yaml}\n";
    let share = |r: &Report, name: &str| {
        r.policies
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.kept_share)
            .unwrap()
    };
    let plain = go(&scenario("shares", MIXED, 4, 50_000.0, 60, ""));
    let reloaded = go(&scenario_files(
        "shares-reload",
        &[("p.yaml", MIXED), ("q.yaml", &more)],
        4,
        50_000.0,
        60,
        events,
        "",
    ));
    for name in ["errors", "slow", "some"] {
        let (a, b) = (share(&plain, name), share(&reloaded, name));
        assert!(
            a > 0.0 && (b / a - 1.0).abs() < 0.1,
            "{name}: {a} without, {b} with"
        );
    }
    assert_eq!(share(&reloaded, "gold"), 0.0);
    assert_eq!(reloaded.policies.len(), 4);
}

/// Scenario: a heavy tail whose large traces (2,000 spans, 1% of traces) carry about two
/// thirds of the spans, `num_traces: 4000` on 4 gateways: about 2,000 ordinary traces
/// and 20 large ones per gateway over the 5 s wait, but over 5,000 traces' worth of
/// ordinary-sized spans.
/// Guarantees: nothing is decided early: a large trace counts as one trace against
/// `num_traces`, as in the gateway's table (the sim once counted its spans, in traces of
/// the ordinary size, and decided 89% early).
#[test]
fn a_large_trace_counts_once_against_num_traces() {
    let policies = MIXED.replace(
        "decision_wait: 5s\n",
        "decision_wait: 5s\nnum_traces: 4000\n",
    );
    let workload = "  trace_size: {kind: heavy_tail, median: 8, sigma: 0.8, big_share: 0.01, big_spans: 2000}\n";
    let r = go(&scenario_files(
        "numtraces-heavy",
        &[("p.yaml", &policies)],
        4,
        50_000.0,
        30,
        "",
        workload,
    ));
    assert!(r.early_decision_share < 0.01, "{}", r.early_decision_share);
}

/// Scenario: `plan` for a rate whose gateways' memory, not CPU, sets the count (300k
/// spans/s, 10 s, 0.5 GiB pods), the default workload and examples/policies.yaml.
/// Guarantees: the answer decides nothing early, and is the least such size the search
/// can tell: either one gateway fewer was run and decided early, or the answer's own run
/// recommends no fewer (the search used to stop after six runs with a wide gap still
/// open: 26 gateways answered where 19 sufficed).
#[test]
fn plan_settles_on_the_least_size_that_holds_the_wait() {
    use tailgate_sim::plan::{plan, PlanQuestion};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let q = PlanQuestion {
        rate: 300_000.0,
        decision_wait: Some(std::time::Duration::from_secs(10)),
        policies: root.join("examples/policies.yaml"),
        gateway_cores: 2.0,
        gateway_memory_bytes: 512 << 20,
        workload: None,
        gateway_config: None,
        seed: 1,
    };
    let answer = plan(&q, &CostModel::default(), |_| {}).unwrap();
    let g = answer.gateways;
    assert!(answer.report.early_decision_share <= 0.001, "{answer:?}");
    assert!(
        g > 2,
        "memory should need more than the minimum: {:?}",
        answer.tried
    );
    let fewer_too_few = answer.tried.contains(&(g - 1, true));
    assert!(
        fewer_too_few || answer.report.recommended_gateways >= g,
        "{g} answered; tried {:?}, the run recommends {}",
        answer.tried,
        answer.report.recommended_gateways
    );
    // Routers: what the load needs at 70% of two cores each, and one to spare (sizing.md).
    let cost = CostModel::default();
    let needed = (q.rate * cost.router_cpu_per_span_s / 1.4).ceil().max(1.0) as usize;
    assert_eq!(answer.routers, needed + 1);
    // Every size at or above the answer that was run held the wait.
    assert!(
        answer.tried.iter().all(|&(n, early)| n < g || !early),
        "{:?}",
        answer.tried
    );
}
