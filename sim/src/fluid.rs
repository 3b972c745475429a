//! The load model: spans per second per gateway, step by step, as flows. From the rate and
//! each gateway's share of the ring (as routers and gateways hold it), it computes each
//! gateway's CPU (from the cost model), what it buffers (a `decision_wait` window of its
//! arrivals, shortened by early decisions past `early_decision_bytes` or the policy file's
//! `num_traces`), its export queue
//! (filling while the backend is out), its RSS, and what it refuses (CPU past its cores,
//! or an exporter queue full within the retry bound). Large traces of a heavy tail are
//! placed one by one on their owner, since a few of them make hot spots.

use tailgate_core::ring::Ring;
use tailgate_gateway::PolicyPlan;

use crate::cluster::Timeline;
use crate::cost::CostModel;
use crate::scenario::{EventKind, Scenario};

/// What the gateway charges a buffered span of `encoded` bytes against its byte limits, in
/// traces of `spans_per_trace` spans (its share of its trace's charge included).
fn charge_per_span(encoded: f64, spans_per_trace: f64) -> f64 {
    // The gateway's own formula, for a million traces, per span.
    let traces = 1_000_000u64;
    let spans = (spans_per_trace * traces as f64) as u64;
    let bytes = (encoded * spans as f64) as u64;
    tailgate_gateway::metrics::charge(bytes, spans, traces) as f64 / spans.max(1) as f64
}

/// One gateway in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GatewayStep {
    /// Spans offered per second.
    pub offered: f64,
    /// Share of offered spans refused.
    pub refused_share: f64,
    /// CPU used over cores available (at most 1).
    pub utilisation: f64,
    /// CPU the offered load asks for over cores available (above 1 when overloaded).
    pub demand: f64,
    /// Spans buffered.
    pub buffered_spans: f64,
    /// RSS, bytes.
    pub rss: f64,
    /// RSS it would take to hold every span for the whole decision wait (no early
    /// decisions), bytes.
    pub wanted_rss: f64,
    /// The decision wait in force (shorter than configured under early decisions).
    pub effective_wait: f64,
    /// Export queue, bytes.
    pub export_queue: f64,
    /// Whether kept spans are given up (queue full past the retry bound).
    pub export_failing: bool,
    /// How long the exporter's batches stay open at this step's kept rate, seconds
    /// ([`tailgate_gateway::export::BatchConfig::open_for`]).
    pub batch_open: f64,
}

/// The load model's output: per step, per member id.
#[derive(Debug, Default)]
pub struct Flows {
    /// `steps[k][member]`; members not alive are zero.
    pub steps: Vec<Vec<GatewayStep>>,
    /// Router CPU per router per step (utilisation).
    pub router_utilisation: Vec<f64>,
    /// Spans offered in all (flows).
    pub offered: f64,
    /// Spans refused (flows).
    pub refused: f64,
    /// Kept spans given up by exporters (flows).
    pub export_failed: f64,
}

/// Fixed inputs of the load model.
pub struct FluidInput<'a> {
    /// The scenario.
    pub scenario: &'a Scenario,
    /// Membership.
    pub timeline: &'a Timeline,
    /// Costs.
    pub cost: &'a CostModel,
    /// Share of spans kept (measured on sampled traces with the plan).
    pub keep_share: f64,
    /// The policy plans in force from each time on (seconds, ascending, the first at 0):
    /// the file at the start, then each `policy_reload`'s. As a gateway does, a plan's
    /// `num_traces` and policies apply from its next request, and its `decision_wait` to
    /// the traces first seen after it (those buffered keep the wait they came in with).
    pub plans: &'a [(f64, &'a PolicyPlan)],
    /// Large traces: (start, spans, duration, followed trace index).
    pub big: &'a [(f64, u32, f64, usize)],
    /// Steps to simulate (traffic stops at the scenario's duration).
    pub steps: usize,
}

/// Runs the load model.
pub fn run(input: &FluidInput<'_>) -> Flows {
    let s = input.scenario;
    let dt = s.step.as_secs_f64();
    let members = input.timeline.members.len();
    let window_of = |p: &PolicyPlan| ((p.decision_wait.as_secs_f64() / dt).ceil() as usize).max(1);
    let longest = input
        .plans
        .iter()
        .map(|(_, p)| window_of(p))
        .max()
        .unwrap_or(1);
    // Spans and traces accepted per step, per gateway, each with the step it is decided
    // at (its `decision_wait` on): a ring over the longest wait of any plan.
    let mut history: Vec<Vec<Accepted>> = vec![vec![Accepted::default(); longest]; members];
    let mut queue = vec![0.0f64; members];
    let (big_load, big_starts) = place_big(input, dt);
    let ordinary_spans = s.workload.mean_ordinary_spans().max(1.0);
    // The rate includes the large traces' spans; they are placed one by one instead.
    let big_span_share = s.workload.big_traces().map_or(0.0, |(share, spans)| {
        share * f64::from(spans) / s.workload.mean_spans().max(1e-9)
    });
    let charge = charge_per_span(input.cost.encoded_bytes_per_span, ordinary_spans);
    // Spans a gateway holds before it decides early for its bytes; it also does past
    // `num_traces` traces (a large trace of a heavy tail counts as one).
    let bytes_early = s.buffer.early_decision_bytes() as f64 / charge;
    // RSS per buffered span follows the charge (which matches RSS for traces of 1 to 1,000
    // spans), scaled by what the cost model measured at the bench's shape (8 spans).
    let rss_per_span = input.cost.rss_bytes_per_buffered_span * charge
        / charge_per_span(input.cost.encoded_bytes_per_span, 8.0);
    let mut flows = Flows::default();
    let mut moves = Moves::new();
    // The step the latest traces are due at: a gateway's deadlines are a FIFO queue, so
    // after a reload shortens the wait, new traces wait behind those due later
    // (`DeadlineQueue::push`), up to the old wait.
    let mut due = 0usize;
    for k in 0..input.steps {
        let t = k as f64 * dt;
        let rate = if t < s.duration.as_secs_f64() {
            s.workload.rate.at(t)
        } else {
            0.0
        };
        let offered =
            offered_per_member(input, &mut moves, t, rate * (1.0 - big_span_share), members);
        let outage = backend_out(s, t);
        let plan = plan_at(input.plans, t);
        let num_traces = plan.num_traces as f64;
        due = due.max(k + window_of(plan));
        let decided_at = due;
        let mut row = vec![GatewayStep::default(); members];
        for m in 0..members {
            if !input.timeline.alive(m, t) {
                continue;
            }
            let big = big_load.get(&(m, k)).copied().unwrap_or(0.0) / dt;
            let big_traces = big_starts.get(&(m, k)).copied().unwrap_or(0.0);
            let (spans, hops) = (offered[m].0 + big, offered[m].1);
            // Traces per second: a large trace is one, at its first step.
            let traces = offered[m].0 / ordinary_spans + big_traces / dt;
            let slow = slow_factor(m, t, input.timeline);
            let cpu = (spans * input.cost.gateway_cpu_per_span_s
                + traces
                    * (input.cost.gateway_cpu_per_trace_s
                        + input.cost.decide_cpu_per_policy_s * plan.names().len() as f64)
                + hops * input.cost.router_hop_cpu_per_span_s)
                * slow;
            let util = cpu / s.gateway_cores;
            let mut refused_share = if util > 1.0 { 1.0 - 1.0 / util } else { 0.0 };
            let accepted = spans * (1.0 - refused_share);
            history[m][k % longest] = Accepted {
                spans: accepted * dt,
                traces: traces * dt * (1.0 - refused_share),
                decided_at,
            };
            let (unlimited, unlimited_traces) = history[m]
                .iter()
                .filter(|a| a.decided_at > k)
                .fold((0.0, 0.0), |(s, t), a| (s + a.spans, t + a.traces));
            // The share of the wait held: traces are decided early past either limit.
            let held = (bytes_early / unlimited.max(1e-9))
                .min(num_traces / unlimited_traces.max(1e-9))
                .min(1.0);
            let buffered = unlimited * held;
            let effective_wait = plan.decision_wait.as_secs_f64() * held;
            // The export backlog: kept spans while the backend is out, in the exporter's
            // queue and then parked in the buffer (charged there) until the buffer with
            // its live traces is full; drained at once when the backend is back.
            let kept_bytes = accepted * dt * input.keep_share * input.cost.encoded_bytes_per_span;
            let (mut export_failing, mut failed) = (false, 0.0);
            if let Some(since) = outage {
                queue[m] += kept_bytes;
                // The queue is charged in the buffer too: the backlog's limit is the room
                // the live traces leave, each backlog span charged its handle beside its
                // bytes.
                let room = (s.buffer.max_buffered_bytes as f64 - buffered * charge).max(0.0);
                let per_span = input.cost.encoded_bytes_per_span;
                let limit = room * per_span
                    / (per_span + tailgate_gateway::metrics::SPAN_OVERHEAD_BYTES as f64);
                if queue[m] > limit {
                    let over = (queue[m] - limit) / input.cost.encoded_bytes_per_span;
                    queue[m] = limit;
                    if since > s.export_retry.max_elapsed_time.as_secs_f64() {
                        export_failing = true;
                        failed = over;
                    } else {
                        // The buffer is full: the receivers refuse what cannot be held.
                        refused_share = (refused_share + over / (spans * dt).max(1e-9)).min(1.0);
                    }
                }
            } else {
                queue[m] = 0.0;
            }
            flows.offered += spans * dt;
            flows.refused += spans * dt * refused_share;
            flows.export_failed += failed;
            row[m] = GatewayStep {
                offered: spans,
                refused_share,
                utilisation: util.min(1.0),
                demand: util,
                buffered_spans: buffered,
                rss: input.cost.gateway_base_rss_bytes + buffered * rss_per_span + queue[m],
                wanted_rss: input.cost.gateway_base_rss_bytes + unlimited * rss_per_span + queue[m],
                effective_wait,
                export_queue: queue[m],
                export_failing,
                batch_open: s
                    .export_batch
                    .open_for(
                        accepted * input.keep_share,
                        input.cost.encoded_bytes_per_span,
                    )
                    .as_secs_f64(),
            };
        }
        flows
            .router_utilisation
            .push(rate * input.cost.router_cpu_per_span_s / (s.routers as f64 * s.router_cores));
        flows.steps.push(row);
    }
    flows
}

/// What a gateway accepted in one step.
#[derive(Debug, Clone, Copy, Default)]
struct Accepted {
    spans: f64,
    traces: f64,
    /// The step its traces are due at (buffered until then, but for early decisions).
    decided_at: usize,
}

/// The plan in force at `t` of `plans` (ascending by time, the first at 0).
pub fn plan_at<'p>(plans: &[(f64, &'p PolicyPlan)], t: f64) -> &'p PolicyPlan {
    plans[plan_index_at(plans, t)].1
}

/// The index in `plans` (ascending by time, the first at 0) of the plan in force at `t`.
pub fn plan_index_at(plans: &[(f64, &PolicyPlan)], t: f64) -> usize {
    plans.iter().rposition(|(from, _)| *from <= t).unwrap_or(0)
}

/// Per pair of versions (routers', gateways'): per member id, the share of all trace ids
/// it owns in the first and not in the second (forwarded away), and the reverse (received).
type Moves = std::collections::HashMap<(usize, usize), Vec<(f64, f64)>>;

/// Spans per second each member is offered at `t`, and how many of them it forwards to a
/// peer (routers and gateways disagreeing on the owner).
fn offered_per_member(
    input: &FluidInput<'_>,
    moves: &mut Moves,
    t: f64,
    rate: f64,
    members: usize,
) -> Vec<(f64, f64)> {
    let tl = input.timeline;
    let routers = tl.routers();
    let mut out = vec![(0.0, 0.0); members];
    let per_router = rate / routers as f64;
    let gv = tl.gateway_version(t);
    for r in 0..routers {
        let v = tl.router_version(r, t);
        let redistributed = input.scenario.redistribute && v != gv;
        let moved = redistributed.then(|| {
            moves
                .entry((v, gv))
                .or_insert_with(|| pair_moves(tl, v, gv, members))
                .clone()
        });
        for &(id, share) in &tl.versions[v].shares {
            if !tl.alive(id, t) {
                // Held by the router and retried; not this member's load.
                continue;
            }
            // What it does not own any more is forwarded: a hop here, load at the owner.
            let away = moved.as_ref().map_or(0.0, |m| m[id].0);
            out[id].1 += per_router * away;
            out[id].0 += per_router * (share - away);
        }
        if let Some(m) = &moved {
            for (id, (_, received)) in m.iter().enumerate() {
                if *received > 0.0 && tl.alive(id, t) {
                    out[id].0 += per_router * received;
                }
            }
        }
    }
    out
}

/// [`Moves`] for one pair of versions, from evenly spaced hash points.
fn pair_moves(tl: &Timeline, a: usize, b: usize, members: usize) -> Vec<(f64, f64)> {
    let points = crate::cluster::SHARE_POINTS as usize;
    let mut out = vec![(0.0, 0.0); members];
    for i in 0..points {
        let (oa, ob) = (tl.point_owner(a, i), tl.point_owner(b, i));
        if oa != ob {
            out[oa].0 += 1.0 / points as f64;
            out[ob].1 += 1.0 / points as f64;
        }
    }
    out
}

/// A figure per (member, step).
type ByStep = std::collections::HashMap<(usize, usize), f64>;

/// Large traces' spans by (member, step), each on its owner spread over its duration, and
/// the count of them starting in each step.
fn place_big(input: &FluidInput<'_>, dt: f64) -> (ByStep, ByStep) {
    let (mut load, mut starts) = (
        std::collections::HashMap::new(),
        std::collections::HashMap::new(),
    );
    for &(start, spans, duration, trace) in input.big {
        let owner = input
            .timeline
            .owner(input.timeline.gateway_version(start), trace);
        let first = (start / dt) as usize;
        let steps = ((duration / dt).ceil() as usize).max(1);
        for k in first..first + steps {
            *load.entry((owner, k)).or_insert(0.0) += f64::from(spans) / steps as f64;
        }
        *starts.entry((owner, first)).or_insert(0.0) += 1.0;
    }
    (load, starts)
}

/// Seconds the backend has been out at `t`, if it is.
pub fn backend_out(s: &Scenario, t: f64) -> Option<f64> {
    s.events.iter().find_map(|e| match e.kind {
        EventKind::BackendOutage { duration } => {
            let at = e.at.as_secs_f64();
            (t >= at && t < at + duration.as_secs_f64()).then_some(t - at)
        }
        _ => None,
    })
}

/// When the backend outage covering `t` ends, if one does.
pub fn backend_back(s: &Scenario, t: f64) -> Option<f64> {
    s.events.iter().find_map(|e| match e.kind {
        EventKind::BackendOutage { duration } => {
            let at = e.at.as_secs_f64();
            let end = at + duration.as_secs_f64();
            (t >= at && t < end).then_some(end)
        }
        _ => None,
    })
}

/// How much slower member `m` runs at `t` (`slow` events, resolved to members by the
/// timeline).
fn slow_factor(m: usize, t: f64, tl: &Timeline) -> f64 {
    tl.slow
        .iter()
        .filter(|(id, from, to, _)| *id == m && t >= *from && t < *to)
        .map(|(_, _, _, factor)| *factor)
        .fold(1.0, f64::max)
}

/// The trace id hash the ring places a trace by.
pub fn hash(id: &[u8; 16]) -> u64 {
    Ring::hash(id)
}
