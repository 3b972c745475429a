//! The Collector's `sending_queue` block, read where Tailgate accepts it and does not
//! apply it (the gateway's exporters, the router's `loadbalancing` exporter): checked as
//! the Collector checks it, so that a config the Collector refuses is refused here too.

use serde::de::Error;

/// A Collector exporter key accepted so that a copied block loads, and not applied: its
/// value, whatever it is, is read and dropped (and `--check` and the start warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

impl<'de> serde::Deserialize<'de> for NotApplied {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NotApplied)
    }
}

/// Reads a Collector `sending_queue` block as [`NotApplied`], refusing what the
/// Collector's `exporterhelper` queue refuses (`queuebatch.Config.Validate`, read from its
/// main of August 2026; values decoded as its decoder does: a float for an integer's whole
/// part, a list as one comma-separated string): a
/// key it does not have (`enabeld`, `queue_sise`), and, when the queue is enabled,
/// `num_consumers` or `queue_size` not positive, `wait_for_result` with `storage`, a
/// sizer other than `requests`, `items` or `bytes` (`items` or `bytes` for `batch`), a
/// `batch` with `flush_timeout` 0, sizes below 0 or `max_size` under `min_size`, a
/// batch that cannot fit the queue (`min_size` over `queue_size` in the same unit) and a
/// `metadata_keys` entry given twice. The block is not applied, but a config the
/// Collector would refuse is refused here too, with the Collector's message.
pub fn sending_queue<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<NotApplied>, D::Error> {
    use serde::Deserialize;
    use std::time::Duration;
    /// The Collector's sizers (`request.SizerType`).
    #[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Sizer {
        Requests,
        Items,
        Bytes,
    }
    fn yes() -> bool {
        true
    }
    /// The Collector's `sending_queue` keys (`configoptional`'s `enabled` and
    /// `queuebatch.Config`, v0.161), with its defaults (`NewDefaultQueueConfig`).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read to be checked only
    struct Queue {
        #[serde(default = "yes")]
        enabled: bool,
        #[serde(default)]
        wait_for_result: bool,
        #[serde(default)]
        sizer: Option<Sizer>,
        #[serde(default = "default_queue_size", with = "crate::config::go_int")]
        queue_size: i64,
        #[serde(default)]
        block_on_overflow: bool,
        #[serde(default)]
        storage: Option<String>,
        #[serde(default = "default_consumers", with = "crate::config::go_int")]
        num_consumers: i64,
        /// Left out: no batch; written, even empty or null: a batch (null takes the
        /// defaults without the queue's sizer, as the Collector's `Unmarshal` does).
        #[serde(default, deserialize_with = "written")]
        batch: Option<Option<Batch>>,
    }
    /// A key written, whatever its value (null too): `Some`.
    fn written<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
    fn default_queue_size() -> i64 {
        1_000
    }
    fn default_consumers() -> i64 {
        10
    }
    /// `sending_queue.batch` (a `configoptional.Optional` too: `enabled` is taken), with
    /// the Collector's defaults.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Batch {
        #[serde(default = "yes")]
        enabled: bool,
        #[serde(default = "default_flush_timeout", with = "crate::config::go_duration")]
        flush_timeout: Duration,
        #[serde(default)]
        sizer: Option<Sizer>,
        #[serde(default = "default_min_size", with = "crate::config::go_int")]
        min_size: i64,
        #[serde(default, with = "crate::config::go_int")]
        max_size: i64,
        #[serde(default)]
        partition: Option<Partition>,
    }
    fn default_flush_timeout() -> Duration {
        Duration::from_millis(200)
    }
    fn default_min_size() -> i64 {
        8192
    }
    /// `sending_queue.batch.partition`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Partition {
        #[serde(default, deserialize_with = "crate::config::comma_list")]
        metadata_keys: Vec<String>,
    }
    let Some(queue) = Option::<Queue>::deserialize(d)? else {
        return Ok(None);
    };
    check_queue(&queue).map_err(D::Error::custom)?;
    return Ok(Some(NotApplied));

    /// `queuebatch.Config.Validate` and `BatchConfig.Validate`, in their order.
    fn check_queue(q: &Queue) -> Result<(), String> {
        if !q.enabled {
            return Ok(());
        }
        if q.num_consumers <= 0 {
            return Err("sending_queue: `num_consumers` must be positive".into());
        }
        if q.queue_size <= 0 {
            return Err("sending_queue: `queue_size` must be positive".into());
        }
        if q.storage.is_some() && q.wait_for_result {
            return Err(
                "sending_queue: `wait_for_result` is not supported with a persistent \
                        queue configured with `storage`"
                    .into(),
            );
        }
        let default_batch = Batch {
            enabled: true,
            flush_timeout: default_flush_timeout(),
            sizer: None,
            min_size: default_min_size(),
            max_size: 0,
            partition: None,
        };
        let (batch, inherits) = match &q.batch {
            None => return Ok(()),
            Some(None) => (&default_batch, false),
            Some(Some(batch)) => (batch, true),
        };
        if !batch.enabled {
            return Ok(());
        }
        // A batch written without its own sizer takes the queue's, when the queue names
        // one (not a null batch: the Collector's `Unmarshal` sees nothing there).
        let queue_sizer = q.sizer.unwrap_or(Sizer::Requests);
        let batch_sizer = batch
            .sizer
            .or(q.sizer.filter(|_| inherits))
            .unwrap_or(Sizer::Items);
        if batch_sizer == queue_sizer && batch.min_size > q.queue_size {
            return Err(
                "sending_queue: `min_size` must be less than or equal to `queue_size`".into(),
            );
        }
        if batch_sizer == Sizer::Requests {
            return Err(
                "sending_queue.batch: `batch` supports only `items` or `bytes` \
                        sizer, found \"requests\""
                    .into(),
            );
        }
        if batch.flush_timeout.is_zero() {
            return Err("sending_queue.batch: `flush_timeout` must be positive, found 0".into());
        }
        if batch.min_size < 0 {
            let found = batch.min_size;
            return Err(format!(
                "sending_queue.batch: `min_size` must be non-negative, found {found}"
            ));
        }
        if batch.max_size < 0 {
            let found = batch.max_size;
            return Err(format!(
                "sending_queue.batch: `max_size` must be non-negative, found {found}"
            ));
        }
        if batch.max_size > 0 && batch.max_size < batch.min_size {
            let (max, min) = (batch.max_size, batch.min_size);
            return Err(format!(
                "sending_queue.batch: `max_size` ({max}) must be greater or equal to \
                 `min_size` ({min})"
            ));
        }
        let keys = batch
            .partition
            .as_ref()
            .map_or(&[][..], |p| &p.metadata_keys);
        let mut seen = std::collections::HashSet::new();
        for key in keys {
            if !seen.insert(key.to_lowercase()) {
                return Err(format!(
                    "sending_queue.batch.partition: duplicate entry in metadata_keys: \
                     {key:?} (case-insensitive)"
                ));
            }
        }
        Ok(())
    }
}

/// Checks a block of a Collector exporter that Tailgate reads and does not apply, as the
/// Collector checks it: `sending_queue` ([`sending_queue`]), `retry_on_failure` (its keys
/// and `Validate`, as [`crate::retry::RetryConfig`] reads them), `timeout` (a duration)
/// and `keepalive` (configgrpc's client block, as [`crate::forward::Keepalive`] reads it).
/// A typo there (`enabeld`) made the Collector fail at start and was taken
/// here. `at` is the exporter's path; other keys pass.
pub fn check_not_applied(
    at: &str,
    key: &str,
    value: &serde_yaml_ng::Value,
) -> Result<(), super::TranslateError> {
    struct Queue;
    impl<'de> serde::Deserialize<'de> for Queue {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            sending_queue(d).map(|_| Queue)
        }
    }
    let read = match key {
        "sending_queue" => super::read_section::<Queue>(value).map(|_| ()),
        "retry_on_failure" => {
            super::read_section::<Option<crate::retry::RetryConfig>>(value).map(|_| ())
        }
        "timeout" if !value.is_null() => {
            super::read_section::<super::GoDuration>(value).map(|_| ())
        }
        // configgrpc's client keepalive: Go's durations, no other keys.
        "keepalive" => super::read_section::<Option<crate::forward::Keepalive>>(value).map(|_| ()),
        _ => Ok(()),
    };
    read.map_err(|message| match crate::config::named_sub_key(&message) {
        // "sending_queue: `queue_size` must be positive": at that key's line.
        // A check may name the block otherwise (`retry` for `retry_on_failure`): the key
        // as written, so that the error is found at its line.
        Some((sub, tail)) => {
            let sub = match sub.split_once('.') {
                Some((first, rest)) if first != key => format!("{key}.{rest}"),
                _ => sub,
            };
            super::err(format!("{at}.{sub}"), crate::config::readable(tail))
        }
        None => super::section_error(&format!("{at}.{key}"), &message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: `sending_queue`, `retry_on_failure`, `timeout` and `keepalive` blocks the
    /// Collector refuses, and ones it takes. Guarantees: each refused names the key at fault below
    /// the exporter's path; the good ones and other keys pass.
    #[test]
    fn blocks_not_applied_are_checked_as_the_collector_checks_them() {
        let check = |key: &str, yaml: &str| {
            check_not_applied("exporters.x", key, &serde_yaml_ng::from_str(yaml).unwrap())
        };
        for (key, yaml, at) in [
            (
                "sending_queue",
                "{enabeld: true}",
                "exporters.x.sending_queue.enabeld",
            ),
            (
                "sending_queue",
                "{queue_size: 0}",
                "exporters.x.sending_queue.queue_size",
            ),
            (
                "sending_queue",
                "{queue_size: lots}",
                "exporters.x.sending_queue",
            ),
            (
                "retry_on_failure",
                "{enabeld: true}",
                "exporters.x.retry_on_failure.enabeld",
            ),
            (
                "retry_on_failure",
                "{initial_interval: soon}",
                "exporters.x.retry_on_failure",
            ),
            ("timeout", "5 parsecs", "exporters.x.timeout"),
            (
                "retry_on_failure",
                "{max_interval: 10s, max_elapsed_time: 5s}",
                "exporters.x.retry_on_failure.max_elapsed_time",
            ),
            ("keepalive", "{time: 10sec}", "exporters.x.keepalive"),
            ("keepalive", "{tiem: 10s}", "exporters.x.keepalive"),
        ] {
            let e = check(key, yaml).unwrap_err();
            assert!(e.key.starts_with(at), "{key}: {yaml}: {e}");
        }
        check(
            "sending_queue",
            "{enabled: true, queue_size: 5000, num_consumers: 4}",
        )
        .unwrap();
        check("sending_queue", "~").unwrap();
        check(
            "retry_on_failure",
            "{enabled: true, max_elapsed_time: 300s}",
        )
        .unwrap();
        check("retry_on_failure", "~").unwrap();
        check("timeout", "30s").unwrap();
        check(
            "keepalive",
            "{time: 10s, timeout: 5s, permit_without_stream: true}",
        )
        .unwrap();
        check("keepalive", "~").unwrap();
        check("balancer_name", "{anything: at all}").unwrap();
    }
}
