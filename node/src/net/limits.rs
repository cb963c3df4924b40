//! How much of this device the network may take (DESIGN §7, cheap checks
//! first): connections (per peer, pending, established), the process's
//! memory before a new connection is refused, and streams per connection.
//! Sized for a home mesh: a few dozen devices, each with one or two
//! connections to each other device.

use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{connection_limits, memory_connection_limits};

/// Connections to one peer: one each way while two devices dial each
/// other at once, and one more (a relayed path beside a direct one).
pub const MAX_PER_PEER: u32 = 3;
/// Connections still in their handshake (PSK, Noise) that a remote opened.
pub const MAX_PENDING_INCOMING: u32 = 64;
/// Connections still in their handshake that this device opened.
pub const MAX_PENDING_OUTGOING: u32 = 64;
/// Established connections a remote opened: fewer than all, so a flood of
/// incoming ones (each a fresh key with the mesh key) leaves room for this
/// device to dial the peers it knows.
pub const MAX_ESTABLISHED_INCOMING: u32 = 192;
/// Established connections in all.
pub const MAX_ESTABLISHED: u32 = 256;
/// Share of the host's memory the process may use before new connections
/// are refused (guests run in the process, so it may be most of it).
pub const MAX_MEMORY_SHARE: f64 = 0.9;

/// Concurrent `/corral/task/1` streams per connection, inbound and outbound
/// together (libp2p fails an outbound request past it): a coordinator's
/// offer batches, a worker's result batch, hand-backs and live output take
/// a handful at a time, cancels one stream each. The bytes inbound requests
/// may hold are bounded by `wire`'s budget, not by this.
pub const MAX_TASK_STREAMS: usize = 64;
/// Concurrent `/corral/blob/1` streams per connection: each side fetches
/// chunks for its tasks or for results it takes in (at most
/// `MAX_INTAKE` = 64 at once on the coordinator), and a request is 64
/// bytes.
pub const MAX_BLOB_STREAMS: usize = 128;

/// The connection limits above.
pub fn connections() -> connection_limits::Behaviour {
    connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_PER_PEER))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
            .with_max_pending_outgoing(Some(MAX_PENDING_OUTGOING))
            .with_max_established_incoming(Some(MAX_ESTABLISHED_INCOMING))
            .with_max_established(Some(MAX_ESTABLISHED)),
    )
}

/// New connections refused while the process uses more than
/// [`MAX_MEMORY_SHARE`] of the host's memory.
///
/// Not on 32-bit targets: memory-stats 1.2 multiplies the process's page
/// counts in a `usize` there, which overflows (a panic in a debug build, a
/// wrong figure in a release one: seen under qemu-arm, where the armv7
/// daemon died at start-up). The connection limits still bound them.
pub fn memory() -> Toggle<memory_connection_limits::Behaviour> {
    Toggle::from(
        cfg!(target_pointer_width = "64")
            .then(|| memory_connection_limits::Behaviour::with_max_percentage(MAX_MEMORY_SHARE)),
    )
}

#[cfg(test)]
mod tests;
