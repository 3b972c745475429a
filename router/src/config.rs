//! The router's YAML configuration. Every key has a default except the member list.
//!
//! ```yaml
//! receive:
//!   grpc: 127.0.0.1:4317        # OTLP/gRPC listen address (null disables)
//!   http: 127.0.0.1:4318        # OTLP/HTTP listen address (null disables)
//!   max_request_bytes: 16777216
//! members:
//!   static: [10.0.0.1:4317, 10.0.0.2:4317]   # the gateways' OTLP/gRPC addresses
//!   # or, in Kubernetes, the gateways' headless Service:
//!   # dns: { name: tailgate-gateway.tailgate.svc.cluster.local, port: 4317 }
//! forward:
//!   timeout: 5s
//!   retry: { initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 30s }
//!   queue_bytes: 4194304         # per gateway; full queues hold new requests unread
//!   max_queued_bytes: 16777216   # whole router
//!   queue_wait: 5s               # then RESOURCE_EXHAUSTED, before the body is read
//!   max_held_requests: 64        # more waiting than this: refused at once, unread
//!   compression: none            # none | gzip | zstd | snappy
//! admin: 127.0.0.1:13133        # /metrics, /healthz, /readyz (null disables)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::config::{load_checked, ConfigError};
use tailgate_core::forward::RetryConfig;
use tailgate_core::memory::MemoryBound;
use tailgate_core::receive::ReceiveConfig;

/// What the router holds whatever its config: runtime, threads' stacks, ring, metrics and
/// TLS state (an idle release build is under 20 MiB; this leaves room for the allocator's
/// spare pages under load).
const ROUTER_BASE_BYTES: u64 = 32 << 20;

/// Unread data one held request may leave in the receiver's buffers: one HTTP/2 stream
/// window.
const HELD_REQUEST_BYTES: u64 = 2 << 20;

/// What a request of bare spans costs while a worker thread scans and splits it, in
/// multiples of its size: the scan's 64-byte entry per span (a bare span is about 30
/// bytes) with its vector's growth, and the splitter's own per span (measured in
/// docs/benchmarks.md, "Session 40").
const SCAN_FACTOR: u64 = 8;

/// The whole router config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Receivers.
    #[serde(default)]
    pub receive: ReceiveConfig,
    /// Where the gateways are.
    pub members: MembersConfig,
    /// How parts are sent to gateways.
    #[serde(default)]
    pub forward: ForwardConfig,
    /// Admin HTTP address for `/`, `/healthz` and `/readyz` (and `/metrics`). Default
    /// `127.0.0.1:13133` (loopback; `:13133` for every interface), the Collector's health-check port; `null` turns it off.
    #[serde(default = "default_admin", with = "tailgate_core::config::listen_addr")]
    pub admin: Option<SocketAddr>,
    /// Address for Prometheus `/metrics` (and the health endpoints). Default
    /// `127.0.0.1:8888` (loopback), the Collector's telemetry port, as the gateway's; `null` turns it off.
    #[serde(
        default = "default_metrics",
        with = "tailgate_core::config::listen_addr"
    )]
    pub metrics: Option<SocketAddr>,
}

fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 8888)))
}

/// The gateway member set: a static list, or DNS discovery.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MembersConfig {
    /// A fixed list of gateway OTLP/gRPC addresses (`host:port`; a host alone is given
    /// port 4317, as the Collector's `loadbalancing` exporter does).
    #[serde(
        rename = "static",
        default,
        deserialize_with = "tailgate_core::members::deserialize_static"
    )]
    pub static_list: Vec<String>,
    /// Discover the gateways through DNS (a Kubernetes headless Service).
    #[serde(default)]
    pub dns: Option<tailgate_core::members::DnsConfig>,
}

/// Forwarding to gateways.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Timeout of one attempt. Default 5s; 0 is the default too (the Collector's
    /// exporter then waits without limit; read as written, every attempt timed out at
    /// once and was sent again, a span reaching a gateway 25 times in a trial). It also
    /// sets how long a gateway that leaves a request unanswered has to answer an HTTP/2
    /// ping before it counts as unreachable (60% of it, two to five seconds).
    #[serde(
        default = "default_timeout",
        deserialize_with = "zero_is_default_timeout"
    )]
    pub timeout: Duration,
    /// Retries of one request to a gateway; past `max_elapsed_time` its spans count as
    /// failed, unless the gateway is refusing them for memory (`RESOURCE_EXHAUSTED`): those
    /// are retried until it takes them (see [`crate::forward`]). Default: 100ms doubling to
    /// 1s, for at most 30s.
    #[serde(default = "default_retry")]
    pub retry: RetryConfig,
    /// Bytes queued per gateway. While a gateway's queue is full, new requests wait unread
    /// (see `queue_wait`). Default 4 MiB: eight requests of `max_request_bytes` waiting behind
    /// the `max_in_flight` ones being sent (see docs/benchmarks.md).
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    /// Bytes queued in the whole router; past it, new requests wait unread. Default 16 MiB,
    /// as large as the largest request a receiver takes by default.
    #[serde(default = "default_max_queued_bytes")]
    pub max_queued_bytes: usize,
    /// Longest a request waits, its body unread, for room in full queues before it is
    /// refused with RESOURCE_EXHAUSTED and a retry delay. While it waits, HTTP/2 flow
    /// control holds its sender back: senders are slowed before anything is refused.
    /// Default 5s (under the OpenTelemetry SDKs' 10 s export timeout).
    #[serde(
        default = "default_queue_wait",
        with = "tailgate_core::config::duration"
    )]
    pub queue_wait: Duration,
    /// Most requests held unread at once; more are refused at once, unread. Each holds up
    /// to one HTTP/2 stream window (2 MiB) of unread data in the receiver's buffers, which
    /// no other limit counts: 64 bounds it to 128 MiB. One sender address may hold half
    /// of them (at least one), so that a sender with many streams cannot take every
    /// place. Default 64.
    #[serde(default = "default_max_held_requests")]
    pub max_held_requests: usize,
    /// Largest request sent to a gateway after coalescing; a request's spans for one
    /// gateway that come to more are cut into requests of this size, so that no gateway
    /// meets a request it cannot admit. Requests of a few hundred KB with several in flight
    /// are the cheapest to move (see docs/benchmarks.md). Default 512 KiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// While less than this is queued for a gateway, the forwarder waits up to
    /// `coalesce_delay` for more before sending, so that small parts travel together.
    /// Default 128 KiB.
    #[serde(default = "default_coalesce_bytes")]
    pub coalesce_bytes: usize,
    /// Longest a small part waits for company. Default 5ms.
    #[serde(
        default = "default_coalesce_delay",
        with = "tailgate_core::config::duration"
    )]
    pub coalesce_delay: Duration,
    /// Requests in flight per gateway. Default 4.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// How often a gateway marked down is probed. Default 1s.
    #[serde(
        default = "default_probe_interval",
        with = "tailgate_core::config::duration"
    )]
    pub probe_interval: Duration,
    /// Compression towards gateways: `none` (default; cheapest inside a cluster), `gzip`,
    /// `zstd` or `snappy`.
    #[serde(
        default,
        deserialize_with = "tailgate_core::forward::Compression::deserialize_grpc"
    )]
    pub compression: tailgate_core::forward::Compression,
    /// TLS towards the gateways (the Collector's `configtls` client keys). The gateways'
    /// addresses are IPs from DNS: set `server_name_override` to the name their
    /// certificates carry (e.g. `tailgate-gateway.tailgate.svc`), and `cert_file`/`key_file`
    /// when the gateways require client certificates. Default: plaintext.
    #[serde(default)]
    pub tls: Option<tailgate_core::tls::ClientTlsConfig>,
}

/// The rest of a router key below its section (`.static[1]`, `.dns.name`, `.tls.ca_file`)
/// as the Collector block `from` it was read from writes it, so that a validation error
/// names that key and its line: members come from the resolver block
/// (`resolver.static.hostnames[1]`, `resolver.dns.hostname`, `resolver.k8s.service`); the
/// other sections keep the Collector's names, at a depth the line search finds
/// (`receivers.otlp` … `protocols.grpc.tls.ca_file`).
fn collector_rest(from: &str, rest: &str) -> String {
    let k8s = from.ends_with(".k8s");
    if let Some(item) = rest.strip_prefix(".static") {
        return format!(".hostnames{item}");
    }
    match rest.strip_prefix(".dns.") {
        Some("name") if k8s => ".service".into(),
        Some("name") => ".hostname".into(),
        Some("port") if k8s => ".ports".into(),
        Some(other) => format!(".{other}"),
        None => rest.into(),
    }
}

fn default_admin() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 13133)))
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `forward.timeout` as written, 0 read as the default ([`ForwardConfig::timeout`]).
fn zero_is_default_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let t: Duration = tailgate_core::config::duration::deserialize(d)?;
    Ok(if t.is_zero() { default_timeout() } else { t })
}
fn default_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(1),
        max_elapsed_time: Duration::from_secs(30),
    }
}
fn default_queue_bytes() -> usize {
    4 << 20
}
fn default_max_queued_bytes() -> usize {
    16 << 20
}
fn default_queue_wait() -> Duration {
    Duration::from_secs(5)
}
fn default_max_held_requests() -> usize {
    64
}
fn default_max_request_bytes() -> usize {
    512 << 10
}
fn default_coalesce_bytes() -> usize {
    128 << 10
}
fn default_coalesce_delay() -> Duration {
    Duration::from_millis(5)
}
fn default_max_in_flight() -> usize {
    4
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(1)
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            timeout: default_timeout(),
            retry: default_retry(),
            queue_bytes: default_queue_bytes(),
            max_queued_bytes: default_max_queued_bytes(),
            queue_wait: default_queue_wait(),
            max_held_requests: default_max_held_requests(),
            max_request_bytes: default_max_request_bytes(),
            coalesce_bytes: default_coalesce_bytes(),
            coalesce_delay: default_coalesce_delay(),
            max_in_flight: default_max_in_flight(),
            probe_interval: default_probe_interval(),
            compression: Default::default(),
            tls: None,
        }
    }
}

// === impl RouterConfig ===

impl RouterConfig {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_noted(path).map(|(config, _)| config)
    }

    /// Loads and validates a config file: the router's own, or a whole Collector config of
    /// the `load_balancing` exporter's tier (see [`crate::collector`]), with notes naming
    /// what such a config holds and the router does not apply (none for its own).
    pub fn load_noted(
        path: &Path,
    ) -> Result<(Self, tailgate_core::collector::Remarks), ConfigError> {
        let text = tailgate_core::config::read_text(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        if tailgate_core::config::is_collector_config(&text) {
            return Self::from_collector(path, &text);
        }
        tailgate_core::collector::refuse_wrapped(path, &text, crate::collector::load_balances)?;
        let config = load_checked(
            path,
            &text,
            "this is a Collector config, but not one the router reads",
            |c: &RouterConfig| c.validate(path),
        )?;
        Ok((config, Default::default()))
    }

    /// A whole Collector config read for the router ([`crate::collector`]): each section
    /// deserialized on its own, so that an error names the Collector key it came from and
    /// that key's line.
    fn from_collector(
        path: &Path,
        text: &str,
    ) -> Result<(Self, tailgate_core::collector::Remarks), ConfigError> {
        let mut top: serde_yaml_ng::Value = tailgate_core::config::parse_yaml(path, text)?;
        let at = |key: String, message: String| {
            tailgate_core::config::invalid_at(path, text, key, message)
        };
        tailgate_core::collector::optional_sections(&mut top).map_err(|e| at(e.key, e.message))?;
        let translated = crate::collector::translate(&top).map_err(|e| at(e.key, e.message))?;
        let mut config = RouterConfig {
            receive: ReceiveConfig::default(),
            members: MembersConfig {
                static_list: Vec::new(),
                dns: None,
            },
            forward: ForwardConfig::default(),
            admin: default_admin(),
            metrics: default_metrics(),
        };
        let mut origin = Vec::new();
        for s in &translated.sections {
            let bad = |e: &dyn std::fmt::Display| {
                let e = tailgate_core::collector::section_error(&s.from, &e.to_string());
                at(e.key, e.message)
            };
            let listen = |v| tailgate_core::collector::listen_section(v).map_err(|e| bad(&e));
            match s.key {
                "receive" => {
                    config.receive =
                        tailgate_core::collector::read_section::<ReceiveConfig>(&s.value)
                            .map_err(|e| bad(&e))?
                }
                "members" => {
                    config.members =
                        tailgate_core::collector::read_section::<MembersConfig>(&s.value)
                            .map_err(|e| bad(&e))?
                }
                "forward" => {
                    config.forward =
                        tailgate_core::collector::read_section::<ForwardConfig>(&s.value)
                            .map_err(|e| bad(&e))?
                }
                "admin" => config.admin = listen(&s.value)?,
                _ => config.metrics = listen(&s.value)?,
            }
            origin.push((s.key, s.from.as_str()));
        }
        // The router's keys in validation errors, told as the Collector keys they came from.
        config.validate(path).map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => {
                let section = key.split(['.', '[']).next().unwrap_or_default();
                let from = origin
                    .iter()
                    .find(|(k, _)| *k == section)
                    .map_or(key.clone(), |(_, from)| {
                        format!("{from}{}", collector_rest(from, &key[section.len()..]))
                    });
                at(from, format!("{message} (read as the router's {key})"))
            }
            e => e,
        })?;
        Ok((
            config,
            tailgate_core::collector::Remarks {
                notes: translated.notes,
                warnings: translated.warnings,
            },
        ))
    }

    /// What is odd but not wrong in this config, for `--check` and the start: the
    /// receivers' own, and a `forward.max_in_flight` above what a gateway takes on one
    /// connection by default (`receive.max_concurrent_streams`, 32): the rest would wait
    /// there, and at a connection's start, before the gateway's settings arrive, be reset.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = self.receive.warnings();
        let streams = ReceiveConfig::default().max_concurrent_streams;
        if self.forward.max_in_flight > streams as usize {
            out.push(format!(
                "forward.max_in_flight ({}) is above the {streams} requests a gateway takes on a connection by default (receive.max_concurrent_streams): raise that on the gateways too, or the rest wait",
                self.forward.max_in_flight
            ));
        }
        // Gateways are dialled by `ip:port`: no scheme, so such a block is plaintext.
        out.extend(tailgate_core::tls::unused_certificate_warning(
            self.forward.tls.as_ref(),
            "forward",
        ));
        out.extend(tailgate_core::tls::unchecked_certificate_warning(
            self.forward.tls.as_ref(),
            "forward",
            "the gateways",
        ));
        out
    }

    /// What this config lets the router hold at most, with `gateways` gateways and
    /// `threads` worker threads (docs/configuration.md's formula, every term for senders
    /// that are not trusted included): a fixed base; queued parts, twice
    /// `forward.max_queued_bytes`, or one request's parts when larger (a request that alone
    /// is over goes alone; its resource's fields may be copied into every gateway's part);
    /// the receivers' budget and connections; `max_held_requests` stream windows of unread
    /// data; each gateway's requests in flight (a part larger than
    /// `forward.max_request_bytes` goes alone, up to a whole request); and the scan and
    /// split of a request of bare spans per worker thread.
    pub fn memory_bound(&self, gateways: usize, threads: usize) -> MemoryBound {
        let f = &self.forward;
        let request = self.receive.max_request_bytes as u64;
        let gateways_n = gateways.max(1) as u64;
        let mut bound = MemoryBound::default();
        bound.assume(tailgate_core::memory::threads_text(threads));
        bound.add("base (runtime, ring, metrics, TLS)", ROUTER_BASE_BYTES);
        bound.add(
            format!("max(2 × forward.max_queued_bytes, receive.max_request_bytes × {gateways} gateway(s)) (queued parts)"),
            (2 * f.max_queued_bytes as u64).max(request.saturating_mul(gateways_n)),
        );
        let listeners =
            usize::from(self.receive.grpc.is_some()) + usize::from(self.receive.http.is_some());
        self.receive.memory_terms(&mut bound, listeners);
        bound.add(
            "forward.max_held_requests × 2 MiB (unread stream windows)",
            (f.max_held_requests as u64).saturating_mul(HELD_REQUEST_BYTES),
        );
        bound.add(
            format!("forward.max_in_flight × max(forward.max_request_bytes, receive.max_request_bytes) × {gateways} gateway(s) (sending)"),
            (f.max_in_flight as u64)
                .saturating_mul((f.max_request_bytes as u64).max(request))
                .saturating_mul(gateways_n),
        );
        bound.add(
            format!("{SCAN_FACTOR} × receive.max_request_bytes × {threads} worker threads (scans and splits of bare spans)"),
            request
                .saturating_mul(SCAN_FACTOR)
                .saturating_mul(threads as u64),
        );
        bound
    }

    /// The memory note `--check` prints and the start logs: the bound with the static
    /// member list's gateways, or with DNS for one and what each more adds; a line per term
    /// with `lines`, else one line.
    pub fn memory_note(&self, threads: usize, lines: bool) -> String {
        let listed = self.members.static_list.len();
        let mut bound = self.memory_bound(listed.max(1), threads);
        if listed == 0 {
            let request = self.receive.max_request_bytes as u64;
            let each = (self.forward.max_in_flight as u64)
                .saturating_mul((self.forward.max_request_bytes as u64).max(request))
                .saturating_add(request);
            bound.assume(format!(
                "members from DNS: counted as one gateway, each more adds up to {} MiB",
                each.div_ceil(1 << 20)
            ));
        }
        bound.note(lines)
    }

    /// Checks what the schema cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        match (&self.members.static_list[..], &self.members.dns) {
            ([], None) => {
                return Err(invalid(
                    "members".into(),
                    "set `static` (a list of host:port) or `dns` (the gateways' headless Service)"
                        .into(),
                ))
            }
            // Named at `dns`, the second of the two a reader looks for (a config audit:
            // the `members:` line).
            ([_, ..], Some(_)) => {
                return Err(invalid(
                    "members.dns".into(),
                    "set either `static` or `dns`, not both".into(),
                ))
            }
            (_, Some(dns)) => dns
                .validate()
                .map_err(|e| invalid(format!("members.dns.{}", e.key), e.rule.into()))?,
            _ => {}
        }
        if self.forward.queue_bytes == 0 || self.forward.max_queued_bytes < self.forward.queue_bytes
        {
            return Err(invalid(
                "forward.max_queued_bytes".into(),
                "must be at least forward.queue_bytes, which must be greater than 0".into(),
            ));
        }
        // Under a few KiB, every span would travel in a request of its own.
        if self.forward.max_request_bytes < 4096 {
            return Err(invalid(
                "forward.max_request_bytes".into(),
                format!(
                    "{} is too small: at least 4096 (default {})",
                    self.forward.max_request_bytes,
                    default_max_request_bytes()
                ),
            ));
        }
        for (i, m) in self.members.static_list.iter().enumerate() {
            if let Some(problem) = tailgate_core::members::member_problem(m) {
                return Err(invalid(
                    format!("members.static[{i}]"),
                    format!("{m:?} {problem}"),
                ));
            }
        }
        if self.receive.grpc.is_none() && self.receive.http.is_none() {
            return Err(invalid(
                "receive".into(),
                "enable at least one of grpc and http".into(),
            ));
        }
        if let Err((key, message)) = self.receive.validate() {
            return Err(invalid(format!("receive.{key}"), message));
        }
        if self.forward.probe_interval < Duration::from_millis(10) {
            return Err(invalid(
                "forward.probe_interval".into(),
                format!(
                    "{:?} would probe a gateway marked down without pause: at least 10ms (default {:?})",
                    self.forward.probe_interval,
                    default_probe_interval()
                ),
            ));
        }
        if self.forward.max_in_flight == 0 {
            return Err(invalid(
                "forward.max_in_flight".into(),
                "0 would send nothing: at least 1 request in flight per gateway".into(),
            ));
        }
        if self.forward.queue_wait > Duration::from_secs(3600) {
            return Err(invalid(
                "forward.queue_wait".into(),
                format!(
                    "{:?} is longer than the 1h a sender can usefully be held",
                    self.forward.queue_wait
                ),
            ));
        }
        if let Some(Err(e)) = self.receive.tls.as_ref().map(|t| t.validate()) {
            return Err(invalid(
                tailgate_core::tls::key_in("receive", &e),
                e.detail(),
            ));
        }
        if let Some(Err(e)) = self.forward.tls.as_ref().map(|t| t.build()) {
            return Err(invalid(
                tailgate_core::tls::key_in("forward", &e),
                e.detail(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tailgate_core::config::parse_yaml;

    fn parse(text: &str) -> Result<RouterConfig, ConfigError> {
        let path = Path::new("router.yaml");
        let c: RouterConfig = parse_yaml(path, text)?;
        c.validate(path)?;
        Ok(c)
    }

    /// Scenario: the memory bound of a config at the defaults with three gateways and two
    /// worker threads, and of one with the gRPC receiver only and smaller limits.
    /// Guarantees: each term is what docs/configuration.md's formula gives (computed here
    /// from the documented defaults, not from the code's); the receivers' connections
    /// count per port given.
    #[test]
    fn the_memory_bound_follows_the_documented_formula() {
        const MIB: u64 = 1 << 20;
        let members = "members:\n  static: [g:4317]\n";
        let at_defaults = parse(members).unwrap().memory_bound(3, 2);
        let terms: Vec<u64> = at_defaults.terms.iter().map(|t| t.bytes).collect();
        // base; one 16 MiB request's parts for 3 gateways (over 2 × 16 MiB queued); 64 MiB
        // in flight; 4,096 connections × 2 ports × 336 KiB; 64 held × 2 MiB; 4 in flight ×
        // a 16 MiB part × 3 gateways; 8 × 16 MiB × 2 threads.
        assert_eq!(
            terms,
            [
                32 * MIB,
                48 * MIB,
                64 * MIB,
                2688 * MIB,
                128 * MIB,
                192 * MIB,
                256 * MIB
            ]
        );
        assert_eq!(at_defaults.total(), 3408 * MIB);
        let small = parse(&format!(
            "{members}receive: {{grpc: 127.0.0.1:4317, http: null, max_connections: 100, max_request_bytes: 1048576}}\nforward: {{max_queued_bytes: 8388608, max_held_requests: 8}}\n"
        ))
        .unwrap()
        .memory_bound(1, 1);
        let terms: Vec<u64> = small.terms.iter().map(|t| t.bytes).collect();
        assert_eq!(
            terms,
            [
                32 * MIB,
                16 * MIB,
                64 * MIB,
                100 * 336 * 1024,
                16 * MIB,
                4 * MIB,
                8 * MIB
            ]
        );
    }

    /// Scenario: `forward.max_in_flight` left out, 32 and 33.
    /// Guarantees: only 33 is warned of, naming the key and the gateways' setting.
    #[test]
    fn more_in_flight_than_a_gateway_takes_is_warned_of() {
        let members = "members:\n  static: [g:4317]\n";
        assert!(parse(members).unwrap().warnings().is_empty());
        let at = parse(&format!("{members}forward: {{max_in_flight: 32}}\n")).unwrap();
        assert!(at.warnings().is_empty());
        let over = parse(&format!("{members}forward: {{max_in_flight: 33}}\n")).unwrap();
        let warnings = over.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("forward.max_in_flight (33)")
                && warnings[0].contains("receive.max_concurrent_streams"),
            "{warnings:?}"
        );
    }

    /// Scenario: `forward.tls` with `insecure: true` and a client certificate but no CA
    /// (plaintext, as configtls makes it), and with a CA; `insecure_skip_verify` over TLS
    /// and over plaintext.
    /// Guarantees: the first is warned of, naming `forward.tls`; the second is not; skipped
    /// verification is warned of over TLS only.
    #[test]
    fn an_unused_client_certificate_is_warned_of() {
        let members = "members:\n  static: [g:4317]\n";
        let tls = |extra: &str| {
            // Read without validating: the files do not exist here.
            parse_yaml::<RouterConfig>(Path::new("router.yaml"), &format!("{members}forward: {{tls: {{insecure: true, cert_file: c.crt, key_file: c.key{extra}}}}}\n"))
                .unwrap()
                .warnings()
        };
        let unused = tls("");
        assert!(
            unused.iter().any(|w| w
                .starts_with("forward.tls: a client certificate with insecure: true and no CA")),
            "{unused:?}"
        );
        assert!(tls(", ca_file: ca.crt").is_empty());
        // Certificates not checked: named where the connection is TLS, not where the
        // block says plaintext (nothing to check there).
        let read = |block: &str| {
            parse_yaml::<RouterConfig>(
                Path::new("router.yaml"),
                &format!("{members}forward: {{tls: {block}}}\n"),
            )
            .unwrap()
            .warnings()
        };
        let unchecked = read("{insecure_skip_verify: true}");
        assert_eq!(unchecked.len(), 1, "{unchecked:?}");
        assert!(
            unchecked[0].starts_with(
                "forward.tls.insecure_skip_verify: the gateways' certificates are not checked"
            ),
            "{unchecked:?}"
        );
        assert!(read("{insecure: true, insecure_skip_verify: true}").is_empty());
    }

    /// Scenario: a Collector config whose values the router reads under other names are
    /// wrong: `max_recv_msg_size_mib` over 1 GiB, `max_concurrent_streams: 0`, a
    /// `max_connection_age` in a form Go refuses, a `retry_on_failure` bound under its
    /// interval written in flow style (a config audit found each named at the block above,
    /// by the router's name).
    /// Guarantees: each is named by the key as written, at its own line, in the user's
    /// units.
    #[test]
    fn collector_keys_read_under_other_names_are_named_as_written() {
        let path = std::env::temp_dir().join(format!(
            "tailgate-router-renamed-{}.yaml",
            std::process::id()
        ));
        // `grpc` goes under the gRPC receiver (from line 6), `lb` under the exporter (from
        // line 9 when `grpc` is empty).
        let load = |grpc: &str, lb: &str| {
            std::fs::write(
                &path,
                format!("receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: 127.0.0.1:4317\n{grpc}exporters:\n  loadbalancing:\n    resolver: {{static: {{hostnames: [gw]}}}}\n{lb}service:\n  pipelines:\n    traces: {{receivers: [otlp], exporters: [loadbalancing]}}\n"),
            )
            .unwrap();
            let out = RouterConfig::load_noted(&path).map(|_| ());
            std::fs::remove_file(&path).unwrap();
            out.unwrap_err()
        };
        for (grpc, lb, line, key, words) in [
            (
                "        max_recv_msg_size_mib: 2048\n",
                "",
                6,
                "receivers.otlp.protocols.grpc.max_recv_msg_size_mib",
                "2048 is out of range",
            ),
            (
                "        max_concurrent_streams: 0\n",
                "",
                6,
                "receivers.otlp.protocols.grpc.max_concurrent_streams",
                "is not offered",
            ),
            (
                "        keepalive:\n          server_parameters:\n            max_connection_age: 10sec\n",
                "",
                8,
                "receivers.otlp.protocols.grpc.keepalive.server_parameters.max_connection_age",
                "10sec",
            ),
            (
                "",
                "    retry_on_failure: {max_interval: 10s, max_elapsed_time: 5s}\n",
                9,
                "exporters.loadbalancing.retry_on_failure.max_elapsed_time",
                "max_interval",
            ),
        ] {
            let err = load(grpc, lb);
            assert!(
                matches!(&err, ConfigError::InvalidAt { line: l, key: k, message, .. }
                    if *l == line && k == key && message.contains(words)),
                "{grpc}{lb}: {err:?}"
            );
        }
    }

    /// Scenario: a loadbalancing exporter's habits: static members written as hostnames
    /// alone, and a whole Collector config of the load-balancing tier given as the
    /// router's (references expanded as the Collector expands them).
    /// Guarantees: a host alone is dialled on 4317; the Collector config loads with its
    /// receiver, members and TLS, notes naming what is not applied; an error in it names
    /// the Collector key and its line, also for a value only the router's validation sees.
    #[test]
    fn collector_habits_are_understood() {
        let c = parse("members:\n  static: [gateway-1, '10.0.0.8:4400']\n").unwrap();
        assert_eq!(c.members.static_list, ["gateway-1:4317", "10.0.0.8:4400"]);
        let path =
            std::env::temp_dir().join(format!("tailgate-router-otel-{}.yaml", std::process::id()));
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let out = RouterConfig::load_noted(&path);
            std::fs::remove_file(&path).unwrap();
            out
        };
        // The Operator's resource around a load-balancing tier's config is named, with
        // how to take the config out (it was "unknown field `apiVersion`").
        let err = load("apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nspec:\n  config:\n    exporters: {load_balancing: {resolver: {static: {hostnames: [a]}}}}\n").unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { message, .. }
                if message.contains("OpenTelemetryCollector resource")),
            "{err}"
        );
        let whole = "receivers:\n  otlp:\n    protocols:\n      grpc:\n        endpoint: ${env:TAILGATE_TEST_UNSET_IP:-127.0.0.1}:4317\n      http:\nprocessors:\n  batch: {}\nexporters:\n  loadbalancing:\n    protocol:\n      otlp:\n        timeout: 2s\n        tls:\n          insecure: true\n    resolver:\n      static:\n        hostnames: [gateway-1, gateway-2:4400]\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      processors: [batch]\n      exporters: [loadbalancing]\n";
        let (c, remarks) = load(whole).unwrap();
        let notes = remarks.notes;
        assert_eq!(c.members.static_list, ["gateway-1:4317", "gateway-2:4400"]);
        assert_eq!(
            c.receive.grpc,
            Some(SocketAddr::from(([127, 0, 0, 1], 4317)))
        );
        assert!(c
            .receive
            .http
            .is_some_and(|a| a.port() == 4318 && a.ip().is_loopback()));
        assert_eq!(c.forward.timeout, Duration::from_secs(2));
        assert!(c.forward.tls.as_ref().is_some_and(|t| t.insecure));
        // Zero and empty settings the Collector reads as its defaults (an adoption
        // trial: `timeout: 0s`, "no deadline" there, timed every attempt out at once and
        // sent a span to a gateway 25 times; `headers: {}` was refused as credentials).
        let (zero, _) = load(
            &whole
                .replace("timeout: 2s", "timeout: 0s\n        headers: {}")
                .replace(
                    "static:\n        hostnames: [gateway-1, gateway-2:4400]",
                    "dns: {hostname: gateways, port: '', interval: 0s, timeout: 0}",
                ),
        )
        .unwrap();
        assert_eq!(zero.forward.timeout, Duration::from_secs(5));
        let dns = zero.members.dns.as_ref().unwrap();
        let plain: tailgate_core::members::dns::DnsConfig =
            serde_yaml_ng::from_str("name: gateways").unwrap();
        assert_eq!(
            (&dns.name, dns.port, dns.interval, dns.timeout),
            (&plain.name, plain.port, plain.interval, plain.timeout)
        );
        let (k8s, _) = load(&whole.replace(
            "static:\n        hostnames: [gateway-1, gateway-2:4400]",
            "k8s: {service: gw.ns, timeout: 0s}",
        ))
        .unwrap();
        assert!(k8s.members.dns.is_some());
        assert!(
            notes
                .iter()
                .any(|n| n.contains("processors batch not applied")),
            "{notes:?}"
        );
        assert!(remarks.warnings.is_empty(), "{:?}", remarks.warnings);
        // Beside the load_balancing exporter: a span-metrics connector and a debug
        // exporter are notes; a backend that got every span and gets none from the router
        // is a warning.
        let beside = whole
            .replace("exporters: [loadbalancing]", "exporters: [loadbalancing, spanmetrics, debug, otlp/archive]")
            .replace("exporters:\n  loadbalancing:", "connectors:\n  spanmetrics: {}\nexporters:\n  debug: {}\n  otlp/archive: {endpoint: archive:4317}\n  loadbalancing:")
            + "    metrics:\n      receivers: [spanmetrics]\n      exporters: [debug]\n";
        let (_, remarks) = load(&beside).unwrap();
        for words in [
            "exporters: spanmetrics not applied",
            "exporters: debug not applied",
        ] {
            assert!(
                remarks.notes.iter().any(|n| n.contains(words)),
                "{words}: {:?}",
                remarks.notes
            );
        }
        assert_eq!(remarks.warnings.len(), 1, "{:?}", remarks.warnings);
        assert!(
            remarks.warnings[0].contains("exporters: otlp/archive not applied")
                && remarks.warnings[0].contains("it gets nothing from the router"),
            "{:?}",
            remarks.warnings
        );
        // A value the translation passes on, refused by the router's own reading.
        let err = load(&whole.replace("timeout: 2s", "timeout: soon")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidAt { key, line: 13, .. }
                if key == "exporters.loadbalancing.protocol.otlp.timeout"),
            "{err}"
        );
        // One only the router's validation sees.
        let err = load(&whole.replace("[gateway-1, gateway-2:4400]", "[]")).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidAt { key, line: 17, message, .. }
                if key == "exporters.loadbalancing.resolver.static" && message.contains("members")),
            "{err}"
        );
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("members:\n  static: [127.0.0.2:4317]\n").unwrap();
        assert_eq!(c.receive, ReceiveConfig::default());
        assert_eq!(c.forward, ForwardConfig::default());
        // /metrics on the Collector's telemetry port, like the gateway's.
        assert_eq!(c.metrics, Some(SocketAddr::from(([127, 0, 0, 1], 8888))));
        assert_eq!(c.admin, Some(SocketAddr::from(([127, 0, 0, 1], 13133))));
    }

    /// The flow-control defaults docs/configuration.md promises.
    #[test]
    fn flow_control_defaults_are_the_documented_ones() {
        let f = ForwardConfig::default();
        assert_eq!(f.queue_bytes, 4 << 20);
        assert_eq!(f.max_queued_bytes, 16 << 20);
        assert_eq!(f.queue_wait, Duration::from_secs(5));
        assert_eq!(f.max_held_requests, 64);
    }

    /// Scenario: `members` with both `static` and `dns`, the latter a few lines down.
    /// Guarantees: refused at the `dns:` line.
    #[test]
    fn static_and_dns_together_are_refused_at_dns() {
        let text = "members:\n  static: [a:1]\n\n  dns:\n    name: gw.example\n";
        let err = match parse(text) {
            Err(e) => tailgate_core::config::with_line(e, text).to_string(),
            Ok(_) => panic!("both loaded"),
        };
        assert!(
            err.contains("router.yaml:4: members.dns: set either"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let err = parse("members:\n  static: [a:1]\nforwrd: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("router.yaml:"), "{err}");
        assert!(err.contains("forwrd") && err.contains("line 3"), "{err}");
        let err = parse("members:\n  static: [a:1, 'nope:']\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("members.static[1]"), "{err}");
        // Hosts no connection can reach were taken (a config audit).
        for bad in ["'gw:4317:9'", "'a b:4317'"] {
            let err = parse(&format!("members:\n  static: [a:1, {bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("members.static[1]") && err.contains("its host is not"),
                "{err}"
            );
        }
        // Forwarding is gRPC: an HTTP-only compression is refused where it is written.
        let err = parse("members:\n  static: [a:1]\nforward:\n  compression: zlib\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not available over gRPC") && err.contains("line 4"),
            "{err}"
        );
        assert!(parse("members:\n  static: [a:1]\nforward: {compression: snappy}\n").is_ok());
    }

    /// Scenario: `receive.auth` settings that cannot be used: a token file that cannot be
    /// read, an empty token, both the token and its file; each in a file of several lines.
    /// Guarantees: the error names the key under `receive.auth` and its line (a docs trial
    /// found it named `receive` and the line of `grpc`, read while the YAML was).
    #[test]
    fn unusable_auth_settings_are_named_at_their_line() {
        for (auth, key, line) in [
            (
                "  auth:\n    bearer_token_file: /nonexistent/token\n",
                "receive.auth.bearer_token_file",
                6,
            ),
            (
                "  auth:\n    bearer_token: ''\n",
                "receive.auth.bearer_token",
                6,
            ),
            (
                "  auth: {bearer_token: a, bearer_token_file: /x}\n",
                "receive.auth",
                5,
            ),
        ] {
            let text = format!("members:\n  static: [a:1]\nreceive:\n  grpc: 127.0.0.1:0\n{auth}");
            let err = match parse(&text) {
                Err(e) => tailgate_core::config::with_line(e, &text).to_string(),
                Ok(_) => panic!("{auth} loaded"),
            };
            assert!(
                err.contains(&format!("router.yaml:{line}: {key}:")),
                "{auth}: {err}"
            );
        }
    }

    /// Scenario: sizes and waits whose arithmetic would overflow (a request limit near
    /// usize::MAX wrapped the decompression bound to 0 bytes; a queue wait of years
    /// overflowed an Instant).
    /// Guarantees: refused at load, naming the key.
    #[test]
    fn sizes_and_waits_that_overflow_are_refused() {
        for (yaml, key) in [
            (
                "receive: {max_request_bytes: 18446744073709551615}",
                "receive.max_request_bytes",
            ),
            (
                "receive: {max_request_bytes: 10}",
                "receive.max_request_bytes",
            ),
            ("receive: {max_connections: 0}", "receive.max_connections"),
            ("receive: {request_timeout: 0s}", "receive.request_timeout"),
            ("forward: {queue_wait: 1000000000s}", "forward.queue_wait"),
            (
                "forward: {max_request_bytes: 0}",
                "forward.max_request_bytes",
            ),
            ("forward: {max_in_flight: 0}", "forward.max_in_flight"),
            // 0 probed a gateway marked down in a loop without pause (a config audit).
            ("forward: {probe_interval: 0s}", "forward.probe_interval"),
        ] {
            let err = parse(&format!("members:\n  static: [a:1]\n{yaml}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
        assert!(
            parse("members:\n  static: [a:1]\nreceive: {max_request_bytes: 1073741824}\n").is_ok()
        );
    }
}
