//! TCP or a relay circuit, then the private-network handshake with the mesh
//! key, then Noise and Yamux. A device without the mesh key cannot get past
//! the PSK handshake, so it cannot complete a connection at all (DESIGN §4,
//! §7) — neither to a relay nor, through one, to a member: a circuit is
//! upgraded with the same key as a TCP connection, end to end, so the relay
//! forwards bytes it cannot read. (libp2p's builder would upgrade a circuit
//! with Noise and Yamux only.) QUIC is left out on purpose: it would bypass
//! the PSK.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{PeerId, Transport, identity, noise, relay, tcp, yamux};

use super::coalesce::Coalesce;

/// A transport's error, as libp2p's builder wants it.
type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// The authenticated, multiplexed transport of a mesh member: `/p2p-circuit`
/// addresses through `relay` (the relay client's half), others over TCP;
/// both through the PSK handshake.
pub fn build(
    key: &identity::Keypair,
    psk: PreSharedKey,
    relay: relay::client::Transport,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BuildError> {
    let transport = relay
        .or_transport(tcp())
        .and_then(move |socket, _endpoint| PnetConfig::new(psk).handshake(socket));
    upgrade(key, transport)
}

/// TCP, its flushes gathered ([`Coalesce`]): a task message leaves in
/// one segment instead of three or four.
fn tcp() -> impl Transport<
    Output = Coalesce<tcp::tokio::TcpStream>,
    Error = std::io::Error,
    Dial: Send + 'static,
    ListenerUpgrade: Send + 'static,
> + Send
+ Unpin
+ 'static {
    tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(|socket, _| Coalesce::new(socket))
}

/// Noise and Yamux over a transport that already did the PSK handshake.
fn upgrade<T>(
    key: &identity::Keypair,
    transport: T,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BuildError>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: futures::AsyncRead + futures::AsyncWrite + Send + Unpin + 'static,
    T::Error: std::error::Error + Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    Ok(transport
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .timeout(Duration::from_secs(10))
        .boxed())
}

/// As [`build`], but circuits are upgraded with `circuit_psk` — another key
/// than TCP connections', or none (as libp2p's builder would): a device
/// that holds the relay's key yet not the member's.
#[cfg(test)]
pub(crate) fn build_split(
    key: &identity::Keypair,
    hop_psk: PreSharedKey,
    circuit_psk: Option<PreSharedKey>,
    relay: relay::client::Transport,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BuildError> {
    use futures::future::Either;
    let circuits = relay.and_then(move |socket, _| async move {
        match circuit_psk {
            Some(psk) => PnetConfig::new(psk)
                .handshake(socket)
                .await
                .map(Either::Left),
            None => Ok(Either::Right(socket)),
        }
    });
    let direct = tcp().and_then(move |socket, _| PnetConfig::new(hop_psk).handshake(socket));
    upgrade(key, circuits.or_transport(direct))
}
