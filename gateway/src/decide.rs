//! The decision cache: trace ids decided recently, so that spans arriving after their
//! trace's decision follow it (kept → exported at once; dropped → dropped and counted as
//! late) instead of starting a new trace. Bounded, with no allocation after it is made.
//!
//! Every decision is inserted once and looked up once per new trace (and per late span),
//! on the shard's hot path, so the cache is a set-associative table rather than a hash map
//! plus a FIFO of ids: an id's keyed hash picks one set of [`WAYS`] slots, a new id takes
//! the set's oldest slot, and a lookup compares 16-bit tags before it reads an id. The
//! tags of every set lie together in one dense array (2 bytes per id, 32 per set): a
//! lookup of an id that is not there (every new trace) reads one line of it, which stays
//! in the core's cache where the slots (24 bytes per id) would not; only a tag match or
//! an insert reads a set's slots.
//!
//! What is forgotten first is the oldest decision *of the set*, not of the whole cache.
//! With keyed hashing, sets fill evenly whatever ids senders pick: an id is kept for the
//! next `capacity` decisions on average, and for at least half of that with probability
//! above 99% (16 ways; see the test `recent_decisions_are_remembered`).

use crate::buffer::hash::{prefetch, IdHash, TraceIdHash};

/// A remembered decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cached {
    /// Kept, with this probability (late spans carry the same adjusted count).
    Kept(f64),
    /// Not kept.
    Dropped,
}

/// Slots per set.
pub const WAYS: usize = 16;

/// What a slot's decision word holds for "dropped" (probabilities are never negative).
const DROPPED: f64 = -1.0;

/// One set's tags: per slot, 0 when empty, else 15 bits of the id's hash with the top bit
/// set; 32 bytes, so a lookup reads one cache line or two. (Aligning tags and slots to
/// their lines measured 2-4% slower in the 2-span bench: docs/benchmarks.md.)
type Tags = [u16; WAYS];

/// One set's slots, each an id beside its decision (384 bytes).
type Set = [Slot; WAYS];

#[derive(Clone, Copy)]
struct Slot {
    id: [u8; 16],
    /// [`DROPPED`], or the probability a kept trace was kept with.
    decision: f64,
}

const EMPTY_SET: Set = [Slot {
    id: [0; 16],
    decision: 0.0,
}; WAYS];

/// The way of `id` in a set with `tags` and `slots`, if it is there.
#[inline]
fn find(tags: &Tags, slots: &Set, tag: u16, id: &[u8; 16], ways: usize) -> Option<usize> {
    (0..ways).find(|&w| tags[w] == tag && slots[w].id == *id)
}

/// Bytes an entry takes, its slot (an id and its decision) and its tag: all of them are
/// allocated when the cache is made (a fixed table, where the Collector's LRU grows as it
/// fills), so a cache's size is memory the gateway holds from its start.
pub const ENTRY_BYTES: u64 = (std::mem::size_of::<Slot>() + std::mem::size_of::<u16>()) as u64;

/// The most entries a cache may be given (`buffer.decision_cache_size`, or the policy
/// file's `decision_cache` sizes added): 2^30, about 26 GiB held from the start. Past it a
/// config is refused rather than the allocation failing when the gateway starts.
pub const MAX_ENTRIES: usize = 1 << 30;

/// Recently decided trace ids and whether they were kept.
pub struct DecisionCache {
    tags: Box<[Tags]>,
    sets: Box<[Set]>,
    /// Per set, the slot the next new id takes: the set's oldest.
    next: Box<[u8]>,
    /// Slots used per set: [`WAYS`], or fewer for a cache smaller than one set.
    ways: usize,
    hash: TraceIdHash,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache")
            .field("sets", &self.sets.len())
            .field("ways", &self.ways)
            .finish()
    }
}

impl DecisionCache {
    /// A cache of `capacity` ids, rounded up to whole sets of [`WAYS`] (a cache smaller
    /// than one set holds exactly `capacity`).
    pub fn new(capacity: usize) -> Self {
        Self::with_hasher(capacity, TraceIdHash::default())
    }

    /// [`Self::new`], placing ids by `hash` (a shard's trace table's, so that an id hashed
    /// once serves both: the `_hashed` methods).
    pub fn with_hasher(capacity: usize, hash: TraceIdHash) -> Self {
        let capacity = capacity.max(1);
        let ways = capacity.min(WAYS);
        let sets = capacity.div_ceil(ways);
        DecisionCache {
            tags: vec![[0; WAYS]; sets].into_boxed_slice(),
            sets: vec![EMPTY_SET; sets].into_boxed_slice(),
            next: vec![0; sets].into_boxed_slice(),
            ways,
            hash,
        }
    }

    /// How many ids it can hold.
    pub fn capacity(&self) -> usize {
        self.sets.len() * self.ways
    }

    /// The set of the id of hash `h` and its tag there.
    #[inline]
    fn place(&self, h: IdHash) -> (usize, u16) {
        let h = h.0;
        // Multiply-shift maps the hash onto any number of sets without a division (it
        // reads the high bits; the tag takes low ones).
        let set = ((u128::from(h) * self.sets.len() as u128) >> 64) as usize;
        (set, (h as u16) | 0x8000)
    }

    /// Starts loading the tags and slots that recording the ids of `hashes` will read
    /// and write, so that the cache misses of a batch about to be recorded overlap (as
    /// [`crate::buffer::table::TraceTable::warm`]).
    pub fn warm(&self, hashes: impl Iterator<Item = IdHash>) {
        for h in hashes {
            let (set, _) = self.place(h);
            prefetch(&self.tags[set]);
            let way = usize::from(self.next[set]);
            prefetch(&self.sets[set][way]);
        }
    }

    /// Starts loading the tags a lookup of the id of hash `h` reads first, so that a
    /// lookup a few spans later finds them in cache (see [`crate::buffer::hash`]).
    #[inline]
    pub fn prefetch_hashed(&self, h: IdHash) {
        prefetch(&self.tags[self.place(h).0]);
    }

    /// Records a decision; an id already here keeps its place and takes the new decision.
    pub fn insert(&mut self, trace_id: [u8; 16], decision: Cached) {
        self.insert_hashed(self.hash.hash_id(&trace_id), trace_id, decision);
    }

    /// [`Self::insert`] with the id's hash (under this cache's hasher) already known.
    pub fn insert_hashed(&mut self, h: IdHash, trace_id: [u8; 16], decision: Cached) {
        let (i, tag) = self.place(h);
        let ways = self.ways;
        let set = &mut self.sets[i];
        let tags = &mut self.tags[i];
        let word = match decision {
            Cached::Kept(p) => p,
            Cached::Dropped => DROPPED,
        };
        let w = match find(tags, set, tag, &trace_id, ways) {
            Some(w) => w,
            None => {
                let w = usize::from(self.next[i]);
                self.next[i] = ((w + 1) % ways) as u8;
                tags[w] = tag;
                set[w].id = trace_id;
                w
            }
        };
        set[w].decision = word;
    }

    /// Every remembered decision.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], Cached)> {
        self.sets
            .iter()
            .zip(self.tags.iter())
            .flat_map(move |(set, tags)| {
                (0..self.ways)
                    .filter(|&w| tags[w] != 0)
                    .map(|w| (&set[w].id, decode(set[w].decision)))
            })
    }

    /// The decision for `trace_id`, if still remembered.
    #[inline]
    pub fn get(&self, trace_id: &[u8; 16]) -> Option<Cached> {
        self.get_hashed(self.hash.hash_id(trace_id), trace_id)
    }

    /// [`Self::get`] with the id's hash (under this cache's hasher) already known.
    #[inline]
    pub fn get_hashed(&self, h: IdHash, trace_id: &[u8; 16]) -> Option<Cached> {
        let (i, tag) = self.place(h);
        let set = &self.sets[i];
        find(&self.tags[i], set, tag, trace_id, self.ways).map(|w| decode(set[w].decision))
    }
}

fn decode(word: f64) -> Cached {
    if word < 0.0 {
        Cached::Dropped
    } else {
        Cached::Kept(word)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> [u8; 16] {
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&i.to_le_bytes());
        k[8..].copy_from_slice(&(!i).to_be_bytes());
        k
    }

    #[test]
    fn oldest_decisions_are_forgotten_first() {
        let mut c = DecisionCache::new(2);
        c.insert([1; 16], Cached::Kept(1.0));
        c.insert([2; 16], Cached::Dropped);
        c.insert([3; 16], Cached::Kept(0.5));
        assert_eq!(c.get(&[1; 16]), None);
        assert_eq!(c.get(&[2; 16]), Some(Cached::Dropped));
        assert_eq!(c.get(&[3; 16]), Some(Cached::Kept(0.5)));
        assert_eq!(c.iter().count(), 2);
    }

    #[test]
    fn a_decision_made_again_replaces_the_first_in_place() {
        let mut c = DecisionCache::new(4);
        c.insert([1; 16], Cached::Dropped);
        c.insert([1; 16], Cached::Kept(0.25));
        assert_eq!(c.get(&[1; 16]), Some(Cached::Kept(0.25)));
        assert_eq!(c.iter().count(), 1);
        // Kept with probability 0 is still kept, not an empty slot.
        c.insert([2; 16], Cached::Kept(0.0));
        assert_eq!(c.get(&[2; 16]), Some(Cached::Kept(0.0)));
    }

    #[test]
    fn recent_decisions_are_remembered() {
        // After 3 × capacity decisions: 99.9% of the newest quarter of a capacity are
        // remembered, 99% of the newest half, and at most 0.1% of the first capacity (a
        // FIFO would keep all of the first two and none of the last; about 1 in 10,000
        // sets sees so few later decisions that an old one stays).
        let capacity = 100_000;
        let mut c = DecisionCache::new(capacity);
        assert_eq!(c.capacity(), capacity.div_ceil(WAYS) * WAYS);
        let n = 3 * capacity as u64;
        for i in 0..n {
            c.insert(id(i), Cached::Dropped);
        }
        let held = |range: std::ops::Range<u64>| range.filter(|&i| c.get(&id(i)).is_some()).count();
        let quarter = capacity as u64 / 4;
        let newest = held(n - quarter..n);
        assert!(
            newest * 1000 >= quarter as usize * 999,
            "{newest} of {quarter}"
        );
        let half = capacity as u64 / 2;
        let recent = held(n - half..n);
        assert!(recent * 100 >= half as usize * 99, "{recent} of {half}");
        let oldest = held(0..capacity as u64);
        assert!(
            oldest * 1000 <= capacity,
            "{oldest} of the oldest {capacity}"
        );
        // Full, never over.
        assert_eq!(c.iter().count(), c.capacity());
    }
}
