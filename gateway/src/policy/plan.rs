//! The compiled policy plan: the policies of one file in order, and the decision timing.
//! Shards evaluate every buffered trace against the plan in force at decision time.
//!
//! Combining verdicts follows the Collector (contrib v0.161): `drop` policies are evaluated
//! first, wherever they are listed, and any that matches drops the trace; then the other
//! policies in order, and the trace is kept when any of them samples it (the first is
//! recorded as the reason). `sample_on_first_match` stops at the first sampling policy among
//! the others only, so a `drop` listed after it still drops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tailgate_core::wire::span_fields::AdjustedCount;

use super::verdict::{Policy, Verdict};
use super::PolicyFile;
use crate::buffer::trace::TraceView;

/// The plan keys that name span fields (see [`super::verdict::field_keys`]), resolved once.
#[derive(Debug, Default, Clone)]
pub struct SpanFieldKeys {
    /// `tracestate` keys and their plan key index.
    pub tracestate: Vec<(String, u16)>,
    /// The root span's name.
    pub root_name: Option<u16>,
    /// The sampled flag.
    pub sampled_flag: Option<u16>,
}

impl SpanFieldKeys {
    fn resolve(keys: &[String]) -> Self {
        let mut out = SpanFieldKeys::default();
        for (i, k) in keys.iter().enumerate() {
            let i = i as u16;
            if let Some(ts) = k.strip_prefix(super::verdict::field_keys::TRACESTATE_PREFIX) {
                out.tracestate.push((ts.to_owned(), i));
            } else if k == super::verdict::field_keys::ROOT_NAME {
                out.root_name = Some(i);
            } else if k == super::verdict::field_keys::SAMPLED_FLAG {
                out.sampled_flag = Some(i);
            }
        }
        out
    }

    /// True when no policy reads a span field.
    pub fn is_empty(&self) -> bool {
        self.tracestate.is_empty() && self.root_name.is_none() && self.sampled_flag.is_none()
    }
}

/// Every how many decisions one is timed per policy (timing each would cost more than
/// most policies do).
pub const TIMING_SAMPLE: u64 = 32;

/// A ready-to-evaluate policy set.
#[derive(Debug)]
pub struct PolicyPlan {
    names: Vec<String>,
    /// Attribute keys the policies read; summaries index values by position here.
    attribute_keys: Vec<String>,
    span_field_keys: SpanFieldKeys,
    /// Per policy: timed evaluations and their total nanoseconds.
    timings: Vec<[AtomicU64; 2]>,
    /// Whether to write `ot=th:` into kept spans' tracestate.
    adjusted_tracestate: bool,
    /// The adjusted-count attribute's name, if written.
    adjusted_attribute: Option<String>,
    policies: Vec<Box<dyn Policy>>,
    /// Indices of the `drop` policies (evaluated first), then of the others, in file order.
    order: Vec<usize>,
    /// How many of `order`'s first entries are `drop` policies.
    drops: usize,
    /// Time from a trace's first span to its decision.
    pub decision_wait: Duration,
    /// Traces buffered before traces are decided early.
    pub num_traces: usize,
    /// Decide this long after the root span arrives, if earlier.
    pub decision_wait_after_root: Option<Duration>,
    /// Stop at the first policy that samples.
    pub sample_on_first_match: bool,
    /// Traces whose buffered spans grow past this many encoded bytes are dropped
    /// unevaluated (the Collector's `maximum_trace_size_bytes`).
    pub maximum_trace_size_bytes: Option<u64>,
    /// At shutdown, drop the traces still pending instead of deciding them.
    pub drop_pending_traces_on_shutdown: bool,
    /// `sampling_strategy: span-ingest`: decide each batch of a trace's spans as it
    /// arrives ([`PolicyPlan::decide_batch`]); what is still pending at `decision_wait` is
    /// not sampled.
    pub span_ingest: bool,
    /// Decision cache size from the file's `decision_cache` (sampled + non-sampled).
    pub decision_cache_size: Option<usize>,
    /// Verdicts per policy, by [`Verdict`] index; shards add their local counts per batch.
    verdicts: Vec<[AtomicU64; VERDICTS]>,
}

/// Number of distinct verdicts.
pub const VERDICTS: usize = 4;

/// Verdict names, by index, as they appear in metrics.
pub const VERDICT_NAMES: [&str; VERDICTS] = ["sampled", "not_sampled", "dropped", "error"];

fn verdict_index(v: Verdict) -> usize {
    match v {
        Verdict::Sampled => 0,
        Verdict::NotSampled => 1,
        Verdict::Dropped => 2,
        Verdict::Error => 3,
    }
}

/// Verdict counts a shard keeps between flushes, for one plan.
#[derive(Debug, Default)]
pub struct LocalVerdicts {
    counts: Vec<[u64; VERDICTS]>,
    /// Timed evaluations and nanoseconds, per policy.
    timings: Vec<[u64; 2]>,
    decisions: u64,
    pending: bool,
}

/// The outcome for one trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Keep or not.
    pub sampled: bool,
    /// Index of the policy that kept it: the first that sampled it, in evaluation order
    /// (`drop` policies first, then the file's order), as the Collector credits it.
    pub policy: Option<u16>,
    /// The probability with which it was kept: the highest of the policies that sampled
    /// it (a trace any deterministic policy keeps is kept for certain). 1 when not kept.
    pub probability: f64,
    /// Not kept because a `drop` policy matched (the Collector's "dropped" decision).
    pub dropped: bool,
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
        let is_drop = |i: &usize| matches!(file.policies[*i].kind, super::PolicyKind::Drop(_));
        let order: Vec<usize> = (0..n)
            .filter(is_drop)
            .chain((0..n).filter(|i| !is_drop(i)))
            .collect();
        PolicyPlan {
            drops: (0..n).filter(is_drop).count(),
            order,
            verdicts: (0..n).map(|_| Default::default()).collect(),
            timings: (0..n).map(|_| Default::default()).collect(),
            names: file.policies.iter().map(|p| p.name.clone()).collect(),
            span_field_keys: SpanFieldKeys::resolve(&attribute_keys),
            adjusted_tracestate: file.adjusted_count.tracestate,
            adjusted_attribute: file
                .adjusted_count
                .attribute
                .then(|| file.adjusted_count.attribute_name.clone()),
            attribute_keys,
            policies,
            decision_wait: file.decision_wait,
            num_traces: file.num_traces,
            decision_wait_after_root: file.decision_wait_after_root_received,
            sample_on_first_match: file.sample_on_first_match,
            maximum_trace_size_bytes: file.maximum_trace_size_bytes,
            drop_pending_traces_on_shutdown: file.drop_pending_traces_on_shutdown,
            span_ingest: file.span_ingest,
            decision_cache_size: file.decision_cache_size(),
        }
    }

    /// Decides one trace, combining verdicts as the Collector does: any matching `drop`
    /// drops it, else any sampling policy keeps it.
    pub fn decide(&self, trace: &TraceView<'_>) -> Decision {
        self.decide_counting(trace, &mut LocalVerdicts::default())
    }

    /// [`PolicyPlan::decide`], adding each policy's verdict to `local` (flush it with
    /// [`PolicyPlan::flush`]).
    pub fn decide_counting(&self, trace: &TraceView<'_>, local: &mut LocalVerdicts) -> Decision {
        self.decide_explained(trace, local, |_, _| {})
    }

    /// [`PolicyPlan::decide_counting`], calling `seen(policy index, verdict)` for each
    /// policy evaluated, in evaluation order (`drop` policies first); policies after the
    /// point where evaluation stopped are not called.
    pub fn decide_explained(
        &self,
        trace: &TraceView<'_>,
        local: &mut LocalVerdicts,
        mut seen: impl FnMut(usize, Verdict),
    ) -> Decision {
        if local.counts.len() != self.policies.len() {
            local.counts = vec![[0; VERDICTS]; self.policies.len()];
            local.timings = vec![[0; 2]; self.policies.len()];
        }
        local.pending = true;
        local.decisions += 1;
        let timed = local.decisions % TIMING_SAMPLE == 0;
        let mut first_sampled = None;
        let mut probability: f64 = 0.0;
        for (n, &i) in self.order.iter().enumerate() {
            let p = &self.policies[i];
            let verdict = if timed {
                let start = tokio::time::Instant::now();
                let v = p.evaluate(trace);
                local.timings[i][0] += 1;
                local.timings[i][1] += start.elapsed().as_nanos() as u64;
                v
            } else {
                p.evaluate(trace)
            };
            local.counts[i][verdict_index(verdict)] += 1;
            seen(i, verdict);
            match verdict {
                Verdict::Dropped => {
                    return Decision {
                        sampled: false,
                        policy: None,
                        probability: 1.0,
                        dropped: true,
                    }
                }
                Verdict::Sampled if n >= self.drops => {
                    // The credited policy is the first that sampled, in evaluation order,
                    // as the Collector's makeDecision records it; the probability is the
                    // highest of those that sampled (no later one beats 1).
                    if first_sampled.is_none() {
                        first_sampled = Some(i as u16);
                        probability = p.probability(trace);
                    } else if probability < 1.0 {
                        probability = probability.max(p.probability(trace));
                    }
                    if self.sample_on_first_match {
                        break;
                    }
                }
                Verdict::Sampled | Verdict::NotSampled | Verdict::Error => {}
            }
        }
        Decision {
            sampled: first_sampled.is_some(),
            policy: first_sampled,
            probability: if first_sampled.is_some() {
                probability
            } else {
                1.0
            },
            dropped: false,
        }
    }

    /// Decides one batch of a trace's spans under `sampling_strategy: span-ingest`, as the
    /// Collector's makeDecisionOnSpanIngest: `drop` policies first, and any that matches
    /// drops the trace; one that does not match leaves the drop "pending", and then no
    /// other policy is evaluated; one that fails is skipped, as there (the Collector
    /// counts the error and moves on before it marks a drop pending); otherwise the first
    /// other policy that samples keeps the trace. `None`: still pending (wait for more
    /// spans). The view holds this batch's spans and the trace's running span count.
    pub fn decide_batch(
        &self,
        batch: &TraceView<'_>,
        local: &mut LocalVerdicts,
    ) -> Option<Decision> {
        if local.counts.len() != self.policies.len() {
            local.counts = vec![[0; VERDICTS]; self.policies.len()];
            local.timings = vec![[0; 2]; self.policies.len()];
        }
        local.pending = true;
        let mut drop_pending = false;
        for &i in &self.order[..self.drops] {
            let v = self.policies[i].evaluate(batch);
            local.counts[i][verdict_index(v)] += 1;
            match v {
                Verdict::Dropped => {
                    return Some(Decision {
                        sampled: false,
                        policy: None,
                        probability: 1.0,
                        dropped: true,
                    })
                }
                Verdict::Error => {}
                Verdict::Sampled | Verdict::NotSampled => drop_pending = true,
            }
        }
        if drop_pending {
            return None;
        }
        for &i in &self.order[self.drops..] {
            let v = self.policies[i].evaluate(batch);
            local.counts[i][verdict_index(v)] += 1;
            if v == Verdict::Sampled {
                return Some(Decision {
                    sampled: true,
                    policy: Some(i as u16),
                    probability: self.policies[i].probability(batch),
                    dropped: false,
                });
            }
        }
        None
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
        for (shared, t) in self.timings.iter().zip(local.timings.iter_mut()) {
            if t[0] > 0 {
                shared[0].fetch_add(t[0], Ordering::Relaxed);
                shared[1].fetch_add(t[1], Ordering::Relaxed);
                *t = [0, 0];
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

    /// Per policy, in plan order: (timed evaluations, their total nanoseconds). One
    /// decision in [`TIMING_SAMPLE`] is timed.
    pub fn evaluation_timings(&self) -> Vec<(u64, u64)> {
        self.timings
            .iter()
            .map(|t| (t[0].load(Ordering::Relaxed), t[1].load(Ordering::Relaxed)))
            .collect()
    }

    /// How kept spans record their sampling probability.
    pub fn adjusted_count(&self) -> AdjustedCount<'_> {
        AdjustedCount {
            tracestate: self.adjusted_tracestate,
            attribute: self.adjusted_attribute.as_deref(),
            rewrite: None,
            events: None,
        }
    }

    /// Span fields the policies read.
    pub fn span_field_keys(&self) -> &SpanFieldKeys {
        &self.span_field_keys
    }

    /// The compiled policies, in plan order.
    pub fn policies(&self) -> &[Box<dyn Policy>] {
        &self.policies
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
        let mut out = if self.span_ingest {
            format!(
                "decide each batch of a trace's spans as it arrives (span-ingest); a trace still undecided {:?} after its first span is not sampled; keep at most {} traces buffered\n",
                self.decision_wait, self.num_traces
            )
        } else {
            format!(
                "decide {:?} after a trace's first span; keep at most {} traces buffered\n",
                self.decision_wait, self.num_traces
            )
        };
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
        out.push_str("a trace is kept when any policy keeps it and no drop policy matches (drop policies are evaluated first)\n");
        out
    }
}
