//! Pre-encoded requests replayed with fresh trace ids: the saturation mode of `bench
//! gateway`. Generating and encoding a request costs about what the gateway spends on it, so
//! a generator that encodes as it sends measures itself; this one encodes a pool once, and
//! each send copies a request and rewrites the second half of every trace id in place with
//! the round number (a few bytes per span), so the gateway still sees distinct traces
//! throughout, each whole.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use prost::Message;
use tailgate_core::wire::Scan;

use crate::drive::build_request;
use crate::generate::{GenConfig, Generator};

/// Requests in a pool: a trace cut between two of them stays whole within a round.
const POOL: usize = 32;

/// One pre-encoded request and where its trace ids are.
#[derive(Debug)]
struct Template {
    body: Bytes,
    /// Offsets of each span's 16 trace id bytes in `body`.
    trace_ids: Vec<u32>,
}

/// A pool of pre-encoded requests of the load test's traces.
#[derive(Debug)]
pub struct ReplayPool {
    templates: Vec<Template>,
    next: AtomicU64,
}

impl ReplayPool {
    /// Encodes `POOL` requests of `spans_per_request` spans from traces of about
    /// `spans_per_trace` spans (50% to 150% of it, as the generator draws them).
    pub fn new(spans_per_request: usize, spans_per_trace: u32, seed: u64) -> Self {
        let mut gen = Generator::new(GenConfig {
            spans_per_trace,
            seed,
            ..GenConfig::default()
        });
        let mut scan = Scan::default();
        let mut pending = Vec::new();
        let templates = (0..POOL)
            .map(|_| {
                while pending.len() < spans_per_request {
                    let t = gen.next_trace(1_700_000_000_000_000_000);
                    pending.extend(t.chunks.into_iter().flatten());
                }
                let rest = pending.split_off(spans_per_request.min(pending.len()));
                let spans = std::mem::replace(&mut pending, rest);
                let body = Bytes::from(build_request(spans).encode_to_vec());
                let trace_ids = trace_id_offsets(&mut scan, &body);
                Template { body, trace_ids }
            })
            .collect();
        ReplayPool {
            templates,
            next: AtomicU64::new(0),
        }
    }

    /// The next request: the pool's next one, its trace ids made those of this round.
    pub fn next_request(&self) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let t = &self.templates[(n % POOL as u64) as usize];
        let round = (n / POOL as u64).to_le_bytes();
        let mut body = BytesMut::from(&t.body[..]);
        for &at in &t.trace_ids {
            let half = &mut body[at as usize + 8..at as usize + 16];
            for (b, r) in half.iter_mut().zip(round) {
                *b ^= r;
            }
        }
        body.freeze()
    }
}

/// Where each span's trace id lies in `body` (the generator's spans are valid: every span
/// has one, encoded as its own bytes inside the span's range).
fn trace_id_offsets(scan: &mut Scan, body: &Bytes) -> Vec<u32> {
    if scan.scan(body).is_err() {
        return Vec::new();
    }
    scan.spans
        .iter()
        .filter_map(|s| {
            let range = &body[s.range.start as usize..s.range.end as usize];
            range
                .windows(16)
                .position(|w| w == s.trace_id)
                .map(|p| s.range.start + p as u32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Each round's requests hold the same traces under new ids: no id repeats across
    /// rounds, and every trace keeps its spans.
    #[test]
    fn rounds_give_fresh_whole_traces() {
        let pool = ReplayPool::new(64, 4, 9);
        let mut scan = Scan::default();
        let mut per_trace: HashMap<[u8; 16], usize> = HashMap::new();
        let mut per_round = Vec::new();
        for round in 0..3 {
            let mut ids = HashMap::new();
            for _ in 0..POOL {
                let body = pool.next_request();
                scan.scan(&body).unwrap();
                assert_eq!(scan.spans.len(), 64);
                for s in &scan.spans {
                    *per_trace.entry(s.trace_id).or_default() += 1;
                    *ids.entry(s.trace_id).or_insert(0usize) += 1;
                }
            }
            assert!(
                ids.len() > POOL * 64 / 8,
                "round {round}: {} traces",
                ids.len()
            );
            per_round.push(ids);
        }
        // Disjoint ids, the same span counts per trace in every round.
        let total: usize = per_round.iter().map(HashMap::len).sum();
        assert_eq!(per_trace.len(), total);
        let mut sizes: Vec<Vec<usize>> = per_round
            .iter()
            .map(|r| {
                let mut v: Vec<usize> = r.values().copied().collect();
                v.sort_unstable();
                v
            })
            .collect();
        let first = sizes.remove(0);
        assert!(sizes.iter().all(|s| *s == first));
    }
}
