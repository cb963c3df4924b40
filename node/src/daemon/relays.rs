//! This node's reservations at relays (`--relay-addr`): asked for once the
//! relay is connected, asked again a moment after one ends; and, at each
//! relay where it holds one, registering and finding other members
//! ([`crate::net::rendezvous`]).

use std::time::Instant;

use libp2p::core::transport::ListenerId;

use super::node::Node;

impl Node {
    /// Listens on a circuit address at each connected relay that has no
    /// reservation under way.
    pub(super) fn reserve_at_relays(&mut self) {
        let swarm = &self.swarm;
        for (i, circuit) in self.relays.due(|p| swarm.is_connected(p), Instant::now()) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(id) => self.relays.listening(i, id),
                Err(e) => tracing::warn!(%circuit, "cannot reserve at the relay: {e}"),
            }
        }
    }

    /// A listener ended; if it was a relay reservation, it is asked for
    /// again later.
    pub(super) fn on_listener_closed(&mut self, id: ListenerId, why: Option<String>) {
        if let Some(relay) = self.relays.closed(id, Instant::now()) {
            if let Some(peer) = crate::net::peer_of(relay) {
                self.rendezvous.relay_gone(&peer);
            }
            tracing::warn!(
                %relay,
                "the relay reservation ended ({}); asking again shortly",
                why.as_deref().unwrap_or("closed")
            );
        } else if let Some(why) = why {
            tracing::warn!("stopped listening: {why}");
        }
    }

    /// A relay client event: an accepted reservation starts registering
    /// and discovering at that relay.
    pub(super) fn on_relay_client(&mut self, event: libp2p::relay::client::Event) {
        if let libp2p::relay::client::Event::ReservationReqAccepted {
            relay_peer_id,
            renewal: false,
            ..
        } = event
        {
            tracing::info!(relay = %relay_peer_id, "reserved an address at the relay");
            self.rendezvous.reserved(relay_peer_id, Instant::now());
        } else {
            tracing::debug!(?event, "relay client");
        }
    }

    /// Registers at relays and asks them who else is there, when due; dials
    /// members whose tie-break is over.
    pub(super) fn rendezvous_tick(&mut self) {
        let now = Instant::now();
        for relay in self.rendezvous.due_registrations(now) {
            let ns = self.namespace.clone();
            let Some(rv) = self.swarm.behaviour_mut().rendezvous.as_mut() else {
                return;
            };
            if let Err(e) = rv.register(ns, relay, Some(crate::net::rendezvous::TTL)) {
                tracing::debug!(%relay, "not registered at the relay yet: {e}");
                self.rendezvous.register_failed(&relay);
            }
        }
        for (relay, cookie) in self.rendezvous.due_discoveries(now) {
            if self.swarm.is_connected(&relay) {
                let ns = Some(self.namespace.clone());
                let limit = Some(crate::net::rendezvous::DISCOVER_LIMIT);
                if let Some(rv) = self.swarm.behaviour_mut().rendezvous.as_mut() {
                    rv.discover(ns, cookie, limit, relay);
                }
            }
        }
        let swarm = &self.swarm;
        for (peer, addrs) in self.rendezvous.overdue(|p| swarm.is_connected(p), now) {
            self.dialer.on_found(peer, addrs, false);
        }
    }

    /// What a relay's rendezvous point answered.
    pub(super) fn on_rendezvous(&mut self, event: libp2p::rendezvous::client::Event) {
        use libp2p::rendezvous::client::Event;
        match event {
            Event::Discovered {
                rendezvous_node,
                registrations,
                cookie,
            } => {
                let found = registrations
                    .iter()
                    .map(|r| (r.record.peer_id(), r.record.addresses().to_vec()));
                let swarm = &self.swarm;
                let dial = self.rendezvous.discovered(
                    rendezvous_node,
                    cookie,
                    found,
                    |p| swarm.is_connected(p),
                    Instant::now(),
                );
                for (peer, addrs) in dial {
                    tracing::debug!(%peer, ?addrs, "found at the relay");
                    self.dialer.on_found(peer, addrs, false);
                }
            }
            Event::RegisterFailed {
                rendezvous_node,
                error,
                ..
            } => {
                tracing::warn!(relay = %rendezvous_node, "the relay refused our registration: {error:?}");
                self.rendezvous.register_failed(&rendezvous_node);
            }
            Event::Registered {
                rendezvous_node,
                ttl,
                ..
            } => {
                tracing::debug!(relay = %rendezvous_node, ttl, "registered at the relay");
                self.rendezvous.registered(&rendezvous_node, Instant::now());
            }
            other => tracing::debug!(?other, "rendezvous"),
        }
    }
}
