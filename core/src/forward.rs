//! A gRPC client that sends encoded `ExportTraceServiceRequest`s to one endpoint: a router's
//! gateway, or a gateway's backend. One reused HTTP/2 connection, large flow-control
//! windows, and retries with exponential back-off and jitter that honour the server's
//! `RetryInfo`, bounded in time. What cannot be delivered comes back as an error, never
//! silently.

use std::str::FromStr;
use std::time::Duration;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::Message;
use serde::Deserialize;

use crate::receive::sink::{Origin, DECISIONS_PATH, PEER_AUTH_HEADER, PEER_HEADER};
use crate::receive::status::{is_retryable_status, retry_delay};
use crate::serve::{CONNECTION_WINDOW, STREAM_WINDOW};
use crate::tls::{ClientTls, ClientTlsConfig, Transport};
use crate::wire::TRACE_EXPORT_PATH;

pub use crate::retry::RetryConfig;
use crate::retry::{Attempt, Failed, Retrier, RetryStats};

/// Compression of outgoing requests: the Collector's `compression` values (v0.161,
/// `configcompression`). Over gRPC only `none`, `gzip`, `zstd` and `snappy` exist
/// ([`Self::grpc_encoding`]); the others are for OTLP/HTTP.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None: cheapest for hops inside a cluster. Also written `""`.
    #[default]
    #[serde(alias = "")]
    None,
    /// gzip.
    Gzip,
    /// zstd: better ratio than gzip at a lower CPU cost.
    Zstd,
    /// snappy: the block format over HTTP, the framed format over gRPC (as the Collector).
    Snappy,
    /// zlib (HTTP only).
    Zlib,
    /// deflate, which HTTP defines as the zlib format (HTTP only).
    Deflate,
    /// lz4, the frame format (HTTP only).
    Lz4,
    /// Framed snappy (HTTP only).
    #[serde(rename = "x-snappy-framed")]
    SnappyFramed,
}

impl Compression {
    /// The `grpc-encoding` header value, `None` for uncompressed messages and for the
    /// compressions gRPC does not have (which a gRPC client's config refuses, see
    /// [`Self::check_grpc`]).
    pub fn grpc_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
            _ => None,
        }
    }

    /// Refuses a compression gRPC does not have, as the Collector's `otlp` exporter does.
    pub fn check_grpc(self) -> Result<Self, String> {
        match self {
            Compression::None => Ok(self),
            c if c.grpc_encoding().is_some() => Ok(self),
            c => Err(format!(
                "compression {:?} is not available over gRPC: use none, gzip, zstd or snappy \
                 (zlib, deflate, lz4 and x-snappy-framed are for OTLP/HTTP)",
                c.content_encoding().unwrap_or_default()
            )),
        }
    }

    /// The HTTP `Content-Encoding` value, `None` for an uncompressed body.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::Snappy => Some("snappy"),
            Compression::Zlib => Some("zlib"),
            Compression::Deflate => Some("deflate"),
            Compression::Lz4 => Some("lz4"),
            Compression::SnappyFramed => Some("x-snappy-framed"),
        }
    }

    /// Reads a gRPC client's `compression` (`#[serde(deserialize_with)]`), refusing one
    /// gRPC does not have where the config names it.
    pub fn deserialize_grpc<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the scalar's visit, so that the error carries the scalar's line.
        struct Grpc;
        impl serde::de::Visitor<'_> for Grpc {
            type Value = Compression;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("none, gzip, zstd or snappy")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Compression, E> {
                use serde::de::IntoDeserializer;
                Compression::deserialize(v.into_deserializer())?
                    .check_grpc()
                    .map_err(E::custom)
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<Compression, E> {
                Ok(Compression::None)
            }
        }
        d.deserialize_any(Grpc)
    }

    /// The format a body is written in, over gRPC (`grpc`) or HTTP; `None` when it is
    /// sent as it is (and, over gRPC, for the compressions gRPC does not have). snappy is
    /// framed over gRPC and a block over HTTP, as the Collector writes them.
    fn encoding(self, grpc: bool) -> Option<crate::receive::compress::Encoding> {
        use crate::receive::compress::Encoding as E;
        Some(match self {
            Compression::None => return None,
            Compression::Gzip => E::Gzip,
            Compression::Zstd => E::Zstd,
            Compression::Snappy if grpc => E::SnappyFramed,
            Compression::Snappy => E::Snappy,
            _ if grpc => return None,
            Compression::Zlib | Compression::Deflate => E::Zlib,
            Compression::Lz4 => E::Lz4,
            Compression::SnappyFramed => E::SnappyFramed,
        })
    }

    /// Compresses an OTLP/HTTP body at `level` (see [`CompressionParams`]; `None` when it
    /// is sent as it is).
    pub fn compress_http(
        self,
        level: Option<i32>,
        chunks: &[Bytes],
    ) -> std::io::Result<Option<Vec<u8>>> {
        self.encoding(false)
            .map(|e| crate::receive::compress::compress_at(e, level, chunks))
            .transpose()
    }

    /// Compresses a gRPC message (`None` when it is sent as it is).
    fn compress_grpc(
        self,
        level: Option<i32>,
        chunks: &[Bytes],
    ) -> std::io::Result<Option<Vec<u8>>> {
        self.encoding(true)
            .map(|e| crate::receive::compress::compress_at(e, level, chunks))
            .transpose()
    }
}

/// The Collector's `compression_params` block of a client (`configcompression`, v0.161):
/// the level `compression` compresses at. Without it, the fastest level.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// gzip, zlib, deflate: -1 (the default, 6), -2 (Go's Huffman-only, taken as 1 here),
    /// 0 (unset: the fastest) to 9. zstd: any level, mapped to the Collector's four speeds
    /// (see [`crate::receive::compress::compress_at`]). The other compressions take 0 only.
    #[serde(default)]
    pub level: Option<i32>,
}

impl CompressionParams {
    /// Whether `compression` takes this level, as the Collector checks it.
    pub fn check(&self, compression: Compression) -> Result<(), String> {
        let Some(level) = self.level else {
            return Ok(());
        };
        let fits = match compression {
            Compression::Gzip | Compression::Zlib | Compression::Deflate => {
                (-2..=9).contains(&level)
            }
            Compression::Zstd => true,
            _ => level == 0,
        };
        if fits {
            Ok(())
        } else {
            Err(format!(
                "{level} does not apply to compression: {} (gzip, zlib, deflate: -2 to 9; \
                 zstd: any; the others: 0)",
                compression.content_encoding().unwrap_or("none")
            ))
        }
    }
}

/// Why a request was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The endpoint URL is not usable.
    #[error("invalid endpoint {endpoint:?}: {message}")]
    Endpoint {
        /// The endpoint as configured.
        endpoint: String,
        /// What is wrong with it.
        message: String,
    },
    /// A header name or value is not valid gRPC metadata.
    #[error("invalid header {0:?}")]
    Header(String),
    /// An `authority` that is not a `host[:port]`.
    #[error("{0}")]
    Authority(String),
    /// A `user_agent` a header cannot carry (a line break, a control character).
    #[error("user_agent has characters a header cannot carry")]
    UserAgent,
    /// A compression gRPC does not have (see [`Compression::check_grpc`]).
    #[error("{0}")]
    Compression(String),
    /// The `tls:` settings cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The server refused the data for good (e.g. `INVALID_ARGUMENT`).
    #[error("{endpoint} rejected the request: {status}")]
    Rejected {
        /// Where it was sent.
        endpoint: String,
        /// The final status.
        status: tonic::Status,
    },
    /// No connection could be made, and the client was built to give up at once then
    /// ([`GrpcClient::give_up_when_unreachable`]): the caller sends the data elsewhere.
    #[error("{endpoint} is unreachable: {status}")]
    Unreachable {
        /// Where it was sent.
        endpoint: String,
        /// The connection error, as a status.
        status: tonic::Status,
    },
    /// The endpoint is a gateway leaving the ring, which takes no more peer requests
    /// ([`crate::receive::Refusal::Leaving`]): the caller routes around it.
    #[error("{endpoint} is leaving the ring: {status}")]
    Leaving {
        /// Where it was sent.
        endpoint: String,
        /// The status it answered.
        status: tonic::Status,
    },
    /// Retries ran out of time.
    #[error("{endpoint} still failing after {attempts} attempts: {status}")]
    GaveUp {
        /// Where it was sent.
        endpoint: String,
        /// How many tries.
        attempts: u32,
        /// The last status.
        status: tonic::Status,
    },
}

// === impl ForwardError ===

impl ForwardError {
    /// Whether the caller may try again later (with the same data).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ForwardError::GaveUp { .. }
                | ForwardError::Unreachable { .. }
                | ForwardError::Leaving { .. }
        )
    }
}

/// The result of a delivered request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Spans the server accepted but rejected for good (OTLP partial success).
    pub rejected_spans: u64,
    /// The server's message about them.
    pub message: String,
    /// Attempts it took.
    pub attempts: u32,
    /// The largest request the server says it takes (a Tailgate receiver's
    /// `receive.max_request_bytes`, in
    /// [`MAX_REQUEST_BYTES_METADATA`](crate::receive::MAX_REQUEST_BYTES_METADATA)): a
    /// router cuts its requests to it before one is refused.
    pub max_request_bytes: Option<usize>,
}

/// HTTP/2 pings on a client's connection, so that a connection a middlebox dropped
/// without a word is found and replaced before a request waits on it: the Collector's
/// `keepalive` block of a gRPC client (`configgrpc`, v0.161), read as grpc-go reads it
/// ([`Keepalive::pings`]), with the Collector's defaults for keys left out (10 s, 10 s).
/// **Departure:** without the block a client pings after 30 s and waits 20 s (the
/// Collector's `otlp` exporter: 10 s and 10 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    /// Time without activity after which the client pings: under 10 s is 10 s, 0
    /// included (grpc-go's `WithKeepaliveParams` raises it; a negative or null `time`,
    /// which Go takes, reads as 0 and so as 10 s too).
    #[serde(default = "Keepalive::default_time", deserialize_with = "ping_time")]
    pub time: Duration,
    /// How long the client waits for a ping's answer before it closes the connection: 0
    /// is 20 s (grpc-go's default).
    #[serde(
        default = "Keepalive::default_time",
        with = "crate::config::go_duration"
    )]
    pub timeout: Duration,
    /// Ping also while no request is in flight.
    #[serde(default)]
    pub permit_without_stream: bool,
}

impl Keepalive {
    fn default_time() -> Duration {
        Duration::from_secs(10)
    }

    /// The ping interval and timeout the connection uses, as grpc-go reads `time` and
    /// `timeout` (a client with the block always pings).
    pub fn pings(&self) -> (Option<Duration>, Duration) {
        const FLOOR: Duration = Duration::from_secs(10);
        let interval = Some(self.time.max(FLOOR));
        let timeout = if self.timeout.is_zero() {
            Duration::from_secs(20)
        } else {
            self.timeout
        };
        (interval, timeout)
    }
}

/// `keepalive.time` in Go's forms; negative or null reads as 0, as grpc-go treats both
/// (under its 10 s floor).
fn ping_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    use crate::config::go_duration::{parse, DurationError};
    let read = |text: &str| match text.trim().strip_prefix('-') {
        Some(magnitude) => parse(magnitude)
            .map(|_| Duration::ZERO)
            .map_err(|_| DurationError {
                text: text.to_owned(),
            }),
        None => parse(text),
    };
    crate::config::parse_option_str(d, "a duration such as 10s", read)
        .map(Option::unwrap_or_default)
}

impl Default for Keepalive {
    /// What a client without a `keepalive` block does.
    fn default() -> Self {
        Keepalive {
            time: Duration::from_secs(30),
            timeout: Duration::from_secs(20),
            permit_without_stream: false,
        }
    }
}

/// A client for one OTLP/gRPC endpoint.
///
/// gRPC over hyper's HTTP/2 client rather than tonic's channel: the request body goes out as
/// the 5-byte message prefix followed by the caller's chunks, each one HTTP/2 DATA payload
/// taken as it is, so neither coalescing (see [`GrpcClient::send_chunks`]) nor the gRPC
/// framing copies a byte. Only compression builds a new buffer.
#[derive(Clone)]
pub struct GrpcClient {
    endpoint: String,
    /// `http://host:port`, without a trailing slash.
    base: Arc<str>,
    client: Transport<MessageBody>,
    headers: http::HeaderMap,
    timeout: Duration,
    retry: Retrier,
    compression: Compression,
    /// End a request at once, without retrying, when no connection can be made.
    unreachable_ends: bool,
    /// The hold keeps only requests the server refuses for room (`RESOURCE_EXHAUSTED`).
    hold_only_overloaded: bool,
    /// Sent in [`PEER_AUTH_HEADER`] on peer requests.
    peer_secret: Option<http::HeaderValue>,
    /// Sent as `user-agent`.
    user_agent: http::HeaderValue,
    /// TLS of the connection, if any (kept to rebuild the connection pool).
    tls: Option<ClientTls>,
    keepalive: Keepalive,
    /// `compression_params.level` (`None`: the fastest).
    compression_level: Option<i32>,
    /// An authenticator's headers, their values asked for on every request.
    auth: Option<Arc<crate::request_auth::RequestAuth>>,
    /// The proxy connections go through, if any (kept to rebuild the connection pool).
    proxy: Option<crate::proxy::Proxy>,
    /// The endpoint's `host:port`, where connections go.
    endpoint_authority: Arc<str>,
    /// What requests name instead, if set ([`GrpcClient::with_authority`]).
    authority: Option<http::uri::Authority>,
    /// Connections made to the endpoint (see [`GrpcClient::connections_made`]).
    connections: Arc<std::sync::atomic::AtomicU64>,
}

/// Metadata key a failed call's status carries when no connection could be made.
const CONNECT_FAILED: &str = "tailgate-connect-failed";
/// Marks a status made here for a request whose connection closed because the server did
/// not answer a ping in time (see [`is_unanswered_ping`]); set beside [`CONNECT_FAILED`].
const UNANSWERED_PING: &str = "tailgate-unanswered-ping";

impl std::fmt::Debug for GrpcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcClient")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

// === impl GrpcClient ===

impl GrpcClient {
    /// A client for `endpoint` (`http://host:port`, or `host:port`). Connects lazily.
    pub fn new(
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
        retry: RetryConfig,
    ) -> Result<Self, ForwardError> {
        Self::with_compression(endpoint, headers, timeout, retry, Compression::None)
    }

    /// A client that compresses requests.
    pub fn with_compression(
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
        retry: RetryConfig,
        compression: Compression,
    ) -> Result<Self, ForwardError> {
        let invalid = |message: String| ForwardError::Endpoint {
            endpoint: crate::endpoint::redact(endpoint),
            message,
        };
        let compression = compression
            .check_grpc()
            .map_err(ForwardError::Compression)?;
        let uri = crate::endpoint::parse(endpoint, crate::endpoint::Bare::AsHttp)
            .map_err(|e| invalid(e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => {
                Some(ClientTls::system().map_err(|e| invalid(format!("system CA roots: {e}")))?)
            }
            _ => None,
        };
        let Some(authority) = uri.authority() else {
            return Err(invalid("no host".into()));
        };
        let endpoint_authority: Arc<str> = authority.as_str().into();
        let base: Arc<str> = format!("http://{authority}").into();
        let connections = Arc::new(std::sync::atomic::AtomicU64::new(0));

        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            let key = http::HeaderName::from_str(&k.to_ascii_lowercase())
                .map_err(|_| ForwardError::Header(k.clone()))?;
            let value = http::HeaderValue::from_str(v)
                // The value is not shown: headers carry credentials.
                .map_err(|_| ForwardError::Header(format!("{k} (its value)")))?;
            // What gRPC sets itself, or HTTP/2 refuses, is not sent: one would fail every
            // request (grpc-go drops the first kind from metadata too).
            if !grpc_reserved(&key) {
                map.insert(key, value);
            }
        }
        let client = GrpcClient {
            endpoint: endpoint.to_owned(),
            base,
            client: http2_client(
                None,
                crate::tls::Dialer::new(connect_timeout(timeout), None)
                    .counting(connections.clone()),
                Keepalive::default().pings(),
                Keepalive::default().permit_without_stream,
            ),
            headers: map,
            timeout,
            retry: Retrier::new(retry, endpoint),
            compression,
            unreachable_ends: false,
            hold_only_overloaded: false,
            peer_secret: None,
            user_agent: http::HeaderValue::from_static(USER_AGENT),
            tls: None,
            keepalive: Keepalive::default(),
            compression_level: None,
            auth: None,
            proxy: None,
            endpoint_authority,
            authority: None,
            connections,
        };
        Ok(match tls {
            Some(tls) => client.with_tls(&tls),
            None => client,
        })
    }

    /// A client for `endpoint` with the `tls:` block `tls` (see
    /// [`ClientTlsConfig::uses_tls`] for when a connection is TLS).
    pub fn with_tls_config(
        endpoint: &str,
        headers: &[(String, String)],
        timeout: Duration,
        retry: RetryConfig,
        compression: Compression,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, ForwardError> {
        let client = Self::with_compression(endpoint, headers, timeout, retry, compression)?;
        Ok(match crate::tls::client_side(tls, endpoint)? {
            Some(t) => client.with_tls(&t),
            None => client,
        })
    }

    /// Sends `auth`'s headers with every request: its rules applied to a map of their
    /// own (as the Collector's per-RPC credentials fill one), then set after `headers`, so
    /// they replace a header of the same name (the Collector's gRPC client sends both
    /// values).
    pub fn with_auth(mut self, auth: Arc<crate::request_auth::RequestAuth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Speaks TLS with `tls` to the endpoint, whatever its scheme said.
    pub fn with_tls(mut self, tls: &ClientTls) -> Self {
        self.tls = Some(tls.clone());
        self.rebuild();
        self
    }

    /// Connects through `proxy` (an HTTP `CONNECT` tunnel; TLS, if any, inside it), or
    /// straight to the endpoint with `None`.
    pub fn with_proxy(mut self, proxy: Option<crate::proxy::Proxy>) -> Self {
        self.proxy = proxy;
        self.rebuild();
        self
    }

    /// Sends `user_agent` in front of Tailgate's own in every request's `user-agent`
    /// (`<user_agent> tailgate/<version>`), as configgrpc's `user_agent` has grpc-go put it
    /// in front of its own.
    pub fn with_user_agent(mut self, user_agent: &str) -> Result<Self, ForwardError> {
        self.user_agent = http::HeaderValue::from_str(&format!("{user_agent} {USER_AGENT}"))
            .map_err(|_| ForwardError::UserAgent)?;
        Ok(self)
    }

    /// Sends `authority` as every request's `:authority` (and, over TLS, as the name the
    /// server's certificate is checked against and SNI, unless the `tls:` block's
    /// `server_name_override` says otherwise), connecting to the endpoint all the same:
    /// configgrpc's `authority`, grpc-go's `WithAuthority`.
    pub fn with_authority(mut self, authority: &str) -> Result<Self, ForwardError> {
        let parsed =
            crate::endpoint::parse_authority(authority).map_err(ForwardError::Authority)?;
        self.authority = Some(parsed);
        self.rebuild();
        Ok(self)
    }

    /// Sets the requests' base URL and the connection pool from the client's TLS,
    /// authority, keep-alive and proxy (whatever order they were given in).
    fn rebuild(&mut self) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let named = self
            .authority
            .as_ref()
            .map_or(&*self.endpoint_authority, |a| a.as_str());
        self.base = format!("{scheme}://{named}").into();
        self.client = self.transport();
    }

    /// A connection pool for the client's TLS, keep-alive, proxy and authority.
    fn transport(&self) -> Transport<MessageBody> {
        let dialer = crate::tls::Dialer::new(connect_timeout(self.timeout), self.proxy.as_ref())
            .counting(self.connections.clone());
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        // With an authority of its own the requests name another host: connections still
        // go to the endpoint.
        let address = self.authority.as_ref().and_then(|_| {
            format!("{scheme}://{}", self.endpoint_authority)
                .parse::<http::Uri>()
                .ok()
        });
        let dialer = match address {
            Some(a) => dialer.to_address(a),
            None => dialer,
        };
        let pings = if self.unreachable_ends {
            liveness_pings(self.timeout)
        } else {
            self.keepalive.pings()
        };
        http2_client(
            self.tls.as_ref(),
            dialer,
            pings,
            self.keepalive.permit_without_stream,
        )
    }

    /// Compresses at `params.level`, checked against the client's compression.
    pub fn with_compression_params(
        mut self,
        params: CompressionParams,
    ) -> Result<Self, ForwardError> {
        params
            .check(self.compression)
            .map_err(ForwardError::Compression)?;
        self.compression_level = params.level;
        Ok(self)
    }

    /// Pings the server as `keepalive` says.
    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self.rebuild();
        self
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The authenticator's headers for the next attempt (none without one) and the
    /// values sent. `Err` when its credential has no value yet (a token endpoint that has
    /// not answered): an unavailable status, which the retry loop retries.
    async fn auth_headers(
        &self,
    ) -> Result<(http::HeaderMap, Option<crate::request_auth::Sent>), tonic::Status> {
        let mut headers = http::HeaderMap::new();
        match &self.auth {
            Some(auth) => match auth.apply(&mut headers).await {
                Ok(sent) => Ok((headers, Some(sent))),
                Err(missing) => Err(tonic::Status::unavailable(missing)),
            },
            None => Ok((headers, None)),
        }
    }

    /// Sends once, without retrying.
    pub async fn send_once(&self, body: Bytes) -> Result<Delivered, tonic::Status> {
        let (auth, _) = self.auth_headers().await?;
        self.call(TRACE_EXPORT_PATH, &[body], Origin::Client, auth)
            .await
    }

    /// Whether the endpoint, a gateway, takes peer requests now: one empty request marked
    /// as a peer's, without retries (an empty request is a valid export that changes
    /// nothing). The status when it answers that it is leaving the ring, refuses, or
    /// fails (a refusal of this gateway's credentials is worth telling apart: see
    /// [`is_refused_credentials`]).
    pub async fn peer_answers(&self) -> Result<(), tonic::Status> {
        let (auth, _) = self.auth_headers().await?;
        self.call(
            TRACE_EXPORT_PATH,
            &[Bytes::new()],
            Origin::Forwarded { hops: 1 },
            auth,
        )
        .await
        .map(|_| ())
    }

    /// One unary call of `path` with the configured headers, plus the [`PEER_HEADER`] when
    /// `origin` is not a client. The message is the concatenation of `chunks`; `auth` are
    /// the authenticator's headers for this attempt (those gRPC itself sets are skipped).
    async fn call(
        &self,
        path: &'static str,
        chunks: &[Bytes],
        origin: Origin,
        auth: http::HeaderMap,
    ) -> Result<Delivered, tonic::Status> {
        let body = MessageBody::new(chunks, self.compression, self.compression_level)?;
        let mut request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-timeout", grpc_timeout(self.timeout))
            .header(http::header::USER_AGENT, self.user_agent.clone())
            .body(body)
            .map_err(|e| tonic::Status::internal(format!("cannot build the request: {e}")))?;
        let headers = request.headers_mut();
        // None of gRPC's own (`grpc_reserved` names were left out when built).
        headers.extend(self.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, value) in auth {
            if let Some(name) = name.filter(|n| !grpc_reserved(n)) {
                headers.insert(name, value);
            }
        }
        if let Some(encoding) = self.compression.grpc_encoding() {
            headers.insert("grpc-encoding", http::HeaderValue::from_static(encoding));
        }
        if let Some(value) = origin.header_value() {
            let value = http::HeaderValue::from_str(&value)
                .map_err(|_| tonic::Status::internal("peer header is not ASCII"))?;
            headers.insert(PEER_HEADER, value);
        }
        if let (Some(secret), true) = (
            &self.peer_secret,
            origin != Origin::Client || path == DECISIONS_PATH,
        ) {
            headers.insert(PEER_AUTH_HEADER, secret.clone());
        }
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(Err(status)) if is_unanswered_ping(&status) => {
                // As a request past its deadline: the server may have the data.
                if chunks.iter().any(|c| !c.is_empty()) {
                    self.retry.stats().unanswered.add(1);
                }
                Err(status)
            }
            Ok(result) => result,
            Err(_elapsed) => {
                // The server may have the data: what is sent again may arrive twice (an
                // empty probe carries none).
                if chunks.iter().any(|c| !c.is_empty()) {
                    self.retry.stats().unanswered.add(1);
                }
                Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// Sends `request` and reads the answer: the response message on `grpc-status` 0, the
    /// status otherwise.
    async fn exchange(
        &self,
        request: http::Request<MessageBody>,
    ) -> Result<Delivered, tonic::Status> {
        let response = self.client.request(request).await.map_err(|e| {
            if let Some(status) = reset_by_server(&e, &self.endpoint) {
                return status;
            }
            let chain = error_chain(&e);
            let unanswered_ping = says_ping_unanswered(&chain);
            let hint = match &self.tls {
                _ if unanswered_ping => UNANSWERED_PING_HINT,
                None => "",
                // rustls's words for a plaintext answer to its hello.
                Some(_) if chain.contains("InvalidContentType") => PLAINTEXT_SERVER_HINT,
                Some(_) if !e.is_connect() => TLS_HINT,
                Some(_) => "",
            };
            let mut status = tonic::Status::unavailable(format!(
                "cannot reach {}: {chain}{hint}",
                self.endpoint
            ));
            if unanswered_ping {
                mark_unanswered_ping(&mut status);
            } else if e.is_connect() {
                status.metadata_mut().insert(
                    CONNECT_FAILED,
                    tonic::metadata::MetadataValue::from_static("1"),
                );
            }
            status
        })?;
        let (parts, body) = response.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(status_of_http(parts.status));
        }
        // A trailers-only answer carries the status in its headers.
        if let Some(status) = tonic::Status::from_header_map(&parts.headers) {
            if status.code() != tonic::Code::Ok {
                return Err(status);
            }
        }
        // An export answer is a few bytes: at most MAX_ANSWER_BYTES of it are kept, the rest
        // read and dropped for the status in its trailers. An OK answer larger than that is
        // delivered (its spans are there); refusing it as unavailable sent the request
        // again and again, its spans arriving each time (a hostile check: 12 sends).
        let mut body = body;
        let mut message = bytes::BytesMut::new();
        let mut trailers = None;
        let mut oversized = false;
        let read: Result<(), hyper::Error> = async {
            while let Some(frame) = body.frame().await {
                let frame = match frame?.into_data() {
                    Ok(data) => {
                        let room = MAX_ANSWER_BYTES.saturating_sub(message.len());
                        oversized |= data.len() > room;
                        message.extend_from_slice(&data[..data.len().min(room)]);
                        continue;
                    }
                    Err(frame) => frame,
                };
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
            Ok(())
        }
        .await;
        read.map_err(|e| {
            if let Some(status) = reset_by_server(&e, &self.endpoint) {
                return status;
            }
            let chain = error_chain(&e);
            let unanswered_ping = says_ping_unanswered(&chain);
            let hint = if unanswered_ping {
                UNANSWERED_PING_HINT
            } else {
                ""
            };
            let mut status = tonic::Status::unavailable(format!(
                "reading the answer of {}: {chain}{hint}",
                self.endpoint,
            ));
            if unanswered_ping {
                mark_unanswered_ping(&mut status);
            }
            status
        })?;
        let message = message.freeze();
        let status = trailers
            .as_ref()
            .and_then(tonic::Status::from_header_map)
            .or_else(|| tonic::Status::from_header_map(&parts.headers));
        match status {
            Some(status) if status.code() == tonic::Code::Ok => {
                let encoding = parts.headers.get("grpc-encoding").map(|v| v.as_bytes());
                let mut delivered = if oversized {
                    tracing::debug!(endpoint = %self.endpoint, "An OK answer over {MAX_ANSWER_BYTES} bytes: delivered, its message not read.");
                    Delivered::default()
                } else {
                    parse_message(message, encoding)
                };
                delivered.max_request_bytes = crate::receive::status::stated_max_request_bytes(
                    parts
                        .headers
                        .get(crate::receive::MAX_REQUEST_BYTES_METADATA)
                        .map(|v| v.as_bytes()),
                );
                Ok(delivered)
            }
            // The peer's message fit for a log line (a newline in it forged one).
            Some(status) => Err(tonic::Status::with_details_and_metadata(
                status.code(),
                crate::text::printable(status.message()),
                status.details().to_vec().into(),
                status.metadata().clone(),
            )),
            None => Err(tonic::Status::internal(format!(
                "{} answered without a grpc-status",
                self.endpoint
            ))),
        }
    }

    /// Sends with retries until delivered, refused for good, or out of retry time.
    pub async fn send(&self, body: Bytes) -> Result<Delivered, ForwardError> {
        self.send_to(TRACE_EXPORT_PATH, &[body], Origin::Client)
            .await
    }

    /// [`GrpcClient::send`] of one request made of several encoded
    /// `ExportTraceServiceRequest`s back to back (which is itself a valid request holding all
    /// of them), without copying them into one buffer.
    pub async fn send_chunks(&self, chunks: &[Bytes]) -> Result<Delivered, ForwardError> {
        self.send_to(TRACE_EXPORT_PATH, chunks, Origin::Client)
            .await
    }

    /// [`GrpcClient::send`] of spans from another gateway, marked with `origin`.
    pub async fn send_from(&self, body: Bytes, origin: Origin) -> Result<Delivered, ForwardError> {
        self.send_to(TRACE_EXPORT_PATH, &[body], origin).await
    }

    /// Hands decided trace ids to a gateway ([`DECISIONS_PATH`]), with retries.
    pub async fn send_decisions(&self, body: Bytes) -> Result<Delivered, ForwardError> {
        self.send_to(DECISIONS_PATH, &[body], Origin::Client).await
    }

    async fn send_to(
        &self,
        path: &'static str,
        chunks: &[Bytes],
        origin: Origin,
    ) -> Result<Delivered, ForwardError> {
        let holds_for = |status: &tonic::Status| {
            !self.hold_only_overloaded || status.code() == tonic::Code::ResourceExhausted
        };
        // One resend per request for refused credentials: a backend that refuses every
        // key (a wrong audience) fails the request and says so, not a resend per attempt.
        let resent = std::sync::atomic::AtomicBool::new(false);
        let result = self
            .retry
            .run_holding(
                || async {
                    let (auth, sent) = match self.auth_headers().await {
                        Ok(headers) => headers,
                        Err(status) => {
                            return Attempt::Retry {
                                error: status,
                                after: None,
                            }
                        }
                    };
                    match self.call(path, chunks, origin, auth).await {
                        Ok(delivered) => Attempt::Done(delivered),
                        Err(status) if self.unreachable_ends && is_connect_failure(&status) => {
                            Attempt::Fail(status)
                        }
                        // Retrying cannot help: it takes no more until it is gone.
                        Err(status) if is_leaving(&status) => Attempt::Fail(status),
                        // Refused credentials: worth another try only with another key
                        // (read anew from its file, or a token fetched anew).
                        Err(status)
                            if matches!(
                                status.code(),
                                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                            ) =>
                        {
                            let first = !resent.swap(true, std::sync::atomic::Ordering::Relaxed);
                            match (&self.auth, &sent) {
                                (Some(a), Some(sent)) if first && a.refresh_after(sent).await => {
                                    Attempt::Retry {
                                        error: status,
                                        after: None,
                                    }
                                }
                                _ => Attempt::Fail(status),
                            }
                        }
                        Err(status) if is_retryable_status(&status) => Attempt::Retry {
                            after: retry_delay(&status),
                            error: status,
                        },
                        Err(status) => Attempt::Fail(status),
                    }
                },
                holds_for,
            )
            .await;
        match result {
            Ok((mut delivered, attempts)) => {
                delivered.attempts = attempts;
                Ok(delivered)
            }
            Err(Failed::Rejected(status)) if is_connect_failure(&status) => {
                Err(ForwardError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    status,
                })
            }
            Err(Failed::Rejected(status)) if is_leaving(&status) => Err(ForwardError::Leaving {
                endpoint: self.endpoint.clone(),
                status,
            }),
            Err(Failed::Rejected(status)) => Err(ForwardError::Rejected {
                endpoint: self.endpoint.clone(),
                status,
            }),
            Err(Failed::GaveUp { attempts, last }) => Err(ForwardError::GaveUp {
                endpoint: self.endpoint.clone(),
                attempts,
                status: last,
            }),
        }
    }

    /// A client that presents the gateways' shared `secret` on peer requests (see
    /// [`crate::receive::check_peer`]). A secret that is not a valid header value is
    /// refused.
    pub fn with_peer_secret(mut self, secret: Option<&str>) -> Result<Self, ForwardError> {
        self.peer_secret = match secret {
            Some(s) => {
                let mut v = http::HeaderValue::from_str(s)
                    .map_err(|_| ForwardError::Header("peers.secret".into()))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(self)
    }

    /// A client that gives a request up at once, with [`ForwardError::Unreachable`], when
    /// no connection to the endpoint can be made (refused, or not made within the connect
    /// timeout), instead of retrying it: for callers that can send it elsewhere.
    ///
    /// Such a client also pings a server that leaves a request unanswered (see
    /// `liveness_pings`), and one that does not answer the ping counts as unreachable: a
    /// paused or hung process whose kernel still takes connections (a black-box trial
    /// froze a gateway: the router retried into it for the whole retry bound, holding every
    /// sender) is routed around within seconds, as a dead one is.
    pub fn give_up_when_unreachable(mut self) -> Self {
        self.unreachable_ends = true;
        self.rebuild();
        self
    }

    /// Past `max_elapsed_time`, requests are given up only once `hold` returns false (see
    /// [`crate::retry`]).
    pub fn hold_while(mut self, hold: crate::retry::Hold) -> Self {
        self.retry = self.retry.hold_while(hold);
        self
    }

    /// Like [`GrpcClient::hold_while`], for requests the server refuses for room
    /// (`RESOURCE_EXHAUSTED`: it is up and answering) only. Other errors are given up at
    /// `max_elapsed_time`, timed from the first attempt, or from the last time the hold
    /// kept the request if it did (see [`crate::retry::Retrier::run_holding`]). With
    /// retries off (`retry_on_failure.enabled: false`) nothing is held.
    pub fn hold_overloaded_while(mut self, hold: crate::retry::Hold) -> Self {
        self.retry = self.retry.hold_while(hold);
        self.hold_only_overloaded = true;
        self
    }

    /// Connections made to the endpoint so far (TCP, before any TLS handshake), by this
    /// client and its clones. One more than a caller saw last means the old connection
    /// ended and a new one was made: after a restart behind the same address, a new
    /// process may be answering.
    pub fn connections_made(&self) -> u64 {
        self.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The client's retry counters.
    pub fn retry_stats(&self) -> &Arc<RetryStats> {
        self.retry.stats()
    }
}

/// The pings of a client that gives requests up when their server is unreachable: while a
/// request is open, a second without a frame from the server sends an HTTP/2 PING, and an
/// answer later than the connect timeout (60% of `timeout`, from two to five seconds)
/// closes the connection, failing its requests as unreachable (see [`is_unanswered_ping`]).
/// A server's HTTP/2 layer answers pings however long its requests take, so a process
/// that does not run (paused, hung) or a path that drops packets misses one; so does a
/// process starved of CPU for longer than the wait, or a client whose own runtime stalls
/// that long (it checks the deadline before reading the answer): both are taken as down,
/// and back at the next probe. At the default 5 s `timeout` a frozen server is known
/// within about 4 s, before the request's own deadline; a trial pinning a gateway beside
/// busy processes at that timeout saw no false one.
/// Not under two seconds: with a 1 s `timeout`, a gateway starved of CPU (pinned beside
/// busy processes) missed one-second answers and flapped down and up (a re-check).
fn liveness_pings(timeout: Duration) -> (Option<Duration>, Duration) {
    (
        Some(Duration::from_secs(1)),
        connect_timeout(timeout).max(Duration::from_secs(2)),
    )
}

/// Whether `chain` (the error chain of a request hyper failed) says its connection was
/// closed because the server did not answer a keep-alive ping in time (hyper's words for
/// its `KeepAliveTimedOut`, the only error of the client's stack with them).
fn says_ping_unanswered(chain: &str) -> bool {
    chain.contains("keep-alive timed out")
}

/// Marks `status` as a request whose server answered no ping: as good as unreachable, so
/// connect-failed too (see [`is_connect_failure`]).
fn mark_unanswered_ping(status: &mut tonic::Status) {
    for key in [CONNECT_FAILED, UNANSWERED_PING] {
        status
            .metadata_mut()
            .insert(key, tonic::metadata::MetadataValue::from_static("1"));
    }
}

/// Whether a call failed because its server answered no HTTP/2 ping in time (a paused or
/// hung process, whose kernel still took the connection): one [`is_connect_failure`]
/// counts, though a connection was made.
pub fn is_unanswered_ping(status: &tonic::Status) -> bool {
    status.metadata().contains_key(UNANSWERED_PING)
}

/// How long a connection may take to be made, for requests of `timeout`: well inside it
/// (at most [`CONNECT_TIMEOUT`], 60% of it), so that a host that drops packets (a lost node)
/// ends the attempt as a connect failure, which callers treat as "unreachable" and route
/// around at once, rather than as a deadline that is retried: with the two equal, which
/// came first was a race.
fn connect_timeout(timeout: Duration) -> Duration {
    CONNECT_TIMEOUT.min(timeout.mul_f64(0.6))
}

/// The HTTP/2 client: plaintext, or with `tls` TLS for `https://` URLs, on `dialer`'s
/// connections.
fn http2_client(
    tls: Option<&ClientTls>,
    dialer: crate::tls::Dialer,
    (ping_interval, ping_timeout): (Option<Duration>, Duration),
    ping_while_idle: bool,
) -> Transport<MessageBody> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(ping_interval)
        .http2_keep_alive_timeout(ping_timeout)
        .http2_keep_alive_while_idle(ping_while_idle);
    Transport::new(&builder, tls, dialer, true)
}

/// Said of a request over TLS that failed after its connection was made and before any
/// answer: under TLS 1.3 a server refuses the client's certificate after the client's
/// handshake is done, so the client sees only a connection closed or cancelled, worded
/// differently from run to run ("connection closed", "channel closed", "canceled").
const TLS_HINT: &str = " (over TLS: if this persists, the server may be refusing this \
     client's certificate, or want one; its tls_failed_handshakes_total and log say)";

const UNANSWERED_PING_HINT: &str = " (the server did not answer an HTTP/2 ping while a \
     request waited: its process is paused or hung, or the path to it drops packets)";

const PLAINTEXT_SERVER_HINT: &str = " (the server answered in plaintext, not TLS: for a \
     plaintext endpoint write http://, or set tls: {insecure: true}; an endpoint without a \
     scheme is dialled with TLS, as the Collector dials it)";

/// Headers gRPC itself sets, which neither the configured headers nor an
/// authenticator's may replace (grpc-go's reserved names, which it keeps out of metadata
/// too), `host` (the `:authority` is the endpoint's, or `authority`'s), and connection
/// headers HTTP/2 refuses: such headers are not sent. Other `grpc-*` names are sent, as
/// grpc-go sends them.
pub fn grpc_reserved(name: &http::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "content-type"
            | "te"
            | "user-agent"
            | "grpc-message-type"
            | "grpc-encoding"
            | "grpc-message"
            | "grpc-status"
            | "grpc-timeout"
            | "grpc-status-details-bin"
            | "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "content-length"
            | "upgrade"
    )
}

/// Whether a call failed because no connection could be made (refused, or not made
/// within the connect timeout): a [`GrpcClient::send_once`] error, say.
pub fn is_connect_failure(status: &tonic::Status) -> bool {
    status.metadata().contains_key(CONNECT_FAILED)
}

/// Whether `status` refuses the caller's credentials (`PERMISSION_DENIED`,
/// `UNAUTHENTICATED`): for gateways, peers with another `peers.secret` or certificate.
pub fn is_refused_credentials(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    )
}

/// Whether the server is a gateway leaving the ring (see
/// [`crate::receive::Refusal::Leaving`]).
fn is_leaving(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && status
            .metadata()
            .contains_key(crate::receive::LEAVING_METADATA)
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const USER_AGENT: &str = concat!("tailgate/", env!("CARGO_PKG_VERSION"));

/// The `grpc-timeout` header value for `d`: at most eight digits and a unit.
fn grpc_timeout(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 100_000_000 {
        format!("{}m", ms.max(1))
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    }
}

/// The gRPC status for an HTTP answer other than 200, as the gRPC spec maps them.
fn status_of_http(code: http::StatusCode) -> tonic::Status {
    use http::StatusCode as H;
    let message = format!("HTTP status {code} instead of a gRPC answer");
    match code {
        H::BAD_REQUEST => tonic::Status::internal(message),
        H::UNAUTHORIZED => tonic::Status::unauthenticated(message),
        H::FORBIDDEN => tonic::Status::permission_denied(message),
        H::NOT_FOUND => tonic::Status::unimplemented(message),
        H::TOO_MANY_REQUESTS | H::BAD_GATEWAY | H::SERVICE_UNAVAILABLE | H::GATEWAY_TIMEOUT => {
            tonic::Status::unavailable(message)
        }
        _ => tonic::Status::unknown(message),
    }
}

pub use crate::text::error_chain;

/// The status of a call the server ended with `RST_STREAM`, as grpc-go reads one (its
/// `http2ErrConvTab`, which the Collector's exporters go by): `REFUSED_STREAM` is
/// UNAVAILABLE (the server says it did not process the request: sent again), `CANCEL`
/// CANCELLED, `FLOW_CONTROL_ERROR` and `ENHANCE_YOUR_CALM` RESOURCE_EXHAUSTED,
/// `INADEQUATE_SECURITY` PERMISSION_DENIED, and the rest (`INTERNAL_ERROR`, `NO_ERROR`
/// before a status, ...) INTERNAL, codes HTTP/2 does not define UNKNOWN: final, as the server may have taken the request (it was
/// retried as UNAVAILABLE, and what a backend had stored arrived again). `None` when `e`
/// is not a reset of this one stream by the server: a connection lost or sent away is
/// UNAVAILABLE, as grpc-go has it.
fn reset_by_server(e: &(dyn std::error::Error + 'static), endpoint: &str) -> Option<tonic::Status> {
    let mut source = Some(e);
    let reset = loop {
        let error = source?;
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            break h2;
        }
        source = error.source();
    };
    if !reset.is_reset() || !reset.is_remote() {
        return None;
    }
    let reason = reset.reason()?;
    let code = match reason {
        h2::Reason::REFUSED_STREAM => tonic::Code::Unavailable,
        h2::Reason::CANCEL => tonic::Code::Cancelled,
        h2::Reason::FLOW_CONTROL_ERROR | h2::Reason::ENHANCE_YOUR_CALM => {
            tonic::Code::ResourceExhausted
        }
        h2::Reason::INADEQUATE_SECURITY => tonic::Code::PermissionDenied,
        other if u32::from(other) > 13 => tonic::Code::Unknown,
        _ => tonic::Code::Internal,
    };
    Some(tonic::Status::new(
        code,
        format!("{endpoint} ended the call with RST_STREAM ({reason:?})"),
    ))
}

/// Largest answer read from a server.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The response message inside its gRPC frame, decompressed if the server compressed it
/// (grpc-go answers in the encoding of the request). A malformed answer reads as full
/// success, as for any response that does not decode.
fn parse_message(body: Bytes, encoding: Option<&[u8]>) -> Delivered {
    let Some(&[flag, a, b, c, d]) = body.get(..5) else {
        return Delivered::default();
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    let Some(message) = body.get(5..5 + len) else {
        return Delivered::default();
    };
    let message = match (flag, encoding) {
        (0, _) => Ok(body.slice(5..5 + len)),
        (1, Some(b"gzip")) => crate::receive::compress::gunzip(message, MAX_ANSWER_BYTES),
        (1, Some(b"zstd")) => crate::receive::compress::unzstd(message, MAX_ANSWER_BYTES),
        _ => return Delivered::default(),
    };
    message.map(parse_response).unwrap_or_default()
}

/// A unary gRPC request body: the message prefix, then the message in the chunks given.
pub(crate) struct MessageBody {
    chunks: std::collections::VecDeque<Bytes>,
    remaining: u64,
}

// === impl MessageBody ===

impl MessageBody {
    fn new(
        chunks: &[Bytes],
        compression: Compression,
        level: Option<i32>,
    ) -> Result<Self, tonic::Status> {
        let (flag, chunks): (u8, Vec<Bytes>) = match compression
            .compress_grpc(level, chunks)
            .map_err(|e| tonic::Status::internal(format!("compressing: {e}")))?
        {
            None => (0, chunks.to_vec()),
            Some(compressed) => (1, vec![Bytes::from(compressed)]),
        };
        let len: usize = chunks.iter().map(Bytes::len).sum();
        let len = u32::try_from(len)
            .map_err(|_| tonic::Status::resource_exhausted("message over 4 GiB"))?;
        let mut prefix = [0u8; 5];
        prefix[0] = flag;
        prefix[1..].copy_from_slice(&len.to_be_bytes());
        let mut queue = std::collections::VecDeque::with_capacity(chunks.len() + 1);
        queue.push_back(Bytes::copy_from_slice(&prefix));
        queue.extend(chunks.into_iter().filter(|c| !c.is_empty()));
        Ok(MessageBody {
            chunks: queue,
            remaining: 5 + u64::from(len),
        })
    }
}

impl http_body::Body for MessageBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let next = this.chunks.pop_front();
        if let Some(chunk) = &next {
            this.remaining -= chunk.len() as u64;
        }
        std::task::Poll::Ready(next.map(|c| Ok(http_body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// [`parse_response`] of an answer in OTLP/JSON (`Content-Type: application/json`), as
/// the Collector's otlphttp exporter reads one by its content type: `partialSuccess` with
/// `rejectedSpans` as a string or a number (protobuf's JSON mapping writes an int64 as a
/// string), and `errorMessage`.
pub fn parse_json_response(body: &[u8]) -> Delivered {
    let Ok(answer) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Delivered::default();
    };
    let field = |v: &serde_json::Value, camel: &str, snake: &str| {
        v.get(camel).or_else(|| v.get(snake)).cloned()
    };
    let Some(partial) = field(&answer, "partialSuccess", "partial_success") else {
        return Delivered::default();
    };
    let rejected = match field(&partial, "rejectedSpans", "rejected_spans") {
        Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().unwrap_or(0),
        Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    };
    Delivered {
        rejected_spans: rejected.max(0) as u64,
        message: field(&partial, "errorMessage", "error_message")
            .and_then(|m| m.as_str().map(crate::text::printable))
            .unwrap_or_default(),
        ..Delivered::default()
    }
}

/// Reads `partial_success` from an `ExportTraceServiceResponse`; a response that does not
/// decode is taken as full success, as the spec says clients should.
pub fn parse_response(body: Bytes) -> Delivered {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    match ExportTraceServiceResponse::decode(body) {
        Ok(ExportTraceServiceResponse {
            partial_success: Some(p),
        }) => Delivered {
            rejected_spans: p.rejected_spans.max(0) as u64,
            message: crate::text::printable(&p.error_message),
            ..Delivered::default()
        },
        _ => Delivered::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };

    /// Scenario: header names an exporter's `headers` or an authenticator may give a gRPC
    /// call. Guarantees: grpc-go's reserved names, `host` and HTTP/2's connection headers
    /// are kept out; other `grpc-*` names and ordinary ones are sent, as grpc-go sends them.
    #[test]
    fn only_what_grpc_sets_or_http2_refuses_is_kept_out() {
        let reserved =
            |n: &str| grpc_reserved(&http::HeaderName::from_bytes(n.as_bytes()).unwrap());
        for n in [
            "content-type",
            "te",
            "user-agent",
            "grpc-encoding",
            "grpc-timeout",
            "grpc-status",
            "host",
            "connection",
            "upgrade",
            "transfer-encoding",
        ] {
            assert!(reserved(n), "{n}");
        }
        for n in [
            "grpc-previous-rpc-attempts",
            "grpc-retry-pushback-ms",
            "x-scope-orgid",
            "authorization",
        ] {
            assert!(!reserved(n), "{n}");
        }
    }

    /// Scenario: the liveness pings of clients that give up when unreachable, for request
    /// timeouts of 1, 3, 5 (the routers' and peers' default), 10 and 60 s.
    /// Guarantees (configuration.md, resilience.md, `forward.timeout`'s doc): a ping after a
    /// second without an answer, its answer awaited 60% of the timeout, from two to five
    /// seconds; at the default, ping and wait (4 s) end before the request's deadline.
    #[test]
    fn liveness_pings_wait_sixty_percent_of_the_timeout_within_two_to_five_seconds() {
        let secs = |s: u64| Duration::from_secs(s);
        for (timeout, wait) in [
            (secs(1), secs(2)),
            (secs(3), secs(2)),
            (secs(5), secs(3)),
            (secs(10), secs(5)),
            (secs(60), secs(5)),
        ] {
            assert_eq!(
                liveness_pings(timeout),
                (Some(secs(1)), wait),
                "{timeout:?}"
            );
        }
        let (interval, wait) = liveness_pings(secs(5));
        assert!(interval.unwrap() + wait < secs(5));
    }

    /// Scenario: `keepalive` blocks as Collector configs write them.
    /// Guarantees: read as grpc-go reads them: `time` under 10 s is 10 s, 0, negative
    /// and null included (grpc-go's `WithKeepaliveParams` raises them; Go's confmap takes
    /// all three); `timeout` 0 is 20 s; Go durations (`1.5m`) are taken; keys left out are
    /// 10 s.
    #[test]
    fn keepalive_reads_as_grpc_go() {
        let read = |text: &str| serde_yaml_ng::from_str::<Keepalive>(text).unwrap().pings();
        let s = Duration::from_secs;
        assert_eq!(read("{time: 20s, timeout: 30s}"), (Some(s(20)), s(30)));
        assert_eq!(read("{time: 1s, timeout: 0s}"), (Some(s(10)), s(20)));
        for zero in ["0s", "0", "-5s", "~", "-1.5m"] {
            assert_eq!(
                read(&format!("{{time: {zero}}}")),
                (Some(s(10)), s(10)),
                "{zero}"
            );
        }
        assert!(serde_yaml_ng::from_str::<Keepalive>("{time: -5x}").is_err());
        assert_eq!(read("{time: 1.5m}"), (Some(s(90)), s(10)));
        assert_eq!(read("{}"), (Some(s(10)), s(10)));
        assert_eq!(Keepalive::default().pings(), (Some(s(30)), s(20)));
        assert!(serde_yaml_ng::from_str::<Keepalive>("{time: 5x}").is_err());
    }

    /// Scenario: the status a leaving gateway answers peers with, and plain UNAVAILABLE.
    /// Guarantees: as docs/resilience.md says, the answer is UNAVAILABLE marked
    /// `tailgate-leaving`, counted as `unavailable` (503 over HTTP); the client tells it
    /// apart from an UNAVAILABLE it should retry.
    #[test]
    fn a_leaving_answer_is_unavailable_marked_and_recognised() {
        let refusal = crate::receive::Refusal::Leaving("leaving".into());
        let status = refusal.to_grpc();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(is_leaving(&status));
        assert_eq!(refusal.reason(), "unavailable");
        assert_eq!(refusal.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(!is_leaving(&tonic::Status::unavailable("down")));
        // The marker survives the trip through response headers.
        let (parts, _) = status.into_http::<()>().into_parts();
        let back = tonic::Status::from_header_map(&parts.headers).unwrap();
        assert!(is_leaving(&back));
    }
    use std::io::Write;

    fn framed(flag: u8, message: &[u8]) -> Bytes {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        Bytes::from(out)
    }

    /// Scenario: request timeouts of 1 s, the router's 5 s and 30 s.
    /// Guarantee: a connection attempt always ends before the request's deadline, so an
    /// unreachable host is reported as one (and routed around), never as a timeout.
    #[test]
    fn connections_give_up_before_the_request_does() {
        for t in [1, 5, 30].map(Duration::from_secs) {
            let c = connect_timeout(t);
            assert!(c < t && c <= CONNECT_TIMEOUT, "{t:?}: {c:?}");
        }
        assert_eq!(
            connect_timeout(Duration::from_secs(5)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn answers_are_read_plain_and_compressed() {
        let answer = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 7,
                error_message: "old".into(),
            }),
        }
        .encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&answer).unwrap_or_default();
        let gz = gz.finish().unwrap_or_default();
        let zst = zstd::bulk::compress(&answer, 3).unwrap_or_default();
        for (body, encoding) in [
            (framed(0, &answer), None),
            (framed(1, &gz), Some(&b"gzip"[..])),
            (framed(1, &zst), Some(&b"zstd"[..])),
        ] {
            let d = parse_message(body, encoding);
            assert_eq!((d.rejected_spans, d.message.as_str()), (7, "old"));
        }
        // Unknown encoding, truncated frame, empty body: full success, as the spec says.
        for (body, encoding) in [
            (framed(1, &gz), Some(&b"snappy"[..])),
            (framed(0, &answer).slice(..8), None),
            (Bytes::new(), None),
        ] {
            assert_eq!(parse_message(body, encoding), Delivered::default());
        }
    }

    #[test]
    fn timeouts_fit_the_header_grammar() {
        assert_eq!(grpc_timeout(Duration::from_secs(5)), "5000m");
        assert_eq!(grpc_timeout(Duration::from_micros(10)), "1m");
        assert_eq!(grpc_timeout(Duration::from_secs(200_000)), "200000S");
    }
}
