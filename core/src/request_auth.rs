//! What an exporter's authenticator puts on each of its requests: the header rules of a
//! `headers_setter` (the Collector's extension, contrib v0.161), then one credential's
//! header ([`Credential`]: `bearertokenauth`, `basicauth`, `oauth2client`, or the
//! `headers_setter`'s `additional_auth`).
//!
//! Built by the gateway's `export::auth` from its `extensions:` block; applied to every
//! request, the rules in the order written (each seeing what the ones before it left),
//! then the credential, whose header wins: by the gateway's OTLP/HTTP exporter to the
//! request's headers, the exporter's own in them (the Collector's auth round-tripper runs
//! after its header one); by the gRPC client ([`crate::forward::GrpcClient::with_auth`])
//! to a map of their own, as the Collector's per-RPC credentials fill one.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::credential::Credential;

/// A `headers_setter` header: what to do with `name`.
#[derive(Debug)]
pub struct HeaderRule {
    /// The header (lower case).
    pub name: HeaderName,
    /// What to do with it.
    pub action: HeaderAction,
    /// The value it is given (unused by [`HeaderAction::Delete`]).
    pub value: RuleValue,
}

/// The Collector's four header actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderAction {
    /// Set when the request has no value for it yet (or an empty one).
    Insert,
    /// Set when the request has a value for it already.
    Update,
    /// Set in any case.
    Upsert,
    /// Removed.
    Delete,
}

/// Where a rule's value comes from.
pub enum RuleValue {
    /// Written in the config (`value`, or a `from_context`'s `default_value`).
    Fixed(HeaderValue),
    /// A file's text, trimmed (`value_file`), read again as a [`Credential`]'s files are.
    File(Credential),
}

impl std::fmt::Debug for RuleValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuleValue::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            RuleValue::File(c) => f.debug_tuple("File").field(c).finish(),
        }
    }
}

/// The header rules and the credential one exporter sends with every request, or the
/// AWS signer (`sigv4auth`) that signs each one.
#[derive(Debug, Default)]
pub struct RequestAuth {
    rules: Vec<HeaderRule>,
    credential: Option<Credential>,
    signer: Option<crate::aws::SigV4>,
}

/// The values a request was sent with: after a refusal, [`RequestAuth::refresh_after`]
/// tells from them whether newer ones exist.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    /// The values of the rules read from files, in rule order.
    files: Vec<HeaderValue>,
    /// The credential's value.
    credential: Option<HeaderValue>,
    /// The AWS credentials the request was signed with (`sigv4auth`).
    signed: Option<crate::aws::AwsCredentials>,
}

impl From<Credential> for RequestAuth {
    fn from(credential: Credential) -> Self {
        RequestAuth::new(Vec::new(), Some(credential))
    }
}

impl RequestAuth {
    /// `rules` applied in order, then `credential`'s header.
    pub fn new(rules: Vec<HeaderRule>, credential: Option<Credential>) -> Self {
        RequestAuth {
            rules,
            credential,
            signer: None,
        }
    }

    /// Requests signed by `signer` (AWS SigV4), over HTTP only.
    pub fn signed(signer: crate::aws::SigV4) -> Self {
        RequestAuth::default().with_signer(signer)
    }

    /// These rules, then `signer`'s signature over the request they leave (a
    /// `headers_setter` chained to a `sigv4auth`).
    pub fn with_signer(mut self, signer: crate::aws::SigV4) -> Self {
        self.signer = Some(signer);
        self
    }

    /// The AWS signer, if requests are signed.
    pub fn signer(&self) -> Option<&crate::aws::SigV4> {
        self.signer.as_ref()
    }

    /// Signs an HTTP request whose headers are all set (after [`RequestAuth::apply`]),
    /// when there is a signer; noted in `sent`. `Err` when it cannot be signed (no AWS
    /// credentials yet: held and tried again).
    pub async fn sign(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &mut HeaderMap,
        body: &[u8],
        sent: &mut Sent,
    ) -> Result<(), String> {
        if let Some(signer) = &self.signer {
            sent.signed = Some(signer.sign_request(method, uri, headers, body).await?);
        }
        Ok(())
    }

    /// The credential, if there is one.
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }

    /// Applies the rules to `headers` (a request's, with the exporter's own headers in
    /// it) and sets the credential's header: the values sent. `Err` when the credential
    /// has no value yet (a token endpoint that has not answered): the request is better
    /// held and tried again than sent without one.
    pub async fn apply(&self, headers: &mut HeaderMap) -> Result<Sent, String> {
        let mut sent = Sent::default();
        for rule in &self.rules {
            let value = match &rule.value {
                RuleValue::Fixed(v) => v.clone(),
                RuleValue::File(c) => {
                    let v = c.value().await;
                    sent.files.push(v.clone());
                    v
                }
            };
            // As the Collector's HTTP client: a header with an empty value counts as absent.
            let present = headers.get(&rule.name).is_some_and(|v| !v.is_empty());
            match rule.action {
                HeaderAction::Insert if present => {}
                HeaderAction::Update if !present => {}
                HeaderAction::Delete => {
                    headers.remove(&rule.name);
                }
                HeaderAction::Insert | HeaderAction::Update | HeaderAction::Upsert => {
                    headers.insert(rule.name.clone(), value);
                }
            }
        }
        if let Some(c) = &self.credential {
            let (name, value) = c.header_for_request().await?;
            sent.credential = Some(value.clone());
            headers.insert(name, value);
        }
        Ok(sent)
    }

    /// After a refusal of a request sent with `sent`: whether any value is newer now (a
    /// file rotated, a token fetched), so that the request is worth sending again. Every
    /// file and the credential are asked (each spaces its own forced reads).
    pub async fn refresh_after(&self, sent: &Sent) -> bool {
        let mut newer = false;
        let files = self.rules.iter().filter_map(|r| match &r.value {
            RuleValue::File(c) => Some(c),
            RuleValue::Fixed(_) => None,
        });
        for (c, value) in files.zip(&sent.files) {
            newer |= c.refresh_after(value).await;
        }
        if let (Some(c), Some(value)) = (&self.credential, &sent.credential) {
            newer |= c.refresh_after(value).await;
        }
        if let (Some(signer), Some(key)) = (&self.signer, &sent.signed) {
            newer |= signer.credentials.refresh(key).await;
        }
        newer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::{Scheme, Secret};

    fn fixed(name: &str, action: HeaderAction, value: &str) -> HeaderRule {
        HeaderRule {
            name: HeaderName::from_bytes(name.as_bytes()).unwrap(),
            action,
            value: RuleValue::Fixed(HeaderValue::from_str(value).unwrap()),
        }
    }

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    fn get<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
        headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[tokio::test]
    async fn actions_act_as_the_collectors_on_the_headers_already_there() {
        let auth = RequestAuth::new(
            vec![
                fixed("x-scope-orgid", HeaderAction::Insert, "tenant-a"),
                fixed("x-kept", HeaderAction::Insert, "not set: present"),
                fixed(
                    "x-empty",
                    HeaderAction::Insert,
                    "set: empty counts as absent",
                ),
                fixed("x-missing", HeaderAction::Update, "not set: absent"),
                fixed("x-kept-too", HeaderAction::Update, "updated"),
                fixed("x-dropped", HeaderAction::Delete, ""),
                fixed("x-over", HeaderAction::Upsert, "upserted"),
            ],
            None,
        );
        let mut headers = map(&[
            ("x-kept", "exporter's"),
            ("x-empty", ""),
            ("x-kept-too", "exporter's"),
            ("x-dropped", "exporter's"),
            ("x-over", "exporter's"),
        ]);
        auth.apply(&mut headers).await.unwrap();
        assert_eq!(get(&headers, "x-scope-orgid"), Some("tenant-a"));
        assert_eq!(get(&headers, "x-kept"), Some("exporter's"));
        assert_eq!(
            get(&headers, "x-empty"),
            Some("set: empty counts as absent")
        );
        assert_eq!(get(&headers, "x-missing"), None);
        assert_eq!(get(&headers, "x-kept-too"), Some("updated"));
        assert_eq!(get(&headers, "x-dropped"), None);
        assert_eq!(get(&headers, "x-over"), Some("upserted"));
        assert_eq!(headers.len(), 5);
    }

    #[tokio::test]
    async fn rules_see_the_rules_before_them_and_the_credential_wins() {
        let credential = Credential::bearer(Secret::Inline("t0k".into())).unwrap();
        let auth = RequestAuth::new(
            vec![
                fixed("x-a", HeaderAction::Upsert, "1"),
                fixed("x-a", HeaderAction::Update, "2"),
                fixed("x-b", HeaderAction::Update, "never: not there"),
                fixed("authorization", HeaderAction::Upsert, "overwritten"),
            ],
            Some(credential),
        );
        let mut headers = HeaderMap::new();
        let sent = auth.apply(&mut headers).await.unwrap();
        assert_eq!(get(&headers, "x-a"), Some("2"));
        assert_eq!(get(&headers, "x-b"), None);
        assert_eq!(get(&headers, "authorization"), Some("Bearer t0k"));
        assert_eq!(
            sent.credential,
            Some(HeaderValue::from_static("Bearer t0k"))
        );
        // An inline token cannot change: a refusal is not worth a resend.
        assert!(!auth.refresh_after(&sent).await);
    }

    /// A `value_file` rule: its text trimmed is sent; after a refusal, a file rotated
    /// since the request was sent makes it worth a resend, an unchanged one does not
    /// (paused clock: forced reads of one file are a second apart).
    #[tokio::test(start_paused = true)]
    async fn a_value_file_is_read_and_a_rotated_one_is_worth_a_resend() {
        let dir =
            std::env::temp_dir().join(format!("tailgate-request-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("org");
        std::fs::write(&path, "  tenant-a\n").unwrap();
        let from_file = Credential::new(
            "x-scope-orgid",
            Scheme::Token {
                scheme: String::new(),
                token: Secret::File(path.clone()),
            },
        )
        .unwrap();
        let auth = RequestAuth::new(
            vec![HeaderRule {
                name: HeaderName::from_static("x-scope-orgid"),
                action: HeaderAction::Upsert,
                value: RuleValue::File(from_file),
            }],
            None,
        );
        let mut headers = HeaderMap::new();
        let sent = auth.apply(&mut headers).await.unwrap();
        assert_eq!(get(&headers, "x-scope-orgid"), Some("tenant-a"));
        assert!(!auth.refresh_after(&sent).await, "the file did not change");
        std::fs::write(&path, "tenant-b").unwrap();
        tokio::time::advance(crate::credential::FORCED_REREAD_EVERY).await;
        assert!(auth.refresh_after(&sent).await, "the file changed");
        let mut headers = HeaderMap::new();
        auth.apply(&mut headers).await.unwrap();
        assert_eq!(get(&headers, "x-scope-orgid"), Some("tenant-b"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
