//! Whom to dial, and when: the addresses mDNS found for each peer of the
//! mesh and the `--peer` addresses, redialled while not connected (after a
//! partition heals, neither side would otherwise try). mDNS is a hint
//! (DESIGN §4): anyone on the LAN can announce instances of the mesh, so
//! everything here is bounded. At most [`MAX_DIALS`] addresses are being
//! dialled at once; a failed dial backs off exponentially per instance;
//! an address of an instance never connected is dropped after
//! [`ADDR_FAILURES`] failed dials, and at most [`MAX_PENDING`] such
//! instances are kept (the most failed, then the oldest, go first). Once
//! connected (the mesh key and the peer's key checked), an instance is a
//! member: kept and redialled with a shorter back-off. `--peer` addresses
//! are the user's: redialled with back-off, never dropped.

use std::collections::{HashMap, HashSet};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, DialError, NetworkBehaviour, Swarm};
use libp2p::{Multiaddr, PeerId};

use crate::clock::{Clock, SystemClock};

/// Most instances found but never connected that are kept.
pub const MAX_PENDING: usize = 64;
/// Most members (instances once connected) kept for redialling.
pub const MAX_MEMBERS: usize = 4096;
/// Most addresses kept per instance.
pub const MAX_ADDRS: usize = 8;
/// Most addresses being dialled at once (each is a socket).
pub const MAX_DIALS: usize = 8;
/// Failed dials after which an address of a never-connected instance is
/// dropped.
pub const ADDR_FAILURES: u32 = 3;
/// Failed dials in a row after which a member is no longer redialled
/// (about an hour at the longest back-off).
pub const MEMBER_FAILURES: u32 = 360;
/// The first back-off after a failed dial; it doubles with each failure.
const BACKOFF_MS: u64 = 2_000;
/// The longest back-off of an instance never connected.
const PENDING_MAX_BACKOFF_MS: u64 = 60_000;
/// The longest back-off of a member or a `--peer` address: short enough
/// that a healed partition is noticed soon.
const MEMBER_MAX_BACKOFF_MS: u64 = 10_000;
/// A dial with no outcome after this long frees its slot (the transport
/// gives up after 10 s; this is a safety net).
const STALE_DIAL_MS: u64 = 30_000;

/// One address and how often dialling it failed in a row.
#[derive(Debug, Clone)]
struct Addr {
    addr: Multiaddr,
    failures: u32,
}

/// A peer found by mDNS.
#[derive(Debug)]
struct Instance {
    addrs: Vec<Addr>,
    /// Failed dials in a row.
    failures: u32,
    /// Not dialled before this time.
    due_ms: u64,
    /// When it was first found.
    found_ms: u64,
    /// It has been connected (it holds the mesh key and its peer key).
    member: bool,
}

/// A `--peer` address.
#[derive(Debug)]
struct Bootstrap {
    addr: Multiaddr,
    /// The peer id in the address, if it has one.
    target: Option<PeerId>,
    failures: u32,
    due_ms: u64,
}

/// What a dial in flight was for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Found(PeerId),
    Bootstrap(usize),
}

/// A dial in flight.
#[derive(Debug)]
struct InFlight {
    target: Target,
    addrs: Vec<Multiaddr>,
    since_ms: u64,
}

/// The addresses to (re)dial, and the dials in flight.
#[derive(Debug)]
pub struct Dialer<C: Clock = SystemClock> {
    clock: C,
    found: HashMap<PeerId, Instance>,
    bootstrap: Vec<Bootstrap>,
    in_flight: HashMap<ConnectionId, InFlight>,
}

impl Default for Dialer {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Dialer {
    /// A dialer for the `--peer` addresses, on the system clock.
    pub fn new(bootstrap: Vec<Multiaddr>) -> Self {
        Self::with_clock(bootstrap, SystemClock)
    }
}

impl<C: Clock> Dialer<C> {
    /// A dialer for the `--peer` addresses on `clock`.
    pub fn with_clock(bootstrap: Vec<Multiaddr>, clock: C) -> Self {
        let bootstrap = bootstrap
            .into_iter()
            .map(|addr| Bootstrap {
                target: super::peer_of(&addr),
                addr,
                failures: 0,
                due_ms: 0,
            })
            .collect();
        Self {
            clock,
            found: HashMap::new(),
            bootstrap,
            in_flight: HashMap::new(),
        }
    }

    /// Starts the dials that are due on `swarm`, as many as the cap allows:
    /// the `--peer` addresses at start, then redials on a timer and after
    /// each outcome.
    pub fn pump<B: NetworkBehaviour>(&mut self, swarm: &mut Swarm<B>) {
        let connected: HashSet<PeerId> = swarm.connected_peers().copied().collect();
        for opts in self.due(|p| connected.contains(p), !connected.is_empty()) {
            let id = opts.connection_id();
            if let Err(e) = swarm.dial(opts) {
                let penalty = !matches!(e, DialError::DialPeerConditionFalse(_));
                tracing::debug!("dial not started: {e}");
                self.on_not_started(id, penalty);
            }
        }
    }

    /// Remembers where `peer` was found (bounded). `connected`: it is
    /// connected now, so it holds the key: a member.
    pub fn on_found(&mut self, peer: PeerId, addresses: Vec<Multiaddr>, connected: bool) {
        let now = self.clock.now_ms();
        if !self.found.contains_key(&peer) {
            if connected {
                if self.members() >= MAX_MEMBERS {
                    return;
                }
            } else if self.pending() >= MAX_PENDING {
                self.evict_pending();
            }
        }
        let instance = self.found.entry(peer).or_insert_with(|| Instance {
            addrs: Vec::new(),
            failures: 0,
            due_ms: now,
            found_ms: now,
            member: false,
        });
        instance.member |= connected;
        for addr in addresses {
            if instance.addrs.iter().any(|a| a.addr == addr) {
                continue;
            }
            if instance.addrs.len() < MAX_ADDRS {
                instance.addrs.push(Addr { addr, failures: 0 });
            } else if let Some(worst) = instance
                .addrs
                .iter_mut()
                .filter(|a| a.failures > 0)
                .max_by_key(|a| a.failures)
            {
                *worst = Addr { addr, failures: 0 };
            }
        }
    }

    /// mDNS says `peer`'s instance went away: stop redialling it. A hint
    /// only: a connection to it is not touched.
    pub fn on_gone(&mut self, peer: &PeerId) {
        self.found.remove(peer);
    }

    /// A connection to `peer` is up (dialled by us as `id`, or not): it is
    /// a member, and its failures are forgiven.
    pub fn on_connected(&mut self, peer: PeerId, id: ConnectionId) {
        if let Some(InFlight {
            target: Target::Bootstrap(i),
            ..
        }) = self.in_flight.remove(&id)
            && let Some(b) = self.bootstrap.get_mut(i)
        {
            b.failures = 0;
            b.due_ms = 0;
        }
        if let Some(b) = self.bootstrap.iter_mut().find(|b| b.target == Some(peer)) {
            b.failures = 0;
            b.due_ms = 0;
        }
        let members = self.members();
        if let Some(instance) = self.found.get_mut(&peer)
            && (instance.member || members < MAX_MEMBERS)
        {
            instance.member = true;
            instance.failures = 0;
            instance.due_ms = 0;
            for a in &mut instance.addrs {
                a.failures = 0;
            }
        }
    }

    /// Dial `id` failed: back off, and drop addresses that keep failing.
    pub fn on_dial_failed(&mut self, id: ConnectionId) {
        if let Some(flight) = self.in_flight.remove(&id) {
            self.failed(flight);
        }
    }

    /// `swarm.dial` refused dial `id` at once; `penalty` unless it was only
    /// because the peer is connected or being dialled already.
    fn on_not_started(&mut self, id: ConnectionId, penalty: bool) {
        if let Some(flight) = self.in_flight.remove(&id)
            && penalty
        {
            self.failed(flight);
        }
    }

    fn failed(&mut self, flight: InFlight) {
        let now = self.clock.now_ms();
        match flight.target {
            Target::Bootstrap(i) => {
                if let Some(b) = self.bootstrap.get_mut(i) {
                    b.failures = b.failures.saturating_add(1);
                    b.due_ms = now + backoff(b.failures, MEMBER_MAX_BACKOFF_MS);
                }
            }
            Target::Found(peer) => {
                let Some(instance) = self.found.get_mut(&peer) else {
                    return;
                };
                instance.failures = instance.failures.saturating_add(1);
                let cap = if instance.member {
                    MEMBER_MAX_BACKOFF_MS
                } else {
                    PENDING_MAX_BACKOFF_MS
                };
                instance.due_ms = now + backoff(instance.failures, cap);
                for a in &mut instance.addrs {
                    if flight.addrs.contains(&a.addr) {
                        a.failures = a.failures.saturating_add(1);
                    }
                }
                let gone = if instance.member {
                    instance.failures >= MEMBER_FAILURES
                } else {
                    instance.addrs.retain(|a| a.failures < ADDR_FAILURES);
                    instance.addrs.is_empty()
                };
                if gone {
                    tracing::debug!(%peer, "no longer dialled: its addresses keep failing");
                    self.found.remove(&peer);
                }
            }
        }
    }

    /// The dials to start now, recorded as in flight: `--peer` addresses
    /// first, then the instances with the fewest failures, while fewer
    /// than [`MAX_DIALS`] addresses are being dialled.
    fn due(
        &mut self,
        is_connected: impl Fn(&PeerId) -> bool,
        any_connected: bool,
    ) -> Vec<DialOpts> {
        let now = self.clock.now_ms();
        let stale: Vec<ConnectionId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| now.saturating_sub(f.since_ms) >= STALE_DIAL_MS)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.on_dial_failed(id);
        }
        let busy: HashSet<Target> = self.in_flight.values().map(|f| f.target.clone()).collect();
        let mut free = MAX_DIALS.saturating_sub(self.dialling());
        let mut out = Vec::new();
        for (i, b) in self.bootstrap.iter().enumerate() {
            let reached = match b.target {
                Some(peer) => is_connected(&peer),
                None => any_connected,
            };
            if free == 0 || reached || b.due_ms > now || busy.contains(&Target::Bootstrap(i)) {
                continue;
            }
            let opts = match b.target {
                Some(peer) => dial_opts(peer, vec![b.addr.clone()]),
                None => DialOpts::unknown_peer_id()
                    .address(b.addr.clone())
                    .allocate_new_port()
                    .build(),
            };
            self.in_flight.insert(
                opts.connection_id(),
                InFlight {
                    target: Target::Bootstrap(i),
                    addrs: vec![b.addr.clone()],
                    since_ms: now,
                },
            );
            out.push(opts);
            free -= 1;
        }
        let mut ready: Vec<(&PeerId, &Instance)> = self
            .found
            .iter()
            .filter(|(peer, inst)| {
                inst.due_ms <= now
                    && !inst.addrs.is_empty()
                    && !is_connected(peer)
                    && !busy.contains(&Target::Found(**peer))
            })
            .collect();
        ready.sort_by_key(|(_, inst)| (inst.failures, inst.due_ms));
        let mut picked = Vec::new();
        for (peer, inst) in ready {
            if free == 0 {
                break;
            }
            let mut addrs: Vec<&Addr> = inst.addrs.iter().collect();
            addrs.sort_by_key(|a| a.failures);
            let addrs: Vec<Multiaddr> = addrs.iter().take(free).map(|a| a.addr.clone()).collect();
            free -= addrs.len();
            picked.push((*peer, addrs));
        }
        for (peer, addrs) in picked {
            let opts = dial_opts(peer, addrs.clone());
            self.in_flight.insert(
                opts.connection_id(),
                InFlight {
                    target: Target::Found(peer),
                    addrs,
                    since_ms: now,
                },
            );
            out.push(opts);
        }
        out
    }

    /// Evicts the pending instance that failed most, the oldest of those.
    fn evict_pending(&mut self) {
        let worst = self
            .found
            .iter()
            .filter(|(_, i)| !i.member)
            .max_by_key(|(_, i)| (i.failures, std::cmp::Reverse(i.found_ms)))
            .map(|(peer, _)| *peer);
        if let Some(peer) = worst {
            self.found.remove(&peer);
        }
    }

    /// How many instances found were never connected.
    pub fn pending(&self) -> usize {
        self.found.values().filter(|i| !i.member).count()
    }

    /// How many instances are members.
    pub fn members(&self) -> usize {
        self.found.values().filter(|i| i.member).count()
    }

    /// How many addresses are being dialled.
    pub fn dialling(&self) -> usize {
        self.in_flight.values().map(|f| f.addrs.len()).sum()
    }

    /// How many instances are remembered.
    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

/// The wait after `failures` failed dials in a row: doubling from
/// [`BACKOFF_MS`], at most `cap`.
fn backoff(failures: u32, cap: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    (BACKOFF_MS << doublings).min(cap)
}

/// Dials from a new port and only when neither connected nor dialling:
/// two peers that found each other at once otherwise end up on one TCP
/// connection, each thinking it dialled (NOTES.md). Circuits alone are
/// dialled while another dial to the peer is pending: they cannot merge
/// into one TCP connection, and DCUtR's hole punch dials the peer's
/// public addresses, which hang for 10 s behind a NAT that drops them,
/// holding back the redial of a circuit the relay has just cut.
fn dial_opts(peer: PeerId, addresses: Vec<Multiaddr>) -> DialOpts {
    let condition = if !addresses.is_empty() && addresses.iter().all(super::is_circuit) {
        PeerCondition::Disconnected
    } else {
        PeerCondition::DisconnectedAndNotDialing
    };
    DialOpts::peer_id(peer)
        .addresses(addresses)
        .condition(condition)
        .allocate_new_port()
        .build()
}

#[cfg(test)]
mod tests;
