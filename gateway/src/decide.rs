//! The decision cache: trace ids decided recently, so that spans arriving after their
//! trace's decision follow it (kept → exported at once; dropped → dropped and counted as
//! late) instead of starting a new trace. Bounded: the oldest entries are forgotten first.

use std::collections::VecDeque;

use crate::buffer::hash::TraceMap;

/// A remembered decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cached {
    /// Kept, with this probability (late spans carry the same adjusted count).
    Kept(f64),
    /// Not kept.
    Dropped,
}

/// Recently decided trace ids and whether they were kept.
#[derive(Debug)]
pub struct DecisionCache {
    capacity: usize,
    map: TraceMap<Cached>,
    order: VecDeque<[u8; 16]>,
}

impl DecisionCache {
    /// A cache of at most `capacity` ids.
    pub fn new(capacity: usize) -> Self {
        DecisionCache {
            capacity: capacity.max(1),
            map: TraceMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Records a decision.
    pub fn insert(&mut self, trace_id: [u8; 16], decision: Cached) {
        if self.map.insert(trace_id, decision).is_none() {
            self.order.push_back(trace_id);
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    /// Every remembered decision.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8; 16], Cached)> {
        self.map.iter().map(|(id, c)| (id, *c))
    }

    /// The decision for `trace_id`, if still remembered.
    pub fn get(&self, trace_id: &[u8; 16]) -> Option<Cached> {
        self.map.get(trace_id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_decisions_are_forgotten_first() {
        let mut c = DecisionCache::new(2);
        c.insert([1; 16], Cached::Kept(1.0));
        c.insert([2; 16], Cached::Dropped);
        c.insert([3; 16], Cached::Kept(0.5));
        assert_eq!(c.get(&[1; 16]), None);
        assert_eq!(c.get(&[2; 16]), Some(Cached::Dropped));
        assert_eq!(c.get(&[3; 16]), Some(Cached::Kept(0.5)));
    }
}
