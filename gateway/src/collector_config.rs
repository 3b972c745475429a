//! A whole Collector config given as the gateway's `--config`: the config of the Collector
//! tier running `tail_sampling` (the tier the gateway replaces) is read for the gateway's
//! sections, so that a user's file loads as it is (and, without `--policies`, its
//! `tail_sampling` processor is the policy file too).
//!
//! Data comes from the parsed file (references already expanded) and goes to
//! [`crate::config`] as sections in the gateway config's shape, each with the Collector
//! key it was read from (for errors), plus notes and warnings naming what is not applied
//! ([`tailgate_core::pipelines::Graph::side_exits`]: warnings for what a backend would no
//! longer get). What is taken, from the traces pipelines that run the chosen
//! `tail_sampling` processor (`policy::collector::sampling_pipelines`) and those joined to
//! them by `forward` connectors ([`tailgate_core::pipelines::Graph`]):
//!
//! * the `otlp` receiver of the sampling pipelines and of those passing them spans, as the
//!   router reads it ([`tailgate_core::collector::receive`]);
//! * the exporters of the sampling pipelines and of those their kept spans go on to, each
//!   block as written (the gateway's `export:` reads the Collector's `otlp`, `otlphttp`
//!   and `debug` exporter keys), with the Collector's `compression: gzip` where an `otlp`
//!   or `otlphttp` block leaves it out, and an `otlp` block's `http://` endpoint dialled
//!   with TLS unless `tls.insecure: true`, as the Collector dials it; an exporter of
//!   another type is refused by `export:`'s own reading, naming it; a connector
//!   computing span metrics there is noted as not applied, one that routes is refused;
//! * the top-level `extensions:` (authenticators; `health_check`'s endpoint becomes
//!   `admin` when the service enables it, else there is no `admin`, as such a Collector
//!   serves none; `service.telemetry.metrics` becomes `metrics`).
//!
//! Refused: what the Collector refuses (an undefined id, a cycle), and shapes where the
//! gateway, which sends every kept trace to every exporter it has, would send one
//! pipeline's traces to another's backends. The buffer, peers and attribute actions take
//! their defaults: they have no Collector counterpart to read.

use serde_yaml_ng::{Mapping, Value};
use tailgate_core::collector::{admin, connector_computes_metrics, err, kind_of, metrics, receive};
pub use tailgate_core::collector::{Section, TranslateError, Translated};
use tailgate_core::pipelines::{Graph, Served};

/// An exporter block as the gateway reads it, meaning what it means to the Collector:
///
/// * an `otlp` or `otlphttp` exporter that leaves `compression` out gzips there, where the
///   gateway's own `export:` sends uncompressed unless told (a departure for configs
///   written for it, docs/configuration.md); a copied Collector config keeps the
///   Collector's;
/// * an `otlp` (gRPC) endpoint written `http://host:port` is dialled by the Collector with
///   TLS unless `tls.insecure: true` (configgrpc takes the scheme off and uses TLS by
///   default), where the gateway's own `export:` reads `http://` as plaintext: the scheme
///   is taken off here, so the endpoint is dialled as the Collector dials it. Without
///   this, a config that works in the Collector sent its headers (API keys) in clear, to a
///   backend that expects TLS. Said in a note when the connection is TLS;
/// * an `otlphttp` endpoint written `http://` is plaintext there whatever its `tls:` block
///   says, where the gateway's own `export:` refuses TLS settings on an `http://` URL
///   unless `insecure: true` (so that an API key does not go out in clear by mistake): a
///   block that sets one (a CA, a certificate, `insecure_skip_verify`, …) without
///   `insecure: true` is left out, in a warning.
fn as_the_collector_means(
    id: &str,
    block: &Value,
    notes: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Value {
    let kind = kind_of(id);
    let Value::Mapping(m) = block else {
        return block.clone();
    };
    let mut m = m.clone();
    if matches!(kind, "otlp" | "otlp_grpc" | "otlphttp" | "otlp_http")
        && m.get("compression").is_none()
    {
        m.insert("compression".into(), "gzip".into());
    }
    // A key of a `tls:` block written and not empty (`""` is Go's unset).
    let written = |tls: Option<&Value>, key: &str| {
        tls.and_then(|t| t.get(key))
            .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
    };
    if matches!(kind, "otlphttp" | "otlp_http") {
        // confighttp: an http:// URL is dialled in plaintext, whatever `tls` says (it
        // applies to https:// only), where the gateway's own `export:` refuses settings
        // that only TLS uses on an http:// endpoint unless `insecure: true` says plaintext.
        let url = m
            .get("traces_endpoint")
            .or_else(|| m.get("endpoint"))
            .and_then(Value::as_str);
        let tls = m.get("tls");
        let insecure = tls
            .and_then(|t| t.get("insecure"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let tls_only = [
            "ca_file",
            "ca_pem",
            "cert_file",
            "cert_pem",
            "key_file",
            "key_pem",
            "insecure_skip_verify",
            "server_name_override",
            "min_version",
            "max_version",
            "include_system_ca_certs_pool",
            "cipher_suites",
            "curve_preferences",
        ]
        .iter()
        .any(|k| written(tls, k));
        let http = url.is_some_and(|u| {
            u.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        });
        if http && tls_only && !insecure {
            m.remove("tls");
            warnings.push(format!(
                "exporters.{id}.tls: not used: the endpoint is http://, sent in plaintext (headers and all), as the Collector sends it; write https:// for TLS"
            ));
        }
    }
    if matches!(kind, "otlp" | "otlp_grpc") {
        // As configgrpc: the prefix exactly (`HasPrefix`), case and all.
        let bare = m
            .get("endpoint")
            .and_then(Value::as_str)
            .and_then(|e| e.strip_prefix("http://"))
            .map(str::to_owned);
        if let Some(bare) = bare {
            let tls = m.get("tls");
            let set = |key: &str| written(tls, key);
            let insecure = tls
                .and_then(|t| t.get("insecure"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if !insecure || set("ca_file") || set("ca_pem") {
                notes.push(format!(
                    "exporters.{id}.endpoint: http://{bare} is dialled with TLS, as the Collector's gRPC client dials it (it takes http:// off and uses TLS unless tls.insecure: true)"
                ));
            }
            m.insert("endpoint".into(), bare.into());
        }
    }
    Value::Mapping(m)
}

/// Reads `top`, a whole Collector config, for the gateway, from the traces `pipelines`
/// that run its `tail_sampling` processor.
pub fn translate(top: &Value, pipelines: &[String]) -> Result<Translated, TranslateError> {
    let mut out = Translated::default();
    let g = Graph::new(top);
    g.check()?;
    let chosen: Vec<&str> = pipelines
        .iter()
        .filter_map(|p| g.get(p))
        .map(|p| p.name)
        .collect();
    let (upstream, downstream) = (g.upstream(&chosen), g.downstream(&chosen));
    let feeding: Vec<&str> = chosen.iter().chain(&upstream).copied().collect();
    let fed: Vec<&str> = chosen.iter().chain(&downstream).copied().collect();
    one_tenant(&g, &chosen, &fed)?;
    let receivers = g.receivers_of(&feeding)?;
    let export = exporters(top, &g, &fed, &mut out)?;
    let exporting: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
    g.side_exits(
        &Served {
            binary: "gateway",
            feeding: &feeding,
            taken: &chosen,
            after: &downstream,
            receivers: &receivers,
            exporters: &exporting,
            every_span: false,
            sends: "the gateway exports kept traces only",
            reads: "the gateway reads the pipeline of its tail_sampling processor (and those joined to it by forward connectors)",
        },
        &mut out,
    );
    let received = receive(top, &receivers, &mut out)?;
    out.sections.push(received);
    out.sections.push(Section {
        key: "export",
        value: Value::Mapping(export.clone()),
        from: "exporters".into(),
    });
    let admin = admin(top, &mut out.notes)?;
    if let Some(mut extensions) = top.get("extensions").and_then(Value::as_mapping).cloned() {
        // The extension serving health checks becomes `admin`; the others are read by
        // `extensions:` (authenticators, and the Collector's service extensions, ignored
        // with a warning each).
        // Those the taken exporters name as authenticators; the rest (storage, observers,
        // the service's own) are named in a note: an extension Tailgate has no use for
        // must not refuse the file.
        let used: Vec<&str> = export
            .values()
            .filter_map(|b| b.get("auth")?.get("authenticator")?.as_str())
            .collect();
        let mut unused = Vec::new();
        extensions.retain(|k, _| {
            let k = k.as_str().unwrap_or_default();
            let keep = used.contains(&k);
            if !keep && !admin.from.starts_with(&format!("extensions.{k}.")) {
                unused.push(k.to_owned());
            }
            keep
        });
        if !unused.is_empty() {
            out.notes.push(format!(
                "extensions {} not taken: the gateway reads the authenticators its exporters name",
                unused.join(", ")
            ));
        }
        out.sections.push(Section {
            key: "extensions",
            value: Value::Mapping(extensions),
            from: "extensions".into(),
        });
    }
    out.sections.push(admin);
    out.sections.extend(metrics(top, &mut out.notes)?);
    let unread: Vec<&str> = top
        .as_mapping()
        .map(|m| {
            m.keys()
                .filter_map(Value::as_str)
                .filter(|k| {
                    !matches!(
                        kind_of(k),
                        "receivers"
                            | "processors"
                            | "exporters"
                            | "extensions"
                            | "service"
                            | "connectors"
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !unread.is_empty() {
        out.notes.push(format!(
            "{} not read: the gateway reads the tail_sampling pipeline's receiver and exporters",
            unread.join(", ")
        ));
    }
    Ok(out)
}

/// Refuses shapes where the gateway, which sends every kept trace to every exporter it
/// has, would send one pipeline's traces to another's backends (another tenant's, say):
/// pipelines running the processor apart (each from a receiver of its own) with different
/// exporters in the end, and kept spans going on through forward connectors to pipelines
/// with different exporters when one of them chooses spans ([`chooses_spans`]: a `filter`
/// keeping its tenant's traces, which the gateway would not run). `chosen` are the pipelines running
/// the processor, `fed` those and the pipelines after them.
fn one_tenant(g: &Graph<'_>, chosen: &[&str], fed: &[&str]) -> Result<(), TranslateError> {
    // What a pipeline's spans reach in the end: its backends and those after it.
    let reached = |name: &str| {
        let after = g.downstream(&[name]);
        backends(g, std::iter::once(name).chain(after))
    };
    // A pipeline running the processor again after another (all it receives comes from
    // the read pipelines) is that one's chain, warned about with the policies.
    let chained = |name: &str| {
        g.get(name).is_some_and(|p| {
            !p.receivers.is_empty()
                && p.receivers.iter().all(|r| {
                    g.is_forward(r)
                        && g.pipelines
                            .iter()
                            .filter(|q| q.exporters.contains(r))
                            .all(|q| q.name != name && fed.contains(&q.name))
                })
        })
    };
    let roots: Vec<&str> = chosen.iter().copied().filter(|n| !chained(n)).collect();
    if let [first, rest @ ..] = &roots[..] {
        let a = reached(first);
        if let Some(other) = rest.iter().find(|n| reached(n) != a) {
            return Err(err(
                format!("service.pipelines.{other}.exporters"),
                format!("pipelines {first} and {other} run the same tail_sampling processor with different exporters: the gateway sends every kept trace to every exporter, so each pipeline's traces would reach the other's backends; give the gateway a config with one such pipeline (or the same exporters in each)"),
            ));
        }
    }
    // Branches after sampling: the pipelines with exporters of their own.
    let branches: Vec<_> = fed
        .iter()
        .filter_map(|n| g.get(n))
        .filter(|p| p.exporters.iter().any(|e| !g.is_connector(e)))
        .collect();
    let own = |name: &str| backends(g, std::iter::once(name));
    let choosing = branches
        .iter()
        .find(|p| !chosen.contains(&p.name) && p.processors.iter().any(|q| chooses_spans(q)));
    if let Some(choosing) = choosing {
        if let Some(other) = branches.iter().find(|b| own(b.name) != own(choosing.name)) {
            return Err(err(
                format!("service.pipelines.{}.processors", choosing.name),
                format!("pipelines {} and {} take the kept spans through forward connectors with different exporters, and {} runs {}: the gateway runs no processor after sampling and sends every kept trace to every exporter, so each backend would get the traces the other's processors choose; give the gateway a config with one such pipeline, or run those processors after the gateways", choosing.name, other.name, choosing.name, choosing.processors.join(", ")),
            ));
        }
    }
    Ok(())
}

/// The backends ([`Graph::is_backend`]) the exporters of pipelines `names` send to, sorted,
/// each once: what two pipelines' spans reach, compared.
fn backends<'a, 'n>(g: &Graph<'a>, names: impl Iterator<Item = &'n str>) -> Vec<&'a str> {
    let mut all: Vec<&'a str> = names
        .filter_map(|n| g.get(n))
        .flat_map(|p| p.exporters.iter().copied())
        .filter(|e| g.is_backend(e))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Whether processor `id` chooses which spans go on (`filter`, a sampler, the old
/// `routing` processor), rather than changing them: after sampling, such a processor in
/// one of several branches sends each backend its own traces.
fn chooses_spans(id: &str) -> bool {
    matches!(
        kind_of(id),
        "filter" | "probabilistic_sampler" | "tail_sampling" | "routing"
    )
}

/// The exporters the kept spans reach: those of `fed` (the sampling pipelines and those
/// after them), each block as written, as the Collector means it
/// ([`as_the_collector_means`]). Forward
/// connectors are followed (their pipelines are in `fed`); one computing metrics is a note
/// in `out`; another connector is refused (it chooses where spans go).
fn exporters(
    top: &Value,
    g: &Graph<'_>,
    fed: &[&str],
    out: &mut Translated,
) -> Result<Mapping, TranslateError> {
    let mut export = Mapping::new();
    for p in fed.iter().filter_map(|n| g.get(n)) {
        let key = format!("service.pipelines.{}.exporters", p.name);
        for e in &p.exporters {
            if g.is_connector(e) {
                match kind_of(e) {
                    _ if g.is_forward(e) => {}
                    // A warning when a backend got what it computes (it gets nothing now).
                    _ if connector_computes_metrics(e) && g.feeds_a_backend(e) => out.warnings.push(format!(
                        "{key}: {e} not applied: Tailgate runs no connectors, so what it computes from kept spans is not computed: compute it after the gateways (a Collector they export to)"
                    )),
                    _ if connector_computes_metrics(e) => out.notes.push(format!(
                        "{key}: {e} not applied: Tailgate runs no connectors, so what it computes from kept spans is not computed: compute it after the gateways (a Collector they export to)"
                    )),
                    kind => return Err(err(key, format!("{e} is a connector ({kind}): the gateway sends kept spans to exporters only, and follows forward connectors; give it the exporters the spans finally go to"))),
                }
                continue;
            }
            // Defined: [`Graph::check`] refused the file otherwise.
            if let Some(block) = top.get("exporters").and_then(|x| x.get(*e)) {
                if !export.contains_key(*e) {
                    // `debug: {}` is in the Helm chart's defaults and many guides: a line
                    // of counts per batch there, every kept span in full here.
                    if kind_of(e) == "debug" && block.get("verbosity").is_none() {
                        out.warnings.push(format!(
                            "exporters.{e}: the Collector's debug exporter logs a line of counts per batch when verbosity is left out (basic); Tailgate's writes every kept request whole, as a line of OTLP JSON, to stdout, so the spans' contents reach the logs: take it out of the pipeline unless that is wanted"
                        ));
                    }
                    export.insert(
                        (*e).into(),
                        as_the_collector_means(e, block, &mut out.notes, &mut out.warnings),
                    );
                }
            }
        }
    }
    if export.is_empty() {
        // Named at the last pipeline the kept spans reach.
        let last = fed.last().copied().unwrap_or("traces");
        let what = if fed.len() > 1 {
            "neither the tail_sampling pipeline nor those after it (through forward connectors) have an exporter"
        } else {
            "the tail_sampling pipeline has no exporter"
        };
        return Err(err(
            format!("service.pipelines.{last}.exporters"),
            format!("{what}: kept spans would go nowhere"),
        ));
    }
    Ok(export)
}

#[cfg(test)]
mod tests;
