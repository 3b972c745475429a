//! The OTLP/gRPC exporter's configuration (`export.otlp_grpc` in the gateway config).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::forward::{ForwardError, GrpcClient, RetryConfig};

/// `export.otlp_grpc`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// Backend address, `http://host:4317` (or `host:4317`).
    pub endpoint: String,
    /// gRPC metadata sent with every request (e.g. auth tokens, tenant ids).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt. Default 10s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries. Past `max_elapsed_time` the spans count as failed. Default 30s.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Most spans in one request. Default 4096.
    #[serde(default = "default_max_batch_spans")]
    pub max_batch_spans: usize,
    /// Most span bytes in one request; keep it under the backend's message limit (4 MiB for
    /// a default Collector). Default 3 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Longest a kept trace waits for its batch to fill. Default 200ms.
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub batch_timeout: Duration,
    /// Kept traces queued for this exporter before shards wait. Default 4096.
    #[serde(default = "default_queue_traces")]
    pub queue_traces: usize,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_batch_spans() -> usize {
    4096
}
fn default_max_batch_bytes() -> usize {
    3 << 20
}
fn default_batch_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_queue_traces() -> usize {
    4096
}

impl OtlpGrpcConfig {
    /// A config with defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpGrpcConfig {
            endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            retry: RetryConfig::default(),
            max_batch_spans: default_max_batch_spans(),
            max_batch_bytes: default_max_batch_bytes(),
            batch_timeout: default_batch_timeout(),
            queue_traces: default_queue_traces(),
        }
    }

    /// Checks the endpoint and headers without connecting.
    pub fn validate(&self) -> Result<(), String> {
        let url = if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else {
            format!("http://{}", self.endpoint)
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("endpoint {:?} is not a URL: {e}", self.endpoint))?;
        if !matches!(uri.scheme_str(), Some("http")) || uri.host().is_none() {
            return Err(format!(
                "endpoint {:?} must look like http://host:4317 (TLS is not supported yet)",
                self.endpoint
            ));
        }
        for (k, v) in &self.headers {
            let key = tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(
                k.to_ascii_lowercase().as_bytes(),
            );
            if key.is_err() || tonic::metadata::MetadataValue::try_from(v.as_str()).is_err() {
                return Err(format!("header {k:?} is not valid gRPC metadata"));
            }
        }
        Ok(())
    }

    /// The client this config describes. Must be called inside a Tokio runtime.
    pub fn client(&self) -> Result<GrpcClient, ForwardError> {
        let headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        GrpcClient::new(&self.endpoint, &headers, self.timeout, self.retry.clone())
    }
}
