//! Splitting a scanned request by the ring owner of each span's trace: one re-framed part
//! per owner, each owner's spans in their original order so the original grouping under
//! resources and scopes is kept. The router's hot path, and the subject of the split bench.

use bytes::{Bytes, BytesMut};

use super::reframe::{added_len, field_len, parts_of, SpanParts};
use super::{Reframer, Scan};
use crate::ring::Ring;

/// The most a gateway charges a buffered span beyond its bytes: its handle, its share of
/// the allocator's slack and a trace of its own (the gateway's admission charge per span,
/// which a gateway test holds equal to this). Cutting a request for a gateway weighs spans
/// by it: a part whose spans are tiny still costs the gateway that much each.
pub const GATEWAY_SPAN_CHARGE: usize = 264;

/// Reusable scratch space for [`Splitter::split`], so that splitting allocates only the
/// output (one buffer shared by the parts, and the list of parts).
#[derive(Debug, Default)]
pub struct Splitter {
    /// Owner index of each span, in scan order.
    owners: Vec<u32>,
    /// Span indexes grouped by owner (a counting sort of `owners`, stable).
    order: Vec<u32>,
    /// Per owner: its spans, where its group starts in `order`, and where its next span goes.
    counts: Vec<u32>,
    starts: Vec<u32>,
    fill: Vec<u32>,
    reframer: Reframer,
}

impl Splitter {
    /// Gives back what a request of more than `spans` spans left allocated (see
    /// [`crate::wire::scan::Scan::trim`]).
    pub fn trim(&mut self, spans: usize) {
        for v in [&mut self.owners, &mut self.order] {
            v.clear();
            v.shrink_to(spans);
        }
        self.reframer.trim(spans);
    }

    /// Builds one part per owner: `(owner index in the ring, span count, body)`, each
    /// owner's spans in their original order so the re-framer keeps the original grouping.
    ///
    /// When every span goes to one owner and `whole` is given (the request's own bytes,
    /// with no span left out by the scan), the part is `whole` itself: no copy at all,
    /// unless the scan read spans under OTLP's deprecated field ([`Scan::deprecated_scopes`]),
    /// which only a re-framed part carries where every receiver reads them.
    pub fn split(
        &mut self,
        ring: &Ring,
        body: &[u8],
        scan: &Scan,
        whole: Option<&Bytes>,
    ) -> Vec<(usize, u64, Bytes)> {
        self.split_capped(ring, body, scan, whole, usize::MAX)
    }

    /// [`Splitter::split`], with no part over `max_part` bytes where that costs little: an
    /// owner's spans that would come to more are written as several parts, each its spans
    /// in their original order. A request of many small traces larger than a gateway takes
    /// in one go (the router's `forward.max_request_bytes`) thus reaches it as requests it
    /// can admit one by one, not one it must refuse whole.
    ///
    /// A part is cut only where the resource and scope headers that the next part must
    /// repeat weigh no more than the spans of the part being closed (their bytes and what
    /// a gateway charges each, see [`cut_bound`]), however the request's headers and spans
    /// are shaped. A span larger than `max_part`, or spans under a header larger than it,
    /// make a part larger than it.
    pub fn split_capped(
        &mut self,
        ring: &Ring,
        body: &[u8],
        scan: &Scan,
        whole: Option<&Bytes>,
        max_part: usize,
    ) -> Vec<(usize, u64, Bytes)> {
        self.split_cut(ring, body, scan, whole, max_part, false)
    }

    /// [`Splitter::split_capped`] cutting wherever a part would grow past `max_part`,
    /// whatever the headers the next part repeats weigh: for a request a gateway refused
    /// as too large, whose spans it takes only in parts this small. Only a span larger
    /// than `max_part` with its headers makes a part larger than it.
    pub fn split_cut_to(
        &mut self,
        ring: &Ring,
        body: &[u8],
        scan: &Scan,
        max_part: usize,
    ) -> Vec<(usize, u64, Bytes)> {
        self.split_cut(ring, body, scan, None, max_part, true)
    }

    fn split_cut(
        &mut self,
        ring: &Ring,
        body: &[u8],
        scan: &Scan,
        whole: Option<&Bytes>,
        max_part: usize,
        force: bool,
    ) -> Vec<(usize, u64, Bytes)> {
        // An owner's part holds each of its headers once per run, as the request does, and
        // a subset of its spans: it is no larger than the request.
        let capped = body.len() > max_part;
        // A body whose spans came under OTLP's deprecated field goes on re-framed (under
        // `scope_spans`), never as it came: a receiver that does not read the old field
        // would take it as empty.
        let whole = whole.filter(|w| w.len() <= max_part && !scan.deprecated_scopes);
        let members = ring.members().len().max(1);
        self.owners.clear();
        // Spans of one trace are usually adjacent: look the owner up once per run.
        let mut last: Option<(&[u8; 16], u32)> = None;
        for s in &scan.spans {
            let owner = match last {
                Some((id, owner)) if *id == s.trace_id => owner,
                _ => ring.owner_index(&s.trace_id).unwrap_or(0) as u32,
            };
            last = Some((&s.trace_id, owner));
            self.owners.push(owner);
        }
        if self.owners.is_empty() {
            return Vec::new();
        }
        let first = self.owners[0];
        if let Some(whole) = whole.filter(|_| self.owners.iter().all(|&o| o == first)) {
            return vec![(first as usize, self.owners.len() as u64, whole.clone())];
        }

        // Counting sort by owner, stable, so each owner's spans keep their order: `starts`
        // holds where each owner's group begins in `order`, `fill` where its next span goes.
        self.counts.clear();
        self.counts.resize(members, 0);
        for &o in &self.owners {
            self.counts[o as usize] += 1;
        }
        self.starts.clear();
        let mut next = 0u32;
        for &c in &self.counts {
            self.starts.push(next);
            next += c;
        }
        self.fill.clone_from(&self.starts);
        self.order.clear();
        self.order.resize(self.owners.len(), 0);
        for (i, &o) in self.owners.iter().enumerate() {
            self.order[self.fill[o as usize] as usize] = i as u32;
            self.fill[o as usize] += 1;
        }

        let mut out = BytesMut::with_capacity(body.len() + 64 * members);
        let mut parts = Vec::with_capacity(self.owners.len());
        let mut result = Vec::with_capacity(members);
        for (owner, (&start, &count)) in self.starts.iter().zip(&self.counts).enumerate() {
            if count == 0 {
                continue;
            }
            let group = &self.order[start as usize..(start + count) as usize];
            parts.clear();
            parts.extend(group.iter().map(|&i| parts_of(body, scan, i as usize)));
            if !capped {
                self.reframer.encode(&parts, &mut out);
                result.push((owner, u64::from(count), out.split().freeze()));
                continue;
            }
            let mut rest = &parts[..];
            while !rest.is_empty() {
                let n = part_len(rest, max_part, force);
                self.reframer.encode(&rest[..n], &mut out);
                result.push((owner, n as u64, out.split().freeze()));
                rest = &rest[n..];
            }
        }
        result
    }
}

/// At most how many bytes [`Splitter::split_capped`] adds by cutting parts at `max_part`
/// to `written`, what [`Scan::split_bound`] allows for the request's split over `owners`
/// (the caller has it already): each cut
/// repeats at most one resource and one scope header, with their tags and lengths; cuts are
/// at most two per `max_part` bytes written (two neighbouring parts of one owner come to
/// more than `max_part` together) plus one per owner; and what they repeat is never more
/// than the weight of the spans before them (their bytes and [`GATEWAY_SPAN_CHARGE`] each).
pub fn cut_bound(
    scan: &Scan,
    body_len: usize,
    written: usize,
    owners: usize,
    max_part: usize,
) -> usize {
    if body_len <= max_part {
        return 0;
    }
    let len = |r: &std::ops::Range<u32>| (r.end - r.start) as usize;
    let resource = scan.resources.iter().map(|r| len(&r.header)).max();
    let scope = scan.scopes.iter().map(|s| len(&s.header)).max();
    let (resource, scope) = (resource.unwrap_or(0), scope.unwrap_or(0));
    let cuts = (2 * written / max_part.max(1)).saturating_add(owners);
    let weight = body_len.saturating_add(scan.spans.len().saturating_mul(GATEWAY_SPAN_CHARGE));
    cuts.saturating_mul(resource + scope + 12).min(weight)
}

/// How many of `spans` (at least one) go into the next part of at most `max_part` bytes:
/// cut where the part would grow past it, unless the headers the next part must repeat
/// (those of the span it starts with, unless that span starts a new resource or scope
/// anyway) weigh more than the spans already in this one, each weighed as a gateway
/// charges it ([`GATEWAY_SPAN_CHARGE`] more than its bytes). So a part under a header
/// larger than `max_part` holds about as much span weight as the header: a gateway's
/// worst-case charge for it is about twice the header, not the header's whole share of
/// spans, and the repeated headers add at most what the spans weigh. With `force`, the cut
/// is made whatever the repeated headers weigh.
fn part_len(spans: &[SpanParts<'_>], max_part: usize, force: bool) -> usize {
    let weight = |s: &SpanParts<'_>| field_len(s.span.len()) + GATEWAY_SPAN_CHARGE;
    let mut size = added_len(None, &spans[0]);
    let mut span_weight = weight(&spans[0]);
    for (i, pair) in spans.windows(2).enumerate() {
        let next = &pair[1];
        let add = added_len(Some(&pair[0]), next);
        if size.saturating_add(add) > max_part {
            // What starting a part at `next` writes that following `prev` would not: its
            // resource and scope headers, less any `next` starts anew anyway.
            let repeated = added_len(None, next) - add;
            if force || repeated <= span_weight {
                return i + 1;
            }
        }
        size = size.saturating_add(add);
        span_weight = span_weight.saturating_add(weight(next));
    }
    spans.len()
}

/// [`Splitter::split`] with fresh scratch space, always re-framing.
pub fn split(ring: &Ring, body: &[u8], scan: &Scan) -> Vec<(usize, u64, Bytes)> {
    Splitter::default().split(ring, body, scan, None)
}
