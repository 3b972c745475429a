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
