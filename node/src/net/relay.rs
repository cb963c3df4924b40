//! Relays (DESIGN "Beyond one LAN"): a reachable member run with
//! `corral up --relay` forwards circuits between members that cannot reach
//! each other, with limits sized for corral's traffic. The relay holds the
//! mesh key (a keyless device cannot connect to it), and every circuit is
//! upgraded with the key end to end ([`super::transport`]), so the relay
//! forwards Noise-encrypted bytes it cannot read.

use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, relay};

/// What a node serves besides being a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Serves as the mesh's relay.
    pub relay: bool,
    /// Reaches members beyond the LAN: through relays (the relay client),
    /// by hole punching (DCUtR), learning its reachability (AutoNAT) and
    /// finding members at the relays (rendezvous). Off on a node that knows
    /// no relay: each of these gives every connection one more handler to
    /// poll, which cost a LAN round trip about 12 % (same-hour A/B).
    pub beyond_lan: bool,
}

/// Circuits one relay carries at once.
pub const MAX_CIRCUITS: usize = 64;
/// Bytes one circuit carries (both ways together) before it is cut: adverts
/// for hours, offers and results; big blobs should take a direct path.
pub const MAX_CIRCUIT_BYTES: u64 = 256 * 1024 * 1024;
/// How long one circuit lasts before it is cut (its ends dial again).
pub const MAX_CIRCUIT_DURATION: Duration = Duration::from_secs(2 * 3600);

/// The relay server's limits. libp2p's defaults (2 minutes and 128 KiB
/// per circuit, 16 circuits) would cut a relayed member off every few
/// adverts.
pub fn server_config() -> relay::Config {
    relay::Config {
        max_reservations: 128,
        max_reservations_per_peer: 4,
        reservation_duration: Duration::from_secs(3600),
        max_circuits: MAX_CIRCUITS,
        max_circuits_per_peer: 16,
        max_circuit_duration: MAX_CIRCUIT_DURATION,
        max_circuit_bytes: circuit_bytes(),
        ..relay::Config::default()
    }
}

/// [`MAX_CIRCUIT_BYTES`], or, in builds with the `test-hooks` feature only,
/// `CORRAL_TEST_RELAY_CIRCUIT_BYTES` (a test switch: the tests cut circuits
/// after a few MiB to watch members ride it out).
fn circuit_bytes() -> u64 {
    if cfg!(feature = "test-hooks")
        && let Some(bytes) = std::env::var("CORRAL_TEST_RELAY_CIRCUIT_BYTES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
    {
        tracing::warn!(
            bytes,
            "CORRAL_TEST_RELAY_CIRCUIT_BYTES: circuits are cut early (a test switch)"
        );
        return bytes;
    }
    MAX_CIRCUIT_BYTES
}

/// Most relays one device reserves at.
pub const MAX_RELAYS: usize = 4;

/// A relay's address: a multiaddr that names the relay (`/p2p/<id>` last)
/// and is not itself a circuit.
pub fn parse_relay_addr(text: &str) -> Result<libp2p::Multiaddr, String> {
    use libp2p::multiaddr::Protocol;
    let addr: libp2p::Multiaddr = text
        .parse()
        .map_err(|e| format!("{text:?} is not a multiaddr: {e}"))?;
    if super::is_circuit(&addr) {
        return Err(format!("{text} is a circuit address, not a relay's"));
    }
    if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        return Err(format!(
            "{text} does not name the relay: end it with /p2p/<the relay's peer id>"
        ));
    }
    Ok(addr)
}

/// How long after a reservation ended (refused, or the relay went away)
/// it is asked for again.
pub const RESERVE_AGAIN_AFTER: Duration = Duration::from_secs(10);

/// The relays this node reserves a circuit address at (`--relay-addr`):
/// one listener each, asked for once the relay is connected (a reservation
/// dialled beside the node's own dial to the relay is dropped by libp2p),
/// asked again [`RESERVE_AGAIN_AFTER`] after it ends.
#[derive(Debug, Default)]
pub struct Relays {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    peer: PeerId,
    addr: Multiaddr,
    listener: Option<ListenerId>,
    not_before: Option<Instant>,
}

impl Relays {
    /// The relays at `addrs`, each naming the relay by `/p2p/<its id>`
    /// (others are skipped: the CLI refuses them).
    pub fn new(addrs: &[Multiaddr]) -> Self {
        let slots = addrs
            .iter()
            .filter_map(|addr| {
                Some(Slot {
                    peer: super::peer_of(addr)?,
                    addr: addr.clone(),
                    listener: None,
                    not_before: None,
                })
            })
            .collect();
        Self { slots }
    }

    /// The relays' own addresses (to stay connected to them).
    pub fn addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.slots.iter().map(|s| &s.addr)
    }

    /// Circuit addresses to listen on now: at each connected relay with no
    /// reservation under way, unless one ended a moment ago. Each must be
    /// handed back with [`Relays::listening`] (or it is asked for again).
    pub fn due(
        &self,
        connected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) -> Vec<(usize, Multiaddr)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.listener.is_none() && s.not_before.is_none_or(|t| now >= t) && connected(&s.peer)
            })
            .map(|(i, s)| (i, s.addr.clone().with(Protocol::P2pCircuit)))
            .collect()
    }

    /// Relay `i`'s reservation is under way as listener `id`.
    pub fn listening(&mut self, i: usize, id: ListenerId) {
        if let Some(slot) = self.slots.get_mut(i) {
            slot.listener = Some(id);
        }
    }

    /// Listener `id` ended: its relay's reservation is asked for again
    /// after [`RESERVE_AGAIN_AFTER`]. Returns the relay's address if it was
    /// one of ours.
    pub fn closed(&mut self, id: ListenerId, now: Instant) -> Option<&Multiaddr> {
        let slot = self.slots.iter_mut().find(|s| s.listener == Some(id))?;
        slot.listener = None;
        slot.not_before = Some(now + RESERVE_AGAIN_AFTER);
        Some(&slot.addr)
    }
}

#[cfg(test)]
mod relays_tests {
    use super::*;

    fn relay_addr(n: u8) -> (PeerId, Multiaddr) {
        let peer = crate::identity::NodeKey::generate().expect("key").peer_id();
        let addr: Multiaddr = format!("/ip4/10.0.0.{n}/tcp/4001")
            .parse()
            .expect("multiaddr");
        (peer, addr.with(Protocol::P2p(peer)))
    }

    #[test]
    fn a_reservation_is_asked_once_the_relay_is_connected_and_again_after_it_ends() {
        let (peer, addr) = relay_addr(1);
        let unnamed: Multiaddr = "/ip4/10.0.0.2/tcp/4001".parse().expect("multiaddr");
        let mut relays = Relays::new(&[addr.clone(), unnamed]);
        assert_eq!(
            relays.addrs().count(),
            1,
            "a relay not named by /p2p/ is skipped"
        );
        let t0 = Instant::now();
        assert!(
            relays.due(|_| false, t0).is_empty(),
            "not before it is connected"
        );
        let due = relays.due(|p| *p == peer, t0);
        assert_eq!(due, vec![(0, addr.clone().with(Protocol::P2pCircuit))]);
        let id = ListenerId::next();
        relays.listening(0, id);
        assert!(
            relays.due(|_| true, t0).is_empty(),
            "one reservation at a time"
        );
        assert_eq!(relays.closed(ListenerId::next(), t0), None, "not ours");
        assert_eq!(relays.closed(id, t0), Some(&addr));
        assert!(
            relays.due(|_| true, t0 + Duration::from_secs(1)).is_empty(),
            "backing off"
        );
        assert_eq!(relays.due(|_| true, t0 + RESERVE_AGAIN_AFTER).len(), 1);
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
