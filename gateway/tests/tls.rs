#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! TLS end to end through a gateway: curl (a real OTLP/HTTP client) and Tailgate's gRPC
//! client send over mutual TLS, the gateway exports over TLS to an OTLP/gRPC and an
//! OTLP/HTTP backend that trust only their own CA, all with certificates made here.

use crate::common;

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
        matches!(&err, tailgate_core::config::ConfigError::InvalidAt { key, .. } if key == "receive.tls.key_file"),
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
    common::wait_for_spans(
        &[&grpc_backend, &http_backend],
        sent,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(grpc_backend.spans(), sent);
    assert_eq!(http_backend.spans(), sent);
    assert_eq!(stats.received_spans.get(), sent);
    stop.cancel();
    served.await.unwrap().unwrap();
}

/// Scenario: two gateways with mutual TLS on their receivers and on a peer port of their
/// own, dialling each other with certificates that carry `tailgate-gateway.test`, and no
/// shared secret: peers are known by `peers.cert_names` alone. A client with a router's
/// certificate (same CA, another name) sends every trace to the first gateway, then tries
/// peer requests on the peer port.
/// Guarantees: every span reaches a backend once, traces owned by the second gateway through
/// a peer request that only its certificate allowed; the router's certificate, and a
/// wildcard one, are refused for peer requests with PERMISSION_DENIED, though the CA
/// signed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_are_known_by_their_certificates() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    let dir = scratch_dir("gw-peer-certs").unwrap();
    let cluster = TestPki::new(&dir, "cluster").unwrap();
    let (gw_crt, gw_key) = cluster
        .issue("gateway", &["tailgate-gateway.test"])
        .unwrap();
    let (rt_crt, rt_key) = cluster.issue("router", &["tailgate-router.test"]).unwrap();
    let p = |p: &Path| p.display().to_string();
    let ca = p(&cluster.ca_file("cluster"));
    let ips = ["127.0.0.91", "127.0.0.92"];
    let stop = CancellationToken::new();
    let mut pods = Vec::new();
    for ip in ips {
        let (backend_addr, backend) = common::capture_backend(&stop).await;
        let text = format!(
            "receive:\n  grpc: '{ip}:4317'\n  http: null\n  tls: {{cert_file: '{crt}', key_file: '{key}', client_ca_file: '{ca}'}}\nexport:\n  otlp_grpc: {{endpoint: 'http://{backend_addr}', batch: {{timeout: 50ms}}}}\nadmin: null\nmetrics: null\npeers:\n  static: ['{}:4317', '{}:4317']\n  self: '{ip}:4317'\n  listen: '{ip}:4319'\n  cert_names: [tailgate-gateway.test]\n  tls: {{ca_file: '{ca}', cert_file: '{crt}', key_file: '{key}', server_name_override: tailgate-gateway.test}}\n",
            ips[0],
            ips[1],
            crt = p(&gw_crt),
            key = p(&gw_key),
        );
        let path = dir.join(format!("gateway-{ip}.yaml"));
        std::fs::write(&path, &text).unwrap();
        let config = GatewayConfig::load(&path).unwrap();
        let listeners = Listeners::bind(&config.receive).await.unwrap();
        let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap());
        let gateway = Gateway::start(&config, plan).unwrap();
        let stats = gateway.stats().clone();
        let served =
            tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));
        pods.push((backend, stats, served));
    }

    let retry = RetryConfig {
        max_elapsed_time: Duration::from_secs(2),
        ..Default::default()
    };
    // A client of the first gateway's `port` presenting a certificate of the cluster CA.
    let client_with = |(crt, key): (std::path::PathBuf, std::path::PathBuf), port: u16| {
        let tls = ClientTlsConfig {
            ca_file: Some(cluster.ca_file("cluster")),
            cert_file: Some(crt),
            key_file: Some(key),
            server_name_override: Some("tailgate-gateway.test".into()),
            ..Default::default()
        }
        .build()
        .unwrap();
        let address = format!("{}:{port}", ips[0]);
        GrpcClient::new(&address, &[], Duration::from_secs(5), retry.clone())
            .unwrap()
            .with_tls(&tls)
    };
    let client = |port: u16| client_with((rt_crt.clone(), rt_key.clone()), port);
    let req = FakeOtlp::traces(40).spans(3).seed(9).build();
    client(4317).send(req.encode_to_vec().into()).await.unwrap();

    // A wildcard certificate from the same CA (`*.test` covers the gateways' name, and
    // every other) is not a gateway's either.
    let wildcard = client_with(cluster.issue("wildcard", &["*.test"]).unwrap(), 4319);
    let one = FakeOtlp::traces(1).spans(1).seed(11).build();
    match wildcard
        .send_from(
            one.encode_to_vec().into(),
            tailgate_core::receive::Origin::Forwarded { hops: 1 },
        )
        .await
    {
        Err(tailgate_core::forward::ForwardError::Rejected { status, .. }) => {
            assert_eq!(status.code(), tonic::Code::PermissionDenied)
        }
        other => panic!("a wildcard certificate on the peer port: {other:?}"),
    }

    // The router's certificate on the peer port: a forwarded-spans request and a plain
    // export are both refused (the first is not a gateway's, the second not peer traffic).
    let peer_port = client(4319);
    let one = FakeOtlp::traces(1).spans(1).seed(10).build();
    for origin in [
        tailgate_core::receive::Origin::Forwarded { hops: 1 },
        tailgate_core::receive::Origin::Client,
    ] {
        match peer_port
            .send_from(one.encode_to_vec().into(), origin)
            .await
        {
            Err(tailgate_core::forward::ForwardError::Rejected { status, .. }) => {
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{origin:?}")
            }
            other => panic!("{origin:?} on the peer port: {other:?}"),
        }
    }

    let sent = 40 * 3;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let arrived = || pods.iter().map(|(b, _, _)| b.spans()).sum::<u64>();
    while arrived() < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(arrived(), sent, "every span once");
    assert!(
        pods[1].0.spans() > 0,
        "the second gateway owns some traces: they reached it as peer requests"
    );
    assert_eq!(pods[0].1.peers.forwarded_spans.get(), pods[1].0.spans());
    stop.cancel();
    for (_, _, served) in pods {
        served.await.unwrap().unwrap();
    }
}

/// Scenario: a Collector user's exporter blocks with `auth: {authenticator: …}` and the
/// extensions under `extensions:`: an `otlp` exporter over TLS whose bearer token is read
/// from a file, and an `otlphttp` one with a token in a custom header-less form
/// (`bearertokenauth` with its default header), each to a backend that takes only its own
/// token. Then the same `otlp` exporter in plaintext, and an authenticator that is not
/// under `extensions:`.
/// Guarantees: every span reaches both backends (a missing or wrong credential is refused
/// by them, and the spans would never arrive); the plaintext gRPC exporter with an
/// authenticator (`http://`, or `tls: {insecure: true}`) and the unknown authenticator are
/// refused at load, naming the key and line and what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_authenticate_with_the_collectors_extensions() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    let dir = scratch_dir("gw-auth").unwrap();
    let backend_ca = TestPki::new(&dir, "backend").unwrap();
    let stop = CancellationToken::new();
    let backend_tls = backend_ca.server("backend-server", &["127.0.0.1"]).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (grpc_addr, grpc_backend) = CaptureBackend::start_with(
        local,
        false,
        Some(backend_tls),
        Some("grpc-t0k"),
        stop.clone(),
    )
    .await
    .unwrap();
    let (http_addr, http_backend) =
        CaptureBackend::start_with(local, true, None, Some("http-t0k"), stop.clone())
            .await
            .unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, "grpc-t0k\n").unwrap();

    let ca = backend_ca.ca_file("backend").display().to_string();
    let config_text = format!(
        "receive:\n  grpc: '127.0.0.1:0'\n  http: null\n\
         extensions:\n  bearertokenauth/file:\n    filename: '{}'\n  bearertokenauth/inline:\n    token: http-t0k\n\
         export:\n  otlp:\n    endpoint: 'https://{grpc_addr}'\n    tls: {{ca_file: '{ca}'}}\n    auth:\n      authenticator: bearertokenauth/file\n\
         \x20 otlphttp:\n    endpoint: 'http://{http_addr}'\n    auth: {{authenticator: bearertokenauth/inline}}\n\
         admin: null\nmetrics: null\n",
        token_file.display(),
    );
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, &config_text).unwrap();
    let config = GatewayConfig::load(&config_path).unwrap();

    // Refused at load: the gRPC exporter in plaintext with credentials, and a name that is
    // not under extensions:, each with the line of its `authenticator`.
    for (text, says) in [
        (
            config_text.replace(
                &format!("https://{grpc_addr}'\n    tls: {{ca_file: '{ca}'}}"),
                &format!("http://{grpc_addr}'"),
            ),
            "gateway.yaml:13: export.otlp.auth.authenticator: bearertokenauth/file sends credentials, and this gRPC exporter is plaintext: write the endpoint as https://",
        ),
        (
            config_text.replace(
                &format!("https://{grpc_addr}'\n    tls: {{ca_file: '{ca}'}}"),
                &format!("{grpc_addr}'\n    tls: {{insecure: true}}"),
            ),
            "gateway.yaml:14: export.otlp.auth.authenticator: bearertokenauth/file sends credentials, and this gRPC exporter is plaintext: remove insecure: true",
        ),
        (
            config_text.replace(
                "authenticator: bearertokenauth/inline",
                "authenticator: oauth2client",
            ),
            "gateway.yaml:17: export.otlphttp.auth.authenticator",
        ),
    ] {
        std::fs::write(&config_path, text).unwrap();
        let err = GatewayConfig::load(&config_path).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }

    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let grpc_in = listeners.grpc_addr().unwrap();
    let plan = PolicyPlan::compile(&PolicyFile::parse(Path::new("p.yaml"), POLICIES).unwrap());
    let gateway = Gateway::start(&config, plan).unwrap();
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));
    let client = GrpcClient::new(
        &grpc_in.to_string(),
        &[],
        Duration::from_secs(5),
        RetryConfig::default(),
    )
    .unwrap();
    let req = FakeOtlp::traces(10).spans(3).seed(3).build();
    client.send(req.encode_to_vec().into()).await.unwrap();

    let sent = 10 * 3;
    common::wait_for_spans(
        &[&grpc_backend, &http_backend],
        sent,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(grpc_backend.spans(), sent);
    assert_eq!(http_backend.spans(), sent);
    stop.cancel();
    served.await.unwrap().unwrap();
}
