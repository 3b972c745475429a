//! The OTLP/gRPC exporter's configuration (`export.otlp_grpc[/name]` in the gateway config).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use tailgate_core::forward::{
    Compression, CompressionParams, ForwardError, GrpcClient, Keepalive, RetryConfig,
};
use tailgate_core::proxy::{Proxy, ProxyEnv, ProxyFor};

use super::error::{header_problem, SettingError};
use super::keys::NotApplied;

/// `export.otlp_grpc[/name]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpGrpcConfig {
    /// Backend address, `http://host:4317`, `https://host:4317` (TLS) or `host:4317`.
    pub endpoint: String,
    /// gRPC metadata sent with every request (e.g. auth tokens, tenant ids).
    /// Also written as the Collector's list of `{name, value}`.
    #[serde(default, deserialize_with = "super::keys::deserialize_headers")]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt. Default 10s; 0 is the default too (see `attempt_timeout`).
    #[serde(default = "default_timeout", with = "tailgate_core::config::duration")]
    pub timeout: Duration,
    /// Retries. Past `max_elapsed_time` the spans count as failed. Default 30s. Also
    /// read as `retry_on_failure`, the Collector's name (and keys).
    #[serde(default, alias = "retry_on_failure")]
    pub retry: RetryConfig,
    /// Request compression: `none`, `gzip`, `zstd` or `snappy` (framed, as the Collector's
    /// gRPC exporter). Left out: none (see [`OtlpGrpcConfig::compression`]).
    #[serde(default, deserialize_with = "written_grpc_compression")]
    pub compression: Option<Compression>,
    /// The Collector's `compression_params` (`level`) for `compression`.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// How kept spans are gathered into requests.
    #[serde(default)]
    pub batch: super::batch::BatchConfig,
    /// Span bytes queued for this exporter before kept spans wait in the buffer (parked). Default 64 MiB.
    #[serde(default = "super::batch::default_queue_bytes")]
    pub queue_bytes: u64,
    /// The Collector's `sending_queue` block: accepted so that an exporter block copied from
    /// a Collector config loads, and not applied (Tailgate's queue is `queue_bytes`, its
    /// batching `batch`); a warning at start says so.
    #[serde(default, deserialize_with = "super::keys::sending_queue")]
    pub sending_queue: Option<NotApplied>,
    /// HTTP/2 pings: the Collector's `keepalive` block (`time`, `timeout`,
    /// `permit_without_stream`). Without it, a ping after 30 s without activity, answered
    /// within 20 s.
    #[serde(default)]
    pub keepalive: Option<Keepalive>,
    /// The Collector's grpc-go tuning keys, accepted so that a copied block loads and not
    /// applied (warned at start): `balancer_name` (one endpoint, one connection here),
    /// `read_buffer_size`, `write_buffer_size` and `wait_for_ready` (a request waits for
    /// the connection within `timeout`, and retries).
    #[serde(default)]
    pub balancer_name: Option<NotApplied>,
    /// See `balancer_name`.
    #[serde(default)]
    pub read_buffer_size: Option<NotApplied>,
    /// See `balancer_name`.
    #[serde(default)]
    pub write_buffer_size: Option<NotApplied>,
    /// See `balancer_name`.
    #[serde(default)]
    pub wait_for_ready: Option<NotApplied>,
    /// The Collector's `batcher` block (deprecated there for `sending_queue.batch`):
    /// accepted and not applied, as `sending_queue`.
    #[serde(default)]
    pub batcher: Option<NotApplied>,
    /// TLS (the Collector's `configtls` client keys). `https://` endpoints always use
    /// TLS (the system's roots unless `ca_file`), `http://` ones never; an endpoint
    /// without a scheme uses TLS unless this block says `insecure: true`, as the
    /// Collector dials it (with the system's roots when there is no block).
    #[serde(default)]
    pub tls: Option<tailgate_core::tls::ClientTlsConfig>,
    /// The Collector's `auth: {authenticator: NAME}`: an extension under `extensions:`
    /// whose credential goes with every request (TLS required, as in the Collector).
    #[serde(default)]
    pub auth: Option<super::auth::AuthRef>,
    /// configgrpc's `authority`: sent as every request's `:authority` instead of the
    /// endpoint's host, and (over TLS) the name the backend's certificate is checked
    /// against, unless `tls.server_name_override` names another; connections still go to
    /// the endpoint (grpc-go's `WithAuthority`). Left out or empty: the endpoint's.
    #[serde(default)]
    pub authority: Option<String>,
    /// configgrpc's `user_agent` (v0.151): written in front of Tailgate's own
    /// `user-agent`, as grpc-go writes it in front of its own.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// `compression` as written: `None` only when the key is left out.
fn written_grpc_compression<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Compression>, D::Error> {
    Compression::deserialize_grpc(d).map(Some)
}

pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The timeout of one attempt for a `timeout` setting: 0 is the default. (The Collector's
/// exporters wait without limit then; here one backend that never answers would hold an
/// exporter's one request in flight, and every trace queued behind it, forever, where
/// the setting read as written timed every attempt out at once.)
pub(crate) fn attempt_timeout(timeout: Duration) -> Duration {
    if timeout.is_zero() {
        default_timeout()
    } else {
        timeout
    }
}

impl OtlpGrpcConfig {
    /// A config with defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        OtlpGrpcConfig {
            endpoint: endpoint.into(),
            headers: BTreeMap::new(),
            timeout: default_timeout(),
            retry: RetryConfig::default(),
            compression: None,
            compression_params: CompressionParams::default(),
            batch: super::batch::BatchConfig::default(),
            queue_bytes: super::batch::default_queue_bytes(),
            sending_queue: None,
            keepalive: None,
            balancer_name: None,
            read_buffer_size: None,
            write_buffer_size: None,
            wait_for_ready: None,
            batcher: None,
            tls: None,
            auth: None,
            authority: None,
            user_agent: None,
        }
    }

    /// The endpoint to dial: `endpoint` with gRPC's `dns:` or `passthrough:` resolver
    /// prefix taken off (`dns:///host:4317`, `dns:host:4317`, `passthrough:///host:4317`,
    /// as Collector configs write them for grpc-go, which configgrpc takes), which leaves
    /// `host:4317`: resolved by the system's resolver, one connection to one of its
    /// addresses (`balancer_name` is not applied).
    pub fn target(&self) -> &str {
        let e = self.endpoint.as_str();
        if let Some(rest) = e.strip_prefix("dns://") {
            // `dns://[authority]/host:port`: the authority (a DNS server) is not used.
            rest.split_once('/').map_or(rest, |(_, target)| target)
        } else if let Some(rest) = e.strip_prefix("passthrough://") {
            // `passthrough:///host:port`: grpc-go dials the rest as it is.
            rest.split_once('/').map_or(rest, |(_, target)| target)
        } else {
            e.strip_prefix("dns:")
                .or_else(|| e.strip_prefix("passthrough:"))
                .unwrap_or(e)
        }
    }

    /// The Collector keys set in this block that are accepted and not applied.
    pub fn not_applied(&self) -> Vec<&'static str> {
        super::keys::set_keys([
            ("sending_queue", &self.sending_queue),
            ("balancer_name", &self.balancer_name),
            ("read_buffer_size", &self.read_buffer_size),
            ("write_buffer_size", &self.write_buffer_size),
            ("wait_for_ready", &self.wait_for_ready),
            ("batcher", &self.batcher),
        ])
    }

    /// The `tls:` block as dialled: as written, or for an endpoint without a scheme and
    /// without a block, the Collector's default (TLS, the system's roots).
    fn tls_config(&self) -> Option<std::borrow::Cow<'_, tailgate_core::tls::ClientTlsConfig>> {
        match &self.tls {
            Some(t) => Some(std::borrow::Cow::Borrowed(t)),
            None if !self.target().contains("://") => Some(std::borrow::Cow::Owned(
                tailgate_core::tls::ClientTlsConfig::default(),
            )),
            None => None,
        }
    }

    /// The compression requests are sent with: as written, none when left out (a
    /// departure: the Collector's exporters gzip by default; see [`super::ExportConfig::warnings`]).
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or(Compression::None)
    }

    /// Whether requests go over TLS (`false` when the endpoint or TLS block is invalid).
    pub fn uses_tls(&self) -> bool {
        tailgate_core::tls::ClientTlsConfig::uses_tls(self.tls_config().as_deref(), self.target())
            .unwrap_or(false)
    }

    /// The proxy its connections go through: what `env`'s `HTTPS_PROXY` and `NO_PROXY`
    /// say for its endpoint, as grpc-go reads them (configgrpc has no `proxy_url`).
    pub fn proxy(&self, env: &ProxyEnv) -> Result<Option<Proxy>, SettingError> {
        Ok(env.for_endpoint(&self.dialled()?, ProxyFor::Grpc)?)
    }

    /// The endpoint as it is dialled: `https://` when its connection is TLS (so a port
    /// left out is 443, as `NO_PROXY` entries with ports are matched against).
    pub fn dialled(&self) -> Result<Uri, SettingError> {
        let uri =
            tailgate_core::endpoint::parse(self.target(), tailgate_core::endpoint::Bare::AsHttp)?;
        if !self.uses_tls() || uri.scheme_str() == Some("https") {
            return Ok(uri);
        }
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
        Ok(tailgate_core::endpoint::parse(
            &format!("https://{authority}"),
            tailgate_core::endpoint::Bare::AsHttp,
        )?)
    }

    /// Checks the endpoint and headers without connecting.
    pub fn validate(&self) -> Result<(), SettingError> {
        tailgate_core::endpoint::parse(self.target(), tailgate_core::endpoint::Bare::AsHttp)?;
        tailgate_core::tls::client_side(self.tls_config().as_deref(), self.target())?;
        if let Some(a) = self.authority.as_deref().filter(|a| !a.trim().is_empty()) {
            tailgate_core::endpoint::parse_authority(a.trim()).map_err(SettingError::Authority)?;
        }
        self.compression_params
            .check(self.compression())
            .map_err(SettingError::CompressionParams)?;
        if let Some(ua) = &self.user_agent {
            if http::HeaderValue::from_str(ua).is_err() {
                return Err(SettingError::UserAgent);
            }
        }
        for (k, v) in &self.headers {
            let bad = |problem| SettingError::Header {
                name: k.clone(),
                problem,
            };
            if let Some(problem) = header_problem(k, v) {
                return Err(bad(problem));
            }
            let key = tonic::metadata::MetadataKey::<tonic::metadata::Ascii>::from_bytes(
                k.to_ascii_lowercase().as_bytes(),
            );
            if key.is_err() || tonic::metadata::MetadataValue::try_from(v.as_str()).is_err() {
                return Err(bad("is not valid gRPC metadata"));
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
        let client = GrpcClient::with_tls_config(
            self.target(),
            &headers,
            attempt_timeout(self.timeout),
            self.retry.clone(),
            self.compression(),
            self.tls_config().as_deref(),
        )?
        .with_compression_params(self.compression_params)?;
        let client = match self.authority.as_deref().filter(|a| !a.trim().is_empty()) {
            Some(authority) => client.with_authority(authority.trim())?,
            None => client,
        };
        let client = match self.user_agent.as_deref().filter(|a| !a.is_empty()) {
            Some(user_agent) => client.with_user_agent(user_agent)?,
            None => client,
        };
        Ok(match self.keepalive {
            Some(k) => client.with_keepalive(k),
            None => client,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailgate_core::test_util::CaptureBackend;

    /// Scenario: an `otlp` exporter written with `timeout: 0` (a Collector config's "no
    /// timeout") sends to a backend that holds the request before it answers.
    /// Guarantees: the request is delivered at the first attempt: 0 is the default 10 s,
    /// not a timeout every attempt meets at once (a black-box check saw every export time
    /// out and the same spans stored again and again).
    #[tokio::test]
    async fn a_zero_timeout_is_the_default_not_an_instant_one() {
        let stop = tokio_util::sync::CancellationToken::new();
        let (addr, backend) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
        let cfg: OtlpGrpcConfig = serde_yaml_ng::from_str(&format!(
            "{{endpoint: 'http://{addr}', timeout: 0s, retry_on_failure: {{max_elapsed_time: 1s}}}}"
        ))
        .unwrap();
        let client = cfg.client().unwrap();
        backend.hold(true);
        // Released once the request waits there: an attempt that timed out at once would
        // have failed by then (no timer: the wait is for the request to arrive).
        let release = tokio::spawn(async move {
            for _ in 0..10_000_000 {
                if backend.waiting() > 0 {
                    backend.hold(false);
                    return;
                }
                tokio::task::yield_now().await;
            }
            panic!("the request never reached the backend");
        });
        let delivered = client
            .send_from(bytes::Bytes::new(), tailgate_core::receive::Origin::Client)
            .await
            .unwrap();
        assert_eq!(delivered.attempts, 1);
        release.await.unwrap();
        stop.cancel();
    }
}
