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
//! (no majority: the task fails). Mismatches are kept on the task. A
//! result counts only from a (worker, attempt) the batch placed and that
//! did not refuse it, so `--verify K` counts K distinct placed workers.
//!
//! The rooms: this file holds the batch and its bookkeeping; `task.rs` a
//! task's state, `worker.rs` the workers and the mesh's pool as placement
//! sees them, `transitions.rs` what happens to a task on each event,
//! `verify.rs` the `--verify` vote as a pure tally, `placement.rs` where
//! queued tasks go (and the slow-worker rule), `straggler.rs` the copies of
//! stragglers at the end of a batch, `placed.rs` the runs each task was
//! placed on — a result counts only from one of them, `lease/` the lease on
//! every placed run and the bounds on claimed speeds and slots.

mod lease;
mod placed;
mod placement;
mod straggler;
mod task;
#[cfg(test)]
mod tests;
mod transitions;
mod verify;
mod worker;

use std::collections::{BTreeMap, BTreeSet};

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;

pub use self::lease::{
    HARD_SLACK_MS, HEDGE_FACTOR, LEASE_COOLDOWN_MS, LEASE_FACTOR, LEASE_SLACK_MS,
    MAX_CLAIMED_SPEED, MAX_LEASE_COOLDOWN_MS, UNSHOWN_FACTOR,
};
pub use self::placed::{Fit, MAX_PLACEMENTS, PlacedState, Placement, Unplaced};
pub use self::task::{Task, TaskState};
pub use self::transitions::{End, Outcome};
pub use self::worker::{MAX_AHEAD, Pool, Worker};

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
    /// Offer `peer` no task of this job for `for_ms`: it let a lease
    /// lapse (see [`Batch::set_hard_lease`]).
    Cooldown {
        /// The worker.
        peer: PeerKey,
        /// How long (ms).
        for_ms: u64,
        /// Why.
        reason: String,
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

/// What a batch keeps of a worker it gave a task to.
#[derive(Clone, Copy, Debug, Default)]
struct Given {
    /// Tasks it holds (running or offered).
    load: usize,
    /// Its speed when it was last given a task (straggler copies compare
    /// holders' speeds, and a holder may not be among the workers passed
    /// to a later round).
    speed: u64,
}

/// `peer` holds one task fewer.
fn unload(given: &mut BTreeMap<PeerKey, Given>, peer: &PeerKey) {
    if let Some(g) = given.get_mut(peer) {
        g.load = g.load.saturating_sub(1);
    }
}

/// The tasks of one job.
#[derive(Clone, Debug)]
pub struct Batch {
    config: BatchConfig,
    tasks: Vec<Task>,
    /// Every worker given a task of this batch: the tasks it holds and
    /// its speed when it was last given one, in one map so that a round
    /// looks each worker up once.
    given: BTreeMap<PeerKey, Given>,
    /// Every task below this index is finished or fully placed (a hint that
    /// keeps scheduling a large batch from rescanning its head).
    first_open: usize,
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
    /// Leases on runs, and what receipts show of speeds (`lease/`).
    leases: lease::Leases,
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
            spared: 0,
            placed: Vec::new(),
        };
        Self {
            config,
            tasks: vec![task; count as usize],
            given: BTreeMap::new(),
            first_open: 0,
            waiting: count as usize,
            finished: 0,
            singles: BTreeSet::new(),
            single_key: vec![None; count as usize],
            leases: lease::Leases::default(),
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

    /// Puts task `index` in or out of the straggler candidates, and keeps
    /// its placements in step with its holders (every change of a task's
    /// holders ends here: `tracked`, and `run_on` for a start or a copy).
    fn sync_single(&mut self, index: u32) {
        self.sync_placements(index);
        let Some(task) = self.tasks.get(index as usize) else {
            return;
        };
        let key = match &task.state {
            TaskState::Running(on) if on.len() == 1 => {
                on.keys().next().map(|holder| self.speed_of(holder))
            }
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

    /// Sets the last attempt number task `index` was offered under
    /// (restored after a restart): its next start is numbered past every
    /// one a worker has seen. The record does not say which of those starts
    /// were lost or refused for want of room, so none counts against the
    /// limit: the task's budget starts again.
    pub fn restore_attempts(&mut self, index: u32, attempts: u32) {
        if let Some(task) = self.tasks.get_mut(index as usize) {
            task.attempts = attempts;
            task.spared = attempts;
        }
    }

    fn load_release(&mut self, state: &TaskState) {
        if let TaskState::Running(on) = state {
            for peer in on.keys() {
                unload(&mut self.given, peer);
            }
        }
    }

    /// Tasks held by `peer` (running or offered).
    pub fn load_of(&self, peer: &PeerKey) -> usize {
        self.given.get(peer).map_or(0, |g| g.load)
    }

    /// `peer`'s speed when it was last given a task (0 if never).
    fn speed_of(&self, peer: &PeerKey) -> u64 {
        self.given.get(peer).map_or(0, |g| g.speed)
    }

    fn attempt_limit(&self, task: &Task) -> u32 {
        self.config.max_attempts + u32::from(task.needed).saturating_sub(1)
    }

    /// Whether any task runs (or is offered) now.
    pub fn any_running(&self) -> bool {
        self.given.values().any(|g| g.load > 0)
    }
}
