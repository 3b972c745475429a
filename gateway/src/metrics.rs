//! The gateway's counters. Every span it receives is, at any moment, in exactly one of:
//! rejected (invalid), refused (overload, sender retries), buffered (live), waiting for
//! export, dropped by policy (including late spans of dropped traces), exported, or failed.
//! So `received = rejected + refused + live + pending_export + dropped + exported + failed`,
//! and at rest the two middle terms are zero.
//!
//! Every gateway metric name is here, with its help text and its rendering into a
//! [`PromText`] at scrape time (the plan's per-policy counts and the reloader's included).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tailgate_core::members::DiscoveryStats;
use tailgate_core::retry::RetryStats;
use tailgate_core::telemetry::{Counter, Gauge, PromText};

use crate::policy::plan::PolicyPlan;
use crate::reload::ReloadStats;

/// Memory a buffered span costs beyond its encoded bytes and its request's share (its
/// 16-byte handle in its trace's slot or span list, the list's spare room, allocator
/// slack), charged against the byte limits so that they bound the process's memory rather
/// than the encoded bytes alone. With [`TRACE_OVERHEAD_BYTES`], fitted to RSS over traces
/// of 1 to 1,000 spans (docs/benchmarks.md, "Spans without header indices").
pub const SPAN_OVERHEAD_BYTES: u64 = 24;

/// Memory a buffered trace costs whatever its size: its slab slot (120 bytes: its id,
/// summary and two inline span handles), its 8-byte index bucket, its place in the
/// deadline queue (16 bytes, 32 for a trace alone in its batch: charged at the most, as
/// a sender of one trace per request could make every trace cost), and the allocations'
/// slack (docs/benchmarks.md, "Session 48"). Without it the limits under-count small
/// traces: a flood of 1-span traces costs 1.44 times its encoded bytes. Not charged: a
/// shard over a limit moves traces still waiting for their root from the deadline queue
/// to 64 others, one per group of resources (`buffer/spared.rs`), whose room is at most
/// four times what they hold, or 256 ids and 256 due times each (16 bytes an id, 16 a
/// due time shared by a run of ids: up to 128 bytes more per trace held while over a
/// limit, and 512 KiB a shard; docs/benchmarks.md, "Session 57").
pub const TRACE_OVERHEAD_BYTES: u64 = 168;

/// What `bytes` of spans (encoded, with their requests' share), `spans` spans and
/// `traces` buffered traces are charged against the byte limits.
pub fn charge(bytes: u64, spans: u64, traces: u64) -> u64 {
    bytes + spans * SPAN_OVERHEAD_BYTES + traces * TRACE_OVERHEAD_BYTES
}

/// Peer counters, rendered with the gateway's.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Spans that reached this gateway by a stale ring and were delivered to their owner.
    pub forwarded_spans: Counter,
    /// Buffered spans handed to their new owner after a ring change.
    pub handed_off_spans: Counter,
    /// Traces handed off.
    pub handed_off_traces: Counter,
    /// Decisions handed to their trace's new owner.
    pub handed_off_decisions: Counter,
    /// Spans received from other gateways (forwarded or handed off; also in received).
    pub received_spans: Counter,
    /// Decisions received from other gateways.
    pub received_decisions: Counter,
    /// Requests to peers that failed after retries; their spans stayed here.
    pub failures: Counter,
    /// Spans whose hand-off was abandoned unanswered (the drain cut it short) and kept
    /// here: the peer may have taken them too.
    pub abandoned_spans: Counter,
    /// Due traces that another gateway owns, left for a hand-off pass instead of being
    /// decided here on part of their spans.
    pub deferred_decisions: Counter,
    /// Accepted spans that could neither be passed on nor buffered here (the gateway was
    /// stopping): counted as failed.
    pub failed_spans: Counter,
    /// Spans taken out of the shards for a handoff and not yet delivered.
    pub handoff_pending_spans: Gauge,
    /// Times the ring changed.
    pub ring_changes: Counter,
    /// Members on the ring.
    pub members: Gauge,
    /// DNS lookups, failures and changes.
    pub discovery: Arc<DiscoveryStats>,
}

/// One exporter's counters.
#[derive(Debug)]
pub struct ExporterStats {
    /// The exporter's key (`otlp_grpc`, `otlp_http/archive`, …).
    pub name: String,
    /// Spans the backend took.
    pub sent_spans: Counter,
    /// Spans the backend refused or did not take within the retry bound.
    pub failed_spans: Counter,
    /// Span bytes queued or in flight.
    pub queue_bytes: Gauge,
    /// The queue's capacity in bytes.
    pub queue_capacity_bytes: u64,
    /// Encoded bytes of kept spans the shards hold for this exporter while its queue has
    /// no room for them (charged in the buffer as pending export).
    pub parked_bytes: Gauge,
    /// Shards waiting for room in the queue: to re-encode kept spans well past the buffer's
    /// hard limit, or in a drain (otherwise they park what does not fit, see
    /// `parked_bytes`).
    pub waiting: Arc<Gauge>,
    /// The client's retries, give-ups and whether the backend is failing now.
    pub retry: Arc<RetryStats>,
}

impl ExporterStats {
    /// Counters for exporter `name` with a queue of `capacity` bytes, all at zero.
    pub fn new(name: &str, capacity: u64) -> Self {
        ExporterStats {
            name: name.to_owned(),
            sent_spans: Counter::default(),
            failed_spans: Counter::default(),
            queue_bytes: Gauge::default(),
            queue_capacity_bytes: capacity,
            parked_bytes: Gauge::default(),
            waiting: Arc::default(),
            retry: Arc::default(),
        }
    }
}

/// Upper bounds (seconds) of the decision-latency histogram's buckets: fine just past the
/// usual `decision_wait`s (2, 5, 10 and 30 s), where healthy decisions land, so that a
/// quantile reads about the wait plus the real delay (with only 10 and 15, every healthy
/// decision at a 10 s wait fell in one bucket and p50 read 12.5 s).
pub const DECISION_LATENCY_BUCKETS: [f64; 21] = [
    0.1, 0.5, 1.0, 2.0, 2.5, 5.0, 5.5, 10.0, 10.5, 11.0, 12.5, 15.0, 20.0, 30.0, 30.5, 32.0, 35.0,
    45.0, 60.0, 120.0, 300.0,
];

/// One per-exporter metric: name, type, help, and how to read it.
type ExporterSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ExporterStats) -> u64,
);

/// When something last happened, read and written without a lock.
#[derive(Debug)]
pub struct LastSeen {
    origin: tokio::time::Instant,
    /// Nanoseconds from `origin` to the last time, plus one; 0 for never.
    at: std::sync::atomic::AtomicU64,
}

impl Default for LastSeen {
    fn default() -> Self {
        LastSeen {
            origin: tokio::time::Instant::now(),
            at: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl LastSeen {
    /// It happened now.
    pub fn mark(&self) {
        let since = self.origin.elapsed().as_nanos();
        let at = u64::try_from(since).unwrap_or(u64::MAX - 1) + 1;
        self.at.store(at, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether it happened within the last `window`.
    pub fn within(&self, window: std::time::Duration) -> bool {
        match self.at.load(std::sync::atomic::Ordering::Relaxed) {
            0 => false,
            at => {
                let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let window = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
                now.saturating_sub(at - 1) <= window
            }
        }
    }
}

/// Decisions counted by one shard since it last added them to [`GatewayStats`] (see
/// [`GatewayStats::add_decisions`]).
#[derive(Debug, Default)]
pub struct DecisionTally {
    sampled: u64,
    not_sampled: u64,
    dropped: u64,
    /// Traces kept per policy index.
    by_policy: Vec<u64>,
    /// Per [`DECISION_LATENCY_BUCKETS`] bucket, and the sum in microseconds.
    latency: [u64; DECISION_LATENCY_BUCKETS.len() + 1],
    latency_micros: u64,
    pending: bool,
}

impl DecisionTally {
    /// Counts a trace dropped without evaluating the policies (not sampled, no latency).
    #[inline]
    pub fn unevaluated(&mut self) {
        self.pending = true;
        self.not_sampled += 1;
    }

    /// Counts one decision: kept by `policy` (the index of the policy that kept it) or not
    /// kept (`None`), `latency` after its trace's first span.
    #[inline]
    pub fn record(&mut self, policy: Option<u16>, latency: std::time::Duration) {
        self.pending = true;
        match policy {
            Some(i) => {
                self.sampled += 1;
                let i = usize::from(i);
                if self.by_policy.len() <= i {
                    self.by_policy.resize(i + 1, 0);
                }
                self.by_policy[i] += 1;
            }
            None => self.not_sampled += 1,
        }
        self.latency(latency);
    }

    /// Counts one trace a `drop` policy dropped, `latency` after its first span.
    #[inline]
    pub fn record_dropped(&mut self, latency: std::time::Duration) {
        self.pending = true;
        self.dropped += 1;
        self.latency(latency);
    }

    #[inline]
    fn latency(&mut self, latency: std::time::Duration) {
        let secs = latency.as_secs_f64();
        let bucket = DECISION_LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DECISION_LATENCY_BUCKETS.len());
        self.latency[bucket] += 1;
        self.latency_micros = self
            .latency_micros
            .saturating_add(latency.as_micros().min(u128::from(u64::MAX)) as u64);
    }
}

/// Counters of one gateway instance.
#[derive(Debug, Default)]
pub struct GatewayStats {
    /// Spans in well-formed requests.
    pub received_spans: Counter,
    /// Spans rejected for a bad trace id (partial success to the sender).
    pub rejected_invalid_id_spans: Counter,
    /// Spans rejected for a malformed field inside (partial success to the sender).
    pub rejected_malformed_spans: Counter,
    /// Spans a peer they were forwarded to rejected (by its own count).
    pub peer_rejected_spans: Counter,
    /// Spans refused because a buffer was full or the gateway was stopping.
    pub refused_spans: Counter,
    /// Requests refused as malformed.
    pub malformed_requests: Counter,
    /// Requests handled to their end after their sender's `grpc-timeout` had passed (the
    /// sender may have sent them again: their spans may be here twice).
    pub late_answers: Counter,
    /// Spans not kept by the policies, including late spans of dropped traces.
    pub dropped_spans: Counter,
    /// Late spans of dropped traces (also in `dropped_spans`).
    pub late_dropped_spans: Counter,
    /// Late spans of kept traces, exported at once.
    pub late_sampled_spans: Counter,
    /// Spans delivered to the backend.
    pub exported_spans: Counter,
    /// Spans the backend did not take within the retry bound, or rejected.
    pub export_failed_spans: Counter,
    /// Spans still unsettled when the drain deadline passed: lost with the process.
    pub drain_lost_spans: Counter,
    /// Traces decided before their deadline because the trace limit was reached.
    pub early_decisions: Counter,
    /// Traces decided early because their shard was over the soft byte limit.
    pub early_decisions_memory: Counter,
    /// Traces decided early for `num_traces` since that was last logged (shared by the
    /// shards, so the gateway says it once a minute; locked only by a shard that has just
    /// decided some early for it).
    pub num_traces_logged: std::sync::Mutex<tailgate_core::retry::Tally>,
    /// Traces decided early for memory since that was last logged (as
    /// `num_traces_logged`).
    pub memory_early_logged: std::sync::Mutex<tailgate_core::retry::Tally>,
    /// Traces decided early because they reached the span limit.
    pub early_decisions_span_limit: Counter,
    /// Traces dropped unevaluated: larger than `maximum_trace_size_bytes`.
    pub dropped_traces_oversize: Counter,
    /// Traces dropped unevaluated: pending at shutdown with `drop_pending_traces_on_shutdown`.
    pub dropped_traces_shutdown: Counter,
    /// Spans refused because buffered bytes were over the hard limit (also in `refused_spans`).
    pub refused_spans_memory: Counter,
    /// When a request was last refused for memory (what the exporters' hold looks at).
    pub last_memory_refusal: LastSeen,
    /// Requests refused, by [`tailgate_core::receive::Refusal::REASONS`].
    pub refused_requests: [Counter; tailgate_core::receive::Refusal::REASONS.len()],
    /// Decisions by how long after the trace's first span they came, per
    /// [`DECISION_LATENCY_BUCKETS`] (cumulative buckets are built when rendering).
    pub decision_latency: [Counter; DECISION_LATENCY_BUCKETS.len() + 1],
    /// Sum of decision latencies, microseconds.
    pub decision_latency_micros: Counter,
    /// Traces kept.
    pub traces_sampled: Counter,
    /// Traces not kept because no policy sampled them (or unevaluated).
    pub traces_not_sampled: Counter,
    /// Traces not kept because a `drop` policy matched.
    pub traces_dropped: Counter,
    /// Traces buffered now.
    pub live_traces: Gauge,
    /// Spans queued for or buffered in shards now.
    pub live_spans: Gauge,
    /// Encoded span bytes buffered now, with their requests' share and the attribute
    /// values recorded for the policies.
    pub buffered_bytes: Gauge,
    /// Encoded bytes of kept spans handed to the exporter and not yet delivered or failed.
    pub pending_export_bytes: Gauge,
    /// With more than one exporter, what the copies of kept spans' handles and tickets
    /// parked for each exporter take (`pending_export_bytes` charges one copy's spans):
    /// charged against the limits while they wait.
    pub parked_copies_bytes: Gauge,
    /// Requests being admitted (their worst-case charge) and accepted spans on their way to
    /// a shard, in its channel: their encoded bytes with their requests' share, the handles
    /// carrying them and a trace's charge each.
    pub shard_queue_bytes: Gauge,
    /// Spans of kept traces not yet delivered or failed.
    pub pending_export_spans: Gauge,
    /// `buffer.max_buffered_bytes` (set at start), for dashboards' fill ratio.
    pub max_buffered_bytes: Gauge,
    /// `buffer.early_decision_bytes`, or its default (set at start).
    pub early_decision_bytes: Gauge,
    /// Bytes of every request whose spans are still held anywhere (see
    /// [`crate::buffer::trace::RequestLedger`]).
    pub request_bytes: Arc<crate::buffer::trace::RequestLedger>,
    /// Traffic between gateways (forwarding, handoff).
    pub peers: PeerStats,
    /// Traces kept per policy name; a shard locks it once per batch of decisions that
    /// kept any (see [`DecisionTally`]). By name, not position: a reload that reorders,
    /// adds or renames policies must not credit one policy's count to another.
    by_policy: Mutex<HashMap<String, u64>>,
    /// Policy names for the labels.
    policy_names: Mutex<Vec<String>>,
    /// Each exporter's counters (set once at start).
    exporters: Mutex<Vec<Arc<ExporterStats>>>,
}

// === impl GatewayStats ===

impl GatewayStats {
    /// Spans rejected as invalid, for every reason.
    pub fn rejected_spans(&self) -> u64 {
        self.rejected_invalid_id_spans.get()
            + self.rejected_malformed_spans.get()
            + self.peer_rejected_spans.get()
    }

    /// Registers the exporters' counters, for `/metrics`.
    pub fn set_exporters(&self, exporters: Vec<Arc<ExporterStats>>) {
        if let Ok(mut e) = self.exporters.lock() {
            *e = exporters;
        }
    }

    /// The exporters' counters.
    pub fn exporters(&self) -> Vec<Arc<ExporterStats>> {
        self.exporters.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Sets the policy names used as labels.
    pub fn set_policy_names(&self, names: &[String]) {
        if let Ok(mut n) = self.policy_names.lock() {
            *n = names.to_vec();
        }
    }

    /// Adds a shard's tally of decisions to the shared counters and empties it: once per
    /// batch of decisions, so that a decision costs no shared write (and no lock).
    /// `policies` names the policies of the plan that took them, by index (a shard flushes
    /// its tally before it decides with another plan).
    pub fn add_decisions(&self, tally: &mut DecisionTally, policies: &[String]) {
        if !std::mem::take(&mut tally.pending) {
            return;
        }
        self.traces_sampled.add(std::mem::take(&mut tally.sampled));
        self.traces_not_sampled
            .add(std::mem::take(&mut tally.not_sampled));
        self.traces_dropped.add(std::mem::take(&mut tally.dropped));
        for (shared, n) in self.decision_latency.iter().zip(&mut tally.latency) {
            if *n > 0 {
                shared.add(std::mem::take(n));
            }
        }
        self.decision_latency_micros
            .add(std::mem::take(&mut tally.latency_micros));
        if tally.by_policy.iter().any(|n| *n > 0) {
            if let Ok(mut shared) = self.by_policy.lock() {
                for (i, n) in tally.by_policy.iter_mut().enumerate() {
                    let n = std::mem::take(n);
                    match policies.get(i) {
                        Some(name) if n > 0 => match shared.get_mut(name.as_str()) {
                            Some(count) => *count += n,
                            None => {
                                shared.insert(name.clone(), n);
                            }
                        },
                        _ => {}
                    }
                }
            }
        }
    }

    /// Traces kept by the policy named `name`, across reloads that kept its name.
    pub fn sampled_by_policy(&self, name: &str) -> u64 {
        self.by_policy
            .lock()
            .map(|m| m.get(name).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Spans not yet settled (queued for a shard, buffered, or waiting for export). Reads
    /// live before pending: spans move from live to pending, added to pending first.
    pub fn in_flight_spans(&self) -> u64 {
        let live = self.live_spans.get();
        live + self.pending_export_spans.get() + self.peers.handoff_pending_spans.get()
    }

    /// Memory the gateway holds for spans: encoded bytes of buffered traces, of spans on
    /// their way to a shard and of kept spans waiting for the backend (or, when larger, of
    /// every request still alive: a small span can hold a large request whose other spans
    /// have left), plus a fixed overhead per span and per buffered trace. The hard limit
    /// (`buffer.max_buffered_bytes`) applies to this.
    pub fn held_bytes(&self) -> u64 {
        let queued = self.shard_queue_bytes.get();
        let spans = self.buffered_bytes.get()
            + self.pending_export_bytes.get()
            + self.parked_copies_bytes.get()
            + queued;
        charge(
            spans.max(self.request_bytes.get() + queued),
            self.live_spans.get() + self.pending_export_spans.get(),
            self.live_traces.get(),
        )
    }

    /// The Prometheus text format (0.0.4) of [`Self::render_into`].
    pub fn render(&self) -> String {
        let mut p = PromText::default();
        self.render_into(&mut p);
        p.finish()
    }

    /// Gathers every series of these stats into `p`.
    pub fn render_into(&self, p: &mut PromText) {
        self.render_spans(p);
        self.render_peers(p);
        self.render_decisions(p);
        self.render_buffer(p);
        self.render_exporters(p);
    }

    /// Span totals: received, refused, dropped, exported.
    fn render_spans(&self, p: &mut PromText) {
        counter(
            p,
            "tailgate_gateway_received_spans_total",
            "Spans received in well-formed requests.",
            &self.received_spans,
        );
        // Each reason its own counter: one worked out by subtraction could read lower on
        // a later scrape (a counter reset to Prometheus) when a scrape fell between the
        // additions.
        p.metric(
            "tailgate_gateway_rejected_spans_total",
            "counter",
            "Spans rejected as invalid, by reason: a bad trace id or a malformed field inside (partial success to the sender), or rejected by the peer they were forwarded to after the sender was answered (that peer counts them too).",
            &[("reason", "invalid_trace_id")],
            self.rejected_invalid_id_spans.get(),
        );
        p.sample(
            "tailgate_gateway_rejected_spans_total",
            &[("reason", "malformed_span")],
            self.rejected_malformed_spans.get(),
        );
        p.sample(
            "tailgate_gateway_rejected_spans_total",
            &[("reason", "peer")],
            self.peer_rejected_spans.get(),
        );
        counter(
            p,
            "tailgate_gateway_refused_spans_total",
            "Spans refused (buffer full or stopping); senders retry.",
            &self.refused_spans,
        );
        counter(
            p,
            "tailgate_gateway_malformed_requests_total",
            "Requests refused as malformed: protobuf the scan cannot read, or OTLP/JSON that does not convert.",
            &self.malformed_requests,
        );
        counter(
            p,
            "tailgate_gateway_late_answers_total",
            "Requests taken after their sender's grpc-timeout had passed: the sender may have sent them again, so their spans may be taken twice.",
            &self.late_answers,
        );
        counter(
            p,
            "tailgate_gateway_dropped_spans_total",
            "Spans not kept by the policies.",
            &self.dropped_spans,
        );
        counter(
            p,
            "tailgate_gateway_late_dropped_spans_total",
            "Late spans of dropped traces.",
            &self.late_dropped_spans,
        );
        counter(
            p,
            "tailgate_gateway_late_sampled_spans_total",
            "Late spans of kept traces, exported at once.",
            &self.late_sampled_spans,
        );
        counter(
            p,
            "tailgate_gateway_exported_spans_total",
            "Spans delivered to the backend.",
            &self.exported_spans,
        );
        counter(
            p,
            "tailgate_gateway_export_failed_spans_total",
            "Spans not delivered within the retry bound.",
            &self.export_failed_spans,
        );
        counter(
            p,
            "tailgate_gateway_drain_lost_spans_total",
            "Spans still buffered, queued or waiting for the backend when the drain deadline passed: lost with the process (they also stay in the live and pending gauges of that last scrape).",
            &self.drain_lost_spans,
        );
    }

    /// The ring and the traffic between gateways.
    fn render_peers(&self, p: &mut PromText) {
        let peers = &self.peers;
        for (name, help, v) in [
            (
                "tailgate_gateway_peer_forwarded_spans_total",
                "Spans that reached this gateway by a stale ring, delivered to their owner.",
                &peers.forwarded_spans,
            ),
            (
                "tailgate_gateway_peer_handed_off_spans_total",
                "Buffered spans handed to their new owner after a ring change.",
                &peers.handed_off_spans,
            ),
            (
                "tailgate_gateway_peer_handed_off_traces_total",
                "Buffered traces handed to their new owner.",
                &peers.handed_off_traces,
            ),
            (
                "tailgate_gateway_peer_handed_off_decisions_total",
                "Decisions handed to their trace's new owner.",
                &peers.handed_off_decisions,
            ),
            (
                "tailgate_gateway_peer_received_spans_total",
                "Spans received from other gateways (also in received).",
                &peers.received_spans,
            ),
            (
                "tailgate_gateway_peer_received_decisions_total",
                "Decisions received from other gateways.",
                &peers.received_decisions,
            ),
            (
                "tailgate_gateway_peer_failures_total",
                "Requests to peers that failed after retries; their spans stayed here.",
                &peers.failures,
            ),
            (
                "tailgate_gateway_peer_abandoned_spans_total",
                "Spans whose hand-off was abandoned unanswered when the drain cut it short, kept here: the peer may have taken them too.",
                &peers.abandoned_spans,
            ),
            (
                "tailgate_gateway_peer_deferred_decisions_total",
                "Due traces another gateway owns, left for a hand-off pass to take there instead of being decided here on part of their spans.",
                &peers.deferred_decisions,
            ),
            (
                "tailgate_gateway_peer_failed_spans_total",
                "Accepted spans that could neither be passed on nor buffered (stopping).",
                &peers.failed_spans,
            ),
            (
                "tailgate_gateway_ring_changes_total",
                "Times the gateway ring changed.",
                &peers.ring_changes,
            ),
            (
                "tailgate_gateway_dns_lookups_total",
                "DNS lookups for peers.",
                &peers.discovery.lookups,
            ),
            (
                "tailgate_gateway_dns_failures_total",
                "DNS lookups for peers that failed or were empty.",
                &peers.discovery.failures,
            ),
        ] {
            counter(p, name, help, v);
        }
        p.metric(
            "tailgate_gateway_ring_members",
            "gauge",
            "Gateways on the ring as this one sees it (0: no peers, it owns every trace).",
            &[],
            peers.members.get(),
        );
        p.metric(
            "tailgate_gateway_peer_handoff_pending_spans",
            "gauge",
            "Spans taken out of the buffer for a handoff and not yet delivered.",
            &[],
            peers.handoff_pending_spans.get(),
        );
    }

    /// Decisions: early ones, by outcome and by policy.
    fn render_decisions(&self, p: &mut PromText) {
        p.labelled(
            "tailgate_gateway_early_decisions_total",
            "counter",
            "Traces decided before decision_wait, by reason.",
            "reason",
            [
                ("num_traces", self.early_decisions.get()),
                ("memory", self.early_decisions_memory.get()),
                ("span_limit", self.early_decisions_span_limit.get()),
            ],
        );
        p.labelled(
            "tailgate_gateway_unevaluated_dropped_traces_total",
            "counter",
            "Traces dropped without evaluating the policies (their spans are in dropped_spans), by reason.",
            "reason",
            [
                ("maximum_trace_size_bytes", self.dropped_traces_oversize.get()),
                ("drop_pending_traces_on_shutdown", self.dropped_traces_shutdown.get()),
            ],
        );
        counter(
            p,
            "tailgate_gateway_refused_spans_memory_total",
            "Spans refused because buffered bytes were over buffer.max_buffered_bytes.",
            &self.refused_spans_memory,
        );
        p.metric(
            "tailgate_gateway_decisions_total",
            "counter",
            "Trace decisions by outcome.",
            &[("decision", "sampled")],
            self.traces_sampled.get(),
        );
        p.sample(
            "tailgate_gateway_decisions_total",
            &[("decision", "not_sampled")],
            self.traces_not_sampled.get(),
        );
        p.sample(
            "tailgate_gateway_decisions_total",
            &[("decision", "dropped")],
            self.traces_dropped.get(),
        );
        let names = self
            .policy_names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default();
        for (i, name) in names.iter().enumerate() {
            let labels = [("policy", name.as_str())];
            let v = self.sampled_by_policy(name);
            if i == 0 {
                p.metric(
                    "tailgate_gateway_policy_sampled_traces_total",
                    "counter",
                    "Traces kept, by the policy credited with keeping them: the first that sampled the trace, in evaluation order (drop policies first, then the file's order), as the Collector credits it.",
                    &labels,
                    v,
                );
            } else {
                p.sample("tailgate_gateway_policy_sampled_traces_total", &labels, v);
            }
        }
    }

    /// What is held (gauges), refusals, and decision latency.
    fn render_buffer(&self, p: &mut PromText) {
        p.metric(
            "tailgate_gateway_live_traces",
            "gauge",
            "Traces buffered.",
            &[],
            self.live_traces.get(),
        );
        p.metric(
            "tailgate_gateway_live_spans",
            "gauge",
            "Spans buffered.",
            &[],
            self.live_spans.get(),
        );
        p.metric(
            "tailgate_gateway_buffered_bytes",
            "gauge",
            "Encoded span bytes buffered, with their requests' share and the attribute values recorded for policies.",
            &[],
            self.buffered_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_held_bytes",
            "gauge",
            "Memory charged against buffer.max_buffered_bytes: buffered and export-pending bytes plus a fixed overhead per span and per trace.",
            &[],
            self.held_bytes(),
        );
        p.metric(
            "tailgate_gateway_max_buffered_bytes",
            "gauge",
            "buffer.max_buffered_bytes: above it in held_bytes, new spans are refused.",
            &[],
            self.max_buffered_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_early_decision_bytes",
            "gauge",
            "buffer.early_decision_bytes: above it in held_bytes, traces are decided early (with their root span first, then the rest, those of a resource holding many first).",
            &[],
            self.early_decision_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_request_bytes",
            "gauge",
            "Bytes of the received requests whose spans are still held (buffered, queued or waiting for export).",
            &[],
            self.request_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_shard_queue_bytes",
            "gauge",
            "Requests being admitted and spans waiting in a shard's channel, at the most they can cost once buffered.",
            &[],
            self.shard_queue_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_pending_export_bytes",
            "gauge",
            "Encoded bytes of kept spans waiting for the backend.",
            &[],
            self.pending_export_bytes.get(),
        );
        p.metric(
            "tailgate_gateway_pending_export_spans",
            "gauge",
            "Spans of kept traces waiting for the backend.",
            &[],
            self.pending_export_spans.get(),
        );
        tailgate_core::receive::Refusal::render_counts(
            p,
            "tailgate_gateway_refused_requests_total",
            &self.refused_requests,
        );
        tailgate_core::telemetry::render_closed_connections(
            p,
            "tailgate_gateway_closed_connections_total",
        );
        p.metric(
            "tailgate_gateway_tls_failed_handshakes_total",
            "counter",
            "TLS handshakes on the receivers that failed or timed out (no or a wrong client certificate, plaintext).",
            &[],
            tailgate_core::tls::failed_handshakes_total(),
        );
        p.header(
            "tailgate_gateway_decision_latency_seconds",
            "histogram",
            "Time from a trace's first span to its decision.",
        );
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.decision_latency.len());
        for (i, c) in self.decision_latency.iter().enumerate() {
            cumulative += c.get();
            let le = DECISION_LATENCY_BUCKETS
                .get(i)
                .map_or(f64::INFINITY, |b| *b);
            buckets.push((le, cumulative));
        }
        p.histogram(
            "tailgate_gateway_decision_latency_seconds",
            &[],
            &buckets,
            self.decision_latency_micros.get() as f64 / 1e6,
            cumulative,
        );
    }

    /// Per exporter: delivered, failed, queued, retried.
    fn render_exporters(&self, p: &mut PromText) {
        let exporters = self.exporters();
        let series: [ExporterSeries; 9] = [
            (
                "tailgate_gateway_exporter_sent_spans_total",
                "counter",
                "Spans each exporter's backend took.",
                |e| e.sent_spans.get(),
            ),
            (
                "tailgate_gateway_exporter_failed_spans_total",
                "counter",
                "Spans each exporter's backend refused or did not take within the retry bound.",
                |e| e.failed_spans.get(),
            ),
            (
                "tailgate_gateway_exporter_queue_bytes",
                "gauge",
                "Span bytes queued for or being sent by each exporter.",
                |e| e.queue_bytes.get(),
            ),
            (
                "tailgate_gateway_exporter_queue_capacity_bytes",
                "gauge",
                "Each exporter's queue capacity; past it, kept spans wait in the buffer (parked).",
                |e| e.queue_capacity_bytes,
            ),
            (
                "tailgate_gateway_exporter_parked_bytes",
                "gauge",
                "Span bytes of kept traces waiting in the buffer for room in each exporter's queue (its backend is slow or down); charged against buffer.max_buffered_bytes.",
                |e| e.parked_bytes.get(),
            ),
            (
                "tailgate_gateway_exporter_retries_total",
                "counter",
                "Export attempts repeated after a retryable failure.",
                |e| e.retry.retries.get(),
            ),
            (
                "tailgate_gateway_exporter_unanswered_requests_total",
                "counter",
                "Export attempts the backend did not answer within the exporter's timeout (then sent again, or given up at the retry bound): it may have taken them, so their spans may arrive twice.",
                |e| e.retry.unanswered.get(),
            ),
            (
                "tailgate_gateway_exporter_gave_up_requests_total",
                "counter",
                "Export requests given up after retry.max_elapsed_time, once holding them made the gateway refuse senders.",
                |e| e.retry.gave_up.get(),
            ),
            (
                "tailgate_gateway_exporter_backend_failing",
                "gauge",
                "1 while the exporter's last attempt failed and is being retried.",
                |e| u64::from(e.retry.is_failing()),
            ),
        ];
        for (name, kind, help, value) in series {
            for (i, e) in exporters.iter().enumerate() {
                let labels = [("exporter", e.name.as_str())];
                if i == 0 {
                    p.metric(name, kind, help, &labels, value(e));
                } else {
                    p.sample(name, &labels, value(e));
                }
            }
        }
    }
}

/// One counter series without labels.
fn counter(p: &mut PromText, name: &str, help: &str, v: &Counter) {
    p.metric(name, "counter", help, &[], v.get());
}

/// `tailgate_config_reloads_total{result}` and `tailgate_config_active_hash`.
pub fn render_reload(p: &mut PromText, reload: &ReloadStats) {
    p.metric(
        "tailgate_config_reloads_total",
        "counter",
        "Policy reloads by result.",
        &[("result", "ok")],
        reload.ok.get(),
    );
    p.sample(
        "tailgate_config_reloads_total",
        &[("result", "error")],
        reload.error.get(),
    );
    p.metric(
        "tailgate_config_active_hash",
        "gauge",
        "xxh3 of the policy file in force.",
        &[],
        reload.active_hash.get(),
    );
    p.metric(
        "tailgate_config_last_reload_successful",
        "gauge",
        "1 while the policy file in place is the one in force; 0 after a refused reload until a good file loads.",
        &[],
        reload.last_reload_successful.get(),
    );
}

/// Per-policy verdicts, evaluation time and errors of the plan in force.
pub fn render_plan(p: &mut PromText, plan: &PolicyPlan) {
    p.metric(
        "tailgate_gateway_max_traces",
        "gauge",
        "num_traces of the plan in force: above it in live_traces, traces are decided early (with their root span first, then the rest, those of a resource holding many first).",
        &[],
        plan.num_traces as u64,
    );
    p.header(
        "tailgate_gateway_policy_evaluations_total",
        "counter",
        "Policy verdicts since the plan in force was loaded.",
    );
    for (name, counts) in plan.names().iter().zip(plan.verdict_counts()) {
        for (verdict, n) in crate::policy::plan::VERDICT_NAMES.iter().zip(counts) {
            p.sample(
                "tailgate_gateway_policy_evaluations_total",
                &[("policy", name), ("verdict", verdict)],
                n,
            );
        }
    }
    // Evaluation time, measured on one decision in TIMING_SAMPLE: _sum / _count is the
    // mean time per evaluation. A histogram with only the +Inf bucket: prometheus-client
    // has no summary type, and the queries (_sum, _count) are the same.
    p.header(
        "tailgate_gateway_policy_evaluation_seconds",
        "histogram",
        "Time spent evaluating each policy, sampled on one decision in 32.",
    );
    for (name, (count, nanos)) in plan.names().iter().zip(plan.evaluation_timings()) {
        p.histogram(
            "tailgate_gateway_policy_evaluation_seconds",
            &[("policy", name)],
            &[],
            nanos as f64 / 1e9,
            count,
        );
    }
    p.header(
        "tailgate_gateway_policy_evaluation_errors_total",
        "counter",
        "Condition evaluations that failed (ottl_condition), since the plan in force was loaded.",
    );
    for (name, policy) in plan.names().iter().zip(plan.policies()) {
        p.sample(
            "tailgate_gateway_policy_evaluation_errors_total",
            &[("policy", name)],
            policy.errors(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: spans rejected for each reason: 3 with a bad trace id, 2 malformed, 1 by
    /// a peer. Guarantees: `tailgate_gateway_rejected_spans_total` shows each by its
    /// `reason`, as the router's does and docs/operations.md says.
    #[test]
    fn rejected_spans_are_shown_by_reason() {
        let stats = GatewayStats::default();
        stats.rejected_invalid_id_spans.add(3);
        stats.rejected_malformed_spans.add(2);
        stats.peer_rejected_spans.add(1);
        let text = stats.render();
        for line in [
            "tailgate_gateway_rejected_spans_total{reason=\"invalid_trace_id\"} 3",
            "tailgate_gateway_rejected_spans_total{reason=\"malformed_span\"} 2",
            "tailgate_gateway_rejected_spans_total{reason=\"peer\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
    }

    /// Scenario: a shard tallies four decisions, adds them, tallies one more and adds it.
    /// Guarantees: the shared counters see each decision once, by outcome, policy and
    /// latency bucket; an empty tally adds nothing.
    #[test]
    fn tallied_decisions_are_added_once() {
        let stats = GatewayStats::default();
        let mut tally = DecisionTally::default();
        let ms = std::time::Duration::from_millis;
        tally.record(Some(1), ms(2));
        tally.record(Some(1), ms(3));
        tally.record(None, ms(20_000));
        tally.unevaluated();
        let plan = ["errors".to_owned(), "slow".to_owned()];
        stats.add_decisions(&mut tally, &plan);
        stats.add_decisions(&mut tally, &plan);
        assert_eq!(
            (stats.traces_sampled.get(), stats.traces_not_sampled.get()),
            (2, 2)
        );
        assert_eq!(
            (
                stats.sampled_by_policy("errors"),
                stats.sampled_by_policy("slow")
            ),
            (0, 2)
        );
        let latencies: u64 = stats.decision_latency.iter().map(Counter::get).sum();
        assert_eq!(latencies, 3, "the unevaluated trace has no latency");
        assert_eq!(stats.decision_latency_micros.get(), 20_005_000);
        tally.record(Some(0), ms(1));
        stats.add_decisions(&mut tally, &plan);
        assert_eq!(
            (
                stats.sampled_by_policy("errors"),
                stats.sampled_by_policy("slow")
            ),
            (1, 2)
        );
        assert_eq!(stats.traces_sampled.get(), 3);
    }

    /// Scenario: policies kept traces; a reload reorders them, drops one and adds one
    /// (issue found by a user trial: counts were kept by position and went to whichever
    /// policy then stood there). Guarantees: `/metrics` shows each policy's own count
    /// under its name after the reload, a new policy starts at 0 (even at the position of
    /// one that kept traces), and later decisions add to the right names.
    #[test]
    fn policy_counts_follow_names_across_a_reload() {
        let stats = GatewayStats::default();
        let mut tally = DecisionTally::default();
        let ms = std::time::Duration::from_millis;
        let before: Vec<String> = ["errors", "slow", "baseline"].map(String::from).into();
        stats.set_policy_names(&before);
        for (policy, n) in [(0, 130), (1, 135), (2, 103)] {
            for _ in 0..n {
                tally.record(Some(policy), ms(1));
            }
        }
        stats.add_decisions(&mut tally, &before);
        let after: Vec<String> = ["baseline", "drop-all", "errors"].map(String::from).into();
        stats.set_policy_names(&after);
        let shown = |stats: &GatewayStats| {
            let mut p = PromText::default();
            stats.render_decisions(&mut p);
            let text = p.finish();
            ["baseline", "drop-all", "errors", "slow"].map(|name| {
                let series =
                    format!("tailgate_gateway_policy_sampled_traces_total{{policy=\"{name}\"}} ");
                text.lines()
                    .find_map(|l| l.strip_prefix(series.as_str()))
                    .map(|v| v.parse::<u64>().unwrap())
            })
        };
        assert_eq!(shown(&stats), [Some(103), Some(0), Some(130), None]);
        tally.record(Some(2), ms(1));
        tally.record(Some(0), ms(1));
        stats.add_decisions(&mut tally, &after);
        assert_eq!(shown(&stats), [Some(104), Some(0), Some(131), None]);
    }

    /// Scenario: a gateway's limits set at start. Guarantees: `/metrics` shows them next to
    /// what they limit, so a dashboard can divide one by the other (a user trial found no
    /// way to build a fill ratio).
    #[test]
    fn the_limits_are_rendered_beside_what_they_limit() {
        let stats = GatewayStats::default();
        stats.max_buffered_bytes.set(1 << 30);
        stats.early_decision_bytes.set(858_993_459);
        let file = crate::PolicyFile::parse(
            std::path::Path::new("p.yaml"),
            "num_traces: 1234\npolicies: [{name: a, type: always_sample}]\n",
        )
        .unwrap();
        let mut p = PromText::default();
        render_plan(&mut p, &PolicyPlan::compile(&file));
        stats.render_into(&mut p);
        let text = p.finish();
        for (name, value) in [
            ("tailgate_gateway_max_traces", 1234),
            ("tailgate_gateway_max_buffered_bytes", 1u64 << 30),
            ("tailgate_gateway_early_decision_bytes", 858_993_459),
            ("tailgate_gateway_held_bytes", 0),
        ] {
            assert!(
                text.lines().any(|l| l == format!("{name} {value}")),
                "{name} {value} in\n{text}"
            );
        }
    }

    /// Scenario: decisions of traces claimed (by a handoff header) to be ages old.
    /// Guarantees: the latency sum saturates instead of overflowing (a panic in a debug
    /// build would take a shard down).
    #[test]
    fn huge_latencies_saturate() {
        let mut tally = DecisionTally::default();
        tally.record(None, std::time::Duration::MAX);
        tally.record(None, std::time::Duration::MAX);
        let stats = GatewayStats::default();
        stats.add_decisions(&mut tally, &[]);
        assert_eq!(stats.decision_latency_micros.get(), u64::MAX);
    }

    /// Scenario: a refusal is marked, then time passes.
    /// Guarantees: never marked is never within; a mark is within a window until the window
    /// has passed, then not (the exporters' hold reacts to recent refusals only).
    #[tokio::test(start_paused = true)]
    async fn last_seen_is_within_a_window_until_it_passes() {
        let last = LastSeen::default();
        assert!(!last.within(std::time::Duration::from_secs(3600)));
        tokio::time::advance(std::time::Duration::from_secs(100)).await;
        last.mark();
        assert!(last.within(std::time::Duration::ZERO));
        tokio::time::advance(std::time::Duration::from_secs(10)).await;
        assert!(last.within(std::time::Duration::from_secs(10)));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        assert!(!last.within(std::time::Duration::from_secs(10)));
        last.mark();
        assert!(last.within(std::time::Duration::from_secs(1)));
    }

    /// The hard limit's charge counts every buffered trace besides its spans: a flood of
    /// 1-span traces is charged what it costs, not its encoded bytes alone.
    #[test]
    fn held_bytes_charge_spans_and_traces() {
        let s = GatewayStats::default();
        s.buffered_bytes.add(10_000);
        s.live_spans.add(20);
        s.live_traces.add(20);
        s.pending_export_bytes.add(500);
        s.pending_export_spans.add(2);
        s.shard_queue_bytes.add(300);
        s.parked_copies_bytes.add(40);
        assert_eq!(
            s.held_bytes(),
            10_840 + 22 * SPAN_OVERHEAD_BYTES + 20 * TRACE_OVERHEAD_BYTES
        );
        assert!(s
            .render()
            .contains(&format!("tailgate_gateway_held_bytes {}", s.held_bytes())));
    }
}
