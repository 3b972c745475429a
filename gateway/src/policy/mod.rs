//! Sampling policies in the OpenTelemetry Collector's `tail_sampling` syntax.
//!
//! A policy file is the body of a Collector `tail_sampling:` block (or the block itself):
//!
//! ```yaml
//! decision_wait: 10s
//! num_traces: 100000
//! policies:
//!   - name: errors
//!     type: status_code
//!     status_code: { status_codes: [ERROR] }
//!   - name: slow
//!     type: latency
//!     latency: { threshold_ms: 500 }
//!   - name: baseline
//!     type: probabilistic
//!     probabilistic: { sampling_percentage: 5 }
//! ```
//!
//! Each entry is parsed and validated into a [`PolicyConfig`] (errors name the file, the
//! policy and the key, with the line), then compiled into a [`plan::PolicyPlan`] that the
//! shards evaluate. One policy kind, one file, named after its `type:`.

pub mod always_sample;
pub mod and;
pub mod boolean_attribute;
pub mod drop;
pub mod latency;
pub mod not;
pub mod numeric_attribute;
pub mod plan;
pub mod probabilistic;
pub mod span_count;
pub mod status_code;
pub mod string_attribute;

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::config::{locate_sequence_item, parse_yaml, ConfigError};

use crate::buffer::trace::TraceView;

pub use plan::PolicyPlan;

/// What one policy says about one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Keep the trace.
    Sampled,
    /// This policy does not keep it.
    NotSampled,
    /// Drop it, whatever other policies say (`drop`).
    Dropped,
    /// An inverted match did not match: keep it unless another policy says "not sampled".
    InvertSampled,
    /// An inverted match matched: do not keep it, even if another policy samples it.
    InvertNotSampled,
}

/// Whether every sub-policy keeps the trace (`and` and `drop`): as the Collector, any
/// "not sampled" (inverted or not) answers no; "invert sampled" counts as yes.
pub(crate) fn all_sample(subs: &[Box<dyn Policy>], trace: &TraceView<'_>) -> bool {
    subs.iter().all(|s| {
        !matches!(
            s.evaluate(trace),
            Verdict::NotSampled | Verdict::InvertNotSampled | Verdict::Dropped
        )
    })
}

/// The verdict of an attribute policy, with the Collector's inverted decisions.
pub(crate) fn attribute_verdict(matched: bool, invert: bool) -> Verdict {
    match (matched, invert) {
        (true, false) => Verdict::Sampled,
        (false, false) => Verdict::NotSampled,
        (true, true) => Verdict::InvertNotSampled,
        (false, true) => Verdict::InvertSampled,
    }
}

/// A compiled policy.
pub trait Policy: Send + Sync + Debug {
    /// Evaluates a trace. Pure: the same trace gives the same verdict on every gateway.
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict;
    /// A plain-words description, for `check-policies` and logs.
    fn describe(&self) -> String;
}

/// The policy file: a Collector `tail_sampling` block, validated.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// How long after a trace's first span it is decided.
    pub decision_wait: Duration,
    /// Traces kept in memory per gateway before the oldest are decided early.
    pub num_traces: usize,
    /// Accepted for compatibility.
    pub expected_new_traces_per_sec: u64,
    /// Decide a trace this long after its root span arrives, if that is earlier than
    /// `decision_wait`.
    pub decision_wait_after_root_received: Option<Duration>,
    /// Stop evaluating at the first policy that samples (the Collector's option).
    pub sample_on_first_match: bool,
    /// Sizes of the decision cache for late spans; `None` keeps the gateway config's.
    pub decision_cache: Option<DecisionCacheConfig>,
    /// Collector options Tailgate accepts but does not apply, with why; log them.
    pub ignored_options: Vec<String>,
    /// The policies, evaluated in order.
    pub policies: Vec<PolicyConfig>,
}

/// `decision_cache` (the Collector's option).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Kept trace ids remembered.
    #[serde(default)]
    pub sampled_cache_size: usize,
    /// Dropped trace ids remembered.
    #[serde(default)]
    pub non_sampled_cache_size: usize,
}

/// The policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    /// How long after a trace's first span it is decided. Default 30s, as the Collector.
    #[serde(default = "default_decision_wait", with = "humantime_serde")]
    decision_wait: Duration,
    /// Traces kept in memory per gateway; past it the oldest are decided early (the
    /// Collector drops them instead). Default 50000.
    #[serde(default = "default_num_traces")]
    num_traces: usize,
    /// Accepted for compatibility; Tailgate sizes its tables as they fill.
    #[serde(default)]
    expected_new_traces_per_sec: u64,
    #[serde(default, with = "humantime_serde")]
    decision_wait_after_root_received: Option<Duration>,
    #[serde(default)]
    sample_on_first_match: bool,
    #[serde(default)]
    decision_cache: Option<DecisionCacheConfig>,
    #[serde(default)]
    drop_pending_traces_on_shutdown: Option<bool>,
    #[serde(default)]
    block_on_overflow: Option<bool>,
    #[serde(default)]
    maximum_trace_size_bytes: Option<u64>,
    /// The policies, evaluated in order.
    policies: Vec<RawPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped {
    tail_sampling: RawPolicyFile,
}

fn default_decision_wait() -> Duration {
    Duration::from_secs(30)
}

fn default_num_traces() -> usize {
    50_000
}

/// One validated policy entry.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The policy's name, used in metrics and explanations.
    pub name: String,
    /// The kind and its settings.
    pub kind: PolicyKind,
}

/// The supported policy kinds with their settings.
#[derive(Debug, Clone)]
pub enum PolicyKind {
    /// `always_sample`
    AlwaysSample,
    /// `latency`
    Latency(latency::LatencyConfig),
    /// `probabilistic`
    Probabilistic(probabilistic::ProbabilisticConfig),
    /// `status_code`
    StatusCode(status_code::StatusCodeConfig),
    /// `span_count`
    SpanCount(span_count::SpanCountConfig),
    /// `and`: every sub-policy keeps it.
    And(Vec<PolicyConfig>),
    /// `drop`: every sub-policy keeps it, so it is dropped.
    Drop(Vec<PolicyConfig>),
    /// `not` (Tailgate): the sub-policy does not keep it.
    Not(Box<PolicyConfig>),
    /// `string_attribute`
    StringAttribute(string_attribute::StringAttributeConfig),
    /// `numeric_attribute`
    NumericAttribute(numeric_attribute::NumericAttributeConfig),
    /// `boolean_attribute`
    BooleanAttribute(boolean_attribute::BooleanAttributeConfig),
}

/// A policy entry as written: `name`, `type` and one block per type. Blocks of Collector
/// types that Tailgate does not implement yet are accepted by the parser so that the error
/// can say so, instead of calling them unknown fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
// The blocks of unimplemented kinds are parsed only so that the error can name the kind.
#[allow(dead_code)]
pub(crate) struct RawPolicy {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    latency: Option<latency::LatencyConfig>,
    probabilistic: Option<probabilistic::ProbabilisticConfig>,
    status_code: Option<status_code::StatusCodeConfig>,
    span_count: Option<span_count::SpanCountConfig>,
    and: Option<and::AndConfig>,
    drop: Option<drop::DropConfig>,
    not: Option<not::NotConfig>,
    numeric_attribute: Option<numeric_attribute::NumericAttributeConfig>,
    string_attribute: Option<string_attribute::StringAttributeConfig>,
    boolean_attribute: Option<boolean_attribute::BooleanAttributeConfig>,
    rate_limiting: Option<serde::de::IgnoredAny>,
    bytes_limiting: Option<serde::de::IgnoredAny>,
    trace_state: Option<serde::de::IgnoredAny>,
    trace_flags: Option<serde::de::IgnoredAny>,
    ottl_condition: Option<serde::de::IgnoredAny>,
    composite: Option<serde::de::IgnoredAny>,
}

/// Collector policy types not implemented yet.
const NOT_YET: &[&str] = &[
    "rate_limiting",
    "bytes_limiting",
    "trace_state",
    "trace_flags",
    "composite",
];

const SUPPORTED: &str = "always_sample, latency, probabilistic, status_code, span_count, \
     string_attribute, numeric_attribute, boolean_attribute, and, drop, not";

impl TryFrom<RawPolicy> for PolicyConfig {
    type Error = String;

    /// Validates one entry; the message names the policy and the key.
    fn try_from(raw: RawPolicy) -> Result<Self, String> {
        let name = match raw.name {
            Some(n) if !n.trim().is_empty() => n,
            _ => return Err("every policy needs a non-empty `name`".into()),
        };
        let Some(kind) = raw.kind else {
            return Err(format!(
                "policy {name:?}: missing `type` (one of {SUPPORTED})"
            ));
        };
        let block = |present: bool| -> Result<(), String> {
            if present {
                Ok(())
            } else {
                Err(format!(
                    "policy {name:?}: type {kind} needs a `{kind}:` block with its settings"
                ))
            }
        };
        // Which per-type blocks are present, checked against the type after matching.
        let blocks = [
            ("latency", raw.latency.is_some()),
            ("probabilistic", raw.probabilistic.is_some()),
            ("status_code", raw.status_code.is_some()),
            ("span_count", raw.span_count.is_some()),
            ("and", raw.and.is_some()),
            ("drop", raw.drop.is_some()),
            ("not", raw.not.is_some()),
            ("string_attribute", raw.string_attribute.is_some()),
            ("numeric_attribute", raw.numeric_attribute.is_some()),
            ("boolean_attribute", raw.boolean_attribute.is_some()),
        ];
        let kind = match kind.as_str() {
            "always_sample" => PolicyKind::AlwaysSample,
            "latency" => {
                block(raw.latency.is_some())?;
                let c = raw.latency.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: latency.{e}"))?;
                PolicyKind::Latency(c)
            }
            "probabilistic" => {
                block(raw.probabilistic.is_some())?;
                let c = raw.probabilistic.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: probabilistic.{e}"))?;
                PolicyKind::Probabilistic(c)
            }
            "status_code" => {
                block(raw.status_code.is_some())?;
                let c = raw.status_code.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: status_code.{e}"))?;
                PolicyKind::StatusCode(c)
            }
            "span_count" => {
                block(raw.span_count.is_some())?;
                let c = raw.span_count.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: span_count.{e}"))?;
                PolicyKind::SpanCount(c)
            }
            "string_attribute" => {
                block(raw.string_attribute.is_some())?;
                let c = raw.string_attribute.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: string_attribute.{e}"))?;
                PolicyKind::StringAttribute(c)
            }
            "numeric_attribute" => {
                block(raw.numeric_attribute.is_some())?;
                let c = raw.numeric_attribute.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: numeric_attribute.{e}"))?;
                PolicyKind::NumericAttribute(c)
            }
            "boolean_attribute" => {
                block(raw.boolean_attribute.is_some())?;
                let c = raw.boolean_attribute.unwrap_or_default();
                c.validate()
                    .map_err(|e| format!("policy {name:?}: boolean_attribute.{e}"))?;
                PolicyKind::BooleanAttribute(c)
            }
            "and" => {
                block(raw.and.is_some())?;
                let subs = raw.and.map(|a| a.and_sub_policy).unwrap_or_default();
                PolicyKind::And(sub_policies(&name, "and.and_sub_policy", subs)?)
            }
            "drop" => {
                block(raw.drop.is_some())?;
                let subs = raw.drop.map(|d| d.drop_sub_policy).unwrap_or_default();
                PolicyKind::Drop(sub_policies(&name, "drop.drop_sub_policy", subs)?)
            }
            "not" => {
                block(raw.not.is_some())?;
                let Some(sub) = raw.not.map(|n| *n.not_sub_policy) else {
                    return Err(format!("policy {name:?}: not needs not_sub_policy"));
                };
                let mut subs = sub_policies(&name, "not.not_sub_policy", vec![sub])?;
                PolicyKind::Not(Box::new(subs.remove(0)))
            }
            "ottl_condition" => {
                return Err(format!(
                    "policy {name:?}: type ottl_condition is not supported; status_code, latency \
                     and probabilistic cover the common cases (attribute policies are coming)"
                ))
            }
            k if NOT_YET.contains(&k) => {
                return Err(format!(
                    "policy {name:?}: type {k} is a Collector policy Tailgate does not implement \
                     yet; supported: {SUPPORTED}"
                ))
            }
            k => {
                return Err(format!(
                    "policy {name:?}: unknown type {k:?}; supported: {SUPPORTED}"
                ))
            }
        };
        // A block for another type is almost always a copy-paste mistake.
        let stray = blocks
            .into_iter()
            .find(|(k, present)| *present && *k != kind_name(&kind));
        if let Some((k, _)) = stray {
            return Err(format!(
                "policy {name:?}: has a `{k}:` block but its type is {}",
                kind_name(&kind)
            ));
        }
        Ok(PolicyConfig { name, kind })
    }
}

fn kind_name(kind: &PolicyKind) -> &'static str {
    match kind {
        PolicyKind::AlwaysSample => "always_sample",
        PolicyKind::Latency(_) => "latency",
        PolicyKind::Probabilistic(_) => "probabilistic",
        PolicyKind::StatusCode(_) => "status_code",
        PolicyKind::SpanCount(_) => "span_count",
        PolicyKind::And(_) => "and",
        PolicyKind::Drop(_) => "drop",
        PolicyKind::Not(_) => "not",
        PolicyKind::StringAttribute(_) => "string_attribute",
        PolicyKind::NumericAttribute(_) => "numeric_attribute",
        PolicyKind::BooleanAttribute(_) => "boolean_attribute",
    }
}

/// Validates the sub-policies of `and`, `drop` or `not`. As in the Collector they must be
/// plain kinds: `and`, `drop` and `not` do not nest (write two policies instead).
fn sub_policies(name: &str, key: &str, raws: Vec<RawPolicy>) -> Result<Vec<PolicyConfig>, String> {
    if raws.is_empty() {
        return Err(format!(
            "policy {name:?}: {key} needs at least one sub-policy"
        ));
    }
    let mut out = Vec::with_capacity(raws.len());
    for (i, raw) in raws.into_iter().enumerate() {
        let sub =
            PolicyConfig::try_from(raw).map_err(|e| format!("policy {name:?}: {key}[{i}]: {e}"))?;
        if matches!(
            sub.kind,
            PolicyKind::And(_) | PolicyKind::Drop(_) | PolicyKind::Not(_)
        ) {
            return Err(format!(
                "policy {name:?}: {key}[{i}]: {} cannot be nested; sub-policies must be plain kinds",
                kind_name(&sub.kind)
            ));
        }
        out.push(sub);
    }
    Ok(out)
}

// === impl PolicyConfig ===

impl PolicyConfig {
    /// Compiles the entry into an evaluator, registering the attribute keys it reads in
    /// `keys` (the plan's list, whose indices the shards' summaries use).
    pub fn compile(&self, keys: &mut Vec<String>) -> Box<dyn Policy> {
        let mut key = |k: &str| -> u16 {
            match keys.iter().position(|x| x == k) {
                Some(i) => i as u16,
                None => {
                    keys.push(k.to_owned());
                    (keys.len() - 1) as u16
                }
            }
        };
        match &self.kind {
            PolicyKind::AlwaysSample => Box::new(always_sample::AlwaysSample),
            PolicyKind::Latency(c) => Box::new(latency::LatencyPolicy::new(c)),
            PolicyKind::Probabilistic(c) => Box::new(probabilistic::ProbabilisticPolicy::new(c)),
            PolicyKind::StatusCode(c) => Box::new(status_code::StatusCodePolicy::new(c)),
            PolicyKind::SpanCount(c) => Box::new(span_count::SpanCountPolicy::new(c)),
            PolicyKind::StringAttribute(c) => {
                Box::new(string_attribute::StringAttributePolicy::new(c, key(&c.key)))
            }
            PolicyKind::NumericAttribute(c) => Box::new(
                numeric_attribute::NumericAttributePolicy::new(c, key(&c.key)),
            ),
            PolicyKind::BooleanAttribute(c) => Box::new(
                boolean_attribute::BooleanAttributePolicy::new(c, key(&c.key)),
            ),
            PolicyKind::And(subs) => Box::new(and::AndPolicy::new(
                subs.iter().map(|s| s.compile(keys)).collect(),
            )),
            PolicyKind::Drop(subs) => Box::new(drop::DropPolicy::new(
                subs.iter().map(|s| s.compile(keys)).collect(),
            )),
            PolicyKind::Not(sub) => Box::new(not::NotPolicy::new(sub.compile(keys))),
        }
    }
}

// === impl PolicyFile ===

impl PolicyFile {
    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &text)
    }

    /// Parses policy-file text; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        // Accept the `tail_sampling:` block itself as well as its body. Deciding by the
        // top-level key keeps line numbers in errors pointing at the user's text.
        let top: serde_yaml_ng::Value = parse_yaml(path, text)?;
        let raw: RawPolicyFile = match top.get("tail_sampling") {
            Some(_) => parse_yaml::<Wrapped>(path, text)?.tail_sampling,
            None => parse_yaml(path, text)?,
        };
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let mut policies = Vec::with_capacity(raw.policies.len());
        for (i, p) in raw.policies.into_iter().enumerate() {
            let key = format!("policies[{i}]");
            match PolicyConfig::try_from(p) {
                Ok(p) => policies.push(p),
                Err(message) => {
                    return Err(match locate_sequence_item(text, "policies", i) {
                        Some(line) => ConfigError::InvalidAt {
                            path: path.to_owned(),
                            line,
                            key,
                            message,
                        },
                        None => invalid(&key, message),
                    })
                }
            }
        }
        let mut ignored_options = Vec::new();
        if raw.drop_pending_traces_on_shutdown.is_some() {
            ignored_options.push(
                "drop_pending_traces_on_shutdown: Tailgate decides every buffered trace on shutdown"
                    .to_owned(),
            );
        }
        if raw.block_on_overflow.is_some() {
            ignored_options.push(
                "block_on_overflow: Tailgate always pushes back on senders instead of dropping"
                    .to_owned(),
            );
        }
        if raw.maximum_trace_size_bytes.is_some() {
            ignored_options.push(
                "maximum_trace_size_bytes: not implemented yet; traces are not capped".to_owned(),
            );
        }
        if raw
            .decision_wait_after_root_received
            .is_some_and(|d| d.is_zero())
        {
            return Err(invalid(
                "decision_wait_after_root_received",
                "must be greater than 0 (leave it out to wait decision_wait)".into(),
            ));
        }
        let file = PolicyFile {
            decision_wait: raw.decision_wait,
            num_traces: raw.num_traces,
            expected_new_traces_per_sec: raw.expected_new_traces_per_sec,
            decision_wait_after_root_received: raw.decision_wait_after_root_received,
            sample_on_first_match: raw.sample_on_first_match,
            decision_cache: raw.decision_cache,
            ignored_options,
            policies,
        };
        if file.policies.is_empty() {
            return Err(invalid("policies", "list at least one policy".into()));
        }
        if file.decision_wait.is_zero() {
            return Err(invalid("decision_wait", "must be greater than 0".into()));
        }
        if file.num_traces == 0 {
            return Err(invalid("num_traces", "must be greater than 0".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in file.policies.iter().enumerate() {
            if !seen.insert(p.name.as_str()) {
                return Err(invalid(
                    &format!("policies[{i}].name"),
                    format!(
                        "policy name {:?} is used twice; names must be unique",
                        p.name
                    ),
                ));
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests;
