//! Any bytes through the wire scan: it must not panic, and whatever it accepts must
//! re-frame into a request prost decodes, span for span (`wire::oracle::scan_oracle`, the
//! same oracle the property tests in core/tests/wire_roundtrip.rs use).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = tailgate_core::wire::oracle::scan_oracle(data) {
        panic!("{difference}");
    }
});
