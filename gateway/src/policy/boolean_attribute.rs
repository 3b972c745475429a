//! `boolean_attribute`: keeps traces where a resource or span has attribute `key` equal to
//! `value`. As the Collector, values are read with pdata's `Bool()`, so a non-boolean value
//! counts as `false`; `invert_match` works as for `string_attribute`.

use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `boolean_attribute:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BooleanAttributeConfig {
    /// Attribute key.
    pub key: String,
    /// The value that matches; `false` when left out, as the Collector's zero value.
    #[serde(default)]
    pub value: bool,
    /// Invert the match.
    #[serde(default)]
    pub invert_match: bool,
}

impl BooleanAttributeConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.key.is_empty() {
            return Err(SettingError::empty("key"));
        }
        Ok(())
    }
}

impl Kind for BooleanAttributeConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(BooleanAttributePolicy::new(c, keys.index(&c.key)))
    }
}

/// Compiled `boolean_attribute` policy.
#[derive(Debug)]
pub struct BooleanAttributePolicy {
    key: u16,
    key_name: String,
    value: bool,
    invert: bool,
}

impl BooleanAttributePolicy {
    /// Compiles a validated config; `key` is the key's index in the plan.
    pub fn new(c: &BooleanAttributeConfig, key: u16) -> Self {
        BooleanAttributePolicy {
            key,
            key_name: c.key.clone(),
            value: c.value,
            invert: c.invert_match,
        }
    }
}

impl Policy for BooleanAttributePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let matched = trace
            .summary
            .attrs
            .iter()
            .any(|a| a.key == self.key && a.value.as_bool() == self.value);
        super::verdict::attribute_verdict(matched, self.invert)
    }

    fn describe(&self) -> String {
        let verb = if self.invert {
            "keep traces unless"
        } else {
            "keep traces where"
        };
        format!("{verb} attribute {:?} is {}", self.key_name, self.value)
    }
}
