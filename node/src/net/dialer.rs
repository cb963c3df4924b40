//! Whom to dial: the addresses discovery found for each peer of the mesh
//! and the `--peer` addresses, redialled while not connected (after a
//! partition heals, neither side would otherwise try). Bounded: at most
//! [`MAX_FOUND`] peers, [`MAX_ADDRS`] addresses each.

use std::collections::HashMap;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, Swarm};
use libp2p::{Multiaddr, PeerId};

/// Most peers whose discovered addresses are kept for redialling.
pub const MAX_FOUND: usize = 4096;
/// Most addresses kept per peer.
pub const MAX_ADDRS: usize = 8;

/// The addresses to (re)dial.
#[derive(Debug, Default)]
pub struct Dialer {
    found: HashMap<PeerId, Vec<Multiaddr>>,
    bootstrap: Vec<Multiaddr>,
}

impl Dialer {
    /// A dialer for the `--peer` addresses.
    pub fn new(bootstrap: Vec<Multiaddr>) -> Self {
        Self {
            found: HashMap::new(),
            bootstrap,
        }
    }

    /// Dials every `--peer` address once, at start.
    pub fn dial_bootstrap<B: NetworkBehaviour>(&self, swarm: &mut Swarm<B>) {
        for addr in &self.bootstrap {
            if let Err(e) = swarm.dial(addr.clone()) {
                tracing::warn!(%addr, "cannot dial --peer: {e}");
            }
        }
    }

    /// Remembers where `peer` was found (bounded) and dials it unless it is
    /// connected.
    pub fn on_found<B: NetworkBehaviour>(
        &mut self,
        swarm: &mut Swarm<B>,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
    ) {
        self.remember(peer, &addresses);
        if swarm.is_connected(&peer) {
            return;
        }
        tracing::debug!(%peer, ?addresses, "discovered by mDNS");
        if let Err(e) = swarm.dial(dial_opts(peer, addresses)) {
            tracing::debug!(%peer, "dial: {e}");
        }
    }

    fn remember(&mut self, peer: PeerId, addresses: &[Multiaddr]) {
        if self.found.len() >= MAX_FOUND && !self.found.contains_key(&peer) {
            return;
        }
        let known = self.found.entry(peer).or_default();
        for a in addresses {
            if !known.contains(a) && known.len() < MAX_ADDRS {
                known.push(a.clone());
            }
        }
    }

    /// Stops redialling `peer` (its service went away).
    pub fn forget(&mut self, peer: &PeerId) {
        self.found.remove(peer);
    }

    /// How many peers are remembered.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Dials every known peer that is not connected, and the `--peer`
    /// addresses whose peer (or, without a peer id, any peer) is not.
    pub fn redial<B: NetworkBehaviour>(&self, swarm: &mut Swarm<B>) {
        let missing: Vec<(PeerId, Vec<Multiaddr>)> = self
            .found
            .iter()
            .filter(|(peer, _)| !swarm.is_connected(peer))
            .map(|(peer, addrs)| (*peer, addrs.clone()))
            .collect();
        for (peer, addresses) in missing {
            let _ = swarm.dial(dial_opts(peer, addresses));
        }
        let connected: Vec<PeerId> = swarm.connected_peers().copied().collect();
        for addr in &self.bootstrap {
            let target = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if target.is_some_and(|id| connected.contains(&id))
                || (target.is_none() && !connected.is_empty())
            {
                continue;
            }
            let _ = swarm.dial(addr.clone());
        }
    }
}

/// Dials from a new port and only when neither connected nor dialling:
/// two peers that found each other at once otherwise end up on one TCP
/// connection, each thinking it dialled (NOTES.md).
fn dial_opts(peer: PeerId, addresses: Vec<Multiaddr>) -> DialOpts {
    DialOpts::peer_id(peer)
        .addresses(addresses)
        .condition(PeerCondition::DisconnectedAndNotDialing)
        .allocate_new_port()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/10.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn found_peers_and_their_addresses_are_bounded() {
        let mut d = Dialer::default();
        let peer = PeerId::random();
        let many: Vec<Multiaddr> = (1..=20).map(addr).collect();
        d.remember(peer, &many);
        d.remember(peer, &many);
        assert_eq!(d.found[&peer].len(), MAX_ADDRS);
        for _ in 1..MAX_FOUND {
            d.remember(PeerId::random(), &[addr(1)]);
        }
        assert_eq!(d.len(), MAX_FOUND);
        d.remember(PeerId::random(), &[addr(1)]);
        assert_eq!(
            d.len(),
            MAX_FOUND,
            "a newcomer beyond the bound is not kept"
        );
        d.forget(&peer);
        assert_eq!(d.len(), MAX_FOUND - 1);
    }
}
