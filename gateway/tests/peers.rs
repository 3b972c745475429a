#![allow(clippy::unwrap_used)] // test fixtures: a failed setup should fail loudly
//! Three gateway "pods" on their own loopback addresses that find each other through a
//! static peer list changed by the test: spans sent to the wrong gateway are forwarded to
//! the owner, a ring change hands buffered traces (and decisions) to their new owners, and
//! a draining gateway hands off everything. Every trace must reach a backend whole, from
//! exactly one gateway.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tailgate_core::receive::{Listeners, ReceiveConfig};
use tailgate_core::ring::Member;
use tailgate_core::test_util::{CaptureBackend, FakeOtlp};
use tailgate_gateway::config::{BufferConfig, ExportConfig};
use tailgate_gateway::export::OtlpGrpcConfig;
use tailgate_gateway::metrics::GatewayStats;
use tailgate_gateway::peers::{Peers, PeersConfig};
use tailgate_gateway::{Gateway, GatewayConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The gateways' shared secret: every peer request in these tests carries it.
const SECRET: &str = "peers-test-secret";

/// Every pod hashes the resource's `service.name` (`service-N` as sent) on export.
const SCRUB: &str = "resource: [{key: service.name, action: hash}]";

const KEEP_ALL: &str = "decision_wait: 1500ms\npolicies:\n  - {name: all, type: always_sample}\n";

struct Pod {
    addr: SocketAddr,
    backend: Arc<CaptureBackend>,
    stats: Arc<GatewayStats>,
    peers: Arc<Peers>,
    stop: CancellationToken,
    served: JoinHandle<std::io::Result<()>>,
}

async fn pod(listeners: Listeners, initial: &[SocketAddr]) -> Pod {
    pod_with_peer_port(listeners, initial, None).await
}

/// A pod whose peer requests go to `peer_listen` when given (`peers.listen`).
async fn pod_with_peer_port(
    listeners: Listeners,
    initial: &[SocketAddr],
    peer_listen: Option<SocketAddr>,
) -> Pod {
    let addr = listeners.grpc_addr().unwrap();
    let peers = PeersConfig {
        advertise: Some(addr.to_string()),
        static_list: initial.iter().map(ToString::to_string).collect(),
        leave_linger: Duration::from_millis(300),
        secret: Some(SECRET.into()),
        listen: peer_listen,
        ..Default::default()
    };
    pod_with_peers(listeners, peers).await
}

/// A pod with the `peers` block given.
async fn pod_with_peers(listeners: Listeners, peers: PeersConfig) -> Pod {
    let largest = ReceiveConfig::default().max_request_bytes;
    pod_taking(listeners, peers, largest).await
}

/// A pod with the `peers` block given, taking requests of at most `max_request_bytes`.
async fn pod_taking(listeners: Listeners, peers: PeersConfig, max_request_bytes: usize) -> Pod {
    let stop = CancellationToken::new();
    let drain = Duration::from_secs(10);
    start_pod(
        listeners,
        peers,
        max_request_bytes,
        drain,
        (stop.clone(), &stop),
    )
    .await
}

/// A pod serving `listeners` with `peers`, taking requests of at most
/// `max_request_bytes`, drained within `drain`, stopped with `stop`; its capture backend
/// stopped with `backend_stop`.
async fn start_pod(
    listeners: Listeners,
    peers: PeersConfig,
    max_request_bytes: usize,
    drain: Duration,
    (stop, backend_stop): (CancellationToken, &CancellationToken),
) -> Pod {
    let (backend_addr, backend) = common::capture_backend(backend_stop).await;
    let addr = listeners.grpc_addr().unwrap();
    let receive = ReceiveConfig {
        grpc: Some(addr),
        http: None,
        max_request_bytes,
        ..Default::default()
    };
    // Scrubbed wherever a trace is exported: forwarded and handed-off traces too.
    let config = exporting_to(backend_addr, receive, 2, peers);
    let gateway = Gateway::start(&config, common::plan(KEEP_ALL)).unwrap();
    let (stats, peers) = (gateway.stats().clone(), gateway.peers().clone());
    let served = tokio::spawn(gateway.serve(listeners, None, stop.clone(), drain));
    Pod {
        addr,
        backend,
        stats,
        peers,
        stop,
        served,
    }
}

/// Binds an OTLP/gRPC receiver on each pod address (port chosen by the system) before any
/// pod starts, since every pod must know every address; returns them and the addresses.
async fn bind_pods(ips: &[[u8; 4]]) -> (Vec<Listeners>, Vec<SocketAddr>) {
    let mut listeners = Vec::new();
    for ip in ips {
        let receive = ReceiveConfig {
            grpc: Some(SocketAddr::from((*ip, 0))),
            http: None,
            ..Default::default()
        };
        listeners.push(Listeners::bind(&receive).await.unwrap());
    }
    let addrs = listeners.iter().map(|l| l.grpc_addr().unwrap()).collect();
    (listeners, addrs)
}

async fn send(addr: SocketAddr, req: &ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    client.export(req.clone()).await.unwrap();
}

/// The same traces with new span ids: their later spans.
fn more_spans_of(req: &ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let mut req = req.clone();
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.span_id[7] ^= 0x5a;
                s.parent_span_id = vec![1; 8];
            }
        }
    }
    req
}

/// What the backends got of one trace: span ids, and which pods (by index) sent them.
type Arrived = (Vec<Vec<u8>>, Vec<usize>);

/// Per trace id, what arrived. Checks on the way that every pod's `SCRUB` was applied:
/// no resource's service name arrives as sent.
fn arrivals(pods: &[&Pod]) -> HashMap<Vec<u8>, Arrived> {
    let mut out: HashMap<Vec<u8>, Arrived> = HashMap::new();
    for (i, p) in pods.iter().enumerate() {
        for body in p.backend.bodies() {
            assert!(
                !String::from_utf8_lossy(&body).contains("service-"),
                "an unscrubbed service.name left pod {i}"
            );
            let req = ExportTraceServiceRequest::decode(body).unwrap();
            for rs in req.resource_spans {
                for ss in rs.scope_spans {
                    for s in ss.spans {
                        let e = out.entry(s.trace_id).or_default();
                        e.0.push(s.span_id);
                        if !e.1.contains(&i) {
                            e.1.push(i);
                        }
                    }
                }
            }
        }
    }
    out
}

fn trace_ids(req: &ExportTraceServiceRequest) -> Vec<Vec<u8>> {
    let mut ids: Vec<Vec<u8>> = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| s.trace_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Waits until `done` holds, looking every 20 ms; fails with `what` after 5 s. The pods
/// talk over real loopback sockets, so what is awaited is I/O, not a timer: a paused clock
/// would not bring it sooner.
async fn until(done: impl Fn() -> bool, what: impl Fn() -> String) {
    until_within(Duration::from_secs(5), done, what).await;
}

/// [`until`], failing after `within`.
async fn until_within(within: Duration, done: impl Fn() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + within;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{}", what());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn settle(pods: &[&Pod]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while pods.iter().any(|p| p.stats.in_flight_spans() > 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans still in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_stay_whole_through_stale_routes_ring_changes_and_drain() {
    // Bind first: every pod must know every address before it starts.
    let (listeners, addrs) = bind_pods(&[[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]]).await;
    // At first only A is on the ring.
    let mut pods = Vec::new();
    for l in listeners {
        pods.push(pod(l, &addrs[..1]).await);
    }
    let (a, b, c) = (&pods[0], &pods[1], &pods[2]);

    // 1. A stale route: B gets spans it does not own and forwards all of them to A.
    let first = FakeOtlp::traces(60).spans(4).seed(7).build();
    send(b.addr, &first).await;
    assert_eq!(b.stats.peers.forwarded_spans.get(), 240);
    assert_eq!(a.stats.peers.received_spans.get(), 240);

    // 2. The ring grows to three: A hands about two thirds of its traces to B and C.
    let all: Vec<Member> = addrs.iter().map(|x| Member::new(x.to_string())).collect();
    for p in &pods {
        p.peers.set_members(all.clone());
    }
    until(
        || a.stats.peers.handed_off_spans.get() > 0,
        || "no handoff".into(),
    )
    .await;
    // 3. The traces' later spans go, by a stale route, to A, which forwards them to their
    //    new owners, where they join the handed-over part.
    let later = more_spans_of(&first);
    send(a.addr, &later).await;
    settle(&[a, b, c]).await;
    let got = arrivals(&[a, b, c]);
    for id in trace_ids(&first) {
        let (spans, senders) = &got[&id];
        assert_eq!(spans.len(), 8, "trace {id:02x?} incomplete");
        assert_eq!(senders.len(), 1, "trace {id:02x?} split: {senders:?}");
    }
    let handed = a.stats.peers.handed_off_spans.get();
    assert!(
        (80..=200).contains(&handed),
        "A handed off {handed} of 240 spans"
    );
    assert!(a.stats.peers.forwarded_spans.get() > 0);
    let owners: Vec<usize> = (0..3)
        .map(|i| got.values().filter(|(_, s)| s == &vec![i]).count())
        .collect();
    assert!(owners.iter().all(|n| *n > 0), "owners {owners:?}");

    // 3b. The ring shrinks back to A: B and C hand it their decisions, so the very late
    //     spans that now reach A follow the decisions made on B and C instead of starting
    //     new traces.
    for p in &pods {
        p.peers.set_members(all[..1].to_vec());
    }
    until(
        || a.stats.peers.received_decisions.get() > 0,
        || "no decisions handed over".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latest = more_spans_of(&later);
    for rs in &mut latest.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.span_id[6] ^= 0x33;
            }
        }
    }
    let late_before = a.stats.late_sampled_spans.get();
    send(a.addr, &latest).await;
    settle(&[a]).await;
    assert_eq!(a.stats.late_sampled_spans.get() - late_before, 240);
    assert_eq!(a.stats.live_traces.get(), 0);
    for p in &pods {
        p.peers.set_members(all.clone());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 4. Drain: A gets new traces, then stops; it leaves the ring and hands them off
    //    instead of deciding them, and whatever reaches it while lingering is forwarded.
    let third = FakeOtlp::traces(60).spans(3).seed(99).build();
    send(a.addr, &third).await;
    let before_a = arrivals(&[a]).len();
    let mut pods = pods.into_iter();
    let mut a = pods.next().unwrap();
    a.stop.cancel();
    (&mut a.served).await.unwrap().unwrap();
    let (b, c) = (pods.next().unwrap(), pods.next().unwrap());
    assert!(a.stats.peers.handed_off_spans.get() > handed);
    // A exported nothing new: its traces went to B and C.
    assert_eq!(arrivals(&[&a]).len(), before_a);
    for p in [&b, &c] {
        p.peers.set_members(all[1..].to_vec());
    }
    settle(&[&b, &c]).await;
    let got = arrivals(&[&b, &c]);
    for id in trace_ids(&third) {
        let (spans, senders) = got.get(&id).expect("trace of the drained gateway lost");
        assert_eq!(spans.len(), 3, "trace {id:02x?} incomplete");
        assert_eq!(senders.len(), 1, "trace {id:02x?} split");
    }

    // 5. Long after the last ring change, C sends B spans that B does not own (as a peer
    //    whose view differs would). B keeps them (one hop), and a pass soon after hands
    //    them to their owner rather than waiting for the next ring change.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let fourth = FakeOtlp::traces(60).spans(2).seed(1234).build();
    send_as_peer(b.addr, &fourth, "forwarded; hops=1").await;
    let handed = b.stats.peers.handed_off_spans.get();
    settle(&[&b, &c]).await;
    assert!(b.stats.peers.handed_off_spans.get() > handed);
    let got = arrivals(&[&b, &c]);
    let c_index = 1;
    for id in trace_ids(&fourth) {
        let (spans, senders) = &got[&id];
        assert_eq!(spans.len(), 2, "trace {id:02x?} incomplete");
        let owner = match c.peers.view().owner(id.as_slice().try_into().unwrap()) {
            tailgate_gateway::peers::Owner::Local => c_index,
            tailgate_gateway::peers::Owner::Peer(_) => 0,
        };
        assert_eq!(
            senders,
            &vec![owner],
            "trace {id:02x?} not sent by its owner"
        );
    }

    for p in [b, c] {
        p.stop.cancel();
        p.served.await.unwrap().unwrap();
    }
}

/// Scenario: three gateways on a static list (a DNS that has not caught up); traces
/// buffered on all three; then two of them get SIGTERM at once while the list still names
/// them (as a scale-down from 3 to 1 looks before DNS drops the leavers).
/// Guarantees: a leaving gateway refuses the other leaver's hand-off as "leaving", the
/// sender routes around it at once, and every trace reaches the one that stays, whole:
/// none is decided on a leaver, in part or whole; none bounces between the leavers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_leaving_together_hand_everything_to_the_one_that_stays() {
    let (listeners, addrs) = bind_pods(&[[127, 0, 0, 73], [127, 0, 0, 74], [127, 0, 0, 75]]).await;
    let mut pods = Vec::new();
    for l in listeners {
        pods.push(pod(l, &addrs).await);
    }
    let first = FakeOtlp::traces(90).spans(3).seed(31).build();
    send(pods[0].addr, &first).await;
    // Buffered where they belong (forwarded from A), not yet due.
    assert!(pods[1].stats.peers.received_spans.get() > 0);
    assert!(pods[2].stats.peers.received_spans.get() > 0);
    let mut pods = pods.into_iter();
    let a = pods.next().unwrap();
    let leavers: Vec<Pod> = pods.collect();
    let received: Vec<u64> = leavers
        .iter()
        .map(|l| l.stats.peers.received_spans.get())
        .collect();
    let changes: Vec<_> = leavers.iter().map(|l| l.peers.subscribe()).collect();
    for l in &leavers {
        l.stop.cancel();
    }
    for (l, mut changes) in leavers.iter().zip(changes) {
        // Each routed around the other once it answered "leaving": woken by its ring's
        // changes, not polled.
        while l.peers.view().ring.members().len() != 1 {
            tokio::time::timeout(Duration::from_secs(5), changes.changed())
                .await
                .expect("still on the ring")
                .unwrap();
        }
    }
    let mut stopped = Vec::new();
    for (l, before) in leavers.into_iter().zip(received) {
        l.served.await.unwrap().unwrap();
        // Neither took anything from the other once leaving.
        assert_eq!(l.stats.peers.received_spans.get(), before);
        stopped.push((l.stats, l.backend));
    }
    settle(&[&a]).await;
    let got = arrivals(&[&a]);
    for id in trace_ids(&first) {
        let (spans, _) = got.get(&id).expect("trace not at the gateway that stays");
        assert_eq!(spans.len(), 3, "trace {id:02x?} incomplete");
    }
    for (stats, backend) in &stopped {
        assert!(backend.bodies().is_empty(), "a leaver exported");
        assert_eq!(stats.traces_sampled.get(), 0);
        assert_eq!(stats.peers.failures.get(), 0);
    }
    a.stop.cancel();
    a.served.await.unwrap().unwrap();
}

/// Scenario: gateway A, alone on the ring, buffers one 7 MB request of 100 two-span traces
/// and one 150-span trace (20 KB spans); gateway B, which takes requests of 1.5 MiB at
/// most, joins the ring and owns the large trace and about half the others.
/// Guarantees: A hands B every span of the traces B now owns (about 5 MB, the large trace
/// 3 MB on its own: more than B takes in one request, so they go in several) and keeps
/// none of them; B received them all from A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_larger_than_a_peer_takes_in_one_request_goes_in_several() {
    let (listeners, addrs) = bind_pods(&[[127, 0, 0, 40], [127, 0, 0, 41]]).await;
    let mut listeners = listeners.into_iter();
    let peers = |initial: &[SocketAddr], me: SocketAddr| PeersConfig {
        advertise: Some(me.to_string()),
        static_list: initial.iter().map(ToString::to_string).collect(),
        leave_linger: Duration::from_millis(300),
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let largest = ReceiveConfig::default().max_request_bytes;
    let a = pod_taking(
        listeners.next().unwrap(),
        peers(&addrs[..1], addrs[0]),
        largest,
    )
    .await;
    let b = pod_taking(
        listeners.next().unwrap(),
        peers(&addrs[..1], addrs[1]),
        1536 << 10,
    )
    .await;
    let all: Vec<Member> = addrs.iter().map(|x| Member::new(x.to_string())).collect();
    let ring = tailgate_core::ring::Ring::new(all.clone());
    let mut req = FakeOtlp::traces(100).spans(2).seed(40).build();
    // And one trace of 150 spans (3 MB) that B will own: more than B takes in one request.
    let big_id = (1u8..=255)
        .map(|b| [b; 16])
        .find(|id| ring.owner(id) == Some(&all[1]))
        .unwrap();
    let mut big = FakeOtlp::traces(1).spans(150).seed(41).build();
    for rs in &mut big.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.trace_id = big_id.to_vec();
            }
        }
    }
    req.resource_spans.extend(big.resource_spans);
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            for s in &mut ss.spans {
                s.attributes
                    .push(tailgate_core::test_util::kv("payload", &"x".repeat(20_000)));
            }
        }
    }
    assert!(req.encoded_len() > 7_000_000);
    send(a.addr, &req).await;
    assert_eq!(a.stats.received_spans.get(), 350);
    assert_eq!(a.stats.rejected_spans(), 0);
    let for_b: u64 = req
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|s| ring.owner(&s.trace_id.as_slice().try_into().unwrap()) == Some(&all[1]))
        .count() as u64;
    assert!((210..=290).contains(&for_b), "B owns {for_b} of 350 spans");
    for p in [&a, &b] {
        p.peers.set_members(all.clone());
    }
    // B counts spans as they arrive, A once B answered: both are waited for.
    until(
        || {
            b.stats.peers.received_spans.get() >= for_b
                && a.stats.peers.handed_off_spans.get() >= for_b
        },
        || {
            format!(
                "B received {} of {for_b} spans; A handed off {} (A's failures {}, B refused {} and rejected {}, A live traces {})",
                b.stats.peers.received_spans.get(),
                a.stats.peers.handed_off_spans.get(),
                a.stats.peers.failures.get(),
                b.stats.refused_spans.get(),
                b.stats.rejected_spans(),
                a.stats.live_traces.get()
            )
        },
    )
    .await;
    assert_eq!(a.stats.peers.handed_off_spans.get(), for_b);
    assert_eq!(b.stats.peers.received_spans.get(), for_b);
    for p in [a, b] {
        p.stop.cancel();
    }
}

/// Keeps the spans of `req` whose trace id `keep` accepts; returns how many are left.
fn keep_spans(req: &mut ExportTraceServiceRequest, keep: impl Fn(&[u8; 16]) -> bool) -> u64 {
    for rs in &mut req.resource_spans {
        for ss in &mut rs.scope_spans {
            ss.spans
                .retain(|s| <&[u8; 16]>::try_from(s.trace_id.as_slice()).is_ok_and(&keep));
        }
    }
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// Sends `req` to `addr` as a peer does: marked `tailgate-peer: {origin}`, with the
/// peers' secret.
async fn send_as_peer(addr: SocketAddr, req: &ExportTraceServiceRequest, origin: &str) {
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut request = tonic::Request::new(req.clone());
    request
        .metadata_mut()
        .insert("tailgate-peer", origin.parse().unwrap());
    request
        .metadata_mut()
        .insert("tailgate-peer-auth", SECRET.parse().unwrap());
    client.export(request).await.unwrap();
}

/// Scenario: two gateways agree on the ring; B holds the first spans of some traces it
/// owns. A peer whose ring is stale hands A the rest of those traces, first seen long
/// ago, so due at once (as a leaving gateway's traces bounce between leavers while DNS
/// catches up). Guarantees: A does not decide them on the part it holds; a hand-off pass
/// takes them to B, which decides each trace once, whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_trace_reaching_a_gateway_that_does_not_own_it_is_decided_whole_by_its_owner() {
    let (listeners, addrs) = bind_pods(&[[127, 0, 0, 71], [127, 0, 0, 72]]).await;
    let mut pods = Vec::new();
    for l in listeners {
        pods.push(pod(l, &addrs).await);
    }
    let (a, b) = (&pods[0], &pods[1]);
    // Traces B owns (both views agree), their first spans sent to B by a router.
    let ring = tailgate_core::ring::Ring::new(addrs.iter().map(|x| Member::new(x.to_string())));
    // 200: the members' ports are the system's, so the split varies from run to run.
    let first = FakeOtlp::traces(200).spans(3).seed(4242).build();
    let mut owned_by_b = first.clone();
    keep_spans(&mut owned_by_b, |id| ring.owner_index(id) == Some(1));
    let ids = trace_ids(&owned_by_b);
    assert!(ids.len() >= 10, "only {} of 200 traces on B", ids.len());
    send(b.addr, &owned_by_b).await;
    // The rest of them reach A from a peer, 10 s old.
    send_as_peer(
        a.addr,
        &more_spans_of(&owned_by_b),
        "handoff; hops=1; age_ms=10000",
    )
    .await;
    settle(&[a, b]).await;
    let got = arrivals(&[a, b]);
    for id in &ids {
        let (spans, senders) = got.get(id).expect("trace lost");
        assert_eq!(senders, &vec![1], "trace {id:02x?} decided on A");
        assert_eq!(spans.len(), 6, "trace {id:02x?} incomplete");
    }
    assert!(a.stats.peers.deferred_decisions.get() >= ids.len() as u64);
    assert_eq!(a.stats.peers.handed_off_spans.get(), 3 * ids.len() as u64);
    for p in pods {
        p.stop.cancel();
        p.served.await.unwrap().unwrap();
    }
}

/// A gateway receiving on `receive` with `shards` shards and `peers`, exporting to
/// `backend` in 50 ms batches, with the pods' `SCRUB`.
fn exporting_to(
    backend: SocketAddr,
    receive: ReceiveConfig,
    shards: usize,
    peers: PeersConfig,
) -> GatewayConfig {
    let mut export = OtlpGrpcConfig::new(format!("http://{backend}"));
    export.batch.timeout = Duration::from_millis(50);
    GatewayConfig {
        receive,
        buffer: BufferConfig {
            shards,
            ..Default::default()
        },
        export: ExportConfig::otlp_grpc(export),
        admin: None,
        metrics: None,
        peers,
        attributes: serde_yaml_ng::from_str(SCRUB).unwrap(),
        extensions: Default::default(),
        service: None,
    }
}

/// Scenario: gateway B of two on a static list stops (SIGTERM) and A routes around it, as
/// when B answers a forwarded request that it is leaving; A's `down_for` is a minute. B
/// restarts at the same address while A buffers traces B owns.
/// Guarantee: A takes B back as soon as B answers peer requests again (the routers take
/// it back at their first probe), not after `leave_linger + down_for`, and hands B the
/// traces it buffered for it meanwhile: each is exported whole, once, by B. (A black-box
/// check of a rolling restart with a static list found traces decided in two parts:
/// the routers sent B spans for seven seconds while the other gateways still kept
/// theirs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_at_its_address_is_taken_back_at_once() {
    let (mut listeners, addrs) = bind_pods(&[[127, 0, 0, 46], [127, 0, 0, 47]]).await;
    let config = |listeners: &Listeners, backend: SocketAddr| {
        let addr = listeners.grpc_addr().unwrap();
        let peers = PeersConfig {
            advertise: Some(addr.to_string()),
            static_list: addrs.iter().map(ToString::to_string).collect(),
            leave_linger: Duration::from_millis(300),
            down_for: Duration::from_secs(60),
            secret: Some(SECRET.into()),
            ..Default::default()
        };
        let receive = ReceiveConfig {
            grpc: Some(addr),
            http: None,
            ..Default::default()
        };
        exporting_to(backend, receive, 2, peers)
    };
    // Long enough that what A holds is not decided before B is back, on a busy machine.
    let plan = "decision_wait: 8s\npolicies:\n  - {name: all, type: always_sample}\n";
    let stop = CancellationToken::new();
    let start = |listeners: Listeners| {
        let stop = stop.clone();
        let config = &config;
        async move {
            let (backend_addr, backend) = common::capture_backend(&stop).await;
            let config = config(&listeners, backend_addr);
            let gateway = Gateway::start(&config, common::plan(plan)).unwrap();
            let peers = gateway.peers().clone();
            let own_stop = stop.child_token();
            let served = tokio::spawn(gateway.serve(
                listeners,
                None,
                own_stop.clone(),
                Duration::from_secs(10),
            ));
            (backend, peers, own_stop, served)
        }
    };
    let b_listeners = listeners.pop().unwrap();
    let (a_backend, a_peers, _, a_served) = start(listeners.pop().unwrap()).await;
    let (_, _, b_stop, b_served) = start(b_listeners).await;
    until(
        || a_peers.view_full().ring.members().len() == 2,
        || "A sees both".into(),
    )
    .await;
    let full = a_peers.view_full();

    b_stop.cancel();
    b_served.await.unwrap().unwrap();
    let b = Member::new(addrs[1].to_string());
    a_peers.depart(&b);
    assert_eq!(a_peers.view_full().ring.members().len(), 1);
    // Traces B owns on the full ring, sent to A while B is away: A keeps them. The ports
    // are the system's, so the ring's split differs from run to run: 200 traces leave B
    // more than 10 whatever it is (40 left it exactly 10 once, in CI).
    let mut req = FakeOtlp::traces(200).spans(3).seed(46).build();
    let spans = keep_spans(&mut req, |id| {
        full.owner(id) != tailgate_gateway::peers::Owner::Local
    });
    let ids = trace_ids(&req);
    assert!(ids.len() > 10, "{} traces for B", ids.len());
    send(addrs[0], &req).await;

    let receive = ReceiveConfig {
        grpc: Some(addrs[1]),
        http: None,
        ..Default::default()
    };
    let (b2_backend, _, _, b2_served) = start(Listeners::bind(&receive).await.unwrap()).await;
    until(
        || a_peers.view_full().ring.members().len() == 2,
        || "A takes the restarted B back within 5 s".into(),
    )
    .await;
    // B decides them: everything at B's backend, whole, nothing at A's.
    until_within(
        Duration::from_secs(30),
        || b2_backend.spans() >= spans,
        || {
            format!(
                "{} of {spans} spans at the restarted B, {} at A",
                b2_backend.spans(),
                a_backend.spans()
            )
        },
    )
    .await;
    assert_eq!(b2_backend.spans(), spans);
    assert_eq!(a_backend.spans(), 0, "no part of them decided at A");
    stop.cancel();
    a_served.await.unwrap().unwrap();
    b2_served.await.unwrap().unwrap();
}

/// Scenario: gateways A and B and a third listed member, C, that is down (its address
/// refuses connections); A receives traces C owns on the full ring whose owner on a ring
/// without C is B (where routers, which leave C out once it fails, send them).
/// Guarantee: A's forward to C fails, A leaves C off its ring as the routers do, and the
/// traces go to B: B exports every span of them, A none. (Before, a failed peer's traces
/// stayed wherever they were: a black-box check of a gateway leaving the ring beside a
/// listed gateway that was down found traces decided in two parts and spans of kept
/// traces lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_peers_traces_go_to_the_next_gateway_as_on_the_routers_ring() {
    let (mut listeners, mut addrs) = bind_pods(&[[127, 0, 0, 48], [127, 0, 0, 49]]).await;
    let down = tokio::net::TcpListener::bind("127.0.0.50:0").await.unwrap();
    addrs.push(down.local_addr().unwrap());
    drop(down);
    let config = |me: SocketAddr| PeersConfig {
        advertise: Some(me.to_string()),
        static_list: addrs.iter().map(ToString::to_string).collect(),
        leave_linger: Duration::from_millis(300),
        secret: Some(SECRET.into()),
        ..Default::default()
    };
    let b = pod_with_peers(listeners.pop().unwrap(), config(addrs[1])).await;
    let a = pod_with_peers(listeners.pop().unwrap(), config(addrs[0])).await;
    let members: Vec<Member> = addrs.iter().map(|x| Member::new(x.to_string())).collect();
    let full = tailgate_core::ring::Ring::new(members.clone());
    let without_c = tailgate_core::ring::Ring::new(members[..2].to_vec());
    let mut req = FakeOtlp::traces(300).spans(2).seed(48).build();
    let spans = keep_spans(&mut req, |id| {
        full.owner(id) == Some(&members[2]) && without_c.owner(id) == Some(&members[1])
    });
    assert!(
        spans > 20,
        "{spans} spans of C's traces that B takes without C"
    );
    send(a.addr, &req).await;
    until_within(
        Duration::from_secs(20),
        || b.backend.spans() >= spans,
        || {
            format!(
                "{} of {spans} spans exported by B, {} by A",
                b.backend.spans(),
                a.backend.spans()
            )
        },
    )
    .await;
    assert_eq!(b.backend.spans(), spans);
    assert_eq!(a.backend.spans(), 0, "none decided on A");
    assert!(a.stats.peers.failures.get() > 0, "A tried C");
    for p in [a, b] {
        p.stop.cancel();
        p.served.await.unwrap().unwrap();
    }
}

/// Scenario: a gateway shares its ring with a peer that takes the spans forwarded to it
/// but answers each request with an OTLP partial success rejecting one of its spans (a
/// peer of another version whose scan refuses what this one's accepts; here a backend
/// standing in for it).
/// Guarantee: what the peer rejected is counted once, as `rejected_spans_total`'s
/// `reason="peer"`, and the rest as forwarded: every span sent is in one of the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_a_peer_rejects_are_counted_as_rejected_by_the_peer() {
    let peer_stop = CancellationToken::new();
    let (peer_addr, peer) = common::capture_backend(&peer_stop).await;
    peer.reject_spans(1);
    let (pod, backend_stop) = beside([127, 0, 0, 43], peer_addr, Duration::ZERO).await;
    let (addr, stats, peers) = (pod.addr, pod.stats.clone(), pod.peers.clone());

    let mut req = FakeOtlp::traces(60).spans(3).seed(43).build();
    let spans = keep_spans(&mut req, |id| {
        peers.view_full().owner(id) != tailgate_gateway::peers::Owner::Local
    });
    assert!(spans > 30, "{spans} spans for the peer");
    send(addr, &req).await;
    until(
        || stats.peers.forwarded_spans.get() + stats.peer_rejected_spans.get() == spans,
        || {
            format!(
                "{} forwarded and {} rejected by the peer of {spans}",
                stats.peers.forwarded_spans.get(),
                stats.peer_rejected_spans.get()
            )
        },
    )
    .await;
    let requests = peer.bodies().len() as u64;
    assert!(requests > 0);
    assert_eq!(
        stats.peer_rejected_spans.get(),
        requests,
        "one span a request"
    );
    assert_eq!(stats.rejected_spans(), requests, "and in the total");
    assert_eq!(peer.spans(), spans, "the peer had every span");
    pod.stop.cancel();
    pod.served.await.unwrap().unwrap();
    backend_stop.cancel();
    peer_stop.cancel();
}

/// Scenario: a gateway's peer refuses everything for memory (RESOURCE_EXHAUSTED with a
/// retry hint) until the gateway's retries run out.
/// Guarantees: the send fails and its spans stay here (counted as a peer failure), but
/// the peer stays on the ring, as on the routers' (they keep sending an overloaded
/// gateway its traces; configuration.md, "A peer refusing for memory ... stays on the
/// ring"): taking it off would split its traces between the two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_refusing_for_memory_stays_on_the_ring() {
    let peer_stop = CancellationToken::new();
    let (peer_addr, peer) = common::capture_backend(&peer_stop).await;
    peer.set_overloaded(true);
    let (pod, backend_stop) = beside([127, 0, 0, 44], peer_addr, Duration::ZERO).await;
    let peers = pod.peers.clone();
    let mut req = FakeOtlp::traces(20).spans(2).seed(44).build();
    let spans = keep_spans(&mut req, |id| {
        peers.view_full().owner(id) != tailgate_gateway::peers::Owner::Local
    });
    assert!(spans > 5, "{spans} spans for the peer");
    send(pod.addr, &req).await;
    until_within(
        Duration::from_secs(15),
        || pod.stats.peers.failures.get() > 0,
        || "the send to the overloaded peer never gave up".into(),
    )
    .await;
    assert!(peer.overload_refusals() > 0);
    let member = Member::new(peer_addr.to_string());
    assert!(
        !peers.is_away(&member),
        "a peer refusing for memory is not marked down"
    );
    assert_eq!(peers.view_full().ring.members().len(), 2);
    pod.stop.cancel();
    pod.served.await.unwrap().unwrap();
    backend_stop.cancel();
    peer_stop.cancel();
}

/// A gateway whose ring also holds a peer that accepts connections and never answers.
struct BesideAHole {
    /// The gateway, on its own 127.0.0.x address; its backend is stopped by `backend_stop`.
    pod: Pod,
    /// Accepts the peer's connections and keeps them open, unanswered.
    hole: JoinHandle<()>,
    backend_stop: CancellationToken,
}

/// Starts a [`BesideAHole`] gateway on `ip`, drained within `drain` when stopped.
async fn beside_a_hole(ip: [u8; 4], drain: Duration) -> BesideAHole {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let hole = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = hole.accept().await {
            sockets.push(s);
        }
    });
    let (pod, backend_stop) = beside(ip, hole_addr, drain).await;
    BesideAHole {
        pod,
        hole,
        backend_stop,
    }
}

/// A one-shard-pair gateway on `ip` whose static ring also holds `other`, exporting to a
/// capture backend that `backend_stop` (returned) stops; drained within `drain`.
async fn beside(ip: [u8; 4], other: SocketAddr, drain: Duration) -> (Pod, CancellationToken) {
    let (stop, backend_stop) = (CancellationToken::new(), CancellationToken::new());
    let receive = ReceiveConfig {
        grpc: Some(SocketAddr::from((ip, 0))),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let peers = PeersConfig {
        advertise: Some(addr.to_string()),
        static_list: vec![addr.to_string(), other.to_string()],
        leave_linger: Duration::from_millis(300),
        timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let largest = receive.max_request_bytes;
    let pod = start_pod(listeners, peers, largest, drain, (stop, &backend_stop)).await;
    (pod, backend_stop)
}

/// Scenario: a gateway shares its ring with a peer that accepts connections and never
/// answers, and is stopped with a 2 s drain deadline while it buffers traces. Leaving the
/// ring gives every trace to that peer, whose sends hang far past the deadline.
/// Guarantee: when the drain deadline cuts the hand-off short, the traces the hand-off took
/// out of the shards are decided and exported here; none is dropped with the send that held
/// it (issue 14, item 7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_cut_short_by_the_drain_deadline_loses_nothing() {
    let BesideAHole {
        mut pod,
        hole,
        backend_stop,
    } = beside_a_hole([127, 0, 0, 23], Duration::from_secs(2)).await;
    let (addr, stats, peers) = (pod.addr, pod.stats.clone(), pod.peers.clone());

    // Only traces this gateway owns, so that nothing is forwarded to the hole while sending.
    let mut sent = 0u64;
    for seed in 0..40u64 {
        let req = FakeOtlp::traces(1).spans(3).seed(4000 + seed).build();
        let id: [u8; 16] = trace_ids(&req)[0].clone().try_into().unwrap();
        if peers.view_full().owner(&id) == tailgate_gateway::peers::Owner::Local {
            send(addr, &req).await;
            sent += 3;
        }
    }
    assert!(sent > 0);
    let started = tokio::time::Instant::now();
    pod.stop.cancel();
    (&mut pod.served).await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "drain overran its deadline"
    );

    let got = arrivals(&[&pod]);
    let exported: usize = got.values().map(|a| a.0.len()).sum();
    assert_eq!(
        exported as u64, sent,
        "every buffered span was exported here"
    );
    assert_eq!(stats.peers.handoff_pending_spans.get(), 0);
    assert_eq!(stats.in_flight_spans(), 0);
    assert!(stats.peers.failures.get() > 0, "the hole was tried");
    assert!(
        stats.peers.abandoned_spans.get() > 0,
        "the cut-short hand-off is counted as possibly taken twice"
    );
    hole.abort();
    backend_stop.cancel();
}

/// Scenario: a gateway shares its ring with a peer that accepts connections and never
/// answers; a client sends it a request of 2,000 bare spans of traces that peer owns.
/// Guarantees: while the gateway waits for the peer, what it holds for the request (its
/// scan, a 64-byte entry a span) is counted against the buffer's limit
/// (`shard_queue_bytes`), so that requests waiting on peers are bounded as buffered spans
/// are; it was not counted at all before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waiting_on_a_peer_is_counted_against_the_buffer() {
    let BesideAHole {
        mut pod,
        hole,
        backend_stop,
    } = beside_a_hole([127, 0, 0, 42], Duration::from_secs(1)).await;
    let (addr, stats, peers) = (pod.addr, pod.stats.clone(), pod.peers.clone());
    let mut req = tailgate_core::test_util::bare_spans(4000, 42);
    let spans = keep_spans(&mut req, |id| {
        peers.view_full().owner(id) != tailgate_gateway::peers::Owner::Local
    }) as usize;
    assert!(spans > 1000, "{spans} spans for the peer");
    let sending = tokio::spawn(async move { send(addr, &req).await });
    until(
        || stats.shard_queue_bytes.get() >= 64 * spans as u64,
        || {
            format!(
                "{} bytes counted while the request waits on the peer",
                stats.shard_queue_bytes.get()
            )
        },
    )
    .await;
    assert!(!sending.is_finished(), "the peer never answers");
    sending.abort();
    pod.stop.cancel();
    (&mut pod.served).await.unwrap().unwrap();
    hole.abort();
    backend_stop.cancel();
}

/// Scenario: a gateway alone, buffering traces, is stopped with a 2 s drain deadline while
/// a client holds an OTLP/HTTP request open: it announced 100 KB, sent 10 bytes and stalls
/// (the receive timeout is the default 30 s).
/// Guarantee: the stalled request does not hold the drain: the gateway stops within its
/// deadline and every buffered trace is decided and exported; the stalled sender is cut
/// off unacknowledged (it retries elsewhere). Health and metrics answer through the drain
/// (`/readyz` 503, `/metrics` scraped: a black-box check found both ports closed at
/// SIGTERM, so what the drain did was never scraped) and close once it is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_does_not_hold_the_drain() {
    let (stop, backend_stop) = (CancellationToken::new(), CancellationToken::new());
    let (backend_addr, backend) = common::capture_backend(&backend_stop).await;
    let receive = ReceiveConfig {
        grpc: Some("127.0.0.24:0".parse().unwrap()),
        http: Some("127.0.0.24:0".parse().unwrap()),
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let (addr, http) = (
        listeners.grpc_addr().unwrap(),
        listeners.http_addr().unwrap(),
    );
    let config = exporting_to(
        backend_addr,
        receive,
        BufferConfig::default().shards,
        PeersConfig::default(),
    );
    let gateway = Gateway::start(&config, common::plan(KEEP_ALL)).unwrap();
    let stats = gateway.stats().clone();
    let admin = tokio::net::TcpListener::bind("127.0.0.24:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let served =
        tokio::spawn(gateway.serve(listeners, Some(admin), stop.clone(), Duration::from_secs(2)));
    let mut sent = 0u64;
    for seed in 0..10u64 {
        send(
            addr,
            &FakeOtlp::traces(2).spans(3).seed(5000 + seed).build(),
        )
        .await;
        sent += 6;
    }
    assert!(common::admin_get(admin_addr, "/readyz")
        .await
        .starts_with("HTTP/1.1 200"));
    let stalled = tailgate_core::test_util::stalled_upload(http)
        .await
        .unwrap();

    let started = tokio::time::Instant::now();
    stop.cancel();
    // While it drains (the stalled request holds the receivers for a fifth of the
    // deadline), health and metrics still answer: not ready, and scraped.
    let mut not_ready = false;
    while !not_ready && started.elapsed() < Duration::from_secs(1) {
        not_ready = common::admin_get(admin_addr, "/readyz")
            .await
            .starts_with("HTTP/1.1 503");
    }
    assert!(not_ready, "/readyz said 503 during the drain");
    let metrics = common::admin_get(admin_addr, "/metrics").await;
    assert!(
        metrics.starts_with("HTTP/1.1 200") && metrics.contains("tailgate_gateway_held_bytes"),
        "{metrics}"
    );
    assert!(!served.is_finished(), "checked during the drain");
    served.await.unwrap().unwrap();
    // Once the drain is over the ports close (the admin task drops its listener soon
    // after the drain's end signals it).
    let closed_by = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(admin_addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < closed_by,
            "admin port still open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stalled request held the drain for {:?}",
        started.elapsed()
    );
    assert_eq!(
        backend.spans(),
        sent,
        "every buffered span was decided and exported"
    );
    assert_eq!(stats.in_flight_spans(), 0);
    drop(stalled);
    backend_stop.cancel();
}

/// Scenario: a gateway alone whose backend refuses everything (UNAVAILABLE), buffering
/// traces, is stopped with a 1 s drain deadline and a 30 s final scrape wait.
/// Guarantees: the spans still unexported at the deadline are counted in
/// `tailgate_gateway_drain_lost_spans_total`, which a scrape after the deadline reads (a
/// day-one check saw them only in the log: the process exited before any scrape); the
/// gateway then exits soon after that scrape, not at the end of the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_lost_at_the_drain_deadline_are_scraped_before_exit() {
    let (stop, backend_stop) = (CancellationToken::new(), CancellationToken::new());
    let (backend_addr, backend) = common::capture_backend(&backend_stop).await;
    backend.set_unavailable(true);
    let receive = ReceiveConfig {
        grpc: Some("127.0.0.26:0".parse().unwrap()),
        http: None,
        ..Default::default()
    };
    let listeners = Listeners::bind(&receive).await.unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let config = exporting_to(
        backend_addr,
        receive,
        BufferConfig::default().shards,
        PeersConfig::default(),
    );
    let gateway = Gateway::start(&config, common::plan(KEEP_ALL))
        .unwrap()
        .with_final_scrape_wait(Duration::from_secs(30));
    let admin = tokio::net::TcpListener::bind("127.0.0.26:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let served =
        tokio::spawn(gateway.serve(listeners, Some(admin), stop.clone(), Duration::from_secs(1)));
    let mut sent = 0u64;
    for seed in 0..5u64 {
        send(
            addr,
            &FakeOtlp::traces(2).spans(3).seed(7000 + seed).build(),
        )
        .await;
        sent += 6;
    }
    let started = tokio::time::Instant::now();
    stop.cancel();
    let lost_line = format!("tailgate_gateway_drain_lost_spans_total {sent}\n");
    let mut scraped = None;
    while scraped.is_none() && started.elapsed() < Duration::from_secs(10) {
        let metrics = common::admin_get(admin_addr, "/metrics").await;
        if metrics.contains(&lost_line) {
            scraped = Some(started.elapsed());
        } else {
            assert!(!served.is_finished(), "exited before the loss was scraped");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let scraped = scraped.expect("the loss was scraped");
    assert!(
        scraped >= Duration::from_secs(1),
        "counted at the deadline: {scraped:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("exits soon after the scrape, not at the end of the wait")
        .unwrap()
        .unwrap();
    assert_eq!(backend.spans(), 0);
    backend_stop.cancel();
}

/// Scenario: a gateway with a peers' secret, and one without peers at all (no secret
/// either, as `examples/gateway.yaml`); an outsider (no secret, or a wrong one) sends spans
/// marked as a peer's and calls the Decisions method; a client exports normally.
/// Guarantees (issue 16): the outsider's peer requests are refused with PERMISSION_DENIED
/// and counted by reason, and change nothing; the client's export is taken. A gateway
/// without peers takes no peer request (finding: its Decisions method dropped a client's
/// error trace on an outsider's word).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_requests_without_the_secret_are_refused() {
    for standalone in [false, true] {
        outsiders_peer_requests_are_refused(standalone).await;
    }
}

async fn outsiders_peer_requests_are_refused(standalone: bool) {
    use tailgate_core::receive::{DECISIONS_PATH, PEER_AUTH_HEADER, PEER_HEADER};
    let listeners = Listeners::bind(&ReceiveConfig {
        grpc: Some("127.0.0.24:0".parse().unwrap()),
        http: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = listeners.grpc_addr().unwrap();
    let p = if standalone {
        pod_with_peers(listeners, PeersConfig::default()).await
    } else {
        pod(listeners, &[addr]).await
    };
    let expected = if standalone { "no peers" } else { "secret" };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    let export = http::uri::PathAndQuery::from_static(tailgate_core::wire::TRACE_EXPORT_PATH);
    let decisions = http::uri::PathAndQuery::from_static(DECISIONS_PATH);
    let body = bytes::Bytes::from(FakeOtlp::traces(2).spans(2).seed(8).build().encode_to_vec());
    for secret in [None, Some("guess")] {
        let mut req = tonic::Request::new(body.clone());
        req.metadata_mut().insert(
            PEER_HEADER,
            "handoff; hops=1; age_ms=99999".parse().unwrap(),
        );
        if let Some(s) = secret {
            req.metadata_mut()
                .insert(PEER_AUTH_HEADER, s.parse().unwrap());
        }
        raw.ready().await.unwrap();
        let err = raw
            .unary(req, export.clone(), tailgate_core::wire::RawCodec)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(expected), "{err:?}");
        // A forged decision: drop a trace, or keep it with a count of 1e9.
        let mut record = vec![7u8; 16];
        record.push(1);
        record.extend_from_slice(&1e-9f64.to_le_bytes());
        raw.ready().await.unwrap();
        let err = raw
            .unary(
                tonic::Request::new(bytes::Bytes::from(record)),
                decisions.clone(),
                tailgate_core::wire::RawCodec,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
        assert!(err.message().contains(expected), "{err:?}");
    }
    assert_eq!(p.stats.refused_requests[5].get(), 4);
    assert_eq!(p.stats.received_spans.get(), 0);
    assert_eq!(p.stats.peers.received_decisions.get(), 0);
    send(addr, &FakeOtlp::traces(2).spans(2).seed(9).build()).await;
    assert_eq!(p.stats.received_spans.get(), 4);
    p.stop.cancel();
    p.served.await.unwrap().unwrap();
}

/// Two pods at `ips` listing each other, the second with a `peers.secret` of its own (a
/// misconfigured rollout); and their addresses.
async fn pods_with_other_secrets(ips: [[u8; 4]; 2]) -> (Pod, Pod, Vec<SocketAddr>) {
    let (listeners, addrs) = bind_pods(&ips).await;
    let mut listeners = listeners.into_iter();
    let a = pod(listeners.next().unwrap(), &addrs).await;
    let other = PeersConfig {
        advertise: Some(addrs[1].to_string()),
        static_list: addrs.iter().map(ToString::to_string).collect(),
        leave_linger: Duration::from_millis(300),
        secret: Some("another-secret".into()),
        ..Default::default()
    };
    let b = pod_with_peers(listeners.next().unwrap(), other).await;
    (a, b, addrs)
}

/// Scenario: two gateways whose `peers.secret`s differ (a misconfigured rollout); a
/// client sends ten requests to the first, with spans of traces the second owns. One
/// thread runs both, so the test reads their log.
/// Guarantees: the first keeps what the second refuses, counts each failed send, and
/// says once (not once per request: a trial saw 200 lines in two seconds) that the peer
/// refuses its credentials; the second says once that it refuses peer requests, naming
/// the secret (a trial found the misconfiguration only in a counter).
#[tokio::test]
async fn peers_with_different_secrets_say_so_once() {
    let (log, _installed) = tailgate_core::test_util::CapturedLog::install();
    let (a, b, addrs) = pods_with_other_secrets([[127, 0, 0, 95], [127, 0, 0, 96]]).await;
    for seed in 0..10 {
        send(
            addrs[0],
            &FakeOtlp::traces(8).spans(2).seed(300 + seed).build(),
        )
        .await;
    }
    assert!(
        a.stats.peers.failures.get() >= 2,
        "{}",
        a.stats.peers.failures.get()
    );
    assert_eq!(a.stats.received_spans.get(), 160);
    let text = String::from_utf8_lossy(&log.text()).into_owned();
    assert_eq!(
        log.count("A peer refuses this gateway's credentials"),
        1,
        "{text}"
    );
    assert_eq!(log.count("Refusing a request as a peer's"), 1, "{text}");
    assert!(text.contains("peers.secret"), "{text}");
    for p in [a, b] {
        p.stop.cancel();
        p.served.await.unwrap().unwrap();
    }
}

/// Scenario: as above, but nothing is sent: the first gateway has the second off its ring
/// (as after a blip: a restart it saw as unreachable) and probes it every half second.
/// Guarantees: the probes' refusals are said in its log (a re-check found the ring stuck
/// without a word: the probe read a refusal as "not answering"), and the peer stays off
/// its ring (it would refuse every forward).
#[tokio::test]
async fn a_peer_refusing_the_probe_is_named_in_the_log() {
    let (log, _installed) = tailgate_core::test_util::CapturedLog::install();
    let (a, b, addrs) = pods_with_other_secrets([[127, 0, 0, 97], [127, 0, 0, 98]]).await;
    until(
        || a.peers.view_full().ring.members().len() == 2,
        || "A sees both".into(),
    )
    .await;
    a.peers
        .mark_down(&Member::new(addrs[1].to_string()), "a blip");
    until(
        || log.count("A peer refuses this gateway's credentials") == 1,
        || String::from_utf8_lossy(&log.text()).into_owned(),
    )
    .await;
    assert_eq!(a.peers.view_full().ring.members().len(), 1);
    for p in [a, b] {
        p.stop.cancel();
        p.served.await.unwrap().unwrap();
    }
}

/// Scenario: two gateways whose peer traffic has a port of its own (`peers.listen`, the
/// same port on both, as in Kubernetes); B gets spans it does not own.
/// Guarantees: B forwards them to A through A's peer port (A counts them as received from
/// a peer and exports them); a peer request on a receiver and a client request on the peer
/// port are each refused with PERMISSION_DENIED naming the right port, and a peer request
/// without the secret is refused on the peer port as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_traffic_uses_a_port_of_its_own() {
    let ips = [[127, 0, 6, 1], [127, 0, 6, 2]];
    let peer_port = std::net::TcpListener::bind(SocketAddr::from((ips[0], 0)))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (listeners, addrs) = bind_pods(&ips).await;
    let mut pods = Vec::new();
    for (ip, l) in ips.into_iter().zip(listeners) {
        let listen = SocketAddr::from((ip, peer_port));
        pods.push(pod_with_peer_port(l, &addrs[..1], Some(listen)).await);
    }
    let (a, b) = (&pods[0], &pods[1]);

    let req = FakeOtlp::traces(60).spans(4).seed(11).build();
    send(b.addr, &req).await;
    assert_eq!(b.stats.peers.forwarded_spans.get(), 240);
    assert_eq!(a.stats.peers.received_spans.get(), 240);
    settle(&[a, b]).await;
    assert_eq!(a.backend.spans(), 240);
    assert_eq!(b.backend.spans(), 0);

    // A peer request on A's receiver: refused, though it carries the secret.
    let mut client = TraceServiceClient::connect(format!("http://{}", a.addr))
        .await
        .unwrap();
    let mut peer_req = tonic::Request::new(req.clone());
    let meta = peer_req.metadata_mut();
    meta.insert(
        tailgate_core::receive::PEER_HEADER,
        "forwarded; hops=1".parse().unwrap(),
    );
    meta.insert(
        tailgate_core::receive::PEER_AUTH_HEADER,
        SECRET.parse().unwrap(),
    );
    let refused = client.export(peer_req).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("peers.listen"), "{refused:?}");
    // A client request on A's peer port: refused.
    let a_peer = SocketAddr::from((ips[0], peer_port));
    let mut client = TraceServiceClient::connect(format!("http://{a_peer}"))
        .await
        .unwrap();
    let refused = client.export(req.clone()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("peer port"), "{refused:?}");
    // A peer request on the peer port without the secret: refused there too.
    let mut no_secret = tonic::Request::new(req.clone());
    no_secret.metadata_mut().insert(
        tailgate_core::receive::PEER_HEADER,
        "forwarded; hops=1".parse().unwrap(),
    );
    let refused = client.export(no_secret).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("secret"), "{refused:?}");
    // Neither reached the buffer.
    assert_eq!(a.stats.received_spans.get(), 240);

    for p in &pods {
        p.stop.cancel();
    }
    for p in pods {
        p.served.await.unwrap().unwrap();
    }
}
