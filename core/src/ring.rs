//! The consistent-hash ring that maps a trace id to the gateway that owns it.
//!
//! Every router and gateway builds the same ring from the same member set: each member is
//! placed at [`Ring::DEFAULT_VNODES`] points, `xxh3(member, seed = vnode)`, and a trace id
//! belongs to the member at the first point at or after `xxh3(trace_id)`, wrapping around.
//! Adding a member moves only the ids that now fall on its points; removing one moves only
//! its own ids. A 64 Ki-entry table indexed by the top 16 bits of the hash narrows the
//! binary search to a few points, so a lookup costs one hash and a handful of comparisons.

use std::fmt;
use std::sync::Arc;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A ring member's identity: `ip:port` (or `host:port` for static lists).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member(Arc<str>);

// === impl Member ===

impl Member {
    /// A member named `name`, as in `10.1.2.3:4317`.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Member(name.into())
    }

    /// The member's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Normalises a member list: sorted, without duplicates, so two nodes that discover the
/// same gateways in a different order agree.
pub fn normalise(mut members: Vec<Member>) -> Vec<Member> {
    members.sort();
    members.dedup();
    members
}

/// An immutable ring over a set of members. Build a new one when the set changes.
#[derive(Debug, Clone)]
pub struct Ring {
    members: Vec<Member>,
    /// Sorted `(point, member index)`.
    points: Vec<(u64, u32)>,
    /// `index[p]` = first position in `points` whose point has top 16 bits >= `p`.
    index: Vec<u32>,
}

// === impl Ring ===

impl Ring {
    /// Points per member. Enough that with up to 50 members each one's share of the id space
    /// stays within a few percent of fair: a share's standard deviation is about
    /// 1 / sqrt(2048), 2.2% of fair (see the ring tests).
    pub const DEFAULT_VNODES: u32 = 2048;

    /// A ring over `members` (order and duplicates do not matter).
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Self::with_vnodes(members, Self::DEFAULT_VNODES)
    }

    /// A ring with `vnodes` points per member.
    pub fn with_vnodes(members: impl IntoIterator<Item = Member>, vnodes: u32) -> Self {
        let mut members: Vec<Member> = members.into_iter().collect();
        members.sort();
        members.dedup();
        let mut points = Vec::with_capacity(members.len() * vnodes as usize);
        for (i, m) in members.iter().enumerate() {
            for v in 0..vnodes {
                points.push((
                    xxh3_64_with_seed(m.as_str().as_bytes(), u64::from(v)),
                    i as u32,
                ));
            }
        }
        // Ties (vanishingly rare) are broken by member order, the same everywhere.
        points.sort_unstable();
        let mut index = Vec::with_capacity(1 << 16);
        let mut pos = 0usize;
        for prefix in 0..(1u64 << 16) {
            while pos < points.len() && (points[pos].0 >> 48) < prefix {
                pos += 1;
            }
            index.push(pos as u32);
        }
        Ring {
            members,
            points,
            index,
        }
    }

    /// The members, sorted by name.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// True when the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The hash of a trace id that places it on the ring.
    pub fn hash(trace_id: &[u8; 16]) -> u64 {
        xxh3_64(trace_id)
    }

    /// Index into [`Ring::members`] of the owner of `trace_id`; `None` on an empty ring.
    pub fn owner_index(&self, trace_id: &[u8; 16]) -> Option<usize> {
        self.owner_of_hash(Self::hash(trace_id))
    }

    /// The owner of `trace_id`; `None` on an empty ring.
    pub fn owner(&self, trace_id: &[u8; 16]) -> Option<&Member> {
        self.owner_index(trace_id).map(|i| &self.members[i])
    }

    /// Each member's share of the hash space (indexed as [`Ring::members`]), from the arcs
    /// between the points: a member owns the arc that ends at each of its points.
    pub fn shares(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.members.len()];
        let n = self.points.len();
        if n == 1 {
            out[self.points[0].1 as usize] = 1.0;
        }
        if n <= 1 {
            return out;
        }
        let whole = 2f64.powi(64);
        for i in 0..n {
            let (p, m) = self.points[i];
            let prev = self.points[if i == 0 { n - 1 } else { i - 1 }].0;
            // For the first point the arc wraps round from the last one.
            out[m as usize] += p.wrapping_sub(prev) as f64 / whole;
        }
        out
    }

    /// Index of the owner of a hash value.
    pub fn owner_of_hash(&self, h: u64) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let prefix = (h >> 48) as usize;
        let lo = self.index[prefix] as usize;
        let hi = match self.index.get(prefix + 1) {
            Some(&next) => next as usize,
            None => self.points.len(),
        };
        let offset = self.points[lo..hi].partition_point(|&(p, _)| p < h);
        let pos = lo + offset;
        let (_, m) = if pos < self.points.len() {
            self.points[pos]
        } else {
            self.points[0]
        };
        Some(m as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a ring of 5 members. Guarantees: the shares sum to 1 and each agrees with
    /// the share of 100,000 evenly spaced hashes it owns.
    #[test]
    fn shares_are_the_arcs_each_member_owns() {
        let ring = Ring::with_vnodes((0..5).map(|i| Member::new(format!("m{i}"))), 64);
        let shares = ring.shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mut counts = [0u32; 5];
        for i in 0..100_000u64 {
            counts[ring.owner_of_hash((u64::MAX / 100_000) * i).unwrap_or(0)] += 1;
        }
        for (share, count) in shares.iter().zip(counts) {
            assert!(
                (share - f64::from(count) / 100_000.0).abs() < 0.005,
                "{shares:?} {counts:?}"
            );
        }
        let one = Ring::new([Member::new("a")]).shares();
        assert!(one.len() == 1 && (one[0] - 1.0).abs() < 1e-9, "{one:?}");
        assert!(Ring::new([]).shares().is_empty());
    }

    #[test]
    fn empty_ring_has_no_owner() {
        assert_eq!(Ring::new([]).owner(&[1; 16]), None);
    }

    #[test]
    fn lookup_table_agrees_with_plain_binary_search() {
        let ring = Ring::with_vnodes((0..7).map(|i| Member::new(format!("m{i}"))), 64);
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..20_000 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let h = rng;
            let pos = ring.points.partition_point(|&(p, _)| p < h);
            let expect = ring.points.get(pos).unwrap_or(&ring.points[0]).1 as usize;
            assert_eq!(ring.owner_of_hash(h), Some(expect));
        }
        assert_eq!(
            ring.owner_of_hash(u64::MAX),
            Some(ring.points[0].1 as usize)
        );
    }
}
