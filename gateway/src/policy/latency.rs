//! `latency`: keeps traces whose duration, from the earliest span start to the latest span
//! end, exceeds `threshold_ms`.
//!
//! As the Collector since v0.157 (PR #49595): the duration is truncated to whole
//! milliseconds and a trace is kept when it is `> threshold_ms` (exclusive) and, with
//! `upper_threshold_ms` set, `<= upper_threshold_ms` (inclusive). Before v0.157 the lower
//! bound was inclusive when no upper bound was set.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `latency:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConfig {
    /// Lower bound in milliseconds; 0 when left out, as the Collector's zero value.
    #[serde(default)]
    pub threshold_ms: i64,
    /// Upper bound in milliseconds; 0 means none.
    #[serde(default)]
    pub upper_threshold_ms: i64,
}

impl LatencyConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.threshold_ms < 0 {
            return Err(SettingError::range("threshold_ms", "0 or more", self.threshold_ms));
        }
        if self.upper_threshold_ms != 0 && self.upper_threshold_ms < self.threshold_ms {
            return Err(SettingError::range(
                "upper_threshold_ms",
                format!("0 or at least threshold_ms ({})", self.threshold_ms),
                self.upper_threshold_ms,
            ));
        }
        Ok(())
    }
}

impl Kind for LatencyConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(LatencyPolicy::new(c))
    }
}

/// Compiled `latency` policy.
#[derive(Debug, Clone)]
pub struct LatencyPolicy {
    lower_ms: u64,
    upper_ms: Option<u64>,
}

impl LatencyPolicy {
    /// Compiles a validated config.
    pub fn new(c: &LatencyConfig) -> Self {
        LatencyPolicy {
            lower_ms: c.threshold_ms.max(0) as u64,
            upper_ms: (c.upper_threshold_ms > 0).then_some(c.upper_threshold_ms as u64),
        }
    }
}

impl Policy for LatencyPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let ms = trace.summary.duration_nanos() / 1_000_000;
        let keep = ms > self.lower_ms && self.upper_ms.is_none_or(|upper| ms <= upper);
        if keep {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        match self.upper_ms {
            None => format!("keep traces lasting more than {} ms", self.lower_ms),
            Some(u) => format!(
                "keep traces lasting more than {} ms and at most {u} ms",
                self.lower_ms
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::trace::TraceSummary;

    fn verdict(c: LatencyConfig, duration_ms: u64) -> Verdict {
        let mut s = TraceSummary::default();
        s.add_span(
            1_000_000_000,
            1_000_000_000 + duration_ms * 1_000_000,
            0,
            false,
        );
        LatencyPolicy::new(&c).evaluate(&TraceView {
            trace_id: &[1; 16],
            summary: &s,
            spans: &[],
            now: tokio::time::Instant::now(),
        })
    }

    #[test]
    fn table() {
        let only = |t| LatencyConfig {
            threshold_ms: t,
            upper_threshold_ms: 0,
        };
        let both = |t, u| LatencyConfig {
            threshold_ms: t,
            upper_threshold_ms: u,
        };
        // Collector v0.157+ (PR #49595, internal/sampling/latency.go and latency_test.go):
        // the lower bound is exclusive with or without an upper bound.
        let cases = [
            (only(500), 499, Verdict::NotSampled),
            (only(500), 500, Verdict::NotSampled),
            (only(500), 501, Verdict::Sampled),
            (only(500), 9000, Verdict::Sampled),
            (both(500, 1000), 500, Verdict::NotSampled),
            (both(500, 1000), 501, Verdict::Sampled),
            (both(500, 1000), 1000, Verdict::Sampled),
            (both(500, 1000), 1001, Verdict::NotSampled),
        ];
        for (c, ms, want) in cases {
            assert_eq!(verdict(c.clone(), ms), want, "{c:?} at {ms} ms");
        }
    }

    #[test]
    fn duration_spans_the_whole_trace() {
        let mut s = TraceSummary::default();
        s.add_span(1_000_000_000, 1_100_000_000, 0, false);
        s.add_span(1_400_000_000, 1_600_000_999, 0, false);
        let p = LatencyPolicy::new(&LatencyConfig {
            threshold_ms: 599,
            upper_threshold_ms: 0,
        });
        assert_eq!(
            p.evaluate(&TraceView {
                trace_id: &[1; 16],
                summary: &s,
                spans: &[],
                now: tokio::time::Instant::now(),
            }),
            Verdict::Sampled
        );
    }
}
