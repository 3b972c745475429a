//! The hasher of the shards' trace tables and decision caches. Keys are 16-byte trace ids,
//! which arrive from the network: the hash must be fast (SipHash, std's default, showed up
//! in profiles) and still keyed per process, so that a sender cannot pick ids that collide.
//! xxh3 with a random seed is both.
//!
//! A shard hashes each id once ([`IdHash`]) and hands that hash to its trace table and its
//! decision cache, which share the shard's seed: a new trace's id was hashed five times on
//! its way in (two prefetches, two lookups, the insert) and a decided one five times more.
//!
//! [`prefetch`] lets the tables start loading where an id lives a few ids ahead: a new
//! trace's index bucket and decision-cache set are cache misses on a table of a million
//! traces, and paid one after another they were most of the insert loop's time.

use std::hash::{BuildHasher, Hasher};

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Builds [`TraceIdHasher`]s with its own random seed (a shard's trace table and decision
/// cache share one).
#[derive(Debug, Clone, Copy)]
pub struct TraceIdHash {
    seed: u64,
}

impl Default for TraceIdHash {
    fn default() -> Self {
        // A random seed per hasher, drawn from std's own randomly keyed hasher.
        let seed = std::collections::hash_map::RandomState::new().hash_one(0x7461_696c_u64);
        TraceIdHash { seed }
    }
}

impl TraceIdHash {
    /// The keyed hash of one trace id, without the `Hasher` round trip (for tables that
    /// place ids themselves, like [`crate::decide::DecisionCache`]).
    #[inline]
    pub fn hash_id(&self, id: &[u8; 16]) -> IdHash {
        IdHash(xxh3_64_with_seed(id, self.seed))
    }
}

/// A trace id's keyed hash under one [`TraceIdHash`]: computed once and given to every
/// table built with that hasher. A table trusts it to be its id's hash under its own
/// hasher: with a wrong one a lookup misses (it never returns another id's entry: entries
/// are matched by id), and an insert files the entry where lookups by id will not find
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdHash(pub u64);

impl BuildHasher for TraceIdHash {
    type Hasher = TraceIdHasher;

    fn build_hasher(&self) -> TraceIdHasher {
        TraceIdHasher { state: self.seed }
    }
}

/// xxh3 over whatever bytes the key writes (for a `[u8; 16]`: its length, then its bytes).
#[derive(Debug)]
pub struct TraceIdHasher {
    state: u64,
}

impl Hasher for TraceIdHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.state = xxh3_64_with_seed(bytes, self.state);
    }

    fn write_usize(&mut self, n: usize) {
        // Arrays write their length first; it is the same for every key, so mixing it in
        // cheaply is enough.
        self.state = self.state.rotate_left(5) ^ n as u64;
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

/// Asks the CPU to start loading the cache line holding `x`, without waiting for it; no
/// effect on what the program computes (a no-op on targets without SSE).
#[inline(always)]
pub fn prefetch<T>(x: &T) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    ))]
    safe_arch::prefetch_t0(x);
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    )))]
    let _ = x;
}

/// A map keyed by trace id.
pub type TraceMap<V> = std::collections::HashMap<[u8; 16], V, TraceIdHash>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_and_spread() {
        let (a, b) = (TraceIdHash::default(), TraceIdHash::default());
        let id = [7u8; 16];
        assert_eq!(a.hash_one(id), a.hash_one(id));
        assert_eq!(a.hash_id(&id), a.hash_id(&id));
        assert_ne!(a.hash_id(&id), b.hash_id(&id));
        assert_ne!(
            a.hash_one(id),
            b.hash_one(id),
            "each hasher draws its own seed"
        );
        let mut m: TraceMap<u32> = TraceMap::default();
        for i in 0..1000u32 {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&i.to_le_bytes());
            m.insert(k, i);
        }
        assert_eq!(m.len(), 1000);
        let mut k = [0u8; 16];
        k[..4].copy_from_slice(&500u32.to_le_bytes());
        assert_eq!(m.get(&k), Some(&500));
    }
}
