//! `demo`: a whole cluster in one process: a sink playing the backend, three gateways on
//! their own loopback addresses (as pods), and a router in front of them; load is driven
//! through the router, the last decisions are awaited, and the report is verified.
//!
//! ```text
//!  driver ─▶ router 127.0.0.1:4317 ─▶ gateways 127.0.0.2-4:4317 ─▶ sink 127.0.0.1:<any>
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_gateway::config::ExportConfig;
use tailgate_gateway::export::OtlpGrpcConfig;
use tailgate_gateway::metrics::GatewayStats;
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig, RouterError};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::drive::{drive, DriveConfig, Protocol};
use crate::report::{ComponentCounts, Expect, Report};
use crate::sink::{Sink, SENDER_HEADER};

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// Router OTLP/gRPC address.
    pub router: SocketAddr,
    /// Router OTLP/HTTP address, if any.
    pub router_http: Option<SocketAddr>,
    /// Gateway OTLP/gRPC addresses.
    pub gateways: Vec<SocketAddr>,
    /// Sink (backend) OTLP/gRPC address.
    pub sink: SocketAddr,
    /// Load.
    pub drive: DriveConfig,
    /// The gateways' decision wait (with `policies`, the file's own is used).
    pub decision_wait: Duration,
    /// The user's policy file (the Collector's `tail_sampling` syntax, or a whole
    /// Collector config with one such processor), decided with instead of the demo's.
    pub policies: Option<std::path::PathBuf>,
    /// Share of other traces the policy keeps, in percent.
    pub baseline_percentage: f64,
    /// Allowed distance of the measured baseline share from the configured one.
    pub baseline_tolerance: f64,
    /// Print progress to stderr.
    pub progress: bool,
}

/// The demo's policy file, in the Collector's `tail_sampling` syntax.
pub fn policy_yaml(decision_wait: Duration, slow_ms: u128, percentage: f64) -> String {
    format!(
        "decision_wait: {}ms\n\
         num_traces: 200000\n\
         policies:\n  \
           - name: errors\n    type: status_code\n    status_code: {{ status_codes: [ERROR] }}\n  \
           - name: slow\n    type: latency\n    latency: {{ threshold_ms: {slow_ms} }}\n  \
           - name: baseline\n    type: probabilistic\n    probabilistic: {{ sampling_percentage: {percentage} }}\n",
        decision_wait.as_millis()
    )
}

/// The gateways of the demo cluster, running in this process.
struct DemoGateways {
    /// Their bound OTLP/gRPC addresses.
    addrs: Vec<SocketAddr>,
    stats: Vec<Arc<GatewayStats>>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// The demo cluster's router, running in this process.
struct DemoRouter {
    router: Arc<Router>,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    task: JoinHandle<Result<(), RouterError>>,
}

/// Runs the demo and returns its report.
pub async fn run_demo(cfg: DemoConfig) -> anyhow::Result<Report> {
    let shutdown = CancellationToken::new();
    let (policy_file, expect) = demo_policies(&cfg)?;
    let decision_wait = PolicyPlan::compile(&policy_file).decision_wait;

    // Backend.
    let sink = Arc::new(Sink::default());
    let sink_listener = tailgate_core::receive::bind("sink OTLP/gRPC", cfg.sink).await?;
    let sink_addr = sink_listener.local_addr()?;
    let sink_task = tokio::spawn(sink.clone().serve(sink_listener, None, shutdown.clone()));

    let gateways = start_gateways(&cfg.gateways, sink_addr, &policy_file, &shutdown).await?;
    let router = start_router(&cfg, &gateways.addrs, &shutdown).await?;
    if cfg.progress {
        print_cluster(&cfg, decision_wait, router.addr, &gateways.addrs, sink_addr);
    }

    // Load.
    let drive_cfg = demo_drive_config(&cfg, &router)?;
    let progress = cfg
        .progress
        .then(|| spawn_progress(sink.clone(), gateways.stats.clone(), router.router.clone()));
    let result = drive(drive_cfg).await?;

    wait_until_settled(&router.router, &gateways.stats, decision_wait).await;
    if let Some(p) = progress {
        p.abort();
    }
    shutdown.cancel();
    for t in gateways.tasks {
        t.await??;
    }
    router.task.await??;
    sink_task.await??;

    let components = component_counts(&router.router, &gateways.stats);
    Ok(Report::build(
        &result,
        &sink,
        components,
        cfg.drive.rate,
        expect,
    ))
}

/// The policies the gateways decide with, and what the report's checks expect of them:
/// the user's file (`--policies`), or the demo's own.
fn demo_policies(cfg: &DemoConfig) -> anyhow::Result<(PolicyFile, Expect)> {
    if let Some(path) = &cfg.policies {
        let file = PolicyFile::load(path)?;
        if cfg.progress {
            // What the gateway prints of a file at start: options not applied, notes.
            let (notes, warnings) = tailgate_gateway::policy::messages(&file);
            for note in notes {
                eprintln!("note: {note}");
            }
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            eprintln!(
                "Policies from {} (the checks of the demo's own policies are skipped: what is \
                 kept is yours to judge; whole traces, no duplicates and nothing lost are \
                 checked).",
                path.display()
            );
        }
        return Ok((file, Expect::OwnPolicies(path.display().to_string())));
    }
    let policies = policy_yaml(
        cfg.decision_wait,
        cfg.drive.gen.slow_threshold.as_millis(),
        cfg.baseline_percentage,
    );
    let file = PolicyFile::parse(Path::new("<demo policies>"), &policies)?;
    if cfg.progress {
        eprintln!("Policies (Collector tail_sampling syntax):\n{policies}");
    }
    let expect = Expect::DemoPolicies {
        baseline_share: cfg.baseline_percentage / 100.0,
        tolerance: cfg.baseline_tolerance,
    };
    Ok((file, expect))
}

/// Starts one gateway per address, exporting to the sink under its own address.
async fn start_gateways(
    addrs: &[SocketAddr],
    sink_addr: SocketAddr,
    policy_file: &PolicyFile,
    shutdown: &CancellationToken,
) -> anyhow::Result<DemoGateways> {
    let mut gateway_addrs = Vec::new();
    let mut gateway_stats = Vec::new();
    let mut gateway_tasks = Vec::new();
    for addr in addrs {
        let receive = ReceiveConfig {
            grpc: Some(*addr),
            http: None,
            ..ReceiveConfig::default()
        };
        let listeners = Listeners::bind(&receive)
            .await
            .with_context(|| format!("gateway {addr} (pass other addresses with --gateways)"))?;
        let bound = listeners.grpc_addr().context("gateway address")?;
        let mut export = OtlpGrpcConfig::new(format!("http://{sink_addr}"));
        export
            .headers
            .insert(SENDER_HEADER.into(), bound.to_string());
        export.batch.timeout = Duration::from_millis(100);
        let config = GatewayConfig::new(receive, ExportConfig::otlp_grpc(export));
        let gateway = Gateway::start(&config, PolicyPlan::compile(policy_file))?;
        gateway_stats.push(gateway.stats().clone());
        gateway_tasks.push(tokio::spawn(gateway.serve(
            listeners,
            None,
            shutdown.clone(),
            Duration::from_secs(30),
        )));
        gateway_addrs.push(bound);
    }
    Ok(DemoGateways {
        addrs: gateway_addrs,
        stats: gateway_stats,
        tasks: gateway_tasks,
    })
}

/// Starts the router in front of the gateways (a static member list).
async fn start_router(
    cfg: &DemoConfig,
    gateway_addrs: &[SocketAddr],
    shutdown: &CancellationToken,
) -> anyhow::Result<DemoRouter> {
    let router_cfg = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some(cfg.router),
            http: cfg.router_http,
            ..ReceiveConfig::default()
        },
        members: MembersConfig {
            static_list: gateway_addrs.iter().map(ToString::to_string).collect(),
            dns: None,
        },
        forward: ForwardConfig::default(),
        admin: None,
        metrics: None,
    };
    let router_listeners = Listeners::bind(&router_cfg.receive)
        .await
        .context("router (pass another address with --router)")?;
    let router_addr = router_listeners.grpc_addr().context("router address")?;
    let router_http_addr = router_listeners.http_addr();
    let router = Router::new(router_cfg.forward.clone());
    let router_task = {
        let (router, shutdown) = (router.clone(), shutdown.clone());
        tokio::spawn(async move {
            tailgate_router::run(
                router,
                &router_cfg,
                router_listeners,
                None,
                Duration::from_secs(30),
                shutdown,
            )
            .await
        })
    };
    Ok(DemoRouter {
        router,
        addr: router_addr,
        http_addr: router_http_addr,
        task: router_task,
    })
}

/// Prints the cluster's layout and the load about to be driven.
fn print_cluster(
    cfg: &DemoConfig,
    decision_wait: Duration,
    router_addr: SocketAddr,
    gateway_addrs: &[SocketAddr],
    sink_addr: SocketAddr,
) {
    eprintln!(
        "Cluster: router {router_addr} → gateways {} → sink {sink_addr}",
        gateway_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    eprintln!(
        "Driving {:.0} spans/s for {:?}; traces are decided {:?} after their first span.",
        cfg.drive.rate, cfg.drive.duration, decision_wait
    );
}

/// The load settings aimed at the router's receiver for the configured protocol.
fn demo_drive_config(cfg: &DemoConfig, router: &DemoRouter) -> anyhow::Result<DriveConfig> {
    let mut drive_cfg = cfg.drive.clone();
    drive_cfg.target = match drive_cfg.protocol {
        Protocol::Grpc => router.addr.to_string(),
        Protocol::Http => router
            .http_addr
            .context("OTLP/HTTP load needs the router's HTTP receiver (--router-http)")?
            .to_string(),
    };
    Ok(drive_cfg)
}

/// Prints what the router, gateways and backend hold every 5 s until aborted.
fn spawn_progress(
    sink: Arc<Sink>,
    stats: Vec<Arc<GatewayStats>>,
    router: Arc<Router>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let buffered: u64 = stats.iter().map(|s| s.live_traces.get()).sum();
            eprintln!(
                "  {:>4.0}s  router received {} spans; gateways buffer {} traces; backend has {} spans",
                start.elapsed().as_secs_f64(),
                router.stats().received_spans.get(),
                buffered,
                sink.unique_spans()
            );
        }
    })
}

/// Waits (at most twice the decision wait plus 30 s) until nothing is queued or buffered.
async fn wait_until_settled(
    router: &Router,
    gateway_stats: &[Arc<GatewayStats>],
    decision_wait: Duration,
) {
    let deadline = Instant::now() + decision_wait * 2 + Duration::from_secs(30);
    loop {
        // Router first: spans leave its queues before they reach a gateway's counters.
        let queued = router.pending_spans();
        let unsettled: u64 = queued
            + gateway_stats
                .iter()
                .map(|s| s.in_flight_spans())
                .sum::<u64>();
        if unsettled == 0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("Gave up waiting: {unsettled} spans still buffered or unexported.");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the router and gateways counted, summed over the cluster.
fn component_counts(router: &Router, gateway_stats: &[Arc<GatewayStats>]) -> ComponentCounts {
    ComponentCounts {
        dropped_by_policy: gateway_stats.iter().map(|s| s.dropped_spans.get()).sum(),
        refusals: router.stats().refused_spans.get()
            + gateway_stats
                .iter()
                .map(|s| s.refused_spans.get())
                .sum::<u64>(),
        failed: router.stats().failed_spans.get()
            + gateway_stats
                .iter()
                .map(|s| s.export_failed_spans.get())
                .sum::<u64>(),
        exported: gateway_stats.iter().map(|s| s.exported_spans.get()).sum(),
    }
}
