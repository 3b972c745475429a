//! Reading a whole OpenTelemetry Collector config for what a Tailgate binary needs: the
//! parts both binaries share (the traces pipeline's `otlp` receiver as `receive`, the
//! `health_check` extension as `admin`, the service's telemetry as `metrics`). Each
//! binary adds its own part (the router the `loadbalancing` exporter, the gateway its
//! exporters) and deserializes the sections it is given, each with the Collector key it
//! was read from, so that errors name that key and its line.
//!
//! Data comes from the parsed file (references already expanded, [`crate::config::parse_yaml`])
//! and goes back to the binary's config loader as YAML values in the binary's own shape,
//! plus notes naming what was written and is not applied.

use serde_yaml_ng::{Mapping, Value};

/// Why a Collector config cannot be read as a Tailgate config: the Collector key at fault
/// and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TranslateError {
    /// The Collector key path, as in `exporters.loadbalancing.resolver`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// A config section read from a Collector config.
#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// The Tailgate config's key (`receive`, `admin`, `metrics`, or the binary's own).
    pub key: &'static str,
    /// Its value in the Tailgate config's shape.
    pub value: Value,
    /// The Collector key it was read from, for errors.
    pub from: String,
}

/// What a Collector config gives a binary.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Translated {
    /// The sections read (the others take the router's defaults).
    pub sections: Vec<Section>,
    /// What was written and is not applied, one line each, for `--check` and the start.
    pub notes: Vec<String>,
}

/// A component's type: `otlp` of `otlp/in`.
pub fn kind_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// A [`TranslateError`] at `key`.
pub fn err(key: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError {
        key: key.into(),
        message: message.into(),
    }
}

/// The names listed under `key` of a pipeline (`receivers: [otlp]`).
pub fn names<'a>(pipeline: &'a Value, key: &str) -> Vec<&'a str> {
    pipeline
        .get(key)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The keys of a mapping value, as text.
pub fn keys(v: &Value) -> Vec<&str> {
    v.as_mapping()
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The key an error reading the block at `from` is about: the block's key, or for an
/// unknown field the field's (`exporters.otlp.compresion`), so that the error's line is
/// that field's.
pub fn error_key(from: &str, message: &str) -> String {
    message
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map_or_else(|| from.to_owned(), |(field, _)| format!("{from}.{field}"))
}

/// `receive` from the first `otlp` receiver among `receivers` (a pipeline's): its
/// protocols' endpoints (the Collector's defaults for one written without), one `tls` for
/// both, the size limits, streams, connection ages, `cors` and `traces_url_path`; a
/// receiver `auth` and Unix sockets refused; the rest noted.
pub fn receive(
    top: &Value,
    receivers: &[&str],
    notes: &mut Vec<String>,
) -> Result<Section, TranslateError> {
    let otlp: Vec<&str> = receivers
        .iter()
        .copied()
        .filter(|r| kind_of(r) == "otlp")
        .collect();
    let others: Vec<&str> = receivers
        .iter()
        .copied()
        .filter(|r| kind_of(r) != "otlp")
        .collect();
    if !others.is_empty() {
        notes.push(format!(
            "receivers {} not taken: Tailgate receives OTLP only",
            others.join(", ")
        ));
    }
    let name = match otlp[..] {
        [] => return Err(err(
            "service.pipelines",
            "the traces pipeline read has no otlp receiver: Tailgate receives OTLP (gRPC and HTTP)",
        )),
        [one, ..] => one,
    };
    if otlp.len() > 1 {
        notes.push(format!(
            "receivers {} not taken: Tailgate listens as one otlp receiver ({name})",
            otlp[1..].join(", ")
        ));
    }
    let key = format!("receivers.{name}");
    let protocols = top
        .get("receivers")
        .and_then(|r| r.get(name))
        .and_then(|r| r.get("protocols"));
    let Some(protocols) = protocols.filter(|p| p.is_mapping()) else {
        return Err(err(
            format!("{key}.protocols"),
            "the otlp receiver needs protocols (grpc, http or both), as in the Collector",
        ));
    };
    let mut m = Mapping::new();
    let mut tls: Option<(&str, &Value)> = None;
    let mut sizes: Vec<u64> = Vec::new();
    for (proto, default_endpoint) in [("grpc", "localhost:4317"), ("http", "localhost:4318")] {
        let Some(p) = protocols.get(proto) else {
            m.insert(proto.into(), Value::Null);
            continue;
        };
        let at = format!("{key}.protocols.{proto}");
        let endpoint = p
            .get("endpoint")
            .and_then(Value::as_str)
            .unwrap_or(default_endpoint);
        if let Some(path) = endpoint.strip_prefix("unix://").or(p
            .get("transport")
            .and_then(Value::as_str)
            .filter(|t| *t == "unix")
            .map(|_| endpoint))
        {
            return Err(err(
                format!("{at}.endpoint"),
                format!("{path:?}: Tailgate listens on TCP only, not on Unix sockets"),
            ));
        }
        m.insert(proto.into(), endpoint.into());
        for (k, v) in p.as_mapping().into_iter().flatten() {
            let Some(k) = k.as_str() else { continue };
            match (proto, k) {
                (_, "endpoint" | "transport") => {}
                (_, "auth") => {
                    return Err(err(
                        format!("{at}.auth"),
                        "a receiver authenticator is not read from a Collector config: write Tailgate's own config with receive.auth (docs/configuration.md), so that the receiver is never left open by mistake",
                    ))
                }
                (_, "tls") => match tls {
                    Some((_, first)) if first != v => {
                        return Err(err(
                            format!("{at}.tls"),
                            "Tailgate's two receivers share one TLS block: give grpc and http the same tls (or write Tailgate's own config)",
                        ))
                    }
                    Some(_) => {}
                    None => tls = Some((proto, v)),
                },
                ("grpc", "max_recv_msg_size_mib") => {
                    sizes.push(v.as_u64().unwrap_or(0).saturating_mul(1 << 20));
                }
                ("http", "max_request_body_size") => sizes.push(v.as_u64().unwrap_or(0)),
                ("grpc", "max_concurrent_streams") => {
                    m.insert("max_concurrent_streams".into(), v.clone());
                }
                ("grpc", "keepalive") => {
                    let server = v.get("server_parameters");
                    for age in ["max_connection_age", "max_connection_age_grace"] {
                        if let Some(a) = server.and_then(|s| s.get(age)) {
                            m.insert(age.into(), a.clone());
                        }
                    }
                }
                ("http", "cors") => {
                    m.insert("cors".into(), v.clone());
                }
                ("http", "traces_url_path") => {
                    m.insert("traces_url_path".into(), v.clone());
                }
                _ => notes.push(format!(
                    "{at}.{k} not applied (Tailgate's receivers: docs/configuration.md)"
                )),
            }
        }
    }
    if m.get("grpc").is_some_and(Value::is_null) && m.get("http").is_some_and(Value::is_null) {
        return Err(err(
            format!("{key}.protocols"),
            "neither grpc nor http is enabled",
        ));
    }
    if let Some((_, t)) = tls {
        m.insert("tls".into(), t.clone());
    }
    // One limit for both receivers: the larger written (the Collector's defaults, 4 MiB
    // for gRPC and 20 MiB for HTTP, are not applied: Tailgate's is 16 MiB).
    if let Some(&largest) = sizes.iter().filter(|s| **s > 0).max() {
        m.insert("max_request_bytes".into(), largest.into());
    }
    Ok(Section {
        key: "receive",
        value: Value::Mapping(m),
        from: key,
    })
}

/// A port written as a number or as text (`port: "4317"`, as the Collector's DNS
/// resolver reads it).
pub fn port(v: &Value, key: &str) -> Result<Value, TranslateError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|n| (1..=u64::from(u16::MAX)).contains(n))
        .map(Value::from)
        .ok_or_else(|| err(key, "a port number (1-65535)"))
}

/// `admin` from the `health_check` extension the service enables (its `endpoint`, the
/// Collector's default `localhost:13133` without one); off when it enables none, as such
/// a Collector serves no health check (`/metrics`' port answers the health paths too).
pub fn admin(top: &Value) -> Section {
    let enabled = top
        .get("service")
        .and_then(|s| s.get("extensions"))
        .and_then(Value::as_sequence);
    let name = enabled
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|e| kind_of(e) == "health_check");
    let Some(name) = name else {
        return Section {
            key: "admin",
            value: Value::Null,
            from: "service.extensions".into(),
        };
    };
    let endpoint = top
        .get("extensions")
        .and_then(|e| e.get(name))
        .and_then(|h| h.get("endpoint"))
        .and_then(Value::as_str)
        .unwrap_or("localhost:13133");
    Section {
        key: "admin",
        value: endpoint.into(),
        from: format!("extensions.{name}.endpoint"),
    }
}

/// `metrics` from `service.telemetry.metrics`.
pub fn metrics(top: &Value, notes: &mut Vec<String>) -> Result<Option<Section>, TranslateError> {
    let key = "service.telemetry.metrics";
    let Some(m) = top
        .get("service")
        .and_then(|s| s.get("telemetry"))
        .and_then(|t| t.get("metrics"))
    else {
        return Ok(None);
    };
    if m.get("level").and_then(Value::as_str) == Some("none") {
        return Ok(Some(Section {
            key: "metrics",
            value: Value::Null,
            from: format!("{key}.level"),
        }));
    }
    if let Some(a) = m.get("address").and_then(Value::as_str) {
        return Ok(Some(Section {
            key: "metrics",
            value: a.into(),
            from: format!("{key}.address"),
        }));
    }
    let readers = m.get("readers").and_then(Value::as_sequence);
    let prometheus = readers.into_iter().flatten().find_map(|r| {
        r.get("pull")
            .and_then(|p| p.get("exporter"))
            .and_then(|e| e.get("prometheus"))
    });
    if readers.is_some_and(|r| r.len() > 1) || readers.is_some() && prometheus.is_none() {
        notes.push(format!(
            "{key}.readers: only a pull reader's Prometheus endpoint is taken (Tailgate serves /metrics)"
        ));
    }
    let Some(p) = prometheus else { return Ok(None) };
    let host = p.get("host").and_then(Value::as_str).unwrap_or("localhost");
    let port = port(
        p.get("port").unwrap_or(&Value::Null),
        &format!("{key}.readers"),
    )?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Ok(Some(Section {
        key: "metrics",
        value: format!("{host}:{}", port.as_u64().unwrap_or(0)).into(),
        from: format!("{key}.readers"),
    }))
}
