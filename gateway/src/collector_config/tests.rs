#![allow(clippy::unwrap_used)]
use super::*;

fn read(yaml: &str) -> Result<Translated, TranslateError> {
    let top: Value = serde_yaml_ng::from_str(yaml).unwrap();
    translate(&top, &["traces".to_owned(), "traces/b".to_owned()])
}

fn section<'a>(t: &'a Translated, key: &str) -> Option<&'a Value> {
    t.sections.iter().find(|s| s.key == key).map(|s| &s.value)
}

/// The config of [`the_pipelines_receiver_and_exporters_are_taken`].
const PIPELINES_AND_EXPORTERS: &str = "extensions:\n  health_check: {endpoint: 0.0.0.0:13133}\n  bearertokenauth: {token: t}\n  file_storage: {directory: /var/lib/otelcol}\nreceivers:\n  otlp: {protocols: {grpc: {endpoint: 0.0.0.0:4317}}}\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlp/tempo: {endpoint: tempo:4317, auth: {authenticator: bearertokenauth}}\n  debug: {verbosity: basic}\n  otlphttp/unused: {endpoint: http://x}\nservice:\n  extensions: [health_check, bearertokenauth]\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/tempo, debug]}\n    logs: {receivers: [otlp], exporters: [debug]}\n";

/// Scenario: a sampling tier's config with two exporters in its pipeline, one more
/// defined and unused, a health check, an authenticator and a logs pipeline.
/// Guarantees: only the pipeline's exporters are taken, as written; the health check
/// becomes admin and leaves the extensions; an extension no exporter names is noted,
/// not read; the other pipeline is noted.
#[test]
fn the_pipelines_receiver_and_exporters_are_taken() {
    let t = read(PIPELINES_AND_EXPORTERS).unwrap();
    let export = section(&t, "export").unwrap().as_mapping().unwrap();
    let keys: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
    assert_eq!(keys, ["otlp/tempo", "debug"]);
    // Compression left out means the Collector's gzip; written, it is kept.
    assert_eq!(export["otlp/tempo"]["compression"], Value::from("gzip"));
    assert!(export["debug"].get("compression").is_none());
    // `debug: {}` (verbosity left out: basic, a line of counts there) is warned of, as
    // it writes every kept span here; with a verbosity, the not-applied warning says so.
    assert!(!t.warnings.iter().any(|w| w.starts_with("exporters.debug:")));
    let plain_debug =
        read(&PIPELINES_AND_EXPORTERS.replace("debug: {verbosity: basic}", "debug: {}")).unwrap();
    assert!(
        plain_debug.warnings.iter().any(|w| w.starts_with(
            "exporters.debug: the Collector's debug exporter logs a line of counts per batch"
        )),
        "{:?}",
        plain_debug.warnings
    );
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
        t.notes
            .iter()
            .any(|n| n.contains("service.pipelines.logs: not taken")),
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
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {routing: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces/in: {receivers: [otlp], exporters: [routing]}, traces: {receivers: [routing], exporters: [otlp]}}}\n", "routing is a connector (routing)"),
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {forward/a: {}, forward/b: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces/in: {receivers: [otlp, forward/b], exporters: [forward/a]}, traces: {receivers: [forward/a], exporters: [forward/b, otlp]}}}\n", "a cycle"),
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nconnectors: {failover: {}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp, failover]}, traces/f: {receivers: [failover], exporters: [otlp]}}}\n", "failover is a connector (failover)"),
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [otlp]}}}\n", "defined under neither exporters: nor connectors:"),
        // A connector the pipeline names and `connectors:` does not define (a guide's
        // `connectors/forward:` slip): named, not "no otlp receiver".
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {otlp: {endpoint: a:1}}\nservice: {pipelines: {traces: {receivers: [forward/a], exporters: [otlp]}}}\n", "forward/a is used by the pipeline and defined under neither receivers: nor connectors:"),
        ("receivers: {otlp: {protocols: {grpc: {}}}}\nservice: {pipelines: {traces: {receivers: [otlp]}}}\n", "at least one exporter"),
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
/// as not applied in a warning (its metrics went to a backend, `prometheus`, which gets
/// none now); only the metrics pipeline is noted as not taken.
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
        t.warnings
            .iter()
            .any(|w| w.contains("service.pipelines.traces.exporters: spanmetrics not applied")),
        "{:?}",
        t.warnings
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
    let after = after
        .replace(
            "spanmetrics: {}, ",
            "spanmetrics: {}, spanmetrics/kept: {}, ",
        )
        .replace(
            "receivers: [spanmetrics]",
            "receivers: [spanmetrics, spanmetrics/kept]",
        );
    let t = read_sampling(&after).unwrap();
    assert!(
        t.warnings
            .iter()
            .any(|n| n
                .contains("service.pipelines.traces/out.exporters: spanmetrics/kept not applied")),
        "{:?}",
        t.warnings
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
            "service.pipelines.traces.exporters: otlp/tempo gets fewer spans: pipeline traces sends it every span",
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
    // Only the span metrics, whose backend gets none now, are warned of.
    let span_metrics_only =
        |t: &Translated| t.warnings.len() == 1 && t.warnings[0].contains("spanmetrics not applied");
    let t = read_sampling(&debug).unwrap();
    assert!(span_metrics_only(&t), "{:?}", t.warnings);
    assert!(
        t.notes.iter().any(|n| n.contains("debug not applied")),
        "{:?}",
        t.notes
    );
    let export = section(&t, "export").unwrap().as_mapping().unwrap();
    assert!(export.get("debug").is_none(), "{export:?}");
    // With nothing but the forward connectors and span metrics, no other warning.
    assert!(span_metrics_only(&read_sampling(FORWARDED).unwrap()));
}

/// Scenario: a sampling tier's config whose otlp receiver also feeds pipelines beside
/// the sampling one (the Dynatrace and Operator examples' shape): a traces pipeline to a
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
        has(&t.notes, "service.pipelines.traces/metrics.exporters: span_metrics not applied: Tailgate runs no connectors"),
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
        has(&t.warnings, "service.pipelines.logs: not taken: the gateway receives traces only, so the logs sent to otlp are refused, and none of them reaches otlphttp/loki"),
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

/// Scenario: two tenants' sampling pipelines, each from a receiver of its own and with
/// its own exporter, the second also taking the first's kept spans through a forward
/// connector, written in either order; then the same without the second's own receiver.
/// Guarantees: refused as pipelines with different exporters whichever comes first (the
/// second counted as the first's chain once let tenant 2's traces reach tenant 1's
/// backend, and which receiver was taken depended on the order); without its own
/// receiver it is the first's chain and loads.
#[test]
fn a_chained_sampling_pipeline_with_a_receiver_of_its_own_is_a_tenant() {
    let s1 = "    traces/s1: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/a, forward/x]}\n";
    let s2 = "    traces/s2: {receivers: [otlp/t2, forward/x], processors: [tail_sampling], exporters: [otlp/b]}\n";
    let head = "receivers: {otlp: {protocols: {grpc: {}}}, otlp/t2: {protocols: {grpc: {endpoint: 0.0.0.0:5317}}}}\nprocessors: {tail_sampling: {policies: []}}\nconnectors: {forward/x: {}}\nexporters: {otlp/a: {endpoint: 'a:4317'}, otlp/b: {endpoint: 'b:4317'}}\nservice:\n  pipelines:\n";
    let run = |text: &str| {
        let top: Value = serde_yaml_ng::from_str(text).unwrap();
        translate(&top, &["traces/s1".to_owned(), "traces/s2".to_owned()])
    };
    for text in [format!("{head}{s1}{s2}"), format!("{head}{s2}{s1}")] {
        let e = run(&text).unwrap_err();
        assert!(e.message.contains("different exporters"), "{e}");
    }
    let chained = format!("{head}{s1}{}", s2.replace("otlp/t2, ", ""));
    let t = run(&chained).unwrap();
    let export = section(&t, "export").unwrap().as_mapping().unwrap();
    let keys: Vec<&str> = export.keys().filter_map(Value::as_str).collect();
    assert_eq!(keys, ["otlp/a", "otlp/b"]);
}

/// Scenario: kept spans going on through forward connectors to two pipelines with
/// different exporters, one running a `filter` (a tenant's traces), then neither running
/// one; and two sampling pipelines whose exporters differ only by a span-metrics connector.
/// Guarantees: the first is refused naming the filtering pipeline (the gateway would send
/// every kept trace to both backends); with a `transform` there, or none, it loads (both
/// backends get every kept trace from the Collector too), with both exporters; the
/// connector does not count as a different exporter.
#[test]
fn a_fan_out_after_sampling_that_filters_is_refused() {
    let text = "receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: []}, filter/a: {}}\nconnectors: {forward/x: {}, forward/y: {}}\nexporters: {otlp/a: {endpoint: 'a:4317'}, otlp/b: {endpoint: 'b:4317'}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [forward/x, forward/y]}\n    traces/a: {receivers: [forward/x], processors: [filter/a], exporters: [otlp/a]}\n    traces/b: {receivers: [forward/y], exporters: [otlp/b]}\n";
    let run = |text: &str, chosen: &[&str]| {
        let top: Value = serde_yaml_ng::from_str(text).unwrap();
        let chosen: Vec<String> = chosen.iter().map(|s| (*s).to_owned()).collect();
        translate(&top, &chosen)
    };
    let e = run(text, &["traces"]).unwrap_err();
    assert_eq!(e.key, "service.pipelines.traces/a.processors");
    assert!(e.message.contains("runs filter/a"), "{e}");
    // A processor that changes spans rather than choosing them is warned about with the
    // policies, and loads.
    let changing = text
        .replace("filter/a: {}", "transform/a: {}")
        .replace("[filter/a]", "[transform/a]");
    run(&changing, &["traces"]).unwrap();
    let plain = text.replace("processors: [filter/a], ", "");
    let t = run(&plain, &["traces"]).unwrap();
    let export = section(&t, "export").unwrap().as_mapping().unwrap();
    assert_eq!(export.len(), 2);
    let metrics = "receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: []}}\nconnectors: {span_metrics: {}}\nexporters: {otlp/a: {endpoint: 'a:4317'}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/a, span_metrics]}\n    traces/b: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/a]}\n    metrics: {receivers: [span_metrics], exporters: [otlp/a]}\n";
    run(metrics, &["traces", "traces/b"]).unwrap();
}

/// Scenario: `otlp` (gRPC) exporters with `http://` endpoints, as Collector configs write
/// them: without a `tls:` block, with `insecure: true`, with `insecure: true` and a CA;
/// an `otlphttp` one; an upper-case scheme.
/// Guarantees: the gRPC ones lose the prefix, as configgrpc takes it off, so that they
/// are dialled as the Collector dials them (TLS unless insecure without a CA); the
/// note names each one that becomes TLS and no other; `otlphttp` and `HTTP://` (which
/// configgrpc's prefix test does not match) are left as written.
#[test]
fn a_grpc_exporters_http_scheme_means_what_it_means_to_the_collector() {
    let t = read("receivers: {otlp: {protocols: {grpc: {}}}}\nprocessors: {tail_sampling: {policies: [{name: all, type: always_sample}]}}\nexporters:\n  otlp/a: {endpoint: 'http://a:4317', headers: {x-api-key: k}}\n  otlp/b: {endpoint: 'http://b:4317', tls: {insecure: true}}\n  otlp/c: {endpoint: 'http://c:4317', tls: {insecure: true, ca_file: /ca.pem}}\n  otlphttp/d: {endpoint: 'http://d:4318'}\n  otlp_grpc/e: {endpoint: 'HTTP://e:4317'}\nservice: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp/a, otlp/b, otlp/c, otlphttp/d, otlp_grpc/e]}}}\n").unwrap();
    let export = section(&t, "export").unwrap();
    let endpoint = |e: &str| export[e]["endpoint"].as_str().unwrap().to_owned();
    assert_eq!(endpoint("otlp/a"), "a:4317");
    assert_eq!(endpoint("otlp/b"), "b:4317");
    assert_eq!(endpoint("otlp/c"), "c:4317");
    assert_eq!(endpoint("otlphttp/d"), "http://d:4318");
    assert_eq!(endpoint("otlp_grpc/e"), "HTTP://e:4317");
    let tls_notes: Vec<&String> = t
        .notes
        .iter()
        .filter(|n| n.contains("is dialled with TLS"))
        .collect();
    assert_eq!(tls_notes.len(), 2, "{:?}", t.notes);
    assert!(
        tls_notes[0].starts_with("exporters.otlp/a.endpoint: http://a:4317 is dialled with TLS")
    );
    assert!(
        tls_notes[1].starts_with("exporters.otlp/c.endpoint: http://c:4317 is dialled with TLS")
    );
}
