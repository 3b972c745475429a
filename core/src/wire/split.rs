//! Splitting a scanned request by the ring owner of each span's trace: one re-framed part
//! per owner, each owner's spans in their original order so the original grouping under
//! resources and scopes is kept. The router's hot path, and the subject of the split bench.

use bytes::{Bytes, BytesMut};

use super::reframe::parts_of;
use super::{Reframer, Scan};
use crate::ring::Ring;

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
    /// with no span left out by the scan), the part is `whole` itself: no copy at all.
    pub fn split(
        &mut self,
        ring: &Ring,
        body: &[u8],
        scan: &Scan,
        whole: Option<&Bytes>,
    ) -> Vec<(usize, u64, Bytes)> {
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
            self.reframer.encode(&parts, &mut out);
            result.push((owner, u64::from(count), out.split().freeze()));
        }
        result
    }
}

/// [`Splitter::split`] with fresh scratch space, always re-framing.
pub fn split(ring: &Ring, body: &[u8], scan: &Scan) -> Vec<(usize, u64, Bytes)> {
    Splitter::default().split(ring, body, scan, None)
}
