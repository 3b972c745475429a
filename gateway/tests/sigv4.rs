#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The Collector's `sigv4auth` extension end to end: an `otlphttp` exporter loaded from a
//! gateway config signs its requests with credentials from the AWS chain (keys in the
//! variables) or from STS (a web identity token, as EKS IRSA gives one); a backend checks
//! each signature as AWS does, from the headers the request lists as signed. Core's
//! `sigv4` tests check the signatures against botocore's.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tailgate_core::test_util::{
    recording_backend as backend, scratch_dir, token_endpoint, FakeOtlp, TokenRequests,
};
use tailgate_gateway::export::auth::CloudEnv;
use tailgate_gateway::GatewayConfig;

/// Checks a request's signature as AWS does: the headers its `authorization` lists as
/// signed, signed again with `secret` at its `x-amz-date`, must give the same
/// `authorization`. Returns the credential (`<key id>/<date>/<region>/<service>/aws4_request`).
fn verify(path: &str, headers: &http::HeaderMap, body: &[u8], secret: &str) -> String {
    let authorization = headers["authorization"].to_str().unwrap().to_owned();
    let credential = authorization
        .split("Credential=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let mut scope = credential.split('/');
    let (key_id, _, region, service) = (
        scope.next().unwrap(),
        scope.next().unwrap(),
        scope.next().unwrap(),
        scope.next().unwrap(),
    );
    let signed: Vec<&str> = authorization
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    let mut again = http::HeaderMap::new();
    for name in &signed {
        if *name != "host" {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            again.insert(name.clone(), headers[&name].clone());
        }
    }
    let stamp = headers["x-amz-date"].to_str().unwrap();
    let iso = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    );
    let at = tailgate_core::aws::parse_time(&iso)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let credentials = tailgate_core::aws::AwsCredentials {
        access_key_id: key_id.into(),
        secret_access_key: secret.into(),
        session_token: headers
            .get("x-amz-security-token")
            .map(|v| v.to_str().unwrap().to_owned()),
        expires: None,
    };
    let uri: http::Uri = format!("http://{}{path}", headers["host"].to_str().unwrap())
        .parse()
        .unwrap();
    tailgate_core::sigv4::sign(
        &credentials,
        &tailgate_core::sigv4::Scope { region, service },
        &http::Method::POST,
        &uri,
        &mut again,
        body,
        at,
    )
    .unwrap();
    assert_eq!(again["authorization"], authorization.as_str(), "signature");
    credential
}

fn load(dir: &std::path::Path, extension: &str, endpoint: &str) -> GatewayConfig {
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n  sigv4auth:\n{extension}\
             export:\n  otlphttp:\n    endpoint: '{endpoint}'\n    compression: gzip\n\
             \x20   auth: {{authenticator: sigv4auth}}\n    retry_on_failure: {{max_elapsed_time: 5s}}\n"
        ),
    )
    .unwrap();
    // Parsed only: the test gives the variables (loading would read the machine's chain).
    let text = std::fs::read_to_string(&path).unwrap();
    tailgate_core::config::parse_yaml(&path, &text).unwrap()
}

/// A gateway config whose `sigv4auth` assumes a role with a web identity token (a file
/// in `dir`), its exporter sending to `addr`; STS is for the test to name.
fn web_identity(dir: &std::path::Path, addr: &str) -> GatewayConfig {
    std::fs::write(dir.join("token"), "jwt").unwrap();
    load(
        dir,
        &format!(
            "    region: eu-west-1\n    service: xray\n    assume_role_with_web_identity:\n\
             \x20     arn: arn:aws:iam::1:role/r\n      token_file: {}\n",
            dir.join("token").display()
        ),
        &format!("http://{addr}/v1/traces"),
    )
}

/// STS's answer issuing `key` with `secret`, valid for an hour.
fn sts_answer(key: &str, secret: &str) -> String {
    format!(
        "<R><Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>t</SessionToken><Expiration>{}</Expiration></Credentials></R>",
        tailgate_core::aws::iso_time(std::time::SystemTime::now() + Duration::from_secs(3600))
    )
}

/// Scenario: keys in `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, an exporter compressing
/// with gzip to a backend that is not an AWS name (so `service` and `region` are set).
/// Guarantees: every request carries a signature that checks out over the body as sent
/// (compressed) and the headers it lists, for the configured service and region; no
/// session token is sent with long-term keys.
#[tokio::test]
async fn requests_are_signed_with_the_chains_keys() {
    let (addr, seen) = backend(Arc::default()).await;
    let dir = scratch_dir("gw-sigv4-keys").unwrap();
    let mut config = load(
        &dir,
        "    region: us-west-2\n    service: xray\n",
        &format!("http://{addr}/v1/traces"),
    );
    config.extensions.cloud_env = CloudEnv::from_vars(
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3cret/key"),
        ],
        None,
    );
    let client = common::http_client(&config, 0);
    let body = bytes::Bytes::from(FakeOtlp::traces(3).build().encode_to_vec());
    for _ in 0..2 {
        assert_eq!(client.send(body.clone()).await.unwrap().attempts, 1);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (path, headers, body) in seen.iter() {
        assert_eq!(headers["content-encoding"], "gzip");
        let scope = verify(path, headers, body, "s3cret/key");
        assert!(
            scope.starts_with("AKIDEXAMPLE/") && scope.ends_with("/us-west-2/xray/aws4_request")
        );
        assert!(headers.get("x-amz-security-token").is_none());
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a headers_setter whose rules add `x-scope-orgid` and which chains the
/// sigv4auth (the Collector's `additional_auth`), keys in the variables.
/// Guarantees: the rules' header reaches the backend and is among the signed ones, and the
/// signature checks out: the rules are applied before the signature.
#[tokio::test]
async fn a_headers_setter_chained_to_sigv4auth_signs_its_headers() {
    let (addr, seen) = backend(Arc::default()).await;
    let dir = scratch_dir("gw-sigv4-chained").unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            "extensions:\n  sigv4auth: {{region: us-west-2, service: xray}}\n\
             \x20 headers_setter:\n    headers: [{{key: X-Scope-OrgID, value: team-a, action: upsert}}]\n\
             \x20   additional_auth: sigv4auth\n\
             export:\n  otlphttp:\n    endpoint: 'http://{addr}'\n    auth: {{authenticator: headers_setter}}\n"
        ),
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut config: GatewayConfig = tailgate_core::config::parse_yaml(&path, &text).unwrap();
    config.extensions.cloud_env = CloudEnv::from_vars(
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "s3cret/key"),
        ],
        None,
    );
    let body = bytes::Bytes::from(FakeOtlp::traces(1).build().encode_to_vec());
    common::http_client(&config, 0).send(body).await.unwrap();
    let seen = seen.lock().unwrap();
    let (path, headers, body) = &seen[0];
    assert_eq!(headers["x-scope-orgid"], "team-a");
    assert!(headers["authorization"]
        .to_str()
        .unwrap()
        .contains("x-scope-orgid"));
    verify(path, headers, body, "s3cret/key");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: `assume_role_with_web_identity` with a token file and an STS endpoint named
/// by `AWS_ENDPOINT_URL_STS` (a fake on loopback issuing hour-long credentials); three
/// exports; then the backend refuses one request with 403.
/// Guarantees: STS is asked as the SDKs ask (`AssumeRoleWithWebIdentity`, the role, the
/// file's token) once for the three exports; each is signed with the temporary key and
/// carries its session token; a 403 makes the credentials be fetched again and the
/// request sent again, delivered.
#[tokio::test]
async fn a_web_identity_is_exchanged_at_sts_and_kept() {
    let issued = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = issued.clone();
    let (sts, asked, _): (_, TokenRequests, _) = token_endpoint(move |_, _| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let expires = std::time::SystemTime::now() + Duration::from_secs(3600);
        let xml = format!(
            "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>\
             <AccessKeyId>ASIATEST{n}</AccessKeyId><SecretAccessKey>temp-secret-{n}</SecretAccessKey>\
             <SessionToken>session-{n}</SessionToken>\
             <Expiration>{}</Expiration>\
             </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>",
            tailgate_core::aws::iso_time(expires)
        );
        (200, "text/xml", xml)
    })
    .await
    .unwrap();
    let refuse = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (addr, seen) = backend(refuse.clone()).await;
    let dir = scratch_dir("gw-sigv4-irsa").unwrap();
    std::fs::write(dir.join("token"), "eyJ.web.identity\n").unwrap();
    let mut config = load(
        &dir,
        &format!(
            "    region: eu-west-1\n    service: xray\n    assume_role_with_web_identity:\n\
             \x20     arn: arn:aws:iam::123456789012:role/tailgate\n      token_file: {}\n",
            dir.join("token").display()
        ),
        &format!("http://{addr}/v1/traces"),
    );
    config.extensions.cloud_env =
        CloudEnv::from_vars(&[("AWS_ENDPOINT_URL_STS", &sts.to_string())], None);
    let client = common::http_client(&config, 0);
    let body = bytes::Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    for _ in 0..3 {
        assert_eq!(client.send(body.clone()).await.unwrap().attempts, 1);
    }
    {
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 1, "one fetch for three exports");
        let form = &asked[0].1;
        assert!(form.contains("Action=AssumeRoleWithWebIdentity"), "{form}");
        assert!(
            form.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Ftailgate"),
            "{form}"
        );
        assert!(form.contains("WebIdentityToken=eyJ.web.identity"), "{form}");
    }
    for (path, headers, body) in seen.lock().unwrap().iter() {
        let scope = verify(path, headers, body, "temp-secret-0");
        assert!(scope.starts_with("ASIATEST0/") && scope.ends_with("/eu-west-1/xray/aws4_request"));
        assert_eq!(headers["x-amz-security-token"], "session-0");
    }
    // A refusal (an expired or revoked session): fetched again and sent again.
    refuse.store(1, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(client.send(body).await.unwrap().attempts, 2);
    assert_eq!(asked.lock().unwrap().len(), 2);
    let seen = seen.lock().unwrap();
    let (path, headers, body) = seen.last().unwrap();
    verify(path, headers, body, "temp-secret-1");
    assert_eq!(headers["x-amz-security-token"], "session-1");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a web identity exchanged at an STS endpoint named `http://sts.test` (a name
/// that does not resolve) with `HTTP_PROXY` naming a CONNECT proxy that reaches the fake
/// STS; the backend on loopback.
/// Guarantees: STS is asked through the proxy (a tunnel to `sts.test:80`), the export is
/// signed with what it issued, and the backend is reached directly (loopback is never
/// proxied, as in Go).
#[tokio::test]
async fn sts_is_reached_through_the_proxy_variables_name() {
    let (sts, asked, _) =
        token_endpoint(|_, _| (200, "text/xml", sts_answer("ASIAPROXIED", "via-proxy")))
            .await
            .unwrap();
    let sts_addr: std::net::SocketAddr = sts.authority().unwrap().as_str().parse().unwrap();
    let (proxy_addr, proxy) = tailgate_core::test_util::ConnectProxy::start(sts_addr)
        .await
        .unwrap();
    let (addr, seen) = backend(Arc::default()).await;
    let dir = scratch_dir("gw-sigv4-proxy").unwrap();
    let mut config = web_identity(&dir, &addr);
    config.extensions.cloud_env = CloudEnv::from_vars(
        &[("AWS_ENDPOINT_URL_STS", "http://sts.test/oauth2/token")],
        None,
    );
    config.extensions.proxy_env = tailgate_core::proxy::ProxyEnv {
        http: Some(format!("http://{proxy_addr}")),
        ..Default::default()
    };
    let body = bytes::Bytes::from(FakeOtlp::traces(1).build().encode_to_vec());
    common::http_client(&config, 0).send(body).await.unwrap();
    assert_eq!(asked.lock().unwrap().len(), 1);
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "only STS goes through the proxy: {heads:?}");
    assert!(heads[0].starts_with("CONNECT sts.test:80 "), "{heads:?}");
    let seen = seen.lock().unwrap();
    let (path, headers, body) = &seen[0];
    assert!(verify(path, headers, body, "via-proxy").starts_with("ASIAPROXIED/"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: an STS endpoint failing its first two requests (503), on a paused clock; one
/// export.
/// Guarantees: the export is not sent unsigned nor given up: it is held and retried
/// (the exporter's backoff) until STS issues credentials, then delivered once, signed.
#[tokio::test(start_paused = true)]
async fn an_export_without_credentials_is_held_until_sts_answers() {
    let n = std::sync::atomic::AtomicU32::new(0);
    let (sts, asked, _) = token_endpoint(move |_, _| {
        if n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            return (
                503,
                "text/xml",
                "<Error><Code>ServiceUnavailable</Code></Error>".into(),
            );
        }
        (200, "text/xml", sts_answer("ASIALATE", "late"))
    })
    .await
    .unwrap();
    let (addr, seen) = backend(Arc::default()).await;
    let dir = scratch_dir("gw-sigv4-held").unwrap();
    let mut config = web_identity(&dir, &addr);
    config.extensions.cloud_env =
        CloudEnv::from_vars(&[("AWS_ENDPOINT_URL_STS", &sts.to_string())], None);
    let body = bytes::Bytes::from(FakeOtlp::traces(1).build().encode_to_vec());
    let delivered = common::http_client(&config, 0).send(body).await.unwrap();
    // Held attempts within a second of a failed fetch ask nothing (FETCH_AGAIN_AFTER).
    assert!(delivered.attempts >= 3, "{delivered:?}");
    assert_eq!(asked.lock().unwrap().len(), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "nothing sent without credentials");
    let (path, headers, body) = &seen[0];
    assert!(verify(path, headers, body, "late").starts_with("ASIALATE/"));
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: sigv4auth where it cannot work: on a gRPC exporter, and on an endpoint whose
/// service and region cannot be inferred while none are set.
/// Guarantees: each refused at load naming the extension and what to do.
#[test]
fn sigv4auth_is_refused_where_it_cannot_sign() {
    let dir = scratch_dir("gw-sigv4-refused").unwrap();
    let path = dir.join("gateway.yaml");
    let try_load = |text: &str| {
        std::fs::write(&path, text).unwrap();
        GatewayConfig::load(&path)
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    };
    let err = try_load(
        "extensions:\n  sigv4auth: {region: us-east-1, service: xray}\n\
         export:\n  otlp:\n    endpoint: https://xray.us-east-1.amazonaws.com\n    auth: {authenticator: sigv4auth}\n",
    )
    .unwrap_err();
    assert!(err.contains("HTTP requests only"), "{err}");
    let err = try_load(
        "extensions:\n  sigv4auth: {}\n\
         export:\n  otlphttp:\n    endpoint: https://otlp.example.com\n    auth: {authenticator: sigv4auth}\n",
    )
    .unwrap_err();
    assert!(err.contains("set service and region"), "{err}");
    // An AWS endpoint name gives both (a web identity: the machine's chain is not read).
    let path2 = dir.join("ok.yaml");
    std::fs::write(
        &path2,
        "extensions:\n  sigv4auth: {assume_role_with_web_identity: {arn: 'arn:aws:iam::1:role/r', token_file: /var/run/token}}\n\
         export:\n  otlphttp:\n    endpoint: https://xray.us-east-1.amazonaws.com\n    auth: {authenticator: sigv4auth}\n",
    )
    .unwrap();
    let loaded = GatewayConfig::load(&path2);
    assert!(loaded.is_ok(), "{:?}", loaded.err());
    // Chained to a headers_setter, on gRPC: refused as sigv4auth itself is.
    let err = try_load(
        "extensions:\n  sigv4auth: {region: us-east-1, service: xray}\n\
         \x20 headers_setter: {headers: [{key: a, value: b, action: upsert}], additional_auth: sigv4auth}\n\
         export:\n  otlp:\n    endpoint: https://xray.us-east-1.amazonaws.com\n    auth: {authenticator: headers_setter}\n",
    )
    .unwrap_err();
    assert!(err.contains("HTTP requests only"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
