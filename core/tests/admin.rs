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

/// Scenario: four addresses (127.0.0.2-5) open 64 connections to the admin port that
/// send nothing (a flood, or probes gone wrong), 16 each, as many as the port serves;
/// then a probe from another address (127.0.0.1, a kubelet); then one more connection
/// from each flooding address.
/// Guarantees: the probe is answered at once, a silent connection of the heaviest sender
/// giving up its slot (before, it waited until the silent ones' 5 s, and 300 idle HTTP/2
/// connections from one address kept probes out for good); flooding addresses that hold
/// their share get no more slots (closed at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_cannot_keep_a_probe_off_the_admin_port() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = Arc::new(Fake(Readiness::default()));
    admin.0.set(true);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_admin(listener, admin, stop.clone().cancelled_owned()));
    let from = |last: u8| tailgate_core::test_util::connect_from(last, addr);
    let mut silent = Vec::new();
    for last in 2..=5u8 {
        for _ in 0..16 {
            silent.push(from(last).await.unwrap());
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        probe.read_exact(&mut first),
    )
    .await;
    assert!(matches!(answered, Ok(Ok(_))), "not served: {answered:?}");
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "served only when the silent ones timed out: {:?}",
        started.elapsed()
    );
    // One more from each flooding address: the one that gave a slot up may take the
    // slot the probe freed; the three others hold their share and are closed at once.
    let mut closed = 0;
    let mut more = Vec::new();
    for last in 2..=5u8 {
        let mut c = from(last).await.unwrap();
        let mut buf = [0u8; 4];
        let read = tokio::time::timeout(std::time::Duration::from_millis(500), c.read(&mut buf));
        closed += usize::from(matches!(read.await, Ok(Ok(0) | Err(_))));
        more.push(c);
    }
    assert!(
        closed >= 3,
        "flooding addresses took more slots: {closed} of 4 closed"
    );
    drop((silent, more));
    stop.cancel();
}
