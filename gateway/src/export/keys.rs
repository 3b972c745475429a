//! How exporter blocks copied from a Collector config are read: keys accepted and not
//! applied ([`NotApplied`], `sending_queue`, shared with the router in
//! `tailgate_core::collector::queue`), and `headers` in both of the Collector's forms. A
//! leaf of `export/`, read by each exporter's settings.

use std::collections::BTreeMap;

use serde::de::{Error, MapAccess, SeqAccess, Visitor};

pub use tailgate_core::collector::queue::{sending_queue, NotApplied};

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
