//! A span's own scalar fields that the scanner does not keep (its `trace_state`, `name` and
//! `flags`), W3C `tracestate` lookup, and the one re-encoding Tailgate does: writing the
//! sampling probability into a kept span (`ot=th:…` in `trace_state` and an adjusted-count
//! attribute).
//!
//! Span fields used here (opentelemetry/proto/trace/v1/trace.proto): `trace_state = 3`
//! (string), `name = 5` (string), `attributes = 9` (repeated KeyValue), `flags = 16`
//! (fixed32; bit 0x100 is the W3C "sampled" trace flag).

use std::ops::Range;

use super::reframe::put_varint;

/// Bit of `Span.flags` that holds the W3C trace flags' "sampled" bit (the low byte).
pub const FLAG_SAMPLED: u32 = 0x01;

/// The fields of one span message that policies beyond the scanner's may read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpanFields {
    /// `trace_state` bytes (a range of the span message), empty when absent.
    pub trace_state: Range<usize>,
    /// `name` bytes (a range of the span message).
    pub name: Range<usize>,
    /// `flags`, 0 when absent.
    pub flags: u32,
}

/// Reads `trace_state`, `name` and `flags` off a span message (its bytes without tag and
/// length). Malformed fields end the walk: the scan validated the span already.
pub fn span_fields(span: &[u8]) -> SpanFields {
    let mut out = SpanFields::default();
    let mut pos = 0;
    while let Some((field, wt, start, end)) = super::attrs::next_field_slice(span, &mut pos) {
        match (field, wt) {
            (3, 2) => out.trace_state = start..end,
            (5, 2) => out.name = start..end,
            (16, 5) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(&span[start..end]);
                out.flags = u32::from_le_bytes(b);
            }
            _ => {}
        }
    }
    out
}

/// The value of `key` in a W3C `tracestate` header value (`k1=v1,k2=v2`, optional spaces
/// around members), or `None`.
pub fn tracestate_get<'a>(tracestate: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    tracestate.split(|&b| b == b',').find_map(|member| {
        let member = trim(member);
        let eq = member.iter().position(|&b| b == b'=')?;
        (&member[..eq] == key).then(|| &member[eq + 1..])
    })
}

/// Most list members a W3C `tracestate` may hold.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// Whether a `tracestate` header value is valid W3C, judged as the Go SDK's
/// `trace.ParseTraceState` judges it (which the Collector's `trace_state` policy uses): empty
/// members are skipped; each member is `key=value` with spaces and tabs trimmed before the
/// key and after the value; keys are `lcalpha *(lcalpha / digit / _ - * /)` of at most 256
/// bytes, or `tenant@system` (tenant of at most 241 starting with a lower-case letter or a
/// digit, system of at most 14 starting with a lower-case letter); values are 1 to 256
/// printable ASCII bytes but `,` and `=`, not ending in a space; no key twice; at most 32
/// members. The empty header is valid (and holds nothing).
pub fn tracestate_is_valid(tracestate: &[u8]) -> bool {
    let mut count = 0;
    let mut members = tracestate.split(|&b| b == b',').filter(|m| !m.is_empty());
    let mut seen: [&[u8]; TRACESTATE_MAX_MEMBERS] = [&[]; TRACESTATE_MAX_MEMBERS];
    members.all(|member| {
        let Some(eq) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let key = trim_start(&member[..eq]);
        let value = trim_end(&member[eq + 1..]);
        if !tracestate_key_is_valid(key) || !tracestate_value_is_valid(value) {
            return false;
        }
        if count == TRACESTATE_MAX_MEMBERS || seen[..count].contains(&key) {
            return false;
        }
        seen[count] = key;
        count += 1;
        true
    })
}

fn tracestate_key_is_valid(key: &[u8]) -> bool {
    fn part(p: &[u8], max: usize, tenant: bool) -> bool {
        let Some(&first) = p.first() else {
            return false;
        };
        let first_ok = first.is_ascii_lowercase() || (tenant && first.is_ascii_digit());
        first_ok
            && p.len() <= max
            && p[1..].iter().all(|&c| {
                c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || matches!(c, b'_' | b'-' | b'*' | b'/')
            })
    }
    match key.iter().position(|&b| b == b'@') {
        None => part(key, 256, false),
        Some(at) => part(&key[..at], 241, true) && part(&key[at + 1..], 14, false),
    }
}

fn tracestate_value_is_valid(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value.last() != Some(&b' ')
        && value
            .iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// 2^56: thresholds and randomness of OpenTelemetry consistent probability sampling are
/// 56-bit numbers.
pub const MAX_THRESHOLD: u64 = 1 << 56;

/// The value of sub-key `key` (`th`, `rv`) in `tracestate`'s `ot` entry.
fn ot_value<'a>(tracestate: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    tracestate_get(tracestate, b"ot")?
        .split(|&b| b == b';')
        .find_map(|kv| {
            kv.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(b":"))
        })
}

/// One to fourteen hex digits (nothing else: `from_str_radix` alone would take a `+`).
fn hex56(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 14 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

/// The sampling probability carried by an `ot=th:…` entry, or `None` when there is none or
/// it is malformed. `th` is the rejection threshold: a span is kept with probability
/// `1 - th / 2^56`; `th:0` is 100%.
pub fn tracestate_probability(tracestate: &[u8]) -> Option<f64> {
    let th = ot_value(tracestate, b"th")?;
    // Trailing zeros are omitted: "8" is 0x80000000000000.
    let value = hex56(th)? << (4 * (14 - th.len()));
    Some(threshold_probability(value))
}

/// The probability of keeping with rejection threshold `t` (of 2^56).
pub fn threshold_probability(t: u64) -> f64 {
    1.0 - t as f64 / MAX_THRESHOLD as f64
}

/// The rejection threshold for keeping with probability `p` (0 < p <= 1): 0 for 100%,
/// below 2^56.
pub fn threshold_value(p: f64) -> u64 {
    let p = p.clamp(0.0, 1.0);
    let t = ((1.0 - p) * MAX_THRESHOLD as f64).round() as u64;
    t.min(MAX_THRESHOLD - 1)
}

/// The randomness consistent probability sampling compares thresholds with: the `ot=rv:`
/// value (14 hex digits) when `tracestate` has one, else the trace id's last 56 bits (what
/// W3C Trace Context level 2 makes random). `None` for an `rv` that is not 14 hex digits
/// and an id that is not 16 bytes.
pub fn sampling_randomness(tracestate: &[u8], trace_id: &[u8]) -> Option<u64> {
    match ot_value(tracestate, b"rv") {
        Some(rv) if rv.len() == 14 => hex56(rv),
        Some(_) => None,
        None => trace_id_randomness(trace_id),
    }
}

/// A trace id's last 56 bits, big-endian (`None` for an id that is not 16 bytes).
pub fn trace_id_randomness(trace_id: &[u8]) -> Option<u64> {
    let id: &[u8; 16] = trace_id.try_into().ok()?;
    let mut r = [0u8; 8];
    r[1..].copy_from_slice(&id[9..]);
    Some(u64::from_be_bytes(r))
}

/// The `th` hex value for keeping with probability `p` (0 < p <= 1): 14 hex digits,
/// trailing zeros removed, "0" for 100%.
pub fn threshold_hex(p: f64) -> String {
    let t = threshold_value(p);
    if t == 0 {
        return "0".into();
    }
    let s = format!("{t:014x}");
    s.trim_end_matches('0').to_owned()
}

/// `tracestate` with its `ot` entry's `th` set to `th` (other `ot` sub-keys and other
/// vendors' entries kept). The `ot` entry moves to the front, as W3C asks of an entry that
/// was modified; when that makes more than [`TRACESTATE_MAX_MEMBERS`] entries (a header
/// of 32 without `ot`), the rightmost are dropped, as W3C asks, so that the header stays
/// one a consumer parses (Go's `ParseTraceState` refuses 33).
pub fn tracestate_with_threshold(tracestate: &[u8], th: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tracestate.len() + th.len() + 8);
    append_tracestate_with_threshold(tracestate, Some(th), &mut out);
    out
}

/// Appends [`tracestate_with_threshold`]'s value to `out`, allocating nothing itself: two
/// passes over `tracestate`, one for the `ot` entry's other sub-keys, one for the other
/// entries.
fn append_tracestate_with_threshold(tracestate: &[u8], th: Option<&str>, out: &mut Vec<u8>) {
    let members = || {
        tracestate
            .split(|&b| b == b',')
            .map(trim)
            .filter(|m| !m.is_empty())
    };
    let start = out.len();
    if let Some(th) = th {
        out.extend_from_slice(b"ot=th:");
        out.extend_from_slice(th.as_bytes());
    }
    for value in members().filter_map(|m| m.strip_prefix(b"ot=")) {
        for kv in value.split(|&b| b == b';') {
            if !kv.is_empty() && !kv.starts_with(b"th:") {
                out.extend_from_slice(if out.len() == start { b"ot=" } else { b";" });
                out.extend_from_slice(kv);
            }
        }
    }
    // Room for the `ot` entry, when there is one: W3C's 32 members at most.
    let mut first = out.len() == start;
    for member in members()
        .filter(|m| !m.starts_with(b"ot="))
        .take(TRACESTATE_MAX_MEMBERS - usize::from(!first))
    {
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        out.extend_from_slice(member);
    }
}

/// Appends the span's `trace_state` field (3) holding `tracestate` with threshold `th`,
/// writing the value in place and its length after (a one-byte length is reserved and
/// widened only for a value of 128 bytes or more).
fn put_tracestate_field(out: &mut Vec<u8>, tracestate: &[u8], th: Option<&str>) {
    out.push(3 << 3 | 2);
    let len_at = out.len();
    out.push(0);
    append_tracestate_with_threshold(tracestate, th, out);
    let len = out.len() - len_at - 1;
    if len == 0 {
        // Nothing left: proto3 writes no empty string.
        out.truncate(len_at - 1);
        return;
    }
    if len < 0x80 {
        out[len_at] = len as u8;
    } else {
        let mut varint = Vec::with_capacity(4);
        put_varint(&mut varint, len as u64);
        out.splice(len_at..=len_at, varint);
    }
}

/// The sampling marks for one effective probability: its `th` value, the encoded
/// adjusted-count attribute (empty without one) and the encoded `trace_state` field of a
/// span that had none.
#[derive(Debug)]
struct SamplingMarks {
    p_bits: u64,
    key: Option<Box<str>>,
    /// The threshold, and its `th` text.
    t: u64,
    th: String,
    attr: Vec<u8>,
    fresh_ts: Vec<u8>,
}

/// Marks remembered per thread: kept traces nearly all share a few probabilities (one per
/// policy that keeps), so a kept trace rarely builds its own.
const MARKS_REMEMBERED: usize = 8;

thread_local! {
    /// The last [`MARKS_REMEMBERED`] marks built on this thread, the newest last.
    static LAST_MARKS: std::cell::RefCell<Vec<std::rc::Rc<SamplingMarks>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The marks for keeping with probability `p` (the product with a head sampler's), with
/// the adjusted count under `key`: ones built before on this thread when they match.
fn sampling_marks(p: f64, key: Option<&str>) -> std::rc::Rc<SamplingMarks> {
    LAST_MARKS.with_borrow_mut(|last| {
        if let Some(m) = last
            .iter()
            .rev()
            .find(|m| m.p_bits == p.to_bits() && m.key.as_deref() == key)
        {
            return m.clone();
        }
        let th = threshold_hex(p);
        let mut fresh_ts = Vec::new();
        put_tracestate_field(&mut fresh_ts, b"", Some(&th));
        let marks = std::rc::Rc::new(SamplingMarks {
            p_bits: p.to_bits(),
            key: key.map(Into::into),
            t: threshold_value(p),
            attr: key.map_or_else(Vec::new, |k| adjusted_count_field(k, 1.0 / p)),
            th,
            fresh_ts,
        });
        if last.len() == MARKS_REMEMBERED {
            last.remove(0);
        }
        last.push(marks.clone());
        marks
    })
}

/// Rewrites a kept span's attributes on their way out (the gateway's `attributes`
/// actions: delete, hash). Given one encoded `KeyValue`, returns `None` to keep it as it
/// is, or `Some(bytes)`: the encoded `KeyValue` to write instead (empty: drop it).
pub trait AttributeRewrite: Send + Sync {
    /// The replacement for `key_value`, if any.
    fn rewrite(&self, key_value: &[u8]) -> Option<Vec<u8>>;

    /// Attributes to add to a span that has none with their key (`insert`, `upsert`):
    /// `(key, encoded KeyValue)`, at most 64. Default none.
    fn additions(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &[]
    }
}

/// How a kept span records its sampling probability, and how its attributes are rewritten.
#[derive(Clone, Copy)]
pub struct AdjustedCount<'a> {
    /// Write `ot=th:…` into `trace_state`.
    pub tracestate: bool,
    /// Append an attribute with this key holding `1 / p` (absent: no attribute).
    pub attribute: Option<&'a str>,
    /// Rewrites the span's own attributes (absent: copied as they are).
    pub rewrite: Option<&'a dyn AttributeRewrite>,
    /// Rewrites the attributes of the span's events (absent: events copied as they are).
    pub events: Option<&'a dyn AttributeRewrite>,
}

impl std::fmt::Debug for AdjustedCount<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdjustedCount")
            .field("tracestate", &self.tracestate)
            .field("attribute", &self.attribute)
            .field("rewrite", &self.rewrite.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl AdjustedCount<'_> {
    /// Whether a kept span is written as it came (nothing to record, nothing to rewrite).
    pub fn is_noop(&self) -> bool {
        !self.tracestate
            && self.attribute.is_none()
            && self.rewrite.is_none()
            && self.events.is_none()
    }
}

/// Re-encodes a span message so that it says it was kept with probability `p` (combined
/// with any probability its `trace_state` already carries from an earlier sampler). Returns
/// the new span message bytes (without tag and length). Every other field is copied as is.
pub fn with_adjusted_count(span: &[u8], p: f64, how: &AdjustedCount<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(span.len() + 64);
    write_adjusted_count(span, p, how, &mut out);
    out
}

/// [`with_adjusted_count`], appending the new span message to `out` (so that the spans of
/// one trace can share one buffer).
pub fn write_adjusted_count(span: &[u8], p: f64, how: &AdjustedCount<'_>, out: &mut Vec<u8>) {
    AdjustedCountWriter::new(p, how).write(span, out);
}

/// Writes the spans of one kept trace with their adjusted counts. The threshold and the
/// attribute's bytes depend only on the probability (and a head sampler's, usually the same
/// for every span of a trace), so they are built once and reused.
#[derive(Debug)]
pub struct AdjustedCountWriter<'a> {
    p: f64,
    how: &'a AdjustedCount<'a>,
    /// For the last prior probability seen: its bits and the marks for it.
    cached: Option<(u64, std::rc::Rc<SamplingMarks>)>,
    /// For the last earlier count and probability multiplied (their bits): the attribute's
    /// bytes, so that the spans of a head-sampled trace, which share both, build it once.
    counted: Option<(u64, u64, Vec<u8>)>,
}

impl<'a> AdjustedCountWriter<'a> {
    /// A writer for spans kept with probability `p`.
    pub fn new(p: f64, how: &'a AdjustedCount<'a>) -> Self {
        AdjustedCountWriter {
            p,
            how,
            cached: None,
            counted: None,
        }
    }

    /// Appends `span` (a span message's bytes) re-encoded to `out`.
    pub fn write(&mut self, span: &[u8], out: &mut Vec<u8>) {
        // One walk over the top-level fields: find the old trace_state (for a head sampler's
        // probability) and the fields to leave out, copying the runs between them whole.
        let key = self.how.attribute.map(str::as_bytes);
        let additions = self.how.rewrite.map_or(&[][..], |r| r.additions());
        // Which additions' keys the span already has (bit i: additions[i]).
        let mut present = 0u64;
        let mut old_ts: &[u8] = &[];
        let mut trace_id: &[u8] = &[];
        // The count an earlier sampler wrote under the attribute's key, if any.
        let mut prior_count = None;
        let (mut pos, mut copy_from) = (0, 0);
        loop {
            let field_start = pos;
            let Some((field, wt, start, end)) = super::attrs::next_field_slice(span, &mut pos)
            else {
                break;
            };
            let mut replacement = None;
            let drop = match (field, wt) {
                (1, 2) => {
                    trace_id = &span[start..end];
                    false
                }
                (3, 2) => {
                    old_ts = &span[start..end];
                    self.how.tracestate
                }
                (9, 2) => {
                    let kv = &span[start..end];
                    let (dropped, rewritten) = self.attribute_fate(kv, key, &mut prior_count);
                    replacement = rewritten;
                    // An attribute that stays (as it was or rewritten) counts as present
                    // for insert/upsert; one deleted here does not.
                    if !additions.is_empty() && replacement.as_ref().is_none_or(|r| !r.is_empty()) {
                        present |= present_additions(kv, additions);
                    }
                    dropped
                }
                (11, 2) => self.how.events.is_some(),
                _ => false,
            };
            if drop {
                out.extend_from_slice(&span[copy_from..field_start]);
                if let Some(kv) = replacement.filter(|kv| !kv.is_empty()) {
                    put_len_field(out, 9, &kv);
                }
                if let (11, Some(events)) = (field, self.how.events) {
                    let mut event = Vec::with_capacity(end - start + 16);
                    write_rewritten_attributes(&span[start..end], 3, events, &mut event);
                    put_len_field(out, 11, &event);
                }
                copy_from = pos;
            }
        }
        out.extend_from_slice(&span[copy_from..]);
        for (i, (k, kv)) in additions.iter().enumerate().take(64) {
            // The adjusted-count attribute is written below; never twice.
            if present & (1 << i) == 0 && key != Some(k.as_slice()) {
                put_len_field(out, 9, kv);
            }
        }
        self.append_sampling(old_ts, trace_id, prior_count, out);
    }

    /// Whether an attribute (a `KeyValue`'s bytes) leaves the span: the adjusted-count key
    /// always does (it is written anew; its count, when it holds one, is noted in
    /// `prior_count`), others when the rewrite replaces or deletes them (an empty
    /// replacement).
    #[inline]
    fn attribute_fate(
        &self,
        kv: &[u8],
        key: Option<&[u8]>,
        prior_count: &mut Option<f64>,
    ) -> (bool, Option<Vec<u8>>) {
        if key.is_some_and(|k| key_value_key_is(kv, k)) {
            *prior_count = key_value_count(kv);
            return (true, None);
        }
        match self.how.rewrite.map(|r| r.rewrite(kv)) {
            Some(Some(replacement)) => (true, Some(replacement)),
            _ => (false, None),
        }
    }

    /// Appends the sampling marks: the `trace_state` with this probability's threshold
    /// (combined with a head sampler's, from `old_ts`) and the adjusted-count attribute.
    ///
    /// A threshold says the span was kept because its randomness (`rv`, or the trace id's
    /// last 56 bits) is at or above it. A policy that chose the trace otherwise (the
    /// Collector's `probabilistic` hashes the id with a salt) keeps traces whose randomness
    /// is below the threshold too; for those a threshold would be inconsistent, which
    /// consistent samplers downstream read as an error and erase, so none is written (and
    /// a head sampler's, no longer the span's probability, is removed). The attribute
    /// carries the adjusted count either way.
    ///
    /// A span that came with the attribute holding a count (`prior_count`: an earlier
    /// sampler's, Honeycomb's `SampleRate` from a head sampler, say) and no threshold in
    /// its `trace_state` gets the product of that count and this one, as Refinery
    /// multiplies a span's `SampleRate` by its own: the earlier sampling is known from the
    /// attribute only. With a threshold, the threshold says the earlier probability and the
    /// attribute is written from it alone (so an attribute an earlier consistent sampler
    /// wrote beside its threshold is not counted twice).
    fn append_sampling(
        &mut self,
        old_ts: &[u8],
        trace_id: &[u8],
        prior_count: Option<f64>,
        out: &mut Vec<u8>,
    ) {
        let head = tracestate_probability(old_ts);
        let prior = head.unwrap_or(1.0);
        if self.cached.as_ref().map(|c| c.0) != Some(prior.to_bits()) {
            let p = (self.p * prior).clamp(f64::MIN_POSITIVE, 1.0);
            self.cached = Some((prior.to_bits(), sampling_marks(p, self.how.attribute)));
        }
        if let Some((_, marks)) = &self.cached {
            if self.how.tracestate {
                let consistent = marks.t == 0
                    || sampling_randomness(old_ts, trace_id).is_some_and(|r| r >= marks.t);
                if !consistent {
                    put_tracestate_field(out, old_ts, None);
                } else if old_ts.is_empty() {
                    out.extend_from_slice(&marks.fresh_ts);
                } else {
                    put_tracestate_field(out, old_ts, Some(&marks.th));
                }
            }
            match (self.how.attribute, prior_count.filter(|_| head.is_none())) {
                (Some(k), Some(c)) => {
                    let key = (c.to_bits(), marks.p_bits);
                    if self.counted.as_ref().map(|(c, p, _)| (*c, *p)) != Some(key) {
                        let p = f64::from_bits(marks.p_bits);
                        self.counted = Some((key.0, key.1, adjusted_count_field(k, c / p)));
                    }
                    if let Some((_, _, attr)) = &self.counted {
                        out.extend_from_slice(attr);
                    }
                }
                _ => out.extend_from_slice(&marks.attr),
            }
        }
    }
}

/// The count a `KeyValue` holds: an `int_value` or a finite `double_value` of at least 1
/// (a count below 1 is no sampler's); `None` for anything else.
fn key_value_count(kv: &[u8]) -> Option<f64> {
    let mut pos = 0;
    let mut count = None;
    while let Some((field, wt, start, end)) = super::attrs::next_field_slice(kv, &mut pos) {
        if (field, wt) == (2, 2) {
            count = super::attrs::any_value_number(&kv[start..end]);
        }
    }
    count.filter(|c| c.is_finite() && *c >= 1.0)
}

/// Appends `msg` (a message whose field `field` is its repeated `KeyValue` attributes: 3 in
/// a span `Event`, 1 in a `Resource`) with its attributes rewritten by `rewrite`: replaced,
/// deleted, and the additions the message lacks appended. Every other field is copied.
pub fn write_rewritten_attributes(
    msg: &[u8],
    field: u32,
    rewrite: &dyn AttributeRewrite,
    out: &mut Vec<u8>,
) {
    let additions = rewrite.additions();
    let mut present = 0u64;
    let (mut pos, mut copy_from) = (0, 0);
    loop {
        let field_start = pos;
        let Some((f, wt, start, end)) = super::attrs::next_field_slice(msg, &mut pos) else {
            break;
        };
        if (f, wt) != (field, 2) {
            continue;
        }
        let kv = &msg[start..end];
        match rewrite.rewrite(kv) {
            Some(replacement) => {
                out.extend_from_slice(&msg[copy_from..field_start]);
                if !replacement.is_empty() {
                    present |= present_additions(kv, additions);
                    put_len_field(out, field, &replacement);
                }
                copy_from = pos;
            }
            None => present |= present_additions(kv, additions),
        }
    }
    out.extend_from_slice(&msg[copy_from..]);
    for (i, (_, kv)) in additions.iter().enumerate().take(64) {
        if present & (1 << i) == 0 {
            put_len_field(out, field, kv);
        }
    }
}

/// Appends a resource header (every field of a `ResourceSpans` but its scope spans, as
/// [`super::reframe::SpanParts::resource`] holds it) with its resource's attributes
/// rewritten by `rewrite`; a header without a resource gets one when there are additions.
pub fn write_resource_header(header: &[u8], rewrite: &dyn AttributeRewrite, out: &mut Vec<u8>) {
    let (mut pos, mut copy_from, mut seen) = (0, 0, false);
    loop {
        let field_start = pos;
        let Some((f, wt, start, end)) = super::attrs::next_field_slice(header, &mut pos) else {
            break;
        };
        if (f, wt) != (1, 2) {
            continue;
        }
        seen = true;
        out.extend_from_slice(&header[copy_from..field_start]);
        put_len_field_with(out, 1, |out| {
            write_rewritten_attributes(&header[start..end], 1, rewrite, out)
        });
        copy_from = pos;
    }
    out.extend_from_slice(&header[copy_from..]);
    if !seen && !rewrite.additions().is_empty() {
        put_len_field_with(out, 1, |out| {
            write_rewritten_attributes(&[], 1, rewrite, out)
        });
    }
}

/// Appends a length-delimited field whose value `write` appends to `out`: written in place,
/// then its tag and length put in front of it (a memmove, where a value written apart and
/// copied would take a second buffer of its size: a resource can be megabytes).
fn put_len_field_with(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    write(out);
    // Two varints of at most ten bytes each, on the stack.
    let mut prefix = [0u8; 20];
    let mut rest = &mut prefix[..];
    put_varint(&mut rest, u64::from(field << 3 | 2));
    put_varint(&mut rest, (out.len() - at) as u64);
    let n = 20 - rest.len();
    out.splice(at..at, prefix[..n].iter().copied());
}

/// The bits of the `additions` (bit i: additions[i], the first 64) whose key is `kv`'s.
fn present_additions(kv: &[u8], additions: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    let mut present = 0u64;
    for (i, (k, _)) in additions.iter().enumerate().take(64) {
        if key_value_key_is(kv, k) {
            present |= 1 << i;
        }
    }
    present
}

/// The encoded `attributes` field (9) holding `key` = `count`: an `int_value` when the
/// count is whole, else a `double_value`.
fn adjusted_count_field(key: &str, count: f64) -> Vec<u8> {
    let mut any = Vec::with_capacity(10);
    if (count - count.round()).abs() < 1e-9 && count < 9.0e15 {
        any.push(3 << 3);
        put_varint(&mut any, count.round() as u64);
    } else {
        any.push((4 << 3) | 1);
        any.extend_from_slice(&count.to_le_bytes());
    }
    let mut kv = Vec::with_capacity(key.len() + any.len() + 4);
    put_len_field(&mut kv, 1, key.as_bytes());
    put_len_field(&mut kv, 2, &any);
    let mut field = Vec::with_capacity(kv.len() + 3);
    put_len_field(&mut field, 9, &kv);
    field
}

/// Whether a `KeyValue` message's key is `key`. The key is field 1 and comes first in
/// every encoder's output, so compare bytes directly and parse only otherwise.
fn key_value_key_is(kv: &[u8], key: &[u8]) -> bool {
    if key.len() < 0x80 && kv.first() == Some(&0x0a) {
        return kv.get(1) == Some(&(key.len() as u8)) && kv.get(2..2 + key.len()) == Some(key);
    }
    key_value_key(kv) == Some(key)
}

fn key_value_key(kv: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    while let Some((field, wt, start, end)) = super::attrs::next_field_slice(kv, &mut pos) {
        if (field, wt) == (1, 2) {
            return Some(&kv[start..end]);
        }
    }
    None
}

/// Appends a length-delimited field `field` holding `value`.
pub fn put_len_field(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: tracestate headers the Go SDK's ParseTraceState accepts and refuses
    /// (go.opentelemetry.io/otel/trace tracestate.go, which the Collector's trace_state
    /// policy calls). Guarantees: only valid headers are read.
    #[test]
    fn tracestate_validity_follows_w3c_as_the_go_sdk() {
        for ok in [
            "",
            "ot=th:8",
            "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
            "a=1,,b=2",
            " a=1\t,b=2 ",
            "tenant1@vendor=x",
            "0tenant@sys=x",
            "a_-*/9=v",
            // Trimmed before the key and after the value only: `k= v` holds " v"
            // (docs/policies.md, trace_state).
            "k= v",
        ] {
            assert!(tracestate_is_valid(ok.as_bytes()), "{ok:?} should be valid");
        }
        let long_value = format!("a={}", "v".repeat(257));
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        let too_many = too_many.join(",");
        for bad in [
            "Upper=1",
            "a=1,a=2",
            "a",
            "a=",
            "=v",
            "a=b=c",
            "1a=v",
            "a=v\u{7f}",
            "a@B=v",
            "a@=v",
            "@a=v",
            // Not trimmed around the `=`: a key ending in a space is invalid.
            "k =v",
            long_value.as_str(),
            too_many.as_str(),
        ] {
            assert!(
                !tracestate_is_valid(bad.as_bytes()),
                "{bad:?} should be invalid"
            );
        }
        let max: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(tracestate_is_valid(max.join(",").as_bytes()));
    }
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::Span;
    use prost::Message;

    fn span(trace_state: &str) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            trace_state: trace_state.into(),
            name: "GET /pay".into(),
            flags: 0x101,
            attributes: vec![KeyValue {
                key: "http.route".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("/pay".into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn fields_are_read() {
        let bytes = span("vendor=x,ot=th:8").encode_to_vec();
        let f = span_fields(&bytes);
        assert_eq!(&bytes[f.trace_state.clone()], b"vendor=x,ot=th:8");
        assert_eq!(&bytes[f.name], b"GET /pay");
        assert_eq!(f.flags & FLAG_SAMPLED, 1);
    }

    /// Scenario: a kept span's trace_state written in place, for values whose length takes
    /// one, two and three varint bytes.
    /// Guarantees: the same bytes as building the value and then its field.
    #[test]
    fn tracestate_field_written_in_place_matches_the_built_one() {
        let long = format!("ot=rv:1;th:8,vendor={}", "x".repeat(200));
        let longer = format!("vendor={}", "y".repeat(20_000));
        for ts in [
            "",
            "a=1, ot=rv:abc;th:8 ,b=2",
            long.as_str(),
            longer.as_str(),
        ] {
            let mut in_place = vec![0xff];
            put_tracestate_field(&mut in_place, ts.as_bytes(), Some("c"));
            let mut built = vec![0xff];
            put_len_field(
                &mut built,
                3,
                &tracestate_with_threshold(ts.as_bytes(), "c"),
            );
            assert_eq!(in_place, built, "{ts:?}");
        }
    }

    /// Scenario: kept spans marked with one probability, then another, then the first
    /// again, with and without an adjusted-count attribute, on one thread.
    /// Guarantees: the marks reused from the last trace are the ones for its probability
    /// and key, never another's.
    #[test]
    fn sampling_marks_are_reused_only_for_the_same_probability_and_key() {
        let a = sampling_marks(0.25, Some("sampling.adjusted_count"));
        let b = sampling_marks(0.5, Some("sampling.adjusted_count"));
        let c = sampling_marks(0.5, None);
        let d = sampling_marks(0.5, None);
        // Alternating between probabilities reuses both.
        assert!(std::rc::Rc::ptr_eq(
            &a,
            &sampling_marks(0.25, Some("sampling.adjusted_count"))
        ));
        for i in 0..MARKS_REMEMBERED {
            sampling_marks(1.0 / (i + 2) as f64, Some("other"));
        }
        // Past MARKS_REMEMBERED others, the oldest is built anew (and still right).
        let again = sampling_marks(0.25, Some("sampling.adjusted_count"));
        assert!(!std::rc::Rc::ptr_eq(&a, &again));
        assert_eq!(again.th, a.th);
        assert_eq!(a.th, threshold_hex(0.25));
        assert_eq!(b.th, threshold_hex(0.5));
        assert_eq!(a.attr, adjusted_count_field("sampling.adjusted_count", 4.0));
        assert!(c.attr.is_empty());
        assert!(std::rc::Rc::ptr_eq(&c, &d));
        assert!(!std::rc::Rc::ptr_eq(&b, &c));
    }

    /// Scenario: the threshold added to a tracestate of 32 vendor entries, of 31, and of
    /// 32 with an `ot` entry among them.
    /// Guarantees: the result never holds more than 32 entries and stays valid; what is
    /// dropped is the rightmost vendor entry (W3C), and only when there is no room.
    #[test]
    fn a_full_tracestate_drops_its_rightmost_entry_for_the_threshold() {
        let vendors = |n: usize| (0..n).map(|i| format!("k{i}=v")).collect::<Vec<_>>();
        let full = vendors(32).join(",");
        let out = String::from_utf8(tracestate_with_threshold(full.as_bytes(), "0")).unwrap();
        assert!(tracestate_is_valid(out.as_bytes()), "{out}");
        assert_eq!(out, format!("ot=th:0,{}", vendors(31).join(",")));
        let room = vendors(31).join(",");
        let out = String::from_utf8(tracestate_with_threshold(room.as_bytes(), "8")).unwrap();
        assert_eq!(out, format!("ot=th:8,{room}"));
        let with_ot = format!(
            "{},ot=rv:ab;th:c,{}",
            vendors(15).join(","),
            vendors(31)[15..].join(",")
        );
        let out = String::from_utf8(tracestate_with_threshold(with_ot.as_bytes(), "8")).unwrap();
        assert!(tracestate_is_valid(out.as_bytes()), "{out}");
        assert_eq!(out, format!("ot=th:8;rv:ab,{}", vendors(31).join(",")));
    }

    #[test]
    fn tracestate_lookup_handles_spaces_and_missing_keys() {
        let ts = b"congo=t61rcWkgMzE , rojo=00f067aa0ba902b7";
        assert_eq!(tracestate_get(ts, b"rojo"), Some(&b"00f067aa0ba902b7"[..]));
        assert_eq!(tracestate_get(ts, b"congo"), Some(&b"t61rcWkgMzE"[..]));
        assert_eq!(tracestate_get(ts, b"ro"), None);
        assert_eq!(tracestate_get(b"", b"ot"), None);
    }

    #[test]
    fn thresholds_round_trip() {
        assert_eq!(threshold_hex(1.0), "0");
        assert_eq!(threshold_hex(0.5), "8");
        assert_eq!(threshold_hex(0.25), "c");
        assert_eq!(threshold_hex(0.01), "fd70a3d70a3d7");
        for p in [1.0, 0.5, 0.25, 0.1, 0.01, 0.0001] {
            let ts = tracestate_with_threshold(b"", &threshold_hex(p));
            let back = tracestate_probability(&ts).unwrap();
            assert!((back - p).abs() / p < 1e-9, "{p} came back as {back}");
        }
        assert_eq!(tracestate_probability(b"ot=th:zz"), None);
        assert_eq!(tracestate_probability(b"ot=th:+8"), None);
        assert_eq!(tracestate_probability(b"other=th:8"), None);
    }

    #[test]
    fn threshold_replaces_only_th_and_moves_ot_first() {
        let ts = tracestate_with_threshold(b"a=1, ot=rv:abc;th:8 ,b=2", "c");
        assert_eq!(ts, b"ot=th:c;rv:abc,a=1,b=2");
    }

    /// Scenario: spans kept at 12.5% (25% after a 50% head sampler) or 25%, whose
    /// randomness (the trace id's last 56 bits, or an `ot=rv:`) is below or above the
    /// threshold, with and without a tracestate; a span kept at 100%.
    /// Guarantees: `th` is written only where it is consistent with the randomness (the
    /// spec's rule: kept because randomness >= threshold); otherwise the span's own `th`
    /// is removed too (the `ot` entry with it when nothing else is in it) and other
    /// entries stay; the adjusted-count attribute is written either way; 100% is always
    /// consistent.
    #[test]
    fn a_threshold_is_written_only_where_the_randomness_reaches_it() {
        let how = AdjustedCount {
            tracestate: true,
            attribute: Some("n"),
            rewrite: None,
            events: None,
        };
        let kept = |ts: &str, last: u8, p: f64| {
            let mut s = span(ts);
            s.trace_id[9..].fill(last);
            let got = Span::decode(&with_adjusted_count(&s.encode_to_vec(), p, &how)[..]).unwrap();
            let count = got.attributes[1].value.clone().unwrap().value;
            (got.trace_state, count)
        };
        let int = |n| Some(any_value::Value::IntValue(n));
        // 12.5%: threshold 0xe0000000000000.
        assert_eq!(
            kept("vendor=x,ot=th:8", 0xff, 0.25),
            ("ot=th:e,vendor=x".into(), int(8))
        );
        assert_eq!(
            kept("vendor=x,ot=th:8", 0xdf, 0.25),
            ("vendor=x".into(), int(8))
        );
        assert_eq!(
            kept("ot=th:8;rv:e0000000000000,v=1", 0x00, 0.25),
            ("ot=th:e;rv:e0000000000000,v=1".into(), int(8))
        );
        assert_eq!(
            kept("ot=th:8;rv:dfffffffffffff,v=1", 0xff, 0.25),
            ("ot=rv:dfffffffffffff,v=1".into(), int(8))
        );
        // A malformed rv proves nothing.
        assert_eq!(kept("ot=rv:ff", 0xff, 0.5), ("ot=rv:ff".into(), int(2)));
        assert_eq!(
            kept("ot=rv:+fffffffffffff", 0xff, 0.5),
            ("ot=rv:+fffffffffffff".into(), int(2))
        );
        // With no `ot` entry left, all 32 vendors' members stay (none makes room for it).
        let vendors: Vec<String> = (0..32).map(|i| format!("v{i}=x")).collect();
        let full = vendors.join(",");
        assert_eq!(kept(&full, 0x00, 0.5), (full.clone(), int(2)));
        // Nothing left at all: no trace_state field, not an empty one.
        let mut bare = span("");
        bare.trace_id[9..].fill(0x00);
        let bytes = with_adjusted_count(&bare.encode_to_vec(), 0.5, &how);
        let mut pos = 0;
        while let Some((field, ..)) = crate::wire::attrs::next_field_slice(&bytes, &mut pos) {
            assert_ne!(field, 3, "an empty trace_state field was written");
        }
        // 25%: threshold 0xc0000000000000; no tracestate before.
        assert_eq!(kept("", 0xc0, 0.25), ("ot=th:c".into(), int(4)));
        assert_eq!(kept("", 0xbf, 0.25), (String::new(), int(4)));
        assert_eq!(kept("", 0x00, 1.0), ("ot=th:0".into(), int(1)));
        assert_eq!(trace_id_randomness(&[0xff; 15]), None);
        assert_eq!(
            sampling_randomness(b"ot=rv:0123456789abcd", &[0; 16]),
            Some(0x0123456789abcd)
        );
    }

    #[test]
    fn adjusted_count_rewrites_only_what_it_must() {
        let mut original = span("vendor=x,ot=th:8");
        // Randomness (the id's last 56 bits) above any threshold here: see
        // `a_threshold_is_written_only_where_the_randomness_reaches_it`.
        original.trace_id[9..].fill(0xff);
        let how = AdjustedCount {
            tracestate: true,
            attribute: Some("sampling.adjusted_count"),
            rewrite: None,
            events: None,
        };
        // Kept at 25% after a 50% head sampler: 12.5% overall, count 8.
        let bytes = with_adjusted_count(&original.encode_to_vec(), 0.25, &how);
        let got = Span::decode(&bytes[..]).unwrap();
        assert_eq!(got.trace_state, "ot=th:e,vendor=x");
        assert_eq!(got.attributes.len(), 2);
        assert_eq!(got.attributes[0], original.attributes[0]);
        assert_eq!(got.attributes[1].key, "sampling.adjusted_count");
        assert_eq!(
            got.attributes[1].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(8))
        );
        let mut rest = got.clone();
        rest.trace_state = original.trace_state.clone();
        rest.attributes.truncate(1);
        assert_eq!(rest, original);
        // Rewriting again replaces the attribute instead of adding a second one.
        let again = Span::decode(&with_adjusted_count(&bytes, 1.0, &how)[..]).unwrap();
        assert_eq!(again.attributes.len(), 2);
        // A fractional count is a double; no tracestate when it is turned off.
        let only_attr = AdjustedCount {
            tracestate: false,
            attribute: Some("n"),
            rewrite: None,
            events: None,
        };
        let got =
            Span::decode(&with_adjusted_count(&span("").encode_to_vec(), 0.3, &only_attr)[..])
                .unwrap();
        assert_eq!(got.trace_state, "");
        match got.attributes[1].value.as_ref().unwrap().value {
            Some(any_value::Value::DoubleValue(d)) => assert!((d - 1.0 / 0.3).abs() < 1e-9),
            ref other => panic!("expected a double, got {other:?}"),
        }
    }

    /// Scenario: kept spans that already carry the adjusted-count attribute (a Refinery
    /// user's trial: a head sampler's `SampleRate=10` came out as `SampleRate=1`): an int,
    /// a double, one beside a head threshold, and values that are no count (0, a string).
    /// Guarantees: without a threshold the counts multiply, as Refinery multiplies
    /// `SampleRate`; with one the threshold alone says the earlier probability (the
    /// attribute is not counted twice); a value that is no count is replaced.
    #[test]
    fn an_earlier_count_in_the_attribute_multiplies() {
        let how = AdjustedCount {
            tracestate: false,
            attribute: Some("SampleRate"),
            rewrite: None,
            events: None,
        };
        let with = |ts: &str, value: any_value::Value| {
            let mut s = span(ts);
            s.attributes.push(KeyValue {
                key: "SampleRate".into(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
            s
        };
        let count = |s: &Span, p: f64| {
            let got = Span::decode(&with_adjusted_count(&s.encode_to_vec(), p, &how)[..]).unwrap();
            let rates: Vec<_> = got
                .attributes
                .iter()
                .filter(|a| a.key == "SampleRate")
                .collect();
            assert_eq!(rates.len(), 1, "{got:?}");
            rates[0].value.as_ref().unwrap().value.clone().unwrap()
        };
        use any_value::Value::{DoubleValue, IntValue, StringValue};
        assert_eq!(count(&with("", IntValue(10)), 0.5), IntValue(20));
        assert_eq!(count(&with("", DoubleValue(2.5)), 0.5), IntValue(5));
        assert_eq!(count(&with("", IntValue(10)), 1.0), IntValue(10));
        // A head threshold of 50% says the earlier probability: 1 / (0.5 × 0.5).
        assert_eq!(count(&with("ot=th:8", IntValue(2)), 0.5), IntValue(4));
        assert_eq!(count(&with("", IntValue(0)), 0.5), IntValue(2));
        assert_eq!(count(&with("", StringValue("10".into())), 0.5), IntValue(2));
    }

    /// Deletes `drop`, masks `mask`, and adds `add` = "v" when missing.
    struct Scrub;
    impl AttributeRewrite for Scrub {
        fn rewrite(&self, kv: &[u8]) -> Option<Vec<u8>> {
            if key_value_key_is(kv, b"drop") {
                return Some(Vec::new());
            }
            key_value_key_is(kv, b"mask").then(|| KeyValue::encode_to_vec(&kv_of("mask", "****")))
        }
        fn additions(&self) -> &[(Vec<u8>, Vec<u8>)] {
            static ADD: std::sync::OnceLock<Vec<(Vec<u8>, Vec<u8>)>> = std::sync::OnceLock::new();
            ADD.get_or_init(|| vec![(b"add".to_vec(), kv_of("add", "v").encode_to_vec())])
        }
    }

    fn kv_of(k: &str, v: &str) -> KeyValue {
        crate::test_util::kv(k, v)
    }

    /// Scenario: resources of 100 B, 300 B and 70 KB rewritten (lengths of one, two and
    /// three varint bytes, written after the value they prefix).
    /// Guarantees: each rewritten header decodes, with the value masked and the rest kept.
    #[test]
    fn rewritten_resources_of_every_length_decode() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
        for len in [100, 300, 70_000] {
            let rs = ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv_of("mask", "secret"), kv_of("pad", &"x".repeat(len))],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let mut out = Vec::new();
            write_resource_header(&rs.encode_to_vec(), &Scrub, &mut out);
            let got = ResourceSpans::decode(&out[..]).expect("decodes");
            let attrs = got.resource.unwrap_or_default().attributes;
            assert_eq!(attrs[0], kv_of("mask", "****"), "{len}");
            assert_eq!(attrs[1], kv_of("pad", &"x".repeat(len)), "{len}");
        }
    }

    /// Scenario: a resource header with attributes to delete, mask and keep, plus a
    /// schema URL; a header without a resource; an event whose attributes are rewritten.
    /// Guarantees: only the named attributes change, every other field survives, additions
    /// are written once (not when present), and a header without a resource gains one.
    #[test]
    fn resource_and_event_attributes_are_rewritten_in_place() {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans};
        let resource = Resource {
            attributes: vec![kv_of("drop", "x"), kv_of("keep", "y"), kv_of("mask", "z")],
            dropped_attributes_count: 3,
            ..Default::default()
        };
        let rs = ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![],
            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
        };
        let mut out = Vec::new();
        write_resource_header(&rs.encode_to_vec(), &Scrub, &mut out);
        let got = ResourceSpans::decode(&out[..]).unwrap_or_default();
        let r = got.resource.clone().unwrap_or_default();
        let keys: Vec<&str> = r.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["keep", "mask", "add"]);
        assert_eq!(r.attributes[1], kv_of("mask", "****"));
        assert_eq!(r.dropped_attributes_count, 3);
        assert_eq!(got.schema_url, rs.schema_url);

        // Present already: not added twice; no resource at all: one is made.
        let mut again = Vec::new();
        write_resource_header(&out, &Scrub, &mut again);
        assert_eq!(again, out);
        let mut bare = Vec::new();
        write_resource_header(&[], &Scrub, &mut bare);
        let got = ResourceSpans::decode(&bare[..]).unwrap_or_default();
        assert_eq!(
            got.resource.unwrap_or_default().attributes,
            [kv_of("add", "v")]
        );

        let mut span = span("");
        span.events.push(Event {
            name: "e".into(),
            time_unix_nano: 7,
            attributes: vec![kv_of("drop", "x"), kv_of("add", "old")],
            dropped_attributes_count: 1,
        });
        let how = AdjustedCount {
            tracestate: false,
            attribute: None,
            rewrite: None,
            events: Some(&Scrub),
        };
        let got = Span::decode(&with_adjusted_count(&span.encode_to_vec(), 1.0, &how)[..])
            .unwrap_or_default();
        let mut want = span.clone();
        want.events[0].attributes.remove(0);
        assert_eq!(got, want, "only the event's deleted attribute changed");
    }
}
