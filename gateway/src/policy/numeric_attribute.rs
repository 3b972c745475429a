//! `numeric_attribute`: keeps traces where a resource or span has integer attribute `key`
//! within `[min_value, max_value]` (either bound may be left out). As the Collector, values
//! are read with pdata's `Int()`, so a non-integer value counts as 0; `invert_match` works
//! as for `string_attribute`.
//!
//! As the Collector (its `getSharedPolicyEvaluator` passes a bound on only when it is not
//! zero), a bound of 0 is no bound: `{min_value: 0, max_value: 100}` keeps -5 too. A range
//! with `min_value > max_value` loads, as there, and never matches; the loader warns.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `numeric_attribute:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericAttributeConfig {
    /// Attribute key.
    pub key: String,
    /// Lower bound (inclusive); 0 is no bound, as in the Collector.
    #[serde(default, with = "tailgate_core::config::go_int::option")]
    pub min_value: Option<i64>,
    /// Upper bound (inclusive); 0 is no bound, as in the Collector.
    #[serde(default, with = "tailgate_core::config::go_int::option")]
    pub max_value: Option<i64>,
    /// Invert the match.
    #[serde(default)]
    pub invert_match: bool,
}

impl NumericAttributeConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.key.is_empty() {
            return Err(SettingError::empty("key"));
        }
        match self.bounds() {
            // The Collector cannot build this policy either (it logs an error and has no
            // evaluator).
            (None, None) => Err(SettingError::conflict(
                "min_value",
                "set a non-zero min_value, max_value or both (0 means no bound, as in the Collector)",
            )),
            _ => Ok(()),
        }
    }

    /// The bounds as the Collector reads them: a bound of 0 is no bound.
    pub fn bounds(&self) -> (Option<i64>, Option<i64>) {
        let set = |v: Option<i64>| v.filter(|v| *v != 0);
        (set(self.min_value), set(self.max_value))
    }

    /// What the operator should know about this policy (logged at load).
    pub(crate) fn warnings(&self, name: &str) -> Option<String> {
        match self.bounds() {
            (Some(a), Some(b)) if b < a => Some(format!(
                "policy {name:?}: numeric_attribute min_value ({a}) is above max_value ({b}), so no value is within the range (the Collector loads this too)"
            )),
            _ => None,
        }
    }
}

impl Kind for NumericAttributeConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(NumericAttributePolicy::new(c, keys.index(&c.key)))
    }
}

/// Compiled `numeric_attribute` policy.
#[derive(Debug)]
pub struct NumericAttributePolicy {
    key: u16,
    key_name: String,
    min: i64,
    max: i64,
    invert: bool,
}

impl NumericAttributePolicy {
    /// Compiles a validated config; `key` is the key's index in the plan.
    pub fn new(c: &NumericAttributeConfig, key: u16) -> Self {
        NumericAttributePolicy {
            key,
            key_name: c.key.clone(),
            min: c.bounds().0.unwrap_or(i64::MIN),
            max: c.bounds().1.unwrap_or(i64::MAX),
            invert: c.invert_match,
        }
    }
}

impl Policy for NumericAttributePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let matched = trace.summary.attrs.iter().any(|a| {
            let v = a.value.as_int();
            a.key == self.key && self.min <= v && v <= self.max
        });
        super::verdict::attribute_verdict(matched, self.invert)
    }

    fn describe(&self) -> String {
        let verb = if self.invert {
            "keep traces unless"
        } else {
            "keep traces where"
        };
        let range = match (self.min, self.max) {
            (i64::MIN, i64::MAX) => "any int".to_owned(),
            (min, i64::MAX) => format!("at least {min}"),
            (i64::MIN, max) => format!("at most {max}"),
            (min, max) => format!("within [{min}, {max}]"),
        };
        format!("{verb} attribute {:?} is {range}", self.key_name)
    }
}
