//! The OTTL condition grammar, as the Collector's `pkg/ottl` parses boolean expressions:
//! `or` binds looser than `and`, `not` applies to what follows it, comparisons
//! (`== != < <= > >=`) take values, and values are literals, paths, enums, converters
//! (capitalised function calls) and math (`+ - * /`, usual precedence).
//!
//! Paths and converters are resolved here, against the context the condition runs in, so
//! an unknown path or function is refused at load with its position in the expression.

use regex::bytes::Regex;

use super::convert::HashKind;
use super::types::{Context, IdKind, OttlError};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A math operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
}

/// Which message a path reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The span.
    Span,
    /// The span event (spanevent conditions only).
    Event,
    /// The span's resource.
    Resource,
    /// The span's instrumentation scope.
    Scope,
}

/// A field a path names.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// `name`
    Name,
    /// `kind` (an int, the enum's number)
    Kind,
    /// `kind.string` (`"Server"`, …)
    KindString,
    /// `kind.deprecated_string` (`"SPAN_KIND_SERVER"`, …)
    KindDeprecatedString,
    /// `schema_url` of the resource or the scope (a field of the `ResourceSpans` or
    /// `ScopeSpans` that holds it)
    SchemaUrl,
    /// `events` of a span (for `Len`)
    Events,
    /// `links` of a span (for `Len`)
    Links,
    /// `cache`, `cache["k"]…`: the statement cache, always empty in a condition
    Cache(Vec<Index>),
    /// `status.code`
    StatusCode,
    /// `status.message`
    StatusMessage,
    /// `trace_id` (bytes)
    TraceId,
    /// `trace_id.string` (lower-case hex)
    TraceIdString,
    /// `span_id` (bytes)
    SpanId,
    /// `span_id.string`
    SpanIdString,
    /// `parent_span_id` (bytes)
    ParentSpanId,
    /// `parent_span_id.string`
    ParentSpanIdString,
    /// `trace_state`, or `trace_state["key"]` with a key
    TraceState(Option<String>),
    /// `start_time_unix_nano`
    StartTime,
    /// `end_time_unix_nano`
    EndTime,
    /// `time_unix_nano` of an event
    Time,
    /// `start_time` (a time value)
    StartTimeValue,
    /// `end_time`
    EndTimeValue,
    /// `time` of an event
    TimeValue,
    /// `dropped_events_count` of a span
    DroppedEventsCount,
    /// `dropped_links_count` of a span
    DroppedLinksCount,
    /// `attributes["k"]…`: the key, then indexes into maps and lists
    Attribute(String, Vec<Index>),
    /// `attributes` as a whole (for `Len`, `IsMap`)
    Attributes,
    /// `dropped_attributes_count`
    DroppedAttributesCount,
    /// `version` of the scope
    Version,
}

/// An index into a map (`["k"]`) or a list (`[0]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Index {
    /// A map key.
    Key(String),
    /// A list position.
    Pos(i64),
}

/// A converter (function) the condition calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `IsMatch(target, "regex")`
    IsMatch,
    /// `IsString(v)`
    IsString,
    /// `IsInt(v)`
    IsInt,
    /// `IsDouble(v)`
    IsDouble,
    /// `IsBool(v)`
    IsBool,
    /// `IsMap(v)`
    IsMap,
    /// `IsList(v)`
    IsList,
    /// `Len(v)`
    Len,
    /// `Int(v)`
    Int,
    /// `Double(v)`
    Double,
    /// `String(v)`
    String,
    /// `Concat([values], "delimiter")`
    Concat,
    /// `HasPrefix(target, prefix)`
    HasPrefix,
    /// `HasSuffix(target, suffix)`
    HasSuffix,
    /// `ToLowerCase(v)`
    ToLowerCase,
    /// `ToUpperCase(v)`
    ToUpperCase,
    /// `IsRootSpan()`
    IsRootSpan,
    /// `ContainsValue(list, value)`
    ContainsValue,
    /// `Substring(target, start, length[, utf8Safe])`
    Substring,
    /// `Now()`
    Now,
    /// `Duration("1h30m")`, Go's `time.ParseDuration`
    Duration,
    /// `Unix(seconds[, nanoseconds])`
    Unix,
    /// A time's field or count since the epoch, an int (`UnixNano(t)`, `Hour(t)`, …)
    TimePart(TimePart),
    /// A duration in a unit (`Milliseconds(d)`, `Seconds(d)`, …)
    DurationIn(DurationUnit),
    /// `TruncateTime(t, d)`
    TruncateTime,
    /// `TrimPrefix(target, prefix)`
    TrimPrefix,
    /// `TrimSuffix(target, suffix)`
    TrimSuffix,
    /// `Index(source, value)`
    Index,
    /// `TraceID(0x…)` or `TraceID("hex")` (a literal, built at load)
    TraceId,
    /// `SpanID(0x…)` or `SpanID("hex")` (a literal, built at load)
    SpanId,
    /// `Bool(v)`
    Bool,
    /// `IsInCIDR(target, ["10.0.0.0/8", …])`
    IsInCidr,
    /// `Keys(map)`: a map's keys, in its order, as a list of strings
    Keys,
    /// `Values(map)`: a map's values, in its order, as a list
    Values,
    /// `Coalesce([a, b, …])` (or a list value): the first item that is not nil
    Coalesce,
    /// `Trim(target[, cutset])`: Go's `strings.Trim`, the cutset `" "` when left out
    Trim,
    /// `Split(target, "delimiter")`: Go's `strings.Split`, a list of strings
    Split,
    /// `ParseInt(target, base)`: Go's `strconv.ParseInt(target, base, 64)`
    ParseInt,
    /// `IsEmpty(v)`: nil, Go's zero value, or a map, list or bytes with nothing in it
    IsEmpty,
    /// `ConvertCase(target, "lower" | "upper" | "snake" | "camel")`: read at load as
    /// `ToLowerCase`, `ToUpperCase`, `ToSnakeCase` or `ToCamelCase`
    ConvertCase,
    /// `MD5(s)`, `SHA1(s)`, …, `XXH128(s)`: a hash of a string
    Hash(HashKind),
    /// `Hex(v)`: bytes, a string, a number or a boolean as pkg/ottl's byte-slice-like
    /// getter reads it, in lower-case hex
    Hex,
    /// `Log(x)`: the natural logarithm of a number (or a string or boolean read as one)
    Log,
    /// `ToSnakeCase(s)`: strcase's `ToSnake`
    ToSnakeCase,
    /// `ToCamelCase(s)`: strcase's `ToCamel`
    ToCamelCase,
}

impl Func {
    /// The converter's name as conditions write it.
    pub fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|c| c.func == self)
            .map_or("?", |c| c.name)
    }
}

/// What a time converter reads from a time, as an int.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimePart {
    /// `UnixSeconds(t)`
    UnixSeconds,
    /// `UnixMilli(t)`
    UnixMilli,
    /// `UnixMicro(t)`
    UnixMicro,
    /// `UnixNano(t)`
    UnixNano,
    /// `Year(t)`
    Year,
    /// `Month(t)`, 1 to 12
    Month,
    /// `Day(t)` of the month
    Day,
    /// `Hour(t)`
    Hour,
    /// `Minute(t)`
    Minute,
    /// `Second(t)`
    Second,
    /// `Nanosecond(t)` within the second
    Nanosecond,
    /// `Weekday(t)`, 0 (Sunday) to 6
    Weekday,
}

/// The unit a duration converter gives a duration in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationUnit {
    /// `Nanoseconds(d)`, an int
    Nanoseconds,
    /// `Microseconds(d)`, an int
    Microseconds,
    /// `Milliseconds(d)`, an int
    Milliseconds,
    /// `Seconds(d)`, a double
    Seconds,
    /// `Minutes(d)`, a double
    Minutes,
    /// `Hours(d)`, a double
    Hours,
}

/// A converter as a condition calls it.
struct Converter {
    /// Its name.
    name: &'static str,
    /// What it does.
    func: Func,
    /// How many of its parameters are required (the rest are `ottl.Optional`, written by
    /// position after them or by name).
    required: usize,
    /// Its parameters' names: the fields of pkg/ottl's arguments struct, in order (a named
    /// argument's name in camel case). Empty where pkg/ottl's factory takes no arguments,
    /// and then any given are read (so they must parse) and ignored.
    params: &'static [&'static str],
}

/// Every converter conditions can call.
const FUNCS: &[Converter] = &[
    conv("IsMatch", Func::IsMatch, 2, &["Target", "Pattern"]),
    conv("IsString", Func::IsString, 1, &["Target"]),
    conv("IsInt", Func::IsInt, 1, &["Target"]),
    conv("IsDouble", Func::IsDouble, 1, &["Target"]),
    conv("IsBool", Func::IsBool, 1, &["Target"]),
    conv("IsMap", Func::IsMap, 1, &["Target"]),
    conv("IsList", Func::IsList, 1, &["Target"]),
    conv("Len", Func::Len, 1, &["Target"]),
    conv("Int", Func::Int, 1, &["Target"]),
    conv("Double", Func::Double, 1, &["Target"]),
    conv("String", Func::String, 1, &["Target"]),
    conv("Concat", Func::Concat, 2, &["Vals", "Delimiter"]),
    conv("HasPrefix", Func::HasPrefix, 2, &["Target", "Prefix"]),
    conv("HasSuffix", Func::HasSuffix, 2, &["Target", "Suffix"]),
    conv("ToLowerCase", Func::ToLowerCase, 1, &["Target"]),
    conv("ToUpperCase", Func::ToUpperCase, 1, &["Target"]),
    conv("IsRootSpan", Func::IsRootSpan, 0, &[]),
    conv("ContainsValue", Func::ContainsValue, 2, &["Target", "Item"]),
    conv(
        "Substring",
        Func::Substring,
        3,
        &["Target", "Start", "Length", "Utf8Safe"],
    ),
    conv("Now", Func::Now, 0, &[]),
    conv("Duration", Func::Duration, 1, &["Duration"]),
    conv("Unix", Func::Unix, 1, &["Seconds", "Nanoseconds"]),
    conv(
        "UnixSeconds",
        Func::TimePart(TimePart::UnixSeconds),
        1,
        &["Time"],
    ),
    conv(
        "UnixMilli",
        Func::TimePart(TimePart::UnixMilli),
        1,
        &["Time"],
    ),
    conv(
        "UnixMicro",
        Func::TimePart(TimePart::UnixMicro),
        1,
        &["Time"],
    ),
    conv("UnixNano", Func::TimePart(TimePart::UnixNano), 1, &["Time"]),
    conv("Year", Func::TimePart(TimePart::Year), 1, &["Time"]),
    conv("Month", Func::TimePart(TimePart::Month), 1, &["Time"]),
    conv("Day", Func::TimePart(TimePart::Day), 1, &["Time"]),
    conv("Hour", Func::TimePart(TimePart::Hour), 1, &["Time"]),
    conv("Minute", Func::TimePart(TimePart::Minute), 1, &["Time"]),
    conv("Second", Func::TimePart(TimePart::Second), 1, &["Time"]),
    conv(
        "Nanosecond",
        Func::TimePart(TimePart::Nanosecond),
        1,
        &["Time"],
    ),
    conv("Weekday", Func::TimePart(TimePart::Weekday), 1, &["Time"]),
    conv(
        "Nanoseconds",
        Func::DurationIn(DurationUnit::Nanoseconds),
        1,
        &["Duration"],
    ),
    conv(
        "Microseconds",
        Func::DurationIn(DurationUnit::Microseconds),
        1,
        &["Duration"],
    ),
    conv(
        "Milliseconds",
        Func::DurationIn(DurationUnit::Milliseconds),
        1,
        &["Duration"],
    ),
    conv(
        "Seconds",
        Func::DurationIn(DurationUnit::Seconds),
        1,
        &["Duration"],
    ),
    conv(
        "Minutes",
        Func::DurationIn(DurationUnit::Minutes),
        1,
        &["Duration"],
    ),
    conv(
        "Hours",
        Func::DurationIn(DurationUnit::Hours),
        1,
        &["Duration"],
    ),
    conv("TruncateTime", Func::TruncateTime, 2, &["Time", "Duration"]),
    conv("TrimPrefix", Func::TrimPrefix, 2, &["Target", "Prefix"]),
    conv("TrimSuffix", Func::TrimSuffix, 2, &["Target", "Suffix"]),
    conv("Index", Func::Index, 2, &["Target", "Value"]),
    conv("TraceID", Func::TraceId, 1, &["Target"]),
    conv("SpanID", Func::SpanId, 1, &["Target"]),
    conv("Bool", Func::Bool, 1, &["Target"]),
    conv("IsInCIDR", Func::IsInCidr, 2, &["Target", "Networks"]),
    conv("Keys", Func::Keys, 1, &["Target"]),
    conv("Values", Func::Values, 1, &["Target"]),
    conv("Coalesce", Func::Coalesce, 1, &["Values"]),
    conv("Trim", Func::Trim, 1, &["Target", "Replacement"]),
    conv("Split", Func::Split, 2, &["Target", "Delimiter"]),
    conv("ParseInt", Func::ParseInt, 2, &["Target", "Base"]),
    conv("IsEmpty", Func::IsEmpty, 1, &["Target"]),
    conv("ConvertCase", Func::ConvertCase, 2, &["Target", "ToCase"]),
    conv("MD5", Func::Hash(HashKind::Md5), 1, &["Target"]),
    conv("SHA1", Func::Hash(HashKind::Sha1), 1, &["Target"]),
    conv("SHA256", Func::Hash(HashKind::Sha256), 1, &["Target"]),
    conv("SHA512", Func::Hash(HashKind::Sha512), 1, &["Target"]),
    conv("FNV", Func::Hash(HashKind::Fnv), 1, &["Target"]),
    conv("Murmur3Hash", Func::Hash(HashKind::Murmur3), 1, &["Target"]),
    conv(
        "Murmur3Hash128",
        Func::Hash(HashKind::Murmur3x128),
        1,
        &["Target"],
    ),
    conv("XXH3", Func::Hash(HashKind::Xxh3), 1, &["Target"]),
    conv("XXH128", Func::Hash(HashKind::Xxh128), 1, &["Target"]),
    conv("Hex", Func::Hex, 1, &["Target"]),
    conv("Log", Func::Log, 1, &["Target"]),
    conv("ToSnakeCase", Func::ToSnakeCase, 1, &["Target"]),
    conv("ToCamelCase", Func::ToCamelCase, 1, &["Target"]),
];

/// pkg/ottl's converters (its current `converters()` and lambda functions) that
/// conditions here cannot call, so that a condition using one is told so rather than that
/// the name is unknown.
const UNSUPPORTED: &[&str] = &[
    "Base64Encode",
    "Decode",
    "CommunityID",
    "ConvertAttributesToElementsXML",
    "ConvertTextToElementsXML",
    "ExtractPatterns",
    "ExtractGrokPatterns",
    "GetXML",
    "InsertXML",
    "IsValidLuhn",
    "ParseCSV",
    "ParseJSON",
    "ParseKeyValue",
    "ParseSimplifiedXML",
    "ParseXML",
    "RemoveXML",
    "Sort",
    "Format",
    "Time",
    "FormatTime",
    "ToKeyValueString",
    "UUID",
    "UUIDv7",
    "URL",
    "UserAgent",
    "Append",
    "DeleteIndex",
    "SliceToMap",
    "ParseSeverity",
    "ProfileID",
    "All",
    "Any",
    "Filter",
    "Find",
    "MapEach",
    "MapKeys",
    "Reduce",
    "When",
];

const fn conv(
    name: &'static str,
    func: Func,
    required: usize,
    params: &'static [&'static str],
) -> Converter {
    Converter {
        name,
        func,
        required,
        params,
    }
}

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `a or b or …`
    Or(Vec<Expr>),
    /// `a and b and …`
    And(Vec<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `a OP b`
    Cmp(Box<Expr>, CmpOp, Box<Expr>),
    /// `a OP b` for math
    Math(Box<Expr>, MathOp, Box<Expr>),
    /// `-a`
    Neg(Box<Expr>),
    /// `nil`
    Nil,
    /// `true` / `false`
    Bool(bool),
    /// An integer literal or enum.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// A string literal.
    Str(String),
    /// A bytes literal (`0x…`).
    Bytes(Vec<u8>),
    /// An id built from a literal at load (`TraceID(…)`, `SpanID(…)`).
    Id(IdKind, Vec<u8>),
    /// `Duration("…")` of a literal Go reads, parsed once at load (nanoseconds); one it
    /// cannot read stays a call and fails at evaluation, as in pkg/ottl.
    Duration(i64),
    /// A list literal (`[a, b]`), as a converter's argument.
    List(Vec<Expr>),
    /// A path into the context.
    Path(Target, Field),
    /// A converter call; `regex` is the compiled pattern of `IsMatch`.
    Call(Func, Vec<Expr>, Option<Box<Regex>>),
    /// A converter's result indexed (`Split(name, "/")[1]`, `Coalesce([…])["k"]`).
    Keyed(Box<Expr>, Vec<Index>),
}

impl Expr {
    /// Whether the expression reads nothing but the resource and the scope (so it has the
    /// same value for every span under them).
    pub fn reads_only_resource(&self) -> bool {
        match self {
            Expr::Or(p) | Expr::And(p) | Expr::List(p) => p.iter().all(Expr::reads_only_resource),
            Expr::Not(e) | Expr::Neg(e) => e.reads_only_resource(),
            Expr::Cmp(a, _, b) | Expr::Math(a, _, b) => {
                a.reads_only_resource() && b.reads_only_resource()
            }
            Expr::Path(t, _) => matches!(t, Target::Resource | Target::Scope),
            Expr::Call(Func::IsRootSpan, ..) => false,
            Expr::Call(_, args, _) => args.iter().all(Expr::reads_only_resource),
            Expr::Keyed(e, _) => e.reads_only_resource(),
            Expr::Nil
            | Expr::Bool(_)
            | Expr::Int(_)
            | Expr::Float(_)
            | Expr::Str(_)
            | Expr::Bytes(_)
            | Expr::Id(..)
            | Expr::Duration(_) => true,
        }
    }

    /// Whether the expression yields a boolean by its form (a comparison, logic, a bool
    /// literal or a converter), as OTTL requires of a condition.
    fn is_boolean(&self) -> bool {
        matches!(
            self,
            Expr::Or(_)
                | Expr::And(_)
                | Expr::Not(_)
                | Expr::Cmp(..)
                | Expr::Bool(_)
                | Expr::Call(..)
                | Expr::Keyed(..)
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    /// An integer's digits (its sign is a token of its own): `9223372036854775808` fits
    /// only after a minus.
    Int(u64),
    Float(f64),
    Bytes(Vec<u8>),
    Punct(&'static str),
}

struct Lexer;

impl Lexer {
    /// The tokens of `src`, each with its byte offset (for the error's column).
    fn tokens(src: &str) -> Result<Vec<(Tok, usize)>, OttlError> {
        let b = src.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let (tok, end) = if c == b'"' {
                Self::string(src, i)?
            } else if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                Self::bytes(src, i)?
            } else if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
            {
                Self::number(src, i)?
            } else if c.is_ascii_alphabetic() || c == b'_' {
                let end = i + b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (Tok::Ident(src[i..end].to_owned()), end)
            } else {
                Self::punct(src, i)?
            };
            out.push((tok, i));
            i = end;
        }
        Ok(out)
    }

    /// A double-quoted string at `start`, with the escapes OTTL knows.
    fn string(src: &str, start: usize) -> Result<(Tok, usize), OttlError> {
        let b = src.as_bytes();
        let mut s = Vec::new();
        let mut i = start + 1;
        loop {
            match b.get(i) {
                None => return Err(err(src, start, "unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    let esc = match b.get(i + 1) {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'n') => b'\n',
                        Some(b't') => b'\t',
                        Some(b'r') => b'\r',
                        _ => return Err(err(src, i, "unknown escape in string")),
                    };
                    s.push(esc);
                    i += 2;
                }
                Some(&ch) => {
                    s.push(ch);
                    i += 1;
                }
            }
        }
        let s = String::from_utf8(s).map_err(|_| err(src, start, "invalid UTF-8"))?;
        Ok((Tok::Str(s), i + 1))
    }

    /// A bytes literal at `start`: `0x` and an even number of hex digits.
    fn bytes(src: &str, start: usize) -> Result<(Tok, usize), OttlError> {
        let h = start + 2;
        let end = h + src.as_bytes()[h..]
            .iter()
            .take_while(|c| c.is_ascii_hexdigit())
            .count();
        let hex = &src[h..end];
        if hex.is_empty() || hex.len() % 2 != 0 {
            return Err(err(
                src,
                start,
                "a bytes literal needs an even number of hex digits",
            ));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|k| u8::from_str_radix(&hex[k..k + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| err(src, start, "invalid bytes literal"))?;
        Ok((Tok::Bytes(bytes), end))
    }

    /// An integer, or a float as OTTL's lexer reads one (`\d*\.\d+([eE][-+]?\d+)?`: a
    /// dot and a digit after the integer part, which may be empty, then an exponent).
    fn number(src: &str, start: usize) -> Result<(Tok, usize), OttlError> {
        let b = src.as_bytes();
        let digits =
            |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        let mut i = digits(start);
        let float = b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit);
        if float {
            i = digits(i + 1);
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
                if b.get(i + 1 + sign).is_some_and(u8::is_ascii_digit) {
                    i = digits(i + 1 + sign);
                }
            }
        }
        let text = &src[start..i];
        let tok = if float {
            // Go's ParseFloat refuses a number too large for a double (ErrRange).
            Tok::Float(
                text.parse()
                    .ok()
                    .filter(|f: &f64| f.is_finite())
                    .ok_or_else(|| err(src, start, "number out of range"))?,
            )
        } else {
            Tok::Int(
                text.parse()
                    .map_err(|_| err(src, start, "integer out of range"))?,
            )
        };
        Ok((tok, i))
    }

    /// An operator or punctuation mark, two-character ones first.
    fn punct(src: &str, start: usize) -> Result<(Tok, usize), OttlError> {
        let c = src.as_bytes()[start];
        let p: &'static str = match src.get(start..start + 2).unwrap_or("") {
            "==" => "==",
            "!=" => "!=",
            "<=" => "<=",
            ">=" => ">=",
            _ => match c {
                b'<' => "<",
                b'>' => ">",
                b'(' => "(",
                b')' => ")",
                b'[' => "[",
                b']' => "]",
                b',' => ",",
                b'.' => ".",
                b'+' => "+",
                b'-' => "-",
                b'*' => "*",
                b'/' => "/",
                b'=' if src.as_bytes().get(start + 1) == Some(&b'>') => {
                    return Err(err(
                        src,
                        start,
                        "lambda expressions (`(x) => …`) are not supported: pkg/ottl has them only behind its alpha ottl.functions.enableLambda feature gate",
                    ))
                }
                b'=' => "=",
                b'{' => {
                    return Err(err(
                        src,
                        start,
                        "map literals (`{…}`) are not supported in conditions",
                    ))
                }
                _ => {
                    return Err(err(
                        src,
                        start,
                        &format!("unexpected character {:?}", c as char),
                    ))
                }
            },
        };
        Ok((Tok::Punct(p), start + p.len()))
    }
}

/// A named argument's name as pkg/ottl reads it (`strcase.ToCamel`, as `ToCamelCase`):
/// `utf8_safe` and `utf8Safe` are `Utf8Safe`.
fn go_camel_case(name: &str) -> String {
    String::from_utf8_lossy(&super::convert::camel_case(name.as_bytes())).into_owned()
}

/// A parameter's field name as a condition writes it by name (`Utf8Safe` is `utf8_safe`).
fn go_snake_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for (i, c) in field.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn err(src: &str, pos: usize, message: &str) -> OttlError {
    OttlError::Parse {
        condition: src.to_owned(),
        column: src[..pos.min(src.len())].chars().count() + 1,
        message: message.to_owned(),
    }
}

/// Parses one condition for `ctx`.
pub fn parse(src: &str, ctx: Context) -> Result<Expr, OttlError> {
    let toks = Lexer::tokens(src)?;
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        ctx,
        depth: 0,
    };
    let e = p.or()?;
    if p.pos < p.toks.len() {
        return Err(p.error_here("unexpected input after the condition"));
    }
    if !e.is_boolean() {
        return Err(err(
            src,
            0,
            "a condition must be a comparison, a boolean, a converter or a combination of them",
        ));
    }
    Ok(e)
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<(Tok, usize)>,
    pos: usize,
    ctx: Context,
    /// Nesting of the recursive descent, bounded so no input can exhaust the stack.
    depth: usize,
}

/// Deepest nesting of parentheses, `not`s, signs and calls a condition may have.
const MAX_DEPTH: usize = 64;

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.src.len(), |(_, p)| *p)
    }

    fn error_here(&self, message: &str) -> OttlError {
        err(self.src, self.at(), message)
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(q)) if q == k) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<(), OttlError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            Err(self.error_here(&format!("expected `{p}`")))
        }
    }

    fn enter(&mut self) -> Result<(), OttlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(&format!("nested more than {MAX_DEPTH} deep")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, OttlError> {
        self.enter()?;
        let parts = self.boolean_list("or", Self::and)?;
        self.depth -= 1;
        Ok(match parts {
            Ok(parts) => Expr::Or(parts),
            Err(one) => one,
        })
    }

    fn and(&mut self) -> Result<Expr, OttlError> {
        Ok(match self.boolean_list("and", Self::not)? {
            Ok(parts) => Expr::And(parts),
            Err(one) => one,
        })
    }

    /// `part (keyword part)*`: `Err(part)` when there is one part (any value), else
    /// `Ok(parts)`, each of which must be boolean, as OTTL's grammar requires.
    fn boolean_list(
        &mut self,
        keyword: &str,
        part: fn(&mut Self) -> Result<Expr, OttlError>,
    ) -> Result<Result<Vec<Expr>, Expr>, OttlError> {
        let mut starts = vec![self.at()];
        let mut parts = vec![part(self)?];
        while self.eat_keyword(keyword) {
            starts.push(self.at());
            parts.push(part(self)?);
        }
        if parts.len() == 1 {
            return Ok(Err(parts.remove(0)));
        }
        if let Some(i) = parts.iter().position(|p| !p.is_boolean()) {
            return Err(err(
                self.src,
                starts[i],
                &format!("`{keyword}` joins conditions; this part is a value, not a comparison"),
            ));
        }
        Ok(Ok(parts))
    }

    fn not(&mut self) -> Result<Expr, OttlError> {
        let at = self.at();
        if self.eat_keyword("not") {
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            if !inner.is_boolean() {
                return Err(err(
                    self.src,
                    at,
                    "`not` needs a boolean expression after it",
                ));
            }
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, OttlError> {
        let left = self.additive()?;
        let op = match self.peek() {
            Some(Tok::Punct("==")) => CmpOp::Eq,
            Some(Tok::Punct("!=")) => CmpOp::Ne,
            Some(Tok::Punct("<")) => CmpOp::Lt,
            Some(Tok::Punct("<=")) => CmpOp::Le,
            Some(Tok::Punct(">")) => CmpOp::Gt,
            Some(Tok::Punct(">=")) => CmpOp::Ge,
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.additive()?;
        Ok(Expr::Cmp(Box::new(left), op, Box::new(right)))
    }

    fn additive(&mut self) -> Result<Expr, OttlError> {
        let start = self.pos;
        let mut left = self.term()?;
        // Each operation nests the chain's tree one deeper (`1 + 1 + …` is left-deep),
        // which evaluation and dropping recurse through: counted as nesting.
        let mut operations = 0;
        loop {
            let op = match self.peek() {
                Some(Tok::Punct("+")) => MathOp::Add,
                Some(Tok::Punct("-")) => MathOp::Sub,
                _ => {
                    self.depth -= operations;
                    return Ok(left);
                }
            };
            self.enter()?;
            operations += 1;
            self.check_operand(&left, start)?;
            self.pos += 1;
            let start = self.pos;
            let right = self.term()?;
            self.check_operand(&right, start)?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
    }

    fn term(&mut self) -> Result<Expr, OttlError> {
        let start = self.pos;
        let mut left = self.unary()?;
        // Each operation nests the chain's tree one deeper (`1 + 1 + …` is left-deep),
        // which evaluation and dropping recurse through: counted as nesting.
        let mut operations = 0;
        loop {
            let op = match self.peek() {
                Some(Tok::Punct("*")) => MathOp::Mul,
                Some(Tok::Punct("/")) => MathOp::Div,
                _ => {
                    self.depth -= operations;
                    return Ok(left);
                }
            };
            self.enter()?;
            operations += 1;
            self.check_operand(&left, start)?;
            self.pos += 1;
            let start = self.pos;
            let right = self.unary()?;
            self.check_operand(&right, start)?;
            left = Expr::Math(Box::new(left), op, Box::new(right));
        }
    }

    /// An operand of `+ - * /` (starting at token `first`): OTTL's grammar takes numbers,
    /// paths, converters and parenthesised math there (`mathExprLiteral`), so a string,
    /// a boolean, `nil`, an enum or a comparison is refused at load, as the Collector
    /// refuses to start with one.
    fn check_operand(&self, e: &Expr, first: usize) -> Result<(), OttlError> {
        fn math_value(e: &Expr) -> bool {
            match e {
                Expr::Int(_)
                | Expr::Float(_)
                | Expr::Path(..)
                | Expr::Call(..)
                | Expr::Keyed(..) => true,
                // A converter's result, built at load.
                Expr::Id(..) | Expr::Duration(_) => true,
                Expr::Math(..) => true,
                Expr::Neg(inner) => math_value(inner),
                _ => false,
            }
        }
        let tok = |i: usize| self.toks.get(i).map(|(t, _)| t);
        let is_enum = matches!(tok(first), Some(Tok::Ident(id)) if id.starts_with(|c: char| c.is_ascii_uppercase()))
            && !matches!(tok(first + 1), Some(Tok::Punct("(")));
        if math_value(e) && !is_enum {
            return Ok(());
        }
        let at = self.toks.get(first).map_or(self.src.len(), |(_, at)| *at);
        Err(err(
            self.src,
            at,
            "math (+ - * /) takes numbers, paths, converters and parenthesised math, not this value",
        ))
    }

    /// A value with at most one sign before it. OTTL's grammar takes one optional sign on
    /// a math value (a number, path, converter or parenthesised math); `+` changes nothing,
    /// `-` negates (pkg/ottl's math.go).
    fn unary(&mut self) -> Result<Expr, OttlError> {
        let negative = if self.eat_punct("-") {
            Some(true)
        } else if self.eat_punct("+") {
            Some(false)
        } else {
            None
        };
        if negative.is_some() && matches!(self.peek(), Some(Tok::Punct("+" | "-"))) {
            return Err(self.error_here("one sign at most before a value"));
        }
        let (start, at) = (self.pos, self.at());
        // The magnitude of i64::MIN fits only with its minus.
        if negative == Some(true) && self.peek() == Some(&Tok::Int(1 << 63)) {
            self.pos += 1;
            return Ok(Expr::Int(i64::MIN));
        }
        let e = self.primary()?;
        if matches!(e, Expr::List(_)) {
            return Err(err(
                self.src,
                at,
                "a list literal is only allowed as a converter's argument",
            ));
        }
        let Some(negative) = negative else {
            return Ok(e);
        };
        self.check_operand(&e, start)?;
        Ok(match (negative, e) {
            (false, e) => e,
            (true, Expr::Int(i)) => Expr::Int(i.wrapping_neg()),
            (true, Expr::Float(f)) => Expr::Float(-f),
            (true, e) => Expr::Neg(Box::new(e)),
        })
    }

    /// The items of a list literal, after its `[`.
    fn list(&mut self) -> Result<Expr, OttlError> {
        let mut items = Vec::new();
        if !self.eat_punct("]") {
            loop {
                items.push(self.additive()?);
                if self.eat_punct("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(Expr::List(items))
    }

    fn primary(&mut self) -> Result<Expr, OttlError> {
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return Err(self.error_here("expected a value"));
        };
        self.pos += 1;
        match tok {
            Tok::Punct("(") => {
                let e = self.or()?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Punct("[") => {
                // Counted as nesting: `[[[…` would otherwise recurse without bound (a list
                // inside a list is refused, but only once it is parsed).
                self.enter()?;
                let list = self.list()?;
                self.depth -= 1;
                Ok(list)
            }
            Tok::Punct(p) => Err(err(self.src, at, &format!("unexpected `{p}`"))),
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Int(u) => i64::try_from(u)
                .map(Expr::Int)
                .map_err(|_| err(self.src, at, "integer out of range")),
            Tok::Float(f) => Ok(Expr::Float(f)),
            Tok::Bytes(b) => Ok(Expr::Bytes(b)),
            Tok::Ident(id) => match id.as_str() {
                "nil" => Ok(Expr::Nil),
                "true" => Ok(Expr::Bool(true)),
                "false" => Ok(Expr::Bool(false)),
                "and" | "or" | "not" => Err(err(
                    self.src,
                    at,
                    &format!("expected a value, found `{id}`"),
                )),
                _ if id.starts_with(|c: char| c.is_ascii_uppercase()) => {
                    if self.eat_punct("(") {
                        // OTTL's grammar lets a converter's result be indexed.
                        let call = self.call(&id, at)?;
                        let keys = self.indexes()?;
                        Ok(if keys.is_empty() {
                            call
                        } else {
                            Expr::Keyed(Box::new(call), keys)
                        })
                    } else {
                        enum_value(&id)
                            .map(Expr::Int)
                            .ok_or_else(|| err(self.src, at, &format!("unknown enum {id}")))
                    }
                }
                _ => self.path(id, at),
            },
        }
    }

    /// Puts a call's arguments in their parameters' order: by position, or by name as
    /// pkg/ottl matches a name (its field's name is the name in camel case; one given twice
    /// takes the last). A parameter left without a value is refused if it is required, and
    /// an optional one is left out (each converter here has at most one, the last).
    fn place_arguments(
        &self,
        (name, at): (&str, usize),
        params: &[&str],
        required: usize,
        given: Vec<(Option<(String, usize)>, Expr)>,
    ) -> Result<Vec<Expr>, OttlError> {
        let mut slots: Vec<Option<Expr>> = vec![None; params.len()];
        for (position, (named, value)) in given.into_iter().enumerate() {
            let slot = match named {
                None => position,
                Some((arg, arg_at)) => {
                    let field = go_camel_case(&arg);
                    params.iter().position(|p| *p == field).ok_or_else(|| {
                        err(self.src, arg_at, &format!("no such parameter: {arg}"))
                    })?
                }
            };
            slots[slot] = Some(value);
        }
        if let Some(missing) = slots[..required].iter().position(Option::is_none) {
            return Err(err(
                self.src,
                at,
                &format!(
                    "{name} is missing its argument {}",
                    go_snake_case(params[missing])
                ),
            ));
        }
        Ok(slots.into_iter().map_while(|s| s).collect())
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, OttlError> {
        let Some(&Converter {
            func,
            required: arity,
            params,
            ..
        }) = FUNCS.iter().find(|c| c.name == name)
        else {
            if UNSUPPORTED.contains(&name) {
                return Err(err(
                    self.src,
                    at,
                    &format!("{name} is a pkg/ottl converter Tailgate does not support in conditions (docs/policies.md lists what is)"),
                ));
            }
            let known: Vec<&str> = FUNCS.iter().map(|c| c.name).collect();
            return Err(err(
                self.src,
                at,
                &format!("unknown function {name}; supported: {}", known.join(", ")),
            ));
        };
        let mut given = Vec::new();
        if !self.eat_punct(")") {
            loop {
                let arg_at = self.at();
                if matches!(self.peek(), None | Some(Tok::Punct(")"))) {
                    // `f(a = 1,)` or an unfinished call: no argument here.
                    return Err(self.error_here("expected a value"));
                }
                // `name = value`: pkg/ottl's named argument.
                let named = match (self.peek(), self.toks.get(self.pos + 1)) {
                    (Some(Tok::Ident(n)), Some((Tok::Punct("="), _))) => {
                        if !n.starts_with(|c: char| c.is_ascii_lowercase()) {
                            // OTTL's grammar: a name starts with a lowercase letter.
                            return Err(err(
                                self.src,
                                arg_at,
                                &format!(
                                    "an argument's name must start with a lowercase letter: {n}"
                                ),
                            ));
                        }
                        let n = n.clone();
                        self.pos += 2;
                        Some((n, arg_at))
                    }
                    _ => None,
                };
                if named.is_none() && given.iter().any(|(n, _)| Option::is_some(n)) {
                    return Err(err(
                        self.src,
                        arg_at,
                        "unnamed argument used after named argument",
                    ));
                }
                let value = if self.eat_punct("[") {
                    self.enter()?;
                    let list = self.list()?;
                    self.depth -= 1;
                    list
                } else {
                    self.or()?
                };
                given.push((named, value));
                if self.eat_punct(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let most = params.len();
        if most == 0 {
            // pkg/ottl builds no arguments for a converter without an arguments struct:
            // any given are ignored (here after being read, so they must still parse).
            given.clear();
        }
        if given.len() < arity || given.len() > most {
            let takes = if most == arity {
                format!("{arity}")
            } else {
                format!("{arity} to {most}")
            };
            return Err(err(
                self.src,
                at,
                &format!("{name} takes {takes} argument(s), found {}", given.len()),
            ));
        }
        let mut args = self.place_arguments((name, at), params, arity, given)?;
        if func == Func::IsRootSpan && self.ctx != Context::Span {
            return Err(err(
                self.src,
                at,
                "IsRootSpan is only available in span conditions",
            ));
        }
        let regex = match (func, args.get(1)) {
            (Func::IsMatch, Some(Expr::Str(pattern))) => Some(Box::new(
                crate::go_regex::bytes_regex(pattern)
                    .map_err(|e| err(self.src, at, &format!("invalid regular expression: {e}")))?,
            )),
            // A pattern read at evaluation is compiled there, as pkg/ottl does.
            (Func::IsMatch, Some(Expr::List(_))) => {
                return Err(err(self.src, at, "IsMatch's pattern must be a string"))
            }
            _ => None,
        };
        if func == Func::Substring && args.get(3).is_some_and(|a| !matches!(a, Expr::Bool(_))) {
            // `ottl.Optional[bool]`: a literal, checked when the statement is parsed.
            return Err(err(
                self.src,
                at,
                "Substring's utf8Safe must be true or false",
            ));
        }
        if func == Func::IsInCidr {
            // Literal networks are checked here, as pkg/ottl parses them at load.
            match &args[1] {
                Expr::List(items) => {
                    for item in items {
                        if let Expr::Str(net) = item {
                            if super::cidr::Cidr::parse(net).is_none() {
                                return Err(err(
                                    self.src,
                                    at,
                                    &format!("IsInCIDR: invalid CIDR address: {net}"),
                                ));
                            }
                        }
                    }
                }
                Expr::Str(_) | Expr::Int(_) | Expr::Float(_) | Expr::Bool(_) | Expr::Nil => {
                    return Err(err(self.src, at, "IsInCIDR's networks must be a list"))
                }
                _ => {}
            }
        }
        // Arguments pkg/ottl types as a Go `string` are literals, checked when the
        // condition is parsed.
        let literal = match func {
            Func::Trim => args.get(1),
            Func::Split => args.get(1),
            _ => None,
        };
        if literal.is_some_and(|a| !matches!(a, Expr::Str(_))) {
            return Err(err(
                self.src,
                at,
                &format!("{name}'s second argument must be a string literal"),
            ));
        }
        if let Func::TraceId | Func::SpanId = func {
            return id_literal(func, &args[0]).map_err(|m| err(self.src, at, &m));
        }
        if func == Func::ConvertCase {
            // `toCase` is a Go `string`: a literal, checked at load as pkg/ottl checks it.
            let to = match args.get(1) {
                Some(Expr::Str(case)) if case == "lower" => Func::ToLowerCase,
                Some(Expr::Str(case)) if case == "upper" => Func::ToUpperCase,
                Some(Expr::Str(case)) if case == "snake" => Func::ToSnakeCase,
                Some(Expr::Str(case)) if case == "camel" => Func::ToCamelCase,
                Some(Expr::Str(case)) => {
                    return Err(err(
                        self.src,
                        at,
                        &format!(
                            "invalid case: {case}, allowed cases are: lower, upper, snake, camel"
                        ),
                    ))
                }
                _ => {
                    return Err(err(
                        self.src,
                        at,
                        "ConvertCase's second argument must be a string literal",
                    ))
                }
            };
            args.truncate(1);
            return Ok(Expr::Call(to, args, None));
        }
        // The rule every latency condition holds: parsed here, not for every span.
        if let (Func::Duration, Some(Expr::Str(text))) = (func, args.first()) {
            if let Ok(nanos) = super::time::parse_duration(text) {
                return Ok(Expr::Duration(nanos));
            }
        }
        Ok(Expr::Call(func, args, regex))
    }

    /// `[index]`es after a path or a converter: string keys and integers, signed as OTTL's
    /// lexer reads them (`[-1]` is out of bounds at evaluation, as in pkg/ottl).
    fn indexes(&mut self) -> Result<Vec<Index>, OttlError> {
        let mut indexes = Vec::new();
        while self.eat_punct("[") {
            let sign = match self.peek() {
                Some(Tok::Punct(p @ ("-" | "+")))
                    if matches!(self.toks.get(self.pos + 1), Some((Tok::Int(_), _))) =>
                {
                    let negative = *p == "-";
                    self.pos += 1;
                    Some(negative)
                }
                _ => None,
            };
            match self.peek().cloned() {
                Some(Tok::Str(s)) => indexes.push(Index::Key(s)),
                Some(Tok::Int(u)) => indexes.push(Index::Pos(
                    if sign == Some(true) {
                        0i64.checked_sub_unsigned(u)
                    } else {
                        i64::try_from(u).ok()
                    }
                    .ok_or_else(|| self.error_here("index out of range"))?,
                )),
                _ => return Err(self.error_here("expected a string key or an integer index")),
            }
            self.pos += 1;
            self.expect("]")?;
        }
        Ok(indexes)
    }

    /// A path: dotted names and then `[index]`es, resolved against the context.
    fn path(&mut self, first: String, at: usize) -> Result<Expr, OttlError> {
        let mut names = vec![first];
        while self.eat_punct(".") {
            match self.peek().cloned() {
                Some(Tok::Ident(id)) => {
                    self.pos += 1;
                    names.push(id);
                }
                _ => return Err(self.error_here("expected a name after `.`")),
            }
        }
        let indexes = self.indexes()?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        resolve(self.ctx, &names, indexes)
            .map(|(t, f)| Expr::Path(t, f))
            .map_err(|m| err(self.src, at, &m))
    }
}

/// `TraceID(…)` / `SpanID(…)` of a literal, as pkg/ottl's id converters read their
/// argument: the id's own bytes (`0x…` of 16 or 8 bytes), or its hex as a string (32 or 16
/// characters). Built once here; anything else is refused at load.
fn id_literal(func: Func, arg: &Expr) -> Result<Expr, String> {
    let kind = if func == Func::TraceId {
        IdKind::Trace
    } else {
        IdKind::Span
    };
    let name = func.name();
    let raw: &[u8] = match arg {
        Expr::Bytes(b) => b,
        Expr::Str(s) => s.as_bytes(),
        _ => {
            return Err(format!(
                "{name} takes a literal here (0x… bytes or a hex string)"
            ))
        }
    };
    let n = kind.bytes();
    if raw.len() == n {
        return Ok(Expr::Id(kind, raw.to_vec()));
    }
    if raw.len() == 2 * n {
        // Hex digits only, as Go's hex.Decode (from_str_radix would take a `+`).
        let digit = |c: u8| (c as char).to_digit(16);
        let bytes = raw
            .chunks(2)
            .map(|pair| Some((digit(pair[0])? << 4 | digit(pair[1])?) as u8))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("{name}: invalid hex {:?}", String::from_utf8_lossy(raw)))?;
        return Ok(Expr::Id(kind, bytes));
    }
    Err(format!(
        "{name}: expected {n} or {} bytes, got {}",
        2 * n,
        raw.len()
    ))
}

/// The value of an OTTL enum.
fn enum_value(name: &str) -> Option<i64> {
    Some(match name {
        "SPAN_KIND_UNSPECIFIED" => 0,
        "SPAN_KIND_INTERNAL" => 1,
        "SPAN_KIND_SERVER" => 2,
        "SPAN_KIND_CLIENT" => 3,
        "SPAN_KIND_PRODUCER" => 4,
        "SPAN_KIND_CONSUMER" => 5,
        "STATUS_CODE_UNSET" => 0,
        "STATUS_CODE_OK" => 1,
        "STATUS_CODE_ERROR" => 2,
        _ => return None,
    })
}

/// Resolves a dotted path in a context: the context's own fields bare or with its prefix
/// (`name`, `span.name`), then `resource.…`, `instrumentation_scope.…` (or `scope.…`) and,
/// in span event conditions, the event's span as `span.…`.
fn resolve(ctx: Context, names: &[&str], idx: Vec<Index>) -> Result<(Target, Field), String> {
    let (target, rest): (Target, &[&str]) = match (ctx, names) {
        (_, ["resource", rest @ ..]) => (Target::Resource, rest),
        (_, ["instrumentation_scope" | "scope", rest @ ..]) => (Target::Scope, rest),
        (Context::Span, ["span", rest @ ..]) => (Target::Span, rest),
        (Context::SpanEvent, ["spanevent", rest @ ..]) => (Target::Event, rest),
        (Context::SpanEvent, ["span", rest @ ..]) => (Target::Span, rest),
        (Context::Span, _) => (Target::Span, names),
        (Context::SpanEvent, _) => (Target::Event, names),
    };
    let path = names.join(".");
    let unknown = || format!("unknown path {path:?} in a {} condition", ctx.name());
    let no_index = |f: Field| {
        if idx.is_empty() {
            Ok(f)
        } else {
            Err(format!("path {path:?} takes no index"))
        }
    };
    let attributes = |idx: Vec<Index>| -> Result<Field, String> {
        let mut idx = idx.into_iter();
        match idx.next() {
            None => Ok(Field::Attributes),
            Some(Index::Key(k)) => Ok(Field::Attribute(k, idx.collect())),
            Some(Index::Pos(_)) => Err(format!("{path}: attributes are indexed by a string key")),
        }
    };
    let field = match (target, rest) {
        (_, ["attributes"]) => attributes(idx)?,
        (_, ["dropped_attributes_count"]) => no_index(Field::DroppedAttributesCount)?,
        (Target::Resource | Target::Scope, ["schema_url"]) => no_index(Field::SchemaUrl)?,
        (Target::Span | Target::Event, ["cache"]) => Field::Cache(idx),
        (Target::Resource, _) => return Err(unknown()),
        (Target::Scope, ["name"]) => no_index(Field::Name)?,
        (Target::Scope, ["version"]) => no_index(Field::Version)?,
        (Target::Scope, _) => return Err(unknown()),
        (Target::Event, ["name"]) => no_index(Field::Name)?,
        (Target::Event, ["time_unix_nano"]) => no_index(Field::Time)?,
        (Target::Event, ["time"]) => no_index(Field::TimeValue)?,
        (Target::Event, _) => return Err(unknown()),
        (Target::Span, ["name"]) => no_index(Field::Name)?,
        (Target::Span, ["kind"]) => no_index(Field::Kind)?,
        (Target::Span, ["kind", "string"]) => no_index(Field::KindString)?,
        (Target::Span, ["kind", "deprecated_string"]) => no_index(Field::KindDeprecatedString)?,
        (Target::Span, ["events"]) => no_index(Field::Events)?,
        (Target::Span, ["links"]) => no_index(Field::Links)?,
        (Target::Span, ["status", "code"]) => no_index(Field::StatusCode)?,
        (Target::Span, ["status", "message"]) => no_index(Field::StatusMessage)?,
        (Target::Span, ["trace_id"]) => no_index(Field::TraceId)?,
        (Target::Span, ["trace_id", "string"]) => no_index(Field::TraceIdString)?,
        (Target::Span, ["span_id"]) => no_index(Field::SpanId)?,
        (Target::Span, ["span_id", "string"]) => no_index(Field::SpanIdString)?,
        (Target::Span, ["parent_span_id"]) => no_index(Field::ParentSpanId)?,
        (Target::Span, ["parent_span_id", "string"]) => no_index(Field::ParentSpanIdString)?,
        (Target::Span, ["trace_state"]) => {
            let mut idx = idx.into_iter();
            match (idx.next(), idx.next()) {
                (None, _) => Field::TraceState(None),
                (Some(Index::Key(k)), None) => Field::TraceState(Some(k)),
                _ => return Err(format!("{path}: trace_state takes one string key")),
            }
        }
        (Target::Span, ["start_time_unix_nano"]) => no_index(Field::StartTime)?,
        (Target::Span, ["end_time_unix_nano"]) => no_index(Field::EndTime)?,
        (Target::Span, ["start_time"]) => no_index(Field::StartTimeValue)?,
        (Target::Span, ["end_time"]) => no_index(Field::EndTimeValue)?,
        (Target::Span, ["dropped_events_count"]) => no_index(Field::DroppedEventsCount)?,
        (Target::Span, ["dropped_links_count"]) => no_index(Field::DroppedLinksCount)?,
        (Target::Span, _) => return Err(unknown()),
    };
    Ok((target, field))
}
