//! A shard: the task that owns a share of the gateway's traces. It receives spans from
//! [`super::TraceBuffer`], keeps each trace with its summary, decides it when its deadline
//! comes (or earlier, past `num_traces`), remembers the decision, and sends kept traces to
//! the exporters, parking them (still charged to the buffer) while an exporter's queue is
//! full. Nothing here is shared with other shards, so nothing is locked.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tailgate_core::retry::Tally;

use tailgate_core::telemetry::Counter;
use tailgate_core::wire::span_fields::{AdjustedCount, AdjustedCountWriter, AttributeRewrite};

use crate::attributes::{ActionSet, AttributeActions};
use smallvec::SmallVec;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hash::TraceMap;
use super::hash::{prefetch, IdHash};
use super::spared::Spared;
pub use super::table::TraceEntry;
use super::table::{first_capacity, make_room, SpanList, TraceTable};
use super::trace::IncomingSpan;
use super::trace::{BufferedSpan, RequestBytes, SpanRef, TraceSummary, TraceView};
use crate::decide::{Cached, DecisionCache};
use crate::export::{ExportHandle, NoRoom, Outgoing, Room, Ticket};
use crate::metrics::{DecisionTally, GatewayStats};
use crate::peers::{Owner, PeerView, Peers};
use crate::timer::{DeadlineQueue, Moment};

/// How often a due trace that another gateway owns (see [`Shard::defers`]) is looked at
/// again while it waits for a hand-off pass to take it.
const DEFER_RECHECK: Duration = Duration::from_millis(250);

/// How long a due trace may wait here for a hand-off pass to move it to its owner; past
/// it, the trace is decided here on the spans it has. A ring change starts a pass at once
/// and a wanted pass comes within a second (see `redistribution` in the crate root), so
/// this is reached only when the owner keeps refusing or the gateways' rings disagree
/// for longer.
pub const MAX_DEFER: Duration = Duration::from_secs(3);

/// What a shard gives up when the ring changes: traces and decisions for other gateways.
#[derive(Default)]
pub struct HandedOff {
    /// Traces, each with its new owner's ring index.
    pub traces: Vec<HandedTrace>,
    /// Decisions: `(owner's ring index, trace id, decision)`.
    pub decisions: Vec<(usize, [u8; 16], Cached)>,
}

/// One trace on its way to its new owner.
pub struct HandedTrace {
    /// The new owner's index on the ring.
    pub owner: usize,
    /// Trace id.
    pub id: [u8; 16],
    /// The trace as it was buffered.
    pub entry: TraceEntry,
}

/// The plan's rules one inserted batch is buffered under.
struct InsertRules {
    now: Instant,
    /// When a handed-over batch was first seen by its previous owner.
    first_seen: Option<Instant>,
    /// The first sighting of the batch's new traces: `first_seen`, else `now`.
    seen: Moment,
    wait: std::time::Duration,
    root_wait: Option<std::time::Duration>,
    max_trace_bytes: u64,
    span_ingest: bool,
}

/// What buffering one batch gathers for `settle_insert` and the counters.
#[derive(Default)]
struct Inserted {
    /// span-ingest: per trace and resource of this batch, in order, the summary of its
    /// spans there and where they are in the trace's span list.
    batch: Vec<BatchPart>,
    /// The index in `batch` of each trace's last part.
    batch_index: TraceMap<usize>,
    /// Traces over maximum_trace_size_bytes.
    oversize: Vec<[u8; 16]>,
    /// Traces that reached the span limit.
    full: Vec<[u8; 16]>,
    /// Late spans of kept traces, with their traces' sampling probability.
    late_kept: Vec<(BufferedSpan, f64)>,
    late_dropped: u64,
    new_traces: u64,
    added_bytes: u64,
    added_spans: u64,
}

/// span-ingest: the spans of one trace under one resource of a request, decided together
/// as the Collector decides each ResourceSpans of a request on its own.
struct BatchPart {
    id: [u8; 16],
    /// The resource's index in the request.
    resource: u32,
    /// The summary of the part's spans.
    summary: TraceSummary,
    /// Where they are in the trace's span list.
    spans: std::ops::Range<usize>,
}

impl Inserted {
    /// span-ingest: adds `s`, at index `at` of its trace's span list and under the
    /// request's resource `resource`, to its trace's part of this batch: a new part when
    /// the trace has none yet or its last one is under another resource; `first` is the
    /// summary when the trace is new to the shard too (it holds `s` already).
    #[inline]
    fn add_to_batch(
        &mut self,
        s: &IncomingSpan,
        at: usize,
        resource: u32,
        first: Option<&TraceSummary>,
    ) {
        let batch = &mut self.batch;
        let last = self.batch_index.get(&s.trace_id).copied();
        let i = match last {
            Some(i) if batch[i].resource == resource => i,
            _ => {
                if let Some(i) = last {
                    batch[i].spans.end = at;
                }
                batch.push(BatchPart {
                    id: s.trace_id,
                    resource,
                    summary: first.cloned().unwrap_or_default(),
                    spans: at..usize::MAX,
                });
                self.batch_index.insert(s.trace_id, batch.len() - 1);
                if first.is_some() {
                    return;
                }
                batch.len() - 1
            }
        };
        let part = &mut batch[i].summary;
        part.add_span(s.start, s.end, s.status_code, s.is_root);
        part.add_attrs(&s.attrs);
    }
}

/// Kept spans re-encoded to say with what probability they were kept (`ot=th:…` and the
/// adjusted-count attribute), all of one trace in one new buffer. Only kept spans pay for
/// this; with both outputs turned off the spans go out untouched.
/// `resource` rewrites the attributes of their resources.
fn adjusted(
    spans: &[SpanRef<'_>],
    p: f64,
    how: &AdjustedCount<'_>,
    resource: Option<&dyn AttributeRewrite>,
    out: &mut Vec<BufferedSpan>,
) {
    if how.is_noop() && resource.is_none() {
        out.extend(spans.iter().map(SpanRef::to_buffered));
        return;
    }
    let mut writer = AdjustedCountWriter::new(p, how);
    BufferedSpan::rewrite_all(spans, |span, buf| writer.write(span, buf), resource, out);
}

/// Where the piece of a kept trace starting at span `start` ends: at least one span, and
/// no more than [`EXPORT_BATCH_BYTES`] of them as encoded (see [`Shard::keep`]).
fn piece_end(spans: &[SpanRef<'_>], start: usize) -> usize {
    let mut bytes = 0u64;
    let mut end = start;
    while end < spans.len() {
        bytes += spans[end].span().len() as u64;
        if end > start && bytes > EXPORT_BATCH_BYTES {
            break;
        }
        end += 1;
    }
    end
}

/// A trace decided and kept, its spans not yet re-encoded (see [`Shard::keep_group`]).
struct KeptTrace {
    spans: SpanList,
    probability: f64,
    plan: Arc<crate::policy::plan::PolicyPlan>,
}

/// What deciding a trace came to.
enum Decided {
    /// It was not buffered (decided already).
    Absent,
    /// Dropped.
    Dropped,
    /// Kept: its spans are to be kept.
    Kept(KeptTrace),
}

/// Due traces whose memory is read ahead together (see [`Shard::decide_due`]).
const WARM_BATCH: usize = 16;

/// How many spans ahead the insert loop starts loading a span's index bucket and cache
/// tags: far enough for a miss to arrive, near enough that the lines are still in L1/L2.
const PREFETCH_AHEAD: usize = 8;

/// Kept spans gathered from one batch of decisions before they go to the exporters
/// together: past this many bytes they go at once.
const EXPORT_BATCH_BYTES: u64 = 128 << 10;

/// A message to a shard.
pub enum ShardMsg {
    /// Spans to buffer; `first_seen` is set for traces another gateway handed over.
    Spans {
        /// The request they are in (one count for the batch).
        req: Arc<RequestBytes>,
        /// The spans.
        spans: Vec<IncomingSpan>,
        /// When their traces were first seen, if earlier than now.
        first_seen: Option<Instant>,
        /// What they were counted in `shard_queue_bytes` (see [`queued_bytes`]); the
        /// shard takes it off once they are buffered.
        bytes: u64,
    },
    /// Take out the traces and decisions `view` gives to other gateways.
    Handoff {
        /// The ring in force.
        view: Arc<PeerView>,
        /// Where to send them.
        reply: tokio::sync::oneshot::Sender<HandedOff>,
    },
    /// Decisions another gateway made for traces this one now owns.
    Decisions(Vec<([u8; 16], Cached)>),
    /// A request was refused for memory: decide traces early (as past a limit) until this
    /// shard holds `bytes` less (its share of what the request needed), so that the
    /// sender's retry fits. Without it a buffer just under its soft limit, with less room
    /// than a request may cost, refuses every request until traces come due.
    MakeRoom {
        /// Bytes to free.
        bytes: u64,
    },
}

pub use crate::metrics::SPAN_OVERHEAD_BYTES;

/// Traces taken out of a shard, and spans dropped by its decisions, not yet taken off the
/// shared gauges: a decision then writes nothing shared (each shared write is a cache line
/// other cores' shards write too). Until they are, the gauges count them as still buffered,
/// which errs on the side of refusing.
#[derive(Default)]
struct Released {
    traces: u64,
    bytes: u64,
    dropped_spans: u64,
}

/// Traces a shard takes out before it takes them off the shared gauges, however long its
/// batch of decisions.
const RELEASED_FLUSH: u64 = 64;

impl Released {
    /// Takes what was released off the shared gauges: dropped spans are counted dropped
    /// before they stop being live, so that a reader of both never misses them.
    fn flush(&mut self, stats: &GatewayStats) {
        let Released {
            traces,
            bytes,
            dropped_spans,
        } = std::mem::take(self);
        if traces > 0 {
            stats.live_traces.sub(traces);
            stats.buffered_bytes.sub(bytes);
        }
        if dropped_spans > 0 {
            stats.dropped_spans.add(dropped_spans);
            stats.live_spans.sub(dropped_spans);
        }
    }
}

/// A shard's limits.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    /// How many shards share the `num_traces` of the plan in force: this one buffers its
    /// share (rounded up) before traces are decided early, as a reload sets it.
    pub shards: usize,
    /// Decision cache entries.
    pub cache_size: usize,
    /// Span bytes buffered before traces are decided early.
    pub early_decision_bytes: u64,
    /// Spans after which a trace is decided at once.
    pub max_spans_per_trace: u32,
    /// The gateway's hard limit (`buffer.max_buffered_bytes`): past it in
    /// [`GatewayStats::held_bytes`], a shard waits for an exporter's queue instead of
    /// parking more kept spans for it.
    pub max_held_bytes: u64,
}

/// The queues early decisions take traces from, in turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EarlyOrder {
    /// [`Shard::deadlines`]: traces with their root span; those without it go to
    /// [`Shard::spared`].
    Rooted,
    /// [`Shard::spared`].
    Spared,
    /// Traces waiting for a hand-off pass: deciding one here splits it, and none waits
    /// longer than MAX_DEFER.
    Deferred,
}

/// The state of one shard.
pub struct Shard {
    rx: mpsc::Receiver<ShardMsg>,
    traces: TraceTable,
    deadlines: DeadlineQueue,
    /// `root arrival + decision_wait_after_root_received`: with one grace for every trace,
    /// these come due in order too, so a second FIFO holds them; deciding a trace that is
    /// already decided is a no-op.
    root_deadlines: DeadlineQueue,
    /// Traces early decisions passed over because their root span had not arrived, each
    /// until its own deadline (no longer in `deadlines`). A root ends, and so is sent,
    /// after its children: a trace with its root has most likely arrived whole, one
    /// without it is still waiting for spans. Early decisions take traces with their root
    /// first, then these: those of a resource holding many first (see [`Spared`]). By age alone, one sender of many one-span traces had every other
    /// sender's waiting traces decided on their children, and one sender of orphan spans
    /// still did (docs/security.md). Only traces an early decision looked at come here, so a shard
    /// under its limits pays nothing for it. A trace stays here when its root comes
    /// later (it is then decided by its deadline, or its root's, like any other).
    /// The root is a heuristic across services: each SDK sends on its own batch delay,
    /// so spans of other services may still come after a root; they follow its decision.
    spared: Spared,
    /// Deadlines of traces another gateway handed over, which were first seen before they
    /// arrived here and so do not come due in arrival order.
    handed_deadlines: BinaryHeap<Reverse<(Instant, [u8; 16])>>,
    /// Due traces that another gateway owns, waiting for a hand-off pass to take them:
    /// `(when to look again, when they were first deferred, id)`, in order (one recheck
    /// interval for all). No longer in `deadlines`.
    deferred: VecDeque<(Instant, Instant, [u8; 16])>,
    /// The ids in `deferred`: a trace due by two deadlines (its root's or its hand-over's,
    /// then its own) waits there once.
    deferred_ids: TraceMap<()>,
    /// The cluster, to tell whether a due trace belongs to another gateway.
    peers: Option<Arc<Peers>>,
    cache: DecisionCache,
    /// The ids' hashes of the batch being inserted (kept for the next batch's room).
    hashes: Vec<IdHash>,
    plan: crate::reload::SharedPlan,
    /// See [`ShardLimits::shards`].
    shards: usize,
    /// This shard's share of the soft byte limit.
    early_decision_bytes: u64,
    /// What [`ShardMsg::MakeRoom`] decides down to (`u64::MAX` between requests).
    room_goal: u64,
    max_spans_per_trace: u32,
    /// Span bytes this shard buffers.
    bytes: u64,
    /// Spans this shard buffers.
    spans: u64,
    export: Vec<ExportHandle>,
    stats: Arc<GatewayStats>,
    /// Verdicts counted since the last flush, and the plan they belong to.
    verdicts: (
        Option<Arc<crate::policy::plan::PolicyPlan>>,
        crate::policy::plan::LocalVerdicts,
    ),
    /// Decisions counted since the last flush.
    tally: DecisionTally,
    /// Traces taken out and spans dropped since the last flush.
    released: Released,
    /// `attributes:` actions on kept spans, if any.
    attribute_actions: Option<Arc<AttributeActions>>,
    /// Kept spans not yet handed to the exporters (see [`Self::keep`]), and their bytes.
    outgoing: Vec<BufferedSpan>,
    outgoing_bytes: u64,
    /// With more than one exporter, a ticket per kept trace in `outgoing`, in span order
    /// (exporters may fail different traces of one batch; a ticket counts its spans as
    /// failed when any exporter failed any of them). With one, the batch takes one ticket.
    outgoing_tickets: Vec<(Arc<Ticket>, u64)>,
    /// Per exporter, kept spans its queue had no room for, oldest first (see
    /// [`Self::send`]). Each exporter's batches wait apart: one backend down does not hold
    /// back another's.
    parked: Vec<VecDeque<Outgoing>>,
    /// Per exporter, the wait for room for its oldest parked batch, kept from one turn of
    /// the loop to the next until it ends: a wait dropped and begun again would give back
    /// the budget it had gathered and go to the back of the queue, so a batch needing much
    /// of it could wait for ever behind smaller ones.
    room_waits: Vec<Option<RoomWait>>,
    /// See [`ShardLimits::max_held_bytes`].
    max_held_bytes: u64,
}

/// What `spans` are charged while they wait in a shard's channel: their charges (encoded
/// bytes and their requests' share), the handles carrying them, the attribute values read,
/// and a trace each (the whole batch may start traces before the shard decides any early).
pub fn queued_bytes(req: &RequestBytes, spans: &[IncomingSpan]) -> u64 {
    spans
        .iter()
        .map(|s| {
            (s.held_len(req)
                + std::mem::size_of::<IncomingSpan>()
                + s.attrs.capacity() * std::mem::size_of::<super::trace::TraceAttr>())
                as u64
                + crate::metrics::TRACE_OVERHEAD_BYTES
        })
        .sum()
}

/// How many of `next` (a batch's spans after one of trace `id`) continue that trace: a
/// request usually holds a trace's spans together.
fn same_trace_ahead(next: &[IncomingSpan], id: &[u8; 16]) -> usize {
    next.iter().take_while(|n| n.trace_id == *id).count()
}

// === impl Shard ===

impl Shard {
    /// A shard reading `rx`, deciding with `plan`, within `limits`.
    pub fn new(
        rx: mpsc::Receiver<ShardMsg>,
        plan: crate::reload::SharedPlan,
        limits: ShardLimits,
        export: Vec<ExportHandle>,
        stats: Arc<GatewayStats>,
    ) -> Self {
        let ShardLimits {
            shards,
            cache_size,
            early_decision_bytes,
            max_spans_per_trace,
            max_held_bytes,
        } = limits;
        let traces = TraceTable::default();
        Shard {
            rx,
            // One seed for both: an id hashed once is looked up in each.
            cache: DecisionCache::with_hasher(cache_size, traces.hasher()),
            traces,
            deadlines: DeadlineQueue::default(),
            root_deadlines: DeadlineQueue::default(),
            spared: Spared::default(),
            handed_deadlines: BinaryHeap::new(),
            deferred: VecDeque::new(),
            deferred_ids: TraceMap::default(),
            peers: None,
            plan,
            shards: shards.max(1),
            early_decision_bytes: early_decision_bytes.max(1),
            room_goal: u64::MAX,
            max_spans_per_trace: max_spans_per_trace.max(1),
            bytes: 0,
            spans: 0,
            parked: export.iter().map(|_| VecDeque::new()).collect(),
            room_waits: export.iter().map(|_| None).collect(),
            max_held_bytes,
            export,
            stats,
            verdicts: (None, Default::default()),
            tally: DecisionTally::default(),
            released: Released::default(),
            attribute_actions: None,
            outgoing: Vec::new(),
            outgoing_bytes: 0,
            outgoing_tickets: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// Applies `actions` to the attributes of every span this shard keeps.
    pub fn with_attribute_actions(mut self, actions: Option<Arc<AttributeActions>>) -> Self {
        self.attribute_actions = actions;
        self
    }

    /// Leaves a due trace that the ring gives to another gateway for a hand-off pass to
    /// move (at most [`MAX_DEFER`]).
    pub fn with_peers(mut self, peers: Arc<Peers>) -> Self {
        self.peers = Some(peers);
        self
    }

    /// Kept spans as they leave, appended to `out`: with their adjusted count, and their
    /// attributes rewritten by the `attributes:` actions.
    fn kept(
        &self,
        spans: &[SpanRef<'_>],
        p: f64,
        plan: &crate::policy::plan::PolicyPlan,
        out: &mut Vec<BufferedSpan>,
    ) {
        let actions = self.attribute_actions.as_deref();
        let set = |pick: fn(&AttributeActions) -> Option<&ActionSet>| {
            actions.and_then(pick).map(|a| a as &dyn AttributeRewrite)
        };
        let how = AdjustedCount {
            rewrite: set(|a| a.span.as_ref()),
            events: set(|a| a.events.as_ref()),
            ..plan.adjusted_count()
        };
        adjusted(spans, p, &how, set(|a| a.resource.as_ref()), out);
    }

    /// Whether kept spans are re-encoded under `plan` (see [`Self::kept`]), or go out as
    /// they came.
    fn rewrites(&self, plan: &crate::policy::plan::PolicyPlan) -> bool {
        self.attribute_actions.is_some() || !plan.adjusted_count().is_noop()
    }

    /// Keeps a trace's spans (see [`Self::kept`]): they join the batch for the exporters,
    /// which goes once it is [`EXPORT_BATCH_BYTES`] or the shard's work at hand is done.
    ///
    /// A trace re-encoded on the way (attribute actions, adjusted counts) is re-encoded and
    /// handed on in pieces of about [`EXPORT_BATCH_BYTES`], each charged as it is made and
    /// handed on (or parked, see [`Self::send`]) before the next is re-encoded; past the
    /// buffer's limit the shard waits for the exporters' queues: what waits is then a
    /// piece, not the whole trace grown. (A `hash` action on many small values makes spans
    /// five times larger; a large trace grown whole took the gateway past its memory limit
    /// by that much.) Small traces are one piece.
    async fn keep(&mut self, spans: SpanList, p: f64, plan: &crate::policy::plan::PolicyPlan) {
        // Kept traces are mostly small: their spans' handles stay on the stack.
        let refs: SmallVec<[SpanRef<'_>; 16]> = spans.iter().collect();
        if !self.rewrites(plan) {
            // Copies parked for several exporters cost their handles beside the spans.
            if self.export.len() > 1 {
                self.room_to_grow().await;
            }
            return self.keep_piece(&refs, p, plan).await;
        }
        let mut start = 0;
        while start < refs.len() {
            self.room_to_grow().await;
            let end = piece_end(&refs, start);
            self.keep_piece(&refs[start..end], p, plan).await;
            start = end;
        }
    }

    /// Before kept spans that cost more once kept (a piece re-encoded, or copies for
    /// several exporters): well over the hard limit with spans parked, what waits for the
    /// exporters goes (or is parked) and the shard waits for room first. (Nothing parked
    /// here: the batch gathered goes at its size or at the end of the round, and parks
    /// then; the shared counters are read only while something is parked.)
    async fn room_to_grow(&mut self) {
        if self.parked.iter().any(|q| !q.is_empty()) && self.over_limit() {
            self.send().await;
            self.wait_under_limit().await;
        }
    }

    /// Keeps some of a trace's spans (see [`Self::keep`]).
    async fn keep_piece(
        &mut self,
        spans: &[SpanRef<'_>],
        p: f64,
        plan: &crate::policy::plan::PolicyPlan,
    ) {
        let mut out = std::mem::take(&mut self.outgoing);
        let from = out.len();
        self.kept(spans, p, plan, &mut out);
        let n = (out.len() - from) as u64;
        let bytes: u64 = out[from..].iter().map(|s| s.held_len() as u64).sum();
        self.outgoing = out;
        self.outgoing_bytes += bytes;
        // The spans move from "live" to "pending export" now, added there before they
        // leave "live" so that a reader of live then pending never sees them in neither.
        self.stats.pending_export_spans.add(n);
        self.stats.pending_export_bytes.add(bytes);
        self.stats.live_spans.sub(n);
        if self.export.len() > 1 && n > 0 {
            self.outgoing_tickets
                .push((Ticket::new(n, bytes, self.export.len()), n));
        }
        if self.outgoing_bytes >= EXPORT_BATCH_BYTES {
            self.send().await;
        }
    }

    /// Adds the verdicts, decisions and releases counted locally to the shared counters
    /// (once per batch).
    fn flush_counts(&mut self) {
        if let (Some(plan), local) = &mut self.verdicts {
            plan.flush(local);
        }
        let policies = self.verdicts.0.as_deref().map_or(&[][..], |p| p.names());
        self.stats.add_decisions(&mut self.tally, policies);
        self.released.flush(&self.stats);
    }

    /// Runs until `drain` is cancelled, then takes what is queued, decides every buffered
    /// trace and returns.
    pub async fn run(mut self, drain: CancellationToken) {
        loop {
            self.decide_due(Instant::now()).await;
            self.arm_room_waits();
            let next = [
                self.deadlines.next_due(),
                self.root_deadlines.next_due(),
                self.spared.next_due(),
                self.handed_deadlines.peek().map(|Reverse((t, _))| *t),
                self.deferred.front().map(|d| d.0),
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                () = crate::timer::sleep_until_some(next) => {}
                (i, room) = any_room(&mut self.room_waits) => self.unpark(i, room),
                () = drain.cancelled() => break,
            }
        }
        // Closed first: a request still arriving (the gateway no longer waits for open
        // requests once its drain has begun) is then refused as "shutting down" rather
        // than acknowledged into a channel nobody reads. What was already sent, or has a
        // reserved slot, is still taken.
        self.rx.close();
        while let Some(msg) = self.rx.recv().await {
            self.handle(msg).await;
        }
        let drop_pending = self.plan.load().drop_pending_traces_on_shutdown;
        // No pass takes anything now: traces waiting for one are decided here too, as are
        // those early decisions passed over.
        while let Some(id) = self.spared.pop_front() {
            self.deadlines.push(id, Instant::now(), Duration::ZERO);
        }
        while let Some(id) = self.pop_deferred() {
            self.deadlines.push(id, Instant::now(), Duration::ZERO);
        }
        while let Some(id) = self.deadlines.pop_front() {
            if drop_pending {
                if self.drop_unevaluated(id) {
                    self.stats.dropped_traces_shutdown.add(1);
                }
            } else {
                self.decide(id, Instant::now()).await;
            }
        }
        self.flush_counts();
        self.send().await;
        // Whatever is parked goes now, each exporter's apart (one down does not hold back
        // another), waiting as long as it must: a drain's send counts as a shard waiting,
        // so an exporter whose backend is down gives requests up past its retry bound,
        // which makes room; at the drain's deadline the gateway stops waiting and counts
        // what is left as lost.
        self.room_waits.iter_mut().for_each(|w| *w = None);
        let parked = std::mem::take(&mut self.parked);
        let exporters = self.export.len();
        let stats = &self.stats;
        let sends = self
            .export
            .iter()
            .zip(parked)
            .map(|(exporter, queue)| async move {
                let mut stopped = Vec::new();
                for out in queue {
                    // Parked until it goes: the gauges show the backlog through the drain.
                    let (bytes, copy) = (out.bytes, copy_charge(exporters, &out));
                    let sent = exporter.send(out).await;
                    exporter.unpark(bytes);
                    stats.parked_copies_bytes.sub(copy);
                    if let Err(out) = sent {
                        stopped.push(out);
                    }
                }
                stopped
            });
        for out in futures_util::future::join_all(sends).await.iter().flatten() {
            self.stopped(out);
        }
    }

    /// Drops a buffered trace without evaluating the policies, as the Collector does with
    /// a trace over `maximum_trace_size_bytes` or, with `drop_pending_traces_on_shutdown`,
    /// one still pending at shutdown. Its late spans are dropped too. Returns whether the
    /// trace was here.
    fn drop_unevaluated(&mut self, id: [u8; 16]) -> bool {
        let h = self.traces.hash_of(&id);
        let Some(entry) = self.take_hashed(h, &id) else {
            return false;
        };
        let n = entry.spans.len() as u64;
        self.cache.insert_hashed(h, id, Cached::Dropped);
        self.tally.unevaluated();
        self.released.dropped_spans += n;
        true
    }

    async fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Spans {
                req,
                spans,
                first_seen,
                bytes,
            } => self.insert(&req, spans, first_seen, bytes).await,
            ShardMsg::Handoff { view, reply } => {
                let handed = self.hand_off(&view);
                if let Err(handed) = reply.send(handed) {
                    // Nobody to take them: they stay here.
                    self.take_back(handed);
                }
            }
            ShardMsg::Decisions(list) => self.take_decisions(list).await,
            ShardMsg::MakeRoom { bytes } => {
                self.room_goal = self.held().saturating_sub(bytes);
                let decided = self
                    .decide_early_while(
                        Instant::now(),
                        |shard| shard.held() > shard.room_goal,
                        |stats| &stats.early_decisions_memory,
                    )
                    .await;
                self.said_early_for_memory(decided);
                self.room_goal = u64::MAX;
            }
        }
        self.flush_counts();
        self.send().await;
    }

    /// Takes out the traces (and copies the decisions) that `view` gives to other
    /// gateways. Their spans move from "live" to "handoff pending".
    fn hand_off(&mut self, view: &PeerView) -> HandedOff {
        let mut out = HandedOff::default();
        let ids: Vec<([u8; 16], usize)> = self
            .traces
            .keys()
            .filter_map(|id| match view.owner(id) {
                Owner::Peer(p) => Some((*id, p)),
                Owner::Local => None,
            })
            .collect();
        for (id, owner) in ids {
            if let Some(entry) = self.take(&id) {
                let n = entry.spans.len() as u64;
                self.stats.peers.handoff_pending_spans.add(n);
                self.stats.live_spans.sub(n);
                out.traces.push(HandedTrace { owner, id, entry });
            }
        }
        self.released.flush(&self.stats);
        for (id, cached) in self.cache.iter() {
            if let Owner::Peer(p) = view.owner(id) {
                out.decisions.push((p, *id, cached));
            }
        }
        out
    }

    /// Puts back traces a handoff could not take (only when its task went away).
    fn take_back(&mut self, handed: HandedOff) {
        let now = Instant::now();
        let wait = self.plan.load().decision_wait;
        for t in handed.traces {
            let n = t.entry.spans.len() as u64;
            self.stats.live_spans.add(n);
            self.stats.peers.handoff_pending_spans.sub(n);
            self.stats.live_traces.add(1);
            self.stats.buffered_bytes.add(t.entry.held);
            self.bytes += t.entry.held;
            self.spans += n;
            self.traces.insert(t.id, t.entry);
            self.deadlines.push(t.id, now, wait);
        }
    }

    /// Decisions another gateway made: remembered, and applied at once to spans of those
    /// traces that are already here (they are late spans of a decided trace).
    async fn take_decisions(&mut self, list: Vec<([u8; 16], Cached)>) {
        for (id, cached) in list {
            if let Some(entry) = self.take(&id) {
                let n = entry.spans.len() as u64;
                self.cache.insert(id, cached);
                match cached {
                    Cached::Kept(p) => {
                        self.stats.late_sampled_spans.add(n);
                        let plan = self.plan.load_full();
                        self.keep(entry.spans, p, &plan).await;
                    }
                    Cached::Dropped => {
                        self.stats.late_dropped_spans.add(n);
                        self.stats.dropped_spans.add(n);
                        self.stats.live_spans.sub(n);
                    }
                }
            } else if self.cache.get(&id).is_none() {
                self.cache.insert(id, cached);
            }
        }
    }

    /// What this shard's buffered traces are charged (see
    /// [`crate::metrics::GatewayStats::held_bytes`]).
    fn held(&self) -> u64 {
        crate::metrics::charge(self.bytes, self.spans, self.traces.len() as u64)
    }

    /// Removes a buffered trace and its share of the counters (its spans stay "live" until
    /// the caller says where they went).
    fn take(&mut self, id: &[u8; 16]) -> Option<TraceEntry> {
        self.take_hashed(self.traces.hash_of(id), id)
    }

    /// [`Self::take`] with `id`'s hash already known.
    fn take_hashed(&mut self, h: IdHash, id: &[u8; 16]) -> Option<TraceEntry> {
        let entry = self.traces.remove_hashed(h, id)?;
        self.released.traces += 1;
        self.released.bytes += entry.held;
        self.bytes -= entry.held;
        self.spans -= entry.spans.len() as u64;
        if self.released.traces >= RELEASED_FLUSH {
            self.released.flush(&self.stats);
        }
        Some(entry)
    }

    /// Buffers one batch of spans: each joins its live trace, goes out late (its trace was
    /// kept), is dropped late (its trace was dropped), or starts a new trace; then the
    /// batch's consequences (`settle_insert`).
    /// `queued`: what the spans were charged while queued, taken off once they are
    /// charged as buffered (before any wait for the exporters).
    async fn insert(
        &mut self,
        req: &Arc<RequestBytes>,
        spans: Vec<IncomingSpan>,
        first_seen: Option<Instant>,
        queued: u64,
    ) {
        let rules = self.insert_rules(first_seen);
        let mut acc = Inserted::default();
        // Each id hashed once, for the table and the cache alike (a span of the same trace
        // as the one before it takes that hash).
        let mut hashes = std::mem::take(&mut self.hashes);
        hashes.clear();
        let mut before: Option<(&[u8; 16], IdHash)> = None;
        for s in &spans {
            let h = match before {
                Some((id, h)) if *id == s.trace_id => h,
                _ => self.traces.hash_of(&s.trace_id),
            };
            hashes.push(h);
            before = Some((&s.trace_id, h));
        }
        for (i, &h) in hashes.iter().enumerate().take(PREFETCH_AHEAD) {
            self.prefetch(h, i.checked_sub(1).map(|b| hashes[b]));
        }
        let mut spans = spans.into_iter();
        let mut i = 0;
        while let Some(s) = spans.next() {
            let h = hashes[i];
            if let Some(&ahead) = hashes.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead, Some(hashes[i + PREFETCH_AHEAD - 1]));
            }
            i += 1;
            let Some(s) = self.join_live_trace(req, s, h, spans.as_slice(), &rules, &mut acc)
            else {
                continue;
            };
            match self.cache.get_hashed(h, &s.trace_id) {
                Some(Cached::Kept(p)) => acc.late_kept.push((s.buffered(req), p)),
                Some(Cached::Dropped) => acc.late_dropped += 1,
                None => {
                    // Room for the rest of this trace's run in the batch (a request usually
                    // holds whole traces).
                    let run = same_trace_ahead(spans.as_slice(), &s.trace_id);
                    self.start_trace(req, s, h, run, &rules, &mut acc);
                }
            }
        }
        self.hashes = hashes;
        self.stats.live_traces.add(acc.new_traces);
        self.stats.buffered_bytes.add(acc.added_bytes);
        self.stats.shard_queue_bytes.sub(queued);
        self.bytes += acc.added_bytes;
        self.spans += acc.added_spans;
        if acc.late_dropped > 0 {
            self.stats.late_dropped_spans.add(acc.late_dropped);
            self.stats.dropped_spans.add(acc.late_dropped);
            self.stats.live_spans.sub(acc.late_dropped);
        }
        self.settle_insert(acc.late_kept, acc.batch, acc.oversize, acc.full, rules.now)
            .await;
        self.flush_counts();
    }

    /// Starts loading what buffering a span of id hash `h` will look up first (its
    /// trace's index bucket, its decision-cache tags), unless the span before it (of hash
    /// `before`) has brought them in already: the same hash is nearly always the same
    /// trace, and a prefetch skipped only costs time.
    #[inline]
    fn prefetch(&self, h: IdHash, before: Option<IdHash>) {
        if before != Some(h) {
            self.traces.prefetch_hashed(h);
            self.cache.prefetch_hashed(h);
        }
    }

    /// The plan's rules in force when a batch arrived: one load per batch.
    fn insert_rules(&self, first_seen: Option<Instant>) -> InsertRules {
        let plan = self.plan.load();
        let now = Instant::now();
        InsertRules {
            now,
            seen: Moment::of(first_seen.unwrap_or(now)),
            first_seen,
            wait: plan.decision_wait,
            root_wait: plan.decision_wait_after_root,
            max_trace_bytes: plan.maximum_trace_size_bytes.unwrap_or(u64::MAX),
            span_ingest: plan.span_ingest,
        }
    }

    /// Adds `s` (of id hash `h`) to its buffered trace, or gives it back when its trace is
    /// not buffered. `next` are the batch's spans after it.
    #[inline]
    fn join_live_trace(
        &mut self,
        req: &Arc<RequestBytes>,
        s: IncomingSpan,
        h: IdHash,
        next: &[IncomingSpan],
        rules: &InsertRules,
        acc: &mut Inserted,
    ) -> Option<IncomingSpan> {
        let Some(entry) = self.traces.get_mut_hashed(h, &s.trace_id) else {
            return Some(s);
        };
        // A handed-over part of a trace also here: the earlier first sighting wins.
        if let Some(fs) = rules.first_seen.filter(|_| rules.seen < entry.first_seen) {
            entry.first_seen = rules.seen;
            self.handed_deadlines
                .push(Reverse((fs + rules.wait, s.trace_id)));
        }
        // A root-based deadline is scheduled for the trace's first root span.
        let first_root = s.is_root && !entry.summary.has_root;
        entry
            .summary
            .add_span(s.start, s.end, s.status_code, s.is_root);
        let recorded = entry.summary.add_attrs(&s.attrs);
        if rules.span_ingest {
            let resource = req.resource_at(s.range.start);
            acc.add_to_batch(&s, entry.spans.len(), resource, None);
        }
        entry.summary.bytes += u64::from(s.range.len);
        let held = s.held_len(req) as u64 + recorded;
        entry.held += held;
        acc.added_bytes += held;
        acc.added_spans += 1;
        make_room(&mut entry.spans, || 1 + same_trace_ahead(next, &s.trace_id));
        entry.spans.push_in(req, s.range);
        if entry.summary.bytes > rules.max_trace_bytes {
            acc.oversize.push(s.trace_id);
        } else if entry.summary.span_count == self.max_spans_per_trace {
            acc.full.push(s.trace_id);
        }
        if let (true, Some(grace)) = (first_root, rules.root_wait) {
            self.root_deadlines.push(s.trace_id, rules.now, grace);
        }
        None
    }

    /// Buffers `s` (of id hash `h`) as the first span of a new trace, with room for the
    /// `run` spans of the same trace that follow it in the batch.
    #[inline]
    fn start_trace(
        &mut self,
        req: &Arc<RequestBytes>,
        s: IncomingSpan,
        h: IdHash,
        run: usize,
        rules: &InsertRules,
        acc: &mut Inserted,
    ) {
        let mut summary = TraceSummary::default();
        summary.add_span(s.start, s.end, s.status_code, s.is_root);
        let recorded = summary.add_attrs(&s.attrs);
        if rules.span_ingest {
            acc.add_to_batch(&s, 0, req.resource_at(s.range.start), Some(&summary));
        }
        summary.bytes = u64::from(s.range.len);
        if summary.bytes > rules.max_trace_bytes {
            acc.oversize.push(s.trace_id);
        }
        let held = s.held_len(req) as u64 + recorded;
        acc.added_bytes += held;
        acc.added_spans += 1;
        acc.new_traces += 1;
        if let (true, Some(grace)) = (s.is_root, rules.root_wait) {
            self.root_deadlines.push(s.trace_id, rules.now, grace);
        }
        if let Some(fs) = rules.first_seen {
            self.handed_deadlines
                .push(Reverse((fs + rules.wait, s.trace_id)));
        }
        let mut spans = SpanList::with_capacity(first_capacity(run + 1));
        spans.push_in(req, s.range);
        self.traces.insert_hashed(
            h,
            s.trace_id,
            TraceEntry {
                first_seen: rules.seen,
                spans,
                summary,
                held,
            },
        );
        self.deadlines.push(s.trace_id, rules.now, rules.wait);
    }

    /// What an inserted batch sets off: late spans of kept traces go out; span-ingest
    /// traces are decided on this batch; traces over a size, span, trace-count or byte
    /// limit are dropped or decided early (see [`Self::decide_early_while`]).
    async fn settle_insert(
        &mut self,
        late_kept: Vec<(BufferedSpan, f64)>,
        batch: Vec<BatchPart>,
        oversize: Vec<[u8; 16]>,
        full: Vec<[u8; 16]>,
        now: Instant,
    ) {
        if !late_kept.is_empty() {
            self.stats.late_sampled_spans.add(late_kept.len() as u64);
            let plan = self.plan.load_full();
            for (span, p) in late_kept {
                self.keep(SpanList::from_iter([span]), p, &plan).await;
            }
        }
        // span-ingest: each trace of the batch is decided on this batch's spans now, those
        // under each resource on their own (a part after one that decided finds its trace
        // gone, its spans decided with it); the undecided stay pending.
        for mut part in batch {
            self.decide_batch(part.id, &mut part.summary, part.spans, now)
                .await;
        }
        // As the Collector: a trace over maximum_trace_size_bytes is dropped unevaluated.
        for id in oversize {
            if self.drop_unevaluated(id) {
                self.stats.dropped_traces_oversize.add(1);
            }
        }
        // A trace at the span limit is decided now; its later spans follow the decision.
        for id in full {
            if self.decide(id, now).await {
                self.stats.early_decisions_span_limit.add(1);
            }
        }
        // Past the trace limit, decide traces early instead of dropping them.
        let num_traces = self.plan.load().num_traces;
        let max_traces = num_traces.div_ceil(self.shards).max(1);
        let decided = self
            .decide_early_while(
                now,
                |shard| shard.traces.len() > max_traces,
                |stats| &stats.early_decisions,
            )
            .await;
        // Said in the log: a Collector policy file's num_traces (50,000 by default) is
        // easily below what a busy gateway holds over decision_wait, and nothing else
        // told (a trial decided 92% of traces early without a line).
        if decided > 0 {
            if let Some(traces) = Tally::more(&self.stats.num_traces_logged, decided) {
                tracing::warn!(
                    traces,
                    num_traces,
                    "Deciding traces early: this gateway holds the policy file's num_traces, so traces are decided before decision_wait (those with their root span first, then those still waiting for it, those of a resource holding many first). Raise num_traces to the traces a gateway holds (its new traces per second × decision_wait, with room; tailgate-sim plan says how many): memory is bounded by buffer.max_buffered_bytes, not by it. Logged at most once a minute, traces decided early on this gateway since counted (tailgate_gateway_early_decisions_total{{reason=\"num_traces\"}})."
                );
            }
        }
        // Over this shard's share of the soft byte limit, likewise.
        let decided = self
            .decide_early_while(
                now,
                |shard| shard.held() > shard.early_decision_bytes,
                |stats| &stats.early_decisions_memory,
            )
            .await;
        self.said_early_for_memory(decided);
    }

    /// Says in the log, at most once a minute for the gateway, that `decided` traces were
    /// just decided early for memory: the counter alone went unseen in a trial of 7.3
    /// million such decisions in 30 s (a flood from one sender).
    fn said_early_for_memory(&self, decided: u64) {
        if decided == 0 {
            return;
        }
        if let Some(traces) = Tally::more(&self.stats.memory_early_logged, decided) {
            tracing::warn!(
                traces,
                early_decision_bytes = self.early_decision_bytes,
                "Deciding traces early for memory: a shard held its share of buffer.early_decision_bytes (early_decision_bytes here), or a request was refused over buffer.max_buffered_bytes and room is made for its retry, so traces are decided before decision_wait, those with their root span first, then those still waiting for it, those of a resource holding many first. A sender whose rate has grown fills the buffer this way (docs/security.md); if the traffic is expected, raise buffer.max_buffered_bytes or add gateways (tailgate-sim plan sizes them). Logged at most once a minute, traces decided early on this gateway since counted (tailgate_gateway_early_decisions_total{{reason=\"memory\"}})."
            );
        }
    }

    /// Starts loading the table and cache entries that deciding the ids of `group` (with
    /// their hashes) will touch, so that their cache misses overlap instead of coming one
    /// after another.
    fn warm(&self, group: &[([u8; 16], IdHash)]) {
        let hashes = group.iter().map(|g| g.1);
        self.traces.warm(hashes.clone());
        self.cache.warm(hashes);
    }

    /// Decides traces early, counted in `counter`, while `over` says the shard is over a
    /// limit, and returns how many: first those whose root span has arrived, oldest first,
    /// then the rest, those of a resource holding many first
    /// ([`Self::spared`]), then those waiting for a hand-off
    /// pass. The next [`WARM_BATCH`] traces' memory is read ahead, as for due traces (a
    /// gateway at its limits decides every trace here).
    async fn decide_early_while(
        &mut self,
        now: Instant,
        over: impl Fn(&Self) -> bool,
        counter: fn(&GatewayStats) -> &Counter,
    ) -> u64 {
        let mut decided = 0;
        for order in [EarlyOrder::Rooted, EarlyOrder::Spared, EarlyOrder::Deferred] {
            decided += self.decide_early_in(order, now, &over, counter).await;
        }
        decided
    }

    /// [`Self::decide_early_while`] for the traces of one queue.
    async fn decide_early_in(
        &mut self,
        order: EarlyOrder,
        now: Instant,
        over: &impl Fn(&Self) -> bool,
        counter: fn(&GatewayStats) -> &Counter,
    ) -> u64 {
        if !over(self) {
            return 0;
        }
        let mut decided = 0;
        // The group read ahead, with their hashes, and how many of it are decided.
        let mut ahead: SmallVec<[([u8; 16], IdHash); WARM_BATCH]> = SmallVec::new();
        let mut taken = 0;
        let mut kept = SmallVec::new();
        let mut plan = self.plan_for_decisions();
        while over(self) {
            if taken == ahead.len() {
                self.keep_group(&mut kept).await;
                let ids: SmallVec<[[u8; 16]; WARM_BATCH]> = match order {
                    EarlyOrder::Rooted => self.deadlines.front(WARM_BATCH).copied().collect(),
                    EarlyOrder::Spared => {
                        self.spared.choose();
                        self.spared.front(WARM_BATCH).copied().collect()
                    }
                    EarlyOrder::Deferred => {
                        self.deferred.iter().take(WARM_BATCH).map(|d| d.2).collect()
                    }
                };
                ahead = ids
                    .into_iter()
                    .map(|id| (id, self.traces.hash_of(&id)))
                    .collect();
                self.warm(&ahead);
                taken = 0;
                // A reload takes effect from the next group.
                plan = self.plan_for_decisions();
            }
            let next = match order {
                EarlyOrder::Rooted => self.deadlines.pop_front_due(),
                EarlyOrder::Spared => self.spared.pop_front_due(),
                EarlyOrder::Deferred => self.pop_deferred().map(|id| (id, now)),
            };
            let Some((id, due)) = next else {
                break;
            };
            // The queue's front is the group read ahead, in order.
            let h = match ahead.get(taken) {
                Some(&(a, h)) if a == id => h,
                _ => self.traces.hash_of(&id),
            };
            taken += 1;
            if order == EarlyOrder::Rooted {
                // A trace still waiting for its root waits on, until the deadline it
                // had (a reload since does not move it) or until no trace with its root
                // is left. The first pass over a limit may move many at once; each
                // moves once.
                let spared = &self.spared;
                let waiting = self.traces.get_mut_hashed(h, &id).and_then(|entry| {
                    let resource = entry.spans.iter().next().map(|s| s.parts().resource);
                    (!entry.summary.has_root).then(|| spared.group_of(resource.unwrap_or(&[])))
                });
                if let Some(group) = waiting {
                    self.spared.push_due(group, id, due);
                    continue;
                }
            }
            match self.decide_now(id, h, now, &plan) {
                Decided::Absent => continue,
                Decided::Dropped => {}
                Decided::Kept(k) => kept.push(k),
            }
            counter(&self.stats).add(1);
            decided += 1;
        }
        self.keep_group(&mut kept).await;
        decided
    }

    /// The ring in force when traces may belong to other gateways, else `None`.
    fn routing_view(&self) -> Option<Arc<PeerView>> {
        self.peers
            .as_ref()
            .map(|p| p.view_full())
            .filter(|v| v.routes())
    }

    /// Whether trace `id`, due at `now` and waiting since `since` (`now` when it has not
    /// waited yet), is left for a hand-off pass instead of being decided: the ring gives it
    /// to another gateway (one that failed is off the ring), and it has waited less than
    /// [`MAX_DEFER`]. A trace that reached this gateway by a stale ring (a peer sent it on,
    /// or a router had not yet seen a change) would otherwise be decided on the spans it
    /// has here while its owner holds the others: one trace, two decisions. The trace is
    /// looked at again after [`DEFER_RECHECK`].
    fn defers(
        &mut self,
        view: Option<&PeerView>,
        id: [u8; 16],
        since: Instant,
        now: Instant,
    ) -> bool {
        let foreign = view.is_some_and(|v| matches!(v.owner(&id), Owner::Peer(_)));
        if !foreign || now.saturating_duration_since(since) >= MAX_DEFER {
            return false;
        }
        if !self.traces.contains_key(&id) {
            // Decided or handed off already: nothing to wait for.
            return true;
        }
        if since == now {
            if self.deferred_ids.contains_key(&id) {
                // Waiting already (due by an earlier deadline).
                return true;
            }
            self.stats.peers.deferred_decisions.add(1);
        }
        self.deferred_ids.insert(id, ());
        self.deferred.push_back((now + DEFER_RECHECK, since, id));
        true
    }

    /// The next waiting trace's id, due or not.
    fn pop_deferred(&mut self) -> Option<[u8; 16]> {
        let (_, _, id) = self.deferred.pop_front()?;
        self.deferred_ids.remove(&id);
        Some(id)
    }

    async fn decide_due(&mut self, now: Instant) {
        let view = self.routing_view();
        // Traces left for a hand-off pass: when it has not taken them, either the pass has
        // not come yet (wait on) or the owner is out of reach (decide here).
        while let Some(&(at, since, id)) = self.deferred.front() {
            if at > now {
                break;
            }
            self.pop_deferred();
            if !self.defers(view.as_deref(), id, since, now) {
                self.decide(id, now).await;
            }
        }
        // Due traces are taken in groups whose table and cache entries are read first, so
        // that their cache misses overlap.
        loop {
            let mut due: SmallVec<[([u8; 16], IdHash); WARM_BATCH]> = SmallVec::new();
            while due.len() < WARM_BATCH {
                match self.deadlines.pop_due(now) {
                    Some(id) => due.push((id, self.traces.hash_of(&id))),
                    None => break,
                }
            }
            if due.is_empty() {
                break;
            }
            self.warm(&due);
            let plan = self.plan_for_decisions();
            let mut kept = SmallVec::new();
            for (id, h) in due {
                if self.defers(view.as_deref(), id, now, now) {
                    continue;
                }
                if let Decided::Kept(k) = self.decide_now(id, h, now, &plan) {
                    kept.push(k);
                }
            }
            self.keep_group(&mut kept).await;
        }
        while let Some(id) = self.root_deadlines.pop_due(now) {
            if !self.defers(view.as_deref(), id, now, now) {
                self.decide(id, now).await;
            }
        }
        while let Some(id) = self.spared.pop_due(now) {
            if !self.defers(view.as_deref(), id, now, now) {
                self.decide(id, now).await;
            }
        }
        while let Some(Reverse((due, id))) = self.handed_deadlines.peek().copied() {
            if due > now {
                break;
            }
            self.handed_deadlines.pop();
            if !self.defers(view.as_deref(), id, now, now) {
                self.decide(id, now).await;
            }
        }
        // Deferred now (for the first time or again): a pass should come to take them.
        let recheck = now + DEFER_RECHECK;
        if self.deferred.back().is_some_and(|d| d.0 == recheck) {
            if let Some(peers) = &self.peers {
                peers.want_pass();
            }
        }
        self.flush_counts();
        self.send().await;
    }

    /// The plan in force, with the local verdict counts switched to it.
    fn plan_for_decisions(&mut self) -> Arc<crate::policy::plan::PolicyPlan> {
        // Buffered traces are decided by the plan in force at decision time; verdicts are
        // counted locally and flushed to that plan's counters once per batch.
        let plan = self.plan.load_full();
        if !self
            .verdicts
            .0
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &plan))
        {
            self.flush_counts();
            self.verdicts.0 = Some(plan.clone());
        }
        plan
    }

    /// `sampling_strategy: span-ingest`: decides a trace on the spans of one batch (from
    /// `start` in its span list, summarised in `summary`) with its running span count and
    /// size; sampled or dropped traces are released now, the others stay pending.
    async fn decide_batch(
        &mut self,
        id: [u8; 16],
        summary: &mut TraceSummary,
        spans: std::ops::Range<usize>,
        now: Instant,
    ) {
        let plan = self.plan_for_decisions();
        let Some(entry) = self.traces.get(&id) else {
            return;
        };
        // The running count as it was after these spans (later parts of the batch are in
        // the list already).
        let after = entry
            .spans
            .len()
            .saturating_sub(spans.end.min(entry.spans.len()));
        summary.span_count = entry.summary.span_count.saturating_sub(after as u32);
        summary.bytes = entry.summary.bytes;
        let view = TraceView {
            trace_id: &id,
            summary,
            spans: entry.spans.spans_between(spans),
            now,
        };
        if let Some(decision) = plan.decide_batch(&view, &mut self.verdicts.1) {
            if let Some(entry) = self.take(&id) {
                self.finish(id, entry, decision, &plan, now).await;
            }
        }
    }

    /// Decides one trace; `now` is read once per batch of decisions. Under span-ingest a
    /// trace still pending at its deadline is not sampled, unevaluated, as the Collector.
    /// Returns whether the trace was buffered (else it was decided already).
    async fn decide(&mut self, id: [u8; 16], now: Instant) -> bool {
        let plan = self.plan_for_decisions();
        match self.decide_now(id, self.traces.hash_of(&id), now, &plan) {
            Decided::Absent => false,
            Decided::Dropped => true,
            Decided::Kept(kept) => {
                self.keep(kept.spans, kept.probability, &kept.plan).await;
                true
            }
        }
    }

    /// [`Self::decide`] up to the re-encoding of a kept trace's spans, which is left to
    /// the caller (see [`Self::keep_group`]). `plan` is [`Self::plan_for_decisions`], read
    /// once per group of decisions: a load per trace cost 2% of the CPU at 2 spans per
    /// trace.
    fn decide_now(
        &mut self,
        id: [u8; 16],
        h: IdHash,
        now: Instant,
        plan: &Arc<crate::policy::plan::PolicyPlan>,
    ) -> Decided {
        let Some(entry) = self.take_hashed(h, &id) else {
            return Decided::Absent;
        };
        let decision = if plan.span_ingest {
            crate::policy::plan::Decision {
                sampled: false,
                policy: None,
                probability: 1.0,
                dropped: false,
            }
        } else {
            plan.decide_counting(
                &TraceView {
                    trace_id: &id,
                    summary: &entry.summary,
                    spans: entry.spans.spans(),
                    now,
                },
                &mut self.verdicts.1,
            )
        };
        match self.record(id, h, entry, decision, now) {
            Some(spans) => Decided::Kept(KeptTrace {
                spans,
                probability: decision.probability,
                plan: plan.clone(),
            }),
            None => Decided::Dropped,
        }
    }

    /// Keeps the traces of a group of decisions: their spans' bytes, which left the
    /// cache while they waited, are prefetched for the whole group first so that those
    /// misses overlap, then each trace is re-encoded and joins the exporters' batch.
    async fn keep_group(&mut self, kept: &mut SmallVec<[KeptTrace; WARM_BATCH]>) {
        for k in kept.iter().filter(|k| self.rewrites(&k.plan)) {
            for s in k.spans.iter() {
                // Every cache line: the re-encoding walks the whole span, field by field.
                let span = s.span();
                for b in span.iter().step_by(64).chain(span.last()) {
                    prefetch(b);
                }
            }
        }
        for k in kept.drain(..) {
            self.keep(k.spans, k.probability, &k.plan).await;
        }
    }

    /// Carries out a decision for a trace taken out of the table.
    async fn finish(
        &mut self,
        id: [u8; 16],
        entry: TraceEntry,
        decision: crate::policy::plan::Decision,
        plan: &crate::policy::plan::PolicyPlan,
        now: Instant,
    ) {
        if let Some(spans) = self.record(id, self.traces.hash_of(&id), entry, decision, now) {
            self.keep(spans, decision.probability, plan).await;
        }
    }

    /// Remembers and counts a decision for a trace taken out of the table; a kept trace's
    /// spans are given back to be kept, a dropped one's are dropped.
    fn record(
        &mut self,
        id: [u8; 16],
        h: IdHash,
        entry: TraceEntry,
        decision: crate::policy::plan::Decision,
        now: Instant,
    ) -> Option<SpanList> {
        self.cache.insert_hashed(
            h,
            id,
            if decision.sampled {
                Cached::Kept(decision.probability)
            } else {
                Cached::Dropped
            },
        );
        let waited = now.saturating_duration_since(entry.first_seen.instant());
        if decision.dropped {
            self.tally.record_dropped(waited);
        } else {
            self.tally.record(decision.policy, waited);
        }
        if decision.sampled {
            Some(entry.spans)
        } else {
            self.released.dropped_spans += entry.spans.len() as u64;
            None
        }
    }

    /// Hands the kept spans gathered so far to every exporter. An exporter whose queue has
    /// no room for them (its backend is slow or down) finds them parked here, still charged
    /// as pending export, while the shard goes on taking and deciding traces: an outage
    /// then fills the buffer with kept spans only (the dropped ones are freed as before),
    /// and senders are refused once it is full, not once a queue is. Deciding goes on past
    /// the limit (it frees dropped traces, and moves kept spans to parked as they are),
    /// except where kept spans grow as they are re-encoded (see [`Self::keep`]).
    async fn send(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        // The shared counters see this batch's releases and decisions first, so that the
        // limits do not count kept traces both as buffered and as pending export.
        self.flush_counts();
        let spans = std::mem::take(&mut self.outgoing);
        let bytes = std::mem::take(&mut self.outgoing_bytes);
        let n = spans.len() as u64;
        let tickets = if self.export.len() > 1 {
            std::mem::take(&mut self.outgoing_tickets)
        } else {
            vec![(Ticket::new(n, bytes, self.export.len()), n)]
        };
        let last = self.export.len().saturating_sub(1);
        let mut out = Some(Outgoing {
            spans,
            bytes,
            tickets,
        });
        for i in 0..self.export.len() {
            // Every exporter gets the same span handles; the last one takes the Vec.
            let batch = if i == last {
                out.take().unwrap_or_default()
            } else {
                out.clone().unwrap_or_default()
            };
            self.hand(i, batch);
        }
    }

    /// While the gateway is over its hard limit (see [`Self::over_limit`]) and this shard has parked
    /// batches, waits for room in their exporters' queues instead of re-encoding more
    /// (counted as waiting on those exporters: see [`ExporterStats::waiting`], which
    /// lets an exporter give requests up), looking at the limit again every
    /// [`LIMIT_RECHECK`].
    ///
    /// [`ExporterStats::waiting`]: crate::metrics::ExporterStats::waiting
    async fn wait_under_limit(&mut self) {
        // The shared counters first see what this shard released: a limit read with
        // traces it took out still counted would wait on room it already made.
        self.flush_counts();
        if !self.over_limit() {
            return;
        }
        let waited: Vec<usize> = (0..self.export.len())
            .filter(|&i| !self.parked[i].is_empty())
            .collect();
        for &i in &waited {
            self.export[i].wait_begins();
        }
        while self.parked.iter().any(|q| !q.is_empty()) && self.over_limit() {
            self.arm_room_waits();
            tokio::select! {
                (i, room) = any_room(&mut self.room_waits) => self.unpark(i, room),
                () = tokio::time::sleep(LIMIT_RECHECK) => {}
            }
        }
        for &i in &waited {
            self.export[i].wait_ends();
        }
    }

    /// Whether the gateway holds more than its hard limit and [`LIMIT_SLACK`] of it: past
    /// it, a shard re-encodes no more kept spans until their exporters make room.
    fn over_limit(&self) -> bool {
        over_limit(self.stats.held_bytes(), self.max_held_bytes)
    }

    /// Begins a wait for room for every exporter with parked batches and none under way.
    fn arm_room_waits(&mut self) {
        for (i, queue) in self.parked.iter().enumerate() {
            if let (Some(front), None) = (queue.front(), &self.room_waits[i]) {
                let (bytes, exporter) = (front.bytes, self.export[i].clone());
                self.room_waits[i] = Some(Box::pin(async move { exporter.room(bytes).await }));
            }
        }
    }

    /// Hands `out` to exporter `i` if its queue has room and nothing waits before it;
    /// parks it otherwise.
    fn hand(&mut self, i: usize, out: Outgoing) {
        if self.parked[i].is_empty() {
            match self.export[i].try_room(out.bytes) {
                Ok(room) => {
                    if let Err(out) = self.export[i].send_in(room, out) {
                        self.stopped(&out);
                    }
                    return;
                }
                Err(NoRoom::Stopped) => return self.stopped(&out),
                Err(NoRoom::Full) => {}
            }
        }
        self.park_charge(i, &out, true);
        self.parked[i].push_back(out);
    }

    /// Counts `out` as parked for exporter `i` (or, `parked` false, no longer): its bytes
    /// in the exporter's gauge and, with several exporters, its copy's handles and tickets
    /// against the limits (see [`GatewayStats::parked_copies_bytes`]).
    fn park_charge(&self, i: usize, out: &Outgoing, parked: bool) {
        let copy = copy_charge(self.export.len(), out);
        if parked {
            self.export[i].park(out.bytes);
            self.stats.parked_copies_bytes.add(copy);
        } else {
            self.export[i].unpark(out.bytes);
            self.stats.parked_copies_bytes.sub(copy);
        }
    }

    /// Sends exporter `i`'s oldest parked batch in `room` (reserved for it), then as many
    /// of the next as its queue has room for now.
    fn unpark(&mut self, i: usize, room: Result<Room, NoRoom>) {
        let mut room = room;
        loop {
            let Some(out) = self.parked[i].pop_front() else {
                return;
            };
            self.park_charge(i, &out, false);
            match room {
                Ok(room) => {
                    if let Err(out) = self.export[i].send_in(room, out) {
                        self.stopped(&out);
                    }
                }
                Err(NoRoom::Stopped) => self.stopped(&out),
                Err(NoRoom::Full) => {
                    self.park_charge(i, &out, true);
                    self.parked[i].push_front(out);
                    return;
                }
            }
            room = match self.parked[i].front() {
                Some(next) => self.export[i].try_room(next.bytes),
                None => return,
            };
        }
    }

    /// Counts spans an exporter that has stopped did not take as failed: never lost
    /// silently.
    fn stopped(&self, out: &Outgoing) {
        tracing::error!(
            spans = out.spans.len(),
            "Exporter stopped; spans counted as failed."
        );
        for (ticket, covered) in &out.tickets {
            ticket.settle(*covered, &self.stats);
        }
    }
}

/// What a batch parked for one of `exporters` costs beside its spans' charge: with
/// several exporters, its copy's handles and tickets (see
/// [`GatewayStats::parked_copies_bytes`]); with one, nothing.
fn copy_charge(exporters: usize, out: &Outgoing) -> u64 {
    if exporters > 1 {
        (out.spans.len() * std::mem::size_of::<BufferedSpan>()
            + out.tickets.len() * std::mem::size_of::<(Arc<Ticket>, u64)>()) as u64
    } else {
        0
    }
}

/// A wait for room in one exporter's queue (see [`Shard::arm_room_waits`]).
type RoomWait = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Room, NoRoom>> + Send>>;

/// The share of the hard limit (1 / this) a shard may go past it by re-encoding kept spans
/// before it waits for their exporters: the adjusted count (on by default) grows every
/// kept span by a few bytes, and a shard that waited as soon as the gateway was a byte
/// over its limit stopped deciding due traces, most of which would have freed their
/// room (a trial: senders refused for half a minute with half the buffer droppable).
pub const LIMIT_SLACK: u64 = 16;

/// Whether `held` bytes are past `max` and its [`LIMIT_SLACK`].
fn over_limit(held: u64, max: u64) -> bool {
    held > max.saturating_add(max / LIMIT_SLACK)
}

/// How often a shard waiting for an exporter past the hard limit looks at the limit again.
const LIMIT_RECHECK: Duration = Duration::from_millis(100);

/// Waits until one of `waits` (by exporter) ends; returns which and its outcome, and
/// clears it. The others go on. Never ends when there is none.
async fn any_room(waits: &mut [Option<RoomWait>]) -> (usize, Result<Room, NoRoom>) {
    std::future::poll_fn(|cx| {
        for (i, slot) in waits.iter_mut().enumerate() {
            if let Some(wait) = slot {
                if let std::task::Poll::Ready(room) = wait.as_mut().poll(cx) {
                    *slot = None;
                    return std::task::Poll::Ready((i, room));
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guarantees: a shard waits to re-encode only past the limit and its slack (1/16):
    /// at 1,600 bytes, 1,700 held is within it, 1,701 past it; a limit too small to have
    /// slack has none.
    #[test]
    fn the_limit_has_a_sixteenth_of_slack() {
        assert!(!over_limit(1_600, 1_600));
        assert!(!over_limit(1_700, 1_600));
        assert!(over_limit(1_701, 1_600));
        assert!(over_limit(2, 1));
        assert!(!over_limit(u64::MAX, u64::MAX));
    }
}
