#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! DNS discovery against a real DNS server on loopback whose records change.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::members::DnsConfig;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, DnsZone, FakeOtlp};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NAME: &str = "gateways.tailgate.test.";

fn members(router: &Router) -> Vec<String> {
    router
        .ring_state()
        .ring
        .members()
        .iter()
        .map(|m| m.to_string())
        .collect()
}

async fn wait_for(router: &Router, want: &[String], within: Duration) -> Duration {
    let start = Instant::now();
    while members(router) != want {
        assert!(
            start.elapsed() < within,
            "ring is {:?}, wanted {want:?} within {within:?}",
            members(router)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Scenario: a router discovers three "pods" (capturing backends on 127.0.0.21-23, one
/// port) through a DNS server on loopback; the records grow from two to three addresses;
/// then the server fails.
/// Guarantees: the ring follows a change within two intervals (plus one lookup), traffic
/// reaches the new owner, and a failing server leaves the ring and routing unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_follows_dns_and_keeps_the_last_good_set() {
    let stop = CancellationToken::new();
    // Three pods on one port, as a headless Service's endpoints.
    let (first, b1) = CaptureBackend::start("127.0.0.21:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let port = first.port();
    let (_, b2) = CaptureBackend::start(SocketAddr::from(([127, 0, 0, 22], port)), stop.clone())
        .await
        .unwrap();
    let (_, b3) = CaptureBackend::start(SocketAddr::from(([127, 0, 0, 23], port)), stop.clone())
        .await
        .unwrap();

    let (dns_addr, zone) = DnsZone::start("127.0.0.1:0".parse().unwrap(), NAME, stop.clone())
        .await
        .unwrap();
    zone.set(vec![
        Ipv4Addr::new(127, 0, 0, 21),
        Ipv4Addr::new(127, 0, 0, 22),
    ]);

    let interval = Duration::from_millis(300);
    let mut dns = DnsConfig::new(NAME);
    dns.port = port;
    dns.interval = interval;
    dns.timeout = Duration::from_millis(500);
    dns.nameservers = vec![dns_addr];
    let config = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some("127.0.0.1:0".parse().unwrap()),
            http: None,
            ..Default::default()
        },
        members: MembersConfig {
            static_list: Vec::new(),
            dns: Some(dns),
        },
        forward: ForwardConfig::default(),
        admin: None,
        metrics: None,
    };
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let router = Router::new(config.forward.clone());
    let task = {
        let (router, stop) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            tailgate_router::run(
                router,
                &config,
                listeners,
                None,
                Duration::from_secs(5),
                stop,
            )
            .await
        })
    };

    let pod = |i: u8| format!("127.0.0.{i}:{port}");
    let slack = 2 * interval + Duration::from_secs(1);
    wait_for(&router, &[pod(21), pod(22)], slack + Duration::from_secs(2)).await;

    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let send = |seed: u64| FakeOtlp::traces(60).spans(3).seed(seed).build();
    client.export(send(1)).await.unwrap();

    zone.set(vec![
        Ipv4Addr::new(127, 0, 0, 21),
        Ipv4Addr::new(127, 0, 0, 22),
        Ipv4Addr::new(127, 0, 0, 23),
    ]);
    let took = wait_for(&router, &[pod(21), pod(22), pod(23)], slack).await;
    assert!(took <= slack, "followed in {took:?}");

    client.export(send(2)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while router.pending_spans() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(b3.spans() > 0, "the new pod received no traffic");
    assert_eq!(b1.spans() + b2.spans() + b3.spans(), 2 * 60 * 3);

    // The DNS server fails: the last good set stays, and failures are counted.
    zone.set_failing(true);
    tokio::time::sleep(3 * interval).await;
    assert_eq!(members(&router), vec![pod(21), pod(22), pod(23)]);
    assert!(router.stats().discovery.failures.get() > 0);
    // What operators watch is exported, with the counters' values.
    let text = tailgate_core::telemetry::Admin::render_metrics(&*router).finish();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    let s = router.stats();
    assert_eq!(
        value("tailgate_router_dns_lookups_total"),
        s.discovery.lookups.get()
    );
    assert_eq!(
        value("tailgate_router_dns_failures_total"),
        s.discovery.failures.get()
    );
    assert!(value("tailgate_router_dns_changes_total") >= 2);
    assert!(value("tailgate_router_ring_changes_total") >= 2);
    assert_eq!(value("tailgate_router_healthy_members"), 3);

    stop.cancel();
    task.await.unwrap().unwrap();
}
