//! Who each task was placed on: every (worker, attempt) a result of it may
//! come from, and the check a result passes before it counts. A result
//! counts only from a run this batch placed — offered and not refused —
//! that has not given one; anything else changes nothing and is reported
//! ([`Unplaced`]) so that the node can rest and log the sender.
//!
//! Placements follow the tasks' holders: every time a task's holders
//! change (a run started, a straggler copied, a holder released) the batch
//! calls [`Batch::sync_placements`], which records each new holder at the
//! task's current attempt and marks runs no longer held as released (a
//! late result of a released run is still taken while the task is open).

#[cfg(test)]
mod tests;

use corral_protocol::ids::PeerKey;

use super::{Batch, Task, TaskState};

/// Most placements remembered per task. Attempts are bounded, but a
/// straggler copy shares its attempt and a holder lost with a copy running
/// gives nothing back, so churn could add placements for ever: past this,
/// the oldest refused, then released, then answered ones are forgotten.
pub const MAX_PLACEMENTS: usize = 32;

/// Where one placed run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlacedState {
    /// Offered or running on its worker now.
    Holding,
    /// No longer held (lost, failed, cancelled, or placed before a restart
    /// of the coordinator): its result is still taken while the task is
    /// open.
    Released,
    /// Its worker refused the offer: no result of it is ever taken.
    Refused,
    /// Its result came in.
    Answered,
}

/// One run of a task placed on a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The worker.
    pub peer: PeerKey,
    /// The attempt it was offered (a straggler copy shares the attempt of
    /// the run it copies).
    pub attempt: u32,
    /// Where it stands.
    pub state: PlacedState,
}

/// What a result from a placed run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// It counts: the task is open and its worker gave no result yet.
    Counts,
    /// Its worker gave a result of the task already (a resend): nothing.
    Repeat,
    /// The task is finished (a late copy): nothing.
    Late,
}

/// Why a result changes nothing and its sender is to blame: it does not
/// come from a run the batch placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unplaced {
    /// The batch has no such task.
    #[error("the job has no task {index}")]
    NoSuchTask {
        /// The index the result names.
        index: u32,
    },
    /// No run of the task was placed on the sender at that attempt.
    #[error("task {index} was never placed on {} at attempt {attempt}", peer.short())]
    NotPlaced {
        /// The task.
        index: u32,
        /// The sender.
        peer: PeerKey,
        /// The attempt its receipt names.
        attempt: u32,
    },
    /// The sender refused that attempt when it was offered.
    #[error("{} refused attempt {attempt} of task {index} when it was offered", peer.short())]
    Refused {
        /// The task.
        index: u32,
        /// The sender.
        peer: PeerKey,
        /// The attempt its receipt names.
        attempt: u32,
    },
}

/// Records (or updates) the placement of `peer` at `attempt` in `placed`,
/// keeping at most [`MAX_PLACEMENTS`].
fn place(placed: &mut Vec<Placement>, peer: PeerKey, attempt: u32, state: PlacedState) {
    if let Some(p) = placed
        .iter_mut()
        .find(|p| p.peer == peer && p.attempt == attempt)
    {
        p.state = state;
        return;
    }
    if placed.len() >= MAX_PLACEMENTS {
        let oldest = [
            PlacedState::Refused,
            PlacedState::Released,
            PlacedState::Answered,
        ]
        .into_iter()
        .find_map(|s| placed.iter().position(|p| p.state == s));
        match oldest {
            Some(i) => {
                placed.remove(i);
            }
            // Every one is held now: holders are bounded by the placement
            // rules, so this is not reached.
            None => return,
        }
    }
    placed.push(Placement {
        peer,
        attempt,
        state,
    });
}

impl Task {
    /// The placement of `peer` at `attempt`, if any.
    pub fn placement(&self, peer: &PeerKey, attempt: u32) -> Option<&Placement> {
        self.placed
            .iter()
            .find(|p| p.peer == *peer && p.attempt == attempt)
    }

    /// What a result of this task (number `index`) from `peer` at
    /// `attempt` would do.
    fn fit(&self, index: u32, peer: &PeerKey, attempt: u32) -> Result<Fit, Unplaced> {
        let placement = self.placement(peer, attempt).ok_or(Unplaced::NotPlaced {
            index,
            peer: *peer,
            attempt,
        })?;
        match placement.state {
            PlacedState::Refused => Err(Unplaced::Refused {
                index,
                peer: *peer,
                attempt,
            }),
            PlacedState::Answered => Ok(Fit::Repeat),
            PlacedState::Holding | PlacedState::Released => {
                if self.results.iter().any(|(p, _)| p == peer) {
                    Ok(Fit::Repeat)
                } else if self.is_finished() {
                    Ok(Fit::Late)
                } else {
                    Ok(Fit::Counts)
                }
            }
        }
    }
}

impl Batch {
    /// Keeps task `index`'s placements in step with its holders: a new
    /// holder is placed at the task's current attempt (a straggler copy
    /// shares the attempt it copies); a run no longer held is released.
    /// Called whenever a task's holders may have changed.
    pub(super) fn sync_placements(&mut self, index: u32) {
        let Some(task) = self.tasks.get_mut(index as usize) else {
            return;
        };
        let attempt = task.attempts;
        let holders = match &task.state {
            TaskState::Running(on) => Some(on),
            _ => None,
        };
        let held = |peer: &PeerKey| holders.is_some_and(|on| on.contains_key(peer));
        for p in &mut task.placed {
            if p.state == PlacedState::Holding && !held(&p.peer) {
                p.state = PlacedState::Released;
            }
        }
        let Some(on) = holders else {
            return;
        };
        for peer in on.keys() {
            let holding = task
                .placed
                .iter()
                .any(|p| p.peer == *peer && p.state == PlacedState::Holding);
            if !holding {
                place(&mut task.placed, *peer, attempt, PlacedState::Holding);
            }
        }
    }

    /// What a result of task `index` from `peer` at `attempt` would do, or
    /// why it does not come from a run this batch placed.
    pub fn check_result(&self, index: u32, peer: &PeerKey, attempt: u32) -> Result<Fit, Unplaced> {
        self.tasks
            .get(index as usize)
            .ok_or(Unplaced::NoSuchTask { index })?
            .fit(index, peer, attempt)
    }

    /// The attempt of `peer`'s run of task `index`: the one it holds, else
    /// the last one placed there that it did not refuse.
    pub fn attempt_of(&self, index: u32, peer: &PeerKey) -> Option<u32> {
        let task = self.tasks.get(index as usize)?;
        let mine = || task.placed.iter().filter(|p| p.peer == *peer);
        mine()
            .find(|p| p.state == PlacedState::Holding)
            .or_else(|| mine().rfind(|p| p.state != PlacedState::Refused))
            .map(|p| p.attempt)
    }

    /// Records that task `index` was placed on `peer` at `attempt` before
    /// a restart of the coordinator: its worker may still deliver.
    pub fn restore_placed(&mut self, index: u32, peer: PeerKey, attempt: u32) {
        if let Some(task) = self.tasks.get_mut(index as usize) {
            place(&mut task.placed, peer, attempt, PlacedState::Released);
        }
    }

    /// `peer` refused the run of task `index` it holds: no result of it
    /// will be taken.
    pub(super) fn refuse_placement(&mut self, index: u32, peer: &PeerKey) {
        if let Some(task) = self.tasks.get_mut(index as usize)
            && let Some(p) = task
                .placed
                .iter_mut()
                .find(|p| p.peer == *peer && p.state == PlacedState::Holding)
        {
            p.state = PlacedState::Refused;
        }
    }

    /// Marks the run of task `index` on `peer` at `attempt` answered.
    pub(super) fn answer_placement(&mut self, index: u32, peer: &PeerKey, attempt: u32) {
        if let Some(task) = self.tasks.get_mut(index as usize) {
            place(&mut task.placed, *peer, attempt, PlacedState::Answered);
        }
    }
}
