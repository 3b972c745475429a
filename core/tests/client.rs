#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The gRPC client against real servers on loopback: Tailgate's own receiver and the
//! generated tonic `TraceService` server (an independent gRPC implementation): what arrives,
//! what comes back, and how errors map to retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tailgate_core::forward::{
    Compression, CompressionParams, ForwardError, GrpcClient, Keepalive, RetryConfig,
};
use tailgate_core::receive::{Origin, PEER_HEADER};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tokio_util::sync::CancellationToken;

fn quick_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(50),
        max_elapsed_time: Duration::from_millis(400),
    }
}

/// A request as the generated server saw it: the request, the peer header, `x-tenant`.
type Seen = (ExportTraceServiceRequest, Option<String>, Option<String>);

/// What the generated server saw, and what it answers.
#[derive(Default)]
struct Tonic {
    requests: Mutex<Vec<Seen>>,
    answer: Mutex<Option<tonic::Status>>,
    rejected: i64,
    /// Take requests and never answer (a stalled or frozen server).
    stall: bool,
    /// Bytes of the partial success's message (with `rejected` 0: an OK answer this long).
    long_message: usize,
}

struct Service(Arc<Tonic>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (peer, custom) = (header(PEER_HEADER), header("x-tenant"));
        self.0
            .requests
            .lock()
            .unwrap()
            .push((request.into_inner(), peer, custom));
        if self.0.stall {
            std::future::pending::<()>().await;
        }
        if let Some(status) = self.0.answer.lock().unwrap().clone() {
            return Err(status);
        }
        if self.0.long_message > 0 {
            return Ok(tonic::Response::new(ExportTraceServiceResponse {
                partial_success: Some(ExportTracePartialSuccess {
                    rejected_spans: 0,
                    error_message: "x".repeat(self.0.long_message),
                }),
            }));
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: (self.0.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: self.0.rejected,
                error_message: "too old".into(),
            }),
        }))
    }
}

async fn tonic_server(state: Arc<Tonic>) -> (String, tokio_util::sync::DropGuard) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let stop = token.clone();
    let service = TraceServiceServer::new(Service(state))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
    tokio::spawn(tailgate_core::receive::grpc::serve_service(
        listener,
        tailgate_core::receive::Limits::plaintext(&tailgate_core::receive::ReceiveConfig::default()),
        async move { stop.cancelled().await },
        service,
    ));
    (addr.to_string(), token.drop_guard())
}

/// Scenario: the same two chunks sent with `compression: snappy`, which tonic's server does
/// not take, to Tailgate's own receiver (what routers forward to and gateways export to).
/// Guarantees: one request holding both arrives (framed snappy, `grpc-encoding: snappy`, as
/// the Collector's gRPC exporter sends it).
#[tokio::test]
async fn snappy_chunks_arrive_as_one_request() {
    let stop = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let a = FakeOtlp::traces(3).spans(4).seed(1).build();
    let b = FakeOtlp::traces(2).spans(5).seed(2).build();
    let chunks = [
        Bytes::from(a.encode_to_vec()),
        Bytes::from(b.encode_to_vec()),
    ];
    let client = GrpcClient::with_compression(
        &format!("http://{addr}"),
        &[],
        Duration::from_secs(5),
        quick_retry(),
        Compression::Snappy,
    )
    .unwrap();
    client.send_chunks(&chunks).await.unwrap();
    assert_eq!(backend.spans(), 3 * 4 + 2 * 5);
    assert_eq!(backend.bodies().concat(), chunks.concat());
    // A compression gRPC does not have is refused when the client is made.
    let err = GrpcClient::with_compression(
        &format!("http://{addr}"),
        &[],
        Duration::from_secs(5),
        quick_retry(),
        Compression::Lz4,
    )
    .unwrap_err();
    assert!(matches!(err, ForwardError::Compression(_)), "{err}");
    // The Collector's `compression_params` and `keepalive`: a level gzip takes is applied
    // (the body arrives whole), one snappy does not take is refused.
    let client = |compression, level| {
        GrpcClient::with_compression(
            &format!("http://{addr}"),
            &[],
            Duration::from_secs(5),
            quick_retry(),
            compression,
        )
        .unwrap()
        .with_keepalive(Keepalive {
            time: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            permit_without_stream: true,
        })
        .with_compression_params(CompressionParams { level })
    };
    client(Compression::Gzip, Some(9))
        .unwrap()
        .send_chunks(&chunks)
        .await
        .unwrap();
    assert_eq!(
        backend.bodies().concat(),
        [chunks.concat(), chunks.concat()].concat()
    );
    let err = client(Compression::Snappy, Some(3)).unwrap_err();
    assert!(matches!(err, ForwardError::Compression(_)), "{err}");
    stop.cancel();
}

/// Scenario: two encoded requests sent as the chunks of one message, plain, gzip and zstd,
/// to the generated tonic server. Guarantees: the server decodes one request holding both
/// (concatenation is a valid encoding of the merged request), and the configured and peer
/// headers arrive.
#[tokio::test]
async fn chunks_arrive_as_one_request_in_every_compression() {
    let state = Arc::new(Tonic::default());
    let (addr, _stop) = tonic_server(state.clone()).await;
    let a = FakeOtlp::traces(3).spans(4).seed(1).build();
    let b = FakeOtlp::traces(2).spans(5).seed(2).build();
    let chunks = [
        Bytes::from(a.encode_to_vec()),
        Bytes::from(b.encode_to_vec()),
    ];
    let mut merged = a.clone();
    merged.resource_spans.extend(b.resource_spans.clone());
    let headers = [("X-Tenant".to_owned(), "blue".to_owned())];
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let client = GrpcClient::with_compression(
            &addr,
            &headers,
            Duration::from_secs(5),
            quick_retry(),
            compression,
        )
        .unwrap();
        let delivered = client.send_chunks(&chunks).await.unwrap();
        assert_eq!(delivered.attempts, 1);
        assert_eq!(delivered.rejected_spans, 0);
    }
    let forwarded = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
    forwarded
        .send_from(chunks[0].clone(), Origin::Forwarded { hops: 1 })
        .await
        .unwrap();

    let seen = state.requests.lock().unwrap();
    assert_eq!(seen.len(), 4);
    for (request, peer, tenant) in &seen[..3] {
        assert_eq!(request, &merged);
        assert_eq!(peer, &None);
        assert_eq!(tenant.as_deref(), Some("blue"));
    }
    assert_eq!(seen[3].0, a);
    assert_eq!(seen[3].1.as_deref(), Some("forwarded; hops=1"));
}

/// Scenario: the server takes the request and answers OK with a message of 8 MiB (over
/// the 1 MiB of an answer the client keeps).
/// Guarantees: delivered at the first attempt, sent once (it was refused as unavailable
/// and sent again and again, its spans arriving each time: a hostile check).
#[tokio::test]
async fn an_ok_answer_too_long_to_read_is_delivered_once() {
    let state = Arc::new(Tonic {
        long_message: 8 << 20,
        ..Tonic::default()
    });
    let (addr, _stop) = tonic_server(state.clone()).await;
    let client = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
    let body = Bytes::from(FakeOtlp::traces(2).spans(2).build().encode_to_vec());
    let delivered = client.send(body).await.unwrap();
    assert_eq!(delivered.attempts, 1);
    assert_eq!(state.requests.lock().unwrap().len(), 1);
}

/// Scenario: the server accepts with `partial_success`, then refuses for good, then is
/// unavailable. Guarantees: rejected spans are reported; INVALID_ARGUMENT is not retried;
/// UNAVAILABLE is retried until the retry bound and then reported as given up.
#[tokio::test]
async fn answers_map_to_delivered_rejected_and_gave_up() {
    let state = Arc::new(Tonic {
        rejected: 3,
        ..Tonic::default()
    });
    let (addr, _stop) = tonic_server(state.clone()).await;
    let client = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
    let body = Bytes::from(FakeOtlp::traces(2).spans(2).build().encode_to_vec());

    let delivered = client.send(body.clone()).await.unwrap();
    assert_eq!(delivered.rejected_spans, 3);
    assert_eq!(delivered.message, "too old");

    *state.answer.lock().unwrap() = Some(tonic::Status::invalid_argument("bad span"));
    let before = state.requests.lock().unwrap().len();
    match client.send(body.clone()).await {
        Err(ForwardError::Rejected { status, .. }) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert_eq!(status.message(), "bad span");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(state.requests.lock().unwrap().len(), before + 1);

    *state.answer.lock().unwrap() = Some(tonic::Status::unavailable("restarting"));
    match client.send(body).await {
        Err(e @ ForwardError::GaveUp { attempts, .. }) => {
            assert!(attempts >= 3, "{attempts} attempts");
            assert!(e.is_retryable());
        }
        other => panic!("expected to give up, got {other:?}"),
    }
}

/// Scenario: a server that takes requests and never answers (frozen), then an empty
/// probe to it.
/// Guarantees: each attempt that timed out is counted as unanswered (the server holds
/// every copy: what is sent again may arrive twice); a probe, carrying no data, is not.
#[tokio::test]
async fn attempts_without_an_answer_are_counted() {
    let state = Arc::new(Tonic {
        stall: true,
        ..Tonic::default()
    });
    let (addr, _stop) = tonic_server(state.clone()).await;
    let client = GrpcClient::new(&addr, &[], Duration::from_millis(150), quick_retry()).unwrap();
    let body = Bytes::from(FakeOtlp::traces(1).spans(2).build().encode_to_vec());
    let Err(ForwardError::GaveUp { attempts, .. }) = client.send(body).await else {
        panic!("a server that never answers is given up on");
    };
    let seen = state.requests.lock().unwrap().len();
    assert!(
        attempts >= 2 && seen >= 2,
        "{attempts} attempts, {seen} seen"
    );
    assert_eq!(client.retry_stats().unanswered.get(), u64::from(attempts));
    assert!(client.send_once(Bytes::new()).await.is_err());
    assert_eq!(client.retry_stats().unanswered.get(), u64::from(attempts));
}

/// Scenario: Tailgate's own receiver refuses with a retry hint (its backend is down), then
/// recovers. Guarantees: the client waits as told and delivers on a later attempt.
#[tokio::test]
async fn retry_hint_is_followed_until_delivered() {
    let token = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), token.clone())
        .await
        .unwrap();
    let _stop = token.drop_guard();
    backend.set_unavailable(true);
    let client = GrpcClient::new(
        &addr.to_string(),
        &[],
        Duration::from_secs(5),
        RetryConfig {
            max_elapsed_time: Duration::from_secs(5),
            ..quick_retry()
        },
    )
    .unwrap();
    let recover = {
        let backend = backend.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            backend.set_unavailable(false);
        })
    };
    let body = Bytes::from(FakeOtlp::traces(4).spans(3).build().encode_to_vec());
    let delivered = client.send(body.clone()).await.unwrap();
    recover.await.unwrap();
    // The hint is 100 ms: about three refusals in 250 ms, not the dozen the 20 ms back-off
    // would give.
    assert!(
        (2..=5).contains(&delivered.attempts),
        "{} attempts",
        delivered.attempts
    );
    assert_eq!(backend.bodies(), vec![body]);
}

/// Scenario: nothing listens, and endpoints that cannot work. Guarantees: a closed port
/// gives up as retryable within the retry bound; other schemes and garbage are refused when the
/// client is built, naming the endpoint.
#[tokio::test]
async fn unreachable_and_invalid_endpoints() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = GrpcClient::new(
        &format!("127.0.0.1:{port}"),
        &[],
        Duration::from_secs(1),
        quick_retry(),
    )
    .unwrap();
    let started = tokio::time::Instant::now();
    let err = client.send(Bytes::new()).await.unwrap_err();
    assert!(matches!(err, ForwardError::GaveUp { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));

    for bad in ["ftp://collector:4317", "http://", "not a url"] {
        let err = GrpcClient::new(bad, &[], Duration::from_secs(1), quick_retry()).unwrap_err();
        assert!(matches!(err, ForwardError::Endpoint { .. }), "{bad}: {err}");
        assert!(err.to_string().contains(bad), "{err}");
    }
}

/// Scenario: a client that gives requests up when their server is unreachable (a router's,
/// a gateway's to its peers) sends a request with data, under a 10 s deadline, to a
/// listener that never accepts: a paused (SIGSTOP) or hung process, whose kernel still
/// completes the connection while nothing reads or answers.
/// Guarantees: the request ends as unreachable (the server answered no HTTP/2 ping
/// within 60% of the deadline: a black-box trial saw a router retry into a frozen gateway
/// for its whole 30 s retry bound, holding every sender), marked so, well before its
/// deadline (about 6 s: a second's silence, then 5 s for the answer), says why, and is
/// counted unanswered (the server may hold the data).
#[tokio::test]
async fn a_server_that_answers_no_ping_is_unreachable() {
    let paused = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let addr = paused.local_addr().unwrap();
    let client = GrpcClient::new(
        &addr.to_string(),
        &[],
        Duration::from_secs(10),
        quick_retry(),
    )
    .unwrap()
    .give_up_when_unreachable();
    let body = Bytes::from(FakeOtlp::traces(1).spans(1).build().encode_to_vec());
    let started = tokio::time::Instant::now();
    let err = client.send(body).await.unwrap_err();
    let took = started.elapsed();
    let ForwardError::Unreachable { status, .. } = &err else {
        panic!("not unreachable: {err}");
    };
    assert!(tailgate_core::forward::is_unanswered_ping(status), "{err}");
    assert!(
        err.to_string().contains("did not answer an HTTP/2 ping"),
        "{err}"
    );
    assert!(took < Duration::from_secs(9), "took {took:?}");
    assert_eq!(client.retry_stats().unanswered.get(), 1);
    drop(paused);
}

/// Scenario: a client sends to an address where nothing listens, then three requests to
/// a backend started there, then (the backend stopped, its connections closed, a new one
/// started at the same address) one more, sent until it arrives.
/// Guarantees: `connections_made` counts connections made, not attempts: 0 after the
/// refused dial, 1 for the three requests on one connection, 2 once the new backend is
/// reached (the signal a router takes for a restart behind the same address).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_made_counts_connections_not_requests() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = GrpcClient::new(
        &addr.to_string(),
        &[],
        Duration::from_secs(1),
        quick_retry(),
    )
    .unwrap()
    .give_up_when_unreachable();
    assert!(client.send(Bytes::new()).await.is_err());
    assert_eq!(client.connections_made(), 0);
    let first = CancellationToken::new();
    CaptureBackend::start(addr, first.clone()).await.unwrap();
    for _ in 0..3 {
        client.send(Bytes::new()).await.unwrap();
    }
    assert_eq!(client.connections_made(), 1);
    first.cancel();
    let stop = CancellationToken::new();
    // The old server's connection closes (GOAWAY) once it stops; the address is free.
    let started = tokio::time::Instant::now();
    let second = loop {
        match CaptureBackend::start(addr, stop.clone()).await {
            Ok((_, backend)) => break backend,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(5), "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let body = Bytes::from(FakeOtlp::traces(1).spans(1).build().encode_to_vec());
    while client.send(body.clone()).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(second.spans(), 1);
    assert_eq!(client.connections_made(), 2);
    stop.cancel();
}

/// Scenario: a client dialling TLS (an endpoint without a scheme and a `tls:` block, as
/// a Collector user's `otlp` exporter writes it) to a server that speaks plaintext.
/// Guarantees: the error says the server answered in plaintext and what to write instead
/// (a black-box check found only rustls's "InvalidContentType").
#[tokio::test]
async fn tls_to_a_plaintext_server_says_so() {
    let stop = CancellationToken::new();
    let (addr, _backend) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let client = GrpcClient::with_tls_config(
        &addr.to_string(),
        &[],
        Duration::from_secs(2),
        quick_retry(),
        Compression::None,
        Some(&tailgate_core::tls::ClientTlsConfig::default()),
    )
    .unwrap();
    let err = client.send_once(Bytes::new()).await.unwrap_err();
    assert!(
        err.message().contains("answered in plaintext")
            && err.message().contains("tls: {insecure: true}"),
        "{err}"
    );
    stop.cancel();
}

/// Scenario: a backend that takes only its bearer token; a client whose key file held an
/// old key when read and was rotated since.
/// Guarantees: the refused request (UNAUTHENTICATED) reads the file again and is sent
/// again with the new key: delivered on the second attempt, not given up. A credential
/// replaces a configured header of its name.
#[tokio::test]
async fn a_refused_key_is_read_again_from_its_file() {
    use tailgate_core::credential::{Credential, Secret, FORCED_REREAD_EVERY};
    let stop = CancellationToken::new();
    let (addr, backend) = CaptureBackend::start_with(
        "127.0.0.1:0".parse().unwrap(),
        false,
        None,
        Some("right"),
        stop.clone(),
    )
    .await
    .unwrap();
    let dir = std::env::temp_dir().join(format!("tailgate-grpc-401-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    // A client of `addr` whose bearer token is `file`'s text, read now.
    let file_client = |addr: std::net::SocketAddr| {
        let credential = Credential::bearer(Secret::File(file.clone())).unwrap();
        GrpcClient::new(
            &format!("http://{addr}"),
            &[],
            Duration::from_secs(2),
            quick_retry(),
        )
        .unwrap()
        .with_auth(Arc::new(credential.into()))
    };
    std::fs::write(&file, "wrong\n").unwrap();
    let client = file_client(addr);
    std::fs::write(&file, "right\n").unwrap();
    tokio::time::pause();
    tokio::time::advance(FORCED_REREAD_EVERY).await;
    tokio::time::resume();
    let body = Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    let delivered = client.send(body.clone()).await.unwrap();
    assert_eq!(delivered.attempts, 2);
    assert!(backend.spans() > 0);

    // The credential's header replaces a configured header of the same name (the backend
    // reads the first `authorization`: were both sent, the stale one would be refused).
    let stale = [("Authorization".to_owned(), "Bearer wrong".to_owned())];
    let replaced = GrpcClient::new(
        &format!("http://{addr}"),
        &stale,
        Duration::from_secs(2),
        quick_retry(),
    )
    .unwrap()
    .with_auth(Arc::new(
        Credential::bearer(Secret::Inline("right".into()))
            .unwrap()
            .into(),
    ));
    assert_eq!(replaced.send(body.clone()).await.unwrap().attempts, 1);

    // PERMISSION_DENIED (a key not allowed to write) is a refusal of the credential too:
    // the file is read again at once and, changed, the request is sent again; refused
    // again within the second, it fails for good (not retried as a transient error).
    let (addr, backend) = CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    backend.forbid(true);
    std::fs::write(&file, "first\n").unwrap();
    let client = file_client(addr);
    std::fs::write(&file, "rotated\n").unwrap();
    let refused = client.send(body).await.unwrap_err();
    assert!(
        matches!(&refused, ForwardError::Rejected { status, .. } if status.code() == tonic::Code::PermissionDenied),
        "{refused}"
    );
    assert_eq!(
        backend.forbidden_refusals(),
        2,
        "sent again once, with the new key"
    );
    std::fs::remove_dir_all(&dir).ok();
    stop.cancel();
}

/// Scenario: an HTTP/2 server that answers 503 without any gRPC status (a proxy in the
/// way). Guarantees: read as UNAVAILABLE (retryable), as the gRPC spec maps it.
#[tokio::test]
async fn plain_http_errors_map_to_grpc_codes() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(tailgate_core::receive::serve_connections(
        listener,
        async move { stop.cancelled().await },
        |_req| async {
            http::Response::builder()
                .status(503)
                .body(http_body_util::Full::new(Bytes::from_static(b"busy")))
                .unwrap()
        },
    ));
    let _stop = token.drop_guard();
    let client = GrpcClient::new(
        &addr.to_string(),
        &[],
        Duration::from_secs(1),
        quick_retry(),
    )
    .unwrap();
    let status = client.send_once(Bytes::new()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("503"), "{status:?}");
}

/// A gRPC service that notes each request's `:authority` before the inner one serves it.
#[derive(Clone)]
struct Noting<S> {
    inner: S,
    seen: Arc<Mutex<Vec<String>>>,
    /// What is noted of each request.
    what: fn(&http::Request<tonic::body::Body>) -> String,
}

impl<S> tower_service::Service<http::Request<tonic::body::Body>> for Noting<S>
where
    S: tower_service::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
    >,
{
    type Response = S::Response;
    type Error = std::convert::Infallible;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.seen.lock().unwrap().push((self.what)(&req));
        self.inner.call(req)
    }
}

/// Starts the generated server on loopback, noting `what` of each request; its address
/// and what it noted.
async fn noting_server(
    what: fn(&http::Request<tonic::body::Body>) -> String,
    stop: &CancellationToken,
) -> (String, Arc<Tonic>, Arc<Mutex<Vec<String>>>) {
    let state = Arc::new(Tonic::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let service = Noting {
        inner: TraceServiceServer::new(Service(state.clone())),
        seen: seen.clone(),
        what,
    };
    let halt = stop.clone();
    tokio::spawn(tailgate_core::receive::grpc::serve_service(
        listener,
        tailgate_core::receive::Limits::plaintext(&tailgate_core::receive::ReceiveConfig::default()),
        async move { halt.cancelled().await },
        service,
    ));
    (addr, state, seen)
}

/// Scenario: configgrpc's `user_agent`, and a headers_setter's rules with a credential,
/// on requests to the generated server.
/// Guarantees: `user-agent` is the configured one in front of Tailgate's own (as grpc-go
/// puts it in front of its own) and Tailgate's alone without it; the rules' headers and
/// the credential's reach the server; a rule's `delete` does not reach the exporter's
/// configured headers (the rules fill a map of their own, as the Collector's per-RPC
/// credentials do) and a rule cannot replace what gRPC sets (`te`); a user agent with a
/// line break is a `UserAgent` error.
#[tokio::test]
async fn the_user_agent_and_the_authenticators_headers_reach_the_server() {
    use tailgate_core::credential::{Credential, Secret};
    use tailgate_core::request_auth::{HeaderAction, HeaderRule, RequestAuth, RuleValue};
    let stop = CancellationToken::new();
    let (addr, state, seen) = noting_server(
        |req| {
            [
                "user-agent",
                "x-scope-orgid",
                "authorization",
                "x-stale",
                "te",
            ]
            .iter()
            .map(|n| {
                req.headers()
                    .get_all(*n)
                    .iter()
                    .map(|v| v.to_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect::<Vec<_>>()
            .join(";")
        },
        &stop,
    )
    .await;
    let body = Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    let client = || {
        GrpcClient::new(
            &addr,
            &[("X-Stale".to_owned(), "old".to_owned())],
            Duration::from_secs(5),
            quick_retry(),
        )
        .unwrap()
    };
    client().send(body.clone()).await.unwrap();
    let rule = |name: &'static str, action, value: &'static str| HeaderRule {
        name: http::HeaderName::from_static(name),
        action,
        value: RuleValue::Fixed(http::HeaderValue::from_static(value)),
    };
    let auth = RequestAuth::new(
        vec![
            rule("x-scope-orgid", HeaderAction::Insert, "team-a"),
            rule("x-stale", HeaderAction::Delete, ""),
            rule("te", HeaderAction::Upsert, "gzip"),
        ],
        Some(Credential::bearer(Secret::Inline("t0k".into())).unwrap()),
    );
    client()
        .with_user_agent("my-gateway/1.0")
        .unwrap()
        .with_auth(Arc::new(auth))
        .send(body)
        .await
        .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            format!("tailgate/{version};;;old;trailers"),
            format!("my-gateway/1.0 tailgate/{version};team-a;Bearer t0k;old;trailers"),
        ]
    );
    assert_eq!(state.requests.lock().unwrap().len(), 2);
    let err = client().with_user_agent("a\nb").unwrap_err();
    assert!(matches!(err, ForwardError::UserAgent), "{err:?}");
    stop.cancel();
}

/// Scenario: configgrpc's `authority`: requests to the generated server with and without
/// an `authority` override, and over TLS to a backend whose certificate carries only the
/// overriding name while the endpoint is its address; then authorities that cannot be one.
/// Guarantees: `:authority` is the override when set and the endpoint's otherwise, the
/// connection going to the endpoint either way; over TLS the certificate is checked against
/// the override (the same client without it is refused for the certificate), whatever the
/// order the client's settings were given in; bad values are `Authority` errors.
#[tokio::test]
async fn authority_overrides_the_requests_host_not_where_they_go() {
    let stop = CancellationToken::new();
    let (addr, state, seen) = noting_server(
        |req| {
            req.uri()
                .authority()
                .map(ToString::to_string)
                .unwrap_or_default()
        },
        &stop,
    )
    .await;
    let body = Bytes::from(FakeOtlp::traces(2).build().encode_to_vec());
    let plain = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
    plain.send(body.clone()).await.unwrap();
    let routed = plain.with_authority("otlp.ingress.example:443").unwrap();
    routed.send(body.clone()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![addr.clone(), "otlp.ingress.example:443".to_owned()]
    );
    assert_eq!(state.requests.lock().unwrap().len(), 2);

    let dir = tailgate_core::test_util::scratch_dir("authority-tls").unwrap();
    let pki = tailgate_core::test_util::TestPki::new(&dir, "ingress").unwrap();
    let server = pki.server("backend", &["otlp.ingress.test"]).unwrap();
    let (tls_addr, backend) = CaptureBackend::start_with_tls(
        "127.0.0.1:0".parse().unwrap(),
        false,
        Some(server),
        stop.clone(),
    )
    .await
    .unwrap();
    let tls = tailgate_core::tls::ClientTlsConfig {
        ca_file: Some(pki.ca_file("ingress")),
        ..Default::default()
    }
    .build()
    .unwrap();
    let endpoint = format!("https://{tls_addr}");
    let client = || {
        GrpcClient::new(&endpoint, &[], Duration::from_secs(5), quick_retry())
            .unwrap()
            .with_tls(&tls)
    };
    let refused = client().send(body.clone()).await.unwrap_err().to_string();
    assert!(refused.contains("certificate"), "{refused}");
    client()
        .with_authority("otlp.ingress.test")
        .unwrap()
        .send(body)
        .await
        .unwrap();
    let spans: usize = FakeOtlp::traces(2)
        .build()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(backend.spans(), spans as u64);

    // A `server_name_override` outranks the authority for the certificate's name.
    let named = tailgate_core::tls::ClientTlsConfig {
        ca_file: Some(pki.ca_file("ingress")),
        server_name_override: Some("otlp.ingress.test".into()),
        ..Default::default()
    }
    .build()
    .unwrap();
    GrpcClient::new(&endpoint, &[], Duration::from_secs(5), quick_retry())
        .unwrap()
        .with_tls(&named)
        .with_authority("elsewhere.example")
        .unwrap()
        .send(Bytes::from(FakeOtlp::traces(2).build().encode_to_vec()))
        .await
        .unwrap();

    // Set twice, and before TLS: the last one counts, connections still go to the
    // endpoint, over TLS.
    GrpcClient::new(&endpoint, &[], Duration::from_secs(5), quick_retry())
        .unwrap()
        .with_authority("first.example")
        .unwrap()
        .with_authority("otlp.ingress.test")
        .unwrap()
        .with_tls(&tls)
        .send(Bytes::from(FakeOtlp::traces(2).build().encode_to_vec()))
        .await
        .unwrap();

    for bad in ["", "user@host:443", "a b", "host:port"] {
        let err = client().with_authority(bad).expect_err(bad);
        assert!(matches!(err, ForwardError::Authority(_)), "{bad}: {err:?}");
    }
    stop.cancel();
}

/// A raw HTTP/2 server that reads each request whole and ends its stream with
/// `RST_STREAM(reason)` instead of an answer; counts the requests it read.
async fn resetting_server(
    reason: h2::Reason,
) -> (
    String,
    Arc<std::sync::atomic::AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = seen.clone();
    let server = tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let counted = counted.clone();
            tokio::spawn(async move {
                let Ok(mut connection) = h2::server::handshake(socket).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let mut body = request.into_body();
                    while let Some(Ok(data)) = body.data().await {
                        body.flow_control().release_capacity(data.len()).unwrap();
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    respond.send_reset(reason);
                }
            });
        }
    });
    (addr, seen, server)
}

/// Scenario: the server reads a whole request and ends the call with RST_STREAM:
/// INTERNAL_ERROR, then REFUSED_STREAM, then CANCEL.
/// Guarantees: read as grpc-go reads them (the Collector's exporters): INTERNAL_ERROR is
/// INTERNAL, final, the request sent once (it was retried as UNAVAILABLE, and a backend
/// that had stored it got it again); REFUSED_STREAM (not processed) and CANCEL are retried.
#[tokio::test]
async fn a_stream_reset_by_the_server_maps_as_grpc_go_maps_it() {
    let body = Bytes::from(FakeOtlp::traces(1).spans(2).build().encode_to_vec());

    let (addr, seen, server) = resetting_server(h2::Reason::INTERNAL_ERROR).await;
    let client = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
    match client.send(body.clone()).await {
        Err(ForwardError::Rejected { status, .. }) => {
            assert_eq!(status.code(), tonic::Code::Internal);
            assert!(status.message().contains("RST_STREAM"), "{status:?}");
        }
        other => panic!("expected INTERNAL, final, got {other:?}"),
    }
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.abort();

    for (reason, code) in [
        (h2::Reason::REFUSED_STREAM, tonic::Code::Unavailable),
        (h2::Reason::CANCEL, tonic::Code::Cancelled),
    ] {
        let (addr, seen, server) = resetting_server(reason).await;
        let client = GrpcClient::new(&addr, &[], Duration::from_secs(5), quick_retry()).unwrap();
        match client.send(body.clone()).await {
            Err(ForwardError::GaveUp {
                attempts, status, ..
            }) => {
                assert!(attempts >= 2, "{reason:?}: {attempts} attempts");
                assert_eq!(status.code(), code, "{reason:?}");
            }
            other => panic!("{reason:?}: expected retries, got {other:?}"),
        }
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst) >= 2,
            "{reason:?}"
        );
        server.abort();
    }
}
