//! Walks an encoded OTLP `ExportTraceServiceRequest` without decoding it.
//!
//! Input: the raw request body (after gRPC framing and decompression, or a converted
//! OTLP/HTTP body). Output: a [`Scan`] that lists, per span, its trace id, a small summary
//! (ids, times, status) and the byte range of the span message, plus the resource and scope
//! "headers" it sits under: every field of a `ResourceSpans` or `ScopeSpans` except its
//! children, copied once per resource or scope (never per span) so they can be written again
//! in front of any subset of the spans by [`crate::wire::reframe`].
//!
//! Message layout (field numbers):
//! `ExportTraceServiceRequest { resource_spans = 1 }`,
//! `ResourceSpans { resource = 1, scope_spans = 2, schema_url = 3 }`,
//! `ScopeSpans { scope = 1, spans = 2, schema_url = 3 }`,
//! `Span { trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5,
//! kind = 6, start = 7, end = 8, …, status = 15 { message = 2, code = 3 }, flags = 16 }`.
//!
//! The scan checks every length and wire type down to the span's own fields, and
//! [`crate::wire::validate`] checks the rest (UTF-8 strings, well-formed attributes, events,
//! links, status, resource and scope), so a body it accepts decodes with any protobuf
//! library and can be forwarded as it is. A span with a defect is rejected alone; a
//! malformed resource or scope refuses the request.

use std::ops::Range;

pub use super::reader::ScanError;
use super::reader::{bad_wire, Malformed, Reader, WT_I32, WT_I64, WT_LEN, WT_VARINT};
use super::validate;

/// `ResourceSpans.instrumentation_library_spans`, what OTLP called `scope_spans` before
/// v0.15 (2022; reserved since, same fields): the Collector still reads spans sent in it,
/// and so does the scan (see `Scan::scan_resource_spans`).
const DEPRECATED_SCOPE_SPANS: u32 = 1000;

/// Why a span is rejected while the rest of its request is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanDefect {
    /// `trace_id` is not 16 bytes long (missing counts as 0 bytes).
    TraceIdLength(usize),
    /// `trace_id` is all zeroes.
    TraceIdZero,
    /// A string that is not UTF-8, or an attribute, event, link or status that is not
    /// well-formed inside (see [`crate::wire::validate`]).
    Malformed(Malformed),
}

impl std::fmt::Display for SpanDefect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpanDefect::TraceIdLength(n) => write!(f, "trace_id must be 16 bytes, found {n}"),
            SpanDefect::TraceIdZero => f.write_str("trace_id is all zeroes"),
            SpanDefect::Malformed(m) => write!(f, "span {m}"),
        }
    }
}

/// OTLP span status codes as they appear on the wire.
pub mod status {
    /// `STATUS_CODE_UNSET`
    pub const UNSET: u8 = 0;
    /// `STATUS_CODE_OK`
    pub const OK: u8 = 1;
    /// `STATUS_CODE_ERROR`
    pub const ERROR: u8 = 2;
}

/// A span's place in the body and the few fields the router and policies read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanEntry {
    /// The 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The span id (zero when missing or not 8 bytes).
    pub span_id: [u8; 8],
    /// The parent span id; all zero for a root span.
    pub parent_span_id: [u8; 8],
    /// `start_time_unix_nano`.
    pub start_unix_nano: u64,
    /// `end_time_unix_nano`.
    pub end_unix_nano: u64,
    /// Status code (see [`status`]); unknown codes are kept as read, saturated to 255.
    pub status_code: u8,
    /// Range of the span message's own bytes (without its tag and length) in the body.
    pub range: Range<u32>,
    /// Index into [`Scan::scopes`].
    pub scope: u32,
}

impl SpanEntry {
    /// True when the span has no parent.
    pub fn is_root(&self) -> bool {
        self.parent_span_id == [0; 8]
    }
}

/// A `ScopeSpans` message: its header bytes and the resource it sits under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeEntry {
    /// Range in [`Scan::headers`] of every field but `spans`, tags included.
    pub header: Range<u32>,
    /// Index into [`Scan::resources`].
    pub resource: u32,
}

/// A `ResourceSpans` message: its header bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceEntry {
    /// Range in [`Scan::headers`] of every field but `scope_spans`, tags included.
    pub header: Range<u32>,
}

/// The result of scanning one request. Reuse one value across requests with
/// [`Scan::clear`] to keep its buffers.
#[derive(Debug, Default, Clone)]
pub struct Scan {
    /// Valid spans in body order.
    pub spans: Vec<SpanEntry>,
    /// Scopes in body order.
    pub scopes: Vec<ScopeEntry>,
    /// Resources in body order.
    pub resources: Vec<ResourceEntry>,
    /// Resource and scope header bytes, concatenated.
    pub headers: Vec<u8>,
    /// Spans left out for a defect, and the first defect seen.
    pub rejected: u32,
    /// The first defect that caused a span to be rejected.
    pub first_defect: Option<SpanDefect>,
    /// Of the rejected spans, those with a malformed field inside (the others have a bad
    /// trace id).
    pub rejected_malformed: u32,
    /// Whether spans were read from a resource's deprecated `instrumentation_library_spans`:
    /// the splitter then re-frames the body (under `scope_spans`) rather than pass it on as
    /// it came, which a receiver that does not read the old field would take as empty.
    pub deprecated_scopes: bool,
}

// === impl Scan ===

impl Scan {
    /// The most splitting this request among `owners` gateways can write: its spans once,
    /// plus each resource's and scope's header once per part its spans may go to (at most
    /// one per owner and one per span). A request of one huge resource over spans of many
    /// trace ids would otherwise be copied once per gateway past every limit that saw
    /// only its body. Two passes over the spans, no allocation.
    pub fn split_bound(&self, body_len: usize, owners: usize) -> usize {
        let owners = owners.max(1);
        // Spans come scope by scope, and scopes resource by resource: each run of one key
        // is one scope's (or resource's) spans.
        let copies = |key: &dyn Fn(&SpanEntry) -> Option<usize>,
                      header: &dyn Fn(usize) -> usize| {
            let mut extra = 0usize;
            let mut run: Option<(Option<usize>, usize)> = None;
            for s in self.spans.iter().map(Some).chain([None]) {
                let k = s.and_then(key);
                match &mut run {
                    Some((cur, n)) if s.is_some() && *cur == k => *n += 1,
                    _ => {
                        if let Some((Some(cur), n)) = run {
                            // The header, and the message's tag and length around it.
                            let copy = header(cur) + 6;
                            extra = extra.saturating_add(copy * (n.min(owners) - 1));
                        }
                        run = s.map(|_| (k, 1));
                    }
                }
            }
            extra
        };
        let len = |r: &Range<u32>| (r.end - r.start) as usize;
        let scope = |s: &SpanEntry| Some(s.scope as usize);
        let resource = |s: &SpanEntry| {
            self.scopes
                .get(s.scope as usize)
                .map(|x| x.resource as usize)
        };
        let scopes = copies(&scope, &|i| {
            self.scopes.get(i).map_or(0, |x| len(&x.header))
        });
        let resources = copies(&resource, &|i| {
            self.resources.get(i).map_or(0, |x| len(&x.header))
        });
        body_len.saturating_add(scopes).saturating_add(resources)
    }

    /// Gives back what a request far larger than usual left allocated, keeping room for
    /// [`Scan::RETAINED_SPANS`] spans, a quarter as many scopes and resources, and 4 MiB
    /// of headers: a scan reused per worker thread would otherwise hold, for good and
    /// uncounted, about 64 bytes per span (8 per empty resource) of the largest request it
    /// ever read (a 16 MiB request of small spans: tens of MB per worker). Cheap when
    /// nothing is over its bound.
    pub fn trim(&mut self) {
        const HEADERS: usize = 4 << 20;
        self.clear();
        self.spans.shrink_to(Self::RETAINED_SPANS);
        self.scopes.shrink_to(Self::RETAINED_SPANS / 4);
        self.resources.shrink_to(Self::RETAINED_SPANS / 4);
        self.headers.shrink_to(HEADERS);
    }

    /// Bytes its lists hold allocated (their capacity, not their length): what holding
    /// this scan costs.
    pub fn held_bytes(&self) -> usize {
        use std::mem::size_of;
        self.spans.capacity() * size_of::<SpanEntry>()
            + self.scopes.capacity() * size_of::<ScopeEntry>()
            + self.resources.capacity() * size_of::<ResourceEntry>()
            + self.headers.capacity()
    }

    /// Spans a reused scan keeps room for between requests (see [`Scan::trim`]).
    pub const RETAINED_SPANS: usize = 16 << 10;

    /// Forgets the last request but keeps the allocated buffers.
    pub fn clear(&mut self) {
        self.spans.clear();
        self.scopes.clear();
        self.resources.clear();
        self.headers.clear();
        self.rejected = 0;
        self.rejected_malformed = 0;
        self.deprecated_scopes = false;
        self.first_defect = None;
    }

    /// The header bytes of a resource.
    pub fn resource_header(&self, resource: u32) -> &[u8] {
        let r = &self.resources[resource as usize].header;
        &self.headers[r.start as usize..r.end as usize]
    }

    /// The header bytes of a scope.
    pub fn scope_header(&self, scope: u32) -> &[u8] {
        let r = &self.scopes[scope as usize].header;
        &self.headers[r.start as usize..r.end as usize]
    }

    /// Scans `body`, replacing what this value held.
    pub fn scan(&mut self, body: &[u8]) -> Result<(), ScanError> {
        self.clear();
        if body.len() > u32::MAX as usize {
            return Err(ScanError::TooLarge(body.len()));
        }
        let mut r = Reader::new(body, 0, body.len());
        while let Some((field, wt, at)) = r.tag("ExportTraceServiceRequest")? {
            match (field, wt) {
                (1, WT_LEN) => {
                    let inner = r.len_delimited("resource_spans")?;
                    self.scan_resource_spans(body, inner)?;
                }
                (1, _) => return Err(bad_wire("ExportTraceServiceRequest", field, wt, at)),
                _ => r.skip(field, wt, at, "ExportTraceServiceRequest")?,
            }
        }
        Ok(())
    }

    fn scan_resource_spans(&mut self, body: &[u8], range: Range<usize>) -> Result<(), ScanError> {
        let resource = self.resources.len() as u32;
        // The header is written first; scope entries point back at this resource.
        let header_start = self.headers.len();
        let mut r = Reader::new(body, range.start, range.end);
        // First pass: copy the header fields; note whether there are scopes at all.
        let (mut has_scopes, mut has_deprecated) = (false, false);
        while let Some((field, wt, at)) = r.tag("ResourceSpans")? {
            match (field, wt) {
                (2, WT_LEN) => {
                    r.len_delimited("scope_spans")?;
                    has_scopes = true;
                }
                (DEPRECATED_SCOPE_SPANS, WT_LEN) => {
                    r.len_delimited("instrumentation_library_spans")?;
                    has_deprecated = true;
                }
                // A known field keeps its wire type (as the Collector's decoder insists).
                (DEPRECATED_SCOPE_SPANS, _) => {
                    return Err(bad_wire("ResourceSpans", field, wt, at))
                }
                (1 | 3, WT_LEN) => {
                    let v = r.len_delimited("ResourceSpans")?;
                    if field == 1 {
                        validate::resource(body, v)
                    } else {
                        validate::string(body, v, "schema_url")
                    }
                    .map_err(ScanError::Malformed)?;
                    self.headers.extend_from_slice(&body[at..r.pos]);
                }
                (4.., _) => {
                    r.skip(field, wt, at, "ResourceSpans")?;
                    self.headers.extend_from_slice(&body[at..r.pos]);
                }
                _ => return Err(bad_wire("ResourceSpans", field, wt, at)),
            }
        }
        self.resources.push(ResourceEntry {
            header: header_start as u32..self.headers.len() as u32,
        });
        // Spans under the field OTLP had before `scope_spans` are read as the Collector
        // migrates them (`MigrateTraces`): only when the resource has no `scope_spans`.
        let scopes_field = match (has_scopes, has_deprecated) {
            (true, _) => 2,
            (false, true) => {
                self.deprecated_scopes = true;
                DEPRECATED_SCOPE_SPANS
            }
            (false, false) => return Ok(()),
        };
        // Second pass over the same bytes, now that the header is known: scan the scopes.
        let mut r = Reader::new(body, range.start, range.end);
        while let Some((field, wt, at)) = r.tag("ResourceSpans")? {
            if (field, wt) == (scopes_field, WT_LEN) {
                let inner = r.len_delimited("scope_spans")?;
                self.scan_scope_spans(body, inner, resource)?;
            } else if (field, wt) == (DEPRECATED_SCOPE_SPANS, WT_LEN) {
                // Beside `scope_spans`, left out as the Collector leaves them; rejected
                // (counted, and the sender told so) rather than lost without a word.
                let inner = r.len_delimited("instrumentation_library_spans")?;
                let left_out = count_spans(body, inner);
                if left_out > 0 {
                    self.rejected += left_out;
                    self.rejected_malformed += left_out;
                    self.first_defect
                        .get_or_insert(SpanDefect::Malformed(Malformed {
                            what: "instrumentation_library_spans",
                            why: "is not read beside scope_spans (the deprecated field, left out as the Collector leaves it)",
                            at,
                        }));
                }
            } else {
                r.skip(field, wt, at, "ResourceSpans")?;
            }
        }
        Ok(())
    }

    /// Scans one `ScopeSpans` (or a deprecated `InstrumentationLibrarySpans`, whose fields
    /// are the same: its `instrumentation_library` has a scope's name and version).
    fn scan_scope_spans(
        &mut self,
        body: &[u8],
        range: Range<usize>,
        resource: u32,
    ) -> Result<(), ScanError> {
        let scope = self.scopes.len() as u32;
        let header_start = self.headers.len();
        let mut r = Reader::new(body, range.start, range.end);
        let mut has_spans = false;
        while let Some((field, wt, at)) = r.tag("ScopeSpans")? {
            match (field, wt) {
                (2, WT_LEN) => {
                    r.len_delimited("span")?;
                    has_spans = true;
                }
                (1 | 3, WT_LEN) => {
                    let v = r.len_delimited("ScopeSpans")?;
                    if field == 1 {
                        validate::scope(body, v)
                    } else {
                        validate::string(body, v, "schema_url")
                    }
                    .map_err(ScanError::Malformed)?;
                    self.headers.extend_from_slice(&body[at..r.pos]);
                }
                (4.., _) => {
                    r.skip(field, wt, at, "ScopeSpans")?;
                    self.headers.extend_from_slice(&body[at..r.pos]);
                }
                _ => return Err(bad_wire("ScopeSpans", field, wt, at)),
            }
        }
        self.scopes.push(ScopeEntry {
            header: header_start as u32..self.headers.len() as u32,
            resource,
        });
        if !has_spans {
            return Ok(());
        }
        let mut r = Reader::new(body, range.start, range.end);
        while let Some((field, wt, at)) = r.tag("ScopeSpans")? {
            if (field, wt) == (2, WT_LEN) {
                let inner = r.len_delimited("span")?;
                // The span's bounds were read above, so a span that is malformed inside
                // them (a field of the wrong wire type, a length past the span's end) is
                // rejected alone: the spans around it, other senders' among them, are
                // still read (docs/security.md).
                let scanned = scan_span(body, inner.clone())
                    .unwrap_or_else(|e| Err(SpanDefect::Malformed(e.into())));
                match scanned {
                    Ok(mut entry) => {
                        entry.scope = scope;
                        self.spans.push(entry);
                    }
                    Err(defect) => {
                        self.rejected += 1;
                        if matches!(defect, SpanDefect::Malformed(_)) {
                            self.rejected_malformed += 1;
                        }
                        self.first_defect.get_or_insert(defect);
                    }
                }
            } else {
                r.skip(field, wt, at, "ScopeSpans")?;
            }
        }
        Ok(())
    }
}

/// The tag byte of a span's `attributes` (field 9, length-delimited).
const ATTRIBUTE_TAG: u8 = 9 << 3 | WT_LEN;

/// Reads one span's fields. The outer `Result` is a malformed body, the inner one a span
/// that is well-formed but not acceptable.
fn scan_span(body: &[u8], range: Range<usize>) -> Result<Result<SpanEntry, SpanDefect>, ScanError> {
    const WHAT: &str = "Span";
    let mut entry = SpanEntry {
        trace_id: [0; 16],
        span_id: [0; 8],
        parent_span_id: [0; 8],
        start_unix_nano: 0,
        end_unix_nano: 0,
        status_code: status::UNSET,
        range: range.start as u32..range.end as u32,
        scope: 0,
    };
    let mut trace_id_len = 0;
    // The first defect inside the span's content; the span is still read to its end, so a
    // malformed body is told from a malformed span.
    let mut defect: Result<(), Malformed> = Ok(());
    let mut r = Reader::new(body, range.start, range.end);
    while let Some((field, wt, at)) = r.tag(WHAT)? {
        // Attributes are most of a span's fields: check them on a predictable branch before
        // the jump table.
        if field == 9 && wt == WT_LEN {
            let v = r.len_delimited("attributes")?;
            check_attribute(body, v, &mut defect);
            // Attributes come one after another: the rest of the run, each with a one-byte
            // tag and length, is read without decoding a tag each time.
            while let Some(v) = r.short_len_field(ATTRIBUTE_TAG) {
                check_attribute(body, v, &mut defect);
            }
            continue;
        }
        match (field, wt) {
            (1, WT_LEN) => trace_id_len = read_id(&mut r, body, "trace_id", &mut entry.trace_id)?,
            (2 | 4, WT_LEN) => {
                let (name, out) = if field == 2 {
                    ("span_id", &mut entry.span_id)
                } else {
                    ("parent_span_id", &mut entry.parent_span_id)
                };
                let len = read_id(&mut r, body, name, out)?;
                if defect.is_ok() {
                    defect = validate::id_len(len, 8, name, at);
                }
            }
            (7, WT_I64) => entry.start_unix_nano = r.fixed64("start_time_unix_nano")?,
            (8, WT_I64) => entry.end_unix_nano = r.fixed64("end_time_unix_nano")?,
            (15, WT_LEN) => {
                let v = r.len_delimited("status")?;
                // A message field sent twice is merged (protobuf): a later status without a
                // code keeps the earlier code, a later code replaces it.
                let (code, message_defect) = scan_status(body, v, entry.status_code)?;
                entry.status_code = code;
                if defect.is_ok() {
                    defect = message_defect;
                }
            }
            (3 | 5 | 11 | 13, WT_LEN) => {
                let v = r.len_delimited(WHAT)?;
                if defect.is_ok() {
                    defect = content_defect(field, body, v);
                }
            }
            (6 | 10 | 12 | 14, WT_VARINT) | (16, WT_I32) => {
                r.skip(field, wt, at, WHAT)?;
            }
            (1..=16, _) => return Err(bad_wire(WHAT, field, wt, at)),
            _ => r.skip(field, wt, at, WHAT)?,
        }
    }
    Ok(acceptable(entry, trace_id_len, defect))
}

/// Checks a span's attribute unless the span already has a defect.
#[inline(always)]
fn check_attribute(body: &[u8], v: Range<usize>, defect: &mut Result<(), Malformed>) {
    if defect.is_ok() {
        *defect = validate::key_value(body, v, 0);
    }
}

/// Reads a bytes field into `out` when it has exactly `out`'s length (any other length
/// leaves `out` zero); returns the length read.
#[inline(always)]
fn read_id<const N: usize>(
    r: &mut Reader<'_>,
    body: &[u8],
    name: &'static str,
    out: &mut [u8; N],
) -> Result<usize, ScanError> {
    let v = r.len_delimited(name)?;
    let len = v.len();
    // The last one written is the id, as protobuf reads a field sent twice: an empty or
    // malformed second one is no id, not the first one.
    if len == N {
        out.copy_from_slice(&body[v]);
    } else {
        *out = [0; N];
    }
    Ok(len)
}

/// Checks the content of a span's `trace_state` (3), `name` (5), event (11) or link (13).
#[inline(always)]
fn content_defect(field: u32, body: &[u8], v: Range<usize>) -> Result<(), Malformed> {
    match field {
        3 => validate::string(body, v, "trace_state"),
        5 => validate::string(body, v, "name"),
        11 => validate::event(body, v),
        _ => validate::link(body, v),
    }
}

/// A span read to its end is accepted unless its content has a defect or its trace id is
/// not 16 bytes or is all zero.
fn acceptable(
    entry: SpanEntry,
    trace_id_len: usize,
    defect: Result<(), Malformed>,
) -> Result<SpanEntry, SpanDefect> {
    if let Err(m) = defect {
        return Err(SpanDefect::Malformed(m));
    }
    if trace_id_len != 16 {
        return Err(SpanDefect::TraceIdLength(trace_id_len));
    }
    if entry.trace_id == [0; 16] {
        return Err(SpanDefect::TraceIdZero);
    }
    Ok(entry)
}

/// A status's code (merged into the one read before), and whether every message it holds
/// (a field sent twice is still decoded twice) is UTF-8.
fn scan_status(
    body: &[u8],
    range: Range<usize>,
    merged_into: u8,
) -> Result<(u8, Result<(), Malformed>), ScanError> {
    let mut code = merged_into;
    let mut message = Ok(());
    let mut r = Reader::new(body, range.start, range.end);
    while let Some((field, wt, at)) = r.tag("Status")? {
        match (field, wt) {
            // An enum is an int32: decoders keep the varint's low 32 bits (2^32 + 2 is
            // ERROR to prost and pdata alike). Codes outside 0..=255 are unknown ones.
            (3, WT_VARINT) => {
                code = u8::try_from(r.varint("Status.code")? as u32 as i32).unwrap_or(u8::MAX)
            }
            (2, WT_LEN) => {
                let m = r.len_delimited("Status.message")?;
                if message.is_ok() {
                    message = validate::string(body, m, "status message");
                }
            }
            (2 | 3, _) => return Err(bad_wire("Status", field, wt, at)),
            _ => r.skip(field, wt, at, "Status")?,
        }
    }
    Ok((code, message))
}

/// What a receiving stage tells its sender about a scanned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Spans kept for processing.
    pub valid: u64,
    /// Spans rejected for a defect.
    pub rejected: u64,
    /// Why they were rejected ("" when none were).
    pub message: String,
}

// === impl Scan ===

/// The spans (field 2) of a `ScopeSpans`-shaped message at `range`, counted as far as its
/// framing reads (a message left out is not checked further).
fn count_spans(body: &[u8], range: Range<usize>) -> u32 {
    let mut r = Reader::new(body, range.start, range.end);
    let mut n = 0u32;
    while let Ok(Some((field, wt, at))) = r.tag("ScopeSpans") {
        let read = if (field, wt) == (2, WT_LEN) {
            r.len_delimited("span").map(|_| n += 1)
        } else {
            r.skip(field, wt, at, "ScopeSpans")
        };
        if read.is_err() {
            break;
        }
    }
    n
}

impl Scan {
    /// Scans a request body for a receiving stage: the counts of valid and rejected spans,
    /// and the partial-success message for the rejected ones. A malformed body is an error
    /// (the receivers turn it into the `INVALID_ARGUMENT` refusal the sender sees).
    pub fn scan_request(&mut self, body: &[u8]) -> Result<Scanned, ScanError> {
        self.scan(body)?;
        let rejected = u64::from(self.rejected);
        Ok(Scanned {
            valid: self.spans.len() as u64,
            rejected,
            message: self
                .first_defect
                .map(|d| format!("{rejected} span(s) rejected: {d}"))
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `ResourceSpans` as OTLP before v0.15 could write it: spans under field 1000.
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldResourceSpans {
        #[prost(message, optional, tag = "1")]
        resource: Option<opentelemetry_proto::tonic::resource::v1::Resource>,
        #[prost(message, repeated, tag = "2")]
        scope_spans: Vec<opentelemetry_proto::tonic::trace::v1::ScopeSpans>,
        #[prost(message, repeated, tag = "1000")]
        instrumentation_library_spans: Vec<opentelemetry_proto::tonic::trace::v1::ScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct OldRequest {
        #[prost(message, repeated, tag = "1")]
        resource_spans: Vec<OldResourceSpans>,
    }

    /// Scenario: requests from a sender built on OTLP before v0.15, spans under
    /// `instrumentation_library_spans` (field 1000), alone and beside `scope_spans`.
    /// Guarantees: as the Collector migrates them: alone, they are the resource's scopes
    /// (re-framed under `scope_spans`, their library as the scope); beside `scope_spans`,
    /// they are left out, and never copied into the resource's header (which every
    /// re-framed request of the resource carries), and counted as rejected with a message
    /// saying why (the Collector answers as if it took them).
    #[test]
    fn deprecated_scope_spans_are_read_as_the_collector_migrates_them() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
        use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
        use prost::Message as _;
        let scope_spans = |name: &str, ids: &[u8]| ScopeSpans {
            scope: Some(InstrumentationScope {
                name: name.into(),
                ..Default::default()
            }),
            spans: ids
                .iter()
                .map(|&i| Span {
                    trace_id: vec![i; 16],
                    span_id: vec![i; 8],
                    name: format!("span-{i}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let reframed = |old: &OldRequest| {
            let body = old.encode_to_vec();
            let mut scan = Scan::default();
            scan.scan(&body).unwrap();
            assert!(
                !scan.resource_header(0).windows(7).any(|w| w == b"old-lib"),
                "the deprecated field is not part of the resource's header"
            );
            let parts: Vec<_> = (0..scan.spans.len())
                .map(|i| crate::wire::reframe::parts_of(&body, &scan, i))
                .collect();
            let mut out = bytes::BytesMut::new();
            crate::wire::Reframer::default().encode(&parts, &mut out);
            ExportTraceServiceRequest::decode(out.freeze()).unwrap()
        };
        let names = |req: &ExportTraceServiceRequest| -> Vec<(String, String)> {
            req.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| {
                    let scope = s.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                    s.spans
                        .iter()
                        .map(move |sp| (scope.clone(), sp.name.clone()))
                })
                .collect()
        };

        let alone = OldRequest {
            resource_spans: vec![OldResourceSpans {
                resource: None,
                scope_spans: Vec::new(),
                instrumentation_library_spans: vec![
                    scope_spans("old-lib", &[1, 2]),
                    scope_spans("old-lib", &[3]),
                ],
            }],
        };
        assert_eq!(
            names(&reframed(&alone)),
            [
                ("old-lib".into(), "span-1".into()),
                ("old-lib".into(), "span-2".into()),
                ("old-lib".into(), "span-3".into())
            ]
        );

        let beside = OldRequest {
            resource_spans: vec![OldResourceSpans {
                resource: None,
                scope_spans: vec![scope_spans("new-lib", &[4])],
                instrumentation_library_spans: vec![scope_spans("old-lib", &[5])],
            }],
        };
        assert_eq!(
            names(&reframed(&beside)),
            [("new-lib".into(), "span-4".into())]
        );
        // Whether the body must be re-framed before it goes on.
        let mut scan = Scan::default();
        scan.scan(&alone.encode_to_vec()).unwrap();
        assert!(scan.deprecated_scopes);
        scan.scan(&beside.encode_to_vec()).unwrap();
        assert!(!scan.deprecated_scopes);
        let scanned = scan.scan_request(&beside.encode_to_vec()).unwrap();
        assert_eq!((scanned.valid, scanned.rejected), (1, 1));
        assert!(
            scanned.message.starts_with(
                "1 span(s) rejected: span instrumentation_library_spans is not read beside scope_spans"
            ),
            "{}",
            scanned.message
        );
        assert_eq!(scan.rejected_malformed, 1);
        // Field 1000 of another wire type is refused, as fields 1 to 3 are (a Collector
        // would refuse a batch carrying it on).
        let varint_1000 = [0x0a, 0x03, 0xc0, 0x3e, 0x01];
        assert!(scan.scan(&varint_1000).is_err());
    }

    // The OTLP path to a span's status, with the code as a bare varint (uint64), so a test
    // can write values an enum field's type would not let it.
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawStatus {
        #[prost(uint64, tag = "3")]
        code: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawSpan {
        #[prost(bytes = "vec", tag = "1")]
        trace_id: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        span_id: Vec<u8>,
        #[prost(message, optional, tag = "15")]
        status: Option<RawStatus>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawScopeSpans {
        #[prost(message, repeated, tag = "2")]
        spans: Vec<RawSpan>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawResourceSpans {
        #[prost(message, repeated, tag = "2")]
        scope_spans: Vec<RawScopeSpans>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawRequest {
        #[prost(message, repeated, tag = "1")]
        resource_spans: Vec<RawResourceSpans>,
    }

    /// Scenario: status codes written as varints past 32 bits, and negative.
    /// Guarantees: the code is what protobuf decoders read for an int32 enum (its low 32
    /// bits): 2^32 + 2 is ERROR, as the Collector would see it (finding: it read as an
    /// unknown code and an error policy missed it); -1 and 300 are unknown codes.
    #[test]
    fn a_status_code_is_read_as_an_int32_enum() {
        for (written, read) in [(2u64, 2u8), ((1 << 32) + 2, 2), (u64::MAX, 255), (300, 255)] {
            let req = RawRequest {
                resource_spans: vec![RawResourceSpans {
                    scope_spans: vec![RawScopeSpans {
                        spans: vec![RawSpan {
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
                            status: Some(RawStatus { code: written }),
                        }],
                    }],
                }],
            };
            let body = prost::Message::encode_to_vec(&req);
            let mut scan = Scan::default();
            scan.scan_request(&body).unwrap();
            assert_eq!(scan.spans.len(), 1);
            assert_eq!(scan.spans[0].status_code, read, "{written}");
        }
    }
}
