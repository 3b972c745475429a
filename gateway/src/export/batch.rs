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
    #[serde(
        default = "default_batch_timeout",
        with = "tailgate_core::config::duration"
    )]
    pub timeout: Duration,
}

/// Default of every exporter's `queue_bytes`: span bytes queued for (or being sent by) one
/// exporter before kept spans wait in the buffer (parked).
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

    /// Whether a batch gathered so far, `spans` spans of `bytes` bytes, is sent without
    /// waiting for more: the exporter's rule, which the simulator applies too.
    pub fn is_full(&self, spans: usize, bytes: usize) -> bool {
        spans >= self.max_spans || bytes >= self.max_bytes
    }

    /// Whether `more` spans of `more_bytes` bytes would take a batch gathered so far
    /// (`spans` spans of `bytes` bytes, at least one) past `max_spans` or `max_bytes`:
    /// then they start the next batch instead. Added anyway, the excess went out as a
    /// request of its own right after the full one (a 4,096-span request, then one of a
    /// few dozen spans), which halved what a backend answering one request at a time
    /// took (a black-box check: 4.1k spans/s where full requests make 8.2k).
    pub fn overflows(&self, spans: usize, bytes: usize, more: usize, more_bytes: usize) -> bool {
        spans > 0 && (spans + more > self.max_spans || bytes + more_bytes > self.max_bytes)
    }

    /// Most bytes of one request whose first span needs `first_headers` bytes of resource
    /// and scope headers: `max_bytes`, or the headers and a quarter of `max_bytes` of
    /// spans when that is more, so that spans under an oversized header (a resource
    /// attribute of megabytes) go many to a request and not one request per span with the
    /// header repeated each time. With the default 3 MiB, a request passes 4 MiB (a
    /// Collector's default message limit) only when its headers alone come near it.
    pub fn request_limit(&self, first_headers: usize) -> usize {
        self.max_bytes
            .max(first_headers.saturating_add(self.max_bytes / 4))
    }

    /// How long a batch stays open when kept spans reach the exporter steadily at
    /// `spans_per_second`, `bytes_per_span` each: until [`BatchConfig::is_full`] holds, at
    /// most `timeout`. A kept trace waits a share of this before it is sent; the simulator
    /// uses it for export delays.
    pub fn open_for(&self, spans_per_second: f64, bytes_per_span: f64) -> Duration {
        if spans_per_second <= 0.0 {
            return self.timeout;
        }
        let by_bytes = (self.max_bytes as f64 / bytes_per_span.max(1.0)).ceil();
        let spans = (self.max_spans as f64).min(by_bytes);
        Duration::from_secs_f64((spans / spans_per_second).min(self.timeout.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_headers_leave_a_quarter_of_max_bytes_for_spans() {
        let b = BatchConfig {
            max_bytes: 1000,
            ..BatchConfig::default()
        };
        assert_eq!(b.request_limit(0), 1000);
        assert_eq!(b.request_limit(750), 1000);
        assert_eq!(b.request_limit(751), 1001);
        assert_eq!(b.request_limit(6_000_000), 6_000_250);
        assert_eq!(b.request_limit(usize::MAX), usize::MAX);
        // The defaults stay under a Collector's 4 MiB until headers of 3.25 MiB.
        let d = BatchConfig::default();
        assert!(d.request_limit((13 << 20) / 4) <= 4 << 20);
    }

    /// The open time ends where `is_full` first holds, or at the timeout.
    #[test]
    fn a_batch_is_open_until_full_or_timed_out() {
        let b = BatchConfig {
            max_spans: 100,
            max_bytes: 10_000,
            timeout: Duration::from_millis(200),
        };
        // 1,000 spans/s of 50 B: full at 100 spans, after 100 ms.
        assert_eq!(b.open_for(1000.0, 50.0), Duration::from_millis(100));
        assert!(!b.is_full(99, 99 * 50) && b.is_full(100, 100 * 50));
        // 1,000 spans/s of 200 B: full at 10,000 B (50 spans), after 50 ms.
        assert_eq!(b.open_for(1000.0, 200.0), Duration::from_millis(50));
        assert!(!b.is_full(49, 49 * 200) && b.is_full(50, 50 * 200));
        // Slow traffic waits for the timeout.
        assert_eq!(b.open_for(10.0, 50.0), b.timeout);
        assert_eq!(b.open_for(0.0, 50.0), b.timeout);
    }
}
