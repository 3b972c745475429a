//! The open-loop driver: starts traces at the offered rate whatever the target does, sends
//! each trace's chunks when they fall due, mixed with other traces' spans in shared requests
//! (as an agent's batch would be), and retries refused requests with back-off as agents do.
//! It keeps a record per trace (id, kind, span count, when its last span was sent) for the
//! verifying report.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};

use crate::generate::{GenConfig, GenTrace, Generator, TraceKind, SERVICES};

/// How the driver talks to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP/gRPC.
    Grpc,
    /// OTLP/HTTP with protobuf bodies.
    Http,
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct DriveConfig {
    /// `host:port` of the target.
    pub target: String,
    /// Protocol.
    pub protocol: Protocol,
    /// Offered spans per second.
    pub rate: f64,
    /// How long new traces are started.
    pub duration: Duration,
    /// Most spans in one request.
    pub batch: usize,
    /// Requests in flight at once.
    pub max_in_flight: usize,
    /// How long one request is retried before its spans count as refused.
    pub retry_for: Duration,
    /// Trace shape.
    pub gen: GenConfig,
}

/// What was sent for one trace.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    /// Trace id.
    pub id: [u8; 16],
    /// Kind.
    pub kind: TraceKind,
    /// Span count.
    pub spans: u32,
    /// When the request with its last chunk was sent.
    pub last_sent: Option<Instant>,
}

/// The driver's outcome.
#[derive(Debug, Default)]
pub struct DriveResult {
    /// Per trace.
    pub traces: Vec<TraceRecord>,
    /// Spans generated and sent (or attempted).
    pub spans_sent: u64,
    /// Spans the target accepted.
    pub spans_accepted: u64,
    /// Spans the target refused until the driver gave up.
    pub spans_refused: u64,
    /// Spans the target rejected as invalid (partial success).
    pub spans_rejected: u64,
    /// Refusals that were retried.
    pub retries: u64,
    /// Requests sent.
    pub requests: u64,
    /// Time from first trace to last acknowledgement.
    pub elapsed: Duration,
    /// The last error seen, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    refused: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    requests: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

/// A client of the target.
#[derive(Clone)]
pub enum Target {
    /// OTLP/gRPC client.
    Grpc(TraceServiceClient<tonic::transport::Channel>),
    /// OTLP/HTTP client and URL.
    Http(
        HttpClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
        String,
    ),
}

/// Why a send failed.
#[derive(Debug)]
pub struct SendError {
    /// Worth retrying.
    pub retryable: bool,
    /// What happened.
    pub message: String,
}

impl Target {
    /// A client for `target` (`host:port`).
    pub fn new(target: &str, protocol: Protocol) -> anyhow::Result<Self> {
        Ok(match protocol {
            Protocol::Grpc => {
                let channel = tonic::transport::Endpoint::from_shared(format!("http://{target}"))?
                    .initial_stream_window_size(Some(2 << 20))
                    .initial_connection_window_size(Some(8 << 20))
                    .tcp_nodelay(true)
                    .timeout(Duration::from_secs(10))
                    .connect_lazy();
                Target::Grpc(TraceServiceClient::new(channel).max_decoding_message_size(16 << 20))
            }
            Protocol::Http => Target::Http(
                HttpClient::builder(TokioExecutor::new()).build_http(),
                format!("http://{target}/v1/traces"),
            ),
        })
    }

    /// Sends once; `Ok` carries the spans rejected by partial success.
    pub async fn send(&self, req: ExportTraceServiceRequest) -> Result<u64, SendError> {
        match self {
            Target::Grpc(client) => {
                let mut client = client.clone();
                match client.export(req).await {
                    Ok(resp) => Ok(rejected(resp.into_inner())),
                    // As OTLP exporters: `RESOURCE_EXHAUSTED` only with a `RetryInfo` (a
                    // request refused as too large has none, and is not sent again).
                    Err(status) => Err(SendError {
                        retryable: tailgate_core::receive::status::is_retryable_status(&status),
                        message: format!("{:?}: {}", status.code(), status.message()),
                    }),
                }
            }
            Target::Http(client, url) => {
                let request = http::Request::post(url)
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(Full::new(Bytes::from(req.encode_to_vec())))
                    .map_err(|e| SendError {
                        retryable: false,
                        message: e.to_string(),
                    })?;
                let resp = client.request(request).await.map_err(|e| SendError {
                    retryable: true,
                    message: e.to_string(),
                })?;
                let status = resp.status();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                if status.is_success() {
                    Ok(ExportTraceServiceResponse::decode(body)
                        .map(rejected)
                        .unwrap_or(0))
                } else {
                    Err(SendError {
                        retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                        message: format!(
                            "HTTP {status}: {}",
                            String::from_utf8_lossy(&body).trim()
                        ),
                    })
                }
            }
        }
    }
}

fn rejected(resp: ExportTraceServiceResponse) -> u64 {
    resp.partial_success
        .map_or(0, |p| p.rejected_spans.max(0) as u64)
}

/// The driver's state: the target, the traces under way and what is waiting to be sent.
struct Driver {
    target: Target,
    gen: Generator,
    counters: Arc<Counters>,
    in_flight: Arc<Semaphore>,
    records: Vec<TraceRecord>,
    live: HashMap<usize, GenTrace>,
    due: BinaryHeap<Reverse<(Instant, usize, usize)>>,
    pending: Vec<(usize, Span)>,
    finishing: Vec<usize>,
    spans_sent: u64,
    batch: usize,
    retry_for: Duration,
    /// Cancelled to stop early (see [`drive_until`]).
    stop: tokio_util::sync::CancellationToken,
}

/// Runs the driver to completion: starts traces for `duration`, then sends the remaining
/// chunks and waits for every request to be answered.
pub async fn drive(cfg: DriveConfig) -> anyhow::Result<DriveResult> {
    drive_until(cfg, tokio_util::sync::CancellationToken::new()).await
}

/// [`drive`], stopped early when `stop` is cancelled: no trace is started nor chunk sent
/// after it, a request refused is not retried (it counts refused), and the requests
/// already sent are waited for (each at most its timeout); what was never sent is not
/// counted as sent.
pub async fn drive_until(
    cfg: DriveConfig,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<DriveResult> {
    let mut driver = Driver::new(&cfg, stop.clone())?;
    let trace_rate = cfg.rate / f64::from(cfg.gen.spans_per_trace.max(1));
    let unix_base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let end = start + cfg.duration;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = Instant::now();
        if now < end {
            let want = ((now - start).as_secs_f64() * trace_rate) as usize;
            let unix = unix_base + (now - start).as_nanos() as u64;
            driver.start_traces(want, now, unix);
        } else if driver.due.is_empty() {
            break;
        }
        driver.send_due_chunks(now).await;
        if !driver.pending.is_empty() {
            driver.send_batch().await;
        }
    }
    // Stopped: the request being gathered is not sent.
    let unsent = driver.pending.len() as u64;
    driver.spans_sent -= unsent;
    driver.pending.clear();
    driver.finish(start, cfg.max_in_flight).await
}

impl Driver {
    /// A driver with a client of the target and nothing under way yet.
    fn new(cfg: &DriveConfig, stop: tokio_util::sync::CancellationToken) -> anyhow::Result<Self> {
        let target = Target::new(&cfg.target, cfg.protocol)?;
        Ok(Driver {
            target,
            gen: Generator::new(cfg.gen.clone()),
            counters: Arc::new(Counters::default()),
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            records: Vec::new(),
            live: HashMap::new(),
            due: BinaryHeap::new(),
            pending: Vec::new(),
            finishing: Vec::new(),
            spans_sent: 0,
            batch: cfg.batch,
            retry_for: cfg.retry_for,
            stop,
        })
    }

    /// Generates traces until `want` have been started, scheduling each one's chunks.
    fn start_traces(&mut self, want: usize, now: Instant, unix: u64) {
        while self.records.len() < want {
            let t = self.gen.next_trace(unix);
            let slot = self.records.len();
            for (c, d) in t.due.iter().enumerate() {
                self.due.push(Reverse((now + *d, slot, c)));
            }
            self.records.push(TraceRecord {
                id: t.id,
                kind: t.kind,
                spans: t.spans,
                last_sent: None,
            });
            self.live.insert(slot, t);
        }
    }

    /// Moves every chunk due by `now` into the pending request, sending full batches.
    async fn send_due_chunks(&mut self, now: Instant) {
        while let Some(Reverse((when, slot, chunk))) = self.due.peek().copied() {
            if when > now || self.stop.is_cancelled() {
                break;
            }
            self.due.pop();
            let Some(t) = self.live.get_mut(&slot) else {
                continue;
            };
            let spans = std::mem::take(&mut t.chunks[chunk]);
            self.spans_sent += spans.len() as u64;
            self.pending.extend(spans);
            if chunk + 1 == t.chunks.len() {
                self.live.remove(&slot);
                self.finishing.push(slot);
            }
            if self.pending.len() >= self.batch {
                self.send_batch().await;
            }
        }
    }

    /// Waits for every request to be answered and returns the driver's outcome.
    async fn finish(self, start: Instant, max_in_flight: usize) -> anyhow::Result<DriveResult> {
        let _all = self
            .in_flight
            .acquire_many(max_in_flight.max(1) as u32)
            .await
            .map_err(|e| anyhow::anyhow!("driver semaphore closed: {e}"))?;
        let counters = &self.counters;
        let last_error = counters.last_error.lock().ok().and_then(|e| e.clone());
        Ok(DriveResult {
            traces: self.records,
            spans_sent: self.spans_sent,
            spans_accepted: counters.accepted.load(Ordering::Relaxed),
            spans_refused: counters.refused.load(Ordering::Relaxed),
            spans_rejected: counters.rejected.load(Ordering::Relaxed),
            retries: counters.retries.load(Ordering::Relaxed),
            requests: counters.requests.load(Ordering::Relaxed),
            elapsed: start.elapsed(),
            last_error,
        })
    }

    /// Sends the pending spans as one request in the background, retrying refusals.
    async fn send_batch(&mut self) {
        let req = build_request(std::mem::take(&mut self.pending));
        let n: u64 = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len() as u64)
            .sum();
        // Waiting for a slot is where an overloaded target slows the driver down; the report's
        // achieved rate shows it.
        let permit = tokio::select! {
            biased;
            // Stopped while waiting for a slot: this request is not sent.
            () = self.stop.cancelled() => {
                self.spans_sent -= n;
                return;
            }
            permit = self.in_flight.clone().acquire_owned() => permit,
        };
        let Ok(permit) = permit else {
            return;
        };
        let now = Instant::now();
        for slot in self.finishing.drain(..) {
            self.records[slot].last_sent = Some(now);
        }
        let (target, counters) = (self.target.clone(), self.counters.clone());
        let (retry_for, stop) = (self.retry_for, self.stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            counters.requests.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + retry_for;
            let mut backoff = Duration::from_millis(50);
            loop {
                match target.send(req.clone()).await {
                    Ok(rejected) => {
                        counters
                            .accepted
                            .fetch_add(n - rejected.min(n), Ordering::Relaxed);
                        counters
                            .rejected
                            .fetch_add(rejected.min(n), Ordering::Relaxed);
                        return;
                    }
                    Err(e) => {
                        if let Ok(mut last) = counters.last_error.lock() {
                            *last = Some(e.message.clone());
                        }
                        // Stopped: refused requests are not retried (they count refused).
                        if !e.retryable
                            || Instant::now() + backoff > deadline
                            || stop.is_cancelled()
                        {
                            counters.refused.fetch_add(n, Ordering::Relaxed);
                            return;
                        }
                        counters.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            () = tokio::time::sleep(backoff) => {}
                            () = stop.cancelled() => {
                                counters.refused.fetch_add(n, Ordering::Relaxed);
                                return;
                            }
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        });
    }
}

/// Groups spans by service into one request.
pub fn build_request(spans: Vec<(usize, Span)>) -> ExportTraceServiceRequest {
    let mut by_service: Vec<Vec<Span>> = (0..SERVICES.len()).map(|_| Vec::new()).collect();
    for (svc, span) in spans {
        by_service[svc % SERVICES.len()].push(span);
    }
    let resource_spans = by_service
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(i, spans)| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![crate::generate::kv_str("service.name", SERVICES[i])],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tailgate-loadtest".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}
