//! What every policy kind shares and nothing else: the [`Verdict`], the [`Policy`] trait,
//! the helpers the attribute and combining kinds use, and the plan's span-field keys. The
//! lowest layer of `policy/`: every kind imports it, it imports only the trace view.

use std::fmt::Debug;

use crate::buffer::trace::TraceView;

/// What one policy says about one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the trace.
    Sampled,
    /// This policy does not keep it.
    NotSampled,
    /// Drop it, whatever other policies say (`drop`).
    Dropped,
    /// The policy could not evaluate the trace (an OTTL condition failed with
    /// `error_mode: propagate`). As the Collector, it neither samples nor drops: the plan
    /// skips it, and `and`, `drop`, `not` and `composite` pass it on.
    Error,
}

/// Whether every sub-policy keeps the trace (`and` and `drop`), as the Collector's
/// and.go: the first "not sampled" answers no, the first error is passed on.
pub(crate) fn all_sample(subs: &[Box<dyn Policy>], trace: &TraceView<'_>) -> Verdict {
    for s in subs {
        match s.evaluate(trace) {
            Verdict::Sampled => {}
            Verdict::Error => return Verdict::Error,
            Verdict::NotSampled | Verdict::Dropped => return Verdict::NotSampled,
        }
    }
    Verdict::Sampled
}

/// The verdict of an attribute policy. As the Collector since v0.155 (PR #48976 removed the
/// feature gate; the behaviour is the default since PR #44132), `invert_match` is a plain
/// "sampled" / "not sampled" on the negated condition: no veto, no "invert sampled".
pub(crate) fn attribute_verdict(matched: bool, invert: bool) -> Verdict {
    if matched != invert {
        Verdict::Sampled
    } else {
        Verdict::NotSampled
    }
}

/// Plan keys that read a span field instead of an attribute. Their first byte is NUL, so
/// they never match an attribute key; the buffer fills them from the span's own fields.
pub mod field_keys {
    /// Values of one `tracestate` key: this prefix, then the key.
    pub const TRACESTATE_PREFIX: &str = "\0tracestate:";
    /// The root span's name.
    pub const ROOT_NAME: &str = "\0root.name";
    /// Present (as `true`) when a span has the W3C sampled flag.
    pub const SAMPLED_FLAG: &str = "\0trace_flags.sampled";
}

/// A compiled policy.
pub trait Policy: Send + Sync + Debug {
    /// Evaluates a trace. Deterministic policies give the same verdict for the same trace
    /// on every gateway; rate-based ones (`rate_limiting`, `bytes_limiting`, `composite`,
    /// `adaptive_rate`) also depend on `trace.now` and what they kept before.
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict;
    /// The probability with which this policy keeps a trace like this one when it says
    /// "sampled": 1 for deterministic and rate-limited policies, the sampling probability
    /// for `probabilistic` and `adaptive_rate`. Kept spans carry it as an adjusted count.
    fn probability(&self, _trace: &TraceView<'_>) -> f64 {
        1.0
    }
    /// A plain-words description, for `check-policies` and logs.
    fn describe(&self) -> String;
    /// Evaluations that failed (an OTTL condition's type error) since the plan was loaded;
    /// 0 for the kinds that cannot fail.
    fn errors(&self) -> u64 {
        0
    }
    /// What a failed evaluation does to this policy's verdict, in words, when one meaning
    /// applies (an `ottl_condition`'s `error_mode`); `None` for the kinds that cannot fail
    /// and for those combining others.
    fn error_meaning(&self) -> Option<&'static str> {
        None
    }
}
