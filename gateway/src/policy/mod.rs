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
//! shards evaluate. One policy kind, one file, named after its `type:`, and one line in the
//! table of `policy_kinds!` below.

pub(crate) mod collector;
pub mod kind;
pub mod limiter;
pub mod ottl;
pub mod plan;
pub mod verdict;

use std::fmt::Debug;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::config::{
    collector_text_lenient, locate_sequence_item, parse_plain_yaml, reference_error, system_source,
    ConfigError,
};

pub use kind::{PolicyError, SettingError};
pub use verdict::{field_keys, Policy, Verdict};

use kind::{At, Keys, Kind};

// The blocks of the combining kinds (their `Kind` impls are below the table).

/// YAML block `and:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AndConfig {
    pub(crate) and_sub_policy: Vec<RawPolicy>,
}

/// YAML block `drop:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropConfig {
    pub(crate) drop_sub_policy: Vec<RawPolicy>,
}

/// YAML block `not:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotConfig {
    pub(crate) not_sub_policy: Box<RawPolicy>,
}

/// YAML block `composite:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompositeConfig {
    #[serde(with = "tailgate_core::config::go_int")]
    pub(crate) max_total_spans_per_second: u64,
    #[serde(default, deserialize_with = "tailgate_core::config::comma_list")]
    pub(crate) policy_order: Vec<String>,
    pub(crate) composite_sub_policy: Vec<RawPolicy>,
    #[serde(default)]
    pub(crate) rate_allocation: Vec<RateAllocation>,
}

/// One `rate_allocation` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateAllocation {
    /// Sub-policy name.
    pub policy: String,
    /// Percent of `max_total_spans_per_second`; 0 or less (the Collector's field is an
    /// `int64`, and it loads a negative one) gives an equal split.
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub percent: i64,
}

/// A validated `composite` policy.
#[derive(Debug, Clone)]
pub struct CompositeConfig {
    /// The budget, spans per second.
    pub max_total_spans_per_second: u64,
    /// Accepted, not applied (as in the Collector).
    pub policy_order: Vec<String>,
    /// The sub-policies, in evaluation order.
    pub subs: Vec<PolicyConfig>,
    /// Shares.
    pub rate_allocation: Vec<RateAllocation>,
}

impl CompositeConfig {
    /// Spans per second allocated to each sub-policy, in order, as the Collector computes
    /// them (truncated to whole spans).
    pub fn allocations(&self) -> Vec<u64> {
        let total = self.max_total_spans_per_second as f64;
        let equal = total / self.subs.len().max(1) as f64;
        self.subs
            .iter()
            .map(|s| {
                // The last entry for a name wins, as map assignment does in the Collector.
                match self
                    .rate_allocation
                    .iter()
                    .rev()
                    .find(|r| r.policy == s.name)
                {
                    Some(r) if r.percent > 0 => (r.percent as f64 / 100.0 * total) as u64,
                    // Missing, 0% or less: an equal split, as the Collector since PR #49857.
                    _ => equal as u64,
                }
            })
            .collect()
    }

    /// What the operator should know about this composite (logged at load).
    pub(crate) fn warnings(&self, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (s, a) in self.subs.iter().zip(self.allocations()) {
            if a == 0 {
                out.push(format!(
                    "policy {name:?}: composite sub-policy {:?} has a share of 0 spans per second, so it never keeps a trace",
                    s.name
                ));
            }
        }
        for p in &self.policy_order {
            if !self.subs.iter().any(|s| &s.name == p) {
                out.push(format!(
                    "policy {name:?}: policy_order names {p:?}, which is not a composite_sub_policy"
                ));
            }
        }
        for r in &self.rate_allocation {
            if !self.subs.iter().any(|s| s.name == r.policy) {
                out.push(format!(
                    "policy {name:?}: rate_allocation names {:?}, which is not a composite_sub_policy",
                    r.policy
                ));
            }
        }
        // Shares over the total: each is kept, as in the Collector, so the composite may
        // keep more than max_total_spans_per_second (a blog's config: 145%).
        let shares = self
            .allocations()
            .iter()
            .fold(0u64, |sum, a| sum.saturating_add(*a));
        if shares > self.max_total_spans_per_second {
            out.push(format!(
                "policy {name:?}: the sub-policies' shares add up to {shares} spans per second, over max_total_spans_per_second ({}): each share is kept, as in the Collector, so the composite may keep up to {shares} a second",
                self.max_total_spans_per_second
            ));
        }
        out
    }
}

/// The policy file: a Collector `tail_sampling` block, validated.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// How long after a trace's first span it is decided.
    pub decision_wait: Duration,
    /// Traces kept in memory per gateway before traces are decided early.
    pub num_traces: usize,
    /// Accepted for compatibility.
    pub expected_new_traces_per_sec: u64,
    /// Decide a trace this long after its root span arrives, if that is earlier than
    /// `decision_wait`.
    pub decision_wait_after_root_received: Option<Duration>,
    /// Stop evaluating at the first policy that samples (the Collector's option).
    pub sample_on_first_match: bool,
    /// Drop a trace unevaluated once its spans exceed this many encoded bytes.
    pub maximum_trace_size_bytes: Option<u64>,
    /// At shutdown, drop pending traces instead of deciding them.
    pub drop_pending_traces_on_shutdown: bool,
    /// `sampling_strategy: span-ingest`.
    pub span_ingest: bool,
    /// Sizes of the decision cache for late spans; `None` keeps the gateway config's.
    pub decision_cache: Option<DecisionCacheConfig>,
    /// How kept spans record their sampling probability (Tailgate).
    pub adjusted_count: AdjustedCountConfig,
    /// Warnings on the file, with why; log them: Collector options accepted but not
    /// applied, processors around `tail_sampling` not run, values that never match.
    pub ignored_options: Vec<String>,
    /// What was read, for one info line each (the processor taken from a whole Collector
    /// config, the sections ignored).
    pub notes: Vec<String>,
    /// The policies, evaluated in order.
    pub policies: Vec<PolicyConfig>,
}

/// `adjusted_count` (Tailgate): how each kept span says with what probability it was kept,
/// so that backends can extrapolate counts and rates.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdjustedCountConfig {
    /// Write the OpenTelemetry consistent-probability threshold `ot=th:…` into each kept
    /// span's `tracestate`. Default true.
    #[serde(default = "yes")]
    pub tracestate: bool,
    /// Add an attribute holding the adjusted count (1 / probability). Default true.
    #[serde(default = "yes")]
    pub attribute: bool,
    /// The attribute's name. Default `sampling.adjusted_count`.
    #[serde(default = "default_adjusted_count_attribute")]
    pub attribute_name: String,
}

fn yes() -> bool {
    true
}

fn default_adjusted_count_attribute() -> String {
    "sampling.adjusted_count".into()
}

impl Default for AdjustedCountConfig {
    fn default() -> Self {
        AdjustedCountConfig {
            tracestate: true,
            attribute: true,
            attribute_name: default_adjusted_count_attribute(),
        }
    }
}

/// `decision_cache` (the Collector's option).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DecisionCacheConfig {
    /// Kept trace ids remembered.
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub sampled_cache_size: usize,
    /// Dropped trace ids remembered.
    #[serde(default, with = "tailgate_core::config::go_int")]
    pub non_sampled_cache_size: usize,
}

/// The policy file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicyFile {
    /// How long after a trace's first span it is decided. Default 30s, as the Collector.
    #[serde(
        default = "default_decision_wait",
        with = "tailgate_core::config::go_duration"
    )]
    decision_wait: Duration,
    /// Traces kept in memory per gateway; past it traces are decided early, those with
    /// their root span first (the Collector drops the oldest instead). Default 50000.
    #[serde(default = "default_num_traces", with = "tailgate_core::config::go_int")]
    num_traces: usize,
    /// Accepted for compatibility; Tailgate sizes its tables as they fill.
    #[serde(default, with = "tailgate_core::config::go_int")]
    expected_new_traces_per_sec: u64,
    #[serde(default, with = "tailgate_core::config::go_duration::option")]
    decision_wait_after_root_received: Option<Duration>,
    #[serde(default)]
    sample_on_first_match: bool,
    #[serde(default)]
    decision_cache: Option<DecisionCacheConfig>,
    #[serde(default)]
    adjusted_count: AdjustedCountConfig,
    #[serde(default)]
    drop_pending_traces_on_shutdown: Option<bool>,
    #[serde(default)]
    block_on_overflow: Option<bool>,
    #[serde(default, with = "tailgate_core::config::go_int::option")]
    maximum_trace_size_bytes: Option<u64>,
    /// `trace-complete` (default) or `span-ingest`.
    #[serde(default)]
    sampling_strategy: Option<String>,
    /// The Collector's in-process sharding; Tailgate shards by `buffer.shards`.
    #[serde(default)]
    num_shards: Option<u32>,
    /// A Collector storage extension; Tailgate buffers in memory.
    #[serde(default)]
    tail_storage: Option<serde::de::IgnoredAny>,
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

/// The policy kinds: one line each, `type name => PolicyKind variant(settings block)`. The
/// name is also the kind's file (`policy/NAME.rs`) and its YAML block key. The block type
/// implements [`kind::Kind`]; everything else about a kind (the `type:` names, the block
/// fields of an entry, [`PolicyKind`], validation and compile dispatch) is made from this
/// table. Adding a kind is its file and one line here.
macro_rules! policy_kinds {
    ($($name:ident => $variant:ident($block:ty),)*) => {
        $(pub mod $name;)*

        /// The supported policy kinds with their validated settings.
        #[derive(Debug, Clone)]
        pub enum PolicyKind {
            $(
                #[doc = concat!("`", stringify!($name), "`")]
                $variant(<$block as Kind>::Valid),
            )*
        }

        /// A policy entry as written: `name`, `type` and one block per type.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(crate) struct RawPolicy {
            name: Option<String>,
            #[serde(rename = "type")]
            kind: Option<String>,
            $($name: Option<$block>,)*
        }

        /// The `type:` names, in table order.
        const KIND_NAMES: &[&str] = &[$(stringify!($name)),*];

        impl RawPolicy {
            /// The blocks present in the entry.
            fn blocks(&self) -> impl Iterator<Item = &'static str> {
                [$((stringify!($name), self.$name.is_some())),*]
                    .into_iter()
                    .filter_map(|(name, present)| present.then_some(name))
            }

            /// Validates the block of type `kind`; `None` for an unknown type.
            fn validate_kind(
                &mut self,
                policy: &str,
                kind: &str,
            ) -> Option<Result<PolicyKind, PolicyError>> {
                Some(match kind {
                    $(stringify!($name) => validate_block(
                        policy,
                        stringify!($name),
                        self.$name.take(),
                    )
                    .map(PolicyKind::$variant),)*
                    _ => return None,
                })
            }
        }

        impl PolicyKind {
            /// The `type:` name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(PolicyKind::$variant(_) => stringify!($name),)*
                }
            }

            /// Whether the policy keeps state across traces (see [`kind::Kind::is_stateful`]).
            pub fn is_stateful(&self) -> bool {
                match self {
                    $(PolicyKind::$variant(v) => <$block as Kind>::is_stateful(v),)*
                }
            }

            fn compile(&self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
                match self {
                    $(PolicyKind::$variant(v) => <$block as Kind>::compile(v, keys),)*
                }
            }
        }
    };
}

policy_kinds! {
    always_sample => AlwaysSample(always_sample::AlwaysSampleConfig),
    latency => Latency(latency::LatencyConfig),
    probabilistic => Probabilistic(probabilistic::ProbabilisticConfig),
    status_code => StatusCode(status_code::StatusCodeConfig),
    span_count => SpanCount(span_count::SpanCountConfig),
    string_attribute => StringAttribute(string_attribute::StringAttributeConfig),
    numeric_attribute => NumericAttribute(numeric_attribute::NumericAttributeConfig),
    boolean_attribute => BooleanAttribute(boolean_attribute::BooleanAttributeConfig),
    trace_state => TraceState(trace_state::TraceStateConfig),
    trace_flags => TraceFlags(trace_flags::TraceFlagsConfig),
    rate_limiting => RateLimiting(rate_limiting::RateLimitingConfig),
    bytes_limiting => BytesLimiting(bytes_limiting::BytesLimitingConfig),
    ottl_condition => OttlCondition(ottl_condition::OttlConditionConfig),
    and => And(AndConfig),
    drop => Drop(DropConfig),
    not => Not(NotConfig),
    composite => Composite(RawCompositeConfig),
    adaptive_rate => AdaptiveRate(adaptive_rate::AdaptiveRateConfig),
}

/// A block present or defaulted, validated.
fn validate_block<K: Kind + Default>(
    policy: &str,
    block: &'static str,
    written: Option<K>,
) -> Result<K::Valid, PolicyError> {
    let written = match written {
        Some(w) => w,
        None if K::NEEDS_BLOCK => {
            return Err(PolicyError::MissingBlock {
                policy: policy.to_owned(),
                kind: block,
            })
        }
        None => K::default(),
    };
    written.validated(&At { policy, block })
}

/// One validated policy entry.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The policy's name, used in metrics and explanations.
    pub name: String,
    /// The kind and its settings.
    pub kind: PolicyKind,
    /// Blocks for other types in the entry, ignored as the Collector ignores them.
    pub unused_blocks: Vec<&'static str>,
}

/// The supported `type:` names, for messages.
fn supported() -> String {
    KIND_NAMES.join(", ")
}

impl TryFrom<RawPolicy> for PolicyConfig {
    type Error = PolicyError;

    /// Validates one entry; the error names the policy and the key.
    fn try_from(mut raw: RawPolicy) -> Result<Self, PolicyError> {
        let name = match raw.name.take() {
            // Only an empty name is refused, as in the Collector (`cfg.Name == ""`).
            Some(n) if !n.is_empty() => n,
            _ => return Err(PolicyError::MissingName),
        };
        let Some(written) = raw.kind.take() else {
            return Err(PolicyError::MissingType {
                policy: name,
                supported: supported(),
            });
        };
        let blocks: Vec<&'static str> = raw.blocks().collect();
        let Some(kind) = raw.validate_kind(&name, &written) else {
            return Err(PolicyError::UnknownType {
                policy: name,
                kind: written,
                supported: supported(),
            });
        };
        let kind = kind?;
        // A block for another type: the Collector decodes every block into one struct and
        // reads only its type's, so such a file loads there; here too, with a warning (it
        // is usually a copy-paste mistake).
        let unused_blocks = blocks.into_iter().filter(|b| *b != kind.name()).collect();
        Ok(PolicyConfig {
            name,
            kind,
            unused_blocks,
        })
    }
}

// The combining kinds hold policies of this file's own types, so their blocks live here;
// their compiled policies (and.rs, drop.rs, not.rs, composite.rs) import only `verdict`.

impl Kind for AndConfig {
    type Valid = Vec<PolicyConfig>;

    fn validated(self, at: &At<'_>) -> Result<Self::Valid, PolicyError> {
        sub_policies(
            at.policy,
            "and.and_sub_policy",
            self.and_sub_policy,
            Holder::And,
        )
    }

    fn is_stateful(subs: &Self::Valid) -> bool {
        subs.iter().any(PolicyConfig::is_stateful)
    }

    fn compile(subs: &Self::Valid, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(and::AndPolicy::new(
            subs.iter().map(|s| s.kind.compile(keys)).collect(),
        ))
    }
}

impl Kind for DropConfig {
    type Valid = Vec<PolicyConfig>;

    fn validated(self, at: &At<'_>) -> Result<Self::Valid, PolicyError> {
        sub_policies(
            at.policy,
            "drop.drop_sub_policy",
            self.drop_sub_policy,
            Holder::Drop,
        )
    }

    fn is_stateful(subs: &Self::Valid) -> bool {
        subs.iter().any(PolicyConfig::is_stateful)
    }

    fn compile(subs: &Self::Valid, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(drop::DropPolicy::new(
            subs.iter().map(|s| s.kind.compile(keys)).collect(),
        ))
    }
}

impl Kind for NotConfig {
    type Valid = Box<PolicyConfig>;

    fn validated(self, at: &At<'_>) -> Result<Self::Valid, PolicyError> {
        let mut subs = sub_policies(
            at.policy,
            "not.not_sub_policy",
            vec![*self.not_sub_policy],
            Holder::Not,
        )?;
        Ok(Box::new(subs.remove(0)))
    }

    fn is_stateful(sub: &Self::Valid) -> bool {
        sub.is_stateful()
    }

    fn compile(sub: &Self::Valid, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(not::NotPolicy::new(sub.kind.compile(keys)))
    }
}

impl Kind for RawCompositeConfig {
    type Valid = CompositeConfig;

    /// Its sub-policies may be plain kinds or `and`, as in the Collector, or (Tailgate
    /// only) `not`; composites and `drop` do not nest.
    fn validated(self, at: &At<'_>) -> Result<CompositeConfig, PolicyError> {
        if self.max_total_spans_per_second == 0 {
            return Err(at.setting(SettingError::range(
                "max_total_spans_per_second",
                "greater than 0",
                0,
            )));
        }
        const KEY: &str = "composite.composite_sub_policy";
        if self.composite_sub_policy.is_empty() {
            return Err(PolicyError::NoSubPolicies {
                policy: at.policy.to_owned(),
                key: KEY,
            });
        }
        let mut subs = Vec::with_capacity(self.composite_sub_policy.len());
        for (index, mut sub) in self.composite_sub_policy.into_iter().enumerate() {
            name_by_place(&mut sub, KEY, index);
            let sub = PolicyConfig::try_from(sub).map_err(|e| PolicyError::InSubPolicy {
                policy: at.policy.to_owned(),
                key: KEY,
                index,
                error: Box::new(e),
            })?;
            if matches!(sub.kind, PolicyKind::Composite(_) | PolicyKind::Drop(_)) {
                return Err(PolicyError::Nested {
                    policy: at.policy.to_owned(),
                    key: KEY,
                    index,
                    kind: sub.kind.name(),
                    rule: "a composite sub-policy is a plain kind, `and` or `not`",
                });
            }
            subs.push(sub);
        }
        Ok(CompositeConfig {
            max_total_spans_per_second: self.max_total_spans_per_second,
            policy_order: self.policy_order,
            subs,
            rate_allocation: self.rate_allocation,
        })
    }

    /// As the Collector's `Composite.IsStateful` (contrib v0.161): stateful only through a
    /// sub-policy; its own per-second budget does not count, so a composite of stateless
    /// sub-policies loads under span-ingest there, and here.
    fn is_stateful(c: &CompositeConfig) -> bool {
        c.subs.iter().any(PolicyConfig::is_stateful)
    }

    fn compile(c: &CompositeConfig, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        let subs = c
            .subs
            .iter()
            .zip(c.allocations())
            .map(|(s, share)| (s.name.clone(), s.kind.compile(keys), share))
            .collect();
        Box::new(composite::CompositePolicy::new(
            c.max_total_spans_per_second,
            subs,
        ))
    }
}

/// Names a sub-policy without a `name` (or with an empty one) by its place, `key[index]`:
/// the Collector requires names of top-level policies only, so its files may leave them
/// out below (a `composite` gives it the share of a sub-policy `rate_allocation` does not name).
fn name_by_place(raw: &mut RawPolicy, key: &str, index: usize) {
    if raw.name.as_deref().is_none_or(str::is_empty) {
        raw.name = Some(format!("{key}[{index}]"));
    }
}

/// The combining kind whose sub-policies [`sub_policies`] validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    And,
    Drop,
    Not,
}

/// Validates the sub-policies of `and`, `drop` or `not`. As in the Collector they are
/// plain kinds: `and`, `drop` and `composite` do not nest there, nor `not` in `not`.
/// Tailgate also takes a `not` in `and` and `drop`, and an `and` in `not`, which the
/// Collector refuses
/// (docs/policies.md, Departures: a superset, so its files still load), and its own
/// `adaptive_rate` last in an `and`, where it sees only the traces the sub-policies before
/// it keep (Refinery's rule whose matches go to a dynamic sampler).
fn sub_policies(
    policy: &str,
    key: &'static str,
    raws: Vec<RawPolicy>,
    holder: Holder,
) -> Result<Vec<PolicyConfig>, PolicyError> {
    if raws.is_empty() {
        return Err(PolicyError::NoSubPolicies {
            policy: policy.to_owned(),
            key,
        });
    }
    let last = raws.len() - 1;
    let mut out = Vec::with_capacity(raws.len());
    for (index, mut raw) in raws.into_iter().enumerate() {
        name_by_place(&mut raw, key, index);
        let sub = PolicyConfig::try_from(raw).map_err(|e| PolicyError::InSubPolicy {
            policy: policy.to_owned(),
            key,
            index,
            error: Box::new(e),
        })?;
        let nests = match sub.kind {
            PolicyKind::Not(_) => holder == Holder::Not,
            // Last only: listed first it would count, and spend its budget on, traces the
            // conditions after it refuse; so at most one (two would hash alike).
            PolicyKind::AdaptiveRate(_) => holder != Holder::And || index != last,
            // A `not` of an `and` (Tailgate only): "not all of these", what Refinery's
            // first-match order needs of a rule of several conditions. Bounded: that
            // `and` holds plain kinds and `not`s of plain kinds, and no `adaptive_rate`.
            PolicyKind::And(ref subs) if holder == Holder::Not => subs
                .iter()
                .any(|s| matches!(s.kind, PolicyKind::AdaptiveRate(_))),
            PolicyKind::And(_) | PolicyKind::Drop(_) | PolicyKind::Composite(_) => true,
            _ => false,
        };
        if nests {
            return Err(PolicyError::Nested {
                policy: policy.to_owned(),
                key,
                index,
                kind: sub.kind.name(),
                rule: match holder {
                    Holder::And => "sub-policies must be plain kinds or `not`, and an `adaptive_rate` only last",
                    Holder::Drop => "sub-policies must be plain kinds or `not`",
                    Holder::Not => "the sub-policy must be a plain kind or an `and` without `adaptive_rate`",
                },
            });
        }
        out.push(sub);
    }
    Ok(out)
}

// === impl PolicyConfig ===

impl PolicyConfig {
    /// Whether the policy keeps state across traces (rate budgets, adaptive rates), which
    /// `sampling_strategy: span-ingest` refuses, as the Collector's `IsStateful`.
    pub fn is_stateful(&self) -> bool {
        self.kind.is_stateful()
    }

    /// Compiles the entry into an evaluator, registering the attribute keys it reads in
    /// `keys` (the plan's list, whose indices the shards' summaries use).
    pub fn compile(&self, keys: &mut Vec<String>) -> Box<dyn Policy> {
        self.kind.compile(&mut Keys(keys))
    }
}

/// A parser error inside `policies[i]`, with the policy's `name:` and its line, and a
/// plainer word for a block that is not a policy type (`unknown field` from the parser).
/// The text of `s` between the first `open` and the next `close`.
fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let len = s[start..].find(close)?;
    Some(&s[start..start + len])
}

/// What [`untyped_strings`] finds: the first text setting holding a YAML boolean or number
/// (its key path from the file's top, and the message), and the warnings for
/// `string_attribute` values that do.
#[derive(Debug, Default)]
struct Untyped {
    error: Option<(String, String)>,
    warnings: Vec<String>,
}

/// Text settings holding a YAML boolean or number in `read` (the settings as read:
/// references substituted, merge keys applied), under `at`, the chosen settings: a
/// policy's `name`, an attribute policy's `key`, `hash_salt`, `trace_state` values, OTTL
/// conditions, `policy_order` and a rate allocation's `policy` are an error (the
/// Collector's decoder turns no bool or number into a string and refuses the file; serde's
/// YAML would read its text, so that `span: [true]`, a condition of `true`, kept every
/// trace). `string_attribute` values (null too) draw a warning instead, a documented
/// departure: Tailgate compares their text with string attributes, so a boolean or int
/// attribute never matches them. A value that a `${…}` reference gave as a whole (in
/// `written`, the file's text as written, the same place holds the reference) is its text
/// there, as in the Collector, and passes; one inside a list or mapping a reference gave
/// (`span: ${env:CONDS}` holding `[true]`), or that a merge key brought, is typed there.
fn untyped_strings(written: &str, read: &serde_yaml_ng::Value, at: &[String]) -> Untyped {
    use serde_yaml_ng::Value;
    /// A place in both trees: as read, and as written when the file writes it there.
    #[derive(Clone, Copy)]
    struct Node<'a> {
        read: &'a Value,
        written: Option<&'a Value>,
    }
    impl<'a> Node<'a> {
        fn get(self, key: &str) -> Option<Node<'a>> {
            Some(Node {
                read: self.read.get(key)?,
                written: self.written.and_then(|w| w.get(key)),
            })
        }
        fn items(self) -> impl Iterator<Item = Node<'a>> {
            let written = self.written.and_then(Value::as_sequence);
            self.read
                .as_sequence()
                .into_iter()
                .flatten()
                .enumerate()
                .map(move |(i, read)| Node {
                    read,
                    written: written.and_then(|w| w.get(i)),
                })
        }
        /// Whether a reference written here gave the value as a whole.
        fn given_by_reference(self) -> bool {
            self.written
                .and_then(Value::as_str)
                .is_some_and(|w| w.contains("${"))
        }
        /// The message for a boolean or number where text goes, unless a reference gave it.
        fn typed(self) -> Option<String> {
            let kind = match self.read {
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                _ => return None,
            };
            (!self.given_by_reference()).then(|| {
                format!(
                    "expected text, found {kind}: the Collector refuses a value that is not a string here; quote the value as written if you meant it as text"
                )
            })
        }
    }
    /// Checks `v`'s string `keys`, and the items of its string-list `lists`.
    fn fields(v: Node<'_>, path: &str, keys: &[&str], lists: &[&str]) -> Option<(String, String)> {
        for key in keys {
            if let Some(m) = v.get(key).and_then(Node::typed) {
                return Some((format!("{path}.{key}"), m));
            }
        }
        for list in lists {
            let items = v.get(list).into_iter().flat_map(Node::items);
            for (i, item) in items.enumerate() {
                if let Some(m) = item.typed() {
                    return Some((format!("{path}.{list}[{i}]"), m));
                }
            }
        }
        None
    }
    /// The warning for each `string_attribute` value that is a boolean, a number or null.
    fn string_attribute_values(block: Node<'_>, warnings: &mut Vec<String>) {
        let key = block.read.get("key").and_then(Value::as_str).unwrap_or("?");
        for item in block.get("values").into_iter().flat_map(Node::items) {
            let kind = match item.read {
                Value::Bool(_) => "the boolean",
                Value::Number(_) => "the number",
                Value::Null => "null,",
                _ => continue,
            };
            if item.given_by_reference() {
                continue;
            }
            let text = serde_yaml_ng::to_string(item.read).unwrap_or_default();
            warnings.push(format!(
                "string_attribute on {key:?} lists {kind} {} among its values: it is compared as text with string attributes, so a boolean or number attribute never matches it (use boolean_attribute or numeric_attribute, or quote it); the Collector refuses such a file",
                text.trim()
            ));
        }
    }
    fn policy(p: Node<'_>, path: &str, warnings: &mut Vec<String>) -> Option<(String, String)> {
        if let Some(block) = p.get("string_attribute") {
            string_attribute_values(block, warnings);
        }
        if let Some(m) = p.get("name").and_then(Node::typed) {
            return Some((format!("{path}.name"), m));
        }
        let checks: [(&str, &[&str], &[&str]); 7] = [
            ("string_attribute", &["key"], &[]),
            ("numeric_attribute", &["key"], &[]),
            ("boolean_attribute", &["key"], &[]),
            ("trace_state", &["key"], &["values"]),
            ("probabilistic", &["hash_salt"], &[]),
            ("ottl_condition", &[], &["span", "spanevent"]),
            ("composite", &[], &["policy_order"]),
        ];
        for (name, keys, lists) in checks {
            if let Some(block) = p.get(name) {
                if let Some(found) = fields(block, &format!("{path}.{name}"), keys, lists) {
                    return Some(found);
                }
            }
        }
        let allocations = p.get("composite").and_then(|b| b.get("rate_allocation"));
        for (i, a) in allocations.into_iter().flat_map(Node::items).enumerate() {
            let at = format!("{path}.composite.rate_allocation[{i}]");
            if let Some(found) = fields(a, &at, &["policy"], &[]) {
                return Some(found);
            }
        }
        // Sub-policies: lists under and, drop and composite; one mapping under not.
        for (name, list) in [
            ("and", "and_sub_policy"),
            ("drop", "drop_sub_policy"),
            ("composite", "composite_sub_policy"),
        ] {
            let subs = p.get(name).and_then(|b| b.get(list));
            for (i, sub) in subs.into_iter().flat_map(Node::items).enumerate() {
                if let Some(found) = policy(sub, &format!("{path}.{name}.{list}[{i}]"), warnings) {
                    return Some(found);
                }
            }
        }
        let not = p.get("not").and_then(|b| b.get("not_sub_policy"));
        not.and_then(|sub| policy(sub, &format!("{path}.not.not_sub_policy"), warnings))
    }
    // The file as written, its first document (the one read). References in a flow
    // collection (`{salt: ${env:S}}`) can break its YAML as written: then nothing tells a
    // value written from one a reference gave, and nothing is refused.
    let Some(written_top) = serde_yaml_ng::Deserializer::from_str(written)
        .next()
        .and_then(|d| <Value as serde::Deserialize>::deserialize(d).ok())
    else {
        return Untyped::default();
    };
    let top = Node {
        read,
        written: Some(&written_top),
    };
    let mut out = Untyped::default();
    let policies = at
        .iter()
        .try_fold(top, |v, key| v.get(key))
        .and_then(|settings| settings.get("policies"));
    let prefix: String = at.iter().map(|k| format!("{k}.")).collect();
    out.error = policies
        .into_iter()
        .flat_map(Node::items)
        .enumerate()
        .find_map(|(i, p)| policy(p, &format!("{prefix}policies[{i}]"), &mut out.warnings));
    out
}

fn name_policy_in_error(
    e: ConfigError,
    written: Option<&serde_yaml_ng::Value>,
    file_text: &str,
) -> ConfigError {
    let ConfigError::Parse { path, error } = e else {
        return e;
    };
    // Without core's suggestion: this reader words its own, with the policy's context.
    let text = tailgate_core::config::readable_without_suggestion(&error.to_string());
    let index = text.find("policies[").and_then(|at| {
        let rest = &text[at + 9..];
        rest[..rest.find(']')?].parse::<usize>().ok()
    });
    // A name may read as a number (`name: "${env:N}"` with N=7).
    let name = index.and_then(|i| match written?.get(i)?.get("name")? {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    });
    let (Some(i), Some(line)) = (index, error.location().map(|l| l.line())) else {
        return outside_policies(path, error, file_text);
    };
    // The line is the error's own (named before the key): serde's "at line N column M"
    // after the message says it again.
    let mut message = tailgate_core::config::without_position(&text).to_owned();
    // Where an unknown key stands (`policies[6].drop.drop_sub_policy[0].string_attribute`),
    // named as the key below once the message is reworded.
    let unknown_at = message
        .split_once(": unknown field")
        .map(|(at, _)| at.to_owned());
    if let Some(field) = between(&message, "unknown field `", "`") {
        // The keys a policy takes are listed after "expected one of"; a near miss is
        // most likely a typo of one (`status_codes:` for `status_code:`).
        let expected = message
            .split_once("expected one of")
            .map_or("", |(_, list)| list);
        let near = tailgate_core::config::near_key(field, expected.split('`').skip(1).step_by(2));
        // Where the key stands: beside `name:` and `type:`, or inside a settings block
        // (`policies[0].ottl_condition: unknown field …`).
        let block = message
            .split_once(": unknown field")
            .and_then(|(path, _)| path.rsplit_once("].").map(|(_, b)| b.to_owned()))
            // `and.and_sub_policy[0]` is an entry (a sub-policy), not a settings block.
            .filter(|b| !b.ends_with(']'));
        // A top-level policy whose type names another block than the one at fault (the
        // Collector README's `type: boolean_attribute` over a `string_attribute:` block):
        // the fix is more likely the type or the block's name than the key.
        let policy_type =
            index.and_then(|i| written?.get(i)?.get("type")?.as_str().map(str::to_owned));
        let mismatch = match (&block, &policy_type) {
            (Some(b), Some(t))
                if b != t && message.contains(&format!("policies[{i}].{b}: unknown field")) =>
            {
                format!(
                    " (this policy's type is {t}, whose settings go in a {t}: block; the {b}: block beside it must hold {b}'s keys, or be renamed)"
                )
            }
            _ => String::new(),
        };
        // A plain value beside `name:` and `type:` (`decision: drop`, a trial) is no
        // settings block.
        let plain_value = written
            .and_then(|w| w.get(i)?.get(field))
            .is_some_and(|v| !v.is_mapping());
        // serde's own sentence says "unknown field" again: only its list of keys is kept.
        let keys = match message.split_once("expected one of") {
            Some((_, list)) => format!("expected one of{list}"),
            // One or two keys: "expected `and_sub_policy`", "expected `a` or `b`".
            None => match message.split_once("`, expected ") {
                Some((_, list)) => format!("expected {list}"),
                None => message.clone(),
            },
        };
        message = match (near, block) {
            (Some(k), _) => format!("unknown key `{field}` (did you mean `{k}`?); {keys}"),
            (None, Some(block)) => format!("unknown key `{field}` in `{block}`; {keys}"),
            (None, None) if plain_value => format!(
                "unknown key `{field}` beside name and type (a policy holds its name, its type and the settings block its type names); {keys}"
            ),
            (None, None) => format!("unknown policy type or settings block `{field}`; {keys}"),
        };
        message.push_str(&mismatch);
    }
    // The key at fault is named once, whole (it was `policies[0]: policy "x":
    // policies[0].latency.threshold_ms: …`).
    let mut key = format!("policies[{i}]");
    let within = |at: &str| {
        !at.contains([' ', '`'])
            && at
                .find(&format!("policies[{i}]"))
                .is_some_and(|p| p == 0 || at[..p].ends_with('.'))
    };
    if let Some(at) = unknown_at.filter(|at| within(at)) {
        key = at;
    } else if let Some((at, rest)) = message.split_once(": ") {
        // From a Collector config the path starts `processors.tail_sampling.`.
        if within(at) {
            key = at.to_owned();
            message = rest.to_owned();
        }
    }
    // A key left out is named at the block that lacks it (serde's position is the
    // block's first child: a `composite:` without its sub-policies was named a line
    // below).
    let mut line = line;
    if let Some(field) = between(&message, "missing field `", "`").map(str::to_owned) {
        line = tailgate_core::config::locate_key(file_text, &key).unwrap_or(line);
        message = tailgate_core::config::required_here(&field);
    }
    if let Some(name) = name {
        message = format!("policy {name:?}: {message}");
    }
    ConfigError::InvalidAt {
        path,
        line,
        key,
        message,
    }
}

/// An error outside the policies (a processor's own key: `processors.tail_sampling:
/// unknown field `decision_wiat``) at its line and key, as every other error is (it was
/// the parser's sentence, "at line 11 column 5" after it, with no `FILE:LINE:`).
fn outside_policies(
    path: std::path::PathBuf,
    error: serde_yaml_ng::Error,
    text: &str,
) -> ConfigError {
    // A key left out: named at the block that lacks it, as in any file.
    if let Some(located) = tailgate_core::config::missing_key_error(&path, &error, text) {
        return located;
    }
    let full = error.to_string();
    let message = tailgate_core::config::without_position(&full);
    let (Some(line), Some((at, rest))) =
        (error.location().map(|l| l.line()), message.split_once(": "))
    else {
        return ConfigError::Parse { path, error };
    };
    if at.is_empty() || at.contains([' ', '`']) {
        return ConfigError::Parse { path, error };
    }
    let key = match between(rest, "unknown field `", "`") {
        Some(field) => format!("{at}.{field}"),
        None => at.to_owned(),
    };
    ConfigError::InvalidAt {
        path,
        line,
        key,
        message: tailgate_core::config::readable(rest),
    }
}

/// The 1-based line of the key path `key` (`string_attribute.values`,
/// `and.and_sub_policy[1].latency`) within the list entry whose `- ` is on line `item` of
/// `text`: the line of its deepest part written on a line of its own
/// ([`tailgate_core::config::locate_key`]); `None` when not even its first part is (a
/// flow-style entry).
fn locate_in_entry(text: &str, item: usize, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let first = *lines.get(item.checked_sub(1)?)?;
    let dash = first.len() - first.trim_start().len();
    // The entry alone, its `- ` read as indent so its first key lines up with the rest.
    let mut entry = vec![first.replacen('-', " ", 1)];
    entry.extend(
        lines[item..]
            .iter()
            .take_while(|l| {
                let t = l.trim_start();
                t.is_empty() || t.starts_with('#') || l.len() - t.len() > dash
            })
            .map(|l| (*l).to_owned()),
    );
    tailgate_core::config::locate_key(&entry.join("\n"), key).map(|n| n + item - 1)
}

/// [`locate_in_entry`] for an entry written as a flow mapping (`{ name: a, type: latency,
/// latency: {threshold_ms: 5} }`, the Collector README's style, over several lines): the
/// 1-based line of the deepest part of the key path `key` found at its depth, reading
/// from the entry's `name: NAME` on line `item` (or that line's start) to the end of the
/// entry. A part with a position (`and_sub_policy[1]`) ends the search at its own line.
fn locate_in_flow(text: &str, item: usize, name: Option<&str>, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let first = *lines.get(item.checked_sub(1)?)?;
    // Start at this entry's `name:` (a line may hold several entries), inside its
    // mapping; without one on the line, at the line's start, outside it (`- {` first).
    let (start, mut depth) = match name.and_then(|n| name_at(first, n)) {
        Some(at) => (at, 1usize),
        None => (0, 0usize),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let (mut next, mut found) = (0usize, None);
    // A key follows `{` or `,`.
    let mut after_separator = true;
    for (n, line) in lines.iter().enumerate().skip(item - 1) {
        let text = if n + 1 == item { &line[start..] } else { line };
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let c = bytes[i];
            match c {
                b'#' if i == 0 || bytes[i - 1].is_ascii_whitespace() => break,
                b' ' | b'\t' | b':' => {}
                b'{' | b'[' => {
                    depth += 1;
                    after_separator = c == b'{';
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return found;
                    }
                    after_separator = false;
                }
                b',' => after_separator = true,
                b'"' | b'\'' => {
                    // A quoted scalar, skipped whole (a key when it ends in `:`).
                    let close = text[i + 1..]
                        .find(c as char)
                        .map_or(bytes.len(), |e| i + 1 + e);
                    i = close;
                    after_separator = false;
                }
                _ => {
                    let end = text[i..]
                        .find([':', ',', '{', '}', '[', ']'])
                        .map_or(bytes.len(), |e| i + e);
                    let word = text[i..end].trim_end();
                    let is_key = after_separator && bytes.get(end) == Some(&b':');
                    if let Some(part) = parts.get(next) {
                        let (part_name, indexed) = match part.split_once('[') {
                            Some((p, _)) => (p, true),
                            None => (*part, false),
                        };
                        if is_key && depth == next + 1 && word == part_name {
                            found = Some(n + 1);
                            next += 1;
                            if indexed {
                                return found;
                            }
                        }
                    }
                    after_separator = false;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        // Done, or no flow mapping opened on the entry's line (a block entry).
        if next == parts.len() || depth == 0 {
            return found;
        }
    }
    found
}

/// The 1-based line of a flow-style entry `name: NAME` (quoted or not) in `text`.
fn locate_name(text: &str, name: &str) -> Option<usize> {
    text.lines()
        .position(|l| name_at(l, name).is_some())
        .map(|n| n + 1)
}

/// Where on `line` an entry writes `name: NAME` (quoted or not): the first of its
/// `name:` keys (a list written on one line holds them all) naming `name`.
fn name_at(line: &str, name: &str) -> Option<usize> {
    line.match_indices("name:").map(|(at, _)| at).find(|&at| {
        // `name:` as a key, not the end of `policy_name:` or `key_name:`.
        if line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            return false;
        }
        let v = line[at + 5..].trim_start().trim_start_matches(['"', '\'']);
        v.strip_prefix(name)
            .is_some_and(|r| r.is_empty() || r.starts_with([',', '}', '"', '\'', ' ']))
    })
}

// === impl PolicyFile ===

/// What [`PolicyFile::read_raw`] read: the settings as written, the text of the block
/// they came from and its first line in the file, notes on what was read and warnings
/// about what was not.
struct ReadRaw {
    raw: RawPolicyFile,
    block: String,
    first_line: usize,
    notes: Vec<String>,
    warnings: Vec<String>,
    /// Where the settings sit in the document: `[]` (the body), `[tail_sampling]`, or
    /// `[processors, tail_sampling/NAME]` in a whole Collector config.
    at: Vec<String>,
    /// The document as read: references substituted, merge keys applied.
    top: serde_yaml_ng::Value,
}

impl PolicyFile {
    /// Reads a policy file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_processor(path, None)
    }

    /// Reads a policy file; in a whole Collector config, takes the `tail_sampling` processor
    /// named `processor` (`NAME` or `tail_sampling/NAME`).
    pub fn load_processor(path: &Path, processor: Option<&str>) -> Result<Self, ConfigError> {
        let text = tailgate_core::config::read_text(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse_processor(path, &text, processor)
    }

    /// Parses policy-file text; `path` is used in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        Self::parse_processor(path, text, None)
    }

    /// Parses policy-file text: the body of a `tail_sampling:` block, the block itself, or
    /// a whole Collector config (see [`PolicyFile::load_processor`]). `${env:…}` references
    /// and `100_000`-style numbers are read as the Collector reads them.
    pub fn parse_processor(
        path: &Path,
        text: &str,
        processor: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let ReadRaw {
            mut raw,
            block,
            first_line,
            notes,
            warnings,
            at,
            top,
        } = Self::read_raw(path, text, processor)?;
        let untyped = untyped_strings(text, &top, &at);
        if let Some((key, message)) = untyped.error {
            return Err(tailgate_core::config::invalid_at(path, text, key, message));
        }
        let entries = std::mem::take(&mut raw.policies);
        let policies = Self::validate_entries(path, &block, first_line, entries)?;
        let placed = |e| placed(e, text, &at);
        let (mut ignored_options, span_ingest) =
            Self::options(path, &raw, &policies).map_err(placed)?;
        ignored_options.extend(warnings);
        ignored_options.extend(untyped.warnings);
        let file = PolicyFile {
            notes,
            decision_wait: raw.decision_wait,
            num_traces: raw.num_traces,
            expected_new_traces_per_sec: raw.expected_new_traces_per_sec,
            // 0 is the Collector's default: no early decision (it checks `> 0`).
            decision_wait_after_root_received: raw
                .decision_wait_after_root_received
                .filter(|d| !d.is_zero()),
            sample_on_first_match: raw.sample_on_first_match,
            maximum_trace_size_bytes: raw.maximum_trace_size_bytes.filter(|b| *b > 0),
            drop_pending_traces_on_shutdown: raw.drop_pending_traces_on_shutdown.unwrap_or(false),
            span_ingest,
            decision_cache: raw.decision_cache,
            adjusted_count: raw.adjusted_count,
            ignored_options,
            policies,
        };
        file.check(path).map_err(placed)?;
        Ok(file)
    }

    /// The file's `tail_sampling` settings as written, with the text of the block they
    /// came from, the block's first line in the file, notes on what was read and warnings
    /// about what was not.
    fn read_raw(path: &Path, text: &str, processor: Option<&str>) -> Result<ReadRaw, ConfigError> {
        // References that cannot be resolved matter only where Tailgate reads: in a whole
        // Collector config, only in the chosen processor's block.
        let tailgate_core::config::Expanded {
            text: expanded,
            failures,
            notices,
        } = collector_text_lenient(text, &system_source);
        // Warnings about references name the file; in a whole Collector config, only
        // those in the chosen processor's block are said (the other sections' variables
        // are set where the Collector runs), unless the file cannot be read at all.
        let warn = |read: &dyn Fn(usize) -> bool| {
            let _file = tracing::warn_span!("policies", file = %path.display()).entered();
            tailgate_core::config::warn_notices(&notices, read);
        };
        // A reference left as written can break the YAML around it (`{pct: ${PCT:-7}}` in a
        // flow mapping): then the reference's own error says what is wrong, not the parser's.
        let first_failure = |e: ConfigError| {
            let at = match &e {
                ConfigError::Parse { error, .. } => error.location().map(|l| l.line()),
                _ => None,
            };
            match failures.iter().find(|(line, _)| Some(*line) == at) {
                Some((line, message)) => reference_error(path, text, *line, message.clone()),
                None => e,
            }
        };
        let read_whole = |e: ConfigError| {
            warn(&|_| true);
            e
        };
        let (expanded, documents) =
            collector::first_document(path, expanded).map_err(read_whole)?;
        // Lines past the first document are not read.
        let read_lines = 1..expanded.lines().count() + 1;
        // The notices' lines are the file's: the processor's block is found in the text
        // as written, not as merge keys rewrite it.
        let unmerged = expanded.clone();
        let expanded = tailgate_core::config::merge_keys(path, expanded)
            .map_err(first_failure)
            .map_err(read_whole)?;
        let text = &expanded;
        let top: serde_yaml_ng::Value = parse_plain_yaml(path, text)
            .map_err(first_failure)
            .map_err(read_whole)?;
        let shape = collector::shape(path, &top, processor).map_err(read_whole)?;
        let at = match &shape {
            collector::Shape::Body => Vec::new(),
            collector::Shape::Block => vec!["tail_sampling".to_owned()],
            collector::Shape::Whole { processor, .. } => {
                vec!["processors".to_owned(), processor.clone()]
            }
        };
        let used = match &shape {
            collector::Shape::Whole { processor, .. } => {
                collector::block_lines(&unmerged, processor)
            }
            _ => read_lines,
        };
        warn(&|line| used.contains(&line));
        if let Some((line, message)) = failures.into_iter().find(|(l, _)| used.contains(l)) {
            return Err(reference_error(path, &unmerged, line, message));
        }
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        // Lines before the block, so that policy lines are found in it.
        // The `policies` list as written, to name a policy in the parser's errors.
        let written = match &shape {
            collector::Shape::Body => top.get("policies"),
            collector::Shape::Block => top.get("tail_sampling").and_then(|t| t.get("policies")),
            collector::Shape::Whole { processor, .. } => top
                .get("processors")
                .and_then(|p| p.get(processor.as_str()))
                .and_then(|t| t.get("policies")),
        };
        let named = |e: ConfigError| name_policy_in_error(e, written, text);
        let (raw, first_line, notes, warnings): (RawPolicyFile, usize, Vec<String>, Vec<String>) = match shape {
            collector::Shape::Body | collector::Shape::Block if processor.is_some() => {
                return Err(invalid(
                    "--processor",
                    "applies to a whole Collector config (with processors:), and this file is a tail_sampling block".into(),
                ))
            }
            collector::Shape::Body => (
                parse_plain_yaml(path, text).map_err(named)?,
                0,
                Vec::new(),
                Vec::new(),
            ),
            collector::Shape::Block => (
                parse_plain_yaml::<Wrapped>(path, text)
                    .map_err(named)?
                    .tail_sampling,
                0,
                Vec::new(),
                Vec::new(),
            ),
            collector::Shape::Whole {
                processor,
                note,
                warnings,
            } => (
                collector::processor_block(path, text, &processor).map_err(named)?,
                collector::processor_line(text, &processor).map_or(0, |l| l - 1),
                vec![note],
                warnings,
            ),
        };
        let mut warnings = warnings;
        warnings.extend(documents);
        let block: String = text.lines().skip(first_line).collect::<Vec<_>>().join("\n");
        Ok(ReadRaw {
            raw,
            block,
            first_line,
            notes,
            warnings,
            at,
            top,
        })
    }

    /// Validates each entry; an error names the entry's line in `block`.
    fn validate_entries(
        path: &Path,
        block: &str,
        first_line: usize,
        raws: Vec<RawPolicy>,
    ) -> Result<Vec<PolicyConfig>, ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let mut policies: Vec<PolicyConfig> = Vec::with_capacity(raws.len());
        for (i, p) in raws.into_iter().enumerate() {
            let name = p.name.clone();
            let mut key = format!("policies[{i}]");
            let checked = PolicyConfig::try_from(p).and_then(|p| {
                if policies.iter().any(|q| q.name == p.name) {
                    key.push_str(".name");
                    Err(PolicyError::DuplicateName(p.name))
                } else {
                    Ok(p)
                }
            });
            match checked {
                Ok(p) => policies.push(p),
                Err(error) => {
                    let message = error.to_string();
                    let line = locate_sequence_item(block, "policies", i)
                        .or_else(|| name.as_deref().and_then(|n| locate_name(block, n)))
                        // A list in flow style without the entry's name: where it starts.
                        .or_else(|| tailgate_core::config::locate_key(block, "policies"))
                        // The line of the entry's key the error is about, when written
                        // on a line of its own within the entry.
                        .map(|item| {
                            error
                                .entry_path()
                                .and_then(|k| {
                                    locate_in_entry(block, item, &k).or_else(|| {
                                        locate_in_flow(block, item, name.as_deref(), &k)
                                    })
                                })
                                .unwrap_or(item)
                        });
                    return Err(match line {
                        Some(line) => ConfigError::InvalidAt {
                            path: path.to_owned(),
                            line: line + first_line,
                            key,
                            message,
                        },
                        None => invalid(&key, message),
                    });
                }
            }
        }
        Ok(policies)
    }

    /// The Collector options Tailgate accepts but does not apply (to log), and whether
    /// the strategy is span-ingest; refuses the options it cannot honour.
    fn options(
        path: &Path,
        raw: &RawPolicyFile,
        policies: &[PolicyConfig],
    ) -> Result<(Vec<String>, bool), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        let mut ignored_options = Vec::new();
        if raw.block_on_overflow.is_some() {
            ignored_options.push(
                "block_on_overflow: Tailgate never evicts a buffered trace: past num_traces it decides traces early (those with their root span first, then the rest, those of a resource holding many first), and past buffer.max_buffered_bytes it refuses new data with a retryable status".to_owned(),
            );
        }
        if raw.num_shards.is_some_and(|n| n > 256) {
            return Err(invalid(
                "num_shards",
                format!(
                    "num_shards ({}) must not exceed 256",
                    raw.num_shards.unwrap_or(0)
                ),
            ));
        }
        if let Some(n) = raw.num_shards {
            let mut note =
                "num_shards: Tailgate shards every gateway by buffer.shards in the gateway config"
                    .to_owned();
            // The Collector divides a composite's budget among its shards (each shard
            // counts its own spans per second); Tailgate's is one count per gateway.
            if n > 1
                && policies
                    .iter()
                    .any(|p| matches!(p.kind, PolicyKind::Composite(_)))
            {
                note.push_str(&format!(
                    "; a composite's max_total_spans_per_second stays one budget for the gateway, where the Collector gives each of its {n} shards 1/{n} of it (the same total, but no trace larger than a shard's part is ever kept there)"
                ));
            }
            ignored_options.push(note);
        }
        if raw.tail_storage.is_some() {
            return Err(invalid(
                "tail_storage",
                "Tailgate buffers traces in memory and has no storage extensions; remove tail_storage".into(),
            ));
        }
        let span_ingest = match raw.sampling_strategy.as_deref() {
            None | Some("trace-complete") => false,
            Some("span-ingest") => {
                // As the Collector: policies that keep state across traces cannot decide
                // batch by batch.
                if let Some(p) = policies.iter().find(|p| p.is_stateful()) {
                    return Err(invalid(
                        "sampling_strategy",
                        format!("sampling_strategy \"span-ingest\" requires all policies to be stateless, but policy {:?} is stateful", p.name),
                    ));
                }
                true
            }
            Some(other) => {
                return Err(invalid(
                    "sampling_strategy",
                    format!("invalid sampling_strategy {other:?}, expected one of \"trace-complete\" or \"span-ingest\""),
                ))
            }
        };
        for p in every_policy(policies) {
            for block in &p.unused_blocks {
                ignored_options.push(format!(
                    "policy {:?}: its `{block}:` block is ignored, as the Collector ignores it: the policy's type is {}",
                    p.name,
                    p.kind.name()
                ));
            }
            match &p.kind {
                PolicyKind::Composite(c) => ignored_options.extend(c.warnings(&p.name)),
                PolicyKind::NumericAttribute(c) => ignored_options.extend(c.warnings(&p.name)),
                _ => {}
            }
        }
        Ok((ignored_options, span_ingest))
    }

    /// Checks the validated file as a whole.
    /// The decision cache's size from `decision_cache`: its two sizes added (saturating),
    /// which replaces the gateway config's `buffer.decision_cache_size`.
    pub fn decision_cache_size(&self) -> Option<usize> {
        self.decision_cache.map(|c| {
            c.sampled_cache_size
                .saturating_add(c.non_sampled_cache_size)
        })
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.policies.is_empty() {
            return Err(invalid("policies", "list at least one policy".into()));
        }
        if self.decision_wait.is_zero() {
            return Err(invalid("decision_wait", "must be greater than 0".into()));
        }
        if self.adjusted_count.attribute && self.adjusted_count.attribute_name.is_empty() {
            return Err(invalid(
                "adjusted_count.attribute_name",
                "must not be empty (set adjusted_count.attribute: false to turn it off)".into(),
            ));
        }
        if self.num_traces == 0 {
            return Err(invalid("num_traces", "must be greater than 0".into()));
        }
        if let Some(entries) = self.decision_cache_size() {
            if entries > crate::decide::MAX_ENTRIES {
                return Err(invalid(
                    "decision_cache",
                    format!(
                        "sampled_cache_size + non_sampled_cache_size is {entries}, over {}: \
                         Tailgate's cache is a fixed table allocated when the gateway starts \
                         ({} bytes an entry), not an LRU that grows as it fills",
                        crate::decide::MAX_ENTRIES,
                        crate::decide::ENTRY_BYTES
                    ),
                ));
            }
        }
        // Names are unique: refused with their line by `validate_entries`.
        Ok(())
    }
}

/// `error` placed at its key's line in `text`, the settings sitting at `at` in it (see
/// [`ReadRaw::at`]), when it names none, and its key named from the document's top (in a
/// Collector config, `processors.tail_sampling.decision_wait`): for the checks of
/// settings beside the policies, which run on parsed values.
fn placed(error: ConfigError, text: &str, at: &[String]) -> ConfigError {
    match error {
        ConfigError::Invalid { path, key, message } => {
            let key = at
                .iter()
                .chain([&key])
                .cloned()
                .collect::<Vec<_>>()
                .join(".");
            tailgate_core::config::with_line(ConfigError::Invalid { path, key, message }, text)
        }
        e => e,
    }
}

/// `policies` and all their sub-policies, depth first.
fn every_policy(policies: &[PolicyConfig]) -> Vec<&PolicyConfig> {
    fn walk<'a>(p: &'a PolicyConfig, out: &mut Vec<&'a PolicyConfig>) {
        out.push(p);
        match &p.kind {
            PolicyKind::And(subs) | PolicyKind::Drop(subs) => {
                subs.iter().for_each(|s| walk(s, out))
            }
            PolicyKind::Not(sub) => walk(sub, out),
            PolicyKind::Composite(c) => c.subs.iter().for_each(|s| walk(s, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    policies.iter().for_each(|p| walk(p, &mut all));
    all
}

#[cfg(test)]
mod tests;

/// What reading `file` has to say, for every place that shows it (the start log,
/// `--check`, `check-policies`): notes (what was read, and the rules the Collector changed
/// between versions that the file relies on), then warnings.
pub fn messages(file: &PolicyFile) -> (Vec<String>, &[String]) {
    let mut notes = file.notes.clone();
    notes.extend(version_notes(file));
    (notes, &file.ignored_options)
}

/// One-line notes for a file that relies on a rule the Collector changed between versions,
/// so that a user moving from an older Collector knows where decisions may differ from
/// what they saw there. Tailgate follows the Collector v0.161 in each.
pub fn version_notes(file: &PolicyFile) -> Vec<String> {
    let all = every_policy(&file.policies);
    let mut notes = Vec::new();
    let inverted = all.iter().any(|p| match &p.kind {
        PolicyKind::StringAttribute(c) => c.invert_match,
        PolicyKind::NumericAttribute(c) => c.invert_match,
        PolicyKind::BooleanAttribute(c) => c.invert_match,
        _ => false,
    });
    if inverted {
        notes.push("invert_match: since Collector v0.144 (by default; the only behaviour since v0.155) an inverted policy is a plain sampled / not sampled on the negated condition; before, a match vetoed every other policy".to_owned());
    }
    if all
        .iter()
        .any(|p| matches!(&p.kind, PolicyKind::Latency(c) if c.upper_threshold_ms == 0))
    {
        notes.push("latency: since Collector v0.157 threshold_ms is exclusive (kept when longer than it); before, a trace lasting exactly threshold_ms was kept".to_owned());
    }
    let first_drop = file
        .policies
        .iter()
        .position(|p| matches!(p.kind, PolicyKind::Drop(_)));
    if file.sample_on_first_match && first_drop.is_some_and(|i| i > 0) {
        notes.push("drop: drop policies are evaluated first, so with sample_on_first_match a drop listed after a sampling policy still drops (older Collectors stopped before it)".to_owned());
    }
    let unshared = all.iter().any(|p| match &p.kind {
        PolicyKind::Composite(c) => c
            .subs
            .iter()
            .any(|s| !c.rate_allocation.iter().any(|r| r.policy == s.name)),
        _ => false,
    });
    if unshared {
        notes.push("composite: a sub-policy missing from rate_allocation gets an equal split of max_total_spans_per_second (Collector PR #49857); before, it never sampled".to_owned());
    }
    notes
}
