//! How the receivers listen and what bounds them: [`ReceiveConfig`] (the `receive:` block
//! of the YAML files), [`Limits`], the process-wide [`InFlight`] byte budget, and the
//! connection loop they serve with ([`crate::serve`] under the receivers' limits).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::auth::ReceiveAuth;
use super::status::{Refusal, DEFAULT_RETRY_AFTER};

/// Where and how the receivers listen. Part of the router's and gateway's YAML config.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReceiveConfig {
    /// OTLP/gRPC listen address; `null` disables it. Default `127.0.0.1:4317`: loopback,
    /// as the Collector's `localhost` default; write `:4317` (or `0.0.0.0:4317`) to listen
    /// on every interface, as the Kubernetes manifests do.
    #[serde(default = "default_grpc", with = "crate::config::listen_addr")]
    pub grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address; `null` disables it. Default `127.0.0.1:4318` (loopback).
    #[serde(default = "default_http", with = "crate::config::listen_addr")]
    pub http: Option<SocketAddr>,
    /// Largest accepted request, after decompression, in bytes. Default 16 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Open connections per receiver; past it new connections wait. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests an HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS,
    /// the Collector's gRPC server key); clients queue the rest. Each open stream's headers
    /// are held before its request can be counted or refused, so this times
    /// `max_connections` bounds what connections hold outside `max_in_flight_bytes`.
    /// Default 32: routers send 4 at a time (`forward.max_in_flight`), a Collector's `otlp`
    /// exporter 10, an SDK one. The Collector's 0 (no limit) is not offered.
    #[serde(default = "default_max_concurrent_streams")]
    pub max_concurrent_streams: u32,
    /// Longest a client may take to send a request's headers and body. Default 30s.
    #[serde(default = "default_request_timeout", with = "crate::config::duration")]
    pub request_timeout: Duration,
    /// Bytes of requests being received (still arriving, being decompressed or handed on)
    /// across both receivers; past it new data is refused with a retry hint. At least twice
    /// `max_request_bytes` (a compressed request and its decompressed copy). Default 64 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Share `max_in_flight_bytes` among senders by address (an IPv6 one by its /64): past
    /// half of it, a sender over its share is refused (see [`InFlight`]). Default true;
    /// `false` where senders reach the receivers through a proxy or NAT that gives many of
    /// them one address beside a few that come directly, so that one address is not held
    /// to a share.
    #[serde(default = "default_sender_shares")]
    pub sender_shares: bool,
    /// Require a bearer token from clients: `auth: { bearer_token_file: PATH }` (read at
    /// start) or `auth: { bearer_token: "${env:VAR}" }`. Requests without it get
    /// UNAUTHENTICATED / 401. Peer requests that present the gateways' secret are exempt.
    #[serde(default)]
    pub auth: Option<ReceiveAuth>,
    /// Ask each client connection to close (HTTP/2 GOAWAY) after this long, ±10%, so that
    /// clients reconnect and spread over routers added since (the Collector's
    /// `keepalive.server_parameters.max_connection_age`). Default (and 0): never, as the
    /// Collector; the Kubernetes manifests set 5m on the routers.
    #[serde(default, with = "crate::config::go_duration::option")]
    pub max_connection_age: Option<std::time::Duration>,
    /// Requests in flight on a connection asked to close get this long before it is
    /// dropped; 0 waits for them however long they take (as grpc-go). Default 30s.
    #[serde(default = "default_age_grace", with = "crate::config::go_duration")]
    pub max_connection_age_grace: std::time::Duration,
    /// Serve both receivers over TLS: `tls: { cert_file, key_file }`, plus
    /// `client_ca_file` to require client certificates (mTLS). The Collector's `configtls`
    /// keys; see [`crate::tls::ServerTlsConfig`].
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsConfig>,
    /// The receivers `tls` serves: both (the default), or `[grpc]` or `[http]` alone, the
    /// other then serving plaintext, as a Collector whose `tls` is written under one
    /// protocol. A gateway's peer port is gRPC and follows `grpc`.
    #[serde(default)]
    pub tls_protocols: Option<Vec<Protocol>>,
    /// Let browsers send OTLP/HTTP from these origins: `cors: { allowed_origins,
    /// allowed_headers, max_age }`, the Collector's keys (see [`super::cors`]).
    #[serde(default)]
    pub cors: Option<super::cors::CorsConfig>,
    /// The path OTLP/HTTP traces are posted to (the Collector's `traces_url_path`), for a
    /// receiver behind a proxy that adds a prefix. Default `/v1/traces`; a path without
    /// its leading `/` gets one, as the Collector gives it.
    #[serde(default = "default_traces_url_path")]
    pub traces_url_path: String,
}

/// A receiver, as `receive.tls_protocols` names it.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OTLP/gRPC (`receive.grpc`, and a gateway's peer port).
    Grpc,
    /// OTLP/HTTP (`receive.http`).
    Http,
}

/// The largest `max_request_bytes` accepted: a gRPC message length is 32 bits, and twice
/// the limit (the in-flight floor) must not overflow.
pub const MAX_REQUEST_BYTES_LIMIT: usize = 1 << 30;

/// The smallest `receive.max_request_bytes` a config may set.
pub const MIN_REQUEST_BYTES_LIMIT: usize = 1024;

impl ReceiveConfig {
    /// The OTLP/HTTP traces path, with its leading `/`.
    pub fn traces_path(&self) -> String {
        if self.traces_url_path.starts_with('/') {
            self.traces_url_path.clone()
        } else {
            format!("/{}", self.traces_url_path)
        }
    }

    /// Whether the receiver of `protocol` serves TLS (`tls`, for the receivers
    /// `tls_protocols` names).
    pub fn tls_for(&self, protocol: Protocol) -> bool {
        self.tls.is_some()
            && self
                .tls_protocols
                .as_ref()
                .is_none_or(|listed| listed.contains(&protocol))
    }

    /// The receivers that serve TLS, by name (`["grpc", "http"]`, one, or none), for the
    /// binaries' "listening" line.
    pub fn tls_receivers(&self) -> Vec<&'static str> {
        [
            (Protocol::Grpc, "grpc", self.grpc.is_some()),
            (Protocol::Http, "http", self.http.is_some()),
        ]
        .into_iter()
        .filter(|(p, _, on)| *on && self.tls_for(*p))
        .map(|(_, name, _)| name)
        .collect()
    }

    /// Checks the sizes: `Err((key under receive, message))`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (&self.tls_protocols, &self.tls) {
            (Some(_), None) => {
                return Err((
                    "tls_protocols",
                    "names the receivers `tls` serves, and there is no `tls`: write one, or leave tls_protocols out".into(),
                ))
            }
            (Some(listed), Some(_)) if listed.is_empty() => {
                return Err((
                    "tls_protocols",
                    "is empty: no receiver would serve TLS; leave `tls` out to serve plaintext, or name grpc, http or both".into(),
                ))
            }
            // Naming only receivers that are off leaves `tls` serving none of them.
            (Some(listed), Some(_))
                if !listed.iter().any(|p| match p {
                    Protocol::Grpc => self.grpc.is_some(),
                    Protocol::Http => self.http.is_some(),
                }) =>
            {
                return Err((
                    "tls_protocols",
                    "names only receivers that are off (null): no receiver would serve TLS; name the one that listens, or leave `tls` out to serve plaintext".into(),
                ))
            }
            _ => {}
        }
        if !(MIN_REQUEST_BYTES_LIMIT..=MAX_REQUEST_BYTES_LIMIT).contains(&self.max_request_bytes) {
            return Err((
                "max_request_bytes",
                format!(
                    "{} is out of range: from {MIN_REQUEST_BYTES_LIMIT} to {MAX_REQUEST_BYTES_LIMIT} (1 GiB)",
                    self.max_request_bytes
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if let Some((key, problem)) = self.auth.as_ref().and_then(|a| a.problem()) {
            return Err((key, problem.to_owned()));
        }
        if self.max_concurrent_streams == 0 {
            return Err((
                "max_concurrent_streams",
                "must be at least 1 (the Collector's 0, no limit, is not offered: each open stream's headers are held outside max_in_flight_bytes)".into(),
            ));
        }
        // RFC 3986's path characters only: anything else reaches the server
        // percent-encoded, so a path holding it would never match a request.
        let pchar = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c);
        if self.traces_url_path.trim_start_matches('/').is_empty()
            || !self.traces_url_path.chars().all(pchar)
        {
            return Err((
                "traces_url_path",
                format!(
                    "{:?} is not a URL path as requests carry it: write one such as /v1/traces or /otlp/v1/traces (letters, digits, -._~!$&'()*+,;=:@/ and %-escapes; no query, fragment or spaces)",
                    self.traces_url_path
                ),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err((
                "request_timeout",
                "must be more than 0s: every request would time out".into(),
            ));
        }
        Ok(())
    }

    /// What is odd but not wrong in this block, for the binaries to print at start and with
    /// `--check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.cors.iter().filter_map(|c| c.warning()).collect();
        if self.in_flight_budget() > self.max_in_flight_bytes {
            out.push(format!(
                "receive.max_in_flight_bytes ({}) is below twice max_request_bytes ({}) and 64 KiB: it is raised to {} (a request is held compressed and decompressed at once, and charged for itself and its headers)",
                self.max_in_flight_bytes,
                self.max_request_bytes,
                self.in_flight_budget()
            ));
        }
        out
    }

    /// Adds what the receivers may hold to `bound`: the in-flight budget, and
    /// [`crate::memory::CONNECTION_BYTES`] for each of `max_connections` on each of
    /// `listeners` (the gRPC and HTTP ports given, and any other port served with these
    /// limits, such as a gateway's peer port).
    pub fn memory_terms(&self, bound: &mut crate::memory::MemoryBound, listeners: usize) {
        bound.add(
            "receive.max_in_flight_bytes (requests being received)",
            self.in_flight_budget() as u64,
        );
        let connections = (self.max_connections as u64).saturating_mul(listeners as u64);
        bound.add(
            format!(
                "receive.max_connections × {listeners} port(s) × {} KiB (connections hostile senders hold)",
                crate::memory::CONNECTION_BYTES >> 10
            ),
            connections.saturating_mul(crate::memory::CONNECTION_BYTES),
        );
    }

    /// The in-flight budget used: `max_in_flight_bytes`, and at least twice
    /// `max_request_bytes` and [`MAX_REQUEST_COST`], since a request is held compressed
    /// and decompressed at once, and charged for itself before its body: one request of
    /// the largest size always fits.
    pub fn in_flight_budget(&self) -> usize {
        self.max_in_flight_bytes
            .max(2 * self.max_request_bytes + MAX_REQUEST_COST)
    }
}

/// Longest a new connection may stay silent, and an HTTP/1.1 request's headers may take,
/// when `request_timeout` is longer: a client sends its headers at once, and a sender that
/// trickles them (slowloris) would hold one of `max_connections` for the whole
/// `request_timeout` (30 s by default, past a typical SDK's 10 s export timeout).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A body that arrived in one frame, copied out of the connection's read buffer: a view
/// would keep the whole buffer (frames of other requests, pipelined ones included, and its
/// spare room) alive for as long as the body lives, which for a gateway is
/// `decision_wait`, counted as the body's length only. Measured: requests of one span each
/// held 1.5 to 1.9 times their charge as views, and pipelined HTTP/1.1 requests just over
/// 64 KiB next to large ones 5.2 times (docs/benchmarks.md). Whether a view shares its
/// buffer cannot be told from it (a view alone in its allocation may still sit at the end
/// of one), so every such body is copied: one memcpy per request.
pub fn own(data: bytes::Bytes) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(&data)
}

/// A body arriving in frames, gathered into one allocation as the frames come: the frames
/// themselves are views of read buffers, and keeping them until the body is complete held
/// a buffer and a handle per frame (a 16 MiB body sent a byte per chunk held 600 MiB). A
/// body of one frame is copied once at the end ([`own`]).
///
/// The buffer grows with what arrived (never by what a sender announces: a
/// `Content-Length` is not yet counted in flight), so it holds at most about twice the
/// bytes counted while the body arrives, and its length once finished.
#[derive(Debug, Default)]
pub struct BodyBuf {
    first: Option<bytes::Bytes>,
    rest: Option<bytes::BytesMut>,
}

impl BodyBuf {
    /// Adds the next frame's data.
    pub fn push(&mut self, data: bytes::Bytes) {
        if let Some(rest) = &mut self.rest {
            rest.extend_from_slice(&data);
            return;
        }
        match self.first.take() {
            None => self.first = Some(data),
            Some(first) => {
                let mut rest = bytes::BytesMut::with_capacity(2 * (first.len() + data.len()));
                rest.extend_from_slice(&first);
                rest.extend_from_slice(&data);
                self.rest = Some(rest);
            }
        }
    }

    /// The body, in an allocation of its own holding little more than its length.
    pub fn finish(self) -> bytes::Bytes {
        match (self.first, self.rest) {
            (_, Some(rest)) if rest.capacity() - rest.len() <= rest.len() / 8 => rest.freeze(),
            (_, Some(rest)) => own(rest.freeze()),
            (Some(first), None) => own(first),
            (None, None) => bytes::Bytes::new(),
        }
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;

    /// Guarantees: a body of one frame no longer shares its buffer, whatever its size.
    #[test]
    fn one_frame_bodies_are_copied() {
        let buffer = bytes::Bytes::from(vec![7u8; 1 << 20]);
        for len in [100, 64 << 10, (64 << 10) + 1, 1 << 19] {
            let view = buffer.slice(..len);
            let mut body = BodyBuf::default();
            body.push(view.clone());
            let owned = body.finish();
            assert_eq!(owned, view);
            assert_ne!(owned.as_ptr(), view.as_ptr(), "{len}");
        }
    }

    /// Scenario: `max_in_flight_bytes` below twice `max_request_bytes` (a docs audit found
    /// it raised in silence, where the docs say "at least 2 x"), and one at twice plus the
    /// most one request is charged for itself.
    /// Guarantees: the first draws a warning naming both keys and the value used; the
    /// second none; the budget used is the raised one.
    #[test]
    fn a_small_in_flight_budget_is_raised_with_a_warning() {
        let small = ReceiveConfig {
            max_request_bytes: 1 << 20,
            max_in_flight_bytes: 1024,
            ..ReceiveConfig::default()
        };
        let w = small.warnings();
        assert!(
            w.iter().any(
                |w| w.contains("max_in_flight_bytes (1024)") && w.contains("raised to 2162688")
            ),
            "{w:?}"
        );
        let exact = ReceiveConfig {
            max_in_flight_bytes: (2 << 20) + MAX_REQUEST_COST,
            ..small
        };
        assert!(exact.warnings().is_empty(), "{:?}", exact.warnings());
    }

    /// Scenario: bodies sent a byte at a time.
    /// Guarantees: the same bytes, in order, in one allocation about their size.
    #[test]
    fn many_frames_gather_into_one_tight_buffer() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        for len in [2, 3, 1000, data.len()] {
            let mut body = BodyBuf::default();
            for b in &data[..len] {
                body.push(bytes::Bytes::copy_from_slice(&[*b]));
            }
            let out = body.finish();
            assert_eq!(&out[..], &data[..len]);
            let Ok(out) = out.try_into_mut() else {
                panic!("the body shares its buffer")
            };
            assert!(out.capacity() <= len + len / 8, "{len}: {}", out.capacity());
        }
    }
}

/// Connection-level limits shared by the receivers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request after decompression.
    pub max_request_bytes: usize,
    /// Open connections.
    pub max_connections: usize,
    /// Past half of `max_connections` open, a sender (by address, as the in-flight
    /// shares) holding a quarter of them has its new connections closed at once
    /// (`receive.sender_shares`).
    pub sender_connections: bool,
    /// Streams an HTTP/2 connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Time to receive a request.
    pub request_timeout: Duration,
    /// Connections are asked to close (GOAWAY) after this long.
    pub max_connection_age: Option<Duration>,
    /// Time in-flight requests get after that.
    pub max_connection_age_grace: Duration,
    /// Bytes of requests being received, shared by every receiver given these limits.
    pub in_flight: InFlight,
    /// How peer requests prove they come from a gateway (see [`super::auth::check_peer`]);
    /// the default takes peer requests from anyone.
    pub peer_auth: super::auth::PeerAuth,
    /// TLS for the receivers (`receive.tls`); `None` serves plaintext.
    pub tls: Option<std::sync::Arc<crate::tls::TlsServer>>,
    /// The receiver served plaintext whatever `tls` holds (`receive.tls_protocols` naming
    /// the other alone).
    pub plaintext: Option<Protocol>,
    /// Whether peer requests, client requests or both are taken here.
    pub peer_traffic: super::auth::PeerTraffic,
    /// The bearer token clients must send, if any.
    pub auth: Option<ReceiveAuth>,
    /// Cross-origin requests the OTLP/HTTP receiver answers (`receive.cors`), if any.
    pub cors: Option<std::sync::Arc<super::cors::Cors>>,
    /// The OTLP/HTTP receiver's port as configured (`receive.http`), named to a sender that
    /// sends OTLP/HTTP to the gRPC receiver; `None` when there is none.
    pub http_port: Option<u16>,
    /// The OTLP/gRPC receiver's port as configured (`receive.grpc`), named to a gRPC client
    /// pointed at the HTTP receiver; `None` when there is none.
    pub grpc_port: Option<u16>,
    /// The OTLP/HTTP traces path (`receive.traces_url_path`, with its leading `/`).
    pub traces_path: std::sync::Arc<str>,
}

impl Limits {
    /// The limits of `c`, with its TLS certificate and key read.
    pub fn new(c: &ReceiveConfig) -> Result<Self, crate::tls::TlsError> {
        Ok(Limits {
            tls: c
                .tls
                .as_ref()
                .map(crate::tls::TlsServer::load)
                .transpose()?,
            plaintext: [Protocol::Grpc, Protocol::Http]
                .into_iter()
                .find(|p| c.tls.is_some() && !c.tls_for(*p)),
            ..Self::plaintext(c)
        })
    }

    /// The limits of `c` served without TLS, whatever `c.tls` says (test sinks).
    pub fn plaintext(c: &ReceiveConfig) -> Self {
        Limits {
            max_request_bytes: c.max_request_bytes,
            max_connections: c.max_connections,
            sender_connections: c.sender_shares,
            max_concurrent_streams: c.max_concurrent_streams,
            request_timeout: c.request_timeout,
            // 0 means never, as in the Collector (grpc-go).
            max_connection_age: c.max_connection_age.filter(|d| !d.is_zero()),
            max_connection_age_grace: c.max_connection_age_grace,
            // A share holds at least one largest request as sent uncompressed. Not twice
            // that (a compressed one and its decompressed copy): at the defaults that is
            // half the budget, and two senders' addresses could hold all of it (a
            // black-box check). A compressed one of that size waits for the budget to be
            // under half held, or for fewer senders about.
            in_flight: if c.sender_shares {
                InFlight::shared(
                    c.in_flight_budget(),
                    c.max_request_bytes + MAX_REQUEST_COST,
                    2 * c.max_request_bytes + MAX_REQUEST_COST,
                )
            } else {
                InFlight::new(c.in_flight_budget())
            },
            peer_auth: Default::default(),
            auth: c.auth.clone(),
            cors: c
                .cors
                .as_ref()
                .and_then(super::cors::Cors::new)
                .map(std::sync::Arc::new),
            tls: None,
            plaintext: None,
            peer_traffic: super::auth::PeerTraffic::Mixed,
            http_port: c.http.map(|a| a.port()),
            grpc_port: c.grpc.map(|a| a.port()),
            traces_path: c.traces_path().into(),
        }
    }
}

/// The budget of bytes of requests being received, across every receiver of a process:
/// each request takes its bytes as they arrive (and its decompressed size) and gives them
/// back when it has been handed on, so that many slow or unfinished requests cannot hold
/// more than the budget, however many connections and streams they use.
///
/// Shared among senders (by address): once more than half the budget is held, a sender
/// that holds more than its share (the budget over the senders that hold some or asked
/// for some in the last [`SENDER_RECENT`], and at least one largest request) is
/// refused until it holds less. So one sender (a flood of streams that never send a body,
/// a burst of large requests) cannot keep the room other senders need: while another
/// sender is about, it gets past half the budget only within its share. A sender alone
/// may use all of it but one share, kept for a sender that comes next (a flood that
/// starts first cannot hold everything until its requests time out).
///
/// What a sender already holds is not taken back by the shares alone: a flood from
/// several addresses that came first holds the budget until its requests end. So when a
/// sender within its share is refused for want of room, the senders holding more than
/// an even share (the budget over the senders about, without the floor of one largest
/// request) are asked to give back what they hold past it, and are held to that even
/// share for [`SENDER_RECENT`]: their requests that have sent no body for [`STALLED`]
/// (headers alone), or nothing more of it for [`STALLED_BODY`], are refused until that
/// much is given back ([`InFlightBytes::unless_reclaimed`]), and the room is free for the
/// refused sender's retry. Requests whose bodies are arriving are left alone.
#[derive(Debug, Clone)]
pub struct InFlight {
    budget: std::sync::Arc<tokio::sync::Semaphore>,
    capacity: usize,
    /// How the budget is shared among senders; `None`: it is not.
    shares: Option<Shares>,
}

/// How an [`InFlight`] budget is shared among senders.
#[derive(Debug, Clone)]
struct Shares {
    /// What every sender may hold however many others are about (one largest request).
    least: usize,
    /// The most a sender alone may hold.
    alone: usize,
    senders: Senders,
}

/// How long a sender that asked for room counts among those the budget is shared by.
pub const SENDER_RECENT: Duration = Duration::from_secs(10);

/// How long a request of a sender over its share may have waited for the first frame of
/// its body and still keep its room when another sender is refused for want of it (see
/// [`InFlight`]). Clients send a body right after its headers.
pub const STALLED: Duration = Duration::from_secs(1);

/// As [`STALLED`], for the next frame of a body begun. Longer: a frame (up to
/// `crate::serve::MAX_FRAME_SIZE`, 64 KiB) is handed on once it has all arrived, and the
/// connection's window may be held by its other requests while the next stage holds them
/// back; 5 s covers a 1 MiB frame (the limit before) at 2 Mbit/s.
pub const STALLED_BODY: Duration = Duration::from_secs(5);

/// How often, at most, senders over their share are asked to give room back (each time
/// a scan of the senders about).
const RECLAIM_EVERY: Duration = Duration::from_millis(100);

/// The most senders tracked; beyond, new ones share one entry ([`OVERFLOW`]) until old
/// ones age out (a sender's entry lives while it holds bytes, and [`SENDER_RECENT`] after).
const MAX_SENDERS: usize = 1 << 16;

/// Where senders beyond [`MAX_SENDERS`] are counted, together.
const OVERFLOW: std::net::IpAddr = std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

use crate::serve::sender_key;

/// Each sender's bytes held and when it last asked for room. A std mutex: it is taken
/// for a lookup and an addition per body chunk, never across an `.await` (tokio's
/// guidance for such data), and measured at no cost (docs/benchmarks.md, "Session 39").
type Senders = std::sync::Arc<std::sync::Mutex<SenderTable>>;

#[derive(Debug, Default)]
struct SenderTable {
    by_addr: std::collections::HashMap<std::net::IpAddr, Sender>,
    pruned: Option<tokio::time::Instant>,
    /// When senders over their share were last asked to give room back.
    reclaimed: Option<tokio::time::Instant>,
    /// Calls to give room back since the last log line about them (one a minute).
    reclaims_logged: crate::retry::Tally,
}

#[derive(Debug)]
struct Sender {
    held: usize,
    seen: tokio::time::Instant,
    /// Wakes this sender's requests waiting for body frames, to give room back.
    reclaim: std::sync::Arc<Reclaim>,
    /// When it was last asked to give room back: for [`SENDER_RECENT`] after, it is held
    /// to an even share of the budget (see [`InFlight::within_share`]).
    reclaimed: Option<tokio::time::Instant>,
}

/// A sender's call to give room back: its waiting requests are woken, and those stalled
/// are refused until `owed` bytes are given back.
#[derive(Debug, Default)]
struct Reclaim {
    notify: tokio::sync::Notify,
    owed: std::sync::atomic::AtomicUsize,
}

impl Sender {
    fn new(now: tokio::time::Instant) -> Self {
        Sender {
            held: 0,
            seen: now,
            reclaim: Default::default(),
            reclaimed: None,
        }
    }
}

// === impl SenderTable ===

impl SenderTable {
    /// Drops senders that hold nothing and have not asked for a while, at most once a
    /// second (a scan of the table).
    fn prune(&mut self, now: tokio::time::Instant) {
        if self
            .pruned
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        self.pruned = Some(now);
        self.by_addr
            .retain(|_, s| s.held > 0 || now.duration_since(s.seen) < SENDER_RECENT);
    }

    /// Asks every sender but `asking` that holds more than `share` (an even share of the
    /// budget) to give back what it holds past it, at most once per [`RECLAIM_EVERY`];
    /// the calls to make, once the table is let go.
    fn reclaim_over(
        &mut self,
        share: usize,
        asking: std::net::IpAddr,
        now: tokio::time::Instant,
    ) -> Vec<std::sync::Arc<Reclaim>> {
        if self
            .reclaimed
            .is_some_and(|at| now.duration_since(at) < RECLAIM_EVERY)
        {
            return Vec::new();
        }
        self.reclaimed = Some(now);
        self.by_addr
            .iter_mut()
            .filter(|(key, sender)| **key != asking && sender.held > share)
            .map(|(_, sender)| {
                sender.reclaimed = Some(now);
                let over = sender.held - share;
                sender
                    .reclaim
                    .owed
                    .store(over, std::sync::atomic::Ordering::Relaxed);
                sender.reclaim.clone()
            })
            .collect()
    }
}

/// A request's share of the [`InFlight`] budget, given back when dropped.
#[derive(Debug, Default)]
pub struct InFlightBytes {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The sender's address, when known; its share of the budget is counted.
    sender: Option<std::net::IpAddr>,
    /// What this request added to its sender's share, under which key, and where, to
    /// give back.
    counted: Option<(Senders, std::net::IpAddr, usize)>,
    /// Its sender's call to give room back, once counted.
    reclaim: Option<std::sync::Arc<Reclaim>>,
}

// === impl InFlightBytes ===

impl InFlightBytes {
    /// Nothing held yet, for a request from `sender` (see [`crate::serve::SenderAddr`]);
    /// without one, the request is not counted in any sender's share.
    pub fn from_sender(sender: Option<std::net::IpAddr>) -> Self {
        InFlightBytes {
            permit: None,
            sender,
            counted: None,
            reclaim: None,
        }
    }

    /// Waits for `next`, a frame of the request's body (`begun`: not its first), unless
    /// this request's sender is asked to give room back (it holds more than its share
    /// while another sender was refused for want of room) when `next` has been waited for
    /// [`STALLED`] ([`STALLED_BODY`] once begun) and the sender still owes some: then the
    /// request is refused, so that its room goes to the other sender.
    pub async fn unless_reclaimed<F: Future>(
        &self,
        next: F,
        begun: bool,
    ) -> Result<F::Output, Refusal> {
        let (Some(reclaim), Some((_, key, mine))) = (&self.reclaim, &self.counted) else {
            return Ok(next.await);
        };
        let mut next = std::pin::pin!(next);
        let since = tokio::time::Instant::now();
        let stalled = if begun { STALLED_BODY } else { STALLED };
        loop {
            tokio::select! {
                biased;
                out = &mut next => return Ok(out),
                () = reclaim.notify.notified() => {
                    let waited = since.elapsed();
                    let owed = std::sync::atomic::Ordering::Relaxed;
                    if waited >= stalled
                        && reclaim
                            .owed
                            .fetch_update(owed, owed, |o| (o > 0).then(|| o.saturating_sub(*mine)))
                            .is_ok()
                    {
                        let more = if begun { "more of its body" } else { "of its body" };
                        return Err(Refusal::OverShare {
                            message: format!(
                                "this sender ({key}) holds more than its share of the receivers' room for requests still arriving while another sender needs some, and this request, holding {mine} bytes of it, sent nothing {more} for {waited:.1?}; retry later"
                            ),
                            retry_after: DEFAULT_RETRY_AFTER,
                        });
                    }
                }
            }
        }
    }
}

impl Drop for InFlightBytes {
    fn drop(&mut self) {
        if let Some((senders, key, n)) = self.counted.take() {
            let mut table = senders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(s) = table.by_addr.get_mut(&key) {
                s.held = s.held.saturating_sub(n);
            }
        }
    }
}

// === impl InFlight ===

impl InFlight {
    /// A budget of `capacity` bytes, not shared among senders.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.min(tokio::sync::Semaphore::MAX_PERMITS);
        InFlight {
            budget: std::sync::Arc::new(tokio::sync::Semaphore::new(capacity)),
            capacity,
            shares: None,
        }
    }

    /// A budget of `capacity` bytes shared among senders: every sender may hold
    /// `least_share` (one largest request as sent) however many others are about, and a
    /// sender alone all but that, or at least `largest` (the most one request may take,
    /// compressed and decompressed).
    pub fn shared(capacity: usize, least_share: usize, largest: usize) -> Self {
        let budget = Self::new(capacity);
        InFlight {
            shares: Some(Shares {
                least: least_share,
                alone: budget.capacity.saturating_sub(least_share).max(largest),
                senders: Default::default(),
            }),
            ..budget
        }
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.capacity - self.budget.available_permits()
    }

    /// The budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Takes what an open request costs before its body from `held`: see
    /// [`request_cost`]. From the moment its headers are in until it is answered, so that
    /// requests that send headers and then nothing (`max_concurrent_streams` a connection) are
    /// bounded by the budget rather than by connections times streams.
    pub fn take_request(
        &self,
        held: &mut InFlightBytes,
        headers: &http::HeaderMap,
    ) -> Result<(), Refusal> {
        self.take(held, request_cost(headers))
    }

    /// Adds `n` bytes to `held`, or refuses (overloaded, with a retry hint) when the
    /// budget has not that much room left, or more than half of it is held and `held`'s
    /// sender would hold more than its share.
    pub fn take(&self, held: &mut InFlightBytes, n: usize) -> Result<(), Refusal> {
        if n == 0 {
            return Ok(());
        }
        let (Some(addr), Some(shares)) = (held.sender, &self.shares) else {
            return self.take_permit(held, n);
        };
        let now = tokio::time::Instant::now();
        let mut table = shares
            .senders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        table.prune(now);
        // A request keeps the key of its first take: its bytes go back where they went.
        let key = match &held.counted {
            Some((_, key, _)) => *key,
            None => {
                let key = sender_key(addr);
                if table.by_addr.len() < MAX_SENDERS || table.by_addr.contains_key(&key) {
                    key
                } else {
                    OVERFLOW
                }
            }
        };
        let sender = table.by_addr.entry(key).or_insert_with(|| Sender::new(now));
        sender.seen = now;
        let mine = sender.held;
        let restrained = sender
            .reclaimed
            .is_some_and(|at| now.duration_since(at) < SENDER_RECENT);
        let senders = table.by_addr.len();
        self.within_share(shares, addr, mine, n, senders, restrained)?;
        if let Err(refusal) = self.take_permit(held, n) {
            // Refused within its share: whoever holds more than an even share gives
            // stalled requests back (see `InFlight`), for this sender's retry. Even, not
            // at least one largest request: floods from as many addresses as the budget
            // holds largest requests would otherwise each be within theirs.
            if senders > 1 {
                Self::reclaim_for(table, self.capacity / senders, addr, key, now);
            }
            return Err(refusal);
        }
        if let Some(sender) = table.by_addr.get_mut(&key) {
            sender.held += n;
            let before = held.counted.take().map_or(0, |(.., n)| n);
            held.counted = Some((shares.senders.clone(), key, before + n));
            if held.reclaim.is_none() {
                held.reclaim = Some(sender.reclaim.clone());
            }
        }
        Ok(())
    }

    /// For `asking` (under `key`), refused for want of room: asks the senders holding
    /// more than `share` to give back what they hold past it (see [`InFlight`]), says so
    /// at most once a minute, and wakes their waiting requests once `table` is let go.
    fn reclaim_for(
        mut table: std::sync::MutexGuard<'_, SenderTable>,
        share: usize,
        asking: std::net::IpAddr,
        key: std::net::IpAddr,
        now: tokio::time::Instant,
    ) {
        let calls = table.reclaim_over(share, key, now);
        if calls.is_empty() {
            return;
        }
        let logged = table.reclaims_logged.add(1);
        drop(table);
        if let Some(times) = logged {
            let owed: usize = calls
                .iter()
                .map(|c| c.owed.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            tracing::warn!(
                asking = %asking,
                senders_over = calls.len(),
                owed_bytes = owed,
                times,
                "A sender was refused for want of room while others hold more than an even share of the receivers' in-flight budget: they give back requests that send nothing (refused as sender_share). A flood of stalled requests, or senders behind one address (receive.sender_shares). Logged at most once a minute, times since counted."
            );
        }
        for reclaim in calls {
            reclaim.notify.notify_waiters();
        }
    }

    /// Refuses `n` more bytes for a sender holding `mine`, among `senders` about: alone,
    /// past all but the room kept for a newcomer; with others, when more than half the
    /// budget would be held and it would be past its share. A sender `restrained` (asked
    /// to give room back lately) is held to an even share of the budget whatever is held:
    /// the room it gave back is for the sender that asked.
    fn within_share(
        &self,
        shares: &Shares,
        addr: std::net::IpAddr,
        mine: usize,
        n: usize,
        senders: usize,
        restrained: bool,
    ) -> Result<(), Refusal> {
        if senders <= 1 {
            if mine + n <= shares.alone {
                return Ok(());
            }
            return Err(Refusal::OverShare {
                message: format!(
                    "this sender ({addr}) holds {mine} bytes of requests still arriving, all of the receivers' {} but the room kept for other senders; retry later",
                    self.capacity
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        let share = if restrained {
            self.capacity / senders
        } else if self.held() + n <= self.capacity / 2 {
            return Ok(());
        } else {
            (self.capacity / senders).max(shares.least)
        };
        if mine + n <= share {
            return Ok(());
        }
        Err(Refusal::OverShare {
            message: format!(
                "this sender ({addr}) holds {mine} bytes of requests still arriving, its share of the receivers' {} with {senders} senders about; retry later",
                self.capacity
            ),
            retry_after: DEFAULT_RETRY_AFTER,
        })
    }

    /// Adds `n` bytes of the budget to `held`, or refuses when it has not that much left.
    fn take_permit(&self, held: &mut InFlightBytes, n: usize) -> Result<(), Refusal> {
        let more = u32::try_from(n)
            .ok()
            .and_then(|n| self.budget.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| Refusal::Overloaded {
                message: format!(
                    "receivers hold {} bytes of requests still arriving, the limit of {}; retry later",
                    self.held(),
                    self.capacity
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            })?;
        match &mut held.permit {
            Some(p) => p.merge(more),
            None => held.permit = Some(more),
        }
        Ok(())
    }
}

/// What the server holds for an open request besides its body, beyond its headers: the
/// HTTP/2 stream, the request and the task handling it (measured: 250 connections of 256
/// header-only streams with 15.5 KB of headers each took about 44 KB a stream).
pub const REQUEST_OVERHEAD: usize = 12 << 10;

/// The most [`request_cost`] charges one request: headers are at most 16 KiB as HTTP/2
/// counts them (`max_header_list_size`), or HTTP/1.1's 16 KiB read-ahead with at most 100
/// headers, each counted with 32 bytes more.
pub const MAX_REQUEST_COST: usize = 64 << 10;

/// What an open request is charged before its body: [`REQUEST_OVERHEAD`] and twice its
/// headers as decoded (the decoder's copy and the request's), each header counted with
/// HPACK's 32 bytes of entry overhead.
pub fn request_cost(headers: &http::HeaderMap) -> usize {
    let headers: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    REQUEST_OVERHEAD + 2 * headers
}

fn default_max_in_flight_bytes() -> usize {
    64 << 20
}

fn default_max_connections() -> usize {
    4096
}

fn default_max_concurrent_streams() -> u32 {
    32
}

fn default_sender_shares() -> bool {
    true
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_grpc() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 4317)))
}

fn default_http() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 4318)))
}

/// The OTLP/HTTP traces path by default.
pub const TRACES_PATH: &str = "/v1/traces";

fn default_traces_url_path() -> String {
    TRACES_PATH.to_owned()
}

fn default_max_request_bytes() -> usize {
    16 << 20
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        ReceiveConfig {
            grpc: default_grpc(),
            http: default_http(),
            max_request_bytes: default_max_request_bytes(),
            max_connections: default_max_connections(),
            max_concurrent_streams: default_max_concurrent_streams(),
            request_timeout: default_request_timeout(),
            max_in_flight_bytes: default_max_in_flight_bytes(),
            sender_shares: default_sender_shares(),
            auth: None,
            max_connection_age: None,
            max_connection_age_grace: default_age_grace(),
            tls: None,
            tls_protocols: None,
            cors: None,
            traces_url_path: default_traces_url_path(),
        }
    }
}

fn default_age_grace() -> Duration {
    Duration::from_secs(30)
}

/// Accepts connections on `listener` and serves each with `handler` over HTTP/1.1 or
/// HTTP/2 (prior knowledge, as gRPC uses), with large HTTP/2 windows. Stops accepting when
/// `shutdown` completes, then waits for open connections to finish. Default limits.
pub async fn serve_connections<F, Fut, B>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(::http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ::http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limits = Limits::plaintext(&ReceiveConfig::default());
    serve_connections_with(listener, limits, shutdown, handler).await
}

/// An open request's charge ([`InFlight::take_request`]), taken when its connection hands
/// it over, before its task is spawned: [`serve_connections_with`] attaches it to the
/// request, and the receivers take it with [`Admission::take`].
///
/// Taken in the handler's task instead, the charge came only once that task ran: under a
/// flood that holds the CPU, every connection's `max_concurrent_streams` streams waited
/// decoded and uncharged (a hostile check, 2,048 connections from eight addresses sending
/// 15 KB headers: 1.2 MB a connection, 2.5 GB against a 496 MiB bound). Charged here, the
/// budget refuses them at once, and the receivers answer a refused request there and then
/// where nothing else would be said first (its route, its sender's credentials).
#[derive(Debug, Clone)]
pub struct Admission(std::sync::Arc<std::sync::Mutex<Option<Result<InFlightBytes, Refusal>>>>);

// === impl Admission ===

impl Admission {
    /// Charges `req`'s open request against `in_flight` and attaches the outcome.
    ///
    /// Either way its headers and URI are copied out of the connection's read buffer: the
    /// HPACK decoder gives a name or value sent without Huffman coding (and the path) as a
    /// view of the frame it came in, which keeps that buffer's whole allocation (several
    /// frames, up to the largest one read) alive for as long as the request lives, beyond
    /// what the charge counts (a hostile check: 0.8 MB a connection still, with the charge
    /// taken at hand-over). One copy of a few hundred bytes per request.
    fn attach<B>(in_flight: &InFlight, req: &mut http::Request<B>) {
        let mut held = InFlightBytes::from_sender(crate::serve::SenderAddr::of(req));
        let outcome = in_flight
            .take_request(&mut held, req.headers())
            .map(|()| held);
        let mut owned = http::HeaderMap::with_capacity(req.headers().len());
        for (name, value) in req.headers() {
            if let (Ok(name), Ok(value)) = (
                http::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                http::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                owned.append(name, value);
            }
        }
        *req.headers_mut() = owned;
        *req.uri_mut() = owned_uri(req.uri());
        req.extensions_mut()
            .insert(Admission(std::sync::Arc::new(std::sync::Mutex::new(Some(
                outcome,
            )))));
    }

    /// Whether `req` was refused when it was handed over (left in place).
    pub fn is_refused<B>(req: &http::Request<B>) -> bool {
        req.extensions().get::<Admission>().is_some_and(|a| {
            matches!(
                *a.0.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(Err(_))
            )
        })
    }

    /// The refusal `req` met when it was handed over, if it did (taken out: a later
    /// [`Self::take`] charges it anew). A receiver answers it there and then, without the
    /// future of the request's handling (a few KB, held by every stream waiting for a
    /// worker under a flood).
    pub fn refused<B>(req: &mut http::Request<B>) -> Option<Refusal> {
        let admission = req.extensions().get::<Admission>()?;
        let mut outcome = admission
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome.take() {
            Some(Err(refusal)) => Some(refusal),
            other => {
                *outcome = other;
                None
            }
        }
    }

    /// `req`'s charge: the one taken when it was handed over, or, for a request that did
    /// not come through [`serve_connections_with`] (a service called directly), one taken
    /// now.
    pub fn take<B>(
        in_flight: &InFlight,
        req: &mut http::Request<B>,
    ) -> Result<InFlightBytes, Refusal> {
        let attached = req.extensions_mut().remove::<Admission>().and_then(|a| {
            a.0.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        });
        match attached {
            Some(outcome) => outcome,
            None => {
                let mut held = InFlightBytes::from_sender(crate::serve::SenderAddr::of(req));
                in_flight.take_request(&mut held, req.headers())?;
                Ok(held)
            }
        }
    }
}

/// `uri` in memory of its own, part by part (through its text, a path without its
/// leading `/`, which h2 lets through, would join the authority).
fn owned_uri(uri: &http::Uri) -> http::Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = uri.scheme().and_then(|s| s.as_str().parse().ok());
    parts.authority = uri.authority().and_then(|a| {
        http::uri::Authority::from_maybe_shared(bytes::Bytes::copy_from_slice(
            a.as_str().as_bytes(),
        ))
        .ok()
    });
    parts.path_and_query = uri.path_and_query().and_then(|p| {
        http::uri::PathAndQuery::from_maybe_shared(bytes::Bytes::copy_from_slice(
            p.as_str().as_bytes(),
        ))
        .ok()
    });
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// [`serve_connections`] with the receivers' limits (see [`crate::serve`]): at most
/// `max_connections` open connections, the first byte and HTTP/1 headers within
/// `request_timeout`.
pub async fn serve_connections_with<F, Fut, B>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
    handler: F,
) -> std::io::Result<()>
where
    F: Fn(::http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ::http::Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn_limits = crate::serve::ConnectionLimits {
        max_connections: limits.max_connections,
        sender_connections: limits.sender_connections,
        max_concurrent_streams: limits.max_concurrent_streams,
        first_byte_timeout: limits.request_timeout.min(HEADER_TIMEOUT),
        header_timeout: limits.request_timeout.min(HEADER_TIMEOUT),
        max_connection_age: limits.max_connection_age,
        max_connection_age_grace: limits.max_connection_age_grace,
        eviction_grace: crate::serve::EVICTION_GRACE,
    };
    // Called as the connection hands a request over (see [`Admission`]). A sender the
    // receivers' checks refuse (no token, a peer request where none is taken) is not
    // charged: it is answered so without reaching the budget, as before its charge moved
    // here, and cannot spend room or other senders' shares.
    let in_flight = limits.in_flight.clone();
    let checks = (
        limits.peer_traffic,
        limits.peer_auth.clone(),
        limits.auth.clone(),
    );
    let handler = move |mut req: ::http::Request<hyper::body::Incoming>| {
        let taken = super::auth::check_sender(
            checks.0,
            &checks.1,
            checks.2.as_ref(),
            &req,
            req.uri().path(),
        );
        if taken.is_ok() {
            Admission::attach(&in_flight, &mut req);
        }
        handler(req)
    };
    crate::serve::serve(listener, conn_limits, limits.tls, shutdown, handler).await
}

#[cfg(test)]
mod tests;
