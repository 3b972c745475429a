//! Test fixtures (feature `test-util`): OTLP requests built with the `opentelemetry-proto`
//! types, so that tests compare the wire code with an independent encoder and decoder.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{status, ResourceSpans, ScopeSpans, Span, Status};

/// Builder of a fake request: `FakeOtlp::traces(4).spans(8).build()`.
#[derive(Debug, Clone)]
pub struct FakeOtlp {
    traces: usize,
    spans: usize,
    resources: usize,
    attrs: usize,
    seed: u64,
}

// === impl FakeOtlp ===

impl FakeOtlp {
    /// A request with `n` traces.
    pub fn traces(n: usize) -> Self {
        FakeOtlp {
            traces: n,
            spans: 4,
            resources: 2,
            attrs: 3,
            seed: 1,
        }
    }

    /// Spans per trace.
    pub fn spans(mut self, n: usize) -> Self {
        self.spans = n;
        self
    }

    /// Number of resources the spans are spread over.
    pub fn resources(mut self, n: usize) -> Self {
        self.resources = n.max(1);
        self
    }

    /// String attributes per span.
    pub fn attrs(mut self, n: usize) -> Self {
        self.attrs = n;
        self
    }

    /// Seed for ids and values.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The request.
    pub fn build(&self) -> ExportTraceServiceRequest {
        let mut rng = fastrand::Rng::with_seed(self.seed);
        let mut resources: Vec<ResourceSpans> = (0..self.resources)
            .map(|r| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &format!("service-{r}"))],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: format!("scope-{r}"),
                        ..Default::default()
                    }),
                    spans: Vec::new(),
                    schema_url: String::new(),
                }],
                schema_url: if r % 2 == 1 {
                    "https://opentelemetry.io/schemas/1.21.0".into()
                } else {
                    String::new()
                },
            })
            .collect();
        for _ in 0..self.traces {
            let trace_id = rng.u128(1..).to_le_bytes().to_vec();
            let root = rng.u64(1..).to_le_bytes().to_vec();
            let start = 1_700_000_000_000_000_000 + rng.u64(0..1_000_000_000);
            for s in 0..self.spans {
                let r = rng.usize(0..self.resources);
                let span = Span {
                    trace_id: trace_id.clone(),
                    span_id: if s == 0 {
                        root.clone()
                    } else {
                        rng.u64(1..).to_le_bytes().to_vec()
                    },
                    parent_span_id: if s == 0 { Vec::new() } else { root.clone() },
                    name: format!("op-{s}"),
                    kind: 2,
                    start_time_unix_nano: start + s as u64 * 1000,
                    end_time_unix_nano: start + 1_000_000 + s as u64 * 1000,
                    attributes: (0..self.attrs)
                        .map(|a| kv(&format!("attr.{a}"), &format!("value-{}", rng.u32(..))))
                        .collect(),
                    status: (rng.u8(..) < 32).then(|| Status {
                        message: "boom".into(),
                        code: status::StatusCode::Error as i32,
                    }),
                    ..Default::default()
                };
                resources[r].scope_spans[0].spans.push(span);
            }
        }
        ExportTraceServiceRequest {
            resource_spans: resources,
        }
    }
}

/// One request of `n` bare spans (a trace id and a span id, about 30 bytes each), each the
/// only span of its trace, with no resource or scope: the shape that costs a gateway the
/// most per byte. `tag` goes into every trace id, so requests of different tags share none.
pub fn bare_spans(n: u32, tag: u32) -> ExportTraceServiceRequest {
    let spans = (0..n)
        .map(|i| {
            let mut trace_id = vec![1u8; 16];
            trace_id[..4].copy_from_slice(&tag.to_le_bytes());
            trace_id[4..8].copy_from_slice(&i.to_le_bytes());
            Span {
                trace_id,
                span_id: vec![2; 8],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// `n` trace ids from a xorshift stream seeded with `seed`: the same ids on every run, spread
/// as random ones (for tests of how ids are placed on a ring or in shards).
pub fn trace_ids(n: usize, seed: u64) -> Vec<[u8; 16]> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            let mut id = [0u8; 16];
            for chunk in id.chunks_mut(8) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                chunk.copy_from_slice(&s.to_le_bytes());
            }
            id
        })
        .collect()
}

/// [`FakeOtlp`]'s 3 traces of 4 spans (seeded with `seed`) with every field of every
/// message set on the first span's path: its trace state, flags, kind, dropped counts,
/// status, an event and a link (whose attribute is a key-value list), the scope (name,
/// version, attributes) and schema URLs, with attributes of every kind (negative int,
/// double, bytes, bool, a string needing escapes, an empty string, an array). For tests of
/// the OTLP/JSON reader and writer.
pub fn every_field(seed: u64) -> ExportTraceServiceRequest {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    let mut req = FakeOtlp::traces(3).spans(4).seed(seed).build();
    let v = |value| AnyValue { value: Some(value) };
    let attrs: Vec<KeyValue> = [
        ("neg", any_value::Value::IntValue(-5)),
        ("d", any_value::Value::DoubleValue(-0.25)),
        ("b", any_value::Value::BytesValue(vec![0, 255, 7, 1])),
        ("t", any_value::Value::BoolValue(true)),
        (
            "s",
            any_value::Value::StringValue("q\"uote\\ \u{1} é".into()),
        ),
        ("e", any_value::Value::StringValue(String::new())),
        (
            "arr",
            any_value::Value::ArrayValue(ArrayValue {
                values: vec![
                    v(any_value::Value::IntValue(1)),
                    v(any_value::Value::StringValue("x".into())),
                ],
            }),
        ),
    ]
    .into_iter()
    .map(|(k, value)| KeyValue {
        key: k.into(),
        value: Some(v(value)),
        ..Default::default()
    })
    .collect();
    let span = &mut req.resource_spans[0].scope_spans[0].spans[0];
    span.attributes.extend(attrs.clone());
    span.trace_state = "a=b".into();
    span.flags = 0x301;
    span.kind = 3;
    span.dropped_attributes_count = 2;
    span.dropped_events_count = 3;
    span.dropped_links_count = 4;
    span.status = Some(Status {
        message: "bad".into(),
        code: status::StatusCode::Error as i32,
    });
    span.events.push(Event {
        time_unix_nano: u64::MAX,
        name: "ev".into(),
        attributes: attrs.clone(),
        dropped_attributes_count: 1,
    });
    span.links.push(Link {
        trace_id: vec![9; 16],
        span_id: vec![8; 8],
        trace_state: "k=v".into(),
        attributes: vec![KeyValue {
            key: "map".into(),
            value: Some(v(any_value::Value::KvlistValue(KeyValueList {
                values: attrs.clone(),
            }))),
            ..Default::default()
        }],
        dropped_attributes_count: 5,
        flags: 1,
    });
    let scope = &mut req.resource_spans[0].scope_spans[0];
    scope.schema_url = "https://opentelemetry.io/schemas/1.26.0".into();
    scope.scope = Some(InstrumentationScope {
        name: "lib".into(),
        version: "1.0".into(),
        attributes: attrs,
        dropped_attributes_count: 6,
    });
    req.resource_spans[0].schema_url = "s".into();
    req
}

/// A string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// An OTLP backend for tests: counts the spans of every request it accepts and keeps the
/// bodies. Serve it with [`crate::receive::Listeners::serve`].
#[derive(Debug, Default)]
pub struct CaptureBackend {
    bodies: std::sync::Mutex<Vec<bytes::Bytes>>,
    spans: std::sync::atomic::AtomicU64,
    unavailable: std::sync::atomic::AtomicBool,
    overloaded: std::sync::atomic::AtomicBool,
    overload_refusals: std::sync::atomic::AtomicU64,
    poison: std::sync::Mutex<Option<Vec<u8>>>,
    poisoned: std::sync::atomic::AtomicU64,
    /// Requests larger than this are refused as too large (0: no limit).
    max_request: std::sync::atomic::AtomicUsize,
    too_large: std::sync::atomic::AtomicU64,
    /// Too-large refusals of requests from a sender saying it cuts them
    /// ([`crate::receive::CUTS_TOO_LARGE_HEADER`]).
    cut_refusals: std::sync::atomic::AtomicU64,
    /// While set, every request is refused as forbidden ([`CaptureBackend::forbid`]).
    forbidden: std::sync::atomic::AtomicBool,
    forbidden_refusals: std::sync::atomic::AtomicU64,
    /// While set, requests wait before they are answered ([`CaptureBackend::hold`]).
    held: std::sync::atomic::AtomicBool,
    released: tokio::sync::Notify,
    waiting: std::sync::atomic::AtomicU64,
    /// Spans of each accepted request answered as rejected ([`CaptureBackend::reject_spans`]).
    reject: std::sync::atomic::AtomicU64,
}

impl CaptureBackend {
    /// Starts a backend on `addr` (OTLP/gRPC only); returns its address. It stops when
    /// `shutdown` is cancelled.
    pub async fn start(
        addr: std::net::SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_on(addr, false, shutdown).await
    }

    /// [`CaptureBackend::start`] serving OTLP/HTTP (`POST /v1/traces`) instead of gRPC.
    pub async fn start_http(
        addr: std::net::SocketAddr,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_on(addr, true, shutdown).await
    }

    async fn start_on(
        addr: std::net::SocketAddr,
        http: bool,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_with_tls(addr, http, None, shutdown).await
    }

    /// [`CaptureBackend::start`] (or `start_http`) served over TLS with `tls`.
    pub async fn start_with_tls(
        addr: std::net::SocketAddr,
        http: bool,
        tls: Option<std::sync::Arc<crate::tls::TlsServer>>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_with(addr, http, tls, None, shutdown).await
    }

    /// [`CaptureBackend::start_with_tls`] taking only requests with `authorization:
    /// Bearer <token>` when `token` is set (others get UNAUTHENTICATED / 401).
    pub async fn start_with(
        addr: std::net::SocketAddr,
        http: bool,
        tls: Option<std::sync::Arc<crate::tls::TlsServer>>,
        token: Option<&str>,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_limited(addr, http, tls, token, 64 << 20, shutdown).await
    }

    /// [`CaptureBackend::start`] whose receiver takes requests of at most
    /// `max_request_bytes`, as a gateway's `receive.max_request_bytes`: larger ones are
    /// refused by the receiver, stating the limit, as it states it in every answer.
    pub async fn start_taking(
        addr: std::net::SocketAddr,
        max_request_bytes: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        Self::start_limited(addr, false, None, None, max_request_bytes, shutdown).await
    }

    async fn start_limited(
        addr: std::net::SocketAddr,
        http: bool,
        tls: Option<std::sync::Arc<crate::tls::TlsServer>>,
        token: Option<&str>,
        max_request_bytes: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let me = std::sync::Arc::new(CaptureBackend::default());
        let (grpc, http) = if http {
            (None, Some(listener))
        } else {
            (Some(listener), None)
        };
        let listeners = crate::receive::Listeners { grpc, http };
        let limits = crate::receive::Limits {
            max_request_bytes,
            tls,
            auth: token.map(crate::receive::ReceiveAuth::new),
            ..crate::receive::Limits::plaintext(&crate::receive::ReceiveConfig::default())
        };
        tokio::spawn(listeners.serve(me.clone(), limits, shutdown));
        Ok((local, me))
    }

    /// Spans received.
    pub fn spans(&self) -> u64 {
        self.spans.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// While `true`, every request is refused with `UNAVAILABLE` (an outage the sender
    /// should retry through).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable
            .store(unavailable, std::sync::atomic::Ordering::Relaxed);
    }

    /// While `true`, every request holding spans is refused with `RESOURCE_EXHAUSTED` and a
    /// retry hint, as a gateway over its memory limit refuses it (empty requests, a
    /// router's probes, are taken).
    pub fn set_overloaded(&self, overloaded: bool) {
        self.overloaded
            .store(overloaded, std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests refused by [`CaptureBackend::set_overloaded`].
    pub fn overload_refusals(&self) -> u64 {
        self.overload_refusals
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// While set, a request whose bytes contain `marker` is refused whole with
    /// `INVALID_ARGUMENT`, as a backend refuses a batch holding one span it cannot decode.
    pub fn refuse_requests_containing(&self, marker: Option<&[u8]>) {
        if let Ok(mut p) = self.poison.lock() {
            *p = marker.map(<[u8]>::to_vec);
        }
    }

    /// Requests refused because they held the marker of
    /// [`CaptureBackend::refuse_requests_containing`].
    pub fn poisoned_requests(&self) -> u64 {
        self.poisoned.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Refuses requests over `bytes` (`None`: any size) as too large, as a backend whose
    /// message limit is smaller than the sender's requests does: `RESOURCE_EXHAUSTED`
    /// without `RetryInfo` over gRPC, 413 over HTTP, stating no limit (as a gateway
    /// refusing a request its whole buffer could not hold, or one older than the limit's
    /// statement).
    pub fn refuse_requests_over(&self, bytes: Option<usize>) {
        self.max_request
            .store(bytes.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
    }

    /// Requests refused as larger than [`CaptureBackend::refuse_requests_over`].
    pub fn too_large_requests(&self) -> u64 {
        self.too_large.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Of [`CaptureBackend::too_large_requests`], those whose sender said it cuts them and
    /// sends them again ([`crate::receive::CUTS_TOO_LARGE_HEADER`]).
    pub fn cut_refusals(&self) -> u64 {
        self.cut_refusals.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// While `true`, every request is refused with `PERMISSION_DENIED` / 403, as a backend
    /// refuses a key that is valid but not allowed to write.
    pub fn forbid(&self, forbidden: bool) {
        self.forbidden
            .store(forbidden, std::sync::atomic::Ordering::SeqCst);
    }

    /// Requests refused by [`CaptureBackend::forbid`].
    pub fn forbidden_refusals(&self) -> u64 {
        self.forbidden_refusals
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// While `true`, requests are read and then wait, unanswered, until it is `false`
    /// again (a gateway slow to answer); then they are taken.
    pub fn hold(&self, held: bool) {
        self.held.store(held, std::sync::atomic::Ordering::SeqCst);
        if !held {
            self.released.notify_waiters();
        }
    }

    /// Requests waiting in [`CaptureBackend::hold`] now.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// From now on answers each request it accepts with an OTLP partial success rejecting
    /// `n` of its spans (at most as many as it holds; 0: none), as a backend that drops
    /// spans it cannot take, or a peer of another version, does. The spans are still
    /// counted and kept.
    pub fn reject_spans(&self, n: u64) {
        self.reject.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Bodies received.
    pub fn bodies(&self) -> Vec<bytes::Bytes> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl crate::receive::SpanSink for CaptureBackend {
    fn refused_cut(&self, _refusal: &crate::receive::Refusal) {
        self.cut_refusals
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn export(
        &self,
        body: bytes::Bytes,
    ) -> Result<crate::receive::Accepted, crate::receive::Refusal> {
        if self.held.load(std::sync::atomic::Ordering::SeqCst) {
            self.waiting
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            loop {
                let released = self.released.notified();
                if !self.held.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
            self.waiting
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        if self.forbidden.load(std::sync::atomic::Ordering::SeqCst) {
            self.forbidden_refusals
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(crate::receive::Refusal::PermissionDenied(
                "test backend: this key may not write".into(),
            ));
        }
        if self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::receive::Refusal::Unavailable {
                message: "test backend is down".into(),
                retry_after: std::time::Duration::from_millis(100),
            });
        }
        if !body.is_empty() && self.overloaded.load(std::sync::atomic::Ordering::Relaxed) {
            self.overload_refusals
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(crate::receive::Refusal::Overloaded {
                message: "test backend is over its memory limit".into(),
                retry_after: std::time::Duration::from_millis(100),
            });
        }
        let max = self.max_request.load(std::sync::atomic::Ordering::Relaxed);
        if max > 0 && body.len() > max {
            self.too_large
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // No limit stated: its receiver states another (see `start_taking`).
            return Err(crate::receive::Refusal::TooLarge {
                message: format!(
                    "a request of {} bytes is over this backend's limit of {max}",
                    body.len()
                ),
                limit: None,
            });
        }
        if let Some(marker) = self.poison.lock().ok().and_then(|p| p.clone()) {
            if body.windows(marker.len().max(1)).any(|w| w == marker) {
                self.poisoned
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(crate::receive::Refusal::Invalid(
                    "the request holds a span this backend cannot take".into(),
                ));
            }
        }
        let mut scan = crate::wire::Scan::default();
        scan.scan(&body)
            .map_err(|e| crate::receive::Refusal::Invalid(e.to_string()))?;
        self.spans.fetch_add(
            scan.spans.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Ok(mut b) = self.bodies.lock() {
            b.push(body);
        }
        let rejected = self
            .reject
            .load(std::sync::atomic::Ordering::SeqCst)
            .min(scan.spans.len() as u64);
        Ok(crate::receive::Accepted {
            rejected_spans: rejected,
            message: if rejected > 0 {
                format!("test backend: {rejected} spans rejected")
            } else {
                String::new()
            },
        })
    }
}

/// A DNS server on loopback for tests and the chaos harness: it answers A queries for one
/// name from a list of addresses the caller changes, or SERVFAIL while told to fail, with a
/// TTL of one second. Enough for `hickory-resolver` to discover a headless Service.
#[derive(Debug)]
pub struct DnsZone {
    name: String,
    a: std::sync::Mutex<Vec<std::net::Ipv4Addr>>,
    fail: std::sync::atomic::AtomicBool,
}

impl DnsZone {
    /// Serves `name` (a fully qualified name, ending in a dot) on `addr` over UDP until
    /// `shutdown`; returns the bound address.
    pub async fn start(
        addr: std::net::SocketAddr,
        name: &str,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let local = socket.local_addr()?;
        let zone = std::sync::Arc::new(DnsZone {
            name: name.to_owned(),
            a: Default::default(),
            fail: Default::default(),
        });
        let z = zone.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = z.serve(socket) => {}
                () = shutdown.cancelled() => {}
            }
        });
        Ok((local, zone))
    }

    /// The name served.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the A records.
    pub fn set(&self, ips: Vec<std::net::Ipv4Addr>) {
        if let Ok(mut a) = self.a.lock() {
            *a = ips;
        }
    }

    /// The A records served now.
    pub fn get(&self) -> Vec<std::net::Ipv4Addr> {
        self.a.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// While `true`, every query gets SERVFAIL.
    pub fn set_failing(&self, fail: bool) {
        self.fail.store(fail, std::sync::atomic::Ordering::Relaxed);
    }

    async fn serve(&self, socket: tokio::net::UdpSocket) {
        use hickory_proto::op::{Message, ResponseCode};
        use hickory_proto::rr::rdata::A;
        use hickory_proto::rr::{RData, Record, RecordType};
        let mut buf = vec![0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
            resp.metadata.recursion_desired = query.metadata.recursion_desired;
            resp.metadata.recursion_available = true;
            resp.metadata.authoritative = true;
            for q in &query.queries {
                resp.add_query(q.clone());
                if self.fail.load(std::sync::atomic::Ordering::Relaxed) {
                    resp.metadata.response_code = ResponseCode::ServFail;
                } else if q.query_type() == RecordType::A
                    && q.name().to_ascii().eq_ignore_ascii_case(&self.name)
                {
                    for ip in self.get() {
                        resp.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(A(ip))));
                    }
                }
            }
            if let Ok(bytes) = resp.to_vec() {
                socket.send_to(&bytes, peer).await.ok();
            }
        }
    }
}

pub use crate::wire::oracle::scan_oracle;

/// Makes a named pipe at `path` (`mkfifo`, coreutils), failing the test when it cannot.
pub fn make_fifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo (coreutils)");
}

/// An empty directory of its own for one test: `$TMPDIR/tailgate-{label}-` and a random
/// suffix, removed with what is in it when the returned guard is dropped (also when the
/// test fails), so test runs neither leave files behind nor see each other's.
pub fn scratch_dir(label: &str) -> std::io::Result<ScratchDir> {
    tempfile::Builder::new()
        .prefix(&format!("tailgate-{label}-"))
        .tempdir()
        .map(ScratchDir)
}

/// A directory made by [`scratch_dir`], removed when this is dropped; reads as its path.
#[derive(Debug)]
pub struct ScratchDir(tempfile::TempDir);

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for ScratchDir {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

/// A throwaway PKI for TLS tests: a CA, and certificates it signs written as PEM files in
/// `dir`.
pub struct TestPki {
    dir: std::path::PathBuf,
    name: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki").field("dir", &self.dir).finish()
    }
}

impl TestPki {
    /// A new CA named `name`, its certificate written to `dir/{name}.crt`.
    pub fn new(dir: &std::path::Path, name: &str) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key)?;
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem())
            .map_err(|e| rcgen::Error::PemError(e.to_string()))?;
        Ok(TestPki {
            dir: dir.to_owned(),
            name: name.to_owned(),
            ca: rcgen::Issuer::new(params, key),
        })
    }

    /// A server certificate for `names` issued as [`TestPki::issue`] does, loaded as a
    /// receiver's TLS side.
    pub fn server(
        &self,
        file: &str,
        names: &[&str],
    ) -> Result<std::sync::Arc<crate::tls::TlsServer>, Box<dyn std::error::Error>> {
        let (cert, key) = self.issue(file, names)?;
        Ok(crate::tls::TlsServer::load(&crate::tls::ServerTlsConfig {
            cert_file: Some(cert),
            key_file: Some(key),
            ..Default::default()
        })?)
    }

    /// The CA certificate's file.
    pub fn ca_file(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(format!("{name}.crt"))
    }

    /// A certificate for `names` (host names or IPs) signed by the CA, written to
    /// `dir/{file}.crt` and `dir/{file}.key`; returns both paths.
    pub fn issue(
        &self,
        file: &str,
        names: &[&str],
    ) -> Result<(std::path::PathBuf, std::path::PathBuf), rcgen::Error> {
        if file == self.name {
            return Err(rcgen::Error::PemError(format!(
                "{file}.crt is the CA's own certificate; name the issued one differently"
            )));
        }
        let key = rcgen::KeyPair::generate()?;
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )?;
        let cert = params.signed_by(&key, &self.ca)?;
        let (crt, pem) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        let write = |p: &std::path::Path, s: String| {
            std::fs::write(p, s).map_err(|e| rcgen::Error::PemError(e.to_string()))
        };
        write(&crt, cert.pem())?;
        write(&pem, key.serialize_pem())?;
        Ok((crt, pem))
    }
}

/// What a fake OAuth2 token endpoint ([`token_endpoint`]) saw of each request: its `authorization` header and
/// its form.
pub type TokenRequests = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, String)>>>;

/// An HTTP/1.1 server on a loopback port handing every request (its head and whole body)
/// to `answer`, which gives the status, content type and body to answer with. Its address.
/// The fake endpoints below are this with their own bookkeeping.
async fn serve_loopback(
    answer: impl Fn(http::request::Parts, bytes::Bytes) -> (u16, &'static str, String)
        + Send
        + Sync
        + 'static,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = http_body_util::BodyExt::collect(body)
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let (status, kind, text) = answer(parts, body);
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            ));
                            *response.status_mut() = http::StatusCode::from_u16(status)
                                .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                            if !kind.is_empty() {
                                response.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static(kind),
                                );
                            }
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    });
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await
                    .ok();
            });
        }
    });
    Ok(addr)
}

/// A token endpoint on loopback answering each request with what `answer` makes of
/// its `authorization` header and form (status, content type, body); notes every
/// request and wakes `asked`.
pub async fn token_endpoint(
    answer: impl Fn(Option<&str>, &str) -> (u16, &'static str, String) + Send + Sync + 'static,
) -> std::io::Result<(
    http::Uri,
    TokenRequests,
    std::sync::Arc<tokio::sync::Notify>,
)> {
    let seen: TokenRequests = std::sync::Arc::default();
    let asked = std::sync::Arc::new(tokio::sync::Notify::new());
    let (noted, woken) = (seen.clone(), asked.clone());
    let addr = serve_loopback(move |parts, body| {
        let auth = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let form = String::from_utf8_lossy(&body).into_owned();
        let answered = answer(auth.as_deref(), &form);
        noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((auth, form));
        woken.notify_waiters();
        answered
    })
    .await?;
    let url: http::Uri = format!("http://{addr}/oauth2/token")
        .parse()
        .map_err(std::io::Error::other)?;
    Ok((url, seen, asked))
}

/// What a [`fake_endpoint`] saw: each request's method and target (`GET /path?query`).
pub type Targets = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// An HTTP/1.1 endpoint on loopback answering each request with what `answer` makes of
/// its method, target (path and query) and headers (status, body): a metadata server, a
/// credentials endpoint. Its `http://host:port/` and the requests it saw.
pub async fn fake_endpoint(
    answer: impl Fn(&http::Method, &str, &http::HeaderMap) -> (u16, String) + Send + Sync + 'static,
) -> (http::Uri, Targets) {
    let seen: Targets = std::sync::Arc::default();
    let noted = seen.clone();
    let Ok(addr) = serve_loopback(move |parts, _| {
        let target = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        noted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{} {target}", parts.method));
        let (status, body) = answer(&parts.method, &target, &parts.headers);
        (status, "", body)
    })
    .await
    else {
        panic!("cannot bind a loopback port")
    };
    let Ok(base) = format!("http://{addr}/").parse() else {
        panic!("a loopback address is a URI")
    };
    (base, seen)
}

/// What a [`recording_backend`] saw of each request: its URI path, headers and body.
pub type Recorded = std::sync::Arc<std::sync::Mutex<Vec<(String, http::HeaderMap, bytes::Bytes)>>>;

/// An HTTP/1.1 backend on loopback noting every request (path, headers, body) and
/// answering 200 with an empty body, or 403 while `refuse` is above 0 (counting it down);
/// its `host:port` and what it noted.
pub async fn recording_backend(
    refuse: std::sync::Arc<std::sync::atomic::AtomicU32>,
) -> (String, Recorded) {
    let seen: Recorded = std::sync::Arc::default();
    let noted = seen.clone();
    let Ok(addr) = serve_loopback(move |parts, body| {
        noted.lock().unwrap_or_else(|e| e.into_inner()).push((
            parts.uri.path().to_owned(),
            parts.headers,
            body,
        ));
        let refused = refuse
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_ok();
        (if refused { 403 } else { 200 }, "", String::new())
    })
    .await
    else {
        panic!("cannot bind a loopback port")
    };
    (addr.to_string(), seen)
}

/// An answer for [`token_endpoint`]: tokens `t0`, `t1`, … one per request, each valid
/// `expires_in` seconds, whatever the request says.
pub fn issuing_tokens(
    expires_in: u64,
) -> impl Fn(Option<&str>, &str) -> (u16, &'static str, String) + Send + Sync + 'static {
    let issued = std::sync::atomic::AtomicU32::new(0);
    move |_, _| {
        let n = issued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (
            200,
            "application/json",
            format!(r#"{{"access_token":"t{n}","expires_in":{expires_in}}}"#),
        )
    }
}

/// An HTTP proxy for tests: answers `CONNECT`, keeps each request's head, and joins
/// every tunnel to `to`, whatever host was asked for (so tests can name hosts that do not
/// resolve, and certificates issued for them), or refuses with a set answer.
#[derive(Debug, Default)]
pub struct ConnectProxy {
    heads: std::sync::Mutex<Vec<String>>,
    refusal: std::sync::Mutex<Option<&'static str>>,
}

impl ConnectProxy {
    /// Starts a proxy on a free loopback port, tunnelling to `to`; returns its address.
    /// It runs until the runtime ends.
    pub async fn start(
        to: std::net::SocketAddr,
    ) -> std::io::Result<(std::net::SocketAddr, std::sync::Arc<Self>)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let local = listener.local_addr()?;
        let me = std::sync::Arc::new(ConnectProxy::default());
        let proxy = me.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let proxy = proxy.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        match client.read_u8().await {
                            Ok(b) => head.push(b),
                            Err(_) => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let refusal = *proxy.refusal.lock().unwrap_or_else(|e| e.into_inner());
                    proxy
                        .heads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(head);
                    if let Some(answer) = refusal {
                        client.write_all(answer.as_bytes()).await.ok();
                        return;
                    }
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(to).await else {
                        client
                            .write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
                            .await
                            .ok();
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        tokio::io::copy_bidirectional(&mut client, &mut upstream)
                            .await
                            .ok();
                    }
                });
            }
        });
        Ok((local, me))
    }

    /// The heads of the `CONNECT` requests received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Answers every later `CONNECT` with `answer` (a whole HTTP head) instead of a tunnel;
    /// `None` tunnels again.
    pub fn refuse_with(&self, answer: Option<&'static str>) {
        *self.refusal.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }
}

/// A TCP connection to `addr` from the loopback address `127.0.0.{last}`: a sender of
/// its own, as connection and room shares tell senders apart.
pub async fn connect_from(
    last: u8,
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, last], 0)))?;
    socket.connect(addr).await
}

/// Posts `body` (OTLP protobuf) to `/v1/traces` at `addr` over `stream` with
/// `connection: close`, and reads the whole answer within `within`; `None` past it.
pub async fn post_traces(
    stream: &mut tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    body: &[u8],
    within: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    Some(answer)
}

/// Opens an OTLP/HTTP upload to `addr` that announces 100,000 bytes, sends 10 and stalls:
/// a slow or stuck sender. Returns once the server is reading its body (it answered the
/// request's `Expect: 100-continue`), so a test can act on a request known to be open.
pub async fn stalled_upload(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"POST /v1/traces HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 256];
    while !answer.windows(12).any(|w| w == b"100 Continue") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("the server closed the upload"));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    stream.write_all(b"0123456789").await?;
    Ok(stream)
}

/// `data` compressed in `encoding` as a client sends it (see
/// [`crate::receive::compress::compress`]).
#[cfg(feature = "net")]
pub fn compressed(encoding: crate::receive::compress::Encoding, data: &[u8]) -> Vec<u8> {
    crate::receive::compress::compress(encoding, &[bytes::Bytes::copy_from_slice(data)])
        .expect("compressing in memory")
}

/// A log sink for tests: what the fmt layer writes at INFO and above, kept. Installed as
/// the thread's default subscriber while the guard lives (code that logs from other
/// threads passes its dispatcher on, as `credential` does).
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

/// Keeps a [`CapturedLog`] installed while it lives.
pub struct CapturedLogGuard {
    _default: tracing::subscriber::DefaultGuard,
    /// A second registered dispatcher, interested in everything (see [`CapturedLog::install`]).
    _anchor: tracing::Dispatch,
}

impl CapturedLog {
    /// A new sink, installed.
    ///
    /// tracing caches each callsite's interest process-wide, computed by the first thread
    /// that reaches it; while only one dispatcher is registered it asks that thread's
    /// default, so a test thread with no subscriber (a sibling test) could cache "never"
    /// for a line this capture waits for, and its event would be dropped (seen: one run in
    /// ten of core's tests, tokio-rs/tracing#3611). A second dispatcher kept registered
    /// while the capture lives makes tracing ask every registered dispatcher instead.
    pub fn install() -> (Self, CapturedLogGuard) {
        let log = CapturedLog::default();
        let sink = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let anchor = tracing::Dispatch::new(tracing_subscriber::registry());
        let default = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        let guard = CapturedLogGuard {
            _default: default,
            _anchor: anchor,
        };
        (log, guard)
    }

    /// How many times `needle` was written.
    pub fn count(&self, needle: &str) -> usize {
        String::from_utf8_lossy(&self.text())
            .matches(needle)
            .count()
    }

    /// All that was written.
    pub fn text(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Asserts that every `.rs` file in `package/tests/` is compiled: named as a module
/// (`mod name;`) in `main_rs`, the source of the package's one integration-test binary
/// (`tests/main.rs`, listed there for why), or listed in `own_targets` (files that are a test
/// target of their own in Cargo.toml); and that no folder there holds a `main.rs` (a
/// test binary in Cargo's layout) unless it is listed too. With `autotests = false`, a
/// file left out would otherwise never run and never fail.
///
/// # Panics
///
/// When a file is neither, or the folder cannot be read.
pub fn assert_test_files_are_modules(
    package: &std::path::Path,
    main_rs: &str,
    own_targets: &[&str],
) {
    let dir = package.join("tests");
    let mut missing = Vec::new();
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // A folder with a main.rs is a test binary in Cargo's layout, which autotests =
        // false no longer builds: a target of its own, or a mistake.
        if entry.path().join("main.rs").is_file() && !own_targets.contains(&name.as_str()) {
            missing.push(format!("{name}/main.rs"));
            continue;
        }
        let Some(module) = name.strip_suffix(".rs") else {
            continue;
        };
        if module == "main" || own_targets.contains(&module) {
            continue;
        }
        if !main_rs
            .lines()
            .any(|l| l.trim() == format!("mod {module};"))
        {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "{}: not compiled (add `mod <name>;` to tests/main.rs, or a [[test]] target to Cargo.toml): {missing:?}",
        dir.display()
    );
}
