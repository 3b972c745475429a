//! Exporter authentication as a Collector config writes it: `auth: {authenticator: NAME}`
//! in an `otlp` or `otlphttp` block, and the extension `NAME` under the gateway config's
//! top-level `extensions:`. Six client authenticators of the Collector (contrib,
//! v0.161) are applied, `bearertokenauth`, `basicauth` (its `client_auth`),
//! `oauth2client` (client credentials, [`tailgate_core::oauth2`]) and `googleclientauth`
//! (Google tokens, [`tailgate_core::gcp`]), each a [`Credential`], `headers_setter`
//! (header rules, optionally chained to one of the others) and `sigv4auth` (AWS
//! signatures, [`tailgate_core::sigv4`], credentials from [`tailgate_core::aws`]); each
//! becomes a [`RequestAuth`] that the exporter's client applies to every request. A leaf of `export/`: read by the exporters' settings and by
//! `export::start`.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tailgate_core::credential::{Credential, CredentialError, Scheme, Secret};
use tailgate_core::proxy::ProxyEnv;
use tailgate_core::request_auth::{HeaderAction, HeaderRule, RequestAuth, RuleValue};

use super::keys::NotApplied;

/// An exporter's `auth` block: the extension that authenticates its requests.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AuthRef {
    /// The extension's key under `extensions:` (`bearertokenauth`, `basicauth/grafana`).
    pub authenticator: String,
}

/// `extensions:`: authenticators by key, the type optionally followed by `/name`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionsConfig {
    /// The extensions, by key, in file order.
    pub extensions: Vec<(String, Extension)>,
    /// The process's proxy variables, read with the config: an `oauth2client`'s token
    /// endpoint is reached through the proxy they name, as Go's default client reaches it.
    pub proxy_env: ProxyEnv,
    /// The process's AWS and Google variables and home, read with the config: where a
    /// `sigv4auth` or `googleclientauth` finds its credentials.
    pub cloud_env: CloudEnv,
    /// Keys of the Collector's own service extensions (`health_check`, `pprof`, `zpages`),
    /// copied with a Collector config: read and ignored, each with a warning saying what
    /// serves its purpose here.
    pub ignored: Vec<String>,
}

/// The `AWS_*`, `GOOGLE_*` and `GCE_*` variables and `HOME` of the process, as read when
/// the config was. `Debug` shows the variables' names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CloudEnv {
    /// The variables (the secrets among them are never shown: `Debug` lists names).
    vars: Vec<(String, String)>,
    /// `HOME`, for `~/.aws/credentials`.
    pub home: Option<PathBuf>,
}

impl std::fmt::Debug for CloudEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudEnv")
            .field(
                "vars",
                &self
                    .vars
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("home", &self.home)
            .finish()
    }
}

impl CloudEnv {
    /// The process's.
    pub fn from_process() -> Self {
        CloudEnv {
            vars: std::env::vars()
                .filter(|(k, _)| {
                    k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("GCE_")
                })
                .collect(),
            home: std::env::var_os("HOME").map(PathBuf::from),
        }
    }

    /// Given ones (tests).
    pub fn from_vars(vars: &[(&str, &str)], home: Option<PathBuf>) -> Self {
        CloudEnv {
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            home,
        }
    }

    /// A variable's value.
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

/// One extension's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// `bearertokenauth`
    BearerToken(BearerTokenAuth),
    /// `basicauth`
    Basic(BasicAuth),
    /// `oauth2client` (boxed: its settings are the largest by far).
    OAuth2(Box<OAuth2Client>),
    /// `headers_setter`
    HeadersSetter(HeadersSetter),
    /// `sigv4auth`
    SigV4(SigV4Auth),
    /// `googleclientauth`
    Google(GoogleClientAuth),
}

/// `googleclientauth`: a Google access or ID token from Application Default Credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GoogleClientAuth {
    /// Sent as `X-Goog-Project-ID`; left out: `GOOGLE_CLOUD_PROJECT`, else the key file's.
    #[serde(default)]
    pub project: String,
    /// Sent as `X-Goog-User-Project`; left out: the credentials file's, if any.
    #[serde(default)]
    pub quota_project: String,
    /// `access_token` (the default) or `id_token`.
    #[serde(default = "default_token_type")]
    pub token_type: String,
    /// The ID token's audience (needed with `id_token`).
    #[serde(default)]
    pub audience: String,
    /// `authorization` (the default) or `proxy-authorization` (an IAP-protected backend).
    #[serde(default = "default_token_header")]
    pub token_header: String,
    /// The access token's scopes.
    #[serde(
        default = "default_google_scopes",
        deserialize_with = "tailgate_core::config::comma_list"
    )]
    pub scopes: Vec<String>,
}

fn default_token_type() -> String {
    "access_token".into()
}

fn default_token_header() -> String {
    "authorization".into()
}

/// The Collector's default scopes.
fn default_google_scopes() -> Vec<String> {
    [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/logging.write",
        "https://www.googleapis.com/auth/monitoring.write",
        "https://www.googleapis.com/auth/trace.append",
    ]
    .map(String::from)
    .to_vec()
}

/// `sigv4auth`: AWS Signature Version 4 on every request of an `otlphttp` exporter.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SigV4Auth {
    /// The region signed for; left out, inferred from the endpoint (`xray.<region>.…`).
    #[serde(default)]
    pub region: String,
    /// The service signed for; left out, inferred from the endpoint (`xray`, `aps`, …).
    #[serde(default)]
    pub service: String,
    /// A role assumed with the chain's credentials (STS `AssumeRole`).
    #[serde(default)]
    pub assume_role: Option<AssumeRole>,
    /// A role assumed with a web identity token (STS `AssumeRoleWithWebIdentity`).
    #[serde(default)]
    pub assume_role_with_web_identity: Option<AssumeRoleWithWebIdentity>,
}

/// `sigv4auth.assume_role`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssumeRole {
    /// The role's ARN; empty: no role is assumed.
    #[serde(default)]
    pub arn: String,
    /// The session's name; empty: one is made up.
    #[serde(default)]
    pub session_name: String,
    /// The region of the STS endpoint; empty: `region`.
    #[serde(default)]
    pub sts_region: String,
}

/// `sigv4auth.assume_role_with_web_identity`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleWithWebIdentity {
    /// The role's ARN.
    #[serde(default)]
    pub arn: String,
    /// The file holding the token (read for every fetch).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The region of the STS endpoint; empty: `region`.
    #[serde(default)]
    pub sts_region: String,
}

/// `headers_setter`: headers set, changed or removed on every request, then, with
/// `additional_auth`, another authenticator's header.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeadersSetter {
    /// The rules, applied in order.
    #[serde(default)]
    pub headers: Vec<HeaderSetting>,
    /// Another extension's key (`oauth2client`, `bearertokenauth/name`) whose header is
    /// set after the rules.
    #[serde(default)]
    pub additional_auth: Option<String>,
}

/// One `headers_setter` rule. `Debug` leaves the values out.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HeaderSetting {
    /// The header.
    #[serde(default)]
    pub key: Option<String>,
    /// `insert`, `update`, `upsert` (left out: upsert, as the Collector) or `delete`.
    #[serde(default)]
    pub action: Option<String>,
    /// The value.
    #[serde(default)]
    pub value: Option<String>,
    /// A file whose text, trimmed, is the value, read again as token files are.
    #[serde(default)]
    pub value_file: Option<PathBuf>,
    /// A key of the incoming request's metadata: none reaches an export here, so the
    /// header takes `default_value`.
    #[serde(default)]
    pub from_context: Option<String>,
    /// An attribute of the incoming request's authentication: as `from_context`.
    #[serde(default)]
    pub from_attribute: Option<String>,
    /// The value when the context has none (here, always).
    #[serde(default)]
    pub default_value: Option<String>,
}

impl std::fmt::Debug for HeaderSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderSetting")
            .field("key", &self.key)
            .field("action", &self.action)
            .field("value_file", &self.value_file)
            .field("from_context", &self.from_context)
            .field("from_attribute", &self.from_attribute)
            .finish_non_exhaustive()
    }
}

/// `bearertokenauth`: `<scheme> <token>` in `header`. `Debug` leaves the tokens out.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BearerTokenAuth {
    /// The header. Default `Authorization`.
    #[serde(default = "default_header")]
    pub header: String,
    /// Written before the token with a space; empty for the token alone. Default `Bearer`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The token.
    #[serde(default)]
    pub token: Option<String>,
    /// Several tokens: a client sends the first (the others are for receivers). A
    /// single string is split at commas, as the Collector splits it (its value is never
    /// quoted in an error).
    #[serde(default, deserialize_with = "one_or_many")]
    pub tokens: Vec<String>,
    /// A file whose first line is the token, read again when it changes.
    #[serde(default)]
    pub filename: Option<PathBuf>,
}

impl std::fmt::Debug for BearerTokenAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokenAuth")
            .field("header", &self.header)
            .field("scheme", &self.scheme)
            .field("filename", &self.filename)
            .finish_non_exhaustive()
    }
}

/// A list of strings, or one string as a list of one: `tokens: ${env:TOKEN}` would
/// otherwise be refused with the token quoted in the error.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of tokens")
        }
        // As the Collector decodes a string into a list: split at commas.
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(if v.is_empty() {
                Vec::new()
            } else {
                v.split(',').map(str::to_owned).collect()
            })
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        // A token of digits alone reads as a number; its text is the token. Other
        // scalars are refused without quoting them.
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err(E::custom(
                "tokens: a number that is not an integer; quote the token",
            ))
        }
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err(E::custom("tokens: true or false; quote the token"))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(token) = seq.next_element::<String>()? {
                out.push(token);
            }
            Ok(out)
        }
    }
    d.deserialize_any(OneOrMany)
}

fn default_header() -> String {
    "Authorization".into()
}

fn default_scheme() -> String {
    "Bearer".into()
}

/// `oauth2client`: OAuth2 client credentials (RFC 6749 section 4.4), the `client_credentials`
/// grant only. `Debug` leaves the secret out.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Client {
    /// The client's id.
    #[serde(default)]
    pub client_id: Option<String>,
    /// A file whose text, trimmed, is the id (over `client_id`), read for every fetch.
    #[serde(default)]
    pub client_id_file: Option<PathBuf>,
    /// The client's secret.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// A file whose text, trimmed, is the secret (over `client_secret`), read for every
    /// fetch.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The token endpoint.
    #[serde(default)]
    pub token_url: Option<String>,
    /// Scopes asked for.
    #[serde(default, deserialize_with = "tailgate_core::config::comma_list")]
    pub scopes: Vec<String>,
    /// Extra form fields for the token endpoint (`audience`, …): a value or a list each.
    #[serde(default)]
    pub endpoint_params: std::collections::BTreeMap<String, OneOrMore>,
    /// TLS to the token endpoint.
    #[serde(default)]
    pub tls: Option<tailgate_core::tls::ClientTlsConfig>,
    /// The most one fetch takes. Left out or 0: 30 s (the Collector: no limit).
    #[serde(default, with = "tailgate_core::config::duration::option")]
    pub timeout: Option<std::time::Duration>,
    /// How long before its expiry a token is replaced. Default 5m, as in the Collector; 0
    /// is Go's own default, 10 s.
    #[serde(default, with = "tailgate_core::config::duration::option")]
    pub expiry_buffer: Option<std::time::Duration>,
    /// `client_credentials` (the default; empty is the same) only.
    #[serde(default)]
    pub grant_type: Option<String>,
}

/// A form field's value: one, or several (sent once each).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMore {
    /// One value.
    One(String),
    /// Several.
    More(Vec<String>),
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("client_id", &self.client_id)
            .field("client_id_file", &self.client_id_file)
            .field("client_secret_file", &self.client_secret_file)
            .field("token_url", &self.token_url)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The longest a fetch of AWS credentials (STS, a container or instance endpoint) takes.
pub const SIGV4_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `oauth2client`'s fetch timeout when none is set: the Collector's client has none,
/// which a token endpoint that never answers would turn into exporters that never send.
pub const OAUTH2_DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `basicauth`: the client side (`client_auth`) only.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name and password this gateway sends.
    #[serde(default)]
    pub client_auth: Option<ClientAuth>,
    /// The server side (checking senders): refused when an exporter uses the extension.
    #[serde(default)]
    pub htpasswd: Option<NotApplied>,
}

/// `basicauth.client_auth`. `Debug` leaves the password out.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientAuth {
    /// The user name.
    #[serde(default)]
    pub username: Option<String>,
    /// A file whose text, trimmed, is the user name (over `username`).
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// The password.
    #[serde(default)]
    pub password: Option<String>,
    /// A file whose text, trimmed, is the password (over `password`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Credentials from AWS Secrets Manager: not supported (refused).
    #[serde(default)]
    pub aws_secrets_manager: Option<NotApplied>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("username", &self.username)
            .field("username_file", &self.username_file)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

/// Why an exporter's `auth` cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `authenticator` names no key under `extensions:`.
    #[error("auth.authenticator {name:?} is not under extensions: ({defined})")]
    Unknown {
        /// The name given.
        name: String,
        /// The keys that are there, or a hint when there are none.
        defined: String,
    },
    /// A `bearertokenauth` without `token`, `tokens` or `filename`.
    #[error("no bearer token provided (set token, tokens or filename)")]
    NoToken(String),
    /// A `bearertokenauth` with both `token` and `tokens`, which the Collector refuses.
    #[error("either tokens or token should be provided, not both")]
    TokenAndTokens(String),
    /// A `basicauth` with neither `client_auth` nor `htpasswd`.
    #[error(
        "no credential source provided (an exporter needs client_auth: {{username, password}})"
    )]
    NoCredentialSource(String),
    /// A `basicauth` with both, which the Collector refuses.
    #[error("only one of htpasswd or client_auth can be specified")]
    BothSides(String),
    /// A `basicauth` with only `htpasswd`, which checks senders.
    #[error("an exporter needs client_auth (username and password); htpasswd checks senders, which Tailgate's receivers do with receive.auth")]
    NoClientAuth(String),
    /// A `client_auth` key left out (neither it nor its `_file`).
    #[error("client_auth.{key} is not set (nor {key}_file)")]
    Missing {
        /// The extension's key.
        name: String,
        /// `username` or `password`.
        key: &'static str,
    },
    /// `client_auth.aws_secrets_manager`.
    #[error("client_auth.aws_secrets_manager is not supported; use username_file and password_file (a mounted secret) or ${{env:…}}")]
    AwsSecretsManager(String),
    /// An authenticator on a plaintext gRPC exporter: an `http://` endpoint (`true`), or
    /// `tls: {insecure: true}` (`false`).
    #[error("{0} sends credentials, and this gRPC exporter is plaintext: {fix} (the Collector's gRPC client refuses to send them without TLS too)", fix = if *.1 { "write the endpoint as https:// (http:// is always plaintext here)" } else { "remove insecure: true from its tls: block" })]
    PlaintextGrpc(String, bool),
    /// An `oauth2client` that cannot be used.
    #[error("{1}")]
    OAuth2(String, String),
    /// A `sigv4auth` that cannot be used.
    #[error("{1}")]
    SigV4(String, String),
    /// A `googleclientauth` that cannot be used (the Collector's words where it has them).
    #[error("{1}")]
    Google(String, String),
    /// A `headers_setter` that cannot be used: its key and why (the Collector's words
    /// where it has them).
    #[error("{1}")]
    HeadersSetter(String, String),
    /// The credential cannot be built.
    #[error("{source}")]
    Credential {
        /// The extension's key.
        name: String,
        /// Why.
        source: CredentialError,
    },
}

impl AuthError {
    /// The key below the extension the error is about (`tokens`, `client_auth.password`,
    /// an `oauth2client`'s `token_url`), so that the config error names it and its line;
    /// `None` for the extension as a whole.
    pub fn sub_key(&self) -> Option<String> {
        match self {
            AuthError::TokenAndTokens(_) => Some("tokens".into()),
            AuthError::BothSides(_) => Some("htpasswd".into()),
            AuthError::NoClientAuth(_) => Some("htpasswd".into()),
            AuthError::Missing { key, .. } => Some(format!("client_auth.{key}")),
            AuthError::AwsSecretsManager(_) => Some("client_auth.aws_secrets_manager".into()),
            AuthError::OAuth2(_, message)
            | AuthError::SigV4(_, message)
            | AuthError::Google(_, message)
            | AuthError::HeadersSetter(_, message) => leading_key(message).map(|(k, _)| k.into()),
            _ => None,
        }
    }

    /// What is wrong, without the key [`Self::sub_key`] names.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        match self {
            AuthError::OAuth2(..)
            | AuthError::SigV4(..)
            | AuthError::Google(..)
            | AuthError::HeadersSetter(..) => {
                leading_key(&text).map_or(text.clone(), |(_, rest)| rest.to_owned())
            }
            _ => text,
        }
    }
}

/// `token_url` and the rest of `token_url: endpoint "…" needs a scheme`: a message that
/// starts with the key it is about (a snake_case name, dotted or indexed).
fn leading_key(message: &str) -> Option<(&str, &str)> {
    let (key, rest) = message.split_once(": ")?;
    let is_key = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.[]".contains(&b));
    is_key.then_some((key, rest))
}

impl<'de> Deserialize<'de> for ExtensionsConfig {
    /// Each extension's settings are read straight from the file by their type, so that an
    /// error names its line.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Extensions;
        impl<'de> serde::de::Visitor<'de> for Extensions {
            type Value = ExtensionsConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a mapping of extensions (bearertokenauth, basicauth, oauth2client, headers_setter, sigv4auth, googleclientauth, optionally with /name)",
                )
            }

            fn visit_unit<E: serde::de::Error>(self) -> Result<ExtensionsConfig, E> {
                Ok(ExtensionsConfig::default())
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ExtensionsConfig, A::Error> {
                use serde::de::Error;
                let mut extensions: Vec<(String, Extension)> = Vec::new();
                let mut ignored: Vec<String> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if extensions.iter().any(|(k, _)| *k == key) || ignored.contains(&key) {
                        return Err(A::Error::custom(format!("extension {key} is listed twice")));
                    }
                    if let Some(problem) = tailgate_core::collector::component_id_problem(&key) {
                        return Err(A::Error::custom(format!("extension {problem}")));
                    }
                    let kind = key.split('/').next().unwrap_or_default();
                    if SERVICE_EXTENSIONS.iter().any(|(k, _)| *k == kind) {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        ignored.push(key);
                        continue;
                    }
                    let parsed = match kind {
                        "bearertokenauth" => Extension::BearerToken(map.next_value()?),
                        "basicauth" => Extension::Basic(map.next_value()?),
                        "oauth2client" => Extension::OAuth2(map.next_value()?),
                        "headers_setter" => Extension::HeadersSetter(map.next_value()?),
                        "sigv4auth" => Extension::SigV4(map.next_value()?),
                        "googleclientauth" => Extension::Google(map.next_value()?),
                        other => return Err(A::Error::custom(format!(
                            "extension {key}: type {other:?} is not applied by Tailgate; extensions: takes the exporter authenticators bearertokenauth, basicauth (client_auth), oauth2client, headers_setter, sigv4auth and googleclientauth; {}",
                            instead_of(other)
                        ))),
                    };
                    extensions.push((key, parsed));
                }
                Ok(ExtensionsConfig {
                    extensions,
                    proxy_env: ProxyEnv::from_process(),
                    cloud_env: CloudEnv::from_process(),
                    ignored,
                })
            }
        }
        d.deserialize_map(Extensions)
    }
}

/// The Collector's service extensions found in nearly every copied config, and what
/// serves their purpose in Tailgate: read and ignored with a warning.
const SERVICE_EXTENSIONS: &[(&str, &str)] = &[
    (
        "health_check",
        "the gateway's admin: address serves the health_check extension's / (and /healthz, /readyz)",
    ),
    (
        "pprof",
        "Tailgate serves no Go profiles; profile the process with perf (docs/benchmarks.md)",
    ),
    (
        "zpages",
        "Tailgate serves no zpages; its metrics are on the admin: address's /metrics",
    ),
];

/// What to do instead of an extension type Tailgate does not apply.
fn instead_of(kind: &str) -> &'static str {
    match kind {
        "azureauth" | "azure_auth" => {
            "it fetches short-lived tokens, which Tailgate does not: have a sidecar (or the \
             cloud's agent) keep the token in a file and use bearertokenauth with filename: \
             (read again every 10 s)"
        }
        kind if kind.ends_with("_storage") => {
            "Tailgate queues kept spans in memory (an exporter's queue_bytes) and stores \
             nothing: remove it"
        }
        _ => "remove it; fixed credentials go in an exporter's headers:",
    }
}

/// A rule's action as the Collector reads it: any value but the four (left out too) is
/// `upsert` (with a warning, [`ExtensionsConfig::warnings`]).
fn header_action(action: Option<&str>) -> HeaderAction {
    match action {
        Some("insert") => HeaderAction::Insert,
        Some("update") => HeaderAction::Update,
        Some("delete") => HeaderAction::Delete,
        _ => HeaderAction::Upsert,
    }
}

impl ExtensionsConfig {
    /// What the extension `auth` names puts on each request, its files read now.
    pub fn credential(&self, auth: &AuthRef) -> Result<Arc<RequestAuth>, AuthError> {
        let (key, extension) = self.named(auth)?;
        self.auth_of(key, extension).map(Arc::new)
    }

    /// The `sigv4auth` that signs the requests of an exporter whose `auth` is `auth`: the
    /// extension itself, or the one a `headers_setter` chains.
    pub fn signing(&self, auth: &AuthRef) -> Option<&SigV4Auth> {
        match self.named(auth).ok()?.1 {
            Extension::SigV4(s) => Some(s),
            Extension::HeadersSetter(HeadersSetter {
                additional_auth: Some(chained),
                ..
            }) => match self.extensions.iter().find(|(k, _)| k == chained.trim())?.1 {
                Extension::SigV4(ref s) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the extension `auth` names sends credentials, which a plaintext gRPC
    /// exporter may not carry: every authenticator but a `headers_setter` without
    /// `additional_auth` (the Collector's asks for no transport security).
    pub fn sends_credentials(&self, auth: &AuthRef) -> bool {
        !matches!(
            self.named(auth),
            Ok((
                _,
                Extension::HeadersSetter(HeadersSetter {
                    additional_auth: None,
                    ..
                })
            ))
        )
    }

    /// The extension `auth` names (its key and settings), without reading its files.
    pub fn named(&self, auth: &AuthRef) -> Result<(&str, &Extension), AuthError> {
        let name = auth.authenticator.trim();
        let Some((key, extension)) = self.extensions.iter().find(|(k, _)| k == name) else {
            let defined = if self.extensions.is_empty() {
                "there is no extensions: block; add one at the top level, as in a Collector config"
                    .to_owned()
            } else {
                let keys: Vec<&str> = self.extensions.iter().map(|(k, _)| k.as_str()).collect();
                format!("defined: {}", keys.join(", "))
            };
            return Err(AuthError::Unknown {
                name: name.to_owned(),
                defined,
            });
        };
        Ok((key, extension))
    }

    /// Builds every extension's credential, reading its files, as the Collector starts
    /// every extension: one no exporter uses is checked too. The error's key.
    pub fn validate(&self) -> Result<(), (String, AuthError)> {
        for (key, extension) in &self.extensions {
            self.auth_of(key, extension)
                .map_err(|e| (format!("extensions.{key}"), e))?;
        }
        Ok(())
    }

    fn auth_of(&self, key: &str, extension: &Extension) -> Result<RequestAuth, AuthError> {
        match extension {
            Extension::Google(g) => {
                let (rules, credential) = self.google(key, g)?;
                Ok(RequestAuth::new(rules, Some(credential)))
            }
            Extension::HeadersSetter(h) => self.headers_setter(key, h),
            Extension::SigV4(s) => self.sigv4(key, s).map(RequestAuth::signed),
            other => self.credential_of(key, other).map(RequestAuth::from),
        }
    }

    /// A `headers_setter`'s rules, checked as the Collector checks them, with its
    /// `additional_auth`'s credential.
    fn headers_setter(&self, key: &str, h: &HeadersSetter) -> Result<RequestAuth, AuthError> {
        let fail = |problem: String| AuthError::HeadersSetter(key.to_owned(), problem);
        if h.headers.is_empty() {
            return Err(fail("missing headers configuration".into()));
        }
        let mut rules = Vec::with_capacity(h.headers.len());
        for (i, setting) in h.headers.iter().enumerate() {
            let at = |problem: &str| fail(format!("headers[{i}]: {problem}"));
            let name = setting
                .key
                .as_deref()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| at("missing header name"))?;
            let name = http::HeaderName::from_bytes(name.trim().to_ascii_lowercase().as_bytes())
                .map_err(|_| at(&format!("key {name:?} is not a valid header name")))?;
            let action = header_action(setting.action.as_deref());
            let sources = [
                setting.value.is_some(),
                setting.value_file.is_some(),
                setting.from_context.is_some(),
                setting.from_attribute.is_some(),
            ]
            .into_iter()
            .filter(|set| *set)
            .count();
            if action != HeaderAction::Delete && sources == 0 {
                return Err(at(
                    "missing header source, must be 'from_context', 'from_attribute', 'value' or 'value_file'",
                ));
            }
            if action != HeaderAction::Delete && sources > 1 {
                return Err(at(
                    "invalid header source, must either 'from_context', 'from_attribute', 'value' or 'value_file'",
                ));
            }
            let fixed = |text: &str| {
                let mut value = http::HeaderValue::from_str(text)
                    .map_err(|_| at("the value has characters a header cannot carry"))?;
                value.set_sensitive(true);
                Ok::<_, AuthError>(RuleValue::Fixed(value))
            };
            let value = match (&setting.value, &setting.value_file) {
                (_, Some(path)) if action != HeaderAction::Delete => RuleValue::File(
                    Credential::new(
                        name.as_str(),
                        Scheme::Token {
                            scheme: String::new(),
                            token: Secret::File(path.clone()),
                        },
                    )
                    .map_err(|source| AuthError::Credential {
                        name: format!("{key}: headers[{i}].value_file"),
                        source,
                    })?,
                ),
                (Some(v), _) => fixed(v)?,
                // from_context / from_attribute: no request's metadata reaches an export.
                _ => fixed(setting.default_value.as_deref().unwrap_or_default())?,
            };
            rules.push(HeaderRule {
                name,
                action,
                value,
            });
        }
        let credential = match h.additional_auth.as_deref().map(str::trim) {
            None => None,
            Some(chained) => {
                let Some((chained_key, extension)) =
                    self.extensions.iter().find(|(k, _)| k == chained)
                else {
                    return Err(fail(format!(
                        "additional_auth: auth extension {chained:?} not found under extensions:"
                    )));
                };
                match extension {
                    Extension::HeadersSetter(_) => {
                        return Err(fail(format!(
                            "additional_auth: {chained} is a headers_setter too; chain \
                             bearertokenauth, basicauth, oauth2client, sigv4auth or \
                             googleclientauth (put all the rules in one headers_setter)"
                        )))
                    }
                    // Its project headers after the rules, then its token.
                    Extension::Google(g) => {
                        let (extra, credential) = self.google(chained_key, g)?;
                        let mut rules = rules;
                        rules.extend(extra);
                        return Ok(RequestAuth::new(rules, Some(credential)));
                    }
                    // The rules, then the signature over them.
                    Extension::SigV4(s) => {
                        let signer = self.sigv4(chained_key, s)?;
                        return Ok(RequestAuth::new(rules, None).with_signer(signer));
                    }
                    _ => Some(self.credential_of(chained_key, extension)?),
                }
            }
        };
        Ok(RequestAuth::new(rules, credential))
    }

    fn credential_of(&self, key: &str, extension: &Extension) -> Result<Credential, AuthError> {
        let key = key.to_owned();
        let (header, scheme) = match extension {
            Extension::OAuth2(o) => return self.oauth2_credential(&key, o),
            Extension::HeadersSetter(_) => {
                return Err(AuthError::HeadersSetter(
                    key,
                    "a headers_setter is not a single credential".into(),
                ))
            }
            Extension::SigV4(_) => {
                return Err(AuthError::SigV4(
                    key,
                    "sigv4auth signs requests and cannot be chained as a header".into(),
                ))
            }
            Extension::Google(_) => {
                return Err(AuthError::Google(
                    key,
                    "googleclientauth sets its project headers too and is chained as a whole"
                        .into(),
                ))
            }
            Extension::BearerToken(b) => {
                if b.token.is_some() && !b.tokens.is_empty() {
                    return Err(AuthError::TokenAndTokens(key));
                }
                // The Collector's order: `tokens`, then `filename`, then `token`.
                let token = if let Some(first) = b.tokens.first() {
                    Secret::Inline(first.clone())
                } else if let Some(path) = &b.filename {
                    Secret::File(path.clone())
                } else if let Some(token) = &b.token {
                    Secret::Inline(token.clone())
                } else {
                    return Err(AuthError::NoToken(key.clone()));
                };
                (
                    b.header.as_str(),
                    Scheme::Token {
                        scheme: b.scheme.clone(),
                        token,
                    },
                )
            }
            Extension::Basic(b) => {
                let c = match (&b.client_auth, &b.htpasswd) {
                    (Some(_), Some(_)) => return Err(AuthError::BothSides(key)),
                    (None, None) => return Err(AuthError::NoCredentialSource(key)),
                    (None, Some(_)) => return Err(AuthError::NoClientAuth(key)),
                    (Some(c), None) => c,
                };
                if c.aws_secrets_manager.is_some() {
                    return Err(AuthError::AwsSecretsManager(key));
                }
                let secret =
                    |file: &Option<PathBuf>, inline: &Option<String>, name| match (file, inline) {
                        (Some(path), _) => Ok(Secret::File(path.clone())),
                        (None, Some(text)) => Ok(Secret::Inline(text.clone())),
                        (None, None) => Err(AuthError::Missing {
                            name: key.clone(),
                            key: name,
                        }),
                    };
                (
                    "Authorization",
                    Scheme::Basic {
                        username: secret(&c.username_file, &c.username, "username")?,
                        password: secret(&c.password_file, &c.password, "password")?,
                    },
                )
            }
        };
        Credential::new(header, scheme).map_err(|source| AuthError::Credential {
            name: key.clone(),
            source,
        })
    }

    /// A `sigv4auth`'s signer: its credentials' source found now (the SDKs' chain over the
    /// variables read with the config, or the roles it names), nothing fetched yet.
    fn sigv4(&self, key: &str, s: &SigV4Auth) -> Result<tailgate_core::aws::SigV4, AuthError> {
        use tailgate_core::aws::{sts_endpoint, CredentialsProvider, Source};
        let fail = |problem: String| AuthError::SigV4(key.to_owned(), problem);
        let env = |name: &str| self.cloud_env.var(name);
        let region_var = env("AWS_REGION")
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .unwrap_or_default();
        let sts_region = |written: &str| {
            [written, s.region.as_str(), region_var.as_str()]
                .into_iter()
                .find(|r| !r.is_empty())
                .unwrap_or_default()
                .to_owned()
        };
        let provider = |source: Source| -> Result<CredentialsProvider, AuthError> {
            let (tls, proxy) = match &source {
                Source::WebIdentity { sts, .. } | Source::AssumeRole { sts, .. } => {
                    let tls = tailgate_core::tls::client_side(None, &sts.to_string())
                        .map_err(|e| fail(format!("STS endpoint: {e}")))?;
                    let proxy = self
                        .proxy_env
                        .for_endpoint(sts, tailgate_core::proxy::ProxyFor::Http)
                        .map_err(|e| fail(format!("STS endpoint: {e}")))?;
                    (tls, proxy)
                }
                _ => (None, None),
            };
            Ok(CredentialsProvider::new(
                source,
                SIGV4_FETCH_TIMEOUT,
                tls.as_ref(),
                proxy.as_ref(),
            ))
        };
        let web = s.assume_role_with_web_identity.as_ref();
        let source = match web {
            Some(w) if !w.arn.is_empty() || w.token_file.is_some() => {
                let (Some(token_file), false) = (&w.token_file, w.arn.is_empty()) else {
                    return Err(fail(
                        "assume_role_with_web_identity needs arn and token_file".into(),
                    ));
                };
                Source::WebIdentity {
                    role_arn: w.arn.clone(),
                    token_file: token_file.clone(),
                    session_name: format!("tailgate-{}", std::process::id()),
                    sts: sts_endpoint(&env, &sts_region(&w.sts_region)).map_err(fail)?,
                }
            }
            _ => {
                let assume = s.assume_role.as_ref().filter(|a| !a.arn.is_empty());
                let region = sts_region(assume.map_or("", |a| a.sts_region.as_str()));
                let chain =
                    Source::from_env(&env, self.cloud_env.home.clone(), &region).map_err(fail)?;
                match assume {
                    None => chain,
                    Some(a) => Source::AssumeRole {
                        base: Arc::new(provider(chain)?),
                        role_arn: a.arn.clone(),
                        session_name: if a.session_name.is_empty() {
                            format!("tailgate-{}", std::process::id())
                        } else {
                            a.session_name.clone()
                        },
                        sts: sts_endpoint(&env, &region).map_err(fail)?,
                        // The global endpoint signs for us-east-1.
                        region: if region.is_empty() {
                            "us-east-1".into()
                        } else {
                            region
                        },
                    },
                }
            }
        };
        Ok(tailgate_core::aws::SigV4 {
            service: s.service.clone(),
            region: s.region.clone(),
            credentials: Arc::new(provider(source)?),
        })
    }

    /// A `googleclientauth`'s project headers and token (Application Default Credentials
    /// over the variables read with the config, nothing fetched yet).
    fn google(
        &self,
        key: &str,
        g: &GoogleClientAuth,
    ) -> Result<(Vec<HeaderRule>, Credential), AuthError> {
        use tailgate_core::gcp::{GcpSource, GcpTokens, TokenKind};
        let fail = |problem: String| AuthError::Google(key.to_owned(), problem);
        let kind = match g.token_type.as_str() {
            "access_token" => TokenKind::Access {
                scopes: g.scopes.clone(),
            },
            "id_token" if g.audience.is_empty() => {
                return Err(fail(
                    "audience must be specified when using the id_token token_type".into(),
                ))
            }
            "id_token" => TokenKind::Id {
                audience: g.audience.clone(),
            },
            _ => return Err(fail("invalid token_type".into())),
        };
        let header =
            match g.token_header.as_str() {
                "authorization" => http::header::AUTHORIZATION,
                "proxy-authorization" => http::header::PROXY_AUTHORIZATION,
                _ => return Err(fail(
                    "invalid token_header, must be \"authorization\" or \"proxy-authorization\""
                        .into(),
                )),
            };
        let env = |name: &str| self.cloud_env.var(name);
        let (source, found) =
            GcpSource::from_env(&env, self.cloud_env.home.clone()).map_err(fail)?;
        let project = [
            Some(g.project.clone()),
            env("GOOGLE_CLOUD_PROJECT"),
            found.project_id.clone(),
        ]
        .into_iter()
        .flatten()
        .find(|p| !p.is_empty())
        .ok_or_else(|| {
            fail(format!(
                "no project set in config or found with application default credentials ({}): set project or GOOGLE_CLOUD_PROJECT",
                found.from
            ))
        })?;
        let quota = Some(g.quota_project.clone())
            .filter(|q| !q.is_empty())
            .or(found.quota_project.clone());
        let fixed = |name: &'static str, value: &str| -> Result<HeaderRule, AuthError> {
            Ok(HeaderRule {
                name: http::HeaderName::from_static(name),
                action: HeaderAction::Upsert,
                value: RuleValue::Fixed(
                    http::HeaderValue::from_str(value)
                        .map_err(|_| fail(format!("{name} cannot carry {value:?}")))?,
                ),
            })
        };
        let mut rules = vec![fixed("x-goog-project-id", &project)?];
        if let Some(q) = quota {
            rules.push(fixed("x-goog-user-project", &q)?);
        }
        if let (GcpSource::AuthorizedUser { .. }, TokenKind::Id { .. }) = (&source, &kind) {
            return Err(fail(format!(
                "id_token needs a service account or the metadata server; {} holds a user's refresh token",
                found.from
            )));
        }
        // TLS and the proxy variables for the key file's token endpoint, as Go's client
        // picks them per request; the metadata server is reached directly.
        let (tls, proxy) = match source.token_uri() {
            Some(uri) => (
                tailgate_core::tls::client_side(None, &uri.to_string())
                    .map_err(|e| fail(format!("token_uri: {e}")))?,
                self.proxy_env
                    .for_endpoint(uri, tailgate_core::proxy::ProxyFor::Http)
                    .map_err(|e| fail(format!("token_uri: {e}")))?,
            ),
            None => (None, None),
        };
        let tokens = GcpTokens::new(
            source,
            kind,
            SIGV4_FETCH_TIMEOUT,
            tls.as_ref(),
            proxy.as_ref(),
        );
        Ok((rules, Credential::fetched(header, tokens)))
    }

    /// An `oauth2client`'s credential: its settings checked and its secrets read now (so
    /// `--check` finds a missing file), its tokens fetched when a request first asks.
    fn oauth2_credential(&self, key: &str, o: &OAuth2Client) -> Result<Credential, AuthError> {
        let fail = |problem: String| AuthError::OAuth2(key.to_owned(), problem);
        if let Some(g) = o
            .grant_type
            .as_deref()
            .filter(|g| !g.is_empty() && *g != "client_credentials")
        {
            return Err(fail(format!(
                "grant_type {g:?} is not supported: Tailgate fetches client_credentials tokens \
                 only (have a sidecar keep a token in a file and use bearertokenauth with \
                 filename:)"
            )));
        }
        // As the Collector: a file over the written value.
        let secret = |file: &Option<PathBuf>, inline: &Option<String>| match (file, inline) {
            (Some(path), _) => Some(Secret::File(path.clone())),
            (None, Some(text)) if !text.is_empty() => Some(Secret::Inline(text.clone())),
            _ => None,
        };
        let client_id = secret(&o.client_id_file, &o.client_id).ok_or_else(|| {
            fail("no ClientID provided in the OAuth2 exporter configuration (set client_id or client_id_file)".into())
        })?;
        let client_secret = secret(&o.client_secret_file, &o.client_secret).ok_or_else(|| {
            fail("no ClientSecret provided in OAuth Client Credentials configuration (set client_secret or client_secret_file)".into())
        })?;
        let credential_error = |source| AuthError::Credential {
            name: key.to_owned(),
            source,
        };
        tailgate_core::credential::read_secret(&client_id, "client_id")
            .map_err(credential_error)?;
        tailgate_core::credential::read_secret(&client_secret, "client_secret")
            .map_err(credential_error)?;
        let token_url = o.token_url.as_deref().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
            fail("no TokenURL provided in OAuth Client Credentials configuration (set token_url)".into())
        })?;
        let url = tailgate_core::endpoint::parse(
            token_url.trim(),
            tailgate_core::endpoint::Bare::Refused,
        )
        .map_err(|e| match e {
            tailgate_core::endpoint::EndpointError::Credentials { masked } => fail(format!(
                "token_url {masked}: credentials in the URL are not sent; set client_id and \
                 client_secret (or their _file)"
            )),
            e => fail(format!("token_url: {e}")),
        })?;
        let tls = tailgate_core::tls::client_side(o.tls.as_ref(), &url.to_string())
            .map_err(|e| fail(format!("tls: {e}")))?;
        let proxy = self
            .proxy_env
            .for_endpoint(&url, tailgate_core::proxy::ProxyFor::Http)
            .map_err(|e| fail(format!("token_url: {e}")))?;
        // Go refuses to overwrite a form field it sets (`grant_type` excepted, for servers
        // that want another); the id and secret would go twice.
        for clash in ["scope", "client_id", "client_secret"] {
            if o.endpoint_params.contains_key(clash) && (clash != "scope" || !o.scopes.is_empty()) {
                return Err(fail(format!(
                    "endpoint_params: cannot overwrite parameter {clash:?} (set {})",
                    if clash == "scope" {
                        "scopes only"
                    } else {
                        "client_id / client_secret"
                    }
                )));
            }
        }
        let endpoint_params = o
            .endpoint_params
            .iter()
            .flat_map(|(k, v)| match v {
                OneOrMore::One(v) => vec![(k.clone(), v.clone())],
                OneOrMore::More(vs) => vs.iter().map(|v| (k.clone(), v.clone())).collect(),
            })
            .collect();
        let source =
            tailgate_core::oauth2::TokenSource::new(tailgate_core::oauth2::ClientCredentials {
                token_url: url,
                client_id,
                client_secret,
                scopes: o.scopes.clone(),
                endpoint_params,
                timeout: o
                    .timeout
                    .filter(|t| !t.is_zero())
                    .unwrap_or(OAUTH2_DEFAULT_TIMEOUT),
                // 0 is Go's default early expiry, 10 s.
                expiry_buffer: match o.expiry_buffer {
                    None => std::time::Duration::from_secs(300),
                    Some(b) if b.is_zero() => std::time::Duration::from_secs(10),
                    Some(b) => b,
                },
                tls,
                proxy,
            });
        Ok(Credential::fetched(http::header::AUTHORIZATION, source))
    }

    /// What the operator should know that is not a warning: where each `sigv4auth` finds
    /// its AWS credentials (`--check` prints it; the gateway logs it at start).
    pub fn notes(&self) -> Vec<String> {
        self.extensions
            .iter()
            .filter_map(|(key, e)| match e {
                Extension::SigV4(s) => self.sigv4(key, s).ok().map(|signer| {
                    format!(
                        "extensions.{key}: AWS credentials from {}",
                        signer.credentials.source().describe()
                    )
                }),
                Extension::Google(_) => {
                    let env = |name: &str| self.cloud_env.var(name);
                    tailgate_core::gcp::GcpSource::from_env(&env, self.cloud_env.home.clone())
                        .ok()
                        .map(|(_, found)| {
                            format!("extensions.{key}: Google credentials from {}", found.from)
                        })
                }
                _ => None,
            })
            .collect()
    }

    /// What the operator should know: settings the Collector ignores with a warning.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .ignored
            .iter()
            .map(|key| {
                let kind = key.split('/').next().unwrap_or_default();
                let instead = SERVICE_EXTENSIONS
                    .iter()
                    .find(|(k, _)| *k == kind)
                    .map_or("", |(_, instead)| instead);
                format!("extensions.{key}: ignored; {instead}")
            })
            .collect();
        warnings.extend(self
            .extensions
            .iter()
            .filter_map(|(key, e)| match e {
                Extension::HeadersSetter(h) => Some((key, h)),
                _ => None,
            })
            .flat_map(|(key, h)| {
                h.headers.iter().enumerate().flat_map(move |(i, setting)| {
                    let at = format!("extensions.{key}.headers[{i}]");
                    let action = header_action(setting.action.as_deref());
                    let about_action = match setting.action.as_deref() {
                        None => Some(format!(
                            "{at}: no action; upsert, as the Collector (which warns that a later version will require one)"
                        )),
                        Some(a) if action == HeaderAction::Upsert && a != "upsert" => Some(format!(
                            "{at}: action {a:?} is none of insert, update, upsert, delete; applied as upsert, as the Collector applies it"
                        )),
                        _ => None,
                    };
                    let from = match (&setting.from_context, &setting.from_attribute) {
                        (Some(_), _) => Some("from_context"),
                        (None, Some(_)) => Some("from_attribute"),
                        (None, None) => None,
                    };
                    let about_source = from.filter(|_| action != HeaderAction::Delete).map(|from| {
                        let default = match &setting.default_value {
                            Some(_) => "its default_value",
                            None => "an empty value (no default_value)",
                        };
                        format!(
                            "{at}: {from}: exports carry traces gathered from many requests, so no request's metadata reaches them (as after the Collector's tail_sampling, which releases traces on a context of its own); the header takes {default}"
                        )
                    });
                    about_action.into_iter().chain(about_source)
                })
            }));
        warnings.extend(self.extensions.iter().filter_map(|(key, e)| match e {
                Extension::BearerToken(b) if b.filename.is_some() && !b.tokens.is_empty() => {
                    Some(format!(
                        "extensions.{key}: both tokens and filename; the first of tokens is sent, as in the Collector"
                    ))
                }
                Extension::BearerToken(b) if b.filename.is_some() && b.token.is_some() => {
                    Some(format!(
                        "extensions.{key}: both token and filename; the file's token is sent, as in the Collector"
                    ))
                }
                Extension::Basic(BasicAuth {
                    client_auth: Some(c),
                    ..
                }) => {
                    let both: Vec<&str> = [
                        ("username", c.username.is_some() && c.username_file.is_some()),
                        ("password", c.password.is_some() && c.password_file.is_some()),
                    ]
                    .into_iter()
                    .filter_map(|(k, b)| b.then_some(k))
                    .collect();
                    (!both.is_empty()).then(|| {
                        format!(
                            "extensions.{key}.client_auth: both {0} and {0}_file; the file's is sent, as in the Collector",
                            both.join(" and ")
                        )
                    })
                }
                _ => None,
            }));
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extensions(yaml: &str) -> ExtensionsConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn auth(name: &str) -> AuthRef {
        AuthRef {
            authenticator: name.into(),
        }
    }

    /// Scenario: the extension blocks of the Collector's READMEs (bearertokenauth with a
    /// scheme, several tokens, a custom header; basicauth's client_auth as Grafana Cloud's
    /// docs write it). Guarantees: each gives the header the Collector's client sends.
    #[test]
    fn the_collectors_blocks_give_the_collectors_headers() {
        let e = extensions(
            "bearertokenauth/withscheme:\n  scheme: Bearer\n  token: randomtoken\n\
             bearertokenauth/multipletokens:\n  scheme: Bearer\n  tokens: [randomtoken, thistokenalsoworks]\n\
             bearertokenauth/apikey:\n  header: X-API-Key\n  scheme: ''\n  token: k3y\n\
             basicauth/grafana_cloud:\n  client_auth:\n    username: '123456'\n    password: glc_secret\n",
        );
        let shown = format!("{e:?}");
        assert!(
            !shown.contains("randomtoken") && !shown.contains("glc_secret"),
            "{shown}"
        );
        let value = |name: &str| {
            let auth = e.credential(&auth(name)).unwrap();
            let c = auth.credential().unwrap();
            (
                c.header().to_string(),
                c.last_value().to_str().unwrap().to_owned(),
            )
        };
        assert_eq!(
            value("bearertokenauth/withscheme"),
            ("authorization".into(), "Bearer randomtoken".into())
        );
        assert_eq!(
            value("bearertokenauth/multipletokens"),
            ("authorization".into(), "Bearer randomtoken".into())
        );
        assert_eq!(
            value("bearertokenauth/apikey"),
            ("x-api-key".into(), "k3y".into())
        );
        assert_eq!(
            value("basicauth/grafana_cloud"),
            (
                "authorization".into(),
                "Basic MTIzNDU2OmdsY19zZWNyZXQ=".into()
            )
        );
    }

    /// Scenario: the `headers_setter` block of the Collector's README (an insert from the
    /// context with a default, an upsert, an update of it and a delete), applied to a
    /// request that has `Some-Header` from the exporter's `headers:`.
    /// Guarantees: the header from the context takes its default (no request's metadata
    /// reaches an export), the upsert and update set `User-ID`, the delete removes the
    /// exporter's header; warnings name the context's rule and the one without an action;
    /// the values never show in `Debug`.
    #[tokio::test]
    async fn the_collectors_headers_setter_block_sets_its_headers() {
        let e = extensions(
            "headers_setter:\n  headers:\n\
             \x20   - {action: insert, key: X-Scope-OrgID, from_context: tenant_id, default_value: Org-ID}\n\
             \x20   - {action: upsert, key: User-ID, value: user_id}\n\
             \x20   - {action: update, key: User-ID, value: user_id}\n\
             \x20   - {action: delete, key: Some-Header}\n\
             \x20   - {key: X-Secret, value: s3cret}\n\
             \x20   - {key: X-Org, from_attribute: org}\n\
             \x20   - {key: X-Cap, value: v, action: Upsert}\n",
        );
        assert!(!format!("{e:?}").contains("s3cret"));
        let setter = e.credential(&auth("headers_setter")).unwrap();
        assert!(setter.credential().is_none());
        let mut headers = http::HeaderMap::new();
        headers.insert("some-header", http::HeaderValue::from_static("x"));
        setter.apply(&mut headers).await.unwrap();
        assert_eq!(headers["x-scope-orgid"], "Org-ID");
        assert_eq!(headers["user-id"], "user_id");
        assert_eq!(headers["x-secret"], "s3cret");
        assert_eq!(headers["x-org"], "");
        assert!(headers.get("some-header").is_none());
        assert_eq!(headers["x-cap"], "v");
        assert_eq!(headers.len(), 5);
        let warnings = e.warnings();
        assert_eq!(warnings.len(), 5, "{warnings:?}");
        // An action none of the four: upsert, with a warning, as the Collector.
        assert!(warnings[4].contains("headers[6]: action \"Upsert\" is none of"));
        // A rule without an action and from the context is warned of for both.
        assert!(warnings[2].contains("headers[5]: no action"));
        assert!(
            warnings[3].contains("headers[5]: from_attribute")
                && warnings[3].contains("an empty value")
        );
        assert!(
            warnings[0].contains("headers[0]: from_context")
                && warnings[0].contains("default_value")
        );
        assert!(warnings[1].contains("headers[4]: no action; upsert"));
        assert!(!e.sends_credentials(&auth("headers_setter")));
    }

    /// Scenario: sigv4auth blocks: keys in the variables with an `assume_role` on top; a
    /// web identity without its token file; the variables shown in `Debug`.
    /// Guarantees: the role is assumed at the region's STS with the variables' keys; the
    /// incomplete block is refused naming what it needs; no secret in `Debug`.
    #[test]
    fn sigv4auth_finds_its_credentials_as_the_sdks_chain_does() {
        use tailgate_core::aws::Source;
        let mut e = extensions(
            "sigv4auth:\n  region: eu-west-1\n  assume_role: {arn: 'arn:aws:iam::1:role/r', session_name: gw}\n\
             sigv4auth/web:\n  assume_role_with_web_identity: {arn: 'arn:aws:iam::1:role/r'}\n",
        );
        e.cloud_env = CloudEnv::from_vars(
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "s3cret"),
            ],
            None,
        );
        assert!(!format!("{e:?}").contains("s3cret"));
        let signed = e.credential(&auth("sigv4auth")).unwrap();
        let signer = signed.signer().unwrap();
        let Source::AssumeRole {
            base,
            session_name,
            sts,
            region,
            ..
        } = signer.credentials.source()
        else {
            panic!("{:?}", signer.credentials.source())
        };
        assert_eq!(session_name, "gw");
        assert_eq!(sts.to_string(), "https://sts.eu-west-1.amazonaws.com/");
        assert_eq!(region, "eu-west-1");
        assert!(
            matches!(base.source(), Source::Fixed { credentials, .. } if credentials.access_key_id == "AKIDENV")
        );
        let err = e.credential(&auth("sigv4auth/web")).unwrap_err();
        assert!(
            err.to_string().contains("needs arn and token_file"),
            "{err}"
        );
        assert_eq!(
            e.notes(),
            ["extensions.sigv4auth: AWS credentials from arn:aws:iam::1:role/r assumed with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"]
        );
    }

    /// Scenario: googleclientauth blocks with the Collector's mistakes (a token type it does
    /// not have, an ID token without audience, a header it does not take), and a good one
    /// over a service account's key file named by `GOOGLE_APPLICATION_CREDENTIALS`.
    /// Guarantees: the Collector's words for each mistake; the good one sends its token in
    /// `proxy-authorization` when asked; its note names the file (gateway/tests/google.rs
    /// shows the headers on the wire).
    #[test]
    fn googleclientauth_is_checked_as_the_collector_checks_it() {
        let dir = std::env::temp_dir().join(format!("tailgate-gcp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("key.json");
        std::fs::write(
            &file,
            format!(
                r#"{{"type":"service_account","project_id":"from-file","private_key":"{}","client_email":"gw@from-file.iam.gserviceaccount.com","quota_project_id":"billing"}}"#,
                include_str!("../../../core/tests/fixtures/gcp-test-key.pem").replace('\n', "\\n")
            ),
        )
        .unwrap();
        let mut e = extensions(
            "googleclientauth/type: {token_type: jwt}\n\
             googleclientauth/id: {token_type: id_token}\n\
             googleclientauth/header: {token_header: x-api-key}\n\
             googleclientauth/iap: {token_header: proxy-authorization, project: mine}\n",
        );
        e.cloud_env = CloudEnv::from_vars(
            &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
            None,
        );
        let err = |name: &str| e.credential(&auth(name)).unwrap_err().to_string();
        assert_eq!(err("googleclientauth/type"), "invalid token_type");
        assert!(err("googleclientauth/id").contains("audience must be specified"));
        assert!(err("googleclientauth/header").contains("invalid token_header"));
        let iap = e.credential(&auth("googleclientauth/iap")).unwrap();
        assert_eq!(iap.credential().unwrap().header(), "proxy-authorization");
        let notes = e.notes();
        assert!(
            notes.iter().any(
                |n| n.contains("googleclientauth/iap: Google credentials from")
                    && n.contains("key.json")
            ),
            "{notes:?}"
        );
        // The Collector's four default scopes; a string of scopes split at commas.
        let scopes = |yaml: &str| match &extensions(yaml).extensions[0].1 {
            Extension::Google(g) => g.scopes.clone(),
            other => panic!("{other:?}"),
        };
        let defaults = scopes("googleclientauth: {}\n");
        assert_eq!(defaults.len(), 4);
        assert!(defaults.contains(&"https://www.googleapis.com/auth/trace.append".to_owned()));
        assert_eq!(scopes("googleclientauth: {scopes: 'a,b'}\n"), ["a", "b"]);
        // So are oauth2client's scopes and bearertokenauth's tokens (the first is sent).
        match &extensions("oauth2client: {client_id: c, client_secret: s, token_url: 'https://t.test', scopes: 'x,y'}\n").extensions[0].1 {
            Extension::OAuth2(o) => assert_eq!(o.scopes, ["x", "y"]),
            other => panic!("{other:?}"),
        }
        let tokens = extensions("bearertokenauth: {tokens: 'first,second'}\n");
        assert_eq!(
            tokens
                .credential(&auth("bearertokenauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Bearer first"
        );
        // No project anywhere (the metadata server, no file): refused with the Collector's
        // words; GOOGLE_CLOUD_PROJECT gives one.
        let mut p = extensions("googleclientauth: {}\n");
        p.cloud_env = CloudEnv::from_vars(&[], None);
        let err = p
            .credential(&auth("googleclientauth"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no project set in config or found with application default credentials"),
            "{err}"
        );
        p.cloud_env = CloudEnv::from_vars(&[("GOOGLE_CLOUD_PROJECT", "from-env")], None);
        assert!(p.credential(&auth("googleclientauth")).is_ok());
        // An ID token from a user's refresh token: refused at load, as the Collector fails.
        let user = dir.join("user.json");
        std::fs::write(
            &user,
            r#"{"type":"authorized_user","client_id":"c","client_secret":"s","refresh_token":"r"}"#,
        )
        .unwrap();
        let mut u = extensions(
            "googleclientauth: {token_type: id_token, audience: 'https://a', project: p}\n",
        );
        u.cloud_env = CloudEnv::from_vars(
            &[("GOOGLE_APPLICATION_CREDENTIALS", user.to_str().unwrap())],
            None,
        );
        let err = u
            .credential(&auth("googleclientauth"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("id_token needs a service account"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: references and extensions that cannot work. Guarantees: each refused with
    /// its own variant, naming what to do.
    #[test]
    fn unusable_authenticators_are_refused_by_kind() {
        let e = extensions(
            "bearertokenauth: {}\nbasicauth/server:\n  htpasswd: {file: .htpasswd}\n\
             basicauth/aws:\n  client_auth: {aws_secrets_manager: {secret_arn: x}}\n\
             basicauth/unset:\n  client_auth: {username: '', password: p}\n\
             basicauth/nothing: {}\n\
             basicauth/both:\n  client_auth: {username: u, password: p}\n  htpasswd: {inline: 'u:p'}\n\
             basicauth/nopassword:\n  client_auth: {username: u}\n",
        );
        let err = |name: &str| e.credential(&auth(name)).unwrap_err();
        assert!(matches!(err("bearertokenauth"), AuthError::NoToken(_)));
        assert!(matches!(
            err("basicauth/nothing"),
            AuthError::NoCredentialSource(_)
        ));
        assert!(matches!(err("basicauth/both"), AuthError::BothSides(_)));
        assert!(matches!(
            err("basicauth/nopassword"),
            AuthError::Missing {
                key: "password",
                ..
            }
        ));
        assert!(matches!(
            err("basicauth/server"),
            AuthError::NoClientAuth(_)
        ));
        assert!(matches!(
            err("basicauth/aws"),
            AuthError::AwsSecretsManager(_)
        ));
        assert!(matches!(
            err("basicauth/unset"),
            AuthError::Credential {
                source: CredentialError::Empty {
                    what: "username",
                    ..
                },
                ..
            }
        ));
        let unknown = err("oauth2client");
        assert!(matches!(unknown, AuthError::Unknown { .. }));
        assert!(unknown
            .to_string()
            .contains("defined: bearertokenauth, basicauth/server"));
        let none = ExtensionsConfig::default()
            .credential(&auth("basicauth"))
            .unwrap_err();
        assert!(none.to_string().contains("no extensions: block"), "{none}");
    }

    /// Scenario: the Collector's service extensions (`health_check`, `pprof`, `zpages`,
    /// with and without a name) copied with a Collector config beside an authenticator
    /// (found by a user trial: each was refused in turn, three runs to copy one block).
    /// Guarantees: read and ignored, one warning each saying what serves its purpose; the
    /// authenticator is read as usual; one listed twice is still refused.
    #[test]
    fn service_extensions_are_ignored_with_a_warning() {
        let e = extensions(
            "health_check: {endpoint: 0.0.0.0:13133}\npprof:\nzpages/x: {endpoint: localhost:55679}\nbearertokenauth: {token: t}\n",
        );
        assert_eq!(e.extensions.len(), 1);
        let w = e.warnings();
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(
            w[0].starts_with("extensions.health_check: ignored; the gateway's admin: address"),
            "{w:?}"
        );
        assert!(w[1].starts_with("extensions.pprof: ignored"), "{w:?}");
        assert!(w[2].contains("/metrics"), "{w:?}");
        let twice =
            serde_yaml_ng::from_str::<ExtensionsConfig>("pprof: {}\npprof/a: {}\npprof/a: {}\n")
                .unwrap_err()
                .to_string();
        assert!(
            twice.contains("pprof/a is listed twice") || twice.contains("duplicate"),
            "{twice}"
        );
    }

    /// Scenario: extension types Tailgate does not apply, copied with the rest.
    /// Guarantees: refused at parse, saying what to do.
    #[test]
    fn other_extension_types_are_refused_saying_why() {
        for (yaml, says) in [
            ("azureauth: {}\n", "bearertokenauth with filename"),
            (
                "googleclientauth: {project: a, impersonate: b}\n",
                "unknown field `impersonate`",
            ),
            (
                "oauth2client: {client_id: a, audience: b}\n",
                "unknown field `audience`",
            ),
            (
                "oauth2client: {client_id: a, client_secret: [s3cret]}\n",
                "expected a string",
            ),
            (
                "sigv4auth: {region: eu-west-1, assume_role: {arn: a, role: b}}\n",
                "unknown field `role`",
            ),
            (
                "headers_setter: {headers: [{key: k, value: [s3cret]}]}\n",
                "expected a string",
            ),
            (
                "memory_ballast: {}\n",
                "remove it; fixed credentials go in an exporter's headers",
            ),
            (
                "file_storage: {directory: /var/lib/otelcol}\n",
                "queues kept spans in memory",
            ),
            (
                "bearertokenauth: {token: a, tokn: b}\n",
                "unknown field `tokn`",
            ),
            // A type error never quotes a secret.
            ("bearertokenauth: {token: [s3cret]}\n", "expected a string"),
            (
                "basicauth: {client_auth: {password: {s3cret: 1}}}\n",
                "expected a string",
            ),
        ] {
            let err = serde_yaml_ng::from_str::<ExtensionsConfig>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{yaml}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
        // `tokens` written as one string (an `${env:…}`) is a list of one, not an error
        // quoting it.
        for (yaml, says) in [
            ("bearertokenauth: {tokens: 1.5}\n", "quote the token"),
            ("bearertokenauth: {tokens: true}\n", "quote the token"),
        ] {
            let err = serde_yaml_ng::from_str::<ExtensionsConfig>(yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says) && !err.contains("1.5"), "{err}");
        }
        let digits = extensions("bearertokenauth: {tokens: 123456}\n");
        assert_eq!(
            digits
                .credential(&auth("bearertokenauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Bearer 123456"
        );
        let one = extensions("bearertokenauth: {tokens: s3cret}\n");
        assert_eq!(
            one.credential(&auth("bearertokenauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Bearer s3cret"
        );
    }

    /// Scenario: a bearertokenauth with both a file and an inline token. Guarantees: the
    /// file is sent and a warning says so.
    #[test]
    fn a_file_wins_over_an_inline_token_with_a_warning() {
        let dir = std::env::temp_dir().join(format!("tailgate-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let e = extensions(&format!(
            "bearertokenauth:\n  token: inline\n  filename: {}\n",
            path.display()
        ));
        assert_eq!(
            e.credential(&auth("bearertokenauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Bearer from-file"
        );
        assert_eq!(e.warnings().len(), 1);
        assert!(
            e.warnings()[0].contains("the file's token is sent"),
            "{:?}",
            e.warnings()
        );
        // tokens over filename, with its own warning; token with tokens refused.
        let e = extensions(&format!(
            "bearertokenauth:\n  tokens: [first, second]\n  filename: {}\n\
             bearertokenauth/both: {{token: a, tokens: [b]}}\n",
            path.display()
        ));
        assert_eq!(
            e.credential(&auth("bearertokenauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Bearer first"
        );
        assert!(
            e.warnings()[0].contains("the first of tokens"),
            "{:?}",
            e.warnings()
        );
        assert!(matches!(
            e.credential(&auth("bearertokenauth/both")),
            Err(AuthError::TokenAndTokens(_))
        ));
        assert!(
            matches!(e.validate(), Err((key, AuthError::TokenAndTokens(_))) if key == "extensions.bearertokenauth/both")
        );
        // basicauth's `_file` keys over the inline ones, with a warning.
        std::fs::write(dir.join("user"), "from-file\n").unwrap();
        let e = extensions(&format!(
            "basicauth:\n  client_auth: {{username: inline, username_file: {}, password: p}}\n",
            dir.join("user").display()
        ));
        assert_eq!(
            e.credential(&auth("basicauth"))
                .unwrap()
                .credential()
                .unwrap()
                .last_value(),
            "Basic ZnJvbS1maWxlOnA="
        );
        assert!(
            e.warnings()[0].contains("both username and username_file"),
            "{:?}",
            e.warnings()
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: `sigv4auth` blocks assuming a role (with a web identity, and with the
    /// chain's keys) under each way of giving STS's region: `sts_region`, `region`,
    /// `AWS_REGION`, `AWS_DEFAULT_REGION`, none.
    /// Guarantees: STS is the region's endpoint, taken in that order; with none, the
    /// global endpoint, an assumed role's request then signed for us-east-1.
    #[test]
    fn sts_is_the_first_given_regions() {
        use tailgate_core::aws::Source;
        let sts = |block: &str, vars: &[(&str, &str)]| {
            let mut e = extensions(&format!("sigv4auth:\n{block}"));
            e.cloud_env = CloudEnv::from_vars(vars, None);
            let Some((key, Extension::SigV4(s))) = e.extensions.first() else {
                panic!("{e:?}")
            };
            match e.sigv4(key, s).unwrap().credentials.source() {
                Source::WebIdentity { sts, .. } => (sts.to_string(), String::new()),
                Source::AssumeRole { sts, region, .. } => (sts.to_string(), region.clone()),
                other => panic!("{other:?}"),
            }
        };
        let web =
            "  assume_role_with_web_identity: {arn: 'arn:aws:iam::1:role/r', token_file: /t}\n";
        let keys = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ];
        let at = |r: &str| format!("https://sts.{r}.amazonaws.com/");
        let web_sts = |extra: &str, vars: &[(&str, &str)]| sts(&format!("{web}{extra}"), vars).0;
        assert_eq!(
            web_sts("  region: eu-west-1\n", &[("AWS_REGION", "us-east-2")]),
            at("eu-west-1")
        );
        assert_eq!(
            sts(
                "  region: eu-west-1\n  assume_role_with_web_identity: {arn: 'arn:aws:iam::1:role/r', token_file: /t, sts_region: ap-south-1}\n",
                &[]
            )
            .0,
            at("ap-south-1")
        );
        assert_eq!(
            web_sts(
                "",
                &[("AWS_REGION", "us-east-2"), ("AWS_DEFAULT_REGION", "x")]
            ),
            at("us-east-2")
        );
        assert_eq!(
            web_sts("", &[("AWS_DEFAULT_REGION", "ca-central-1")]),
            at("ca-central-1")
        );
        assert_eq!(web_sts("", &[]), "https://sts.amazonaws.com/");
        let role = "  assume_role: {arn: 'arn:aws:iam::1:role/w'}\n";
        assert_eq!(
            sts(&format!("{role}  region: eu-west-1\n"), &keys),
            (at("eu-west-1"), "eu-west-1".to_owned())
        );
        assert_eq!(
            sts(
                "  region: eu-west-1\n  assume_role: {arn: 'arn:aws:iam::1:role/w', sts_region: eu-north-1}\n",
                &keys
            ),
            (at("eu-north-1"), "eu-north-1".to_owned())
        );
        assert_eq!(
            sts(role, &keys),
            (
                "https://sts.amazonaws.com/".to_owned(),
                "us-east-1".to_owned()
            )
        );
    }
}
