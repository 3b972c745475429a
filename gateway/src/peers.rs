//! Peers: the other gateways of the cluster, found the way the routers find them (a static
//! list or DNS), and the ring they all build from the same member set. The ring says which
//! gateway owns a trace; [`crate::buffer::TraceBuffer`] asks it for every request and
//! forwards spans that reached this gateway by a router's stale ring to their owner (one
//! hop), and hands its buffered traces and decisions to their new owners when the ring
//! changes. On SIGTERM the gateway [`Peers::leave`]s: it owns nothing from then on, so it
//! hands everything off and forwards whatever still reaches it.
//!
//! ```text
//!  DNS / static ─▶ Peers::set_members ─▶ PeerView (ring, clients) ─ArcSwap─▶ TraceBuffer
//!                                      └─▶ changed() ─▶ redistribution task ─▶ shards ─▶ peers
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Deserialize;
use tailgate_core::forward::{GrpcClient, RetryConfig};
use tailgate_core::members::DnsConfig;
use tailgate_core::ring::{Member, Ring};
use tokio::sync::watch;

use crate::metrics::GatewayStats;
use tokio::time::Instant;

/// `peers` in the gateway config. Without it (or with no members) a gateway owns every
/// trace it receives, as a single gateway should.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// This gateway's identity on the ring: its OTLP/gRPC `ip:port` as the routers and the
    /// other gateways see it (and as DNS lists it). Default: `$POD_IP` with the gRPC
    /// receiver's port, else the gRPC receiver's address when it is not `0.0.0.0`.
    #[serde(rename = "self", default)]
    pub advertise: Option<String>,
    /// A fixed list of the gateways' OTLP/gRPC addresses (this one included).
    #[serde(
        rename = "static",
        default,
        deserialize_with = "tailgate_core::members::deserialize_static"
    )]
    pub static_list: Vec<String>,
    /// Discover the gateways through DNS, with the same settings as the routers.
    #[serde(default)]
    pub dns: Option<DnsConfig>,
    /// Keep traces whole while the ring changes: hand buffered traces and decisions to
    /// their new owners, and forward spans that arrive by a stale ring. Default true;
    /// `false` only to measure what it buys.
    #[serde(default = "default_true")]
    pub redistribute: bool,
    /// Timeout of one request to a peer. Default 5s.
    #[serde(default = "default_timeout", with = "tailgate_core::config::duration")]
    pub timeout: Duration,
    /// Retries of one request to a peer; past them the spans stay on this gateway (a
    /// trace may then be decided in two parts, but nothing is lost). Default: 50ms doubling
    /// to 500ms, for at most 3s.
    #[serde(default = "default_retry")]
    pub retry: RetryConfig,
    /// With `leave_linger`, how long a peer that answered it is leaving counts as leaving
    /// while DNS still lists it and it does not answer peer requests again; then it counts
    /// as a peer that failed. Either way it is off this gateway's ring until it answers
    /// (asked every 0.5 s, as the routers probe a gateway that failed) or DNS lists it
    /// anew. Default 5s.
    #[serde(default = "default_down_for", with = "tailgate_core::config::duration")]
    pub down_for: Duration,
    /// After SIGTERM, how long the gateway keeps receiving (and forwarding everything to
    /// the new owners) so that routers can notice it left. Default 3s; keep it above the
    /// routers' DNS `interval` plus the drain's own work, and the whole drain under
    /// Kubernetes' `terminationGracePeriodSeconds`.
    #[serde(default = "default_linger", with = "tailgate_core::config::duration")]
    pub leave_linger: Duration,
    /// The gateways' shared secret (write it as `${env:VAR}` or `${file:PATH}` from a
    /// Kubernetes Secret). Every peer request carries it, and peer requests without it
    /// (forwarded or handed-off spans, decisions) are refused with PERMISSION_DENIED.
    /// Without it, anyone who can reach the receivers can send peer requests. Written
    /// but empty or null (an unset `${env:}` variable, `~`) is refused at load rather than
    /// read as no secret.
    #[serde(default, deserialize_with = "written_secret")]
    pub secret: Option<String>,
    /// DNS names (subject alternative names) a gateway's client certificate carries, e.g.
    /// `tailgate-gateway.tailgate.svc`. With mutual TLS on the receivers
    /// (`receive.tls.client_ca_file`) and `peers.tls` presenting such a certificate, a peer
    /// request is recognised by its certificate and needs no secret; a client certificate
    /// without one of these names (a router's) cannot send peer requests.
    #[serde(default)]
    pub cert_names: Vec<String>,
    /// TLS towards the other gateways (the Collector's `configtls` client keys; they are
    /// dialled by IP, so set `server_name_override`). Their receivers need `receive.tls`.
    /// Default: plaintext.
    #[serde(default)]
    pub tls: Option<tailgate_core::tls::ClientTlsConfig>,
    /// Serve peer requests (forwarded and handed-off spans, decisions) on this address of
    /// their own, e.g. `:4319`, so a NetworkPolicy can let only gateways reach it; the OTLP
    /// receivers then refuse peer requests and this port refuses everything else, each with
    /// PERMISSION_DENIED. Every gateway must use the same port: peers are dialled at their
    /// ring address's IP with this port. It speaks gRPC with `receive.tls`. Default: none,
    /// peer requests arrive on the OTLP/gRPC receiver.
    #[serde(default, with = "tailgate_core::config::listen_addr")]
    pub listen: Option<std::net::SocketAddr>,
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(50),
        max_interval: Duration::from_millis(500),
        max_elapsed_time: Duration::from_secs(3),
    }
}
fn default_down_for() -> Duration {
    Duration::from_secs(5)
}
/// `peers.secret` when the key is written: a string; null (an unset `${env:}` variable,
/// `~`) is read as empty, which [`PeersConfig::validate`] refuses. Refused here instead,
/// the error would name the line of the `peers:` block's first key (this field is read
/// through a buffer that keeps no positions); validation names the key's own line.
fn written_secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(
        <Option<String> as serde::Deserialize>::deserialize(d)?.unwrap_or_default(),
    ))
}

fn default_linger() -> Duration {
    Duration::from_secs(3)
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            advertise: None,
            static_list: Vec::new(),
            dns: None,
            redistribute: true,
            timeout: default_timeout(),
            retry: default_retry(),
            down_for: default_down_for(),
            leave_linger: default_linger(),
            secret: None,
            cert_names: Vec::new(),
            tls: None,
            listen: None,
        }
    }
}

impl PeersConfig {
    /// Checks what the schema cannot; `Err((key, message))`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(dns) = &self.dns {
            dns.validate()
                .map_err(|e| (format!("peers.dns.{}", e.key), e.rule.to_owned()))?;
            if !self.static_list.is_empty() {
                return Err((
                    "peers.static".into(),
                    "give either peers.static or peers.dns, not both".into(),
                ));
            }
        }
        // Members are dialled as host:port, with TLS as peers.tls says, and matched against
        // this gateway's own ip:port (peers.self): a scheme would change how one is dialled
        // and never match.
        if let Some((i, m)) = self
            .static_list
            .iter()
            .enumerate()
            .find(|(_, m)| m.contains("://"))
        {
            return Err((
                format!("peers.static[{i}]"),
                format!("{m:?}: write host:port (as peers.self and DNS give them); peers.tls decides whether gateways are dialled over TLS"),
            ));
        }
        if let Some((i, m, problem)) = self
            .static_list
            .iter()
            .enumerate()
            .find_map(|(i, m)| tailgate_core::members::member_problem(m).map(|p| (i, m, p)))
        {
            return Err((format!("peers.static[{i}]"), format!("{m:?} {problem}")));
        }
        if let Some(a) = &self.advertise {
            if a.parse::<SocketAddr>().is_err() {
                return Err((
                    "peers.self".into(),
                    format!("{a:?} is not an ip:port address"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(("peers.timeout".into(), "must be greater than 0".into()));
        }
        if let Some(bad) = self
            .cert_names
            .iter()
            .find(|n| !tailgate_core::tls::is_dns_name(n))
        {
            return Err((
                "peers.cert_names".into(),
                format!("{bad:?} is not a DNS name"),
            ));
        }
        if let Some(secret) = &self.secret {
            if secret.is_empty() {
                return Err((
                    "peers.secret".into(),
                    "written but empty or null (an unset ${env:} variable?): set it, or remove the key to run without a secret".into(),
                ));
            }
            // A header value may hold spaces, tabs and bytes past ASCII, which clients and
            // proxies trim or re-encode: a secret that reads the same everywhere is asked.
            if let Some(c) = secret.chars().find(|c| !c.is_ascii_graphic()) {
                return Err((
                    "peers.secret".into(),
                    format!("must be visible ASCII (letters, digits, punctuation), as it travels in a header; it holds {c:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Whether any peer source is configured.
    pub fn enabled(&self) -> bool {
        self.dns.is_some() || !self.static_list.is_empty()
    }

    /// This gateway's member name: `self`, else `$POD_IP` (from `pod_ip`) with the port of
    /// `grpc`, else `grpc` when it is a specific address.
    pub fn identity(
        &self,
        grpc: Option<SocketAddr>,
        pod_ip: Option<String>,
    ) -> Result<Member, IdentityError> {
        if let Some(a) = &self.advertise {
            return Ok(Member::new(normalise_addr(a)));
        }
        let grpc = grpc.ok_or(IdentityError::NoGrpcReceiver)?;
        if let Some(ip) = pod_ip.filter(|s| !s.is_empty()) {
            let parsed: std::net::IpAddr = ip.parse().map_err(|_| IdentityError::PodIp(ip))?;
            return Ok(Member::new(
                SocketAddr::new(parsed, grpc.port()).to_string(),
            ));
        }
        if grpc.ip().is_unspecified() {
            return Err(IdentityError::Unknown(grpc));
        }
        Ok(Member::new(grpc.to_string()))
    }
}

/// Why a gateway cannot tell its own address on the ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Peers dial the gRPC receiver, and there is none.
    #[error("peers need the OTLP/gRPC receiver (receive.grpc)")]
    NoGrpcReceiver,
    /// `POD_IP` is set to something that is not an IP.
    #[error("POD_IP {0:?} is not an IP address")]
    PodIp(String),
    /// The receiver listens on every interface and nothing says which address is ours.
    #[error("cannot tell this gateway's address on the ring: receive.grpc is {0}; set peers.self or the POD_IP environment variable")]
    Unknown(SocketAddr),
}

fn normalise_addr(a: &str) -> String {
    a.parse::<SocketAddr>()
        .map_or_else(|_| a.to_owned(), |s| s.to_string())
}

/// Who owns a trace, as this gateway sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// This gateway.
    Local,
    /// The peer at this index of [`PeerView::ring`].
    Peer(usize),
}

/// The redistribution rule, apart from any I/O; [`PeerView`] and the simulator both apply
/// it. A span or a buffered trace belongs to `ring_owner`, its owner on the gateways' ring,
/// unless that is this gateway (`self_index`), nobody (an empty ring), or a peer `is_down`
/// names: then it stays here. A handoff pass moves exactly the buffered traces (and cached
/// decisions) for which this names a peer, keeping their first-seen time, so their
/// decision comes when it would have. The gateway names no peer down: one that failed is
/// off its ring ([`Peers::mark_down`]), so its traces belong to the next member. The
/// simulator names the dead members: its rings are DNS's, which still list them, so a
/// dead owner's spans stay where they arrived (the gateway's next member is the gateway
/// the routers, which also route around it, sent them to, unless they had not noticed
/// yet).
pub fn owner_rule(
    ring_owner: Option<usize>,
    self_index: Option<usize>,
    is_down: impl Fn(usize) -> bool,
) -> Owner {
    match ring_owner {
        Some(i) if Some(i) != self_index && !is_down(i) => Owner::Peer(i),
        _ => Owner::Local,
    }
}

/// One immutable view of the cluster: the ring and a client per peer.
pub struct PeerView {
    /// The ring over the members (without this gateway while it leaves).
    pub ring: Ring,
    /// This gateway's index on the ring, if it is on it.
    pub self_index: Option<usize>,
    /// `clients[i]` talks to `ring.members()[i]` (`None` for this gateway).
    clients: Vec<Option<GrpcClient>>,
    /// Set once the gateway has started to leave.
    pub leaving: bool,
    /// Whether spans and traces move between gateways at all.
    pub redistribute: bool,
}

// === impl PeerView ===

impl PeerView {
    /// A view with no peers: everything is local.
    pub fn standalone() -> Self {
        PeerView {
            ring: Ring::new([]),
            self_index: None,
            clients: Vec::new(),
            leaving: false,
            redistribute: false,
        }
    }

    /// Whether requests need an ownership check at all.
    pub fn routes(&self) -> bool {
        self.redistribute && !self.ring.is_empty()
    }

    /// Who owns `trace_id`. Peers that failed are not on the ring (see
    /// [`Peers::mark_down`]): their traces belong to the next member, as on the routers'.
    pub fn owner(&self, trace_id: &[u8; 16]) -> Owner {
        self.owner_of_index(self.ring.owner_index(trace_id))
    }

    /// [`PeerView::owner`] from a ring index.
    pub fn owner_of_index(&self, index: Option<usize>) -> Owner {
        owner_rule(index, self.self_index, |_| false)
    }

    /// The client of peer `i`.
    pub fn client(&self, i: usize) -> Option<&GrpcClient> {
        self.clients.get(i).and_then(Option::as_ref)
    }

    /// The member at `i`.
    pub fn member(&self, i: usize) -> Option<&Member> {
        self.ring.members().get(i)
    }
}

pub use crate::metrics::PeerStats;

/// How often a peer off the ring (it answered it is leaving, or failed) is asked whether
/// it takes peer requests again (see [`Peers::depart`], [`Peers::mark_down`]): about as
/// soon as the routers' probes (every second by default) take a gateway back.
const AWAY_PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Why and until when a member is off the ring.
#[derive(Debug, Clone, Copy)]
struct Away {
    /// Until when it counts as leaving (it answered so); then, still listed and not
    /// answering, as failed. `None`: a request to it failed. Either way it is back on the
    /// ring only when it answers, or when DNS lists it anew.
    leaving_until: Option<Instant>,
    /// Not asked before this: a peer that fails and answers probes (its requests time out,
    /// its probes do not) would otherwise be back within one probe, its traces moved there
    /// and back every few seconds.
    not_before: Instant,
    /// Which watch brings it back: a watch that finds another generation in its place
    /// (the member was dropped and marked again meanwhile) stops.
    generation: u64,
}

/// The least time a peer that failed stays off the ring: the routers' probe interval.
const DOWN_AT_LEAST: Duration = Duration::from_secs(1);

/// The cluster as this gateway sees it.
pub struct Peers {
    config: PeersConfig,
    me: Member,
    view: ArcSwap<PeerView>,
    members: Mutex<Vec<Member>>,
    /// Members off the ring for now: those that answered they are leaving (see
    /// [`Peers::depart`]) and those that failed (see [`Peers::mark_down`]).
    away: Mutex<HashMap<Member, Away>>,
    /// The last [`Away::generation`] given.
    away_generation: std::sync::atomic::AtomicU64,
    clients: Mutex<HashMap<Member, GrpcClient>>,
    leaving: AtomicBool,
    changed: watch::Sender<u64>,
    /// Asks for a handoff pass soon (spans arrived here that another gateway owns).
    pass_wanted: tokio::sync::Notify,
    stats: Arc<GatewayStats>,
    /// When a peer refusing this gateway's credentials was last logged, and the refusals
    /// since (at most once a minute).
    refused_logged: Mutex<tailgate_core::retry::Tally>,
}

// === impl Peers ===

impl Peers {
    /// Peers of the gateway `me`, with no members known yet (everything local).
    pub fn new(config: PeersConfig, me: Member, stats: Arc<GatewayStats>) -> Arc<Self> {
        Arc::new(Peers {
            config,
            me,
            view: ArcSwap::from_pointee(PeerView::standalone()),
            members: Mutex::new(Vec::new()),
            away: Mutex::new(HashMap::new()),
            away_generation: std::sync::atomic::AtomicU64::new(0),
            clients: Mutex::new(HashMap::new()),
            leaving: AtomicBool::new(false),
            changed: watch::Sender::new(0),
            pass_wanted: tokio::sync::Notify::new(),
            stats,
            refused_logged: Mutex::default(),
        })
    }

    /// The config.
    pub fn config(&self) -> &PeersConfig {
        &self.config
    }

    /// This gateway's member name.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The view in force.
    pub fn view(&self) -> arc_swap::Guard<Arc<PeerView>> {
        self.view.load()
    }

    /// The view in force, to keep.
    pub fn view_full(&self) -> Arc<PeerView> {
        self.view.load_full()
    }

    /// Whether the gateway is leaving the ring.
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::Relaxed)
    }

    /// A receiver that sees every change of the view (a generation number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks for a handoff pass soon: a peer sent spans this gateway does not own (its view
    /// of the ring is older or newer than this one's), and they should not wait for the
    /// next ring change to move.
    pub fn want_pass(&self) {
        self.pass_wanted.notify_one();
    }

    /// Completes when a pass is wanted (see [`Peers::want_pass`]).
    pub async fn pass_wanted(&self) {
        self.pass_wanted.notified().await;
    }

    /// Replaces the member set (from the static list or DNS).
    pub fn set_members(&self, members: Vec<Member>) {
        let members = tailgate_core::members::normalise(members);
        {
            let Ok(mut m) = self.members.lock() else {
                return;
            };
            if *m == members {
                return;
            }
            // One DNS no longer lists has left for good: forget it was leaving.
            if let Ok(mut away) = self.away.lock() {
                away.retain(|d, _| members.contains(d));
            }
            *m = members;
        }
        self.rebuild();
    }

    /// A peer answered that it is leaving the ring (it got SIGTERM): this gateway leaves it
    /// off its ring at once rather than when DNS drops it, so spans and traces go straight
    /// to the next owner instead of through a gateway about to stop (with several leaving
    /// at once they would be passed between them). It comes back when DNS lists it anew
    /// after dropping it, or when it answers a peer request again (asked every
    /// `AWAY_PROBE_INTERVAL`: it restarted at the same address). After
    /// `leave_linger + down_for` still listed and not answering, it counts as a peer that
    /// failed ([`Peers::mark_down`]): a pass no longer skips it as leaving.
    pub fn depart(self: &Arc<Self>, member: &Member) {
        let now = Instant::now();
        let back = now + self.config.leave_linger + self.config.down_for;
        let Some(generation) = self.set_away(member, |was| match was {
            // Told again (each request in flight answers so): the first time stands, and
            // with it the time that lets the member back.
            Some(a) if a.leaving_until.is_some() => None,
            _ => Some((Some(back), now)),
        }) else {
            return;
        };
        tracing::info!(%member, "A peer is leaving the ring; routing around it.");
        self.rebuild();
        self.watch_away(member, generation);
    }

    /// A request to peer `member` could not be delivered (it cannot be reached, or still
    /// failed past the retries): it is left off this gateway's ring until it answers a
    /// peer request again (asked every `AWAY_PROBE_INTERVAL`, from `DOWN_AT_LEAST` on), as
    /// the routers leave a gateway that fails out of theirs until a probe passes. Its
    /// traces go to the next owner on the ring, as the routers' do: keeping them wherever
    /// they were (the rule before) split them whenever that was not the next owner, as on a
    /// gateway leaving the ring beside a listed gateway that was down. Already away, or no
    /// longer listed, nothing changes.
    pub fn mark_down(self: &Arc<Self>, member: &Member, why: &str) {
        let now = Instant::now();
        let Some(generation) = self.set_away(member, |was| match was {
            Some(_) => None,
            None => Some((None, now + DOWN_AT_LEAST)),
        }) else {
            return;
        };
        // Once per transition, with its cause: the failed sends' own log is once a minute
        // for all peers, so a second peer down within the minute would show no reason.
        tracing::warn!(%member, error = %why, "A peer cannot be reached; routing around it until it answers.");
        self.rebuild();
        self.watch_away(member, generation);
    }

    /// Sets `member` away as `how` says from what it was (`None`: leave it as it is); only
    /// a listed member (one a late failure or answer names after DNS dropped it would
    /// stay away, unwatched, when DNS lists it again). Returns the new entry's generation.
    fn set_away(
        &self,
        member: &Member,
        how: impl FnOnce(Option<&Away>) -> Option<(Option<Instant>, Instant)>,
    ) -> Option<u64> {
        // Members, then away: the order `rebuild` takes them in.
        let members = self.members.lock().ok()?;
        if !members.contains(member) {
            return None;
        }
        let mut away = self.away.lock().ok()?;
        let (leaving_until, not_before) = how(away.get(member))?;
        let generation = self.away_generation.fetch_add(1, Ordering::Relaxed) + 1;
        away.insert(
            member.clone(),
            Away {
                leaving_until,
                not_before,
                generation,
            },
        );
        Some(generation)
    }

    /// Asks `member`, away from the ring, every `AWAY_PROBE_INTERVAL` whether it takes peer
    /// requests, and puts it back on the ring at its first answer (or when its time to
    /// come back is up); ends when its entry is gone or is another generation's, or the
    /// member is no longer listed (its entry then goes too).
    fn watch_away(self: &Arc<Self>, member: &Member, generation: u64) {
        let client = self.client_for(member);
        let (weak, member) = (Arc::downgrade(self), member.clone());
        tokio::spawn(async move {
            loop {
                let wake = {
                    let Some(peers) = weak.upgrade() else {
                        return;
                    };
                    let Ok(away) = peers.away.lock() else {
                        return;
                    };
                    match away.get(&member) {
                        Some(a) if a.generation == generation => {
                            let next = Instant::now() + AWAY_PROBE_INTERVAL;
                            let next = next.max(a.not_before);
                            a.leaving_until.map_or(next, |b| next.min(b))
                        }
                        _ => return,
                    }
                };
                tokio::time::sleep_until(wake).await;
                let Some(peers) = weak.upgrade() else {
                    return;
                };
                let listed = peers.members.lock().is_ok_and(|m| m.contains(&member));
                let entry = peers.away.lock().ok().and_then(|a| a.get(&member).copied());
                let Some(entry) = entry.filter(|a| a.generation == generation) else {
                    return;
                };
                if !listed {
                    // Dropped by DNS: forgotten, so that listed again it starts afresh.
                    peers.forget_away(&member, generation);
                    return;
                }
                if entry.leaving_until.is_some_and(|b| Instant::now() >= b) {
                    // Its time as a leaver is up and it is still listed: from now on it is
                    // a peer that failed, back when it answers. Put back unasked, a gateway
                    // that left for good (a static list) took forwards that failed first.
                    peers.leaving_is_over(&member, generation);
                    continue;
                }
                // Not kept alive by its watch while the probe waits (up to `timeout`).
                drop(peers);
                // Restarted at the same address (a rolling restart with a static list, or a
                // pod DNS never stopped listing), or reachable again, it takes peer
                // requests: back at once, as the routers take it back at their first
                // probe. Waiting out a fixed time while the routers sent it spans split the
                // traces due meanwhile between it and the gateways still routing around it.
                let answers = match &client {
                    Some(c) => c.peer_answers().await,
                    None => Err(tonic::Status::unavailable("no client for this peer")),
                };
                if let Err(status) = &answers {
                    // A peer refusing this gateway's credentials is up and will never take
                    // its requests: it stays off this ring (forwards to it would fail), so
                    // this gateway's ring differs from the others' until the secrets agree.
                    // Said, or the log showed only the blip that put it off the ring.
                    if tailgate_core::forward::is_refused_credentials(status) {
                        if let Some(peers) = weak.upgrade() {
                            peers.log_refused_credentials(&member, status);
                        }
                    }
                }
                if answers.is_ok() {
                    let Some(peers) = weak.upgrade() else {
                        return;
                    };
                    if peers.forget_away(&member, generation) {
                        tracing::info!(%member, "A peer answers again; routing to it.");
                        peers.rebuild();
                    }
                    return;
                }
            }
        });
    }

    /// Logs that `member` refuses this gateway's credentials (`status`: the answer to a
    /// probe, or to spans or decisions sent to it), at most once a minute with the
    /// refusals since.
    pub(crate) fn log_refused_credentials(&self, member: &Member, status: &tonic::Status) {
        if let Some(refusals) = tailgate_core::retry::Tally::one_more(&self.refused_logged) {
            tracing::warn!(%member, error = %status.message(), refusals, "A peer refuses this gateway's credentials: every gateway must have the same peers.secret (or certificates peers.cert_names accepts). What is meant for it stays here, and once it is off this gateway's ring it stays off, so this ring differs from the other gateways'. Logged at most once a minute, refusals since counted.");
        }
    }

    /// Turns `member`'s away entry, if still `generation`'s, from leaving into failed: off
    /// the ring until it answers.
    fn leaving_is_over(&self, member: &Member, generation: u64) {
        if let Ok(mut away) = self.away.lock() {
            if let Some(a) = away.get_mut(member).filter(|a| a.generation == generation) {
                a.leaving_until = None;
            }
        }
    }

    /// Removes `member`'s away entry if it is still `generation`'s; whether it was.
    fn forget_away(&self, member: &Member, generation: u64) -> bool {
        let Ok(mut away) = self.away.lock() else {
            return false;
        };
        if away.get(member).is_some_and(|a| a.generation == generation) {
            away.remove(member);
            true
        } else {
            false
        }
    }

    /// Whether `member` answered that it is leaving and is routed around (see
    /// [`Peers::depart`]).
    pub fn has_departed(&self, member: &Member) -> bool {
        self.away
            .lock()
            .is_ok_and(|a| a.get(member).is_some_and(|a| a.leaving_until.is_some()))
    }

    /// Whether `member` is off this gateway's ring for now, leaving or failed (see
    /// [`Peers::depart`], [`Peers::mark_down`]): a pass stops sending it what is left.
    pub fn is_away(&self, member: &Member) -> bool {
        self.away.lock().is_ok_and(|a| a.contains_key(member))
    }

    /// Where a peer is dialled: its ring address, with the port `peers.listen` names when
    /// peer traffic has a port of its own (a member is `ip:port` or `host:port`).
    fn peer_endpoint(&self, member: &str) -> String {
        match (self.config.listen, member.rsplit_once(':')) {
            (Some(listen), Some((host, _))) => format!("{host}:{}", listen.port()),
            _ => member.to_owned(),
        }
    }

    /// A new client for peer `m` (`None`, logged, when its settings cannot make one). A
    /// peer that refuses connections is left out at once: its spans stay here instead of
    /// waiting out the retries.
    fn client_for(&self, m: &Member) -> Option<GrpcClient> {
        let endpoint = self.peer_endpoint(m.as_str());
        GrpcClient::with_tls_config(
            &endpoint,
            &[],
            self.config.timeout,
            self.config.retry.clone(),
            tailgate_core::forward::Compression::None,
            self.config.tls.as_ref(),
        )
        .map(GrpcClient::give_up_when_unreachable)
        .and_then(|c| c.with_peer_secret(self.config.secret.as_deref()))
        .inspect_err(|error| {
            tracing::error!(member = %m, %error, "Cannot create a client for a peer.");
        })
        .ok()
    }

    /// Leaves the ring: from now on every trace belongs to another gateway.
    pub fn leave(&self) {
        if !self.leaving.swap(true, Ordering::Relaxed) {
            tracing::info!(member = %self.me, "Leaving the ring; handing off buffered traces.");
            self.rebuild();
        }
    }

    /// Builds and stores the view. The member lock is held from reading `leaving` to storing
    /// the view, so rebuilds are serial and the last one stored saw the last `leave`: a
    /// rebuild from DNS racing `leave` cannot store a view with the leaver on its ring.
    fn rebuild(&self) {
        let Ok(all) = self.members.lock() else {
            return;
        };
        let leaving = self.is_leaving();
        let Ok(away) = self.away.lock() else {
            return;
        };
        let members: Vec<Member> = all
            .iter()
            .filter(|m| {
                let me_leaving = leaving && **m == self.me;
                !me_leaving && !away.contains_key(*m)
            })
            .cloned()
            .collect();
        drop(away);
        let ring = Ring::new(members);
        let self_index = ring.members().iter().position(|m| *m == self.me);
        let clients = {
            let Ok(mut cache) = self.clients.lock() else {
                return;
            };
            cache.retain(|m, _| ring.members().contains(m));
            ring.members()
                .iter()
                .map(|m| {
                    if *m == self.me {
                        return None;
                    }
                    if let Some(c) = cache.get(m) {
                        return Some(c.clone());
                    }
                    let c = self.client_for(m)?;
                    cache.insert(m.clone(), c.clone());
                    Some(c)
                })
                .collect()
        };
        let n = ring.members().len();
        self.stats.peers.members.set(n as u64);
        self.stats.peers.ring_changes.add(1);
        tracing::info!(
            members = n,
            on_ring = self_index.is_some(),
            leaving,
            "Gateway ring changed."
        );
        self.view.store(Arc::new(PeerView {
            ring,
            self_index,
            clients,
            leaving,
            redistribute: self.config.redistribute,
        }));
        drop(all);
        self.changed.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_gateway_agrees_on_owners_and_a_leaver_owns_nothing() {
        let names = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];
        let members: Vec<Member> = names.iter().map(|n| Member::new(*n)).collect();
        let peers: Vec<_> = names
            .iter()
            .map(|n| {
                let p = Peers::new(PeersConfig::default(), Member::new(*n), Default::default());
                p.set_members(members.clone());
                p
            })
            .collect();
        let mut local = [0usize; 3];
        for t in 0..3000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&t.to_le_bytes());
            let owners: Vec<Owner> = peers.iter().map(|p| p.view().owner(&id)).collect();
            // Exactly one gateway thinks it owns the trace, and the others point at it.
            let l: Vec<usize> = (0..3).filter(|i| owners[*i] == Owner::Local).collect();
            assert_eq!(l.len(), 1, "{owners:?}");
            local[l[0]] += 1;
        }
        assert!(local.iter().all(|n| *n > 500), "{local:?}");
        peers[0].leave();
        let view = peers[0].view();
        assert!(view.self_index.is_none() && view.leaving);
        for t in 0..300u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&t.to_le_bytes());
            assert!(matches!(view.owner(&id), Owner::Peer(_)));
        }
    }

    /// A ring rebuilt from DNS while the gateway leaves must not put it back on its own
    /// ring: whichever rebuild stores its view last has to see `leaving` (issue 14 item 8).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rebuild_racing_leave_never_puts_a_leaver_back_on_the_ring() {
        let me = Member::new("127.0.0.2:4317");
        let sets: [Vec<Member>; 2] = [
            ["127.0.0.2:4317", "127.0.0.3:4317"]
                .map(Member::new)
                .to_vec(),
            ["127.0.0.2:4317", "127.0.0.4:4317"]
                .map(Member::new)
                .to_vec(),
        ];
        let rt = tokio::runtime::Handle::current();
        for round in 0..60u32 {
            let peers = Peers::new(PeersConfig::default(), me.clone(), Default::default());
            peers.set_members(sets[0].clone());
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _rt = rt.enter();
                    for i in 0..20 {
                        peers.set_members(sets[(i + 1) % 2].clone());
                    }
                });
                s.spawn(|| {
                    let _rt = rt.enter();
                    for _ in 0..round % 20 {
                        std::hint::spin_loop();
                    }
                    peers.leave();
                });
            });
            let view = peers.view();
            assert!(view.leaving, "round {round}");
            assert!(
                view.self_index.is_none(),
                "round {round}: back on its own ring"
            );
        }
    }

    #[test]
    fn identity_comes_from_self_then_pod_ip_then_the_listen_address() {
        let grpc = Some("0.0.0.0:4317".parse().unwrap());
        let mut c = PeersConfig::default();
        assert_eq!(
            c.identity(grpc, Some("10.1.2.3".into())).unwrap().as_str(),
            "10.1.2.3:4317"
        );
        assert_eq!(
            c.identity(grpc, None),
            Err(IdentityError::Unknown("0.0.0.0:4317".parse().unwrap()))
        );
        assert!(matches!(
            c.identity(grpc, Some("pod".into())),
            Err(IdentityError::PodIp(ip)) if ip == "pod"
        ));
        assert_eq!(c.identity(None, None), Err(IdentityError::NoGrpcReceiver));
        assert_eq!(
            c.identity(Some("127.0.0.5:4317".parse().unwrap()), None)
                .unwrap()
                .as_str(),
            "127.0.0.5:4317"
        );
        c.advertise = Some("10.0.0.9:4317".into());
        assert_eq!(c.identity(grpc, None).unwrap().as_str(), "10.0.0.9:4317");
    }

    /// Scenario: a request to a member fails after DNS dropped it (it was in flight), then
    /// DNS lists it again; and a member marked down while listed is dropped and listed
    /// again.
    /// Guarantees: either way it is back on the ring once listed: a late failure does not
    /// leave it off for good, unwatched (a review found that sequence possible).
    #[tokio::test]
    async fn a_member_listed_again_is_back_on_the_ring() {
        let names = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];
        let all: Vec<Member> = names.iter().map(|n| Member::new(*n)).collect();
        let peers = Peers::new(PeersConfig::default(), all[0].clone(), Default::default());
        peers.set_members(all.clone());
        let without = vec![all[0].clone(), all[2].clone()];
        peers.set_members(without.clone());
        peers.mark_down(&all[1], "unreachable in a test");
        assert!(
            !peers.is_away(&all[1]),
            "a member DNS dropped is not marked"
        );
        peers.set_members(all.clone());
        assert_eq!(peers.view().ring.members().len(), 3);

        peers.mark_down(&all[1], "unreachable in a test");
        assert!(peers.is_away(&all[1]));
        assert_eq!(peers.view().ring.members().len(), 2);
        peers.set_members(without);
        peers.set_members(all.clone());
        assert!(!peers.is_away(&all[1]));
        assert_eq!(peers.view().ring.members().len(), 3);
    }

    /// Scenario: a gateway of a three-member ring hears that one member is leaving; later
    /// DNS drops it and lists it again (a new pod at the address), or it stays listed and
    /// never answers (nothing listens at its address).
    /// Guarantees: it is off the ring at once and only once (one ring change per
    /// departure); back as soon as DNS lists it anew; still listed, it counts as leaving
    /// until `leave_linger + down_for` from the first time it said so (saying it again
    /// does not move that time), then as failed: still off the ring, not put back unasked
    /// (a black-box re-run saw a gateway that had left put back and a forward to it fail).
    #[tokio::test(start_paused = true)]
    async fn a_leaving_peer_is_routed_around_until_dns_drops_it_or_its_time_is_up() {
        let names = ["127.0.0.2:4317", "127.0.0.3:4317", "127.0.0.4:4317"];
        let all: Vec<Member> = names.iter().map(|n| Member::new(*n)).collect();
        let stats = Arc::new(GatewayStats::default());
        let peers = Peers::new(PeersConfig::default(), all[0].clone(), stats.clone());
        peers.set_members(all.clone());
        let on_ring = |p: &Peers| p.view().ring.members().to_vec();
        let changes = stats.peers.ring_changes.get();
        peers.depart(&all[2]);
        peers.depart(&all[2]);
        assert_eq!(on_ring(&peers), all[..2]);
        assert_eq!(stats.peers.ring_changes.get(), changes + 1);
        // DNS drops it, then lists it again: back at once.
        peers.set_members(all[..2].to_vec());
        peers.set_members(all.clone());
        assert_eq!(on_ring(&peers), all);
        // Still listed: leaving for leave_linger + down_for (3 s + 5 s) from the first time
        // it said so (it says so again from requests still in flight), then failed.
        peers.depart(&all[1]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        peers.depart(&all[1]);
        assert!(peers.has_departed(&all[1]));
        tokio::time::sleep(Duration::from_millis(5_900)).await;
        assert!(peers.has_departed(&all[1]));
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!peers.has_departed(&all[1]));
        assert!(peers.is_away(&all[1]));
        assert_eq!(on_ring(&peers), vec![all[0].clone(), all[2].clone()]);
    }
}
