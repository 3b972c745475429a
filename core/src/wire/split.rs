//! Splitting a scanned request by the ring owner of each span's trace: one re-framed part
//! per owner, each owner's spans in their original order so the original grouping under
//! resources and scopes is kept. The router's hot path, and the subject of the split bench.

use bytes::{Bytes, BytesMut};

use super::reframe::parts_of;
use super::{Reframer, Scan};
use crate::ring::Ring;

/// Builds one part per owner: `(owner index in the ring, span count, body)`, each owner's spans in
/// their original order so the re-framer keeps the original grouping.
pub fn split(ring: &Ring, body: &[u8], scan: &Scan) -> Vec<(usize, u64, Bytes)> {
    let mut owned: Vec<(u32, u32)> = scan
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (ring.owner_index(&s.trace_id).unwrap_or(0) as u32, i as u32))
        .collect();
    owned.sort_unstable();
    let mut reframer = Reframer::default();
    let mut parts = Vec::with_capacity(owned.len());
    let mut out = BytesMut::with_capacity(body.len() + 64 * ring.members().len());
    let mut result = Vec::new();
    for run in owned.chunk_by(|a, b| a.0 == b.0) {
        parts.clear();
        parts.extend(run.iter().map(|&(_, i)| parts_of(body, scan, i as usize)));
        reframer.encode(&parts, &mut out);
        result.push((run[0].0 as usize, run.len() as u64, out.split().freeze()));
    }
    result
}
