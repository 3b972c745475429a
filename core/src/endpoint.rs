//! The one parser of the endpoints Tailgate dials: exporters' backends, the router's
//! gateways, the gateways' peers. `http://host:port` and `https://host:port`; a bare
//! `host:port` reads as `http://` where the caller allows it (gRPC endpoints, as the
//! Collector writes them), and whether a connection then uses TLS is
//! [`crate::tls::ClientTlsConfig::uses_tls`]'s to say. A leaf: it imports nothing of
//! the crate.

/// Why an endpoint cannot be dialled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL at all.
    #[error("endpoint {endpoint:?} is not a URL: {reason}")]
    NotAUrl {
        /// As written.
        endpoint: String,
        /// The URL parser's words.
        reason: String,
    },
    /// A scheme other than `http` and `https`.
    #[error("endpoint {endpoint:?}: scheme {scheme:?} is not supported; use http:// or https://")]
    Scheme {
        /// As written.
        endpoint: String,
        /// The scheme.
        scheme: String,
    },
    /// No scheme where one is required (OTLP/HTTP URLs).
    #[error("endpoint {endpoint:?} needs a scheme: http:// or https://")]
    NoScheme {
        /// As written.
        endpoint: String,
    },
    /// A Unix socket (`unix:///path`, which grpc-go dials): Tailgate dials TCP only.
    #[error("endpoint {endpoint:?}: Unix sockets are not supported; Tailgate's clients dial TCP (host:port, or an http:// or https:// URL)")]
    UnixSocket {
        /// As written.
        endpoint: String,
    },
    /// No host.
    #[error("endpoint {endpoint:?} needs a host")]
    NoHost {
        /// As written.
        endpoint: String,
    },
    /// No endpoint at all (an unset `${env:…}` variable).
    #[error("the endpoint is empty (an unset ${{env:…}} variable?)")]
    Empty,
    /// A port that is no TCP port (`:99999`, `:0`, `:http`).
    #[error("endpoint {endpoint:?}: port {port:?} is not a port number (1-65535)")]
    Port {
        /// As written.
        endpoint: String,
        /// The port as written.
        port: String,
    },
    /// Credentials in the URL (`user:password@host`): neither sent nor kept out of the
    /// logs, which print endpoints. The endpoint is named with them masked.
    #[error(
        "endpoint {masked:?} carries credentials (user:password@): Tailgate does not send \
         them; put them in a basicauth extension (client_auth: {{username, password}}) named \
         by the exporter's auth: {{authenticator: …}}, as a Collector config does"
    )]
    Credentials {
        /// The endpoint with what comes before `@` replaced by `***`.
        masked: String,
    },
}

/// What a bare `host:port` (no scheme) means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bare {
    /// `http://host:port` (gRPC endpoints).
    AsHttp,
    /// An error (OTLP/HTTP URLs).
    Refused,
}

/// `endpoint` as it may be shown: what comes before its last `@` replaced by `***`, the
/// scheme kept when there is one (credentials, however they are written: a password may
/// hold `/`, `?`, `#` or even `://`, and a proxy value may have no scheme).
pub fn redact(endpoint: &str) -> String {
    let Some((before, host)) = endpoint.rsplit_once('@') else {
        return endpoint.to_owned();
    };
    match before.split_once("://") {
        Some((scheme, _)) if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            format!("{scheme}://***@{host}")
        }
        _ => format!("***@{host}"),
    }
}

/// Reads an `authority` setting (gRPC's `:authority`): `host[:port]`, no credentials.
pub fn parse_authority(authority: &str) -> Result<http::uri::Authority, String> {
    authority
        .parse::<http::uri::Authority>()
        .ok()
        .filter(|a| !a.host().is_empty() && !authority.contains('@'))
        // `Authority::port` is `None` for a port that is not a number: refuse it.
        .filter(|a| {
            a.port_u16().is_some() || a.as_str().ends_with(']') || !a.as_str().contains(':')
        })
        .ok_or_else(|| format!("authority {authority:?} is not a host[:port]"))
}

/// Parses `endpoint` into a URI with an `http` or `https` scheme and a host.
pub fn parse(endpoint: &str, bare: Bare) -> Result<http::Uri, EndpointError> {
    // Credentials first, before any error could print them.
    if redact(endpoint) != endpoint {
        return Err(EndpointError::Credentials {
            masked: redact(endpoint),
        });
    }
    if endpoint.trim().is_empty() {
        return Err(EndpointError::Empty);
    }
    let owned = || endpoint.to_owned();
    if endpoint
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("unix:"))
    {
        return Err(EndpointError::UnixSocket { endpoint: owned() });
    }
    let url = match (endpoint.contains("://"), bare) {
        (true, _) => endpoint.to_owned(),
        (false, Bare::AsHttp) => format!("http://{endpoint}"),
        (false, Bare::Refused) => return Err(EndpointError::NoScheme { endpoint: owned() }),
    };
    let uri: http::Uri =
        url.parse()
            .map_err(|e: http::uri::InvalidUri| EndpointError::NotAUrl {
                endpoint: owned(),
                reason: e.to_string(),
            })?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        other => {
            return Err(EndpointError::Scheme {
                endpoint: owned(),
                scheme: other.unwrap_or_default().to_owned(),
            })
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost { endpoint: owned() });
    }
    // The URI parser takes any digits, or none (`host:`), as a port.
    if let Some(authority) = uri.authority() {
        let after_host = authority
            .as_str()
            .rsplit_once(']')
            .map_or(authority.as_str(), |(_, rest)| rest);
        if let Some((_, port)) = after_host.rsplit_once(':') {
            if !port.parse::<u16>().is_ok_and(|p| p != 0) {
                return Err(EndpointError::Port {
                    endpoint: owned(),
                    port: port.to_owned(),
                });
            }
        }
    }
    Ok(uri)
}

/// `uri` without a port that is its scheme's default (`https://h:443/p` is `https://h/p`).
pub fn without_default_port(uri: http::Uri) -> http::Uri {
    let default = match uri.scheme_str() {
        Some("https") => 443,
        Some("http") => 80,
        _ => return uri,
    };
    let (Some(port), Some(host)) = (uri.port_u16(), uri.host()) else {
        return uri;
    };
    if port != default {
        return uri;
    }
    // An IPv6 host keeps its brackets.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let mut parts = uri.clone().into_parts();
    match host.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            http::Uri::from_parts(parts).unwrap_or(uri)
        }
        Err(_) => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: the forms endpoints are written in. Guarantees: http(s) URLs and bare
    /// `host:port` (where allowed) parse; everything else is refused by kind.
    #[test]
    fn endpoints_parse_or_say_why_not() {
        assert_eq!(
            parse("b:4317", Bare::AsHttp).unwrap().to_string(),
            "http://b:4317/"
        );
        assert_eq!(
            parse("https://b:443", Bare::Refused).unwrap().scheme_str(),
            Some("https")
        );
        assert!(matches!(
            parse("b:4318", Bare::Refused),
            Err(EndpointError::NoScheme { .. })
        ));
        assert!(matches!(
            parse("ftp://b", Bare::AsHttp),
            Err(EndpointError::Scheme { .. })
        ));
        assert!(matches!(
            parse("http://", Bare::AsHttp),
            Err(EndpointError::NotAUrl { .. } | EndpointError::NoHost { .. })
        ));
        assert!(matches!(
            parse("not a url", Bare::AsHttp),
            Err(EndpointError::NotAUrl { .. })
        ));
        for (written, plain) in [
            (
                "https://xray.us-east-1.amazonaws.com:443/v1/traces",
                "https://xray.us-east-1.amazonaws.com/v1/traces",
            ),
            ("http://b:80/v1/traces?x=1", "http://b/v1/traces?x=1"),
            ("https://[::1]:443/v1/traces", "https://[::1]/v1/traces"),
            ("https://b:8443/v1/traces", "https://b:8443/v1/traces"),
        ] {
            let uri = parse(written, Bare::Refused).unwrap();
            assert_eq!(without_default_port(uri).to_string(), plain);
        }
        // Ports the URI parser takes and no TCP connection can use (an adoption audit
        // had `127.0.0.1:99999` checked ok); IPv6 hosts keep their colons.
        for (endpoint, port) in [
            ("127.0.0.1:99999", "99999"),
            ("https://b:0/v1/traces", "0"),
            ("b:", ""),
            ("http://[::1]:70000", "70000"),
        ] {
            assert_eq!(
                parse(endpoint, Bare::AsHttp),
                Err(EndpointError::Port {
                    endpoint: endpoint.into(),
                    port: port.into()
                }),
                "{endpoint}"
            );
        }
        assert_eq!(parse(" ", Bare::AsHttp), Err(EndpointError::Empty));
        for fine in ["http://[::1]:4317", "https://[::1]/v1/traces", "b:65535"] {
            assert!(parse(fine, Bare::AsHttp).is_ok(), "{fine}");
        }
        // grpc-go's Unix sockets, named as such rather than "not a URL".
        for unix in ["unix:///var/run/otel.sock", "unix:relative.sock"] {
            assert!(matches!(
                parse(unix, Bare::AsHttp),
                Err(EndpointError::UnixSocket { .. })
            ));
        }
        // Credentials in the URL are refused, and the message does not repeat them.
        for endpoint in [
            "https://instance123:glc_SeCrEt@otlp.example.com/otlp",
            "user:pw@b:4317",
            // A password holding '/' ends the URL's authority early: still caught.
            "https://user:SeCrEt/pw@b:4318/v1/traces",
        ] {
            let err = parse(endpoint, Bare::AsHttp).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, EndpointError::Credentials { .. }), "{text}");
            assert!(!text.contains("SeCrEt") && !text.contains("pw@"), "{text}");
            assert!(!redact(endpoint).contains("SeCrEt"), "{endpoint}");
            for bare in [Bare::AsHttp, Bare::Refused] {
                assert!(!parse(endpoint, bare)
                    .unwrap_err()
                    .to_string()
                    .contains("SeCrEt"));
            }
            assert!(
                text.contains("***@") && text.contains("basicauth extension"),
                "{text}"
            );
        }
    }
}
