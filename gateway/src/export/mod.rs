//! Exporting kept traces: one task per configured exporter (fan-out), each with its own
//! bounded queue in bytes, batching by spans, bytes and time, and its own sink (OTLP/gRPC,
//! OTLP/HTTP protobuf, or the `debug` JSON-lines writer).
//!
//! Shards hand every exporter the same kept spans (`Bytes` handles, not copies), a batch of
//! kept traces at a time. Before handing a batch over, a shard takes its size from the
//! exporter's queue budget ([`ExportHandle::try_room`]); while the budget is spent, the
//! shard parks the batch and goes on ([`ExporterStats::parked_bytes`]), sending it when
//! the budget has room ([`ExportHandle::room`]): a stalled backend makes decided traces
//! wait in the buffer instead of being dropped, and once the buffer is full the receivers
//! refuse new data with a retry hint. The budget comes back when the exporter has
//! delivered or given up on the spans. Spans a backend does not take within the retry
//! bound count as failed.
//!
//! Requests: a flush writes the gathered spans as requests of at most `batch.max_spans`
//! and `batch.max_bytes` (headers counted; see `BatchConfig::request_limit` for headers
//! over three quarters of it), spans of equal resource and scope headers under one run
//! whichever request and trace they came in (headers interned once per flush,
//! `reframe::Interner`, and the flush grouped by them, `reframe::group_by_headers`). A
//! request the backend refuses as malformed or too large is sent again as halves. The
//! flush's tickets settle once all its requests are done.
//!
//! Accounting: each exporter counts what it delivered and failed. A kept span leaves the
//! gateway's "pending export" when every exporter has settled it; it counts as exported
//! when every exporter delivered it, as failed when any exporter failed it (a ticket per
//! trace carries that across the exporters, charging the most any one exporter failed of
//! it: exact unless two exporters fail different spans of one trace; with one exporter,
//! one ticket per batch is exact and cheaper).

pub mod auth;
pub mod batch;
pub mod debug;
pub mod error;
pub mod keys;
pub mod otlp_grpc;
pub mod otlp_http;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tailgate_core::forward::GrpcClient;
use tailgate_core::proxy::{ProxyEnv, ProxyFor};
use tailgate_core::retry::{Hold, Tally};
use tailgate_core::telemetry::Gauge;
use tailgate_core::wire::reframe::{
    added_len_by_address, field_len, group_by_headers, Interner, SpanParts,
};
use tailgate_core::wire::Reframer;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::buffer::trace::BufferedSpan;
use crate::metrics::GatewayStats;

pub use auth::{AuthRef, ExtensionsConfig};
pub use batch::{default_queue_bytes, BatchConfig};
pub use debug::DebugConfig;
pub use error::SettingError;
pub use otlp_grpc::OtlpGrpcConfig;
pub use otlp_http::OtlpHttpConfig;

/// `export`: named exporters, as in a Collector config: the key is the type, optionally
/// followed by `/name` (`otlp_grpc`, `otlp_http/archive`, `debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// The exporters, by key.
    pub exporters: Vec<(String, ExporterConfig)>,
    /// The process's proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`), read
    /// when the config is: what exporters without a `proxy_url` go through.
    pub proxy_env: ProxyEnv,
}

/// One exporter's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExporterConfig {
    /// `otlp_grpc`
    OtlpGrpc(OtlpGrpcConfig),
    /// `otlp_http`
    OtlpHttp(OtlpHttpConfig),
    /// `debug`
    Debug(DebugConfig),
}

impl<'de> Deserialize<'de> for ExportConfig {
    /// Each exporter's settings are read straight from the file by their type, so that an
    /// error (an unknown key, a bad value) names its line and column.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Exporters;
        impl<'de> serde::de::Visitor<'de> for Exporters {
            type Value = ExportConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping of exporters (otlp, otlphttp, debug, optionally with /name)")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ExportConfig, A::Error> {
                use serde::de::Error;
                let mut exporters: Vec<(String, ExporterConfig)> = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    if exporters.iter().any(|(k, _)| *k == key) {
                        return Err(A::Error::custom(format!("exporter {key} is listed twice")));
                    }
                    if let Some(problem) = tailgate_core::collector::component_id_problem(&key) {
                        return Err(A::Error::custom(format!("exporter {problem}")));
                    }
                    let kind = key.split('/').next().unwrap_or_default();
                    let missing = || {
                        A::Error::custom(format!(
                            "exporter {key} needs its settings (at least endpoint)"
                        ))
                    };
                    let parsed = match kind {
                        // The Collector's names (`otlp`, `otlphttp`, `otlp_http`) and ours.
                        "otlp" | "otlp_grpc" => ExporterConfig::OtlpGrpc(
                            map.next_value::<Option<OtlpGrpcConfig>>()?
                                .ok_or_else(missing)?,
                        ),
                        "otlphttp" | "otlp_http" => ExporterConfig::OtlpHttp(
                            map.next_value::<Option<OtlpHttpConfig>>()?
                                .ok_or_else(missing)?,
                        ),
                        // `debug:` with nothing after it is an exporter with defaults
                        // (serde's, as for `debug: {}`).
                        "debug" => ExporterConfig::Debug(match map.next_value()? {
                            Some(c) => c,
                            None => serde_yaml_ng::from_value::<DebugConfig>(
                                serde_yaml_ng::Value::Mapping(Default::default()),
                            )
                            .map_err(A::Error::custom)?,
                        }),
                        other => {
                            return Err(A::Error::custom(format!(
                                "exporter {key}: unknown type {other:?}; use otlp (alias otlp_grpc), otlphttp (alias otlp_http) or debug (optionally with /name)"
                            )))
                        }
                    };
                    exporters.push((key, parsed));
                }
                Ok(ExportConfig {
                    exporters,
                    proxy_env: ProxyEnv::from_process(),
                })
            }
        }
        d.deserialize_map(Exporters)
    }
}

impl ExportConfig {
    /// Each exporter's queue budget (`queue_bytes`), in the order configured.
    pub fn queue_bytes(&self) -> impl Iterator<Item = u64> + '_ {
        self.exporters.iter().map(|(_, e)| e.batching().1)
    }

    /// What the operator should know: the Collector keys each exporter accepts and does
    /// not apply. Printed by `--check` and logged at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self
            .exporters
            .iter()
            .filter_map(|(key, cfg)| {
                let keys = match cfg {
                    ExporterConfig::OtlpGrpc(c) => c.not_applied(),
                    ExporterConfig::OtlpHttp(c) => c.not_applied(),
                    ExporterConfig::Debug(c) => c.not_applied(),
                };
                (!keys.is_empty()).then(|| {
                    let queue = if keys.contains(&"sending_queue") {
                        "; kept spans queue in memory (queue_bytes), a sending_queue's \
                         storage is not used"
                    } else if keys.contains(&"verbosity") {
                        "; every kept request is written whole, as one line of OTLP JSON \
                         (verbosity: detailed, in JSON)"
                    } else {
                        ""
                    };
                    format!(
                        "export.{key}: Collector keys accepted but not applied: {}{queue} \
                         (docs/configuration.md says what this exporter does instead)",
                        keys.join(", ")
                    )
                })
            })
            .collect();
        for (key, cfg) in &self.exporters {
            if let ExporterConfig::OtlpGrpc(c) = cfg {
                for name in c.headers.keys().filter(|k| {
                    http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .is_ok_and(|n| tailgate_core::forward::grpc_reserved(&n))
                }) {
                    warnings.push(format!(
                        "export.{key}.headers.{name}: not sent: gRPC sets it itself, or HTTP/2 \
                         does not allow it (the Collector's gRPC client drops gRPC's own too)"
                    ));
                }
            }
            // A block copied from a Collector config: there `http://` on a gRPC endpoint
            // is dialled with TLS (unless `tls.insecure: true`), here it is plaintext, so
            // the headers (an API key) would go out in clear to a backend expecting TLS.
            // `tls: {insecure: true}` says plaintext was meant (a block without it, such as
            // `tls: {}`, is plaintext here too and TLS there).
            if let ExporterConfig::OtlpGrpc(c) = cfg {
                let http = c
                    .target()
                    .get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
                if http && !c.tls.as_ref().is_some_and(|t| t.insecure) && !c.headers.is_empty() {
                    let names: Vec<&str> = c.headers.keys().map(String::as_str).collect();
                    warnings.push(format!(
                        "export.{key}: its headers ({}) go in clear: the endpoint is http://, \
                         plaintext here, where the Collector dials a gRPC endpoint with TLS \
                         whatever its http:// unless tls.insecure: true; write https:// (or \
                         host:port) if the backend takes TLS, or tls: {{insecure: true}} to say \
                         plaintext is meant",
                        names.join(", ")
                    ));
                }
            }
            let (uses_tls, tls) = match cfg {
                ExporterConfig::OtlpGrpc(c) => (c.uses_tls(), c.tls.as_ref()),
                ExporterConfig::OtlpHttp(c) => (c.uses_tls(), c.tls.as_ref()),
                ExporterConfig::Debug(_) => (false, None),
            };
            // With `https://` the connection is TLS and the certificate used.
            if !uses_tls {
                warnings.extend(tailgate_core::tls::unused_certificate_warning(
                    tls,
                    &format!("export.{key}"),
                ));
            }
            // Only where the connection is TLS: with `insecure: true` it is plaintext.
            if uses_tls && tls.is_some_and(|t| t.insecure_skip_verify) {
                warnings.push(format!(
                    "export.{key}.tls.insecure_skip_verify: the backend's certificate is not \
                     checked, so its headers and credentials go to whoever answers; for tests only"
                ));
            }
            // A block copied from a Collector config for a backend across the internet
            // (TLS) usually leaves compression out, relying on the Collector's gzip.
            let unset_over_tls = match cfg {
                ExporterConfig::OtlpGrpc(c) => c.compression.is_none() && c.uses_tls(),
                ExporterConfig::OtlpHttp(c) => c.compression.is_none() && c.uses_tls(),
                ExporterConfig::Debug(_) => false,
            };
            if unset_over_tls {
                warnings.push(format!(
                    "export.{key}: no compression set, so requests go uncompressed (the \
                     Collector's exporters gzip unless told otherwise); for a backend across \
                     the internet set compression: zstd or gzip, or compression: none to keep \
                     this and silence the warning"
                ));
            }
        }
        warnings
    }

    /// Where exporters connect when a proxy could apply, one line each: through which
    /// proxy and from which setting (`proxy_url`, or the variable as it was set), or
    /// directly though a variable is set (`NO_PROXY` names the host, or it is loopback).
    /// Printed as notes by `--check` and logged at start, since a variable set for other
    /// tools changes where data goes.
    pub fn proxy_notes(&self) -> Vec<String> {
        let env = &self.proxy_env;
        let mut notes = Vec::new();
        for (key, e) in &self.exporters {
            let (proxy, endpoint, client, proxy_url) = match e {
                ExporterConfig::OtlpGrpc(c) => (c.proxy(env), c.dialled(), ProxyFor::Grpc, false),
                ExporterConfig::OtlpHttp(c) => (
                    c.proxy(env),
                    c.url(),
                    ProxyFor::Http,
                    c.proxy_url.as_deref().is_some_and(|p| !p.trim().is_empty()),
                ),
                ExporterConfig::Debug(_) => continue,
            };
            let (Ok(proxy), Ok(endpoint)) = (proxy, endpoint) else {
                continue;
            };
            let (variable, value) = env.variable(&endpoint, client);
            let source = if proxy_url { "proxy_url" } else { variable };
            match proxy {
                Some(proxy) => notes.push(format!(
                    "export.{key} connects through the proxy {proxy} (from {source})"
                )),
                None if value.is_some() => notes.push(format!(
                    "export.{key} connects directly to {}, though {variable} is set: NO_PROXY \
                     names it, or it is a loopback address",
                    endpoint.host().unwrap_or_default()
                )),
                None => {}
            }
        }
        notes
    }

    /// One OTLP/gRPC exporter.
    pub fn otlp_grpc(config: OtlpGrpcConfig) -> Self {
        ExportConfig {
            exporters: vec![("otlp_grpc".into(), ExporterConfig::OtlpGrpc(config))],
            proxy_env: ProxyEnv::from_process(),
        }
    }

    /// Checks every exporter; the error names its key.
    /// `extensions` are the authenticators exporters' `auth` blocks may name; their
    /// files are read.
    pub fn validate(&self, extensions: &ExtensionsConfig) -> Result<(), (String, SettingError)> {
        if self.exporters.is_empty() {
            return Err(("export".into(), SettingError::NoExporter));
        }
        for (key, e) in &self.exporters {
            let (batch, queue) = e.batching();
            let checked = match e {
                ExporterConfig::OtlpGrpc(c) => c.validate().and(c.proxy(&self.proxy_env).map(drop)),
                ExporterConfig::OtlpHttp(c) => c.validate().and(c.proxy(&self.proxy_env).map(drop)),
                ExporterConfig::Debug(_) => Ok(()),
            }
            .and(batch.validate(queue));
            checked.map_err(|m| {
                let at = match m.sub_key() {
                    Some(sub) => format!("export.{key}.{sub}"),
                    None => format!("export.{key}"),
                };
                (at, m)
            })?;
            if let Some(auth) = e.auth() {
                let at = || format!("export.{key}.auth.authenticator");
                // The extension's own settings and files are checked once, by
                // `ExtensionsConfig::validate`: here only that it is there.
                extensions
                    .named(auth)
                    .map_err(|err| (at(), SettingError::Auth(err)))?;
                if let Some(s) = extensions.signing(auth) {
                    let refuse = |problem: &str| {
                        let err =
                            auth::AuthError::SigV4(auth.authenticator.clone(), problem.into());
                        (at(), SettingError::Auth(err))
                    };
                    match e {
                        ExporterConfig::OtlpHttp(c) => {
                            let host = c.url().ok().and_then(|u| u.host().map(str::to_owned));
                            let host = host.unwrap_or_default();
                            if tailgate_core::sigv4::infer_scope(&s.service, &s.region, &host)
                                .is_none()
                            {
                                let missing = match (s.service.is_empty(), s.region.is_empty()) {
                                    (true, true) => "service and region",
                                    (true, false) => "service",
                                    _ => "region",
                                };
                                return Err(refuse(&format!(
                                    "sigv4auth cannot tell the AWS {missing} of {host} (only AWS endpoint names tell them): set {missing} in the extension"
                                )));
                            }
                        }
                        _ => {
                            return Err(refuse(
                                "sigv4auth signs HTTP requests only (the Collector's does not implement gRPC): use an otlphttp exporter",
                            ))
                        }
                    }
                }
                if let ExporterConfig::OtlpGrpc(c) = e {
                    if !c.uses_tls() && extensions.sends_credentials(auth) {
                        let http = c.target().to_ascii_lowercase().starts_with("http://");
                        let err = auth::AuthError::PlaintextGrpc(auth.authenticator.clone(), http);
                        return Err((at(), SettingError::Auth(err)));
                    }
                }
            }
        }
        Ok(())
    }
}

impl ExporterConfig {
    /// Its `auth` block, if any.
    fn auth(&self) -> Option<&AuthRef> {
        match self {
            ExporterConfig::OtlpGrpc(c) => c.auth.as_ref(),
            ExporterConfig::OtlpHttp(c) => c.auth.as_ref(),
            ExporterConfig::Debug(_) => None,
        }
    }

    /// What its `auth` block names puts on each request (`None` without one), files read
    /// now.
    fn credential(
        &self,
        extensions: &ExtensionsConfig,
    ) -> Result<Option<Arc<tailgate_core::request_auth::RequestAuth>>, auth::AuthError> {
        self.auth().map(|a| extensions.credential(a)).transpose()
    }

    /// Its batching and its queue budget in bytes.
    fn batching(&self) -> (BatchConfig, u64) {
        match self {
            ExporterConfig::OtlpGrpc(c) => (c.batch, c.queue_bytes),
            ExporterConfig::OtlpHttp(c) => (c.batch, c.queue_bytes),
            ExporterConfig::Debug(c) => (c.batch, c.queue_bytes),
        }
    }
}

/// Why an exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The gRPC client could not be built.
    #[error("{exporter}: {source}")]
    Grpc {
        /// Exporter key.
        exporter: String,
        /// Cause.
        source: tailgate_core::forward::ForwardError,
    },
    /// The HTTP client could not be built.
    #[error("{exporter}: {source}")]
    Http {
        /// Exporter key.
        exporter: String,
        /// Cause.
        source: SettingError,
    },
    /// The proxy its connections would go through cannot be used.
    #[error("{exporter}: {source}")]
    Proxy {
        /// Exporter key.
        exporter: String,
        /// Cause.
        source: SettingError,
    },
    /// The credential its `auth` block names could not be built.
    #[error("{exporter}: {source}")]
    Auth {
        /// Exporter key.
        exporter: String,
        /// Cause.
        source: auth::AuthError,
    },
    /// The debug output could not be opened.
    #[error("{exporter}: opening {path}: {source}")]
    Debug {
        /// Exporter key.
        exporter: String,
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

pub use crate::metrics::ExporterStats;

/// What a batch of kept spans owes the gateway's accounting, shared by the exporters.
#[derive(Debug)]
pub struct Ticket {
    spans: u64,
    bytes: u64,
    exporters: usize,
    settled: AtomicUsize,
    failed: AtomicU64,
}

impl Ticket {
    /// A ticket for `spans` spans of `bytes` bytes, sent to `exporters` exporters.
    pub fn new(spans: u64, bytes: u64, exporters: usize) -> Arc<Self> {
        Arc::new(Ticket {
            spans,
            bytes,
            exporters,
            settled: AtomicUsize::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// One exporter is done with these spans, `failed` of them failed. The last exporter
    /// moves them out of "pending export" into exported or failed.
    pub fn settle(&self, failed: u64, stats: &GatewayStats) {
        self.failed
            .fetch_max(failed.min(self.spans), Ordering::Relaxed);
        if self.settled.fetch_add(1, Ordering::AcqRel) + 1 == self.exporters {
            let failed = self.failed.load(Ordering::Relaxed);
            stats.exported_spans.add(self.spans - failed);
            stats.export_failed_spans.add(failed);
            stats.pending_export_spans.sub(self.spans);
            stats.pending_export_bytes.sub(self.bytes);
        }
    }
}

/// Spans of kept traces, on their way to one exporter.
#[derive(Debug)]
pub struct ExportBatch {
    /// The spans.
    pub spans: Vec<BufferedSpan>,
    /// Their tickets in span order, each with how many of the spans it covers (together,
    /// all of them).
    pub tickets: Vec<(Arc<Ticket>, u64)>,
    /// Its share of the exporter's queue budget, returned when the batch is settled.
    pub permit: Option<OwnedSemaphorePermit>,
}

impl ExportBatch {
    /// Its spans' encoded bytes.
    fn bytes(&self) -> usize {
        self.spans.iter().map(BufferedSpan::encoded_len).sum()
    }
}

/// Kept spans on their way to one exporter, before they have room in its queue: a shard
/// holds them ("parked") while the exporter's queue is full.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    /// The spans.
    pub spans: Vec<BufferedSpan>,
    /// Their encoded bytes (what they take of the queue's budget).
    pub bytes: u64,
    /// Their tickets in span order, each with how many of the spans it covers.
    pub tickets: Vec<(Arc<Ticket>, u64)>,
}

/// Room reserved in an exporter's queue for one [`Outgoing`] batch: its share of the byte
/// budget and a slot in the channel. Dropped unused, both are given back.
#[derive(Debug)]
pub struct Room {
    budget: Option<OwnedSemaphorePermit>,
    slot: mpsc::OwnedPermit<ExportBatch>,
    want: u32,
}

/// Why an exporter's queue took nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum NoRoom {
    /// Its queue is full for now.
    Full,
    /// The exporter has stopped: it takes nothing more.
    Stopped,
}

/// A shard's handle to one exporter.
#[derive(Debug, Clone)]
pub struct ExportHandle {
    tx: mpsc::Sender<ExportBatch>,
    budget: Arc<Semaphore>,
    capacity: u32,
    stats: Arc<ExporterStats>,
}

impl ExportHandle {
    /// What `bytes` of spans take of the queue's budget: a batch larger than the whole
    /// budget takes all of it, and goes alone.
    fn want(&self, bytes: u64) -> u32 {
        u32::try_from(bytes)
            .unwrap_or(u32::MAX)
            .clamp(1, self.capacity)
    }

    /// Room for `bytes` of spans if the queue has it now.
    pub fn try_room(&self, bytes: u64) -> Result<Room, NoRoom> {
        // Stopped before full: a stopped exporter's budget may be spent for good.
        if self.tx.is_closed() {
            return Err(NoRoom::Stopped);
        }
        let want = self.want(bytes);
        let budget = match self.budget.clone().try_acquire_many_owned(want) {
            Ok(permit) => Some(permit),
            // Never closed while the handle lives; were it, the channel decides.
            Err(tokio::sync::TryAcquireError::Closed) => None,
            Err(tokio::sync::TryAcquireError::NoPermits) => return Err(NoRoom::Full),
        };
        match self.tx.clone().try_reserve_owned() {
            Ok(slot) => Ok(Room { budget, slot, want }),
            Err(mpsc::error::TrySendError::Full(_)) => Err(NoRoom::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(NoRoom::Stopped),
        }
    }

    /// Waits for room for `bytes` of spans (cancel-safe: dropped, it takes nothing).
    pub async fn room(&self, bytes: u64) -> Result<Room, NoRoom> {
        let want = self.want(bytes);
        // A stopped exporter gives no budget back: its stop ends the wait.
        let budget = tokio::select! {
            budget = self.budget.clone().acquire_many_owned(want) => budget.ok(),
            () = self.tx.closed() => return Err(NoRoom::Stopped),
        };
        let slot = self
            .tx
            .clone()
            .reserve_owned()
            .await
            .map_err(|_| NoRoom::Stopped)?;
        Ok(Room { budget, slot, want })
    }

    /// Hands `out` to the exporter in the room reserved for it. Returns it back when the
    /// exporter has stopped meanwhile.
    pub fn send_in(&self, room: Room, out: Outgoing) -> Result<(), Outgoing> {
        if self.tx.is_closed() {
            return Err(out);
        }
        let Room { budget, slot, want } = room;
        self.stats.queue_bytes.add(u64::from(want));
        slot.send(ExportBatch {
            spans: out.spans,
            tickets: out.tickets,
            permit: budget,
        });
        Ok(())
    }

    /// Hands `out` to the exporter, waiting for room in its queue (counted as a shard
    /// waiting: see [`ExporterStats::waiting`]). Returns it back when the exporter has
    /// stopped.
    pub async fn send(&self, out: Outgoing) -> Result<(), Outgoing> {
        let room = match self.try_room(out.bytes) {
            Ok(room) => Ok(room),
            Err(NoRoom::Stopped) => Err(NoRoom::Stopped),
            Err(NoRoom::Full) => {
                self.wait_begins();
                let room = self.room(out.bytes).await;
                self.wait_ends();
                room
            }
        };
        match room {
            Ok(room) => self.send_in(room, out),
            Err(_) => Err(out),
        }
    }

    /// A shard begins to wait for room in this exporter's queue, taking nothing meanwhile
    /// (see [`ExporterStats::waiting`]).
    pub fn wait_begins(&self) {
        self.stats.waiting.add(1);
    }

    /// The wait [`Self::wait_begins`] counted is over.
    pub fn wait_ends(&self) {
        self.stats.waiting.sub(1);
    }

    /// A handle to an exporter that is not running, with a queue of `capacity` bytes:
    /// what it is handed comes out of the receiver, its budget back when a batch is
    /// dropped.
    #[cfg(test)]
    pub(crate) fn for_test(
        capacity: u32,
    ) -> (Self, mpsc::Receiver<ExportBatch>, Arc<ExporterStats>) {
        let stats = Arc::new(ExporterStats::new("test", u64::from(capacity)));
        let (tx, rx) = mpsc::channel(16);
        let handle = ExportHandle {
            tx,
            budget: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            stats: stats.clone(),
        };
        (handle, rx, stats)
    }

    /// Counts `bytes` of kept spans as parked in a shard for this exporter.
    pub fn park(&self, bytes: u64) {
        self.stats.parked_bytes.add(bytes);
    }

    /// Counts `bytes` of parked spans as parked no longer.
    pub fn unpark(&self, bytes: u64) {
        self.stats.parked_bytes.sub(bytes);
    }
}

/// Where an exporter's requests go (the clients boxed: one per exporter, and each is
/// several hundred bytes beside the debug writer's few).
enum Sink {
    Grpc(Box<GrpcClient>),
    Http(Box<otlp_http::HttpClient>),
    Debug(debug::DebugWriter),
}

/// What one export request came to.
enum Outcome {
    /// The backend took the request; it refused `rejected` of its spans (partial success).
    Took { rejected: u64, message: String },
    /// The backend refused the request as malformed: some span in it is bad, the others
    /// may be fine.
    Invalid(String),
    /// The backend refused the request as too large for it (`RESOURCE_EXHAUSTED` without
    /// `RetryInfo`, HTTP 413): smaller parts may pass.
    TooLarge(String),
    /// The backend refuses the exporter's credentials (UNAUTHENTICATED, PERMISSION_DENIED,
    /// HTTP 401, 403): not delivered, and every request will be refused until they change.
    Unauthorized(String),
    /// Not delivered: refused for another reason, or still failing when retries ran out.
    Failed(String),
}

impl Sink {
    /// Sends one encoded request.
    async fn send(&mut self, body: Bytes) -> Outcome {
        use tailgate_core::forward::ForwardError;
        match self {
            Sink::Grpc(c) => match c.send(body).await {
                Ok(d) => Outcome::Took {
                    rejected: d.rejected_spans,
                    message: d.message,
                },
                // Final statuses: INVALID_ARGUMENT, malformed; RESOURCE_EXHAUSTED (it carried
                // no RetryInfo, or it would have been retried): over the backend's message
                // size, as a Collector refuses one over max_recv_msg_size_mib.
                Err(ForwardError::Rejected { endpoint, status }) => {
                    let e = format!("{endpoint} rejected the request: {status}");
                    match status.code() {
                        tonic::Code::InvalidArgument => Outcome::Invalid(e),
                        tonic::Code::ResourceExhausted => Outcome::TooLarge(e),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => {
                            Outcome::Unauthorized(e)
                        }
                        _ => Outcome::Failed(e),
                    }
                }
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Sink::Http(c) => match c.send(body).await {
                Ok(d) => Outcome::Took {
                    rejected: d.rejected_spans,
                    message: d.message,
                },
                Err(otlp_http::HttpExportError::Invalid(e)) => Outcome::Invalid(e),
                Err(otlp_http::HttpExportError::TooLarge(e)) => Outcome::TooLarge(e),
                Err(otlp_http::HttpExportError::Unauthorized(e)) => Outcome::Unauthorized(e),
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Sink::Debug(w) => match w.write(body).await {
                Ok(()) => Outcome::Took {
                    rejected: 0,
                    message: String::new(),
                },
                // A span the writer cannot read: halved like a backend's INVALID_ARGUMENT,
                // so that only the bad span's part is lost.
                Err(e @ debug::DebugWriteError::Json(_)) => Outcome::Invalid(e.to_string()),
                Err(e) => Outcome::Failed(e.to_string()),
            },
        }
    }
}

/// Whether an exporter whose backend keeps failing holds a request past the retry bound:
/// while it costs no one anything. It gives it up only once shards wait for room in its
/// queue (`waiting`: they park kept spans in the buffer, and wait only well past its
/// limit or in a drain), or the gateway holds `max_held_bytes`, or has refused a sender
/// for memory since the exporter last looked (the first look: in the last
/// [`REFUSALS_LOOKED_BACK`]; a request is admitted at its worst case, so senders can be
/// refused below the limit; see [`tailgate_core::retry`]). Since the last look, not a
/// fixed minute: a trial saw requests given up for a minute after the refusals had
/// ended, with the buffer 70% full.
pub fn hold_rule(stats: Arc<GatewayStats>, waiting: Arc<Gauge>, max_held_bytes: u64) -> Hold {
    let last_look = std::sync::Mutex::new(None::<Instant>);
    Arc::new(move || {
        let now = Instant::now();
        let since = {
            let mut last = match last_look.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Strictly after the last look: one at its instant was seen by it.
            let since = last.map_or(REFUSALS_LOOKED_BACK, |at| {
                now.saturating_duration_since(at)
                    .saturating_sub(std::time::Duration::from_nanos(1))
            });
            *last = Some(now);
            since.min(REFUSALS_LOOKED_BACK)
        };
        let refusing = stats.last_memory_refusal.within(since);
        waiting.get() == 0 && !refusing && stats.held_bytes() < max_held_bytes
    })
}

/// How far back an exporter's hold looks for a sender refused for memory: the longest wait
/// between two looks (a backend's `Retry-After` is followed up to
/// [`tailgate_core::retry::MAX_HINT`], a minute), so that a refusal between two looks is
/// seen and one from long ago is not.
pub const REFUSALS_LOOKED_BACK: std::time::Duration = tailgate_core::retry::MAX_HINT;

/// One exporter's task.
pub struct Exporter {
    rx: mpsc::Receiver<ExportBatch>,
    sink: Sink,
    batch: BatchConfig,
    stats: Arc<GatewayStats>,
    own: Arc<ExporterStats>,
    /// What its once-a-minute warnings counted since they were last given.
    warnings: Warnings,
}

/// An exporter's warnings given at most once a minute, each with what it counted since.
#[derive(Debug, Default)]
struct Warnings {
    /// Spans failed for refused credentials.
    credentials_refused: Tally,
    /// Spans refused as malformed.
    malformed_refused: Tally,
    /// Partial successes rejecting no span (a backend's warning).
    backend_warnings: Tally,
    /// Single spans refused as too large.
    too_large_refused: Tally,
    /// Spans failed otherwise (refused for good, or still failing past the retry bound).
    failed_otherwise: Tally,
}

/// Logs `what` (a refusal that failed `spans` spans, for `error`) at most once a minute per
/// kind, `tally` counting the spans failed for that kind since: a backend refusing span
/// after span would otherwise log a line per span.
fn warn_refused(tally: &mut Tally, spans: u64, exporter: &str, error: &str, what: &str) {
    if let Some(spans) = tally.add(spans) {
        tracing::warn!(
            exporter,
            %error,
            spans,
            "{what} Logged at most once a minute, spans counted since the last time."
        );
    }
}

/// Requests refused as malformed, before any part of a batch was taken, that make
/// [`Exporter::send_isolating`] count the rest of the batch failed unsent: levels one to
/// four of the halving (1 + 2 + 4 + 8).
const REFUSED_AS_SYSTEMATIC: usize = 15;

/// Starts one task per configured exporter. Must be called inside a Tokio runtime.
///
/// An exporter whose backend keeps failing holds its spans past the retry bound while it
/// costs no one anything (see [`hold_rule`]).
pub fn start(
    config: &ExportConfig,
    extensions: &ExtensionsConfig,
    stats: &Arc<GatewayStats>,
    max_held_bytes: u64,
) -> Result<(Vec<ExportHandle>, Vec<JoinHandle<()>>), ExportError> {
    let mut handles = Vec::with_capacity(config.exporters.len());
    let mut tasks = Vec::with_capacity(config.exporters.len());
    for (key, cfg) in &config.exporters {
        let waiting = Arc::new(Gauge::default());
        let hold = hold_rule(stats.clone(), waiting.clone(), max_held_bytes);
        let credential = cfg
            .credential(extensions)
            .map_err(|source| ExportError::Auth {
                exporter: key.clone(),
                source,
            })?;
        let sink = match cfg {
            ExporterConfig::OtlpGrpc(c) => {
                let proxy = c
                    .proxy(&config.proxy_env)
                    .map_err(|source| ExportError::Proxy {
                        exporter: key.clone(),
                        source,
                    })?;
                let client = c
                    .client()
                    .map_err(|source| ExportError::Grpc {
                        exporter: key.clone(),
                        source,
                    })?
                    .with_proxy(proxy);
                Sink::Grpc(Box::new(
                    match credential {
                        Some(auth) => client.with_auth(auth),
                        None => client,
                    }
                    .hold_while(hold),
                ))
            }
            ExporterConfig::OtlpHttp(c) => Sink::Http(Box::new(
                c.client_with(credential, &config.proxy_env)
                    .map_err(|source| ExportError::Http {
                        exporter: key.clone(),
                        source,
                    })?
                    .hold_while(hold),
            )),
            ExporterConfig::Debug(c) => {
                Sink::Debug(c.writer().map_err(|source| ExportError::Debug {
                    exporter: key.clone(),
                    path: c.path.clone().unwrap_or_else(|| "stdout".into()),
                    source,
                })?)
            }
        };
        let (batch, queue_bytes) = cfg.batching();
        let capacity = u32::try_from(queue_bytes).unwrap_or(u32::MAX);
        let retry = match &sink {
            Sink::Grpc(c) => c.retry_stats().clone(),
            Sink::Http(c) => c.retry_stats().clone(),
            Sink::Debug(_) => Arc::default(),
        };
        let own = Arc::new(ExporterStats {
            waiting,
            retry,
            ..ExporterStats::new(key, u64::from(capacity))
        });
        // The byte budget bounds the queue; the channel only needs room for many traces.
        let (tx, rx) = mpsc::channel(16_384);
        handles.push(ExportHandle {
            tx,
            budget: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            stats: own.clone(),
        });
        let exporter = Exporter {
            rx,
            sink,
            batch,
            stats: stats.clone(),
            own,
            warnings: Warnings::default(),
        };
        tasks.push(tokio::spawn(exporter.run()));
    }
    stats.set_exporters(handles.iter().map(|h| h.stats.clone()).collect());
    Ok((handles, tasks))
}

/// Tickets in span order, with how many of their spans are still unsettled here and how
/// many of those failed.
type Tickets = VecDeque<(Arc<Ticket>, u64, u64)>;

/// What a flush has learnt of the backend's size limit: the smallest request it refused
/// as too large (no part as large is sent again), and how many more such refusals the
/// flush takes (16 log2 n for n spans) before sending nothing more it might refuse: spans
/// of decreasing size under a header over the limit would otherwise each be sent.
struct SizeRefusals {
    smallest: usize,
    left: usize,
}

impl SizeRefusals {
    fn new(spans: usize) -> Self {
        SizeRefusals {
            smallest: usize::MAX,
            left: 16 * (usize::BITS - spans.leading_zeros()) as usize,
        }
    }

    /// Whether a part of `size` bytes may be sent.
    fn may_send(&self, size: usize) -> bool {
        size < self.smallest && (self.left > 0 || self.smallest == usize::MAX)
    }

    fn refused(&mut self, size: usize) {
        self.smallest = self.smallest.min(size);
        self.left = self.left.saturating_sub(1);
    }
}

/// Appends to `out` the ranges of a batch's spans that `failed` names, as ranges of the
/// chunk that started at position `start` of the batch's parts; `order` gives each part's
/// position in the batch as gathered when the parts were regrouped
/// ([`group_by_headers`]).
fn to_batch_positions(
    failed: Vec<Range<usize>>,
    start: usize,
    order: Option<&[u32]>,
    out: &mut Vec<Range<usize>>,
) {
    let moved = failed.into_iter().map(|r| r.start + start..r.end + start);
    match order {
        None => out.extend(moved),
        Some(order) => out.extend(moved.flatten().map(|at| {
            let i = order[at] as usize;
            i..i + 1
        })),
    }
}

/// Spans gathered for one flush, with the tickets and budget they hold.
#[derive(Default)]
struct Gathered {
    spans: Vec<BufferedSpan>,
    tickets: Tickets,
    permits: Vec<OwnedSemaphorePermit>,
    bytes: usize,
}

impl Gathered {
    /// Adds `b`, of `bytes` span bytes ([`ExportBatch::bytes`], counted once by the caller).
    fn add(&mut self, b: ExportBatch, bytes: usize) {
        self.bytes += bytes;
        self.tickets
            .extend(b.tickets.into_iter().map(|(ticket, n)| (ticket, n, 0)));
        self.permits.extend(b.permit);
        self.spans.extend(b.spans);
    }
}

// === impl Exporter ===

impl Exporter {
    /// Runs until every sender is gone and everything queued is sent.
    pub async fn run(mut self) {
        let mut reframer = Reframer::by_address();
        let mut open = true;
        // A batch from a shard that did not fit the last request: it starts the next.
        let mut next: Option<ExportBatch> = None;
        while open {
            let first = match next.take() {
                Some(b) => b,
                None => match self.rx.recv().await {
                    Some(b) => b,
                    None => break,
                },
            };
            let mut g = Gathered::default();
            let bytes = first.bytes();
            g.add(first, bytes);
            let deadline = Instant::now() + self.batch.timeout;
            while !self.batch.is_full(g.spans.len(), g.bytes) {
                tokio::select! {
                    item = self.rx.recv() => match item {
                        Some(b) => {
                            let bytes = b.bytes();
                            if self.batch.overflows(g.spans.len(), g.bytes, b.spans.len(), bytes) {
                                next = Some(b);
                                break;
                            }
                            g.add(b, bytes);
                        }
                        None => { open = false; break; }
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.flush(&mut g, &mut reframer).await;
        }
    }

    async fn flush(&mut self, g: &mut Gathered, reframer: &mut Reframer) {
        // Headers of equal content become one slice, so that spans of one resource that
        // came in different requests share runs and are grouped by address (see
        // `Interner`). Computed once for the whole gathered batch.
        let mut interner = Interner::default();
        let mut parts: Vec<SpanParts<'_>> =
            g.spans.iter().map(|s| interner.parts(s.parts())).collect();
        // Spans of one resource and scope together, across traces: traces that crossed
        // services alternate resources, and each change would repeat a header. `order`
        // maps positions back to `g.spans` (and so to the tickets) when anything moved.
        let order = group_by_headers(&mut parts);
        drop(interner);
        // Failed spans, as ranges of positions in `g.spans`.
        let mut failed_at: Vec<Range<usize>> = Vec::new();
        let mut sizes = SizeRefusals::new(parts.len());
        // Requests stay under the size limit even when one trace filled the batch, counting
        // the resource and scope headers each request repeats, not only span bytes. A first
        // span whose headers alone take most of the limit raises it (see
        // `BatchConfig::request_limit`).
        let mut start = 0;
        while start < parts.len() {
            let (mut end, mut bytes, mut prev) = (start, 0, None);
            let first = &parts[start];
            let limit = self
                .batch
                .request_limit(added_len_by_address(None, first) - field_len(first.span.len()));
            while end < parts.len() {
                let add = added_len_by_address(prev, &parts[end]);
                let full = end - start >= self.batch.max_spans || bytes + add > limit;
                if end > start && full {
                    break;
                }
                bytes += add;
                prev = Some(&parts[end]);
                end += 1;
            }
            let chunk = &parts[start..end];
            let n = chunk.len() as u64;
            let failed = self.send_isolating(chunk, reframer, &mut sizes).await;
            let failed_n: u64 = failed.iter().map(|r| (r.end - r.start) as u64).sum();
            self.own.sent_spans.add(n - failed_n);
            self.own.failed_spans.add(failed_n);
            to_batch_positions(failed, start, order.as_deref(), &mut failed_at);
            start = end;
        }
        // Settled once the whole batch is sent: the tickets follow `g.spans`' order.
        failed_at.sort_unstable_by_key(|r| r.start);
        self.settle(&mut g.tickets, parts.len() as u64, &failed_at);
        let returned: u64 = g.permits.iter().map(|p| p.num_permits() as u64).sum();
        g.permits.clear();
        self.own.queue_bytes.sub(returned);
        g.spans.clear();
        g.bytes = 0;
    }

    /// Sends `chunk` as one request; returns the ranges of its spans that failed. When the
    /// backend refuses a request as malformed, its halves are sent on their own, down to
    /// single spans, so that one bad span fails alone and not every span batched with it
    /// (other senders' among them): at most about 2 log2(n) more requests per bad span.
    /// A request too large for the backend is halved the same way until its parts pass
    /// (`batch.max_bytes` over the backend's limit, or a request an oversized header made
    /// larger: `BatchConfig::request_limit`); a part at least as large as one refused for
    /// size earlier in the flush is not sent but halved, or failed when it is a single
    /// span, and refusals for size have a budget per flush ([`SizeRefusals`]), so a backend
    /// that refuses everything as too large, or headers larger than it takes, cost about
    /// log2(n) requests per flush (16 log2(n) at worst) and not one per span.
    /// Spans a backend rejects by count (OTLP partial success names no span) are taken to
    /// be the first of their request.
    async fn send_isolating(
        &mut self,
        chunk: &[SpanParts<'_>],
        reframer: &mut Reframer,
        sizes: &mut SizeRefusals,
    ) -> Vec<Range<usize>> {
        let own = self.own.clone();
        let exporter = own.name.as_str();
        let mut failed = Vec::new();
        // Breadth first: each half of a part after the other parts of its level, so the
        // first requests tell a backend that refuses everything from a few bad spans.
        let mut todo = VecDeque::with_capacity(8);
        todo.push_back(0..chunk.len());
        // Halving isolates a few malformed spans in about 2 log2(n) requests each. A
        // backend (or proxy) that refuses every request as malformed would take 2n - 1:
        // past enough halvings for about 16 bad spans, the rest is counted failed unsent.
        let mut splits_left = 16 * (usize::BITS - chunk.len().leading_zeros()) as usize;
        // Requests refused as malformed before any was taken. Fewer than eight bad spans
        // leave one of the eight parts of the fourth level clean: all of the first
        // `REFUSED_AS_SYSTEMATIC` refused means eight bad spans or more, or a backend that
        // refuses this batch as a whole (a schema or a proxy it does not take), which the
        // Collector learns in one round trip and halving on would take about 180 requests
        // per batch to learn. Three single spans from parts apart then tell the two apart.
        let mut refused_first = 0usize;
        let mut took_any = false;
        // Whether single spans were sent to tell the two apart (see below).
        let mut probed = false;
        let mut too_large_unsent = 0u64;
        while let Some(range) = todo.pop_front() {
            let part = &chunk[range.clone()];
            let n = part.len() as u64;
            let size = reframer.measure(part);
            let outcome = if !sizes.may_send(size) {
                None
            } else {
                let mut out = BytesMut::new();
                reframer.write_measured(part, size, &mut out);
                Some(self.sink.send(out.freeze()).await)
            };
            let halve = |todo: &mut VecDeque<Range<usize>>| {
                let mid = range.start + part.len() / 2;
                todo.push_back(range.start..mid);
                todo.push_back(mid..range.end);
            };
            match &outcome {
                Some(Outcome::Invalid(_)) if !took_any => refused_first += 1,
                Some(Outcome::Took { .. }) => took_any = true,
                _ => {}
            }
            match outcome {
                None if part.len() > 1 => halve(&mut todo),
                None => {
                    too_large_unsent += 1;
                    failed.push(range);
                }
                Some(Outcome::Took { rejected, message }) => {
                    // The backend's own figure is logged; what is counted failed cannot be
                    // more than the part's spans.
                    let stated = rejected;
                    let rejected = rejected.min(n);
                    if rejected > 0 {
                        tracing::warn!(exporter, rejected, stated, %message, "Backend rejected part of an export.");
                        failed.push(range.start..range.start + rejected as usize);
                    } else if !message.is_empty() {
                        self.warned_by_backend(&message);
                    }
                }
                Some(Outcome::Invalid(error))
                    if part.len() > 1
                        && (splits_left == 0
                            || (probed && !took_any && refused_first >= REFUSED_AS_SYSTEMATIC)) =>
                {
                    let before = failed.len();
                    failed.push(range);
                    failed.extend(todo.drain(..));
                    let spans = failed[before..]
                        .iter()
                        .map(|r| (r.end - r.start) as u64)
                        .sum();
                    self.refused_as_malformed(spans, &error, true);
                }
                Some(Outcome::Invalid(_))
                    if part.len() > 1 && !took_any && refused_first >= REFUSED_AS_SYSTEMATIC =>
                {
                    // Eight or more bad spans, or a backend refusing the batch whole: a
                    // single span from each of three parts apart tells which. If one is
                    // taken, halving goes on (within its budget); if all are refused, the
                    // next refused part fails the rest.
                    probed = true;
                    splits_left = splits_left.saturating_sub(1);
                    let mut singles = Vec::with_capacity(3);
                    singles.push(range.start..range.start + 1);
                    let step = (todo.len() / 2).max(1);
                    for t in todo.iter_mut().step_by(step).take(2) {
                        singles.push(t.start..t.start + 1);
                        t.start += 1;
                    }
                    todo.retain(|t| !t.is_empty());
                    let rest = range.start + 1..range.end;
                    let mid = rest.start + rest.len() / 2;
                    for half in [rest.start..mid, mid..rest.end] {
                        if !half.is_empty() {
                            todo.push_back(half);
                        }
                    }
                    for single in singles.into_iter().rev() {
                        todo.push_front(single);
                    }
                }
                Some(Outcome::TooLarge(error)) if sizes.left == 0 => {
                    tracing::warn!(exporter, %error, "Backend refuses every part of this batch as too large (RESOURCE_EXHAUSTED without a retry hint, or HTTP 413); the rest is counted as failed.");
                    failed.push(range);
                    failed.extend(todo.drain(..));
                }
                Some(Outcome::Invalid(error)) if part.len() > 1 => {
                    splits_left -= 1;
                    tracing::debug!(exporter, spans = n, %error, "Backend refused a request as malformed; sending its halves apart.");
                    halve(&mut todo);
                }
                Some(Outcome::TooLarge(error)) if part.len() > 1 => {
                    sizes.refused(size);
                    tracing::debug!(exporter, spans = n, bytes = size, %error, "Backend refused a request as too large; sending its halves apart.");
                    halve(&mut todo);
                }
                Some(Outcome::Invalid(error)) => {
                    failed.push(range);
                    self.refused_as_malformed(1, &error, false);
                }
                Some(Outcome::TooLarge(error)) => {
                    sizes.refused(size);
                    warn_refused(
                        &mut self.warnings.too_large_refused,
                        1,
                        exporter,
                        &error,
                        "Backend refused single spans, each with its resource and scope headers, as too large (RESOURCE_EXHAUSTED without a retry hint, or HTTP 413); each is counted as failed.",
                    );
                    failed.push(range);
                }
                Some(Outcome::Unauthorized(error)) => {
                    warn_refused(
                        &mut self.warnings.credentials_refused,
                        n,
                        exporter,
                        &error,
                        "The backend refuses this exporter's credentials (its headers or auth extension); spans counted as failed.",
                    );
                    failed.push(range);
                }
                Some(Outcome::Failed(error)) => {
                    self.failed_otherwise(n, &error);
                    failed.push(range);
                }
            }
        }
        if too_large_unsent > 0 {
            tracing::warn!(
                exporter,
                spans = too_large_unsent,
                bytes = sizes.smallest,
                "Spans each as large, with their headers, as a request the backend refused as too large: counted as failed without being sent."
            );
        }
        failed
    }

    /// Logs `spans` refused as malformed (`whole`: with the rest of their batch, the
    /// backend refusing every part) at most once a minute, with the spans failed for it
    /// since: a backend refusing a sender's spans would otherwise log a line per span.
    fn refused_as_malformed(&mut self, spans: u64, error: &str, whole: bool) {
        let what = if whole {
            "The backend refuses every part of a batch as malformed (INVALID_ARGUMENT, HTTP 400); the batch is counted as failed."
        } else {
            "The backend refused spans as malformed (INVALID_ARGUMENT, HTTP 400); each is counted as failed alone."
        };
        warn_refused(
            &mut self.warnings.malformed_refused,
            spans,
            &self.own.name,
            error,
            what,
        );
    }

    /// Logs `spans` failed for another reason (a status that is not retried, such as a
    /// 404 or 500, or a failure still there past the retry bound) at most once a minute,
    /// with the spans failed since: a backend answering 500 to every request would
    /// otherwise log a line per request.
    fn failed_otherwise(&mut self, spans: u64, error: &str) {
        warn_refused(
            &mut self.warnings.failed_otherwise,
            spans,
            &self.own.name,
            error,
            "Export failed (refused by the backend, or still failing when retries ran out); spans counted as failed.",
        );
    }

    /// A backend took a request whole with a message (OTLP's partial success rejecting no
    /// span: a warning, which the Collector logs too): logged at most once a minute.
    fn warned_by_backend(&mut self, message: &str) {
        if let Some(responses) = self.warnings.backend_warnings.add(1) {
            tracing::warn!(
                exporter = %self.own.name,
                %message,
                responses,
                "The backend took an export whole with a warning (a partial success rejecting \
                 no spans). Logged at most once a minute, responses counted since the last time."
            );
        }
    }

    /// Settles the next `n` spans, from the front of the tickets; `failed` are the ranges
    /// of those `n` that failed, sorted and apart, so each ticket is charged the failures
    /// among its own spans (one pass over both).
    fn settle(&self, tickets: &mut Tickets, n: u64, failed: &[Range<usize>]) {
        let mut at = 0u64;
        let mut next = 0;
        while at < n {
            let Some(front) = tickets.front_mut() else {
                break;
            };
            let take = front.1.min(n - at);
            let (from, to) = (at as usize, (at + take) as usize);
            while next < failed.len() && failed[next].end <= from {
                next += 1;
            }
            let f: u64 = failed[next..]
                .iter()
                .take_while(|r| r.start < to)
                .map(|r| r.end.min(to).saturating_sub(r.start.max(from)) as u64)
                .sum();
            front.1 -= take;
            front.2 += f;
            at += take;
            if front.1 == 0 {
                if let Some((ticket, _, failed)) = tickets.pop_front() {
                    ticket.settle(failed, &self.stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
