//! The router's stage: scan a request, find each span's owner on the ring, re-frame one
//! part per owner from the original bytes, and admit all parts to their gateways' queues at
//! once.
//!
//! Backpressure is by flow control: while a gateway's queue or the router's is full, a new
//! request waits before its body is read ([`SpanSink::ready`]), one at a time in arrival
//! order, so HTTP/2 flow control holds its sender back; only past `forward.queue_wait` is it
//! refused (`RESOURCE_EXHAUSTED` with a retry hint), still unread, so its retry cannot
//! duplicate anything; so is one that finds `forward.max_held_requests` already waiting
//! (each may hold a stream window of unread data). Requests let through and not yet
//! admitted count against the room at the running mean request size for a second or two
//! ([`crate::passes`]: a stream that stalls must not hold the room); a request read when
//! the queues are past twice their limit anyway is refused.
//!
//! The ring and the forwarders it points at are one immutable [`RingState`] behind an
//! `ArcSwap`: the hot path loads it once per request and never locks. Membership changes
//! (discovery) and health changes (a gateway marked down or back up) build a new state: the
//! ring over the healthy members, the same for every router since it depends only on the
//! member set. Parts queued for a gateway that left or went down are re-split over the new
//! ring, so accepted data is never dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use bytes::Bytes;
use tailgate_core::forward::GrpcClient;
use tailgate_core::receive::{
    Accepted, Ready, Refusal, SpanSink, CUTS_TOO_LARGE_HEADER, DEFAULT_RETRY_AFTER,
};
use tailgate_core::ring::{Member, Ring};
use tailgate_core::telemetry::{Admin, PromText, Readiness};
use tailgate_core::wire::Scan;
use tokio::task::JoinHandle;

use crate::config::ForwardConfig;
use crate::forward::{Admission, Books, Forwarder, Hooks, Part};
use crate::metrics::{MemberSample, RouterStats};
use crate::passes::{Passes, PASS_WINDOW};

/// The ring in force and the forwarder of each of its members, index-aligned.
pub struct RingState {
    /// The ring over the healthy members.
    pub ring: Ring,
    /// `forwarders[i]` sends to `ring.members()[i]`.
    pub forwarders: Vec<Arc<Forwarder>>,
}

/// The smallest [`Forwarder::request_cap`] of the members (`usize::MAX` if none has one).
fn members_cap(m: &Membership) -> usize {
    m.members
        .iter()
        .filter_map(|x| m.forwarders.get(x))
        .map(|f| f.request_cap())
        .min()
        .unwrap_or(usize::MAX)
}

struct Membership {
    /// The members discovered (healthy or not).
    members: Vec<Member>,
    /// A forwarder per discovered member.
    forwarders: HashMap<Member, Arc<Forwarder>>,
    /// Forwarders of members that left the ring, while they may have spans pending (in
    /// flight: what was queued went to the new owners; pruned once settled): counted in
    /// [`Router::pending_spans`] and by a drain's deadline, not lost from the books.
    left: Vec<Arc<Forwarder>>,
    tasks: Vec<JoinHandle<()>>,
}

/// How long a drain whose deadline passed waits for the sends and re-routes changing the
/// books to finish (each takes microseconds; this bounds a pathological one).
const BOOKS_CLOSE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// The pause before a drain restarts forwarders a second time (see [`Router::drain`]),
/// doubling up to [`DRAIN_RETRY_MAX`].
const DRAIN_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(50);

/// The longest pause between a drain's restarts of forwarders whose gateways are down.
const DRAIN_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(1);

/// The router stage.
pub struct Router {
    state: ArcSwap<RingState>,
    membership: Mutex<Membership>,
    cfg: ForwardConfig,
    global_queued: Arc<AtomicUsize>,
    /// Told when queued bytes leave a queue.
    room: Arc<tokio::sync::Notify>,
    /// Held by the one request waiting for room; the others wait for it in arrival order.
    gate: tokio::sync::Semaphore,
    /// Requests waiting in [`SpanSink::ready`] now.
    waiting: AtomicUsize,
    /// Of those, per sender address: no sender may hold more than
    /// [`Router::held_per_sender`] of the `max_held_requests` places.
    waiting_by_sender: Mutex<HashMap<IpAddr, usize>>,
    /// Requests let through and not yet admitted, counted for a second or two (see
    /// [`crate::passes`]).
    passes: Arc<Passes>,
    /// A running mean of request sizes, bytes: what a passed request is expected to add.
    mean_request: AtomicUsize,
    /// The smallest [`Forwarder::request_cap`] of the gateways on the ring (`usize::MAX`
    /// while none has one): requests are cut to it for every gateway (each forwarder
    /// gathers them again up to its own cap). Lowered by a refusal, recomputed when the
    /// ring is rebuilt, so a gateway that left, or whose cap expired, no longer cuts them.
    request_cap: AtomicUsize,
    stats: Arc<RouterStats>,
    /// Open until a drain's deadline; moves of parts between queues hold them open.
    books: Arc<Books>,
    ready: Readiness,
    /// Whether a greeted gateway was ever up (see `Admin::ready`).
    been_ready: std::sync::atomic::AtomicBool,
    /// `/metrics` answers, waited for after a drain that lost spans.
    scrapes: tailgate_core::telemetry::Scrapes,
    /// How long [`crate::run`] waits for that scrape, in milliseconds (0: not at all).
    final_scrape_wait_ms: std::sync::atomic::AtomicU64,
    this: Weak<Router>,
}

// === impl Router ===

impl Router {
    /// A router with no members yet; see [`Router::set_members`].
    pub fn new(cfg: ForwardConfig) -> Arc<Self> {
        Arc::new_cyclic(|this| Router {
            state: ArcSwap::from_pointee(RingState {
                ring: Ring::new([]),
                forwarders: Vec::new(),
            }),
            membership: Mutex::new(Membership {
                members: Vec::new(),
                forwarders: HashMap::new(),
                left: Vec::new(),
                tasks: Vec::new(),
            }),
            cfg,
            global_queued: Arc::new(AtomicUsize::new(0)),
            room: Arc::new(tokio::sync::Notify::new()),
            gate: tokio::sync::Semaphore::new(1),
            waiting: AtomicUsize::new(0),
            waiting_by_sender: Mutex::default(),
            passes: Passes::new(PASS_WINDOW),
            mean_request: AtomicUsize::new(64 << 10),
            request_cap: AtomicUsize::new(usize::MAX),
            stats: Arc::new(RouterStats::default()),
            books: Arc::default(),
            ready: Readiness::default(),
            been_ready: std::sync::atomic::AtomicBool::new(false),
            scrapes: tailgate_core::telemetry::Scrapes::default(),
            final_scrape_wait_ms: std::sync::atomic::AtomicU64::new(0),
            this: this.clone(),
        })
    }

    /// The router's counters.
    pub fn stats(&self) -> &RouterStats {
        &self.stats
    }

    /// Readiness shown on `/readyz`.
    pub fn readiness(&self) -> &Readiness {
        &self.ready
    }

    /// The state in force.
    pub fn ring_state(&self) -> Arc<RingState> {
        self.state.load_full()
    }

    /// Spans accepted but not yet delivered or failed (those in flight to gateways that
    /// left the ring included).
    pub fn pending_spans(&self) -> u64 {
        self.forwarders_and_left()
            .iter()
            .map(|f| f.stats.pending_spans.get())
            .sum()
    }

    /// The members' forwarders and those of members that left with spans pending (the
    /// settled ones are dropped here, with their clients).
    fn forwarders_and_left(&self) -> Vec<Arc<Forwarder>> {
        self.membership
            .lock()
            .map(|mut m| {
                m.left.retain(|f| f.stats.pending_spans.get() > 0);
                m.forwarders.values().chain(&m.left).cloned().collect()
            })
            .unwrap_or_default()
    }

    /// Parts that landed in the queue of a gateway that left after its queue was handed
    /// on (admitted over a ring read just before it left) go to their traces' new owners.
    fn reroute_left_queues(&self) {
        let Some(_open) = self.books.enter() else {
            return;
        };
        let parts: Vec<Part> = match self.membership.lock() {
            Ok(m) => m
                .left
                .iter()
                .filter(|f| f.queued_bytes() > 0)
                .flat_map(|f| f.take_queued())
                .collect(),
            Err(_) => return,
        };
        if !parts.is_empty() {
            self.reroute(parts);
        }
    }

    fn forwarders(&self) -> Vec<Arc<Forwarder>> {
        self.membership
            .lock()
            .map(|m| m.forwarders.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the member set (from a static list or discovery). Must be called inside a
    /// Tokio runtime: it starts forwarders for new members.
    pub fn set_members(&self, members: Vec<Member>) {
        let members = tailgate_core::members::normalise(members);
        let mut leaving = Vec::new();
        {
            let Ok(mut m) = self.membership.lock() else {
                return;
            };
            if m.members == members {
                return;
            }
            m.left.retain(|f| f.stats.pending_spans.get() > 0);
            for member in &members {
                if !m.forwarders.contains_key(member) {
                    match self.spawn_forwarder(member) {
                        Ok((f, task)) => {
                            m.forwarders.insert(member.clone(), f);
                            // Tasks of gateways that left and finished: a churning member
                            // set (pod IPs under DNS discovery) must not grow the list.
                            m.tasks.retain(|t| !t.is_finished());
                            m.tasks.push(task);
                        }
                        Err(error) => {
                            tracing::error!(%member, %error, "Cannot create a client for a gateway; leaving it out.");
                        }
                    }
                }
            }
            let gone: Vec<Member> = m
                .forwarders
                .keys()
                .filter(|k| !members.contains(k))
                .cloned()
                .collect();
            for g in gone {
                if let Some(f) = m.forwarders.remove(&g) {
                    m.left.push(f.clone());
                    leaving.push(f);
                }
            }
            m.members = members;
        }
        self.stats.ring_changes.add(1);
        self.rebuild();
        for f in leaving {
            // Whatever it has queued goes to the new owners; what is in flight finishes,
            // or goes to them too if it fails (see `Forwarder::leave`). Past a drain's
            // deadline it stays, counted failed where it is.
            let queued = self.books.enter().map(|open| (open, f.take_queued()));
            f.leave();
            if let Some((_open, parts)) = queued {
                self.reroute(parts);
            }
        }
        self.reroute_left_queues();
    }

    fn spawn_forwarder(
        &self,
        member: &Member,
    ) -> Result<(Arc<Forwarder>, JoinHandle<()>), tailgate_core::forward::ForwardError> {
        let f = Forwarder::new(
            member.clone(),
            self.cfg.queue_bytes,
            self.global_queued.clone(),
            self.room.clone(),
            self.stats.clone(),
            self.books.clone(),
        );
        let task = self.run_forwarder(&f)?;
        Ok((f, task))
    }

    /// Starts `f`'s send loop, with its own client.
    fn run_forwarder(
        &self,
        f: &Arc<Forwarder>,
    ) -> Result<JoinHandle<()>, tailgate_core::forward::ForwardError> {
        // A drain restarting the task reuses its client (connection, counters, and TLS
        // files read when they were good).
        let client = match f.client() {
            Some(client) => client,
            None => self.new_client(f)?,
        };
        let (this, again, requeue) = (self.this.clone(), self.this.clone(), self.this.clone());
        let hooks = Hooks {
            health: Arc::new(move || {
                if let Some(router) = this.upgrade() {
                    router.health_changed();
                }
            }),
            reroute: Arc::new(move |parts| match again.upgrade() {
                Some(router) => router.reroute(parts),
                None => tracing::error!("Router gone; parts in flight were not re-routed."),
            }),
            // The size the parts were cut to is the forwarder's cap, read from there.
            requeue: Arc::new(move |parts, _cut_to| match requeue.upgrade() {
                // Called from a send's settling, inside the books (as `reroute` is).
                Some(router) => {
                    // Recomputed over the members (under their lock, as `rebuild` does), so
                    // neither overwrites the other with a stale value, and a gateway that
                    // left the ring with a refusal in flight cuts no one's parts.
                    router.recompute_request_cap();
                    router.route_again(parts, false);
                }
                None => tracing::error!("Router gone; parts cut smaller were not queued."),
            }),
        };
        Ok(tokio::spawn(f.clone().run(client, self.cfg.clone(), hooks)))
    }

    /// The client of `f`'s gateway.
    fn new_client(
        &self,
        f: &Arc<Forwarder>,
    ) -> Result<GrpcClient, tailgate_core::forward::ForwardError> {
        // The gateway counts its too-large refusals of this router's requests apart: the
        // router cuts and resends them (see `Forwarder::settle`), nothing is lost.
        let cuts = [(CUTS_TOO_LARGE_HEADER.to_owned(), "1".to_owned())];
        Ok(GrpcClient::with_tls_config(
            f.member().as_str(),
            &cuts,
            self.cfg.timeout,
            self.cfg.retry.clone(),
            self.cfg.compression,
            self.cfg.tls.as_ref(),
        )?
        .give_up_when_unreachable()
        // A gateway refusing for memory is up and making room: its parts wait (and the
        // queue behind them fills, so senders are refused before their data is read)
        // rather than be given up at max_elapsed_time; through a drain too, whose
        // deadline counts what is still held. Only a gateway that left the ring is not
        // waited for: its parts go to the new owners (see `Forwarder::leave`).
        .hold_overloaded_while({
            let f = Arc::downgrade(f);
            Arc::new(move || f.upgrade().is_some_and(|f| !f.has_left()))
        }))
    }

    fn health_changed(&self) {
        self.rebuild();
        // Parts queued for gateways now down go to their traces' new owners.
        if let Some(_open) = self.books.enter() {
            self.reroute(take_stranded(&self.forwarders()));
        }
    }

    /// Publishes a ring over the healthy members (all members if none is healthy, so that
    /// data still queues and probes continue).
    fn rebuild(&self) {
        let Ok(m) = self.membership.lock() else {
            return;
        };
        let healthy: Vec<Member> = m
            .members
            .iter()
            .filter(|x| m.forwarders.get(*x).is_some_and(|f| !f.is_down()))
            .cloned()
            .collect();
        // Counted before the fallback below: with every gateway down the ring holds
        // them all, but none is healthy (the alert on healthy < members must fire).
        self.stats.healthy_members.set(healthy.len() as u64);
        let chosen = if healthy.is_empty() {
            m.members
                .iter()
                .filter(|x| m.forwarders.contains_key(*x))
                .cloned()
                .collect()
        } else {
            healthy
        };
        self.request_cap.store(members_cap(&m), Ordering::Relaxed);
        let ring = Ring::new(chosen);
        let forwarders = ring
            .members()
            .iter()
            .filter_map(|x| m.forwarders.get(x).cloned())
            .collect();
        self.stats.members.set(m.members.len() as u64);
        self.state.store(Arc::new(RingState { ring, forwarders }));
    }

    /// Sets the router's `request_cap` to the smallest of its members'.
    fn recompute_request_cap(&self) {
        if let Ok(m) = self.membership.lock() {
            self.request_cap.store(members_cap(&m), Ordering::Relaxed);
        }
    }

    /// Splits already-accepted parts again over the current ring and queues them whatever
    /// the queue sizes: they must not be lost.
    ///
    /// A down forwarder only probes, so nothing may be left in its queue while another
    /// gateway is up. Two forwarders can find their gateways unreachable at once, and one's
    /// parts can be re-routed over a ring the other's health change has not yet rebuilt; so
    /// the ring is rebuilt first when it still holds a down gateway, and whatever still
    /// lands on a gateway that went down meanwhile is moved again.
    fn reroute(&self, parts: Vec<Part>) {
        self.route_again(parts, true);
    }

    /// [`Router::reroute`]; the spans counted re-routed only when `rerouted` (parts of a
    /// request its gateway refused as too large are queued again, cut smaller, for the
    /// same owners). Parts are cut to the router's `request_cap`.
    fn route_again(&self, parts: Vec<Part>, rerouted: bool) {
        let mut parts = parts;
        let mut splitter = Splitter::default();
        let mut scan = Scan::default();
        // A round is repeated only when a gateway went down during it. The bound guards
        // against a ring that cannot be rebuilt (a poisoned lock): the last round leaves
        // its parts where the ring put them, for the down gateway's probe to send.
        const ROUNDS: usize = 8;
        for round in 1..=ROUNDS {
            if parts.is_empty() {
                return;
            }
            let mut state = self.state.load_full();
            if has_some_down(&state.forwarders) {
                self.rebuild();
                state = self.state.load_full();
            }
            if state.forwarders.is_empty() {
                self.stats
                    .failed_spans
                    .add(parts.iter().map(|p| p.spans).sum());
                return;
            }
            // With every gateway down, parts go back to down forwarders for their probes to
            // send: queued again, not moved to another gateway, so not counted re-routed.
            let all_down = state.forwarders.iter().all(|f| f.is_down());
            let cap = self.request_cap.load(Ordering::Relaxed);
            for p in std::mem::take(&mut parts) {
                if scan.scan(&p.body).is_err() {
                    // Parts are the router's own framing, scanned once already: never
                    // expected, but a part not re-routed is counted.
                    self.stats.failed_spans.add(p.spans);
                    continue;
                }
                for (owner, spans, body) in
                    splitter.split_capped(&state.ring, &p.body, &scan, None, cap)
                {
                    state.forwarders[owner].push_forced(Part { body, spans });
                }
                if rerouted && !all_down {
                    self.stats.rerouted_spans.add(p.spans);
                }
            }
            if round < ROUNDS && has_some_down(&state.forwarders) {
                parts = take_stranded(&state.forwarders);
            }
        }
    }

    /// Stops the forwarders after their queues are sent, waiting at most `deadline`;
    /// returns the spans still queued then, given up (counted as failed).
    pub async fn drain(&self, deadline: std::time::Duration) -> u64 {
        let until = tokio::time::Instant::now() + deadline;
        let mut tasks = match self.membership.lock() {
            Ok(mut m) => {
                for f in m.forwarders.values() {
                    f.close();
                }
                std::mem::take(&mut m.tasks)
            }
            Err(_) => Vec::new(),
        };
        self.reroute_left_queues();
        // A send that fails after another forwarder has emptied its queue and stopped
        // re-routes its parts there: a forwarder that stopped with parts queued is started
        // again, until none is left or the deadline passes. The first restart is at once;
        // later ones (every gateway down or refusing, so the parts bounce) after a pause
        // that doubles to a second, so the parts wait for a gateway to come back within the
        // deadline instead of being given up in a few milliseconds of restarts.
        let mut pause = std::time::Duration::ZERO;
        loop {
            let all = futures_util::future::join_all(std::mem::take(&mut tasks));
            if tokio::time::timeout_at(until, all).await.is_err() {
                break;
            }
            let left: Vec<_> = self
                .forwarders()
                .into_iter()
                .filter(|f| f.queued_bytes() > 0)
                .collect();
            if left.is_empty() {
                return 0;
            }
            // The last restart comes before the deadline, however short the pause left.
            let now = tokio::time::Instant::now();
            if now >= until {
                break;
            }
            tokio::time::sleep(pause.min(until - now)).await;
            pause = (pause * 2).clamp(DRAIN_RETRY_FIRST, DRAIN_RETRY_MAX);
            for f in left {
                match self.run_forwarder(&f) {
                    Ok(task) => tasks.push(task),
                    Err(error) => {
                        tracing::error!(member = %f.member(), %error, "Cannot restart a forwarder to send what is left.")
                    }
                }
            }
            if tasks.is_empty() {
                break;
            }
        }
        // What is still queued or in flight now is lost with the process, which exits
        // next: moved from pending to failed (per gateway and in all), so that the books
        // balance in the log line and in a test's last look (the senders were told these
        // spans were taken).
        // Sends still running may end after this, and probes may move parts: the books
        // close first, so that a send ending well is not counted delivered as well as
        // failed, nor a part counted in two queues or in none.
        if !self.books.close(BOOKS_CLOSE_WAIT).await {
            tracing::warn!("A send or re-route held the router's books past the drain; the last counts may be off by its spans.");
        }
        let lost: u64 = self
            .forwarders_and_left()
            .iter()
            .map(|f| f.give_up_pending())
            .sum();
        if lost > 0 {
            self.stats.failed_spans.add(lost);
            tracing::error!(
                lost_spans = lost,
                "Drain deadline passed with spans still queued for gateways; counted as failed."
            );
        }
        lost
    }

    /// Whether every gateway the router knows has had its greeting answered (or found
    /// unreachable): until then, a gateway's state is a guess (tests, and tools that wait
    /// for a router to settle).
    pub fn gateways_greeted(&self) -> bool {
        self.forwarders().iter().all(|f| f.greeted())
    }

    /// The size requests are cut to: the smallest of the gateways' on the ring, stated in
    /// their answers or learnt from their refusals (`None` while none is known): see
    /// [`Forwarder::request_cap`].
    pub fn request_cap(&self) -> Option<usize> {
        Some(self.request_cap.load(Ordering::Relaxed)).filter(|&c| c != usize::MAX)
    }

    /// Gathers the router's series: its stats, then one per gateway it forwards to.
    fn render(&self, p: &mut PromText) {
        let forwarders = self.forwarders();
        let members: Vec<MemberSample<'_>> = forwarders
            .iter()
            .map(|f| MemberSample {
                member: f.member().to_string(),
                stats: &f.stats,
                up: !f.is_down(),
                unanswered: f.unanswered(),
                request_cap: Some(f.request_cap())
                    .filter(|&c| c != usize::MAX)
                    .map_or(0, |c| c as u64),
            })
            .collect();
        crate::metrics::render_members(p, &members);
        self.stats.render_into(p);
    }
}

pub use tailgate_core::wire::split::{split, Splitter};

/// One request waiting for room, counted in `waiting` while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    /// Counts a request in, unless `max` already wait.
    fn enter(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        use Ordering::{AcqRel, Acquire};
        waiting
            .fetch_update(AcqRel, Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Waiting(waiting))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's place among those of its sender waiting in [`SpanSink::ready`].
struct SenderWaits<'a> {
    map: &'a Mutex<HashMap<IpAddr, usize>>,
    ip: IpAddr,
}

impl<'a> SenderWaits<'a> {
    /// Counts a request of `ip` in, unless `max` of its requests already wait.
    fn enter(map: &'a Mutex<HashMap<IpAddr, usize>>, ip: IpAddr, max: usize) -> Option<Self> {
        let mut m = map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SenderWaits { map, ip })
    }
}

impl Drop for SenderWaits<'_> {
    fn drop(&mut self) {
        let mut m = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Whether some of `forwarders`, but not all, are down: then parts queued on the down ones
/// belong to the others.
fn has_some_down(forwarders: &[Arc<Forwarder>]) -> bool {
    forwarders.iter().any(|f| f.is_down()) && !forwarders.iter().all(|f| f.is_down())
}

/// Takes what is queued on the down forwarders among `forwarders`.
fn take_stranded(forwarders: &[Arc<Forwarder>]) -> Vec<Part> {
    forwarders
        .iter()
        .filter(|f| f.is_down())
        .flat_map(|f| f.take_queued())
        .collect()
}

impl SpanSink for Router {
    fn refused(&self, refusal: &Refusal) {
        self.stats.refused_requests[refusal.reason_index()].add(1);
    }

    fn answered_late(&self) {
        self.stats.late_answers.add(1);
    }

    fn malformed(&self) {
        self.stats.malformed_requests.add(1);
    }

    async fn ready(&self, first_bytes: Option<usize>) -> Result<Ready, Refusal> {
        self.ready_from(first_bytes, None).await
    }

    async fn ready_from(
        &self,
        first_bytes: Option<usize>,
        sender: Option<IpAddr>,
    ) -> Result<Ready, Refusal> {
        if self.gate.available_permits() > 0 && self.has_room() {
            return Ok(self.pass(first_bytes));
        }
        let full = |message: String| {
            self.stats.refused_unread_requests.add(1);
            Refusal::Overloaded {
                message,
                retry_after: DEFAULT_RETRY_AFTER,
            }
        };
        // One sender with many streams must not take every place: the others would be
        // refused at once while it waits its turns.
        let per_sender = self.held_per_sender();
        let Some(_sender_waits) = sender.map_or(Some(None), |ip| {
            SenderWaits::enter(&self.waiting_by_sender, ip, per_sender).map(Some)
        }) else {
            return Err(full(format!(
                "the router's queues are full and this sender already has {per_sender} requests waiting; retry later"
            )));
        };
        // Each held request may keep a stream window of unread data in the receiver's
        // buffers: their number is bounded.
        let Some(_waiting) = Waiting::enter(&self.waiting, self.cfg.max_held_requests) else {
            return Err(full(format!(
                "the router's queues are full and {} requests already wait; retry later",
                self.cfg.max_held_requests
            )));
        };
        self.stats.held_requests.add(1);
        let deadline = tokio::time::Instant::now() + self.cfg.queue_wait;
        let stayed_full = || {
            full(format!(
                "the router's queues stayed full for {:?}; retry later",
                self.cfg.queue_wait
            ))
        };
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, self.gate.acquire()).await else {
            return Err(stayed_full());
        };
        loop {
            let freed = self.room.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.has_room() {
                return Ok(self.pass(first_bytes));
            }
            // Passes that stop counting free room without a notice: look again then.
            let look_again = self.passes.next_expiry().min(deadline);
            if tokio::time::timeout_at(look_again, freed).await.is_err() && look_again >= deadline {
                return Err(stayed_full());
            }
        }
    }

    async fn export(&self, body: Bytes) -> Result<Accepted, Refusal> {
        self.stats.requests.add(1);
        // The scan's and splitter's buffers are reused per worker thread: nothing below
        // awaits.
        SCRATCH.with_borrow_mut(|(scan, splitter)| {
            let admitted = self.admit(&body, scan, splitter);
            // Cheap when nothing is over: shrinking only reallocates a buffer past its
            // bound (many spans, or many empty resources, or huge headers).
            scan.trim();
            splitter.trim(Scan::RETAINED_SPANS);
            admitted
        })
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<(Scan, Splitter)> =
        std::cell::RefCell::new((Scan::default(), Splitter::default()));
}

impl Router {
    /// Most requests one sender address may have waiting for room: half of
    /// `max_held_requests` (at least one), so that another sender always finds a place,
    /// while one sender with as many streams as a load test's (32 at the default) is
    /// still slowed by flow control rather than refused.
    fn held_per_sender(&self) -> usize {
        (self.cfg.max_held_requests / 2).max(1)
    }

    /// Whether a new request may be read: the router's queues, with what the requests let
    /// through and not yet admitted are expected to add, and those of every gateway on the
    /// ring have room (a request's gateways are known only once it is read). With no
    /// gateway, or every one down, requests are read and refused at once.
    fn has_room(&self) -> bool {
        use Ordering::Relaxed;
        let state = self.state.load();
        if state.forwarders.iter().all(|f| f.is_down()) {
            return true;
        }
        let coming = self.passes.counted();
        self.global_queued.load(Relaxed) + coming < self.cfg.max_queued_bytes
            && state.forwarders.iter().all(|f| f.has_room() || f.is_down())
    }

    /// A pass for a request let through, priced by the mean request size and its first
    /// frame (`first_bytes`, see [`crate::passes::pass_price`]): counted until the request
    /// is answered or its window is over.
    fn pass(&self, first_bytes: Option<usize>) -> Ready {
        let mean = self.mean_request.load(Ordering::Relaxed);
        Ready::holding(
            self.passes
                .take(crate::passes::pass_price(mean, first_bytes)),
        )
    }

    /// Past this many times `max_queued_bytes`, a request already read is refused rather
    /// than admitted: only requests let through together in numbers far beyond the running
    /// mean's estimate get here.
    const HARD_LIMIT_FACTOR: usize = 2;

    /// Scans, splits and admits one request; synchronous, so it can borrow a reused scan.
    fn admit(
        &self,
        body: &Bytes,
        scan: &mut Scan,
        splitter: &mut Splitter,
    ) -> Result<Accepted, Refusal> {
        let scanned = scan
            .scan_request(body)
            .inspect_err(|_| self.stats.malformed_requests.add(1))?;
        let (valid, rejected, message) = (scanned.valid, scanned.rejected, scanned.message);
        self.stats.received_spans.add(valid + rejected);
        self.stats.rejected_spans.add(rejected);
        self.stats
            .rejected_malformed_spans
            .add(u64::from(scan.rejected_malformed));
        let accepted = Accepted {
            rejected_spans: rejected,
            message,
        };
        if valid == 0 {
            return Ok(accepted);
        }
        let state = self.state.load();
        if state.forwarders.is_empty() {
            self.stats.refused_spans.add(valid);
            return Err(Refusal::Unavailable {
                message: "no gateways are known yet".into(),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        // No gateway can take the data: refuse now, retryably, rather than accept spans
        // that can only fail later (issue 14 item 5).
        if state.forwarders.iter().all(|f| f.is_down()) {
            self.stats.refused_spans.add(valid);
            return Err(Refusal::Unavailable {
                message: format!(
                    "all {} gateways are down; retry later",
                    state.forwarders.len()
                ),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        // A request whose spans all go to one gateway, none left out, goes on as it came
        // (unless the splitter must re-frame it, see `Splitter::split`).
        let whole = (rejected == 0).then_some(body);
        let hard_limit = self.cfg.max_queued_bytes * Self::HARD_LIMIT_FACTOR;
        let queued = self.global_queued.load(Ordering::Relaxed);
        // What its parts may come to: a resource's header is copied into every gateway's
        // part, so a request of one huge resource can be many times its body.
        let owners = state.forwarders.len();
        let uncut = scan.split_bound(body.len(), owners);
        // Parts cut to `forward.max_request_bytes` repeat the headers they start under.
        let max_part = self
            .cfg
            .max_request_bytes
            .min(self.request_cap.load(Ordering::Relaxed));
        let written = uncut.saturating_add(tailgate_core::wire::split::cut_bound(
            scan,
            body.len(),
            uncut,
            owners,
            max_part,
        ));
        // A request larger than the limit itself (receive.max_request_bytes may be) goes
        // when nothing else is queued, rather than being refused forever.
        if queued > 0 && queued.saturating_add(written) > hard_limit {
            self.stats.refused_spans.add(valid);
            return Err(Refusal::Overloaded {
                message: "the router's queues are over twice their limit; retry later".into(),
                retry_after: DEFAULT_RETRY_AFTER,
            });
        }
        let mean = self.mean_request.load(Ordering::Relaxed);
        self.mean_request
            .store((mean * 7 + body.len()) / 8, Ordering::Relaxed);
        // No gateway gets a request larger than `forward.max_request_bytes` for a request of
        // many spans: a gateway admits a request at what it may cost once buffered (up to ten
        // times its size for tiny spans), and one that could never fit would be refused on
        // every retry, its spans lost after the sender was told they were taken.
        let mut parts = splitter.split_capped(&state.ring, body, scan, whole, max_part);
        // A span that alone, with its headers, is larger than its gateway has said it
        // takes can never be delivered: rejected now, so that its sender is told, rather
        // than acknowledged and counted failed at the gateway's refusal.
        let mut too_large: Option<(u64, usize, usize)> = None;
        parts.retain(|(owner, spans, part)| {
            let limit = state.forwarders[*owner].stated_limit();
            match limit {
                Some(limit) if *spans == 1 && part.len() > limit => {
                    let (n, largest, _) = too_large.unwrap_or((0, 0, limit));
                    too_large = Some((n + 1, largest.max(part.len()), limit));
                    false
                }
                _ => true,
            }
        });
        let mut accepted = accepted;
        if let Some((n, largest, limit)) = too_large {
            self.stats.rejected_spans.add(n);
            self.stats.rejected_too_large_spans.add(n);
            let said = format!(
                "{n} span(s) too large for their gateway: {largest} bytes with resource and scope, over the {limit} bytes it takes (its receive.max_request_bytes)"
            );
            if parts.is_empty() && rejected == 0 {
                return Err(Refusal::too_large(said, limit));
            }
            accepted.rejected_spans += n;
            accepted.message = if accepted.message.is_empty() {
                said
            } else {
                format!("{}; {said}", accepted.message)
            };
        }
        let mut admission = Admission::new(self.cfg.max_queued_bytes);
        for (owner, _, part) in &parts {
            // The request waited for room before it was read; others read meanwhile may
            // have filled it again; the hard limit above bounds how far.
            let f = &state.forwarders[*owner];
            if !admission.reserve(f, part.len()) {
                admission.reserve_over(f, part.len());
            }
        }
        admission.commit(
            parts
                .into_iter()
                .map(|(_, spans, body)| Part { body, spans }),
        );
        // A gateway may have gone down after this request read the ring: its forwarder
        // moved its queue to the new owners then, before these parts arrived, and a down
        // forwarder only probes. Move what landed there now, or it would wait for the
        // gateway to come back.
        if has_some_down(&state.forwarders) {
            if let Some(_open) = self.books.enter() {
                self.reroute(take_stranded(&state.forwarders));
            }
        }
        Ok(accepted)
    }
}

impl Router {
    /// After a drain that gave spans up, [`crate::run`] keeps `/metrics` up until one more
    /// scrape, at most `wait` (0, the default: exits at once), so the count reaches alerts.
    pub fn set_final_scrape_wait(&self, wait: std::time::Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.final_scrape_wait_ms.store(ms, Ordering::Relaxed);
    }

    /// After a drain that gave up `lost` spans, waits for one more scrape (see
    /// [`Router::set_final_scrape_wait`]).
    pub async fn after_drain(&self, lost: u64) {
        let wait = self.final_scrape_wait_ms.load(Ordering::Relaxed);
        self.scrapes
            .after_loss(lost, std::time::Duration::from_millis(wait))
            .await;
    }
}

impl Admin for Router {
    fn render_metrics(&self) -> PromText {
        let mut p = PromText::default();
        tailgate_core::telemetry::render_build_info(&mut p, "router");
        tailgate_core::telemetry::render_process_metrics(&mut p);
        self.render(&mut p);
        p
    }

    fn ready(&self) -> bool {
        if !self.ready.get() {
            return false;
        }
        let state = self.state.load();
        // Ready once a gateway it has greeted is up: a router whose gateways are all
        // unreachable, or not yet asked, can only hold what it takes. From then on, while
        // any gateway is up: discovery replacing every member at once (a new ReplicaSet)
        // must not make the router unready for the new ones' greetings.
        if state.forwarders.iter().any(|f| f.greeted() && !f.is_down()) {
            self.been_ready.store(true, Ordering::Relaxed);
            return true;
        }
        self.been_ready.load(Ordering::Relaxed) && state.forwarders.iter().any(|f| !f.is_down())
    }

    fn scrapes(&self) -> Option<&tailgate_core::telemetry::Scrapes> {
        Some(&self.scrapes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Scenario: the router's receiver refuses a request as too large from a sender that
    /// says it cuts and resends such requests (`tailgate-cuts-too-large`).
    /// Guarantees: a router counts it `too_large` all the same: its senders are agents and
    /// SDKs, which do not resend, so the refusal may be a loss the alert must see.
    #[test]
    fn a_router_counts_too_large_refusals_as_too_large_whatever_the_sender_says() {
        let router = Router::new(ForwardConfig::default());
        let refusal = Refusal::too_large("over the limit".into(), 1 << 20);
        router.refused_cut(&refusal);
        assert_eq!(router.stats.refused_requests[1].get(), 1);
        assert_eq!(
            router.stats.refused_requests[Refusal::TOO_LARGE_CUT].get(),
            0
        );
    }

    /// A router with one gateway (never contacted: taken as greeted, on a runtime of one
    /// thread before its send loop runs, and nothing is queued for it) whose router-wide
    /// queue is full.
    fn full_router(wait: Duration) -> Arc<Router> {
        full_router_with(ForwardConfig {
            queue_wait: wait,
            ..ForwardConfig::default()
        })
    }

    /// A router (queue wait 5 s) whose queues have room for `n` requests of the running
    /// mean size.
    fn router_with_room_for(n: usize) -> Arc<Router> {
        let router = full_router(Duration::from_secs(5));
        let per = router.mean_request.load(Ordering::Relaxed);
        router
            .global_queued
            .store(router.cfg.max_queued_bytes - n * per, Ordering::Relaxed);
        router
    }

    fn full_router_with(cfg: ForwardConfig) -> Arc<Router> {
        let router = Router::new(cfg);
        router.set_members(vec![Member::new("127.0.0.1:9")]);
        for f in router.forwarders() {
            f.greeted_for_test();
        }
        router
            .global_queued
            .store(router.cfg.max_queued_bytes, Ordering::Relaxed);
        router
    }

    /// Scenario: a router drains (its forwarders stop with empty queues), then a part
    /// lands in one's queue, as a send failing late re-routes it there; the router drains
    /// again.
    /// Guarantee: the stopped forwarder is started again and delivers the part: nothing is
    /// left queued where no loop reads it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_landing_after_a_forwarder_stopped_are_still_sent() {
        let stop = tokio_util::sync::CancellationToken::new();
        let (addr, backend) = tailgate_core::test_util::CaptureBackend::start(
            "127.0.0.1:0".parse().unwrap(),
            stop.clone(),
        )
        .await
        .unwrap();
        let router = Router::new(ForwardConfig::default());
        router.set_members(vec![Member::new(addr.to_string())]);
        router.drain(Duration::from_secs(5)).await;
        let req = tailgate_core::test_util::FakeOtlp::traces(3)
            .spans(2)
            .seed(11)
            .build();
        let body = Bytes::from(prost::Message::encode_to_vec(&req));
        router.reroute(vec![Part { body, spans: 6 }]);
        assert!(router.forwarders()[0].queued_bytes() > 0);
        router.drain(Duration::from_secs(5)).await;
        assert_eq!(backend.spans(), 6);
        assert_eq!(router.forwarders()[0].queued_bytes(), 0);
        stop.cancel();
    }

    /// Scenario: a router whose one gateway is greeted and up; discovery replaces it with
    /// a new gateway not yet greeted; the new one is found unreachable.
    /// Guarantees: ready before the change, still ready while the new gateway is greeted
    /// (a new set of members does not make a running router unready), not ready once no
    /// gateway is up.
    #[tokio::test(start_paused = true)]
    async fn a_new_member_set_does_not_make_a_ready_router_unready_while_it_greets() {
        use tailgate_core::telemetry::Admin;
        let router = Router::new(ForwardConfig::default());
        router.readiness().set(true);
        router.set_members(vec![Member::new("127.0.0.1:9")]);
        assert!(!Admin::ready(&*router), "not greeted yet");
        for f in router.forwarders() {
            f.greeted_for_test();
        }
        assert!(Admin::ready(&*router));
        router.set_members(vec![Member::new("127.0.0.2:9")]);
        assert!(router.forwarders().iter().all(|f| !f.greeted()));
        assert!(
            Admin::ready(&*router),
            "unready while greeting the new members"
        );
        for f in router.forwarders() {
            f.mark_down_for_test();
        }
        assert!(!Admin::ready(&*router));
    }

    /// Past `max_held_requests` waiting, a request is refused at once, unread; with every
    /// gateway down, requests are let through at once (to be refused UNAVAILABLE).
    #[tokio::test(start_paused = true)]
    async fn held_requests_are_bounded_and_down_gateways_do_not_hold() {
        let router = full_router_with(ForwardConfig {
            queue_wait: Duration::from_secs(5),
            max_held_requests: 1,
            ..ForwardConfig::default()
        });
        let first = {
            let router = router.clone();
            tokio::spawn(async move { SpanSink::ready(&*router, Some(1 << 20)).await.map(drop) })
        };
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        let refusal = SpanSink::ready(&*router, Some(1 << 20)).await.unwrap_err();
        assert!(matches!(refusal, Refusal::Overloaded { .. }), "{refusal:?}");
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(first.await.unwrap().is_err());
        assert_eq!(router.stats.refused_unread_requests.get(), 2);
        for f in router.ring_state().forwarders.iter() {
            f.mark_down_for_test();
        }
        assert!(SpanSink::ready(&*router, Some(1 << 20)).await.is_ok());
    }

    /// Scenario: full queues, `max_held_requests: 4` (two places per sender); one sender
    /// asks three times, another once.
    /// Guarantees: the first sender's third request is refused at once, unread, naming
    /// the cause, while the other sender's request still finds a place and waits.
    #[tokio::test(start_paused = true)]
    async fn one_sender_cannot_take_every_held_place() {
        let router = full_router_with(ForwardConfig {
            queue_wait: Duration::from_secs(5),
            max_held_requests: 4,
            ..ForwardConfig::default()
        });
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let waits = |ip: IpAddr| {
            let router = router.clone();
            tokio::spawn(async move {
                SpanSink::ready_from(&*router, Some(1 << 20), Some(ip))
                    .await
                    .map(drop)
            })
        };
        let first = [waits(a), waits(a)];
        tokio::task::yield_now().await;
        let start = tokio::time::Instant::now();
        let refusal = SpanSink::ready_from(&*router, Some(1 << 20), Some(a))
            .await
            .unwrap_err();
        assert_eq!(start.elapsed(), Duration::ZERO);
        assert!(
            refusal
                .to_string()
                .contains("this sender already has 2 requests waiting"),
            "{refusal}"
        );
        let other = waits(b);
        tokio::task::yield_now().await;
        assert_eq!(
            router.waiting.load(Ordering::Relaxed),
            3,
            "both senders wait"
        );
        for f in first {
            assert!(f.await.unwrap().is_err(), "refused after queue_wait");
        }
        assert!(other.await.unwrap().is_err());
        assert!(router.waiting_by_sender.lock().unwrap().is_empty());
    }

    /// A request read while the router's queues are past twice their limit is refused
    /// (retryably), its spans counted refused and nothing of it queued.
    #[tokio::test(start_paused = true)]
    async fn a_request_read_past_twice_the_limit_is_refused() {
        let router = full_router(Duration::from_secs(5));
        router
            .global_queued
            .store(2 * router.cfg.max_queued_bytes, Ordering::Relaxed);
        let req = tailgate_core::test_util::FakeOtlp::traces(2)
            .spans(3)
            .build();
        let body = Bytes::from(prost::Message::encode_to_vec(&req));
        let refusal = SpanSink::export(&*router, body).await.unwrap_err();
        assert!(matches!(refusal, Refusal::Overloaded { .. }), "{refusal:?}");
        assert_eq!(router.stats.refused_spans.get(), 6);
        assert_eq!(router.pending_spans(), 0);
    }

    /// A request larger than twice `max_queued_bytes` (a receiver may take requests that
    /// large) is admitted when nothing is queued: it is not refused forever.
    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_limit_goes_alone_when_nothing_is_queued() {
        let router = full_router_with(ForwardConfig {
            queue_bytes: 64,
            max_queued_bytes: 64,
            ..ForwardConfig::default()
        });
        let req = tailgate_core::test_util::FakeOtlp::traces(2)
            .spans(3)
            .build();
        let body = Bytes::from(prost::Message::encode_to_vec(&req));
        assert!(body.len() > 2 * 64);
        router.global_queued.store(1, Ordering::Relaxed);
        let refusal = SpanSink::export(&*router, body.clone()).await.unwrap_err();
        assert!(matches!(refusal, Refusal::Overloaded { .. }), "{refusal:?}");
        router.global_queued.store(0, Ordering::Relaxed);
        assert!(SpanSink::export(&*router, body).await.is_ok());
        assert_eq!(router.stats.refused_spans.get(), 6);
        assert_eq!(router.pending_spans(), 6);
    }

    /// Requests let through and not yet admitted count against the room, at the running
    /// mean request size: a burst of passes cannot all go through at once.
    #[tokio::test(start_paused = true)]
    async fn passes_not_yet_admitted_count_against_the_room() {
        let router = router_with_room_for(3);
        let passes: Vec<Ready> = (0..2)
            .map(|_| {
                assert!(router.has_room());
                router.pass(Some(1 << 20))
            })
            .collect();
        assert!(router.has_room(), "one more fits");
        let third = router.pass(Some(1 << 20));
        assert!(!router.has_room(), "three passes fill the last room");
        drop((passes, third));
        assert!(router.has_room());
    }

    /// Scenario: the room is taken by passes whose requests then stall (a byte each, then
    /// nothing), and another request waits for room.
    /// Guarantees: the stalled passes stop counting within two windows, and the waiting
    /// request goes on then, with nothing else freeing room or telling it so.
    #[tokio::test(start_paused = true)]
    async fn stalled_passes_stop_holding_the_room() {
        let router = router_with_room_for(2);
        let stalled: Vec<Ready> = (0..2).map(|_| router.pass(Some(1 << 20))).collect();
        assert!(!router.has_room());
        let start = tokio::time::Instant::now();
        let ready = SpanSink::ready(&*router, Some(1 << 20)).await;
        assert!(ready.is_ok(), "{ready:?}");
        let waited = start.elapsed();
        assert!(
            waited > Duration::ZERO && waited <= 2 * crate::passes::PASS_WINDOW,
            "{waited:?}"
        );
        assert_eq!(router.stats.refused_unread_requests.get(), 0);
        drop(stalled);
    }

    /// Scenario: room for three mean-sized requests; a thousand requests that sent one
    /// byte each are let through and stall.
    /// Guarantees: they take 64 bytes of room each, so a real request still finds room.
    #[tokio::test(start_paused = true)]
    async fn one_byte_passes_hold_almost_no_room() {
        let router = router_with_room_for(3);
        let stalled: Vec<Ready> = (0..1000).map(|_| router.pass(Some(1))).collect();
        assert!(router.has_room());
        assert!(tokio::time::timeout(
            Duration::from_millis(1),
            SpanSink::ready(&*router, Some(16 << 10))
        )
        .await
        .is_ok_and(|r| r.is_ok()));
        drop(stalled);
    }

    /// With the queues full, `ready` holds a request for `queue_wait`, then refuses it
    /// retryably; the waits are counted.
    #[tokio::test(start_paused = true)]
    async fn ready_refuses_after_queue_wait_while_full() {
        let router = full_router(Duration::from_secs(5));
        let start = tokio::time::Instant::now();
        let refusal = SpanSink::ready(&*router, Some(1 << 20)).await.unwrap_err();
        assert!(matches!(refusal, Refusal::Overloaded { .. }), "{refusal:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(router.stats.held_requests.get(), 1);
        assert_eq!(router.stats.refused_unread_requests.get(), 1);
    }

    /// Held requests go on, in arrival order, once room comes back, each as soon as there
    /// is room; none is refused.
    #[tokio::test(start_paused = true)]
    async fn held_requests_go_on_in_order_when_room_comes_back() {
        let router = full_router(Duration::from_secs(5));
        let order = Arc::new(Mutex::new(Vec::new()));
        let waiters: Vec<_> = (0..3)
            .map(|i| {
                let (router, order) = (router.clone(), order.clone());
                tokio::spawn(async move {
                    SpanSink::ready(&*router, Some(1 << 20)).await.unwrap();
                    order.lock().unwrap().push(i);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(order.lock().unwrap().is_empty());
        router.global_queued.store(0, Ordering::Relaxed);
        router.room.notify_one();
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(router.stats.refused_unread_requests.get(), 0);
    }
}
