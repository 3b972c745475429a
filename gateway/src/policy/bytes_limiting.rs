//! `bytes_limiting`: keeps traces while their size fits a budget of `bytes_per_second`, as
//! the Collector: a token bucket refilled at `bytes_per_second` holding `burst_capacity`
//! bytes (default twice the rate). A trace's size is the OTLP-encoded size of its spans
//! (the Collector also counts each incoming batch's resource and scope again: see
//! docs/policies.md, Departures). The budget is per gateway, shared by its shards.

use serde::Deserialize;

use super::limiter::{validate_rate, BucketPolicy, Unit};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use super::verdict::Policy;

/// YAML block `bytes_limiting:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesLimitingConfig {
    /// Bytes kept per second, per gateway.
    #[serde(with = "tailgate_core::config::go_int")]
    pub bytes_per_second: u64,
    /// Bytes the bucket holds; default `2 × bytes_per_second`.
    /// 0 or less is the default, as in the Collector (which reads `> 0` as set).
    #[serde(default, with = "tailgate_core::config::go_int::option")]
    pub burst_capacity: Option<i64>,
}

impl BytesLimitingConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        validate_rate("bytes_per_second", self.bytes_per_second)
    }

    /// The compiled policy (a token bucket charged in bytes).
    pub fn compile(&self) -> BucketPolicy {
        BucketPolicy::new(Unit::Bytes, self.bytes_per_second, self.burst_capacity)
    }
}

impl Kind for BytesLimitingConfig {
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
