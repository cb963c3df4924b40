//! The coordinator: the daemon that a job was submitted to. It signs the
//! manifest, keeps the job and its tasks in sled, asks the scheduler where
//! each task goes, takes the results (receipts checked, output files fetched
//! by hash first), and answers `corral job` / `corral jobs`. A restarted
//! coordinator resumes its unfinished jobs from the store.

mod archive;
mod events;
#[cfg(test)]
mod invariants;
mod job;
mod lease;
#[cfg(test)]
mod lease_tests;
mod live;
mod pins;
mod placed;
#[cfg(test)]
mod proptest;
mod records;
mod report;
mod submit;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::envelope::{Signed, SigningKey};
use corral_protocol::hash::{ContentHash, ContentHasher};
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::receipt::{TaskReceipt, TaskStatus};
use corral_scheduler::batch::{Decision, Pool, TaskState, Worker};

pub use archive::{Archive, Listing};
pub use events::ResultNotStored;
use job::Job;
use lease::speed_for;
pub use live::MAX_LIVE_READ;
pub use placed::Unwanted;
use records::{JobRecord, JobState, TaskRunState};

use crate::blobs::BlobStore;
use crate::clock::{Clock, SystemClock};
use crate::control::ControlError;
use crate::runtime::QUICK_COMPILE_BYTES;
use crate::store::{Records, Store};

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
    /// The round trip (ms) of its path when it is reached only through a
    /// relay; `None` over the LAN or any direct path (see
    /// [`lease::transfer_ms`]).
    pub relayed_rtt_ms: Option<u64>,
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

/// The jobs this node coordinates. Its clock `C` is read for every time it
/// decides by (cooldowns, receipt checks, when a job ended); tests give it
/// a [`ManualClock`](crate::clock::ManualClock).
pub struct Coordinator<C: Clock = SystemClock> {
    clock: C,
    me: PeerKey,
    key: SigningKey,
    store: Store,
    blobs: BlobStore,
    jobs: BTreeMap<JobId, Job>,
    /// Which peers hold which modules (they returned a result of it), and
    /// whether their last run of it was on the JIT (its code is compiled
    /// there).
    warm: BTreeMap<(PeerKey, ContentHash), bool>,
}

/// Most (peer, module) pairs remembered as warm.
const MAX_WARM: usize = 4096;

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

impl Coordinator<SystemClock> {
    /// The coordinator of this node; unfinished jobs in the store resume.
    pub fn load(me: PeerKey, key: SigningKey, store: Store, blobs: BlobStore) -> Self {
        Self::load_with_clock(SystemClock, me, key, store, blobs)
    }
}

impl<C: Clock> Coordinator<C> {
    /// As [`Coordinator::load`], reading time from `clock`.
    pub fn load_with_clock(
        clock: C,
        me: PeerKey,
        key: SigningKey,
        store: Store,
        blobs: BlobStore,
    ) -> Self {
        let mut coordinator = Self {
            clock,
            me,
            key,
            store,
            blobs,
            jobs: BTreeMap::new(),
            warm: Default::default(),
        };
        let records: Vec<(Vec<u8>, JobRecord)> = coordinator.store.scan_records(Records::Jobs, b"");
        for (id, record) in records {
            if record.state != JobState::Running {
                continue;
            }
            match coordinator.archive().restore(&id, record) {
                Ok(mut job) => {
                    job.resumed = Some(Box::new(job::Resumed {
                        at_ms: coordinator.clock.now_ms(),
                        attempts: job.tasks.iter().map(|t| t.attempts).collect(),
                    }));
                    let job_id = job.manifest.job;
                    tracing::info!(job = %job_id, "resuming an unfinished job");
                    coordinator.jobs.insert(job_id, job);
                }
                Err(e) => tracing::warn!("a stored job cannot be resumed: {e:#}"),
            }
        }
        coordinator
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
                        let module = (c.peer, job.manifest.module_hash);
                        let compiled = self.warm.get(&module).copied().unwrap_or(false);
                        let big = job.manifest.module_size > QUICK_COMPILE_BYTES as u64;
                        let (speed, engine) =
                            speed_for(&c.engines, job.manifest.engine, big && !compiled);
                        Worker {
                            peer: c.peer,
                            slots_free: c
                                .slots
                                .saturating_sub(u16::try_from(others).unwrap_or(u16::MAX)),
                            slots_total: c.slots,
                            held_elsewhere: u16::try_from(others).unwrap_or(u16::MAX),
                            ahead: job.ahead(c.slots),
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
                            cached: c.peer == self.me || self.warm.contains_key(&module),
                            transfer_ms: lease::transfer_ms(c.relayed_rtt_ms, &job.manifest),
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
                        t.state = TaskRunState::Running;
                        // Kept, so a restarted coordinator numbers its next
                        // attempt past every one a worker has seen, and
                        // takes the results of the runs it placed.
                        t.attempts = t.attempts.max(attempt);
                        t.placed = records::placed_of(&job.batch.tasks()[index as usize]);
                        job.unwritten.insert(index);
                    }
                    job.awaiting.insert((index, peer));
                    actions.push(Action::Offer {
                        job: id,
                        index,
                        peer,
                        attempt,
                    });
                }
                Decision::Cooldown {
                    peer,
                    for_ms,
                    reason,
                } => lease::cool_off(
                    job,
                    &id,
                    peer,
                    self.clock.now_ms().saturating_add(for_ms),
                    &reason,
                ),
                Decision::Cancel { index, peer } => actions.push(Action::Cancel {
                    job: id,
                    index,
                    peer,
                }),
                Decision::GiveUp { index, reason } => {
                    if let Some(t) = job.tasks.get_mut(index as usize) {
                        t.state = TaskRunState::Failed;
                        t.reason = Some(reason);
                        t.attempts = job.batch.tasks()[index as usize].attempts;
                        let _ = job.write_task(&self.store, index);
                    }
                }
            }
        }
        self.finish_if_done(id);
        actions
    }

    /// Writes the records of the tasks placed since they were last
    /// written (see `Job::unwritten`): the daemon calls it a few times a
    /// second, and before it stops. A record that cannot be written is
    /// tried again next time.
    pub fn write_placements(&mut self) {
        for job in self.jobs.values_mut() {
            job.write_unwritten(&self.store);
        }
    }

    fn finish_if_done(&mut self, id: JobId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.is_live() || !job.batch.is_finished() {
            return;
        }
        job.write_unwritten(&self.store);
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
        job.record.state = if failed {
            JobState::Failed
        } else {
            JobState::Completed
        };
        job.live = None;
        job.record.finished_ms = Some(self.clock.now_ms());
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

    /// Cancels a job: no more offers, running tasks are told to stop.
    pub fn cancel(&mut self, id: &JobId) -> Result<Vec<Action>, ControlError> {
        let job = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| ControlError::not_found(format!("no job {id} on this node")))?;
        if !job.is_live() {
            return Err(ControlError::refused(format!(
                "job {id} has already ended ({})",
                job.record.state
            )));
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
        job.write_unwritten(&self.store);
        job.record.state = JobState::Cancelled;
        job.live = None;
        job.record.finished_ms = Some(self.clock.now_ms());
        job.ended = Some(std::time::Instant::now());
        job.seq += 1;
        self.store
            .put_record(Records::Jobs, id.as_bytes(), &job.record)
            .map_err(|e| ControlError::internal(format!("{e:#}")))?;
        Ok(actions)
    }

    /// A job's change counter and whether it still runs (cheap, for
    /// watchers); `None` for a job not in memory.
    pub fn progress(&self, id: &JobId) -> Option<(u64, bool)> {
        self.jobs.get(id).map(|j| (j.seq, j.is_live()))
    }

    /// Changes whenever a job in memory does, or one comes or goes: the
    /// page reads the (store-scanning) jobs list again only then. 53 bits,
    /// so a JavaScript number holds it exactly.
    pub fn jobs_seq(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (id, job) in &self.jobs {
            id.as_bytes().hash(&mut hasher);
            job.seq.hash(&mut hasher);
        }
        hasher.finish() >> 11
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
