//! `bytes_limiting`: keeps traces while their size fits a budget of `bytes_per_second`, as
//! the Collector: a token bucket refilled at `bytes_per_second` holding `burst_capacity`
//! bytes (default twice the rate). A trace's size is the OTLP-encoded size of its spans
//! (the Collector estimates it from its in-memory form; the two differ by the encoding's
//! framing, a few percent). The budget is per gateway, shared by its shards.

use serde::Deserialize;

use super::limiter::TokenBucket;
use super::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// YAML block `bytes_limiting:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingConfig {
    /// Bytes kept per second, per gateway.
    pub bytes_per_second: u64,
    /// Bytes the bucket holds; default `2 × bytes_per_second`.
    #[serde(default)]
    pub burst_capacity: Option<u64>,
}

impl BytesLimitingConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.bytes_per_second == 0 {
            return Err("bytes_per_second must be greater than 0".into());
        }
        if self.burst_capacity == Some(0) {
            return Err(
                "burst_capacity must be greater than 0 (leave it out for twice the rate)".into(),
            );
        }
        Ok(())
    }
}

/// Compiled `bytes_limiting` policy.
#[derive(Debug)]
pub struct BytesLimitingPolicy {
    bucket: TokenBucket,
    rate: u64,
    burst: u64,
}

impl BytesLimitingPolicy {
    /// Compiles a validated config.
    pub fn new(c: &BytesLimitingConfig) -> Self {
        let burst = c
            .burst_capacity
            .unwrap_or(c.bytes_per_second.saturating_mul(2));
        BytesLimitingPolicy {
            bucket: TokenBucket::new(
                c.bytes_per_second as f64,
                burst as f64,
                tokio::time::Instant::now(),
            ),
            rate: c.bytes_per_second,
            burst,
        }
    }
}

impl Policy for BytesLimitingPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if self.bucket.try_take(trace.summary.bytes, trace.now) {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        format!(
            "keep traces while they fit {} bytes/s (bursts up to {} bytes), per gateway",
            self.rate, self.burst
        )
    }
}
