use super::*;

/// Adds `b` to `g` as the exporter's gatherer does.
fn gather(g: &mut Gathered, b: ExportBatch) {
    let bytes = b.bytes();
    g.add(b, bytes);
}

/// An exporter of `sink` reading `rx`, its own counters zero and nothing refused yet.
fn exporter(
    rx: mpsc::Receiver<ExportBatch>,
    sink: Sink,
    batch: BatchConfig,
    stats: Arc<GatewayStats>,
) -> Exporter {
    Exporter {
        rx,
        sink,
        batch,
        stats,
        own: exporter_stats(),
        warnings: Default::default(),
    }
}

/// A `debug` sink writing into `dir`.
fn debug_sink(dir: &std::path::Path) -> Sink {
    Sink::Debug(
        DebugConfig {
            path: Some(dir.join("spans.jsonl").display().to_string()),
            ..Default::default()
        }
        .writer()
        .unwrap(),
    )
}

/// An exporter's own counters, all zero.
/// A backend on loopback (stopped with `stop`) and an OTLP/gRPC sink sending to it.
async fn grpc_backend(
    stop: &tokio_util::sync::CancellationToken,
) -> (Arc<tailgate_core::test_util::CaptureBackend>, Sink) {
    let (addr, backend) = tailgate_core::test_util::CaptureBackend::start(
        "127.0.0.1:0".parse().unwrap(),
        stop.clone(),
    )
    .await
    .unwrap();
    let cfg: super::otlp_grpc::OtlpGrpcConfig =
        serde_yaml_ng::from_str(&format!("{{endpoint: 'http://{addr}'}}")).unwrap();
    (backend, Sink::Grpc(Box::new(cfg.client().unwrap())))
}

fn exporter_stats() -> Arc<ExporterStats> {
    Arc::new(ExporterStats::new("x", 0))
}

fn span(n: u8) -> BufferedSpan {
    BufferedSpan::alone(Bytes::from(vec![n; 10]))
}

#[test]
fn a_ticket_settles_when_every_exporter_has_and_counts_any_failure() {
    let stats = GatewayStats::default();
    stats.pending_export_spans.add(10);
    stats.pending_export_bytes.add(100);
    let t = Ticket::new(10, 100, 3);
    t.settle(0, &stats);
    t.settle(4, &stats);
    assert_eq!(
        stats.pending_export_spans.get(),
        10,
        "one exporter still owes them"
    );
    t.settle(2, &stats);
    assert_eq!(stats.pending_export_spans.get(), 0);
    assert_eq!(stats.pending_export_bytes.get(), 0);
    assert_eq!(stats.exported_spans.get(), 6);
    assert_eq!(stats.export_failed_spans.get(), 4);
}

#[test]
fn chunks_settle_tickets_in_order_across_batches() {
    let stats = Arc::new(GatewayStats::default());
    stats.pending_export_spans.add(5);
    let (_tx, rx) = mpsc::channel(1);
    let dir = tailgate_core::test_util::scratch_dir("debug").unwrap();
    let e = exporter(rx, debug_sink(&dir), BatchConfig::default(), stats.clone());
    let (a, b) = (Ticket::new(2, 0, 1), Ticket::new(3, 0, 1));
    let mut g = Gathered::default();
    for (t, n) in [(a, 2u8), (b, 3)] {
        gather(
            &mut g,
            ExportBatch {
                spans: (0..n).map(span).collect(),
                tickets: vec![(t, n as u64)],
                permit: None,
            },
        );
    }
    // A chunk of 3 spans with 1 failure settles the first ticket (its failure) and part of
    // the second; the rest settles the second.
    let first: Range<usize> = 0..1;
    e.settle(&mut g.tickets, 3, std::slice::from_ref(&first));
    assert_eq!(stats.export_failed_spans.get(), 1);
    assert_eq!(stats.exported_spans.get(), 1);
    assert_eq!(stats.pending_export_spans.get(), 3);
    e.settle(&mut g.tickets, 2, &[]);
    assert_eq!(stats.exported_spans.get(), 4);
    assert_eq!(stats.pending_export_spans.get(), 0);

    // Two traces in one batch, each with its ticket (as a shard gathers them for several
    // exporters); the failed span is the second trace's: that ticket is charged it, not
    // the first one in the chunk.
    stats.pending_export_spans.add(5);
    let (a, b) = (Ticket::new(2, 0, 1), Ticket::new(3, 0, 1));
    let mut g = Gathered::default();
    gather(
        &mut g,
        ExportBatch {
            spans: (0..5u8).map(span).collect(),
            tickets: vec![(a, 2), (b, 3)],
            permit: None,
        },
    );
    let third: Range<usize> = 2..3;
    e.settle(&mut g.tickets, 3, std::slice::from_ref(&third));
    assert_eq!(stats.export_failed_spans.get(), 1);
    assert_eq!(stats.exported_spans.get(), 6);
    assert_eq!(stats.pending_export_spans.get(), 3);
    e.settle(&mut g.tickets, 2, &[]);
    assert_eq!(stats.export_failed_spans.get(), 2);
    assert_eq!(stats.exported_spans.get(), 8);
    assert_eq!(stats.pending_export_spans.get(), 0);

    // A whole batch settled at once (as after regrouping): several failed ranges, one
    // spanning two tickets, each ticket charged its own.
    stats.pending_export_spans.add(7);
    let tickets = [
        Ticket::new(2, 0, 1),
        Ticket::new(3, 0, 1),
        Ticket::new(2, 0, 1),
    ];
    let mut g = Gathered::default();
    gather(
        &mut g,
        ExportBatch {
            spans: (0..7u8).map(span).collect(),
            tickets: tickets.iter().cloned().zip([2, 3, 2]).collect(),
            permit: None,
        },
    );
    e.settle(&mut g.tickets, 7, &[0..1, 1..3, 6..7]);
    assert_eq!(stats.export_failed_spans.get(), 2 + 4);
    assert_eq!(stats.exported_spans.get(), 8 + 3);
    assert_eq!(stats.pending_export_spans.get(), 0);
    assert!(g.tickets.is_empty());
}

/// Failed ranges of a chunk come back as positions of the batch as gathered: shifted by
/// the chunk's start, and through the regrouping order when there was one.
#[test]
fn failed_spans_are_mapped_back_to_gathered_positions() {
    let mut out = Vec::new();
    to_batch_positions(std::iter::once(1..3).collect(), 4, None, &mut out);
    assert_eq!(out, vec![5..7]);
    out.clear();
    // Parts regrouped: position p held gathered span order[p].
    let order = [3u32, 0, 4, 1, 5, 2];
    to_batch_positions(vec![0..1, 2..3], 3, Some(&order), &mut out);
    assert_eq!(out, vec![1..2, 2..3]);
    out.clear();
    to_batch_positions(std::iter::once(0..2).collect(), 0, Some(&order), &mut out);
    assert_eq!(out, vec![3..4, 0..1]);
}

/// A flush sends anything until a refusal for size; then only smaller parts, and nothing
/// once its budget of such refusals (16 log2 n) is spent.
#[test]
fn size_refusals_bound_what_is_sent_again() {
    let mut sizes = SizeRefusals::new(400);
    assert!(sizes.may_send(usize::MAX - 1));
    sizes.refused(1000);
    assert!(!sizes.may_send(1000));
    assert!(sizes.may_send(999));
    sizes.refused(2000);
    assert!(!sizes.may_send(1000), "the smallest refusal stands");
    for _ in 0..16 * 9 {
        sizes.refused(10);
    }
    assert!(!sizes.may_send(1), "the budget is spent");
}

/// Scenario: exporter settings that cannot work, and endpoint forms that look doubtful
/// but are the Collector's (no scheme, `dns:` targets). Guarantees: the first are each
/// refused with the variant that says why, before any connection is tried; the others
/// load, dialled with TLS unless `tls: {insecure: true}`, as the Collector dials them.
#[test]
fn exporter_settings_are_refused_by_kind() {
    use super::SettingError;
    use std::collections::BTreeMap;
    let grpc = |endpoint: &str| OtlpGrpcConfig::new(endpoint);
    assert!(matches!(
        grpc("ftp://b:4317").validate(),
        Err(SettingError::Endpoint(_))
    ));
    assert!(matches!(
        grpc("http://").validate(),
        Err(SettingError::Endpoint(_))
    ));
    let mut with_header = grpc("http://b:4317");
    with_header.headers = BTreeMap::from([("x-key".to_owned(), " ".to_owned())]);
    assert!(matches!(
        with_header.validate(),
        Err(SettingError::Header { name, .. }) if name == "x-key"
    ));
    // A secret that came out empty inside a value: "Bearer ${env:UNSET}", quoted (a
    // trailing space) or not (the scheme alone), over gRPC and HTTP; a real token passes.
    for value in ["Bearer ", "Bearer", "basic", " token "] {
        let mut g = grpc("http://b:4317");
        g.headers = BTreeMap::from([("authorization".to_owned(), value.to_owned())]);
        assert!(
            matches!(g.validate(), Err(SettingError::Header { problem, .. }) if problem.contains("unset")),
            "{value:?}"
        );
        let h: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
            "{{endpoint: 'http://b:4318', headers: {{authorization: '{value}'}}}}"
        ))
        .unwrap();
        assert!(
            matches!(h.validate(), Err(SettingError::Header { .. })),
            "{value:?}"
        );
    }
    let mut token = grpc("http://b:4317");
    token.headers = BTreeMap::from([("authorization".to_owned(), "Bearer abc".to_owned())]);
    token.validate().unwrap();
    // configgrpc's `authority`: a host[:port], or left empty; credentials or a port that
    // is not a number are refused (tests/client.rs in core sends with one).
    for (authority, good) in [
        ("otlp.ingress.example", true),
        ("otlp.ingress.example:443", true),
        ("", true),
        ("user@otlp.ingress.example", false),
        ("otlp.ingress.example:https", false),
        ("two words", false),
    ] {
        let mut g = grpc("https://10.0.0.7:4317");
        g.authority = Some(authority.to_owned());
        let checked = g.validate();
        assert_eq!(checked.is_ok(), good, "{authority:?}: {checked:?}");
        if !good {
            assert!(
                matches!(checked, Err(SettingError::Authority(_))),
                "{authority:?}"
            );
        }
    }
    // A scheme word elsewhere is just a value (a tenant called "basic").
    let mut tenant = grpc("http://b:4317");
    tenant.headers = BTreeMap::from([("x-scope-orgid".to_owned(), "basic".to_owned())]);
    tenant.validate().unwrap();
    let mut contradiction = grpc("http://b:4317");
    contradiction.tls = Some(tailgate_core::tls::ClientTlsConfig {
        ca_file: Some("/ca.crt".into()),
        ..Default::default()
    });
    assert!(matches!(
        contradiction.validate(),
        Err(SettingError::Tls(_))
    ));
    // An endpoint without a scheme and without a `tls:` block is dialled with TLS, as the
    // Collector dials it (as vendors document their endpoints: `api.honeycomb.io:443`).
    let bare = grpc("api.vendor.example:443");
    bare.validate().unwrap();
    assert!(bare.uses_tls());
    let mut insecure = grpc("tempo:4317");
    insecure.tls = Some(tailgate_core::tls::ClientTlsConfig {
        insecure: true,
        ..Default::default()
    });
    insecure.validate().unwrap();
    assert!(!tailgate_core::tls::ClientTlsConfig::uses_tls(
        insecure.tls.as_ref(),
        insecure.target()
    )
    .unwrap());
    let mut with_tls = grpc("api.vendor.example:443");
    with_tls.tls = Some(Default::default());
    with_tls.validate().unwrap();
    assert!(tailgate_core::tls::ClientTlsConfig::uses_tls(
        with_tls.tls.as_ref(),
        with_tls.target()
    )
    .unwrap());
    // gRPC's dns: and passthrough: resolver prefixes, as Collector configs write them
    // (configgrpc takes any), are the bare host:port.
    for written in [
        "dns:///tempo:4317",
        "dns:tempo:4317",
        "dns://10.0.0.2/tempo:4317",
        "passthrough:///tempo:4317",
        "passthrough:tempo:4317",
    ] {
        let mut g = grpc(written);
        assert_eq!(g.target(), "tempo:4317", "{written}");
        g.validate().unwrap();
        assert!(g.uses_tls(), "{written}");
        g.tls = insecure.tls.clone();
        g.validate().unwrap();
        assert!(!g.uses_tls(), "{written}");
    }
    let http: OtlpHttpConfig = serde_yaml_ng::from_str("{traces_endpoint: 'b:4318'}").unwrap();
    // Named as traces_endpoint, where it is written (a config audit found `endpoint`).
    let err = http.validate().unwrap_err();
    assert!(matches!(err, SettingError::TracesEndpoint(_)), "{err}");
    assert_eq!(err.sub_key().as_deref(), Some("traces_endpoint"));
    let http: OtlpHttpConfig = serde_yaml_ng::from_str("{endpoint: 'b:4318'}").unwrap();
    assert!(matches!(http.validate(), Err(SettingError::Endpoint(_))));
    let none: OtlpHttpConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert!(matches!(none.validate(), Err(SettingError::NoEndpoint)));
    let zero = ExportConfig {
        exporters: vec![(
            "otlp".into(),
            ExporterConfig::OtlpGrpc(OtlpGrpcConfig {
                queue_bytes: 0,
                ..grpc("http://b:4317")
            }),
        )],
        proxy_env: Default::default(),
    };
    assert!(matches!(
        zero.validate(&Default::default()),
        Err((key, SettingError::Zero { key: "queue_bytes" })) if key == "export.otlp.queue_bytes"
    ));
}

/// Scenario: what configuration.md's "Proxies" says of `proxy_url` against the proxy
/// variables: set, it wins over them and over `NO_PROXY` and loopback (as Go's
/// `http.ProxyURL`); empty or left out, the variables decide; a gRPC exporter reads
/// `HTTPS_PROXY` for an `http://` endpoint too.
/// Guarantees: each exporter's proxy is the one that text names.
#[test]
fn proxy_url_wins_and_empty_leaves_the_variables_to_decide() {
    use tailgate_core::proxy::ProxyEnv;
    let env = ProxyEnv {
        https: Some("http://egress:3128".into()),
        http: Some("http://plain-egress:8080".into()),
        no: Some("direct.example".into()),
        ..ProxyEnv::default()
    };
    let http = |yaml: &str| -> Option<String> {
        let c: OtlpHttpConfig = serde_yaml_ng::from_str(yaml).unwrap();
        c.proxy(&env).unwrap().map(|p| p.to_string())
    };
    assert_eq!(
        http("{endpoint: 'https://direct.example', proxy_url: 'http://mine:1'}").as_deref(),
        Some("http://mine:1")
    );
    assert_eq!(
        http("{endpoint: 'http://127.0.0.1:4318', proxy_url: 'mine:2'}").as_deref(),
        Some("http://mine:2")
    );
    assert_eq!(
        http("{endpoint: 'https://api.example', proxy_url: ''}").as_deref(),
        Some("http://egress:3128")
    );
    assert_eq!(
        http("{endpoint: 'http://api.example:4318'}").as_deref(),
        Some("http://plain-egress:8080")
    );
    assert_eq!(http("{endpoint: 'https://direct.example'}"), None);
    let grpc = OtlpGrpcConfig::new("http://api.example:4317");
    assert_eq!(
        grpc.proxy(&env).unwrap().map(|p| p.to_string()).as_deref(),
        Some("http://egress:3128")
    );
}

/// Scenario: five batches of 30 kept spans reach an exporter whose requests hold 100 at
/// most, all at once.
/// Guarantees: no request is cut from a batch's excess: the first takes the three that
/// fit (90 spans), the next the other two (60), every span once; before, a request of
/// 100 went out with a request of the 20 left over right behind it (a black-box check
/// saw a backend answering one request at a time take half the spans it could).
#[tokio::test]
async fn a_batch_that_does_not_fit_a_request_starts_the_next() {
    use prost::Message;
    let stop = tokio_util::sync::CancellationToken::new();
    let (backend, sink) = grpc_backend(&stop).await;
    let stats = Arc::new(GatewayStats::default());
    stats.pending_export_spans.add(150);
    let req = tailgate_core::test_util::FakeOtlp::traces(150)
        .spans(1)
        .resources(1)
        .seed(5)
        .build();
    let mut spans = req.resource_spans[0].scope_spans[0]
        .spans
        .iter()
        .map(|s| BufferedSpan::alone(Bytes::from(s.encode_to_vec())));
    let (tx, rx) = mpsc::channel(8);
    for _ in 0..5 {
        tx.send(ExportBatch {
            spans: spans.by_ref().take(30).collect(),
            tickets: vec![(Ticket::new(30, 0, 1), 30)],
            permit: None,
        })
        .await
        .unwrap();
    }
    drop(tx);
    let batch = BatchConfig {
        max_spans: 100,
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    };
    let e = exporter(rx, sink, batch, stats.clone());
    e.run().await;
    let per_request: Vec<usize> = backend
        .bodies()
        .iter()
        .map(|b| {
            let mut scan = tailgate_core::wire::Scan::default();
            scan.scan(b).unwrap();
            scan.spans.len()
        })
        .collect();
    assert_eq!(per_request, [90, 60]);
    assert_eq!(stats.exported_spans.get(), 150);
    stop.cancel();
}

/// Scenario: a backend refuses span after span as malformed, then a whole batch, within a
/// minute (configuration.md: "logged at most once a minute per exporter, with the count
/// since").
/// Guarantees: one warning for all of them, not one per span (a black-box check saw 400
/// lines a second); the next after a minute carries the spans refused since.
#[tokio::test(start_paused = true)]
async fn malformed_refusals_are_logged_once_a_minute() {
    let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
    let (_tx, rx) = mpsc::channel(1);
    let dir = tailgate_core::test_util::scratch_dir("malformed-log").unwrap();
    let mut e = exporter(rx, debug_sink(&dir), BatchConfig::default(), Arc::default());
    for _ in 0..100 {
        e.refused_as_malformed(1, "bad span", false);
    }
    e.refused_as_malformed(50, "bad batch", true);
    assert_eq!(
        log.count("as malformed"),
        1,
        "{}",
        String::from_utf8_lossy(&log.text())
    );
    tokio::time::advance(tailgate_core::retry::REWARN_AFTER).await;
    e.refused_as_malformed(1, "bad span", false);
    assert_eq!(log.count("as malformed"), 2);
    assert_eq!(
        log.count("spans=150"),
        1,
        "the spans refused since the first line"
    );
}

/// Scenario: a backend answers every request with a status that is not retried (a 500,
/// say), many times within a minute, then again after one.
/// Guarantees: one warning for all of them with the error, not a line per request (a
/// trial saw a line per request), and the next after a minute carries the spans failed
/// since.
#[tokio::test(start_paused = true)]
async fn other_failures_are_logged_once_a_minute() {
    let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
    let (_tx, rx) = mpsc::channel(1);
    let dir = tailgate_core::test_util::scratch_dir("failed-log").unwrap();
    let mut e = exporter(rx, debug_sink(&dir), BatchConfig::default(), Arc::default());
    for _ in 0..20 {
        e.failed_otherwise(5, "HTTP 500 Internal Server Error");
    }
    let text = || String::from_utf8_lossy(&log.text()).into_owned();
    assert_eq!(log.count("HTTP 500"), 1, "{}", text());
    tokio::time::advance(tailgate_core::retry::REWARN_AFTER).await;
    e.failed_otherwise(5, "HTTP 500 Internal Server Error");
    assert_eq!(log.count("HTTP 500"), 2, "{}", text());
    assert_eq!(
        log.count("spans=100"),
        1,
        "the spans failed since: {}",
        text()
    );
}

/// Scenario: a backend answers requests with a partial success that rejects no span but
/// carries a message (OTLP's way of warning), many times within a minute, then again after
/// one.
/// Guarantees: the message is logged, as the Collector logs such an answer (a trial found it
/// logged nowhere), at most once a minute, with the count of such answers since.
#[tokio::test(start_paused = true)]
async fn a_backends_warning_is_logged_once_a_minute() {
    let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
    let (_tx, rx) = mpsc::channel(1);
    let dir = tailgate_core::test_util::scratch_dir("backend-warning").unwrap();
    let mut e = exporter(rx, debug_sink(&dir), BatchConfig::default(), Arc::default());
    for _ in 0..10 {
        e.warned_by_backend("attribute values truncated");
    }
    let text = || String::from_utf8_lossy(&log.text()).into_owned();
    assert_eq!(log.count("attribute values truncated"), 1, "{}", text());
    tokio::time::advance(tailgate_core::retry::REWARN_AFTER).await;
    e.warned_by_backend("attribute values truncated");
    assert_eq!(log.count("attribute values truncated"), 2, "{}", text());
    assert_eq!(
        log.count("responses=10"),
        1,
        "the answers since the first line: {}",
        text()
    );
}

/// Scenario: a backend refusing every request as too large (a quota answered
/// RESOURCE_EXHAUSTED without a retry hint looks the same); a batch of 40 spans, each
/// smaller than the one before, each alone still too large.
/// Guarantees: every span counts failed, and the refused single spans are logged once
/// with their count, not a line per span (a trial saw one line per span).
#[tokio::test]
async fn single_spans_refused_as_too_large_are_logged_once_a_minute() {
    use prost::Message;
    let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
    let stop = tokio_util::sync::CancellationToken::new();
    let (backend, sink) = grpc_backend(&stop).await;
    backend.refuse_requests_over(Some(1));
    let stats = Arc::new(GatewayStats::default());
    stats.pending_export_spans.add(40);
    let req = tailgate_core::test_util::FakeOtlp::traces(40)
        .spans(1)
        .resources(40)
        .seed(7)
        .build();
    // Each smaller than the one before: every one is tried alone (a part as large as one
    // refused is not sent again).
    let spans: Vec<BufferedSpan> = req
        .resource_spans
        .iter()
        .flat_map(|r| r.scope_spans[0].spans.iter())
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            s.attributes.clear();
            s.name = "n".repeat(1000 - i);
            BufferedSpan::alone(Bytes::from(s.encode_to_vec()))
        })
        .collect();
    let (tx, rx) = mpsc::channel(1);
    tx.send(ExportBatch {
        spans,
        tickets: vec![(Ticket::new(40, 0, 1), 40)],
        permit: None,
    })
    .await
    .unwrap();
    drop(tx);
    exporter(rx, sink, BatchConfig::default(), stats.clone())
        .run()
        .await;
    assert_eq!(stats.export_failed_spans.get(), 40);
    assert_eq!(backend.spans(), 0);
    let text = String::from_utf8_lossy(&log.text()).into_owned();
    assert!(
        backend.too_large_requests() >= 40,
        "each span was tried alone"
    );
    assert_eq!(log.count("Backend refused single spans"), 1, "{text}");
    assert!(log.count("as too large") <= 3, "a line per span: {text}");
    stop.cancel();
}

/// Scenario: an exporter past its retry bound looks at its hold rule: with a sender just
/// refused for memory, then ten seconds later with no refusal since, then after another
/// refusal, then with shards waiting on it.
/// Guarantees: it gives the request up (false) while senders are refused since its last
/// look, and holds it (true) once they are not, though the last refusal is within a
/// minute (a trial saw requests given up for a minute after refusals had ended); shards
/// waiting make it give up too.
#[tokio::test(start_paused = true)]
async fn the_hold_looks_for_refusals_since_its_last_look() {
    let stats = Arc::new(GatewayStats::default());
    let waiting = Arc::new(Gauge::default());
    let hold = super::hold_rule(stats.clone(), waiting.clone(), u64::MAX);
    stats.last_memory_refusal.mark();
    assert!(!hold(), "a sender was just refused");
    tokio::time::advance(std::time::Duration::from_secs(10)).await;
    assert!(hold(), "no refusal since the last look");
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    stats.last_memory_refusal.mark();
    tokio::time::advance(std::time::Duration::from_secs(4)).await;
    assert!(!hold(), "refused since the last look");
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    waiting.add(1);
    assert!(!hold(), "shards wait for the queue");
}

/// Scenario: a proxy refused, once from an exporter's `proxy_url`, once from
/// `HTTPS_PROXY` (which an `otlp` exporter, having no `proxy_url`, takes too).
/// Guarantees: only the first names `proxy_url` as the key at fault; the variable's is
/// named at the exporter (an audit saw `export.otlp.proxy_url: HTTPS_PROXY …`).
#[test]
fn a_proxy_from_a_variable_is_not_named_as_proxy_url() {
    let invalid = |source_name: &str| {
        SettingError::from(tailgate_core::proxy::ProxyError::Invalid {
            source_name: source_name.into(),
            value: "socks5://proxy:1080".into(),
            problem: "only http:// proxies are supported",
        })
    };
    assert_eq!(invalid("proxy_url").sub_key().as_deref(), Some("proxy_url"));
    assert_eq!(invalid("HTTPS_PROXY").sub_key(), None);
    assert_eq!(invalid("https_proxy").sub_key(), None);
}
