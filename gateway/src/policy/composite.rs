//! `composite`: sub-policies with a share each of a spans-per-second budget, as the
//! Collector's. Its behaviour, matched on purpose and worth knowing:
//!
//! * Sub-policies are evaluated in `composite_sub_policy` order; the first that samples
//!   decides. If its share of this second still has room for the
//!   trace's spans it keeps the trace, otherwise the composite says "not sampled" without
//!   asking the sub-policies after it.
//! * `policy_order` is accepted but, as in the Collector, does not change that order.
//! * A sub-policy's share is `percent` of `max_total_spans_per_second` from
//!   `rate_allocation`; an entry with percent 0 or less, or a sub-policy missing from
//!   `rate_allocation`, gets an equal split (`max_total / number of sub-policies`, as the
//!   Collector since PR #49857; before it, a missing sub-policy never kept a trace).
//! * Each share is also capped by `max_total_spans_per_second`, but the total over all
//!   sub-policies is not; allocations over 100% let the composite exceed the total.
//! * Counters restart at each wall-clock second (per gateway, shared by its shards).

use std::sync::atomic::{AtomicU64, Ordering};

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

struct Sub {
    name: String,
    policy: Box<dyn Policy>,
    allocated: u64,
    /// Spans kept by this sub-policy in the current second.
    sampled: AtomicU64,
}

impl std::fmt::Debug for Sub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sub")
            .field("name", &self.name)
            .field("allocated", &self.allocated)
            .finish()
    }
}

/// Compiled `composite` policy.
#[derive(Debug)]
pub struct CompositePolicy {
    subs: Vec<Sub>,
    max_total: u64,
    /// The wall-clock second the counters belong to.
    second: AtomicU64,
    epoch: tokio::time::Instant,
    epoch_unix: std::time::Duration,
}

impl CompositePolicy {
    /// Combines compiled sub-policies, each with its name and its allocation in spans per
    /// second, under a total of `max_total` spans per second.
    pub fn new(max_total: u64, subs: Vec<(String, Box<dyn Policy>, u64)>) -> Self {
        let subs = subs
            .into_iter()
            .map(|(name, policy, allocated)| Sub {
                name,
                policy,
                allocated,
                sampled: AtomicU64::new(0),
            })
            .collect();
        CompositePolicy {
            subs,
            max_total,
            second: AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            epoch_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }

    fn roll_second(&self, now: tokio::time::Instant) {
        let second = (self.epoch_unix + now.saturating_duration_since(self.epoch)).as_secs();
        let current = self.second.load(Ordering::Relaxed);
        if current != second
            && self
                .second
                .compare_exchange(current, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for s in &self.subs {
                s.sampled.store(0, Ordering::Relaxed);
            }
        }
    }
}

impl Policy for CompositePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        self.roll_second(trace.now);
        let spans = u64::from(trace.summary.span_count);
        for sub in &self.subs {
            match sub.policy.evaluate(trace) {
                Verdict::Sampled => {}
                // As the Collector's composite: an error ends the evaluation.
                Verdict::Error => return Verdict::Error,
                Verdict::NotSampled | Verdict::Dropped => continue,
            }
            let fits = sub
                .sampled
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    let after = n + spans;
                    (after <= sub.allocated && after <= self.max_total).then_some(after)
                })
                .is_ok();
            return if fits {
                Verdict::Sampled
            } else {
                Verdict::NotSampled
            };
        }
        Verdict::NotSampled
    }

    fn errors(&self) -> u64 {
        self.subs.iter().map(|s| s.policy.errors()).sum()
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self
            .subs
            .iter()
            .map(|s| {
                format!(
                    "{} ({} spans/s): {}",
                    s.name,
                    s.allocated,
                    s.policy.describe()
                )
            })
            .collect();
        format!(
            "the first of these that keeps a trace keeps it while its share of {} spans/s lasts: [{}]",
            self.max_total,
            parts.join("; ")
        )
    }
}
