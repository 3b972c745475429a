//! How exporter blocks copied from a Collector config are read: keys accepted and not
//! applied ([`NotApplied`]), and `headers` in both of the Collector's forms. A leaf of
//! `export/`, read by each exporter's settings.

use std::collections::BTreeMap;

use serde::de::{Error, MapAccess, SeqAccess, Visitor};

/// A Collector exporter key accepted so that a copied block loads, and not applied: its
/// value, whatever it is, is read and dropped (and `--check` and the start warn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotApplied;

impl<'de> serde::Deserialize<'de> for NotApplied {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| NotApplied)
    }
}

/// Reads a Collector `sending_queue` block as [`NotApplied`], refusing a key the
/// Collector's `exporterhelper` queue does not have (`enabeld`, `queue_sise`), as the
/// Collector refuses it: the block is not applied, but a typo in it is still a typo.
/// The values are not checked (`num_consumers: 0`, which the Collector refuses, loads).
pub(crate) fn sending_queue<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<NotApplied>, D::Error> {
    use serde::de::IgnoredAny;
    use serde::Deserialize;
    /// The Collector's `sending_queue` keys (`configoptional`'s `enabled` and
    /// `queuebatch.Config`, v0.161).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read for its keys only
    struct Queue {
        #[serde(default)]
        enabled: Option<IgnoredAny>,
        #[serde(default)]
        wait_for_result: Option<IgnoredAny>,
        #[serde(default)]
        sizer: Option<IgnoredAny>,
        #[serde(default)]
        queue_size: Option<IgnoredAny>,
        #[serde(default)]
        block_on_overflow: Option<IgnoredAny>,
        #[serde(default)]
        storage: Option<IgnoredAny>,
        #[serde(default)]
        num_consumers: Option<IgnoredAny>,
        #[serde(default)]
        batch: Option<Option<Batch>>,
    }
    /// `sending_queue.batch` (a `configoptional.Optional` too: `enabled` is taken).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read for its keys only
    struct Batch {
        #[serde(default)]
        enabled: Option<IgnoredAny>,
        #[serde(default)]
        flush_timeout: Option<IgnoredAny>,
        #[serde(default)]
        sizer: Option<IgnoredAny>,
        #[serde(default)]
        min_size: Option<IgnoredAny>,
        #[serde(default)]
        max_size: Option<IgnoredAny>,
        #[serde(default)]
        partition: Option<Option<Partition>>,
    }
    /// `sending_queue.batch.partition`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read for its keys only
    struct Partition {
        #[serde(default)]
        metadata_keys: Option<IgnoredAny>,
    }
    Ok(Option::<Queue>::deserialize(d)?.map(|_| NotApplied))
}

/// The keys among `written` that are set, in order: what a block's warning names.
pub fn set_keys<const N: usize>(
    written: [(&'static str, &Option<NotApplied>); N],
) -> Vec<&'static str> {
    written
        .into_iter()
        .filter_map(|(key, v)| v.is_some().then_some(key))
        .collect()
}

/// Reads an exporter's `headers` as the Collector writes them: a map (`{x-key: v}`), or
/// a list of `{name, value}` (`configopaque.MapList`, the Collector's newer form). Values
/// are read as strings, so a scalar keeps its text as written (`234`, `1.10`, `0x1F`,
/// an empty `${env:…}`), as before; a name given twice in a list is refused.
pub(crate) fn deserialize_headers<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Pair {
        name: String,
        #[serde(default)]
        value: String,
    }

    struct Headers;
    impl<'de> Visitor<'de> for Headers {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of header names to values, or a list of {name, value}")
        }
        fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(Pair { name, value }) = seq.next_element::<Pair>()? {
                if out.insert(name.clone(), value).is_some() {
                    return Err(A::Error::custom(format!("header {name:?} is given twice")));
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(Headers)
}
