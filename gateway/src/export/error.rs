//! Why an exporter's settings are refused, typed; shown by the config loader with the
//! exporter's key (`export.otlp/honeycomb`), and the Collector keys accepted and not
//! applied. A leaf of `export/`.

/// What is wrong with one exporter's settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    /// `export:` lists no exporter.
    #[error("configure at least one exporter (otlp_grpc, otlp_http or debug)")]
    NoExporter,
    /// An OTLP/HTTP exporter without `endpoint` or `traces_endpoint`.
    #[error("set endpoint (or traces_endpoint)")]
    NoEndpoint,
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error(transparent)]
    Endpoint(#[from] tailgate_core::endpoint::EndpointError),
    /// A header that is empty or cannot be sent.
    #[error("header {name:?} {problem}")]
    Header {
        /// The header's name.
        name: String,
        /// Why.
        problem: &'static str,
    },
    /// A size that must be positive.
    #[error("{key} must be greater than 0")]
    Zero {
        /// The setting.
        key: &'static str,
    },
    /// The `tls:` block.
    #[error("tls: {0}")]
    Tls(#[from] tailgate_core::tls::TlsError),
    /// A level in `compression_params` the compression does not take.
    #[error("{0}")]
    CompressionParams(String),
    /// `encoding` other than `proto`.
    #[error("encoding {0:?} is not supported: Tailgate's otlphttp exporter sends protobuf (encoding: proto)")]
    Encoding(String),
}

/// A Collector exporter key accepted so that a copied block loads, and not applied: its
/// value, whatever it is, is read and dropped (and the exporter warns at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

impl<'de> serde::Deserialize<'de> for NotApplied {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NotApplied)
    }
}

/// Reads an exporter's `headers` as the Collector writes them: a map (`{x-key: v}`), or
/// a list of `{name, value}` (`configopaque.MapList`, the Collector's newer form). A value
/// written as a number or a boolean (`header1: 234`) is its text, as the Collector reads
/// it; a name given twice in a list is refused.
pub(crate) fn deserialize_headers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    use serde::de::{Error, MapAccess, SeqAccess, Visitor};
    use std::collections::BTreeMap;

    /// A scalar read as its text.
    struct Text(String);
    impl<'de> serde::Deserialize<'de> for Text {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Text;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a header value (text, a number or a boolean)")
                }
                fn visit_str<E: Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_owned()))
                }
                fn visit_i64<E: Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_u64<E: Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_f64<E: Error>(self, v: f64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
                fn visit_bool<E: Error>(self, v: bool) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        name: String,
        value: Text,
    }

    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of header names to values, or a list of {name, value}")
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, Text(v))) = map.next_entry::<String, Text>()? {
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(Pair { name, value }) = seq.next_element::<Pair>()? {
                if out.insert(name.clone(), value.0).is_some() {
                    return Err(A::Error::custom(format!("header {name:?} is given twice")));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(Headers)
}

/// An empty header value (an unset `${env:}` variable, an empty file).
const EMPTY_HEADER: &str = "is empty (an unset ${env:…} variable or an empty file?)";

/// What is wrong with header `name`'s value written for a backend, if anything: empty,
/// or (an `authorization` header) a scheme with no credentials after it, as
/// `"Bearer ${env:TOKEN}"` with `TOKEN` unset reads. Each would be sent as it is and every
/// request refused by the backend.
pub(crate) fn header_problem(name: &str, value: &str) -> Option<&'static str> {
    const SCHEMES: [&str; 5] = ["bearer", "basic", "token", "apikey", "api-key"];
    let auth = name.eq_ignore_ascii_case("authorization")
        || name.eq_ignore_ascii_case("proxy-authorization");
    if value.trim().is_empty() {
        Some(EMPTY_HEADER)
    } else if auth && SCHEMES.iter().any(|s| value.trim().eq_ignore_ascii_case(s)) {
        Some("is an authorization scheme without credentials (an unset ${env:…} variable or an empty file after it?)")
    } else {
        None
    }
}
