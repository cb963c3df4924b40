//! A task this worker took on, what it needs on disk once fetched, and the
//! queue of tasks ready for the runner threads.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use corral_protocol::ids::PeerKey;
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::RejectReason;

use super::live::Live;
use crate::runtime::StopSignal;
use crate::sync::lock;

/// A task this worker took on.
pub(super) struct Assignment {
    /// Its job, verified.
    pub(super) manifest: Arc<JobManifest>,
    /// Which task of the job.
    pub(super) index: u32,
    /// Which attempt the coordinator numbered it.
    pub(super) attempt: u32,
    /// Who offered it (the submitter's daemon).
    pub(super) coordinator: PeerKey,
    /// Set when the task is to stop (cancelled or given back).
    pub(super) cancel: Arc<StopSignal>,
    /// Set (with `cancel`) when the task is given back to its coordinator.
    pub(super) hand_back: Arc<OnceLock<RejectReason>>,
    /// Set when a runner thread takes it: no longer queued.
    pub(super) started: Arc<AtomicBool>,
    /// Its output as it runs, for a job's only task.
    pub(super) live: Option<Live>,
}

/// What a task needs on disk, fetched.
pub(super) struct Prepared {
    /// The module's blob.
    pub(super) module: PathBuf,
    /// Its input: the name the guest sees and the blob.
    pub(super) input: Option<(String, PathBuf)>,
    /// What it reads on stdin.
    pub(super) stdin: Option<PathBuf>,
}

/// Tasks whose inputs are on disk, in the order they were accepted; the
/// runner threads take them one at a time.
#[derive(Default)]
pub struct RunQueue {
    queue: Mutex<VecDeque<(Assignment, Prepared)>>,
    ready: std::sync::Condvar,
}

impl RunQueue {
    /// Queues a task for the next free runner.
    pub(super) fn push(&self, task: Assignment, prepared: Prepared) {
        lock(&self.queue).push_back((task, prepared));
        self.ready.notify_one();
    }

    /// The next task, waiting for one if none is ready.
    pub(super) fn pop(&self) -> (Assignment, Prepared) {
        let mut queue = lock(&self.queue);
        loop {
            if let Some(next) = queue.pop_front() {
                return next;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}
