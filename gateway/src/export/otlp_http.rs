//! The OTLP/HTTP exporter (`export.otlp_http[/name]`): protobuf bodies POSTed to
//! `{endpoint}/v1/traces` (or to `traces_endpoint` as given), optionally compressed
//! (the Collector's `compression` values), retried as the OTLP/HTTP specification says: 429, 502, 503 and 504
//! (and connection failures) are retried, honouring `Retry-After`; any other status is a
//! permanent failure. A 200 response may carry a partial success.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use tailgate_core::forward::{
    parse_response, Compression, CompressionParams, Delivered, RetryConfig,
};
use tailgate_core::proxy::{Proxy, ProxyEnv, ProxyFor};
use tailgate_core::request_auth::{RequestAuth, Sent};
use tailgate_core::retry::{Failed, Retrier};
use tailgate_core::tls::{ClientTls, Transport};

use super::error::{header_problem, SettingError};
use super::keys::NotApplied;

/// Longest a connection to the backend may take to open: at most this, and well inside
/// the request's `timeout` (60% of it), so that a backend that cannot be reached ends an
/// attempt as a connect failure, not as a request without an answer (which is counted as
/// possibly taken, `unanswered`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `export.otlp_http[/name]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpConfig {
    /// Base URL, `http://host:4318`; requests go to `{endpoint}/v1/traces`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The full URL of the traces endpoint, used as is (instead of `endpoint`).
    #[serde(default)]
    pub traces_endpoint: Option<String>,
    /// HTTP headers sent with every request (auth tokens, tenant ids).
    /// Also written as the Collector's list of `{name, value}`.
    #[serde(default, deserialize_with = "super::keys::deserialize_headers")]
    pub headers: BTreeMap<String, String>,
    /// Timeout of one attempt. Default 10s.
    #[serde(
        default = "super::otlp_grpc::default_timeout",
        with = "tailgate_core::config::duration"
    )]
    pub timeout: Duration,
    /// Retries. Past `max_elapsed_time` the spans count as failed. Default 30s. Also
    /// read as `retry_on_failure`, the Collector's name (and keys).
    #[serde(default, alias = "retry_on_failure")]
    pub retry: RetryConfig,
    /// Body compression: `none`, `gzip`, `zstd`, `zlib`, `deflate`, `snappy` (the block
    /// format), `x-snappy-framed` or `lz4`, as the Collector's `otlphttp` exporter. Left
    /// out: none (see [`OtlpHttpConfig::compression`]).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// The Collector's `compression_params` (`level`) for `compression`.
    #[serde(default)]
    pub compression_params: CompressionParams,
    /// The Collector's `encoding`: `proto` (the default) only; `json` is refused.
    #[serde(default)]
    pub encoding: Option<String>,
    /// The Collector's HTTP client tuning keys, accepted so that a copied block loads and
    /// not applied (warned at start): `keepalive` (connections are kept and reused here),
    /// `read_buffer_size`, `write_buffer_size`, `max_conns_per_host`,
    /// `force_attempt_http2`, `http2_ping_timeout`, `http2_read_idle_timeout`, and the
    /// `max_idle_conns`, `max_idle_conns_per_host`, `idle_conn_timeout`,
    /// `disable_keep_alives`.
    #[serde(default)]
    pub keepalive: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub read_buffer_size: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub write_buffer_size: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub max_conns_per_host: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub force_attempt_http2: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub http2_ping_timeout: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub http2_read_idle_timeout: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub max_idle_conns: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub max_idle_conns_per_host: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub idle_conn_timeout: Option<NotApplied>,
    /// See `keepalive`.
    #[serde(default)]
    pub disable_keep_alives: Option<NotApplied>,
    /// The Collector's `cookies: {enabled}` (a cookie jar, for load balancers that keep a
    /// client on one backend by cookie): accepted and not applied, warned at start;
    /// requests carry no cookies, so such a balancer spreads them.
    #[serde(default)]
    pub cookies: Option<NotApplied>,
    /// The other signals' endpoints of the Collector's `otlphttp` exporter
    /// (`metrics_endpoint`, `logs_endpoint`, `profiles_endpoint`): accepted and not used,
    /// Tailgate exports traces only.
    #[serde(default)]
    pub metrics_endpoint: Option<NotApplied>,
    /// See `metrics_endpoint`.
    #[serde(default)]
    pub logs_endpoint: Option<NotApplied>,
    /// See `metrics_endpoint`.
    #[serde(default)]
    pub profiles_endpoint: Option<NotApplied>,
    /// The Collector's `batcher` block (deprecated there for `sending_queue.batch`):
    /// accepted and not applied, as `sending_queue`.
    #[serde(default)]
    pub batcher: Option<NotApplied>,
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
    /// TLS (the Collector's `configtls` client keys); `https://` URLs use TLS with the
    /// system's roots unless `ca_file` is set.
    #[serde(default)]
    pub tls: Option<tailgate_core::tls::ClientTlsConfig>,
    /// The Collector's `auth: {authenticator: NAME}`: an extension under `extensions:`
    /// whose credential goes with every request.
    #[serde(default)]
    pub auth: Option<super::auth::AuthRef>,
    /// confighttp's `proxy_url`: the HTTP proxy every request goes through (a `CONNECT`
    /// tunnel), whatever `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` say. Left out or
    /// empty: those variables decide, as Go's `http.ProxyFromEnvironment` does.
    #[serde(default)]
    pub proxy_url: Option<String>,
}

impl OtlpHttpConfig {
    /// The URL requests go to, without a port that is its scheme's default (HTTP/1.1's
    /// `Host` leaves it out and HTTP/2's `:authority` would keep it: a request signed for
    /// one must not be sent with the other).
    pub fn url(&self) -> Result<Uri, SettingError> {
        let url = match (&self.traces_endpoint, &self.endpoint) {
            (Some(t), _) => t.clone(),
            (None, Some(e)) => format!("{}/v1/traces", e.trim_end_matches('/')),
            (None, None) => return Err(SettingError::NoEndpoint),
        };
        let uri = tailgate_core::endpoint::parse(&url, tailgate_core::endpoint::Bare::Refused)
            .map_err(|e| match self.traces_endpoint {
                Some(_) => SettingError::TracesEndpoint(e),
                None => SettingError::Endpoint(e),
            })?;
        Ok(tailgate_core::endpoint::without_default_port(uri))
    }

    /// The compression requests are sent with: as written, none when left out (a
    /// departure: the Collector's exporters gzip by default; see [`super::ExportConfig::warnings`]).
    pub fn compression(&self) -> Compression {
        self.compression.unwrap_or(Compression::None)
    }

    /// Whether requests go over TLS (an `https://` URL).
    pub fn uses_tls(&self) -> bool {
        self.url().is_ok_and(|u| u.scheme_str() == Some("https"))
    }

    /// The TLS side for the URL (`None`: plaintext), its files read.
    fn tls_side(&self) -> Result<Option<ClientTls>, SettingError> {
        let url = self.url()?.to_string();
        Ok(tailgate_core::tls::client_side(self.tls.as_ref(), &url)?)
    }

    /// The Collector keys set in this block that are accepted and not applied.
    pub fn not_applied(&self) -> Vec<&'static str> {
        super::keys::set_keys([
            ("sending_queue", &self.sending_queue),
            ("keepalive", &self.keepalive),
            ("read_buffer_size", &self.read_buffer_size),
            ("write_buffer_size", &self.write_buffer_size),
            ("max_conns_per_host", &self.max_conns_per_host),
            ("force_attempt_http2", &self.force_attempt_http2),
            ("http2_ping_timeout", &self.http2_ping_timeout),
            ("http2_read_idle_timeout", &self.http2_read_idle_timeout),
            ("max_idle_conns", &self.max_idle_conns),
            ("max_idle_conns_per_host", &self.max_idle_conns_per_host),
            ("idle_conn_timeout", &self.idle_conn_timeout),
            ("disable_keep_alives", &self.disable_keep_alives),
            ("cookies", &self.cookies),
            ("metrics_endpoint", &self.metrics_endpoint),
            ("logs_endpoint", &self.logs_endpoint),
            ("profiles_endpoint", &self.profiles_endpoint),
            ("batcher", &self.batcher),
        ])
    }

    /// The proxy its requests go through: `proxy_url`, else what `env` says for its URL.
    pub fn proxy(&self, env: &ProxyEnv) -> Result<Option<Proxy>, SettingError> {
        match self.proxy_url.as_deref().filter(|p| !p.trim().is_empty()) {
            Some(url) => Ok(Some(Proxy::parse("proxy_url", url)?)),
            None => Ok(env.for_endpoint(&self.url()?, ProxyFor::Http)?),
        }
    }

    /// Checks the URL, TLS, compression, encoding, headers and `proxy_url` without
    /// connecting.
    pub fn validate(&self) -> Result<(), SettingError> {
        self.proxy(&ProxyEnv::default())?;
        self.tls_side()?;
        self.compression_params
            .check(self.compression())
            .map_err(SettingError::CompressionParams)?;
        if let Some(e) = self.encoding.as_deref().filter(|e| *e != "proto") {
            return Err(SettingError::Encoding(e.to_owned()));
        }
        self.header_map().map(|_| ())
    }

    /// The headers, checked.
    fn header_map(&self) -> Result<http::HeaderMap, SettingError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &self.headers {
            let bad = |problem| SettingError::Header {
                name: k.clone(),
                problem,
            };
            if let Some(problem) = header_problem(k, v) {
                return Err(bad(problem));
            }
            let name = header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| bad("is not a valid HTTP header name"))?;
            let value = header::HeaderValue::from_str(v)
                .map_err(|_| bad("has a value HTTP cannot carry"))?;
            headers.insert(name, value);
        }
        Ok(headers)
    }

    /// The client this config describes, sending `auth`'s headers too, through the
    /// proxy `env` gives it unless `proxy_url` names one. Must be called inside a Tokio
    /// runtime.
    pub fn client_with(
        &self,
        auth: Option<Arc<RequestAuth>>,
        env: &ProxyEnv,
    ) -> Result<HttpClient, SettingError> {
        let mut client = self.client_via(self.proxy(env)?.as_ref())?;
        client.auth = auth;
        Ok(client)
    }

    /// The client this config describes (through `proxy_url` if set; the environment's
    /// proxy variables are not read). Must be called inside a Tokio runtime.
    pub fn client(&self) -> Result<HttpClient, SettingError> {
        self.client_via(self.proxy(&ProxyEnv::default())?.as_ref())
    }

    fn client_via(&self, proxy: Option<&Proxy>) -> Result<HttpClient, SettingError> {
        let headers = self.header_map()?;
        let tls = self.tls_side()?;
        let url = self.url()?;
        Ok(HttpClient {
            retry: Retrier::new(self.retry.clone(), &url.to_string()),
            url,
            headers,
            timeout: super::otlp_grpc::attempt_timeout(self.timeout),
            compression: self.compression(),
            compression_level: self.compression_params.level,
            client: Transport::new(
                &Client::builder(TokioExecutor::new()),
                tls.as_ref(),
                tailgate_core::tls::Dialer::new(
                    CONNECT_TIMEOUT
                        .min(super::otlp_grpc::attempt_timeout(self.timeout).mul_f64(0.6)),
                    proxy,
                ),
                false,
            ),
            auth: None,
        })
    }
}

/// A client for one OTLP/HTTP traces endpoint.
#[derive(Debug, Clone)]
pub struct HttpClient {
    url: Uri,
    headers: http::HeaderMap,
    timeout: Duration,
    retry: Retrier,
    compression: Compression,
    compression_level: Option<i32>,
    client: Transport<Full<Bytes>>,
    /// An authenticator's headers, asked for on every request.
    auth: Option<Arc<RequestAuth>>,
}

/// What went wrong with one attempt: the HTTP status when there was an answer.
#[derive(Debug)]
struct Failure {
    status: Option<StatusCode>,
    message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            status: None,
            message,
        }
    }
}

type Attempt = tailgate_core::retry::Attempt<Delivered, Failure>;

/// Why an OTLP/HTTP export was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum HttpExportError {
    /// The backend refused the request as malformed (HTTP 400): a part of it may be fine.
    #[error("{0}")]
    Invalid(String),
    /// The backend refused the request as too large (HTTP 413): a part of it may pass.
    #[error("{0}")]
    TooLarge(String),
    /// The backend refuses the exporter's credentials (HTTP 401 or 403).
    #[error("{0}")]
    Unauthorized(String),
    /// Refused for good for another reason, or the request could not be built.
    #[error("{0}")]
    Rejected(String),
    /// Still failing when the retries ran out.
    #[error("{0}")]
    GaveUp(String),
}

impl HttpClient {
    /// Sends one encoded `ExportTraceServiceRequest`, retrying within the retry bound.
    pub async fn send(&self, body: Bytes) -> Result<Delivered, HttpExportError> {
        let body = self
            .compress(body)
            .map_err(|e| HttpExportError::Rejected(format!("{}: {e}", self.url)))?;
        // One resend per request for refused credentials (see `attempt`).
        let resent = std::sync::atomic::AtomicBool::new(false);
        match self.retry.run(|| self.attempt(body.clone(), &resent)).await {
            Ok((mut d, attempts)) => {
                d.attempts = attempts;
                Ok(d)
            }
            // 400: some span is bad; 413: too large. Halves may pass either way.
            Err(Failed::Rejected(e)) if e.status == Some(StatusCode::BAD_REQUEST) => {
                Err(HttpExportError::Invalid(format!("{}: {e}", self.url)))
            }
            Err(Failed::Rejected(e)) if e.status == Some(StatusCode::PAYLOAD_TOO_LARGE) => {
                Err(HttpExportError::TooLarge(format!("{}: {e}", self.url)))
            }
            Err(Failed::Rejected(e))
                if matches!(
                    e.status,
                    Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
                ) =>
            {
                Err(HttpExportError::Unauthorized(format!("{}: {e}", self.url)))
            }
            Err(Failed::Rejected(e)) => {
                Err(HttpExportError::Rejected(format!("{}: {e}", self.url)))
            }
            Err(Failed::GaveUp { attempts, last }) => Err(HttpExportError::GaveUp(format!(
                "{}: gave up after {attempts} attempts: {last}",
                self.url
            ))),
        }
    }

    /// Past `max_elapsed_time`, requests are given up only once `hold` returns false.
    pub fn hold_while(mut self, hold: tailgate_core::retry::Hold) -> Self {
        self.retry = self.retry.hold_while(hold);
        self
    }

    /// The client's retry counters.
    pub fn retry_stats(&self) -> &std::sync::Arc<tailgate_core::retry::RetryStats> {
        self.retry.stats()
    }

    fn compress(&self, body: Bytes) -> Result<Bytes, String> {
        match self
            .compression
            .compress_http(self.compression_level, std::slice::from_ref(&body))
        {
            Ok(None) => Ok(body),
            Ok(Some(compressed)) => Ok(Bytes::from(compressed)),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The POST of one encoded request, with the configured headers, the encoding and
    /// then the authenticator's headers (the Collector's order: its auth round-tripper is
    /// the innermost); and the values they were sent with. `Err(Retry)` when the
    /// authenticator has no token yet (held and tried again, not sent without one).
    async fn request(
        &self,
        url: &Uri,
        body: Bytes,
    ) -> Result<(Request<Full<Bytes>>, Option<Sent>), Attempt> {
        let signed_body = body.clone();
        let mut req = Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                header::USER_AGENT,
                concat!("tailgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|e| Attempt::Fail(e.to_string().into()))?;
        req.headers_mut().extend(self.headers.clone());
        if let Some(e) = self.compression.content_encoding() {
            req.headers_mut().insert(
                header::CONTENT_ENCODING,
                header::HeaderValue::from_static(e),
            );
        }
        // No token or AWS credentials yet: held and tried again, not sent without.
        let held = |missing: String| Attempt::Retry {
            error: missing.into(),
            after: None,
        };
        let mut sent = match &self.auth {
            Some(auth) => Some(auth.apply(req.headers_mut()).await.map_err(held)?),
            None => None,
        };
        // The body's framing is the client's to write: a `Content-Length` or
        // `Transfer-Encoding` from `headers:` or the rules would cut or garble every body
        // (Go's client, the Collector's, ignores them too).
        strip_framing(req.headers_mut());
        if let (Some(auth), Some(sent)) = (&self.auth, sent.as_mut()) {
            // Signed last, over every header set (the Collector's auth round-tripper is
            // the innermost) and the body as sent.
            auth.sign(
                &http::Method::POST,
                url,
                req.headers_mut(),
                &signed_body,
                sent,
            )
            .await
            .map_err(held)?;
        }
        Ok((req, sent))
    }

    /// One try; `resent` says whether this request was already sent again for refused
    /// credentials (once at most: a backend refusing every key fails it and says so).
    async fn attempt(&self, body: Bytes, resent: &std::sync::atomic::AtomicBool) -> Attempt {
        let mut url = self.url.clone();
        let mut hops = 0;
        // One deadline for the attempt, however many redirects it follows.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let (response, sent) = loop {
            let (req, sent) = match self.request(&url, body.clone()).await {
                Ok(built) => built,
                Err(attempt) => return attempt,
            };
            let response = match tokio::time::timeout_at(deadline, self.client.request(req)).await {
                Err(_) => {
                    // The backend may have the data: sent again, it may arrive twice.
                    self.retry.stats().unanswered.add(1);
                    return Attempt::Retry {
                        error: format!("no response within {:?}", self.timeout).into(),
                        after: None,
                    };
                }
                Ok(Err(e)) => {
                    return Attempt::Retry {
                        error: tailgate_core::forward::error_chain(&e).into(),
                        after: None,
                    }
                }
                Ok(Ok(r)) => r,
            };
            match redirect(&url, response.status(), response.headers()) {
                Some(Ok(next)) if hops < MAX_REDIRECTS => {
                    hops += 1;
                    url = next;
                }
                Some(Ok(_)) => {
                    return Attempt::Fail(
                        format!(
                            "HTTP {}: more than {MAX_REDIRECTS} redirects",
                            response.status()
                        )
                        .into(),
                    )
                }
                Some(Err(refused)) => return Attempt::Fail(refused.into()),
                None => break (response, sent),
            }
        };
        self.answer(response, sent, resent).await
    }

    /// What an answer means, its body read (at most [`MAX_ANSWER_BYTES`]).
    async fn answer<B>(
        &self,
        response: http::Response<B>,
        sent: Option<Sent>,
        resent: &std::sync::atomic::AtomicBool,
    ) -> Attempt
    where
        B: BodyExt<Data = Bytes> + Unpin,
        B::Error: std::error::Error + 'static,
    {
        let status = response.status();
        let json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().get(.."application/json".len()))
            .is_some_and(|v| v.eq_ignore_ascii_case("application/json"));
        // Go's client asks for gzip and reads it transparently: a backend (or the proxy
        // in front of it) may compress its answer, and a gzipped partial success was taken
        // as full success, unread.
        let encoding = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(tailgate_core::receive::compress::Encoding::from_content_encoding);
        let after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        // The status decides; the body only says more (a partial success, an error's
        // message). So a body that cannot be read whole is taken as far as it came: a 2xx
        // whose body was cut or stalled was sent again, and its spans arrived twice.
        let mut answer = BytesMut::new();
        let read = read_answer(response.into_body(), &mut answer);
        if let Err(problem) = tokio::time::timeout(self.timeout, read)
            .await
            .unwrap_or_else(|_| Err(format!("not read whole within {:?}", self.timeout)))
        {
            tracing::debug!(%status, %problem, "Backend's answer body taken as far as it was read.");
        }
        let body = match encoding {
            None | Some(Ok(None)) => answer.freeze(),
            Some(Ok(Some(encoding))) => {
                tailgate_core::receive::compress::decompress(encoding, &answer, MAX_ANSWER_BYTES)
                    .unwrap_or_else(|problem| {
                        tracing::debug!(%status, ?problem, "Backend's {} answer body not readable; taken as empty.", encoding.name());
                        Bytes::new()
                    })
            }
            Some(Err(unknown)) => {
                tracing::debug!(%status, %unknown, "Backend's answer body in an encoding not read; taken as empty.");
                Bytes::new()
            }
        };
        // Refused credentials: worth another try only with another key (read anew from
        // its file, or a token fetched anew).
        let refused = matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN);
        if let (true, Some(auth), Some(sent)) = (refused, &self.auth, &sent) {
            let first = !resent.swap(true, std::sync::atomic::Ordering::Relaxed);
            if first && auth.refresh_after(sent).await {
                return Attempt::Retry {
                    error: Failure {
                        status: Some(status),
                        message: format!(
                            "HTTP {status}: credentials refused; sent again with newer ones"
                        ),
                    },
                    after: None,
                };
            }
        }
        classify(status, body, json, after)
    }
}

/// Redirects followed in one attempt, as Go's client (the Collector's) follows at most ten.
const MAX_REDIRECTS: usize = 10;

/// Where a 307 or 308 answer to a request for `url` sends it again, as Go's client (the
/// Collector's) follows them with the same body; `None` for any other answer. Followed
/// only to the same scheme, host and port (a path moved behind an ingress): the request
/// carries the exporter's headers and credentials, which another host is not sent; such a
/// redirect, and a 301, 302 or 303 (which Go follows as a GET, without the spans), fail
/// with the place they point to.
fn redirect(
    url: &Uri,
    status: StatusCode,
    headers: &http::HeaderMap,
) -> Option<Result<Uri, String>> {
    if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
        return None;
    }
    let location = headers.get(header::LOCATION).and_then(|l| l.to_str().ok());
    let Some(location) = location.map(str::trim) else {
        return Some(Err(format!(
            "HTTP {status} without a Location this client can read"
        )));
    };
    let scheme = url.scheme_str().unwrap_or("http");
    // Resolved against the URL asked for, as RFC 3986 resolves a reference: `//host/p`
    // takes its scheme, `/p` its host too, `p` and `?q` its path's directory as well.
    // A scheme starts it (`https://…`); `/p?next=http://x` is a path.
    let has_scheme = location.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let resolved = if has_scheme {
        location.to_owned()
    } else if location.starts_with("//") {
        format!("{scheme}:{location}")
    } else {
        let authority = url.authority().map_or("", |a| a.as_str());
        let path = if location.starts_with('/') {
            location.to_owned()
        } else if location.starts_with('?') {
            format!("{}{location}", url.path())
        } else {
            let dir = url.path().rsplit_once('/').map_or("", |(dir, _)| dir);
            format!("{dir}/{location}")
        };
        format!("{scheme}://{authority}{path}")
    };
    let Ok(target) = resolved.parse::<Uri>() else {
        return Some(Err(format!(
            "HTTP {status} to {location:?}, which is not a URL"
        )));
    };
    let origin = |u: &Uri| {
        let scheme = u.scheme_str().unwrap_or_default().to_ascii_lowercase();
        let default = if scheme == "https" { 443 } else { 80 };
        (
            u.host().unwrap_or_default().to_ascii_lowercase(),
            u.port_u16().unwrap_or(default),
            scheme,
        )
    };
    let same_origin = origin(&target) == origin(url);
    Some(match status {
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT if same_origin => {
            Ok(target)
        }
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => Err(format!(
            "HTTP {status} to {}: redirects are followed on the same host only (the request carries this exporter's headers and credentials); set the endpoint to it",
            tailgate_core::endpoint::redact(&target.to_string())
        )),
        _ => Err(format!(
            "HTTP {status} to {}: a redirect that would resend the spans as a GET, without them; set the endpoint to it",
            tailgate_core::endpoint::redact(&target.to_string())
        )),
    })
}

/// The most of an answer's body read, as the Collector's otlphttp exporter reads at most
/// 64 KiB of one: a backend (or a proxy before it) answering with an endless or huge body
/// took the gateway past its memory bound (3.8 GB in one 5 s attempt, a hostile check).
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Reads `body` into `into`, at most [`MAX_ANSWER_BYTES`] (the rest is left unread: the
/// connection is not reused); an error says why it stopped early.
async fn read_answer<B>(mut body: B, into: &mut BytesMut) -> Result<(), String>
where
    B: BodyExt<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    while into.len() < MAX_ANSWER_BYTES {
        match body.frame().await {
            None => return Ok(()),
            Some(Err(e)) => return Err(tailgate_core::forward::error_chain(&e)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = MAX_ANSWER_BYTES - into.len();
                    into.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
        }
    }
    Err(format!(
        "longer than {MAX_ANSWER_BYTES} bytes; the rest was not read"
    ))
}

/// Removes the headers that frame a body (`Content-Length`, `Transfer-Encoding`,
/// `Trailer`), which the client writes from the body itself, as Go's client drops them.
fn strip_framing(headers: &mut http::HeaderMap) {
    headers.remove(header::CONTENT_LENGTH);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::TRAILER);
}

/// What an answer means, as the OTLP/HTTP specification says: 2xx delivered (perhaps
/// partly), 429/502/503/504 retried, anything else final. `Retry-After` is honoured on
/// 429 and 503 only, as the Collector reads it (502 and 504 take the back-off).
fn classify(status: StatusCode, body: Bytes, json: bool, after: Option<Duration>) -> Attempt {
    match status {
        // Read by its content type, as the Collector reads it (a JSON partial success was
        // taken as full success, unlogged: a hostile check).
        s if s.is_success() && json => {
            Attempt::Done(tailgate_core::forward::parse_json_response(&body))
        }
        s if s.is_success() => Attempt::Done(parse_response(body)),
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Attempt::Retry {
            error: Failure {
                status: Some(status),
                message: format!("HTTP {status}{}", answer_text(&body)),
            },
            after: after.filter(|_| {
                matches!(
                    status,
                    StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                )
            }),
        },
        s => Attempt::Fail(Failure {
            status: Some(s),
            message: format!("HTTP {s}{}", answer_text(&body)),
        }),
    }
}

/// What an error answer's body says, as `": …"` (empty for an empty body): the message of
/// the `google.rpc.Status` OTLP/HTTP answers with (protobuf or JSON), else the body's
/// first 256 bytes as text.
fn answer_text(body: &[u8]) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = tailgate_core::receive::status::RpcStatus::message_in(body)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned());
    // Fit for one log line: a body's newline forged a log line of its own.
    format!(": {}", tailgate_core::text::printable(text.trim()))
}

/// A `Retry-After` value (RFC 9110): seconds, or an HTTP date (how long until then; a date
/// already past means now).
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailgate_core::credential::Credential;

    /// Scenario: error answers whose body is a `google.rpc.Status` in protobuf or JSON,
    /// plain text, or nothing, retried (429) and final (400).
    /// Guarantees: the error names the status and what the backend said: the Status's
    /// message, not its bytes (a black-box check saw 429s logged as only "HTTP 429 Too Many
    /// Requests", and 400s with the protobuf's bytes).
    #[test]
    fn error_answers_carry_the_backends_message() {
        use prost::Message;
        let proto = tailgate_core::receive::status::RpcStatus {
            code: 8,
            message: "tenant over its quota".into(),
            details: Vec::new(),
        }
        .encode_to_vec();
        for (status, body, want) in [
            (
                StatusCode::TOO_MANY_REQUESTS,
                proto.clone(),
                "HTTP 429 Too Many Requests: tenant over its quota",
            ),
            (
                StatusCode::BAD_REQUEST,
                proto,
                "HTTP 400 Bad Request: tenant over its quota",
            ),
            (
                StatusCode::BAD_REQUEST,
                br#"{"code":3,"message":"bad span"}"#.to_vec(),
                "HTTP 400 Bad Request: bad span",
            ),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                b"down for maintenance\n".to_vec(),
                "HTTP 503 Service Unavailable: down for maintenance",
            ),
            (StatusCode::BAD_GATEWAY, Vec::new(), "HTTP 502 Bad Gateway"),
            // A body that would forge a log line of its own, or color a terminal (a
            // hostile check), is one line with its control characters written out.
            (
                StatusCode::BAD_REQUEST,
                b"no\n2026-12-07T00:00:00Z ERROR tailgate_gateway: FAKE\x1b[31m".to_vec(),
                "HTTP 400 Bad Request: no\\n2026-12-07T00:00:00Z ERROR tailgate_gateway: FAKE\\u{1b}[31m",
            ),
        ] {
            let (Attempt::Retry { error, .. } | Attempt::Fail(error)) =
                classify(status, Bytes::from(body), false, None)
            else {
                panic!("{status}: delivered");
            };
            assert_eq!(error.message, want);
        }
    }

    /// Scenario: an `otlphttp` exporter for each `compression` the Collector's takes, its
    /// name read from YAML as a Collector config writes it; a body made into its request.
    /// Guarantees: the request carries that `Content-Encoding` (the Collector's name), and
    /// what a receiver decompresses under it is the body; `none` and `""` send it as it is.
    #[tokio::test]
    async fn every_collector_compression_makes_a_request_a_receiver_reads() {
        use tailgate_core::receive::compress::{decompress, Encoding};
        let body = Bytes::from(b"spans, spans and more spans; ".repeat(200));
        for name in [
            "gzip",
            "zstd",
            "zlib",
            "deflate",
            "snappy",
            "x-snappy-framed",
            "lz4",
            "none",
            "''",
        ] {
            let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
                "{{endpoint: 'http://127.0.0.1:1', compression: {name}}}"
            ))
            .unwrap();
            let client = cfg.client().unwrap();
            let Ok((req, _)) = client
                .request(&client.url, client.compress(body.clone()).unwrap())
                .await
            else {
                panic!("no request built")
            };
            let sent = req.body().clone().collect().await.unwrap().to_bytes();
            match req.headers().get(header::CONTENT_ENCODING) {
                None => {
                    assert!(matches!(name, "none" | "''"), "{name}");
                    assert_eq!(sent, body);
                }
                Some(v) => {
                    assert_eq!(v, name);
                    let encoding = Encoding::from_content_encoding(name).unwrap().unwrap();
                    assert_eq!(
                        decompress(encoding, &sent, 1 << 20).unwrap(),
                        body,
                        "{name}"
                    );
                    assert!(sent.len() < body.len() / 4, "{name}: {}", sent.len());
                }
            }
        }
    }

    /// Scenario: endpoints written with their scheme's default port.
    /// Guarantees: the URL requests go to leaves it out (what HTTP/1.1's Host sends, so a
    /// signed host matches on HTTP/2 too); another port is kept.
    #[test]
    fn a_default_port_is_left_out_of_the_url() {
        for (endpoint, url) in [
            (
                "https://xray.us-east-1.amazonaws.com:443",
                "https://xray.us-east-1.amazonaws.com/v1/traces",
            ),
            (
                "http://collector:80/otlp",
                "http://collector/otlp/v1/traces",
            ),
            ("https://collector:4318", "https://collector:4318/v1/traces"),
        ] {
            let cfg: OtlpHttpConfig =
                serde_yaml_ng::from_str(&format!("{{endpoint: '{endpoint}'}}")).unwrap();
            assert_eq!(cfg.url().unwrap().to_string(), url);
        }
    }

    /// Scenario: an exporter with a static `authorization` header and an authenticator;
    /// one with a `User-Agent` header.
    /// Guarantees: the request carries the authenticator's value once, replacing the
    /// static one (as the Collector's round-tripper sets it after `headers`), and the other
    /// headers as configured; `user-agent` is Tailgate's, or the configured one alone.
    #[tokio::test]
    async fn an_authenticator_replaces_a_header_of_its_name() {
        use tailgate_core::credential::{Scheme, Secret};
        let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(
            "{endpoint: 'http://127.0.0.1:1', headers: {authorization: Bearer old, x-tenant: a}}",
        )
        .unwrap();
        let credential = Credential::new(
            "Authorization",
            Scheme::Basic {
                username: Secret::Inline("u".into()),
                password: Secret::Inline("p".into()),
            },
        )
        .unwrap();
        let client = cfg
            .client_with(Some(Arc::new(credential.into())), &ProxyEnv::default())
            .unwrap();
        let Ok((req, _)) = client.request(&client.url, Bytes::new()).await else {
            panic!("no request built")
        };
        let auth: Vec<_> = req
            .headers()
            .get_all(header::AUTHORIZATION)
            .iter()
            .collect();
        assert_eq!(auth, ["Basic dTpw"]);
        assert_eq!(req.headers()["x-tenant"], "a");
        assert_eq!(
            req.headers()[header::USER_AGENT],
            concat!("tailgate/", env!("CARGO_PKG_VERSION"))
        );
        // A `User-Agent` in `headers:` replaces Tailgate's.
        let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(
            "{endpoint: 'http://127.0.0.1:1', headers: {User-Agent: my-gateway/1.0}}",
        )
        .unwrap();
        let client = cfg.client().unwrap();
        let Ok((req, _)) = client.request(&client.url, Bytes::new()).await else {
            panic!("no request built")
        };
        let agents: Vec<_> = req.headers().get_all(header::USER_AGENT).iter().collect();
        assert_eq!(agents, ["my-gateway/1.0"]);
        // Framing headers from `headers:` are not sent (found by a black-box check: a
        // `Content-Length: 5` cut every body while the spans were counted as exported).
        let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(
            "{endpoint: 'http://127.0.0.1:1', headers: {Content-Length: '5', Transfer-Encoding: chunked}}",
        )
        .unwrap();
        let framed = cfg.client().unwrap();
        let Ok((req, _)) = framed
            .request(&framed.url, Bytes::from_static(b"0123456789"))
            .await
        else {
            panic!("no request built")
        };
        assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
        assert!(req.headers().get(header::TRANSFER_ENCODING).is_none());
        // Nor from a headers_setter's rules.
        use tailgate_core::request_auth::{HeaderAction, HeaderRule, RuleValue};
        let rule = |name: &'static str, value: &'static str| HeaderRule {
            name: header::HeaderName::from_static(name),
            action: HeaderAction::Upsert,
            value: RuleValue::Fixed(header::HeaderValue::from_static(value)),
        };
        let setter = RequestAuth::new(
            vec![
                rule("content-length", "5"),
                rule("trailer", "x"),
                rule("x-kept", "k"),
            ],
            None,
        );
        let cfg: OtlpHttpConfig =
            serde_yaml_ng::from_str("{endpoint: 'http://127.0.0.1:1'}").unwrap();
        let client = cfg
            .client_with(Some(Arc::new(setter)), &ProxyEnv::default())
            .unwrap();
        let Ok((req, _)) = client
            .request(&client.url, Bytes::from_static(b"0123456789"))
            .await
        else {
            panic!("no request built")
        };
        assert!(req.headers().get(header::CONTENT_LENGTH).is_none());
        assert!(req.headers().get(header::TRAILER).is_none());
        assert_eq!(req.headers()["x-kept"], "k");
    }

    /// Scenario: a backend that takes only its own bearer token, sent a request with
    /// another, then with it.
    /// Then a client whose key file is rotated between its reads.
    /// Guarantees: the first is refused as `Unauthorized` at once (not retried: 401 is
    /// final), which the exporter reports as refused credentials; the second is taken; the
    /// rotated file is read again on the refusal and the request sent again with it.
    #[tokio::test]
    async fn refused_credentials_are_told_apart() {
        use tailgate_core::credential::Secret;
        use tailgate_core::test_util::CaptureBackend;
        let stop = tokio_util::sync::CancellationToken::new();
        let (addr, backend) = CaptureBackend::start_with(
            "127.0.0.1:0".parse().unwrap(),
            true,
            None,
            Some("right"),
            stop.clone(),
        )
        .await
        .unwrap();
        let cfg: OtlpHttpConfig =
            serde_yaml_ng::from_str(&format!("{{endpoint: 'http://{addr}'}}")).unwrap();
        let with = |token: &str| {
            let credential = Credential::bearer(Secret::Inline(token.into())).unwrap();
            cfg.client_with(Some(Arc::new(credential.into())), &ProxyEnv::default())
                .unwrap()
        };
        let body = Bytes::from(prost::Message::encode_to_vec(
            &tailgate_core::test_util::FakeOtlp::traces(2).build(),
        ));
        let err = with("wrong").send(body.clone()).await.unwrap_err();
        assert!(matches!(err, HttpExportError::Unauthorized(_)), "{err}");
        with("right").send(body.clone()).await.unwrap();
        assert!(backend.spans() > 0);
        // 403 (a key not allowed to write) is refused credentials too, not retried.
        backend.forbid(true);
        let err = with("right").send(body.clone()).await.unwrap_err();
        assert!(matches!(err, HttpExportError::Unauthorized(_)), "{err}");
        assert_eq!(backend.forbidden_refusals(), 1);
        backend.forbid(false);

        // A key file rotated since its last read: the refused request reads it again and
        // is sent with the new key, not given up.
        let dir = std::env::temp_dir().join(format!("tailgate-401-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "wrong\n").unwrap();
        let credential = Credential::bearer(Secret::File(file.clone())).unwrap();
        let client = cfg
            .client_with(Some(Arc::new(credential.into())), &ProxyEnv::default())
            .unwrap();
        std::fs::write(&file, "right\n").unwrap();
        // Past the least time between forced reads (the clock paused only for this).
        tokio::time::pause();
        tokio::time::advance(tailgate_core::credential::FORCED_REREAD_EVERY).await;
        tokio::time::resume();
        let before = backend.spans();
        let delivered = client.send(body).await.unwrap();
        assert_eq!(
            delivered.attempts, 2,
            "refused once, then sent with the new key"
        );
        assert!(backend.spans() > before);
        std::fs::remove_dir_all(&dir).ok();
        stop.cancel();
    }

    /// A backend on loopback answering each request with `answer(its request line)`
    /// (written after the request's headers and body are read), then `tail` 1 MiB chunks
    /// of an endless chunked body (at most that many, ending when the client stops
    /// reading); counts the requests it answered.
    async fn raw_backend(
        answer: impl Fn(&str) -> &'static [u8] + Send + Sync + 'static,
        tail: usize,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let answer = Arc::new(answer);
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = answered.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let (count, answer) = (count.clone(), answer.clone());
                tokio::spawn(async move {
                    // The request: headers, then Content-Length bytes of body.
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 65536];
                    let body_end = loop {
                        let Ok(n) = conn.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&seen[..at]).to_ascii_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break at + 4 + length;
                    };
                    while seen.len() < body_end {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let line = String::from_utf8_lossy(
                        &seen[..seen.iter().position(|&b| b == b'\r').unwrap_or(0)],
                    )
                    .into_owned();
                    if conn.write_all(answer(&line)).await.is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 1 << 20];
                    for _ in 0..tail {
                        let framed = [b"100000\r\n".as_slice(), &chunk, b"\r\n"].concat();
                        if conn.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, answered)
    }

    /// Scenario: a backend that answers 200 with a body cut short (Content-Length 100, 10
    /// bytes, closed), one that answers 200 with an endless chunked body, and one that
    /// answers 503 with a body cut short.
    /// Guarantees: the 200s are delivered at the first attempt, the endless body read no
    /// further than 64 KiB (the Collector's bound; it took a gateway to 3.8 GB), not sent
    /// again (a hostile check saw each such request sent five to seven times, its spans
    /// arriving twice); the 503 is still retried as its status says.
    #[tokio::test]
    async fn the_status_decides_whatever_the_body_does() {
        let body = Bytes::from(prost::Message::encode_to_vec(
            &tailgate_core::test_util::FakeOtlp::traces(2).build(),
        ));
        let client = |addr: std::net::SocketAddr, retries: bool| {
            let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
                "{{endpoint: 'http://{addr}', timeout: 1s, retry_on_failure: {{enabled: {retries}, initial_interval: 10ms, max_elapsed_time: 200ms}}}}"
            ))
            .unwrap();
            cfg.client_with(None, &ProxyEnv::default()).unwrap()
        };
        let cut: &'static [u8] =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 100\r\nconnection: close\r\n\r\n0123456789";
        let (addr, answered) = raw_backend(move |_| cut, 0).await;
        let delivered = client(addr, true).send(body.clone()).await.unwrap();
        assert_eq!(delivered.attempts, 1);
        assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 1);

        let endless: &'static [u8] =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ntransfer-encoding: chunked\r\n\r\n";
        // Endless for the client: up to 4 GiB, which it would read until its timeout.
        let (addr, answered) = raw_backend(move |_| endless, 4096).await;
        let delivered = client(addr, false).send(body.clone()).await.unwrap();
        assert_eq!(delivered.attempts, 1);
        assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 1);

        let unavailable: &'static [u8] =
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 100\r\nconnection: close\r\n\r\nbusy";
        let (addr, answered) = raw_backend(move |_| unavailable, 0).await;
        assert!(client(addr, true).send(body).await.is_err());
        assert!(answered.load(std::sync::atomic::Ordering::Relaxed) > 1);
    }

    /// Scenario: a backend whose `/v1/traces` answers 307 to `/v1/traces2` on the same
    /// host, then one that answers 308 to another host, then 301.
    /// Guarantees: the first is followed with the spans, as the Collector's client follows
    /// it (a hostile check saw every span fail); the others fail at once naming where they
    /// point, the credentials not sent to another host.
    #[tokio::test]
    async fn same_host_307_and_308_are_followed() {
        let body = Bytes::from(prost::Message::encode_to_vec(
            &tailgate_core::test_util::FakeOtlp::traces(2).build(),
        ));
        let client = |addr: std::net::SocketAddr| {
            let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
                "{{endpoint: 'http://{addr}', timeout: 1s, retry_on_failure: {{enabled: false}}}}"
            ))
            .unwrap();
            cfg.client_with(None, &ProxyEnv::default()).unwrap()
        };
        let moved: &'static [u8] = b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /v1/traces2\r\ncontent-length: 0\r\n\r\n";
        let ok: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        let (addr, answered) = raw_backend(
            move |line| {
                if line.contains("/v1/traces2 ") {
                    ok
                } else {
                    moved
                }
            },
            0,
        )
        .await;
        let delivered = client(addr).send(body.clone()).await.unwrap();
        assert_eq!(delivered.attempts, 1);
        assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 2);

        let elsewhere: &'static [u8] = b"HTTP/1.1 308 Permanent Redirect\r\nlocation: https://other.example/v1/traces\r\ncontent-length: 0\r\n\r\n";
        let (addr, answered) = raw_backend(move |_| elsewhere, 0).await;
        let err = client(addr)
            .send(body.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("https://other.example/v1/traces") && err.contains("same host only"),
            "{err}"
        );
        assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 1);

        // A loop ends after ten redirects, the eleventh answer refused.
        let looping: &'static [u8] =
            b"HTTP/1.1 307 Temporary Redirect\r\nlocation: /v1/traces\r\ncontent-length: 0\r\n\r\n";
        let (addr, answered) = raw_backend(move |_| looping, 0).await;
        let err = client(addr)
            .send(body.clone())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 10 redirects"), "{err}");
        assert_eq!(answered.load(std::sync::atomic::Ordering::Relaxed), 11);

        let get: &'static [u8] =
            b"HTTP/1.1 301 Moved Permanently\r\nlocation: /v2/traces\r\ncontent-length: 0\r\n\r\n";
        let (addr, _) = raw_backend(move |_| get, 0).await;
        let err = client(addr).send(body).await.unwrap_err().to_string();
        assert!(err.contains("as a GET"), "{err}");
    }

    /// Scenario: a 200 whose body is an OTLP/JSON partial success
    /// (`Content-Type: application/json`, `rejectedSpans` as protobuf's JSON mapping
    /// writes an int64: a string).
    /// Guarantees: the rejected spans are counted as the Collector counts them (it reads
    /// the answer by its content type; it was taken as full success, unlogged).
    #[tokio::test]
    async fn a_json_partial_success_is_read() {
        let body = Bytes::from(prost::Message::encode_to_vec(
            &tailgate_core::test_util::FakeOtlp::traces(2).build(),
        ));
        let answer: &'static [u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 65\r\n\r\n{\"partialSuccess\":{\"rejectedSpans\":\"1\",\"errorMessage\":\"too old\"}}";
        let (addr, _) = raw_backend(move |_| answer, 0).await;
        let cfg: OtlpHttpConfig =
            serde_yaml_ng::from_str(&format!("{{endpoint: 'http://{addr}', timeout: 1s}}"))
                .unwrap();
        let delivered = cfg.client().unwrap().send(body).await.unwrap();
        assert_eq!(delivered.rejected_spans, 1);
        assert_eq!(delivered.message, "too old");
    }

    /// Scenario: a 200 whose protobuf partial success is gzipped (`Content-Encoding:
    /// gzip`, as a backend or its proxy answers Go's client, which asks for gzip), the same
    /// in zstd, then a
    /// gzipped answer that would inflate past the 64 KiB read of an answer.
    /// Guarantees: the first is read (it was taken as full success, unread); the second is
    /// delivered, taken as empty, its inflation bounded.
    #[tokio::test]
    async fn a_gzipped_answer_is_read_within_its_bound() {
        use opentelemetry_proto::tonic::collector::trace::v1::{
            ExportTracePartialSuccess, ExportTraceServiceResponse,
        };
        use tailgate_core::receive::compress::{compress, Encoding};
        let zipped = |encoding: Encoding, message: &[u8]| {
            (
                encoding.name(),
                compress(encoding, &[Bytes::copy_from_slice(message)]).unwrap(),
            )
        };
        let answer_of = |(encoding, zipped): (&str, Vec<u8>)| -> &'static [u8] {
            let mut answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-encoding: {encoding}\r\ncontent-length: {}\r\n\r\n",
                zipped.len()
            )
            .into_bytes();
            answer.extend_from_slice(&zipped);
            Box::leak(answer.into_boxed_slice())
        };
        let partial = prost::Message::encode_to_vec(&ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 1,
                error_message: "too old".into(),
            }),
        });
        let body = Bytes::from(prost::Message::encode_to_vec(
            &tailgate_core::test_util::FakeOtlp::traces(2).build(),
        ));
        for (answer, rejected) in [
            (answer_of(zipped(Encoding::Gzip, &partial)), 1),
            (answer_of(zipped(Encoding::Zstd, &partial)), 1),
            (answer_of(zipped(Encoding::Gzip, &vec![0u8; 50 << 20])), 0),
        ] {
            let (addr, answered) = raw_backend(move |_| answer, 0).await;
            let cfg: OtlpHttpConfig =
                serde_yaml_ng::from_str(&format!("{{endpoint: 'http://{addr}', timeout: 1s}}"))
                    .unwrap();
            let delivered = cfg.client().unwrap().send(body.clone()).await.unwrap();
            assert_eq!(delivered.rejected_spans, rejected);
            assert_eq!(answered.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }

    /// Scenario: Locations as servers write them, against `https://h.example/v1/traces`.
    /// Guarantees: resolved as RFC 3986 resolves a reference; the same host in other case
    /// or with its default port written is the same place; `//other/p` (scheme-relative)
    /// is another host, not a path (a review found it read as `//other/p` on the same
    /// host).
    #[test]
    fn locations_resolve_against_the_url_asked_for() {
        let url: Uri = "https://h.example/v1/traces".parse().unwrap();
        let to = |location: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(header::LOCATION, location.parse().unwrap());
            redirect(&url, StatusCode::TEMPORARY_REDIRECT, &headers)
                .unwrap()
                .map(|u| u.to_string())
        };
        assert_eq!(to("/v2/traces").unwrap(), "https://h.example/v2/traces");
        assert_eq!(to("traces2").unwrap(), "https://h.example/v1/traces2");
        assert_eq!(to("?x=1").unwrap(), "https://h.example/v1/traces?x=1");
        assert_eq!(
            to("/v1/traces2?next=http://x").unwrap(),
            "https://h.example/v1/traces2?next=http://x"
        );
        assert_eq!(
            to("https://H.EXAMPLE:443/v2").unwrap(),
            "https://H.EXAMPLE:443/v2"
        );
        assert!(to("//other.example/v1/traces")
            .unwrap_err()
            .contains("same host only"));
        assert!(to("http://h.example/v1/traces")
            .unwrap_err()
            .contains("same host only"));
        assert!(redirect(&url, StatusCode::OK, &http::HeaderMap::new()).is_none());
    }

    /// Scenario: `Retry-After: 10` on each status that is retried.
    /// Guarantees: honoured on 429 and 503 only, as the Collector reads it (a hostile
    /// check saw a 502's followed); 502 and 504 are still retried.
    #[test]
    fn retry_after_counts_on_429_and_503_only() {
        let hint = Some(Duration::from_secs(10));
        for (status, honoured) in [
            (StatusCode::TOO_MANY_REQUESTS, true),
            (StatusCode::SERVICE_UNAVAILABLE, true),
            (StatusCode::BAD_GATEWAY, false),
            (StatusCode::GATEWAY_TIMEOUT, false),
        ] {
            match classify(status, Bytes::new(), false, hint) {
                Attempt::Retry { after, .. } => {
                    assert_eq!(after.is_some(), honoured, "{status}")
                }
                _ => panic!("{status} not retried"),
            }
        }
    }

    /// Scenario: `Retry-After` as seconds, as an HTTP date ahead and past, and garbage.
    /// Guarantee: seconds as given; a date as the time until it (0 once past); garbage is
    /// no hint (the back-off applies).
    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(" 120 "), Some(Duration::from_secs(120)));
        let ahead = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(90));
        let d = retry_after(&ahead).unwrap();
        assert!(
            d > Duration::from_secs(85) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }
}
