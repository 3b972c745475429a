#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Real OpenTelemetry SDKs send traces over OTLP/gRPC and OTLP/HTTP to a TLS router, which
//! forwards over mutual TLS to a gateway whose receivers require client certificates,
//! which exports over TLS to a backend: the Python SDK (`.ci/python-sdk` installs it) and
//! the JS SDK on Node (`.ci/node-sdk`). Certificates are made by the test. Outside CI,
//! without an SDK, its test says so and passes; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{scratch_dir, CaptureBackend, TestPki};
use tailgate_core::tls::{ClientTlsConfig, ServerTlsConfig};
use tailgate_gateway::export::{ExportConfig, OtlpGrpcConfig};
use tailgate_gateway::metrics::GatewayStats;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio_util::sync::CancellationToken;

const KEEP_ALL: &str = "decision_wait: 500ms\npolicies:\n  - {name: all, type: always_sample}\n";

use crate::common;

fn python_sdk_missing() -> bool {
    let ok = Command::new(common::python_tool("python3"))
        .args([
            "-c",
            "import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    common::missing(
        ok,
        "the OpenTelemetry Python SDK is not installed (run .ci/python-sdk)",
    )
}

fn node_sdk_missing() -> bool {
    let ok = node_dir()
        .join("node_modules/@opentelemetry/sdk-trace")
        .is_dir()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    common::missing(
        ok,
        "node or the OpenTelemetry JS SDK is not installed (run .ci/node-sdk)",
    )
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk")
}

fn node_dir() -> PathBuf {
    sdk_dir().join("node")
}

/// A TLS router in front of a gateway (mutual TLS between them) exporting over TLS to a
/// backend, all with certificates of one test CA.
struct TlsCluster {
    grpc_in: std::net::SocketAddr,
    http_in: std::net::SocketAddr,
    backend: Arc<CaptureBackend>,
    gateway_stats: Arc<GatewayStats>,
    dir: tailgate_core::test_util::ScratchDir,
    stop: CancellationToken,
}

impl TlsCluster {
    /// The CA the router's certificate comes from.
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// A CA that did not sign it.
    fn other_ca(&self) -> PathBuf {
        self.dir.join("other.crt")
    }

    /// Runs `send` (protocol, endpoint, CA file) for gRPC and HTTP (and OTLP/JSON over
    /// HTTP with `json`), each sending 25 two-span traces, then once over HTTP trusting
    /// another CA.
    /// Guarantees: every span arrives at the backend exactly once; the SDK that does not
    /// trust the router's certificate fails and delivers nothing.
    async fn delivers_every_span<F>(self, json: bool, send: F)
    where
        F: Fn(&str, String, PathBuf) -> Output + Send + Sync + Clone + 'static,
    {
        let run = |protocol: &str, endpoint: String, ca: PathBuf| {
            let (send, protocol) = (send.clone(), protocol.to_owned());
            tokio::task::spawn_blocking(move || send(&protocol, endpoint, ca))
        };
        let mut protocols = vec![("grpc", self.grpc_in), ("http", self.http_in)];
        if json {
            protocols.push(("json", self.http_in));
        }
        for &(protocol, addr) in &protocols {
            let out = run(protocol, format!("https://{addr}"), self.ca())
                .await
                .unwrap();
            assert!(
                out.status.success(),
                "{protocol}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let sent = protocols.len() as u64 * 25 * 2;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.backend.spans() < sent && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.backend.spans(), sent, "every span the SDK sent, once");
        assert_eq!(self.gateway_stats.received_spans.get(), sent);

        // An SDK that does not trust the router's CA cannot deliver.
        let out = run("http", format!("https://{}", self.http_in), self.other_ca())
            .await
            .unwrap();
        assert!(!out.status.success(), "an untrusted certificate must fail");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(self.backend.spans(), sent);
        self.stop.cancel();
    }
}

/// Scenario: 25 traces (50 spans) from the Python SDK over gRPC and 25 over HTTP, both
/// over TLS trusting the test's CA and compressed with `deflate` (the SDK's choice besides
/// gzip: `grpc-encoding: deflate`, and `Content-Encoding: deflate` over HTTP), through router → (mTLS) → gateway → (TLS) →
/// backend; then the SDK with no trust in that CA.
/// Guarantees: as [`TlsCluster::delivers_every_span`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_tls_through_router_and_gateway_delivers_every_span() {
    if python_sdk_missing() {
        return;
    }
    let cluster = tls_cluster("sdk-python", [127, 0, 0, 81]).await;
    cluster
        .delivers_every_span(false, |protocol, endpoint, ca| {
            // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on some machines)
            // override the exporter's own certificate_file; an application pointing its
            // SDK at a CA file does not have them.
            Command::new(common::python_tool("python3"))
                .env_remove("REQUESTS_CA_BUNDLE")
                .env_remove("CURL_CA_BUNDLE")
                .arg(sdk_dir().join("send.py"))
                .args([protocol, endpoint.as_str()])
                .arg(ca)
                .args(["25", "deflate"])
                .output()
                .unwrap()
        })
        .await;
}

/// Scenario: as the Python test, with the OpenTelemetry JS SDK on Node (the gRPC and the
/// protobuf-over-HTTP exporters, and its OTLP/JSON serializer over HTTP, as browsers and
/// `exporter-trace-otlp-http` send), trusting the CA through
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` as a Node application is configured. Each root span
/// carries a string its attribute length limit cut mid-emoji, which the JSON serializer
/// writes as a lone surrogate escape (refused whole with 400 before it was read as U+FFFD).
/// Guarantees: as [`TlsCluster::delivers_every_span`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_over_tls_through_router_and_gateway_delivers_every_span() {
    if node_sdk_missing() {
        return;
    }
    let cluster = tls_cluster("sdk-node", [127, 0, 0, 82]).await;
    cluster
        .delivers_every_span(true, |protocol, endpoint, ca| {
            Command::new("node")
                .env("OTEL_EXPORTER_OTLP_CERTIFICATE", ca)
                .env_remove("NODE_EXTRA_CA_CERTS")
                .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
                .arg(node_dir().join("send.mjs"))
                .args([protocol, endpoint.as_str(), "25"])
                .output()
                .unwrap()
        })
        .await;
}

/// Starts a [`TlsCluster`], the gateway's receiver on `gateway_ip`.
async fn tls_cluster(label: &str, gateway_ip: [u8; 4]) -> TlsCluster {
    let dir = scratch_dir(label).unwrap();
    let pki = TestPki::new(&dir, "ca").unwrap();
    let _other = TestPki::new(&dir, "other").unwrap();
    let (router_crt, router_key) = pki.issue("router", &["127.0.0.1"]).unwrap();
    let (gw_crt, gw_key) = pki.issue("gateway", &["tailgate-gateway"]).unwrap();
    let stop = CancellationToken::new();

    let backend_tls = pki.server("backend", &["127.0.0.1"]).unwrap();
    let (backend_addr, backend) = CaptureBackend::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(backend_tls),
        stop.clone(),
    )
    .await
    .unwrap();

    // The gateway: receivers require client certificates from the CA; exports over TLS.
    let receive = ReceiveConfig {
        grpc: Some(std::net::SocketAddr::from((gateway_ip, 0))),
        http: None,
        tls: Some(ServerTlsConfig {
            cert_file: Some(gw_crt),
            key_file: Some(gw_key),
            client_ca_file: Some(pki.ca_file("ca")),
            ..Default::default()
        }),
        ..ReceiveConfig::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let gateway_addr = listeners.grpc_addr().unwrap();
    let mut export = OtlpGrpcConfig::new(format!("https://{backend_addr}"));
    export.tls = Some(ClientTlsConfig {
        ca_file: Some(pki.ca_file("ca")),
        ..Default::default()
    });
    export.batch.timeout = Duration::from_millis(50);
    let config = GatewayConfig::new(receive, ExportConfig::otlp_grpc(export));
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), KEEP_ALL).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let gateway_stats = gateway.stats().clone();
    tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(5)));

    // The router: TLS for the SDK, mutual TLS to the gateway (named by its Service).
    let router_cfg = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            tls: Some(ServerTlsConfig {
                cert_file: Some(router_crt.clone()),
                key_file: Some(router_key.clone()),
                ..Default::default()
            }),
            ..ReceiveConfig::default()
        },
        members: MembersConfig {
            static_list: vec![gateway_addr.to_string()],
            dns: None,
        },
        forward: ForwardConfig {
            tls: Some(ClientTlsConfig {
                ca_file: Some(pki.ca_file("ca")),
                cert_file: Some(router_crt),
                key_file: Some(router_key),
                server_name_override: Some("tailgate-gateway".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        admin: None,
        metrics: None,
    };
    let router_listeners = Listeners::bind(&router_cfg.receive).await.unwrap();
    let (grpc_in, http_in) = (
        router_listeners.grpc_addr().unwrap(),
        router_listeners.http_addr().unwrap(),
    );
    let router = Router::new(router_cfg.forward.clone());
    {
        let (router, stop) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            tailgate_router::run(
                router,
                &router_cfg,
                router_listeners,
                None,
                Duration::from_secs(5),
                stop,
            )
            .await
        });
    }
    while router.ring_state().ring.members().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    TlsCluster {
        grpc_in,
        http_in,
        backend,
        gateway_stats,
        dir,
        stop,
    }
}
