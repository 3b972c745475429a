//! A buffered trace: its spans as encoded bytes, and the small summary the policies read.
//!
//! A span is kept as three `Bytes` handles: its own bytes and the resource and scope header
//! bytes of the request it came in, all views into buffers shared by the spans of that
//! request, so nothing is copied per span.

use bytes::Bytes;
use tailgate_core::wire::attrs::AttrValue;
use tailgate_core::wire::SpanParts;

/// One attribute value seen in a trace, for the attribute policies.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceAttr {
    /// Index into the plan's attribute keys.
    pub key: u16,
    /// The value.
    pub value: AttrValue,
    /// Whether it came from a resource (else from a span).
    pub from_resource: bool,
    /// Whether it came from the root span or the root span's resource.
    pub from_root: bool,
}

/// Distinct attribute values kept per trace; past it, further values are not recorded.
pub const MAX_TRACE_ATTRS: usize = 64;

/// One span waiting for its trace's decision.
#[derive(Debug, Clone)]
pub struct BufferedSpan {
    /// The span message's bytes.
    pub span: Bytes,
    /// Its resource's header bytes.
    pub resource: Bytes,
    /// Its scope's header bytes.
    pub scope: Bytes,
}

impl BufferedSpan {
    /// The span as re-framer input.
    pub fn parts(&self) -> SpanParts<'_> {
        SpanParts {
            resource: &self.resource,
            scope: &self.scope,
            span: &self.span,
        }
    }

    /// Bytes this span holds on to (its share of the encoded data).
    pub fn encoded_len(&self) -> usize {
        self.span.len()
    }
}

/// What the policies know of a trace, updated per span in O(1) (plus the wanted attributes,
/// which only plans with attribute policies collect).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSummary {
    /// Spans seen.
    pub span_count: u32,
    /// Earliest span start (unix ns).
    pub min_start: u64,
    /// Latest span end (unix ns).
    pub max_end: u64,
    /// Bit `1 << code` set for each status code seen.
    pub status_mask: u8,
    /// Whether the root span has arrived.
    pub has_root: bool,
    /// Encoded bytes of the spans seen.
    pub bytes: u64,
    /// Distinct values of the attributes the plan reads (empty when it reads none).
    pub attrs: Vec<TraceAttr>,
}

impl Default for TraceSummary {
    fn default() -> Self {
        TraceSummary {
            span_count: 0,
            min_start: u64::MAX,
            max_end: 0,
            status_mask: 0,
            has_root: false,
            bytes: 0,
            attrs: Vec::new(),
        }
    }
}

impl TraceSummary {
    /// Folds one span in.
    pub fn add_span(&mut self, start: u64, end: u64, status_code: u8, is_root: bool) {
        self.span_count += 1;
        self.min_start = self.min_start.min(start);
        self.max_end = self.max_end.max(end);
        self.status_mask |= 1u8.checked_shl(u32::from(status_code)).unwrap_or(0);
        self.has_root |= is_root;
    }

    /// Records attribute values, once each.
    pub fn add_attrs(&mut self, attrs: &[TraceAttr]) {
        for a in attrs {
            if self.attrs.len() < MAX_TRACE_ATTRS && !self.attrs.contains(a) {
                self.attrs.push(a.clone());
            }
        }
    }

    /// Latest end minus earliest start, 0 when the spans are inconsistent.
    pub fn duration_nanos(&self) -> u64 {
        self.max_end.saturating_sub(self.min_start)
    }
}

/// What a policy sees of a trace.
#[derive(Debug, Clone, Copy)]
pub struct TraceView<'a> {
    /// The trace id.
    pub trace_id: &'a [u8; 16],
    /// The summary.
    pub summary: &'a TraceSummary,
    /// When the decision is made; rate-based policies measure their rates against it, so
    /// tests and `sim` can drive them with virtual time.
    pub now: tokio::time::Instant,
}

impl<'a> TraceView<'a> {
    /// A view decided now.
    pub fn new(trace_id: &'a [u8; 16], summary: &'a TraceSummary) -> Self {
        TraceView {
            trace_id,
            summary,
            now: tokio::time::Instant::now(),
        }
    }
}
