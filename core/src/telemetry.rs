//! Self-telemetry: the counters each component keeps, their Prometheus text rendering, and
//! the admin HTTP server (`/metrics`, `/healthz`, `/readyz`).
//!
//! Counters are plain atomics owned by the component instance, added to once per batch,
//! never per span. Keeping them per instance lets in-process clusters (the demo, tests, the
//! simulator) read each component's own accounting; the admin server renders them.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::net::TcpListener;

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

// === impl Counter ===

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

// === impl Gauge ===

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n`, stopping at zero.
    pub fn sub(&self, n: u64) {
        let _previous = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Builds Prometheus text exposition output.
#[derive(Debug, Default)]
pub struct PromText(String);

// === impl PromText ===

impl PromText {
    /// Writes one sample with its `# HELP` and `# TYPE` lines.
    pub fn metric(&mut self, name: &str, kind: &str, help: &str, labels: &str, value: u64) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        self.sample(name, labels, value);
    }

    /// Writes a sample of a metric already described.
    pub fn sample(&mut self, name: &str, labels: &str, value: u64) {
        self.sample_str(name, labels, &value.to_string());
    }

    /// Writes one metric with a sample per value of one label.
    pub fn labelled<'a>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.header(name, kind, help);
        for (value, n) in samples {
            self.sample(name, &format!("{label}=\"{value}\""), n);
        }
    }

    /// Writes `# HELP` and `# TYPE` lines alone (for summaries, whose samples have suffixes).
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// Writes a sample whose value is already formatted (a float).
    pub fn sample_str(&mut self, name: &str, labels: &str, value: &str) {
        if labels.is_empty() {
            self.0.push_str(&format!("{name} {value}\n"));
        } else {
            self.0.push_str(&format!("{name}{{{labels}}} {value}\n"));
        }
    }

    /// The rendered text.
    pub fn finish(self) -> String {
        self.0
    }
}

/// The crate version and the git commit the binaries were built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TAILGATE_GIT_COMMIT"),
    ")"
);

/// `tailgate_build_info{version,commit,component} 1`, as Prometheus build-info metrics are.
pub fn render_build_info(p: &mut PromText, component: &str) {
    p.metric(
        "tailgate_build_info",
        "gauge",
        "The version and git commit of the running binary (always 1).",
        &format!(
            "version=\"{}\",commit=\"{}\",component=\"{component}\"",
            env!("CARGO_PKG_VERSION"),
            env!("TAILGATE_GIT_COMMIT")
        ),
        1,
    );
}

/// The process metrics every Prometheus client library exports, read from `/proc/self`
/// (Linux; elsewhere nothing): CPU seconds, resident and virtual memory, open and maximum
/// file descriptors, start time. The names are the standard ones (`process_*`), so
/// dashboards built for any exporter work.
pub fn render_process_metrics(p: &mut PromText) {
    let Some(m) = ProcessMetrics::read() else {
        return;
    };
    p.header(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    p.sample_str(
        "process_cpu_seconds_total",
        "",
        &format!("{:.2}", m.cpu_seconds),
    );
    p.metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        "",
        m.resident_bytes,
    );
    p.metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        "",
        m.virtual_bytes,
    );
    p.metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        "",
        m.open_fds,
    );
    if let Some(max) = m.max_fds {
        p.metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            "",
            max,
        );
    }
    p.header(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    p.sample_str(
        "process_start_time_seconds",
        "",
        &format!("{:.2}", m.start_time_seconds),
    );
}

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessMetrics {
    /// User plus system CPU time.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Virtual memory size.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<u64>,
    /// When the process started, seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcessMetrics {
    /// Clock ticks per second of `/proc` times: `USER_HZ`, 100 on every Linux architecture
    /// Tailgate builds for.
    const TICKS: f64 = 100.0;
    const PAGE: u64 = 4096;

    /// Reads them; `None` where `/proc/self` is not there.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| Self::max_open_files(&l));
        Self::parse(&stat, &statm, &boot, open_fds, max_fds)
    }

    /// Parses the files' text (separate for tests).
    pub fn parse(
        stat: &str,
        statm: &str,
        proc_stat: &str,
        open_fds: u64,
        max_fds: Option<u64>,
    ) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: fields after it are
        // counted from the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state is field 3, so field n is f[n - 3].
        let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
        let cpu_ticks = num(14)? + num(15)?;
        let start_ticks = num(22)?;
        let mut pages = statm.split_whitespace().map(|s| s.parse::<u64>().ok());
        let (size, resident) = (pages.next()??, pages.next()??);
        let btime = proc_stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(ProcessMetrics {
            cpu_seconds: cpu_ticks as f64 / Self::TICKS,
            resident_bytes: resident * Self::PAGE,
            virtual_bytes: size * Self::PAGE,
            open_fds,
            max_fds,
            start_time_seconds: btime as f64 + start_ticks as f64 / Self::TICKS,
        })
    }

    fn max_open_files(limits: &str) -> Option<u64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line["Max open files".len()..]
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }
}

/// What the admin server shows.
pub trait Admin: Send + Sync + 'static {
    /// Prometheus text for `/metrics`.
    fn render_metrics(&self) -> String;
    /// Whether `/readyz` says ready.
    fn ready(&self) -> bool;
}

/// Readiness flag shared by a component and its admin server.
#[derive(Debug, Default)]
pub struct Readiness(AtomicBool);

// === impl Readiness ===

impl Readiness {
    /// Sets readiness.
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    /// Current readiness.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Connections the admin port serves at once: scrapers and probes, not clients.
const ADMIN_MAX_CONNECTIONS: usize = 256;
/// Longest an admin connection may stay silent, or take to send its headers.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `/metrics`, `/`, `/healthz` and `/readyz` until `shutdown` completes, with the
/// accept loop and limits of [`crate::serve`]: at most 256 connections, each closed if
/// silent for 5 s, so idle sockets can neither exhaust file descriptors nor spin the loop.
pub async fn serve_admin<A: Admin>(
    listener: TcpListener,
    admin: Arc<A>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limits = crate::serve::ConnectionLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        first_byte_timeout: ADMIN_TIMEOUT,
        header_timeout: ADMIN_TIMEOUT,
        max_connection_age: None,
        max_connection_age_grace: ADMIN_TIMEOUT,
    };
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let admin = admin.clone();
        async move { answer(&*admin, req.uri().path()) }
    };
    if let Err(error) = crate::serve::serve(listener, limits, None, shutdown, handler).await {
        tracing::warn!(%error, "Admin server stopped.");
    }
}

/// The admin server's answer for `path`.
fn answer<A: Admin>(admin: &A, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, admin.render_metrics()),
        // As the Collector's health_check extension, so that probes copied from a
        // Collector chart work.
        "/" if admin.ready() => (
            StatusCode::OK,
            "{\"status\":\"Server available\"}\n".to_owned(),
        ),
        "/" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"Server not available\"}\n".to_owned(),
        ),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if admin.ready() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_owned()),
        _ => (
            StatusCode::NOT_FOUND,
            "try /, /metrics, /healthz or /readyz\n".to_owned(),
        ),
    };
    let content_type = match path {
        "/metrics" => "text/plain; version=0.0.4; charset=utf-8",
        "/" => "application/json",
        _ => "text/plain; charset=utf-8",
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario: /proc files as Linux writes them, a command name with spaces and ')'.
    /// Guarantees: CPU from utime + stime, memory from statm pages, start from btime; and
    /// this process's own figures render with the standard names.
    #[test]
    fn process_metrics_parse_proc() {
        let stat = "4242 (tail gate) x) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 3 0 12345 10000000 900 18446744073709551615";
        let m = ProcessMetrics::parse(
            stat,
            "2500 900 300 1 0 400 0",
            "cpu 1 2\nbtime 1700000000\n",
            12,
            Some(1024),
        )
        .unwrap();
        assert_eq!(m.cpu_seconds, 2.0);
        assert_eq!(m.resident_bytes, 900 * 4096);
        assert_eq!(m.virtual_bytes, 2500 * 4096);
        assert_eq!(m.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert_eq!((m.open_fds, m.max_fds), (12, Some(1024)));
        assert_eq!(ProcessMetrics::parse("garbage", "", "", 0, None), None);
        let live = ProcessMetrics::read().unwrap();
        assert!(live.resident_bytes > 0 && live.open_fds > 0, "{live:?}");
        let mut p = PromText::default();
        render_process_metrics(&mut p);
        let text = p.finish();
        assert!(
            text.contains("# TYPE process_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
    }
}
