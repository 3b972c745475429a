//! `relay`: the reference floor for the router's benchmark. A bare OTLP/gRPC relay on the
//! `h2` crate: it reads each request, scans and splits it by trace id with the router's own
//! [`Scan`] and [`Splitter`] over the same xxh3 ring, forwards each part to its sink over one
//! HTTP/2 connection per sink, and answers once every part is answered.
//!
//! It is tuned as a floor should be: the router's own HTTP/2 windows and frame size, one
//! scan and splitter reused per worker thread, a request's body read into one buffer sized
//! from its gRPC length prefix.
//!
//! It has none of the router's layers (hyper and tonic's services, flow-control gates,
//! per-gateway queues, retries, health, metrics): what the router costs beyond this floor
//! is what those layers cost. Senders are slowed only by HTTP/2 flow control: a request's
//! body is read as its frames arrive, and the relay holds at most the requests in flight.
//! Not for production: it has no retry, no TLS and no bound but the streams' windows.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use tailgate_core::ring::{Member, Ring};
use tailgate_core::serve::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};
use tailgate_core::wire::split::Splitter;
use tailgate_core::wire::{Scan, TRACE_EXPORT_PATH};
use tokio::net::{TcpListener, TcpStream};

/// Runs the relay on `listen`, forwarding to `sinks` (gRPC OTLP receivers), until killed.
pub async fn run_relay(listen: SocketAddr, sinks: &[SocketAddr]) -> anyhow::Result<()> {
    let mut clients = Vec::new();
    for addr in sinks {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to sink {addr}"))?;
        tcp.set_nodelay(true)?;
        let (client, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_frame_size(MAX_FRAME_SIZE)
            .handshake(tcp)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "relay: sink connection ended");
            }
        });
        clients.push((client, format!("http://{addr}{TRACE_EXPORT_PATH}")));
    }
    let ring = std::sync::Arc::new(Ring::new(sinks.iter().map(|a| Member::new(a.to_string()))));
    let clients = std::sync::Arc::new(clients);
    let listener = TcpListener::bind(listen).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let (ring, clients) = (ring.clone(), clients.clone());
        tokio::spawn(async move {
            let Ok(mut conn) = h2::server::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_frame_size(MAX_FRAME_SIZE)
                .handshake::<_, Bytes>(tcp)
                .await
            else {
                return;
            };
            while let Some(Ok((req, respond))) = conn.accept().await {
                let (ring, clients) = (ring.clone(), clients.clone());
                tokio::spawn(async move {
                    let status = relay_one(req, &ring, &clients).await;
                    let _answered = answer(respond, status);
                });
            }
        });
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<(Scan, Splitter)> =
        std::cell::RefCell::new((Scan::default(), Splitter::default()));
}

/// Reads, splits and forwards one request; the gRPC status to answer with.
async fn relay_one(
    req: Request<h2::RecvStream>,
    ring: &Ring,
    clients: &[(h2::client::SendRequest<Bytes>, String)],
) -> u32 {
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return 13 };
        let _released = body.flow_control().release_capacity(chunk.len());
        if buf.is_empty() && chunk.len() >= 5 {
            // Sized once from the gRPC prefix (bounded: this is a benchmark's floor).
            let len = u32::from_be_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]) as usize;
            buf.reserve(5 + len.min(64 << 20));
        }
        buf.extend_from_slice(&chunk);
    }
    // One uncompressed gRPC message: 1 flag byte, 4 length bytes, the message.
    if buf.len() < 5 || buf[0] != 0 {
        return 3;
    }
    let message = buf.split_off(5).freeze();
    let parts = SCRATCH.with_borrow_mut(|(scan, splitter)| {
        scan.scan(&message).ok()?;
        Some(splitter.split(ring, &message, scan, Some(&message)))
    });
    let Some(parts) = parts else { return 3 };
    let sends = parts.into_iter().map(|(owner, _, part)| {
        let (client, uri) = &clients[owner];
        forward(client.clone(), uri, part)
    });
    let results = futures_util::future::join_all(sends).await;
    if results.iter().all(|ok| *ok) {
        0
    } else {
        14
    }
}

/// Sends one part as a gRPC request; true when the sink answered OK.
async fn forward(client: h2::client::SendRequest<Bytes>, uri: &str, part: Bytes) -> bool {
    let Ok(mut client) = client.ready().await else {
        return false;
    };
    let Ok(req) = Request::post(uri)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
    else {
        return false;
    };
    let Ok((response, mut send)) = client.send_request(req, false) else {
        return false;
    };
    // The gRPC prefix and the part as two DATA frames: the part is not copied.
    let mut prefix = [0u8; 5];
    prefix[1..].copy_from_slice(&(part.len() as u32).to_be_bytes());
    if send
        .send_data(Bytes::copy_from_slice(&prefix), false)
        .and_then(|()| send.send_data(part, true))
        .is_err()
    {
        return false;
    }
    let Ok(response) = response.await else {
        return false;
    };
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { return false };
        let _released = body.flow_control().release_capacity(chunk.len());
    }
    matches!(body.trailers().await, Ok(Some(t))
        if t.get("grpc-status").is_some_and(|s| s.as_bytes() == b"0"))
}

/// Answers a request with an empty gRPC response and `status`.
fn answer(mut respond: h2::server::SendResponse<Bytes>, status: u32) -> Result<(), h2::Error> {
    let head = Response::builder()
        .header("content-type", "application/grpc")
        .body(())
        .unwrap_or_default();
    let mut send = respond.send_response(head, false)?;
    if status == 0 {
        send.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false)?;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    send.send_trailers(trailers)
}
