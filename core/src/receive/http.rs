//! OTLP/HTTP receiver: `POST /v1/traces` (or `receive.traces_url_path`) with
//! `application/x-protobuf` (or `application/protobuf`) or `application/json` bodies, optionally gzip- or zstd-encoded, with or without `Content-Length`
//! (chunked). JSON is converted to protobuf once, here at the edge; the [`SpanSink`] only
//! ever sees protobuf. Replies use the request's content type, as OTLP/HTTP specifies.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use prost::Message;
use tokio::net::TcpListener;

use super::auth::check_sender;
use super::compress::{decompress, Encoding, HTTP_ENCODINGS};
use super::cors::Cors;
use super::limits::{serve_connections_with, Admission, InFlight, InFlightBytes, Limits};
use super::sink::{encode_response, run_detached, Accepted, Origin, SpanSink, PEER_HEADER};
use super::status::{Refusal, RpcStatus};

pub use super::limits::TRACES_PATH;

/// A request's OTLP format; a protobuf one keeps the media type it was sent with, which
/// its answer carries (the spec: "MUST use the same Content-Type" as the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf(&'static str),
    Json,
}

/// Serves OTLP/HTTP on `listener` until `shutdown` completes, then lets open connections
/// finish their requests.
pub async fn serve<S: SpanSink>(
    listener: TcpListener,
    sink: Arc<S>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_connections_with(listener, limits.clone(), shutdown, move |mut req| {
        let (sink, limits) = (sink.clone(), limits.clone());
        // Answered as its connection hands it over when its headers say all (see
        // [`answered_unread`]): the request, and the frames its headers may still point
        // into, are let go at once, without the handling's future waiting for a worker.
        match answered_unread(&*sink, &mut req, &limits) {
            Some(resp) => futures_util::future::Either::Left(std::future::ready(resp)),
            None => {
                futures_util::future::Either::Right(
                    async move { answer_read(sink, req, limits).await },
                )
            }
        }
    })
    .await
}

/// The answer to a request its headers decide, with the cross-origin headers a browser
/// needs: a browser's preflight; a gRPC call, another path or method, a content type not
/// OTLP's (answered as the Collector answers them: a `Status` in the request's format when
/// it has one of OTLP's, else text); a sender the receivers' checks refuse; a request the
/// in-flight budget refused as its connection handed it over ([`Admission`]). `None`: the
/// body is read ([`answer_read`]).
///
/// All of these are answered here, as the connection hands the request over, rather than
/// on the request's own task: a hostile check filled every connection slot with such
/// requests (15 KB of headers each, no token, or another path) and the ones waiting for a
/// worker, uncharged, held 1.7 GB against a 1,008 MiB bound.
fn answered_unread<S: SpanSink, B>(
    sink: &S,
    req: &mut Request<B>,
    limits: &Limits,
) -> Option<Response<Full<Bytes>>> {
    let cors = limits.cors.as_ref();
    if let Some(cors) = cors.filter(|_| Cors::is_preflight(req.method(), req.headers())) {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        *resp.headers_mut() = cors.preflight(req.headers());
        return Some(resp);
    }
    let mut resp = unread(sink, req, limits)?;
    if let Some(cors) = cors {
        cors.decorate(
            req.method(),
            req.headers().get(header::ORIGIN),
            resp.headers_mut(),
        );
    }
    Some(resp)
}

/// [`answered_unread`] but the preflight and cross-origin headers, in the order the
/// Collector checks: route, method, content type, then the sender, then room.
fn unread<S: SpanSink, B>(
    sink: &S,
    req: &mut Request<B>,
    limits: &Limits,
) -> Option<Response<Full<Bytes>>> {
    if super::grpc::is_grpc(req) {
        return Some(grpc_misdirected(sink, limits.grpc_port, req.version()));
    }
    let path = &*limits.traces_path;
    if req.uri().path() != path {
        return Some(misdirected(
            req,
            StatusCode::NOT_FOUND,
            &format!("only {path} is served here (Tailgate takes traces, not metrics or logs)"),
        ));
    }
    if req.method() != Method::POST {
        let mut resp = misdirected(
            req,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("use POST for {path}"),
        );
        // RFC 9110: a 405 says which methods the resource takes.
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return Some(resp);
    }
    let format = match content_type(req) {
        Ok(f) => f,
        Err(resp) => return Some(*resp),
    };
    let refusal = check_sender(
        limits.peer_traffic,
        &limits.peer_auth,
        limits.auth.as_ref(),
        req,
        path,
    )
    .err()
    .or_else(|| Admission::refused(req))?;
    sink.refused(&refusal);
    Some(refusal_response(format, &refusal))
}

/// The answer to an OTLP/HTTP request whose body is read: one [`answered_unread`] left.
async fn answer_read<S: SpanSink>(
    sink: Arc<S>,
    req: Request<Incoming>,
    limits: Limits,
) -> Response<Full<Bytes>> {
    let (method, origin) = (
        req.method().clone(),
        req.headers().get(header::ORIGIN).cloned(),
    );
    let cors = limits.cors.clone();
    let mut resp = match content_type(&req) {
        Err(resp) => *resp,
        Ok(format) => match receive(&sink, req, format, limits).await {
            Ok(accepted) => ok_response(format, &accepted),
            Err(refusal) => {
                sink.refused(&refusal);
                refusal_response(format, &refusal)
            }
        },
    };
    if let Some(cors) = cors {
        cors.decorate(&method, origin.as_ref(), resp.headers_mut());
    }
    resp
}

async fn receive<S: SpanSink>(
    sink: &Arc<S>,
    mut req: Request<Incoming>,
    format: Format,
    limits: Limits,
) -> Result<Accepted, Refusal> {
    let max = limits.max_request_bytes;
    // The Collector's OTLP/HTTP receiver's encodings (see `compress`).
    let origin = Origin::parse(req.headers().get(PEER_HEADER).map(|v| v.as_bytes()));
    let encoding = match req.headers().get(header::CONTENT_ENCODING) {
        None => None,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| Encoding::from_content_encoding(v).ok())
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "unsupported Content-Encoding {v:?}; use {HTTP_ENCODINGS}"
                ))
            })?,
    };
    // A body announced larger than the limit is refused before any of it is read or waited
    // for (with `Expect: 100-continue`, before its sender is told to send it).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(len) = announced.filter(|&len| len > max as u64) {
        return Err(Refusal::too_large(
            format!(
                "request body of {len} bytes (Content-Length) exceeds the limit of {max} bytes"
            ),
            max,
        ));
    }
    // The open request's own cost first, held until it is answered (see
    // `InFlight::take_request`).
    let sender = crate::serve::SenderAddr::of(&req);
    let mut held = super::limits::Admission::take(&limits.in_flight, &mut req)?;
    // Room is asked for once the body starts (see `primed`), then held before reading the
    // rest: the unread body holds the sender back.
    let req = super::primed::body_started(req, limits.request_timeout, &held).await?;
    let pass = sink.ready_from(req.body().first_len(), sender).await?;
    // The rest of the body has `request_timeout` from when room was given.
    let read_by = super::primed::deadline_in(limits.request_timeout);
    // Every chunk takes its size from the receivers' in-flight budget as it arrives; the
    // request gives it all back once the sink has answered.
    let collect = read_body(req.into_body(), max, &limits.in_flight, &mut held);
    let body = tokio::time::timeout_at(read_by, collect)
        .await
        .map_err(|_| {
            Refusal::Timeout(format!(
                "request body not received within {:?}",
                limits.request_timeout
            ))
        })??;
    let body = match encoding {
        Some(encoding) => decompress(encoding, &body, max)?,
        None => body,
    };
    if encoding.is_some() {
        limits.in_flight.take(&mut held, body.len())?;
    }
    let body = match format {
        Format::Protobuf(_) => body,
        // The JSON is freed once converted (its budget share stays held: the protobuf,
        // never larger, takes its place).
        Format::Json => owned_json_to_protobuf(body).inspect_err(|_| sink.malformed())?,
    };
    let sink = sink.clone();
    // The budget share goes with the body into the detached task (see grpc.rs).
    run_detached(async move {
        let _held = (held, pass);
        sink.export_from(body, origin).await
    })
    .await
}

/// Reads a request body of at most `max` bytes, taking each chunk's size from `in_flight`
/// into `held` as it arrives.
async fn read_body<B>(
    mut body: B,
    max: usize,
    in_flight: &InFlight,
    held: &mut InFlightBytes,
) -> Result<Bytes, Refusal>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    let mut gathered = super::limits::BodyBuf::default();
    let mut len = 0usize;
    let mut begun = false;
    while let Some(frame) = held.unless_reclaimed(body.frame(), begun).await? {
        begun = true;
        let frame = frame.map_err(|e| super::status::body_error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        len += data.len();
        if len > max {
            return Err(Refusal::too_large(
                format!("request body exceeds the limit of {max} bytes"),
                max,
            ));
        }
        in_flight.take(held, data.len())?;
        gathered.push(data);
    }
    Ok(gathered.finish())
}

/// Converts an OTLP/JSON `ExportTraceServiceRequest` to its protobuf encoding, object by
/// object (see [`super::otlp_json`]): what it holds is bounded by the body's size.
pub fn json_to_protobuf(body: &[u8]) -> Result<Bytes, Refusal> {
    super::otlp_json::to_protobuf(body)
        .map(Bytes::from)
        .map_err(invalid_json)
}

/// As [`json_to_protobuf`], for a body the receiver holds alone (as it does once gathered
/// or decompressed): a lone surrogate escape is then patched in place, not in a copy, so
/// such a body costs no more than another.
fn owned_json_to_protobuf(body: Bytes) -> Result<Bytes, Refusal> {
    match body.try_into_mut() {
        Ok(mut owned) => super::otlp_json::to_protobuf_in_place(&mut owned),
        Err(shared) => super::otlp_json::to_protobuf(&shared),
    }
    .map(Bytes::from)
    .map_err(invalid_json)
}

fn invalid_json(e: serde_json::Error) -> Refusal {
    Refusal::Invalid(format!("invalid OTLP/JSON trace request: {e}"))
}

/// Converts a protobuf `ExportTraceServiceRequest` to OTLP/JSON, on one line (see
/// [`super::otlp_json_out`], which the gateway's `debug` exporter streams to its output).
pub fn protobuf_to_json(body: &[u8]) -> Result<String, JsonError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(2));
    super::otlp_json_out::write_json(body, &mut out)?;
    // Only UTF-8 is written: strings are checked, the rest is ASCII.
    String::from_utf8(out).map_err(|_| JsonError::Malformed("string"))
}

/// Why a request could not be written as OTLP/JSON.
pub use super::otlp_json_out::JsonWriteError as JsonError;

fn content_type<B>(req: &Request<B>) -> Result<Format, Box<Response<Full<Bytes>>>> {
    let value = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/x-protobuf" => Ok(Format::Protobuf("application/x-protobuf")),
        "application/protobuf" => Ok(Format::Protobuf("application/protobuf")),
        "application/json" => Ok(Format::Json),
        _ => Err(Box::new(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "unsupported Content-Type {value:?}; use application/x-protobuf or application/json"
            ),
        ))),
    }
}

fn ok_response(format: Format, accepted: &Accepted) -> Response<Full<Bytes>> {
    let body = match format {
        Format::Protobuf(_) => encode_response(accepted),
        Format::Json if accepted.rejected_spans == 0 && accepted.message.is_empty() => {
            Bytes::from_static(b"{}")
        }
        Format::Json => Bytes::from(
            serde_json::json!({
                "partialSuccess": {
                    "rejectedSpans": accepted.rejected_spans.to_string(),
                    "errorMessage": json_message(&accepted.message),
                }
            })
            .to_string(),
        ),
    };
    with_body(StatusCode::OK, format, body)
}

/// A partial success's message as a JSON sender can use it: byte offsets, which point
/// into the protobuf the JSON was converted to, are left out; an id of the wrong length
/// (what an id that is not hex becomes, see `otlp_json`) says that OTLP/JSON writes ids in
/// hex, not base64 as protobuf's JSON mapping would.
fn json_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" (byte ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " (byte ".len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(')') {
            rest = &after[digits + 1..];
        } else {
            out.push_str(" (byte ");
            rest = after;
        }
    }
    out.push_str(rest);
    // An id that is not hex reaches the scan as one byte (see `otlp_json`): "found 1" would
    // count bytes the sender never wrote.
    if let Some(at) = out.find("trace_id must be 16 bytes, found 1") {
        let end = at + "trace_id must be 16 bytes, found 1".len();
        if !out[end..].starts_with(|c: char| c.is_ascii_digit()) {
            out.replace_range(
                at..end,
                "trace_id must be 16 bytes (32 hex digits), found characters that are not hex digits (or a 1-byte id)",
            );
        }
    }
    // The scan's words for an id of the wrong length (`wire::scan::SpanDefect` for the
    // trace id, `wire::validate` for the others).
    if ["must be 16 bytes", "is not 16 bytes", "is not 8 bytes"]
        .iter()
        .any(|words| out.contains(words))
    {
        out.push_str(
            " (OTLP/JSON writes ids in hex: 32 digits for a trace id, 16 for a span id, not base64)",
        );
    }
    out
}

/// A refusal in the request's format, with its retry hint when it has one.
fn refusal_response(format: Format, refusal: &Refusal) -> Response<Full<Bytes>> {
    let body = status_body(format, refusal.grpc_code(), &refusal.to_string());
    let mut resp = with_body(refusal.http_status(), format, body);
    if let Some(secs) = refusal.retry_after_secs() {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    resp
}

fn with_body(status: StatusCode, format: Format, body: Bytes) -> Response<Full<Bytes>> {
    let ct = match format {
        Format::Protobuf(ct) => ct,
        Format::Json => "application/json",
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
    resp
}

/// `status` with `message`: a `Status` (code UNIMPLEMENTED) in the request's OTLP format,
/// or text when it has none.
/// The answer to a gRPC client pointed at the OTLP/HTTP receiver: a gRPC status (HTTP 200,
/// `grpc-status` 12, UNIMPLEMENTED, in a trailers-only answer) saying where gRPC goes, so
/// the client shows that instead of "received HTTP status 404". Over HTTP/1.x, where no
/// gRPC client speaks, 415 (a hostile sweep saw HTTP 200 answer a client that reads only
/// the status, as the Collector's 415 would not). Counted as refused, `invalid`, as the
/// gRPC receiver counts OTLP/HTTP sent to it.
fn grpc_misdirected<S: SpanSink>(
    sink: &S,
    grpc_port: Option<u16>,
    version: http::Version,
) -> Response<Full<Bytes>> {
    let to = super::grpc::other_receiver("a", "gRPC", grpc_port, "receive.grpc");
    let refusal = Refusal::Invalid(format!(
        "a gRPC request reached the OTLP/HTTP receiver; send OTLP/gRPC {to}"
    ));
    sink.refused(&refusal);
    if version < http::Version::HTTP_2 {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("{refusal} (over HTTP/2: gRPC needs it); OTLP/HTTP takes application/x-protobuf or application/json"),
        );
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(
        "grpc-status",
        header::HeaderValue::from(tonic::Code::Unimplemented as i32),
    );
    // Printable ASCII without `%`: a valid grpc-message as it is.
    if let Ok(message) = header::HeaderValue::try_from(refusal.to_string()) {
        headers.insert("grpc-message", message);
    }
    resp
}

fn misdirected<B>(req: &Request<B>, status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    match content_type(req) {
        Ok(format) => with_body(
            status,
            format,
            status_body(format, tonic::Code::Unimplemented as i32, message),
        ),
        Err(_) => plain(status, message),
    }
}

/// A `google.rpc.Status` of `code` and `message` as OTLP/HTTP writes it in `format`.
fn status_body(format: Format, code: i32, message: &str) -> Bytes {
    match format {
        Format::Protobuf(_) => Bytes::from(
            RpcStatus {
                code,
                message: message.to_owned(),
                details: Vec::new(),
            }
            .encode_to_vec(),
        ),
        Format::Json => {
            Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string())
        }
    }
}

fn plain(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_protobuf_round_trip() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"scopeSpans":[{"spans":[{"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"x","startTimeUnixNano":"5","endTimeUnixNano":"7"}]}]}]}"#;
        let proto = json_to_protobuf(json.as_bytes()).unwrap();
        let back = protobuf_to_json(&proto).unwrap();
        assert!(!back.contains('\n'));
        assert_eq!(json_to_protobuf(back.as_bytes()).unwrap(), proto);
        assert!(matches!(
            protobuf_to_json(b"\xff\xff"),
            Err(JsonError::Malformed(_))
        ));
    }

    /// Scenario: a JSON request whose ids are base64 (as protobuf's JSON mapping writes
    /// bytes) beside a good span, scanned as the receivers scan it.
    /// Guarantees: the good span is kept, the other rejected, and the JSON answer's message
    /// says ids are hex, without the protobuf byte offset a JSON sender cannot use; other
    /// parentheses are kept.
    #[test]
    fn a_json_partial_success_speaks_json() {
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"AQIDBAUGBwgJCgsMDQ4PEA==","spanId":"AQIDBAUGBwg=","name":"b64"},
            {"traceId":"0102030405060708090a0b0c0d0e0f10","spanId":"0102030405060708","name":"hex"}]}]}]}"#;
        let body = json_to_protobuf(json.as_bytes()).unwrap();
        let mut scan = crate::wire::scan::Scan::default();
        let scanned = scan.scan_request(&body).unwrap();
        assert_eq!((scanned.valid, scanned.rejected), (1, 1));
        assert!(scanned.message.contains("(byte "), "{}", scanned.message);
        let said = json_message(&scanned.message);
        assert!(!said.contains("(byte "), "{said}");
        assert!(said.contains("ids in hex"), "{said}");
        assert_eq!(json_message("a (byte x) b (byte 12)"), "a (byte x) b");
        // A base64 trace id beside a hex span id: the trace id's own wording.
        let json = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
            {"traceId":"AQIDBAUGBwgJCgsMDQ4PEA==","spanId":"0102030405060708","name":"b64"}]}]}]}"#;
        let body = json_to_protobuf(json.as_bytes()).unwrap();
        let scanned = scan.scan_request(&body).unwrap();
        assert_eq!(scanned.rejected, 1);
        let said = json_message(&scanned.message);
        assert!(
            said.contains("trace_id") && said.contains("ids in hex"),
            "{said}"
        );
        // It does not say the sender wrote one byte.
        assert!(
            said.contains("found characters that are not hex digits (or a 1-byte id)")
                && !said.contains("found 1 ("),
            "{said}"
        );
        assert_eq!(
            json_message("trace_id must be 16 bytes, found 12"),
            "trace_id must be 16 bytes, found 12 (OTLP/JSON writes ids in hex: 32 digits for a trace id, 16 for a span id, not base64)"
        );
    }

    /// Counts what the receiver says it refused.
    #[derive(Default)]
    struct Refusals(std::sync::atomic::AtomicU64);

    impl SpanSink for Refusals {
        async fn export(&self, _body: Bytes) -> Result<Accepted, Refusal> {
            Err(Refusal::Invalid("not in this test".into()))
        }
        fn refused(&self, _refusal: &Refusal) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Scenario: requests whose headers decide their answer (no token, a wrong token,
    /// another path or method, a gRPC call, a content type not OTLP's, a browser's
    /// preflight) and one that must be read, at a receiver requiring a token and taking
    /// cross-origin requests.
    /// Guarantees: each of the first is answered from its headers (so as its connection
    /// hands it over, without a task of its own: a hostile check held 1.7 GB against a
    /// 1,008 MiB bound with such requests waiting for workers), with the status the
    /// Collector gives, counted as refused (the preflight not) and with the cross-origin
    /// headers; the good one is left to be read.
    #[test]
    fn requests_their_headers_decide_are_answered_unread() {
        let config: crate::receive::ReceiveConfig = serde_yaml_ng::from_str(
            "{auth: {bearer_token: s3cret}, cors: {allowed_origins: ['https://app.example']}}",
        )
        .unwrap();
        let limits = Limits::plaintext(&config);
        let sink = Refusals::default();
        let request = |method: &str, path: &str, ct: &str, auth: Option<&str>| {
            let mut b = Request::builder()
                .method(method)
                .uri(path)
                .header(header::CONTENT_TYPE, ct)
                .header(header::ORIGIN, "https://app.example");
            if let Some(auth) = auth {
                b = b.header(header::AUTHORIZATION, auth);
            }
            b.body(()).unwrap()
        };
        let pb = "application/x-protobuf";
        for (req, status) in [
            (request("POST", "/v1/traces", pb, None), 401),
            (request("POST", "/v1/traces", pb, Some("Bearer wrong")), 401),
            (
                request("POST", "/v1/metrics", pb, Some("Bearer s3cret")),
                404,
            ),
            (request("GET", "/v1/traces", pb, Some("Bearer s3cret")), 405),
            (
                request("POST", "/v1/traces", "text/plain", Some("Bearer s3cret")),
                415,
            ),
        ] {
            let mut req = req;
            let resp = answered_unread(&sink, &mut req, &limits);
            let resp = resp.unwrap_or_else(|| panic!("{req:?} left to be read"));
            assert_eq!(resp.status().as_u16(), status, "{req:?}");
            assert!(
                resp.headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{req:?}"
            );
        }
        let mut grpc = request("POST", "/v1/traces", "application/grpc", None);
        assert!(answered_unread(&sink, &mut grpc, &limits).is_some());
        let refused = sink.0.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(refused, 3, "the two without the token and the gRPC call");
        let mut preflight = Request::builder()
            .method("OPTIONS")
            .uri("/v1/traces")
            .header(header::ORIGIN, "https://app.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(())
            .unwrap();
        let resp = answered_unread(&sink, &mut preflight, &limits).unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let mut good = request("POST", "/v1/traces", pb, Some("Bearer s3cret"));
        assert!(answered_unread(&sink, &mut good, &limits).is_none());
        assert_eq!(sink.0.load(std::sync::atomic::Ordering::Relaxed), refused);
    }

    #[test]
    fn malformed_json_names_the_problem() {
        let err = json_to_protobuf(b"{\"resourceSpans\": 5}").unwrap_err();
        let Refusal::Invalid(msg) = err else {
            panic!("expected Invalid, got {err:?}")
        };
        assert!(msg.contains("invalid OTLP/JSON"), "{msg}");
    }
}
