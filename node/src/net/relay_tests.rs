//! Relays on loopback, real swarms: a member reachable only through a relay
//! is reached through it with the mesh key end to end; a device without the
//! key can use neither the relay nor, through it, a member.

use std::time::Duration;

use futures::StreamExt;
use futures::future::select_all;
use libp2p::multiaddr::Protocol;
use libp2p::pnet::PreSharedKey;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, relay};

use super::Roles;
use crate::identity::{NodeKey, generate_mesh_key};
use crate::net::behaviour::{Behaviour, BehaviourEvent};
use crate::net::{swarm, transport};

type Event = SwarmEvent<BehaviourEvent>;

fn member(psk: PreSharedKey, roles: Roles) -> Swarm<Behaviour> {
    swarm::build(&NodeKey::generate().expect("key"), psk, roles).expect("a swarm")
}

/// A member that reaches others through relays.
const MEMBER: Roles = Roles {
    relay: false,
    beyond_lan: true,
};

/// A device holding `hop_psk` towards relays and `circuit_psk` (or none)
/// on circuits.
fn split(hop_psk: PreSharedKey, circuit_psk: Option<PreSharedKey>) -> Swarm<Behaviour> {
    let key = NodeKey::generate().expect("key").keypair();
    let (relay_transport, relay_client) = relay::client::new(key.public().to_peer_id());
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|k| transport::build_split(k, hop_psk, circuit_psk, relay_transport))
        .expect("a transport")
        .with_behaviour(|k| {
            Behaviour::new(k, relay_client, MEMBER)
                .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_string()))
        })
        .expect("behaviours")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Drives every swarm until `done` says so for one of their events (true),
/// or until `limit` (false).
async fn drive(
    swarms: &mut [&mut Swarm<Behaviour>],
    limit: Duration,
    mut done: impl FnMut(usize, &Event) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = select_all(swarms.iter_mut().map(|s| s.select_next_some()));
        let (event, i) = tokio::select! {
            (event, i, _) = next => (event, i),
            () = tokio::time::sleep_until(deadline) => return false,
        };
        if done(i, &event) {
            return true;
        }
    }
}

/// A relay listening on loopback, with that address as its external one
/// (a relay without an external address refuses every reservation).
async fn relay(psk: PreSharedKey) -> (Swarm<Behaviour>, Multiaddr) {
    relay_with(psk, true).await
}

/// A relay listening on loopback, that address its external one if
/// `external`; returns it and its address naming it.
async fn relay_with(psk: PreSharedKey, external: bool) -> (Swarm<Behaviour>, Multiaddr) {
    let mut relay = member(
        psk,
        Roles {
            relay: true,
            beyond_lan: true,
        },
    );
    relay
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    let address = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = relay.select_next_some().await {
            break address;
        }
    };
    if external {
        relay.add_external_address(address.clone());
    }
    let id = *relay.local_peer_id();
    (relay, address.with(Protocol::P2p(id)))
}

/// A relay and a member reserved at it; returns both and the member's
/// circuit address.
async fn home_at_relay(psk: PreSharedKey) -> (Swarm<Behaviour>, Swarm<Behaviour>, Multiaddr) {
    let (mut relay, relay_addr) = relay(psk).await;
    let mut home = member(psk, MEMBER);
    let circuit = reserve(&mut relay, &mut home, &relay_addr)
        .await
        .expect("the relay accepts the reservation");
    let home_id = *home.local_peer_id();
    (relay, home, circuit_to(&circuit, home_id))
}

/// Reserves a circuit address for `member` at the relay; returns it.
async fn reserve(
    relay: &mut Swarm<Behaviour>,
    member: &mut Swarm<Behaviour>,
    relay_addr: &Multiaddr,
) -> Option<Multiaddr> {
    member
        .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
        .expect("listen on a circuit");
    let mut circuit = None;
    drive(&mut [relay, member], Duration::from_secs(15), |i, event| {
        if let (1, SwarmEvent::NewListenAddr { address, .. }) = (i, event)
            && address.iter().any(|p| p == Protocol::P2pCircuit)
        {
            circuit = Some(address.clone());
            return true;
        }
        false
    })
    .await;
    circuit
}

fn circuit_to(circuit: &Multiaddr, peer: PeerId) -> Multiaddr {
    let mut addr = circuit.clone();
    if !matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
        addr.push(Protocol::P2p(peer));
    }
    addr
}

#[tokio::test]
async fn a_member_reaches_another_through_the_relay_with_the_mesh_key() {
    let psk = generate_mesh_key().expect("psk");
    let (mut relay, mut home, circuit) = home_at_relay(psk).await;
    let home_id = *home.local_peer_id();
    let mut cafe = member(psk, MEMBER);
    cafe.dial(circuit).expect("dial");
    let cafe_id = *cafe.local_peer_id();
    let mut relayed_at = [false; 2];
    let connected = drive(
        &mut [&mut relay, &mut home, &mut cafe],
        Duration::from_secs(15),
        |i, event| {
            if let SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } = event
                && ((i == 1 && *peer_id == cafe_id) || (i == 2 && *peer_id == home_id))
            {
                relayed_at[i - 1] = endpoint.is_relayed();
            }
            relayed_at == [true; 2]
        },
    )
    .await;
    assert!(connected, "home and café connect through the relay");
}

#[tokio::test]
async fn a_device_without_the_mesh_key_cannot_use_the_relay() {
    let psk = generate_mesh_key().expect("psk");
    let (mut relay, relay_addr) = relay(psk).await;
    let mut stranger = member(generate_mesh_key().expect("another psk"), MEMBER);
    stranger
        .listen_on(relay_addr.clone().with(Protocol::P2pCircuit))
        .expect("listen on a circuit");
    // A wrong key garbles the stream rather than failing it: the upgrade
    // ends at its 10 s timeout.
    let mut refused = false;
    let got_in = drive(
        &mut [&mut relay, &mut stranger],
        Duration::from_secs(14),
        |i, event| match (i, event) {
            (0, SwarmEvent::IncomingConnectionError { .. }) => {
                refused = true;
                false
            }
            (_, SwarmEvent::ConnectionEstablished { .. }) => true,
            (1, SwarmEvent::NewListenAddr { .. }) => true,
            _ => false,
        },
    )
    .await;
    assert!(
        !got_in,
        "a keyless device connected to the relay or reserved"
    );
    assert!(refused, "the relay saw the keyless connection fail");
}

/// Whether a device holding the relay's key, with `circuit_psk` (or none)
/// on circuits, reaches a member through the relay.
async fn reaches_through_the_relay(circuit_psk: Option<PreSharedKey>) -> (bool, bool) {
    let psk = generate_mesh_key().expect("psk");
    let (mut relay, mut home, circuit) = home_at_relay(psk).await;
    let home_id = *home.local_peer_id();
    let mut intruder = split(psk, circuit_psk);
    let intruder_id = *intruder.local_peer_id();
    intruder.dial(circuit).expect("dial");
    let mut failed = false;
    let reached = drive(
        &mut [&mut relay, &mut home, &mut intruder],
        Duration::from_secs(14),
        |i, event| match (i, event) {
            (1, SwarmEvent::ConnectionEstablished { peer_id, .. }) => *peer_id == intruder_id,
            (2, SwarmEvent::ConnectionEstablished { peer_id, .. }) => *peer_id == home_id,
            (2, SwarmEvent::OutgoingConnectionError { .. }) => {
                failed = true;
                false
            }
            _ => false,
        },
    )
    .await;
    (reached, failed)
}

#[tokio::test]
async fn a_device_with_the_relays_key_but_not_the_members_cannot_reach_them_through_it() {
    let other = generate_mesh_key().expect("another psk");
    let (reached, failed) = reaches_through_the_relay(Some(other)).await;
    assert!(!reached, "the circuit's ends connected with different keys");
    assert!(failed, "the intruder's dial through the relay failed");
}

#[tokio::test]
async fn a_circuit_without_the_mesh_key_is_refused_by_the_member_at_its_end() {
    // What libp2p's own relay client does: Noise and Yamux on the circuit,
    // no PSK handshake.
    let (reached, failed) = reaches_through_the_relay(None).await;
    assert!(
        !reached,
        "a circuit without the PSK handshake reached a member"
    );
    assert!(failed, "the intruder's dial through the relay failed");
}

#[tokio::test]
async fn a_relay_without_an_address_to_hand_out_refuses_reservations() {
    let psk = generate_mesh_key().expect("psk");
    let (mut relay, relay_addr) = relay_with(psk, false).await;
    let mut home = member(psk, MEMBER);
    assert_eq!(
        reserve(&mut relay, &mut home, &relay_addr).await,
        None,
        "a reservation without addresses to hand out"
    );
}
