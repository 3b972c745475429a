//! `rate_limiting`: keeps traces while their spans fit a budget of `spans_per_second`, as
//! the Collector: a token bucket refilled at `spans_per_second` that holds `burst_capacity`
//! spans (default twice the rate); a trace takes as many tokens as it has spans, and a trace
//! larger than the bucket never passes. The budget is per gateway (the Collector's is per
//! Collector), and shared by the gateway's shards.

use serde::Deserialize;

use super::limiter::TokenBucket;
use super::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// YAML block `rate_limiting:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Spans kept per second, per gateway.
    pub spans_per_second: u64,
    /// Spans the bucket holds; default `2 × spans_per_second`.
    #[serde(default)]
    pub burst_capacity: Option<u64>,
}

impl RateLimitingConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.spans_per_second == 0 {
            return Err("spans_per_second must be greater than 0".into());
        }
        if self.burst_capacity == Some(0) {
            return Err(
                "burst_capacity must be greater than 0 (leave it out for twice the rate)".into(),
            );
        }
        Ok(())
    }
}

/// Compiled `rate_limiting` policy.
#[derive(Debug)]
pub struct RateLimitingPolicy {
    bucket: TokenBucket,
    rate: u64,
    burst: u64,
}

impl RateLimitingPolicy {
    /// Compiles a validated config.
    pub fn new(c: &RateLimitingConfig) -> Self {
        let burst = c
            .burst_capacity
            .unwrap_or(c.spans_per_second.saturating_mul(2));
        RateLimitingPolicy {
            bucket: TokenBucket::new(
                c.spans_per_second as f64,
                burst as f64,
                tokio::time::Instant::now(),
            ),
            rate: c.spans_per_second,
            burst,
        }
    }
}

impl Policy for RateLimitingPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if self
            .bucket
            .try_take(u64::from(trace.summary.span_count), trace.now)
        {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        format!(
            "keep traces while they fit {} spans/s (bursts up to {} spans), per gateway",
            self.rate, self.burst
        )
    }
}
