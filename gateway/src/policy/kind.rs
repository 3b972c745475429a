//! What a policy kind is to the policy file: a settings block that validates into the kind's
//! configuration and compiles into a [`Policy`]. Every kind implements [`Kind`]; the table in
//! `policy/mod.rs` (one line per kind) turns the implementations into the `type:` names,
//! the YAML blocks, [`super::PolicyKind`] and its dispatch.
//!
//! The errors of policy validation live here too, typed: [`PolicyError`] for the entry
//! (name, type, blocks, nesting) and [`SettingError`] for one value inside a block.
//!
//! Layer: above `verdict` (what a compiled policy is), below every kind's file and
//! `policy/mod.rs`.

use std::fmt::Debug;

use super::ottl::OttlError;
use super::verdict::Policy;

/// A policy kind's settings block (`latency:`, `and:` …).
pub trait Kind: Sized {
    /// What the validated block becomes and [`super::PolicyKind`] holds.
    type Valid: Debug + Clone;

    /// False for kinds whose block may be left out (`always_sample`, `trace_flags`); the
    /// block's `Default` is used then.
    const NEEDS_BLOCK: bool = true;

    /// Validates the block of the policy named in `at`.
    fn validated(self, at: &At<'_>) -> Result<Self::Valid, PolicyError>;

    /// Whether the policy keeps state across traces (rate budgets, adaptive rates), which
    /// `sampling_strategy: span-ingest` refuses, as the Collector's `IsStateful`.
    fn is_stateful(_valid: &Self::Valid) -> bool {
        false
    }

    /// Compiles a validated block, registering the attribute keys it reads in `keys`.
    fn compile(valid: &Self::Valid, keys: &mut Keys<'_>) -> Box<dyn Policy>;
}

/// Where a block is being validated: the policy's name and the block's key.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// The policy's `name:`.
    pub(crate) policy: &'a str,
    /// The block, as `latency`.
    pub(crate) block: &'static str,
}

impl At<'_> {
    /// Checks `value` with `check` (a plain kind's own validation) and names the block in
    /// its error.
    pub(crate) fn settings<T>(
        &self,
        value: T,
        check: impl FnOnce(&T) -> Result<(), SettingError>,
    ) -> Result<T, PolicyError> {
        check(&value).map_err(|error| self.setting(error))?;
        Ok(value)
    }

    /// `error` inside this block.
    pub(crate) fn setting(&self, error: SettingError) -> PolicyError {
        PolicyError::Setting {
            policy: self.policy.to_owned(),
            block: self.block,
            error,
        }
    }
}

/// The plan's attribute keys: compiled policies read attributes by their index here.
#[derive(Debug)]
pub struct Keys<'a>(pub(crate) &'a mut Vec<String>);

impl Keys<'_> {
    /// The index of `key`, registered if new.
    pub(crate) fn index(&mut self, key: &str) -> u16 {
        match self.0.iter().position(|x| x == key) {
            Some(i) => i as u16,
            None => {
                self.0.push(key.to_owned());
                (self.0.len() - 1) as u16
            }
        }
    }
}

/// Why one policy entry is refused. Shown with the file, line and `policies[i]` key by
/// the policy file's loader.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// No `name:`, or an empty one.
    #[error("every policy needs a non-empty `name`")]
    MissingName,
    /// A top-level policy's name used by an earlier one.
    #[error("policy name {0:?} is used twice; names must be unique")]
    DuplicateName(String),
    /// No `type:`.
    #[error("policy {policy:?}: missing `type` (one of {supported})")]
    MissingType {
        /// The policy.
        policy: String,
        /// The known types.
        supported: String,
    },
    /// A `type:` Tailgate does not know.
    #[error("policy {policy:?}: unknown policy type {kind:?}; supported: {supported}")]
    UnknownType {
        /// The policy.
        policy: String,
        /// The type as written.
        kind: String,
        /// The known types.
        supported: String,
    },
    /// The type's settings block is missing.
    #[error("policy {policy:?}: type {kind} needs a `{kind}:` block with its settings")]
    MissingBlock {
        /// The policy.
        policy: String,
        /// The type.
        kind: &'static str,
    },
    /// A value inside the type's block.
    #[error("policy {policy:?}: {block}.{error}")]
    Setting {
        /// The policy.
        policy: String,
        /// The block.
        block: &'static str,
        /// What is wrong with the value.
        #[source]
        error: SettingError,
    },
    /// `and`, `drop`, `not` or `composite` with no sub-policy.
    #[error("policy {policy:?}: {key} needs at least one sub-policy")]
    NoSubPolicies {
        /// The policy.
        policy: String,
        /// The list, as `and.and_sub_policy`.
        key: &'static str,
    },
    /// A sub-policy of a kind that cannot be nested there.
    #[error("policy {policy:?}: {}: {kind} cannot be nested here; {rule}", sub_at(key, *index))]
    Nested {
        /// The policy.
        policy: String,
        /// The list.
        key: &'static str,
        /// The sub-policy's position.
        index: usize,
        /// The sub-policy's type.
        kind: &'static str,
        /// Which kinds may be nested there.
        rule: &'static str,
    },
    /// A sub-policy is refused.
    #[error("policy {policy:?}: {}: {error}", sub_at(key, *index))]
    InSubPolicy {
        /// The policy.
        policy: String,
        /// The list.
        key: &'static str,
        /// The sub-policy's position.
        index: usize,
        /// Why the sub-policy is refused.
        #[source]
        error: Box<PolicyError>,
    },
}

/// Where a sub-policy is written: `and.and_sub_policy[1]`; `not.not_sub_policy`, a single
/// mapping, without a position.
fn sub_at(key: &str, index: usize) -> String {
    if key == "not.not_sub_policy" {
        key.to_owned()
    } else {
        format!("{key}[{index}]")
    }
}

impl PolicyError {
    /// The path within the policy's entry of the key the error is about
    /// (`string_attribute.values`, `and.and_sub_policy[1].rate_limiting.spans_per_second`),
    /// for the loader to name its line rather than the entry's first.
    pub fn entry_path(&self) -> Option<String> {
        match self {
            PolicyError::Setting { block, error, .. } => Some(format!("{block}.{}", error.key())),
            PolicyError::NoSubPolicies { key, .. } => Some((*key).to_owned()),
            PolicyError::UnknownType { .. } => Some("type".into()),
            PolicyError::Nested { key, index, .. } => Some(sub_at(key, *index)),
            PolicyError::InSubPolicy {
                key, index, error, ..
            } => {
                let at = sub_at(key, *index);
                Some(match error.entry_path() {
                    Some(inner) => format!("{at}.{inner}"),
                    None => at,
                })
            }
            _ => None,
        }
    }
}

/// What is wrong with one value of a settings block; its Display starts with the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// A key, list or value that must not be empty.
    #[error("{key} must not be empty")]
    Empty {
        /// The key, as `values`.
        key: String,
    },
    /// A value outside what the kind accepts.
    #[error("{key} must be {expected}, found {found}")]
    OutOfRange {
        /// The key.
        key: String,
        /// What it must be, as `greater than 0`.
        expected: String,
        /// The value as read.
        found: String,
    },
    /// Settings that are missing or contradict each other.
    #[error("{key}: {problem}")]
    Conflict {
        /// The key the message starts with.
        key: String,
        /// What to set or change.
        problem: String,
    },
    /// A value that is not a valid regular expression.
    #[error("{key}: invalid regular expression: {error}")]
    Regex {
        /// The key.
        key: String,
        /// Why (Go's syntax, see [`crate::go_regex`]).
        #[source]
        error: crate::go_regex::GoRegexError,
    },
    /// An OTTL condition that does not parse.
    #[error("{key}: {error}")]
    Ottl {
        /// The condition, as `span[0]`.
        key: String,
        /// The parser's error.
        #[source]
        error: OttlError,
    },
}

impl SettingError {
    /// The key the error is about, within its settings block.
    pub fn key(&self) -> &str {
        match self {
            SettingError::Empty { key }
            | SettingError::OutOfRange { key, .. }
            | SettingError::Conflict { key, .. }
            | SettingError::Regex { key, .. }
            | SettingError::Ottl { key, .. } => key,
        }
    }

    /// [`SettingError::OutOfRange`] from displayable parts.
    pub(crate) fn range(
        key: impl Into<String>,
        expected: impl Into<String>,
        found: impl std::fmt::Display,
    ) -> Self {
        SettingError::OutOfRange {
            key: key.into(),
            expected: expected.into(),
            found: found.to_string(),
        }
    }

    /// [`SettingError::Conflict`].
    pub(crate) fn conflict(key: impl Into<String>, problem: impl Into<String>) -> Self {
        SettingError::Conflict {
            key: key.into(),
            problem: problem.into(),
        }
    }

    /// [`SettingError::Empty`].
    pub(crate) fn empty(key: impl Into<String>) -> Self {
        SettingError::Empty { key: key.into() }
    }
}
