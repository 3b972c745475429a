//! `receive.max_connection_age`: a client's HTTP/2 connection is sent GOAWAY once it is
//! old enough, so clients reconnect (and spread over routers added since); requests in
//! flight finish first. Real loopback sockets on a paused clock: the ages, the handler's
//! delay and the waits are virtual time, so the bounds are exact and nothing sleeps.

#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tailgate_core::receive::{serve_connections_with, Limits, ReceiveConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A server whose handler answers after `delay`, with connections aged `age`.
async fn server(
    age: Option<Duration>,
    delay: Duration,
    stop: &CancellationToken,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = Limits {
        max_connection_age: age,
        max_connection_age_grace: Duration::from_secs(5),
        ..Limits::plaintext(&ReceiveConfig::default())
    };
    let stop = stop.clone();
    tokio::spawn(serve_connections_with(
        listener,
        limits,
        async move { stop.cancelled().await },
        move |_req| async move {
            tokio::time::sleep(delay).await;
            http::Response::new(Full::new(Bytes::from_static(b"ok")))
        },
    ));
    addr
}

/// An HTTP/2 connection; the returned task ends when the server closes it.
async fn connect(
    addr: std::net::SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    (
        send,
        tokio::spawn(async move {
            conn.await.ok();
        }),
    )
}

fn get(addr: std::net::SocketAddr) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("http://{addr}/"))
        .body(Empty::new())
        .unwrap()
}

/// Scenario: connections with a 400 ms age, one idle, one with a request of 600 ms
/// started just before the age; and a server without an age. Guarantees: the idle one is
/// closed between 0.9 and 1.1 of the age (plus scheduling slack), the busy one only after
/// its answer arrived whole; without an age the connection stays open.
#[tokio::test(start_paused = true)]
async fn old_connections_are_sent_goaway_after_their_requests_finish() {
    let stop = CancellationToken::new();
    let age = Duration::from_millis(400);
    let addr = server(Some(age), Duration::from_millis(600), &stop).await;

    let started = Instant::now();
    let (_idle, idle_conn) = connect(addr).await;
    tokio::time::timeout(Duration::from_secs(3), idle_conn)
        .await
        .unwrap()
        .unwrap();
    let lived = started.elapsed();
    assert!(
        lived >= age.mul_f64(0.9) && lived <= age.mul_f64(1.1) + Duration::from_millis(300),
        "closed after {lived:?}"
    );

    let (mut busy, busy_conn) = connect(addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = busy.send_request(get(addr)).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok", "the request in flight finished");
    tokio::time::timeout(Duration::from_secs(3), busy_conn)
        .await
        .unwrap()
        .unwrap();

    let forever = server(None, Duration::ZERO, &stop).await;
    let (mut open, open_conn) = connect(forever).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!open_conn.is_finished(), "no age: the connection stays");
    assert_eq!(open.send_request(get(forever)).await.unwrap().status(), 200);
    stop.cancel();
}
