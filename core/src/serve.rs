//! The accept loop every listener of the project runs (the OTLP receivers and the admin
//! port): HTTP/1.1 or HTTP/2 with prior knowledge on one port, large HTTP/2 windows, and
//! the limits that keep a flood of idle or slow connections from taking a process down:
//!
//! * at most `max_connections` open connections; more wait in the kernel's listen backlog
//!   ([`crate::receive::LISTEN_BACKLOG`]);
//! * with `sender_connections`, past half of them open, a sender (an address, an IPv6 one
//!   by its /64) holding a quarter of them has new connections closed at once, so one
//!   address trickling requests cannot hold every slot; and with every slot taken, a new
//!   connection from a sender holding two fewer than the heaviest, which holds more than
//!   an even share, takes a slot of the heaviest's (asked to close, a second's grace for
//!   its requests), so a few addresses cannot keep another sender out either; any other
//!   new connection to a full listener is then closed at once rather than left in the
//!   backlog;
//! * a connection that sends nothing within `first_byte_timeout` is closed, so idle sockets
//!   cannot hold every slot (4,200 of them once stopped a receiver for good);
//! * HTTP/1 headers must arrive within `header_timeout`; HTTP/2 peers are pinged, and dead
//!   ones dropped;
//! * a failed accept (out of file descriptors, say) backs off, doubling up to a second,
//!   instead of spinning (the admin port once spun at 121% CPU).
//!
//! * with TLS (`receive.tls`), the handshake must finish within `first_byte_timeout` too,
//!   and the connection must then open (as a plaintext one must, below) within as long
//!   again; failed handshakes are counted ([`crate::tls::failed_handshakes_total`]).
//!
//! Stops accepting when `shutdown` completes, then lets open connections finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::tls::{ClientCertificate, TlsServer};

/// HTTP/2 stream flow-control window; the 64 KiB default costs about half again as much CPU
/// per span on large requests (see DESIGN.md, "What the hot path costs").
pub const STREAM_WINDOW: u32 = 2 << 20;
/// Largest HTTP/2 frame a peer may send us (the default is 16 KiB). Senders that honour it
/// (hyper and h2, as Tailgate's own client) then write a request part in a few DATA frames
/// and system calls, instead of one per 16 KiB. Not more: a frame is read whole before
/// anything counts it, so a sender may hold one frame's bytes less one on each connection
/// (1 MiB frames: 1,024 connections holding one each took a router to 1.09 GB against a
/// 496 MiB bound); this is part of [`crate::memory::CONNECTION_BYTES`].
pub const MAX_FRAME_SIZE: u32 = 64 << 10;
/// Connection-level HTTP/2 window.
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// Limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections at most.
    pub max_connections: usize,
    /// Past half of `max_connections` open, close at once a new connection from a sender
    /// that holds a quarter of them.
    pub sender_connections: bool,
    /// Streams an HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Longest a new connection may stay silent before it is closed.
    pub first_byte_timeout: Duration,
    /// Longest an HTTP/1 request's headers may take.
    pub header_timeout: Duration,
    /// After this long (±10%, so reconnections spread out), a connection is asked to close:
    /// GOAWAY on HTTP/2, `connection: close` on HTTP/1. `None`: never.
    pub max_connection_age: Option<Duration>,
    /// How long requests in flight get to finish after that, before the connection is
    /// dropped.
    pub max_connection_age_grace: Duration,
    /// How long requests in flight on a connection asked to close for another sender
    /// (a full listener's, for a sender holding far fewer) get before it is dropped.
    pub eviction_grace: Duration,
}

/// Connections the process's listeners closed before serving them, by why, for
/// `*_closed_connections_total{reason}`: over their sender's share ([`SENDER_SHARE`])
/// or not opening within the first-byte limit, or ended by the peer first
/// ([`NOT_OPENED`]: TCP health checks count here). Process-wide, as the TLS handshakes'
/// count.
static CLOSED: [std::sync::atomic::AtomicU64; 4] = [
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
    std::sync::atomic::AtomicU64::new(0),
];

/// Index in [`closed_connections`] of connections closed at once for their sender's share.
pub const SENDER_SHARE: usize = 0;
/// Index in [`closed_connections`] of connections closed for not opening in time.
pub const NOT_OPENED: usize = 1;
/// Index in [`closed_connections`] of connections asked to close so that another sender,
/// holding far fewer, gets a slot of a full listener.
pub const EVICTED: usize = 2;
/// Index in [`closed_connections`] of new connections closed at once because the listener
/// was full and no sender held more than its share.
pub const FULL: usize = 3;

/// Connections closed before being served (or, [`EVICTED`], asked to close) so far, with
/// their `reason` label values.
pub fn closed_connections() -> [(&'static str, u64); 4] {
    let n = |i: usize| CLOSED[i].load(std::sync::atomic::Ordering::Relaxed);
    [
        ("sender_share", n(SENDER_SHARE)),
        ("not_opened", n(NOT_OPENED)),
        ("evicted", n(EVICTED)),
        ("full", n(FULL)),
    ]
}

fn count_closed(reason: usize) {
    CLOSED[reason].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Longest pause after failed accepts.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves connections on `listener` with `handler` within `limits` until `shutdown`;
/// with `tls`, each connection is a TLS one (its handshake within `first_byte_timeout`).
pub async fn serve<F, Fut, B>(
    listener: TcpListener,
    limits: ConnectionLimits,
    tls: Option<Arc<TlsServer>>,
    shutdown: impl Future<Output = ()> + Send,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(::http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ::http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let builder = Arc::new(http_builder(&limits));
    let connections =
        std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let senders = limits
        .sender_connections
        .then(|| SenderConnections::new(limits.max_connections.max(1)));
    let mut backoff = Duration::ZERO;
    tokio::pin!(shutdown);
    loop {
        // With sender shares, a full listener still accepts: a new connection from a
        // sender holding far fewer slots than the heaviest takes one of its (see
        // [`SenderConnections::evict_for`]), so that a few addresses holding every slot
        // cannot keep every other sender out; others are closed at once.
        let full = senders.is_some() && connections.available_permits() == 0;
        let (permit, accepted) = tokio::select! {
            p = connections.clone().acquire_owned() => match p {
                Ok(p) => (Some(p), None),
                Err(_) => break,
            },
            accepted = listener.accept(), if full => (None, Some(accepted)),
            () = &mut shutdown => break,
        };
        let accepted = match accepted {
            Some(accepted) => accepted,
            None => tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            },
        };
        let (stream, from) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(%error, ?backoff, "Accepting a connection failed; backing off.");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                continue;
            }
        };
        let permit = match permit {
            Some(permit) => permit,
            // Accepted while full: the slot of a heavier sender, or closed at once.
            None => {
                if !senders.as_ref().is_some_and(|s| s.evict_for(from.ip())) {
                    count_closed(FULL);
                    continue;
                }
                let freed = tokio::select! {
                    p = tokio::time::timeout(EVICTION_WAIT, connections.clone().acquire_owned()) => p,
                    () = &mut shutdown => break,
                };
                let Ok(Ok(permit)) = freed else { continue };
                permit
            }
        };
        let sender = SenderAddr(from.ip());
        let open = limits.max_connections.max(1) - connections.available_permits();
        let held = match &senders {
            Some(senders) => match senders.admit(sender.0, open) {
                Some(held) => Some(held),
                // Dropped unread: the sender sees the connection closed.
                None => continue,
            },
            None => None,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "Cannot set TCP_NODELAY.");
        }
        let (handler, builder, tls) = (handler.clone(), builder.clone(), tls.clone());
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            // Asked to close when another sender needs the slot.
            let evict = held.as_ref().map(SenderHeld::evictions);
            let _held = held;
            // A listener that stops does not wait for connections that have not spoken.
            let spoke = tokio::select! {
                spoke = async {
                    if tls.is_some() {
                        // The handshake has its own deadline; what follows is encrypted.
                        speaks_within(&stream, limits.first_byte_timeout).await
                    } else {
                        opens_within(&stream, limits.first_byte_timeout).await
                    }
                } => spoke,
                () = stop.cancelled() => return,
                () = evicted(evict.as_deref()) => return,
            };
            if !spoke {
                count_closed(NOT_OPENED);
                return;
            }
            // Filled in after a mutual TLS handshake: the client's verified certificate,
            // attached to each request so that receivers can tell who sent it.
            let client_cert: Arc<std::sync::OnceLock<ClientCertificate>> = Arc::default();
            let cert_slot = client_cert.clone();
            let service = hyper::service::service_fn(move |mut req: ::http::Request<_>| {
                let handler = handler.clone();
                if let Some(cert) = cert_slot.get() {
                    req.extensions_mut().insert(cert.clone());
                }
                req.extensions_mut().insert(sender);
                // Called here, as the connection hands the request over, not in the task
                // hyper spawns for it: what a handler does before its future (the
                // receivers' charge for an open request) is done before that task waits
                // for a worker.
                let answer = handler(req);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            // Serves one connection until it ends; asks it to close (GOAWAY) when it
            // reaches its age or the listener stops, and drops it when an aged one
            // overstays its grace.
            macro_rules! drive {
                ($conn:expr) => {{
                    let conn = $conn;
                    tokio::pin!(conn);
                    let age = tokio::time::sleep(connection_age(&limits));
                    tokio::pin!(age);
                    let grace = tokio::time::sleep(FOREVER);
                    tokio::pin!(grace);
                    let evicting = evicted(evict.as_deref());
                    tokio::pin!(evicting);
                    let (mut closing, mut aged) = (false, false);
                    loop {
                        tokio::select! {
                            ended = conn.as_mut() => break ended,
                            () = &mut evicting, if !aged => {
                                // Another sender needs the slot: requests in flight get
                                // a short grace, as an aged connection gets its own.
                                if !closing {
                                    conn.as_mut().graceful_shutdown();
                                }
                                grace.as_mut().reset(
                                    tokio::time::Instant::now() + limits.eviction_grace,
                                );
                                (closing, aged) = (true, true);
                            }
                            () = &mut age, if !closing => {
                                conn.as_mut().graceful_shutdown();
                                // A grace of 0 waits however long requests take.
                                if !limits.max_connection_age_grace.is_zero() {
                                    grace.as_mut().reset(
                                        tokio::time::Instant::now()
                                            + limits.max_connection_age_grace,
                                    );
                                }
                                (closing, aged) = (true, true);
                            }
                            () = stop.cancelled(), if !closing => {
                                conn.as_mut().graceful_shutdown();
                                closing = true;
                            }
                            () = &mut grace, if aged => break Ok(()),
                        }
                    }
                }};
            }
            let ended = match tls {
                None => drive!(builder.serve_connection(TokioIo::new(stream), service)),
                Some(tls) => match tokio::select! {
                    s = handshake(&tls, stream, limits.first_byte_timeout) => s,
                    () = stop.cancelled() => None,
                    () = evicted(evict.as_deref()) => None,
                } {
                    Some(mut stream) => {
                        if let Some(cert) = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                        {
                            // Set once per connection, before any request: cannot be taken.
                            client_cert
                                .set(ClientCertificate(Arc::new(cert.clone().into_owned())))
                                .ok();
                        }
                        // What arrives encrypted must open too: past the handshake, a
                        // client sending `P` alone held its connection for ever.
                        let opening = tokio::select! {
                            o = read_opening(&mut stream, limits.first_byte_timeout) => o,
                            // A listener that stops does not wait, nor count it unopened.
                            () = stop.cancelled() => return,
                            () = evicted(evict.as_deref()) => return,
                        };
                        let Some(opening) = opening else {
                            count_closed(NOT_OPENED);
                            return;
                        };
                        let stream = Opened {
                            read: opening,
                            inner: stream,
                        };
                        drive!(builder.serve_connection(TokioIo::new(stream), service))
                    }
                    None => return,
                },
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "Connection ended with an error.");
            }
        });
    }
    // Closed now, not when the open connections have finished: a listening socket left
    // open took new connections into its backlog, where they hung until the process
    // exited (a docs audit: 1.7 s, then a reset). Refused, a sender goes elsewhere at once.
    drop(listener);
    // Open connections finish what they are doing, as with hyper's graceful shutdown.
    stop.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

/// A timer that never fires in practice.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// How long the requests in flight on a receiver's connection asked to close for another
/// sender get before it is dropped ([`ConnectionLimits::eviction_grace`]).
pub const EVICTION_GRACE: Duration = Duration::from_secs(1);

/// How long a connection accepted while the listener is full waits for the slot a
/// heavier sender was asked to give up; then it is closed.
const EVICTION_WAIT: Duration = Duration::from_secs(3);

/// Completes when the connection's sender is asked to give a connection up (never
/// without sender shares).
async fn evicted(evict: Option<&tokio::sync::Notify>) {
    match evict {
        Some(evict) => evict.notified().await,
        None => std::future::pending().await,
    }
}

/// This connection's age limit: `max_connection_age` ±10%, or forever.
fn connection_age(limits: &ConnectionLimits) -> Duration {
    match limits.max_connection_age {
        Some(age) => age.mul_f64(0.9 + 0.2 * fastrand::f64()),
        None => FOREVER,
    }
}

/// The most an HTTP/1.1 connection reads ahead (hyper's default is about 400 KiB): a
/// request's headers must fit in it (431 beyond), and a body streams through it. A
/// connection that sends part of a header line and stalls holds this much until
/// `request_timeout`, uncounted by the in-flight budget: at the default 4,096 connections
/// 64 MiB per receiver, where hyper's default let 3,000 such connections take 1.2 GB (a
/// black-box check). OTLP requests' headers (a token, a tenant) need a few KiB.
const HTTP1_MAX_BUF: usize = 16 << 10;

/// The most an HTTP/2 request's headers may hold (gRPC metadata included), as HTTP/1.1's
/// read-ahead bounds them ([`HTTP1_MAX_BUF`]).
const MAX_HEADER_LIST: u32 = 16 << 10;

/// The address a request's connection comes from, attached to each request: stages that
/// share room among senders tell them apart by it (see
/// [`crate::receive::SpanSink::ready_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderAddr(pub std::net::IpAddr);

impl SenderAddr {
    /// The address `req` came from, when its connection was served here.
    pub fn of<B>(req: &::http::Request<B>) -> Option<std::net::IpAddr> {
        req.extensions().get::<SenderAddr>().map(|a| a.0)
    }
}

/// The key a sender is known by: its address; an IPv4-mapped IPv6 address as the IPv4
/// one, and an IPv6 address by its /64, since a host is given a /64 to take addresses from
/// (one sender must not get a share per address it picks).
pub(crate) fn sender_key(addr: std::net::IpAddr) -> std::net::IpAddr {
    match addr {
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => std::net::IpAddr::V4(v4),
            None => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !(u128::from(u64::MAX)),
            )),
        },
        v4 => v4,
    }
}

/// Connections open per sender on one listener. Past half of the listener's
/// `max_connections` open, a sender holding a quarter of them gets no more: one address
/// trickling requests (each holding its connection until `request_timeout`) could
/// otherwise hold every slot while other senders wait in the backlog (a hostile-input
/// trial). Alone, a sender may still use half the slots; behind a proxy or NAT that gives
/// many senders one address, `receive.sender_shares: false` turns this off, as the
/// in-flight shares. A std mutex: taken once per accepted and per closed connection.
#[derive(Debug)]
struct SenderConnections {
    max: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Sender>>>,
    /// Connections closed since the warning was last given.
    refused: std::sync::Mutex<crate::rewarn::Tally>,
    /// Connections asked to close for another sender since that was last logged.
    evicted: std::sync::Mutex<crate::rewarn::Tally>,
}

/// A sender's connections on one listener.
#[derive(Debug, Default)]
struct Sender {
    /// Open.
    count: usize,
    /// Wakes one of them to close when another sender needs its slot.
    evict: Arc<tokio::sync::Notify>,
}

/// One connection counted to its sender until dropped.
struct SenderHeld {
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Sender>>>,
    key: std::net::IpAddr,
    evict: Arc<tokio::sync::Notify>,
}

impl SenderHeld {
    /// What asks one of its sender's connections to close.
    fn evictions(&self) -> Arc<tokio::sync::Notify> {
        self.evict.clone()
    }
}

impl SenderConnections {
    fn new(max: usize) -> Self {
        SenderConnections {
            max,
            open: Arc::default(),
            refused: Default::default(),
            evicted: Default::default(),
        }
    }

    /// For a new connection from `addr` while every slot is taken: asks one connection of
    /// the sender holding the most to close, when that sender holds more than an even
    /// share of the slots (among the senders holding some, `addr`'s counted) and at least
    /// two more than `addr` does, which holds less than a quarter (more, [`Self::admit`]
    /// would close its connection anyway); then `true`, and the new connection takes the
    /// freed slot. So a few addresses holding every slot cannot keep another sender out for as
    /// long as they hold them (a hostile check: eight addresses held all 1,024, and a
    /// good sender's new connections timed out), while senders holding even shares are
    /// not made to trade connections.
    fn evict_for(&self, addr: std::net::IpAddr) -> bool {
        let key = sender_key(addr);
        let table = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = table.get(&key).map_or(0, |s| s.count);
        if mine >= (self.max / 4).max(1) {
            // Over its own share: it would be closed at once anyway (see `admit`).
            return false;
        }
        let senders = table.len() + usize::from(!table.contains_key(&key));
        let even = self.max / senders.max(1);
        let heaviest = table
            .iter()
            .filter(|(k, _)| **k != key)
            .max_by_key(|(_, s)| s.count);
        let Some((heavy_key, heavy)) = heaviest else {
            return false;
        };
        if heavy.count <= even || heavy.count < mine + 2 {
            return false;
        }
        heavy.evict.notify_one();
        let (heavy_key, held) = (*heavy_key, heavy.count);
        drop(table);
        count_closed(EVICTED);
        if let Some(times) = crate::rewarn::Tally::one_more(&self.evicted) {
            tracing::warn!(
                sender = %heavy_key,
                held,
                newcomer = %key,
                times,
                "Asked a connection to close so that another sender gets a slot: every one of this listener's receive.max_connections was open, and this sender held more than an even share. Logged at most once a minute, times since counted."
            );
        }
        true
    }

    /// Counts a new connection from `addr`, `open` connections being open with it; `None`
    /// when it is to be closed.
    fn admit(&self, addr: std::net::IpAddr, open: usize) -> Option<SenderHeld> {
        let key = sender_key(addr);
        let mut table = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sender = table.entry(key).or_default();
        if open > self.max / 2 && sender.count >= (self.max / 4).max(1) {
            let held = sender.count;
            drop(table);
            count_closed(SENDER_SHARE);
            if let Some(times) = crate::rewarn::Tally::one_more(&self.refused) {
                tracing::warn!(
                    sender = %key,
                    held,
                    open,
                    times,
                    "Closed a new connection at once: its sender holds a quarter of this listener's receive.max_connections while more than half are open, so that one address cannot hold every slot. A sender trickling requests, or many senders behind one address (set receive.sender_shares: false for a proxy or NAT). Logged at most once a minute, times since counted."
                );
            }
            return None;
        }
        sender.count += 1;
        let evict = sender.evict.clone();
        Some(SenderHeld {
            open: self.open.clone(),
            key,
            evict,
        })
    }
}

impl Drop for SenderHeld {
    fn drop(&mut self) {
        let mut table = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = table.get_mut(&self.key) {
            sender.count -= 1;
            if sender.count == 0 {
                table.remove(&self.key);
            }
        }
    }
}

/// HTTP/1.1 and HTTP/2 (large windows and frames, pings) as every listener serves them.
fn http_builder(
    limits: &ConnectionLimits,
) -> hyper_util::server::conn::auto::Builder<TokioExecutor> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(HTTP1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME_SIZE)
        // Each stream's headers are decoded, and a task started for it, before its
        // request can be counted or refused: a sender opening streams that never send a
        // body holds this many per connection (a hostile-input check, 1,000 connections
        // of 256 such streams on the router: 579 MB at 100, 76 MB at 32). Clients queue
        // streams beyond it. Agents and routers use a few each.
        .max_concurrent_streams(limits.max_concurrent_streams)
        // hyper's default, set here because operations.md promises it: a request's
        // headers (gRPC metadata) beyond it get 431 before they are read further.
        .max_header_list_size(MAX_HEADER_LIST)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    builder
}

/// The TLS handshake of an accepted connection, within `limit`; a failure is counted.
async fn handshake(
    tls: &TlsServer,
    stream: TcpStream,
    limit: Duration,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            tls.count_failed_handshake();
            tracing::debug!(%error, "TLS handshake failed.");
            None
        }
        Err(_) => {
            tls.count_failed_handshake();
            tracing::debug!("TLS handshake timed out.");
            None
        }
    }
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How often [`opens_within`] looks again at what has arrived.
const OPENING_POLL: Duration = Duration::from_millis(20);

/// Whether a plaintext peer opens within `limit`: sends an HTTP/1 request line (up to its
/// line feed, or 128 bytes) or the HTTP/2 preface and the header of its first frame. One
/// byte used to be enough, and the HTTP/1-or-2 detection after it has no deadline of its
/// own: a sender of `P` alone, or of part of the preface, held its connection for ever
/// (a black-box trial). Clients send all of this at once; a line's remaining headers are
/// held to `header_timeout` by hyper. Peeks, so the bytes stay for the connection.
async fn opens_within(stream: &TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = [0u8; OPENING_MAX];
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.peek(&mut seen)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if has_opened(&seen[..n]) {
            return true;
        }
        // Part of it is here: a peek returns at once while data waits unread, so look
        // again a little later.
        if tokio::time::Instant::now() + OPENING_POLL >= deadline {
            return false;
        }
        tokio::time::sleep(OPENING_POLL).await;
    }
}

/// The most of a connection's first bytes read to tell whether it has opened.
const OPENING_MAX: usize = 128;

/// Whether `head`, a connection's first bytes, opens it: an HTTP/1 request line (up to its
/// line feed, or [`OPENING_MAX`] bytes) or the HTTP/2 preface and its first frame's header.
fn has_opened(head: &[u8]) -> bool {
    if H2_PREFACE.starts_with(&head[..head.len().min(H2_PREFACE.len())]) {
        head.len() >= H2_PREFACE.len() + 9
    } else {
        head.len() >= OPENING_MAX || head.contains(&b'\n')
    }
}

/// [`opens_within`] for a stream that cannot be peeked (TLS, read decrypted): reads its
/// opening, at most [`OPENING_MAX`] bytes, within `limit`; `None` when it does not open
/// (silent, partial, or closed), else the bytes read, for [`Opened`] to give back.
async fn read_opening<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> Option<Bytes> {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = [0u8; OPENING_MAX];
    let mut n = 0;
    while !has_opened(&seen[..n]) {
        match tokio::time::timeout_at(deadline, stream.read(&mut seen[n..])).await {
            Ok(Ok(read)) if read > 0 => n += read,
            _ => return None,
        }
    }
    Some(Bytes::copy_from_slice(&seen[..n]))
}

/// A stream whose first bytes were read already ([`read_opening`]): it yields them, then
/// the rest. Writes go straight through.
struct Opened<S> {
    read: Bytes,
    inner: S,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Opened<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            let head = self.read.split_to(n);
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Opened<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Whether the peer sends its first byte within `limit` (and has not closed).
async fn speaks_within(stream: &TcpStream, limit: Duration) -> bool {
    let mut first = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.peek(&mut first)).await,
        Ok(Ok(n)) if n > 0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Limits of a test listener: a few connections and streams, 5 s deadlines.
    fn test_limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 8,
            sender_connections: false,
            eviction_grace: EVICTION_GRACE,
            max_concurrent_streams: 8,
            first_byte_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(5),
            max_connection_age: None,
            max_connection_age_grace: Duration::from_secs(5),
        }
    }

    /// Scenario: a client that connects and closes without a byte (as a TCP health check
    /// does), and one that sends a whole HTTP/1 request line.
    /// Guarantees: the first has not opened (so it is counted as `not_opened`, as
    /// operations.md says), at once rather than at the limit; the second has.
    #[tokio::test]
    async fn a_peer_that_closes_first_has_not_opened() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(TcpStream::connect(addr).await.unwrap());
        let (closed, _) = listener.accept().await.unwrap();
        let opened = tokio::time::timeout(
            Duration::from_secs(5),
            opens_within(&closed, Duration::from_secs(60)),
        )
        .await
        .expect("decided when the peer closed, not at the limit");
        assert!(!opened);

        let mut client = TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        let (open, _) = listener.accept().await.unwrap();
        assert!(opens_within(&open, Duration::from_secs(5)).await);
    }

    /// Scenario: an HTTP/2 request to a handler that notes the task it is called in and
    /// the task its future runs in.
    /// Guarantees: the handler is called in the connection's task, as the connection hands
    /// the request over, and its future runs in the request's own task: what a handler
    /// does before its future (the receivers' charge for an open request,
    /// `receive::limits::Admission`) does not wait for that task to get a worker (a flood
    /// that held the CPU kept 32 decoded, uncharged requests a connection that way).
    #[tokio::test]
    async fn a_handler_is_called_as_the_connection_hands_the_request_over() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = test_limits();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            limits,
            None,
            async move {
                stopped.await.ok();
            },
            move |_req| {
                let called = tokio::task::try_id();
                let tx = tx.clone();
                async move {
                    tx.send((called, tokio::task::try_id())).unwrap();
                    ::http::Response::new(http_body_util::Full::new(Bytes::from_static(b"ok")))
                }
            },
        ));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        let driver = tokio::spawn(connection);
        let request = ::http::Request::post(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let (answer, _) = client.send_request(request, true).unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), answer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(answer.status(), ::http::StatusCode::OK);
        let (called, ran) = rx.recv().await.unwrap();
        assert!(called.is_some() && ran.is_some(), "{called:?} {ran:?}");
        assert_ne!(called, ran, "called in the request's own task");
        drop(client);
        driver.abort();
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// Scenario: a listener told to stop while a request on it is still being answered;
    /// then a new connection to its address.
    /// Guarantees: the new connection is refused at once (it waited in the listening
    /// socket's backlog until the process exited), while the open request still gets its
    /// answer.
    #[tokio::test]
    async fn a_stopped_listener_refuses_new_connections_while_open_ones_finish() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = test_limits();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let server = tokio::spawn(serve(
            listener,
            limits,
            None,
            async move {
                stopped.await.ok();
            },
            move |_req| {
                let held = held.clone();
                async move {
                    held.notified().await;
                    ::http::Response::new(http_body_util::Full::new(Bytes::from_static(b"ok")))
                }
            },
        ));
        let mut open = TcpStream::connect(addr).await.unwrap();
        open.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // The request is being served (held) before the listener is stopped.
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match TcpStream::connect(addr).await {
                    Err(e) => break e.kind(),
                    // Accepted by the backlog before the listener closed: try again.
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .expect("new connections are refused while the open request is answered");
        assert!(
            matches!(
                refused,
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            ),
            "{refused:?}"
        );
        release.notify_one();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            answer.ends_with(b"ok"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
        server.await.unwrap().unwrap();
    }
}
