//! A value fetched from an endpoint and kept until shortly before it expires: AWS
//! credentials ([`crate::aws`]) and Google access tokens ([`crate::gcp`]).
//!
//! A request asking for the value gets the kept one while it is fresh (more than
//! [`REFRESH_BEFORE`] from its expiry). Past that, one request fetches while the others
//! get the kept one if it still works, or wait for the fetch if it does not. A value that
//! comes back already due is used for [`REFETCH_AFTER`] before the next fetch. After a
//! failed fetch none is tried for [`FETCH_AGAIN_AFTER`]; a kept value that has not expired
//! is given meanwhile. A refusal of a request sent with a value fetches anew at once,
//! unless the kept value is another already or another refusal forced a fetch within
//! [`FETCH_AGAIN_AFTER`]. Failures are logged once a minute at most.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::time::Instant;

use crate::tls::{ClientTls, Dialer, Transport};

/// The longest answer read from a credentials or token endpoint.
const MAX_ANSWER: usize = 64 * 1024;

/// The client values are fetched with: fetches take at most `timeout`, over TLS as `tls`
/// says, through `proxy` when one is given.
pub fn client(
    timeout: Duration,
    tls: Option<&ClientTls>,
    proxy: Option<&crate::proxy::Proxy>,
) -> Transport<Full<Bytes>> {
    let builder = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    Transport::new(&builder, tls, Dialer::new(timeout, proxy), false)
}

/// One request to an endpoint and its answer, read up to 64 KiB.
pub async fn exchange(
    client: &Transport<Full<Bytes>>,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    let response = client
        .request(request)
        .await
        .map_err(|e| crate::text::error_chain(&e))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Values that expire sooner than this are fetched again.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// The least time between two fetches after a failed one, and between two fetches
/// forced by refusals.
pub const FETCH_AGAIN_AFTER: Duration = Duration::from_secs(1);

/// The least time between two routine fetches: a value that comes back already due for
/// renewal (a clock ahead of the endpoint's, a key about to rotate) is used until then
/// rather than fetched again for every request.
pub const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// A fetched value with its expiry, if it has one.
pub type Expiring<T> = (T, Option<SystemTime>);

/// One kept value and the fetches of it.
pub struct FetchCache<T> {
    /// What is fetched and from where, for messages.
    what: String,
    timeout: Duration,
    kept: Mutex<Kept<T>>,
    /// Held by the one request that fetches.
    fetching: tokio::sync::Mutex<()>,
}

struct Kept<T> {
    value: Option<Expiring<T>>,
    /// When the last fetch succeeded.
    fetched_at: Option<Instant>,
    /// When the last fetch forced by a refusal started.
    forced_at: Option<Instant>,
    failed_at: Option<Instant>,
    warned_at: Option<Instant>,
}

impl<T> std::fmt::Debug for FetchCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchCache")
            .field("what", &self.what)
            .finish_non_exhaustive()
    }
}

impl<T: Clone + PartialEq + Send> FetchCache<T> {
    /// A cache of `what` (named in messages); a fetch takes at most `timeout`.
    pub fn new(what: String, timeout: Duration) -> Self {
        FetchCache {
            what,
            timeout,
            kept: Mutex::new(Kept {
                value: None,
                fetched_at: None,
                forced_at: None,
                failed_at: None,
                warned_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// The value for the next request, `fetch` called when one is due (see the module).
    /// `Err` when there is none that works.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<T>, String>>,
    {
        let now = SystemTime::now();
        let kept = self.lock().value.clone();
        if let Some((v, _)) = kept.as_ref().filter(|k| fresh(k, now)) {
            return Ok(v.clone());
        }
        let usable = kept.filter(|k| works(k, now));
        let _fetching = match (&usable, self.fetching.try_lock()) {
            (_, Ok(guard)) => guard,
            // Another request is fetching; this still works meanwhile.
            (Some((v, _)), Err(_)) => return Ok(v.clone()),
            (None, Err(_)) => self.fetching.lock().await,
        };
        // Fetched by another request while this one waited, or fetched a moment ago and
        // already due (then kept until REFETCH_AFTER)?
        {
            let kept = self.lock();
            let now = SystemTime::now();
            if let Some((v, _)) = kept.value.as_ref().filter(|k| fresh(k, now)) {
                return Ok(v.clone());
            }
            let recent = kept
                .fetched_at
                .is_some_and(|at| at.elapsed() < REFETCH_AFTER);
            if let (true, Some((v, _))) = (recent, usable.as_ref()) {
                return Ok(v.clone());
            }
        }
        self.fetch_kept(usable, fetch).await
    }

    /// After a request sent with `sent` was refused: `true` at once when the kept value is
    /// another already; otherwise `fetch` now, unless another refusal forced a fetch or a
    /// fetch failed within [`FETCH_AGAIN_AFTER`]. Whether the value changed.
    pub async fn refresh<F, Fut>(&self, sent: &T, fetch: F) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<T>, String>>,
    {
        let _fetching = self.fetching.lock().await;
        let before = {
            let mut kept = self.lock();
            if kept.value.as_ref().is_some_and(|(v, _)| v != sent) {
                return true;
            }
            if kept
                .forced_at
                .is_some_and(|at| at.elapsed() < FETCH_AGAIN_AFTER)
            {
                return false;
            }
            kept.forced_at = Some(Instant::now());
            kept.value.clone()
        };
        let usable = before.clone().filter(|k| works(k, SystemTime::now()));
        match self.fetch_kept(usable, fetch).await {
            Ok(now) => before.is_none_or(|(v, _)| v != now),
            Err(_) => false,
        }
    }

    /// The kept value, if any, without fetching.
    pub fn last(&self) -> Option<T> {
        self.lock().value.as_ref().map(|(v, _)| v.clone())
    }

    /// Fetches (the caller holds `fetching`) and keeps what it gets; on failure, `usable`.
    async fn fetch_kept<F, Fut>(&self, usable: Option<Expiring<T>>, fetch: F) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Expiring<T>, String>>,
    {
        let held = |why: String| match &usable {
            Some((v, _)) => Ok(v.clone()),
            None => Err(why),
        };
        if self
            .lock()
            .failed_at
            .is_some_and(|at| at.elapsed() < FETCH_AGAIN_AFTER)
        {
            return held(format!(
                "no {} yet (the last fetch failed); held and tried again",
                self.what
            ));
        }
        let fetched = match tokio::time::timeout(self.timeout, fetch()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        };
        let mut kept = self.lock();
        match fetched {
            Ok((v, expires)) => {
                kept.value = Some((v.clone(), expires));
                kept.fetched_at = Some(Instant::now());
                kept.failed_at = None;
                Ok(v)
            }
            Err(error) => {
                kept.failed_at = Some(Instant::now());
                if crate::retry::warn_again(&mut kept.warned_at) {
                    tracing::warn!(
                        source = %self.what,
                        %error,
                        "Cannot fetch credentials; exports wait for them (logged once a minute at most)."
                    );
                }
                drop(kept);
                held(format!("no {}: {error}; held and tried again", self.what))
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<T>> {
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Whether a value is good for a while yet.
fn fresh<T>((_, expires): &Expiring<T>, now: SystemTime) -> bool {
    expires.is_none_or(|e| e > now + REFRESH_BEFORE)
}

/// Whether a value has not expired.
fn works<T>((_, expires): &Expiring<T>, now: SystemTime) -> bool {
    expires.is_none_or(|e| e > now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Scenario: an endpoint that never answers, on a paused clock: a first request with
    /// nothing kept, a second within a second of the failure, a third after it; then a
    /// value fetched with two minutes left, and its renewal, which hangs.
    /// Guarantees: the fetch gives up at exactly the timeout with an error naming it and
    /// saying the export is held; nothing is asked again within [`FETCH_AGAIN_AFTER`];
    /// after it, asked again; a request whose renewal hangs gets the kept value, which
    /// still works, after the timeout rather than an error.
    #[tokio::test(start_paused = true)]
    async fn a_fetch_that_hangs_gives_up_at_the_timeout() {
        let cache = FetchCache::<u32>::new("test tokens".into(), Duration::from_secs(10));
        let asked = AtomicU32::new(0);
        let hang = || {
            asked.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<Result<Expiring<u32>, String>>()
        };
        let start = Instant::now();
        let err = cache.get(hang).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(err.contains("no answer within 10s"), "{err}");
        assert!(err.contains("held and tried again"), "{err}");
        assert_eq!(asked.load(Ordering::SeqCst), 1);

        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(cache.get(hang).await.is_err());
        assert_eq!(
            asked.load(Ordering::SeqCst),
            1,
            "within a second: not asked"
        );
        tokio::time::advance(FETCH_AGAIN_AFTER).await;
        let start = Instant::now();
        assert!(cache.get(hang).await.is_err());
        assert_eq!(
            asked.load(Ordering::SeqCst),
            2,
            "asked again after a second"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));

        // A value fetched with two minutes left (under the renewal margin) is used; past
        // REFETCH_AFTER a renewal that hangs gives it again, after the timeout.
        let soon = SystemTime::now() + Duration::from_secs(120);
        let due = FetchCache::<u32>::new("due tokens".into(), Duration::from_secs(10));
        assert_eq!(
            due.get(|| async move { Ok((8, Some(soon))) })
                .await
                .unwrap(),
            8
        );
        tokio::time::advance(REFETCH_AFTER).await;
        let start = Instant::now();
        assert_eq!(
            due.get(hang).await.unwrap(),
            8,
            "the kept value still works"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }
}
