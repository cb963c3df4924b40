//! What this device tells the mesh about itself (DESIGN §5) and how its
//! owner's policy moves (DESIGN §8): the capacity advert gossiped every
//! second and at once on a change, the speeds it claims, and the grace
//! period once the owner is back.

use corral_protocol::capacity::{CapacityAdvert, EngineSpeed, OwnerState};
use corral_protocol::codec;
use corral_protocol::messages::RejectReason;
use libp2p::gossipsub;

use super::node::Node;
use super::probe::Reading;
use crate::capacity::Share;

impl Node {
    fn advert(&mut self) -> CapacityAdvert {
        self.seq += 1;
        let state = self.policy.state();
        let free = if state == OwnerState::Idle {
            self.worker.slots_free()
        } else {
            0
        };
        let free_memory_mib = match self.config.max_memory {
            Some(max) => self
                .reading
                .free_memory_mib
                .min(u32::try_from(max / (1024 * 1024)).unwrap_or(u32::MAX)),
            None => self.reading.free_memory_mib,
        };
        // `running()` counts every task held; the advert tells the queued
        // ones apart.
        let queued = self.worker.queued();
        let running = self.worker.running().saturating_sub(queued);
        CapacityAdvert {
            peer: self.me,
            name: self.name.clone(),
            seq: self.seq,
            arch: std::env::consts::ARCH.into(),
            os: std::env::consts::OS.into(),
            engines: self.engine_speeds(),
            slots_total: self.config.slots,
            slots_free: free,
            cores: std::thread::available_parallelism()
                .map_or(1, |n| u16::try_from(n.get()).unwrap_or(u16::MAX)),
            host_load_pct: self.reading.host.load_pct.round().clamp(0.0, 100.0) as u8,
            free_memory_mib,
            on_battery: self.reading.host.on_battery,
            state,
            running: u16::try_from(running).unwrap_or(u16::MAX),
            queued: u16::try_from(queued).unwrap_or(u16::MAX),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The engines' speeds per slot, as advertised: one core's calibrated
    /// speed times the share of a core a slot gets — as tasks run here have
    /// shown it, or as read at start-up until they do.
    pub(super) fn engine_speeds(&self) -> Vec<EngineSpeed> {
        let factor = self.reading.run_share.unwrap_or(self.config.slot_share);
        self.config
            .engines
            .iter()
            .map(|e| EngineSpeed {
                engine: e.engine,
                ops_per_s: ((e.ops_per_s as f64) * factor).max(1.0) as u64,
            })
            .collect()
    }

    /// A new reading from the probe: the owner's policy follows it, and a
    /// changed share of a core is logged (the next advert carries it).
    pub(super) fn on_reading(&mut self, reading: Reading) {
        self.reading = reading;
        if let Some(share) = reading.run_share
            && (share - self.share_told).abs() > 0.25 * self.share_told
        {
            tracing::info!(
                share = format!("{share:.2}"),
                "tasks here now get this share of a core per slot; speeds advertised for it"
            );
            self.share_told = share;
        }
        let before = self.policy.state();
        if self.policy.update(reading.host) != before {
            tracing::info!(state = self.policy.state().name(), "owner state changed");
            self.advertise();
        }
        self.owner_grace();
    }

    /// DESIGN §8: once the owner is back, tasks already running may finish
    /// within the grace period; what is left then goes back to its
    /// coordinators (not the tasks' fault: it costs them no attempt).
    fn owner_grace(&mut self) {
        if self.policy.state() != OwnerState::Busy || self.config.share != Share::Idle {
            self.busy_since = None;
            return;
        }
        let since = *self.busy_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= self.config.grace {
            let given = self.worker.hand_back_all(RejectReason::OwnerBusy);
            if given > 0 {
                tracing::info!(
                    tasks = given,
                    grace_s = self.config.grace.as_secs_f64(),
                    "the owner is back and the grace period is over: handing tasks back"
                );
            }
        }
    }

    /// Gossips the advert.
    pub(super) fn advertise(&mut self) {
        let advert = self.advert();
        let bytes = codec::encode(&advert);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!("advert not published: {e}"),
        }
    }
}
