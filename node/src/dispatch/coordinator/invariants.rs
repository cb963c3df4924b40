//! What must always hold of the coordinator's jobs (checked by the unit and
//! property tests after every event): no task lost, none finished twice,
//! the records in memory and in the store agreeing with the batch.

use std::collections::BTreeSet;

use corral_protocol::receipt::TaskStatus;
use corral_scheduler::batch::{PlacedState, TaskState};

use super::records::{JobRecord, JobState, TaskRecord, TaskRunState, task_key};
use super::{Coordinator, Job};
use crate::clock::Clock;
use crate::store::Records;

impl<C: Clock> Coordinator<C> {
    /// Checks every job in memory; the first broken rule, in words.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (id, job) in &self.jobs {
            check_job(job).map_err(|e| format!("job {id}: {e}"))?;
            let stored = self
                .store
                .scan_records::<JobRecord>(Records::Jobs, id.as_bytes());
            match stored.as_slice() {
                [(_, record)] if record.state == job.record.state => {}
                [(_, record)] => {
                    return Err(format!(
                        "job {id}: stored as {}, {} in memory",
                        record.state, job.record.state
                    ));
                }
                _ => return Err(format!("job {id}: not stored once")),
            }
            for (i, task) in job.tasks.iter().enumerate() {
                let stored = self
                    .store
                    .scan_records::<TaskRecord>(Records::Tasks, &task_key(id, i as u32));
                let stored_state = stored.first().map(|(_, t)| t.state);
                let agrees = match task.state {
                    // Finished tasks are stored as they are.
                    TaskRunState::Done | TaskRunState::Failed => stored_state == Some(task.state),
                    // An open task is stored as queued or running, or not
                    // yet (a restart queues it again anyway); an offer
                    // writes it soon (`Job::unwritten`), a release does not.
                    TaskRunState::Queued | TaskRunState::Running => !matches!(
                        stored_state,
                        Some(TaskRunState::Done | TaskRunState::Failed)
                    ),
                };
                if !agrees {
                    return Err(format!(
                        "job {id} task {i}: stored as {stored_state:?}, {:?} in memory",
                        task.state
                    ));
                }
            }
        }
        Ok(())
    }
}

fn check_job(job: &Job) -> Result<(), String> {
    let count = job.manifest.task_count() as usize;
    let batch = job.batch.tasks();
    if job.tasks.len() != count || batch.len() != count {
        return Err(format!(
            "{count} tasks, {} records, {} in the batch",
            job.tasks.len(),
            batch.len()
        ));
    }
    let live = job.record.state == JobState::Running;
    if live && job.batch.is_finished() {
        return Err("every task finished, the job still running".into());
    }
    if !live && job.record.state != JobState::Cancelled && !job.batch.is_finished() {
        return Err(format!(
            "{} with tasks unfinished",
            job.record.state.as_str()
        ));
    }
    for (i, (record, task)) in job.tasks.iter().zip(batch).enumerate() {
        let agrees = match (&task.state, record.state) {
            (TaskState::Done(winner), TaskRunState::Done) => record
                .winner
                .and_then(|w| record.runs.get(w))
                .is_some_and(|run| &run.peer == winner),
            (TaskState::Failed(_), TaskRunState::Failed) => true,
            (TaskState::Queued | TaskState::Running(_), TaskRunState::Queued)
            | (TaskState::Queued | TaskState::Running(_), TaskRunState::Running) => true,
            _ => false,
        };
        if !agrees {
            return Err(format!(
                "task {i}: {:?} in the batch, {:?} recorded (winner {:?})",
                task.state, record.state, record.winner
            ));
        }
        if let Some(run) = record.runs.iter().find(|r| {
            task.placement(&r.peer, r.attempt)
                .is_none_or(|p| p.state == PlacedState::Refused)
        }) {
            return Err(format!(
                "task {i}: a result of a run never placed kept ({} attempt {})",
                run.peer.short(),
                run.attempt
            ));
        }
        let peers: BTreeSet<_> = record.runs.iter().map(|r| r.peer).collect();
        if peers.len() != record.runs.len() {
            return Err(format!("task {i}: two results of one device kept"));
        }
        if record.runs.len() != task.results.len() && job.started.is_some() {
            return Err(format!(
                "task {i}: {} runs recorded, {} results in the batch",
                record.runs.len(),
                task.results.len()
            ));
        }
    }
    if job.record.state == JobState::Completed
        && job.tasks.iter().any(|t| {
            t.winner
                .and_then(|w| t.runs.get(w))
                .is_none_or(|r| r.status != TaskStatus::Exited { code: 0 })
        })
    {
        return Err("completed with a task that did not exit 0".into());
    }
    Ok(())
}
