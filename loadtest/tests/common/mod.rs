#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! What several of this package's integration tests share (each test file uses a part).
#![allow(dead_code)]

use std::path::PathBuf;

/// The workspace's binaries next to this package's (as `cargo test --workspace` builds
/// them); built here when a narrower `cargo test -p` did not.
pub(crate) fn binaries() -> (PathBuf, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_BIN_EXE_tailgate-loadtest"))
        .parent()
        .unwrap()
        .to_path_buf();
    let (gateway, router) = (dir.join("tailgate-gateway"), dir.join("tailgate-router"));
    if !gateway.exists() || !router.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "tailgate-gateway", "-p", "tailgate-router"])
            .status()
            .unwrap();
        assert!(status.success(), "building the binaries failed");
    }
    (gateway, router)
}

/// Whether a tool a test needs is absent (`present` is false): outside CI the test prints
/// `SKIPPED: {what}` and passes; under `CI=true` it fails, since the project's scripts
/// install every such tool.
pub(crate) fn missing(present: bool, what: &str) -> bool {
    if present {
        return false;
    }
    assert!(std::env::var("CI").is_err(), "missing under CI: {what}");
    eprintln!("SKIPPED: {what}");
    true
}

/// The command for a Python tool (`python3`, `kubernetes-validate`): the one in `.ci/venv`,
/// where `.ci/python-sdk` installs the tools when the system's Python takes no packages
/// (PEP 668), else the one on `PATH`.
pub(crate) fn python_tool(name: &str) -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/venv/bin");
    let own = venv.join(name);
    if own.exists() {
        own
    } else {
        PathBuf::from(name)
    }
}
