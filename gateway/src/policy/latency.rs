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
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub threshold_ms: i64,
    /// Upper bound in milliseconds; 0 means none.
    #[serde(default, with = "tailgate_core::config::go_int")]
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

    /// As the Collector's `IsStateful`: with an upper bound, a trace that passed may grow
    /// past it, so span-ingest cannot decide it on a batch.
    fn is_stateful(c: &Self) -> bool {
        c.upper_threshold_ms != 0
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
        // Without an upper bound, as the Collector: some span's running duration passed
        // the threshold. With one, the final duration is tested (docs/policies.md).
        let keep = match self.upper_ms {
            None => trace.summary.longest / 1_000_000 > self.lower_ms,
            Some(upper) => {
                let ms = trace.summary.duration_nanos() / 1_000_000;
                ms > self.lower_ms && ms <= upper
            }
        };
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
            spans: crate::buffer::Spans::EMPTY,
            now: tokio::time::Instant::now(),
        })
    }

    /// Scenario: spans without timestamps (start and end 0) before, between and after
    /// spans lasting 50 ms in all.
    /// Guarantees: as the Collector folds them span by span (a start of 0 is "none yet"
    /// and taken over by the next span's), a timeless first span changes nothing, while
    /// one after a known start makes the running duration the end's age: kept by a lower
    /// bound alone.
    #[test]
    fn spans_without_timestamps_fold_as_in_the_collector() {
        let decide = |spans: &[(u64, u64)], c: &LatencyConfig| {
            let mut s = TraceSummary::default();
            for &(start, end) in spans {
                s.add_span(start, end, 0, false);
            }
            LatencyPolicy::new(c).evaluate(&TraceView {
                trace_id: &[1; 16],
                summary: &s,
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            })
        };
        let t = 1_764_000_000_000_000_000u64;
        let over_100ms = LatencyConfig {
            threshold_ms: 100,
            upper_threshold_ms: 0,
        };
        let a = (t, t + 20_000_000);
        let b = (t + 10_000_000, t + 50_000_000);
        assert_eq!(decide(&[(0, 0), a, b], &over_100ms), Verdict::NotSampled);
        assert_eq!(decide(&[a, (0, 0), b], &over_100ms), Verdict::Sampled);
        assert_eq!(decide(&[a, b, (0, 0)], &over_100ms), Verdict::Sampled);
        let window = LatencyConfig {
            threshold_ms: 40,
            upper_threshold_ms: 60,
        };
        assert_eq!(decide(&[(0, 0), a, b], &window), Verdict::Sampled, "50 ms");
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
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            }),
            Verdict::Sampled
        );
    }
}
