//! Exporting kept traces to the backend. Shards send [`ExportBatch`]es over a bounded
//! channel; the exporter task gathers them into requests bounded by spans, bytes and time,
//! re-frames their bytes into one `ExportTraceServiceRequest` and sends it with the
//! retrying OTLP/gRPC client. While it retries, its queue fills and the shards wait, which
//! in turn makes the receivers refuse new data: backpressure instead of loss. Spans that
//! cannot be delivered within the retry bound are counted as failed.

pub mod otlp_grpc;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tailgate_core::forward::GrpcClient;
use tailgate_core::wire::Reframer;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::buffer::BufferedSpan;
use crate::metrics::GatewayStats;

pub use otlp_grpc::OtlpGrpcConfig;

/// Spans of kept traces, on their way to the exporter.
#[derive(Debug)]
pub struct ExportBatch {
    /// The spans.
    pub spans: Vec<BufferedSpan>,
}

/// The exporter task's state.
pub struct Exporter {
    rx: mpsc::Receiver<ExportBatch>,
    client: GrpcClient,
    max_spans: usize,
    max_bytes: usize,
    batch_timeout: Duration,
    stats: Arc<GatewayStats>,
}

// === impl Exporter ===

impl Exporter {
    /// An exporter reading `rx` and sending with `client`.
    pub fn new(
        rx: mpsc::Receiver<ExportBatch>,
        client: GrpcClient,
        config: &OtlpGrpcConfig,
        stats: Arc<GatewayStats>,
    ) -> Self {
        Exporter {
            rx,
            client,
            max_spans: config.max_batch_spans.max(1),
            max_bytes: config.max_batch_bytes.max(1),
            batch_timeout: config.batch_timeout,
            stats,
        }
    }

    /// Runs until every sender is gone and everything queued is sent.
    pub async fn run(mut self) {
        let mut batch: Vec<BufferedSpan> = Vec::new();
        let mut reframer = Reframer::default();
        let mut open = true;
        while open {
            let Some(first) = self.rx.recv().await else {
                break;
            };
            let mut bytes: usize = first.spans.iter().map(BufferedSpan::encoded_len).sum();
            batch.extend(first.spans);
            let deadline = Instant::now() + self.batch_timeout;
            while batch.len() < self.max_spans && bytes < self.max_bytes {
                tokio::select! {
                    item = self.rx.recv() => match item {
                        Some(b) => {
                            bytes += b.spans.iter().map(BufferedSpan::encoded_len).sum::<usize>();
                            batch.extend(b.spans);
                        }
                        None => { open = false; break; }
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            self.flush(&mut batch, &mut reframer).await;
        }
        self.flush(&mut batch, &mut reframer).await;
    }

    async fn flush(&self, batch: &mut Vec<BufferedSpan>, reframer: &mut Reframer) {
        if batch.is_empty() {
            return;
        }
        // Requests stay under the size limit even when one trace filled the batch.
        let mut start = 0;
        while start < batch.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < batch.len()
                && (end == start || (end - start < self.max_spans && bytes < self.max_bytes))
            {
                bytes += batch[end].encoded_len();
                end += 1;
            }
            let chunk = &batch[start..end];
            let parts: Vec<_> = chunk.iter().map(BufferedSpan::parts).collect();
            let mut out = BytesMut::new();
            reframer.encode(&parts, &mut out);
            let n = chunk.len() as u64;
            match self.client.send(out.freeze()).await {
                Ok(d) => {
                    let rejected = d.rejected_spans.min(n);
                    self.stats.exported_spans.add(n - rejected);
                    if rejected > 0 {
                        tracing::warn!(rejected, message = %d.message, "Backend rejected part of an export.");
                        self.stats.export_failed_spans.add(rejected);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, spans = n, "Export failed; spans counted as failed.");
                    self.stats.export_failed_spans.add(n);
                }
            }
            self.stats.pending_export_spans.sub(n);
            self.stats.pending_export_bytes.sub(bytes as u64);
            start = end;
        }
        batch.clear();
    }
}
