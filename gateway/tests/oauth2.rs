#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The Collector's `oauth2client` extension end to end: a gateway whose exporters get
//! their tokens from an OAuth2 token endpoint (client credentials) and send them to
//! backends that take only that token; and the settings refused at load.

use crate::common;

use std::path::Path;
use std::time::Duration;

use prost::Message;
use tailgate_core::forward::{GrpcClient, RetryConfig};
use tailgate_core::proxy::ProxyEnv;
use tailgate_core::receive::Listeners;
use tailgate_core::test_util::{
    scratch_dir, token_endpoint, CaptureBackend, ConnectProxy, FakeOtlp, TestPki, TokenRequests,
};
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio_util::sync::CancellationToken;

const POLICIES: &str = "decision_wait: 200ms\npolicies:\n  - {name: all, type: always_sample}\n";

/// Scenario: a token endpoint issuing hour-long tokens to one client whose secret is in a
/// file, reachable only through a proxy (`HTTP_PROXY`, its name resolving nowhere else);
/// an OTLP/gRPC backend over TLS and an OTLP/HTTP one, each taking only
/// `Bearer <that token>`; a gateway whose two exporters name the same `oauth2client`.
/// The endpoint fails its first fetch.
/// Guarantees: every span reaches both backends (exports that found no token were held
/// and tried again, not sent without one and lost), with one token fetched per exporter
/// once the endpoint answers (core's oauth2 tests show it kept across requests), the
/// endpoint asked as the Collector asks it, through the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporters_send_the_token_an_oauth2_endpoint_issues() {
    tracing_subscriber::fmt().with_test_writer().try_init().ok();
    let dir = scratch_dir("gw-oauth2").unwrap();
    // The endpoint fails its first fetch (both tries): the first exports are held and
    // tried again, not sent without a token.
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = tries.clone();
    let (token_url, asked, _): (_, TokenRequests, _) = token_endpoint(move |auth, form| {
        if counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 2 {
            return (
                503,
                "application/json",
                r#"{"error":"temporarily_unavailable"}"#.into(),
            );
        }
        let basic = "Basic dGFpbGdhdGU6czNjcmV0"; // tailgate:s3cret
        if auth != Some(basic) || !form.starts_with("grant_type=client_credentials&scope=traces") {
            return (
                401,
                "application/json",
                r#"{"error":"invalid_client"}"#.into(),
            );
        }
        (
            200,
            "application/json",
            r#"{"access_token":"issued-t0k","token_type":"bearer","expires_in":3600}"#.into(),
        )
    })
    .await
    .unwrap();
    let idp = token_url.authority().unwrap().as_str().parse().unwrap();
    let (proxy_addr, proxy) = ConnectProxy::start(idp).await.unwrap();
    let token_url = format!(
        "http://idp.test:{}/oauth2/token",
        token_url.port_u16().unwrap()
    );
    let backend_ca = TestPki::new(&dir, "backend").unwrap();
    let stop = CancellationToken::new();
    let backend_tls = backend_ca.server("backend-server", &["127.0.0.1"]).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let (grpc_addr, grpc_backend) = CaptureBackend::start_with(
        local,
        false,
        Some(backend_tls),
        Some("issued-t0k"),
        stop.clone(),
    )
    .await
    .unwrap();
    let (http_addr, http_backend) =
        CaptureBackend::start_with(local, true, None, Some("issued-t0k"), stop.clone())
            .await
            .unwrap();
    let secret_file = dir.join("client-secret");
    std::fs::write(&secret_file, "s3cret\n").unwrap();
    let ca = backend_ca.ca_file("backend").display().to_string();
    let config_path = dir.join("gateway.yaml");
    std::fs::write(
        &config_path,
        format!(
            "receive:\n  grpc: '127.0.0.1:0'\n  http: null\n\
             extensions:\n  oauth2client:\n    client_id: tailgate\n    client_secret_file: '{}'\n    token_url: '{token_url}'\n    scopes: [traces]\n    timeout: 2s\n\
             export:\n  otlp:\n    endpoint: 'https://{grpc_addr}'\n    tls: {{ca_file: '{ca}'}}\n    auth: {{authenticator: oauth2client}}\n\
             \x20 otlphttp:\n    endpoint: 'http://{http_addr}'\n    auth: {{authenticator: oauth2client}}\n\
             admin: null\nmetrics: null\n",
            secret_file.display()
        ),
    )
    .unwrap();
    let mut config = GatewayConfig::load(&config_path).unwrap();
    config.extensions.proxy_env = ProxyEnv {
        http: Some(proxy_addr.to_string()),
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
    for seed in 0..3 {
        let req = FakeOtlp::traces(10).spans(2).seed(seed).build();
        client.send(req.encode_to_vec().into()).await.unwrap();
    }
    let sent = 3 * 10 * 2;
    common::wait_for_spans(
        &[&grpc_backend, &http_backend],
        sent,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(grpc_backend.spans(), sent);
    assert_eq!(http_backend.spans(), sent);
    // One token per exporter (each builds its own credential), whatever the requests,
    // after the failed fetch (two tries) and at most one more of them.
    let asked = asked.lock().unwrap().len();
    assert!((3..=6).contains(&asked), "{asked} token requests");
    let heads = proxy.heads();
    // A tunnel per connection; a connection may serve several fetches.
    assert!((1..=asked).contains(&heads.len()), "{heads:?}");
    assert!(
        heads.iter().all(|h| h.starts_with("CONNECT idp.test:")),
        "{heads:?}"
    );
    stop.cancel();
    served.await.unwrap().unwrap();
}

/// Scenario: `oauth2client` blocks that cannot work: no token_url, no client secret, a
/// secret file that is not there, the jwt-bearer grant, endpoint_params that would
/// overwrite the scope or the secret, credentials in token_url; and an empty grant_type.
/// Guarantees: each of the first is refused at load, naming the extension and what to set,
/// as the Collector's (and Go's) messages say it; an empty grant_type loads.
#[test]
fn oauth2client_settings_that_cannot_work_are_refused_at_load() {
    let dir = scratch_dir("gw-oauth2-bad").unwrap();
    let path = dir.join("gateway.yaml");
    for (block, says) in [
        ("client_id: a\n    client_secret: b", "no TokenURL provided"),
        ("client_id: a\n    token_url: https://idp.example/token", "no ClientSecret provided"),
        (
            "client_id: a\n    client_secret_file: /nonexistent/secret\n    token_url: https://idp.example/token",
            "/nonexistent/secret",
        ),
        (
            "client_id: a\n    client_secret: b\n    token_url: https://idp.example/token\n    grant_type: urn:ietf:params:oauth:grant-type:jwt-bearer",
            "client_credentials tokens only",
        ),
        (
            "client_id: a\n    client_secret: b\n    token_url: https://idp.example/token\n    scopes: [x]\n    endpoint_params: {scope: y}",
            "cannot overwrite parameter \"scope\"",
        ),
        (
            "client_id: a\n    client_secret: b\n    token_url: https://idp.example/token\n    endpoint_params: {client_secret: y}",
            "cannot overwrite parameter \"client_secret\"",
        ),
        (
            "client_id: a\n    client_secret: b\n    token_url: https://u:hunter2@idp.example/token",
            "credentials in the URL are not sent; set client_id",
        ),
    ] {
        std::fs::write(
            &path,
            format!(
                "extensions:\n  oauth2client:\n    {block}\nexport:\n  otlphttp:\n    endpoint: https://api.example\n    auth: {{authenticator: oauth2client}}\n"
            ),
        )
        .unwrap();
        let err = GatewayConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("oauth2client") && err.contains(says), "{block}: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
    std::fs::write(
        &path,
        "extensions:\n  oauth2client:\n    client_id: a\n    client_secret: b\n    token_url: https://idp.example/token\n    grant_type: ''\n    endpoint_params: {scope: y, audience: [p, q]}\nexport:\n  otlphttp:\n    endpoint: https://api.example\n    auth: {authenticator: oauth2client}\n",
    )
    .unwrap();
    GatewayConfig::load(&path).unwrap();
}

/// Scenario: a backend that refuses every token the endpoint issues (a wrong audience),
/// the endpoint issuing a new one on each fetch; one export.
/// Guarantees: the export fails as refused credentials after one resend with a newer
/// token (two fetches), not a fetch and resend per attempt until the retry bound.
#[tokio::test]
async fn a_backend_refusing_every_token_fails_after_one_resend() {
    let (token_url, asked, _): (_, TokenRequests, _) =
        token_endpoint(tailgate_core::test_util::issuing_tokens(3600))
            .await
            .unwrap();
    let stop = CancellationToken::new();
    let (http_addr, backend) = CaptureBackend::start_with(
        "127.0.0.1:0".parse().unwrap(),
        true,
        None,
        Some("another-audience"),
        stop.clone(),
    )
    .await
    .unwrap();
    let dir = scratch_dir("gw-oauth2-refused").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n  oauth2client:\n    client_id: a\n    client_secret: b\n    token_url: '{token_url}'\n\
             export:\n  otlphttp:\n    endpoint: 'http://{http_addr}'\n    auth: {{authenticator: oauth2client}}\n    retry_on_failure: {{max_elapsed_time: 10s}}\n"
        ),
    )
    .unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    let client = common::http_client(&config, 0);
    let body = FakeOtlp::traces(1).build().encode_to_vec();
    let err = tokio::time::timeout(Duration::from_secs(8), client.send(body.into()))
        .await
        .expect("it fails well within the retry bound")
        .unwrap_err();
    assert!(
        matches!(
            err,
            tailgate_gateway::export::otlp_http::HttpExportError::Unauthorized(_)
        ),
        "{err:?}"
    );
    assert_eq!(asked.lock().unwrap().len(), 2);
    assert_eq!(backend.spans(), 0);
    stop.cancel();
}
