//! The limits hold against a real swarm on loopback.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, Swarm};

use super::*;
use crate::identity::{NodeKey, generate_mesh_key};
use crate::net::behaviour::Behaviour;
use crate::net::swarm;

async fn listening(swarm: &mut Swarm<Behaviour>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

#[tokio::test]
async fn one_peer_cannot_open_more_than_a_few_connections() {
    let psk = generate_mesh_key().expect("psk");
    let server_key = NodeKey::generate().expect("key");
    let mut server = swarm::build(&server_key, psk, Default::default()).expect("server");
    let address = listening(&mut server).await;
    let mut rogue =
        swarm::build(&NodeKey::generate().expect("key"), psk, Default::default()).expect("rogue");
    const DIALS: u32 = 8;
    for _ in 0..DIALS {
        rogue
            .dial(
                DialOpts::peer_id(server_key.peer_id())
                    .addresses(vec![address.clone()])
                    .condition(PeerCondition::Always)
                    .build(),
            )
            .expect("dial");
    }
    let (mut open_at_server, mut outcomes) = (0u32, 0u32);
    let deadline = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(deadline);
    // Until every dial has an outcome at the rogue, and a moment more for
    // the server to see the last ones.
    let mut settle: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            event = server.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. } => open_at_server += 1,
                SwarmEvent::ConnectionClosed { .. } => open_at_server -= 1,
                _ => {}
            },
            event = rogue.select_next_some() => match event {
                SwarmEvent::ConnectionEstablished { .. }
                | SwarmEvent::OutgoingConnectionError { .. } => {
                    outcomes += 1;
                    if outcomes == DIALS {
                        settle = Some(Box::pin(tokio::time::sleep(Duration::from_millis(500))));
                    }
                }
                _ => {}
            },
            () = async { settle.as_mut().expect("armed").await }, if settle.is_some() => break,
            () = &mut deadline => break,
        }
    }
    assert_eq!(outcomes, DIALS, "every dial ends one way or the other");
    assert!(
        (1..=MAX_PER_PEER).contains(&open_at_server),
        "{open_at_server} connections from one peer are open at the server"
    );
}

#[test]
fn the_limits_leave_room_to_dial_out() {
    const { assert!(MAX_ESTABLISHED_INCOMING < MAX_ESTABLISHED) };
    const { assert!(MAX_PER_PEER >= 2) };
}
