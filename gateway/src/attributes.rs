//! `attributes:` in the gateway config: actions on the attributes of kept spans, after the
//! decision, in the OpenTelemetry Collector's `attributes` processor syntax where it fits
//! (`key` or `pattern`, and `action: delete | hash | insert | update | upsert`). Policies decide on the original
//! values; only what leaves for the backends (every exporter, the `debug` file included)
//! is scrubbed, and dropped traces cost nothing. As the Collector's processor, it acts on
//! the span's own attributes, not on resource or event attributes.
//!
//! Data comes from the shard's kept-span rewrite ([`tailgate_core::wire::span_fields`]),
//! which hands each encoded `KeyValue` to [`AttributeActions`] and writes what it returns.

use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tailgate_core::wire::attrs::read_varint;
use tailgate_core::wire::span_fields::{put_len_field as put_field, AttributeRewrite};

/// `attributes:` as written.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AttributesConfig {
    /// The actions, applied in order; the first one whose key or pattern matches an
    /// attribute acts on it.
    #[serde(default)]
    pub actions: Vec<ActionConfig>,
}

/// One action as written.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    /// The attribute key it acts on.
    #[serde(default)]
    pub key: Option<String>,
    /// Or a regular expression over keys.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `delete`, `hash`, `insert`, `update` or `upsert`.
    pub action: String,
    /// The value `insert`, `update` and `upsert` write: a string, an integer, a float or a
    /// boolean.
    #[serde(default)]
    pub value: Option<ActionValue>,
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

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Remove the attribute.
    Delete,
    /// Replace its value with the lowercase hex SHA-256 of its value as a string.
    Hash,
    /// Add the attribute (this encoded `AnyValue`) when the span has none with the key.
    Insert(Vec<u8>),
    /// Replace the value of the attribute when the span has it.
    Update(Vec<u8>),
    /// Both: replace it, or add it.
    Upsert(Vec<u8>),
}

#[derive(Debug)]
enum Matcher {
    Key(String),
    Pattern(Regex),
}

/// The compiled actions.
#[derive(Debug)]
pub struct AttributeActions {
    actions: Vec<(Matcher, Action)>,
    /// What `insert` and `upsert` add to spans without the key: (key, encoded KeyValue).
    additions: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why an `attributes:` block is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    /// Neither or both of `key` and `pattern`.
    #[error("attributes.actions[{0}]: give one of key and pattern")]
    KeyOrPattern(usize),
    /// A pattern that is not a regular expression.
    #[error("attributes.actions[{index}]: pattern {pattern:?}: {message}")]
    Pattern {
        /// Which action.
        index: usize,
        /// The pattern.
        pattern: String,
        /// Why.
        message: String,
    },
    /// An action this gateway does not take.
    #[error("attributes.actions[{index}]: action {action:?} is not supported; use delete, hash, insert, update or upsert (extract and convert are not implemented)")]
    Action {
        /// Which action.
        index: usize,
        /// As written.
        action: String,
    },
    /// `insert`, `update` or `upsert` without a `value`, or `delete`/`hash` with one.
    #[error("attributes.actions[{index}]: {action} {problem}")]
    Value {
        /// Which action.
        index: usize,
        /// The action.
        action: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// `insert` or `upsert` with a `pattern`: a new attribute needs a key.
    #[error("attributes.actions[{0}]: insert and upsert need a key, not a pattern")]
    NeedsKey(usize),
    /// More than 64 `insert`/`upsert` actions.
    #[error("attributes: at most 64 insert and upsert actions")]
    TooManyAdditions,
}

impl AttributesConfig {
    /// Compiles the actions; `None` when there are none.
    pub fn compile(&self) -> Result<Option<AttributeActions>, AttributesError> {
        let mut actions = Vec::with_capacity(self.actions.len());
        let mut additions = Vec::new();
        for (index, a) in self.actions.iter().enumerate() {
            let matcher = match (&a.key, &a.pattern) {
                (Some(k), None) => Matcher::Key(k.clone()),
                (None, Some(p)) => {
                    Matcher::Pattern(Regex::new(p).map_err(|e| AttributesError::Pattern {
                        index,
                        pattern: p.clone(),
                        message: e.to_string(),
                    })?)
                }
                _ => return Err(AttributesError::KeyOrPattern(index)),
            };
            let value = |present: bool| -> Result<Vec<u8>, AttributesError> {
                let problem = match (&a.value, present) {
                    (Some(v), true) => return Ok(v.encode()),
                    (None, false) => return Ok(Vec::new()),
                    (None, true) => "needs a value",
                    (Some(_), false) => "takes no value",
                };
                Err(AttributesError::Value {
                    index,
                    action: a.action.clone(),
                    problem,
                })
            };
            let action = match a.action.as_str() {
                "delete" => value(false).map(|_| Action::Delete)?,
                "hash" => value(false).map(|_| Action::Hash)?,
                "insert" => Action::Insert(value(true)?),
                "update" => Action::Update(value(true)?),
                "upsert" => Action::Upsert(value(true)?),
                other => {
                    return Err(AttributesError::Action {
                        index,
                        action: other.to_owned(),
                    })
                }
            };
            if let (Action::Insert(any) | Action::Upsert(any), matcher) = (&action, &matcher) {
                let Matcher::Key(key) = matcher else {
                    return Err(AttributesError::NeedsKey(index));
                };
                // One addition per key: the first insert/upsert naming it.
                if !additions.iter().any(|(k, _)| k == key.as_bytes()) {
                    additions.push((key.as_bytes().to_vec(), key_value(key.as_bytes(), any)));
                }
            }
            actions.push((matcher, action));
        }
        if additions.len() > 64 {
            return Err(AttributesError::TooManyAdditions);
        }
        Ok((!actions.is_empty()).then_some(AttributeActions { actions, additions }))
    }
}

impl AttributeActions {
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

impl AttributeRewrite for AttributeActions {
    fn rewrite(&self, kv: &[u8]) -> Option<Vec<u8>> {
        let (key, value) = key_and_value(kv)?;
        match self.action_for(std::str::from_utf8(key).ok()?)? {
            Action::Delete => Some(Vec::new()),
            Action::Hash => {
                let digest = Sha256::digest(value_as_string(value));
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                let mut any = Vec::with_capacity(hex.len() + 2);
                put_field(&mut any, 1, hex.as_bytes());
                Some(key_value(key, &any))
            }
            Action::Update(any) | Action::Upsert(any) => Some(key_value(key, any)),
            Action::Insert(_) => None,
        }
    }

    fn additions(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.additions
    }
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
    let mut pos = 0;
    if let Some((field, wt, start, end)) =
        tailgate_core::wire::attrs::next_field_slice(any, &mut pos)
    {
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

    fn actions(yaml: &str) -> AttributeActions {
        let c: AttributesConfig = serde_yaml_ng::from_str(yaml).unwrap_or_default();
        c.compile().ok().flatten().unwrap_or(AttributeActions {
            actions: vec![],
            additions: vec![],
        })
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
        assert!(bad("actions: [{key: a, action: upsert}]").contains("needs a value"));
        assert!(bad("actions: [{key: a, action: delete, value: 1}]").contains("takes no value"));
        assert!(bad("actions: [{pattern: a, action: insert, value: 1}]").contains("need a key"));
        assert!(bad("actions: [{action: delete}]").contains("one of key and pattern"));
        assert!(bad("actions: [{pattern: '(', action: delete}]").contains("pattern"));
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
