//! Evaluating a parsed condition against one span (or span event), read straight off its
//! encoded bytes: only the fields the condition names are read, and string values are
//! views into the buffered request, so evaluating allocates nothing unless a converter
//! builds a new string (`Concat`, `String`, `ToLowerCase`, a map's JSON, …) or compiles a
//! pattern read from the span (`IsMatch`, bounded).
//!
//! Comparisons follow `pkg/ottl`'s comparator: `nil` equals only `nil`; ints and floats
//! compare as numbers; strings, bytes and booleans compare with their own kind; any other
//! mix is unequal (only `!=` is true) and never ordered.

use std::borrow::Cow;
use std::cmp::Ordering;

use tailgate_core::wire::attrs::{next_field_slice as next_field, read_varint};

use super::convert::{self, hex};
use super::parse::{CmpOp, DurationUnit, Expr, Field, Func, Index, MathOp, Target, TimePart};
use super::time;
use super::types::OttlError;

// Values are passed and returned by value on every comparison: keep them at four words.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Value<'static>>() == 32);

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    /// Absent, or `nil`.
    Nil,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// A string (bytes as sent; OTLP strings are UTF-8).
    Str(Cow<'a, [u8]>),
    /// Bytes (ids, `bytes_value`).
    Bytes(Cow<'a, [u8]>),
    /// A map: the message holding it and the field number of its repeated `KeyValue`s.
    Map(&'a [u8], u32),
    /// A list: an `ArrayValue` message, the span's or built by a converter (`Keys`).
    List(Cow<'a, [u8]>),
    /// A trace id (16 bytes) or span id (8): pdata's own types, equal only to an id of the
    /// same kind, never to bytes.
    Id(IdKind, &'a [u8]),
    /// A time (`start_time`, `Now()`, `Unix(…)`): nanoseconds since the Unix epoch, UTC.
    Time(i128),
    /// A duration (`Duration("1s")`, a time minus a time): nanoseconds, Go's `int64`.
    Duration(i64),
    /// A span's events or links (pdata's slices of them, for `Len`): the span message and
    /// the field number of the repeated messages.
    Messages(&'a [u8], u32),
}

pub use super::types::IdKind;

/// One span as a condition sees it: its bytes and its resource's and scope's headers.
#[derive(Debug, Clone, Copy)]
pub struct SpanInput<'a> {
    /// The span message.
    pub span: &'a [u8],
    /// The resource header (the fields of a `ResourceSpans` but its scopes).
    pub resource: &'a [u8],
    /// The scope header (the fields of a `ScopeSpans` but its spans).
    pub scope: &'a [u8],
    /// The span event, for span event conditions.
    pub event: &'a [u8],
}

/// Evaluates a condition to a boolean. A non-boolean result is an error, as in OTTL.
pub fn truth(e: &Expr, input: &SpanInput<'_>) -> Result<bool, OttlError> {
    match e {
        Expr::Or(parts) => {
            for p in parts {
                if truth(p, input)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Expr::And(parts) => {
            for p in parts {
                if !truth(p, input)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Expr::Not(inner) => Ok(!truth(inner, input)?),
        Expr::Cmp(a, op, b) => Ok(compare(&value(a, input)?, *op, &value(b, input)?)),
        other => match value(other, input)? {
            Value::Bool(b) => Ok(b),
            v => Err(OttlError::Eval(format!(
                "expected a boolean, found {}",
                kind(&v)
            ))),
        },
    }
}

fn kind(v: &Value<'_>) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Bool(_) => "a boolean",
        Value::Int(_) => "an int",
        Value::Float(_) => "a double",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Map(..) => "a map",
        Value::List(_) => "a list",
        Value::Id(IdKind::Trace, _) => "a trace id",
        Value::Id(IdKind::Span, _) => "a span id",
        Value::Time(_) => "a time",
        Value::Duration(_) => "a duration",
        Value::Messages(_, SPAN_EVENTS) => "span events",
        Value::Messages(..) => "span links",
    }
}

/// Compares as `pkg/ottl`'s `ValueComparator` does.
pub fn compare(a: &Value<'_>, op: CmpOp, b: &Value<'_>) -> bool {
    let ord = match (a, b) {
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        (Value::Nil, _) | (_, Value::Nil) => {
            return op == CmpOp::Ne;
        }
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Value::Bytes(x), Value::Bytes(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Value::Time(x), Value::Time(y)) => Some(x.cmp(y)),
        (Value::Duration(x), Value::Duration(y)) => Some(x.cmp(y)),
        (Value::Id(kx, x), Value::Id(ky, y)) if kx == ky => {
            let same = id_bytes(*kx, x) == id_bytes(*ky, y);
            return match op {
                CmpOp::Eq => same,
                CmpOp::Ne => !same,
                _ => false,
            };
        }
        (Value::Map(..), Value::Map(..)) | (Value::List(_), Value::List(_)) => {
            // Structural equality of encoded maps and lists: equal bytes are equal values.
            let same = a == b;
            return match op {
                CmpOp::Eq => same,
                CmpOp::Ne => !same,
                _ => false,
            };
        }
        _ => None,
    };
    match (ord, op) {
        (Some(o), CmpOp::Eq) => o == Ordering::Equal,
        (Some(o), CmpOp::Ne) => o != Ordering::Equal,
        (Some(o), CmpOp::Lt) => o == Ordering::Less,
        (Some(o), CmpOp::Le) => o != Ordering::Greater,
        (Some(o), CmpOp::Gt) => o == Ordering::Greater,
        (Some(o), CmpOp::Ge) => o != Ordering::Less,
        // Kinds that do not compare (or NaN): only "not equal" holds.
        (None, op) => op == CmpOp::Ne,
    }
}

/// Evaluates an expression to a value.
pub fn value<'a>(e: &'a Expr, input: &SpanInput<'a>) -> Result<Value<'a>, OttlError> {
    Ok(match e {
        Expr::Nil => Value::Nil,
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Int(i) => Value::Int(*i),
        Expr::Float(f) => Value::Float(*f),
        Expr::Str(s) => Value::Str(Cow::Borrowed(s.as_bytes())),
        Expr::Bytes(b) => Value::Bytes(Cow::Borrowed(b)),
        Expr::Id(k, b) => Value::Id(*k, b),
        Expr::Duration(d) => Value::Duration(*d),
        Expr::Or(_) | Expr::And(_) | Expr::Not(_) | Expr::Cmp(..) => Value::Bool(truth(e, input)?),
        Expr::List(_) => {
            return Err(OttlError::Eval(
                "a list literal is only a converter's argument".into(),
            ))
        }
        Expr::Neg(inner) => match value(inner, input)? {
            Value::Int(i) => Value::Int(i.wrapping_neg()),
            Value::Float(f) => Value::Float(-f),
            v => return Err(OttlError::Eval(format!("cannot negate {}", kind(&v)))),
        },
        Expr::Math(a, op, b) => math(value(a, input)?, *op, value(b, input)?)?,
        Expr::Path(target, field) => path(*target, field, input)?,
        Expr::Call(func, args, regex) => call(*func, args, regex.as_deref(), input)?,
        Expr::Keyed(inner, keys) => match value(inner, input)? {
            // A list a converter built: indexed in place, what is reached copied out.
            Value::List(Cow::Owned(l)) => owned(keyed(Value::List(Cow::Borrowed(&l)), keys)?)?,
            v => keyed(v, keys)?,
        },
    })
}

/// A converter's result indexed, as pkg/ottl indexes one (stricter than a path's lookup:
/// a key missing from a map is an error there, not nil): a map by a string key, a list by
/// a position within it; anything else is an error.
fn keyed<'a>(mut v: Value<'a>, keys: &[Index]) -> Result<Value<'a>, OttlError> {
    let out_of_bounds = |i: i64| OttlError::Eval(format!("index {i} out of bounds"));
    for key in keys {
        v = match (v, key) {
            (Value::Map(m, f), Index::Key(k)) => find_value(m, f, k.as_bytes())
                .map(any_value)
                .ok_or_else(|| OttlError::Eval("key not found in map".into()))?,
            (Value::List(Cow::Borrowed(l)), Index::Pos(i)) => usize::try_from(*i)
                .ok()
                .and_then(|at| list_items(l).nth(at))
                .map(any_value)
                .ok_or_else(|| out_of_bounds(*i))?,
            // Go's `[]byte` indexes to a byte (an int to OTTL's comparisons).
            (Value::Bytes(b), Index::Pos(i)) => usize::try_from(*i)
                .ok()
                .and_then(|at| b.get(at))
                .map(|&byte| Value::Int(i64::from(byte)))
                .ok_or_else(|| out_of_bounds(*i))?,
            // Only a list a converter built is owned, and `Expr::Keyed` indexes it in
            // place (its items borrowed from it).
            (Value::List(Cow::Owned(_)), Index::Pos(_)) => {
                return Err(OttlError::Eval("a built list is indexed in place".into()))
            }
            (other, Index::Key(_)) => {
                return Err(OttlError::Eval(format!(
                    "{} does not support string indexing",
                    kind(&other)
                )))
            }
            (other, Index::Pos(_)) => {
                return Err(OttlError::Eval(format!(
                    "{} does not support int indexing",
                    kind(&other)
                )))
            }
        };
    }
    Ok(v)
}

/// `v` holding nothing borrowed from where it was read. A map cannot be copied out of a
/// built list (`Values(m)[i]` of a map value; indexing through it is done in place): an
/// error.
fn owned<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    Ok(match v {
        Value::Nil => Value::Nil,
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Int(i),
        Value::Float(f) => Value::Float(f),
        Value::Time(t) => Value::Time(t),
        Value::Duration(d) => Value::Duration(d),
        Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
        Value::Bytes(b) => Value::Bytes(Cow::Owned(b.into_owned())),
        Value::List(l) => Value::List(Cow::Owned(l.into_owned())),
        other => {
            return Err(OttlError::Eval(format!(
                "a {} inside a list a converter built is not indexed",
                kind(&other)
            )))
        }
    })
}

/// `a op b` as pkg/ottl's math: ints stay ints, an int with a double is a double; a time
/// plus or minus a duration is a time, a time minus a time a duration, durations add and
/// subtract; anything else is an error.
fn math(a: Value<'_>, op: MathOp, b: Value<'_>) -> Result<Value<'static>, OttlError> {
    let fail = |m: String| Err(OttlError::Eval(m));
    let float = |x: f64, y: f64| -> Result<Value<'static>, OttlError> {
        Ok(Value::Float(match op {
            MathOp::Add => x + y,
            MathOp::Sub => x - y,
            MathOp::Mul => x * y,
            MathOp::Div => {
                if y == 0.0 {
                    return Err(OttlError::Eval("division by zero".into()));
                }
                x / y
            }
        }))
    };
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(Value::Int(match op {
            MathOp::Add => x.wrapping_add(y),
            MathOp::Sub => x.wrapping_sub(y),
            MathOp::Mul => x.wrapping_mul(y),
            MathOp::Div => {
                if y == 0 {
                    return Err(OttlError::Eval("division by zero".into()));
                }
                x.wrapping_div(y)
            }
        })),
        (Value::Int(x), Value::Float(y)) => float(x as f64, y),
        (Value::Float(x), Value::Int(y)) => float(x, y as f64),
        (Value::Float(x), Value::Float(y)) => float(x, y),
        (Value::Time(t), b) => match (op, b) {
            (MathOp::Add, Value::Duration(d)) => Ok(Value::Time(t + i128::from(d))),
            (MathOp::Sub, Value::Duration(d)) => Ok(Value::Time(t - i128::from(d))),
            (MathOp::Sub, Value::Time(u)) => Ok(Value::Duration(time::sub(t, u))),
            (MathOp::Add | MathOp::Sub, b) => fail(format!(
                "a time takes a duration (or, subtracted, a time), found {}",
                kind(&b)
            )),
            _ => fail("only + and - apply to times and durations".into()),
        },
        (Value::Duration(d), b) => match (op, b) {
            (MathOp::Add, Value::Duration(e)) => Ok(Value::Duration(d.wrapping_add(e))),
            (MathOp::Sub, Value::Duration(e)) => Ok(Value::Duration(d.wrapping_sub(e))),
            (MathOp::Add, Value::Time(t)) => Ok(Value::Time(t + i128::from(d))),
            (MathOp::Add | MathOp::Sub, b) => fail(format!(
                "a duration takes a duration (or, added, a time), found {}",
                kind(&b)
            )),
            _ => fail("only + and - apply to times and durations".into()),
        },
        (a, b) => fail(format!(
            "math needs numbers, times or durations, found {} and {}",
            kind(&a),
            kind(&b)
        )),
    }
}

/// A value as OTTL's string-like getter writes it (`String`, `Concat`, `IsMatch`): `None`
/// for `nil`; strings as they are, bytes as hex, and anything else as Go's `json.Marshal`
/// writes it (maps and lists included; a NaN or infinite double has no JSON and fails).
fn to_string(v: &Value<'_>) -> Result<Option<Vec<u8>>, OttlError> {
    Ok(Some(match v {
        Value::Nil => return Ok(None),
        Value::Bool(b) => b.to_string().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => json_float(*f)?.into_bytes(),
        Value::Str(s) => s.to_vec(),
        Value::Bytes(b) => hex(b).into_bytes(),
        // pdata's TraceID and SpanID are byte arrays, not slices: OTTL's string getter
        // falls through to Go's json.Marshal, which writes an array's numbers (`[1,2,…]`),
        // not hex (`trace_id.string` is the hex form). An absent id is all zeros.
        Value::Id(k, b) => {
            let items: Vec<String> = id_bytes(*k, b).iter().map(u8::to_string).collect();
            format!("[{}]", items.join(",")).into_bytes()
        }
        // Go's JSON of a time.Time (quoted RFC 3339) and of a time.Duration (its
        // nanoseconds), as OTTL's string getter writes values of other types.
        Value::Time(t) => match time::json(*t) {
            Some(text) => text.into_bytes(),
            None => {
                return Err(OttlError::Eval(
                    "json: a time outside years 0 to 9999 has no JSON form".into(),
                ))
            }
        },
        Value::Duration(d) => d.to_string().into_bytes(),
        Value::Map(..) | Value::List(_) => {
            let mut out = String::new();
            write_json(v, &mut out, 0)?;
            out.into_bytes()
        }
        Value::Messages(..) => return Ok(None),
    }))
}

/// An id's bytes as pdata's fixed-size array holds them: an absent id is all zeros.
fn id_bytes(kind: IdKind, b: &[u8]) -> &[u8] {
    const ZEROS: [u8; 16] = [0; 16];
    if b.is_empty() {
        &ZEROS[..kind.bytes()]
    } else {
        b
    }
}

/// `s[from..to]`, borrowed where `s` is.
fn sub_str(s: Cow<'_, [u8]>, from: usize, to: usize) -> Cow<'_, [u8]> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(&b[from..to]),
        Cow::Owned(v) => Cow::Owned(v[from..to].to_vec()),
    }
}

/// Deepest nesting of maps and lists written as JSON (a span may nest them as deep as
/// its bytes allow; the writer recurses).
const MAX_JSON_DEPTH: usize = 64;

/// `v` as Go's `json.Marshal` writes pdata's `AsRaw()` of it: map keys sorted (the last of
/// duplicate keys wins, as `AsRaw` builds a Go map), bytes in base64, an empty value `null`.
fn write_json(v: &Value<'_>, out: &mut String, depth: usize) -> Result<(), OttlError> {
    if depth > MAX_JSON_DEPTH {
        return Err(OttlError::Eval(format!(
            "a map or list nested more than {MAX_JSON_DEPTH} deep has no string form here"
        )));
    }
    match v {
        Value::Map(msg, field) => {
            // Latest first, then a stable sort by key: the first of each key is the last
            // written, the one to keep (n log n, however many keys a span sends).
            let mut entries: Vec<(&[u8], &[u8])> = map_entries(msg, *field).collect();
            entries.reverse();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            entries.dedup_by(|later, first| later.0 == first.0);
            out.push('{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(k, out);
                out.push(':');
                write_json(&any_value(val), out, depth + 1)?;
            }
            out.push('}');
        }
        Value::List(msg) => {
            out.push('[');
            for (i, item) in list_items(msg).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(&any_value(item), out, depth + 1)?;
            }
            out.push(']');
        }
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => out.push_str(&json_float(*f)?),
        Value::Str(s) => json_string(s, out),
        Value::Bytes(b) => {
            use base64::Engine as _;
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        // Not found inside an attribute value.
        Value::Id(..) | Value::Time(_) | Value::Duration(_) | Value::Messages(..) => {
            out.push_str("null")
        }
    }
    Ok(())
}

/// A double as Go's `encoding/json` writes one: the shortest exact form, without exponent
/// from 1e-6 up to 1e21 and with one outside (`1e+21`, `1e-7`); NaN and infinities fail.
fn json_float(f: f64) -> Result<String, OttlError> {
    if !f.is_finite() {
        return Err(OttlError::Eval(format!("json: unsupported value: {f}")));
    }
    let abs = f.abs();
    if abs == 0.0 || (1e-6..1e21).contains(&abs) {
        return Ok(format!("{f}"));
    }
    // Rust writes `1e21` and `1.5e-7`; Go `1e+21` and `1.5e-7`.
    let text = format!("{f:e}");
    Ok(match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text,
    })
}

/// `s` as a JSON string the way Go's `encoding/json` escapes it: quotes, backslashes and
/// control characters (`\n \r \t \b \f`, else `\u0001`-style), HTML's `< > &` and U+2028/9
/// as a `\u` escape of four hex digits (`\u003c`), each byte that is not UTF-8 as `\ufffd`.
fn json_string(s: &[u8], out: &mut String) {
    out.push('"');
    for chunk in s.utf8_chunks() {
        json_chars(chunk.valid(), out);
        // Go writes the escape once for each byte that is not UTF-8.
        for _ in chunk.invalid() {
            out.push_str("\\ufffd");
        }
    }
    out.push('"');
}

/// Valid text inside a JSON string, escaped as Go's `encoding/json` does.
fn json_chars(text: &str, out: &mut String) {
    use std::fmt::Write as _;
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                write!(out, "\\u{:04x}", c as u32).ok();
            }
            c => out.push(c),
        }
    }
}

/// A string argument, or `None` for `nil`.
fn string_arg<'a>(v: &'a Value<'_>, func: Func) -> Result<Option<&'a [u8]>, OttlError> {
    match v {
        Value::Str(s) => Ok(Some(s)),
        Value::Nil => Ok(None),
        other => Err(expects(func, "a string", other)),
    }
}

/// Longest `IsMatch` pattern read from a span (not written in the condition): the data
/// chooses it, and it is compiled for every evaluation.
const MAX_READ_PATTERN: usize = 1024;
/// The compiled size such a pattern may reach (the regex crate's own default is 10 MiB).
const READ_PATTERN_SIZE_LIMIT: usize = 256 * 1024;

/// One OTTL converter or predicate call: the arguments are evaluated lazily, as OTTL does.
fn call<'a>(
    func: Func,
    args: &'a [Expr],
    regex: Option<&regex::bytes::Regex>,
    input: &SpanInput<'a>,
) -> Result<Value<'a>, OttlError> {
    let arg = |i: usize| -> Result<Value<'a>, OttlError> {
        match args.get(i) {
            Some(e) => value(e, input),
            None => Ok(Value::Nil),
        }
    };
    Ok(match func {
        Func::IsRootSpan => {
            // pdata: an absent or all-zero parent span id is empty.
            let f = SpanFieldsRead::new(input.span);
            Value::Bool(f.parent_span_id.iter().all(|&b| b == 0))
        }
        Func::IsMatch => match regex {
            Some(re) => is_match(&arg(0)?, re)?,
            // A pattern the condition reads (not a literal): compiled for this
            // evaluation, as pkg/ottl compiles a pattern that is not a literal.
            None => {
                let target = arg(0)?;
                let pattern = match arg(1)? {
                    Value::Str(p) if p.len() <= MAX_READ_PATTERN => {
                        String::from_utf8_lossy(&p).into_owned()
                    }
                    Value::Str(p) => {
                        return Err(OttlError::Eval(format!(
                            "IsMatch: a pattern read from the span is {} bytes, more than {MAX_READ_PATTERN}",
                            p.len()
                        )))
                    }
                    other => return Err(expects(func, "a string pattern", &other)),
                };
                let re = crate::go_regex::bytes_regex_bounded(&pattern, READ_PATTERN_SIZE_LIMIT)
                    .map_err(|e| {
                        OttlError::Eval(format!("IsMatch: invalid regular expression: {e}"))
                    })?;
                is_match(&target, &re)?
            }
        },
        Func::IsString => Value::Bool(matches!(arg(0)?, Value::Str(_))),
        Func::IsInt => Value::Bool(matches!(arg(0)?, Value::Int(_))),
        Func::IsDouble => Value::Bool(matches!(arg(0)?, Value::Float(_))),
        Func::IsBool => Value::Bool(matches!(arg(0)?, Value::Bool(_))),
        Func::IsMap => Value::Bool(matches!(arg(0)?, Value::Map(..))),
        // A list literal is a list (`[]any`) to these two, as in pkg/ottl.
        // pdata's slices of events and links are lists to IsList (func_is_list.go).
        Func::IsList => Value::Bool(
            matches!(args.first(), Some(Expr::List(_)))
                || matches!(arg(0)?, Value::List(_) | Value::Messages(..)),
        ),
        Func::Len => match args.first() {
            Some(Expr::List(items)) => Value::Int(items.len() as i64),
            _ => len(arg(0)?)?,
        },
        Func::Int => to_int(arg(0)?)?,
        Func::Double => to_double(arg(0)?)?,
        Func::String => match arg(0)? {
            Value::Str(s) => Value::Str(s),
            other => to_string(&other)?.map_or(Value::Nil, |s| Value::Str(Cow::Owned(s))),
        },
        Func::Concat => concat(args, &arg(1)?, input)?,
        Func::HasPrefix | Func::HasSuffix => affix(func, &arg(0)?, &arg(1)?)?,
        Func::ToLowerCase | Func::ToUpperCase => change_case(func, arg(0)?)?,
        Func::ContainsValue => contains_value(args, &arg(1)?, input)?,
        Func::Keys => keys(arg(0)?)?,
        Func::Values => values(arg(0)?)?,
        Func::Coalesce => coalesce(args, input)?,
        Func::Trim => {
            // A literal (checked at load); pkg/ottl trims spaces when it is left out.
            let cutset = match args.get(1) {
                Some(Expr::Str(c)) => c.as_str(),
                _ => " ",
            };
            trim(arg(0)?, cutset)?
        }
        Func::Split => match args.get(1) {
            // A literal (checked at load).
            Some(Expr::Str(sep)) => split(arg(0)?, sep.as_bytes())?,
            _ => return Err(OttlError::Eval("Split takes a literal delimiter".into())),
        },
        Func::ParseInt => {
            let target = arg(0)?;
            parse_int(&target, arg(1)?)?
        }
        Func::Now => Value::Time(now()),
        Func::Duration => match arg(0)? {
            Value::Str(s) => Value::Duration(
                time::parse_duration(&String::from_utf8_lossy(&s)).map_err(OttlError::Eval)?,
            ),
            other => return Err(expects(func, "a string", &other)),
        },
        Func::Unix => {
            let seconds = int_arg(func, arg(0)?)?;
            let nanos = if args.len() > 1 {
                int_arg(func, arg(1)?)?
            } else {
                0
            };
            Value::Time(time::unix(seconds, nanos))
        }
        Func::TimePart(part) => time_part(part, time_arg(func, arg(0)?)?),
        Func::DurationIn(unit) => duration_in(unit, duration_arg(func, arg(0)?)?),
        Func::TruncateTime => Value::Time(time::truncate(
            time_arg(func, arg(0)?)?,
            duration_arg(func, arg(1)?)?,
        )),
        Func::TrimPrefix | Func::TrimSuffix => {
            let (target, affix) = (arg(0)?, arg(1)?);
            trim_affix(func, target, &affix)?
        }
        Func::Index => index(arg(0)?, &arg(1)?)?,
        // Literal ids are built at load (`Expr::Id`), and `ConvertCase` is read as the
        // converter its case names; this is not reached.
        Func::TraceId | Func::SpanId | Func::ConvertCase => {
            return Err(OttlError::Eval(format!("{} takes a literal", func.name())))
        }
        // A list literal is a Go `[]any` to it.
        Func::IsEmpty => match args.first() {
            Some(Expr::List(items)) => Value::Bool(items.is_empty()),
            _ => Value::Bool(is_empty(&arg(0)?)),
        },
        Func::Bool => to_bool(arg(0)?)?,
        Func::Hash(kind) => match arg(0)? {
            Value::Str(s) => match convert::hash(kind, &s) {
                convert::Hashed::Hex(h) => Value::Str(Cow::Owned(h.into_bytes())),
                convert::Hashed::Int(i) => Value::Int(i),
            },
            other => return Err(expects(func, "a string", &other)),
        },
        Func::Hex => hex_of(arg(0)?)?,
        Func::Log => log(arg(0)?)?,
        Func::ToSnakeCase | Func::ToCamelCase => match arg(0)? {
            Value::Str(s) => Value::Str(Cow::Owned(if func == Func::ToSnakeCase {
                convert::snake_case(&s)
            } else {
                convert::camel_case(&s)
            })),
            // As pkg/ottl's StringGetter, the message names no converter (`ConvertCase` is
            // read as these two, so naming one misnamed it).
            other => {
                return Err(OttlError::Eval(format!(
                    "expected a string, found {}",
                    kind(&other)
                )))
            }
        },
        Func::IsInCidr => is_in_cidr(args, arg(0)?, input)?,
        Func::Substring => {
            let (start, length) = (arg(1)?, arg(2)?);
            // A literal (checked at load).
            let utf8_safe = matches!(args.get(3), Some(Expr::Bool(true)));
            substring(arg(0)?, &start, &length, utf8_safe)?
        }
    })
}

/// `Hex(v)`: pkg/ottl's byte-slice-like getter reads bytes and strings as their bytes, an
/// int or a double as its eight big-endian bytes and a boolean as one byte; `nil` is `""`.
fn hex_of<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    let text = match v {
        Value::Nil => String::new(),
        Value::Str(b) | Value::Bytes(b) => hex(&b),
        Value::Int(i) => hex(&i.to_be_bytes()),
        Value::Float(f) => hex(&f.to_bits().to_be_bytes()),
        Value::Bool(b) => hex(&[u8::from(b)]),
        other => {
            return Err(expects(
                Func::Hex,
                "bytes, a string, a number or a boolean",
                &other,
            ))
        }
    };
    Ok(Value::Str(Cow::Owned(text.into_bytes())))
}

/// `Log(x)`: the natural logarithm of a float-like value (a number, a string read as Go's
/// `ParseFloat` reads it, a boolean as 1 or 0), which must be above zero.
fn log<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    let Some(x) = float_like(Func::Log, v)? else {
        return Err(OttlError::Eval("Log: invalid input: <nil>".into()));
    };
    if x <= 0.0 {
        return Err(OttlError::Eval(format!(
            "Log: invalid input: expected number greater than zero but got {x}"
        )));
    }
    Ok(Value::Float(x.ln()))
}

/// The current time, as `Now()`.
fn now() -> i128 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

/// A converter's argument of the wrong kind, as pkg/ottl's typed getters refuse it (`nil`
/// included).
fn expects(func: Func, what: &str, found: &Value<'_>) -> OttlError {
    OttlError::Eval(format!(
        "{} expects {what}, found {}",
        func.name(),
        kind(found)
    ))
}

/// An `IntGetter` argument: an int, nothing else.
fn int_arg(func: Func, v: Value<'_>) -> Result<i64, OttlError> {
    match v {
        Value::Int(i) => Ok(i),
        other => Err(expects(func, "an int", &other)),
    }
}

/// A `TimeGetter` argument.
fn time_arg(func: Func, v: Value<'_>) -> Result<i128, OttlError> {
    match v {
        Value::Time(t) => Ok(t),
        other => Err(expects(func, "a time", &other)),
    }
}

/// A `DurationGetter` argument.
fn duration_arg(func: Func, v: Value<'_>) -> Result<i64, OttlError> {
    match v {
        Value::Duration(d) => Ok(d),
        other => Err(expects(func, "a duration", &other)),
    }
}

/// `UnixNano(t)` … `UnixSeconds(t)`, `Year(t)` … `Weekday(t)`: an int.
fn time_part<'a>(part: TimePart, t: i128) -> Value<'a> {
    let c = || time::civil(t);
    Value::Int(match part {
        TimePart::UnixSeconds => time::unix_in(t, time::SECOND),
        TimePart::UnixMilli => time::unix_in(t, time::MILLISECOND),
        TimePart::UnixMicro => time::unix_in(t, time::MICROSECOND),
        TimePart::UnixNano => time::unix_in(t, 1),
        TimePart::Year => c().year,
        TimePart::Month => c().month,
        TimePart::Day => c().day,
        TimePart::Hour => c().hour,
        TimePart::Minute => c().minute,
        TimePart::Second => c().second,
        TimePart::Nanosecond => c().nanosecond,
        TimePart::Weekday => c().weekday,
    })
}

/// `Nanoseconds(d)`, `Microseconds(d)`, `Milliseconds(d)` (ints, truncated) and
/// `Seconds(d)`, `Minutes(d)`, `Hours(d)` (doubles), as Go's `Duration` methods.
fn duration_in<'a>(unit: DurationUnit, d: i64) -> Value<'a> {
    match unit {
        DurationUnit::Nanoseconds => Value::Int(d),
        DurationUnit::Microseconds => Value::Int(time::whole(d, time::MICROSECOND)),
        DurationUnit::Milliseconds => Value::Int(time::whole(d, time::MILLISECOND)),
        DurationUnit::Seconds => Value::Float(time::fractional(d, time::SECOND)),
        DurationUnit::Minutes => Value::Float(time::fractional(d, time::MINUTE)),
        DurationUnit::Hours => Value::Float(time::fractional(d, time::HOUR)),
    }
}

/// `Substring(target, start, length[, utf8Safe])`, as pkg/ottl: `start` at least 0 and
/// `length` more than 0 (both ints), the target a string (never nil), the range inside it;
/// counted in bytes, or in characters with `utf8Safe`.
fn substring<'a>(
    target: Value<'a>,
    start: &Value<'_>,
    length: &Value<'_>,
    utf8_safe: bool,
) -> Result<Value<'a>, OttlError> {
    let int = |v: &Value<'_>| match v {
        Value::Int(i) => Ok(*i),
        other => Err(OttlError::Eval(format!(
            "Substring expects an int, found {}",
            kind(other)
        ))),
    };
    let start = int(start)?;
    if start < 0 {
        return Err(OttlError::Eval(format!(
            "invalid start for substring function, {start} cannot be negative"
        )));
    }
    let length = int(length)?;
    if length <= 0 {
        return Err(OttlError::Eval(format!(
            "invalid length for substring function, {length} cannot be negative or zero"
        )));
    }
    let s = match target {
        Value::Str(s) => s,
        other => {
            return Err(OttlError::Eval(format!(
                "Substring expects a string, found {}",
                kind(&other)
            )))
        }
    };
    let out_of_range = || {
        OttlError::Eval(format!(
            "invalid range for substring function, start({start})+length({length}) cannot be greater than the length of target string({})",
            s.len()
        ))
    };
    let (start, length) = (start as u64, length as u64);
    let (from, to) = if utf8_safe {
        // By character (OTLP strings are UTF-8): the byte offsets of the `start`-th and
        // the `start + length`-th, or the end.
        let text = std::str::from_utf8(&s).map_err(|_| out_of_range())?;
        let mut bounds = text
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(text.len()));
        let from = bounds.nth(start as usize).ok_or_else(out_of_range)?;
        let to = bounds.nth(length as usize - 1).ok_or_else(out_of_range)?;
        (from, to)
    } else {
        let len = s.len() as u64;
        if start > len || length > len - start {
            return Err(out_of_range());
        }
        (start as usize, (start + length) as usize)
    };
    Ok(Value::Str(sub_str(s, from, to)))
}

/// `TrimPrefix(target, prefix)` and `TrimSuffix(target, suffix)`, as Go's `strings`:
/// both strings (never nil); the target unchanged when it does not start (end) so.
fn trim_affix<'a>(
    func: Func,
    target: Value<'a>,
    affix: &Value<'_>,
) -> Result<Value<'a>, OttlError> {
    let Value::Str(t) = target else {
        return Err(expects(func, "a string", &target));
    };
    let Value::Str(a) = affix else {
        return Err(expects(func, "a string", affix));
    };
    let (from, to) = if func == Func::TrimPrefix {
        if t.starts_with(a) {
            (a.len(), t.len())
        } else {
            (0, t.len())
        }
    } else if t.ends_with(a) {
        (0, t.len() - a.len())
    } else {
        (0, t.len())
    };
    Ok(Value::Str(sub_str(t, from, to)))
}

/// `Index(source, value)`, as pkg/ottl: in a string, the byte offset of the first
/// occurrence of a string (`-1` when absent); in a list, the position of the first item
/// equal to `value` by OTTL's comparison (`-1`); any other source is an error.
fn index<'a>(source: Value<'_>, value: &Value<'_>) -> Result<Value<'a>, OttlError> {
    match source {
        Value::Str(s) => {
            let Value::Str(v) = value else {
                return Err(OttlError::Eval(
                    "Index: when source is a string, value must also be a string".into(),
                ));
            };
            // Linear in both, as Go's strings.Index, whichever of them the span supplies.
            let at = memchr::memmem::find(&s, v);
            Ok(Value::Int(at.map_or(-1, |i| i as i64)))
        }
        Value::List(l) => Ok(Value::Int(
            list_items(&l)
                .position(|item| compare(&any_value(item), CmpOp::Eq, value))
                .map_or(-1, |i| i as i64),
        )),
        other => Err(expects(Func::Index, "a string or a list", &other)),
    }
}

/// `IsMatch(target, pattern)`: a nil target does not match; numbers and booleans match as
/// their string forms.
fn is_match<'a>(target: &Value<'_>, re: &regex::bytes::Regex) -> Result<Value<'a>, OttlError> {
    Ok(match target {
        Value::Nil => Value::Bool(false),
        Value::Str(s) => Value::Bool(re.is_match(s)),
        other => match to_string(other)? {
            Some(s) => Value::Bool(re.is_match(&s)),
            None => {
                return Err(OttlError::Eval(format!(
                    "IsMatch cannot match {}",
                    kind(other)
                )))
            }
        },
    })
}

/// `Len(v)`: as Go's len, strings in bytes.
fn len<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    Ok(match v {
        Value::Str(s) => Value::Int(s.len() as i64),
        Value::Bytes(b) => Value::Int(b.len() as i64),
        Value::Map(msg, field) => Value::Int(map_entries(msg, field).count() as i64),
        Value::Messages(msg, field) => Value::Int(messages(msg, field).count() as i64),
        Value::List(msg) => Value::Int(list_items(&msg).count() as i64),
        other => {
            return Err(OttlError::Eval(format!(
                "Len cannot measure {}",
                kind(&other)
            )))
        }
    })
}

/// `IsEmpty(v)`, as pkg/ottl reads the value its getter gives: `nil`; Go's zero value of a
/// scalar (`""`, `0`, `0.0` but not `-0.0`, whose bits are not zero, `false`, a zero
/// duration, an all-zero id, so an absent parent span id too); a map, list or bytes value
/// with nothing in it. A time is never empty (no time OTTL makes is Go's zero time, which
/// also needs a nil location), and nor are a span's events or links (pdata's slices of
/// them are structs holding pointers, never Go's zero value, whatever their length).
fn is_empty(v: &Value<'_>) -> bool {
    match v {
        Value::Nil => true,
        Value::Bool(b) => !b,
        Value::Int(i) => *i == 0,
        Value::Float(f) => f.to_bits() == 0,
        Value::Str(s) | Value::Bytes(s) => s.is_empty(),
        Value::Map(msg, field) => map_entries(msg, *field).next().is_none(),
        Value::List(list) => list_items(list).next().is_none(),
        Value::Id(_, id) => id.iter().all(|&b| b == 0),
        Value::Duration(d) => *d == 0,
        Value::Time(_) | Value::Messages(..) => false,
    }
}

/// `Int(v)`, as pkg/ottl's `IntLikeGetter`: `nil` stays `nil`, and so does a string that
/// is not a decimal integer; a value of another kind (bytes, a map, a time) is an error.
fn to_int<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    Ok(match v {
        Value::Nil => Value::Nil,
        Value::Int(i) => Value::Int(i),
        Value::Float(f) => Value::Int(f as i64),
        Value::Bool(b) => Value::Int(i64::from(b)),
        Value::Str(s) => std::str::from_utf8(&s)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .map_or(Value::Nil, Value::Int),
        other => {
            return Err(expects(
                Func::Int,
                "a number, a string or a boolean",
                &other,
            ))
        }
    })
}

/// `Bool(v)`, as pkg/ottl's `BoolLikeGetter`: `nil` stays `nil`; a number is true when not
/// 0; a string is read as Go's `strconv.ParseBool` reads it (`1`, `t`, `T`, `TRUE`,
/// `true`, `True` and their false forms), anything else an error, as is a value of another
/// kind.
fn to_bool<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    Ok(match v {
        Value::Nil => Value::Nil,
        Value::Bool(b) => Value::Bool(b),
        Value::Int(i) => Value::Bool(i != 0),
        Value::Float(f) => Value::Bool(f != 0.0),
        Value::Str(s) => match &s[..] {
            b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => Value::Bool(true),
            b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => Value::Bool(false),
            _ => {
                return Err(OttlError::Eval(format!(
                    "Bool: {:?} is not a boolean",
                    String::from_utf8_lossy(&s)
                )))
            }
        },
        other => {
            return Err(expects(
                Func::Bool,
                "a boolean, a number or a string",
                &other,
            ))
        }
    })
}

/// `IsInCIDR(target, networks)`: the target must be a string (else an error, as pkg/ottl's
/// `StringGetter`); one that is not an IP address is in no network; a network that is not
/// a CIDR is an error.
fn is_in_cidr<'a>(
    args: &'a [Expr],
    target: Value<'_>,
    input: &SpanInput<'a>,
) -> Result<Value<'a>, OttlError> {
    let Value::Str(target) = target else {
        return Err(expects(Func::IsInCidr, "a string", &target));
    };
    let Some(ip) = std::str::from_utf8(&target)
        .ok()
        .and_then(super::cidr::ip_bytes)
    else {
        return Ok(Value::Bool(false));
    };
    let within = |net: &Value<'_>| -> Result<bool, OttlError> {
        let Value::Str(net) = net else {
            return Err(expects(Func::IsInCidr, "networks of strings", net));
        };
        let text = String::from_utf8_lossy(net);
        super::cidr::Cidr::parse(&text)
            .map(|c| c.contains(&ip))
            .ok_or_else(|| OttlError::Eval(format!("IsInCIDR: invalid CIDR address: {text}")))
    };
    match any_listed(args.get(1), input, within)? {
        Ok(found) => Ok(Value::Bool(found)),
        Err(Value::Nil) => Err(OttlError::Eval("IsInCIDR: networks cannot be nil".into())),
        Err(other) => Err(expects(Func::IsInCidr, "a list of networks", &other)),
    }
}

/// `Double(v)`, as pkg/ottl's `FloatLikeGetter`: `nil` stays `nil`; a string that is not a
/// number is an error (Go's `strconv.ParseFloat` fails), as is a value of another kind.
fn to_double<'a>(v: Value<'_>) -> Result<Value<'a>, OttlError> {
    Ok(float_like(Func::Double, v)?.map_or(Value::Nil, Value::Float))
}

/// pkg/ottl's float-like getter, for `func`: `nil` is `None`; an int, a double, a boolean
/// (1 or 0) and a string Go's `ParseFloat` reads are numbers; anything else is an error.
fn float_like(func: Func, v: Value<'_>) -> Result<Option<f64>, OttlError> {
    Ok(Some(match v {
        Value::Nil => return Ok(None),
        Value::Int(i) => i as f64,
        Value::Float(f) => f,
        Value::Bool(b) => f64::from(u8::from(b)),
        Value::Str(s) => match std::str::from_utf8(&s).ok().and_then(parse_go_float) {
            Some(f) => f,
            None => {
                return Err(OttlError::Eval(format!(
                    "{}: {:?} is not a number",
                    func.name(),
                    String::from_utf8_lossy(&s)
                )))
            }
        },
        other => return Err(expects(func, "a number, a string or a boolean", &other)),
    }))
}

/// A decimal float as Go's `strconv.ParseFloat(s, 64)` reads it: Rust's grammar (which
/// also takes `inf`, `infinity` and `nan` in any case, as Go), plus underscores between
/// digits; a finite number too large for a double is out of range (`None`), not infinity.
/// Go's hexadecimal floats (`0x1p-2`) are not read.
pub(super) fn parse_go_float(text: &str) -> Option<f64> {
    let digits_around = |i: usize| {
        let b = text.as_bytes();
        i > 0 && b[i - 1].is_ascii_digit() && b.get(i + 1).is_some_and(u8::is_ascii_digit)
    };
    let f: f64 = if text.contains('_') {
        if !text.match_indices('_').all(|(i, _)| digits_around(i)) {
            return None;
        }
        text.replace('_', "").parse().ok()?
    } else {
        text.parse().ok()?
    };
    let named = text
        .trim_start_matches(['+', '-'])
        .to_ascii_lowercase()
        .starts_with("inf");
    (f.is_finite() || f.is_nan() || named).then_some(f)
}

/// Largest string `Concat` builds.
const MAX_CONCAT: usize = 4 << 20;

/// `Concat([items], delimiter)`: each item in its string form, nil as Go prints it.
fn concat<'a>(
    args: &'a [Expr],
    delim: &Value<'_>,
    input: &SpanInput<'a>,
) -> Result<Value<'a>, OttlError> {
    let Some(delim) = string_arg(delim, Func::Concat)? else {
        return Err(OttlError::Eval("Concat's delimiter is nil".into()));
    };
    let mut out = Vec::new();
    let mut push = |i: usize, v: Value<'_>| -> Result<(), OttlError> {
        if i > 0 {
            out.extend_from_slice(delim);
        }
        match v {
            // As Go's fmt prints a nil.
            Value::Nil => out.extend_from_slice(b"<nil>"),
            v => out.extend_from_slice(&to_string(&v)?.unwrap_or_default()),
        }
        // A list and a delimiter both read from the span could multiply into far more
        // than the span holds.
        if out.len() > MAX_CONCAT {
            return Err(OttlError::Eval(format!(
                "Concat: the result passes {MAX_CONCAT} bytes"
            )));
        }
        Ok(())
    };
    match args.first() {
        Some(Expr::List(items)) => {
            for (i, item) in items.iter().enumerate() {
                push(i, value(item, input)?)?;
            }
        }
        // A list the condition reads (`Concat(attributes["tags"], ",")`).
        Some(e) => match value(e, input)? {
            Value::List(l) => {
                for (i, item) in list_items(&l).enumerate() {
                    push(i, any_value(item))?;
                }
            }
            other => return Err(expects(Func::Concat, "a list", &other)),
        },
        None => return Err(OttlError::Eval("Concat takes a list".into())),
    }
    Ok(Value::Str(Cow::Owned(out)))
}

/// `Keys(map)`: the map's keys, in its order, as a list of strings. Anything but a map,
/// nil included, is an error, as OTTL's `PMapGetter` makes it.
fn keys<'a>(target: Value<'_>) -> Result<Value<'a>, OttlError> {
    use tailgate_core::wire::span_fields::put_len_field;
    let Value::Map(msg, field) = target else {
        return Err(expects(Func::Keys, "a map", &target));
    };
    // An `ArrayValue`'s `values` (field 1), each an `AnyValue` with `string_value` (1).
    let (mut out, mut item) = (Vec::new(), Vec::new());
    for (key, _) in map_entries(msg, field) {
        item.clear();
        put_len_field(&mut item, 1, key);
        put_len_field(&mut out, 1, &item);
    }
    Ok(Value::List(Cow::Owned(out)))
}

/// `Values(map)`: the map's values, in its order, as a list (each value as the span holds
/// it, which is what pkg/ottl's round trip through Go values gives). Anything but a map,
/// nil included, is an error.
fn values<'a>(target: Value<'_>) -> Result<Value<'a>, OttlError> {
    use tailgate_core::wire::span_fields::put_len_field;
    let Value::Map(msg, field) = target else {
        return Err(expects(Func::Values, "a map", &target));
    };
    let mut out = Vec::new();
    for (_, value) in map_entries(msg, field) {
        put_len_field(&mut out, 1, value);
    }
    Ok(Value::List(Cow::Owned(out)))
}

/// `Coalesce(list)`, as pkg/ottl's (a `SliceGetter`): the first item that is not nil
/// (nil when every one is). A list literal's items are evaluated in order until then, an
/// item's error ending it; a list the span holds (or a converter builds) is read whole; a
/// nil list is nil, an empty one an error, anything else an error.
fn coalesce<'a>(args: &'a [Expr], input: &SpanInput<'a>) -> Result<Value<'a>, OttlError> {
    let empty = || OttlError::Eval("Coalesce requires at least one value".into());
    if let Some(Expr::List(items)) = args.first() {
        if items.is_empty() {
            return Err(empty());
        }
        for item in items {
            let v = value(item, input)?;
            if !matches!(v, Value::Nil) {
                return Ok(v);
            }
        }
        return Ok(Value::Nil);
    }
    let list = match args.first() {
        Some(e) => value(e, input)?,
        None => Value::Nil,
    };
    let first = |l: &[u8]| -> Result<Option<usize>, OttlError> {
        if list_items(l).next().is_none() {
            return Err(empty());
        }
        Ok(list_items(l).position(|item| !matches!(any_value(item), Value::Nil)))
    };
    match list {
        Value::Nil => Ok(Value::Nil),
        Value::List(Cow::Borrowed(l)) => Ok(first(l)?
            .and_then(|at| list_items(l).nth(at))
            .map_or(Value::Nil, any_value)),
        Value::List(Cow::Owned(l)) => match first(&l)?.and_then(|at| list_items(&l).nth(at)) {
            Some(item) => owned(any_value(item)),
            None => Ok(Value::Nil),
        },
        other => Err(expects(Func::Coalesce, "a list", &other)),
    }
}

/// The character `b` starts with and its length in bytes, as Go's `utf8.DecodeRune`: a
/// byte that does not start a valid sequence is U+FFFD, one byte long. `b` is not empty.
fn first_char(b: &[u8]) -> (char, usize) {
    for n in 1..=b.len().min(4) {
        if let Some(c) = std::str::from_utf8(&b[..n])
            .ok()
            .and_then(|s| s.chars().next())
        {
            return (c, n);
        }
    }
    (char::REPLACEMENT_CHARACTER, 1)
}

/// The character `b` ends with and its length, as Go's `utf8.DecodeLastRune`.
fn last_char(b: &[u8]) -> (char, usize) {
    for n in 1..=b.len().min(4) {
        let tail = std::str::from_utf8(&b[b.len() - n..]).ok();
        let mut chars = tail.map(str::chars).into_iter().flatten();
        if let (Some(c), None) = (chars.next(), chars.next()) {
            return (c, n);
        }
    }
    (char::REPLACEMENT_CHARACTER, 1)
}

/// `Trim(target[, cutset])`, as Go's `strings.Trim`: the characters of `cutset` (a
/// literal, so UTF-8) removed from both ends (bytes of the target that are not UTF-8 read
/// as U+FFFD); an empty cutset leaves the target as it is. The target is a string, never
/// nil.
fn trim<'a>(target: Value<'a>, cutset: &str) -> Result<Value<'a>, OttlError> {
    let Value::Str(t) = target else {
        return Err(expects(Func::Trim, "a string", &target));
    };
    let (mut from, mut to) = (0, t.len());
    while from < to {
        let (c, n) = first_char(&t[from..to]);
        if !cutset.contains(c) {
            break;
        }
        from += n;
    }
    while from < to {
        let (c, n) = last_char(&t[from..to]);
        if !cutset.contains(c) {
            break;
        }
        to -= n;
    }
    Ok(Value::Str(sub_str(t, from, to)))
}

/// The most bytes a list `Split` builds: a string of a few MiB split on every character
/// would otherwise take several times its size for every evaluation.
const MAX_SPLIT: usize = 4 << 20;

/// `Split(target, delimiter)`, as Go's `strings.Split`: the parts between occurrences of
/// the delimiter, as a list of strings (`[""]` for an empty target); an empty delimiter
/// splits after each UTF-8 sequence (each byte that is not one alone). The target is a
/// string, never nil.
fn split<'a>(target: Value<'_>, sep: &[u8]) -> Result<Value<'a>, OttlError> {
    use tailgate_core::wire::span_fields::put_len_field;
    let Value::Str(s) = target else {
        return Err(expects(Func::Split, "a string", &target));
    };
    let (mut out, mut item) = (Vec::new(), Vec::new());
    let mut push = |part: &[u8]| {
        item.clear();
        put_len_field(&mut item, 1, part);
        put_len_field(&mut out, 1, &item);
        if out.len() > MAX_SPLIT {
            return Err(OttlError::Eval(format!(
                "Split: the list passes {MAX_SPLIT} bytes"
            )));
        }
        Ok(())
    };
    if sep.is_empty() {
        let mut rest = &s[..];
        while !rest.is_empty() {
            let (_, n) = first_char(rest);
            push(&rest[..n])?;
            rest = &rest[n..];
        }
    } else {
        let mut start = 0;
        for at in memchr::memmem::find_iter(&s, sep) {
            push(&s[start..at])?;
            start = at + sep.len();
        }
        push(&s[start..])?;
    }
    Ok(Value::List(Cow::Owned(out)))
}

/// `ParseInt(target, base)`: the target a string (not empty, never nil), the base an int
/// (not negative); then Go's `strconv.ParseInt(target, base, 64)`, whose errors are
/// evaluation errors.
fn parse_int<'a>(target: &Value<'_>, base: Value<'_>) -> Result<Value<'a>, OttlError> {
    let Value::Str(s) = target else {
        return Err(expects(Func::ParseInt, "a string", target));
    };
    if s.is_empty() {
        return Err(OttlError::Eval(
            "invalid target value for ParseInt function, target cannot be empty".into(),
        ));
    }
    let base = int_arg(Func::ParseInt, base)?;
    if base < 0 {
        return Err(OttlError::Eval(format!(
            "invalid base value: {base} for ParseInt function, base cannot be negative"
        )));
    }
    go_parse_int(s, base)
        .map(Value::Int)
        .map_err(OttlError::Eval)
}

/// Go's `strconv.ParseInt(s, base, 64)`: an optional sign, then digits in `base` (2 to
/// 36), or with base 0 the base its prefix says (`0x`, `0o`, `0b`, a leading `0` for
/// octal, else decimal) and underscores between digits allowed.
fn go_parse_int(s: &[u8], base: i64) -> Result<i64, String> {
    // Quoted as Go quotes it, at most 64 bytes of it: the span chooses the text.
    let text = String::from_utf8_lossy(&s[..s.len().min(64)]);
    let syntax = || format!("strconv.ParseInt: parsing {text:?}: invalid syntax");
    let range = || format!("strconv.ParseInt: parsing {text:?}: value out of range");
    let (neg, mut digits) = match s.first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(syntax());
    }
    let base0 = base == 0;
    let base = if base0 {
        let lower = |i: usize| digits.get(i).map(u8::to_ascii_lowercase);
        let (b, skip) = match (digits[0], lower(1)) {
            (b'0', Some(b'b')) if digits.len() >= 3 => (2, 2),
            (b'0', Some(b'o')) if digits.len() >= 3 => (8, 2),
            (b'0', Some(b'x')) if digits.len() >= 3 => (16, 2),
            (b'0', _) => (8, 1),
            _ => (10, 0),
        };
        digits = &digits[skip..];
        b
    } else if (2..=36).contains(&base) {
        base as u64
    } else {
        return Err(format!(
            "strconv.ParseInt: parsing {text:?}: invalid base {base}"
        ));
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for &c in digits {
        let d = match c {
            b'_' if base0 => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'z' | b'A'..=b'Z' => u64::from(c.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(syntax()),
        };
        if d >= base {
            return Err(syntax());
        }
        n = n
            .checked_mul(base)
            .and_then(|n| n.checked_add(d))
            .ok_or_else(range)?;
    }
    if underscores && !go_underscores_ok(s) {
        return Err(syntax());
    }
    let limit = 1u64 << 63;
    match (neg, n) {
        (false, n) if n >= limit => Err(range()),
        (true, n) if n > limit => Err(range()),
        (true, n) => Ok((n as i64).wrapping_neg()),
        (false, n) => Ok(n as i64),
    }
}

/// Whether the underscores of a base-0 number sit as Go allows: each between two digits,
/// or between the base prefix and a digit.
fn go_underscores_ok(s: &[u8]) -> bool {
    let s = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    // What came last: the start, a digit (or the base prefix), an underscore, other.
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit;
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else {
            if saw == Saw::Underscore {
                return false;
            }
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// `HasPrefix(target, prefix)` and `HasSuffix(target, suffix)`: both strings, never nil.
fn affix<'a>(func: Func, target: &Value<'_>, affix: &Value<'_>) -> Result<Value<'a>, OttlError> {
    match (string_arg(target, func)?, string_arg(affix, func)?) {
        (Some(t), Some(a)) => Ok(Value::Bool(if func == Func::HasPrefix {
            t.starts_with(a)
        } else {
            t.ends_with(a)
        })),
        _ => Err(expects(func, "a string", &Value::Nil)),
    }
}

/// `ToLowerCase(s)` and `ToUpperCase(s)`, as Go's `strings.ToLower` / `ToUpper`: each
/// character by its own simple case mapping, so `ß` stays `ß` in upper case and a final
/// `Σ` lowers to `σ` (Rust's string methods apply the full, contextual mappings: `SS`,
/// `ς`). Where Rust has only a multi-character mapping, lower case takes its first
/// character (`İ` → `i`, as Go) and upper case keeps the character (as Go for `ß`, `ŉ`).
fn change_case<'a>(func: Func, v: Value<'_>) -> Result<Value<'a>, OttlError> {
    match v {
        Value::Str(s) => {
            let s = String::from_utf8_lossy(&s);
            let out: String = if func == Func::ToLowerCase {
                s.chars()
                    .map(|c| c.to_lowercase().next().unwrap_or(c))
                    .collect()
            } else {
                s.chars()
                    .map(|c| {
                        let mut up = c.to_uppercase();
                        match (up.next(), up.next()) {
                            (Some(u), None) => u,
                            _ => c,
                        }
                    })
                    .collect()
            };
            Ok(Value::Str(Cow::Owned(out.into_bytes())))
        }
        other => Err(OttlError::Eval(format!(
            "expected a string, found {}",
            kind(&other)
        ))),
    }
}

/// `ContainsValue(list, item)`: a literal list is evaluated item by item until one equals
/// `item`; otherwise the first argument must be a list value.
fn contains_value<'a>(
    args: &'a [Expr],
    item: &Value<'_>,
    input: &SpanInput<'a>,
) -> Result<Value<'a>, OttlError> {
    match any_listed(args.first(), input, |v| Ok(compare(v, CmpOp::Eq, item)))? {
        Ok(found) => Ok(Value::Bool(found)),
        Err(other) => Err(OttlError::Eval(format!(
            "ContainsValue expects a list, found {}",
            kind(&other)
        ))),
    }
}

/// Whether `holds` is true of an item of the list argument `arg`: a list literal, or a
/// list the span holds. `Ok(Err(v))` when `arg` is something else, `v`; the first error
/// `holds` returns ends the search.
fn any_listed<'a>(
    arg: Option<&'a Expr>,
    input: &SpanInput<'a>,
    mut holds: impl FnMut(&Value<'_>) -> Result<bool, OttlError>,
) -> Result<Result<bool, Value<'a>>, OttlError> {
    if let Some(Expr::List(items)) = arg {
        for i in items {
            if holds(&value(i, input)?)? {
                return Ok(Ok(true));
            }
        }
        return Ok(Ok(false));
    }
    match arg.map_or(Ok(Value::Nil), |e| value(e, input))? {
        Value::List(msg) => {
            for item in list_items(&msg) {
                if holds(&any_value(item))? {
                    return Ok(Ok(true));
                }
            }
            Ok(Ok(false))
        }
        other => Ok(Err(other)),
    }
}

/// The scalar fields of a span message, read in one walk.
#[derive(Debug, Default)]
struct SpanFieldsRead<'a> {
    trace_id: &'a [u8],
    span_id: &'a [u8],
    trace_state: &'a [u8],
    parent_span_id: &'a [u8],
    name: &'a [u8],
    kind: i64,
    start: u64,
    end: u64,
    dropped_attributes: i64,
    /// `status.code` and `status.message`, merged over repeated `status` fields as
    /// protobuf does.
    status_code: i64,
    status_message: &'a [u8],
}

impl<'a> SpanFieldsRead<'a> {
    fn new(span: &'a [u8]) -> Self {
        let mut f = SpanFieldsRead::default();
        let mut pos = 0;
        while let Some((field, wt, s, e)) = next_field(span, &mut pos) {
            let v = &span[s..e];
            match (field, wt) {
                (1, 2) => f.trace_id = v,
                (2, 2) => f.span_id = v,
                (3, 2) => f.trace_state = v,
                (4, 2) => f.parent_span_id = v,
                (5, 2) => f.name = v,
                (6, 0) => f.kind = read_varint(v, 0).0 as i64,
                (7, 1) => f.start = fixed64(v),
                (8, 1) => f.end = fixed64(v),
                (10, 0) => f.dropped_attributes = read_varint(v, 0).0 as i64,
                (15, 2) => {
                    let mut p = 0;
                    while let Some((sf, sw, ss, se)) = next_field(v, &mut p) {
                        match (sf, sw) {
                            (3, 0) => f.status_code = read_varint(v, ss).0 as i64,
                            (2, 2) => f.status_message = &v[ss..se],
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        f
    }
}

fn fixed64(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if v.len() == 8 {
        b.copy_from_slice(v);
    }
    u64::from_le_bytes(b)
}

/// The value bytes of the last field `field` with wire type `wt` in `msg` (protobuf: the
/// last occurrence of a scalar wins), or `None`.
fn last_field(msg: &[u8], field: u32, wt: u8) -> Option<&[u8]> {
    let mut out = None;
    let mut pos = 0;
    while let Some((f, w, s, e)) = next_field(msg, &mut pos) {
        if f == field && w == wt {
            out = Some(&msg[s..e]);
        }
    }
    out
}

/// A sub-message (`resource`, `scope`) of `msg`, or empty.
fn sub_message(msg: &[u8], field: u32) -> &[u8] {
    last_field(msg, field, 2).unwrap_or_default()
}

/// A varint field of `msg`, or 0.
fn varint_field(msg: &[u8], field: u32) -> i64 {
    last_field(msg, field, 0).map_or(0, |v| read_varint(v, 0).0 as i64)
}

/// A string or bytes field of `msg`, or empty.
fn bytes_field(msg: &[u8], field: u32) -> &[u8] {
    last_field(msg, field, 2).unwrap_or_default()
}

/// `(key, AnyValue bytes)` of one `KeyValue` message.
fn key_value(kv: &[u8]) -> (&[u8], &[u8]) {
    let (mut key, mut val): (&[u8], &[u8]) = (&[], &[]);
    let mut p = 0;
    while let Some((f, w, s, e)) = next_field(kv, &mut p) {
        match (f, w) {
            (1, 2) => key = &kv[s..e],
            (2, 2) => val = &kv[s..e],
            _ => {}
        }
    }
    (key, val)
}

/// `(key, AnyValue bytes)` of each `KeyValue` in repeated field `field` of `msg`.
fn map_entries(msg: &[u8], field: u32) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let (f, wt, s, e) = next_field(msg, &mut pos)?;
        if f != field || wt != 2 {
            continue;
        }
        return Some(key_value(&msg[s..e]));
    })
}

/// The `AnyValue` bytes of each item of an `ArrayValue`.
fn list_items(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let (f, wt, s, e) = next_field(msg, &mut pos)?;
        if f == 1 && wt == 2 {
            return Some(&msg[s..e]);
        }
    })
}

/// Decodes an `AnyValue`; an empty one (no value set) is `nil`.
fn any_value(v: &[u8]) -> Value<'_> {
    let mut out = Value::Nil;
    let mut pos = 0;
    while let Some((field, wt, s, e)) = next_field(v, &mut pos) {
        let b = &v[s..e];
        out = match (field, wt) {
            (1, 2) => Value::Str(Cow::Borrowed(b)),
            (2, 0) => Value::Bool(read_varint(b, 0).0 != 0),
            (3, 0) => Value::Int(read_varint(b, 0).0 as i64),
            (4, 1) => Value::Float(f64::from_bits(fixed64(b))),
            (5, 2) => Value::List(Cow::Borrowed(b)),
            (6, 2) => Value::Map(b, 1),
            (7, 2) => Value::Bytes(Cow::Borrowed(b)),
            _ => out,
        };
    }
    out
}

/// The `AnyValue` bytes of the first `KeyValue` with `key` in repeated field `field` of
/// `msg`. Encoders write the key first, so a non-matching entry is skipped after reading its
/// key alone; an entry laid out otherwise is read in full.
fn find_value<'a>(msg: &'a [u8], field: u32, key: &[u8]) -> Option<&'a [u8]> {
    let mut pos = 0;
    while let Some((f, wt, s, e)) = next_field(msg, &mut pos) {
        if f != field || wt != 2 {
            continue;
        }
        let kv = &msg[s..e];
        // Fast path: `0x0a len key` first.
        if kv.first() == Some(&0x0a) {
            let (len, n) = read_varint(kv, 1);
            let start = 1 + n;
            let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l));
            if let (true, Some(end)) = (n > 0, end) {
                if end <= kv.len() && &kv[start..end] != key {
                    continue;
                }
            }
        }
        let (k, v) = key_value(kv);
        if k == key {
            return Some(v);
        }
    }
    None
}

/// Looks up `key`, then `rest`, in a map.
/// `attributes["key"][…]`, as `pkg/ottl`'s `GetMapValue` and `getIndexableValue` read it:
/// a key missing from a map is `nil` (and ends the lookup); an index past a list's end, a
/// key of the wrong kind for a map or a list, and any index into a value that is neither
/// (a string, a number, a value with nothing set) are errors.
fn lookup<'a>(
    msg: &'a [u8],
    field: u32,
    key: &str,
    rest: &[Index],
) -> Result<Value<'a>, OttlError> {
    let Some(v) = find_value(msg, field, key.as_bytes()) else {
        return Ok(Value::Nil);
    };
    let mut cur = any_value(v);
    for idx in rest {
        cur = match (cur, idx) {
            (Value::Map(m, f), Index::Key(k)) => match find_value(m, f, k.as_bytes()) {
                Some(v) => any_value(v),
                None => return Ok(Value::Nil),
            },
            (Value::List(Cow::Borrowed(l)), Index::Pos(i)) => {
                match usize::try_from(*i).ok().and_then(|i| list_items(l).nth(i)) {
                    Some(v) => any_value(v),
                    None => return Err(OttlError::Eval(format!("index {i} out of bounds"))),
                }
            }
            // Lists built by converters are not looked up by paths.
            (Value::List(Cow::Owned(_)), Index::Pos(_)) => {
                return Err(OttlError::Eval("a built list is not indexed".into()))
            }
            (Value::Map(..), Index::Pos(_)) => {
                return Err(OttlError::Eval("a map is indexed by a string key".into()))
            }
            (Value::List(_), Index::Key(_)) => {
                return Err(OttlError::Eval("a list is indexed by an int".into()))
            }
            (other, _) => {
                return Err(OttlError::Eval(format!(
                    "{} does not support indexing",
                    kind(&other)
                )))
            }
        };
    }
    Ok(cur)
}

fn path<'a>(
    target: Target,
    field: &'a Field,
    input: &SpanInput<'a>,
) -> Result<Value<'a>, OttlError> {
    // Where the target's fields live, and its attributes' field number.
    let (msg, attrs_field): (&[u8], u32) = match target {
        Target::Span => (input.span, 9),
        Target::Event => (input.event, 3),
        Target::Resource => (sub_message(input.resource, 1), 1),
        Target::Scope => (sub_message(input.scope, 1), 3),
    };
    let str_of = |b: &'a [u8]| Value::Str(Cow::Borrowed(b));
    Ok(match (target, field) {
        (_, Field::Attribute(key, rest)) => return lookup(msg, attrs_field, key, rest),
        (_, Field::Attributes) => Value::Map(msg, attrs_field),
        (Target::Span, Field::DroppedAttributesCount) => Value::Int(varint_field(msg, 10)),
        (Target::Event, Field::DroppedAttributesCount) => Value::Int(varint_field(msg, 4)),
        (Target::Resource, Field::DroppedAttributesCount) => Value::Int(varint_field(msg, 2)),
        (Target::Scope, Field::DroppedAttributesCount) => Value::Int(varint_field(msg, 4)),
        (Target::Scope, Field::Name) => str_of(bytes_field(msg, 1)),
        (Target::Scope, Field::Version) => str_of(bytes_field(msg, 2)),
        (Target::Event, Field::Name) => str_of(bytes_field(msg, 2)),
        (Target::Event, Field::Time) => Value::Int(last_field(msg, 1, 1).map_or(0, fixed64) as i64),
        (Target::Event, Field::TimeValue) => {
            Value::Time(i128::from(last_field(msg, 1, 1).map_or(0, fixed64) as i64))
        }
        (Target::Span, Field::DroppedEventsCount) => Value::Int(varint_field(msg, 12)),
        (Target::Span, Field::Events) => Value::Messages(msg, SPAN_EVENTS),
        (Target::Span, Field::Links) => Value::Messages(msg, SPAN_LINKS),
        // `schema_url` sits beside the resource (scope) in its `ResourceSpans` (`ScopeSpans`).
        (Target::Resource, Field::SchemaUrl) => str_of(bytes_field(input.resource, 3)),
        (Target::Scope, Field::SchemaUrl) => str_of(bytes_field(input.scope, 3)),
        // Nothing writes the cache in a condition: an empty map, and `nil` in it.
        (_, Field::Cache(idx)) if idx.is_empty() => Value::Map(&[], 1),
        (_, Field::Cache(_)) => Value::Nil,
        (Target::Span, Field::DroppedLinksCount) => Value::Int(varint_field(msg, 14)),
        (Target::Span, f) => span_path(SpanFieldsRead::new(msg), f),
        _ => Value::Nil,
    })
}

fn span_path<'a>(f: SpanFieldsRead<'a>, field: &Field) -> Value<'a> {
    let str_of = |b: &'a [u8]| Value::Str(Cow::Borrowed(b));
    // pdata's ids are fixed-size arrays: an absent id prints as zeros.
    let hex_of = |b: &[u8], len: usize| {
        let text = if b.is_empty() {
            "00".repeat(len)
        } else {
            hex(b)
        };
        Value::Str(Cow::Owned(text.into_bytes()))
    };
    match field {
        Field::Name => str_of(f.name),
        Field::Kind => Value::Int(f.kind),
        Field::KindDeprecatedString => str_of(match f.kind {
            0 => b"SPAN_KIND_UNSPECIFIED".as_slice(),
            1 => b"SPAN_KIND_INTERNAL",
            2 => b"SPAN_KIND_SERVER",
            3 => b"SPAN_KIND_CLIENT",
            4 => b"SPAN_KIND_PRODUCER",
            5 => b"SPAN_KIND_CONSUMER",
            _ => b"",
        }),
        Field::KindString => str_of(match f.kind {
            1 => b"Internal".as_slice(),
            2 => b"Server",
            3 => b"Client",
            4 => b"Producer",
            5 => b"Consumer",
            0 => b"Unspecified",
            // pdata's SpanKind.String() for a kind it does not know.
            _ => b"",
        }),
        Field::StatusCode => Value::Int(f.status_code),
        Field::StatusMessage => str_of(f.status_message),
        Field::TraceId => Value::Id(IdKind::Trace, f.trace_id),
        Field::TraceIdString => hex_of(f.trace_id, 16),
        Field::SpanId => Value::Id(IdKind::Span, f.span_id),
        Field::SpanIdString => hex_of(f.span_id, 8),
        Field::ParentSpanId => Value::Id(IdKind::Span, f.parent_span_id),
        Field::ParentSpanIdString => hex_of(f.parent_span_id, 8),
        Field::TraceState(None) => str_of(f.trace_state),
        Field::TraceState(Some(key)) => {
            // pdata parses the header as W3C; an invalid one reads as nil.
            if !tailgate_core::wire::span_fields::tracestate_is_valid(f.trace_state) {
                return Value::Nil;
            }
            // pdata's TraceState Get: "" for a key that is not there.
            str_of(
                tailgate_core::wire::span_fields::tracestate_get(f.trace_state, key.as_bytes())
                    .unwrap_or_default(),
            )
        }
        Field::StartTime => Value::Int(f.start as i64),
        Field::EndTime => Value::Int(f.end as i64),
        // pdata's `AsTime`: `time.Unix(0, int64(ts))`.
        Field::StartTimeValue => Value::Time(i128::from(f.start as i64)),
        Field::EndTimeValue => Value::Time(i128::from(f.end as i64)),
        Field::DroppedAttributesCount => Value::Int(f.dropped_attributes),
        _ => Value::Nil,
    }
}

/// `Span.events`' field number.
const SPAN_EVENTS: u32 = 11;
/// `Span.links`' field number.
const SPAN_LINKS: u32 = 13;

/// The span events of a span message.
pub fn events(span: &[u8]) -> impl Iterator<Item = &[u8]> {
    messages(span, SPAN_EVENTS)
}

/// The sub-messages in repeated field `field` of `msg`.
fn messages(msg: &[u8], field: u32) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || loop {
        let (f, wt, s, e) = next_field(msg, &mut pos)?;
        if f == field && wt == 2 {
            return Some(&msg[s..e]);
        }
    })
}
