//! The network: libp2p over TCP behind the mesh's private-network key
//! ([`transport`]), identify, ping and gossipsub capacity adverts
//! ([`behaviour`]) put together in a [`swarm`], DNS-SD over mDNS discovery
//! ([`discovery`]) and whom to dial ([`dialer`]).

pub mod behaviour;
mod coalesce;
pub mod dialer;
pub mod discovery;
pub mod lane;
pub mod limits;
pub mod paths;
pub mod relay;
pub mod rendezvous;
pub mod swarm;
pub mod transport;
pub mod wire;

use corral_protocol::ids::PeerKey;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// The gossipsub topic of capacity adverts (DESIGN §4).
pub const CAPACITY_TOPIC: &str = "corral/capacity/1";

/// The gossipsub topic of signed module records (issue 22): one record per
/// message.
pub const MODULES_TOPIC: &str = "corral/modules/1";

/// The protocol version advertised over identify and mDNS.
pub const PROTOCOL_NAME: &str = "/corral/1";

/// The protocol's name for a peer: its ed25519 public key, recovered from the
/// peer id (ed25519 peer ids embed the key itself).
pub fn peer_key_of(peer: &PeerId) -> Option<PeerKey> {
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return None;
    }
    let public = libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let ed = public.try_into_ed25519().ok()?;
    Some(PeerKey::from_bytes(ed.to_bytes()))
}

/// Whether `addr` goes through a relay (holds `/p2p-circuit`).
pub fn is_circuit(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| p == Protocol::P2pCircuit)
}

/// The peer `addr` leads to: the last `/p2p/` in it (a circuit address
/// names the relay first and the peer behind it last).
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().fold(None, |last, p| match p {
        Protocol::P2p(id) => Some(id),
        _ => last,
    })
}

/// Whether another host could dial `addr` directly: not a circuit, and no
/// loopback, unspecified or link-local IP in it.
pub fn is_routable(addr: &Multiaddr) -> bool {
    addr.iter().all(|p| match p {
        Protocol::Ip4(ip) => discovery::usable(&ip.into()),
        Protocol::Ip6(ip) => discovery::usable(&ip.into()),
        Protocol::P2pCircuit => false,
        _ => true,
    })
}

/// The peer id of a protocol key.
pub fn peer_id_of(key: &PeerKey) -> Option<PeerId> {
    let ed = libp2p::identity::ed25519::PublicKey::try_from_bytes(key.as_bytes()).ok()?;
    Some(libp2p::identity::PublicKey::from(ed).to_peer_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_give_back_the_protocol_key() {
        let key = crate::identity::NodeKey::generate().expect("key");
        assert_eq!(peer_key_of(&key.peer_id()), Some(key.peer_key()));
        assert_eq!(peer_id_of(&key.peer_key()), Some(key.peer_id()));
    }
}
