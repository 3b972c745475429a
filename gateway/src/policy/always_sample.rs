//! `always_sample`: keeps every trace.

use serde::Deserialize;

use super::kind::{At, Keys, Kind, PolicyError};
use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// YAML block `always_sample:` (no settings; the block may be left out).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlwaysSampleConfig {}

impl Kind for AlwaysSampleConfig {
    type Valid = Self;

    const NEEDS_BLOCK: bool = false;

    fn validated(self, _at: &At<'_>) -> Result<Self, PolicyError> {
        Ok(self)
    }

    fn compile(_: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(AlwaysSample)
    }
}

/// Samples everything.
#[derive(Debug, Clone, Copy)]
pub struct AlwaysSample;

impl Policy for AlwaysSample {
    fn evaluate(&self, _trace: &TraceView<'_>) -> Verdict {
        Verdict::Sampled
    }

    fn describe(&self) -> String {
        "keep every trace".into()
    }
}
