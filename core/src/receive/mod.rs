//! OTLP receivers: gRPC on 4317 and HTTP on 4318. They accept a request, undo transport
//! framing (gRPC frames, gzip, OTLP/JSON) and hand the encoded `ExportTraceServiceRequest`
//! to the next stage, a [`SpanSink`], as raw bytes. The sink's answer becomes the reply:
//! success with an optional partial-success count, or a refusal mapped to a status in
//! [`status`].

pub mod grpc;
pub mod http;
pub mod status;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

pub use status::Refusal;

use tokio::net::TcpListener;

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

/// Where and how the receivers listen. Part of the router's and gateway's YAML config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReceiveConfig {
    /// OTLP/gRPC listen address; `null` disables it. Default `0.0.0.0:4317`.
    #[serde(default = "default_grpc", with = "crate::config::listen_addr")]
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address; `null` disables it. Default `0.0.0.0:4318`.
    #[serde(default = "default_http", with = "crate::config::listen_addr")]
    pub http: Option<SocketAddr>,
    /// Largest accepted request, after decompression, in bytes. Default 16 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Open connections per receiver; past it new connections wait. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Longest a client may take to send a request's headers and body. Default 30s.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Bytes of requests being received (still arriving, being decompressed or handed on)
    /// across both receivers; past it new data is refused with a retry hint. At least twice
    /// `max_request_bytes` (a compressed request and its decompressed copy). Default 64 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
}

/// Connection-level limits shared by the receivers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request after decompression.
    pub max_request_bytes: usize,
    /// Open connections.
    pub max_connections: usize,
    /// Time to receive a request.
    pub request_timeout: Duration,
    /// Bytes of requests being received, shared by every receiver given these limits.
    pub in_flight: InFlight,
}

impl From<&ReceiveConfig> for Limits {
    fn from(c: &ReceiveConfig) -> Self {
        Limits {
            max_request_bytes: c.max_request_bytes,
            max_connections: c.max_connections,
            request_timeout: c.request_timeout,
            in_flight: InFlight::new(c.max_in_flight_bytes.max(2 * c.max_request_bytes)),
        }
    }
}

/// The budget of bytes of requests being received, across every receiver of a process:
/// each request takes its bytes as they arrive (and its decompressed size) and gives them
/// back when it has been handed on, so that many slow or unfinished requests cannot hold
/// more than the budget, however many connections and streams they use.
#[derive(Debug, Clone)]
pub struct InFlight {
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    capacity: usize,
}

/// A request's share of the [`InFlight`] budget, given back when dropped.
#[derive(Debug, Default)]
pub struct InFlightBytes(Option<tokio::sync::OwnedSemaphorePermit>);

impl InFlight {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(tokio::sync::Semaphore::MAX_PERMITS);
        InFlight {
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.capacity - self.budget.available_permits()
    }

    /// The budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `n` bytes to `held`, or refuses (overloaded, with a retry hint) when the
    /// budget has not that much room left.
    pub fn take(&self, held: &mut InFlightBytes, n: usize) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let more = u32::try_from(n)
            .ok()
            .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| Refusal::Overloaded {
                message: format!(
                    "receivers hold {} bytes of requests still arriving, the limit of {}; retry later",
                    self.held(),
                    self.capacity
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            })?;
        match &mut held.0 {
            Some(p) => p.merge(more),
            None => held.0 = Some(more),
        }
        Ok(())
    }
}

fn default_max_in_flight_bytes() -> usize {
    64 << 20
}

fn default_max_connections() -> usize {
    4096
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Suggested client back-off when a receiver refuses for overload.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

fn default_grpc() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 4317)))
}

fn default_http() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 4318)))
}

fn default_max_request_bytes() -> usize {
    16 << 20
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        ReceiveConfig {
            grpc: default_grpc(),
            http: default_http(),
            max_request_bytes: default_max_request_bytes(),
            max_connections: default_max_connections(),
            request_timeout: default_request_timeout(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
        }
    }
}

/// Accepts connections on `listener` and serves each with `handler` over HTTP/1.1 or
/// HTTP/2 (prior knowledge, as gRPC uses), with large HTTP/2 windows. Stops accepting when
/// `shutdown` completes, then waits for open connections to finish. Default limits.
pub async fn serve_connections<F, Fut, B>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(::http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ::http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = Limits::from(&ReceiveConfig::default());
    serve_connections_with(listener, limits, shutdown, handler).await
}

/// [`serve_connections`] with the receivers' limits (see [`crate::serve`]): at most
/// `max_connections` open connections, the first byte and HTTP/1 headers within
/// `request_timeout`.
pub async fn serve_connections_with<F, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(::http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ::http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = crate::serve::ConnectionLimits {
        max_connections: limits.max_connections,
        first_byte_timeout: limits.request_timeout,
        header_timeout: limits.request_timeout,
    };
    crate::serve::serve(listener, limits, shutdown, handler).await
}

/// The receivers' bound sockets, so that ports are taken (and port 0 resolved) before the
/// component starts, and a busy port is reported with its address.
#[derive(Debug)]
pub struct Listeners {
    /// OTLP/gRPC socket.
    pub grpc: Option<TcpListener>,
    /// OTLP/HTTP socket.
    pub http: Option<TcpListener>,
}

/// A listen address that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {addr}: {error}")]
pub struct BindError {
    /// Which listener.
    pub what: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub error: std::io::Error,
}

/// Binds `addr`, naming `what` in the error.
pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| BindError { what, addr, error })
}

// === impl Listeners ===

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &ReceiveConfig) -> Result<Self, BindError> {
        let grpc = match config.grpc {
            Some(a) => Some(bind("OTLP/gRPC", a).await?),
            None => None,
        };
        let http = match config.http {
            Some(a) => Some(bind("OTLP/HTTP", a).await?),
            None => None,
        };
        Ok(Listeners { grpc, http })
    }

    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound OTLP/HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves both receivers until `shutdown` is cancelled and open requests finish.
    pub async fn serve<S: SpanSink>(
        self,
        sink: std::sync::Arc<S>,
        limits: Limits,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        let grpc = {
            let (sink, token, limits) = (sink.clone(), shutdown.clone(), limits.clone());
            async move {
                match self.grpc {
                    Some(l) => grpc::serve(l, sink, limits, token.cancelled_owned()).await,
                    None => Ok(()),
                }
            }
        };
        let http = async move {
            match self.http {
                Some(l) => http::serve(l, sink, limits, shutdown.cancelled_owned()).await,
                None => Ok(()),
            }
        };
        let (a, b) = tokio::join!(grpc, http);
        a.and(b)
    }
}

#[cfg(test)]
mod tests {
    use super::Origin;

    #[test]
    fn peer_header_round_trips_and_unknown_values_are_clients() {
        for o in [
            Origin::Forwarded { hops: 1 },
            Origin::Handoff {
                hops: 2,
                age_ms: 1234,
            },
        ] {
            let v = o.header_value().unwrap();
            assert_eq!(Origin::parse(Some(v.as_bytes())), o, "{v}");
        }
        assert_eq!(Origin::Client.header_value(), None);
        assert_eq!(Origin::parse(None), Origin::Client);
        assert_eq!(Origin::parse(Some(b"gossip")), Origin::Client);
        assert_eq!(Origin::parse(Some(&[0xff, 0xfe])), Origin::Client);
        // Missing or bad parameters take safe defaults: one hop, no age.
        assert_eq!(
            Origin::parse(Some(b"handoff; age_ms=x")),
            Origin::Handoff { hops: 1, age_ms: 0 }
        );
        assert_eq!(Origin::Forwarded { hops: 3 }.hops(), 3);
    }
}
