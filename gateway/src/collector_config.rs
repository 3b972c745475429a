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
use tailgate_core::collector::{admin, err, kind_of, metrics, names, other_pipelines, receive};

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

/// Reads `top`, a whole Collector config, for the gateway, from the traces `pipelines`
/// that run its `tail_sampling` processor.
pub fn translate(top: &Value, pipelines: &[String]) -> Result<Translated, TranslateError> {
    let mut out = Translated::default();
    let defined = top.get("service").and_then(|s| s.get("pipelines"));
    let chosen: Vec<(&str, &Value)> = pipelines
        .iter()
        .filter_map(|p| Some((p.as_str(), defined?.get(p.as_str())?)))
        .collect();
    // Tailgate sends every kept trace to every exporter it has: pipelines sharing the
    // processor with different exporters would send each one's traces to the other's
    // backends (another tenant's, say).
    if let [(first, a), rest @ ..] = &chosen[..] {
        fn set(p: &Value) -> Vec<&str> {
            let mut e = names(p, "exporters");
            e.sort_unstable();
            e
        }
        if let Some((other, _)) = rest.iter().find(|(_, b)| set(b) != set(a)) {
            return Err(err(
                format!("service.pipelines.{other}.exporters"),
                format!("pipelines {first} and {other} run the same tail_sampling processor with different exporters: the gateway sends every kept trace to every exporter, so each pipeline's traces would reach the other's backends; give the gateway a config with one such pipeline (or the same exporters in each)"),
            ));
        }
    }
    let names_of = |list: &[String]| -> Vec<(&str, &Value)> {
        list.iter()
            .filter_map(|p| {
                let mut all = defined?.as_mapping()?.iter();
                let (name, block) = all.find(|(k, _)| k.as_str() == Some(p.as_str()))?;
                Some((name.as_str()?, block))
            })
            .collect()
    };
    let sampling: Vec<&str> = chosen.iter().map(|(n, _)| *n).collect();
    let (up, down) = forwarded(top, &sampling);
    let (upstream, downstream) = (names_of(&up), names_of(&down));
    let feeding: Vec<(&str, &Value)> = chosen.iter().copied().chain(upstream.clone()).collect();
    let fed: Vec<(&str, &Value)> = chosen.iter().copied().chain(downstream.clone()).collect();
    let taken: Vec<(&str, &Value)> = feeding.iter().chain(&downstream).copied().collect();
    let others = other_pipelines(top, &taken);
    if !others.is_empty() {
        out.notes.push(format!(
            "service.pipelines: {} not taken: the gateway reads the pipeline of its tail_sampling processor (and those joined to it by forward connectors)",
            others.join(", ")
        ));
    }
    fn connector<'a>(top: &Value, id: &'a str) -> Option<&'a str> {
        top.get("connectors")
            .and_then(|c| c.get(id))
            .is_some()
            .then(|| kind_of(id))
    }
    let in_set = |set: &[(&str, &Value)], name: &str| set.iter().any(|(n, _)| *n == name);
    // Pipelines whose spans go on to pipelines through `id` (a forward connector), or
    // come to them through it.
    let through = |id: &str, key: &str| -> Vec<&str> {
        defined
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter_map(|(n, p)| names(p, key).contains(&id).then(|| n.as_str()).flatten())
            .collect()
    };
    let mut receivers = Vec::new();
    for (name, p) in &feeding {
        for r in names(p, "receivers") {
            match connector(top, r) {
                // Followed to the pipelines sending to it (`upstream`).
                Some("forward") => {}
                Some(kind) => {
                    return Err(err(
                        format!("service.pipelines.{name}.receivers"),
                        format!("{r} is a connector ({kind}): the tail_sampling pipeline takes spans from another pipeline through it; the gateway follows forward connectors only: give the gateway a config whose sampling pipeline takes its spans from the otlp receiver (or through forward connectors), or write its own (docs/configuration.md)"),
                    ))
                }
                None if !receivers.contains(&r) => receivers.push(r),
                None => {}
            }
        }
    }
    // What pipelines before sampling send elsewhere is every span, not the kept ones.
    for (name, p) in &upstream {
        for e in names(p, "exporters") {
            let key = format!("service.pipelines.{name}.exporters");
            match connector(top, e) {
                Some("forward") => {
                    if let Some(other) = through(e, "receivers").into_iter().find(|n| !in_set(&feeding, n)) {
                        return Err(err(key, format!("pipeline {name} passes every span on to pipeline {other} (through {e}) as well as to the tail_sampling pipeline: the gateway exports kept traces only; give the gateway a config without it, and send those spans on from before the routers")));
                    }
                }
                Some(_) if crate::policy::collector::computes_metrics(e) => out.notes.push(format!(
                    "{key}: {e} not applied: the gateway runs no connectors, so what it computes from every span before sampling is not computed: compute it before the routers (a Collector in the agents)"
                )),
                _ => {
                    return Err(err(key, format!("pipeline {name} sends every span to {e} as well as to the tail_sampling pipeline: the gateway exports kept traces only; give the gateway a config without it, and send every span there from before the routers (the agents, or a Collector beside the routers)")))
                }
            }
        }
    }
    // What pipelines after sampling receive from elsewhere was never sampled.
    for (name, p) in &downstream {
        for r in names(p, "receivers") {
            let joined =
                is_forward(top, r) && through(r, "exporters").iter().all(|n| in_set(&fed, n));
            if !joined {
                return Err(err(
                    format!("service.pipelines.{name}.receivers"),
                    format!("pipeline {name} takes the kept spans (through a forward connector) and spans from {r} too: the gateway exports kept traces only; give the gateway a config where that pipeline takes the kept spans alone"),
                ));
            }
        }
    }
    out.sections.push(receive(top, &receivers, &mut out.notes)?);
    let mut export = Mapping::new();
    for (name, p) in &fed {
        let pipeline_key = format!("service.pipelines.{name}");
        for e in names(p, "exporters") {
            match connector(top, e) {
            // Followed to the pipelines receiving from it (`downstream`).
            Some("forward") => continue,
            Some(_) if crate::policy::collector::computes_metrics(e) => {
                out.notes.push(format!(
                    "{pipeline_key}.exporters: {e} not applied: the gateway runs no connectors, so what it computes from kept spans is not computed"
                ));
                continue;
            }
            Some(kind) => {
                return Err(err(
                    format!("{pipeline_key}.exporters"),
                    format!("{e} is a connector ({kind}): the gateway sends kept spans to exporters only, and follows forward connectors; give it the exporters the spans finally go to"),
                ))
            }
            None if export.contains_key(e) => continue,
            None => {}
        }
            let Some(block) = top.get("exporters").and_then(|x| x.get(e)) else {
                return Err(err(
                format!("{pipeline_key}.exporters"),
                format!("{e} is used by the pipeline and not defined under exporters: (the Collector refuses this too)"),
            ));
            };
            export.insert(e.into(), with_collector_compression(e, block));
        }
    }
    let pipeline_key = format!(
        "service.pipelines.{}",
        pipelines.first().map_or("traces", String::as_str)
    );
    if export.is_empty() {
        return Err(err(
            format!("{pipeline_key}.exporters"),
            "the tail_sampling pipeline has no exporter: kept spans would go nowhere",
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
                        "receivers" | "processors" | "exporters" | "extensions" | "service"
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if !unread.is_empty() {
        out.notes.push(format!(
            "{} not read: the gateway reads the tail_sampling pipeline's receiver and exporters (following forward connectors between traces pipelines)",
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
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {failover: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp, failover]}}}\n", "failover is a connector (failover)"),
            ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n", "not defined under exporters"),
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

    /// Scenario: [`FORWARDED`] changed so that spans the gateway would not export as the
    /// Collector does go somewhere: the pipeline before sampling also sends every span to
    /// an exporter, or through a forward connector to another pipeline; the pipeline after
    /// it also takes spans from a receiver.
    /// Guarantees: each is refused naming the pipeline's key and what goes where (loading
    /// it would stop that backend's traffic, or send it unsampled spans).
    #[test]
    fn forwarded_spans_that_bypass_sampling_are_refused() {
        for (from, to, key, words) in [
            (
                "exporters: [spanmetrics, forward/sampling]",
                "exporters: [spanmetrics, forward/sampling, otlp/tempo]",
                "service.pipelines.traces.exporters",
                "sends every span to otlp/tempo as well",
            ),
            (
                "exporters: [spanmetrics, forward/sampling]",
                "exporters: [spanmetrics, forward/sampling, forward/out]",
                "service.pipelines.traces.exporters",
                "passes every span on to pipeline traces/out",
            ),
            (
                "traces/out: {receivers: [forward/out]",
                "traces/out: {receivers: [forward/out, otlp]",
                "service.pipelines.traces/out.receivers",
                "spans from otlp too",
            ),
        ] {
            let e = read_sampling(&FORWARDED.replace(from, to)).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            assert!(e.message.contains(words), "{e}");
        }
    }
}
