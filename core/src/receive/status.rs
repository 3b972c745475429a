//! The one place where a stage's refusal becomes a wire status: gRPC codes with
//! `google.rpc.RetryInfo`, HTTP codes with `Retry-After`, and the bodies OTLP expects.
//!
//! Malformed input is `INVALID_ARGUMENT` / 400 and is not retried by clients; overload is
//! `RESOURCE_EXHAUSTED` / 429 and unavailability `UNAVAILABLE` / 503, both retried with
//! back-off. A client's mistake is never `INTERNAL`.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;

/// Why a stage did not take a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed; retrying it cannot help.
    #[error("{0}")]
    Invalid(String),
    /// The request is larger than the configured limit.
    #[error("{message}")]
    TooLarge {
        /// What is too large, and the limit.
        message: String,
        /// The largest request body of this kind the receiver takes, in bytes, when its
        /// limit is one of bytes (`receive.max_request_bytes`); a Tailgate sender cuts its
        /// requests to it ([`MAX_REQUEST_BYTES_METADATA`]).
        limit: Option<usize>,
    },
    /// The client did not send the request in time.
    #[error("{0}")]
    Timeout(String),
    /// The stage is over a limit; retry after the given delay.
    #[error("{message}")]
    Overloaded {
        /// What is over its limit.
        message: String,
        /// Suggested back-off.
        retry_after: Duration,
    },
    /// The sender holds more than its share of the receivers' in-flight budget while
    /// others want some (see [`super::InFlight`]); answered as [`Refusal::Overloaded`] is.
    #[error("{message}")]
    OverShare {
        /// Whose share, and how much it holds.
        message: String,
        /// Suggested back-off.
        retry_after: Duration,
    },
    /// A downstream stage could not be reached; retry later.
    #[error("{message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// Suggested back-off.
        retry_after: Duration,
    },
    /// The sender may not make this request (a peer request without the peers' secret).
    #[error("{0}")]
    PermissionDenied(String),
    /// The request lacks the receiver's bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// A gateway leaving the ring refuses other gateways' spans and decisions: `UNAVAILABLE`
    /// marked with [`LEAVING_METADATA`], so the sender drops it from its ring at once and
    /// sends them to the next owner instead of waiting for DNS (counted as `unavailable`).
    #[error("{0}")]
    Leaving(String),
    /// The client reset the request or closed its connection before sending it whole: it
    /// gave the request up (an export timeout, a restart), it did not send it wrong.
    #[error("{0}")]
    Cancelled(String),
}

/// Metadata key of the status a gateway leaving the ring answers peer requests with (see
/// [`Refusal::Leaving`]).
pub const LEAVING_METADATA: &str = "tailgate-leaving";

/// `status` carrying the metadata `key` (`1`), which a Tailgate sender reads.
fn marked(mut status: tonic::Status, key: &'static str) -> tonic::Status {
    status
        .metadata_mut()
        .insert(key, tonic::metadata::MetadataValue::from_static("1"));
    status
}

/// Metadata key marking a `RESOURCE_EXHAUSTED` as [`Refusal::TooLarge`]: the request is
/// refused for its size, and the same spans in smaller requests may be taken. A router
/// cuts such a request and sends it again; a refusal for anything else (a proxy's quota)
/// is not marked, and is not retried.
pub const TOO_LARGE_METADATA: &str = "tailgate-too-large";

/// Metadata key of a [`Refusal::TooLarge`] answer stating the largest request body the
/// receiver takes (decimal bytes), when its limit is one of bytes: a router cuts its
/// requests to that size at once instead of halving them until one is taken. A refusal for
/// the whole buffer's size (which depends on the spans, not the bytes alone) states none.
pub const MAX_REQUEST_BYTES_METADATA: &str = "tailgate-max-request-bytes";

/// The limit a [`MAX_REQUEST_BYTES_METADATA`] value states, if it is one that reads as a
/// number of bytes.
pub fn stated_max_request_bytes(value: Option<&[u8]>) -> Option<usize> {
    std::str::from_utf8(value?).ok()?.trim().parse().ok()
}

// === impl Refusal ===

/// Suggested client back-off when a receiver refuses for overload.
pub const DEFAULT_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl From<crate::wire::ScanError> for Refusal {
    fn from(e: crate::wire::ScanError) -> Self {
        Refusal::Invalid(format!("malformed ExportTraceServiceRequest: {e}"))
    }
}

impl Refusal {
    /// A request over a limit of `limit` bytes ([`Refusal::TooLarge`] stating it).
    pub fn too_large(message: String, limit: usize) -> Self {
        Refusal::TooLarge {
            message,
            limit: Some(limit),
        }
    }

    /// Every reason, in [`Refusal::reason_index`] order, as metrics label them.
    pub const REASONS: [&'static str; 10] = [
        "invalid",
        "too_large",
        "timeout",
        "overloaded",
        "unavailable",
        "permission_denied",
        "unauthenticated",
        "cancelled",
        "sender_share",
        "too_large_cut",
    ];

    /// Index in [`Refusal::REASONS`] of a [`Refusal::TooLarge`] its sender recovers from
    /// (see [`CUTS_TOO_LARGE_HEADER`](super::CUTS_TOO_LARGE_HEADER)); no variant's own.
    pub const TOO_LARGE_CUT: usize = 9;

    /// Renders per-reason refusal counters (indexed as [`Refusal::REASONS`]) as the
    /// counter `name{reason="…"}`, the same for the router and the gateway.
    pub fn render_counts(
        p: &mut crate::telemetry::PromText,
        name: &str,
        counts: &[crate::telemetry::Counter; Refusal::REASONS.len()],
    ) {
        p.labelled(
            name,
            "counter",
            "Requests refused, by reason (invalid, too_large, timeout, overloaded, unavailable, permission_denied, unauthenticated, cancelled: the client reset the request or went away, sender_share: the sender held more than its share of the in-flight budget, too_large_cut: too large from a sender that cuts such requests and sends them again, a Tailgate router: nothing lost).",
            "reason",
            Self::REASONS
                .into_iter()
                .zip(counts.iter().map(crate::telemetry::Counter::get)),
        );
    }

    /// The refusal's kind, as metrics label it.
    pub fn reason(&self) -> &'static str {
        Self::REASONS[self.reason_index()]
    }

    /// Index of [`Refusal::reason`] in [`Refusal::REASONS`].
    pub fn reason_index(&self) -> usize {
        match self {
            Refusal::Invalid(_) => 0,
            Refusal::TooLarge { .. } => 1,
            Refusal::Timeout(_) => 2,
            Refusal::Overloaded { .. } => 3,
            Refusal::Unavailable { .. } | Refusal::Leaving(_) => 4,
            Refusal::PermissionDenied(_) => 5,
            Refusal::Unauthenticated(_) => 6,
            Refusal::Cancelled(_) => 7,
            Refusal::OverShare { .. } => 8,
        }
    }

    /// The gRPC status for this refusal.
    pub fn to_grpc(&self) -> tonic::Status {
        match self {
            Refusal::Invalid(m) => tonic::Status::invalid_argument(m.clone()),
            Refusal::TooLarge { message, limit } => {
                let mut status = marked(
                    tonic::Status::resource_exhausted(message.clone()),
                    TOO_LARGE_METADATA,
                );
                if let Some(limit) = limit {
                    status
                        .metadata_mut()
                        .insert(MAX_REQUEST_BYTES_METADATA, (*limit).into());
                }
                status
            }
            Refusal::Timeout(m) => tonic::Status::deadline_exceeded(m.clone()),
            Refusal::Overloaded {
                message,
                retry_after,
            }
            | Refusal::OverShare {
                message,
                retry_after,
            } => with_retry_info(tonic::Code::ResourceExhausted, message, *retry_after),
            Refusal::Unavailable {
                message,
                retry_after,
            } => with_retry_info(tonic::Code::Unavailable, message, *retry_after),
            Refusal::PermissionDenied(m) => tonic::Status::permission_denied(m.clone()),
            Refusal::Unauthenticated(m) => tonic::Status::unauthenticated(m.clone()),
            Refusal::Cancelled(m) => tonic::Status::cancelled(m.clone()),
            Refusal::Leaving(m) => marked(tonic::Status::unavailable(m.clone()), LEAVING_METADATA),
        }
    }

    /// The HTTP status code for this refusal.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Refusal::Invalid(_) => http::StatusCode::BAD_REQUEST,
            Refusal::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            // Not 408: OTLP/HTTP exporters retry only 429, 502, 503 and 504, and a request
            // that arrived too slowly is worth sending again (gRPC's DEADLINE_EXCEEDED is
            // retried too).
            Refusal::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            Refusal::Overloaded { .. } | Refusal::OverShare { .. } => {
                http::StatusCode::TOO_MANY_REQUESTS
            }
            Refusal::Unavailable { .. } | Refusal::Leaving(_) => {
                http::StatusCode::SERVICE_UNAVAILABLE
            }
            Refusal::PermissionDenied(_) => http::StatusCode::FORBIDDEN,
            Refusal::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
            // Nobody reads it: the client is gone or has reset the request.
            Refusal::Cancelled(_) => http::StatusCode::BAD_REQUEST,
        }
    }

    /// The `Retry-After` value in whole seconds, for refusals worth retrying.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::Overloaded { retry_after, .. }
            | Refusal::OverShare { retry_after, .. }
            | Refusal::Unavailable { retry_after, .. } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Refusal::Leaving(_) => Some(1),
            _ => None,
        }
    }

    /// The gRPC code number, as OTLP/HTTP puts it in its `Status` body.
    pub fn grpc_code(&self) -> i32 {
        self.to_grpc().code() as i32
    }
}

/// Why a request's body could not be read whole: the client reset the request or its
/// connection went away ([`Refusal::Cancelled`]), or it broke the protocol
/// ([`Refusal::Invalid`]). Only the first is normal: SDKs give up requests that time out,
/// and pods restart; counting those as invalid fired alerts on what senders send wrong.
pub fn body_error(error: &(dyn std::error::Error + 'static)) -> Refusal {
    let mut cause = Some(error);
    while let Some(e) = cause {
        let gone = if let Some(e) = e.downcast_ref::<hyper::Error>() {
            e.is_incomplete_message() || e.is_canceled() || e.is_closed()
        } else if let Some(e) = e.downcast_ref::<h2::Error>() {
            (e.is_reset() && e.is_remote())
                || (e.is_go_away() && e.is_remote())
                || e.get_io().is_some_and(connection_lost)
        } else if let Some(e) = e.downcast_ref::<std::io::Error>() {
            connection_lost(e)
        } else {
            false
        };
        if gone {
            return Refusal::Cancelled(format!("the client gave the request up: {error}"));
        }
        cause = e.source();
    }
    // hyper's error says only that reading failed; its sources say why (a chunk size that
    // is not hex, for one).
    let mut message = format!("reading the request body failed: {error}");
    let mut cause = error.source();
    while let Some(e) = cause {
        let said = e.to_string();
        if !said.is_empty() && !message.contains(&said) {
            message.push_str(": ");
            message.push_str(&said);
        }
        cause = e.source();
    }
    Refusal::Invalid(message)
}

/// Whether an I/O error says the connection went away (not that its bytes were wrong: a
/// corrupt TLS record is `InvalidData`).
fn connection_lost(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::UnexpectedEof
    )
}

/// `google.rpc.Status`, the body of OTLP/HTTP error responses and of gRPC status details.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    /// gRPC code.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// Human-readable message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// `google.protobuf.Any` details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

impl RpcStatus {
    /// The message of an OTLP/HTTP error answer's body, a `google.rpc.Status` in protobuf
    /// or in JSON; `None` when the body is neither or its message is empty.
    pub fn message_in(body: &[u8]) -> Option<String> {
        let from_proto = RpcStatus::decode(body)
            .ok()
            .map(|s| s.message)
            .filter(|m| !m.is_empty());
        from_proto.or_else(|| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()?
                .get("message")?
                .as_str()
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
        })
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAny {
    /// Type URL.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// Encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// Suggested delay.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

fn with_retry_info(code: tonic::Code, message: &str, retry_after: Duration) -> tonic::Status {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: retry_after.as_secs() as i64,
            nanos: retry_after.subsec_nanos() as i32,
        }),
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.to_owned(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    tonic::Status::with_details(code, message, Bytes::from(details.encode_to_vec()))
}

/// The retry delay a server suggested in a gRPC status, if any.
pub fn retry_delay(status: &tonic::Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let any = details
        .details
        .into_iter()
        .find(|d| d.type_url == RETRY_INFO_TYPE)?;
    let d = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        d.seconds.max(0) as u64,
        d.nanos.max(0) as u32,
    ))
}

/// Whether OTLP says a client should retry after this status: the retryable codes, but
/// `RESOURCE_EXHAUSTED` only when the server says recovery is possible with a `RetryInfo`
/// (OTLP spec, "Failures": otherwise the limit may be permanent, such as a quota).
pub fn is_retryable_status(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::ResourceExhausted => retry_delay(status).is_some(),
        code => is_retryable(code),
    }
}

/// Whether OTLP counts this gRPC code among the retryable ones (`RESOURCE_EXHAUSTED` needs
/// a `RetryInfo` too, see [`is_retryable_status`]).
pub fn is_retryable(code: tonic::Code) -> bool {
    use tonic::Code::*;
    matches!(
        code,
        Cancelled
            | DeadlineExceeded
            | ResourceExhausted
            | Aborted
            | OutOfRange
            | Unavailable
            | DataLoss
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: RESOURCE_EXHAUSTED with and without RetryInfo (issue 14 item 9).
    /// Guarantees: as the OTLP spec says, retried only when the server signals that
    /// recovery is possible; the other retryable codes stay retryable.
    #[test]
    fn resource_exhausted_is_retried_only_with_retry_info() {
        let bare = tonic::Status::resource_exhausted("quota exceeded");
        assert!(!is_retryable_status(&bare));
        let hinted = Refusal::Overloaded {
            message: "full".into(),
            retry_after: Duration::from_secs(1),
        }
        .to_grpc();
        assert_eq!(hinted.code(), tonic::Code::ResourceExhausted);
        assert!(is_retryable_status(&hinted));
        assert!(is_retryable_status(&tonic::Status::unavailable("down")));
        assert!(!is_retryable_status(&tonic::Status::invalid_argument(
            "bad"
        )));
    }

    #[test]
    fn overload_carries_retry_info_that_round_trips() {
        let r = Refusal::Overloaded {
            message: "buffer full".into(),
            retry_after: Duration::from_millis(1500),
        };
        let status = r.to_grpc();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(retry_delay(&status), Some(Duration::from_millis(1500)));
        assert_eq!(r.http_status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.retry_after_secs(), Some(2));
    }

    #[test]
    fn invalid_input_is_not_retryable_and_is_a_client_error() {
        let r = Refusal::Invalid("bad".into());
        assert_eq!(r.to_grpc().code(), tonic::Code::InvalidArgument);
        assert!(!is_retryable(r.to_grpc().code()));
        assert_eq!(r.http_status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(r.retry_after_secs(), None);
    }
}
