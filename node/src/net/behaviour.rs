//! The libp2p behaviours of a node, composed: identify and ping for liveness
#![allow(missing_docs)] // the derive generates an undocumented event enum
//! and addresses, gossipsub for capacity adverts.

use std::time::Duration;

use libp2p::swarm::NetworkBehaviour;
use libp2p::{gossipsub, identify, identity, ping};

use super::PROTOCOL_NAME;

/// Largest gossip message: an advert is a few hundred bytes.
const MAX_GOSSIP_BYTES: usize = 4 * 1024;

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Peer addresses and versions.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Capacity adverts.
    pub gossipsub: gossipsub::Behaviour,
}

impl Behaviour {
    /// Builds the behaviours for `key`.
    pub fn new(key: &identity::Keypair) -> anyhow::Result<Self> {
        let config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_secs(1))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(MAX_GOSSIP_BYTES)
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
                .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        Ok(Self {
            identify: identify::Behaviour::new(
                identify::Config::new(PROTOCOL_NAME.into(), key.public())
                    .with_agent_version(format!("corral/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::new(
                // Adverts every second already tell a silent peer from a live
                // one; ping only has to keep idle connections honest.
                ping::Config::new()
                    .with_interval(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(5)),
            ),
            gossipsub,
        })
    }
}
