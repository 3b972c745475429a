//! `and`: keeps a trace only when every sub-policy keeps it, as the Collector: the first
//! sub-policy that does not sample decides "not sampled".

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// Compiled `and` policy.
#[derive(Debug)]
pub struct AndPolicy {
    subs: Vec<Box<dyn Policy>>,
}

impl AndPolicy {
    /// Combines compiled sub-policies.
    pub fn new(subs: Vec<Box<dyn Policy>>) -> Self {
        AndPolicy { subs }
    }
}

impl Policy for AndPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        super::verdict::all_sample(&self.subs, trace)
    }

    fn probability(&self, trace: &TraceView<'_>) -> f64 {
        // Independent samplers in series (e.g. `and` of probabilistic and an attribute).
        self.subs.iter().map(|s| s.probability(trace)).product()
    }

    fn errors(&self) -> u64 {
        self.subs.iter().map(|s| s.errors()).sum()
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.subs.iter().map(|s| s.describe()).collect();
        format!("keep traces that pass all of: [{}]", parts.join("; "))
    }
}
