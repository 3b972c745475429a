//! The router's stage: scan a request, find each span's owner on the ring, re-frame one
//! request per owner from the original bytes, and forward the parts concurrently. The
//! sender's request completes when every part has been delivered or has failed.
//!
//! Outcomes: all parts delivered → success (with partial success for invalid spans); no
//! part delivered → `UNAVAILABLE`, so the sender retries the whole request and nothing is
//! duplicated; some parts delivered → partial success naming the failed spans, which are
//! counted as failed.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use tailgate_core::forward::GrpcClient;
use tailgate_core::receive::{Accepted, Refusal, SpanSink, DEFAULT_RETRY_AFTER};
use tailgate_core::ring::{Member, Ring};
use tailgate_core::telemetry::{Admin, Readiness};
use tailgate_core::wire::reframe::parts_of;
use tailgate_core::wire::{Reframer, Scan};

use crate::config::RouterConfig;
use crate::metrics::RouterStats;

/// The router stage.
pub struct Router {
    ring: Ring,
    clients: Vec<GrpcClient>,
    stats: RouterStats,
    ready: Readiness,
}

// === impl Router ===

impl Router {
    /// A router over the static member list of `config`.
    pub fn new(config: &RouterConfig) -> Result<Self, tailgate_core::forward::ForwardError> {
        let ring = Ring::new(
            config
                .members
                .static_list
                .iter()
                .map(|m| Member::new(m.as_str())),
        );
        let clients = ring
            .members()
            .iter()
            .map(|m| {
                GrpcClient::new(
                    m.as_str(),
                    &[],
                    config.forward.timeout,
                    config.forward.retry.clone(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let stats = RouterStats::default();
        stats.members.set(ring.members().len() as u64);
        Ok(Router {
            ring,
            clients,
            stats,
            ready: Readiness::default(),
        })
    }

    /// The router's counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Readiness shown on `/readyz`.
    pub fn readiness(&self) -> &Readiness {
        &self.ready
    }

    /// Builds one request per owner: `(member index, span count, body)`.
    fn split(&self, body: &[u8], scan: &Scan) -> Vec<(usize, u64, Bytes)> {
        // (owner, span index), sorted by owner and then body order: each owner's spans form
        // one run in their original order, so the re-framer keeps the original grouping.
        let mut owned: Vec<(u32, u32)> = scan
            .spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    self.ring.owner_index(&s.trace_id).unwrap_or(0) as u32,
                    i as u32,
                )
            })
            .collect();
        owned.sort_unstable();
        let mut reframer = Reframer::default();
        let mut parts = Vec::with_capacity(owned.len());
        let mut out = BytesMut::with_capacity(body.len() + 64 * self.clients.len());
        let mut result = Vec::new();
        for run in owned.chunk_by(|a, b| a.0 == b.0) {
            parts.clear();
            parts.extend(run.iter().map(|&(_, i)| parts_of(body, scan, i as usize)));
            reframer.encode(&parts, &mut out);
            result.push((run[0].0 as usize, run.len() as u64, out.split().freeze()));
        }
        result
    }
}

impl SpanSink for Router {
    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        self.stats.requests.add(1);
        let mut scan = Scan::default();
        if let Err(e) = scan.scan(&body) {
            self.stats.malformed_requests.add(1);
            return Err(Refusal::Invalid(format!(
                "malformed ExportTraceServiceRequest: {e}"
            )));
        }
        let total = scan.spans.len() as u64 + u64::from(scan.rejected);
        self.stats.received_spans.add(total);
        self.stats.rejected_spans.add(u64::from(scan.rejected));
        let invalid_message = scan
            .first_defect
            .map(|d| format!("{} span(s) rejected: {d}", scan.rejected))
            .unwrap_or_default();
        if scan.spans.is_empty() {
            return Ok(Accepted {
                rejected_spans: u64::from(scan.rejected),
                message: invalid_message,
            });
        }
        if self.clients.is_empty() {
            self.stats.refused_spans.add(scan.spans.len() as u64);
            return Err(Refusal::Unavailable {
                message: "no gateways are known".into(),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        let parts = self.split(&body, &scan);
        drop(scan);
        let sends = parts.into_iter().map(|(member, spans, part)| {
            let client = &self.clients[member];
            async move { (spans, client.send(part).await) }
        });
        let mut delivered = 0u64;
        let mut rejected_downstream = 0u64;
        let mut failed = 0u64;
        let mut last_error = None;
        for (spans, result) in join_all(sends).await {
            match result {
                Ok(d) => {
                    delivered += spans - d.rejected_spans.min(spans);
                    rejected_downstream += d.rejected_spans.min(spans);
                }
                Err(e) => {
                    tracing::warn!(error = %e, spans, "Forwarding to a gateway failed.");
                    failed += spans;
                    last_error = Some(e);
                }
            }
        }
        self.stats.forwarded_spans.add(delivered);
        if delivered == 0 && rejected_downstream == 0 {
            // Nothing reached a gateway: the sender may retry all of it without duplicates.
            self.stats.refused_spans.add(failed);
            return Err(Refusal::Unavailable {
                message: format!(
                    "no gateway accepted the request: {}",
                    last_error.map(|e| e.to_string()).unwrap_or_default()
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        self.stats.failed_spans.add(failed + rejected_downstream);
        // Everything not delivered is rejected from the sender's point of view.
        let rejected = total.saturating_sub(delivered);
        let mut message = invalid_message;
        if failed + rejected_downstream > 0 {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(&format!(
                "{} span(s) could not be delivered to their gateway",
                failed + rejected_downstream
            ));
        }
        Ok(Accepted {
            rejected_spans: rejected,
            message,
        })
    }
}

impl Admin for Router {
    fn render_metrics(&self) -> String {
        self.stats.render()
    }

    fn ready(&self) -> bool {
        self.ready.get()
    }
}

/// A shared router handle.
pub type SharedRouter = Arc<Router>;
