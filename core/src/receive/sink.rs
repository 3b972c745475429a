//! What a receiver hands requests to: the [`SpanSink`] trait, its answer ([`Accepted`]),
//! where a request comes from ([`Origin`], read from the [`PEER_HEADER`]), the peer
//! method's constants, and the OTLP response encoding. Both receivers and the forwarding
//! client use these; this file depends only on [`super::status`].

use std::future::Future;

use bytes::Bytes;
use prost::Message;

use super::status::{Refusal, DEFAULT_RETRY_AFTER};

/// What [`SpanSink::ready`] lets through: held by the receiver until the stage has answered
/// the request, then dropped.
#[derive(Default)]
pub struct Ready(Option<Box<dyn Send + Sync>>);

impl Ready {
    /// A pass that keeps `guard` until the request is answered or dropped.
    pub fn holding(guard: impl Send + Sync + 'static) -> Self {
        Ready(Some(Box::new(guard)))
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Ready(guard)"
        } else {
            "Ready"
        })
    }
}

/// The stage a receiver hands request bodies to (the router's splitter, the gateway's
/// buffer, the load test's sink).
pub trait SpanSink: Send + Sync + 'static {
    /// Takes one encoded `ExportTraceServiceRequest`. `Ok` means every span not counted in
    /// [`Accepted::rejected_spans`] is now this stage's responsibility.
    fn export(&self, body: Bytes) -> impl Future<Output = Result<Accepted, Refusal>> + Send;

    /// [`SpanSink::export`] for a request that says where it comes from (the
    /// [`PEER_HEADER`]). Stages that do not care take every request alike.
    fn export_from(
        &self,
        body: Bytes,
        _origin: Origin,
    ) -> impl Future<Output = Result<Accepted, Refusal>> + Send {
        self.export(body)
    }

    /// Waits until this stage can take another request, before the receiver reads the
    /// request's body. A stage whose queues are full holds the request here: its body stays
    /// unread, HTTP/2 flow control then stops the sender once the stream's and the
    /// connection's windows are full, and a sender is slowed instead of refused after its
    /// data was read. `Err` refuses the request, still unread (counted through
    /// [`SpanSink::refused`]). Stages that never fill take every request at once.
    ///
    /// The receiver holds the returned [`Ready`] until the stage has answered the request
    /// (or the request is dropped), so a stage can count the requests it let through and
    /// has not yet taken. `first_bytes`: the length of the body's first frame, already
    /// received, or `None` when the request was not waited on for one (no body, or
    /// `Expect: 100-continue`; see [`super::primed`]): what the sender has shown it sends.
    fn ready(
        &self,
        first_bytes: Option<usize>,
    ) -> impl Future<Output = Result<Ready, Refusal>> + Send {
        let _ = first_bytes;
        async { Ok(Ready::default()) }
    }

    /// [`SpanSink::ready`] for a request from `sender` (its connection's address, when
    /// known), so that a stage can share the room it holds requests in among senders.
    fn ready_from(
        &self,
        first_bytes: Option<usize>,
        sender: Option<std::net::IpAddr>,
    ) -> impl Future<Output = Result<Ready, Refusal>> + Send {
        let _ = sender;
        self.ready(first_bytes)
    }

    /// Takes decisions another gateway hands over (see [`DECISIONS_PATH`]): a body of
    /// [`DECISION_RECORD_LEN`]-byte records. Returns how many were taken. Stages that keep
    /// no decisions refuse.
    fn decisions(&self, _body: Bytes) -> impl Future<Output = Result<u64, Refusal>> + Send {
        async {
            Err(Refusal::Invalid(
                "this server takes no trace decisions".into(),
            ))
        }
    }

    /// Told of every request the receivers refuse, whether the refusal came from
    /// [`SpanSink::export`] or from the receiver itself (too large, too slow, bad encoding),
    /// so that the stage can count refusals by [`Refusal::reason`].
    fn refused(&self, _refusal: &Refusal) {}

    /// Told instead of [`SpanSink::refused`] of a request refused as too large from a
    /// sender that cuts such a request and sends it again ([`CUTS_TOO_LARGE_HEADER`]: a
    /// Tailgate router), so that the stage can count it apart from refusals that lose the
    /// spans (as [`Refusal::TOO_LARGE_CUT`]).
    fn refused_cut(&self, refusal: &Refusal) {
        self.refused(refusal);
    }

    /// Told of every OTLP/JSON request the receiver refuses because it does not convert to
    /// an `ExportTraceServiceRequest` (so [`SpanSink::export`] never sees it), so that the
    /// stage counts malformed requests in either encoding. [`SpanSink::refused`] is told
    /// too. (A body that does not decompress is refused as invalid, not malformed.)
    fn malformed(&self) {}

    /// Told of every request taken (answered OK) after its sender's deadline
    /// (`grpc-timeout`) had passed: the sender has likely given up and may send it again,
    /// so its spans may be taken twice (see [`run_detached`]). Stages count these so that
    /// such duplicates are never silent. (A request refused late took nothing.)
    fn answered_late(&self) {}
}

/// Runs `work` on its own task and waits for it. When the caller stops waiting (the client
/// reset the stream, or its deadline passed, and the server dropped the handler), the work
/// still runs to its end: a sink never stops half-way through a request, with part of it
/// buffered or forwarded and the rest not, and every span it counted as received gets its
/// outcome. The client, having no answer, may send the request again: as with any lost
/// answer in OTLP (at-least-once), that can deliver it twice.
pub async fn run_detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, Refusal>> + Send + 'static,
) -> Result<T, Refusal> {
    tokio::spawn(work).await.unwrap_or_else(|error| {
        tracing::error!(%error, "A request's handler failed.");
        Err(Refusal::Unavailable {
            message: "the request's handler failed; retry".into(),
            retry_after: DEFAULT_RETRY_AFTER,
        })
    })
}

/// Request header (gRPC metadata or HTTP header) that gateways set on the spans they send
/// each other, so that a receiving gateway buffers them instead of forwarding them again.
/// Values: `forwarded; hops=N` (spans that reached a gateway by a stale ring) and
/// `handoff; hops=N; age_ms=M` (buffered traces handed to their new owner, first seen `M`
/// milliseconds before they were sent).
pub const PEER_HEADER: &str = "tailgate-peer";

/// Request header of a sender that cuts a request refused as too large
/// ([`Refusal::TooLarge`]) into smaller ones and sends them again, as a Tailgate router does
/// (value `1`): such a refusal loses nothing, and the receiver counts it as
/// `too_large_cut`, which alerts on lost spans leave out.
pub const CUTS_TOO_LARGE_HEADER: &str = "tailgate-cuts-too-large";

/// Header that carries the gateways' shared secret on every peer request (spans with a
/// [`PEER_HEADER`], and [`DECISIONS_PATH`] calls). A gateway configured with a secret
/// refuses peer requests without it: otherwise anyone who can reach its receivers could
/// bypass routing, force early hand-offs or drop buffered traces with forged decisions.
pub const PEER_AUTH_HEADER: &str = "tailgate-peer-auth";

/// gRPC method by which a gateway hands decided trace ids to their new owner. The body is a
/// sequence of [`DECISION_RECORD_LEN`]-byte records: trace id (16 bytes), 1 for kept or 0
/// for dropped, the keep probability as a little-endian `f64` (exact, so a late span carries
/// exactly its trace's adjusted count; a probability outside (0, 1] is refused).
pub const DECISIONS_PATH: &str = "/tailgate.peer.v1.Peer/Decisions";

/// Length of one record of a [`DECISIONS_PATH`] body.
pub const DECISION_RECORD_LEN: usize = 25;

/// Where a request comes from, read from its [`PEER_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// An agent, SDK or router (no header).
    #[default]
    Client,
    /// Another gateway forwarded spans it does not own (`hops` gateways so far).
    Forwarded {
        /// Gateways the spans passed through.
        hops: u8,
    },
    /// Another gateway handed over buffered traces.
    Handoff {
        /// Gateways the traces passed through.
        hops: u8,
        /// How long before sending the traces were first seen (the oldest of the request).
        age_ms: u64,
    },
}

// === impl Origin ===

impl Origin {
    /// Parses a header value; anything unrecognised counts as a client request.
    pub fn parse(value: Option<&[u8]>) -> Origin {
        let Some(text) = value.and_then(|v| std::str::from_utf8(v).ok()) else {
            return Origin::Client;
        };
        let mut parts = text.split(';').map(str::trim);
        let kind = parts.next().unwrap_or_default();
        let (mut hops, mut age_ms) = (1u8, 0u64);
        for p in parts {
            match p.split_once('=') {
                Some(("hops", v)) => hops = v.parse().unwrap_or(1),
                Some(("age_ms", v)) => age_ms = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        match kind {
            "forwarded" => Origin::Forwarded { hops },
            "handoff" => Origin::Handoff { hops, age_ms },
            _ => Origin::Client,
        }
    }

    /// The header value for this origin (`None` for a client).
    pub fn header_value(&self) -> Option<String> {
        match self {
            Origin::Client => None,
            Origin::Forwarded { hops } => Some(format!("forwarded; hops={hops}")),
            Origin::Handoff { hops, age_ms } => {
                Some(format!("handoff; hops={hops}; age_ms={age_ms}"))
            }
        }
    }

    /// Gateways passed so far (0 for a client).
    pub fn hops(&self) -> u8 {
        match self {
            Origin::Client => 0,
            Origin::Forwarded { hops } | Origin::Handoff { hops, .. } => *hops,
        }
    }
}

/// A successful export, possibly partial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Spans that were not accepted and must not be retried (OTLP partial success).
    pub rejected_spans: u64,
    /// Why they were rejected; empty when none were.
    pub message: String,
}

/// Encodes an `ExportTraceServiceResponse`, with `partial_success` only when spans were
/// rejected.
pub fn encode_response(accepted: &Accepted) -> Bytes {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let response = ExportTraceServiceResponse {
        partial_success: (accepted.rejected_spans > 0 || !accepted.message.is_empty()).then(|| {
            ExportTracePartialSuccess {
                rejected_spans: accepted.rejected_spans as i64,
                error_message: accepted.message.clone(),
            }
        }),
    };
    Bytes::from(response.encode_to_vec())
}
