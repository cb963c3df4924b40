//! Discovery on the LAN with standard DNS-SD over mDNS (RFC 6762/6763), using
//! the `mdns-sd` crate: this node announces `_corral._tcp.local.` with its
//! libp2p port and TXT `peer=`, `mesh=`, `v=`, and browses the same type.
//! Standard browsers (avahi-browse, Bonjour) list corral devices, and it runs
//! beside the system's own responder. A peer of the same mesh is reported as
//! soon as it resolves; the event loop hands it to the dialer. Anyone on the
//! LAN can announce an instance of the mesh (its fingerprint is public) or
//! send a goodbye for one: what this reports is a hint (DESIGN §4).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::sync::mpsc;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_corral._tcp.local.";

/// What discovery tells the event loop.
#[derive(Debug)]
pub enum Found {
    /// A peer of this mesh, with addresses to dial.
    Peer {
        /// Its peer id.
        peer: PeerId,
        /// Where it listens.
        addresses: Vec<Multiaddr>,
    },
    /// A peer's service went away, or someone on the LAN says so: mDNS
    /// has no authentication, so this is a hint (stop redialling it), never
    /// proof that the peer left.
    Gone {
        /// Its peer id, if it was known.
        peer: PeerId,
    },
}

/// A running announcement and browse.
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
}

/// Bound on how many distinct instances are remembered (a LAN full of
/// strangers' adverts must not grow memory without end). The dialer bounds
/// whom it dials much tighter ([`super::dialer`]).
const MAX_INSTANCES: usize = 4096;

/// Most addresses passed on from one resolution.
const MAX_ADDRS: usize = super::dialer::MAX_ADDRS;

impl Discovery {
    /// Announces this node and starts browsing. `found` receives peers of the
    /// same mesh (never this node itself).
    pub fn start(
        name: &str,
        me: PeerId,
        mesh: &str,
        port: u16,
        found: mpsc::Sender<Found>,
    ) -> anyhow::Result<Self> {
        let daemon = ServiceDaemon::new().map_err(|e| anyhow::anyhow!("mDNS: {e}"))?;
        let short = me.to_base58();
        let short = &short[short.len().saturating_sub(8)..];
        let label: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(40)
            .collect();
        let instance = format!("{label}-{short}");
        let host = format!("{instance}.local.");
        let properties = txt_properties(&me, mesh);
        let info = ServiceInfo::new(SERVICE_TYPE, &instance, &host, "", port, &properties[..])
            .map_err(|e| anyhow::anyhow!("mDNS service: {e}"))?
            .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        daemon
            .register(info)
            .map_err(|e| anyhow::anyhow!("mDNS register: {e}"))?;
        let events = daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| anyhow::anyhow!("mDNS browse: {e}"))?;
        let mesh = mesh.to_string();
        let own = fullname.clone();
        tokio::spawn(async move {
            let mut known: HashMap<String, PeerId> = HashMap::new();
            let mut sent: HashSet<(PeerId, Multiaddr)> = HashSet::new();
            while let Ok(event) = events.recv_async().await {
                let message = match event {
                    ServiceEvent::ServiceResolved(service) => {
                        if service.fullname == own {
                            continue;
                        }
                        if service.get_property_val_str("mesh") != Some(mesh.as_str()) {
                            continue;
                        }
                        let Some(peer) = service
                            .get_property_val_str("peer")
                            .and_then(|p| p.parse::<PeerId>().ok())
                        else {
                            tracing::debug!(service = %service.fullname, "corral advert without a valid peer id");
                            continue;
                        };
                        if peer == me {
                            continue;
                        }
                        if known.len() < MAX_INSTANCES {
                            known.insert(service.fullname.clone(), peer);
                        }
                        let addresses: Vec<Multiaddr> = service
                            .addresses
                            .iter()
                            .map(|scoped| scoped.to_ip_addr())
                            .filter(usable)
                            .map(|ip| tcp_addr(ip, service.port))
                            .filter(|addr| sent.insert((peer, addr.clone())))
                            .take(MAX_ADDRS)
                            .collect();
                        if sent.len() > MAX_INSTANCES * 4 {
                            sent.clear();
                        }
                        if addresses.is_empty() {
                            continue;
                        }
                        Found::Peer { peer, addresses }
                    }
                    ServiceEvent::ServiceRemoved(_, fullname) => match known.remove(&fullname) {
                        Some(peer) => {
                            sent.retain(|(p, _)| *p != peer);
                            Found::Gone { peer }
                        }
                        None => continue,
                    },
                    _ => continue,
                };
                if found.send(message).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self { daemon, fullname })
    }

    /// Asks the network whether a peer's instance still exists, so a crashed
    /// device's record goes away in about a second instead of its TTL.
    pub fn verify(&self, fullname: String) {
        let _ = self.daemon.verify(fullname, Duration::from_secs(1));
    }

    /// Unregisters (peers see the goodbye within about a second) and stops.
    pub async fn stop(self) {
        if let Ok(status) = self.daemon.unregister(&self.fullname) {
            let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
        }
        if let Ok(status) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(Duration::from_secs(2), status.recv_async()).await;
        }
    }
}

/// The TXT record announcing `peer` in the mesh whose fingerprint is
/// `mesh`.
pub fn txt_properties(peer: &PeerId, mesh: &str) -> [(&'static str, String); 3] {
    [
        ("peer", peer.to_base58()),
        ("mesh", mesh.to_string()),
        ("v", "1".to_string()),
    ]
}

/// Loopback and unspecified addresses are of no use to another host;
/// IPv6 link-local needs a scope id multiaddrs cannot carry.
pub(super) fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80
        }
    }
}

fn tcp_addr(ip: IpAddr, port: u16) -> Multiaddr {
    let mut addr = Multiaddr::from(ip);
    addr.push(libp2p::multiaddr::Protocol::Tcp(port));
    addr
}
