//! Decision timing. Every trace is due at `first_seen + decision_wait`; with one wait for
//! all traces, due times arrive in the order traces were first seen, so a FIFO queue is the
//! whole timing wheel: push at first sight, pop from the front while due.
//!
//! Pure logic: the caller passes `now`, so paused-clock tests and the simulator drive it.

use std::collections::VecDeque;

use tokio::time::{Duration, Instant};

/// Deadlines in first-seen order.
#[derive(Debug, Default)]
pub struct DeadlineQueue {
    queue: VecDeque<(Instant, [u8; 16])>,
}

impl DeadlineQueue {
    /// Schedules `trace_id` for `first_seen + wait`.
    pub fn push(&mut self, trace_id: [u8; 16], first_seen: Instant, wait: Duration) {
        let due = first_seen + wait;
        // A shorter wait after a reload could make a new deadline earlier than queued ones;
        // keeping it behind them delays it by at most the difference and keeps order.
        let due = self.queue.back().map_or(due, |(last, _)| due.max(*last));
        self.queue.push_back((due, trace_id));
    }

    /// The next deadline.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(d, _)| *d)
    }

    /// Pops the next trace id if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<[u8; 16]> {
        match self.queue.front() {
            Some((due, _)) if *due <= now => self.queue.pop_front().map(|(_, id)| id),
            _ => None,
        }
    }

    /// Pops the next trace id, due or not (early decisions).
    pub fn pop_front(&mut self) -> Option<[u8; 16]> {
        self.queue.pop_front().map(|(_, id)| id)
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
}
