//! The index of a shard's trace table: from a trace id's keyed hash to the slot holding
//! the trace, in one cache line for almost every lookup.
//!
//! A shard looks up every arriving trace id, and a new trace (most of them, with small
//! traces) misses every cache level: the index's data is far larger than the caches. A
//! `HashMap<[u8; 16], u32>` keeps its control bytes and its entries in two arrays, so a
//! lookup and the insert after it touched two lines, and a profile of 2-span traces put
//! three quarters of the shard's insert on those two misses (docs/benchmarks.md). Here a
//! bucket is 8 bytes, 32 bits of the id's hash beside the slot number, eight to a line,
//! probed linearly from the hash's home bucket: one line answers "not here" or names the
//! slot, whose id the table compares (two ids agreeing on the 32 bits cost one more read,
//! not a wrong answer). Removal shifts the following buckets back, so no tombstones pile
//! up. The index holds at most three quarters of its buckets, so probes stay short, and
//! keeps its peak size, as the slab it points into does.

/// A bucket: the low 32 bits of an id's hash (`tag`) and the slot it names, or [`EMPTY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    tag: u32,
    slot: u32,
}

/// The slot number of an empty bucket (a table never has 2^32 slots: memory runs out
/// first).
const EMPTY: u32 = u32::MAX;

const VACANT: Bucket = Bucket {
    tag: 0,
    slot: EMPTY,
};

/// Buckets of a new index.
const INITIAL_BUCKETS: usize = 16;

/// Slot numbers by hash tag.
#[derive(Debug)]
pub struct SlotIndex {
    buckets: Box<[Bucket]>,
    /// `buckets.len() - 1`; the length is a power of two.
    mask: usize,
    len: usize,
}

impl Default for SlotIndex {
    fn default() -> Self {
        SlotIndex {
            buckets: vec![VACANT; INITIAL_BUCKETS].into_boxed_slice(),
            mask: INITIAL_BUCKETS - 1,
            len: 0,
        }
    }
}

impl SlotIndex {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// Starts loading the bucket where a lookup of `tag` begins (see [`super::hash::prefetch`]).
    #[inline]
    pub fn prefetch(&self, tag: u32) {
        super::hash::prefetch(&self.buckets[self.home(tag)]);
    }

    /// The slot of the first bucket under `tag`, if that bucket is where a lookup begins:
    /// for [`super::table::TraceTable::warm`], which then loads the slot too.
    #[inline]
    pub fn home_slot(&self, tag: u32) -> Option<u32> {
        let b = self.buckets[self.home(tag)];
        (b.slot != EMPTY && b.tag == tag).then_some(b.slot)
    }

    /// The slot under `tag` for which `is_it` says yes, and where its bucket is.
    #[inline]
    pub fn find(&self, tag: u32, mut is_it: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let mut at = self.home(tag);
        loop {
            let b = self.buckets[at];
            if b.slot == EMPTY {
                return None;
            }
            if b.tag == tag && is_it(b.slot) {
                return Some((at, b.slot));
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Adds `slot` under `tag`; the caller knows it is not there yet.
    pub fn insert(&mut self, tag: u32, slot: u32) {
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.grow();
        }
        self.place(Bucket { tag, slot });
        self.len += 1;
    }

    fn place(&mut self, bucket: Bucket) {
        let mut at = self.home(bucket.tag);
        while self.buckets[at].slot != EMPTY {
            at = (at + 1) & self.mask;
        }
        self.buckets[at] = bucket;
    }

    /// Twice the buckets; entries are placed again by their tags (no id is hashed again).
    fn grow(&mut self) {
        let new_len = self.buckets.len() * 2;
        let old = std::mem::replace(&mut self.buckets, vec![VACANT; new_len].into_boxed_slice());
        self.mask = new_len - 1;
        for b in old.iter().filter(|b| b.slot != EMPTY) {
            self.place(*b);
        }
    }

    /// Removes the entry whose bucket is `at` (from [`Self::find`]): the buckets after it
    /// that would be found from before it move back, so every entry stays reachable from
    /// its home without a gap.
    pub fn remove_at(&mut self, at: usize) {
        let mut hole = at;
        let mut next = (at + 1) & self.mask;
        loop {
            let b = self.buckets[next];
            if b.slot == EMPTY {
                break;
            }
            // `b` may fill the hole when its home is not after the hole on the way to
            // `next` (cyclically): then it is still found from its home.
            let from_home = next.wrapping_sub(self.home(b.tag)) & self.mask;
            let from_hole = next.wrapping_sub(hole) & self.mask;
            if from_home >= from_hole {
                self.buckets[hole] = b;
                hole = next;
            }
            next = (next + 1) & self.mask;
        }
        self.buckets[hole] = VACANT;
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Scenario: a long random mix of inserts and removals whose tags crowd a few homes
    /// (many equal tags, runs that wrap around the end), checked against a `HashMap`.
    /// Guarantees: every entry is found under its tag, nothing removed is, and the count
    /// is right, through growth and backward shifts.
    #[test]
    fn agrees_with_a_map_through_collisions_growth_and_removals() {
        let mut index = SlotIndex::default();
        let mut model: HashMap<u32, u32> = HashMap::new(); // slot -> tag
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for step in 0..200_000u32 {
            let r = next();
            // Few distinct tags, many near the top of the range: long shared runs that
            // wrap past the last bucket.
            let tag = match r % 3 {
                0 => (r >> 8) as u32 % 64,
                1 => u32::MAX - (r >> 8) as u32 % 64,
                _ => (r >> 8) as u32,
            };
            if model.len() < 3_000 && (r >> 40) % 3 != 0 {
                index.insert(tag, step);
                model.insert(step, tag);
            } else if let Some((&slot, &tag)) = model.iter().next() {
                let (at, found) = index.find(tag, |s| s == slot).expect("present");
                assert_eq!(found, slot);
                index.remove_at(at);
                model.remove(&slot);
                assert!(index.find(tag, |s| s == slot).is_none());
            }
            assert_eq!(index.len(), model.len());
            if step % 10_000 == 0 {
                for (&slot, &tag) in &model {
                    assert_eq!(index.find(tag, |s| s == slot).map(|f| f.1), Some(slot));
                }
            }
        }
        for (&slot, &tag) in &model {
            assert_eq!(index.find(tag, |s| s == slot).map(|f| f.1), Some(slot));
        }
    }

    /// Guarantees: the index never holds more than three quarters of its buckets (so a
    /// probe always ends at an empty one), and keeps its size when emptied.
    #[test]
    fn stays_at_most_three_quarters_full() {
        let mut index = SlotIndex::default();
        for slot in 0..10_000u32 {
            index.insert(slot.wrapping_mul(2_654_435_761), slot);
            assert!(index.len() * 4 <= index.buckets.len() * 3);
        }
        let size = index.buckets.len();
        for slot in 0..10_000u32 {
            let tag = slot.wrapping_mul(2_654_435_761);
            let (at, _) = index.find(tag, |s| s == slot).expect("present");
            index.remove_at(at);
        }
        assert_eq!((index.len(), index.buckets.len()), (0, size));
        assert!(index.buckets.iter().all(|b| *b == VACANT));
    }
}
