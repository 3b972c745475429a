#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The Collector's `googleclientauth` extension end to end: an `otlphttp` exporter loaded
//! from a gateway config sends a Google access token, fetched with a service account's key
//! from a token endpoint (a fake on loopback), with the project headers Google's clients
//! send. Core's `gcp` tests check the key's signature and the metadata server.

use crate::common;

use std::sync::Arc;

use prost::Message;
use tailgate_core::test_util::{recording_backend, scratch_dir, token_endpoint, FakeOtlp};
use tailgate_gateway::export::auth::CloudEnv;
use tailgate_gateway::GatewayConfig;

/// Scenario: `GOOGLE_APPLICATION_CREDENTIALS` naming a service account's key whose
/// `token_uri` is a fake endpoint issuing `ya29.t<n>`; an exporter whose `auth` is a
/// `googleclientauth` without project (the file's is used) and with a quota project;
/// three exports, then the backend refuses one with 403.
/// Guarantees: one token fetch for three exports; every request carries `Bearer
/// ya29.t0`, `x-goog-project-id` from the file and `x-goog-user-project` from the config;
/// the refused request is sent again with a new token.
#[tokio::test]
async fn exports_carry_a_google_token_and_project() {
    let n = std::sync::atomic::AtomicU32::new(0);
    let (token_uri, asked, _) = token_endpoint(move |_, form| {
        assert!(form.contains("jwt-bearer"), "{form}");
        let i = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        (
            200,
            "application/json",
            format!(r#"{{"access_token":"ya29.t{i}","expires_in":3599,"token_type":"Bearer"}}"#),
        )
    })
    .await
    .unwrap();
    let refuse = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (addr, seen) = recording_backend(refuse.clone()).await;
    let dir = scratch_dir("gw-google").unwrap();
    let key = dir.join("key.json");
    std::fs::write(
        &key,
        format!(
            r#"{{"type":"service_account","project_id":"from-file","private_key_id":"kid","private_key":"{}","client_email":"gw@from-file.iam.gserviceaccount.com","token_uri":"{token_uri}"}}"#,
            include_str!("../../core/tests/fixtures/gcp-test-key.pem").replace('\n', "\\n")
        ),
    )
    .unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n  googleclientauth:\n    quota_project: billing\n\
             export:\n  otlphttp:\n    endpoint: 'http://{addr}'\n    auth: {{authenticator: googleclientauth}}\n"
        ),
    )
    .unwrap();
    // Parsed, then given its variables and checked (loading reads the machine's).
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: GatewayConfig = tailgate_core::config::parse_yaml(&path, &text).unwrap();
    config.extensions.cloud_env = CloudEnv::from_vars(
        &[("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap())],
        None,
    );
    config.validate(&path).unwrap();
    let client = common::http_client(&config, 0);
    let body = bytes::Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    for _ in 0..3 {
        assert_eq!(client.send(body.clone()).await.unwrap().attempts, 1);
    }
    assert_eq!(asked.lock().unwrap().len(), 1);
    for (_, headers, _) in seen.lock().unwrap().iter() {
        assert_eq!(headers["authorization"], "Bearer ya29.t0");
        assert_eq!(headers["x-goog-project-id"], "from-file");
        assert_eq!(headers["x-goog-user-project"], "billing");
    }
    refuse.store(1, std::sync::atomic::Ordering::SeqCst);
    // The backend answers 403 (recording_backend's refusal): sent again with a new token.
    assert_eq!(client.send(body).await.unwrap().attempts, 2);
    assert_eq!(asked.lock().unwrap().len(), 2);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.last().unwrap().1["authorization"], "Bearer ya29.t1");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a service account's key naming a quota project (`quota_project_id`) and a
/// project in `GOOGLE_CLOUD_PROJECT`; a gRPC backend over TLS taking only `Bearer
/// ya29.t0`; two `otlp` exporters, one with the default header and one with
/// `token_header: proxy-authorization` (IAP).
/// Guarantees: the first delivers at the first attempt (the token travels as gRPC
/// metadata); the second's headers put the token in `proxy-authorization`, not
/// `authorization`; both carry the variable's project and the key's quota project; the
/// headers holding the token are marked sensitive.
#[tokio::test]
async fn grpc_exporters_carry_a_google_token() {
    let (token_uri, _, _) = token_endpoint(|_, _| {
        (
            200,
            "application/json",
            r#"{"access_token":"ya29.t0","expires_in":3599}"#.into(),
        )
    })
    .await
    .unwrap();
    let dir = scratch_dir("gw-google-grpc").unwrap();
    let pki = tailgate_core::test_util::TestPki::new(&dir, "ca").unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let (addr, backend) = tailgate_core::test_util::CaptureBackend::start_with(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(pki.server("backend", &["127.0.0.1"]).unwrap()),
        Some("ya29.t0"),
        stop.clone(),
    )
    .await
    .unwrap();
    let key = dir.join("key.json");
    std::fs::write(
        &key,
        format!(
            r#"{{"type":"service_account","project_id":"from-file","quota_project_id":"billing-from-key","private_key_id":"kid","private_key":"{}","client_email":"gw@from-file.iam.gserviceaccount.com","token_uri":"{token_uri}"}}"#,
            include_str!("../../core/tests/fixtures/gcp-test-key.pem").replace('\n', "\\n")
        ),
    )
    .unwrap();
    let ca = pki.ca_file("ca");
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n  googleclientauth:\n  googleclientauth/iap:\n    token_header: proxy-authorization\n\
             export:\n\
             \x20 otlp:\n    endpoint: 'https://{addr}'\n    tls: {{ca_file: '{ca}'}}\n    auth: {{authenticator: googleclientauth}}\n\
             \x20 otlp/iap:\n    endpoint: 'https://{addr}'\n    tls: {{ca_file: '{ca}'}}\n    auth: {{authenticator: googleclientauth/iap}}\n",
            ca = ca.display()
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: GatewayConfig = tailgate_core::config::parse_yaml(&path, &text).unwrap();
    config.extensions.cloud_env = CloudEnv::from_vars(
        &[
            ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap()),
            ("GOOGLE_CLOUD_PROJECT", "from-variable"),
        ],
        None,
    );
    config.validate(&path).unwrap();
    let exporter = |i: usize| {
        let tailgate_gateway::export::ExporterConfig::OtlpGrpc(grpc) =
            &config.export.exporters[i].1
        else {
            panic!("{:?}", config.export.exporters[i])
        };
        let auth = config
            .extensions
            .credential(grpc.auth.as_ref().unwrap())
            .unwrap();
        (grpc.client().unwrap(), auth)
    };
    let (client, auth) = exporter(0);
    let request = FakeOtlp::traces(2).build();
    let sent: usize = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let body = bytes::Bytes::from(request.encode_to_vec());
    assert_eq!(client.with_auth(auth).send(body).await.unwrap().attempts, 1);
    assert_eq!(backend.spans(), sent as u64);

    for (i, header) in [(0, "authorization"), (1, "proxy-authorization")] {
        let (_, auth) = exporter(i);
        let mut headers = http::HeaderMap::new();
        auth.apply(&mut headers).await.unwrap();
        assert_eq!(headers[header], "Bearer ya29.t0");
        assert!(headers[header].is_sensitive());
        assert_eq!(headers["x-goog-project-id"], "from-variable");
        assert_eq!(headers["x-goog-user-project"], "billing-from-key");
        if i == 1 {
            assert!(!headers.contains_key("authorization"));
        }
    }
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}
