#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Splitting one OTLP request by trace id for three owners: the wire path (scan + ring +
//! re-frame) against the decode path (prost decode, group by owner, prost encode), in one
//! run so the ratio is what matters. Inputs: 512-span requests with 10 attributes per span
//! (about 430 bytes per span), as DESIGN.md's reference figures use.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tailgate_core::ring::{Member, Ring};
use tailgate_core::test_util::FakeOtlp;
use tailgate_core::wire::split::Splitter;
use tailgate_core::wire::Scan;

fn ring() -> Ring {
    Ring::new((2..5).map(|i| Member::new(format!("127.0.0.{i}:4317"))))
}

/// As the router does it: scan and splitter scratch reused from request to request.
fn wire_split(body: &[u8], ring: &Ring, scan: &mut Scan, splitter: &mut Splitter) -> usize {
    scan.scan(body).expect("valid request");
    splitter
        .split(ring, body, scan, None)
        .iter()
        .map(|(_, _, b)| b.len())
        .sum()
}

fn decode_split(body: &[u8], ring: &Ring) -> usize {
    let req = ExportTraceServiceRequest::decode(body).expect("valid request");
    let mut per_owner: Vec<ExportTraceServiceRequest> =
        vec![ExportTraceServiceRequest::default(); ring.members().len()];
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for span in ss.spans {
                let mut id = [0u8; 16];
                id.copy_from_slice(&span.trace_id);
                let o = ring.owner_index(&id).unwrap_or(0);
                let dest = &mut per_owner[o];
                if dest
                    .resource_spans
                    .last()
                    .map(|r| r.resource != rs.resource)
                    .unwrap_or(true)
                {
                    dest.resource_spans.push(ResourceSpans {
                        resource: rs.resource.clone(),
                        scope_spans: Vec::new(),
                        schema_url: rs.schema_url.clone(),
                    });
                }
                let r = dest.resource_spans.last_mut().expect("pushed above");
                if r.scope_spans
                    .last()
                    .map(|s| s.scope != ss.scope)
                    .unwrap_or(true)
                {
                    r.scope_spans.push(ScopeSpans {
                        scope: ss.scope.clone(),
                        spans: Vec::new(),
                        schema_url: ss.schema_url.clone(),
                    });
                }
                r.scope_spans
                    .last_mut()
                    .expect("pushed above")
                    .spans
                    .push(span);
            }
        }
    }
    per_owner.iter().map(|r| r.encode_to_vec().len()).sum()
}

fn bench(c: &mut Criterion) {
    let ring = ring();
    let mut group = c.benchmark_group("split_3_owners");
    for (traces, spans) in [(64usize, 8usize), (8, 64)] {
        let req = FakeOtlp::traces(traces)
            .spans(spans)
            .resources(3)
            .attrs(10)
            .build();
        let body = req.encode_to_vec();
        let n = traces * spans;
        group.throughput(Throughput::Elements(n as u64));
        let label = format!("{n}_spans_{}B_per_span", body.len() / n);
        let mut scan = Scan::default();
        let mut splitter = Splitter::default();
        group.bench_with_input(
            BenchmarkId::new("wire_scan_reframe", &label),
            &body,
            |b, body| b.iter(|| wire_split(body, &ring, &mut scan, &mut splitter)),
        );
        // The router's call since cutting parts (2026-12-03): with its default 512 KiB cap
        // (these requests are under it: the cost is the check), and with a 64 KiB cap that
        // cuts each owner's part in two or more.
        for (name, cap) in [
            ("wire_capped_512KiB", 512usize << 10),
            ("wire_cut_64KiB", 64 << 10),
        ] {
            group.bench_with_input(BenchmarkId::new(name, &label), &body, |b, body| {
                b.iter(|| {
                    scan.scan(body).expect("valid request");
                    splitter
                        .split_capped(&ring, body, &scan, None, cap)
                        .iter()
                        .map(|(_, _, b)| b.len())
                        .sum::<usize>()
                })
            });
        }
        group.bench_with_input(BenchmarkId::new("scan_only", &label), &body, |b, body| {
            b.iter(|| {
                scan.scan(body).expect("valid request");
                scan.spans.len()
            })
        });
        group.bench_with_input(
            BenchmarkId::new("scan_and_ring", &label),
            &body,
            |b, body| {
                b.iter(|| {
                    scan.scan(body).expect("valid request");
                    let owners = scan.spans.iter().map(|s| ring.owner_index(&s.trace_id));
                    owners.map(|o| o.unwrap_or(0)).sum::<usize>()
                })
            },
        );
        // What the router adds per request to admit it at what its parts may come to.
        scan.scan(&body).expect("valid request");
        group.bench_with_input(BenchmarkId::new("split_bound", &label), &body, |b, body| {
            b.iter(|| scan.split_bound(body.len(), 3))
        });
        group.bench_with_input(
            BenchmarkId::new("prost_decode_encode", &label),
            &body,
            |b, body| b.iter(|| decode_split(body, &ring)),
        );
    }
    group.finish();
}

/// One owner lookup: what a gateway with peers adds to each due trace it decides (it
/// leaves one another gateway owns for a hand-off), set against `decide_10_policies` in
/// gateway/benches/decide.rs. Rings of 3 and 30 gateways; 1,024 distinct ids per batch.
fn bench_owner(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring_owner_index");
    let ids: Vec<[u8; 16]> = (0..1024u128)
        .map(|i| (i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_le_bytes())
        .collect();
    group.throughput(Throughput::Elements(ids.len() as u64));
    for n in [3u8, 30] {
        let ring = Ring::new((0..n).map(|i| Member::new(format!("10.0.0.{i}:4317"))));
        group.bench_with_input(BenchmarkId::from_parameter(n), &ring, |b, ring| {
            b.iter(|| {
                ids.iter()
                    .map(|id| ring.owner_index(std::hint::black_box(id)).unwrap_or(0))
                    .sum::<usize>()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_owner);
criterion_main!(benches);
