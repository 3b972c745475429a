//! `not` (the Collector's `not` policy type): keeps a trace when its one
//! sub-policy does not, so plain conditions can be inverted without `invert_match`.
//!
//! ```yaml
//! - name: not-health-checks
//!   type: not
//!   not: { not_sub_policy: { name: fast, type: latency, latency: { threshold_ms: 5 } } }
//! ```

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// Compiled `not` policy.
#[derive(Debug)]
pub struct NotPolicy {
    sub: Box<dyn Policy>,
}

impl NotPolicy {
    /// Inverts a compiled sub-policy.
    pub fn new(sub: Box<dyn Policy>) -> Self {
        NotPolicy { sub }
    }
}

impl Policy for NotPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        match self.sub.evaluate(trace) {
            Verdict::Sampled => Verdict::NotSampled,
            Verdict::NotSampled | Verdict::Dropped => Verdict::Sampled,
            Verdict::Error => Verdict::Error,
        }
    }

    fn errors(&self) -> u64 {
        self.sub.errors()
    }

    fn describe(&self) -> String {
        format!("keep traces that fail: {}", self.sub.describe())
    }
}
