//! Waiting for a request's body to start before it counts against a stage's room.
//!
//! The receivers ask the stage for room ([`super::SpanSink::ready`]) before reading a body,
//! so that a full stage holds senders back by flow control instead of refusing what it has
//! read. A stream that sends its headers and then nothing would hold that room for
//! `request_timeout` at almost no cost to its sender (a few hundred such streams filled a
//! router's room for everyone). So a request first waits for its first body frame, holding
//! nothing but its stream, and only then asks for room; the frame is kept and read first.

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

/// `req` once its body has started (or ended, or failed: the reader sees that), by
/// `deadline`; refused as too slow when nothing came by then.
pub async fn body_started<B>(
    req: http::Request<B>,
    deadline: tokio::time::Instant,
) -> Result<http::Request<Primed<B>>, Refusal>
where
    B: Body<Data = Bytes> + Unpin,
{
    use http_body_util::BodyExt;
    let (parts, mut rest) = req.into_parts();
    let first = if rest.is_end_stream() {
        None
    } else {
        tokio::time::timeout_at(deadline, rest.frame())
            .await
            .map_err(|_| Refusal::Timeout("request body not started in time".into()))?
    };
    Ok(http::Request::from_parts(parts, Primed { first, rest }))
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
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
        let primed = body_started(req, deadline).await.unwrap();
        let all = primed.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], b"abcd");
    }
}
