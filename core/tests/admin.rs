#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! The admin server answers as the Collector's health_check extension at `/` (so probes
//! copied from a Collector chart work) and serves `/metrics` with Prometheus' content type.

use std::sync::Arc;

use tailgate_core::telemetry::{serve_admin, Admin, Readiness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Fake(Readiness);

impl Admin for Fake {
    fn render_metrics(&self) -> String {
        "# TYPE x counter\nx 1\n".into()
    }
    fn ready(&self) -> bool {
        self.0.get()
    }
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.to_ascii_lowercase()
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
    assert!(r.contains("x 1"), "{r}");
    stop.cancel();
}
