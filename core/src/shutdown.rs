//! Shutdown signals for the binaries: SIGTERM (what Kubernetes sends) or Ctrl-C cancel a
//! token that every component watches.

use tokio_util::sync::CancellationToken;

/// Waits for SIGTERM or Ctrl-C, logs `what` (what shutting down means for this component)
/// and cancels `shutdown`.
pub async fn on_signal(shutdown: CancellationToken, what: &'static str) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for SIGTERM.");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("Shutting down: {what}.");
    shutdown.cancel();
}
