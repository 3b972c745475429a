//! A gateway "pod" for black-box tests: its own 127.0.0.x address, two shards, exporting to a
//! capturing backend on loopback.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::CaptureBackend;
use tailgate_gateway::config::{BufferConfig, ExportConfig};
use tailgate_gateway::export::OtlpGrpcConfig;
use tailgate_gateway::metrics::GatewayStats;
use tailgate_gateway::reload::{ReloadStats, SharedPlan};
use tailgate_gateway::{Gateway, GatewayConfig, PolicyFile, PolicyPlan};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running gateway and its backend.
pub(crate) struct TestGateway {
    /// The gateway's OTLP/gRPC address.
    pub addr: SocketAddr,
    /// What the backend received.
    pub backend: Arc<CaptureBackend>,
    /// The gateway's counters.
    pub stats: Arc<GatewayStats>,
    /// The plan in force.
    pub plan: SharedPlan,
    /// Reload counters.
    pub reloads: Arc<ReloadStats>,
    stop: CancellationToken,
    served: JoinHandle<std::io::Result<()>>,
}

/// Parses policy text.
pub(crate) fn plan(yaml: &str) -> PolicyPlan {
    PolicyFile::parse(Path::new("policies.yaml"), yaml)
        .map(|f| PolicyPlan::compile(&f))
        .unwrap()
}

/// A capture backend (OTLP/gRPC) on a free loopback port, stopped with `stop`.
pub(crate) async fn capture_backend(
    stop: &CancellationToken,
) -> (SocketAddr, std::sync::Arc<CaptureBackend>) {
    CaptureBackend::start("127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap()
}

/// Starts a gateway on `ip` (port 0) with `plan`; `setup` runs before it serves (to watch a
/// policy file, for example).
pub(crate) async fn spawn_gateway(
    ip: [u8; 4],
    plan: PolicyPlan,
    setup: impl FnOnce(&Gateway, &CancellationToken),
) -> TestGateway {
    let buffer = BufferConfig {
        shards: 2,
        ..Default::default()
    };
    spawn_gateway_with(ip, plan, buffer, setup).await
}

/// [`spawn_gateway`] with the given buffer settings.
pub(crate) async fn spawn_gateway_with(
    ip: [u8; 4],
    plan: PolicyPlan,
    buffer: BufferConfig,
    setup: impl FnOnce(&Gateway, &CancellationToken),
) -> TestGateway {
    spawn_gateway_configured(ip, plan, |c| c.buffer = buffer, setup).await
}

/// [`spawn_gateway`] with `configure` applied to its config (which exports to the capturing
/// backend over OTLP/gRPC, with two shards) before it starts.
pub(crate) async fn spawn_gateway_configured(
    ip: [u8; 4],
    plan: PolicyPlan,
    configure: impl FnOnce(&mut GatewayConfig),
    setup: impl FnOnce(&Gateway, &CancellationToken),
) -> TestGateway {
    let stop = CancellationToken::new();
    let (backend_addr, backend) = capture_backend(&stop).await;
    let receive = ReceiveConfig {
        grpc: Some(SocketAddr::from((ip, 0))),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let mut config = GatewayConfig {
        buffer: BufferConfig {
            shards: 2,
            ..Default::default()
        },
        ..GatewayConfig::new(
            receive,
            ExportConfig::otlp_grpc(OtlpGrpcConfig::new(format!("http://{backend_addr}"))),
        )
    };
    configure(&mut config);
    let gateway = Gateway::start(&config, plan).unwrap();
    setup(&gateway, &stop);
    let (stats, plan, reloads) = (
        gateway.stats().clone(),
        gateway.plan().clone(),
        gateway.reload_stats().clone(),
    );
    let served =
        tokio::spawn(gateway.serve(listeners, None, stop.clone(), Duration::from_secs(10)));
    TestGateway {
        addr,
        backend,
        stats,
        plan,
        reloads,
        stop,
        served,
    }
}

impl TestGateway {
    /// Waits until nothing is buffered or waiting for export, at most `within`.
    pub(crate) async fn settle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.stats.in_flight_spans() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the gateway and its backend.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.served.await.unwrap().unwrap();
    }
}

/// Waits until every backend of `backends` has received `spans` spans, at most `within`
/// (spans cross real sockets and a decision wait: bounded polling, not a timer under test).
pub(crate) async fn wait_for_spans(backends: &[&CaptureBackend], spans: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while backends.iter().any(|b| b.spans() < spans) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The client of `config`'s exporter number `index`, an `otlphttp` one, with what its
/// `auth` names (the proxy variables not read).
pub(crate) fn http_client(
    config: &GatewayConfig,
    index: usize,
) -> tailgate_gateway::export::otlp_http::HttpClient {
    let tailgate_gateway::export::ExporterConfig::OtlpHttp(http) =
        &config.export.exporters[index].1
    else {
        panic!("{:?}", config.export.exporters[index])
    };
    let auth = http
        .auth
        .as_ref()
        .map(|a| config.extensions.credential(a).unwrap());
    http.client_with(auth, &tailgate_core::proxy::ProxyEnv::default())
        .unwrap()
}

/// The raw answer to `GET path` on an admin listener ("" when it cannot be reached).
pub(crate) async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if s.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok();
    out
}
