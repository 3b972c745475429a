//! OTTL conditions, the boolean subset users write in the Collector's `ottl_condition`
//! sampling policy: [`parse`] turns a condition into an expression tree, resolving paths
//! and converters against its context (span or span event) so that mistakes are refused
//! at load with their position; [`eval`] evaluates it against one span's encoded bytes,
//! reading only the fields it names.
//!
//! Supported: `and`, `or`, `not`, parentheses; `== != < <= > >=`; `+ - * /`; string, int,
//! float, bool, `nil` and `0x…` bytes literals; the span kind and status code enums; paths
//! on the span (`name`, `kind`, `status.code`, `attributes["k"]`, …, also with a `span.`
//! prefix), its resource (`resource.attributes["k"]`), its scope
//! (`instrumentation_scope.name`) and, in span event conditions, the event (`name`,
//! `attributes["k"]`, …, or with `spanevent.`) and its span (`span.name`, …); converters
//! `IsMatch`, `IsString`, `IsInt`, `IsDouble`, `IsBool`, `IsMap`, `IsList`, `Len`, `Int`,
//! `Double`, `String`, `Concat`, `HasPrefix`, `HasSuffix`, `ToLowerCase`, `ToUpperCase`,
//! `IsRootSpan` and `ContainsValue`.

pub mod eval;
pub mod parse;

#[cfg(test)]
mod tests;

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

/// An OTTL condition that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OttlError {
    /// The condition does not parse, or names an unknown path or function.
    #[error("{condition:?}, column {column}: {message}")]
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

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The condition as written.
    pub source: String,
    expr: parse::Expr,
}

impl Condition {
    /// Parses and checks a condition for `ctx`.
    pub fn new(source: &str, ctx: Context) -> Result<Self, OttlError> {
        Ok(Condition {
            source: source.to_owned(),
            expr: parse::parse(source, ctx)?,
        })
    }

    /// Whether the condition holds for `input`.
    pub fn holds(&self, input: &eval::SpanInput<'_>) -> Result<bool, OttlError> {
        eval::truth(&self.expr, input)
    }
}
