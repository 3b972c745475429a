//! What every layer of OTTL shares: the context a condition runs on and its error. The
//! parser and the evaluator both import these; this file imports nothing of theirs.

/// What an OTTL condition runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Each span of the trace (`span:` conditions).
    Span,
    /// Each event of each span (`spanevent:` conditions).
    SpanEvent,
}

impl Context {
    /// The context's name as the Collector's config writes it.
    pub fn name(self) -> &'static str {
        match self {
            Context::Span => "span",
            Context::SpanEvent => "spanevent",
        }
    }
}

/// Which id an id value is: pdata's `TraceID` (16 bytes) or `SpanID` (8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// A trace id.
    Trace,
    /// A span id (`span_id`, `parent_span_id`).
    Span,
}

impl IdKind {
    /// The id's length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            IdKind::Trace => 16,
            IdKind::Span => 8,
        }
    }
}

/// An OTTL condition that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OttlError {
    /// The condition does not parse, or names an unknown path or function.
    #[error("{}, column {column}: {message}", shown(condition, *column))]
    Parse {
        /// The condition as written.
        condition: String,
        /// 1-based character position of the problem.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// Evaluating the condition failed on a span (a type error, division by zero).
    #[error("{0}")]
    Eval(String),
}

/// A condition as an error quotes it: whole when short, else the 80 characters either side
/// of `column` (a refused 100 KB condition would otherwise be a 100 KB log line).
fn shown(condition: &str, column: usize) -> String {
    const AROUND: usize = 80;
    let chars = condition.chars().count();
    if chars <= 2 * AROUND {
        return format!("{condition:?}");
    }
    let from = column.saturating_sub(AROUND + 1);
    let to = (column + AROUND).min(chars);
    let window: String = condition.chars().skip(from).take(to - from).collect();
    format!(
        "{}{window:?}{} ({chars} characters)",
        if from > 0 { "…" } else { "" },
        if to < chars { "…" } else { "" }
    )
}
