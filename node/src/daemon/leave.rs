//! Leaving the mesh (DESIGN §9, `corral leave`, SIGTERM, Ctrl-C): the node
//! stops accepting tasks and says so in its advert, lets running tasks
//! finish within the grace period, hands back what is still running then
//! (`HandBack` with `Draining`: it costs those tasks no attempt), gives the
//! hand-backs a moment to arrive, then says goodbye over mDNS and closes
//! its connections.

use std::time::Duration;

use corral_protocol::messages::RejectReason;
use futures::StreamExt;
use libp2p::PeerId;
use tokio::time::Instant;

use super::node::Node;
use super::state::Leaving;

/// How often a draining node looks whether its tasks are done.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How long hand-backs are given to reach their coordinators.
const HAND_BACK_FLUSH: Duration = Duration::from_secs(2);

impl Node {
    /// Starts draining (a second request while draining hands back at once).
    pub(super) fn begin_leave(&mut self, why: &str) {
        let now = Instant::now();
        if let Some(leaving) = &mut self.leaving {
            tracing::info!("{why} while leaving: handing tasks back now");
            leaving.deadline = now;
            return;
        }
        let running = self.worker.running();
        tracing::info!(
            running,
            grace_s = self.config.grace.as_secs_f64(),
            "{why}: leaving the mesh"
        );
        self.policy.drain();
        self.worker.drain();
        self.advertise();
        self.leaving = Some(Leaving {
            deadline: now + self.config.grace,
            handed_back: None,
        });
    }

    /// Whether a drain is under way.
    pub(super) fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// When the loop should look at the drain again.
    pub(super) fn next_leave_step(&self) -> Option<Instant> {
        let leaving = self.leaving?;
        let poll = Instant::now() + DRAIN_POLL;
        Some(match leaving.handed_back {
            Some(at) => poll.min(at + HAND_BACK_FLUSH),
            None => poll.min(leaving.deadline),
        })
    }

    /// Moves the drain on; true once the node may go.
    pub(super) fn leave_step(&mut self) -> bool {
        let Some(leaving) = &mut self.leaving else {
            return false;
        };
        let now = Instant::now();
        if self.worker.idle() {
            return true;
        }
        match leaving.handed_back {
            None if now >= leaving.deadline => {
                let given = self.worker.hand_back_all(RejectReason::Draining);
                tracing::info!(tasks = given, "grace period over: handing tasks back");
                leaving.handed_back = Some(now);
                false
            }
            Some(at) => now >= at + HAND_BACK_FLUSH,
            None => false,
        }
    }

    /// The goodbye: a last advert saying we are draining, the mDNS goodbye,
    /// then every connection closed (peers drop us at once).
    pub(super) async fn leave(&mut self) {
        self.policy.drain();
        self.advertise();
        // Give gossipsub a moment to flush the last advert.
        self.pump(Duration::from_millis(20)).await;
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.stop().await;
        }
        self.pump(Duration::from_millis(200)).await;
        self.coord.write_placements();
        let _ = self.store.flush();
        let _ = std::fs::remove_file(self.config.data_dir.join(crate::control::SOCKET_NAME));
        tracing::info!("left the mesh");
    }

    /// Drives the swarm alone for `time`.
    async fn pump(&mut self, time: Duration) {
        let until = tokio::time::sleep(time);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
    }
}
