//! YAML configuration loading shared by the binaries. Errors name the file, and the YAML
//! parser's message names the key path and line (`policies[2]: missing field
//! `threshold_ms` at line 7 column 5`), so a user can go straight to the mistake.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema.
    #[error("{}: {error}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error, with key path and line.
        error: serde_yaml_ng::Error,
    },
    /// A value is not usable, at a known line.
    #[error("{}:{line}: {key}: {message}", path.display())]
    InvalidAt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The key path, as in `policies[2]`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The values parse but are not usable together.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key path, as in `members.static[1]`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and deserializes a YAML file.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    parse_yaml(path, &text)
}

/// Deserializes YAML text; `path` is only used in errors. An empty document is read as an
/// empty mapping, so that every key takes its default.
pub fn parse_yaml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    serde_yaml_ng::from_str(text).map_err(|error| ConfigError::Parse {
        path: path.to_owned(),
        error,
    })
}

/// The 1-based line of item `index` of the block sequence under the first `key:` line of a
/// YAML text, for errors about values that parsed but are invalid. `None` for flow-style
/// sequences (`key: [a, b]`) or when the text is not laid out as expected.
pub fn locate_sequence_item(text: &str, key: &str, index: usize) -> Option<usize> {
    let mut lines = text.lines().enumerate();
    let key_indent = lines.by_ref().find_map(|(_, l)| {
        let t = l.trim_start();
        let rest = t.strip_prefix(key)?.strip_prefix(':')?;
        (rest.trim().is_empty() || rest.trim_start().starts_with('#')).then(|| l.len() - t.len())
    })?;
    let mut item_indent = None;
    let mut seen = 0;
    for (n, l) in lines {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let indent = l.len() - t.len();
        if indent < key_indent || (indent == key_indent && !t.starts_with('-')) {
            return None;
        }
        if t.starts_with("- ") || t == "-" {
            match item_indent {
                None => item_indent = Some(indent),
                Some(i) if i != indent => continue,
                Some(_) => {}
            }
            if seen == index {
                return Some(n + 1);
            }
            seen += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_items_are_located_by_line() {
        let text = "a: 1\npolicies:\n  # comment\n  - name: x\n    type: y\n  - name: z\n    sub:\n      - q\n  - {name: w}\nother: 2\n";
        assert_eq!(locate_sequence_item(text, "policies", 0), Some(4));
        assert_eq!(locate_sequence_item(text, "policies", 1), Some(6));
        assert_eq!(locate_sequence_item(text, "policies", 2), Some(9));
        assert_eq!(locate_sequence_item(text, "policies", 3), None);
        assert_eq!(
            locate_sequence_item("policies: [a, b]\n", "policies", 0),
            None
        );
    }
}
