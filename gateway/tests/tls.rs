#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! TLS end to end through a gateway: curl (a real OTLP/HTTP client) and Tailgate's gRPC
//! client send over mutual TLS, the gateway exports over TLS to an OTLP/gRPC and an
//! OTLP/HTTP backend that trust only their own CA, all with certificates made here.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use tailgate_core::forward::{GrpcClient, RetryConfig};
use tailgate_core::receive::Listeners;
use tailgate_core::test_util::{scratch_dir, CaptureBackend, FakeOtlp, TestPki};
use tailgate_core::tls::ClientTlsConfig;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n";

/// Scenario: a gateway whose receivers require client certificates from the cluster CA,
/// exporting to two backends over TLS with certificates from another CA. curl with the
/// right certificate, curl without one, and the gRPC client with one send spans.
/// Guarantees: only certified senders are served; every span they sent reaches both
/// backends; a config naming a missing certificate file is refused at load with its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_in_and_tls_out_deliver_every_span() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    let dir = scratch_dir("gw-tls").unwrap();
    let cluster = TestPki::new(&dir, "cluster").unwrap();
    let backend_ca = TestPki::new(&dir, "backend").unwrap();
    let (gw_crt, gw_key) = cluster.issue("gateway", &["127.0.0.1"]).unwrap();
    let (cl_crt, cl_key) = cluster.issue("agent", &["agent"]).unwrap();

    let stop = CancellationToken::new();
    let backend_tls = backend_ca.server("backend-server", &["127.0.0.1"]).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (grpc_addr, grpc_backend) =
        CaptureBackend::start_with_tls(local, false, Some(backend_tls.clone()), stop.clone())
            .await
            .unwrap();
    let (http_addr, http_backend) =
        CaptureBackend::start_with_tls(local, true, Some(backend_tls), stop.clone())
            .await
            .unwrap();

    let p = |p: &Path| p.display().to_string();
    let config_text = format!(
        "receive:\n  grpc: '127.0.0.1:0'\n  http: '127.0.0.1:0'\n  tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}\nexport:\n  otlp_grpc: {{endpoint: 'https://{grpc_addr}', tls: {{ca_file: '{}'}}}}\n  otlp_http: {{endpoint: 'https://{http_addr}', tls: {{ca_file: '{}'}}}}\nadmin: null\nmetrics: null\n",
        p(&gw_crt),
        p(&gw_key),
        p(&cluster.ca_file("cluster")),
        p(&backend_ca.ca_file("backend")),
        p(&backend_ca.ca_file("backend")),
    );
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, &config_text).unwrap();
    let config = GatewayConfig::load(&config_path).unwrap();

    // The same config naming a key file that is not there is refused, naming the key.
    std::fs::write(
        &config_path,
        config_text.replace("gateway.key", "missing.key"),
    )
    .unwrap();
    let err = GatewayConfig::load(&config_path).unwrap_err();
    assert!(
        matches!(&err, tailgate_core::config::ConfigError::Invalid { key, .. } if key == "receive.tls"),
        "{err}"
    );

    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let (grpc_in, http_in) = (
        listeners.grpc_addr().unwrap(),
        listeners.http_addr().unwrap(),
    );
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let stats = gateway.stats().clone();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));

    // curl over mTLS: served. Without a client certificate: refused at the handshake.
    let body = dir.join("request.pb");
    std::fs::write(
        &body,
        FakeOtlp::traces(20)
            .spans(3)
            .seed(1)
            .build()
            .encode_to_vec(),
    )
    .unwrap();
    let curl = |with_cert: bool| {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--cacert", &p(&cluster.ca_file("cluster"))])
        .args(["-H", "content-type: application/x-protobuf"])
        .args(["--data-binary", &format!("@{}", p(&body))]);
        if with_cert {
            c.args(["--cert", &p(&cl_crt), "--key", &p(&cl_key)]);
        }
        c.arg(format!("https://127.0.0.1:{}/v1/traces", http_in.port()));
        c.output().unwrap()
    };
    let ok = curl(true);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200", "{ok:?}");
    let refused = curl(false);
    assert!(!refused.status.success(), "{refused:?}");

    // Tailgate's own gRPC client over mTLS.
    let tls = ClientTlsConfig {
        ca_file: Some(cluster.ca_file("cluster")),
        cert_file: Some(cl_crt.clone()),
        key_file: Some(cl_key.clone()),
        ..Default::default()
    }
    .build()
    .unwrap();
    let retry = RetryConfig {
        max_elapsed_time: Duration::from_secs(2),
        ..Default::default()
    };
    let client = GrpcClient::new(&grpc_in.to_string(), &[], Duration::from_secs(5), retry)
        .unwrap()
        .with_tls(&tls);
    let req = FakeOtlp::traces(10).spans(2).seed(2).build();
    client.send(req.encode_to_vec().into()).await.unwrap();

    let sent = 20 * 3 + 10 * 2;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while (grpc_backend.spans() < sent || http_backend.spans() < sent)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(grpc_backend.spans(), sent);
    assert_eq!(http_backend.spans(), sent);
    assert_eq!(stats.received_spans.get(), sent);
    stop.cancel();
    served.await.unwrap().unwrap();
}
