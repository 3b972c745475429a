//! The verified report: what the driver sent, what the sink received, and what the
//! components counted, joined per trace; then the checks a correct tail-sampling cluster
//! must pass.

use std::collections::HashMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::drive::DriveResult;
use crate::generate::TraceKind;
use crate::sink::Sink;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What is checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The numbers behind it.
    pub detail: String,
}

/// What components counted, summed over the cluster.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ComponentCounts {
    /// Spans the gateways' policies did not keep.
    pub dropped_by_policy: u64,
    /// Spans refused by components (each refusal, including those the sender retried).
    pub refusals: u64,
    /// Spans a component failed to deliver.
    pub failed: u64,
    /// Spans the gateways exported.
    pub exported: u64,
}

/// The demo's report; field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Spans generated and sent.
    pub spans_sent: u64,
    /// Traces generated.
    pub traces_sent: u64,
    /// Traces with spans at the backend.
    pub traces_kept: u64,
    /// Distinct spans of generated traces at the backend.
    pub spans_kept: u64,
    /// Error traces generated.
    pub error_traces_sent: u64,
    /// Error traces at the backend.
    pub error_traces_kept: u64,
    /// Slow traces generated.
    pub slow_traces_sent: u64,
    /// Slow traces at the backend.
    pub slow_traces_kept: u64,
    /// Kept traces missing spans, or whose spans came from more than one gateway.
    pub incomplete_kept_traces: u64,
    /// Spans received more than once.
    pub duplicate_spans: u64,
    /// Sent spans neither at the backend nor counted as dropped by policy or refused to
    /// the sender (negative would mean double counting).
    pub unaccounted_spans: i64,
    /// Kept share of traces that are neither error nor slow.
    pub baseline_keep_share: f64,
    /// The baseline share the policy asks for (0 with the user's own policies, which
    /// the demo does not know the shares of).
    pub expected_baseline_share: f64,
    /// The user's policy file the gateways decided with (`demo --policies`), if not the
    /// demo's own: then only the checks any policy passes are run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<String>,
    /// Offered load.
    pub offered_spans_per_sec: f64,
    /// Spans sent per second of driving (from the first trace to the last answer).
    pub sent_spans_per_sec: f64,
    /// Spans accepted per second over the same time.
    pub achieved_spans_per_sec: f64,
    /// From a trace's last span sent to its last span's arrival at the backend.
    pub decision_latency_ms: Percentiles,
    /// Spans the sender gave up on after refusals.
    pub spans_refused: u64,
    /// Spans rejected as invalid.
    pub spans_rejected: u64,
    /// Sender retries after a refusal.
    pub sender_retries: u64,
    /// What the components counted.
    pub components: ComponentCounts,
    /// Traces at the backend that were never sent.
    pub unexpected_traces: u64,
    /// Seconds spent driving load.
    pub drive_seconds: f64,
    /// The checks.
    pub checks: Vec<Check>,
    /// All checks passed.
    pub passed: bool,
}

impl Report {
    /// Joins the three sources and runs the checks.
    pub fn build(
        drive: &DriveResult,
        sink: &Sink,
        components: ComponentCounts,
        offered: f64,
        expect: Expect,
    ) -> Report {
        let by_kind_sent = count_sent_by_kind(drive);
        let arrivals = Arrivals::tally(drive, sink);
        let decision_latency_ms = arrivals.decision_latency_ms();
        let by_kind_kept = &arrivals.by_kind_kept;
        let get = |m: &HashMap<TraceKind, u64>, k| m.get(&k).copied().unwrap_or(0);
        let normal_sent = get(&by_kind_sent, TraceKind::Normal);
        let baseline = if normal_sent == 0 {
            0.0
        } else {
            get(by_kind_kept, TraceKind::Normal) as f64 / normal_sent as f64
        };
        let unaccounted = drive.spans_sent as i64
            - arrivals.spans_kept as i64
            - components.dropped_by_policy as i64
            - drive.spans_refused as i64
            - drive.spans_rejected as i64;
        let secs = drive.elapsed.as_secs_f64().max(1e-9);
        let mut r = Report {
            spans_sent: drive.spans_sent,
            traces_sent: drive.traces.len() as u64,
            traces_kept: arrivals.traces_kept,
            spans_kept: arrivals.spans_kept,
            error_traces_sent: get(&by_kind_sent, TraceKind::Error),
            error_traces_kept: get(by_kind_kept, TraceKind::Error),
            slow_traces_sent: get(&by_kind_sent, TraceKind::Slow),
            slow_traces_kept: get(by_kind_kept, TraceKind::Slow),
            incomplete_kept_traces: arrivals.incomplete,
            duplicate_spans: arrivals.duplicate_spans,
            unaccounted_spans: unaccounted,
            baseline_keep_share: baseline,
            expected_baseline_share: match &expect {
                Expect::DemoPolicies { baseline_share, .. } => *baseline_share,
                Expect::OwnPolicies(_) => 0.0,
            },
            policies: match &expect {
                Expect::OwnPolicies(name) => Some(name.clone()),
                Expect::DemoPolicies { .. } => None,
            },
            offered_spans_per_sec: offered,
            sent_spans_per_sec: drive.spans_sent as f64 / secs,
            achieved_spans_per_sec: drive.spans_accepted as f64 / secs,
            decision_latency_ms,
            spans_refused: drive.spans_refused,
            spans_rejected: drive.spans_rejected,
            sender_retries: drive.retries,
            components,
            unexpected_traces: arrivals.unexpected,
            drive_seconds: secs,
            checks: Vec::new(),
            passed: false,
        };
        r.checks = r.run_checks(normal_sent, &expect);
        r.passed = r.checks.iter().all(|c| c.ok);
        r
    }

    /// The checks a correct cluster passes, judged on this report's numbers.
    /// The checks of the demo's own policies (errors, slow traces, the baseline share)
    /// run only with [`Expect::DemoPolicies`]; the others hold for any policy.
    fn run_checks(&self, normal_sent: u64, expect: &Expect) -> Vec<Check> {
        let r = self;
        let mut checks = Vec::new();
        if let Expect::DemoPolicies {
            baseline_share,
            tolerance,
        } = *expect
        {
            let baseline = r.baseline_keep_share;
            checks.extend([
                check("every error trace kept", r.error_traces_kept == r.error_traces_sent, format!("{} of {}", r.error_traces_kept, r.error_traces_sent)),
                check("every slow trace kept", r.slow_traces_kept == r.slow_traces_sent, format!("{} of {}", r.slow_traces_kept, r.slow_traces_sent)),
                check(
                    "baseline keep share as configured",
                    normal_sent > 0 && (baseline - baseline_share).abs() <= tolerance,
                    format!("{baseline:.4} (want {baseline_share:.2} ± {tolerance:.2}, {normal_sent} traces)"),
                ),
            ]);
        }
        checks.extend([
            check(
                "no incomplete kept traces",
                r.incomplete_kept_traces == 0,
                format!("{}", r.incomplete_kept_traces),
            ),
            check(
                "no duplicate spans",
                r.duplicate_spans == 0,
                format!("{}", r.duplicate_spans),
            ),
            check(
                "no unaccounted spans",
                r.unaccounted_spans == 0,
                format!("{}", r.unaccounted_spans),
            ),
            check(
                "nothing unexpected at the backend",
                r.unexpected_traces == 0,
                format!("{}", r.unexpected_traces),
            ),
            check(
                "load was sent",
                r.spans_sent > 0 && r.spans_refused < r.spans_sent,
                format!("{} sent, {} refused", r.spans_sent, r.spans_refused),
            ),
        ]);
        checks
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut lines = vec![
            String::new(),
            "Tailgate demo report".to_owned(),
            format!(
                "  load      {:>10} spans in {:>8} traces over {:.1}s ({:.0}/s offered, {:.0}/s sent, {:.0}/s accepted; the last traces' spans trail the start window)",
                self.spans_sent, self.traces_sent, self.drive_seconds, self.offered_spans_per_sec, self.sent_spans_per_sec, self.achieved_spans_per_sec
            ),
            format!("  kept      {:>10} spans in {:>8} traces", self.spans_kept, self.traces_kept),
            format!("  errors    {:>10} of {} traces kept", self.error_traces_kept, self.error_traces_sent),
            format!("  slow      {:>10} of {} traces kept", self.slow_traces_kept, self.slow_traces_sent),
            match &self.policies {
                None => format!(
                    "  baseline  {:>10.4} kept share (policy: {:.2})",
                    self.baseline_keep_share, self.expected_baseline_share
                ),
                Some(file) => format!(
                    "  other     {:>10.4} kept share (of traces neither error nor slow; policies: {file})",
                    self.baseline_keep_share
                ),
            },
            format!(
                "  dropped   {:>10} spans by policy; {} refused, {} rejected, {} failed",
                self.components.dropped_by_policy, self.spans_refused, self.spans_rejected, self.components.failed
            ),
            format!(
                "  latency   p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (last span sent → at backend)",
                self.decision_latency_ms.p50, self.decision_latency_ms.p99, self.decision_latency_ms.max
            ),
            String::new(),
            "Checks".to_owned(),
        ];
        for c in &self.checks {
            let mark = if c.ok { " ok " } else { "FAIL" };
            lines.push(format!("  [{mark}] {:<36} {}", c.name, c.detail));
        }
        lines.push(String::new());
        lines.push(
            if self.passed {
                "All checks passed."
            } else {
                "Some checks FAILED."
            }
            .to_owned(),
        );
        lines.push(String::new());
        lines.join("\n")
    }
}

/// What the checks expect of the policies the gateways decided with.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The demo's own: every error and slow trace kept, other traces at `baseline_share`
    /// (0 to 1) within `tolerance`.
    DemoPolicies {
        /// Share of other traces kept.
        baseline_share: f64,
        /// How far the measured share may be from it.
        tolerance: f64,
    },
    /// The user's policy file (its name): what is kept is theirs to judge; only what
    /// holds for any policy is checked (whole traces, no duplicates, nothing lost).
    OwnPolicies(String),
}

/// Traces sent, per kind.
fn count_sent_by_kind(drive: &DriveResult) -> HashMap<TraceKind, u64> {
    let mut by_kind_sent: HashMap<TraceKind, u64> = HashMap::new();
    for t in &drive.traces {
        *by_kind_sent.entry(t.kind).or_default() += 1;
    }
    by_kind_sent
}

/// What reached the backend, joined with what was sent.
struct Arrivals {
    traces_kept: u64,
    spans_kept: u64,
    incomplete: u64,
    unexpected: u64,
    duplicate_spans: u64,
    by_kind_kept: HashMap<TraceKind, u64>,
    /// Decision latencies in microseconds.
    hist: Option<Histogram<u64>>,
}

impl Arrivals {
    /// Walks the sink's traces: kept, incomplete and unexpected traces, kinds, latencies.
    fn tally(drive: &DriveResult, sink: &Sink) -> Arrivals {
        let sent: HashMap<[u8; 16], usize> = drive
            .traces
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id, i))
            .collect();
        let mut by_kind_kept: HashMap<TraceKind, u64> = HashMap::new();
        // Microseconds, up to an hour; larger values are clamped to it.
        let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let (mut traces_kept, mut spans_kept, mut incomplete, mut unexpected) = (0, 0, 0, 0);
        let duplicate_spans = sink
            .with_state(|s| {
                for (id, t) in &s.traces {
                    let Some(&i) = sent.get(id) else {
                        unexpected += 1;
                        continue;
                    };
                    let rec = &drive.traces[i];
                    traces_kept += 1;
                    spans_kept += t.span_ids.len() as u64;
                    *by_kind_kept.entry(rec.kind).or_default() += 1;
                    if (t.span_ids.len() as u32) < rec.spans || t.senders.len() > 1 {
                        incomplete += 1;
                    }
                    if let (Some(sent_at), Some(h)) = (rec.last_sent, hist.as_mut()) {
                        let us = t
                            .last_arrival
                            .saturating_duration_since(sent_at)
                            .as_micros();
                        h.saturating_record((us as u64).max(1));
                    }
                }
                s.duplicate_spans
            })
            .unwrap_or(0);
        Arrivals {
            traces_kept,
            spans_kept,
            incomplete,
            unexpected,
            duplicate_spans,
            by_kind_kept,
            hist,
        }
    }

    /// Median, 99th percentile and largest decision latency, in milliseconds.
    fn decision_latency_ms(&self) -> Percentiles {
        let hist = &self.hist;
        let ms = |q: f64| {
            hist.as_ref()
                .filter(|h| !h.is_empty())
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        Percentiles {
            p50: ms(0.5),
            p99: ms(0.99),
            max: hist.as_ref().map_or(0.0, |h| h.max() as f64 / 1000.0),
        }
    }
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}
