//! The dialer's state machine on the test clock: bounds, back-off, the cap
//! on dials in flight, and what a member and a `--peer` address keep.

use super::*;
use crate::clock::ManualClock;

fn addr(host: u8, port: u16) -> Multiaddr {
    format!("/ip4/10.0.0.{host}/tcp/{port}")
        .parse()
        .expect("addr")
}

fn dialer() -> (Dialer<ManualClock>, ManualClock) {
    let clock = ManualClock::at(1_000_000);
    (Dialer::with_clock(Vec::new(), clock.clone()), clock)
}

/// Starts what is due with nobody connected; returns the dials' ids.
fn start(d: &mut Dialer<ManualClock>) -> Vec<ConnectionId> {
    d.due(|_| false, false)
        .iter()
        .map(DialOpts::connection_id)
        .collect()
}

/// Fails every dial in flight.
fn fail_all(d: &mut Dialer<ManualClock>) {
    let ids: Vec<ConnectionId> = d.in_flight.keys().copied().collect();
    for id in ids {
        d.on_dial_failed(id);
    }
}

#[test]
fn addresses_per_instance_are_bounded() {
    let (mut d, _) = dialer();
    let peer = PeerId::random();
    let many: Vec<Multiaddr> = (1..=20).map(|p| addr(1, p)).collect();
    d.on_found(peer, many.clone(), false);
    d.on_found(peer, many, false);
    assert_eq!(d.found[&peer].addrs.len(), MAX_ADDRS);
}

#[test]
fn pending_instances_are_bounded_and_the_most_failed_go_first() {
    let (mut d, clock) = dialer();
    let first = PeerId::random();
    d.on_found(first, vec![addr(1, 1)], false);
    // The first one fails once; all others are fresh.
    start(&mut d);
    fail_all(&mut d);
    for i in 1..MAX_PENDING {
        clock.advance(1);
        d.on_found(PeerId::random(), vec![addr(2, i as u16)], false);
    }
    assert_eq!(d.pending(), MAX_PENDING);
    let newcomer = PeerId::random();
    d.on_found(newcomer, vec![addr(3, 1)], false);
    assert_eq!(d.pending(), MAX_PENDING, "the bound holds");
    assert!(d.found.contains_key(&newcomer), "a newcomer gets in");
    assert!(!d.found.contains_key(&first), "the most failed went first");
    // With no failures anywhere, the oldest goes.
    let oldest = d
        .found
        .iter()
        .min_by_key(|(_, i)| i.found_ms)
        .map(|(p, _)| *p)
        .expect("some");
    d.on_found(PeerId::random(), vec![addr(4, 1)], false);
    assert!(!d.found.contains_key(&oldest));
    // A flood of 500 leaves the bound as it was.
    for i in 0..500 {
        d.on_found(PeerId::random(), vec![addr(5, i)], false);
    }
    assert_eq!(d.len(), MAX_PENDING);
}

#[test]
fn members_do_not_count_against_the_pending_bound() {
    let (mut d, _) = dialer();
    let member = PeerId::random();
    d.on_found(member, vec![addr(1, 1)], true);
    for i in 0..200 {
        d.on_found(PeerId::random(), vec![addr(2, i)], false);
    }
    assert!(d.found.contains_key(&member), "a flood evicts no member");
    assert_eq!(d.members(), 1);
    assert_eq!(d.pending(), MAX_PENDING);
}

#[test]
fn dials_in_flight_are_capped() {
    let (mut d, _) = dialer();
    for i in 0..100 {
        d.on_found(
            PeerId::random(),
            vec![addr(1, i), addr(2, i), addr(3, i)],
            false,
        );
    }
    let started = start(&mut d);
    assert!(!started.is_empty());
    assert_eq!(d.dialling(), MAX_DIALS, "as many addresses as the cap");
    assert!(
        start(&mut d).is_empty(),
        "nothing more while the cap is full"
    );
    // One dial ends: its addresses' slots free up.
    let freed = d.in_flight[&started[0]].addrs.len();
    d.on_dial_failed(started[0]);
    assert_eq!(d.dialling(), MAX_DIALS - freed);
    start(&mut d);
    assert_eq!(d.dialling(), MAX_DIALS);
}

#[test]
fn failed_dials_back_off_exponentially_and_dead_addresses_expire() {
    let (mut d, clock) = dialer();
    let peer = PeerId::random();
    d.on_found(peer, vec![addr(1, 1)], false);
    assert_eq!(start(&mut d).len(), 1, "found: dialled at once");
    let mut wait = BACKOFF_MS;
    for _ in 1..ADDR_FAILURES {
        fail_all(&mut d);
        clock.advance(wait - 1);
        assert!(start(&mut d).is_empty(), "not before {wait} ms");
        clock.advance(1);
        assert_eq!(start(&mut d).len(), 1, "due after {wait} ms");
        wait *= 2;
    }
    fail_all(&mut d);
    assert!(
        !d.found.contains_key(&peer),
        "an address that failed {ADDR_FAILURES} times is dropped, and its instance with it"
    );
    clock.advance(PENDING_MAX_BACKOFF_MS);
    assert!(start(&mut d).is_empty());
}

#[test]
fn the_back_off_doubles_up_to_its_cap() {
    assert_eq!(backoff(1, 60_000), BACKOFF_MS);
    assert_eq!(backoff(2, 60_000), 2 * BACKOFF_MS);
    assert_eq!(backoff(3, 60_000), 4 * BACKOFF_MS);
    assert_eq!(backoff(40, 60_000), 60_000);
    assert_eq!(
        backoff(u32::MAX, MEMBER_MAX_BACKOFF_MS),
        MEMBER_MAX_BACKOFF_MS
    );
}

#[test]
fn a_member_is_kept_and_redialled_with_a_short_back_off() {
    let (mut d, clock) = dialer();
    let peer = PeerId::random();
    d.on_found(peer, vec![addr(1, 1)], false);
    let id = start(&mut d)[0];
    d.on_connected(peer, id);
    assert_eq!(d.members(), 1);
    // Connection lost; every redial fails for a while.
    for _ in 0..20 {
        clock.advance(MEMBER_MAX_BACKOFF_MS);
        assert_eq!(start(&mut d).len(), 1, "a member is redialled");
        fail_all(&mut d);
    }
    assert!(
        d.found.contains_key(&peer),
        "a member is not dropped so soon"
    );
    assert!(d.found[&peer].due_ms <= clock.now_ms() + MEMBER_MAX_BACKOFF_MS);
    // It comes back: failures forgiven.
    clock.advance(MEMBER_MAX_BACKOFF_MS);
    let id = start(&mut d)[0];
    d.on_connected(peer, id);
    assert_eq!(d.found[&peer].failures, 0);
}

#[test]
fn a_connected_peer_is_not_dialled() {
    let (mut d, _) = dialer();
    let peer = PeerId::random();
    d.on_found(peer, vec![addr(1, 1)], true);
    assert!(d.due(|p| *p == peer, true).is_empty());
}

#[test]
fn an_mdns_removal_stops_redialling() {
    let (mut d, clock) = dialer();
    let peer = PeerId::random();
    d.on_found(peer, vec![addr(1, 1)], true);
    d.on_gone(&peer);
    clock.advance(60_000);
    assert!(start(&mut d).is_empty());
    assert!(d.is_empty());
}

#[test]
fn fresh_instances_are_dialled_before_failing_ones() {
    let (mut d, clock) = dialer();
    let failing: Vec<PeerId> = (0..MAX_DIALS).map(|_| PeerId::random()).collect();
    for (i, p) in failing.iter().enumerate() {
        d.on_found(*p, vec![addr(1, i as u16)], false);
    }
    start(&mut d);
    fail_all(&mut d);
    clock.advance(BACKOFF_MS);
    let fresh = PeerId::random();
    d.on_found(fresh, vec![addr(2, 1)], false);
    start(&mut d);
    assert!(
        d.in_flight
            .values()
            .any(|f| f.target == Target::Found(fresh)),
        "the fresh one is dialled first"
    );
}

#[test]
fn peer_addresses_are_redialled_with_back_off_and_never_dropped() {
    let clock = ManualClock::at(1_000_000);
    let boot: Multiaddr = "/ip4/10.0.0.9/tcp/7000".parse().expect("addr");
    let mut d = Dialer::with_clock(vec![boot], clock.clone());
    for _ in 0..100 {
        assert_eq!(start(&mut d).len(), 1, "the --peer address is dialled");
        fail_all(&mut d);
        assert!(start(&mut d).is_empty(), "not before its back-off");
        clock.advance(MEMBER_MAX_BACKOFF_MS);
    }
    assert_eq!(d.bootstrap.len(), 1);
    // Once anyone is connected, an address without a peer id rests.
    assert!(d.due(|_| true, true).is_empty());
}

#[test]
fn a_dial_that_never_ends_frees_its_slot() {
    let (mut d, clock) = dialer();
    for i in 0..MAX_DIALS {
        d.on_found(PeerId::random(), vec![addr(1, i as u16)], false);
    }
    start(&mut d);
    assert_eq!(d.dialling(), MAX_DIALS);
    clock.advance(STALE_DIAL_MS);
    d.on_found(PeerId::random(), vec![addr(2, 1)], false);
    start(&mut d);
    assert_eq!(d.dialling(), 1, "the stale dials were given up");
}

#[test]
fn a_dial_refused_for_a_connected_peer_costs_nothing() {
    let (mut d, _) = dialer();
    let peer = PeerId::random();
    d.on_found(peer, vec![addr(1, 1)], false);
    let id = start(&mut d)[0];
    d.on_not_started(id, false);
    assert_eq!(d.found[&peer].failures, 0);
    assert_eq!(d.dialling(), 0);
}

#[test]
fn a_full_address_list_makes_room_only_by_dropping_a_failing_address() {
    let (mut d, _) = dialer();
    let peer = PeerId::random();
    let first: Vec<Multiaddr> = (1..=MAX_ADDRS as u16).map(|p| addr(1, p)).collect();
    d.on_found(peer, first, true);
    d.on_found(peer, vec![addr(2, 1)], true);
    assert!(
        !d.found[&peer].addrs.iter().any(|a| a.addr == addr(2, 1)),
        "no working address is pushed out"
    );
    // Every address failed once: a new one takes a failing one's place.
    start(&mut d);
    fail_all(&mut d);
    d.on_found(peer, vec![addr(2, 1)], true);
    assert_eq!(d.found[&peer].addrs.len(), MAX_ADDRS);
    assert!(d.found[&peer].addrs.iter().any(|a| a.addr == addr(2, 1)));
}

#[test]
fn a_circuit_address_is_dialled_for_the_peer_behind_the_relay() {
    let (relay, member) = (PeerId::random(), PeerId::random());
    let circuit: Multiaddr = format!("/ip4/10.0.0.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{member}")
        .parse()
        .expect("addr");
    let mut d = Dialer::with_clock(vec![circuit], ManualClock::at(1_000_000));
    // Connected to the relay, not to the member behind it: still dialled.
    let dials = d.due(|p| *p == relay, true);
    assert_eq!(dials.len(), 1, "the member behind the relay is dialled");
    assert_eq!(dials[0].get_peer_id(), Some(member));
    let mut d = Dialer::with_clock(
        d.bootstrap.iter().map(|b| b.addr.clone()).collect(),
        ManualClock::at(1_000_000),
    );
    assert!(
        d.due(|p| *p == member, true).is_empty(),
        "not once the member is connected"
    );
}
