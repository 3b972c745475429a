//! The compiled policy plan: the policies of one file in order, and the decision timing.
//! Shards evaluate every buffered trace against the plan in force at decision time.
//!
//! Combining verdicts follows the Collector: every policy is evaluated; a matching `drop`
//! wins; then an inverted match that matched vetoes sampling; then any policy that samples
//! keeps the trace (the first is recorded as the reason); then an inverted non-match keeps it
//! when no policy said "not sampled".

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Policy, PolicyFile, Verdict};
use crate::buffer::trace::TraceView;

/// A ready-to-evaluate policy set.
#[derive(Debug)]
pub struct PolicyPlan {
    names: Vec<String>,
    /// Attribute keys the policies read; summaries index values by position here.
    attribute_keys: Vec<String>,
    policies: Vec<Box<dyn Policy>>,
    /// Time from a trace's first span to its decision.
    pub decision_wait: Duration,
    /// Traces buffered before the oldest are decided early.
    pub num_traces: usize,
    /// Decide this long after the root span arrives, if earlier.
    pub decision_wait_after_root: Option<Duration>,
    /// Stop at the first policy that samples.
    pub sample_on_first_match: bool,
    /// Decision cache size from the file's `decision_cache` (sampled + non-sampled).
    pub decision_cache_size: Option<usize>,
    /// Verdicts per policy, by [`Verdict`] index; shards add their local counts per batch.
    verdicts: Vec<[AtomicU64; VERDICTS]>,
}

/// Number of distinct verdicts.
pub const VERDICTS: usize = 5;

/// Verdict names, by index, as they appear in metrics.
pub const VERDICT_NAMES: [&str; VERDICTS] = [
    "sampled",
    "not_sampled",
    "dropped",
    "invert_sampled",
    "invert_not_sampled",
];

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Sampled => 0,
        Verdict::NotSampled => 1,
        Verdict::Dropped => 2,
        Verdict::InvertSampled => 3,
        Verdict::InvertNotSampled => 4,
    }
}

/// Verdict counts a shard keeps between flushes, for one plan.
#[derive(Debug, Default)]
pub struct LocalVerdicts {
    counts: Vec<[u64; VERDICTS]>,
    pending: bool,
}

/// The outcome for one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Keep or not.
    pub sampled: bool,
    /// Index of the policy that kept it.
    pub policy: Option<u16>,
}

// === impl PolicyPlan ===

impl PolicyPlan {
    /// Compiles a parsed file.
    pub fn compile(file: &PolicyFile) -> Self {
        let mut attribute_keys = Vec::new();
        let policies = file
            .policies
            .iter()
            .map(|p| p.compile(&mut attribute_keys))
            .collect();
        let n = file.policies.len();
        PolicyPlan {
            verdicts: (0..n).map(|_| Default::default()).collect(),
            names: file.policies.iter().map(|p| p.name.clone()).collect(),
            attribute_keys,
            policies,
            decision_wait: file.decision_wait,
            num_traces: file.num_traces,
            decision_wait_after_root: file.decision_wait_after_root_received,
            sample_on_first_match: file.sample_on_first_match,
            decision_cache_size: file
                .decision_cache
                .map(|c| c.sampled_cache_size + c.non_sampled_cache_size),
        }
    }

    /// Decides one trace, combining verdicts as the Collector does: drop beats everything,
    /// then an inverted match that matched vetoes, then any sample keeps, then an inverted
    /// non-match keeps unless some policy said "not sampled".
    pub fn decide(&self, trace: &TraceView<'_>) -> Decision {
        self.decide_counting(trace, &mut LocalVerdicts::default())
    }

    /// [`PolicyPlan::decide`], adding each policy's verdict to `local` (flush it with
    /// [`PolicyPlan::flush`]).
    pub fn decide_counting(&self, trace: &TraceView<'_>, local: &mut LocalVerdicts) -> Decision {
        if local.counts.len() != self.policies.len() {
            local.counts = vec![[0; VERDICTS]; self.policies.len()];
        }
        local.pending = true;
        let (mut first_sampled, mut first_invert_sampled) = (None, None);
        let (mut veto, mut not_sampled) = (false, false);
        for (i, p) in self.policies.iter().enumerate() {
            let verdict = p.evaluate(trace);
            local.counts[i][verdict_index(verdict)] += 1;
            match verdict {
                Verdict::Dropped => {
                    return Decision {
                        sampled: false,
                        policy: None,
                    }
                }
                Verdict::Sampled => {
                    first_sampled.get_or_insert(i as u16);
                    if self.sample_on_first_match {
                        break;
                    }
                }
                Verdict::InvertSampled => {
                    first_invert_sampled.get_or_insert(i as u16);
                }
                Verdict::InvertNotSampled => veto = true,
                Verdict::NotSampled => not_sampled = true,
            }
        }
        let policy = if veto {
            None
        } else if first_sampled.is_some() {
            first_sampled
        } else if !not_sampled {
            first_invert_sampled
        } else {
            None
        };
        Decision {
            sampled: policy.is_some(),
            policy,
        }
    }

    /// Adds a shard's local counts to the plan's and clears them.
    pub fn flush(&self, local: &mut LocalVerdicts) {
        if !local.pending {
            return;
        }
        for (shared, counts) in self.verdicts.iter().zip(local.counts.iter_mut()) {
            for (s, c) in shared.iter().zip(counts.iter_mut()) {
                if *c > 0 {
                    s.fetch_add(*c, Ordering::Relaxed);
                    *c = 0;
                }
            }
        }
        local.pending = false;
    }

    /// Verdict counts per policy, in plan order, by [`VERDICT_NAMES`].
    pub fn verdict_counts(&self) -> Vec<[u64; VERDICTS]> {
        self.verdicts
            .iter()
            .map(|v| std::array::from_fn(|i| v[i].load(Ordering::Relaxed)))
            .collect()
    }

    /// Attribute keys the policies read (empty: no attribute is read from spans).
    pub fn attribute_keys(&self) -> &[String] {
        &self.attribute_keys
    }

    /// Policy names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The plan in plain words.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "decide {:?} after a trace's first span; keep at most {} traces buffered\n",
            self.decision_wait, self.num_traces
        );
        if let Some(d) = self.decision_wait_after_root {
            out.push_str(&format!(
                "decide {d:?} after a trace's root span, if that is earlier\n"
            ));
        }
        if self.sample_on_first_match {
            out.push_str("stop at the first policy that keeps a trace\n");
        }
        for (name, p) in self.names.iter().zip(&self.policies) {
            out.push_str(&format!("  {name}: {}\n", p.describe()));
        }
        out.push_str("a trace is kept when any policy keeps it, no drop matches and no inverted match vetoes\n");
        out
    }
}
