//! The compiled policy plan: the policies of one file in order, and the decision timing.
//! Shards evaluate every buffered trace against the plan in force at decision time.
//!
//! Combining verdicts follows the Collector for the kinds implemented here: every policy is
//! evaluated; if any says "drop" the trace is not kept (drop beats sample); otherwise it is
//! kept when any policy samples it, and the first such policy is recorded as the reason.

use std::time::Duration;

use super::{Policy, PolicyFile, Verdict};
use crate::buffer::trace::TraceView;

/// A ready-to-evaluate policy set.
#[derive(Debug)]
pub struct PolicyPlan {
    names: Vec<String>,
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
        PolicyPlan {
            names: file.policies.iter().map(|p| p.name.clone()).collect(),
            policies: file.policies.iter().map(|p| p.compile()).collect(),
            decision_wait: file.decision_wait,
            num_traces: file.num_traces,
        }
    }

    /// Decides one trace.
    pub fn decide(&self, trace: &TraceView<'_>) -> Decision {
        let mut first_sampled = None;
        for (i, p) in self.policies.iter().enumerate() {
            match p.evaluate(trace) {
                Verdict::Dropped => {
                    return Decision {
                        sampled: false,
                        policy: None,
                    }
                }
                Verdict::Sampled if first_sampled.is_none() => first_sampled = Some(i as u16),
                _ => {}
            }
        }
        Decision {
            sampled: first_sampled.is_some(),
            policy: first_sampled,
        }
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
        out.push_str("a trace is kept when any policy keeps it and no drop policy matches\n");
        out
    }
}
