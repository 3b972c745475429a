//! tailgate-router: receives OTLP, splits every request by trace id and forwards each part
//! to the gateway that owns those traces, as bytes. It never decodes a span.
//!
//! ```text
//!  agents ─OTLP─▶ receive (core) ─▶ split: scan ▸ ring owner per span ▸ re-frame per owner
//!                                        ─▶ forward: queue ▸ coalesce ▸ send per gateway ─OTLP/gRPC─▶ gateways
//!  members: static list or DNS (hickory) ─▶ new ring (ArcSwap) on change
//! ```
//!
//! * [`config`]: the YAML file (`receive`, `members`, `forward`, `admin`).
//! * [`collector`]: a whole Collector config of the `load_balancing` exporter's tier, read
//!   for the router's sections.
//! * [`split`]: the [`split::Router`] stage, a `SpanSink` that scans, splits and admits
//!   parts to the gateways' queues; membership and health changes rebuild its ring.
//! * [`forward`]: per-gateway byte-bounded queues, coalescing, retries, down/probe.
//! * [`metrics`]: the router's counters.

pub mod collector;
pub mod config;
pub mod forward;
pub mod metrics;
pub mod passes;
pub mod split;

use std::sync::Arc;
use std::time::Duration;

use tailgate_core::members::DnsDiscovery;
use tailgate_core::receive::Listeners;
use tailgate_core::ring::Member;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::RouterConfig;
pub use split::Router;

/// Why a router could not run.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// DNS discovery could not be set up.
    #[error(transparent)]
    Discovery(#[from] tailgate_core::members::dns::DiscoveryError),
    /// Serving failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// `receive.tls` cannot be loaded.
    #[error("receive.tls: {0}")]
    Tls(#[from] tailgate_core::tls::TlsError),
}

/// Runs a router on bound sockets until `shutdown` is cancelled, then stops accepting,
/// finishes open requests (waiting at most a fifth of `drain_deadline` for them) and sends
/// what is queued, all within `drain_deadline`.
pub async fn run(
    router: Arc<Router>,
    config: &RouterConfig,
    listeners: Listeners,
    admin: impl IntoIterator<Item = TcpListener>,
    drain_deadline: Duration,
    shutdown: CancellationToken,
) -> Result<(), RouterError> {
    match &config.members.dns {
        Some(dns) => {
            let discovery = DnsDiscovery::new(dns.clone())?;
            let (r, stats) = (router.clone(), router.stats().discovery.clone());
            tokio::spawn(discovery.run(stats, move |set| r.set_members(set), shutdown.clone()));
        }
        None => router.set_members(
            config
                .members
                .static_list
                .iter()
                .map(|m| Member::new(m.as_str()))
                .collect(),
        ),
    }
    // Health and metrics stay up through the drain (not ready from SIGTERM on), so that
    // Prometheus scrapes what the drain does and probes read 503, not a closed port.
    let admin_stop = CancellationToken::new();
    let _admin_stop = admin_stop.clone().drop_guard();
    // Without a listener there is no scrape to wait for after a lossy drain.
    let mut scraped = false;
    for admin in admin {
        scraped = true;
        tokio::spawn(tailgate_core::telemetry::serve_admin(
            admin,
            router.clone(),
            admin_stop.clone().cancelled_owned(),
        ));
    }
    let limits = tailgate_core::receive::Limits::new(&config.receive)?;
    router.readiness().set(true);
    // Requests still open when receiving stops get a fifth of the drain deadline: a slow
    // or stalled upload (up to `receive.request_timeout`, 30 s by default) must not use up
    // the time queued parts need to be sent. Past it the drain goes on; such a request,
    // if it completes, is admitted and sent while the deadline lasts, or its connection
    // closes unanswered when the process exits (its sender retries).
    let stopped_at = std::sync::OnceLock::new();
    let serving = listeners.serve(router.clone(), limits, shutdown.clone());
    let mark = async {
        shutdown.cancelled().await;
        stopped_at.get_or_init(tokio::time::Instant::now);
        router.readiness().set(false);
        std::future::pending::<()>().await;
    };
    let result = tokio::select! {
        result = tailgate_core::receive::serve_with_grace(serving, &shutdown, drain_deadline / 5) => result,
        () = mark => Ok(()),
    };
    router.readiness().set(false);
    let since = stopped_at.get_or_init(tokio::time::Instant::now).elapsed();
    let lost = router.drain(drain_deadline.saturating_sub(since)).await;
    if lost == 0 && shutdown.is_cancelled() {
        // As the gateway says it: an operator reading the log sees the drain end.
        tracing::info!("Drained: every queued span forwarded or counted failed.");
    }
    if scraped {
        router.after_drain(lost).await;
    }
    Ok(result?)
}
