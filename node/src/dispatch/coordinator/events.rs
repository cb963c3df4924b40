//! What the coordinator hears back about its tasks: refusals, devices lost,
//! runs handed back, and results (checked, stored, counted).

use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::RejectReason;
use corral_protocol::receipt::TaskReceipt;
use corral_scheduler::ahead::SHORT_TASK_MS;
use corral_scheduler::batch::{Decision, TaskState};

use super::records::{RunRecord, TaskRunState, task_key};
use super::{
    Action, BUSY_COOLDOWN_MS, Coordinator, LOST_COOLDOWN_MS, MAX_REFUSALS, MAX_WARM, result_digest,
};
use crate::clock::Clock;
use crate::job::report::Refusal;
use crate::store::Records;

impl<C: Clock> Coordinator<C> {
    /// `peer` refused a task for `reason`. A lasting reason (its trust
    /// list, engines or limits) keeps the job from it for good; a transient
    /// one (full, its owner at it, leaving) costs the task no attempt and
    /// rests the device a moment.
    pub fn on_rejected(
        &mut self,
        id: JobId,
        index: u32,
        peer: PeerKey,
        name: &str,
        reason: RejectReason,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        if reason.is_lasting() {
            job.excluded.insert(peer);
        }
        let reason_code = reason;
        let reason = reason.describe();
        if let Some(r) = job
            .refusals
            .iter_mut()
            .find(|r| r.peer == name && r.reason == reason)
        {
            r.count += 1;
        } else if job.refusals.len() < MAX_REFUSALS {
            job.refusals.push(Refusal {
                peer: name.to_string(),
                reason: reason.to_string(),
                count: 1,
            });
        }
        let decisions = if reason_code.is_transient() {
            // Not its fault and not the task's: try it again a little later.
            job.cooldown
                .insert(peer, self.clock.now_ms() + BUSY_COOLDOWN_MS);
            job.batch.on_busy(index, &peer, reason)
        } else {
            job.batch.on_rejected(index, &peer, reason)
        };
        self.after_release(id, index, decisions)
    }

    /// `peer` could not be reached with task `index`: it went away, which
    /// is not the task's fault (see `Batch::on_lost`).
    pub fn on_lost(&mut self, id: JobId, index: u32, peer: PeerKey, reason: &str) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        job.cooldown
            .insert(peer, self.clock.now_ms() + LOST_COOLDOWN_MS);
        let decisions = job.batch.on_lost(index, &peer, reason);
        self.after_release(id, index, decisions)
    }

    /// A task could not run on `peer` (handed back, output lost).
    pub fn on_failed(&mut self, id: JobId, index: u32, peer: PeerKey, reason: &str) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        let decisions = job.batch.on_failed(index, &peer, reason);
        self.after_release(id, index, decisions)
    }

    fn after_release(&mut self, id: JobId, index: u32, decisions: Vec<Decision>) -> Vec<Action> {
        if let Some(job) = self.jobs.get_mut(&id)
            && let Some(t) = job.tasks.get_mut(index as usize)
            && t.state == TaskRunState::Running
            && matches!(job.batch.tasks()[index as usize].state, TaskState::Queued)
        {
            t.state = TaskRunState::Queued;
        }
        self.apply(id, decisions)
    }

    /// `peer` left the mesh: its tasks go back to the queue.
    pub fn on_peer_lost(&mut self, peer: &PeerKey) -> Vec<Action> {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        let mut actions = Vec::new();
        for id in ids {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if !job.is_live() {
                continue;
            }
            let decisions = job.batch.on_peer_lost(peer);
            for (i, t) in job.tasks.iter_mut().enumerate() {
                if t.state == TaskRunState::Running
                    && job.batch.tasks()[i].state == TaskState::Queued
                {
                    t.state = TaskRunState::Queued;
                }
            }
            actions.extend(self.apply(id, decisions));
        }
        actions
    }

    /// Checks results before their files are fetched, one answer each in
    /// order: `Some` with the receipt when it is wanted, `None` when it can
    /// be acknowledged and dropped (a job this node does not coordinate, a
    /// finished task). The signatures of a batch are checked together.
    pub fn wants_results(
        &self,
        from: &PeerKey,
        signed: &[Signed<TaskReceipt>],
    ) -> Vec<Result<Option<TaskReceipt>, String>> {
        Signed::verify_all_from(signed, from, self.clock.now_ms())
            .into_iter()
            .map(|verified| {
                let receipt =
                    verified.map_err(|e| format!("bad receipt from {}: {e}", from.short()))?;
                Ok(self
                    .still_wanted(from, &receipt.job, receipt.index)
                    .then_some(receipt))
            })
            .collect()
    }

    /// Whether a result of task `index` of job `id` from `from` is wanted:
    /// the job runs here, and the task is neither finished nor holding a
    /// result of that device already.
    pub(super) fn still_wanted(&self, from: &PeerKey, id: &JobId, index: u32) -> bool {
        self.jobs.get(id).is_some_and(|job| {
            job.is_live()
                && job.batch.tasks().get(index as usize).is_some_and(|t| {
                    !matches!(t.state, TaskState::Done(_) | TaskState::Failed(_))
                        && !t.results.iter().any(|(p, _)| p == from)
                })
        })
    }

    /// Output bound for the files of a result of `job`.
    pub fn file_limit(&self, job: &JobId) -> u64 {
        self.jobs.get(job).map_or(0, |j| {
            corral_protocol::tree::MAX_TREE_BYTES.min(j.manifest.limits.output_bytes.max(1) * 1024)
        })
    }

    /// A result whose output is in the blob store: its files, and its
    /// stdout and stderr under the hashes its receipt gives (the daemon
    /// stores and checks them off its event loop before calling this).
    pub fn on_result(&mut self, from: PeerKey, name: &str, receipt: TaskReceipt) -> Vec<Action> {
        let id = receipt.job;
        let index = receipt.index;
        // Another result of the task may have been taken (or the job
        // cancelled) while this one's files were fetched.
        if !self.still_wanted(&from, &id, index) {
            return Vec::new();
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        // Stored and hash-checked by the caller, off the event loop.
        let (stdout, stderr) = (receipt.stdout.hash, receipt.stderr.hash);
        let digest = result_digest(&receipt);
        job.seq += 1;
        job.results_seen = job.results_seen.saturating_add(1);
        if receipt.duration_ms < SHORT_TASK_MS {
            job.short_results = job.short_results.saturating_add(1);
            job.short_ms = job.short_ms.saturating_add(receipt.duration_ms);
        }
        if self.warm.len() >= MAX_WARM {
            self.warm.clear();
        }
        self.warm.insert((from, job.manifest.module_hash));
        job.batch.observe_run(&from, receipt.duration_ms);
        let decisions = job.batch.on_result(index, &from, digest);
        let task = &job.batch.tasks()[index as usize];
        let Some(record) = job.tasks.get_mut(index as usize) else {
            return Vec::new();
        };
        record.runs.push(RunRecord {
            peer: from,
            name: name.to_string(),
            arch: receipt.arch.clone(),
            engine: receipt.engine,
            attempt: receipt.attempt,
            status: receipt.status.clone(),
            duration_ms: receipt.duration_ms,
            stdout,
            stderr,
            truncated: receipt.stdout.truncated || receipt.stderr.truncated,
            files: receipt.files.clone(),
            digest,
        });
        record.attempts = task.attempts;
        record.mismatch = task.mismatch;
        match &task.state {
            TaskState::Done(winner) => {
                record.state = TaskRunState::Done;
                record.winner = record.runs.iter().position(|r| &r.peer == winner);
            }
            TaskState::Failed(why) => {
                record.state = TaskRunState::Failed;
                record.reason = Some(why.clone());
            }
            _ => {}
        }
        if let Err(e) = self
            .store
            .put_record(Records::Tasks, &task_key(&id, index), &*record)
        {
            tracing::warn!("cannot store the result of task {index} of {id}: {e:#}");
        }
        self.apply(id, decisions)
    }
}
