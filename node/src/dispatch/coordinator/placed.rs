//! Results only from placements: a receipt counts only when its sender and
//! attempt name a run this coordinator placed (offered, not refused) that
//! has not given a result. A receipt for any other run — forged by a peer
//! that learned the job's id, replayed for an attempt its sender did not
//! hold — is refused before its files are fetched, and its sender gets no
//! offers of the job for a while and a warning in the log. The placements
//! are kept in the task records, so a worker placed before a restart of
//! the coordinator can still deliver.

#[cfg(test)]
mod tests;

use corral_protocol::ids::{JobId, PeerKey};
use corral_scheduler::batch::{Fit, Unplaced};

use super::Coordinator;
use super::records::{placed_of, task_key};
use crate::clock::Clock;
use crate::store::Records;

/// A peer that sent a result of a run it was not placed on gets no offers
/// of that job for this long.
pub(super) const UNPLACED_COOLDOWN_MS: u64 = 60_000;
/// Most peers resting per job: past it, rests that have ended are dropped
/// (and a new one is not recorded while every rest is still running).
const MAX_COOLDOWNS: usize = 1024;

impl<C: Clock> Coordinator<C> {
    /// Whether a result of task `index` of job `id` from `from` at
    /// `attempt` is wanted: the job runs here, and the run was placed on
    /// `from`, the task is open and `from` gave no result of it yet. An
    /// error when no such run was placed (or `from` refused it).
    pub(super) fn still_wanted(
        &self,
        from: &PeerKey,
        id: &JobId,
        index: u32,
        attempt: u32,
    ) -> Result<bool, Unplaced> {
        let Some(job) = self.jobs.get(id) else {
            return Ok(false);
        };
        let fit = job.batch.check_result(index, from, attempt)?;
        Ok(job.is_live() && fit == Fit::Counts)
    }

    /// A result from `from` of a run of job `id` it was not placed on:
    /// it gets no offers of the job for [`UNPLACED_COOLDOWN_MS`]. The
    /// warning to log, naming the sender and the run.
    pub(super) fn refuse_unplaced(&mut self, from: PeerKey, id: JobId, why: &Unplaced) -> String {
        let now = self.clock.now_ms();
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.cooldown.len() >= MAX_COOLDOWNS {
                job.cooldown.retain(|_, until| *until > now);
            }
            if job.cooldown.len() < MAX_COOLDOWNS || job.cooldown.contains_key(&from) {
                let until = job.cooldown.entry(from).or_insert(0);
                *until = (*until).max(now + UNPLACED_COOLDOWN_MS);
            }
        }
        format!(
            "refused a result of job {id} from {}: {why} (a forged or replayed receipt); \
             no offers of the job to it for {} s",
            from.short(),
            UNPLACED_COOLDOWN_MS / 1000
        )
    }

    /// Keeps task `index`'s record of its placements in step with the
    /// batch (after a refusal), stored when it changed.
    pub(super) fn keep_placements(&mut self, id: JobId, index: u32) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let (Some(task), Some(record)) = (
            job.batch.tasks().get(index as usize),
            job.tasks.get_mut(index as usize),
        ) else {
            return;
        };
        let placed = placed_of(task);
        if placed != record.placed {
            record.placed = placed;
            if let Err(e) = self
                .store
                .put_record(Records::Tasks, &task_key(&id, index), &*record)
            {
                tracing::warn!("cannot store the placements of task {index} of {id}: {e:#}");
            }
        }
    }
}
