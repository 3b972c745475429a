#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Hostile input against one gateway, bounded in count and time (issue 14, "Proved"): a
//! request of 40,000 one-span resources, spans that are not UTF-8 or not well-formed
//! inside, malformed bodies, and well-behaved traffic in between. Its own test binary, so
//! that the resident memory it reads is this gateway's alone.
//!
//! Guarantees: every answer has the right status; the gateway stays live; the process's
//! resident memory grows by far less than the 1.8 GiB the wide request once took; and the
//! accounting identity holds span for span: received = rejected + exported (keep-all plan,
//! nothing refused or failed), with the backend holding exactly the exported spans.

mod common;

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use prost::Message;
use tailgate_core::test_util::{kv, FakeOtlp};

const KEEP_ALL: &str = "decision_wait: 300ms\npolicies:\n  - {name: all, type: always_sample}\n";

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// One request of `n` resources of one span each, each resource with its own attribute.
fn wide(n: usize, seed: u64) -> ExportTraceServiceRequest {
    let base = FakeOtlp::traces(n).spans(1).seed(seed).build();
    let spans: Vec<_> = base
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| s.spans.clone())
        .collect();
    let resource_spans = spans
        .into_iter()
        .enumerate()
        .map(|(i, span)| ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![kv("pod", &format!("pod-{i}"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

/// `req` encoded, with the bytes of `marker` (which must occur once) overwritten by `raw`.
fn encoded_with(req: &ExportTraceServiceRequest, marker: &str, raw: &[u8]) -> Bytes {
    let mut body = req.encode_to_vec();
    let at = body
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    body[at..at + raw.len()].copy_from_slice(raw);
    Bytes::from(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_keeps_status_liveness_memory_and_accounts() {
    let gw = common::spawn_gateway_configured(
        [127, 0, 0, 51],
        common::plan(KEEP_ALL),
        |c| {
            c.buffer.max_buffered_bytes = 256 << 20;
            c.receive.max_request_bytes = 8 << 20;
        },
        |_, _| {},
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel).max_encoding_message_size(16 << 20);
    let path = http::uri::PathAndQuery::from_static(tailgate_core::wire::TRACE_EXPORT_PATH);
    let before = rss();
    let (mut sent, mut rejected_seen) = (0u64, 0u64);

    for round in 0..3u64 {
        // A request of 40,000 one-span resources (about 2.5 MB).
        let req = wide(40_000, 100 + round);
        sent += 40_000;
        raw.ready().await.unwrap();
        raw.unary(
            tonic::Request::new(Bytes::from(req.encode_to_vec())),
            path.clone(),
            tailgate_core::wire::RawCodec,
        )
        .await
        .unwrap();

        // A span whose name is not UTF-8, among 9 good ones: partial success, 1 rejected.
        let mut req = FakeOtlp::traces(10).spans(1).seed(200 + round).build();
        req.resource_spans[0].scope_spans[0].spans[0].name = "NAMENAME".into();
        let body = encoded_with(&req, "NAMENAME", b"NA\xffMENAM");
        sent += 10;
        raw.ready().await.unwrap();
        let answer = raw
            .unary(
                tonic::Request::new(body),
                path.clone(),
                tailgate_core::wire::RawCodec,
            )
            .await
            .unwrap()
            .into_inner();
        let answer =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                answer,
            )
            .unwrap();
        let partial = answer.partial_success.unwrap();
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("UTF-8"),
            "{}",
            partial.error_message
        );
        rejected_seen += 1;

        // A malformed body: refused whole, nothing counted as received.
        raw.ready().await.unwrap();
        let err = raw
            .unary(
                tonic::Request::new(Bytes::from_static(&[0x0a, 0x05, 0x12, 0x03])),
                path.clone(),
                tailgate_core::wire::RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }
    gw.settle(Duration::from_secs(30)).await;
    let grown = rss().saturating_sub(before);

    let s = &gw.stats;
    let (received, rejected, exported) = (
        s.received_spans.get(),
        s.rejected_spans(),
        s.exported_spans.get(),
    );
    assert_eq!(received, sent);
    assert_eq!(rejected, rejected_seen);
    // Each a name that is not UTF-8: malformed, not a bad trace id.
    assert_eq!(s.rejected_malformed_spans.get(), rejected_seen);
    assert_eq!(s.rejected_invalid_id_spans.get(), 0);
    assert_eq!(s.in_flight_spans(), 0);
    assert_eq!(
        received,
        rejected + exported,
        "refused {}, failed {}",
        s.refused_spans.get(),
        s.export_failed_spans.get()
    );
    assert_eq!(gw.backend.spans(), exported);
    assert_eq!(s.malformed_requests.get(), 3);
    // 120,000 spans were buffered and exported; the backend keeps its copies (~8 MB). The
    // wide requests once took 1.8 GiB and kept 1.66 GiB.
    assert!(
        grown < 300 << 20,
        "resident memory grew by {} MiB",
        grown >> 20
    );
    gw.stop().await;
}
