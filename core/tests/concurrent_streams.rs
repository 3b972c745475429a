//! `receive.max_concurrent_streams`: an HTTP/2 connection may have that many requests open
//! at once; a client queues the rest (they are not refused), and a sender that ignores the
//! setting gets its extra streams reset before any request is started for them. Real
//! loopback sockets; the handlers wait on a gate the test opens, not on a clock.

#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tailgate_core::receive::{serve_connections_with, Limits, ReceiveConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Requests being handled now, the most seen at once, and the gate they wait at.
#[derive(Default)]
struct Handlers {
    open: AtomicUsize,
    most: AtomicUsize,
    started: AtomicUsize,
}

/// A server whose streams are limited to `streams` and whose handlers wait for a permit
/// of `gate` before they answer.
async fn server(
    streams: u32,
    handlers: Arc<Handlers>,
    gate: Arc<Semaphore>,
    stop: &CancellationToken,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config: ReceiveConfig =
        serde_yaml_ng::from_str(&format!("{{max_concurrent_streams: {streams}}}")).unwrap();
    let stop = stop.clone();
    tokio::spawn(serve_connections_with(
        listener,
        Limits::plaintext(&config),
        async move { stop.cancelled().await },
        move |_req| {
            let handlers = handlers.clone();
            let gate = gate.clone();
            async move {
                handlers.started.fetch_add(1, Ordering::SeqCst);
                let now = handlers.open.fetch_add(1, Ordering::SeqCst) + 1;
                handlers.most.fetch_max(now, Ordering::SeqCst);
                gate.acquire().await.unwrap().forget();
                handlers.open.fetch_sub(1, Ordering::SeqCst);
                http::Response::new(Full::new(Bytes::from_static(b"ok")))
            }
        },
    ));
    addr
}

/// Scenario: streams limited to 3; one hyper HTTP/2 connection, once it has the server's
/// settings, sends 10 requests at once; the handlers are let go one at a time once 3 are running. Guarantees: never more
/// than 3 handlers at once (and 3 are reached), and all 10 requests are answered: a
/// client that honours the setting queues its extra requests instead of losing them.
#[tokio::test]
async fn a_client_queues_requests_beyond_the_limit() {
    let stop = CancellationToken::new();
    let handlers = Arc::new(Handlers::default());
    let gate = Arc::new(Semaphore::new(0));
    let addr = server(3, handlers.clone(), gate.clone(), &stop).await;

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(async move {
        conn.await.ok();
    });
    // A client learns the limit from the server's SETTINGS; streams it opens before they
    // arrive are reset past the limit (gRPC clients retry those transparently). One
    // request answered first means they have arrived.
    gate.add_permits(1);
    let first = http::Request::get(format!("http://{addr}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.clone().send_request(first).await.unwrap();
    handlers.most.store(0, Ordering::SeqCst);
    handlers.started.store(0, Ordering::SeqCst);
    let requests: Vec<_> = (0..10)
        .map(|_| {
            let mut send = send.clone();
            tokio::spawn(async move {
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = send.send_request(req).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            })
        })
        .collect();

    tokio::time::timeout(Duration::from_secs(10), async {
        while handlers.open.load(Ordering::SeqCst) < 3 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("three handlers start");
    for _ in 0..10 {
        gate.add_permits(1);
        tokio::task::yield_now().await;
    }
    for request in requests {
        let body = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .expect("every request is answered")
            .unwrap();
        assert_eq!(&body[..], b"ok");
    }
    assert_eq!(handlers.most.load(Ordering::SeqCst), 3);
    assert_eq!(handlers.started.load(Ordering::SeqCst), 10);
    stop.cancel();
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

/// Scenario: streams limited to 4; a raw sender ignores the setting and opens 20 streams
/// that send headers and never a body. Guarantees: 4 handlers start, never more, and the
/// other 16 streams are reset (REFUSED_STREAM) by the connection itself.
#[tokio::test]
async fn a_sender_ignoring_the_limit_gets_its_extra_streams_reset() {
    let stop = CancellationToken::new();
    let handlers = Arc::new(Handlers::default());
    let gate = Arc::new(Semaphore::new(0));
    let addr = server(4, handlers.clone(), gate.clone(), &stop).await;

    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS, then the ack of the server's (which comes first on the wire).
    out.extend(frame(4, 0, 0, b""));
    out.extend(frame(4, 1, 0, b""));
    // :method GET, :scheme http, :path /, :authority (literal); END_HEADERS, no END_STREAM.
    let block = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
    for k in 0..20u32 {
        out.extend(frame(1, 0x4, 1 + 2 * k, &block));
    }
    // A PING after them: the server answers frames in order, so every reset it sends for
    // the streams comes before the PING's ack.
    out.extend(frame(6, 0, 0, b"tailgate"));
    tcp.write_all(&out).await.unwrap();

    let mut refused = 0;
    let mut acked = false;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 4096];
        while !acked {
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let (kind, payload) = (buf[3], &buf[9..9 + len]);
                // RST_STREAM with REFUSED_STREAM (7).
                if kind == 3 && payload == [0, 0, 0, 7] {
                    refused += 1;
                }
                // PING with ACK.
                if kind == 6 && buf[4] & 1 == 1 {
                    acked = true;
                }
                buf.drain(..9 + len);
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no PING ack; {refused} streams refused");
    assert_eq!(refused, 16);
    tokio::time::timeout(Duration::from_secs(10), async {
        while handlers.started.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("four handlers start");
    assert_eq!(handlers.started.load(Ordering::SeqCst), 4);
    assert_eq!(handlers.most.load(Ordering::SeqCst), 4);
    stop.cancel();
}

/// Scenario: `max_concurrent_streams` left out, and 0. Guarantees: 32 by default; 0 (the
/// Collector's "no limit") is a config error naming the key.
#[test]
fn the_default_is_32_and_zero_is_refused() {
    let config: ReceiveConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(config.max_concurrent_streams, 32);
    let zero: ReceiveConfig = serde_yaml_ng::from_str("{max_concurrent_streams: 0}").unwrap();
    let (key, _) = zero.validate().unwrap_err();
    assert_eq!(key, "max_concurrent_streams");
}

/// Scenario: receivers requiring a bearer token; a request with it and one without, to a
/// handler that says whether the request came with a charge attached.
/// Guarantees: the request with the token is charged as its connection hands it over; the
/// one without is not (it is answered unauthenticated without reaching the in-flight
/// budget, so a sender without the token cannot spend room or other senders' shares).
#[tokio::test]
async fn a_sender_without_the_token_is_not_charged_at_hand_over() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config: ReceiveConfig = serde_yaml_ng::from_str("{auth: {bearer_token: s3cret}}").unwrap();
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(serve_connections_with(
        listener,
        Limits::plaintext(&config),
        async move { stopping.cancelled().await },
        move |req: http::Request<hyper::body::Incoming>| {
            let charged = req
                .extensions()
                .get::<tailgate_core::receive::limits::Admission>()
                .is_some();
            async move {
                let mut answer = http::Response::new(Full::new(Bytes::new()));
                if !charged {
                    *answer.status_mut() = http::StatusCode::NO_CONTENT;
                }
                answer
            }
        },
    ));
    let status = |auth: &'static str| async move {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(
            format!("POST /v1/traces HTTP/1.1\r\nhost: x\r\n{auth}content-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).await.unwrap();
        String::from_utf8_lossy(&head[9..12]).into_owned()
    };
    assert_eq!(status("authorization: Bearer s3cret\r\n").await, "200");
    assert_eq!(status("").await, "204");
    assert_eq!(status("authorization: Bearer wrong\r\n").await, "204");
    stop.cancel();
}
