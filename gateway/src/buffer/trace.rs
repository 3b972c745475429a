//! A buffered trace: its spans as encoded bytes, and the small summary the policies read.
//!
//! A span is kept as a reference to its request's bytes plus offsets: its own bytes are a
//! range of the request body, its resource and scope headers ranges of one header buffer
//! shared by the spans of that request, so nothing is copied per span. Which headers a
//! span is under follows from where it is in the body (a scope's spans lie together), so
//! a span does not carry their indices.

use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use tailgate_core::wire::attrs::AttrValue;
use tailgate_core::wire::span_fields::{write_resource_header, AttributeRewrite};
use tailgate_core::wire::SpanParts;

/// One attribute value seen in a trace, for the attribute policies.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceAttr {
    /// Index into the plan's attribute keys.
    pub key: u16,
    /// The value.
    pub value: AttrValue,
    /// Whether it came from a resource (else from a span).
    pub from_resource: bool,
    /// Whether it came from the root span or the root span's resource.
    pub from_root: bool,
}

/// How many of a trace's most recent attribute values a new value is compared with before
/// it is recorded. Repeats (a resource's values on each of its spans) are almost always
/// recent, and a bounded look-back keeps recording linear in the trace's size; a value
/// recorded twice changes no verdict.
const DEDUP_WINDOW: usize = 32;

/// The bytes of one request that its spans point into: the request body (spans are ranges
/// of it) and one buffer holding every resource and scope header of the request.
#[derive(Debug)]
pub struct RequestBytes {
    /// The request body, or a buffer of re-encoded spans.
    pub body: Bytes,
    /// Resource and scope headers.
    pub headers: Bytes,
    /// Ranges in `headers`: the resources' and the scopes', indexed by [`HeaderRun`].
    /// Shared with the re-encoded copies of the request's kept spans, so a rewrite costs
    /// what its trace holds, not what the request held.
    pub header_ranges: Arc<[(u32, u32)]>,
    /// Which headers the spans of `body` are under, by where they start (increasing).
    pub runs: Box<[HeaderRun]>,
    /// What each span pointing into these bytes is charged beyond its own bytes: its
    /// share, rounded up, of what the request holds besides its spans' own bytes (see
    /// [`BufferedSpan`]). Kept here once instead of in every span.
    pub span_overhead: u32,
    /// The body's (and the header index's) count in the [`RequestLedger`].
    body_counted: Counted,
    /// The headers' count, shared with re-encoded copies that keep the same headers.
    headers_counted: Arc<Counted>,
    /// The headers with their resources rewritten by the `attributes.resource` actions:
    /// written as the buffer takes the request ([`Self::rewrite_resources`]), or else when
    /// its first trace is kept (`None` inside: they could not be, see
    /// [`rewritten_run_headers`]).
    rewritten: std::sync::OnceLock<Option<Arc<RewrittenTable>>>,
}

/// Bytes counted in a [`RequestLedger`] (if any) for as long as this lives.
#[derive(Debug)]
struct Counted {
    held: u64,
    ledger: Option<Arc<RequestLedger>>,
}

impl Counted {
    fn new(held: usize, ledger: Option<&Arc<RequestLedger>>) -> Self {
        let held = held as u64;
        if let Some(ledger) = ledger {
            ledger.add(held);
        }
        Counted {
            held,
            ledger: ledger.cloned(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(ledger) = &self.ledger {
            ledger.sub(self.held);
        }
    }
}

/// The bytes of every request alive, counted from when its spans are made until the last
/// of them (buffered, queued, or on its way to a backend) lets it go.
///
/// A span's charge leaves the limits when the span does, but a request's memory is freed
/// only with its last span: when most of a request leaves at once (late spans of decided
/// traces, a trace over `maximum_trace_size_bytes`) and one small span stays for its
/// `decision_wait`, that span holds the whole body. The hard limit reads the larger of the
/// spans' charges and this (`GatewayStats::held_bytes`). Signed only so that a bug could
/// not wrap it: each count is added before the request exists and taken off when it goes.
#[derive(Debug, Default)]
pub struct RequestLedger(std::sync::atomic::AtomicI64);

impl RequestLedger {
    fn add(&self, n: u64) {
        self.0.fetch_add(
            i64::try_from(n).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn sub(&self, n: u64) {
        self.0.fetch_sub(
            i64::try_from(n).unwrap_or(i64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Bytes of the requests alive.
    pub fn get(&self) -> u64 {
        u64::try_from(self.0.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0)
    }
}

/// The spans of a body from offset `from` on (up to the next run's) are under the resource
/// header `resource` and the scope header `scope` (indices into
/// [`RequestBytes::header_ranges`]). A request has one run per scope holding spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRun {
    /// Where the run's first span starts in the body.
    pub from: u32,
    /// Its resource header's index.
    pub resource: u32,
    /// Its scope header's index.
    pub scope: u32,
}

impl HeaderRun {
    /// Adds the span starting at `from` under (`resource`, `scope`) to `runs`, whose spans
    /// come in body order: a new run only when its headers differ from the last run's.
    pub fn extend(runs: &mut Vec<HeaderRun>, from: u32, resource: u32, scope: u32) {
        if runs
            .last()
            .is_none_or(|r| (r.resource, r.scope) != (resource, scope))
        {
            runs.push(HeaderRun {
                from,
                resource,
                scope,
            });
        }
    }
}

impl RequestBytes {
    /// A request's bytes, their overhead shared out over its `n` spans of `own` bytes in
    /// all, so that the charges of its spans add up to what it holds (rounded up by less
    /// than a byte per span).
    pub fn shared(
        body: Bytes,
        headers: Bytes,
        header_ranges: Arc<[(u32, u32)]>,
        runs: Vec<HeaderRun>,
        own: usize,
        n: usize,
        ledger: Option<&Arc<RequestLedger>>,
    ) -> Arc<Self> {
        let runs = runs.into_boxed_slice();
        let body_held = Self::body_held(&body, &runs);
        let headers_held = Self::headers_held(&headers, &header_ranges);
        let span_overhead = (body_held + headers_held)
            .saturating_sub(own)
            .div_ceil(n.max(1));
        Arc::new(RequestBytes {
            body_counted: Counted::new(body_held, ledger),
            headers_counted: Arc::new(Counted::new(headers_held, ledger)),
            body,
            headers,
            header_ranges,
            runs,
            span_overhead: u32::try_from(span_overhead).unwrap_or(u32::MAX),
            rewritten: std::sync::OnceLock::new(),
        })
    }

    /// What a body and its header runs hold, with the request's own overhead.
    fn body_held(body: &Bytes, runs: &[HeaderRun]) -> usize {
        body.len() + std::mem::size_of_val(runs) + REQUEST_OVERHEAD_BYTES
    }

    /// What headers and their index hold.
    fn headers_held(headers: &Bytes, ranges: &[(u32, u32)]) -> usize {
        headers.len() + std::mem::size_of_val(ranges)
    }

    /// The index of the resource header the span starting at `from` is under
    /// (`u32::MAX` before every run: no span of a scanned request is).
    pub fn resource_at(&self, from: u32) -> u32 {
        let i = self.runs.partition_point(|r| r.from <= from);
        i.checked_sub(1)
            .and_then(|i| self.runs.get(i))
            .map_or(u32::MAX, |r| r.resource)
    }

    /// What a span at `range` of this request is charged: its own bytes and its share of
    /// the request's overhead (see [`BufferedSpan`]).
    fn span_charge(&self, range: SpanRange) -> usize {
        range.len as usize + self.span_overhead as usize
    }

    /// The (resource, scope) header indices of the span starting at `start`; out of range
    /// (no header) before the first run.
    fn headers_at(&self, start: u32) -> (u32, u32) {
        let i = self.runs.partition_point(|r| r.from <= start);
        match i.checked_sub(1).map(|i| self.runs[i]) {
            Some(r) => (r.resource, r.scope),
            None => (u32::MAX, u32::MAX),
        }
    }
}

/// Memory a request's bytes cost beyond its body and headers, charged to its spans with
/// the rest of its overhead: the shared handles and their counts, the header index, and
/// allocator slack (a body is copied out of the connection's read buffer; see
/// `tailgate_core::receive::limits::own`). Fitted to RSS with requests of
/// one, two and eight spans (docs/benchmarks.md, "Requests of a few spans").
pub const REQUEST_OVERHEAD_BYTES: usize = 460;

/// One span with a count of its own on its request's bytes, and where in them its own
/// bytes are (its resource's and scope's headers follow from that, see [`HeaderRun`]):
/// spans on their way to the exporters. 16 bytes, instead of three `Bytes` handles (96).
/// Spans waiting for their trace's decision are kept in a [`SpanList`], which shares a
/// count among a run of spans of one request.
///
/// Each span is *charged* its own bytes plus its share of what its request holds besides
/// spans (headers, bytes the scan skipped, the header index), kept once per request in
/// [`RequestBytes::span_overhead`]. A span keeps its whole request alive, so the limits
/// count the charge, and the charges of a request's spans add up to what the request
/// really holds, whatever its shape.
#[derive(Debug, Clone)]
pub struct BufferedSpan {
    req: Arc<RequestBytes>,
    range: SpanRange,
}

impl BufferedSpan {
    /// The span at `range` of `req.body` (under the headers `req.runs` gives for it).
    pub fn new(req: &Arc<RequestBytes>, range: std::ops::Range<u32>) -> Self {
        BufferedSpan {
            req: req.clone(),
            range: range.into(),
        }
    }

    /// A span that is a whole request body of its own, without headers (tests).
    #[cfg(test)]
    pub(crate) fn alone(body: Bytes) -> Self {
        let len = body.len();
        let req = RequestBytes::shared(body, Bytes::new(), Arc::new([]), Vec::new(), len, 1, None);
        BufferedSpan::new(&req, 0..len as u32)
    }

    /// The span, borrowed.
    #[inline]
    pub fn as_ref(&self) -> SpanRef<'_> {
        SpanRef {
            req: &self.req,
            range: self.range,
        }
    }

    /// What the span counts against the byte limits (see [`SpanRef::held_len`]).
    pub fn held_len(&self) -> usize {
        self.as_ref().held_len()
    }

    /// The span message's bytes.
    pub fn span(&self) -> &[u8] {
        self.as_ref().span()
    }

    /// The span as re-framer input.
    pub fn parts(&self) -> SpanParts<'_> {
        self.as_ref().parts()
    }

    /// Bytes this span holds on to (its share of the encoded data).
    pub fn encoded_len(&self) -> usize {
        self.range.len as usize
    }

    /// Re-encodes spans with `rewrite`, which appends a span's new bytes to the buffer it
    /// is given, and appends them to `out`. Spans that came in the same request share one
    /// new buffer and keep their resource and scope headers; with `resource`, they take
    /// their request's headers with the resources' attributes rewritten, written once per
    /// request and shared by its kept traces (see `RewrittenTable`).
    pub fn rewrite_all(
        spans: &[SpanRef<'_>],
        mut rewrite: impl FnMut(&[u8], &mut Vec<u8>),
        resource: Option<&dyn AttributeRewrite>,
        out: &mut Vec<BufferedSpan>,
    ) {
        out.reserve(spans.len());
        let mut i = 0;
        while i < spans.len() {
            // A run of spans from one request.
            let mut j = i + 1;
            while j < spans.len() && spans[j].same_request(&spans[i]) {
                j += 1;
            }
            let run = &spans[i..j];
            // Kept traces are small: their span ranges and header indices stay on the stack.
            let mut ranges: SmallVec<[std::ops::Range<u32>; 8]> = SmallVec::new();
            let body = REWRITTEN.with_borrow_mut(|(scratch, arena)| {
                scratch.clear();
                for s in run {
                    let start = scratch.len() as u32;
                    rewrite(s.span(), scratch);
                    ranges.push(start..scratch.len() as u32);
                }
                from_arena(scratch, arena)
            });
            let old = spans[i].req;
            let new = match resource {
                None => RunHeaders {
                    headers: old.headers.clone(),
                    header_ranges: old.header_ranges.clone(),
                    counted: Some(old.headers_counted.clone()),
                    indices: run.iter().map(SpanRef::header_indices).collect(),
                    // Still holding the request's headers: their share stays charged.
                    span_overhead: old.span_overhead,
                },
                Some(rewrite_resource) => rewritten_run_headers(run, rewrite_resource),
            };
            // Room for exactly the runs there will be makes the boxed slice below one
            // exact allocation: a growing Vec and its shrink were 2-3% of the CPU at 2
            // spans per trace, whose spans in a request are under different resources.
            let n_runs = 1 + new.indices.windows(2).filter(|w| w[0] != w[1]).count();
            let mut runs = Vec::with_capacity(n_runs);
            for (range, &(resource, scope)) in ranges.iter().zip(&new.indices) {
                HeaderRun::extend(&mut runs, range.start, resource, scope);
            }
            let runs = runs.into_boxed_slice();
            let ledger = old.body_counted.ledger.as_ref();
            let body_held = RequestBytes::body_held(&body, &runs);
            // The copy's own overhead (its `RequestBytes`, its runs) is its spans' too: a
            // kept trace whose spans came one per request makes a copy per request, each
            // far larger than its span, and the exporters' queue limit reads the charges.
            let own_overhead = (body_held - body.len()).div_ceil(run.len());
            let span_overhead = new
                .span_overhead
                .saturating_add(u32::try_from(own_overhead).unwrap_or(u32::MAX));
            let req = Arc::new(RequestBytes {
                body_counted: Counted::new(body_held, ledger),
                // Shared headers stay counted once, until the last request using them goes.
                headers_counted: new.counted.unwrap_or_else(|| {
                    Arc::new(Counted::new(
                        RequestBytes::headers_held(&new.headers, &new.header_ranges),
                        ledger,
                    ))
                }),
                body,
                headers: new.headers,
                header_ranges: new.header_ranges,
                runs,
                span_overhead,
                rewritten: std::sync::OnceLock::new(),
            });
            out.extend(
                ranges
                    .into_iter()
                    .map(|range| BufferedSpan::new(&req, range)),
            );
            i = j;
        }
    }
}

/// A span borrowed from where it is kept (a [`BufferedSpan`] or a [`SpanList`]): its
/// request's bytes and where in them its own bytes are.
#[derive(Debug, Clone, Copy)]
pub struct SpanRef<'a> {
    req: &'a Arc<RequestBytes>,
    range: SpanRange,
}

impl<'a> SpanRef<'a> {
    /// What the span counts against the byte limits: its bytes and its share of its
    /// request's overhead (see [`BufferedSpan`]).
    pub fn held_len(&self) -> usize {
        self.req.span_charge(self.range)
    }

    /// The span message's bytes.
    pub fn span(&self) -> &'a [u8] {
        &self.req.body[self.range.bytes()]
    }

    fn header(&self, i: u32) -> &'a [u8] {
        match self.req.header_ranges.get(i as usize) {
            Some(&(a, b)) => &self.req.headers[a as usize..b as usize],
            None => &[],
        }
    }

    /// Its (resource, scope) header indices.
    fn header_indices(&self) -> (u32, u32) {
        self.req.headers_at(self.range.start)
    }

    /// The span as re-framer input.
    pub fn parts(&self) -> SpanParts<'a> {
        let (resource, scope) = self.header_indices();
        SpanParts {
            resource: self.header(resource),
            scope: self.header(scope),
            span: self.span(),
        }
    }

    /// The span as a [`BufferedSpan`] of its own (a new count on its request).
    pub fn to_buffered(&self) -> BufferedSpan {
        BufferedSpan {
            req: self.req.clone(),
            range: self.range,
        }
    }

    /// Whether `other` points into the same request's bytes.
    fn same_request(&self, other: &SpanRef<'_>) -> bool {
        Arc::ptr_eq(self.req, other.req)
    }
}

/// Where a span is in its request's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanRange {
    /// Its first byte.
    pub start: u32,
    /// Its length.
    pub len: u32,
}

impl SpanRange {
    /// Its bytes' positions, to index a body with.
    fn bytes(self) -> std::ops::Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

impl From<std::ops::Range<u32>> for SpanRange {
    fn from(r: std::ops::Range<u32>) -> Self {
        SpanRange {
            start: r.start,
            len: r.end - r.start,
        }
    }
}

/// Spans a trace holds in its slot before its span list moves to the heap.
pub const INLINE_SPANS: usize = 2;

/// A span in a [`SpanList`]: the request handle is held by the first span of each run of
/// spans of one request only; the others (`req: None`) are in the request of the nearest
/// span before them that holds one. 16 bytes, as a [`BufferedSpan`].
#[derive(Debug)]
struct ListedSpan {
    req: Option<Arc<RequestBytes>>,
    range: SpanRange,
}

/// How many spans back [`SpanList::push_in`] looks for the handle of the run it would join
/// before it takes a count of its own: a run holds a count per `RUN_LOOK_BACK + 1` spans
/// at most, and a push stays constant-time however long the run.
const RUN_LOOK_BACK: usize = 8;

/// A trace's spans, inline up to [`INLINE_SPANS`]. A trace's spans of one request that
/// follow each other in the list (a run) share a count on the request, one per up to
/// `RUN_LOOK_BACK + 1` spans, instead of one count each: taking and dropping those counts,
/// locked writes, were about 5% of the gateway's CPU at 8 spans per trace
/// (docs/benchmarks.md, "One request count per run").
#[derive(Debug, Default)]
pub struct SpanList(SmallVec<[ListedSpan; INLINE_SPANS]>);

impl SpanList {
    /// An empty list.
    pub fn new() -> Self {
        SpanList(SmallVec::new())
    }

    /// An empty list with room for `n` spans.
    pub fn with_capacity(n: usize) -> Self {
        SpanList(SmallVec::with_capacity(n))
    }

    /// Spans held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Spans it has room for.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Whether it left its slot for the heap.
    pub fn spilled(&self) -> bool {
        self.0.spilled()
    }

    /// Room for exactly `n` more.
    pub fn reserve_exact(&mut self, n: usize) {
        self.0.reserve_exact(n);
    }

    /// Adds the span at `range` of `req`: without a count of its own when the nearest
    /// handle among the last `RUN_LOOK_BACK` spans is `req`'s (the span joins that run).
    #[inline]
    pub fn push_in(&mut self, req: &Arc<RequestBytes>, range: SpanRange) {
        let in_run = self
            .0
            .iter()
            .rev()
            .take(RUN_LOOK_BACK)
            .find_map(|s| s.req.as_ref())
            .is_some_and(|r| Arc::ptr_eq(r, req));
        self.0.push(ListedSpan {
            req: (!in_run).then(|| req.clone()),
            range,
        });
    }

    /// Adds a span with its own count.
    pub fn push(&mut self, span: BufferedSpan) {
        self.0.push(ListedSpan {
            req: Some(span.req),
            range: span.range,
        });
    }

    /// The spans, in order.
    pub fn iter(&self) -> SpanIter<'_> {
        self.spans().iter()
    }

    /// The spans, as policies see them.
    pub fn spans(&self) -> Spans<'_> {
        self.spans_from(0)
    }

    /// The spans from the `from`-th on (none past the end).
    pub fn spans_from(&self, from: usize) -> Spans<'_> {
        self.spans_between(from..usize::MAX)
    }

    /// The spans in `range` of the list (cut at its end).
    pub fn spans_between(&self, range: std::ops::Range<usize>) -> Spans<'_> {
        let from = range.start;
        let to = range.end.min(self.0.len());
        let items = self.0.get(from..to).unwrap_or_default();
        // The request in force at `from`: the nearest handle at or before it.
        let first = match items {
            [] => None,
            _ => self.0[..=from].iter().rev().find_map(|s| s.req.as_ref()),
        };
        Spans { items, first }
    }

    /// Starts loading the list's first span (a list on the heap: inline ones are in the
    /// slot) and the start of its request, whose count dropping the list decrements
    /// first, for [`super::table::TraceTable::warm`].
    #[inline]
    pub fn prefetch(&self) {
        if let Some(first) = self.0.first() {
            super::hash::prefetch(first);
            if let Some(req) = &first.req {
                super::hash::prefetch(&**req);
            }
        }
    }
}

impl Extend<BufferedSpan> for SpanList {
    fn extend<I: IntoIterator<Item = BufferedSpan>>(&mut self, iter: I) {
        for s in iter {
            self.push(s);
        }
    }
}

impl FromIterator<BufferedSpan> for SpanList {
    fn from_iter<I: IntoIterator<Item = BufferedSpan>>(iter: I) -> Self {
        let mut list = SpanList::new();
        list.extend(iter);
        list
    }
}

/// A trace's spans, or the spans of it from some point on, as policies see them
/// ([`TraceView::spans`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Spans<'a> {
    items: &'a [ListedSpan],
    /// The request of `items[0]` when it holds no handle itself.
    first: Option<&'a Arc<RequestBytes>>,
}

impl<'a> Spans<'a> {
    /// No spans (a view of a summary alone).
    pub const EMPTY: Spans<'static> = Spans {
        items: &[],
        first: None,
    };

    /// How many.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The spans, in order.
    pub fn iter(&self) -> SpanIter<'a> {
        SpanIter {
            items: self.items.iter(),
            req: self.first,
        }
    }
}

impl<'a> IntoIterator for Spans<'a> {
    type Item = SpanRef<'a>;
    type IntoIter = SpanIter<'a>;

    fn into_iter(self) -> SpanIter<'a> {
        self.iter()
    }
}

/// The spans of a [`SpanList`], each with its request.
#[derive(Debug, Clone)]
pub struct SpanIter<'a> {
    items: std::slice::Iter<'a, ListedSpan>,
    req: Option<&'a Arc<RequestBytes>>,
}

impl<'a> Iterator for SpanIter<'a> {
    type Item = SpanRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<SpanRef<'a>> {
        let s = self.items.next()?;
        if let Some(r) = &s.req {
            self.req = Some(r);
        }
        // A list's first span always holds its request (`push_in` on an empty list takes
        // a count), so `req` is set from the first span on.
        debug_assert!(
            self.req.is_some(),
            "a span list's first span holds its request"
        );
        let req = self.req?;
        Some(SpanRef {
            req,
            range: s.range,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

/// Re-encoded kept spans are written to a reused scratch buffer, then copied into chunks
/// of this size shared by many kept traces, instead of a new buffer per trace.
const ARENA_CHUNK: usize = 64 << 10;

thread_local! {
    /// The scratch buffer and the current chunk of [`BufferedSpan::rewrite_all`].
    static REWRITTEN: std::cell::RefCell<(Vec<u8>, bytes::BytesMut)> =
        std::cell::RefCell::new((Vec::new(), bytes::BytesMut::new()));
}

/// `bytes` copied into the current chunk (a new one when it has no room left); the chunk
/// is freed when the last span in it is.
fn from_arena(bytes: &[u8], arena: &mut bytes::BytesMut) -> Bytes {
    if arena.capacity() - arena.len() < bytes.len() {
        *arena = bytes::BytesMut::with_capacity(ARENA_CHUNK.max(bytes.len()));
    }
    arena.extend_from_slice(bytes);
    arena.split().freeze()
}

/// The headers of a run of re-encoded spans of one request.
struct RunHeaders {
    /// Resource and scope headers (as [`RequestBytes::headers`]).
    headers: Bytes,
    /// Their ranges (as [`RequestBytes::header_ranges`]).
    header_ranges: Arc<[(u32, u32)]>,
    /// Each span's (resource, scope) header indices.
    indices: SmallVec<[(u32, u32); 8]>,
    /// What each span is charged beyond its own bytes.
    span_overhead: u32,
    /// The headers' count when they are shared (the old request's, or a rewritten table).
    counted: Option<Arc<Counted>>,
}

/// A request's header table with its resources rewritten by the `attributes.resource`
/// actions, kept with the request ([`RequestBytes::rewritten`]) and shared by every kept
/// trace of it. Kept traces used to get copies of their own headers, rewritten per trace:
/// a resource of megabytes over many small traces was rewritten, and charged, once per kept
/// trace, which filled the buffer.
#[derive(Debug)]
struct RewrittenTable {
    headers: Bytes,
    header_ranges: Arc<[(u32, u32)]>,
    counted: Arc<Counted>,
    /// What a span under it is charged beyond its own bytes.
    span_overhead: u32,
}

/// Headers for a run of spans of one request with its resources rewritten: the request's
/// whole table, rewritten once (as the request was buffered, or by the first of its traces
/// kept) and shared by all its kept traces (in every shard) for as long as the request lives; or, for spans outside every run or a table
/// whose headers cannot be told apart by use (neither for a scanned request), only the
/// run's own headers.
fn rewritten_run_headers(run: &[SpanRef<'_>], rewrite: &dyn AttributeRewrite) -> RunHeaders {
    let old = run[0].req;
    let indices: SmallVec<[(u32, u32); 8]> = run.iter().map(SpanRef::header_indices).collect();
    let n = old.header_ranges.len();
    if !indices
        .iter()
        .all(|&(r, s)| (r as usize) < n && (s as usize) < n)
    {
        return rewritten_headers(run, rewrite);
    }
    match old.resources_rewritten(rewrite) {
        Some(t) => RunHeaders {
            headers: t.headers.clone(),
            header_ranges: t.header_ranges.clone(),
            counted: Some(t.counted.clone()),
            indices,
            span_overhead: t.span_overhead,
        },
        None => rewritten_headers(run, rewrite),
    }
}

impl RequestBytes {
    /// The request's header table with its resources rewritten by `rewrite` (see
    /// [`RewrittenTable`]), written the first time it is asked for (when the request is
    /// admitted, by [`Self::rewrite_resources`]) and counted in the ledger from then on;
    /// `None` when it cannot be written (see [`rewritten_table`]).
    fn resources_rewritten(&self, rewrite: &dyn AttributeRewrite) -> Option<&Arc<RewrittenTable>> {
        self.rewritten
            .get_or_init(|| {
                let (headers, header_ranges) = rewritten_table(self, rewrite)?;
                let old_held =
                    RequestBytes::headers_held(&self.headers, &self.header_ranges) as u64;
                let new_held = RequestBytes::headers_held(&headers, &header_ranges);
                // The spans' share of the headers, grown or shrunk with them (the ledger counts
                // the table whole, for the hard limit).
                let overhead = u64::from(self.span_overhead);
                let span_overhead = match old_held {
                    0 => overhead + new_held as u64,
                    _ => (overhead * new_held as u64).div_ceil(old_held),
                };
                Some(Arc::new(RewrittenTable {
                    counted: Arc::new(Counted::new(new_held, self.body_counted.ledger.as_ref())),
                    headers,
                    header_ranges,
                    span_overhead: u32::try_from(span_overhead).unwrap_or(u32::MAX),
                }))
            })
            .as_ref()
    }

    /// Writes the request's rewritten header table now, as it is admitted, rather than
    /// when its first trace is kept: what the actions add to its resources (an `insert` on
    /// each of thousands of tiny resources, a `mask` pattern that writes four bytes for
    /// one) is then counted in the ledger, and so against `max_buffered_bytes`, before
    /// more requests are admitted, not found only when traces are decided, by when the
    /// buffer may be full of requests that each grow.
    pub fn rewrite_resources(&self, rewrite: &dyn AttributeRewrite) {
        let _ = self.resources_rewritten(rewrite);
    }
}

/// Headers and their ranges (as [`RequestBytes::headers`] and
/// [`RequestBytes::header_ranges`]).
type HeaderTable = (Bytes, Arc<[(u32, u32)]>);

/// A request's whole header table with every resource header rewritten by `rewrite`, the
/// scope headers copied and headers no span uses left empty, at the same indices; `None`
/// when a header is used both as a resource and as a scope.
fn rewritten_table(old: &RequestBytes, rewrite: &dyn AttributeRewrite) -> Option<HeaderTable> {
    #[derive(Clone, Copy, PartialEq)]
    enum Use {
        None,
        Resource,
        Scope,
    }
    let mut uses = vec![Use::None; old.header_ranges.len()];
    for r in old.runs.iter() {
        for (i, role) in [(r.resource, Use::Resource), (r.scope, Use::Scope)] {
            let u = uses.get_mut(i as usize)?;
            if *u != Use::None && *u != role {
                return None;
            }
            *u = role;
        }
    }
    let mut headers = Vec::with_capacity(old.headers.len());
    let ranges = old
        .header_ranges
        .iter()
        .zip(uses)
        .map(|(&(a, b), role)| {
            let start = headers.len();
            let bytes = old.headers.get(a as usize..b as usize).unwrap_or_default();
            match role {
                Use::Resource => write_resource_header(bytes, rewrite, &mut headers),
                Use::Scope => headers.extend_from_slice(bytes),
                Use::None => {}
            }
            (start as u32, headers.len() as u32)
        })
        .collect();
    Some((Bytes::from(headers), ranges))
}

/// New headers for a run of spans of one request: only the run's resource headers
/// (rewritten by `rewrite`) and scope headers.
fn rewritten_headers(run: &[SpanRef<'_>], rewrite: &dyn AttributeRewrite) -> RunHeaders {
    let mut headers = Vec::new();
    // (old index, whether a resource) -> new index; a run uses few headers.
    let mut seen: Vec<(u32, bool)> = Vec::new();
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let mut index_of = |old: u32, is_resource: bool, bytes: &[u8]| -> u32 {
        if let Some(n) = seen.iter().position(|&k| k == (old, is_resource)) {
            return n as u32;
        }
        let start = headers.len() as u32;
        if is_resource {
            write_resource_header(bytes, rewrite, &mut headers);
        } else {
            headers.extend_from_slice(bytes);
        }
        seen.push((old, is_resource));
        ranges.push((start, headers.len() as u32));
        (seen.len() - 1) as u32
    };
    let indices = run
        .iter()
        .map(|s| {
            let (resource, scope) = s.header_indices();
            let resource = index_of(resource, true, s.header(resource));
            (resource, index_of(scope, false, s.header(scope)))
        })
        .collect();
    // The new headers are memory of their own, shared out over the run's spans on top
    // of the share of the old request's headers they still hold.
    let copied = u32::try_from(headers.len().div_ceil(run.len().max(1))).unwrap_or(u32::MAX);
    RunHeaders {
        headers: Bytes::from(headers),
        header_ranges: ranges.into(),
        counted: None,
        indices,
        span_overhead: run[0].req.span_overhead.saturating_add(copied),
    }
}

/// What the policies know of a trace, updated per span in O(1) (plus the wanted attributes,
/// which only plans with attribute policies collect).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TraceSummary {
    /// Spans seen.
    pub span_count: u32,
    /// Earliest span start (unix ns), folded as the Collector's latency policy folds it:
    /// 0 is "none yet", so a span without a start is passed over when a span with one
    /// follows it (see [`Self::add_span`]).
    pub min_start: u64,
    /// Latest span end (unix ns).
    pub max_end: u64,
    /// The longest `max_end - min_start` after any span: what the Collector's latency
    /// policy without an upper bound tests, span by span.
    pub longest: u64,
    /// Bit `1 << code` set for each status code seen.
    pub status_mask: u8,
    /// Whether the root span has arrived.
    pub has_root: bool,
    /// Encoded bytes of the spans seen.
    pub bytes: u64,
    /// Distinct values of the attributes the plan reads (empty when it reads none).
    pub attrs: Recorded,
}

/// Attribute values recorded for a trace's policies, read as a slice. Most plans record
/// none, so an empty record is one null pointer in the trace's slot (a `Vec` took 24
/// bytes of every buffered trace).
#[derive(Debug, Clone, PartialEq, Default)]
// The box is the point: 8 bytes in every slot instead of 24; the extra allocation is paid
// only by traces that record values (docs/benchmarks.md, "Recorded values boxed").
#[allow(clippy::box_collection)]
pub struct Recorded(Option<Box<Vec<TraceAttr>>>);

impl std::ops::Deref for Recorded {
    type Target = [TraceAttr];

    fn deref(&self) -> &[TraceAttr] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl Recorded {
    /// The bytes it holds on the heap: its values' room and, once there is one, the list.
    pub fn heap_bytes(&self) -> usize {
        self.0.as_deref().map_or(0, |v| {
            std::mem::size_of::<Vec<TraceAttr>>() + v.capacity() * std::mem::size_of::<TraceAttr>()
        })
    }

    fn push(&mut self, a: TraceAttr) {
        self.0.get_or_insert_with(Default::default).push(a);
    }
}

impl TraceSummary {
    /// Folds one span in. Start and end are folded in arrival order as the Collector's
    /// latency policy folds them in its batches' order (the same order): a start of 0 is
    /// taken only while no start is known, or when it is the smallest, and replaced by the
    /// next span's start either way, so a span without timestamps between others lengthens
    /// the running duration to its end's age (as in the Collector) until the next span.
    pub fn add_span(&mut self, start: u64, end: u64, status_code: u8, is_root: bool) {
        self.span_count += 1;
        if self.min_start == 0 || start < self.min_start {
            self.min_start = start;
        }
        self.max_end = self.max_end.max(end);
        self.longest = self.longest.max(self.duration_nanos());
        self.status_mask |= 1u8.checked_shl(u32::from(status_code)).unwrap_or(0);
        self.has_root |= is_root;
    }

    /// Records attribute values. Every value of every span is kept, as the Collector's
    /// attribute policies look at every span of a trace; a value equal to one recorded
    /// recently is not recorded again.
    ///
    /// Returns the bytes the record grew by, which its trace is charged: spans whose
    /// values all differ would otherwise hold up to twice [`TraceAttr`]'s 48 bytes per
    /// value uncounted by the limits. (String values are views of the request bytes,
    /// which their spans are charged already.)
    pub fn add_attrs(&mut self, attrs: &[TraceAttr]) -> u64 {
        let before = self.attrs.heap_bytes();
        for a in attrs {
            let recent = &self.attrs[self.attrs.len().saturating_sub(DEDUP_WINDOW)..];
            if !recent.contains(a) {
                self.attrs.push(a.clone());
            }
        }
        (self.attrs.heap_bytes() - before) as u64
    }

    /// Latest end minus earliest start, 0 when the spans are inconsistent.
    pub fn duration_nanos(&self) -> u64 {
        self.max_end.saturating_sub(self.min_start)
    }
}

/// What a policy sees of a trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceView<'a> {
    /// The trace id.
    pub trace_id: &'a [u8; 16],
    /// The summary.
    pub summary: &'a TraceSummary,
    /// The buffered spans, for policies that read more than the summary holds
    /// (`ottl_condition`); empty where only a summary exists.
    pub spans: Spans<'a>,
    /// When the decision is made; rate-based policies measure their rates against it, so
    /// tests and `sim` can drive them with virtual time.
    pub now: tokio::time::Instant,
}

impl<'a> TraceView<'a> {
    /// A view of a summary alone, decided now.
    pub fn new(trace_id: &'a [u8; 16], summary: &'a TraceSummary) -> Self {
        TraceView {
            trace_id,
            summary,
            spans: Spans::EMPTY,
            now: tokio::time::Instant::now(),
        }
    }
}

/// One span on its way to a shard, in the request its batch carries (see
/// [`super::shard::ShardMsg::Spans`]): the request is counted once per batch, not per span.
#[derive(Debug, Clone)]
pub struct IncomingSpan {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Start (unix ns).
    pub start: u64,
    /// End (unix ns).
    pub end: u64,
    /// Status code.
    pub status_code: u8,
    /// Whether it is a root span.
    pub is_root: bool,
    /// Values of the attributes the plan reads (its own and its resource's); empty, and not
    /// allocated, when the plan reads none.
    pub attrs: Vec<TraceAttr>,
    /// Where its bytes are in its request's body.
    pub range: SpanRange,
}

impl IncomingSpan {
    /// The span in `req` (its request) as a [`BufferedSpan`] of its own.
    pub fn buffered(&self, req: &Arc<RequestBytes>) -> BufferedSpan {
        BufferedSpan {
            req: req.clone(),
            range: self.range,
        }
    }

    /// What it will be charged in `req` (see [`SpanRef::held_len`]).
    pub fn held_len(&self, req: &RequestBytes) -> usize {
        req.span_charge(self.range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two requests of `n` 10-byte spans each, every span's bytes naming its request and
    /// its place.
    fn two_requests(n: u32) -> [Arc<RequestBytes>; 2] {
        [b'a', b'b'].map(|r| {
            let body: Vec<u8> = (0..n)
                .flat_map(|i| {
                    let mut s = [r; 10];
                    s[1..5].copy_from_slice(&i.to_be_bytes());
                    s
                })
                .collect();
            let len = body.len();
            RequestBytes::shared(
                Bytes::from(body),
                Bytes::new(),
                Arc::new([]),
                Vec::new(),
                len,
                n as usize,
                None,
            )
        })
    }

    fn at(i: u32) -> SpanRange {
        SpanRange {
            start: i * 10,
            len: 10,
        }
    }

    /// Scenario: a list takes spans of two requests in runs (a run longer than the
    /// look-back, requests alternating, a request coming back) and is read whole, from
    /// every position, and as spans of their own; then dropped.
    /// Guarantees: every view yields exactly the spans pushed, in order, each in its own
    /// request; a run holds one count on its request per `RUN_LOOK_BACK + 1` spans;
    /// dropping the list gives every count back.
    #[test]
    fn a_span_list_counts_each_request_once_per_run() {
        let [a, b] = two_requests(40);
        let mut list = SpanList::new();
        let mut expected = Vec::new();
        let mut push = |list: &mut SpanList, req: &Arc<RequestBytes>, i: u32| {
            list.push_in(req, at(i));
            expected.push(BufferedSpan::new(req, i * 10..i * 10 + 10));
        };
        // 20 of a (longer than the look-back), 1 of b, 2 of a, 11 of b, 1 of a.
        for i in 0..20 {
            push(&mut list, &a, i);
        }
        push(&mut list, &b, 0);
        push(&mut list, &a, 20);
        push(&mut list, &a, 21);
        for i in 1..4 {
            push(&mut list, &b, i);
        }
        for i in 4..12 {
            push(&mut list, &b, i);
        }
        push(&mut list, &a, 22);
        assert_eq!(list.len(), expected.len());
        // Counts besides `expected`'s own and ours. a: at its spans 0, 9 and 18 (a count
        // per 9 spans of a long run: none within the look-back), 20 (after b's) and 22;
        // b: at its spans 0, 1 (after a's) and 10.
        assert_eq!(Arc::strong_count(&a) - 1 - 23, 5);
        assert_eq!(Arc::strong_count(&b) - 1 - 12, 3);
        let bytes = |s: &SpanRef<'_>| s.span().to_vec();
        let all: Vec<_> = list.iter().map(|s| bytes(&s)).collect();
        let want: Vec<_> = expected.iter().map(|s| s.span().to_vec()).collect();
        assert_eq!(all, want);
        for from in 0..=list.len() + 1 {
            let view = list.spans_from(from);
            let got: Vec<_> = view.iter().map(|s| bytes(&s)).collect();
            assert_eq!(got, want.get(from..).unwrap_or_default(), "from {from}");
            assert_eq!(view.len(), got.len());
        }
        let held: usize = list.iter().map(|s| s.held_len()).sum();
        assert_eq!(
            held,
            expected.iter().map(BufferedSpan::held_len).sum::<usize>()
        );
        let owned: Vec<_> = SpanList::from_iter(expected.iter().cloned())
            .iter()
            .map(|s| s.to_buffered().span().to_vec())
            .collect();
        assert_eq!(owned, want);
        let listed: Vec<_> = std::mem::take(&mut list)
            .iter()
            .map(|s| s.to_buffered().span().to_vec())
            .collect();
        assert_eq!(listed, want);
        drop(expected);
        assert_eq!((Arc::strong_count(&a), Arc::strong_count(&b)), (1, 1));
    }

    /// Guarantees: a listed span is 16 bytes, as a buffered one (the slot's size and the
    /// charge per span assume it).
    #[test]
    fn a_listed_span_is_as_small_as_a_buffered_one() {
        assert_eq!(std::mem::size_of::<ListedSpan>(), 16);
        assert_eq!(std::mem::size_of::<SpanList>(), 40);
    }

    /// A request of 40,000 resources of one span each, as in issue 14 item 1.
    fn wide_request() -> (Arc<RequestBytes>, Vec<BufferedSpan>) {
        let n = 40_000u32;
        let body = Bytes::from(vec![7u8; n as usize * 10]);
        // Each header's bytes are its index, so a wrong index shows.
        let headers: Bytes = (0..2 * n)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>()
            .into();
        let header_ranges: Arc<[(u32, u32)]> = (0..2 * n).map(|i| (i * 4, i * 4 + 4)).collect();
        let mut runs = Vec::new();
        for i in 0..n {
            HeaderRun::extend(&mut runs, i * 10, i, n + i);
        }
        let req = RequestBytes::shared(
            body,
            headers,
            header_ranges,
            runs,
            n as usize * 10,
            n as usize,
            None,
        );
        let spans = (0..n)
            .map(|i| BufferedSpan::new(&req, i * 10..i * 10 + 10))
            .collect();
        (req, spans)
    }

    /// Scenario: a request of ten spans counted in a ledger; two of them re-encoded (as
    /// kept spans are) keep its headers; the original spans go, then the copies.
    /// Guarantees: the ledger counts a request until its last span lets it go, headers
    /// shared by a copy once (not once per copy), and comes back to zero.
    #[test]
    fn the_ledger_counts_a_request_until_its_last_span_and_shared_headers_once() {
        let ledger = Arc::new(RequestLedger::default());
        let ranges: Arc<[(u32, u32)]> = vec![(0, 50), (50, 100)].into();
        let mut runs = Vec::new();
        HeaderRun::extend(&mut runs, 0, 0, 1);
        let body = Bytes::from(vec![7u8; 1000]);
        let headers = Bytes::from(vec![1u8; 100]);
        let req = RequestBytes::shared(body, headers, ranges, runs, 1000, 10, Some(&ledger));
        let overhead = REQUEST_OVERHEAD_BYTES as u64;
        let (body_held, headers_held) = (1000 + 12 + overhead, 100 + 16);
        assert_eq!(ledger.get(), body_held + headers_held);
        let spans: Vec<_> = (0..10)
            .map(|i| BufferedSpan::new(&req, i * 100..i * 100 + 100))
            .collect();
        drop(req);
        assert_eq!(ledger.get(), body_held + headers_held, "held by its spans");
        let mut copies = Vec::new();
        for _ in 0..2 {
            BufferedSpan::rewrite_all(
                &[spans[0].as_ref(), spans[1].as_ref()],
                |s, b| b.extend_from_slice(s),
                None,
                &mut copies,
            );
        }
        let copy_held = 200 + 12 + overhead;
        assert_eq!(ledger.get(), body_held + headers_held + 2 * copy_held);
        drop(spans);
        assert_eq!(
            ledger.get(),
            2 * copy_held + headers_held,
            "the copies keep the headers"
        );
        assert!(copies.iter().all(|c| c.parts().scope.len() == 50));
        drop(copies);
        assert_eq!(ledger.get(), 0);
    }

    #[test]
    fn the_charges_of_a_requests_spans_add_up_to_what_it_holds() {
        let (req, spans) = wide_request();
        let charged: usize = spans.iter().map(BufferedSpan::held_len).sum();
        let held = req.body.len()
            + req.headers.len()
            + req.header_ranges.len() * 8
            + req.runs.len() * 12
            + REQUEST_OVERHEAD_BYTES;
        // Rounded up by less than a byte per span, never down.
        assert!(charged >= held, "{charged} < {held}");
        assert!(charged - held < spans.len(), "{charged} - {held}");
        assert!(spans.iter().all(|s| s.held_len() > s.encoded_len()));
    }

    /// Scenario: re-encoded spans copied into the shared chunks, small and larger than a
    /// chunk. Guarantees: each comes back whole and alone (no bytes of its neighbours),
    /// small ones share a chunk, and one larger than a chunk gets a chunk of its own size.
    #[test]
    fn rewritten_bytes_share_chunks_and_stay_apart() {
        let mut arena = bytes::BytesMut::new();
        let a = from_arena(b"first", &mut arena);
        let b = from_arena(b"second", &mut arena);
        assert_eq!((&a[..], &b[..]), (&b"first"[..], &b"second"[..]));
        assert_eq!(
            a.as_ptr().wrapping_add(a.len()),
            b.as_ptr(),
            "one chunk, in order"
        );
        let big = vec![7u8; ARENA_CHUNK + 1];
        let c = from_arena(&big, &mut arena);
        assert_eq!(c.len(), ARENA_CHUNK + 1);
        assert!(c.iter().all(|&x| x == 7));
        let d = from_arena(b"after", &mut arena);
        assert_eq!(&d[..], b"after");
        drop((a, c));
        assert_eq!(
            &b[..],
            b"second",
            "a neighbour's drop frees nothing it still uses"
        );
    }

    /// Scenario: values recorded for the policies, new ones and repeats.
    /// Guarantees: what `add_attrs` reports adds up to the record's whole allocation, and
    /// a repeat costs nothing.
    #[test]
    fn recorded_values_report_what_they_allocate() {
        let attr = |v: u32| TraceAttr {
            key: 0,
            value: AttrValue::Int(i64::from(v)),
            from_resource: false,
            from_root: false,
        };
        let mut summary = TraceSummary::default();
        let mut reported = 0;
        for v in 0..100 {
            reported += summary.add_attrs(&[attr(v), attr(v)]);
        }
        assert_eq!(summary.attrs.len(), 100);
        let list = summary.attrs.0.as_deref().expect("recorded");
        assert_eq!(
            reported as usize,
            std::mem::size_of::<Vec<TraceAttr>>()
                + list.capacity() * std::mem::size_of::<TraceAttr>()
        );
        assert_eq!(TraceSummary::default().attrs.heap_bytes(), 0);
        assert!(reported >= 100 * 48);
        assert_eq!(summary.add_attrs(&[attr(99)]), 0);
    }

    /// Masks the value of every attribute keyed `secret`, and inserts `added`.
    struct MaskAndAdd;
    impl AttributeRewrite for MaskAndAdd {
        fn rewrite(&self, kv: &[u8]) -> Option<Vec<u8>> {
            use prost::Message;
            let kv = opentelemetry_proto::tonic::common::v1::KeyValue::decode(kv).ok()?;
            (kv.key == "secret")
                .then(|| tailgate_core::test_util::kv("secret", "****").encode_to_vec())
        }
        fn additions(&self) -> &[(Vec<u8>, Vec<u8>)] {
            use prost::Message;
            static ADD: std::sync::OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
            ADD.get_or_init(|| {
                let kv = tailgate_core::test_util::kv("added", "yes");
                vec![(b"added".to_vec(), kv.encode_to_vec())]
            })
        }
    }

    /// Scenario: a request of three resources, each with a `secret` and a large value, and
    /// three scopes each (the middle one without spans); its spans belong to eight traces,
    /// each under two of the resources and not the third. The traces are kept one after
    /// another with their resources rewritten, as shards keep them; then all are exported
    /// and one more is kept (finding: each kept trace got, and was charged, a rewritten copy
    /// of its headers, so a resource of megabytes over many small traces filled the buffer).
    /// Guarantees: the request's headers are rewritten once, shared by every kept trace and
    /// counted once in the ledger for as long as the request lives; each span is under its
    /// own resource, rewritten, and its own scope.
    #[test]
    fn kept_traces_of_one_request_share_its_rewritten_resources() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        use prost::Message;
        use tailgate_core::test_util::kv;
        let big = "x".repeat(10_000);
        // Trace t has spans under resources t % 3 and (t + 1) % 3.
        let in_trace = |r: u8, t: u8| r == t % 3 || r == (t + 1) % 3;
        let request = crate::buffer::layered_request(
            3,
            3,
            |r| {
                vec![
                    kv("service.name", &format!("res-{r}")),
                    kv("secret", "hunter2"),
                    kv("big", &big),
                ]
            },
            |r, sc| {
                (0..8u8)
                    .filter(|&t| sc != 1 && in_trace(r, t))
                    .map(|t| Span {
                        trace_id: vec![t + 1; 16],
                        span_id: vec![1 + r * 3 + sc; 8],
                        name: format!("span-{r}-{sc}"),
                        ..Default::default()
                    })
                    .collect()
            },
        );
        let body = Bytes::from(request.encode_to_vec());
        let mut scan = tailgate_core::wire::Scan::default();
        scan.scan_request(&body).unwrap();
        let file = crate::policy::PolicyFile::parse(
            std::path::Path::new("p.yaml"),
            "policies: [{name: all, type: always_sample}]\n",
        )
        .unwrap();
        let plan = crate::policy::plan::PolicyPlan::compile(&file);
        let ledger = Arc::new(RequestLedger::default());
        let (req, spans) = crate::buffer::incoming_spans(&body, &scan, &plan, Some(&ledger));
        let spans: Vec<BufferedSpan> = spans.iter().map(|s| s.buffered(&req)).collect();
        drop(req);
        let request_held = ledger.get();
        let trace = |t: u8| -> Vec<SpanRef<'_>> {
            spans
                .iter()
                .filter(|s| s.span().windows(16).any(|w| w == [t + 1; 16]))
                .map(BufferedSpan::as_ref)
                .collect()
        };
        let has =
            |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
        let keep = |t: u8| {
            let mut out = Vec::new();
            let rewrite: &dyn AttributeRewrite = &MaskAndAdd;
            BufferedSpan::rewrite_all(
                &trace(t),
                |s, b| b.extend_from_slice(s),
                Some(rewrite),
                &mut out,
            );
            assert_eq!(out.len(), 4, "trace {t}");
            for s in &out {
                let p = s.parts();
                let at = p.span.windows(5).position(|w| w == b"span-").unwrap();
                let (r, sc) = (p.span[at + 5], p.span[at + 7]);
                assert!(in_trace(r - b'0', t), "trace {t}");
                let (r, sc) = (r as char, sc as char);
                assert!(has(p.resource, &format!("res-{r}")), "trace {t}");
                for other in (0..3).filter(|&o| o.to_string() != r.to_string()) {
                    assert!(!has(p.resource, &format!("res-{other}")), "trace {t}");
                }
                assert!(has(p.resource, "****") && !has(p.resource, "hunter2"));
                assert!(has(p.resource, "added") && has(p.resource, &big));
                assert_eq!(p.scope.windows(6).filter(|w| w == b"scope-").count(), 1);
                assert!(has(p.scope, &format!("scope-{r}-{sc}")), "trace {t}");
            }
            out
        };
        let first = keep(0);
        let table_held = ledger.get() - request_held - first[0].req.body_counted.held;
        assert!(table_held > 30_000, "all three resources: {table_held}");
        let mut kept = vec![first];
        for t in 1..7 {
            let before = ledger.get();
            let out = keep(t);
            // Only the new spans' bytes are new memory: the table is shared.
            let shared = &kept[0][0].req.headers_counted;
            assert!(out
                .iter()
                .all(|s| Arc::ptr_eq(&s.req.headers_counted, shared)));
            assert_eq!(
                ledger.get() - before,
                out[0].req.body_counted.held,
                "trace {t}"
            );
            kept.push(out);
        }
        drop(kept);
        // The request's own headers, which its undecided traces still use, are untouched.
        assert!(spans.iter().all(|s| has(s.parts().resource, "hunter2")));
        assert_eq!(
            ledger.get(),
            request_held + table_held,
            "kept with the request"
        );
        let last = keep(7);
        assert_eq!(
            ledger.get(),
            request_held + table_held + last[0].req.body_counted.held
        );
        drop(spans);
        assert_eq!(
            ledger.get(),
            table_held + last[0].req.body_counted.held,
            "the request gone, its last kept spans hold the table"
        );
        drop(last);
        assert_eq!(ledger.get(), 0);
    }

    /// Scenario: spans outside every header run (a request without headers) kept with
    /// resource actions that add an attribute.
    /// Guarantees: they get a resource of their own holding the addition, as before the
    /// table was shared.
    #[test]
    fn spans_without_headers_get_a_rewritten_resource_of_their_own() {
        let span = BufferedSpan::alone(Bytes::from_static(b"0123456789"));
        let mut out = Vec::new();
        let rewrite: &dyn AttributeRewrite = &MaskAndAdd;
        BufferedSpan::rewrite_all(
            &[span.as_ref()],
            |s, b| b.extend_from_slice(s),
            Some(rewrite),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let resource = out[0].parts().resource;
        assert!(resource.windows(5).any(|w| w == b"added"), "{resource:?}");
        assert_eq!(out[0].span(), b"0123456789");
    }

    #[test]
    fn rewriting_one_trace_of_a_wide_request_shares_its_header_index() {
        let (req, spans) = wide_request();
        let one = [spans[123].as_ref()];
        let mut out = Vec::new();
        BufferedSpan::rewrite_all(
            &one,
            |span, buf| {
                buf.extend_from_slice(span);
                buf.extend_from_slice(b"+ot");
            },
            None,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        // The new bytes hold the trace's span only; headers and their index are shared,
        // not copied (80,000 ranges per kept trace before).
        assert_eq!(out[0].req.body.len(), 13);
        assert!(Arc::ptr_eq(&out[0].req.header_ranges, &req.header_ranges));
        assert_eq!(out[0].parts().resource, 123u32.to_le_bytes());
        assert_eq!(out[0].parts().scope, (40_000u32 + 123).to_le_bytes());
        assert_eq!(spans[123].parts().resource, 123u32.to_le_bytes());
        // Still charged its share of the headers it keeps alive, plus its new bytes and
        // the copy's own overhead (one span: all of it).
        let copy_overhead = std::mem::size_of::<HeaderRun>() + REQUEST_OVERHEAD_BYTES;
        assert_eq!(out[0].held_len(), spans[123].held_len() + 3 + copy_overhead);
    }

    /// Scenario: one kept trace of ten 10-byte spans, each from another request of 100
    /// spans (a trace whose spans came in ten requests, each holding a span of 100 traces),
    /// re-encoded while the requests are alive.
    /// Guarantees: what the copies are charged (what the exporters' queue limit reads)
    /// covers what the ledger counts for them: a copy per request, each with a request's
    /// overhead, was charged as 10 bytes and its share of the old request, so a burst of
    /// such traces kept at once went far past the limits (a hostile-input finding: 8x
    /// `max_buffered_bytes` counted, 2x in RSS).
    #[test]
    fn copies_of_a_trace_from_many_requests_are_charged_what_they_hold() {
        let ledger = Arc::new(RequestLedger::default());
        let spans: Vec<_> = (0..10u8)
            .map(|i| {
                let mut runs = Vec::new();
                HeaderRun::extend(&mut runs, 0, 0, 1);
                // 100 spans of 100 traces; this trace's is the first.
                let req = RequestBytes::shared(
                    Bytes::from(vec![i; 1000]),
                    Bytes::from(vec![1u8; 20]),
                    vec![(0, 10), (10, 20)].into(),
                    runs,
                    1000,
                    100,
                    Some(&ledger),
                );
                BufferedSpan::new(&req, 0..10)
            })
            .collect();
        let before = ledger.get();
        let mut out = Vec::new();
        let refs: Vec<_> = spans.iter().map(BufferedSpan::as_ref).collect();
        BufferedSpan::rewrite_all(&refs, |s, b| b.extend_from_slice(s), None, &mut out);
        assert_eq!(out.len(), 10);
        let counted = ledger.get() - before;
        let charged: usize = out.iter().map(BufferedSpan::held_len).sum();
        assert!(
            charged as u64 >= counted,
            "charged {charged}, counted {counted}"
        );
    }
}
