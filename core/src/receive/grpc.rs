//! OTLP/gRPC receiver: `TraceService/Export` (and the gateways' `Peer/Decisions`) served as
//! unary gRPC directly over hyper's HTTP/2 requests, so the request message reaches the
//! [`SpanSink`] as it came off the wire (decompressed, if the client compressed it: see `compress`), without
//! tonic's decode buffer. Other methods answer `UNIMPLEMENTED`; a content type other than
//! `application/grpc*` gets HTTP 415 on any path, as the gRPC spec asks (an OTLP/HTTP
//! exporter pointed at this port must not read a 200 as success).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;

use super::auth::{check_sender, PeerAuth, PeerTraffic, ReceiveAuth};
use super::compress::{decompress, Encoding, GRPC_ENCODINGS as ACCEPT_ENCODING};
use super::limits::{serve_connections_with, InFlight, InFlightBytes, Limits};
use super::sink::{encode_response, run_detached, Origin, SpanSink, DECISIONS_PATH, PEER_HEADER};
use super::status::Refusal;
use crate::wire::{TRACE_EXPORT_PATH, TRACE_SERVICE};

pub use crate::serve::{CONNECTION_WINDOW, MAX_FRAME_SIZE, STREAM_WINDOW};

/// The tower service in front of a [`SpanSink`]: it serves the unary methods itself over
/// the HTTP/2 request, so that a message that arrives in one DATA frame reaches the sink
/// without a copy, and one in many frames is gathered once into a buffer of its exact size.
pub struct TraceService<S> {
    sink: Arc<S>,
    max_request_bytes: usize,
    /// `max_request_bytes` as every answer states it (`MAX_REQUEST_BYTES_METADATA`).
    limit_header: http::HeaderValue,
    request_timeout: Duration,
    in_flight: InFlight,
    peer_auth: PeerAuth,
    auth: Option<ReceiveAuth>,
    peer_traffic: PeerTraffic,
    http_port: Option<u16>,
}

impl<S> Clone for TraceService<S> {
    fn clone(&self) -> Self {
        TraceService {
            sink: self.sink.clone(),
            max_request_bytes: self.max_request_bytes,
            limit_header: self.limit_header.clone(),
            request_timeout: self.request_timeout,
            in_flight: self.in_flight.clone(),
            peer_auth: self.peer_auth.clone(),
            auth: self.auth.clone(),
            peer_traffic: self.peer_traffic,
            http_port: self.http_port,
        }
    }
}

/// Most a message buffer is sized ahead of its data: a length prefix is the sender's word,
/// so larger messages grow as their bytes arrive rather than on the prefix's say-so.
const MAX_PREALLOCATION: usize = 1 << 20;

// === impl TraceService ===

impl<S: SpanSink> TraceService<S> {
    /// A service handing requests to `sink` within `limits`: at most `max_request_bytes`
    /// (decompressed), arriving in full within `request_timeout`, their bytes taken from the
    /// shared in-flight budget while they are received and handed on.
    pub fn new(sink: Arc<S>, limits: &Limits) -> Self {
        TraceService {
            sink,
            max_request_bytes: limits.max_request_bytes,
            limit_header: limits.max_request_bytes.into(),
            request_timeout: limits.request_timeout,
            in_flight: limits.in_flight.clone(),
            peer_auth: limits.peer_auth.clone(),
            auth: limits.auth.clone(),
            peer_traffic: limits.peer_traffic,
            http_port: limits.http_port,
        }
    }

    /// Reads the one message of a unary call: checks the content type and encoding, reads
    /// the body within the time limit, and decompresses within the size limit.
    async fn read_message<B>(
        &self,
        req: http::Request<B>,
        encoding: Option<Encoding>,
        held: &mut InFlightBytes,
        read_by: tokio::time::Instant,
    ) -> Result<(Origin, Bytes), Refusal>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::error::Error + 'static,
    {
        let origin = Origin::parse(req.headers().get(PEER_HEADER).map(|v| v.as_bytes()));
        let max = self.max_request_bytes;
        let body = req.into_body();
        let read = read_one_message(body, max, &self.in_flight, held);
        let (compressed, message) = match tokio::time::timeout_at(read_by, read).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(Refusal::Timeout(format!(
                    "request not received within {:?}",
                    self.request_timeout
                )))
            }
        };
        let message = match (compressed, encoding) {
            (false, _) => message,
            (true, Some(encoding)) => decompress(encoding, &message, max)?,
            (true, None) => {
                return Err(Refusal::Invalid(
                    "message flagged compressed without a grpc-encoding (none, or identity)".into(),
                ))
            }
        };
        if compressed {
            self.in_flight.take(held, message.len())?;
        }
        Ok((origin, message))
    }

    /// HTTP 415 for a request that is not gRPC, as the gRPC spec asks, saying where
    /// OTLP/HTTP goes (counted as refused, `invalid`).
    fn not_grpc(&self) -> http::Response<Body> {
        let to = other_receiver("an", "HTTP", self.http_port, "receive.http");
        let refusal = Refusal::Invalid(format!(
            "not a gRPC request (Content-Type is not application/grpc): this is the OTLP/gRPC \
             receiver; send OTLP/HTTP {to}"
        ));
        self.sink.refused(&refusal);
        let mut response = http::Response::new(Body::new(http_body_util::Full::new(Bytes::from(
            refusal.to_string(),
        ))));
        *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }

    /// The answer to a gRPC request over HTTP/1.x: 505, with the status in the headers too.
    fn not_http2(&self) -> http::Response<Body> {
        let refusal = Refusal::Invalid(
            "gRPC needs HTTP/2: this request came over HTTP/1.x, where its status cannot be \
             answered; use a gRPC client, or send OTLP/HTTP to the HTTP receiver"
                .into(),
        );
        self.sink.refused(&refusal);
        let mut response = tonic::Status::unimplemented(refusal.to_string()).into_http();
        *response.status_mut() = http::StatusCode::HTTP_VERSION_NOT_SUPPORTED;
        response
    }

    /// What a call is answered from its headers alone, in the order the checks run: not
    /// gRPC, a codec other than protobuf, a sender the receivers' checks refuse, an
    /// encoding not taken, a `grpc-timeout` that does not read. Else the encoding to read
    /// its body with and the sender's deadline (from now, its arrival).
    fn check_headers<B>(&self, req: &http::Request<B>) -> Result<Read, Box<http::Response<Body>>> {
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes());
        if !is_grpc(req) {
            return Err(Box::new(self.not_grpc()));
        }
        // `application/grpc+json` (or any codec but protobuf) would be read as protobuf and
        // refused as malformed, or worse, taken: refuse it by name.
        if let Some(subtype) = content_type.and_then(unsupported_subtype) {
            let refusal = Refusal::Invalid(format!(
                "unsupported gRPC content-subtype {subtype:?}; send application/grpc or \
                 application/grpc+proto"
            ));
            self.sink.refused(&refusal);
            return Err(Box::new(
                tonic::Status::unimplemented(refusal.to_string()).into_http(),
            ));
        }
        let who = check_sender(
            self.peer_traffic,
            &self.peer_auth,
            self.auth.as_ref(),
            req,
            req.uri().path(),
        );
        if let Err(refusal) = who {
            self.sink.refused(&refusal);
            return Err(Box::new(refusal.to_grpc().into_http()));
        }
        let encoding = match encoding_of(req) {
            Ok(encoding) => encoding,
            Err(unsupported) => {
                // UNIMPLEMENTED with the encodings we take, as the gRPC spec asks.
                let refusal =
                    Refusal::Invalid(format!("unsupported grpc-encoding {unsupported:?}"));
                self.sink.refused(&refusal);
                let mut response =
                    tonic::Status::unimplemented(format!("{refusal}; use {ACCEPT_ENCODING}"))
                        .into_http::<Body>();
                response.headers_mut().insert(
                    "grpc-accept-encoding",
                    http::HeaderValue::from_static(ACCEPT_ENCODING),
                );
                return Err(Box::new(response));
            }
        };
        // The sender's deadline, from its arrival: handling that ends past it is counted.
        let deadline = match sender_deadline(req) {
            Ok(deadline) => deadline,
            Err(message) => {
                let refusal = Refusal::Invalid(message);
                self.sink.refused(&refusal);
                return Err(Box::new(
                    tonic::Status::internal(refusal.to_string()).into_http(),
                ));
            }
        };
        Ok(Read { encoding, deadline })
    }

    /// Answers one unary call [`Self::check_headers`] left to be read: the sink's answer
    /// as a gRPC response, or its refusal (and the receiver's own: malformed framing, too
    /// large, too slow) as a gRPC status, counted by the sink.
    async fn unary<B, F, Fut>(
        self,
        mut req: http::Request<B>,
        Read { encoding, deadline }: Read,
        handle: F,
    ) -> http::Response<Body>
    where
        B: http_body::Body<Data = Bytes> + Unpin,
        B::Error: std::error::Error + Unpin + 'static,
        F: FnOnce(Arc<S>, Origin, Bytes) -> Fut,
        Fut: Future<Output = Result<Bytes, Refusal>> + Send + 'static,
    {
        let cuts_too_large = req
            .headers()
            .contains_key(super::sink::CUTS_TOO_LARGE_HEADER);
        // The open request's own cost first, held until it is answered (see
        // `InFlight::take_request`): a stream that sends headers and then nothing holds it.
        let sender = crate::serve::SenderAddr::of(&req);
        let mut held = match super::limits::Admission::take(&self.in_flight, &mut req) {
            Ok(held) => held,
            Err(refusal) => {
                self.sink.refused(&refusal);
                return refusal.to_grpc().into_http();
            }
        };
        // Room is asked for once the body starts (see `primed`), then held before reading
        // the rest: the unread body holds the sender back.
        let req = match super::primed::body_started(req, self.request_timeout, &held).await {
            Ok(req) => req,
            Err(refusal) => {
                self.sink.refused(&refusal);
                return refusal.to_grpc().into_http();
            }
        };
        let pass = match self.sink.ready_from(req.body().first_len(), sender).await {
            Ok(pass) => pass,
            Err(refusal) => {
                self.sink.refused(&refusal);
                return refusal.to_grpc().into_http();
            }
        };
        // The rest of the body has `request_timeout` from when room was given.
        let read_by = super::primed::deadline_in(self.request_timeout);
        let answer = match self.read_message(req, encoding, &mut held, read_by).await {
            // The sink runs to its end on its own task, even if the client goes away, and
            // the request's share of the in-flight budget (and its pass) goes with it: the
            // budget counts the body for as long as anything holds it.
            Ok((origin, message)) => {
                let work = handle(self.sink.clone(), origin, message);
                let sink = self.sink.clone();
                run_detached(async move {
                    let _held = (held, pass);
                    let answer = work.await;
                    // Counted here, on the detached task: a sender that gave up has
                    // dropped the handler that awaits it.
                    if answer.is_ok() && deadline.is_some_and(|d| tokio::time::Instant::now() > d) {
                        sink.answered_late();
                    }
                    answer
                })
                .await
            }
            Err(refusal) => Err(refusal),
        };
        match answer {
            Ok(message) => message_response(message, &self.limit_header),
            Err(refusal) => {
                if cuts_too_large && matches!(refusal, Refusal::TooLarge { .. }) {
                    self.sink.refused_cut(&refusal);
                } else {
                    self.sink.refused(&refusal);
                }
                refusal.to_grpc().into_http()
            }
        }
    }
}

/// How a call's body is read, from its headers ([`TraceService::check_headers`]).
struct Read {
    /// Its `grpc-encoding` (`None`: identity).
    encoding: Option<Encoding>,
    /// The sender's deadline, from its arrival.
    deadline: Option<tokio::time::Instant>,
}

/// The request's `grpc-encoding`: `None` for identity, `Err` with the value when it is not
/// one we take.
fn encoding_of<B>(req: &http::Request<B>) -> Result<Option<Encoding>, String> {
    match req.headers().get("grpc-encoding").map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(value)) => Encoding::from_grpc_encoding(value).map_err(|e| e.0),
        Some(Err(_)) => Err("(not text)".to_owned()),
    }
}

/// Reads a body holding exactly one gRPC message: `(compressed flag, message)`, in an
/// allocation of its own.
async fn read_one_message<B>(
    mut body: B,
    max: usize,
    in_flight: &InFlight,
    held: &mut InFlightBytes,
) -> Result<(bool, Bytes), Refusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    use http_body_util::BodyExt;
    let mut prefix = BytesMut::new();
    let mut message: Option<(bool, usize, Vec<u8>)> = None;
    let mut whole: Option<(bool, Bytes)> = None;
    let mut begun = false;
    while let Some(frame) = held.unless_reclaimed(body.frame(), begun).await? {
        begun = true;
        let frame = frame.map_err(|e| super::status::body_error(&e))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers: nothing a unary request needs
        };
        in_flight.take(held, data.len())?;
        if whole.is_some() && !data.is_empty() {
            return Err(Refusal::Invalid(MORE_THAN_ONE.into()));
        }
        if message.is_none() {
            let need = 5 - prefix.len();
            if prefix.is_empty() && data.len() >= 5 {
                let (flag, len) = parse_prefix(&data[..5], max)?;
                if data.len() == 5 + len {
                    // The common case for clients that honour our frame size: one copy, out
                    // of the connection's buffer (see `own`).
                    whole = Some((flag, super::limits::own(data.slice(5..))));
                    continue;
                }
                let _prefix = data.split_to(5);
                message = Some((flag, len, Vec::with_capacity(len.min(MAX_PREALLOCATION))));
            } else {
                let take = need.min(data.len());
                prefix.extend_from_slice(&data.split_to(take));
                if prefix.len() < 5 {
                    continue;
                }
                let (flag, len) = parse_prefix(&prefix, max)?;
                message = Some((flag, len, Vec::with_capacity(len.min(MAX_PREALLOCATION))));
            }
        }
        if let Some((_, len, buf)) = &mut message {
            if buf.len() + data.len() > *len {
                return Err(Refusal::Invalid(MORE_THAN_ONE.into()));
            }
            append_capped(buf, &data, *len);
        }
    }
    match (whole, message) {
        (Some(whole), _) => Ok(whole),
        (None, Some((flag, len, buf))) if buf.len() == len => Ok((flag, Bytes::from(buf))),
        (None, Some((_, len, buf))) => Err(Refusal::Invalid(format!(
            "request ended after {} of the {len} message bytes its prefix announced",
            buf.len()
        ))),
        (None, None) => Err(Refusal::Invalid("the request carries no message".into())),
    }
}

/// Appends `data` to a message of `len` bytes (`buf.len() + data.len() <= len`), growing
/// by doubling as a vector does but never past `len`: a finished message is allocated at
/// exactly its size. A buffer doubling freely could hold up to twice the message, uncounted
/// by any limit for as long as one of its spans is buffered.
fn append_capped(buf: &mut Vec<u8>, data: &[u8], len: usize) {
    let need = buf.len() + data.len();
    if need > buf.capacity() {
        // `need <= len`: the caller refuses data past the announced length first.
        let target = (buf.capacity() * 2).max(need).min(len);
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(data);
}

/// Why a unary call with data after its one message is refused.
const MORE_THAN_ONE: &str = "a unary call carries one message; more data followed it";

/// The compressed flag and length of a message prefix, checked against `max`.
fn parse_prefix(prefix: &[u8], max: usize) -> Result<(bool, usize), Refusal> {
    let flag = match prefix[0] {
        0 => false,
        1 => true,
        other => {
            return Err(Refusal::Invalid(format!(
                "invalid gRPC message flag {other}"
            )))
        }
    };
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > max {
        return Err(Refusal::too_large(
            format!("message of {len} bytes is over the limit of {max}"),
            max,
        ));
    }
    Ok((flag, len))
}

/// A successful unary answer: headers (with the largest request this receiver takes,
/// `limit`, which a router cuts its requests to before one is refused), the message in
/// one frame, `grpc-status: 0`.
fn message_response(message: Bytes, limit: &http::HeaderValue) -> http::Response<Body> {
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.extend_from_slice(&message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    let frames = [
        Ok::<_, Infallible>(http_body::Frame::data(framed.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ];
    let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
        .headers_mut()
        .insert(super::status::MAX_REQUEST_BYTES_METADATA, limit.clone());
    response
}

impl<S> NamedService for TraceService<S> {
    const NAME: &'static str = TRACE_SERVICE;
}

impl<S: SpanSink> tower_service::Service<http::Request<Body>> for TraceService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // Called as the connection hands the request over: whatever its headers decide is
        // answered now, in a future of a few bytes, and the request (and the frames its
        // headers may point into) let go, instead of the handling's future waiting for a
        // worker (a hostile check: 2,048 connections of calls without the token held
        // 1.7 GB against a 1,008 MiB bound that way).
        let answered = |resp| -> Self::Future { Box::pin(std::future::ready(Ok(resp))) };
        if req.version() < http::Version::HTTP_2 && is_grpc(&req) {
            // gRPC over HTTP/1.1 has nowhere to put its status (trailers), so a sender
            // could not tell a success: refused before the body is read, as grpc-go
            // refuses anything but HTTP/2.
            return answered(self.not_http2());
        }
        let path = req.uri().path();
        if !matches!(path, TRACE_EXPORT_PATH | DECISIONS_PATH) {
            // An OTLP/HTTP exporter pointed at this port must not read success in the
            // answer (a 200 carrying a gRPC status looks like one to it).
            if !is_grpc(&req) {
                return answered(self.not_grpc());
            }
            let refusal = Refusal::Invalid(format!(
                "{path} is not served here; only TraceService/Export is"
            ));
            self.sink.refused(&refusal);
            return answered(tonic::Status::unimplemented(refusal.to_string()).into_http());
        }
        let read = match self.check_headers(&req) {
            Ok(read) => read,
            Err(resp) => return answered(*resp),
        };
        // Refused as its connection handed it over (the in-flight budget is spent; the
        // hand-over charges, and so refuses, only senders the checks above take).
        if let Some(refusal) = super::limits::Admission::refused(&mut req) {
            self.sink.refused(&refusal);
            return answered(refusal.to_grpc().into_http());
        }
        let this = self.clone();
        if req.uri().path() == TRACE_EXPORT_PATH {
            Box::pin(async move {
                Ok(this
                    .unary(req, read, |sink, origin, message| async move {
                        sink.export_from(message, origin)
                            .await
                            .map(|accepted| encode_response(&accepted))
                    })
                    .await)
            })
        } else {
            Box::pin(async move {
                Ok(this
                    .unary(req, read, |sink, _origin, message| async move {
                        sink.decisions(message).await.map(|_| Bytes::new())
                    })
                    .await)
            })
        }
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes, then lets open streams finish.
pub async fn serve<S: SpanSink>(
    listener: TcpListener,
    sink: Arc<S>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let service = TraceService::new(sink, &limits);
    serve_service(listener, limits, shutdown, service).await
}

/// Serves any tonic service (ours, or a generated one) on `listener` with the receivers'
/// connection loop and limits.
pub async fn serve_service<T>(
    listener: TcpListener,
    limits: Limits,
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
    serve_connections_with(
        listener,
        limits,
        shutdown,
        move |req: http::Request<hyper::body::Incoming>| {
            // Called as the connection hands the request over: what the service does
            // before its future (a refusal's answer) is done now.
            let answer =
                tower_service::Service::call(&mut service.clone(), req.map(tonic::body::Body::new));
            async move {
                match answer.await {
                    Ok(resp) => resp,
                    Err(never) => match never {},
                }
            }
        },
    )
    .await
}

/// When the sender stops waiting: its `grpc-timeout` from now; `None` without one (or
/// past what the clock can hold). The gRPC spec's form is one to eight ASCII digits and a
/// unit (`H`, `M`, `S`, `m`, `u`, `n`); another value is an error, as grpc-go answers it.
fn sender_deadline<B>(req: &http::Request<B>) -> Result<Option<tokio::time::Instant>, String> {
    let Some(v) = req.headers().get("grpc-timeout") else {
        return Ok(None);
    };
    let malformed = || {
        format!(
            "malformed grpc-timeout {:?}: one to eight digits and a unit (H, M, S, m, u, n)",
            String::from_utf8_lossy(v.as_bytes())
        )
    };
    let v = v.to_str().map_err(|_| malformed())?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1).ok_or_else(malformed)?);
    if !(1..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    let n: u64 = digits.parse().map_err(|_| malformed())?;
    let d = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(malformed()),
    };
    Ok(tokio::time::Instant::now().checked_add(d))
}

/// Where a request of the other protocol goes, as a refusal names it: "to the `name`
/// receiver, port N", or that this process has none (`key` unset). `article` is the one
/// `name` takes ("a gRPC", "an HTTP").
pub(super) fn other_receiver(article: &str, name: &str, port: Option<u16>, key: &str) -> String {
    match port {
        Some(port) => format!("to the {name} receiver, port {port}"),
        None => format!("to {article} {name} receiver (this process has none: `{key}`)"),
    }
}

/// Whether the request says it is gRPC (`application/grpc…`).
pub(super) fn is_grpc<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// The codec of an `application/grpc…` content type when it is not protobuf: the
/// `+subtype` (case-insensitive, parameters after `;` ignored), or `None` for
/// `application/grpc` and `application/grpc+proto`.
fn unsupported_subtype(content_type: &[u8]) -> Option<String> {
    let rest = content_type.strip_prefix(b"application/grpc")?;
    let rest = rest.split(|&b| b == b';').next().unwrap_or_default();
    let rest = rest.trim_ascii();
    if rest.is_empty() || rest.eq_ignore_ascii_case(b"+proto") {
        return None;
    }
    Some(String::from_utf8_lossy(rest).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: `grpc-timeout` values as clients write them, and malformed ones (a trial
    /// sent nine digits, a bad unit, a sign, nothing, letters).
    /// Guarantees: the spec's forms give a deadline; the others are errors naming the value
    /// (grpc-go answers them INTERNAL); none is none.
    #[test]
    fn grpc_timeouts_are_read_as_the_spec_writes_them() {
        let with = |v: Option<&str>| {
            let mut b = http::Request::builder();
            if let Some(v) = v {
                b = b.header("grpc-timeout", v);
            }
            sender_deadline(&b.body(()).unwrap_or_default())
        };
        assert_eq!(with(None), Ok(None));
        for ok in ["1S", "99999999m", "5H", "0n", "10u", "3M"] {
            assert!(matches!(with(Some(ok)), Ok(Some(_))), "{ok}");
        }
        for bad in ["1000000000S", "5X", "-5S", "", "abc", "S", "1.5S", "+5S"] {
            let e = with(Some(bad)).unwrap_err();
            assert!(e.starts_with("malformed grpc-timeout"), "{bad}: {e}");
        }
    }

    /// A body that says when it is dropped.
    struct Watched(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Watched {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl http_body::Body for Watched {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
            Poll::Ready(None)
        }
    }

    /// A sink for calls that must not reach it.
    struct Unreached;

    impl SpanSink for Unreached {
        async fn export(&self, _body: Bytes) -> Result<crate::receive::Accepted, Refusal> {
            unreachable!("answered from the headers")
        }
    }

    /// Scenario: calls whose headers decide their answer (no token, another method, a
    /// codec but protobuf, an encoding not taken, HTTP/1.1, OTLP/HTTP on this port) and a
    /// good one, at a receiver requiring a token; each request's body says when it is
    /// dropped.
    /// Guarantees: each of the first is answered by `call` itself, as the connection
    /// hands it over, and the request let go before its answer is even polled (a hostile
    /// check: calls without the token waiting for workers held 1.7 GB against a 1,008 MiB
    /// bound); the good call keeps its request for the handling.
    #[test]
    fn calls_their_headers_decide_are_let_go_as_they_are_handed_over() {
        let config: crate::receive::ReceiveConfig =
            serde_yaml_ng::from_str("{auth: {bearer_token: s3cret}}").unwrap();
        let mut service = TraceService::new(Arc::new(Unreached), &Limits::plaintext(&config));
        let call = |service: &mut TraceService<Unreached>,
                    path: &str,
                    headers: &[(&str, &str)],
                    version: http::Version| {
            let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let mut b = http::Request::builder()
                .method("POST")
                .uri(path)
                .version(version);
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            let req = b.body(Body::new(Watched(dropped.clone()))).unwrap();
            let answer = tower_service::Service::call(service, req);
            (dropped.load(std::sync::atomic::Ordering::SeqCst), answer)
        };
        let grpc = ("content-type", "application/grpc");
        let token = ("authorization", "Bearer s3cret");
        let h2 = http::Version::HTTP_2;
        for (path, headers, version) in [
            (TRACE_EXPORT_PATH, vec![grpc], h2),
            (
                TRACE_EXPORT_PATH,
                vec![grpc, ("authorization", "Bearer no")],
                h2,
            ),
            ("/other.Service/Export", vec![grpc, token], h2),
            (
                TRACE_EXPORT_PATH,
                vec![("content-type", "application/grpc+json"), token],
                h2,
            ),
            (
                TRACE_EXPORT_PATH,
                vec![grpc, token, ("grpc-encoding", "br")],
                h2,
            ),
            (TRACE_EXPORT_PATH, vec![grpc, token], http::Version::HTTP_11),
            (
                TRACE_EXPORT_PATH,
                vec![("content-type", "application/x-protobuf"), token],
                h2,
            ),
        ] {
            let (dropped, _answer) = call(&mut service, path, &headers, version);
            assert!(dropped, "{path} {headers:?} {version:?}: held until polled");
        }
        let (dropped, answer) = call(&mut service, TRACE_EXPORT_PATH, &[grpc, token], h2);
        assert!(!dropped, "a good call is read");
        drop(answer);
    }

    /// Scenario: content types gRPC clients send. Guarantees: protobuf, however written, is
    /// taken; another codec is named.
    #[test]
    fn only_the_protobuf_codec_is_taken() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc+PROTO",
            "application/grpc;charset=utf-8",
        ] {
            assert_eq!(unsupported_subtype(ct.as_bytes()), None, "{ct}");
        }
        for (ct, subtype) in [
            ("application/grpc+json", "+json"),
            ("application/grpc+JSON; x=y", "+json"),
            ("application/grpcweb", "web"),
        ] {
            assert_eq!(unsupported_subtype(ct.as_bytes()).as_deref(), Some(subtype));
        }
    }

    /// Scenario: a 3.5 MB message (the Collector's loadbalancing exporter sends such)
    /// arriving in 16 KiB frames after the first 1 MiB was preallocated, and a small one.
    /// Guarantees: each ends whole in an allocation of exactly its size (a freely doubling
    /// buffer would end at 4 MiB, 20% more than the message).
    #[test]
    fn a_message_read_in_frames_is_allocated_at_its_size() {
        for len in [3_500_000usize, 20_000] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut buf = Vec::with_capacity(len.min(MAX_PREALLOCATION));
            for chunk in data.chunks(16 << 10) {
                append_capped(&mut buf, chunk, len);
            }
            assert_eq!(buf, data);
            assert_eq!(buf.capacity(), len);
        }
    }
}
