#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The OpenTelemetry Python SDK (a real client; `.ci/python-sdk` installs it) sends traces
//! over OTLP/gRPC and OTLP/HTTP to a TLS router, which forwards over mutual TLS to a
//! gateway whose receivers require client certificates, which exports over TLS to a
//! backend. Certificates are made by the test. Outside CI, without the SDK, the test says
//! so and passes; under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{scratch_dir, CaptureBackend, TestPki};
use tailgate_core::tls::{ClientTlsConfig, ServerTlsConfig};
use tailgate_gateway::export::{ExportConfig, OtlpGrpcConfig};
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio_util::sync::CancellationToken;

const KEEP_ALL: &str = "decision_wait: 500ms\npolicies:\n  - {name: all, type: always_sample}\n";

mod common;

fn sdk_missing() -> bool {
    let ok = Command::new("python3")
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

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/send.py")
}

/// Scenario: 25 traces (50 spans) from the Python SDK over gRPC and 25 over HTTP, both
/// over TLS trusting the test's CA, through router → (mTLS) → gateway → (TLS) → backend;
/// then the SDK with no trust in that CA.
/// Guarantees: every span the SDK sent arrives at the backend, exactly once; the SDK
/// that does not trust the router's certificate fails and delivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_tls_through_router_and_gateway_delivers_every_span() {
    if sdk_missing() {
        return;
    }
    let dir = scratch_dir("sdk").unwrap();
    let pki = TestPki::new(&dir, "ca").unwrap();
    let other = TestPki::new(&dir, "other").unwrap();
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
        grpc: Some("127.0.0.81:0".parse().unwrap()),
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

    let send = |protocol: &str, endpoint: String, ca: PathBuf| {
        let script = script();
        let protocol = protocol.to_owned();
        tokio::task::spawn_blocking(move || {
            // requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE (set on some machines)
            // override the exporter's own certificate_file; an application pointing its
            // SDK at a CA file does not have them.
            Command::new("python3")
                .env_remove("REQUESTS_CA_BUNDLE")
                .env_remove("CURL_CA_BUNDLE")
                .arg(script)
                .args([protocol.as_str(), endpoint.as_str()])
                .arg(ca)
                .arg("25")
                .output()
                .unwrap()
        })
    };
    for (protocol, addr) in [("grpc", grpc_in), ("http", http_in)] {
        let out = send(protocol, format!("https://{addr}"), pki.ca_file("ca"))
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{protocol}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sent = 2 * 25 * 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while backend.spans() < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(backend.spans(), sent, "every span the SDK sent, once");
    assert_eq!(gateway_stats.received_spans.get(), sent);

    // An SDK that does not trust the router's CA cannot deliver.
    let out = send("http", format!("https://{http_in}"), other.ca_file("other"))
        .await
        .unwrap();
    assert!(!out.status.success(), "an untrusted certificate must fail");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(backend.spans(), sent);
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}
