//! Who is in the mesh, as this node sees it: listening and announcing
//! itself, peers found by mDNS, connections opening and closing, capacity
//! adverts and identify, and what a peer joining or leaving changes.

use corral_protocol::capacity::CapacityAdvert;
use corral_protocol::codec;
use corral_protocol::ids::PeerKey;
use corral_scheduler::view::{Change, Closed};
use libp2p::swarm::{ConnectionId, DialError};
use libp2p::{Multiaddr, PeerId, gossipsub, identify};

use super::node::Node;
use crate::clock::now_ms;
use crate::job::timeline::RunState;
use crate::net::discovery::{Discovery, Found};
use crate::net::peer_key_of;
use crate::store::KnownPeer;

impl Node {
    /// A new listen address: remembered (for `corral status` and invites),
    /// and the first TCP one is announced over mDNS.
    pub(super) fn on_listening(&mut self, address: Multiaddr) {
        tracing::info!(%address, "listening");
        // An interface came up (listen addresses follow them): this
        // device's networks may have changed.
        self.paths.set_local(crate::net::paths::Subnet::here());
        let circuit = crate::net::is_circuit(&address);
        // A circuit's address holds the relay's port, not ours.
        let port = address.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) if !circuit => Some(port),
            _ => None,
        });
        if self.config.relay && crate::net::is_routable(&address) {
            // A relay hands its addresses out in reservations: without one
            // it refuses them all.
            self.swarm.add_external_address(address.clone());
        }
        self.listen_addrs.push(address);
        let addrs: Vec<String> = self.listen_addrs.iter().map(ToString::to_string).collect();
        let _ = self.store.set("listen", &addrs.join(" "));
        if let (true, None, Some(port)) = (self.config.mdns, &self.discovery, port) {
            match Discovery::start(
                &self.name,
                self.peer_id,
                &self.mesh,
                port,
                self.found_tx.clone(),
            ) {
                Ok(d) => self.discovery = Some(d),
                Err(e) => tracing::warn!("mDNS discovery is off: {e:#}"),
            }
        }
    }

    /// What mDNS found or lost. mDNS is a hint (DESIGN §4): anyone on the
    /// LAN can announce or say goodbye for any instance, so a removal only
    /// stops redialling; leaving is decided by the authenticated
    /// connection, the goodbye message and the adverts.
    pub(super) fn on_found(&mut self, found: Found) {
        match found {
            Found::Peer { peer, addresses } => {
                tracing::debug!(%peer, ?addresses, "discovered by mDNS");
                let connected = self.swarm.is_connected(&peer);
                self.dialer.on_found(peer, addresses, connected);
            }
            Found::Gone { peer } => {
                tracing::info!(
                    %peer,
                    connected = self.swarm.is_connected(&peer),
                    "mDNS removal: no longer redialled (a hint: a connected peer stays)"
                );
                self.dialer.on_gone(&peer);
            }
        }
        self.dialer.pump(&mut self.swarm);
    }

    /// A dial of ours failed: the dialer backs off and may start another.
    pub(super) fn on_dial_failed(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        error: &DialError,
    ) {
        tracing::info!(?peer, "cannot connect: {error}");
        self.dialer.on_dial_failed(id);
        self.dialer.pump(&mut self.swarm);
    }

    /// A connection is up (the PSK, Noise and the peer's key checked).
    pub(super) fn on_connected(
        &mut self,
        peer_id: PeerId,
        id: ConnectionId,
        remote: Multiaddr,
        relayed: bool,
    ) {
        self.dialer.on_connected(peer_id, id);
        self.lanes.reconnected(&peer_id);
        let remote_text = remote.to_string();
        self.paths
            .opened(id, peer_id, remote, relayed, std::time::Instant::now());
        if !relayed {
            self.wake_direct(&peer_id);
        }
        let Some(key) = peer_key_of(&peer_id) else {
            let _ = self.swarm.disconnect_peer_id(peer_id);
            return;
        };
        self.peer_ids.insert(key, peer_id);
        let change = self.view.on_connected(key, Some(remote_text), now_ms());
        self.on_change(change);
        // A newcomer learns our capacity at once, not a second later.
        self.advertise();
        self.reserve_at_relays();
    }

    /// DCUtR punched a direct connection to `peer` (or failed to).
    pub(super) fn on_punch(&mut self, event: libp2p::dcutr::Event) {
        match event.result {
            Ok(id) => {
                tracing::info!(peer = %event.remote_peer_id, "hole punched: a direct connection");
                self.paths.punched(id);
                self.wake_direct(&event.remote_peer_id);
            }
            Err(e) => {
                tracing::info!(peer = %event.remote_peer_id, "no direct connection, staying relayed: {e}");
            }
        }
    }

    /// A fetch asks to wait for a direct path to `peer`: answered now unless
    /// the peer is reached through a relay alone (and the waiters are not
    /// too many), else once a direct connection to it opens.
    pub(super) fn await_direct(&mut self, peer: PeerKey, reply: tokio::sync::oneshot::Sender<()>) {
        let Some(id) = crate::net::peer_id_of(&peer) else {
            let _ = reply.send(());
            return;
        };
        let relayed_only = self.paths.of(&id).next().is_some() && !self.paths.has_direct(&id);
        let waiting: usize = self.direct_waiters.values().map(Vec::len).sum();
        if !relayed_only || waiting >= super::node::MAX_DIRECT_WAITERS {
            let _ = reply.send(());
            return;
        }
        let waiters = self.direct_waiters.entry(id).or_default();
        waiters.retain(|w| !w.is_closed());
        waiters.push(reply);
    }

    /// `peer` has a direct path now: the fetches waiting for one go on.
    fn wake_direct(&mut self, peer: &PeerId) {
        for waiter in self.direct_waiters.remove(peer).unwrap_or_default() {
            let _ = waiter.send(());
        }
    }

    /// Closes circuits to peers that a direct connection now reaches (see
    /// [`crate::net::paths::DIRECT_SETTLES_AFTER`]).
    pub(super) fn close_redundant_circuits(&mut self) {
        for id in self.paths.relayed_to_close(std::time::Instant::now()) {
            tracing::debug!(?id, "a direct connection took over: closing the circuit");
            self.paths.closed(id);
            self.swarm.close_connection(id);
        }
    }

    /// A connection closed; `circuit` if it went through a relay (the peer
    /// is then held for a while, see [`Closed::Circuit`]: the relay cuts
    /// circuits at its limits, and the dialer reaches the peer again).
    pub(super) fn on_disconnected(&mut self, peer_id: PeerId, circuit: bool) {
        if let Some(key) = peer_key_of(&peer_id) {
            let closed = if circuit {
                Closed::Circuit
            } else {
                Closed::Direct
            };
            let change = self.view.on_disconnected(key, closed);
            self.on_change(change);
        }
    }

    /// A gossiped capacity advert, relayed by `via`: taken only from a peer
    /// with a connection open here (checked before it is decoded), so
    /// adverts signed by fresh keys and relayed by one member cannot fill
    /// the view (DESIGN §7). Gossipsub forwards only what is taken, and
    /// drops the rest from its cache at once.
    pub(super) fn on_gossip(
        &mut self,
        via: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let verdict = if message.topic == self.modules.topic.hash() {
            self.take_module_record(message)
        } else {
            self.take_advert(message)
        };
        let _ = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &via, verdict);
    }

    fn take_advert(&mut self, message: gossipsub::Message) -> gossipsub::MessageAcceptance {
        use gossipsub::MessageAcceptance::{Accept, Ignore, Reject};
        let Some(source) = message.source else {
            return Reject;
        };
        if !self.swarm.is_connected(&source) {
            tracing::trace!(%source, "advert from a peer not connected here: dropped");
            return Ignore;
        }
        let Some(from) = peer_key_of(&source) else {
            return Reject;
        };
        match codec::decode::<CapacityAdvert>(&message.data) {
            Ok(advert) => {
                let change = self.view.on_advert(from, advert, now_ms());
                let verdict = if matches!(change, Change::Ignored(_)) {
                    Ignore
                } else {
                    Accept
                };
                self.on_change(change);
                verdict
            }
            Err(e) => {
                tracing::debug!(%source, "bad capacity advert: {e}");
                Reject
            }
        }
    }

    /// Identify: the peer's protocol version and addresses, remembered.
    pub(super) fn on_identified(&mut self, peer_id: PeerId, info: identify::Info) {
        if info.protocol_version != crate::net::PROTOCOL_NAME {
            tracing::warn!(%peer_id, version = %info.protocol_version, "peer speaks another corral protocol");
        }
        let name = peer_key_of(&peer_id)
            .and_then(|k| self.view.get(&k))
            .and_then(|e| e.advert.as_ref().map(|a| a.name.clone()))
            .unwrap_or_default();
        let addresses: Vec<String> = info
            .listen_addrs
            .iter()
            .take(8)
            .map(ToString::to_string)
            .collect();
        let known = KnownPeer {
            peer_id: peer_id.to_string(),
            name,
            addresses,
            last_seen_ms: now_ms(),
        };
        if let Err(e) = self.store.remember_peer(&peer_id.to_string(), &known) {
            tracing::warn!("cannot remember {peer_id}: {e:#}");
        }
    }

    /// A change in the view: a peer that left gives its tasks back to the
    /// queue; anything else may let placement do better.
    pub(super) fn on_change(&mut self, change: Change) {
        match change {
            Change::Left(peer, reason) => {
                tracing::info!(peer = %peer.short(), ?reason, "peer left");
                if let Some(id) = self.peer_ids.remove(&peer) {
                    let _ = self.swarm.disconnect_peer_id(id);
                }
                let actions = self.coord.on_peer_lost(&peer);
                self.timeline
                    .end_all(|p, _| *p == peer, RunState::Lost, now_ms());
                self.execute(actions);
                self.dirty = true;
            }
            Change::Joined(_) => {
                tracing::info!("peer joined");
                self.dirty = true;
            }
            Change::Updated(_) => self.dirty |= self.coord.has_live_jobs(),
            Change::Ignored(reason) => tracing::debug!(?reason, "advert ignored"),
        }
    }

    /// A device's name for people: from its advert, else its short key.
    pub(super) fn name_of(&self, peer: &PeerKey) -> String {
        if peer == &self.me {
            return self.name.clone();
        }
        self.view
            .get(peer)
            .and_then(|e| e.advert.as_ref().map(|a| a.name.clone()))
            .unwrap_or_else(|| peer.short())
    }
}
