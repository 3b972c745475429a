//! Request decompression (gzip and zstd) bounded in output, so that a small compressed body
//! cannot make a receiver allocate without bound. Both receivers use it.

use std::io::Read;

use bytes::Bytes;

use super::status::Refusal;

/// Decompresses at most `max` bytes; a larger output is refused, so a small compressed body
/// cannot make the receiver allocate without bound.
pub fn gunzip(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    bounded_read(flate2::read::GzDecoder::new(body), body.len(), max, "gzip")
}

/// [`gunzip`] for zstd.
pub fn unzstd(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    let decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| Refusal::Invalid(format!("zstd body is corrupt: {e}")))?;
    bounded_read(decoder, body.len(), max, "zstd")
}

fn bounded_read(
    decoder: impl Read,
    compressed: usize,
    max: usize,
    what: &str,
) -> Result<Bytes, Refusal> {
    let mut out = Vec::with_capacity((compressed * 4).min(max));
    decoder
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| Refusal::Invalid(format!("{what} body is corrupt: {e}")))?;
    if out.len() > max {
        return Err(Refusal::TooLarge(format!(
            "decompressed request body exceeds the limit of {max} bytes"
        )));
    }
    Ok(Bytes::from(out))
}
