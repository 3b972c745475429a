//! Request decompression (gzip and zstd) bounded in output, so that a small compressed body
//! cannot make a receiver allocate without bound. Both receivers use it.

use std::io::Read;

use bytes::Bytes;

use super::status::Refusal;

/// Decompresses at most `max` bytes; a larger output is refused, so a small compressed body
/// cannot make the receiver allocate without bound. A body of several gzip members is read
/// whole, as Go's `gzip.Reader` (and so the Collector and its exporters) reads it: one
/// that read only the first would answer OK for spans it never saw.
pub fn gunzip(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    bounded_read(
        flate2::read::MultiGzDecoder::new(body),
        body.len(),
        max,
        "gzip",
    )
    .map(Bytes::from)
}

/// [`gunzip`] for zstd.
pub fn unzstd(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    let decoder = zstd::stream::read::Decoder::new(body)
        .map_err(|e| Refusal::Invalid(format!("zstd body is corrupt: {e}")))?;
    bounded_read(decoder, body.len(), max, "zstd").map(Bytes::from)
}

/// The decompressed bytes, in an allocation of exactly their size: the buffer grows by
/// doubling from a guess, and what is left over would be held, uncounted, for as long as
/// any span of the request is buffered (up to twice the body, or four times the compressed
/// size for a body that compressed poorly). Shrinking is done in place by the allocator.
fn bounded_read(
    decoder: impl Read,
    compressed: usize,
    max: usize,
    what: &str,
) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity((compressed * 4).min(max));
    decoder
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| match out.len() {
            0 => Refusal::Invalid(format!("{what} body is corrupt: {e}")),
            // Most often bytes after a whole member that do not start another one.
            n => Refusal::Invalid(format!(
                "{what} body is corrupt after {n} good decompressed bytes (trailing bytes \
                 that are not a {what} stream?): {e}"
            )),
        })?;
    if out.len() > max {
        return Err(Refusal::TooLarge(format!(
            "decompressed request body exceeds the limit of {max} bytes"
        )));
    }
    out.shrink_to_fit();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Scenario: a body of two gzip members, and one of a member and trailing bytes.
    /// Guarantees: both members are read (Go's reader reads them all); bytes after a
    /// member that are not one are refused as corrupt, not ignored.
    #[test]
    fn every_gzip_member_is_read() {
        let mut body = gzip(b"first ");
        body.extend(gzip(b"second"));
        assert_eq!(&gunzip(&body, 1 << 20).unwrap()[..], b"first second");
        let mut body = gzip(b"first ");
        body.extend_from_slice(b"not gzip");
        assert!(
            matches!(gunzip(&body, 1 << 20), Err(Refusal::Invalid(m)) if m.contains("corrupt after 6 good"))
        );
        // The output limit counts every member.
        let mut body = gzip(&[1; 600]);
        body.extend(gzip(&[2; 600]));
        assert!(matches!(gunzip(&body, 1_000), Err(Refusal::TooLarge(_))));
    }

    /// Scenario: a body that compresses well (the buffer doubles past its guess) and one
    /// that compresses poorly (the guess is four times too big).
    /// Guarantees: the output is whole and its allocation is its size, nothing more.
    #[test]
    fn decompressed_bodies_hold_no_spare_capacity() {
        let mut rng = fastrand::Rng::with_seed(7);
        let well: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let poorly: Vec<u8> = (0..300_000).map(|_| rng.u8(..)).collect();
        for data in [well, poorly] {
            let z = gzip(&data);
            let out = bounded_read(
                flate2::read::GzDecoder::new(&z[..]),
                z.len(),
                8 << 20,
                "gzip",
            )
            .unwrap();
            assert_eq!(out, data);
            assert_eq!(out.capacity(), out.len(), "compressed {} bytes", z.len());
        }
    }
}
