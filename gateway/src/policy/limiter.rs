//! A lock-free token bucket (the generic cell rate algorithm), shared by every shard that
//! evaluates the policy that owns it: `rate_limiting`, `bytes_limiting`.
//!
//! The state is one number, the "theoretical arrival time" (TAT): the moment at which the
//! bucket would be full again. Taking `n` tokens moves it `n / rate` seconds later; the
//! request is refused when that would put it more than `burst / rate` seconds after now.
//! It starts full, as `golang.org/x/time/rate` (which the Collector uses) does.

use super::kind::SettingError;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::verdict::{Policy, Verdict};
use crate::buffer::trace::TraceView;

/// What a [`BucketPolicy`] charges a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Its span count (`rate_limiting`).
    Spans,
    /// Its encoded size (`bytes_limiting`).
    Bytes,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Spans => "spans",
            Unit::Bytes => "bytes",
        }
    }
}

/// Checks a `*_per_second` rate; `rate_key` names it in the message. Any `burst_capacity`
/// is valid: 0 or less means the default, as in the Collector.
pub(crate) fn validate_rate(rate_key: &str, rate: u64) -> Result<(), SettingError> {
    if rate == 0 {
        return Err(SettingError::range(rate_key, "greater than 0", rate));
    }
    Ok(())
}

/// A policy that keeps traces while they fit a token bucket, charged in spans or bytes.
/// The budget is per gateway, shared by its shards.
#[derive(Debug)]
pub struct BucketPolicy {
    bucket: TokenBucket,
    unit: Unit,
    rate: u64,
    burst: u64,
}

impl BucketPolicy {
    /// Keeps up to `rate` units a second, in bursts of up to `burst` (when left out, 0 or
    /// less: twice the rate, as the Collector, which reads only a burst `> 0` as set).
    pub fn new(unit: Unit, rate: u64, burst: Option<i64>) -> Self {
        let burst = match burst.and_then(|b| u64::try_from(b).ok()) {
            Some(b) if b > 0 => b,
            _ => rate.saturating_mul(2),
        };
        BucketPolicy {
            bucket: TokenBucket::new(rate as f64, burst as f64, Instant::now()),
            unit,
            rate,
            burst,
        }
    }
}

impl Policy for BucketPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let cost = match self.unit {
            Unit::Spans => u64::from(trace.summary.span_count),
            Unit::Bytes => trace.summary.bytes,
        };
        if self.bucket.try_take(cost, trace.now) {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        let unit = self.unit.name();
        format!(
            "keep traces while they fit {} {unit}/s (bursts up to {} {unit}), per gateway",
            self.rate, self.burst
        )
    }
}

/// A token bucket.
#[derive(Debug)]
pub struct TokenBucket {
    epoch: Instant,
    /// Nanoseconds per token.
    ns_per_token: f64,
    /// How far the TAT may run ahead of now (burst × ns per token).
    tolerance_ns: u64,
    /// Nanoseconds since `epoch`.
    tat: AtomicU64,
}

impl TokenBucket {
    /// A bucket refilling `rate` tokens a second and holding at most `burst`.
    pub fn new(rate: f64, burst: f64, epoch: Instant) -> Self {
        let ns_per_token = 1e9 / rate.max(f64::MIN_POSITIVE);
        TokenBucket {
            epoch,
            ns_per_token,
            tolerance_ns: (burst * ns_per_token).min(u64::MAX as f64 / 2.0) as u64,
            tat: AtomicU64::new(0),
        }
    }

    /// Takes `n` tokens at `now` if the bucket holds them; a request larger than the burst
    /// never passes.
    pub fn try_take(&self, n: u64, now: Instant) -> bool {
        let now_ns = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let cost = (n as f64 * self.ns_per_token).min(u64::MAX as f64 / 2.0) as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now_ns).saturating_add(cost);
            if new_tat - now_ns > self.tolerance_ns {
                return false;
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => tat = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn starts_full_refills_at_rate_and_refuses_oversized_requests() {
        let t0 = Instant::now();
        let b = TokenBucket::new(100.0, 200.0, t0);
        assert!(b.try_take(150, t0));
        assert!(b.try_take(50, t0));
        assert!(!b.try_take(1, t0), "the burst is spent");
        // 0.5 s refills 50 tokens.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.try_take(50, t1));
        assert!(!b.try_take(1, t1));
        // Never more than the burst, however long it rests.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(!b.try_take(201, t2));
        assert!(b.try_take(200, t2));
    }

    #[test]
    fn long_run_rate_is_the_configured_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new(1000.0, 2000.0, t0);
        let mut taken = 0u64;
        // 10 s of demand at 10× the rate, in 1 ms steps of 10 tokens.
        for ms in 0..10_000u64 {
            if b.try_take(10, t0 + Duration::from_millis(ms)) {
                taken += 10;
            }
        }
        // 10 s × 1000/s plus the initial burst of 2000.
        assert!((11_900..=12_010).contains(&taken), "{taken}");
    }
}
