//! Scans one 512-span request (64 traces of 8 spans, 10 attributes per span) 200 times:
//! a fixed workload for counting the scan's instructions, which stay the same from run to
//! run on a noisy machine where timings do not (docs/benchmarks.md):
//!
//! ```text
//! cargo build --release -p tailgate-core --example scan_instructions
//! valgrind --tool=callgrind target/release/examples/scan_instructions
//! ```

use prost::Message;
use tailgate_core::test_util::FakeOtlp;
use tailgate_core::wire::Scan;

fn main() -> Result<(), tailgate_core::wire::ScanError> {
    let body = FakeOtlp::traces(64)
        .spans(8)
        .resources(3)
        .attrs(10)
        .build()
        .encode_to_vec();
    let mut scan = Scan::default();
    let mut spans = 0;
    for _ in 0..200 {
        scan.scan(&body)?;
        spans += scan.spans.len();
    }
    // What was scanned, so that the loop is not optimised away.
    std::process::exit(i32::from(spans != 200 * 512));
}
