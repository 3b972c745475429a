//! Traces followed span by span: a sample of the workload's traces (each standing for
//! `weight` real ones) and every large trace of a heavy tail. Each span is routed as a
//! router would (its ring at that moment, retries while its target is dead), refused as
//! the load model says its gateway refuses, forwarded and handed off to the owner as the
//! gateways' ring says (with `redistribute`), buffered in a part on one gateway and decided
//! `decision_wait` after that part's first span by the real policy plan
//! ([`tailgate_gateway::PolicyPlan::decide`]) on the part's summary. Every span ends in one
//! fate: kept, dropped by policy, refused, or lost (with why).

use std::time::Duration;

use tailgate_gateway::buffer::trace::{TraceSummary, TraceView};
use tailgate_gateway::peers::{owner_rule, Owner};
use tailgate_gateway::PolicyPlan;

use crate::cluster::Timeline;
use crate::fluid::{backend_back, Flows};
use crate::scenario::Scenario;
use crate::workload::SampledTrace;

/// Where spans ended, counted in spans (weighted or not).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Fates {
    /// Sent by clients.
    pub sent: f64,
    /// Reached the backend.
    pub kept: f64,
    /// Not sampled by the policies.
    pub dropped: f64,
    /// Refused to the sender (overload, backpressure).
    pub refused: f64,
    /// Lost with a gateway killed while it buffered them.
    pub lost_killed: f64,
    /// Lost by a router that gave up retrying a dead gateway.
    pub lost_router: f64,
    /// Kept, but given up by the exporter (backend out past the retry bound, queue full).
    pub lost_export: f64,
    /// Spans of a kept trace that a part of it decided apart dropped: the trace was split
    /// and the part without what keeps it was not sampled. The load test counts these as
    /// unaccounted (sent, neither at the backend nor dropped by a decision on the whole).
    pub lost_split: f64,
}

impl Fates {
    fn add(&mut self, other: &Fates, weight: f64) {
        self.sent += other.sent * weight;
        self.kept += other.kept * weight;
        self.dropped += other.dropped * weight;
        self.refused += other.refused * weight;
        self.lost_killed += other.lost_killed * weight;
        self.lost_router += other.lost_router * weight;
        self.lost_export += other.lost_export * weight;
        self.lost_split += other.lost_split * weight;
    }

    /// Spans lost, for whatever reason.
    pub fn lost(&self) -> f64 {
        self.lost_killed + self.lost_router + self.lost_export + self.lost_split
    }

    /// Every span accounted for: sent − (kept + dropped + refused + lost).
    pub fn unaccounted(&self) -> f64 {
        self.sent - self.kept - self.dropped - self.refused - self.lost()
    }
}

/// What the followed traces came to.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Span fates of the followed traces, unweighted.
    pub sampled: Fates,
    /// The same, weighted to the whole traffic.
    pub estimated: Fates,
    /// Traces followed (unweighted).
    pub traces: u64,
    /// Traces (weighted), kept ones, kept ones missing spans, ones decided in parts.
    pub traces_sent: f64,
    /// Kept traces (weighted).
    pub traces_kept: f64,
    /// Kept traces some of whose spans did not reach the backend, or decided in more than
    /// one part (weighted).
    pub traces_kept_incomplete: f64,
    /// Traces decided in more than one part (weighted).
    pub traces_split: f64,
    /// Traces kept, by the plan that decided them (the file's, then each reload's, as in
    /// [`Ctx::plans`]) and the policy of it that kept them (weighted).
    pub kept_by_policy: Vec<Vec<f64>>,
    /// Traces the plan keeps when decided whole and undisturbed, by policy (weighted).
    pub undisturbed_by_policy: Vec<f64>,
    /// Seconds from a part's first span to its decision (sampled).
    pub decision_delays: Vec<f64>,
    /// Seconds from a kept part's decision to its export (sampled).
    pub export_delays: Vec<f64>,
}

/// What tracing one trace needs.
pub struct Ctx<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Membership.
    pub timeline: &'a Timeline,
    /// The load model.
    pub flows: &'a Flows,
    /// (from when, plan): the plan at the start, then each reload.
    pub plans: Vec<(f64, &'a PolicyPlan)>,
    /// A fixed origin for the plans' clock (rate limits).
    pub epoch: tokio::time::Instant,
    /// How long a router retries one request.
    pub router_retry: f64,
    /// The plan deciding each followed trace whole and undisturbed (a second instance, so
    /// that its rate limits do not touch the cluster's).
    pub reference: &'a PolicyPlan,
    /// Encoded bytes per span.
    pub span_bytes: u64,
}

/// One part of a trace buffered on one gateway.
#[derive(Debug)]
struct Part {
    gateway: usize,
    first_seen: f64,
    decide_at: f64,
    spans: Vec<usize>,
    /// `Some(kept)` once decided.
    kept: Option<bool>,
    /// The plan that decided it (its index in [`Ctx::plans`]) and its policy that kept it.
    policy: Option<(usize, u16)>,
    /// Lost with its gateway (no decision to remember).
    lost: bool,
    /// Kept, but its exporter gave it up (late spans of it are given up too).
    export_lost: bool,
}

impl Ctx<'_> {
    fn plan_at(&self, t: f64) -> &PolicyPlan {
        crate::fluid::plan_at(&self.plans, t)
    }

    fn step(&self, t: f64) -> usize {
        ((t / self.scenario.step.as_secs_f64()) as usize)
            .min(self.flows.steps.len().saturating_sub(1))
    }

    /// When a part first seen at `t` on gateway `g` is due: `t` plus its wait, and no
    /// earlier than the traces first seen before it under a longer wait (a gateway's
    /// deadlines are in first-seen order, `DeadlineQueue::push`: after a reload shortens
    /// the wait, new traces wait behind those, up to the old wait).
    fn due(&self, g: usize, t: f64) -> f64 {
        let behind = self
            .plans
            .windows(2)
            .filter(|w| w[1].0 <= t)
            .map(|w| w[1].0 + w[0].1.decision_wait.as_secs_f64())
            .fold(f64::NEG_INFINITY, f64::max);
        (t + self.wait(g, t)).max(behind)
    }

    /// The decision wait at gateway `g` for a part first seen at `t`.
    fn wait(&self, g: usize, t: f64) -> f64 {
        let configured = self.plan_at(t).decision_wait.as_secs_f64();
        self.flows
            .steps
            .get(self.step(t))
            .and_then(|row| row.get(g))
            .map_or(configured, |s| {
                if s.effective_wait > 0.0 {
                    s.effective_wait.min(configured)
                } else {
                    configured
                }
            })
    }

    /// Follows one trace; adds what came of it to `tally` with `weight`.
    /// `index` is the trace's index among the followed traces (as the timeline knows it).
    pub fn follow(
        &self,
        trace: &SampledTrace,
        index: usize,
        weight: f64,
        rng: &mut fastrand::Rng,
        tally: &mut Tally,
    ) {
        let hash = index;
        let router = rng.usize(..self.timeline.routers().max(1));
        let mut order: Vec<usize> = (0..trace.arrivals.len()).collect();
        order.sort_by(|a, b| trace.arrivals[*a].total_cmp(&trace.arrivals[*b]));
        let mut fates = Fates {
            sent: trace.arrivals.len() as f64,
            ..Default::default()
        };
        let mut parts: Vec<Part> = Vec::new();
        for i in order {
            let Some((at, dest)) = self.route(trace.arrivals[i], hash, router, rng, &mut fates)
            else {
                continue;
            };
            self.place(trace, i, at, dest, &mut parts, &mut fates);
        }
        self.settle(trace, &mut parts, rng, &mut fates, tally, weight);
        if parts.iter().any(|p| p.kept == Some(true)) {
            // The trace is kept, so the spans a part of it (or a late span following that
            // part's decision) dropped are lost to it.
            fates.lost_split += std::mem::take(&mut fates.dropped);
        }
        let kept_spans = fates.kept;
        tally.sampled.add(&fates, 1.0);
        tally.estimated.add(&fates, weight);
        tally.traces += 1;
        tally.traces_sent += weight;
        if parts.iter().any(|p| p.kept == Some(true)) {
            tally.traces_kept += weight;
            // As the load test's verifier counts them: spans missing at the backend, or
            // the trace decided (and sent) in more than one part.
            let decided = parts.iter().filter(|p| !p.lost).count();
            if kept_spans < fates.sent || decided > 1 {
                tally.traces_kept_incomplete += weight;
            }
        }
        if parts.len() > 1 {
            tally.traces_split += weight;
        }
        let whole: Vec<usize> = (0..trace.arrivals.len()).collect();
        let plan = self.reference;
        let at = trace.start + plan.decision_wait.as_secs_f64();
        let d = plan.decide(&self.view(plan, trace, &whole, at, &mut TraceSummary::default()));
        if let (true, Some(p)) = (d.sampled, d.policy) {
            bump(&mut tally.undisturbed_by_policy, p as usize, weight);
        }
    }

    /// The gateway a span arriving at `at` reaches and when (after router retries), or
    /// `None` when it was refused or lost (counted in `fates`).
    fn route(
        &self,
        mut at: f64,
        hash: usize,
        router: usize,
        rng: &mut fastrand::Rng,
        fates: &mut Fates,
    ) -> Option<(f64, usize)> {
        let tl = self.timeline;
        let mut target = tl.owner(tl.router_version(router, at), hash);
        let mut tries = 0;
        while !tl.alive(target, at) {
            // The router retries while its ring still names a dead gateway.
            match tl.router_change_after(router, at, self.router_retry) {
                Some(next) if tries < 8 => {
                    at = next;
                    target = tl.owner(tl.router_version(router, at), hash);
                    tries += 1;
                }
                _ => {
                    fates.lost_router += 1.0;
                    return None;
                }
            }
        }
        let refused = self.flows.steps[self.step(at)][target].refused_share;
        if refused > 0.0 && rng.f64() < refused {
            fates.refused += 1.0;
            return None;
        }
        // The gateway's own redistribution rule, its ring's indexes being member ids here.
        let dest = if self.scenario.redistribute {
            let owner = tl.owner(tl.gateway_version(at), hash);
            match owner_rule(Some(owner), Some(target), |m| !tl.alive(m, at)) {
                Owner::Peer(m) => m,
                Owner::Local => target,
            }
        } else {
            target
        };
        Some((at, dest))
    }

    /// Buffers span `i` arriving at `at` on `dest`: in the open part there, in the trace's
    /// open part handed to `dest` (with redistribution), as a late span of a decided part
    /// (the decision cache), or in a new part.
    fn place(
        &self,
        trace: &SampledTrace,
        i: usize,
        at: f64,
        dest: usize,
        parts: &mut Vec<Part>,
        fates: &mut Fates,
    ) {
        let redistribute = self.scenario.redistribute;
        self.decide_due(trace, parts, at, fates);
        let open = parts
            .iter()
            .position(|p| p.kept.is_none() && (redistribute || p.gateway == dest));
        if let Some(o) = open {
            let part = &mut parts[o];
            part.gateway = dest;
            part.spans.push(i);
            if part.spans.len() as u32 >= self.scenario.buffer.max_spans_per_trace {
                part.decide_at = at;
            }
            return;
        }
        let cached = parts
            .iter()
            .rev()
            .find(|p| !p.lost && (redistribute || p.gateway == dest))
            .and_then(|p| p.kept.map(|k| (k, p.export_lost)));
        match cached {
            Some((_, true)) => fates.lost_export += 1.0,
            Some((true, false)) => fates.kept += 1.0,
            Some((false, false)) => fates.dropped += 1.0,
            None => parts.push(Part {
                gateway: dest,
                first_seen: at,
                decide_at: self.due(dest, at),
                spans: vec![i],
                kept: None,
                policy: None,
                lost: false,
                export_lost: false,
            }),
        }
    }

    /// Decides the parts whose time has come by `now`.
    fn decide_due(&self, trace: &SampledTrace, parts: &mut [Part], now: f64, fates: &mut Fates) {
        for p in parts.iter_mut().filter(|p| p.kept.is_none()) {
            let life = &self.timeline.members[p.gateway];
            if let Some(gone) = life.gone.filter(|g| *g < p.decide_at) {
                if life.killed && gone >= p.first_seen {
                    if gone <= now {
                        fates.lost_killed += p.spans.len() as f64;
                        p.kept = Some(false);
                        p.lost = true;
                        p.spans.clear();
                    }
                    continue;
                }
                // A leaving gateway decides what it holds when it exits (without
                // redistribution; with it, the trace went to its new owner).
                if !self.scenario.redistribute {
                    p.decide_at = gone.max(p.first_seen);
                }
            }
            if p.decide_at <= now {
                self.decide(trace, p, fates);
            }
        }
    }

    fn decide(&self, trace: &SampledTrace, p: &mut Part, fates: &mut Fates) {
        let index = crate::fluid::plan_index_at(&self.plans, p.decide_at);
        let plan = self.plans[index].1;
        let d = plan.decide(&self.view(
            plan,
            trace,
            &p.spans,
            p.decide_at,
            &mut TraceSummary::default(),
        ));
        p.kept = Some(d.sampled);
        p.policy = d.policy.map(|policy| (index, policy));
        let n = p.spans.len() as f64;
        if !d.sampled {
            fates.dropped += n;
            return;
        }
        let step = &self.flows.steps[self.step(p.decide_at)][p.gateway];
        if step.export_failing {
            fates.lost_export += n;
            p.kept = Some(false);
            p.export_lost = true;
        } else {
            fates.kept += n;
        }
    }

    /// Decides every remaining part; records delays and the policy that kept each.
    fn settle(
        &self,
        trace: &SampledTrace,
        parts: &mut [Part],
        rng: &mut fastrand::Rng,
        fates: &mut Fates,
        tally: &mut Tally,
        weight: f64,
    ) {
        self.decide_due(trace, parts, f64::INFINITY, fates);
        for p in parts.iter() {
            if tally.decision_delays.len() < 200_000 {
                tally.decision_delays.push(p.decide_at - p.first_seen);
            }
            if p.kept == Some(true) {
                // A kept trace joins a batch opened at a uniformly random earlier moment and
                // is sent when it closes, or once the backend is back.
                let batch = self.flows.steps[self.step(p.decide_at)]
                    .get(p.gateway)
                    .map_or(0.0, |s| s.batch_open);
                let sent = p.decide_at + batch * rng.f64();
                let back = backend_back(self.scenario, sent).unwrap_or(sent);
                if tally.export_delays.len() < 200_000 {
                    tally.export_delays.push(back - p.decide_at);
                }
                if let Some((plan, policy)) = p.policy {
                    if tally.kept_by_policy.len() <= plan {
                        tally.kept_by_policy.resize(plan + 1, Vec::new());
                    }
                    bump(&mut tally.kept_by_policy[plan], policy as usize, weight);
                }
            }
        }
    }

    /// A view of spans `idx` of `trace` (summarised into `summary`), decided at `at`.
    fn view<'s>(
        &self,
        plan: &PolicyPlan,
        trace: &'s SampledTrace,
        idx: &[usize],
        at: f64,
        summary: &'s mut TraceSummary,
    ) -> TraceView<'s> {
        *summary = trace.summary(idx.iter().copied(), self.span_bytes);
        trace.add_attributes(
            idx,
            &self.scenario.workload.attributes,
            plan.attribute_keys(),
            summary,
        );
        let summary: &'s TraceSummary = summary;
        TraceView {
            trace_id: &trace.id,
            summary,
            spans: tailgate_gateway::buffer::Spans::EMPTY,
            now: self.epoch + Duration::from_secs_f64(at.max(0.0)),
        }
    }
}

fn bump(v: &mut Vec<f64>, i: usize, w: f64) {
    if v.len() <= i {
        v.resize(i + 1, 0.0);
    }
    v[i] += w;
}
