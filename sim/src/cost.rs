//! The cost model: what a span, a trace and a decision cost in CPU and memory, read from
//! `sim/cost-model.yaml` (compiled in as the default; `--cost-model FILE` reads another).
//! Each constant in that file names the command that measured it; `tailgate-sim calibrate`
//! ([`crate::calibrate`]) measures them again and rewrites the file.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The model as the file holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostModel {
    /// Gateway CPU seconds per span, beyond the per-trace part.
    pub gateway_cpu_per_span_s: f64,
    /// Gateway CPU seconds per trace.
    pub gateway_cpu_per_trace_s: f64,
    /// Gateway CPU seconds per policy evaluated per decision.
    pub decide_cpu_per_policy_s: f64,
    /// Router CPU seconds per span.
    pub router_cpu_per_span_s: f64,
    /// Gateway CPU seconds per span forwarded or handed to a peer.
    pub router_hop_cpu_per_span_s: f64,
    /// Encoded bytes per span.
    pub encoded_bytes_per_span: f64,
    /// Gateway RSS above its base per buffered span.
    pub rss_bytes_per_buffered_span: f64,
    /// Gateway RSS at start.
    pub gateway_base_rss_bytes: f64,
    /// Router RSS under load.
    pub router_rss_bytes: f64,
}

/// The file compiled in: this machine's figures.
pub const DEFAULT_COST_MODEL: &str = include_str!("../cost-model.yaml");

/// Why a cost model cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a cost model.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with the line.
        message: String,
    },
    /// A constant that is not a positive number.
    #[error("{path}: {key} must be a positive number, not {value}")]
    Value {
        /// The file.
        path: String,
        /// The key.
        key: &'static str,
        /// As written.
        value: f64,
    },
}

impl Default for CostModel {
    fn default() -> Self {
        // The compiled-in file is parsed by a test; a broken one fails the build's tests.
        Self::parse("cost-model.yaml", DEFAULT_COST_MODEL).unwrap_or(CostModel {
            gateway_cpu_per_span_s: 0.65e-6,
            gateway_cpu_per_trace_s: 2e-6,
            decide_cpu_per_policy_s: 0.08e-6,
            router_cpu_per_span_s: 0.432e-6,
            router_hop_cpu_per_span_s: 0.432e-6,
            encoded_bytes_per_span: 430.0,
            rss_bytes_per_buffered_span: 486.0,
            gateway_base_rss_bytes: 21_954_560.0,
            router_rss_bytes: 24.0 * 1048576.0,
        })
    }
}

impl CostModel {
    /// Reads a cost model file.
    pub fn load(path: &Path) -> Result<Self, CostError> {
        let text = tailgate_core::config::read_text(path).map_err(|source| CostError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&path.display().to_string(), &text)
    }

    /// Parses a cost model from `text` (named `path` in errors).
    pub fn parse(path: &str, text: &str) -> Result<Self, CostError> {
        let model: CostModel = serde_yaml_ng::from_str(text).map_err(|e| CostError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        for (key, value) in model.fields() {
            if !(value.is_finite() && value > 0.0) {
                return Err(CostError::Value {
                    path: path.to_owned(),
                    key,
                    value,
                });
            }
        }
        Ok(model)
    }

    /// Every constant by key.
    pub fn fields(&self) -> [(&'static str, f64); 9] {
        [
            ("gateway_cpu_per_span_s", self.gateway_cpu_per_span_s),
            ("gateway_cpu_per_trace_s", self.gateway_cpu_per_trace_s),
            ("decide_cpu_per_policy_s", self.decide_cpu_per_policy_s),
            ("router_cpu_per_span_s", self.router_cpu_per_span_s),
            ("router_hop_cpu_per_span_s", self.router_hop_cpu_per_span_s),
            ("encoded_bytes_per_span", self.encoded_bytes_per_span),
            (
                "rss_bytes_per_buffered_span",
                self.rss_bytes_per_buffered_span,
            ),
            ("gateway_base_rss_bytes", self.gateway_base_rss_bytes),
            ("router_rss_bytes", self.router_rss_bytes),
        ]
    }

    /// `text` (a cost model file) with each `key: value` line of `updates` replaced, every
    /// comment (the commands) kept.
    pub fn rewrite(text: &str, updates: &[(&str, f64)]) -> String {
        let mut out = String::with_capacity(text.len());
        for line in text.lines() {
            let replaced = updates.iter().find_map(|(key, value)| {
                line.strip_prefix(key)
                    .filter(|rest| rest.starts_with(':'))
                    .map(|_| format!("{key}: {value}"))
            });
            out.push_str(replaced.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_model_parses_and_rewrites_keep_comments() {
        let m = CostModel::parse("cost-model.yaml", DEFAULT_COST_MODEL);
        assert!(m.is_ok(), "{m:?}");
        let text = CostModel::rewrite(DEFAULT_COST_MODEL, &[("router_cpu_per_span_s", 5e-7)]);
        let again = CostModel::parse("x", &text).unwrap_or_default();
        assert_eq!(again.router_cpu_per_span_s, 5e-7);
        assert_eq!(text.lines().count(), DEFAULT_COST_MODEL.lines().count());
        assert!(matches!(
            CostModel::parse(
                "x",
                &DEFAULT_COST_MODEL
                    .replace("encoded_bytes_per_span: 430", "encoded_bytes_per_span: -1")
            ),
            Err(CostError::Value {
                key: "encoded_bytes_per_span",
                ..
            })
        ));
    }
}
