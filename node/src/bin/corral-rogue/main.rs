//! `corral-rogue`: a test-only mesh member that speaks the protocol badly on
//! purpose (issue 18). It joins with the mesh key under a fresh identity no
//! device trusts, dials the given peers and misbehaves by `--mode`: `forge`
//! (refuses offers, sends forged, replayed and unasked-for receipts),
//! `silent` (accepts offers and never answers), `flood` (oversize frames,
//! stream floods, big signed manifests, adverts from many fresh keys) or
//! `records` (forged, oversize and untrusted module records, issue 22),
//! `lane` (attacks on the task lane, issue 19).
//! Built only with the `test-hooks` feature; the netns tests drive it.

mod advert;
mod flood;
mod forge;
mod lane;
mod records;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use corral_node::identity::{self, NodeKey};
use corral_node::net::behaviour::BehaviourEvent;
use corral_node::net::swarm;
use corral_protocol::messages::{RejectReason, TaskRequest, TaskResponse};
use futures::StreamExt;
use libp2p::gossipsub::IdentTopic;
use libp2p::request_response::{self, Message};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};

use self::flood::{Flood, RogueBehaviour, RogueEvent};
use self::forge::Forger;

/// How the rogue misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Refuse every offer; send self-signed `FORGED` receipts for every task
    /// of every job offered, replay them, and send some for attempts never
    /// placed.
    Forge,
    /// Accept every offer and never answer, keeping the connection open and
    /// advertising a huge speed.
    Silent,
    /// Oversize frames, many concurrent streams, offers with big signed
    /// manifests, adverts signed by many fresh keys (the victim is a worker).
    Flood,
    /// Gossip hostile module records: a bad signature, a signer that is not
    /// the publisher, oversize bytes, garbage, and a valid record of its
    /// own (refuses offers).
    Records,
    /// Attack the task lane of the first peer it connects to: an oversize
    /// frame, garbage, a flood of requests whose answers it never reads,
    /// too many lanes, a frame cut by a reset; then one honest request.
    Lane,
}

/// A rogue mesh member, for the tests only.
#[derive(Debug, Parser)]
#[command(name = "corral-rogue")]
struct Args {
    /// How to misbehave.
    #[arg(long, value_enum)]
    mode: Mode,
    /// The mesh key, a `swarm.key` file (e.g. a member's `DATA_DIR/swarm.key`).
    #[arg(long)]
    swarm_key: PathBuf,
    /// A peer to dial (repeatable), as `corral up --peer` takes it.
    #[arg(long = "peer", required = true)]
    peers: Vec<Multiaddr>,
    /// The name in its adverts.
    #[arg(long, default_value = "rogue")]
    name: String,
    /// Where to listen.
    #[arg(long, default_value = "/ip4/0.0.0.0/tcp/0")]
    listen: Multiaddr,
    #[command(flatten)]
    flood: flood::FloodArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.swarm_key)
        .with_context(|| format!("--swarm-key {}", args.swarm_key.display()))?;
    let psk = identity::parse_mesh_key(&text)
        .map_err(|e| anyhow::anyhow!("--swarm-key {}: {e}", args.swarm_key.display()))?;
    let key = NodeKey::generate()?;
    let mut swarm = flood::build(&key, psk, args.flood.max_streams())?;
    let topic = swarm::subscribe_capacity(&mut swarm.behaviour_mut().core.gossipsub)?;
    let modules_topic = swarm::subscribe_modules(&mut swarm.behaviour_mut().core.gossipsub)?;
    swarm.listen_on(args.listen.clone())?;
    for peer in &args.peers {
        swarm
            .dial(peer.clone())
            .with_context(|| format!("--peer {peer}"))?;
    }
    say(&format!("PEER_ID {} mode {:?}", key.peer_id(), args.mode));
    let mut rogue = Rogue {
        mode: args.mode,
        advert: advert::Adverts::new(&key, &args.name),
        forger: Forger::new(&key),
        ticks: 0,
        peers: args.peers.clone(),
        flood: Flood::new(&key, &args.flood),
        topic,
        records: records::Records::new(&key)?,
        modules_topic,
        lane_attacked: false,
    };
    if args.mode == Mode::Flood {
        advert::spawn_sybils(psk, args.peers.clone(), args.flood.sybils);
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => rogue.on_tick(&mut swarm),
            event = swarm.select_next_some() => rogue.on_event(&mut swarm, event),
        }
    }
}

/// One line on stdout, flushed (the tests read it from a log file).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

struct Rogue {
    mode: Mode,
    advert: advert::Adverts,
    forger: Forger,
    flood: Flood,
    topic: IdentTopic,
    records: records::Records,
    modules_topic: IdentTopic,
    ticks: u64,
    peers: Vec<Multiaddr>,
    /// The lane attacks started (`lane` mode: once).
    lane_attacked: bool,
}

impl Rogue {
    fn on_tick(&mut self, swarm: &mut Swarm<RogueBehaviour>) {
        self.ticks += 1;
        // Dropped by the victim: come back (every 2 s), as an attacker would.
        if self.ticks.is_multiple_of(4) && swarm.connected_peers().next().is_none() {
            for peer in &self.peers {
                let _ = swarm.dial(peer.clone());
            }
        }
        let data = self.advert.next();
        let _ = swarm
            .behaviour_mut()
            .core
            .gossipsub
            .publish(self.topic.clone(), data);
        match self.mode {
            Mode::Forge => self.forger.replay_due(swarm),
            Mode::Flood => {
                self.flood.top_up(swarm);
                if self.ticks.is_multiple_of(10) {
                    self.flood.report();
                }
                if self.ticks.is_multiple_of(2) {
                    self.flood.report_oversize();
                }
            }
            Mode::Records => {
                let (what, data) = self.records.next();
                let sent = swarm
                    .behaviour_mut()
                    .core
                    .gossipsub
                    .publish(self.modules_topic.clone(), data);
                if self.ticks.is_multiple_of(10) {
                    say(&format!("RECORD {what} {}", sent.is_ok()));
                }
            }
            Mode::Silent | Mode::Lane => {}
        }
    }

    fn on_event(&mut self, swarm: &mut Swarm<RogueBehaviour>, event: SwarmEvent<RogueEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                say(&format!("CONNECTED {peer_id}"));
                if self.mode == Mode::Lane && !self.lane_attacked {
                    self.lane_attacked = true;
                    let control = swarm.behaviour().core.lane.new_control();
                    tokio::spawn(lane::attack(control, peer_id));
                }
                if self.mode == Mode::Flood {
                    self.flood.target(peer_id);
                    self.flood.top_up(swarm);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                say(&format!("DISCONNECTED {peer_id}"));
                self.flood.untarget(&peer_id);
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                say(&format!("DIAL_ERROR {error}"));
            }
            SwarmEvent::Behaviour(RogueEvent::Core(BehaviourEvent::Task(event))) => {
                self.on_task(swarm, event);
            }
            SwarmEvent::Behaviour(RogueEvent::RawTask(event)) => self.flood.on_raw(false, event),
            SwarmEvent::Behaviour(RogueEvent::RawBlob(event)) => self.flood.on_raw(true, event),
            _ => {}
        }
    }

    fn on_task(
        &mut self,
        swarm: &mut Swarm<RogueBehaviour>,
        event: request_response::Event<TaskRequest, TaskResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = self.answer(swarm, peer, request);
                let _ = swarm
                    .behaviour_mut()
                    .core
                    .task
                    .send_response(channel, response);
            }
            request_response::Event::Message {
                message: Message::Response { response, .. },
                ..
            } => {
                say(&format!("ANSWER {response:?}"));
                self.flood.on_offer_answer();
            }
            request_response::Event::OutboundFailure { error, .. } => {
                say(&format!("OUTBOUND_FAILURE {error}"));
                self.flood.on_offer_answer();
            }
            _ => {}
        }
    }

    /// What the rogue answers to a request of the task protocol.
    fn answer(
        &mut self,
        swarm: &mut Swarm<RogueBehaviour>,
        from: PeerId,
        request: TaskRequest,
    ) -> TaskResponse {
        let (manifest, tasks) = match request {
            TaskRequest::Offer {
                manifest,
                index,
                attempt,
            } => (manifest, vec![(index, attempt)]),
            TaskRequest::Offers { manifest, tasks } => (
                manifest,
                tasks.iter().map(|t| (t.index, t.attempt)).collect(),
            ),
            _ => return TaskResponse::Ack,
        };
        say(&format!("OFFERED {} tasks by {from}", tasks.len()));
        let single = tasks.len() == 1;
        match self.mode {
            Mode::Silent => {
                if single {
                    TaskResponse::Accepted
                } else {
                    TaskResponse::Each(vec![None; tasks.len()])
                }
            }
            Mode::Forge | Mode::Flood | Mode::Records | Mode::Lane => {
                if self.mode == Mode::Forge {
                    self.forger.forge(swarm, from, &manifest, &tasks);
                }
                if single {
                    TaskResponse::Rejected(RejectReason::Busy)
                } else {
                    TaskResponse::Each(vec![Some(RejectReason::Busy); tasks.len()])
                }
            }
        }
    }
}
