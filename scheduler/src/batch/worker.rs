//! The workers as placement sees them (from the peer view), how many tasks
//! each may hold, and the mesh as a whole ([`Pool`]) for the slow-worker
//! rule.

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
    /// What moving one task's data to and from it costs beyond a direct
    /// path (ms): 0 on the LAN or any direct path; for a device reached
    /// only through a relay, the relay's round trips and the task's bytes
    /// over it. Once receipts show what a task costs, it lowers the pace
    /// the worker counts for ([`Batch::pace`](super::Batch::pace)).
    pub transfer_ms: u64,
    /// Tasks it may hold queued beyond its slots: 1 (late binding, a
    /// finished task pulls the next); up to [`MAX_AHEAD`] for tasks much
    /// shorter than a round trip, whose slots would otherwise stand idle
    /// while the next offer travels.
    pub ahead: u16,
}

/// Most tasks a device holds queued beyond its slots (see [`Worker::ahead`]).
pub const MAX_AHEAD: u16 = 128;

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

/// The mesh as a whole, for the slow-worker rule: its rate (speed × slots
/// summed over every worker that can run the job, busy or not) and its
/// fastest slot. [`Batch::schedule`](super::Batch::schedule) works it out from the workers it is
/// given; a caller that passes only the workers with room (the simulator,
/// with 10,000 devices) passes it with
/// [`Batch::schedule_in`](super::Batch::schedule_in).
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
