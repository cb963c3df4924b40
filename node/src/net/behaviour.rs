//! The libp2p behaviours of a node, composed: the connection and memory
#![allow(missing_docs)] // the derive generates an undocumented event enum
//! limits ([`super::limits`]), identify and ping for liveness and
//! addresses, gossipsub for capacity adverts, and the two request-response
//! protocols that carry tasks and blobs point to point, and the task lane's
//! streams.

use std::time::Duration;

use corral_protocol::messages::{BlobRequest, BlobResponse, TaskRequest, TaskResponse};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    autonat, connection_limits, dcutr, gossipsub, identify, identity, memory_connection_limits,
    ping, relay, rendezvous,
};

use super::PROTOCOL_NAME;
use super::limits::{self, MAX_BLOB_STREAMS, MAX_TASK_STREAMS};
use super::relay::{Roles, server_config};
use super::wire::{BLOB_PROTOCOL, Budget, FrameCodec, MAX_INBOUND_BYTES, TASK_PROTOCOL};

/// The task protocol's behaviour.
pub type TaskBehaviour = request_response::Behaviour<FrameCodec<TaskRequest, TaskResponse>>;
/// The blob protocol's behaviour.
pub type BlobBehaviour = request_response::Behaviour<FrameCodec<BlobRequest, BlobResponse>>;

/// How long a task request may wait for its answer. A result is answered
/// once the coordinator holds its output files, which it fetches first.
pub const TASK_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one blob chunk may take.
pub const BLOB_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest gossip message: an advert is a few hundred bytes.
const MAX_GOSSIP_BYTES: usize = 4 * 1024;

/// Everything a node speaks.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connections per peer, pending and established (checked first: a
    /// connection refused here costs nothing more).
    pub limits: connection_limits::Behaviour,
    /// No new connection while the process's memory is high.
    pub memory: Toggle<memory_connection_limits::Behaviour>,
    /// Peer addresses and versions.
    pub identify: identify::Behaviour,
    /// Liveness.
    pub ping: ping::Behaviour,
    /// Capacity adverts.
    pub gossipsub: gossipsub::Behaviour,
    /// `/corral/task/1`.
    pub task: TaskBehaviour,
    /// `/corral/blob/1`.
    pub blob: BlobBehaviour,
    /// The streams of `/corral/task-lane/1` ([`super::lane`]).
    pub lane: libp2p_stream::Behaviour,
    /// Reservations and circuits at relays (a node that knows a relay:
    /// [`Roles::beyond_lan`]).
    pub relay_client: Toggle<relay::client::Behaviour>,
    /// The relay server (`corral up --relay`).
    pub relay: Toggle<relay::Behaviour>,
    /// Hole punching: a relayed connection is upgraded to a direct one
    /// where the NATs on both sides allow it ([`Roles::beyond_lan`]).
    pub dcutr: Toggle<dcutr::Behaviour>,
    /// Whether this device's observed addresses can be dialled from outside
    /// (AutoNAT v2, asking the relays' servers; [`Roles::beyond_lan`]).
    pub autonat: Toggle<autonat::v2::client::Behaviour>,
    /// Dials back the addresses members ask about (relays only: a member on
    /// a LAN would confirm private addresses as reachable from outside).
    pub autonat_server: Toggle<autonat::v2::server::Behaviour>,
    /// Registering at the relays and finding other members there
    /// ([`Roles::beyond_lan`]; see [`super::rendezvous`]).
    pub rendezvous: Toggle<rendezvous::client::Behaviour>,
    /// The relays' rendezvous point.
    pub rendezvous_server: Toggle<rendezvous::server::Behaviour>,
}

impl Behaviour {
    /// Builds the behaviours for `key`, with the relay client's half that
    /// [`super::transport::build`] was given, serving `roles`.
    pub fn new(
        key: &identity::Keypair,
        relay_client: relay::client::Behaviour,
        roles: Roles,
    ) -> anyhow::Result<Self> {
        let config = gossipsub::ConfigBuilder::default()
            .heartbeat_interval(Duration::from_secs(1))
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(MAX_GOSSIP_BYTES)
            // Forwarded only once the daemon took it (an advert from a
            // connected peer); anything else leaves the cache at once.
            .validate_messages()
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let gossipsub =
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), config)
                .map_err(|e| anyhow::anyhow!("gossipsub: {e}"))?;
        Ok(Self {
            limits: limits::connections(),
            memory: limits::memory(),
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
            // Inbound task requests may be large (an offer's manifest, a
            // result's streams): read within one budget for all peers.
            task: request_response::Behaviour::with_codec(
                FrameCodec::with_budget(Budget::new(MAX_INBOUND_BYTES)),
                [(TASK_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(TASK_TIMEOUT)
                    .with_max_concurrent_streams(MAX_TASK_STREAMS),
            ),
            blob: request_response::Behaviour::new(
                [(BLOB_PROTOCOL, ProtocolSupport::Full)],
                request_response::Config::default()
                    .with_request_timeout(BLOB_TIMEOUT)
                    .with_max_concurrent_streams(MAX_BLOB_STREAMS),
            ),
            lane: libp2p_stream::Behaviour::new(),
            relay_client: roles.beyond_lan.then_some(relay_client).into(),
            relay: roles
                .relay
                .then(|| relay::Behaviour::new(key.public().to_peer_id(), server_config()))
                .into(),
            dcutr: roles
                .beyond_lan
                .then(|| dcutr::Behaviour::new(key.public().to_peer_id()))
                .into(),
            autonat: roles
                .beyond_lan
                .then(autonat::v2::client::Behaviour::default)
                .into(),
            autonat_server: roles
                .relay
                .then(autonat::v2::server::Behaviour::default)
                .into(),
            rendezvous: roles
                .beyond_lan
                .then(|| rendezvous::client::Behaviour::new(key.clone()))
                .into(),
            rendezvous_server: roles
                .relay
                .then(|| rendezvous::server::Behaviour::new(super::rendezvous::server_config()))
                .into(),
        })
    }
}
