//! The `sink` command as a harness runs it: a process stopped with a signal.

use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// Scenario: `tailgate-loadtest sink --report FILE`, with no duration, stopped with
/// SIGTERM (as `kill`, a harness or a container runtime stops it).
/// Guarantees: it writes its report and exits with success, as it does on Ctrl-C (a docs
/// trial found it exited on SIGTERM with neither summary nor report).
#[test]
fn a_sink_stopped_with_sigterm_writes_its_report() {
    let dir = tailgate_core::test_util::scratch_dir("sink-sigterm").unwrap();
    let report = dir.join("report.json");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = listener.local_addr().unwrap();
    drop(listener);
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailgate-loadtest"))
        .args([
            "sink",
            "--quiet",
            "--grpc",
            &grpc.to_string(),
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(grpc).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "sink never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sink did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&report).expect("a report");
    assert!(text.contains("\"spans\""), "{text}");
}
