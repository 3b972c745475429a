//! Per-gateway forwarders: a queue bounded in bytes in front of one HTTP/2 client.
//!
//! Parts of requests (already re-framed for this gateway) are admitted all-or-nothing across
//! a request's destinations by [`Admission`], so a refused request leaves nothing queued and
//! the agent's retry cannot duplicate spans. The forwarder task coalesces queued parts into
//! larger requests by sending their bytes back to back (two encoded
//! `ExportTraceServiceRequest`s back to back are one valid request holding both; the client
//! writes each part as it is, without copying them together), up to a size and age bound,
//! and keeps a few requests in flight. What cannot be delivered within the retry bound is counted as
//! failed, except parts a gateway refuses for memory (`RESOURCE_EXHAUSTED`): those are held
//! and retried until it takes them, it leaves the ring, or a drain's deadline passes, while the queue behind them
//! fills and new requests are refused unread, so an overload costs senders latency and
//! retries, not spans. A gateway that cannot be connected to, or that answers neither a
//! request nor an HTTP/2 ping (paused, hung: see `GrpcClient::give_up_when_unreachable`),
//! is marked down at once and the parts in flight to it are re-routed; one whose sends keep failing otherwise is marked down after
//! two give-ups, unless it was refusing for memory (it is up). The router then routes
//! around it (see [`crate::split`]) and a probe brings it back. A gateway that leaves the
//! ring ([`Forwarder::leave`]) stops being held for; what it then fails to take is
//! re-routed to its traces' new owners.

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tailgate_core::forward::{ForwardError, GrpcClient};
use tailgate_core::ring::Member;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ForwardConfig;
pub use crate::metrics::ForwarderStats;
use crate::metrics::RouterStats;

/// One queued part: an encoded request and the spans in it.
#[derive(Debug, Clone)]
pub struct Part {
    /// Encoded `ExportTraceServiceRequest`.
    pub body: Bytes,
    /// Spans in it.
    pub spans: u64,
}

/// A gateway's forwarder.
#[derive(Debug)]
pub struct Forwarder {
    member: Member,
    queue: Mutex<VecDeque<Part>>,
    queued_bytes: AtomicUsize,
    capacity: usize,
    /// Router-wide queued bytes, shared by all forwarders.
    global: Arc<AtomicUsize>,
    /// Told when bytes leave a queue: a request waiting for room may go on.
    room: Arc<Notify>,
    router_stats: Arc<RouterStats>,
    notify: Notify,
    down: AtomicBool,
    /// Whether the first word with the gateway ([`Forwarder::greet`]) has had its answer.
    greeted: AtomicBool,
    /// Whether the greeting was sent (once per forwarder, whatever restarts its loop).
    greeting: AtomicBool,
    /// Its gateway left the ring: what it could not deliver goes to the new owners.
    left: AtomicBool,
    consecutive_failures: AtomicU32,
    closed: CancellationToken,
    /// The router's books: a send counts its outcome, and spans move between queues, only
    /// while they are open (see [`Books`]).
    books: Arc<Books>,
    /// Counters.
    pub stats: ForwarderStats,
    /// Its client, once it runs: a drain that starts the task again reuses it (its
    /// connection and its retry counters).
    client: std::sync::OnceLock<GrpcClient>,
    /// What its gateway's refusals for size taught. See [`Forwarder::request_cap`]. Read
    /// once per request gathered.
    cap: Mutex<CapState>,
    /// The last limit its gateway stated (`receive.max_request_bytes`), 0 before any: read
    /// by the admission of every request, without the lock.
    stated: AtomicUsize,
}

/// A forwarder's learnt request size, and a larger one being tried.
#[derive(Debug, Default)]
struct CapState {
    /// The size requests are gathered to (`None`: `forward.max_request_bytes`).
    learnt: Option<RequestCap>,
    /// `forward.max_request_bytes` (0 until the send loop starts): a stated limit below it
    /// is worth a line in the log.
    configured: usize,
    /// A larger size being tried (after a new connection, a return from down, or
    /// [`REQUEST_CAP_HOLDS`]): one request at a time is gathered to it, the others to the
    /// learnt size. Taken, it becomes the size; refused, the learnt size stays (one
    /// refusal, whatever `forward.max_in_flight`). A connection can be new without a new
    /// process behind it (the client's pool drops one idle for 90 s; a gateway's
    /// `max_connection_age` closes them), so trying costs at most that one refusal.
    trial: Option<Trial>,
}

/// How a request went out, for its answer's settling.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// [`GrpcClient::connections_made`] after the answer.
    connection: u64,
    /// Whether it was gathered to a larger size being tried.
    trial: bool,
    /// Whether the queue still held parts once it was gathered: it was cut by the size it
    /// was gathered to, not by what was queued.
    full: bool,
}

/// A larger request size being tried.
#[derive(Debug, Clone, Copy)]
struct Trial {
    /// The size (`usize::MAX`: none, `forward.max_request_bytes`).
    bytes: usize,
    /// Whether a request gathered to it is out.
    in_flight: bool,
}

/// What a forwarder learnt from its gateway's refusals for size.
#[derive(Debug, Clone, Copy)]
struct RequestCap {
    /// Requests are gathered to at most this many bytes.
    bytes: usize,
    /// When it was last set, or last tried larger.
    since: Instant,
    /// [`GrpcClient::connections_made`] when the refusal came: a later connection may
    /// reach a new process.
    connection: u64,
    /// Whether the gateway stated it (its `receive.max_request_bytes`): a Tailgate gateway
    /// states it in every answer, so a change is heard at once and no larger size is
    /// tried.
    stated: bool,
}

impl RequestCap {
    /// Whether a limit the gateway states replaces this size: any does a stated size; a
    /// size learnt without one (the whole buffer's, which a byte limit does not cover)
    /// only a smaller limit.
    fn yields_to(self, limit: usize) -> bool {
        self.stated || limit < self.bytes
    }
}

/// Whether a stated limit could be a gateway's: none takes less than any request can be
/// cut to (a proxy's 0 would cut every request to single spans).
fn believable(limit: usize) -> bool {
    limit >= MIN_REQUEST_CAP
}

/// How long a [`Forwarder::request_cap`] learnt without a stated limit holds after it was
/// last set: then twice the size is tried with one request, since the gateway behind the address may have been given a
/// larger limit without the router seeing it down or connecting anew. Refused, that
/// request is cut and sent again (nothing lost) and the size stays: one refusal per period
/// at most while the sizes disagree.
pub const REQUEST_CAP_HOLDS: std::time::Duration = std::time::Duration::from_secs(600);

/// The smallest [`Forwarder::request_cap`] a refusal sets: a gateway refusing requests
/// this small refuses nearly every span, and halving further would only delay the count.
pub const MIN_REQUEST_CAP: usize = 512;

// === impl Forwarder ===

impl Forwarder {
    /// A forwarder for `member` with a queue of `capacity` bytes, counting also into the
    /// router-wide `global` queued bytes and `router_stats`, under the router's `books`.
    pub fn new(
        member: Member,
        capacity: usize,
        global: Arc<AtomicUsize>,
        room: Arc<Notify>,
        router_stats: Arc<RouterStats>,
        books: Arc<Books>,
    ) -> Arc<Self> {
        Arc::new(Forwarder {
            member,
            queue: Mutex::new(VecDeque::new()),
            queued_bytes: AtomicUsize::new(0),
            capacity,
            global,
            room,
            router_stats,
            notify: Notify::new(),
            down: AtomicBool::new(false),
            greeted: AtomicBool::new(false),
            greeting: AtomicBool::new(false),
            left: AtomicBool::new(false),
            consecutive_failures: AtomicU32::new(0),
            closed: CancellationToken::new(),
            books,
            stats: ForwarderStats::default(),
            client: std::sync::OnceLock::new(),
            cap: Mutex::new(CapState::default()),
            stated: AtomicUsize::new(0),
        })
    }

    /// The gateway this forwarder sends to.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Requests the gateway did not answer in time, so that sending them again may deliver
    /// their spans twice.
    pub fn unanswered(&self) -> u64 {
        self.client
            .get()
            .map_or(0, |c| c.retry_stats().unanswered.get())
    }

    /// The largest request to send its gateway, beyond `forward.max_request_bytes`: a
    /// gateway refuses for good a request larger than its `receive.max_request_bytes`, or
    /// one that could cost more than its whole buffer (`RESOURCE_EXHAUSTED` marked
    /// [`TOO_LARGE_METADATA`](tailgate_core::receive::TOO_LARGE_METADATA)). The router
    /// acknowledged those spans to their senders already, so the refused request is cut
    /// and sent again, and later ones are gathered to at most the limit the gateway stated
    /// ([`MAX_REQUEST_BYTES_METADATA`](tailgate_core::receive::MAX_REQUEST_BYTES_METADATA),
    /// which a Tailgate gateway states in every answer, so this follows it from the first
    /// answer on), or half its size when it stated none (`usize::MAX` while none is known).
    /// For a size learnt without a stated limit: when a connection newer than the one the
    /// refusal came on is made to the gateway, or it answers again after being down (a
    /// restart may have raised its limit), one request is sent up to
    /// `forward.max_request_bytes`, and [`REQUEST_CAP_HOLDS`] after the size was last set
    /// one up to twice it: taken, that becomes the size.
    pub fn request_cap(&self) -> usize {
        self.cap
            .lock()
            .ok()
            .and_then(|c| c.learnt.map(|c| c.bytes))
            .unwrap_or(usize::MAX)
    }

    /// The limit its gateway last stated on requests (its `receive.max_request_bytes`),
    /// once heard: a request larger is refused for good, so a single span larger with its
    /// headers cannot be delivered (see `Router::admit`). `None` before the first
    /// statement; a size learnt without one (a refusal for the whole buffer) does not
    /// change it, and the next statement (a restart's new limit) replaces it.
    pub fn stated_limit(&self) -> Option<usize> {
        let limit = self.stated.load(Ordering::Relaxed);
        (limit != 0).then_some(limit)
    }

    /// Starts trying a larger size when a connection newer than the refusal's was made, or
    /// the size has held [`REQUEST_CAP_HOLDS`].
    fn review_cap(&self, connections: u64) {
        let Ok(mut state) = self.cap.lock() else {
            return;
        };
        let (Some(c), None) = (state.learnt, state.trial) else {
            return;
        };
        if c.stated {
            return;
        }
        let (bytes, why) = if connections > c.connection {
            (
                usize::MAX,
                "a new connection was made to it (it may be a new process)",
            )
        } else if c.since.elapsed() >= REQUEST_CAP_HOLDS {
            (c.bytes.saturating_mul(2), "the size held for ten minutes")
        } else {
            return;
        };
        // The size's time and connection start again: a refused trial waits as long.
        state.learnt = Some(RequestCap {
            since: Instant::now(),
            connection: connections,
            ..c
        });
        state.trial = Some(Trial {
            bytes,
            in_flight: false,
        });
        drop(state);
        let trying = Self::size_text(bytes);
        tracing::debug!(member = %self.member, size = c.bytes, %trying, "Trying one larger request to this gateway, as {why}.");
    }

    /// Starts trying requests up to `forward.max_request_bytes` (the gateway answers
    /// again after being down: it may be a new process with a larger limit). A refusal
    /// ends the try, and holds the size on the connection it came on (see
    /// [`Forwarder::split_refused`]): no second try follows for the same connection.
    fn try_full_size(&self) {
        if let Ok(mut state) = self.cap.lock() {
            if state.learnt.is_some_and(|c| !c.stated) {
                state.trial = Some(Trial {
                    bytes: usize::MAX,
                    in_flight: false,
                });
            }
        }
    }

    /// The size to gather the next request to, and whether it is the trial's.
    fn gather_size(&self, max_request_bytes: usize) -> (usize, bool) {
        let Ok(mut state) = self.cap.lock() else {
            return (max_request_bytes, false);
        };
        state.configured = max_request_bytes;
        let learnt = state.learnt.map_or(usize::MAX, |c| c.bytes);
        match &mut state.trial {
            Some(t) if !t.in_flight => {
                t.in_flight = true;
                if t.bytes >= max_request_bytes {
                    t.bytes = usize::MAX;
                }
                (max_request_bytes.min(t.bytes), true)
            }
            _ => (max_request_bytes.min(learnt), false),
        }
    }

    /// What a request of `bytes` gathered for the trial came to (`full`: cut by the size
    /// tried, not by what was queued): refused as too large, the trial ends and the size
    /// stays; taken and full, the size tried becomes the size (none for the full size);
    /// taken and not full, the size rises to what was taken and the trial goes on (a
    /// shallow queue proves no more); otherwise, or no larger than the size, it tells
    /// nothing and the trial goes on. Whether the size changed.
    fn end_trial(&self, bytes: usize, (taken, refused): (bool, bool), full: bool) -> bool {
        let Ok(mut state) = self.cap.lock() else {
            return false;
        };
        let learnt = state.learnt.map_or(usize::MAX, |c| c.bytes);
        let (Some(trial), Some(c)) = (state.trial, state.learnt) else {
            return false;
        };
        if bytes <= learnt || !(taken || refused) {
            state.trial = Some(Trial {
                in_flight: false,
                ..trial
            });
            return false;
        }
        if refused {
            state.trial = None;
            return false;
        }
        let now = if full { trial.bytes } else { bytes };
        state.learnt = (now != usize::MAX).then_some(RequestCap {
            bytes: now,
            since: Instant::now(),
            stated: false,
            ..c
        });
        state.trial = (!full).then_some(Trial {
            in_flight: false,
            ..trial
        });
        drop(state);
        let cut_to = Self::size_text(now);
        if full {
            tracing::info!(member = %self.member, was = learnt, %cut_to, "Gateway takes larger requests again; cutting them to the larger size.");
        } else {
            tracing::debug!(member = %self.member, was = learnt, %cut_to, "Gateway took a larger request; cutting them to its size while larger ones are tried.");
        }
        true
    }

    /// The largest request the gateway states it takes, in an answer that took a request
    /// (a Tailgate gateway states it in every answer): the size from then on, up or down,
    /// and no larger size is tried (the next answer tells of a change, a restart's
    /// included). A smaller size learnt from a refusal that stated none (one for the
    /// whole buffer, which the byte limit does not cover) stays, and is tried larger as
    /// before. Whether the size changed.
    fn take_stated(&self, limit: usize, connection: u64) -> bool {
        if !believable(limit) {
            return false;
        }
        self.stated.store(limit, Ordering::Relaxed);
        let Ok(mut state) = self.cap.lock() else {
            return false;
        };
        let was = state.learnt;
        if was.is_some_and(|c| !c.yields_to(limit) || (c.stated && c.bytes == limit)) {
            return false;
        }
        state.learnt = Some(RequestCap {
            bytes: limit,
            since: Instant::now(),
            connection,
            stated: true,
        });
        state.trial = None;
        let configured = state.configured;
        drop(state);
        let was = was.map_or(usize::MAX, |c| c.bytes);
        if was == limit {
            return false;
        }
        let was = Self::size_text(was);
        if limit < configured {
            tracing::info!(
                member = %self.member,
                %was,
                cut_to = limit,
                forward_max_request_bytes = configured,
                "Gateway takes requests of at most cut_to bytes (its receive.max_request_bytes), \
                 less than this router's forward.max_request_bytes: its requests are cut to \
                 that size. Raise its limit, or lower forward.max_request_bytes, for fewer, \
                 larger requests."
            );
        } else {
            tracing::debug!(member = %self.member, %was, cut_to = limit, "Gateway states the largest request it takes; cutting its requests to that size.");
        }
        true
    }

    fn size_text(bytes: usize) -> String {
        if bytes == usize::MAX {
            "forward.max_request_bytes".to_owned()
        } else {
            bytes.to_string()
        }
    }

    /// Whether the gateway is marked down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Whether the gateway has been greeted (its first request, an empty one): until then,
    /// whether it can be reached is not known.
    pub fn greeted(&self) -> bool {
        // Acquire: a reader that sees it greeted sees `down` as the greeting left it.
        self.greeted.load(Ordering::Acquire)
    }

    /// Marks the gateway greeted, so that its send loop, if it has not run yet, never
    /// contacts it unless parts are queued (tests of the router's stage).
    #[cfg(test)]
    pub(crate) fn greeted_for_test(&self) {
        self.greeting.store(true, Ordering::Relaxed);
        self.greeted.store(true, Ordering::Release);
    }

    /// Marks the gateway down, as a failed send would (tests of the router's stage).
    #[cfg(test)]
    pub(crate) fn mark_down_for_test(&self) {
        self.down.store(true, Ordering::Relaxed);
    }

    /// Whether its queue has room for more.
    pub fn has_room(&self) -> bool {
        self.queued_bytes() < self.capacity
    }

    fn try_reserve(&self, bytes: usize) -> bool {
        self.queued_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + bytes <= self.capacity || q == 0).then_some(q + bytes)
            })
            .is_ok()
    }

    /// Gives back `bytes` of this queue's and the router's budget.
    fn release(&self, bytes: usize) {
        for counter in [&self.queued_bytes, &*self.global] {
            let _previous = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(bytes))
            });
        }
        self.room.notify_one();
    }

    /// Queues a part whose bytes were reserved by [`Admission`].
    fn push_reserved(&self, part: Part) {
        self.stats.queued_bytes.add(part.body.len() as u64);
        self.stats.pending_spans.add(part.spans);
        if let Ok(mut q) = self.queue.lock() {
            q.push_back(part);
        }
        self.notify.notify_one();
    }

    /// Queues a part that was already accepted elsewhere (re-routed from a gateway that
    /// left), beyond the capacity if need be: it must not be lost.
    pub fn push_forced(&self, part: Part) {
        self.queued_bytes
            .fetch_add(part.body.len(), Ordering::AcqRel);
        self.global.fetch_add(part.body.len(), Ordering::AcqRel);
        self.push_reserved(part);
    }

    /// Takes everything queued, for re-routing when the gateway leaves or goes down.
    pub fn take_queued(&self) -> Vec<Part> {
        let parts: Vec<Part> = match self.queue.lock() {
            Ok(mut q) => q.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for p in &parts {
            self.release(p.body.len());
            self.stats.queued_bytes.sub(p.body.len() as u64);
            self.stats.pending_spans.sub(p.spans);
        }
        parts
    }

    /// Its client, once its task has run.
    pub(crate) fn client(&self) -> Option<GrpcClient> {
        self.client.get().cloned()
    }

    /// Counts the spans still pending (queued or in flight) as failed, for a drain whose
    /// deadline passed: the process exits with them. Returns how many.
    pub(crate) fn give_up_pending(&self) -> u64 {
        let n = self.stats.pending_spans.get();
        self.stats.pending_spans.sub(n);
        self.stats.failed_spans.add(n);
        n
    }

    /// Whether its gateway left the ring ([`Forwarder::leave`]).
    pub fn has_left(&self) -> bool {
        self.left.load(Ordering::Relaxed)
    }

    /// [`Forwarder::close`] because its gateway left the ring: sends that then fail, or
    /// that were held while it refused for memory, are re-routed rather than failed.
    pub fn leave(&self) {
        self.left.store(true, Ordering::Relaxed);
        self.close();
    }

    /// Stops the task once its queue is empty and its sends are done.
    pub fn close(&self) {
        self.closed.cancel();
        self.notify.notify_one();
    }

    /// Pops parts up to `max_bytes` in all (at least one). They are sent back to back as one
    /// request, without being copied together.
    fn pop_batch(&self, max_bytes: usize) -> Option<(Vec<Bytes>, u64, usize)> {
        let mut q = self.queue.lock().ok()?;
        let first = q.pop_front()?;
        let mut total = first.body.len();
        let mut spans = first.spans;
        let mut chunks = vec![first.body];
        while let Some(next) = q.front() {
            if total + next.body.len() > max_bytes {
                break;
            }
            let Some(next) = q.pop_front() else { break };
            total += next.body.len();
            spans += next.spans;
            chunks.push(next.body);
        }
        Some((chunks, spans, total))
    }

    /// Sends queued parts until closed and empty. `hooks.health` is called when the gateway
    /// goes down or comes back, so the router can rebuild its effective ring, and
    /// `hooks.reroute` takes back parts that were in flight to a gateway found unreachable.
    pub async fn run(self: Arc<Self>, client: GrpcClient, cfg: ForwardConfig, hooks: Hooks) {
        let client = self.client.get_or_init(|| client).clone();
        let on_health = hooks.health.clone();
        if let Ok(mut state) = self.cap.lock() {
            state.configured = cfg.max_request_bytes;
        }
        let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
        // Once: a drain restarts the loop of a down gateway, which may still be greeting.
        if !self.greeting.swap(true, Ordering::Relaxed) {
            // Beside the send loop: a gateway that takes connections and never answers
            // holds the greeting for the request timeout, and would hold every send too.
            let (me, client, on_health) = (self.clone(), client.clone(), on_health.clone());
            tokio::spawn(async move { me.greet(&client, &on_health).await });
        }
        loop {
            if self.is_down() {
                self.probe(&client, &cfg, &on_health).await;
                if self.closed.is_cancelled() && self.is_down() {
                    break;
                }
                continue;
            }
            // Wait for work, then give small parts a moment to gather into one request.
            if self.queued_bytes() == 0 {
                if self.closed.is_cancelled() {
                    break;
                }
                tokio::select! {
                    () = self.notify.notified() => {}
                    () = self.closed.cancelled() => {}
                }
                continue;
            }
            if self.queued_bytes() < cfg.coalesce_bytes && !self.closed.is_cancelled() {
                // Either more data arrived or the delay passed; both mean "send now".
                let _waited =
                    tokio::time::timeout(cfg.coalesce_delay, self.notify.notified()).await;
            }
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            // A connection newer than the refusal's may reach a new process (restarted
            // behind the same address, quicker than a request failed): its limit may be
            // larger; and a size that held long enough is tried doubled.
            self.review_cap(client.connections_made());
            let (max_bytes, trial) = self.gather_size(cfg.max_request_bytes);
            let Some((chunks, spans, bytes)) = self.pop_batch(max_bytes) else {
                if trial {
                    self.end_trial(0, (false, false), false);
                }
                continue;
            };
            // A request no larger than the learnt size tells nothing: the trial waits.
            let trial =
                trial && (bytes > self.request_cap() || self.end_trial(0, (false, false), false));
            self.release(bytes);
            self.stats.queued_bytes.sub(bytes as u64);
            let full = self.queued_bytes() > 0;
            let (me, client, hooks) = (self.clone(), client.clone(), hooks.clone());
            tokio::spawn(async move {
                let _permit = permit;
                me.deliver(&client, &chunks, (spans, bytes), (trial, full), &hooks)
                    .await;
            });
        }
        // Wait for sends still in flight.
        let _all = in_flight
            .acquire_many(cfg.max_in_flight.max(1) as u32)
            .await;
        // A part admitted over a ring read just before this gateway left, and landing after
        // its queue was moved, would be stranded here: it goes to its trace's new owner.
        if let Some(_open) = self.books.enter() {
            let stranded = self.take_queued();
            if !stranded.is_empty() {
                (hooks.reroute)(stranded);
            }
        }
    }

    async fn deliver(
        &self,
        client: &GrpcClient,
        chunks: &[Bytes],
        (spans, bytes): (u64, usize),
        (trial, full): (bool, bool),
        hooks: &Hooks,
    ) {
        self.stats.requests.add(1);
        let result = client.send_chunks(chunks).await;
        let sent = Sent {
            // The connection the answer came on (or a later one: then a larger size is
            // tried once more).
            connection: client.connections_made(),
            trial,
            full,
        };
        // Past a drain's deadline these spans were counted failed already.
        if let Some(_open) = self.books.enter() {
            self.settle(result, chunks, (spans, bytes), sent, hooks);
        }
    }

    /// Counts a send's outcome, marks the gateway down or re-routes its parts.
    fn settle(
        &self,
        result: Result<tailgate_core::forward::Delivered, ForwardError>,
        chunks: &[Bytes],
        (spans, bytes): (u64, usize),
        sent: Sent,
        hooks: &Hooks,
    ) {
        // What the request tells of a larger size being tried: (taken, refused as too large).
        let mut told = (false, false);
        match result {
            Err(error @ ForwardError::Unreachable { .. }) => {
                // Refused or unanswered connection: no use retrying here. The gateway is
                // marked down at once and the parts go to their traces' next owners.
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(member = %self.member, %error, "Gateway unreachable; marked down, routing around it.");
                    (hooks.health)();
                    self.notify.notify_one();
                }
                (hooks.reroute)(vec![Part {
                    body: one_body(chunks),
                    spans,
                }]);
            }
            Err(error @ (ForwardError::GaveUp { .. } | ForwardError::Leaving { .. }))
                if self.has_left() =>
            {
                // The gateway left the ring while these were in flight (held, perhaps,
                // while it refused for memory): its traces have new owners, which take them.
                tracing::info!(member = %self.member, %error, spans, "Gateway left the ring with spans in flight; re-routing them.");
                (hooks.reroute)(vec![Part {
                    body: one_body(chunks),
                    spans,
                }]);
            }
            Err(ForwardError::Rejected { status, .. })
                if status.code() == tonic::Code::ResourceExhausted
                    && status
                        .metadata()
                        .contains_key(tailgate_core::receive::TOO_LARGE_METADATA)
                    && self.split_refused(
                        chunks,
                        bytes,
                        Refused {
                            answer: status.message(),
                            limit: stated_limit(&status),
                        },
                        sent,
                        hooks,
                    ) =>
            {
                // Too large for this gateway: sent again in smaller parts (split_refused).
                told.1 = true;
            }
            Ok(d) => {
                told.0 = true;
                if let Some(limit) = d.max_request_bytes {
                    if self.take_stated(limit, sent.connection) {
                        // The router cuts parts to the smallest size of its gateways.
                        (hooks.health)();
                    }
                }
                let rejected = d.rejected_spans.min(spans);
                self.stats.forwarded_spans.add(spans - rejected);
                self.stats.forwarded_bytes.add(bytes as u64);
                self.stats.failed_spans.add(rejected);
                self.router_stats.forwarded_spans.add(spans - rejected);
                self.router_stats.failed_spans.add(rejected);
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(member = %self.member, %error, spans, "Forwarding failed; spans counted as failed.");
                self.stats.failed_spans.add(spans);
                self.router_stats.failed_spans.add(spans);
                let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                // A gateway refusing for memory is up and answering: marking it down would
                // send its traces' parts to other gateways (splitting them), or refuse every
                // sender when it is the only one. Its probes would pass at once anyway.
                let overloaded = matches!(&error, ForwardError::GaveUp { status, .. }
                    if status.code() == tonic::Code::ResourceExhausted);
                if error.is_retryable()
                    && !overloaded
                    && n >= 2
                    && !self.down.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(member = %self.member, "Gateway marked down; routing around it.");
                    (hooks.health)();
                    // The run loop may be parked waiting for work, and no work comes for a
                    // gateway outside the ring: wake it so that it starts probing.
                    self.notify.notify_one();
                }
            }
        }
        if sent.trial && self.end_trial(bytes, told, sent.full) {
            // The router cuts parts to the smallest size of its gateways: recomputed.
            (hooks.health)();
        }
        self.stats.pending_spans.sub(spans);
    }

    /// A request of `bytes` bytes its gateway refused for good as too large: cuts its spans
    /// into parts of at most the limit the gateway stated, or without one half its size (or
    /// the [`Forwarder::request_cap`], if lower), queues them again (over the ring then in
    /// force, so a gateway that left is not sent them), and sets the cap to that size.
    /// Returns false, leaving the spans to be counted failed, when that cannot make it
    /// smaller: a single span (with its headers) too large alone, or a cap under
    /// [`MIN_REQUEST_CAP`]. Each split cuts what is sent at once, so a request is split a
    /// bounded number of times.
    fn split_refused(
        &self,
        chunks: &[Bytes],
        bytes: usize,
        refused: Refused<'_>,
        sent: Sent,
        hooks: &Hooks,
    ) -> bool {
        // The limit the gateway stated is the size, up or down: a trial refused by a
        // gateway whose limit rose less than tried raises it. Without one (a refusal for
        // the whole buffer, or an older gateway), a request larger than the learnt size (a
        // trial's, or one gathered before the size was learnt or lowered) is cut to it,
        // which stays; one no larger is cut to half its size, which becomes the size.
        // A stated limit no smaller than the request refused is not believed.
        let known = self.cap.lock().ok().and_then(|c| c.learnt);
        let learnt = known.map_or(usize::MAX, |c| c.bytes);
        // Believed when it could be a gateway's, cuts this request, and may replace the
        // size known (as in `take_stated`).
        let stated = refused.limit.filter(|&limit| {
            limit < bytes && believable(limit) && known.is_none_or(|c| c.yields_to(limit))
        });
        if let Some(limit) = refused.limit.filter(|&l| believable(l)) {
            self.stated.store(limit, Ordering::Relaxed);
        }
        let cap = match stated {
            Some(limit) => limit,
            None if bytes > learnt => learnt,
            None => bytes / 2,
        };
        if cap < MIN_REQUEST_CAP {
            return false;
        }
        let ring = tailgate_core::ring::Ring::new([self.member.clone()]);
        let mut scan = tailgate_core::wire::Scan::default();
        let mut splitter = tailgate_core::wire::split::Splitter::default();
        let mut parts = Vec::new();
        for chunk in chunks {
            if scan.scan(chunk).is_err() {
                return false;
            }
            for (_, spans, body) in splitter.split_cut_to(&ring, chunk, &scan, cap) {
                parts.push(Part { body, spans });
            }
        }
        if parts.len() < 2 {
            return false;
        }
        self.stats.too_large_requests.add(1);
        let (cut_to, was) = {
            let Ok(mut state) = self.cap.lock() else {
                return false;
            };
            let was = state.learnt.map_or(usize::MAX, |c| c.bytes);
            let cut_to = if stated.is_some() { cap } else { cap.min(was) };
            if cut_to != was || stated.is_some() {
                state.learnt = Some(RequestCap {
                    bytes: cut_to,
                    since: Instant::now(),
                    connection: sent.connection,
                    stated: stated.is_some(),
                });
                if stated.is_some() {
                    // A stated size is not tried larger.
                    state.trial = None;
                }
            } else if let Some(c) = &mut state.learnt {
                // The size holds on the connection this refusal came on: a gateway that
                // restarted behind it has been heard, and needs no try of its own.
                c.connection = c.connection.max(sent.connection);
            }
            (cut_to, was)
        };
        let answer = refused.answer;
        if cut_to > was {
            tracing::info!(
                member = %self.member,
                refused_bytes = bytes,
                was,
                cut_to,
                "Gateway takes larger requests than before, up to the limit it stated; its \
                 requests are cut to cut_to bytes from now on."
            );
        } else if cut_to == was {
            tracing::debug!(
                member = %self.member,
                refused_bytes = bytes,
                cut_to,
                "Gateway still refuses requests larger than the size it refused before; the \
                 larger one (a try, or one gathered before the size was set) was cut and sent \
                 again."
            );
        } else if cut_to < was && stated.is_some() {
            tracing::warn!(
                member = %self.member,
                refused_bytes = bytes,
                cut_to,
                answer,
                "Gateway refused a request as too large; it was cut and sent again, and its \
                 requests are cut to cut_to bytes, its receive.max_request_bytes, from now on. \
                 Raise that, or lower this router's forward.max_request_bytes to match."
            );
        } else if cut_to < was {
            tracing::warn!(
                member = %self.member,
                refused_bytes = bytes,
                cut_to,
                answer,
                "Gateway refused a request as too large; it was cut and sent again, and its \
                 requests are cut to cut_to bytes from now on. Raise its buffer.max_buffered_bytes \
                 (or receive.max_request_bytes, if the answer names it), or lower this router's \
                 forward.max_request_bytes."
            );
        }
        (hooks.requeue)(parts, cut_to);
        true
    }

    /// The first word with a gateway, as soon as the router knows it: an empty request
    /// (a valid export that changes nothing). One that cannot be reached is marked down at
    /// once, before a router starting says it is ready (parts routed to it meanwhile go to
    /// their traces' next owners, as when a send finds it unreachable); it was marked down
    /// only when a request to it failed, so a router started in front of gateways that
    /// were all unreachable said it was ready and took requests it could only hold. The
    /// answer states the gateway's request limit, learnt before any request meets it. Any
    /// other failure leaves the gateway up: it answered, and requests will meet what it
    /// says; so does a connection made meanwhile (a send got through).
    async fn greet(&self, client: &GrpcClient, on_health: &Arc<dyn Fn() + Send + Sync>) {
        let connections = client.connections_made();
        match client.send_once(Bytes::new()).await {
            Ok(answer) => {
                if let Some(limit) = answer.max_request_bytes {
                    if self.take_stated(limit, client.connections_made()) {
                        on_health();
                    }
                }
            }
            // A connection made meanwhile means a send got through, unless this one was
            // made to a server that answers no ping (a frozen gateway at the router's
            // start: its kernel takes connections).
            Err(status)
                if tailgate_core::forward::is_unanswered_ping(&status)
                    || (tailgate_core::forward::is_connect_failure(&status)
                        && client.connections_made() == connections) =>
            {
                if !self.down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(member = %self.member, error = %status.message(), "Gateway unreachable; marked down, routing around it.");
                    on_health();
                    // The send loop may be parked waiting for work: it probes from now on.
                    self.notify.notify_one();
                }
            }
            Err(status) => {
                // Said at warn: a TLS mismatch or a refused credential shows here first,
                // before any sender's request meets it.
                tracing::warn!(member = %self.member, error = %status.message(), "Gateway answered the router's first request with an error; left up (requests will meet the same answer).");
            }
        }
        self.greeted.store(true, Ordering::Release);
    }

    async fn probe(
        &self,
        client: &GrpcClient,
        cfg: &ForwardConfig,
        on_health: &Arc<dyn Fn() + Send + Sync>,
    ) {
        // Draining, the probe goes at once if parts wait for this gateway: the drain
        // restarts a down gateway's forwarder (with pauses) for as long as its deadline
        // lasts, and each start probes once. With nothing queued there is nothing to probe
        // for (a blackholed gateway would hold the drain for the probe's timeout).
        let deadline = Instant::now() + cfg.probe_interval;
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {}
            () = self.closed.cancelled() => {
                if self.queued_bytes() == 0 {
                    return;
                }
            }
        }
        // An empty request is a valid export that changes nothing; its answer states the
        // gateway's limit, which may be new (a restart), before any request meets it.
        if let Ok(answer) = client.send_once(Bytes::new()).await {
            if let Some(limit) = answer.max_request_bytes {
                self.take_stated(limit, client.connections_made());
            }
            self.consecutive_failures.store(0, Ordering::Relaxed);
            self.down.store(false, Ordering::Relaxed);
            tracing::info!(member = %self.member, "Gateway answers again; routing to it.");
            // It may be a new process with a larger limit.
            self.try_full_size();
            on_health();
        }
    }
}

/// A gateway's answer refusing a request as too large.
struct Refused<'a> {
    /// Its message, for the log.
    answer: &'a str,
    /// The largest request it takes, when it said
    /// ([`MAX_REQUEST_BYTES_METADATA`](tailgate_core::receive::MAX_REQUEST_BYTES_METADATA)).
    limit: Option<usize>,
}

/// The limit a too-large refusal states, if it states one that can be read.
fn stated_limit(status: &tonic::Status) -> Option<usize> {
    tailgate_core::receive::status::stated_max_request_bytes(
        status
            .metadata()
            .get(tailgate_core::receive::MAX_REQUEST_BYTES_METADATA)
            .map(|v| v.as_bytes()),
    )
}

/// The router's books of pending spans: open until a drain's deadline passes, then
/// closed, so that what is pending is counted failed once. Whatever changes them from
/// outside the admission path (a send counting its outcome, parts moved from one queue to
/// another) holds them open while it does: [`Books::close`] waits for those, and after it
/// nothing enters, so a send answered later, or a probe's re-route, counts no span twice
/// and loses none from the count.
#[derive(Debug, Default)]
pub struct Books {
    closed: AtomicBool,
    open: AtomicUsize,
    /// Told when the last holder leaves closed books.
    left: Notify,
}

/// Held while the books are changed; dropped (panics included), it lets a close go on.
#[must_use]
pub struct Open<'a>(&'a Books);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 && self.0.closed.load(Ordering::SeqCst) {
            self.0.left.notify_waiters();
        }
    }
}

impl Books {
    /// Holds the books open, or `None` once they are closed.
    pub fn enter(&self) -> Option<Open<'_>> {
        // SeqCst on both sides (here and in `close`): either this sees the flag, or the
        // close sees this one inside and waits for it.
        self.open.fetch_add(1, Ordering::SeqCst);
        let open = Open(self);
        (!self.closed.load(Ordering::SeqCst)).then_some(open)
    }

    /// Closes the books and waits, at most `within`, for those changing them now (each
    /// holds them for a few microseconds: a count, a re-route). Whether they all left.
    pub async fn close(&self, within: std::time::Duration) -> bool {
        self.closed.store(true, Ordering::SeqCst);
        let until = Instant::now() + within;
        loop {
            // Registered before the count is read, so a holder leaving in between is heard.
            let left = self.left.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, left).await.is_err() {
                return false;
            }
        }
    }
}

/// The parts of a coalesced request as one body (a copy only when there are several).
fn one_body(chunks: &[Bytes]) -> Bytes {
    if chunks.len() == 1 {
        chunks[0].clone()
    } else {
        Bytes::from(chunks.concat())
    }
}

/// What a forwarder tells its router.
#[derive(Clone)]
pub struct Hooks {
    /// The gateway went down or came back: rebuild the effective ring.
    pub health: Arc<dyn Fn() + Send + Sync>,
    /// Parts that were in flight to a gateway found unreachable: send them to their
    /// traces' owners on the ring now in force.
    pub reroute: Arc<dyn Fn(Vec<Part>) + Send + Sync>,
    /// Parts of a request refused as too large, cut to the size given: queue them again for
    /// their traces' owners (counted neither re-routed nor failed), and cut requests to
    /// that size from now on.
    pub requeue: Arc<dyn Fn(Vec<Part>, usize) + Send + Sync>,
}

/// All-or-nothing admission of a request's parts into their forwarders' queues. Dropped
/// without [`Admission::commit`], it gives back everything it reserved.
pub struct Admission<'a> {
    reserved: Vec<(&'a Forwarder, usize)>,
    global_limit: usize,
}

impl<'a> Admission<'a> {
    /// Starts admitting against a router-wide budget of `global_limit` queued bytes.
    pub fn new(global_limit: usize) -> Self {
        Admission {
            reserved: Vec::new(),
            global_limit,
        }
    }

    /// Reserves `bytes` in `f` beyond the limits: for a request that waited for room
    /// before it was read ([`tailgate_core::receive::SpanSink::ready`]) and found the
    /// queues filled by others read at the same time. The router's estimate of what it let
    /// through keeps the overshoot small, and its hard limit bounds it (see
    /// [`crate::split`]).
    pub fn reserve_over(&mut self, f: &'a Forwarder, bytes: usize) {
        f.global.fetch_add(bytes, Ordering::AcqRel);
        f.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        self.reserved.push((f, bytes));
    }

    /// Reserves room for `bytes` in `f`; `false` (and nothing reserved by this call) when
    /// the forwarder's or the router's queue is full.
    pub fn reserve(&mut self, f: &'a Forwarder, bytes: usize) -> bool {
        let limit = self.global_limit;
        let global_ok = f
            .global
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q + bytes <= limit).then_some(q + bytes)
            })
            .is_ok();
        if !global_ok {
            return false;
        }
        if !f.try_reserve(bytes) {
            f.global.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        self.reserved.push((f, bytes));
        true
    }

    /// Queues the parts, in the order they were reserved.
    pub fn commit(mut self, parts: impl IntoIterator<Item = Part>) {
        for ((f, _), part) in std::mem::take(&mut self.reserved).into_iter().zip(parts) {
            f.push_reserved(part);
        }
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        for (f, bytes) in self.reserved.drain(..) {
            f.release(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a requeue hook was given: the parts and the size they were cut to.
    type Requeued = Arc<Mutex<Vec<(Vec<Part>, usize)>>>;

    /// Hooks keeping what a settling queues again (and re-routing nothing).
    fn requeue_hooks() -> (Hooks, Requeued) {
        let queued: Requeued = Arc::default();
        let into = queued.clone();
        let hooks = Hooks {
            health: Arc::new(|| {}),
            reroute: Arc::new(|_| panic!("nothing is re-routed")),
            requeue: Arc::new(move |parts, cap| into.lock().unwrap().push((parts, cap))),
        };
        (hooks, queued)
    }

    /// A forwarder to `member` with a 1 MiB queue, alone in its router.
    fn forwarder(member: &str) -> Arc<Forwarder> {
        Forwarder::new(
            Member::new(member),
            1 << 20,
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Notify::new()),
            Arc::new(RouterStats::default()),
            Arc::new(Books::default()),
        )
    }

    /// A gateway's `RESOURCE_EXHAUSTED` without a retry hint, `marked` too large as a
    /// Tailgate gateway marks it.
    fn refusal(
        message: &'static str,
        marked: bool,
    ) -> Result<tailgate_core::forward::Delivered, ForwardError> {
        let mut status = tonic::Status::resource_exhausted(message);
        if marked {
            status.metadata_mut().insert(
                tailgate_core::receive::TOO_LARGE_METADATA,
                tonic::metadata::MetadataValue::from_static("1"),
            );
        }
        Err(ForwardError::Rejected {
            endpoint: "10.0.0.7:4317".into(),
            status,
        })
    }

    /// A Tailgate gateway's too-large refusal stating its limit (`limit`, as sent).
    fn refusal_stating(limit: &str) -> Result<tailgate_core::forward::Delivered, ForwardError> {
        let mut refused = refusal("message is over the limit", true);
        if let Err(ForwardError::Rejected { status, .. }) = &mut refused {
            status.metadata_mut().insert(
                tailgate_core::receive::MAX_REQUEST_BYTES_METADATA,
                limit.parse().expect("ASCII"),
            );
        }
        refused
    }

    /// An encoded request of `traces` traces of three spans.
    fn encoded(traces: usize) -> Bytes {
        use prost::Message as _;
        Bytes::from(
            tailgate_core::test_util::FakeOtlp::traces(traces)
                .spans(3)
                .build()
                .encode_to_vec(),
        )
    }

    /// Scenario: a gateway answers a send of 120 spans `RESOURCE_EXHAUSTED` without a retry
    /// hint, once unmarked (a proxy's quota, say) and once marked too large, as a Tailgate
    /// gateway marks it.
    /// Guarantees: only the marked refusal is cut and queued again (parts of at most half
    /// the request, every span once), lowering the forwarder's size and counting the
    /// refusal, with a warning when the size goes down (not when it stays); the unmarked
    /// one is counted failed and changes no size.
    #[test]
    fn only_a_refusal_marked_too_large_is_cut_and_sent_again() {
        let body = encoded(40);
        let bytes = body.len();
        let forwarder = forwarder("10.0.0.7:4317");
        let (hooks, queued) = requeue_hooks();
        let refused = |marked| refusal("message of 5000 bytes is over the limit of 4096", marked);
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        forwarder.settle(
            refused(false),
            std::slice::from_ref(&body),
            (120, bytes),
            Sent {
                connection: 1,
                trial: false,
                full: true,
            },
            &hooks,
        );
        assert_eq!(forwarder.stats.failed_spans.get(), 120);
        assert!(queued.lock().unwrap().is_empty());
        assert_eq!(forwarder.request_cap(), usize::MAX);

        forwarder.settle(
            refused(true),
            std::slice::from_ref(&body),
            (120, bytes),
            Sent {
                connection: 1,
                trial: false,
                full: true,
            },
            &hooks,
        );
        let warning = "Gateway refused a request as too large";
        assert_eq!(log.count(warning), 1);
        // It quotes the gateway's answer, which says which limit refused it.
        assert_eq!(
            log.count("answer=\"message of 5000 bytes is over the limit of 4096"),
            1
        );
        // The same size again: cut and queued, the size unchanged, no second warning.
        let sent = Sent {
            connection: 1,
            trial: false,
            full: true,
        };
        forwarder.settle(refused(true), &[body], (120, bytes), sent, &hooks);
        assert_eq!(log.count(warning), 1);
        assert_eq!(forwarder.stats.too_large_requests.get(), 2);
        assert_eq!(forwarder.stats.failed_spans.get(), 120, "none more failed");
        let queued = queued.lock().unwrap();
        let (parts, cap) = &queued[0];
        assert_eq!(*cap, bytes / 2);
        assert_eq!(forwarder.request_cap(), bytes / 2);
        assert!(parts.len() >= 2 && parts.iter().all(|p| p.body.len() <= bytes / 2));
        assert_eq!(parts.iter().map(|p| p.spans).sum::<u64>(), 120);
    }

    /// Scenario: a forwarder whose gateway refuses requests as too large (its size learnt on
    /// connection 1), on a paused clock: reviewed just before and after
    /// [`REQUEST_CAP_HOLDS`], the doubled size tried and refused, then tried and taken; a
    /// new connection, the full size tried and refused, then (a new process) taken.
    /// Guarantees: the size holds for its period; then one request at a time is gathered
    /// to the larger size while the others keep to the learnt one (so one refusal per
    /// trial, whatever `forward.max_in_flight`); a refused trial leaves the size as it was
    /// (no halving below it, no warning), a taken one makes it the size (none past the full
    /// size); a request no larger than the learnt size tells nothing and the trial waits.
    #[tokio::test(start_paused = true)]
    async fn a_learnt_request_size_is_raised_by_one_request_at_a_time() {
        let (small, middle, body) = (encoded(10), encoded(30), encoded(40));
        let (larger, largest) = (encoded(160), encoded(800));
        let forwarder = forwarder("10.0.0.8:4317");
        let hooks = Hooks {
            health: Arc::new(|| {}),
            reroute: Arc::new(|_| panic!("nothing is re-routed")),
            requeue: Arc::new(|_, _| {}),
        };
        let answer = |refused: bool| match refused {
            true => refusal("too large", true),
            false => Ok(tailgate_core::forward::Delivered::default()),
        };
        // A request gathered to the size it was given (the queue held more).
        let settle = |body: &Bytes, refused: bool, connection: u64, trial: bool| {
            let sent = Sent {
                connection,
                trial,
                full: true,
            };
            let sizes = (480, body.len());
            forwarder.settle(
                answer(refused),
                std::slice::from_ref(body),
                sizes,
                sent,
                &hooks,
            );
        };
        let max = 1 << 30;
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        let warning = "Gateway refused a request as too large";
        tokio::time::advance(std::time::Duration::from_secs(5)).await;
        settle(&body, true, 1, false);
        let cap = body.len() / 2;
        assert_eq!(forwarder.request_cap(), cap);
        assert_eq!(log.count(warning), 1);
        assert_eq!(forwarder.gather_size(max), (cap, false));

        tokio::time::advance(REQUEST_CAP_HOLDS - std::time::Duration::from_millis(10)).await;
        forwarder.review_cap(1);
        assert_eq!(forwarder.gather_size(max), (cap, false), "not yet");
        tokio::time::advance(std::time::Duration::from_millis(20)).await;
        forwarder.review_cap(1);
        assert_eq!(
            forwarder.gather_size(max),
            (2 * cap, true),
            "one request tries twice"
        );
        assert_eq!(
            forwarder.gather_size(max),
            (cap, false),
            "the others keep the size"
        );
        // The trial's request is refused: cut to the size, which stays, without a warning.
        settle(&larger, true, 1, true);
        assert_eq!(forwarder.request_cap(), cap);
        assert_eq!(log.count(warning), 1);
        assert_eq!(forwarder.stats.too_large_requests.get(), 2);
        assert_eq!(
            forwarder.gather_size(max),
            (cap, false),
            "no trial until the next period"
        );

        tokio::time::advance(REQUEST_CAP_HOLDS).await;
        forwarder.review_cap(1);
        assert_eq!(forwarder.gather_size(max), (2 * cap, true));
        // A request no larger than the size tells nothing: the trial waits.
        assert!(small.len() <= cap);
        settle(&small, false, 1, true);
        assert_eq!(forwarder.request_cap(), cap);
        assert_eq!(forwarder.gather_size(max), (2 * cap, true));
        // Taken, but the queue ran out before the size tried: the size rises to what was
        // taken, and the trial goes on.
        let sent = Sent {
            connection: 1,
            trial: true,
            full: false,
        };
        let sizes = (360, middle.len());
        let ok = Ok(tailgate_core::forward::Delivered::default());
        forwarder.settle(ok, std::slice::from_ref(&middle), sizes, sent, &hooks);
        assert!(middle.len() > cap && middle.len() < 2 * cap);
        assert_eq!(forwarder.request_cap(), middle.len());
        assert_eq!(forwarder.gather_size(max), (2 * cap, true));
        settle(&larger, false, 1, true);
        assert_eq!(
            forwarder.request_cap(),
            2 * cap,
            "taken full: the size doubled"
        );
        assert_eq!(
            forwarder.gather_size(max),
            (2 * cap, false),
            "the trial is over"
        );
        // A request gathered before the size was lowered, refused: cut to the size, which
        // stays, without a warning.
        settle(&larger, true, 1, false);
        assert_eq!(forwarder.request_cap(), 2 * cap);
        assert_eq!(log.count(warning), 1);

        // A new connection: the full size is tried with one request.
        forwarder.review_cap(2);
        assert_eq!(forwarder.gather_size(max), (max, true));
        assert_eq!(forwarder.gather_size(max), (2 * cap, false));
        settle(&largest, true, 2, true);
        assert_eq!(forwarder.request_cap(), 2 * cap, "refused: the size stays");
        assert_eq!(forwarder.stats.too_large_requests.get(), 4);
        assert_eq!(log.count(warning), 1);
        forwarder.review_cap(2);
        assert_eq!(
            forwarder.gather_size(max),
            (2 * cap, false),
            "the same connection"
        );
        forwarder.review_cap(3);
        assert_eq!(forwarder.gather_size(max), (max, true));
        settle(&largest, false, 3, true);
        assert_eq!(
            forwarder.request_cap(),
            usize::MAX,
            "a new process takes any size"
        );
        assert_eq!(log.count("Gateway takes larger requests again"), 2);

        // A refusal that is no trial still halves, with a warning.
        settle(&largest, true, 3, false);
        assert_eq!(forwarder.request_cap(), largest.len() / 2);
        assert_eq!(log.count(warning), 2);

        // Back from down on a new connection: one request tries the full size, and its
        // refusal on that connection ends the try (no second one for the same connection,
        // which `review_cap` would otherwise take for newer than the size's).
        forwarder.try_full_size();
        assert_eq!(forwarder.gather_size(max), (max, true));
        settle(&largest, true, 4, true);
        forwarder.review_cap(4);
        assert_eq!(
            forwarder.gather_size(max),
            (largest.len() / 2, false),
            "one try per connection"
        );
        // A refusal on a newer connection than the size's (a restart the probe did not see)
        // holds the size there too.
        settle(&largest, true, 5, false);
        forwarder.review_cap(5);
        assert_eq!(forwarder.gather_size(max), (largest.len() / 2, false));
        assert_eq!(log.count(warning), 2);
    }

    /// Scenario: a gateway refuses a request as too large stating a limit far under half
    /// the request; a new connection is made and ten minutes pass; a request in flight
    /// across a restart is refused stating a larger limit; answers taking requests state
    /// limits up and down, and none; then a gateway refuses without stating a limit (its
    /// buffer) and its answers state a larger one; last, limits that cannot be right, or
    /// read.
    /// Guarantees: a stated limit is the size at once, up or down (parts of at most it,
    /// one warning going down, none going up), and no larger size is tried while it holds
    /// (answers tell of a change); a size learnt from a refusal stating none stays under a
    /// larger stated limit; a statement that cannot be right, or read, is not believed: the
    /// request is cut as without one (to the size, which stays).
    #[tokio::test(start_paused = true)]
    async fn a_stated_limit_is_the_size_at_once() {
        let body = encoded(200);
        let spans = 600;
        let buffered = forwarder("10.0.0.10:4317");
        let forwarder = forwarder("10.0.0.9:4317");
        let (hooks, queued) = requeue_hooks();
        let settle = |forwarder: &Forwarder, answer, connection| {
            let sent = Sent {
                connection,
                trial: false,
                full: true,
            };
            let sizes = (spans, body.len());
            forwarder.settle(answer, std::slice::from_ref(&body), sizes, sent, &hooks);
        };
        let taken = |limit| {
            Ok(tailgate_core::forward::Delivered {
                max_request_bytes: limit,
                ..Default::default()
            })
        };
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        let warning = "Gateway refused a request as too large";
        // 2,000 bytes: a fraction of the request, which halving would take several
        // refusals to reach.
        assert!(body.len() > 16 * 2_000, "{}", body.len());
        settle(&forwarder, refusal_stating("2000"), 1);
        assert_eq!(forwarder.request_cap(), 2_000);
        assert_eq!(log.count(warning), 1);
        assert_eq!(log.count("cut_to=2000"), 1);
        assert_eq!(log.count("its receive.max_request_bytes, from now on"), 1);
        {
            let queued = queued.lock().unwrap();
            let (parts, cap) = &queued[0];
            assert_eq!(*cap, 2_000);
            assert!(parts.iter().all(|p| p.body.len() <= 2_000));
            assert_eq!(parts.iter().map(|p| p.spans).sum::<u64>(), spans);
        }
        // Not tried larger: the gateway's answers tell of a change.
        forwarder.review_cap(2);
        tokio::time::advance(REQUEST_CAP_HOLDS).await;
        forwarder.review_cap(2);
        forwarder.try_full_size();
        assert_eq!(forwarder.gather_size(1 << 30), (2_000, false));

        // A request in flight across a restart, refused stating a larger limit: raised.
        settle(&forwarder, refusal_stating("9000"), 2);
        assert_eq!(forwarder.request_cap(), 9_000, "raised to the stated limit");
        assert_eq!(log.count(warning), 1, "no warning going up");
        assert_eq!(log.count("Gateway takes larger requests than before"), 1);

        // Answers taking requests state the limit: up, down, the same, or nothing.
        settle(&forwarder, taken(Some(50_000)), 3);
        assert_eq!(forwarder.request_cap(), 50_000);
        settle(&forwarder, taken(Some(4_000)), 3);
        assert_eq!(forwarder.request_cap(), 4_000);
        settle(&forwarder, taken(Some(4_000)), 3);
        settle(&forwarder, taken(None), 3);
        assert_eq!(forwarder.request_cap(), 4_000);
        assert_eq!(forwarder.gather_size(1 << 30), (4_000, false));
        assert_eq!(log.count(warning), 1);
        // Each change to a limit under forward.max_request_bytes is told once, at info.
        let told = "Gateway takes requests of at most cut_to bytes";
        assert_eq!(log.count(told), 2);
        assert_eq!(log.count("forward_max_request_bytes=1073741824"), 2);

        // A limit no smaller than the request refused, or not a number: not believed.
        let bytes = body.len();
        assert!(bytes > 4_000, "gathered before the size was learnt");
        settle(&forwarder, refusal_stating("99999999"), 3);
        assert_eq!(
            forwarder.request_cap(),
            4_000,
            "cut to the size, which stays"
        );
        settle(&forwarder, refusal_stating("lots"), 3);
        assert_eq!(forwarder.request_cap(), 4_000);
        // Nor a limit under what any request can be cut to (a proxy's 0 would cut every
        // request to single spans), in a refusal or an answer.
        settle(&forwarder, refusal_stating("100"), 3);
        assert_eq!(forwarder.request_cap(), 4_000);
        for tiny in [0, 1, MIN_REQUEST_CAP - 1] {
            settle(&forwarder, taken(Some(tiny)), 3);
            assert_eq!(forwarder.request_cap(), 4_000, "{tiny}");
        }
        assert_eq!(forwarder.stats.too_large_requests.get(), 5);
        assert_eq!(forwarder.stats.failed_spans.get(), 0);
        // A request larger than the size (gathered before it was set) refused stating a
        // lower limit: the size is lowered to it (without a statement it would stay).
        settle(&forwarder, refusal_stating("3000"), 3);
        assert_eq!(forwarder.request_cap(), 3_000);

        // A refusal stating no limit (the whole buffer) halves, and answers stating a larger
        // byte limit do not undo it; a smaller one is the size.
        settle(&buffered, refusal("over the whole buffer", true), 1);
        assert_eq!(buffered.request_cap(), bytes / 2);
        settle(&buffered, taken(Some(16 << 20)), 1);
        assert_eq!(buffered.request_cap(), bytes / 2);
        // Its try at full size refused for the byte limit, above the size: the size stays,
        // not taken for the stated one (the buffer would refuse that again).
        buffered.review_cap(2);
        assert_eq!(buffered.gather_size(1 << 30), (1 << 30, true));
        settle(&buffered, refusal_stating(&(bytes - 1).to_string()), 2);
        assert_eq!(buffered.request_cap(), bytes / 2);
        settle(&buffered, taken(Some(1_000)), 1);
        assert_eq!(buffered.request_cap(), 1_000);
    }

    /// Scenario: the books held open by one change, closed by a drain, entered after, and
    /// a holder that panics.
    /// Guarantees: the close waits for the holder (and says whether it left in time);
    /// nothing enters once closed; a panicking holder still lets the close go on.
    #[tokio::test(start_paused = true)]
    async fn closed_books_wait_for_their_holders_and_take_no_one_after() {
        let books = Arc::new(Books::default());
        let open = books.enter().expect("open at first");
        assert!(
            !books.close(std::time::Duration::from_millis(50)).await,
            "a holder past the wait"
        );
        assert!(books.enter().is_none(), "closed: nothing enters");
        drop(open);
        assert!(books.close(std::time::Duration::from_millis(50)).await);

        let books = Arc::new(Books::default());
        let held = books.clone();
        let panicked = std::thread::spawn(move || {
            let _open = held.enter();
            panic!("a hook failed while the books were open");
        })
        .join();
        assert!(panicked.is_err());
        assert!(books.close(std::time::Duration::from_millis(50)).await);
    }
}
