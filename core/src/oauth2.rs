//! OAuth2 client credentials (RFC 6749 section 4.4) for exporters, as the Collector's
//! `oauth2client` extension fetches them: a token from `token_url` for `client_id` and
//! `client_secret`, kept until it is about to expire, sent as `Authorization: <type>
//! <token>` on every request.
//!
//! Where data comes from and goes: the gateway's `extensions:` block builds a
//! [`ClientCredentials`]; [`crate::credential::Credential::fetched`] wraps its
//! [`TokenSource`], which the exporters' clients ask for the header on every request, as
//! they ask file-based credentials.
//!
//! The token endpoint is asked as `golang.org/x/oauth2/clientcredentials` asks it: a form
//! POST with `grant_type=client_credentials`, the scopes joined by spaces and the extra
//! `endpoint_params`; the client's id and secret go in HTTP Basic first (each
//! form-escaped), and, if the endpoint refuses that, in the form, which is then kept.
//! Secret files are read again for every fetch. The answer is JSON (or a form, as some
//! servers send), `expires_in` a number or a numeric string.
//!
//! Unlike Go's client, a request never waits for a token that is still valid: within
//! `expiry_buffer` of its expiry a new one is fetched in the background while the old one
//! is sent. Only a request that finds no valid token waits, at most the fetch's timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderValue, Uri};
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;

use crate::credential::{CredentialError, Secret};
use crate::tls::{ClientTls, Dialer, Transport};

/// The most a token endpoint's answer may hold.
const MAX_ANSWER: usize = 64 * 1024;

/// The least time between two fetches after one failed (or one forced by a refusal).
pub const FETCH_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// What a client-credentials token source is built from.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The token endpoint (`http://` or `https://`).
    pub token_url: Uri,
    /// The client's id.
    pub client_id: Secret,
    /// The client's secret.
    pub client_secret: Secret,
    /// Scopes asked for (`scope`, joined by spaces).
    pub scopes: Vec<String>,
    /// Extra form fields (`audience`, `resource`, …), in order.
    pub endpoint_params: Vec<(String, String)>,
    /// The most one fetch takes, connection included.
    pub timeout: Duration,
    /// How long before its expiry a token is replaced.
    pub expiry_buffer: Duration,
    /// TLS to the token endpoint (its `https://` URL), if any.
    pub tls: Option<ClientTls>,
    /// The proxy the token endpoint is reached through, if any.
    pub proxy: Option<crate::proxy::Proxy>,
}

/// Why a token could not be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuth2Error {
    /// The client's id or secret could not be read.
    #[error(transparent)]
    Secret(#[from] CredentialError),
    /// No answer from the token endpoint.
    #[error("token endpoint {url}: {error}")]
    Request {
        /// The endpoint.
        url: String,
        /// What went wrong (its causes included).
        error: String,
    },
    /// The endpoint answered with an error status.
    #[error("token endpoint {url} answered {status}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Refused {
        /// The endpoint.
        url: String,
        /// Its status.
        status: u16,
        /// Its `error` and `error_description` (RFC 6749 section 5.2), if it gave them.
        detail: Option<String>,
    },
    /// The answer was not a token.
    #[error("token endpoint {url}: {problem}")]
    BadAnswer {
        /// The endpoint.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The fetch took longer than the timeout.
    #[error("token endpoint {url} did not answer within {within:?}")]
    Timeout {
        /// The endpoint.
        url: String,
        /// The timeout.
        within: Duration,
    },
}

/// A token and when it stops being valid (`None`: the endpoint gave no `expires_in`).
/// Its `Debug` shows the expiry, not the token.
#[derive(Clone)]
struct Token {
    value: HeaderValue,
    expires: Option<Instant>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// How usable a token is at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Valid, and not within the expiry buffer.
    Fresh,
    /// Valid, but within the buffer: send it, and fetch the next one.
    RefreshAhead,
    /// Expired: fetch, and wait for it.
    Expired,
}

/// How usable a token that `expires` is at `now`, replaced `buffer` before it expires.
pub fn freshness(expires: Option<Instant>, now: Instant, buffer: Duration) -> Freshness {
    match expires {
        None => Freshness::Fresh,
        Some(at) if now >= at => Freshness::Expired,
        Some(at) if now + buffer >= at => Freshness::RefreshAhead,
        Some(_) => Freshness::Fresh,
    }
}

struct State {
    token: Option<Token>,
    /// A fetch is under way (at most one at a time).
    fetching: bool,
    /// When the last fetch that failed, or was forced, started.
    spaced_at: Option<Instant>,
    /// When a failure was last logged (once a minute at most).
    warned_at: Option<Instant>,
    /// The endpoint refused the id and secret in Basic and took them in the form.
    in_form: bool,
}

/// Client-credentials tokens for one extension, fetched when needed and kept.
pub struct TokenSource {
    config: ClientCredentials,
    /// The token URL, credentials masked, for messages.
    shown: String,
    client: Transport<Full<Bytes>>,
    state: Mutex<State>,
    fetched: tokio::sync::Notify,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.shown)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A source for `config`; nothing is fetched until a request asks.
    pub fn new(config: ClientCredentials) -> Arc<TokenSource> {
        let dialer = Dialer::new(config.timeout, config.proxy.as_ref());
        let builder =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
        let client = Transport::new(&builder, config.tls.as_ref(), dialer, false);
        Arc::new(TokenSource {
            shown: crate::endpoint::redact(&config.token_url.to_string()),
            config,
            client,
            state: Mutex::new(State {
                token: None,
                fetching: false,
                spaced_at: None,
                warned_at: None,
                in_form: false,
            }),
            fetched: tokio::sync::Notify::new(),
        })
    }

    /// The token endpoint, credentials masked.
    pub fn token_url(&self) -> &str {
        &self.shown
    }

    /// The header value for the next request: the kept token while it is fresh; within
    /// the expiry buffer the same, with the next one fetched in the background; without
    /// a valid token, the one a fetch brings, waited for at most the timeout. `None` when
    /// there is none (the endpoint failed: logged).
    pub async fn value(self: &Arc<Self>) -> Option<HeaderValue> {
        let now = Instant::now();
        let (usable, fetch) = {
            let mut state = self.lock();
            let fresh = state
                .token
                .as_ref()
                .map(|t| freshness(t.expires, now, self.config.expiry_buffer));
            let usable = match fresh {
                Some(Freshness::Fresh | Freshness::RefreshAhead) => {
                    state.token.as_ref().map(|t| t.value.clone())
                }
                _ => None,
            };
            let wanted = fresh != Some(Freshness::Fresh);
            (usable, wanted && self.may_fetch(&mut state, now, false))
        };
        if let Some(value) = usable {
            if fetch {
                self.spawn_fetch();
            }
            return Some(value);
        }
        self.fetch_and_wait(fetch).await;
        let state = self.lock();
        state
            .token
            .as_ref()
            .filter(|t| freshness(t.expires, Instant::now(), Duration::ZERO) != Freshness::Expired)
            .map(|t| t.value.clone())
    }

    /// For a request the backend refused as unauthenticated, sent with `sent` (a token
    /// revoked before its expiry): whether a token other than `sent` is now to be had, so
    /// that the request is worth sending again. One already kept counts at once; a fetch
    /// under way is waited for; else a new token is fetched now, or, within
    /// [`FETCH_AGAIN_AFTER`] of the last forced or failed one, once that has passed.
    pub async fn refresh_after(self: &Arc<Self>, sent: &HeaderValue) -> bool {
        // Twice at most: a refusal within a second of the last forced fetch waits for the
        // next one allowed (a token revoked twice in a row loses nothing).
        for pass in 0..2 {
            let (fetch, running, wait) = {
                let mut state = self.lock();
                if state.token.as_ref().is_some_and(|t| t.value != *sent) {
                    return true;
                }
                let now = Instant::now();
                let fetch = self.may_fetch(&mut state, now, true);
                let running = state.fetching && !fetch;
                let wait = state
                    .spaced_at
                    .map(|at| (at + FETCH_AGAIN_AFTER).saturating_duration_since(now));
                (fetch, running, wait)
            };
            if fetch || running {
                self.fetch_and_wait(fetch).await;
                return self.lock().token.as_ref().is_some_and(|t| t.value != *sent);
            }
            match wait {
                Some(wait) if pass == 0 => tokio::time::sleep(wait).await,
                _ => return false,
            }
        }
        false
    }

    /// [`Self::refresh_after`] the token kept now.
    pub async fn refresh_now(self: &Arc<Self>) -> bool {
        let sent = self
            .last_value()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        self.refresh_after(&sent).await
    }

    /// The last token fetched, whatever its age (for logs and tests).
    pub fn last_value(&self) -> Option<HeaderValue> {
        self.lock().token.as_ref().map(|t| t.value.clone())
    }

    /// Whether this caller is the one to fetch (then marked as fetching): none is under
    /// way, and the last failed or forced one is [`FETCH_AGAIN_AFTER`] old.
    fn may_fetch(&self, state: &mut State, now: Instant, forced: bool) -> bool {
        let spaced = state
            .spaced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= FETCH_AGAIN_AFTER);
        let start = !state.fetching && spaced;
        if start {
            state.fetching = true;
            if forced {
                state.spaced_at = Some(now);
            }
        }
        start
    }

    /// Starts the fetch this caller was given (if `started`) and waits for the one under
    /// way to end, at most the timeout.
    async fn fetch_and_wait(self: &Arc<Self>, started: bool) {
        let ended = self.fetched.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if started {
            self.spawn_fetch();
        } else if !self.lock().fetching {
            return;
        }
        tokio::time::timeout(self.config.timeout, ended).await.ok();
    }

    fn spawn_fetch(self: &Arc<Self>) {
        let me = self.clone();
        // Made before the task, so that a task never run (spawned as the runtime stops)
        // still marks the fetch over when it is dropped.
        let fetching = Fetching(self.clone());
        // Failures are logged where the caller's logs go (a test's subscriber, too).
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        tokio::spawn(async move {
            let result = tokio::time::timeout(me.config.timeout, me.fetch()).await;
            let result = result.unwrap_or_else(|_| {
                Err(OAuth2Error::Timeout {
                    url: me.shown.clone(),
                    within: me.config.timeout,
                })
            });
            let mut state = me.lock();
            match result {
                Ok(token) => {
                    state.token = Some(token);
                    // Released before `fetching` drops: its drop takes the lock too.
                    drop(state);
                }
                Err(error) => {
                    // Spaced from the failure's end: a fetch that timed out is not
                    // started again at once.
                    state.spaced_at = Some(Instant::now());
                    let warn = crate::retry::warn_again(&mut state.warned_at);
                    drop(state);
                    if warn {
                        tracing::dispatcher::with_default(&dispatch, || {
                            tracing::warn!(
                                %error,
                                "Cannot get an OAuth2 token; requests go without a valid one until one comes (logged once a minute at most)."
                            )
                        });
                    }
                }
            }
            drop(fetching);
        });
    }

    /// One fetch: the id and secret read again, Basic first unless the endpoint took
    /// them only in the form before.
    async fn fetch(&self) -> Result<Token, OAuth2Error> {
        let (id, secret) = tokio::task::spawn_blocking({
            let (id, secret) = (
                self.config.client_id.clone(),
                self.config.client_secret.clone(),
            );
            move || -> Result<(String, String), CredentialError> {
                Ok((
                    crate::credential::read_secret(&id, "client_id")?,
                    crate::credential::read_secret(&secret, "client_secret")?,
                ))
            }
        })
        .await
        .map_err(|e| OAuth2Error::Request {
            url: self.shown.clone(),
            error: e.to_string(),
        })??;
        let in_form = self.lock().in_form;
        if !in_form {
            // As Go's auto-detection: an error answer (a refusal, or a 2xx without a
            // token) has the form tried; no answer at all does not.
            match self.ask(&id, &secret, false).await {
                Err(OAuth2Error::Refused { .. } | OAuth2Error::BadAnswer { .. }) => {}
                other => return other,
            }
        }
        let token = self.ask(&id, &secret, true).await?;
        self.lock().in_form = true;
        Ok(token)
    }

    /// Asks the endpoint once, the id and secret in the form or in Basic.
    async fn ask(&self, id: &str, secret: &str, in_form: bool) -> Result<Token, OAuth2Error> {
        // As Go's `url.Values`: keys sorted, a key's values in order; `grant_type` in the
        // parameters replaces the default (the loader refuses the others it would clash
        // with).
        let mut form: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        let scope = self.config.scopes.join(" ");
        if !scope.is_empty() {
            form.insert("scope", vec![&scope]);
        }
        for (k, v) in &self.config.endpoint_params {
            form.entry(k.as_str()).or_default().push(v.as_str());
        }
        form.entry("grant_type")
            .or_insert_with(|| vec!["client_credentials"]);
        if in_form {
            form.insert("client_id", vec![id]);
            form.insert("client_secret", vec![secret]);
        }
        let body: String = form
            .iter()
            .flat_map(|(k, vs)| {
                vs.iter()
                    .map(move |v| format!("{}={}", form_escape(k), form_escape(v)))
            })
            .collect::<Vec<_>>()
            .join("&");
        let mut request = http::Request::post(self.config.token_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if !in_form {
            let pair = format!("{}:{}", form_escape(id), form_escape(secret));
            let mut basic = HeaderValue::from_str(&format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
            .map_err(|_| OAuth2Error::BadAnswer {
                url: self.shown.clone(),
                problem: "the client id or secret cannot be sent in a header".into(),
            })?;
            basic.set_sensitive(true);
            request = request.header(http::header::AUTHORIZATION, basic);
        }
        let request =
            request
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| OAuth2Error::Request {
                    url: self.shown.clone(),
                    error: e.to_string(),
                })?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| OAuth2Error::Request {
                url: self.shown.clone(),
                error: crate::forward::error_chain(&e),
            })?;
        let status = response.status();
        let form_answer = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.starts_with("application/x-www-form-urlencoded") || t.starts_with("text/plain")
            });
        let body = match Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            // An error page too long to read is still the status's refusal.
            Err(_) if !status.is_success() => Bytes::new(),
            Err(e) => {
                return Err(OAuth2Error::BadAnswer {
                    url: self.shown.clone(),
                    problem: format!("reading the answer: {e}"),
                })
            }
        };
        let answer = Answer::parse(&body, form_answer);
        if !status.is_success() {
            return Err(OAuth2Error::Refused {
                url: self.shown.clone(),
                status: status.as_u16(),
                detail: answer.ok().and_then(|a| a.error_detail()),
            });
        }
        let answer = answer.map_err(|problem| OAuth2Error::BadAnswer {
            url: self.shown.clone(),
            problem,
        })?;
        answer
            .token(Instant::now())
            .map_err(|problem| OAuth2Error::BadAnswer {
                url: self.shown.clone(),
                problem,
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl crate::credential::FetchedValue for TokenSource {
    fn value(self: Arc<Self>) -> crate::credential::BoxFuture<Option<HeaderValue>> {
        Box::pin(async move { TokenSource::value(&self).await })
    }

    fn refresh_after(self: Arc<Self>, sent: HeaderValue) -> crate::credential::BoxFuture<bool> {
        Box::pin(async move { TokenSource::refresh_after(&self, &sent).await })
    }

    fn last_value(&self) -> Option<HeaderValue> {
        TokenSource::last_value(self)
    }
}

/// A fetch under way: dropped (ended, failed, panicked or cancelled), it marks the fetch
/// over and wakes the requests waiting for it.
struct Fetching(Arc<TokenSource>);

impl Drop for Fetching {
    fn drop(&mut self) {
        self.0.lock().fetching = false;
        self.0.fetched.notify_waiters();
    }
}

/// A token endpoint's answer, JSON or a form (no `Debug`: it holds the token).
#[derive(Default, serde::Deserialize)]
struct Answer {
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl Answer {
    fn parse(body: &[u8], form: bool) -> Result<Answer, String> {
        if !form {
            return serde_json::from_slice(body)
                .map_err(|e| format!("the answer is not a JSON token: {e}"));
        }
        let text = std::str::from_utf8(body).map_err(|_| "the answer is not UTF-8".to_owned())?;
        let mut answer = Answer::default();
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = form_unescape(v);
            match k {
                "access_token" => answer.access_token = Some(v),
                "token_type" => answer.token_type = Some(v),
                "expires_in" => answer.expires_in = Some(serde_json::Value::String(v)),
                "error" => answer.error = Some(v),
                "error_description" => answer.error_description = Some(v),
                _ => {}
            }
        }
        Ok(answer)
    }

    /// `error: error_description`, if the answer carries an OAuth2 error.
    fn error_detail(&self) -> Option<String> {
        let error = self.error.as_deref()?;
        let detail: String = match &self.error_description {
            Some(d) => format!("{error}: {d}"),
            None => error.to_owned(),
        };
        Some(detail.chars().take(200).collect())
    }

    /// The header value and expiry, as Go's `oauth2.Token` makes them.
    fn token(self, now: Instant) -> Result<Token, String> {
        let access = self
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or("the answer has no access_token")?;
        let kind = match self.token_type.as_deref().unwrap_or_default() {
            t if t.eq_ignore_ascii_case("bearer") || t.is_empty() => "Bearer".to_owned(),
            t if t.eq_ignore_ascii_case("mac") => "MAC".to_owned(),
            t if t.eq_ignore_ascii_case("basic") => "Basic".to_owned(),
            t => t.to_owned(),
        };
        // As Go's `expirationTime`: an integer (or its text), at most 2^31 - 1 seconds;
        // 0 or none, no expiry; a negative one, already expired.
        let not_seconds =
            |v: &dyn std::fmt::Display| format!("expires_in {v} is not a whole number of seconds");
        let seconds: i64 = match &self.expires_in {
            None | Some(serde_json::Value::Null) => 0,
            Some(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| not_seconds(n))?,
            Some(serde_json::Value::String(s)) if s.is_empty() => 0,
            Some(serde_json::Value::String(s)) => s.parse().map_err(|_| not_seconds(s))?,
            Some(other) => return Err(not_seconds(other)),
        };
        let seconds = seconds.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        let expires = match seconds {
            0 => None,
            s if s < 0 => Some(now),
            s => now.checked_add(Duration::from_secs(s.unsigned_abs())),
        };
        let mut value = HeaderValue::from_str(&format!("{kind} {access}"))
            .map_err(|_| "the access_token has characters a header cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok(Token { value, expires })
    }
}

pub use crate::text::form_escape;

/// The reverse of [`form_escape`]; a malformed escape is kept as it is.
fn form_unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: the instants around a token's expiry, with a 5 minute buffer, and a
    /// token without expiry.
    /// Guarantees: fresh before the buffer, refreshed ahead inside it, expired at and after
    /// the expiry; a token without `expires_in` never expires, as in Go.
    #[test]
    fn freshness_follows_the_buffer() {
        let t0 = Instant::now();
        let expires = Some(t0 + Duration::from_secs(3600));
        let buffer = Duration::from_secs(300);
        let at = |s: u64| freshness(expires, t0 + Duration::from_secs(s), buffer);
        assert_eq!(at(0), Freshness::Fresh);
        assert_eq!(at(3299), Freshness::Fresh);
        assert_eq!(at(3300), Freshness::RefreshAhead);
        assert_eq!(at(3599), Freshness::RefreshAhead);
        assert_eq!(at(3600), Freshness::Expired);
        assert_eq!(
            freshness(None, t0 + Duration::from_secs(1 << 30), buffer),
            Freshness::Fresh
        );
        // A buffer longer than the token's life: refreshed ahead at once, still sent.
        let short = Some(t0 + Duration::from_secs(60));
        assert_eq!(freshness(short, t0, buffer), Freshness::RefreshAhead);
    }

    /// Scenario: answers as token endpoints write them: JSON with a number or a string
    /// for `expires_in`, lower-case `bearer`, a form, an error, no token.
    /// Guarantees: the header is `<Type> <token>` with Go's type names (`Bearer` when
    /// none), the expiry is `now + expires_in` (none for 0 or absent), an OAuth2 error's
    /// code and description are kept for the message, and a missing token is an error.
    #[test]
    fn answers_read_as_go_reads_them() {
        let now = Instant::now();
        let json = |s: &str| Answer::parse(s.as_bytes(), false).unwrap().token(now);
        let t = json(r#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#).unwrap();
        assert_eq!(t.value, "Bearer abc");
        assert_eq!(t.expires, Some(now + Duration::from_secs(3600)));
        let t = json(r#"{"access_token":"abc","expires_in":"120"}"#).unwrap();
        assert_eq!(t.value, "Bearer abc");
        assert_eq!(t.expires, Some(now + Duration::from_secs(120)));
        let t = json(r#"{"access_token":"abc","token_type":"MAC","expires_in":0}"#).unwrap();
        assert_eq!((t.value.to_str().unwrap(), t.expires), ("MAC abc", None));
        let t = json(r#"{"access_token":"abc","token_type":"DPoP"}"#).unwrap();
        assert_eq!(t.value, "DPoP abc");
        assert!(json(r#"{"token_type":"bearer"}"#)
            .unwrap_err()
            .contains("no access_token"));
        assert!(json(r#"{"access_token":"a","expires_in":"soon"}"#).is_err());
        // Whole seconds only, at most 2^31 - 1 of them; a negative count is expired.
        assert!(json(r#"{"access_token":"a","expires_in":3600.5}"#).is_err());
        let t = json(r#"{"access_token":"a","expires_in":9223372036854775807}"#).unwrap();
        assert_eq!(t.expires, Some(now + Duration::from_secs(i32::MAX as u64)));
        let t = json(r#"{"access_token":"a","expires_in":-5}"#).unwrap();
        assert_eq!(
            freshness(t.expires, now, Duration::ZERO),
            Freshness::Expired
        );
        let form = Answer::parse(b"access_token=a%2Bb&token_type=bearer&expires_in=60", true)
            .unwrap()
            .token(now)
            .unwrap();
        assert_eq!(form.value, "Bearer a+b");
        assert_eq!(form.expires, Some(now + Duration::from_secs(60)));
        let refused = Answer::parse(
            br#"{"error":"invalid_client","error_description":"Client authentication failed"}"#,
            false,
        )
        .unwrap();
        assert_eq!(
            refused.error_detail().as_deref(),
            Some("invalid_client: Client authentication failed")
        );
        assert!(Answer::parse(b"<html>", false).is_err());
    }

    use crate::test_util::{token_endpoint, TokenRequests};

    fn credentials(url: Uri) -> ClientCredentials {
        ClientCredentials {
            token_url: url,
            client_id: Secret::Inline("gate way".into()),
            client_secret: Secret::Inline("s3:cr+t".into()),
            scopes: vec!["traces.write".into(), "tenant".into()],
            endpoint_params: vec![("audience".into(), "https://api.example".into())],
            timeout: Duration::from_secs(5),
            expiry_buffer: Duration::from_secs(300),
            tls: None,
            proxy: None,
        }
    }

    const JSON: &str = "application/json";

    /// Scenario: a token endpoint that issues hour-long tokens; three requests ask.
    /// Guarantees: one fetch, its form as Go's clientcredentials writes it (`url.Values`:
    /// keys sorted; grant type, scopes joined by a space, the extra parameters) with the
    /// id and secret in Basic, each form-escaped first; the token is sent as
    /// `Bearer <token>` and kept.
    #[tokio::test]
    async fn a_token_is_fetched_once_and_kept() {
        let (url, seen, _): (Uri, TokenRequests, _) = token_endpoint(|_, _| {
            (
                200,
                JSON,
                r#"{"access_token":"t1","token_type":"bearer","expires_in":3600}"#.into(),
            )
        })
        .await
        .unwrap();
        let source = TokenSource::new(credentials(url));
        for _ in 0..3 {
            assert_eq!(source.value().await.unwrap(), "Bearer t1");
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let basic = base64::engine::general_purpose::STANDARD.encode("gate+way:s3%3Acr%2Bt");
        assert_eq!(
            seen[0].0.as_deref(),
            Some(format!("Basic {basic}").as_str())
        );
        assert_eq!(
            seen[0].1,
            "audience=https%3A%2F%2Fapi.example&grant_type=client_credentials&scope=traces.write+tenant"
        );
    }

    /// Scenario: an endpoint that refuses credentials in Basic and takes them in the form.
    /// Guarantees: as Go's auto-detection, the form is tried after Basic is refused, and
    /// kept: a forced refresh asks once, in the form, and brings a new token.
    #[tokio::test]
    async fn credentials_go_in_the_form_when_basic_is_refused() {
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let issued = count.clone();
        let (url, seen, _): (Uri, TokenRequests, _) = token_endpoint(move |auth, form| {
            if auth.is_some() {
                return (401, JSON, r#"{"error":"invalid_client"}"#.into());
            }
            assert!(
                form.contains("client_id=gate+way&client_secret=s3%3Acr%2Bt"),
                "{form}"
            );
            let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            (
                200,
                JSON,
                format!(r#"{{"access_token":"t{n}","expires_in":3600}}"#),
            )
        })
        .await
        .unwrap();
        let source = TokenSource::new(credentials(url));
        assert_eq!(source.value().await.unwrap(), "Bearer t0");
        assert!(source.refresh_now().await);
        assert_eq!(source.value().await.unwrap(), "Bearer t1");
        let seen = seen.lock().unwrap().clone();
        let basic: Vec<bool> = seen.iter().map(|s| s.0.is_some()).collect();
        assert_eq!(basic, [true, false, false], "{seen:?}");
    }

    /// Scenario: a token whose life is shorter than the expiry buffer.
    /// Guarantees: the request is sent at once with it while the next is fetched in the
    /// background; once that one comes, requests carry it.
    #[tokio::test]
    async fn a_token_about_to_expire_is_replaced_in_the_background() {
        let (url, seen, asked): (Uri, TokenRequests, _) =
            token_endpoint(crate::test_util::issuing_tokens(60))
                .await
                .unwrap();
        let source = TokenSource::new(credentials(url));
        // The first waits for its fetch; the token is within the buffer at once.
        assert_eq!(source.value().await.unwrap(), "Bearer t0");
        let stored = source.fetched.notified();
        tokio::pin!(stored);
        stored.as_mut().enable();
        assert_eq!(source.value().await.unwrap(), "Bearer t0");
        // The background fetch ends (its token stored) within the bound.
        tokio::time::timeout(Duration::from_secs(5), stored)
            .await
            .unwrap();
        assert_eq!(source.last_value().unwrap(), "Bearer t1");
        assert_eq!(seen.lock().unwrap().len(), 2);
        drop(asked);
    }

    /// Scenario: an endpoint that fails (500 with an OAuth2 error), asked twice in a row,
    /// then a refusal asking for a new token.
    /// Guarantees: no token (`None`), and the failure is not fetched again within
    /// [`FETCH_AGAIN_AFTER`]; the refusal waits for the next fetch allowed (a real wait
    /// under a second), which fails too: no resend.
    #[tokio::test]
    async fn a_failing_endpoint_is_not_hammered() {
        let (url, seen, _) =
            token_endpoint(|_, _| (500, JSON, r#"{"error":"temporarily_unavailable"}"#.into()))
                .await
                .unwrap();
        let source = TokenSource::new(credentials(url));
        assert!(source.value().await.is_none());
        assert!(source.value().await.is_none());
        // Basic, then the form: one fetch's two tries.
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert!(!source.refresh_now().await);
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    /// Scenario: five requests at once with no token yet; then a request refused with a
    /// token another request has already replaced, and one refused while a fetch runs;
    /// then the secret file rotated and a refusal forcing a fetch.
    /// Guarantees: one fetch for the five; a refusal of an old token is worth a resend at
    /// once, without fetching; a refusal during a fetch waits for it, and one within a
    /// second of a forced fetch for the next allowed (a real wait under a second); every
    /// fetch reads the secret file again; `grant_type` in `endpoint_params` replaces the
    /// default.
    #[tokio::test]
    async fn fetches_are_shared_and_refusals_resend_with_the_newest_token() {
        let (url, seen, _): (Uri, TokenRequests, _) =
            token_endpoint(crate::test_util::issuing_tokens(3600))
                .await
                .unwrap();
        let dir = crate::test_util::scratch_dir("oauth2-rotate").unwrap();
        let secret_file = dir.join("secret");
        std::fs::write(&secret_file, "first\n").unwrap();
        let source = TokenSource::new(ClientCredentials {
            client_secret: Secret::File(secret_file.clone()),
            endpoint_params: vec![("grant_type".into(), "urn:example:custom".into())],
            ..credentials(url)
        });
        let (a, b, c, d, e) = tokio::join!(
            source.value(),
            source.value(),
            source.value(),
            source.value(),
            source.value()
        );
        for v in [a, b, c, d, e] {
            assert_eq!(v.unwrap(), "Bearer t0");
        }
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert!(seen.lock().unwrap()[0]
            .1
            .contains("grant_type=urn%3Aexample%3Acustom"));
        // Refused with a token already replaced: resend at once, nothing fetched.
        assert!(
            source
                .refresh_after(&HeaderValue::from_static("Bearer old"))
                .await
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
        // The secret rotated; a refusal of the current token fetches with the new one.
        std::fs::write(&secret_file, "second\n").unwrap();
        assert!(
            source
                .refresh_after(&HeaderValue::from_static("Bearer t0"))
                .await
        );
        let basic = |secret: &str| {
            let pair = format!("gate+way:{secret}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        let seen_now = seen.lock().unwrap().clone();
        assert_eq!(seen_now[0].0.as_deref(), Some(basic("first").as_str()));
        assert_eq!(seen_now[1].0.as_deref(), Some(basic("second").as_str()));
        assert_eq!(source.last_value().unwrap(), "Bearer t1");
        // t1 refused too, within a second of the forced fetch that brought it: the request
        // waits for the next fetch allowed (a real wait under a second) instead of failing.
        let asked_at = Instant::now();
        assert!(
            source
                .refresh_after(&HeaderValue::from_static("Bearer t1"))
                .await
        );
        assert_eq!(source.last_value().unwrap(), "Bearer t2");
        assert!(asked_at.elapsed() >= Duration::from_millis(500), "no wait");
        // A refusal of t2 while a fetch it did not start runs: it waits for that one.
        {
            let mut state = source.lock();
            state.spaced_at = None;
            assert!(source.may_fetch(&mut state, Instant::now(), false));
        }
        source.spawn_fetch();
        assert!(
            source
                .refresh_after(&HeaderValue::from_static("Bearer t2"))
                .await
        );
        assert_eq!(source.last_value().unwrap(), "Bearer t3");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: values with characters a form must escape. Guarantees: Go's
    /// `url.QueryEscape` output, and the reverse.
    #[test]
    fn form_escaping_is_go_s() {
        assert_eq!(
            form_escape("a b+c/d@e:f~g.h-i_j"),
            "a+b%2Bc%2Fd%40e%3Af~g.h-i_j"
        );
        assert_eq!(form_escape("é"), "%C3%A9");
        assert_eq!(form_unescape("a+b%2Bc%2Fd%zz"), "a b+c/d%zz");
    }
}
