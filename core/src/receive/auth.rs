//! Who may send: the receivers' bearer token (`receive.auth`, for clients), and for peer
//! requests the gateways' client certificates (`peers.cert_names`, over mutual TLS) or their
//! shared secret (`peers.secret`). Checked before a request's body is read; a refusal is
//! UNAUTHENTICATED / 401 or PERMISSION_DENIED / 403.

use serde::Deserialize;

use super::sink::{DECISIONS_PATH, PEER_AUTH_HEADER, PEER_HEADER};
use super::status::Refusal;
pub use crate::tls::ClientCertificate;

/// `receive.auth`: the bearer token clients must send (`authorization: Bearer <token>`).
///
/// Settings that cannot be used (both or neither of the token and its file, a file that
/// cannot be read, an empty token) are kept as a problem that
/// [`ReceiveConfig::validate`](super::ReceiveConfig::validate) reports under its own key
/// (`auth.bearer_token_file`, …), so the config error names the line of that key: refused
/// while the YAML was read, the error named the line of the first key of `receive`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawAuth")]
pub struct ReceiveAuth {
    token: std::sync::Arc<str>,
    /// What is wrong with the settings, and under which key of `receive`; the token is
    /// empty then, so that a receiver built without validating refuses every request.
    problem: Option<(&'static str, String)>,
}

impl std::fmt::Debug for ReceiveAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceiveAuth { token: <redacted> }")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    bearer_token: Option<String>,
    #[serde(default)]
    bearer_token_file: Option<std::path::PathBuf>,
}

/// Why `receive.auth` is refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// Neither or both of the token and its file.
    #[error("give one of bearer_token and bearer_token_file")]
    OneOf,
    /// The token file cannot be read.
    #[error("bearer_token_file {}: {error}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// An empty token, or one a header cannot carry.
    #[error("the bearer token must be non-empty visible ASCII")]
    BadToken,
}

impl RawAuth {
    /// The token, or what is wrong and under which key of `receive`.
    fn token(self) -> Result<String, (&'static str, AuthConfigError)> {
        let (key, token) = match (self.bearer_token, self.bearer_token_file) {
            (Some(t), None) => ("auth.bearer_token", Ok(t)),
            // `--check` on a machine without the file: named in a note, a stand-in checked.
            (None, Some(path))
                if crate::config::absent_for_check("receive.auth.bearer_token_file", &path) =>
            {
                ("auth.bearer_token_file", Ok("absent-at-check".to_owned()))
            }
            (None, Some(path)) => (
                "auth.bearer_token_file",
                crate::config::read_text(&path)
                    .map_err(|error| AuthConfigError::Read { path, error }),
            ),
            _ => return Err(("auth", AuthConfigError::OneOf)),
        };
        let token = token.map_err(|e| (key, e))?;
        let token = token.trim();
        if token.is_empty() || http::HeaderValue::from_str(token).is_err() {
            return Err((key, AuthConfigError::BadToken));
        }
        Ok(token.to_owned())
    }
}

impl From<RawAuth> for ReceiveAuth {
    fn from(raw: RawAuth) -> Self {
        match raw.token() {
            Ok(token) => ReceiveAuth::new(&token),
            Err((key, error)) => ReceiveAuth {
                token: "".into(),
                problem: Some((key, error.to_string())),
            },
        }
    }
}

impl ReceiveAuth {
    /// Requires `token`.
    pub fn new(token: &str) -> Self {
        ReceiveAuth {
            token: token.into(),
            problem: None,
        }
    }

    /// What is wrong with the settings it was read from, under which key of `receive`
    /// (see the type's documentation).
    pub fn problem(&self) -> Option<(&'static str, &str)> {
        self.problem.as_ref().map(|(k, m)| (*k, m.as_str()))
    }

    /// Checks a request's `authorization` header: `Bearer <token>` (the scheme in any
    /// case), compared in time independent of where it differs.
    pub fn check(&self, headers: &http::HeaderMap) -> Result<(), Refusal> {
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let token = presented
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| &presented[7..])
            .unwrap_or_default();
        // Settings with a problem (reported at validation) take no one, not even a sender
        // presenting the empty token they hold.
        if self.problem.is_none() && same_secret(token, self.token.as_bytes()) {
            Ok(())
        } else {
            Err(Refusal::Unauthenticated(
                "this receiver takes requests with its bearer token only".into(),
            ))
        }
    }
}

/// How peer requests prove they come from a gateway: a client certificate (verified by
/// mutual TLS against `receive.tls.client_ca_file`) that carries one of `cert_names`, or the
/// shared `secret`. With neither configured, anyone may send peer requests.
#[derive(Clone, Default)]
pub struct PeerAuth {
    /// The gateways' shared secret (`peers.secret`).
    pub secret: Option<std::sync::Arc<str>>,
    /// DNS names a gateway's client certificate carries (`peers.cert_names`).
    pub cert_names: std::sync::Arc<[String]>,
}

impl std::fmt::Debug for PeerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerAuth")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("cert_names", &self.cert_names)
            .finish()
    }
}

impl PeerAuth {
    /// Peers recognised by the secret alone (`None`: peer requests from anyone).
    pub fn secret(secret: Option<&str>) -> Self {
        PeerAuth {
            secret: secret.map(Into::into),
            cert_names: std::sync::Arc::new([]),
        }
    }

    /// Whether peer requests must prove where they come from.
    pub fn required(&self) -> bool {
        self.secret.is_some() || !self.cert_names.is_empty()
    }

    /// Whether a client certificate names a gateway: one of its subject alternative names is
    /// one of `cert_names` (case aside); a wildcard name does not count.
    pub fn certifies(&self, cert: Option<&ClientCertificate>) -> bool {
        let Some(cert) = cert else {
            return false;
        };
        let Ok(parsed) = webpki::EndEntityCert::try_from(&*cert.0) else {
            return false;
        };
        let valid_for = |name: &str| {
            rustls::pki_types::ServerName::try_from(name)
                .is_ok_and(|name| parsed.verify_is_valid_for_subject_name(&name).is_ok())
        };
        // A wildcard (`*.observability.svc`) would also name every other service there: it
        // is not a gateway's. Only `*` as the first label matches, so a sibling name tells.
        self.cert_names.iter().any(|name| {
            let sibling = name
                .split_once('.')
                .map(|(_, parent)| format!("tailgate-not-a-peer.{parent}"));
            valid_for(name) && !sibling.is_some_and(|s| valid_for(&s))
        })
    }
}

/// Whether a request claims to come from a peer: it carries the [`PEER_HEADER`] or calls
/// [`DECISIONS_PATH`].
fn is_peer_request(headers: &http::HeaderMap, path: &str) -> bool {
    headers.contains_key(PEER_HEADER) || path == DECISIONS_PATH
}

/// Checks a peer request against [`PeerAuth`]: it must come with a certificate that names a
/// gateway, or present the secret in [`PEER_AUTH_HEADER`]. Client requests pass, and so does
/// everything when `peers` requires nothing.
pub fn check_peer(
    peers: &PeerAuth,
    cert: Option<&ClientCertificate>,
    headers: &http::HeaderMap,
    path: &str,
) -> Result<(), Refusal> {
    if !peers.required() || !is_peer_request(headers, path) {
        return Ok(());
    }
    if peers.certifies(cert) {
        return Ok(());
    }
    let presented = headers
        .get(PEER_AUTH_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if peers
        .secret
        .as_ref()
        .is_some_and(|secret| same_secret(presented, secret.as_bytes()))
    {
        return Ok(());
    }
    Err(Refusal::PermissionDenied(
        "peer requests are taken only from gateways: a client certificate for one of peers.cert_names, or the peers' secret".into(),
    ))
}

/// Which requests a receiver takes, when the gateways serve peer traffic on a port of its
/// own (`peers.listen`) so that a NetworkPolicy can fence it to gateways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PeerTraffic {
    /// Client and peer requests alike: there is no separate peer port.
    #[default]
    Mixed,
    /// Client requests only: peer requests are refused (they go to the peer port).
    ClientsOnly,
    /// Peer requests only: this is the peer port.
    PeersOnly,
    /// Client requests only: this gateway has no peers, so a peer request (a decision
    /// that could drop other senders' traces, spans claiming to be handed over) is no
    /// gateway's.
    Standalone,
}

/// Refuses a peer request on a clients-only receiver and a client request on the peer
/// port, with PERMISSION_DENIED naming the right port.
pub fn check_traffic(
    traffic: PeerTraffic,
    headers: &http::HeaderMap,
    path: &str,
) -> Result<(), Refusal> {
    match (traffic, is_peer_request(headers, path)) {
        (PeerTraffic::ClientsOnly, true) => Err(Refusal::PermissionDenied(
            "peer requests are taken on the gateways' peer port (peers.listen), not here".into(),
        )),
        (PeerTraffic::PeersOnly, false) => Err(Refusal::PermissionDenied(
            "this is the gateways' peer port; send OTLP to the receivers (receive.grpc)".into(),
        )),
        (PeerTraffic::Standalone, true) => Err(Refusal::PermissionDenied(
            "this gateway has no peers (peers.dns and peers.static are unset): peer requests are refused".into(),
        )),
        _ => Ok(()),
    }
}

/// Whether `presented` equals `secret`, compared in time independent of where they differ.
pub fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    presented.len() == secret.len()
        && presented
            .iter()
            .zip(secret)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Checks the receivers' rules for who may send: a request must come to the right port
/// ([`check_traffic`]); a peer request must prove it comes from a gateway ([`check_peer`]);
/// any other request, the bearer token when `auth` is set. A proven peer request needs no
/// token.
pub fn check_sender(
    traffic: PeerTraffic,
    peers: &PeerAuth,
    auth: Option<&ReceiveAuth>,
    req: &http::Request<impl Sized>,
    path: &str,
) -> Result<(), Refusal> {
    let headers = req.headers();
    check_traffic(traffic, headers, path)?;
    let cert = req.extensions().get::<ClientCertificate>();
    check_peer(peers, cert, headers, path)?;
    if peers.required() && is_peer_request(headers, path) {
        return Ok(());
    }
    match auth {
        Some(auth) => auth.check(headers),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    /// Scenario: client and peer requests (the peer header, the Decisions method) on each
    /// kind of receiver. Guarantees: a mixed receiver takes both; a clients-only receiver
    /// refuses peer requests, the peer port client requests, each PERMISSION_DENIED.
    #[test]
    fn peer_traffic_goes_only_where_it_is_served() {
        use super::{check_traffic, PeerTraffic};
        use crate::receive::sink::{DECISIONS_PATH, PEER_HEADER};
        use crate::receive::Refusal;
        let export = crate::wire::TRACE_EXPORT_PATH;
        let mut peer = http::HeaderMap::new();
        peer.insert(
            PEER_HEADER,
            http::HeaderValue::from_static("forwarded; hops=1"),
        );
        let client = http::HeaderMap::new();
        let cases = [
            (&client, export, true, true, false),
            (&peer, export, true, false, true),
            (&client, DECISIONS_PATH, true, false, true),
        ];
        for (headers, path, mixed, clients_only, peers_only) in cases {
            for (traffic, allowed) in [
                (PeerTraffic::Mixed, mixed),
                (PeerTraffic::ClientsOnly, clients_only),
                (PeerTraffic::PeersOnly, peers_only),
            ] {
                match check_traffic(traffic, headers, path) {
                    Ok(()) => assert!(allowed, "{traffic:?} took {path} {headers:?}"),
                    Err(Refusal::PermissionDenied(_)) => {
                        assert!(!allowed, "{traffic:?} refused {path} {headers:?}")
                    }
                    Err(other) => panic!("{other:?}"),
                }
            }
        }
    }

    use super::*;
    use crate::receive::sink::{DECISIONS_PATH, PEER_AUTH_HEADER, PEER_HEADER};

    #[test]
    fn peer_requests_need_the_secret_and_client_requests_do_not() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = http::HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    *k,
                    http::HeaderValue::from_str(v).unwrap_or_else(|_| unreachable!()),
                );
            }
            h
        };
        let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        let peer = headers(&[(PEER_HEADER, "forwarded; hops=1")]);
        // Without a secret configured, everything passes (and a warning says so at start).
        assert!(check_peer(&PeerAuth::default(), None, &peer, DECISIONS_PATH).is_ok());
        // A client's export passes; a peer's needs the secret.
        assert!(check_peer(
            &PeerAuth::secret(Some("s3cret")),
            None,
            &headers(&[]),
            export
        )
        .is_ok());
        for (h, path) in [(&peer, export), (&headers(&[]), DECISIONS_PATH)] {
            let refused = check_peer(&PeerAuth::secret(Some("s3cret")), None, h, path).unwrap_err();
            assert_eq!(refused.reason(), "permission_denied");
            assert_eq!(refused.to_grpc().code(), tonic::Code::PermissionDenied);
            assert_eq!(refused.http_status(), http::StatusCode::FORBIDDEN);
        }
        let wrong = headers(&[
            (PEER_HEADER, "handoff; hops=1"),
            (PEER_AUTH_HEADER, "s3creT"),
        ]);
        assert!(check_peer(&PeerAuth::secret(Some("s3cret")), None, &wrong, export).is_err());
        let right = headers(&[
            (PEER_HEADER, "handoff; hops=1"),
            (PEER_AUTH_HEADER, "s3cret"),
        ]);
        assert!(check_peer(&PeerAuth::secret(Some("s3cret")), None, &right, export).is_ok());
        let decisions = headers(&[(PEER_AUTH_HEADER, "s3cret")]);
        assert!(check_peer(
            &PeerAuth::secret(Some("s3cret")),
            None,
            &decisions,
            DECISIONS_PATH
        )
        .is_ok());
    }
}
