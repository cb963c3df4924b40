//! TCP, then the private-network handshake with the mesh key, then Noise and
//! Yamux. A device without the mesh key cannot get past the PSK handshake, so
//! it cannot complete a connection at all (DESIGN §4, §7). QUIC is left out on
//! purpose: it would bypass the PSK.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{PeerId, Transport, identity, noise, tcp, yamux};

/// The authenticated, multiplexed transport of a mesh member.
pub fn build(
    key: &identity::Keypair,
    psk: PreSharedKey,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let transport = tcp
        .and_then(move |socket, _endpoint| PnetConfig::new(psk).handshake(socket))
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(10))
        .boxed();
    Ok(transport)
}
