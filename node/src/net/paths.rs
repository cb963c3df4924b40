//! How each peer is reached: every open connection labelled `lan`,
//! `direct`, `punched` or `relayed`, with the last ping's round trip; the
//! best path of a peer for `corral peers`; and which relayed connections
//! have become redundant because a direct one took over.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// How long a direct connection must have lasted before the relayed ones to
/// the same peer are closed: request-response spreads requests over all of a
/// peer's connections, so a circuit left open would keep carrying half of
/// them; a direct connection that fails at once keeps the circuit.
pub const DIRECT_SETTLES_AFTER: Duration = Duration::from_secs(2);

/// Pings failed in a row before a connection counts as dead (a ping every
/// 5 s, each given 5 s).
pub const DEAD_AFTER_PING_FAILURES: u32 = 2;

/// How one connection reaches its peer, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Via {
    /// A direct connection to an address on one of this device's own
    /// networks (an interface's subnet): the same LAN.
    Lan,
    /// Made by hole punching (DCUtR) from a relayed connection.
    Punched,
    /// A direct connection to an address beyond this device's networks (a
    /// relay, a server, a member behind a router).
    Direct,
    /// Through a relay's circuit.
    Relayed,
}

impl Via {
    /// The word `corral peers` prints.
    pub fn name(self) -> &'static str {
        match self {
            Via::Lan => "lan",
            Via::Punched => "punched",
            Via::Direct => "direct",
            Via::Relayed => "relayed",
        }
    }

    /// How a new connection to `remote` reaches its peer, given this
    /// device's networks (a punch is only known later, from DCUtR:
    /// [`Paths::punched`]).
    pub fn of(remote: &Multiaddr, relayed: bool, local: &[Subnet]) -> Self {
        if relayed || super::is_circuit(remote) {
            return Via::Relayed;
        }
        let ip = remote.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
            _ => None,
        });
        match ip {
            Some(ip) if local.iter().any(|net| net.contains(ip)) => Via::Lan,
            _ => Via::Direct,
        }
    }
}

/// One of this device's networks: an interface's address and netmask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subnet {
    /// The interface's address.
    pub ip: IpAddr,
    /// Its netmask.
    pub mask: IpAddr,
}

impl Subnet {
    /// Whether `ip` is on this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.ip, self.mask, ip) {
            (IpAddr::V4(net), IpAddr::V4(mask), IpAddr::V4(ip)) => {
                u32::from(net) & u32::from(mask) == u32::from(ip) & u32::from(mask)
            }
            (IpAddr::V6(net), IpAddr::V6(mask), IpAddr::V6(ip)) => {
                u128::from(net) & u128::from(mask) == u128::from(ip) & u128::from(mask)
            }
            _ => false,
        }
    }

    /// This device's networks now (none if the system will not say).
    pub fn here() -> Vec<Subnet> {
        match if_addrs::get_if_addrs() {
            Ok(interfaces) => interfaces
                .iter()
                .map(|i| Subnet {
                    ip: i.ip(),
                    mask: match &i.addr {
                        if_addrs::IfAddr::V4(a) => IpAddr::V4(a.netmask),
                        if_addrs::IfAddr::V6(a) => IpAddr::V6(a.netmask),
                    },
                })
                .collect(),
            Err(e) => {
                tracing::warn!(
                    "cannot list this device's networks (every peer counts as beyond them): {e}"
                );
                Vec::new()
            }
        }
    }
}

/// One open connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path {
    /// Its peer.
    pub peer: PeerId,
    /// How it reaches the peer.
    pub via: Via,
    /// Its remote address.
    pub remote: Multiaddr,
    /// The last ping's round trip over it.
    pub rtt: Option<Duration>,
    /// Pings failed in a row over it.
    pub ping_failures: u32,
    /// When it opened.
    pub since: Instant,
}

/// Every open connection's path, bounded by the swarm's connection limits.
#[derive(Debug, Default)]
pub struct Paths {
    conns: HashMap<ConnectionId, Path>,
    local: Vec<Subnet>,
}

impl Paths {
    /// This device's networks changed (an interface came or went): new
    /// connections are labelled by these.
    pub fn set_local(&mut self, local: Vec<Subnet>) {
        self.local = local;
    }

    /// Connection `id` to `peer` at `remote` opened.
    pub fn opened(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        remote: Multiaddr,
        relayed: bool,
        now: Instant,
    ) {
        let via = Via::of(&remote, relayed, &self.local);
        self.conns.insert(
            id,
            Path {
                peer,
                via,
                remote,
                rtt: None,
                ping_failures: 0,
                since: now,
            },
        );
    }

    /// Connection `id` closed.
    pub fn closed(&mut self, id: ConnectionId) {
        self.conns.remove(&id);
    }

    /// DCUtR made connection `id` by hole punching.
    pub fn punched(&mut self, id: ConnectionId) {
        if let Some(path) = self.conns.get_mut(&id) {
            path.via = Via::Punched;
        }
    }

    /// A ping over connection `id` took `rtt`.
    pub fn rtt(&mut self, id: ConnectionId, rtt: Duration) {
        if let Some(path) = self.conns.get_mut(&id) {
            path.rtt = Some(rtt);
            path.ping_failures = 0;
        }
    }

    /// A ping over connection `id` failed; whether the connection is dead
    /// ([`DEAD_AFTER_PING_FAILURES`] in a row) and should be closed: libp2p
    /// keeps a connection whose pings fail, and a device whose address
    /// changed would hold dead connections (and its relay reservation) for
    /// as long as TCP takes to notice.
    pub fn ping_failed(&mut self, id: ConnectionId) -> bool {
        self.conns.get_mut(&id).is_some_and(|path| {
            path.ping_failures += 1;
            path.ping_failures >= DEAD_AFTER_PING_FAILURES
        })
    }

    /// The open connections to `peer`.
    pub fn of(&self, peer: &PeerId) -> impl Iterator<Item = &Path> {
        self.conns.values().filter(move |p| p.peer == *peer)
    }

    /// The best path to `peer`: any direct one before a relayed one, then
    /// the lowest round trip (a measured one before an unmeasured one).
    pub fn best(&self, peer: &PeerId) -> Option<&Path> {
        self.of(peer)
            .min_by_key(|p| (p.via == Via::Relayed, p.rtt.unwrap_or(Duration::MAX), p.via))
    }

    /// Whether `peer` has a connection that is not through a relay.
    pub fn has_direct(&self, peer: &PeerId) -> bool {
        self.of(peer).any(|p| p.via != Via::Relayed)
    }

    /// The peers reached only through a relay, each with the lowest round
    /// trip measured over its circuits (`None` before the first ping): one
    /// pass over the connections.
    pub fn relayed_only(&self) -> HashMap<PeerId, Option<Duration>> {
        let mut direct = std::collections::HashSet::new();
        let mut relayed: HashMap<PeerId, Option<Duration>> = HashMap::new();
        for p in self.conns.values() {
            if p.via == Via::Relayed {
                let best = relayed.entry(p.peer).or_insert(p.rtt);
                *best = match (*best, p.rtt) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            } else {
                direct.insert(p.peer);
            }
        }
        relayed.retain(|peer, _| !direct.contains(peer));
        relayed
    }

    /// Relayed connections whose peer has had a direct one for at least
    /// [`DIRECT_SETTLES_AFTER`]: to be closed.
    pub fn relayed_to_close(&self, now: Instant) -> Vec<ConnectionId> {
        self.conns
            .iter()
            .filter(|(_, p)| {
                p.via == Via::Relayed
                    && self.of(&p.peer).any(|d| {
                        d.via != Via::Relayed
                            && now.saturating_duration_since(d.since) >= DIRECT_SETTLES_AFTER
                    })
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Multiaddr {
        text.parse().expect("multiaddr")
    }

    fn peer() -> PeerId {
        crate::identity::NodeKey::generate().expect("key").peer_id()
    }

    fn subnet(ip: &str, mask: &str) -> Subnet {
        Subnet {
            ip: ip.parse().expect("ip"),
            mask: mask.parse().expect("mask"),
        }
    }

    #[test]
    fn connections_are_labelled_by_this_devices_networks() {
        let home = [
            subnet("192.168.1.20", "255.255.255.0"),
            subnet("fd00::20", "ffff:ffff:ffff:ffff::"),
        ];
        let of = |a: &str| Via::of(&addr(a), false, &home);
        assert_eq!(of("/ip4/192.168.1.7/tcp/4001"), Via::Lan);
        assert_eq!(of("/ip6/fd00::1/tcp/4001"), Via::Lan);
        // Private, but not one of this device's networks: a member behind
        // another router, or a relay in a lab, is not on this LAN.
        assert_eq!(of("/ip4/192.168.2.7/tcp/4001"), Via::Direct);
        assert_eq!(of("/ip4/10.0.0.1/tcp/4001"), Via::Direct);
        assert_eq!(of("/ip4/198.51.100.10/tcp/4001"), Via::Direct);
        assert_eq!(of("/ip6/2001:db8::1/tcp/4001"), Via::Direct);
        let nowhere = Via::of(&addr("/ip4/192.168.1.7/tcp/4001"), false, &[]);
        assert_eq!(nowhere, Via::Direct);
        // A circuit is relayed whatever the relay's address.
        let circuit = addr("/ip4/192.168.1.7/tcp/4001")
            .with(Protocol::P2p(peer()))
            .with(Protocol::P2pCircuit);
        assert_eq!(Via::of(&circuit, false, &home), Via::Relayed);
        let relayed = Via::of(&addr("/ip4/192.168.1.7/tcp/4001"), true, &home);
        assert_eq!(relayed, Via::Relayed);
        // This machine's own networks hold its loopback.
        let lo = Via::of(&addr("/ip4/127.0.0.1/tcp/4001"), false, &Subnet::here());
        assert_eq!(lo, Via::Lan);
    }

    #[test]
    fn the_best_path_is_direct_then_fastest_and_a_punch_relabels() {
        let (p, t0) = (peer(), Instant::now());
        let mut paths = Paths::default();
        assert!(paths.best(&p).is_none());
        let (relayed, punched) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        paths.opened(relayed, p, addr("/ip4/198.51.100.10/tcp/4001"), true, t0);
        paths.rtt(relayed, Duration::from_millis(3));
        assert_eq!(paths.best(&p).map(|b| b.via), Some(Via::Relayed));
        assert!(!paths.has_direct(&p));
        paths.opened(punched, p, addr("/ip4/198.51.100.2/tcp/4001"), false, t0);
        paths.punched(punched);
        // Direct before relayed even while its round trip is unknown or
        // slower than the circuit's.
        assert_eq!(paths.best(&p).map(|b| b.via), Some(Via::Punched));
        paths.rtt(punched, Duration::from_millis(9));
        let best = paths.best(&p).expect("a path");
        assert_eq!(
            (best.via, best.rtt),
            (Via::Punched, Some(Duration::from_millis(9)))
        );
        assert!(paths.has_direct(&p));
        paths.closed(punched);
        assert_eq!(paths.best(&p).map(|b| b.via), Some(Via::Relayed));
        // Another peer's paths are its own.
        assert!(paths.best(&peer()).is_none());
    }

    #[test]
    fn relayed_only_names_the_peers_a_relay_alone_reaches_with_their_best_round_trip() {
        let (far, near, t0) = (peer(), peer(), Instant::now());
        let mut paths = Paths::default();
        let id = ConnectionId::new_unchecked;
        let relay = addr("/ip4/198.51.100.10/tcp/4001");
        paths.opened(id(1), far, relay.clone(), true, t0);
        paths.opened(id(2), far, relay.clone(), true, t0);
        paths.opened(id(3), near, relay.clone(), true, t0);
        let only = paths.relayed_only();
        assert_eq!((only.len(), only[&far]), (2, None), "unmeasured yet");
        paths.rtt(id(2), Duration::from_millis(40));
        paths.rtt(id(1), Duration::from_millis(25));
        assert_eq!(paths.relayed_only()[&far], Some(Duration::from_millis(25)));
        // A direct path to `near` (punched): no longer relayed only.
        paths.opened(id(4), near, addr("/ip4/198.51.100.2/tcp/4001"), false, t0);
        let only = paths.relayed_only();
        assert!(!only.contains_key(&near) && only.contains_key(&far));
    }

    #[test]
    fn a_circuit_is_closed_only_once_a_direct_connection_has_lasted() {
        let (p, q, t0) = (peer(), peer(), Instant::now());
        let mut paths = Paths::default();
        let ids: Vec<ConnectionId> = (1..=4).map(ConnectionId::new_unchecked).collect();
        paths.opened(ids[0], p, addr("/ip4/198.51.100.10/tcp/4001"), true, t0);
        paths.opened(ids[1], q, addr("/ip4/198.51.100.10/tcp/4001"), true, t0);
        assert!(
            paths
                .relayed_to_close(t0 + Duration::from_secs(60))
                .is_empty(),
            "no direct path yet"
        );
        let t1 = t0 + Duration::from_secs(5);
        paths.opened(ids[2], p, addr("/ip4/198.51.100.2/tcp/4001"), false, t1);
        assert!(
            paths
                .relayed_to_close(t1 + Duration::from_secs(1))
                .is_empty(),
            "the direct connection is too young"
        );
        // Only p's circuit goes; q has no direct path.
        assert_eq!(
            paths.relayed_to_close(t1 + DIRECT_SETTLES_AFTER),
            vec![ids[0]]
        );
        paths.closed(ids[2]);
        assert!(
            paths
                .relayed_to_close(t1 + Duration::from_secs(60))
                .is_empty()
        );
    }

    #[test]
    fn a_connection_is_dead_after_pings_fail_in_a_row() {
        let (p, t0) = (peer(), Instant::now());
        let mut paths = Paths::default();
        let id = ConnectionId::new_unchecked(1);
        paths.opened(id, p, addr("/ip4/198.51.100.10/tcp/4001"), false, t0);
        assert!(!paths.ping_failed(id));
        paths.rtt(id, Duration::from_millis(2));
        assert!(!paths.ping_failed(id), "a success in between starts over");
        assert!(paths.ping_failed(id));
        assert!(
            !paths.ping_failed(ConnectionId::new_unchecked(9)),
            "unknown"
        );
    }
}
