//! One run of a scenario: membership ([`crate::cluster`]), the load model
//! ([`crate::fluid`]), the followed traces ([`crate::traces`]), and the [`Report`] that
//! sums them up. Deterministic for a seed: one generator, drawn in a fixed order.

use serde::Serialize;

use crate::cluster::Timeline;
use crate::cost::CostModel;
use crate::fluid::{self, FluidInput};
use crate::scenario::{EventKind, Loaded};
use crate::traces::{Ctx, Fates, Tally};

/// p50, p99 and max of a series.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    /// Of `values` (sorted in place).
    pub fn of(values: &mut [f64]) -> Self {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: values[values.len() - 1],
        }
    }
}

/// One point of the time series (across the gateways alive then).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Point {
    /// Seconds from the start.
    pub t: f64,
    /// Spans per second offered.
    pub rate: f64,
    /// Gateways running.
    pub gateways: usize,
    /// CPU utilisation (0–1) across gateways.
    pub cpu: Percentiles,
    /// RSS bytes across gateways.
    pub rss: Percentiles,
    /// Share of offered spans refused.
    pub refused_share: f64,
}

/// Kept share per policy.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyShare {
    /// The policy's name.
    pub name: String,
    /// Share of traces it kept in the run.
    pub kept_share: f64,
    /// Share it keeps of the same traces decided whole, with no event (what the policy
    /// file asks for on this workload).
    pub undisturbed_share: f64,
}

/// Trace-level outcomes (weighted to the whole traffic).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TraceOutcomes {
    /// Traces followed span by span.
    pub followed: u64,
    /// Traces sent.
    pub sent: f64,
    /// Traces kept.
    pub kept: f64,
    /// Kept traces missing spans at the backend.
    pub kept_incomplete: f64,
    /// `kept_incomplete / kept`.
    pub incomplete_share: f64,
    /// Traces decided in more than one part.
    pub split: f64,
}

/// A run's results.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario's name.
    pub scenario: String,
    /// Its seed.
    pub seed: u64,
    /// Simulated seconds (traffic, then until every trace is decided).
    pub simulated_seconds: f64,
    /// Gateways at the start, and the most at once.
    pub gateways: (usize, usize),
    /// Routers.
    pub routers: usize,
    /// Span fates, estimated for the whole traffic.
    pub spans: Fates,
    /// Span fates of the followed traces alone (exact counts).
    pub spans_followed: Fates,
    /// Span-level accounting of the load model: offered, refused, given up by exporters.
    pub flow_offered: f64,
    /// Refused (flows).
    pub flow_refused: f64,
    /// Given up by exporters (flows).
    pub flow_export_failed: f64,
    /// Trace outcomes.
    pub traces: TraceOutcomes,
    /// Kept share per policy.
    pub policies: Vec<PolicyShare>,
    /// Seconds from a trace's first span (on its gateway) to its decision.
    pub decision_delay_s: Percentiles,
    /// Seconds from a kept trace's decision to its export.
    pub export_delay_s: Percentiles,
    /// CPU utilisation over every gateway and step.
    pub gateway_cpu: Percentiles,
    /// RSS over every gateway and step.
    pub gateway_rss_bytes: Percentiles,
    /// RSS each gateway would need to wait the whole `decision_wait` (over every gateway
    /// and step); above `gateway_rss_bytes` when the buffer's limit forced early decisions.
    pub gateway_wanted_rss_bytes: Percentiles,
    /// Share of the spans offered while their gateway decides early (buffer past
    /// `early_decision_bytes`, or more than `num_traces` traces held): their traces get
    /// less than `decision_wait`.
    pub early_decision_share: f64,
    /// Seconds from the start until every router and gateway holds the final member list
    /// (0 without membership changes); traces first seen after it plus `decision_wait` are
    /// decided on a settled ring.
    pub membership_settled_s: f64,
    /// Routers' CPU utilisation, highest step.
    pub router_cpu_max: f64,
    /// Per step (at most 600 points).
    pub series: Vec<Point>,
    /// Per gateway: (name, CPU p99, RSS max) over the run.
    pub per_gateway: Vec<(String, f64, f64)>,
    /// Gateways this traffic needs with headroom (CPU p99 ≤ 70%, RSS max ≤ 80% of the
    /// limit, one gateway lost without overload).
    pub recommended_gateways: usize,
    /// Seconds the run took (wall clock).
    pub wall_seconds: f64,
}

/// Targets the recommendation keeps to.
pub const CPU_TARGET: f64 = 0.7;
/// Share of the memory limit the recommendation allows at peak.
pub const MEMORY_TARGET: f64 = 0.8;

/// Runs a scenario. `progress(done, total)` is called as steps complete.
pub fn run(loaded: &Loaded, cost: &CostModel, mut progress: impl FnMut(usize, usize)) -> Report {
    let s = &loaded.scenario;
    let mut rng = fastrand::Rng::with_seed(s.seed);
    let (samples, big) = draw_traces(loaded, &mut rng);
    let hashes = samples
        .iter()
        .map(|(t, _)| t)
        .chain(&big)
        .map(|t| fluid::hash(&t.id))
        .collect();
    let timeline = Timeline::build(s, s.leave_linger.as_secs_f64(), hashes, &mut rng);
    let keep_share = keep_share(loaded, &samples);
    let mut plans = vec![(0.0, &loaded.plan)];
    let mut reloads = loaded.reloads.iter();
    for e in &s.events {
        if let (EventKind::PolicyReload { .. }, Some(p)) = (&e.kind, reloads.next()) {
            plans.push((e.at.as_secs_f64(), p));
        }
    }
    plans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let decision_wait = plans
        .iter()
        .map(|(_, p)| p.decision_wait.as_secs_f64())
        .fold(0.0, f64::max);
    let dt = s.step.as_secs_f64();
    let tail = decision_wait + s.workload.late_by.as_secs_f64().min(600.0) + 60.0;
    let steps = ((s.duration.as_secs_f64() + tail) / dt).ceil() as usize;
    let flows = fluid::run(&FluidInput {
        scenario: s,
        timeline: &timeline,
        cost,
        keep_share,
        plans: &plans,
        big: &big
            .iter()
            .enumerate()
            .map(|(i, t)| {
                (
                    t.start,
                    t.arrivals.len() as u32,
                    t.duration,
                    samples.len() + i,
                )
            })
            .collect::<Vec<_>>(),
        steps,
    });
    progress(1, 3);
    let ctx = Ctx {
        scenario: s,
        timeline: &timeline,
        flows: &flows,
        plans,
        epoch: tokio::time::Instant::now(),
        router_retry: tailgate_router::config::ForwardConfig::default()
            .retry
            .max_elapsed_time
            .as_secs_f64(),
        reference: &loaded.reference,
        span_bytes: cost.encoded_bytes_per_span as u64,
    };
    let mut tally = Tally::default();
    let total = samples.len() + big.len();
    for (n, (trace, weight)) in samples
        .iter()
        .map(|(t, w)| (t, *w))
        .chain(big.iter().map(|t| (t, 1.0)))
        .enumerate()
    {
        ctx.follow(trace, n, weight, &mut rng, &mut tally);
        if n % 4096 == 0 {
            progress(1 + (n * 2 / total.max(1)).min(1), 3);
        }
    }
    progress(3, 3);
    summarise(loaded, cost, &timeline, &flows, &ctx.plans, tally, steps)
}

/// The followed traces (with their weights) and every large trace, drawn in time order.
fn draw_traces(
    loaded: &Loaded,
    rng: &mut fastrand::Rng,
) -> (
    Vec<(crate::workload::SampledTrace, f64)>,
    Vec<crate::workload::SampledTrace>,
) {
    let s = &loaded.scenario;
    let w = &s.workload;
    let dt = s.step.as_secs_f64();
    let mean = w.mean_spans().max(1e-9);
    let (mut samples, mut big) = (Vec::new(), Vec::new());
    let mut carry = 0.0;
    let mut big_carry = 0.0;
    // Traffic of steps without a followed trace goes to the next one drawn.
    let mut unsampled = 0.0;
    let mut t = 0.0;
    while t < s.duration.as_secs_f64() {
        let traces = w.rate.at(t) / mean * dt;
        carry += s.sample_traces_per_second * dt;
        let n = carry.floor();
        carry -= n;
        if let Some((share, _)) = w.big_traces() {
            big_carry += traces * share;
            while big_carry >= 1.0 {
                big_carry -= 1.0;
                let start = t + dt * rng.f64();
                big.push(w.sample_trace(rng, start, true));
            }
        }
        unsampled += traces * (1.0 - w.big_traces().map_or(0.0, |b| b.0));
        for _ in 0..n as usize {
            let start = t + dt * rng.f64();
            let trace = w.sample_trace(rng, start, false);
            samples.push((trace, unsampled / n));
        }
        if n >= 1.0 {
            unsampled = 0.0;
        }
        t += dt;
    }
    (samples, big)
}

/// Share of spans the plan keeps on the followed traces decided whole (for the load
/// model's export queue).
fn keep_share(loaded: &Loaded, samples: &[(crate::workload::SampledTrace, f64)]) -> f64 {
    use tailgate_gateway::buffer::trace::TraceView;
    let (mut kept, mut all) = (0.0, 0.0);
    for (t, _) in samples.iter().take(5000) {
        let summary = t.summary(0..t.ends.len(), 0);
        let n = t.ends.len() as f64;
        all += n;
        if loaded
            .reference
            .decide(&TraceView::new(&t.id, &summary))
            .sampled
        {
            kept += n;
        }
    }
    if all > 0.0 {
        kept / all
    } else {
        0.0
    }
}

/// Kept share per policy by name: the file's policies in its order, then those a reload
/// adds (their undisturbed share 0: the reference is the file's plan). A policy of the same
/// name in a reloaded plan counts as the same policy, as on the gateway's metrics.
fn policy_shares(
    plans: &[(f64, &tailgate_gateway::PolicyPlan)],
    tally: &Tally,
) -> Vec<PolicyShare> {
    let per = |w: f64| w / tally.traces_sent.max(1e-9);
    let mut out: Vec<PolicyShare> = Vec::new();
    for (index, (_, plan)) in plans.iter().enumerate() {
        let kept = tally.kept_by_policy.get(index);
        for (i, name) in plan.names().iter().enumerate() {
            let k = kept.and_then(|v| v.get(i)).copied().unwrap_or(0.0);
            match out.iter_mut().find(|p| p.name == *name) {
                Some(p) => p.kept_share += per(k),
                None => out.push(PolicyShare {
                    undisturbed_share: if index == 0 {
                        per(tally.undisturbed_by_policy.get(i).copied().unwrap_or(0.0))
                    } else {
                        0.0
                    },
                    kept_share: per(k),
                    name: name.clone(),
                }),
            }
        }
    }
    out
}

fn summarise(
    loaded: &Loaded,
    cost: &CostModel,
    timeline: &Timeline,
    flows: &fluid::Flows,
    plans: &[(f64, &tailgate_gateway::PolicyPlan)],
    tally: Tally,
    steps: usize,
) -> Report {
    let s = &loaded.scenario;
    let dt = s.step.as_secs_f64();
    let (mut all_cpu, mut all_rss, mut all_wanted) = (Vec::new(), Vec::new(), Vec::new());
    let mut all_demand = Vec::new();
    // Spans offered while early decisions were on, and in all (idle steps, as the tail
    // after the traffic stops, weigh nothing).
    let (mut early, mut offered_in_all) = (0.0f64, 0.0f64);
    let mut per_gateway = vec![(Vec::new(), 0.0f64); timeline.members.len()];
    let mut series = Vec::new();
    let stride = steps.div_ceil(600).max(1);
    let mut peak_gateways = 0;
    for (k, row) in flows.steps.iter().enumerate() {
        let t = k as f64 * dt;
        let alive: Vec<usize> = (0..row.len()).filter(|m| timeline.alive(*m, t)).collect();
        peak_gateways = peak_gateways.max(alive.len());
        let mut cpu: Vec<f64> = alive.iter().map(|m| row[*m].utilisation).collect();
        let mut rss: Vec<f64> = alive.iter().map(|m| row[*m].rss).collect();
        for m in &alive {
            all_wanted.push(row[*m].wanted_rss);
            all_demand.push(row[*m].demand);
            // Flows rounding a hair below zero count as none.
            let offered = row[*m].offered.max(0.0);
            offered_in_all += offered;
            let configured = fluid::plan_at(plans, t).decision_wait.as_secs_f64();
            if row[*m].effective_wait < configured * 0.99 {
                early += offered;
            }
            per_gateway[*m].0.push(row[*m].utilisation);
            per_gateway[*m].1 = per_gateway[*m].1.max(row[*m].rss);
        }
        all_cpu.extend_from_slice(&cpu);
        all_rss.extend_from_slice(&rss);
        if k % stride == 0 {
            let offered: f64 = alive.iter().map(|m| row[*m].offered).sum();
            let refused: f64 = alive
                .iter()
                .map(|m| row[*m].offered * row[*m].refused_share)
                .sum();
            series.push(Point {
                t,
                rate: if t < s.duration.as_secs_f64() {
                    s.workload.rate.at(t)
                } else {
                    0.0
                },
                gateways: alive.len(),
                cpu: Percentiles::of(&mut cpu),
                rss: Percentiles::of(&mut rss),
                refused_share: if offered > 0.0 {
                    refused / offered
                } else {
                    0.0
                },
            });
        }
    }
    let per_gateway: Vec<(String, f64, f64)> = per_gateway
        .into_iter()
        .enumerate()
        .filter(|(_, (c, _))| !c.is_empty())
        .map(|(m, (mut c, rss))| {
            (
                timeline.members[m].name.clone(),
                Percentiles::of(&mut c).p99,
                rss,
            )
        })
        .collect();
    let gateway_cpu = Percentiles::of(&mut all_cpu);
    let gateway_rss_bytes = Percentiles::of(&mut all_rss);
    let gateway_wanted_rss_bytes = Percentiles::of(&mut all_wanted);
    let policies = policy_shares(plans, &tally);
    // From what the load asks for, not what capped CPU could give it.
    let demand = Percentiles::of(&mut all_demand);
    let recommended_gateways = recommend(
        s.gateways,
        &demand,
        &gateway_wanted_rss_bytes,
        s.gateway_memory_bytes as f64,
        cost,
    );
    let (mut dd, mut ed) = (tally.decision_delays.clone(), tally.export_delays.clone());
    Report {
        scenario: s.name.clone(),
        seed: s.seed,
        simulated_seconds: steps as f64 * dt,
        gateways: (s.gateways, peak_gateways),
        routers: s.routers,
        spans: tally.estimated,
        spans_followed: tally.sampled,
        flow_offered: flows.offered,
        flow_refused: flows.refused,
        flow_export_failed: flows.export_failed,
        traces: TraceOutcomes {
            followed: tally.traces,
            sent: tally.traces_sent,
            kept: tally.traces_kept,
            kept_incomplete: tally.traces_kept_incomplete,
            incomplete_share: tally.traces_kept_incomplete / tally.traces_kept.max(1e-9),
            split: tally.traces_split,
        },
        policies,
        decision_delay_s: Percentiles::of(&mut dd),
        export_delay_s: Percentiles::of(&mut ed),
        gateway_cpu,
        gateway_rss_bytes,
        gateway_wanted_rss_bytes,
        early_decision_share: if offered_in_all > 0.0 {
            early / offered_in_all
        } else {
            0.0
        },
        membership_settled_s: if timeline.versions.len() > 1 {
            timeline.settled_at()
        } else {
            0.0
        },
        router_cpu_max: flows.router_utilisation.iter().copied().fold(0.0, f64::max),
        series,
        per_gateway,
        recommended_gateways,
        wall_seconds: 0.0,
    }
}

/// Gateways needed so that CPU p99 stays under [`CPU_TARGET`] and the highest RSS a full
/// `decision_wait` needs (no early decisions) under [`MEMORY_TARGET`] of the limit, with
/// one more to lose (scaling from `n` as measured; load and buffered spans both divide by
/// the gateway count).
fn recommend(
    n: usize,
    cpu: &Percentiles,
    rss: &Percentiles,
    limit: f64,
    cost: &CostModel,
) -> usize {
    let by_cpu = n as f64 * cpu.p99 / CPU_TARGET;
    let above_base = (rss.max - cost.gateway_base_rss_bytes).max(0.0);
    let room = (limit * MEMORY_TARGET - cost.gateway_base_rss_bytes).max(1.0);
    let by_memory = n as f64 * above_base / room;
    (by_cpu.max(by_memory).ceil() as usize).max(1) + 1
}
