//! The compiled policy plan: the policies of one file in order, and the decision timing.
//! Shards evaluate every buffered trace against the plan in force at decision time.
//!
//! Combining verdicts follows the Collector: every policy is evaluated; a matching `drop`
//! wins; then an inverted match that matched vetoes sampling; then any policy that samples
//! keeps the trace (the first is recorded as the reason); then an inverted non-match keeps it
//! when no policy said "not sampled".

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
        PolicyPlan {
            names: file.policies.iter().map(|p| p.name.clone()).collect(),
            attribute_keys,
            policies,
            decision_wait: file.decision_wait,
            num_traces: file.num_traces,
        }
    }

    /// Decides one trace, combining verdicts as the Collector does: drop beats everything,
    /// then an inverted match that matched vetoes, then any sample keeps, then an inverted
    /// non-match keeps unless some policy said "not sampled".
    pub fn decide(&self, trace: &TraceView<'_>) -> Decision {
        let (mut first_sampled, mut first_invert_sampled) = (None, None);
        let (mut veto, mut not_sampled) = (false, false);
        for (i, p) in self.policies.iter().enumerate() {
            match p.evaluate(trace) {
                Verdict::Dropped => {
                    return Decision {
                        sampled: false,
                        policy: None,
                    }
                }
                Verdict::Sampled => {
                    first_sampled.get_or_insert(i as u16);
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
        for (name, p) in self.names.iter().zip(&self.policies) {
            out.push_str(&format!("  {name}: {}\n", p.describe()));
        }
        out.push_str("a trace is kept when any policy keeps it, no drop matches and no inverted match vetoes\n");
        out
    }
}
