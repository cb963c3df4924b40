//! Finding members beyond the LAN through the mesh's relays: each member
//! with a reservation at a relay registers its addresses there under the
//! mesh's namespace (`corral/<mesh id>`), and asks every relay it is
//! connected to who else is registered. What it learns goes to the dialer,
//! as mDNS finds do. The relays run the rendezvous server (`--relay`).
//!
//! Bounded: a registration lives [`TTL`] and is renewed every
//! [`REGISTER_EVERY`]; a relay is asked every [`DISCOVER_EVERY`] for at most
//! [`DISCOVER_LIMIT`] registrations, with the cookie of its last answer (only
//! what changed since); at most [`MAX_RELAYS`] relays are followed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::rendezvous::{self, Cookie, Namespace};
use libp2p::{Multiaddr, PeerId};

/// How long a registration lives at a relay (the server's bounds below).
pub const TTL: u64 = 300;
/// How often a registration is renewed (well within [`TTL`]).
pub const REGISTER_EVERY: Duration = Duration::from_secs(120);
/// How often each relay is asked who is registered.
pub const DISCOVER_EVERY: Duration = Duration::from_secs(15);
/// Most registrations asked for at once.
pub const DISCOVER_LIMIT: u64 = 64;
/// Most relays followed.
pub const MAX_RELAYS: usize = 8;
/// Two members that find each other dial at once only from the side with
/// the lower peer id (one circuit per pair, not two); the other dials if
/// still not connected this long after it first learned of the peer (the
/// lower side may learn of it only at its next question, up to
/// [`DISCOVER_EVERY`] later).
pub const TIE_BREAK: Duration = Duration::from_secs(3);
/// Most peers remembered for the tie-break.
const MAX_SEEN: usize = 1024;
/// Most addresses kept of one registration.
const MAX_ADDRS: usize = 8;

/// A registered member and its addresses (circuit addresses at relays,
/// addresses confirmed reachable).
pub type Found = (PeerId, Vec<Multiaddr>);

/// The rendezvous server of a relay: registrations of 1 to 60 minutes
/// (the library's 2 to 72 hours suit devices that never move), at most 4
/// per member and 1024 in all.
pub fn server_config() -> rendezvous::server::Config {
    rendezvous::server::Config::default()
        .with_min_ttl(60)
        .with_max_ttl(3600)
        .with_max_registration_per_peer(4)
        .with_max_registration_total(1024)
}

/// The mesh's namespace: `corral/<mesh id>` (the id is public already, in
/// the mDNS TXT record; a relay serves one mesh key, so this only keeps
/// versions apart).
pub fn namespace(mesh_id: &str) -> Namespace {
    Namespace::new(format!("corral/{mesh_id}")).unwrap_or_else(|_| Namespace::from_static("corral"))
}

#[derive(Debug)]
struct Relay {
    registered_at: Option<Instant>,
    next_discover: Instant,
    cookie: Option<Cookie>,
}

/// What to do next at each relay, and which found peers to dial.
#[derive(Debug)]
pub struct Rendezvous {
    me: PeerId,
    relays: HashMap<PeerId, Relay>,
    /// Members to dial once the tie-break is over, since when.
    waiting: HashMap<PeerId, (Instant, Vec<Multiaddr>)>,
}

impl Rendezvous {
    /// For the node `me`.
    pub fn new(me: PeerId) -> Self {
        Self {
            me,
            relays: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    /// A reservation at `relay` was accepted: register there now, and ask
    /// it who else is there.
    pub fn reserved(&mut self, relay: PeerId, now: Instant) {
        if !self.relays.contains_key(&relay) && self.relays.len() >= MAX_RELAYS {
            return;
        }
        let r = self.relays.entry(relay).or_insert(Relay {
            registered_at: None,
            next_discover: now,
            cookie: None,
        });
        r.registered_at = None;
        r.next_discover = now;
    }

    /// Relays to register at now (each recorded as registered).
    pub fn due_registrations(&mut self, now: Instant) -> Vec<PeerId> {
        self.relays
            .iter_mut()
            .filter(|(_, r)| r.registered_at.is_none_or(|t| now >= t + REGISTER_EVERY))
            .map(|(peer, r)| {
                r.registered_at = Some(now);
                *peer
            })
            .collect()
    }

    /// A registration at `relay` could not be made (no address yet, or
    /// refused): tried again at the next tick.
    pub fn register_failed(&mut self, relay: &PeerId) {
        if let Some(r) = self.relays.get_mut(relay) {
            r.registered_at = None;
        }
    }

    /// Registered at `relay`: ask it at once who else is there (whoever
    /// registered first learns of this node at its next question).
    pub fn registered(&mut self, relay: &PeerId, now: Instant) {
        if let Some(r) = self.relays.get_mut(relay) {
            r.next_discover = now;
        }
    }

    /// Relays to ask now, with the cookie of their last answer.
    pub fn due_discoveries(&mut self, now: Instant) -> Vec<(PeerId, Option<Cookie>)> {
        self.relays
            .iter_mut()
            .filter(|(_, r)| now >= r.next_discover)
            .map(|(peer, r)| {
                r.next_discover = now + DISCOVER_EVERY;
                (*peer, r.cookie.clone())
            })
            .collect()
    }

    /// `relay` answered: keep its cookie; returns which of the registered
    /// members `found` to hand to the dialer now: not this node, not
    /// connected, and on the lower peer id's side (the other side's wait
    /// for [`TIE_BREAK`] in [`Rendezvous::overdue`]).
    pub fn discovered(
        &mut self,
        relay: PeerId,
        cookie: Cookie,
        found: impl IntoIterator<Item = Found>,
        connected: impl Fn(&PeerId) -> bool,
        now: Instant,
    ) -> Vec<Found> {
        if let Some(r) = self.relays.get_mut(&relay) {
            r.cookie = Some(cookie);
        }
        let mut dial = Vec::new();
        for (peer, mut addrs) in found {
            if peer == self.me || peer == relay || connected(&peer) {
                continue;
            }
            addrs.truncate(MAX_ADDRS);
            if self.me < peer {
                dial.push((peer, addrs));
            } else if self.waiting.len() < MAX_SEEN || self.waiting.contains_key(&peer) {
                let since = self.waiting.get(&peer).map_or(now, |w| w.0);
                self.waiting.insert(peer, (since, addrs));
            }
        }
        dial
    }

    /// Members waited for past the tie-break and still not connected: to be
    /// handed to the dialer now (a relay's cookie only returns what changed,
    /// so they are dialled from here). Each is handed over once; the dialer
    /// keeps redialling it.
    pub fn overdue(&mut self, connected: impl Fn(&PeerId) -> bool, now: Instant) -> Vec<Found> {
        self.waiting.retain(|p, _| !connected(p));
        let due: Vec<PeerId> = self
            .waiting
            .iter()
            .filter(|(_, (since, _))| now >= *since + TIE_BREAK)
            .map(|(p, _)| *p)
            .collect();
        due.into_iter()
            .filter_map(|p| self.waiting.remove(&p).map(|(_, addrs)| (p, addrs)))
            .collect()
    }

    /// The connection to `relay` closed: it is followed again once a new
    /// reservation there is accepted.
    pub fn relay_gone(&mut self, relay: &PeerId) {
        self.relays.remove(relay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        crate::identity::NodeKey::generate().expect("key").peer_id()
    }

    fn circuit(relay: PeerId, to: PeerId) -> Multiaddr {
        format!("/ip4/198.51.100.10/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{to}")
            .parse()
            .expect("multiaddr")
    }

    #[test]
    fn registration_and_discovery_follow_their_schedule() {
        let (me, relay, t0) = (peer(), peer(), Instant::now());
        let mut rv = Rendezvous::new(me);
        assert!(
            rv.due_registrations(t0).is_empty(),
            "nothing before a reservation"
        );
        rv.reserved(relay, t0);
        assert_eq!(rv.due_registrations(t0), vec![relay]);
        assert!(rv.due_registrations(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            rv.due_registrations(t0 + REGISTER_EVERY),
            vec![relay],
            "renewed"
        );
        rv.register_failed(&relay);
        assert_eq!(
            rv.due_registrations(t0 + REGISTER_EVERY),
            vec![relay],
            "tried again"
        );
        assert_eq!(rv.due_discoveries(t0), vec![(relay, None)]);
        assert!(rv.due_discoveries(t0 + Duration::from_secs(1)).is_empty());
        let cookie = Cookie::for_namespace(namespace("abc"));
        rv.discovered(relay, cookie.clone(), [], |_| false, t0);
        assert_eq!(
            rv.due_discoveries(t0 + DISCOVER_EVERY),
            vec![(relay, Some(cookie))],
            "asked again with its cookie"
        );
        rv.registered(&relay, t0 + DISCOVER_EVERY + Duration::from_secs(1));
        assert_eq!(
            rv.due_discoveries(t0 + DISCOVER_EVERY + Duration::from_secs(1))
                .len(),
            1,
            "asked again at once once registered"
        );
        rv.relay_gone(&relay);
        assert!(rv.due_discoveries(t0 + DISCOVER_EVERY * 2).is_empty());
    }

    #[test]
    fn only_one_side_of_a_pair_dials_at_once_and_nobody_dials_itself() {
        let (relay, t0) = (peer(), Instant::now());
        let (mut a, mut b) = (peer(), peer());
        if b < a {
            std::mem::swap(&mut a, &mut b);
        }
        let cookie = || Cookie::for_namespace(namespace("abc"));
        let mut low = Rendezvous::new(a);
        let mut high = Rendezvous::new(b);
        low.reserved(relay, t0);
        high.reserved(relay, t0);
        let found = |p: PeerId| (p, vec![circuit(relay, p)]);
        let everyone = [found(a), found(b), found(relay)];
        assert_eq!(
            low.discovered(relay, cookie(), everyone.clone(), |_| false, t0),
            vec![found(b)]
        );
        assert!(
            high.discovered(relay, cookie(), everyone, |_| false, t0)
                .is_empty()
        );
        // The higher side dials only if the pair is still apart later, once.
        assert!(high.overdue(|_| false, t0 + TIE_BREAK / 2).is_empty());
        assert_eq!(high.overdue(|_| false, t0 + TIE_BREAK), vec![found(a)]);
        assert!(high.overdue(|_| false, t0 + TIE_BREAK * 2).is_empty());
        high.discovered(relay, cookie(), [found(a)], |_| false, t0);
        assert!(
            high.overdue(|p| *p == a, t0 + TIE_BREAK).is_empty(),
            "connected meanwhile"
        );
        // Connected peers are not dialled.
        assert!(
            low.discovered(relay, cookie(), [found(b)], |p| *p == b, t0)
                .is_empty()
        );
    }

    #[test]
    fn relays_and_remembered_peers_are_bounded() {
        let (me, t0) = (peer(), Instant::now());
        let mut rv = Rendezvous::new(me);
        for _ in 0..MAX_RELAYS + 3 {
            rv.reserved(peer(), t0);
        }
        assert_eq!(rv.due_registrations(t0).len(), MAX_RELAYS);
        let relay = *rv.relays.keys().next().expect("a relay");
        // Every registration's addresses, and the members waited for.
        let many = (0..MAX_SEEN + 10).map(|_| (peer(), vec![circuit(relay, me); 20]));
        let now = rv.discovered(
            relay,
            Cookie::for_namespace(namespace("x")),
            many,
            |_| false,
            t0,
        );
        assert!(now.iter().all(|(_, a)| a.len() == MAX_ADDRS));
        assert!(rv.waiting.len() <= MAX_SEEN);
        assert!(rv.waiting.values().all(|(_, a)| a.len() == MAX_ADDRS));
    }
}
