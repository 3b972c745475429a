//! The trace buffer's front: the gateway's `SpanSink`. It scans each request, builds an
//! [`IncomingSpan`] per span (its range in the request's bytes, no copy), and hands each
//! shard its spans, with the request counted once, over a bounded channel. A request is accepted only when every shard it
//! touches has room, so a refusal never leaves part of a request behind (no duplicates when
//! the sender retries).
//!
//! Data flows on to [`shard`], which owns the traces, their deadlines and decisions.

pub mod hash;
pub mod index;
pub mod shard;
pub mod spared;
pub mod table;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use tailgate_core::forward::ForwardError;
use tailgate_core::receive::{
    Accepted, Origin, Refusal, SpanSink, DECISION_RECORD_LEN, DEFAULT_RETRY_AFTER,
};
use tailgate_core::ring::Ring;
use tailgate_core::wire::attrs::{self, AttrValue};
use tailgate_core::wire::reframe::{group_by_headers, Interner};
use tailgate_core::wire::span_fields::AttributeRewrite;
use tailgate_core::wire::split::split;
use tailgate_core::wire::{span_fields, Reframer, Scan};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::attributes::AttributeActions;
use crate::decide::Cached;
use crate::peers::{Owner, PeerView, Peers};

use crate::metrics::GatewayStats;
use crate::policy::plan::PolicyPlan;
use crate::policy::plan::SpanFieldKeys;
pub use shard::ShardMsg;
pub use trace::{
    BufferedSpan, HeaderRun, IncomingSpan, RequestBytes, RequestLedger, SpanList, SpanRange,
    SpanRef, Spans, TraceAttr, TraceSummary, TraceView,
};

/// The oldest a handed-over trace's first sighting is taken to be.
const MAX_HANDED_AGE: Duration = Duration::from_secs(3600);

/// The spans of a scanned request (`scan` has just scanned `body`), each with the values of
/// the attributes and span fields `plan` reads, and the request they are in. Spans are
/// views into `body` and one shared buffer of resource and scope headers: nothing is copied
/// per span.
pub fn incoming_spans(
    body: &Bytes,
    scan: &Scan,
    plan: &PolicyPlan,
    ledger: Option<&Arc<RequestLedger>>,
) -> (Arc<RequestBytes>, Vec<IncomingSpan>) {
    let mut out = Vec::with_capacity(scan.spans.len());
    let req = each_incoming_span(body, scan, plan, ledger, None, |s| out.push(s));
    (req, out)
}

/// [`incoming_spans`], handed to `sink` one by one (the buffer puts each straight into its
/// shard's list, with no list of the whole request in between). With `resource` (the
/// `attributes.resource` actions), the request's resources are rewritten for its kept
/// traces now ([`RequestBytes::rewrite_resources`]).
fn each_incoming_span(
    body: &Bytes,
    scan: &Scan,
    plan: &PolicyPlan,
    ledger: Option<&Arc<RequestLedger>>,
    resource: Option<&dyn AttributeRewrite>,
    mut sink: impl FnMut(IncomingSpan),
) -> Arc<RequestBytes> {
    // One shared buffer for all headers of this request, of exactly their length (it is
    // kept as long as any span, and the charge counts its length); spans are views into
    // `body`. The scan keeps its own buffer for the next request.
    let headers = Bytes::copy_from_slice(&scan.headers);
    // Attributes are read only for keys the plan in force uses; resources once each.
    let keys = plan.attribute_keys();
    let resource_attrs = resource_attrs(&headers, scan, keys);
    let fields = plan.span_field_keys();
    // Header ranges: resources first, then scopes.
    let n_resources = scan.resources.len() as u32;
    let header_ranges = scan
        .resources
        .iter()
        .map(|r| (r.header.start, r.header.end))
        .chain(scan.scopes.iter().map(|s| (s.header.start, s.header.end)))
        .collect::<Vec<_>>()
        .into();
    // Every span keeps the whole request alive: the request's bytes besides the spans'
    // own are charged to its spans, so the limits see what is really held.
    let own = scan.spans.iter().map(|s| s.range.len()).sum();
    let mut runs = Vec::new();
    for s in &scan.spans {
        let resource = scan.scopes[s.scope as usize].resource;
        HeaderRun::extend(&mut runs, s.range.start, resource, n_resources + s.scope);
    }
    let req = RequestBytes::shared(
        body.clone(),
        headers,
        header_ranges,
        runs,
        own,
        scan.spans.len(),
        ledger,
    );
    if let Some(rewrite) = resource {
        req.rewrite_resources(rewrite);
    }
    for s in &scan.spans {
        let scope = &scan.scopes[s.scope as usize];
        let is_root = s.is_root();
        let span_attrs = if keys.is_empty() {
            Vec::new()
        } else {
            span_attrs(
                &body.slice(s.range.start as usize..s.range.end as usize),
                keys,
                fields,
                is_root,
                &resource_attrs[scope.resource as usize],
            )
        };
        sink(IncomingSpan {
            trace_id: s.trace_id,
            start: s.start_unix_nano,
            end: s.end_unix_nano,
            status_code: s.status_code,
            is_root,
            attrs: span_attrs,
            range: s.range.clone().into(),
        });
    }
    req
}

/// Header bytes a spare scan keeps room for between requests: a request whose resources
/// carry megabytes of attributes does not leave them allocated for good on every thread.
const SPARE_HEADERS: usize = 64 << 10;

thread_local! {
    /// This worker thread's scan between requests (see [`SpareScan`]).
    static SPARE_SCAN: std::cell::Cell<Option<Scan>> = const { std::cell::Cell::new(None) };
}

/// A [`Scan`] for one request, taken from its worker thread's spare and given back, trimmed,
/// when dropped. A new scan per request grew its span, scope and header lists from
/// nothing: a dozen reallocations and copies for a 512-span request (docs/benchmarks.md).
/// A request that finishes on another thread leaves its scan there; a thread keeps one.
/// What it keeps is outside the byte limits: [`Scan::trim`]'s room for spans (about
/// 1 MiB) and [`SPARE_HEADERS`] of headers.
struct SpareScan(Scan);

impl SpareScan {
    fn take() -> Self {
        SpareScan(SPARE_SCAN.take().unwrap_or_default())
    }
}

impl std::ops::Deref for SpareScan {
    type Target = Scan;
    fn deref(&self) -> &Scan {
        &self.0
    }
}

impl std::ops::DerefMut for SpareScan {
    fn deref_mut(&mut self) -> &mut Scan {
        &mut self.0
    }
}

impl Drop for SpareScan {
    fn drop(&mut self) {
        let mut scan = std::mem::take(&mut self.0);
        scan.trim();
        scan.headers.shrink_to(SPARE_HEADERS);
        // Nowhere to keep it while the thread is exiting: it is dropped.
        if SPARE_SCAN.try_with(|spare| spare.set(Some(scan))).is_err() {}
    }
}

/// The values of `keys` in each resource of the request, by resource index; nothing when
/// the plan reads no attribute.
fn resource_attrs(headers: &Bytes, scan: &Scan, keys: &[String]) -> Vec<Vec<TraceAttr>> {
    if keys.is_empty() {
        return Vec::new();
    }
    scan.resources
        .iter()
        .map(|r| {
            let mut out = Vec::new();
            let h = headers.slice(r.header.start as usize..r.header.end as usize);
            attrs::resource_attributes(&h, keys, |key, value| {
                if first_of_key(&out, key) {
                    out.push(TraceAttr {
                        key,
                        value,
                        from_resource: true,
                        from_root: false,
                    });
                }
            });
            out
        })
        .collect()
}

/// Whether `key` is not in `read` yet. An attribute map read with pdata's `Get` (as the
/// Collector's policies and OTTL read it) yields the first entry of a key, so later
/// entries of the same key are not read: that keeps what a span or resource records to
/// one value per key the plan reads, however often an entry repeats.
fn first_of_key(read: &[TraceAttr], key: u16) -> bool {
    !read.iter().any(|a| a.key == key)
}

/// The values the plan reads of one span: its own attributes, its span fields, then its
/// resource's attributes.
fn span_attrs(
    span_bytes: &Bytes,
    keys: &[String],
    fields: &SpanFieldKeys,
    is_root: bool,
    from_resource: &[TraceAttr],
) -> Vec<TraceAttr> {
    let mut out = Vec::new();
    attrs::span_attributes(span_bytes, keys, |key, value| {
        if first_of_key(&out, key) {
            out.push(TraceAttr {
                key,
                value,
                from_resource: false,
                from_root: is_root,
            });
        }
    });
    if !fields.is_empty() {
        span_field_attrs(span_bytes, fields, is_root, &mut out);
    }
    out.extend(from_resource.iter().map(|a| TraceAttr {
        from_root: is_root,
        ..a.clone()
    }));
    out
}

/// Records the span fields the plan reads (`trace_state` entries, the root span's name,
/// the sampled flag) as attributes under the plan's pseudo-keys.
fn span_field_attrs(span: &Bytes, keys: &SpanFieldKeys, is_root: bool, out: &mut Vec<TraceAttr>) {
    let f = span_fields::span_fields(span);
    let mut push = |key: u16, value: AttrValue| {
        out.push(TraceAttr {
            key,
            value,
            from_resource: false,
            from_root: is_root,
        })
    };
    // As the Collector (Go SDK's ParseTraceState): a header that is not valid W3C holds
    // nothing, so no `trace_state` policy matches it.
    let ts = &span[f.trace_state.clone()];
    if !ts.is_empty() && span_fields::tracestate_is_valid(ts) {
        for (name, key) in &keys.tracestate {
            if let Some(v) = span_fields::tracestate_get(ts, name.as_bytes()) {
                push(*key, AttrValue::Str(span.slice_ref(v)));
            }
        }
    }
    if let (Some(key), true) = (keys.root_name, is_root) {
        push(key, AttrValue::Str(span.slice(f.name)));
    }
    if let (Some(key), true) = (keys.sampled_flag, f.flags & span_fields::FLAG_SAMPLED != 0) {
        push(key, AttrValue::Bool(true));
    }
}

/// What a gateway leaving the ring answers other gateways.
fn leaving() -> Refusal {
    Refusal::Leaving("this gateway is leaving the ring; send to the next owner".into())
}

/// Most gateways a span passes through: a gateway leaving the ring forwards even spans
/// another gateway sent it, up to this many hops; past it they are buffered where they are.
pub const MAX_HOPS: u8 = 3;

/// Handed-off traces go out in requests of at most this many spans...
const HANDOFF_MAX_SPANS: usize = 4096;
/// ...and this many bytes of spans (a trace larger goes in several, a span larger alone),
/// so that a request stays under the peers' `receive.max_request_bytes` (4 MiB in the
/// shipped manifests: 4,096 spans of 1 KB would not) unless its resource and scope
/// headers are large, and is as cheap to move as the routers' parts...
const HANDOFF_MAX_BYTES: u64 = 1 << 20;
/// ...whose traces were first seen within this span of time, since a request carries one
/// age for all of them (the youngest's: a trace may be decided a little late, never early).
const HANDOFF_AGE_STEP: Duration = Duration::from_millis(250);

/// The gateway's receive-side stage.
pub struct TraceBuffer {
    plan: crate::reload::SharedPlan,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    stats: Arc<GatewayStats>,
    peers: Arc<Peers>,
    enqueue_timeout: Duration,
    max_buffered_bytes: u64,
    /// Cancelled when the gateway stops handing off: sends still waiting on a peer give up
    /// and their spans are buffered here again.
    handoff_stop: tokio_util::sync::CancellationToken,
    /// Held (shared) by every hand-off pass; [`TraceBuffer::stop_handoffs`] takes it alone,
    /// so it returns only when no pass holds spans taken out of the shards.
    handoffs: tokio::sync::RwLock<()>,
    /// The `attributes:` actions, for the resource rewrite each request gets as it is
    /// buffered (the shards apply the rest to kept spans).
    attribute_actions: Option<Arc<AttributeActions>>,
    /// When the shards were last asked to make room (see [`ShardMsg::MakeRoom`]).
    room_asked: crate::metrics::LastSeen,
    /// When senders' refusal for room was last logged, and the requests refused so since
    /// (logged at most once a minute: see [`TraceBuffer::log_refusal`]).
    refusals_logged: std::sync::Mutex<tailgate_core::retry::Tally>,
    /// Likewise for failed sends to peers (see [`TraceBuffer::log_peer_failure`]).
    peer_failures_logged: std::sync::Mutex<tailgate_core::retry::Tally>,
    /// Likewise for peer requests refused here for their credentials.
    peer_refusals_logged: std::sync::Mutex<tailgate_core::retry::Tally>,
}

/// Least time between two requests to the shards to make room: a burst of refused
/// requests asks once.
const MAKE_ROOM_EVERY: Duration = Duration::from_millis(20);

// === impl TraceBuffer ===

impl TraceBuffer {
    /// A buffer in front of the given shard channels.
    pub fn new(
        plan: crate::reload::SharedPlan,
        shards: Vec<mpsc::Sender<ShardMsg>>,
        stats: Arc<GatewayStats>,
        peers: Arc<Peers>,
        config: &crate::config::BufferConfig,
    ) -> Self {
        TraceBuffer {
            plan,
            shards,
            stats,
            peers,
            enqueue_timeout: config.enqueue_timeout,
            max_buffered_bytes: config.max_buffered_bytes,
            handoff_stop: Default::default(),
            handoffs: Default::default(),
            attribute_actions: None,
            room_asked: Default::default(),
            refusals_logged: Default::default(),
            peer_failures_logged: Default::default(),
            peer_refusals_logged: Default::default(),
        }
    }

    /// Logs that senders are refused for room (the buffer over its limit, or the shards'
    /// queues full), with `why`, at most once a minute and with the requests refused
    /// since: an operator reading the log otherwise saw the exporter's warnings and
    /// nothing of the senders refused (a trial). Only on a refusal, so the lock is off the
    /// path of accepted requests.
    fn log_refusal(&self, why: &str) {
        if let Some(requests) = tailgate_core::retry::Tally::one_more(&self.refusals_logged) {
            tracing::warn!(
                requests,
                "Refusing senders: {why}. Logged at most once a minute, requests refused since counted."
            );
        }
    }

    /// Asks every shard to free its share of `bytes` by deciding traces early
    /// (at most once per [`MAKE_ROOM_EVERY`]; a shard whose queue is full is busy
    /// inserting and decides early there when over its soft limit).
    fn make_room(&self, bytes: u64) {
        if self.room_asked.within(MAKE_ROOM_EVERY) {
            return;
        }
        self.room_asked.mark();
        let share = bytes.div_ceil(self.shards.len().max(1) as u64);
        for tx in &self.shards {
            // Full or closed: see above; nothing is lost by not asking.
            let _asked = tx.try_send(ShardMsg::MakeRoom { bytes: share });
        }
    }

    /// What the rewritten header table of a scanned request may hold once it is buffered
    /// under `attributes.resource` actions (see [`RequestBytes::rewrite_resources`]): its
    /// headers again and their index, with every resource as the actions leave it (a
    /// resource no span is under is counted too: a bound, not the exact size). 0 without
    /// resource actions.
    fn resource_table_charge(&self, scan: &Scan) -> u64 {
        let Some(rewrite) = self
            .attribute_actions
            .as_deref()
            .and_then(|a| a.resource.as_ref())
        else {
            return 0;
        };
        let mut grown = 0;
        let mut scratch = Vec::new();
        for r in &scan.resources {
            let Some(header) = scan
                .headers
                .get(r.header.start as usize..r.header.end as usize)
            else {
                continue;
            };
            scratch.clear();
            span_fields::write_resource_header(header, rewrite, &mut scratch);
            grown += scratch.len().saturating_sub(header.len());
        }
        let index = 8 * (scan.resources.len() + scan.scopes.len());
        (scan.headers.len() + index + grown) as u64
    }

    /// Rewrites the resources of every request it buffers with `actions.resource` (the
    /// shards' actions: see [`RequestBytes::rewrite_resources`]).
    pub fn with_attribute_actions(mut self, actions: Option<Arc<AttributeActions>>) -> Self {
        self.attribute_actions = actions;
        self
    }

    /// Ends handing off: no new pass starts, sends still waiting on a peer give up and
    /// their spans go back to the shards. Returns once no pass holds spans taken out of
    /// the shards, so that a drain that follows decides every one of them.
    pub async fn stop_handoffs(&self) {
        self.handoff_stop.cancel();
        drop(self.handoffs.write().await);
    }

    /// [`TraceBuffer::stop_handoffs`] without waiting (for a timer).
    pub fn cut_handoffs(&self) {
        self.handoff_stop.cancel();
    }

    /// [`TraceBuffer::send_to_peer`] for a hand-off pass: it gives up (`None`, counted as a
    /// peer failure) when handing off stops first.
    async fn hand_to_peer(
        &self,
        view: &PeerView,
        p: usize,
        body: Bytes,
        spans: u64,
        origin: Origin,
    ) -> Option<u64> {
        tokio::select! {
            taken = self.send_to_peer(view, p, body, spans, origin) => taken,
            () = self.handoff_stop.cancelled() => {
                tracing::warn!(peer = ?view.member(p), spans, "Handing off stopped before a peer answered; keeping its spans here (the peer may have taken them too).");
                self.stats.peers.failures.add(1);
                self.stats.peers.abandoned_spans.add(spans);
                None
            }
        }
    }

    /// The gateway's peers.
    pub fn peers(&self) -> &Arc<Peers> {
        &self.peers
    }

    /// Which shard owns a trace.
    pub fn shard_of(trace_id: &[u8; 16], shards: usize) -> usize {
        // The ring places traces by the high bits of the same hash; within one gateway's
        // share the low bits are still uniform. Multiply-shift maps the low 32 onto the
        // shards without a division (a 64-bit `div` per span showed in profiles).
        ((u64::from(Ring::hash(trace_id) as u32) * shards as u64) >> 32) as usize
    }
}

impl SpanSink for TraceBuffer {
    fn refused(&self, refusal: &Refusal) {
        self.stats.refused_requests[refusal.reason_index()].add(1);
        // A peer request without the gateways' credentials is most often a gateway
        // configured with another `peers.secret`: it looks healthy, and its handoffs fail
        // (a trial found it only in this counter).
        if let Refusal::PermissionDenied(why) = refusal {
            if let Some(requests) =
                tailgate_core::retry::Tally::one_more(&self.peer_refusals_logged)
            {
                tracing::warn!(
                    requests,
                    "Refusing a request as a peer's: {why}. If gateways send these, their peers.secret, certificates or peers.listen differ from this one's (or a client sends to the peer port). Logged at most once a minute, requests refused since counted."
                );
            }
        }
    }

    fn refused_cut(&self, _refusal: &Refusal) {
        self.stats.refused_requests[Refusal::TOO_LARGE_CUT].add(1);
    }

    fn answered_late(&self) {
        self.stats.late_answers.add(1);
    }

    fn malformed(&self) {
        self.stats.malformed_requests.add(1);
    }

    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        self.export_from(body, Origin::Client).await
    }

    async fn export_from(&self, body: Bytes, origin: Origin) -> Result<Accepted, Refusal> {
        // A leaving gateway would only pass a peer's spans on (to gateways that may be
        // leaving too): the peer routes around it instead, and sends them to the owner.
        if origin != Origin::Client && self.peers.is_leaving() {
            return Err(leaving());
        }
        let mut scan = SpareScan::take();
        let scanned = scan
            .scan_request(&body)
            .inspect_err(|_| self.stats.malformed_requests.add(1))?;
        let (valid, rejected, message) = (scanned.valid, scanned.rejected, scanned.message);
        self.stats.received_spans.add(valid + rejected);
        if rejected > 0 {
            let malformed = u64::from(scan.rejected_malformed);
            self.stats.rejected_malformed_spans.add(malformed);
            self.stats
                .rejected_invalid_id_spans
                .add(rejected.saturating_sub(malformed));
        }
        if origin != Origin::Client {
            self.stats.peers.received_spans.add(valid + rejected);
        }
        let accepted = Accepted {
            rejected_spans: rejected,
            message,
        };
        if valid == 0 {
            return Ok(accepted);
        }

        // Charged from here at the most it can cost once buffered (every span the start of
        // a trace: a request of tiny spans grows about ten times). Over the hard limit
        // (buffered traces, queued spans, kept spans waiting for the backend and requests
        // being admitted), refuse before doing any work: the sender backs off and retries
        // while early decisions and the exporter bring the total down. A request alone is
        // taken up to the limit itself, or one nearly as large could never be; a client's
        // request that may cost more than the whole limit never fits, and is refused for
        // good (retrying cannot help it: the sender must send smaller requests), even when
        // most of its spans would go to peers (each gateway's share could be all of it).
        // Spans another gateway forwards or hands over are taken alone whatever they cost:
        // they are a share of a request checked so, and refusing them would lose spans
        // already acknowledged.
        let charge = worst_case_charge(body.len(), &scan, valid)
            .saturating_add(self.resource_table_charge(&scan));
        if charge > self.max_buffered_bytes && origin == Origin::Client {
            self.stats.refused_spans.add(valid);
            self.stats.refused_spans_memory.add(valid);
            return Err(Refusal::TooLarge {
                message: format!(
                    "a request of {} bytes and {valid} spans may take up to {charge} bytes once \
                 buffered, more than this gateway's whole buffer.max_buffered_bytes ({}); \
                 send smaller requests",
                    body.len(),
                    self.max_buffered_bytes
                ),
                // Not a limit of bytes: what a request costs buffered depends on its spans.
                limit: None,
            });
        }
        let admitted = Admitted::charge(&self.stats, charge);
        let others = self.stats.held_bytes().saturating_sub(admitted.bytes);
        if others > 0 && others.saturating_add(admitted.bytes) > self.max_buffered_bytes {
            self.stats.refused_spans.add(valid);
            self.stats.refused_spans_memory.add(valid);
            self.stats.last_memory_refusal.mark();
            self.make_room(
                others
                    .saturating_add(admitted.bytes)
                    .saturating_sub(self.max_buffered_bytes),
            );
            let message = format!(
                "gateway buffer is over its limit of {} bytes{}; retry later",
                self.max_buffered_bytes,
                self.parked_for()
            );
            self.log_refusal(&message);
            return Err(Refusal::Overloaded {
                message,
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        let first_seen = match origin {
            // Capped: a trace an hour old is due at once either way, and an age the
            // header may claim (to u64::MAX ms) would date it millions of years back.
            Origin::Handoff { age_ms, .. } => {
                Instant::now().checked_sub(Duration::from_millis(age_ms).min(MAX_HANDED_AGE))
            }
            _ => None,
        };
        // Spans from a client go to their owner. Spans another gateway sent stay here (one
        // hop), unless this gateway is leaving the ring; if it does not own them (the
        // sender's ring and this one differ), a handoff pass soon moves them on.
        let view = self.peers.view_full();
        let foreign = view.routes()
            && scan
                .spans
                .iter()
                .any(|s| view.owner(&s.trace_id) != Owner::Local);
        if foreign {
            if origin == Origin::Client || (view.leaving && origin.hops() < MAX_HOPS) {
                // Peers charge what they take; the part kept here is charged once queued.
                // The scan is held until the peers answer: charged meanwhile (it was within
                // the charge just checked), so that requests waiting on peers are bounded
                // by the buffer's limit as buffered spans are.
                drop(admitted);
                let _scan = Admitted::charge(&self.stats, scan.held_bytes() as u64);
                self.route(&body, &scan, &view, origin, valid, first_seen)
                    .await?;
                return Ok(accepted);
            }
            self.peers.want_pass();
        }
        drop(view);
        self.buffer(&body, &scan, valid, first_seen, false).await?;
        Ok(accepted)
    }

    async fn decisions(&self, body: Bytes) -> Result<u64, Refusal> {
        // Its cache leaves with it: the sender hands them to the next owner instead.
        if self.peers.is_leaving() {
            return Err(leaving());
        }
        if body.len() % DECISION_RECORD_LEN != 0 {
            return Err(Refusal::Invalid(format!(
                "a decisions body is a multiple of {DECISION_RECORD_LEN} bytes, not {}",
                body.len()
            )));
        }
        let n = self.shards.len();
        let mut per_shard: Vec<Vec<([u8; 16], Cached)>> = vec![Vec::new(); n];
        for r in body.chunks_exact(DECISION_RECORD_LEN) {
            let (id, rest) = r.split_at(16);
            let Ok(id) = <[u8; 16]>::try_from(id) else {
                continue;
            };
            let mut p = [0u8; 8];
            p.copy_from_slice(&rest[1..9]);
            let p = f64::from_le_bytes(p);
            let cached = match rest[0] {
                1 if p > 0.0 && p <= 1.0 => Cached::Kept(p),
                1 => {
                    return Err(Refusal::Invalid(format!(
                        "a kept decision's probability must be in (0, 1], not {p}"
                    )))
                }
                _ => Cached::Dropped,
            };
            per_shard[Self::shard_of(&id, n)].push((id, cached));
        }
        let count = (body.len() / DECISION_RECORD_LEN) as u64;
        for (tx, list) in self.shards.iter().zip(per_shard) {
            if !list.is_empty() && tx.send(ShardMsg::Decisions(list)).await.is_err() {
                return Err(Refusal::Unavailable {
                    message: "gateway is shutting down".into(),
                    retry_after: DEFAULT_RETRY_AFTER,
                });
            }
        }
        self.stats.peers.received_decisions.add(count);
        Ok(count)
    }
}

/// What a scanned request of `body_len` bytes and `spans` spans can be charged once
/// buffered: its body, the copy of its resource and scope headers with their index, its
/// own overhead, and each span's handle, charge and trace (as if each began one). Not the
/// attribute values the plan may record (48 bytes each, charged as recorded).
fn worst_case_charge(body_len: usize, scan: &Scan, spans: u64) -> u64 {
    let headers = scan.headers.len()
        + 8 * (scan.resources.len() + scan.scopes.len())
        + std::mem::size_of::<HeaderRun>() * scan.scopes.len();
    let request = body_len + headers + trace::REQUEST_OVERHEAD_BYTES;
    (request as u64).saturating_add(spans.saturating_mul(span_admission_charge()))
}

/// The smallest span a request can carry: a 16-byte trace id with its tag and length (the
/// span id may be left out), in the span's own field.
const SMALLEST_SPAN_BYTES: u64 = 20;

/// What `worst_case_charge` charges per span beyond the request's bytes: its handle, its
/// charge and a trace of its own. The router cuts requests weighing spans by the same
/// figure (`tailgate_core::wire::split::GATEWAY_SPAN_CHARGE`, held equal by a test).
pub fn span_admission_charge() -> u64 {
    (std::mem::size_of::<IncomingSpan>() as u64)
        + crate::metrics::SPAN_OVERHEAD_BYTES
        + crate::metrics::TRACE_OVERHEAD_BYTES
}

/// What a request of `body_len` bytes may be charged at admission at most: every span the
/// smallest there is, each the start of a trace (`worst_case_charge` without its
/// headers): about fourteen times its size.
pub fn largest_request_charge(body_len: u64) -> u64 {
    let spans = body_len / SMALLEST_SPAN_BYTES;
    body_len.saturating_add(spans.saturating_mul(span_admission_charge()))
}

/// What is wrong, though allowed, in how a config sizes requests against the buffer: a
/// request of `receive.max_request_bytes` of the smallest spans may cost more than the
/// whole buffer, and is then refused for good. Printed by `--check` and at start.
pub fn sizing_warnings(cfg: &crate::config::GatewayConfig) -> Vec<String> {
    let request = cfg.receive.max_request_bytes as u64;
    let charge = largest_request_charge(request);
    let max = cfg.buffer.max_buffered_bytes;
    if charge <= max {
        return Vec::new();
    }
    let smallest = tailgate_core::receive::MIN_REQUEST_BYTES_LIMIT as u64;
    let fit = largest_request_fitting(max);
    if fit < smallest {
        // No request limit the receivers take would fit: only the buffer can change.
        return vec![format!(
            "buffer.max_buffered_bytes ({max}) is smaller than the {need} bytes a request \
             of bare spans of the smallest receive.max_request_bytes ({smallest}) may take \
             once buffered: such requests are refused for good. Raise \
             buffer.max_buffered_bytes to at least {need}",
            need = largest_request_charge(smallest)
        )];
    }
    vec![format!(
        "receive.max_request_bytes ({request}) allows a request of bare spans that may take \
         {charge} bytes once buffered, more than buffer.max_buffered_bytes ({max}): such a \
         request is refused for good. Lower receive.max_request_bytes to {fit} or less, or \
         raise buffer.max_buffered_bytes; routers in front should have forward.max_request_bytes \
         at most {fit} too (they cut what a gateway refuses as too large and send it again, \
         but each refusal costs a round trip)"
    )]
}

/// The largest request whose [`largest_request_charge`] is at most `max`.
fn largest_request_fitting(max: u64) -> u64 {
    let per_span = span_admission_charge();
    // Linear but for the whole spans: start at the line and step down to the first fit.
    let mut r = max.saturating_mul(SMALLEST_SPAN_BYTES) / (SMALLEST_SPAN_BYTES + per_span);
    while r > 0 && largest_request_charge(r) > max {
        r -= 1;
    }
    r
}

/// A request's [`worst_case_charge`], counted in `shard_queue_bytes` while it is admitted:
/// until it returns, by when its spans are queued with charges of their own (or gone to
/// peers).
struct Admitted<'a> {
    stats: &'a GatewayStats,
    bytes: u64,
}

impl<'a> Admitted<'a> {
    fn charge(stats: &'a GatewayStats, bytes: u64) -> Self {
        stats.shard_queue_bytes.add(bytes);
        Admitted { stats, bytes }
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.stats.shard_queue_bytes.sub(self.bytes);
    }
}

impl TraceBuffer {
    /// Buffers the spans of a scanned request in their shards: all or nothing. `valid` is
    /// what a refusal counts as refused. `force` (spans this gateway already accepted and
    /// could not pass on) skips the waiting limit: they must not be lost.
    async fn buffer(
        &self,
        body: &Bytes,
        scan: &Scan,
        valid: u64,
        first_seen: Option<Instant>,
        force: bool,
    ) -> Result<(), Refusal> {
        let plan = self.plan.load();
        let n = self.shards.len();
        let count = scan.spans.len() as u64;
        // Sized for an even spread plus slack, so the vectors do not grow while filling.
        let each = scan.spans.len() / n + scan.spans.len() / 8 + 1;
        let mut per_shard: Vec<Vec<IncomingSpan>> =
            (0..n).map(|_| Vec::with_capacity(each)).collect();
        let resource = self
            .attribute_actions
            .as_deref()
            .and_then(|a| a.resource.as_ref())
            .map(|a| a as &dyn AttributeRewrite);
        let ledger = Some(&self.stats.request_bytes);
        let req = each_incoming_span(body, scan, &plan, ledger, resource, |span| {
            per_shard[Self::shard_of(&span.trace_id, n)].push(span)
        });

        // Reserve room in every shard first: all or nothing.
        let mut permits = Vec::with_capacity(n);
        for (i, spans) in per_shard.iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            let reserve = self.shards[i].reserve();
            let reserved = if force {
                Ok(reserve.await)
            } else {
                tokio::time::timeout(self.enqueue_timeout, reserve).await
            };
            match reserved {
                Ok(Ok(permit)) => permits.push((i, permit)),
                Ok(Err(_)) => {
                    self.stats.refused_spans.add(valid);
                    return Err(Refusal::Unavailable {
                        message: "gateway is shutting down".into(),
                        retry_after: DEFAULT_RETRY_AFTER,
                    });
                }
                Err(_) => {
                    self.stats.refused_spans.add(valid);
                    let message = self.why_shards_wait();
                    self.log_refusal(&message);
                    return Err(Refusal::Overloaded {
                        message,
                        retry_after: DEFAULT_RETRY_AFTER,
                    });
                }
            }
        }
        // Counted as live from the moment they are queued, so "nothing in flight" is never
        // read while spans sit in a shard's channel.
        self.stats.live_spans.add(count);
        for (i, permit) in permits {
            let spans = std::mem::take(&mut per_shard[i]);
            // Charged while they wait, so that requests accepted while the shards are busy
            // count against the limit before the shards buffer them.
            let bytes = shard::queued_bytes(&req, &spans);
            self.stats.shard_queue_bytes.add(bytes);
            permit.send(ShardMsg::Spans {
                req: req.clone(),
                spans,
                first_seen,
                bytes,
            });
        }
        Ok(())
    }

    /// Buffers an already-accepted body here (a part no peer took). Counted as failed if
    /// even that is impossible (the gateway is stopping), never lost silently.
    async fn buffer_here(&self, body: &Bytes, spans: u64, first_seen: Option<Instant>) {
        let mut scan = Scan::default();
        let ok = scan.scan_request(body).is_ok()
            && self.buffer(body, &scan, 0, first_seen, true).await.is_ok();
        if !ok {
            self.stats.peers.failed_spans.add(spans);
        }
    }

    /// Sends each owner its spans of a request: the local part is buffered first (if it is
    /// refused, nothing has been forwarded, so the sender's retry duplicates nothing), then
    /// the other parts go to their owners at once. A part no peer takes stays here.
    async fn route(
        &self,
        body: &Bytes,
        scan: &Scan,
        view: &Arc<PeerView>,
        origin: Origin,
        valid: u64,
        first_seen: Option<Instant>,
    ) -> Result<(), Refusal> {
        let parts = split(&view.ring, body, scan);
        // Parts that stay here are joined: concatenated requests are one request.
        let mut local = BytesMut::new();
        let mut remote = Vec::new();
        for (i, spans, part) in parts {
            match view.owner_of_index(Some(i)) {
                Owner::Local => local.extend_from_slice(&part),
                Owner::Peer(p) => remote.push((p, spans, part)),
            }
        }
        if !local.is_empty() {
            let local = local.freeze();
            let mut scan = Scan::default();
            scan.scan_request(&local)?;
            self.buffer(&local, &scan, valid, first_seen, false).await?;
        }
        let next = match origin {
            Origin::Handoff { hops, age_ms } => Origin::Handoff {
                hops: hops + 1,
                age_ms,
            },
            other => Origin::Forwarded {
                hops: other.hops() + 1,
            },
        };
        let sends = remote.into_iter().map(|(p, spans, part)| async move {
            match self.send_to_peer(view, p, part.clone(), spans, next).await {
                Some(taken) => {
                    self.stats.peers.forwarded_spans.add(taken);
                    None
                }
                None => Some((spans, part)),
            }
        });
        for (spans, part) in futures_util::future::join_all(sends)
            .await
            .into_iter()
            .flatten()
        {
            self.buffer_here(&part, spans, first_seen).await;
        }
        Ok(())
    }

    /// Sends `spans` spans to peer `p`, marked with `origin`. Returns how many it took (the
    /// rest it rejected as invalid, counted here), or `None` when it took nothing: then the
    /// failure is counted and the peer left off the ring until it answers again
    /// ([`Peers::mark_down`]), and the caller keeps them.
    async fn send_to_peer(
        &self,
        view: &PeerView,
        p: usize,
        body: Bytes,
        spans: u64,
        origin: Origin,
    ) -> Option<u64> {
        // `Err(None)`: there is no client for this peer.
        let sent = match view.client(p) {
            Some(c) => c.send_from(body, origin).await.map_err(Some),
            None => Err(None),
        };
        match sent {
            Ok(d) => {
                // A peer's count is its word: never more than what was sent.
                let rejected = d.rejected_spans.min(spans);
                self.stats.peer_rejected_spans.add(rejected);
                Some(spans - rejected)
            }
            Err(Some(ForwardError::Leaving { .. })) => {
                // Kept here for now; leaving the ring starts a pass that takes them to
                // the next owner.
                self.depart(view, p);
                None
            }
            Err(error) => {
                // Off the ring as on the routers': a peer that cannot be reached, or that
                // still fails past the retries; not one refusing for memory (it is up, and
                // the routers keep sending it its traces) nor one that refused this request
                // for good.
                let down = match &error {
                    Some(ForwardError::Unreachable { .. }) => true,
                    Some(ForwardError::GaveUp { status, .. }) => {
                        status.code() != tonic::Code::ResourceExhausted
                    }
                    _ => false,
                };
                self.log_peer_failure(view, p, error.as_ref(), "spans");
                self.stats.peers.failures.add(1);
                if let (true, Some(member), Some(error)) = (down, view.member(p), &error) {
                    self.peers.mark_down(member, &error.to_string());
                }
                None
            }
        }
    }

    /// Logs a failed send of `what` to peer `p` (kept here: spans are decided here, or
    /// handed on by a later pass), at most once a minute with the failures since: one per
    /// request flooded the log (200 lines in two seconds of a drain, a trial). A peer
    /// refusing this gateway's credentials is said as such, on a tally of its own (see
    /// [`Peers::log_refused_credentials`]), so other failures cannot hide it.
    fn log_peer_failure(
        &self,
        view: &PeerView,
        p: usize,
        error: Option<&ForwardError>,
        what: &str,
    ) {
        if let (Some(ForwardError::Rejected { status, .. }), Some(member)) = (error, view.member(p))
        {
            if tailgate_core::forward::is_refused_credentials(status) {
                self.peers.log_refused_credentials(member, status);
                return;
            }
        }
        if let Some(failures) = tailgate_core::retry::Tally::one_more(&self.peer_failures_logged) {
            let error =
                error.map_or_else(|| "no client for this peer".to_owned(), |e| e.to_string());
            tracing::warn!(peer = ?view.member(p), %error, failures, "Sending {what} to a peer failed; kept here. Logged at most once a minute, failed sends to peers since counted.");
        }
    }

    /// Peer `p` of `view` answered that it is leaving the ring: it is routed around from
    /// now on (see [`Peers::depart`]).
    fn depart(&self, view: &PeerView, p: usize) {
        if let Some(member) = view.member(p) {
            self.peers.depart(member);
        }
    }

    /// Hands the traces and decisions that the ring in force gives to other gateways to
    /// them. Called on every ring change, and once more when the gateway stops receiving.
    pub async fn redistribute(&self) {
        let _pass = self.handoffs.read().await;
        let view = self.peers.view_full();
        if !view.routes() || self.handoff_stop.is_cancelled() {
            return;
        }
        let mut traces: HashMap<usize, Vec<shard::HandedTrace>> = HashMap::new();
        let mut decisions: HashMap<usize, Vec<u8>> = HashMap::new();
        for tx in &self.shards {
            let (reply, rx) = oneshot::channel();
            let msg = ShardMsg::Handoff {
                view: view.clone(),
                reply,
            };
            if tx.send(msg).await.is_err() {
                continue;
            }
            let Ok(handed) = rx.await else {
                continue;
            };
            for t in handed.traces {
                traces.entry(t.owner).or_default().push(t);
            }
            for (owner, id, cached) in handed.decisions {
                let out = decisions.entry(owner).or_default();
                out.extend_from_slice(&id);
                let (kept, p) = match cached {
                    Cached::Kept(p) => (1u8, p),
                    Cached::Dropped => (0, 0.0),
                };
                out.push(kept);
                out.extend_from_slice(&p.to_le_bytes());
            }
        }
        let peers = traces
            .keys()
            .chain(decisions.keys())
            .copied()
            .collect::<std::collections::BTreeSet<_>>();
        let sends = peers.into_iter().map(|p| {
            let (view, traces, decisions) = (
                view.clone(),
                traces.remove(&p).unwrap_or_default(),
                decisions.remove(&p).unwrap_or_default(),
            );
            async move {
                // Decisions first: late spans then find them when the traces' own spans
                // arrive there.
                if !decisions.is_empty() {
                    let n = (decisions.len() / DECISION_RECORD_LEN) as u64;
                    let sent = match view.client(p) {
                        Some(c) => tokio::select! {
                            sent = c.send_decisions(Bytes::from(decisions)) => Some(sent),
                            () = self.handoff_stop.cancelled() => None,
                        },
                        None => None,
                    };
                    match sent {
                        Some(Ok(_)) => self.stats.peers.handed_off_decisions.add(n),
                        // The pass the departure starts hands them to the next owner.
                        Some(Err(ForwardError::Leaving { .. })) => self.depart(&view, p),
                        Some(Err(error)) => {
                            self.log_peer_failure(&view, p, Some(&error), "decisions");
                            self.stats.peers.failures.add(1);
                        }
                        None => self.stats.peers.failures.add(1),
                    }
                }
                self.hand_off(&view, p, traces).await;
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// What of the buffer kept spans waiting for a slow or down backend take, for a
    /// refusal's message: per exporter with spans parked (see
    /// [`crate::metrics::ExporterStats::parked_bytes`]) or a failing backend, its parked and
    /// queued bytes (both are pending export: a queue larger than the buffer fills it with
    /// nothing parked); empty when none do.
    fn parked_for(&self) -> String {
        let parked: Vec<String> = self
            .stats
            .exporters()
            .iter()
            .filter_map(|e| {
                let parked = e.parked_bytes.get();
                let queued = e.queue_bytes.get();
                (parked > 0 || (queued > 0 && e.retry.is_failing()))
                    .then(|| format!("{} bytes for exporter {}", parked + queued, e.name))
            })
            .collect();
        if parked.is_empty() {
            String::new()
        } else {
            format!(
                " (kept spans waiting for a slow or down backend hold {})",
                parked.join(", ")
            )
        }
    }

    /// Why a request found a shard's channel full, for its sender and the operator: an
    /// exporter's full queue the shards wait on (its backend slow or down, and the buffer
    /// full of kept spans parked for it), or the shards behind.
    fn why_shards_wait(&self) -> String {
        let waited_on: Vec<String> = self
            .stats
            .exporters()
            .iter()
            .filter(|e| e.waiting.get() > 0)
            .map(|e| e.name.clone())
            .collect();
        if waited_on.is_empty() {
            "the gateway's shards are behind (their queues are full); retry later".into()
        } else {
            format!(
                "the gateway waits for exporter {}: its queue is full (the backend is slow or \
                 down); retry later",
                waited_on.join(", ")
            )
        }
    }

    /// Sends one peer its traces, in requests of traces first seen at about the same time,
    /// a trace too large for one request in several; what the peer does not take is
    /// buffered here again.
    async fn hand_off(&self, view: &PeerView, p: usize, mut traces: Vec<shard::HandedTrace>) {
        traces.sort_unstable_by_key(|t| t.entry.first_seen);
        // Headers compared by address once interned (see `Interner`): traces from many
        // requests, some with copies of one header, would otherwise be compared byte by byte.
        let mut reframer = Reframer::by_address();
        let mut out = BytesMut::new();
        // The next span to send: the `k`th of trace `i`.
        let (mut i, mut k) = (0, 0);
        while i < traces.len() {
            let start = traces[i].entry.first_seen.instant();
            let (mut youngest, mut spans, mut bytes, mut whole) = (start, 0usize, 0u64, 0u64);
            // One interner per request sent: its maps stay within HANDOFF_MAX_SPANS.
            let mut interner = Interner::default();
            let mut parts = Vec::new();
            'fill: while i < traces.len() {
                let t = &traces[i];
                if t.entry.first_seen.instant().duration_since(start) > HANDOFF_AGE_STEP {
                    break;
                }
                for s in t.entry.spans.iter().skip(k) {
                    let s = s.parts();
                    let b = s.span.len() as u64;
                    if spans > 0 && (spans == HANDOFF_MAX_SPANS || bytes + b > HANDOFF_MAX_BYTES) {
                        break 'fill;
                    }
                    parts.push(interner.parts(s));
                    (spans, bytes, k) = (spans + 1, bytes + b, k + 1);
                    youngest = t.entry.first_seen.instant();
                }
                (i, k, whole) = (i + 1, 0, whole + 1);
            }
            // Each resource once, not once per trace (the peer takes all or none: order
            // does not matter).
            group_by_headers(&mut parts);
            reframer.encode(&parts, &mut out);
            let body = out.split().freeze();
            let n = spans as u64;
            let origin = Origin::Handoff {
                hops: 1,
                age_ms: youngest.elapsed().as_millis() as u64,
            };
            // A peer that answered "leaving" during this pass gets nothing more: its
            // traces stay here for the pass its departure started.
            let departed = view.member(p).is_some_and(|m| self.peers.is_away(m));
            let handed = if departed {
                None
            } else {
                self.hand_to_peer(view, p, body.clone(), n, origin).await
            };
            match handed {
                Some(taken) => {
                    self.stats.peers.handed_off_spans.add(taken);
                    // Traces whose last span went in this request.
                    self.stats.peers.handed_off_traces.add(whole);
                }
                None => self.buffer_here(&body, n, Some(youngest)).await,
            }
            self.stats.peers.handoff_pending_spans.sub(n);
        }
    }
}

/// A request of `resources` resources (attributes from `attributes(r)`) of `scopes` scopes
/// each, named `scope-{r}-{sc}`, holding the spans `spans(r, sc)` (tests of which headers
/// spans end up under).
#[cfg(test)]
pub(crate) fn layered_request(
    resources: u8,
    scopes: u8,
    attributes: impl Fn(u8) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
    spans: impl Fn(u8, u8) -> Vec<opentelemetry_proto::tonic::trace::v1::Span>,
) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
    let resource_spans = (0..resources)
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: attributes(r),
                ..Default::default()
            }),
            scope_spans: (0..scopes)
                .map(|sc| ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("scope-{r}-{sc}"),
                        ..Default::default()
                    }),
                    spans: spans(r, sc),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest { resource_spans }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    /// Guarantees: the router weighs spans, when it cuts requests for a gateway, by what
    /// the gateway charges them at admission.
    #[test]
    fn the_routers_span_weight_is_the_admission_charge() {
        assert_eq!(
            span_admission_charge(),
            tailgate_core::wire::split::GATEWAY_SPAN_CHARGE as u64
        );
    }

    /// Scenario: 1 to 16 shards; random trace ids, and only those one gateway of a ring of
    /// three owns (the ring places ids by the same hash).
    /// Guarantees: every id maps to a shard in range, and each shard gets its share within
    /// 5% (a few standard deviations at these counts), for a gateway's share too.
    #[test]
    fn shards_share_a_gateways_traces_evenly() {
        use tailgate_core::ring::Member;
        let ids = tailgate_core::test_util::trace_ids(480_000, 0x9e37_79b9_7f4a_7c15);
        let ring = Ring::new((1..=3).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
        let mine: Vec<&[u8; 16]> = ids
            .iter()
            .filter(|id| ring.owner_index(id) == Some(0))
            .collect();
        for (what, set) in [
            ("all ids", ids.iter().collect::<Vec<_>>()),
            ("one gateway's", mine),
        ] {
            for shards in 1..=16 {
                let mut counts = vec![0usize; shards];
                for id in &set {
                    counts[TraceBuffer::shard_of(id, shards)] += 1;
                }
                let fair = set.len() as f64 / shards as f64;
                for (i, c) in counts.iter().enumerate() {
                    let off = (*c as f64 - fair).abs() / fair;
                    assert!(
                        off <= 0.05,
                        "{what}, shard {i} of {shards}: {c} ids, fair {fair:.0}"
                    );
                }
            }
        }
    }

    fn plan(yaml: &str) -> PolicyPlan {
        PolicyPlan::compile(
            &crate::policy::PolicyFile::parse(std::path::Path::new("p.yaml"), yaml).unwrap(),
        )
    }

    /// Guarantees: what docs/configuration.md says a request is admitted at: its bytes
    /// and headers plus 264 bytes per span (its handle on the way, its charge, a trace).
    #[test]
    fn a_request_is_admitted_at_its_bytes_plus_264_per_span() {
        let scan = Scan::default();
        let base = worst_case_charge(1000, &scan, 0);
        assert_eq!(base, 1000 + trace::REQUEST_OVERHEAD_BYTES as u64);
        assert_eq!(worst_case_charge(1000, &scan, 10) - base, 2640);
    }

    /// `req` encoded, scanned and read as `plan` reads it.
    fn incoming(
        req: &ExportTraceServiceRequest,
        plan: &PolicyPlan,
    ) -> (Arc<RequestBytes>, Vec<IncomingSpan>) {
        let body = Bytes::from(req.encode_to_vec());
        let mut scan = Scan::default();
        scan.scan_request(&body).unwrap();
        incoming_spans(&body, &scan, plan, None)
    }

    /// A buffer under `policies` with one shard's channel: the plan, the counters, the
    /// buffer and what the shard reads.
    fn one_shard(
        policies: &str,
    ) -> (
        crate::reload::SharedPlan,
        std::sync::Arc<GatewayStats>,
        TraceBuffer,
        mpsc::Receiver<shard::ShardMsg>,
    ) {
        let plan: crate::reload::SharedPlan =
            std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(plan(policies)));
        let stats = std::sync::Arc::new(GatewayStats::default());
        let (tx, rx) = mpsc::channel(4);
        let peers = Peers::new(
            Default::default(),
            tailgate_core::ring::Member::new("127.0.0.1:4317"),
            stats.clone(),
        );
        let buffer = TraceBuffer::new(
            plan.clone(),
            vec![tx],
            stats.clone(),
            peers,
            &Default::default(),
        );
        (plan, stats, buffer, rx)
    }

    /// Scenario: one shard, one exporter whose queue holds one batch (a byte: every batch
    /// takes all of it) and is read only when the test says; three requests of 10 kept
    /// traces each, a second apart (`decision_wait` 1 s); then the exporter takes its
    /// batches one at a time, the last after the shard's drain has begun.
    /// Guarantees: the batches the queue has no room for are parked (the exporter's gauge
    /// counts their bytes) while the shard goes on taking requests and deciding; they go
    /// out in order as room comes, without another request to wake the shard; a drain
    /// sends what is still parked before the shard ends; every span arrives once.
    #[tokio::test(start_paused = true)]
    async fn kept_batches_park_while_the_exporters_queue_is_full_and_go_in_order() {
        let (exporter, mut queue, exporter_stats) = crate::export::ExportHandle::for_test(1);
        let shard = parking_shard(vec![exporter], u64::MAX, None);
        let mut firsts = Vec::new();
        for seed in 0..3u64 {
            firsts.push(kept_request(&shard.buffer, 100 + seed).await);
        }
        // The first batch took the queue; the other two wait in the shard.
        assert_eq!(shard.stats.pending_export_spans.get(), 60);
        let parked = exporter_stats.parked_bytes.get();
        assert!(parked > 0, "nothing parked");
        let first = next_batch(&mut queue).await;
        assert!(starts_with_trace(&first, &firsts[0]));
        drop(first);
        let second = next_batch(&mut queue).await;
        assert!(starts_with_trace(&second, &firsts[1]));
        assert!(exporter_stats.parked_bytes.get() < parked);
        shard.drain.cancel();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !shard.running.is_finished(),
            "the drain waits for the parked batch"
        );
        assert!(
            exporter_stats.parked_bytes.get() > 0,
            "the backlog shows through the drain"
        );
        drop(second);
        let third = next_batch(&mut queue).await;
        assert!(starts_with_trace(&third, &firsts[2]));
        assert_eq!(third.spans.len(), 20);
        shard.running.await.unwrap();
        assert_eq!(exporter_stats.parked_bytes.get(), 0);
    }

    /// Scenario: one shard, two exporters whose queues each hold one batch; three requests
    /// of 10 kept traces a second apart; the second exporter takes all its batches (each
    /// settled as delivered) while the first never reads; then the first stops.
    /// Guarantees: the second exporter gets every batch, in order, while the first holds
    /// its queue (one exporter's full queue does not hold back another's); parked copies
    /// are charged against the limits while they wait; once the first exporter stops, the
    /// batches parked for it are counted failed (40 spans) and nothing stays parked or
    /// charged.
    #[tokio::test(start_paused = true)]
    async fn each_exporters_parked_batches_wait_apart_and_a_stopped_one_fails_them() {
        let (a, queue_a, stats_a) = crate::export::ExportHandle::for_test(1);
        let (b, mut queue_b, stats_b) = crate::export::ExportHandle::for_test(1);
        let shard = parking_shard(vec![a, b], u64::MAX, None);
        let mut firsts = Vec::new();
        for seed in 0..3u64 {
            firsts.push(kept_request(&shard.buffer, 200 + seed).await);
        }
        assert!(stats_a.parked_bytes.get() > 0 && stats_b.parked_bytes.get() > 0);
        assert!(shard.stats.parked_copies_bytes.get() > 0);
        for first in &firsts {
            let batch = next_batch(&mut queue_b).await;
            assert!(starts_with_trace(&batch, first));
            for (ticket, _) in &batch.tickets {
                ticket.settle(0, &shard.stats);
            }
        }
        assert_eq!(stats_b.parked_bytes.get(), 0);
        assert!(
            stats_a.parked_bytes.get() > 0,
            "the first exporter's wait on"
        );
        drop(queue_a);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(stats_a.parked_bytes.get(), 0);
        assert_eq!(shard.stats.parked_copies_bytes.get(), 0);
        // Batches 2 and 3: delivered by one exporter, failed by the other.
        assert_eq!(shard.stats.export_failed_spans.get(), 40);
        shard.drain.cancel();
        shard.running.await.unwrap();
    }

    /// Scenario: one shard, one exporter whose queue holds one batch, and a hard limit of
    /// one byte (the gateway is always over it); requests of 10 kept traces, first two with
    /// kept spans sent as they came (no adjusted count), then three with an `attributes:`
    /// action that re-encodes (and so grows) them; the exporter then takes its batches one
    /// by one.
    /// Guarantees: without re-encoding, a shard over the limit goes on deciding (a trial
    /// saw shards just over the limit stop deciding due traces, most of them droppable,
    /// and senders refused for half a minute): every trace decided, the rest parked,
    /// nobody waiting. With it, the shard re-encodes no more while over the limit with
    /// spans parked: it waits for the exporter (counted in its `waiting`, which lets an
    /// exporter give requests up and names it in refusals), its third request undecided,
    /// until room comes; once all have gone the wait is over and nothing is parked.
    #[tokio::test(start_paused = true)]
    async fn over_the_hard_limit_a_shard_waits_only_to_grow_kept_spans() {
        let (exporter, _queue, exporter_stats) = crate::export::ExportHandle::for_test(1);
        let shard = parking_shard_with(
            vec![exporter],
            1,
            None,
            "adjusted_count: {tracestate: false, attribute: false}\n",
        );
        // The first request's batch takes the queue, the second's is parked.
        kept_request(&shard.buffer, 300).await;
        kept_request(&shard.buffer, 302).await;
        assert_eq!(shard.stats.live_spans.get(), 0, "every trace decided");
        assert_eq!(shard.stats.pending_export_spans.get(), 40);
        assert!(exporter_stats.parked_bytes.get() > 0);
        assert_eq!(exporter_stats.waiting.get(), 0);

        let config: crate::attributes::AttributesConfig =
            serde_yaml_ng::from_str("actions: [{key: k, action: insert, value: v}]").unwrap();
        let actions = Arc::new(config.compile().unwrap().unwrap());
        let (exporter, mut queue, exporter_stats) = crate::export::ExportHandle::for_test(1);
        let shard = parking_shard(vec![exporter], 1, Some(actions));
        // The first request's batch takes the queue, the second's is parked; the third
        // finds spans parked and the gateway over its limit.
        for seed in 301..304 {
            kept_request(&shard.buffer, seed).await;
        }
        assert_eq!(exporter_stats.waiting.get(), 1);
        assert_eq!(shard.stats.live_spans.get(), 20, "waiting, not deciding");
        for _ in 0..3 {
            let batch = next_batch(&mut queue).await;
            assert_eq!(batch.spans.len(), 20, "a request's traces at a time");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(exporter_stats.waiting.get(), 0);
        assert_eq!(exporter_stats.parked_bytes.get(), 0);
        assert_eq!(shard.stats.live_spans.get(), 0);
        shard.drain.cancel();
        shard.running.await.unwrap();
    }

    /// Scenario: senders refused for room (here for memory) five times within a minute,
    /// then once more after it.
    /// Guarantees: the refusal is logged (a trial saw 800,000 spans refused and no line
    /// saying so), once a minute at most, with its reason and the requests refused since.
    #[tokio::test(start_paused = true)]
    async fn refusals_for_room_are_logged_once_a_minute() {
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        let (_plan, _stats, buffer, _rx) =
            one_shard("policies: [{name: all, type: always_sample}]\n");
        for _ in 0..5 {
            buffer.log_refusal("gateway buffer is over its limit");
        }
        let text = || String::from_utf8_lossy(&log.text()).into_owned();
        assert_eq!(log.count("Refusing senders"), 1, "{}", text());
        tokio::time::advance(tailgate_core::retry::REWARN_AFTER).await;
        buffer.log_refusal("gateway buffer is over its limit");
        assert_eq!(log.count("over its limit"), 2, "{}", text());
        assert_eq!(log.count("requests=5"), 1, "{}", text());
    }

    /// A running shard keeping every trace (`decision_wait` 1 s), handing kept spans to
    /// `exporters`, under a hard limit of `max_held_bytes`, with `actions` on kept spans:
    /// its counters, the buffer feeding
    /// it, its task and its drain.
    struct ParkingShard {
        stats: std::sync::Arc<GatewayStats>,
        buffer: TraceBuffer,
        running: tokio::task::JoinHandle<()>,
        drain: tokio_util::sync::CancellationToken,
    }

    fn parking_shard(
        exporters: Vec<crate::export::ExportHandle>,
        max_held_bytes: u64,
        actions: Option<Arc<crate::attributes::AttributeActions>>,
    ) -> ParkingShard {
        parking_shard_with(exporters, max_held_bytes, actions, "")
    }

    /// [`parking_shard`] with `more` added to its policy file.
    fn parking_shard_with(
        exporters: Vec<crate::export::ExportHandle>,
        max_held_bytes: u64,
        actions: Option<Arc<crate::attributes::AttributeActions>>,
        more: &str,
    ) -> ParkingShard {
        let (plan, stats, buffer, rx) = one_shard(&format!(
            "decision_wait: 1s\npolicies: [{{name: all, type: always_sample}}]\n{more}"
        ));
        let limits = shard::ShardLimits {
            shards: 1,
            cache_size: 1_000,
            early_decision_bytes: 1 << 30,
            max_spans_per_trace: 1_000,
            max_held_bytes,
        };
        let shard = shard::Shard::new(rx, plan, limits, exporters, stats.clone())
            .with_attribute_actions(actions);
        let drain = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(shard.run(drain.clone()));
        ParkingShard {
            stats,
            buffer,
            running,
            drain,
        }
    }

    /// Sends 10 traces of 2 spans (from `seed`) and waits until they are decided; returns
    /// the first trace's id.
    async fn kept_request(buffer: &TraceBuffer, seed: u64) -> Vec<u8> {
        let req = tailgate_core::test_util::FakeOtlp::traces(10)
            .spans(2)
            .seed(seed)
            .build();
        let first = req.resource_spans[0].scope_spans[0].spans[0]
            .trace_id
            .clone();
        buffer
            .export(Bytes::from(req.encode_to_vec()))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        first
    }

    /// The next batch out of an exporter's queue, within 5 s.
    async fn next_batch(
        queue: &mut mpsc::Receiver<crate::export::ExportBatch>,
    ) -> crate::export::ExportBatch {
        tokio::time::timeout(Duration::from_secs(5), queue.recv())
            .await
            .expect("no batch came")
            .expect("the exporter's queue closed")
    }

    /// Whether a batch's first span is of trace `id`.
    fn starts_with_trace(batch: &crate::export::ExportBatch, id: &[u8]) -> bool {
        batch.spans[0].span().windows(id.len()).any(|w| w == id)
    }

    /// The shard reading `rx`, without exporters, the only one: it may buffer the plan's
    /// `num_traces` traces of at most `max_spans` spans.
    fn shard_reading(
        rx: mpsc::Receiver<shard::ShardMsg>,
        plan: crate::reload::SharedPlan,
        stats: &std::sync::Arc<GatewayStats>,
        max_spans: u32,
    ) -> shard::Shard {
        shard::Shard::new(
            rx,
            plan,
            shard::ShardLimits {
                shards: 1,
                cache_size: 1_000,
                early_decision_bytes: 1 << 30,
                max_spans_per_trace: max_spans,
                max_held_bytes: u64::MAX,
            },
            Vec::new(),
            stats.clone(),
        )
    }

    /// Scenario: a shard whose ring gives every trace it holds to a peer (reachable as far
    /// as it knows) and no hand-off pass that takes them: 5 or more traces due at 1 s, then
    /// a drain, with or without the drain coming before [`shard::MAX_DEFER`]; or handed
    /// over 10 s old (due at once by the hand-over's deadline, then by their own).
    /// Guarantees: a due trace another gateway owns is not decided here while it waits for
    /// a pass; past `MAX_DEFER` it is decided here after all (nothing waits forever), and a
    /// drain decides whatever still waits; each is counted once as deferred.
    #[tokio::test(start_paused = true)]
    async fn a_due_trace_another_gateway_owns_waits_for_a_pass_then_is_decided_here() {
        use tailgate_core::ring::Member;
        for (drain_early, handed) in [(false, false), (true, false), (false, true)] {
            let plan: crate::reload::SharedPlan = Arc::new(arc_swap::ArcSwap::from_pointee(plan(
                "decision_wait: 1s\npolicies: [{name: all, type: always_sample}]\n",
            )));
            let stats = Arc::new(GatewayStats::default());
            let me = Member::new("127.0.0.1:4317");
            let peers = Peers::new(Default::default(), me.clone(), stats.clone());
            peers.set_members(vec![me, Member::new("127.0.0.1:9")]);
            let request = tailgate_core::test_util::FakeOtlp::traces(40)
                .spans(2)
                .seed(5)
                .build();
            let (req, mut spans) = incoming(&request, &plan.load());
            let view = peers.view_full();
            spans.retain(|s| view.owner(&s.trace_id) != Owner::Local);
            spans.truncate(10);
            let traces: std::collections::HashSet<_> = spans.iter().map(|s| s.trace_id).collect();
            let n = traces.len() as u64;
            assert!(n >= 5, "{n}");
            let (tx, rx) = mpsc::channel(4);
            let bytes = shard::queued_bytes(&req, &spans);
            stats.shard_queue_bytes.add(bytes);
            stats.live_spans.add(spans.len() as u64);
            // Handed over 10 s old: due at once by its hand-over deadline, and again at 1 s
            // by its own.
            let first_seen = handed.then(|| Instant::now() - Duration::from_secs(10));
            tx.send(shard::ShardMsg::Spans {
                req,
                spans,
                first_seen,
                bytes,
            })
            .await
            .unwrap();
            let drain = tokio_util::sync::CancellationToken::new();
            let shard = shard_reading(rx, plan, &stats, 1_000).with_peers(peers);
            let run = tokio::spawn(shard.run(drain.clone()));
            // Due at 1 s (or at once); at 2 s still waiting for a pass, counted once.
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(stats.peers.deferred_decisions.get(), n, "handed {handed}");
            assert_eq!(stats.traces_sampled.get(), 0);
            if !drain_early {
                // Past MAX_DEFER from the first deadline: decided here.
                tokio::time::sleep(shard::MAX_DEFER).await;
                assert_eq!(stats.traces_sampled.get(), n);
            }
            drain.cancel();
            run.await.unwrap();
            assert_eq!(stats.traces_sampled.get(), n, "drain_early {drain_early}");
            assert_eq!(stats.peers.deferred_decisions.get(), n);
            assert_eq!(stats.live_traces.get(), 0);
        }
    }

    /// Scenario: a request accepted while its shard has not yet taken it (the channel is
    /// read only afterwards), then the shard buffers it.
    /// Guarantees: while queued its bytes count in `shard_queue_bytes` and in the charge
    /// the limits read, at least its encoded size; once buffered, they leave the queue's
    /// count and are charged as buffered instead.
    #[tokio::test]
    async fn spans_queued_for_a_shard_are_charged() {
        let (plan, stats, buffer, rx) = one_shard("policies: [{name: all, type: always_sample}]\n");
        let body = Bytes::from(
            tailgate_core::test_util::FakeOtlp::traces(50)
                .spans(4)
                .seed(9)
                .build()
                .encode_to_vec(),
        );
        buffer.export(body.clone()).await.unwrap();
        let queued = stats.shard_queue_bytes.get();
        assert!(queued >= body.len() as u64, "{queued}");
        assert!(stats.held_bytes() >= queued);
        assert_eq!(stats.buffered_bytes.get(), 0);
        drop(buffer);
        shard_reading(rx, plan, &stats, 1_000)
            .run(Default::default())
            .await;
        assert_eq!(stats.shard_queue_bytes.get(), 0);
    }

    /// Scenario: a request of 10 spans, two with an all-zero trace id, one with a name that
    /// is not UTF-8.
    /// Guarantees: the sender's partial success counts 3; the gateway counts 2 under
    /// `invalid_trace_id` and 1 under `malformed_span`, as `/metrics` shows them.
    #[tokio::test]
    async fn rejected_spans_are_counted_by_reason() {
        let (_plan, stats, buffer, _rx) =
            one_shard("policies: [{name: all, type: always_sample}]\n");
        let mut req = tailgate_core::test_util::FakeOtlp::traces(10)
            .spans(1)
            .seed(4)
            .build();
        let spans = &mut req.resource_spans[0].scope_spans[0].spans;
        spans[0].trace_id = vec![0; 16];
        spans[1].trace_id = vec![0; 16];
        spans[2].name = "NAMENAME".into();
        let mut body = req.encode_to_vec();
        let at = body.windows(8).position(|w| w == b"NAMENAME").unwrap();
        body[at + 2] = 0xff;
        let accepted = buffer.export(Bytes::from(body)).await.unwrap();
        assert_eq!(accepted.rejected_spans, 3);
        assert_eq!(
            (
                stats.rejected_invalid_id_spans.get(),
                stats.rejected_malformed_spans.get(),
                stats.rejected_spans()
            ),
            (2, 1, 3)
        );
    }

    /// Scenario: one request of 200 resources of one span each, buffered (its shard not yet
    /// reading) by a buffer without `attributes:` actions and by one whose resource action
    /// inserts a 100-byte value; the shard then keeps every trace.
    /// Guarantees: with the action, what it adds to every resource is counted as the
    /// request is buffered, before any trace is decided, in the ledger and so in what the
    /// hard limit reads (the traces are then kept under the same table: see
    /// `trace::tests::kept_traces_of_one_request_share_its_rewritten_resources`); and the
    /// admission check foresees it: a client's request that fits a buffer only without the
    /// table is refused for good with the actions.
    #[tokio::test]
    async fn resource_actions_are_counted_as_a_request_is_buffered() {
        let value = "v".repeat(100);
        let request = layered_request(
            200,
            1,
            |r| vec![tailgate_core::test_util::kv("pod", &format!("pod-{r}"))],
            |r, _| {
                vec![Span {
                    trace_id: vec![r + 1; 16],
                    span_id: vec![r + 1; 8],
                    ..Default::default()
                }]
            },
        );
        let body = Bytes::from(request.encode_to_vec());
        let mut held = Vec::new();
        let insert = format!("resource: [{{key: region, action: insert, value: {value}}}]");
        let compile = |yaml: &String| {
            let config: crate::attributes::AttributesConfig =
                serde_yaml_ng::from_str(yaml).unwrap();
            Arc::new(config.compile().unwrap().unwrap())
        };
        for actions in [None, Some(&insert)] {
            let (plan, stats, buffer, rx) =
                one_shard("policies: [{name: all, type: always_sample}]\n");
            let actions = actions.map(compile);
            let buffer = buffer.with_attribute_actions(actions.clone());
            buffer.export(body.clone()).await.unwrap();
            held.push((stats.request_bytes.get(), stats.held_bytes()));
            drop(buffer);
            let shard = shard_reading(rx, plan, &stats, 1_000).with_attribute_actions(actions);
            shard.run(Default::default()).await;
            // Kept (pending export, as there is no exporter).
            assert_eq!(stats.pending_export_spans.get(), 200);
        }
        let [(plain, plain_held), (with, with_held)] = held[..] else {
            unreachable!()
        };
        // Admission foresees the table: with a buffer the request fits only without the
        // actions, a client's request is refused for good with them, taken without.
        let mut scan = Scan::default();
        scan.scan_request(&body).unwrap();
        let bare = worst_case_charge(body.len(), &scan, 200);
        for (actions, fits) in [(None, true), (Some(&insert), false)] {
            let (plan, stats, _, rx) = one_shard("policies: [{name: all, type: always_sample}]\n");
            drop(rx);
            let config = crate::config::BufferConfig {
                max_buffered_bytes: bare + 1_000,
                ..Default::default()
            };
            let (tx, rx) = mpsc::channel(4);
            let peers = Peers::new(
                Default::default(),
                tailgate_core::ring::Member::new("127.0.0.1:4317"),
                stats.clone(),
            );
            let buffer = TraceBuffer::new(plan, vec![tx], stats, peers, &config)
                .with_attribute_actions(actions.map(&compile));
            let answer = buffer.export(body.clone()).await;
            assert_eq!(answer.is_ok(), fits, "{answer:?}");
            if !fits {
                assert!(
                    matches!(answer, Err(Refusal::TooLarge { .. })),
                    "{answer:?}"
                );
            }
            drop(rx);
        }
        // Each resource grows by the attribute (key, value and framing: 110 bytes), and the
        // table holds a copy of the headers.
        assert!(with >= plain + 200 * 110, "{plain} {with}");
        assert!(
            with_held >= plain_held + 200 * 110,
            "{plain_held} {with_held}"
        );
    }

    /// Runs one shard that may buffer 10 traces of at most `max_spans` spans under
    /// `policies` (no exporters), sending it one request per `(traces, spans per trace,
    /// seed)` of `requests`, then stops it.
    async fn shard_over_its_trace_limit(
        policies: &str,
        requests: &[(usize, usize, u64)],
        max_spans: u32,
    ) -> std::sync::Arc<GatewayStats> {
        let (plan, stats, buffer, rx) = one_shard(&format!("num_traces: 10\n{policies}"));
        for &(traces, spans, seed) in requests {
            let body = Bytes::from(
                tailgate_core::test_util::FakeOtlp::traces(traces)
                    .spans(spans)
                    .seed(seed)
                    .build()
                    .encode_to_vec(),
            );
            buffer.export(body).await.unwrap();
        }
        drop(buffer);
        shard_reading(rx, plan, &stats, max_spans)
            .run(Default::default())
            .await;
        stats
    }

    /// A span of trace `trace` (its first byte `sender`), span `span`, under `parent`
    /// (none: a root), with an error when `error`.
    fn span_of(sender: u8, trace: u8, span: u8, parent: Option<u8>, error: bool) -> Span {
        use opentelemetry_proto::tonic::trace::v1::Status;
        let mut trace_id = [sender; 16];
        trace_id[15] = trace;
        let span_id = |n: u8| vec![sender, trace, n, 1, 1, 1, 1, 1];
        Span {
            trace_id: trace_id.to_vec(),
            span_id: span_id(span),
            parent_span_id: parent.map(span_id).unwrap_or_default(),
            name: "op".into(),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_001_000_000,
            status: error.then_some(Status {
                code: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Scenario: a shard that keeps traces with an error, over its trace limit (the
    /// policy file's `num_traces` 20) or its byte limit (8 KiB): one sender's 8 traces
    /// arrive as three children each, their error roots to come later (an SDK sends a
    /// root when it ends, after its children); another sender's 60 one-span traces follow
    /// in requests of 4, then the 8 roots; then `decision_wait` (2 s) passes.
    /// Guarantees: early decisions take the traces whose root has arrived first, so the
    /// waiting traces stay until their roots come and all 8 are kept whole (by age alone
    /// they were decided on their children, not kept, and their roots dropped late: the
    /// flood of a security.md trial); the one-span traces are decided early and counted.
    /// A drain before the roots come decides the waiting traces too.
    #[tokio::test(start_paused = true)]
    async fn early_decisions_take_traces_with_their_root_first() {
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        // A drain while the 8 traces wait for their roots: every trace is decided.
        let (stats, drain, running, _buffer) = flooded(20, 1 << 30).await;
        assert_eq!(stats.early_decisions.get(), 48);
        drain.cancel();
        running.await.unwrap();
        assert_eq!(stats.traces_not_sampled.get(), 68);
        assert_eq!(stats.live_traces.get(), 0);
        assert_eq!(stats.live_spans.get(), 0);
        for (num_traces, early_decision_bytes) in [(20, 1 << 30), (1_000_000, 8 << 10)] {
            let (stats, drain, running, buffer) = flooded(num_traces, early_decision_bytes).await;
            let body = layered_request(
                1,
                1,
                |_| Vec::new(),
                |_, _| (0..8).map(|t| span_of(1, t, 0, None, true)).collect(),
            );
            buffer
                .export(Bytes::from(body.encode_to_vec()))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let early = stats.early_decisions.get() + stats.early_decisions_memory.get();
            assert_eq!(
                stats.traces_sampled.get(),
                8,
                "limits {num_traces} traces, {early_decision_bytes} bytes: {early} early"
            );
            assert_eq!(stats.pending_export_spans.get(), 8 * 4);
            assert_eq!(stats.late_dropped_spans.get(), 0);
            assert!(early >= 30, "{early} decided early");
            assert_eq!(stats.traces_not_sampled.get(), 60);
            drain.cancel();
            running.await.unwrap();
        }
        // Early decisions for memory are said once a minute (here once: the byte-limited
        // case), as those for num_traces.
        assert_eq!(log.count("share of buffer.early_decision_bytes"), 1);
        assert_eq!(log.count("Raise num_traces"), 2);
    }

    /// A running shard keeping traces with an error, within `num_traces` and
    /// `early_decision_bytes`, that has taken 8 traces of three children waiting for their
    /// roots, then 60 one-span traces in requests of 4, 10 ms apart.
    async fn flooded(
        num_traces: usize,
        early_decision_bytes: u64,
    ) -> (
        std::sync::Arc<GatewayStats>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
        TraceBuffer,
    ) {
        flooded_with(num_traces, early_decision_bytes, |_| {}).await
    }

    /// A shard (not started) keeping traces with an error after `decision_wait` 2 s,
    /// within `num_traces` and `early_decision_bytes`, with the buffer in front of it.
    fn keeping_errors(
        num_traces: usize,
        early_decision_bytes: u64,
    ) -> (
        crate::reload::SharedPlan,
        std::sync::Arc<GatewayStats>,
        TraceBuffer,
        shard::Shard,
    ) {
        let errors = "decision_wait: 2s\npolicies: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]\n";
        let (plan, stats, buffer, rx) = one_shard(&format!("num_traces: {num_traces}\n{errors}"));
        let limits = shard::ShardLimits {
            shards: 1,
            cache_size: 1_000,
            early_decision_bytes,
            max_spans_per_trace: 1_000,
            max_held_bytes: u64::MAX,
        };
        let shard = shard::Shard::new(rx, plan.clone(), limits, Vec::new(), stats.clone());
        (plan, stats, buffer, shard)
    }

    /// [`flooded`], with `between` given the plan in force after the 8 traces are in and
    /// before the flood.
    async fn flooded_with(
        num_traces: usize,
        early_decision_bytes: u64,
        between: impl FnOnce(&crate::reload::SharedPlan),
    ) -> (
        std::sync::Arc<GatewayStats>,
        tokio_util::sync::CancellationToken,
        tokio::task::JoinHandle<()>,
        TraceBuffer,
    ) {
        let (plan, stats, buffer, shard) = keeping_errors(num_traces, early_decision_bytes);
        let drain = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(shard.run(drain.clone()));
        let send = |spans: Vec<Span>| {
            let body = layered_request(1, 1, |_| Vec::new(), |_, _| spans.clone());
            buffer.export(Bytes::from(body.encode_to_vec()))
        };
        send(
            (0..8)
                .flat_map(|t| (1..4).map(move |c| span_of(1, t, c, Some(0), false)))
                .collect(),
        )
        .await
        .unwrap();
        // Taken (buffered under the wait in force) before `between`.
        tokio::time::sleep(Duration::from_millis(10)).await;
        between(&plan);
        for batch in 0..15u8 {
            send(
                (0..4)
                    .map(|t| span_of(2, batch * 4 + t, 0, None, false))
                    .collect(),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (stats, drain, running, buffer)
    }

    /// Scenario: as [`early_decisions_take_traces_with_their_root_first`] (trace limit),
    /// but `decision_wait` is reloaded from 2 s to 60 s after the 8 waiting traces arrived
    /// and before the flood passes them over; no root ever comes.
    /// Guarantees: a trace passed over keeps the deadline it had (a reload changes the
    /// wait of new traces only): the 8 are decided at 2 s, while the 12 newest one-span
    /// traces, which came under the 60 s wait, are still buffered at 3 s.
    #[tokio::test(start_paused = true)]
    async fn traces_passed_over_keep_their_deadline_through_a_reload() {
        let (stats, drain, running, _buffer) = flooded_with(20, 1 << 30, |shared| {
            shared.store(std::sync::Arc::new(plan(
                "num_traces: 20\ndecision_wait: 60s\npolicies: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]\n",
            )));
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(stats.early_decisions.get(), 48);
        assert_eq!(stats.traces_not_sampled.get(), 48 + 8);
        assert_eq!(stats.live_traces.get(), 12);
        drain.cancel();
        running.await.unwrap();
    }

    /// Scenario: 50 traces of three children each, none with its root, reach a shard
    /// that may buffer 10 and keeps traces with an error; then their 50 error roots.
    /// Guarantees: with no trace holding its root, early decisions take the oldest of
    /// those waiting: exactly the first 40 are decided early (not kept; their roots follow
    /// that decision), and the 10 newest wait for their roots and are kept whole.
    #[tokio::test(start_paused = true)]
    async fn without_roots_the_oldest_waiting_traces_are_decided_early() {
        let (shared, stats, buffer, rx) = one_shard(
            "num_traces: 10\ndecision_wait: 2s\npolicies: [{name: e, type: status_code, status_code: {status_codes: [ERROR]}}]\n",
        );
        let running =
            tokio::spawn(shard_reading(rx, shared, &stats, 1_000).run(Default::default()));
        for spans in [
            (0..50)
                .flat_map(|t| (1..4).map(move |c| span_of(3, t, c, Some(0), false)))
                .collect::<Vec<_>>(),
            (0..50).map(|t| span_of(3, t, 0, None, true)).collect(),
        ] {
            let body = layered_request(1, 1, |_| Vec::new(), |_, _| spans.clone());
            buffer
                .export(Bytes::from(body.encode_to_vec()))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(stats.early_decisions.get(), 40);
        assert_eq!(stats.traces_not_sampled.get(), 40);
        assert_eq!(stats.late_dropped_spans.get(), 40);
        assert_eq!(stats.traces_sampled.get(), 10);
        assert_eq!(stats.pending_export_spans.get(), 10 * 4);
        drop(buffer);
        running.await.unwrap();
    }

    /// Scenario: a shard that keeps traces with an error, over its trace limit (20) or
    /// its byte limit (8 KiB). A shop's 8 traces arrive as three children each, under the
    /// shop's resource, their error roots to come; then a flood of 60 orphans (one-span
    /// traces whose parent never comes) under a resource of its own, in requests of 4;
    /// then the 8 roots; then `decision_wait` (2 s) passes.
    /// Guarantees: no trace has its root when the limits are passed, so early decisions
    /// take traces of the resource group holding over an eighth of them: the orphans'
    /// (the two resources are in different groups). The shop's 8 wait
    /// for their roots and are kept whole (by age alone they were decided on their
    /// children and their roots dropped late: an orphan flood of a security.md trial).
    #[tokio::test(start_paused = true)]
    async fn a_flood_of_orphans_pays_for_its_own_early_decisions() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        let service = |name: &str| {
            let name = name.to_owned();
            move |_| {
                vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(name.clone())),
                    }),
                    ..Default::default()
                }]
            }
        };
        // The resources' headers as the shard hashes them: a `ResourceSpans` but its spans.
        let header = |name: &str| {
            opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: service(name)(0),
                    ..Default::default()
                }),
                ..Default::default()
            }
            .encode_to_vec()
        };
        let groups = spared::Spared::default();
        assert_ne!(
            groups.group_of(&header("shop")),
            groups.group_of(&header("orphans"))
        );
        for (num_traces, early_decision_bytes) in [(20, 1 << 30), (1_000_000, 8 << 10)] {
            let (_, stats, buffer, shard) = keeping_errors(num_traces, early_decision_bytes);
            let running = tokio::spawn(shard.run(Default::default()));
            let send = |name: &str, spans: Vec<Span>| {
                let body = layered_request(1, 1, service(name), |_, _| spans.clone());
                buffer.export(Bytes::from(body.encode_to_vec()))
            };
            let children = (0..8)
                .flat_map(|t| (1..4).map(move |c| span_of(1, t, c, Some(0), false)))
                .collect();
            send("shop", children).await.unwrap();
            for batch in 0..15u8 {
                let orphans = (0..4)
                    .map(|t| span_of(2, batch * 4 + t, 1, Some(0), false))
                    .collect();
                send("orphans", orphans).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let roots = (0..8).map(|t| span_of(1, t, 0, None, true)).collect();
            send("shop", roots).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            let early = stats.early_decisions.get() + stats.early_decisions_memory.get();
            let limits = format!("limits {num_traces} traces, {early_decision_bytes} bytes");
            assert!(early >= 30, "{limits}: {early} decided early");
            assert_eq!(stats.traces_sampled.get(), 8, "{limits}: {early} early");
            assert_eq!(stats.pending_export_spans.get(), 8 * 4, "{limits}");
            assert_eq!(stats.late_dropped_spans.get(), 0, "{limits}");
            assert_eq!(stats.traces_not_sampled.get(), 60, "{limits}");
            drop(buffer);
            running.await.unwrap();
        }
    }

    /// Scenario: one request of 50 four-span traces reaches a shard that may buffer 10,
    /// under a plan that keeps nothing, then under one that keeps everything; then the
    /// shard stops.
    /// Guarantees: exactly the 40 oldest are decided early (reading ahead of them decides
    /// nothing extra), every decision is counted once, and the gauges a decision lowers
    /// (counted by the shard and added in batches) are back at zero; kept spans all reach
    /// the exporters' side (pending, as there are none here), dropped ones are dropped.
    #[tokio::test]
    async fn traces_past_the_limit_are_decided_early_and_counted_once() {
        let none = "policies: [{name: none, type: probabilistic, probabilistic: {sampling_percentage: 0}}]\n";
        let all = "policies: [{name: all, type: always_sample}]\n";
        let drop = "policies: [{name: all, type: always_sample}, {name: d, type: drop, drop: {drop_sub_policy: [{name: any, type: always_sample}]}}]\n";
        // (policies, sampled, not sampled, dropped by a drop policy)
        for (policies, sampled, not, dropped) in
            [(none, 0, 50, 0), (all, 50, 0, 0), (drop, 0, 0, 50)]
        {
            let stats = shard_over_its_trace_limit(policies, &[(50, 4, 3)], 1_000).await;
            assert_eq!(stats.early_decisions.get(), 40, "{policies}");
            assert_eq!(stats.traces_sampled.get(), sampled);
            assert_eq!(stats.traces_not_sampled.get(), not);
            assert_eq!(stats.traces_dropped.get(), dropped);
            assert_eq!(stats.dropped_spans.get(), 4 * (not + dropped));
            assert_eq!(stats.pending_export_spans.get(), 4 * sampled);
            assert_eq!(stats.live_spans.get(), 0);
            assert_eq!(stats.live_traces.get(), 0);
            assert_eq!(stats.buffered_bytes.get(), 0);
        }
    }

    /// Scenario: ten traces reach their span limit and are decided at once (their
    /// deadlines stay queued), then 50 more arrive at a shard that may buffer 10.
    /// Guarantees: the early decisions pass over the ten already decided without
    /// counting them: 40, as without them.
    #[tokio::test]
    async fn traces_decided_already_are_not_counted_as_early_decisions() {
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        let stats = shard_over_its_trace_limit(
            "policies: [{name: all, type: always_sample}]\n",
            &[(10, 4, 1), (50, 3, 2)],
            4,
        )
        .await;
        assert_eq!(stats.early_decisions_span_limit.get(), 10);
        assert_eq!(stats.early_decisions.get(), 40);
        assert_eq!(stats.traces_sampled.get(), 60);
        assert_eq!(stats.pending_export_spans.get(), 40 + 150);
        assert_eq!(stats.live_spans.get(), 0);
        // Said once (the first batch over the limit), naming the setting to raise; the
        // later batches' early decisions are counted toward the next line, a minute on.
        assert_eq!(log.count("Deciding traces early"), 1);
        assert_eq!(log.count("Raise num_traces"), 1);
    }

    /// Scenario: one thread's spare scan reads a request with a rejected span, its spans
    /// are made, then the same scan (given back and taken again) reads a clean request.
    /// Guarantees: the scan is reused (its span list keeps its room); the first request's
    /// spans still read their own resource and scope headers and bytes; nothing of the
    /// first request's rejection carries over to the second's answer.
    #[test]
    fn a_reused_scan_leaves_earlier_spans_intact() {
        use tailgate_core::test_util::FakeOtlp;
        let plan = plan("policies: [{name: all, type: always_sample}]\n");
        let first = Bytes::from(
            FakeOtlp::traces(4)
                .spans(3)
                .resources(2)
                .seed(1)
                .build()
                .encode_to_vec(),
        );
        let second = Bytes::from(
            FakeOtlp::traces(9)
                .spans(2)
                .resources(3)
                .seed(2)
                .build()
                .encode_to_vec(),
        );
        // One span of the first request gets an all-zero trace id: rejected.
        let mut first = first.to_vec();
        let zero_from = first.windows(2).position(|w| w == [0x0a, 0x10]).unwrap() + 2;
        first[zero_from..zero_from + 16].fill(0);
        let first = Bytes::from(first);
        let mut scan = SpareScan::take();
        let scanned = scan.scan_request(&first).unwrap();
        assert_eq!((scanned.valid, scanned.rejected), (11, 1));
        let (rb, incoming) = incoming_spans(&first, &scan, &plan, None);
        let spans: Vec<BufferedSpan> = incoming.iter().map(|s| s.buffered(&rb)).collect();
        let expected: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = spans
            .iter()
            .map(|s| {
                let p = s.parts();
                (p.resource.to_vec(), p.scope.to_vec(), p.span.to_vec())
            })
            .collect();
        let room = scan.spans.capacity();
        drop(scan);
        let mut again = SpareScan::take();
        assert_eq!(again.spans.capacity(), room, "the spare was not reused");
        let scanned = again.scan_request(&second).unwrap();
        assert_eq!((scanned.valid, scanned.rejected), (18, 0));
        assert_eq!(scanned.message, "");
        assert_eq!((again.rejected, again.first_defect.is_none()), (0, true));
        for (s, (resource, scope, span)) in spans.iter().zip(&expected) {
            let p = s.parts();
            assert_eq!(
                (p.resource, p.scope, p.span),
                (&resource[..], &scope[..], &span[..])
            );
        }
    }

    /// Scenario: a thread's spare scan reads a request whose resource carries 1 MiB of
    /// attributes and 20,000 spans, and is given back.
    /// Guarantees: what the thread keeps is bounded as docs/configuration.md says: room
    /// for at most [`SPARE_HEADERS`] of headers and [`Scan::RETAINED_SPANS`] spans.
    #[test]
    fn a_spare_scan_keeps_bounded_room() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use tailgate_core::test_util::{kv, FakeOtlp};
        let mut req = FakeOtlp::traces(20_000).spans(1).attrs(0).seed(9).build();
        req.resource_spans[0].resource = Some(Resource {
            attributes: vec![kv("big", &"x".repeat(1 << 20))],
            ..Default::default()
        });
        let body = Bytes::from(req.encode_to_vec());
        let mut scan = SpareScan::take();
        scan.scan_request(&body).unwrap();
        assert!(scan.headers.len() > 1 << 20);
        assert_eq!(scan.spans.len(), 20_000);
        drop(scan);
        let again = SpareScan::take();
        assert!(
            again.headers.capacity() <= SPARE_HEADERS,
            "{}",
            again.headers.capacity()
        );
        assert!(
            again.spans.capacity() <= Scan::RETAINED_SPANS,
            "{}",
            again.spans.capacity()
        );
    }

    /// Scenario: a request of two resources of three scopes each (the middle one without
    /// spans), two spans per scope; its spans re-encoded as a kept trace's are.
    /// Guarantees: each span is under its own resource's and scope's headers, found from
    /// where it lies in the body (spans carry no header indices), and still after the
    /// re-encoding, whose body is laid out anew.
    #[test]
    fn spans_find_their_resource_and_scope_by_offset() {
        let req = layered_request(
            2,
            3,
            |r| {
                vec![tailgate_core::test_util::kv(
                    "service.name",
                    &format!("res-{r}"),
                )]
            },
            |r, sc| {
                (0..if sc == 1 { 0 } else { 2 })
                    .map(|n| Span {
                        trace_id: vec![1 + n as u8; 16],
                        span_id: vec![1; 8],
                        name: format!("span-{r}-{sc}-{n}"),
                        ..Default::default()
                    })
                    .collect()
            },
        );
        let (rb, spans) = incoming(
            &req,
            &plan("policies: [{name: all, type: always_sample}]\n"),
        );
        assert_eq!(spans.len(), 8);
        let has =
            |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        let check = |spans: &[BufferedSpan]| {
            for s in spans {
                let p = s.parts();
                let at = p.span.windows(5).position(|w| w == b"span-").unwrap();
                let name = std::str::from_utf8(&p.span[at..at + 10]).unwrap();
                let (r, sc) = (&name[5..6], &name[7..8]);
                assert!(has(p.resource, &format!("res-{r}")), "{name}");
                assert!(has(p.scope, &format!("scope-{r}-{sc}")), "{name}");
                assert!(!has(p.scope, "span-"), "{name}: a header, not spans");
            }
        };
        let buffered: Vec<BufferedSpan> = spans.iter().map(|s| s.buffered(&rb)).collect();
        check(&buffered);
        // Every span but the first, so that offsets move in the new body.
        let mut out = Vec::new();
        let refs: Vec<_> = buffered[1..].iter().map(BufferedSpan::as_ref).collect();
        BufferedSpan::rewrite_all(
            &refs,
            |span, buf| buf.extend_from_slice(span),
            None,
            &mut out,
        );
        assert_eq!(out.len(), 7);
        check(&out);
    }

    /// Scenario: a resource repeats the key a policy reads 3,000 times, over 1,000 spans
    /// that repeat it too (finding: resource values were copied onto every span, spans ×
    /// entries, before any limit saw them).
    /// Guarantees: as pdata's `Get`, only the first entry of a key is read: each span
    /// records one value of its own and one of its resource's, the first ones.
    #[test]
    fn a_repeated_key_is_read_once_per_span_and_resource() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        let yaml = "policies:\n  - {name: s, type: string_attribute, string_attribute: {key: service.name, values: [a]}}\n";
        let plan = plan(yaml);
        let attr = |v: String| KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v)),
            }),
            ..Default::default()
        };
        let repeated = |n: usize| (0..n).map(|i| attr(format!("v{i}"))).collect::<Vec<_>>();
        let spans = (0..1_000u32)
            .map(|i| Span {
                trace_id: vec![1; 16],
                span_id: i.to_be_bytes().repeat(2),
                attributes: repeated(5),
                ..Default::default()
            })
            .collect();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: repeated(3_000),
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (_, spans) = incoming(&req, &plan);
        assert_eq!(spans.len(), 1_000);
        for s in &spans {
            assert_eq!(s.attrs.len(), 2);
            assert!(s.attrs.iter().all(|a| a.value.as_str() == b"v0"));
            assert_eq!(s.attrs.iter().filter(|a| a.from_resource).count(), 1);
        }
    }

    #[test]
    fn span_fields_the_plan_reads_become_attributes() {
        let yaml = "policies:\n  - name: a\n    type: adaptive_rate\n    adaptive_rate: {target_traces_per_second: 10, keys: [root.name]}\n  - {name: t, type: trace_state, trace_state: {key: tier, values: [gold]}}\n  - {name: f, type: trace_flags}\n";
        let plan = plan(yaml);
        let span = |id: u8, parent: Option<u8>, name: &str, ts: &str, flags: u32| Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            trace_state: ts.into(),
            flags,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(1, None, "GET /cart", "tier=gold", 0x101),
                        span(2, Some(1), "SELECT", "tier=silver", 0),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (_, spans) = incoming(&req, &plan);
        let keys = plan.attribute_keys();
        let key = |k: &str| keys.iter().position(|x| x == k).unwrap() as u16;
        let root = &spans[0].attrs;
        assert!(root.contains(&TraceAttr {
            key: key(crate::policy::field_keys::ROOT_NAME),
            value: AttrValue::Str(Bytes::from_static(b"GET /cart")),
            from_resource: false,
            from_root: true,
        }));
        assert!(root
            .iter()
            .any(|a| a.key == key("\0tracestate:tier") && a.value.as_str() == b"gold"));
        assert!(root
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::SAMPLED_FLAG)));
        // The child: no root name, its own tracestate value, no sampled flag.
        let child = &spans[1].attrs;
        assert!(!child
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::ROOT_NAME)));
        assert!(child
            .iter()
            .any(|a| a.key == key("\0tracestate:tier") && a.value.as_str() == b"silver"));
        assert!(!child
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::SAMPLED_FLAG)));
    }
}
