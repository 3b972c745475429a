#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Balance and minimal-movement properties of the hash ring.

use proptest::prelude::*;
use tailgate_core::ring::{Member, Ring};

fn members(n: usize, salt: u32) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("10.{}.{}.{}:4317", salt % 250, i / 250, i % 250)))
        .collect()
}

fn ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            for chunk in id.chunks_mut(8) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                chunk.copy_from_slice(&s.to_le_bytes());
            }
            id
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Scenario: 3 to 50 members with random names, 400k random trace ids.
    /// Guarantees: every member's share is within ±10% of fair.
    #[test]
    fn shares_are_within_ten_percent_of_fair(n in 3usize..=50, salt in any::<u32>(), seed in any::<u64>()) {
        let ring = Ring::new(members(n, salt));
        let ids = ids(400_000, seed);
        let mut counts = vec![0usize; n];
        for id in &ids {
            counts[ring.owner_index(id).unwrap()] += 1;
        }
        let fair = ids.len() as f64 / n as f64;
        for (i, c) in counts.iter().enumerate() {
            let dev = (*c as f64 - fair) / fair;
            prop_assert!(dev.abs() <= 0.10, "member {} of {}: share off fair by {:.3}", i, n, dev);
        }
    }

    /// Scenario: a ring of N members gains one, or loses one.
    /// Guarantees: adding moves at most 1.2/(N+1) of ids, and only onto the new member;
    /// removing moves exactly the removed member's ids and nothing else.
    #[test]
    fn membership_changes_move_the_minimum(n in 3usize..=50, salt in any::<u32>(), seed in any::<u64>(), which in any::<prop::sample::Index>()) {
        let base = members(n + 1, salt);
        let before = Ring::new(base[..n].to_vec());
        let after = Ring::new(base.clone());
        let ids = ids(200_000, seed);
        let mut moved = 0usize;
        for id in &ids {
            let (a, b) = (before.owner(id).unwrap(), after.owner(id).unwrap());
            if a != b {
                moved += 1;
                prop_assert_eq!(b, &base[n]);
            }
        }
        let share = moved as f64 / ids.len() as f64;
        prop_assert!(share <= 1.2 / (n as f64 + 1.0), "added one to {}: moved {:.4}", n, share);

        let gone = &base[which.index(n)];
        let smaller = Ring::new(base[..n].iter().filter(|m| *m != gone).cloned());
        for id in &ids {
            let (a, b) = (before.owner(id).unwrap(), smaller.owner(id).unwrap());
            if a != gone {
                prop_assert_eq!(a, b);
            } else {
                prop_assert_ne!(b, gone);
            }
        }
    }
}

/// Scenario: the same members given in different orders and with duplicates.
/// Guarantees: every node builds the same ring.
#[test]
fn ring_does_not_depend_on_member_order() {
    let m = members(7, 3);
    let mut shuffled = m.clone();
    shuffled.reverse();
    shuffled.push(m[2].clone());
    let (a, b) = (Ring::new(m), Ring::new(shuffled));
    for id in ids(10_000, 9) {
        assert_eq!(a.owner(&id), b.owner(&id));
    }
}
