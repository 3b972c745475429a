#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The router over TLS on both sides: curl (a real OTLP/HTTP client) and Tailgate's gRPC
//! client send to a TLS router, which forwards over mutual TLS to gateways that require
//! client certificates and whose certificates name the Service, not their IPs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use prost::Message;
use tailgate_core::forward::{GrpcClient, RetryConfig};
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{scratch_dir, CaptureBackend, FakeOtlp, TestPki};
use tailgate_core::tls::{ClientTlsConfig, ServerTlsConfig, TlsServer};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio_util::sync::CancellationToken;

const SERVICE: &str = "tailgate-gateway.tailgate.svc";

/// Scenario: agents → TLS router → mTLS → two gateways (capture backends requiring
/// client certificates from the cluster CA, certificates for the Service name only). One
/// gateway's certificate is rotated on disk in the middle of the load.
/// Guarantees: every span sent by curl and by the gRPC client reaches a gateway; a router
/// without a client certificate cannot deliver (the gateways refuse it), and its error
/// says the certificate is the likely cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_to_router_to_gateways_over_mutual_tls() {
    let dir = scratch_dir("router-tls").unwrap();
    let pki = TestPki::new(&dir, "cluster").unwrap();
    let (router_crt, router_key) = pki.issue("router", &["127.0.0.1", "router"]).unwrap();
    let (gw_crt, gw_key) = pki.issue("gateway", &[SERVICE]).unwrap();

    let stop = CancellationToken::new();
    let backends_stop = CancellationToken::new();
    let gateway_tls = ServerTlsConfig {
        cert_file: Some(gw_crt.clone()),
        key_file: Some(gw_key.clone()),
        client_ca_file: Some(pki.ca_file("cluster")),
        reload_interval: Some(Duration::from_secs(3600)),
        ..Default::default()
    };
    let mut gateways = Vec::new();
    for ip in [[127, 0, 0, 61], [127, 0, 0, 62]] {
        let tls = TlsServer::load(&gateway_tls).unwrap();
        let addr = std::net::SocketAddr::from((ip, 0));
        let (addr, backend) =
            CaptureBackend::start_with_tls(addr, false, Some(tls.clone()), backends_stop.clone())
                .await
                .unwrap();
        gateways.push((addr, backend, tls));
    }

    let forward_tls = ClientTlsConfig {
        ca_file: Some(pki.ca_file("cluster")),
        cert_file: Some(router_crt.clone()),
        key_file: Some(router_key.clone()),
        server_name_override: Some(SERVICE.into()),
        ..Default::default()
    };
    let config = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            http: Some("127.0.0.1:0".parse().unwrap()),
            tls: Some(ServerTlsConfig {
                cert_file: Some(router_crt.clone()),
                key_file: Some(router_key.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
        members: MembersConfig {
            static_list: gateways.iter().map(|g| g.0.to_string()).collect(),
            dns: None,
        },
        forward: ForwardConfig {
            tls: Some(forward_tls),
            ..Default::default()
        },
        admin: None,
        metrics: None,
    };
    config.validate(Path::new("router.yaml")).unwrap();
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let (grpc_in, http_in) = (
        listeners.grpc_addr().unwrap(),
        listeners.http_addr().unwrap(),
    );
    let router = Router::new(config.forward.clone());
    let (r, s) = (router.clone(), stop.clone());
    let served = tokio::spawn(async move {
        tailgate_router::run(r, &config, listeners, None, Duration::from_secs(5), s).await
    });
    while router.ring_state().ring.members().len() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let client_tls = ClientTlsConfig {
        ca_file: Some(pki.ca_file("cluster")),
        ..Default::default()
    }
    .build()
    .unwrap();
    let retry = RetryConfig {
        max_elapsed_time: Duration::from_secs(5),
        ..Default::default()
    };
    let client = GrpcClient::new(&grpc_in.to_string(), &[], Duration::from_secs(5), retry)
        .unwrap()
        .with_tls(&client_tls);
    let body = dir.join("request.pb");
    let mut sent = 0u64;
    for round in 0..20u64 {
        let req = FakeOtlp::traces(8).spans(2).seed(100 + round).build();
        client.send(req.encode_to_vec().into()).await.unwrap();
        sent += 16;
        if round == 10 {
            // A new certificate for the first gateway (same CA), as cert-manager renews it.
            let (crt, key) = pki.issue("gateway-renewed", &[SERVICE]).unwrap();
            std::fs::copy(crt, &gw_crt).unwrap();
            std::fs::copy(key, &gw_key).unwrap();
            gateways[0].2.reload_now();
        }
    }
    std::fs::write(
        &body,
        FakeOtlp::traces(5).spans(3).seed(9).build().encode_to_vec(),
    )
    .unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--cacert", &pki.ca_file("cluster").display().to_string()])
        .args(["-H", "content-type: application/x-protobuf"])
        .args(["--data-binary", &format!("@{}", body.display())])
        .arg(format!("https://127.0.0.1:{}/v1/traces", http_in.port()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    sent += 15;

    let total = || gateways.iter().map(|g| g.1.spans()).sum::<u64>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while total() < sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(total(), sent);
    assert!(
        gateways.iter().all(|g| g.1.spans() > 0),
        "both gateways served"
    );
    stop.cancel();
    served.await.unwrap().unwrap();

    // Without a client certificate the router cannot reach the gateways: the forwarder's
    // handshakes fail there.
    let no_cert = GrpcClient::new(
        &format!("https://{}", gateways[1].0),
        &[],
        Duration::from_secs(2),
        RetryConfig {
            max_elapsed_time: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap()
    .with_tls(
        &ClientTlsConfig {
            ca_file: Some(pki.ca_file("cluster")),
            server_name_override: Some(SERVICE.into()),
            ..Default::default()
        }
        .build()
        .unwrap(),
    );
    let before = gateways[1].1.spans();
    let err = no_cert
        .send(FakeOtlp::traces(1).build().encode_to_vec().into())
        .await
        .unwrap_err()
        .to_string();
    // The client sees a closed connection; the message says what it likely means (a docs
    // audit met a bare "connection closed").
    assert!(
        err.contains("may be refusing this client's certificate"),
        "{err}"
    );
    assert_eq!(gateways[1].1.spans(), before);
    assert!(gateways[1].2.failed_handshakes() > 0);
    backends_stop.cancel();
}
