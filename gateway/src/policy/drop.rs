//! `drop`: when every sub-policy keeps a trace, the trace is dropped whatever any other
//! policy says (the Collector's "drop beats sample"). Otherwise it has no say.

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// Compiled `drop` policy.
#[derive(Debug)]
pub struct DropPolicy {
    subs: Vec<Box<dyn Policy>>,
}

impl DropPolicy {
    /// Combines compiled sub-policies.
    pub fn new(subs: Vec<Box<dyn Policy>>) -> Self {
        DropPolicy { subs }
    }
}

impl Policy for DropPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        match super::verdict::all_sample(&self.subs, trace) {
            Verdict::Sampled => Verdict::Dropped,
            other => other,
        }
    }

    fn errors(&self) -> u64 {
        self.subs.iter().map(|s| s.errors()).sum()
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.subs.iter().map(|s| s.describe()).collect();
        format!(
            "drop traces that match all of: [{}], whatever other policies say",
            parts.join("; ")
        )
    }
}
