//! One task of a batch and where it stands: queued, running on some
//! workers, done or failed, with its attempts, losses and results.

use std::collections::BTreeMap;

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;

use super::placed::Placement;

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
    /// Starts given back (those losses, and offers refused for want of
    /// room): not counted against the attempt limit ([`Task::counted`]).
    /// Every start keeps its own attempt number all the same: a worker
    /// still running a run given up on as lost (its circuit was cut, it
    /// was partitioned away) would refuse the same attempt offered again
    /// as a replay, and its genuine result would then be refused too.
    pub spared: u32,
    /// Every run placed (worker and attempt, straggler copies and
    /// verification runs included): only these may give a result (see
    /// `placed.rs`).
    pub placed: Vec<Placement>,
}

impl Task {
    /// Starts that count against the attempt limit.
    pub fn counted(&self) -> u32 {
        self.attempts.saturating_sub(self.spared)
    }

    /// Workers running it (or offered it) now.
    pub(super) fn in_flight(&self) -> usize {
        match &self.state {
            TaskState::Running(on) => on.len(),
            _ => 0,
        }
    }

    /// Done or failed.
    pub(super) fn is_finished(&self) -> bool {
        matches!(self.state, TaskState::Done(_) | TaskState::Failed(_))
    }

    /// More runs this task needs placed now.
    pub(super) fn wanted(&self) -> usize {
        if self.is_finished() {
            return 0;
        }
        usize::from(self.needed).saturating_sub(self.results.len() + self.in_flight())
    }

    /// Whether `peer` runs it (or is offered it) now.
    pub(super) fn held_by(&self, peer: &PeerKey) -> bool {
        matches!(&self.state, TaskState::Running(on) if on.contains_key(peer))
    }

    /// Whether `peer` ran it or runs it already.
    pub(super) fn involves(&self, peer: &PeerKey) -> bool {
        self.results.iter().any(|(p, _)| p == peer) || self.held_by(peer)
    }
}
