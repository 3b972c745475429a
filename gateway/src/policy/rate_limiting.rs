//! `rate_limiting`: keeps traces while their spans fit a budget of `spans_per_second`, as
//! the Collector: a token bucket refilled at `spans_per_second` that holds `burst_capacity`
//! spans (default twice the rate); a trace takes as many tokens as it has spans, and a trace
//! larger than the bucket never passes. The budget is per gateway (the Collector's is per
//! Collector), and shared by the gateway's shards.

use serde::Deserialize;

use super::limiter::{validate_rate, BucketPolicy, Unit};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use super::verdict::Policy;

/// YAML block `rate_limiting:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitingConfig {
    /// Spans kept per second, per gateway.
    #[serde(with = "tailgate_core::config::go_int")]
    pub spans_per_second: u64,
    /// Spans the bucket holds; default `2 × spans_per_second`.
    /// 0 or less is the default, as in the Collector (which reads `> 0` as set).
    #[serde(default, with = "tailgate_core::config::go_int::option")]
    pub burst_capacity: Option<i64>,
}

impl RateLimitingConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        validate_rate("spans_per_second", self.spans_per_second)
    }

    /// The compiled policy (a token bucket charged in spans).
    pub fn compile(&self) -> BucketPolicy {
        BucketPolicy::new(Unit::Spans, self.spans_per_second, self.burst_capacity)
    }
}

impl Kind for RateLimitingConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn is_stateful(_: &Self) -> bool {
        true
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(c.compile())
    }
}
