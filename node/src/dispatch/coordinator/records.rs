//! The coordinator's records in the store: a job, its tasks and their runs,
//! and how a stored job is brought back into memory (after a restart, or to
//! report a finished job no longer held).

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::receipt::{EngineKind, OutputFile, TaskStatus};
use corral_scheduler::batch::{Batch, BatchConfig};
use serde::{Deserialize, Serialize};

pub(crate) use crate::job::report::{JobState, TaskRunState};

use super::{Coordinator, Job};
use crate::clock::Clock;
use crate::store::Records;

/// A job as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) state: JobState,
    pub(super) created_ms: u64,
    pub(super) finished_ms: Option<u64>,
    pub(super) module_name: String,
    pub(super) verify: u8,
    /// The signed manifest, canonical bytes.
    pub(super) signed: Vec<u8>,
}

/// A task as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct TaskRecord {
    pub(super) state: TaskRunState,
    pub(super) attempts: u32,
    pub(super) reason: Option<String>,
    pub(super) runs: Vec<RunRecord>,
    pub(super) winner: Option<usize>,
    pub(super) mismatch: bool,
}

/// One result of a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct RunRecord {
    pub(super) peer: PeerKey,
    pub(super) name: String,
    pub(super) arch: String,
    pub(super) engine: EngineKind,
    pub(super) attempt: u32,
    pub(super) status: TaskStatus,
    pub(super) duration_ms: u64,
    pub(super) stdout: ContentHash,
    pub(super) stderr: ContentHash,
    pub(super) truncated: bool,
    pub(super) files: Vec<OutputFile>,
    pub(super) digest: ContentHash,
}

pub(super) fn task_key(job: &JobId, index: u32) -> Vec<u8> {
    let mut key = job.as_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

impl<C: Clock> Coordinator<C> {
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
        let mut batch = Batch::new(
            count,
            BatchConfig {
                redundancy: record.verify.max(1),
                ..BatchConfig::default()
            },
        );
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
                        let _ = batch.on_result(index, &run.peer, run.digest);
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
        Ok(Job {
            signed,
            manifest: Arc::new(manifest),
            batch,
            record,
            tasks,
            refusals: Vec::new(),
            excluded: Default::default(),
            cooldown: BTreeMap::new(),
            started: None,
            ended: None,
            seq: 0,
            results_seen: 0,
            short_results: 0,
            short_ms: 0,
            live: None,
        })
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
