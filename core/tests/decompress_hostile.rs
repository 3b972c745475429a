#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Request decompression against hostile bytes: whatever a sender puts in a body under any
//! encoding the receivers take, decompressing it answers (a body within the limit, or a
//! refusal) and never panics or returns more than the limit.

use proptest::prelude::*;
use tailgate_core::receive::compress::{decompress, Encoding};
use tailgate_core::receive::status::Refusal;
use tailgate_core::test_util::compressed;

/// The output limit the properties decompress under.
const MAX: usize = 64 << 10;

/// Decompresses `body` as `encoding` and checks the answer's shape: a body within the
/// limit, or a refusal that is `Invalid` naming the encoding or `TooLarge`.
fn answers(encoding: Encoding, body: &[u8]) {
    match decompress(encoding, body, MAX) {
        Ok(b) => assert!(b.len() <= MAX, "{encoding:?}: {} bytes", b.len()),
        Err(Refusal::Invalid(m)) => assert!(m.contains(encoding.name()), "{m}"),
        Err(Refusal::TooLarge { .. }) => {}
        Err(other) => panic!("{encoding:?}: unexpected refusal {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Scenario: arbitrary bytes under every encoding.
    /// Guarantees: an answer, never a panic, never more than the limit.
    #[test]
    fn arbitrary_bytes_get_an_answer(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for encoding in Encoding::ALL {
            answers(encoding, &body);
        }
    }

    /// Scenario: a valid body in every encoding, then one byte of it changed, or the body
    /// cut, or bytes appended (what corruption or a crafted body looks like: the framing
    /// stays mostly right, so the decoders get deep into it).
    /// Guarantees: an answer, never a panic, never more than the limit; the unchanged body
    /// decompresses to the original.
    #[test]
    fn damaged_bodies_get_an_answer(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        tail in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        for encoding in Encoding::ALL {
            let good = compressed(encoding, &data);
            prop_assert_eq!(&decompress(encoding, &good, MAX).unwrap()[..], &data[..]);
            if good.is_empty() {
                // Framed snappy of nothing is nothing: no byte to damage.
                continue;
            }
            let mut changed = good.clone();
            let i = at.index(changed.len());
            changed[i] ^= byte | 1;
            answers(encoding, &changed);
            answers(encoding, &good[..cut.index(good.len())]);
            let mut longer = good.clone();
            longer.extend_from_slice(&tail);
            answers(encoding, &longer);
        }
    }
}
