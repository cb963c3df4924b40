//! Placing tasks: the candidates from the view, the coordinator's
//! decisions carried out (offers of one job to one device travel together,
//! cancels), and what the offered devices answer.

use std::sync::Arc;

use corral_protocol::capacity::OwnerState;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{MAX_BATCH, RejectReason, TaskRef, TaskRequest, TaskResponse};

use super::node::Node;
use super::state::Pending;
use crate::clock::now_ms;
use crate::dispatch::coordinator::{Action, Candidate};
use crate::dispatch::worker::Gate;
use crate::net::peer_id_of;

/// The round trip a relayed path counts for before its first ping: a
/// relay is usually another network away.
const UNMEASURED_RELAY_RTT_MS: u64 = 50;

impl Node {
    /// Peers that may take tasks now: connected, advertising, idle; and this
    /// node itself while it shares.
    fn candidates(&self) -> Vec<Candidate> {
        let relayed = self.paths.relayed_only();
        // The round trip to a peer reached through a relay alone (an
        // unmeasured circuit counts as UNMEASURED_RELAY_RTT_MS).
        let relayed_rtt_ms = |key: &PeerKey| {
            let rtt = relayed.get(&peer_id_of(key)?)?;
            Some(rtt.map_or(UNMEASURED_RELAY_RTT_MS, |rtt| {
                u64::try_from(rtt.as_millis()).unwrap_or(u64::MAX).max(1)
            }))
        };
        let mut list: Vec<Candidate> = self
            .view
            .peers()
            .filter(|(_, e)| e.connections > 0)
            .filter_map(|(key, e)| {
                let a = e.advert.as_ref()?;
                (a.state == OwnerState::Idle).then(|| Candidate {
                    peer: *key,
                    slots: a.slots_total,
                    engines: a.engines.clone(),
                    arch: a.arch.clone(),
                    relayed_rtt_ms: relayed_rtt_ms(key),
                })
            })
            .collect();
        if self.policy.state() == OwnerState::Idle {
            list.push(Candidate {
                peer: self.me,
                slots: self.config.slots,
                engines: self.engine_speeds(),
                arch: std::env::consts::ARCH.into(),
                relayed_rtt_ms: None,
            });
        }
        list
    }

    /// Asks the coordinator where tasks go now, and sends its decisions.
    pub(super) fn reschedule(&mut self) {
        if !self.coord.has_live_jobs() {
            return;
        }
        let candidates = self.candidates();
        let mut present: Vec<PeerKey> = self
            .view
            .peers()
            .filter(|(_, e)| e.connections > 0)
            .map(|(k, _)| *k)
            .collect();
        if self.config.share != crate::capacity::Share::Never {
            present.push(self.me);
        }
        let actions = self.coord.schedule(&candidates, &present, now_ms());
        self.execute(actions);
    }

    /// Sends what the coordinator decided: offers of one job to one peer
    /// go together, up to [`MAX_BATCH`] per request.
    pub(super) fn execute(&mut self, actions: Vec<Action>) {
        let mut offers: Vec<((JobId, PeerKey), Vec<TaskRef>)> = Vec::new();
        for action in actions {
            match action {
                Action::Offer {
                    job,
                    index,
                    peer,
                    attempt,
                } => {
                    let task = TaskRef { index, attempt };
                    match offers.iter_mut().find(|(to, _)| *to == (job, peer)) {
                        Some((_, tasks)) => tasks.push(task),
                        None => offers.push(((job, peer), vec![task])),
                    }
                }
                Action::Cancel { job, index, peer } => {
                    if peer == self.me {
                        self.worker.on_cancel(self.me, job, index);
                    } else if let Some(id) = peer_id_of(&peer) {
                        let call = self.send_task(id, TaskRequest::Cancel { job, index });
                        self.pending_tasks.insert(call, Pending::Cancel);
                    }
                }
            }
        }
        for ((job, peer), tasks) in offers {
            for chunk in tasks.chunks(MAX_BATCH) {
                self.send_offers(job, peer, chunk);
            }
        }
    }

    /// Offers some tasks of one job to one peer, in one request.
    fn send_offers(&mut self, job: JobId, peer: PeerKey, tasks: &[TaskRef]) {
        let Some(manifest) = self.coord.signed_manifest(&job) else {
            return;
        };
        if peer == self.me {
            let checked = self.own_manifest(&manifest);
            for task in tasks {
                let verdict = checked
                    .clone()
                    .and_then(|m| self.judge_offer(self.me, m, task.index, task.attempt));
                self.on_offer_answer(job, task.index, peer, Ok(verdict));
            }
            return;
        }
        let indices: Vec<u32> = tasks.iter().map(|t| t.index).collect();
        let Some(id) = peer_id_of(&peer) else {
            for index in indices {
                self.on_offer_answer(job, index, peer, Err("bad peer key".into()));
            }
            return;
        };
        let request = match tasks {
            [task] => TaskRequest::Offer {
                manifest,
                index: task.index,
                attempt: task.attempt,
            },
            _ => TaskRequest::Offers {
                manifest,
                tasks: tasks.to_vec(),
            },
        };
        tracing::debug!(%job, tasks = indices.len(), "offer sent");
        let call = self.send_task(id, request);
        self.pending_tasks
            .insert(call, Pending::Offers { job, indices, peer });
    }

    /// The answer to offers of `indices`, one per task.
    pub(super) fn on_offers_answer(
        &mut self,
        job: JobId,
        indices: Vec<u32>,
        peer: PeerKey,
        answer: Result<TaskResponse, String>,
    ) {
        let each = verdicts(answer, indices.len());
        for (index, answer) in indices.into_iter().zip(each) {
            self.on_offer_answer(job, index, peer, answer);
        }
    }

    /// This node's worker judges an offer (from a peer, or its own) of a
    /// manifest screened and verified ([`super::screening`]).
    pub(super) fn judge_offer(
        &mut self,
        from: PeerKey,
        manifest: Arc<JobManifest>,
        index: u32,
        attempt: u32,
    ) -> Result<(), RejectReason> {
        let store = &self.store;
        let trusted = |k: &PeerKey| store.is_trusted(k).unwrap_or(false);
        let gate = Gate {
            now_ms: now_ms(),
            trusted: &trusted,
            owner: self.policy.state(),
        };
        let verdict = self
            .worker
            .on_offer_checked(from, manifest, index, attempt, &gate);
        if verdict.is_ok() {
            // Free slots changed: peers learn it with the next advert.
            self.dirty = true;
        }
        verdict
    }

    /// One task's answer: refused tasks go back to the coordinator with
    /// the reason; an offer that got no answer counts as lost.
    fn on_offer_answer(
        &mut self,
        job: JobId,
        index: u32,
        peer: PeerKey,
        answer: Result<Result<(), RejectReason>, String>,
    ) {
        let name = self.name_of(&peer);
        let actions = match answer {
            Ok(Ok(())) => {
                self.coord.on_accepted(job, index, peer);
                self.timeline.started(peer, job, index, now_ms());
                return;
            }
            Ok(Err(reason)) => {
                tracing::info!(%job, index, peer = %name, "refused: {}", reason.describe());
                self.coord.on_rejected(job, index, peer, &name, reason)
            }
            Err(e) => self.coord.on_lost(
                job,
                index,
                peer,
                &format!("{name} could not be reached: {e}"),
            ),
        };
        self.execute(actions);
        self.dirty = true;
    }
}

/// One task's answer to an offer: accepted, refused (with the reason), or
/// no answer (the error: the offer may have been taken, so the run stays
/// placed and counts as lost).
type Verdict = Result<Result<(), RejectReason>, String>;

/// The answer to offers of `n` tasks, one verdict per task.
fn verdicts(answer: Result<TaskResponse, String>, n: usize) -> Vec<Verdict> {
    match answer {
        Ok(TaskResponse::Each(verdicts)) if verdicts.len() == n => verdicts
            .into_iter()
            .map(|v| Ok(v.map_or(Ok(()), Err)))
            .collect(),
        Ok(TaskResponse::Accepted) if n == 1 => vec![Ok(Ok(()))],
        Ok(TaskResponse::Rejected(reason)) => vec![Ok(Err(reason)); n],
        // Not an acceptance: a refusal, so no receipt of that run counts
        // (an offer lost on the way would have no answer at all).
        Ok(other) => {
            tracing::warn!("an offer was answered with {other:?}: taken as a refusal");
            vec![Ok(Err(RejectReason::Malformed)); n]
        }
        Err(e) => vec![Err(e); n],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offer_answered_with_anything_but_an_acceptance_is_refused() {
        // A peer that answers an offer with something else (an Ack, or a
        // verdict list of the wrong length) did not accept it: a refusal,
        // so that no receipt of that run counts later.
        for answer in [TaskResponse::Ack, TaskResponse::Each(vec![None; 3])] {
            assert_eq!(
                verdicts(Ok(answer), 2),
                vec![Ok(Err(RejectReason::Malformed)); 2]
            );
        }
        assert_eq!(verdicts(Ok(TaskResponse::Accepted), 1), vec![Ok(Ok(()))]);
        assert_eq!(
            verdicts(
                Ok(TaskResponse::Each(vec![None, Some(RejectReason::Busy)])),
                2
            ),
            vec![Ok(Ok(())), Ok(Err(RejectReason::Busy))]
        );
        // No answer at all: the offer may have been taken; it counts as
        // lost (its result is still taken if it comes).
        assert_eq!(
            verdicts(Err("timeout".into()), 1),
            vec![Err("timeout".into())]
        );
    }
}
