//! `tailgate-loadtest`: `demo`, `run` and `sink`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args as ClapArgs, Parser, Subcommand};
use tailgate_loadtest::demo::{run_demo, DemoConfig};
use tailgate_loadtest::drive::{drive_until, DriveConfig, Protocol};
use tailgate_loadtest::generate::GenConfig;
use tailgate_loadtest::sink::Sink;
use tokio_util::sync::CancellationToken;

/// Load generator, verifying sink and one-command demo cluster for Tailgate.
#[derive(Debug, Parser)]
#[command(version = tailgate_core::telemetry::VERSION, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a router, three gateways and a backend in this process, drive load through them
    /// and verify that every error and slow trace was kept whole and nothing was lost.
    /// Exits 1 when a check fails.
    Demo(DemoArgs),
    /// Send synthetic traces to an OTLP endpoint (a router, a gateway or a Collector).
    /// Ctrl-C or SIGTERM stops it early (no new spans; the requests in flight are waited
    /// for) with its summary; a second signal exits at once.
    Run(RunArgs),
    /// Receive OTLP like a backend and report what arrived (complete, split, duplicate).
    Sink(SinkArgs),
    /// Start a router and gateways as processes (DNS discovery on loopback) and change the
    /// cluster under load: scale up, scale down with SIGTERM, rolling restart, kill -9,
    /// backend outage, policy reload. Prints a table of verified scenarios; exits 1 when a
    /// check fails. See docs/resilience.md.
    Chaos(ChaosArgs),
    /// The bare HTTP/2 relay that `bench router --relay` measures the router against: the
    /// router's scan and split by trace id, none of its layers. A benchmark floor, not for
    /// production (no retries, TLS or queues).
    Relay(RelayArgs),
    /// Benchmark a component as its own process (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The router in front of three counting sinks, with and without gzip: CPU seconds per
    /// million spans (from the router's own accounting), spans/s, peak RSS, refused spans.
    Router(RouterBenchArgs),
    /// The gateway with the default policy (errors, slow, 5%): CPU seconds per million
    /// spans from its own accounting, spans/s, peak RSS and its ratio to buffered bytes.
    Gateway(GatewayBenchArgs),
}

#[derive(Debug, ClapArgs)]
struct ChaosArgs {
    /// Scenarios to run, in order (default: all six).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<tailgate_loadtest::chaos::Scenario>,
    /// Offered load in spans per second.
    #[arg(long, default_value_t = 10000.0)]
    rate: f64,
    /// How long load is driven in each scenario; the change starts a quarter in.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    phase: Duration,
    /// The gateways' decision_wait.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    decision_wait: Duration,
    /// How long the backend is down in the outage scenario.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    outage: Duration,
    /// Turn the gateways' redistribution off (to see what it buys).
    #[arg(long)]
    no_redistribute: bool,
    /// Port every gateway listens on (each on its own 127.0.N.x address).
    #[arg(long, default_value_t = 4317)]
    port: u16,
    /// N in the gateways' 127.0.N.x addresses.
    #[arg(long, default_value_t = 7)]
    subnet: u8,
    /// DNS interval of the router and the gateways.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    dns_interval: Duration,
    /// Share of other traces kept, in percent.
    #[arg(long, default_value_t = 5.0)]
    baseline_percentage: f64,
    /// The tailgate-gateway binary (default: next to this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// The tailgate-router binary (default: next to this one).
    #[arg(long)]
    router_bin: Option<PathBuf>,
    /// Where configs and the processes' logs go (default: a new folder under the temp dir).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct GatewayBenchArgs {
    /// The tailgate-gateway binary (default: next to this one).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// How long to drive load.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The gateway's decision_wait.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    decision_wait: Duration,
    /// Spans per request.
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The gateway's `buffer.max_buffered_bytes` (hard limit); set it well under what the
    /// offered load would buffer to measure memory under overload.
    #[arg(long, value_name = "BYTES")]
    max_buffered_bytes: Option<u64>,
    /// Give the gateway a peer list (itself only): every span goes through the ownership
    /// check, none is forwarded. A against B for what peers cost on the hot path.
    #[arg(long)]
    with_peers: bool,
    /// TLS in (load generator → gateway) and out (gateway → backend), with certificates
    /// made for the run: run it with and without, alternating, for what TLS costs.
    #[arg(long)]
    tls: bool,
    /// Pin the gateway to this CPU with taskset: it then runs one shard and one worker
    /// thread, and the bench moves itself (generator, sink) to the other cores (steadier
    /// figures on a small shared machine, and CPU per span of one core).
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// Mean spans per trace of the load (each trace has 50% to 150% of it): small traces
    /// measure what the gateway spends per trace.
    #[arg(long, default_value_t = 8)]
    spans_per_trace: u32,
    /// Saturation mode: replay pre-encoded requests with fresh trace ids, so that the
    /// gateway and not the generator is the bottleneck; measures capacity. The result's
    /// `server_core_utilisation` says how busy the gateway was, and `generator_bound` when
    /// it was not the bottleneck. Use with --pin-cpu, --connections 4, --concurrency 16.
    #[arg(long)]
    saturate: bool,
    /// Client connections (the requests in flight are spread over them).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// With --saturate: offer this many spans per second open loop (as SDKs do), at most
    /// --concurrency requests outstanding; what cannot be sent, is refused or is not
    /// answered within 2 s counts as refused. Measures refusals under overload.
    #[arg(long, value_name = "SPANS_PER_SECOND", requires = "saturate")]
    open_loop_rate: Option<f64>,
    /// Also measure CPU per span in steady state: over the driving time after this warm-up
    /// (`steady_cpu_seconds_per_million_spans`). Make it longer than --decision-wait, so
    /// that traces are being decided and memory reused rather than first touched; with
    /// --open-loop-rate, the buffer then holds a constant decision_wait of load.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// Write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct RouterBenchArgs {
    /// The tailgate-router binary (default: next to this one; build it with
    /// `cargo build --release -p tailgate-router`).
    #[arg(long)]
    router_bin: Option<PathBuf>,
    /// How long to drive each variant.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Spans per request.
    #[arg(long, default_value_t = 512)]
    spans_per_request: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Client connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Pin the router (or relay) to this CPU with taskset and run it with one worker
    /// thread, as the reference figures in the design notes were taken; the bench moves
    /// itself to the other cores.
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// Compare plaintext with TLS on both hops (generator → router → sinks), with
    /// certificates made for the run, instead of no compression with gzip.
    #[arg(long)]
    tls: bool,
    /// Benchmark the reference relay (`tailgate-loadtest relay`: bare HTTP/2, the router's
    /// scan and split) in the router's place, uncompressed only: run it alternating with
    /// the router for the router's cost over that floor.
    #[arg(long, conflicts_with = "tls")]
    relay: bool,
    /// Offer at most this many spans per second, evenly paced, for the CPU per span at a
    /// sustainable rate (compare router and relay at one rate both can carry). Default:
    /// as fast as the server answers (saturation).
    #[arg(long, value_name = "SPANS_PER_SEC")]
    rate: Option<u64>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct RelayArgs {
    /// Address to receive OTLP/gRPC (HTTP/2 without TLS) on.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The sinks' addresses (OTLP/gRPC receivers), comma-separated: the ring's members.
    #[arg(long, value_delimiter = ',', required = true)]
    to: Vec<std::net::SocketAddr>,
}

#[derive(Debug, ClapArgs)]
struct LoadArgs {
    /// Offered load in spans per second (open loop).
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// How long new traces are started, e.g. 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Mean spans per trace (each trace has 50% to 150% of it).
    #[arg(long, default_value_t = 10)]
    spans_per_trace: u32,
    /// Share of traces with an error span.
    #[arg(long, default_value_t = 0.05)]
    error_share: f64,
    /// Share of traces longer than 500 ms.
    #[arg(long, default_value_t = 0.05)]
    slow_share: f64,
    /// Extra attributes per span.
    #[arg(long, default_value_t = 10)]
    attrs_per_span: u32,
    /// Most spans in one request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    max_in_flight: usize,
    /// Seed for trace ids and shapes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Protocol to send with.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
}

#[derive(Debug, ClapArgs)]
struct DemoArgs {
    #[command(flatten)]
    load: LoadArgs,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Router OTLP/gRPC address.
    #[arg(long, default_value = "127.0.0.1:4317")]
    router: SocketAddr,
    /// Router OTLP/HTTP address (send your own traces here too).
    #[arg(long, default_value = "127.0.0.1:4318")]
    router_http: SocketAddr,
    /// Gateway addresses, one loopback address each, as pods.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.2:4317,127.0.0.3:4317,127.0.0.4:4317"
    )]
    gateways: Vec<SocketAddr>,
    /// Backend (sink) address; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    sink: SocketAddr,
    /// The gateways' decision_wait (not with --policies: the file's own is used).
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    decision_wait: Duration,
    /// Percentage of other traces the baseline policy keeps (not with --policies).
    #[arg(long, default_value_t = 5.0)]
    baseline_percentage: f64,
    /// Decide with this policy file instead of the demo's own (errors, slow, a baseline
    /// share): the Collector's tail_sampling syntax, or a whole Collector config with one
    /// tail_sampling processor, as `tailgate-gateway --policies` takes. The report then
    /// checks what holds for any policy (no incomplete kept trace, no duplicate span,
    /// nothing unaccounted) and shows, unchecked, how many error, slow and other traces
    /// were kept. The load is the demo's (errors, slow traces; see --error-share and
    /// --slow-share), with the attributes it generates.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["decision_wait", "baseline_percentage"])]
    policies: Option<PathBuf>,
}

#[derive(Debug, ClapArgs)]
struct RunArgs {
    /// Target OTLP endpoint, host:port (gRPC 4317 or HTTP 4318 by convention).
    #[arg(long, default_value = "127.0.0.1:4317")]
    target: String,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, ClapArgs)]
struct SinkArgs {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:14317")]
    grpc: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:14318")]
    http: SocketAddr,
    /// Stop after this long (default: until Ctrl-C or SIGTERM, which also stop it sooner).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Write the final summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Serve a control endpoint here for harnesses (`GET /state`, `GET /spans`,
    /// `POST /reset`, `POST /outage/on|off`); `chaos` runs its sink this way.
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Print nothing until the end (no summary every 5 s).
    #[arg(long)]
    quiet: bool,
}

impl LoadArgs {
    fn drive(&self, target: String) -> DriveConfig {
        DriveConfig {
            target,
            protocol: self.protocol,
            rate: self.rate,
            duration: self.duration,
            batch: self.batch,
            max_in_flight: self.max_in_flight,
            retry_for: Duration::from_secs(15),
            gen: GenConfig {
                spans_per_trace: self.spans_per_trace,
                error_share: self.error_share,
                slow_share: self.slow_share,
                attrs_per_span: self.attrs_per_span,
                seed: self.seed,
                ..GenConfig::default()
            },
        }
    }
}

fn main() -> ExitCode {
    tailgate_core::telemetry::init_logging("warn");
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a rendered report and, with `path`, writes it as JSON there.
fn emit(
    rendered: &str,
    report: &impl serde::Serialize,
    path: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    write!(out, "{rendered}")?;
    if let Some(path) = path {
        std::fs::write(&path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "Report written to {}", path.display())?;
    }
    Ok(())
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Demo(a) => run_demo_command(a).await,
        Command::Chaos(a) => run_chaos_command(a).await,
        Command::Run(a) => run_load_command(a).await,
        Command::Bench {
            what: BenchCommand::Router(a),
        } => run_router_bench(a).await,
        Command::Bench {
            what: BenchCommand::Gateway(a),
        } => run_gateway_bench(a).await,
        Command::Sink(a) => run_sink_command(a).await,
        Command::Relay(a) => tailgate_loadtest::relay::run_relay(a.listen, &a.to)
            .await
            .map(|()| true),
    }
}

/// `demo`: runs the in-process cluster and prints (and writes) its report.
async fn run_demo_command(a: DemoArgs) -> anyhow::Result<bool> {
    let cfg = DemoConfig {
        router: a.router,
        router_http: Some(a.router_http),
        gateways: a.gateways.clone(),
        sink: a.sink,
        drive: a.load.drive(String::new()),
        decision_wait: a.decision_wait,
        policies: a.policies,
        baseline_percentage: a.baseline_percentage,
        baseline_tolerance: 0.01,
        progress: true,
    };
    let report = run_demo(cfg).await?;
    emit(&report.render(), &report, a.report)?;
    Ok(report.passed)
}

/// `chaos`: runs the scenarios on a cluster of processes and prints (and writes) the report.
async fn run_chaos_command(a: ChaosArgs) -> anyhow::Result<bool> {
    let cfg = tailgate_loadtest::chaos::ChaosConfig {
        loadtest_bin: std::env::current_exe().context("finding this binary")?,
        gateway_bin: a
            .gateway_bin
            .unwrap_or_else(|| tailgate_loadtest::bench::sibling_binary("tailgate-gateway")),
        router_bin: a
            .router_bin
            .unwrap_or_else(|| tailgate_loadtest::bench::sibling_binary("tailgate-router")),
        scenarios: if a.scenarios.is_empty() {
            tailgate_loadtest::chaos::Scenario::ALL.to_vec()
        } else {
            a.scenarios
        },
        rate: a.rate,
        phase: a.phase,
        decision_wait: a.decision_wait,
        outage: a.outage,
        redistribute: !a.no_redistribute,
        port: a.port,
        subnet: a.subnet,
        dns_interval: a.dns_interval,
        baseline_percentage: a.baseline_percentage,
        workdir: a.workdir.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("tailgate-chaos-{}", std::process::id()))
        }),
        progress: true,
    };
    let report = tailgate_loadtest::chaos::run_chaos(cfg).await?;
    emit(&report.render(), &report, a.report)?;
    Ok(report.passed)
}

/// `run`: drives load at the target and prints one line of what happened.
async fn run_load_command(a: RunArgs) -> anyhow::Result<bool> {
    // A signal stops the load early with its summary (a trial: a run refused for long
    // went on well past --duration, and Ctrl-C printed nothing); a second one exits.
    let mut signals = Signals::take()?;
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            signals.recv().await;
            eprintln!("Stopping: no new spans; waiting for the requests in flight (a second signal exits at once).");
            stop.cancel();
            signals.recv().await;
            std::process::exit(130);
        })
    };
    let cfg = a.load.drive(a.target.clone());
    eprintln!(
        "Sending {:.0} spans/s to {} for {:?} (Ctrl-C or SIGTERM stops it early).",
        cfg.rate, a.target, cfg.duration
    );
    let r = drive_until(cfg, stop.clone()).await?;
    stopper.abort();
    let mut out = std::io::stdout().lock();
    if stop.is_cancelled() {
        writeln!(out, "stopped early by a signal")?;
    }
    writeln!(
        out,
        "sent {} spans in {} traces to {} over {:.1}s: {} accepted ({:.0}/s), {} refused, {} rejected, {} retries",
        r.spans_sent,
        r.traces.len(),
        a.target,
        r.elapsed.as_secs_f64(),
        r.spans_accepted,
        r.spans_accepted as f64 / r.elapsed.as_secs_f64().max(1e-9),
        r.spans_refused,
        r.spans_rejected,
        r.retries
    )?;
    if let Some(e) = &r.last_error {
        writeln!(out, "last error: {e}")?;
    }
    Ok(r.spans_refused == 0 && r.spans_rejected == 0)
}

/// `bench router`: benchmarks both variants and prints a table (and writes JSON).
async fn run_router_bench(a: RouterBenchArgs) -> anyhow::Result<bool> {
    let cfg = tailgate_loadtest::bench::RouterBench {
        router_bin: a
            .router_bin
            .unwrap_or_else(|| tailgate_loadtest::bench::sibling_binary("tailgate-router")),
        duration: a.duration,
        spans_per_request: a.spans_per_request,
        concurrency: a.concurrency,
        connections: a.connections,
        pin_cpu: a.pin_cpu,
        tls: a.tls,
        relay_bin: match a.relay {
            true => Some(std::env::current_exe().context("this binary's path")?),
            false => None,
        },
        rate: a.rate,
    };
    let results = tailgate_loadtest::bench::bench_router(&cfg).await?;
    print_router_bench_table(&results)?;
    if let Some(path) = a.report {
        std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    }
    Ok(results.iter().all(|r| r.all_spans_counted))
}

/// Prints the router benchmark's results, one row per variant.
fn print_router_bench_table(
    results: &[tailgate_loadtest::bench::RouterBenchResult],
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<7} {:<12} {:>5} {:>12} {:>12} {:>6} {:>14} {:>12} {:>10} {:>8}",
        "server",
        "compression",
        "tls",
        "spans/s",
        "CPU-s/Mspan",
        "busy",
        "peak RSS MiB",
        "B/span",
        "refused",
        "counted"
    )?;
    for r in results {
        writeln!(
            out,
            "{:<7} {:<12} {:>5} {:>12.0} {:>12.3} {:>5.0}% {:>14.1} {:>12.0} {:>10} {:>8}",
            r.server,
            r.compression,
            r.tls,
            r.spans_per_sec,
            r.cpu_seconds_per_million_spans,
            r.server_core_utilisation * 100.0,
            r.peak_rss_bytes as f64 / (1 << 20) as f64,
            r.bytes_per_span,
            r.refused_spans,
            r.all_spans_counted
        )?;
    }
    Ok(())
}

/// `bench gateway`: benchmarks the gateway and prints (and writes) the result as JSON.
async fn run_gateway_bench(a: GatewayBenchArgs) -> anyhow::Result<bool> {
    let cfg = tailgate_loadtest::bench::GatewayBench {
        gateway_bin: a
            .gateway_bin
            .unwrap_or_else(|| tailgate_loadtest::bench::sibling_binary("tailgate-gateway")),
        duration: a.duration,
        decision_wait: a.decision_wait,
        spans_per_request: a.spans_per_request,
        concurrency: a.concurrency,
        max_buffered_bytes: a.max_buffered_bytes,
        with_peers: a.with_peers,
        pin_cpu: a.pin_cpu,
        tls: a.tls,
        spans_per_trace: a.spans_per_trace,
        saturate: a.saturate,
        connections: a.connections,
        open_loop_rate: a.open_loop_rate,
        warmup: a.warmup,
    };
    let r = tailgate_loadtest::bench::bench_gateway(&cfg).await?;
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&r)?
    )?;
    if let Some(path) = a.report {
        std::fs::write(&path, serde_json::to_string_pretty(&r)?)?;
    }
    Ok(r.all_spans_settled)
}

/// `sink`: receives OTLP until the duration ends, Ctrl-C or SIGTERM, then prints the summary.
async fn run_sink_command(a: SinkArgs) -> anyhow::Result<bool> {
    // Taken before it listens: a signal sent as soon as it does (a harness) would
    // otherwise end the process before its summary.
    let signals = Signals::take()?;
    let sink = Arc::new(Sink::default());
    let grpc = tailgate_core::receive::bind("sink OTLP/gRPC", a.grpc).await?;
    let http = tailgate_core::receive::bind("sink OTLP/HTTP", a.http).await?;
    eprintln!("Sink listening: OTLP/gRPC {}, OTLP/HTTP {}", a.grpc, a.http);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(sink.clone().serve(grpc, Some(http), shutdown.clone()));
    if let Some(addr) = a.control {
        let control = tailgate_core::receive::bind("sink control", addr).await?;
        tokio::spawn(sink.clone().serve_control(control, shutdown.clone()));
    }
    wait_printing_summaries(&sink, a.duration, a.quiet, signals).await?;
    shutdown.cancel();
    task.await??;
    let summary = sink.summary();
    writeln!(
        std::io::stdout().lock(),
        "{}",
        serde_json::to_string_pretty(&summary)?
    )?;
    if let Some(path) = a.report {
        std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
    }
    Ok(summary.duplicate_spans == 0 && summary.incomplete_traces == 0 && summary.split_traces == 0)
}

/// SIGINT (Ctrl-C) and SIGTERM, taken over from their default of ending the process.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn take() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt()).context("cannot wait for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("cannot wait for SIGTERM")?,
        })
    }

    /// Until either comes.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Waits for `duration`, or Ctrl-C or SIGTERM (harnesses and `kill` stop it that way, and
/// want the summary), printing the sink's summary every 5 s unless `quiet`.
async fn wait_printing_summaries(
    sink: &Sink,
    duration: Option<Duration>,
    quiet: bool,
    mut signals: Signals,
) -> anyhow::Result<()> {
    // A signal stops it early with a duration too: the handlers replaced the default.
    let stop = async {
        match duration {
            Some(d) => tokio::select! {
                () = tokio::time::sleep(d) => {}
                () = signals.recv() => {}
            },
            None => signals.recv().await,
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(Duration::from_secs(5)), if !quiet => {
                eprintln!("{}", serde_json::to_string(&sink.summary())?);
            }
        }
    }
    Ok(())
}
