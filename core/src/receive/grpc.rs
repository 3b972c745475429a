//! OTLP/gRPC receiver: `TraceService/Export` served by tonic with the raw-bytes codec, so the
//! request body reaches the [`SpanSink`] as it came off the wire (after gzip, if the client
//! used it). Other methods answer `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prost::Message;
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::server::{Grpc, NamedService, UnaryService};

use super::{Accepted, Origin, SpanSink, DECISIONS_PATH, PEER_HEADER};
use crate::wire::{RawCodec, TRACE_EXPORT_PATH, TRACE_SERVICE};

/// HTTP/2 flow-control windows; the 64 KiB default costs about half again as much CPU per
/// span on large requests (see DESIGN.md, "What the hot path costs").
pub const STREAM_WINDOW: u32 = 2 << 20;
/// Largest HTTP/2 frame a peer may send us (the default is 16 KiB). Senders that honour it
/// (hyper and h2, as Tailgate's own client) then write a request part in one DATA frame and
/// one `writev`, instead of a frame and a system call per 16 KiB.
pub const MAX_FRAME_SIZE: u32 = 1 << 20;
/// Connection-level HTTP/2 window.
pub const CONNECTION_WINDOW: u32 = 8 << 20;

/// The tonic service in front of a [`SpanSink`].
pub struct TraceService<S> {
    sink: Arc<S>,
    max_request_bytes: usize,
}

impl<S> Clone for TraceService<S> {
    fn clone(&self) -> Self {
        TraceService {
            sink: self.sink.clone(),
            max_request_bytes: self.max_request_bytes,
        }
    }
}

// === impl TraceService ===

impl<S: SpanSink> TraceService<S> {
    /// A service handing requests of at most `max_request_bytes` (decompressed) to `sink`.
    pub fn new(sink: Arc<S>, max_request_bytes: usize) -> Self {
        TraceService {
            sink,
            max_request_bytes,
        }
    }
}

impl<S> NamedService for TraceService<S> {
    const NAME: &'static str = TRACE_SERVICE;
}

impl<S: SpanSink> tower_service::Service<http::Request<tonic::body::Body>> for TraceService<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let max = self.max_request_bytes;
        let grpc = move || {
            Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max)
        };
        match req.uri().path() {
            TRACE_EXPORT_PATH => {
                let export = Export(self.sink.clone());
                Box::pin(async move { Ok(grpc().unary(export, req).await) })
            }
            DECISIONS_PATH => {
                let decisions = Decisions(self.sink.clone());
                Box::pin(async move { Ok(grpc().unary(decisions, req).await) })
            }
            _ => Box::pin(async {
                Ok(tonic::Status::unimplemented("only TraceService/Export is served").into_http())
            }),
        }
    }
}

struct Export<S>(Arc<S>);

impl<S: SpanSink> UnaryService<Bytes> for Export<S> {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let sink = self.0.clone();
        let origin = Origin::parse(request.metadata().get(PEER_HEADER).map(|v| v.as_bytes()));
        Box::pin(async move {
            match sink.export_from(request.into_inner(), origin).await {
                Ok(accepted) => Ok(tonic::Response::new(encode_response(&accepted))),
                Err(refusal) => {
                    sink.refused(&refusal);
                    Err(refusal.to_grpc())
                }
            }
        })
    }
}

struct Decisions<S>(Arc<S>);

impl<S: SpanSink> UnaryService<Bytes> for Decisions<S> {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<tonic::Response<Bytes>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let sink = self.0.clone();
        Box::pin(async move {
            match sink.decisions(request.into_inner()).await {
                Ok(_) => Ok(tonic::Response::new(Bytes::new())),
                Err(refusal) => Err(refusal.to_grpc()),
            }
        })
    }
}

/// Encodes an `ExportTraceServiceResponse`, with `partial_success` only when spans were
/// rejected.
pub fn encode_response(accepted: &Accepted) -> Bytes {
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    let response = ExportTraceServiceResponse {
        partial_success: (accepted.rejected_spans > 0 || !accepted.message.is_empty()).then(|| {
            ExportTracePartialSuccess {
                rejected_spans: accepted.rejected_spans as i64,
                error_message: accepted.message.clone(),
            }
        }),
    };
    Bytes::from(response.encode_to_vec())
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes, then lets open streams finish.
pub async fn serve<S: SpanSink>(
    listener: TcpListener,
    sink: Arc<S>,
    limits: super::Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let service = TraceService::new(sink, limits.max_request_bytes);
    serve_service(listener, limits, shutdown, service).await
}

/// Serves any tonic service (ours, or a generated one) on `listener` with the receivers'
/// connection loop and limits.
pub async fn serve_service<T>(
    listener: TcpListener,
    limits: super::Limits,
    shutdown: impl Future<Output = ()> + Send,
    service: T,
) -> std::io::Result<()>
where
    T: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send + 'static,
{
    super::serve_connections_with(
        listener,
        limits,
        shutdown,
        move |req: http::Request<hyper::body::Incoming>| {
            let mut service = service.clone();
            async move {
                let req = req.map(tonic::body::Body::new);
                match tower_service::Service::call(&mut service, req).await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        },
    )
    .await
}
