//! Why an exporter's settings are refused, typed; shown by the config loader with the
//! exporter's key (`export.otlp/honeycomb`). A leaf of `export/`.

/// What is wrong with one exporter's settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// `export:` lists no exporter.
    #[error("configure at least one exporter (otlp_grpc, otlp_http or debug)")]
    NoExporter,
    /// An OTLP/HTTP exporter without `endpoint` or `traces_endpoint`.
    #[error("set endpoint (or traces_endpoint)")]
    NoEndpoint,
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error(transparent)]
    Endpoint(#[from] tailgate_core::endpoint::EndpointError),
    /// The same, of an OTLP/HTTP exporter's `traces_endpoint`.
    #[error(transparent)]
    TracesEndpoint(tailgate_core::endpoint::EndpointError),
    /// A header that is empty or cannot be sent.
    #[error("header {name:?} {problem}")]
    Header {
        /// The header's name.
        name: String,
        /// Why.
        problem: &'static str,
    },
    /// A size that must be positive.
    #[error("{key} must be greater than 0")]
    Zero {
        /// The setting.
        key: &'static str,
    },
    /// The `tls:` block (named with its key by [`Self::sub_key`]).
    #[error("{}", .0.detail())]
    Tls(#[from] tailgate_core::tls::TlsError),
    /// A level in `compression_params` the compression does not take.
    #[error("{0}")]
    CompressionParams(String),
    /// The `auth` block.
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
    /// An `authority` that is not a `host[:port]`.
    #[error("{0}")]
    Authority(String),
    /// A proxy address (`proxy_url`, `HTTPS_PROXY`, …) that cannot be used.
    #[error(transparent)]
    Proxy(Box<tailgate_core::proxy::ProxyError>),
    /// A `user_agent` a header cannot carry.
    #[error("user_agent has characters a header cannot carry")]
    UserAgent,
    /// `encoding` other than `proto`.
    #[error("encoding {0:?} is not supported: Tailgate's otlphttp exporter sends protobuf (encoding: proto)")]
    Encoding(String),
}

impl SettingError {
    /// The exporter's key the error is about, below the exporter (`headers.api-key`,
    /// `endpoint`), so that the loader names its line; `None` for the exporter as a whole.
    pub fn sub_key(&self) -> Option<String> {
        Some(match self {
            SettingError::NoExporter | SettingError::NoEndpoint => return None,
            SettingError::Endpoint(_) => "endpoint".into(),
            SettingError::TracesEndpoint(_) => "traces_endpoint".into(),
            SettingError::Header { name, .. } => format!("headers.{name}"),
            SettingError::Zero { key } => (*key).into(),
            SettingError::Tls(e) => match e.key() {
                Some(key) => format!("tls.{key}"),
                None => "tls".into(),
            },
            SettingError::CompressionParams(_) => "compression_params.level".into(),
            SettingError::Auth(_) => "auth".into(),
            SettingError::Authority(_) => "authority".into(),
            // From a variable (`HTTPS_PROXY`, …): the exporter as a whole, which the
            // variable applies to (an `otlp` exporter has no `proxy_url`).
            SettingError::Proxy(e) => match e.as_ref() {
                tailgate_core::proxy::ProxyError::Invalid { source_name, .. }
                    if source_name != "proxy_url" =>
                {
                    return None
                }
                _ => "proxy_url".into(),
            },
            SettingError::Encoding(_) => "encoding".into(),
            SettingError::UserAgent => "user_agent".into(),
        })
    }
}

impl From<tailgate_core::proxy::ProxyError> for SettingError {
    fn from(e: tailgate_core::proxy::ProxyError) -> Self {
        // Boxed: the proxy's errors carry strings that would make every result larger.
        SettingError::Proxy(Box::new(e))
    }
}

/// An empty header value (an unset `${env:}` variable, an empty file).
const EMPTY_HEADER: &str = "is empty (an unset ${env:…} variable or an empty file?)";

/// What is wrong with header `name`'s value written for a backend, if anything: empty,
/// or (an `authorization` header) a scheme with no credentials after it, as
/// `"Bearer ${env:TOKEN}"` with `TOKEN` unset reads. Each would be sent as it is and every
/// request refused by the backend.
pub(crate) fn header_problem(name: &str, value: &str) -> Option<&'static str> {
    const SCHEMES: [&str; 5] = ["bearer", "basic", "token", "apikey", "api-key"];
    let auth = name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization");
    if value.trim().is_empty() {
        Some(EMPTY_HEADER)
    } else if auth && SCHEMES.iter().any(|s| value.trim().eq_ignore_ascii_case(s)) {
        Some("is an authorization scheme without credentials (an unset ${env:…} variable or an empty file after it?)")
    } else {
        None
    }
}
