//! The coordinator's records in the store: a job, its tasks and their runs
//! (brought back into memory by the archive).

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::receipt::{EngineKind, OutputFile, TaskStatus};
use corral_scheduler::batch::{PlacedState, Task};
use serde::{Deserialize, Serialize};

pub(crate) use crate::job::report::{JobState, TaskRunState};

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
    /// The runs placed and not refused: a worker placed before a restart
    /// of the coordinator may still deliver (absent in records written
    /// before placements were kept).
    #[serde(default)]
    pub(super) placed: Vec<PlacedRecord>,
}

/// A run of a task placed on a worker that did not refuse it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PlacedRecord {
    pub(super) peer: PeerKey,
    pub(super) attempt: u32,
}

/// The runs of `task` to keep in its record: those placed and not refused.
pub(super) fn placed_of(task: &Task) -> Vec<PlacedRecord> {
    task.placed
        .iter()
        .filter(|p| p.state != PlacedState::Refused)
        .map(|p| PlacedRecord {
            peer: p.peer,
            attempt: p.attempt,
        })
        .collect()
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
