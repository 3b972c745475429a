#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The gateway binary's policy tools as an operator runs them: `check-policies` before a
//! rollout, `explain` on recorded traces.

use std::path::PathBuf;
use std::process::{Command, Output};

/// A scratch directory holding `policies.yaml` (a latency rule written in OTTL) and
/// `traces.jsonl` (a 3 s trace and a 1 s one, as the `file` exporter writes them).
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tailgate-gw-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("policies.yaml"),
        "policies:\n  - name: slow\n    type: ottl_condition\n    ottl_condition:\n      span:\n        - 'span.end_time - span.start_time > Duration(\"2s\")'\n",
    )
    .unwrap();
    let trace = |id: &str, seconds: u64| {
        format!(
            r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"traceId":"{id}","spanId":"00f067aa0ba902b7","name":"op","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"{}"}}]}}]}}]}}"#,
            1_700_000_000_000_000_000u64 + seconds * 1_000_000_000
        )
    };
    std::fs::write(
        dir.join("traces.jsonl"),
        format!(
            "{}\n{}\n",
            trace("4bf92f3577b34da6a3ce929d0e0e4736", 3),
            trace("4bf92f3577b34da6a3ce929d0e0e4737", 1)
        ),
    )
    .unwrap();
    dir
}

fn gateway(args: &[&str], dir: &PathBuf) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Scenario: `check-policies` with the file as an argument, with `--policies` (as
/// `explain` and the server take it), with both, and with neither.
/// Guarantees: the first two validate the file (exit 0, the plan printed); both or
/// neither is a usage error naming the option.
#[test]
fn check_policies_takes_the_file_either_way() {
    let dir = scratch("check");
    for args in [
        &["check-policies", "policies.yaml"][..],
        &["check-policies", "--policies", "policies.yaml"],
    ] {
        let out = gateway(args, &dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(stdout.contains("Duration(\"2s\")"), "{args:?}: {stdout}");
    }
    let both = gateway(
        &[
            "check-policies",
            "policies.yaml",
            "--policies",
            "policies.yaml",
        ],
        &dir,
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("--policies"));
    let neither = gateway(&["check-policies"], &dir);
    assert_eq!(neither.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `explain` replays the two traces through the OTTL latency rule.
/// Guarantees: the rule keeps the 3 s trace alone, and the per-trace view says so.
#[test]
fn explain_keeps_the_slow_trace_by_an_ottl_latency_rule() {
    let dir = scratch("explain");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--policies",
            "policies.yaml",
            "--traces",
            "traces.jsonl",
        ];
        args.extend_from_slice(extra);
        let out = gateway(&args, &dir);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let all = run(&[]);
    assert!(all.contains("the plan keeps 1 traces (50.00%)"), "{all}");
    let slow = run(&["--trace-id", "4bf92f3577b34da6a3ce929d0e0e4736"]);
    assert!(slow.contains("kept by \"slow\""), "{slow}");
    let fast = run(&["--trace-id", "4bf92f3577b34da6a3ce929d0e0e4737"]);
    assert!(fast.contains("not kept: no policy sampled it"), "{fast}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `explain --traces` given more than `--max-traces-mib` (a recording too large,
/// or `/dev/zero` by mistake).
/// Guarantees: a usage error naming the bound and the option, after reading no more than
/// the bound (`/dev/zero` ends); the same file under a larger bound replays.
#[test]
fn explain_refuses_a_recording_past_its_bound() {
    let dir = scratch("explain-bound");
    let big = dir.join("big.jsonl");
    let line = std::fs::read_to_string(dir.join("traces.jsonl")).unwrap();
    std::fs::write(&big, line.repeat((1 << 20) / line.len() + 1)).unwrap();
    for traces in [big.to_str().unwrap(), "/dev/zero"] {
        let out = gateway(
            &[
                "explain",
                "--policies",
                "policies.yaml",
                "--traces",
                traces,
                "--max-traces-mib",
                "1",
            ],
            &dir,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{traces}: {stderr}");
        assert!(
            stderr.contains("larger than 1 MiB (--max-traces-mib)"),
            "{traces}: {stderr}"
        );
    }
    let out = gateway(
        &[
            "explain",
            "--policies",
            "policies.yaml",
            "--traces",
            big.to_str().unwrap(),
            "--max-traces-mib",
            "2",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: the shipped Kubernetes config and policies checked as docs/deploy.md says,
/// outside a pod, with the pod's variables given on the command line.
/// Guarantees: exit 0 (a docs audit found the bare command failing outside a pod: the
/// config reads POD_NAMESPACE, POD_IP and TAILGATE_PEER_SECRET), and without them a
/// message naming the missing variable.
#[test]
fn the_shipped_config_checks_as_deploy_md_says() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/config");
    let run = |with_env: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"));
        cmd.args([
            "--config",
            "gateway.yaml",
            "--policies",
            "policies.yaml",
            "--check",
        ])
        .current_dir(&base)
        .env_remove("POD_NAMESPACE")
        .env_remove("POD_IP")
        .env_remove("TAILGATE_PEER_SECRET");
        if with_env {
            cmd.env("POD_NAMESPACE", "tailgate")
                .env("POD_IP", "127.0.0.1")
                .env("TAILGATE_PEER_SECRET", "check");
        }
        cmd.output().unwrap()
    };
    let out = run(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The verdict goes to stdout (for scripts), one line per file.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "gateway.yaml: ok\npolicies.yaml: ok\n"
    );
    let out = run(false);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("POD_NAMESPACE")
            || err.contains("TAILGATE_PEER_SECRET")
            || err.contains("POD_IP"),
        "{err}"
    );
}

/// Scenario: `--check` with one file only: the shipped config alone, the shipped policies
/// alone, a config with a tab-indented line alone, and `--check` with neither.
/// Guarantees: each file given is checked on its own (`FILE: ok`, exit 0; or the error,
/// exit 64), a config with the memory it allows on this machine; with neither, a usage
/// error (64) that says --check takes either.
#[test]
fn check_takes_either_file_alone() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/config");
    let check = |args: &[&str], dir: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .arg("--check")
            .args(args)
            .current_dir(dir)
            .env("POD_NAMESPACE", "tailgate")
            .env("POD_IP", "127.0.0.1")
            .env("TAILGATE_PEER_SECRET", "check")
            // The runtime's worker threads, as tokio reads them: a node of 8 cores.
            .env("TOKIO_WORKER_THREADS", "8")
            .output()
            .unwrap()
    };
    let config = check(&["--config", "gateway.yaml"], &base);
    assert_eq!(config.status.code(), Some(0), "{config:?}");
    assert_eq!(
        String::from_utf8_lossy(&config.stdout),
        "gateway.yaml: ok\n"
    );
    // The memory the shipped config allows on 8 cores, as docs/deploy.md says (about 1,699
    // MiB, under the 1792 Mi limit): the 1 GiB buffer and a 4 MiB request's scan per
    // worker thread among the terms.
    let err = String::from_utf8_lossy(&config.stderr);
    assert!(
        err.contains("gateway.yaml: note: memory: up to about 1699 MiB (8 worker threads;"),
        "{err}"
    );
    let terms: Vec<&str> = err.lines().map(str::trim).collect();
    assert!(
        terms.contains(&"1127 MiB  buffer.max_buffered_bytes × 1.1"),
        "{err}"
    );
    assert!(
        terms.contains(
            &"192 MiB  6 × receive.max_request_bytes × 8 worker threads (scans of bare spans)"
        ),
        "{err}"
    );
    // `--threads` wins over the environment, as the router's does.
    let threads = check(&["--config", "gateway.yaml", "--threads", "3"], &base);
    let err = String::from_utf8_lossy(&threads.stderr);
    assert!(err.contains("(3 worker threads;"), "{err}");
    let policies = check(&["--policies", "policies.yaml"], &base);
    assert_eq!(policies.status.code(), Some(0), "{policies:?}");
    assert_eq!(
        String::from_utf8_lossy(&policies.stdout),
        "policies.yaml: ok\n"
    );
    let dir = scratch("check-one");
    std::fs::write(
        dir.join("tabbed.yaml"),
        "receive:\n\tgrpc: 127.0.0.1:4317\n",
    )
    .unwrap();
    let tabbed = check(&["--config", "tabbed.yaml"], &dir);
    assert_eq!(tabbed.status.code(), Some(64));
    let err = String::from_utf8_lossy(&tabbed.stderr);
    assert!(
        err.contains("tabbed.yaml:2") && err.contains("indented with a tab"),
        "{err}"
    );
    let neither = check(&[], &dir);
    assert_eq!(neither.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--check takes either"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `--check --config` on exporters to a backend on the internet, to one in the
/// cluster and to an `http://` one outside it, with the proxy variables a cluster with a
/// corporate egress proxy sets, in their spellings; then a SOCKS proxy in `HTTPS_PROXY`.
/// Guarantees: the check says which exporter goes through which proxy and from which
/// variable, by the name it was set under (the lower-case one when the upper-case one
/// is empty, as in Go), and that the one `NO_PROXY` names connects directly; `ALL_PROXY`
/// is not read; `HTTP_PROXY` under CGI (`REQUEST_METHOD` set) is an error, as Go makes
/// it; a proxy Tailgate cannot use is an error naming the exporter and the variable
/// (exit 64), its password not shown.
#[test]
fn check_names_the_proxy_each_exporter_takes() {
    let dir = scratch("check-proxy");
    std::fs::write(
        dir.join("gateway.yaml"),
        "export:\n  otlp/saas:\n    endpoint: api.example.com:443\n  otlphttp/incluster:\n    endpoint: http://tempo.monitoring.svc.cluster.local:4318\n  otlphttp/plain:\n    endpoint: http://archive.example.com:4318\n",
    )
    .unwrap();
    let check = |vars: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"));
        cmd.args(["--check", "--config", "gateway.yaml"])
            .current_dir(&dir);
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "NO_PROXY",
            "no_proxy",
            "ALL_PROXY",
            "all_proxy",
            "REQUEST_METHOD",
        ] {
            cmd.env_remove(name);
        }
        cmd.env("NO_PROXY", ".svc.cluster.local,10.0.0.0/8");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), err)
    };
    let note = |key: &str, proxy: &str, var: &str| {
        format!("note: export.{key} connects through the proxy {proxy} (from {var})")
    };
    let (code, err) = check(&[
        ("HTTPS_PROXY", "http://egress.corp:3128"),
        ("http_proxy", "plain.corp:8080"),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&note("otlp/saas", "http://egress.corp:3128", "HTTPS_PROXY")),
        "{err}"
    );
    assert!(
        err.contains(&note(
            "otlphttp/plain",
            "http://plain.corp:8080",
            "http_proxy"
        )),
        "{err}"
    );
    assert!(
        err.contains(
            "note: export.otlphttp/incluster connects directly to \
             tempo.monitoring.svc.cluster.local, though http_proxy is set"
        ),
        "{err}"
    );
    let (code, err) = check(&[("HTTPS_PROXY", ""), ("https_proxy", "egress.corp:3128")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&note("otlp/saas", "http://egress.corp:3128", "https_proxy")),
        "{err}"
    );
    let (code, err) = check(&[("ALL_PROXY", "http://egress.corp:3128")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("connects"), "{err}");
    let (code, err) = check(&[
        ("HTTP_PROXY", "http://plain.corp:8080"),
        ("REQUEST_METHOD", "GET"),
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("HTTP_PROXY") && err.contains("CGI"), "{err}");
    let (code, err) = check(&[("HTTPS_PROXY", "socks5://me:hunter2@egress.corp:1080")]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("export.otlp/saas")
            && err.contains("HTTPS_PROXY")
            && err.contains("only http:// proxies"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: the gateway started (not `--check`) with an exporter `HTTPS_PROXY` sends
/// through a proxy, its log read until it says so (at most 200 lines, 20 s each), then
/// stopped.
/// Guarantees: the note `--check` prints is logged at start too.
#[test]
fn the_gateway_logs_its_proxies_at_start() {
    use std::io::BufRead as _;
    let dir = scratch("start-proxy");
    std::fs::write(
        dir.join("gateway.yaml"),
        "receive:\n  grpc: 127.0.0.1:0\n  http: null\nexport:\n  otlp/saas:\n    endpoint: api.example.com:443\nadmin: null\nmetrics: null\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args(["--config", "gateway.yaml", "--policies", "policies.yaml"])
        .current_dir(&dir)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env("HTTPS_PROXY", "http://egress.corp:3128")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // At most 200 lines, each within 20 s: the note comes before the gateway serves.
    let mut seen = Vec::new();
    let mut found = false;
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(20)) {
        if line.contains(
            "export.otlp/saas connects through the proxy http://egress.corp:3128 (from HTTPS_PROXY)",
        ) {
            found = true;
            break;
        }
        seen.push(line);
        if seen.len() == 200 {
            break;
        }
    }
    child.kill().ok();
    child.wait().ok();
    std::fs::remove_dir_all(&dir).ok();
    assert!(found, "{seen:#?}");
}

/// Scenario: deploy.md's "Behind an egress proxy": the shipped gateway config checked with
/// its `HTTPS_PROXY` and `NO_PROXY`, and with `NO_PROXY` lacking the `tempo.tempo` entry.
/// Guarantees: with it, the exporter to `tempo.tempo` connects directly; without it, the
/// suffix and range entries do not cover the short name and it would go through the proxy.
#[test]
fn deploy_md_no_proxy_keeps_the_shipped_backend_direct() {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base/config");
    let check = |no_proxy: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .args(["--check", "--config", "gateway.yaml"])
            .current_dir(&base)
            .env("POD_NAMESPACE", "tailgate")
            .env("POD_IP", "127.0.0.1")
            .env("TAILGATE_PEER_SECRET", "check")
            .env_remove("https_proxy")
            .env_remove("no_proxy")
            .env("HTTPS_PROXY", "http://egress.corp.example:3128")
            .env("NO_PROXY", no_proxy)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = check("tempo.tempo,.svc,.svc.cluster.local,10.0.0.0/8");
    assert!(err.contains("connects directly to tempo.tempo"), "{err}");
    let err = check(".svc,.svc.cluster.local,10.0.0.0/8");
    assert!(
        err.contains("connects through the proxy http://egress.corp.example:3128"),
        "{err}"
    );
}

/// Scenario: `--help`.
/// Guarantees: it names the environment variables the gateway reads for exporters (proxies,
/// AWS and Google credentials), so an operator finds them without the docs.
#[test]
fn help_names_the_environment_it_reads() {
    let dir = scratch("help-env");
    let out = gateway(&["--help"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for name in [
        "HTTPS_PROXY",
        "NO_PROXY",
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ] {
        assert!(text.contains(name), "{name} not in --help:\n{text}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `--check --policies` on a whole Collector config whose pipeline runs a
/// `filter` before `tail_sampling`, with an `invert_match` rule and an unset `${env:}`
/// reference (found by a user trial: `--check` showed none of what `check-policies` did).
/// Guarantees: `--check` exits 0 and prints, on stderr, the processor warning, the
/// version note on `invert_match` (as `check-policies` does), and the unset variable's
/// warning with its line and file; not the warnings about the `exporters` section's
/// references, which Tailgate does not read (found by a user trial: an unset API key
/// variable of the Collector's exporter was warned about at every start).
#[test]
fn check_shows_the_warnings_and_notes_check_policies_shows() {
    let dir = scratch("check-notes");
    std::fs::write(
        dir.join("collector.yaml"),
        "exporters:\n  otlphttp:\n    endpoint: ${env:TAILGATE_TEST_UNSET_ENDPOINT}\n    headers: {x-key: Key ${env:TAILGATE_TEST_UNSET_KEY}}\nprocessors:\n  filter/health: {traces: {span: ['attributes[\"url.path\"] == \"/health\"']}}\n  tail_sampling:\n    policies:\n      - {name: not-staging, type: string_attribute, string_attribute: {key: env, values: [staging], invert_match: true}}\n      - {name: tier, type: string_attribute, string_attribute: {key: tier, values: [gold, \"${env:TAILGATE_TEST_UNSET_TIER}\"]}}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [filter/health, tail_sampling], exporters: [otlp]}\n",
    )
    .unwrap();
    let out = gateway(&["--check", "--policies", "collector.yaml"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr.contains(
            "collector.yaml: warning: pipeline traces runs filter/health before tail_sampling"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("collector.yaml: note: invert_match: since Collector v0.144"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("accepted but not applied: pipeline"),
        "{stderr}"
    );
    let unset = stderr
        .lines()
        .find(|l| l.contains("TAILGATE_TEST_UNSET_TIER"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        unset.contains("file=collector.yaml") && unset.contains("line=10"),
        "{unset}"
    );
    for unread in ["TAILGATE_TEST_UNSET_ENDPOINT", "TAILGATE_TEST_UNSET_KEY"] {
        assert!(!stderr.contains(unread), "{stderr}");
    }
}

/// Scenario: `--check --config` on a gateway config whose exporter header is
/// `Bearer ${env:TOKEN}` unquoted, with a token that reads fine as plain YAML (found by a
/// user trial: the file passed, and a rotated token holding `#` or `: ` would be refused at
/// start), and the same value double-quoted.
/// Guarantees: the unquoted one passes with a warning naming the line and the reference;
/// the quoted one passes without it.
#[test]
fn a_reference_inside_an_unquoted_value_is_warned_about() {
    let dir = scratch("embedded-ref");
    let config = |value: &str| {
        format!("receive: {{grpc: 127.0.0.1:0, http: null}}\nexport:\n  otlp_grpc:\n    endpoint: http://127.0.0.1:4317\n    headers:\n      authorization: {value}\n")
    };
    let check = |value: &str| {
        std::fs::write(dir.join("gateway.yaml"), config(value)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .args(["--check", "--config", "gateway.yaml"])
            .env("TAILGATE_TEST_TOKEN", "abc123")
            .current_dir(&dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = check("Bearer ${env:TAILGATE_TEST_TOKEN}");
    let warning = stderr
        .lines()
        .find(|l| l.contains("inside a longer unquoted value"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        warning.contains("line=6") && warning.contains("${env:TAILGATE_TEST_TOKEN}"),
        "{warning}"
    );
    // The Helm chart's address form: nothing a value could hold there breaks it.
    let stderr = check("${env:TAILGATE_TEST_TOKEN}:4317");
    assert!(
        !stderr.contains("inside a longer unquoted value"),
        "{stderr}"
    );
    let stderr = check("\"Bearer ${env:TAILGATE_TEST_TOKEN}\"");
    assert!(
        !stderr.contains("inside a longer unquoted value"),
        "{stderr}"
    );
}

/// Scenario: `--check` of a gateway config beside a policy file whose `decision_cache`
/// holds 10 million entries.
/// Guarantees: the memory note counts the cache the shards will make, the policy file's
/// size replacing the config's (a policy audit found a 5 GB cache left out of it).
#[test]
fn check_counts_the_policy_files_decision_cache() {
    let dir = scratch("check-cache");
    std::fs::write(
        dir.join("gateway.yaml"),
        "receive: {grpc: 127.0.0.1:4317}\nexport: {debug: {}}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("cached.yaml"),
        "decision_cache: {sampled_cache_size: 10000000}\npolicies:\n  - {name: all, type: always_sample}\n",
    )
    .unwrap();
    let out = gateway(
        &[
            "--check",
            "--config",
            "gateway.yaml",
            "--policies",
            "cached.yaml",
            "--threads",
            "2",
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    // 9,800,000 entries beyond the base's 200,000, at 26 bytes: 242.99 MiB, rounded up.
    assert!(
        err.lines()
            .any(|l| l.trim() == "243 MiB  decision cache entries beyond the base's 200000 × 26 B"),
        "{err}"
    );
}

/// Scenario: a gateway config of a peer cluster (static peers, no `peers.self`, no
/// `POD_IP`) whose receiver listens on a host name that resolves only where it runs,
/// checked here.
/// Guarantees: `--check` takes it with a note; the address taken for the check is no
/// "every interface" one, which the gateway's identity refuses (a review found
/// `peers.self … 0.0.0.0:4317` refused).
#[test]
fn check_takes_a_gateway_listen_host_that_resolves_only_where_it_runs() {
    let dir = scratch("unresolved-listen");
    std::fs::write(
        dir.join("gateway.yaml"),
        "receive: { grpc: 'gateway-1.invalid:4317' }\npeers: { static: ['127.0.0.71:4317', '127.0.0.72:4317'] }\nexport: { debug: {} }\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
        .args([
            "--check",
            "--config",
            "gateway.yaml",
            "--policies",
            "policies.yaml",
        ])
        .current_dir(&dir)
        .env_remove("POD_IP")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr
            .contains("listen address \"gateway-1.invalid:4317\" does not resolve on this machine"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a `tls:` value a few lines below its block, in an exporter of the gateway's
/// own config and in a Collector config's receiver.
/// Guarantees: the error names the key's own line and whole path, once (a config audit
/// found the `tls:` line or the receiver's, `tls: tls:`, and `receivers.otlp` alone).
#[test]
fn tls_errors_name_the_line_and_path_of_their_key() {
    let dir = scratch("tls-lines");
    let own = "export:\n  otlp_http:\n    endpoint: https://backend.example\n    tls:\n      insecure_skip_verify: false\n      min_version: \"1.5\"\n";
    let collector = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n        tls:\n          cert_file: /nonexistent/tls.crt\n          key_file: /nonexistent/tls.key\n          min_version: \"1.5\"\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  debug: {}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [debug]}\n";
    for (text, args, expected) in [
        (
            own,
            &["--check", "--config", "config.yaml", "--policies", "policies.yaml"][..],
            "config.yaml:6: export.otlp_http.tls.min_version: \"1.5\" is not a TLS version",
        ),
        (
            collector,
            &["--check", "--config", "config.yaml"],
            "config.yaml:9: receivers.otlp.protocols.grpc.tls.min_version: \"1.5\" is not a TLS version",
        ),
    ] {
        std::fs::write(dir.join("config.yaml"), text).unwrap();
        let out = gateway(args, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!stderr.contains("tls: tls:"), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: one mistake each below the block a check runs on: an `attributes` action,
/// an extension's `tokens`, an exporter's `sending_queue` (the gateway's own config and a
/// Collector config) and `compression_params`.
/// Guarantees: the error names the key's own line and path (a config audit found the
/// block's line, `attributes: attributes.actions[0]`, and a sending_queue error with no
/// line or the exporter's).
#[test]
fn errors_name_the_line_of_the_key_below_their_block() {
    let dir = scratch("below-block");
    let own = |block: &str| format!("receive: {{grpc: 127.0.0.1:4317}}\n{block}");
    let collector = "receivers:\n  otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlphttp/vendor:\n    endpoint: https://api.vendor.example\n    sending_queue:\n      enabled: true\n      num_consumers: 0\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlphttp/vendor]}\n".to_owned();
    for (text, policies, expected) in [
        (
            own("export: {debug: {}}\nattributes:\n  actions:\n    - key: user.email\n      action: obliterate\n"),
            true,
            "config.yaml:6: attributes.actions[0].action: action \"obliterate\" is not supported",
        ),
        (
            own("extensions:\n  bearertokenauth/t:\n    token: abc\n    tokens: [a, b]\nexport:\n  otlp_grpc: {endpoint: 'https://x.example:443', compression: none, auth: {authenticator: bearertokenauth/t}}\n"),
            true,
            "config.yaml:5: extensions.bearertokenauth/t.tokens: either tokens or token",
        ),
        (
            own("export:\n  otlp:\n    endpoint: https://x.example:443\n    compression: gzip\n    sending_queue:\n      enabled: true\n      queue_size: 0\n"),
            true,
            "config.yaml:8: export.otlp.sending_queue.queue_size: `queue_size` must be positive",
        ),
        (
            own("export:\n  otlp:\n    endpoint: https://x.example:443\n    compression: gzip\n    compression_params:\n      level: 42\n"),
            true,
            "config.yaml:7: export.otlp.compression_params.level: 42 does not apply to compression: gzip",
        ),
        (
            collector,
            false,
            "config.yaml:10: exporters.otlphttp/vendor.sending_queue.num_consumers: `num_consumers` must be positive",
        ),
    ] {
        std::fs::write(dir.join("config.yaml"), &text).unwrap();
        let mut args = vec!["--check", "--config", "config.yaml"];
        if policies {
            args.extend(["--policies", "policies.yaml"]);
        }
        let out = gateway(&args, &dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a whole Collector config whose receiver, exporter and extension read files
/// mounted from Secrets where it runs (TLS certificate, key and CAs; a bearer token),
/// checked on a machine without them (CI); then with the token file here but empty.
/// Guarantees: `--check` takes it and names each absent file in a note (the Collector's
/// `validate` opens none); a file that is here is still read, and refused when empty.
#[test]
fn check_names_files_that_are_not_on_this_machine() {
    let dir = scratch("absent-files");
    let config = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n        tls: {cert_file: /nonexistent/tg/tls.crt, key_file: /nonexistent/tg/tls.key, client_ca_file: /nonexistent/tg/client-ca.crt}\nextensions:\n  bearertokenauth:\n    filename: TOKEN\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlp:\n    endpoint: backend:4317\n    auth: {authenticator: bearertokenauth}\n    tls: {ca_file: /nonexistent/tg/ca.crt}\nservice:\n  extensions: [bearertokenauth]\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n";
    let check = |token: &str| {
        std::fs::write(dir.join("collector.yaml"), config.replace("TOKEN", token)).unwrap();
        let out = gateway(&["--check", "--config", "collector.yaml"], &dir);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = check("/nonexistent/tg/token");
    assert_eq!(code, Some(0), "{stderr}");
    for (key, file) in [
        ("cert_file", "tls.crt"),
        ("key_file", "tls.key"),
        ("client_ca_file", "client-ca.crt"),
        ("ca_file", "ca.crt"),
        ("token", "token"),
    ] {
        let note = format!("note: {key}: /nonexistent/tg/{file} is not on this machine");
        assert!(stderr.contains(&note), "{note}: {stderr}");
    }
    // The gateway's own config, checked alone (without --policies), names them too.
    std::fs::write(
        dir.join("own.yaml"),
        "receive: {grpc: 127.0.0.1:4317}\nexport:\n  otlp_grpc: {endpoint: 'https://b:4317', compression: none, tls: {ca_file: /nonexistent/tg/own-ca.crt}}\n",
    )
    .unwrap();
    let out = gateway(&["--check", "--config", "own.yaml"], &dir);
    let own = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{own}");
    assert!(
        own.contains("note: ca_file: /nonexistent/tg/own-ca.crt is not on this machine"),
        "{own}"
    );
    std::fs::write(dir.join("token"), "").unwrap();
    let (code, stderr) = check("token");
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("token"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `--check --config` given a named pipe (as `--config <(envsubst < f)` gives),
/// holding the gateway's own config, then a whole Collector config that is its policy
/// file too.
/// Guarantees: each is read once and checked (a second read of the pipe waited for a
/// writer, or found it empty: the gateway read its own config twice, and a Collector
/// config again for its policies).
#[test]
fn check_reads_a_config_from_a_pipe_once() {
    let dir = scratch("pipe");
    let own = "receive: { grpc: '127.0.0.1:4317' }\nexport: { debug: {} }\n".to_owned();
    let collector = "receivers:\n  otlp: {protocols: {grpc: {endpoint: '127.0.0.1:4317'}}}\nprocessors:\n  tail_sampling: {policies: [{name: all, type: always_sample}]}\nexporters:\n  otlp: {endpoint: 'backend:4317'}\nservice:\n  pipelines:\n    traces: {receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}\n".to_owned();
    for (text, policies) in [(own, true), (collector, false)] {
        let fifo = dir.join("config.pipe");
        std::fs::remove_file(&fifo).ok();
        tailgate_core::test_util::make_fifo(&fifo);
        let mut args = vec!["--check", "--config", "config.pipe"];
        if policies {
            args.extend(["--policies", "policies.yaml"]);
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .args(&args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The writer's open waits for the gateway's; one write, then end of file.
        let path = fifo.clone();
        std::thread::spawn(move || std::fs::write(path, text));
        // At most 20 s (400 looks, 50 ms apart).
        let mut status = None;
        for _ in 0..400 {
            status = child.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if status.is_none() {
            child.kill().ok();
        }
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            status.is_some_and(|s| s.success()),
            "policies file given: {policies}; {status:?}: {stderr}"
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("config.pipe: ok"),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
