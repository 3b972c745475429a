//! TLS for every hop, with rustls (no OpenSSL), configured as the Collector's `configtls`
//! is, with the same key names.
//!
//! * [`ServerTlsConfig`] (`receive.tls`): `cert_file`/`key_file` (or `cert_pem`/`key_pem`),
//!   `client_ca_file` for mutual TLS, `min_version`/`max_version`, `reload_interval`.
//!   [`TlsServer`] re-reads the files every `reload_interval` (default 10 s) when they
//!   changed, so a rotated Secret (cert-manager) takes effect for new connections without
//!   a restart; open connections keep theirs. A half-written file keeps the old
//!   certificate and logs a warning.
//! * [`ClientTlsConfig`] (exporters, the router's forwarder, gateway peers): `ca_file`
//!   (else the system's roots), `cert_file`/`key_file` for mutual TLS, `insecure`,
//!   `insecure_skip_verify`, `server_name_override`, `reload_interval`. [`ClientTls`] is
//!   the built client side; its certificate and its `ca_file` are re-read as the server's
//!   files are.
//!
//! Layer: on `config` only; `serve` (accepting) and `forward` (connecting) use it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use arc_swap::ArcSwap;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client, ResponseFuture};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion};
use serde::Deserialize;

use crate::proxy::{Proxy, ProxyConnector};

/// How often certificate files are checked for changes when `reload_interval` is not set.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file cannot be read.
    #[error("cannot read {key} {}: {error}", path.display())]
    Read {
        /// The setting, as `cert_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// A PEM block holds no certificate or key, or does not parse.
    #[error("{key}: {problem}")]
    Pem {
        /// The setting.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// Settings that do not fit together.
    #[error("{0}")]
    Settings(String),
    /// One setting that cannot be used, and why.
    #[error("{key}: {problem}")]
    Setting {
        /// The setting, as `server_name_override`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// `min_version` or `max_version` is not a TLS version rustls speaks.
    #[error("{key}: {value:?} is not a TLS version; write \"1.2\" or \"1.3\"")]
    Version {
        /// The setting.
        key: &'static str,
        /// The value as written.
        value: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify clients.
    #[error("client_ca_file: {0}")]
    ClientVerifier(#[from] rustls::server::VerifierBuilderError),
}

impl TlsError {
    /// The key of the `tls:` block the error is about (`ca_file`, `min_version`), for a
    /// config error to name it and its line; `None` for the block as a whole.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            TlsError::Read { key, .. }
            | TlsError::Pem { key, .. }
            | TlsError::Setting { key, .. }
            | TlsError::Version { key, .. } => Some(key),
            TlsError::ClientVerifier(_) => Some("client_ca_file"),
            TlsError::Settings(_) | TlsError::Rustls(_) => None,
        }
    }

    /// What is wrong, without the key [`Self::key`] names (the config error names it).
    pub fn detail(&self) -> String {
        match self {
            TlsError::Read { path, error, .. } => {
                format!("cannot read {}: {error}", path.display())
            }
            TlsError::Pem { problem, .. } | TlsError::Setting { problem, .. } => problem.clone(),
            TlsError::Version { value, .. } => {
                format!("{value:?} is not a TLS version; write \"1.2\" or \"1.3\"")
            }
            TlsError::ClientVerifier(e) => e.to_string(),
            TlsError::Settings(_) | TlsError::Rustls(_) => self.to_string(),
        }
    }

    /// rustls's refusal of what `key` holds, in words: its own read as a peer's
    /// (`invalid peer certificate: BadEncoding` for the server's own certificate).
    fn refused(key: &'static str, error: rustls::Error) -> Self {
        use rustls::{CertificateError, Error as E, InconsistentKeys};
        let problem = match error {
            E::InvalidCertificate(CertificateError::BadEncoding) => {
                "not a valid X.509 certificate (its DER encoding does not parse)".into()
            }
            E::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                "the private key does not belong to the certificate (cert_file's first certificate)"
                    .into()
            }
            E::General(message) => message,
            other => other.to_string(),
        };
        TlsError::Setting { key, problem }
    }
}

/// The key a config error names for `error` in the `tls:` block under `parent`
/// (`forward.tls.ca_file`; `forward.tls` for the block as a whole).
pub fn key_in(parent: &str, error: &TlsError) -> String {
    match error.key() {
        Some(key) => format!("{parent}.tls.{key}"),
        None => format!("{parent}.tls"),
    }
}

/// Where PEM text comes from: a file or an inline value.
#[derive(Debug, Clone)]
enum Source {
    File(&'static str, PathBuf),
    Inline(&'static str, String),
}

impl Source {
    fn pick(
        file_key: &'static str,
        file: &Option<PathBuf>,
        pem_key: &'static str,
        pem: &Option<String>,
    ) -> Result<Option<Source>, TlsError> {
        match (file, pem) {
            (Some(_), Some(_)) => Err(TlsError::Setting {
                key: file_key,
                problem: format!("set {file_key} or {pem_key}, not both"),
            }),
            (Some(f), None) => Ok(Some(Source::File(file_key, f.clone()))),
            (None, Some(p)) => Ok(Some(Source::Inline(pem_key, p.clone()))),
            (None, None) => Ok(None),
        }
    }

    fn key(&self) -> &'static str {
        match self {
            Source::File(k, _) | Source::Inline(k, _) => k,
        }
    }

    /// A file not on this machine while the process only checks its config.
    fn absent_for_check(&self) -> bool {
        match self {
            Source::File(key, path) => crate::config::absent_for_check(key, path),
            Source::Inline(..) => false,
        }
    }

    fn read(&self) -> Result<Vec<u8>, TlsError> {
        match self {
            Source::File(key, path) => {
                crate::config::read_regular(path).map_err(|error| TlsError::Read {
                    key,
                    path: path.clone(),
                    error,
                })
            }
            Source::Inline(_, text) => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// A client certificate without its key, or a key without its certificate, named by the
/// one `written`.
fn half_a_client_certificate(written: Option<Source>) -> TlsError {
    let problem = "a client certificate needs both cert_file and key_file; only this one is set";
    match written {
        Some(w) => TlsError::Setting {
            key: w.key(),
            problem: problem.into(),
        },
        None => TlsError::Settings(problem.into()),
    }
}

/// Which of a certificate and its key rustls refused: the certificate when it does not
/// parse, else the key (one that does not match, or of a kind it cannot use).
fn blamed(e: &rustls::Error, cert: &Source, key: &Source) -> &'static str {
    match e {
        rustls::Error::InvalidCertificate(_) => cert.key(),
        _ => key.key(),
    }
}

/// A PEM error in words: the parser's own message prints the marker lines it means as
/// lists of byte values (`missing section end marker: [45, 45, …]`).
fn pem_problem(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { end_marker } => format!(
            "a section has no end line \"-----END {}-----\" (a truncated or half-written file?)",
            String::from_utf8_lossy(end_marker)
        ),
        E::IllegalSectionStart { line } => format!(
            "malformed section start line {:?}",
            String::from_utf8_lossy(line)
        ),
        other => other.to_string(),
    }
}

fn certificates(key: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            key,
            problem: pem_problem(&e),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            key,
            problem: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn private_key(key: &'static str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        key,
        problem: format!("no usable PEM private key: {}", pem_problem(&e)),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The protocol versions between `min` and `max` (`"1.2"`, `"1.3"`; `"1.0"` and `"1.1"`
/// read as 1.2, the oldest rustls speaks). Default: both.
fn versions(
    min: &Option<String>,
    max: &Option<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let parse = |key: &'static str, v: &Option<String>, default: u8| -> Result<u8, TlsError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(default),
            Some(old @ ("1.0" | "1.1")) => {
                // Once per process: configs are rebuilt at every reload check.
                static WARNED: std::sync::atomic::AtomicBool =
                    std::sync::atomic::AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        key,
                        value = old,
                        "TLS versions before 1.2 read as 1.2: rustls speaks 1.2 and 1.3 only."
                    );
                }
                Ok(2)
            }
            Some("1.2") => Ok(2),
            Some("1.3") => Ok(3),
            Some(other) => Err(TlsError::Version {
                key,
                value: other.to_owned(),
            }),
        }
    };
    let (lo, hi) = (parse("min_version", min, 2)?, parse("max_version", max, 3)?);
    if lo > hi {
        return Err(TlsError::Setting {
            key: "min_version",
            problem: "cannot be greater than max_version".into(),
        });
    }
    let mut out = Vec::new();
    if hi >= 3 {
        out.push(&rustls::version::TLS13);
    }
    if lo <= 2 {
        out.push(&rustls::version::TLS12);
    }
    Ok(out)
}

/// Cipher suites Go's `tls.CipherSuites()` names (TLS 1.3's, which Go does not let a
/// config choose, included), as the Collector's `configtls` (v0.161) takes them.
const GO_CIPHER_SUITES: &[&str] = &[
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
];

/// Go's `tls.InsecureCipherSuites()` (RSA key exchange among them since Go 1.22; the
/// Collector builds with a later Go): taken only with `include_insecure_cipher_suites`.
const GO_INSECURE_CIPHER_SUITES: &[&str] = &[
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// The curve names `configtls` takes (v0.161, without FIPS).
const GO_CURVES: &[&str] = &["P256", "P384", "P521", "X25519", "X25519MLKEM768"];

/// Refuses a `cipher_suites` or `curve_preferences` name the Collector refuses (a typo
/// there made the Collector fail at start and Tailgate run on). The names are checked
/// and not applied: rustls offers only AEAD suites and modern groups of its own.
fn go_names(
    cipher_suites: &[String],
    curve_preferences: &[String],
    include_insecure: bool,
) -> Result<(), TlsError> {
    for suite in cipher_suites {
        let insecure = GO_INSECURE_CIPHER_SUITES.contains(&suite.as_str());
        if GO_CIPHER_SUITES.contains(&suite.as_str()) || (insecure && include_insecure) {
            continue;
        }
        return Err(TlsError::Setting {
            key: "cipher_suites",
            problem: if insecure {
                format!(
                    "{suite:?} is insecure; the Collector takes it only with \
                     include_insecure_cipher_suites: true (rustls never offers it)"
                )
            } else {
                format!("{suite:?} is not a TLS cipher suite Go names (as TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
            },
        });
    }
    if let Some(curve) = curve_preferences
        .iter()
        .find(|c| !GO_CURVES.contains(&c.as_str()))
    {
        return Err(TlsError::Setting {
            key: "curve_preferences",
            problem: format!(
                "{curve:?} is not a curve the Collector takes; write one of {}",
                GO_CURVES.join(", ")
            ),
        });
    }
    Ok(())
}

/// Parses a Go duration for `reload_interval`.
fn reload_interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::config::go_duration::option::deserialize(d)
}

/// A path, PEM or name written as `""` is not set, as in the Collector (Go's zero string):
/// `ca_file: ""` (or `${env:CA_FILE}` quoted, with the variable empty) means the system's
/// roots there, not a file named nothing.
fn unset_when_empty<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: From<String>,
{
    let written: Option<String> = Option::deserialize(d)?;
    Ok(written.filter(|s| !s.is_empty()).map(T::from))
}

// === server ===

/// `tls:` of a receiver, as the Collector's `configtls.ServerConfig`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server's certificate chain (PEM).
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub cert_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub cert_pem: Option<String>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub key_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub key_pem: Option<String>,
    /// CAs that sign client certificates: set it and every client must present one (mTLS).
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub client_ca_file: Option<PathBuf>,
    /// Re-read `client_ca_file` when it changes (Tailgate re-reads every file it uses).
    #[serde(default)]
    pub client_ca_file_reload: bool,
    /// Accepted as the Collector does; a server does not use it.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub ca_file: Option<PathBuf>,
    /// Oldest protocol version: `"1.2"` (default) or `"1.3"`.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub min_version: Option<String>,
    /// Newest protocol version: `"1.3"` (default) or `"1.2"`.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub max_version: Option<String>,
    /// How often the files are checked for changes. Default 10s.
    #[serde(default, deserialize_with = "reload_interval")]
    pub reload_interval: Option<Duration>,
    /// Names checked as the Collector checks them, then ignored: rustls offers only its
    /// own modern (AEAD) suites.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub cipher_suites: Vec<String>,
    /// Names checked as the Collector checks them, then ignored, as `cipher_suites`.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub curve_preferences: Vec<String>,
    /// Lets `cipher_suites` name Go's insecure suites, as in the Collector; rustls never
    /// offers them.
    #[serde(default)]
    pub include_insecure_cipher_suites: bool,
}

impl ServerTlsConfig {
    fn sources(&self) -> Result<(Source, Source, Option<Source>), TlsError> {
        let cert = Source::pick("cert_file", &self.cert_file, "cert_pem", &self.cert_pem)?;
        let key = Source::pick("key_file", &self.key_file, "key_pem", &self.key_pem)?;
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (one, other) => {
                let message =
                    "a TLS server needs both a certificate and a key (cert_file and key_file)";
                return Err(match one.or(other) {
                    Some(written) => TlsError::Setting {
                        key: written.key(),
                        problem: format!("{message}; only this one is set"),
                    },
                    None => TlsError::Settings(message.into()),
                });
            }
        };
        let ca = self
            .client_ca_file
            .as_ref()
            .map(|p| Source::File("client_ca_file", p.clone()));
        Ok((cert, key, ca))
    }

    /// Checks the settings and reads the files once, as at start. Under `--check`, a file
    /// not on this machine is named, not read ([`crate::config::absent_for_check`]); the
    /// others are still read and parsed.
    pub fn validate(&self) -> Result<(), TlsError> {
        let (cert, key, ca) = self.sources()?;
        let absent: Vec<bool> = [Some(&cert), Some(&key), ca.as_ref()]
            .into_iter()
            .flatten()
            .map(Source::absent_for_check)
            .collect();
        if !absent.contains(&true) {
            return self.build().map(|_| ());
        }
        if !cert.absent_for_check() && !key.absent_for_check() {
            // Only the client CA is absent: the pair is checked as at start (a key of
            // another certificate passed the check, a review found).
            let mut present = self.clone();
            present.client_ca_file = None;
            return present.build().map(|_| ());
        }
        go_names(
            &self.cipher_suites,
            &self.curve_preferences,
            self.include_insecure_cipher_suites,
        )?;
        versions(&self.min_version, &self.max_version)?;
        if !cert.absent_for_check() {
            certificates(cert.key(), &cert.read()?)?;
        }
        if !key.absent_for_check() {
            private_key(key.key(), &key.read()?)?;
        }
        if let Some(ca) = ca.filter(|ca| !ca.absent_for_check()) {
            certificates(ca.key(), &ca.read()?)?;
        }
        Ok(())
    }

    fn build(&self) -> Result<(rustls::ServerConfig, Vec<Vec<u8>>), TlsError> {
        let (cert, key, ca) = self.sources()?;
        let mut read = vec![cert.read()?, key.read()?];
        go_names(
            &self.cipher_suites,
            &self.curve_preferences,
            self.include_insecure_cipher_suites,
        )?;
        let versions = versions(&self.min_version, &self.max_version)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)?;
        let builder = match &ca {
            Some(ca) => {
                let pem = ca.read()?;
                let mut roots = RootCertStore::empty();
                for c in certificates(ca.key(), &pem)? {
                    roots.add(c).map_err(|e| TlsError::refused(ca.key(), e))?;
                }
                read.push(pem);
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(
                certificates(cert.key(), &read[0])?,
                private_key(key.key(), &read[1])?,
            )
            .map_err(|e| TlsError::refused(blamed(&e, &cert, &key), e))?;
        // gRPC clients (grpc-go among them) require ALPN `h2`.
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((config, read))
    }
}

/// Files re-read at most every interval, and what they held when last loaded.
#[derive(Debug)]
struct Reload {
    interval: Duration,
    next: Instant,
    contents: Vec<Vec<u8>>,
}

impl Reload {
    fn new(interval: Option<Duration>, contents: Vec<Vec<u8>>) -> Mutex<Self> {
        let interval = interval
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_RELOAD_INTERVAL);
        Mutex::new(Reload {
            interval,
            next: Instant::now() + interval,
            contents,
        })
    }

    /// Runs `rebuild` when the interval has passed and the files changed. Never blocks:
    /// when another caller is checking, this one goes on with the current config.
    fn check<T>(
        lock: &Mutex<Self>,
        what: &str,
        rebuild: impl FnOnce() -> Result<(T, Vec<Vec<u8>>), TlsError>,
        install: impl FnOnce(T),
    ) {
        let Ok(mut state) = lock.try_lock() else {
            return;
        };
        let now = Instant::now();
        if now < state.next {
            return;
        }
        state.next = now + state.interval;
        // The files are read on the caller's thread, a runtime worker on the connection
        // path: on the multi-threaded runtime it is handed over first, so that a slow or
        // hung mount holds this one connection, not every task queued on the worker (the
        // lock above keeps other callers from waiting behind it).
        let rebuilt = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(rebuild)
            }
            _ => rebuild(),
        };
        match rebuilt {
            Ok((built, contents)) if contents != state.contents => {
                install(built);
                state.contents = contents;
                tracing::info!("{what}: certificate files changed; new connections use them.");
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "{what}: cannot reload the certificate files; keeping the ones in use.");
            }
        }
    }
}

/// Failed handshakes of every [`TlsServer`] of the process (one per process in the
/// binaries: `receive.tls`), for `*_tls_failed_handshakes_total`.
static FAILED_HANDSHAKES: AtomicU64 = AtomicU64::new(0);

/// Failed or timed-out TLS handshakes on this process's receivers so far.
pub fn failed_handshakes_total() -> u64 {
    FAILED_HANDSHAKES.load(Ordering::Relaxed)
}

/// A receiver's TLS side: the current rustls config, rebuilt when its files change.
#[derive(Debug)]
pub struct TlsServer {
    settings: ServerTlsConfig,
    failed_handshakes: AtomicU64,
    current: ArcSwap<rustls::ServerConfig>,
    reload: Mutex<Reload>,
}

impl TlsServer {
    /// Reads the certificate, key and client CA.
    pub fn load(settings: &ServerTlsConfig) -> Result<Arc<Self>, TlsError> {
        let (config, contents) = settings.build()?;
        if !settings.cipher_suites.is_empty() || !settings.curve_preferences.is_empty() {
            tracing::info!("tls: cipher_suites and curve_preferences are ignored; rustls uses its own modern set.");
        }
        Ok(Arc::new(TlsServer {
            settings: settings.clone(),
            failed_handshakes: AtomicU64::new(0),
            current: ArcSwap::from_pointee(config),
            reload: Reload::new(settings.reload_interval, contents),
        }))
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.settings.client_ca_file.is_some()
    }

    /// The acceptor for a new connection, with the files re-read first if they changed.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        Reload::check(
            &self.reload,
            "receiver TLS",
            || self.settings.build(),
            |config| self.current.store(Arc::new(config)),
        );
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Counts a handshake that failed or timed out (a client without the right
    /// certificate, a plaintext client, a scanner).
    pub fn count_failed_handshake(&self) {
        self.failed_handshakes.fetch_add(1, Ordering::Relaxed);
        FAILED_HANDSHAKES.fetch_add(1, Ordering::Relaxed);
    }

    /// Handshakes that failed or timed out so far.
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::Relaxed)
    }

    /// Re-reads the files now if they changed (for tests and SIGHUP).
    pub fn reload_now(&self) {
        if let Ok(mut state) = self.reload.lock() {
            state.next = Instant::now();
        }
        let _ = self.acceptor();
    }
}

// === client ===

/// The warning for a `tls:` block at `place` (`export.otlp/tempo`, `forward`, `peers`)
/// whose client certificate goes unused ([`ClientTlsConfig::unused_client_certificate`]),
/// if it has one.
pub fn unused_certificate_warning(tls: Option<&ClientTlsConfig>, place: &str) -> Option<String> {
    tls.filter(|t| t.unused_client_certificate()).map(|_| {
        format!("{place}.tls: a client certificate with insecure: true and no CA: as in the Collector, the connection is plaintext and the certificate is not used; remove insecure: true (or write https://) if the other side speaks TLS")
    })
}

/// The warning for a `tls:` block at `place` (`forward`, `peers`: dialled by `ip:port`,
/// so TLS when the block is written and not `insecure: true`, or sets a CA) that does not
/// check the other side's certificate, if it does not. Exporters say it in their own words
/// (their scheme decides).
pub fn unchecked_certificate_warning(
    tls: Option<&ClientTlsConfig>,
    place: &str,
    whom: &str,
) -> Option<String> {
    tls.filter(|t| t.insecure_skip_verify && (!t.insecure || t.has_ca()))
        .map(|_| {
            format!("{place}.tls.insecure_skip_verify: {whom}' certificates are not checked, so spans go to whoever answers; for tests only")
        })
}

/// `tls:` of a client (exporters, the router's forwarder, gateway peers), as the
/// Collector's `configtls.ClientConfig`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// Speak plaintext (for an endpoint without `https://`).
    #[serde(default)]
    pub insecure: bool,
    /// Accept any server certificate. For tests only: it defeats TLS's authentication.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Verify the server's certificate for this name instead of the endpoint's host (the
    /// router and peers dial IPs; their certificates name the Service).
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub server_name_override: Option<String>,
    /// CAs that sign the server's certificate (PEM); default: the system's roots.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub ca_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub ca_pem: Option<String>,
    /// With `ca_file`, trust the system's roots too.
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// The client's certificate chain, for servers that require one (mTLS).
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub cert_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub cert_pem: Option<String>,
    /// The client certificate's key.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub key_file: Option<PathBuf>,
    /// The same, inline.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub key_pem: Option<String>,
    /// Oldest protocol version: `"1.2"` (default) or `"1.3"`.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub min_version: Option<String>,
    /// Newest protocol version: `"1.3"` (default) or `"1.2"`.
    #[serde(default, deserialize_with = "unset_when_empty")]
    pub max_version: Option<String>,
    /// How often the client certificate files and `ca_file` are checked for changes.
    /// Default 10s.
    #[serde(default, deserialize_with = "reload_interval")]
    pub reload_interval: Option<Duration>,
    /// Names checked as the Collector checks them, then ignored: rustls offers only its
    /// own modern (AEAD) suites.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub cipher_suites: Vec<String>,
    /// Names checked as the Collector checks them, then ignored, as `cipher_suites`.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub curve_preferences: Vec<String>,
    /// Lets `cipher_suites` name Go's insecure suites, as in the Collector; rustls never
    /// offers them.
    #[serde(default)]
    pub include_insecure_cipher_suites: bool,
}

impl ClientTlsConfig {
    /// The first setting written that only applies to a TLS connection, if any.
    fn tls_only_setting(&self) -> Option<&'static str> {
        [
            (self.has_files(), "certificates"),
            (self.insecure_skip_verify, "insecure_skip_verify"),
            (self.server_name_override.is_some(), "server_name_override"),
            (self.min_version.is_some(), "min_version"),
            (self.max_version.is_some(), "max_version"),
            (
                self.include_system_ca_certs_pool,
                "include_system_ca_certs_pool",
            ),
            (!self.cipher_suites.is_empty(), "cipher_suites"),
            (!self.curve_preferences.is_empty(), "curve_preferences"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }

    /// Whether a CA is set: the Collector's `insecure` yields to one (configtls'
    /// `LoadTLSConfig`: no TLS when `insecure` and no CA), and to nothing else.
    fn has_ca(&self) -> bool {
        self.ca_file.is_some() || self.ca_pem.is_some()
    }

    /// Whether a client certificate is set with `insecure: true` and no CA: as in the
    /// Collector, the connection is then plaintext and the certificate goes unused (a
    /// user trial: a vendor block with a leftover `insecure: true` lost every export
    /// against a TLS backend), worth a warning where the endpoint has no `https://`.
    pub fn unused_client_certificate(&self) -> bool {
        self.insecure && !self.has_ca() && (self.cert_file.is_some() || self.cert_pem.is_some())
    }

    /// Whether it presents a client certificate: a certificate and its key are set.
    pub fn presents_certificate(&self) -> bool {
        (self.cert_file.is_some() || self.cert_pem.is_some())
            && (self.key_file.is_some() || self.key_pem.is_some())
    }

    /// Whether any CA or client certificate is set.
    fn has_files(&self) -> bool {
        self.ca_file.is_some()
            || self.ca_pem.is_some()
            || self.cert_file.is_some()
            || self.cert_pem.is_some()
    }

    /// Whether a connection to `endpoint` uses TLS, given its scheme and this block
    /// (`None`: no `tls:` block written): `https://` always; `http://` never (a `tls:`
    /// block asking for TLS there is an error); no scheme: when a `tls:` block is written
    /// and not `insecure: true`, or sets a CA.
    pub fn uses_tls(tls: Option<&Self>, endpoint: &str) -> Result<bool, TlsError> {
        let scheme = endpoint
            .split_once("://")
            .map(|(s, _)| s.to_ascii_lowercase());
        match (scheme.as_deref(), tls) {
            (Some("https"), _) => Ok(true),
            // Settings that only mean something over TLS, on a plaintext endpoint: the
            // writer meant TLS, and headers (API keys) would go out in clear.
            (Some("http"), Some(t)) if !t.insecure && t.tls_only_setting().is_some() => {
                Err(TlsError::Settings(format!(
                    "endpoint {endpoint:?} is http:// (plaintext) but tls: sets {}; write \
                     https://, or set insecure: true to send in clear",
                    t.tls_only_setting().unwrap_or_default()
                )))
            }
            (Some("http"), _) => Ok(false),
            (Some(other), _) => Err(TlsError::Settings(format!(
                "endpoint {endpoint:?}: scheme {other:?} is not supported; use http:// or https://"
            ))),
            (None, Some(t)) => Ok(!t.insecure || t.has_ca()),
            (None, None) => Ok(false),
        }
    }

    /// Builds the client side. Under `--check`, files not on this machine are named and
    /// left out ([`crate::config::absent_for_check`]): a certificate and its key both, when
    /// either is absent (the one present is still read and parsed).
    pub fn build(&self) -> Result<ClientTls, TlsError> {
        if !crate::config::checking() {
            return self.build_now();
        }
        let mut present = self.clone();
        let absent = |key: &'static str, file: &Option<PathBuf>| {
            file.as_ref()
                .is_some_and(|f| crate::config::absent_for_check(key, f))
        };
        // Both ca_file and ca_pem is refused whether the file is here or not.
        Source::pick("ca_file", &self.ca_file, "ca_pem", &self.ca_pem)?;
        if absent("ca_file", &self.ca_file) {
            present.ca_file = None;
        }
        let (cert, key) = (
            absent("cert_file", &self.cert_file),
            absent("key_file", &self.key_file),
        );
        if cert || key {
            let cert = Source::pick("cert_file", &self.cert_file, "cert_pem", &self.cert_pem)?;
            let key = Source::pick("key_file", &self.key_file, "key_pem", &self.key_pem)?;
            let (cert, key) = match (cert, key) {
                (Some(cert), Some(key)) => (cert, key),
                (one, other) => return Err(half_a_client_certificate(one.or(other))),
            };
            if !cert.absent_for_check() {
                certificates(cert.key(), &cert.read()?)?;
            }
            if !key.absent_for_check() {
                private_key(key.key(), &key.read()?)?;
            }
            present.cert_file = None;
            present.cert_pem = None;
            present.key_file = None;
            present.key_pem = None;
        }
        present.build_now()
    }

    fn build_now(&self) -> Result<ClientTls, TlsError> {
        go_names(
            &self.cipher_suites,
            &self.curve_preferences,
            self.include_insecure_cipher_suites,
        )?;
        let versions = versions(&self.min_version, &self.max_version)?;
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)?;
        let ca_file = Source::pick("ca_file", &self.ca_file, "ca_pem", &self.ca_pem)?
            .filter(|s| matches!(s, Source::File(..)));
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyServer(provider())))
        } else if let Some(ca) = ca_file {
            // A CA file is re-read as certificates are (a rotated CA bundle); the system's
            // roots, when included, are read once.
            let mut system = RootCertStore::empty();
            if self.include_system_ca_certs_pool {
                add_system_roots(&mut system);
            }
            let (verifier, contents) = ReloadingRoots::verifier(&ca, &system)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ReloadingRoots {
                    ca,
                    system,
                    current: ArcSwap::new(verifier),
                    reload: Reload::new(self.reload_interval, contents),
                }))
        } else {
            builder.with_root_certificates(self.roots()?)
        };
        let cert = Source::pick("cert_file", &self.cert_file, "cert_pem", &self.cert_pem)?;
        let key = Source::pick("key_file", &self.key_file, "key_pem", &self.key_pem)?;
        let config = match (cert, key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let resolver = ClientCert::load(cert, key, self.reload_interval)?;
                builder.with_client_cert_resolver(Arc::new(resolver))
            }
            (one, other) => return Err(half_a_client_certificate(one.or(other))),
        };
        // ALPN is set by the connector (h2 for gRPC, h2 and http/1.1 for OTLP/HTTP).
        let server_name = match &self.server_name_override {
            Some(name) => {
                Some(
                    ServerName::try_from(name.clone()).map_err(|e| TlsError::Setting {
                        key: "server_name_override",
                        problem: format!("{name:?}: {e}"),
                    })?,
                )
            }
            None => None,
        };
        Ok(ClientTls {
            config: Arc::new(config),
            server_name,
        })
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        let ca = Source::pick("ca_file", &self.ca_file, "ca_pem", &self.ca_pem)?;
        if let Some(ca) = &ca {
            add_ca(&mut roots, ca)?;
        }
        if ca.is_none() || self.include_system_ca_certs_pool {
            add_system_roots(&mut roots);
        }
        Ok(roots)
    }
}

/// Adds the certificates `ca` holds to `roots`; returns the text they were read from.
fn add_ca(roots: &mut RootCertStore, ca: &Source) -> Result<Vec<u8>, TlsError> {
    let text = ca.read()?;
    for c in certificates(ca.key(), &text)? {
        roots.add(c).map_err(|e| TlsError::refused(ca.key(), e))?;
    }
    Ok(text)
}

/// Servers' certificates verified against `ca_file`, re-read every `reload_interval`
/// when it changed (a CA rotated by cert-manager or a mounted Secret): new connections
/// trust the new bundle without a restart; a half-written file keeps the old one.
#[derive(Debug)]
struct ReloadingRoots {
    /// The `ca_file`.
    ca: Source,
    /// The system's roots (`include_system_ca_certs_pool`), else none: read once.
    system: RootCertStore,
    current: ArcSwap<WebPkiServerVerifier>,
    reload: Mutex<Reload>,
}

impl ReloadingRoots {
    /// A verifier trusting `ca`'s certificates and `system`, and what `ca` held.
    fn verifier(
        ca: &Source,
        system: &RootCertStore,
    ) -> Result<(Arc<WebPkiServerVerifier>, Vec<Vec<u8>>), TlsError> {
        let mut roots = system.clone();
        let text = add_ca(&mut roots, ca)?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| TlsError::Setting {
                key: ca.key(),
                problem: e.to_string(),
            })?;
        Ok((verifier, vec![text]))
    }
}

impl ServerCertVerifier for ReloadingRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Reload::check(
            &self.reload,
            "client TLS ca_file",
            || Self::verifier(&self.ca, &self.system),
            |v| self.current.store(v),
        );
        self.current.load().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current
            .load()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current.load().supported_verify_schemes()
    }
}

/// The client side for `endpoint` with the `tls:` block `tls`: `None` for plaintext, else
/// the block's settings (or the system's roots when there is no block).
pub fn client_side(
    tls: Option<&ClientTlsConfig>,
    endpoint: &str,
) -> Result<Option<ClientTls>, TlsError> {
    if !ClientTlsConfig::uses_tls(tls, endpoint)? {
        return Ok(None);
    }
    tls.cloned().unwrap_or_default().build().map(Some)
}

/// The system's roots; the Mozilla set compiled in when the system has none (a
/// distroless image).
fn add_system_roots(roots: &mut RootCertStore) {
    let found = rustls_native_certs::load_native_certs();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
}

/// A built client side: what a connector needs.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// The rustls config.
    pub config: Arc<rustls::ClientConfig>,
    /// The name to verify instead of the endpoint's host.
    pub server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// A config that trusts the system's roots, for `https://` endpoints without a `tls:`
    /// block.
    pub fn system() -> Result<Self, TlsError> {
        ClientTlsConfig::default().build()
    }
}

/// The client certificate, re-read as the server's is.
#[derive(Debug)]
struct ClientCert {
    cert: Source,
    key: Source,
    current: ArcSwap<CertifiedKey>,
    reload: Mutex<Reload>,
}

impl ClientCert {
    fn load(cert: Source, key: Source, interval: Option<Duration>) -> Result<Self, TlsError> {
        let (certified, contents) = Self::build(&cert, &key)?;
        Ok(ClientCert {
            cert,
            key,
            current: ArcSwap::from_pointee(certified),
            reload: Reload::new(interval, contents),
        })
    }

    fn build(cert: &Source, key: &Source) -> Result<(CertifiedKey, Vec<Vec<u8>>), TlsError> {
        let (c, k) = (cert.read()?, key.read()?);
        let certified = CertifiedKey::from_der(
            certificates(cert.key(), &c)?,
            private_key(key.key(), &k)?,
            &provider(),
        )
        .map_err(|e| TlsError::refused(blamed(&e, cert, key), e))?;
        Ok((certified, vec![c, k]))
    }
}

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Reload::check(
            &self.reload,
            "client TLS",
            || Self::build(&self.cert, &self.key),
            |k| self.current.store(Arc::new(k)),
        );
        Some(self.current.load_full())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `insecure_skip_verify`: any certificate is accepted; signatures are still checked so
/// the handshake itself is sound.
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a [`Transport`] makes a connection: TCP straight to the request's host, or through
/// a proxy's tunnel ([`ProxyConnector`]); to the request's host and port, or to a fixed
/// `address` whatever the request says (gRPC's `authority`: the requests name one host,
/// the connections go to the endpoint).
#[derive(Debug, Clone)]
pub struct Dialer {
    route: Route,
    address: Option<http::Uri>,
    /// Refuse `https://` URLs: the transport has no TLS layer above.
    plain_only: bool,
    /// Counts the connections made, when set ([`Dialer::counting`]).
    made: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

#[derive(Debug, Clone)]
enum Route {
    Direct(HttpConnector),
    Proxied(ProxyConnector),
}

impl Dialer {
    /// TCP connections (TCP_NODELAY) made within `connect_timeout`, through `proxy` when
    /// there is one (the timeout then covers the tunnel's exchange too).
    pub fn new(connect_timeout: Duration, proxy: Option<&Proxy>) -> Self {
        let route = match proxy {
            Some(proxy) => Route::Proxied(ProxyConnector::new(proxy, connect_timeout)),
            None => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(connect_timeout));
                // `https://` URLs too: TLS is the layer above.
                connector.enforce_http(false);
                Route::Direct(connector)
            }
        };
        Dialer {
            route,
            address: None,
            plain_only: false,
            made: None,
        }
    }

    /// Connects to `address` (`scheme://host:port`) for every request.
    pub fn to_address(mut self, address: http::Uri) -> Self {
        self.address = Some(address);
        self
    }

    /// Adds one to `made` for every connection made (before any TLS handshake).
    pub fn counting(mut self, made: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.made = Some(made);
        self
    }
}

/// An error of either route.
type DialError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<http::Uri> for Dialer {
    type Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>;
    type Error = DialError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, DialError>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), DialError>> {
        // Both routes are always ready (`HttpConnector`'s readiness is unconditional).
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: http::Uri) -> Self::Future {
        if self.plain_only && dst.scheme_str() == Some("https") {
            let refused = format!("{dst}: an https:// URL on a client without TLS");
            return Box::pin(async move { Err(DialError::from(refused)) });
        }
        let dst = self.address.clone().unwrap_or(dst);
        let made = self.made.clone();
        let counted = move |stream| {
            if let Some(made) = &made {
                made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            stream
        };
        match &mut self.route {
            Route::Direct(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map(counted).map_err(DialError::from) })
            }
            Route::Proxied(c) => {
                let connecting = c.call(dst);
                Box::pin(async move { connecting.await.map(counted).map_err(DialError::from) })
            }
        }
    }
}

/// An HTTP client over plain TCP, or over TLS for `https://` URLs (ALPN `h2` and
/// `http/1.1`, verifying the URL's host or [`ClientTls::server_name`]), its connections
/// made by a [`Dialer`].
#[derive(Debug)]
pub enum Transport<B> {
    /// Plaintext.
    Plain(Client<Dialer, B>),
    /// TLS.
    Tls(Client<HttpsConnector<Dialer>, B>),
}

impl<B> Clone for Transport<B> {
    fn clone(&self) -> Self {
        match self {
            Transport::Plain(c) => Transport::Plain(c.clone()),
            Transport::Tls(c) => Transport::Tls(c.clone()),
        }
    }
}

impl<B> Transport<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A client built by `builder` on `dialer`'s connections; over TLS it offers ALPN
    /// `h2` only when `http2_only` (gRPC), else `h2` and `http/1.1`.
    pub fn new(
        builder: &Builder,
        tls: Option<&ClientTls>,
        dialer: Dialer,
        http2_only: bool,
    ) -> Self {
        match tls {
            None => Transport::Plain(builder.build(Dialer {
                plain_only: true,
                ..dialer
            })),
            Some(tls) => {
                Transport::Tls(builder.build(Self::https(tls, http2_only).wrap_connector(dialer)))
            }
        }
    }

    /// The TLS layer of a connector, as [`Self::new`] describes.
    fn https(
        tls: &ClientTls,
        http2_only: bool,
    ) -> hyper_rustls::HttpsConnectorBuilder<hyper_rustls::builderstates::WantsProtocols3> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.config).clone())
            .https_or_http();
        let https = match tls.server_name.clone() {
            Some(name) => {
                https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
            }
            None => https,
        };
        if http2_only {
            https.enable_http2()
        } else {
            https.enable_all_versions()
        }
    }

    /// Sends `request`.
    pub fn request(&self, request: http::Request<B>) -> ResponseFuture {
        match self {
            Transport::Plain(c) => c.request(request),
            Transport::Tls(c) => c.request(request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: a certificate file cut off before its end line, and a key file likewise.
    /// Guarantees: the error names the missing line in words, not as byte values (a docs
    /// audit met `missing section end marker: [45, 45, …]`), and which key it is about.
    #[test]
    fn truncated_pem_files_are_named_in_words() {
        let cut = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let err = certificates("cert_file", cut).unwrap_err().to_string();
        assert!(
            err.contains("cert_file") && err.contains("-----END CERTIFICATE-----"),
            "{err}"
        );
        assert!(!err.contains("[45,"), "{err}");
        let err = private_key("key_file", b"-----BEGIN PRIVATE KEY-----\nMIIB\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("-----END PRIVATE KEY-----"), "{err}");
    }

    /// Scenario: the version keys as the Collector's configs write them. Guarantees: 1.0
    /// and 1.1 read as 1.2 (the oldest rustls speaks), the default is 1.2 to 1.3, and a
    /// range that is empty or a version that is unknown is refused by kind.
    #[test]
    fn versions_read_as_documented() {
        let v = |min: Option<&str>, max: Option<&str>| {
            versions(&min.map(Into::into), &max.map(Into::into))
                .map(|v| v.iter().map(|p| p.version).collect::<Vec<_>>())
        };
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(v(None, None).unwrap(), vec![TLSv1_3, TLSv1_2]);
        assert_eq!(v(Some("1.0"), None).unwrap(), vec![TLSv1_3, TLSv1_2]);
        assert_eq!(v(Some("1.3"), None).unwrap(), vec![TLSv1_3]);
        assert_eq!(v(None, Some("1.2")).unwrap(), vec![TLSv1_2]);
        assert!(matches!(
            v(Some("1.3"), Some("1.2")),
            Err(TlsError::Setting {
                key: "min_version",
                ..
            })
        ));
        assert!(matches!(
            v(Some("2.0"), None),
            Err(TlsError::Version {
                key: "min_version",
                ..
            })
        ));
    }

    /// Scenario: cipher suite and curve names the Collector refuses: a typo, an insecure
    /// suite without `include_insecure_cipher_suites`, a curve Go does not name.
    /// Guarantees: refused naming the key, as the Collector fails at start; the insecure
    /// suite is taken with the flag, and the names Go gives are taken.
    #[test]
    fn cipher_suite_and_curve_names_are_checked_as_the_collector_checks_them() {
        let client = |yaml: &str| {
            serde_yaml_ng::from_str::<ClientTlsConfig>(yaml)
                .unwrap()
                .build()
                .map(|_| ())
        };
        for (yaml, key) in [
            ("{cipher_suites: [TLS_AES_128_GCM_SHA265]}", "cipher_suites"),
            (
                "{cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]}",
                "cipher_suites",
            ),
            // RSA key exchange: insecure in Go since 1.22.
            (
                "{cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256]}",
                "cipher_suites",
            ),
            ("{curve_preferences: [X448]}", "curve_preferences"),
        ] {
            match client(yaml) {
                Err(e @ TlsError::Setting { .. }) => assert_eq!(e.key(), Some(key), "{yaml}"),
                other => panic!("{yaml}: {other:?}"),
            }
        }
        client("{cipher_suites: [TLS_RSA_WITH_RC4_128_SHA], include_insecure_cipher_suites: true}")
            .unwrap();
        client(
            "{cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_CHACHA20_POLY1305_SHA256], \
             curve_preferences: [X25519MLKEM768, P521]}",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::test_util::TestPki::new(dir.path(), "ca").unwrap();
        let (cert, key) = pki.issue("server", &["localhost"]).unwrap();
        let server = ServerTlsConfig {
            cert_file: Some(cert),
            key_file: Some(key),
            curve_preferences: vec!["p256".into()],
            ..Default::default()
        };
        assert!(matches!(
            TlsServer::load(&server),
            Err(TlsError::Setting {
                key: "curve_preferences",
                ..
            })
        ));
    }

    /// Scenario: Collector configs that set cipher suites and curves, and no reload
    /// interval. Guarantees: they are accepted (and ignored), as lists or comma-separated
    /// strings; the files are checked every 10 s by default, and `0` reads as the default too.
    #[test]
    fn collector_only_keys_are_accepted_and_reload_defaults_to_ten_seconds() {
        let c: ClientTlsConfig = serde_yaml_ng::from_str(
            "{insecure: true, cipher_suites: [TLS_AES_128_GCM_SHA256], curve_preferences: [X25519]}",
        )
        .unwrap();
        assert!(c.build().is_ok());
        // A string (Helm's `${env:…}`) is split at commas, on both sides.
        let c: ClientTlsConfig = serde_yaml_ng::from_str(
            "{insecure: true, cipher_suites: 'TLS_AES_128_GCM_SHA256,TLS_AES_256_GCM_SHA384'}",
        )
        .unwrap();
        assert_eq!(c.cipher_suites.len(), 2);
        let s: ServerTlsConfig =
            serde_yaml_ng::from_str("{curve_preferences: 'X25519,P256'}").unwrap();
        assert_eq!(s.curve_preferences, ["X25519", "P256"]);
        let r = Reload::new(None, Vec::new());
        assert_eq!(
            r.lock().map(|r| r.interval).ok(),
            Some(DEFAULT_RELOAD_INTERVAL)
        );
        let r = Reload::new(Some(Duration::ZERO), Vec::new());
        assert_eq!(
            r.lock().map(|r| r.interval).ok(),
            Some(DEFAULT_RELOAD_INTERVAL)
        );
    }

    /// Scenario: a Collector `tls:` block with keys written as `""` (a Helm value left
    /// empty, `"${env:CA_FILE}"` with the variable empty). Guarantees: each reads as not
    /// set, as Go's zero string does in configtls: `ca_file: ""` is the system's roots, not
    /// a file named nothing, and with `insecure: true` it is no CA that would turn TLS on;
    /// `min_version: ""` is the default.
    #[test]
    fn keys_written_empty_are_not_set() {
        let c: ClientTlsConfig = serde_yaml_ng::from_str(
            "{insecure: true, ca_file: '', ca_pem: '', cert_file: '', key_file: '', \
             server_name_override: '', min_version: '', max_version: ''}",
        )
        .unwrap();
        assert_eq!(
            c,
            ClientTlsConfig {
                insecure: true,
                ..Default::default()
            }
        );
        assert_eq!(
            ClientTlsConfig::uses_tls(Some(&c), "gw:4317").ok(),
            Some(false)
        );
        assert!(c.build().is_ok());
        let c: ClientTlsConfig = serde_yaml_ng::from_str("{ca_file: \"\"}").unwrap();
        assert!(c.build().is_ok(), "the system's roots");
        let s: ServerTlsConfig = serde_yaml_ng::from_str(
            "{cert_file: '', key_file: '', client_ca_file: '', ca_file: '', min_version: ''}",
        )
        .unwrap();
        assert_eq!(s, ServerTlsConfig::default());
    }
}

/// The end-entity certificate a client presented on a mutual TLS connection (already
/// verified against the listener's client CAs), as [`crate::serve`] attaches it to each of
/// the connection's requests.
#[derive(Debug, Clone)]
pub struct ClientCertificate(pub Arc<rustls::pki_types::CertificateDer<'static>>);

/// Whether `name` is a DNS name a certificate can carry (`peers.cert_names`).
pub fn is_dns_name(name: &str) -> bool {
    rustls::pki_types::DnsName::try_from(name).is_ok()
}
