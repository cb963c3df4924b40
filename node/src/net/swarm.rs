//! The swarm of a mesh member: its transport ([`super::transport`]) and
//! behaviours ([`super::behaviour`]) with the connection settings corral
//! needs.

use std::time::Duration;

use libp2p::Swarm;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::identity::Keypair;
use libp2p::relay;
use libp2p::swarm::NetworkBehaviour;

use super::behaviour::Behaviour;
use super::relay::Roles;
use super::transport;
use super::{CAPACITY_TOPIC, MODULES_TOPIC};
use crate::identity::NodeKey;

/// Builds the swarm for `key` in the mesh of `psk`, serving `roles`.
pub fn build(
    key: &NodeKey,
    psk: libp2p::pnet::PreSharedKey,
    roles: Roles,
) -> anyhow::Result<Swarm<Behaviour>> {
    build_with(key, psk, |k, relay_client| {
        Behaviour::new(k, relay_client, roles)
    })
}

/// Builds a swarm like [`build`] whose behaviour `behaviour` makes from the
/// node's keypair (the test rogue adds raw writers to [`Behaviour`]).
pub fn build_with<B: NetworkBehaviour>(
    key: &NodeKey,
    psk: libp2p::pnet::PreSharedKey,
    behaviour: impl FnOnce(&Keypair, relay::client::Behaviour) -> anyhow::Result<B>,
) -> anyhow::Result<Swarm<B>> {
    let keypair = key.keypair();
    let (relay_transport, relay_client) = relay::client::new(keypair.public().to_peer_id());
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|k| transport::build(k, psk, relay_transport))?
        .with_behaviour(|k| {
            behaviour(k, relay_client)
                .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_string()))
        })?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(3600))
                // A stream for one protocol sends its request with the
                // protocol's name instead of waiting a round trip for the
                // other side to agree (multistream-select's lazy V1; the same
                // bytes on the wire). Halves the hops of an offer or a result.
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

/// Subscribes `gossipsub` to the module records ([`MODULES_TOPIC`]) and
/// returns the topic to publish them on.
pub fn subscribe_modules(gossipsub: &mut gossipsub::Behaviour) -> anyhow::Result<IdentTopic> {
    let topic = IdentTopic::new(MODULES_TOPIC);
    gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {MODULES_TOPIC}: {e}"))?;
    Ok(topic)
}

/// Subscribes `gossipsub` to the capacity adverts ([`CAPACITY_TOPIC`]) and
/// returns the topic to publish them on.
pub fn subscribe_capacity(gossipsub: &mut gossipsub::Behaviour) -> anyhow::Result<IdentTopic> {
    let topic = IdentTopic::new(CAPACITY_TOPIC);
    gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {CAPACITY_TOPIC}: {e}"))?;
    Ok(topic)
}
