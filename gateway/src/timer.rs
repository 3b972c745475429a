//! Decision timing. Every trace is due at `first_seen + decision_wait`; with one wait for
//! all traces, due times arrive in the order traces were first seen, so a FIFO queue is the
//! whole timing wheel: push at first sight, pop from the front while due.
//!
//! Pure logic: the caller passes `now`, so paused-clock tests and the simulator drive it.

use std::collections::VecDeque;

use tokio::time::{Duration, Instant};

/// The room [`DeadlineQueue::shrink_when_sparse`] leaves a queue, in ids (or due runs).
pub const KEPT_ROOM: usize = 256;

/// Deadlines in first-seen order.
///
/// Ids are kept apart from their due times, and each due time once per run of ids that
/// share it: a shard starts every new trace of a batch at the batch's arrival, so a
/// request's new traces share one due time. A due time is kept as nanoseconds since the
/// queue was made. 16 bytes per buffered trace (its id) and 16 per run, where a due time
/// beside every id made 24 per trace (goal 4b of issue 19; docs/benchmarks.md, "Session
/// 48"); a trace alone in its batch costs 32.
#[derive(Debug)]
pub struct DeadlineQueue {
    epoch: Instant,
    ids: VecDeque<[u8; 16]>,
    /// Due times in order, each with the number of ids at the front of what is left of
    /// `ids` that it covers (never 0).
    dues: VecDeque<(u64, u32)>,
}

impl Default for DeadlineQueue {
    fn default() -> Self {
        DeadlineQueue {
            epoch: Instant::now(),
            ids: VecDeque::new(),
            dues: VecDeque::new(),
        }
    }
}

impl DeadlineQueue {
    /// `due` as nanoseconds since the epoch: 0 when it is before (already due), saturating
    /// 584 years on.
    fn offset(&self, due: Instant) -> u64 {
        u64::try_from(due.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    fn at(&self, offset: u64) -> Instant {
        self.epoch + Duration::from_nanos(offset)
    }

    /// Schedules `trace_id` for `first_seen + wait`.
    pub fn push(&mut self, trace_id: [u8; 16], first_seen: Instant, wait: Duration) {
        let due = self.offset(first_seen + wait);
        // A shorter wait after a reload could make a new deadline earlier than queued ones;
        // keeping it behind them delays it by at most the difference and keeps order.
        match self.dues.back_mut() {
            Some((last, n)) if *last >= due && *n < u32::MAX => *n += 1,
            Some((last, _)) => {
                let due = due.max(*last);
                self.dues.push_back((due, 1));
            }
            None => self.dues.push_back((due, 1)),
        }
        self.ids.push_back(trace_id);
    }

    /// The next deadline.
    pub fn next_due(&self) -> Option<Instant> {
        self.dues.front().map(|(d, _)| self.at(*d))
    }

    /// Pops the next trace id if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<[u8; 16]> {
        match self.dues.front() {
            Some((due, _)) if *due <= self.offset(now) => self.pop_front(),
            _ => None,
        }
    }

    /// Pops the next trace id, due or not (early decisions).
    pub fn pop_front(&mut self) -> Option<[u8; 16]> {
        self.pop_front_due().map(|(id, _)| id)
    }

    /// [`Self::pop_front`] with the id's due time, to queue it elsewhere
    /// ([`Self::push_due`]) without recomputing it under another wait.
    pub fn pop_front_due(&mut self) -> Option<([u8; 16], Instant)> {
        let id = self.ids.pop_front()?;
        let mut due = self.epoch;
        if let Some((d, n)) = self.dues.front_mut() {
            due = self.epoch + Duration::from_nanos(*d);
            *n -= 1;
            if *n == 0 {
                self.dues.pop_front();
            }
        }
        Some((id, due))
    }

    /// Schedules `trace_id` for `due` (kept behind the last queued deadline, as
    /// [`Self::push`]).
    pub fn push_due(&mut self, trace_id: [u8; 16], due: Instant) {
        self.push(trace_id, due, Duration::ZERO);
    }

    /// The next `n` trace ids (or fewer), without taking them.
    pub fn front(&self, n: usize) -> impl Iterator<Item = &[u8; 16]> {
        self.ids.iter().take(n)
    }

    /// Gives room back once at most a quarter of it is used, down to twice what is left
    /// (and never under [`KEPT_ROOM`] ids): called after a pop, it costs O(1) amortized, as
    /// the room halves each time. For queues that fill and empty in turn (the spared
    /// groups, `buffer/spared.rs`), where keeping each one's peak held memory no limit
    /// counts.
    pub fn shrink_when_sparse(&mut self) {
        fn shrink<T>(q: &mut VecDeque<T>) {
            if q.capacity() > KEPT_ROOM && q.len() <= q.capacity() / 4 {
                q.shrink_to((q.len() * 2).max(KEPT_ROOM));
            }
        }
        shrink(&mut self.ids);
        shrink(&mut self.dues);
    }

    /// Ids it has room for without growing.
    pub fn capacity(&self) -> usize {
        self.ids.capacity()
    }

    /// Number of scheduled traces.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A moment in 8 bytes: nanoseconds from a process-wide epoch, where an `Instant` takes
/// 16. Every buffered trace keeps its first sighting as one (goal 4b of issue 19).
/// Exact to the nanosecond within 292 years of the epoch, either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Moment(i64);

/// The epoch of [`Moment`]s: the first moment asked for.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Moment {
    /// `at`, kept in 8 bytes.
    pub fn of(at: Instant) -> Self {
        let e = epoch();
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        match at.checked_duration_since(e) {
            Some(after) => Moment(nanos(after)),
            None => Moment(-nanos(e.duration_since(at))),
        }
    }

    /// The moment as an `Instant`.
    pub fn instant(self) -> Instant {
        let d = Duration::from_nanos(self.0.unsigned_abs());
        if self.0 >= 0 {
            epoch() + d
        } else {
            epoch() - d
        }
    }
}

/// Sleeps until `at`, or forever without one (a `select!` branch for an optional timer).
pub async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn traces_come_due_in_first_seen_order() {
        let mut q = DeadlineQueue::default();
        let t0 = Instant::now();
        q.push([1; 16], t0, Duration::from_secs(10));
        q.push(
            [2; 16],
            t0 + Duration::from_secs(1),
            Duration::from_secs(10),
        );
        assert_eq!(q.pop_due(t0 + Duration::from_secs(9)), None);
        assert_eq!(q.pop_due(t0 + Duration::from_secs(10)), Some([1; 16]));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(10)), None);
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(11)));
        assert_eq!(q.pop_due(t0 + Duration::from_secs(11)), Some([2; 16]));
        assert!(q.is_empty());
    }

    /// Guarantees: `front` shows the next ids in order, at most as many as asked, and
    /// takes none.
    #[tokio::test(start_paused = true)]
    async fn the_front_is_read_without_taking_it() {
        let mut q = DeadlineQueue::default();
        let t0 = Instant::now();
        for i in 1..=3u8 {
            q.push([i; 16], t0, Duration::from_secs(1));
        }
        assert_eq!(
            q.front(2).copied().collect::<Vec<_>>(),
            vec![[1; 16], [2; 16]]
        );
        assert_eq!(q.front(9).count(), 3);
        assert_eq!((q.len(), q.pop_front()), (3, Some([1; 16])));
    }

    /// Scenario: three traces first seen in one batch, two in a later one, one scheduled
    /// by a shorter wait (after a reload) behind them; popped early and when due.
    /// Guarantees: a batch's traces keep one due time between them (what the queue's size
    /// rests on), each id comes out once, in order, and the due time in force is always
    /// that of the id at the front.
    #[tokio::test(start_paused = true)]
    async fn a_batch_shares_one_due_time() {
        let mut q = DeadlineQueue::default();
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        for i in 1..=3u8 {
            q.push([i; 16], t0, wait);
        }
        assert_eq!(q.dues.len(), 1);
        let t1 = t0 + Duration::from_millis(5);
        q.push([4; 16], t1, wait);
        q.push([5; 16], t1, wait);
        q.push([6; 16], t1, Duration::from_secs(1));
        assert_eq!((q.len(), q.dues.len()), (6, 2));
        assert_eq!(q.pop_front(), Some([1; 16]));
        assert_eq!(q.next_due(), Some(t0 + wait));
        assert_eq!(q.pop_due(t0 + wait), Some([2; 16]));
        assert_eq!(q.pop_due(t0 + wait), Some([3; 16]));
        assert_eq!(q.pop_due(t0 + wait), None);
        assert_eq!(q.next_due(), Some(t1 + wait));
        let ids: Vec<_> = std::iter::from_fn(|| q.pop_due(t1 + wait)).collect();
        assert_eq!(ids, vec![[4; 16], [5; 16], [6; 16]]);
        assert!(q.is_empty() && q.dues.is_empty() && q.next_due().is_none());
    }

    /// Scenario: moments before and after the epoch (a handed-over trace's first sighting
    /// is set back, up to an hour). Guarantees: each comes back to the nanosecond, they
    /// order as their instants, and one takes 8 bytes.
    #[tokio::test(start_paused = true)]
    async fn moments_keep_their_instants() {
        let e = epoch();
        let later = e + Duration::from_nanos(3_600_000_000_123);
        tokio::time::advance(Duration::from_secs(7200)).await;
        let earlier = e - Duration::from_nanos(1_000_000_001);
        for at in [e, later, earlier, Instant::now()] {
            assert_eq!(Moment::of(at).instant(), at);
        }
        assert!(Moment::of(e) < Moment::of(later));
        assert!(Moment::of(e - Duration::from_nanos(1)) < Moment::of(e));
        assert_eq!(std::mem::size_of::<Moment>(), 8);
    }

    /// Scenario: a trace handed over with a first sighting before the queue was made, and
    /// one later. Guarantees: the earlier one is due at once, the later one at its time to
    /// the nanosecond, and a queued deadline is never moved earlier.
    #[tokio::test(start_paused = true)]
    async fn due_times_before_the_queue_are_due_at_once() {
        let t0 = Instant::now();
        tokio::time::advance(Duration::from_secs(60)).await;
        let mut q = DeadlineQueue::default();
        q.push([1; 16], t0, Duration::from_secs(10));
        let now = Instant::now();
        assert_eq!(q.next_due(), Some(now));
        let later = now + Duration::from_nanos(1_234_567_891);
        q.push([2; 16], later, Duration::from_nanos(1));
        assert_eq!(q.pop_due(now), Some([1; 16]));
        assert_eq!(q.next_due(), Some(later + Duration::from_nanos(1)));
        assert_eq!(q.pop_due(later), None);
        assert_eq!(q.pop_due(later + Duration::from_nanos(1)), Some([2; 16]));
    }
}
