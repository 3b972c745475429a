//! The requests the router has let through and not yet read, and how long each counts
//! against its room.
//!
//! A request let through [`tailgate_core::receive::SpanSink::ready`] is expected to add
//! about the running mean request size to the queues once it is read, so it counts at that
//! size: a burst of requests let through together cannot all be admitted past the limit.
//! But that is an estimate for a request that is coming, and a stream that sends a byte
//! and stalls is not. Such streams once held the whole room for everyone, a byte each, and
//! twenty a second kept it held. So a pass is priced by what its sender has shown (see
//! [`pass_price`]: at most 64 times its first frame, which for a real request is all of
//! it or a first write of 4 KiB or more), and counts only for the window it was made in and the next
//! ([`PASS_WINDOW`]: one to two seconds); a request still being read after that is admitted
//! on its own when it arrives, bounded by the router's hard limit (twice
//! `max_queued_bytes`).
//!
//! Counting is two slots, one per window by parity, each one `AtomicU64` holding the
//! window's tag beside the sum of its prices, so that moving a slot to a new window and
//! adding to it are one compare-and-swap, with no lock: a request takes a pass when it is
//! let through and gives it back when it is answered.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// How long a window lasts; a pass counts in its window and the next.
pub const PASS_WINDOW: Duration = Duration::from_secs(1);

/// A pass's price is at most this many times its first frame.
pub const FIRST_FRAME_FACTOR: usize = 64;

/// What a pass is priced at, at most, when no frame was waited for (an empty body, or an
/// HTTP/1.1 sender that waits for `100 Continue`).
pub const UNSEEN_PRICE: usize = 4 << 10;

/// What a request let through is expected to add to the queues: the running `mean`
/// request size, but no more than [`FIRST_FRAME_FACTOR`] times its first frame. A sender
/// that sent one byte and stalls costs 64 bytes of room; a real request's first frame is
/// all of it, or a first write of 4 KiB (Go's `net/http`) to a full 16 KiB HTTP/2 frame,
/// so requests up to 256 KiB are priced at the mean.
pub fn pass_price(mean: usize, first_bytes: Option<usize>) -> usize {
    match first_bytes {
        Some(shown) => mean.min(shown.max(1).saturating_mul(FIRST_FRAME_FACTOR)),
        None => mean.min(UNSEEN_PRICE),
    }
}

/// Bits of a slot's word that hold its window's tag (the window number, wrapped); the rest
/// hold the sum of prices.
const TAG_BITS: u32 = 16;
const BYTES_MASK: u64 = (1 << (64 - TAG_BITS)) - 1;

fn pack(tag: u16, bytes: u64) -> u64 {
    (u64::from(tag) << (64 - TAG_BITS)) | bytes.min(BYTES_MASK)
}

fn unpack(word: u64) -> (u16, u64) {
    ((word >> (64 - TAG_BITS)) as u16, word & BYTES_MASK)
}

/// The tag of window `w`.
fn tag_of(w: u64) -> u16 {
    w as u16
}

/// Live passes' prices, by the window they were made in.
#[derive(Debug)]
pub struct Passes {
    origin: Instant,
    window: Duration,
    /// `slots[w % 2]`: the tag of the window it holds and the sum of the prices of that
    /// window's live passes (see [`pack`]).
    slots: [AtomicU64; 2],
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
        let tag = tag_of(window);
        let price64 = price as u64;
        let slot = &self.slots[(window % 2) as usize];
        let mut word = slot.load(Ordering::Acquire);
        loop {
            let (held, bytes) = unpack(word);
            let next = if held == tag {
                pack(tag, bytes.saturating_add(price64))
            } else if (1..=8).contains(&held.wrapping_sub(tag)) {
                // A thread that read the clock later (by a few windows at most, however
                // long this one was held up) moved the slot on already: this pass belongs
                // to a window that no longer counts.
                break;
            } else {
                // The slot held a window two or more back: its passes no longer count.
                pack(tag, price64)
            };
            match slot.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        Pass {
            passes: self.clone(),
            window,
            price,
        }
    }

    /// The prices of the passes that count now: made in this window or the previous one,
    /// not yet answered.
    pub fn counted(&self) -> usize {
        let now = tag_of(self.window_at(Instant::now()));
        self.slots
            .iter()
            .map(|s| unpack(s.load(Ordering::Acquire)))
            .filter(|&(tag, _)| tag == now || tag.wrapping_add(1) == now)
            .map(|(_, bytes)| usize::try_from(bytes).unwrap_or(usize::MAX))
            .fold(0usize, usize::saturating_add)
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
        let (tag, price) = (tag_of(self.window), self.price as u64);
        // Only while the slot still holds this pass's window; `Err` is a slot moved on.
        slot.fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
            let (held, bytes) = unpack(word);
            (held == tag).then(|| pack(tag, bytes.saturating_sub(price)))
        })
        .ok();
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
    /// costs 64, a request not waited on costs 4 KiB at most.
    #[test]
    fn passes_are_priced_by_what_their_sender_showed() {
        let mean = 235 << 10;
        assert_eq!(pass_price(mean, Some(1)), 64);
        assert_eq!(pass_price(mean, Some(0)), 64);
        assert_eq!(pass_price(mean, Some(4 << 10)), mean, "Go's first write");
        assert_eq!(pass_price(mean, Some(16 << 10)), mean);
        assert_eq!(pass_price(mean, Some(1 << 20)), mean);
        assert_eq!(pass_price(mean, None), 4 << 10);
        assert_eq!(pass_price(100, None), 100);
    }

    /// Scenario: four threads take and answer passes of different prices at once.
    /// Guarantees: the packed sums add and take off exactly: nothing is left counted.
    #[test]
    fn concurrent_passes_leave_nothing_counted() {
        let passes = Passes::new(Duration::from_secs(3600));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let passes = passes.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000usize {
                        let held: Vec<Pass> = (0..3).map(|k| passes.take(t + i + k)).collect();
                        drop(held);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(passes.counted(), 0);
        let last = passes.take(7);
        assert_eq!(passes.counted(), 7);
        drop(last);
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
