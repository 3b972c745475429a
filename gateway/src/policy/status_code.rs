//! `status_code`: keeps traces with at least one span whose status is in `status_codes`
//! (`OK`, `ERROR`, `UNSET`), as the Collector does.

use serde::Deserialize;
use tailgate_core::wire::scan::status;

use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// YAML block `status_code:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCodeConfig {
    /// Status codes that keep a trace.
    #[serde(deserialize_with = "tailgate_core::config::comma_list")]
    pub status_codes: Vec<String>,
}

impl StatusCodeConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.status_codes.is_empty() {
            return Err(SettingError::conflict(
                "status_codes",
                "expected at least one status code to filter on",
            ));
        }
        for (i, c) in self.status_codes.iter().enumerate() {
            if code_bit(c).is_none() {
                return Err(SettingError::range(
                    format!("status_codes[{i}]"),
                    "one of OK, ERROR, UNSET",
                    format!("{c:?}"),
                ));
            }
        }
        Ok(())
    }
}

impl Kind for StatusCodeConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(StatusCodePolicy::new(c))
    }
}

fn code_bit(name: &str) -> Option<u8> {
    match name {
        "UNSET" => Some(1 << status::UNSET),
        "OK" => Some(1 << status::OK),
        "ERROR" => Some(1 << status::ERROR),
        _ => None,
    }
}

/// Compiled `status_code` policy: a bit mask over the codes.
#[derive(Debug, Clone)]
pub struct StatusCodePolicy {
    mask: u8,
    names: Vec<String>,
}

impl StatusCodePolicy {
    /// Compiles a validated config.
    pub fn new(c: &StatusCodeConfig) -> Self {
        let mask = c
            .status_codes
            .iter()
            .filter_map(|s| code_bit(s))
            .fold(0, |a, b| a | b);
        StatusCodePolicy {
            mask,
            names: c.status_codes.clone(),
        }
    }
}

impl Policy for StatusCodePolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        if trace.summary.status_mask & self.mask != 0 {
            Verdict::Sampled
        } else {
            Verdict::NotSampled
        }
    }

    fn describe(&self) -> String {
        format!(
            "keep traces with a span whose status is {}",
            self.names.join(" or ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::trace::TraceSummary;

    #[test]
    fn any_span_with_a_listed_code_keeps_the_trace() {
        let p = StatusCodePolicy::new(&StatusCodeConfig {
            status_codes: vec!["ERROR".into()],
        });
        let mut s = TraceSummary::default();
        s.add_span(1, 2, status::OK, true);
        let view = |s: &TraceSummary| {
            p.evaluate(&TraceView {
                trace_id: &[1; 16],
                summary: s,
                spans: crate::buffer::Spans::EMPTY,
                now: tokio::time::Instant::now(),
            })
        };
        assert_eq!(view(&s), Verdict::NotSampled);
        s.add_span(1, 2, status::ERROR, false);
        assert_eq!(view(&s), Verdict::Sampled);
    }
}
