//! Traces an early decision passed over because their root span had not arrived, grouped
//! by where they come from, so that one source of rootless traces pays for them first.
//!
//! A shard over a limit decides early the traces whose root has arrived, then these
//! (see `Shard::spared`). Taken by age alone, a flood of orphan spans (each names a
//! parent that never comes, so every one of them waits for a root) had every other
//! sender's waiting traces decided on their children. So they are kept in [`GROUPS`]
//! queues, one per group of resources (by a keyed hash of the resource of a trace's first
//! span: the `ResourceSpans` it came in, which routers and peers pass on unchanged). While
//! one group holds more than an eighth of them ([`HEAVY`]), early decisions take that
//! group's oldest traces; otherwise the oldest of all. A source of many rootless traces
//! fills its own group and pays for them; the other groups' traces wait until they are
//! due.
//!
//! A resource stands for a sender here because the gateway sees no client: behind a
//! router, every span arrives from the router's address. It is a weaker mark than an
//! address: a sender who spreads its spans over many resources spreads them over every
//! group, no group is heavy, and early decisions take traces by age, as before (unless
//! another sender then holds more than an eighth: its traces go first). Taking from the
//! fullest group there instead would pick the one that holds a waiting sender's traces
//! beside its share of the flood (a trial measured it: docs/benchmarks.md, "Session 57").
//! A sender whose group a flood shares (one chance in [`GROUPS`] per resource, or for
//! certain when the flood copies its resource, which the gateway cannot tell from its own
//! spans) has its waiting traces taken first with the flood's, as they are older. The
//! seed is drawn per shard, so a sender cannot aim at another's group but by sending
//! under its very resource.
//!
//! In an honest overload, with no flood, the same rule makes a resource that holds more
//! than an eighth of the waiting traces (a busy service) have its own decided earlier in
//! their wait than other resources' are.
//!
//! A resource's header is hashed by at most [`HASHED`] bytes (its first and last halves,
//! and its length), so a request of huge resources and many one-span traces costs bounded
//! work per trace.
//!
//! Nothing here runs for a shard under its limits: a trace comes here only when an early
//! decision looked at it.
//!
//! A group gives its queue's room back as it empties ([`DeadlineQueue::shrink_when_sparse`]):
//! a flood that moves from resource to resource fills one group after another, and each
//! of 64 queues keeping the room of the most it ever held grew a gateway with a 32 MiB
//! buffer to 160 MiB that no limit counted (a hostile check; docs/benchmarks.md, "Session
//! 57"). A group's room is then at most four times what it holds, or 256 ids (and as many due times).

use std::hash::BuildHasher;

use tokio::time::Instant;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::timer::DeadlineQueue;

/// How many groups resources are hashed into.
pub const GROUPS: usize = 64;

/// A group holding more than `1 / HEAVY` of the spared traces gives up its own first.
/// Eight catches a flood from fewer than eight resources, while a flood spread evenly
/// over every group leaves each about 1/64.
pub const HEAVY: usize = 8;

/// The most bytes of a resource's header that are hashed: the whole when it is no longer,
/// else its first and last `HASHED / 2` bytes with its length. Resources that differ only
/// between them share a group.
pub const HASHED: usize = 512;

/// The spared traces of one shard, by group, each group in due order.
#[derive(Debug)]
pub struct Spared {
    groups: Box<[DeadlineQueue]>,
    /// Traces in all groups.
    len: usize,
    seed: u64,
    /// The group early decisions take from, as [`Self::choose`] last chose it.
    taking: usize,
}

impl Default for Spared {
    fn default() -> Self {
        // Fixed under test, so that which resources share a group does not change from run
        // to run; otherwise drawn from std's randomly keyed hasher, as the trace tables'.
        let seed = if cfg!(test) {
            0
        } else {
            std::collections::hash_map::RandomState::new().hash_one(0x7370_6172_u64)
        };
        Spared {
            groups: (0..GROUPS).map(|_| DeadlineQueue::default()).collect(),
            len: 0,
            seed,
            taking: 0,
        }
    }
}

impl Spared {
    /// The group of traces whose first span came under `resource` (the encoded
    /// `ResourceSpans` fields but its spans: see `SpanParts::resource`).
    pub fn group_of(&self, resource: &[u8]) -> usize {
        let hash = if resource.len() <= HASHED {
            xxh3_64_with_seed(resource, self.seed)
        } else {
            let head = &resource[..HASHED / 2];
            let tail = &resource[resource.len() - HASHED / 2..];
            let seed = self.seed ^ resource.len() as u64;
            xxh3_64_with_seed(tail, xxh3_64_with_seed(head, seed))
        };
        // GROUPS divides 2^64: the remainder is as even as the hash.
        (hash % GROUPS as u64) as usize
    }

    /// Spares `trace_id` in `group` until `due` (kept behind the group's last due time, as
    /// [`DeadlineQueue::push_due`]).
    pub fn push_due(&mut self, group: usize, trace_id: [u8; 16], due: Instant) {
        self.groups[group % GROUPS].push_due(trace_id, due);
        self.len += 1;
    }

    /// Traces spared.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no trace is spared.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The earliest due time of any group.
    pub fn next_due(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        self.groups.iter().filter_map(DeadlineQueue::next_due).min()
    }

    /// A trace due at `now`, from any group.
    pub fn pop_due(&mut self, now: Instant) -> Option<[u8; 16]> {
        if self.is_empty() {
            return None;
        }
        (0..GROUPS).find_map(|i| self.take_in(i, |g| g.pop_due(now)))
    }

    /// Any spared trace, due or not (a drain takes them all).
    pub fn pop_front(&mut self) -> Option<[u8; 16]> {
        if self.is_empty() {
            return None;
        }
        (0..GROUPS).find_map(|i| self.take_in(i, DeadlineQueue::pop_front))
    }

    /// What `pop` takes from group `i`, counted out, the group then giving its room back
    /// as it empties.
    fn take_in<T>(
        &mut self,
        i: usize,
        pop: impl FnOnce(&mut DeadlineQueue) -> Option<T>,
    ) -> Option<T> {
        let group = &mut self.groups[i];
        let taken = pop(group)?;
        group.shrink_when_sparse();
        self.len -= 1;
        Some(taken)
    }

    /// Makes the group [`Self::front`] reads and [`Self::pop_front_due`] takes from: the
    /// fullest (the first of equals) when it holds more than `1 / HEAVY` of the traces,
    /// else the one whose oldest trace is due first.
    pub fn choose(&mut self) {
        let mut fullest = (0, 0);
        let mut first_due: Option<(usize, Instant)> = None;
        for (i, g) in self.groups.iter().enumerate() {
            if g.len() > fullest.1 {
                fullest = (i, g.len());
            }
            if let Some(due) = g.next_due() {
                if first_due.is_none_or(|(_, d)| due < d) {
                    first_due = Some((i, due));
                }
            }
        }
        self.taking = match first_due {
            Some((oldest, _)) if fullest.1 * HEAVY <= self.len => oldest,
            _ => fullest.0,
        };
    }

    /// The next `n` trace ids (or fewer) of the group chosen, without taking them.
    pub fn front(&self, n: usize) -> impl Iterator<Item = &[u8; 16]> {
        self.groups[self.taking].front(n)
    }

    /// The oldest trace of the group chosen, with its due time; once that group is empty,
    /// of the one chosen next.
    pub fn pop_front_due(&mut self) -> Option<([u8; 16], Instant)> {
        if self.is_empty() {
            return None;
        }
        if self.groups[self.taking].is_empty() {
            self.choose();
        }
        self.take_in(self.taking, DeadlineQueue::pop_front_due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    /// Scenario: a group of five traces and a group of two, spared in turns.
    /// Guarantees: early decisions take the fuller group's traces, oldest first, until
    /// the groups are even, then the first of equals (each holds over an eighth); once the
    /// chosen group is empty the other is taken without choosing again; the length counts
    /// every group.
    #[tokio::test(start_paused = true)]
    async fn the_fullest_group_gives_up_its_oldest_first() {
        let mut spared = Spared::default();
        let (flood, other) = (spared.group_of(b"flood"), spared.group_of(b"shop"));
        assert_ne!(flood, other, "pick resources in different groups");
        let now = Instant::now();
        for n in 0..5 {
            spared.push_due(flood, id(10 + n), now + Duration::from_secs(u64::from(n)));
            if n < 2 {
                spared.push_due(other, id(20 + n), now);
            }
        }
        assert_eq!(spared.len(), 7);
        spared.choose();
        assert_eq!(
            spared.front(2).copied().collect::<Vec<_>>(),
            [id(10), id(11)]
        );
        let mut taken = Vec::new();
        for _ in 0..3 {
            taken.push(spared.pop_front_due().unwrap().0);
        }
        assert_eq!(taken, [id(10), id(11), id(12)]);
        // Chosen again: two each; the group chosen keeps giving until empty.
        spared.choose();
        let first = spared.pop_front_due().unwrap().0;
        let second = spared.pop_front_due().unwrap().0;
        let third = spared.pop_front_due().unwrap().0;
        let group = |t: [u8; 16]| t[0] / 10;
        assert_eq!(group(first), group(second));
        assert_ne!(group(second), group(third));
        assert_eq!(spared.len(), 1);
        spared.pop_front_due().unwrap();
        assert!(spared.pop_front_due().is_none());
        assert!(spared.is_empty());
    }

    /// Scenario: 41 groups of two traces each, one of them holding the oldest trace, and
    /// a group of three newer ones (the fullest, as a waiting sender's group is beside a
    /// flood spread over every resource); then one group of 20 more.
    /// Guarantees: with no group holding over an eighth, the oldest are taken, not the
    /// fullest group's; once a group holds over an eighth, its traces are taken first.
    #[tokio::test(start_paused = true)]
    async fn without_a_heavy_group_the_oldest_go_first() {
        let mut spared = Spared::default();
        let now = Instant::now();
        let at = |s: u64| now + Duration::from_secs(s);
        for g in 0..41u8 {
            let first = if g == 7 { at(1) } else { at(2) };
            spared.push_due(usize::from(g), id(g * 2), first);
            spared.push_due(usize::from(g), id(g * 2 + 1), at(2));
        }
        for n in 0..3 {
            spared.push_due(41, id(200 + n), at(2));
        }
        spared.choose();
        assert_eq!(spared.pop_front_due(), Some((id(14), at(1))));
        assert_eq!(spared.pop_front_due(), Some((id(15), at(2))));
        for n in 0..20 {
            spared.push_due(50, id(100 + n), at(3));
        }
        spared.choose();
        assert_eq!(spared.pop_front_due(), Some((id(100), at(3))));
    }

    /// Scenario: resources longer than [`HASHED`]: one of 1 MiB, the same with a byte
    /// changed at either end or in the middle, and one byte longer.
    /// Guarantees: a change within the hashed bytes, or of the length, moves it to other
    /// groups for most seeds; one between them does not.
    #[test]
    fn long_resources_are_hashed_by_their_ends_and_length() {
        let long = vec![7u8; 1 << 20];
        let changed = |at: usize| {
            let mut r = long.clone();
            r[at] = 8;
            r
        };
        let mut longer = long.clone();
        longer.push(7);
        let mut moved = [0; 3];
        for seed in 0..64 {
            let spared = Spared {
                seed,
                ..Spared::default()
            };
            let g = spared.group_of(&long);
            assert_eq!(spared.group_of(&changed(long.len() / 2)), g);
            for (i, other) in [changed(0), changed(long.len() - 1), longer.clone()]
                .iter()
                .enumerate()
            {
                moved[i] += usize::from(spared.group_of(other) != g);
            }
        }
        // Each lands elsewhere but by a 1-in-64 chance per seed.
        assert!(moved.iter().all(|&m| m >= 50), "{moved:?}");
    }

    /// Scenario: 100,000 traces spared in one group, then taken by early decisions, due
    /// times and a drain in turn (a flood that has moved on to another resource).
    /// Guarantees: the group gives its room back as it empties: at most four times what
    /// it holds, and at the end no more than [`crate::timer::KEPT_ROOM`] ids.
    #[tokio::test(start_paused = true)]
    async fn an_emptied_group_gives_its_room_back() {
        let mut spared = Spared::default();
        let now = Instant::now();
        for n in 0..100_000u32 {
            let mut id = [0; 16];
            id[..4].copy_from_slice(&n.to_le_bytes());
            spared.push_due(5, id, now + Duration::from_millis(u64::from(n / 1000)));
        }
        let peak = spared.groups[5].capacity();
        assert!(peak >= 100_000);
        spared.choose();
        for _ in 0..60_000 {
            spared.pop_front_due().unwrap();
        }
        assert!(
            spared.groups[5].capacity() <= 4 * 40_000,
            "{}",
            spared.groups[5].capacity()
        );
        while spared.pop_due(now + Duration::from_secs(90)).is_some() {}
        assert!(spared.groups[5].capacity() <= 4 * spared.len().max(64));
        while spared.pop_front().is_some() {}
        assert!(spared.groups[5].capacity() <= crate::timer::KEPT_ROOM);
        assert!(spared.is_empty());
    }

    /// Scenario: traces spared in two groups with different due times.
    /// Guarantees: the next due time is the earliest of any group; only due traces are
    /// popped by time, from whichever group holds them; a drain's pop takes the rest.
    #[tokio::test(start_paused = true)]
    async fn due_traces_come_from_every_group() {
        let mut spared = Spared::default();
        let (a, b) = (spared.group_of(b"flood"), spared.group_of(b"shop"));
        let now = Instant::now();
        assert_eq!(spared.next_due(), None);
        spared.push_due(a, id(1), now + Duration::from_secs(5));
        spared.push_due(b, id(2), now + Duration::from_secs(2));
        spared.push_due(b, id(3), now + Duration::from_secs(9));
        assert_eq!(spared.next_due(), Some(now + Duration::from_secs(2)));
        let at = now + Duration::from_secs(6);
        let mut due = Vec::new();
        while let Some(t) = spared.pop_due(at) {
            due.push(t);
        }
        due.sort();
        assert_eq!(due, [id(1), id(2)]);
        assert_eq!(spared.next_due(), Some(now + Duration::from_secs(9)));
        assert_eq!(spared.pop_front(), Some(id(3)));
        assert_eq!(spared.pop_front(), None);
        assert_eq!(spared.len(), 0);
    }
}
