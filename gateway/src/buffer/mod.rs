//! The trace buffer's front: the gateway's `SpanSink`. It scans each request, builds a
//! [`BufferedSpan`] per span (views into the request's bytes, no copy), and hands each
//! shard its spans over a bounded channel. A request is accepted only when every shard it
//! touches has room, so a refusal never leaves part of a request behind (no duplicates when
//! the sender retries).
//!
//! Data flows on to [`shard`], which owns the traces, their deadlines and decisions.

pub mod hash;
pub mod shard;
pub mod trace;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tailgate_core::receive::{Accepted, Refusal, SpanSink, DEFAULT_RETRY_AFTER};
use tailgate_core::ring::Ring;
use tailgate_core::wire::attrs::{self, AttrValue};
use tailgate_core::wire::{span_fields, Scan};
use tokio::sync::mpsc;

use crate::metrics::GatewayStats;
use crate::policy::plan::SpanFieldKeys;
use crate::policy::PolicyPlan;
pub use trace::{BufferedSpan, RequestBytes, TraceAttr, TraceSummary, TraceView};

/// One span on its way to a shard.
#[derive(Debug, Clone)]
pub struct IncomingSpan {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Start (unix ns).
    pub start: u64,
    /// End (unix ns).
    pub end: u64,
    /// Status code.
    pub status_code: u8,
    /// Whether it is a root span.
    pub is_root: bool,
    /// Values of the attributes the plan reads (its own and its resource's); empty, and not
    /// allocated, when the plan reads none.
    pub attrs: Vec<TraceAttr>,
    /// Its bytes.
    pub span: BufferedSpan,
}

/// The spans of a scanned request (`scan` has just scanned `body`), each with the values of
/// the attributes and span fields `plan` reads. Spans are views into `body` and one shared
/// buffer of resource and scope headers: nothing is copied per span.
pub fn incoming_spans(body: &Bytes, scan: &mut Scan, plan: &PolicyPlan) -> Vec<IncomingSpan> {
    // One shared buffer for all headers of this request; spans are views into `body`.
    let headers = Bytes::from(std::mem::take(&mut scan.headers));
    // Attributes are read only for keys the plan in force uses; resources once each.
    let keys = plan.attribute_keys();
    let resource_attrs: Vec<Vec<TraceAttr>> = if keys.is_empty() {
        Vec::new()
    } else {
        scan.resources
            .iter()
            .map(|r| {
                let mut out = Vec::new();
                let h = headers.slice(r.header.start as usize..r.header.end as usize);
                attrs::resource_attributes(&h, keys, |key, value| {
                    out.push(TraceAttr {
                        key,
                        value,
                        from_resource: true,
                        from_root: false,
                    });
                });
                out
            })
            .collect()
    };
    let fields = plan.span_field_keys();
    // Header ranges: resources first, then scopes.
    let n_resources = scan.resources.len() as u32;
    let header_ranges = scan
        .resources
        .iter()
        .map(|r| (r.header.start, r.header.end))
        .chain(scan.scopes.iter().map(|s| (s.header.start, s.header.end)))
        .collect();
    let req = Arc::new(RequestBytes {
        body: body.clone(),
        headers,
        header_ranges,
    });
    let mut out = Vec::with_capacity(scan.spans.len());
    for s in &scan.spans {
        let scope = &scan.scopes[s.scope as usize];
        let span = BufferedSpan::new(&req, s.range.clone(), scope.resource, n_resources + s.scope);
        let is_root = s.is_root();
        let mut span_attrs = Vec::new();
        if !keys.is_empty() {
            let span_bytes = span.span_bytes();
            attrs::span_attributes(&span_bytes, keys, |key, value| {
                span_attrs.push(TraceAttr {
                    key,
                    value,
                    from_resource: false,
                    from_root: is_root,
                });
            });
            if !fields.is_empty() {
                span_field_attrs(&span_bytes, fields, is_root, &mut span_attrs);
            }
            let from_resource = &resource_attrs[scope.resource as usize];
            span_attrs.extend(from_resource.iter().map(|a| TraceAttr {
                from_root: is_root,
                ..a.clone()
            }));
        }
        out.push(IncomingSpan {
            trace_id: s.trace_id,
            start: s.start_unix_nano,
            end: s.end_unix_nano,
            status_code: s.status_code,
            is_root,
            attrs: span_attrs,
            span,
        });
    }
    out
}

/// Records the span fields the plan reads (`trace_state` entries, the root span's name,
/// the sampled flag) as attributes under the plan's pseudo-keys.
fn span_field_attrs(span: &Bytes, keys: &SpanFieldKeys, is_root: bool, out: &mut Vec<TraceAttr>) {
    let f = span_fields::span_fields(span);
    let mut push = |key: u16, value: AttrValue| {
        out.push(TraceAttr {
            key,
            value,
            from_resource: false,
            from_root: is_root,
        })
    };
    if !f.trace_state.is_empty() {
        let ts = &span[f.trace_state.clone()];
        for (name, key) in &keys.tracestate {
            if let Some(v) = span_fields::tracestate_get(ts, name.as_bytes()) {
                push(*key, AttrValue::Str(span.slice_ref(v)));
            }
        }
    }
    if let (Some(key), true) = (keys.root_name, is_root) {
        push(key, AttrValue::Str(span.slice(f.name)));
    }
    if let (Some(key), true) = (keys.sampled_flag, f.flags & span_fields::FLAG_SAMPLED != 0) {
        push(key, AttrValue::Bool(true));
    }
}

/// A message to a shard.
#[derive(Debug)]
pub enum ShardMsg {
    /// Spans to buffer.
    Spans(Vec<IncomingSpan>),
}

/// The gateway's receive-side stage.
pub struct TraceBuffer {
    plan: crate::reload::SharedPlan,
    shards: Vec<mpsc::Sender<ShardMsg>>,
    stats: Arc<GatewayStats>,
    enqueue_timeout: Duration,
    max_buffered_bytes: u64,
}

// === impl TraceBuffer ===

impl TraceBuffer {
    /// A buffer in front of the given shard channels.
    pub fn new(
        plan: crate::reload::SharedPlan,
        shards: Vec<mpsc::Sender<ShardMsg>>,
        stats: Arc<GatewayStats>,
        config: &crate::config::BufferConfig,
    ) -> Self {
        TraceBuffer {
            plan,
            shards,
            stats,
            enqueue_timeout: config.enqueue_timeout,
            max_buffered_bytes: config.max_buffered_bytes,
        }
    }

    /// Which shard owns a trace.
    pub fn shard_of(trace_id: &[u8; 16], shards: usize) -> usize {
        // The ring places traces by the high bits of the same hash; within one gateway's
        // share the low bits are still uniform.
        (Ring::hash(trace_id) % shards as u64) as usize
    }
}

impl SpanSink for TraceBuffer {
    fn refused(&self, refusal: &Refusal) {
        self.stats.refused_requests[refusal.reason_index()].add(1);
    }

    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        let mut scan = Scan::default();
        let scanned = scan
            .scan_request(&body)
            .inspect_err(|_| self.stats.malformed_requests.add(1))?;
        let (valid, rejected, message) = (scanned.valid, scanned.rejected, scanned.message);
        self.stats.received_spans.add(valid + rejected);
        self.stats.rejected_spans.add(rejected);
        if valid == 0 {
            return Ok(Accepted {
                rejected_spans: rejected,
                message,
            });
        }

        // Above the hard limit (buffered traces plus kept spans waiting for the backend),
        // refuse before doing any work: the sender backs off and retries while early
        // decisions and the exporter bring the total down.
        if self.stats.held_bytes() >= self.max_buffered_bytes {
            self.stats.refused_spans.add(valid);
            self.stats.refused_spans_memory.add(valid);
            return Err(Refusal::Overloaded {
                message: format!(
                    "gateway buffer is over its limit of {} bytes; retry later",
                    self.max_buffered_bytes
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        let plan = self.plan.load();
        let n = self.shards.len();
        let spans = incoming_spans(&body, &mut scan, &plan);
        // Sized for an even spread plus slack, so the vectors do not grow while filling.
        let each = spans.len() / n + spans.len() / 8 + 1;
        let mut per_shard: Vec<Vec<IncomingSpan>> =
            (0..n).map(|_| Vec::with_capacity(each)).collect();
        for span in spans {
            per_shard[Self::shard_of(&span.trace_id, n)].push(span);
        }

        // Reserve room in every shard first: all or nothing.
        let mut permits = Vec::with_capacity(n);
        for (i, spans) in per_shard.iter().enumerate() {
            if spans.is_empty() {
                continue;
            }
            match tokio::time::timeout(self.enqueue_timeout, self.shards[i].reserve()).await {
                Ok(Ok(permit)) => permits.push((i, permit)),
                Ok(Err(_)) => {
                    self.stats.refused_spans.add(valid);
                    return Err(Refusal::Unavailable {
                        message: "gateway is shutting down".into(),
                        retry_after: DEFAULT_RETRY_AFTER,
                    });
                }
                Err(_) => {
                    self.stats.refused_spans.add(valid);
                    return Err(Refusal::Overloaded {
                        message: "gateway buffer is full; retry later".into(),
                        retry_after: DEFAULT_RETRY_AFTER,
                    });
                }
            }
        }
        // Counted as live from the moment they are queued, so "nothing in flight" is never
        // read while spans sit in a shard's channel.
        self.stats.live_spans.add(valid);
        for (i, permit) in permits {
            permit.send(ShardMsg::Spans(std::mem::take(&mut per_shard[i])));
        }
        Ok(Accepted {
            rejected_spans: rejected,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    #[test]
    fn span_fields_the_plan_reads_become_attributes() {
        let yaml = "policies:\n  - name: a\n    type: adaptive_rate\n    adaptive_rate: {target_traces_per_second: 10, keys: [root.name]}\n  - {name: t, type: trace_state, trace_state: {key: tier, values: [gold]}}\n  - {name: f, type: trace_flags}\n";
        let plan = PolicyPlan::compile(
            &crate::policy::PolicyFile::parse(std::path::Path::new("p.yaml"), yaml).unwrap(),
        );
        let span = |id: u8, parent: Option<u8>, name: &str, ts: &str, flags: u32| Span {
            trace_id: vec![1; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: name.into(),
            trace_state: ts.into(),
            flags,
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span(1, None, "GET /cart", "tier=gold", 0x101),
                        span(2, Some(1), "SELECT", "tier=silver", 0),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let body = Bytes::from(req.encode_to_vec());
        let mut scan = Scan::default();
        scan.scan_request(&body).unwrap();
        let spans = incoming_spans(&body, &mut scan, &plan);
        let keys = plan.attribute_keys();
        let key = |k: &str| keys.iter().position(|x| x == k).unwrap() as u16;
        let root = &spans[0].attrs;
        assert!(root.contains(&TraceAttr {
            key: key(crate::policy::field_keys::ROOT_NAME),
            value: AttrValue::Str(Bytes::from_static(b"GET /cart")),
            from_resource: false,
            from_root: true,
        }));
        assert!(root
            .iter()
            .any(|a| a.key == key("\0tracestate:tier") && a.value.as_str() == b"gold"));
        assert!(root
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::SAMPLED_FLAG)));
        // The child: no root name, its own tracestate value, no sampled flag.
        let child = &spans[1].attrs;
        assert!(!child
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::ROOT_NAME)));
        assert!(child
            .iter()
            .any(|a| a.key == key("\0tracestate:tier") && a.value.as_str() == b"silver"));
        assert!(!child
            .iter()
            .any(|a| a.key == key(crate::policy::field_keys::SAMPLED_FLAG)));
    }
}
