//! Hot reload of the policy file. The file is re-read when its content changes (checked
//! every `interval`, which also catches a Kubernetes ConfigMap update: the kubelet swaps a
//! symlink in the mounted directory, which file-event watchers often miss) and on SIGHUP.
//! A new file is parsed, validated and compiled into a plan, then swapped in atomically;
//! shards load the plan in force for each group of (up to 16) decisions. A bad file is logged with its file, line
//! and key, the running plan stays, and `tailgate_config_reloads_total{result="error"}`
//! goes up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tailgate_core::telemetry::{Counter, Gauge};
use tokio_util::sync::CancellationToken;
use xxhash_rust::xxh3::xxh3_64;

use crate::policy::plan::PolicyPlan;
use crate::policy::PolicyFile;

/// The plan in force, shared by the shards.
pub type SharedPlan = Arc<ArcSwap<PolicyPlan>>;

/// Reload counters.
#[derive(Debug, Default)]
pub struct ReloadStats {
    /// Reloads that swapped in a new plan.
    pub ok: Counter,
    /// Reloads refused (bad file); the running plan stayed.
    pub error: Counter,
    /// xxh3 of the policy file the running plan was compiled from.
    pub active_hash: Gauge,
    /// 1 while the file in place is the one in force (loaded at start or by the last
    /// reload), 0 from a refused reload, or a file that stays unreadable, until a good
    /// file loads: what an alert reads (a rate of `error` after an `ok` hid it).
    pub last_reload_successful: Gauge,
}

/// Where policies are read from: a file and, for a whole Collector config, which
/// `tail_sampling` processor in it.
#[derive(Debug, Clone)]
pub struct PolicySource {
    /// The file.
    pub path: PathBuf,
    /// The processor (`NAME` or `tail_sampling/NAME`), when the file holds several.
    pub processor: Option<String>,
}

impl From<PathBuf> for PolicySource {
    fn from(path: PathBuf) -> Self {
        PolicySource {
            path,
            processor: None,
        }
    }
}

/// Watches a policy file and swaps new plans in.
pub struct Reloader {
    path: PathBuf,
    processor: Option<String>,
    plan: SharedPlan,
    stats: Arc<ReloadStats>,
    last_hash: u64,
    /// Consecutive checks that could not read the file.
    unreadable: u32,
    /// A new content seen once: it is applied when the next check reads it unchanged.
    pending: Option<u64>,
    /// The last failure was the file not being readable (not its content being refused).
    read_failed: bool,
    /// Whether `last_hash` is the content in force (it loaded), not one that was refused:
    /// what the gauge returns to when an unreadable file comes back unchanged.
    last_loaded: bool,
    /// The `decision_cache` of the plan at start, which sized the caches.
    started_cache_size: Option<usize>,
}

impl Reloader {
    /// A reloader for `path`, whose current content compiled into `plan`.
    pub fn new(source: impl Into<PolicySource>, plan: SharedPlan, stats: Arc<ReloadStats>) -> Self {
        let PolicySource { path, processor } = source.into();
        let last_hash = tailgate_core::config::read_regular(&path)
            .map(|b| xxh3_64(&b))
            .unwrap_or(0);
        stats.active_hash.set(last_hash);
        stats.last_reload_successful.set(1);
        let started_cache_size = plan.load().decision_cache_size;
        Reloader {
            started_cache_size,
            path,
            processor,
            plan,
            stats,
            last_hash,
            unreadable: 0,
            pending: None,
            read_failed: false,
            last_loaded: true,
        }
    }

    /// Re-reads the file; swaps in a new plan if its content changed and read the same at
    /// the check before (or at once if `force`). Returns whether a new plan is in force.
    ///
    /// Content must be stable for one interval because a file can be read while it is
    /// being written in place (an editor, `cat >`, a slow copy): a prefix of a policy file
    /// is often a valid, shorter file, and would load silently. SIGHUP means "it is ready".
    pub fn check(&mut self, force: bool) -> bool {
        let read = tailgate_core::config::read_regular(&self.path);
        self.apply(force, read)
    }

    /// [`Self::check`] with the file read on a blocking thread: a policy file on a network
    /// mount that hangs holds that thread, not one of the runtime's (whose other tasks
    /// would wait on it). `None` when `shutdown` came first.
    async fn check_off_runtime(
        &mut self,
        force: bool,
        shutdown: &CancellationToken,
    ) -> Option<bool> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || tailgate_core::config::read_regular(&path));
        let read = tokio::select! {
            joined = read => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
            () = shutdown.cancelled() => return None,
        };
        Some(self.apply(force, read))
    }

    /// What [`Self::check`] does with the file's bytes, or the error reading them.
    fn apply(&mut self, force: bool, read: std::io::Result<Vec<u8>>) -> bool {
        let bytes = match read {
            Ok(b) => b,
            Err(error) => {
                // A ConfigMap update briefly removes the link, so one failed read is normal;
                // a file still missing at the next check is not, and is said once (issue 14
                // item 11: a deleted policy file was silent).
                self.unreadable += 1;
                if self.unreadable == 2 {
                    tracing::warn!(path = %self.path.display(), %error, "Policy file cannot be read; the running policies stay.");
                    self.stats.error.add(1);
                    self.stats.last_reload_successful.set(0);
                    self.read_failed = true;
                } else {
                    tracing::debug!(path = %self.path.display(), %error, "Policy file not readable now.");
                }
                return false;
            }
        };
        self.unreadable = 0;
        let hash = xxh3_64(&bytes);
        if hash == self.last_hash && !force {
            // Readable again and unchanged: the gauge is what that content's load made it.
            if std::mem::take(&mut self.read_failed) {
                self.stats
                    .last_reload_successful
                    .set(u64::from(self.last_loaded));
            }
            self.pending = None;
            return false;
        }
        if !force && self.pending != Some(hash) {
            tracing::debug!(path = %self.path.display(), "Policy file changed; applying it if it reads the same at the next check.");
            self.pending = Some(hash);
            return false;
        }
        self.pending = None;
        self.last_hash = hash;
        let text = String::from_utf8_lossy(&bytes);
        match PolicyFile::parse_processor(&self.path, &text, self.processor.as_deref()) {
            Ok(file) => {
                for note in &file.ignored_options {
                    tracing::warn!(%note, "Policy file read with a warning.");
                }
                let plan = PolicyPlan::compile(&file);
                let cache = self.started_cache_size;
                if plan.decision_cache_size != cache {
                    tracing::warn!(
                        was = ?cache,
                        now = ?plan.decision_cache_size,
                        "The decision cache's size is set at start; the new decision_cache applies after a restart."
                    );
                }
                tracing::info!(path = %self.path.display(), policies = plan.names().len(), "Policies reloaded.");
                self.plan.store(Arc::new(plan));
                self.stats.ok.add(1);
                self.stats.active_hash.set(hash);
                self.stats.last_reload_successful.set(1);
                self.read_failed = false;
                self.last_loaded = true;
                true
            }
            Err(error) => {
                tracing::warn!(%error, "Policy reload refused; the running policies stay.");
                self.stats.error.add(1);
                self.stats.last_reload_successful.set(0);
                self.read_failed = false;
                self.last_loaded = false;
                false
            }
        }
    }

    /// Checks every `interval` (never with 0) and on SIGHUP until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let signalled = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            let force = tokio::select! {
                // 0: no polling, SIGHUP only.
                () = tokio::time::sleep(interval), if !interval.is_zero() => false,
                () = signalled => true,
                () = shutdown.cancelled() => return,
            };
            if self.check_off_runtime(force, &shutdown).await.is_none() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "policies:\n  - {name: all, type: always_sample}\n";

    /// `path` written with [`GOOD`], and a reloader watching it with GOOD's plan in force.
    fn watching(path: &std::path::Path) -> (Reloader, SharedPlan, Arc<ReloadStats>) {
        std::fs::write(path, GOOD).unwrap();
        let plan: SharedPlan = Arc::new(ArcSwap::from_pointee(PolicyPlan::compile(
            &PolicyFile::parse(path, GOOD).unwrap(),
        )));
        let stats = Arc::new(ReloadStats::default());
        let r = Reloader::new(path.to_owned(), plan.clone(), stats.clone());
        (r, plan, stats)
    }
    const OTHER: &str = "decision_wait: 5s\npolicies:\n  - {name: none, type: probabilistic, probabilistic: {sampling_percentage: 0}}\n";

    /// Scenario: the watch runs with `--reload-interval 0`; the file changes, then a
    /// minute passes (paused clock); then the same with 1 s.
    /// Guarantees: with 0 the file is never polled (SIGHUP only: before, a sleep of 0
    /// polled it in a loop); with 1 s the change is applied.
    #[tokio::test(start_paused = true)]
    async fn a_zero_interval_polls_never() {
        let dir = tailgate_core::test_util::scratch_dir("reload-zero").unwrap();
        let path = dir.join("policies.yaml");
        for (interval, applied) in [(Duration::ZERO, false), (Duration::from_secs(1), true)] {
            let (r, plan, _) = watching(&path);
            let stop = CancellationToken::new();
            let watch = tokio::spawn(r.run(interval, stop.clone()));
            std::fs::write(&path, OTHER).unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            assert_eq!(plan.load().names() == ["none"], applied, "{interval:?}");
            stop.cancel();
            watch.await.unwrap();
        }
    }

    /// Scenario: a gateway started without `decision_cache`; reloads set it, then remove it
    /// again (policies.md: the caches are sized at start, a reload that changes it is
    /// logged as a warning).
    /// Guarantees: the reload that sets it warns; the one back to the size at start does
    /// not; the plans are swapped either way.
    #[test]
    fn a_changed_decision_cache_is_warned_about_against_the_size_at_start() {
        let (log, _guard) = tailgate_core::test_util::CapturedLog::install();
        let dir = tailgate_core::test_util::scratch_dir("reload-cache").unwrap();
        let path = dir.join("policies.yaml");
        let (mut r, plan, _) = watching(&path);
        let sized = format!("decision_cache: {{sampled_cache_size: 5000}}\n{GOOD}");
        std::fs::write(&path, &sized).unwrap();
        assert!(r.check(true));
        assert_eq!(plan.load().decision_cache_size, Some(5000));
        assert_eq!(log.count("applies after a restart"), 1);
        std::fs::write(&path, GOOD).unwrap();
        assert!(r.check(true));
        assert_eq!(plan.load().decision_cache_size, None);
        assert_eq!(
            log.count("applies after a restart"),
            1,
            "back to the size at start"
        );
    }

    /// Scenario: a named pipe moved in place of the policy file, with no writer (a
    /// hostile check: the gateway froze, its open waiting for a writer on a runtime
    /// thread), checked at once (SIGHUP) and at the interval.
    /// Guarantees: each check returns at once, the plan stays, and the file is flagged as
    /// unreadable; a regular file moved back loads.
    #[test]
    fn a_named_pipe_in_place_of_the_file_is_not_waited_on() {
        let dir = tailgate_core::test_util::scratch_dir("reload-fifo").unwrap();
        let path = dir.join("policies.yaml");
        let (mut r, plan, stats) = watching(&path);
        let fifo = dir.join("fifo");
        tailgate_core::test_util::make_fifo(&fifo);
        std::fs::rename(&fifo, &path).unwrap();
        // On a thread of its own, so that a check that blocks fails the test, not hangs it.
        let (done, checked) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let results = [r.check(true), r.check(false), r.check(false)];
            done.send(results).unwrap();
            r
        });
        let results = checked
            .recv_timeout(Duration::from_secs(10))
            .expect("a check waited on the pipe");
        assert_eq!(results, [false; 3]);
        let mut r = worker.join().unwrap();
        assert_eq!(plan.load().names(), ["all"]);
        assert_eq!(stats.last_reload_successful.get(), 0);
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, OTHER).unwrap();
        assert!(r.check(true));
        assert_eq!(plan.load().names(), ["none"]);
    }

    #[test]
    fn changed_files_swap_and_bad_files_change_nothing() {
        let dir = std::env::temp_dir().join(format!("tailgate-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policies.yaml");
        let (mut r, plan, stats) = watching(&path);
        assert!(!r.check(false), "unchanged file reloaded");
        let successful = || stats.last_reload_successful.get();
        assert_eq!(successful(), 1, "the file loaded at start is in force");

        std::fs::write(&path, OTHER).unwrap();
        assert!(!r.check(false), "applied before it was seen stable");
        assert!(r.check(false));
        assert_eq!(plan.load().names(), ["none"]);
        assert_eq!(plan.load().decision_wait, Duration::from_secs(5));
        assert_eq!(stats.ok.get(), 1);

        std::fs::write(&path, "policies:\n  - {name: x, type: nope}\n").unwrap();
        assert!(!r.check(false));
        assert!(!r.check(false));
        assert_eq!(
            plan.load().names(),
            ["none"],
            "a bad file replaced the plan"
        );
        assert_eq!(stats.error.get(), 1);
        assert_eq!(
            successful(),
            0,
            "a refused file is flagged until a good one loads"
        );

        // A ConfigMap-style update: the file is replaced through a renamed symlink.
        let target = dir.join("v2.yaml");
        std::fs::write(&target, GOOD).unwrap();
        let link = dir.join("link.tmp");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        std::fs::rename(&link, &path).unwrap();
        assert!(!r.check(false));
        assert_eq!(successful(), 0);
        assert!(r.check(false));
        assert_eq!(plan.load().names(), ["all"]);
        assert_eq!(successful(), 1);

        // A deleted file: one missed check is a ConfigMap swap; the second is reported,
        // once, as a reload error; the plan stays.
        std::fs::remove_file(&path).unwrap();
        let errors = stats.error.get();
        assert!(!r.check(false));
        assert_eq!(stats.error.get(), errors);
        assert!(!r.check(false));
        assert!(!r.check(false));
        assert_eq!(stats.error.get(), errors + 1);
        assert_eq!(plan.load().names(), ["all"]);
        assert_eq!(successful(), 0, "a file that stays unreadable is flagged");
        // Back as it was: the policies in force are the file's again.
        std::fs::write(&path, GOOD).unwrap();
        assert!(!r.check(false));
        assert_eq!(successful(), 1);
        // A refused file that goes missing and comes back unchanged is still refused.
        let bad = "policies:\n  - {name: y, type: nope}\n";
        std::fs::write(&path, bad).unwrap();
        assert!(!r.check(false));
        assert!(!r.check(false));
        assert_eq!(successful(), 0);
        std::fs::remove_file(&path).unwrap();
        assert!(!r.check(false));
        assert!(!r.check(false));
        std::fs::write(&path, bad).unwrap();
        assert!(!r.check(false));
        assert_eq!(
            successful(),
            0,
            "the refused content is back, not a good one"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file caught half-written: its first policy alone is a valid file (issue 14
    /// item 11). It must not load; the whole file loads once it reads the same twice, and
    /// SIGHUP (force) loads at once.
    #[test]
    fn a_file_caught_half_written_is_not_loaded() {
        const WHOLE: &str = "policies:\n  - {name: errors, type: status_code, status_code: {status_codes: [ERROR]}}\n  - {name: rest, type: probabilistic, probabilistic: {sampling_percentage: 5}}\n";
        let half = &WHOLE[..WHOLE.find("  - {name: rest").unwrap()];
        let dir = std::env::temp_dir().join(format!("tailgate-half-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policies.yaml");
        let (mut r, plan, stats) = watching(&path);
        assert!(
            PolicyFile::parse(&path, half).is_ok(),
            "the prefix is a valid file"
        );

        std::fs::write(&path, half).unwrap();
        assert!(!r.check(false));
        std::fs::write(&path, WHOLE).unwrap();
        assert!(!r.check(false));
        assert_eq!(plan.load().names(), ["all"], "nothing loaded yet");
        assert!(r.check(false));
        assert_eq!(plan.load().names(), ["errors", "rest"]);
        assert_eq!(stats.ok.get(), 1);

        std::fs::write(&path, GOOD).unwrap();
        assert!(r.check(true), "SIGHUP loads at once");
        assert_eq!(plan.load().names(), ["all"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
