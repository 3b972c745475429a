#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Exporters behind a forward proxy: a gateway whose OTLP/gRPC exporter goes through the
//! proxy `HTTPS_PROXY` names and whose OTLP/HTTP exporter goes through its `proxy_url`,
//! both over TLS to backends known by a name that does not resolve here (only the proxy
//! reaches them), as in a cluster whose egress goes through a corporate proxy.

use crate::common;

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use prost::Message;
use tailgate_core::forward::{GrpcClient, RetryConfig};
use tailgate_core::proxy::ProxyEnv;
use tailgate_core::receive::Listeners;
use tailgate_core::test_util::{scratch_dir, CaptureBackend, ConnectProxy, FakeOtlp, TestPki};
use tailgate_gateway::export::OtlpHttpConfig;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n";

/// Scenario: backends `backend.test` over TLS, reachable only through two CONNECT proxies;
/// the gRPC exporter is given the first by `HTTPS_PROXY` (the process's variables as the
/// config captured them), the HTTP exporter the second by `proxy_url` with credentials.
/// The gRPC exporter also sets `authority` (a host an ingress would route by).
/// Guarantees: every span reaches both backends; each proxy was asked for a tunnel to the
/// endpoint's name and port, not the authority's; TLS ran end to end inside it, checked
/// against the authority for gRPC; the second proxy got the URL's credentials as Basic
/// `Proxy-Authorization`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_reach_their_backends_through_proxies() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    let dir = scratch_dir("gw-proxy").unwrap();
    let backend_ca = TestPki::new(&dir, "backend").unwrap();
    let stop = CancellationToken::new();
    // Each backend's certificate carries one name: the gRPC one the authority's (so the
    // handshake inside the tunnel checks that name), the HTTP one the endpoint's.
    let grpc_tls = backend_ca
        .server("grpc-backend", &["otlp.ingress.test"])
        .unwrap();
    let http_tls = backend_ca
        .server("http-backend", &["backend.test"])
        .unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (grpc_addr, grpc_backend) =
        CaptureBackend::start_with_tls(local, false, Some(grpc_tls), stop.clone())
            .await
            .unwrap();
    let (http_addr, http_backend) =
        CaptureBackend::start_with_tls(local, true, Some(http_tls), stop.clone())
            .await
            .unwrap();
    let (grpc_proxy_addr, grpc_proxy) = ConnectProxy::start(grpc_addr).await.unwrap();
    let (http_proxy_addr, http_proxy) = ConnectProxy::start(http_addr).await.unwrap();

    let ca = backend_ca.ca_file("backend").display().to_string();
    let (grpc_port, http_port) = (grpc_addr.port(), http_addr.port());
    let config_path = dir.join("gateway.yaml");
    std::fs::write(
        &config_path,
        format!(
            "receive:\n  grpc: '127.0.0.1:0'\n  http: null\nexport:\n  otlp:\n    endpoint: 'backend.test:{grpc_port}'\n    authority: otlp.ingress.test\n    tls: {{ca_file: '{ca}'}}\n  otlphttp:\n    endpoint: 'https://backend.test:{http_port}'\n    tls: {{ca_file: '{ca}'}}\n    proxy_url: 'http://otel:s%40cret@{http_proxy_addr}'\nadmin: null\nmetrics: null\n"
        ),
    )
    .unwrap();
    let mut config = GatewayConfig::load(&config_path).unwrap();
    // What the process's variables would have given (this test does not set them: they
    // are shared by every test of the binary).
    config.export.proxy_env = ProxyEnv {
        https: Some(grpc_proxy_addr.to_string()),
        http: None,
        no: Some("localhost,.cluster.local".into()),
        ..ProxyEnv::default()
    };

    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let grpc_in = listeners.grpc_addr().unwrap();
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));
    let retry = RetryConfig {
        max_elapsed_time: Duration::from_secs(2),
        ..Default::default()
    };
    let client = GrpcClient::new(&grpc_in.to_string(), &[], Duration::from_secs(5), retry).unwrap();
    let req = FakeOtlp::traces(20).spans(3).seed(7).build();
    client.send(req.encode_to_vec().into()).await.unwrap();

    let sent = 20 * 3;
    common::wait_for_spans(
        &[&grpc_backend, &http_backend],
        sent,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(grpc_backend.spans(), sent);
    assert_eq!(http_backend.spans(), sent);

    let heads = grpc_proxy.heads();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(
            head.starts_with(&format!("CONNECT backend.test:{grpc_port} HTTP/1.1\r\n")),
            "{head}"
        );
        assert!(!head.contains("Proxy-Authorization"), "{head}");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("otel:s@cret");
    let heads = http_proxy.heads();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(
            head.starts_with(&format!("CONNECT backend.test:{http_port} HTTP/1.1\r\n")),
            "{head}"
        );
        assert!(
            head.contains(&format!("Proxy-Authorization: Basic {basic}\r\n")),
            "{head}"
        );
    }
    stop.cancel();
    served.await.unwrap().unwrap();
}

/// Scenario: an OTLP/HTTP exporter whose proxy refuses the tunnel (403, as proxies that
/// allow CONNECT only to port 443 answer), then asks for credentials (407); and a
/// `proxy_url` that is not an http:// proxy, loaded from a file.
/// Guarantees: the send fails naming the proxy, the endpoint asked for and the status,
/// with what it usually means; the bad `proxy_url` is refused at load naming the exporter
/// and the key.
#[tokio::test]
async fn a_refusing_proxy_is_named_and_a_bad_one_refused_at_load() {
    let stop = CancellationToken::new();
    let local = "127.0.0.1:0".parse().unwrap();
    let (http_addr, backend) = CaptureBackend::start_http(local, stop.clone())
        .await
        .unwrap();
    let (proxy_addr, proxy) = ConnectProxy::start(http_addr).await.unwrap();
    proxy.refuse_with(Some("HTTP/1.1 403 Forbidden\r\n\r\n"));
    let cfg: OtlpHttpConfig = serde_yaml_ng::from_str(&format!(
        "{{endpoint: 'http://backend.test:4318', proxy_url: 'http://{proxy_addr}', retry_on_failure: {{enabled: false}}}}"
    ))
    .unwrap();
    let client = cfg.client().unwrap();
    let body = FakeOtlp::traces(1).build().encode_to_vec();
    let err = client
        .send(body.clone().into())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "proxy http://{proxy_addr} refused CONNECT backend.test:4318: 403 Forbidden"
        )) && err.contains("port 443"),
        "{err}"
    );
    proxy.refuse_with(Some("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"));
    let err = client.send(body.into()).await.unwrap_err().to_string();
    assert!(
        err.contains("407") && err.contains("wants credentials"),
        "{err}"
    );
    assert_eq!(backend.spans(), 0);
    stop.cancel();

    let dir = scratch_dir("gw-proxy-bad").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        "export:\n  otlphttp:\n    endpoint: https://api.example:443\n    proxy_url: socks5://user:hunter2@proxy:1080\n",
    )
    .unwrap();
    let err = GatewayConfig::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("export.otlphttp")
            && err.contains("proxy_url")
            && err.contains("only http:// proxies"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
}
