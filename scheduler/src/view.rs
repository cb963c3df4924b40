//! The peer view of one node (DESIGN §4): who is in the mesh and what each
//! advertises. A peer joins when a connection opens (an advert from a
//! peer with none is dropped); adverts merge by sequence number; it leaves after a goodbye, when
//! its last connection closes, or after too many missed adverts. Time is
//! passed in, so the view is deterministic and the simulator can drive it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use corral_protocol::capacity::CapacityAdvert;
use corral_protocol::ids::PeerKey;

/// Most peers a view holds; more are ignored. Peers join only by a
/// connection, so the node's connection limits bind first; this is a backstop.
pub const MAX_PEERS: usize = 4096;
/// Most addresses remembered per peer.
pub const MAX_ADDRESSES: usize = 8;

/// How long a peer may stay silent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewConfig {
    /// The interval at which peers advertise.
    pub advert_interval_ms: u64,
    /// Adverts a peer may miss before it is dropped.
    pub missed_adverts: u32,
}

impl ViewConfig {
    /// Silence after which a peer is dropped.
    pub fn expiry_ms(&self) -> u64 {
        self.advert_interval_ms
            .saturating_mul(u64::from(self.missed_adverts))
    }
}

/// What the view knows of one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    /// Its latest advert, once one arrived.
    pub advert: Option<CapacityAdvert>,
    /// When it was first seen.
    pub first_seen_ms: u64,
    /// When it was last heard from (connection or advert).
    pub last_seen_ms: u64,
    /// Open connections to it.
    pub connections: u32,
    /// Addresses it was connected at.
    pub addresses: Vec<String>,
}

/// Why a peer left the view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// It said goodbye.
    Goodbye,
    /// Its last connection closed.
    Disconnected,
    /// It missed too many adverts.
    Expired,
}

/// Why an event changed nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Our own advert, echoed back.
    OwnAdvert,
    /// An advert no newer than the one held.
    StaleSeq,
    /// An advert out of bounds.
    Invalid(String),
    /// An advert relayed in someone else's name.
    WrongSender,
    /// An event about a peer not in the view.
    Unknown,
    /// An advert from a peer with no connection open to this node.
    NotConnected,
    /// The view is full.
    Full,
}

/// What an event did to the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new peer.
    Joined(PeerKey),
    /// A known peer's state changed.
    Updated(PeerKey),
    /// A peer left.
    Left(PeerKey, LeaveReason),
    /// Nothing changed.
    Ignored(IgnoreReason),
}

/// The peer view.
#[derive(Clone, Debug)]
pub struct PeerView {
    me: PeerKey,
    config: ViewConfig,
    peers: BTreeMap<PeerKey, PeerEntry>,
}

impl PeerView {
    /// An empty view for node `me`.
    pub fn new(me: PeerKey, config: ViewConfig) -> Self {
        Self {
            me,
            config,
            peers: BTreeMap::new(),
        }
    }

    /// A connection to `peer` opened: the only way a peer joins.
    pub fn on_connected(&mut self, peer: PeerKey, address: Option<String>, now_ms: u64) -> Change {
        if peer == self.me {
            return Change::Ignored(IgnoreReason::OwnAdvert);
        }
        let held = self.peers.len();
        let (entry, new) = match self.peers.entry(peer) {
            Entry::Occupied(e) => (e.into_mut(), false),
            Entry::Vacant(_) if held >= MAX_PEERS => return Change::Ignored(IgnoreReason::Full),
            Entry::Vacant(e) => (
                e.insert(PeerEntry {
                    advert: None,
                    first_seen_ms: now_ms,
                    last_seen_ms: now_ms,
                    connections: 0,
                    addresses: Vec::new(),
                }),
                true,
            ),
        };
        entry.connections = entry.connections.saturating_add(1);
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        if let Some(address) = address
            && !entry.addresses.contains(&address)
            && entry.addresses.len() < MAX_ADDRESSES
        {
            entry.addresses.push(address);
        }
        if new {
            Change::Joined(peer)
        } else {
            Change::Updated(peer)
        }
    }

    /// A connection to `peer` closed; the peer leaves with its last one.
    pub fn on_disconnected(&mut self, peer: PeerKey, _now_ms: u64) -> Change {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Change::Ignored(IgnoreReason::Unknown);
        };
        entry.connections = entry.connections.saturating_sub(1);
        if entry.connections == 0 {
            self.peers.remove(&peer);
            Change::Left(peer, LeaveReason::Disconnected)
        } else {
            Change::Updated(peer)
        }
    }

    /// An advert arrived from `from` (the gossip message's signed author):
    /// taken only from a peer in the view, i.e. connected.
    pub fn on_advert(&mut self, from: PeerKey, advert: CapacityAdvert, now_ms: u64) -> Change {
        if advert.peer != from {
            return Change::Ignored(IgnoreReason::WrongSender);
        }
        if let Err(e) = advert.validate() {
            return Change::Ignored(IgnoreReason::Invalid(e.to_string()));
        }
        if from == self.me {
            return Change::Ignored(IgnoreReason::OwnAdvert);
        }
        // Only a peer with a connection open is in the view: an advert
        // signed by a key nobody connected with (a flood of fresh keys
        // relayed by one peer) never takes a place, so the view holds at
        // most as many peers as connections are allowed.
        let Some(entry) = self.peers.get_mut(&from) else {
            return Change::Ignored(IgnoreReason::NotConnected);
        };
        if let Some(held) = &entry.advert
            && held.seq >= advert.seq
        {
            return Change::Ignored(IgnoreReason::StaleSeq);
        }
        entry.advert = Some(advert);
        entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
        Change::Updated(from)
    }

    /// `peer` said goodbye.
    pub fn on_goodbye(&mut self, peer: PeerKey) -> Change {
        match self.peers.remove(&peer) {
            Some(_) => Change::Left(peer, LeaveReason::Goodbye),
            None => Change::Ignored(IgnoreReason::Unknown),
        }
    }

    /// Drops every peer silent for longer than the expiry.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Change> {
        let expiry = self.config.expiry_ms();
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.last_seen_ms) > expiry)
            .map(|(k, _)| *k)
            .collect();
        stale
            .into_iter()
            .map(|k| {
                self.peers.remove(&k);
                Change::Left(k, LeaveReason::Expired)
            })
            .collect()
    }

    /// One peer.
    pub fn get(&self, peer: &PeerKey) -> Option<&PeerEntry> {
        self.peers.get(peer)
    }

    /// Every peer, by key.
    pub fn peers(&self) -> impl Iterator<Item = (&PeerKey, &PeerEntry)> {
        self.peers.iter()
    }

    /// Number of peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the view is empty.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(view.on_disconnected(key(1), 1), Change::Updated(key(1)));
        assert_eq!(
            view.on_disconnected(key(1), 2),
            Change::Left(key(1), LeaveReason::Disconnected)
        );
        assert_eq!(
            view.on_disconnected(key(1), 3),
            Change::Ignored(IgnoreReason::Unknown)
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
        Disconnect(u8),
        Advert(u8, u64),
        Goodbye(u8),
        Tick(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0u8..6).prop_map(Event::Connect),
            (0u8..6).prop_map(Event::Disconnect),
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
                    Event::Disconnect(p) => { view.on_disconnected(key(p), now); }
                    Event::Advert(p, s) => { view.on_advert(key(p), advert(key(p), s), now); }
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
}
