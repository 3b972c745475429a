//! The lowest layer of the wire code: a bounds-checked cursor over protobuf bytes
//! (`Reader`) and the errors of reading them. [`crate::wire::scan`] and
//! [`crate::wire::validate`] both read with it; it depends on nothing else.

use std::ops::Range;

/// Why a body is not a well-formed `ExportTraceServiceRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// A length or varint runs past the end of its enclosing message.
    #[error("truncated {what} at byte {at}")]
    Truncated {
        /// The message or field being read.
        what: &'static str,
        /// Byte offset in the body.
        at: usize,
    },
    /// A varint longer than 10 bytes.
    #[error("malformed varint at byte {at}")]
    BadVarint {
        /// Byte offset in the body.
        at: usize,
    },
    /// A field with a wire type protobuf does not allow, or not the one OTLP defines.
    #[error(
        "field {field} of {what} has wire type {wire_type}, which is not valid here (byte {at})"
    )]
    BadWireType {
        /// The enclosing message.
        what: &'static str,
        /// Field number.
        field: u32,
        /// Wire type found.
        wire_type: u8,
        /// Byte offset in the body.
        at: usize,
    },
    /// A field number protobuf forbids: zero, or past the largest (2^29 - 1).
    #[error("invalid field number (0, or above 2^29 - 1) in {what} at byte {at}")]
    FieldZero {
        /// The enclosing message.
        what: &'static str,
        /// Byte offset in the body.
        at: usize,
    },
    /// The body is larger than the 4 GiB the scan's offsets can address.
    #[error("body of {0} bytes is too large to scan")]
    TooLarge(usize),
    /// A resource or scope header is not well-formed inside (see [`crate::wire::validate`]).
    #[error("{0}")]
    Malformed(Malformed),
}

/// What is wrong with a part of a request, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed {
    /// The field or message.
    pub what: &'static str,
    /// What is wrong with it.
    pub why: &'static str,
    /// Byte offset in the body.
    pub at: usize,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} (byte {})", self.what, self.why, self.at)
    }
}

impl From<ScanError> for Malformed {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Truncated { what, at } => Malformed {
                what,
                why: "is truncated",
                at,
            },
            ScanError::BadVarint { at } => Malformed {
                what: "varint",
                why: "is malformed",
                at,
            },
            ScanError::BadWireType { what, at, .. } => Malformed {
                what,
                why: "has a field with a wrong wire type",
                at,
            },
            ScanError::FieldZero { what, at } => Malformed {
                what,
                why: "has an invalid field number (0, or above 2^29 - 1)",
                at,
            },
            ScanError::Malformed(m) => m,
            ScanError::TooLarge(_) => Malformed {
                what: "request",
                why: "is too large",
                at: 0,
            },
        }
    }
}

pub(crate) const WT_VARINT: u8 = 0;
pub(crate) const WT_I64: u8 = 1;
pub(crate) const WT_LEN: u8 = 2;
pub(crate) const WT_I32: u8 = 5;
/// A group's start and end (proto2's groups, deprecated but valid protobuf): an unknown
/// field sent as a group is skipped to its end, as protobuf decoders (the Collector's
/// included) skip it.
pub(crate) const WT_SGROUP: u8 = 3;
pub(crate) const WT_EGROUP: u8 = 4;

/// The deepest nesting of groups skipped. prost stops at 100 nested messages and groups
/// together, and a group may sit in an attribute value already 86 messages deep (40
/// arrays inside the request, resource, scope, span and key-value), so that what the scan
/// accepts prost decodes. No sender nests groups at all.
pub(crate) const MAX_GROUP_DEPTH: u32 = 8;

/// The end of the group of `field` whose fields start at `pos` in `buf` (just past its
/// end tag), or `None` when it is not well-formed.
pub(crate) fn group_end(buf: &[u8], pos: usize, field: u32) -> Option<usize> {
    let mut r = Reader::new(buf, pos, buf.len());
    r.skip_group(field, pos, "group", 0).ok()?;
    Some(r.pos)
}

pub(crate) fn bad_wire(what: &'static str, field: u32, wire_type: u8, at: usize) -> ScanError {
    ScanError::BadWireType {
        what,
        field,
        wire_type,
        at,
    }
}

/// A cursor over `buf[pos..]`, where `buf` ends where the message being read ends, so
/// every bound check is the slice's own.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

// === impl Reader ===

impl<'a> Reader<'a> {
    #[inline]
    pub(crate) fn new(buf: &'a [u8], pos: usize, end: usize) -> Self {
        Reader {
            buf: &buf[..end],
            pos,
        }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads a varint. Tags and lengths are almost always one byte, and a span's length
    /// two; those paths are inlined.
    #[inline(always)]
    pub(crate) fn varint(&mut self, what: &'static str) -> Result<u64, ScanError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            Some(&b) => match self.buf.get(self.pos + 1) {
                Some(&c) if c < 0x80 => {
                    self.pos += 2;
                    Ok(u64::from(b & 0x7f) | u64::from(c) << 7)
                }
                _ => self.varint_slow(what),
            },
            None => self.varint_slow(what),
        }
    }

    #[inline(never)]
    pub(crate) fn varint_slow(&mut self, what: &'static str) -> Result<u64, ScanError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(ScanError::Truncated { what, at: start });
            };
            self.pos += 1;
            // The tenth byte holds the 64th bit only: anything more overflows u64, and
            // protobuf refuses it.
            if i == 9 && b > 1 {
                return Err(ScanError::BadVarint { at: start });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(ScanError::BadVarint { at: start })
    }

    /// Next tag, or `None` at the end. Returns field number, wire type and the tag's offset.
    #[inline(always)]
    pub(crate) fn tag(
        &mut self,
        what: &'static str,
    ) -> Result<Option<(u32, u8, usize)>, ScanError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.pos;
        let key = self.varint(what)?;
        let field = (key >> 3) as u32;
        if field == 0 || key >> 3 > u64::from(u32::MAX >> 3) {
            return Err(ScanError::FieldZero { what, at });
        }
        Ok(Some((field, (key & 7) as u8, at)))
    }

    #[inline(always)]
    pub(crate) fn len_delimited(&mut self, what: &'static str) -> Result<Range<usize>, ScanError> {
        let at = self.pos;
        let len = self.varint(what)?;
        if len > self.remaining() as u64 {
            return Err(ScanError::Truncated { what, at });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(start..self.pos)
    }

    /// The next field when it is a length-delimited one whose tag is the single byte
    /// `tag` and whose length fits in one byte (an attribute, nearly always): its range,
    /// read without the general tag and varint decoding. `None` (nothing read) otherwise,
    /// including for a length past the end, which the general path then reports.
    #[inline(always)]
    pub(crate) fn short_len_field(&mut self, tag: u8) -> Option<Range<usize>> {
        let (&[t, len], _) = self.buf.get(self.pos..)?.split_first_chunk::<2>()?;
        let start = self.pos + 2;
        let end = start + usize::from(len);
        if t != tag || len >= 0x80 || end > self.buf.len() {
            return None;
        }
        self.pos = end;
        Some(start..end)
    }

    #[inline]
    pub(crate) fn fixed64(&mut self, what: &'static str) -> Result<u64, ScanError> {
        let Some(bytes) = self.buf.get(self.pos..self.pos + 8) else {
            return Err(ScanError::Truncated { what, at: self.pos });
        };
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        self.pos += 8;
        Ok(u64::from_le_bytes(b))
    }

    #[inline(always)]
    pub(crate) fn skip(
        &mut self,
        field: u32,
        wt: u8,
        at: usize,
        what: &'static str,
    ) -> Result<(), ScanError> {
        match wt {
            WT_LEN => {
                self.len_delimited(what)?;
            }
            WT_VARINT => {
                self.varint(what)?;
            }
            WT_I64 => {
                self.fixed64(what)?;
            }
            WT_I32 => {
                if self.remaining() < 4 {
                    return Err(ScanError::Truncated { what, at: self.pos });
                }
                self.pos += 4;
            }
            WT_SGROUP => self.skip_group(field, at, what, 0)?,
            _ => {
                return Err(ScanError::BadWireType {
                    what,
                    field,
                    wire_type: wt,
                    at,
                })
            }
        }
        Ok(())
    }
}

impl Reader<'_> {
    /// Skips the fields of the group of `field` (started at byte `at`) through its end
    /// tag, nested groups included, at most [`MAX_GROUP_DEPTH`] deep.
    #[inline(never)]
    fn skip_group(
        &mut self,
        field: u32,
        at: usize,
        what: &'static str,
        depth: u32,
    ) -> Result<(), ScanError> {
        if depth >= MAX_GROUP_DEPTH {
            return Err(ScanError::Malformed(Malformed {
                what,
                why: "has groups nested too deep",
                at,
            }));
        }
        loop {
            let Some((inner, wt, inner_at)) = self.tag(what)? else {
                return Err(ScanError::Truncated { what, at });
            };
            match wt {
                WT_EGROUP if inner == field => return Ok(()),
                WT_SGROUP => self.skip_group(inner, inner_at, what, depth + 1)?,
                // An end without its start, or of another group.
                WT_EGROUP => return Err(bad_wire(what, inner, wt, inner_at)),
                _ => self.skip(inner, wt, inner_at, what)?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guarantees: one-, two- and longer varints read as prost writes them, the reader left
    /// just past each; a varint cut short after any byte is `Truncated`, not a value.
    #[test]
    fn varints_of_every_length_read_as_written() {
        let values = [0u64, 1, 127, 128, 300, 16_383, 16_384, 1 << 35, u64::MAX];
        for v in values {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(v, &mut buf);
            buf.push(0x7f); // a following byte that must not be read
            let end = buf.len() - 1;
            let mut r = Reader::new(&buf, 0, buf.len());
            assert_eq!(r.varint("v").ok(), Some(v), "{buf:?}");
            assert_eq!(r.pos, end);
            for cut in 1..end {
                let mut r = Reader::new(&buf[..cut], 0, cut);
                assert!(
                    matches!(r.varint("v"), Err(ScanError::Truncated { .. })),
                    "{v} cut at {cut}"
                );
            }
        }
        // Two bytes written the long way round (a zero second byte) read as protobuf does.
        let mut r = Reader::new(&[0x85, 0x00], 0, 2);
        assert_eq!(r.varint("v").ok(), Some(5));
    }
}
