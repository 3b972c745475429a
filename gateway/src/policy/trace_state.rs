//! `trace_state`: keeps traces where some span's W3C `tracestate` has entry `key` with one
//! of `values` (exact match). As the Collector, empty values and values that would make a
//! `key=value` member of 256 characters or more are ignored, since no valid tracestate
//! can hold them.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `trace_state:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceStateConfig {
    /// The tracestate key (`ot`, `congo`, …).
    pub key: String,
    /// The values that match.
    #[serde(deserialize_with = "tailgate_core::config::comma_list")]
    pub values: Vec<String>,
}

impl TraceStateConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.key.is_empty() {
            return Err(SettingError::empty("key"));
        }
        if self.values.is_empty() {
            return Err(SettingError::empty("values"));
        }
        // The Collector drops empty values (and those too long for a tracestate entry)
        // from its set: with none left the policy keeps no trace.
        if self.values.iter().all(|v| !self.usable(v)) {
            return Err(SettingError::conflict(
                "values",
                "lists no usable value (empty strings, an unset ${env:…} variable, or key and value of 256 characters or more): the policy would keep no trace; list a value",
            ));
        }
        Ok(())
    }

    /// Whether `value` can match: the Collector's set leaves out empty values and those
    /// whose entry (`key=value`) would not fit a tracestate member (256 characters).
    fn usable(&self, value: &str) -> bool {
        !value.is_empty() && self.key.len() + value.len() < 256
    }

    /// The plan key under which spans' values for `key` are recorded.
    pub(crate) fn plan_key(&self) -> String {
        format!(
            "{}{}",
            super::verdict::field_keys::TRACESTATE_PREFIX,
            self.key
        )
    }
}

impl Kind for TraceStateConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(TraceStatePolicy::new(c, keys.index(&c.plan_key())))
    }
}

/// Compiled `trace_state` policy.
#[derive(Debug)]
pub struct TraceStatePolicy {
    key: u16,
    key_name: String,
    values: Vec<Vec<u8>>,
}

impl TraceStatePolicy {
    /// Compiles a validated config; `key` is the plan key's index.
    pub fn new(c: &TraceStateConfig, key: u16) -> Self {
        let values = c
            .values
            .iter()
            .filter(|v| c.usable(v))
            .map(|v| v.as_bytes().to_vec())
            .collect();
        TraceStatePolicy {
            key,
            key_name: c.key.clone(),
            values,
        }
    }
}

impl Policy for TraceStatePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let matched = trace.summary.attrs.iter().any(|a| {
            a.key == self.key && self.values.iter().any(|v| v.as_slice() == a.value.as_str())
        });
        if matched {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        let values: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("{:?}", String::from_utf8_lossy(v)))
            .collect();
        format!(
            "keep traces where a span's tracestate has {}= one of [{}]",
            self.key_name,
            values.join(", ")
        )
    }
}
