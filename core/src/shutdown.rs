//! Shutdown signals for the binaries: SIGTERM (what Kubernetes sends) or Ctrl-C cancel a
//! token that every component watches. SIGHUP, which would end a process that does not
//! handle it, is taken by the gateway to reload its policies and by the router
//! ([`hangup_ignored`]) to say it has nothing to reload.

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

/// Takes SIGHUP from now on (registered before this returns, so a SIGHUP sent after it
/// cannot end the process) and logs `what` for each: for a component with nothing to
/// reload, a hangup must not be fatal (`kill -HUP` to a fleet, `pkill -HUP tailgate`).
pub fn hangup_ignored(
    what: &'static str,
) -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: {what}.");
        }
    })
}
