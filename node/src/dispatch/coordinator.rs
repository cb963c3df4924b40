//! The coordinator: the daemon that a job was submitted to. It signs the
//! manifest, keeps the job and its tasks in sled, asks the scheduler where
//! each task goes, takes the results (receipts checked, output files fetched
//! by hash first), and answers `corral job` / `corral jobs`. A restarted
//! coordinator resumes its unfinished jobs from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::codec;
use corral_protocol::envelope::{Signed, SigningKey};
use corral_protocol::hash::{ContentHash, ContentHasher};
use corral_protocol::ids::{JobId, Nonce, PeerKey};
use corral_protocol::manifest::{EngineReq, InputSpec, JobManifest, MAX_LIFETIME_MS, TaskSet};
use corral_protocol::receipt::{EngineKind, OutputFile, TaskReceipt, TaskStatus};
use corral_scheduler::batch::{Batch, BatchConfig, Decision, MAX_AHEAD, Pool, TaskState, Worker};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobStore;
use crate::control::wire::{StreamedOutput, SubmitSpec};
use crate::job::report::{DeviceCount, FileReport, JobReport, Refusal, RunReport, TaskReport};
use crate::store::{Records, Store};

/// How long a submitted job stays valid on workers.
const JOB_LIFETIME_MS: u64 = 2 * 24 * 3600 * 1000;
/// Most jobs kept in memory (finished ones are read back from the store).
const MAX_LIVE_JOBS: usize = 256;
/// How long a busy worker is left alone by a job.
const BUSY_COOLDOWN_MS: u64 = 1000;

/// A device that could not be reached gets no offers of the job for this
/// long: it is probably gone, and the view will say so soon (a crash that
/// leaves no closed connection shows after three missed adverts).
const LOST_COOLDOWN_MS: u64 = 5000;
/// Most distinct refusals remembered per job.
const MAX_REFUSALS: usize = 64;

/// A peer that can take tasks, from the view (or this node).
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The peer.
    pub peer: PeerKey,
    /// Its task slots.
    pub slots: u16,
    /// Its engines and their speeds.
    pub engines: Vec<EngineSpeed>,
    /// Its CPU architecture.
    pub arch: String,
}

/// Something the daemon must send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Offer a task.
    Offer {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
        /// To whom.
        peer: PeerKey,
        /// Which attempt.
        attempt: u32,
    },
    /// Cancel a task.
    Cancel {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
        /// On whom.
        peer: PeerKey,
    },
}

/// A job as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct JobRecord {
    state: String,
    created_ms: u64,
    finished_ms: Option<u64>,
    module_name: String,
    verify: u8,
    /// The signed manifest, canonical bytes.
    signed: Vec<u8>,
}

/// A task as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct TaskRecord {
    state: String,
    attempts: u32,
    reason: Option<String>,
    runs: Vec<RunRecord>,
    winner: Option<usize>,
    mismatch: bool,
}

/// One result of a task.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunRecord {
    peer: PeerKey,
    name: String,
    arch: String,
    engine: EngineKind,
    attempt: u32,
    status: TaskStatus,
    duration_ms: u64,
    stdout: ContentHash,
    stderr: ContentHash,
    truncated: bool,
    files: Vec<OutputFile>,
    digest: ContentHash,
}

struct Job {
    signed: Signed<JobManifest>,
    manifest: Arc<JobManifest>,
    batch: Batch,
    record: JobRecord,
    tasks: Vec<TaskRecord>,
    refusals: Vec<Refusal>,
    /// Peers that refused for a reason that will not change during the job
    /// (not trusted, no engine, limits): not offered again.
    excluded: std::collections::BTreeSet<PeerKey>,
    /// Peers that were busy, not offered again before the time given.
    cooldown: BTreeMap<PeerKey, u64>,
    /// When it was submitted and when it ended, on this process's clock.
    started: Option<std::time::Instant>,
    ended: Option<std::time::Instant>,
    /// Bumped on every change.
    seq: u64,
    /// Results seen, how many of them ran under [`SHORT_TASK_MS`], and
    /// those short runs' time in all (ms).
    results_seen: u32,
    short_results: u32,
    short_ms: u64,
    /// A single-task job's output so far, as its run streams it.
    live: Option<LiveRun>,
}

/// What the running task of a single-task job has written so far.
struct LiveRun {
    /// The run: its device and when it was placed there (a lost run's
    /// attempt number is given back, so a device running the task anew
    /// may use the same number).
    peer: PeerKey,
    started_ms: u64,
    /// Counts the runs that streamed: a new one starts the output over.
    run: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Most streamed bytes kept per stream of a running task (the receipt
/// carries the whole output, up to the job's cap).
const MAX_LIVE_BYTES: usize = 16 * 1024 * 1024;
/// Most streamed bytes of each stream handed to `corral run` per call.
pub const MAX_LIVE_READ: usize = 256 * 1024;

/// A task this short is over before its next offer could arrive: a job made
/// of them keeps more than one task ahead on each device (see [`ahead`]).
const SHORT_TASK_MS: u64 = 20;

/// The run time a device may hold queued beyond its slots for a job of
/// short tasks: enough that its slots do not stand idle while results and
/// the next offers travel (a round trip is about a millisecond, and each
/// carries a batch), little enough that a slow device holds back no more
/// than this much of the job's end.
const AHEAD_MS: u64 = 32;

/// Tasks queued ahead on each device for a job: one (late binding) until
/// most of its results (nine in ten of at least eight) show its tasks are
/// short, then [`AHEAD_MS`] of their mean run time, at most [`MAX_AHEAD`].
/// Tasks of 10 ms get 3 ahead; tasks under a millisecond (run times are
/// counted in whole ms) get the most.
fn ahead(results_seen: u32, short_results: u32, short_ms: u64) -> u16 {
    if results_seen < 8 || short_results * 10 < results_seen * 9 {
        return 1;
    }
    let mean_ms = (short_ms / u64::from(short_results)).max(1);
    u16::try_from(AHEAD_MS / mean_ms)
        .unwrap_or(MAX_AHEAD)
        .clamp(1, MAX_AHEAD)
}

impl Job {
    fn is_live(&self) -> bool {
        self.record.state == "running"
    }

    /// Tasks queued ahead on each device (see [`ahead`]).
    fn ahead(&self) -> u16 {
        ahead(self.results_seen, self.short_results, self.short_ms)
    }
}

/// The jobs this node coordinates.
pub struct Coordinator {
    me: PeerKey,
    key: SigningKey,
    store: Store,
    blobs: BlobStore,
    jobs: BTreeMap<JobId, Job>,
    /// Which peers hold which modules (they returned a result of it).
    warm: std::collections::BTreeSet<(PeerKey, ContentHash)>,
}

/// Most (peer, module) pairs remembered as warm.
const MAX_WARM: usize = 4096;

fn task_key(job: &JobId, index: u32) -> Vec<u8> {
    let mut key = job.as_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The digest two runs of a task are compared by: exit status, stdout and
/// every output file.
pub fn result_digest(receipt: &TaskReceipt) -> ContentHash {
    let mut h = ContentHasher::new();
    h.update(receipt.status.reason_code().as_bytes());
    if let TaskStatus::Exited { code } = receipt.status {
        h.update(&code.to_le_bytes());
    }
    h.update(receipt.stdout.hash.as_bytes());
    for f in &receipt.files {
        h.update(f.path.as_bytes());
        h.update(&[0]);
        h.update(f.hash.as_bytes());
    }
    h.finish()
}

impl Coordinator {
    /// The coordinator of this node; unfinished jobs in the store resume.
    pub fn load(me: PeerKey, key: SigningKey, store: Store, blobs: BlobStore) -> Self {
        let mut coordinator = Self {
            me,
            key,
            store,
            blobs,
            jobs: BTreeMap::new(),
            warm: Default::default(),
        };
        let records: Vec<(Vec<u8>, JobRecord)> = coordinator.store.scan_records(Records::Jobs, b"");
        for (id, record) in records {
            if record.state != "running" {
                continue;
            }
            match coordinator.restore(&id, record) {
                Ok(job) => {
                    tracing::info!(job = %job, "resuming an unfinished job");
                }
                Err(e) => tracing::warn!("a stored job cannot be resumed: {e:#}"),
            }
        }
        coordinator
    }

    fn restore(&mut self, id: &[u8], record: JobRecord) -> anyhow::Result<JobId> {
        let signed: Signed<JobManifest> =
            codec::from_canonical_bytes(&record.signed, codec::MAX_MANIFEST_BYTES + 1024)?;
        // Its own signature; expiry is checked when offered.
        let manifest = signed
            .verify_from(&self.me, 0)
            .or_else(|_| signed.verify_from(&self.me, crate::clock::now_ms()))?;
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
                state: "queued".into(),
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
            match task.state.as_str() {
                "done" => {
                    if let Some(run) = task.winner.and_then(|w| task.runs.get(w)) {
                        batch.restore_done(index, run.peer, run.digest);
                    }
                }
                "failed" => batch.restore_failed(
                    index,
                    task.reason.clone().unwrap_or_default(),
                    task.attempts,
                ),
                _ => batch.restore_attempts(index, task.attempts),
            }
            let mut task = task;
            if task.state == "running" {
                task.state = "queued".into();
            }
            tasks[index as usize] = task;
        }
        self.jobs.insert(
            job,
            Job {
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
            },
        );
        Ok(job)
    }

    /// Builds, signs and stores a job; it is scheduled on the next round.
    pub fn submit(&mut self, spec: SubmitSpec, now_ms: u64) -> Result<JobId, String> {
        let module_size = self
            .blobs
            .size(&spec.module)
            .ok_or_else(|| format!("module {} is not in the blob store", spec.module.short()))?;
        let mut inputs = Vec::with_capacity(spec.inputs.len());
        for (name, hash) in &spec.inputs {
            let size = self
                .blobs
                .size(hash)
                .ok_or_else(|| format!("input {name} is not in the blob store"))?;
            inputs.push(InputSpec {
                name: name.clone(),
                hash: *hash,
                size,
            });
        }
        for dir in &spec.dirs {
            let listing = self
                .blobs
                .listing(&dir.tree_hash)
                .map_err(|e| format!("--dir {}: {e:#}", dir.guest_path))?;
            if let Some(f) = listing.files.iter().find(|f| !self.blobs.has(&f.hash)) {
                return Err(format!(
                    "--dir {}: {} is not in the blob store",
                    dir.guest_path, f.path
                ));
            }
        }
        let stdin = match spec.stdin {
            Some(hash) => Some(corral_protocol::manifest::StdinSpec {
                hash,
                size: self
                    .blobs
                    .size(&hash)
                    .ok_or_else(|| "stdin is not in the blob store".to_string())?,
            }),
            None => None,
        };
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| format!("no randomness: {e}"))?;
        let job = JobId::from_bytes(random[..16].try_into().unwrap_or([0; 16]));
        let nonce = Nonce(random[16..].try_into().unwrap_or([0; 16]));
        let mut args = Vec::with_capacity(spec.args.len() + 1);
        args.push(spec.module_name.clone());
        args.extend(spec.args);
        let manifest = JobManifest {
            version: corral_protocol::PROTOCOL_VERSION,
            job,
            submitter: self.me,
            module_hash: spec.module,
            module_size,
            args,
            env: spec.env.into_iter().collect(),
            dirs: spec.dirs,
            tasks: if inputs.is_empty() {
                TaskSet::Count(spec.tasks.max(1))
            } else {
                TaskSet::Inputs(inputs)
            },
            limits: spec.limits,
            engine: spec.engine,
            redundancy: spec.verify.max(1),
            created_ms: now_ms,
            expires_ms: now_ms + JOB_LIFETIME_MS.min(MAX_LIFETIME_MS),
            nonce,
            stdin,
        };
        manifest.validate().map_err(|e| e.to_string())?;
        let signed = Signed::sign(&manifest, &self.key);
        let record = JobRecord {
            state: "running".into(),
            created_ms: now_ms,
            finished_ms: None,
            module_name: spec.module_name,
            verify: manifest.redundancy,
            signed: codec::to_canonical_bytes(&signed),
        };
        self.store
            .put_record(Records::Jobs, job.as_bytes(), &record)
            .map_err(|e| format!("{e:#}"))?;
        let count = manifest.task_count();
        let batch = Batch::new(
            count,
            BatchConfig {
                redundancy: manifest.redundancy,
                ..BatchConfig::default()
            },
        );
        self.jobs.insert(
            job,
            Job {
                signed,
                manifest: Arc::new(manifest),
                batch,
                record,
                tasks: vec![
                    TaskRecord {
                        state: "queued".into(),
                        ..TaskRecord::default()
                    };
                    count as usize
                ],
                refusals: Vec::new(),
                excluded: Default::default(),
                cooldown: BTreeMap::new(),
                started: Some(std::time::Instant::now()),
                ended: None,
                seq: 0,
                results_seen: 0,
                short_results: 0,
                short_ms: 0,
                live: None,
            },
        );
        self.trim();
        Ok(job)
    }

    /// Keeps memory bounded: finished jobs beyond the limit are dropped
    /// (their records stay in the store).
    fn trim(&mut self) {
        while self.jobs.len() > MAX_LIVE_JOBS {
            let Some(old) = self
                .jobs
                .iter()
                .filter(|(_, j)| !j.is_live())
                .min_by_key(|(_, j)| j.record.created_ms)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.jobs.remove(&old);
        }
    }

    /// Whether any job has tasks to place or running.
    pub fn has_live_jobs(&self) -> bool {
        self.jobs.values().any(Job::is_live)
    }

    /// Tasks held per peer over all live jobs.
    pub fn load_of(&self, peer: &PeerKey) -> usize {
        self.jobs
            .values()
            .filter(|j| j.is_live())
            .map(|j| j.batch.load_of(peer))
            .sum()
    }

    /// Places what can be placed on `candidates`; `present` is every device
    /// connected now (idle or not), this one included.
    pub fn schedule(
        &mut self,
        candidates: &[Candidate],
        present: &[PeerKey],
        now_ms: u64,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.is_live())
            .map(|(id, _)| *id)
            .collect();
        let mut backlog = 0usize;
        for id in ids {
            let workers: Vec<Worker> = {
                let Some(job) = self.jobs.get(&id) else {
                    continue;
                };
                candidates
                    .iter()
                    .map(|c| {
                        let others = self.load_of(&c.peer) - job.batch.load_of(&c.peer);
                        let (speed, engine) = speed_for(&c.engines, job.manifest.engine);
                        Worker {
                            peer: c.peer,
                            slots_free: c
                                .slots
                                .saturating_sub(u16::try_from(others).unwrap_or(u16::MAX)),
                            slots_total: c.slots,
                            held_elsewhere: u16::try_from(others).unwrap_or(u16::MAX),
                            ahead: job.ahead(),
                            speed: if now_ms < job.manifest.expires_ms
                                && !job.excluded.contains(&c.peer)
                                && job
                                    .cooldown
                                    .get(&c.peer)
                                    .is_none_or(|until| *until <= now_ms)
                            {
                                speed
                            } else {
                                0
                            },
                            class: format!("{}/{engine}", c.arch),
                            cached: c.peer == self.me
                                || self.warm.contains(&(c.peer, job.manifest.module_hash)),
                        }
                    })
                    .collect()
            };
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            // Older jobs go first: their waiting tasks are ahead of this
            // job's in the mesh's queue.
            let pool = Pool {
                backlog: backlog as u128,
                ..Pool::of(&workers)
            };
            let mut decisions = job.batch.schedule_in(&workers, pool, now_ms);
            backlog += job.batch.waiting();
            // Every device there refused this job for good: say so and end
            // it, rather than wait for a device that will never come.
            if !job.excluded.is_empty()
                && !job.batch.any_running()
                && present.iter().all(|p| job.excluded.contains(p))
            {
                let why: Vec<String> = job
                    .refusals
                    .iter()
                    .map(|r| format!("{} refused: {}", r.peer, r.reason))
                    .collect();
                decisions.extend(
                    job.batch
                        .fail_queued(&format!("no device accepts this job ({})", why.join("; "))),
                );
            }
            actions.extend(self.apply(id, decisions));
        }
        actions
    }

    /// Turns decisions into actions, recording give-ups and finished jobs.
    fn apply(&mut self, id: JobId, decisions: Vec<Decision>) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(job) = self.jobs.get_mut(&id) else {
            return actions;
        };
        if !decisions.is_empty() {
            job.seq += 1;
        }
        for decision in decisions {
            match decision {
                Decision::Offer {
                    index,
                    peer,
                    attempt,
                    reason,
                } => {
                    tracing::debug!(job = %id, index, peer = %peer.short(), attempt, %reason, "offer");
                    if let Some(t) = job.tasks.get_mut(index as usize) {
                        t.state = "running".into();
                        if attempt > t.attempts {
                            // Kept, so a restarted coordinator numbers its
                            // next attempt past every one a worker has seen.
                            t.attempts = attempt;
                            let _ =
                                self.store
                                    .put_record(Records::Tasks, &task_key(&id, index), &*t);
                        }
                    }
                    actions.push(Action::Offer {
                        job: id,
                        index,
                        peer,
                        attempt,
                    });
                }
                Decision::Cancel { index, peer } => actions.push(Action::Cancel {
                    job: id,
                    index,
                    peer,
                }),
                Decision::GiveUp { index, reason } => {
                    if let Some(t) = job.tasks.get_mut(index as usize) {
                        t.state = "failed".into();
                        t.reason = Some(reason);
                        t.attempts = job.batch.tasks()[index as usize].attempts;
                        let _ = self
                            .store
                            .put_record(Records::Tasks, &task_key(&id, index), &*t);
                    }
                }
            }
        }
        self.finish_if_done(id);
        actions
    }

    fn finish_if_done(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.is_live() || !job.batch.is_finished() {
            return;
        }
        let failed = job
            .batch
            .tasks()
            .iter()
            .any(|t| !matches!(t.state, TaskState::Done(_)))
            || job.tasks.iter().any(|t| {
                t.winner
                    .and_then(|w| t.runs.get(w))
                    .is_none_or(|r| r.status != TaskStatus::Exited { code: 0 })
            });
        job.record.state = if failed { "failed" } else { "completed" }.into();
        job.live = None;
        job.record.finished_ms = Some(crate::clock::now_ms());
        job.ended = Some(std::time::Instant::now());
        job.seq += 1;
        if let Err(e) = self
            .store
            .put_record(Records::Jobs, id.as_bytes(), &job.record)
        {
            tracing::warn!("cannot record the end of job {id}: {e:#}");
        }
        self.store.flush_soon();
        tracing::info!(job = %id, state = %job.record.state, "job finished");
    }

    /// The signed manifest a job's offers carry.
    pub fn signed_manifest(&self, job: &JobId) -> Option<Signed<JobManifest>> {
        self.jobs.get(job).map(|j| j.signed.clone())
    }

    /// `peer` refused a task; `lasting` when the reason will not change
    /// during the job (the peer is not offered this job again).
    pub fn on_rejected(
        &mut self,
        id: JobId,
        index: u32,
        peer: PeerKey,
        name: &str,
        reason: &str,
        lasting: bool,
    ) -> Vec<Action> {
        let Some(job) = self.jobs.get_mut(&id) else {
            return Vec::new();
        };
        if lasting {
            job.excluded.insert(peer);
        }
        let busy = matches!(
            reason,
            "no free slot" | "owner is using the device" | "device is leaving"
        );
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
        let decisions = if busy {
            // Not its fault and not the task's: try it again a little later.
            job.cooldown
                .insert(peer, crate::clock::now_ms() + BUSY_COOLDOWN_MS);
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
            .insert(peer, crate::clock::now_ms() + LOST_COOLDOWN_MS);
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
            && t.state == "running"
            && matches!(job.batch.tasks()[index as usize].state, TaskState::Queued)
        {
            t.state = "queued".into();
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
                if t.state == "running" && job.batch.tasks()[i].state == TaskState::Queued {
                    t.state = "queued".into();
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
        Signed::verify_all_from(signed, from, crate::clock::now_ms())
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
    fn still_wanted(&self, from: &PeerKey, id: &JobId, index: u32) -> bool {
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

    /// A result whose files are in the blob store.
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
        let stdout = self.blobs.put_bytes(&receipt.stdout.bytes);
        let stderr = self.blobs.put_bytes(&receipt.stderr.bytes);
        let (Ok(stdout), Ok(stderr)) = (stdout, stderr) else {
            tracing::warn!("cannot store the output of task {index} of {id}; it will run again");
            let decisions = job
                .batch
                .on_failed(index, &from, "its output could not be stored");
            return self.apply(id, decisions);
        };
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
                record.state = "done".into();
                record.winner = record.runs.iter().position(|r| &r.peer == winner);
            }
            TaskState::Failed(why) => {
                record.state = "failed".into();
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

    /// Output streamed by the run of a single-task job on `from`. Kept in
    /// order (a chunk must start where the last one ended); the first run
    /// to stream owns the output until it stops running, and a later run
    /// (another device's, or the same device's anew) starts it over.
    pub fn on_output(
        &mut self,
        from: PeerKey,
        id: JobId,
        index: u32,
        (stdout_at, stdout): (u64, &[u8]),
        (stderr_at, stderr): (u64, &[u8]),
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.is_live() || job.manifest.task_count() != 1 || index != 0 {
            return;
        }
        let started = |peer: &PeerKey| match &job.batch.tasks()[0].state {
            TaskState::Running(on) => on.get(peer).copied(),
            _ => None,
        };
        let Some(started_ms) = started(&from) else {
            return;
        };
        let fresh = |run| LiveRun {
            peer: from,
            started_ms,
            run,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        match &job.live {
            None => job.live = Some(fresh(1)),
            Some(live) if live.peer == from && live.started_ms == started_ms => {}
            // Another device's run still owns the output.
            Some(live) if live.peer != from && started(&live.peer) == Some(live.started_ms) => {
                return;
            }
            // The owner's run is gone (its device left, or runs the task
            // anew): this run's output starts over.
            Some(live) => job.live = Some(fresh(live.run + 1)),
        }
        let Some(live) = job.live.as_mut() else {
            return;
        };
        let cap = usize::try_from(job.manifest.limits.output_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_LIVE_BYTES);
        let mut changed = false;
        for (buf, at, bytes) in [
            (&mut live.stdout, stdout_at, stdout),
            (&mut live.stderr, stderr_at, stderr),
        ] {
            if at == buf.len() as u64 && !bytes.is_empty() {
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                changed = true;
            }
        }
        if changed {
            job.seq += 1;
        }
    }

    /// A single-task job's streamed output from the given offsets, while it
    /// runs (`None` when nothing streamed, or the job is not here).
    pub fn live_output(
        &self,
        id: &JobId,
        stdout_from: u64,
        stderr_from: u64,
        name: impl Fn(&PeerKey) -> String,
    ) -> Option<StreamedOutput> {
        let live = self.jobs.get(id)?.live.as_ref()?;
        let from = |buf: &[u8], at: u64| {
            let start = usize::try_from(at).unwrap_or(usize::MAX).min(buf.len());
            buf[start..buf.len().min(start + MAX_LIVE_READ)].to_vec()
        };
        Some(StreamedOutput {
            run: live.run,
            peer: name(&live.peer),
            stdout: from(&live.stdout, stdout_from),
            stderr: from(&live.stderr, stderr_from),
        })
    }

    /// Cancels a job: no more offers, running tasks are told to stop.
    pub fn cancel(&mut self, id: &JobId) -> Result<Vec<Action>, String> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| format!("no job {id} on this node"))?;
        if !job.is_live() {
            return Err(format!("job {id} has already ended ({})", job.record.state));
        }
        let mut actions = Vec::new();
        for (i, task) in job.batch.tasks().iter().enumerate() {
            if let TaskState::Running(on) = &task.state {
                for peer in on.keys() {
                    actions.push(Action::Cancel {
                        job: *id,
                        index: i as u32,
                        peer: *peer,
                    });
                }
            }
        }
        job.record.state = "cancelled".into();
        job.live = None;
        job.record.finished_ms = Some(crate::clock::now_ms());
        job.ended = Some(std::time::Instant::now());
        job.seq += 1;
        self.store
            .put_record(Records::Jobs, id.as_bytes(), &job.record)
            .map_err(|e| format!("{e:#}"))?;
        Ok(actions)
    }

    fn load_finished(&self, id: &JobId) -> Option<Job> {
        let (_, record) = self
            .store
            .scan_records::<JobRecord>(Records::Jobs, id.as_bytes())
            .into_iter()
            .next()?;
        let mut scratch = Coordinator {
            me: self.me,
            key: self.key.clone(),
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            jobs: BTreeMap::new(),
            warm: Default::default(),
        };
        let state = record.state.clone();
        scratch.restore(id.as_bytes(), record).ok()?;
        let mut job = scratch.jobs.remove(id)?;
        job.record.state = state;
        Some(job)
    }

    /// `corral job ID --json` (and OUT/job.json); `name` names the devices
    /// running its tasks.
    pub fn report(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        let loaded;
        let job = match self.jobs.get(id) {
            Some(job) => job,
            None => {
                loaded = self.load_finished(id)?;
                &loaded
            }
        };
        Some(report_of(*id, job, true, name))
    }

    /// A job's counts, devices and refusals without its tasks, while it is
    /// in memory.
    pub fn summary(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        self.jobs
            .get(id)
            .map(|job| report_of(*id, job, false, name))
    }

    /// `corral jobs`: every job this node coordinated, newest first.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let mut jobs: Vec<(u64, serde_json::Value)> = self
            .store
            .scan_records::<JobRecord>(Records::Jobs, b"")
            .into_iter()
            .filter_map(|(key, record)| {
                let id = JobId::from_bytes(key.as_slice().try_into().ok()?);
                let (state, total, done, failed) = match self.jobs.get(&id) {
                    Some(job) => {
                        let done = job.tasks.iter().filter(|t| t.state == "done").count();
                        let failed = job.tasks.iter().filter(|t| t.state == "failed").count();
                        (job.record.state.clone(), job.tasks.len(), done, failed)
                    }
                    None => {
                        let tasks = self
                            .store
                            .scan_records::<TaskRecord>(Records::Tasks, id.as_bytes());
                        let done = tasks.iter().filter(|(_, t)| t.state == "done").count();
                        let failed = tasks.iter().filter(|(_, t)| t.state == "failed").count();
                        let total = codec::from_canonical_bytes::<Signed<JobManifest>>(
                            &record.signed,
                            codec::MAX_MANIFEST_BYTES + 1024,
                        )
                        .ok()
                        .and_then(|s| {
                            s.verify(0)
                                .or_else(|_| s.verify(crate::clock::now_ms()))
                                .ok()
                        })
                        .map_or(0, |m| m.task_count() as usize);
                        (record.state.clone(), total, done, failed)
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

    /// A job's change counter and whether it still runs (cheap, for
    /// watchers); `None` for a job not in memory.
    pub fn progress(&self, id: &JobId) -> Option<(u64, bool)> {
        self.jobs.get(id).map(|j| (j.seq, j.is_live()))
    }

    /// Tasks running on this node's behalf, per job (for status).
    pub fn running(&self) -> usize {
        self.jobs
            .values()
            .filter(|j| j.is_live())
            .flat_map(|j| j.batch.tasks())
            .filter(|t| matches!(t.state, TaskState::Running(_)))
            .count()
    }
}

/// The speed and engine name a peer would use for a job.
fn speed_for(engines: &[EngineSpeed], req: EngineReq) -> (u64, &'static str) {
    let pick = |kind: EngineKind| engines.iter().find(|e| e.engine == kind);
    let chosen = match req {
        EngineReq::Jit => pick(EngineKind::Jit),
        EngineReq::Interp => pick(EngineKind::Interp),
        // The worker's own choice: its fastest engine (adverts list it first).
        EngineReq::Any => engines.iter().max_by_key(|e| e.ops_per_s),
    };
    chosen.map_or((0, "none"), |e| (e.ops_per_s.max(1), e.engine.name()))
}

/// A job's record; without `with_tasks`, only its counts (a watcher's
/// progress bar does not need every task of a large job on every change).
fn report_of(
    id: JobId,
    job: &Job,
    with_tasks: bool,
    name: &dyn Fn(&PeerKey) -> String,
) -> JobReport {
    let mut devices: BTreeMap<String, DeviceCount> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(if with_tasks { job.tasks.len() } else { 0 });
    let (mut done, mut failed) = (0u32, 0u32);
    let input_name = |i: u32| match &job.manifest.tasks {
        TaskSet::Inputs(inputs) => inputs.get(i as usize).map(|s| s.name.clone()),
        TaskSet::Count(_) => None,
    };
    for (i, (record, task)) in job.tasks.iter().zip(job.batch.tasks()).enumerate() {
        if let TaskState::Running(on) = &task.state {
            for peer in on.keys() {
                devices.entry(name(peer)).or_default().running += 1;
            }
        }
        let winner = record.winner.and_then(|w| record.runs.get(w));
        if let Some(run) = winner {
            devices.entry(run.name.clone()).or_default().done += 1;
        }
        let state = match (&record.state[..], winner) {
            ("done", Some(run)) if run.status == (TaskStatus::Exited { code: 0 }) => "done",
            ("done", _) | ("failed", _) => "failed",
            (other, _) => other,
        };
        match state {
            "done" => done += 1,
            "failed" => failed += 1,
            _ => {}
        }
        if !with_tasks {
            continue;
        }
        let (exit_code, message) = match winner.map(|r| &r.status) {
            Some(TaskStatus::Exited { code }) => (Some(*code), None),
            Some(TaskStatus::Trapped { message }) => (None, Some(message.clone())),
            _ => (None, None),
        };
        let verified = job.record.verify > 1;
        tasks.push(TaskReport {
            index: i as u32,
            state: state.to_string(),
            exit_code,
            reason: winner.map_or_else(
                || if state == "failed" { "not_run" } else { "" }.to_string(),
                |r| r.status.reason_code().to_string(),
            ),
            message: message.or_else(|| {
                (state == "failed" && winner.is_none())
                    .then(|| record.reason.clone())
                    .flatten()
            }),
            input: input_name(i as u32),
            peer: winner.map(|r| r.name.clone()).unwrap_or_default(),
            engine: winner
                .map(|r| r.engine.name().to_string())
                .unwrap_or_default(),
            arch: winner.map(|r| r.arch.clone()).unwrap_or_default(),
            attempts: record.attempts.max(task.attempts),
            duration_ms: winner.map_or(0, |r| r.duration_ms),
            stdout_sha256: winner.map(|r| r.stdout.to_hex()).unwrap_or_default(),
            stderr_sha256: winner.map(|r| r.stderr.to_hex()).unwrap_or_default(),
            output_truncated: winner.is_some_and(|r| r.truncated),
            files: winner
                .map(|r| {
                    r.files
                        .iter()
                        .map(|f| FileReport {
                            path: f.path.clone(),
                            size: f.size,
                            sha256: f.hash.to_hex(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            runs: if verified {
                record
                    .runs
                    .iter()
                    .enumerate()
                    .map(|(n, r)| RunReport {
                        peer: r.name.clone(),
                        arch: r.arch.clone(),
                        engine: r.engine.name().to_string(),
                        stdout_sha256: r.stdout.to_hex(),
                        kept: record.winner == Some(n),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            mismatch: record.mismatch,
        });
    }
    let duration_ms = job
        .record
        .finished_ms
        .unwrap_or_else(crate::clock::now_ms)
        .saturating_sub(job.record.created_ms);
    let mut report = JobReport::new(
        id.to_string(),
        job.manifest.module_hash.to_hex(),
        duration_ms,
        tasks,
    );
    report.tasks_total = u32::try_from(job.tasks.len()).unwrap_or(u32::MAX);
    report.tasks_done = done;
    report.tasks_failed = failed;
    report.state = job.record.state.clone();
    report.devices = devices;
    report.refusals = job.refusals.clone();
    report.mismatches = job.tasks.iter().filter(|t| t.mismatch).count() as u32;
    report.seq = job.seq;
    report.wall_us = job
        .started
        .zip(job.ended)
        .map(|(s, e)| u64::try_from(e.duration_since(s).as_micros()).unwrap_or(u64::MAX));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tasks_are_queued_ahead_by_their_run_time() {
        // Too few results, or too few of them short: late binding.
        assert_eq!(ahead(7, 7, 0), 1);
        assert_eq!(ahead(100, 89, 0), 1);
        // Under a millisecond: as many as a device may hold.
        assert_eq!(ahead(100, 100, 0), MAX_AHEAD);
        // 10 ms each: ~32 ms of work ahead.
        assert_eq!(ahead(100, 100, 1000), 3);
        // 19 ms each: one, as for long tasks.
        assert_eq!(ahead(100, 95, 95 * 19), 1);
    }
}
