//! Tests of the receive config and the in-flight budget's sender shares.
use super::*;

fn addr(last: u8) -> Option<std::net::IpAddr> {
    Some(std::net::IpAddr::from([127, 0, 0, last]))
}

/// Takes `n` bytes `times` times for `sender`, each in a request of its own.
fn takes(
    budget: &InFlight,
    sender: Option<std::net::IpAddr>,
    n: usize,
    times: usize,
) -> Result<Vec<InFlightBytes>, Refusal> {
    (0..times)
        .map(|_| {
            let mut held = InFlightBytes::from_sender(sender);
            budget.take(&mut held, n).map(|()| held)
        })
        .collect()
}

/// Scenario: one sender takes a 1,000-byte budget whose share is 100, 100 at a time,
/// until refused; then a second sender comes. The same with a largest request of 950, and
/// with a budget not shared.
/// Guarantees: alone, a sender may hold all but one share (900), refused past it naming
/// the room kept, so a sender that comes next finds it; never less than the largest
/// request; unshared, the whole budget, and only the budget refuses.
#[tokio::test(start_paused = true)]
async fn a_sender_alone_may_use_all_but_a_newcomers_room() {
    let budget = InFlight::shared(1000, 100, 300);
    let _first = takes(&budget, addr(1), 100, 9).unwrap();
    match takes(&budget, addr(1), 100, 1) {
        Err(Refusal::OverShare { message, .. }) => {
            assert!(message.contains("room kept for other senders"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let _next = takes(&budget, addr(2), 100, 1).unwrap();
    assert_eq!(budget.held(), 1000);

    let budget = InFlight::shared(1000, 100, 950);
    let _first = takes(&budget, addr(1), 950, 1).unwrap();
    assert!(takes(&budget, addr(1), 1, 1).is_err());

    let budget = InFlight::new(1000);
    let _held = takes(&budget, addr(1), 100, 10).unwrap();
    assert_eq!(budget.held(), 1000);
    match takes(&budget, addr(1), 100, 1) {
        Err(Refusal::Overloaded { message, .. }) => {
            assert!(message.starts_with("receivers hold 1000"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

/// Scenario: sender 1 asks for 100 bytes, then sender 2 takes 100 at a time until
/// refused; sender 1 then takes 100 at a time; 11 s later (sender 1 holding nothing and
/// silent) sender 2 asks again.
/// Guarantees: with sender 1 about, sender 2 gets past half the budget only within its
/// share (500), refused naming itself, and sender 1 finds the rest; once sender 1 has
/// been silent for SENDER_RECENT, sender 2 may use what is free but one share; bytes
/// given back leave the shares.
#[tokio::test(start_paused = true)]
async fn a_sender_keeps_to_its_share_while_another_is_about() {
    let budget = InFlight::shared(1000, 100, 100);
    drop(takes(&budget, addr(1), 100, 1).unwrap());
    let flood = takes(&budget, addr(2), 100, 5).unwrap();
    match takes(&budget, addr(2), 100, 1) {
        Err(Refusal::OverShare { message, .. }) => {
            assert!(
                message.contains("127.0.0.2") && message.contains("2 senders"),
                "{message}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(budget.held(), 500);
    let other = takes(&budget, addr(1), 100, 5).unwrap();
    assert_eq!(budget.held(), 1000);
    drop(other);
    assert_eq!(budget.held(), 500);

    tokio::time::advance(SENDER_RECENT + Duration::from_secs(1)).await;
    let more = takes(&budget, addr(2), 100, 4).unwrap();
    assert!(takes(&budget, addr(2), 100, 1).is_err());
    assert_eq!(budget.held(), 900);
    drop((flood, more));
    assert_eq!(budget.held(), 0);
    let table = budget.shares.as_ref().unwrap().senders.lock().unwrap();
    assert!(table.by_addr.values().all(|s| s.held == 0));
}

/// Scenario: a 1,000-byte budget whose largest request costs 800; three senders about.
/// Guarantees: a sender may always hold the largest request's cost, though its share
/// (333) is less; requests without a sender address count in no share.
#[tokio::test(start_paused = true)]
async fn a_share_is_at_least_the_largest_request() {
    let budget = InFlight::shared(1000, 800, 800);
    drop(takes(&budget, addr(1), 1, 1).unwrap());
    drop(takes(&budget, addr(3), 1, 1).unwrap());
    let big = takes(&budget, addr(2), 800, 1).unwrap();
    assert!(matches!(
        takes(&budget, addr(2), 100, 1),
        Err(Refusal::OverShare { .. })
    ));
    let anonymous = takes(&budget, None, 200, 1).unwrap();
    assert_eq!(budget.held(), 1000);
    drop((big, anonymous));
}

/// Scenario: sender 2, alone, holds 900 of a 1,000-byte budget (share 100) in nine
/// requests of 100: seven waiting STALLED for the first frame of their body, one waiting
/// as long for a further frame, one just begun; sender 3 takes the last 100 and waits;
/// then sender 1 asks for 100, is refused, and asks again. (A hostile-input check: a
/// flood from two addresses that came first held the budget, and a gRPC sender lost
/// spans, until the flood's requests timed out.)
/// Guarantees: the refusal asks sender 2, over its share (333 with three senders), for
/// the 567 it holds past it: six of its stalled requests are refused naming it and why,
/// and no more (the seventh keeps its room), nor the one mid-body (not yet
/// STALLED_BODY), nor the one just begun, nor sender 3's (within its share); sender 1's
/// second ask is served.
#[tokio::test(start_paused = true)]
async fn a_sender_refused_for_room_gets_it_back_from_stalled_requests_over_their_share() {
    let budget = InFlight::shared(1000, 100, 100);
    let wait = |held: InFlightBytes, begun: bool| {
        tokio::spawn(async move {
            held.unless_reclaimed(std::future::pending::<()>(), begun)
                .await
        })
    };
    let mut taken = takes(&budget, addr(2), 100, 8).unwrap();
    let body = wait(taken.pop().unwrap(), true);
    let stalled: Vec<_> = taken.into_iter().map(|held| wait(held, false)).collect();
    tokio::task::yield_now().await;
    tokio::time::advance(STALLED).await;
    let fresh = wait(takes(&budget, addr(2), 100, 1).unwrap().remove(0), false);
    let within = wait(takes(&budget, addr(3), 100, 1).unwrap().remove(0), false);
    tokio::task::yield_now().await;
    assert_eq!(budget.held(), 1000);

    assert!(matches!(
        takes(&budget, addr(1), 100, 1),
        Err(Refusal::Overloaded { .. })
    ));
    let mut kept = 0;
    for task in stalled {
        // Within the refusal's retry hint (the clock is paused: it runs on only when
        // nothing else can).
        match tokio::time::timeout(DEFAULT_RETRY_AFTER, task).await {
            Ok(Ok(Err(Refusal::OverShare { message, .. }))) => assert!(
                message.contains("(127.0.0.2)")
                    && message.contains("holding 100 bytes")
                    && message.contains("sent nothing of its body for 1.0s"),
                "{message}"
            ),
            Ok(other) => panic!("{other:?}"),
            Err(_) => kept += 1,
        }
    }
    assert_eq!(kept, 1, "refused until the 567 bytes owed were given back");
    assert!(!body.is_finished() && !fresh.is_finished() && !within.is_finished());
    assert_eq!(budget.held(), 400);
    // Sender 2, asked to give room back, is held to its even share (333) though half
    // the budget is free: the room is for sender 1.
    assert!(matches!(
        takes(&budget, addr(2), 100, 1),
        Err(Refusal::OverShare { .. })
    ));
    let _served = takes(&budget, addr(1), 100, 1).unwrap();
    for task in [body, fresh, within] {
        task.abort();
    }
}

/// Scenario: a budget of 1,000 whose least share is 300 (the largest request): senders
/// 2, 3 and 4 each hold 300 in three requests stalled STALLED before their body, sender 5
/// holds 100; then sender 1 asks for 100. (A hostile-input trial: floods from four
/// addresses at the defaults each held one largest request's worth, none over its share,
/// and nothing was given back.)
/// Guarantees: each flooder gives back what it holds past an even share (200): one
/// request each; sender 5 (under it) gives nothing; sender 1's next ask is served, and
/// a flooder's next is refused; one warning says so.
#[tokio::test(start_paused = true)]
async fn floods_at_their_least_share_still_give_room_back() {
    let (log, _installed) = crate::test_util::CapturedLog::install();
    let budget = InFlight::shared(1000, 300, 300);
    let mut stalled = Vec::new();
    for sender in 2..=4 {
        for held in takes(&budget, addr(sender), 100, 3).unwrap() {
            stalled.push(tokio::spawn(async move {
                held.unless_reclaimed(std::future::pending::<()>(), false)
                    .await
            }));
        }
    }
    let other = takes(&budget, addr(5), 100, 1).unwrap();
    assert_eq!(budget.held(), 1000);
    tokio::task::yield_now().await;
    tokio::time::advance(STALLED).await;
    assert!(matches!(
        takes(&budget, addr(1), 100, 1),
        Err(Refusal::Overloaded { .. })
    ));
    let mut refused = 0;
    for task in stalled {
        if let Ok(answer) = tokio::time::timeout(DEFAULT_RETRY_AFTER, task).await {
            assert!(matches!(answer, Ok(Err(Refusal::OverShare { .. }))));
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "one request of each flooder");
    assert_eq!(log.count("refused for want of room while others hold"), 1);
    assert_eq!(budget.held(), 700);
    let _served = takes(&budget, addr(1), 100, 1).unwrap();
    assert!(matches!(
        takes(&budget, addr(2), 100, 1),
        Err(Refusal::OverShare { .. })
    ));
    drop(other);
}

/// Scenario: IPv6 senders in one /64 and an IPv4-mapped address; then, with the table
/// of senders full, two new senders.
/// Guarantees: a /64 is one sender (a host picking addresses from its /64 gets one
/// share, refused as one), a mapped address is its IPv4 one; senders past the table's
/// bound are counted together in one entry, not left without a share, and their bytes
/// go back to it.
#[tokio::test(start_paused = true)]
async fn a_v6_64_is_one_sender_and_senders_past_the_bound_share_one_entry() {
    let v6 = |s: &str| Some(s.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(
        sender_key(v6("::ffff:10.1.2.3").unwrap()),
        v6("10.1.2.3").unwrap()
    );
    assert_eq!(
        sender_key(v6("2001:db8:1:2:aaaa::1").unwrap()),
        v6("2001:db8:1:2::").unwrap()
    );
    let budget = InFlight::shared(1000, 100, 100);
    drop(takes(&budget, addr(1), 100, 1).unwrap());
    let first = takes(&budget, v6("2001:db8::1"), 100, 5).unwrap();
    assert!(matches!(
        takes(&budget, v6("2001:db8::2"), 100, 1),
        Err(Refusal::OverShare { .. })
    ));
    drop(first);

    let budget = InFlight::shared(1 << 20, 1, 1);
    for i in 0..MAX_SENDERS as u32 {
        let sender = Some(std::net::IpAddr::from((0x0a00_0000 + i).to_be_bytes()));
        drop(takes(&budget, sender, 1, 1).unwrap());
    }
    let x = takes(&budget, addr(1), 10, 1).unwrap();
    let y = takes(&budget, addr(2), 20, 1).unwrap();
    {
        let table = budget.shares.as_ref().unwrap().senders.lock().unwrap();
        assert_eq!(table.by_addr.len(), MAX_SENDERS + 1);
        assert_eq!(table.by_addr[&OVERFLOW].held, 30);
    }
    drop((x, y));
    assert_eq!(
        budget
            .shares
            .as_ref()
            .unwrap()
            .senders
            .lock()
            .unwrap()
            .by_addr[&OVERFLOW]
            .held,
        0
    );
    assert_eq!(budget.held(), 0);
}

/// Scenario: `receive.sender_shares: false`; two senders about, one taking more than
/// half the budget.
/// Guarantees: no sender is held to a share (the budget alone refuses); shares are on
/// by default.
#[tokio::test(start_paused = true)]
async fn sender_shares_can_be_turned_off() {
    let config = |yaml: &str| -> ReceiveConfig { serde_yaml_ng::from_str(yaml).unwrap() };
    assert!(config("{}").sender_shares);
    let limits = Limits::plaintext(&config(
        "{sender_shares: false, max_request_bytes: 1024, max_in_flight_bytes: 1048576}",
    ));
    drop(takes(&limits.in_flight, addr(1), 1, 1).unwrap());
    let most = takes(&limits.in_flight, addr(2), 1 << 17, 7).unwrap();
    assert_eq!(limits.in_flight.held(), 7 << 17);
    drop(most);
}

/// Scenario: `max_connection_age` left out, 0, and set. Guarantees: never for the
/// first two (as grpc-go), the value for the last; the grace defaults to 30 s.
#[test]
fn connection_age_zero_means_never() {
    let limits = |yaml: &str| {
        let c: ReceiveConfig = serde_yaml_ng::from_str(yaml).expect("valid receive config");
        Limits::plaintext(&c)
    };
    assert_eq!(limits("{}").max_connection_age, None);
    assert_eq!(limits("{max_connection_age: 0s}").max_connection_age, None);
    assert_eq!(
        limits("{max_connection_age: 5m}").max_connection_age,
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        limits("{}").max_connection_age_grace,
        Duration::from_secs(30)
    );
}

/// Scenario: a budget with room for one open request; two requests with a large header
/// each (and a content type and an origin) handed over one after the other, as the
/// receivers' connection loop hands them over; then the first is taken by its receiver,
/// and a request that came another way.
/// Guarantees: the first is charged as it is handed over (the budget holds its cost
/// before any receiver runs); the second is refused then, its headers kept for the checks
/// its answer follows; the first's headers are copies, not views of the buffer they were
/// read from; `take` gives each its outcome, and a request without one is charged when
/// taken.
#[tokio::test(start_paused = true)]
async fn an_open_request_is_charged_as_it_is_handed_over() {
    let request = || {
        let mut req = http::Request::new(());
        let headers = req.headers_mut();
        headers.insert("x-large", http::HeaderValue::from_static(LARGE));
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        headers.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_static("https://ui.example"),
        );
        req
    };
    const LARGE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let cost = request_cost(request().headers());
    let budget = InFlight::new(cost + cost / 2);
    let (mut first, mut second) = (request(), request());
    Admission::attach(&budget, &mut first);
    assert_eq!(budget.held(), cost, "charged when handed over");
    // Its headers are its own, no longer views of what they were read from.
    assert_eq!(first.headers()["x-large"], LARGE);
    assert_ne!(
        first.headers()["x-large"].as_bytes().as_ptr(),
        LARGE.as_ptr()
    );
    Admission::attach(&budget, &mut second);
    assert_eq!(budget.held(), cost);
    assert!(Admission::is_refused(&second) && !Admission::is_refused(&first));
    assert_eq!(
        second.headers().len(),
        3,
        "kept whole, for the checks before its answer"
    );
    let held = Admission::take(&budget, &mut first).unwrap();
    assert!(matches!(
        Admission::take(&budget, &mut second),
        Err(Refusal::Overloaded { .. })
    ));
    drop(held);
    assert_eq!(budget.held(), 0);
    let mut direct = request();
    let held = Admission::take(&budget, &mut direct).unwrap();
    assert_eq!(budget.held(), cost);
    drop(held);
}
