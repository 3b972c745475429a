//! Builds encoded `ExportTraceServiceRequest`s from spans that are already encoded.
//!
//! Input: an ordered list of [`SpanParts`], each the raw bytes of a span with the raw header
//! bytes of its resource and scope (as [`crate::wire::scan`] yields them, or as the gateway
//! keeps them). Output: one request body. Consecutive spans with equal resource and scope
//! headers share one `ResourceSpans`/`ScopeSpans`, so a subset of a request, written in its
//! original order, comes out with the original grouping. Each span byte is copied once.

use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::{BufMut, BytesMut};

use super::scan::Scan;

/// One span to write, with the headers it is written under.
#[derive(Debug, Clone, Copy)]
pub struct SpanParts<'a> {
    /// Every field of the `ResourceSpans` except `scope_spans`, tags included.
    pub resource: &'a [u8],
    /// Every field of the `ScopeSpans` except `spans`, tags included.
    pub scope: &'a [u8],
    /// The span message's own bytes (without tag and length).
    pub span: &'a [u8],
}

/// Reusable scratch space for [`Reframer::encode`], so that steady-state encoding does not
/// allocate.
#[derive(Debug, Default)]
pub struct Reframer {
    /// Encoded lengths of each `ScopeSpans` and `ResourceSpans` run, in write order.
    lens: Vec<usize>,
    /// Headers are compared by address only (their spans went through an [`Interner`]).
    by_address: bool,
}

const TAG_RESOURCE_SPANS: u8 = 0x0a; // field 1, length-delimited
const TAG_SCOPE_SPANS: u8 = 0x12; // field 2, length-delimited
const TAG_SPAN: u8 = 0x12; // field 2, length-delimited

// === impl Reframer ===

impl Reframer {
    /// A reframer for spans whose headers went through one [`Interner`]: it compares
    /// headers by address, never byte by byte.
    pub fn by_address() -> Self {
        Reframer {
            lens: Vec::new(),
            by_address: true,
        }
    }

    fn same(&self, a: &[u8], b: &[u8]) -> bool {
        if self.by_address {
            same_address(a, b)
        } else {
            same(a, b)
        }
    }

    /// Gives back room for more than `runs` scope and resource runs.
    pub fn trim(&mut self, runs: usize) {
        self.lens.clear();
        self.lens.shrink_to(runs);
    }

    /// Appends to `out` one encoded request holding `spans` in order, and returns its length.
    pub fn encode(&mut self, spans: &[SpanParts<'_>], out: &mut BytesMut) -> usize {
        let total = self.measure(spans);
        self.write_measured(spans, total, out);
        total
    }

    /// The length of the request [`Reframer::encode`] would write for `spans`, without
    /// copying a byte (one pass over the spans); [`Reframer::write_measured`] then writes it.
    pub fn measure(&mut self, spans: &[SpanParts<'_>]) -> usize {
        self.lens.clear();
        // The length of every run, so that each can be prefixed by its length.
        let mut total = 0;
        let mut i = 0;
        while i < spans.len() {
            let resource_slot = self.lens.len();
            self.lens.push(0);
            let mut resource_len = spans[i].resource.len();
            let mut j = i;
            while j < spans.len() && self.same(spans[j].resource, spans[i].resource) {
                let scope_slot = self.lens.len();
                self.lens.push(0);
                let mut scope_len = spans[j].scope.len();
                let mut k = j;
                while k < spans.len()
                    && self.same(spans[k].resource, spans[i].resource)
                    && self.same(spans[k].scope, spans[j].scope)
                {
                    scope_len += field_len(spans[k].span.len());
                    k += 1;
                }
                self.lens[scope_slot] = scope_len;
                resource_len += field_len(scope_len);
                j = k;
            }
            self.lens[resource_slot] = resource_len;
            total += field_len(resource_len);
            i = j;
        }
        total
    }

    /// Appends the request of `spans` that [`Reframer::measure`] just measured (`total`
    /// bytes) to `out`.
    pub fn write_measured(&self, spans: &[SpanParts<'_>], total: usize, out: &mut BytesMut) {
        // In the same order as `measure` computed the lengths.
        let before = out.len();
        out.reserve(total);
        let mut lens = self.lens.iter().copied();
        let mut i = 0;
        while i < spans.len() {
            out.put_u8(TAG_RESOURCE_SPANS);
            put_varint(out, lens.next().unwrap_or_default() as u64);
            out.put_slice(spans[i].resource);
            let mut j = i;
            while j < spans.len() && self.same(spans[j].resource, spans[i].resource) {
                out.put_u8(TAG_SCOPE_SPANS);
                put_varint(out, lens.next().unwrap_or_default() as u64);
                out.put_slice(spans[j].scope);
                let mut k = j;
                while k < spans.len()
                    && self.same(spans[k].resource, spans[i].resource)
                    && self.same(spans[k].scope, spans[j].scope)
                {
                    out.put_u8(TAG_SPAN);
                    put_varint(out, spans[k].span.len() as u64);
                    out.put_slice(spans[k].span);
                    k += 1;
                }
                j = k;
            }
            i = j;
        }
        debug_assert_eq!(
            out.len() - before,
            total,
            "not the spans `measure` measured"
        );
    }
}

/// The parts of span `index` of a scan of `body`.
pub fn parts_of<'a>(body: &'a [u8], scan: &'a Scan, index: usize) -> SpanParts<'a> {
    let span = &scan.spans[index];
    let scope = span.scope;
    let resource = scan.scopes[scope as usize].resource;
    SpanParts {
        resource: scan.resource_header(resource),
        scope: scan.scope_header(scope),
        span: &body[span.range.start as usize..span.range.end as usize],
    }
}

/// At most how many bytes `next` adds to a request that [`Reframer::encode`] writes, when it
/// follows `prev` there: the span's field, and a new `ResourceSpans` and `ScopeSpans` with
/// their headers when its resource or scope differs from `prev`'s (lengths counted at their
/// largest, so the sum bounds the request's size). Headers are equal when they are the
/// same bytes in memory (one pointer comparison) or have equal content.
pub fn added_len(prev: Option<&SpanParts<'_>>, next: &SpanParts<'_>) -> usize {
    added_len_with(prev, next, same)
}

/// [`added_len`] for spans whose headers went through one [`Interner`] (as a
/// [`Reframer::by_address`] writes them): headers are compared by address.
pub fn added_len_by_address(prev: Option<&SpanParts<'_>>, next: &SpanParts<'_>) -> usize {
    added_len_with(prev, next, same_address)
}

fn added_len_with(
    prev: Option<&SpanParts<'_>>,
    next: &SpanParts<'_>,
    same: fn(&[u8], &[u8]) -> bool,
) -> usize {
    const RUN: usize = 1 + 5; // tag and the longest length prefix of a run
    let mut n = field_len(next.span.len());
    let new_resource = prev.is_none_or(|p| !same(p.resource, next.resource));
    if new_resource {
        n += RUN + next.resource.len();
    }
    if new_resource || prev.is_some_and(|p| !same(p.scope, next.scope)) {
        n += RUN + next.scope.len();
    }
    n
}

fn same(a: &[u8], b: &[u8]) -> bool {
    same_address(a, b) || a == b
}

fn same_address(a: &[u8], b: &[u8]) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// Makes resource and scope headers of equal content one slice, so that spans gathered from
/// many requests can be grouped by comparing header addresses ([`Reframer::by_address`],
/// [`added_len_by_address`]). Spans of one resource often reach a gateway in several
/// requests (a router's parts of one request, one SDK's successive requests); their headers
/// are equal copies, and comparing those byte by byte at every change between interleaved
/// requests cost a full header each time: a 6 MB resource header over a router's parts
/// made a gateway's export spend all its time in `memcmp`. Here each header address is
/// looked up once per change and each distinct address hashed once (std's SipHash with a
/// random key, so that crafted headers cannot make lookups collide).
///
/// Holds the headers it has seen: one interner per batch of spans that are alive together.
#[derive(Debug, Default)]
pub struct Interner<'a> {
    by_address: HashMap<Address, &'a [u8], BuildHasherDefault<AddressHasher>>,
    by_content: HashMap<&'a [u8], &'a [u8]>,
    /// The last resource and scope header looked up, by address, with its interned slice:
    /// consecutive spans of one request skip the maps.
    last: [Option<(Address, &'a [u8])>; 2],
}

/// Puts spans of one resource and scope next to each other, keeping their order otherwise
/// (a stable sort by header address), when some resource and scope pair is split over
/// several runs: the spans of a trace that crossed services alternate between resources,
/// and each change would repeat a header in the request. `parts` must have gone through
/// one [`Interner`] (equal headers, equal addresses). Returns the order applied, as the
/// original index of each span now at that position; `None` when nothing moved (the
/// usual case: one pass, no allocation).
pub fn group_by_headers(parts: &mut Vec<SpanParts<'_>>) -> Option<Vec<u32>> {
    let key = |p: &SpanParts<'_>| {
        (
            (p.resource.as_ptr() as usize, p.resource.len()),
            (p.scope.as_ptr() as usize, p.scope.len()),
        )
    };
    let mut starts: HashMap<(Address, Address), (), BuildHasherDefault<AddressHasher>> =
        HashMap::default();
    let mut split = false;
    for (i, p) in parts.iter().enumerate() {
        let new_run = i == 0 || {
            let prev = &parts[i - 1];
            !same_address(prev.resource, p.resource) || !same_address(prev.scope, p.scope)
        };
        if new_run && starts.insert(key(p), ()).is_some() {
            split = true;
            break;
        }
    }
    if !split {
        return None;
    }
    let mut order: Vec<u32> = (0..parts.len() as u32).collect();
    order.sort_by_key(|&i| key(&parts[i as usize]));
    let sorted = order.iter().map(|&i| parts[i as usize]).collect();
    *parts = sorted;
    Some(order)
}

/// Where a header starts and how long it is.
type Address = (usize, usize);

/// Hashes an [`Address`] with two multiplications: addresses are the allocator's, not a
/// sender's, so a keyed hash would only cost time (the content map keeps std's).
#[derive(Debug, Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn write_u64(&mut self, v: u64) {
        // Fibonacci hashing; the rotation brings the high bits, which the multiplication
        // mixes best, to where hashbrown takes its bucket index from.
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(26);
    }
}

impl<'a> Interner<'a> {
    /// `p` with its headers replaced by the first equal ones this interner has seen.
    pub fn parts(&mut self, p: SpanParts<'a>) -> SpanParts<'a> {
        SpanParts {
            resource: self.header(0, p.resource),
            scope: self.header(1, p.scope),
            span: p.span,
        }
    }

    fn header(&mut self, kind: usize, h: &'a [u8]) -> &'a [u8] {
        let key = (h.as_ptr() as usize, h.len());
        if let Some((k, interned)) = self.last[kind] {
            if k == key {
                return interned;
            }
        }
        let interned = match self.by_address.entry(key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => *e.insert(*self.by_content.entry(h).or_insert(h)),
        };
        self.last[kind] = Some((key, interned));
        interned
    }
}

/// Bytes taken by a length-delimited field with a one-byte tag and `len` bytes of payload.
pub fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Bytes taken by `v` as a varint.
pub fn varint_len(v: u64) -> usize {
    // One byte per started group of 7 bits; 0 takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_len_bounds_the_encoded_request() {
        let (r1, r2, s1, s2) = (vec![1u8; 300], vec![2u8; 40], vec![3u8; 20], vec![4u8; 200]);
        let spans: Vec<Vec<u8>> = (0..12).map(|i| vec![9u8; 50 + i * 30]).collect();
        let parts: Vec<SpanParts<'_>> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| SpanParts {
                resource: if i < 5 { &r1 } else { &r2 },
                scope: if i % 3 == 0 { &s1 } else { &s2 },
                span,
            })
            .collect();
        let mut prev = None;
        let mut bound = 0;
        for p in &parts {
            bound += added_len(prev.as_ref(), p);
            prev = Some(*p);
        }
        let mut out = BytesMut::new();
        let written = Reframer::default().encode(&parts, &mut out);
        assert!(written <= bound, "{written} > {bound}");
        // Tight: only the length prefixes are counted at their largest.
        assert!(
            bound - written <= 4 * 2 * parts.len(),
            "{written} vs {bound}"
        );
    }

    /// Spans of two requests with equal (copied) headers, interleaved, plus a third resource
    /// of the same length but other bytes: interned, they are grouped by address as
    /// content comparison groups them, and the by-address bound holds.
    #[test]
    fn interned_headers_group_as_equal_content_does() {
        let (r1, r1_copy, r3) = (vec![7u8; 64], vec![7u8; 64], vec![8u8; 64]);
        let (s1, s1_copy) = (vec![1u8; 9], vec![1u8; 9]);
        let span = vec![5u8; 30];
        let parts: Vec<SpanParts<'_>> = (0..30)
            .map(|i| match i % 3 {
                0 => SpanParts {
                    resource: &r1,
                    scope: &s1,
                    span: &span,
                },
                1 => SpanParts {
                    resource: &r1_copy,
                    scope: &s1_copy,
                    span: &span,
                },
                _ if i < 15 => SpanParts {
                    resource: &r1_copy,
                    scope: &s1,
                    span: &span,
                },
                _ => SpanParts {
                    resource: &r3,
                    scope: &s1,
                    span: &span,
                },
            })
            .collect();
        let mut interner = Interner::default();
        let interned: Vec<_> = parts.iter().map(|p| interner.parts(*p)).collect();
        assert!(std::ptr::eq(interned[1].resource, interned[0].resource));
        assert!(std::ptr::eq(interned[1].scope, interned[0].scope));
        assert!(!std::ptr::eq(interned[29].resource, interned[0].resource));
        let (mut by_content, mut by_address) = (BytesMut::new(), BytesMut::new());
        Reframer::default().encode(&parts, &mut by_content);
        let n = Reframer::by_address().encode(&interned, &mut by_address);
        assert_eq!(by_address, by_content);
        // Without interning, by address, every span would open its own runs.
        let mut unmerged = BytesMut::new();
        Reframer::by_address().encode(&parts, &mut unmerged);
        assert!(unmerged.len() > by_content.len() + 10 * 64);
        let mut prev = None;
        let mut bound = 0;
        for p in &interned {
            bound += added_len_by_address(prev.as_ref(), p);
            prev = Some(*p);
        }
        assert!(
            n <= bound && bound - n <= 8 * interned.len(),
            "{n} vs {bound}"
        );
    }

    /// Spans of three traces, each across two resources, interleaved: grouped, they form
    /// two resource runs, in their old order within each; already grouped spans stay put.
    #[test]
    fn spans_split_over_runs_are_grouped_stably() {
        let (a, b, scope) = (vec![1u8; 40], vec![2u8; 40], vec![3u8; 5]);
        let spans: Vec<Vec<u8>> = (0..6u8).map(|i| vec![i; 10]).collect();
        let mut interner = Interner::default();
        let mut parts: Vec<SpanParts<'_>> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| {
                let resource = if i % 2 == 0 { &a } else { &b };
                interner.parts(SpanParts {
                    resource,
                    scope: &scope,
                    span,
                })
            })
            .collect();
        let before = parts.clone();
        let order = group_by_headers(&mut parts).expect("a and b alternate");
        assert_eq!(order.len(), 6);
        for (at, &from) in order.iter().enumerate() {
            assert!(std::ptr::eq(parts[at].span, before[from as usize].span));
        }
        let runs = 1 + parts
            .windows(2)
            .filter(|w| !std::ptr::eq(w[0].resource, w[1].resource))
            .count();
        assert_eq!(runs, 2);
        // Stable: within a resource, the old order.
        let a_spans: Vec<u8> = parts
            .iter()
            .filter(|p| p.resource[0] == 1)
            .map(|p| p.span[0])
            .collect();
        assert_eq!(a_spans, vec![0, 2, 4]);
        let mut grouped = parts.clone();
        assert!(group_by_headers(&mut grouped).is_none());
        assert!(group_by_headers(&mut Vec::new()).is_none());
    }

    #[test]
    fn varint_len_matches_encoding() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = BytesMut::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "value {v}");
        }
    }

    #[test]
    fn empty_input_encodes_an_empty_request() {
        let mut out = BytesMut::new();
        assert_eq!(Reframer::default().encode(&[], &mut out), 0);
        assert!(out.is_empty());
    }
}
