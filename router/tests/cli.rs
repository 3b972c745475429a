#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The router binary's `--check`: what an operator runs before rolling a config out.

use std::process::Command;

/// Runs `tailgate-router --config <yaml> --check`: (exit code, stderr, stdout).
fn check(name: &str, yaml: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("tailgate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("router.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
        .args(["--check", "--config"])
        .arg(&config)
        // As tokio reads it: the memory note counts the runtime's worker threads.
        .env("TOKIO_WORKER_THREADS", "3")
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Scenario: a config whose `receive.cors` lists headers but no origins (the Collector
/// ignores such a block with a warning). Guarantees: `--check` accepts it and prints the
/// warning, so the operator learns before the rollout that browsers will not be let in.
#[test]
fn check_prints_the_warnings_a_start_would_log() {
    let (code, stderr, stdout) = check(
        "cors",
        "receive: { cors: { allowed_headers: [x-api-key] } }\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "router.yaml: warning: receive.cors lists allowed_headers but no allowed_origins"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    let (code, stderr, stdout) = check(
        "plain",
        "receive: { cors: { allowed_origins: ['https://*.example.com'] } }\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // The verdict on stdout, for scripts; warnings and errors on stderr.
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    assert!(!stderr.contains(": ok"), "{stderr}");
}

/// Scenario: a config with a misspelt key. Guarantees: `--check` exits 64 (EX_USAGE) and
/// names the file, the line and the key.
#[test]
fn check_names_the_file_line_and_key_of_an_error() {
    let (code, stderr, stdout) = check(
        "typo",
        "receive:\n  cors:\n    allowed_origin: ['*']\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("router.yaml"), "{stderr}");
    assert!(stderr.contains("allowed_origin"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}

/// Scenario: `--check` on a config with two static gateways and 1,000 connections a
/// receiver, then on one that finds its gateways by DNS.
/// Guarantees: the check prints the memory the config allows on stderr, its total and a
/// line per term (the connections' term from the config's own numbers: 1,000 × 2 ports ×
/// 336 KiB = 657 MiB, rounded up; the sending term, 4 parts as large as a request for each
/// gateway); with DNS it says the bound counts one gateway and what each more adds (4
/// parts and one request's part in the queue, 80 MiB).
#[test]
fn check_prints_the_memory_the_config_allows() {
    let (code, stderr, _) = check(
        "memory",
        "receive: { max_connections: 1000 }\nmembers: { static: ['127.0.0.62:4317', '127.0.0.63:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    let note = stderr
        .lines()
        .position(|l| l.contains("router.yaml: note: memory"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let lines: Vec<&str> = stderr.lines().skip(note).collect();
    // base 32, queued 32, in flight 64, connections 656.25, held 128, sending 4 × 16 × 2,
    // and 8 × 16 MiB for each of TOKIO_WORKER_THREADS's 3.
    assert!(
        lines[0].contains("memory: up to about 1425 MiB (3 worker threads; keep the container's memory limit above it"),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "384 MiB  8 × receive.max_request_bytes × 3 worker threads (scans and splits of bare spans)"),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.trim() == "657 MiB  receive.max_connections × 2 port(s) × 336 KiB (connections hostile senders hold)"),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.trim()
            == "128 MiB  forward.max_in_flight × max(forward.max_request_bytes, receive.max_request_bytes) × 2 gateway(s) (sending)"),
        "{stderr}"
    );
    let (code, stderr, _) = check(
        "memory-dns",
        "members: { dns: { name: gateways.example.internal, port: 4317 } }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("members from DNS: counted as one gateway, each more adds up to 80 MiB"),
        "{stderr}"
    );
}

/// Scenario: the load-balancing tier's whole Collector config (the loadbalancing
/// exporter README's Kubernetes example, routed by trace id, as the tier in front of
/// `tail_sampling` runs it) given to `--check`, then the same with `routing_key: service`.
/// Guarantees: the first loads, with notes naming what the router does not apply and
/// what the k8s resolver needs here (a headless Service); the second is refused naming
/// the key and its line.
#[test]
fn check_reads_a_loadbalancing_collector_config() {
    let config = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\nprocessors:\n  batch: {}\nexporters:\n  debug: {}\n  loadbalancing:\n    routing_key: traceID\n    protocol:\n      otlp:\n        timeout: 1s\n    resolver:\n      k8s:\n        service: lb-svc.kube-public\n        ports:\n          - 15317\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [loadbalancing]\n    logs:\n      receivers: [otlp]\n      exporters: [debug]\n";
    let (code, stderr, stdout) = check("collector", config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    for note in [
        "router.yaml: note: service.pipelines.traces: processors batch not applied",
        "router.yaml: note: service.pipelines.logs: not taken: the router receives traces only",
        "resolving \"lb-svc.kube-public\" in DNS",
        "headless",
        "protocol.otlp.tls not written: gateways are dialled over TLS",
    ] {
        assert!(stderr.contains(note), "{note}: {stderr}");
    }
    let (code, stderr, _) = check(
        "collector-service",
        &config.replace("routing_key: traceID", "routing_key: service"),
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("router.yaml:11: exporters.loadbalancing.routing_key: \"service\""),
        "{stderr}"
    );
}

/// Scenario: one mistake each in a `tls:` block, a receiver's keepalive, a static member
/// and a DNS resolver, in the router's own config and in a Collector config, with the
/// key a few lines below its block.
/// Guarantees: the error names the key's own line and its whole path as the file writes
/// it (a config audit found them naming the `tls:` line, the receiver's line or the
/// resolver's, and Collector paths with levels left out).
#[test]
fn errors_name_the_line_and_path_of_the_key_written() {
    let collector = |receiver: &str, resolver: &str| {
        format!("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n{receiver}exporters:\n  loadbalancing:\n    protocol:\n      otlp:\n        tls:\n          insecure: true\n          min_version: \"1.2\"\n    resolver:\n{resolver}service:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n")
    };
    let statics =
        "      static:\n        hostnames:\n          - gw-1:4317\n          - gw-2:4317\n";
    for (name, yaml, expected) in [
        (
            "own-tls",
            "members: {static: [127.0.0.2:4317]}\nforward:\n  tls:\n    server_name_override: gw\n\n    min_version: \"1.5\"\n".to_owned(),
            "router.yaml:6: forward.tls.min_version: \"1.5\" is not a TLS version",
        ),
        (
            "collector-receiver-tls",
            collector("        tls:\n          cert_file: /nonexistent/tls.crt\n          key_file: /nonexistent/tls.key\n          max_version: \"1.0.1\"\n", statics),
            "router.yaml:9: receivers.otlp.protocols.grpc.tls.max_version: \"1.0.1\"",
        ),
        (
            "collector-exporter-tls",
            collector("", statics).replace("min_version: \"1.2\"", "min_version: \"1.5\""),
            "router.yaml:12: exporters.loadbalancing.protocol.otlp.tls.min_version: \"1.5\"",
        ),
        (
            "collector-keepalive",
            collector("        keepalive:\n          server_parameters:\n            max_connection_age: 5min\n", statics),
            "router.yaml:8: receivers.otlp.protocols.grpc.keepalive.server_parameters.max_connection_age: invalid duration \"5min\"",
        ),
        (
            "collector-hostname",
            collector("", &statics.replace("gw-2:4317", "gw-2:4317:9")),
            "router.yaml:17: exporters.loadbalancing.resolver.static.hostnames[1]: \"gw-2:4317:9\" is not host:port",
        ),
        (
            "collector-dns",
            collector("", "      dns:\n        port: 4317\n"),
            "router.yaml:14: exporters.loadbalancing.resolver.dns.hostname: no hostname specified",
        ),
    ] {
        let (code, stderr, _) = check(name, &yaml);
        assert_eq!(code, Some(64), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
    }
}

/// Scenario: a Collector config of the load-balancing tier with TLS on its receiver and
/// towards the gateways (mTLS), its files mounted from Secrets where it runs, checked on
/// a machine without them (CI); then one of them present but not PEM; then started here.
/// Guarantees: `--check` takes it and names each absent file in a note (the Collector's
/// `validate` opens none; an adoption trial had such a config refused); a file that is
/// here is still read and refused when bad; starting refuses the absent file.
#[test]
fn check_names_tls_files_that_are_not_on_this_machine() {
    let config = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n        tls:\n          cert_file: /nonexistent/tailgate/tls.crt\n          key_file: /nonexistent/tailgate/tls.key\nexporters:\n  loadbalancing:\n    protocol:\n      otlp:\n        tls:\n          ca_file: CA\n          cert_file: /nonexistent/tailgate/client.crt\n          key_file: /nonexistent/tailgate/client.key\n    resolver:\n      static:\n        hostnames: [127.0.0.62:4317]\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n";
    let (code, stderr, stdout) = check(
        "absent-tls",
        &config.replace("CA", "/nonexistent/tailgate/ca.crt"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    for (key, file) in [
        ("cert_file", "tls.crt"),
        ("key_file", "tls.key"),
        ("ca_file", "ca.crt"),
        ("cert_file", "client.crt"),
        ("key_file", "client.key"),
    ] {
        let note = format!("note: {key}: /nonexistent/tailgate/{file} is not on this machine");
        assert!(stderr.contains(&note), "{note}: {stderr}");
    }

    // A receiver's token file likewise (a review found it still refused).
    let (code, stderr, _) = check(
        "absent-token",
        "receive: {grpc: 127.0.0.1:4317, auth: {bearer_token_file: /nonexistent/tailgate/token}}\nmembers: {static: ['127.0.0.62:4317']}\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "receive.auth.bearer_token_file: /nonexistent/tailgate/token is not on this machine"
        ),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("tailgate-cli-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("ca.crt");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let (code, stderr, _) = check("bad-ca", &config.replace("CA", bad.to_str().unwrap()));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("ca_file"), "{stderr}");
    assert!(stderr.contains("no PEM certificate found"), "{stderr}");

    let path = dir.join("router.yaml");
    std::fs::write(&path, config.replace("CA", "/nonexistent/tailgate/ca.crt")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("/nonexistent/tailgate/"), "{stderr}");
}

/// Scenario: a Collector config of the load-balancing tier whose receiver listens on a
/// host name that resolves only where it runs (a Compose service name; here `.invalid`,
/// which never resolves), checked on another machine, then started here; and the same in
/// Tailgate's own config.
/// Guarantees: `--check` takes it and names the address in a note (the Collector's
/// `validate` resolves nothing; an adoption trial had such a config refused); starting
/// refuses it, naming the `endpoint:` line (it named the receiver's).
#[test]
fn check_takes_a_listen_host_that_resolves_only_where_it_runs() {
    let config = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: otel-lb.invalid:4317\nexporters:\n  loadbalancing:\n    protocol:\n      otlp: {}\n    resolver:\n      static:\n        hostnames: [127.0.0.62:4317]\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [loadbalancing]\n";
    let (code, stderr, stdout) = check("unresolved", config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    assert!(
        stderr.contains(
            "note: listen address \"otel-lb.invalid:4317\" does not resolve on this machine"
        ),
        "{stderr}"
    );
    let (code, stderr, _) = check(
        "unresolved-own",
        "receive: { grpc: 'otel-lb.invalid:4317' }\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("\"otel-lb.invalid:4317\" does not resolve"),
        "{stderr}"
    );

    let dir = std::env::temp_dir().join(format!("tailgate-cli-start-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("router.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("router.yaml:5: receivers.otlp.protocols.grpc.endpoint: listen address \"otel-lb.invalid:4317\""),
        "{stderr}"
    );
}
