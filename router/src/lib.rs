//! tailgate-router: receives OTLP, splits every request by trace id and forwards each part
//! to the gateway that owns those traces, as bytes. It never decodes a span.
//!
//! ```text
//!  agents ─OTLP─▶ receive (core) ─▶ split: scan ▸ ring owner per span ▸ re-frame per owner
//!                                        ─▶ forward: one client per gateway ─OTLP/gRPC─▶ gateways
//! ```
//!
//! * [`config`]: the YAML file (`receive`, `members`, `forward`, `admin`).
//! * [`split`]: the [`split::Router`] stage, a `SpanSink` that scans, splits and forwards.
//! * [`metrics`]: the router's counters.

pub mod config;
pub mod metrics;
pub mod split;

use std::sync::Arc;

use tailgate_core::receive::Listeners;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::RouterConfig;
pub use split::Router;

/// Runs a router on bound sockets until `shutdown` is cancelled.
pub async fn run(
    router: Arc<Router>,
    listeners: Listeners,
    admin: Option<TcpListener>,
    max_request_bytes: usize,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Some(admin) = admin {
        tokio::spawn(tailgate_core::telemetry::serve_admin(
            admin,
            router.clone(),
            shutdown.clone().cancelled_owned(),
        ));
    }
    router.readiness().set(true);
    let result = listeners
        .serve(router.clone(), max_request_bytes, shutdown)
        .await;
    router.readiness().set(false);
    result
}
