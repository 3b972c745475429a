#![allow(clippy::unwrap_used)]
use super::*;

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

/// A sampling tier computing span metrics before sampling: `traces` takes OTLP and
/// passes every span to `span_metrics` and, through `forward/sampling`, to
/// `traces/sampling`, whose spans go through `forward/out` to `traces/out`.
const CHAIN: &str = "receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {batch: {}, tail_sampling: {policies: []}}\nconnectors: {span_metrics: {}, forward/sampling: {}, forward/out: {}}\nexporters: {otlp/tempo: {endpoint: 'tempo:4317'}, debug: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [batch], exporters: [span_metrics, forward/sampling]}\n    traces/sampling: {receivers: [forward/sampling], processors: [tail_sampling], exporters: [forward/out]}\n    traces/out: {receivers: [forward/out], exporters: [otlp/tempo]}\n    metrics: {receivers: [span_metrics], exporters: [debug]}\n";

/// The gateway's view of [`CHAIN`] (or a variant of it).
fn gateway_exits(top: &Value) -> Translated {
    let g = Graph::new(top);
    let mut out = Translated::default();
    let feeding = ["traces/sampling", "traces"];
    g.side_exits(
        &Served {
            binary: "gateway",
            feeding: &feeding,
            taken: &["traces/sampling"],
            after: &["traces/out"],
            receivers: &["otlp"],
            exporters: &["otlp/tempo"],
            every_span: false,
            sends: "the gateway exports kept traces only",
            reads: "the gateway reads the pipeline of its tail_sampling processor",
        },
        &mut out,
    );
    out
}

/// Scenario: [`CHAIN`].
/// Guarantees: the pipelines before and after the sampling one are found through the
/// forward connectors (not the metrics pipeline, joined by `span_metrics`); the receiver
/// taken is `otlp`; the file passes the Collector's checks; the span-metrics connector is
/// the one note, with where to compute it, and nothing is a warning.
#[test]
fn forward_connectors_join_pipelines_both_ways() {
    let top = yaml(CHAIN);
    let g = Graph::new(&top);
    assert_eq!(g.upstream(&["traces/sampling"]), ["traces"]);
    assert_eq!(g.downstream(&["traces/sampling"]), ["traces/out"]);
    assert_eq!(g.downstream(&["traces"]), ["traces/sampling", "traces/out"]);
    assert!(g.upstream(&["traces"]).is_empty());
    g.check().unwrap();
    assert_eq!(
        g.receivers_of(&["traces/sampling", "traces"]).unwrap(),
        ["otlp"]
    );
    let out = gateway_exits(&top);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    // The metrics pipeline of the connector, fed by it alone, is a note too.
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
    assert!(
        out.notes[1].starts_with("service.pipelines: metrics not taken"),
        "{:?}",
        out.notes
    );
    assert!(
        out.notes[0].starts_with(
            "service.pipelines.traces.exporters: span_metrics not applied: Tailgate runs no connectors"
        ) && out.notes[0].contains("before the routers"),
        "{:?}",
        out.notes
    );
}

/// Scenario: what stops the Collector: an exporter or receiver no section defines (in any
/// pipeline, read or not), a cycle through forward connectors, a pipeline feeding itself,
/// a connector used as an exporter only, a forward connector from traces to logs, a cycle
/// between logs pipelines;
/// and a `routing` connector in front of the served pipeline.
/// Guarantees: each is refused naming the pipeline's list; the routing connector is
/// refused when the receivers are read (it chooses which spans come).
#[test]
fn what_the_collector_refuses_is_refused() {
    for (from, to, key, words) in [
        (
            "exporters: [debug]}",
            "exporters: [debug, otlp/nowhere]}",
            "service.pipelines.metrics.exporters",
            "otlp/nowhere is used by the pipeline and defined under neither exporters: nor connectors:",
        ),
        (
            "traces/out: {receivers: [forward/out]",
            "traces/out: {receivers: [forward/out, jaeger]",
            "service.pipelines.traces/out.receivers",
            "jaeger is used by the pipeline and defined under neither receivers:",
        ),
        (
            "exporters: [otlp/tempo]}",
            "exporters: [otlp/tempo, forward/sampling]}",
            "service.pipelines.traces/sampling.receivers",
            "a cycle",
        ),
        (
            "traces/out: {receivers: [forward/out]",
            "traces/out: {receivers: [forward/out, forward/loop], exporters: [forward/loop]}\n    traces/unused: {receivers: [forward/out]",
            "service.pipelines.traces/out.receivers",
            "a cycle",
        ),
        (
            "metrics: {receivers: [span_metrics], exporters: [debug]}",
            "metrics: {receivers: [span_metrics], exporters: [debug]}\n    logs/a: {receivers: [otlp, forward/loop], exporters: [forward/loop]}",
            "service.pipelines.logs/a.receivers",
            "a cycle",
        ),
        (
            "traces/out: {receivers: [forward/out]",
            "logs/out: {receivers: [forward/out]",
            "service.pipelines.traces/sampling.exporters",
            "connector forward/out passes traces on to pipelines of the same signal, and none of them is at its other end",
        ),
        // A removed exporter type, even unused (a helper's corpus: an agent config with
        // `logging:` loaded).
        (
            "debug: {}}",
            "debug: {}, logging: {loglevel: debug}}",
            "exporters.logging",
            "no logging exporter since v0.111",
        ),
        // PipelineConfig.Validate's three (a helper's corpus of real configs: an
        // OpenShift README's metrics pipeline with `receivers: []` loaded silently).
        (
            "metrics: {receivers: [span_metrics], exporters: [debug]}",
            "metrics: {receivers: [span_metrics], exporters: [debug]}\n    metrics/none: {receivers: [], exporters: [debug]}",
            "service.pipelines.metrics/none.receivers",
            "at least one receiver",
        ),
        (
            "metrics: {receivers: [span_metrics], exporters: [debug]}",
            "metrics: {receivers: [span_metrics], exporters: [debug]}\n    logs: {receivers: [otlp]}",
            "service.pipelines.logs.exporters",
            "at least one exporter",
        ),
        (
            "processors: [batch], exporters: [span_metrics",
            "processors: [batch, tail_sampling, batch], exporters: [span_metrics",
            "service.pipelines.traces.processors[2]",
            "references processor \"batch\" multiple times",
        ),
        (
            "metrics: {receivers: [span_metrics]",
            "metrics: {receivers: [otlp]",
            "service.pipelines.traces.exporters",
            "connector span_metrics is used as an exporter in pipeline traces and as a receiver in none",
        ),
    ] {
        let text = CHAIN
            .replace(from, to)
            .replace("forward/out: {}}", "forward/out: {}, forward/loop: {}}");
        let top = yaml(&text);
        let e = Graph::new(&top).check().unwrap_err();
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(words), "{e}");
    }
    let routed = yaml(
        &CHAIN
            .replace("[forward/sampling]", "[routing]")
            .replace("span_metrics: {},", "span_metrics: {}, routing: {},"),
    );
    let e = Graph::new(&routed)
        .receivers_of(&["traces/sampling"])
        .unwrap_err();
    assert_eq!(e.key, "service.pipelines.traces/sampling.receivers");
    assert!(
        e.message.contains("routing is a connector (routing)"),
        "{e}"
    );
}

/// Scenario: [`CHAIN`] with pipelines beside the served ones on its `otlp` receiver: an
/// archive of every span, one printing them, one with a `tail_sampling/b` of its own, one
/// sending every span to the gateway's own exporter, logs to Loki, metrics to `debug`;
/// and the pipeline after sampling also taking a receiver of its own, which another
/// pipeline sends to the archive.
/// Guarantees: each is named by what it loses: the archive gets nothing (warning), the
/// gateway's exporter fewer spans (warning), the other sampling pipeline is told to run a
/// gateway with `--processor b` (warning), logs are refused and Loki gets none (warning),
/// `debug` and the metrics to `debug` are notes; the receiver after sampling is a warning,
/// and so is a pipeline on that receiver alone whose archive gets nothing now.
#[test]
fn pipelines_beside_are_named_by_what_they_lose() {
    let text = CHAIN
        .replace(
            "exporters: {otlp/tempo: {endpoint: 'tempo:4317'}, debug: {}}",
            "exporters: {otlp/tempo: {endpoint: 'tempo:4317'}, debug: {}, otlp/archive: {endpoint: 'a:4317'}, otlphttp/loki: {endpoint: 'http://loki'}}",
        )
        .replace("processors: {batch: {}, tail_sampling: {policies: []}}", "processors: {batch: {}, tail_sampling: {policies: []}, tail_sampling/b: {policies: []}}")
        .replace("receivers: {otlp: {protocols: {grpc: {}}}}", "receivers: {otlp: {protocols: {grpc: {}}}, otlp/side: {protocols: {http: {}}}}")
        .replace("traces/out: {receivers: [forward/out]", "traces/out: {receivers: [forward/out, otlp/side]")
        + "    traces/internal: {receivers: [otlp/side], exporters: [otlp/archive]}\n    traces/archive: {receivers: [otlp], exporters: [otlp/archive, debug]}\n    traces/b: {receivers: [otlp], processors: [tail_sampling/b], exporters: [otlp/archive]}\n    traces/raw: {receivers: [otlp], exporters: [otlp/tempo]}\n    logs: {receivers: [otlp], exporters: [otlphttp/loki]}\n    metrics/sdk: {receivers: [otlp], exporters: [debug]}\n";
    let top = yaml(&text);
    Graph::new(&top).check().unwrap();
    let out = gateway_exits(&top);
    let warned = |words: &str| out.warnings.iter().any(|w| w.starts_with(words));
    let noted = |words: &str| out.notes.iter().any(|w| w.starts_with(words));
    for words in [
        "service.pipelines.traces/archive.exporters: otlp/archive not applied: pipeline traces/archive sends every span to this exporter, and the gateway exports kept traces only, so it gets nothing from the gateway",
        "service.pipelines.traces/b.exporters: otlp/archive not applied: pipeline traces/b runs its own tail_sampling/b",
        "service.pipelines.traces/raw.exporters: otlp/tempo gets fewer spans",
        "service.pipelines.logs: not taken: the gateway receives traces only, so the logs sent to otlp are refused, and none of them reaches otlphttp/loki",
        "service.pipelines.traces/out.receivers: otlp/side not taken",
        "service.pipelines.traces/internal: not taken: the gateway reads the pipeline of its tail_sampling processor, so what otlp/side receive is not taken, and none of it reaches otlp/archive",
    ] {
        assert!(warned(words), "{words}\n{:?}", out.warnings);
    }
    assert_eq!(out.warnings.len(), 6, "{:?}", out.warnings);
    assert!(
        out.warnings[1].contains("--processor b"),
        "{:?}",
        out.warnings
    );
    for words in [
        "service.pipelines.traces/archive.exporters: debug not applied",
        "service.pipelines.metrics/sdk: not taken: the gateway receives traces only",
    ] {
        assert!(noted(words), "{words}\n{:?}", out.notes);
    }
}

/// Scenario: a load-balancing tier as the router serves it: `traces` takes OTLP and
/// passes every span through `forward/lb` to `traces/lb` (the `load_balancing`
/// exporter), and also to an archive exporter and a `service_graph` connector.
/// Guarantees: the router's exporter is not named (it sends every span there); the
/// archive is a warning (it gets nothing from the router); the service graph, whose
/// metrics went to the archive, a warning too (a config audit: a backend losing them
/// deserves one), whose advice is a tier fed by trace id, not the agents; with its
/// metrics going to `debug` only, a note.
#[test]
fn the_routers_view_names_what_it_does_not_send() {
    let top = yaml("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {forward/lb: {}, service_graph: {}}\nexporters: {load_balancing: {}, otlp/archive: {endpoint: 'a:4317'}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [forward/lb, otlp/archive, service_graph]}\n    traces/lb: {receivers: [forward/lb], exporters: [load_balancing]}\n    metrics: {receivers: [service_graph], exporters: [otlp/archive]}\n");
    let g = Graph::new(&top);
    g.check().unwrap();
    let feeding: Vec<&str> = std::iter::once("traces/lb")
        .chain(g.upstream(&["traces/lb"]))
        .collect();
    assert_eq!(feeding, ["traces/lb", "traces"]);
    let mut out = Translated::default();
    g.side_exits(
        &Served {
            binary: "router",
            feeding: &feeding,
            taken: &[],
            after: &[],
            receivers: &["otlp"],
            exporters: &["load_balancing"],
            every_span: true,
            sends: "the router sends every span to its gateways only",
            reads: "the router reads the traces pipeline of the load_balancing exporter",
        },
        &mut out,
    );
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(
        out.warnings[0].starts_with("service.pipelines.traces.exporters: otlp/archive not applied"),
        "{:?}",
        out.warnings
    );
    assert!(
        out.warnings[1].contains("service_graph not applied")
            && out.warnings[1].contains("by trace id"),
        "{:?}",
        out.warnings
    );
    assert_eq!(out.notes.len(), 1, "{:?}", out.notes);
    assert!(
        out.notes[0].starts_with("service.pipelines: metrics not taken"),
        "{:?}",
        out.notes
    );
    // Its metrics to `debug` only: a note.
    let to_debug = yaml("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {forward/lb: {}, service_graph: {}}\nexporters: {load_balancing: {}, debug: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [forward/lb, service_graph]}\n    traces/lb: {receivers: [forward/lb], exporters: [load_balancing]}\n    metrics: {receivers: [service_graph], exporters: [debug]}\n");
    let g = Graph::new(&to_debug);
    let mut out = Translated::default();
    g.side_exits(
        &Served {
            binary: "router",
            feeding: &feeding,
            taken: &[],
            after: &[],
            receivers: &["otlp"],
            exporters: &["load_balancing"],
            every_span: true,
            sends: "the router sends every span to its gateways only",
            reads: "the router reads the traces pipeline of the load_balancing exporter",
        },
        &mut out,
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("service_graph not applied")),
        "{:?}",
        out.notes
    );
}

/// Scenario: Datadog's way of computing APM stats before sampling: `traces` passes every
/// span to `datadog/connector`, which both passes them on to `traces/sample` (the sampling
/// pipeline) and computes stats for a metrics pipeline.
/// Guarantees: the connector joins the two traces pipelines as a forward one does (the
/// receiver is `traces`' `otlp`); the stats it computes from every span, which went to
/// a backend, are a warning.
#[test]
fn the_datadog_connector_passes_spans_on() {
    let top = yaml("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {datadog/connector: {}}\nexporters: {otlp/dd: {endpoint: 'dd:4317'}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], exporters: [datadog/connector]}\n    traces/sample: {receivers: [datadog/connector], exporters: [otlp/dd]}\n    metrics: {receivers: [datadog/connector], exporters: [otlp/dd]}\n");
    let g = Graph::new(&top);
    g.check().unwrap();
    assert_eq!(g.upstream(&["traces/sample"]), ["traces"]);
    assert_eq!(
        g.receivers_of(&["traces/sample", "traces"]).unwrap(),
        ["otlp"]
    );
    let mut out = Translated::default();
    g.side_exits(
        &Served {
            binary: "gateway",
            feeding: &["traces/sample", "traces"],
            taken: &["traces/sample"],
            after: &[],
            receivers: &["otlp"],
            exporters: &["otlp/dd"],
            every_span: false,
            sends: "the gateway exports kept traces only",
            reads: "the gateway reads the pipeline of its tail_sampling processor",
        },
        &mut out,
    );
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(
        out.warnings[0].starts_with(
            "service.pipelines.traces.exporters: datadog/connector passes the spans on, and what it computes from every span is not computed"
        ),
        "{:?}",
        out.warnings
    );
}

/// Scenario: beside [`CHAIN`], a Zipkin pipeline on a receiver of its own passing its spans
/// through a forward connector to a pipeline with a backend, and a second sampling
/// pipeline (`tail_sampling/b`) on a receiver of its own.
/// Guarantees: both are warnings (a review found the first a note, its backend reached
/// through the connector; the second was told to keep a Collector): the first names the
/// backend it reached, the second says to run a gateway with `--processor b`.
#[test]
fn pipelines_on_their_own_receivers_are_named_by_their_backends() {
    let text = CHAIN
        .replace(
            "receivers: {otlp: {protocols: {grpc: {}}}}",
            "receivers: {otlp: {protocols: {grpc: {}}}, zipkin: {}, otlp/b: {protocols: {grpc: {endpoint: 0.0.0.0:5317}}}}",
        )
        .replace("forward/out: {}}", "forward/out: {}, forward/z: {}}")
        .replace(
            "exporters: {otlp/tempo: {endpoint: 'tempo:4317'}, debug: {}}",
            "exporters: {otlp/tempo: {endpoint: 'tempo:4317'}, debug: {}, otlp/zipkin: {endpoint: 'z:4317'}, otlp/b: {endpoint: 'b:4317'}}",
        )
        .replace("tail_sampling: {policies: []}}", "tail_sampling: {policies: []}, tail_sampling/b: {policies: []}}")
        + "    traces/z: {receivers: [zipkin], exporters: [forward/z]}\n    traces/z2: {receivers: [forward/z], exporters: [otlp/zipkin]}\n    traces/b: {receivers: [otlp/b], processors: [tail_sampling/b], exporters: [otlp/b]}\n";
    let top = yaml(&text);
    Graph::new(&top).check().unwrap();
    let out = gateway_exits(&top);
    let warned = |words: &str| out.warnings.iter().find(|w| w.starts_with(words));
    let z = warned("service.pipelines.traces/z: not taken")
        .unwrap_or_else(|| panic!("{:?}", out.warnings));
    assert!(
        z.contains("what zipkin receive is not taken, and none of it reaches otlp/zipkin"),
        "{z}"
    );
    let b = warned("service.pipelines.traces/b: not taken")
        .unwrap_or_else(|| panic!("{:?}", out.warnings));
    assert!(b.contains("--processor b"), "{b}");
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
}

/// Scenario: the connector names configuration.md lists as computing telemetry, by the
/// Collector's names since v0.157 and before, and vendors'; and connectors that pass
/// spans on or choose where they go.
/// Guarantees: the first are read as computing (a note, not run); the others are not.
#[test]
fn the_documented_connectors_compute_metrics() {
    use crate::collector::connector_computes_metrics;
    for id in [
        "span_metrics",
        "spanmetrics",
        "signozspanmetrics/delta",
        "service_graph",
        "servicegraph",
        "signal_to_metrics",
        "count",
        "sum",
        "exceptions",
        "datadog/connector",
        "elasticapm",
        "grafanacloud",
        "grafana_cloud",
    ] {
        assert!(connector_computes_metrics(id), "{id}");
    }
    for id in ["forward", "routing", "failover", "round_robin", "otlp"] {
        assert!(!connector_computes_metrics(id), "{id}");
    }
}
