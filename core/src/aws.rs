//! AWS credentials for [`crate::sigv4`]'s signatures ([`SigV4`] signs with them), found as the AWS SDKs' default chain finds them
//! (the Collector's `sigv4auth` loads that chain): the `AWS_ACCESS_KEY_ID` variables, a
//! profile of the shared credentials file, a web identity token (EKS IRSA:
//! `AWS_ROLE_ARN`, `AWS_WEB_IDENTITY_TOKEN_FILE`), a container endpoint (ECS, EKS Pod
//! Identity: `AWS_CONTAINER_CREDENTIALS_*`), then EC2 instance metadata (IMDSv2); and,
//! on top of any of them, STS `AssumeRole` (the extension's `assume_role`).
//!
//! The chain is read when the gateway's config is loaded ([`Source::from_env`]); fetched
//! credentials are fetched when a request first asks and kept as [`crate::fetched`] keeps
//! values (until five minutes before they expire; one request fetches while the others
//! sign with the kept ones). Requests that find none are held and retried by the
//! exporter, as for an OAuth2 token.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::Full;

use crate::fetched::{Expiring, FetchCache};
pub use crate::sigv4::AwsCredentials;
use crate::sigv4::{infer_scope, sign, Scope};
use crate::tls::{ClientTls, Transport};

/// A signer for one extension: the service and region it signs for (or infers from the
/// endpoint), and where its credentials come from.
#[derive(Debug)]
pub struct SigV4 {
    /// `service` as configured (empty: inferred from the endpoint).
    pub service: String,
    /// `region` as configured (empty: inferred from the endpoint).
    pub region: String,
    /// The credentials.
    pub credentials: Arc<CredentialsProvider>,
}

impl SigV4 {
    /// The service and region a request to `host` is signed for: the configured ones, else
    /// as the Collector infers them from AWS endpoint names (`xray.us-east-1.amazonaws.com`
    /// is `xray` in `us-east-1`; `aps-workspaces.…` is `aps`, `search-…` is `es`, `logs.…`
    /// is `logs`). `None` when either is still unknown.
    pub fn scope_for(&self, host: &str) -> Option<(String, String)> {
        infer_scope(&self.service, &self.region, host)
    }

    /// Signs a request: its credentials asked for (fetched if need be), then [`sign`] at
    /// the current time; the credentials signed with. `Err` when there are no
    /// credentials (yet) or no scope for its host.
    pub async fn sign_request(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        body: &[u8],
    ) -> Result<AwsCredentials, String> {
        let host = uri.host().unwrap_or_default();
        let (service, region) = self.scope_for(host).ok_or_else(|| {
            format!("sigv4auth: cannot tell the AWS service and region of {host}; set service and region")
        })?;
        let credentials = self.credentials.credentials().await?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        sign(
            &credentials,
            &Scope {
                region: &region,
                service: &service,
            },
            method,
            uri,
            headers,
            body,
            now,
        )?;
        Ok(credentials)
    }
}

/// Where credentials come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Known at load: the `AWS_ACCESS_KEY_ID` variables or a shared credentials file.
    Fixed {
        /// The credentials.
        credentials: AwsCredentials,
        /// Where they were found, for messages.
        from: String,
    },
    /// STS `AssumeRoleWithWebIdentity` with the token in a file (EKS IRSA).
    WebIdentity {
        /// The role.
        role_arn: String,
        /// The token, read for every fetch (Kubernetes rotates it).
        token_file: PathBuf,
        /// The session's name.
        session_name: String,
        /// The STS endpoint.
        sts: Uri,
    },
    /// A container credentials endpoint (ECS, EKS Pod Identity).
    Container {
        /// The endpoint.
        uri: Uri,
        /// Its authorization token: a value, or a file read for every fetch.
        token: Option<ContainerToken>,
    },
    /// EC2 instance metadata, IMDSv2.
    Imds {
        /// `http://169.254.169.254` unless `AWS_EC2_METADATA_SERVICE_ENDPOINT` says otherwise.
        base: Uri,
    },
    /// STS `AssumeRole`, signed with the credentials of another source.
    AssumeRole {
        /// The credentials the request to STS is signed with.
        base: Arc<CredentialsProvider>,
        /// The role.
        role_arn: String,
        /// The session's name.
        session_name: String,
        /// The STS endpoint.
        sts: Uri,
        /// The region STS is signed for.
        region: String,
    },
}

/// A container endpoint's authorization token.
#[derive(Clone)]
pub enum ContainerToken {
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
    Value(String),
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
    File(PathBuf),
}

impl std::fmt::Debug for ContainerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ContainerToken::Value(_) => f.write_str("Value(<redacted>)"),
            ContainerToken::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl Source {
    /// The SDKs' default chain over the variables `var` gives (the process's, in the
    /// gateway) and `home` (for `~/.aws/credentials`): the first source that is
    /// configured. `region` is the one STS is asked in.
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        home: Option<PathBuf>,
        region: &str,
    ) -> Result<Source, String> {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        if let (Some(id), Some(secret)) = (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
            let session_token = set("AWS_SESSION_TOKEN");
            let from = match session_token {
                Some(_) => "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN",
                None => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            };
            return Ok(Source::Fixed {
                credentials: AwsCredentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token,
                    expires: None,
                },
                from: from.into(),
            });
        }
        let file = set("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.map(|h| h.join(".aws/credentials")));
        let profile = set("AWS_PROFILE").unwrap_or_else(|| "default".into());
        let named = set("AWS_PROFILE").is_some();
        match file {
            Some(file) if file.is_file() => {
                let text = crate::config::read_text(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                if let Some(credentials) = profile_credentials(&text, &profile) {
                    return Ok(Source::Fixed {
                        credentials,
                        from: format!("profile {profile} of {}", file.display()),
                    });
                }
                // As the SDKs: a profile asked for by name must be there.
                if named {
                    return Err(format!(
                        "AWS_PROFILE {profile:?} has no aws_access_key_id and aws_secret_access_key in {} (profiles of ~/.aws/config are not read)",
                        file.display()
                    ));
                }
            }
            _ if named => {
                return Err(format!(
                    "AWS_PROFILE {profile:?} is set and there is no shared credentials file{}",
                    file.map(|f| format!(" ({})", f.display()))
                        .unwrap_or_default()
                ))
            }
            _ => {}
        }
        if let (Some(token_file), Some(role_arn)) =
            (set("AWS_WEB_IDENTITY_TOKEN_FILE"), set("AWS_ROLE_ARN"))
        {
            return Ok(Source::WebIdentity {
                role_arn,
                token_file: token_file.into(),
                session_name: set("AWS_ROLE_SESSION_NAME").unwrap_or_else(session_name),
                sts: sts_endpoint(var, region)?,
            });
        }
        let token = set("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
            .map(|f| ContainerToken::File(f.into()))
            .or_else(|| set("AWS_CONTAINER_AUTHORIZATION_TOKEN").map(ContainerToken::Value));
        if let Some(relative) = set("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
            return Ok(Source::Container {
                uri: parse_uri(&format!("http://169.254.170.2{relative}"))?,
                token,
            });
        }
        if let Some(full) = set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
            return Ok(Source::Container {
                uri: parse_uri(&full)?,
                token,
            });
        }
        if set("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Err(
                "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
                        a shared credentials file, a web identity (AWS_ROLE_ARN and \
                        AWS_WEB_IDENTITY_TOKEN_FILE) or a container endpoint; instance metadata \
                        is disabled (AWS_EC2_METADATA_DISABLED)"
                    .into(),
            );
        }
        Ok(Source::Imds {
            base: parse_uri(
                &set("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                    .unwrap_or_else(|| "http://169.254.169.254".into()),
            )?,
        })
    }

    /// Where the credentials come from, in words, for the start log and `--check`.
    pub fn describe(&self) -> String {
        match self {
            Source::Fixed { from, .. } => from.clone(),
            Source::WebIdentity { role_arn, sts, .. } => {
                format!("web identity for {role_arn} from {sts}")
            }
            Source::Container { uri, .. } => format!("the container endpoint {uri}"),
            Source::Imds { base } => format!("EC2 instance metadata at {base}"),
            Source::AssumeRole { base, role_arn, .. } => {
                format!("{role_arn} assumed with {}", base.source.describe())
            }
        }
    }
}

/// A session name for a role, as the SDKs make one when none is set.
fn session_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("tailgate-{nanos}")
}

/// The STS endpoint: `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`, else the region's
/// (`https://sts.<region>.amazonaws.com`), else the global one.
pub fn sts_endpoint(var: &dyn Fn(&str) -> Option<String>, region: &str) -> Result<Uri, String> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let url = set("AWS_ENDPOINT_URL_STS")
        .or_else(|| set("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| match region {
            "" => "https://sts.amazonaws.com".into(),
            r => format!("https://sts.{r}.amazonaws.com"),
        });
    parse_uri(&url)
}

fn parse_uri(url: &str) -> Result<Uri, String> {
    crate::endpoint::parse(url, crate::endpoint::Bare::Refused)
        .map(crate::endpoint::without_default_port)
        .map_err(|e| e.to_string())
}

/// A profile's keys in a shared credentials file (INI: `[name]`, `key = value`).
fn profile_credentials(text: &str, profile: &str) -> Option<AwsCredentials> {
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = Some(v.trim().to_owned()).filter(|v| !v.is_empty());
            match k.trim().to_ascii_lowercase().as_str() {
                "aws_access_key_id" => id = v,
                "aws_secret_access_key" => secret = v,
                "aws_session_token" => token = v,
                _ => {}
            }
        }
    }
    Some(AwsCredentials {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
        expires: None,
    })
}

/// Credentials from one [`Source`], fetched and kept as the module says.
pub struct CredentialsProvider {
    source: Source,
    client: Transport<Full<Bytes>>,
    cache: FetchCache<AwsCredentials>,
}

impl std::fmt::Debug for CredentialsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsProvider")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl CredentialsProvider {
    /// A provider for `source`: fetches take at most `timeout`, over TLS as `tls` says
    /// (for an `https://` STS endpoint) and through `proxy` when one is given.
    pub fn new(
        source: Source,
        timeout: Duration,
        tls: Option<&ClientTls>,
        proxy: Option<&crate::proxy::Proxy>,
    ) -> Self {
        let client = crate::fetched::client(timeout, tls, proxy);
        CredentialsProvider {
            cache: FetchCache::new(
                format!("AWS credentials from {}", source.describe()),
                timeout,
            ),
            source,
            client,
        }
    }

    /// Fixed credentials (tests, and the variables' keys).
    pub fn fixed(credentials: AwsCredentials) -> Self {
        CredentialsProvider::new(
            Source::Fixed {
                credentials,
                from: "the config".into(),
            },
            Duration::from_secs(10),
            None,
            None,
        )
    }

    /// Where the credentials come from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// The credentials for the next request: kept ones while they are fresh; fetched
    /// ones otherwise (see the module). `Err` when there are none that work. (Boxed: an
    /// `AssumeRole` source asks the provider under it.)
    pub fn credentials(
        &self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<AwsCredentials, String>> + Send + '_>,
    > {
        Box::pin(self.credentials_now())
    }

    async fn credentials_now(&self) -> Result<AwsCredentials, String> {
        if let Source::Fixed { credentials, .. } = &self.source {
            return Ok(credentials.clone());
        }
        self.cache.get(|| self.fetch_expiring()).await
    }

    /// After a request signed with `sent` was refused (403): newer credentials, fetched
    /// now unless kept already (see [`crate::fetched`]); `false` for fixed ones. Whether
    /// they changed.
    pub async fn refresh(&self, sent: &AwsCredentials) -> bool {
        if matches!(self.source, Source::Fixed { .. }) {
            return false;
        }
        self.cache.refresh(sent, || self.fetch_expiring()).await
    }

    async fn fetch_expiring(&self) -> Result<Expiring<AwsCredentials>, String> {
        let c = self.fetch().await?;
        let expires = c.expires;
        Ok((c, expires))
    }

    async fn fetch(&self) -> Result<AwsCredentials, String> {
        match &self.source {
            Source::Fixed { credentials, .. } => Ok(credentials.clone()),
            Source::WebIdentity {
                role_arn,
                token_file,
                session_name,
                sts,
            } => {
                let token = crate::credential::read_secret(
                    &crate::credential::Secret::File(token_file.clone()),
                    "web identity token",
                )
                .map_err(|e| e.to_string())?;
                let body = form(&[
                    ("Action", "AssumeRoleWithWebIdentity"),
                    ("RoleArn", role_arn),
                    ("RoleSessionName", session_name),
                    ("Version", "2011-06-15"),
                    ("WebIdentityToken", &token),
                ]);
                let request = sts_request(sts, body.clone())?;
                let (status, answer) = self.call(request).await?;
                sts_credentials(status, &answer)
            }
            Source::AssumeRole {
                base,
                role_arn,
                session_name,
                sts,
                region,
            } => {
                let body = form(&[
                    ("Action", "AssumeRole"),
                    ("RoleArn", role_arn),
                    ("RoleSessionName", session_name),
                    ("Version", "2011-06-15"),
                ]);
                let mut request = sts_request(sts, body.clone())?;
                let signing = base.credentials().await?;
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default();
                let uri = request.uri().clone();
                sign(
                    &signing,
                    &Scope {
                        region,
                        service: "sts",
                    },
                    &Method::POST,
                    &uri,
                    request.headers_mut(),
                    body.as_bytes(),
                    now,
                )?;
                let (status, answer) = self.call(request).await?;
                sts_credentials(status, &answer)
            }
            Source::Container { uri, token } => {
                let mut request = Request::get(uri.clone());
                if let Some(token) = token {
                    let value = match token {
                        ContainerToken::Value(v) => v.clone(),
                        ContainerToken::File(path) => crate::credential::read_secret(
                            &crate::credential::Secret::File(path.clone()),
                            "container authorization token",
                        )
                        .map_err(|e| e.to_string())?,
                    };
                    request = request.header(http::header::AUTHORIZATION, value);
                }
                let request = request
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let (status, answer) = self.call(request).await?;
                json_credentials(status, &answer)
            }
            Source::Imds { base } => {
                let at = |path: &str| parse_uri(&format!("{base}{path}"));
                let request = Request::put(at("latest/api/token")?)
                    .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let (status, token) = self.call(request).await?;
                if !status.is_success() {
                    return Err(format!("instance metadata token: HTTP {status}"));
                }
                let token = String::from_utf8_lossy(&token).trim().to_owned();
                let get = |uri: Uri| {
                    Request::get(uri)
                        .header("x-aws-ec2-metadata-token", token.as_str())
                        .body(Full::new(Bytes::new()))
                        .map_err(|e| e.to_string())
                };
                let roles = "latest/meta-data/iam/security-credentials/";
                let (status, role) = self.call(get(at(roles)?)?).await?;
                if !status.is_success() {
                    return Err(format!(
                        "instance metadata: HTTP {status} for the instance's role (has the instance a role?)"
                    ));
                }
                let role = String::from_utf8_lossy(&role);
                let role = role.lines().next().unwrap_or_default().trim();
                let (status, answer) = self.call(get(at(&format!("{roles}{role}"))?)?).await?;
                json_credentials(status, &answer)
            }
        }
    }

    /// One request and its answer.
    async fn call(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(http::StatusCode, Bytes), String> {
        crate::fetched::exchange(&self.client, request).await
    }
}

/// A form body, values escaped.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                crate::text::form_escape(k),
                crate::text::form_escape(v)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn sts_request(sts: &Uri, body: String) -> Result<Request<Full<Bytes>>, String> {
    Request::post(sts.clone())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())
}

/// The text of the first `<tag>…</tag>` in an XML answer.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].trim())
}

/// Credentials from an STS answer (`AssumeRole`, `AssumeRoleWithWebIdentity`), or its
/// error's code and message.
fn sts_credentials(status: http::StatusCode, answer: &[u8]) -> Result<AwsCredentials, String> {
    let xml = String::from_utf8_lossy(answer);
    if !status.is_success() {
        return Err(format!(
            "STS refused: HTTP {status}{}",
            match (xml_text(&xml, "Code"), xml_text(&xml, "Message")) {
                (Some(code), Some(message)) => format!(": {code}: {message}"),
                (Some(code), None) => format!(": {code}"),
                _ => String::new(),
            }
        ));
    }
    let get = |tag| {
        xml_text(&xml, tag)
            .filter(|v| !v.is_empty())
            .map(xml_unescape)
            .ok_or_else(|| format!("STS answer without {tag}"))
    };
    Ok(AwsCredentials {
        access_key_id: get("AccessKeyId")?,
        secret_access_key: get("SecretAccessKey")?,
        session_token: Some(get("SessionToken")?),
        expires: Some(parse_time(&get("Expiration")?)?),
    })
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Credentials from a container or instance metadata endpoint's JSON answer.
fn json_credentials(status: http::StatusCode, answer: &[u8]) -> Result<AwsCredentials, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Answer {
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
        token: Option<String>,
        expiration: Option<String>,
        message: Option<String>,
        code: Option<String>,
    }
    let parsed: Result<Answer, _> = serde_json::from_slice(answer);
    if !status.is_success() {
        let detail = parsed
            .ok()
            .and_then(|a| a.message.or(a.code))
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Err(format!(
            "credentials endpoint refused: HTTP {status}{detail}"
        ));
    }
    let a = parsed.map_err(|e| format!("the credentials answer is not JSON: {e}"))?;
    if a.code.as_deref().is_some_and(|c| c != "Success") {
        return Err(format!(
            "credentials endpoint: {}",
            a.message.or(a.code).unwrap_or_default()
        ));
    }
    Ok(AwsCredentials {
        access_key_id: a.access_key_id.ok_or("answer without AccessKeyId")?,
        secret_access_key: a
            .secret_access_key
            .ok_or("answer without SecretAccessKey")?,
        session_token: a.token.filter(|t| !t.is_empty()),
        expires: a.expiration.as_deref().map(parse_time).transpose()?,
    })
}

/// A time as AWS writes it in answers: ISO 8601 UTC, `2026-12-05T02:00:00Z`.
pub fn iso_time(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let (y, m, d) = crate::sigv4::civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// An ISO 8601 UTC time as AWS writes it (`2026-12-05T02:00:00Z`, optionally with
/// fractional seconds).
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let bad = || format!("expiration {text:?} is not an ISO 8601 UTC time");
    let num = |s: Option<&str>| s.and_then(|s| s.parse::<u64>().ok()).ok_or_else(bad);
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next())?, num(d.next())?, num(d.next())?);
    let time = time.trim_end_matches('Z');
    let time = time.split(['.', '+']).next().unwrap_or_default();
    let mut t = time.split(':');
    let (h, min, s) = (num(t.next())?, num(t.next())?, num(t.next())?);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || min > 59
        || s > 60
    {
        return Err(bad());
    }
    let days = days_from_civil(y, m, day);
    // Years up to 9999 keep every sum far below u64's and SystemTime's range.
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + min * 60 + s))
}

/// Days since 1970-01-01 of a Gregorian date (the inverse of `sigv4::civil_from_days`).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    /// Scenario: the variables and files of each link of the SDKs' chain, alone and
    /// together. Guarantees: the first configured link is taken, in the SDKs' order
    /// (keys, shared file, web identity, container, instance metadata); a profile is read
    /// from the file; STS is the region's unless an endpoint variable names another.
    #[test]
    fn the_chain_takes_the_first_configured_source() {
        let dir = std::env::temp_dir().join(format!("tailgate-aws-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(".aws")).unwrap();
        std::fs::write(
            dir.join(".aws/credentials"),
            "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = s3cret\n\
             [ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=s\naws_session_token=t\n",
        )
        .unwrap();
        let home = Some(dir.clone());
        let keys = Source::from_env(
            &vars(&[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ]),
            home.clone(),
            "",
        )
        .unwrap();
        assert!(
            matches!(keys, Source::Fixed { ref credentials, .. } if credentials.access_key_id == "AKIDENV")
        );
        // The shared file comes before a web identity, as in the SDKs' chain.
        let file = Source::from_env(
            &vars(&[
                ("AWS_ROLE_ARN", "r"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ]),
            home.clone(),
            "",
        )
        .unwrap();
        assert!(
            matches!(file, Source::Fixed { ref credentials, .. } if credentials.access_key_id == "AKIDFILE")
        );
        let profile = Source::from_env(&vars(&[("AWS_PROFILE", "ci")]), home.clone(), "").unwrap();
        // A profile asked for by name and not there is an error, as in the SDKs.
        let missing = Source::from_env(&vars(&[("AWS_PROFILE", "nope")]), home.clone(), "");
        assert!(missing.unwrap_err().contains("AWS_PROFILE \"nope\""));
        assert!(Source::from_env(&vars(&[("AWS_PROFILE", "ci")]), None, "").is_err());
        assert!(matches!(profile, Source::Fixed { ref credentials, .. }
            if credentials.access_key_id == "AKIDCI" && credentials.session_token.as_deref() == Some("t")));
        let irsa = Source::from_env(
            &vars(&[
                ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
                ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ]),
            None,
            "eu-west-1",
        )
        .unwrap();
        assert!(
            matches!(irsa, Source::WebIdentity { ref sts, .. } if *sts == "https://sts.eu-west-1.amazonaws.com/")
        );
        let pod = Source::from_env(
            &vars(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://169.254.170.23/v1/credentials",
                ),
                (
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    "/var/run/pod-identity",
                ),
                ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9"),
            ]),
            None,
            "",
        )
        .unwrap();
        assert!(matches!(
            pod,
            Source::Container {
                token: Some(ContainerToken::File(_)),
                ..
            }
        ));
        let ecs = Source::from_env(
            &vars(&[
                (
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "/v2/credentials/abc",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tok"),
            ]),
            None,
            "",
        )
        .unwrap();
        assert!(
            matches!(ecs, Source::Container { ref uri, token: Some(ContainerToken::Value(_)) }
            if *uri == "http://169.254.170.2/v2/credentials/abc")
        );
        assert!(matches!(
            Source::from_env(&vars(&[]), None, "").unwrap(),
            Source::Imds { .. }
        ));
        assert!(
            Source::from_env(&vars(&[("AWS_EC2_METADATA_DISABLED", "true")]), None, "").is_err()
        );
        let sts = sts_endpoint(
            &vars(&[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")]),
            "eu-west-1",
        )
        .unwrap();
        assert_eq!(sts.to_string(), "http://127.0.0.1:9/");
        assert_eq!(
            sts_endpoint(&vars(&[]), "").unwrap().to_string(),
            "https://sts.amazonaws.com/"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A web identity source asking the STS endpoint at `sts`, its token in a file.
    fn web_identity(sts: Uri, dir: &std::path::Path) -> CredentialsProvider {
        std::fs::write(dir.join("token"), "jwt").unwrap();
        CredentialsProvider::new(
            Source::WebIdentity {
                role_arn: "arn:aws:iam::1:role/r".into(),
                token_file: dir.join("token"),
                session_name: "s".into(),
                sts,
            },
            Duration::from_secs(5),
            None,
            None,
        )
    }

    /// STS answering with key `ASIA<n>` for its n-th request, valid for `valid`.
    fn issuing(
        valid: Duration,
        status: u16,
    ) -> impl Fn(Option<&str>, &str) -> (u16, &'static str, String) + Send + Sync + 'static {
        let n = std::sync::atomic::AtomicU32::new(0);
        move |_, _| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let xml = format!(
                "<R><Credentials><AccessKeyId>ASIA{i}</AccessKeyId><SecretAccessKey>k{i}</SecretAccessKey>\
                 <SessionToken>t{i}</SessionToken><Expiration>{}</Expiration></Credentials></R>",
                iso_time(SystemTime::now() + valid)
            );
            (status, "text/xml", xml)
        }
    }

    /// Scenario: eight requests asking at once for credentials from STS; a refusal of a
    /// request signed with them; a refusal of one signed with older ones; credentials that
    /// come back already due for renewal (valid for 2 minutes, under the 5-minute margin).
    /// Guarantees: one STS request for the eight; a refusal fetches anew (a second
    /// request, with the token file read again), a refusal for older keys takes the newer at once (no request); due
    /// credentials are used, not fetched again for every request.
    #[tokio::test]
    async fn credentials_are_fetched_once_and_refreshed_on_refusal() {
        let (sts, asked, _) =
            crate::test_util::token_endpoint(issuing(Duration::from_secs(3600), 200))
                .await
                .unwrap();
        let dir = crate::test_util::scratch_dir("aws-once").unwrap();
        let provider = Arc::new(web_identity(sts, &dir));
        let asks: Vec<_> = (0..8)
            .map(|_| {
                let p = provider.clone();
                tokio::spawn(async move { p.credentials().await })
            })
            .collect();
        for ask in asks {
            assert_eq!(ask.await.unwrap().unwrap().access_key_id, "ASIA0");
        }
        assert_eq!(asked.lock().unwrap().len(), 1);
        assert!(asked.lock().unwrap()[0].1.contains("WebIdentityToken=jwt"));
        let first = provider.credentials().await.unwrap();
        // The token file is read for every fetch: a rotated token is the one sent next.
        std::fs::write(dir.join("token"), "jwt-rotated").unwrap();
        assert!(provider.refresh(&first).await, "fetched anew");
        assert!(asked.lock().unwrap()[1]
            .1
            .contains("WebIdentityToken=jwt-rotated"));
        let second = provider.credentials().await.unwrap();
        assert_eq!(second.access_key_id, "ASIA1");
        assert_eq!(asked.lock().unwrap().len(), 2);
        assert!(
            provider.refresh(&first).await,
            "newer ones are kept already"
        );
        assert!(
            !provider.refresh(&second).await,
            "a second forced fetch within a second"
        );
        assert_eq!(asked.lock().unwrap().len(), 2);

        let (sts, asked, _) =
            crate::test_util::token_endpoint(issuing(Duration::from_secs(120), 200))
                .await
                .unwrap();
        let due = web_identity(sts, &dir);
        for _ in 0..5 {
            assert_eq!(due.credentials().await.unwrap().access_key_id, "ASIA0");
        }
        assert_eq!(
            asked.lock().unwrap().len(),
            1,
            "due, but fetched a moment ago"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: `assume_role` over fixed keys, at a fake STS.
    /// Guarantees: STS is asked `AssumeRole` for the role, the request signed for `sts`
    /// in the region with the base keys; the assumed credentials are given.
    #[tokio::test]
    async fn a_role_is_assumed_with_a_signed_request() {
        let (sts, asked, _) =
            crate::test_util::token_endpoint(issuing(Duration::from_secs(3600), 200))
                .await
                .unwrap();
        let base = CredentialsProvider::fixed(AwsCredentials {
            access_key_id: "AKIDBASE".into(),
            secret_access_key: "base-secret".into(),
            session_token: None,
            expires: None,
        });
        let provider = CredentialsProvider::new(
            Source::AssumeRole {
                base: Arc::new(base),
                role_arn: "arn:aws:iam::1:role/writer".into(),
                session_name: "gw".into(),
                sts,
                region: "eu-west-1".into(),
            },
            Duration::from_secs(5),
            None,
            None,
        );
        assert_eq!(provider.credentials().await.unwrap().access_key_id, "ASIA0");
        let asked = asked.lock().unwrap();
        let (authorization, form) = &asked[0];
        assert!(
            authorization
                .as_deref()
                .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDBASE/")
                    && a.contains("/eu-west-1/sts/aws4_request")),
            "{authorization:?}"
        );
        assert!(form.contains("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fwriter&RoleSessionName=gw"), "{form}");
        assert!(!form.contains("base-secret"));
    }

    /// Scenario: an STS endpoint refusing (403 AccessDenied), asked twice at once.
    /// Guarantees: an error naming the refusal, no secret; the second ask within a second
    /// of the failure sends nothing.
    #[tokio::test]
    async fn a_failing_endpoint_is_asked_at_most_once_a_second() {
        let (sts, asked, _) = crate::test_util::token_endpoint(|_, _| {
            (
                403,
                "text/xml",
                "<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>".into(),
            )
        })
        .await
        .unwrap();
        let dir = crate::test_util::scratch_dir("aws-failing").unwrap();
        let provider = web_identity(sts, &dir);
        let err = provider.credentials().await.unwrap_err();
        assert!(err.contains("AccessDenied"), "{err}");
        assert!(!err.contains("jwt"), "{err}");
        assert!(provider.credentials().await.is_err());
        assert_eq!(asked.lock().unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).ok();
    }

    fn json_answer() -> String {
        format!(
            r#"{{"Code":"Success","AccessKeyId":"ASIAMETA","SecretAccessKey":"s","Token":"t","Expiration":"{}"}}"#,
            iso_time(SystemTime::now() + Duration::from_secs(3600))
        )
    }

    /// Scenario: EC2 instance metadata as IMDSv2 answers (a session token from a PUT, the
    /// role's name, its credentials), and a container endpoint (EKS Pod Identity) that
    /// wants its authorization token from a file.
    /// Guarantees: the credentials of each, asked in IMDSv2's order with its token on
    /// every GET, and the container's token from the file.
    #[tokio::test]
    async fn instance_and_container_endpoints_give_credentials() {
        let (base, seen) = crate::test_util::fake_endpoint(|method, path, headers| {
            let token = headers
                .get("x-aws-ec2-metadata-token")
                .is_some_and(|v| v == "imds-session");
            match (method.as_str(), path) {
                ("PUT", "/latest/api/token")
                    if headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") =>
                {
                    (200, "imds-session".into())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/") if token => {
                    (200, "node-role\n".into())
                }
                ("GET", "/latest/meta-data/iam/security-credentials/node-role") if token => {
                    (200, json_answer())
                }
                _ => (401, String::new()),
            }
        })
        .await;
        let imds =
            CredentialsProvider::new(Source::Imds { base }, Duration::from_secs(5), None, None);
        let c = imds.credentials().await.unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), c.session_token.as_deref()),
            ("ASIAMETA", Some("t"))
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "PUT /latest/api/token",
                "GET /latest/meta-data/iam/security-credentials/",
                "GET /latest/meta-data/iam/security-credentials/node-role"
            ]
        );

        let (base, _) = crate::test_util::fake_endpoint(|_, path, headers| {
            match (
                path,
                headers.get("authorization").map(|v| v.to_str().unwrap()),
            ) {
                ("/v1/credentials", Some("pod-identity-token")) => (200, json_answer()),
                _ => (
                    401,
                    r#"{"Code":"Unauthorized","Message":"no token"}"#.into(),
                ),
            }
        })
        .await;
        let dir = crate::test_util::scratch_dir("aws-container").unwrap();
        std::fs::write(dir.join("token"), "pod-identity-token\n").unwrap();
        let container = |token| {
            CredentialsProvider::new(
                Source::Container {
                    uri: format!("{base}v1/credentials").parse().unwrap(),
                    token,
                },
                Duration::from_secs(5),
                None,
                None,
            )
        };
        let c = container(Some(ContainerToken::File(dir.join("token"))))
            .credentials()
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "ASIAMETA");
        let err = container(None).credentials().await.unwrap_err();
        assert!(err.contains("401") && err.contains("no token"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: answers of STS and of container endpoints, good and refusing.
    /// Guarantees: the credentials and expiry read; a refusal's code and message.
    #[test]
    fn answers_are_read() {
        let ok =
            b"<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
            <AccessKeyId>ASIAX</AccessKeyId><SecretAccessKey>s&amp;1</SecretAccessKey>\
            <SessionToken>tok</SessionToken><Expiration>2026-12-05T02:00:00Z</Expiration>\
            </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";
        let c = sts_credentials(http::StatusCode::OK, ok).unwrap();
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.secret_access_key, "s&1");
        assert_eq!(
            c.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_436_000))
        );
        let refused = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>Not authorized</Message></Error></ErrorResponse>";
        let err = sts_credentials(http::StatusCode::FORBIDDEN, refused).unwrap_err();
        assert!(err.contains("AccessDenied: Not authorized"), "{err}");
        let json = br#"{"AccessKeyId":"ASIAY","SecretAccessKey":"s","Token":"t","Expiration":"2026-12-05T02:00:00.123Z"}"#;
        let c = json_credentials(http::StatusCode::OK, json).unwrap();
        assert_eq!(c.session_token.as_deref(), Some("t"));
        assert_eq!(
            c.expires,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_436_000))
        );
        assert!(parse_time("yesterday").is_err());
        // Years an answer could hold but no expiry can: refused, not a panic.
        for odd in [
            "0000-01-01T00:00:00Z",
            "99999999999-01-01T00:00:00Z",
            "2026-13-01T00:00:00Z",
        ] {
            assert!(parse_time(odd).is_err(), "{odd}");
        }
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_436_000);
        assert_eq!(iso_time(t), "2026-12-05T02:00:00Z");
        assert_eq!(parse_time(&iso_time(t)), Ok(t));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert!(!format!("{c:?}").contains("\"s\""));
    }
}
