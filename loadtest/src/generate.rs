//! Synthetic traces. Each trace has a kind (error, slow or normal), a span count, a
//! duration and realistic timestamps; its spans are cut into chunks that become due over the
//! trace's duration, as agents export child spans before their root ends. Every span is
//! marked with the trace's kind and span count, so a sink can check completeness alone.
//!
//! Seeded: the same seed gives the same trace ids and kinds.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span, Status};
use tokio::time::Duration;

/// Attribute naming the trace's kind: `error`, `slow` or `normal`.
pub const ATTR_KIND: &str = "tailgate.test.kind";
/// Attribute giving the trace's span count.
pub const ATTR_SPANS: &str = "tailgate.test.spans";
/// Services the spans are spread over (one resource each).
pub const SERVICES: [&str; 5] = ["frontend", "checkout", "cart", "payment", "inventory"];

/// What a trace is made to test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TraceKind {
    /// Has a span with status ERROR; lasts under the slow threshold.
    Error,
    /// Lasts over the slow threshold; no errors.
    Slow,
    /// Neither.
    Normal,
}

impl TraceKind {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Error => "error",
            TraceKind::Slow => "slow",
            TraceKind::Normal => "normal",
        }
    }

    /// Parses the attribute value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "error" => Some(TraceKind::Error),
            "slow" => Some(TraceKind::Slow),
            "normal" => Some(TraceKind::Normal),
            _ => None,
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Mean spans per trace (actual counts vary ±50%).
    pub spans_per_trace: u32,
    /// Share of error traces.
    pub error_share: f64,
    /// Share of slow traces.
    pub slow_share: f64,
    /// Extra string attributes per span.
    pub attrs_per_span: u32,
    /// Slow traces last longer than this; others shorter.
    pub slow_threshold: Duration,
    /// Longest a trace's spans keep arriving.
    pub max_spread: Duration,
    /// RNG seed.
    pub seed: u64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            spans_per_trace: 10,
            error_share: 0.05,
            slow_share: 0.05,
            attrs_per_span: 10,
            slow_threshold: Duration::from_millis(500),
            max_spread: Duration::from_millis(1500),
            seed: 1,
        }
    }
}

/// A generated trace: its spans in arrival chunks.
#[derive(Debug)]
pub struct GenTrace {
    /// Trace id.
    pub id: [u8; 16],
    /// Kind.
    pub kind: TraceKind,
    /// Chunks of `(service index, span)`, in the order they become due.
    pub chunks: Vec<Vec<(usize, Span)>>,
    /// Offset from the trace's start at which each chunk is due.
    pub due: Vec<Duration>,
    /// Total spans.
    pub spans: u32,
}

/// What a trace's spans share, drawn before any span is made.
struct TraceShape {
    id: [u8; 16],
    kind: TraceKind,
    /// Span count.
    n: u32,
    start_unix_nano: u64,
    /// Duration in nanoseconds.
    duration: u64,
    root_id: [u8; 8],
    error_span: Option<u32>,
    trace_no: usize,
}

/// Generates traces.
pub struct Generator {
    cfg: GenConfig,
    rng: fastrand::Rng,
}

impl Generator {
    /// A generator.
    pub fn new(cfg: GenConfig) -> Self {
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Generator { cfg, rng }
    }

    /// The next trace, starting at `start_unix_nano`.
    pub fn next_trace(&mut self, start_unix_nano: u64) -> GenTrace {
        let shape = self.draw_shape(start_unix_nano);
        let spans: Vec<(usize, Span)> = (0..shape.n).map(|i| self.make_span(&shape, i)).collect();
        let (chunks, due) = self.cut_into_chunks(spans, shape.n, shape.duration);
        GenTrace {
            id: shape.id,
            kind: shape.kind,
            chunks,
            due,
            spans: shape.n,
        }
    }

    /// Draws the trace-wide values: id, kind, span count, duration, root id, error span.
    fn draw_shape(&mut self, start_unix_nano: u64) -> TraceShape {
        let mut id = self.rng.u128(1..).to_be_bytes();
        if id == [0; 16] {
            id[15] = 1;
        }
        let kind = self.draw_kind();
        let rng = &mut self.rng;
        let mean = self.cfg.spans_per_trace.max(1);
        let n = rng.u32((mean / 2).max(1)..=(mean + mean / 2).max(1));
        let slow_ms = self.cfg.slow_threshold.as_millis() as u64;
        let duration_ms = match kind {
            TraceKind::Slow => rng.u64(slow_ms + 100..=slow_ms * 3),
            _ => rng.u64(5..slow_ms.saturating_sub(100).max(6)),
        };
        let duration = duration_ms * 1_000_000;
        let root_id = rng.u64(1..).to_be_bytes();
        let error_span = (kind == TraceKind::Error).then(|| rng.u32(0..n));
        let trace_no = rng.usize(..);
        TraceShape {
            id,
            kind,
            n,
            start_unix_nano,
            duration,
            root_id,
            error_span,
            trace_no,
        }
    }

    /// Draws the trace's kind from the configured error and slow shares.
    fn draw_kind(&mut self) -> TraceKind {
        let roll = self.rng.f64();
        if roll < self.cfg.error_share {
            TraceKind::Error
        } else if roll < self.cfg.error_share + self.cfg.slow_share {
            TraceKind::Slow
        } else {
            TraceKind::Normal
        }
    }

    /// Makes span `i` of the trace (span 0 is the root) with its service index.
    fn make_span(&mut self, shape: &TraceShape, i: u32) -> (usize, Span) {
        let (start, end) = self.draw_span_times(shape, i);
        let attributes = self.span_attributes(shape);
        let is_error = shape.error_span == Some(i);
        let root_id = shape.root_id;
        (
            (shape.trace_no + i as usize) % SERVICES.len(),
            Span {
                trace_id: shape.id.to_vec(),
                span_id: if i == 0 {
                    root_id.to_vec()
                } else {
                    self.rng.u64(1..).to_be_bytes().to_vec()
                },
                parent_span_id: if i == 0 { Vec::new() } else { root_id.to_vec() },
                name: if i == 0 {
                    "GET /checkout".into()
                } else {
                    format!("step-{i}")
                },
                kind: if i == 0 {
                    span::SpanKind::Server as i32
                } else {
                    span::SpanKind::Internal as i32
                },
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                status: Some(span_status(is_error)),
                ..Default::default()
            },
        )
    }

    /// Start and end of span `i`: the root spans the whole trace, children a part of it.
    fn draw_span_times(&mut self, shape: &TraceShape, i: u32) -> (u64, u64) {
        let (base, duration) = (shape.start_unix_nano, shape.duration);
        if i == 0 {
            (base, base + duration)
        } else {
            let s = self.rng.u64(0..=duration / 2);
            let e = s + self.rng.u64(0..=duration - s);
            (base + s, base + e)
        }
    }

    /// The span's attributes: the kind and span-count marks, then random string attributes.
    fn span_attributes(&mut self, shape: &TraceShape) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(self.cfg.attrs_per_span as usize + 2);
        attributes.push(kv_str(ATTR_KIND, shape.kind.as_str()));
        attributes.push(KeyValue {
            key: ATTR_SPANS.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(i64::from(shape.n))),
            }),
            ..Default::default()
        });
        for a in 0..self.cfg.attrs_per_span {
            let v: String = (0..16).map(|_| self.rng.alphanumeric()).collect();
            attributes.push(kv_str(&format!("attr.{a}"), &v));
        }
        attributes
    }

    /// Cuts the spans (root last) into up to three chunks; returns them and when each is due.
    fn cut_into_chunks(
        &self,
        mut spans: Vec<(usize, Span)>,
        n: u32,
        duration: u64,
    ) -> (Vec<Vec<(usize, Span)>>, Vec<Duration>) {
        spans.rotate_left(1);
        let parts = (n as usize).min(3);
        let spread = Duration::from_nanos(duration).min(self.cfg.max_spread);
        let mut chunks: Vec<Vec<(usize, Span)>> = (0..parts).map(|_| Vec::new()).collect();
        let per = (n as usize).div_ceil(parts);
        for (i, s) in spans.into_iter().enumerate() {
            chunks[(i / per).min(parts - 1)].push(s);
        }
        chunks.retain(|c| !c.is_empty());
        let k = chunks.len() as u32;
        let due = (1..=k).map(|j| spread * j / k).collect();
        (chunks, due)
    }
}

/// The span's status: ERROR with a message on the trace's error span, UNSET otherwise.
fn span_status(is_error: bool) -> Status {
    Status {
        message: if is_error {
            "payment declined".into()
        } else {
            String::new()
        },
        code: if is_error {
            status::StatusCode::Error as i32
        } else {
            status::StatusCode::Unset as i32
        },
    }
}

/// A string attribute.
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_durations_and_chunks_are_as_specified() {
        let mut g = Generator::new(GenConfig::default());
        let mut kinds = std::collections::HashMap::new();
        for _ in 0..5000 {
            let t = g.next_trace(1_000_000_000_000);
            *kinds.entry(t.kind).or_insert(0) += 1;
            let all: Vec<&Span> = t.chunks.iter().flatten().map(|(_, s)| s).collect();
            assert_eq!(all.len() as u32, t.spans);
            let start = all.iter().map(|s| s.start_time_unix_nano).min().unwrap();
            let end = all.iter().map(|s| s.end_time_unix_nano).max().unwrap();
            let ms = (end - start) / 1_000_000;
            assert_eq!(
                ms >= 500,
                t.kind == TraceKind::Slow,
                "{:?} lasted {ms} ms",
                t.kind
            );
            let errors = all
                .iter()
                .filter(|s| s.status.as_ref().unwrap().code == 2)
                .count();
            assert_eq!(errors > 0, t.kind == TraceKind::Error);
            // The root arrives last.
            assert!(t
                .chunks
                .last()
                .unwrap()
                .last()
                .unwrap()
                .1
                .parent_span_id
                .is_empty());
            assert!(t.due.windows(2).all(|w| w[0] <= w[1]));
        }
        let errors = f64::from(kinds[&TraceKind::Error]) / 5000.0;
        assert!((errors - 0.05).abs() < 0.015, "error share {errors}");
    }
}
