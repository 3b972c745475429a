//! Cross-origin resource sharing for the OTLP/HTTP receiver (`receive.cors`), so that
//! browser SDKs can send straight to a router or gateway.
//!
//! The keys and behaviour are the Collector's `cors` block of an OTLP receiver's `http`
//! protocol (`confighttp.CORSConfig`, served by `github.com/rs/cors` with credentials
//! allowed), so a block copied from a Collector config lets through at least what it lets
//! through there. Three departures, each allowing what browsers need where rs/cors v1.11
//! refuses: the headers `CORSConfig`'s documentation calls implicitly allowed (`Accept`,
//! `Accept-Language`, `Content-Type`, `Content-Language`) are, where rs/cors allows only
//! the listed ones once any are; a preflight's header list is read in any order and case
//! (rs/cors wants it lower-case and sorted, as browsers send it); and with `*` the
//! request's origin is echoed, not `*`, which browsers refuse alongside credentials.
//! Otherwise:
//!
//! * A preflight (`OPTIONS` with `Access-Control-Request-Method`, on any path) is answered
//!   `204 No Content` before anything else is checked (authentication included, as the
//!   browser sends no credentials with it). When its origin, method and headers are
//!   allowed, the answer carries `Access-Control-Allow-Origin` (the request's origin),
//!   `-Allow-Methods` (the method asked for), `-Allow-Headers` (the headers asked for),
//!   `-Allow-Credentials: true` and `-Max-Age`; otherwise none of them, and the browser
//!   does not send the request.
//! * Any other request from an allowed origin, with an allowed method (`GET`, `POST`,
//!   `HEAD`), gets `Access-Control-Allow-Origin` and `-Allow-Credentials` on its answer,
//!   whatever the answer is, so a browser can read a refusal's status too.
//! * Every answer varies by `Origin`.
//!
//! Data comes from the request's headers; what goes out is headers on the receiver's
//! answer ([`super::http`]). Without `allowed_origins` the block does nothing, as in the
//! Collector.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;
use serde::Deserialize;

/// The `receive.cors` block: the Collector's `cors` keys.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins allowed to send, e.g. `https://app.example.com`; one `*` in an origin
    /// stands for any run of characters (`https://*.example.com`), and `*` alone allows
    /// every origin. Compared without regard to case.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub allowed_origins: Vec<String>,
    /// Request headers a browser may send beyond the ones always allowed (`Accept`,
    /// `Accept-Language`, `Content-Type`, `Content-Language`, and `X-Requested-With` when
    /// this is empty); `*` allows any. An SDK that sends an API key header needs it here.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub allowed_headers: Vec<String>,
    /// Response headers a page's script may read beyond the CORS-safelisted ones
    /// (`Access-Control-Expose-Headers`; the Collector's key since v0.154). `Retry-After`
    /// is always exposed.
    #[serde(default, deserialize_with = "crate::config::comma_list")]
    pub exposed_headers: Vec<String>,
    /// Seconds a browser may cache a preflight's answer (`Access-Control-Max-Age`); 0
    /// sends none (the browser's default, 5 s in most), a negative value sends 0.
    #[serde(default)]
    pub max_age: i64,
}

impl CorsConfig {
    /// What is wrong with a block that loads: headers without origins, which the Collector
    /// also ignores with a warning. The binaries print it at start and with `--check`.
    pub fn warning(&self) -> Option<String> {
        if self.allowed_origins.is_empty() && !self.allowed_headers.is_empty() {
            return Some(
                "receive.cors lists allowed_headers but no allowed_origins, so it is ignored: \
                 browsers are answered as without the block"
                    .into(),
            );
        }
        let bad: Vec<&str> = self
            .exposed_headers
            .iter()
            .map(|h| h.trim())
            .filter(|h| HeaderName::from_bytes(h.as_bytes()).is_err())
            .collect();
        (!bad.is_empty()).then(|| {
            format!(
                "receive.cors.exposed_headers: {bad:?} are not header names, so they are not exposed"
            )
        })
    }
}

/// An allowed origin.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// One `*`: what comes before and after it.
    Wildcard(String, String),
}

impl Pattern {
    fn matches(&self, origin: &str) -> bool {
        match self {
            Pattern::Exact(o) => o == origin,
            Pattern::Wildcard(prefix, suffix) => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
            }
        }
    }
}

/// The policy [`CorsConfig`] sets, ready to answer requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins, lower-case (`*` is a wildcard with nothing around it).
    origins: Vec<Pattern>,
    /// Allowed request headers, lower-case (`*`: any).
    headers: Vec<String>,
    max_age: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers` of an answer to an allowed origin.
    expose: HeaderValue,
}

/// The headers always allowed in a request (lower-case).
const ALWAYS_ALLOWED: [&str; 5] = [
    "accept",
    "accept-language",
    "content-type",
    "content-language",
    "origin",
];

impl Cors {
    /// The policy of `c`; `None` when it allows no origin (the block is then ignored, as
    /// in the Collector; [`CorsConfig::warning`] says so).
    pub fn new(c: &CorsConfig) -> Option<Self> {
        if c.allowed_origins.is_empty() {
            return None;
        }
        let origins = c
            .allowed_origins
            .iter()
            .map(|o| o.to_ascii_lowercase())
            .map(|o| match o.split_once('*') {
                Some((prefix, suffix)) => Pattern::Wildcard(prefix.to_owned(), suffix.to_owned()),
                None => Pattern::Exact(o),
            })
            .collect();
        let mut headers: Vec<String> = ALWAYS_ALLOWED.iter().map(|h| (*h).to_owned()).collect();
        if c.allowed_headers.is_empty() {
            headers.push("x-requested-with".to_owned());
        }
        headers.extend(
            c.allowed_headers
                .iter()
                .map(|h| h.trim().to_ascii_lowercase()),
        );
        let max_age = match c.max_age {
            0 => None,
            n => Some(HeaderValue::from(n.max(0))),
        };
        let expose = std::iter::once("Retry-After")
            .chain(
                c.exposed_headers
                    .iter()
                    .map(|h| h.trim())
                    .filter(|h| HeaderName::from_bytes(h.as_bytes()).is_ok()),
            )
            .collect::<Vec<_>>()
            .join(", ");
        Some(Cors {
            origins,
            headers,
            max_age,
            // Header names are visible ASCII, so a valid value.
            expose: HeaderValue::from_str(&expose)
                .unwrap_or(HeaderValue::from_static("Retry-After")),
        })
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.origins.iter().any(|p| p.matches(&origin))
    }

    fn method_allowed(method: &str) -> bool {
        matches!(
            method.to_ascii_uppercase().as_str(),
            "GET" | "POST" | "HEAD" | "OPTIONS"
        )
    }

    /// Whether every header a preflight asks for (`Access-Control-Request-Headers`, a
    /// comma-separated list) is allowed.
    fn headers_allowed(&self, requested: &str) -> bool {
        self.headers.iter().any(|h| h == "*")
            || requested
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .all(|h| self.headers.contains(&h))
    }

    /// Whether `method` and `headers` make a preflight request.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The headers of the answer to a preflight request with these `headers`.
    pub fn preflight(&self, headers: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::new();
        out.insert(
            header::VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        // Refusals are logged at debug level only: any page may send preflights, and the
        // browser, not the server, is where a misconfigured page is noticed first.
        let Some(origin) = headers
            .get(header::ORIGIN)
            .filter(|o| o.to_str().is_ok_and(|o| self.origin_allowed(o)))
        else {
            tracing::debug!(origin = ?headers.get(header::ORIGIN), "CORS preflight refused: origin not in receive.cors.allowed_origins");
            return out;
        };
        let Some(method) = text(header::ACCESS_CONTROL_REQUEST_METHOD)
            .filter(|m| Self::method_allowed(m))
            .and_then(|m| HeaderValue::from_str(&m.to_ascii_uppercase()).ok())
        else {
            tracing::debug!(?origin, method = ?headers.get(header::ACCESS_CONTROL_REQUEST_METHOD), "CORS preflight refused: method not GET, POST or HEAD");
            return out;
        };
        // A list may come in several fields: each must be allowed, and all are answered.
        let mut fields = Vec::new();
        for v in headers.get_all(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let Ok(v) = v.to_str() else {
                return out;
            };
            fields.push(v.trim());
        }
        fields.retain(|f| !f.is_empty());
        let requested = fields.join(",");
        if !self.headers_allowed(&requested) {
            tracing::debug!(?origin, headers = %requested, "CORS preflight refused: a header not in receive.cors.allowed_headers");
            return out;
        }
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, copied(origin));
        out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, method);
        // Read from header values as visible ASCII, so a valid header value again.
        if let Some(v) = Some(requested)
            .filter(|r| !r.is_empty())
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        out.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        if let Some(age) = &self.max_age {
            out.insert(header::ACCESS_CONTROL_MAX_AGE, age.clone());
        }
        out
    }

    /// Adds to `answer` the headers for a request (not a preflight) with `method` and the
    /// `Origin` header `origin`.
    pub fn decorate(&self, method: &Method, origin: Option<&HeaderValue>, answer: &mut HeaderMap) {
        answer.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin else {
            return;
        };
        let allowed = origin.to_str().is_ok_and(|o| self.origin_allowed(o))
            && Self::method_allowed(method.as_str());
        if allowed {
            answer.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, copied(origin));
            answer.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            // A page may read the back-off of a refusal (429, 503): the OTLP/HTTP exporters
            // honour it, and without this the browser hides it from them. Then the
            // block's `exposed_headers`.
            answer.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, self.expose.clone());
        }
    }
}

/// `value` in memory of its own: a request's header value may be a view of the frame it
/// came in (HTTP/2), which an answer holding it would keep alive after the request is let
/// go.
fn copied(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(yaml: &str) -> Cors {
        Cors::new(&serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// Scenario: exact origins, a one-star pattern and `*`, in any case.
    /// Guarantees: matched as the Collector's rs/cors matches them.
    #[test]
    fn origins_match_exactly_or_around_one_star() {
        let c = cors("allowed_origins: [https://App.example.com, 'https://*.shop.test']");
        for (origin, ok) in [
            ("https://app.example.com", true),
            ("HTTPS://APP.EXAMPLE.COM", true),
            ("https://app.example.com.evil", false),
            ("http://app.example.com", false),
            ("https://a.shop.test", true),
            ("https://a.b.shop.test", true),
            ("https://shop.test", false),
            ("https://.shop.test", true),
        ] {
            assert_eq!(c.origin_allowed(origin), ok, "{origin}");
        }
        // A star in the middle matches dots too (configuration.md warns of it).
        let c = cors("allowed_origins: ['http://10.0.0.*:8080']");
        assert!(c.origin_allowed("http://10.0.0.7:8080"));
        assert!(c.origin_allowed("http://10.0.0.evil.example:8080"));
        assert!(!c.origin_allowed("http://10.0.0.7:8081"));
        assert!(cors("allowed_origins: ['*']").origin_allowed("null"));
        // One string (`${env:ORIGINS}`) is split at commas, as the Collector decodes it.
        let c = cors("allowed_origins: 'https://a.test,https://b.test'");
        assert!(c.origin_allowed("https://a.test") && c.origin_allowed("https://b.test"));
        assert!(!c.origin_allowed("https://a.test,https://b.test"));
    }

    /// Scenario: a browser's preflight for a JSON POST carrying an API key header, from an
    /// allowed origin, then variations that must not be allowed.
    /// Guarantees: the allowed one gets the origin, method, headers, credentials and max
    /// age back; an unknown origin, a PUT or an unlisted header gets no CORS header but
    /// `Vary`.
    #[test]
    fn a_preflight_is_answered_only_for_what_is_allowed() {
        let c = cors(
            "allowed_origins: [https://app.test]\nallowed_headers: [X-Api-Key]\nmax_age: 7200",
        );
        let ok = c.preflight(&request(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "post"),
            ("access-control-request-headers", "content-type, x-api-key"),
        ]));
        assert_eq!(ok["access-control-allow-origin"], "https://app.test");
        assert_eq!(ok["access-control-allow-methods"], "POST");
        assert_eq!(
            ok["access-control-allow-headers"],
            "content-type, x-api-key"
        );
        assert_eq!(ok["access-control-allow-credentials"], "true");
        assert_eq!(ok["access-control-max-age"], "7200");
        for bad in [
            [
                ("origin", "https://other.test"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            [
                ("origin", "https://app.test"),
                ("access-control-request-method", "PUT"),
                ("access-control-request-headers", "content-type"),
            ],
            [
                ("origin", "https://app.test"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization"),
            ],
        ] {
            let h = c.preflight(&request(&bad));
            assert!(!h.contains_key("access-control-allow-origin"), "{bad:?}");
            assert!(h.contains_key("vary"));
        }
        // A list in two fields: both parts checked, both answered.
        let mut two = request(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
        ]);
        two.append(
            "access-control-request-headers",
            HeaderValue::from_static("x-api-key"),
        );
        two.append(
            "access-control-request-headers",
            HeaderValue::from_static("content-type"),
        );
        assert_eq!(
            c.preflight(&two)["access-control-allow-headers"],
            "x-api-key,content-type"
        );
        two.append(
            "access-control-request-headers",
            HeaderValue::from_static("authorization"),
        );
        assert!(!c
            .preflight(&two)
            .contains_key("access-control-allow-origin"));
        // In any case and order (rs/cors wants them lower-case and sorted).
        let mixed = c.preflight(&request(&[
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "X-Api-Key, Content-Type"),
        ]));
        assert_eq!(
            mixed["access-control-allow-headers"],
            "X-Api-Key, Content-Type"
        );
        // With `*` the origin is echoed, not `*` (refused beside credentials).
        let any = cors("allowed_origins: ['*']").preflight(&request(&[
            ("origin", "https://anywhere.test"),
            ("access-control-request-method", "POST"),
        ]));
        assert_eq!(any["access-control-allow-origin"], "https://anywhere.test");
        // Without listed headers, X-Requested-With is allowed; with `*`, anything.
        let plain = cors("allowed_origins: ['*']");
        assert!(plain.headers_allowed("X-Requested-With, Content-Type"));
        assert!(!plain.headers_allowed("x-api-key"));
        assert!(cors("allowed_origins: ['*']\nallowed_headers: ['*']").headers_allowed("x-api-key"));
    }

    /// Scenario: a POST's answer from an allowed and from another origin; a block without
    /// origins.
    /// Guarantees: only the allowed origin is echoed, with credentials and `Retry-After`
    /// readable by the page (a real-browser check found the SDK blind to the router's
    /// back-off); both vary by origin; a block without origins is no policy.
    #[test]
    fn answers_carry_the_origin_only_when_allowed() {
        let c = cors("allowed_origins: [https://app.test]");
        let mut answer = HeaderMap::new();
        let origin = HeaderValue::from_static("https://app.test");
        c.decorate(&Method::POST, Some(&origin), &mut answer);
        assert_eq!(answer["access-control-allow-origin"], "https://app.test");
        assert_eq!(answer["access-control-allow-credentials"], "true");
        assert_eq!(answer["access-control-expose-headers"], "Retry-After");
        let mut answer = HeaderMap::new();
        let origin = HeaderValue::from_static("https://evil.test");
        c.decorate(&Method::POST, Some(&origin), &mut answer);
        assert!(!answer.contains_key("access-control-allow-origin"));
        assert!(!answer.contains_key("access-control-expose-headers"));
        assert_eq!(answer["vary"], "Origin");
        assert_eq!(Cors::new(&CorsConfig::default()), None);
        assert_eq!(CorsConfig::default().warning(), None);
        let headers_only: CorsConfig =
            serde_yaml_ng::from_str("allowed_headers: [x-api-key]").unwrap();
        assert_eq!(Cors::new(&headers_only), None);
        assert!(headers_only
            .warning()
            .unwrap()
            .contains("no allowed_origins"));
        let origins: CorsConfig = serde_yaml_ng::from_str("allowed_origins: ['*']").unwrap();
        assert_eq!(origins.warning(), None);
        // The Collector's exposed_headers (v0.154): exposed after Retry-After; a name
        // that is none is warned of and left out.
        let exposing: CorsConfig = serde_yaml_ng::from_str(
            "{allowed_origins: ['https://app.test'], exposed_headers: [X-Request-Id, 'bad name']}",
        )
        .unwrap();
        let mut answer = HeaderMap::new();
        let origin = HeaderValue::from_static("https://app.test");
        Cors::new(&exposing)
            .unwrap()
            .decorate(&Method::POST, Some(&origin), &mut answer);
        assert_eq!(
            answer["access-control-expose-headers"],
            "Retry-After, X-Request-Id"
        );
        assert!(exposing.warning().unwrap().contains("\"bad name\""));
    }
}
