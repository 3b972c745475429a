//! `always_sample`: keeps every trace.

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

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
