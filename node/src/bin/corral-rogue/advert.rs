//! The rogue's capacity adverts: a huge idle capacity and speed, to be
//! picked first; and in `flood` mode, many extra members under fresh keys
//! that connect and advertise too (bogus adverts signed by many keys).

use std::time::Duration;

use corral_node::identity::NodeKey;
use corral_node::net::swarm;
use corral_protocol::capacity::{CapacityAdvert, EngineSpeed, OwnerState};
use corral_protocol::codec;
use corral_protocol::ids::PeerKey;
use corral_protocol::receipt::EngineKind;
use futures::StreamExt;
use libp2p::Multiaddr;
use libp2p::pnet::PreSharedKey;

/// Claimed operations per second: far beyond any real device.
const HUGE_SPEED: u64 = 1 << 40;

/// Successive adverts of one identity.
pub(crate) struct Adverts {
    peer: PeerKey,
    name: String,
    seq: u64,
}

impl Adverts {
    /// Adverts for `key` under `name`.
    pub(crate) fn new(key: &NodeKey, name: &str) -> Self {
        Self {
            peer: key.peer_key(),
            name: name.to_string(),
            seq: 0,
        }
    }

    /// The next advert, encoded: idle, every slot free, a huge speed.
    pub(crate) fn next(&mut self) -> Vec<u8> {
        self.seq += 1;
        let advert = CapacityAdvert {
            peer: self.peer,
            name: self.name.clone(),
            seq: self.seq,
            arch: std::env::consts::ARCH.into(),
            os: std::env::consts::OS.into(),
            engines: vec![
                EngineSpeed {
                    engine: EngineKind::Jit,
                    ops_per_s: HUGE_SPEED,
                },
                EngineSpeed {
                    engine: EngineKind::Interp,
                    ops_per_s: HUGE_SPEED,
                },
            ],
            slots_total: 64,
            slots_free: 64,
            cores: 64,
            host_load_pct: 0,
            free_memory_mib: 1 << 20,
            on_battery: false,
            state: OwnerState::Idle,
            running: 0,
            queued: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        };
        codec::encode(&advert)
    }
}

/// Starts `count` extra members, each under a fresh key, dialling `peers`
/// and advertising every second until the process ends.
pub(crate) fn spawn_sybils(psk: PreSharedKey, peers: Vec<Multiaddr>, count: usize) {
    for i in 0..count {
        let peers = peers.clone();
        tokio::spawn(async move {
            if let Err(e) = sybil(psk, peers, i).await {
                super::say(&format!("SYBIL_ERROR {i}: {e:#}"));
            }
        });
    }
}

async fn sybil(psk: PreSharedKey, peers: Vec<Multiaddr>, i: usize) -> anyhow::Result<()> {
    let key = NodeKey::generate()?;
    let mut swarm = swarm::build(&key, psk, Default::default())?;
    let topic = swarm::subscribe_capacity(&mut swarm.behaviour_mut().gossipsub)?;
    for peer in peers {
        swarm.dial(peer)?;
    }
    let mut adverts = Adverts::new(&key, &format!("sybil-{i}"));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), adverts.next());
            }
            _ = swarm.select_next_some() => {}
        }
    }
}
