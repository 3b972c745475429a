//! OTLP receivers: gRPC on 4317 and HTTP on 4318. They accept a request, undo transport
//! framing (gRPC frames, gzip, OTLP/JSON) and hand the encoded `ExportTraceServiceRequest`
//! to the next stage, a [`SpanSink`], as raw bytes. The sink's answer becomes the reply:
//! success with an optional partial-success count, or a refusal mapped to a status in
//! [`status`].
//!
//! Layers, lowest first: [`status`] (refusals and their gRPC/HTTP statuses, retry rules),
//! [`sink`] (the [`SpanSink`] trait, [`Origin`], the response encoding), [`compress`],
//! [`limits`] (config, limits, the in-flight budget, the connection loop), then the two
//! receivers [`grpc`] and [`http`], and this file, which binds and serves them.
//!
//! [`otlp_json`] and [`otlp_json_out`] (OTLP/JSON to and from protobuf) need no network:
//! they alone build without the crate's `net` feature, for the fuzz targets.

#[cfg(feature = "net")]
pub mod auth;
#[cfg(feature = "net")]
pub mod compress;
#[cfg(feature = "net")]
pub mod cors;
#[cfg(feature = "net")]
pub mod grpc;
#[cfg(feature = "net")]
pub mod http;
#[cfg(feature = "net")]
pub mod limits;
pub mod otlp_json;
pub mod otlp_json_out;
#[cfg(feature = "net")]
pub mod primed;
#[cfg(feature = "net")]
pub mod sink;
#[cfg(feature = "net")]
pub mod status;

#[cfg(feature = "net")]
use std::net::SocketAddr;

#[cfg(feature = "net")]
pub use auth::{
    check_peer, check_sender, check_traffic, same_secret, ClientCertificate, PeerAuth, PeerTraffic,
    ReceiveAuth,
};
#[cfg(feature = "net")]
pub use limits::{
    serve_connections, serve_connections_with, InFlight, InFlightBytes, Limits, Protocol,
    ReceiveConfig, MIN_REQUEST_BYTES_LIMIT,
};
#[cfg(feature = "net")]
pub use sink::{
    run_detached, Accepted, Origin, Ready, SpanSink, CUTS_TOO_LARGE_HEADER, DECISIONS_PATH,
    DECISION_RECORD_LEN, PEER_AUTH_HEADER, PEER_HEADER,
};
#[cfg(feature = "net")]
pub use status::{
    Refusal, DEFAULT_RETRY_AFTER, LEAVING_METADATA, MAX_REQUEST_BYTES_METADATA, TOO_LARGE_METADATA,
};

#[cfg(feature = "net")]
use tokio::net::TcpListener;

/// The receivers' bound sockets, so that ports are taken (and port 0 resolved) before the
/// component starts, and a busy port is reported with its address.
#[cfg(feature = "net")]
#[derive(Debug)]
pub struct Listeners {
    /// OTLP/gRPC socket.
    pub grpc: Option<TcpListener>,
    /// OTLP/HTTP socket.
    pub http: Option<TcpListener>,
}

/// A listen address that could not be bound.
#[cfg(feature = "net")]
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {what} on {addr}: {error}")]
pub struct BindError {
    /// Which listener.
    pub what: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// The OS error.
    pub error: std::io::Error,
}

/// The listen backlog asked for. The kernel caps it at `net.core.somaxconn` (4096 by
/// default since Linux 5.4), which is what Go's listeners, the Collector's among them,
/// get. Connections past `receive.max_connections` and bursts faster than the accept
/// loop wait here: std's and Tokio's `bind` ask for 128, past which a burst of
/// reconnecting senders had its SYNs dropped and retried 1 s, then 3 s later.
#[cfg(feature = "net")]
pub const LISTEN_BACKLOG: i32 = 65_535;

/// A listening socket on `addr` with [`LISTEN_BACKLOG`], non-blocking (for Tokio's
/// `from_std`), with `SO_REUSEADDR` on Unix as std's `bind` sets it (a restarted process
/// can listen again while its old connections are in `TIME_WAIT`).
#[cfg(feature = "net")]
pub fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds `addr` ([`listen`]), naming `what` in the error.
#[cfg(feature = "net")]
pub async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, BindError> {
    listen(addr)
        .and_then(TcpListener::from_std)
        .map_err(|error| BindError { what, addr, error })
}

// === impl Listeners ===

#[cfg(feature = "net")]
impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &ReceiveConfig) -> Result<Self, BindError> {
        let grpc = match config.grpc {
            Some(a) => Some(bind("OTLP/gRPC", a).await?),
            None => None,
        };
        let http = match config.http {
            Some(a) => Some(bind("OTLP/HTTP", a).await?),
            None => None,
        };
        Ok(Listeners { grpc, http })
    }

    /// The bound OTLP/gRPC address.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound OTLP/HTTP address.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves both receivers until `shutdown` is cancelled and open requests finish.
    pub async fn serve<S: SpanSink>(
        self,
        sink: std::sync::Arc<S>,
        limits: Limits,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<()> {
        // The ports the receivers really listen on (`:0` in a config picks one), or none:
        // what each names to a sender of the other protocol.
        let port = |l: &Option<TcpListener>| {
            l.as_ref()
                .and_then(|l| l.local_addr().ok())
                .map(|a| a.port())
        };
        let limits = Limits {
            http_port: port(&self.http),
            grpc_port: port(&self.grpc),
            ..limits
        };
        // The receiver `receive.tls_protocols` leaves out serves plaintext.
        let without_tls = |limits: &Limits, p: Protocol| Limits {
            tls: limits.tls.clone().filter(|_| limits.plaintext != Some(p)),
            ..limits.clone()
        };
        let grpc = {
            let (sink, token) = (sink.clone(), shutdown.clone());
            let limits = without_tls(&limits, Protocol::Grpc);
            async move {
                match self.grpc {
                    Some(l) => grpc::serve(l, sink, limits, token.cancelled_owned()).await,
                    None => Ok(()),
                }
            }
        };
        let limits = without_tls(&limits, Protocol::Http);
        let http = async move {
            match self.http {
                Some(l) => http::serve(l, sink, limits, shutdown.cancelled_owned()).await,
                None => Ok(()),
            }
        };
        let (a, b) = tokio::join!(grpc, http);
        a.and(b)
    }
}

/// Runs `serving` (receivers being served until `stop`) to its end, or until `grace` has
/// passed since `stop` was cancelled, whichever comes first. A drain gives open requests
/// this much of its deadline: a slow or stalled upload (up to `receive.request_timeout`)
/// must not use up the time what is buffered or queued needs. Requests cut off are no
/// longer waited for; their connections close when the process exits, and a stage that
/// closes its queues first refuses one that completes later.
#[cfg(feature = "net")]
pub async fn serve_with_grace(
    serving: impl std::future::Future<Output = std::io::Result<()>>,
    stop: &tokio_util::sync::CancellationToken,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let cut_off = async {
        stop.cancelled().await;
        tokio::time::sleep(grace).await;
        tracing::warn!(
            ?grace,
            "Requests still open after receiving stopped are no longer waited for; their senders retry."
        );
    };
    tokio::select! {
        served = serving => served,
        () = cut_off => Ok(()),
    }
}

#[cfg(all(test, feature = "net"))]
mod tests {
    use super::Origin;

    #[test]
    fn peer_header_round_trips_and_unknown_values_are_clients() {
        for o in [
            Origin::Forwarded { hops: 1 },
            Origin::Handoff {
                hops: 2,
                age_ms: 1234,
            },
        ] {
            let v = o.header_value().unwrap();
            assert_eq!(Origin::parse(Some(v.as_bytes())), o, "{v}");
        }
        assert_eq!(Origin::Client.header_value(), None);
        assert_eq!(Origin::parse(None), Origin::Client);
        assert_eq!(Origin::parse(Some(b"gossip")), Origin::Client);
        assert_eq!(Origin::parse(Some(&[0xff, 0xfe])), Origin::Client);
        // Missing or bad parameters take safe defaults: one hop, no age.
        assert_eq!(
            Origin::parse(Some(b"handoff; age_ms=x")),
            Origin::Handoff { hops: 1, age_ms: 0 }
        );
        assert_eq!(Origin::Forwarded { hops: 3 }.hops(), 3);
    }

    /// Scenario: a listener bound by [`super::bind`] that accepts nothing (a receiver at
    /// `max_connections`, or a burst faster than its accept loop) while 256 clients
    /// connect at once.
    /// Guarantees: every handshake completes in the kernel's queue at once (std's backlog
    /// of 128 dropped the SYNs past it, which clients retry after 1 s, then 3 s); where
    /// `net.core.somaxconn` is lower than 256, as many as it allows.
    #[tokio::test]
    async fn a_burst_of_connections_waits_in_the_backlog() {
        let listener = super::bind("test", "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let n = cap.min(256);
        let connects = (0..n).map(|_| {
            tokio::time::timeout(
                std::time::Duration::from_millis(700),
                tokio::net::TcpStream::connect(addr),
            )
        });
        let results = futures_util::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, n, "{connected} of {n} connected within 0.7 s");
        drop(listener);
    }
}
