#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Collector configurations load unchanged: the README's full example, a whole Collector
//! config with several processors, and the OTTL examples, deciding as documented there.

use std::path::{Path, PathBuf};

use tailgate_core::config::ConfigError;
use tailgate_gateway::explain::explain;
use tailgate_gateway::policy::{PolicyKind, Verdict};
use tailgate_gateway::{PolicyFile, PolicyPlan};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One OTLP JSON line holding one span (trace `trace`, span `span`) of `service`.
fn span_line(trace: u8, service: &str, span: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace:032x}","spanId":"{trace:016x}",{span}}}]}}]}}]}}"#
    )
}

/// Scenario: the Collector README's full `tail_sampling` example (18 policies, flow style,
/// trailing commas, `100_000`, `\/health`, two ottl_condition policies), as a whole
/// `processors:` block. Guarantees: it loads unchanged and decides as the README says:
/// the drop policy drops health checks whatever the others say; the OTTL policies match
/// as their conditions read; the composite shares its budget (50% / 25% / equal split).
#[test]
fn the_collector_readme_example_loads_and_decides_as_documented() {
    let path = fixture("collector_readme.yaml");
    let file = PolicyFile::load(&path).unwrap();
    assert_eq!(file.policies.len(), 18);
    assert_eq!(file.num_traces, 100);
    let plan = PolicyPlan::compile(&file);
    assert_eq!(plan.decision_cache_size, Some(200_000));
    let composite = file
        .policies
        .iter()
        .find_map(|p| match &p.kind {
            PolicyKind::Composite(c) => Some(c),
            _ => None,
        })
        .unwrap();
    assert_eq!(composite.allocations(), [500, 250, 333]);

    let ok = r#""name":"GET /","startTimeUnixNano":"1000000000","endTimeUnixNano":"1002000000","attributes":[{"key":"test_attr_key_1","value":{"stringValue":"test_attr_val_1"}}]"#;
    let health = r#""name":"GET /health","startTimeUnixNano":"1000000000","endTimeUnixNano":"1002000000","attributes":[{"key":"url.path","value":{"stringValue":"/health"}}]"#;
    let text = [span_line(1, "web", ok), span_line(2, "web", health)].join("\n");
    let e = explain(&file, &text, None).unwrap();
    assert_eq!(e.traces, 2);
    assert_eq!(
        e.kept_traces, 1,
        "the health check is dropped, the other kept"
    );

    let mut id = [0u8; 16];
    id[15] = 1;
    let t = explain(&file, &text, Some(id)).unwrap().trace.unwrap();
    let verdict = |name: &str| t.verdicts.iter().find(|(n, _, _)| n == name).unwrap().1;
    assert!(t.sampled);
    assert_eq!(
        verdict("test-policy-13"),
        Verdict::Sampled,
        "test_attr_key_1 matches"
    );
    assert_eq!(
        verdict("test-policy-14"),
        Verdict::NotSampled,
        "not checkout, no 5xx, no exception event"
    );
    assert_eq!(verdict("drop-policy-1"), Verdict::NotSampled);
    assert_eq!(
        t.evaluated.first().map(String::as_str),
        Some("drop-policy-1"),
        "drop policies first"
    );

    id[15] = 2;
    let t = explain(&file, &text, Some(id)).unwrap().trace.unwrap();
    assert!(!t.sampled);
    assert_eq!(
        t.verdicts
            .iter()
            .find(|(n, _, _)| n == "drop-policy-1")
            .unwrap()
            .1,
        Verdict::Dropped
    );
}

/// Scenario: test-policy-14's conditions (prefixed paths, span event context) on traces
/// made for each. Guarantees: each condition alone samples its trace, as OTTL reads it.
#[test]
fn the_readme_ottl_example_matches_each_condition() {
    let yaml = std::fs::read_to_string(fixture("collector_readme.yaml")).unwrap();
    let file = PolicyFile::parse(Path::new("readme.yaml"), &yaml).unwrap();
    let keep: Vec<_> = file
        .policies
        .into_iter()
        .filter(|p| p.name == "test-policy-14")
        .collect();
    assert_eq!(keep.len(), 1);
    let mut file = PolicyFile::parse(
        Path::new("x.yaml"),
        "policies:\n  - {name: placeholder, type: always_sample}\n",
    )
    .unwrap();
    file.policies = keep;
    let times = r#""startTimeUnixNano":"1000000000","endTimeUnixNano":"1002000000""#;
    let lines = [
        span_line(1, "checkout", &format!(r#""name":"a",{times}"#)),
        span_line(
            2,
            "web",
            &format!(
                r#""name":"b",{times},"attributes":[{{"key":"http.status_code","value":{{"intValue":"503"}}}}]"#
            ),
        ),
        span_line(
            3,
            "web",
            &format!(
                r#""name":"c",{times},"events":[{{"name":"exception","timeUnixNano":"1001000000"}}]"#
            ),
        ),
        span_line(
            4,
            "web",
            &format!(
                r#""name":"d",{times},"attributes":[{{"key":"http.status_code","value":{{"intValue":"404"}}}}],"events":[{{"name":"log"}}]"#
            ),
        ),
    ];
    let e = explain(&file, &lines.join("\n"), None).unwrap();
    assert_eq!(e.traces, 4);
    assert_eq!(
        e.kept_traces, 3,
        "traces 1, 2 and 3 each match one condition; 4 none"
    );
}

/// Scenario: a Collector config wrapped in an OpenTelemetryCollector resource, in a
/// ConfigMap manifest, and in the Helm chart's values (found by a trial: "unknown field `apiVersion`").
/// Guarantees: the error says what the file is and how to extract the config.
#[test]
fn wrapped_collector_configs_say_how_to_extract_them() {
    let err = |text: &str| {
        PolicyFile::parse(std::path::Path::new("c.yaml"), text)
            .unwrap_err()
            .to_string()
    };
    let cr = err("apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nspec:\n  config:\n    processors:\n      tail_sampling: {policies: []}\n");
    assert!(
        cr.contains("OpenTelemetryCollector resource") && cr.contains("spec.config"),
        "{cr}"
    );
    let cm = err("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: otel}\ndata:\n  collector.yaml: |\n    processors:\n      tail_sampling: {policies: []}\n");
    assert!(
        cm.contains("Kubernetes ConfigMap (data keys: collector.yaml)")
            && cm.contains(r"jsonpath='{.data.collector\.yaml}'")
            && cm.contains(r#"yq '.data["collector.yaml"]'"#),
        "{cm}"
    );
    let helm = err("mode: deployment\nconfig:\n  processors:\n    tail_sampling: {policies: []}\n");
    assert!(
        helm.contains("Helm chart's values")
            && helm.contains("merges with its own defaults")
            && helm.contains("helm template")
            && helm.contains(".data.relay")
            && helm.contains("yq '.config'"),
        "{helm}"
    );
    // An umbrella chart's values (a trial: Coralogix's), the agent chart first: the
    // hint names the chart whose config samples.
    let umbrella = err("global: {domain: x}\nopentelemetry-agent:\n  config:\n    processors: {batch: {}}\nopentelemetry-gateway:\n  config:\n    processors:\n      tail_sampling: {policies: []}\n");
    assert!(
        umbrella.contains("umbrella Helm chart's values, with the Collector chart's under `opentelemetry-gateway:`")
            && umbrella.contains(r#"yq '.["opentelemetry-gateway"].config'"#),
        "{umbrella}"
    );
}

/// Scenario: files of several YAML documents (a trial: a guide's two tiers in one file,
/// the tail_sampling one second). Guarantees: as the Collector, which reads the first
/// document only, the first is read and a warning says so; when only a later one has
/// tail_sampling settings, the error names its `---` line; a leading `---` is one
/// document, without a warning.
#[test]
fn files_of_several_documents_are_read_as_the_collector_reads_them() {
    let parse = |text: &str| PolicyFile::parse(Path::new("two.yaml"), text);
    let tier2 = "processors:\n  tail_sampling:\n    policies: [{name: all, type: always_sample}]\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n";
    let text = format!("# tier 1\nprocessors: {{batch: {{}}}}\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], processors: [batch], exporters: [otlp]}}\n---\n{tier2}");
    let err = parse(&text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidAt { line: 6, key, .. } if key == "---"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("2 YAML documents") && err.to_string().contains("document 2"),
        "{err}"
    );
    let file = parse(&format!("{tier2}---\nsomething: else\n---\nmore: 1\n")).unwrap();
    assert_eq!(file.policies.len(), 1);
    assert!(
        file.ignored_options.iter().any(|w| w == "this file holds 3 YAML documents; as the Collector, Tailgate reads the first (lines 1 to 6) and ignores the others"),
        "{:?}",
        file.ignored_options
    );
    // Manifests: a Namespace, then the ConfigMap holding the config.
    let manifests = "apiVersion: v1\nkind: Namespace\nmetadata: {name: otel}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: otel}\ndata:\n  collector.yaml: |\n    processors:\n      tail_sampling: {policies: []}\n";
    let err = parse(manifests).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidAt { line: 4, .. })
            && err.to_string().contains("document 2"),
        "{err:?}"
    );
    // A first document that does not parse is reported as such, not passed over.
    let broken = parse(&format!("processors: [\n---\n{tier2}")).unwrap_err();
    assert!(!broken.to_string().contains("document 2"), "{broken}");
    // An empty first document, as the Collector reads it: no tail_sampling there.
    let empty_first = parse(&format!("---\n---\n{tier2}")).unwrap_err();
    assert!(
        matches!(&empty_first, ConfigError::InvalidAt { line: 2, .. }),
        "{empty_first:?}"
    );
    let file = parse(&format!("---\n{tier2}")).unwrap();
    assert!(
        !file.ignored_options.iter().any(|w| w.contains("documents")),
        "{:?}",
        file.ignored_options
    );
}

/// Scenario: pipelines with slips the Collector refuses at start (a trial: a blog's
/// pipeline names a `filter` it never defines; Alloy's converter test data lists
/// `tail_sampling` in metrics and logs pipelines), and a span-metrics processor before
/// `tail_sampling` (SigNoz's ingester).
/// Guarantees: each slip is a warning saying the Collector refuses it, the undefined
/// processor is not also called one Tailgate "does not run"; the span-metrics processor
/// is warned about for the metrics lost, not for attributes; a note with one ignored
/// section says "section".
#[test]
fn pipeline_slips_and_span_metrics_are_named() {
    let text = "processors:\n  signozspanmetrics/delta: {}\n  tail_sampling:\n    policies: [{name: all, type: always_sample}]\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [signozspanmetrics/delta, filter, tail_sampling], exporters: [otlp]}\n    metrics: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n";
    let file = PolicyFile::parse_processor(Path::new("c.yaml"), text, None).unwrap();
    let warnings = &file.ignored_options;
    let has = |w: &str| warnings.iter().any(|x| x.starts_with(w));
    assert!(has("pipeline traces lists processor filter, which processors: does not define here; the Collector refuses such a config"), "{warnings:?}");
    assert!(has("pipeline metrics lists tail_sampling, which processes traces only; the Collector refuses such a config"), "{warnings:?}");
    assert!(has("pipeline traces runs signozspanmetrics/delta before tail_sampling; Tailgate does not run them, so the metrics they compute from every span are not computed"), "{warnings:?}");
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("runs filter") || w.contains("attributes those processors")),
        "{warnings:?}"
    );
    assert_eq!(file.notes, ["using processors.tail_sampling (pipeline traces) of a Collector config; other processors are not Tailgate's and are ignored, and the section service is not read for policies (a file given as --config gives the gateway its receiver, exporters and extensions)"]);
}

/// Scenario: a Collector config holding nothing but its processors (a trial found the
/// note naming the ignored sections as "-").
/// Guarantees: the note speaks of other processors only.
#[test]
fn a_config_of_processors_alone_is_noted_plainly() {
    let file = PolicyFile::parse(
        std::path::Path::new("c.yaml"),
        "processors:\n  batch: {}\n  tail_sampling:\n    policies:\n      - {name: all, type: always_sample}\n",
    )
    .unwrap();
    assert_eq!(
        file.notes,
        ["using processors.tail_sampling of a Collector config; other processors are not Tailgate's and are ignored"]
    );
}

/// Scenario: a whole Collector config with receivers, exporters, extensions, two
/// tail_sampling processors (one used by the traces pipeline) and `${env:…:-default}`.
/// Guarantees: the used processor is taken, with its defaults and `200_000`; a note says
/// what was ignored; `--processor` picks another only if a traces pipeline uses it.
#[test]
fn a_whole_collector_config_loads_its_traces_pipelines_processor() {
    let path = fixture("collector_whole.yaml");
    let file = PolicyFile::load(&path).unwrap();
    assert_eq!(file.policies.len(), 4);
    assert_eq!(file.num_traces, 200_000);
    assert_eq!(file.decision_wait, std::time::Duration::from_secs(12));
    assert!(
        file.notes[0].contains("tail_sampling/prod") && file.notes[0].contains("receivers"),
        "{:?}",
        file.notes
    );
    assert_eq!(
        PolicyFile::load_processor(&path, Some("prod"))
            .unwrap()
            .policies
            .len(),
        4
    );
    let err = PolicyFile::load_processor(&path, Some("experiment")).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, message, .. } if key == "processors" && message.contains("tail_sampling/prod")),
        "{err}"
    );

    // Defined but in no traces pipeline: the Collector builds neither, so nothing is
    // sampled by tail; the error names them and how to use one.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[memory_limiter, tail_sampling/prod, batch]",
        "[memory_limiter, batch]",
    );
    assert_ne!(text, std::fs::read_to_string(&path).unwrap());
    let err = PolicyFile::parse(&path, &text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, message, .. } if key == "processors" && message.contains("uses tail_sampling/experiment, tail_sampling/prod") && message.contains("add it to the traces pipeline")),
        "{err}"
    );

    // Two processors in traces pipelines: the error lists them and asks for --processor.
    let text = std::fs::read_to_string(&path).unwrap()
        + "    traces/2:\n      receivers: [otlp]\n      processors: [tail_sampling/experiment]\n      exporters: [otlp]\n";
    let err = PolicyFile::parse(&path, &text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { message, .. } if message.contains("tail_sampling/experiment, tail_sampling/prod") && message.contains("--processor")),
        "{err}"
    );
    assert_eq!(
        PolicyFile::parse_processor(&path, &text, Some("tail_sampling/experiment"))
            .unwrap()
            .policies
            .len(),
        1
    );

    // A reference Tailgate cannot resolve matters only in the block it reads: an
    // exporter's secret file that exists only where the Collector runs is ignored.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "tls: { insecure: true }",
        "tls: { cert_file: \"${file:/nonexistent/tls.crt}\" }",
    );
    assert!(PolicyFile::parse(&path, &text).is_ok());
    let text = text.replace("num_traces: 200_000", "num_traces: ${file:/nonexistent/n}");
    let err = PolicyFile::parse(&path, &text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidAt { line: 20, .. }),
        "{err}"
    );

    // A mistake in the chosen block is reported at its line in the whole file.
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace("threshold_ms: 500", "threshold_ms: fast");
    let err = PolicyFile::parse(&path, &bad).unwrap_err().to_string();
    assert!(
        err.contains("collector_whole.yaml:28: ") && err.contains("threshold_ms"),
        "{err}"
    );
    let bad = std::fs::read_to_string(&path)
        .unwrap()
        .replace("type: latency", "type: latencyy");
    let err = PolicyFile::parse(&path, &bad).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InvalidAt { line: 27, message, .. } if message.contains("unknown policy type \"latencyy\"")),
        "{err}"
    );
}

/// Scenario: a whole Collector config whose `otlp` exporter is written
/// `http://backend:4317` with an API key and no `tls:` block (which works in the Collector
/// only against a TLS backend: configgrpc takes `http://` off and dials with TLS), and
/// the same with `tls: {insecure: true}`.
/// Guarantees: the gateway dials the first with TLS, as the Collector does, so the key
/// does not go out in clear; the second in plaintext, as written; the gateway's own
/// `export:` still reads `http://` as plaintext.
#[test]
fn a_copied_grpc_exporter_written_http_is_dialled_as_the_collector_dials_it() {
    use tailgate_gateway::export::ExporterConfig;
    let dir = std::env::temp_dir().join(format!("tailgate-http-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let uses_tls = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let config = tailgate_gateway::GatewayConfig::load(&path).unwrap();
        match &config.export.exporters[0].1 {
            ExporterConfig::OtlpGrpc(c) => c.uses_tls(),
            other => panic!("{other:?}"),
        }
    };
    let whole = |tls: &str| {
        format!("receivers: {{otlp: {{protocols: {{grpc: {{endpoint: 127.0.0.1:4317}}}}}}}}\nprocessors: {{tail_sampling: {{policies: [{{name: all, type: always_sample}}]}}}}\nexporters:\n  otlp/vendor: {{endpoint: 'http://backend.example:4317', headers: {{x-api-key: secret}}{tls}}}\nservice: {{pipelines: {{traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [otlp/vendor]}}}}}}\n")
    };
    assert!(uses_tls("whole.yaml", &whole("")));
    assert!(!uses_tls(
        "insecure.yaml",
        &whole(", tls: {insecure: true}")
    ));
    assert!(!uses_tls(
        "own.yaml",
        "export:\n  otlp: {endpoint: 'http://backend.example:4317', tls: {insecure: true}}\n"
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Scenario: an invalid policy in flow style (the README's layout).
/// Guarantees: the error names the line of the key at fault, found from the policy's name
/// (before an adoption trial, the line of the name).
#[test]
fn flow_style_errors_name_the_line() {
    let text = std::fs::read_to_string(fixture("collector_readme.yaml"))
        .unwrap()
        .replace("status_codes: [ERROR, UNSET]", "status_codes: []");
    let err = PolicyFile::parse(Path::new("readme.yaml"), &text).unwrap_err();
    let key_line = text
        .lines()
        .position(|l| l.contains("status_codes: []"))
        .unwrap()
        + 1;
    assert!(
        matches!(&err, ConfigError::InvalidAt { line, message, .. } if *line == key_line && message.contains("test-policy-5")),
        "{err}"
    );
}

/// Scenario: ottl_condition over traces whose spans come from two services, and the three
/// error modes. Guarantees: a condition holds only when one span satisfies every clause
/// (resource clauses are answered per span's own resource); `propagate` stops at the
/// first failing condition without sampling, `ignore` and `silent` go on to the next.
#[test]
fn ottl_condition_policy_reads_each_spans_resource_and_follows_error_mode() {
    let plan = |body: &str| {
        PolicyFile::parse(
            Path::new("p.yaml"),
            &format!(
                "policies:\n  - name: o\n    type: ottl_condition\n    ottl_condition:\n{body}"
            ),
        )
        .unwrap()
    };
    let span = |code: u32| {
        format!(
            r#""name":"op","startTimeUnixNano":"1000000000","endTimeUnixNano":"1002000000","attributes":[{{"key":"code","value":{{"intValue":"{code}"}}}}]"#
        )
    };
    let p = plan("      span: ['resource.attributes[\"service.name\"] == \"checkout\" and attributes[\"code\"] >= 500']\n");
    // Trace 1: web 503 + checkout 200 (no single span matches); trace 2: web 200 + checkout 503.
    let text = [
        span_line(1, "web", &span(503)),
        span_line(1, "checkout", &span(200)),
        span_line(2, "web", &span(200)),
        span_line(2, "checkout", &span(503)),
    ]
    .join("\n");
    let e = explain(&p, &text, None).unwrap();
    assert_eq!((e.traces, e.kept_traces), (2, 1));
    let mut id = [0u8; 16];
    id[15] = 2;
    assert!(explain(&p, &text, Some(id)).unwrap().trace.unwrap().sampled);

    let text = span_line(3, "web", &span(200));
    for (mode, kept) in [("propagate", 0), ("ignore", 1), ("silent", 1)] {
        let p = plan(&format!(
            "      error_mode: {mode}\n      span: ['name + 1 == 2', 'attributes[\"code\"] == 200']\n"
        ));
        let e = explain(&p, &text, None).unwrap();
        assert_eq!(e.kept_traces, kept, "{mode}");
        assert_eq!(e.policies[0].errors, 1, "{mode}: each failure is counted");
    }
}

/// Scenario: a `tail_sampling` block rendered by Helm's `toYaml`, which writes numbers from
/// a million up in exponent form (`num_traces: 1e+06`); the Collector reads them as
/// integers (found by a user trial: the gateway refused such a file).
/// Guarantees: it loads with the integers meant.
#[test]
fn numbers_as_helm_renders_them_load() {
    let text = "tail_sampling:\n  decision_wait: 10s\n  num_traces: 1e+06\n  policies:\n    - name: budget\n      type: rate_limiting\n      rate_limiting:\n        spans_per_second: 2.5e+06\n";
    let file = PolicyFile::parse(Path::new("helm.yaml"), text).unwrap();
    assert_eq!(file.num_traces, 1_000_000);
    match &file.policies[0].kind {
        PolicyKind::RateLimiting(r) => assert_eq!(r.spans_per_second, 2_500_000),
        other => panic!("{other:?}"),
    }
}

/// Scenario: a Collector config whose traces pipeline chains two `tail_sampling`
/// processors (a noise filter, then the keep rules): the Collector applies both in turn.
/// Guarantees: without `--processor` the error says the pipeline chains them and how to
/// merge them; choosing one loads it with a warning naming the one not applied (found by
/// a user trial: the error only said "choose one", and choosing dropped the filter
/// silently).
#[test]
fn chained_processors_are_named_not_silently_dropped() {
    let text = "processors:\n  tail_sampling/drop-noise:\n    policies:\n      - {name: health, type: drop, drop: {drop_sub_policy: [{name: h, type: string_attribute, string_attribute: {key: url.path, values: [/health]}}]}}\n  tail_sampling/keep:\n    policies:\n      - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [tail_sampling/drop-noise, tail_sampling/keep]\n      exporters: [otlp]\n";
    let path = Path::new("collector.yaml");
    let err = PolicyFile::parse_processor(path, text, None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Pipeline traces chains tail_sampling/drop-noise, tail_sampling/keep"),
        "{err}"
    );
    assert!(err.contains("merge them into one processor"), "{err}");
    let file = PolicyFile::parse_processor(path, text, Some("keep")).unwrap();
    assert_eq!(file.policies.len(), 1);
    assert!(
        file.ignored_options.iter().any(|w| w.contains(
            "pipeline traces chains tail_sampling/drop-noise with tail_sampling/keep; only tail_sampling/keep is applied"
        )),
        "{:?}",
        file.ignored_options
    );
}

/// Scenario: a whole Collector config whose traces pipeline runs `memory_limiter`,
/// `groupbytrace`, `filter`, `transform` and `probabilistic_sampler` before `tail_sampling`, and
/// `attributes` and `batch` after it (found by a user trial: the gateway said only "other
/// processors are ignored", at info).
/// Guarantees: it loads with a warning naming the processors before it that Tailgate does
/// not run (what the policies see differs) and one naming those after it; `batch`,
/// `memory_limiter` and `groupbytrace` (the gateway groups spans by trace itself), which
/// change nothing a policy reads or a backend receives, are not named.
#[test]
fn processors_around_tail_sampling_are_named() {
    let text = "processors:\n  memory_limiter: {check_interval: 1s, limit_mib: 512}\n  filter/health: {error_mode: ignore, traces: {span: ['attributes[\"url.path\"] == \"/health\"']}}\n  transform/normalize: {trace_statements: ['set(span.attributes[\"tier\"], \"gold\")']}\n  probabilistic_sampler: {sampling_percentage: 10}\n  tail_sampling:\n    policies: [{name: gold, type: string_attribute, string_attribute: {key: tier, values: [gold]}}]\n  attributes/scrub: {actions: [{key: user.email, action: delete}]}\n  batch: {}\n  groupbytrace: {wait_duration: 10s}\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [memory_limiter, groupbytrace, filter/health, transform/normalize, probabilistic_sampler, tail_sampling, attributes/scrub, batch]\n      exporters: [otlp]\n";
    let file = PolicyFile::parse_processor(Path::new("collector.yaml"), text, None).unwrap();
    let before = file
        .ignored_options
        .iter()
        .find(|w| w.contains("before tail_sampling"))
        .unwrap_or_else(|| panic!("{:?}", file.ignored_options));
    assert!(
        before.starts_with(
            "pipeline traces runs filter/health, transform/normalize, probabilistic_sampler before tail_sampling; Tailgate does not run them"
        ),
        "{before}"
    );
    let after = file
        .ignored_options
        .iter()
        .find(|w| w.contains("after tail_sampling"))
        .unwrap_or_else(|| panic!("{:?}", file.ignored_options));
    assert!(
        after.starts_with("pipeline traces runs attributes/scrub after tail_sampling"),
        "{after}"
    );
    assert!(
        !file.ignored_options.iter().any(|w| w.contains("batch")
            || w.contains("memory_limiter")
            || w.contains("groupbytrace")),
        "{:?}",
        file.ignored_options
    );
}

/// Scenario: a whole Collector config whose `traces` pipeline runs `k8sattributes` and
/// passes every span through a `forward` connector to `traces/sampling` (tail_sampling),
/// whose kept spans go through another to `traces/out`, running `attributes/scrub`.
/// Guarantees: the processors of the pipelines joined by forward connectors are named as
/// the processors beside tail_sampling are: those before it (what the policies see
/// differs) and those after it.
#[test]
fn processors_of_pipelines_joined_by_forward_connectors_are_named() {
    let text = "processors:\n  k8sattributes: {}\n  batch: {}\n  attributes/scrub: {actions: [{key: user.email, action: delete}]}\n  tail_sampling:\n    policies: [{name: all, type: always_sample}]\nconnectors: {forward/sampling: {}, forward/out: {}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [k8sattributes, batch], exporters: [forward/sampling]}\n    traces/sampling: {receivers: [forward/sampling], processors: [tail_sampling], exporters: [forward/out]}\n    traces/out: {receivers: [forward/out], processors: [attributes/scrub, batch], exporters: [otlp]}\n";
    let file = PolicyFile::parse_processor(Path::new("collector.yaml"), text, None).unwrap();
    let has = |words: &str| file.ignored_options.iter().any(|w| w.starts_with(words));
    assert!(
        has("pipeline traces runs k8sattributes before tail_sampling; Tailgate does not run them"),
        "{:?}",
        file.ignored_options
    );
    assert!(
        has("pipeline traces/out runs attributes/scrub after tail_sampling"),
        "{:?}",
        file.ignored_options
    );
    // A second tail_sampling processor after a forward connector is a chain as one in
    // the same pipeline is (it loaded without a word, keeping what it would drop).
    let chained = text
        .replace("  tail_sampling:\n", "  tail_sampling/b:\n    policies: [{name: errors, type: status_code, status_code: {status_codes: [ERROR]}}]\n  tail_sampling:\n")
        .replace("processors: [attributes/scrub, batch]", "processors: [tail_sampling/b, batch]");
    let file =
        PolicyFile::parse_processor(Path::new("collector.yaml"), &chained, Some("tail_sampling"))
            .unwrap();
    assert!(
        file.ignored_options.iter().any(|w| w.starts_with(
            "pipeline traces/out runs tail_sampling/b after tail_sampling (joined to it by a forward connector); only tail_sampling is applied"
        )),
        "{:?}",
        file.ignored_options
    );
    // The same processor again after itself: decided twice by the Collector, once here.
    let again = text.replace(
        "processors: [attributes/scrub, batch]",
        "processors: [tail_sampling]",
    );
    let file = PolicyFile::parse_processor(Path::new("collector.yaml"), &again, None).unwrap();
    assert!(
        file.ignored_options.iter().any(|w| w.starts_with(
            "pipeline traces/out runs tail_sampling again after pipeline traces/sampling"
        )),
        "{:?}",
        file.ignored_options
    );
}

/// Scenario: the whole config of a Collector sampling tier (otlp receiver, memory_limiter,
/// tail_sampling keeping errors, batch, an otlp exporter, a logs pipeline beside it) given
/// to the gateway binary as `--config` alone; errored and healthy traces sent to the
/// receiver it names.
/// Guarantees: the gateway serves on the receiver's endpoint and its metrics on the
/// telemetry address, decides with the file's own
/// tail_sampling processor, and sends the kept trace (only) to the file's exporter;
/// `--check` on the file says ok once and names what is not applied; a misspelt key in
/// an exporter is refused naming the exporter's line.
#[tokio::test]
async fn a_whole_collector_config_runs_the_gateway() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use tailgate_core::test_util::CaptureBackend;
    let stop = tokio_util::sync::CancellationToken::new();
    let (backend_addr, backend) =
        CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (port, metrics_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("tailgate-whole-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("otelcol.yaml");
    let text = format!(
        "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:{port}\nprocessors:\n  memory_limiter: {{check_interval: 1s, limit_mib: 400}}\n  batch: {{}}\n  tail_sampling:\n    decision_wait: 1s\n    policies:\n      - {{name: errors, type: status_code, status_code: {{status_codes: [ERROR]}}}}\nexporters:\n  debug: {{}}\n  otlp/backend:\n    endpoint: {backend_addr}\n    tls:\n      insecure: true\n    compression: none\nservice:\n  telemetry: {{metrics: {{address: 127.0.0.1:{metrics_port}}}}}\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [memory_limiter, tail_sampling, batch]\n      exporters: [otlp/backend]\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n"
    );
    std::fs::write(&config, &text).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
    );
    assert_eq!(check.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches(": ok").count(), 1, "{stdout}");
    assert!(
        stderr
            .contains("note: service.pipelines.logs: not taken: the gateway receives traces only"),
        "{stderr}"
    );
    // A pipeline beside the sampling one sending every span to a backend: the file loads,
    // and `--check` says at warning that the backend gets nothing.
    let beside = text
        .replace("  debug: {}\n", "  debug: {}\n  otlp/archive: {endpoint: 'archive:4317'}\n")
        .replace("    logs:\n", "    traces/raw:\n      receivers: [otlp]\n      exporters: [otlp/archive]\n    logs:\n");
    std::fs::write(&config, &beside).unwrap();
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let warned = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(0), "{warned}");
    assert!(
        warned.contains("otelcol.yaml: warning: service.pipelines.traces/raw.exporters: otlp/archive not applied"),
        "{warned}"
    );
    assert!(
        stderr.contains("note: the file's tail_sampling processor reloads when it changes"),
        "{stderr}"
    );
    // An exporter key the otlp exporter does not have, on line 19.
    std::fs::write(
        &config,
        text.replace("compression: none", "compresion: none"),
    )
    .unwrap();
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("otelcol.yaml:19: exporters.otlp/backend.compresion: unknown field"),
        "{stderr}"
    );
    std::fs::write(&config, &text).unwrap();

    // Killed when the test ends, passed or not.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
    let child = Killed(
        std::process::Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .arg("--config")
            .arg(&config)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Bounded: 100 tries 100 ms apart while the gateway starts.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = TraceServiceClient::connect(format!("http://127.0.0.1:{port}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut client = client.expect("the gateway listens on the receiver's endpoint");
    let mut req = tailgate_core::test_util::FakeOtlp::traces(2)
        .spans(3)
        .seed(7)
        .build();
    // The first trace has an error span; the second none.
    for s in req
        .resource_spans
        .iter_mut()
        .flat_map(|r| &mut r.scope_spans)
        .flat_map(|s| &mut s.spans)
    {
        s.status = None;
    }
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let errored = spans[0].trace_id.clone();
    spans[0].status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        code: 2,
        message: String::new(),
    });
    let all: Vec<Vec<u8>> = req
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|s| s.trace_id.clone())
        .collect();
    let kept_spans = all.iter().filter(|t| **t == errored).count() as u64;
    assert!(
        kept_spans > 0 && (kept_spans as usize) < all.len(),
        "{all:?}"
    );
    client.export(req).await.unwrap();
    // Both traces decided, as the gateway's own counters say (on the telemetry address the
    // file names): then nothing more is coming for the dropped one. Bounded: 15 s.
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let decided = |text: &str| {
        text.contains("tailgate_gateway_decisions_total{decision=\"sampled\"} 1\n")
            && text.contains("tailgate_gateway_decisions_total{decision=\"not_sampled\"} 1\n")
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    while !decided(&crate::common::admin_get(metrics, "/metrics").await)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let scraped = crate::common::admin_get(metrics, "/metrics").await;
    assert!(decided(&scraped), "{scraped}");
    crate::common::wait_for_spans(&[&backend], kept_spans, std::time::Duration::from_secs(15))
        .await;
    assert_eq!(backend.spans(), kept_spans);
    drop(child);
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: whole Collector configs as editors, charts and guides write them (a config
/// audit of 40 found each refused or misread): a UTF-8 byte-order mark first; an
/// `otlphttp` exporter at `http://` with a `tls:` block; an `otlp` exporter at
/// `passthrough:///host:port`; `cors.exposed_headers` (v0.154); `enabled: false` on the
/// HTTP protocol and on a TLS block (configoptional, v0.155).
/// Guarantees: each loads as the Collector reads it: the mark is skipped; the otlphttp
/// block is plaintext, its `tls` left out with a warning; the passthrough endpoint is
/// dialled at host:port; the exposed headers are taken; the disabled protocol is not
/// served and the disabled TLS block not applied.
#[test]
fn collector_configs_as_editors_and_guides_write_them_load() {
    use tailgate_gateway::export::ExporterConfig;
    let dir = std::env::temp_dir().join(format!("tailgate-as-written-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = "receivers:\n  otlp:\n    protocols:\n      grpc: {endpoint: 127.0.0.1:4317, tls: {enabled: false, cert_file: /nonexistent.crt, key_file: /nonexistent.key}}\n      http: {enabled: false, endpoint: 127.0.0.1:4318, cors: {allowed_origins: ['https://app.test'], exposed_headers: [X-Request-Id]}}\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlphttp/jaeger: {endpoint: 'http://jaeger.tracing:4318', tls: {insecure_skip_verify: true}}\n  otlp/tempo: {endpoint: 'passthrough:///tempo.tracing:4317', tls: {insecure: true}}\nservice: {pipelines: {traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlphttp/jaeger, otlp/tempo]}}}\n";
    let path = dir.join("bom.yaml");
    std::fs::write(&path, format!("\u{feff}{body}")).unwrap();
    let loaded = tailgate_gateway::GatewayConfig::load_noted(&path, None).unwrap();
    assert!(loaded.whole_collector_config);
    let receive = &loaded.config.receive;
    assert!(receive.grpc.is_some() && receive.http.is_none());
    assert!(receive.tls.is_none(), "tls: {{enabled: false}} is no TLS");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.starts_with("exporters.otlphttp/jaeger.tls: not used")),
        "{:?}",
        loaded.warnings
    );
    let exporters = &loaded.config.export.exporters;
    match &exporters[0].1 {
        ExporterConfig::OtlpHttp(c) => assert!(c.tls.is_none()),
        other => panic!("{other:?}"),
    }
    match &exporters[1].1 {
        ExporterConfig::OtlpGrpc(c) => {
            assert_eq!(c.target(), "tempo.tracing:4317");
            assert!(!c.uses_tls());
        }
        other => panic!("{other:?}"),
    }
    // `tls: {insecure: true}` on an http:// otlphttp endpoint (charts write it) is
    // plaintext without a word.
    std::fs::write(
        &path,
        body.replace("tls: {insecure_skip_verify: true}", "tls: {insecure: true}"),
    )
    .unwrap();
    let loaded = tailgate_gateway::GatewayConfig::load_noted(&path, None).unwrap();
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|w| w.contains("otlphttp/jaeger.tls")),
        "{:?}",
        loaded.warnings
    );
    // The HTTP protocol switched on: its CORS block with the exposed headers is taken.
    std::fs::write(
        &path,
        body.replace("http: {enabled: false, ", "http: {enabled: true, "),
    )
    .unwrap();
    let loaded = tailgate_gateway::GatewayConfig::load_noted(&path, None).unwrap();
    let cors = loaded.config.receive.cors.as_ref().unwrap();
    assert_eq!(cors.exposed_headers, ["X-Request-Id"]);
    assert!(loaded.config.receive.http.is_some());
}
