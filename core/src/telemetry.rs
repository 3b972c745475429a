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
