//! Leases on the coordinator's side: a holder that let a lease lapse is
//! cooled off, and a worker's word that it still runs a task keeps its
//! lease alive (the scheduler's `batch/lease` decides; DESIGN §7); and
//! the speed a device claims for a job (the scheduler bounds it by what
//! its receipts show), and what its path costs a task.

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::{EngineReq, JobManifest, TaskSet};
use corral_protocol::receipt::EngineKind;

use super::{Coordinator, Job, MAX_REFUSALS};
use crate::clock::Clock;

/// Gives `peer` no task of the job before `until_ms` (it let a lease
/// lapse), keeping a longer cooldown it already has.
pub(super) fn cool_off(job: &mut Job, id: &JobId, peer: PeerKey, until_ms: u64, reason: &str) {
    tracing::warn!(job = %id, peer = %peer.short(), until_ms, %reason, "cooling a device off");
    let until = job.cooldown.entry(peer).or_insert(0);
    *until = (*until).max(until_ms);
    if job.lapses.len() < MAX_REFUSALS || job.lapses.contains_key(&peer) {
        let (count, why) = job.lapses.entry(peer).or_default();
        *count = count.saturating_add(1);
        *why = reason.to_string();
    }
}

impl<C: Clock> Coordinator<C> {
    /// `from` says it still runs these tasks of job `id`: their soft leases
    /// start again (never past the hard bound). Tasks it does not hold are
    /// ignored.
    pub fn on_alive(&mut self, from: PeerKey, id: JobId, indices: &[u32]) {
        let now = self.clock.now_ms();
        if let Some(job) = self.jobs.get_mut(&id).filter(|j| j.is_live()) {
            for &index in indices {
                job.batch.on_alive(index, &from, now);
            }
        }
    }
}

/// The speed and engine name a peer would use for a job. A device with no
/// JIT code for a big module yet (`cold`: above
/// [`QUICK_COMPILE_BYTES`](crate::runtime::QUICK_COMPILE_BYTES), and no
/// receipt from it of a run on the JIT) starts it on its interpreter while
/// the JIT compiles it: under `any` its first tasks are predicted at that
/// speed, so that placement prefers devices that have the code when they
/// finish sooner.
pub(super) fn speed_for(
    engines: &[EngineSpeed],
    req: EngineReq,
    cold: bool,
) -> (u64, &'static str) {
    let pick = |kind: EngineKind| engines.iter().find(|e| e.engine == kind);
    let chosen = match req {
        EngineReq::Jit => pick(EngineKind::Jit),
        EngineReq::Interp => pick(EngineKind::Interp),
        // The worker's own choice: its fastest engine (adverts list it
        // first), or its interpreter while the JIT compiles.
        EngineReq::Any => match pick(EngineKind::Interp) {
            Some(interp) if cold && pick(EngineKind::Jit).is_some() => Some(interp),
            _ => engines.iter().max_by_key(|e| e.ops_per_s),
        },
    };
    chosen.map_or((0, "none"), |e| (e.ops_per_s.max(1), e.engine.name()))
}

/// Round trips a task makes over its worker's path beyond its run: the
/// offer and its answer, the result's notice, the fetch of its output.
pub(super) const TASK_ROUND_TRIPS: u64 = 3;

/// What a relay is taken to carry for one circuit (bytes per ms): about
/// 1 MB/s, a home uplink or a small VPS shared by its circuits. An
/// assumption, not a measure: placement only needs the order of magnitude
/// to keep a batch's last tasks off a path that would crawl.
pub(super) const RELAY_BYTES_PER_MS: u64 = 1000;

/// What moving one task of `manifest` to and from a worker costs beyond
/// a direct path (ms), given its path's round trip when it is reached only
/// through a relay (`None`: a direct path, 0): the task's round trips, and
/// its own bytes (its input or stdin; the module and shipped directories
/// move once per device) over the relay.
pub(super) fn transfer_ms(relayed_rtt_ms: Option<u64>, manifest: &JobManifest) -> u64 {
    let Some(rtt) = relayed_rtt_ms else {
        return 0;
    };
    let input = match &manifest.tasks {
        TaskSet::Inputs(inputs) if !inputs.is_empty() => {
            inputs.iter().map(|i| i.size).sum::<u64>() / inputs.len() as u64
        }
        _ => 0,
    };
    let stdin = manifest.stdin.map_or(0, |s| s.size);
    // At least 1 ms: a relayed path is never free.
    rtt.saturating_mul(TASK_ROUND_TRIPS)
        .saturating_add(input.saturating_add(stdin) / RELAY_BYTES_PER_MS)
        .max(1)
}
