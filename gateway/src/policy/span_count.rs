//! `span_count`: keeps traces whose span count is within bounds. As the Collector: with
//! `max_spans: 0` (the default) any trace with at least `min_spans` is kept; otherwise
//! `min_spans <= count <= max_spans`. The count is of spans received by decision time.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `span_count:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanCountConfig {
    /// Fewest spans; 0 when left out, as the Collector's zero value (a negative one acts
    /// as 0).
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub min_spans: i32,
    /// Most spans; 0 means no upper bound.
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub max_spans: i32,
}

impl SpanCountConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        // A negative `min_spans` bounds nothing, as 0 (the Collector loads it so); a
        // negative `max_spans` keeps nothing there, so it can only be a mistake.
        if self.max_spans < 0 {
            return Err(SettingError::range("max_spans", "0 or more", self.max_spans));
        }
        if self.max_spans != 0 && self.max_spans < self.min_spans {
            return Err(SettingError::range(
                "max_spans",
                format!("0 or at least min_spans ({})", self.min_spans),
                self.max_spans,
            ));
        }
        Ok(())
    }
}

impl Kind for SpanCountConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    /// As the Collector's `IsStateful`: with a maximum, a trace that passed may grow past
    /// it, so span-ingest cannot decide it on a batch.
    fn is_stateful(c: &Self) -> bool {
        c.max_spans != 0
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(SpanCountPolicy::new(c))
    }
}

/// Compiled `span_count` policy.
#[derive(Debug, Clone)]
pub struct SpanCountPolicy {
    min: u32,
    max: Option<u32>,
}

impl SpanCountPolicy {
    /// Compiles a validated config.
    pub fn new(c: &SpanCountConfig) -> Self {
        SpanCountPolicy {
            min: c.min_spans.max(0) as u32,
            max: (c.max_spans > 0).then_some(c.max_spans as u32),
        }
    }
}

impl Policy for SpanCountPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let n = trace.summary.span_count;
        if n >= self.min && self.max.is_none_or(|max| n <= max) {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        match self.max {
            None => format!("keep traces with at least {} spans", self.min),
            Some(max) => format!("keep traces with {} to {max} spans", self.min),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::trace::TraceSummary;

    #[test]
    fn bounds_are_inclusive_and_zero_max_means_unbounded() {
        let count = |n: u32| {
            let mut s = TraceSummary::default();
            for _ in 0..n {
                s.add_span(1, 2, 0, false);
            }
            s
        };
        let cases = [
            ((2, 0), 1, Verdict::NotSampled),
            ((2, 0), 2, Verdict::Sampled),
            ((2, 0), 900, Verdict::Sampled),
            ((2, 3), 3, Verdict::Sampled),
            ((2, 3), 4, Verdict::NotSampled),
            ((-1, 0), 1, Verdict::Sampled),
            ((-5, 3), 3, Verdict::Sampled),
            ((-5, 3), 4, Verdict::NotSampled),
        ];
        for ((min, max), n, want) in cases {
            let p = SpanCountPolicy::new(&SpanCountConfig {
                min_spans: min,
                max_spans: max,
            });
            let s = count(n);
            assert_eq!(
                p.evaluate(&TraceView {
                    trace_id: &[1; 16],
                    summary: &s,
                    spans: crate::buffer::Spans::EMPTY,
                    now: tokio::time::Instant::now(),
                }),
                want,
                "{min}..{max} with {n}"
            );
        }
        let at = |min, max| SpanCountConfig {
            min_spans: min,
            max_spans: max,
        }
        .validate();
        assert!(at(-1, 0).is_ok() && at(-1, 4).is_ok());
        assert!(at(0, -1).is_err() && at(3, 2).is_err());
    }
}
