#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
#![allow(missing_docs)] // criterion's macros generate undocumented items
//! Writing one export request from spans a gateway gathered out of many requests, as its
//! exporter does once per batch: headers compared by content (before 2026-12-03) against
//! headers interned once and compared by address. Input: 4096 spans (8 per trace, about
//! 430 bytes each) from 64 requests whose resource headers are equal copies, traces of
//! the requests interleaved as shards hand them over; headers of about 150 bytes (usual)
//! and of 64 KiB (a resource attribute of that size). Then traces across three services
//! (resources): interned only, against interned and grouped by header
//! (`group_by_headers`), which writes each resource once instead of once per trace.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use tailgate_core::test_util::FakeOtlp;
use tailgate_core::wire::reframe::{
    added_len, added_len_by_address, group_by_headers, parts_of, Interner, SpanParts,
};
use tailgate_core::wire::{Reframer, Scan};

const REQUESTS: usize = 64;
const TRACES_PER_REQUEST: usize = 8;
const SPANS_PER_TRACE: usize = 8;

fn bench(c: &mut Criterion) {
    let mut out = BytesMut::with_capacity(64 << 20);
    let mut group = c.benchmark_group("export_reframe");
    for pad in [0usize, 64 << 10] {
        // One request's content, copied REQUESTS times (each copy its own allocation).
        let mut req = FakeOtlp::traces(TRACES_PER_REQUEST)
            .spans(SPANS_PER_TRACE)
            .resources(1)
            .attrs(10)
            .build();
        if pad > 0 {
            let resource = req.resource_spans[0]
                .resource
                .get_or_insert_with(Default::default);
            resource.attributes.push(KeyValue {
                key: "padding".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue("p".repeat(pad))),
                }),
                ..Default::default()
            });
        }
        let body = req.encode_to_vec();
        let (bodies, scans) = copies(&body);
        // Trace t of every request, then trace t + 1: spans of a trace stay together.
        let mut parts = Vec::new();
        for t in 0..TRACES_PER_REQUEST {
            for (b, s) in bodies.iter().zip(&scans) {
                for i in t * SPANS_PER_TRACE..(t + 1) * SPANS_PER_TRACE {
                    parts.push(parts_of(b, s, i));
                }
            }
        }
        group.throughput(Throughput::Elements(parts.len() as u64));
        let label = format!("header_{}B", parts[0].resource.len());
        let mut content = Reframer::default();
        group.bench_with_input(
            BenchmarkId::new("by_content", &label),
            &parts,
            |b, parts| {
                b.iter(|| {
                    // As the exporter did: sizes first, then the parts collected to encode.
                    let mut bound = 0;
                    let mut prev = None;
                    for p in parts {
                        bound += added_len(prev, p);
                        prev = Some(p);
                    }
                    let parts: Vec<_> = parts.to_vec();
                    out.clear();
                    bound + content.encode(&parts, &mut out)
                })
            },
        );
        let mut address = Reframer::by_address();
        group.bench_with_input(BenchmarkId::new("interned", &label), &parts, |b, parts| {
            b.iter(|| {
                let mut interner = Interner::default();
                let parts: Vec<_> = parts.iter().map(|p| interner.parts(*p)).collect();
                let mut bound = 0;
                let mut prev = None;
                for p in &parts {
                    bound += added_len_by_address(prev, p);
                    prev = Some(p);
                }
                out.clear();
                bound + address.encode(&parts, &mut out)
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("export_across_services");
    let body = FakeOtlp::traces(TRACES_PER_REQUEST)
        .spans(SPANS_PER_TRACE)
        .resources(3)
        .attrs(10)
        .build()
        .encode_to_vec();
    let (bodies, scans) = copies(&body);
    // As a shard keeps them: trace by trace, each trace's spans in request order (so
    // under its services in turn).
    let mut parts = Vec::new();
    for (b, s) in bodies.iter().zip(&scans) {
        let mut by_trace: Vec<usize> = (0..s.spans.len()).collect();
        by_trace.sort_by_key(|&i| s.spans[i].trace_id);
        parts.extend(by_trace.into_iter().map(|i| parts_of(b, s, i)));
    }
    group.throughput(Throughput::Elements(parts.len() as u64));
    let mut address = Reframer::by_address();
    for grouped in [false, true] {
        let name = if grouped {
            "interned_grouped"
        } else {
            "interned"
        };
        let mut size = 0;
        group.bench_with_input(BenchmarkId::new(name, "3_services"), &parts, |b, parts| {
            b.iter(|| {
                let mut interner = Interner::default();
                let mut parts: Vec<SpanParts<'_>> =
                    parts.iter().map(|p| interner.parts(*p)).collect();
                if grouped {
                    group_by_headers(&mut parts);
                }
                out.clear();
                size = address.encode(&parts, &mut out);
                size
            })
        });
        // The request's size is what grouping saves; criterion reports time only.
        #[allow(clippy::print_stdout)] // a bench's own report line
        {
            println!("{name}: request of {size} bytes for {} spans", parts.len());
        }
    }
    group.finish();
}

/// `REQUESTS` copies of `body`, each its own allocation (as requests reach a gateway), and
/// their scans.
fn copies(body: &[u8]) -> (Vec<Vec<u8>>, Vec<Scan>) {
    let bodies: Vec<Vec<u8>> = (0..REQUESTS).map(|_| body.to_vec()).collect();
    let scans = bodies
        .iter()
        .map(|b| {
            let mut s = Scan::default();
            s.scan(b).unwrap();
            s
        })
        .collect();
    (bodies, scans)
}

criterion_group!(benches, bench);
criterion_main!(benches);
