//! The peer view of one node (DESIGN §4): who is in the mesh and what each
//! advertises. A peer joins when a connection opens (an advert from a
//! peer with none is dropped); adverts merge by sequence number; it leaves after a goodbye, when
//! its last connection closes, or after too many missed adverts. A peer
//! whose last connection was a relay circuit is held until that expiry
//! instead ([`Closed::Circuit`]). Time is passed in, so the view is
//! deterministic and the simulator can drive it.

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

/// How a closed connection was carried: it decides whether a peer whose
/// last connection it was leaves at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// A direct connection (LAN, punched or public): a device that leaves
    /// or crashes closes its sockets, so the peer leaves at once and its
    /// tasks go elsewhere without waiting.
    Direct,
    /// A relay circuit: the relay cuts circuits at its limits (bytes, time)
    /// and its ends dial again through it within a second, so the peer is
    /// held, taking no new tasks, until it has missed the usual adverts
    /// ([`ViewConfig::expiry_ms`]); its running tasks are not requeued.
    Circuit,
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
    /// Open connections to it (0 while held after a circuit closed, see
    /// [`Closed::Circuit`]: such a peer takes no new tasks).
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
    /// An advert (or a closed connection) from a peer with no connection
    /// open to this node.
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

    /// A connection to `peer`, carried as `closed` says, closed; the peer
    /// leaves with its last one, unless that was a relay circuit (held until
    /// it expires, see [`Closed::Circuit`]).
    pub fn on_disconnected(&mut self, peer: PeerKey, closed: Closed) -> Change {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return Change::Ignored(IgnoreReason::Unknown);
        };
        if entry.connections == 0 {
            return Change::Ignored(IgnoreReason::NotConnected);
        }
        entry.connections -= 1;
        if entry.connections == 0 && closed == Closed::Direct {
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
        let Some(entry) = self.peers.get_mut(&from).filter(|e| e.connections > 0) else {
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
mod tests;
