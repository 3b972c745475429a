//! `attributes:` in the gateway config: actions on the attributes of kept spans, after the
//! decision, in the OpenTelemetry Collector's `attributes` processor syntax where it fits
//! (`key` or `pattern`, and `action: delete | hash | mask | insert | update | upsert`).
//! `actions` act on a span's own attributes (as the Collector's `attributes` processor),
//! `events` on its events' attributes, `resource` on its resource's (as the Collector's
//! `resource` processor). Policies decide on the original values; only what leaves for the
//! backends (every exporter, the `debug` file included) is scrubbed, and dropped traces
//! cost nothing.
//!
//! Data comes from the shard's kept-span rewrite ([`tailgate_core::wire::span_fields`]),
//! which hands each encoded `KeyValue` to an [`ActionSet`] and writes what it returns; the
//! resource headers are rewritten with [`tailgate_core::wire::span_fields::write_resource_header`].

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tailgate_core::wire::attrs::read_varint;
use tailgate_core::wire::span_fields::{put_len_field as put_field, AttributeRewrite};

/// `attributes:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// Actions on the span's own attributes (the Collector's `attributes` processor),
    /// applied in order; the first one whose key or pattern matches an attribute acts on it.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
    /// Actions on the attributes of the span's events (same syntax; the Collector needs
    /// its `transform` processor for these).
    #[serde(default)]
    pub events: Vec<ActionConfig>,
    /// Actions on the attributes of the span's resource (the Collector's `resource`
    /// processor's `attributes:` list).
    #[serde(default)]
    pub resource: Vec<ActionConfig>,
}

/// One action as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute key it acts on.
    #[serde(default)]
    pub key: Option<String>,
    /// Or a regular expression over keys.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `delete`, `hash`, `mask`, `insert`, `update` or `upsert`.
    pub action: String,
    /// The value `insert`, `update` and `upsert` write: a string, an integer, a float or a
    /// boolean.
    #[serde(default)]
    pub value: Option<ActionValue>,
    /// For `mask`: a regular expression over the value (read as a string); each match is
    /// replaced by `****`. Without it the whole value is.
    #[serde(default)]
    pub value_pattern: Option<String>,
    /// The Collector's value from another attribute: refused (see `compile_list`).
    #[serde(default)]
    pub from_attribute: Option<serde_yaml_ng::Value>,
    /// The Collector's value from the request's metadata: refused.
    #[serde(default)]
    pub from_context: Option<serde_yaml_ng::Value>,
    /// The Collector's type for `convert` and `extract`: refused with them.
    #[serde(default)]
    pub converted_type: Option<serde_yaml_ng::Value>,
}

/// A value written by `insert`, `update` or `upsert`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ActionValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Double(f64),
    /// A string.
    String(String),
}

impl Eq for ActionValue {}

impl ActionValue {
    /// The encoded `AnyValue`.
    fn encode(&self) -> Vec<u8> {
        let mut any = Vec::new();
        match self {
            ActionValue::String(s) => put_field(&mut any, 1, s.as_bytes()),
            ActionValue::Bool(b) => any.extend_from_slice(&[2 << 3, u8::from(*b)]),
            ActionValue::Int(i) => {
                any.push(3 << 3);
                tailgate_core::wire::reframe::put_varint(&mut any, *i as u64);
            }
            ActionValue::Double(d) => {
                any.push((4 << 3) | 1);
                any.extend_from_slice(&d.to_le_bytes());
            }
        }
        any
    }
}

/// What replaces a masked value or a masked part of one.
pub const MASK: &str = "****";

/// What an action does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Remove the attribute.
    Delete,
    /// Replace its value with the lowercase hex SHA-256 of its value as a string.
    Hash,
    /// Replace its value (read as a string) with [`MASK`], or only the parts this pattern
    /// matches.
    Mask(Option<Regex>),
    /// Add the attribute (this encoded `AnyValue`) when the span has none with the key.
    Insert(Vec<u8>),
    /// Replace the value of the attribute when the span has it.
    Update(Vec<u8>),
    /// Both: replace it, or add it.
    Upsert(Vec<u8>),
}

impl PartialEq for Action {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Action::Delete, Action::Delete) | (Action::Hash, Action::Hash) => true,
            (Action::Mask(a), Action::Mask(b)) => {
                a.as_ref().map(Regex::as_str) == b.as_ref().map(Regex::as_str)
            }
            (Action::Insert(a), Action::Insert(b))
            | (Action::Update(a), Action::Update(b))
            | (Action::Upsert(a), Action::Upsert(b)) => a == b,
            _ => false,
        }
    }
}

#[derive(Debug)]
enum Matcher {
    Key(String),
    Pattern(Regex),
}

/// One list of compiled actions (span, event or resource attributes).
#[derive(Debug, Default)]
pub struct ActionSet {
    actions: Vec<(Matcher, Action)>,
    /// What `insert` and `upsert` add to messages without the key: (key, encoded KeyValue).
    additions: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The compiled `attributes:` block: one set per kind of attribute, `None` when empty.
#[derive(Debug, Default)]
pub struct AttributeActions {
    /// On the span's own attributes.
    pub span: Option<ActionSet>,
    /// On its events' attributes.
    pub events: Option<ActionSet>,
    /// On its resource's attributes.
    pub resource: Option<ActionSet>,
}

/// Why an `attributes:` block is refused. `list` is `actions`, `events` or `resource`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    /// Neither or both of `key` and `pattern`.
    #[error("attributes.{list}[{index}]: give one of key and pattern")]
    KeyOrPattern {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
    },
    /// A pattern (`pattern` or `value_pattern`) that is not a regular expression.
    #[error("attributes.{list}[{index}]: {key} {pattern:?}: {message}")]
    Pattern {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
        /// `pattern` or `value_pattern`.
        key: &'static str,
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// An action this gateway does not take.
    #[error("attributes.{list}[{index}]: action {action:?} is not supported; use delete, hash, mask, insert, update or upsert (extract and convert are not implemented)")]
    Action {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
        /// As written.
        action: String,
    },
    /// `insert`, `update` or `upsert` without a `value`, another action with one, or
    /// `value_pattern` on an action other than `mask`.
    #[error("attributes.{list}[{index}]: {action} {problem}")]
    Value {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
        /// The action.
        action: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// `insert` or `upsert` with a `pattern`: a new attribute needs a key.
    #[error("attributes.{list}[{index}]: insert and upsert need a key, not a pattern")]
    NeedsKey {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
    },
    /// A value source Tailgate's actions do not take (`from_attribute`, `from_context`).
    #[error("attributes.{list}[{index}]: {source_key} is not supported: {why}")]
    Source {
        /// Which list.
        list: &'static str,
        /// Which action.
        index: usize,
        /// The key as written.
        source_key: &'static str,
        /// Why, and what to do instead.
        why: &'static str,
    },
    /// More than 64 `insert`/`upsert` keys in one list.
    #[error("attributes.{0}: at most 64 insert and upsert keys")]
    TooManyAdditions(&'static str),
}

impl AttributesError {
    /// The key the error is about, from `attributes` down (`attributes.actions[0].action`),
    /// for the config error to name it and its line.
    pub fn key(&self) -> String {
        use AttributesError as E;
        let (list, index, leaf) = match self {
            E::TooManyAdditions(list) => return format!("attributes.{list}"),
            E::KeyOrPattern { list, index } => (list, index, None),
            E::Pattern {
                list, index, key, ..
            } => (list, index, Some(*key)),
            E::NeedsKey { list, index } => (list, index, Some("pattern")),
            E::Action { list, index, .. } => (list, index, Some("action")),
            E::Value {
                list,
                index,
                problem,
                ..
            } => {
                let key = if problem.contains("value_pattern") {
                    "value_pattern"
                } else {
                    "value"
                };
                (list, index, Some(key))
            }
            E::Source {
                list,
                index,
                source_key,
                ..
            } => (list, index, Some(*source_key)),
        };
        match leaf {
            Some(leaf) => format!("attributes.{list}[{index}].{leaf}"),
            None => format!("attributes.{list}[{index}]"),
        }
    }

    /// What is wrong, without the `attributes.…:` its message starts with.
    pub fn detail(&self) -> String {
        let text = self.to_string();
        match text.split_once(": ") {
            Some((_, detail)) => detail.to_owned(),
            None => text,
        }
    }
}

impl AttributesConfig {
    /// Whether no action is configured.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.events.is_empty() && self.resource.is_empty()
    }

    /// Compiles the actions; `None` when there are none.
    pub fn compile(&self) -> Result<Option<AttributeActions>, AttributesError> {
        let compiled = AttributeActions {
            span: compile_list("actions", &self.actions)?,
            events: compile_list("events", &self.events)?,
            resource: compile_list("resource", &self.resource)?,
        };
        let any =
            compiled.span.is_some() || compiled.events.is_some() || compiled.resource.is_some();
        Ok(any.then_some(compiled))
    }
}

/// Compiles one list of actions; `None` when it is empty.
fn compile_list(
    list: &'static str,
    written: &[ActionConfig],
) -> Result<Option<ActionSet>, AttributesError> {
    let mut set = ActionSet::default();
    for (index, a) in written.iter().enumerate() {
        let regex_of = |key: &'static str| {
            move |p: &String| {
                crate::go_regex::str_regex(p).map_err(|e| AttributesError::Pattern {
                    list,
                    index,
                    key,
                    pattern: p.to_owned(),
                    message: e.to_string(),
                })
            }
        };
        // The action first: the Collector's `extract` takes `key` and `pattern` together,
        // and was told to give one of them.
        if !matches!(
            a.action.as_str(),
            "delete" | "hash" | "mask" | "insert" | "update" | "upsert"
        ) {
            return Err(AttributesError::Action {
                list,
                index,
                action: a.action.clone(),
            });
        }
        let regex = regex_of("pattern");
        let matcher = match (&a.key, &a.pattern) {
            (Some(k), None) => Matcher::Key(k.clone()),
            (None, Some(p)) => Matcher::Pattern(regex(p)?),
            _ => return Err(AttributesError::KeyOrPattern { list, index }),
        };
        let problem = |problem| AttributesError::Value {
            list,
            index,
            action: a.action.clone(),
            problem,
        };
        let refused = |source_key, why| AttributesError::Source {
            list,
            index,
            source_key,
            why,
        };
        if a.from_attribute.is_some() {
            return Err(refused(
                "from_attribute",
                "insert, update and upsert write a fixed value here; copy or rename attributes \
                 before the gateway (in the SDK, or an agent's attributes processor)",
            ));
        }
        if a.from_context.is_some() {
            return Err(refused(
                "from_context",
                "kept spans are written from traces gathered from many requests, so no \
                 request's metadata reaches them",
            ));
        }
        if a.converted_type.is_some() && !matches!(a.action.as_str(), "convert" | "extract") {
            return Err(refused(
                "converted_type",
                "it goes with convert, which is not implemented",
            ));
        }
        if a.value_pattern.is_some() && a.action != "mask" {
            return Err(problem("takes no value_pattern (only mask does)"));
        }
        let value = |present: bool| -> Result<Vec<u8>, AttributesError> {
            match (&a.value, present) {
                (Some(v), true) => Ok(v.encode()),
                (None, false) => Ok(Vec::new()),
                (None, true) => Err(problem("needs a value")),
                (Some(_), false) => Err(problem("takes no value")),
            }
        };
        let action = match a.action.as_str() {
            "delete" => value(false).map(|_| Action::Delete)?,
            "hash" => value(false).map(|_| Action::Hash)?,
            "mask" => {
                value(false)?;
                Action::Mask(
                    a.value_pattern
                        .as_ref()
                        .map(regex_of("value_pattern"))
                        .transpose()?,
                )
            }
            "insert" => Action::Insert(value(true)?),
            "update" => Action::Update(value(true)?),
            "upsert" => Action::Upsert(value(true)?),
            other => {
                return Err(AttributesError::Action {
                    list,
                    index,
                    action: other.to_owned(),
                })
            }
        };
        if let Action::Insert(any) | Action::Upsert(any) = &action {
            let Matcher::Key(key) = &matcher else {
                return Err(AttributesError::NeedsKey { list, index });
            };
            // One addition per key: the first insert/upsert naming it.
            if !set.additions.iter().any(|(k, _)| k == key.as_bytes()) {
                set.additions
                    .push((key.as_bytes().to_vec(), key_value(key.as_bytes(), any)));
            }
        }
        set.actions.push((matcher, action));
    }
    if set.additions.len() > 64 {
        return Err(AttributesError::TooManyAdditions(list));
    }
    Ok((!set.actions.is_empty()).then_some(set))
}

impl ActionSet {
    /// The action for an attribute key, if any.
    pub fn action_for(&self, key: &str) -> Option<&Action> {
        self.actions.iter().find_map(|(m, a)| {
            let hit = match m {
                Matcher::Key(k) => k == key,
                Matcher::Pattern(r) => r.is_match(key),
            };
            hit.then_some(a)
        })
    }
}

impl AttributeRewrite for ActionSet {
    fn rewrite(&self, kv: &[u8]) -> Option<Vec<u8>> {
        let (key, value) = key_and_value(kv)?;
        match self.action_for(std::str::from_utf8(key).ok()?)? {
            Action::Delete => Some(Vec::new()),
            Action::Hash => {
                let digest = Sha256::digest(value_as_string(value));
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                Some(key_value(key, &string_value(hex.as_bytes())))
            }
            Action::Mask(None) => Some(key_value(key, &string_value(MASK.as_bytes()))),
            Action::Mask(Some(pattern)) => {
                let text = value_as_string(value);
                let text = String::from_utf8_lossy(&text);
                match pattern.replace_all(&text, MASK) {
                    std::borrow::Cow::Borrowed(_) => None,
                    std::borrow::Cow::Owned(masked) => {
                        Some(key_value(key, &string_value(masked.as_bytes())))
                    }
                }
            }
            Action::Update(any) | Action::Upsert(any) => Some(key_value(key, any)),
            Action::Insert(_) => None,
        }
    }

    fn additions(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.additions
    }
}

/// An encoded `AnyValue` holding a string.
fn string_value(s: &[u8]) -> Vec<u8> {
    let mut any = Vec::with_capacity(s.len() + 3);
    put_field(&mut any, 1, s);
    any
}

/// An encoded `KeyValue`.
fn key_value(key: &[u8], any: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + any.len() + 4);
    put_field(&mut out, 1, key);
    put_field(&mut out, 2, any);
    out
}

/// A `KeyValue`'s key and encoded `AnyValue` (empty when absent).
fn key_and_value(kv: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut key, mut value) = (None, &[][..]);
    let mut pos = 0;
    while let Some((field, wt, start, end)) =
        tailgate_core::wire::attrs::next_field_slice(kv, &mut pos)
    {
        match (field, wt) {
            (1, 2) => key = Some(&kv[start..end]),
            (2, 2) => value = &kv[start..end],
            _ => {}
        }
    }
    Some((key?, value))
}

/// An `AnyValue` as the Collector's hash reads it: a string as it is, an int in decimal, a
/// bool as `true`/`false`, a double in its shortest form, bytes raw; anything else (arrays,
/// maps) by its encoded bytes.
fn value_as_string(any: &[u8]) -> Vec<u8> {
    // The last of AnyValue's own fields wins, as every protobuf decoder reads a repeated
    // singular field: a value encoded twice must not hide the one the backend will read
    // from a mask. A field AnyValue does not have (a newer one, a group) is skipped, as
    // decoders skip it.
    let mut pos = 0;
    let mut last = None;
    while let Some(field) = tailgate_core::wire::attrs::next_field_slice(any, &mut pos) {
        if (1..=7).contains(&field.0) {
            last = Some(field);
        }
    }
    if let Some((field, wt, start, end)) = last {
        let raw = &any[start..end];
        return match (field, wt) {
            (1 | 7, 2) => raw.to_vec(),
            (2, 0) => (if read_varint(raw, 0).0 != 0 {
                "true"
            } else {
                "false"
            })
            .into(),
            (3, 0) => (read_varint(raw, 0).0 as i64).to_string().into_bytes(),
            (4, 1) if raw.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(raw);
                f64::from_le_bytes(b).to_string().into_bytes()
            }
            _ => any.to_vec(),
        };
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actions(yaml: &str) -> ActionSet {
        let c: AttributesConfig = serde_yaml_ng::from_str(yaml).unwrap_or_default();
        c.compile()
            .ok()
            .flatten()
            .and_then(|a| a.span)
            .unwrap_or_default()
    }

    #[test]
    fn actions_match_by_key_or_pattern_and_bad_ones_are_refused() {
        let a = actions("actions:\n  - {key: user.email, action: delete}\n  - {pattern: '^http\\.request\\.header\\.', action: delete}\n  - {key: user.id, action: hash}\n");
        assert_eq!(a.action_for("user.email"), Some(&Action::Delete));
        assert_eq!(
            a.action_for("http.request.header.authorization"),
            Some(&Action::Delete)
        );
        assert_eq!(a.action_for("user.id"), Some(&Action::Hash));
        assert_eq!(a.action_for("http.route"), None);
        let bad = |y: &str| {
            serde_yaml_ng::from_str::<AttributesConfig>(y)
                .map_err(|e| e.to_string())
                .and_then(|c| c.compile().map_err(|e| e.to_string()))
                .err()
                .unwrap_or_default()
        };
        assert!(bad("actions: [{key: a, action: extract}]").contains("not supported"));
        // As the Collector writes it, with its pattern: the action is named, not the pair.
        assert!(
            bad("actions: [{key: http.url, pattern: '^(?P<scheme>.*)://', action: extract}]")
                .contains("extract and convert are not implemented")
        );
        // The Collector's value sources are refused by name, saying why.
        let from =
            bad("actions: [{key: http.client_ip, from_attribute: client.address, action: insert}]");
        assert!(
            from.contains("actions[0]: from_attribute is not supported"),
            "{from}"
        );
        let from = bad("resource: [{key: tenant, from_context: x-tenant, action: upsert}]");
        assert!(
            from.contains("resource[0]: from_context is not supported"),
            "{from}"
        );
        let converted = bad("actions: [{key: a, action: convert, converted_type: int}]");
        assert!(
            converted.contains("extract and convert are not implemented"),
            "{converted}"
        );
        assert!(bad("actions: [{key: a, action: upsert}]").contains("needs a value"));
        assert!(bad("actions: [{key: a, action: delete, value: 1}]").contains("takes no value"));
        assert!(bad("actions: [{pattern: a, action: insert, value: 1}]").contains("need a key"));
        assert!(bad("actions: [{action: delete}]").contains("one of key and pattern"));
        assert!(bad("actions: [{pattern: '(', action: delete}]").contains("pattern"));
        // Each error names the key it is about, for the loader to find its line (a review
        // found value_pattern's errors named as pattern or value).
        let key = |y: &str| {
            serde_yaml_ng::from_str::<AttributesConfig>(y)
                .unwrap()
                .compile()
                .unwrap_err()
                .key()
        };
        assert_eq!(
            key("actions: [{key: a, action: mask, value_pattern: '[z-a]'}]"),
            "attributes.actions[0].value_pattern"
        );
        assert_eq!(
            key("actions: [{key: a, action: delete, value_pattern: 'x'}]"),
            "attributes.actions[0].value_pattern"
        );
        assert_eq!(
            key("events: [{pattern: '(', action: delete}]"),
            "attributes.events[0].pattern"
        );
        assert_eq!(
            key("actions: [{key: a, action: smash}]"),
            "attributes.actions[0].action"
        );
    }

    #[test]
    fn hash_is_sha256_of_the_value_as_a_string() {
        let a = actions("actions: [{key: user.id, action: hash}]");
        // KeyValue { key: "user.id", value: { string_value: "42" } }.
        let mut any = Vec::new();
        put_field(&mut any, 1, b"42");
        let mut kv = Vec::new();
        put_field(&mut kv, 1, b"user.id");
        put_field(&mut kv, 2, &any);
        let out = a.rewrite(&kv).unwrap_or_default();
        let (key, value) = key_and_value(&out).unwrap_or_default();
        assert_eq!(key, b"user.id");
        // sha256("42")
        assert_eq!(
            value_as_string(value),
            b"73475cb40a568e8da8a045ced110137e159f890ac4da883b6b17dc651b3a8049".to_vec()
        );
        // An int 42 hashes the same as the string "42".
        let mut any = vec![3 << 3, 42];
        let mut kv = Vec::new();
        put_field(&mut kv, 1, b"user.id");
        put_field(&mut kv, 2, &any);
        assert_eq!(a.rewrite(&kv).unwrap_or_default(), out);
        any.clear();
        assert!(a.rewrite(b"\x0a\x01x").is_none(), "other keys are kept");
        // A value encoded twice: decoders read the last; so do mask and hash.
        let m = actions("actions: [{key: card, action: mask, value_pattern: '\\d{4}'}]");
        let mut any = Vec::new();
        put_field(&mut any, 1, b"none here");
        put_field(&mut any, 1, b"4111 2222");
        let mut kv = Vec::new();
        put_field(&mut kv, 1, b"card");
        put_field(&mut kv, 2, &any);
        let out = m.rewrite(&kv).unwrap_or_default();
        let (_, value) = key_and_value(&out).unwrap_or_default();
        assert_eq!(value_as_string(value), b"**** ****".to_vec());
        // A field AnyValue does not have after the string (a varint field 15, a group of
        // field 15) is skipped, as decoders skip it: the string is what is read.
        for unknown in [&[0x78, 0x01][..], &[0x7b, 0x08, 0x01, 0x7c]] {
            let mut any = Vec::new();
            put_field(&mut any, 1, b"42");
            any.extend_from_slice(unknown);
            assert_eq!(value_as_string(&any), b"42".to_vec(), "{unknown:?}");
        }
    }

    /// Scenario: a delete and an upsert of the same key, two inserts of one key, and an
    /// insert of the adjusted-count attribute's key, on spans with and without the keys.
    /// Guarantees: no key is ever written twice; a key deleted by an earlier action is
    /// added by a later upsert (as the Collector's actions in turn give).
    #[test]
    fn additions_never_duplicate_a_key() {
        use opentelemetry_proto::tonic::trace::v1::Span;
        use prost::Message;
        use tailgate_core::wire::span_fields::{with_adjusted_count, AdjustedCount};
        let a = actions("actions:\n  - {key: k, action: delete}\n  - {key: k, action: upsert, value: x}\n  - {key: i, action: insert, value: 1}\n  - {key: i, action: insert, value: 2}\n  - {key: sampling.adjusted_count, action: insert, value: 9}\n");
        let how = AdjustedCount {
            tracestate: false,
            attribute: Some("sampling.adjusted_count"),
            rewrite: Some(&a),
            events: None,
        };
        for with_keys in [false, true] {
            let mut span = Span {
                name: "s".into(),
                ..Default::default()
            };
            if with_keys {
                span.attributes
                    .push(tailgate_core::test_util::kv("k", "old"));
                span.attributes
                    .push(tailgate_core::test_util::kv("i", "kept"));
            }
            let out = Span::decode(&with_adjusted_count(&span.encode_to_vec(), 0.5, &how)[..])
                .unwrap_or_default();
            let keys: Vec<&str> = out.attributes.iter().map(|kv| kv.key.as_str()).collect();
            for k in ["k", "i", "sampling.adjusted_count"] {
                assert_eq!(
                    keys.iter().filter(|x| **x == k).count(),
                    1,
                    "{with_keys}: {keys:?}"
                );
            }
            let value = |k: &str| {
                out.attributes
                    .iter()
                    .find(|kv| kv.key == k)
                    .and_then(|kv| kv.value.clone()?.value)
            };
            use opentelemetry_proto::tonic::common::v1::any_value::Value;
            assert_eq!(
                value("k"),
                Some(Value::StringValue("x".into())),
                "{with_keys}"
            );
            let i = if with_keys {
                Value::StringValue("kept".into())
            } else {
                Value::IntValue(1)
            };
            assert_eq!(value("i"), Some(i));
            assert_eq!(value("sampling.adjusted_count"), Some(Value::IntValue(2)));
        }
    }
}
