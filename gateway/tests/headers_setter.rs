#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The Collector's `headers_setter` extension end to end: exporters loaded from a gateway
//! config whose `auth` names one, sending to backends that take only `Bearer right`. The
//! rules' effect on each header is shown by core's `request_auth` tests; here, that what
//! they leave is what reaches the backend, over gRPC and HTTP.

use crate::common;

use std::time::Duration;

use prost::Message;
use tailgate_core::test_util::{scratch_dir, CaptureBackend, FakeOtlp};
use tailgate_gateway::export::ExporterConfig;
use tailgate_gateway::GatewayConfig;
use tokio_util::sync::CancellationToken;

/// Scenario: a gRPC backend (plaintext) and an HTTP one, each taking only `Bearer right`,
/// and a gateway config with three headers_setters: one that upserts the right token over
/// the exporter's stale `headers:` one (gRPC, plaintext: a headers_setter alone asks for
/// no TLS, as the Collector's), one that deletes the exporter's stale header and chains a
/// bearertokenauth with the right token (HTTP), one that only `update`s a header the
/// request does not have (HTTP). The gRPC one also tries to replace headers gRPC sets
/// and to set connection headers HTTP/2 refuses, by rules and by the exporter's `headers:`.
/// Guarantees: the first two deliver at the first attempt (gRPC's own headers left as
/// gRPC set them, the connection headers not sent; the exporter's are named in a load
/// warning); the third sends no authorization at all and is refused as
/// unauthorized, not retried.
#[tokio::test]
async fn the_headers_the_rules_leave_reach_the_backend() {
    let stop = CancellationToken::new();
    let start = |http| {
        CaptureBackend::start_with(
            "127.0.0.1:0".parse().unwrap(),
            http,
            None,
            Some("right"),
            stop.clone(),
        )
    };
    let (grpc_addr, grpc_backend) = start(false).await.unwrap();
    let (http_addr, http_backend) = start(true).await.unwrap();
    let dir = scratch_dir("gw-headers-setter").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n\
             \x20 headers_setter/grpc:\n\
             \x20   headers:\n\
             \x20     - {{key: X-Scope-OrgID, from_context: tenant, default_value: acme, action: insert}}\n\
             \x20     - {{key: Authorization, value: Bearer right, action: upsert}}\n\
             \x20     - {{key: Content-Type, value: text/plain, action: upsert}}\n\
             \x20     - {{key: grpc-encoding, value: bogus, action: upsert}}\n\
             \x20     - {{key: Connection, value: close, action: upsert}}\n\
             \x20     - {{key: Upgrade, value: h2c, action: upsert}}\n\
             \x20 headers_setter/http:\n\
             \x20   headers:\n\
             \x20     - {{key: authorization, action: delete}}\n\
             \x20   additional_auth: bearertokenauth\n\
             \x20 headers_setter/update:\n\
             \x20   headers:\n\
             \x20     - {{key: authorization, value: Bearer right, action: update}}\n\
             \x20 bearertokenauth:\n\
             \x20   token: right\n\
             export:\n\
             \x20 otlp:\n\
             \x20   endpoint: 'http://{grpc_addr}'\n\
             \x20   headers: {{authorization: Bearer stale, connection: keep-alive, content-type: application/json, te: gzip}}\n\
             \x20   auth: {{authenticator: headers_setter/grpc}}\n\
             \x20 otlphttp:\n\
             \x20   endpoint: 'http://{http_addr}'\n\
             \x20   headers: {{authorization: Bearer stale}}\n\
             \x20   auth: {{authenticator: headers_setter/http}}\n\
             \x20 otlphttp/update:\n\
             \x20   endpoint: 'http://{http_addr}'\n\
             \x20   auth: {{authenticator: headers_setter/update}}\n\
             \x20   retry_on_failure: {{max_elapsed_time: 5s}}\n"
        ),
    )
    .unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    let warnings = config.warnings();
    for name in ["connection", "content-type", "te"] {
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with(&format!("export.otlp.headers.{name}: not sent"))),
            "{warnings:?}"
        );
    }
    let body = bytes::Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    let auth = |e: &ExporterConfig| {
        let auth = match e {
            ExporterConfig::OtlpGrpc(c) => c.auth.as_ref(),
            ExporterConfig::OtlpHttp(c) => c.auth.as_ref(),
            ExporterConfig::Debug(_) => None,
        };
        config.extensions.credential(auth.unwrap()).unwrap()
    };
    let exporters = &config.export.exporters;

    let ExporterConfig::OtlpGrpc(grpc) = &exporters[0].1 else {
        panic!("{:?}", exporters[0])
    };
    let client = grpc.client().unwrap().with_auth(auth(&exporters[0].1));
    assert_eq!(client.send(body.clone()).await.unwrap().attempts, 1);
    assert!(grpc_backend.spans() > 0);

    let client = common::http_client(&config, 1);
    assert_eq!(client.send(body.clone()).await.unwrap().attempts, 1);
    let delivered = http_backend.spans();
    assert!(delivered > 0);

    let client = common::http_client(&config, 2);
    let err = tokio::time::timeout(Duration::from_secs(4), client.send(body))
        .await
        .expect("a refusal is final")
        .unwrap_err();
    assert!(
        matches!(
            err,
            tailgate_gateway::export::otlp_http::HttpExportError::Unauthorized(_)
        ),
        "{err:?}"
    );
    assert_eq!(http_backend.spans(), delivered);
    stop.cancel();
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: an `otlphttp` exporter whose headers_setter updates `Content-Type` and
/// `Content-Encoding` (headers the exporter sets), deletes a `headers:` entry and
/// `update`s one nobody set.
/// Guarantees: over HTTP the rules act on the request's own headers, as the Collector's
/// round-tripper order has them: the backend sees the updated values, not the deleted
/// header, and no header the update found missing.
#[tokio::test]
async fn over_http_the_rules_act_on_the_requests_own_headers() {
    let (addr, seen) = tailgate_core::test_util::recording_backend(Default::default()).await;
    let dir = scratch_dir("gw-headers-setter-http").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n\
             \x20 headers_setter:\n\
             \x20   headers:\n\
             \x20     - {{key: Content-Type, value: application/x-protobuf; v=2, action: update}}\n\
             \x20     - {{key: content-encoding, value: identity-ish, action: update}}\n\
             \x20     - {{key: X-Stale, action: delete}}\n\
             \x20     - {{key: X-Absent, value: v, action: update}}\n\
             export:\n\
             \x20 otlphttp:\n\
             \x20   endpoint: 'http://{addr}'\n\
             \x20   compression: gzip\n\
             \x20   headers: {{x-stale: old}}\n\
             \x20   auth: {{authenticator: headers_setter}}\n"
        ),
    )
    .unwrap();
    let config = GatewayConfig::load(&path).unwrap();
    let body = bytes::Bytes::from(FakeOtlp::traces(1).build().encode_to_vec());
    common::http_client(&config, 0).send(body).await.unwrap();
    let seen = seen.lock().unwrap();
    let headers = &seen[0].1;
    assert_eq!(headers["content-type"], "application/x-protobuf; v=2");
    assert_eq!(headers["content-encoding"], "identity-ish");
    assert!(!headers.contains_key("x-stale") && !headers.contains_key("x-absent"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: headers_setter blocks the Collector refuses, and chains Tailgate cannot
/// build, each loaded with `--check`'s loader.
/// Guarantees: each refused at load with the Collector's words and the rule's index, the
/// key named; a headers_setter chained to a bearertokenauth on a plaintext gRPC exporter
/// is refused (it sends a credential), while one without a chain loads there.
#[test]
fn unusable_headers_setters_are_refused_at_load() {
    let dir = scratch_dir("gw-headers-setter-refused").unwrap();
    let load = |extension: &str, endpoint: &str| {
        let path = dir.join("gateway.yaml");
        std::fs::write(
            &path,
            format!(
                "extensions:\n  bearertokenauth: {{token: t}}\n  headers_setter:\n{extension}\
                 export:\n  otlp:\n    endpoint: '{endpoint}'\n    auth: {{authenticator: headers_setter}}\n"
            ),
        )
        .unwrap();
        GatewayConfig::load(&path)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    };
    let tls = "https://127.0.0.1:4317";
    for (extension, expected) in [
        ("    headers: []\n", "missing headers configuration"),
        (
            "    headers: [{value: v}]\n",
            "headers[0]: missing header name",
        ),
        (
            "    headers: [{key: a, value: v}, {key: b}]\n",
            "headers[1]: missing header source",
        ),
        (
            "    headers: [{key: a, value: v, from_context: c}]\n",
            "headers[0]: invalid header source",
        ),
        (
            "    headers: [{key: a, value_file: /nonexistent/tailgate}]\n",
            "/nonexistent/tailgate",
        ),
        (
            "    headers: [{key: a, value: v}]\n    additional_auth: oauth2client\n",
            "auth extension \"oauth2client\" not found",
        ),
        (
            "    headers: [{key: a, valeu: v}]\n",
            "unknown field `valeu`",
        ),
        (
            "    headers: [{key: a, value: v}]\n    additional_auth: headers_setter\n",
            "is a headers_setter too",
        ),
    ] {
        let err = load(extension, tls).unwrap_err();
        assert!(
            err.contains(expected) && err.contains("headers_setter"),
            "{extension}: {err}"
        );
    }
    // A delete needs no source.
    load("    headers: [{key: a, action: delete}]\n", tls).unwrap();
    // Plaintext gRPC: a headers_setter alone loads, chained to a credential it does not.
    load(
        "    headers: [{key: a, value: v}]\n",
        "http://127.0.0.1:4317",
    )
    .unwrap();
    let err = load(
        "    headers: [{key: a, value: v}]\n    additional_auth: bearertokenauth\n",
        "http://127.0.0.1:4317",
    )
    .unwrap_err();
    assert!(err.contains("plaintext"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
