//! What the coordinator hears back about its tasks: refusals, devices lost,
//! runs handed back, and results (checked, stored, counted).

use corral_protocol::envelope::{OpenedReceipt, Signed};
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::RejectReason;
use corral_protocol::receipt::{EngineKind, ReceiptBatch, TaskReceipt};
use corral_scheduler::ahead::SHORT_TASK_MS;
use corral_scheduler::batch::{Decision, End, Outcome, Task, TaskState};

use super::placed::Unwanted;
use super::records::{RunRecord, TaskRecord, TaskRunState, placed_of};
use super::{
    Action, BUSY_COOLDOWN_MS, Coordinator, LOST_COOLDOWN_MS, MAX_REFUSALS, MAX_WARM, result_digest,
};
use crate::clock::Clock;
use crate::job::report::Refusal;

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
        job.awaiting.remove(&(index, peer));
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
        // A refused run gives no result, even after a restart.
        self.keep_placements(id, index);
        self.after_release(id, index, decisions)
    }

    /// `peer` could not be reached with task `index`: it went away, which
    /// is not the task's fault (see `Batch::on_lost`).
    pub fn on_lost(&mut self, id: JobId, index: u32, peer: PeerKey, reason: &str) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        job.awaiting.remove(&(index, peer));
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
    /// be acknowledged and dropped (a job this node does not coordinate or
    /// that ended, a finished task, a result sent again), an error to log
    /// when it is bad: its signature, or a run this node never placed on
    /// its sender (forged, or replayed for another attempt; the sender is
    /// rested, see `placed.rs`). The signatures of a batch are checked
    /// together.
    pub fn wants_results(
        &mut self,
        from: &PeerKey,
        signed: &[Signed<TaskReceipt>],
    ) -> Vec<Result<Option<TaskReceipt>, Unwanted>> {
        let opened = Signed::verify_all_from(signed, from, self.clock.now_ms());
        self.wants_opened(from, opened)
    }

    /// As [`Coordinator::wants_results`], for receipts whose signatures
    /// were checked already (a batch under one signature, opened by
    /// [`Coordinator::open_batch`]), each with what its check found.
    pub fn wants_opened(
        &mut self,
        from: &PeerKey,
        opened: Vec<OpenedReceipt>,
    ) -> Vec<Result<Option<TaskReceipt>, Unwanted>> {
        let mut answers = Vec::with_capacity(opened.len());
        for verified in opened {
            let receipt = match verified {
                Ok(receipt) => receipt,
                Err(e) => {
                    let why = format!("bad receipt from {}: {e}", from.short());
                    answers.push(Err(Unwanted::Refused(why)));
                    continue;
                }
            };
            answers.push(
                match self.still_wanted(from, &receipt.job, receipt.index, receipt.attempt) {
                    Ok(true) if self.awaits_answer(from, &receipt.job, receipt.index) => {
                        Err(Unwanted::NotYet(format!(
                            "a result of task {} of job {} from {} came before its answer \
                             to the offer: not taken yet",
                            receipt.index,
                            receipt.job,
                            from.short()
                        )))
                    }
                    Ok(wanted) => Ok(wanted.then_some(receipt)),
                    Err(unplaced) => Err(Unwanted::Refused(self.refuse_unplaced(
                        *from,
                        receipt.job,
                        &unplaced,
                    ))),
                },
            );
        }
        answers
    }

    /// The receipts of a batch `from` signed once, each with what its own
    /// check found; or why the batch as a whole is refused (its signature,
    /// its signer, its size), to be logged.
    pub fn open_batch(
        &self,
        from: &PeerKey,
        batch: &Signed<ReceiptBatch>,
    ) -> Result<Vec<OpenedReceipt>, String> {
        batch
            .open_receipts_from(from, self.clock.now_ms())
            .map_err(|e| format!("bad batch of receipts from {}: {e}", from.short()))
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
    /// The run is written to the store before anything is counted: a
    /// result that cannot be written is not taken (an error, so that it is
    /// not acknowledged and its worker sends it again). The caller flushes
    /// the store before it acknowledges.
    pub fn on_result(
        &mut self,
        from: PeerKey,
        name: &str,
        receipt: TaskReceipt,
    ) -> Result<Vec<Action>, ResultNotStored> {
        let id = receipt.job;
        let index = receipt.index;
        // Another result of the task may have been taken (or the job
        // cancelled) while this one's files were fetched; and a caller
        // that did not ask `wants_results` first is checked here.
        match self.still_wanted(&from, &id, index, receipt.attempt) {
            Ok(true) => {}
            Ok(false) => return Ok(Vec::new()),
            Err(unplaced) => {
                let why = self.refuse_unplaced(from, id, &unplaced);
                tracing::warn!("{why}");
                return Ok(Vec::new());
            }
        }
        let Some(job) = self.jobs.get_mut(&id) else {
            return Ok(Vec::new());
        };
        // Stored and hash-checked by the caller, off the event loop.
        let (stdout, stderr) = (receipt.stdout.hash, receipt.stderr.hash);
        let digest = result_digest(&receipt);
        let run = RunRecord {
            peer: from,
            name: name.to_string(),
            arch: receipt.arch,
            engine: receipt.engine,
            attempt: receipt.attempt,
            status: receipt.status,
            duration_ms: receipt.duration_ms,
            stdout,
            stderr,
            truncated: receipt.stdout.truncated || receipt.stderr.truncated,
            files: receipt.files,
            digest,
        };
        // What the result makes of the task, known before it is taken, so
        // that the record is written once, as the result leaves it.
        let outcome = job
            .batch
            .outcome_of(index, &from, receipt.attempt, digest)
            .ok()
            .flatten();
        let Some(record) = job.tasks.get_mut(index as usize) else {
            return Ok(Vec::new());
        };
        // Written before anything is counted: a restart replays the runs
        // of a task that is not finished, so a task left open loses
        // nothing. A record that cannot be written is put back as it was:
        // nothing is counted.
        let before = (
            record.state,
            record.winner,
            record.reason.clone(),
            record.mismatch,
        );
        record.runs.push(run);
        if let Some(outcome) = &outcome {
            settle(record, outcome);
        }
        if let Err(e) = job.write_task(&self.store, index) {
            let record = &mut job.tasks[index as usize];
            record.runs.pop();
            (record.state, record.winner, record.reason, record.mismatch) = before;
            return Err(ResultNotStored {
                job: id,
                index,
                why: format!("{e:#}"),
            });
        }
        job.seq += 1;
        job.results_seen = job.results_seen.saturating_add(1);
        if receipt.duration_ms < SHORT_TASK_MS {
            job.short_results = job.short_results.saturating_add(1);
            job.short_ms = job.short_ms.saturating_add(receipt.duration_ms);
        }
        if self.warm.len() >= MAX_WARM {
            self.warm.clear();
        }
        self.warm.insert(
            (from, job.manifest.module_hash),
            receipt.engine == EngineKind::Jit,
        );
        job.batch.observe_run(&from, receipt.duration_ms);
        // Checked above: the run was placed and its result counts.
        let decisions = job
            .batch
            .on_result(index, &from, receipt.attempt, digest)
            .unwrap_or_default();
        // Written again only if the task ended otherwise than foreseen
        // (its placements, or attempts, moved with the result).
        let task = &job.batch.tasks()[index as usize];
        if sync_record(&mut job.tasks[index as usize], task)
            && let Err(e) = job.write_task(&self.store, index)
        {
            // The run itself is written (above); a restart replays it.
            tracing::warn!("cannot store the state of task {index} of {id}: {e:#}");
        }
        Ok(self.apply(id, decisions))
    }
}

/// A result whose run could not be written to the store: it was not
/// taken (nothing counted), and must not be acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("cannot store the result of task {index} of job {job}: {why}")]
pub struct ResultNotStored {
    /// The job.
    pub job: JobId,
    /// The task.
    pub index: u32,
    /// What the store said.
    pub why: String,
}

/// A task's record as `outcome` leaves it (its run already in it).
fn settle(record: &mut TaskRecord, outcome: &Outcome) {
    record.mismatch |= outcome.mismatch;
    match &outcome.end {
        End::Open => {}
        End::Done(winner) => finish(record, Ok(winner)),
        End::Failed(why) | End::GaveUp(why) => finish(record, Err(why)),
    }
}

/// Brings `record` in step with the scheduler's `task` after a result;
/// whether anything changed.
fn sync_record(record: &mut TaskRecord, task: &Task) -> bool {
    let placed = placed_of(task);
    let before = (
        record.attempts,
        record.mismatch,
        record.state,
        record.winner,
        record.reason.clone(),
    );
    let changed_placed = record.placed != placed;
    record.attempts = record.attempts.max(task.attempts);
    record.mismatch = task.mismatch;
    record.placed = placed;
    match &task.state {
        TaskState::Done(winner) => finish(record, Ok(winner)),
        TaskState::Failed(why) => finish(record, Err(why)),
        _ => {}
    }
    changed_placed
        || before
            != (
                record.attempts,
                record.mismatch,
                record.state,
                record.winner,
                record.reason.clone(),
            )
}

/// Marks `record` done (its winner's run kept) or failed (and why).
fn finish(record: &mut TaskRecord, end: Result<&PeerKey, &String>) {
    match end {
        Ok(winner) => {
            record.state = TaskRunState::Done;
            record.winner = record.runs.iter().position(|r| &r.peer == winner);
        }
        Err(why) => {
            record.state = TaskRunState::Failed;
            record.reason = Some(why.clone());
        }
    }
}
