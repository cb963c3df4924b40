//! Relays (DESIGN "Beyond one LAN"): a reachable member run with
//! `corral up --relay` forwards circuits between members that cannot reach
//! each other, with limits sized for corral's traffic. The relay holds the
//! mesh key (a keyless device cannot connect to it), and every circuit is
//! upgraded with the key end to end ([`super::transport`]), so the relay
//! forwards Noise-encrypted bytes it cannot read.

use std::time::Duration;

use libp2p::relay;

/// What a node serves besides being a member.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// Serves as the mesh's relay.
    pub relay: bool,
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
        max_circuit_bytes: MAX_CIRCUIT_BYTES,
        ..relay::Config::default()
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
