//! Waiting for a request's body to start before it counts against a stage's room.
//!
//! The receivers ask the stage for room ([`super::SpanSink::ready`]) before reading a body,
//! so that a full stage holds senders back by flow control instead of refusing what it has
//! read. A stream that sends its headers and then nothing would hold that room for
//! `request_timeout` at almost no cost to its sender (a few hundred such streams filled a
//! router's room for everyone). So a request first waits for its first body frame, holding
//! nothing but its stream, and only then asks for room, telling the stage how long that
//! frame is (the router prices the room by it, `router/src/passes.rs`); the frame is kept
//! and read first.
//!
//! An HTTP/1.x request with `Expect: 100-continue` is not primed: reading its body would
//! send `100 Continue`, and the sender would upload a body the stage may then refuse.
//! Such a sender sends nothing until asked. HTTP/2 has no such handshake in practice (a
//! client sends its body at once), so every HTTP/2 request is primed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::status::Refusal;

/// A body whose first frame was already read: it yields that frame, then the rest.
#[derive(Debug)]
pub struct Primed<B: Body> {
    first: Option<Result<Frame<Bytes>, B::Error>>,
    rest: B,
}

impl<B: Body> Primed<B> {
    /// The length of the first frame's data, when one was read ahead.
    pub fn first_len(&self) -> Option<usize> {
        match &self.first {
            Some(Ok(frame)) => frame.data_ref().map(|d| d.len()),
            _ => None,
        }
    }
}

impl<B> Body for Primed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }
}

/// `req` once its body has started (or ended, or failed: the reader sees that), within
/// `within`; refused as too slow when nothing came by then, or when its sender (whose
/// share holds `held`) is over its share and asked to give room back (see
/// [`super::limits::InFlightBytes::unless_reclaimed`]). Not waited for when the sender
/// waits for `100 Continue` (see the module docs).
pub async fn body_started<B>(
    req: http::Request<B>,
    within: std::time::Duration,
    held: &super::limits::InFlightBytes,
) -> Result<http::Request<Primed<B>>, Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let expects_continue = req.version() < http::Version::HTTP_2
        && req
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, mut rest) = req.into_parts();
    let first = if rest.is_end_stream() || expects_continue {
        None
    } else {
        tokio::time::timeout_at(
            deadline_in(within),
            held.unless_reclaimed(rest.frame(), false),
        )
        .await
        .map_err(|_| Refusal::Timeout("request body not started in time".into()))??
    };
    Ok(http::Request::from_parts(parts, Primed { first, rest }))
}

/// `within` from now, or a year from now if that is past what an `Instant` holds (a
/// configured timeout is not bounded above).
pub fn deadline_in(within: std::time::Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(within)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// Scenario: a body of three frames, primed. Guarantees: it yields the same three, in
    /// order, and ends.
    #[tokio::test]
    async fn a_primed_body_yields_every_frame_in_order() {
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = ["a", "bc", "d"]
            .into_iter()
            .map(|s| Ok(Frame::data(Bytes::from(s))))
            .collect();
        let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
        let req = http::Request::new(body);
        let primed = body_started(req, std::time::Duration::from_secs(1), &Default::default())
            .await
            .unwrap();
        let all = primed.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
    }

    /// Scenario: the same two-frame body sent with `Expect: 100-continue` over HTTP/1.1
    /// and over HTTP/2.
    /// Guarantees: over HTTP/1.1 nothing is read ahead (no first frame to price by);
    /// over HTTP/2 the header changes nothing, the first frame is read and priced; both
    /// bodies stay whole.
    #[tokio::test]
    async fn only_http1_waits_for_100_continue() {
        for (version, first) in [
            (http::Version::HTTP_11, None),
            (http::Version::HTTP_2, Some(3)),
        ] {
            let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = ["abc", "de"]
                .into_iter()
                .map(|s| Ok(Frame::data(Bytes::from(s))))
                .collect();
            let body = http_body_util::StreamBody::new(futures_util::stream::iter(frames));
            let req = http::Request::builder()
                .version(version)
                .header(http::header::EXPECT, "100-Continue")
                .body(body)
                .unwrap();
            let primed = body_started(req, std::time::Duration::from_secs(1), &Default::default())
                .await
                .unwrap();
            assert_eq!(primed.body().first_len(), first, "{version:?}");
            let all = primed.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&all[..], b"abcde", "{version:?}");
        }
    }
}
