//! Decision timing. Every trace is due at `first_seen + decision_wait`; with one wait for
//! all traces, due times arrive in the order traces were first seen, so a FIFO queue is the
//! whole timing wheel: push at first sight, pop from the front while due.
//!
//! Pure logic: the caller passes `now`, so paused-clock tests and the simulator drive it.

use std::collections::VecDeque;

use tokio::time::{Duration, Instant};

/// Deadlines in first-seen order.
///
/// A due time is kept as nanoseconds since the queue was made: 24 bytes per buffered trace
/// with its id, where an `Instant` would make it 32.
#[derive(Debug)]
pub struct DeadlineQueue {
    epoch: Instant,
    queue: VecDeque<(u64, [u8; 16])>,
}

impl Default for DeadlineQueue {
    fn default() -> Self {
        DeadlineQueue {
            epoch: Instant::now(),
            queue: VecDeque::new(),
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
        let due = self.queue.back().map_or(due, |(last, _)| due.max(*last));
        self.queue.push_back((due, trace_id));
    }

    /// The next deadline.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(d, _)| self.at(*d))
    }

    /// Pops the next trace id if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<[u8; 16]> {
        match self.queue.front() {
            Some((due, _)) if *due <= self.offset(now) => self.queue.pop_front().map(|(_, id)| id),
            _ => None,
        }
    }

    /// Pops the next trace id, due or not (early decisions).
    pub fn pop_front(&mut self) -> Option<[u8; 16]> {
        self.queue.pop_front().map(|(_, id)| id)
    }

    /// The next `n` trace ids (or fewer), without taking them.
    pub fn front(&self, n: usize) -> impl Iterator<Item = &[u8; 16]> {
        self.queue.iter().take(n).map(|(_, id)| id)
    }

    /// Number of scheduled traces.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
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
