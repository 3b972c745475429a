//! The `sink` and `run` commands as a harness runs them: processes stopped with a signal.
#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly

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
    let child = Command::new(env!("CARGO_BIN_EXE_tailgate-loadtest"))
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
    let (status, _) = stop_with_sigterm(child, "Sink listening");
    assert!(status.success(), "{status:?}");
    let text = std::fs::read_to_string(&report).expect("a report");
    assert!(text.contains("\"spans\""), "{text}");
}

/// Scenario: `tailgate-loadtest run` for a minute against a port nobody listens on (every
/// request fails and is retried), stopped with SIGTERM once it says it is sending.
/// Guarantees: it stops at once with its summary, saying it was stopped (a trial's run
/// went on well past its duration while refused, and a signal printed nothing).
#[test]
fn a_run_stopped_with_sigterm_prints_its_summary() {
    // A port bound and closed again: nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_tailgate-loadtest"))
        .args(["run", "--duration", "60s", "--rate", "1000", "--target"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, stdout) = stop_with_sigterm(child, "Sending");
    assert!(stdout.contains("stopped early by a signal"), "{stdout}");
    assert!(stdout.contains("sent "), "{stdout}");
    // It exited itself, not killed by the signal.
    assert!(status.code().is_some(), "{status:?}");
}

/// Waits for `child`'s first stderr line (it must start with `first`), sends it SIGTERM
/// and waits for it to exit, each within a bound; returns its status and stdout.
fn stop_with_sigterm(
    mut child: std::process::Child,
    first: &str,
) -> (std::process::ExitStatus, String) {
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
    let line = lines
        .recv_timeout(Duration::from_secs(20))
        .expect("it said nothing");
    assert!(line.starts_with(first), "{line}");
    let pid = child.id();
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may have given up waiting; nothing to do then.
        done_tx.send(child.wait_with_output()).ok();
    });
    match done.recv_timeout(Duration::from_secs(30)) {
        Ok(output) => {
            let output = output.unwrap();
            (
                output.status,
                String::from_utf8_lossy(&output.stdout).into_owned(),
            )
        }
        Err(_) => {
            // Best effort: the panic below says what went wrong.
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
            panic!("it did not stop on SIGTERM");
        }
    }
}
