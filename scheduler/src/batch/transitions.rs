//! What happens to a task on each event the node reports: a refusal, a
//! busy worker, a failure, a lost peer, a result; and failing the queue.

use std::collections::BTreeMap;

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;

use super::placed::{Fit, Unplaced};
use super::verify::{Tally, tally};
use super::{Batch, Decision, TaskState, unload};

impl Batch {
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
        unload(&mut self.given, peer);
        self.first_open = self.first_open.min(index as usize);
        task.last_error = Some(reason.to_string());
        if !on.is_empty() {
            return Vec::new();
        }
        if task.counted() >= limit {
            let why = format!("gave up after {} attempts: {reason}", task.counted());
            task.state = TaskState::Failed(why.clone());
            vec![Decision::GiveUp { index, reason: why }]
        } else {
            task.state = TaskState::Queued;
            Vec::new()
        }
    }

    /// `peer` refused task `index` (no result of that run is taken).
    pub fn on_rejected(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.refuse_placement(index, peer);
        self.release(index, peer, &format!("{} refused: {reason}", peer.short()))
    }

    /// `peer` cannot take task `index` just now (no free slot, its owner is
    /// back, it is leaving): back to the queue without using up an attempt.
    /// It refused the run: no result of it is taken.
    pub fn on_busy(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        if let Some(task) = self.tasks.get_mut(index as usize)
            && matches!(&task.state, TaskState::Running(on) if on.len() == 1 && on.contains_key(peer))
        {
            task.spared += 1;
        }
        self.on_rejected(index, peer, reason)
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

    /// `peer` left: every task it held goes back to the queue at once.
    pub fn on_peer_lost(&mut self, peer: &PeerKey) -> Vec<Decision> {
        let held: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| self.tasks[i as usize].held_by(peer))
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
            task.spared += 1;
        }
        self.release(index, peer, reason)
    }

    /// A result of task `index` from `peer`'s run of it (the one it
    /// holds, else its last; see [`Batch::attempt_of`]), with no output to
    /// compare (without verification). A peer never placed there changes
    /// nothing.
    pub fn on_done(&mut self, index: u32, peer: &PeerKey) -> Vec<Decision> {
        let Some(attempt) = self.attempt_of(index, peer) else {
            return Vec::new();
        };
        self.on_result(index, peer, attempt, ContentHash::from_bytes([0; 32]))
            .unwrap_or_default()
    }

    /// A result of task `index` from `peer`'s run at `attempt`, with the
    /// digest of what it produced. It counts only from a run this batch
    /// placed there that its worker did not refuse and that gave no result
    /// yet: anything else changes nothing, and a result from a run never
    /// placed (or refused) is an [`Unplaced`] error, the sender's doing.
    /// Without verification the first result wins and the other copies are
    /// cancelled. A result from a placed worker that no longer holds the
    /// task (a late result, or one held across a coordinator restart) is
    /// taken while the task is unfinished; once it is finished, or from a
    /// worker that already gave one, a result changes nothing.
    pub fn on_result(
        &mut self,
        index: u32,
        peer: &PeerKey,
        attempt: u32,
        digest: ContentHash,
    ) -> Result<Vec<Decision>, Unplaced> {
        match self.check_result(index, peer, attempt)? {
            Fit::Counts => {}
            Fit::Repeat | Fit::Late => return Ok(Vec::new()),
        }
        self.answer_placement(index, peer, attempt);
        Ok(self.tracked(index, |b| b.on_result_untracked(index, peer, digest)))
    }

    /// What `peer`'s result `digest` would make of task `index` if it
    /// counts (see [`Batch::check_result`]), without taking it: for a node
    /// to store the task's record as the result leaves it in one write
    /// before it calls [`Batch::on_result`]. None: it would change nothing.
    pub fn outcome_of(
        &self,
        index: u32,
        peer: &PeerKey,
        attempt: u32,
        digest: ContentHash,
    ) -> Result<Option<Outcome>, Unplaced> {
        Ok(match self.check_result(index, peer, attempt)? {
            Fit::Counts => self.judge(index, peer, digest),
            Fit::Repeat | Fit::Late => None,
        })
    }

    /// The tally of task `index` with `peer`'s result `digest` added, as
    /// [`Batch::on_result`] takes it once it counts.
    fn judge(&self, index: u32, peer: &PeerKey, digest: ContentHash) -> Option<Outcome> {
        let task = self.tasks.get(index as usize)?;
        let k = self.config.redundancy;
        let (mut mismatch, mut needed) = (false, task.needed);
        let end = match tally(&task.results, (*peer, digest), needed, k) {
            Tally::Short => None,
            Tally::Agreed(winner) | Tally::Majority(winner) => Some(End::Done(winner)),
            Tally::Mismatch => {
                mismatch = true;
                needed = k.saturating_add(1);
                None
            }
            Tally::Split { runs, outputs } => Some(End::Failed(format!(
                "results disagree: {runs} runs gave {outputs} different outputs"
            ))),
        };
        let end = end.unwrap_or_else(|| {
            let others_run =
                matches!(&task.state, TaskState::Running(on) if on.keys().any(|p| p != peer));
            let limit = self.config.max_attempts + u32::from(needed).saturating_sub(1);
            if !others_run && task.counted() >= limit {
                End::GaveUp(format!(
                    "gave up after {} attempts: {} of {} runs gave a result",
                    task.counted(),
                    task.results.len() + 1,
                    needed
                ))
            } else {
                End::Open
            }
        });
        Some(Outcome { mismatch, end })
    }

    fn on_result_untracked(
        &mut self,
        index: u32,
        peer: &PeerKey,
        digest: ContentHash,
    ) -> Vec<Decision> {
        // `on_result` let it through only as `Fit::Counts`: the task is
        // open and `peer` gave no result of it yet.
        let Some(outcome) = self.judge(index, peer, digest) else {
            return Vec::new();
        };
        if let TaskState::Running(on) = &self.tasks[index as usize].state
            && on.contains_key(peer)
        {
            unload(&mut self.given, peer);
        }
        let k = self.config.redundancy;
        let task = &mut self.tasks[index as usize];
        let mut on = match std::mem::replace(&mut task.state, TaskState::Queued) {
            TaskState::Running(on) => on,
            _ => BTreeMap::new(),
        };
        on.remove(peer);
        task.results.push((*peer, digest));
        if outcome.mismatch {
            task.mismatch = true;
            task.needed = k.saturating_add(1);
        }
        let outcome = match outcome.end {
            End::Open => {
                task.state = if on.is_empty() {
                    TaskState::Queued
                } else {
                    TaskState::Running(on)
                };
                self.first_open = self.first_open.min(index as usize);
                return Vec::new();
            }
            End::GaveUp(why) => {
                task.state = TaskState::Failed(why.clone());
                return vec![Decision::GiveUp { index, reason: why }];
            }
            End::Done(winner) => Ok(winner),
            End::Failed(why) => Err(why),
        };
        let mut decisions: Vec<Decision> = on
            .keys()
            .map(|p| Decision::Cancel { index, peer: *p })
            .collect();
        for p in on.keys() {
            unload(&mut self.given, p);
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

/// What a result makes of its task ([`Batch::outcome_of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The results disagree for the first time: one more agreeing result
    /// is needed.
    pub mismatch: bool,
    /// Where the task stands after it.
    pub end: End,
}

/// Where a result leaves its task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// Still open: more results are needed (queued again, or others run).
    Open,
    /// Done, the result of this worker kept.
    Done(PeerKey),
    /// Failed: the results disagree past settling.
    Failed(String),
    /// Failed: no attempts left for the results still needed.
    GaveUp(String),
}

impl End {
    /// Why the task failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match self {
            End::Failed(why) | End::GaveUp(why) => Some(why),
            End::Open | End::Done(_) => None,
        }
    }
}
