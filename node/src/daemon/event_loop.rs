//! The event loop: it waits on every source of events at once and hands
//! each event to its handler. It does no work of its own — no disk, no
//! hashing, no `/proc` — so adverts and keep-alives never wait behind a
//! slow read. Local work comes first (`biased;`): the CLI's requests, the
//! worker's finished tasks and results ready to be taken, then timers,
//! discovery, and only then new events from the network.

use std::time::Duration;

use futures::StreamExt;
use libp2p::gossipsub;
use libp2p::swarm::SwarmEvent;
use tokio::sync::mpsc;

use super::node::Node;
use super::probe::Reading;
use super::state::{Durable, ResultReady, Served};
use crate::clock::now_ms;
use crate::control::Request;
use crate::control::server::Call;
use crate::dispatch::NetCmd;
use crate::dispatch::worker::WorkerEvent;
use crate::net::behaviour::BehaviourEvent;
use crate::net::discovery::Found;

/// The receiving ends of the loop's channels, every one bounded.
pub(super) struct Inputs {
    pub(super) calls: mpsc::Receiver<Call>,
    pub(super) found: mpsc::Receiver<Found>,
    pub(super) net_rx: mpsc::Receiver<NetCmd>,
    pub(super) worker_events: mpsc::Receiver<WorkerEvent>,
    pub(super) results: mpsc::Receiver<ResultReady>,
    pub(super) served: mpsc::Receiver<Served>,
    pub(super) durable: mpsc::Receiver<Durable>,
    pub(super) verified: mpsc::Receiver<super::state::OfferVerified>,
    pub(super) readings: mpsc::Receiver<Reading>,
    pub(super) lanes: mpsc::Receiver<crate::net::lane::LaneEvent>,
}

/// Runs until the node has left: `corral leave`, SIGTERM or Ctrl-C start
/// the drain ([`Node::begin_leave`]), and the loop goes on serving until
/// the drain is over.
pub(super) async fn run(node: &mut Node, mut inputs: Inputs) -> anyhow::Result<()> {
    let mut advert_timer = tokio::time::interval(super::node::ADVERT_INTERVAL);
    let mut expiry_timer = tokio::time::interval(Duration::from_millis(250));
    let mut redial_timer = tokio::time::interval(Duration::from_secs(1));
    let mut schedule_timer = tokio::time::interval(Duration::from_millis(500));
    let mut sweep_timer = tokio::time::interval(super::sweep::SWEEP_EVERY);
    let mut announce_timer = tokio::time::interval(super::modules::ANNOUNCE_TICK);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let far = || tokio::time::Instant::now() + Duration::from_secs(3600);

    loop {
        let watch_deadline = node.watchers.next_deadline().unwrap_or_else(far);
        let leave_deadline = node.next_leave_step().unwrap_or_else(far);
        tokio::select! {
            biased;
            Some((request, reply)) = inputs.calls.recv() => {
                if let Request::Watch { id, seq, wait_ms, summary } = request {
                    node.watch(&id, seq, wait_ms, summary, reply);
                } else {
                    let leave = request == Request::Leave;
                    node.control(request, reply);
                    if leave {
                        node.begin_leave("corral leave");
                    }
                }
            }
            _ = sigterm.recv() => node.begin_leave("SIGTERM"),
            _ = tokio::signal::ctrl_c() => node.begin_leave("interrupted"),
            Some(event) = inputs.worker_events.recv() => {
                node.worker.on_event(event);
                node.dirty = true;
            }
            Some(ready) = inputs.results.recv() => node.on_result_ready(ready),
            Some(served) = inputs.served.recv() => node.on_served(served),
            Some(done) = inputs.durable.recv() => node.respond(done.reply, done.response),
            Some(verified) = inputs.verified.recv() => node.on_offer_verified(verified),
            Some(cmd) = inputs.net_rx.recv() => node.on_net_cmd(cmd),
            Some(event) = inputs.lanes.recv() => node.on_lane_event(event),
            Some(reading) = inputs.readings.recv() => node.on_reading(reading),
            _ = advert_timer.tick() => node.advertise(),
            _ = expiry_timer.tick() => {
                for change in node.view.expire(now_ms()) {
                    node.on_change(change);
                }
                node.close_redundant_circuits();
                node.expire_lane_calls();
                node.coord.write_placements();
            }
            _ = redial_timer.tick() => {
                node.dialer.pump(&mut node.swarm);
                node.reserve_at_relays();
                node.rendezvous_tick();
            }
            _ = sweep_timer.tick() => node.sweep_cache(),
            _ = announce_timer.tick() => node.announce_modules(),
            _ = schedule_timer.tick() => node.dirty |= node.coord.has_live_jobs(),
            _ = tokio::time::sleep_until(watch_deadline), if !node.watchers.is_empty() => {}
            _ = tokio::time::sleep_until(leave_deadline), if node.is_leaving() => {}
            Some(found) = inputs.found.recv() => node.on_found(found),
            event = node.swarm.select_next_some() => node.on_swarm(event),
        }
        if node.dirty {
            node.dirty = false;
            node.reschedule();
        }
        if !node.watchers.is_empty() {
            node.wake_watchers();
        }
        if node.leave_step() {
            return Ok(());
        }
    }
}

impl Node {
    /// Routes a swarm event to its handler.
    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => self.on_listening(address),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connected(
                peer_id,
                connection_id,
                endpoint.get_remote_address().clone(),
                endpoint.is_relayed(),
            ),
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_dial_failed(connection_id, peer_id, &error),
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Most often a device with another mesh key.
                tracing::info!(%send_back_addr, "incoming connection failed (another mesh key?): {error}");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.paths.closed(connection_id);
                self.on_disconnected(peer_id, endpoint.is_relayed());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.on_gossip(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Task(event)) => self.on_task_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(event)) => self.on_blob_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(
                libp2p::identify::Event::Received { peer_id, info, .. },
            )) => self.on_identified(peer_id, info),
            SwarmEvent::ListenerClosed {
                listener_id,
                addresses,
                reason,
            } => {
                self.listen_addrs.retain(|a| !addresses.contains(a));
                self.on_listener_closed(listener_id, reason.err().map(|e| e.to_string()));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
                self.paths.set_local(crate::net::paths::Subnet::here());
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!("a listener failed: {error}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(event)) => {
                self.on_relay_client(event)
            }
            SwarmEvent::Behaviour(BehaviourEvent::Rendezvous(event)) => self.on_rendezvous(event),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(libp2p::relay::Event::CircuitClosed {
                src_peer_id,
                dst_peer_id,
                error: Some(e),
            })) => {
                // Its limits reached, or an end gone: the ends dial again.
                tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relay: a circuit was cut: {e}");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(event)) => {
                tracing::debug!(?event, "relay");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(event)) => self.on_punch(event),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                connection,
                result: Ok(rtt),
                ..
            })) => self.paths.rtt(connection, rtt),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(libp2p::ping::Event {
                peer,
                connection,
                result: Err(e),
            })) if self.paths.ping_failed(connection) => {
                tracing::info!(%peer, "pings go unanswered: closing the connection ({e})");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(event)) => {
                tracing::debug!(addr = %event.tested_addr, ok = event.result.is_ok(), "reachability probe");
            }
            SwarmEvent::ExternalAddrConfirmed { address } => {
                tracing::info!(%address, "reachable from outside at");
            }
            SwarmEvent::ExternalAddrExpired { address } => {
                tracing::info!(%address, "no longer reachable from outside at");
            }
            _ => {}
        }
    }
}
