//! `string_attribute`: keeps traces where a resource or span has `key` with one of
//! `values` (exactly, or as regular expressions with `enabled_regex_matching`).
//!
//! As the Collector: regular expressions are not anchored (`^…$` to match whole values);
//! a span's empty value never matches; non-string values read as "" (pdata's `Str()`);
//! with `invert_match` the policy samples when nothing matches and not when something
//! does, a plain verdict that vetoes nothing (the Collector since v0.155).
//! `cache_max_size` is accepted; Tailgate compiles the
//! expressions once and needs no match cache.

use regex::bytes::RegexSet;
use serde::Deserialize;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `string_attribute:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringAttributeConfig {
    /// Attribute key.
    pub key: String,
    /// Values (or expressions) that match.
    #[serde(deserialize_with = "tailgate_core::config::comma_list")]
    pub values: Vec<String>,
    /// Treat `values` as regular expressions.
    #[serde(default)]
    pub enabled_regex_matching: bool,
    /// Accepted for compatibility, any integer (the Collector reads 0 or less as its
    /// default size).
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub cache_max_size: i64,
    /// Invert the match (see the module docs).
    #[serde(default)]
    pub invert_match: bool,
}

impl StringAttributeConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.key.is_empty() {
            return Err(SettingError::empty("key"));
        }
        if self.values.is_empty() {
            return Err(SettingError::conflict("values", "list at least one value"));
        }
        // The Collector drops empty values from an exact match's set: `[""]` (or a list
        // of unset `${env:…}` variables) is an empty list there, keeping no trace (every
        // trace with `invert_match`). An empty expression matches every value, so
        // expressions are not checked.
        if !self.enabled_regex_matching && self.values.iter().all(String::is_empty) {
            return Err(SettingError::conflict(
                "values",
                "lists only empty strings (an unset ${env:…} variable?): empty values never match, so the policy would keep no trace (every trace with invert_match); list a value",
            ));
        }
        if self.enabled_regex_matching {
            // Each alone first, so that the error names the value's own line.
            for (i, value) in self.values.iter().enumerate() {
                crate::go_regex::bytes_regex(value).map_err(|error| SettingError::Regex {
                    key: format!("values[{i}]"),
                    error,
                })?;
            }
            crate::go_regex::bytes_regex_set(&self.values)
                .map_err(|error| SettingError::Regex {
                    key: "values".into(),
                    error,
                })?;
        }
        Ok(())
    }
}

impl Kind for StringAttributeConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(StringAttributePolicy::new(c, keys.index(&c.key)))
    }
}

#[derive(Debug)]
enum Matcher {
    Exact(Vec<Vec<u8>>),
    Regex(RegexSet),
}

/// Compiled `string_attribute` policy.
#[derive(Debug)]
pub struct StringAttributePolicy {
    key: u16,
    key_name: String,
    matcher: Matcher,
    invert: bool,
}

impl StringAttributePolicy {
    /// Compiles a validated config; `key` is the key's index in the plan.
    pub fn new(c: &StringAttributeConfig, key: u16) -> Self {
        let matcher = if c.enabled_regex_matching {
            // Validated already; an empty set never matches.
            Matcher::Regex(
                crate::go_regex::bytes_regex_set(&c.values).unwrap_or_else(|_| RegexSet::empty()),
            )
        } else {
            Matcher::Exact(
                c.values
                    .iter()
                    .filter(|v| !v.is_empty())
                    .map(|v| v.as_bytes().to_vec())
                    .collect(),
            )
        };
        StringAttributePolicy {
            key,
            key_name: c.key.clone(),
            matcher,
            invert: c.invert_match,
        }
    }

    fn matches(&self, v: &[u8]) -> bool {
        match &self.matcher {
            Matcher::Exact(values) => values.iter().any(|x| x == v),
            Matcher::Regex(set) => set.is_match(v),
        }
    }
}

impl Policy for StringAttributePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let matched = trace.summary.attrs.iter().any(|a| {
            let v = a.value.as_str();
            a.key == self.key && (a.from_resource || !v.is_empty()) && self.matches(v)
        });
        super::verdict::attribute_verdict(matched, self.invert)
    }

    fn describe(&self) -> String {
        let how = match &self.matcher {
            // A few short values are named; a long list is counted.
            Matcher::Exact(v) if (1..=4).contains(&v.len()) && v.iter().all(|x| x.len() <= 40) => {
                let named: Vec<String> = v
                    .iter()
                    .map(|x| format!("{:?}", String::from_utf8_lossy(x)))
                    .collect();
                match named.as_slice() {
                    [one] => format!("is {one}"),
                    many => format!("is one of {}", many.join(", ")),
                }
            }
            Matcher::Exact(v) => format!("is one of {} values", v.len()),
            Matcher::Regex(s) => format!("matches one of {} expressions", s.len()),
        };
        let verb = if self.invert {
            "keep traces unless"
        } else {
            "keep traces where"
        };
        format!("{verb} attribute {:?} {how}", self.key_name)
    }
}
