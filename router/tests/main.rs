//! The integration tests of this package, as modules of one test binary.
//!
//! Each test binary links every dependency (tonic, rustls, the OpenTelemetry SDK...), so one
//! binary per file made a fresh `cargo test --workspace` write tens of test binaries and run
//! out of disk on a CI machine; one binary per package links once. A file in this folder
//! that is not named below is not compiled: `every_test_file_is_compiled` fails until it is.

mod accept;
mod cli;
mod dns_discovery;
mod forwarding;
mod logged;
mod signals;
mod tls;

/// Scenario: the `.rs` files in `tests/`.
/// Guarantees: each is a module of this binary (or its own test target in Cargo.toml), so a
/// new test file cannot be left out of `cargo test` unnoticed.
#[test]
fn every_test_file_is_compiled() {
    tailgate_core::test_util::assert_test_files_are_modules(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        include_str!("main.rs"),
        &[],
    );
}
