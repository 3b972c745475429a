//! The router's YAML configuration. Every key has a default except the member list.
//!
//! ```yaml
//! receive:
//!   grpc: 0.0.0.0:4317        # OTLP/gRPC listen address (null disables)
//!   http: 0.0.0.0:4318        # OTLP/HTTP listen address (null disables)
//!   max_request_bytes: 16777216
//! members:
//!   static: [10.0.0.1:4317, 10.0.0.2:4317]   # the gateways' OTLP/gRPC addresses
//! forward:
//!   timeout: 5s
//!   retry: { initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 5s }
//! admin: 0.0.0.0:13133        # /metrics, /healthz, /readyz (null disables)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tailgate_core::config::{load_yaml, ConfigError};
use tailgate_core::forward::RetryConfig;
use tailgate_core::receive::ReceiveConfig;

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
    /// Admin HTTP address for `/metrics`, `/healthz` and `/readyz`. Default `0.0.0.0:13133`.
    #[serde(default = "default_admin")]
    pub admin: Option<SocketAddr>,
}

/// The gateway member set.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MembersConfig {
    /// A fixed list of gateway OTLP/gRPC addresses (`host:port`).
    #[serde(rename = "static")]
    pub static_list: Vec<String>,
}

/// Forwarding to gateways.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ForwardConfig {
    /// Timeout of one attempt. Default 5s.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries; keep `max_elapsed_time` below your agents' export timeout, or an agent may
    /// retry a request the router is still delivering. Default 5s.
    #[serde(default = "default_retry")]
    pub retry: RetryConfig,
}

fn default_admin() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 13133)))
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_retry() -> RetryConfig {
    RetryConfig {
        initial_interval: Duration::from_millis(100),
        max_interval: Duration::from_secs(1),
        max_elapsed_time: Duration::from_secs(5),
    }
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            timeout: default_timeout(),
            retry: default_retry(),
        }
    }
}

// === impl RouterConfig ===

impl RouterConfig {
    /// Loads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: RouterConfig = load_yaml(path)?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what the schema cannot.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if self.members.static_list.is_empty() {
            return Err(invalid(
                "members.static".into(),
                "list at least one gateway address (host:port)".into(),
            ));
        }
        for (i, m) in self.members.static_list.iter().enumerate() {
            let ok = m.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if !ok {
                return Err(invalid(
                    format!("members.static[{i}]"),
                    format!("{m:?} is not host:port"),
                ));
            }
        }
        if self.receive.grpc.is_none() && self.receive.http.is_none() {
            return Err(invalid(
                "receive".into(),
                "enable at least one of grpc and http".into(),
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

    #[test]
    fn minimal_config_takes_defaults() {
        let c = parse("members:\n  static: [127.0.0.2:4317]\n").unwrap();
        assert_eq!(c.receive, ReceiveConfig::default());
        assert_eq!(c.forward, ForwardConfig::default());
    }

    #[test]
    fn errors_name_file_key_and_line() {
        let err = parse("members:\n  static: [a:1]\nforwrd: {}\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("router.yaml:"), "{err}");
        assert!(err.contains("forwrd") && err.contains("line 3"), "{err}");
        let err = parse("members:\n  static: [a:1, nope]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("members.static[1]"), "{err}");
    }
}
