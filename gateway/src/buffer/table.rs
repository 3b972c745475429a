//! A shard's table of buffered traces: entries live in a slab of slots reused through a
//! free list, each beside its trace id, and an index ([`super::index`]) maps the id's keyed
//! hash to its slot.
//!
//! A trace used to cost a hash-map slot, a boxed entry and a vector of spans: three places
//! in memory and two allocations to make and free per trace. Here the entry and its first
//! [`INLINE_SPANS`] spans sit in one slot, so a trace of one or two spans (a large share of
//! real traffic, and the worst case for CPU per span) allocates nothing, and a slot freed
//! by a decision is reused by the next new trace while it is still in cache.
//!
//! The slab keeps its peak size: a burst of N traces leaves N slots
//! (`size_of::<TraceEntry>()` bytes each) for later traces, as the index's hash table keeps
//! its capacity. The shard's share of `num_traces` and byte limits bound that peak: past them the
//! traces are decided early, once the batch that crossed them is buffered.

use smallvec::SmallVec;

use super::hash::{prefetch, IdHash, TraceIdHash};
use super::index::SlotIndex;
use super::trace::TraceSummary;
pub use super::trace::{SpanList, INLINE_SPANS};
use crate::timer::Moment;

/// From this many spans a full span list grows by what is arriving, not by doubling.
const GROW_BY_ARRIVAL_FROM: usize = 16;

/// Makes room in a full `list` for the `arriving` spans of its trace that came in one
/// batch. A doubling list of a large trace whose parts come in several requests is
/// about a third empty on average (a 520-span trace in a 1,024-span list), and buffered
/// spans are most of a gateway's memory. From `GROW_BY_ARRIVAL_FROM` spans a list grows
/// by the batch's part, and by at least a quarter so that a trace arriving a span at a
/// time is still copied a bounded number of times per span. A list leaving the slot takes
/// room for `FIRST_SPILL` at once: requests seldom hold a trace's spans together, so
/// the batch's part is not known there, and doubling from two made a trace of five to
/// eight spans allocate twice (about 5% of the CPU with 8-span traces; see
/// docs/benchmarks.md).
#[inline]
pub fn make_room(list: &mut SpanList, arriving: impl FnOnce() -> usize) {
    let len = list.len();
    if len == list.capacity() {
        if len >= GROW_BY_ARRIVAL_FROM {
            list.reserve_exact(arriving().max(len / 4));
        } else if len == INLINE_SPANS {
            // Leaving the slot: straight to room for [`FIRST_SPILL`] spans, one allocation
            // where doubling would make two for a trace of five to eight spans.
            list.reserve_exact(FIRST_SPILL - len);
        } else if len == FIRST_SPILL {
            // Eight to twelve, not sixteen: 192 bytes, a size class of its own, where a
            // trace of nine to twelve spans in a list of sixteen left 64 to 112 bytes
            // unused (goal 4b of issue 19, docs/benchmarks.md "Session 42"); the same one
            // reallocation for it, one more (12 to 16) for a trace of thirteen or more.
            list.reserve_exact(FIRST_SPILL / 2);
        }
    }
}

/// The capacity a span list takes when it leaves the slot.
const FIRST_SPILL: usize = 8;

/// The capacity of a new trace's list for the `n` of its spans that lie together at the
/// start of its batch: inline when they fit, else at least `FIRST_SPILL`, as when a list
/// leaves the slot (a trace's other spans in a request may follow under other resources,
/// and growing 3, 6, 12 made three allocations for a trace of eight to twelve spans).
pub fn first_capacity(n: usize) -> usize {
    if n <= INLINE_SPANS {
        n
    } else {
        n.max(FIRST_SPILL)
    }
}

/// A buffered trace.
#[derive(Debug)]
pub struct TraceEntry {
    /// Its spans.
    pub spans: SpanList,
    /// When its first span arrived (8 bytes, where an `Instant` took 16).
    pub first_seen: Moment,
    /// Its summary (`summary.bytes`: its spans' encoded bytes, what policies and
    /// `maximum_trace_size_bytes` read).
    pub summary: TraceSummary,
    /// What it counts against the byte limits: its spans' charges (see [`BufferedSpan`](super::BufferedSpan)).
    pub held: u64,
}

/// A slot of the slab: a trace and its id, or a free slot (`entry: None`).
#[derive(Debug)]
struct Slot {
    id: [u8; 16],
    entry: Option<TraceEntry>,
}

/// Buffered traces by id.
#[derive(Debug, Default)]
pub struct TraceTable {
    index: SlotIndex,
    hash: TraceIdHash,
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl TraceTable {
    /// Traces buffered.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no trace is buffered.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The hasher this table places ids with (for callers that hash an id once and use
    /// the `_hashed` methods).
    pub fn hasher(&self) -> TraceIdHash {
        self.hash
    }

    /// `id`'s hash under [`Self::hasher`].
    #[inline]
    pub fn hash_of(&self, id: &[u8; 16]) -> IdHash {
        self.hash.hash_id(id)
    }

    /// The index's tag of a hash: its low 32 bits.
    #[inline]
    fn tag(h: IdHash) -> u32 {
        h.0 as u32
    }

    /// Where `id` (of hash `h`) is: its bucket in the index and its slot.
    #[inline]
    fn find(&self, h: IdHash, id: &[u8; 16]) -> Option<(usize, u32)> {
        let slots = &self.slots;
        self.index
            .find(Self::tag(h), |s| slots[s as usize].id == *id)
    }

    /// Whether `id` is buffered.
    pub fn contains_key(&self, id: &[u8; 16]) -> bool {
        self.find(self.hash_of(id), id).is_some()
    }

    /// The buffered trace `id`.
    #[inline]
    pub fn get(&self, id: &[u8; 16]) -> Option<&TraceEntry> {
        let (_, slot) = self.find(self.hash_of(id), id)?;
        self.slots[slot as usize].entry.as_ref()
    }

    /// The buffered trace `id`, to add to.
    #[inline]
    pub fn get_mut(&mut self, id: &[u8; 16]) -> Option<&mut TraceEntry> {
        self.get_mut_hashed(self.hash_of(id), id)
    }

    /// [`Self::get_mut`] with `id`'s hash already known.
    #[inline]
    pub fn get_mut_hashed(&mut self, h: IdHash, id: &[u8; 16]) -> Option<&mut TraceEntry> {
        let (_, slot) = self.find(h, id)?;
        self.slots[slot as usize].entry.as_mut()
    }

    /// Buffers a new trace (replacing one buffered under the same id, which the shard
    /// never does: it adds to a trace it finds).
    #[inline]
    pub fn insert(&mut self, id: [u8; 16], entry: TraceEntry) {
        self.insert_hashed(self.hash_of(&id), id, entry);
    }

    /// [`Self::insert`] with `id`'s hash already known.
    #[inline]
    pub fn insert_hashed(&mut self, h: IdHash, id: [u8; 16], entry: TraceEntry) {
        if let Some((_, slot)) = self.find(h, &id) {
            self.slots[slot as usize].entry = Some(entry);
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Slot {
                    id,
                    entry: Some(entry),
                };
                slot
            }
            None => {
                // More than 4 billion traces in one shard would exhaust memory first.
                let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX - 1);
                self.slots.push(Slot {
                    id,
                    entry: Some(entry),
                });
                slot
            }
        };
        self.index.insert(Self::tag(h), slot);
    }

    /// Starts loading where each id of `hashes` lives, without changing anything, so
    /// that the cache misses of a batch about to be decided overlap instead of being paid
    /// one after another (see docs/benchmarks.md). In passes of prefetches, one per level,
    /// so that all of a batch's misses of one level are in flight at once: every id's
    /// index bucket, the slots those buckets name, then per slot its span list's first
    /// span (on the heap, or in the slot) and the request that span points into (whose
    /// count dropping the trace decrements: a locked write, which waits for its line with
    /// nothing overlapping it). The last two share a pass: reading a list on the heap waits
    /// for it, but a separate pass measured no faster (docs/benchmarks.md, "One request
    /// count per run").
    pub fn warm(&self, hashes: impl Iterator<Item = IdHash> + Clone) {
        for h in hashes.clone() {
            self.prefetch_hashed(h);
        }
        let slots: SmallVec<[&Slot; 16]> = hashes
            .filter_map(|h| {
                let slot = self.index.home_slot(Self::tag(h))?;
                self.slots.get(slot as usize)
            })
            .collect();
        for s in &slots {
            prefetch(*s);
        }
        for s in &slots {
            if let Some(e) = &s.entry {
                e.spans.prefetch();
            }
        }
    }

    /// Starts loading the index bucket where a lookup of the id of hash `h` begins, so
    /// that a lookup a few spans later finds it in cache (see [`super::hash`]).
    #[inline]
    pub fn prefetch_hashed(&self, h: IdHash) {
        self.index.prefetch(Self::tag(h));
    }

    /// Takes the trace `id` out.
    #[inline]
    pub fn remove(&mut self, id: &[u8; 16]) -> Option<TraceEntry> {
        self.remove_hashed(self.hash_of(id), id)
    }

    /// [`Self::remove`] with `id`'s hash already known.
    #[inline]
    pub fn remove_hashed(&mut self, h: IdHash, id: &[u8; 16]) -> Option<TraceEntry> {
        let (at, slot) = self.find(h, id)?;
        self.index.remove_at(at);
        self.free.push(slot);
        self.slots[slot as usize].entry.take()
    }

    /// Every buffered trace id.
    pub fn keys(&self) -> impl Iterator<Item = &[u8; 16]> {
        self.slots
            .iter()
            .filter(|s| s.entry.is_some())
            .map(|s| &s.id)
    }

    /// Slots allocated (buffered traces plus free slots kept for reuse).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::trace::BufferedSpan;
    use super::*;

    fn entry(spans: usize) -> TraceEntry {
        TraceEntry {
            spans: SpanList::new(),
            first_seen: Moment::of(tokio::time::Instant::now()),
            summary: TraceSummary {
                span_count: spans as u32,
                ..TraceSummary::default()
            },
            held: 0,
        }
    }

    /// Scenario: a batch about to be decided is warmed, ids buffered and not; traces of
    /// none, one or two spans (in their slots) and more (lists on the heap).
    /// Guarantees: warming only reads: the same traces stay, under the same ids, with the
    /// same spans.
    #[tokio::test]
    async fn warming_a_batch_changes_nothing() {
        let span = BufferedSpan::alone(bytes::Bytes::from_static(b"0123456789"));
        let mut t = TraceTable::default();
        for i in 0..10u8 {
            let mut e = entry(usize::from(i));
            e.spans
                .extend(std::iter::repeat_n(span.clone(), usize::from(i)));
            t.insert([i; 16], e);
        }
        let ids: Vec<[u8; 16]> = (5..20u8).chain(0..5).map(|i| [i; 16]).collect();
        let hashes: Vec<_> = ids.iter().map(|id| t.hash_of(id)).collect();
        t.warm(hashes.iter().copied());
        assert_eq!((t.len(), t.slots()), (10, 10));
        for i in 0..10u8 {
            let e = t.get(&[i; 16]).expect("buffered");
            assert_eq!(e.summary.span_count, u32::from(i));
            assert_eq!(e.spans.len(), usize::from(i));
            assert!(e.spans.iter().all(|s| s.span() == b"0123456789"));
        }
        assert!(t.get(&[15; 16]).is_none());
    }

    /// Scenario: traces inserted and looked up through their hashes, computed once; then
    /// an id looked up under another id's hash.
    /// Guarantees: the hashed methods agree with the plain ones; a wrong hash misses and
    /// never yields another trace's entry.
    #[tokio::test]
    async fn hashed_lookups_agree_and_a_wrong_hash_only_misses() {
        let mut t = TraceTable::default();
        for i in 0..100u8 {
            let h = t.hash_of(&[i; 16]);
            t.insert_hashed(h, [i; 16], entry(usize::from(i)));
        }
        for i in 0..100u8 {
            let h = t.hash_of(&[i; 16]);
            assert_eq!(
                t.get(&[i; 16]).map(|e| e.summary.span_count),
                Some(u32::from(i))
            );
            let e = t.get_mut_hashed(h, &[i; 16]).expect("buffered");
            assert_eq!(e.summary.span_count, u32::from(i));
            let other = t.hash_of(&[i.wrapping_add(1); 16]);
            assert!(t.get_mut_hashed(other, &[i; 16]).is_none());
        }
        let h = t.hash_of(&[7; 16]);
        assert_eq!(
            t.remove_hashed(h, &[7; 16]).map(|e| e.summary.span_count),
            Some(7)
        );
        assert!(!t.contains_key(&[7; 16]));
        assert_eq!(t.len(), 99);
    }

    #[tokio::test]
    async fn freed_slots_are_reused_and_entries_found_by_id() {
        let mut t = TraceTable::default();
        for i in 0..100u8 {
            t.insert([i; 16], entry(usize::from(i)));
        }
        assert_eq!((t.len(), t.slots()), (100, 100));
        for i in 0..50u8 {
            let e = t.remove(&[i; 16]).expect("buffered");
            assert_eq!(e.summary.span_count, u32::from(i));
        }
        assert_eq!(t.remove(&[0; 16]).map(|e| e.summary.span_count), None);
        for i in 100..150u8 {
            t.insert([i; 16], entry(usize::from(i)));
        }
        // The 50 new traces took the 50 freed slots.
        assert_eq!((t.len(), t.slots()), (100, 100));
        for i in 50..150u8 {
            assert_eq!(
                t.get(&[i; 16]).map(|e| e.summary.span_count),
                Some(u32::from(i))
            );
        }
        assert!(!t.contains_key(&[3; 16]));
        t.get_mut(&[60; 16]).expect("buffered").held = 7;
        assert_eq!(t.get(&[60; 16]).map(|e| e.held), Some(7));
        assert_eq!(t.keys().count(), 100);
    }

    /// Guarantees: a slot stays at most 120 bytes (its id and a trace with two spans
    /// inline), a span 16: a field added to either is paid per buffered trace or span, and
    /// the charge (`metrics::TRACE_OVERHEAD_BYTES`, `SPAN_OVERHEAD_BYTES`) must follow.
    #[test]
    fn slots_and_spans_stay_small() {
        assert_eq!(std::mem::size_of::<BufferedSpan>(), 16);
        assert!(
            std::mem::size_of::<Slot>() <= 120,
            "{}",
            std::mem::size_of::<Slot>()
        );
        // The handle of a span on its way to a shard (docs/configuration.md).
        assert_eq!(std::mem::size_of::<super::super::trace::IncomingSpan>(), 72);
    }

    /// Scenario: a large trace's list, full, receives a request's part of 300 spans, then
    /// spans one at a time; a small list fills; a list full in its slot.
    /// Guarantees: the large list grows by exactly the part, then by a quarter (not to
    /// the next power of two); a full list of eight takes room for twelve, one of twelve is
    /// left to double; one leaving the slot takes room for eight at once.
    #[test]
    fn large_span_lists_grow_by_what_arrives() {
        let span = BufferedSpan::alone(bytes::Bytes::from_static(b"0123456789"));
        let mut list = SpanList::with_capacity(100);
        list.extend(std::iter::repeat_n(span.clone(), 100));
        make_room(&mut list, || 300);
        assert_eq!(list.capacity(), 400);
        list.extend(std::iter::repeat_n(span.clone(), 300));
        make_room(&mut list, || 1);
        assert_eq!(list.capacity(), 500);
        // A full list of eight takes room for twelve; of twelve, it is left to double.
        let mut small = SpanList::with_capacity(FIRST_SPILL);
        small.extend(std::iter::repeat_n(span.clone(), FIRST_SPILL));
        make_room(&mut small, || panic!("not asked under sixteen spans"));
        assert_eq!(small.capacity(), 12);
        small.extend(std::iter::repeat_n(span.clone(), 4));
        make_room(&mut small, || {
            panic!("a small list is left to the vector's growth")
        });
        assert_eq!(small.capacity(), 12);
        small.push(span.clone());
        assert_eq!(small.capacity(), 16);
        // A list leaving its slot goes straight to room for eight.
        let mut inline = SpanList::new();
        inline.extend(std::iter::repeat_n(span.clone(), INLINE_SPANS));
        make_room(&mut inline, || panic!("not asked when leaving the slot"));
        assert_eq!(inline.capacity(), FIRST_SPILL);
        assert_eq!(inline.len(), INLINE_SPANS);
    }

    /// Guarantees: a new trace's first spans stay in its slot when they fit; past that its
    /// list takes room for at least eight, or exactly the spans it has when more.
    #[test]
    fn a_new_list_takes_room_as_a_list_leaving_its_slot() {
        assert_eq!(first_capacity(1), 1);
        assert_eq!(first_capacity(INLINE_SPANS), INLINE_SPANS);
        assert!(!SpanList::with_capacity(first_capacity(INLINE_SPANS)).spilled());
        assert_eq!(first_capacity(INLINE_SPANS + 1), FIRST_SPILL);
        assert_eq!(first_capacity(FIRST_SPILL + 5), FIRST_SPILL + 5);
    }

    #[test]
    fn one_or_two_spans_live_in_the_slot() {
        assert!(!SpanList::with_capacity(INLINE_SPANS).spilled());
        assert!(SpanList::with_capacity(INLINE_SPANS + 1).spilled());
    }
}
