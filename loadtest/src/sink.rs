//! The verifying sink: an OTLP/gRPC and OTLP/HTTP receiver that plays the backend. It
//! decodes every request (it is a test tool; decoding is the point) and records per trace the
//! span ids received, the span count and kind the generator marked, which gateway sent it
//! (the `tailgate-gateway` request header the demo's exporters set), and when its spans
//! arrived. From that it tells duplicates, incomplete traces and traces decided in parts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use tailgate_core::receive::{Accepted, Refusal, SpanSink};
use tokio::net::TcpListener;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::generate::{TraceKind, ATTR_KIND, ATTR_SPANS};

/// Request header naming the gateway that exported a request.
pub const SENDER_HEADER: &str = "tailgate-gateway";

/// What the sink knows of one trace.
#[derive(Debug, Clone)]
pub struct SinkTrace {
    /// Distinct span ids received.
    pub span_ids: Vec<[u8; 8]>,
    /// Span count the generator marked (0 if unmarked).
    pub expected: u32,
    /// Kind the generator marked.
    pub kind: Option<TraceKind>,
    /// Gateways that sent spans of it.
    pub senders: Vec<Arc<str>>,
    /// When its first span arrived.
    pub first_arrival: Instant,
    /// When its last span arrived.
    pub last_arrival: Instant,
}

/// Everything the sink received.
#[derive(Debug, Default)]
pub struct SinkState {
    /// Per trace.
    pub traces: HashMap<[u8; 16], SinkTrace>,
    /// Spans received, duplicates included.
    pub spans: u64,
    /// Spans whose id was already received for their trace.
    pub duplicate_spans: u64,
    /// Requests received.
    pub requests: u64,
}

/// Summary of what arrived, independent of the generator.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SinkSummary {
    /// Traces with at least one span.
    pub traces: u64,
    /// Distinct spans.
    pub spans: u64,
    /// Duplicate spans.
    pub duplicate_spans: u64,
    /// Traces with fewer spans than marked.
    pub incomplete_traces: u64,
    /// Traces whose spans came from more than one gateway.
    pub split_traces: u64,
    /// Error traces received.
    pub error_traces: u64,
    /// Slow traces received.
    pub slow_traces: u64,
}

/// A sink's state as another process reads it (JSON).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SinkDump {
    /// The sink's clock when the dump was taken (ms since its epoch).
    pub now_ms: u64,
    /// Spans received, duplicates included.
    pub spans: u64,
    /// Duplicate spans.
    pub duplicate_spans: u64,
    /// Requests received.
    pub requests: u64,
    /// Per trace.
    pub traces: Vec<DumpTrace>,
}

/// One trace of a [`SinkDump`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DumpTrace {
    /// Trace id.
    pub id: [u8; 16],
    /// Distinct span ids (little-endian `u64`s).
    pub span_ids: Vec<u64>,
    /// Span count the generator marked.
    pub expected: u32,
    /// Kind the generator marked.
    pub kind: Option<String>,
    /// Gateways that sent spans of it.
    pub senders: Vec<String>,
    /// First arrival (ms since the sink's epoch).
    pub first_ms: u64,
    /// Last arrival.
    pub last_ms: u64,
}

/// The sink.
#[derive(Debug, Default)]
pub struct Sink {
    state: Mutex<SinkState>,
    /// Arrival times in a [`SinkDump`] are milliseconds since this.
    epoch: std::sync::OnceLock<Instant>,
    /// While set, every request is refused with `UNAVAILABLE` (a backend outage).
    unavailable: std::sync::atomic::AtomicBool,
}

impl Sink {
    /// Everything received, in a form another process can read (`GET /state` on the
    /// control endpoint).
    pub fn dump(&self) -> SinkDump {
        let epoch = self.epoch();
        let ms = |t: Instant| t.saturating_duration_since(epoch).as_millis() as u64;
        self.with_state(|s| SinkDump {
            now_ms: ms(Instant::now()),
            spans: s.spans,
            duplicate_spans: s.duplicate_spans,
            requests: s.requests,
            traces: s
                .traces
                .iter()
                .map(|(id, t)| DumpTrace {
                    id: *id,
                    span_ids: t.span_ids.iter().map(|b| u64::from_le_bytes(*b)).collect(),
                    expected: t.expected,
                    kind: t.kind.map(|k| k.as_str().to_owned()),
                    senders: t.senders.iter().map(|s| s.to_string()).collect(),
                    first_ms: ms(t.first_arrival),
                    last_ms: ms(t.last_arrival),
                })
                .collect(),
        })
        .unwrap_or_default()
    }

    /// Replaces the state with a dump taken by another process; `taken` is when it was
    /// taken (arrival times are placed relative to it).
    pub fn load(&self, dump: SinkDump, taken: Instant) {
        let at = |ms: u64| {
            taken
                .checked_sub(Duration::from_millis(dump.now_ms.saturating_sub(ms)))
                .unwrap_or(taken)
        };
        let traces = dump
            .traces
            .iter()
            .map(|t| {
                (
                    t.id,
                    SinkTrace {
                        span_ids: t.span_ids.iter().map(|v| v.to_le_bytes()).collect(),
                        expected: t.expected,
                        kind: t.kind.as_deref().and_then(TraceKind::parse),
                        senders: t.senders.iter().map(|s| Arc::from(s.as_str())).collect(),
                        first_arrival: at(t.first_ms),
                        last_arrival: at(t.last_ms),
                    },
                )
            })
            .collect();
        if let Ok(mut st) = self.state.lock() {
            *st = SinkState {
                traces,
                spans: dump.spans,
                duplicate_spans: dump.duplicate_spans,
                requests: dump.requests,
            };
        }
    }

    fn epoch(&self) -> Instant {
        *self.epoch.get_or_init(Instant::now)
    }

    /// Serves the control endpoint on `listener` until `shutdown`: `GET /state` (a
    /// [`SinkDump`] as JSON), `GET /spans` (spans received), `POST /reset`, and
    /// `POST /outage/on` and `/outage/off`. It lets a harness use a sink that runs as its
    /// own process.
    pub async fn serve_control(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        use http::{Method, StatusCode};
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let sink = self.clone();
            async move {
                let (status, body) = match (req.method(), req.uri().path()) {
                    (&Method::GET, "/state") => (
                        StatusCode::OK,
                        serde_json::to_vec(&sink.dump()).unwrap_or_default(),
                    ),
                    (&Method::GET, "/spans") => (
                        StatusCode::OK,
                        sink.with_state(|s| s.spans)
                            .unwrap_or(0)
                            .to_string()
                            .into_bytes(),
                    ),
                    (&Method::POST, "/reset") => {
                        sink.reset();
                        (StatusCode::OK, b"reset".to_vec())
                    }
                    (&Method::POST, "/outage/on") => {
                        sink.set_unavailable(true);
                        (StatusCode::OK, b"down".to_vec())
                    }
                    (&Method::POST, "/outage/off") => {
                        sink.set_unavailable(false);
                        (StatusCode::OK, b"up".to_vec())
                    }
                    _ => (
                        StatusCode::NOT_FOUND,
                        b"GET /state, GET /spans, POST /reset, POST /outage/on, POST /outage/off"
                            .to_vec(),
                    ),
                };
                let mut resp = http::Response::new(http_body_util::Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                resp
            }
        };
        tailgate_core::receive::serve_connections(listener, shutdown.cancelled_owned(), handler)
            .await
    }

    /// Forgets everything received so far.
    pub fn reset(&self) {
        if let Ok(mut st) = self.state.lock() {
            *st = SinkState::default();
        }
    }

    /// Plays a backend outage: while `true`, requests are refused with `UNAVAILABLE`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable
            .store(unavailable, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_unavailable(&self) -> bool {
        self.unavailable.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one request from `sender`.
    pub fn record(&self, req: &ExportTraceServiceRequest, sender: Option<&str>) {
        let now = Instant::now();
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.requests += 1;
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    st.spans += 1;
                    let Ok(id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) else {
                        continue;
                    };
                    let span_id = <[u8; 8]>::try_from(span.span_id.as_slice()).unwrap_or_default();
                    let (mut expected, mut kind) = (0, None);
                    for kv in &span.attributes {
                        match (
                            kv.key.as_str(),
                            kv.value.as_ref().and_then(|v| v.value.as_ref()),
                        ) {
                            (ATTR_SPANS, Some(any_value::Value::IntValue(n))) => {
                                expected = *n as u32
                            }
                            (ATTR_KIND, Some(any_value::Value::StringValue(k))) => {
                                kind = TraceKind::parse(k)
                            }
                            _ => {}
                        }
                    }
                    let t = st.traces.entry(id).or_insert_with(|| SinkTrace {
                        span_ids: Vec::new(),
                        expected,
                        kind,
                        senders: Vec::new(),
                        first_arrival: now,
                        last_arrival: now,
                    });
                    t.last_arrival = now;
                    let duplicate = t.span_ids.contains(&span_id);
                    if !duplicate {
                        t.span_ids.push(span_id);
                    }
                    if let Some(s) = sender {
                        if !t.senders.iter().any(|x| &**x == s) {
                            t.senders.push(Arc::from(s));
                        }
                    }
                    if duplicate {
                        st.duplicate_spans += 1;
                    }
                }
            }
        }
    }

    /// Runs `f` over the state.
    pub fn with_state<R>(&self, f: impl FnOnce(&SinkState) -> R) -> Option<R> {
        self.state.lock().ok().map(|s| f(&s))
    }

    /// Distinct spans received so far.
    pub fn unique_spans(&self) -> u64 {
        self.with_state(|s| s.spans - s.duplicate_spans)
            .unwrap_or(0)
    }

    /// What arrived, judged by the marks on the spans.
    pub fn summary(&self) -> SinkSummary {
        self.with_state(|s| {
            let mut out = SinkSummary {
                traces: s.traces.len() as u64,
                spans: s.spans - s.duplicate_spans,
                duplicate_spans: s.duplicate_spans,
                ..Default::default()
            };
            for t in s.traces.values() {
                out.incomplete_traces += u64::from((t.span_ids.len() as u32) < t.expected);
                out.split_traces += u64::from(t.senders.len() > 1);
                out.error_traces += u64::from(t.kind == Some(TraceKind::Error));
                out.slow_traces += u64::from(t.kind == Some(TraceKind::Slow));
            }
            out
        })
        .unwrap_or_default()
    }

    /// Serves OTLP/gRPC and (optionally) OTLP/HTTP until `shutdown` is cancelled.
    pub async fn serve(
        self: Arc<Self>,
        grpc: TcpListener,
        http: Option<TcpListener>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        self.epoch();
        let service = TraceServiceServer::new(GrpcSink(self.clone()))
            .max_decoding_message_size(64 << 20)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
            // As a Collector's receiver: a router or exporter with `compression: zstd`.
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd);
        let limits = tailgate_core::receive::Limits {
            max_request_bytes: 64 << 20,
            ..tailgate_core::receive::Limits::plaintext(
                &tailgate_core::receive::ReceiveConfig::default(),
            )
        };
        let grpc = tailgate_core::receive::grpc::serve_service(
            grpc,
            limits.clone(),
            shutdown.clone().cancelled_owned(),
            service,
        );
        let http = async {
            match http {
                Some(l) => {
                    tailgate_core::receive::http::serve(
                        l,
                        self.clone(),
                        limits,
                        shutdown.cancelled_owned(),
                    )
                    .await
                }
                None => Ok(()),
            }
        };
        let (a, b) = tokio::join!(grpc, http);
        a.and(b)
    }
}

struct GrpcSink(Arc<Sink>);

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        if self.0.is_unavailable() {
            return Err(tonic::Status::unavailable("backend outage (simulated)"));
        }
        let sender = request
            .metadata()
            .get(SENDER_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.record(request.get_ref(), sender.as_deref());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl SpanSink for Sink {
    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        if self.is_unavailable() {
            return Err(Refusal::Unavailable {
                message: "backend outage (simulated)".into(),
                retry_after: std::time::Duration::from_secs(1),
            });
        }
        let req = ExportTraceServiceRequest::decode(body)
            .map_err(|e| Refusal::Invalid(format!("invalid ExportTraceServiceRequest: {e}")))?;
        self.record(&req, None);
        Ok(Accepted::default())
    }
}
