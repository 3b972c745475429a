//! The gateway's YAML configuration (policies live in their own file, see
//! [`crate::policy`]).
//!
//! ```yaml
//! receive:
//!   grpc: 127.0.0.1:4317
//!   http: 127.0.0.1:4318
//! buffer:
//!   shards: 0                 # 0 = one per worker thread
//!   decision_cache_size: 200000
//!   enqueue_timeout: 2s       # how long a request waits for buffer room before 429
//!   max_buffered_bytes: 1073741824    # hard limit: refuse new data above it
//!   early_decision_bytes: 858993459   # soft limit: decide traces early above it
//!   max_spans_per_trace: 100000       # decide a trace at once when it gets this big
//! export:                     # every exporter gets every kept span
//!   otlp_grpc:
//!     endpoint: http://tempo:4317
//!     headers: { x-scope-orgid: team-a }
//!   otlp_http/archive:
//!     endpoint: https://archive.example.com
//!     compression: zstd
//!     auth: { authenticator: bearertokenauth }   # an extension below, as in a Collector
//!   debug:                      # OTLP JSON lines on stdout (or `path:`)
//! admin: 127.0.0.1:13133          # /healthz, /readyz (and /metrics)
//! metrics: 127.0.0.1:8888          # /metrics (and the health endpoints)
//! peers:                        # the other gateways, to keep traces whole as they change
//!   dns: { name: tailgate-gateway.tailgate.svc.cluster.local, port: 4317, interval: 5s }
//!   # self: 10.0.0.7:4317       # default: $POD_IP and the gRPC port
//!   leave_linger: 3s
//! extensions:                   # exporter authenticators: bearertokenauth, basicauth
//!   bearertokenauth: { filename: /var/run/secrets/archive/token }
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::config::{load_checked, ConfigError};
use tailgate_core::memory::MemoryBound;
use tailgate_core::receive::ReceiveConfig;

pub use crate::export::ExportConfig;
pub use crate::peers::PeersConfig;

/// The whole gateway config file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Receivers.
    #[serde(default)]
    pub receive: ReceiveConfig,
    /// Trace buffer.
    #[serde(default)]
    pub buffer: BufferConfig,
    /// Where kept traces go: one or more exporters (`otlp_grpc`, `otlp_http`, `debug`,
    /// each optionally `/name`d), all of which get every kept span.
    pub export: ExportConfig,
    /// Admin HTTP address for `/healthz` and `/readyz` (and `/metrics`). Default
    /// `127.0.0.1:13133` (loopback; `:13133` for every interface), the Collector's health-check port; `null` turns it off.
    #[serde(default = "default_admin", with = "tailgate_core::config::listen_addr")]
    pub admin: Option<SocketAddr>,
    /// Address for Prometheus `/metrics` (and the health endpoints). Default
    /// `127.0.0.1:8888` (loopback), the Collector's telemetry port; `null` turns it off.
    #[serde(
        default = "default_metrics",
        with = "tailgate_core::config::listen_addr"
    )]
    pub metrics: Option<SocketAddr>,
    /// The other gateways (static list or DNS), for redistribution when the cluster
    /// changes. Without it this gateway owns every trace it receives.
    #[serde(default)]
    pub peers: PeersConfig,
    /// Actions on the attributes of kept spans (their own, their events' and their resource's), applied after the
    /// decision: policies see the original values.
    #[serde(default)]
    pub attributes: crate::attributes::AttributesConfig,
    /// Authenticators that exporters name in `auth: {authenticator: …}`, as in a
    /// Collector config (`bearertokenauth`, `basicauth` with `client_auth`).
    #[serde(default)]
    pub extensions: crate::export::ExtensionsConfig,
    /// A Collector `service:` block pasted with its extensions (`service: {extensions:
    /// [...]}`): accepted and not read, with a warning; every exporter under `export:`
    /// gets every kept span and every extension listed is checked.
    #[serde(default)]
    pub service: Option<crate::export::keys::NotApplied>,
}

/// A config file as loaded ([`GatewayConfig::load_noted`]).
#[derive(Debug)]
pub struct Loaded {
    /// The config.
    pub config: GatewayConfig,
    /// What a whole Collector config held and the gateway does not apply (none for the
    /// gateway's own file).
    pub notes: Vec<String>,
    /// What a whole Collector config held and the gateway does not apply at someone's
    /// cost: a backend the Collector sent spans to that gets none from the gateway.
    pub warnings: Vec<String>,
    /// Whether the file was a whole Collector config (then, without `--policies`, its
    /// `tail_sampling` processor is the policy file too).
    pub whole_collector_config: bool,
    /// The file's text as read, for its policies to be read from (a second read of
    /// `--config <(envsubst < f)` finds the pipe empty).
    pub text: String,
}

/// The most `buffer.shards` a config may set: far past the cores of any machine, short of
/// the cost of splitting every request over that many shards and of their tables.
pub const MAX_SHARDS: usize = 1024;

/// `buffer`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BufferConfig {
    /// Shard tasks; 0 means one per worker thread (`TOKIO_WORKER_THREADS`, else one per
    /// core). Default 0.
    #[serde(default)]
    pub shards: usize,
    /// Decided trace ids remembered for late spans, per gateway (a policy file's
    /// `decision_cache` replaces it). Allocated at start, 26 bytes an entry, counted in
    /// the memory bound past the default. Default 200000, at most 2^30.
    #[serde(default = "default_cache")]
    pub decision_cache_size: usize,
    /// How long a request may wait for room in a shard before it is refused with
    /// `RESOURCE_EXHAUSTED`. Default 2s.
    #[serde(
        default = "default_enqueue_timeout",
        with = "tailgate_core::config::duration"
    )]
    pub enqueue_timeout: Duration,
    /// Requests queued per shard. Default 64.
    #[serde(default = "default_shard_queue")]
    pub shard_queue: usize,
    /// Hard limit on buffered span bytes (encoded): above it the receivers refuse new data
    /// with `RESOURCE_EXHAUSTED` / HTTP 429 and a retry hint. Default 1 GiB.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
    /// Soft limit: above it each shard decides traces early (those whose root span has
    /// arrived first, then the rest, those of a resource holding many first), until it is back under its share. Default 80% of
    /// `max_buffered_bytes`.
    #[serde(default)]
    pub early_decision_bytes: Option<u64>,
    /// A trace that reaches this many spans is decided at once; its later spans follow the
    /// decision. Default 100000.
    #[serde(default = "default_max_spans_per_trace")]
    pub max_spans_per_trace: u32,
}

fn default_admin() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 13133)))
}
fn default_metrics() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 8888)))
}
fn default_cache() -> usize {
    200_000
}
fn default_enqueue_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_shard_queue() -> usize {
    64
}
fn default_max_buffered_bytes() -> u64 {
    1 << 30
}
fn default_max_spans_per_trace() -> u32 {
    100_000
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig {
            shards: 0,
            decision_cache_size: default_cache(),
            enqueue_timeout: default_enqueue_timeout(),
            shard_queue: default_shard_queue(),
            max_buffered_bytes: default_max_buffered_bytes(),
            early_decision_bytes: None,
            max_spans_per_trace: default_max_spans_per_trace(),
        }
    }
}

impl BufferConfig {
    /// The soft limit in force.
    pub fn early_decision_bytes(&self) -> u64 {
        self.early_decision_bytes
            .unwrap_or(self.max_buffered_bytes / 5 * 4)
    }
}

/// What the gateway holds whatever its config (the formula's "64 MiB"): runtime, threads'
/// stacks, the decision cache at its default size, metrics, the reused scans' retained
/// room, and half of one exporter's default queue.
pub const GATEWAY_BASE_BYTES: u64 = 64 << 20;

// === impl GatewayConfig ===

impl GatewayConfig {
    /// A config receiving on `receive` and exporting with `export`, everything else at its
    /// default, with no admin or metrics listener (for programs that start gateways
    /// themselves: the demo, tests).
    pub fn new(receive: ReceiveConfig, export: crate::export::ExportConfig) -> Self {
        GatewayConfig {
            receive,
            buffer: BufferConfig::default(),
            export,
            admin: None,
            metrics: None,
            peers: PeersConfig::default(),
            attributes: crate::attributes::AttributesConfig::default(),
            extensions: crate::export::ExtensionsConfig::default(),
            service: None,
        }
    }

    /// What the operator should know about the top level: a `service:` block, not read.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.service.is_some() {
            warnings.push(
                "service: is accepted and not read: every exporter under export: gets every \
                 kept span, and every extension under extensions: is checked"
                    .to_owned(),
            );
        }
        warnings.extend(self.export.warnings());
        warnings.extend(self.extensions.warnings());
        // Peers are dialled by `ip:port`: no scheme, so such a block is plaintext.
        warnings.extend(tailgate_core::tls::unused_certificate_warning(
            self.peers.tls.as_ref(),
            "peers",
        ));
        warnings.extend(tailgate_core::tls::unchecked_certificate_warning(
            self.peers.tls.as_ref(),
            "peers",
            "the other gateways",
        ));
        warnings
    }

    /// What this config lets the gateway hold at most with `threads` worker threads
    /// (docs/configuration.md's formula, every term that applies to senders that are not
    /// trusted included): the buffer and 10% for what its spans' bytes cost beyond their
    /// charge, the receivers' in-flight budget and connections (the peer port too), a fixed
    /// base that covers one exporter's queue at its default, half of the other queues,
    /// and one scan of a request of bare spans per worker thread (six times
    /// `receive.max_request_bytes`). Not counted: kept spans grown by `attributes` actions.
    pub fn memory_bound(&self, threads: usize) -> MemoryBound {
        let mut bound = MemoryBound::default();
        bound.assume(tailgate_core::memory::threads_text(threads));
        bound.add(
            "base (runtime, decision cache, metrics, 32 MiB of one exporter's queue)",
            GATEWAY_BASE_BYTES,
        );
        let cache = self.buffer.decision_cache_size as u64;
        if cache > default_cache() as u64 {
            bound.add(
                format!(
                    "decision cache entries beyond the base's {} × {} B",
                    default_cache(),
                    crate::decide::ENTRY_BYTES
                ),
                (cache - default_cache() as u64).saturating_mul(crate::decide::ENTRY_BYTES),
            );
        }
        bound.add(
            "buffer.max_buffered_bytes × 1.1",
            self.buffer
                .max_buffered_bytes
                .saturating_add(self.buffer.max_buffered_bytes / 10),
        );
        let listeners = usize::from(self.receive.grpc.is_some())
            + usize::from(self.receive.http.is_some())
            + usize::from(self.peers.listen.is_some());
        self.receive.memory_terms(&mut bound, listeners);
        // Queued kept spans cost up to half again what they were admitted at; the base
        // holds half of one default queue.
        let halves: u64 = self.export.queue_bytes().map(|q| q / 2).sum();
        let in_base = crate::export::default_queue_bytes() / 2;
        bound.add(
            "half of each exporter's queue_bytes, less the 32 MiB in the base (queued kept spans)",
            halves.saturating_sub(in_base),
        );
        bound.add(
            format!(
                "6 × receive.max_request_bytes × {threads} worker threads (scans of bare spans)"
            ),
            (self.receive.max_request_bytes as u64)
                .saturating_mul(6)
                .saturating_mul(threads as u64),
        );
        bound
    }

    /// The memory note `--check` prints and the start logs: the bound with `threads` worker
    /// threads, and what it leaves out; a line per term with `lines`, else one line.
    pub fn memory_note(&self, threads: usize, lines: bool) -> String {
        let mut bound = self.memory_bound(threads);
        if !self.attributes.is_empty() {
            bound.assume(
                "not counted: kept spans grown by attributes actions, see docs/configuration.md",
            );
        }
        bound.note(lines)
    }

    /// The [memory bound](Self::memory_bound) with `threads` worker threads, less its
    /// buffer term: the base, connections, in-flight bytes, exporter queues and scans.
    pub fn memory_besides_buffer(&self, threads: usize) -> u64 {
        let mut without = self.clone();
        without.buffer.max_buffered_bytes = 0;
        without.memory_bound(threads).total()
    }

    /// The largest `buffer.max_buffered_bytes` whose [memory bound](Self::memory_bound) with
    /// `threads` worker threads is at most `limit`, or `None` when the other terms alone
    /// (connections, in-flight bytes, queues, scans) take the limit.
    pub fn largest_buffer_within(&self, limit: u64, threads: usize) -> Option<u64> {
        let room = limit.checked_sub(self.memory_besides_buffer(threads))?;
        // The buffer's term is `b + b / 10`: start from `room × 10 / 11` and settle on the
        // largest `b` that fits (integer division leaves it a step or two off).
        let fits = |b: u64| b.saturating_add(b / 10) <= room;
        let mut b = (u128::from(room) * 10 / 11) as u64;
        while b > 0 && !fits(b) {
            b -= 1;
        }
        while fits(b + 1) {
            b += 1;
        }
        (b > 0).then_some(b)
    }

    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_noted(path, None).map(|loaded| loaded.config)
    }

    /// Loads and validates a config file: the gateway's own, or a whole Collector config
    /// of the `tail_sampling` tier (see [`crate::collector_config`]; `processor` chooses
    /// among several `tail_sampling` processors, as `--processor` does for policies).
    pub fn load_noted(path: &Path, processor: Option<&str>) -> Result<Loaded, ConfigError> {
        let text = tailgate_core::config::read_text(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        if tailgate_core::config::is_collector_config(&text) {
            return Self::from_collector(path, &text, processor);
        }
        tailgate_core::collector::refuse_wrapped(path, &text, |c| {
            crate::policy::collector::defines_tail_sampling(c)
        })?;
        let config = load_checked(
            path,
            &text,
            "this is a Collector config, but not one the gateway reads",
            |c: &GatewayConfig| c.validate(path),
        )?;
        Ok(Loaded {
            config,
            notes: Vec::new(),
            warnings: Vec::new(),
            whole_collector_config: false,
            text,
        })
    }

    /// A whole Collector config read for the gateway ([`crate::collector_config`]): each
    /// section deserialized on its own, so that an error names the Collector key it came
    /// from and that key's line.
    fn from_collector(
        path: &Path,
        text: &str,
        processor: Option<&str>,
    ) -> Result<Loaded, ConfigError> {
        let (first, _) = crate::policy::collector::first_document(path, text.to_owned())?;
        let mut top: serde_yaml_ng::Value = tailgate_core::config::parse_yaml(path, &first)?;
        let at = |key: String, message: String| {
            tailgate_core::config::invalid_at(path, text, key, message)
        };
        tailgate_core::collector::optional_sections(&mut top).map_err(|e| at(e.key, e.message))?;
        let pipelines = crate::policy::collector::sampling_pipelines(path, &top, processor)
            .map_err(|e| tailgate_core::config::with_line(e, text))?;
        let translated = crate::collector_config::translate(&top, &pipelines)
            .map_err(|e| at(e.key, e.message))?;
        let mut config = GatewayConfig {
            receive: ReceiveConfig::default(),
            buffer: BufferConfig::default(),
            export: ExportConfig {
                exporters: Vec::new(),
                proxy_env: Default::default(),
            },
            admin: default_admin(),
            metrics: default_metrics(),
            peers: PeersConfig::default(),
            attributes: Default::default(),
            extensions: Default::default(),
            service: None,
        };
        let mut origin = Vec::new();
        for s in &translated.sections {
            let bad = |from: &str, e: &dyn std::fmt::Display| {
                let e = tailgate_core::collector::section_error(from, &e.to_string());
                at(e.key, e.message)
            };
            let listen =
                |v| tailgate_core::collector::listen_section(v).map_err(|e| bad(&s.from, &e));
            match s.key {
                "receive" => {
                    config.receive = tailgate_core::collector::read_section(&s.value)
                        .map_err(|e| bad(&s.from, &e))?
                }
                "export" => {
                    // One exporter at a time, so that an error names its block.
                    for (name, block) in s.value.as_mapping().into_iter().flatten() {
                        let one = serde_yaml_ng::Value::Mapping(
                            [(name.clone(), block.clone())].into_iter().collect(),
                        );
                        let from = format!("exporters.{}", name.as_str().unwrap_or_default());
                        let read: ExportConfig = tailgate_core::collector::read_section(&one)
                            .map_err(|e| bad(&from, &e))?;
                        config.export.proxy_env = read.proxy_env;
                        config.export.exporters.extend(read.exporters);
                        origin.push((
                            format!("export.{}", name.as_str().unwrap_or_default()),
                            from,
                        ));
                    }
                }
                "extensions" => {
                    config.extensions = tailgate_core::collector::read_section(&s.value)
                        .map_err(|e| bad(&s.from, &e))?
                }
                "admin" => config.admin = listen(&s.value)?,
                _ => config.metrics = listen(&s.value)?,
            }
            origin.push((s.key.to_owned(), s.from.clone()));
        }
        // The gateway's keys in validation errors, told as the Collector keys they came
        // from (an exporter's own block first, then its section).
        config.validate(path).map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => {
                let from = origin
                    .iter()
                    .filter(|(k, _)| key == *k || key.starts_with(&format!("{k}.")))
                    .max_by_key(|(k, _)| k.len())
                    .map_or(key.clone(), |(k, from)| {
                        format!("{from}{}", &key[k.len()..])
                    });
                at(from, format!("{message} (read as the gateway's {key})"))
            }
            e => e,
        })?;
        Ok(Loaded {
            config,
            notes: translated.notes,
            warnings: translated.warnings,
            whole_collector_config: true,
            text: text.to_owned(),
        })
    }

    /// Checks what the schema cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if let Err((key, error)) = self.extensions.validate() {
            let key = match error.sub_key() {
                Some(sub) => format!("{key}.{sub}"),
                None => key,
            };
            return Err(invalid(&key, &error.detail()));
        }
        if let Err((key, error)) = self.export.validate(&self.extensions) {
            return Err(invalid(&key, &error.to_string()));
        }
        if self.receive.grpc.is_none() && self.receive.http.is_none() {
            return Err(invalid("receive", "enable at least one of grpc and http"));
        }
        if let Err((key, message)) = self.receive.validate() {
            return Err(invalid(&format!("receive.{key}"), &message));
        }
        if let Some(Err(e)) = self.receive.tls.as_ref().map(|t| t.validate()) {
            return Err(invalid(
                &tailgate_core::tls::key_in("receive", &e),
                &e.detail(),
            ));
        }
        if let Some(Err(e)) = self.peers.tls.as_ref().map(|t| t.build()) {
            return Err(invalid(
                &tailgate_core::tls::key_in("peers", &e),
                &e.detail(),
            ));
        }
        if self.buffer.max_buffered_bytes == 0 {
            return Err(invalid(
                "buffer.max_buffered_bytes",
                "must be greater than 0",
            ));
        }
        if self.buffer.early_decision_bytes() > self.buffer.max_buffered_bytes {
            return Err(invalid(
                "buffer.early_decision_bytes",
                "must not exceed buffer.max_buffered_bytes (early decisions must start before refusals)",
            ));
        }
        if self.buffer.max_spans_per_trace == 0 {
            return Err(invalid(
                "buffer.max_spans_per_trace",
                "must be greater than 0",
            ));
        }
        if self.buffer.shard_queue == 0 {
            return Err(invalid("buffer.shard_queue", "must be greater than 0"));
        }
        if self.buffer.decision_cache_size > crate::decide::MAX_ENTRIES {
            return Err(invalid(
                "buffer.decision_cache_size",
                &format!(
                    "at most {}: the cache is allocated when the gateway starts ({} bytes an entry)",
                    crate::decide::MAX_ENTRIES,
                    crate::decide::ENTRY_BYTES
                ),
            ));
        }
        if self.buffer.shards > MAX_SHARDS {
            return Err(invalid(
                "buffer.shards",
                &format!(
                    "at most {MAX_SHARDS}, not {}: a shard per core is enough (0, the default, \
                     takes one per worker thread), and every request is split over all of them",
                    self.buffer.shards
                ),
            ));
        }
        if let Err(e) = self.attributes.compile() {
            return Err(invalid(&e.key(), &e.detail()));
        }
        if let Err((key, message)) = self.peers.validate() {
            return Err(invalid(&key, &message));
        }
        let client_certs = self
            .receive
            .tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        // Whether peers.tls presents a certificate when a gateway dials another.
        let presents = self
            .peers
            .tls
            .as_ref()
            .is_some_and(tailgate_core::tls::ClientTlsConfig::presents_certificate);
        if !self.peers.cert_names.is_empty() && !client_certs {
            return Err(invalid(
                "peers.cert_names",
                "needs receive.tls.client_ca_file: without client certificates no gateway can be recognised by one",
            ));
        }
        // Gateways dial each other as `peers.tls` says and serve peer requests as their
        // gRPC receiver does (the peer port follows it); with one config for all, the two
        // must agree, or every peer request fails and the ring splits.
        if self.peers.enabled() {
            let dials =
                tailgate_core::tls::ClientTlsConfig::uses_tls(self.peers.tls.as_ref(), "peer")
                    .unwrap_or(false);
            let serves = self.receive.tls_for(tailgate_core::receive::Protocol::Grpc);
            // Receivers asking for client certificates refuse a peer that presents none.
            if serves && dials && client_certs && !presents {
                return Err(invalid(
                    "peers.tls",
                    "the receivers require client certificates (receive.tls.client_ca_file), and peers.tls presents none: every peer request would fail the handshake and the ring split; give peers.tls a cert_file and key_file from that CA",
                ));
            }
            if dials != serves {
                let message = if serves {
                    "the gRPC receiver serves TLS (receive.tls), and peers.tls is not set (or is insecure): the other gateways, on this same config, would be dialled in plaintext and refuse every peer request; set peers.tls (a ca_file, and server_name_override: they are dialled by IP)"
                } else {
                    "peers.tls dials the other gateways over TLS, and the gRPC receiver serves plaintext (no receive.tls, or receive.tls_protocols leaves grpc out): every peer request would fail; serve TLS on grpc too, or leave peers.tls out"
                };
                return Err(invalid("peers.tls", message));
            }
        }
        // Peer requests come over gRPC (the receiver's, or the peer port, which follows it).
        if !self.peers.cert_names.is_empty()
            && !self.receive.tls_for(tailgate_core::receive::Protocol::Grpc)
        {
            return Err(invalid(
                "peers.cert_names",
                "needs TLS on the gRPC receiver, which peer requests come over: receive.tls_protocols leaves grpc plaintext",
            ));
        }
        // Gateways recognise each other by the certificate they present when they dial:
        // without one, every peer request would be refused and traces split.
        if self.peers.enabled()
            && !self.peers.cert_names.is_empty()
            && self.peers.secret.is_none()
            && !presents
        {
            return Err(invalid(
                "peers.tls",
                "set cert_file and key_file (a certificate carrying one of peers.cert_names): with peers.cert_names and no secret, gateways know each other by the certificate they present",
            ));
        }
        // A peer port with no peers would take peer requests (a decision can drop any
        // sender's trace) from whoever reaches it, and no gateway would use it.
        if self.peers.listen.is_some() && !self.peers.enabled() {
            return Err(invalid(
                "peers.listen",
                "set peers.dns or peers.static too, or leave it out: a gateway without peers has no peer port",
            ));
        }
        if self.peers.enabled() {
            if let Err(error) = self.identity() {
                return Err(invalid("peers.self", &error.to_string()));
            }
            // Peer requests carry the peers' secret, not the clients' token: without the
            // secret every peer request would be refused and traces split.
            if self.receive.auth.is_some()
                && self.peers.secret.is_none()
                && self.peers.cert_names.is_empty()
            {
                return Err(invalid(
                    "peers.secret",
                    "set it (or peers.cert_names) when receive.auth is set: peer requests present the peers' secret or certificate, not the bearer token",
                ));
            }
        }
        Ok(())
    }

    /// This gateway's member name on the ring (see [`PeersConfig::identity`]).
    pub fn identity(&self) -> Result<tailgate_core::ring::Member, crate::peers::IdentityError> {
        self.peers
            .identity(self.receive.grpc, std::env::var("POD_IP").ok())
    }

    /// The warning for peers that anyone could impersonate (no `peers.secret`, no
    /// `peers.cert_names`), printed by `--check` and at start.
    pub fn peers_warning(&self) -> Option<String> {
        (self.peers.enabled() && self.peers.secret.is_none() && self.peers.cert_names.is_empty())
            .then(|| "neither peers.secret nor peers.cert_names is set: anyone who can reach the receivers can send peer requests (forwarded spans, hand-offs, decisions)".to_owned())
    }

    /// Shards to run: `buffer.shards`, else one per worker thread (`TOKIO_WORKER_THREADS`
    /// when set, as the runtime reads it, else one per core).
    pub fn shard_count(&self) -> usize {
        if self.buffer.shards > 0 {
            self.buffer.shards
        } else {
            tailgate_core::memory::worker_threads(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExporterConfig;
    use tailgate_core::config::parse_yaml;
    use tailgate_core::forward::Compression;

    /// Scenario: the largest buffer within limits of 1.5 GiB, 4 GiB and an odd byte, and
    /// 16 GiB, for a config of 64 connections on 2 threads; limits the other terms fill.
    /// Guarantees: the buffer found fits its limit and one byte more would not; a limit
    /// under the other terms has no buffer.
    #[test]
    fn the_largest_buffer_within_a_limit_fills_it() {
        const MIB: u64 = 1 << 20;
        let path = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            path,
            "receive: {grpc: 127.0.0.1:4317, max_connections: 64}\nexport: {debug: {}}\n",
        )
        .unwrap();
        for limit in [1536 * MIB, 4096 * MIB + 7, 16 << 30] {
            let b = c.largest_buffer_within(limit, 2).unwrap();
            let with = |b: u64| {
                let mut c = c.clone();
                c.buffer.max_buffered_bytes = b;
                c.memory_bound(2).total()
            };
            assert!(with(b) <= limit, "{b} at {limit}");
            assert!(with(b + 1) > limit, "{b} + 1 at {limit}");
        }
        // base 64 + in-flight 64 + 64 × 2 ports × 336 KiB (42 MiB) + scans 6 × 16 MiB × 2:
        // 362 MiB, nothing left in 360 MiB.
        assert_eq!(c.largest_buffer_within(360 * MIB, 2), None);
        assert!(c.largest_buffer_within(380 * MIB, 2).is_some());
    }

    /// Scenario: the memory bound of the smallest config, then with a decision cache of
    /// 10 million entries, and one over the most allowed.
    /// Guarantees: the cache's entries beyond the base's 200,000 are a term of their own
    /// at [`crate::decide::ENTRY_BYTES`] each (a policy audit found `--check` counting none
    /// of a 5 GB cache); a cache past [`crate::decide::MAX_ENTRIES`] is refused, naming
    /// the key.
    #[test]
    fn a_large_decision_cache_is_counted_and_a_huge_one_refused() {
        let path = Path::new("gateway.yaml");
        let text = "receive: {grpc: 127.0.0.1:4317}\nexport: {debug: {}}\n";
        let c: GatewayConfig = parse_yaml(path, text).unwrap();
        let plain = c.memory_bound(2).total();
        let mut large = c.clone();
        large.buffer.decision_cache_size = 10_000_000;
        let cache = 9_800_000 * crate::decide::ENTRY_BYTES;
        assert_eq!(large.memory_bound(2).total(), plain + cache);
        assert!(large
            .memory_note(2, true)
            .contains("decision cache entries beyond"));
        large.validate(path).unwrap();
        large.buffer.decision_cache_size = crate::decide::MAX_ENTRIES + 1;
        let err = large.validate(path).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "buffer.decision_cache_size"),
            "{err}"
        );
    }

    /// Scenario: the memory bound of a gateway config with a 1 GiB buffer, 256 connections
    /// a port, a peer port and two exporters (one with a 128 MiB queue), on 4 cores.
    /// Guarantees: each term is what docs/configuration.md's formula gives, computed here
    /// from the documented defaults: connections count on each of the three ports, the
    /// queues beyond one default queue count half, scans count per worker thread; with
    /// `attributes` actions the note says what it does not count.
    #[test]
    fn the_memory_bound_follows_the_documented_formula() {
        const MIB: u64 = 1 << 20;
        let text = "receive: {grpc: 127.0.0.1:4317, http: 127.0.0.1:4318, max_connections: 256}\n\
                    buffer: {max_buffered_bytes: 1073741824}\n\
                    peers: {static: [127.0.0.1:4317], listen: 127.0.0.1:4319}\n\
                    export:\n  debug: {}\n  otlp:\n    endpoint: http://b:4317\n    queue_bytes: 134217728\n";
        let path = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(path, text).unwrap();
        let terms: Vec<u64> = c.memory_bound(4).terms.iter().map(|t| t.bytes).collect();
        let left_out = "not counted: kept spans grown by attributes actions";
        assert!(!c.memory_note(4, false).contains(left_out));
        let with_actions =
            format!("{text}attributes:\n  actions: [{{key: user.id, action: hash}}]\n");
        let hashing: GatewayConfig = parse_yaml(path, &with_actions).unwrap();
        assert!(hashing.memory_note(4, false).contains(left_out));
        // base; 1 GiB + 10%; 64 MiB in flight; 256 × 3 ports × 336 KiB; (32 + 64) − 32 MiB of
        // queues; 6 × 16 MiB × 4 threads.
        assert_eq!(
            terms,
            [
                64 * MIB,
                1024 * MIB + 1073741824 / 10,
                64 * MIB,
                252 * MIB,
                64 * MIB,
                384 * MIB
            ]
        );
    }

    /// Scenario: errors found after parsing (an exporter endpoint with an unknown scheme, a
    /// receiver limit of 0) and a null `peers.secret`, in files as written, loaded as the
    /// binary loads them (a docs audit found these without a line, or with the line of
    /// another key).
    /// Guarantees: each names the file, the line of its key, and the key.
    #[test]
    fn errors_name_the_line_of_their_key() {
        let dir = std::env::temp_dir().join(format!("tailgate-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text, want) in [
            (
                "endpoint.yaml",
                "receive: {grpc: 127.0.0.1:4317}\n\nexport:\n  otlp:\n    endpoint: ftp://api.vendor.io:443\n",
                "endpoint.yaml:5: export.otlp.endpoint",
            ),
            (
                "limit.yaml",
                "export: {debug: {}}\nreceive:\n  grpc: 127.0.0.1:4317\n  max_connections: 0\n",
                "limit.yaml:4: receive.max_connections",
            ),
            (
                "unix.yaml",
                "export:\n  otlp:\n    endpoint: unix:///var/run/otel.sock\n",
                "unix.yaml:3: export.otlp.endpoint: endpoint \"unix:///var/run/otel.sock\": Unix sockets are not supported",
            ),
            (
                "ua.yaml",
                "export:\n  otlp:\n    endpoint: http://a:4317\n    user_agent: \"my-gw\\nx\"\n",
                "ua.yaml:4: export.otlp.user_agent: user_agent has characters a header cannot carry",
            ),
            (
                "secret.yaml",
                "export: {debug: {}}\npeers:\n  static: [127.0.0.1:4317]\n  down_for: 5s\n  secret: null\n",
                "secret.yaml:5: peers.secret: written but empty or null",
            ),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            let err = GatewayConfig::load(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: a header value from a `${file:}` holding `[a, b]` (YAML for a list) as
    /// the whole value, and the same reference quoted.
    /// Guarantees: unquoted, refused as the wrong type for a string key, naming its line
    /// (the documented departure: the Collector keeps the text there); quoted, the text.
    #[test]
    fn a_list_from_a_reference_is_refused_where_a_string_goes() {
        let dir = std::env::temp_dir().join(format!("tailgate-listref-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let value = dir.join("value");
        std::fs::write(&value, "[a, b]").unwrap();
        let path = dir.join("gateway.yaml");
        let write = |quoted: bool| {
            let reference = format!("${{file:{}}}", value.display());
            let reference = if quoted {
                format!("\"{reference}\"")
            } else {
                reference
            };
            std::fs::write(
                &path,
                format!("export:\n  otlp:\n    endpoint: http://a:4317\n    headers:\n      x-list: {reference}\n"),
            )
            .unwrap();
        };
        write(false);
        let err = GatewayConfig::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("headers.x-list")
                && err.contains("invalid type: sequence")
                && err.contains("line 5"),
            "{err}"
        );
        write(true);
        let config = GatewayConfig::load(&path).unwrap();
        let ExporterConfig::OtlpGrpc(grpc) = &config.export.exporters[0].1 else {
            panic!("{:?}", config.export.exporters[0])
        };
        assert_eq!(grpc.headers["x-list"], "[a, b]");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// Scenario: peers without a secret or certificate names, and with a secret.
    /// Guarantees: the first draws the warning `--check` prints (a docs audit found it
    /// only at start), the second none.
    #[test]
    fn peers_without_a_secret_are_warned_of() {
        let p = Path::new("gateway.yaml");
        let open: GatewayConfig = parse_yaml(
            p,
            "export: {debug: {}}\npeers: {static: [127.0.0.1:4317]}\n",
        )
        .unwrap();
        assert!(open
            .peers_warning()
            .is_some_and(|w| w.contains("peers.secret")));
        let closed: GatewayConfig = parse_yaml(
            p,
            "export: {debug: {}}\npeers: {static: [127.0.0.1:4317], secret: s}\n",
        )
        .unwrap();
        assert_eq!(closed.peers_warning(), None);
    }

    #[test]
    fn minimal_config_and_errors() {
        let p = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp_grpc:\n    endpoint: http://127.0.0.1:4317\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        assert_eq!(c.buffer, BufferConfig::default());
        let err = parse_yaml::<GatewayConfig>(
            p,
            "export:\n  otlp_grpc:\n    endpoint: x\n    timout: 1s\n",
        )
        .unwrap_err()
        .to_string();
        // The exporter's own keys are read from the file, so the error names the line
        // (a user trial found `export.*` errors without one).
        assert!(
            err.contains("gateway.yaml")
                && err.contains("export.otlp_grpc: unknown field `timout`")
                && err.contains("line 4"),
            "{err}"
        );
        let c: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp_grpc/a: {endpoint: 'http://a:4317', compression: zstd}\n  otlp_http/b: {endpoint: 'http://b:4318'}\n  debug:\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        // Every compression the Collector's exporters take loads where it exists: snappy
        // over gRPC too, lz4 (and zlib, deflate, x-snappy-framed) over HTTP only, refused
        // for the gRPC exporter with the line, as the Collector's `otlp` refuses it.
        let collector: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp/a: {endpoint: 'http://a:4317', compression: snappy}\n  otlphttp/b: {endpoint: 'http://b:4318', compression: lz4}\n",
        )
        .unwrap();
        collector.validate(p).unwrap();
        // An exporter block as a Collector config writes its retries.
        let copied: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp:\n    endpoint: http://a:4317\n    retry_on_failure:\n      enabled: true\n      initial_interval: 5s\n      randomization_factor: 0.5\n      multiplier: 1.5\n      max_interval: 30s\n      max_elapsed_time: 300s\n    sending_queue: {enabled: true, num_consumers: 10, queue_size: 5000}\n  otlphttp:\n    endpoint: http://b:4318\n    sending_queue:\n      enabled: false\n",
        )
        .unwrap();
        let crate::export::ExporterConfig::OtlpGrpc(otlp) = &copied.export.exporters[0].1 else {
            panic!("an otlp exporter");
        };
        assert_eq!(otlp.retry.max_elapsed_time, Duration::from_secs(300));
        assert!(otlp.sending_queue.is_some(), "accepted (and not applied)");
        copied.validate(p).unwrap();
        // Its keys as the Collector's exporterhelper has them (v0.161, batch and partition
        // included) load; a misspelt one is refused, as there (a trial: `enabeld` loaded).
        let queue = |q: &str| {
            parse_yaml::<GatewayConfig>(
                p,
                &format!("export:\n  otlp:\n    endpoint: http://a:4317\n    sending_queue: {q}\n"),
            )
        };
        queue("{enabled: true, wait_for_result: false, sizer: bytes, queue_size: 5000000, block_on_overflow: true, storage: file_storage, num_consumers: 4, batch: {flush_timeout: 1s, sizer: items, min_size: 100, max_size: 1000, partition: {metadata_keys: [tenant]}}}")
            .unwrap();
        queue("{batch: }").unwrap();
        queue("{batch: {enabled: false}}").unwrap();
        for (typo, key) in [
            ("{enabeld: true}", "enabeld"),
            ("{queue_sise: 10}", "queue_sise"),
            ("{batch: {flush_timeot: 1s}}", "flush_timeot"),
        ] {
            let err = queue(typo).unwrap_err().to_string();
            assert!(
                err.contains(&format!("unknown field `{key}`")),
                "{typo}: {err}"
            );
        }
        // Values the Collector's queue refuses (queuebatch.Config.Validate, v0.161) are
        // refused with its message; a disabled queue is not checked, as there.
        for (bad, message) in [
            ("{num_consumers: 0}", "`num_consumers` must be positive"),
            ("{queue_size: -1}", "`queue_size` must be positive"),
            (
                "{storage: file_storage, wait_for_result: true}",
                "`wait_for_result` is not supported",
            ),
            ("{sizer: pages}", "unknown variant `pages`"),
            (
                "{sizer: items, queue_size: 5000, batch: {}}",
                "`min_size` must be less than or equal to `queue_size`",
            ),
            (
                "{queue_size: 10000, batch: {sizer: requests}}",
                "supports only `items` or `bytes` sizer",
            ),
            (
                "{batch: {flush_timeout: 0s}}",
                "`flush_timeout` must be positive",
            ),
            (
                "{batch: {min_size: 10, max_size: 5}}",
                "`max_size` (5) must be greater or equal to `min_size` (10)",
            ),
            (
                "{batch: {partition: {metadata_keys: [Tenant, tenant]}}}",
                "duplicate entry in metadata_keys",
            ),
        ] {
            let err = queue(bad).unwrap_err().to_string();
            assert!(err.contains(message), "{bad}: {err}");
        }
        queue("{enabled: false, num_consumers: 0}").unwrap();
        // Decoded as the Collector decodes: a float's whole part, a list as one string.
        queue(
            "{queue_size: 5000.0, num_consumers: 2.5, batch: {partition: {metadata_keys: 'a,b'}}}",
        )
        .unwrap();
        // A null batch is the default batch, checked without the queue's sizer.
        queue("{queue_size: 5000, batch: null}").unwrap();
        let err = queue("{sizer: items, queue_size: 5000, batch: null}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`min_size` must be less than"), "{err}");
        // Shards: up to MAX_SHARDS.
        for (shards, ok) in [
            (MAX_SHARDS, true),
            (MAX_SHARDS + 1, false),
            (100_000, false),
        ] {
            let config: GatewayConfig =
                parse_yaml(p, &format!("export:\n  otlp: {{endpoint: 'http://a:4317'}}\nbuffer: {{shards: {shards}}}\n")).unwrap();
            match config.validate(p) {
                Ok(()) => assert!(ok, "{shards} shards loaded"),
                Err(ConfigError::Invalid { key, .. }) => {
                    assert!(!ok, "{shards} shards refused");
                    assert_eq!(key, "buffer.shards");
                }
                Err(e) => panic!("{shards}: {e}"),
            }
        }
        queue("{sizer: items, queue_size: 5000, batch: {enabled: false}}").unwrap();
        queue("{sizer: items, queue_size: 10000, batch: {}}").unwrap();
        // Exporter blocks with the Collector's keys (its exporters' testdata, configgrpc
        // and confighttp): keepalive and compression_params applied, tuning keys named.
        let copied: GatewayConfig = parse_yaml(
            p,
            "export:
  otlp:
    endpoint: 1.2.3.4:1234
    tls: {insecure: true}
    compression: gzip
    compression_params: {level: 9}
    headers: {header1: 234, another: somevalue}
    keepalive:
      time: 20s
      timeout: 30s
      permit_without_stream: true
    balancer_name: round_robin
    read_buffer_size: 123
    write_buffer_size: 345
    wait_for_ready: true
  otlphttp:
    endpoint: https://1.2.3.4:1234
    timeout: 10s
    read_buffer_size: 123
    write_buffer_size: 345
    sending_queue: {enabled: true, num_consumers: 2, queue_size: 10}
    batcher: {enabled: true, flush_timeout: 200ms, sizer: items, min_size: 1000, max_size: 10000}
    compression: zstd
    compression_params: {level: 11}
    encoding: proto
    keepalive: {enabled: true, idle_conn_timeout: 90s, max_idle_conns: 100}
    http2_ping_timeout: 15s
    cookies: {enabled: true}
    headers:
      - {name: x-scope-orgid, value: team-a}
      - {name: x-retries, value: 3}
    profiles_endpoint: https://1.2.3.4:1234/v1/profiles
  debug:
    verbosity: detailed
    sampling_initial: 5
",
        )
        .unwrap();
        copied.validate(p).unwrap();
        let crate::export::ExporterConfig::OtlpGrpc(otlp) = &copied.export.exporters[0].1 else {
            panic!("an otlp exporter");
        };
        assert_eq!(
            otlp.keepalive,
            Some(tailgate_core::forward::Keepalive {
                time: Duration::from_secs(20),
                timeout: Duration::from_secs(30),
                permit_without_stream: true,
            })
        );
        assert_eq!(otlp.compression_params.level, Some(9));
        assert_eq!(otlp.headers["header1"], "234", "a number is its text");
        assert_eq!(
            otlp.not_applied(),
            [
                "balancer_name",
                "read_buffer_size",
                "write_buffer_size",
                "wait_for_ready"
            ]
        );
        let crate::export::ExporterConfig::OtlpHttp(http) = &copied.export.exporters[1].1 else {
            panic!("an otlphttp exporter");
        };
        assert_eq!(
            http.not_applied(),
            [
                "sending_queue",
                "keepalive",
                "read_buffer_size",
                "write_buffer_size",
                "http2_ping_timeout",
                "cookies",
                "profiles_endpoint",
                "batcher"
            ]
        );
        assert_eq!(
            http.headers,
            std::collections::BTreeMap::from([
                ("x-retries".to_owned(), "3".to_owned()),
                ("x-scope-orgid".to_owned(), "team-a".to_owned())
            ]),
            "the Collector's list of {{name, value}}"
        );
        let crate::export::ExporterConfig::Debug(debug) = &copied.export.exporters[2].1 else {
            panic!("a debug exporter");
        };
        assert_eq!(debug.not_applied(), ["verbosity", "sampling_initial"]);
        // `--check` and the start name them, per exporter.
        let warnings = copied.export.warnings();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(
            warnings[0].starts_with("export.otlp: ")
                && warnings[0].contains("balancer_name, read_buffer_size"),
            "{warnings:?}"
        );
        assert!(warnings[1].contains("storage is not used"), "{warnings:?}");
        assert!(
            warnings[2].starts_with("export.debug: ")
                && warnings[2].contains("written whole, as one line of OTLP JSON"),
            "{warnings:?}"
        );
        // A level the compression does not take, and JSON bodies, are refused by name.
        for (block, wanted) in [
            ("otlp: {endpoint: 'http://a:4317', compression: gzip, compression_params: {level: 12}}", "compression_params.level: 12 does not apply to compression: gzip"),
            ("otlp: {endpoint: 'http://a:4317', compression: snappy, compression_params: {level: 3}}", "compression_params.level: 3 does not apply"),
            ("otlphttp: {endpoint: 'http://a:4318', encoding: json}", "encoding \"json\""),
        ] {
            let c: GatewayConfig = parse_yaml(p, &format!("export:\n  {block}\n")).unwrap();
            let err = c.validate(p).unwrap_err().to_string();
            assert!(err.contains(wanted), "{block}: {err}");
        }
        let err = parse_yaml::<GatewayConfig>(
            p,
            "export:\n  otlp:\n    endpoint: http://a:4317\n    headers:\n      - {name: a, value: x}\n      - {name: a, value: y}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("given twice") && err.contains("line 5"),
            "{err}"
        );
        let err = parse_yaml::<GatewayConfig>(
            p,
            "export:\n  otlp:\n    endpoint: http://a:4317\n    compression: lz4\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("gateway.yaml")
                && err.contains("not available over gRPC")
                && err.contains("line 4"),
            "{err}"
        );
        assert_eq!(c.export.exporters.len(), 3);
        // A token on the receivers needs the peers' secret, or peer traffic is refused.
        let base = "export:\n  debug:\nreceive: {grpc: 127.0.0.9:4317, auth: {bearer_token: t0k}}\npeers: {static: [127.0.0.9:4317]";
        let c: GatewayConfig = parse_yaml(p, &format!("{base}}}\n")).unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "peers.secret"),
            "{err}"
        );
        // Not visible ASCII: refused, naming the character (a tab, a space, a letter past
        // ASCII passed as header values before).
        for (bad, named) in [("'a\tb'", "'\\t'"), ("'a b'", "' '"), ("sécret", "'é'")] {
            let c: GatewayConfig = parse_yaml(p, &format!("{base}, secret: {bad}}}\n")).unwrap();
            let err = c.validate(p).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, message, .. } if key == "peers.secret" && message.contains(named)),
                "{bad}: {err}"
            );
        }
        let c: GatewayConfig = parse_yaml(p, &format!("{base}, secret: s}}\n")).unwrap();
        // Written but null (an unset variable, `~`): refused, not read as no secret.
        for null in [
            "~",
            "null",
            "\"${env:TAILGATE_SURELY_UNSET_SECRET}\"",
            "${env:TAILGATE_SURELY_UNSET_SECRET}",
        ] {
            let text = format!("{base}, secret: {null}}}\n");
            match parse_yaml::<GatewayConfig>(p, &text) {
                Err(e) => assert!(e.to_string().contains("peers.secret"), "{null}: {e}"),
                Ok(c) => assert!(
                    c.validate(p).is_err(),
                    "{null}: an empty secret must not load"
                ),
            }
        }
        c.validate(p).unwrap();
        // A peer port without peers: refused, naming the key.
        let c: GatewayConfig =
            parse_yaml(p, "export:\n  debug:\npeers: {listen: 127.0.0.9:4319}\n").unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "peers.listen"),
            "{err}"
        );
        let err = parse_yaml::<GatewayConfig>(p, "export:\n  kafka: {}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exporter kafka: unknown type") && err.contains("otlp_http"),
            "{err}"
        );
        for (yaml, says) in [
            ("export:\n  otlp:\n", "exporter otlp needs its settings"),
            // At the second writing's line (a config audit: it named the first's).
            (
                "export:\n  debug:\n  debug:\n",
                "gateway.yaml:3: export.debug: written twice in one mapping (first at line 2)",
            ),
            (
                "export:\n  otlp:\n    endpoint: x\n    timeout: 10\n",
                "line 4",
            ),
        ] {
            let err = parse_yaml::<GatewayConfig>(p, yaml)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{yaml}: {err}");
        }
        // Peers need to know this gateway's address on the ring.
        let c: GatewayConfig = parse_yaml(
            p,
            "receive: {grpc: ':4317'}\nexport: {debug: {}}\npeers:\n  static: [10.0.0.1:4317, 10.0.0.2:4317]\n",
        )
        .unwrap();
        if std::env::var("POD_IP").is_err() {
            let err = c.validate(p).unwrap_err().to_string();
            assert!(
                err.contains("peers.self") && err.contains("POD_IP"),
                "{err}"
            );
        }
        let c: GatewayConfig = parse_yaml(
            p,
            "export: {debug: {}}\npeers:\n  self: 10.0.0.1:4317\n  static: [10.0.0.1:4317]\n  dns: {name: gw.example}\n",
        )
        .unwrap();
        let err = c.validate(p).unwrap_err().to_string();
        assert!(
            err.contains("peers.static") && err.contains("not both"),
            "{err}"
        );
        let c: GatewayConfig = parse_yaml(p, "export:\n  otlp_http: {}\n").unwrap();
        let err = c.validate(p).unwrap_err().to_string();
        assert!(
            err.contains("export.otlp_http") && err.contains("endpoint"),
            "{err}"
        );
    }

    /// Scenario: what docs/configuration.md and security.md say of Collector keys that are
    /// not taken: `proxy_url` on an `otlp` exporter (configgrpc has none; `otlphttp` takes
    /// it, tests/proxy.rs), an `auth` naming an extension that is not there, a
    /// whole Collector config as `--config`, and `tls.include_insecure_cipher_suites`
    /// (accepted, ignored).
    /// Guarantees: the first two are refused naming the key, the config with what to pass
    /// instead; the last loads.
    #[test]
    fn collector_keys_not_taken_are_named() {
        let p = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp:\n    endpoint: https://a:4317\n    auth: {authenticator: oauth2client}\n",
        )
        .unwrap();
        let err = c.validate(p).unwrap_err().to_string();
        assert!(
            err.contains("export.otlp.auth.authenticator")
                && err.contains("\"oauth2client\" is not under extensions:"),
            "{err}"
        );
        let err = parse_yaml::<GatewayConfig>(
            p,
            "export:\n  otlp:\n    endpoint: http://a:4317\n    proxy_url: http://proxy:3128\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `proxy_url`"), "{err}");
        let c: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp:\n    endpoint: https://a:4317\n    tls: {include_insecure_cipher_suites: true}\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        let path =
            std::env::temp_dir().join(format!("tailgate-gw-otel-{}.yaml", std::process::id()));
        let refused = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let err = GatewayConfig::load(&path).unwrap_err();
            std::fs::remove_file(&path).unwrap();
            err
        };
        let err = refused("receivers: {otlp: {}}\nexporters: {debug: {}}\nservice: {}\n");
        // A Collector config is read for the gateway only from its sampling tier.
        assert!(
            matches!(&err, ConfigError::Invalid { key, message, .. }
                if key == "processors" && message.contains("no tail_sampling processor")),
            "{err}"
        );
        // A load-balancing tier's config is pointed at the router.
        let err = refused("receivers: {otlp: {protocols: {grpc: {}}}}\nexporters: {loadbalancing: {resolver: {static: {hostnames: [gw]}}}}\nservice: {pipelines: {traces: {receivers: [otlp], exporters: [loadbalancing]}}}\n");
        assert!(
            matches!(&err, ConfigError::Invalid { message, .. }
                if message.contains("give it to tailgate-router --config")),
            "{err}"
        );
        // The Operator's resource around one is named, with how to take the config out
        // (it was "unknown field `apiVersion`").
        let err = refused("apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nmetadata: {name: gw}\nspec:\n  config:\n    receivers: {otlp: {}}\n    processors: {tail_sampling: {policies: []}}\n");
        assert!(
            matches!(&err, ConfigError::Invalid { message, .. }
                if message.contains("OpenTelemetryCollector resource") && message.contains("spec.config")),
            "{err}"
        );
    }

    /// Scenario: a whole Collector config whose header and token hold digits (a Grafana
    /// instance id, a numeric tenant), as `${env:}` references expanded to numbers leave
    /// them; then one whose pipelines share tail_sampling with different exporters.
    /// Guarantees: a string setting takes the digits' text, as in the gateway's own file;
    /// the second is refused naming the second pipeline's exporters.
    #[test]
    fn a_collector_configs_numbers_are_text_where_text_is_read() {
        let path =
            std::env::temp_dir().join(format!("tailgate-gw-numbers-{}.yaml", std::process::id()));
        let base = "receivers: {otlp: {protocols: {grpc: {endpoint: 127.0.0.1:4317}}}}\nprocessors: {tail_sampling: {policies: [{name: a, type: always_sample}]}}\nextensions: {bearertokenauth: {token: 123456}}\nexporters:\n  otlp:\n    endpoint: https://tempo:4317\n    headers: {X-Scope-OrgID: 654321}\n    auth: {authenticator: bearertokenauth}\n";
        std::fs::write(
            &path,
            format!("{base}service: {{extensions: [bearertokenauth], pipelines: {{traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}}}}}}\n"),
        )
        .unwrap();
        let loaded = GatewayConfig::load_noted(&path, None);
        let two = format!("{base}  debug: {{}}\nservice:\n  pipelines:\n    traces: {{receivers: [otlp], processors: [tail_sampling], exporters: [otlp]}}\n    traces/b: {{receivers: [otlp], processors: [tail_sampling], exporters: [debug]}}\n");
        std::fs::write(&path, two).unwrap();
        let refused = GatewayConfig::load_noted(&path, None);
        std::fs::remove_file(&path).unwrap();
        let loaded = loaded.unwrap();
        let crate::export::ExporterConfig::OtlpGrpc(otlp) = &loaded.config.export.exporters[0].1
        else {
            panic!("{:?}", loaded.config.export.exporters)
        };
        assert_eq!(
            otlp.headers.get("X-Scope-OrgID").map(String::as_str),
            Some("654321")
        );
        let err = refused.unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidAt { key, message, .. }
                if key == "service.pipelines.traces/b.exporters" && message.contains("different exporters")),
            "{err}"
        );
    }

    /// Scenario: gRPC exporters of the gateway's own config written `http://` with headers:
    /// without a `tls:` block, with `tls: {insecure: true}`; one without headers.
    /// Guarantees: only the first is warned of (its headers go in clear where the
    /// Collector would have used TLS), naming the exporter and its headers' names.
    #[test]
    fn headers_over_a_grpc_http_endpoint_are_warned_of_unless_plaintext_is_said() {
        let p = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            p,
            "export:\n  otlp/a: {endpoint: 'http://a:4317', compression: gzip, headers: {x-api-key: k, x-tenant: t}}\n\
             \x20 otlp/b: {endpoint: 'http://b:4317', compression: gzip, headers: {x-api-key: k}, tls: {insecure: true}}\n\
             \x20 otlp/c: {endpoint: 'http://c:4317', compression: gzip}\n\
             \x20 otlp/d: {endpoint: 'http://d:4317', compression: gzip, headers: {x-api-key: k}, tls: {}}\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        let warnings = c.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[1].starts_with("export.otlp/d: its headers (x-api-key) go in clear"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].starts_with("export.otlp/a: its headers (x-api-key, x-tenant) go in clear"),
            "{warnings:?}"
        );
    }

    /// Scenario: `peers.tls` that does not check certificates, over TLS and with
    /// `insecure: true` (plaintext).
    /// Guarantees: named in a warning over TLS only.
    #[test]
    fn peers_that_do_not_check_certificates_are_warned_of() {
        let p = Path::new("gateway.yaml");
        let read = |tls: &str| {
            parse_yaml::<GatewayConfig>(
                p,
                &format!("export: {{debug: {{}}}}\npeers: {{static: ['10.0.0.1:4317'], self: '10.0.0.1:4317', tls: {tls}}}\n"),
            )
            .unwrap()
            .warnings()
        };
        let unchecked = read("{insecure_skip_verify: true}");
        assert!(
            unchecked.iter().any(|w| w.starts_with(
                "peers.tls.insecure_skip_verify: the other gateways' certificates are not checked"
            )),
            "{unchecked:?}"
        );
        let plain = read("{insecure: true, insecure_skip_verify: true}");
        assert!(
            !plain.iter().any(|w| w.contains("insecure_skip_verify")),
            "{plain:?}"
        );
    }

    /// Scenario: exporter blocks as vendors document them for the Collector, pasted with
    /// their `extensions:` and `service:` (a bare `host:443` endpoint, Honeycomb's; basic
    /// auth, Grafana Cloud's; a header written `$VAR`, as an old example writes it; an
    /// unverified certificate, as a gist writes it).
    /// Guarantees: it loads; the bare endpoint is dialled with TLS as the Collector dials
    /// it; `service:`, the unverified certificate and each TLS exporter without
    /// `compression` (gzip in the Collector, none here) are named in warnings (the `$VAR`
    /// at expansion, tested in core's config).
    #[test]
    fn vendor_blocks_pasted_whole_load() {
        let p = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            p,
            "extensions:\n  basicauth/grafana_cloud:\n    client_auth: {username: '123', password: k}\n\
             export:\n  otlp/honeycomb:\n    endpoint: api.honeycomb.io:443\n    headers: {x-honeycomb-team: abc}\n\
             \x20 otlphttp/grafana:\n    endpoint: https://otlp.grafana.net/otlp\n    auth: {authenticator: basicauth/grafana_cloud}\n\
             \x20 otlphttp/newrelic:\n    endpoint: https://otlp.nr-data.net\n    headers: {api-key: $NEW_RELIC_API_KEY}\n\
             \x20 otlp/lightstep:\n    endpoint: ingest.lightstep.com:443\n    tls: {insecure_skip_verify: true}\n\
             service:\n  extensions: [basicauth/grafana_cloud]\n  pipelines: {traces: {exporters: [otlp/honeycomb]}}\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        let ExporterConfig::OtlpGrpc(honeycomb) = &c.export.exporters[0].1 else {
            panic!("otlp/honeycomb is gRPC");
        };
        assert!(honeycomb.uses_tls());
        let warnings = c.warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with("service:")),
            "{warnings:?}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("export.otlp/lightstep.tls.insecure_skip_verify")),
            "{warnings:?}"
        );
        // Left out, compression is none here and gzip in the Collector: each TLS exporter
        // without it is named; one that writes `compression: none` is not.
        assert!(
            warnings
                .iter()
                .any(|w| w.starts_with("export.otlp/honeycomb: no compression set")),
            "{warnings:?}"
        );
        assert_eq!(warnings.len(), 6, "{warnings:?}");
        let mut quiet = c.clone();
        for (_, e) in &mut quiet.export.exporters {
            match e {
                ExporterConfig::OtlpGrpc(g) => g.compression = Some(Compression::None),
                ExporterConfig::OtlpHttp(h) => h.compression = Some(Compression::Zstd),
                ExporterConfig::Debug(_) => {}
            }
        }
        assert_eq!(quiet.warnings().len(), 2, "{:?}", quiet.warnings());
        // A leftover client certificate beside insecure: true and no CA (a trial's Tempo
        // block): plaintext, as in the Collector, and named; with a CA it is TLS.
        let tempo = |tls: &str| {
            parse_yaml::<GatewayConfig>(
                p,
                &format!("export:\n  otlp/tempo:\n    endpoint: tempo:4317\n    compression: gzip\n    tls: {{insecure: true, cert_file: c.crt, key_file: c.key{tls}}}\n"),
            )
            .unwrap()
        };
        let leftover = tempo("");
        let ExporterConfig::OtlpGrpc(g) = &leftover.export.exporters[0].1 else {
            panic!("otlp is gRPC");
        };
        assert!(!g.uses_tls());
        let warnings = leftover.warnings();
        assert!(
            warnings.iter().any(|w| w.starts_with(
                "export.otlp/tempo.tls: a client certificate with insecure: true and no CA"
            )),
            "{warnings:?}"
        );
        let with_ca = tempo(", ca_file: ca.crt");
        let ExporterConfig::OtlpGrpc(g) = &with_ca.export.exporters[0].1 else {
            panic!("otlp is gRPC");
        };
        assert!(g.uses_tls());
        assert!(with_ca
            .warnings()
            .iter()
            .all(|w| !w.contains("client certificate")));
    }

    /// Scenario: a gateway config written with the Collector's words: exporter types
    /// `otlp` and `otlphttp`, host-name listen addresses, `:port`.
    /// Guarantees: it loads, with each exporter of the right kind.
    #[test]
    fn collector_words_are_understood() {
        let p = Path::new("gateway.yaml");
        let c: GatewayConfig = parse_yaml(
            p,
            "receive: {grpc: 'localhost:4317', http: ':4318'}\nmetrics: localhost:8888\nexport:\n  otlp: {endpoint: 'tempo:4317', tls: {insecure: true}}\n  otlphttp/archive: {endpoint: 'http://archive:4318'}\n",
        )
        .unwrap();
        c.validate(p).unwrap();
        assert!(c.receive.grpc.unwrap().ip().is_loopback());
        assert!(c.receive.http.unwrap().ip().is_unspecified());
        assert!(matches!(
            c.export.exporters[0].1,
            ExporterConfig::OtlpGrpc(_)
        ));
        assert!(matches!(
            c.export.exporters[1].1,
            ExporterConfig::OtlpHttp(_)
        ));
        let err =
            parse_yaml::<GatewayConfig>(p, "receive: {grpc: localhost}\nexport: {debug: {}}\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("needs a port") && err.contains("line 1"),
            "{err}"
        );
    }

    /// Scenario: a SaaS backend's API key given as `${env:VAR}` in one exporter's headers
    /// and `${file:PATH}` in another's, over `https://` (Honeycomb, Grafana Cloud).
    /// Guarantees: the values are read from the environment and the file, the TLS side is
    /// built, and an unset variable is an error naming it.
    /// Scenario: `peers.cert_names` with and without client certificates on the receivers,
    /// and a name that is not a DNS name. Guarantees: refused at load, naming the key.
    #[test]
    fn peer_cert_names_need_client_certificates() {
        let p = std::path::Path::new("gateway.yaml");
        for (text, why) in [
            ("peers: {cert_names: [gw.example]}\n", "client_ca_file"),
            ("peers: {cert_names: ['not a name']}\n", "DNS name"),
        ] {
            let text = format!("export:\n  otlp_grpc: {{endpoint: 'http://a:4317'}}\n{text}");
            let c: GatewayConfig = parse_yaml(p, &text).unwrap();
            let err = c.validate(p).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == "peers.cert_names"),
                "{err}"
            );
            assert!(err.to_string().contains(why), "{err}");
        }
    }

    /// Scenario: `peers.cert_names` with client certificates on the receivers, and
    /// `receive.tls_protocols: [http]` (TLS on the HTTP receiver alone).
    /// Guarantees: refused at load, naming `peers.cert_names`: peer requests come over
    /// gRPC, which would be plaintext; with `[grpc]` it loads.
    #[test]
    fn peer_cert_names_need_tls_on_the_grpc_receiver() {
        let dir = tailgate_core::test_util::scratch_dir("gw-tls-protocols").unwrap();
        let ca = tailgate_core::test_util::TestPki::new(&dir, "ca").unwrap();
        let (crt, key) = ca.issue("gw", &["gw.example"]).unwrap();
        let p = std::path::Path::new("gateway.yaml");
        let text = |listed: &str| {
            format!(
                "export:\n  otlp_grpc: {{endpoint: 'http://a:4317'}}\nreceive: {{tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}, tls_protocols: [{listed}]}}\npeers: {{cert_names: [gw.example], tls: {{cert_file: '{}', key_file: '{}', ca_file: '{}'}}}}\n",
                crt.display(),
                key.display(),
                ca.ca_file("ca").display(),
                crt.display(),
                key.display(),
                ca.ca_file("ca").display(),
            )
        };
        let c: GatewayConfig = parse_yaml(p, &text("http")).unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, message, .. }
                if key == "peers.cert_names" && message.contains("needs TLS on the gRPC receiver")),
            "{err}"
        );
        let c: GatewayConfig = parse_yaml(p, &text("grpc")).unwrap();
        c.validate(p).unwrap();
    }

    /// Scenario: gateways with a static peer list whose gRPC receiver serves TLS and whose
    /// `peers.tls` is unset, the reverse (found by a user check: `--check` said ok, and at
    /// run time every peer request failed and each gateway left the others off its ring),
    /// both agreeing, and receivers asking for client certificates that `peers.tls` does not
    /// present (a review: the handshake fails, as a mismatch).
    /// Guarantees: the mismatches and the missing certificate are refused naming
    /// `peers.tls`; the agreeing config loads.
    #[test]
    fn peer_tls_agrees_with_the_grpc_receiver() {
        let dir = tailgate_core::test_util::scratch_dir("gw-peer-tls").unwrap();
        let ca = tailgate_core::test_util::TestPki::new(&dir, "ca").unwrap();
        let (crt, key) = ca.issue("gw", &["gw.example"]).unwrap();
        let p = std::path::Path::new("gateway.yaml");
        let receive = format!(
            "receive: {{grpc: 127.0.0.1:4317, tls: {{cert_file: '{}', key_file: '{}'}}}}\n",
            crt.display(),
            key.display()
        );
        let peers_tls = format!(
            "  tls: {{ca_file: '{}', server_name_override: gw.example}}\n",
            ca.ca_file("ca").display()
        );
        let text = |receive: &str, tls: &str| {
            format!("export:\n  otlp_grpc: {{endpoint: 'http://a:4317'}}\n{receive}peers:\n  self: 127.0.0.1:4317\n  static: [127.0.0.1:4317, 127.0.0.2:4317]\n{tls}")
        };
        let mutual = format!(
            "receive: {{grpc: 127.0.0.1:4317, tls: {{cert_file: '{}', key_file: '{}', client_ca_file: '{}'}}}}\n",
            crt.display(),
            key.display(),
            ca.ca_file("ca").display()
        );
        for (receive, tls, words) in [
            (receive.as_str(), "", "peers.tls is not set"),
            ("", peers_tls.as_str(), "the gRPC receiver serves plaintext"),
            // Client certificates asked for, none presented.
            (
                mutual.as_str(),
                peers_tls.as_str(),
                "peers.tls presents none",
            ),
        ] {
            let c: GatewayConfig = parse_yaml(p, &text(receive, tls)).unwrap();
            let err = c.validate(p).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, message, .. }
                    if key == "peers.tls" && message.contains(words)),
                "{err}"
            );
        }
        let c: GatewayConfig = parse_yaml(p, &text(&receive, &peers_tls)).unwrap();
        c.validate(p).unwrap();
        // A member with a scheme would be dialled otherwise than peers.tls says, and never
        // match peers.self.
        let schemed =
            text(&receive, &peers_tls).replace("[127.0.0.1:4317,", "[https://127.0.0.1:4317,");
        let c: GatewayConfig = parse_yaml(p, &schemed).unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "peers.static[0]"),
            "{err}"
        );
        // Nor can a host with a space be dialled (a config audit found it taken).
        let spaced = text(&receive, &peers_tls).replace(", 127.0.0.2:4317]", ", 'a b:4317']");
        let c: GatewayConfig = parse_yaml(p, &spaced).unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, message, .. }
                if key == "peers.static[1]" && message.contains("its host is not")),
            "{err}"
        );
    }

    /// Scenario: a request limit whose arithmetic overflows (it wrapped the decompression
    /// bound to 0 bytes) and one too small for any request. Guarantees: refused at load,
    /// naming the key.
    #[test]
    fn request_limits_out_of_range_are_refused() {
        let p = std::path::Path::new("gateway.yaml");
        for bytes in ["18446744073709551615", "100"] {
            let text = format!("export:\n  otlp_grpc: {{endpoint: 'http://a:4317'}}\nreceive: {{max_request_bytes: {bytes}}}\n");
            let c: GatewayConfig = parse_yaml(p, &text).unwrap();
            let err = c.validate(p).unwrap_err();
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == "receive.max_request_bytes"),
                "{err}"
            );
        }
    }

    #[test]
    fn exporter_headers_take_secrets_from_env_and_files() {
        let p = Path::new("gateway.yaml");
        let dir = tailgate_core::test_util::scratch_dir("key").unwrap();
        let key_file = dir.join("key");
        std::fs::write(&key_file, "file-secret\n").unwrap();
        // A variable name no other test uses: tests run in threads of one process.
        std::env::set_var("TAILGATE_TEST_HONEYCOMB_KEY", "env-secret");
        let text = format!(
            "export:\n  otlp/honeycomb:\n    endpoint: https://api.honeycomb.io:443\n    headers: {{x-honeycomb-team: '${{env:TAILGATE_TEST_HONEYCOMB_KEY}}'}}\n  otlphttp/grafana:\n    endpoint: https://otlp.example.net/otlp\n    headers: {{authorization: 'Basic ${{file:{}}}'}}\n",
            key_file.display()
        );
        let c: GatewayConfig = parse_yaml(p, &text).unwrap();
        c.validate(p).unwrap();
        let ExporterConfig::OtlpGrpc(honeycomb) = &c.export.exporters[0].1 else {
            panic!("{:?}", c.export.exporters[0]);
        };
        assert_eq!(honeycomb.headers["x-honeycomb-team"], "env-secret");
        honeycomb.client().unwrap();
        let ExporterConfig::OtlpHttp(grafana) = &c.export.exporters[1].1 else {
            panic!("{:?}", c.export.exporters[1]);
        };
        assert_eq!(grafana.headers["authorization"], "Basic file-secret");
        // An unset variable reads as empty, as in the Collector; an empty header is refused
        // at load instead of sending requests the backend will refuse.
        let unset = text.replace("TAILGATE_TEST_HONEYCOMB_KEY", "TAILGATE_TEST_UNSET_KEY_X");
        let c: GatewayConfig = parse_yaml(p, &unset).unwrap();
        let err = c.validate(p).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, message, .. }
                if key.contains("otlp/honeycomb") && message.contains("x-honeycomb-team")),
            "{err}"
        );
    }
}
