//! Google Cloud tokens for the gateway's exporters: the Collector's `googleclientauth`
//! extension (contrib v0.161), which finds Application Default Credentials and sends an
//! OAuth2 access token (or a Google-signed ID token) with every request, for Google Cloud's
//! OTLP endpoint (`telemetry.googleapis.com`) or an IAP-protected backend.
//!
//! Credentials are found as Google's libraries find them ([`GcpSource::from_env`]): the
//! JSON file `GOOGLE_APPLICATION_CREDENTIALS` names (a service account's key, or a user's
//! refresh token), else gcloud's `application_default_credentials.json`, else the metadata
//! server (GCE, GKE Workload Identity, Cloud Run). Tokens are fetched when a request first
//! asks and kept as [`crate::fetched`] keeps values; [`GcpTokens`] is a
//! [`crate::credential::FetchedValue`], so a [`crate::credential::Credential`] sends them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;

use crate::fetched::{Expiring, FetchCache};
use crate::tls::{ClientTls, Transport};

/// Google's token endpoint, where a key file names none.
pub const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// Where tokens come from.
pub enum GcpSource {
    /// A service account's key: a JWT signed with it, exchanged at `token_uri`.
    ServiceAccount {
        /// `client_email`.
        email: String,
        /// `private_key_id`, written in the JWT's header.
        key_id: String,
        /// `private_key`.
        key: Arc<::ring::signature::RsaKeyPair>,
        /// The token endpoint.
        token_uri: Uri,
        /// The token endpoint as the file writes it: the JWT's audience.
        audience: String,
    },
    /// A user's refresh token (`gcloud auth application-default login`).
    AuthorizedUser {
        /// `client_id`.
        client_id: String,
        /// `client_secret`.
        client_secret: String,
        /// `refresh_token`.
        refresh_token: String,
        /// The token endpoint.
        token_uri: Uri,
    },
    /// The metadata server of the machine (`GCE_METADATA_HOST`, else
    /// `metadata.google.internal`).
    Metadata {
        /// `http://<host>`.
        base: Uri,
    },
}

impl std::fmt::Debug for GcpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// What the credentials file says besides the source.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where the credentials are, in words.
    pub from: String,
    /// `project_id` of a service account's key.
    pub project_id: Option<String>,
    /// `quota_project_id`.
    pub quota_project: Option<String>,
}

impl GcpSource {
    /// Application Default Credentials over the variables `var` gives and `home`.
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        home: Option<std::path::PathBuf>,
    ) -> Result<(GcpSource, Found), String> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let file = match set("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(f) => Some(std::path::PathBuf::from(f)),
            None => home
                .map(|h| h.join(".config/gcloud/application_default_credentials.json"))
                .filter(|f| f.is_file()),
        };
        let Some(file) = file else {
            let host =
                set("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
            let base =
                crate::endpoint::parse(&format!("http://{host}"), crate::endpoint::Bare::Refused)
                    .map_err(|e| format!("GCE_METADATA_HOST: {e}"))?;
            return Ok((
                GcpSource::Metadata { base },
                Found {
                    from: format!("the metadata server at {host}"),
                    ..Found::default()
                },
            ));
        };
        let text = crate::config::read_text(&file)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let (source, mut found) =
            GcpSource::from_json(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        found.from = format!("{} ({})", file.display(), found.from);
        Ok((source, found))
    }

    /// A credentials file's source: `service_account` or `authorized_user`.
    pub fn from_json(text: &str) -> Result<(GcpSource, Found), String> {
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(rename = "type")]
            kind: Option<String>,
            client_email: Option<String>,
            private_key: Option<String>,
            private_key_id: Option<String>,
            token_uri: Option<String>,
            project_id: Option<String>,
            quota_project_id: Option<String>,
            client_id: Option<String>,
            client_secret: Option<String>,
            refresh_token: Option<String>,
        }
        let f: File = serde_json::from_str(text)
            .map_err(|e| format!("not a Google credentials file (JSON): {e}"))?;
        let need = |v: Option<String>, key: &str| {
            v.filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the credentials file has no {key}"))
        };
        let token_uri_text = f
            .token_uri
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| TOKEN_URI.into());
        let token_uri = crate::endpoint::parse(&token_uri_text, crate::endpoint::Bare::Refused)
            .map_err(|e| format!("token_uri: {e}"))?;
        let found = |from: &str| Found {
            from: from.into(),
            project_id: f.project_id.clone().filter(|p| !p.is_empty()),
            quota_project: f.quota_project_id.clone().filter(|p| !p.is_empty()),
        };
        match f.kind.as_deref() {
            Some("service_account") => {
                let email = need(f.client_email.clone(), "client_email")?;
                let key = rsa_key(&need(f.private_key.clone(), "private_key")?)?;
                let found = found(&format!("service account {email}"));
                Ok((
                    GcpSource::ServiceAccount {
                        email,
                        key_id: f.private_key_id.clone().unwrap_or_default(),
                        key: Arc::new(key),
                        token_uri,
                        audience: token_uri_text,
                    },
                    found,
                ))
            }
            Some("authorized_user") => {
                let found = found("a user's refresh token");
                Ok((
                    GcpSource::AuthorizedUser {
                        client_id: need(f.client_id, "client_id")?,
                        client_secret: need(f.client_secret, "client_secret")?,
                        refresh_token: need(f.refresh_token, "refresh_token")?,
                        token_uri,
                    },
                    found,
                ))
            }
            other => Err(format!(
                "credentials of type {:?} are not supported (service_account and authorized_user are; for workload identity federation, run where the metadata server answers or give a service account key)",
                other.unwrap_or_default()
            )),
        }
    }

    /// The token endpoint asked, if not the metadata server: where a proxy applies.
    pub fn token_uri(&self) -> Option<&Uri> {
        match self {
            GcpSource::ServiceAccount { token_uri, .. }
            | GcpSource::AuthorizedUser { token_uri, .. } => Some(token_uri),
            GcpSource::Metadata { .. } => None,
        }
    }

    /// Where tokens come from, in words.
    pub fn describe(&self) -> String {
        match self {
            GcpSource::ServiceAccount { email, .. } => format!("service account {email}"),
            GcpSource::AuthorizedUser { .. } => "a user's refresh token".into(),
            GcpSource::Metadata { base } => format!("the metadata server at {base}"),
        }
    }
}

/// A PKCS#8 RSA key from its PEM text, as a key file holds it.
fn rsa_key(pem: &str) -> Result<::ring::signature::RsaKeyPair, String> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|_| "private_key is not a PEM key".to_owned())?;
    ::ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("private_key is not an RSA key in PKCS#8: {e}"))
}

/// Which token is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// An OAuth2 access token for these scopes.
    Access {
        /// The scopes.
        scopes: Vec<String>,
    },
    /// A Google-signed ID token for this audience.
    Id {
        /// The audience.
        audience: String,
    },
}

/// Tokens of one extension, fetched and kept.
pub struct GcpTokens {
    source: GcpSource,
    kind: TokenKind,
    client: Transport<Full<Bytes>>,
    cache: FetchCache<HeaderValue>,
}

impl std::fmt::Debug for GcpTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpTokens")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl GcpTokens {
    /// Tokens of `kind` from `source`; a fetch takes at most `timeout`, through `proxy`
    /// when one is given (the metadata server is always reached directly).
    pub fn new(
        source: GcpSource,
        kind: TokenKind,
        timeout: Duration,
        tls: Option<&ClientTls>,
        proxy: Option<&crate::proxy::Proxy>,
    ) -> Arc<Self> {
        let proxy = match source {
            GcpSource::Metadata { .. } => None,
            _ => proxy,
        };
        let client = crate::fetched::client(timeout, tls, proxy);
        Arc::new(GcpTokens {
            cache: FetchCache::new(format!("Google tokens from {}", source.describe()), timeout),
            source,
            kind,
            client,
        })
    }

    /// The source.
    pub fn source(&self) -> &GcpSource {
        &self.source
    }

    async fn fetch(&self) -> Result<Expiring<HeaderValue>, String> {
        let now = SystemTime::now();
        let (token, expires) = match (&self.source, &self.kind) {
            (GcpSource::Metadata { base }, TokenKind::Access { scopes }) => {
                let mut url = format!("{base}computeMetadata/v1/instance/service-accounts/default/token");
                if !scopes.is_empty() {
                    url.push_str(&format!("?scopes={}", crate::text::form_escape(&scopes.join(","))));
                }
                let answer = self.metadata(&url).await?;
                access_token(&answer, now)?
            }
            (GcpSource::Metadata { base }, TokenKind::Id { audience }) => {
                let url = format!(
                    "{base}computeMetadata/v1/instance/service-accounts/default/identity?audience={}&format=full",
                    crate::text::form_escape(audience)
                );
                let jwt = String::from_utf8_lossy(&self.metadata(&url).await?).trim().to_owned();
                let expires = jwt_expiry(&jwt);
                (jwt, expires)
            }
            (
                GcpSource::ServiceAccount {
                    email,
                    key_id,
                    key,
                    token_uri,
                    audience,
                },
                kind,
            ) => {
                // Issued 10 s in the past, as Go's jws does: a clock a little ahead of
                // Google's would otherwise have the grant refused.
                let iat = unix(now).saturating_sub(10);
                let mut claims = serde_json::json!({
                    "iss": email,
                    "aud": audience,
                    "iat": iat,
                    "exp": iat + 3600,
                });
                match kind {
                    TokenKind::Access { scopes } => claims["scope"] = scopes.join(" ").into(),
                    TokenKind::Id { audience } => claims["target_audience"] = audience.clone().into(),
                }
                let assertion = jwt(key, key_id, &claims)?;
                let body = format!(
                    "grant_type={}&assertion={assertion}",
                    crate::text::form_escape("urn:ietf:params:oauth:grant-type:jwt-bearer")
                );
                let answer = self.post(token_uri, body).await?;
                match kind {
                    TokenKind::Access { .. } => access_token(&answer, now)?,
                    TokenKind::Id { .. } => {
                        let id = json_field(&answer, "id_token")?;
                        let expires = jwt_expiry(&id);
                        (id, expires)
                    }
                }
            }
            (
                GcpSource::AuthorizedUser {
                    client_id,
                    client_secret,
                    refresh_token,
                    token_uri,
                },
                TokenKind::Access { .. },
            ) => {
                let body = [
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                ]
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::text::form_escape(v)))
                .collect::<Vec<_>>()
                .join("&");
                let answer = self.post(token_uri, body).await?;
                access_token(&answer, now)?
            }
            (GcpSource::AuthorizedUser { .. }, TokenKind::Id { .. }) => {
                return Err("a user's refresh token cannot give ID tokens; use a service account or the metadata server".into())
            }
        };
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token cannot go in a header".to_owned())?;
        value.set_sensitive(true);
        // No expiry to be read: an hour, Google's tokens' life, rather than kept for good.
        Ok((value, expires.or(Some(now + Duration::from_secs(3600)))))
    }

    async fn metadata(&self, url: &str) -> Result<Bytes, String> {
        let request = Request::get(url)
            .header("metadata-flavor", "Google")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        self.call(request).await
    }

    async fn post(&self, uri: &Uri, body: String) -> Result<Bytes, String> {
        let request = Request::post(uri.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.call(request).await
    }

    /// A request's answer when it succeeded; otherwise its status and error words.
    async fn call(&self, request: Request<Full<Bytes>>) -> Result<Bytes, String> {
        let (status, body) = crate::fetched::exchange(&self.client, request).await?;
        if status.is_success() {
            return Ok(body);
        }
        let detail = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?.as_str()?.to_owned();
                Some(match v.get("error_description").and_then(|d| d.as_str()) {
                    Some(d) => format!(": {error}: {d}"),
                    None => format!(": {error}"),
                })
            })
            .unwrap_or_default();
        Err(format!("HTTP {status}{detail}"))
    }
}

impl crate::credential::FetchedValue for GcpTokens {
    fn value(self: Arc<Self>) -> crate::credential::BoxFuture<Option<HeaderValue>> {
        Box::pin(async move { self.cache.get(|| self.fetch()).await.ok() })
    }

    fn refresh_after(self: Arc<Self>, sent: HeaderValue) -> crate::credential::BoxFuture<bool> {
        Box::pin(async move { self.cache.refresh(&sent, || self.fetch()).await })
    }

    fn last_value(&self) -> Option<HeaderValue> {
        self.cache.last()
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A JWT signed with RS256.
fn jwt(
    key: &::ring::signature::RsaKeyPair,
    key_id: &str,
    claims: &serde_json::Value,
) -> Result<String, String> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key_id});
    let signed = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &::ring::signature::RSA_PKCS1_SHA256,
        &::ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "cannot sign with the service account's key".to_owned())?;
    Ok(format!("{signed}.{}", b64(&signature)))
}

/// A JSON answer's string field.
fn json_field(answer: &[u8], field: &str) -> Result<String, String> {
    serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| v.get(field)?.as_str().map(str::to_owned))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("the answer has no {field}"))
}

/// An access token answer's token and expiry (`expires_in` seconds from `now`).
fn access_token(answer: &[u8], now: SystemTime) -> Result<(String, Option<SystemTime>), String> {
    let token = json_field(answer, "access_token")?;
    // A number, or a number written as a string (some endpoints quote it).
    let expires = serde_json::from_slice::<serde_json::Value>(answer)
        .ok()
        .and_then(|v| match v.get("expires_in")? {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        })
        .map(|s| now + Duration::from_secs(s.min(u64::from(u32::MAX))));
    Ok((token, expires))
}

/// A JWT's `exp`, if it can be read.
fn jwt_expiry(jwt: &str) -> Option<SystemTime> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp.min(u64::from(u32::MAX))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::FetchedValue;

    /// A 2048-bit RSA key made for these tests (`openssl genpkey -algorithm RSA`); it
    /// guards nothing.
    pub(crate) const TEST_KEY: &str = include_str!("../tests/fixtures/gcp-test-key.pem");

    fn key_file(token_uri: &Uri) -> String {
        serde_json::json!({
            "type": "service_account",
            "project_id": "my-project",
            "private_key_id": "kid-1",
            "private_key": TEST_KEY,
            "client_email": "tailgate@my-project.iam.gserviceaccount.com",
            "token_uri": token_uri.to_string(),
            "quota_project_id": "billing-project",
        })
        .to_string()
    }

    /// Checks a JWT's RS256 signature against the test key's public half; its claims.
    fn verified_claims(jwt: &str) -> serde_json::Value {
        let key = rsa_key(TEST_KEY).unwrap();
        let (signed, signature) = jwt.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        ::ring::signature::UnparsedPublicKey::new(
            &::ring::signature::RSA_PKCS1_2048_8192_SHA256,
            ::ring::signature::KeyPair::public_key(&key).as_ref(),
        )
        .verify(signed.as_bytes(), &signature)
        .expect("signed with the key");
        let payload = signed.split('.').nth(1).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    }

    /// Scenario: a service account's key file, its token endpoint a fake on loopback;
    /// three asks for an access token, then a refusal.
    /// Guarantees: the endpoint gets a JWT-bearer grant whose assertion is signed with the
    /// key (RS256) and claims the account, the scopes and the endpoint as audience; one
    /// fetch serves the three asks; the file's project and quota project are found; a
    /// refusal fetches a new token.
    #[tokio::test]
    async fn a_service_account_key_gets_access_tokens() {
        let n = std::sync::atomic::AtomicU32::new(0);
        let (uri, asked, _) = crate::test_util::token_endpoint(move |_, _| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (
                200,
                "application/json",
                format!(
                    r#"{{"access_token":"ya29.t{i}","expires_in":3599,"token_type":"Bearer"}}"#
                ),
            )
        })
        .await
        .unwrap();
        let (source, found) = GcpSource::from_json(&key_file(&uri)).unwrap();
        assert_eq!(found.project_id.as_deref(), Some("my-project"));
        assert_eq!(found.quota_project.as_deref(), Some("billing-project"));
        let tokens = GcpTokens::new(
            source,
            TokenKind::Access {
                scopes: vec!["https://www.googleapis.com/auth/trace.append".into()],
            },
            Duration::from_secs(5),
            None,
            None,
        );
        for _ in 0..3 {
            assert_eq!(tokens.clone().value().await.unwrap(), "Bearer ya29.t0");
        }
        let form = asked.lock().unwrap()[0].1.clone();
        assert_eq!(asked.lock().unwrap().len(), 1);
        let assertion = form
            .split('&')
            .find_map(|p| p.strip_prefix("assertion="))
            .unwrap();
        assert!(
            form.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&")
        );
        let claims = verified_claims(assertion);
        assert_eq!(claims["iss"], "tailgate@my-project.iam.gserviceaccount.com");
        assert_eq!(
            claims["scope"],
            "https://www.googleapis.com/auth/trace.append"
        );
        assert_eq!(claims["aud"], uri.to_string());
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat + 10 <= unix(SystemTime::now()), "issued 10 s back");
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 3600);
        assert!(
            tokens
                .clone()
                .refresh_after(HeaderValue::from_static("Bearer ya29.t0"))
                .await
        );
        // Neither the key nor a token in Debug.
        let shown = format!("{tokens:?}");
        assert!(
            !shown.contains("PRIVATE KEY") && !shown.contains("ya29"),
            "{shown}"
        );
        assert_eq!(tokens.clone().value().await.unwrap(), "Bearer ya29.t1");
    }

    /// Scenario: a service account's key asked for an ID token (its endpoint answering
    /// with a JWT), and an access token whose answer gives no `expires_in`.
    /// Guarantees: the grant claims the audience as `target_audience` (no scope) and the ID
    /// token is sent with its `exp` as expiry; a token without expiry is kept an hour.
    #[tokio::test]
    async fn id_tokens_and_tokens_without_expiry() {
        let exp = unix(SystemTime::now()) + 1800;
        let jwt = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#))
        );
        let answer = format!(r#"{{"id_token":"{jwt}"}}"#);
        let (uri, asked, _) =
            crate::test_util::token_endpoint(move |_, _| (200, "application/json", answer.clone()))
                .await
                .unwrap();
        let (source, _) = GcpSource::from_json(&key_file(&uri)).unwrap();
        let id = GcpTokens::new(
            source,
            TokenKind::Id {
                audience: "https://iap.example.com".into(),
            },
            Duration::from_secs(5),
            None,
            None,
        );
        let (value, expires) = id.fetch().await.unwrap();
        assert_eq!(value, format!("Bearer {jwt}").as_str());
        assert_eq!(
            expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
        );
        let form = asked.lock().unwrap()[0].1.clone();
        let assertion = form
            .split('&')
            .find_map(|p| p.strip_prefix("assertion="))
            .unwrap();
        let claims = verified_claims(assertion);
        assert_eq!(claims["target_audience"], "https://iap.example.com");
        assert!(claims.get("scope").is_none());

        let (uri, _, _) = crate::test_util::token_endpoint(|_, _| {
            (
                200,
                "application/json",
                r#"{"access_token":"ya29.forever"}"#.into(),
            )
        })
        .await
        .unwrap();
        let (source, _) = GcpSource::from_json(&key_file(&uri)).unwrap();
        let access = GcpTokens::new(
            source,
            TokenKind::Access { scopes: vec![] },
            Duration::from_secs(5),
            None,
            None,
        );
        let before = SystemTime::now();
        let (_, expires) = access.fetch().await.unwrap();
        let expires = expires.unwrap();
        assert!(
            expires >= before + Duration::from_secs(3590)
                && expires <= SystemTime::now() + Duration::from_secs(3600)
        );
    }

    /// Scenario: gcloud's ADC file in the home directory holding a user's refresh token
    /// (its token endpoint a fake answering with `expires_in` as a string), and no
    /// `GOOGLE_APPLICATION_CREDENTIALS`.
    /// Guarantees: the file is found; the endpoint is asked a refresh-token grant with
    /// the file's client; the token is sent; a file `GOOGLE_APPLICATION_CREDENTIALS`
    /// names is taken instead when set, with its `quota_project_id`; an ID token is
    /// refused for such a file.
    #[tokio::test]
    async fn gclouds_file_gives_a_users_tokens() {
        let (uri, asked, _) = crate::test_util::token_endpoint(|_, _| {
            (
                200,
                "application/json",
                r#"{"access_token":"ya29.user","expires_in":"3599"}"#.into(),
            )
        })
        .await
        .unwrap();
        let home = crate::test_util::scratch_dir("gcp-home").unwrap();
        std::fs::create_dir_all(home.join(".config/gcloud")).unwrap();
        std::fs::write(
            home.join(".config/gcloud/application_default_credentials.json"),
            format!(
                r#"{{"type":"authorized_user","client_id":"cid","client_secret":"csecret","refresh_token":"1//rt","token_uri":"{uri}"}}"#
            ),
        )
        .unwrap();
        let (source, found) = GcpSource::from_env(&|_| None, Some(home.to_path_buf())).unwrap();
        assert!(
            found.from.contains("application_default_credentials.json"),
            "{found:?}"
        );
        let tokens = GcpTokens::new(
            source,
            TokenKind::Access { scopes: vec![] },
            Duration::from_secs(5),
            None,
            None,
        );
        assert_eq!(tokens.clone().value().await.unwrap(), "Bearer ya29.user");
        let form = asked.lock().unwrap()[0].1.clone();
        assert_eq!(
            form,
            "client_id=cid&client_secret=csecret&grant_type=refresh_token&refresh_token=1%2F%2Frt"
        );
        let (source, _) = GcpSource::from_env(&|_| None, Some(home.to_path_buf())).unwrap();
        assert!(matches!(source, GcpSource::AuthorizedUser { .. }));
        assert!(!format!("{source:?}").contains("1//rt"));
        // GOOGLE_APPLICATION_CREDENTIALS wins over gcloud's file; its quota project is found.
        let named = home.join("named.json");
        std::fs::write(
            &named,
            format!(
                r#"{{"type":"authorized_user","client_id":"other","client_secret":"s","refresh_token":"r","quota_project_id":"billing","token_uri":"{uri}"}}"#
            ),
        )
        .unwrap();
        let var = |name: &str| {
            (name == "GOOGLE_APPLICATION_CREDENTIALS").then(|| named.display().to_string())
        };
        let (source, found) = GcpSource::from_env(&var, Some(home.to_path_buf())).unwrap();
        assert!(found.from.contains("named.json"), "{found:?}");
        assert_eq!(found.quota_project.as_deref(), Some("billing"));
        assert!(
            matches!(source, GcpSource::AuthorizedUser { ref client_id, .. } if client_id == "other")
        );
        // A refusing endpoint: its error words, never the refresh token or the secret.
        let (refusing, _, _) = crate::test_util::token_endpoint(|_, _| {
            (400, "application/json", r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#.into())
        })
        .await
        .unwrap();
        let (source, _) = GcpSource::from_json(&format!(
            r#"{{"type":"authorized_user","client_id":"cid","client_secret":"csecret","refresh_token":"1//rt","token_uri":"{refusing}"}}"#
        ))
        .unwrap();
        let refused = GcpTokens::new(
            source,
            TokenKind::Access { scopes: vec![] },
            Duration::from_secs(5),
            None,
            None,
        );
        let err = refused.cache.get(|| refused.fetch()).await.unwrap_err();
        assert!(err.contains("invalid_grant"), "{err}");
        assert!(!err.contains("1//rt") && !err.contains("csecret"), "{err}");
        std::fs::remove_dir_all(&home).ok();
    }

    /// Scenario: the metadata server (GKE Workload Identity) for an access token and an ID
    /// token; credentials files Tailgate does not take.
    /// Guarantees: the metadata server is asked with `Metadata-Flavor: Google`, the scopes
    /// and the audience; the ID token's `exp` is its expiry; other file types and broken
    /// keys are refused by name.
    #[tokio::test]
    async fn the_metadata_server_gives_tokens() {
        let exp = unix(SystemTime::now()) + 3600;
        let id_token = format!(
            "h.{}.s",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp}}}"#))
        );
        let answer_id = id_token.clone();
        let (base, seen) = crate::test_util::fake_endpoint(move |_, target, headers| {
            let flavored = headers
                .get("metadata-flavor")
                .is_some_and(|v| v == "Google");
            match (
                flavored,
                target.contains("/token"),
                target.contains("/identity"),
            ) {
                (true, true, _) => (
                    200,
                    r#"{"access_token":"ya29.meta","expires_in":3000,"token_type":"Bearer"}"#
                        .into(),
                ),
                (true, _, true) => (200, answer_id.clone()),
                _ => (403, String::new()),
            }
        })
        .await;
        let host = base.authority().unwrap().to_string();
        let var = |name: &str| (name == "GCE_METADATA_HOST").then(|| host.clone());
        let (source, found) = GcpSource::from_env(&var, None).unwrap();
        assert!(found.from.contains("metadata server"), "{found:?}");
        let access = GcpTokens::new(
            source,
            TokenKind::Access {
                scopes: vec!["a".into(), "b".into()],
            },
            Duration::from_secs(5),
            None,
            None,
        );
        assert_eq!(access.clone().value().await.unwrap(), "Bearer ya29.meta");
        let (source, _) = GcpSource::from_env(&var, None).unwrap();
        let id = GcpTokens::new(
            source,
            TokenKind::Id {
                audience: "https://otlp.example.com".into(),
            },
            Duration::from_secs(5),
            None,
            None,
        );
        assert_eq!(
            id.clone().value().await.unwrap(),
            format!("Bearer {id_token}").as_str()
        );
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].ends_with(
                "/computeMetadata/v1/instance/service-accounts/default/token?scopes=a%2Cb"
            ),
            "{seen:?}"
        );
        assert!(
            seen[1].contains("/identity?audience=https%3A%2F%2Fotlp.example.com&format=full"),
            "{seen:?}"
        );
        assert_eq!(
            jwt_expiry(&id_token),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(exp))
        );
        // The same key in PKCS#1 (`BEGIN RSA PRIVATE KEY`): refused, as ring reads PKCS#8.
        let pkcs1 = serde_json::json!({
            "type": "service_account",
            "client_email": "a",
            "private_key": include_str!("../tests/fixtures/gcp-test-key-pkcs1.pem"),
        })
        .to_string();
        assert!(GcpSource::from_json(&pkcs1)
            .err()
            .unwrap()
            .contains("not an RSA key in PKCS#8"));
        for (file, says) in [
            (
                r#"{"type":"impersonated_service_account"}"#,
                "not supported",
            ),
            (r#"{"type":"external_account"}"#, "not supported"),
            (
                r#"{"type":"service_account","client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}"#,
                "not an RSA key",
            ),
            (
                r#"{"type":"authorized_user","client_id":"a"}"#,
                "no client_secret",
            ),
            ("not json", "not a Google credentials file"),
        ] {
            let err = GcpSource::from_json(file).unwrap_err();
            assert!(err.contains(says), "{file}: {err}");
        }
    }
}
