//! `bench router`: the router as its own process in front of three counting sinks, driven
//! with 512-span requests; the router's CPU time per million spans comes from its own
//! accounting (`/proc/<pid>/stat`), so the load generator's and the sinks' work does not
//! count. Every span sent must be counted at the sinks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use prost::Message;
use serde::Serialize;
use tailgate_core::forward::{Compression, GrpcClient};
use tailgate_core::receive::{Accepted, Listeners, Refusal, SpanSink};
use tailgate_core::retry::RetryConfig;
use tailgate_core::wire::{RawCodec, Scan, TRACE_EXPORT_PATH};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::drive::build_request;
use crate::generate::{GenConfig, Generator};
use crate::replay::ReplayPool;

/// A sink that only counts the spans it receives (by scanning, not decoding).
#[derive(Debug, Default)]
pub struct CountingSink {
    spans: AtomicU64,
}

impl CountingSink {
    /// Spans received.
    pub fn spans(&self) -> u64 {
        self.spans.load(Ordering::Relaxed)
    }
}

impl SpanSink for CountingSink {
    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        let mut scan = Scan::default();
        scan.scan(&body)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        self.spans
            .fetch_add(scan.spans.len() as u64, Ordering::Relaxed);
        Ok(Accepted::default())
    }
}

/// Settings of a router benchmark.
#[derive(Debug, Clone)]
pub struct RouterBench {
    /// The `tailgate-router` binary.
    pub router_bin: PathBuf,
    /// How long to drive each variant.
    pub duration: Duration,
    /// Spans per request.
    pub spans_per_request: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// Client connections.
    pub connections: usize,
    /// Pin the router to this CPU (with `taskset`) and give it one worker thread.
    pub pin_cpu: Option<usize>,
    /// Compare plaintext with TLS on both hops (load generator → router → sinks, the sinks
    /// standing for gateways), uncompressed, instead of comparing compression.
    pub tls: bool,
    /// Run this `tailgate-loadtest` binary's reference relay ([`crate::relay`]) in the
    /// router's place, uncompressed.
    pub relay_bin: Option<PathBuf>,
    /// Offer at most this many spans per second, paced evenly (requests whose turn comes
    /// while all `concurrency` are out go as soon as one returns): the CPU per span at a
    /// sustainable rate rather than at saturation. `None`: as fast as answers come back.
    pub rate: Option<u64>,
}

/// One variant's result.
#[derive(Debug, Clone, Serialize)]
pub struct RouterBenchResult {
    /// `router`, or `relay` for the reference relay.
    pub server: String,
    /// `none` or `gzip` (both on the way in and out).
    pub compression: String,
    /// Whether both hops spoke TLS.
    pub tls: bool,
    /// Spans the router accepted.
    pub spans_sent: u64,
    /// Spans the sinks counted.
    pub spans_at_sinks: u64,
    /// Spans refused by the router.
    pub refused_spans: u64,
    /// Accepted spans per wall-clock second.
    pub spans_per_sec: f64,
    /// Router CPU seconds (user + system).
    pub router_cpu_seconds: f64,
    /// Router CPU seconds per million spans.
    pub cpu_seconds_per_million_spans: f64,
    /// Router CPU seconds while load was driven, over the driving time and the cores it
    /// may use: near 1 when the router is the bottleneck.
    pub server_core_utilisation: f64,
    /// Router peak resident set size.
    pub peak_rss_bytes: u64,
    /// Mean encoded bytes per span in the requests.
    pub bytes_per_span: f64,
    /// Every accepted span reached a sink.
    pub all_spans_counted: bool,
}

/// Runs both variants: no compression and gzip, or (with `tls`) plaintext and TLS.
pub async fn bench_router(cfg: &RouterBench) -> anyhow::Result<Vec<RouterBenchResult>> {
    leave_cpu(cfg.pin_cpu).await;
    let mut out = Vec::new();
    if cfg.relay_bin.is_some() {
        out.push(run_variant(cfg, Compression::None, None).await?);
    } else if cfg.tls {
        let pki = BenchPki::new()?;
        for tls in [None, Some(&pki)] {
            out.push(run_variant(cfg, Compression::None, tls).await?);
        }
    } else {
        for compression in [Compression::None, Compression::Gzip] {
            out.push(run_variant(cfg, compression, None).await?);
        }
    }
    Ok(out)
}

/// The certificates of the TLS variant: a CA, and one certificate for the router and the
/// sinks (their loopback addresses as IP names).
struct BenchPki {
    /// Where the files are; removed with them when the PKI is dropped.
    _dir: tailgate_core::test_util::ScratchDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl BenchPki {
    /// A client's TLS that trusts this PKI's CA.
    fn client_tls(&self) -> anyhow::Result<tailgate_core::tls::ClientTls> {
        Ok(tailgate_core::tls::ClientTlsConfig {
            ca_file: Some(self.ca.clone()),
            ..Default::default()
        }
        .build()?)
    }

    fn new() -> anyhow::Result<Self> {
        // A directory per PKI: two benches in one process (tests run in parallel) must
        // not rewrite each other's CA.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = tailgate_core::test_util::scratch_dir(&format!("bench-pki-{n}"))?;
        let pki = tailgate_core::test_util::TestPki::new(&dir, "bench-ca")?;
        let (cert, key) = pki.issue(
            "bench",
            &[
                "127.0.1.1",
                "127.0.1.2",
                "127.0.1.3",
                "127.0.1.4",
                "127.0.2.2",
                "localhost",
            ],
        )?;
        Ok(BenchPki {
            ca: pki.ca_file("bench-ca"),
            _dir: dir,
            cert,
            key,
        })
    }

    /// The receivers' `tls:` settings.
    fn server(&self) -> tailgate_core::tls::ServerTlsConfig {
        tailgate_core::tls::ServerTlsConfig {
            cert_file: Some(self.cert.clone()),
            key_file: Some(self.key.clone()),
            ..Default::default()
        }
    }
}

async fn run_variant(
    cfg: &RouterBench,
    compression: Compression,
    tls: Option<&BenchPki>,
) -> anyhow::Result<RouterBenchResult> {
    let stop = CancellationToken::new();
    // Three counting sinks on their own addresses, as gateway pods.
    let mut sinks = Vec::new();
    let mut addrs = Vec::new();
    for i in 0..3u8 {
        let addr = SocketAddr::from(([127, 0, 1, 2 + i], 0));
        let (sink, bound) = start_counting_sink(addr, tls, &stop).await?;
        addrs.push(bound);
        sinks.push(sink);
    }
    // The router process.
    let port = free_port().await?;
    let router_addr = SocketAddr::from(([127, 0, 1, 1], port));
    let comp = compression_name(compression);
    let config_path = write_router_config(router_addr, &addrs, comp, tls)?;
    let mut child = match &cfg.relay_bin {
        Some(relay) => spawn_relay(relay, cfg.pin_cpu, router_addr, &addrs)?,
        None => spawn_router(cfg, &config_path)?,
    };
    let pid = child.id().context("router pid")?;
    wait_for_port(router_addr, Duration::from_secs(10)).await?;

    let (bodies, bytes_per_span) = encode_router_requests(cfg.spans_per_request);
    let channels = connect_router_channels(router_addr, cfg.connections, tls).await?;
    let tally = Arc::new(SpanTally::default());
    let cpu_before = cpu_seconds(pid)?;
    let start = Instant::now();
    let end = start + cfg.duration;
    let load = RouterLoad {
        channels: &channels,
        bodies: &bodies,
        compression,
        concurrency: cfg.concurrency,
        spans_per_request: cfg.spans_per_request,
        pace: cfg
            .rate
            .map(|rate| Arc::new(Pace::new(start, cfg.spans_per_request, rate))),
        end,
    };
    send_router_requests(&load, &tally).await?;
    let wall = start.elapsed().as_secs_f64();
    let driving_cpu = cpu_seconds(pid)? - cpu_before;
    let cores = cores_used(cfg.pin_cpu);
    let sent = tally.sent.load(Ordering::Relaxed);
    // Let the router's queues drain into the sinks.
    wait_for_sinks(&sinks, sent).await;
    let cpu = cpu_seconds(pid)? - cpu_before;
    let peak_rss_bytes = peak_rss(pid)?;
    let at_sinks: u64 = sinks.iter().map(|s| s.spans()).sum();
    // SIGTERM: the router drains and exits.
    terminate_and_wait(pid, &mut child, Duration::from_secs(10)).await;
    stop.cancel();
    let _removed = std::fs::remove_file(&config_path);
    Ok(RouterBenchResult {
        server: if cfg.relay_bin.is_some() {
            "relay"
        } else {
            "router"
        }
        .into(),
        compression: comp.into(),
        tls: tls.is_some(),
        spans_sent: sent,
        spans_at_sinks: at_sinks,
        refused_spans: tally.refused.load(Ordering::Relaxed),
        spans_per_sec: sent as f64 / wall,
        router_cpu_seconds: cpu,
        cpu_seconds_per_million_spans: cpu / (sent.max(1) as f64 / 1e6),
        server_core_utilisation: driving_cpu / wall.max(1e-9) / cores,
        peak_rss_bytes,
        bytes_per_span,
        all_spans_counted: at_sinks == sent,
    })
}

/// The cores a benchmarked process may use: one when pinned with `taskset`, else all.
pub fn cores_used(pin_cpu: Option<usize>) -> f64 {
    match pin_cpu {
        Some(_) => 1.0,
        None => std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64),
    }
}

/// Spans sent and refused by the load tasks.
#[derive(Debug, Default)]
struct SpanTally {
    sent: AtomicU64,
    refused: AtomicU64,
}

/// What the router benchmark's load tasks send, and until when.
struct RouterLoad<'a> {
    channels: &'a [tonic::transport::Channel],
    bodies: &'a [Bytes],
    compression: Compression,
    concurrency: usize,
    spans_per_request: usize,
    pace: Option<Arc<Pace>>,
    end: Instant,
}

/// Even pacing of requests shared by the load tasks: the `n`th request is due `n`
/// intervals after the start.
#[derive(Debug)]
struct Pace {
    start: Instant,
    interval: Duration,
    next: AtomicU64,
}

impl Pace {
    fn new(start: Instant, spans_per_request: usize, spans_per_sec: u64) -> Self {
        let per_sec = spans_per_sec.max(1) as f64 / spans_per_request.max(1) as f64;
        Pace {
            start,
            interval: Duration::from_secs_f64(1.0 / per_sec),
            next: AtomicU64::new(0),
        }
    }

    /// Takes the next request's turn and returns when it is due.
    fn next_due(&self) -> Instant {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.start + self.interval.mul_f64(n as f64)
    }
}

/// Starts a counting sink on `addr` (OTLP/gRPC, over TLS with `tls`) until `stop`;
/// returns it and its address.
async fn start_counting_sink(
    addr: SocketAddr,
    tls: Option<&BenchPki>,
    stop: &CancellationToken,
) -> anyhow::Result<(Arc<CountingSink>, SocketAddr)> {
    let receive = tailgate_core::receive::ReceiveConfig {
        grpc: Some(addr),
        http: None,
        max_request_bytes: 64 << 20,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await?;
    let bound = listeners.grpc_addr().context("sink address")?;
    let sink = Arc::new(CountingSink::default());
    let limits = tailgate_core::receive::Limits {
        tls: match tls {
            Some(pki) => Some(tailgate_core::tls::TlsServer::load(&pki.server())?),
            None => None,
        },
        ..tailgate_core::receive::Limits::plaintext(&receive)
    };
    tokio::spawn(listeners.serve(sink.clone(), limits, stop.clone()));
    Ok((sink, bound))
}

/// The compression's name in the router's config.
fn compression_name(compression: Compression) -> &'static str {
    compression.content_encoding().unwrap_or("none")
}

/// Writes the router's config (the sinks as static members) to the temp dir; returns its path.
fn write_router_config(
    router_addr: SocketAddr,
    sinks: &[SocketAddr],
    comp: &str,
    tls: Option<&BenchPki>,
) -> anyhow::Result<PathBuf> {
    let config_path =
        std::env::temp_dir().join(format!("tailgate-bench-router-{}.yaml", std::process::id()));
    let members: Vec<String> = sinks.iter().map(|a| format!("\"{a}\"")).collect();
    let (receive_tls, forward_tls) = match tls {
        Some(pki) => (
            format!(
                ", tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
                pki.cert.display(),
                pki.key.display()
            ),
            format!(", tls: {{ ca_file: \"{}\" }}", pki.ca.display()),
        ),
        None => (String::new(), String::new()),
    };
    std::fs::write(
        &config_path,
        format!(
            "receive: {{ grpc: \"{router_addr}\", http: null{receive_tls} }}\nmembers: {{ static: [{}] }}\nforward: {{ compression: {comp}{forward_tls} }}\nadmin: null\nmetrics: null\n",
            members.join(", ")
        ),
    )?;
    Ok(config_path)
}

/// Starts the router process, pinned with `taskset` to one CPU and one thread if asked.
/// Starts `exe relay` on `listen`, forwarding to `sinks`, pinned as the router would be.
fn spawn_relay(
    exe: &Path,
    pin_cpu: Option<usize>,
    listen: SocketAddr,
    sinks: &[SocketAddr],
) -> anyhow::Result<tokio::process::Child> {
    let to: Vec<String> = sinks.iter().map(SocketAddr::to_string).collect();
    pinned(exe, pin_cpu)
        .arg("relay")
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--to")
        .arg(to.join(","))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} relay", exe.display()))
}

/// Moves every thread of this process off `pin_cpu`, which the benchmarked process is
/// pinned to: left free to run there, the generator took a share of that core and the
/// server's measured utilisation fell (64-span traces: 80–88% busy against 89–92% with
/// the bench on the other cores; docs/benchmarks.md, "Session 35"). The bench keeps the other
/// CPUs it was allowed (`Cpus_allowed_list`, so a `taskset` or cpuset around it holds).
/// Best effort: without `taskset`, or with no other CPU, nothing changes.
async fn leave_cpu(pin_cpu: Option<usize>) {
    let Some(cpu) = pin_cpu else { return };
    let allowed = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(cpu_list)
        })
        .unwrap_or_default();
    let others: Vec<String> = allowed
        .into_iter()
        .filter(|c| *c != cpu)
        .map(|c| c.to_string())
        .collect();
    if others.is_empty() {
        return;
    }
    let moved = tokio::process::Command::new("taskset")
        .args(["-a", "-p", "-c", &others.join(",")])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .await;
    if !moved.is_ok_and(|s| s.success()) {
        tracing::warn!(
            cpu,
            "Cannot move the bench off the benchmarked process's CPU; figures may read low."
        );
    }
}

/// The CPUs of a Linux CPU list (`0-3,6`); what does not parse is left out.
fn cpu_list(list: &str) -> Vec<usize> {
    list.trim()
        .split(',')
        .flat_map(|part| {
            let (from, to) = part.split_once('-').unwrap_or((part, part));
            match (from.trim().parse::<usize>(), to.trim().parse::<usize>()) {
                (Ok(from), Ok(to)) if from <= to && to - from < 4096 => (from..=to).collect(),
                _ => Vec::new(),
            }
        })
        .collect()
}

/// A command running `exe`, pinned to `pin_cpu` with `taskset` when one is given.
fn pinned(exe: &Path, pin_cpu: Option<usize>) -> tokio::process::Command {
    match pin_cpu {
        Some(cpu) => {
            let mut c = tokio::process::Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(exe);
            c
        }
        None => tokio::process::Command::new(exe),
    }
}

fn spawn_router(cfg: &RouterBench, config_path: &Path) -> anyhow::Result<tokio::process::Child> {
    let mut command = pinned(&cfg.router_bin, cfg.pin_cpu);
    if cfg.pin_cpu.is_some() {
        command.arg("--threads").arg("1");
    }
    command
        .arg("--config")
        .arg(config_path)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", cfg.router_bin.display()))
}

/// Encodes 32 requests of `spans_per_request` spans each; returns them and bytes per span.
fn encode_router_requests(spans_per_request: usize) -> (Vec<Bytes>, f64) {
    let mut gen = Generator::new(GenConfig {
        spans_per_trace: 8,
        seed: 42,
        ..GenConfig::default()
    });
    let mut bodies = Vec::new();
    let mut bytes = 0usize;
    for _ in 0..32 {
        let mut spans = Vec::new();
        while spans.len() < spans_per_request {
            let t = gen.next_trace(1_700_000_000_000_000_000);
            spans.extend(t.chunks.into_iter().flatten());
        }
        spans.truncate(spans_per_request);
        let body = Bytes::from(build_request(spans).encode_to_vec());
        bytes += body.len();
        bodies.push(body);
    }
    let bytes_per_span = bytes as f64 / (32 * spans_per_request) as f64;
    (bodies, bytes_per_span)
}

/// Opens `connections` (at least one) gRPC connections to the router, TLS ones trusting
/// the bench CA with `tls` (through hyper-rustls: tonic is built without TLS).
async fn connect_router_channels(
    router_addr: SocketAddr,
    connections: usize,
    tls: Option<&BenchPki>,
) -> anyhow::Result<Vec<tonic::transport::Channel>> {
    let mut channels = Vec::new();
    for _ in 0..connections.max(1) {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("{scheme}://{router_addr}"))?
                .initial_stream_window_size(Some(2 << 20))
                .initial_connection_window_size(Some(8 << 20))
                .tcp_nodelay(true);
        let ch = match tls {
            None => endpoint.connect().await?,
            Some(pki) => connect_tls(&endpoint, pki).await?,
        };
        channels.push(ch);
    }
    Ok(channels)
}

/// Connects `endpoint` (an `https://` one) over TLS, trusting the bench CA.
async fn connect_tls(
    endpoint: &tonic::transport::Endpoint,
    pki: &BenchPki,
) -> anyhow::Result<tonic::transport::Channel> {
    let client = pki.client_tls()?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*client.config).clone())
        .https_only()
        .enable_http2()
        .wrap_connector(http);
    Ok(endpoint.connect_with_connector(https).await?)
}

/// Sends the requests round robin from `concurrency` tasks until `end`, counting spans.
async fn send_router_requests(load: &RouterLoad<'_>, tally: &Arc<SpanTally>) -> anyhow::Result<()> {
    let end = load.end;
    let mut tasks = Vec::new();
    for w in 0..load.concurrency.max(1) {
        let mut grpc = tonic::client::Grpc::new(load.channels[w % load.channels.len()].clone());
        if load.compression == Compression::Gzip {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let (bodies, tally) = (load.bodies.to_vec(), tally.clone());
        let n = load.spans_per_request as u64;
        let pace = load.pace.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < end {
                if let Some(pace) = &pace {
                    let due = pace.next_due();
                    if due >= end {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                }
                if grpc.ready().await.is_err() {
                    break;
                }
                let req = tonic::Request::new(bodies[i % bodies.len()].clone());
                let path = http::uri::PathAndQuery::from_static(TRACE_EXPORT_PATH);
                match grpc.unary(req, path, RawCodec).await {
                    Ok(_) => {
                        tally.sent.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(_) => {
                        tally.refused.fetch_add(n, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// Waits (at most 30 s) until the sinks have counted `sent` spans.
async fn wait_for_sinks(sinks: &[Arc<CountingSink>], sent: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while sinks.iter().map(|s| s.spans()).sum::<u64>() < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends the process SIGTERM and waits at most `within` for it to exit.
async fn terminate_and_wait(pid: u32, child: &mut tokio::process::Child, within: Duration) {
    let _status = tokio::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .await;
    let _exited = tokio::time::timeout(within, child.wait()).await;
}

/// A port free on loopback (the kernel's choice), to bind other 127.x addresses on.
pub(crate) async fn free_port() -> anyhow::Result<u16> {
    let l = tokio::net::TcpListener::bind("127.0.1.1:0").await?;
    Ok(l.local_addr()?.port())
}

pub(crate) async fn wait_for_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > deadline {
            bail!("nothing listened on {addr} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// User + system CPU seconds of a process, all threads included, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after ')'.
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// Peak resident set size of a process (`VmHWM`).
pub fn peak_rss(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmHWM:")
}

/// A process's resident set size now, from `/proc`.
pub fn current_rss(pid: u32) -> anyhow::Result<u64> {
    status_kb(pid, "VmRSS:")
}

fn status_kb(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| field.to_string())?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .with_context(|| format!("{field} value"))?
        .parse()?;
    Ok(kb * 1024)
}

/// Clock ticks per second for `/proc` times: 100 on every Linux platform Tailgate targets
/// (x86_64 and aarch64 kernels fix USER_HZ at 100).
fn clock_ticks() -> f64 {
    100.0
}

/// The router binary next to this one, as `cargo build` lays them out.
pub fn sibling_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .map_or_else(|| PathBuf::from(name), |d| d.join(name))
}

/// Settings of a gateway benchmark.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// The `tailgate-gateway` binary.
    pub gateway_bin: PathBuf,
    /// How long to drive load.
    pub duration: Duration,
    /// The gateway's decision_wait.
    pub decision_wait: Duration,
    /// Spans per request.
    pub spans_per_request: usize,
    /// Requests in flight.
    pub concurrency: usize,
    /// The gateway's hard byte limit, if not the default.
    pub max_buffered_bytes: Option<u64>,
    /// Configure peers (the gateway alone on its ring), so that every span pays the
    /// ownership check.
    pub with_peers: bool,
    /// Pin the gateway to this CPU (with `taskset`): one shard, one worker thread.
    pub pin_cpu: Option<usize>,
    /// TLS in (load generator → gateway) and out (gateway → backend), with certificates
    /// made for the run.
    pub tls: bool,
    /// Mean spans per trace (each trace has 50% to 150% of it).
    pub spans_per_trace: u32,
    /// Saturation mode: replay pre-encoded requests with fresh trace ids
    /// ([`ReplayPool`]) from `connections` connections, so that the gateway, not the
    /// generator, is the bottleneck. Otherwise each request is generated as it is sent.
    pub saturate: bool,
    /// Client connections (the `concurrency` requests in flight are spread over them).
    pub connections: usize,
    /// Open loop (with `saturate`): offer this many spans per second whatever the gateway
    /// takes, as SDKs do, at most `concurrency` requests outstanding. A request that
    /// cannot be sent (too many outstanding), is refused, or is not answered within 2 s
    /// counts as refused. Without it, the load is a closed loop of `concurrency` requests.
    pub open_loop_rate: Option<f64>,
    /// Measure steady-state CPU per span over the driving time after this warm-up.
    pub warmup: Option<Duration>,
}

impl Default for GatewayBench {
    /// The `bench gateway` command's defaults.
    fn default() -> Self {
        GatewayBench {
            gateway_bin: sibling_binary("tailgate-gateway"),
            duration: Duration::from_secs(20),
            decision_wait: Duration::from_secs(10),
            spans_per_request: 512,
            concurrency: 4,
            max_buffered_bytes: None,
            with_peers: false,
            pin_cpu: None,
            tls: false,
            spans_per_trace: 8,
            saturate: false,
            connections: 1,
            open_loop_rate: None,
            warmup: None,
        }
    }
}

/// A gateway benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayBenchResult {
    /// Whether the gateway received and exported over TLS.
    pub tls: bool,
    /// Whether requests were replayed pre-encoded (saturation mode).
    pub saturate: bool,
    /// Mean spans per trace of the load.
    pub spans_per_trace: u32,
    /// Gateway CPU seconds while load was driven, over the driving time and the cores it
    /// may use: near 1 when the gateway is the bottleneck.
    pub server_core_utilisation: f64,
    /// The gateway's cores were less than 90% busy while driven: the generator (or the
    /// closed loop's round trips) limited the rate, so `spans_per_sec` is not the
    /// gateway's capacity.
    pub generator_bound: bool,
    /// Spans the gateway accepted.
    pub spans_sent: u64,
    /// Spans refused (backpressure).
    pub refused_spans: u64,
    /// Spans the backend counted.
    pub spans_at_backend: u64,
    /// Accepted spans per wall-clock second of driving.
    pub spans_per_sec: f64,
    /// Gateway CPU seconds from the first request until every trace was decided and exported.
    pub gateway_cpu_seconds: f64,
    /// Gateway CPU seconds per million spans.
    pub cpu_seconds_per_million_spans: f64,
    /// With a warm-up: gateway CPU seconds per million spans accepted between the end of
    /// the warm-up and the end of driving (steady state, no drain), and that window's
    /// length in seconds.
    pub steady_cpu_seconds_per_million_spans: Option<f64>,
    /// The steady-state window's length, seconds.
    pub steady_window_seconds: Option<f64>,
    /// Gateway peak resident set size.
    pub peak_rss_bytes: u64,
    /// Largest encoded span bytes buffered seen on /metrics.
    pub peak_buffered_bytes: u64,
    /// Peak RSS over peak buffered bytes.
    pub rss_to_buffered_ratio: f64,
    /// RSS of the gateway once started, before any load: its fixed base.
    pub base_rss_bytes: u64,
    /// (Peak RSS - base RSS) over peak buffered bytes: what the goal "RSS at most 1.3 times
    /// the buffered bytes plus a fixed base" measures.
    pub rss_above_base_to_buffered_ratio: f64,
    /// The gateway when it buffered the most: RSS and what its metrics said it held.
    pub at_peak_buffered: HeldSample,
    /// At that moment, (RSS - base RSS) over the bytes charged against the limits
    /// (`tailgate_gateway_held_bytes`): 1 when the charge is what the buffer costs.
    pub rss_above_base_to_held_ratio: f64,
    /// Every accepted span was decided (exported or dropped by policy).
    pub all_spans_settled: bool,
    /// The gateway's hard byte limit, when one was set.
    pub max_buffered_bytes: Option<u64>,
    /// Peak RSS over that limit.
    pub rss_to_limit_ratio: Option<f64>,
}

/// Runs the gateway as its own process with the default policy (errors, slow traces, 5%
/// of the rest), drives it with `spans_per_request`-span requests, then waits until every
/// trace is decided and exported.
pub async fn bench_gateway(cfg: &GatewayBench) -> anyhow::Result<GatewayBenchResult> {
    leave_cpu(cfg.pin_cpu).await;
    let stop = CancellationToken::new();
    let pki = if cfg.tls {
        Some(BenchPki::new()?)
    } else {
        None
    };
    let backend_bind = SocketAddr::from(([127, 0, 2, 2], 0));
    let (backend, backend_addr) = start_counting_sink(backend_bind, pki.as_ref(), &stop).await?;

    let port = free_port().await?;
    let admin_port = free_port().await?;
    let gateway_addr = SocketAddr::from(([127, 0, 1, 1], port));
    let admin_addr = SocketAddr::from(([127, 0, 1, 1], admin_port));
    let files = write_gateway_files(cfg, gateway_addr, admin_addr, backend_addr, pki.as_ref())?;
    let mut child = spawn_gateway(cfg, &files)?;
    let pid = child.id().context("gateway pid")?;
    wait_for_port(gateway_addr, Duration::from_secs(10)).await?;

    let clients = gateway_clients(gateway_addr, cfg.connections, pki.as_ref())?;
    // Each client connects at its first request: an empty one, before timing starts, so
    // that a connection or TLS failure stops the bench rather than counting as refusals.
    for client in &clients {
        client
            .send_once(Bytes::new())
            .await
            .with_context(|| format!("cannot send to the gateway at {gateway_addr}"))?;
    }
    let tally = Arc::new(SpanTally::default());
    let peak_buffered = Arc::new(std::sync::Mutex::new(HeldSample::default()));
    let source = if cfg.saturate {
        Source::Replay(Arc::new(ReplayPool::new(
            cfg.spans_per_request,
            cfg.spans_per_trace,
            43,
        )))
    } else {
        Source::Fresh(None)
    };
    // Let it finish starting (threads, listeners) before taking its base.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_rss_bytes = current_rss(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let start = Instant::now();
    let end = start + cfg.duration;
    // Distinct traces throughout: each request is generated fresh (outside the gateway),
    // or replayed with fresh trace ids.
    let (producer, source) = match source {
        Source::Fresh(_) => {
            let (producer, rx) =
                spawn_request_producer(cfg.spans_per_request, cfg.spans_per_trace, end);
            (Some(producer), Source::Fresh(Some(rx)))
        }
        replay => (None, replay),
    };
    let tasks = match (&source, cfg.open_loop_rate) {
        (Source::Replay(pool), Some(rate)) => {
            vec![spawn_open_loop(
                &clients,
                pool.clone(),
                rate,
                cfg,
                end,
                &tally,
            )]
        }
        _ => spawn_gateway_senders(&clients, &source, cfg, end, &tally),
    };
    let sampler = spawn_buffered_bytes_sampler(admin_addr, pid, peak_buffered.clone());
    // The steady-state window opens after the warm-up (if driving lasts that long).
    let mut steady_start = None;
    if let Some(warmup) = cfg.warmup.filter(|w| *w < cfg.duration) {
        tokio::time::sleep_until(start + warmup).await;
        steady_start = Some((
            Instant::now(),
            cpu_seconds(pid)?,
            tally.sent.load(Ordering::Relaxed),
        ));
    }
    if let Some(producer) = producer {
        producer.await?;
    }
    for t in tasks {
        t.await?;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_now = cpu_seconds(pid)?;
    let steady = steady_start.map(|(at, cpu, sent)| {
        let spans = tally.sent.load(Ordering::Relaxed).saturating_sub(sent);
        (
            (cpu_now - cpu) / (spans.max(1) as f64 / 1e6),
            at.elapsed().as_secs_f64(),
        )
    });
    let driving_cpu = cpu_now - cpu_before;
    let sent = tally.sent.load(Ordering::Relaxed);
    // Wait for every trace to be decided and exported.
    let within = cfg.decision_wait * 3 + Duration::from_secs(30);
    let settled = wait_until_settled(admin_addr, &backend, sent, within).await;
    sampler.abort();
    let cpu = cpu_seconds(pid)? - cpu_before;
    let peak_rss_bytes = peak_rss(pid)?;
    terminate_and_wait(pid, &mut child, Duration::from_secs(30)).await;
    stop.cancel();
    let _removed = (
        std::fs::remove_file(&files.config),
        std::fs::remove_file(&files.policies),
    );
    let cores = cores_used(cfg.pin_cpu);
    let utilisation = driving_cpu / wall.max(1e-9) / cores;
    let measured = GatewayMeasurements {
        sent,
        refused: tally.refused.load(Ordering::Relaxed),
        at_backend: backend.spans(),
        wall,
        cpu,
        peak_rss_bytes,
        peak: peak_buffered.lock().map(|p| *p).unwrap_or_default(),
        base_rss_bytes,
        settled,
    };
    Ok(GatewayBenchResult {
        tls: cfg.tls,
        saturate: cfg.saturate,
        spans_per_trace: cfg.spans_per_trace,
        server_core_utilisation: utilisation,
        generator_bound: utilisation < 0.9,
        steady_cpu_seconds_per_million_spans: steady.map(|s| s.0),
        steady_window_seconds: steady.map(|s| s.1),
        ..measured.into_result(cfg.max_buffered_bytes)
    })
}

/// The gateway benchmark's config and policy files.
struct GatewayFiles {
    config: PathBuf,
    policies: PathBuf,
}

/// What a gateway benchmark measured, before the ratios are worked out.
struct GatewayMeasurements {
    sent: u64,
    refused: u64,
    at_backend: u64,
    /// Seconds of driving.
    wall: f64,
    cpu: f64,
    peak_rss_bytes: u64,
    /// The sample with the most buffered bytes.
    peak: HeldSample,
    base_rss_bytes: u64,
    settled: bool,
}

impl GatewayMeasurements {
    /// The result, with rates and ratios (to the hard byte limit, when one was set).
    fn into_result(self, max_buffered_bytes: Option<u64>) -> GatewayBenchResult {
        let (sent, cpu) = (self.sent, self.cpu);
        let (peak_rss_bytes, peak_buffered_bytes) = (self.peak_rss_bytes, self.peak.buffered_bytes);
        let at_peak = self.peak;
        GatewayBenchResult {
            tls: false,
            saturate: false,
            spans_per_trace: 0,
            server_core_utilisation: 0.0,
            generator_bound: false,
            spans_sent: sent,
            refused_spans: self.refused,
            spans_at_backend: self.at_backend,
            spans_per_sec: sent as f64 / self.wall,
            gateway_cpu_seconds: cpu,
            cpu_seconds_per_million_spans: cpu / (sent.max(1) as f64 / 1e6),
            steady_cpu_seconds_per_million_spans: None,
            steady_window_seconds: None,
            peak_rss_bytes,
            peak_buffered_bytes,
            rss_to_buffered_ratio: peak_rss_bytes as f64 / peak_buffered_bytes.max(1) as f64,
            base_rss_bytes: self.base_rss_bytes,
            rss_above_base_to_buffered_ratio: peak_rss_bytes.saturating_sub(self.base_rss_bytes)
                as f64
                / peak_buffered_bytes.max(1) as f64,
            at_peak_buffered: at_peak,
            rss_above_base_to_held_ratio: at_peak.rss_bytes.saturating_sub(self.base_rss_bytes)
                as f64
                / at_peak.held_bytes.max(1) as f64,
            all_spans_settled: self.settled,
            max_buffered_bytes,
            rss_to_limit_ratio: max_buffered_bytes.map(|l| peak_rss_bytes as f64 / l.max(1) as f64),
        }
    }
}

/// Writes the gateway's config and the default policy file to the temp dir.
fn write_gateway_files(
    cfg: &GatewayBench,
    gateway_addr: SocketAddr,
    admin_addr: SocketAddr,
    backend_addr: SocketAddr,
    tls: Option<&BenchPki>,
) -> anyhow::Result<GatewayFiles> {
    let dir = std::env::temp_dir();
    let config_path = dir.join(format!(
        "tailgate-bench-gateway-{}.yaml",
        std::process::id()
    ));
    let policies_path = dir.join(format!(
        "tailgate-bench-policies-{}.yaml",
        std::process::id()
    ));
    let (scheme, receive_tls, export_tls) = match tls {
        Some(pki) => (
            "https",
            format!(
                ", tls: {{ cert_file: \"{}\", key_file: \"{}\" }}",
                pki.cert.display(),
                pki.key.display()
            ),
            format!(", tls: {{ ca_file: \"{}\" }}", pki.ca.display()),
        ),
        None => ("http", String::new(), String::new()),
    };
    std::fs::write(
        &config_path,
        format!(
            "receive: {{ grpc: \"{gateway_addr}\", http: null{receive_tls} }}\nexport: {{ otlp_grpc: {{ endpoint: \"{scheme}://{backend_addr}\"{export_tls} }} }}\nadmin: \"{admin_addr}\"\nmetrics: null\n{}{}",
            cfg.max_buffered_bytes
                .map(|b| format!("buffer: {{ max_buffered_bytes: {b} }}\n"))
                .unwrap_or_default(),
            if cfg.with_peers {
                format!("peers: {{ self: \"{gateway_addr}\", static: [\"{gateway_addr}\"] }}\n")
            } else {
                String::new()
            }
        ),
    )?;
    std::fs::write(
        &policies_path,
        crate::demo::policy_yaml(cfg.decision_wait, 500, 5.0)
            .replace("num_traces: 200000", "num_traces: 1000000"),
    )?;
    Ok(GatewayFiles {
        config: config_path,
        policies: policies_path,
    })
}

/// Starts the gateway process, pinned with `taskset` to one CPU if asked.
fn spawn_gateway(
    cfg: &GatewayBench,
    files: &GatewayFiles,
) -> anyhow::Result<tokio::process::Child> {
    // Shards and worker threads follow the CPUs the process may use.
    pinned(&cfg.gateway_bin, cfg.pin_cpu)
        .arg("--config")
        .arg(&files.config)
        .arg("--policies")
        .arg(&files.policies)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", cfg.gateway_bin.display()))
}

/// The receiving end of the producer's queue, shared by the senders.
type SharedBodies = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Bytes>>>;

/// Where the gateway benchmark's senders take their requests.
enum Source {
    /// From a producer generating each request fresh (its queue, once started).
    Fresh(Option<SharedBodies>),
    /// Replayed pre-encoded, with fresh trace ids.
    Replay(Arc<ReplayPool>),
}

/// Spawns a task queueing fresh `n`-span requests (traces of about `spans_per_trace`
/// spans) until `end`; returns it and the queue.
fn spawn_request_producer(
    n: usize,
    spans_per_trace: u32,
    end: Instant,
) -> (tokio::task::JoinHandle<()>, SharedBodies) {
    let mut gen = Generator::new(GenConfig {
        spans_per_trace,
        seed: 43,
        ..GenConfig::default()
    });
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let producer = tokio::spawn(async move {
        while Instant::now() < end {
            let mut spans = Vec::with_capacity(n);
            while spans.len() < n {
                let t = gen.next_trace(1_700_000_000_000_000_000);
                spans.extend(t.chunks.into_iter().flatten());
            }
            spans.truncate(n);
            if tx
                .send(Bytes::from(build_request(spans).encode_to_vec()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    (producer, rx)
}

/// Spawns `concurrency` tasks (spread over `clients`) sending requests from `source` to
/// the gateway until `end` or the source runs dry, counting spans.
fn spawn_gateway_senders(
    clients: &[GrpcClient],
    source: &Source,
    cfg: &GatewayBench,
    end: Instant,
    tally: &Arc<SpanTally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let n = cfg.spans_per_request;
    let mut tasks = Vec::new();
    for w in 0..cfg.concurrency.max(1) {
        let client = clients[w % clients.len()].clone();
        let tally = tally.clone();
        let (rx, pool) = match source {
            Source::Fresh(rx) => (rx.clone(), None),
            Source::Replay(pool) => (None, Some(pool.clone())),
        };
        tasks.push(tokio::spawn(async move {
            loop {
                let body = match (&rx, &pool) {
                    (Some(rx), _) => rx.lock().await.recv().await,
                    (None, Some(pool)) => (Instant::now() < end).then(|| pool.next_request()),
                    (None, None) => None,
                };
                let Some(body) = body else {
                    break;
                };
                match client.send_once(body).await {
                    Ok(_) => tally.sent.fetch_add(n as u64, Ordering::Relaxed),
                    Err(_) => tally.refused.fetch_add(n as u64, Ordering::Relaxed),
                };
            }
        }));
    }
    tasks
}

/// What the gateway held at one moment: its RSS and what its metrics say it buffers.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HeldSample {
    /// Resident set size, bytes.
    pub rss_bytes: u64,
    /// `tailgate_gateway_buffered_bytes`: encoded span bytes (with their requests' share
    /// and the attribute values recorded for policies, none with the bench's plan).
    pub buffered_bytes: u64,
    /// `tailgate_gateway_held_bytes`: what the byte limits are charged.
    pub held_bytes: u64,
    /// `tailgate_gateway_live_spans`.
    pub live_spans: u64,
    /// `tailgate_gateway_live_traces`.
    pub live_traces: u64,
}

/// How long an open-loop request may take before it counts as refused.
const OPEN_LOOP_TIMEOUT: Duration = Duration::from_secs(2);

/// One client per connection to the gateway at `addr` (over TLS with `pki`): core's own
/// gRPC client, which sends a request's bytes as they are, where tonic's codec copied
/// each body into its buffer (about 4% of the generator's CPU in a saturation run with
/// 64-span traces, docs/benchmarks.md "Session 42"). Clones of a client share its
/// connection, made at the first request. One attempt per request: what is refused is
/// counted refused.
fn gateway_clients(
    addr: SocketAddr,
    connections: usize,
    pki: Option<&BenchPki>,
) -> anyhow::Result<Vec<GrpcClient>> {
    let scheme = if pki.is_some() { "https" } else { "http" };
    let tls = pki.map(BenchPki::client_tls).transpose()?;
    (0..connections.max(1))
        .map(|_| {
            let client = GrpcClient::new(
                &format!("{scheme}://{addr}"),
                &[],
                Duration::from_secs(30),
                RetryConfig::default(),
            )?;
            Ok(match &tls {
                Some(tls) => client.with_tls(tls),
                None => client,
            })
        })
        .collect()
}

/// Spawns a task offering `rate` spans/s of replayed requests from `pool` until `end`, open
/// loop: each request on its own task, at most `cfg.concurrency` outstanding; what cannot be
/// sent, is refused, or times out counts as refused.
fn spawn_open_loop(
    clients: &[GrpcClient],
    pool: Arc<ReplayPool>,
    rate: f64,
    cfg: &GatewayBench,
    end: Instant,
    tally: &Arc<SpanTally>,
) -> tokio::task::JoinHandle<()> {
    let n = cfg.spans_per_request as u64;
    let outstanding = Arc::new(tokio::sync::Semaphore::new(cfg.concurrency.max(1)));
    let (clients, tally) = (clients.to_vec(), tally.clone());
    tokio::spawn(async move {
        let start = Instant::now();
        let mut issued = 0u64;
        let mut ticks = tokio::time::interval(Duration::from_millis(1));
        let mut inflight = tokio::task::JoinSet::new();
        while Instant::now() < end {
            ticks.tick().await;
            // Requests due by now at `rate`, less those already issued.
            let due = (start.elapsed().as_secs_f64() * rate / n as f64) as u64;
            while issued < due {
                issued += 1;
                let Ok(permit) = outstanding.clone().try_acquire_owned() else {
                    tally.refused.fetch_add(n, Ordering::Relaxed);
                    continue;
                };
                let client = clients[issued as usize % clients.len()].clone();
                let (body, tally) = (pool.next_request(), tally.clone());
                inflight.spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(OPEN_LOOP_TIMEOUT, client.send_once(body)).await {
                        Ok(Ok(_)) => tally.sent.fetch_add(n, Ordering::Relaxed),
                        _ => tally.refused.fetch_add(n, Ordering::Relaxed),
                    };
                });
            }
            while inflight.try_join_next().is_some() {}
        }
        while inflight.join_next().await.is_some() {}
    })
}

/// Spawns a task scraping the gateway every 250 ms and keeping, in `peak`, the sample with
/// the most buffered bytes.
fn spawn_buffered_bytes_sampler(
    admin_addr: SocketAddr,
    pid: u32,
    peak: Arc<std::sync::Mutex<HeldSample>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let text = scrape_text(admin_addr).await.unwrap_or_default();
            let sample = HeldSample {
                rss_bytes: current_rss(pid).unwrap_or(0),
                buffered_bytes: sample_of(&text, "tailgate_gateway_buffered_bytes").unwrap_or(0),
                held_bytes: sample_of(&text, "tailgate_gateway_held_bytes").unwrap_or(0),
                live_spans: sample_of(&text, "tailgate_gateway_live_spans").unwrap_or(0),
                live_traces: sample_of(&text, "tailgate_gateway_live_traces").unwrap_or(0),
            };
            if let Ok(mut p) = peak.lock() {
                if sample.buffered_bytes > p.buffered_bytes {
                    *p = sample;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Waits at most `within` for every sent span to be decided and exported; true if so.
async fn wait_until_settled(
    admin_addr: SocketAddr,
    backend: &CountingSink,
    sent: u64,
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let exported = scrape(admin_addr, "tailgate_gateway_exported_spans_total")
            .await
            .unwrap_or(0);
        let dropped = scrape(admin_addr, "tailgate_gateway_dropped_spans_total")
            .await
            .unwrap_or(0);
        if exported + dropped >= sent && backend.spans() >= exported {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Reads one unlabelled sample from a Prometheus endpoint.
pub(crate) async fn scrape(addr: SocketAddr, name: &str) -> Option<u64> {
    sample_of(&scrape_text(addr).await?, name)
}

/// A Prometheus endpoint's text.
async fn scrape_text(addr: SocketAddr) -> Option<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<Bytes>>();
    let uri: http::Uri = format!("http://{addr}/metrics").parse().ok()?;
    let resp = client.get(uri).await.ok()?;
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// One unlabelled sample of `text` (the Prometheus text format).
fn sample_of(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guarantees: Linux CPU lists read as the kernel writes them (ranges, singles, a
    /// trailing newline); what does not parse is left out rather than guessed.
    #[test]
    fn cpu_lists_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-1\n"), [0, 1]);
        assert_eq!(cpu_list("\t0,2-4,7"), [0, 2, 3, 4, 7]);
        assert_eq!(cpu_list("3"), [3]);
        assert_eq!(cpu_list("x,5-2,1"), [1]);
    }
}
