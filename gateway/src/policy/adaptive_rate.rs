//! `adaptive_rate` (Tailgate): keeps about `target_traces_per_second` (or
//! `target_spans_per_second`) traces, overall or split fairly over the values of `keys`.
//!
//! Every trace this policy evaluates is counted under its key (the values of `keys`,
//! attribute names such as `service.name`, or `root.name` for the root span's name; a value
//! on the root span wins over others). Every `interval` the per-key rates are folded into an
//! exponential moving average (`smoothing` is the weight of the newest interval) and the
//! target is shared out max-min fairly: a key whose traffic is below the fair level keeps
//! all of it (up to `max_probability`), so a quiet service is never starved by a loud one,
//! and the loud keys share what is left equally. Each key's probability is bounded by
//! `min_probability` and `max_probability`.
//!
//! A trace is kept when a hash of its id (56 bits) is at or above the key's threshold, so
//! with the same probabilities every gateway decides the same for the same trace. The hash
//! is independent of the randomness a consistent head sampler decided on (the id's last 56
//! bits, or `rv`), so a head sampler's probability and this one multiply, as the adjusted
//! count written into kept spans says; the `ot=th:` written is that product's, where the
//! trace's randomness reaches it (core's `span_fields`). The target is per gateway.
//! Keys first seen during an interval get the overall keep probability of the last
//! interval. The first interval is at most one second and keeps at most the target's worth
//! of it, so a fresh gateway neither floods the backend nor waits long to adapt. A reload
//! starts from scratch.
//!
//! Shards share one key table; looking a key up and counting is lock-free. A key seen for
//! the first time is noted under a `try_lock` (never waiting); the shard that first sees
//! the interval end rebuilds the table, the others carry on with the old one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tailgate_core::wire::attrs::AttrValue;
use tailgate_core::wire::span_fields::{
    threshold_probability as probability, threshold_value as threshold,
};
use tokio::time::Instant;
use xxhash_rust::xxh3::{xxh3_64_with_seed, Xxh3};

use super::verdict::{field_keys, Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// Seed of the trace-id hash, distinct from the ring's so that placement and sampling are
/// independent.
const SEED: u64 = 0x7461_696c_6761_7465;

/// The key name that means the root span's name.
pub const ROOT_NAME: &str = "root.name";

/// YAML block `adaptive_rate:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveRateConfig {
    /// Traces to keep per second, per gateway (or use `target_spans_per_second`).
    #[serde(default)]
    pub target_traces_per_second: Option<f64>,
    /// Spans to keep per second, per gateway.
    #[serde(default)]
    pub target_spans_per_second: Option<f64>,
    /// Attribute names whose values make a trace's key; `root.name` is the root span's
    /// name, `root.X` (as Refinery writes a root span's field) the attribute X. Empty: one
    /// key for all traces.
    #[serde(default)]
    pub keys: Vec<String>,
    /// How often probabilities are recomputed. Default 10s.
    #[serde(
        default = "default_interval",
        with = "tailgate_core::config::go_duration"
    )]
    pub interval: Duration,
    /// Weight of the newest interval in the moving average, in (0, 1]. Default 0.5.
    #[serde(default = "default_smoothing")]
    pub smoothing: f64,
    /// Lowest probability a key gets. Default 0.0001.
    #[serde(default = "default_min_probability")]
    pub min_probability: f64,
    /// Highest probability a key gets. Default 1.
    #[serde(default = "default_max_probability")]
    pub max_probability: f64,
    /// Distinct keys tracked; past it, new keys share one "(other)" key. Default 10000.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_smoothing() -> f64 {
    0.5
}
fn default_min_probability() -> f64 {
    0.0001
}
fn default_max_probability() -> f64 {
    1.0
}
fn default_max_keys() -> usize {
    10_000
}

impl Default for AdaptiveRateConfig {
    fn default() -> Self {
        AdaptiveRateConfig {
            target_traces_per_second: None,
            target_spans_per_second: None,
            keys: Vec::new(),
            interval: default_interval(),
            smoothing: default_smoothing(),
            min_probability: default_min_probability(),
            max_probability: default_max_probability(),
            max_keys: default_max_keys(),
        }
    }
}

impl AdaptiveRateConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        match (self.target_traces_per_second, self.target_spans_per_second) {
            (Some(_), Some(_)) => {
                return Err(SettingError::conflict(
                    "target_traces_per_second",
                    "target_traces_per_second and target_spans_per_second are exclusive; set one",
                ))
            }
            (None, None) => {
                return Err(SettingError::conflict(
                    "target_traces_per_second",
                    "set it or target_spans_per_second",
                ))
            }
            (Some(t), None) if !(t > 0.0 && t.is_finite()) => {
                return Err(SettingError::range("target_traces_per_second", "> 0", t))
            }
            (None, Some(t)) if !(t > 0.0 && t.is_finite()) => {
                return Err(SettingError::range("target_spans_per_second", "> 0", t))
            }
            _ => {}
        }
        if !(self.min_probability > 0.0 && self.min_probability <= self.max_probability) {
            return Err(SettingError::range(
                "min_probability",
                "> 0 and <= max_probability",
                self.min_probability,
            ));
        }
        if !(self.max_probability > 0.0 && self.max_probability <= 1.0) {
            return Err(SettingError::range(
                "max_probability",
                "in (0, 1]",
                self.max_probability,
            ));
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(SettingError::range("smoothing", "in (0, 1]", self.smoothing));
        }
        if self.interval < Duration::from_millis(100) {
            return Err(SettingError::range(
                "interval",
                "at least 100ms",
                format!("{:?}", self.interval),
            ));
        }
        if self.max_keys == 0 {
            return Err(SettingError::range("max_keys", "greater than 0", 0));
        }
        if let Some(i) = self.keys.iter().position(|k| k.is_empty()) {
            return Err(SettingError::empty(format!("keys[{i}]")));
        }
        Ok(())
    }

    fn target(&self) -> f64 {
        self.target_traces_per_second
            .or(self.target_spans_per_second)
            .unwrap_or(1.0)
    }
}

impl Kind for AdaptiveRateConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn is_stateful(_: &Self) -> bool {
        true
    }

    fn compile(c: &Self, keys: &mut Keys<'_>) -> Box<dyn Policy> {
        let idx = c
            .keys
            .iter()
            .map(|k| match k.as_str() {
                ROOT_NAME => keys.index(field_keys::ROOT_NAME),
                // Refinery's `root.http.route` (a field of the root span): the attribute,
                // whose root span's value is preferred anyway (a Refinery user's trial:
                // the literal name matched nothing, so every trace shared one key).
                k => keys.index(k.strip_prefix("root.").unwrap_or(k)),
            })
            .collect();
        Box::new(AdaptiveRatePolicy::new(c, idx))
    }
}

/// One key's live state.
#[derive(Debug)]
struct KeyCell {
    name: String,
    /// Traces (or spans) counted in the current interval.
    seen: AtomicU64,
    /// Rejection threshold (56-bit) in force.
    threshold: AtomicU64,
}

#[derive(Debug, Default)]
struct KeyTable {
    index: HashMap<u64, usize>,
    cells: Vec<KeyCell>,
}

/// What only the recomputing shard touches.
#[derive(Debug, Default)]
struct History {
    /// Moving average of each key's rate, by key hash, with its name.
    ema: HashMap<u64, (String, f64)>,
    last: Option<u64>,
}

/// Compiled `adaptive_rate` policy.
#[derive(Debug)]
pub struct AdaptiveRatePolicy {
    cfg: AdaptiveRateConfig,
    /// Plan key index of each configured key.
    keys: Vec<u16>,
    spans: bool,
    epoch: Instant,
    table: ArcSwap<KeyTable>,
    new_keys: Mutex<HashMap<u64, (String, u64)>>,
    new_key_threshold: AtomicU64,
    /// When the next recompute is due (ns since `epoch`).
    next_at: AtomicU64,
    /// Before the first recompute nothing is known of the traffic: keep at most the
    /// target's worth of that first interval, so a fresh gateway does not keep everything.
    first_budget: AtomicU64,
    recomputed: std::sync::atomic::AtomicBool,
    history: Mutex<History>,
}

/// Most bytes of one value a key's name keeps (for operators to read it): keys are told
/// apart by a hash of their whole values, so a sender's long values (a 100 KB
/// `service.name`) cost the table this much, not their length.
const MAX_NAME_VALUE_BYTES: usize = 128;

/// `s` cut to at most `max` bytes at a character boundary, marked `…` when cut.
fn push_cut(name: &mut String, s: &str, max: usize) {
    if s.len() <= max {
        name.push_str(s);
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    name.push_str(&s[..end]);
    name.push('…');
}

/// Hash of "(other)", the key that absorbs keys past `max_keys`.
fn other_hash() -> u64 {
    xxh3_64_with_seed(b"\xff(other)", SEED)
}

impl AdaptiveRatePolicy {
    /// Compiles a validated config; `keys` are the plan key indices of `cfg.keys`.
    pub fn new(cfg: &AdaptiveRateConfig, keys: Vec<u16>) -> Self {
        let first = cfg.interval.min(Duration::from_secs(1));
        AdaptiveRatePolicy {
            spans: cfg.target_spans_per_second.is_some(),
            cfg: cfg.clone(),
            keys,
            epoch: Instant::now(),
            table: ArcSwap::from_pointee(KeyTable::default()),
            new_keys: Mutex::new(HashMap::new()),
            new_key_threshold: AtomicU64::new(threshold(cfg.max_probability)),
            next_at: AtomicU64::new(first.as_nanos() as u64),
            first_budget: AtomicU64::new((cfg.target() * first.as_secs_f64()).ceil() as u64),
            recomputed: std::sync::atomic::AtomicBool::new(false),
            history: Mutex::new(History::default()),
        }
    }

    /// The trace's key hash; `name` is filled only when asked (on a miss).
    fn key_of(&self, trace: &TraceView<'_>, name: Option<&mut String>) -> u64 {
        let mut h = Xxh3::with_seed(SEED);
        let mut name = name;
        for (i, &k) in self.keys.iter().enumerate() {
            let attrs = &trace.summary.attrs;
            let value = attrs
                .iter()
                .find(|a| a.key == k && a.from_root)
                .or_else(|| attrs.iter().find(|a| a.key == k))
                .map(|a| &a.value);
            h.update(&[0xff, i as u8]);
            match value {
                Some(AttrValue::Str(b)) => h.update(b),
                Some(AttrValue::Int(v)) => h.update(&v.to_le_bytes()),
                Some(AttrValue::Bool(v)) => h.update(&[u8::from(*v)]),
                Some(AttrValue::Double(v)) => h.update(&v.to_le_bytes()),
                Some(AttrValue::Other) | None => h.update(&[0xfe]),
            }
            if let Some(n) = name.as_deref_mut() {
                if i > 0 {
                    n.push('/');
                }
                match value {
                    Some(AttrValue::Str(b)) => {
                        let cut = &b[..b.len().min(MAX_NAME_VALUE_BYTES + 4)];
                        push_cut(n, &String::from_utf8_lossy(cut), MAX_NAME_VALUE_BYTES);
                    }
                    Some(AttrValue::Int(v)) => n.push_str(&v.to_string()),
                    Some(AttrValue::Bool(v)) => n.push_str(&v.to_string()),
                    Some(AttrValue::Double(v)) => n.push_str(&v.to_string()),
                    Some(AttrValue::Other) => n.push_str("(other type)"),
                    None => n.push_str("(none)"),
                }
            }
        }
        h.digest()
    }

    /// The threshold for this trace's key, counting the trace when `count`.
    fn threshold_for(&self, trace: &TraceView<'_>, count: bool) -> u64 {
        let hash = self.key_of(trace, None);
        let weight = if self.spans {
            u64::from(trace.summary.span_count)
        } else {
            1
        };
        let table = self.table.load();
        if let Some(&i) = table.index.get(&hash) {
            let cell = &table.cells[i];
            if count {
                cell.seen.fetch_add(weight, Ordering::Relaxed);
            }
            return cell.threshold.load(Ordering::Relaxed);
        }
        if count {
            // Never wait: if another shard is noting a key right now, this count is lost,
            // which only delays the key's first rate by an interval.
            if let Ok(mut new) = self.new_keys.try_lock() {
                // At most `max_keys` new keys an interval, as the table holds at most that
                // many: past it a sender inventing keys adds to "(other)", not to memory.
                let full = new.len() >= self.cfg.max_keys && !new.contains_key(&hash);
                if full {
                    new.entry(other_hash())
                        .or_insert_with(|| ("(other)".into(), 0))
                        .1 += weight;
                } else {
                    new.entry(hash)
                        .or_insert_with(|| {
                            let mut name = String::new();
                            self.key_of(trace, Some(&mut name));
                            (name, 0)
                        })
                        .1 += weight;
                }
            }
        }
        self.new_key_threshold.load(Ordering::Relaxed)
    }

    /// Spans per second of each key since the last recomputation (known keys and new
    /// ones), counters reset.
    fn observed_rates(&self, elapsed: f64) -> HashMap<u64, (String, f64)> {
        let mut rates: HashMap<u64, (String, f64)> = HashMap::new();
        let table = self.table.load();
        for (&hash, &i) in &table.index {
            let cell = &table.cells[i];
            let n = cell.seen.swap(0, Ordering::Relaxed);
            rates.insert(hash, (cell.name.clone(), n as f64 / elapsed));
        }
        if let Ok(mut new) = self.new_keys.try_lock() {
            for (hash, (name, n)) in new.drain() {
                let e = rates.entry(hash).or_insert((name, 0.0));
                e.1 += n as f64 / elapsed;
            }
        }
        rates
    }

    /// Forgets keys whose rate decayed to nothing, and past `max_keys` merges the
    /// quietest into "(other)".
    fn trim(&self, ema: &mut HashMap<u64, (String, f64)>) {
        // Keys not seen in this interval decay; forget them once they are negligible.
        ema.retain(|_, (_, r)| *r >= 1e-3);
        // Past max_keys, the quietest keys merge into "(other)".
        if ema.len() > self.cfg.max_keys {
            let mut by_rate: Vec<(u64, f64)> = ema.iter().map(|(h, (_, r))| (*h, *r)).collect();
            by_rate.sort_by(|x, y| y.1.total_cmp(&x.1));
            let mut other = 0.0;
            for (h, r) in by_rate.into_iter().skip(self.cfg.max_keys - 1) {
                ema.remove(&h);
                other += r;
            }
            ema.entry(other_hash()).or_insert(("(other)".into(), 0.0)).1 += other;
        }
    }

    fn maybe_recompute(&self, now_ns: u64) {
        let due = self.next_at.load(Ordering::Relaxed);
        if now_ns < due {
            return;
        }
        let next = now_ns + self.cfg.interval.as_nanos() as u64;
        if self
            .next_at
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let Ok(mut history) = self.history.try_lock() else {
            return;
        };
        let since = history.last.unwrap_or(0);
        history.last = Some(now_ns);
        let elapsed = (now_ns.saturating_sub(since) as f64 / 1e9).max(1e-3);
        let rates = self.observed_rates(elapsed);
        let a = self.cfg.smoothing;
        let mut ema = std::mem::take(&mut history.ema);
        for (hash, (name, rate)) in rates {
            ema.entry(hash)
                .and_modify(|e| e.1 = a * rate + (1.0 - a) * e.1)
                .or_insert((name, rate));
        }
        self.trim(&mut ema);
        let rates: Vec<f64> = ema.values().map(|(_, r)| *r).collect();
        let probs = fair_probabilities(
            &rates,
            self.cfg.target(),
            self.cfg.min_probability,
            self.cfg.max_probability,
        );
        let total: f64 = rates.iter().sum();
        let kept: f64 = rates.iter().zip(&probs).map(|(r, p)| r * p).sum();
        let overall = if total > 0.0 {
            kept / total
        } else {
            self.cfg.max_probability
        };
        let mut next = KeyTable::default();
        for ((hash, (name, _)), p) in ema.iter().zip(&probs) {
            next.index.insert(*hash, next.cells.len());
            next.cells.push(KeyCell {
                name: name.clone(),
                seen: AtomicU64::new(0),
                threshold: AtomicU64::new(threshold(*p)),
            });
        }
        self.new_key_threshold
            .store(threshold(overall), Ordering::Relaxed);
        self.table.store(Arc::new(next));
        self.recomputed.store(true, Ordering::Relaxed);
        history.ema = ema;
    }

    /// The probability in force for each known key, loudest first (for operators).
    pub fn key_probabilities(&self) -> Vec<(String, f64)> {
        let table = self.table.load();
        let history = self.history.try_lock();
        let mut out: Vec<(String, f64, f64)> = table
            .cells
            .iter()
            .map(|c| {
                let rate = history
                    .as_ref()
                    .ok()
                    .and_then(|h| h.ema.values().find(|(n, _)| n == &c.name).map(|e| e.1))
                    .unwrap_or(0.0);
                (
                    c.name.clone(),
                    probability(c.threshold.load(Ordering::Relaxed)),
                    rate,
                )
            })
            .collect();
        out.sort_by(|a, b| b.2.total_cmp(&a.2));
        out.into_iter().map(|(n, p, _)| (n, p)).collect()
    }
}

/// Max-min fair probabilities: find the level `L` such that keeping
/// `clamp(L, rate × min_p, rate × max_p)` of each key sums to `target`, and return each
/// key's share of its rate.
pub fn fair_probabilities(rates: &[f64], target: f64, min_p: f64, max_p: f64) -> Vec<f64> {
    let kept = |level: f64| -> f64 {
        rates
            .iter()
            .map(|r| level.clamp(r * min_p, r * max_p))
            .sum()
    };
    let top = rates.iter().copied().fold(0.0, f64::max);
    let level = if kept(top) <= target {
        top
    } else {
        let (mut lo, mut hi) = (0.0, top);
        for _ in 0..64 {
            let mid = (lo + hi) / 2.0;
            if kept(mid) < target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    };
    rates
        .iter()
        .map(|&r| {
            if r <= 0.0 {
                max_p
            } else {
                level.clamp(r * min_p, r * max_p) / r
            }
        })
        .collect()
}

impl Policy for AdaptiveRatePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        let now_ns = trace.now.saturating_duration_since(self.epoch).as_nanos() as u64;
        if now_ns >= self.next_at.load(Ordering::Relaxed) {
            self.maybe_recompute(now_ns);
        }
        let t = self.threshold_for(trace, true);
        if xxh3_64_with_seed(trace.trace_id, SEED) >> 8 < t {
            return Verdict::NotSampled;
        }
        if !self.recomputed.load(Ordering::Relaxed) {
            let weight = if self.spans {
                u64::from(trace.summary.span_count)
            } else {
                1
            };
            let spent = self
                .first_budget
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    b.checked_sub(weight)
                });
            if spent.is_err() {
                return Verdict::NotSampled;
            }
        }
        Verdict::Sampled
    }

    fn probability(&self, trace: &TraceView<'_>) -> f64 {
        probability(self.threshold_for(trace, false))
    }

    fn describe(&self) -> String {
        let unit = if self.spans { "spans" } else { "traces" };
        let by = if self.cfg.keys.is_empty() {
            String::new()
        } else {
            format!(", shared fairly over [{}]", self.cfg.keys.join(", "))
        };
        format!(
            "keep about {} {unit}/s per gateway{by}; probabilities between {} and {}, recomputed every {:?}",
            self.cfg.target(),
            self.cfg.min_probability,
            self.cfg.max_probability,
            self.cfg.interval
        )
    }
}

#[cfg(test)]
mod tests;
