//! The router's counters: every span it receives ends up forwarded, rejected (invalid), or
//! failed (a gateway could not be reached within the retry bound), or its whole request is
//! refused back to the sender.
//!
//! Every router metric name is here, the per-gateway ones included, with its rendering into
//! a [`PromText`] at scrape time.

use tailgate_core::telemetry::{Counter, Gauge, PromText};

/// Counters of one router instance.
#[derive(Debug, Default)]
pub struct RouterStats {
    /// Requests received.
    pub requests: Counter,
    /// Spans in well-formed requests.
    pub received_spans: Counter,
    /// Spans delivered to and accepted by a gateway.
    pub forwarded_spans: Counter,
    /// Spans rejected for a defect (bad trace id), reported to the sender as partial success.
    pub rejected_spans: Counter,
    /// Of the rejected spans, those with a malformed field inside.
    pub rejected_malformed_spans: Counter,
    /// Of the rejected spans, those larger with their headers than their gateway has said
    /// it takes (they could never be delivered).
    pub rejected_too_large_spans: Counter,
    /// Spans in requests refused back to the sender (retryable): queues full, no gateway.
    pub refused_spans: Counter,
    /// Requests refused because the body is not a valid OTLP request.
    pub malformed_requests: Counter,
    /// Requests taken after their sender's `grpc-timeout` had passed (the sender may have
    /// sent them again: their spans may be forwarded twice).
    pub late_answers: Counter,
    /// Requests refused, by [`tailgate_core::receive::Refusal::REASONS`].
    pub refused_requests: [Counter; tailgate_core::receive::Refusal::REASONS.len()],
    /// Accepted spans that could not be delivered within the retry bound.
    pub failed_spans: Counter,
    /// Gateways known (discovered or listed).
    pub members: Gauge,
    /// Gateways in the ring (not marked down).
    pub healthy_members: Gauge,
    /// Member set changes.
    pub ring_changes: Counter,
    /// Accepted spans split again after their gateway left or went down.
    pub rerouted_spans: Counter,
    /// Requests held unread while the queues were full (flow control).
    pub held_requests: Counter,
    /// Of those, the requests refused unread after `forward.queue_wait`.
    pub refused_unread_requests: Counter,
    /// DNS discovery counters.
    pub discovery: std::sync::Arc<tailgate_core::members::DiscoveryStats>,
}

// === impl RouterStats ===

impl RouterStats {
    /// The Prometheus text format (0.0.4) of [`Self::render_into`].
    pub fn render(&self) -> String {
        let mut p = PromText::default();
        self.render_into(&mut p);
        p.finish()
    }

    /// Gathers every series of these stats into `p`.
    pub fn render_into(&self, p: &mut PromText) {
        p.metric(
            "tailgate_router_requests_total",
            "counter",
            "OTLP requests received.",
            &[],
            self.requests.get(),
        );
        p.metric(
            "tailgate_router_received_spans_total",
            "counter",
            "Spans received in well-formed requests.",
            &[],
            self.received_spans.get(),
        );
        p.metric(
            "tailgate_router_forwarded_spans_total",
            "counter",
            "Spans delivered to their gateway.",
            &[],
            self.forwarded_spans.get(),
        );
        p.metric(
            "tailgate_router_rejected_spans_total",
            "counter",
            "Spans rejected as invalid (partial success to the sender).",
            &[("reason", "invalid_trace_id")],
            self.rejected_spans
                .get()
                .saturating_sub(self.rejected_malformed_spans.get())
                .saturating_sub(self.rejected_too_large_spans.get()),
        );
        p.sample(
            "tailgate_router_rejected_spans_total",
            &[("reason", "malformed_span")],
            self.rejected_malformed_spans.get(),
        );
        p.sample(
            "tailgate_router_rejected_spans_total",
            &[("reason", "too_large")],
            self.rejected_too_large_spans.get(),
        );
        p.metric(
            "tailgate_router_refused_spans_total",
            "counter",
            "Spans in requests refused back to the sender.",
            &[],
            self.refused_spans.get(),
        );
        p.metric(
            "tailgate_router_malformed_requests_total",
            "counter",
            "Requests refused as malformed: protobuf the scan cannot read, or OTLP/JSON that does not convert.",
            &[],
            self.malformed_requests.get(),
        );
        p.metric(
            "tailgate_router_late_answers_total",
            "counter",
            "Requests taken after their sender's grpc-timeout had passed: the sender may have sent them again, so their spans may be forwarded twice.",
            &[],
            self.late_answers.get(),
        );
        tailgate_core::receive::Refusal::render_counts(
            p,
            "tailgate_router_refused_requests_total",
            &self.refused_requests,
        );
        tailgate_core::telemetry::render_closed_connections(
            p,
            "tailgate_router_closed_connections_total",
        );
        p.metric(
            "tailgate_router_tls_failed_handshakes_total",
            "counter",
            "TLS handshakes on the receivers that failed or timed out (no or a wrong client certificate, plaintext).",
            &[],
            tailgate_core::tls::failed_handshakes_total(),
        );
        p.metric(
            "tailgate_router_failed_spans_total",
            "counter",
            "Spans not delivered to their gateway within the retry bound.",
            &[],
            self.failed_spans.get(),
        );
        self.render_ring(p);
    }

    /// The gateways, the ring and DNS discovery.
    fn render_ring(&self, p: &mut PromText) {
        p.metric(
            "tailgate_router_members",
            "gauge",
            "Gateways known (discovered or listed).",
            &[],
            self.members.get(),
        );
        let more: [(&str, &str, &str, u64); 8] = [
            (
                "tailgate_router_healthy_members",
                "gauge",
                "Gateways not marked down: those on the ring (with every gateway down the ring keeps them all, so that data queues and probes go on, and this is 0).",
                self.healthy_members.get(),
            ),
            (
                "tailgate_router_ring_changes_total",
                "counter",
                "Times the member set changed.",
                self.ring_changes.get(),
            ),
            (
                "tailgate_router_rerouted_spans_total",
                "counter",
                "Accepted spans split again after their gateway left or went down.",
                self.rerouted_spans.get(),
            ),
            (
                "tailgate_router_held_requests_total",
                "counter",
                "Requests held unread while the queues were full: their senders were slowed by flow control.",
                self.held_requests.get(),
            ),
            (
                "tailgate_router_refused_unread_requests_total",
                "counter",
                "Requests refused unread (RESOURCE_EXHAUSTED) after waiting forward.queue_wait for room; their spans were never read, so they are not in refused_spans.",
                self.refused_unread_requests.get(),
            ),
            (
                "tailgate_router_dns_lookups_total",
                "counter",
                "DNS lookups of the gateways' name.",
                self.discovery.lookups.get(),
            ),
            (
                "tailgate_router_dns_failures_total",
                "counter",
                "DNS lookups that failed or were empty (the last good set was kept).",
                self.discovery.failures.get(),
            ),
            (
                "tailgate_router_dns_changes_total",
                "counter",
                "Times DNS returned a different member set.",
                self.discovery.changes.get(),
            ),
        ];
        for (name, kind, help, value) in more {
            p.metric(name, kind, help, &[], value);
        }
    }
}

/// Counters of one forwarder, labelled by member in `/metrics`.
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// Spans delivered.
    pub forwarded_spans: Counter,
    /// Bytes delivered.
    pub forwarded_bytes: Counter,
    /// Spans given up on after retries (or rejected by the gateway).
    pub failed_spans: Counter,
    /// Requests sent (after coalescing).
    pub requests: Counter,
    /// Requests the gateway refused as too large, whose spans were cut smaller and queued
    /// again.
    pub too_large_requests: Counter,
    /// Bytes queued now.
    pub queued_bytes: Gauge,
    /// Spans queued or in flight now.
    pub pending_spans: Gauge,
}

/// One gateway's forwarder as `/metrics` shows it.
#[derive(Debug)]
pub struct MemberSample<'a> {
    /// The gateway's address (`ip:port`), the `member` label.
    pub member: String,
    /// Its forwarder's counters.
    pub stats: &'a ForwarderStats,
    /// Whether it is in the ring (not marked down).
    pub up: bool,
    /// Requests it did not answer in time (see [`crate::forward::Forwarder::unanswered`]).
    pub unanswered: u64,
    /// The size its requests are cut to (see [`crate::forward::Forwarder::request_cap`]),
    /// 0 while none was learnt.
    pub request_cap: u64,
}

/// The per-gateway series: name, help, and the value of one member.
type MemberMetric = (&'static str, &'static str, fn(&MemberSample<'_>) -> u64);

const MEMBER_METRICS: [MemberMetric; 9] = [
    (
        "tailgate_router_member_forwarded_spans_total",
        "Spans delivered, per gateway.",
        |m| m.stats.forwarded_spans.get(),
    ),
    (
        "tailgate_router_member_forwarded_bytes_total",
        "Bytes delivered, per gateway.",
        |m| m.stats.forwarded_bytes.get(),
    ),
    (
        "tailgate_router_member_failed_spans_total",
        "Spans not delivered within the retry bound, per gateway.",
        |m| m.stats.failed_spans.get(),
    ),
    (
        "tailgate_router_member_requests_total",
        "Requests sent after coalescing, per gateway.",
        |m| m.stats.requests.get(),
    ),
    (
        "tailgate_router_member_unanswered_requests_total",
        "Attempts the gateway did not answer within forward.timeout (then sent again, or given up at the retry bound): it may have taken them, so their spans may arrive twice.",
        |m| m.unanswered,
    ),
    (
        "tailgate_router_member_too_large_requests_total",
        "Requests the gateway refused as too large (over its receive.max_request_bytes, or more than its buffer could hold): their spans were cut into requests of the size the gateway stated (its receive.max_request_bytes), or of half the size when it stated none (a buffer too small), and sent again, and later requests are cut to that size. Lower forward.max_request_bytes to what the gateways take.",
        |m| m.stats.too_large_requests.get(),
    ),
    (
        "tailgate_router_member_request_cap_bytes",
        "The size requests to the gateway are cut to: the receive.max_request_bytes it states in its answers, or a size learnt when it refused a larger request stating none (0: none known, requests go up to forward.max_request_bytes). A learnt size is tried larger one request at a time every ten minutes and on a new connection to the gateway: taken, the size rises to it.",
        |m| m.request_cap,
    ),
    (
        "tailgate_router_member_queued_bytes",
        "Bytes queued, per gateway.",
        |m| m.stats.queued_bytes.get(),
    ),
    (
        "tailgate_router_member_up",
        "1 when the gateway is in the ring, 0 when marked down.",
        |m| u64::from(m.up),
    ),
];

/// Gathers the per-gateway series of `members` into `p`.
pub fn render_members(p: &mut PromText, members: &[MemberSample<'_>]) {
    for (name, help, value) in MEMBER_METRICS {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        p.header(name, kind, help);
        for m in members {
            p.sample(name, &[("member", m.member.as_str())], value(m));
        }
    }
}
