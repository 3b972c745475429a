//! Any bytes through the OTLP/JSON transcoder: it must not panic, and what it writes must
//! decode with prost and be no larger than the JSON (`wire::oracle::json_oracle`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = tailgate_core::wire::oracle::json_oracle(data) {
        panic!("{difference}");
    }
});
