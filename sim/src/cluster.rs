//! The cluster's membership over time: which gateways the headless Service's DNS lists,
//! the ring (the real [`tailgate_core::ring::Ring`]) each router and the gateways hold at any
//! moment, and which gateway processes are alive. Built once from a scenario's events;
//! the engine asks it who owns a trace id at a time, as a router or as the gateways see it.
//!
//! Routers read DNS every `dns_interval`, each at its own phase, so router `r` sees the
//! list as it was `lag_r` ago (0 ≤ lag_r < interval); the gateways see it half an interval
//! late. A DNS outage freezes the list; a stale router keeps the ring it had.

use tailgate_core::ring::{Member, Ring};

use crate::scenario::{EventKind, Scenario};

/// After a kill, how long until the pod leaves the Service's endpoints (readiness probe
/// failures: 3 × 3 s, as the manifests' probe).
pub const KILL_DETECTION_S: f64 = 10.0;

/// After a kill, how long until the Deployment's replacement pod is ready and listed.
pub const REPLACEMENT_S: f64 = 30.0;

/// Hash points per ring at which the owners of two versions are compared (what moves
/// where when the ring changes); each member's share comes from the ring's arcs.
pub const SHARE_POINTS: u64 = 4096;

/// One gateway process.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    /// Its ring name (`ip:4317`).
    pub name: String,
    /// When it joined the Service.
    pub joined: f64,
    /// When it left the Service (SIGTERM, or detection after a kill).
    pub left_dns: Option<f64>,
    /// When the process ended (after its drain, or at the kill).
    pub gone: Option<f64>,
    /// Whether it was killed (what it buffered is lost).
    pub killed: bool,
}

/// One version of the member list: what its ring (built once, then dropped, since 300
/// rings of 300 members would take gigabytes) says about the points the sim asks about.
#[derive(Debug)]
pub struct Version {
    /// Member id → share of trace ids (only for members of this version).
    pub shares: Vec<(usize, f64)>,
    /// The owner (member id) of each of [`SHARE_POINTS`] evenly spaced hashes.
    pub point_owners: Vec<u32>,
    /// The owner (member id) of each followed trace, by its index.
    pub trace_owners: Vec<u32>,
}

/// Membership over the whole run.
#[derive(Debug)]
pub struct Timeline {
    /// Every gateway that ever ran, by member id.
    pub members: Vec<Life>,
    /// Member lists, oldest first.
    pub versions: Vec<Version>,
    /// (from when, version) as DNS answers, in time order.
    dns: Vec<(f64, usize)>,
    /// DNS outages: [from, to).
    outages: Vec<(f64, f64)>,
    /// Per router: its lag behind DNS, and when it stopped refreshing.
    routers: Vec<(f64, Option<f64>)>,
    /// The gateways' lag behind DNS.
    gateway_lag: f64,
    /// The followed traces' ring hashes.
    hashes: Vec<u64>,
    /// Slowed gateways: (member id, from, to, factor).
    pub slow: Vec<(usize, f64, f64, f64)>,
    /// Events that changed nothing, by index in the scenario's list, with why (see
    /// [`ignored_events`]).
    pub ignored: Vec<(usize, String)>,
}

/// Why a kill or slow-down of position `pos` changes nothing with `listed` gateways.
fn past_the_list(pos: usize, listed: usize) -> String {
    format!("gateway: position {pos}, but {listed} gateway(s) are listed then (0 is the oldest)")
}

/// The events of `s` that would change nothing in its run (a kill of a position past the
/// gateways running then, of the only one, or of a pod already killed; a slow-down of a
/// position past them; a scale-up or -down to the size already running), by index in
/// its list, with why: the scenario loader refuses them, where the run went on as if
/// they had not been written. Kills are followed as the run follows them (the pod leaves
/// the list after [`KILL_DETECTION_S`], a replacement joins after [`REPLACEMENT_S`]).
pub fn ignored_events(s: &Scenario) -> Vec<(usize, String)> {
    Timeline::build(
        s,
        s.leave_linger.as_secs_f64(),
        Vec::new(),
        &mut fastrand::Rng::with_seed(0),
    )
    .ignored
}

impl Timeline {
    /// Builds the membership of `s` (its events in time order); `linger` is how long a
    /// leaving gateway keeps running after SIGTERM (drain included). Without
    /// redistribution a gateway exits at SIGTERM, deciding what it holds, as the
    /// Collector's tail sampling does.
    /// `hashes` are the ring hashes of the traces the engine follows, by index.
    pub fn build(s: &Scenario, linger: f64, hashes: Vec<u64>, rng: &mut fastrand::Rng) -> Self {
        let interval = s.dns_interval.as_secs_f64();
        let mut t = Timeline {
            members: Vec::new(),
            versions: Vec::new(),
            dns: Vec::new(),
            outages: Vec::new(),
            routers: (0..s.routers)
                .map(|_| (interval * rng.f64(), None))
                .collect(),
            gateway_lag: interval / 2.0,
            hashes,
            slow: Vec::new(),
            ignored: Vec::new(),
        };
        let mut current: Vec<usize> = (0..s.gateways).map(|_| t.add_member(0.0)).collect();
        t.push_version(0.0, &current);
        let mut changes = expand_events(s, &mut t.ignored);
        changes.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Changes within a millisecond make one version (a rolling restart's new pod and
        // the old one it replaces). A kill schedules changes of its own (the pod leaving
        // the Service, its replacement joining), kept in time order.
        let mut pending: Option<f64> = None;
        let mut i = 0;
        while i < changes.len() {
            let (at, change) = changes[i];
            i += 1;
            if let Some(p) = pending.filter(|p| at - *p > 1e-3) {
                t.push_version(p, &current);
                pending = None;
            }
            match change {
                Change::Add(n) => {
                    for _ in 0..n {
                        current.push(t.add_member(at));
                    }
                }
                Change::Remove(pos) => {
                    let Some(&id) = current.get(pos.min(current.len().saturating_sub(1))) else {
                        continue;
                    };
                    if current.len() <= 1 {
                        continue;
                    }
                    current.retain(|m| *m != id);
                    t.members[id].left_dns.get_or_insert(at);
                    let linger = if s.redistribute { linger } else { 0.0 };
                    t.members[id].gone.get_or_insert(at + linger);
                }
                Change::Unlist(id) => current.retain(|m| *m != id),
                Change::Kill(pos, event) => {
                    // A position past the cluster, or its last gateway: nothing happens.
                    let Some(&id) = current.get(pos).filter(|_| current.len() > 1) else {
                        t.ignored.push((
                            event,
                            if pos >= current.len() {
                                past_the_list(pos, current.len())
                            } else {
                                "kills the only gateway: the run would have none left (scale up before it)".into()
                            },
                        ));
                        continue;
                    };
                    if t.members[id].killed {
                        t.ignored.push((
                            event,
                            format!("gateway: position {pos} holds a pod already killed, still listed until it is detected ({KILL_DETECTION_S} s)"),
                        ));
                        continue;
                    }
                    t.members[id].killed = true;
                    t.members[id].gone = Some(at);
                    t.members[id].left_dns = Some(at + KILL_DETECTION_S);
                    for later in [
                        (at + KILL_DETECTION_S, Change::Unlist(id)),
                        (at + REPLACEMENT_S, Change::Add(1)),
                    ] {
                        let pos = changes.partition_point(|c| c.0 <= later.0).max(i);
                        changes.insert(pos, later);
                    }
                    continue;
                }
                Change::Slow(pos, factor, duration, event) => {
                    match current.get(pos) {
                        Some(&id) => t.slow.push((id, at, at + duration, factor)),
                        None => t.ignored.push((event, past_the_list(pos, current.len()))),
                    }
                    continue;
                }
                Change::Outage(d) => {
                    t.outages.push((at, at + d));
                    continue;
                }
                Change::Stale(r) => {
                    t.routers[r].1 = Some(at);
                    continue;
                }
            }
            pending.get_or_insert(at);
        }
        if let Some(p) = pending {
            t.push_version(p, &current);
        }
        t.dns.sort_by(|a, b| a.0.total_cmp(&b.0));
        t
    }

    fn add_member(&mut self, at: f64) -> usize {
        let id = self.members.len();
        self.members.push(Life {
            name: format!("10.{}.{}.{}:4317", id >> 16 & 255, id >> 8 & 255, id & 255),
            joined: at,
            left_dns: None,
            gone: None,
            killed: false,
        });
        id
    }

    fn push_version(&mut self, at: f64, current: &[usize]) {
        let members: Vec<Member> = current
            .iter()
            .map(|&id| Member::new(self.members[id].name.as_str()))
            .collect();
        let ring = Ring::new(members);
        // The ring sorts its members; map its indices back to ids by name.
        let ids: Vec<u32> = ring
            .members()
            .iter()
            .map(|m| {
                current
                    .iter()
                    .copied()
                    .find(|&id| self.members[id].name == m.as_str())
                    .unwrap_or(0) as u32
            })
            .collect();
        let owner = |h: u64| ring.owner_of_hash(h).map_or(0, |i| ids[i]);
        let point_owners: Vec<u32> = (0..SHARE_POINTS).map(|i| owner(point_hash(i))).collect();
        // Exact arcs: a few thousand sample points would be ±12% per member at 60
        // gateways and make the noisiest one look hot.
        let shares = ids
            .iter()
            .zip(ring.shares())
            .map(|(&id, share)| (id as usize, share))
            .collect();
        let trace_owners = self.hashes.iter().map(|h| owner(*h)).collect();
        self.versions.push(Version {
            shares,
            point_owners,
            trace_owners,
        });
        self.dns.push((at, self.versions.len() - 1));
    }

    /// The version DNS answers with at `t` (frozen during outages).
    pub fn dns_version(&self, t: f64) -> usize {
        let t = self
            .outages
            .iter()
            .find(|(a, b)| t >= *a && t < *b)
            .map_or(t, |(a, _)| *a);
        let at = self.dns.partition_point(|(from, _)| *from <= t);
        self.dns[at.saturating_sub(1)].1
    }

    /// The version router `r` holds at `t`.
    pub fn router_version(&self, r: usize, t: f64) -> usize {
        let (lag, stale) = self.routers[r % self.routers.len()];
        let seen = (t - lag).max(0.0);
        self.dns_version(stale.map_or(seen, |s| seen.min(s)))
    }

    /// The version the gateways hold at `t`.
    pub fn gateway_version(&self, t: f64) -> usize {
        self.dns_version((t - self.gateway_lag).max(0.0))
    }

    /// The owner (member id) of followed trace `trace` in `version`.
    pub fn owner(&self, version: usize, trace: usize) -> usize {
        self.versions[version].trace_owners[trace] as usize
    }

    /// The owner (member id) of hash point `point` (of [`SHARE_POINTS`]) in `version`.
    pub fn point_owner(&self, version: usize, point: usize) -> usize {
        self.versions[version].point_owners[point] as usize
    }

    /// Whether member `id`'s process runs at `t`.
    pub fn alive(&self, id: usize, t: f64) -> bool {
        let m = &self.members[id];
        t >= m.joined && m.gone.is_none_or(|g| t < g)
    }

    /// When every router and gateway holds the last member list: the last change DNS
    /// answers with, plus the longest router lag (stale routers aside).
    pub fn settled_at(&self) -> f64 {
        let last = self.dns.last().map_or(0.0, |(t, _)| *t);
        let lag = self
            .routers
            .iter()
            .map(|(l, _)| *l)
            .fold(self.gateway_lag, f64::max);
        let outage_end = self.outages.iter().map(|(_, b)| *b).fold(0.0, f64::max);
        last.max(outage_end) + lag
    }

    /// Routers.
    pub fn routers(&self) -> usize {
        self.routers.len()
    }

    /// The next time after `t` when router `r`'s version differs from its version at `t`
    /// (within `horizon` seconds), if any.
    pub fn router_change_after(&self, r: usize, t: f64, horizon: f64) -> Option<f64> {
        let now = self.router_version(r, t);
        let step = 0.25;
        let mut x = t + step;
        while x <= t + horizon {
            if self.router_version(r, x) != now {
                return Some(x);
            }
            x += step;
        }
        None
    }
}

/// The `i`th of [`SHARE_POINTS`] evenly spaced ring hashes.
pub fn point_hash(i: u64) -> u64 {
    (u64::MAX / SHARE_POINTS).wrapping_mul(i)
}

/// A membership change at a time.
#[derive(Debug, Clone, Copy)]
enum Change {
    Add(usize),
    /// Remove the member at this position of the current list.
    Remove(usize),
    /// Take this member id off the list (a killed pod leaving the endpoints).
    Unlist(usize),
    /// Kill the member at this position of the current list (and the event's index).
    Kill(usize, usize),
    /// Slow the member at this position: factor, for seconds (and the event's index).
    Slow(usize, f64, f64, usize),
    Outage(f64),
    Stale(usize),
}

/// The scenario's events as membership changes (a rolling restart becomes one add and one
/// remove per pod; scale-downs remove the newest pods, as a Deployment does).
fn expand_events(s: &Scenario, ignored: &mut Vec<(usize, String)>) -> Vec<(f64, Change)> {
    let mut out = Vec::new();
    let mut size = s.gateways;
    let mut order: Vec<usize> = (0..s.events.len()).collect();
    order.sort_by_key(|&i| s.events[i].at);
    for index in order {
        let e = &s.events[index];
        let at = e.at.as_secs_f64();
        match &e.kind {
            EventKind::ScaleUp { to } if *to > size => {
                out.push((at, Change::Add(to - size)));
                size = *to;
            }
            EventKind::ScaleDown { to } if *to < size => {
                for i in (*to..size).rev() {
                    out.push((at, Change::Remove(i)));
                }
                size = *to;
            }
            EventKind::RollingRestart { every } => {
                for i in 0..size {
                    let when = at + every.as_secs_f64() * i as f64;
                    // The new pod first (maxSurge), then the oldest leaves: always the
                    // first of the list, which holds the oldest pods.
                    out.push((when, Change::Add(1)));
                    out.push((when + 1e-6, Change::Remove(0)));
                }
            }
            EventKind::ScaleUp { to } | EventKind::ScaleDown { to } => ignored.push((
                index,
                format!("to: {to}, with {size} gateway(s) running then: it changes nothing (a scale_up must go above the size running, a scale_down below)"),
            )),
            EventKind::Kill { gateway } => out.push((at, Change::Kill(*gateway, index))),
            EventKind::Slow {
                gateway,
                factor,
                duration,
            } => out.push((
                at,
                Change::Slow(*gateway, *factor, duration.as_secs_f64(), index),
            )),
            EventKind::DnsOutage { duration } => {
                out.push((at, Change::Outage(duration.as_secs_f64())))
            }
            EventKind::StaleRouter { router } => out.push((at, Change::Stale(*router))),
            _ => {}
        }
    }
    out
}
