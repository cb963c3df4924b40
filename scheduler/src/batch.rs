//! The task state machine of one batch job on its coordinator, and the
//! placement of its tasks on the peers of the view (DESIGN §3).
//!
//! Pure and deterministic: the node tells it what happened (an offer was
//! accepted or refused, a result came back, a peer was lost) and asks it what
//! to do next; it answers with [`Decision`]s, each with its reason, which the
//! node carries out (and the simulator replays). Time is passed in.
//!
//! Rules: a task is queued → offered → running → done or failed; a refused
//! or lost task goes back to the queue at once; after `max_attempts` starts
//! it fails with the last reason. Placement is late-binding: a worker holds at
//! most one task more than its free slots, so a finished task pulls the next
//! and fast devices do more. Among workers with room, the task goes where it
//! is predicted to finish first: the worker's backlog plus one task, divided
//! by its calibrated speed. When the queue is empty, an idle worker that
//! would finish a running task sooner than its current holder runs a
//! duplicate; the first result wins and the other is cancelled.
//!
//! Verification (`--verify K`): each task runs on K distinct workers,
//! preferring workers of another class (arch and engine) than the runs it
//! already has; their result digests are compared. When they all agree the
//! task is done; on a mismatch one more run is made and the majority wins
//! (no majority: the task fails). Mismatches are kept on the task.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;

/// A worker as placement sees it (from the peer view).
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// The peer.
    pub peer: PeerKey,
    /// Free task slots it advertises.
    pub slots_free: u16,
    /// All its task slots (busy or not): with `speed`, what it adds to the
    /// mesh's rate.
    pub slots_total: u16,
    /// Tasks of other jobs it holds (as far as this coordinator knows): the
    /// one task a worker may hold beyond its slots is shared by all jobs.
    pub held_elsewhere: u16,
    /// Calibrated speed for the engine this job needs (operations per second);
    /// 0 means it cannot run the job at all.
    pub speed: u64,
    /// Its class for verification (e.g. `aarch64/jit`): runs of one task
    /// prefer different classes.
    pub class: String,
    /// It already holds the job's module (no transfer before the first
    /// task): preferred when the predicted finish is the same.
    pub cached: bool,
    /// Tasks it may hold queued beyond its slots: 1 (late binding, a
    /// finished task pulls the next); up to [`MAX_AHEAD`] for tasks much
    /// shorter than a round trip, whose slots would otherwise stand idle
    /// while the next offer travels.
    pub ahead: u16,
}

/// Most tasks a device holds queued beyond its slots (see [`Worker::ahead`]).
pub const MAX_AHEAD: u16 = 32;

/// Where a task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Running (or offered) on these workers, with the time each started.
    Running(BTreeMap<PeerKey, u64>),
    /// Finished; this worker's result is the one kept.
    Done(PeerKey),
    /// Given up, with the reason.
    Failed(String),
}

/// One task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its state.
    pub state: TaskState,
    /// How many times it was started from the queue (speculative copies of a
    /// straggler are part of the attempt they copy).
    pub attempts: u32,
    /// The reason of the last failed attempt.
    pub last_error: Option<String>,
    /// Results so far: who, and the digest of what they produced.
    pub results: Vec<(PeerKey, ContentHash)>,
    /// Agreeing results wanted: K, or K + 1 after a mismatch.
    pub needed: u8,
    /// Two runs of this task disagreed.
    pub mismatch: bool,
    /// Runs lost with their worker (it left or crashed), which do not count
    /// as attempts up to the batch's `max_losses`.
    pub losses: u32,
}

impl Task {
    fn in_flight(&self) -> usize {
        match &self.state {
            TaskState::Running(on) => on.len(),
            _ => 0,
        }
    }

    fn is_finished(&self) -> bool {
        matches!(self.state, TaskState::Done(_) | TaskState::Failed(_))
    }

    /// More runs this task needs placed now.
    fn wanted(&self) -> usize {
        if self.is_finished() {
            return 0;
        }
        usize::from(self.needed).saturating_sub(self.results.len() + self.in_flight())
    }

    /// Whether `peer` ran it or runs it already.
    fn involves(&self, peer: &PeerKey) -> bool {
        self.results.iter().any(|(p, _)| p == peer)
            || matches!(&self.state, TaskState::Running(on) if on.contains_key(peer))
    }
}

impl Worker {
    /// Tasks of this batch it may hold: its free slots plus those queued
    /// ahead ([`Worker::ahead`]), less what other jobs already hold there.
    pub fn capacity(&self) -> usize {
        let ahead = usize::from(self.ahead.clamp(1, MAX_AHEAD));
        let overall = (usize::from(self.slots_total) + ahead)
            .saturating_sub(usize::from(self.held_elsewhere));
        (usize::from(self.slots_free) + ahead).min(overall)
    }
}

/// What the node should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Offer task `index` to `peer` (attempt number `attempt`).
    Offer {
        /// The task.
        index: u32,
        /// The worker.
        peer: PeerKey,
        /// 1-based attempt.
        attempt: u32,
        /// Why this worker.
        reason: String,
    },
    /// Cancel task `index` on `peer` (its result is no longer wanted).
    Cancel {
        /// The task.
        index: u32,
        /// The worker.
        peer: PeerKey,
    },
    /// Task `index` failed for good.
    GiveUp {
        /// The task.
        index: u32,
        /// Why.
        reason: String,
    },
}

/// Settings of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Starts per task before it fails (plus one per extra verification run).
    pub max_attempts: u32,
    /// Allow straggler duplicates at the end of the batch.
    pub duplicates: bool,
    /// Distinct workers each task runs on (`--verify K`; 1: no verification).
    pub redundancy: u8,
    /// Runs of one task that may be lost with their worker before such losses
    /// count as attempts (devices come and go; a task that keeps taking its
    /// worker down still ends).
    pub max_losses: u32,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            duplicates: true,
            redundancy: 1,
            max_losses: 10,
        }
    }
}

/// The tasks of one job.
#[derive(Clone, Debug)]
pub struct Batch {
    config: BatchConfig,
    tasks: Vec<Task>,
    /// Tasks held per worker (running or offered).
    load: BTreeMap<PeerKey, usize>,
    /// Every task below this index is finished or fully placed (a hint that
    /// keeps scheduling a large batch from rescanning its head).
    first_open: usize,
    /// Each worker's speed when it was last given a task (straggler copies
    /// compare holders' speeds, and a holder may not be among the workers
    /// passed to a later round).
    speeds: BTreeMap<PeerKey, u64>,
    /// Tasks in the `Queued` state.
    waiting: usize,
    /// Tasks done or failed.
    finished: usize,
    /// Tasks running on exactly one worker, by that worker's speed: the
    /// straggler candidates, kept as tasks change so that the end of a
    /// large batch does not rescan every task on every round.
    singles: BTreeSet<(u64, u32)>,
    /// Each task's key in `singles`, if it is there.
    single_key: Vec<Option<u64>>,
}

/// The mesh as a whole, for the slow-worker rule: its rate (speed × slots
/// summed over every worker that can run the job, busy or not) and its
/// fastest slot. [`Batch::schedule`] works it out from the workers it is
/// given; a caller that passes only the workers with room (the simulator,
/// with 10,000 devices) passes it with [`Batch::schedule_in`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pool {
    /// Σ speed × slots.
    pub rate: u128,
    /// The fastest speed.
    pub fastest: u64,
    /// Tasks of other jobs waiting for the same workers (they are placed
    /// first, so this batch's queue comes after them).
    pub backlog: u128,
}

impl Pool {
    /// The pool of these workers.
    pub fn of(workers: &[Worker]) -> Self {
        Self {
            rate: workers
                .iter()
                .map(|w| u128::from(w.speed) * u128::from(w.slots_total.max(1)))
                .sum(),
            fastest: workers.iter().map(|w| w.speed).max().unwrap_or(0),
            backlog: 0,
        }
    }
}

impl Batch {
    /// `count` queued tasks.
    pub fn new(count: u32, config: BatchConfig) -> Self {
        let config = BatchConfig {
            redundancy: config.redundancy.max(1),
            ..config
        };
        let task = Task {
            state: TaskState::Queued,
            attempts: 0,
            last_error: None,
            results: Vec::new(),
            needed: config.redundancy,
            mismatch: false,
            losses: 0,
        };
        Self {
            config,
            tasks: vec![task; count as usize],
            load: BTreeMap::new(),
            first_open: 0,
            speeds: BTreeMap::new(),
            waiting: count as usize,
            finished: 0,
            singles: BTreeSet::new(),
            single_key: vec![None; count as usize],
        }
    }

    /// The settings.
    pub fn config(&self) -> BatchConfig {
        self.config
    }

    /// Every task, by index.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Tasks waiting for a worker (queued).
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    /// Runs `f` on task `index` and keeps the counts of queued and
    /// finished tasks right.
    fn tracked<R>(&mut self, index: u32, f: impl FnOnce(&mut Self) -> R) -> R {
        let state = |b: &Self| {
            b.tasks.get(index as usize).map_or((false, false), |t| {
                (t.state == TaskState::Queued, t.is_finished())
            })
        };
        let (queued_before, finished_before) = state(self);
        let r = f(self);
        let (queued, finished) = state(self);
        match (queued_before, queued) {
            (true, false) => self.waiting -= 1,
            (false, true) => self.waiting += 1,
            _ => {}
        }
        match (finished_before, finished) {
            (false, true) => self.finished += 1,
            (true, false) => self.finished -= 1,
            _ => {}
        }
        self.sync_single(index);
        r
    }

    /// Puts task `index` in or out of the straggler candidates.
    fn sync_single(&mut self, index: u32) {
        let Some(task) = self.tasks.get(index as usize) else {
            return;
        };
        let key = match &task.state {
            TaskState::Running(on) if on.len() == 1 => on
                .keys()
                .next()
                .map(|holder| self.speeds.get(holder).copied().unwrap_or(0)),
            _ => None,
        };
        let slot = &mut self.single_key[index as usize];
        if *slot != key {
            if let Some(old) = slot.take() {
                self.singles.remove(&(old, index));
            }
            if let Some(new) = key {
                self.singles.insert((new, index));
            }
            *slot = key;
        }
    }

    /// Whether every task is done or failed.
    pub fn is_finished(&self) -> bool {
        self.finished == self.tasks.len()
    }

    /// Marks task `index` done by `peer` without a run (a result restored
    /// from the coordinator's store after a restart).
    pub fn restore_done(&mut self, index: u32, peer: PeerKey, digest: ContentHash) {
        self.tracked(index, |b| {
            if let Some(task) = b.tasks.get_mut(index as usize) {
                let old = std::mem::replace(&mut task.state, TaskState::Done(peer));
                task.results = vec![(peer, digest)];
                b.load_release(&old);
            }
        })
    }

    /// Marks task `index` failed without a run (restored after a restart).
    pub fn restore_failed(&mut self, index: u32, reason: String, attempts: u32) {
        self.tracked(index, |b| {
            if let Some(task) = b.tasks.get_mut(index as usize) {
                task.attempts = attempts;
                let old = std::mem::replace(&mut task.state, TaskState::Failed(reason));
                b.load_release(&old);
            }
        })
    }

    /// Sets how many attempts task `index` has used (restored after a restart).
    pub fn restore_attempts(&mut self, index: u32, attempts: u32) {
        if let Some(task) = self.tasks.get_mut(index as usize) {
            task.attempts = attempts;
        }
    }

    fn load_release(&mut self, state: &TaskState) {
        if let TaskState::Running(on) = state {
            for peer in on.keys() {
                if let Some(n) = self.load.get_mut(peer) {
                    *n = n.saturating_sub(1);
                }
            }
        }
    }

    /// Tasks held by `peer` (running or offered).
    pub fn load_of(&self, peer: &PeerKey) -> usize {
        self.load.get(peer).copied().unwrap_or(0)
    }

    fn attempt_limit(&self, task: &Task) -> u32 {
        self.config.max_attempts + u32::from(task.needed).saturating_sub(1)
    }

    /// Takes task `index` off `peer`; back to the queue (or failed) when no
    /// other copy runs and more are needed.
    fn release(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.tracked(index, |b| b.release_untracked(index, peer, reason))
    }

    fn release_untracked(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        let Some(task) = self.tasks.get(index as usize) else {
            return Vec::new();
        };
        let limit = self.attempt_limit(task);
        let task = &mut self.tasks[index as usize];
        let TaskState::Running(on) = &mut task.state else {
            return Vec::new();
        };
        if on.remove(peer).is_none() {
            return Vec::new();
        }
        if let Some(n) = self.load.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
        self.first_open = self.first_open.min(index as usize);
        task.last_error = Some(reason.to_string());
        if !on.is_empty() {
            return Vec::new();
        }
        if task.attempts >= limit {
            let why = format!("gave up after {} attempts: {reason}", task.attempts);
            task.state = TaskState::Failed(why.clone());
            vec![Decision::GiveUp { index, reason: why }]
        } else {
            task.state = TaskState::Queued;
            Vec::new()
        }
    }

    /// `peer` refused task `index`.
    pub fn on_rejected(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.release(index, peer, &format!("{} refused: {reason}", peer.short()))
    }

    /// `peer` cannot take task `index` just now (no free slot, its owner is
    /// back, it is leaving): back to the queue without using up an attempt.
    pub fn on_busy(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        if let Some(task) = self.tasks.get_mut(index as usize)
            && matches!(&task.state, TaskState::Running(on) if on.len() == 1 && on.contains_key(peer))
        {
            task.attempts = task.attempts.saturating_sub(1);
        }
        self.release(index, peer, &format!("{} refused: {reason}", peer.short()))
    }

    /// Task `index` could not be run on `peer` (a lost connection, a worker
    /// error). A task that ran and trapped is a result, not a failure.
    pub fn on_failed(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.release(index, peer, reason)
    }

    /// Fails every task waiting in the queue (no worker will take them).
    pub fn fail_queued(&mut self, reason: &str) -> Vec<Decision> {
        let mut decisions = Vec::new();
        for (index, task) in self.tasks.iter_mut().enumerate() {
            if task.state == TaskState::Queued {
                task.state = TaskState::Failed(reason.to_string());
                self.waiting -= 1;
                self.finished += 1;
                decisions.push(Decision::GiveUp {
                    index: index as u32,
                    reason: reason.to_string(),
                });
            }
        }
        decisions
    }

    /// Whether any task runs (or is offered) now.
    pub fn any_running(&self) -> bool {
        self.load.values().any(|&n| n > 0)
    }

    /// `peer` left: every task it held goes back to the queue at once.
    pub fn on_peer_lost(&mut self, peer: &PeerKey) -> Vec<Decision> {
        let held: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| matches!(&self.tasks[i as usize].state, TaskState::Running(on) if on.contains_key(peer)))
            .collect();
        held.into_iter()
            .flat_map(|i| self.on_lost(i, peer, &format!("{} left the mesh", peer.short())))
            .collect()
    }

    /// Task `index` was lost with `peer` (it left, crashed, or could not be
    /// reached): back to the queue; the attempt is given back while the task
    /// has losses to spare, since churn is not the task's fault.
    pub fn on_lost(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        let budget = self.config.max_losses;
        if let Some(task) = self.tasks.get_mut(index as usize)
            && matches!(&task.state, TaskState::Running(on) if on.len() == 1 && on.contains_key(peer))
            && task.losses < budget
        {
            task.losses += 1;
            task.attempts = task.attempts.saturating_sub(1);
        }
        self.release(index, peer, reason)
    }

    /// A result of task `index` from `peer` (without verification).
    pub fn on_done(&mut self, index: u32, peer: &PeerKey) -> Vec<Decision> {
        self.on_result(index, peer, ContentHash::from_bytes([0; 32]))
    }

    /// A result of task `index` from `peer`, with the digest of what it
    /// produced. Without verification the first result wins and the other
    /// copies are cancelled. A result from a worker that no longer holds the
    /// task (a late result, or one held across a coordinator restart) is
    /// taken while the task is unfinished; once it is finished, or from a
    /// worker that already gave one, a result changes nothing.
    pub fn on_result(&mut self, index: u32, peer: &PeerKey, digest: ContentHash) -> Vec<Decision> {
        self.tracked(index, |b| b.on_result_untracked(index, peer, digest))
    }

    fn on_result_untracked(
        &mut self,
        index: u32,
        peer: &PeerKey,
        digest: ContentHash,
    ) -> Vec<Decision> {
        let Some(task) = self.tasks.get(index as usize) else {
            return Vec::new();
        };
        if task.is_finished() || task.results.iter().any(|(p, _)| p == peer) {
            return Vec::new();
        }
        if let TaskState::Running(on) = &self.tasks[index as usize].state
            && on.contains_key(peer)
            && let Some(n) = self.load.get_mut(peer)
        {
            *n = n.saturating_sub(1);
        }
        let k = self.config.redundancy;
        let task = &mut self.tasks[index as usize];
        let mut on = match std::mem::replace(&mut task.state, TaskState::Queued) {
            TaskState::Running(on) => on,
            _ => BTreeMap::new(),
        };
        on.remove(peer);
        task.results.push((*peer, digest));
        let verdict = if task.results.len() < usize::from(task.needed) {
            None
        } else {
            let mut counts: BTreeMap<ContentHash, usize> = BTreeMap::new();
            for (_, d) in &task.results {
                *counts.entry(*d).or_insert(0) += 1;
            }
            let (best, count) = counts
                .iter()
                .max_by_key(|(_, c)| **c)
                .map(|(d, c)| (*d, *c))
                .unwrap_or((digest, 0));
            let winner = task
                .results
                .iter()
                .find(|(_, d)| *d == best)
                .map(|(p, _)| *p)
                .unwrap_or(*peer);
            if counts.len() == 1 {
                Some(Ok(winner))
            } else if task.needed == k {
                task.mismatch = true;
                task.needed = k.saturating_add(1);
                None
            } else if count * 2 > task.results.len() {
                Some(Ok(winner))
            } else {
                Some(Err(format!(
                    "results disagree: {} runs gave {} different outputs",
                    task.results.len(),
                    counts.len()
                )))
            }
        };
        match verdict {
            None => {
                let limit = self.config.max_attempts + u32::from(task.needed).saturating_sub(1);
                if on.is_empty() && task.attempts >= limit {
                    let why = format!(
                        "gave up after {} attempts: {} of {} runs gave a result",
                        task.attempts,
                        task.results.len(),
                        task.needed
                    );
                    task.state = TaskState::Failed(why.clone());
                    return vec![Decision::GiveUp { index, reason: why }];
                }
                task.state = if on.is_empty() {
                    TaskState::Queued
                } else {
                    TaskState::Running(on)
                };
                self.first_open = self.first_open.min(index as usize);
                Vec::new()
            }
            Some(outcome) => {
                let mut decisions: Vec<Decision> = on
                    .keys()
                    .map(|p| Decision::Cancel { index, peer: *p })
                    .collect();
                for p in on.keys() {
                    if let Some(n) = self.load.get_mut(p) {
                        *n = n.saturating_sub(1);
                    }
                }
                match outcome {
                    Ok(winner) => task.state = TaskState::Done(winner),
                    Err(why) => {
                        task.state = TaskState::Failed(why.clone());
                        decisions.push(Decision::GiveUp { index, reason: why });
                    }
                }
                decisions
            }
        }
    }

    /// Places queued tasks (and, at the end, duplicates of stragglers) on
    /// `workers`. `now_ms` stamps the starts.
    pub fn schedule(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        self.schedule_in(workers, Pool::of(workers), now_ms)
    }

    /// As [`Batch::schedule`], with the mesh's pool given rather than worked
    /// out from `workers` (which may then be only those with room).
    pub fn schedule_in(&mut self, workers: &[Worker], pool: Pool, now_ms: u64) -> Vec<Decision> {
        let mut decisions = if self.config.redundancy == 1 {
            self.place_single(workers, pool, now_ms)
        } else {
            self.place_verified(workers, now_ms)
        };
        if self.config.duplicates
            && self.config.redundancy == 1
            && !self.tasks[self.first_open.min(self.tasks.len())..]
                .iter()
                .any(|t| t.wanted() > 0)
        {
            decisions.extend(self.duplicate_stragglers(workers, now_ms));
        }
        decisions
    }

    /// Whether task `index` can be placed now; moves the `first_open` hint
    /// past it when it never needs placing again.
    fn placeable(&mut self, index: usize) -> bool {
        let task = &self.tasks[index];
        let exhausted = task.attempts >= self.attempt_limit(task);
        if task.wanted() == 0 || exhausted {
            if index == self.first_open {
                self.first_open = index + 1;
            }
            return false;
        }
        true
    }

    /// Starts a run of task `index` on `worker` and says so.
    fn start(&mut self, index: usize, worker: &Worker, now_ms: u64) -> Decision {
        let ahead = self.load_of(&worker.peer);
        self.speeds.insert(worker.peer, worker.speed);
        if self.tasks[index].state == TaskState::Queued {
            self.waiting -= 1;
        }
        let task = &mut self.tasks[index];
        task.attempts += 1;
        match &mut task.state {
            TaskState::Running(on) => {
                on.insert(worker.peer, now_ms);
            }
            state => *state = TaskState::Running(BTreeMap::from([(worker.peer, now_ms)])),
        }
        *self.load.entry(worker.peer).or_insert(0) += 1;
        self.sync_single(index as u32);
        let task = &self.tasks[index];
        Decision::Offer {
            index: index as u32,
            peer: worker.peer,
            attempt: task.attempts,
            reason: format!(
                "earliest predicted finish: {ahead} task(s) ahead at {} ops/s",
                worker.speed
            ),
        }
    }

    /// One run per task: the workers with room sit in a heap ordered by
    /// predicted finish, so placing T tasks on W workers costs
    /// O((W + T) log W), not O(T × W) (the simulator runs 10,000 devices).
    fn place_single(&mut self, workers: &[Worker], pool: Pool, now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        // The mesh's rate (ops/s over every slot, busy or not) and its
        // fastest slot, for the slow-worker rule below.
        let rate = pool.rate;
        let fastest = u128::from(pool.fastest);
        let mut queue = self.waiting as u128 + pool.backlog;
        let mut heap: BinaryHeap<Candidate<'_>> = workers
            .iter()
            .filter(|w| w.speed > 0)
            .map(|w| Candidate {
                load: self.load_of(&w.peer),
                worker: w,
            })
            .filter(|c| c.has_room())
            .collect();
        let mut index = self.first_open;
        while index < self.tasks.len() && !heap.is_empty() {
            if !self.placeable(index) {
                index += 1;
                continue;
            }
            let Some(mut best) = heap.pop() else { break };
            // A slow worker takes a task only if it would finish it before
            // the rest of the mesh gets through the queue, within a factor
            // of two: waves/speed <= 2 (queue/rate + 1/fastest), where the
            // task runs in its `waves`-th round of the worker's slots (a
            // task queued behind the worker's own counts their time too).
            // Otherwise the task waits for a faster slot (a Pi Zero does not
            // get the last tasks of a batch while desktops are a moment from
            // free).
            let waves = (best.load + 1).div_ceil(usize::from(best.worker.slots_total.max(1)));
            if !useful(waves, best.worker.speed, rate, fastest, queue) {
                continue;
            }
            decisions.push(self.start(index, best.worker, now_ms));
            queue = queue.saturating_sub(1);
            best.load += 1;
            if best.has_room() {
                heap.push(best);
            }
            index += 1;
        }
        decisions
    }

    /// K runs per task on distinct workers, another class first.
    fn place_verified(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let has_room = |load: &BTreeMap<PeerKey, usize>, w: &Worker| {
            w.speed > 0 && load.get(&w.peer).copied().unwrap_or(0) < w.capacity()
        };
        let class: BTreeMap<PeerKey, &str> =
            workers.iter().map(|w| (w.peer, w.class.as_str())).collect();
        let mut index = self.first_open;
        while index < self.tasks.len() {
            if !workers.iter().any(|w| has_room(&self.load, w)) {
                break;
            }
            if !self.placeable(index) {
                index += 1;
                continue;
            }
            let wanted = self.tasks[index].wanted();
            let task = &self.tasks[index];
            let used: Vec<&str> = task
                .results
                .iter()
                .map(|(p, _)| *p)
                .chain(match &task.state {
                    TaskState::Running(on) => on.keys().copied().collect(),
                    _ => Vec::new(),
                })
                .filter_map(|p| class.get(&p).copied())
                .collect();
            // Earliest predicted finish, as in `place_single`; a class this
            // task has not run on yet comes first.
            let best = workers
                .iter()
                .filter(|w| has_room(&self.load, w) && !task.involves(&w.peer))
                .min_by(|a, b| {
                    let seen_a = used.contains(&a.class.as_str());
                    let seen_b = used.contains(&b.class.as_str());
                    seen_a.cmp(&seen_b).then_with(|| {
                        Candidate::order(a, self.load_of(&a.peer), b, self.load_of(&b.peer))
                    })
                });
            let Some(worker) = best else {
                index += 1;
                continue;
            };
            decisions.push(self.start(index, worker, now_ms));
            if wanted == 1 {
                index += 1;
            }
        }
        decisions
    }

    /// Holders whose speed changed since they were given their tasks (a
    /// device slowed by other work on its cores, or given its CPU back) are
    /// compared by their speed now. Only holders among `workers` are seen.
    fn refresh_holder_speeds(&mut self, workers: &[Worker]) {
        let changed: BTreeMap<PeerKey, u64> = workers
            .iter()
            .filter(|w| self.speeds.get(&w.peer).is_some_and(|&s| s != w.speed))
            .filter(|w| self.load_of(&w.peer) > 0)
            .map(|w| (w.peer, w.speed))
            .collect();
        if changed.is_empty() {
            return;
        }
        self.speeds.extend(&changed);
        let held: Vec<u32> = self
            .singles
            .iter()
            .map(|&(_, index)| index)
            .filter(|&index| match &self.tasks[index as usize].state {
                TaskState::Running(on) => on.keys().any(|p| changed.contains_key(p)),
                _ => false,
            })
            .collect();
        for index in held {
            self.sync_single(index);
        }
    }

    /// Each idle worker takes a copy of the running task whose holder is the
    /// slowest, if it is faster than that holder. Sorting the stragglers once
    /// makes this O(T log T) rather than O(idle workers × T).
    fn duplicate_stragglers(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        // Idle: nothing of this batch, and a slot free of other jobs too.
        let idle: Vec<&Worker> = workers
            .iter()
            .filter(|w| w.speed > 0 && w.slots_free > 0 && self.load_of(&w.peer) == 0)
            .collect();
        if idle.is_empty() {
            return Vec::new();
        }
        self.refresh_holder_speeds(workers);
        let mut decisions = Vec::new();
        for idle in idle {
            // An idle worker holds nothing, so it is never the holder; the
            // slowest holder left is the only candidate worth checking.
            let Some(&(holder_speed, index)) = self.singles.first() else {
                break;
            };
            if holder_speed >= idle.speed {
                continue;
            }
            self.speeds.insert(idle.peer, idle.speed);
            let task = &mut self.tasks[index as usize];
            if let TaskState::Running(on) = &mut task.state {
                on.insert(idle.peer, now_ms);
            }
            self.sync_single(index);
            let task = &self.tasks[index as usize];
            // A speculative copy is part of the same attempt: it does not use
            // up one of the task's tries.
            *self.load.entry(idle.peer).or_insert(0) += 1;
            decisions.push(Decision::Offer {
                index,
                peer: idle.peer,
                attempt: task.attempts,
                reason: "straggler: an idle, faster worker runs a copy; the first result wins"
                    .into(),
            });
        }
        decisions
    }
}

/// How much slower than the mesh's pace a worker may be and still take a
/// task (see `place_single`).
const SLOW_FACTOR: u128 = 2;

/// Whether a worker of `speed` may take a task that would run in its
/// `waves`-th round of slots, with `queue` tasks waiting in a mesh of `rate`
/// whose fastest slot has `fastest`: waves/speed <= SLOW_FACTOR ×
/// (queue/rate + 1/fastest), in integers.
fn useful(waves: usize, speed: u64, rate: u128, fastest: u128, queue: u128) -> bool {
    waves as u128 * rate * fastest <= SLOW_FACTOR * u128::from(speed) * (queue * fastest + rate)
}

impl Batch {
    /// The slowest worker that would be given a task now (see
    /// `place_single`): a caller with thousands of workers may pass only
    /// those at least this fast, to the same effect.
    pub fn slowest_useful(&self, pool: Pool) -> u64 {
        let fastest = u128::from(pool.fastest);
        let queue = self.waiting as u128 + pool.backlog;
        let den = SLOW_FACTOR * (queue * fastest + pool.rate);
        if den == 0 {
            return 0;
        }
        let s = (pool.rate * fastest).div_ceil(den);
        u64::try_from(s).unwrap_or(u64::MAX)
    }
}

/// A worker with room, in the placement heap.
struct Candidate<'a> {
    worker: &'a Worker,
    /// Tasks it holds, counting this round's placements.
    load: usize,
}

impl Candidate<'_> {
    /// A worker holds at most one task more than its free slots.
    fn has_room(&self) -> bool {
        self.load < self.worker.capacity()
    }

    /// `Less` when `a` is the better place for the next task: the earlier
    /// predicted finish (backlog + 1) / speed, compared as fractions to stay
    /// in integers; then a worker holding the module; then the smaller key.
    fn order(a: &Worker, load_a: usize, b: &Worker, load_b: usize) -> std::cmp::Ordering {
        let la = load_a as u128 + 1;
        let lb = load_b as u128 + 1;
        (la * u128::from(b.speed))
            .cmp(&(lb * u128::from(a.speed)))
            .then(b.cached.cmp(&a.cached))
            .then(a.peer.cmp(&b.peer))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate<'_> {
    /// The max-heap pops the best candidate.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Self::order(other.worker, other.load, self.worker, self.load)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(n: u8) -> PeerKey {
        PeerKey::from_bytes([n; 32])
    }

    fn worker(n: u8, slots: u16, speed: u64) -> Worker {
        Worker {
            peer: key(n),
            slots_free: slots,
            slots_total: slots.max(1),
            held_elsewhere: 0,
            speed,
            class: format!("class-{n}"),
            cached: false,
            ahead: 1,
        }
    }

    fn offers(decisions: &[Decision]) -> Vec<(u32, PeerKey)> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Offer { index, peer, .. } => Some((*index, *peer)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn late_binding_keeps_a_worker_one_task_ahead_of_its_slots() {
        let mut batch = Batch::new(10, BatchConfig::default());
        let placed = offers(&batch.schedule(&[worker(1, 2, 100)], 0));
        assert_eq!(placed.len(), 3, "2 free slots + 1 queued ahead");
        // A finished task pulls the next.
        batch.on_done(placed[0].0, &key(1));
        assert_eq!(offers(&batch.schedule(&[worker(1, 2, 100)], 1)).len(), 1);
    }

    #[test]
    fn faster_workers_get_more_tasks() {
        let mut batch = Batch::new(6, BatchConfig::default());
        let workers = [worker(1, 4, 400), worker(2, 4, 100)];
        let placed = offers(&batch.schedule(&workers, 0));
        let fast = placed.iter().filter(|(_, p)| *p == key(1)).count();
        let slow = placed.iter().filter(|(_, p)| *p == key(2)).count();
        assert!(fast > slow, "fast {fast}, slow {slow}");
    }

    #[test]
    fn a_lost_peer_requeues_its_tasks_at_once_and_attempts_are_bounded() {
        let mut batch = Batch::new(
            1,
            BatchConfig {
                max_attempts: 2,
                duplicates: false,
                redundancy: 1,
                max_losses: 10,
            },
        );
        assert_eq!(
            offers(&batch.schedule(&[worker(1, 1, 10)], 0)),
            vec![(0, key(1))]
        );
        assert!(batch.on_peer_lost(&key(1)).is_empty());
        assert_eq!(batch.tasks()[0].state, TaskState::Queued);
        // Losing the worker did not use up an attempt; failures do.
        assert_eq!(batch.tasks()[0].attempts, 0);
        for peer in [2, 3] {
            assert_eq!(
                offers(&batch.schedule(&[worker(peer, 1, 10)], 1)),
                vec![(0, key(peer))]
            );
            let given_up = batch.on_failed(0, &key(peer), "trap: unreachable");
            if peer == 3 {
                assert!(
                    matches!(&given_up[..], [Decision::GiveUp { index: 0, reason }] if reason.contains("2 attempts") && reason.contains("unreachable"))
                );
            }
        }
        assert!(batch.is_finished());
    }

    #[test]
    fn losses_beyond_the_budget_count_as_attempts() {
        let mut batch = Batch::new(
            1,
            BatchConfig {
                max_attempts: 2,
                duplicates: false,
                redundancy: 1,
                max_losses: 3,
            },
        );
        let mut gave_up = Vec::new();
        for t in 0..10u8 {
            if batch.is_finished() {
                break;
            }
            assert_eq!(offers(&batch.schedule(&[worker(t, 1, 10)], 0)).len(), 1);
            gave_up = batch.on_lost(0, &key(t), "gone");
        }
        assert_eq!(batch.tasks()[0].losses, 3);
        assert!(
            matches!(&gave_up[..], [Decision::GiveUp { index: 0, reason }] if reason.contains("2 attempts")),
            "{gave_up:?}"
        );
    }

    #[test]
    fn a_slow_worker_is_left_out_at_the_end_of_a_batch_and_used_when_the_queue_is_long() {
        // A desktop (8 slots, 100) and a Pi Zero (1 slot, 5): three tasks
        // are best left to the desktop; two hundred are not.
        let workers = [worker(1, 8, 100), worker(2, 1, 5)];
        let mut short = Batch::new(3, BatchConfig::default());
        let placed = offers(&short.schedule(&workers, 0));
        assert!(placed.iter().all(|(_, p)| *p == key(1)), "{placed:?}");
        let mut long = Batch::new(200, BatchConfig::default());
        let placed = offers(&long.schedule(&workers, 0));
        assert!(placed.iter().any(|(_, p)| *p == key(2)), "{placed:?}");
        // The threshold it reports is the rule it applies.
        let pool = Pool::of(&workers);
        let cut = short.slowest_useful(pool);
        assert!(cut > 5 && cut <= 100, "{cut}");
        assert!(useful(1, cut, pool.rate, 100, short.waiting() as u128));
        assert!(!useful(1, cut - 1, pool.rate, 100, short.waiting() as u128));
        // The fastest worker always gets work: nothing waits for nobody.
        let mut alone = Batch::new(1, BatchConfig::default());
        assert_eq!(offers(&alone.schedule(&[worker(2, 1, 5)], 0)).len(), 1);
    }

    #[test]
    fn a_slow_worker_takes_no_task_behind_its_own_that_the_mesh_would_finish_sooner() {
        // Speeds 100, 50 and 25, one slot each, nine tasks: each worker may
        // hold one task ahead, but the slowest would start a second only
        // after four units of time, while the other two clear the other
        // four tasks in under three.
        let workers = [worker(1, 1, 100), worker(2, 1, 50), worker(3, 1, 25)];
        let mut batch = Batch::new(9, BatchConfig::default());
        let placed = offers(&batch.schedule(&workers, 0));
        let on = |n: u8| placed.iter().filter(|(_, p)| *p == key(n)).count();
        assert_eq!((on(1), on(2), on(3)), (2, 2, 1), "{placed:?}");
        // With a long queue it does take one ahead.
        let mut long = Batch::new(40, BatchConfig::default());
        let placed = offers(&long.schedule(&workers, 0));
        assert_eq!(placed.iter().filter(|(_, p)| *p == key(3)).count(), 2);
    }

    #[test]
    fn a_busy_worker_does_not_use_up_attempts() {
        let mut batch = Batch::new(1, BatchConfig::default());
        for t in 0..10 {
            assert_eq!(offers(&batch.schedule(&[worker(1, 1, 10)], t)).len(), 1);
            batch.on_busy(0, &key(1), "no free slot");
        }
        assert_eq!(batch.tasks()[0].state, TaskState::Queued);
        assert_eq!(batch.tasks()[0].attempts, 0);
    }

    #[test]
    fn a_refusal_names_the_worker_and_requeues() {
        let mut batch = Batch::new(1, BatchConfig::default());
        batch.schedule(&[worker(1, 1, 10)], 0);
        batch.on_rejected(0, &key(1), "submitter not trusted");
        assert_eq!(batch.tasks()[0].state, TaskState::Queued);
        assert!(
            batch.tasks()[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused: submitter not trusted"))
        );
    }

    #[test]
    fn stragglers_are_duplicated_on_faster_idle_workers_and_the_first_result_wins() {
        let mut batch = Batch::new(1, BatchConfig::default());
        assert_eq!(
            offers(&batch.schedule(&[worker(1, 1, 10)], 0)),
            vec![(0, key(1))]
        );
        let decisions = batch.schedule(&[worker(1, 0, 10), worker(2, 1, 1000)], 5);
        assert_eq!(offers(&decisions), vec![(0, key(2))]);
        assert_eq!(
            batch.on_done(0, &key(2)),
            vec![Decision::Cancel {
                index: 0,
                peer: key(1)
            }]
        );
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(2)));
        // The slow copy's late result changes nothing.
        assert!(batch.on_done(0, &key(1)).is_empty());
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(2)));
    }

    #[test]
    fn a_holder_slowed_since_it_was_given_its_task_is_a_straggler_by_its_speed_now() {
        let mut batch = Batch::new(2, BatchConfig::default());
        let placed = offers(&batch.schedule(&[worker(1, 1, 100), worker(2, 1, 100)], 0));
        assert_eq!(placed.len(), 2);
        let (fast, slowed) = (placed[0], placed[1]);
        assert!(batch.on_done(fast.0, &fast.1).is_empty());
        let mut idle = worker(1, 1, 100);
        idle.peer = fast.1;
        let mut holder = worker(2, 0, 100);
        holder.peer = slowed.1;
        // As fast as it was: no copy.
        assert!(
            batch
                .schedule(&[idle.clone(), holder.clone()], 5)
                .is_empty()
        );
        // Its runs now show a fifth of that: the idle worker runs a copy.
        holder.speed = 20;
        assert_eq!(
            offers(&batch.schedule(&[idle, holder], 10)),
            vec![(slowed.0, fast.1)]
        );
    }

    #[test]
    fn a_worker_holding_the_module_wins_a_tie() {
        let mut batch = Batch::new(1, BatchConfig::default());
        let mut warm = worker(9, 1, 100);
        warm.cached = true;
        let placed = offers(&batch.schedule(&[worker(1, 1, 100), warm], 0));
        assert_eq!(placed, vec![(0, key(9))]);
    }

    #[test]
    fn workers_that_cannot_run_the_job_get_nothing() {
        let mut batch = Batch::new(3, BatchConfig::default());
        assert!(batch.schedule(&[worker(1, 8, 0)], 0).is_empty());
    }

    fn verify(k: u8) -> BatchConfig {
        BatchConfig {
            redundancy: k,
            ..BatchConfig::default()
        }
    }

    fn digest(n: u8) -> ContentHash {
        ContentHash::from_bytes([n; 32])
    }

    #[test]
    fn verification_runs_each_task_on_distinct_workers_of_different_classes() {
        let mut batch = Batch::new(1, verify(2));
        let mut workers = vec![worker(1, 4, 100), worker(2, 4, 100), worker(3, 4, 90)];
        workers[1].class = workers[0].class.clone();
        let placed = offers(&batch.schedule(&workers, 0));
        assert_eq!(placed.len(), 2);
        assert_ne!(placed[0].1, placed[1].1, "two distinct workers");
        assert!(
            placed.iter().any(|(_, p)| *p == key(3)),
            "the second run prefers the other class even though it is slower: {placed:?}"
        );
        assert!(batch.on_result(0, &placed[0].1, digest(7)).is_empty());
        assert_eq!(
            batch.tasks()[0].wanted(),
            0,
            "the other run is still in flight"
        );
        batch.on_result(0, &placed[1].1, digest(7));
        assert!(matches!(batch.tasks()[0].state, TaskState::Done(_)));
        assert!(!batch.tasks()[0].mismatch);
    }

    #[test]
    fn a_mismatch_gets_one_more_run_and_the_majority_wins() {
        let mut batch = Batch::new(1, verify(2));
        let workers = [worker(1, 1, 100), worker(2, 1, 100), worker(3, 1, 100)];
        let placed = offers(&batch.schedule(&workers, 0));
        assert_eq!(placed.len(), 2);
        batch.on_result(0, &key(1), digest(1));
        batch.on_result(0, &key(2), digest(66)); // a liar
        assert!(batch.tasks()[0].mismatch);
        let third = offers(&batch.schedule(&workers, 1));
        assert_eq!(
            third,
            vec![(0, key(3))],
            "the tie-breaker runs on the third worker"
        );
        batch.on_result(0, &key(3), digest(1));
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
    }

    #[test]
    fn three_different_answers_fail_the_task() {
        let mut batch = Batch::new(1, verify(2));
        let workers = [worker(1, 1, 100), worker(2, 1, 100), worker(3, 1, 100)];
        batch.schedule(&workers, 0);
        batch.on_result(0, &key(1), digest(1));
        batch.on_result(0, &key(2), digest(2));
        batch.schedule(&workers, 1);
        let decisions = batch.on_result(0, &key(3), digest(3));
        assert!(
            matches!(&decisions[..], [Decision::GiveUp { reason, .. }] if reason.contains("disagree")),
            "{decisions:?}"
        );
    }

    #[test]
    fn a_late_result_from_an_earlier_holder_is_taken_while_the_task_is_open() {
        let mut batch = Batch::new(1, BatchConfig::default());
        batch.schedule(&[worker(1, 1, 10)], 0);
        batch.on_peer_lost(&key(1));
        batch.schedule(&[worker(2, 1, 10)], 1);
        // Worker 1 was not dead after all: its result arrives first.
        let decisions = batch.on_result(0, &key(1), digest(1));
        assert_eq!(
            decisions,
            vec![Decision::Cancel {
                index: 0,
                peer: key(2)
            }]
        );
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
        assert_eq!(
            batch.load_of(&key(2)),
            0,
            "the cancelled copy frees its slot"
        );
    }

    #[derive(Clone, Debug)]
    enum Event {
        Schedule,
        Done(u32, u8),
        Failed(u32, u8),
        Rejected(u32, u8),
        Lost(u8),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Schedule),
            3 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Done(i, p)),
            1 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Failed(i, p)),
            1 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Rejected(i, p)),
            1 => (1u8..4).prop_map(Event::Lost),
        ]
    }

    #[test]
    fn a_device_holds_its_free_slots_plus_those_queued_ahead() {
        let mut w = worker(1, 2, 100);
        assert_eq!(w.capacity(), 3, "late binding: one ahead");
        w.ahead = 4;
        assert_eq!(w.capacity(), 6);
        w.held_elsewhere = 5;
        w.slots_free = 0;
        assert_eq!(w.capacity(), 1, "other jobs hold most of the queue");
        w.ahead = 100;
        w.held_elsewhere = 0;
        w.slots_free = 2;
        assert_eq!(w.capacity(), 2 + usize::from(MAX_AHEAD), "capped");
        let mut batch = Batch::new(20, BatchConfig::default());
        let mut w = worker(1, 2, 100);
        w.ahead = 3;
        let offers = batch.schedule(&[w], 0);
        assert_eq!(offers.len(), 5, "two slots and three queued: {offers:?}");
    }

    proptest! {
        #[test]
        fn no_task_is_lost_or_counted_twice_and_capacity_holds(
            events in prop::collection::vec(event(), 0..150),
            redundancy in 1u8..3,
            ahead in 1u16..=MAX_AHEAD,
        ) {
            let mut workers = [worker(1, 2, 300), worker(2, 1, 100), worker(3, 3, 50)];
            workers[0].ahead = ahead;
            let config = BatchConfig { redundancy, ..BatchConfig::default() };
            let mut batch = Batch::new(8, config);
            let mut finished: BTreeMap<u32, PeerKey> = BTreeMap::new();
            for (t, e) in events.into_iter().enumerate() {
                let decisions = match e {
                    Event::Schedule => batch.schedule(&workers, t as u64),
                    Event::Done(i, p) => batch.on_done(i, &key(p)),
                    Event::Failed(i, p) => batch.on_failed(i, &key(p), "x"),
                    Event::Rejected(i, p) => batch.on_rejected(i, &key(p), "busy"),
                    Event::Lost(p) => batch.on_peer_lost(&key(p)),
                };
                prop_assert_eq!(batch.tasks().len(), 8, "no task lost");
                let queued = batch.tasks().iter().filter(|t| t.state == TaskState::Queued).count();
                prop_assert_eq!(batch.waiting(), queued, "the queued count matches the tasks");
                prop_assert_eq!(
                    batch.is_finished(),
                    batch.tasks().iter().all(|t| matches!(t.state, TaskState::Done(_) | TaskState::Failed(_))),
                    "the finished count matches the tasks"
                );
                let singles = batch.tasks().iter().filter(|t| matches!(&t.state, TaskState::Running(on) if on.len() == 1)).count();
                prop_assert_eq!(batch.singles.len(), singles, "the straggler candidates match the tasks");
                for w in &workers {
                    prop_assert!(batch.load_of(&w.peer) <= w.capacity(), "capacity exceeded");
                    let held = batch.tasks().iter().filter(|t| matches!(&t.state, TaskState::Running(on) if on.contains_key(&w.peer))).count();
                    prop_assert_eq!(batch.load_of(&w.peer), held, "the load count matches the tasks held");
                }
                for d in &decisions {
                    if let Decision::Offer { index, .. } = d {
                        prop_assert!(!finished.contains_key(index), "a finished task was offered again");
                    }
                }
                for (i, task) in batch.tasks().iter().enumerate() {
                    if let TaskState::Done(p) = task.state {
                        // Done once, by one worker, for good.
                        let prev = finished.insert(i as u32, p);
                        prop_assert!(prev.is_none() || prev == Some(p));
                    }
                    prop_assert!(task.attempts < config.max_attempts + u32::from(task.needed));
                    let mut who: Vec<PeerKey> = task.results.iter().map(|(p, _)| *p).collect();
                    who.sort();
                    who.dedup();
                    prop_assert_eq!(who.len(), task.results.len(), "one result per worker");
                }
            }
            // Drain: keep scheduling and completing; every task ends.
            for round in 0..100u64 {
                if batch.is_finished() { break; }
                batch.schedule(&workers, 1000 + round);
                let running: Vec<(u32, PeerKey)> = batch
                    .tasks()
                    .iter()
                    .enumerate()
                    .flat_map(|(i, t)| match &t.state {
                        TaskState::Running(on) => on.keys().map(|p| (i as u32, *p)).collect(),
                        _ => Vec::new(),
                    })
                    .collect();
                for (i, p) in running { batch.on_done(i, &p); }
                if round == 99 { prop_assert!(batch.is_finished(), "the batch never finished"); }
            }
        }
    }
}
