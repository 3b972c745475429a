//! Request decompression, bounded in output so that a small compressed body cannot make a
//! receiver allocate without bound. Both receivers (OTLP/gRPC and OTLP/HTTP) use it.
//!
//! The encodings are the Collector's (v0.161): its OTLP/HTTP receiver takes by default
//! `gzip`, `zstd`, `zlib`, `deflate` (read as zlib, as there), `snappy` (the block format,
//! or the framed format its exporters sent under that name before v0.125, told apart by
//! the framed stream's header), `x-snappy-framed` and `lz4` (the frame format); its
//! OTLP/gRPC receiver `gzip`, `zstd` and `snappy` (framed). An agent whose `otlp` or
//! `otlphttp` exporter sets any `compression` the Collector offers can send here.

use std::io::Read;

use bytes::Bytes;

use super::status::Refusal;

/// An encoding no receiver takes: its name as sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported encoding {0:?}")]
pub struct UnsupportedEncoding(pub String);

/// A content coding a receiver decompresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip` (every member of a multi-member body).
    Gzip,
    /// `zstd`.
    Zstd,
    /// `zlib`, and `deflate`, which HTTP defines as the zlib format (RFC 9110, 8.4.1.2).
    Zlib,
    /// `snappy`: the block format, or the framed format when the body starts with the
    /// framed stream's identifier.
    Snappy,
    /// `x-snappy-framed`: the framed format only.
    SnappyFramed,
    /// `lz4`: the LZ4 frame format.
    Lz4,
}

/// The `Content-Encoding` values the OTLP/HTTP receiver takes, for error messages.
pub const HTTP_ENCODINGS: &str = "gzip, zstd, zlib, deflate, snappy, x-snappy-framed, lz4 or none";

/// The `grpc-encoding` values the OTLP/gRPC receiver takes, as `grpc-accept-encoding`
/// lists them.
pub const GRPC_ENCODINGS: &str = "gzip,zstd,snappy,deflate,identity";

impl Encoding {
    /// Every encoding.
    pub const ALL: [Encoding; 6] = [
        Encoding::Gzip,
        Encoding::Zstd,
        Encoding::Zlib,
        Encoding::Snappy,
        Encoding::SnappyFramed,
        Encoding::Lz4,
    ];

    /// An HTTP `Content-Encoding` value (content codings are case-insensitive, RFC 9110
    /// 8.4.1): `Ok(None)` for none.
    pub fn from_content_encoding(value: &str) -> Result<Option<Encoding>, UnsupportedEncoding> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(None),
            "gzip" | "x-gzip" => Ok(Some(Encoding::Gzip)),
            "zstd" => Ok(Some(Encoding::Zstd)),
            "zlib" | "deflate" => Ok(Some(Encoding::Zlib)),
            "snappy" => Ok(Some(Encoding::Snappy)),
            "x-snappy-framed" => Ok(Some(Encoding::SnappyFramed)),
            "lz4" => Ok(Some(Encoding::Lz4)),
            _ => Err(UnsupportedEncoding(value.to_owned())),
        }
    }

    /// A `grpc-encoding` value: `Ok(None)` for identity.
    pub fn from_grpc_encoding(value: &str) -> Result<Option<Encoding>, UnsupportedEncoding> {
        match value {
            "identity" => Ok(None),
            "gzip" => Ok(Some(Encoding::Gzip)),
            "zstd" => Ok(Some(Encoding::Zstd)),
            "snappy" => Ok(Some(Encoding::Snappy)),
            "deflate" => Ok(Some(Encoding::Zlib)),
            _ => Err(UnsupportedEncoding(value.to_owned())),
        }
    }

    /// Its name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Zstd => "zstd",
            Encoding::Zlib => "zlib",
            Encoding::Snappy => "snappy",
            Encoding::SnappyFramed => "x-snappy-framed",
            Encoding::Lz4 => "lz4",
        }
    }
}

/// Decompresses `body` to at most `max` bytes; a larger output is refused
/// ([`Refusal::TooLarge`]), a body that is not in `encoding` too ([`Refusal::Invalid`]).
pub fn decompress(encoding: Encoding, body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    match encoding {
        Encoding::Gzip => gunzip(body, max),
        Encoding::Zstd => unzstd(body, max),
        Encoding::Zlib => bounded_read(
            flate2::read::ZlibDecoder::new(body),
            body.len(),
            max,
            "zlib",
        )
        .map(Bytes::from),
        Encoding::Snappy if !body.starts_with(SNAPPY_STREAM_IDENTIFIER) => {
            unsnappy_block(body, max)
        }
        Encoding::Snappy | Encoding::SnappyFramed => bounded_read(
            snap::read::FrameDecoder::new(body),
            body.len(),
            max,
            encoding.name(),
        )
        .map(Bytes::from),
        Encoding::Lz4 => bounded_read(
            lz4_flex::frame::FrameDecoder::new(body),
            body.len(),
            max,
            "lz4",
        )
        .map(Bytes::from),
    }
}

/// `chunks`, one after another, compressed in `encoding` as a client sends them: `Snappy`
/// in the block format (what `Content-Encoding: snappy` means to the Collector since
/// v0.125), `SnappyFramed` in the framed one (also what gRPC's `snappy` carries). gzip,
/// zlib and zstd at their fastest level: what is compressed here is kept spans on their
/// way out, where CPU counts more than the last bytes of ratio.
pub fn compress(encoding: Encoding, chunks: &[Bytes]) -> std::io::Result<Vec<u8>> {
    compress_at(encoding, None, chunks)
}

/// [`compress`] at `level` (the Collector's `compression_params.level`; `None`: the
/// fastest). gzip and zlib: 0 (stored) to 9, -1 the library default (6), -2 (Go's
/// Huffman-only, which flate2 does not have) the fastest. zstd: zstd's own levels, 0 the
/// fastest, as the Collector's encoder maps it. The others have none.
pub fn compress_at(
    encoding: Encoding,
    level: Option<i32>,
    chunks: &[Bytes],
) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    fn written<W: Write>(mut w: W, chunks: &[Bytes]) -> std::io::Result<W> {
        for c in chunks {
            w.write_all(c)?;
        }
        Ok(w)
    }
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let out = Vec::with_capacity(len / 4 + 64);
    let deflate = match level {
        Some(-1) => flate2::Compression::default(),
        Some(l @ 0..=9) => flate2::Compression::new(l.unsigned_abs()),
        _ => flate2::Compression::fast(),
    };
    let zstd_level = match level {
        None | Some(0) => 1,
        Some(l) => l.clamp(
            *zstd::compression_level_range().start(),
            *zstd::compression_level_range().end(),
        ),
    };
    match encoding {
        Encoding::Gzip => written(flate2::write::GzEncoder::new(out, deflate), chunks)?.finish(),
        Encoding::Zlib => written(flate2::write::ZlibEncoder::new(out, deflate), chunks)?.finish(),
        Encoding::Zstd => {
            written(zstd::stream::write::Encoder::new(out, zstd_level)?, chunks)?.finish()
        }
        Encoding::Snappy => snap::raw::Encoder::new()
            .compress_vec(&chunks.concat())
            .map_err(std::io::Error::other),
        Encoding::SnappyFramed => written(snap::write::FrameEncoder::new(out), chunks)?
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string())),
        Encoding::Lz4 => written(lz4_flex::frame::FrameEncoder::new(out), chunks)?
            .finish()
            .map_err(std::io::Error::other),
    }
}

/// The first chunk of every framed snappy stream: its identifier.
const SNAPPY_STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// A snappy block: its header states the decompressed length, which is checked against
/// `max` before anything is allocated, and the output takes exactly that.
fn unsnappy_block(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    let corrupt = |e: snap::Error| Refusal::Invalid(format!("snappy body is corrupt: {e}"));
    let len = snap::raw::decompress_len(body).map_err(corrupt)?;
    if len > max {
        return Err(Refusal::too_large(
            format!(
                "decompressed request body of {len} bytes (snappy header) exceeds the limit \
                 of {max} bytes"
            ),
            max,
        ));
    }
    let mut out = vec![0; len];
    let n = snap::raw::Decoder::new()
        .decompress(body, &mut out)
        .map_err(corrupt)?;
    out.truncate(n);
    Ok(Bytes::from(out))
}

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
    // A frame that states its size larger than the limit is too large, said before
    // decoding: its window can be that large too, which the decoder refuses as "corrupt"
    // ("Frame requires too much memory"), where every other compression's bomb gets 413.
    if let Ok(Some(stated)) = zstd::zstd_safe::get_frame_content_size(body) {
        if stated > max as u64 {
            return Err(Refusal::too_large(
                format!(
                    "the zstd frame states {stated} decompressed bytes, over the limit of {max}"
                ),
                max,
            ));
        }
    }
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
            // The body ended inside a stream: cut short, or a few trailing bytes that
            // began to be read as the next stream's header.
            n if e.kind() == std::io::ErrorKind::UnexpectedEof => Refusal::Invalid(format!(
                "{what} body is corrupt after {n} good decompressed bytes: it ends inside a \
                 {what} stream (cut short in transit? or trailing bytes that are not one): {e}"
            )),
            // Most often bytes after a whole member that do not start another one.
            n => Refusal::Invalid(format!(
                "{what} body is corrupt after {n} good decompressed bytes (trailing bytes \
                 that are not a {what} stream?): {e}"
            )),
        })?;
    if out.len() > max {
        return Err(Refusal::too_large(
            format!("decompressed request body exceeds the limit of {max} bytes"),
            max,
        ));
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

    fn compressed(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        super::compress(encoding, &[Bytes::copy_from_slice(data)]).unwrap()
    }

    /// Scenario: 256 KiB of text-like bytes compressed by gzip, zlib and zstd at the
    /// Collector's `compression_params` levels.
    /// Guarantees: each output reads back whole; gzip and zlib level 0 store (larger than
    /// the input), 9 compresses more than the fastest; zstd 19 more than the fastest; a
    /// level out of zstd's range is clamped, not an error.
    #[test]
    fn levels_are_applied() {
        let data: Vec<u8> = (0..256u32 << 10)
            .map(|i| b"trace span resource scope attribute"[(i * 7 % 31) as usize % 35])
            .collect();
        let at = |e: Encoding, level: Option<i32>| {
            let out = compress_at(e, level, &[Bytes::copy_from_slice(&data)]).unwrap();
            assert_eq!(
                &decompress(e, &out, data.len()).unwrap()[..],
                &data[..],
                "{e:?} {level:?}"
            );
            out.len()
        };
        for e in [Encoding::Gzip, Encoding::Zlib] {
            assert!(at(e, Some(0)) > data.len(), "{e:?} stored");
            assert!(at(e, Some(9)) < at(e, None), "{e:?}");
            assert_eq!(
                at(e, Some(-2)),
                at(e, None),
                "{e:?}: Huffman-only is the fastest"
            );
        }
        assert!(at(Encoding::Zstd, Some(19)) < at(Encoding::Zstd, None));
        assert_eq!(at(Encoding::Zstd, Some(0)), at(Encoding::Zstd, None));
        at(Encoding::Zstd, Some(1000));
    }

    /// Scenario: 1 MiB of 4 KiB runs in each encoding (an eighth of that or less
    /// compressed), read with a limit of 64 KiB and of 1 MiB; the same bodies cut short,
    /// and bytes in no format.
    /// Guarantees: over the limit is `TooLarge` whatever the format (the output stops at
    /// the limit; a decoder's own window, up to 12 MiB for lz4, comes on top), at the limit
    /// the body is whole; a cut or foreign body is `Invalid` naming the format, never a
    /// panic.
    #[test]
    fn every_encoding_is_bounded_whole_and_checked() {
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i / 4096) as u8).collect();
        for encoding in Encoding::ALL {
            let name = encoding.name();
            let small = compressed(encoding, &data);
            assert!(small.len() < data.len() / 8, "{name}: {}", small.len());
            assert!(
                matches!(
                    decompress(encoding, &small, 64 << 10),
                    Err(Refusal::TooLarge { .. })
                ),
                "{name}"
            );
            let out = decompress(encoding, &small, 1 << 20).unwrap();
            assert!(out == data, "{name}");
            for cut in [small.len() / 2, 3] {
                let err = decompress(encoding, &small[..cut], 1 << 20)
                    .expect_err(&format!("{name} cut at {cut}"));
                assert!(
                    matches!(&err, Refusal::Invalid(m) if m.contains(name)),
                    "{name}: {err:?}"
                );
            }
            let err = decompress(encoding, b"not compressed at all", 1 << 20).unwrap_err();
            assert!(
                matches!(&err, Refusal::Invalid(m) if m.contains(name)),
                "{name}: {err:?}"
            );
        }
    }

    /// Scenario: `snappy` bodies in the block format and in the framed format (what the
    /// Collector's exporters sent under that name before v0.125, and its gRPC exporter
    /// sends); an `x-snappy-framed` body in the block format.
    /// Guarantees: `snappy` reads both; `x-snappy-framed` only the framed one.
    #[test]
    fn snappy_reads_blocks_and_frames_and_framed_snappy_only_frames() {
        let data = b"a span, a span, a span, a span".repeat(100);
        for body in [
            compressed(Encoding::Snappy, &data),
            compressed(Encoding::SnappyFramed, &data),
        ] {
            assert_eq!(
                &decompress(Encoding::Snappy, &body, 1 << 20).unwrap()[..],
                &data[..]
            );
        }
        let block = compressed(Encoding::Snappy, &data);
        // What each name writes: `snappy` a block, `x-snappy-framed` a stream.
        assert!(!block.starts_with(SNAPPY_STREAM_IDENTIFIER));
        assert_eq!(snap::raw::decompress_len(&block).unwrap(), data.len());
        assert!(compressed(Encoding::SnappyFramed, &data).starts_with(SNAPPY_STREAM_IDENTIFIER));
        assert!(matches!(
            decompress(Encoding::SnappyFramed, &block, 1 << 20),
            Err(Refusal::Invalid(_))
        ));
        // A block's header states its size: one over the limit is refused before any of
        // it is decompressed.
        let big = compressed(Encoding::Snappy, &vec![0; 100_000]);
        assert!(
            matches!(decompress(Encoding::Snappy, &big, 99_999), Err(Refusal::TooLarge { message: m, .. }) if m.contains("100000 bytes"))
        );
    }

    /// Scenario: the `Content-Encoding` and `grpc-encoding` values the Collector's
    /// exporters send, in other cases and with spaces, and values no receiver takes.
    /// Guarantees: each maps to its format; identity to none; the rest are refused.
    #[test]
    fn encoding_names_map_as_the_collector_sends_them() {
        let http = |v| Encoding::from_content_encoding(v);
        assert_eq!(http("gzip"), Ok(Some(Encoding::Gzip)));
        assert_eq!(http(" GZIP "), Ok(Some(Encoding::Gzip)));
        assert_eq!(http("zstd"), Ok(Some(Encoding::Zstd)));
        assert_eq!(http("zlib"), Ok(Some(Encoding::Zlib)));
        assert_eq!(http("deflate"), Ok(Some(Encoding::Zlib)));
        assert_eq!(http("snappy"), Ok(Some(Encoding::Snappy)));
        assert_eq!(http("x-snappy-framed"), Ok(Some(Encoding::SnappyFramed)));
        assert_eq!(http("lz4"), Ok(Some(Encoding::Lz4)));
        assert_eq!(http("identity"), Ok(None));
        assert_eq!(http(""), Ok(None));
        assert_eq!(http("br"), Err(UnsupportedEncoding("br".into())));
        assert!(http("gzip, zstd").is_err());
        let grpc = |v| Encoding::from_grpc_encoding(v);
        assert_eq!(grpc("gzip"), Ok(Some(Encoding::Gzip)));
        assert_eq!(grpc("zstd"), Ok(Some(Encoding::Zstd)));
        assert_eq!(grpc("snappy"), Ok(Some(Encoding::Snappy)));
        assert_eq!(grpc("deflate"), Ok(Some(Encoding::Zlib)));
        assert_eq!(grpc("identity"), Ok(None));
        assert_eq!(grpc("lz4"), Err(UnsupportedEncoding("lz4".into())));
        assert!(grpc("GZIP").is_err(), "gRPC encodings are matched exactly");
        // Every name `grpc-accept-encoding` lists is taken.
        for name in GRPC_ENCODINGS.split(',') {
            assert!(grpc(name).is_ok(), "{name}");
        }
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
        // A member cut short (its checksum trailer lost) is said to be cut short.
        let whole = gzip(&[b'a'; 300]);
        let cut = &whole[..whole.len() - 8];
        assert!(
            matches!(gunzip(cut, 1 << 20), Err(Refusal::Invalid(m)) if m.contains("ends inside a gzip stream")),
            "{:?}",
            gunzip(cut, 1 << 20)
        );
        // The output limit counts every member.
        let mut body = gzip(&[1; 600]);
        body.extend(gzip(&[2; 600]));
        assert!(matches!(
            gunzip(&body, 1_000),
            Err(Refusal::TooLarge { .. })
        ));
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

    /// Scenario: a zstd frame whose header states 16 GiB of content (a hostile trial's
    /// bomb, which the decoder refused as corrupt: its window is as large), and a real
    /// frame stating a size over the limit.
    /// Guarantees: both are too large (413 / RESOURCE_EXHAUSTED, as every other
    /// compression's bomb), not invalid; a frame within the limit still decodes.
    #[test]
    fn a_zstd_frame_stating_more_than_the_limit_is_too_large() {
        // Magic, then a single-segment frame with an 8-byte content size, then an empty
        // raw last block.
        let mut bomb = vec![0x28, 0xB5, 0x2F, 0xFD, 0xE0];
        bomb.extend_from_slice(&(16u64 << 30).to_le_bytes());
        bomb.extend_from_slice(&[0x01, 0x00, 0x00]);
        let real = zstd::bulk::compress(&[7u8; 4096], 3).unwrap();
        for body in [&bomb[..], &real[..]] {
            assert!(
                matches!(unzstd(body, 1024), Err(Refusal::TooLarge { .. })),
                "{:?}",
                unzstd(body, 1024).map(|b| b.len())
            );
        }
        assert_eq!(unzstd(&real, 4096).unwrap().len(), 4096);
    }
}
