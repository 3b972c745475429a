//! A tonic codec whose messages are raw `Bytes`, so tonic's client can send encoded
//! requests as they are. Tailgate's own receivers and client speak gRPC over hyper
//! directly (see `receive::grpc` and `forward`); this codec is for the load generator and
//! the tests, which drive the receivers with tonic as an independent gRPC implementation.

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Codec for `Bytes` in both directions.
#[derive(Debug, Default, Clone, Copy)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Debug, Default, Clone, Copy)]
pub struct RawDecoder;

// === impl RawCodec ===

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // The frame is one contiguous buffer; this splits it off without copying.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
