#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Forwarding under failure: full queues refuse whole requests; a dead gateway is routed
//! around and rejoins when it answers again.

use std::net::SocketAddr;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use tailgate_core::forward::RetryConfig;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_router::config::{ForwardConfig, MembersConfig};
use tailgate_router::{Router, RouterConfig};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A router config receiving gRPC on `grpc`, forwarding to `members`.
fn config_for(members: Vec<String>, forward: ForwardConfig, grpc: &str) -> RouterConfig {
    RouterConfig {
        receive: ReceiveConfig {
            grpc: Some(grpc.parse().unwrap()),
            http: None,
            ..Default::default()
        },
        members: MembersConfig {
            static_list: members,
            dns: None,
        },
        forward,
        admin: None,
        metrics: None,
    }
}

async fn start_router(
    members: Vec<String>,
    forward: ForwardConfig,
    stop: &CancellationToken,
) -> (SocketAddr, std::sync::Arc<Router>) {
    let config = config_for(members, forward, "127.0.0.1:0");
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let router = Router::new(config.forward.clone());
    let (r, s) = (router.clone(), stop.clone());
    let n = config.members.static_list.len();
    tokio::spawn(async move {
        tailgate_router::run(r, &config, listeners, None, Duration::from_secs(2), s).await
    });
    members_known(&router, n).await;
    (addr, router)
}

/// Retries 10 to 20 ms apart for at most 100 ms, and no probe for a minute: a refusing
/// gateway's parts are past their retry bound within a few attempts.
fn fast_retries() -> ForwardConfig {
    ForwardConfig {
        retry: RetryConfig {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(20),
            max_elapsed_time: FAST_BOUND,
        },
        probe_interval: Duration::from_secs(60),
        ..ForwardConfig::default()
    }
}

/// The retry bound of [`fast_retries`].
const FAST_BOUND: Duration = Duration::from_millis(100);

/// Waits until `gw`, refusing for memory, has refused parts for `bounds` times the retry
/// bound of [`fast_retries`] (at least three refusals: its hint spaces them 100 ms apart),
/// checking all along that `router` gave none up.
async fn held_past_the_bound(gw: &CaptureBackend, router: &Router, bounds: u32) {
    let since = Instant::now();
    held_until(
        || gw.overload_refusals() >= 3 && since.elapsed() >= FAST_BOUND * bounds,
        router,
    )
    .await;
}

/// Polls until `done`, checking all along that `router` gave no part up; at most 10 s.
async fn held_until(done: impl Fn() -> bool, router: &Router) {
    let since = Instant::now();
    while !done() {
        assert_eq!(
            router.stats().failed_spans.get(),
            0,
            "parts refused for memory are held"
        );
        assert!(since.elapsed() < Duration::from_secs(10), "no refusals");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A capture backend taking requests of at most `limit` at `addr`, started as soon as the
/// address is free (a gateway restarting there: the old listener goes as its token is
/// cancelled), within 20 s; stopped with `stop`.
async fn restart_at(
    addr: SocketAddr,
    limit: usize,
    stop: &CancellationToken,
) -> std::sync::Arc<CaptureBackend> {
    let started = Instant::now();
    loop {
        match CaptureBackend::start_taking(addr, limit, stop.clone()).await {
            Ok((_, backend)) => return backend,
            Err(e) => assert!(started.elapsed() < Duration::from_secs(20), "{e}"),
        }
        tokio::task::yield_now().await;
    }
}

/// Waits (10 s at most) until `router` knows `n` members (set as it starts).
async fn members_known(router: &Router, n: usize) {
    // Members, not the ring: one found unreachable at its greeting is off the ring.
    until(
        Duration::from_secs(10),
        || format!("{} members known of {n}", router.stats().members.get()),
        || router.stats().members.get() >= n as u64,
    )
    .await;
}

/// An address nothing listens on.
async fn dead_address(ip: [u8; 4]) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .unwrap();
    l.local_addr().unwrap()
}

/// A gateway at `ip` (an address of its own) to be stopped with the token: for a router
/// to greet before it goes ([`gone_after_greeting`]).
async fn going_gateway(ip: [u8; 4]) -> (SocketAddr, CancellationToken) {
    let going = CancellationToken::new();
    let (addr, _) = CaptureBackend::start(SocketAddr::from((ip, 0)), going.clone())
        .await
        .unwrap();
    (addr, going)
}

/// Waits (5 s at most) until `router` has greeted its gateway at `addr` and is ready, then
/// stops that gateway and waits until its address refuses connections: requests the router
/// accepts from then on are for a gateway it will find unreachable only when it sends
/// them (it greets each gateway when it learns of it, so one unreachable from the start is
/// marked down before any request).
async fn gone_after_greeting(router: &Router, addr: SocketAddr, going: CancellationToken) {
    until(
        Duration::from_secs(5),
        || "router not ready".into(),
        || router.gateways_greeted() && tailgate_core::telemetry::Admin::ready(router),
    )
    .await;
    going.cancel();
    // A loopback connect is answered at once: refused once the listener is closed.
    until(
        Duration::from_secs(5),
        || "still taking connections".into(),
        || std::net::TcpStream::connect(addr).is_err(),
    )
    .await;
}

/// An address that accepts connections and never answers on them.
async fn silent_address(ip: [u8; 4], stop: &CancellationToken) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(SocketAddr::from((ip, 0)))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    let stop = stop.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((s, _)) => held.push(s),
                    Err(_) => return,
                },
                () = stop.cancelled() => return,
            }
        }
    });
    addr
}

/// A router in front of one gateway, a [`CaptureBackend`] on `gateway` (`ip:0`): the
/// router's address, the router and the backend.
async fn with_one_gateway(
    gateway: &str,
    forward: ForwardConfig,
    stop: &CancellationToken,
) -> (
    SocketAddr,
    std::sync::Arc<Router>,
    std::sync::Arc<CaptureBackend>,
) {
    let (backend_addr, backend) = CaptureBackend::start(gateway.parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let (addr, router) = start_router(vec![backend_addr.to_string()], forward, stop).await;
    (addr, router, backend)
}

fn spans(req: &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len() as u64)
        .sum()
}

/// Scenario: the only gateway takes connections but never answers, its queue holds 20 KB,
/// and a request may wait 300 ms for room; requests keep coming.
/// Guarantees (issue 19 item 1): once the queue is full, a new request is held unread for
/// `queue_wait` and then refused with RESOURCE_EXHAUSTED and a retry hint; none of its
/// spans was read (received spans do not grow), and everything read is queued, sent or
/// failed, never refused after being read (queued + failed + forwarded = received).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_holds_requests_unread_then_refuses_them() {
    let stop = CancellationToken::new();
    let dead = silent_address([127, 0, 0, 31], &stop).await;
    let forward = ForwardConfig {
        queue_bytes: 20_000,
        max_queued_bytes: 1 << 20,
        queue_wait: Duration::from_millis(300),
        retry: RetryConfig {
            initial_interval: Duration::from_millis(50),
            max_interval: Duration::from_millis(100),
            max_elapsed_time: Duration::from_secs(30),
        },
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(vec![dead.to_string()], forward, &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut refused = None;
    let mut sent = 0;
    for seed in 0..50 {
        let req = FakeOtlp::traces(10).spans(4).seed(seed).build();
        let before = router.stats().received_spans.get();
        let asked = Instant::now();
        match client.export(req.clone()).await {
            Ok(_) => sent += spans(&req),
            Err(status) => {
                refused = Some((status, asked.elapsed(), before));
                break;
            }
        }
    }
    let (status, waited, before) = refused.expect("the queue never filled");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(tailgate_core::receive::status::retry_delay(&status).is_some());
    assert!(
        waited >= Duration::from_millis(300),
        "refused after {waited:?}"
    );
    let s = router.stats();
    assert_eq!(
        s.received_spans.get(),
        before,
        "the refused request was read"
    );
    assert_eq!(s.received_spans.get(), sent);
    assert_eq!(s.refused_spans.get(), 0);
    assert_eq!(s.refused_unread_requests.get(), 1);
    assert!(s.held_requests.get() >= 1);
    assert_eq!(
        router.pending_spans() + s.failed_spans.get() + s.forwarded_spans.get(),
        sent
    );
    stop.cancel();
}

/// Waits until `done` holds, failing with `what` after `within`. These tests run real
/// sockets against real backends, whose state is polled: a paused clock would race the
/// clients' and forwarders' timers through while their I/O is pending. Timers are tested
/// on a paused clock in the router's unit tests.
async fn until(within: Duration, what: impl Fn() -> String, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{}", what());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Scenario: the only gateway answers UNAVAILABLE for a while (its forwarder keeps
/// retrying, so its 20 KB queue fills), then recovers; a request may wait 10 s for room;
/// one sender keeps sending.
/// Guarantees: a request that finds the queue full is held unread, and taken once room
/// comes back: its sender was slowed, not refused, and every span arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_goes_on_when_room_comes_back() {
    let stop = CancellationToken::new();
    let (live_addr, live) = CaptureBackend::start("127.0.0.37:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    live.set_unavailable(true);
    let forward = ForwardConfig {
        queue_bytes: 20_000,
        max_queued_bytes: 1 << 20,
        queue_wait: Duration::from_secs(10),
        max_in_flight: 1,
        retry: RetryConfig {
            initial_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(50),
            max_elapsed_time: Duration::from_secs(30),
        },
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(vec![live_addr.to_string()], forward, &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let sender = tokio::spawn(async move {
        let mut sent = 0;
        for seed in 0..30 {
            let req = FakeOtlp::traces(10).spans(4).seed(seed).build();
            client.export(req.clone()).await?;
            sent += spans(&req);
        }
        Ok::<u64, tonic::Status>(sent)
    });
    until(
        Duration::from_secs(10),
        || "no request was held".into(),
        || router.stats().held_requests.get() > 0,
    )
    .await;
    live.set_unavailable(false);
    let sent = sender.await.unwrap().expect("a held request was refused");
    let s = router.stats();
    until(
        Duration::from_secs(10),
        || format!("{} of {sent}", live.spans()),
        || live.spans() >= sent,
    )
    .await;
    assert_eq!(live.spans(), sent);
    assert_eq!(s.received_spans.get(), sent);
    assert_eq!(s.refused_unread_requests.get(), 0);
    assert_eq!(s.refused_spans.get() + s.failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: two gateways, one of them frozen (a paused or hung process: its kernel
/// completes connections, nothing reads or answers), at the default `forward.timeout`
/// (5 s) and retry bound (30 s); load keeps coming.
/// Guarantees: the frozen gateway is marked down within seconds (it answers no HTTP/2
/// ping), not after the retry bound (a black-box trial with a SIGSTOPped gateway saw
/// the router retry into it for 30 s, refusing every sender meanwhile and counting its
/// spans failed), already at the router's greeting, before any request (a review found
/// the greeting left it up); its parts go to the live gateway; nothing is counted failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_gateway_is_routed_around_within_seconds() {
    let stop = CancellationToken::new();
    let (live_addr, live) = CaptureBackend::start("127.0.0.52:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let frozen = std::net::TcpListener::bind("127.0.0.53:0").unwrap();
    let frozen_addr = frozen.local_addr().unwrap();
    let (addr, router) = start_router(
        vec![live_addr.to_string(), frozen_addr.to_string()],
        ForwardConfig::default(),
        &stop,
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    until(
        Duration::from_secs(12),
        || "the greeting left the frozen gateway up".into(),
        || router.ring_state().ring.members().len() == 1,
    )
    .await;
    let mut sent = 0;
    for seed in 0..20 {
        let req = FakeOtlp::traces(20).spans(2).seed(seed).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    until(
        Duration::from_secs(12),
        || "spans are still pending".into(),
        || router.pending_spans() == 0,
    )
    .await;
    let s = router.stats();
    assert_eq!(s.failed_spans.get(), 0);
    assert_eq!(s.forwarded_spans.get(), sent);
    assert_eq!(live.spans(), sent);
    drop(frozen);
    stop.cancel();
}

/// Scenario: two gateways, one of which is down; load keeps coming; later the dead one
/// comes up.
/// Guarantees: the dead gateway is marked down (at the router's greeting, before any part
/// is queued for it, or at a failed send) and its traces go to the other one (queued parts
/// re-split, not dropped); every span is delivered or counted failed; when it
/// answers again it rejoins the ring and receives traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_gateway_is_routed_around_and_rejoins() {
    let stop = CancellationToken::new();
    let (live_addr, live) = CaptureBackend::start("127.0.0.32:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let dead = dead_address([127, 0, 0, 33]).await;
    let forward = ForwardConfig {
        retry: RetryConfig {
            initial_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(50),
            max_elapsed_time: Duration::from_millis(200),
        },
        probe_interval: Duration::from_millis(200),
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(
        vec![live_addr.to_string(), dead.to_string()],
        forward,
        &stop,
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while router.ring_state().ring.members().len() == 2 {
        assert!(
            Instant::now() < deadline,
            "the dead gateway was never marked down"
        );
        let req = FakeOtlp::traces(20).spans(2).seed(sent).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        router.ring_state().ring.members()[0].to_string(),
        live_addr.to_string()
    );
    // Everything sent from now on lands on the live gateway.
    for seed in 0..5 {
        let req = FakeOtlp::traces(20).spans(2).seed(1000 + seed).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    let settle = Instant::now() + Duration::from_secs(5);
    while router.pending_spans() > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = router.stats();
    assert_eq!(router.pending_spans(), 0);
    assert_eq!(s.forwarded_spans.get() + s.failed_spans.get(), sent);
    assert_eq!(live.spans(), s.forwarded_spans.get());

    // The dead gateway comes up: it is probed back into the ring and gets traffic.
    let (_, revived) = CaptureBackend::start(dead, stop.clone()).await.unwrap();
    until(
        Duration::from_secs(5),
        || "the gateway never rejoined".into(),
        || router.ring_state().ring.members().len() >= 2,
    )
    .await;
    client
        .export(FakeOtlp::traces(40).spans(2).seed(5000).build())
        .await
        .unwrap();
    let settle = Instant::now() + Duration::from_secs(5);
    while revived.spans() == 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revived.spans() > 0);
    stop.cancel();
}

/// Scenario: a request where some spans have an 8-byte or all-zero trace id.
/// Guarantees: the valid spans are forwarded; the others are rejected through OTLP partial
/// success with a message naming the defect, and counted as rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trace_ids_are_rejected_by_partial_success() {
    let stop = CancellationToken::new();
    let (addr, router, backend) =
        with_one_gateway("127.0.0.34:0", ForwardConfig::default(), &stop).await;
    let mut req = FakeOtlp::traces(5).spans(2).resources(1).build();
    let spans_list = &mut req.resource_spans[0].scope_spans[0].spans;
    spans_list[0].trace_id = vec![1; 8];
    spans_list[1].trace_id = vec![0; 16];
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let resp = client.export(req).await.unwrap().into_inner();
    let partial = resp.partial_success.expect("partial success");
    assert_eq!(partial.rejected_spans, 2);
    assert!(
        partial
            .error_message
            .contains("trace_id must be 16 bytes, found 8"),
        "{}",
        partial.error_message
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.spans() < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.spans(), 8);
    assert_eq!(router.stats().rejected_spans.get(), 2);
    assert!(tailgate_core::telemetry::Admin::render_metrics(&*router)
        .finish()
        .contains("tailgate_router_rejected_spans_total{reason=\"invalid_trace_id\"} 2"));
    stop.cancel();
}

/// Scenario: a request whose spans are all under OTLP's deprecated
/// `instrumentation_library_spans` (field 1000, as senders on OTLP before v0.15 write
/// them), all owned by the one gateway.
/// Guarantees: the gateway gets every span under `scope_spans`: the router re-frames such
/// a request rather than passing it on as it came (a review found it would pass, and a
/// gateway reading only `scope_spans` takes that as empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_under_the_deprecated_field_reach_the_gateway_under_scope_spans() {
    use prost::Message;
    let stop = CancellationToken::new();
    let (addr, router, backend) =
        with_one_gateway("127.0.0.34:0", ForwardConfig::default(), &stop).await;
    let req = FakeOtlp::traces(4).spans(3).resources(2).build();
    let mut body = Vec::new();
    for rs in &req.resource_spans {
        let mut inner = Vec::new();
        if let Some(resource) = &rs.resource {
            prost::encoding::message::encode(1, resource, &mut inner);
        }
        for scope in &rs.scope_spans {
            prost::encoding::message::encode(1000, scope, &mut inner);
        }
        prost::encoding::bytes::encode(1, &inner, &mut body);
    }
    let client = tailgate_core::forward::GrpcClient::new(
        &format!("http://{addr}"),
        &[],
        Duration::from_secs(5),
        RetryConfig::default(),
    )
    .unwrap();
    client.send_once(body.into()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.spans() < 12 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let under_scope_spans: u64 = backend
        .bodies()
        .iter()
        .map(|b| {
            spans(
                &opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
                    b.clone(),
                )
                .unwrap(),
            )
        })
        .sum();
    assert_eq!(under_scope_spans, 12);
    assert_eq!(router.stats().received_spans.get(), 12);
    stop.cancel();
}

/// Scenario: the only gateway is unreachable and retries give up fast, so it is marked down.
/// Guarantees (issue 14 item 5): from then on the router refuses new data with UNAVAILABLE
/// and a retry hint instead of accepting spans that can only fail, counts them refused, and
/// says not ready; `healthy_members` is 0 (a review found it kept at 1, so the alert on
/// healthy < members never fired in a total outage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_gateways_down_refuses_with_unavailable() {
    let stop = CancellationToken::new();
    let dead = dead_address([127, 0, 0, 34]).await;
    let forward = ForwardConfig {
        retry: RetryConfig {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(20),
            max_elapsed_time: Duration::from_millis(50),
        },
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(vec![dead.to_string()], forward, &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut refused = None;
    for seed in 0..1000 {
        assert!(started.elapsed() < Duration::from_secs(20), "never refused");
        match client
            .export(FakeOtlp::traces(2).spans(2).seed(seed).build())
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("the router kept accepting with every gateway down");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(tailgate_core::receive::status::retry_delay(&status).is_some());
    assert!(router.ring_state().forwarders.iter().all(|f| f.is_down()));
    assert!(!tailgate_core::telemetry::Admin::ready(router.as_ref()));
    assert!(router.stats().refused_spans.get() >= 4);
    // The alert on healthy < members must fire with the only gateway down.
    let text = tailgate_core::telemetry::Admin::render_metrics(&*router).finish();
    assert!(text.contains("tailgate_router_healthy_members 0"), "{text}");
    assert!(text.contains("tailgate_router_members 1"), "{text}");
    stop.cancel();
}

/// Scenario: the only gateway goes after the router greeted it; a request is accepted
/// before the router finds out, so its part waits in the down gateway's queue; then the
/// router drains with a short deadline.
/// Guarantees: the spans still queued at the deadline are counted failed (a docs audit
/// found them lost with the process and in no counter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_left_at_the_drain_deadline_are_counted_failed() {
    let stop = CancellationToken::new();
    let (dead, going) = going_gateway([127, 0, 0, 40]).await;
    let (addr, router) =
        start_router(vec![dead.to_string()], ForwardConfig::default(), &stop).await;
    gone_after_greeting(&router, dead, going).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let req = FakeOtlp::traces(3).spans(2).seed(42).build();
    let sent = spans(&req);
    client.export(req).await.unwrap();
    let started = Instant::now();
    while router.stats().failed_spans.get() == 0 && router.pending_spans() < sent {
        assert!(started.elapsed() < Duration::from_secs(5), "not queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    router.drain(Duration::from_millis(300)).await;
    assert_eq!(router.stats().failed_spans.get(), sent);
    assert_eq!(
        router.pending_spans(),
        0,
        "counted once: failed, no longer pending"
    );
    stop.cancel();
}

/// Exports three traces of two spans (`seed`) to the router at `addr` and waits (5 s at
/// most) until their spans are queued: how many, and when the wait began.
async fn export_queued(addr: SocketAddr, router: &Router, seed: u64) -> (u64, Instant) {
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let req = FakeOtlp::traces(3).spans(2).seed(seed).build();
    let sent = spans(&req);
    client.export(req).await.unwrap();
    let started = Instant::now();
    while router.pending_spans() < sent {
        assert!(started.elapsed() < Duration::from_secs(5), "not queued");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (sent, started)
}

/// Scenario: the only gateway is down (gone after the router greeted it) when the router
/// starts draining (deadline 20 s), with a request's part queued for it; it comes back 3 s
/// into the drain, on a paused clock.
/// Guarantees: the drain keeps trying until then instead of giving the part up at once (a
/// day-one check saw a router with every gateway down end its drain 5 ms after SIGTERM):
/// every span is delivered, none counted failed or re-routed, and the drain ends well before
/// its deadline.
#[tokio::test(start_paused = true)]
async fn a_drain_waits_for_a_gateway_that_comes_back() {
    let stop = CancellationToken::new();
    let (dead, going) = going_gateway([127, 0, 0, 41]).await;
    let (addr, router) =
        start_router(vec![dead.to_string()], ForwardConfig::default(), &stop).await;
    gone_after_greeting(&router, dead, going).await;
    let (sent, _) = export_queued(addr, &router, 43).await;
    let back = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            CaptureBackend::start(dead, stop).await.unwrap().1
        })
    };
    let draining = Instant::now();
    let lost = router.drain(Duration::from_secs(20)).await;
    let took = draining.elapsed();
    let gateway = back.await.unwrap();
    assert_eq!(lost, 0);
    assert_eq!(gateway.spans(), sent);
    assert_eq!(router.stats().failed_spans.get(), 0);
    // With no other gateway, nothing went elsewhere (restarts of the down forwarder
    // counted its parts as re-routed onto itself, about 24 times in a 20 s drain).
    assert_eq!(router.stats().rerouted_spans.get(), 0);
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(6),
        "drained in {took:?}"
    );
    stop.cancel();
}

/// Scenario: a router serving metrics, whose only gateway is unreachable (gone after the
/// router greeted it), is stopped with a 1 s drain deadline and a 30 s final scrape wait
/// while a request's part is queued.
/// Guarantees: the part is counted failed at the deadline, a scrape after it reads the
/// count (a day-one check saw it counted only as the process exited, so no alert could
/// see it), and the router ends soon after that scrape, not at the end of the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_given_up_at_the_drain_deadline_are_scraped_before_exit() {
    let stop = CancellationToken::new();
    let (dead, going) = going_gateway([127, 0, 0, 42]).await;
    let config = config_for(
        vec![dead.to_string()],
        ForwardConfig::default(),
        "127.0.0.42:0",
    );
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.42:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let router = Router::new(config.forward.clone());
    router.set_final_scrape_wait(Duration::from_secs(30));
    let running = {
        let (r, s) = (router.clone(), stop.clone());
        tokio::spawn(async move {
            tailgate_router::run(
                r,
                &config,
                listeners,
                Some(admin),
                Duration::from_secs(1),
                s,
            )
            .await
        })
    };
    members_known(&router, 1).await;
    gone_after_greeting(&router, dead, going).await;
    let (sent, started) = export_queued(addr, &router, 44).await;
    stop.cancel();
    let failed_line = format!("tailgate_router_failed_spans_total {sent}\n");
    let mut scraped = false;
    while !scraped && started.elapsed() < Duration::from_secs(10) {
        let metrics = scrape(admin_addr).await;
        scraped = metrics.contains(&failed_line);
        if !scraped {
            assert!(!running.is_finished(), "exited before the loss was scraped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(scraped, "the loss was scraped");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("exits soon after the scrape")
        .unwrap()
        .unwrap();
}

/// `/metrics` of an admin port, or "" when it does not answer.
async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let ask = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if s.write_all(ask).await.is_err() {
        return String::new();
    }
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok();
    out
}

/// Scenario: the only gateway refuses every part for memory (RESOURCE_EXHAUSTED with a
/// retry hint) for many times the router's retry bound; then it takes requests again.
/// Guarantees: the refused parts are held and retried, not given up (none counted failed:
/// the gateway is up and making room, and the senders were told their spans were taken);
/// the gateway is not marked down (down, the router would refuse every sender); once it
/// takes requests again every span is delivered, the held ones and new ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refusing_for_memory_gets_its_parts_once_it_has_room() {
    let stop = CancellationToken::new();
    let (gw_addr, gw) = CaptureBackend::start("127.0.0.37:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    gw.set_overloaded(true);
    let (addr, router) = start_router(vec![gw_addr.to_string()], fast_retries(), &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let s = router.stats();
    let started = Instant::now();
    for seed in 0..3 {
        let req = FakeOtlp::traces(5).spans(2).seed(800 + seed).build();
        client.export(req).await.unwrap();
    }
    held_past_the_bound(&gw, &router, 8).await;
    assert_eq!(s.failed_spans.get(), 0, "parts refused for memory are held");
    assert_eq!(gw.spans(), 0);
    let text = tailgate_core::telemetry::Admin::render_metrics(&*router).finish();
    assert!(text.contains("tailgate_router_healthy_members 1"), "{text}");
    gw.set_overloaded(false);
    let req = FakeOtlp::traces(5).spans(2).seed(900).build();
    client.export(req).await.unwrap();
    while gw.spans() < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not delivered: {}",
            gw.spans()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(gw.spans(), 40);
    assert_eq!(s.failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: the only gateway refuses every part for memory, so the router holds them past
/// its 100 ms retry bound; the router starts draining (deadline 5 s) and the gateway takes
/// requests again 300 ms into the drain.
/// Guarantees: the held parts are delivered, none failed (an overload check found them
/// given up at the start of the drain, seconds before its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_held_for_memory_are_held_through_a_drain() {
    let stop = CancellationToken::new();
    let (gw_addr, gw) = CaptureBackend::start("127.0.0.41:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    gw.set_overloaded(true);
    let forward = fast_retries();
    let (addr, router) = start_router(vec![gw_addr.to_string()], forward, &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let req = FakeOtlp::traces(5).spans(2).seed(77).build();
    let sent = spans(&req);
    client.export(req).await.unwrap();
    held_past_the_bound(&gw, &router, 4).await;
    let draining = {
        let router = router.clone();
        tokio::spawn(async move { router.drain(Duration::from_secs(5)).await })
    };
    // Refused twice more while draining, and none given up: the drain keeps holding.
    let refused = gw.overload_refusals();
    held_until(|| gw.overload_refusals() >= refused + 2, &router).await;
    gw.set_overloaded(false);
    tokio::time::timeout(Duration::from_secs(10), draining)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(gw.spans(), sent);
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: two gateways; one refuses every part for memory, so the router holds its
/// parts (past a 100 ms retry bound); then it leaves the ring (scaled down), still refusing.
/// Guarantees: the parts held for it go to their traces' new owner, the other gateway:
/// every span delivered there, none counted failed (a review found them given up and
/// counted failed once the leaving gateway's forwarder closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_held_for_a_gateway_that_leaves_go_to_the_new_owners() {
    let stop = CancellationToken::new();
    let (full_addr, full) = CaptureBackend::start("127.0.0.38:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let (live_addr, live) = CaptureBackend::start("127.0.0.39:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    full.set_overloaded(true);
    let forward = fast_retries();
    let (addr, router) = start_router(
        vec![full_addr.to_string(), live_addr.to_string()],
        forward,
        &stop,
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for seed in 0..4 {
        let req = FakeOtlp::traces(20).spans(2).seed(600 + seed).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    held_past_the_bound(&full, &router, 3).await;
    assert!(
        live.spans() < sent,
        "some traces belong to the refusing gateway"
    );
    router.set_members(vec![tailgate_core::ring::Member::new(
        live_addr.to_string(),
    )]);
    while live.spans() < sent {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of {sent} delivered, {} failed",
            live.spans(),
            router.stats().failed_spans.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(live.spans(), sent);
    assert_eq!(full.spans(), 0);
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: two gateways, one of which refuses connections (gone after the router greeted
/// it), with a 30 s retry bound; a few requests arrive.
/// Guarantees (issue 14 item 5): the refusing gateway is marked down at its first refused
/// connection, not after two 30 s give-ups, and the parts that were on their way to it are
/// re-routed to the live gateway: every span delivered within seconds, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_marks_a_gateway_down_at_once_and_reroutes() {
    let stop = CancellationToken::new();
    let (live_addr, live) = CaptureBackend::start("127.0.0.35:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let (dead, going) = going_gateway([127, 0, 0, 36]).await;
    let forward = ForwardConfig {
        retry: RetryConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_secs(1),
            max_elapsed_time: Duration::from_secs(30),
        },
        probe_interval: Duration::from_secs(60),
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(
        vec![live_addr.to_string(), dead.to_string()],
        forward,
        &stop,
    )
    .await;
    gone_after_greeting(&router, dead, going).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for seed in 0..5 {
        let req = FakeOtlp::traces(20).spans(2).seed(700 + seed).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    let s = router.stats();
    while s.forwarded_spans.get() < sent || router.pending_spans() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "delivered {} of {sent}: {} failed, {} pending, {} rerouted",
            s.forwarded_spans.get(),
            s.failed_spans.get(),
            router.pending_spans(),
            s.rerouted_spans.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live.spans(), sent);
    assert_eq!(router.ring_state().ring.members().len(), 1);
    assert_eq!(s.failed_spans.get(), 0);
    assert!(s.rerouted_spans.get() > 0);
    let text = tailgate_core::telemetry::Admin::render_metrics(&*router).finish();
    assert!(
        text.contains(&format!(
            "tailgate_router_rerouted_spans_total {}",
            s.rerouted_spans.get()
        )),
        "{text}"
    );
    assert!(text.contains("tailgate_router_healthy_members 1"), "{text}");
    let build = format!(
        "tailgate_build_info{{version=\"{}\",commit=\"",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        text.contains(&build) && text.contains("component=\"router\"} 1"),
        "{text}"
    );
    assert_eq!(s.forwarded_spans.get(), sent);
    assert_eq!(router.pending_spans(), 0);
    stop.cancel();
}

/// Scenario: a router with one live gateway is stopped with a 2 s drain deadline while a
/// client holds an OTLP/HTTP request open (it announced 100 KB, sent 10 bytes and stalls;
/// the receive timeout is the default 30 s), after a gRPC request it took.
/// Guarantee: the stalled request does not hold the drain: the router stops within its
/// deadline, and what it took reached the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_does_not_hold_the_routers_drain() {
    let stop = CancellationToken::new();
    let (gw_addr, gateway) = CaptureBackend::start("127.0.0.38:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let config = RouterConfig {
        receive: ReceiveConfig {
            grpc: Some("127.0.0.39:0".parse().unwrap()),
            http: Some("127.0.0.39:0".parse().unwrap()),
            ..Default::default()
        },
        members: MembersConfig {
            static_list: vec![gw_addr.to_string()],
            dns: None,
        },
        forward: ForwardConfig::default(),
        admin: None,
        metrics: None,
    };
    let listeners = Listeners::bind(&config.receive).await.unwrap();
    let (addr, http) = (
        listeners.grpc_addr().unwrap(),
        listeners.http_addr().unwrap(),
    );
    let router = Router::new(config.forward.clone());
    let shutdown = CancellationToken::new();
    let (r, s) = (router.clone(), shutdown.clone());
    let served = tokio::spawn(async move {
        tailgate_router::run(r, &config, listeners, None, Duration::from_secs(2), s).await
    });
    members_known(&router, 1).await;
    let req = FakeOtlp::traces(5).spans(2).seed(91).build();
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.export(req.clone()).await.unwrap();
    let stalled = tailgate_core::test_util::stalled_upload(http)
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    shutdown.cancel();
    served.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stalled request held the drain for {:?}",
        started.elapsed()
    );
    assert_eq!(gateway.spans(), spans(&req));
    drop(stalled);
    stop.cancel();
}

/// Scenario: one 3 MB request of 100,000 one-span traces (what a gateway with a 64 MiB
/// buffer once refused on every retry when a router forwarded it whole, after its sender
/// was told OK), through a router with `forward.max_request_bytes` 256 KiB to one gateway.
/// Guarantees: the gateway receives every span once, in requests of at most 256 KiB each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_request_reaches_a_gateway_cut_to_its_request_size() {
    use prost::Message as _;
    let stop = CancellationToken::new();
    let (addr, router, backend) = with_one_gateway(
        "127.0.0.40:0",
        ForwardConfig {
            max_request_bytes: 256 << 10,
            ..ForwardConfig::default()
        },
        &stop,
    )
    .await;
    const N: u32 = 100_000;
    let req = tailgate_core::test_util::bare_spans(N, 7);
    assert!(req.encoded_len() > 2 << 20);
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
        .max_encoding_message_size(16 << 20);
    client.export(req).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.spans() < u64::from(N) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.spans(), u64::from(N));
    let bodies = backend.bodies();
    assert!(bodies.len() >= 12, "{} requests", bodies.len());
    assert!(
        bodies.iter().all(|b| b.len() <= 256 << 10),
        "largest {}",
        bodies.iter().map(|b| b.len()).max().unwrap_or(0)
    );
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: a gateway that refuses requests over 8 KiB for good as too large
/// (`RESOURCE_EXHAUSTED` without a retry hint, as one with a small `receive.max_request_bytes`
/// or buffer does) behind a router gathering parts up to its default 512 KiB; senders send
/// requests of about 30 KB, then one with a span larger than the gateway takes alone.
/// Guarantees: the refused requests are split and sent again, so every span the gateway
/// can take arrives once (before the fix, each refused request's spans were counted failed
/// after the senders were told OK); the router learns the size (later requests are cut
/// to it: half a refused one's, as the refusals state no limit, and the larger limit the
/// answers state does not undo it); only the span too large alone is counted failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_refusing_requests_as_too_large_gets_them_cut_smaller() {
    let stop = CancellationToken::new();
    let (addr, router, backend) =
        with_one_gateway("127.0.0.43:0", ForwardConfig::default(), &stop).await;
    const LIMIT: usize = 8 << 10;
    backend.refuse_requests_over(Some(LIMIT));
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut sent = 0;
    // What the gateway's answer to the greeting states cuts none of these requests.
    assert!(
        router.request_cap().is_none_or(|cap| cap > 3 * LIMIT),
        "{:?}",
        router.request_cap()
    );
    let mut smallest = usize::MAX;
    for seed in 0..6 {
        let req = FakeOtlp::traces(60)
            .spans(4)
            .attrs(8)
            .seed(900 + seed)
            .build();
        smallest = smallest.min(prost::Message::encoded_len(&req));
        assert!(
            prost::Message::encoded_len(&req) > 3 * LIMIT,
            "{}",
            prost::Message::encoded_len(&req)
        );
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    let settled = |want: u64| {
        let (backend, router) = (backend.clone(), router.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while backend.spans() + router.stats().failed_spans.get() < want
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    settled(sent).await;
    assert_eq!(backend.spans(), sent);
    assert_eq!(router.stats().failed_spans.get(), 0);
    assert!(backend.too_large_requests() > 0, "nothing was refused");
    // Each refusal counted as one the router recovers from: it says it cuts them.
    assert_eq!(backend.cut_refusals(), backend.too_large_requests());
    // The router learnt a size: at most half a refused request's.
    let cap = router.request_cap().expect("a size was learnt");
    assert!(cap <= smallest / 2, "{cap}");
    let metrics = tailgate_core::telemetry::Admin::render_metrics(&*router).finish();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tailgate_router_member_too_large_requests_total{")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // The size learnt is on /metrics, per gateway.
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tailgate_router_member_request_cap_bytes{")
                && l.ends_with(&format!(" {cap}"))
        ),
        "{metrics}"
    );

    // One span larger than the gateway takes, beside small ones: it alone is failed.
    let mut big = FakeOtlp::traces(10).spans(1).seed(990).build();
    let span = &mut big.resource_spans[0].scope_spans[0].spans[0];
    span.name = "x".repeat(LIMIT + 100);
    let more = spans(&big);
    client.export(big).await.unwrap();
    settled(sent + more).await;
    assert_eq!(router.stats().failed_spans.get(), 1);
    assert_eq!(backend.spans(), sent + more - 1);

    // The gateway replaced by another: its size no longer cuts the router's parts.
    let (other, _backend) = CaptureBackend::start("127.0.0.47:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    router.set_members(vec![tailgate_core::ring::Member::new(other.to_string())]);
    // None, or (once the router has greeted it) the larger limit it states.
    assert!(
        router.request_cap().is_none_or(|c| c > cap),
        "{:?}",
        router.request_cap()
    );
    stop.cancel();
}

/// Scenario: a gateway refusing requests over 8 KiB as too large, so the router learns to
/// cut requests to it; the gateway is then restarted at the same address (a static member
/// list) taking any size, and requests keep coming.
/// Guarantees: the router notices the restart (its client makes a new connection; the
/// restart is quicker than any request failing, so the gateway is never seen down),
/// tries a larger request, and sends the new process requests larger than the old limit
/// again (before, the size held for as long as the router ran); every span arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_with_a_larger_limit_gets_larger_requests_again() {
    let stop = CancellationToken::new();
    let first = CancellationToken::new();
    let addr = dead_address([127, 0, 0, 46]).await;
    let (_, old) = CaptureBackend::start(addr, first.clone()).await.unwrap();
    const LIMIT: usize = 8 << 10;
    old.refuse_requests_over(Some(LIMIT));
    let (router_addr, router) =
        start_router(vec![addr.to_string()], ForwardConfig::default(), &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{router_addr}"))
        .await
        .unwrap();
    let request = |seed| FakeOtlp::traces(60).spans(4).attrs(8).seed(seed).build();
    let first_req = request(1001);
    let mut sent_old = spans(&first_req);
    client.export(first_req).await.unwrap();
    let within = Duration::from_secs(20);
    until(
        within,
        || format!("old got {}", old.spans()),
        || old.spans() == sent_old,
    )
    .await;
    assert!(router.request_cap().is_some_and(|c| c <= LIMIT));
    // Learnt: the next request is cut to the size at once, none refused.
    let refused = old.too_large_requests();
    let second = request(1009);
    sent_old += spans(&second);
    client.export(second).await.unwrap();
    until(
        within,
        || format!("old got {}", old.spans()),
        || old.spans() == sent_old,
    )
    .await;
    assert_eq!(old.too_large_requests(), refused);
    assert!(router.request_cap().is_some_and(|c| c <= LIMIT));

    // The restart: the old process goes (its connections closed), a new one takes the
    // address with no limit.
    first.cancel();
    let new = restart_at(addr, 64 << 20, &stop).await;
    let mut sent_new = 0;
    for seed in 1002..1006 {
        let req = request(seed);
        sent_new += spans(&req);
        client.export(req).await.unwrap();
        // Each delivered before the next: requests one at a time, as a restart meets them.
        until(
            within,
            || format!("new got {}", new.spans()),
            || new.spans() == sent_new,
        )
        .await;
    }
    // Raised to what the new process took (or dropped, had a request been cut by it).
    assert!(
        router.request_cap().is_none_or(|c| c > LIMIT),
        "{:?}",
        router.request_cap()
    );
    assert!(
        new.bodies().iter().any(|b| b.len() > LIMIT),
        "largest request {}",
        new.bodies().iter().map(|b| b.len()).max().unwrap_or(0)
    );
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: a gateway whose receiver takes requests of at most 8 KiB (its limit stated
/// in every answer, refusals included), requests of about 70 KB sent through the router one
/// at a time; the gateway restarted at the same address taking 32 KiB, then 4 KiB.
/// Guarantees: the router cuts to the stated limit (the limit, not half a request) from the
/// first answer, its probe's (the gateway starts after the router found its address
/// unreachable), and is refused none; after each restart the first answer tells the
/// new limit: a larger one is taken with no refusal at all, a smaller one costs only the
/// parts in flight when it changed (the first request's, cut to the old limit); every span
/// arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_stating_its_limit_is_followed_up_and_down() {
    let stop = CancellationToken::new();
    let addr = dead_address([127, 0, 0, 48]).await;
    let within = Duration::from_secs(20);
    let request = |seed| FakeOtlp::traces(60).spans(4).attrs(8).seed(seed).build();
    let (router_addr, router) =
        start_router(vec![addr.to_string()], ForwardConfig::default(), &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{router_addr}"))
        .await
        .unwrap();
    let mut old: Option<CancellationToken> = None;
    let mut previous = usize::MAX;
    for (limit, seeds) in [
        (8 << 10, 1100..1103),
        (32 << 10, 1103..1106),
        (4 << 10, 1106..1109),
    ] {
        // The previous process goes (its connections closed), the next takes the address.
        if let Some(old) = old.take() {
            old.cancel();
        }
        let up = CancellationToken::new();
        let backend = restart_at(addr, limit, &up).await;
        old = Some(up);
        if previous == usize::MAX {
            // The router greeted the address before anything listened there: it found the
            // gateway down, and takes data again once a probe finds it up.
            until(
                within,
                || "router not ready".into(),
                || tailgate_core::telemetry::Admin::ready(router.as_ref()),
            )
            .await;
        }
        let mut sent = 0;
        let mut first_refused = None;
        for seed in seeds {
            let req = request(seed);
            let len = prost::Message::encoded_len(&req);
            assert!(len > 64 << 10, "{len}");
            sent += spans(&req);
            client.export(req).await.unwrap();
            // Each delivered before the next, as one sender meets a restart.
            until(
                within,
                || format!("{limit}: got {} of {sent}", backend.spans()),
                || backend.spans() == sent,
            )
            .await;
            let first = *first_refused.get_or_insert(backend.cut_refusals());
            // The parts it was cut into before the new limit was heard.
            let in_flight = len.div_ceil(previous.min(512 << 10)) as u64;
            if limit > previous || previous == usize::MAX {
                // A larger limit; or the first, stated in the answer to the probe that
                // found the gateway up.
                assert_eq!(first, 0, "{limit}: a larger limit, or the first");
            } else {
                assert!((1..=in_flight).contains(&first), "{limit}: {first}");
            }
        }
        assert_eq!(
            Some(backend.cut_refusals()),
            first_refused,
            "{limit}: none refused once the limit was heard"
        );
        assert_eq!(router.request_cap(), Some(limit));
        let largest = backend.bodies().iter().map(|b| b.len()).max().unwrap_or(0);
        assert!(
            largest <= limit && largest > limit / 2,
            "{limit}: {largest}"
        );
        previous = limit;
    }
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: two gateways, one taking requests of at most 32 KiB; it stops, is marked
/// down by a failed send (its spans going to the other), and comes back at the same
/// address taking at most 8 KiB; requests keep coming.
/// Guarantees: the answer to the router's probe states the new limit, so requests admitted
/// after the gateway is back are cut to it before any reaches it: it refuses none (before,
/// the first was cut to the old limit and refused); every span arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_back_from_down_with_a_smaller_limit_is_told_by_its_probe() {
    let stop = CancellationToken::new();
    let within = Duration::from_secs(20);
    let (steady_addr, steady) =
        CaptureBackend::start("127.0.0.49:0".parse().unwrap(), stop.clone())
            .await
            .unwrap();
    let addr = dead_address([127, 0, 0, 50]).await;
    let first = CancellationToken::new();
    let (_, old) = CaptureBackend::start_taking(addr, 32 << 10, first.clone())
        .await
        .unwrap();
    let (router_addr, router) = start_router(
        vec![steady_addr.to_string(), addr.to_string()],
        ForwardConfig {
            probe_interval: Duration::from_millis(50),
            ..ForwardConfig::default()
        },
        &stop,
    )
    .await;
    members_known(&router, 2).await;
    let mut client = TraceServiceClient::connect(format!("http://{router_addr}"))
        .await
        .unwrap();
    let request = |seed| FakeOtlp::traces(60).spans(4).attrs(8).seed(seed).build();
    let arrived = || steady.spans() + old.spans();
    let mut sent = 0;
    for seed in 1200..1202 {
        let req = request(seed);
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    until(
        within,
        || format!("{} of {sent}", arrived()),
        || arrived() == sent,
    )
    .await;
    assert_eq!(router.request_cap(), Some(32 << 10));

    // It stops; a send to it fails and marks it down (its parts go to the other).
    first.cancel();
    let mut seed = 1210;
    while router.ring_state().ring.members().len() == 2 {
        let req = request(seed);
        seed += 1;
        sent += spans(&req);
        client.export(req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(seed < 1400, "never marked down");
    }
    let new = restart_at(addr, 8 << 10, &stop).await;
    // Back once a probe is answered.
    until(
        within,
        || "not back".into(),
        || router.ring_state().ring.members().len() == 2,
    )
    .await;
    // Every span sent so far delivered first (parts queued for the stopped gateway may
    // still be on their way, to the other or to the one back): what arrives next is the
    // next requests' alone (a busy machine once counted 107 late spans in them).
    until(
        within,
        || {
            let all = steady.spans() + old.spans() + new.spans();
            format!("{all} of {sent} before the gateway came back")
        },
        || steady.spans() + old.spans() + new.spans() == sent,
    )
    .await;
    let before = steady.spans();
    let new_before = new.spans();
    let mut sent_now = 0;
    for seed in 1300..1304 {
        let req = request(seed);
        sent_now += spans(&req);
        client.export(req).await.unwrap();
    }
    until(
        within,
        || {
            let now = steady.spans() - before + new.spans() - new_before;
            format!("{now} of {sent_now}")
        },
        || steady.spans() - before + new.spans() - new_before == sent_now,
    )
    .await;
    assert!(new.spans() > new_before, "the gateway back took its share");
    assert_eq!(new.cut_refusals(), 0, "cut to the new limit before sending");
    assert_eq!(router.request_cap(), Some(8 << 10));
    assert_eq!(steady.spans() + old.spans() + new.spans(), sent + sent_now);
    assert_eq!(router.stats().failed_spans.get(), 0);
    stop.cancel();
}

/// Scenario: two gateways, one of which accepts connections and never answers (a hung
/// pod), with a 30 s request timeout; requests arrive, so parts are in flight to it; it
/// leaves the ring; then the router drains with a short deadline.
/// Guarantees: the spans in flight to the gateway that left stay pending after it left
/// (before the fix they were in no count), and the drain deadline counts them failed:
/// every span sent is delivered or failed, none pending after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_in_flight_to_a_gateway_that_left_are_counted_at_the_drain_deadline() {
    let stop = CancellationToken::new();
    let silent = tokio::net::TcpListener::bind("127.0.0.41:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let (live_addr, live) = CaptureBackend::start("127.0.0.42:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    let forward = ForwardConfig {
        timeout: Duration::from_secs(30),
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(
        vec![silent_addr.to_string(), live_addr.to_string()],
        forward,
        &stop,
    )
    .await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut sent = 0;
    for seed in 0..4 {
        let req = FakeOtlp::traces(20).spans(2).seed(700 + seed).build();
        sent += spans(&req);
        client.export(req).await.unwrap();
    }
    router.set_members(vec![tailgate_core::ring::Member::new(
        live_addr.to_string(),
    )]);
    // Everything not in flight to the silent gateway reaches the live one; the rest stays
    // pending. Settled when the live count holds still for a few polls.
    let started = Instant::now();
    let (mut last, mut still) = (u64::MAX, 0);
    while still < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} delivered + {} pending of {sent}",
            live.spans(),
            router.pending_spans()
        );
        assert_eq!(router.stats().failed_spans.get(), 0);
        let now = live.spans();
        still = if now == last && now + router.pending_spans() == sent {
            still + 1
        } else {
            0
        };
        last = now;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let in_flight = router.pending_spans();
    assert!(
        in_flight > 0,
        "some parts were in flight to the silent gateway"
    );
    router.drain(Duration::from_millis(300)).await;
    assert_eq!(router.stats().failed_spans.get(), in_flight);
    assert_eq!(live.spans() + in_flight, sent);
    assert_eq!(router.pending_spans(), 0);
    held.abort();
    stop.cancel();
}

/// Scenario: a gateway that reads requests and answers them only after the router's drain
/// deadline has passed (slow, not dead).
/// Guarantees: the drain counts the spans in flight failed, and the answer that comes
/// later changes no count: delivered + failed = sent, each span counted once (before the
/// fix the late answer counted them delivered as well).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_answered_after_the_drain_deadline_is_counted_once() {
    let stop = CancellationToken::new();
    let (gw_addr, gateway) = CaptureBackend::start("127.0.0.43:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    gateway.hold(true);
    let forward = ForwardConfig {
        timeout: Duration::from_secs(30),
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(vec![gw_addr.to_string()], forward, &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let req = FakeOtlp::traces(10).spans(2).seed(43).build();
    let sent = spans(&req);
    client.export(req).await.unwrap();
    let started = Instant::now();
    while gateway.waiting() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    router.drain(Duration::from_millis(200)).await;
    assert_eq!(router.stats().failed_spans.get(), sent);
    gateway.hold(false);
    while gateway.spans() < sent {
        assert!(started.elapsed() < Duration::from_secs(10), "never taken");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The answer is on its way back to the router's send over loopback, which takes well
    // under a millisecond; nothing the router shows marks its end (with the fix it counts
    // nothing), so the test gives it a second: a slower machine makes the test pass
    // without the fix, never fail with it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stats = router.stats();
    assert_eq!(
        stats.forwarded_spans.get() + stats.failed_spans.get(),
        sent,
        "{} forwarded + {} failed",
        stats.forwarded_spans.get(),
        stats.failed_spans.get()
    );
    assert_eq!(router.pending_spans(), 0);
    stop.cancel();
}

/// Scenario: a router started in front of its one gateway before that gateway listens (a
/// static list, the gateway still starting); a request comes; then the gateway starts.
/// Guarantees: the router greets the gateway at once and finds it unreachable: it says it
/// is not ready and refuses the request with UNAVAILABLE, so its sender keeps the data (a
/// docs trial found such a router ready, taking a request with OK into a queue nothing
/// drained, lost at the drain); once a probe finds the gateway, it is ready and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_whose_gateways_are_unreachable_from_the_start_is_not_ready() {
    use tailgate_core::telemetry::Admin;
    let stop = CancellationToken::new();
    let dead = dead_address([127, 0, 0, 52]).await;
    let forward = ForwardConfig {
        probe_interval: Duration::from_millis(100),
        ..ForwardConfig::default()
    };
    let (addr, router) = start_router(vec![dead.to_string()], forward, &stop).await;
    until(
        Duration::from_secs(5),
        || "the gateway was never greeted".into(),
        || router.gateways_greeted(),
    )
    .await;
    assert!(!Admin::ready(router.as_ref()));
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let refused = client
        .export(FakeOtlp::traces(2).spans(2).seed(52).build())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(router.pending_spans(), 0);

    let (_, backend) = CaptureBackend::start(dead, stop.clone()).await.unwrap();
    until(
        Duration::from_secs(5),
        || "never ready with the gateway up".into(),
        || Admin::ready(router.as_ref()),
    )
    .await;
    let req = FakeOtlp::traces(3).spans(2).seed(53).build();
    let sent = spans(&req);
    client.export(req).await.unwrap();
    until(
        Duration::from_secs(5),
        || format!("delivered {} of {sent}", backend.spans()),
        || backend.spans() == sent,
    )
    .await;
    stop.cancel();
}

/// Scenario: a gateway taking requests of at most 32 KiB (stated in its answers, as a
/// gateway's `receive.max_request_bytes`); once the router heard it, a request holding a
/// span of 64 KiB beside ordinary spans, then a request of that span alone.
/// Guarantees: the span that can never be delivered is rejected at once, not acknowledged
/// and then lost at the gateway's refusal: the first request answers OK with partial
/// success naming one rejected span and the limit, its other spans all arrive; the second
/// is refused as too large (`RESOURCE_EXHAUSTED`, stating the limit); nothing counts
/// failed and both spans count rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_larger_than_its_gateway_takes_is_rejected_not_acknowledged() {
    let stop = CancellationToken::new();
    let (gateway, backend) =
        CaptureBackend::start_taking("127.0.0.57:0".parse().unwrap(), 32 << 10, stop.clone())
            .await
            .unwrap();
    let (router_addr, router) =
        start_router(vec![gateway.to_string()], ForwardConfig::default(), &stop).await;
    let mut client = TraceServiceClient::connect(format!("http://{router_addr}"))
        .await
        .unwrap();
    // A first request: its answer states the limit.
    let first = FakeOtlp::traces(4).spans(2).seed(3).build();
    let mut sent = spans(&first);
    client.export(first).await.unwrap();
    until(
        Duration::from_secs(10),
        || format!("cap {:?}", router.request_cap()),
        || router.request_cap() == Some(32 << 10),
    )
    .await;
    let huge = tailgate_core::test_util::kv("blob", &"x".repeat(64 << 10));
    let mut mixed = FakeOtlp::traces(6).spans(2).seed(4).build();
    mixed.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(huge.clone());
    sent += spans(&mixed) - 1;
    let answer = client.export(mixed).await.unwrap().into_inner();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_spans, 1);
    assert!(
        partial
            .error_message
            .contains("over the 32768 bytes it takes"),
        "{}",
        partial.error_message
    );
    let mut alone = FakeOtlp::traces(1).spans(1).resources(1).seed(5).build();
    alone.resource_spans[0].scope_spans[0].spans[0]
        .attributes
        .push(huge);
    let refused = client.export(alone).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("too large for their gateway"),
        "{refused:?}"
    );
    until(
        Duration::from_secs(10),
        || format!("{} of {sent}", backend.spans()),
        || backend.spans() == sent,
    )
    .await;
    let s = router.stats();
    assert_eq!(s.failed_spans.get(), 0);
    assert_eq!(s.rejected_spans.get(), 2);
    assert_eq!(s.rejected_too_large_spans.get(), 2);
    let text = router.stats().render();
    assert!(
        text.contains("tailgate_router_rejected_spans_total{reason=\"too_large\"} 2\n"),
        "{text}"
    );
    assert_eq!(
        backend.too_large_requests(),
        0,
        "nothing too large was sent"
    );
    stop.cancel();
}
