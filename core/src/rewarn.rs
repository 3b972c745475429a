//! Warnings given at most once a minute: when a repeated warning may be given again
//! ([`warn_again`]) and what happened since the last one ([`Tally`]). A leaf module, so
//! that the accept loop ([`crate::serve`]) can use it below the modules that serve
//! (retries, telemetry).

use std::time::Duration;

/// Least time between two warnings of a failing endpoint whose error changed (also of an
/// exporter whose backend refuses its credentials).
pub const REWARN_AFTER: Duration = Duration::from_secs(60);

/// Whether a warning last given at `warned_at` may be given again now (then noted as
/// given): once per [`REWARN_AFTER`] at most.
pub fn warn_again(warned_at: &mut Option<tokio::time::Instant>) -> bool {
    let due = warned_at.is_none_or(|at| at.elapsed() >= REWARN_AFTER);
    if due {
        *warned_at = Some(tokio::time::Instant::now());
    }
    due
}

/// What happened since a warning about it was last given, for warnings given at most
/// once per [`REWARN_AFTER`] with the count since ([`warn_again`]).
#[derive(Debug, Default)]
pub struct Tally {
    warned_at: Option<tokio::time::Instant>,
    since: u64,
}

impl Tally {
    /// Counts `n` more; the count to warn with (then started again) when a warning is due.
    pub fn add(&mut self, n: u64) -> Option<u64> {
        self.since += n;
        warn_again(&mut self.warned_at).then(|| std::mem::take(&mut self.since))
    }

    /// [`Tally::add`] of one to a shared tally (a poisoned lock still counts).
    pub fn one_more(tally: &std::sync::Mutex<Tally>) -> Option<u64> {
        Tally::more(tally, 1)
    }

    /// [`Tally::add`] of `n` to a shared tally (a poisoned lock still counts).
    pub fn more(tally: &std::sync::Mutex<Tally>, n: u64) -> Option<u64> {
        tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(n)
    }
}
