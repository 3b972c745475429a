//! tailgate-gateway: buffers whole traces, decides each one after `decision_wait` with
//! tail-sampling policies, and exports the kept traces.
//!
//! ```text
//!  router ─OTLP─▶ receive (core) ─▶ buffer: scan ▸ span → shard ─▶ shard: trace table
//!                                   ▸ timer (first_seen + decision_wait) ▸ decide (policy plan)
//!                                   ▸ export: batch ▸ re-frame ─OTLP/gRPC─▶ backend
//! ```
//!
//! * [`config`]: the gateway YAML file; [`collector_config`]: a whole Collector config of
//!   the `tail_sampling` tier read as one.
//! * [`attributes`]: `delete` and `hash` actions on the attributes of kept spans.
//! * [`buffer`]: the receive-side stage and the shards that own traces.
//! * [`timer`]: deadline queue.
//! * [`decide`]: the decision cache for late spans.
//! * [`policy`]: policy file (a tail_sampling block or a whole Collector config), policy
//!   kinds (one file each, OTTL conditions in `policy::ottl`), compiled plan.
//! * [`export`]: batching exporter to an OTLP/gRPC backend.
//! * [`reload`]: hot reload of the policy file (content checks and SIGHUP).
//! * [`metrics`]: the gateway's counters and the accounting identity.
//! * [`explain`]: offline replay of recorded traces through a plan (`explain` command).

pub mod attributes;
pub mod buffer;
pub mod collector_config;
pub mod config;
pub mod decide;
pub mod explain;
pub mod export;
pub mod go_regex;
pub mod metrics;
pub mod peers;
pub mod policy;
pub mod reload;
pub mod timer;

use std::sync::Arc;
use std::time::Duration;

use tailgate_core::receive::Listeners;
use tailgate_core::telemetry::{Admin, Readiness};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use config::GatewayConfig;
use metrics::GatewayStats;
pub use policy::plan::PolicyPlan;
pub use policy::PolicyFile;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An exporter could not be built.
    #[error("exporter {0}")]
    Export(#[from] export::ExportError),
    /// The `attributes:` actions cannot be compiled.
    #[error("{0}")]
    Attributes(String),
    /// Peers are configured but this gateway's place among them is unknown.
    #[error("peers: {0}")]
    Peers(#[from] peers::IdentityError),
    /// DNS discovery of the peers could not be set up.
    #[error(transparent)]
    Discovery(#[from] tailgate_core::members::dns::DiscoveryError),
    /// `peers.listen` cannot be bound.
    #[error("peers.listen {addr}: {error}")]
    PeerListen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// `receive.tls` or `peers.tls` cannot be loaded.
    #[error("{key}: {error}")]
    Tls {
        /// The config key.
        key: &'static str,
        /// Why.
        #[source]
        error: tailgate_core::tls::TlsError,
    },
}

/// A running gateway's pipeline (everything but the listeners).
pub struct Gateway {
    plan: reload::SharedPlan,
    reload_stats: Arc<reload::ReloadStats>,
    buffer: Arc<buffer::TraceBuffer>,
    stats: Arc<GatewayStats>,
    ready: Readiness,
    drain: CancellationToken,
    peers: Arc<peers::Peers>,
    /// Stops discovery and redistribution once the gateway has drained.
    peers_stop: CancellationToken,
    shards: Vec<JoinHandle<()>>,
    exporters: Vec<JoinHandle<()>>,
    limits: tailgate_core::receive::Limits,
    /// The peer port (`peers.listen`), bound at start so that its errors come early.
    peer_listener: Option<std::net::TcpListener>,
    /// After a drain that lost spans, how long to wait for one more scrape.
    final_scrape_wait: Duration,
}

// === impl Gateway ===

impl Gateway {
    /// Starts the shards and the exporter. Must be called inside a Tokio runtime.
    pub fn start(config: &GatewayConfig, plan: PolicyPlan) -> Result<Self, GatewayError> {
        let stats = Arc::new(GatewayStats::default());
        stats.set_policy_names(plan.names());
        stats
            .max_buffered_bytes
            .set(config.buffer.max_buffered_bytes);
        stats
            .early_decision_bytes
            .set(config.buffer.early_decision_bytes());
        let plan: reload::SharedPlan = Arc::new(arc_swap::ArcSwap::from_pointee(plan));
        let (exporters, export_tasks) = export::start(
            &config.export,
            &config.extensions,
            &stats,
            config.buffer.max_buffered_bytes,
        )?;
        let attribute_actions = config
            .attributes
            .compile()
            .map_err(|e| GatewayError::Attributes(e.to_string()))?
            .map(Arc::new);
        let me = if config.peers.enabled() {
            config.identity()?
        } else {
            tailgate_core::ring::Member::new("standalone")
        };
        let peers = peers::Peers::new(config.peers.clone(), me, stats.clone());
        let (senders, shards, drain) = start_shards(
            config,
            &plan,
            &exporters,
            &stats,
            &attribute_actions,
            &peers,
        )?;
        drop(exporters);
        let buffer = Arc::new(
            buffer::TraceBuffer::new(
                plan.clone(),
                senders,
                stats.clone(),
                peers.clone(),
                &config.buffer,
            )
            .with_attribute_actions(attribute_actions),
        );
        let peers_stop = CancellationToken::new();
        start_discovery(config, &peers, &buffer, &stats, &peers_stop)?;
        let peer_listener = config.peers.listen.map(bind_peer_port).transpose()?;
        let peer_traffic = match (&peer_listener, config.peers.enabled()) {
            (Some(_), _) => tailgate_core::receive::PeerTraffic::ClientsOnly,
            (None, true) => tailgate_core::receive::PeerTraffic::Mixed,
            // Without peers no request can come from one: a `Decisions` call could drop
            // any sender's trace.
            (None, false) => tailgate_core::receive::PeerTraffic::Standalone,
        };
        Ok(Gateway {
            peer_listener,
            final_scrape_wait: Duration::ZERO,
            plan,
            reload_stats: Arc::new(reload::ReloadStats::default()),
            buffer,
            stats,
            ready: Readiness::default(),
            drain,
            peers,
            peers_stop,
            shards,
            exporters: export_tasks,
            limits: tailgate_core::receive::Limits {
                peer_auth: tailgate_core::receive::PeerAuth {
                    secret: config.peers.secret.as_deref().map(Into::into),
                    cert_names: config.peers.cert_names.clone().into(),
                },
                peer_traffic,
                ..tailgate_core::receive::Limits::new(&config.receive).map_err(|error| {
                    GatewayError::Tls {
                        key: "receive.tls",
                        error,
                    }
                })?
            },
        })
    }

    /// Serves the peer port, if any, until `stop`: gRPC only, peer requests only, with
    /// the receivers' TLS and limits.
    fn serve_peer_port(
        &mut self,
        stop: &CancellationToken,
    ) -> std::io::Result<Option<JoinHandle<std::io::Result<()>>>> {
        let Some(std_listener) = self.peer_listener.take() else {
            return Ok(None);
        };
        let listeners = Listeners {
            grpc: Some(TcpListener::from_std(std_listener)?),
            http: None,
        };
        let limits = tailgate_core::receive::Limits {
            peer_traffic: tailgate_core::receive::PeerTraffic::PeersOnly,
            ..self.limits.clone()
        };
        Ok(Some(tokio::spawn(listeners.serve(
            self.buffer.clone(),
            limits,
            stop.clone(),
        ))))
    }

    /// The gateway's counters.
    pub fn stats(&self) -> &Arc<GatewayStats> {
        &self.stats
    }

    /// Reload counters.
    pub fn reload_stats(&self) -> &Arc<reload::ReloadStats> {
        &self.reload_stats
    }

    /// The plan in force (swap a new one in to change the policies).
    pub fn plan(&self) -> &reload::SharedPlan {
        &self.plan
    }

    /// Reloads `policy_file` when it changes (checked every `interval`) or on SIGHUP, until
    /// `shutdown`.
    pub fn watch_policies(
        &self,
        policy_file: impl Into<reload::PolicySource>,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let reloader =
            reload::Reloader::new(policy_file, self.plan.clone(), self.reload_stats.clone());
        tokio::spawn(reloader.run(interval, shutdown));
    }

    /// The gateway's view of its peers.
    pub fn peers(&self) -> &Arc<peers::Peers> {
        &self.peers
    }

    /// Serves the receivers (and admin) until `shutdown` is cancelled; then drains within
    /// `drain_deadline`: not ready; with peers, leaves the ring, hands its buffered traces
    /// to their new owners and keeps receiving (and forwarding) for `peers.leave_linger`
    /// while routers notice; then stops accepting, decides what is left and flushes the
    /// exporters.
    pub async fn serve(
        mut self,
        listeners: Listeners,
        admin: impl IntoIterator<Item = TcpListener>,
        shutdown: CancellationToken,
        drain_deadline: Duration,
    ) -> std::io::Result<()> {
        let this = Arc::new(AdminView {
            stats: self.stats.clone(),
            reload: self.reload_stats.clone(),
            plan: self.plan.clone(),
            ready: Readiness::default(),
            scrapes: tailgate_core::telemetry::Scrapes::default(),
        });
        // Every admin listener (13133 for health, 8888 for metrics) serves every endpoint,
        // through the drain too (not ready from SIGTERM on): Prometheus scrapes what the
        // drain does (hand-offs, abandoned peer spans) and probes read 503, not a closed
        // port. They close when the drain is over.
        let admin_stop = CancellationToken::new();
        let _admin_stop = admin_stop.clone().drop_guard();
        // Without a listener there is no scrape to wait for after a lossy drain.
        let mut scraped = false;
        for admin in admin {
            scraped = true;
            tokio::spawn(tailgate_core::telemetry::serve_admin(
                admin,
                this.clone(),
                admin_stop.clone().cancelled_owned(),
            ));
        }
        this.ready.set(true);
        self.ready.set(true);
        let stop_receiving = CancellationToken::new();
        let started = Arc::new(std::sync::OnceLock::new());
        {
            let (this, peers, stop, started) = (
                this.clone(),
                self.peers.clone(),
                stop_receiving.clone(),
                started.clone(),
            );
            let linger = peers.config().leave_linger.min(drain_deadline / 2);
            tokio::spawn(async move {
                shutdown.cancelled().await;
                started.get_or_init(tokio::time::Instant::now);
                this.ready.set(false);
                // Alone on the ring there is no one to hand off to: drain at once.
                let others = {
                    let view = peers.view();
                    view.routes() && view.ring.members().len() > 1
                };
                if others {
                    peers.leave();
                    tokio::time::sleep(linger).await;
                }
                stop.cancel();
            });
        }
        let peer_port = self.serve_peer_port(&stop_receiving)?;
        // Once receiving stops, requests still open (a slow or stalled upload may take
        // `receive.request_timeout`, 30 s by default) get a bounded share of the drain
        // deadline: they must not use up the time the buffered traces need to be decided.
        // Past it they are no longer waited for: one that completes later finds the
        // shards closed and is refused as "shutting down" (its sender retries elsewhere),
        // and connections still open close when the process exits. None is acknowledged
        // without its spans being taken.
        let serving = async {
            let served = listeners
                .serve(
                    self.buffer.clone(),
                    self.limits.clone(),
                    stop_receiving.clone(),
                )
                .await;
            if let Some(peer_port) = peer_port {
                peer_port.await.ok();
            }
            served
        };
        let served =
            tailgate_core::receive::serve_with_grace(serving, &stop_receiving, drain_deadline / 5)
                .await;
        this.ready.set(false);
        self.ready.set(false);
        let started = *started.get_or_init(tokio::time::Instant::now);
        // What landed here while lingering (a peer was unreachable) gets one more chance.
        // Half of what is left goes to it; then sends still waiting on a peer give up and
        // their spans are decided here (never dropped with the future that held them).
        let remaining = drain_deadline.saturating_sub(started.elapsed());
        let cutoff = {
            let buffer = self.buffer.clone();
            tokio::spawn(async move {
                tokio::time::sleep(remaining / 2).await;
                tracing::warn!("The last handoff did not finish in time; deciding the rest here.");
                buffer.cut_handoffs();
            })
        };
        self.buffer.redistribute().await;
        cutoff.abort();
        let remaining = drain_deadline.saturating_sub(started.elapsed());
        let final_scrape_wait = if scraped {
            self.final_scrape_wait
        } else {
            Duration::ZERO
        };
        let lost = self.drain(remaining).await;
        this.scrapes.after_loss(lost, final_scrape_wait).await;
        served
    }

    /// After a drain whose deadline left spans unsettled (counted in
    /// `tailgate_gateway_drain_lost_spans_total`), [`Gateway::serve`] keeps `/metrics` up
    /// until one more scrape, at most `wait`, so the count reaches the alerts; 0 (the
    /// default) exits at once.
    pub fn with_final_scrape_wait(mut self, wait: Duration) -> Self {
        self.final_scrape_wait = wait;
        self
    }

    /// Decides every buffered trace now and waits for the exporter to finish, at most
    /// `deadline`. Spans still unsettled after it (buffered, queued for a shard or the
    /// backend, in a hand-off) are lost with the process: counted in
    /// `drain_lost_spans` and returned.
    pub async fn drain(self, deadline: Duration) -> u64 {
        // Spans a hand-off pass took out of the shards come back before the shards decide.
        self.buffer.stop_handoffs().await;
        self.peers_stop.cancel();
        self.drain.cancel();
        drop(self.buffer);
        let (mut shards, mut exporters) = (self.shards, self.exporters);
        let finish = async {
            for s in &mut shards {
                if let Err(error) = s.await {
                    tracing::error!(%error, "A shard task failed.");
                }
            }
            for e in &mut exporters {
                if let Err(error) = e.await {
                    tracing::error!(%error, "An exporter task failed.");
                }
            }
        };
        let timed_out = tokio::time::timeout(deadline, finish).await.is_err();
        if timed_out {
            // Stopped now, so that nothing counted lost below is delivered (and counted
            // again) while the process waits for its last scrape.
            for task in shards.iter().chain(&exporters) {
                task.abort();
            }
        }
        // Spans still unsettled: past the deadline, or (every task ended in time) held by
        // one that failed.
        let lost = self.stats.in_flight_spans();
        if lost == 0 {
            tracing::info!(
                "Drained: every buffered trace decided and every kept span delivered or counted failed."
            );
            return 0;
        }
        self.stats.drain_lost_spans.add(lost);
        if timed_out {
            tracing::error!(
                lost_spans = lost,
                "Drain deadline passed with spans still buffered or unexported; they are lost with the process (counted in tailgate_gateway_drain_lost_spans_total)."
            );
        } else {
            tracing::error!(
                lost_spans = lost,
                "The drain ended with spans unsettled (a task failed); they are lost with the process (counted in tailgate_gateway_drain_lost_spans_total)."
            );
        }
        lost
    }
}

/// The shards' queues, their tasks, and the token that drains them.
type ShardSet = (
    Vec<mpsc::Sender<buffer::shard::ShardMsg>>,
    Vec<JoinHandle<()>>,
    CancellationToken,
);

/// Binds `peers.listen` (non-blocking, for Tokio).
fn bind_peer_port(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, GatewayError> {
    let bound = tailgate_core::receive::listen(addr)
        .map_err(|error| GatewayError::PeerListen { addr, error })?;
    tracing::info!(addr = %bound.local_addr().map_or(addr, |a| a), "Peer port listening.");
    Ok(bound)
}

/// Starts `buffer.shards` shards (each its share of the trace, cache and byte limits);
/// returns their queues, tasks and the token that drains them.
fn start_shards(
    config: &GatewayConfig,
    plan: &reload::SharedPlan,
    exporters: &[export::ExportHandle],
    stats: &Arc<GatewayStats>,
    attribute_actions: &Option<Arc<attributes::AttributeActions>>,
    peers: &Arc<peers::Peers>,
) -> Result<ShardSet, GatewayError> {
    let n = config.shard_count();
    // The policy file's decision_cache (the Collector's option) wins over the config's.
    let cache_size = plan
        .load()
        .decision_cache_size
        .unwrap_or(config.buffer.decision_cache_size);
    let per_shard_cache = cache_size.max(1).div_ceil(n);
    let drain = CancellationToken::new();
    let mut senders = Vec::with_capacity(n);
    let mut shards = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = mpsc::channel(config.buffer.shard_queue);
        senders.push(tx);
        let limits = buffer::shard::ShardLimits {
            shards: n,
            cache_size: per_shard_cache,
            early_decision_bytes: config.buffer.early_decision_bytes().div_ceil(n as u64),
            max_spans_per_trace: config.buffer.max_spans_per_trace,
            max_held_bytes: config.buffer.max_buffered_bytes,
        };
        let shard =
            buffer::shard::Shard::new(rx, plan.clone(), limits, exporters.to_vec(), stats.clone())
                .with_attribute_actions(attribute_actions.clone())
                .with_peers(peers.clone());
        shards.push(tokio::spawn(shard.run(drain.clone())));
    }
    Ok((senders, shards, drain))
}

/// Finds the peers (DNS or the static list) and hands traces over when the ring changes.
fn start_discovery(
    config: &GatewayConfig,
    peers: &Arc<peers::Peers>,
    buffer: &Arc<buffer::TraceBuffer>,
    stats: &Arc<GatewayStats>,
    peers_stop: &CancellationToken,
) -> Result<(), GatewayError> {
    if let Some(dns) = &config.peers.dns {
        let discovery = tailgate_core::members::DnsDiscovery::new(dns.clone())?;
        let p = peers.clone();
        tokio::spawn(discovery.run(
            stats.peers.discovery.clone(),
            move |set| p.set_members(set),
            peers_stop.clone(),
        ));
    } else if !config.peers.static_list.is_empty() {
        peers.set_members(
            config
                .peers
                .static_list
                .iter()
                .map(|m| tailgate_core::ring::Member::new(m.as_str()))
                .collect(),
        );
    }
    tokio::spawn(redistribution(
        peers.subscribe(),
        buffer.clone(),
        peers_stop.clone(),
    ));
    Ok(())
}

/// After a ring change, the passes that follow it (1, 2, 4 and 8 seconds apart, so 1, 3, 7 and 15 seconds after it): while
/// routers and peers still see the old ring, spans keep arriving where they no longer
/// belong (a peer that had not yet seen the change sends them on, one hop, to its old
/// owner), and these passes move them on before their traces are decided.
const SETTLE_PASSES: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Hands off what this gateway no longer owns on every ring change, then a few times more
/// while the cluster settles (see [`SETTLE_PASSES`]), and within a second when a peer
/// sent spans this gateway does not own or a due trace waits for a pass (see
/// [`buffer::shard::MAX_DEFER`]).
async fn redistribution(
    mut changes: tokio::sync::watch::Receiver<u64>,
    buffer: Arc<buffer::TraceBuffer>,
    stop: CancellationToken,
) {
    let mut pass = SETTLE_PASSES.len();
    let mut next = tokio::time::Instant::now();
    // A pass asked for (see `Peers::want_pass`), kept apart from the settling schedule so
    // that asking often does not use up its later passes.
    let mut wanted: Option<tokio::time::Instant> = None;
    loop {
        let settling = pass < SETTLE_PASSES.len();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                buffer.redistribute().await;
                pass = 0;
                next = tokio::time::Instant::now() + SETTLE_PASSES[0];
                wanted = None;
            }
            () = buffer.peers().pass_wanted() => {
                // Spans that belong elsewhere arrived, or due traces wait for a pass to
                // take them to their owner: one within a second, settling or not (a
                // settling pass may be 8 s away, past what a due trace waits).
                wanted.get_or_insert(tokio::time::Instant::now() + SETTLE_PASSES[0]);
            }
            () = tokio::time::sleep_until(next), if settling => {
                buffer.redistribute().await;
                pass += 1;
                if let Some(wait) = SETTLE_PASSES.get(pass) {
                    next = tokio::time::Instant::now() + *wait;
                }
            }
            () = timer::sleep_until_some(wanted) => {
                buffer.redistribute().await;
                wanted = None;
            }
            () = stop.cancelled() => return,
        }
    }
}

struct AdminView {
    stats: Arc<GatewayStats>,
    reload: Arc<reload::ReloadStats>,
    plan: reload::SharedPlan,
    ready: Readiness,
    scrapes: tailgate_core::telemetry::Scrapes,
}

impl Admin for AdminView {
    fn render_metrics(&self) -> tailgate_core::telemetry::PromText {
        // Label the per-policy counters with the names of the plan in force.
        self.stats.set_policy_names(self.plan.load().names());
        let mut p = tailgate_core::telemetry::PromText::default();
        tailgate_core::telemetry::render_build_info(&mut p, "gateway");
        tailgate_core::telemetry::render_process_metrics(&mut p);
        metrics::render_reload(&mut p, &self.reload);
        metrics::render_plan(&mut p, &self.plan.load());
        self.stats.render_into(&mut p);
        p
    }

    fn ready(&self) -> bool {
        self.ready.get()
    }

    fn scrapes(&self) -> Option<&tailgate_core::telemetry::Scrapes> {
        Some(&self.scrapes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailgate_core::ring::Member;

    /// Scenario: a gateway with a peer; its ring changes at 0 s, and a pass is wanted at
    /// 1.5 s (a due trace waits for one), between the settling passes; the test plays the
    /// one shard and notes when each pass asks it for its traces.
    /// Guarantees: as docs/resilience.md says, passes come at the change and 1, 3, 7 and
    /// 15 s after it, and a wanted pass within a second (2.5 s) without taking the place
    /// of a settling pass.
    #[tokio::test(start_paused = true)]
    async fn a_wanted_pass_comes_within_a_second_and_keeps_the_settling_passes() {
        let file = policy::PolicyFile::parse(
            std::path::Path::new("p.yaml"),
            "policies: [{name: all, type: always_sample}]\n",
        )
        .unwrap();
        let plan: reload::SharedPlan = Arc::new(arc_swap::ArcSwap::from_pointee(
            policy::plan::PolicyPlan::compile(&file),
        ));
        let stats = Arc::new(GatewayStats::default());
        let me = Member::new("127.0.0.1:4317");
        let peers = peers::Peers::new(Default::default(), me.clone(), stats.clone());
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let buffer = Arc::new(buffer::TraceBuffer::new(
            plan,
            vec![tx],
            stats,
            peers.clone(),
            &Default::default(),
        ));
        let stop = CancellationToken::new();
        let start = tokio::time::Instant::now();
        tokio::spawn(redistribution(peers.subscribe(), buffer, stop.clone()));
        peers.set_members(vec![me, Member::new("127.0.0.1:9")]);
        let wanted = {
            let peers = peers.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                peers.want_pass();
            })
        };
        let mut passes = Vec::new();
        while passes.len() < 6 {
            match rx.recv().await {
                Some(buffer::shard::ShardMsg::Handoff { reply, .. }) => {
                    passes.push(start.elapsed().as_millis());
                    reply.send(Default::default()).ok();
                }
                Some(_) => {}
                None => break,
            }
        }
        wanted.await.unwrap();
        stop.cancel();
        assert_eq!(passes, vec![0, 1_000, 2_500, 3_000, 7_000, 15_000]);
    }
}
