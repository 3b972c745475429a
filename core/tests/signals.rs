//! The shutdown signal handler of both binaries, on this test process's own signals.

use std::time::Duration;

use tailgate_core::test_util::CapturedLog;
use tokio_util::sync::CancellationToken;

/// Sends `signal` (a `kill` name) to this process.
fn signal_self(signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill -{signal} failed");
}

/// Scenario: the handler is registered (as both binaries register it before they listen);
/// the process gets SIGINT (Ctrl-C), then a second one while it shuts down. SIGINT, not
/// SIGTERM: the test process's other tests register no handler for either, and the
/// handler, once registered, keeps either from ending the process.
/// Guarantees: the first cancels the shutdown token and is logged with what shutting down
/// means; the second is answered in the log (a trial's second SIGTERM during a drain met
/// silence) and changes nothing else.
#[tokio::test]
async fn a_second_signal_is_answered_in_the_log() {
    let (log, _installed) = CapturedLog::install();
    let shutdown = CancellationToken::new();
    tokio::spawn(tailgate_core::shutdown::on_signal(
        shutdown.clone(),
        "testing the handler",
    ));
    signal_self("INT");
    tokio::time::timeout(Duration::from_secs(10), shutdown.cancelled())
        .await
        .expect("the first signal cancels the shutdown token");
    signal_self("INT");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while log.count("Already shutting down (testing the handler)") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&log.text())
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(log.count("Shutting down: testing the handler."), 1);
}
