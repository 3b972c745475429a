//! A whole Collector config given as the router's: the config of a Collector running the
//! `load_balancing` exporter (the tier the router replaces; `loadbalancing` until contrib
//! v0.153, which the Collector still takes as a deprecated alias, and so does the router)
//! is read for what the router needs, so that a user's file loads as it is.
//!
//! Data comes from the parsed file (references already expanded) and goes to
//! [`crate::config`] as the router config's sections, each a YAML value in the router's
//! own shape with the Collector key it was read from (for errors), plus notes naming what
//! was not applied and warnings for what a backend or sender would no longer get
//! ([`tailgate_core::pipelines::Graph::side_exits`]). What is taken:
//!
//! * the traces pipeline whose exporters hold a `load_balancing` exporter (one; several are
//!   refused, as the router is one), and those passing it spans through `forward`
//!   connectors;
//! * that pipeline's `otlp` receiver: `protocols.grpc.endpoint` and `protocols.http.endpoint`
//!   (the Collector's defaults, `localhost:4317` and `localhost:4318`, for a protocol
//!   written without one; a protocol left out is off), their `tls` (one block for both),
//!   `max_recv_msg_size_mib` / `max_request_body_size`, `max_concurrent_streams`,
//!   `keepalive.server_parameters.max_connection_age{,_grace}`, `cors` and
//!   `traces_url_path`; a receiver `auth` is refused (the router's own `receive.auth`
//!   must be written: dropping it would open the receiver);
//! * the exporter's `resolver` (`static.hostnames`, `dns`, `k8s` as the DNS name of the
//!   Service, which must be headless) and its `routing_key` (`traceID` only),
//!   `protocol.otlp.timeout`, `tls` (absent: TLS with the system's roots, as the
//!   Collector's `otlp` exporter) and `compression`;
//! * `extensions.health_check.endpoint` (when the service enables it; else no `admin`) as
//!   `admin`, and
//!   `service.telemetry.metrics` (its `address`, or a pull reader's Prometheus host and
//!   port; `level: none` turns it off) as `metrics`.

use serde_yaml_ng::{Mapping, Value};
use tailgate_core::collector::{admin, err, keys, kind_of, metrics, port, receive, unknown};
pub use tailgate_core::collector::{Section, TranslateError, Translated};
use tailgate_core::pipelines::{Graph, Served};

/// Reads `top`, a whole Collector config, for the router.
pub fn translate(top: &Value) -> Result<Translated, TranslateError> {
    let mut out = Translated::default();
    let g = Graph::new(top);
    g.check()?;
    let with_lb: Vec<&str> = g
        .pipelines
        .iter()
        .filter(|p| p.signal() == "traces" && p.exporters.iter().any(|e| is_load_balancing(e)))
        .map(|p| p.name)
        .collect();
    let mut exporters: Vec<&str> = Vec::new();
    for p in with_lb.iter().filter_map(|n| g.get(n)) {
        for e in p.exporters.iter().filter(|e| is_load_balancing(e)) {
            if !exporters.contains(e) {
                exporters.push(e);
            }
        }
    }
    let exporter = match exporters[..] {
        [] => {
            return Err(err(
                "service.pipelines",
                "no traces pipeline exports to a load_balancing (or loadbalancing) exporter: a Collector config given to the router must be the load-balancing tier's (the router takes its place), or write the router's own config (receive, members, forward: docs/configuration.md)",
            ))
        }
        [one] => one,
        _ => {
            return Err(err(
                "service.pipelines",
                format!(
                    "several load_balancing exporters in traces pipelines ({}): one router config has one member set; run a router per exporter, each with a config holding one",
                    exporters.join(", ")
                ),
            ))
        }
    };
    // The pipelines the router serves: the load-balancing one and those passing it spans
    // through forward connectors.
    let feeding: Vec<&str> = with_lb
        .iter()
        .copied()
        .chain(g.upstream(&with_lb))
        .collect();
    let receivers = g.receivers_of(&feeding)?;
    g.side_exits(
        &Served {
            binary: "router",
            feeding: &feeding,
            taken: &[],
            after: &[],
            receivers: &receivers,
            exporters: &[exporter],
            every_span: true,
            sends: "the router sends every span to its gateways only",
            reads: "the router reads the traces pipeline of the load_balancing exporter (and those passing it spans through forward connectors)",
        },
        &mut out,
    );
    for p in feeding.iter().filter_map(|n| g.get(n)) {
        // Batching, the memory limiter and grouping by trace change nothing that reaches the
        // gateways: notes.
        // What changes or drops spans (a redaction, a filter, a sampler) would now reach
        // them as sent: warnings.
        let (quiet, changing): (Vec<&str>, Vec<&str>) = p
            .processors
            .iter()
            .partition(|q| tailgate_core::collector::is_neutral_processor(q));
        if !quiet.is_empty() {
            out.notes.push(format!(
                "service.pipelines.{}: processors {} not applied: the router forwards spans unchanged (memory is bounded by forward.max_queued_bytes and the receivers' limits)",
                p.name,
                quiet.join(", ")
            ));
        }
        if !changing.is_empty() {
            out.warnings.push(format!(
                "service.pipelines.{}: processors {} not applied: the router forwards spans unchanged, so what they would change, remove or drop reaches the gateways as sent: run them in the agents (a gateway's `attributes` actions can scrub kept spans; sampling is the gateways' policies)",
                p.name,
                changing.join(", ")
            ));
        }
    }
    let received = receive(top, &receivers, &mut out)?;
    out.sections.push(received);
    let lb_key = format!("exporters.{exporter}");
    let lb = top
        .get("exporters")
        .and_then(|e| e.get(exporter))
        .ok_or_else(|| {
            err(
                "exporters",
                format!("{exporter} is used by a pipeline and not defined"),
            )
        })?;
    let lb = if lb.is_null() {
        &Value::Mapping(Mapping::new())
    } else {
        lb
    };
    match lb.get("routing_key").map(|k| k.as_str().unwrap_or("")) {
        None | Some("traceID") | Some("") => {}
        Some(other) => {
            return Err(err(
                format!("{lb_key}.routing_key"),
                format!("{other:?}: the router routes by trace id only (routing_key: traceID, the default), as tail sampling needs every span of a trace on one gateway"),
            ))
        }
    }
    out.sections.push(members(lb, &lb_key, &mut out.notes)?);
    out.sections.push(forward(lb, &lb_key, &mut out.notes)?);
    for key in keys(lb) {
        if matches!(key, "routing_key" | "resolver" | "protocol") {
            continue;
        }
        if !LOADBALANCING_NOTED.contains(&key) {
            let known: Vec<&str> = ["routing_key", "resolver", "protocol"]
                .into_iter()
                .chain(LOADBALANCING_NOTED.iter().copied())
                .collect();
            return Err(unknown(&lb_key, key, &known));
        }
        if let Some(value) = lb.get(key) {
            tailgate_core::collector::queue::check_not_applied(&lb_key, key, value)?;
        }
        // Routing by attributes needs routing_key: attributes, refused above.
        out.notes.push(format!(
            "{lb_key}.{key} not applied: the router queues, retries and routes around gateways on its own terms (forward: docs/configuration.md)"
        ));
    }
    out.sections.push(admin(top, &mut out.notes)?);
    out.sections.extend(metrics(top, &mut out.notes)?);
    // The enabled extensions the router does not run (health_check became admin above):
    // one of them may be what the probes or operators call.
    let dropped: Vec<&str> = top
        .get("service")
        .and_then(|s| s.get("extensions"))
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|e| kind_of(e) != "health_check")
        .collect();
    if !dropped.is_empty() {
        let probes = if dropped.iter().any(|e| kind_of(e) == "healthcheckv2") {
            " (for health probes: the admin listener, admin: with its default 127.0.0.1:13133, answers /, /healthz and /readyz; the Collector's healthcheckv2 paths are not served)"
        } else {
            ""
        };
        out.notes.push(format!(
            "service.extensions: {} not taken: the router runs only health_check's equivalent{probes}",
            dropped.join(", ")
        ));
    }
    Ok(out)
}

/// `members` from the exporter's `resolver`.
fn members(lb: &Value, lb_key: &str, notes: &mut Vec<String>) -> Result<Section, TranslateError> {
    let key = format!("{lb_key}.resolver");
    let resolver = lb.get("resolver").filter(|r| !r.is_null());
    let given: Vec<&str> = resolver
        .map(|r| {
            keys(r)
                .into_iter()
                .filter(|k| r.get(*k).is_some_and(|v| !v.is_null()))
                .collect()
        })
        .unwrap_or_default();
    // The Collector's own words for these two.
    let resolver = match given[..] {
        [] => return Err(err(key, "no resolvers specified for the exporter")),
        [_] => resolver.unwrap_or(&Value::Null),
        _ => return Err(err(key, "only one resolver should be specified")),
    };
    let mut m = Mapping::new();
    let (which, from) = (given[0], format!("{key}.{}", given[0]));
    let r = &resolver[which];
    match which {
        "static" => {
            if let Some(k) = keys(r).into_iter().find(|k| *k != "hostnames") {
                return Err(unknown(&from, k, &["hostnames"]));
            }
            m.insert(
                "static".into(),
                r.get("hostnames").cloned().unwrap_or(Value::Null),
            );
        }
        "dns" => {
            let mut dns = Mapping::new();
            for (k, v) in r.as_mapping().into_iter().flatten() {
                match k.as_str() {
                    Some("hostname") => {
                        dns.insert("name".into(), v.clone());
                    }
                    // Empty or zero, the Collector's resolver takes its default.
                    Some("port") if v.as_str() == Some("") => {}
                    Some("port") => {
                        dns.insert("port".into(), port(v, &format!("{from}.port"))?);
                    }
                    Some("interval" | "timeout") if is_zero_duration(v) => {}
                    Some(k @ ("interval" | "timeout")) => {
                        dns.insert(k.into(), v.clone());
                    }
                    Some(other) => {
                        return Err(err(
                            format!("{from}.{other}"),
                            "not read by the router's DNS resolver (hostname, port, interval, timeout)",
                        ))
                    }
                    None => {}
                }
            }
            if !dns.contains_key("name") {
                return Err(err(
                    format!("{from}.hostname"),
                    "no hostname specified to resolve the backends: name the gateways' headless Service (hostname: NAME.NAMESPACE.svc.cluster.local)",
                ));
            }
            m.insert("dns".into(), Value::Mapping(dns));
        }
        "k8s" => {
            let known = ["service", "ports", "timeout", "return_hostnames"];
            if let Some(k) = keys(r).into_iter().find(|k| !known.contains(k)) {
                return Err(unknown(&from, k, &known));
            }
            if r.get("return_hostnames").and_then(Value::as_bool) == Some(true) {
                notes.push(format!(
                    "{from}.return_hostnames not applied: the router dials the addresses DNS gives"
                ));
            }
            let service = r.get("service").and_then(Value::as_str).unwrap_or("");
            if service.is_empty() {
                return Err(err(format!("{from}.service"), "name the gateways' Service (NAME.NAMESPACE)"));
            }
            // The Collector watches the Service's endpoints through the API; the router
            // resolves the Service's DNS name, which lists every ready pod only for a
            // headless Service. No namespace: the Collector's own (or `default`), which
            // the resolver's search domains supply for a bare name.
            let mut dns = Mapping::new();
            dns.insert("name".into(), service.into());
            // A list; one port written bare (`ports: 4317`) is that list of one.
            let ports = match r.get("ports") {
                Some(Value::Sequence(ports)) => ports.clone(),
                Some(Value::Null) | None => Vec::new(),
                Some(one) => vec![one.clone()],
            };
            match &ports[..] {
                [] => {}
                [p] => {
                    dns.insert("port".into(), port(p, &format!("{from}.ports"))?);
                }
                _ => {
                    return Err(err(
                        format!("{from}.ports"),
                        "the router sends to one port per gateway pod: keep the gateways' OTLP/gRPC port only",
                    ))
                }
            }
            if let Some(t) = r.get("timeout").filter(|t| !is_zero_duration(t)) {
                dns.insert("timeout".into(), t.clone());
            }
            notes.push(format!(
                "{from}: the gateways are found by resolving {service:?} in DNS, not through the Kubernetes API: make that Service headless (clusterIP: None), or its name resolves to one address and every trace goes to one gateway (docs/deploy.md)"
            ));
            m.insert("dns".into(), Value::Mapping(dns));
        }
        other => {
            return Err(err(
                from,
                format!("the {other} resolver is not supported: the router finds gateways by a static list or DNS (a Kubernetes headless Service)"),
            ))
        }
    }
    Ok(Section {
        key: "members",
        value: Value::Mapping(m),
        from,
    })
}

/// `forward` from `protocol.otlp`.
fn forward(lb: &Value, lb_key: &str, notes: &mut Vec<String>) -> Result<Section, TranslateError> {
    let protocol_key = format!("{lb_key}.protocol");
    let protocol = lb.get("protocol");
    for k in protocol.map(keys).unwrap_or_default() {
        if k != "otlp" {
            return Err(unknown(&protocol_key, k, &["otlp"]));
        }
    }
    let from = format!("{protocol_key}.otlp");
    let otlp = protocol.and_then(|p| p.get("otlp"));
    let mut m = Mapping::new();
    for (k, v) in otlp.and_then(Value::as_mapping).into_iter().flatten() {
        let Some(k) = k.as_str() else { continue };
        match k {
            // A `tls:` left empty (its keys commented out) is the Collector's default.
            "tls" if v.is_null() => {}
            "tls" => {
                if let Err(message) =
                    tailgate_core::collector::read_section::<tailgate_core::tls::ClientTlsConfig>(v)
                {
                    return Err(tailgate_core::collector::section_error(
                        &format!("{from}.tls"),
                        &message,
                    ));
                }
                m.insert(k.into(), v.clone());
            }
            "timeout" | "compression" => {
                m.insert(k.into(), v.clone());
            }
            // Replaced by each gateway's address, as in the Collector.
            "endpoint" => {}
            // `headers: {}` (a Helm template's leftover) sends nothing, as there.
            "headers" if v.as_mapping().is_some_and(|m| m.is_empty()) => {}
            // A headers_setter is most often there to pass a sender's tenant header on:
            // what is lost is that, not credentials.
            "auth"
                if v
                    .get("authenticator")
                    .and_then(Value::as_str)
                    .is_some_and(|a| kind_of(a) == "headers_setter") =>
            {
                return Err(err(
                    format!("{from}.auth"),
                    "a headers_setter sets headers from each sender's request (a tenant's X-Scope-OrgID, say) or fixed values; the router passes no senders' headers on and sends none of its own, so they would not reach the gateways or their backends: keep tenants apart before the routers (a router and gateway tier each), or set fixed headers on the gateways' exporters",
                ))
            }
            "headers" | "auth" if !v.is_null() => {
                return Err(err(
                    format!("{from}.{k}"),
                    "the router sends no credentials or headers of its own to the gateways: a gateway requiring them would refuse every request after senders were told OK; write the router's own config (forward: docs/configuration.md) and keep the gateways' receivers inside the cluster",
                ))
            }
            _ if OTLP_EXPORTER_NOTED.contains(&k) => {
                tailgate_core::collector::queue::check_not_applied(&from, k, v)?;
                notes.push(format!(
                    "{from}.{k} not applied: the router's forwarding has its own settings (forward: docs/configuration.md)"
                ))
            }
            _ => {
                let known: Vec<&str> = ["endpoint", "timeout", "tls", "compression", "headers", "auth"]
                    .into_iter()
                    .chain(OTLP_EXPORTER_NOTED.iter().copied())
                    .collect();
                return Err(unknown(&from, k, &known));
            }
        }
    }
    if !m.contains_key("tls") {
        // The Collector's otlp exporter dials TLS with the system's roots when no
        // `tls` is written; so does the router then.
        m.insert("tls".into(), Value::Mapping(Mapping::new()));
        notes.push(format!(
            "{from}.tls not written: gateways are dialled over TLS with the system's roots, as the Collector's otlp exporter does (write tls: {{insecure: true}} for plaintext inside the cluster)"
        ));
    }
    if !m.contains_key("compression") {
        notes.push(format!(
            "{from}.compression not written: the router sends uncompressed (the Collector's otlp exporter gzips by default; inside a cluster the CPU costs more than the bytes)"
        ));
    }
    Ok(Section {
        key: "forward",
        value: Value::Mapping(m),
        from,
    })
}

/// Keys of the Collector's `otlp` exporter that the router reads and does not apply.
const OTLP_EXPORTER_NOTED: &[&str] = &[
    "retry_on_failure",
    "sending_queue",
    "batcher",
    "keepalive",
    "balancer_name",
    "read_buffer_size",
    "write_buffer_size",
    "wait_for_ready",
    "authority",
    "compression_params",
    "middlewares",
];

/// Whether the component id names the load-balancing exporter: `load_balancing`, its
/// type since contrib v0.153 (PR #48533), or `loadbalancing`, the deprecated alias the
/// Collector still takes.
fn is_load_balancing(id: &str) -> bool {
    matches!(kind_of(id), "load_balancing" | "loadbalancing")
}

/// Whether a Collector config's `exporters:` defines a load-balancing exporter (of an
/// umbrella chart's Collectors, the one a router config is wanted from).
pub fn load_balances(config: &Value) -> bool {
    config
        .get("exporters")
        .and_then(|e| e.as_mapping())
        .is_some_and(|m| m.keys().filter_map(|k| k.as_str()).any(is_load_balancing))
}

/// Keys of the `loadbalancing` exporter beside `routing_key`, `resolver` and `protocol`,
/// read and not applied.
const LOADBALANCING_NOTED: &[&str] = &[
    "routing_attributes",
    "timeout",
    "sending_queue",
    "retry_on_failure",
    "endpoint_health",
];

/// Whether a duration setting is written as zero (`0s`, `0`, `0ms`): the Collector's
/// resolvers then take their defaults.
fn is_zero_duration(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => tailgate_core::config::go_duration::parse(s).is_ok_and(|d| d.is_zero()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(yaml: &str) -> Result<Translated, TranslateError> {
        translate(&serde_yaml_ng::from_str(yaml).unwrap())
    }

    fn section<'a>(t: &'a Translated, key: &str) -> &'a Value {
        &t.sections.iter().find(|s| s.key == key).unwrap().value
    }

    /// Scenario: the exporter under its type since contrib v0.153, `load_balancing` (as in
    /// Dynatrace's shipped example, a named instance per signal), beside a logs pipeline.
    /// Guarantees: read as the `loadbalancing` alias is: its resolver becomes the members,
    /// its other pipeline is named in a warning (its logs are refused); two of them in traces pipelines are
    /// refused naming both, whichever spelling each uses.
    #[test]
    fn the_exporter_loads_under_its_new_type_name() {
        let t = read("receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}\nexporters:\n  load_balancing/traces:\n    protocol: {otlp: {tls: {insecure: true}}}\n    resolver: {k8s: {service: gw.obs, ports: [4317]}}\n  load_balancing/logs:\n    resolver: {k8s: {service: gw.obs}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [load_balancing/traces]}\n    logs: {receivers: [otlp], exporters: [load_balancing/logs]}\n").unwrap();
        assert_eq!(
            section(&t, "members"),
            &serde_yaml_ng::from_str::<Value>("dns: {name: gw.obs, port: 4317}").unwrap()
        );
        // The logs pipeline on the same receiver: logs are refused now, and its exporter
        // gets none of them.
        assert!(
            t.warnings.iter().any(|n| n.starts_with(
                "service.pipelines.logs: not taken: the router receives traces only, so the logs sent to otlp are refused, and none of them reaches load_balancing/logs"
            )),
            "{:?}",
            t.warnings
        );
        let e = read("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {load_balancing: {resolver: {static: {hostnames: [a]}}}, loadbalancing/old: {resolver: {static: {hostnames: [b]}}}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [load_balancing, loadbalancing/old]}}}\n").unwrap_err();
        assert_eq!(e.key, "service.pipelines");
        assert!(
            e.message.contains("load_balancing, loadbalancing/old"),
            "{e}"
        );
    }

    /// Scenario: a load-balancing tier computing span metrics from every span: `traces`
    /// takes OTLP and passes every span to `span_metrics` and, through `forward/lb`, to
    /// `traces/lb` with the `load_balancing` exporter; beside it `traces/raw` sends every
    /// span to an archive.
    /// Guarantees: it loads (it was refused: "the traces pipeline read has no otlp
    /// receiver"), the receiver is `traces`' `otlp`; the connector, whose metrics went to
    /// the archive, and the archive, which gets nothing from the router, warnings.
    #[test]
    fn forward_connectors_before_the_load_balancing_pipeline_are_followed() {
        let t = read("receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}\nconnectors: {span_metrics: {}, forward/lb: {}}\nexporters:\n  load_balancing: {protocol: {otlp: {tls: {insecure: true}}}, resolver: {static: {hostnames: [gw]}}}\n  otlp/archive: {endpoint: 'archive:4317'}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [span_metrics, forward/lb]}\n    traces/lb: {receivers: [forward/lb], exporters: [load_balancing]}\n    traces/raw: {receivers: [otlp], exporters: [otlp/archive]}\n    metrics: {receivers: [span_metrics], exporters: [otlp/archive]}\n").unwrap();
        assert_eq!(section(&t, "receive")["grpc"], Value::from("0.0.0.0:4317"));
        assert!(
            t.warnings
                .iter()
                .any(|n| n
                    .starts_with("service.pipelines.traces.exporters: span_metrics not applied")),
            "{:?}",
            t.warnings
        );
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(
            t.warnings[1]
                .starts_with("service.pipelines.traces/raw.exporters: otlp/archive not applied"),
            "{:?}",
            t.warnings
        );
    }

    /// Scenario: the load-balancing pipeline redacts, deletes an attribute and filters
    /// health checks before the exporter (a user check: this was a note about memory).
    /// Guarantees: a warning names them (unredacted spans now reach the gateways), and
    /// says where to run them.
    #[test]
    fn processors_that_change_spans_are_warnings() {
        let t = read("receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {batch: {}, redaction: {}, attributes/pii: {}, filter/health: {}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [gw]}}}}\nservice: {pipelines: {traces: {receivers: [otlp], processors: [redaction, attributes/pii, filter/health, batch], exporters: [loadbalancing]}}}\n").unwrap();
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(
            t.warnings[0].starts_with("service.pipelines.traces: processors redaction, attributes/pii, filter/health not applied")
                && t.warnings[0].contains("run them in the agents"),
            "{:?}",
            t.warnings
        );
        assert!(
            t.notes
                .iter()
                .any(|n| n.starts_with("service.pipelines.traces: processors batch not applied")),
            "{:?}",
            t.notes
        );
    }

    /// Scenario: the load-balancing pipeline takes a second otlp receiver and a Jaeger one.
    /// Guarantees: the first otlp receiver is taken; the others are warnings (senders to
    /// them are refused), not notes.
    #[test]
    fn receivers_not_taken_are_warnings() {
        let t = read("receivers: {otlp: {protocols: {grpc: {}}}, otlp/b: {protocols: {grpc: {endpoint: 0.0.0.0:5317}}}, jaeger: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [gw]}}}}\nservice: {pipelines: {traces: {receivers: [otlp, otlp/b, jaeger], exporters: [loadbalancing]}}}\n").unwrap();
        for words in [
            "receivers jaeger not taken: Tailgate receives OTLP only",
            "receivers otlp/b not taken: Tailgate listens as one otlp receiver (otlp)",
        ] {
            assert!(
                t.warnings.iter().any(|w| w.starts_with(words)),
                "{words}: {:?}",
                t.warnings
            );
        }
    }

    /// Scenario: a receiver with `tls` under `grpc` alone (agents send gRPC over TLS,
    /// a local HTTP sender plaintext), then different `tls` blocks under each.
    /// Guarantees: the first is read as `receive.tls` with `tls_protocols: [grpc]` (it was
    /// refused: "share one TLS block"), and the router's own reading takes it; the second
    /// is still refused, naming the second block.
    #[test]
    fn tls_under_one_protocol_serves_that_one_only() {
        let yaml = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n        tls: {cert_file: /c.crt, key_file: /c.key}\n      http:\n        endpoint: 0.0.0.0:4318\nexporters:\n  loadbalancing:\n    resolver: {static: {hostnames: [gw]}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n";
        let t = read(yaml).unwrap();
        let receive = section(&t, "receive");
        assert_eq!(receive["tls"]["cert_file"], Value::from("/c.crt"));
        assert_eq!(
            receive["tls_protocols"],
            serde_yaml_ng::from_str::<Value>("[grpc]").unwrap()
        );
        let read_back: tailgate_core::receive::ReceiveConfig =
            tailgate_core::collector::read_section(receive).unwrap();
        assert!(read_back.tls_for(tailgate_core::receive::Protocol::Grpc));
        assert!(!read_back.tls_for(tailgate_core::receive::Protocol::Http));
        let two = yaml.replace(
            "endpoint: 0.0.0.0:4318\n",
            "endpoint: 0.0.0.0:4318\n        tls: {cert_file: /d.crt, key_file: /d.key}\n",
        );
        let e = read(&two).unwrap_err();
        assert_eq!(e.key, "receivers.otlp.protocols.http.tls");
        assert!(e.message.contains("share one TLS block"), "{e}");
    }

    /// Scenario: the loadbalancing exporter README's k8s example (routing by service
    /// changed to the default), and its DNS form with the port as text.
    /// Guarantees: the Service becomes the DNS name with its one port; the DNS resolver's
    /// keys are renamed; the receiver's endpoint is taken and HTTP stays off.
    #[test]
    fn resolvers_become_members() {
        let t = read(
            "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\nexporters:\n  loadbalancing:\n    protocol:\n      otlp:\n        timeout: 1s\n        tls: {insecure: true}\n    resolver:\n      k8s:\n        service: lb-svc.kube-public\n        ports: [15317]\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n",
        )
        .unwrap();
        assert_eq!(
            section(&t, "members"),
            &serde_yaml_ng::from_str::<Value>("dns: {name: lb-svc.kube-public, port: 15317}")
                .unwrap()
        );
        let receive = section(&t, "receive");
        assert_eq!(receive["grpc"], Value::from("0.0.0.0:4317"));
        assert!(receive["http"].is_null());
        assert_eq!(section(&t, "forward")["timeout"], Value::from("1s"));
        let t = read(
            "receivers: {otlp: {protocols: {grpc: null, http: null}}}\nexporters:\n  loadbalancing/x:\n    resolver:\n      dns: {hostname: gw.tailgate.svc.cluster.local, port: \"4400\", interval: 10s}\nservice: {pipelines: {traces/lb: {receivers: [otlp], exporters: [loadbalancing/x]}}}\n",
        )
        .unwrap();
        assert_eq!(
            section(&t, "members"),
            &serde_yaml_ng::from_str::<Value>(
                "dns: {name: gw.tailgate.svc.cluster.local, port: 4400, interval: 10s}"
            )
            .unwrap()
        );
        // Protocols written empty take the Collector's default endpoints.
        assert_eq!(
            section(&t, "receive")["grpc"],
            Value::from("localhost:4317")
        );
        assert_eq!(
            section(&t, "receive")["http"],
            Value::from("localhost:4318")
        );
        // No tls written: TLS, as the Collector's otlp exporter, and said so.
        assert!(section(&t, "forward")["tls"].is_mapping());
        assert!(
            t.notes.iter().any(|n| n.contains("tls not written")),
            "{:?}",
            t.notes
        );
        let t = read("receivers: {otlp: {protocols: {grpc: null}}}\nexporters: {loadbalancing: {resolver: {k8s: {service: gw}}}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap();
        assert!(
            t.notes.iter().any(|n| n.contains("headless")),
            "{:?}",
            t.notes
        );
    }

    /// Scenario: a receiver block with the keys the table in docs/configuration.md says are
    /// taken, no health_check enabled, and telemetry `level: none`.
    /// Guarantees: each lands on its receive key (the larger size limit, the connection
    /// ages, cors, the traces path, one tls); admin and metrics are off.
    #[test]
    fn the_receivers_settings_are_taken_as_documented() {
        let t = read("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 0.0.0.0:4317\n        max_recv_msg_size_mib: 8\n        max_concurrent_streams: 64\n        tls: {cert_file: c.pem, key_file: k.pem}\n        keepalive: {server_parameters: {max_connection_age: 60s, max_connection_age_grace: 10s, time: 30s}}\n      http:\n        endpoint: 0.0.0.0:4318\n        max_request_body_size: 4194304\n        tls: {cert_file: c.pem, key_file: k.pem}\n        cors: {allowed_origins: ['https://*.example.com']}\n        traces_url_path: /otlp/v1/traces\nexporters: {loadbalancing: {resolver: {static: {hostnames: [a]}}}}\nservice:\n  telemetry: {metrics: {level: none}}\n  pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}\n").unwrap();
        let r = section(&t, "receive");
        assert_eq!(r["max_request_bytes"], Value::from(8u64 << 20));
        assert_eq!(r["max_concurrent_streams"], Value::from(64));
        assert_eq!(r["max_connection_age"], Value::from("60s"));
        assert_eq!(r["max_connection_age_grace"], Value::from("10s"));
        assert_eq!(r["tls"]["cert_file"], Value::from("c.pem"));
        assert_eq!(
            r["cors"]["allowed_origins"][0],
            Value::from("https://*.example.com")
        );
        assert_eq!(r["traces_url_path"], Value::from("/otlp/v1/traces"));
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("server_parameters.time not applied")),
            "{:?}",
            t.notes
        );
        assert!(section(&t, "admin").is_null());
        assert!(section(&t, "metrics").is_null());
    }

    /// Scenario: configs the router cannot honour.
    /// Guarantees: each is refused naming the Collector key, in the Collector's words
    /// where it has them.
    #[test]
    fn what_cannot_be_honoured_is_refused_by_key() {
        let base = |exporter: &str, receiver: &str| {
            format!("receivers:\n  otlp:\n    protocols:\n      grpc:\n{receiver}exporters:\n  loadbalancing:\n{exporter}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n")
        };
        let static_ = "    resolver:\n      static: {hostnames: [a]}\n";
        for (yaml, key, words) in [
            (
                base("    routing_key: service\n".to_owned().as_str(), ""),
                "exporters.loadbalancing.routing_key",
                "trace id only",
            ),
            (
                base("    resolver: {}\n", ""),
                "exporters.loadbalancing.resolver",
                "no resolvers specified for the exporter",
            ),
            (
                base(
                    "    resolver:\n      static: {hostnames: [a]}\n      dns: {hostname: b}\n",
                    "",
                ),
                "exporters.loadbalancing.resolver",
                "only one resolver should be specified",
            ),
            (
                base("    resolver:\n      aws_cloud_map: {namespace: n}\n", ""),
                "exporters.loadbalancing.resolver.aws_cloud_map",
                "not supported",
            ),
            (
                base(
                    "    resolver:\n      k8s: {service: gw, ports: [4317, 4318]}\n",
                    "",
                ),
                "exporters.loadbalancing.resolver.k8s.ports",
                "one port",
            ),
            (
                base(static_, "        auth: {authenticator: bearertokenauth}\n"),
                "receivers.otlp.protocols.grpc.auth",
                "receive.auth",
            ),
            (
                base(static_, "        endpoint: unix:///tmp/otlp.sock\n"),
                "receivers.otlp.protocols.grpc.endpoint",
                "Unix",
            ),
            (
                base(static_, "        transport: unix\n"),
                "receivers.otlp.protocols.grpc.endpoint",
                "Unix",
            ),
            // Blocks read and not applied are checked as the Collector checks them (a
            // typo there was taken; the Collector fails at start).
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        retry_on_failure: {{enabeld: true}}\n"), ""),
                "exporters.loadbalancing.protocol.otlp.retry_on_failure.enabeld",
                "unknown field",
            ),
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        retry_on_failure: {{max_elapsed_time: 1s, max_interval: 2s}}\n"), ""),
                "exporters.loadbalancing.protocol.otlp.retry_on_failure.max_elapsed_time",
                "must not be less than max_interval",
            ),
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        sending_queue: {{queue_size: 0}}\n"), ""),
                "exporters.loadbalancing.protocol.otlp.sending_queue.queue_size",
                "must be positive",
            ),
            (
                base(&format!("{static_}    sending_queue:\n      num_consumers: -1\n"), ""),
                "exporters.loadbalancing.sending_queue.num_consumers",
                "must be positive",
            ),
            (
                base(&format!("{static_}    timeout: 5 seconds\n"), ""),
                "exporters.loadbalancing.timeout",
                "duration",
            ),
            // A datagram network: the Collector's receiver does not start on it (it was
            // ignored, a TCP port opened).
            (
                base(static_, "        transport: udp\n"),
                "receivers.otlp.protocols.grpc.transport",
                "write tcp",
            ),
            // Misspelt keys: a typo must not leave a default in force (the Collector
            // refuses them too).
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        tiemout: 5s\n"), ""),
                "exporters.loadbalancing.protocol.otlp.tiemout",
                "unknown key, expected one of endpoint, timeout,",
            ),
            (
                base(static_, "        tsl: {insecure: false}\n"),
                "receivers.otlp.protocols.grpc.tsl",
                "unknown key",
            ),
            (
                base(static_, "        endpiont: 0.0.0.0:4317\n"),
                "receivers.otlp.protocols.grpc.endpiont",
                "did you mean `endpoint`?",
            ),
            (
                base(&format!("{static_}    protocl: {{otlp: {{}}}}\n"), ""),
                "exporters.loadbalancing.protocl",
                "did you mean `protocol`?",
            ),
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        headers: {{x-token: t}}\n"), ""),
                "exporters.loadbalancing.protocol.otlp.headers",
                "no credentials or headers",
            ),
            (
                base(&format!("{static_}    protocol:\n      otlp:\n        tls: {{insecure_skip: true}}\n"), ""),
                "exporters.loadbalancing.protocol.otlp.tls.insecure_skip",
                "unknown field",
            ),
        ] {
            let e = read(&yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert!(e.message.contains(words), "{e}");
        }
        // A health check on another path: probes copied with the file would miss.
        let e = read("extensions: {health_check: {endpoint: 0.0.0.0:13133, path: /health/status}}\nreceivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [a]}}}}\nservice: {extensions: [health_check], pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap_err();
        assert_eq!(e.key, "extensions.health_check.path");
        // `tls:` left empty is the Collector's default, TLS.
        let t = read("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {protocol: {otlp: {tls: null}}, resolver: {static: {hostnames: [a]}}}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap();
        assert!(section(&t, "forward")["tls"].is_mapping());
        let e = read("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {otlp: {endpoint: x:4317}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n").unwrap_err();
        assert_eq!(e.key, "service.pipelines");
        assert!(
            e.message.contains(
                "no traces pipeline exports to a load_balancing (or loadbalancing) exporter"
            ),
            "{e}"
        );
    }

    /// Scenario: a typical load-balancing tier's config with what the router does not do.
    /// Guarantees: processors, other exporters and pipelines, queue and retry settings are
    /// named in notes; health_check and the telemetry reader give admin and metrics.
    #[test]
    fn what_is_not_applied_is_named() {
        let t = read(
            "extensions:\n  health_check: {endpoint: 0.0.0.0:13133}\nreceivers:\n  otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317, include_metadata: true}}}\nprocessors: {memory_limiter: {}, batch: {}}\nexporters:\n  debug: {}\n  loadbalancing:\n    sending_queue: {enabled: true}\n    protocol: {otlp: {tls: {insecure: true}, compression: zstd, retry_on_failure: {enabled: true}}}\n    resolver: {static: {hostnames: [a, b]}}\nservice:\n  extensions: [health_check]\n  telemetry: {metrics: {readers: [{pull: {exporter: {prometheus: {host: 0.0.0.0, port: 8888}}}}]}}\n  pipelines:\n    traces: {receivers: [otlp], processors: [memory_limiter, batch], exporters: [loadbalancing, debug]}\n    logs: {receivers: [otlp], exporters: [debug]}\n",
        )
        .unwrap();
        assert!(
            t.warnings.is_empty(),
            "batching and the memory limiter change nothing: {:?}",
            t.warnings
        );
        for words in [
            "processors memory_limiter, batch not applied",
            "service.pipelines.traces.exporters: debug not applied",
            "service.pipelines.logs: not taken",
            "exporters.loadbalancing.sending_queue not applied",
            "protocol.otlp.retry_on_failure not applied",
            "protocols.grpc.include_metadata not applied",
        ] {
            assert!(
                t.notes.iter().any(|n| n.contains(words)),
                "{words}: {:?}",
                t.notes
            );
        }
        assert!(
            !t.notes.iter().any(|n| n.contains("compression")),
            "{:?}",
            t.notes
        );
        assert_eq!(section(&t, "admin"), &Value::from("0.0.0.0:13133"));
        assert_eq!(section(&t, "metrics"), &Value::from("0.0.0.0:8888"));
        assert_eq!(section(&t, "members")["static"][1], Value::from("b"));
        assert!(
            !t.notes.iter().any(|n| n.starts_with("service.extensions")),
            "{:?}",
            t.notes
        );
        // A headers_setter (a tenant header passed on) is refused for what it loses.
        let e = read("extensions: {headers_setter: {headers: [{key: X-Scope-OrgID, from_context: tenant}]}}\nreceivers: {otlp: {protocols: {grpc: {include_metadata: true}}}}\nexporters: {loadbalancing: {protocol: {otlp: {auth: {authenticator: headers_setter}}}, resolver: {static: {hostnames: [a]}}}}\nservice: {extensions: [headers_setter], pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap_err();
        assert_eq!(e.key, "exporters.loadbalancing.protocol.otlp.auth");
        assert!(e.message.contains("X-Scope-OrgID"), "{e}");
        // The Collector's own log settings are named as not applied.
        let t = read("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [a]}}}}\nservice: {telemetry: {logs: {level: debug, encoding: json}}, pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap();
        assert!(
            t.notes.iter().any(|n| n
                .starts_with("service.telemetry.logs (level, encoding) not applied")
                && n.contains("RUST_LOG")),
            "{:?}",
            t.notes
        );
        // The snake-case name of groupbytrace is as neutral (an adoption trial saw it
        // warned of as changing spans), and so is core's queue_batch processor (v0.158,
        // batch's successor; a config audit saw it warned of).
        for neutral in ["group_by_trace", "queue_batch", "queuebatch"] {
            let t = read(&format!("receivers: {{otlp: {{protocols: {{grpc: {{}}}}}}}}\nprocessors: {{{neutral}: {{}}}}\nexporters: {{loadbalancing: {{resolver: {{static: {{hostnames: [a]}}}}}}}}\nservice: {{pipelines: {{traces: {{receivers: [otlp], processors: [{neutral}], exporters: [loadbalancing]}}}}}}\n")).unwrap();
            assert!(t.warnings.is_empty(), "{:?}", t.warnings);
            assert!(
                t.notes
                    .iter()
                    .any(|n| n.contains(&format!("processors {neutral} not applied"))),
                "{:?}",
                t.notes
            );
        }
        // Enabled extensions the router does not run are named (an adoption trial:
        // healthcheckv2's probes would fail, pprof and zpages vanished, all unsaid).
        let t = read("extensions: {healthcheckv2: {}, pprof: {}}\nreceivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [a]}}}}\nservice: {extensions: [healthcheckv2, pprof], pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n").unwrap();
        assert!(
            t.notes.iter().any(|n| n
                .starts_with("service.extensions: healthcheckv2, pprof not taken")
                && n.contains("/healthz")),
            "{:?}",
            t.notes
        );
    }
}
