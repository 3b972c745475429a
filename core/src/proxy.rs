//! Forward proxies for exporters: which proxy a client of an endpoint goes through, and a
//! connector that reaches the endpoint through it with an HTTP `CONNECT` tunnel.
//!
//! Where the settings come from: an `otlphttp` exporter's `proxy_url`, else the process's
//! `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (captured once in a [`ProxyEnv`]), read as
//! the Collector reads them: Go's `http.ProxyFromEnvironment` for `otlphttp`, and
//! grpc-go's proxy dialer (`HTTPS_PROXY` for every target, TLS or not) for `otlp`. Where
//! they go: [`crate::tls::Transport`] builds its client on a [`ProxyConnector`] when
//! there is a [`Proxy`]; TLS to the endpoint then runs inside the tunnel, so the proxy
//! sees only the endpoint's host and port.
//!
//! Only `http://` proxies are taken (what Go and grpc-go mostly meet); `https://` and
//! `socks5://` proxies are refused at load, naming where the value came from. Every
//! request goes through the tunnel, `http://` endpoints too (Go's `otlphttp` would send
//! those to the proxy as plain requests; a proxy that allows `CONNECT` only to port 443
//! refuses them here, and says so in the error).
//!
//! Hand-written rather than hyper-util's `Tunnel` and `Matcher`: those report a refused
//! tunnel without its status, default a port-less `http://` endpoint to 443, and match
//! `NO_PROXY` as curl does (`ALL_PROXY`, no ports, a leading dot matching the domain
//! itself), where the Collector follows Go's rules, which [`NoProxy`] implements.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderValue, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a proxy's answer to `CONNECT` may take before its blank line.
const MAX_ANSWER: usize = 8 * 1024;

/// A proxy settings value that cannot be used, or a tunnel that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A `proxy_url` or `*_PROXY` value that is not an `http://` proxy address.
    #[error("{source_name} {value:?}: {problem}")]
    Invalid {
        /// Where it came from: `proxy_url`, `HTTPS_PROXY`, …
        source_name: String,
        /// The value, credentials masked.
        value: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// No TCP connection to the proxy (the cause is its source, printed after it in
    /// error chains).
    #[error("connecting to proxy {proxy}")]
    Connect {
        /// The proxy.
        proxy: String,
        /// Why.
        source: std::io::Error,
    },
    /// The proxy answered `CONNECT` with another status than 200.
    #[error("proxy {proxy} refused CONNECT {target}: {status} {reason}{hint}")]
    Refused {
        /// The proxy.
        proxy: String,
        /// `host:port` asked for.
        target: String,
        /// Its status.
        status: u16,
        /// Its reason phrase.
        reason: String,
        /// What a 407 or 403 usually means.
        hint: &'static str,
    },
    /// The proxy's answer was not HTTP, too long, or cut short.
    #[error("proxy {proxy}: {problem}")]
    BadAnswer {
        /// The proxy.
        proxy: String,
        /// What was wrong.
        problem: &'static str,
    },
    /// Connecting and the `CONNECT` exchange took longer than the connect timeout.
    #[error("proxy {proxy} did not open a tunnel within {0:?}", .within)]
    Timeout {
        /// The proxy.
        proxy: String,
        /// The connect timeout.
        within: Duration,
    },
}

/// An HTTP proxy: where it is and the `Proxy-Authorization` its URL's credentials make.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    host: String,
    port: u16,
    auth: Option<HeaderValue>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the credentials.
        write!(f, "Proxy({self})")
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

impl Proxy {
    /// Reads a proxy address as Go does: `[http://][user:password@]host[:port]` (no scheme
    /// means `http://`, no port 80); `source_name` names it in errors.
    pub fn parse(source_name: &str, value: &str) -> Result<Proxy, ProxyError> {
        let invalid = |problem| ProxyError::Invalid {
            source_name: source_name.to_owned(),
            value: crate::endpoint::redact(value.trim()),
            problem,
        };
        let value = value.trim();
        let rest = match value.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _))
                if scheme.eq_ignore_ascii_case("https")
                    || scheme.to_ascii_lowercase().starts_with("socks") =>
            {
                return Err(invalid(
                    "only http:// proxies are supported (TLS to the endpoint still runs \
                     end to end inside the proxy's tunnel)",
                ))
            }
            Some(_) => return Err(invalid("unknown scheme: write http://host:port")),
            None => value,
        };
        // The authority ends at the first '/', '?' or '#'; a path is ignored, as in Go.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if !authority.contains('@') && rest.contains('@') {
            return Err(invalid(
                "a '/', '?' or '#' in the credentials must be written %2F, %3F or %23",
            ));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        if hostport.is_empty() {
            return Err(invalid("no host"));
        }
        let uri: Uri = format!("http://{hostport}/")
            .parse()
            .map_err(|_| invalid("not a host[:port]"))?;
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // Read from the text: `Uri::port` is `None` for a port over 65535.
        let port = match split_host_port(hostport).1 {
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(invalid("the port is not 1 to 65535")),
            },
        };
        let auth = match userinfo {
            None => None,
            Some(u) => {
                let (user, password) = u.split_once(':').unwrap_or((u, ""));
                let decode = |s: &str| {
                    percent_decode(s).ok_or_else(|| invalid("bad %-escape in the credentials"))
                };
                let pair = format!("{}:{}", decode(user)?, decode(password)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| invalid("credentials HTTP cannot carry"))?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Proxy { host, port, auth })
    }

    /// Whether requests carry `Proxy-Authorization` (the URL had credentials).
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }
}

/// `%XX` escapes decoded (credentials in a URL); `None` for a malformed escape or bytes
/// that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Which client asks: the proxy variable it reads depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFor {
    /// An OTLP/HTTP client (Go's `http.ProxyFromEnvironment`): `HTTPS_PROXY` for
    /// `https://` endpoints, `HTTP_PROXY` for `http://` ones.
    Http,
    /// An OTLP/gRPC client (grpc-go): `HTTPS_PROXY` for every endpoint.
    Grpc,
}

/// The proxy variables of a process, read once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// `HTTPS_PROXY` (or `https_proxy`).
    pub https: Option<String>,
    /// `HTTP_PROXY` (or `http_proxy`); Go ignores it when `REQUEST_METHOD` is set (CGI).
    pub http: Option<String>,
    /// `NO_PROXY` (or `no_proxy`).
    pub no: Option<String>,
    /// The names `https` and `http` were read under, for messages.
    pub names: ProxyNames,
    /// `REQUEST_METHOD` is set and not empty: a CGI program, where Go refuses `HTTP_PROXY`
    /// (it could come from a request's `Proxy:` header).
    pub cgi: bool,
}

/// The names a [`ProxyEnv`]'s proxies were read under: upper case unless only the lower
/// case one was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyNames {
    /// `HTTPS_PROXY` or `https_proxy`.
    pub https: &'static str,
    /// `HTTP_PROXY` or `http_proxy`.
    pub http: &'static str,
}

impl Default for ProxyNames {
    fn default() -> Self {
        ProxyNames {
            https: "HTTPS_PROXY",
            http: "HTTP_PROXY",
        }
    }
}

impl ProxyEnv {
    /// This process's variables as Go's `httpproxy.FromEnvironment` reads them: upper case
    /// first, an empty value as unset.
    pub fn from_process() -> ProxyEnv {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Self::from_process`] on the variables `var` gives.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> ProxyEnv {
        let get = |names: [&'static str; 2]| {
            names
                .into_iter()
                .find_map(|n| var(n).filter(|v| !v.is_empty()).map(|v| (n, v)))
        };
        let cgi = var("REQUEST_METHOD").is_some_and(|v| !v.is_empty());
        let https = get(["HTTPS_PROXY", "https_proxy"]);
        let http = get(["HTTP_PROXY", "http_proxy"]);
        let defaults = ProxyNames::default();
        ProxyEnv {
            names: ProxyNames {
                https: https.as_ref().map_or(defaults.https, |v| v.0),
                http: http.as_ref().map_or(defaults.http, |v| v.0),
            },
            https: https.map(|v| v.1),
            http: http.map(|v| v.1),
            no: get(["NO_PROXY", "no_proxy"]).map(|v| v.1),
            cgi,
        }
    }

    /// The variable a `client` of `endpoint` reads: its name and value.
    pub fn variable(&self, endpoint: &Uri, client: ProxyFor) -> (&'static str, Option<&String>) {
        match (client, endpoint.scheme_str() == Some("https")) {
            (ProxyFor::Grpc, _) | (ProxyFor::Http, true) => (self.names.https, self.https.as_ref()),
            (ProxyFor::Http, false) => (self.names.http, self.http.as_ref()),
        }
    }

    /// The proxy a `client` of `endpoint` goes through, if any: none for `localhost` and
    /// loopback addresses, nor for hosts `NO_PROXY` names.
    pub fn for_endpoint(
        &self,
        endpoint: &Uri,
        client: ProxyFor,
    ) -> Result<Option<Proxy>, ProxyError> {
        let https = endpoint.scheme_str() == Some("https");
        let (name, value) = self.variable(endpoint, client);
        let Some(value) = value else {
            return Ok(None);
        };
        if self.cgi && client == ProxyFor::Http && !https {
            // Before any other test, as Go's `proxyForURL` makes it.
            return Err(ProxyError::Invalid {
                source_name: name.to_owned(),
                value: crate::endpoint::redact(value.trim()),
                problem: "refused in a CGI environment (REQUEST_METHOD is set), as Go refuses \
                          it: unset REQUEST_METHOD, or set proxy_url",
            });
        }
        let Some(host) = endpoint.host() else {
            return Ok(None);
        };
        let port = endpoint.port_u16().unwrap_or(if https { 443 } else { 80 });
        let no = NoProxy::parse(self.no.as_deref().unwrap_or_default());
        if !no.uses_proxy(host, port) {
            return Ok(None);
        }
        Proxy::parse(name, value).map(Some)
    }
}

/// `NO_PROXY` as Go's `httpproxy` reads it: comma-separated entries, each `*` (no proxy
/// at all), an IP address or CIDR block, or a domain (`example.com` matches it and its
/// subdomains, `.example.com` and `*.example.com` only subdomains), an address or
/// domain optionally with `:port`. Malformed entries are skipped, as there.
#[derive(Debug, Default)]
pub struct NoProxy {
    all: bool,
    ips: Vec<(IpAddr, Option<u16>)>,
    nets: Vec<(IpAddr, u8)>,
    /// Suffix with its leading dot, whether the bare domain matches too, the port.
    domains: Vec<(String, bool, Option<u16>)>,
}

impl NoProxy {
    /// Reads a `NO_PROXY` value.
    pub fn parse(value: &str) -> NoProxy {
        let mut no = NoProxy::default();
        for entry in value.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                no.all = true;
                continue;
            }
            if let Some((addr, bits)) = entry.split_once('/') {
                if let (Ok(ip), Ok(bits)) = (addr.parse::<IpAddr>(), bits.parse::<u8>()) {
                    if bits <= if ip.is_ipv4() { 32 } else { 128 } {
                        no.nets.push((ip, bits));
                    }
                }
                continue;
            }
            let (host, port) = split_host_port(&entry);
            let Ok(port) = port.map(str::parse::<u16>).transpose() else {
                continue;
            };
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                no.ips.push((ip, port));
                continue;
            }
            // `*.example.com` is `.example.com`; a `*` anywhere else is a literal.
            let (suffix, bare) = match (host.strip_prefix("*."), host.strip_prefix('.')) {
                (Some(rest), _) => (format!(".{rest}"), false),
                (None, Some(_)) => (host.to_owned(), false),
                (None, None) => (format!(".{host}"), true),
            };
            if suffix.len() > 1 {
                no.domains.push((suffix, bare, port));
            }
        }
        no
    }

    /// Whether a request to `host:port` goes through the proxy.
    pub fn uses_proxy(&self, host: &str, port: u16) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if host == "localhost" {
            return false;
        }
        let ip = host.parse::<IpAddr>().ok();
        if ip.is_some_and(|ip| ip.to_canonical().is_loopback()) || self.all {
            return false;
        }
        let port_ok = |p: &Option<u16>| p.is_none_or(|p| p == port);
        if let Some(ip) = ip {
            if self.ips.iter().any(|(a, p)| *a == ip && port_ok(p))
                || self.nets.iter().any(|&(net, bits)| contains(net, bits, ip))
            {
                return false;
            }
        }
        !self.domains.iter().any(|(suffix, bare, p)| {
            (host.ends_with(suffix.as_str()) || (*bare && host == suffix[1..])) && port_ok(p)
        })
    }
}

/// `host[:port]`, `[v6][:port]` or a bare IPv6 address, split.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (s, None),
    }
}

/// Whether `ip` lies in `net`/`bits`.
fn contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// A connector (for hyper's client) that reaches each destination through a `CONNECT`
/// tunnel of one proxy, within `connect_timeout` for the TCP connection and the exchange.
#[derive(Debug, Clone)]
pub struct ProxyConnector {
    proxy: Arc<Proxy>,
    connect_timeout: Duration,
}

impl ProxyConnector {
    /// Through `proxy`.
    pub fn new(proxy: &Proxy, connect_timeout: Duration) -> Self {
        ProxyConnector {
            proxy: Arc::new(proxy.clone()),
            connect_timeout,
        }
    }
}

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let proxy = self.proxy.clone();
        let within = self.connect_timeout;
        Box::pin(async move {
            let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let host = dst.host().unwrap_or_default();
            let target = if host.contains(':') && !host.starts_with('[') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match tokio::time::timeout(within, tunnel(&proxy, &target)).await {
                Ok(result) => result.map(TokioIo::new),
                Err(_) => Err(ProxyError::Timeout {
                    proxy: proxy.to_string(),
                    within,
                }),
            }
        })
    }
}

/// Connects to `proxy` and asks it for a tunnel to `target` (`host:port`).
async fn tunnel(proxy: &Proxy, target: &str) -> Result<TcpStream, ProxyError> {
    let shown = || proxy.to_string();
    let mut stream = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|source| ProxyError::Connect {
            proxy: shown(),
            source,
        })?;
    // As the clients set it on direct connections: requests are written whole.
    stream.set_nodelay(true).ok();
    let mut ask = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = &proxy.auth {
        ask.extend_from_slice(b"Proxy-Authorization: ");
        ask.extend_from_slice(auth.as_bytes());
        ask.extend_from_slice(b"\r\n");
    }
    ask.extend_from_slice(b"\r\n");
    let io = |source| ProxyError::Connect {
        proxy: shown(),
        source,
    };
    stream.write_all(&ask).await.map_err(io)?;
    // Read the answer's head byte by byte: nothing after its blank line may be taken
    // from the stream (it belongs to the tunnel). A head is read once per connection.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() == MAX_ANSWER {
            return Err(ProxyError::BadAnswer {
                proxy: shown(),
                problem: "its answer to CONNECT is over 8 KiB",
            });
        }
        let byte = match stream.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ProxyError::BadAnswer {
                    proxy: shown(),
                    problem: "it closed the connection before answering CONNECT",
                })
            }
            Err(e) => return Err(io(e)),
        };
        head.push(byte);
    }
    let (status, reason) = status_line(&head).ok_or_else(|| ProxyError::BadAnswer {
        proxy: shown(),
        problem: "its answer to CONNECT is not HTTP",
    })?;
    if status == 200 {
        return Ok(stream);
    }
    Err(ProxyError::Refused {
        proxy: shown(),
        target: target.to_owned(),
        status,
        reason,
        hint: match status {
            401 | 407 if proxy.auth.is_some() => " (it did not take the credentials in the proxy URL)",
            401 | 407 => " (it wants credentials: write them in the proxy URL, http://user:password@host:port)",
            403 => " (many proxies allow CONNECT only to port 443, or only to listed hosts)",
            _ => "",
        },
    })
}

/// `HTTP/1.x NNN reason` from an answer's head.
fn status_line(head: &[u8]) -> Option<(u16, String)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse::<u16>().ok()?;
    let reason: String = parts.next().unwrap_or_default().chars().take(120).collect();
    Some((status, reason))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    /// Scenario: proxy addresses as people write them in `proxy_url` and `*_PROXY`.
    /// Guarantees: no scheme means http, no port 80, credentials become Basic auth
    /// (percent-decoded) and never show; https, socks and unknown schemes and a missing
    /// host are refused by kind, naming the source and masking credentials.
    #[test]
    fn proxy_addresses_read_as_go_reads_them() {
        let p = Proxy::parse("HTTPS_PROXY", "proxy.corp:3128").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp:3128");
        assert!(!p.has_credentials());
        let p = Proxy::parse("proxy_url", " http://proxy.corp/ignored/path ").unwrap();
        assert_eq!(p.to_string(), "http://proxy.corp:80");
        let p = Proxy::parse("proxy_url", "http://[::1]:8080").unwrap();
        assert_eq!(p.to_string(), "http://[::1]:8080");
        let p = Proxy::parse("proxy_url", "http://us%40er:p%3Ass@proxy:3128").unwrap();
        assert!(p.has_credentials());
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(
            p.auth.as_ref().unwrap().to_str().unwrap(),
            format!("Basic {expected}")
        );
        assert!(!format!("{p:?}").contains("p:ss"));
        for (value, problem) in [
            ("https://proxy:443", "only http://"),
            ("socks5://proxy:1080", "only http://"),
            ("ftp://proxy", "unknown scheme"),
            ("http://user:secret@", "no host"),
            ("http://proxy:99999", "not 1 to 65535"),
            ("proxy:0", "not 1 to 65535"),
            ("http://pro xy:80", "not a host[:port]"),
            ("http://u:%zz@proxy", "%-escape"),
            ("u:hunter://2@proxy:3128", "unknown scheme"),
            ("http://u:pa/ss@proxy:3128", "must be written %2F"),
        ] {
            let err = Proxy::parse("HTTPS_PROXY", value).expect_err(value);
            let ProxyError::Invalid { source_name, .. } = &err else {
                panic!("{value}: {err:?}")
            };
            assert_eq!(source_name, "HTTPS_PROXY");
            let said = err.to_string();
            assert!(said.contains(problem), "{value}: {said}");
            assert!(!said.contains("secret"), "{said}");
        }
    }

    /// Scenario: the rules of Go's `NO_PROXY`, entry by entry.
    /// Guarantees: `localhost` and loopback addresses never use the proxy; `*` turns it
    /// off; a domain matches itself and its subdomains, `.domain` and `*.domain` only
    /// subdomains; addresses, CIDR blocks and ports match as written; bad entries are
    /// skipped without hiding good ones.
    #[test]
    fn no_proxy_follows_go() {
        let none = NoProxy::parse("");
        assert!(none.uses_proxy("api.honeycomb.io", 443));
        assert!(!none.uses_proxy("localhost", 4317));
        assert!(!none.uses_proxy("127.0.0.2", 4317));
        assert!(!none.uses_proxy("[::1]", 4317));
        assert!(!NoProxy::parse("*").uses_proxy("api.honeycomb.io", 443));
        assert!(!none.uses_proxy("::ffff:127.0.0.1", 4317));
        // Only `*.` is a wildcard prefix.
        assert!(NoProxy::parse("*example.com").uses_proxy("example.com", 443));
        assert!(NoProxy::parse("*example.com").uses_proxy("a.example.com", 443));
        let no = NoProxy::parse(
            "corp.example, .svc.cluster.local, *.internal, 10.0.0.0/8, 192.168.1.7, \
             backend.example:4318, [fd00::1]:443, bad/77, :80, ,",
        );
        assert!(!no.uses_proxy("corp.example", 443));
        assert!(!no.uses_proxy("api.corp.example", 443));
        assert!(no.uses_proxy("notcorp.example", 443));
        assert!(!no.uses_proxy("otel.monitoring.svc.cluster.local", 4317));
        assert!(no.uses_proxy("svc.cluster.local", 4317));
        assert!(!no.uses_proxy("a.internal", 4317));
        assert!(no.uses_proxy("internal", 4317));
        assert!(!no.uses_proxy("10.20.30.40", 4317));
        assert!(no.uses_proxy("11.0.0.1", 4317));
        assert!(!no.uses_proxy("192.168.1.7", 1));
        assert!(!no.uses_proxy("backend.example", 4318));
        assert!(no.uses_proxy("backend.example", 443));
        assert!(!no.uses_proxy("[fd00::1]", 443));
        assert!(no.uses_proxy("[fd00::1]", 80));
        // A bracketed address without a port matches it (Go skips such an entry).
        assert!(!NoProxy::parse("[fd00::2]").uses_proxy("[fd00::2]", 4317));
        assert!(!no.uses_proxy("API.CORP.EXAMPLE", 443));
    }

    /// Scenario: one environment, endpoints of both clients.
    /// Guarantees: OTLP/HTTP takes `HTTPS_PROXY` for https and `HTTP_PROXY` for http;
    /// OTLP/gRPC takes `HTTPS_PROXY` for both, as grpc-go; `NO_PROXY` and loopback
    /// endpoints go direct; a bad value is an error naming its variable.
    #[test]
    fn the_variable_read_depends_on_the_client_and_scheme() {
        let env = ProxyEnv {
            https: Some("http://secure-proxy:3128".into()),
            http: Some("plain-proxy:8080".into()),
            no: Some("direct.example".into()),
            ..ProxyEnv::default()
        };
        let via = |u: &str, c| env.for_endpoint(&uri(u), c).unwrap().map(|p| p.to_string());
        assert_eq!(
            via("https://api.example:443", ProxyFor::Http).as_deref(),
            Some("http://secure-proxy:3128")
        );
        assert_eq!(
            via("http://api.example:4318", ProxyFor::Http).as_deref(),
            Some("http://plain-proxy:8080")
        );
        assert_eq!(
            via("http://api.example:4317", ProxyFor::Grpc).as_deref(),
            Some("http://secure-proxy:3128")
        );
        assert_eq!(via("https://direct.example", ProxyFor::Grpc), None);
        assert_eq!(via("http://127.0.0.1:4317", ProxyFor::Grpc), None);
        // A port left out is the scheme's, as NO_PROXY entries with ports see it.
        let ported = ProxyEnv {
            no: Some("api.example:443".into()),
            ..env.clone()
        };
        assert_eq!(
            ported
                .for_endpoint(&uri("https://api.example"), ProxyFor::Http)
                .unwrap(),
            None
        );
        assert!(ported
            .for_endpoint(&uri("http://api.example"), ProxyFor::Http)
            .unwrap()
            .is_some());
        let unset = ProxyEnv::default();
        assert_eq!(
            unset
                .for_endpoint(&uri("https://api.example"), ProxyFor::Http)
                .unwrap(),
            None
        );
        let bad = ProxyEnv {
            https: Some("socks5://proxy:1080".into()),
            ..ProxyEnv::default()
        };
        let err = bad
            .for_endpoint(&uri("https://api.example"), ProxyFor::Grpc)
            .unwrap_err();
        assert!(
            matches!(&err, ProxyError::Invalid { source_name, .. } if source_name == "HTTPS_PROXY"),
            "{err:?}"
        );
        // A bad value an endpoint does not use is no error for it.
        assert_eq!(
            bad.for_endpoint(&uri("https://localhost:4317"), ProxyFor::Grpc)
                .unwrap(),
            None
        );
    }

    /// Scenario: variables set as shells and Kubernetes set them: both spellings, empty
    /// values, a CGI environment.
    /// Guarantees: as Go's `getEnvAny`, upper case first and an empty value passed over
    /// for the other spelling, whose name messages then use; with `REQUEST_METHOD` set and
    /// not empty, `HTTP_PROXY` is an error for http:// requests, as Go makes it (before
    /// `NO_PROXY` and loopback are looked at), and `HTTPS_PROXY` still applies; `ALL_PROXY`
    /// is not read.
    #[test]
    fn variables_are_read_as_go_reads_them() {
        let env = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> = vars
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect();
            ProxyEnv::from_vars(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
        };
        let e = env(&[
            ("HTTPS_PROXY", "a:1"),
            ("https_proxy", "b:2"),
            ("no_proxy", "x"),
        ]);
        assert_eq!(e.https.as_deref(), Some("a:1"));
        assert_eq!(e.names.https, "HTTPS_PROXY");
        assert_eq!(e.no.as_deref(), Some("x"));
        let e = env(&[
            ("HTTPS_PROXY", ""),
            ("https_proxy", "b:2"),
            ("NO_PROXY", ""),
            ("no_proxy", "y"),
        ]);
        assert_eq!(e.https.as_deref(), Some("b:2"));
        assert_eq!(e.names.https, "https_proxy");
        assert_eq!(e.no.as_deref(), Some("y"));
        let https = uri("https://api.example");
        assert_eq!(e.variable(&https, ProxyFor::Grpc).0, "https_proxy");
        let err = env(&[("https_proxy", "socks5://p:1")])
            .for_endpoint(&https, ProxyFor::Http)
            .unwrap_err();
        assert!(err.to_string().starts_with("https_proxy "), "{err}");
        assert_eq!(
            env(&[("HTTP_PROXY", "p:1"), ("REQUEST_METHOD", "")])
                .http
                .as_deref(),
            Some("p:1")
        );
        // Under CGI, Go refuses HTTP_PROXY for http:// requests (not HTTPS_PROXY).
        let cgi = env(&[
            ("HTTP_PROXY", "p:1"),
            ("HTTPS_PROXY", "q:2"),
            ("REQUEST_METHOD", "GET"),
        ]);
        let err = cgi
            .for_endpoint(&uri("http://127.0.0.1:4318"), ProxyFor::Http)
            .unwrap_err();
        assert!(err.to_string().contains("CGI"), "{err}");
        assert!(cgi
            .for_endpoint(&uri("https://api.example"), ProxyFor::Http)
            .unwrap()
            .is_some());
        assert!(cgi
            .for_endpoint(&uri("http://api.example:4317"), ProxyFor::Grpc)
            .unwrap()
            .is_some());
        assert_eq!(env(&[("ALL_PROXY", "p:1")]), ProxyEnv::default());
    }

    /// Scenario: a proxy's answers to CONNECT, good and bad, on an in-process listener.
    /// Guarantees: 200 gives the stream with nothing of the tunnel's bytes consumed;
    /// 407 and 403 are `Refused` with their status and a hint; a closed connection and
    /// a non-HTTP answer are `BadAnswer`; the request carries Host and the credentials.
    #[tokio::test]
    async fn connect_answers_are_read_as_they_are() {
        async fn proxy_answering(
            answer: &'static [u8],
        ) -> (Proxy, tokio::task::JoinHandle<Vec<u8>>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    head.push(s.read_u8().await.unwrap());
                }
                s.write_all(answer).await.unwrap();
                head
            });
            let proxy =
                Proxy::parse("proxy_url", &format!("http://u:pw@127.0.0.1:{port}")).unwrap();
            (proxy, task)
        }
        let (proxy, task) =
            proxy_answering(b"HTTP/1.1 200 Connection established\r\n\r\nTUNNEL").await;
        let mut stream = tunnel(&proxy, "backend.example:443").await.unwrap();
        let mut first = [0u8; 6];
        stream.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"TUNNEL");
        let head = String::from_utf8(task.await.unwrap()).unwrap();
        assert!(
            head.starts_with("CONNECT backend.example:443 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("Host: backend.example:443\r\n"), "{head}");
        let basic = base64::engine::general_purpose::STANDARD.encode("u:pw");
        assert!(
            head.contains(&format!("Proxy-Authorization: Basic {basic}\r\n")),
            "{head}"
        );

        let (proxy, _task) =
            proxy_answering(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
        match tunnel(&proxy, "b:443").await.unwrap_err() {
            ProxyError::Refused {
                status: 407, hint, ..
            } => assert!(hint.contains("credentials")),
            other => panic!("{other:?}"),
        }
        let (proxy, _task) = proxy_answering(b"HTTP/1.0 403 Forbidden\r\n\r\n").await;
        let err = tunnel(&proxy, "b:4318").await.unwrap_err();
        assert!(
            matches!(err, ProxyError::Refused { status: 403, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("403 Forbidden"), "{err}");
        let (proxy, _task) = proxy_answering(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(matches!(
            tunnel(&proxy, "b:1").await.unwrap_err(),
            ProxyError::BadAnswer { .. }
        ));
        let (proxy, _task) = proxy_answering(b"HTTP/1.1 200").await;
        assert!(matches!(
            tunnel(&proxy, "b:1").await.unwrap_err(),
            ProxyError::BadAnswer { .. }
        ));
        let (proxy, _task) = proxy_answering(b"HTTP/1.1 401 Unauthorized\r\n\r\n").await;
        let err = tunnel(&proxy, "b:1").await.unwrap_err().to_string();
        assert!(err.contains("did not take the credentials"), "{err}");
        // A proxy not listening: the cause is the error's source, said once in a chain.
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let proxy = Proxy::parse("proxy_url", &format!("127.0.0.1:{closed}")).unwrap();
        let err = tunnel(&proxy, "b:1").await.unwrap_err();
        assert!(matches!(err, ProxyError::Connect { .. }), "{err:?}");
        let chain = crate::forward::error_chain(&err);
        assert_eq!(chain.matches("refused").count(), 1, "{chain}");
    }

    /// Scenario: a proxy that accepts the connection and never answers (a real clock and a
    /// 300 ms connect timeout); one that answers with an endless head; an IPv6 endpoint.
    /// Guarantees: the connector gives up at its connect timeout with `Timeout` after the
    /// proxy took the connection (the timeout covers the exchange, not only the TCP
    /// connect); a head over 8 KiB is `BadAnswer`; an IPv6 target is asked for in brackets.
    #[tokio::test]
    async fn silent_endless_and_ipv6_exchanges() {
        use tower_service::Service as _;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, was_accepted) = tokio::sync::oneshot::channel();
        let _held = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            accepted.send(()).ok();
            std::future::pending::<()>().await;
            drop(s);
        });
        let proxy = Proxy::parse("proxy_url", &format!("127.0.0.1:{port}")).unwrap();
        let mut connector = ProxyConnector::new(&proxy, Duration::from_millis(300));
        let err = connector
            .call(uri("https://backend.example"))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Timeout { .. }), "{err:?}");
        was_accepted.await.unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _endless = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
            let line = [b'x'; 1024];
            while s.write_all(&line).await.is_ok() {}
        });
        let proxy = Proxy::parse("proxy_url", &format!("127.0.0.1:{port}")).unwrap();
        let err = tunnel(&proxy, "b:443").await.unwrap_err();
        assert!(
            matches!(err, ProxyError::BadAnswer { problem, .. } if problem.contains("8 KiB")),
            "{err:?}"
        );

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                head.push(s.read_u8().await.unwrap());
            }
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let proxy = Proxy::parse("proxy_url", &format!("127.0.0.1:{port}")).unwrap();
        let mut connector = ProxyConnector::new(&proxy, Duration::from_secs(5));
        connector.call(uri("https://[fd00::7]:4317")).await.unwrap();
        let head = asked.await.unwrap();
        assert!(
            head.starts_with("CONNECT [fd00::7]:4317 HTTP/1.1\r\n"),
            "{head}"
        );
    }
}
