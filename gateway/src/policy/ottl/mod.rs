//! OTTL conditions, the boolean subset users write in the Collector's `ottl_condition`
//! sampling policy: [`parse`] turns a condition into an expression tree, resolving paths
//! and converters against its context (span or span event) so that mistakes are refused
//! at load with their position; [`eval`] evaluates it against one span's encoded bytes,
//! reading only the fields it names.
//!
//! Supported: `and`, `or`, `not`, parentheses; `== != < <= > >=`; `+ - * /` (and `+ -` on
//! times and durations, see [`time`]); string, int,
//! float, bool, `nil` and `0x…` bytes literals; the span kind and status code enums; paths
//! on the span (`name`, `kind`, `status.code`, `attributes["k"]`, …, also with a `span.`
//! prefix), its resource (`resource.attributes["k"]`), its scope
//! (`instrumentation_scope.name`) and, in span event conditions, the event (`name`,
//! `attributes["k"]`, …, or with `spanevent.`) and its span (`span.name`, …); converters
//! `IsMatch`, `IsString`, `IsInt`, `IsDouble`, `IsBool`, `IsMap`, `IsList`, `Len`, `Int`,
//! `Double`, `String`, `Concat`, `HasPrefix`, `HasSuffix`, `ToLowerCase`, `ToUpperCase`,
//! `IsRootSpan`, `ContainsValue`, `Substring`, `TrimPrefix`, `TrimSuffix`, `Index`,
//! `TraceID` and `SpanID` (of literals), the time converters (`Now`,
//! `Duration`, `Unix`, `UnixNano`…, `Year`…, `Milliseconds`…, `TruncateTime`), and the
//! rest listed in docs/policies.md (`Keys` … `ConvertCase`, the hashes in [`convert`],
//! `Hex`, `Log`); arguments by position or by name.
//! docs/policies.md lists the paths, the semantics and each departure from pkg/ottl.

pub mod cidr;
pub mod convert;
pub mod eval;
pub mod parse;
pub mod time;
pub mod types;

pub use types::{Context, OttlError};

#[cfg(test)]
mod tests;

/// A compiled condition.
#[derive(Debug, Clone)]
pub struct Condition {
    /// The condition as written.
    pub source: String,
    expr: parse::Expr,
    /// For `a and b and …` whose first parts read only the resource and scope: those
    /// parts, and the rest. The first half gives the same answer for every span of a resource,
    /// so callers may evaluate it once per resource ([`Condition::holds_for_resource`]).
    split: Option<(parse::Expr, parse::Expr)>,
}

impl Condition {
    /// Parses and checks a condition for `ctx`.
    pub fn new(source: &str, ctx: Context) -> Result<Self, OttlError> {
        let expr = parse::parse(source, ctx)?;
        let split = match &expr {
            // Only a leading run of such parts: `and` evaluates left to right and stops at
            // the first false or failing part, and the split must keep that order.
            parse::Expr::And(parts) => {
                let n = parts.iter().take_while(|p| p.reads_only_resource()).count();
                (n > 0 && n < parts.len()).then(|| {
                    (
                        parse::Expr::And(parts[..n].to_vec()),
                        parse::Expr::And(parts[n..].to_vec()),
                    )
                })
            }
            _ => None,
        };
        Ok(Condition {
            source: source.to_owned(),
            expr,
            split,
        })
    }

    /// Whether the condition holds for `input`.
    pub fn holds(&self, input: &eval::SpanInput<'_>) -> Result<bool, OttlError> {
        eval::truth(&self.expr, input)
    }

    /// Whether the parts that read only the resource and scope hold (`None`: the
    /// condition has no such split; use [`Condition::holds`]).
    pub fn holds_for_resource(
        &self,
        input: &eval::SpanInput<'_>,
    ) -> Option<Result<bool, OttlError>> {
        self.split
            .as_ref()
            .map(|(outer, _)| eval::truth(outer, input))
    }

    /// Whether the other parts hold, given that the resource parts did.
    pub fn holds_given_resource(&self, input: &eval::SpanInput<'_>) -> Result<bool, OttlError> {
        match &self.split {
            Some((_, own)) => eval::truth(own, input),
            None => self.holds(input),
        }
    }
}
