//! AWS Signature Version 4 for OTLP/HTTP exports to AWS endpoints (X-Ray's OTLP endpoint,
//! Amazon Managed Prometheus, CloudWatch Logs): the Collector's `sigv4auth` extension
//! (contrib v0.161), which signs each request with the AWS SDK's signer.
//!
//! [`sign`] adds `x-amz-date`, `x-amz-security-token` (temporary credentials) and
//! `authorization` to a request's headers, signing its method, path, query, every header
//! but the ones proxies may change (botocore's list) and a hash of its body, as written on
//! the wire (compressed). A leaf: [`crate::aws`] finds the credentials and signs with it
//! ([`crate::aws::SigV4`]), for the gateway's OTLP/HTTP exporter, which signs every
//! request last, after every other header is set.

use http::{HeaderMap, HeaderValue, Method, Uri};

/// One set of credentials. `Debug` shows the key id and expiry, never the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// `AKIA…` (long-term) or `ASIA…` (temporary).
    pub access_key_id: String,
    /// The secret.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
    /// When temporary credentials stop working.
    pub expires: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Headers never signed: hop-by-hop ones and those a proxy or the client may add or change
/// after signing (botocore's `SIGNED_HEADERS_BLACKLIST`; the SDK for Go ignores a subset).
const UNSIGNED: [&str; 12] = [
    "authorization",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// The service and region a request to `host` is signed for: `service` and `region` as
/// configured, else as the Collector infers them from AWS endpoint names
/// (`xray.us-east-1.amazonaws.com` is `xray` in `us-east-1`; `aps-workspaces.…` is `aps`,
/// `search-…` is `es`, `logs.…` is `logs`). `None` when either is still unknown.
pub fn infer_scope(service: &str, region: &str, host: &str) -> Option<(String, String)> {
    let (mut service, mut region) = (service.to_owned(), region.to_owned());
    let inferred = [
        ("aps-workspaces", "aps"),
        ("search-", "es"),
        ("logs", "logs"),
        ("xray", "xray"),
    ]
    .into_iter()
    .find(|(prefix, _)| host.starts_with(prefix));
    if let Some((_, default_service)) = inferred {
        if service.is_empty() {
            service = default_service.to_owned();
        }
        if region.is_empty() {
            region = host.split('.').nth(1).unwrap_or_default().to_owned();
        }
    }
    (!service.is_empty() && !region.is_empty()).then_some((service, region))
}

/// What a signature is for: the region and the service.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// `us-east-1`, …
    pub region: &'a str,
    /// `xray`, `aps`, `sts`, …
    pub service: &'a str,
}

/// Signs a request at `unix_secs`: sets `x-amz-date`, `x-amz-security-token` (when the
/// credentials have a session token) and `authorization` in `headers`. The host is the
/// URI's authority as written (what HTTP/1.1's `Host` and HTTP/2's `:authority` carry),
/// so an endpoint written with `:443` is signed with it. `Err` when the credentials cannot
/// go in a header.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    credentials: &AwsCredentials,
    scope: &Scope<'_>,
    method: &Method,
    uri: &Uri,
    headers: &mut HeaderMap,
    body: &[u8],
    unix_secs: u64,
) -> Result<(), String> {
    let (date, time) = amz_date(unix_secs);
    let stamp = format!("{date}T{time}Z");
    headers.remove(http::header::AUTHORIZATION);
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&stamp).map_err(|e| e.to_string())?,
    );
    headers.remove("x-amz-security-token");
    if let Some(token) = &credentials.session_token {
        let mut value = HeaderValue::from_str(token)
            .map_err(|_| "the session token cannot go in a header".to_owned())?;
        value.set_sensitive(true);
        headers.insert("x-amz-security-token", value);
    }
    // Canonical headers: names lower case (http's already are) and sorted, values trimmed
    // with inner runs of spaces made one, a name's values joined by commas; and the host.
    // Values are signed as the bytes sent (a value need not be ASCII).
    let mut canonical: Vec<(&str, Vec<u8>)> = Vec::new();
    for name in headers.keys() {
        if UNSIGNED.contains(&name.as_str()) || name == http::header::HOST {
            continue;
        }
        let mut value = Vec::new();
        for (i, v) in headers.get_all(name).iter().enumerate() {
            if i > 0 {
                value.push(b',');
            }
            let words = v
                .as_bytes()
                .split(|b| b.is_ascii_whitespace())
                .filter(|w| !w.is_empty());
            for (j, word) in words.enumerate() {
                if j > 0 {
                    value.push(b' ');
                }
                value.extend_from_slice(word);
            }
        }
        canonical.push((name.as_str(), value));
    }
    let host = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    canonical.push(("host", host.as_bytes().to_vec()));
    canonical.sort();
    let signed: Vec<&str> = canonical.iter().map(|(n, _)| *n).collect();
    let signed = signed.join(";");
    let mut request = format!(
        "{method}\n{}\n{}\n",
        canonical_path(uri.path()),
        canonical_query(uri.query().unwrap_or_default())
    )
    .into_bytes();
    for (name, value) in &canonical {
        request.extend_from_slice(name.as_bytes());
        request.push(b':');
        request.extend_from_slice(value);
        request.push(b'\n');
    }
    request.push(b'\n');
    request.extend_from_slice(signed.as_bytes());
    request.push(b'\n');
    request.extend_from_slice(hex(sha256(body).as_ref()).as_bytes());
    let credential_scope = format!("{date}/{}/{}/aws4_request", scope.region, scope.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{stamp}\n{credential_scope}\n{}",
        hex(sha256(&request).as_ref())
    );
    let key = [scope.region, scope.service, "aws4_request"].iter().fold(
        hmac(
            format!("AWS4{}", credentials.secret_access_key).as_bytes(),
            date.as_bytes(),
        ),
        |key, part| hmac(key.as_ref(), part.as_bytes()),
    );
    let signature = hex(hmac(key.as_ref(), to_sign.as_bytes()).as_ref());
    let mut authorization = HeaderValue::from_str(&format!(
        "AWS4-HMAC-SHA256 Credential={}/{credential_scope}, SignedHeaders={signed}, Signature={signature}",
        credentials.access_key_id
    ))
    .map_err(|_| "the access key id cannot go in a header".to_owned())?;
    authorization.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, authorization);
    Ok(())
}

/// The path, each byte but unreserved ones and `/` percent-encoded (again, for an escape
/// already in it: every service but S3 signs the path encoded twice).
fn canonical_path(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b == b'/' {
            out.push('/');
        } else {
            push_encoded(&mut out, b);
        }
    }
    out
}

/// The query's parameters decoded, encoded again and sorted by name, then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&percent_decode(k)), encode(&percent_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        push_encoded(&mut out, b);
    }
    out
}

fn push_encoded(out: &mut String, b: u8) {
    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
        out.push(char::from(b));
    } else {
        out.push_str(&format!("%{b:02X}"));
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_at = |j: usize| char::from(bytes[j]).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 2).and_then(|_| hex_at(i + 1)),
            bytes.get(i + 2).and_then(|_| hex_at(i + 2)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn sha256(data: &[u8]) -> ::ring::digest::Digest {
    ::ring::digest::digest(&::ring::digest::SHA256, data)
}

fn hmac(key: &[u8], data: &[u8]) -> ::ring::hmac::Tag {
    ::ring::hmac::sign(
        &::ring::hmac::Key::new(::ring::hmac::HMAC_SHA256, key),
        data,
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYYMMDD` and `HHMMSS` (UTC) of a Unix time.
fn amz_date(unix_secs: u64) -> (String, String) {
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}{m:02}{d:02}"),
        format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    )
}

/// The Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
            expires: None,
        }
    }

    /// 2026-12-05T01:02:03Z.
    const AT: u64 = 1_796_432_523;

    fn signed(
        credentials: &AwsCredentials,
        region: &str,
        url: &str,
        headers: &[(&'static str, &'static str)],
        body: &[u8],
    ) -> HeaderMap {
        let map: HeaderMap = headers
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect();
        signed_map(credentials, region, url, map, body)
    }

    /// `map` signed for `xray` in `region` at [`AT`].
    fn signed_map(
        credentials: &AwsCredentials,
        region: &str,
        url: &str,
        mut map: HeaderMap,
        body: &[u8],
    ) -> HeaderMap {
        sign(
            credentials,
            &Scope {
                region,
                service: "xray",
            },
            &Method::POST,
            &url.parse().unwrap(),
            &mut map,
            body,
            AT,
        )
        .unwrap();
        map
    }

    /// Scenario: requests signed by botocore 1.43.11's `SigV4Auth` (an implementation
    /// independent of this one) at 2026-12-05T01:02:03Z with AWS's documented example keys:
    /// an OTLP export with compression and a header holding runs of spaces; one with a
    /// session token and an empty body; one to a non-default port with an escaped path and
    /// an unsorted query; one with a header value in UTF-8 holding commas and spaces. The vectors were made with
    /// `SigV4Auth(Credentials(id, secret, token), "xray", region).add_auth(AWSRequest(...))`
    /// with `botocore.auth.get_current_datetime` patched to that time.
    /// Guarantees: the same `x-amz-date`, `x-amz-security-token` and `authorization`.
    #[test]
    fn signatures_match_botocores() {
        let h = signed(
            &example(),
            "us-east-1",
            "https://xray.us-east-1.amazonaws.com/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
                ("x-custom", "  a   b  "),
                ("user-agent", "tailgate/0.1.0"),
            ],
            b"\x0a\x02hi",
        );
        assert_eq!(h["x-amz-date"], "20261205T010203Z");
        assert_eq!(
            h["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-east-1/xray/aws4_request, \
             SignedHeaders=content-encoding;content-type;host;x-amz-date;x-custom, \
             Signature=0823560995a10d39ac6a340e0257f04922245734eaf26f40b5e8e175bd6c685b"
        );
        let session = AwsCredentials {
            session_token: Some("SESSIONTOKEN/+=".into()),
            ..example()
        };
        let h = signed(
            &session,
            "eu-west-1",
            "https://xray.eu-west-1.amazonaws.com/v1/traces",
            &[("content-type", "application/x-protobuf")],
            b"",
        );
        assert_eq!(h["x-amz-security-token"], "SESSIONTOKEN/+=");
        assert_eq!(
            h["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/eu-west-1/xray/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, \
             Signature=b7137c11c4937f89d58d1ff95fc2daead1ea898d36ed5966d7f2df55ae6f9b21"
        );
        let h = signed(
            &example(),
            "us-east-1",
            "https://example.com:8443/a%20b/c?b=2&a=1&a=0&x=y%2Fz",
            &[("content-type", "application/x-protobuf")],
            b"abc",
        );
        assert_eq!(
            h["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-east-1/xray/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5fdae702641de60c8798d76ad91022319daf6252bf1e7094806a47cdcd75e230"
        );
        // A value that is not ASCII (UTF-8 bytes, signed as sent) with commas and runs of
        // spaces: botocore's signature too.
        let mut team = HeaderMap::new();
        team.insert(
            "content-type",
            HeaderValue::from_static("application/x-protobuf"),
        );
        team.insert(
            "x-team",
            HeaderValue::from_bytes("Zürich,  a   b".as_bytes()).unwrap(),
        );
        let team = signed_map(
            &example(),
            "us-east-1",
            "https://xray.us-east-1.amazonaws.com/v1/traces",
            team,
            b"x",
        );
        assert_eq!(
            team["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261205/us-east-1/xray/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-team, \
             Signature=e0a8d06a03aae358335b843f7cb6122f37d00a0640441301735c6515ef06da84"
        );
        // Hop-by-hop headers and those a proxy or client may change are not signed.
        let hops = signed(
            &example(),
            "us-east-1",
            "https://xray.us-east-1.amazonaws.com/v1/traces",
            &[
                ("content-type", "application/x-protobuf"),
                ("connection", "keep-alive"),
                ("expect", "100-continue"),
                ("x-amzn-trace-id", "Root=1-abc"),
                ("user-agent", "tailgate/0.1.0"),
                ("proxy-authorization", "Basic eA=="),
            ],
            b"",
        );
        assert!(hops["authorization"]
            .to_str()
            .unwrap()
            .contains("SignedHeaders=content-type;host;x-amz-date,"));
        // Signing again replaces the signature and the date, never adds a second one.
        let again = signed_map(
            &example(),
            "us-east-1",
            "https://example.com:8443/a%20b/c?b=2&a=1&a=0&x=y%2Fz",
            h.clone(),
            b"abc",
        );
        assert_eq!(again.get_all("authorization").iter().count(), 1);
        assert_eq!(again["authorization"], h["authorization"]);
    }

    /// Scenario: day counts around leap days and centuries. Guarantees: the calendar date.
    #[test]
    fn dates_are_the_calendars() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_453), (2025, 12, 31));
        assert_eq!(amz_date(AT), ("20261205".into(), "010203".into()));
    }

    /// Scenario: the Collector's inference of service and region from AWS endpoint names,
    /// and configured values. Guarantees: its results; `None` for an endpoint it cannot
    /// read without configured values.
    #[test]
    fn service_and_region_are_inferred_as_the_collector_does() {
        let pair = |s: &str, r: &str| Some((s.to_owned(), r.to_owned()));
        assert_eq!(
            infer_scope("", "", "xray.us-east-1.amazonaws.com"),
            pair("xray", "us-east-1")
        );
        assert_eq!(
            infer_scope("", "", "aps-workspaces.eu-west-1.amazonaws.com"),
            pair("aps", "eu-west-1")
        );
        assert_eq!(
            infer_scope("", "", "logs.ap-south-1.amazonaws.com"),
            pair("logs", "ap-south-1")
        );
        assert_eq!(
            infer_scope("", "", "search-logs-abc.eu-central-1.es.amazonaws.com"),
            pair("es", "eu-central-1")
        );
        assert_eq!(infer_scope("", "", "otlp.example.com"), None);
        assert_eq!(
            infer_scope("xray", "us-west-2", "otlp.example.com"),
            pair("xray", "us-west-2")
        );
        assert_eq!(
            infer_scope("", "us-west-2", "xray.us-east-1.amazonaws.com"),
            pair("xray", "us-west-2")
        );
    }
}
