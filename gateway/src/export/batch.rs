//! `batch:` and `queue_bytes` of an exporter: how kept spans are gathered into requests and
//! how many bytes may wait for one exporter. Every exporter type's config embeds them.

use super::error::SettingError;
use std::time::Duration;

use serde::Deserialize;

/// `batch:` of an exporter: how kept spans are gathered into requests.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most spans in one request. Default 4096.
    #[serde(default = "default_max_batch_spans")]
    pub max_spans: usize,
    /// Most bytes in one request, spans and the resource and scope headers it repeats; keep
    /// it under the backend's message limit (4 MiB for a default Collector). Default 3 MiB.
    #[serde(default = "default_max_batch_bytes")]
    pub max_bytes: usize,
    /// Longest a kept trace waits for its batch to fill. Default 200ms.
    #[serde(default = "default_batch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Default of every exporter's `queue_bytes`: span bytes queued for (or being sent by) one
/// exporter before the shards wait.
pub fn default_queue_bytes() -> u64 {
    64 << 20
}

fn default_max_batch_spans() -> usize {
    4096
}
fn default_max_batch_bytes() -> usize {
    3 << 20
}
fn default_batch_timeout() -> Duration {
    Duration::from_millis(200)
}
impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_spans: default_max_batch_spans(),
            max_bytes: default_max_batch_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

impl BatchConfig {
    pub(crate) fn validate(&self, queue_bytes: u64) -> Result<(), SettingError> {
        if self.max_spans == 0 {
            return Err(SettingError::Zero {
                key: "batch.max_spans",
            });
        }
        if self.max_bytes == 0 {
            return Err(SettingError::Zero {
                key: "batch.max_bytes",
            });
        }
        if queue_bytes == 0 {
            return Err(SettingError::Zero { key: "queue_bytes" });
        }
        Ok(())
    }
}
