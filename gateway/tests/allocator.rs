//! The gateway binary allocates through jemalloc (feature `jemalloc`, on by default), and
//! operators tune it through `_RJEM_MALLOC_CONF`, as docs/operations.md says.
#![cfg(all(feature = "jemalloc", not(target_env = "msvc")))]

use std::process::Command;

/// Scenario: the binary started with an invalid jemalloc option and `abort_conf`, then
/// with a valid one.
/// Guarantees: jemalloc reads `_RJEM_MALLOC_CONF` (it refuses the bad pair by name and
/// aborts), so the binary runs on it; a valid setting starts normally; `MALLOC_CONF` is
/// not read.
#[test]
fn the_binary_runs_on_jemalloc_tuned_through_rjem_malloc_conf() {
    let run_with = |var: &str, conf: &str| {
        Command::new(env!("CARGO_BIN_EXE_tailgate-gateway"))
            .arg("--version")
            .env(var, conf)
            .output()
            .expect("the gateway binary starts")
    };
    let run = |conf: &str| run_with("_RJEM_MALLOC_CONF", conf);
    let bad = run("abort_conf:true,no_such_option:1");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("<jemalloc>: Invalid conf pair: no_such_option:1"),
        "{stderr}"
    );

    let good = run("abort_conf:true,dirty_decay_ms:1000");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).starts_with("tailgate-gateway "));

    // The unprefixed variable is not jemalloc's here (its symbols are prefixed).
    let plain = run_with("MALLOC_CONF", "abort_conf:true,no_such_option:1");
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
}
