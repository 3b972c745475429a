//! Shutdown signals for the binaries: SIGTERM (what Kubernetes sends) or Ctrl-C cancel a
//! token that every component watches. SIGHUP, which would end a process that does not
//! handle it, is taken by the gateway to reload its policies and by the router
//! ([`hangup_ignored`]) to say it has nothing to reload.

use tokio_util::sync::CancellationToken;

/// Takes SIGTERM and SIGINT (Ctrl-C) from now on (registered before this returns, so a
/// signal sent after it, even before the returned future first runs, cannot end the
/// process undrained); the future waits for one, logs `what` (what shutting down means
/// for this component) and cancels `shutdown`, then says of each later signal that it
/// changes nothing (the future never completes: spawn it). Where a signal cannot be registered, it is
/// logged and the future waits for the other.
pub fn on_signal(
    shutdown: CancellationToken,
    what: &'static str,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let registered = |kind: SignalKind, name: &'static str| match signal(kind) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot listen for {name}.");
            None
        }
    };
    let mut term = registered(SignalKind::terminate(), "SIGTERM");
    let mut int = registered(SignalKind::interrupt(), "SIGINT");
    async move {
        loop {
            tokio::select! {
                () = next(&mut term) => {}
                () = next(&mut int) => {}
            }
            if shutdown.is_cancelled() {
                // Later signals change nothing (the drain keeps its deadline; SIGKILL ends
                // it at once): said, so a second Ctrl-C or SIGTERM is not met with silence.
                tracing::info!("Already shutting down ({what}); another signal does not hasten it: the drain ends by its deadline (--drain-deadline), or at once with SIGKILL.");
            } else {
                tracing::info!("Shutting down: {what}.");
                shutdown.cancel();
            }
        }
    }
}

/// The next delivery of `signal`; never, without one (or once its stream has ended, so
/// that a loop over it cannot spin).
async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
    let delivered = match signal {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !delivered {
        std::future::pending::<()>().await;
    }
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
