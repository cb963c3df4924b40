//! Results only from placements: a receipt counts only when its sender and
//! attempt name a run this coordinator placed (offered, not refused) that
//! has not given a result. A receipt for any other run — forged by a peer
//! that learned the job's id, replayed for an attempt its sender did not
//! hold — is refused before its files are fetched, and its sender gets no
//! offers of the job for a while and a warning in the log. The placements
//! are kept in the task records, so a worker placed before a restart of
//! the coordinator can still deliver. A result of a run whose offer has
//! not been answered yet is not taken yet: a worker answers an offer before
//! it runs the task, so only a peer that means to refuse it (and forge its
//! result) sends one that early; an honest worker that raced its own
//! answer sends it again, as it does for any transient refusal.

#[cfg(test)]
mod tests;

use corral_protocol::ids::{JobId, PeerKey};
use corral_scheduler::batch::{Fit, Unplaced};

use super::Coordinator;
use super::records::placed_of;
use crate::clock::Clock;

/// A peer that sent a result of a run it was not placed on gets no offers
/// of that job for this long.
pub(super) const UNPLACED_COOLDOWN_MS: u64 = 60_000;
/// How long after a job is resumed a result of a run it does not know of,
/// at an attempt past those it knows, rests nobody (see
/// [`Coordinator::refuse_unplaced`]).
pub(super) const RESUMED_GRACE_MS: u64 = 30_000;
/// Most peers resting per job: past it, rests that have ended are dropped
/// (and a new one is not recorded while every rest is still running).
const MAX_COOLDOWNS: usize = 1024;

/// Why a result is not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unwanted {
    /// Forged, replayed, badly signed: refused (`Malformed`), and its
    /// sender blamed.
    #[error("{0}")]
    Refused(String),
    /// Its run's offer is not answered yet: not taken now (`Busy`), so its
    /// worker keeps it and sends it again.
    #[error("{0}")]
    NotYet(String),
}

impl From<Unwanted> for String {
    fn from(u: Unwanted) -> Self {
        u.to_string()
    }
}

impl<C: Clock> Coordinator<C> {
    /// `peer` took the offer of task `index` of job `id`: its result may
    /// come now.
    pub fn on_accepted(&mut self, id: JobId, index: u32, peer: PeerKey) {
        if let Some(job) = self.jobs.get_mut(&id) {
            job.awaiting.remove(&(index, peer));
        }
    }

    /// Whether the offer of task `index` of job `id` to `peer` waits for
    /// its answer.
    pub(super) fn awaits_answer(&self, peer: &PeerKey, id: &JobId, index: u32) -> bool {
        self.jobs
            .get(id)
            .is_some_and(|job| job.awaiting.contains(&(index, *peer)))
    }

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
    /// warning to log, naming the sender and the run. Soon after this
    /// process resumed the job, a run at an attempt past any it knows of
    /// may be one whose placement it had not written when its last process
    /// ended without stopping (placements are written within a quarter
    /// second, see `Job::unwritten`): refused all the same, its sender not
    /// rested.
    pub(super) fn refuse_unplaced(&mut self, from: PeerKey, id: JobId, why: &Unplaced) -> String {
        let now = self.clock.now_ms();
        if let Some(job) = self.jobs.get(&id)
            && let Unplaced::NotPlaced { index, attempt, .. } = why
            && let Some(resumed) = &job.resumed
            && now < resumed.at_ms.saturating_add(RESUMED_GRACE_MS)
            && resumed
                .attempts
                .get(*index as usize)
                .is_some_and(|known| attempt > known)
        {
            return format!(
                "refused a result of job {id} from {}: {why} (placed, perhaps, just before this \
                 coordinator's last process ended: it runs again; {} is not rested)",
                from.short(),
                from.short()
            );
        }
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
            if let Err(e) = job.write_task(&self.store, index) {
                tracing::warn!("cannot store the placements of task {index} of {id}: {e:#}");
            }
        }
    }
}
