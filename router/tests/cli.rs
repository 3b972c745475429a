#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The router binary's `--check`: what an operator runs before rolling a config out.

use std::process::Command;

/// Runs `tailgate-router --config <yaml> --check`: (exit code, stderr, stdout).
fn check(name: &str, yaml: &str) -> (Option<i32>, String, String) {
    let dir = std::env::temp_dir().join(format!("tailgate-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("router.yaml");
    std::fs::write(&config, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
        .args(["--check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Scenario: a config whose `receive.cors` lists headers but no origins (the Collector
/// ignores such a block with a warning). Guarantees: `--check` accepts it and prints the
/// warning, so the operator learns before the rollout that browsers will not be let in.
#[test]
fn check_prints_the_warnings_a_start_would_log() {
    let (code, stderr, stdout) = check(
        "cors",
        "receive: { cors: { allowed_headers: [x-api-key] } }\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "router.yaml: warning: receive.cors lists allowed_headers but no allowed_origins"
        ),
        "{stderr}"
    );
    assert!(!stdout.contains("warning"), "{stdout}");
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    let (code, stderr, stdout) = check(
        "plain",
        "receive: { cors: { allowed_origins: ['https://*.example.com'] } }\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // The verdict on stdout, for scripts; warnings and errors on stderr.
    assert!(stdout.ends_with("router.yaml: ok\n"), "{stdout}");
    assert!(!stderr.contains(": ok"), "{stderr}");
}

/// Scenario: a config with a misspelt key. Guarantees: `--check` exits 64 (EX_USAGE) and
/// names the file, the line and the key.
#[test]
fn check_names_the_file_line_and_key_of_an_error() {
    let (code, stderr, stdout) = check(
        "typo",
        "receive:\n  cors:\n    allowed_origin: ['*']\nmembers: { static: ['127.0.0.62:4317'] }\n",
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("router.yaml"), "{stderr}");
    assert!(stderr.contains("allowed_origin"), "{stderr}");
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
}
