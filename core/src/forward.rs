//! A gRPC client that sends encoded `ExportTraceServiceRequest`s to one endpoint: a router's
//! gateway, or a gateway's backend. One reused HTTP/2 connection, large flow-control
//! windows, and retries with exponential back-off and jitter that honour the server's
//! `RetryInfo`, bounded in time. What cannot be delivered comes back as an error, never
//! silently.

use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::receive::grpc::{CONNECTION_WINDOW, STREAM_WINDOW};
use crate::receive::status::{is_retryable, retry_delay};
use crate::receive::{Origin, DECISIONS_PATH, PEER_HEADER};
use crate::wire::{RawCodec, TRACE_EXPORT_PATH};

/// Retry behaviour of a client.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First back-off. Default 100ms.
    #[serde(default = "default_initial", with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Largest back-off. Default 5s.
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// Give up after this long; the data is then failed. Default 30s.
    #[serde(default = "default_max_elapsed", with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

fn default_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_elapsed() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: default_initial(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed(),
        }
    }
}

/// Compression of outgoing requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None: cheapest for hops inside a cluster.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// zstd: better ratio than gzip at a lower CPU cost.
    Zstd,
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
    /// The server refused the data for good (e.g. `INVALID_ARGUMENT`).
    #[error("{endpoint} rejected the request: {status}")]
    Rejected {
        /// Where it was sent.
        endpoint: String,
        /// The final status.
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
        matches!(self, ForwardError::GaveUp { .. })
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
}

/// A client for one OTLP/gRPC endpoint.
#[derive(Debug, Clone)]
pub struct GrpcClient {
    endpoint: String,
    grpc: tonic::client::Grpc<Channel>,
    headers: MetadataMap,
    timeout: Duration,
    retry: RetryConfig,
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
        let url = if endpoint.contains("://") {
            endpoint.to_owned()
        } else {
            format!("http://{endpoint}")
        };
        let channel = Endpoint::from_shared(url)
            .map_err(|e| ForwardError::Endpoint {
                endpoint: endpoint.to_owned(),
                message: e.to_string(),
            })?
            .initial_stream_window_size(Some(STREAM_WINDOW))
            .initial_connection_window_size(Some(CONNECTION_WINDOW))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .connect_lazy();
        let mut map = MetadataMap::new();
        for (k, v) in headers {
            let key = MetadataKey::from_str(&k.to_ascii_lowercase())
                .map_err(|_| ForwardError::Header(k.clone()))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| ForwardError::Header(format!("{k}: {v}")))?;
            map.insert(key, value);
        }
        let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(16 << 20);
        grpc = match compression {
            Compression::None => grpc,
            Compression::Gzip => grpc.send_compressed(CompressionEncoding::Gzip),
            Compression::Zstd => grpc.send_compressed(CompressionEncoding::Zstd),
        };
        Ok(GrpcClient {
            endpoint: endpoint.to_owned(),
            grpc,
            headers: map,
            timeout,
            retry,
        })
    }

    /// The endpoint as configured.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends once, without retrying.
    pub async fn send_once(&self, body: Bytes) -> Result<Delivered, tonic::Status> {
        self.call(TRACE_EXPORT_PATH, body, Origin::Client).await
    }

    /// One unary call of `path` with the configured headers, plus the [`PEER_HEADER`] when
    /// `origin` is not a client.
    async fn call(
        &self,
        path: &'static str,
        body: Bytes,
        origin: Origin,
    ) -> Result<Delivered, tonic::Status> {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connection not ready: {e}")))?;
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.headers.clone();
        if let Some(value) = origin.header_value() {
            let value = MetadataValue::try_from(value.as_str())
                .map_err(|_| tonic::Status::internal("peer header is not ASCII"))?;
            request.metadata_mut().insert(PEER_HEADER, value);
        }
        request.set_timeout(self.timeout);
        let path = http::uri::PathAndQuery::from_static(path);
        let response = grpc.unary(request, path, RawCodec).await?;
        Ok(parse_response(response.into_inner()))
    }

    /// Sends with retries until delivered, refused for good, or out of retry time.
    pub async fn send(&self, body: Bytes) -> Result<Delivered, ForwardError> {
        self.send_to(TRACE_EXPORT_PATH, body, Origin::Client).await
    }

    /// [`GrpcClient::send`] of spans from another gateway, marked with `origin`.
    pub async fn send_from(&self, body: Bytes, origin: Origin) -> Result<Delivered, ForwardError> {
        self.send_to(TRACE_EXPORT_PATH, body, origin).await
    }

    /// Hands decided trace ids to a gateway ([`DECISIONS_PATH`]), with retries.
    pub async fn send_decisions(&self, body: Bytes) -> Result<Delivered, ForwardError> {
        self.send_to(DECISIONS_PATH, body, Origin::Client).await
    }

    async fn send_to(
        &self,
        path: &'static str,
        body: Bytes,
        origin: Origin,
    ) -> Result<Delivered, ForwardError> {
        let deadline = tokio::time::Instant::now() + self.retry.max_elapsed_time;
        let mut backoff = self.retry.initial_interval;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let status = match self.call(path, body.clone(), origin).await {
                Ok(mut delivered) => {
                    delivered.attempts = attempts;
                    return Ok(delivered);
                }
                Err(status) => status,
            };
            if !is_retryable(status.code()) {
                return Err(ForwardError::Rejected {
                    endpoint: self.endpoint.clone(),
                    status,
                });
            }
            let wait = retry_delay(&status).unwrap_or_else(|| jitter(backoff));
            if tokio::time::Instant::now() + wait > deadline {
                return Err(ForwardError::GaveUp {
                    endpoint: self.endpoint.clone(),
                    attempts,
                    status,
                });
            }
            tracing::debug!(endpoint = %self.endpoint, %status, ?wait, "Retrying export.");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.retry.max_interval);
        }
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
            message: p.error_message,
            attempts: 0,
        },
        _ => Delivered::default(),
    }
}

/// `d` spread by ±25%, so that many clients retrying together do not stay in step.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}
