//! What the coordinator tells about its jobs — `corral job` and `corral
//! jobs` — and the jobs as stored, read back: a job brought back into
//! memory (after a restart, or to report a finished job no longer held),
//! and the list of every job; and a job that has ended, forgotten. Those scan the store, so the daemon runs them
//! off its event loop through an [`Archive`], a cheap handle of their own.

use std::collections::BTreeMap;

use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;

use super::job::batch_of;
use super::records::{JobRecord, JobState, TaskRecord, TaskRunState};
use super::report::report_of;
use super::{Coordinator, Job};
use crate::clock::Clock;
use crate::control::ControlError;
use crate::job::report::JobReport;
use crate::store::{Records, Store};

/// The coordinator's stored jobs, for reading off the event loop.
#[derive(Clone)]
pub struct Archive {
    pub(super) store: Store,
    pub(super) me: PeerKey,
}

/// A job's counts as `corral jobs` lists them: state, total, done, failed.
pub(super) type Counts = (JobState, usize, usize, usize);

impl Archive {
    /// A stored job, brought back into memory (its tasks that were
    /// running are queued again).
    pub(super) fn restore(&self, id: &[u8], record: JobRecord) -> anyhow::Result<Job> {
        let signed: Signed<JobManifest> =
            codec::from_canonical_bytes(&record.signed, codec::MAX_MANIFEST_BYTES + 1024)?;
        // Its own signature, without the time checks: a finished job past
        // its expiry is still its job (workers check expiry when offered).
        let manifest = signed.verify_signature_from(&self.me)?;
        let job = manifest.job;
        anyhow::ensure!(
            id == job.as_bytes(),
            "job record key does not match its manifest"
        );
        let count = manifest.task_count();
        let mut batch = batch_of(&manifest, record.verify.max(1));
        let mut tasks = vec![
            TaskRecord {
                state: TaskRunState::Queued,
                ..TaskRecord::default()
            };
            count as usize
        ];
        for (key, task) in self
            .store
            .scan_records::<TaskRecord>(Records::Tasks, job.as_bytes())
        {
            let Some(index) = key
                .get(16..20)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
            else {
                continue;
            };
            if index >= count {
                continue;
            }
            // The runs placed before the restart may still deliver; so
            // may (again) those that did.
            for placed in &task.placed {
                batch.restore_placed(index, placed.peer, placed.attempt);
            }
            for run in &task.runs {
                batch.restore_placed(index, run.peer, run.attempt);
            }
            match task.state {
                TaskRunState::Done => {
                    if let Some(run) = task.winner.and_then(|w| task.runs.get(w)) {
                        batch.restore_done(index, run.peer, run.digest);
                    }
                }
                TaskRunState::Failed => batch.restore_failed(
                    index,
                    task.reason.clone().unwrap_or_default(),
                    task.attempts,
                ),
                TaskRunState::Queued | TaskRunState::Running => {
                    // The votes so far of a verified task: replayed in
                    // order, so the batch wants no second result of a
                    // device that gave one, and counts the others (with
                    // no attempt made yet, a replay gives nothing up).
                    for run in &task.runs {
                        let _ = batch.on_result(index, &run.peer, run.attempt, run.digest);
                    }
                    batch.restore_attempts(index, task.attempts);
                }
            }
            let mut task = task;
            if task.state == TaskRunState::Running {
                task.state = TaskRunState::Queued;
            }
            tasks[index as usize] = task;
        }
        Ok(Job::new(signed, manifest, batch, record, tasks))
    }

    pub(super) fn load_finished(&self, id: &JobId) -> Option<Job> {
        let (_, record) = self
            .store
            .scan_records::<JobRecord>(Records::Jobs, id.as_bytes())
            .into_iter()
            .next()?;
        self.restore(id.as_bytes(), record).ok()
    }
}

impl<C: Clock> Coordinator<C> {
    /// Removes job `id`, which has ended, from memory and the store: its
    /// record and its tasks' (`corral serve` forgets each request's job
    /// once it has its answer, so a server's requests do not pile up in
    /// `corral jobs`). Its blobs stay until the cache sweep takes them. A
    /// job still running is refused. Returns the task records removed.
    pub fn forget(&mut self, id: &JobId) -> Result<usize, ControlError> {
        let internal = |e: anyhow::Error| ControlError::internal(format!("{e:#}"));
        match self.jobs.get(id) {
            Some(job) if job.is_live() => {
                return Err(ControlError::refused(format!(
                    "job {id} is still running: cancel it first"
                )));
            }
            Some(_) => {}
            None => {
                let stored = self.store.scan_raw(Records::Jobs, id.as_bytes());
                if stored.is_empty() {
                    return Err(ControlError::not_found(format!("no job {id} on this node")));
                }
            }
        }
        // Tasks first: a job record without its tasks would read back as a
        // job whose every task is queued.
        let tasks = self.store.scan_raw(Records::Tasks, id.as_bytes());
        for (key, _) in &tasks {
            self.store
                .remove_record(Records::Tasks, key)
                .map_err(internal)?;
        }
        self.store
            .remove_record(Records::Jobs, id.as_bytes())
            .map_err(internal)?;
        self.jobs.remove(id);
        Ok(tasks.len())
    }
}

impl Archive {
    /// `corral job ID` of a job no longer in memory (finished long ago):
    /// none running, so devices are named as their runs recorded them.
    pub fn report(&self, id: &JobId, now_ms: u64) -> Option<JobReport> {
        let job = self.load_finished(id)?;
        Some(report_of(*id, &job, true, &|p: &PeerKey| p.short(), now_ms))
    }
}

/// `corral jobs`, to be collected off the event loop: the jobs in memory
/// as they are now, the rest as stored.
pub struct Listing {
    pub(super) archive: Archive,
    pub(super) live: BTreeMap<JobId, Counts>,
}

impl Listing {
    /// Every job, newest first.
    pub fn collect(self) -> Vec<serde_json::Value> {
        let store = &self.archive.store;
        let mut jobs: Vec<(u64, serde_json::Value)> = store
            .scan_records::<JobRecord>(Records::Jobs, b"")
            .into_iter()
            .filter_map(|(key, record)| {
                let id = JobId::from_bytes(key.as_slice().try_into().ok()?);
                let (state, total, done, failed) = match self.live.get(&id) {
                    Some(counts) => *counts,
                    None => {
                        let tasks = store.scan_records::<TaskRecord>(Records::Tasks, id.as_bytes());
                        let done = tasks
                            .iter()
                            .filter(|(_, t)| t.state == TaskRunState::Done)
                            .count();
                        let failed = tasks
                            .iter()
                            .filter(|(_, t)| t.state == TaskRunState::Failed)
                            .count();
                        let total = codec::from_canonical_bytes::<Signed<JobManifest>>(
                            &record.signed,
                            codec::MAX_MANIFEST_BYTES + 1024,
                        )
                        .ok()
                        .and_then(|s| s.verify_signature_from(&self.archive.me).ok())
                        .map_or(0, |m| m.task_count() as usize);
                        (record.state, total, done, failed)
                    }
                };
                Some((
                    record.created_ms,
                    serde_json::json!({
                        "id": id.to_string(),
                        "state": state,
                        "module": record.module_name,
                        "created_ms": record.created_ms,
                        "tasks_total": total,
                        "tasks_done": done,
                        "tasks_failed": failed,
                    }),
                ))
            })
            .collect();
        jobs.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
        jobs.into_iter().map(|(_, v)| v).collect()
    }
}

impl<C: Clock> Coordinator<C> {
    /// `corral job ID --json` (and OUT/job.json); `name` names the devices
    /// running its tasks.
    pub fn report(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        let loaded;
        let job = match self.jobs.get(id) {
            Some(job) => job,
            None => {
                loaded = self.archive().load_finished(id)?;
                &loaded
            }
        };
        Some(report_of(*id, job, true, name, self.clock.now_ms()))
    }

    /// A job's counts, devices and refusals without its tasks, while it is
    /// in memory.
    pub fn summary(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        self.jobs
            .get(id)
            .map(|job| report_of(*id, job, false, name, self.clock.now_ms()))
    }

    /// `corral jobs`: every job this node coordinated, newest first.
    pub fn list(&self) -> Vec<serde_json::Value> {
        self.listing().collect()
    }

    /// `corral jobs` to be collected off the event loop (it scans the
    /// store): the jobs in memory counted now.
    pub fn listing(&self) -> Listing {
        let live = self
            .jobs
            .iter()
            .map(|(id, job)| {
                let count = |state| job.tasks.iter().filter(|t| t.state == state).count();
                (
                    *id,
                    (
                        job.record.state,
                        job.tasks.len(),
                        count(TaskRunState::Done),
                        count(TaskRunState::Failed),
                    ),
                )
            })
            .collect();
        Listing {
            archive: self.archive(),
            live,
        }
    }

    /// A handle on the stored jobs, for reading off the event loop.
    pub fn archive(&self) -> Archive {
        Archive {
            store: self.store.clone(),
            me: self.me,
        }
    }

    /// Whether job `id` is in memory (its report is cheap).
    pub fn holds(&self, id: &JobId) -> bool {
        self.jobs.contains_key(id)
    }
}
