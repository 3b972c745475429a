#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The admin server answers as the Collector's health_check extension at `/` (so probes
//! copied from a Collector chart work) and serves `/metrics` in the format the scraper asks
//! for: the Prometheus text format, or OpenMetrics when `Accept` names it.

use std::sync::Arc;

use tailgate_core::telemetry::{serve_admin, Admin, PromText, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Fake(Readiness);

impl Admin for Fake {
    fn render_metrics(&self) -> PromText {
        let mut p = PromText::default();
        // A label value a policy or exporter name may hold: quotes, a backslash, a newline.
        p.metric(
            "x_total",
            "counter",
            "An x.",
            &[("policy", "a\"b\\c\nd")],
            1,
        );
        p.metric("y_bytes", "gauge", "A y.", &[], 7);
        p
    }
    fn ready(&self) -> bool {
        self.0.get()
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    get_with(addr, path, "").await.to_ascii_lowercase()
}

/// The raw response to a GET with `headers` (each line ending in \r\n).
async fn get_with(addr: std::net::SocketAddr, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// Scenario: `/` and `/metrics` while ready and not ready.
/// Guarantees: `/` is 200 with the health_check's JSON when ready and 503 when not;
/// `/metrics` carries `text/plain; version=0.0.4`, which Prometheus 3 requires.
#[tokio::test]
async fn root_answers_as_the_collector_health_check() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Arc::new(Fake(Readiness::default()));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_admin(
        listener,
        admin.clone(),
        stop.clone().cancelled_owned(),
    ));

    let r = get(addr, "/").await;
    assert!(r.starts_with("http/1.1 503"), "{r}");
    assert!(r.contains("server not available"), "{r}");
    admin.0.set(true);
    let r = get(addr, "/").await;
    assert!(r.starts_with("http/1.1 200"), "{r}");
    assert!(
        r.contains("content-type: application/json")
            && r.contains("\"status\":\"server available\""),
        "{r}"
    );
    let r = get(addr, "/metrics").await;
    assert!(r.contains("content-type: text/plain; version=0.0.4"), "{r}");
    stop.cancel();
}

/// Scenario: `/metrics` asked for without `Accept` (curl, Prometheus 2 with the classic
/// format), and with Prometheus's own `Accept` header, over a label value holding a quote,
/// a backslash and a newline.
/// Guarantees: the Prometheus text format (counters typed under their `_total` name, no
/// `# EOF`) by default; OpenMetrics with its content type, counter families without
/// `_total`, and the closing `# EOF` when asked; label values escaped in both, so an odd
/// policy name cannot break a scrape.
#[tokio::test]
async fn metrics_are_negotiated_and_escaped() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_admin(
        listener,
        Arc::new(Fake(Readiness::default())),
        stop.clone().cancelled_owned(),
    ));
    let escaped = r#"x_total{policy="a\"b\\c\nd"} 1"#;

    let r = get_with(addr, "/metrics", "").await;
    assert!(
        r.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{r}"
    );
    assert!(r.contains("# TYPE x_total counter\n"), "{r}");
    assert!(r.contains(escaped), "{r}");
    assert!(r.contains("# TYPE y_bytes gauge\ny_bytes 7\n"), "{r}");
    assert!(!r.contains("# EOF"), "{r}");

    let prometheus_accept = "Accept: application/openmetrics-text;version=1.0.0;q=0.5,\
        application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.1\r\n";
    let r = get_with(addr, "/metrics", prometheus_accept).await;
    assert!(
        r.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{r}"
    );
    assert!(r.contains("# TYPE x counter\n"), "{r}");
    assert!(r.contains(escaped), "{r}");
    assert!(r.trim_end().ends_with("# EOF"), "{r}");
    stop.cancel();
}

/// Scenario: 256 connections to the admin port that send nothing (probes gone wrong, or a
/// flood), then a scrape on a 257th, then ten of the silent ones close.
/// Guarantees: operations.md's "256 per admin port; more wait in the backlog": the scrape
/// is not served while 256 are open (it waits, not refused), and is answered as soon as
/// some close, well before the silent ones' 5 s would have closed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_port_serves_256_connections_and_queues_the_rest() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Arc::new(Fake(Readiness::default()));
    admin.0.set(true);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_admin(listener, admin, stop.clone().cancelled_owned()));
    let started = tokio::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..256 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut scrape = TcpStream::connect(addr).await.unwrap();
    scrape
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    let waited = tokio::time::timeout(
        std::time::Duration::from_millis(800),
        scrape.read_exact(&mut first),
    )
    .await;
    assert!(waited.is_err(), "served with 256 connections open");
    silent.truncate(246);
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        scrape.read_exact(&mut first),
    )
    .await;
    assert!(
        matches!(answered, Ok(Ok(_))),
        "not served once ten closed: {answered:?}"
    );
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(4500),
        "served only when the silent ones timed out: {:?}",
        started.elapsed()
    );
    drop(silent);
    stop.cancel();
}
