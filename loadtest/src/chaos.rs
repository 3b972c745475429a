//! `chaos`: the cluster changes while it carries load, and every change is verified.
//!
//! It starts the real binaries as separate processes, each gateway on its own 127.0.0.x
//! address (as pods), a router in front of them that finds them through a DNS server on
//! loopback whose records this harness changes (as Kubernetes changes a headless Service's
//! endpoints), and a verifying sink as the backend (`tailgate-loadtest sink`, its own
//! process too, read and steered through its control endpoint). Then it runs scenarios one after the
//! other; each drives steady load through the router while its change happens, waits for
//! the last decisions, and builds its own verified report from what was sent and what
//! arrived.
//!
//! ```text
//!  driver ─▶ router ─(DNS: gateways.chaos.tailgate.test)─▶ gateways 127.0.0.x ─▶ sink
//!                                 ▲ records changed by the scenarios ▲ SIGTERM / kill -9
//! ```
//!
//! Accounting does not rely on the processes' counters (a killed process takes them with
//! it): the policy is "every error, every slow trace, a share of the rest by trace-id
//! hash", so the harness knows which traces must arrive (it evaluates the same
//! probabilistic policy on each trace id) and counts every span that does not.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use bytes::Bytes;
use serde::Serialize;
use tailgate_core::test_util::DnsZone;
use tailgate_gateway::buffer::{TraceSummary, TraceView};
use tailgate_gateway::{PolicyFile, PolicyPlan};
use tokio::process::{Child, Command};
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::bench::{free_port, scrape, wait_for_port};
use crate::drive::{drive, DriveConfig, DriveResult, Protocol};
use crate::generate::{GenConfig, TraceKind};
use crate::report::{ComponentCounts, Report};
use crate::sink::{Sink, SinkDump, SENDER_HEADER};

/// The DNS name the gateways are published under.
pub const DNS_NAME: &str = "gateways.chaos.tailgate.test.";

/// One change to the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Scale the gateways from 3 to 5.
    ScaleUp,
    /// Scale from 5 to 2: three gateways leave DNS and get SIGTERM at once.
    ScaleDown,
    /// Replace every gateway, one at a time: a new one joins, then the old one leaves.
    RollingRestart,
    /// `kill -9` of one gateway (its DNS record goes a second later, as an endpoint does).
    Kill,
    /// The backend refuses everything for `--outage`.
    Outage,
    /// The policy file is rewritten under load and every gateway reloads it.
    Reload,
}

impl Scenario {
    /// Every scenario, in the order the full run takes them.
    pub const ALL: [Scenario; 6] = [
        Scenario::ScaleUp,
        Scenario::ScaleDown,
        Scenario::RollingRestart,
        Scenario::Kill,
        Scenario::Outage,
        Scenario::Reload,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::ScaleUp => "scale 3 → 5",
            Scenario::ScaleDown => "scale 5 → 2 (SIGTERM)",
            Scenario::RollingRestart => "rolling restart",
            Scenario::Kill => "kill -9 one gateway",
            Scenario::Outage => "backend outage",
            Scenario::Reload => "policy reload",
        }
    }

    /// Gateways the scenario starts from.
    fn gateways_before(self) -> usize {
        match self {
            Scenario::ScaleUp => 3,
            Scenario::ScaleDown => 5,
            Scenario::RollingRestart | Scenario::Kill => 3,
            Scenario::Outage | Scenario::Reload => 2,
        }
    }
}

/// Chaos settings.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    /// `tailgate-loadtest` binary, run as the sink (`sink --control`).
    pub loadtest_bin: PathBuf,
    /// `tailgate-gateway` binary.
    pub gateway_bin: PathBuf,
    /// `tailgate-router` binary.
    pub router_bin: PathBuf,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Offered spans per second.
    pub rate: f64,
    /// How long load is driven in each scenario (the change starts a quarter in).
    pub phase: Duration,
    /// The gateways' decision wait.
    pub decision_wait: Duration,
    /// How long the backend stays down in the outage scenario.
    pub outage: Duration,
    /// Turn the gateways' redistribution off, to see what it buys.
    pub redistribute: bool,
    /// Port of every gateway (each on its own address).
    pub port: u16,
    /// Third octet of the gateways' addresses (127.0.N.x), so runs can live side by side.
    pub subnet: u8,
    /// DNS interval of router and gateways.
    pub dns_interval: Duration,
    /// Share of other traces kept, in percent.
    pub baseline_percentage: f64,
    /// Where configs and process logs go.
    pub workdir: PathBuf,
    /// Print progress to stderr.
    pub progress: bool,
}

/// The outcome of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Which.
    pub scenario: Scenario,
    /// Its name in the table.
    pub name: String,
    /// Sent spans neither at the backend nor dropped by policy nor refused to the sender.
    pub unaccounted_spans: i64,
    /// Kept traces missing spans or sent by more than one gateway.
    pub incomplete_kept_traces: u64,
    /// Kept traces.
    pub kept_traces: u64,
    /// Error traces at the backend, of those sent.
    pub error_traces_kept: u64,
    /// Error traces sent.
    pub error_traces_sent: u64,
    /// Spans at the backend more than once.
    pub duplicate_spans: u64,
    /// For `kill`: spans the killed gateway held when it died (scraped just before).
    pub held_by_killed_gateway: Option<u64>,
    /// What happened, in words.
    pub notes: Vec<String>,
    /// The whole verified report.
    pub report: Report,
    /// The scenario's checks.
    pub checks: Vec<crate::report::Check>,
    /// All its checks passed.
    pub passed: bool,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// Whether gateways redistributed.
    pub redistribute: bool,
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
    /// All passed.
    pub passed: bool,
}

impl ChaosReport {
    /// The table for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{:<24} {:>12} {:>12} {:>12} {:>10} {:>8}  {}\n",
            "scenario", "unaccounted", "incomplete", "error kept", "duplicate", "result", "notes"
        );
        for s in &self.scenarios {
            out.push_str(&format!(
                "{:<24} {:>12} {:>12} {:>12} {:>10} {:>8}  {}\n",
                s.name,
                s.unaccounted_spans,
                format!("{}/{}", s.incomplete_kept_traces, s.kept_traces),
                format!("{}/{}", s.error_traces_kept, s.error_traces_sent),
                s.duplicate_spans,
                if s.passed { "ok" } else { "FAILED" },
                s.notes.join("; ")
            ));
            for c in s.checks.iter().filter(|c| !c.ok) {
                out.push_str(&format!("    failed: {} ({})\n", c.name, c.detail));
            }
        }
        out.push_str(&format!(
            "redistribution {}; {}\n",
            if self.redistribute { "on" } else { "off" },
            if self.passed {
                "all scenarios passed"
            } else {
                "SOME SCENARIOS FAILED"
            }
        ));
        out
    }
}

struct GatewayProc {
    ip: Ipv4Addr,
    child: Child,
}

/// The sink, running as its own process, driven through its control endpoint.
struct RemoteSink {
    child: Child,
    control: SocketAddr,
}

impl RemoteSink {
    async fn call(&self, method: http::Method, path: &str) -> anyhow::Result<Bytes> {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<Bytes>>();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.control))
            .body(http_body_util::Empty::new())?;
        let resp = client
            .request(req)
            .await
            .with_context(|| format!("sink control {path}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("sink control {path}: {status}");
        }
        Ok(body)
    }

    async fn reset(&self) -> anyhow::Result<()> {
        self.call(http::Method::POST, "/reset").await.map(drop)
    }

    async fn set_unavailable(&self, down: bool) -> anyhow::Result<()> {
        let path = if down { "/outage/on" } else { "/outage/off" };
        self.call(http::Method::POST, path).await.map(drop)
    }

    async fn spans(&self) -> u64 {
        match self.call(http::Method::GET, "/spans").await {
            Ok(b) => String::from_utf8_lossy(&b).trim().parse().unwrap_or(0),
            Err(_) => 0,
        }
    }

    /// What the sink has received, as a local [`Sink`] to build the report from.
    async fn fetch(&self) -> anyhow::Result<Sink> {
        let body = self.call(http::Method::GET, "/state").await?;
        let taken = Instant::now();
        let dump: SinkDump = serde_json::from_slice(&body).context("sink state")?;
        let sink = Sink::default();
        sink.load(dump, taken);
        Ok(sink)
    }
}

struct Cluster {
    cfg: ChaosConfig,
    zone: Arc<DnsZone>,
    dns: SocketAddr,
    sink: RemoteSink,
    sink_addr: SocketAddr,
    router: Child,
    router_addr: SocketAddr,
    gateways: Vec<GatewayProc>,
    policies: PathBuf,
    next_host: u8,
    started: u32,
}

fn policies_yaml(cfg: &ChaosConfig, extra: bool) -> String {
    let mut p = crate::demo::policy_yaml(cfg.decision_wait, 500, cfg.baseline_percentage);
    if extra {
        // A policy that matches nothing the generator makes: the reload changes the plan
        // in force without changing which traces are kept.
        p.push_str("  - name: vip-customers\n    type: string_attribute\n    string_attribute: { key: customer.tier, values: [platinum] }\n");
    }
    p
}

impl Cluster {
    async fn start(cfg: ChaosConfig, stop: &CancellationToken) -> anyhow::Result<Cluster> {
        std::fs::create_dir_all(&cfg.workdir)
            .with_context(|| format!("creating {}", cfg.workdir.display()))?;
        let (dns, zone) = DnsZone::start("127.0.0.1:0".parse()?, DNS_NAME, stop.clone())
            .await
            .context("starting the DNS server")?;
        let sink_addr = SocketAddr::from(([127, 0, cfg.subnet, 2], free_port().await?));
        let sink_http = SocketAddr::from(([127, 0, cfg.subnet, 2], free_port().await?));
        let control = SocketAddr::from(([127, 0, cfg.subnet, 2], free_port().await?));
        let args = [
            "sink".to_owned(),
            "--grpc".to_owned(),
            sink_addr.to_string(),
            "--http".to_owned(),
            sink_http.to_string(),
            "--control".to_owned(),
            control.to_string(),
            "--quiet".to_owned(),
        ];
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
        let child = spawn_logged(&cfg.loadtest_bin, &args, &cfg.workdir.join("sink.log"))?;
        let sink = RemoteSink { child, control };
        wait_for_port(control, Duration::from_secs(20)).await?;
        wait_for_port(sink_addr, Duration::from_secs(5)).await?;
        let policies = cfg.workdir.join("policies.yaml");
        std::fs::write(&policies, policies_yaml(&cfg, false))?;

        let router_port = free_port().await?;
        let router_addr = SocketAddr::from(([127, 0, cfg.subnet, 1], router_port));
        let router_config = cfg.workdir.join("router.yaml");
        std::fs::write(
            &router_config,
            format!(
                "receive: {{ grpc: \"{router_addr}\", http: null }}\n\
                 members:\n  dns: {{ name: \"{DNS_NAME}\", port: {port}, interval: {interval}ms, timeout: 500ms, nameservers: [\"{dns}\"] }}\n\
                 forward:\n  retry: {{ max_elapsed_time: 120s }}\n\
                 admin: null\nmetrics: null\n",
                port = cfg.port,
                interval = cfg.dns_interval.as_millis(),
            ),
        )?;
        let router = spawn_logged(
            &cfg.router_bin,
            &["--config".as_ref(), router_config.as_os_str()],
            &cfg.workdir.join("router.log"),
        )?;
        wait_for_port(router_addr, Duration::from_secs(20)).await?;
        let mut cluster = Cluster {
            cfg,
            zone,
            dns,
            sink,
            sink_addr,
            router,
            router_addr,
            gateways: Vec::new(),
            policies,
            next_host: 10,
            started: 0,
        };
        // As many as the first scenario starts from, so the header names the gateways
        // that run it.
        let first = cluster
            .cfg
            .scenarios
            .first()
            .map_or(3, |s| s.gateways_before());
        for _ in 0..first {
            cluster.add_gateway().await?;
        }
        cluster.publish();
        Ok(cluster)
    }

    fn gateway_addr(&self, ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, self.cfg.port))
    }

    fn admin_addr(&self, ip: Ipv4Addr) -> SocketAddr {
        SocketAddr::from((ip, self.cfg.port.wrapping_add(1)))
    }

    /// Starts one more gateway on a fresh address and waits until it is ready; it is not
    /// published in DNS yet.
    async fn add_gateway(&mut self) -> anyhow::Result<Ipv4Addr> {
        let ip = Ipv4Addr::new(127, 0, self.cfg.subnet, self.next_host);
        self.next_host = self.next_host.checked_add(1).context("out of addresses")?;
        self.started += 1;
        let addr = self.gateway_addr(ip);
        let admin = self.admin_addr(ip);
        let config = self.cfg.workdir.join(format!("gateway-{ip}.yaml"));
        std::fs::write(
            &config,
            format!(
                "receive: {{ grpc: \"{addr}\", http: null }}\n\
                 buffer: {{ shards: 2 }}\n\
                 export:\n  otlp_grpc:\n    endpoint: \"http://{sink}\"\n    headers: {{ {SENDER_HEADER}: \"{addr}\" }}\n    tls: {{ insecure: true }}\n    retry: {{ max_elapsed_time: 300s }}\n    batch: {{ timeout: 200ms }}\n\
                 admin: \"{admin}\"\n\
                 metrics: null\n\
                 peers:\n  self: \"{addr}\"\n  secret: chaos-peer-secret\n  redistribute: {redistribute}\n  leave_linger: {linger}ms\n  dns: {{ name: \"{DNS_NAME}\", port: {port}, interval: {interval}ms, timeout: 500ms, nameservers: [\"{dns}\"] }}\n",
                sink = self.sink_addr,
                redistribute = self.cfg.redistribute,
                linger = (self.cfg.dns_interval * 2).as_millis(),
                port = self.cfg.port,
                interval = self.cfg.dns_interval.as_millis(),
                dns = self.dns,
            ),
        )?;
        let child = spawn_logged(
            &self.cfg.gateway_bin,
            &[
                "--config".as_ref(),
                config.as_os_str(),
                "--policies".as_ref(),
                self.policies.as_os_str(),
                "--reload-interval".as_ref(),
                "500ms".as_ref(),
                "--drain-deadline".as_ref(),
                "25s".as_ref(),
            ],
            &self
                .cfg
                .workdir
                .join(format!("gateway-{ip}-{}.log", self.started)),
        )?;
        self.gateways.push(GatewayProc { ip, child });
        wait_for_port(addr, Duration::from_secs(20)).await?;
        wait_for_port(admin, Duration::from_secs(5)).await?;
        Ok(ip)
    }

    /// Publishes the running gateways in DNS.
    fn publish(&self) {
        self.zone
            .set(self.gateways.iter().map(|g| g.ip).collect::<Vec<_>>());
    }

    /// Takes gateways out of DNS and sends them SIGTERM together; waits for them to exit.
    async fn terminate(&mut self, ips: &[Ipv4Addr]) -> anyhow::Result<Vec<String>> {
        let mut leaving = Vec::new();
        let mut i = 0;
        while i < self.gateways.len() {
            if ips.contains(&self.gateways[i].ip) {
                leaving.push(self.gateways.remove(i));
            } else {
                i += 1;
            }
        }
        self.publish();
        let mut notes = Vec::new();
        let start = Instant::now();
        for g in &leaving {
            if let Some(pid) = g.child.id() {
                signal(pid, "TERM").await?;
            }
        }
        for mut g in leaving {
            let status = tokio::time::timeout(Duration::from_secs(40), g.child.wait())
                .await
                .context("a gateway did not exit within 40s of SIGTERM")??;
            notes.push(format!(
                "{} drained in {:.1}s ({status})",
                g.ip,
                start.elapsed().as_secs_f64()
            ));
        }
        Ok(notes)
    }

    /// Brings the gateway count to `n` between scenarios (outside any measurement).
    async fn resize(&mut self, n: usize) -> anyhow::Result<()> {
        while self.gateways.len() < n {
            self.add_gateway().await?;
        }
        self.publish();
        if self.gateways.len() > n {
            let ips: Vec<Ipv4Addr> = self.gateways[n..].iter().map(|g| g.ip).collect();
            self.terminate(&ips).await?;
        }
        // Everyone follows DNS, and the handoffs settle.
        tokio::time::sleep(self.cfg.dns_interval * 3).await;
        Ok(())
    }

    async fn shutdown(mut self) {
        for g in &self.gateways {
            if let Some(pid) = g.child.id() {
                signal(pid, "TERM").await.ok();
            }
        }
        if let Some(pid) = self.router.id() {
            signal(pid, "TERM").await.ok();
        }
        for g in &mut self.gateways {
            tokio::time::timeout(Duration::from_secs(30), g.child.wait())
                .await
                .ok();
        }
        tokio::time::timeout(Duration::from_secs(30), self.router.wait())
            .await
            .ok();
        self.sink.child.start_kill().ok();
        self.sink.child.wait().await.ok();
    }
}

fn spawn_logged(bin: &Path, args: &[&std::ffi::OsStr], log: &Path) -> anyhow::Result<Child> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new(bin)
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .await
        .context("running kill")?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed: {status}");
    }
    Ok(())
}

/// Runs every configured scenario and returns the report.
pub async fn run_chaos(cfg: ChaosConfig) -> anyhow::Result<ChaosReport> {
    for bin in [&cfg.gateway_bin, &cfg.router_bin, &cfg.loadtest_bin] {
        if !bin.exists() {
            bail!(
                "{} not found; build the workspace first (cargo build --release) or pass --gateway-bin/--router-bin",
                bin.display()
            );
        }
    }
    let stop = CancellationToken::new();
    let oracle = Oracle::new(&cfg)?;
    let mut cluster = Cluster::start(cfg.clone(), &stop).await?;
    if cfg.progress {
        eprintln!(
            "Cluster: router {} → gateways {} (DNS {DNS_NAME} on {}) → sink {}; logs in {}",
            cluster.router_addr,
            cluster
                .gateways
                .iter()
                .map(|g| g.ip.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            cluster.dns,
            cluster.sink_addr,
            cfg.workdir.display()
        );
    }
    // The router and gateways find each other before load starts.
    tokio::time::sleep(cfg.dns_interval * 2).await;
    let mut reports = Vec::new();
    let mut result = Ok(());
    for (i, scenario) in cfg.scenarios.iter().copied().enumerate() {
        if cfg.progress {
            eprintln!("[{}/{}] {}…", i + 1, cfg.scenarios.len(), scenario.name());
        }
        match run_scenario(&mut cluster, scenario, &oracle).await {
            Ok(r) => {
                if cfg.progress {
                    eprintln!(
                        "      unaccounted {}, incomplete {}/{}, errors kept {}/{}: {}",
                        r.unaccounted_spans,
                        r.incomplete_kept_traces,
                        r.kept_traces,
                        r.error_traces_kept,
                        r.error_traces_sent,
                        if r.passed { "ok" } else { "FAILED" }
                    );
                }
                reports.push(r);
            }
            Err(e) => {
                result = Err(e.context(format!("scenario {}", scenario.name())));
                break;
            }
        }
    }
    cluster.shutdown().await;
    stop.cancel();
    result?;
    let passed = reports.iter().all(|r| r.passed);
    Ok(ChaosReport {
        redistribute: cfg.redistribute,
        scenarios: reports,
        passed,
    })
}

async fn run_scenario(
    cluster: &mut Cluster,
    scenario: Scenario,
    oracle: &Oracle,
) -> anyhow::Result<ScenarioReport> {
    let cfg = cluster.cfg.clone();
    cluster.resize(scenario.gateways_before()).await?;
    // A clean slate: what arrives from now on belongs to this scenario.
    wait_quiet(
        &cluster.sink,
        cfg.decision_wait + Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    cluster.sink.reset().await?;
    let drive_cfg = scenario_drive_config(&cfg, cluster.router_addr, scenario);
    let load = tokio::spawn(drive(drive_cfg));
    tokio::time::sleep(cfg.phase / 4).await;
    let (notes, held) = apply_change(cluster, scenario, &cfg).await?;
    let result = load.await.context("driver task")??;
    wait_quiet(
        &cluster.sink,
        cfg.decision_wait + Duration::from_secs(3),
        Duration::from_secs(120),
    )
    .await;
    let sink = cluster.sink.fetch().await?;
    Ok(judge(scenario, &result, &sink, oracle, held, notes, &cfg))
}

/// The steady load a scenario drives through the router while its change happens.
fn scenario_drive_config(
    cfg: &ChaosConfig,
    router_addr: SocketAddr,
    scenario: Scenario,
) -> DriveConfig {
    DriveConfig {
        target: router_addr.to_string(),
        protocol: Protocol::Grpc,
        rate: cfg.rate,
        duration: cfg.phase,
        batch: 256,
        max_in_flight: 16,
        // Agents retry for long enough to ride out the outage's backpressure.
        retry_for: cfg.outage + Duration::from_secs(60),
        gen: GenConfig {
            spans_per_trace: 6,
            attrs_per_span: 4,
            max_spread: Duration::from_millis(800),
            seed: 1000 + scenario as u64,
            ..GenConfig::default()
        },
    }
}

/// Makes the scenario's change under load; returns notes and, for `kill`, the spans held.
async fn apply_change(
    cluster: &mut Cluster,
    scenario: Scenario,
    cfg: &ChaosConfig,
) -> anyhow::Result<(Vec<String>, Option<u64>)> {
    let mut notes = Vec::new();
    let mut held = None;
    match scenario {
        Scenario::ScaleUp => {
            for _ in 0..2 {
                let ip = cluster.add_gateway().await?;
                notes.push(format!("{ip} joined"));
            }
            cluster.publish();
        }
        Scenario::ScaleDown => {
            let ips: Vec<Ipv4Addr> = cluster.gateways[2..].iter().map(|g| g.ip).collect();
            notes.extend(cluster.terminate(&ips).await?);
        }
        Scenario::RollingRestart => {
            let old: Vec<Ipv4Addr> = cluster.gateways.iter().map(|g| g.ip).collect();
            for ip in old {
                // Surge one, then retire one, as a Deployment's rolling update does.
                cluster.add_gateway().await?;
                cluster.publish();
                tokio::time::sleep(cfg.dns_interval).await;
                notes.extend(cluster.terminate(&[ip]).await?);
            }
        }
        Scenario::Kill => {
            let (note, h) = kill_last_gateway(cluster).await?;
            held = Some(h);
            notes.push(note);
        }
        Scenario::Outage => {
            cluster.sink.set_unavailable(true).await?;
            tokio::time::sleep(cfg.outage).await;
            cluster.sink.set_unavailable(false).await?;
            notes.push(format!("backend down {:?}", cfg.outage));
        }
        Scenario::Reload => {
            notes.push(reload_policies(cluster, cfg).await?);
        }
    }
    Ok((notes, held))
}

/// `kill -9` of the newest gateway, then its DNS record goes; returns a note and spans held.
async fn kill_last_gateway(cluster: &mut Cluster) -> anyhow::Result<(String, u64)> {
    let victim = cluster.gateways.len() - 1;
    let ip = cluster.gateways[victim].ip;
    let admin = cluster.admin_addr(ip);
    let mut h = 0;
    for m in [
        "tailgate_gateway_live_spans",
        "tailgate_gateway_pending_export_spans",
        "tailgate_gateway_peer_handoff_pending_spans",
    ] {
        h += scrape(admin, m).await.unwrap_or(0);
    }
    cluster.gateways[victim].child.start_kill()?;
    cluster.gateways[victim].child.wait().await?;
    let note = format!("{ip} killed holding {h} spans");
    // The endpoint goes when the kubelet notices.
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.gateways.remove(victim);
    cluster.publish();
    Ok((note, h))
}

/// Rewrites the policy file until every gateway reloaded it, then restores it; returns a note.
async fn reload_policies(cluster: &mut Cluster, cfg: &ChaosConfig) -> anyhow::Result<String> {
    std::fs::write(&cluster.policies, policies_yaml(cfg, true))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reloaded = 0;
    while Instant::now() < deadline {
        reloaded = 0;
        for g in &cluster.gateways {
            let series = "tailgate_config_reloads_total{result=\"ok\"}";
            let ok = scrape(cluster.admin_addr(g.ip), series).await;
            reloaded += usize::from(ok.unwrap_or(0) > 0);
        }
        if reloaded == cluster.gateways.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let note = format!("{reloaded}/{} gateways reloaded", cluster.gateways.len());
    // The next reload scenario starts from the original file.
    std::fs::write(&cluster.policies, policies_yaml(cfg, false))?;
    Ok(note)
}

/// Waits until the sink has received nothing new for `quiet` (at most `max`).
async fn wait_quiet(sink: &RemoteSink, quiet: Duration, max: Duration) {
    let start = Instant::now();
    let mut last = (sink.spans().await, Instant::now());
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sink.spans().await;
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= quiet {
            return;
        }
    }
}

/// Which traces the policy keeps, known without asking the cluster: every error and slow
/// trace, and the others the probabilistic policy keeps by their trace id alone.
struct Oracle {
    baseline: PolicyPlan,
}

impl Oracle {
    fn new(cfg: &ChaosConfig) -> anyhow::Result<Self> {
        let yaml = format!(
            "policies:\n  - name: baseline\n    type: probabilistic\n    probabilistic: {{ sampling_percentage: {} }}\n",
            cfg.baseline_percentage
        );
        let file = PolicyFile::parse(Path::new("<chaos oracle>"), &yaml)?;
        Ok(Oracle {
            baseline: PolicyPlan::compile(&file),
        })
    }

    fn keeps(&self, id: &[u8; 16], kind: TraceKind) -> bool {
        match kind {
            TraceKind::Error | TraceKind::Slow => true,
            TraceKind::Normal => {
                let summary = TraceSummary::default();
                self.baseline.decide(&TraceView::new(id, &summary)).sampled
            }
        }
    }
}

fn judge(
    scenario: Scenario,
    result: &DriveResult,
    sink: &Sink,
    oracle: &Oracle,
    held: Option<u64>,
    notes: Vec<String>,
    cfg: &ChaosConfig,
) -> ScenarioReport {
    let dropped_by_policy = spans_dropped_by_policy(result, oracle);
    let report = Report::build(
        result,
        sink,
        ComponentCounts {
            dropped_by_policy,
            ..Default::default()
        },
        cfg.rate,
        crate::report::Expect::DemoPolicies {
            baseline_share: cfg.baseline_percentage / 100.0,
            // The share is checked by the demo; here only the changes are.
            tolerance: 1.0,
        },
    );
    let mut notes = notes;
    notes.extend(incomplete_examples(result, sink, 3));
    let checks = scenario_checks(scenario, &report, held);
    let passed = checks.iter().all(|c| c.ok);
    ScenarioReport {
        scenario,
        name: scenario.name().to_owned(),
        unaccounted_spans: report.unaccounted_spans,
        incomplete_kept_traces: report.incomplete_kept_traces,
        kept_traces: report.traces_kept,
        error_traces_kept: report.error_traces_kept,
        error_traces_sent: report.error_traces_sent,
        duplicate_spans: report.duplicate_spans,
        held_by_killed_gateway: held,
        notes,
        report,
        checks,
        passed,
    }
}

/// Spans of the sent traces the policy does not keep, as the oracle judges them.
fn spans_dropped_by_policy(result: &DriveResult, oracle: &Oracle) -> u64 {
    result
        .traces
        .iter()
        .filter(|t| !oracle.keeps(&t.id, t.kind))
        .map(|t| u64::from(t.spans))
        .sum()
}

/// The scenario's checks (for `kill`, loss bounded by what the killed gateway held).
fn scenario_checks(
    scenario: Scenario,
    report: &Report,
    held: Option<u64>,
) -> Vec<crate::report::Check> {
    let kept = report.traces_kept.max(1);
    let incomplete_ok = report.incomplete_kept_traces * 1000 <= kept;
    let mut checks = Vec::new();
    let check = |name: &str, ok: bool, detail: String| crate::report::Check {
        name: name.to_owned(),
        ok,
        detail,
    };
    if scenario == Scenario::Kill {
        let lost = report.unaccounted_spans.max(0) as u64;
        let h = held.unwrap_or(0);
        checks.push(check(
            "lost spans at most what the killed gateway held",
            report.unaccounted_spans >= 0 && lost <= h,
            format!("lost {lost}, held {h}"),
        ));
    } else {
        checks.push(check(
            "no unaccounted spans",
            report.unaccounted_spans == 0,
            format!("{}", report.unaccounted_spans),
        ));
        checks.push(check(
            "incomplete kept traces at most 0.1%",
            incomplete_ok,
            format!(
                "{} of {}",
                report.incomplete_kept_traces, report.traces_kept
            ),
        ));
        checks.push(check(
            "every error trace kept",
            report.error_traces_kept == report.error_traces_sent,
            format!(
                "{} of {}",
                report.error_traces_kept, report.error_traces_sent
            ),
        ));
    }
    checks.push(check(
        "load was sent",
        report.spans_sent > 0 && report.spans_refused < report.spans_sent,
        format!(
            "{} sent, {} refused",
            report.spans_sent, report.spans_refused
        ),
    ));
    checks.push(check(
        "nothing unexpected at the backend",
        report.unexpected_traces == 0,
        format!("{}", report.unexpected_traces),
    ));
    checks
}

/// A few incomplete kept traces, described: what arrived of each and from which gateways.
fn incomplete_examples(result: &DriveResult, sink: &Sink, n: usize) -> Vec<String> {
    let sent: std::collections::HashMap<[u8; 16], u32> =
        result.traces.iter().map(|t| (t.id, t.spans)).collect();
    sink.with_state(|s| {
        s.traces
            .iter()
            .filter_map(|(id, t)| {
                let want = *sent.get(id)?;
                ((t.span_ids.len() as u32) < want || t.senders.len() > 1).then(|| {
                    format!(
                        "incomplete {}: {}/{want} spans from {}",
                        id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                        t.span_ids.len(),
                        t.senders
                            .iter()
                            .map(|s| s.to_string())
                            .collect::<Vec<_>>()
                            .join("+")
                    )
                })
            })
            .take(n)
            .collect()
    })
    .unwrap_or_default()
}
