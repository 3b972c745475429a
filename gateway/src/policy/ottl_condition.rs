//! `ottl_condition`: keeps traces where some span matches one of the `span` conditions or
//! some span event matches one of the `spanevent` conditions, as the Collector's policy of
//! that name (processor/tailsamplingprocessor/internal/sampling/ottl.go).
//!
//! Conditions are evaluated at decision time over the buffered spans' bytes (see
//! [`super::ottl`]); evaluation stops at the first match. A condition that fails on a span
//! (a type error) is handled by `error_mode`: `propagate` (the default) ends evaluation with
//! the "error" verdict, which neither samples nor drops (the plan skips the policy, `not`
//! and the combinators pass it on, as the Collector); `ignore` and `silent` count that
//! condition as false for that span and go on.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;

use super::ottl::eval::{events, SpanInput};
use super::ottl::{Condition, Context, OttlError};
use super::verdict::{Policy, Verdict};
use super::kind::{At, Keys, Kind, PolicyError, SettingError};
use crate::buffer::trace::TraceView;

/// `error_mode`, as the Collector's OTTL components: `ignore`, `silent` or `propagate`, in
/// any case (`pkg/ottl` lowercases the text before matching it, so `Ignore` loads there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorMode {
    /// Skip the failing condition, log it.
    Ignore,
    /// Skip the failing condition quietly.
    Silent,
    /// Stop: the trace is not sampled by this policy.
    #[default]
    Propagate,
}

impl<'de> Deserialize<'de> for ErrorMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tailgate_core::config::parse_str(d, "ignore, silent or propagate", |text| {
            match text.to_lowercase().as_str() {
                "ignore" => Ok(ErrorMode::Ignore),
                "silent" => Ok(ErrorMode::Silent),
                "propagate" => Ok(ErrorMode::Propagate),
                _ => Err(format!(
                    "unknown error_mode {text:?}: expected ignore, silent or propagate"
                )),
            }
        })
    }
}

/// YAML block `ottl_condition:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OttlConditionConfig {
    /// What a failing condition does. Default `propagate`.
    #[serde(default)]
    pub error_mode: ErrorMode,
    /// Conditions on spans; any match samples the trace.
    #[serde(default, deserialize_with = "tailgate_core::config::comma_list")]
    pub span: Vec<String>,
    /// Conditions on span events; any match samples the trace.
    #[serde(default, deserialize_with = "tailgate_core::config::comma_list")]
    pub spanevent: Vec<String>,
}

impl OttlConditionConfig {
    pub(crate) fn validate(&self) -> Result<(), SettingError> {
        if self.span.is_empty() && self.spanevent.is_empty() {
            return Err(SettingError::conflict(
                "span",
                "list at least one condition under span or spanevent",
            ));
        }
        self.compile_conditions().map(|_| ())
    }

    fn compile_conditions(&self) -> Result<(Vec<Condition>, Vec<Condition>), SettingError> {
        let compile = |list: &[String], ctx: Context| -> Result<Vec<Condition>, SettingError> {
            list.iter()
                .enumerate()
                .map(|(i, c)| {
                    Condition::new(c, ctx).map_err(|error| SettingError::Ottl {
                        key: format!("{}[{i}]", ctx.name()),
                        error,
                    })
                })
                .collect()
        };
        Ok((
            compile(&self.span, Context::Span)?,
            compile(&self.spanevent, Context::SpanEvent)?,
        ))
    }
}

impl Kind for OttlConditionConfig {
    type Valid = Self;

    fn validated(self, at: &At<'_>) -> Result<Self, PolicyError> {
        at.settings(self, Self::validate)
    }

    fn compile(c: &Self, _keys: &mut Keys<'_>) -> Box<dyn Policy> {
        Box::new(OttlConditionPolicy::new(c))
    }
}

/// Compiled `ottl_condition` policy.
#[derive(Debug)]
pub struct OttlConditionPolicy {
    error_mode: ErrorMode,
    span: Vec<Condition>,
    spanevent: Vec<Condition>,
    /// Condition evaluations that failed, over the policy's life.
    errors: AtomicU64,
}

impl OttlConditionPolicy {
    /// Compiles a validated config.
    pub fn new(c: &OttlConditionConfig) -> Self {
        let (span, spanevent) = c.compile_conditions().unwrap_or_default();
        OttlConditionPolicy {
            error_mode: c.error_mode,
            span,
            spanevent,
            errors: AtomicU64::new(0),
        }
    }

    /// `Some(verdict)` when evaluation ends here, `None` to go on.
    fn check(&self, c: &Condition, input: &SpanInput<'_>) -> Option<Verdict> {
        self.outcome(c, c.holds(input))
    }

    fn outcome(&self, c: &Condition, result: Result<bool, OttlError>) -> Option<Verdict> {
        match result {
            Ok(true) => Some(Verdict::Sampled),
            Ok(false) => None,
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                match self.error_mode {
                    ErrorMode::Propagate => Some(Verdict::Error),
                    ErrorMode::Ignore => {
                        tracing::debug!(condition = %c.source, error = %e, "OTTL condition failed; ignored.");
                        None
                    }
                    ErrorMode::Silent => None,
                }
            }
        }
    }
}

impl Policy for OttlConditionPolicy {
    fn evaluate(&self, trace: &TraceView<'_>) -> Verdict {
        // Per span condition: the answer of its resource-and-scope parts for the resource
        // and scope last seen (spans of a trace mostly share them), so those parts are
        // evaluated once per resource instead of once per span.
        let mut by_resource: Vec<Option<(usize, usize, bool)>> = vec![None; self.span.len()];
        for s in trace.spans {
            let parts = s.parts();
            let mut input = SpanInput {
                span: parts.span,
                resource: parts.resource,
                scope: parts.scope,
                event: &[],
            };
            let key = (
                parts.resource.as_ptr() as usize,
                parts.scope.as_ptr() as usize,
            );
            for (c, memo) in self.span.iter().zip(by_resource.iter_mut()) {
                let outer = match *memo {
                    Some((r, sc, held)) if (r, sc) == key => Some(held),
                    _ => match c.holds_for_resource(&input) {
                        None => None,
                        Some(Ok(held)) => {
                            *memo = Some((key.0, key.1, held));
                            Some(held)
                        }
                        Some(Err(e)) => match self.outcome(c, Err(e)) {
                            Some(v) => return v,
                            None => continue,
                        },
                    },
                };
                let result = match outer {
                    Some(false) => continue,
                    Some(true) => c.holds_given_resource(&input),
                    None => c.holds(&input),
                };
                if let Some(v) = self.outcome(c, result) {
                    return v;
                }
            }
            if self.spanevent.is_empty() {
                continue;
            }
            for event in events(parts.span) {
                input.event = event;
                for c in &self.spanevent {
                    if let Some(v) = self.check(c, &input) {
                        return v;
                    }
                }
            }
        }
        Verdict::NotSampled
    }

    fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    fn error_meaning(&self) -> Option<&'static str> {
        Some(match self.error_mode {
            ErrorMode::Propagate => "error_mode propagate: the trace's verdict is an error, neither kept nor dropped by it",
            ErrorMode::Ignore | ErrorMode::Silent => "error_mode ignore or silent: the condition counted as false",
        })
    }

    fn describe(&self) -> String {
        // Each condition in parentheses when there are several: they are alternatives,
        // and a condition may hold an `or` of its own.
        let list = |l: &[Condition]| match l {
            [one] => one.source.clone(),
            many => many
                .iter()
                .map(|c| format!("({})", c.source))
                .collect::<Vec<_>>()
                .join(" or "),
        };
        match (self.span.is_empty(), self.spanevent.is_empty()) {
            (false, true) => format!("keep traces with a span where {}", list(&self.span)),
            (true, false) => format!(
                "keep traces with a span event where {}",
                list(&self.spanevent)
            ),
            _ => format!(
                "keep traces with a span where {} or a span event where {}",
                list(&self.span),
                list(&self.spanevent)
            ),
        }
    }
}
