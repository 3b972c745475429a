//! DNS discovery with `hickory-resolver`: every `interval` (with ±10% jitter, so a fleet
//! of routers does not query in step) resolve the gateways' name (A and AAAA, or SRV and
//! then each target's addresses) with a `timeout`, using the system's resolver
//! configuration or an explicit list of name servers. A failed or empty answer keeps the
//! last good set and is counted; a changed set is handed to the consumer.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::ring::Member;
use crate::telemetry::Counter;

/// `members.dns` in the router and gateway configs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name to resolve, e.g. `tailgate-gateway.tailgate.svc.cluster.local` (a fully
    /// qualified name, ending in a dot or not). With `srv: true`, the SRV name, e.g.
    /// `_otlp-grpc._tcp.tailgate-gateway.tailgate.svc.cluster.local`.
    pub name: String,
    /// Port of the gateways' OTLP/gRPC receiver (ignored with `srv`). Default 4317.
    #[serde(default = "default_port")]
    pub port: u16,
    /// How often to resolve. Default 5s.
    #[serde(default = "default_interval", with = "crate::config::duration")]
    pub interval: Duration,
    /// Timeout of one lookup. Default 2s.
    #[serde(default = "default_timeout", with = "crate::config::duration")]
    pub timeout: Duration,
    /// Name servers (`ip:port`) to ask instead of the system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Resolve SRV records and use their targets and ports.
    #[serde(default)]
    pub srv: bool,
}

fn default_port() -> u16 {
    4317
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

impl DnsConfig {
    /// A config for `name` with defaults.
    pub fn new(name: impl Into<String>) -> Self {
        DnsConfig {
            name: name.into(),
            port: default_port(),
            interval: default_interval(),
            timeout: default_timeout(),
            nameservers: Vec::new(),
            srv: false,
        }
    }

    /// Checks what the schema cannot.
    pub fn validate(&self) -> Result<(), DnsConfigError> {
        let bad = |key, rule| Err(DnsConfigError { key, rule });
        if self.name.trim().is_empty() {
            return bad("name", "must not be empty");
        }
        if self.interval < Duration::from_millis(100) {
            return bad("interval", "must be at least 100ms");
        }
        if self.timeout.is_zero() {
            return bad("timeout", "must be greater than 0");
        }
        if self.port == 0 && !self.srv {
            return bad("port", "must not be 0 (unless srv: true)");
        }
        Ok(())
    }
}

/// A `dns:` setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key} {rule}")]
pub struct DnsConfigError {
    /// The key inside `dns:`.
    pub key: &'static str,
    /// What it must be.
    pub rule: &'static str,
}

/// Why a lookup gave no members.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The resolver could not be built (e.g. unreadable `/etc/resolv.conf`).
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
    /// The lookup failed or timed out.
    #[error("looking up {name} failed: {message}")]
    Lookup {
        /// The name.
        name: String,
        /// What the resolver said.
        message: String,
    },
    /// The answer had no addresses.
    #[error("{0} has no addresses")]
    Empty(String),
}

/// Discovery counters.
#[derive(Debug, Default)]
pub struct DiscoveryStats {
    /// Lookups made.
    pub lookups: Counter,
    /// Lookups that failed or were empty (the last good set was kept).
    pub failures: Counter,
    /// Times the member set changed.
    pub changes: Counter,
}

/// A DNS member source.
pub struct DnsDiscovery {
    resolver: TokioResolver,
    config: DnsConfig,
}

impl DnsDiscovery {
    /// Builds the resolver.
    pub fn new(config: DnsConfig) -> Result<Self, DiscoveryError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| DiscoveryError::Setup(e.to_string()))?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = 1;
        // Membership must follow the records, not a cache.
        opts.cache_size = 0;
        opts.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder
            .build()
            .map_err(|e| DiscoveryError::Setup(e.to_string()))?;
        Ok(DnsDiscovery { resolver, config })
    }

    /// One lookup: the current members.
    pub async fn resolve(&self) -> Result<Vec<Member>, DiscoveryError> {
        let name = self.config.name.as_str();
        let lookup_err = |e: &dyn std::fmt::Display| DiscoveryError::Lookup {
            name: name.to_owned(),
            message: e.to_string(),
        };
        let mut members = Vec::new();
        if self.config.srv {
            let srv = self
                .resolver
                .srv_lookup(name)
                .await
                .map_err(|e| lookup_err(&e))?;
            for record in srv.answers() {
                if let RData::SRV(s) = &record.data {
                    let target = s.target.to_utf8();
                    let ips = self
                        .resolver
                        .lookup_ip(target.as_str())
                        .await
                        .map_err(|e| lookup_err(&e))?;
                    members.extend(ips.iter().map(|ip| member(ip, s.port)));
                }
            }
        } else {
            let ips = self
                .resolver
                .lookup_ip(name)
                .await
                .map_err(|e| lookup_err(&e))?;
            members.extend(ips.iter().map(|ip| member(ip, self.config.port)));
        }
        if members.is_empty() {
            return Err(DiscoveryError::Empty(name.to_owned()));
        }
        Ok(crate::ring::normalise(members))
    }

    /// Resolves every interval until `shutdown`; calls `on_change` with each new set (the
    /// first successful lookup included). Failures keep the last set.
    pub async fn run(
        self,
        stats: Arc<DiscoveryStats>,
        on_change: impl Fn(Vec<Member>) + Send,
        shutdown: CancellationToken,
    ) {
        let mut last: Option<Vec<Member>> = None;
        loop {
            stats.lookups.add(1);
            match self.resolve().await {
                Ok(set) if last.as_ref() != Some(&set) => {
                    tracing::info!(name = %self.config.name, members = set.len(), "Gateway set changed.");
                    stats.changes.add(1);
                    last = Some(set.clone());
                    on_change(set);
                }
                Ok(_) => {}
                Err(error) => {
                    stats.failures.add(1);
                    tracing::warn!(%error, "DNS discovery failed; keeping the last gateway set.");
                }
            }
            let wait = self.config.interval.mul_f64(0.9 + fastrand::f64() * 0.2);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}

fn member(ip: IpAddr, port: u16) -> Member {
    Member::new(SocketAddr::new(ip, port).to_string())
}
