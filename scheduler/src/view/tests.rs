use corral_protocol::capacity::{EngineSpeed, OwnerState};
use corral_protocol::receipt::EngineKind;
use proptest::prelude::*;

use super::*;

const CONFIG: ViewConfig = ViewConfig {
    advert_interval_ms: 1000,
    missed_adverts: 3,
};

fn key(n: u8) -> PeerKey {
    PeerKey::from_bytes([n; 32])
}

fn advert(peer: PeerKey, seq: u64) -> CapacityAdvert {
    CapacityAdvert {
        peer,
        name: format!("dev-{}", peer.short()),
        seq,
        arch: "aarch64".into(),
        os: "linux".into(),
        engines: vec![EngineSpeed {
            engine: EngineKind::Jit,
            ops_per_s: 1000,
        }],
        slots_total: 4,
        slots_free: 4,
        cores: 4,
        host_load_pct: 0,
        free_memory_mib: 1000,
        on_battery: false,
        state: OwnerState::Idle,
        running: 0,
        queued: 0,
        version: "0.1.0".into(),
    }
}

#[test]
fn joins_by_connection_and_adverts_only_update() {
    let mut view = PeerView::new(key(0), CONFIG);
    assert_eq!(
        view.on_connected(key(1), Some("/ip4/10.0.0.1/tcp/1".into()), 0),
        Change::Joined(key(1))
    );
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 1), 0),
        Change::Updated(key(1))
    );
    assert_eq!(view.len(), 1);
    assert_eq!(view.get(&key(1)).map(|e| e.addresses.len()), Some(1));
}

#[test]
fn a_flood_of_adverts_from_unconnected_keys_leaves_room_for_a_newcomer() {
    let mut view = PeerView::new(PeerKey::from_bytes([255; 32]), CONFIG);
    for i in 0..MAX_PEERS as u32 + 10 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        let fresh = PeerKey::from_bytes(bytes);
        assert_eq!(
            view.on_advert(fresh, advert(fresh, 1), 0),
            Change::Ignored(IgnoreReason::NotConnected)
        );
    }
    assert!(view.is_empty());
    assert_eq!(
        view.on_connected(key(200), None, 0),
        Change::Joined(key(200))
    );
}

#[test]
fn adverts_merge_by_sequence_number() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 0);
    view.on_advert(key(1), advert(key(1), 5), 0);
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 5), 1),
        Change::Ignored(IgnoreReason::StaleSeq)
    );
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 4), 1),
        Change::Ignored(IgnoreReason::StaleSeq)
    );
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 6), 2),
        Change::Updated(key(1))
    );
    assert_eq!(
        view.get(&key(1))
            .and_then(|e| e.advert.as_ref())
            .map(|a| a.seq),
        Some(6)
    );
}

#[test]
fn own_forged_and_invalid_adverts_are_ignored() {
    let mut view = PeerView::new(key(0), CONFIG);
    assert_eq!(
        view.on_advert(key(0), advert(key(0), 1), 0),
        Change::Ignored(IgnoreReason::OwnAdvert)
    );
    assert_eq!(
        view.on_advert(key(1), advert(key(2), 1), 0),
        Change::Ignored(IgnoreReason::WrongSender)
    );
    let mut bad = advert(key(3), 1);
    bad.slots_free = 9;
    assert!(matches!(
        view.on_advert(key(3), bad, 0),
        Change::Ignored(IgnoreReason::Invalid(_))
    ));
    assert!(view.is_empty());
}

#[test]
fn the_last_connection_closing_removes_the_peer() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 0);
    view.on_connected(key(1), None, 0);
    assert_eq!(
        view.on_disconnected(key(1), Closed::Direct),
        Change::Updated(key(1))
    );
    assert_eq!(
        view.on_disconnected(key(1), Closed::Direct),
        Change::Left(key(1), LeaveReason::Disconnected)
    );
    assert_eq!(
        view.on_disconnected(key(1), Closed::Direct),
        Change::Ignored(IgnoreReason::Unknown)
    );
}

#[test]
fn a_peer_whose_last_circuit_closed_is_held_until_it_expires() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 1000);
    view.on_advert(key(1), advert(key(1), 1), 1000);
    // The relay cut the circuit: held, with no connection.
    assert_eq!(
        view.on_disconnected(key(1), Closed::Circuit),
        Change::Updated(key(1))
    );
    assert_eq!(view.get(&key(1)).map(|e| e.connections), Some(0));
    // Nothing refreshes it but a connection: not its adverts (relayed by
    // others), not another close.
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 2), 2000),
        Change::Ignored(IgnoreReason::NotConnected)
    );
    assert_eq!(
        view.on_disconnected(key(1), Closed::Circuit),
        Change::Ignored(IgnoreReason::NotConnected)
    );
    // Dialled again through the relay in time: the same member, not a join.
    assert_eq!(
        view.on_connected(key(1), None, 2500),
        Change::Updated(key(1))
    );
    assert_eq!(
        view.on_advert(key(1), advert(key(1), 2), 2600),
        Change::Updated(key(1))
    );
    // Cut again and never back: it leaves at the usual expiry.
    assert_eq!(
        view.on_disconnected(key(1), Closed::Circuit),
        Change::Updated(key(1))
    );
    assert!(view.expire(5600).is_empty());
    assert_eq!(
        view.expire(5601),
        vec![Change::Left(key(1), LeaveReason::Expired)]
    );
    assert_eq!(
        view.on_connected(key(1), None, 6000),
        Change::Joined(key(1))
    );
}

#[test]
fn a_direct_connection_closing_last_still_removes_at_once() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 0);
    view.on_connected(key(1), None, 0);
    // The circuit closes first (a direct path took over), then the direct
    // connection: the device is gone.
    assert_eq!(
        view.on_disconnected(key(1), Closed::Circuit),
        Change::Updated(key(1))
    );
    assert_eq!(
        view.on_disconnected(key(1), Closed::Direct),
        Change::Left(key(1), LeaveReason::Disconnected)
    );
}

#[test]
fn goodbye_removes_and_a_reconnect_is_a_new_join() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 0);
    assert_eq!(
        view.on_goodbye(key(1)),
        Change::Left(key(1), LeaveReason::Goodbye)
    );
    assert_eq!(view.on_connected(key(1), None, 5), Change::Joined(key(1)));
}

#[test]
fn expiry_is_after_the_configured_silence_exactly() {
    let mut view = PeerView::new(key(0), CONFIG);
    view.on_connected(key(1), None, 1000);
    view.on_advert(key(1), advert(key(1), 1), 1000);
    assert!(
        view.expire(4000).is_empty(),
        "3000 ms of silence is allowed"
    );
    assert_eq!(
        view.expire(4001),
        vec![Change::Left(key(1), LeaveReason::Expired)]
    );
}

#[test]
fn the_view_is_bounded() {
    let mut view = PeerView::new(PeerKey::from_bytes([255; 32]), CONFIG);
    for i in 0..MAX_PEERS as u32 {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        view.on_connected(PeerKey::from_bytes(bytes), None, 0);
    }
    assert_eq!(view.len(), MAX_PEERS);
    assert_eq!(
        view.on_connected(key(200), None, 0),
        Change::Ignored(IgnoreReason::Full)
    );
}

#[derive(Clone, Debug)]
enum Event {
    Connect(u8),
    Disconnect(u8, bool),
    Advert(u8, u64),
    Goodbye(u8),
    Tick(u64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u8..6).prop_map(Event::Connect),
        (0u8..6, any::<bool>()).prop_map(|(p, c)| Event::Disconnect(p, c)),
        (0u8..6, 0u64..20).prop_map(|(p, s)| Event::Advert(p, s)),
        (0u8..6).prop_map(Event::Goodbye),
        (0u64..2500).prop_map(Event::Tick),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_over_any_event_sequence(events in prop::collection::vec(event(), 0..200)) {
        let me = key(0);
        let mut view = PeerView::new(me, CONFIG);
        let mut now = 0u64;
        let mut seqs: BTreeMap<PeerKey, u64> = BTreeMap::new();
        for e in events {
            match e {
                Event::Connect(p) => { view.on_connected(key(p), None, now); }
                Event::Disconnect(p, circuit) => {
                    let closed = if circuit { Closed::Circuit } else { Closed::Direct };
                    let before = view.get(&key(p)).map(|e| e.connections);
                    let change = view.on_disconnected(key(p), closed);
                    if before == Some(1) && !circuit {
                        prop_assert_eq!(change, Change::Left(key(p), LeaveReason::Disconnected));
                    }
                }
                Event::Advert(p, s) => {
                    let held = view.get(&key(p)).is_some_and(|e| e.connections == 0);
                    let change = view.on_advert(key(p), advert(key(p), s), now);
                    // A held peer (no connection) never takes an advert.
                    if held {
                        prop_assert_eq!(change, Change::Ignored(IgnoreReason::NotConnected));
                    }
                }
                Event::Goodbye(p) => { view.on_goodbye(key(p)); }
                Event::Tick(dt) => {
                    now += dt;
                    view.expire(now);
                    for (_, entry) in view.peers() {
                        prop_assert!(now - entry.last_seen_ms <= CONFIG.expiry_ms());
                    }
                }
            }
            prop_assert!(view.get(&me).is_none());

            prop_assert!(view.len() <= MAX_PEERS);
            let present: Vec<PeerKey> = view.peers().map(|(k, _)| *k).collect();
            seqs.retain(|k, _| present.contains(k));
            for (k, entry) in view.peers() {
                if let Some(a) = &entry.advert {
                    let prev = seqs.insert(*k, a.seq).unwrap_or(0);
                    prop_assert!(a.seq >= prev, "seq went back for a peer that stayed");
                }
            }
        }
    }
}
