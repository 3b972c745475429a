#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! A real Prometheus server (Debian's `prometheus`, installed by `.ci/prometheus`) scrapes
//! a router and a gateway running on loopback with traffic through them, loads the
//! production alerts, and is asked for every series the alerts and the dashboard name.
//! Outside CI, without the binary, the test says so and passes; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use serde_json::Value;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_gateway::export::{ExportConfig, OtlpGrpcConfig};
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 1s\npolicies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: baseline, type: probabilistic, probabilistic: {sampling_percentage: 50}}\n";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Kills the server when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// `GET /api/v1/{path}` of the server, as JSON.
fn api(port: u16, path: &str, query: Option<&str>) -> Value {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "5", "-G"]);
    if let Some(q) = query {
        c.arg("--data-urlencode").arg(format!("query={q}"));
    }
    let out = c
        .arg(format!("http://127.0.0.1:{port}/api/v1/{path}"))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// The `tailgate_*` and `process_*` series an expression names.
fn series_in(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tailgate_") || w.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The metric names docs/operations.md documents: every `tailgate_*` and `process_*` word,
/// with `prefix_{a,b}_suffix` spelled out (braces right after `_`; other braces are
/// labels), and without bare prefixes (`tailgate_gateway_peer_…`) or log targets.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let doc = std::fs::read_to_string(root().join("docs/operations.md")).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut rest = doc.as_str();
    while let Some(at) = rest.find(['t', 'p']) {
        rest = &rest[at..];
        let word_len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..word_len];
        let after = &rest[word_len..];
        let is_name = word.starts_with("tailgate_") || word.starts_with("process_");
        if is_name && word.ends_with('_') && after.starts_with('{') {
            // prefix_{a,b}suffix
            let close = after.find('}').unwrap();
            let tail_len = after[close + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len() - close - 1);
            let tail = &after[close + 1..close + 1 + tail_len];
            for alt in after[1..close].split(',') {
                names.insert(format!("{word}{alt}{tail}"));
            }
        } else if is_name && !word.ends_with('_') && !after.starts_with('=') {
            // (`RUST_LOG=tailgate_router=debug` names a log target, not a metric.)
            names.insert(word.to_owned());
        }
        rest = &rest[word_len.max(1)..];
    }
    names
}

/// A histogram's family name for one of its series; other names as they are.
fn family(series: &str) -> String {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| series.strip_suffix(s))
        .unwrap_or(series)
        .to_owned()
}

/// Scenario: router → gateway → backend on loopback with 40 traces sent, scraped every
/// second by Prometheus with the production alert rules loaded.
/// Guarantees: both targets are `up` (scraped as OpenMetrics, which Prometheus asks for
/// first); every rule evaluates without error; every series an alert or a dashboard panel
/// names exists in Prometheus; every metric docs/operations.md names is scraped, and every
/// scraped one is documented there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_both_and_every_alert_and_panel_series_exists() {
    let present = Command::new("prometheus").arg("--version").output().is_ok();
    if common::missing(present, "prometheus is not installed (run .ci/prometheus)") {
        return;
    }
    let stop = CancellationToken::new();
    let (backend, _) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();

    // A gateway with its admin (metrics) port.
    let receive = ReceiveConfig {
        grpc: Some("127.0.0.71:0".parse().unwrap()),
        http: None,
        ..ReceiveConfig::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let gateway_addr = listeners.grpc_addr().unwrap();
    let mut export = OtlpGrpcConfig::new(format!("http://{backend}"));
    export.batch.timeout = Duration::from_millis(50);
    let config = GatewayConfig::new(receive, ExportConfig::otlp_grpc(export));
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let gateway_admin = TcpListener::bind("127.0.0.71:0").await.unwrap();
    let gateway_metrics = gateway_admin.local_addr().unwrap();
    tokio::spawn(gateway.serve(
        listeners,
        [gateway_admin],
        stop.clone(),
        Duration::from_secs(5),
    ));

    // A router in front of it.
    let router_cfg = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some("127.0.0.72:0".parse().unwrap()),
            http: None,
            ..ReceiveConfig::default()
        },
        members: MembersConfig {
            static_list: vec![gateway_addr.to_string()],
            dns: None,
        },
        forward: ForwardConfig::default(),
        admin: None,
        metrics: None,
    };
    let router_listeners = Listeners::bind(&router_cfg.receive).await.unwrap();
    let router_addr = router_listeners.grpc_addr().unwrap();
    let router_admin = TcpListener::bind("127.0.0.72:0").await.unwrap();
    let router_metrics = router_admin.local_addr().unwrap();
    let router = Router::new(router_cfg.forward.clone());
    {
        let (router, stop) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            tailgate_router::run(
                router,
                &router_cfg,
                router_listeners,
                [router_admin],
                Duration::from_secs(5),
                stop,
            )
            .await
        });
    }
    while router.ring_state().ring.members().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut client = TraceServiceClient::connect(format!("http://{router_addr}"))
        .await
        .unwrap();
    for seed in 0..4 {
        client
            .export(FakeOtlp::traces(10).spans(3).seed(900 + seed).build())
            .await
            .unwrap();
    }

    // Prometheus, scraping both every second, with the production alerts loaded.
    let dir = std::env::temp_dir().join(format!("tailgate-prometheus-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    let docs: Vec<serde_yaml_ng::Value> = {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join("k8s/overlays/production"))
            .output()
            .unwrap();
        serde_yaml_ng::Deserializer::from_str(&String::from_utf8(out.stdout).unwrap())
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect()
    };
    let rule = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("PrometheusRule"))
        .unwrap();
    let dashboard: Value = serde_json::from_str(
        docs.iter()
            .find(|d| d["metadata"]["name"].as_str() == Some("tailgate-dashboard"))
            .unwrap()["data"]["dashboard.json"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let rules = serde_yaml_ng::to_string(&std::collections::BTreeMap::from([(
        "groups",
        &rule["spec"]["groups"],
    )]))
    .unwrap();
    std::fs::write(dir.join("alerts.yaml"), rules).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [alerts.yaml]\nscrape_configs:\n  - job_name: tailgate-router\n    static_configs: [{{targets: ['{router_metrics}'], labels: {{namespace: test, pod: router-0}}}}]\n  - job_name: tailgate-gateway\n    static_configs: [{{targets: ['{gateway_metrics}'], labels: {{namespace: test, pod: gateway-0}}}}]\n"
        ),
    )
    .unwrap();
    let _server = Server(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Both targets up, within 30 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let up = loop {
        let r = api(port, "query", Some("up == 1"));
        let n = r["data"]["result"].as_array().map_or(0, Vec::len);
        if n == 2 || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(up, 2, "router and gateway scraped and up");
    // Decisions have happened (decision_wait 1 s) and been scraped.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let mut names: Vec<String> = Vec::new();
    for group in rule["spec"]["groups"].as_sequence().unwrap() {
        for r in group["rules"].as_sequence().unwrap() {
            names.extend(series_in(r["expr"].as_str().unwrap()));
        }
    }
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            names.extend(series_in(target["expr"].as_str().unwrap()));
        }
    }
    names.sort();
    names.dedup();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| {
            let r = api(port, "query", Some(&format!("count({{__name__=\"{n}\"}})")));
            r["data"]["result"].as_array().is_none_or(Vec::is_empty)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "series Prometheus does not have: {missing:?}"
    );

    // The docs and the binaries agree: every documented metric is scraped, and every
    // scraped one is documented (histograms by their family name).
    let scraped: std::collections::BTreeSet<String> = api(port, "label/__name__/values", None)
        ["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .filter(|n| n.starts_with("tailgate_") || n.starts_with("process_"))
        .map(family)
        .collect();
    let documented = documented_metrics();
    let undocumented: Vec<&String> = scraped
        .iter()
        .filter(|n| !documented.contains(*n))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in docs/operations.md: {undocumented:?}"
    );
    let unexported: Vec<&String> = documented
        .iter()
        .filter(|n| !scraped.contains(*n) && !scraped.contains(&family(n.as_str())))
        .collect();
    assert!(
        unexported.is_empty(),
        "in docs/operations.md but not exported: {unexported:?}"
    );

    let rules = api(port, "rules", None);
    let mut evaluated = 0;
    for group in rules["data"]["groups"].as_array().unwrap() {
        for r in group["rules"].as_array().unwrap() {
            assert_eq!(r["health"].as_str(), Some("ok"), "{r}");
            evaluated += 1;
        }
    }
    assert!(evaluated >= 6, "{evaluated} rules");
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}
