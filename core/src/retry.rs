//! The one retry loop of every client that sends data on: the router's forwarders, the
//! gateway's peer clients and its exporters (OTLP/gRPC and OTLP/HTTP). Exponential back-off
//! with jitter, the server's own hint when it gives one (gRPC `RetryInfo`, HTTP
//! `Retry-After`), and a time bound, `max_elapsed_time`.
//!
//! Callers say what one attempt came to ([`Attempt`]); the loop decides whether and when to
//! try again. A client's [`RetryStats`] count retries and give-ups and say whether its
//! endpoint is failing right now; the loop logs when an endpoint starts failing and when
//! it takes requests again, once per outage rather than once per request.
//!
//! Holding instead of giving up: a caller that has room to keep data (the gateway's
//! exporters, within their byte budget) passes [`Retrier::hold_while`]. Past
//! `max_elapsed_time` such a request is given up only when the hold says the data is
//! costing someone else (upstream senders are being refused); until then it keeps being
//! retried, so an outage of the backend loses nothing before the gateway has pushed back.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::telemetry::Counter;

/// Retry behaviour of a client. Read with the keys of the Collector's `retry_on_failure`
/// too (`enabled`, `multiplier`, `randomization_factor`), so that an exporter block copied
/// from a Collector config loads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(try_from = "RawRetry")]
pub struct RetryConfig {
    /// First back-off. Default 100ms.
    pub initial_interval: Duration,
    /// Largest back-off. Default 5s.
    pub max_interval: Duration,
    /// Give up after this long; the data is then failed. `0` never gives up, as in the
    /// Collector's `retry_on_failure`. Default 30s.
    pub max_elapsed_time: Duration,
}

/// [`RetryConfig`] as written: its keys, and the rest of the Collector's
/// `retry_on_failure` block. `enabled: false` means one attempt, no retry (a
/// `max_elapsed_time` of [`NO_RETRY`]); `multiplier` and `randomization_factor` are checked and
/// not applied: the back-off doubles, with ±25% jitter (docs/configuration.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    #[serde(default = "default_enabled")]
    enabled: bool,
    #[serde(default, with = "crate::config::duration::option")]
    initial_interval: Option<Duration>,
    #[serde(default, with = "crate::config::duration::option")]
    max_interval: Option<Duration>,
    #[serde(default, with = "crate::config::duration::option")]
    max_elapsed_time: Option<Duration>,
    #[serde(default)]
    multiplier: Option<f64>,
    #[serde(default)]
    randomization_factor: Option<f64>,
}

fn default_enabled() -> bool {
    true
}

/// The `max_elapsed_time` of `enabled: false`: one attempt, given up even while a caller
/// would hold it ([`Retrier::hold_while`]): the writer asked for no retry.
pub const NO_RETRY: Duration = Duration::from_nanos(1);

impl TryFrom<RawRetry> for RetryConfig {
    type Error = String;

    fn try_from(raw: RawRetry) -> Result<Self, String> {
        // The Collector's `BackOffConfig.Validate` (v0.161): factors in range, and a time
        // bound not shorter than the waits it bounds, checked where both are written (the
        // defaults are not the Collector's, nor the same in every place it has the block:
        // `max_interval: 60s` alone loads there, and must here). Messages name the block
        // and the key (`config::named_sub_key`), so that an error finds its line.
        if raw.multiplier.is_some_and(|m| !(m >= 0.0 && m.is_finite())) {
            return Err("retry: `multiplier` must be a number, at least 0".into());
        }
        if raw
            .randomization_factor
            .is_some_and(|r| !(0.0..=1.0).contains(&r))
        {
            return Err("retry: `randomization_factor` must be between 0 and 1".into());
        }
        if let Some(bound) = raw.max_elapsed_time.filter(|b| !b.is_zero()) {
            for (key, interval) in [
                ("initial_interval", raw.initial_interval),
                ("max_interval", raw.max_interval),
            ] {
                if let Some(interval) = interval.filter(|i| bound < *i) {
                    return Err(format!(
                        "retry: `max_elapsed_time` ({bound:?}) must not be less than {key} ({interval:?})"
                    ));
                }
            }
        }
        if raw.multiplier.is_some() || raw.randomization_factor.is_some() {
            tracing::warn!(
                multiplier = ?raw.multiplier,
                randomization_factor = ?raw.randomization_factor,
                "Retry multiplier and randomization_factor are checked and not applied: the back-off doubles, with ±25% jitter (docs/configuration.md)."
            );
        }
        Ok(RetryConfig {
            initial_interval: raw.initial_interval.unwrap_or_else(default_initial),
            max_interval: raw.max_interval.unwrap_or_else(default_max_interval),
            // One attempt: out of time before any wait.
            max_elapsed_time: if raw.enabled {
                raw.max_elapsed_time.unwrap_or_else(default_max_elapsed)
            } else {
                NO_RETRY
            },
        })
    }
}

fn default_initial() -> Duration {
    Duration::from_millis(100)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_elapsed() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_interval: default_initial(),
            max_interval: default_max_interval(),
            max_elapsed_time: default_max_elapsed(),
        }
    }
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// Delivered.
    Done(T),
    /// Not delivered, and worth trying again, after `after` when the server said so.
    Retry {
        /// What went wrong.
        error: E,
        /// The server's retry hint.
        after: Option<Duration>,
    },
    /// Refused for good: trying again would not help.
    Fail(E),
}

/// Why a request was not delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed<E> {
    /// The endpoint refused it for good.
    Rejected(E),
    /// Still failing when the time bound ran out.
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's error.
        last: E,
    },
}

/// A client's retry counters, shared by its concurrent requests.
#[derive(Debug, Default)]
pub struct RetryStats {
    /// Attempts after a first one failed.
    pub retries: Counter,
    /// Requests given up after the time bound.
    pub gave_up: Counter,
    /// Attempts with data that got no answer in time: the endpoint may have taken the data
    /// all the same, so what is sent again may arrive twice.
    pub unanswered: Counter,
    failing: AtomicBool,
    /// Whether the current failing spell was announced (see `Retrier::failed`).
    announced: AtomicBool,
    /// The error last logged while failing, and when: a failing endpoint's error that
    /// changes (a refused connection, then a certificate the client does not trust once
    /// the backend is up) is logged again, at most once per [`REWARN_AFTER`].
    warned: std::sync::Mutex<Option<(String, tokio::time::Instant)>>,
}

pub use crate::rewarn::{warn_again, Tally, REWARN_AFTER};

impl RetryStats {
    /// Whether the endpoint is failing: its last attempt failed and was worth retrying.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

/// Longest wait a server's retry hint can ask for between two attempts.
pub const MAX_HINT: Duration = Duration::from_secs(60);

/// Where a request stands against its time bound.
enum Bound {
    /// Within `max_elapsed_time`.
    Within,
    /// Past it, kept by the hold.
    Held,
    /// Past it: give it up.
    Over,
}

/// Says, past the time bound, whether to keep holding a request (`true`) or give it up.
pub type Hold = Arc<dyn Fn() -> bool + Send + Sync>;

/// The retry loop of one client (one endpoint).
#[derive(Clone)]
pub struct Retrier {
    config: RetryConfig,
    endpoint: Arc<str>,
    hold: Option<Hold>,
    stats: Arc<RetryStats>,
}

impl std::fmt::Debug for Retrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retrier")
            .field("config", &self.config)
            .field("endpoint", &self.endpoint)
            .field("holds", &self.hold.is_some())
            .finish_non_exhaustive()
    }
}

// === impl Retrier ===

impl Retrier {
    /// A loop for requests to `endpoint` (named in its log lines).
    pub fn new(config: RetryConfig, endpoint: &str) -> Self {
        Retrier {
            config,
            endpoint: endpoint.into(),
            hold: None,
            stats: Arc::default(),
        }
    }

    /// Past `max_elapsed_time`, a request is given up only once `hold` returns false.
    pub fn hold_while(mut self, hold: Hold) -> Self {
        self.hold = Some(hold);
        self
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RetryStats> {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &RetryConfig {
        &self.config
    }

    /// Calls `attempt` until it is done, refused for good, or out of time. Returns the
    /// result with the number of attempts it took.
    pub async fn run<T, E, F, Fut>(&self, attempt: F) -> Result<(T, u32), Failed<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
        E: std::fmt::Display,
    {
        self.run_holding(attempt, |_| true).await
    }

    /// [`Retrier::run`], where the hold ([`Retrier::hold_while`]) keeps a request past
    /// `max_elapsed_time` only while its last error is one `holds_for` accepts (the router
    /// holds parts a gateway refuses for memory, and gives up on other errors as before).
    pub async fn run_holding<T, E, F, Fut>(
        &self,
        mut attempt: F,
        holds_for: impl Fn(&E) -> bool,
    ) -> Result<(T, u32), Failed<E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
        E: std::fmt::Display,
    {
        let start = Instant::now();
        let mut held_at = None;
        let mut backoff = self.config.initial_interval.max(MIN_BACKOFF);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let (error, after) = match attempt().await {
                Attempt::Done(v) => {
                    self.took(start);
                    return Ok((v, attempts));
                }
                Attempt::Fail(e) => return Err(Failed::Rejected(e)),
                Attempt::Retry { error, after } => (error, after),
            };
            // A server's hint is honoured up to MAX_HINT, so that a holding caller looks
            // again at whether to keep holding, and no hint can overflow the clock; never
            // below the back-off, as the Collector's exporter helper does (max of the two):
            // a hint of 0, or a Retry-After date already past (clock skew), must not turn
            // retries into a tight loop.
            let wait = jitter(backoff)
                .max(MIN_BACKOFF)
                .max(after.map_or(Duration::ZERO, |hint| hint.min(MAX_HINT)));
            // An error the hold covers is timed from the first attempt; one it does not
            // cover, from the last time the hold kept the request (a gateway that refused
            // for memory for minutes and then times out once still gets the whole bound
            // before its part is given up).
            let holdable = holds_for(&error);
            let from = if holdable {
                start
            } else {
                held_at.unwrap_or(start)
            };
            let bound = self.bound(from, wait, holdable);
            // Not said to be retried when it is not (a timeout longer than the bound: a
            // trial saw "retrying" and "giving up" in the same millisecond).
            self.failed(&error, !matches!(bound, Bound::Over), after.is_some());
            match bound {
                Bound::Within => {}
                Bound::Held => held_at = Some(Instant::now()),
                Bound::Over => {
                    self.stats.gave_up.add(1);
                    tracing::warn!(endpoint = %self.endpoint, attempts, %error, "Giving up on a request after its retry time.");
                    return Err(Failed::GaveUp {
                        attempts,
                        last: error,
                    });
                }
            }
            self.stats.retries.add(1);
            tracing::debug!(endpoint = %self.endpoint, %error, ?wait, "Retrying.");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(self.config.max_interval.max(MIN_BACKOFF));
        }
    }

    /// Whether a request timed from `from` may wait `wait` more: within its bound, kept
    /// past it by the hold (its last error is `holdable`), or over.
    fn bound(&self, from: Instant, wait: Duration, holdable: bool) -> Bound {
        let max = self.config.max_elapsed_time;
        if max == NO_RETRY {
            return Bound::Over;
        }
        if max.is_zero() || from.elapsed().saturating_add(wait) <= max {
            return Bound::Within;
        }
        match &self.hold {
            Some(hold) if holdable && hold() => Bound::Held,
            _ => Bound::Over,
        }
    }

    /// Notes a failed attempt (`retrying` it, or about to give it up; `hinted`: the
    /// endpoint said when to come back), warning as the failing spell goes.
    fn failed(&self, error: &dyn std::fmt::Display, retrying: bool, hinted: bool) {
        let failing = match (retrying, hinted) {
            // A refusal with a retry hint is an endpoint up and pushing back (a buffer
            // full, a restart): "failing" read as down in a trial's log.
            (true, true) => {
                "Endpoint pushes back (refused with a hint to retry later); retrying after its hint."
            }
            (true, false) => "Endpoint is failing; retrying with back-off.",
            (false, _) => "Endpoint is failing.",
        };
        let error = error.to_string();
        let now = tokio::time::Instant::now();
        let mut warned = self
            .stats
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let recently = |warned: &Option<(String, Instant)>| {
            warned
                .as_ref()
                .is_some_and(|(_, at)| now.duration_since(*at) < REWARN_AFTER)
        };
        if !self.stats.failing.swap(true, Ordering::Relaxed) {
            // An endpoint that flaps (a gateway refusing some requests for memory and
            // taking others) starts a failing spell at every refusal after a success:
            // announced once per REWARN_AFTER, not several times a second.
            let quiet = recently(&warned);
            self.stats.announced.store(!quiet, Ordering::Relaxed);
            if quiet {
                tracing::debug!(endpoint = %self.endpoint, %error, "Endpoint is failing again; retrying with back-off.");
            } else {
                if self.config.max_elapsed_time == NO_RETRY {
                    tracing::warn!(endpoint = %self.endpoint, %error, "Endpoint is failing; not retried (retry_on_failure.enabled: false).");
                } else {
                    tracing::warn!(endpoint = %self.endpoint, %error, max_elapsed_time = ?self.config.max_elapsed_time, "{failing}");
                }
                *warned = Some((error, now));
            }
        } else if !self.stats.announced.load(Ordering::Relaxed) && !recently(&warned) {
            // A spell that began quietly and lasts: announced once the last warning is
            // REWARN_AFTER old, so a lasting outage is never silent.
            self.stats.announced.store(true, Ordering::Relaxed);
            tracing::warn!(endpoint = %self.endpoint, %error, max_elapsed_time = ?self.config.max_elapsed_time, "{failing}");
            *warned = Some((error, now));
        } else if warned
            .as_ref()
            .is_none_or(|(last, at)| *last != error && now.duration_since(*at) >= REWARN_AFTER)
        {
            tracing::warn!(endpoint = %self.endpoint, %error, "Endpoint is still failing, now with another error.");
            *warned = Some((error, now));
        }
    }

    fn took(&self, start: Instant) {
        // Every delivered request comes here: no lock unless a failing spell is to end.
        if !self.stats.failing.load(Ordering::Relaxed) {
            return;
        }
        // Under the lock `failed` takes, so that a spell it starts meanwhile keeps its flag.
        let warned = self
            .stats
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.stats.failing.swap(false, Ordering::Relaxed)
            && self.stats.announced.swap(false, Ordering::Relaxed)
        {
            // Timed from the warning that announced the failing spell (or, for one that
            // lasted, the last reminder): the request that got through may have been
            // sent long after the spell began.
            let since_warning = warned.as_ref().map(|(_, at)| at.elapsed());
            tracing::info!(endpoint = %self.endpoint, ?since_warning, request_took = ?start.elapsed(), "Endpoint takes requests again.");
        }
    }
}

/// The shortest back-off between attempts, whatever `initial_interval` and `max_interval`
/// say: written as 0 (which the Collector reads as retrying without pause), retries would
/// be a tight loop against a failing backend (a black-box check saw 1,550 attempts in
/// 4 s).
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// `d` spread by ±25%, so that many clients retrying together do not stay in step.
pub fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn config(max_elapsed: Duration) -> RetryConfig {
        RetryConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(1),
            max_elapsed_time: max_elapsed,
        }
    }

    /// An attempt that fails retryably until `ok_from` tries have been made.
    async fn attempt(tries: &AtomicU32, ok_from: u32) -> Attempt<u32, String> {
        let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= ok_from {
            Attempt::Done(n)
        } else {
            Attempt::Retry {
                error: format!("down ({n})"),
                after: None,
            }
        }
    }

    /// Scenario: an attempt that fails after longer than the retry bound (no answer
    /// within 5 s against a 3 s bound, as a gateway's peer clients are set), on a paused
    /// clock, its log read back.
    /// Guarantees: given up after one attempt, and the log does not say it is retried (a
    /// trial saw "retrying with back-off" and "giving up" in the same millisecond).
    #[tokio::test(start_paused = true)]
    async fn a_failure_past_the_bound_is_not_said_to_be_retried() {
        let (log, _installed) = crate::test_util::CapturedLog::install();
        let r = Retrier::new(config(Duration::from_secs(3)), "peer");
        let out: Result<((), u32), _> = r
            .run(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Attempt::Retry {
                    error: "no answer within 5s".to_owned(),
                    after: None,
                }
            })
            .await;
        assert!(
            matches!(out, Err(Failed::GaveUp { attempts: 1, .. })),
            "{out:?}"
        );
        let text = String::from_utf8_lossy(&log.text()).into_owned();
        assert!(text.contains("Endpoint is failing."), "{text}");
        assert!(text.contains("Giving up"), "{text}");
        assert!(!text.contains("retrying"), "{text}");
    }

    /// Scenario: an endpoint refusing with a retry hint (a gateway's buffer full), then
    /// taking the request, on a paused clock, its log read back.
    /// Guarantees: the log says it pushes back, not that it is failing (a trial read
    /// "failing" as down for a gateway that was up and full).
    #[tokio::test(start_paused = true)]
    async fn a_refusal_with_a_hint_is_logged_as_push_back() {
        let (log, _installed) = crate::test_util::CapturedLog::install();
        let r = Retrier::new(config(Duration::from_secs(30)), "gateway");
        let mut tries = 0;
        let out: Result<((), u32), _> = r
            .run(|| {
                tries += 1;
                let first = tries == 1;
                async move {
                    if first {
                        Attempt::Retry {
                            error: "gateway buffer is over its limit".to_owned(),
                            after: Some(Duration::from_secs(1)),
                        }
                    } else {
                        Attempt::Done(())
                    }
                }
            })
            .await;
        assert!(matches!(out, Ok(((), 2))), "{out:?}");
        assert_eq!(log.count("Endpoint pushes back"), 1);
        assert_eq!(log.count("Endpoint is failing"), 0);
    }

    /// Scenario: a backend answers every try with a retry hint of zero (a `Retry-After`
    /// date already past, from clock skew), for 3 s of retries.
    /// Guarantee: the waits are still the back-off's (the longer of hint and back-off, as
    /// the Collector's exporter helper): a handful of tries, not a tight loop.
    #[tokio::test(start_paused = true)]
    async fn a_zero_hint_does_not_shorten_the_back_off() {
        let r = Retrier::new(config(Duration::from_secs(3)), "backend");
        let tries = AtomicU32::new(0);
        let out: Result<(u32, u32), _> = r
            .run(|| async {
                tries.fetch_add(1, Ordering::Relaxed);
                Attempt::Retry {
                    error: "busy".to_owned(),
                    after: Some(Duration::ZERO),
                }
            })
            .await;
        assert!(matches!(out, Err(Failed::GaveUp { .. })), "{out:?}");
        let n = tries.load(Ordering::Relaxed);
        assert!((2..=12).contains(&n), "{n} tries in 3 s");
    }

    /// Scenario: intervals written as 0 (`initial_interval: 0s, max_interval: 0s`), a
    /// backend failing every try, for 1 s of retries.
    /// Guarantee: the back-off is at least `MIN_BACKOFF`: about 100 tries, not a tight
    /// loop (a black-box check saw 1,550 attempts in 4 s).
    #[tokio::test(start_paused = true)]
    async fn zero_intervals_do_not_make_a_tight_loop() {
        let zero = RetryConfig {
            initial_interval: Duration::ZERO,
            max_interval: Duration::ZERO,
            max_elapsed_time: Duration::from_secs(1),
        };
        let r = Retrier::new(zero, "backend");
        let tries = AtomicU32::new(0);
        let out: Result<(u32, u32), _> = r.run(|| attempt(&tries, u32::MAX)).await;
        assert!(matches!(out, Err(Failed::GaveUp { .. })), "{out:?}");
        let n = tries.load(Ordering::Relaxed);
        assert!((60..=140).contains(&n), "{n} tries in 1 s");
    }

    /// Scenario: the Collector's `retry_on_failure` block as written in its docs; the same
    /// with `enabled: false`; factors out of range; a time bound under an interval; a key
    /// neither has. Guarantees: the intervals are read; disabled means one attempt and no
    /// retry (on a paused clock, no time passes); what the Collector's `Validate` refuses
    /// and unknown keys are refused by name, what it takes is taken.
    #[tokio::test(start_paused = true)]
    async fn the_collectors_retry_on_failure_block_is_read() {
        let read = |yaml: &str| serde_yaml_ng::from_str::<RetryConfig>(yaml);
        let c = read("{enabled: true, initial_interval: 5s, randomization_factor: 0.5, multiplier: 1.5, max_interval: 30s, max_elapsed_time: 300s}").unwrap();
        assert_eq!(
            c,
            RetryConfig {
                initial_interval: Duration::from_secs(5),
                max_interval: Duration::from_secs(30),
                max_elapsed_time: Duration::from_secs(300),
            }
        );
        assert_eq!(read("{}").unwrap(), RetryConfig::default());
        // What the Collector takes: a factor under 1, no time bound with long waits, a
        // long wait without a bound written (a review: refused against the default
        // bound), Go's forms of a duration.
        read("{multiplier: 0.5, max_elapsed_time: 0s, max_interval: 1h}").unwrap();
        assert_eq!(
            read("{max_interval: 60s, initial_interval: 45s}")
                .unwrap()
                .max_interval,
            Duration::from_secs(60)
        );
        assert_eq!(
            read("{initial_interval: .5s, max_interval: +5s, max_elapsed_time: 1m30s}").unwrap(),
            RetryConfig {
                initial_interval: Duration::from_millis(500),
                max_interval: Duration::from_secs(5),
                max_elapsed_time: Duration::from_secs(90),
            }
        );
        // Tailgate's longer forms still read.
        assert_eq!(
            read("{max_elapsed_time: 2 minutes}")
                .unwrap()
                .max_elapsed_time,
            Duration::from_secs(120)
        );
        let off = read("{enabled: false}").unwrap();
        // Even a caller that would hold a request past its time (an exporter while the
        // gateway has room) gives it up: no retry was asked for.
        let r = Retrier::new(off, "backend").hold_while(Arc::new(|| true));
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let out = r.run(|| attempt(&tries, u32::MAX)).await;
        assert!(
            matches!(out, Err(Failed::GaveUp { attempts: 1, .. })),
            "{out:?}"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
        for (yaml, words) in [
            ("{multiplier: -0.5}", "multiplier"),
            ("{max_elapsed_time: 10s, max_interval: 30s}", "max_interval"),
            (
                "{max_elapsed_time: 1s, initial_interval: 2s}",
                "initial_interval",
            ),
            ("{randomization_factor: 2}", "randomization_factor"),
            ("{max_retries: 3}", "max_retries"),
        ] {
            let err = read(yaml).unwrap_err().to_string();
            assert!(err.contains(words), "{yaml}: {err}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_time_bound_and_counts_it() {
        let r = Retrier::new(config(Duration::from_secs(3)), "backend");
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let out = r.run(|| attempt(&tries, u32::MAX)).await;
        let Err(Failed::GaveUp { attempts, .. }) = out else {
            panic!("expected GaveUp, got {out:?}");
        };
        assert!(start.elapsed() <= Duration::from_secs(3));
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(r.stats().gave_up.get(), 1);
        assert_eq!(r.stats().retries.get(), u64::from(attempts - 1));
        assert!(r.stats().is_failing());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_keeps_a_request_past_the_bound_until_it_is_delivered() {
        let room = Arc::new(AtomicBool::new(true));
        let hold = room.clone();
        let r = Retrier::new(config(Duration::from_secs(3)), "backend")
            .hold_while(Arc::new(move || hold.load(Ordering::Relaxed)));
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        // Delivered on the 100th try, about a minute and a half in: far past the bound.
        let (n, attempts) = r.run(|| attempt(&tries, 100)).await.unwrap_or_default();
        assert_eq!((n, attempts), (100, 100));
        assert!(start.elapsed() > Duration::from_secs(60));
        assert_eq!(r.stats().gave_up.get(), 0);
        assert!(!r.stats().is_failing(), "delivery ends the outage");

        // Once holding costs someone else, the bound applies again.
        room.store(false, Ordering::Relaxed);
        let tries = AtomicU32::new(0);
        let out = r.run(|| attempt(&tries, u32::MAX)).await;
        assert!(matches!(out, Err(Failed::GaveUp { .. })), "{out:?}");
    }

    /// Scenario: a holding client whose hold only covers some errors (the router holds
    /// parts a gateway refuses for memory): one request keeps getting a held error for
    /// 90 s, another an error the hold does not cover, both with a 3 s bound.
    /// Guarantees: the first is kept past the bound and delivered; the second is given up
    /// at the bound, as without a hold; and when the held error turns into another, that
    /// one gets the whole bound again, timed from the last time the hold kept the request.
    #[tokio::test(start_paused = true)]
    async fn a_hold_for_some_errors_gives_up_on_the_others() {
        let r =
            Retrier::new(config(Duration::from_secs(3)), "backend").hold_while(Arc::new(|| true));
        let holds_for = |e: &String| e.starts_with("full");
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let out = r
            .run_holding(
                || async {
                    let n = tries.fetch_add(1, Ordering::Relaxed);
                    if start.elapsed() < Duration::from_secs(90) {
                        Attempt::Retry {
                            error: format!("full ({n})"),
                            after: None,
                        }
                    } else {
                        Attempt::Done(n)
                    }
                },
                holds_for,
            )
            .await;
        assert!(out.is_ok(), "{out:?}");
        assert!(start.elapsed() >= Duration::from_secs(90));

        // Errors the hold does not cover from the start: given up within the bound.
        let start = Instant::now();
        // Bounded, so that a hold that ignored `holds_for` fails the test, not hangs it.
        let bound = Duration::from_secs(600);
        let out: Result<(u32, u32), _> = tokio::time::timeout(
            bound,
            r.run_holding(
                || async {
                    Attempt::Retry {
                        error: "down".to_owned(),
                        after: None,
                    }
                },
                holds_for,
            ),
        )
        .await
        .expect("held past the bound");
        assert!(matches!(out, Err(Failed::GaveUp { .. })), "{out:?}");
        assert!(start.elapsed() <= Duration::from_secs(3));

        // Held for 20 s, then only errors the hold does not cover: those get the whole
        // bound again from the last time the hold kept the request, not nothing.
        let start = Instant::now();
        let last_full = std::sync::Mutex::new(start);
        let out: Result<(u32, u32), _> = tokio::time::timeout(
            bound,
            r.run_holding(
                || async {
                    let error = if start.elapsed() < Duration::from_secs(20) {
                        *last_full.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                        "full"
                    } else {
                        "down"
                    };
                    Attempt::Retry {
                        error: error.to_owned(),
                        after: None,
                    }
                },
                holds_for,
            ),
        )
        .await
        .expect("held past the bound");
        assert!(matches!(out, Err(Failed::GaveUp { .. })), "{out:?}");
        let last_full = *last_full.lock().unwrap_or_else(|e| e.into_inner());
        let after_hold = start.elapsed() - last_full.duration_since(start);
        assert!(
            after_hold >= Duration::from_millis(1500) && after_hold <= Duration::from_secs(4),
            "given up {after_hold:?} after the last held error"
        );
        assert_eq!(r.stats().gave_up.get(), 2);
    }

    /// Scenario: an endpoint that flaps, as a gateway refusing some requests for memory and
    /// taking others does: twenty requests in a few seconds, each refused once and then
    /// taken; then another a minute later.
    /// Guarantees: the failing spell is announced (and its end) once, not twenty times (an
    /// overload check counted 470 warnings a minute); a minute later it is announced again.
    #[tokio::test(start_paused = true)]
    async fn a_flapping_endpoint_is_announced_once_a_minute() {
        let (log, _guard) = crate::test_util::CapturedLog::install();
        let r = Retrier::new(config(Duration::from_secs(3)), "gateway");
        for _ in 0..20 {
            let tries = AtomicU32::new(0);
            let out = r.run(|| attempt(&tries, 2)).await;
            assert!(out.is_ok(), "{out:?}");
        }
        assert_eq!(log.count("Endpoint is failing"), 1);
        assert_eq!(log.count("takes requests again"), 1);
        tokio::time::advance(REWARN_AFTER).await;
        let tries = AtomicU32::new(0);
        assert!(r.run(|| attempt(&tries, 2)).await.is_ok());
        assert_eq!(log.count("Endpoint is failing"), 2);
        assert_eq!(log.count("takes requests again"), 2);
        // A spell that starts quietly (within a minute of the last warning) and lasts is
        // announced once it has lasted past that minute, and so is its end.
        tokio::time::advance(Duration::from_secs(10)).await;
        let tries = AtomicU32::new(0);
        let long = config(Duration::from_secs(300));
        let r2 = Retrier {
            config: long,
            ..r.clone()
        };
        assert!(r2.run(|| attempt(&tries, 100)).await.is_ok());
        assert_eq!(log.count("Endpoint is failing"), 3);
        assert_eq!(log.count("takes requests again"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_max_elapsed_time_never_gives_up() {
        let r = Retrier::new(config(Duration::ZERO), "backend");
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let out = r.run(|| attempt(&tries, 1000)).await;
        assert_eq!(out.ok().map(|(_, a)| a), Some(1000));
        assert!(start.elapsed() > Duration::from_secs(900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_for_good_is_not_retried_and_a_hint_is_honoured() {
        let r = Retrier::new(config(Duration::from_secs(30)), "backend");
        let out = r
            .run(|| async { Attempt::<(), _>::Fail("bad request".to_owned()) })
            .await;
        assert_eq!(out, Err(Failed::Rejected("bad request".to_owned())));
        assert_eq!(r.stats().retries.get(), 0);

        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let out = r
            .run(|| async {
                if tries.fetch_add(1, Ordering::Relaxed) == 0 {
                    Attempt::Retry {
                        error: "busy",
                        after: Some(Duration::from_secs(7)),
                    }
                } else {
                    Attempt::Done(())
                }
            })
            .await;
        assert!(out.is_ok());
        assert_eq!(start.elapsed(), Duration::from_secs(7));

        // A hint of a day (or of u64::MAX seconds) waits MAX_HINT at most.
        let tries = AtomicU32::new(0);
        let start = Instant::now();
        let held =
            Retrier::new(config(Duration::from_secs(30)), "backend").hold_while(Arc::new(|| true));
        let out = held
            .run(|| async {
                if tries.fetch_add(1, Ordering::Relaxed) == 0 {
                    Attempt::Retry {
                        error: "busy",
                        after: Some(Duration::from_secs(u64::MAX)),
                    }
                } else {
                    Attempt::Done(())
                }
            })
            .await;
        assert!(out.is_ok());
        assert_eq!(start.elapsed(), MAX_HINT);
    }
}
