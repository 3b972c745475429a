//! `probabilistic`: keeps a share of traces chosen by a hash of the trace id, so every
//! gateway (and a Collector with the same `hash_salt`) decides the same for the same trace.
//!
//! Same function as the Collector: FNV-1a 64 over `hash_salt` followed by the 16 id bytes,
//! kept when the hash is `<= sampling_percentage / 100 × (2⁶⁴ − 1)`, that product computed
//! as the Collector's `big.Float` does ([`go_threshold`]), so the same hashes are kept at
//! every percentage, the boundary included (even at 0%, a hash of exactly 0 is kept, as
//! there). The default salt is the Collector's, `default-hash-seed`.

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
    #[serde(deserialize_with = "tailgate_core::config::go_float")]
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
    /// The FNV-1a state after the salt: the same for every trace, so computed once (it
    /// was half of each evaluation's multiplications).
    salted: u64,
    percentage: f64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 of `bytes`, continuing from state `h` (start from [`FNV_OFFSET`]).
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

impl ProbabilisticPolicy {
    /// Compiles a validated config; the threshold is computed once here.
    pub fn new(c: &ProbabilisticConfig) -> Self {
        let salt = if c.hash_salt.is_empty() {
            DEFAULT_SALT
        } else {
            &c.hash_salt
        };
        let threshold = go_threshold(c.sampling_percentage / 100.0);
        ProbabilisticPolicy {
            threshold,
            salted: fnv1a(FNV_OFFSET, salt.as_bytes()),
            percentage: c.sampling_percentage.min(100.0),
        }
    }

    /// FNV-1a 64 of salt then trace id.
    pub fn hash(&self, trace_id: &[u8; 16]) -> u64 {
        fnv1a(self.salted, trace_id)
    }
}

/// `ratio × (2⁶⁴ − 1)` as the Collector computes it (`calculateThreshold`: a `big.Float`
/// of 64 bits' precision times the ratio, then `Uint64()`): the exact product rounded to 64
/// significant bits, ties to even, then truncated; 0 for a ratio of 0 or less, `u64::MAX`
/// from 1 up. Plain `f64` arithmetic rounds `2⁶⁴ − 1` up to `2⁶⁴` first and comes out one
/// higher at most percentages.
pub fn go_threshold(ratio: f64) -> u64 {
    if ratio.is_nan() || ratio <= 0.0 {
        return 0;
    }
    if ratio.is_infinite() {
        return u64::MAX;
    }
    // ratio = m × 2^e exactly.
    let bits = ratio.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (m, mut e) = if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), biased - 1075)
    };
    // The exact product (at most 117 bits), rounded to 64 significant bits.
    let mut q = u128::from(m) * u128::from(u64::MAX);
    let extra = (128 - q.leading_zeros()).saturating_sub(64);
    if extra > 0 {
        let rest = q & ((1u128 << extra) - 1);
        let half = 1u128 << (extra - 1);
        q >>= extra;
        if rest > half || (rest == half && q & 1 == 1) {
            q += 1;
        }
        e += extra as i32;
    }
    // q × 2^e, truncated toward zero and clamped.
    if e >= 0 {
        if q.leading_zeros() < e as u32 {
            return u64::MAX;
        }
        u64::try_from(q << e).unwrap_or(u64::MAX)
    } else {
        let shift = e.unsigned_abs();
        if shift >= 128 {
            return 0;
        }
        u64::try_from(q >> shift).unwrap_or(u64::MAX)
    }
}

impl Policy for ProbabilisticPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if self.hash(trace.trace_id) <= self.threshold {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn probability(&self, _trace: &TraceView<'_>) -> f64 {
        // At 0% or less a trace is kept only for a hash of exactly 0: one in 2^64, not 0
        // (an adjusted count of 1/0 would be infinite).
        (self.percentage / 100.0).clamp(1.0 / 18_446_744_073_709_551_616.0, 1.0)
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

    /// Guarantees: the threshold is the Collector's (`big.Float` with 64 bits of
    /// precision): values worked out by hand from that rounding, and the boundaries.
    #[test]
    fn thresholds_are_the_collectors() {
        assert_eq!(go_threshold(0.0), 0);
        assert_eq!(go_threshold(-0.5), 0);
        assert_eq!(go_threshold(1.0), u64::MAX);
        assert_eq!(go_threshold(2.0), u64::MAX);
        assert_eq!(go_threshold(f64::INFINITY), u64::MAX);
        // 0.5 × (2⁶⁴ − 1) = 2⁶³ − 0.5: 64 significant bits hold it; truncated.
        assert_eq!(go_threshold(0.5), (1 << 63) - 1);
        // 0.25 × (2⁶⁴ − 1) = 2⁶² − 0.25: truncated.
        assert_eq!(go_threshold(0.25), (1 << 62) - 1);
        // f64 arithmetic gives one more (2⁶⁴ − 1 rounds up to 2⁶⁴ as an f64).
        assert_eq!((0.5 * u64::MAX as f64) as u64, 1 << 63);
        // 0.1 is m × 2⁻⁵⁶ with m = 0x1999999999999a; m × (2⁶⁴ − 1) has 117 bits, rounded
        // to 64 (53 dropped), then shifted back.
        let m: u128 = 0x0019_9999_9999_999a;
        let exact = m * u128::from(u64::MAX);
        let (kept, rest) = (exact >> 53, exact & ((1 << 53) - 1));
        let rounded = if rest >= 1 << 52 { kept + 1 } else { kept };
        assert_eq!(u128::from(go_threshold(0.1)), (rounded << 53) >> 56);
        // Tiny ratios: below one, the threshold is 0.
        assert_eq!(go_threshold(1e-30), 0);
        assert_eq!(go_threshold(f64::MIN_POSITIVE), 0);
    }

    /// Scenario: a trace whose hash is exactly `r × 2⁶⁴`, under a policy of percentage
    /// `100 r` (found by the parity check: FNV-1a of the default salt and this id is
    /// 14941626748340791296).
    /// Guarantees: not kept, as in the Collector, whose threshold is one below that hash
    /// (f64 arithmetic made it equal, and kept the trace).
    #[test]
    fn a_hash_on_the_boundary_is_decided_as_in_the_collector() {
        let p = policy(80.998_720_905_093_05);
        let id: [u8; 16] = [
            0x03, 0x00, 0x30, 0x05, 0xb6, 0x88, 0xb6, 0x61, 0x32, 0x1c, 0x17, 0x44, 0xed, 0x28,
            0x79, 0xc1,
        ];
        assert_eq!(p.hash(&id), 14_941_626_748_340_791_296);
        assert_eq!(p.threshold, 14_941_626_748_340_791_295);
        let s = TraceSummary::default();
        let view = TraceView {
            trace_id: &id,
            summary: &s,
            spans: crate::buffer::Spans::EMPTY,
            now: tokio::time::Instant::now(),
        };
        assert_eq!(p.evaluate(&view), Verdict::NotSampled);
    }

    /// Guarantees: the hash is FNV-1a 64 (reference vectors), and hashing the salt once
    /// then the id is hashing them together.
    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        let p = ProbabilisticPolicy::new(&ProbabilisticConfig {
            sampling_percentage: 5.0,
            hash_salt: "a".into(),
        });
        let id = [7u8; 16];
        let whole: Vec<u8> = b"a".iter().chain(&id).copied().collect();
        assert_eq!(p.hash(&id), fnv1a(FNV_OFFSET, &whole));
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
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            });
            assert_eq!(
                v,
                p.evaluate(&TraceView {
                    trace_id: &id,
                    summary: &s,
                    spans: crate::buffer::Spans::EMPTY,
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
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            }),
            Verdict::NotSampled
        );
        assert_eq!(
            policy(100.0).evaluate(&TraceView {
                trace_id: &[7; 16],
                summary: &s,
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            }),
            Verdict::Sampled
        );
    }
}
