//! TLS and mutual TLS between Tailgate's client and receivers, with certificates made by
//! the test: who is let in, who is refused, and certificate rotation under open
//! connections.

#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use tailgate_core::forward::{ForwardError, GrpcClient, RetryConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp, TestPki};
use tailgate_core::tls::{ClientTls, ClientTlsConfig, ServerTlsConfig, TlsError, TlsServer};
use tokio_util::sync::CancellationToken;

fn quick_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(50),
        max_elapsed_time: Duration::from_millis(300),
    }
}

fn body(spans: usize) -> Bytes {
    FakeOtlp::traces(spans)
        .spans(1)
        .build()
        .encode_to_vec()
        .into()
}

fn client(addr: std::net::SocketAddr, tls: Option<&ClientTls>) -> GrpcClient {
    let c = GrpcClient::new(
        &format!("https://{addr}"),
        &[],
        Duration::from_secs(2),
        quick_retry(),
    )
    .unwrap()
    .give_up_when_unreachable();
    match tls {
        Some(t) => c.with_tls(t),
        None => c,
    }
}

fn client_tls(ca: &Path, cert: Option<(&Path, &Path)>) -> ClientTls {
    ClientTlsConfig {
        ca_file: Some(ca.to_owned()),
        cert_file: cert.map(|c| c.0.to_owned()),
        key_file: cert.map(|c| c.1.to_owned()),
        ..Default::default()
    }
    .build()
    .unwrap()
}

/// Scenario: a receiver that requires client certificates signed by its CA (mTLS), and
/// clients with the right certificate, none, one from another CA, no trust in the
/// server's CA, and plaintext. Guarantees: only the first is served and every span it
/// sends arrives; the others fail at the handshake and are counted.
#[tokio::test]
async fn mutual_tls_lets_in_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempdir("mtls");
    let ca = TestPki::new(&dir, "ca").unwrap();
    let other = TestPki::new(&dir, "other").unwrap();
    let (server_crt, server_key) = ca.issue("server", &["127.0.0.1", "localhost"]).unwrap();
    let (client_crt, client_key) = ca.issue("client", &["router"]).unwrap();
    let (rogue_crt, rogue_key) = other.issue("rogue", &["router"]).unwrap();
    let server = TlsServer::load(&ServerTlsConfig {
        cert_file: Some(server_crt),
        key_file: Some(server_key),
        client_ca_file: Some(ca.ca_file("ca")),
        ..Default::default()
    })
    .unwrap();
    assert!(server.requires_client_certificates());
    let token = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(server.clone()),
        token.clone(),
    )
    .await
    .unwrap();

    let good = client_tls(&ca.ca_file("ca"), Some((&client_crt, &client_key)));
    client(addr, Some(&good)).send(body(40)).await.unwrap();
    assert_eq!(backend.spans(), 40);

    let refused = [
        client_tls(&ca.ca_file("ca"), None),
        client_tls(&ca.ca_file("ca"), Some((&rogue_crt, &rogue_key))),
        client_tls(&other.ca_file("other"), Some((&client_crt, &client_key))),
    ];
    for (i, tls) in refused.iter().enumerate() {
        let err = client(addr, Some(tls)).send(body(5)).await.unwrap_err();
        assert!(
            matches!(
                err,
                ForwardError::Unreachable { .. } | ForwardError::GaveUp { .. }
            ),
            "{i}: {err}"
        );
    }
    let plain = GrpcClient::new(
        &addr.to_string(),
        &[],
        Duration::from_secs(2),
        quick_retry(),
    )
    .unwrap()
    .give_up_when_unreachable();
    assert!(plain.send(body(5)).await.is_err());
    assert_eq!(backend.spans(), 40, "nothing but the good client's spans");
    assert!(
        server.failed_handshakes() >= 3,
        "{}",
        server.failed_handshakes()
    );
    token.cancel();
}

/// Scenario: the server's certificate is replaced on disk by one from a new CA while a
/// client holds an open connection. Guarantees: the open connection goes on working;
/// new connections get the new certificate (a client trusting only the new CA is refused
/// before and served after); nothing sent is lost. On the binaries' multi-threaded
/// runtime, where the files are read with the worker handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_certificates_apply_to_new_connections_without_dropping_open_ones() {
    let dir = tempdir("rotate");
    let old = TestPki::new(&dir, "old").unwrap();
    let new = TestPki::new(&dir, "new").unwrap();
    let (crt, key) = old.issue("server", &["127.0.0.1"]).unwrap();
    let server = TlsServer::load(&ServerTlsConfig {
        cert_file: Some(crt.clone()),
        key_file: Some(key.clone()),
        reload_interval: Some(Duration::from_secs(3600)),
        ..Default::default()
    })
    .unwrap();
    let token = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(server.clone()),
        token.clone(),
    )
    .await
    .unwrap();
    let old_client = client(addr, Some(&client_tls(&old.ca_file("old"), None)));
    old_client.send(body(10)).await.unwrap();
    let new_tls = client_tls(&new.ca_file("new"), None);
    assert!(client(addr, Some(&new_tls)).send(body(1)).await.is_err());

    // Rotate: new files in place (as a Secret update), then the reload check.
    let (new_crt, new_key) = new.issue("server-next", &["127.0.0.1"]).unwrap();
    std::fs::copy(&new_crt, &crt).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.reload_now();

    old_client.send(body(10)).await.unwrap();
    client(addr, Some(&new_tls)).send(body(10)).await.unwrap();
    assert_eq!(backend.spans(), 30);
    token.cancel();
}

/// Scenario: a client trusts the CA in its `ca_file`; the server's certificate is replaced
/// by one from a new CA, then the client's `ca_file` by the new CA (a rotated bundle).
/// Guarantees: with the old bundle a new connection is refused; once the file holds the
/// new CA, a new connection from the same built client side is served, without a
/// restart; a half-written file keeps the bundle in use.
#[tokio::test]
async fn a_rotated_ca_file_is_trusted_by_new_connections() {
    let dir = tempdir("rotate-ca");
    let old = TestPki::new(&dir, "old").unwrap();
    let new = TestPki::new(&dir, "new").unwrap();
    let (crt, key) = old.issue("server", &["127.0.0.1"]).unwrap();
    let server = TlsServer::load(&ServerTlsConfig {
        cert_file: Some(crt.clone()),
        key_file: Some(key.clone()),
        reload_interval: Some(Duration::from_secs(3600)),
        ..Default::default()
    })
    .unwrap();
    let token = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(server.clone()),
        token.clone(),
    )
    .await
    .unwrap();
    let bundle = dir.join("bundle.crt");
    std::fs::copy(old.ca_file("old"), &bundle).unwrap();
    // Checked at every handshake, so that the test needs no clock.
    let tls = ClientTlsConfig {
        ca_file: Some(bundle.clone()),
        reload_interval: Some(Duration::from_nanos(1)),
        ..Default::default()
    }
    .build()
    .unwrap();
    client(addr, Some(&tls)).send(body(1)).await.unwrap();
    // A half-written bundle is not taken: the old CA still verifies the old server.
    std::fs::write(&bundle, b"-----BEGIN CERTIFICATE-----\nhalf").unwrap();
    client(addr, Some(&tls)).send(body(1)).await.unwrap();

    let (new_crt, new_key) = new.issue("server-next", &["127.0.0.1"]).unwrap();
    std::fs::copy(&new_crt, &crt).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.reload_now();
    assert!(client(addr, Some(&tls)).send(body(1)).await.is_err());

    std::fs::copy(new.ca_file("new"), &bundle).unwrap();
    client(addr, Some(&tls)).send(body(10)).await.unwrap();
    assert_eq!(backend.spans(), 12);
    token.cancel();
}

/// Scenario: settings the Collector's configtls refuses, and files that do not hold
/// what they should. Guarantees: a typed error naming the key.
#[test]
fn bad_settings_are_refused_with_the_key() {
    let dir = tempdir("bad");
    let ca = TestPki::new(&dir, "ca").unwrap();
    let (crt, key) = ca.issue("server", &["localhost"]).unwrap();
    let only_cert = ServerTlsConfig {
        cert_file: Some(crt.clone()),
        ..Default::default()
    };
    assert!(matches!(
        only_cert.validate(),
        Err(TlsError::Setting {
            key: "cert_file",
            ..
        })
    ));
    // The server's own certificate that does not parse, and a key of another pair, are
    // named by their keys in words (rustls says "invalid peer certificate: BadEncoding",
    // "KeyMismatch").
    let (_, other_key) = ca.issue("other", &["localhost"]).unwrap();
    let mismatched = ServerTlsConfig {
        cert_file: Some(crt.clone()),
        key_file: Some(other_key),
        ..Default::default()
    };
    let err = mismatched.validate().unwrap_err();
    assert_eq!(err.key(), Some("key_file"), "{err}");
    assert!(
        err.detail().contains("does not belong to the certificate"),
        "{err}"
    );
    let garbage = ServerTlsConfig {
        cert_pem: Some("-----BEGIN CERTIFICATE-----\nZm9v\n-----END CERTIFICATE-----\n".into()),
        key_file: Some(key.clone()),
        ..Default::default()
    };
    let err = garbage.validate().unwrap_err();
    assert_eq!(err.key(), Some("cert_pem"), "{err}");
    assert!(
        err.detail().contains("not a valid X.509 certificate"),
        "{err}"
    );
    let key_as_cert = ServerTlsConfig {
        cert_file: Some(key.clone()),
        key_file: Some(key.clone()),
        ..Default::default()
    };
    assert!(matches!(
        key_as_cert.validate(),
        Err(TlsError::Pem {
            key: "cert_file",
            ..
        })
    ));
    let missing = ServerTlsConfig {
        cert_file: Some(dir.join("nope.crt")),
        key_file: Some(key.clone()),
        ..Default::default()
    };
    assert!(matches!(
        missing.validate(),
        Err(TlsError::Read {
            key: "cert_file",
            ..
        })
    ));
    let version = ServerTlsConfig {
        cert_file: Some(crt),
        key_file: Some(key),
        min_version: Some("1.4".into()),
        ..Default::default()
    };
    assert!(matches!(
        version.validate(),
        Err(TlsError::Version {
            key: "min_version",
            ..
        })
    ));
}

/// Scenario: endpoints with and without a scheme, with and without a `tls:` block.
/// Guarantees: `https://` is TLS, `http://` plaintext (and a contradiction is an
/// error), no scheme follows the block as the Collector's `insecure` does.
#[test]
fn the_endpoint_scheme_and_tls_block_decide_together() {
    let block = ClientTlsConfig::default();
    let insecure = ClientTlsConfig {
        insecure: true,
        ..Default::default()
    };
    let with_ca = ClientTlsConfig {
        ca_file: Some("/ca.crt".into()),
        ..Default::default()
    };
    let uses = ClientTlsConfig::uses_tls;
    assert!(uses(None, "https://b:4317").unwrap());
    assert!(uses(Some(&insecure), "https://b:4317").unwrap());
    assert!(!uses(None, "http://b:4317").unwrap());
    assert!(!uses(Some(&block), "http://b:4317").unwrap());
    assert!(matches!(
        uses(Some(&with_ca), "http://b:4317"),
        Err(TlsError::Settings(_))
    ));
    // Any setting that only means something over TLS, on a plaintext endpoint, is refused
    // naming it: the writer meant TLS, and headers (API keys) would go out in clear.
    for (name, meant_tls) in [
        (
            "insecure_skip_verify",
            ClientTlsConfig {
                insecure_skip_verify: true,
                ..Default::default()
            },
        ),
        (
            "server_name_override",
            ClientTlsConfig {
                server_name_override: Some("api.example.com".into()),
                ..Default::default()
            },
        ),
        (
            "min_version",
            ClientTlsConfig {
                min_version: Some("1.3".into()),
                ..Default::default()
            },
        ),
    ] {
        let err = uses(Some(&meant_tls), "http://b:4317").unwrap_err();
        assert!(
            matches!(&err, TlsError::Settings(m) if m.contains(name) && m.contains("https://")),
            "{err}"
        );
        // Written with insecure: true, plaintext is what the writer asked for.
        let asked = ClientTlsConfig {
            insecure: true,
            ..meant_tls
        };
        assert!(!uses(Some(&asked), "http://b:4317").unwrap());
    }
    assert!(!uses(None, "b:4317").unwrap());
    assert!(uses(Some(&block), "b:4317").unwrap());
    assert!(!uses(Some(&insecure), "b:4317").unwrap());
    assert!(matches!(uses(None, "ftp://b"), Err(TlsError::Settings(_))));
    // `insecure: true` yields to a CA only, as configtls' LoadTLSConfig: a leftover client
    // certificate beside it (a trial's vendor block) is plaintext there, and flagged.
    let ca_insecure = ClientTlsConfig {
        insecure: true,
        ..with_ca.clone()
    };
    assert!(uses(Some(&ca_insecure), "b:4317").unwrap());
    assert!(!ca_insecure.unused_client_certificate());
    let cert_insecure = ClientTlsConfig {
        insecure: true,
        cert_file: Some("/client.crt".into()),
        key_file: Some("/client.key".into()),
        ..Default::default()
    };
    assert!(!uses(Some(&cert_insecure), "b:4317").unwrap());
    assert!(cert_insecure.unused_client_certificate());
    let cert = ClientTlsConfig {
        insecure: false,
        ..cert_insecure
    };
    assert!(uses(Some(&cert), "b:4317").unwrap());
    assert!(!cert.unused_client_certificate());
}

fn tempdir(name: &str) -> tailgate_core::test_util::ScratchDir {
    tailgate_core::test_util::scratch_dir(&format!("tls-{name}")).unwrap()
}
