//! What the clients send: how many spans per second over time, how large and long traces
//! are, how many carry errors or are slow, how their spans arrive (spread, late spans,
//! clock skew). Read from a scenario's `workload:` block; [`Workload::sample_trace`] draws
//! one trace from it with the scenario's seeded generator.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tailgate_core::wire::attrs::AttrValue;
use tailgate_gateway::buffer::trace::{TraceAttr, TraceSummary};

/// Spans per second over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rate {
    /// The same rate throughout.
    Steady {
        /// Spans per second.
        spans_per_second: f64,
    },
    /// A day's swing: `mean × (1 + amplitude × sin(2π t / period))`.
    Diurnal {
        /// Mean spans per second.
        mean: f64,
        /// 0 to 1.
        amplitude: f64,
        /// The cycle's length.
        #[serde(with = "humantime_serde")]
        period: Duration,
    },
    /// `base`, with `peak` for `length` every `every`.
    Bursts {
        /// Spans per second between bursts.
        base: f64,
        /// Spans per second in a burst.
        peak: f64,
        /// Time from one burst's start to the next's.
        #[serde(with = "humantime_serde")]
        every: Duration,
        /// A burst's length.
        #[serde(with = "humantime_serde")]
        length: Duration,
    },
}

impl Rate {
    /// Spans per second at `t` seconds.
    pub fn at(&self, t: f64) -> f64 {
        match self {
            Rate::Steady { spans_per_second } => *spans_per_second,
            Rate::Diurnal {
                mean,
                amplitude,
                period,
            } => {
                let phase = std::f64::consts::TAU * t / period.as_secs_f64().max(1.0);
                (mean * (1.0 + amplitude * phase.sin())).max(0.0)
            }
            Rate::Bursts {
                base,
                peak,
                every,
                length,
            } => {
                let into = t % every.as_secs_f64().max(1e-3);
                if into < length.as_secs_f64() {
                    *peak
                } else {
                    *base
                }
            }
        }
    }

    /// The highest rate it reaches.
    pub fn peak(&self) -> f64 {
        match self {
            Rate::Steady { spans_per_second } => *spans_per_second,
            Rate::Diurnal {
                mean, amplitude, ..
            } => mean * (1.0 + amplitude),
            Rate::Bursts { base, peak, .. } => base.max(*peak),
        }
    }
}

/// Spans per trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TraceSize {
    /// Every trace the same.
    Fixed {
        /// Spans.
        spans: u32,
    },
    /// Lognormal around a median.
    Lognormal {
        /// The median.
        median: f64,
        /// The spread (σ of the log).
        sigma: f64,
    },
    /// Uniform between two counts (the load test's generator: mean ± 50%).
    Uniform {
        /// Fewest spans.
        min: u32,
        /// Most spans.
        max: u32,
    },
    /// Lognormal, plus a share of very large traces (a batch job, a fan-out).
    HeavyTail {
        /// The median of the ordinary traces.
        median: f64,
        /// Their spread.
        sigma: f64,
        /// The share of traces that are large (e.g. 0.00001).
        big_share: f64,
        /// Spans of a large trace (e.g. 10000).
        big_spans: u32,
    },
}

/// A distribution of durations. (`Uniform` mirrors the load test's generator.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DurationDist {
    /// Always the same.
    Fixed {
        /// The duration.
        #[serde(with = "humantime_serde")]
        value: Duration,
    },
    /// Lognormal around a median.
    Lognormal {
        /// The median.
        #[serde(with = "humantime_serde")]
        median: Duration,
        /// The spread (σ of the log).
        sigma: f64,
    },
    /// Uniform between two durations.
    Uniform {
        /// Shortest.
        #[serde(with = "humantime_serde")]
        min: Duration,
        /// Longest.
        #[serde(with = "humantime_serde")]
        max: Duration,
    },
}

impl DurationDist {
    fn mean(&self) -> f64 {
        match self {
            DurationDist::Fixed { value } => value.as_secs_f64(),
            DurationDist::Lognormal { median, sigma } => {
                lognormal_mean(median.as_secs_f64(), *sigma)
            }
            DurationDist::Uniform { min, max } => (min.as_secs_f64() + max.as_secs_f64()) / 2.0,
        }
    }

    fn draw(&self, rng: &mut fastrand::Rng) -> f64 {
        match self {
            DurationDist::Fixed { value } => value.as_secs_f64(),
            DurationDist::Lognormal { median, sigma } => {
                lognormal(rng, median.as_secs_f64(), *sigma)
            }
            DurationDist::Uniform { min, max } => {
                let (a, b) = (min.as_secs_f64(), max.as_secs_f64().max(min.as_secs_f64()));
                a + (b - a) * rng.f64()
            }
        }
    }
}

/// Keys of `workload:` read apart from their position: their errors begin with the key.
pub const LOCATED_KEYS: [&str; 4] = ["rate", "trace_size", "duration", "slow_duration"];

/// Reads a `kind:`-tagged distribution through a YAML value and begins its errors (a
/// missing `sigma`, an unknown field) with `key`: serde reads a tagged enum from a buffer
/// that knows neither key nor line, and the error came out as the whole `workload`'s,
/// where `trace_size` and `duration` both take a `sigma`. The scenario's loader puts the
/// key's line back ([`crate::scenario::Scenario::load`]).
fn located<'de, D, T>(d: D, key: &str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_yaml_ng::Value::deserialize(d)?;
    T::deserialize(value).map_err(|e| serde::de::Error::custom(format!("{key}: {e}")))
}

fn rate<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
    located(d, LOCATED_KEYS[0])
}

fn trace_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TraceSize, D::Error> {
    located(d, LOCATED_KEYS[1])
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DurationDist, D::Error> {
    located(d, LOCATED_KEYS[2])
}

fn slow_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DurationDist>, D::Error> {
    located(d, LOCATED_KEYS[3])
}

/// `workload:` in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Spans per second over time.
    #[serde(deserialize_with = "rate")]
    pub rate: Rate,
    /// Spans per trace.
    #[serde(deserialize_with = "trace_size")]
    pub trace_size: TraceSize,
    /// How long a trace lasts (first span's start to root's end).
    #[serde(deserialize_with = "duration")]
    pub duration: DurationDist,
    /// Share of traces with an error span.
    #[serde(default = "default_error_share")]
    pub error_share: f64,
    /// Share of traces that are slow (their duration × `slow_factor`).
    #[serde(default = "default_slow_share")]
    pub slow_share: f64,
    /// How much longer a slow trace lasts.
    #[serde(default = "default_slow_factor")]
    pub slow_factor: f64,
    /// Slow traces' durations, drawn from this instead of `slow_factor` times the others'.
    #[serde(default, deserialize_with = "slow_duration")]
    pub slow_duration: Option<DurationDist>,
    /// Spans sent in up to this many requests per trace, chunk `j` of `k` due at
    /// `min(duration, arrival_spread) × j / k` from the trace's start, the root in the
    /// last (as the load test's generator sends them). Without it, each span arrives on
    /// its own, at its end plus up to `arrival_spread`.
    #[serde(default)]
    pub arrival_chunks: Option<u32>,
    /// Longest delay between a span's end and its arrival (SDK batching); each span's is
    /// drawn uniformly below it.
    #[serde(default = "default_spread", with = "humantime_serde")]
    pub arrival_spread: Duration,
    /// Share of spans that arrive late, `late_by` after their trace's end.
    #[serde(default)]
    pub late_share: f64,
    /// How late a late span is.
    #[serde(default = "default_late_by", with = "humantime_serde")]
    pub late_by: Duration,
    /// Largest clock skew between services: each span's timestamps move by up to ± this.
    #[serde(default, with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Attributes the clients set, for the attribute policies (`string_attribute`,
    /// `numeric_attribute`, `boolean_attribute`, `adaptive_rate` keys) to read.
    #[serde(default)]
    pub attributes: Vec<AttributeDist>,
}

/// One attribute of `workload.attributes`: its value is drawn once per trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeDist {
    /// The attribute's key, as the policies name it.
    pub key: String,
    /// The values it takes (strings, integers, doubles, booleans).
    pub values: Vec<Literal>,
    /// Each value's share of traces, in the order of `values` (default: equal shares).
    /// When they sum to less than 1, the remaining traces do not carry the attribute.
    #[serde(default)]
    pub shares: Option<Vec<f64>>,
    /// Where the clients set it.
    #[serde(default)]
    pub on: AttrPlace,
}

/// A literal attribute value of a workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Literal {
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A string.
    Str(String),
}

impl Literal {
    fn value(&self) -> AttrValue {
        match self {
            Literal::Bool(b) => AttrValue::Bool(*b),
            Literal::Int(i) => AttrValue::Int(*i),
            Literal::Double(d) => AttrValue::Double(*d),
            Literal::Str(s) => AttrValue::Str(bytes::Bytes::copy_from_slice(s.as_bytes())),
        }
    }
}

/// Where a workload attribute is set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttrPlace {
    /// On every span of the trace (the default).
    #[default]
    Spans,
    /// On the root span only: a gateway holding part of a trace without its root does not
    /// see it.
    Root,
    /// On the resource of every span.
    Resource,
}

impl AttributeDist {
    /// Draws the index of the value a trace carries, if any.
    fn draw(&self, rng: &mut fastrand::Rng) -> Option<u16> {
        let n = self.values.len();
        let mut u = rng.f64();
        match &self.shares {
            None => Some(((u * n as f64) as usize).min(n - 1) as u16),
            Some(shares) => shares
                .iter()
                .position(|s| {
                    u -= s;
                    u < 0.0
                })
                .map(|i| i as u16),
        }
    }

    fn check(&self) -> bool {
        let n = self.values.len();
        let shares_ok = self.shares.as_ref().is_none_or(|s| {
            s.len() == n
                && s.iter().all(|x| (0.0..=1.0).contains(x))
                && s.iter().sum::<f64>() <= 1.0 + 1e-9
        });
        !self.key.is_empty() && (1..=u16::MAX as usize).contains(&n) && shares_ok
    }
}

fn default_error_share() -> f64 {
    0.01
}
fn default_slow_share() -> f64 {
    0.02
}
fn default_slow_factor() -> f64 {
    10.0
}
fn default_spread() -> Duration {
    Duration::from_secs(2)
}
fn default_late_by() -> Duration {
    Duration::from_secs(60)
}

/// One trace drawn from a workload: times in seconds from the run's start.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledTrace {
    /// Its id (random).
    pub id: [u8; 16],
    /// When its first span starts.
    pub start: f64,
    /// Its duration in seconds (slow ones included).
    pub duration: f64,
    /// Whether one of its spans has an error.
    pub error: bool,
    /// Whether it is a slow one.
    pub slow: bool,
    /// Each span's end time, the root's last in this list.
    pub ends: Vec<f64>,
    /// Each span's arrival time (its end plus the SDK's batching delay, or late).
    pub arrivals: Vec<f64>,
    /// Each span's clock skew in seconds (added to its timestamps).
    pub skews: Vec<f64>,
    /// The workload attributes it carries: (index in `workload.attributes`, index of the
    /// value).
    pub attrs: Vec<(u16, u16)>,
}

impl Workload {
    /// Checks values a run cannot use: `Err(key, rule)`.
    pub fn check(&self) -> Result<(), (&'static str, &'static str)> {
        let rate_ok = match &self.rate {
            Rate::Steady { spans_per_second } => (0.0..=1e10).contains(spans_per_second),
            Rate::Diurnal {
                mean, amplitude, ..
            } => (0.0..=1e10).contains(mean) && (0.0..=1.0).contains(amplitude),
            Rate::Bursts {
                base, peak, every, ..
            } => (0.0..=1e10).contains(base) && (0.0..=1e10).contains(peak) && !every.is_zero(),
        };
        if !rate_ok {
            return Err((
                "workload.rate",
                "rates from 0 to 1e10 spans/s, amplitude 0 to 1, every above 0",
            ));
        }
        let size_ok = match &self.trace_size {
            TraceSize::Fixed { spans } => (1..=1_000_000).contains(spans),
            TraceSize::Uniform { min, max } => *min >= 1 && min <= max && *max <= 1_000_000,
            TraceSize::Lognormal { median, sigma } => *median >= 1.0 && (0.0..=4.0).contains(sigma),
            TraceSize::HeavyTail {
                median,
                sigma,
                big_share,
                big_spans,
            } => {
                *median >= 1.0
                    && (0.0..=4.0).contains(sigma)
                    && (0.0..=0.01).contains(big_share)
                    && (1..=1_000_000).contains(big_spans)
            }
        };
        if !size_ok {
            return Err((
                "workload.trace_size",
                "at least 1 span (at most 1,000,000), sigma 0 to 4, big_share at most 0.01",
            ));
        }
        let shares = [
            ("workload.error_share", self.error_share),
            ("workload.slow_share", self.slow_share),
            ("workload.late_share", self.late_share),
        ];
        if let Some((key, _)) = shares.iter().find(|(_, x)| !(0.0..=1.0).contains(x)) {
            return Err((key, "a share from 0 to 1"));
        }
        if !(1.0..=1000.0).contains(&self.slow_factor) {
            return Err(("workload.slow_factor", "1 to 1000"));
        }
        if !self.attributes.iter().all(AttributeDist::check) {
            return Err((
                "workload.attributes",
                "a key, 1 to 65535 values, and one share from 0 to 1 per value summing to at most 1",
            ));
        }
        Ok(())
    }

    /// Mean spans per trace (over the whole distribution, large traces included).
    pub fn mean_spans(&self) -> f64 {
        match self.big_traces() {
            Some((share, spans)) => {
                (1.0 - share) * self.mean_ordinary_spans() + share * f64::from(spans)
            }
            None => self.mean_ordinary_spans(),
        }
    }

    /// The share of traces that are large and their size (heavy tails only).
    pub fn big_traces(&self) -> Option<(f64, u32)> {
        match &self.trace_size {
            TraceSize::HeavyTail {
                big_share,
                big_spans,
                ..
            } => Some((*big_share, *big_spans)),
            _ => None,
        }
    }

    /// Mean spans per ordinary (not large) trace.
    pub fn mean_ordinary_spans(&self) -> f64 {
        match &self.trace_size {
            TraceSize::Fixed { spans } => f64::from(*spans),
            TraceSize::Uniform { min, max } => (f64::from(*min) + f64::from(*max)) / 2.0,
            TraceSize::Lognormal { median, sigma } | TraceSize::HeavyTail { median, sigma, .. } => {
                lognormal_mean(*median, *sigma)
            }
        }
    }

    /// Mean trace duration in seconds, slow ones included.
    pub fn mean_duration(&self) -> f64 {
        let base = self.duration.mean();
        let slow = self
            .slow_duration
            .as_ref()
            .map_or(base * self.slow_factor, DurationDist::mean);
        base * (1.0 - self.slow_share) + slow * self.slow_share
    }

    /// Draws one ordinary trace (or a large one when `big`) starting at `start`.
    pub fn sample_trace(&self, rng: &mut fastrand::Rng, start: f64, big: bool) -> SampledTrace {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&rng.u64(..).to_le_bytes());
        id[8..].copy_from_slice(&rng.u64(..).to_le_bytes());
        let spans = match (&self.trace_size, big) {
            (TraceSize::HeavyTail { big_spans, .. }, true) => *big_spans,
            (TraceSize::Fixed { spans }, _) => *spans,
            (TraceSize::Uniform { min, max }, _) => rng.u32(*min.min(max)..=*max.max(min)),
            (
                TraceSize::Lognormal { median, sigma } | TraceSize::HeavyTail { median, sigma, .. },
                _,
            ) => lognormal(rng, *median, *sigma).round().clamp(1.0, 1e6) as u32,
        }
        .max(1);
        let slow = rng.f64() < self.slow_share;
        let duration = match (&self.slow_duration, slow) {
            (Some(d), true) => d.draw(rng),
            (None, true) => self.duration.draw(rng) * self.slow_factor,
            (_, false) => self.duration.draw(rng),
        };
        let error = rng.f64() < self.error_share;
        let attrs = self
            .attributes
            .iter()
            .enumerate()
            .filter_map(|(a, dist)| dist.draw(rng).map(|v| (a as u16, v)))
            .collect();
        let mut ends = Vec::with_capacity(spans as usize);
        let mut arrivals = Vec::with_capacity(spans as usize);
        let mut skews = Vec::with_capacity(spans as usize);
        let chunks = self.arrival_chunks.map(|k| k.clamp(1, spans));
        let per_chunk = chunks.map(|k| spans.div_ceil(k));
        for i in 0..spans {
            // The root (last) ends at the trace's end; children end before it.
            let end = if i + 1 == spans {
                start + duration
            } else {
                start + duration * rng.f64()
            };
            let mut at = match (chunks, per_chunk) {
                (Some(k), Some(per)) => {
                    let j = (i / per).min(k - 1) + 1;
                    start
                        + duration.min(self.arrival_spread.as_secs_f64()) * f64::from(j)
                            / f64::from(k)
                }
                _ => end + self.arrival_spread.as_secs_f64() * rng.f64(),
            };
            if self.late_share > 0.0 && rng.f64() < self.late_share {
                at = start + duration + self.late_by.as_secs_f64();
            }
            ends.push(end);
            arrivals.push(at);
            let skew = self.clock_skew.as_secs_f64();
            skews.push(if skew > 0.0 {
                skew * (2.0 * rng.f64() - 1.0)
            } else {
                0.0
            });
        }
        SampledTrace {
            id,
            start,
            duration,
            error,
            slow,
            ends,
            arrivals,
            skews,
            attrs,
        }
    }
}

impl SampledTrace {
    /// What a gateway knows of spans `idx` of this trace (as the policies read it): their
    /// timestamps (skewed, from a fixed epoch), the error status on span 0 of an error
    /// trace, the root (the last span), `span_bytes` each.
    pub fn summary(&self, idx: impl IntoIterator<Item = usize>, span_bytes: u64) -> TraceSummary {
        const EPOCH_NS: f64 = 1.7e18;
        let last = self.ends.len().saturating_sub(1);
        let mut summary = TraceSummary::default();
        for i in idx {
            let skew = self.skews[i];
            let start = EPOCH_NS + (self.start + skew) * 1e9;
            let end = EPOCH_NS + (self.ends[i] + skew) * 1e9;
            let status = if self.error && i == 0 { 2 } else { 0 };
            summary.add_span(start as u64, end as u64, status, i == last);
            summary.bytes += span_bytes;
        }
        summary
    }

    /// Adds to `summary` the attributes spans `idx` of this trace carry that a plan reads
    /// (`plan_keys`, [`tailgate_gateway::PolicyPlan::attribute_keys`]), as a gateway's scan
    /// records them. `dists` is the workload's `attributes`.
    pub fn add_attributes(
        &self,
        idx: &[usize],
        dists: &[AttributeDist],
        plan_keys: &[String],
        summary: &mut TraceSummary,
    ) {
        if self.attrs.is_empty() || idx.is_empty() || plan_keys.is_empty() {
            return;
        }
        let has_root = idx.contains(&self.ends.len().saturating_sub(1));
        for &(a, v) in &self.attrs {
            let Some(dist) = dists.get(usize::from(a)) else {
                continue;
            };
            let Some(key) = plan_keys.iter().position(|k| *k == dist.key) else {
                continue;
            };
            if dist.on == AttrPlace::Root && !has_root {
                continue;
            }
            summary.add_attrs(&[TraceAttr {
                key: key as u16,
                value: dist.values[usize::from(v)].value(),
                from_resource: dist.on == AttrPlace::Resource,
                from_root: has_root,
            }]);
        }
    }
}

fn lognormal_mean(median: f64, sigma: f64) -> f64 {
    median * (sigma * sigma / 2.0).exp()
}

/// A lognormal draw (Box–Muller).
fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    let u1 = rng.f64().max(1e-12);
    let u2 = rng.f64();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    median * (sigma * z).exp()
}

/// Parses a rate such as `5M`, `250k`, `1.5e6` (spans per second).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (digits, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M' | 'm') => (&t[..t.len() - 1], 1e6),
        Some('G' | 'g') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    match digits.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
        Ok(v) if v.is_finite() => Err(format!(
            "{s:?}: a rate must be above 0 spans per second (250k, 5M, 1.5e6)"
        )),
        _ => Err(format!(
            "{s:?} is not a rate: write spans per second as 250k, 5M or 1.5e6"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_suffixes_and_profiles_vary_as_written() {
        assert_eq!(parse_rate("5M"), Ok(5e6));
        assert!(parse_rate("0").unwrap_err().contains("must be above 0"));
        assert!(parse_rate("-3k").unwrap_err().contains("must be above 0"));
        assert!(parse_rate("fast").unwrap_err().contains("is not a rate"));
        assert_eq!(parse_rate("250k"), Ok(250e3));
        assert_eq!(parse_rate("1.5e6"), Ok(1.5e6));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("-1").is_err());
        let b = Rate::Bursts {
            base: 1.0,
            peak: 5.0,
            every: Duration::from_secs(60),
            length: Duration::from_secs(10),
        };
        assert_eq!((b.at(5.0), b.at(30.0), b.at(65.0)), (5.0, 1.0, 5.0));
        let d = Rate::Diurnal {
            mean: 100.0,
            amplitude: 0.5,
            period: Duration::from_secs(400),
        };
        assert!((d.at(100.0) - 150.0).abs() < 1e-6 && (d.at(300.0) - 50.0).abs() < 1e-6);
    }

    /// A root-only attribute is seen only by a part holding the root; a span attribute by
    /// any part; keys no policy reads are not recorded.
    #[test]
    fn attributes_are_seen_where_the_clients_set_them() {
        let yaml = "rate: {kind: steady, spans_per_second: 1}\ntrace_size: {kind: fixed, spans: 3}\nduration: {kind: fixed, value: 1s}\nattributes:\n  - {key: tier, values: [gold], on: root}\n  - {key: code, values: [500]}\n  - {key: unread, values: [true]}\n";
        let w: Workload = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(w.check(), Ok(()));
        let t = w.sample_trace(&mut fastrand::Rng::with_seed(1), 0.0, false);
        assert_eq!(t.attrs.len(), 3);
        let keys = ["code".to_string(), "tier".to_string()];
        let seen = |idx: &[usize]| {
            let mut s = TraceSummary::default();
            t.add_attributes(idx, &w.attributes, &keys, &mut s);
            s.attrs
                .iter()
                .map(|a| (a.key, a.value.clone(), a.from_root))
                .collect::<Vec<_>>()
        };
        let gold = AttrValue::Str(bytes::Bytes::from_static(b"gold"));
        assert_eq!(seen(&[0, 1]), vec![(0, AttrValue::Int(500), false)]);
        assert_eq!(
            seen(&[1, 2]),
            vec![(1, gold, true), (0, AttrValue::Int(500), true)]
        );
        let res: Workload =
            serde_yaml_ng::from_str(&yaml.replace("on: root", "on: resource")).unwrap();
        let t = res.sample_trace(&mut fastrand::Rng::with_seed(1), 0.0, false);
        let mut s = TraceSummary::default();
        t.add_attributes(&[0], &res.attributes, &keys, &mut s);
        assert!(s
            .attrs
            .iter()
            .any(|a| a.key == 1 && a.from_resource && !a.from_root));
        let bad: Workload =
            serde_yaml_ng::from_str(&yaml.replace("[500]}", "[500], shares: [1.5]}")).unwrap();
        assert_eq!(bad.check().unwrap_err().0, "workload.attributes");
    }
}
