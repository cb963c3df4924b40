//! What one policy's run came to: the [`Outcome`] (makespan, job
//! completion times, re-runs, losses, gossip bytes, decisions).

use super::World;
use super::clock::SECOND;
use super::gossip::{PROBE_BYTES, advert_wire_bytes};

/// What one policy did on one scenario.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Policy name.
    pub policy: String,
    /// First arrival to last completion, seconds.
    pub makespan_s: f64,
    /// Per job: completion minus arrival, seconds (arrival order).
    pub jct_s: Vec<f64>,
    /// Runs started beyond one per task (lost, handed back, duplicated).
    pub tasks_rerun: u64,
    /// Tasks without a result at the end.
    pub tasks_lost: u64,
    /// Capacity gossip and probes sent, bytes per device per second.
    pub gossip_bytes_per_device_s: f64,
    /// Placements the policy made.
    pub decisions: u64,
    /// Wall time spent deciding (not deterministic: not in the CSV).
    pub decide_wall_s: f64,
}

impl World<'_> {
    /// The figures of the run so far (called at its end).
    pub(super) fn outcome(&self, name: &str) -> Outcome {
        let first = self.workload.arrivals.first().copied().unwrap_or(0);
        let last = self
            .jobs
            .iter()
            .filter_map(|j| j.finished)
            .max()
            .unwrap_or(self.now);
        let tasks: u64 = self.workload.sizes.iter().map(|s| s.len() as u64).sum();
        let lost: u64 = self
            .jobs
            .iter()
            .map(|j| {
                u64::from(j.given_up)
                    + if j.finished.is_none() {
                        u64::from(j.remaining)
                    } else {
                        0
                    }
            })
            .sum::<u64>()
            + self.workload.sizes[self.jobs.len()..]
                .iter()
                .map(|s| s.len() as u64)
                .sum::<u64>();
        let simulated = (last.max(first) - first) as f64 / SECOND;
        let n = self.fleet.speed.len() as f64;
        let span = (self.now.max(1)) as f64 / SECOND;
        // Gossipsub floods: every device sends every advert on to
        // `mesh_degree` others (fewer in a smaller mesh), so each device sends
        // all adverts D times.
        let degree = f64::from(self.scenario.gossip.mesh_degree).min((n - 1.0).max(0.0));
        let gossip = self.adverts_sent as f64 * degree * advert_wire_bytes() as f64;
        let probes = self.probes as f64 * PROBE_BYTES as f64 / n;
        let done_tasks = tasks - lost;
        Outcome {
            policy: name.to_string(),
            makespan_s: simulated,
            jct_s: self
                .jobs
                .iter()
                .map(|j| {
                    j.finished
                        .map_or(f64::INFINITY, |f| (f - j.arrival) as f64 / SECOND)
                })
                .collect(),
            tasks_rerun: self.starts.saturating_sub(done_tasks),
            tasks_lost: lost,
            gossip_bytes_per_device_s: (gossip + probes) / span,
            decisions: self.decisions,
            decide_wall_s: self.decide_wall.as_secs_f64(),
        }
    }
}
