//! This node's reservations at relays (`--relay-addr`): asked for once the
//! relay is connected, asked again a moment after one ends.

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
            tracing::warn!(
                %relay,
                "the relay reservation ended ({}); asking again shortly",
                why.as_deref().unwrap_or("closed")
            );
        } else if let Some(why) = why {
            tracing::warn!("stopped listening: {why}");
        }
    }
}
