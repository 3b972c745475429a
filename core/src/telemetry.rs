//! Self-telemetry: the counters each component keeps, their exposition, and the admin HTTP
//! server (`/metrics`, `/healthz`, `/readyz`).
//!
//! Counters are plain atomics owned by the component instance, added to once per batch,
//! never per span. Keeping them per instance lets in-process clusters (the demo, tests, the
//! simulator) read each component's own accounting; a process-wide recorder (the `metrics`
//! crate's model) would merge the three gateways of the demo into one. At each scrape the
//! component gathers its atomics into a [`PromText`], which the `prometheus-client` crate
//! encodes as the scraper asks: the Prometheus text format or OpenMetrics.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
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

/// One scrape's metric families, gathered from the stats' atomics and encoded by the
/// Prometheus project's `prometheus-client` crate: label values escaped, counters named
/// with `_total` as each format wants, in the Prometheus text format (0.0.4) or OpenMetrics
/// as the scraper asks (`Accept`).
///
/// Names are given as they are queried: counters with their `_total` suffix, histograms
/// without `_bucket`/`_sum`/`_count`.
#[derive(Debug, Default)]
pub struct PromText {
    families: Vec<Family>,
}

/// The wire formats the admin server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsFormat {
    /// `text/plain; version=0.0.4`: what every Prometheus understands.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`: what Prometheus asks for first.
    OpenMetrics,
}

impl MetricsFormat {
    /// The format an `Accept` header prefers: OpenMetrics when it is named, else the
    /// Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// One metric family: its name (without the counter's `_total`), help, type and samples.
#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<(Vec<(String, String)>, Value)>,
}

#[derive(Debug)]
enum Value {
    Int(u64),
    Float(f64),
    Histogram {
        sum: f64,
        count: u64,
        /// (upper bound, count in this bucket alone), the last bound `+Inf`.
        buckets: Vec<(f64, u64)>,
    },
}

/// The family name of a metric queried as `name`: counters lose their `_total`.
fn family_name(name: &str, kind: MetricType) -> &str {
    match kind {
        MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    }
}

fn metric_type(kind: &str) -> MetricType {
    match kind {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        _ => MetricType::Unknown,
    }
}

fn owned_labels(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// === impl PromText ===

/// Renders the connections the process's listeners closed before serving them
/// ([`crate::serve::closed_connections`]) as the counter `name{reason="…"}`, the same for
/// the router and the gateway.
pub fn render_closed_connections(p: &mut PromText, name: &str) {
    p.labelled(
        name,
        "counter",
        "Connections closed before being served: sender_share (its address held a quarter of receive.max_connections while more than half were open), not_opened (no request line or HTTP/2 preface within the first-byte limit, or closed by the peer first: TCP health checks count here), full (every slot taken, and no sender held more than an even share); and evicted: open connections asked to close so that a sender holding far fewer got a slot.",
        "reason",
        crate::serve::closed_connections(),
    );
}

impl PromText {
    /// Starts a family (`kind`: `counter`, `gauge` or `histogram`) with no samples yet.
    pub fn header(&mut self, name: &str, kind: &str, help: &str) {
        let kind = metric_type(kind);
        self.families.push(Family {
            name: family_name(name, kind).to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        });
    }

    /// Starts a family with one sample.
    pub fn metric(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: u64,
    ) {
        self.header(name, kind, help);
        self.sample(name, labels, value);
    }

    /// Adds a sample to the family `name` started before.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.push(name, labels, Value::Int(value));
    }

    /// Adds a sample with a fractional value (seconds) to the family `name`.
    pub fn float(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.push(name, labels, Value::Float(value));
    }

    /// Starts a family with a sample per value of one label.
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
            self.sample(name, &[(label, value)], n);
        }
    }

    /// Adds a histogram sample to the family `name` (started with `header(.., "histogram",
    /// ..)`): `buckets` are (upper bound, count at or below it), cumulative; a `+Inf`
    /// bucket holding `count` is added when the last bound is finite.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        // prometheus-client takes each bucket's own count and accumulates them.
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = buckets
            .iter()
            .map(|&(le, cumulative)| {
                let own = cumulative.saturating_sub(below);
                below = below.max(cumulative);
                (le, own)
            })
            .collect();
        if buckets.last().is_none_or(|(le, _)| le.is_finite()) {
            buckets.push((f64::INFINITY, count.saturating_sub(below)));
        }
        self.push(
            name,
            labels,
            Value::Histogram {
                sum,
                count,
                buckets,
            },
        );
    }

    fn push(&mut self, name: &str, labels: &[(&str, &str)], value: Value) {
        let labels = owned_labels(labels);
        match self
            .families
            .iter_mut()
            .rev()
            .find(|f| f.name == family_name(name, f.kind))
        {
            Some(f) => f.samples.push((labels, value)),
            None => {
                // A sample without its header: still exported, as an untyped metric.
                debug_assert!(false, "sample of {name} before its header");
                self.families.push(Family {
                    name: name.to_owned(),
                    help: String::new(),
                    kind: MetricType::Unknown,
                    samples: vec![(labels, value)],
                });
            }
        }
    }

    /// Appends the families of `other`.
    pub fn append(&mut self, other: PromText) {
        self.families.extend(other.families);
    }

    /// Encodes the families in `format`.
    pub fn encode(self, format: MetricsFormat) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(self.families)));
        let mut out = String::new();
        let encoded = match format {
            MetricsFormat::Prometheus => prometheus_text::encode(&mut out, &registry),
            MetricsFormat::OpenMetrics => text::encode(&mut out, &registry),
        };
        // Writing into a String cannot fail; the encoder only passes fmt errors on.
        debug_assert!(encoded.is_ok());
        out
    }

    /// The Prometheus text format (0.0.4).
    pub fn finish(self) -> String {
        self.encode(MetricsFormat::Prometheus)
    }
}

/// The gathered families as a `prometheus-client` collector, encoded once per scrape.
#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        for f in &self.0 {
            let mut metric = encoder.encode_descriptor(&f.name, &f.help, None, f.kind)?;
            for (labels, value) in &f.samples {
                let mut sample = metric.encode_family(labels)?;
                match (value, f.kind) {
                    (Value::Int(n), MetricType::Counter) => {
                        sample.encode_counter::<NoLabelSet, _, u64>(n, None)?
                    }
                    (Value::Float(x), MetricType::Counter) => {
                        sample.encode_counter::<NoLabelSet, _, f64>(x, None)?
                    }
                    (Value::Int(n), _) => sample.encode_gauge(n)?,
                    (Value::Float(x), _) => sample.encode_gauge(x)?,
                    (
                        Value::Histogram {
                            sum,
                            count,
                            buckets,
                        },
                        _,
                    ) => sample.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
                }
            }
        }
        Ok(())
    }
}

/// Logs to stderr at `RUST_LOG`, or `default` (`info`, `warn`…) without it; colour only on
/// a terminal, so log files and collectors get plain text. For the binaries' `main`.
///
/// A line that cannot be written (stderr a closed pipe: a log shipper gone) is dropped:
/// tracing-subscriber would otherwise report it with `eprintln!`, which panics on the same
/// closed pipe and ends the task that logged, such as the one that handles SIGTERM.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Without RUST_LOG, the HTTP/2 library's own warnings are left out: a hostile
            // client makes one per connection (739 lines in 10 s of rapid resets, in a
            // black-box check), and what they warn of is refused and counted already.
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(format!("{default},h2=error"))
            }),
        )
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("commit", env!("TAILGATE_GIT_COMMIT")),
            ("component", component),
        ],
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
    p.float("process_cpu_seconds_total", &[], m.cpu_seconds);
    p.metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        &[],
        m.resident_bytes,
    );
    p.metric(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        &[],
        m.virtual_bytes,
    );
    p.metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        &[],
        m.open_fds,
    );
    if let Some(max) = m.max_fds {
        p.metric(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            &[],
            max,
        );
    }
    p.header(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
    );
    p.float("process_start_time_seconds", &[], m.start_time_seconds);
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
    /// The metric families for `/metrics`, gathered now; the server encodes them.
    fn render_metrics(&self) -> PromText;
    /// Whether `/readyz` says ready.
    fn ready(&self) -> bool;
    /// Told of every `/metrics` answer, if the component waits for scrapes.
    fn scrapes(&self) -> Option<&Scrapes> {
        None
    }
}

/// The `/metrics` answers an admin server has given, so that a process that lost data at
/// its drain deadline (counted in a counter just then) can wait for one more scrape before
/// it exits: otherwise the count dies with the process and no alert sees it.
#[derive(Debug, Default)]
pub struct Scrapes {
    /// Renderings of `/metrics` begun, numbered from 1.
    begun: AtomicU64,
    /// The highest number of a rendering answered.
    answered: AtomicU64,
    notify: tokio::sync::Notify,
}

/// Time given to the last answer's bytes to leave before the process exits.
const LAST_ANSWER_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

impl Scrapes {
    /// A `/metrics` rendering begins: its number, for [`Scrapes::answered`].
    pub fn begin(&self) -> u64 {
        self.begun.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The rendering `number` was answered.
    pub fn answered(&self, number: u64) {
        self.answered.fetch_max(number, Ordering::AcqRel);
        self.notify.notify_waiters();
    }

    /// How many `/metrics` answers were rendered, at least.
    pub fn count(&self) -> u64 {
        self.answered.load(Ordering::Acquire)
    }

    /// Waits until a `/metrics` answer whose rendering began after this call is given (and
    /// a moment for it to be written), at most `wait`: one begun before might not hold
    /// what was counted just now. Whether one was.
    pub async fn next(&self, wait: std::time::Duration) -> bool {
        let after = self.begun.load(Ordering::Acquire);
        let answered = async {
            loop {
                let notified = self.notify.notified();
                if self.answered.load(Ordering::Acquire) > after {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(wait, answered).await.is_err() {
            return false;
        }
        tokio::time::sleep(LAST_ANSWER_FLUSH).await;
        true
    }

    /// After a drain that left `lost` spans (counted already), waits for the next scrape
    /// as [`Scrapes::next`], at most `wait`, logging what it does. Nothing when none were
    /// lost or `wait` is zero.
    pub async fn after_loss(&self, lost: u64, wait: std::time::Duration) {
        if lost == 0 || wait.is_zero() {
            return;
        }
        tracing::info!(
            lost_spans = lost,
            wait = ?wait,
            "Waiting for one more /metrics scrape before exiting, so the loss is counted where alerts see it."
        );
        if !self.next(wait).await {
            tracing::warn!(
                wait = ?wait,
                "No /metrics scrape came before exiting; the lost spans are in the log only (set --final-scrape-wait a few seconds above the scrape interval)."
            );
        }
    }
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

/// Connections the admin port serves at once: scrapers and probes, not clients. Shared
/// by address as the receivers' are ([`crate::serve`]): one address holds at most a
/// quarter once half are open, and with every one taken a prober or scraper holding
/// none takes a slot of the heaviest sender's, so a flood from a few addresses cannot
/// keep the kubelet's probes out (a hostile check: 300 idle HTTP/2 connections from one
/// address answered 1 probe in 29, and the pod would have been restarted).
const ADMIN_MAX_CONNECTIONS: usize = 64;
/// Requests an admin connection may have open at once: scrapes and probes come one at a
/// time. Each answer waits whole until the client reads it, so streams whose window a
/// client keeps shut hold a `/metrics` each (a hostile check: 512 connections of 8
/// such streams held 390 MB of an 82 KB `/metrics`, past the `--check` bound); at 64
/// connections of one, 64 answers a port.
const ADMIN_MAX_STREAMS: u32 = 1;
/// How long requests on an admin connection asked to close for a prober get.
const ADMIN_EVICTION_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest an admin connection may stay silent, or take to send its headers.
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `/metrics`, `/`, `/healthz` and `/readyz` until `shutdown` completes, with the
/// accept loop and limits of [`crate::serve`]: at most 64 connections, shared by address,
/// each closed if silent for 5 s, so idle sockets can neither exhaust file descriptors
/// nor spin the loop, nor keep probes out.
pub async fn serve_admin<A: Admin>(
    listener: TcpListener,
    admin: Arc<A>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limits = crate::serve::ConnectionLimits {
        max_connections: ADMIN_MAX_CONNECTIONS,
        sender_connections: true,
        max_concurrent_streams: ADMIN_MAX_STREAMS,
        first_byte_timeout: ADMIN_TIMEOUT,
        header_timeout: ADMIN_TIMEOUT,
        max_connection_age: None,
        max_connection_age_grace: ADMIN_TIMEOUT,
        // Probes and scrapes answer in milliseconds: a connection holding its answers
        // unread (a hostile check's /metrics streams with shut windows) gives its slot to
        // a probe at once, within the kubelet's 1 s probe timeout.
        eviction_grace: ADMIN_EVICTION_GRACE,
    };
    let handler = move |req: http::Request<hyper::body::Incoming>| {
        let admin = admin.clone();
        async move {
            let accept = req
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok());
            let scrape = match (req.uri().path(), admin.scrapes()) {
                ("/metrics", Some(scrapes)) => Some((scrapes, scrapes.begin())),
                _ => None,
            };
            let answer = answer(&*admin, req.uri().path(), MetricsFormat::negotiate(accept));
            if let Some((scrapes, number)) = scrape {
                scrapes.answered(number);
            }
            answer
        }
    };
    if let Err(error) = crate::serve::serve(listener, limits, None, shutdown, handler).await {
        tracing::warn!(%error, "Admin server stopped.");
    }
}

/// The admin server's answer for `path`.
fn answer<A: Admin>(admin: &A, path: &str, format: MetricsFormat) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, admin.render_metrics().encode(format)),
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
        "/metrics" => format.content_type(),
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

    /// Scenario: waits for the next scrape, on a paused clock: one with no scrape, one
    /// during which a rendering begun before it is answered (1 s in) and then a new one
    /// (3 s in), and a wait after a loss of none.
    /// Guarantees: without a scrape the wait ends at its bound and says so; only a
    /// rendering begun after the wait started ends it (with a moment for the answer to
    /// leave); nothing is waited for without a loss or with a zero bound.
    #[tokio::test(start_paused = true)]
    async fn the_next_scrape_is_waited_for_at_most_the_bound() {
        let scrapes = Arc::new(Scrapes::default());
        let start = tokio::time::Instant::now();
        assert!(!scrapes.next(std::time::Duration::from_secs(10)).await);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
        // A rendering begun before the wait and answered during it does not count.
        let early = scrapes.begin();
        let answering = {
            let scrapes = scrapes.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                scrapes.answered(early);
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let number = scrapes.begin();
                scrapes.answered(number);
            })
        };
        let start = tokio::time::Instant::now();
        assert!(scrapes.next(std::time::Duration::from_secs(10)).await);
        assert_eq!(
            start.elapsed(),
            std::time::Duration::from_secs(3) + LAST_ANSWER_FLUSH
        );
        answering.await.unwrap();
        assert_eq!(scrapes.count(), 2);
        let start = tokio::time::Instant::now();
        scrapes
            .after_loss(0, std::time::Duration::from_secs(10))
            .await;
        scrapes.after_loss(5, std::time::Duration::ZERO).await;
        assert_eq!(start.elapsed(), std::time::Duration::ZERO);
    }

    /// Scenario: a histogram given as Prometheus shows it (cumulative counts, no +Inf
    /// bucket), one with a summary's sum and count only, and a counter, in both formats.
    /// Guarantees: buckets come out cumulative as given, +Inf holds the count, the sum is
    /// kept; a counter is typed under `_total` in the text format and without it in
    /// OpenMetrics, which ends with `# EOF`.
    #[test]
    fn histograms_and_counters_encode_as_given() {
        let text = |format| {
            let mut p = PromText::default();
            p.header("lat_seconds", "histogram", "Latency.");
            p.histogram("lat_seconds", &[], &[(0.5, 2), (1.0, 5)], 3.25, 7);
            p.header("eval_seconds", "histogram", "Evaluation.");
            p.histogram("eval_seconds", &[("policy", "p")], &[], 0.5, 4);
            p.metric("spans_total", "counter", "Spans.", &[], 9);
            p.encode(format)
        };
        let prom = text(MetricsFormat::Prometheus);
        for line in [
            "lat_seconds_bucket{le=\"0.5\"} 2\n",
            "lat_seconds_bucket{le=\"1\"} 5\n",
            "lat_seconds_bucket{le=\"+Inf\"} 7\n",
            "lat_seconds_sum 3.25\n",
            "lat_seconds_count 7\n",
            "eval_seconds_bucket{policy=\"p\",le=\"+Inf\"} 4\n",
            "eval_seconds_sum{policy=\"p\"} 0.5\n",
            "# TYPE spans_total counter\nspans_total 9\n",
        ] {
            assert!(prom.contains(line), "{line:?} not in\n{prom}");
        }
        let om = text(MetricsFormat::OpenMetrics);
        assert!(om.contains("# TYPE spans counter\nspans_total 9\n"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

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
