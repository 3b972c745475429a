//! A whole Collector config given as the gateway's `--config`: the config of the Collector
//! tier running `tail_sampling` (the tier the gateway replaces) is read for the gateway's
//! sections, so that a user's file loads as it is (and, without `--policies`, its
//! `tail_sampling` processor is the policy file too).
//!
//! Data comes from the parsed file (references already expanded) and goes to
//! [`crate::config`] as sections in the gateway config's shape, each with the Collector
//! key it was read from (for errors), plus notes naming what is not applied. What is
//! taken, from the traces pipelines that run the chosen `tail_sampling` processor
//! (`policy::collector::sampling_pipelines`):
//!
//! * their `otlp` receiver, as the router reads it ([`tailgate_core::collector::receive`]),
//!   or that of the pipelines passing them spans through `forward` connectors;
//! * their exporters, each block as written (the gateway's `export:` reads the
//!   Collector's `otlp`, `otlphttp` and `debug` exporter keys), with the Collector's
//!   `compression: gzip` where an `otlp` or `otlphttp` block leaves it out; an exporter of
//!   another type is refused by `export:`'s own reading, naming it; or those of the
//!   pipelines their kept spans go on to through `forward` connectors (other connectors
//!   that compute span metrics are noted as not applied; those that route are refused, as
//!   are side exits that would send unsampled spans or stop a backend's traffic);
//! * the top-level `extensions:` (authenticators; `health_check`'s endpoint becomes
//!   `admin` when the service enables it, else there is no `admin`, as such a Collector
//!   serves none; `service.telemetry.metrics` becomes `metrics`).
//!
//! The buffer, peers and attribute actions take their defaults: they have no Collector
//! counterpart to read.

use serde_yaml_ng::{Mapping, Value};
use tailgate_core::collector::{
    admin, connector_computes_metrics, err, kind_of, metrics, names, other_pipelines, receive,
};

use crate::policy::collector::{forwarded, is_forward};
pub use tailgate_core::collector::{Section, TranslateError, Translated};

/// An exporter block as the gateway reads it, meaning what it means to the Collector: an
/// `otlp` or `otlphttp` exporter that leaves `compression` out gzips there, where the
/// gateway's own `export:` sends uncompressed unless told (a departure for configs written
/// for it, docs/configuration.md); a copied Collector config keeps the Collector's.
fn with_collector_compression(id: &str, block: &Value) -> Value {
    let otlp = matches!(kind_of(id), "otlp" | "otlp_grpc" | "otlphttp" | "otlp_http");
    match block {
        Value::Mapping(m) if otlp && m.get("compression").is_none() => {
            let mut m = m.clone();
            m.insert("compression".into(), "gzip".into());
            Value::Mapping(m)
        }
        other => other.clone(),
    }
}

/// Where to compute what connector `id` computes from every span, now that the gateway
/// takes the spans: where every span still passes, or (a service graph, which pairs the
/// client and server spans of each call) where whole traces meet.
fn where_to_compute(id: &str) -> &'static str {
    if kind_of(id).replace('_', "") == "servicegraph" {
        "a service graph pairs the client and server spans of each call, so it needs whole traces in one place: compute it in a Collector tier that receives spans by trace id (behind a loadbalancing exporter), not in the agents"
    } else {
        "compute it before the routers (a Collector in the agents), where every span still passes"
    }
}

/// Reads `top`, a whole Collector config, for the gateway, from the traces `pipelines`
/// that run its `tail_sampling` processor.
pub fn translate(top: &Value, pipelines: &[String]) -> Result<Translated, TranslateError> {
    let mut out = Translated::default();
    let defined = top.get("service").and_then(|s| s.get("pipelines"));
    let chosen: Vec<(&str, &Value)> = pipelines
        .iter()
        .filter_map(|p| Some((p.as_str(), defined?.get(p.as_str())?)))
        .collect();
    let pipelines_map = defined.and_then(Value::as_mapping);
    let names_of = |list: &[String]| -> Vec<(&str, &Value)> {
        list.iter()
            .filter_map(|p| {
                let (name, block) = pipelines_map?
                    .iter()
                    .find(|(k, _)| k.as_str() == Some(p.as_str()))?;
                Some((name.as_str()?, block))
            })
            .collect()
    };
    // Pipelines whose spans go on to others through `id` (a forward connector), listing
    // it under `key`.
    let through = |id: &str, key: &str| -> Vec<&str> {
        pipelines_map
            .into_iter()
            .flatten()
            .filter_map(|(n, p)| names(p, key).contains(&id).then(|| n.as_str()).flatten())
            .collect()
    };
    // The exporters a sampling pipeline's kept spans finally reach (through forward
    // connectors), for the check below.
    let final_exporters = |name: &str, p: &Value| -> Vec<String> {
        let (_, down) = forwarded(top, &[name]);
        let mut all: Vec<String> = names(p, "exporters")
            .into_iter()
            .chain(
                names_of(&down)
                    .into_iter()
                    .flat_map(|(_, d)| names(d, "exporters")),
            )
            .filter(|e| !is_forward(top, e))
            .map(str::to_owned)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    };
    // Tailgate sends every kept trace to every exporter it has: pipelines sharing the
    // processor with different exporters would send each one's traces to the other's
    // backends (another tenant's, say). A pipeline running it again after another, through
    // a forward connector, is that one's chain (warned about with the policies).
    let sampling: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
    let roots: Vec<(&str, &Value)> = chosen
        .iter()
        .copied()
        .filter(|(n, _)| {
            !sampling
                .iter()
                .any(|o| o != n && forwarded(top, &[o]).1.iter().any(|d| d == n))
        })
        .collect();
    if let [(first, a), rest @ ..] = &roots[..] {
        let a = final_exporters(first, a);
        if let Some((other, _)) = rest.iter().find(|(n, b)| final_exporters(n, b) != a) {
            return Err(err(
                format!("service.pipelines.{other}.exporters"),
                format!("pipelines {first} and {other} run the same tail_sampling processor with different exporters: the gateway sends every kept trace to every exporter, so each pipeline's traces would reach the other's backends; give the gateway a config with one such pipeline (or the same exporters in each)"),
            ));
        }
    }
    let (up, down) = forwarded(top, &sampling);
    let (upstream, downstream) = (names_of(&up), names_of(&down));
    let feeding: Vec<(&str, &Value)> = chosen.iter().copied().chain(upstream.clone()).collect();
    let fed: Vec<(&str, &Value)> = chosen.iter().copied().chain(downstream.clone()).collect();
    let taken: Vec<(&str, &Value)> = feeding.iter().chain(&downstream).copied().collect();
    let in_set = |set: &[(&str, &Value)], name: &str| set.iter().any(|(n, _)| *n == name);
    // Spans going round through forward connectors: the Collector refuses the file.
    for (name, p) in &taken {
        let after = names_of(&forwarded(top, &[name]).1);
        let back = names(p, "receivers").into_iter().find(|c| {
            is_forward(top, c)
                && std::iter::once(*p)
                    .chain(after.iter().map(|(_, q)| *q))
                    .any(|q| names(q, "exporters").contains(c))
        });
        if let Some(c) = back {
            return Err(err(
                format!("service.pipelines.{name}.receivers"),
                format!("{c} brings spans from pipeline {name} (or one after it) back to it: a cycle, which the Collector refuses too (\"cycle detected\")"),
            ));
        }
    }
    let defined_as = |section: &str, id: &str| top.get(section).and_then(|c| c.get(id)).is_some();
    let mut receivers = Vec::new();
    for (name, p) in &feeding {
        let key = format!("service.pipelines.{name}.receivers");
        for r in names(p, "receivers") {
            if defined_as("connectors", r) {
                match kind_of(r) {
                    // Followed to the pipelines sending to it (`upstream`).
                    "forward" => {}
                    kind => return Err(err(key, format!("{r} is a connector ({kind}): the tail_sampling pipeline takes spans from another pipeline through it; the gateway follows forward connectors only: give the gateway a config whose sampling pipeline takes its spans from the otlp receiver (or through forward connectors), or write its own (docs/configuration.md)"))),
                }
            } else if !defined_as("receivers", r) {
                return Err(err(key, format!("{r} is used by the pipeline and defined under neither receivers: nor connectors: (the Collector refuses this too)")));
            } else if !receivers.contains(&r) {
                receivers.push(r);
            }
        }
    }
    // Pipelines not taken that share a receiver taken: the Collector gave them every span
    // (or log record, or metric point) sent to it.
    let beside: Vec<(&str, &Value)> = pipelines_map
        .into_iter()
        .flatten()
        .filter_map(|(n, p)| Some((n.as_str()?, p)))
        .filter(|(n, p)| {
            !in_set(&taken, n) && names(p, "receivers").iter().any(|r| receivers.contains(r))
        })
        .collect();
    let others: Vec<&str> = other_pipelines(top, &taken)
        .into_iter()
        .filter(|n| !in_set(&beside, n))
        .collect();
    if !others.is_empty() {
        out.notes.push(format!(
            "service.pipelines: {} not taken: the gateway reads the pipeline of its tail_sampling processor (and those joined to it by forward connectors)",
            others.join(", ")
        ));
    }
    // What pipelines before sampling or beside it send elsewhere is every span, not the
    // kept ones: the file loads (as the router's loads an exporter beside its
    // load-balancing one); what computes from the spans or prints them is a note, and a
    // backend or pipeline that will get nothing a warning.
    for (name, p) in upstream.iter().chain(&beside) {
        let key = format!("service.pipelines.{name}.exporters");
        let signal = kind_of(name);
        if signal != "traces" {
            let lost: Vec<&str> = names(p, "exporters")
                .into_iter()
                .filter(|e| !matches!(kind_of(e), "debug" | "nop"))
                .collect();
            let shared: Vec<&str> = names(p, "receivers")
                .into_iter()
                .filter(|r| receivers.contains(r))
                .collect();
            let refused = format!(
                "the gateway receives traces only, so {signal} sent to {} are refused",
                shared.join(", ")
            );
            if lost.is_empty() {
                out.notes
                    .push(format!("service.pipelines.{name} not taken: {refused}"));
            } else {
                out.warnings.push(format!(
                    "service.pipelines.{name}: not taken: {refused} and {} get none from it: send them to a Collector of their own",
                    lost.join(", ")
                ));
            }
            continue;
        }
        for e in names(p, "exporters") {
            let connector = defined_as("connectors", e);
            if connector && kind_of(e) == "forward" {
                let others: Vec<&str> = through(e, "receivers")
                    .into_iter()
                    .filter(|n| !in_set(&feeding, n))
                    .collect();
                if !others.is_empty() {
                    out.warnings.push(format!(
                        "{key}: {e} not applied to pipelines {}: pipeline {name} passes every span to them, and the gateway exports kept traces only, so what they do with every span is not done: do it before the routers (the agents, or a Collector beside the routers)",
                        others.join(", ")
                    ));
                }
            } else if connector && connector_computes_metrics(e) {
                out.notes.push(format!(
                    "{key}: {e} not applied: the gateway runs no connectors, so what it computes from every span is not computed: {}",
                    where_to_compute(e)
                ));
            } else if matches!(kind_of(e), "debug" | "nop") {
                out.notes.push(format!(
                    "{key}: {e} not applied: the gateway exports kept traces only"
                ));
            } else {
                let what = if connector { "connector" } else { "exporter" };
                out.warnings.push(format!(
                    "{key}: {e} not applied: pipeline {name} sends every span to this {what}, and the gateway exports kept traces only, so it gets nothing from the gateway: send it every span from before the routers (the agents, or a Collector beside the routers)"
                ));
            }
        }
    }
    // What pipelines after sampling receive from elsewhere (never sampled) is not
    // received: the gateway's receivers feed the policies.
    for (name, p) in &downstream {
        let elsewhere: Vec<&str> = names(p, "receivers")
            .into_iter()
            .filter(|r| {
                !(is_forward(top, r) && through(r, "exporters").iter().all(|n| in_set(&fed, n)))
            })
            .collect();
        if !elsewhere.is_empty() {
            out.warnings.push(format!(
                "service.pipelines.{name}.receivers: {} not taken: pipeline {name} takes the kept spans (through a forward connector) and passes on what those receive unsampled; the gateway receives only to sample, so what is sent to them is not received: send it to its backend some other way",
                elsewhere.join(", ")
            ));
        }
    }
    out.sections.push(receive(top, &receivers, &mut out.notes)?);
    let mut export = Mapping::new();
    for (name, p) in &fed {
        let key = format!("service.pipelines.{name}.exporters");
        for e in names(p, "exporters") {
            if defined_as("connectors", e) {
                match kind_of(e) {
                    // Followed to the pipelines receiving from it (`downstream`).
                    "forward" => {}
                    _ if connector_computes_metrics(e) => out.notes.push(format!(
                        "{key}: {e} not applied: the gateway runs no connectors, so what it computes from kept spans is not computed"
                    )),
                    kind => return Err(err(key, format!("{e} is a connector ({kind}): the gateway sends kept spans to exporters only, and follows forward connectors; give it the exporters the spans finally go to"))),
                }
                continue;
            }
            if export.contains_key(e) {
                continue;
            }
            let Some(block) = top.get("exporters").and_then(|x| x.get(e)) else {
                return Err(err(key, format!("{e} is used by the pipeline and defined under neither exporters: nor connectors: (the Collector refuses this too)")));
            };
            export.insert(e.into(), with_collector_compression(e, block));
        }
    }
    if export.is_empty() {
        // Named at the last pipeline the kept spans reach.
        let (last, _) = fed.last().copied().unwrap_or(("traces", &Value::Null));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn read(yaml: &str) -> Result<Translated, TranslateError> {
        let top: Value = serde_yaml_ng::from_str(yaml).unwrap();
        translate(&top, &["traces".to_owned(), "traces/b".to_owned()])
    }

    fn section<'a>(t: &'a Translated, key: &str) -> Option<&'a Value> {
        t.sections.iter().find(|s| s.key == key).map(|s| &s.value)
    }

    /// Scenario: a sampling tier's config with two exporters in its pipeline, one more
    /// defined and unused, a health check, an authenticator and a logs pipeline.
    /// Guarantees: only the pipeline's exporters are taken, as written; the health check
    /// becomes admin and leaves the extensions; an extension no exporter names is noted,
    /// not read; the other pipeline is noted.
    #[test]
    fn the_pipelines_receiver_and_exporters_are_taken() {
        let t = read("extensions:\n  health_check: {endpoint: 0.0.0.0:13133}\n  bearertokenauth: {token: t}\n  file_storage: {directory: /var/lib/otelcol}\nreceivers:\n  otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlp/tempo: {endpoint: tempo:4317, auth: {authenticator: bearertokenauth}}\n  debug: {verbosity: basic}\n  otlphttp/unused: {endpoint: http://x}\nservice:\n  extensions: [health_check, bearertokenauth]\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/tempo, debug]}\n    logs: {receivers: [otlp], exporters: [debug]}\n").unwrap();
        let export = section(&t, "export").unwrap().as_mapping().unwrap();
        let keys: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["otlp/tempo", "debug"]);
        // Compression left out means the Collector's gzip; written, it is kept.
        assert_eq!(export["otlp/tempo"]["compression"], Value::from("gzip"));
        assert!(export["debug"].get("compression").is_none());
        let copied = read("receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}\nexporters: {otlp_http/a: {endpoint: 'https://a'}, otlp/b: {endpoint: 'b:4317', compression: none}}\nservice: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp_http/a, otlp/b]}}}\n").unwrap();
        let export = section(&copied, "export").unwrap();
        assert_eq!(export["otlp_http/a"]["compression"], Value::from("gzip"));
        assert_eq!(export["otlp/b"]["compression"], Value::from("none"));
        assert_eq!(section(&t, "admin"), Some(&Value::from("0.0.0.0:13133")));
        let ext = section(&t, "extensions").unwrap();
        assert!(ext.get("health_check").is_none() && ext.get("bearertokenauth").is_some());
        assert_eq!(
            section(&t, "receive").unwrap()["grpc"],
            Value::from("0.0.0.0:4317")
        );
        assert!(
            t.notes.iter().any(|n| n.contains("logs not taken")),
            "{:?}",
            t.notes
        );
        // An extension the gateway has no use for is named, not read (nor refused).
        assert!(ext.get("file_storage").is_none());
        assert!(
            t.notes
                .iter()
                .any(|n| n.contains("extensions file_storage not taken")),
            "{:?}",
            t.notes
        );
    }

    /// Scenario: pipelines the gateway cannot serve as they are.
    /// Guarantees: each is refused naming the pipeline's key.
    #[test]
    fn pipelines_through_connectors_or_to_nowhere_are_refused() {
        for (yaml, words) in [
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {routing: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [routing], exporters: [otlp]}}}\n", "routing is a connector (routing)"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {forward/a: {}, forward/b: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces/in: {receivers: [otlp, forward/b], exporters: [forward/a]}, traces: {receivers: [forward/a], exporters: [forward/b, otlp]}}}\n", "a cycle"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {failover: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp, failover]}}}\n", "failover is a connector (failover)"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n", "defined under neither exporters: nor connectors:"),
            // A connector the pipeline names and `connectors:` does not define (a guide's
            // `connectors/forward:` slip): named, not "no otlp receiver".
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [forward/a], exporters: [otlp]}}}\n", "forward/a is used by the pipeline and defined under neither receivers: nor connectors:"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nservice: {pipelines: {traces: {receivers: [otlp]}}}\n", "no exporter"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {otlp/a: {endpoint: a:1}, otlp/b: {endpoint: b:1}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp/a]}, traces/b: {receivers: [otlp], exporters: [otlp/b]}}}\n", "different exporters"),
        ] {
            let e = read(yaml).unwrap_err();
            assert!(e.key.starts_with("service.pipelines.traces"), "{e}");
            assert!(e.message.contains(words), "{e}");
        }
    }

    /// The sampling tier's config of a Collector computing span metrics before sampling:
    /// `traces` takes OTLP, runs `batch` and sends every span to a `spanmetrics` connector
    /// and, through `forward/sampling`, to `traces/sampling` (tail_sampling), whose kept
    /// spans go through `forward/out` to `traces/out` and its exporter; a metrics pipeline
    /// reads the span metrics.
    const FORWARDED: &str = "receivers: {otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}}\nprocessors: {batch: {}, tail_sampling: {policies: [{name: all, type: always_sample}]}}\nconnectors: {spanmetrics: {}, forward/sampling: {}, forward/out: {}}\nexporters: {otlp/tempo: {endpoint: tempo:4317}, prometheus: {endpoint: 0.0.0.0:8889}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [batch], exporters: [spanmetrics, forward/sampling]}\n    traces/sampling: {receivers: [forward/sampling], processors: [tail_sampling], exporters: [forward/out]}\n    traces/out: {receivers: [forward/out], processors: [batch], exporters: [otlp/tempo]}\n    metrics: {receivers: [spanmetrics], exporters: [prometheus]}\n";

    fn read_sampling(yaml: &str) -> Result<Translated, TranslateError> {
        let top: Value = serde_yaml_ng::from_str(yaml).unwrap();
        translate(&top, &["traces/sampling".to_owned()])
    }

    /// Scenario: [`FORWARDED`].
    /// Guarantees: it loads (it was refused: "forward/sampling is a connector"): the
    /// receiver is the one of the pipeline feeding the sampling pipeline, the exporter the
    /// one of the pipeline its kept spans go on to; the `spanmetrics` connector is named
    /// in a note as not applied; only the metrics pipeline is noted as not taken.
    #[test]
    fn forward_connectors_are_followed_both_ways() {
        let t = read_sampling(FORWARDED).unwrap();
        assert_eq!(
            section(&t, "receive").unwrap()["grpc"],
            Value::from("0.0.0.0:4317")
        );
        let export = section(&t, "export").unwrap().as_mapping().unwrap();
        let keys: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["otlp/tempo"]);
        let has = |words: &str| t.notes.iter().any(|n| n.contains(words));
        assert!(
            has("service.pipelines.traces.exporters: spanmetrics not applied"),
            "{:?}",
            t.notes
        );
        assert!(has("service.pipelines: metrics not taken"), "{:?}", t.notes);
        assert!(
            !has("traces/out") && !has("pipelines: traces,"),
            "{:?}",
            t.notes
        );
        // A span-metrics connector after sampling is named too.
        let after = FORWARDED.replace(
            "exporters: [otlp/tempo]}",
            "exporters: [otlp/tempo, spanmetrics/kept]}",
        );
        let after = after.replace(
            "spanmetrics: {}, ",
            "spanmetrics: {}, spanmetrics/kept: {}, ",
        );
        let t = read_sampling(&after).unwrap();
        assert!(
            t.notes.iter().any(|n| n
                .contains("service.pipelines.traces/out.exporters: spanmetrics/kept not applied")),
            "{:?}",
            t.notes
        );
    }

    /// Scenario: [`FORWARDED`] changed so that spans go where the gateway will not send
    /// them: the pipeline before sampling also sends every span to an exporter, or through
    /// a forward connector to another pipeline; the pipeline after it also takes spans
    /// from a receiver; beside them a debug exporter.
    /// Guarantees: the file loads (as the router loads an exporter beside its
    /// load-balancing one) with a warning naming the pipeline's key and what is not sent
    /// or received: the backend's traffic stops, so it is said at warn; the debug exporter
    /// is a note.
    #[test]
    fn forwarded_spans_that_bypass_sampling_are_warned_about() {
        for (from, to, words) in [
            (
                "exporters: [spanmetrics, forward/sampling]",
                "exporters: [spanmetrics, forward/sampling, otlp/tempo]",
                "service.pipelines.traces.exporters: otlp/tempo not applied: pipeline traces sends every span to this exporter",
            ),
            (
                "exporters: [spanmetrics, forward/sampling]",
                "exporters: [spanmetrics, forward/sampling, forward/out]",
                "service.pipelines.traces.exporters: forward/out not applied to pipelines traces/out",
            ),
            (
                "traces/out: {receivers: [forward/out]",
                "traces/out: {receivers: [forward/out, otlp]",
                "service.pipelines.traces/out.receivers: otlp not taken",
            ),
        ] {
            let t = read_sampling(&FORWARDED.replace(from, to)).unwrap();
            // (Every span passed on to `traces/out` is also named at its receivers.)
            assert!(
                t.warnings.iter().any(|w| w.starts_with(words)),
                "{:?}",
                t.warnings
            );
        }
        let debug = FORWARDED
            .replace(
                "exporters: [spanmetrics, forward/sampling]",
                "exporters: [spanmetrics, forward/sampling, debug]",
            )
            .replace(
                "exporters: {otlp/tempo",
                "exporters: {debug: {}, otlp/tempo",
            );
        let t = read_sampling(&debug).unwrap();
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
        assert!(
            t.notes.iter().any(|n| n.contains("debug not applied")),
            "{:?}",
            t.notes
        );
        let export = section(&t, "export").unwrap().as_mapping().unwrap();
        assert!(export.get("debug").is_none(), "{export:?}");
        // With nothing but the forward connectors and span metrics, no warning.
        assert!(read_sampling(FORWARDED).unwrap().warnings.is_empty());
    }

    /// Scenario: a sampling tier's config whose otlp receiver also feeds pipelines beside
    /// the sampling one (the Dynatrace and KubeCon examples' shape): a traces pipeline to a
    /// `span_metrics` connector (the Collector's name since v0.157), one to an archive
    /// exporter, one to `debug`, and a logs pipeline to a logs backend.
    /// Guarantees: it loads; the connector and `debug` are notes; the archive and the logs
    /// backend, which get nothing from the gateway, are warnings naming them (they were a
    /// note, "not taken", and the archive's traffic stopped without a warning).
    #[test]
    fn pipelines_beside_the_sampling_one_are_named_by_what_they_lose() {
        let t = read("receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}\nconnectors: {span_metrics: {}}\nexporters: {otlp/tempo: {endpoint: tempo:4317}, otlp/archive: {endpoint: archive:4317}, otlphttp/loki: {endpoint: 'http://loki'}, debug: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/tempo]}\n    traces/metrics: {receivers: [otlp], exporters: [span_metrics]}\n    traces/raw: {receivers: [otlp], exporters: [otlp/archive, debug]}\n    logs: {receivers: [otlp], exporters: [otlphttp/loki]}\n    metrics: {receivers: [span_metrics], exporters: [debug]}\n").unwrap();
        let has = |v: &[String], words: &str| v.iter().any(|n| n.starts_with(words));
        assert!(
            has(&t.notes, "service.pipelines.traces/metrics.exporters: span_metrics not applied: the gateway runs no connectors"),
            "{:?}",
            t.notes
        );
        assert!(
            has(
                &t.notes,
                "service.pipelines.traces/raw.exporters: debug not applied"
            ),
            "{:?}",
            t.notes
        );
        assert!(
            has(&t.warnings, "service.pipelines.traces/raw.exporters: otlp/archive not applied: pipeline traces/raw sends every span to this exporter"),
            "{:?}",
            t.warnings
        );
        assert!(
            has(&t.warnings, "service.pipelines.logs: not taken: the gateway receives traces only, so logs sent to otlp are refused and otlphttp/loki get none from it"),
            "{:?}",
            t.warnings
        );
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        assert!(
            has(&t.notes, "service.pipelines: metrics not taken"),
            "{:?}",
            t.notes
        );
    }

    /// Scenario: the tail_sampling processor run twice, in `traces/s1` and, through a
    /// forward connector, again in `traces/s2`, which exports (a shape the Collector
    /// accepts, an instance per pipeline).
    /// Guarantees: it loads with the exporter of `traces/s2` (it was refused as two
    /// pipelines "with different exporters"; the warning about deciding twice comes with
    /// the policies).
    #[test]
    fn the_processor_again_after_itself_is_one_chain() {
        let top: Value = serde_yaml_ng::from_str("receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}\nconnectors: {forward/k: {}}\nexporters: {otlp/tempo: {endpoint: tempo:4317}}\nservice:\n  pipelines:\n    traces/s1: {receivers: [otlp], processors: [tail_sampling], exporters: [forward/k]}\n    traces/s2: {receivers: [forward/k], processors: [tail_sampling], exporters: [otlp/tempo]}\n").unwrap();
        let t = translate(&top, &["traces/s1".to_owned(), "traces/s2".to_owned()]).unwrap();
        let export = section(&t, "export").unwrap().as_mapping().unwrap();
        let keys: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
        assert_eq!(keys, ["otlp/tempo"]);
    }
}
