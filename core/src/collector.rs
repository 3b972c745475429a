//! Reading a whole OpenTelemetry Collector config for what a Tailgate binary needs: the
//! parts both binaries share (the traces pipeline's `otlp` receiver as `receive`, the
//! `health_check` extension as `admin`, the service's telemetry as `metrics`). Each
//! binary adds its own part (the router the `loadbalancing` exporter, the gateway its
//! exporters) and deserializes the sections it is given, each with the Collector key it
//! was read from, so that errors name that key and its line.
//!
//! Data comes from the parsed file (references already expanded, [`crate::config::parse_yaml`])
//! and goes back to the binary's config loader as YAML values in the binary's own shape,
//! plus notes naming what was written and is not applied, and warnings for what that
//! costs someone (a backend or sender; the pipelines' part is [`crate::pipelines`]).

use serde_yaml_ng::{Mapping, Value};

pub mod queue;

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
    /// What was written, is not applied, and costs someone data: a backend the Collector
    /// sent spans to and the binary will not (logged at warn, `warning:` under `--check`).
    pub warnings: Vec<String>,
}

/// What a binary tells of the Collector config it read: [`Translated`]'s notes and
/// warnings (both empty for its own config).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Remarks {
    /// Not applied, said at info.
    pub notes: Vec<String>,
    /// Not applied at someone's cost, said at warn.
    pub warnings: Vec<String>,
}

/// Whether processor or connector `id` computes telemetry from the spans passing and
/// changes nothing else: `span_metrics` (and `spanmetrics`, its name before v0.157, and
/// vendors' variants such as SigNoz's `signozspanmetrics/delta`), `service_graph`, and
/// Datadog's APM stats (`datadog`, a processor once, a connector now). For connectors,
/// [`connector_computes_metrics`] knows more.
pub fn computes_metrics(id: &str) -> bool {
    // The Collector renamed its components to snake case (v0.157); both names load.
    let kind = kind_of(id).replace('_', "");
    kind.ends_with("spanmetrics") || matches!(kind.as_str(), "servicegraph" | "datadog")
}

/// Whether processor `id` changes nothing a policy reads or a backend receives: batching
/// (`batch`, and core's `queue_batch`, its successor since v0.158), the memory limiter
/// (the binaries' own bounds stand in) and `groupbytrace` (spans are grouped by trace by
/// the gateway itself), under either name since the Collector's snake case renames
/// (`memory_limiter`; `group_by_trace`, an adoption trial's).
pub fn is_neutral_processor(id: &str) -> bool {
    matches!(
        kind_of(id).replace('_', "").as_str(),
        "batch" | "queuebatch" | "memorylimiter" | "groupbytrace"
    )
}

/// Whether connector `id` computes telemetry from the spans it is given and passes none
/// on: those of [`computes_metrics`], and `signal_to_metrics`, `count`, `sum`,
/// `exceptions`, `elasticapm` (its processor enriches spans instead), `grafanacloud`.
pub fn connector_computes_metrics(id: &str) -> bool {
    let kind = kind_of(id).replace('_', "");
    computes_metrics(id)
        || matches!(
            kind.as_str(),
            "signaltometrics" | "count" | "sum" | "exceptions" | "elasticapm" | "grafanacloud"
        )
}

/// A component's type: `otlp` of `otlp/in`.
pub fn kind_of(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// The sections of the components Tailgate reads that the Collector reads as
/// `configoptional.Optional` (v0.161: configgrpc, confighttp, the otlp receiver, the otlp
/// and otlphttp exporters' queues, contrib's loadbalancing resolvers), as paths whose
/// second segment is a component type (its id without `/name`).
const OPTIONAL_SECTIONS: &[&[&str]] = &[
    &["receivers", "otlp", "protocols", "grpc"],
    &["receivers", "otlp", "protocols", "http"],
    &["receivers", "otlp", "protocols", "grpc", "tls"],
    &["receivers", "otlp", "protocols", "grpc", "auth"],
    &["receivers", "otlp", "protocols", "grpc", "keepalive"],
    &[
        "receivers",
        "otlp",
        "protocols",
        "grpc",
        "keepalive",
        "server_parameters",
    ],
    &[
        "receivers",
        "otlp",
        "protocols",
        "grpc",
        "keepalive",
        "enforcement_policy",
    ],
    &["receivers", "otlp", "protocols", "http", "tls"],
    &["receivers", "otlp", "protocols", "http", "cors"],
    &["receivers", "otlp", "protocols", "http", "auth"],
    &["exporters", "otlp", "keepalive"],
    &["exporters", "otlp", "auth"],
    &["exporters", "otlp", "sending_queue"],
    &["exporters", "otlp", "sending_queue", "batch"],
    &["exporters", "otlphttp", "auth"],
    &["exporters", "otlphttp", "cookies"],
    &["exporters", "otlphttp", "sending_queue"],
    &["exporters", "otlphttp", "sending_queue", "batch"],
    // `loadbalancing` stands for its `load_balancing` name (contrib v0.153) too.
    &[
        "exporters",
        "loadbalancing",
        "protocol",
        "otlp",
        "keepalive",
    ],
    &["exporters", "loadbalancing", "protocol", "otlp", "auth"],
    &[
        "exporters",
        "loadbalancing",
        "protocol",
        "otlp",
        "sending_queue",
    ],
    &["exporters", "loadbalancing", "sending_queue"],
    &["exporters", "loadbalancing", "resolver", "static"],
    &["exporters", "loadbalancing", "resolver", "dns"],
    &["exporters", "loadbalancing", "resolver", "k8s"],
    &["exporters", "loadbalancing", "resolver", "aws_cloud_map"],
];

/// Reads `enabled` in the Collector's optional sections (`OPTIONAL_SECTIONS`) as its
/// `configoptional` does (since v0.155): `enabled: false` makes the section absent,
/// whatever else it says (`protocols: {http: {enabled: false}}` serves no OTLP/HTTP);
/// `enabled: true` present; anything but a boolean is refused in the Collector's words.
/// Run on a whole Collector config before it is read, so that every reading after sees
/// the sections as the Collector has them.
pub fn optional_sections(top: &mut Value) -> Result<(), TranslateError> {
    let mut paths: Vec<&[&str]> = OPTIONAL_SECTIONS.to_vec();
    // Inner sections first: the Collector reads a section's contents before its
    // `enabled`, so a bad `enabled` inside a disabled one is still refused.
    paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in paths {
        let (&[top_key, kind], rest) = path.split_at(2) else {
            continue;
        };
        let Some(components) = top.get_mut(top_key).and_then(Value::as_mapping_mut) else {
            continue;
        };
        for (id, block) in components.iter_mut() {
            let id = id.as_str().unwrap_or_default();
            let kind_matches = match kind {
                "otlp" if top_key == "exporters" => matches!(kind_of(id), "otlp" | "otlp_grpc"),
                "otlphttp" => matches!(kind_of(id), "otlphttp" | "otlp_http"),
                "loadbalancing" => matches!(kind_of(id), "loadbalancing" | "load_balancing"),
                k => kind_of(id) == k,
            };
            if kind_matches {
                optional_at(block, rest, &format!("{top_key}.{id}"))?;
            }
        }
    }
    Ok(())
}

/// [`optional_sections`] for the section at `path` under `block` (named `at`).
fn optional_at(block: &mut Value, path: &[&str], at: &str) -> Result<(), TranslateError> {
    let [parents @ .., last] = path else {
        return Ok(());
    };
    let mut parent = block;
    for key in parents {
        match parent.get_mut(*key) {
            Some(inner) => parent = inner,
            None => return Ok(()),
        }
    }
    let Some(section) = parent.as_mapping_mut() else {
        return Ok(());
    };
    let enabled = match section.get(*last).and_then(|v| v.get("enabled")) {
        None => return Ok(()),
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            // In the Collector's words (Go's type names).
            let written = serde_yaml_ng::to_string(other).unwrap_or_default();
            let kind = match other {
                Value::Number(n) if n.is_f64() => "float64",
                Value::Number(_) => "int",
                Value::String(_) => "string",
                Value::Sequence(_) => "[]interface {}",
                Value::Mapping(_) => "map[string]interface {}",
                _ => "<nil>",
            };
            return Err(err(
                format!("{at}.{}.enabled", path.join(".")),
                format!(
                    "unexpected type {kind} for 'enabled': got '{}' value expected 'true' or 'false'",
                    written.trim()
                ),
            ));
        }
    };
    if enabled {
        if let Some(Value::Mapping(m)) = section.get_mut(*last) {
            m.remove("enabled");
        }
    } else {
        section.remove(*last);
    }
    Ok(())
}

/// Where a Collector config sits inside a file that is not one: the OpenTelemetry
/// Operator's `OpenTelemetryCollector` resource (`spec.config`), a Kubernetes ConfigMap
/// (a `data` key) or the Collector Helm chart's values (`config:`; of an umbrella chart's
/// Collectors, the first that is `preferred`, else the first). Tailgate reads the config
/// itself; the hint says how to get it out.
pub fn wrapped_config_hint(top: &Value, preferred: impl Fn(&Value) -> bool) -> Option<String> {
    if top.get("processors").is_some() || top.get("policies").is_some() {
        return None;
    }
    let kind = top.get("kind").and_then(|k| k.as_str());
    if top.get("apiVersion").is_some() && kind == Some("OpenTelemetryCollector") {
        return Some("this is an OpenTelemetryCollector resource; Tailgate reads the Collector config inside it: extract spec.config into a file (`yq '.spec.config' FILE`, or `kubectl get otelcol NAME -o jsonpath='{.spec.config}'`) and pass that".into());
    }
    if top.get("apiVersion").is_some() && kind == Some("ConfigMap") {
        let keys: Vec<&str> = top
            .get("data")
            .and_then(|d| d.as_mapping())
            .map(|m| m.keys().filter_map(|k| k.as_str()).collect())
            .unwrap_or_default();
        let key = keys.first().copied().unwrap_or("KEY");
        // jsonpath reads a dot in a key as a step: `{.data.collector\.yaml}`.
        let path_key = key.replace('.', "\\.");
        return Some(format!(
            "this is a Kubernetes ConfigMap (data keys: {}); Tailgate reads the file one of its keys holds: mount the ConfigMap (each key becomes a file) and pass that file, or extract it (`yq '.data[\"{key}\"]' FILE`, or `kubectl get configmap NAME -o jsonpath='{{.data.{path_key}}}'`)",
            if keys.is_empty() { "none".into() } else { keys.join(", ") }
        ));
    }
    let is_config = |v: &Value| v.get("processors").is_some() || v.get("service").is_some();
    if top.get("config").is_some_and(is_config) {
        return Some(format!("this looks like the Collector Helm chart's values; Tailgate reads the Collector config under `config:`, {HELM_MERGES}: render the chart and pass the config its ConfigMap holds (`helm template X open-telemetry/opentelemetry-collector -f values.yaml | yq 'select(.kind == \"ConfigMap\") | .data.relay'`), or, when `config:` is complete, extract it (`yq '.config' values.yaml`)"));
    }
    // An umbrella chart's values: the Collector chart as a dependency under its name (a
    // user trial: Coralogix's `opentelemetry-gateway:`).
    // The chart whose config has a tail_sampling processor, else the first with a config.
    let charts: Vec<(&str, &Value)> = top
        .as_mapping()?
        .iter()
        .filter_map(|(k, v)| Some((k.as_str()?, v.get("config").filter(|c| is_config(c))?)))
        .collect();
    let (name, _) = charts
        .iter()
        .find(|(_, c)| preferred(c))
        .or(charts.first())?;
    let plain = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let path = if plain {
        format!(".{name}.config")
    } else {
        format!(".[\"{name}\"].config")
    };
    Some(format!("this looks like an umbrella Helm chart's values, with the Collector chart's under `{name}:`; Tailgate reads the Collector config under `{name}.config:`, {HELM_MERGES}: render the chart (`helm template`) and pass the config the Collector's ConfigMap holds (its `relay` key), or, when that `config:` is complete, extract it (`yq '{path}' values.yaml`)"))
}

/// What the Collector Helm chart does with the `config:` of its values: a config read
/// alone may name processors and receivers it does not define (an adoption trial).
const HELM_MERGES: &str = "which the chart merges with its own defaults (the memory_limiter and batch processors, the otlp receiver, the health_check extension) before the Collector reads it";

/// Refuses a binary's config file that wraps a Collector config (see
/// [`wrapped_config_hint`]) with the hint, before it is read as the binary's own config,
/// whose error ("unknown field `apiVersion`") would not say what the file is. Text that
/// is no YAML passes: the binary's own reading names its fault.
pub fn refuse_wrapped(
    path: &std::path::Path,
    text: &str,
    preferred: impl Fn(&Value) -> bool,
) -> Result<(), crate::config::ConfigError> {
    let Ok(top) = serde_yaml_ng::from_str::<Value>(text) else {
        return Ok(());
    };
    match wrapped_config_hint(&top, preferred) {
        Some(hint) => Err(crate::config::ConfigError::Invalid {
            path: path.to_owned(),
            key: "(top level)".into(),
            message: hint,
        }),
        None => Ok(()),
    }
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

/// Reads a section's value as `T` the way a file's text is read: written back as YAML
/// and parsed, so that a string setting takes a plain scalar's text (`token: 123456`, a
/// `${env:ID}` holding digits) as it does in Tailgate's own files, where reading the value
/// tree would refuse a number. The error's message carries no position (the text is not
/// the user's): callers name the Collector key it came from.
pub fn read_section<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, String> {
    let text = empty_nulls(&serde_yaml_ng::to_string(value).map_err(|e| e.to_string())?);
    serde_yaml_ng::from_str(&text)
        .map_err(|e| crate::config::without_position(&e.to_string()).to_owned())
}

/// What is wrong with a component id as written (`otlp/`, `/tempo`), as the Collector
/// refuses it: a type, and a name after `/` when there is one.
pub fn component_id_problem(id: &str) -> Option<String> {
    let (kind, name) = match id.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (id, None),
    };
    if kind.trim().is_empty() {
        return Some(format!("{id:?}: the type before \"/\" is empty"));
    }
    match name {
        Some(n) if n.trim().is_empty() => Some(format!(
            "{id:?}: the name after \"/\" is empty (write {kind:?} alone, or {kind:?}/NAME)"
        )),
        _ => None,
    }
}

/// `text` (a section written out by serde) with each null written as nothing, as the file
/// wrote it: serde writes a null as `null`, which a string setting reads as the word
/// "null", so `endpoint: ${env:UNSET}` in a Collector config dialled a host named `null`
/// and a header was sent as `null` (a config audit), where the same in Tailgate's own
/// config reads as empty and is refused. A string holding "null" is written quoted, and
/// the lines of block scalars (`|-`) are left as they are.
fn empty_nulls(text: &str) -> String {
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let mut out = String::with_capacity(text.len());
    // The indent a block scalar's lines are deeper than, while inside one.
    let mut block: Option<usize> = None;
    for line in text.lines() {
        if let Some(at) = block {
            if line.trim().is_empty() || indent_of(line) > at {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block = None;
        }
        let trimmed = line.trim_end();
        // A list item's `- ` (or several: `- - null`) is read as indent.
        let body = trimmed.trim_start();
        let dashes = body.len() - body.trim_start_matches("- ").len();
        let emptied = trimmed
            .strip_suffix(": null")
            .map(|k| format!("{k}:"))
            .or_else(|| {
                (dashes > 0 && &body[dashes..] == "null").then(|| {
                    trimmed[..trimmed.len() - "null".len()]
                        .trim_end()
                        .to_owned()
                })
            });
        match emptied {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
        // `key: |-`, `- >+`, `- key: |2`: the block's text is what is deeper than its key.
        if let Some(column) = crate::config::block_opener_column(line) {
            block = Some(column);
        }
    }
    out
}

/// A listen address section (`admin`, `metrics`): `None` when off (null).
pub fn listen_section(value: &Value) -> Result<Option<std::net::SocketAddr>, String> {
    value.as_str().map_or(Ok(None), |a| {
        crate::config::listen_addr::parse(a)
            .map(Some)
            .map_err(|e| e.to_string())
    })
}

/// An error reading the block at `from` ([`read_section`]'s message): at the key inside
/// it the message's path names (`exporters.otlp.tls.ca_fil`), so that the error's line is
/// that key's, with the message's own words after its path.
pub fn section_error(from: &str, message: &str) -> TranslateError {
    let (path, rest) = match message.split_once(": ") {
        Some((p, rest)) if !p.is_empty() && !p.contains([' ', '`']) => (Some(p), rest),
        _ => (None, message),
    };
    let mut key = from.to_owned();
    if let Some(path) = path {
        // A section of one named block (an exporter) starts its path with that name.
        let name = from.rsplit('.').next().unwrap_or_default();
        let inner = match path.strip_prefix(name) {
            Some(r) if r.is_empty() || r.starts_with('.') || r.starts_with('[') => {
                r.trim_start_matches('.')
            }
            _ => path,
        };
        if !inner.is_empty() {
            key = format!("{key}.{inner}");
        }
    }
    if let Some((field, _)) = rest
        .split_once("unknown field `")
        .and_then(|(_, r)| r.split_once('`'))
    {
        key = format!("{key}.{field}");
    }
    if let Some((sub, tail)) = crate::config::named_sub_key(rest) {
        return err(format!("{key}.{sub}"), crate::config::readable(tail));
    }
    err(key, crate::config::readable(rest))
}

/// `receive` from the first `otlp` receiver among `receivers` (a pipeline's): its
/// protocols' endpoints (the Collector's defaults for one written without), one `tls` (for
/// both, or `tls_protocols` naming the one it is under), the size limits, streams,
/// connection ages, `cors` and `traces_url_path`; a receiver `auth` and Unix sockets
/// refused; the rest noted.
pub fn receive(
    top: &Value,
    receivers: &[&str],
    out: &mut Translated,
) -> Result<Section, TranslateError> {
    let notes = &mut out.notes;
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
    // Senders to a receiver not taken are refused: warnings.
    if !others.is_empty() {
        out.warnings.push(format!(
            "receivers {} not taken: Tailgate receives OTLP only, so what is sent to them is refused: have those senders send OTLP",
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
        out.warnings.push(format!(
            "receivers {} not taken: Tailgate listens as one otlp receiver ({name}), so what is sent to them is refused: point those senders at its endpoints",
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
    for (k, _) in protocols.as_mapping().into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        if !matches!(k, "grpc" | "http") {
            return Err(unknown(&format!("{key}.protocols"), k, &["grpc", "http"]));
        }
    }
    let mut m = Mapping::new();
    let mut tls: Vec<(&str, &Value)> = Vec::new();
    let mut sizes: Vec<(&str, u64)> = Vec::new();
    for (proto, default_endpoint) in [("grpc", "localhost:4317"), ("http", "localhost:4318")] {
        let Some(p) = protocols.get(proto) else {
            m.insert(proto.into(), Value::Null);
            continue;
        };
        let at = format!("{key}.protocols.{proto}");
        let endpoint = match p.get("endpoint") {
            None | Some(Value::Null) => default_endpoint,
            Some(Value::String(e)) => e.as_str(),
            Some(_) => return Err(err(format!("{at}.endpoint"), "a listen address host:port")),
        };
        let transport = match p.get("transport") {
            None | Some(Value::Null) => "",
            Some(Value::String(t)) => t.as_str(),
            Some(_) => return Err(err(format!("{at}.transport"), "a network name, as tcp")),
        };
        // What Go's net.Listen takes for a stream: a receiver on udp or ip does not start
        // in the Collector either (it was ignored here, a TCP port opened instead).
        if !matches!(
            transport,
            "" | "tcp" | "tcp4" | "tcp6" | "unix" | "unixpacket"
        ) {
            return Err(err(
                format!("{at}.transport"),
                format!("{transport:?}: a receiver listens on a stream; write tcp (the default), tcp4 or tcp6"),
            ));
        }
        if let Some(path) =
            endpoint
                .strip_prefix("unix://")
                .or(matches!(transport, "unix" | "unixpacket").then_some(endpoint))
        {
            return Err(err(
                format!("{at}.endpoint"),
                format!("{path:?}: Tailgate listens on TCP only, not on Unix sockets"),
            ));
        }
        // Read here, so that an error names the endpoint's line, not the receiver's.
        if let Err(e) = crate::config::listen_addr::parse(endpoint) {
            return Err(err(format!("{at}.endpoint"), e.to_string()));
        }
        m.insert(proto.into(), endpoint.into());
        let (taken, noted): (&[&str], &[&str]) = match proto {
            "grpc" => (GRPC_SERVER_TAKEN, GRPC_SERVER_NOTED),
            _ => (HTTP_SERVER_TAKEN, HTTP_SERVER_NOTED),
        };
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
                (_, "tls") if !v.is_null() => {
                    // Checked here, so that an error names this block's line.
                    if let Err(message) = read_section::<crate::tls::ServerTlsConfig>(v) {
                        return Err(section_error(&format!("{at}.tls"), &message));
                    }
                    tls.push((proto, v));
                }
                (_, "tls") => {}
                ("grpc", "max_recv_msg_size_mib") => {
                    let at = format!("{at}.{k}");
                    sizes.push((k, request_size(mib(v, &at)?, &at, v)?));
                }
                ("http", "max_request_body_size") => {
                    let at = format!("{at}.{k}");
                    sizes.push((k, request_size(bytes(v, &at)?, &at, v)?));
                }
                ("grpc", "max_concurrent_streams") => {
                    // Checked here, so that an error names the key as written.
                    if v.as_u64() == Some(0) {
                        return Err(err(format!("{at}.{k}"), "0 (no limit in the Collector) is not offered: each open stream's headers are held outside the in-flight budget; write the most streams a connection may hold (Tailgate's default: 32)"));
                    }
                    m.insert("max_concurrent_streams".into(), v.clone());
                }
                ("grpc", "keepalive") => keepalive(v, &format!("{at}.keepalive"), &mut m, notes)?,
                ("http", "cors") => {
                    if let Err(message) = read_section::<crate::receive::cors::CorsConfig>(v) {
                        return Err(section_error(&format!("{at}.cors"), &message));
                    }
                    m.insert("cors".into(), v.clone());
                }
                ("http", "traces_url_path") => {
                    m.insert("traces_url_path".into(), v.clone());
                }
                _ if noted.contains(&k) => notes.push(format!(
                    "{at}.{k} not applied (Tailgate's receivers: docs/configuration.md)"
                )),
                _ => return Err(unknown(&at, k, &[taken, noted].concat())),
            }
        }
    }
    let enabled = ["grpc", "http"]
        .iter()
        .filter(|p| m.get(**p).is_some_and(|v| !v.is_null()))
        .count();
    if enabled == 0 {
        return Err(err(
            format!("{key}.protocols"),
            "neither grpc nor http is enabled",
        ));
    }
    match &tls[..] {
        [] => {}
        [(_, a), (proto, b)] if a != b => {
            return Err(err(
                format!("{key}.protocols.{proto}.tls"),
                "Tailgate's two receivers share one TLS block (receive.tls, for both or for one: receive.tls_protocols): give grpc and http the same tls, or leave one plaintext",
            ))
        }
        [(proto, t)] if enabled == 2 => {
            // TLS under one protocol: the other serves plaintext, as there.
            m.insert("tls".into(), (*t).clone());
            m.insert(
                "tls_protocols".into(),
                Value::Sequence(vec![(*proto).into()]),
            );
        }
        [(_, t), ..] => {
            m.insert("tls".into(), (*t).clone());
        }
    }
    // One limit for both receivers: the larger written (the Collector's defaults, 4 MiB
    // for gRPC and 20 MiB for HTTP, are not applied: Tailgate's is 16 MiB).
    if let Some(&(_, largest)) = sizes.iter().filter(|(_, s)| *s > 0).max_by_key(|(_, s)| *s) {
        m.insert("max_request_bytes".into(), largest.into());
        if sizes.len() == 1 && enabled == 2 {
            notes.push(format!(
                "{key}: {} is the limit of both receivers (Tailgate's share one receive.max_request_bytes)",
                sizes[0].0
            ));
        }
    }
    Ok(Section {
        key: "receive",
        value: Value::Mapping(m),
        from: key,
    })
}

/// The keys of the Collector's `otlp` receiver's `protocols.grpc` (configgrpc's server
/// config) taken or refused by name; [`GRPC_SERVER_NOTED`] are the others it has, read
/// and not applied.
const GRPC_SERVER_TAKEN: &[&str] = &[
    "endpoint",
    "transport",
    "tls",
    "max_recv_msg_size_mib",
    "max_concurrent_streams",
    "keepalive",
    "auth",
];
const GRPC_SERVER_NOTED: &[&str] = &[
    "read_buffer_size",
    "write_buffer_size",
    "include_metadata",
    "middlewares",
];

/// The same for `protocols.http` (confighttp's server config and the receiver's paths).
const HTTP_SERVER_TAKEN: &[&str] = &[
    "endpoint",
    "tls",
    "cors",
    "auth",
    "max_request_body_size",
    "traces_url_path",
];
const HTTP_SERVER_NOTED: &[&str] = &[
    "include_metadata",
    "response_headers",
    "compression_algorithms",
    "read_timeout",
    "read_header_timeout",
    "write_timeout",
    "idle_timeout",
    "keep_alives_enabled",
    "middlewares",
    "metrics_url_path",
    "logs_url_path",
    "profiles_url_path",
];

/// A key the Collector does not know in the block at `at` (it refuses such a file too:
/// a misspelt `tls` or `auth` must not leave a receiver open).
pub fn unknown(at: &str, key: &str, known: &[&str]) -> TranslateError {
    let hint = crate::config::near_key(key, known.iter().copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    err(
        format!("{at}.{key}"),
        format!("unknown key, expected one of {}{hint}", known.join(", ")),
    )
}

/// `keepalive` of a gRPC receiver: the connection ages taken, the rest noted.
fn keepalive(
    v: &Value,
    at: &str,
    m: &mut Mapping,
    notes: &mut Vec<String>,
) -> Result<(), TranslateError> {
    for (k, inner) in v.as_mapping().into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        let known: &[&str] = match k {
            "server_parameters" => &[
                "max_connection_idle",
                "max_connection_age",
                "max_connection_age_grace",
                "time",
                "timeout",
            ],
            "enforcement_policy" => &["min_time", "permit_without_stream"],
            _ => return Err(unknown(at, k, &["server_parameters", "enforcement_policy"])),
        };
        for (name, value) in inner.as_mapping().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !known.contains(&name) {
                return Err(unknown(&format!("{at}.{k}"), name, known));
            }
            if matches!(name, "max_connection_age" | "max_connection_age_grace") {
                // Read here, so that an error names the key as written, not the receive
                // block's `max_connection_age` at the receiver's line.
                if !value.is_null() {
                    read_section::<GoDuration>(value)
                        .map_err(|message| section_error(&format!("{at}.{k}.{name}"), &message))?;
                }
                m.insert(name.into(), value.clone());
            } else {
                notes.push(format!("{at}.{k}.{name} not applied"));
            }
        }
    }
    Ok(())
}

/// A request size limit read from a Collector key (`at`, written `v`), as bytes, at most
/// `receive.max_request_bytes`' 1 GiB: refused at that key, in its own words, where the
/// receive block's check named `max_request_bytes` at the receiver's line.
fn request_size(n: u64, at: &str, v: &Value) -> Result<u64, TranslateError> {
    use crate::receive::limits::{MAX_REQUEST_BYTES_LIMIT, MIN_REQUEST_BYTES_LIMIT};
    // Only above: one under the floor beside a larger one is not the limit taken (the
    // larger is), and the Collector takes it.
    if n <= MAX_REQUEST_BYTES_LIMIT as u64 {
        return Ok(n);
    }
    let written = serde_yaml_ng::to_string(v).unwrap_or_default();
    Err(err(
        at,
        format!(
            "{} is out of range: Tailgate's receivers take requests of {MIN_REQUEST_BYTES_LIMIT} bytes to 1 GiB (receive.max_request_bytes)",
            written.trim()
        ),
    ))
}

/// A duration in Go's forms, read only to be checked (a Collector key Tailgate reads
/// elsewhere or notes, refused at its own line when Go would refuse it).
#[derive(serde::Deserialize)]
pub(crate) struct GoDuration(
    #[serde(with = "crate::config::go_duration")]
    #[allow(dead_code)] // read to be checked only
    std::time::Duration,
);

/// A size in MiB (`max_recv_msg_size_mib`), as bytes.
fn mib(v: &Value, key: &str) -> Result<u64, TranslateError> {
    bytes(v, key).map(|n| n.saturating_mul(1 << 20))
}

/// A whole non-negative number.
fn bytes(v: &Value, key: &str) -> Result<u64, TranslateError> {
    v.as_u64()
        .ok_or_else(|| err(key, "a whole number, 0 or more"))
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
/// a Collector serves no health check (`/metrics`' port answers the health paths too). A
/// `path` other than `/`, `tls` or `auth` are refused: probes would miss, or the listener
/// would be open where the file closed it.
pub fn admin(top: &Value, notes: &mut Vec<String>) -> Result<Section, TranslateError> {
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
        return Ok(Section {
            key: "admin",
            value: Value::Null,
            from: "service.extensions".into(),
        });
    };
    let at = format!("extensions.{name}");
    let block = top.get("extensions").and_then(|e| e.get(name));
    let mut endpoint = "localhost:13133";
    for (k, v) in block.and_then(Value::as_mapping).into_iter().flatten() {
        let k = k.as_str().unwrap_or_default();
        match k {
            "endpoint" => match v {
                Value::String(e) => endpoint = e.as_str(),
                Value::Null => {}
                _ => return Err(err(format!("{at}.endpoint"), "a listen address host:port")),
            },
            "path" if v.as_str().is_some_and(|p| p != "/") => {
                return Err(err(
                    format!("{at}.path"),
                    "Tailgate answers health checks at / (and /healthz, /readyz): point the probes there and leave path out",
                ))
            }
            "tls" | "auth" if !v.is_null() => {
                return Err(err(
                    format!("{at}.{k}"),
                    "Tailgate's admin listener is plaintext and open: write Tailgate's own config (admin:) and keep the port inside the cluster",
                ))
            }
            "path" | "tls" | "auth" => {}
            "response_body" | "check_collector_pipeline" | "cors" | "include_metadata" => {
                notes.push(format!("{at}.{k} not applied"))
            }
            _ => {
                return Err(unknown(
                    &at,
                    k,
                    &[
                        "endpoint",
                        "path",
                        "tls",
                        "auth",
                        "response_body",
                        "check_collector_pipeline",
                    ],
                ))
            }
        }
    }
    notes.push(format!(
        "{at}: the admin listener on {endpoint} serves /metrics too (the Collector serves its metrics only on the telemetry address)"
    ));
    Ok(Section {
        key: "admin",
        value: endpoint.into(),
        from: format!("{at}.endpoint"),
    })
}

/// `metrics` from `service.telemetry.metrics`.
pub fn metrics(top: &Value, notes: &mut Vec<String>) -> Result<Option<Section>, TranslateError> {
    let telemetry = top.get("service").and_then(|s| s.get("telemetry"));
    // The Collector's own log settings (level, encoding, sampling): not read, and an
    // operator who set `level: debug` would otherwise wonder where the lines went.
    if let Some(logs) = telemetry
        .and_then(|t| t.get("logs"))
        .and_then(Value::as_mapping)
        .filter(|l| !l.is_empty())
    {
        let written: Vec<&str> = logs.keys().filter_map(Value::as_str).collect();
        notes.push(format!(
            "service.telemetry.logs ({}) not applied: Tailgate logs to stderr at info; RUST_LOG sets the level (RUST_LOG=debug; docs/operations.md)",
            written.join(", ")
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: Collector sections written with `enabled` (configoptional, v0.155 on): an
    /// OTLP/HTTP protocol and a TLS block switched off, a CORS block switched on, a
    /// resolver switched off beside another, a queue's batch switched off, one `enabled`
    /// that is not a boolean, and a `retry_on_failure` (not optional: its own `enabled`).
    /// Guarantees: read as the Collector reads them: `false` takes the section out,
    /// whatever else it says; `true` keeps it without the key; a non-boolean is refused at
    /// its key; other sections keep their `enabled`.
    #[test]
    fn optional_sections_read_enabled_as_the_collector() {
        let read = |yaml: &str| {
            let mut top: Value = serde_yaml_ng::from_str(yaml).unwrap();
            optional_sections(&mut top).map(|()| top)
        };
        let top = read(
            "receivers:\n  otlp/in:\n    protocols:\n      grpc: {endpoint: 'a:1', tls: {enabled: false, cert_file: x}}\n      http: {enabled: false, endpoint: 'a:2', cors: {enabled: true, allowed_origins: ['*']}}\nexporters:\n  load_balancing:\n    resolver: {k8s: {enabled: false, service: s}, dns: {hostname: h}}\n    protocol: {otlp: {endpoint: x, retry_on_failure: {enabled: false}}}\n  otlphttp: {endpoint: 'http://b', sending_queue: {batch: {enabled: false}}}\n",
        )
        .unwrap();
        let grpc = &top["receivers"]["otlp/in"]["protocols"]["grpc"];
        assert!(grpc.get("tls").is_none() && grpc.get("endpoint").is_some());
        assert!(top["receivers"]["otlp/in"]["protocols"]
            .get("http")
            .is_none());
        let resolver = &top["exporters"]["load_balancing"]["resolver"];
        assert!(resolver.get("k8s").is_none() && resolver.get("dns").is_some());
        assert_eq!(
            top["exporters"]["load_balancing"]["protocol"]["otlp"]["retry_on_failure"]["enabled"],
            Value::Bool(false)
        );
        let queue = &top["exporters"]["otlphttp"]["sending_queue"];
        assert!(queue.is_mapping() && queue.get("batch").is_none());
        let on = read("receivers: {otlp: {protocols: {http: {cors: {enabled: true, allowed_origins: ['*']}}}}}").unwrap();
        let cors = &on["receivers"]["otlp"]["protocols"]["http"]["cors"];
        assert!(cors.get("enabled").is_none() && cors.get("allowed_origins").is_some());
        let e = read("receivers: {otlp: {protocols: {grpc: {enabled: 'no'}}}}").unwrap_err();
        assert_eq!(e.key, "receivers.otlp.protocols.grpc.enabled");
        assert!(
            e.message.contains("expected 'true' or 'false'"),
            "{}",
            e.message
        );
    }

    /// Scenario: a section holding nulls (an unset `${env:…}` in a Collector config), a
    /// string "null", and a block scalar whose text has a line ending in `: null`.
    /// Guarantees: a null reads as the file's empty value (an empty string, no option), not
    /// as the word "null" (`endpoint: ${env:UNSET}` dialled a host named `null`); the
    /// string and the block scalar's text are kept.
    #[test]
    fn nulls_read_as_empty_not_as_the_word() {
        #[derive(serde::Deserialize)]
        struct Item {
            script: String,
            header: String,
        }
        #[derive(serde::Deserialize)]
        struct Section {
            endpoint: String,
            tls: Option<String>,
            quoted: String,
            script: String,
            list: Vec<String>,
            nested: Vec<Vec<String>>,
            items: Vec<Item>,
        }
        let value: Value = serde_yaml_ng::from_str(
            "endpoint: ~\ntls: null\nquoted: 'null'\nscript: \"a: null\\nb: 1\\n\"\nlist: [~, x]\nnested: [[~]]\nitems: [{script: \"a\\nb\\n\", header: ~}]\n",
        )
        .unwrap();
        let read: Section = read_section(&value).unwrap();
        assert_eq!(read.endpoint, "");
        assert_eq!(read.tls, None);
        assert_eq!(read.quoted, "null");
        assert_eq!(read.script, "a: null\nb: 1\n");
        assert_eq!(read.list, ["", "x"]);
        assert_eq!(read.nested, [[""]]);
        // A key after a block scalar in a list item (a review found it left "null").
        assert_eq!(read.items[0].script, "a\nb\n");
        assert_eq!(read.items[0].header, "");
    }

    /// Scenario: component ids with an empty name or type, and good ones.
    /// Guarantees: the first refused (a config audit found `otlp/` taken), the others not.
    #[test]
    fn component_ids_need_a_type_and_a_name_after_the_slash() {
        assert!(component_id_problem("otlp/")
            .unwrap()
            .contains("name after"));
        assert!(component_id_problem("/tempo")
            .unwrap()
            .contains("type before"));
        assert_eq!(component_id_problem("otlp/tempo"), None);
        assert_eq!(component_id_problem("otlp"), None);
    }
}
