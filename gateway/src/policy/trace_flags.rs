//! `trace_flags`: keeps traces where some span has the W3C "sampled" trace flag set (the low
//! bit of `Span.flags`), that is, traces a head sampler already chose. It takes no settings;
//! an empty `trace_flags: {}` block is accepted.

use serde::Deserialize;

use super::kind::{At, Keys, Kind, PolicyError};
use super::verdict::{field_keys, Policy, Verdict};
use crate::buffer::trace::TraceView;

/// YAML block `trace_flags:` (no settings).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceFlagsConfig {}

impl Kind for TraceFlagsConfig {
    type Valid = Self;

    const NEEDS_BLOCK: bool = false;

    fn validated(self, _at: &At<'_>) -> Result<Self, PolicyError> {
        Ok(self)
    }

    fn compile(_: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(TraceFlagsPolicy::new(keys.index(field_keys::SAMPLED_FLAG)))
    }
}

/// Compiled `trace_flags` policy.
#[derive(Debug)]
pub struct TraceFlagsPolicy {
    key: u16,
}

impl TraceFlagsPolicy {
    /// `key` is the index of the sampled-flag pseudo-key in the plan.
    pub fn new(key: u16) -> Self {
        TraceFlagsPolicy { key }
    }
}

impl Policy for TraceFlagsPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if trace.summary.attrs.iter().any(|a| a.key == self.key) {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        "keep traces where a span has the W3C sampled flag set".into()
    }
}
