//! `probabilistic`: keeps a share of traces chosen by a hash of the trace id, so every
//! gateway (and a Collector with the same `hash_salt`) decides the same for the same trace.
//!
//! Same function as the Collector: FNV-1a 64 over `hash_salt` followed by the 16 id bytes,
//! kept when the hash is `<= sampling_percentage / 100 × u64::MAX`. The default salt is the
//! Collector's, `default-hash-seed`.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

const DEFAULT_SALT: &str = "default-hash-seed";

/// YAML block `probabilistic:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbabilisticConfig {
    /// Percentage of traces to keep; 100 or more keeps all, 0 or less none.
    pub sampling_percentage: f64,
    /// Salt of the hash; use the same value on every node that must agree.
    #[serde(default)]
    pub hash_salt: String,
}

impl ProbabilisticConfig {
    /// As the Collector (internal/sampling/probabilistic.go, no bound in its config
    /// validation): any number is accepted; 100 or more keeps every trace, 0 or less none.
    /// Only a value that is not a number (`.nan`, `.inf`) is refused.
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.sampling_percentage.is_nan() {
            return Err(SettingError::range(
                "sampling_percentage",
                "a number",
                self.sampling_percentage,
            ));
        }
        Ok(())
    }
}

impl Kind for ProbabilisticConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(ProbabilisticPolicy::new(c))
    }
}

/// Compiled `probabilistic` policy.
#[derive(Debug, Clone)]
pub struct ProbabilisticPolicy {
    threshold: u64,
    salt: Vec<u8>,
    percentage: f64,
}

impl ProbabilisticPolicy {
    /// Compiles a validated config; the threshold is computed once here.
    pub fn new(c: &ProbabilisticConfig) -> Self {
        let salt = if c.hash_salt.is_empty() {
            DEFAULT_SALT
        } else {
            &c.hash_salt
        };
        // f64 → u64 saturates, so 100% maps to u64::MAX.
        let threshold = (c.sampling_percentage / 100.0 * u64::MAX as f64) as u64;
        ProbabilisticPolicy {
            threshold,
            salt: salt.as_bytes().to_vec(),
            percentage: c.sampling_percentage.min(100.0),
        }
    }

    /// FNV-1a 64 of salt then trace id.
    pub fn hash(&self, trace_id: &[u8; 16]) -> u64 {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        for b in self.salt.iter().chain(trace_id.iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(PRIME);
        }
        h
    }
}

impl Policy for ProbabilisticPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if self.percentage > 0.0 && self.hash(trace.trace_id) <= self.threshold {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn probability(&self, _trace: &TraceView<'_>) -> f64 {
        (self.percentage / 100.0).clamp(0.0, 1.0)
    }

    fn describe(&self) -> String {
        format!(
            "keep {}% of traces, chosen by a hash of the trace id",
            self.percentage
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::trace::TraceSummary;

    fn policy(pct: f64) -> ProbabilisticPolicy {
        ProbabilisticPolicy::new(&ProbabilisticConfig {
            sampling_percentage: pct,
            hash_salt: String::new(),
        })
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (reference test vector); with an empty salt
        // and a one-byte input we reproduce it by hashing through the same loop.
        let p = ProbabilisticPolicy {
            threshold: 0,
            salt: b"a".to_vec(),
            percentage: 0.0,
        };
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in b"a" {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(p.hash(&[0; 16]), p.hash(&[1; 16]));
    }

    #[test]
    fn keeps_the_configured_share_deterministically() {
        let p = policy(5.0);
        let s = TraceSummary::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut kept = 0;
        let n = 200_000;
        for _ in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&x.to_le_bytes());
            id[8..].copy_from_slice(&x.rotate_left(17).to_le_bytes());
            let v = p.evaluate(&TraceView {
                trace_id: &id,
                summary: &s,
                spans: &[],
                now: tokio::time::Instant::now(),
            });
            assert_eq!(
                v,
                p.evaluate(&TraceView {
                    trace_id: &id,
                    summary: &s,
                    spans: &[],
                    now: tokio::time::Instant::now(),
                })
            );
            kept += usize::from(v == Verdict::Sampled);
        }
        let share = kept as f64 / n as f64;
        assert!((share - 0.05).abs() < 0.003, "share {share}");
        assert_eq!(
            policy(0.0).evaluate(&TraceView {
                trace_id: &[7; 16],
                summary: &s,
                spans: &[],
                now: tokio::time::Instant::now(),
            }),
            Verdict::NotSampled
        );
        assert_eq!(
            policy(100.0).evaluate(&TraceView {
                trace_id: &[7; 16],
                summary: &s,
                spans: &[],
                now: tokio::time::Instant::now(),
            }),
            Verdict::Sampled
        );
    }
}
