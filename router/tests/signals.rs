#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The router binary survives SIGHUP (issue 14 item 11): it has nothing to reload, and a
//! hangup sent to a fleet must not take routers down; and SIGTERM ends it even when its
//! log has nowhere to go.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::logged::{config_file, Logged};

/// Scenario: a router process on loopback receives SIGHUP. Guarantees: it logs that it has
/// nothing to reload and keeps running; SIGTERM still ends it cleanly, saying it drained.
#[test]
fn sighup_does_not_end_the_router() {
    let (dir, config) = config_file(
        "sighup",
        "receive: { grpc: '127.0.0.61:0', http: null }\nmembers: { static: ['127.0.0.62:4317'] }\nadmin: null\nmetrics: null\n",
    );
    let mut router = Logged::spawn(
        Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
            .args(["--config".as_ref(), config.as_os_str()]),
    );
    router.wait_for("Router listening");
    let pid = router.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    router.wait_for("SIGHUP received");
    assert!(
        router.child.try_wait().unwrap().is_none(),
        "the router ended on SIGHUP"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // The drain's end is said, as the gateway says it (a trial read a clean router drain
    // as no closing line at all).
    router.wait_for("Drained");
    let status = router.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Scenario: a router whose stderr is a pipe nobody reads any more (a log shipper that
/// died) receives SIGTERM, and logs that it shuts down into the closed pipe.
/// Guarantees: it still drains and exits within its drain deadline (a docs audit found it
/// running on, ready, 20 s later: the failed log write panicked the shutdown task).
#[test]
fn sigterm_ends_the_router_when_its_log_pipe_is_closed() {
    let (dir, config) = config_file(
        "epipe",
        "receive: { grpc: '127.0.0.63:0', http: null }\nmembers: { static: ['127.0.0.64:4317'] }\nadmin: null\nmetrics: null\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailgate-router"))
        .args(["--config".as_ref(), config.as_os_str()])
        .args(["--drain-deadline", "2s"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = tokio::time::Instant::now();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("Router listening") => break,
            Some(Ok(_)) => assert!(started.elapsed() < Duration::from_secs(20), "not started"),
            other => panic!("the router's log ended before it listened: {other:?}"),
        }
    }
    // Close the read end: every later log line fails with EPIPE.
    drop(lines);
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if tokio::time::Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::fs::remove_dir_all(&dir).ok();
    let status = status.expect("still running 10 s after SIGTERM with a 2 s drain deadline");
    assert!(status.success(), "{status:?}");
}
