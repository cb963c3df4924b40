//! A job held in memory by its coordinator: the signed manifest, the
//! batch, the records as stored, and what this run of the coordinator has
//! learnt of it (refusals, cooldowns, offers awaiting their answer, lapsed
//! leases, live output).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use corral_protocol::envelope::Signed;
use corral_protocol::ids::PeerKey;
use corral_protocol::manifest::JobManifest;
use corral_scheduler::batch::{Batch, BatchConfig};

use super::live::LiveRun;
use super::records::{JobRecord, JobState, TaskRecord, task_key};
use crate::job::report::Refusal;
use crate::store::{Records, Store};

pub(super) struct Job {
    pub(super) signed: Signed<JobManifest>,
    pub(super) manifest: Arc<JobManifest>,
    pub(super) batch: Batch,
    pub(super) record: JobRecord,
    pub(super) tasks: Vec<TaskRecord>,
    pub(super) refusals: Vec<Refusal>,
    /// Peers that refused for a reason that will not change during the job
    /// (not trusted, no engine, limits): not offered again.
    pub(super) excluded: BTreeSet<PeerKey>,
    /// Peers that were busy, not offered again before the time given.
    pub(super) cooldown: BTreeMap<PeerKey, u64>,
    /// Offers sent whose answer has not come (task, peer): a result of
    /// such a run is not taken yet (see `placed.rs`).
    pub(super) awaiting: BTreeSet<(u32, PeerKey)>,
    /// Peers cooled off for lapsed leases: how often, and the last why.
    pub(super) lapses: BTreeMap<PeerKey, (u32, String)>,
    /// When it was submitted and when it ended, on this process's clock.
    pub(super) started: Option<std::time::Instant>,
    pub(super) ended: Option<std::time::Instant>,
    /// Bumped on every change.
    pub(super) seq: u64,
    /// Results seen, how many of them ran under
    /// [`SHORT_TASK_MS`](corral_scheduler::ahead::SHORT_TASK_MS), and
    /// those short runs' time in all (ms).
    pub(super) results_seen: u32,
    pub(super) short_results: u32,
    pub(super) short_ms: u64,
    /// A single-task job's output so far, as its run streams it.
    pub(super) live: Option<LiveRun>,
    /// Tasks placed since their record was last written: written with
    /// their result, or by [`Coordinator::write_placements`] soon after
    /// (one write per task where its result comes fast, not two).
    ///
    /// [`Coordinator::write_placements`]: super::Coordinator::write_placements
    pub(super) unwritten: BTreeSet<u32>,
    /// When this process resumed the job from the store, and the attempts
    /// of each task it found there.
    pub(super) resumed: Option<Box<Resumed>>,
}

/// A job brought back from the store by a new process.
pub(super) struct Resumed {
    /// When (the coordinator's clock).
    pub(super) at_ms: u64,
    /// Each task's attempts as stored.
    pub(super) attempts: Vec<u32>,
}

impl Job {
    /// A job held in memory, from its manifest, batch and records, with
    /// nothing yet known of this run of the coordinator (no refusals,
    /// cooldowns, results or live output).
    pub(super) fn new(
        signed: Signed<JobManifest>,
        manifest: JobManifest,
        batch: Batch,
        record: JobRecord,
        tasks: Vec<TaskRecord>,
    ) -> Self {
        Self {
            signed,
            manifest: Arc::new(manifest),
            batch,
            record,
            tasks,
            refusals: Vec::new(),
            excluded: Default::default(),
            cooldown: BTreeMap::new(),
            awaiting: BTreeSet::new(),
            lapses: BTreeMap::new(),
            started: None,
            ended: None,
            seq: 0,
            results_seen: 0,
            short_results: 0,
            short_ms: 0,
            live: None,
            unwritten: BTreeSet::new(),
            resumed: None,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.record.state == JobState::Running
    }

    /// Writes task `index`'s record as it stands: it is no longer
    /// unwritten.
    pub(super) fn write_task(&mut self, store: &Store, index: u32) -> anyhow::Result<()> {
        let Some(record) = self.tasks.get(index as usize) else {
            return Ok(());
        };
        store.put_record(Records::Tasks, &task_key(&self.manifest.job, index), record)?;
        self.unwritten.remove(&index);
        Ok(())
    }

    /// Writes the records of the tasks placed since they were last
    /// written; one that cannot be written stays unwritten, tried again
    /// next time.
    pub(super) fn write_unwritten(&mut self, store: &Store) {
        for index in std::mem::take(&mut self.unwritten) {
            if let Err(e) = self.write_task(store, index) {
                let id = self.manifest.job;
                tracing::warn!("cannot store the placements of task {index} of {id}: {e:#}");
                self.unwritten.insert(index);
            }
        }
    }

    /// Tasks queued ahead on a device with `slots` slots (see
    /// [`ahead`](corral_scheduler::ahead::ahead)).
    pub(super) fn ahead(&self, slots: u16) -> u16 {
        corral_scheduler::ahead::ahead(self.results_seen, self.short_results, self.short_ms, slots)
    }
}

/// The batch of a job's tasks: `redundancy` agreeing runs each, every run
/// under the manifest's timeout as its hard lease (for a job submitted
/// here and one restored from the store alike).
pub(super) fn batch_of(manifest: &JobManifest, redundancy: u8) -> Batch {
    let mut batch = Batch::new(
        manifest.task_count(),
        BatchConfig {
            redundancy,
            ..BatchConfig::default()
        },
    );
    batch.set_hard_lease(manifest.limits.timeout_ms);
    batch
}
