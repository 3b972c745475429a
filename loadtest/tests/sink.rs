//! The `sink` command as a harness runs it: a process stopped with a signal.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Scenario: `tailgate-loadtest sink --report FILE`, with no duration, stopped with
/// SIGTERM (as `kill`, a harness or a container runtime stops it) once it says it listens.
/// Guarantees: it writes its report and exits with success, as it does on Ctrl-C (a docs
/// trial found it exited on SIGTERM with neither summary nor report).
#[test]
fn a_sink_stopped_with_sigterm_writes_its_report() {
    let dir = tailgate_core::test_util::scratch_dir("sink-sigterm").unwrap();
    let report = dir.join("report.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tailgate-loadtest"))
        .args([
            "sink",
            "--quiet",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its stderr, line by line, read on a thread so that every wait below is bounded.
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let listening = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("the sink said nothing");
    assert!(listening.starts_with("Sink listening"), "{listening}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let pid = child.id();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may have given up waiting; nothing to do then.
        done_tx.send(child.wait()).ok();
    });
    let status = match done.recv_timeout(Duration::from_secs(30)) {
        Ok(status) => status.unwrap(),
        Err(_) => {
            // Best effort: the assertion below says what went wrong.
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
            panic!("the sink did not stop on SIGTERM");
        }
    };
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&report).expect("a report");
    assert!(text.contains("\"spans\""), "{text}");
}
