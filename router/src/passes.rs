//! The requests the router has let through and not yet read, and how long each counts
//! against its room.
//!
//! A request let through [`tailgate_core::receive::SpanSink::ready`] is expected to add
//! about the running mean request size to the queues once it is read, so it counts at that
//! size: a burst of requests let through together cannot all be admitted past the limit.
//! But that is an estimate for a request that is coming, and a stream that sends a byte
//! and stalls is not. Such streams once held the whole room for everyone, a byte each, and
//! twenty a second kept it held. So a pass is priced by what its sender has shown (see
//! [`pass_price`]: at most sixteen times its first frame, which is most of a real request
//! or a full frame), and counts only for the window it was made in and the next
//! ([`PASS_WINDOW`]: one to two seconds); a request still being read after that is admitted
//! on its own when it arrives, bounded by the router's hard limit (twice
//! `max_queued_bytes`).
//!
//! Counting is two slots of atomics, one per window by parity, with no lock: a request
//! takes a pass when it is let through and gives it back when it is answered.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How long a window lasts; a pass counts in its window and the next.
pub const PASS_WINDOW: Duration = Duration::from_secs(1);

/// A pass's price is at most this many times its first frame.
pub const FIRST_FRAME_FACTOR: usize = 16;

/// What a pass is priced at when no frame was waited for (an empty body, or a sender that
/// waits for `100 Continue`), times [`FIRST_FRAME_FACTOR`]: a 1 KiB frame's worth.
pub const UNSEEN_FRAME: usize = 1 << 10;

/// What a request let through is expected to add to the queues: the running `mean`
/// request size, but no more than [`FIRST_FRAME_FACTOR`] times its first frame (a sender
/// that sent one byte and stalls costs 16 bytes of room; a real request's first frame is
/// all of it or a full 16 KiB frame or more, so it is priced at the mean).
pub fn pass_price(mean: usize, first_bytes: Option<usize>) -> usize {
    let shown = first_bytes.unwrap_or(UNSEEN_FRAME).max(1);
    mean.min(shown.saturating_mul(FIRST_FRAME_FACTOR))
}

/// Live passes' prices, by the window they were made in.
#[derive(Debug)]
pub struct Passes {
    origin: Instant,
    window: Duration,
    /// `slots[w % 2]` sums the prices of the live passes of window `w`, the one it says it
    /// holds.
    slots: [Slot; 2],
}

#[derive(Debug, Default)]
struct Slot {
    window: AtomicU64,
    bytes: AtomicUsize,
}

/// A request let through and not yet answered: counted while it lives and its window is
/// the current or the previous one.
#[derive(Debug)]
pub struct Pass {
    passes: Arc<Passes>,
    window: u64,
    price: usize,
}

impl Passes {
    /// No passes; windows of `window` (at least a millisecond) from now.
    pub fn new(window: Duration) -> Arc<Self> {
        Arc::new(Passes {
            origin: Instant::now(),
            window: window.max(Duration::from_millis(1)),
            slots: Default::default(),
        })
    }

    /// The window `now` falls in.
    fn window_at(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.window.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts a request let through now, at `price` bytes.
    pub fn take(self: &Arc<Self>, price: usize) -> Pass {
        let window = self.window_at(Instant::now());
        let slot = &self.slots[(window % 2) as usize];
        let held = slot.window.load(Ordering::Acquire);
        if held != window
            && slot
                .window
                .compare_exchange(held, window, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // The slot held a window two or more back: its passes no longer count. (A pass
            // of this window counted by another thread between the exchange and this store
            // is lost: the estimate is low by one for a second, which the hard limit covers.)
            slot.bytes.store(0, Ordering::Release);
        }
        slot.bytes.fetch_add(price, Ordering::AcqRel);
        Pass {
            passes: self.clone(),
            window,
            price,
        }
    }

    /// The prices of the passes that count now: made in this window or the previous one,
    /// not yet answered.
    pub fn counted(&self) -> usize {
        let now = self.window_at(Instant::now());
        self.slots
            .iter()
            .filter(|s| {
                let w = s.window.load(Ordering::Acquire);
                w == now || w.checked_add(1) == Some(now)
            })
            .map(|s| s.bytes.load(Ordering::Acquire))
            .sum()
    }

    /// When the passes counted now stop counting, some of them at least: the start of the
    /// next window. A request waiting for room looks again then.
    pub fn next_expiry(&self) -> Instant {
        let next = self.window_at(Instant::now()).saturating_add(1);
        let nanos = self.window.as_nanos().saturating_mul(u128::from(next));
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.origin
            .checked_add(Duration::from_nanos(nanos))
            .unwrap_or_else(|| Instant::now() + self.window)
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        let slot = &self.passes.slots[(self.window % 2) as usize];
        if slot.window.load(Ordering::Acquire) == self.window {
            // Saturating: a pass lost to a reset (see `take`) must not wrap the sum.
            let price = self.price;
            slot.bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    Some(n.saturating_sub(price))
                })
                .ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: passes taken in one window; time moves on while they stay alive.
    /// Guarantees: they count in their window and the next, then no more; answering one
    /// while it counts takes it off at once.
    #[tokio::test(start_paused = true)]
    async fn a_pass_counts_for_its_window_and_the_next() {
        let passes = Passes::new(Duration::from_secs(1));
        let a = passes.take(1);
        let b = passes.take(1);
        assert_eq!(passes.counted(), 2);
        drop(b);
        assert_eq!(passes.counted(), 1);
        tokio::time::advance(Duration::from_millis(1500)).await;
        let c = passes.take(1);
        assert_eq!(passes.counted(), 2, "a (previous window) and c");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(passes.counted(), 1, "a stopped counting; c still does");
        drop(a);
        assert_eq!(
            passes.counted(),
            1,
            "an expired pass answered changes nothing"
        );
        let d = passes.take(1);
        assert_eq!(passes.counted(), 2, "d reused a's slot from zero");
        drop((c, d));
        assert_eq!(passes.counted(), 0);
    }

    /// Guarantees: a pass is priced at the mean unless its first frame was small: a byte
    /// costs sixteen, a request not waited on costs 16 KiB at most.
    #[test]
    fn passes_are_priced_by_what_their_sender_showed() {
        let mean = 200 << 10;
        assert_eq!(pass_price(mean, Some(1)), 16);
        assert_eq!(pass_price(mean, Some(0)), 16);
        assert_eq!(pass_price(mean, Some(16 << 10)), mean);
        assert_eq!(pass_price(mean, Some(1 << 20)), mean);
        assert_eq!(pass_price(mean, None), 16 << 10);
        assert_eq!(pass_price(100, None), 100);
    }

    /// Guarantees: `next_expiry` is the start of the next window, later than now.
    #[tokio::test(start_paused = true)]
    async fn the_next_expiry_is_the_next_window() {
        let passes = Passes::new(Duration::from_secs(1));
        let start = Instant::now();
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(passes.next_expiry(), start + Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(700)).await;
        assert_eq!(passes.next_expiry(), start + Duration::from_secs(2));
    }
}
