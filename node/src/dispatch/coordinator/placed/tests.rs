//! Tests of results only from placements, on a real coordinator: forged
//! receipts (a valid signature by a peer never placed), two fresh
//! identities under `--verify 2`, a replayed attempt, and a worker placed
//! before a restart that still delivers.

use corral_protocol::envelope::{Signed, SigningKey, peer_key, signing_key};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::RejectReason;
use corral_protocol::receipt::{ReceiptBatch, TaskReceipt};
use corral_scheduler::batch::TaskState;

use super::super::records::{JobState, TaskRunState};
use super::super::tests::{Fixture, candidate, receipt_of};
use super::super::{Action, Coordinator};
use super::UNPLACED_COOLDOWN_MS;

/// A device: its key and its peer key.
fn device(seed: u8) -> (SigningKey, PeerKey) {
    let key = signing_key(&[seed; 32]);
    let peer = peer_key(&key);
    (key, peer)
}

/// A receipt of task `index` of `job` at `attempt` by `key`, printing `out`.
fn receipt(
    key: &SigningKey,
    job: JobId,
    index: u32,
    attempt: u32,
    out: &[u8],
) -> Signed<TaskReceipt> {
    Signed::sign(&receipt_of(job, index, attempt, peer_key(key), out, 5), key)
}

/// Sends `signed` from `from` as the daemon does: checked first, taken
/// only when wanted. Whether it was wanted, or the error logged.
fn deliver(
    c: &mut Coordinator,
    from: PeerKey,
    signed: Signed<TaskReceipt>,
) -> Result<bool, String> {
    let answer = c.wants_results(&from, &[signed]).pop().expect("one answer");
    match answer? {
        Some(receipt) => {
            let actions = c.on_result(from, "p", receipt).expect("stored");
            assert!(actions.iter().all(|a| matches!(a, Action::Cancel { .. })));
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The offers among `actions`: task, peer, attempt.
fn offers(actions: &[Action]) -> Vec<(u32, PeerKey, u32)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Offer {
                index,
                peer,
                attempt,
                ..
            } => Some((*index, *peer, *attempt)),
            Action::Cancel { .. } => None,
        })
        .collect()
}

impl Coordinator {
    /// Schedules as [`Coordinator::schedule`], and every device offered a
    /// task takes it (as the daemon hears its answer) before any result.
    fn schedule_accepted(
        &mut self,
        candidates: &[super::super::Candidate],
        present: &[PeerKey],
        now_ms: u64,
    ) -> Vec<Action> {
        let actions = self.schedule(candidates, present, now_ms);
        for a in &actions {
            if let Action::Offer {
                job, index, peer, ..
            } = a
            {
                self.on_accepted(*job, *index, *peer);
            }
        }
        actions
    }
}

#[test]
fn a_receipt_before_the_answer_to_its_offer_is_not_taken_yet() {
    // The measured attack: a member refuses the offer it got, but sends a
    // receipt for the task first (the run is then placed on it, not yet
    // refused). Not taken yet; once refused, refused for good.
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(1, 1), now).expect("submit");
    let (rogue_key, rogue) = device(66);
    let (a_key, a) = device(1);
    assert_eq!(
        offers(&c.schedule(&[candidate(rogue)], &[a, rogue], now)),
        vec![(0, rogue, 1)]
    );
    let early = c
        .wants_results(&rogue, &[receipt(&rogue_key, id, 0, 1, b"FORGED")])
        .pop()
        .expect("one answer");
    assert!(
        matches!(&early, Err(super::Unwanted::NotYet(why)) if why.contains("before its answer")),
        "{early:?}"
    );
    c.on_rejected(id, 0, rogue, "rogue", RejectReason::Busy);
    let err = deliver(&mut c, rogue, receipt(&rogue_key, id, 0, 1, b"FORGED"))
        .expect_err("refused once the offer was refused");
    assert!(err.contains("refused attempt"), "{err}");
    assert!(c.jobs[&id].tasks[0].runs.is_empty());
    // An honest worker's result that raced its own acceptance is taken
    // when sent again after it.
    let offered = offers(&c.schedule(&[candidate(a)], &[a, rogue], now + 2000));
    // A busy refusal costs the task no attempt, but the next start is
    // numbered on: attempt 1 is the rogue's.
    assert_eq!(offered, vec![(0, a, 2)]);
    assert_eq!(c.jobs[&id].batch.tasks()[0].counted(), 1);
    let raced = c
        .wants_results(&a, &[receipt(&a_key, id, 0, 2, b"42")])
        .pop()
        .expect("one answer");
    assert!(
        matches!(raced, Err(super::Unwanted::NotYet(_))),
        "{raced:?}"
    );
    c.on_accepted(id, 0, a);
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, 0, 2, b"42")),
        Ok(true)
    );
    assert_eq!(c.jobs[&id].record.state, JobState::Completed);
}

#[test]
fn a_forged_receipt_from_a_peer_never_placed_is_refused_and_its_sender_rested() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(1, 1), now).expect("submit");
    let (a_key, a) = device(1);
    let (rogue_key, rogue) = device(66);
    assert_eq!(
        offers(&c.schedule_accepted(&[candidate(a)], &[a, rogue], now)),
        vec![(0, a, 1)]
    );
    // The rogue's signature is valid; the run was never placed on it.
    let err = deliver(&mut c, rogue, receipt(&rogue_key, id, 0, 1, b"FORGED"))
        .expect_err("a forged receipt is refused before its files are fetched");
    assert!(
        err.contains("never placed") && err.contains(&rogue.short()),
        "{err}"
    );
    let until = c.jobs[&id].cooldown.get(&rogue).copied();
    assert!(
        until.is_some_and(|t| t >= now + UNPLACED_COOLDOWN_MS),
        "{until:?}"
    );
    // A caller that skips the check gets nothing counted either.
    let forged = receipt(&rogue_key, id, 0, 1, b"FORGED")
        .verify_from(&rogue, now)
        .expect("a validly signed receipt");
    assert!(
        c.on_result(rogue, "rogue", forged)
            .expect("stored")
            .is_empty()
    );
    assert!(c.jobs[&id].tasks[0].runs.is_empty());
    assert!(matches!(
        c.jobs[&id].batch.tasks()[0].state,
        TaskState::Running(_)
    ));
    // Nor for a task the job does not have.
    assert!(deliver(&mut c, rogue, receipt(&rogue_key, id, 5, 1, b"FORGED")).is_err());
    // The placed worker's result counts.
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, 0, 1, b"42")),
        Ok(true)
    );
    assert_eq!(c.jobs[&id].record.state, JobState::Completed);
    // Sent again (its answer was lost): acknowledged, not counted, not blamed.
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, 0, 1, b"42")),
        Ok(false)
    );
    assert!(!c.jobs[&id].cooldown.contains_key(&a));
    c.check_invariants().expect("invariants");
}

#[test]
fn a_batch_under_one_signature_is_judged_receipt_by_receipt_and_a_forged_one_whole() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(2, 1), now).expect("submit");
    let (a_key, a) = device(1);
    let (rogue_key, rogue) = device(66);
    let placed = offers(&c.schedule_accepted(&[candidate(a)], &[a, rogue], now));
    assert_eq!(placed, vec![(0, a, 1), (1, a, 1)]);
    let unsigned =
        |key: &SigningKey, index: u32, out: &[u8]| receipt_of(id, index, 1, peer_key(key), out, 5);
    // Signed by the rogue, sent by `a`: refused whole, before any receipt
    // is looked at.
    let forged = Signed::sign(
        &ReceiptBatch::new(vec![unsigned(&a_key, 0, b"FORGED")]),
        &rogue_key,
    );
    let why = c.open_batch(&a, &forged).expect_err("another signer");
    assert!(
        why.contains("signed by") && why.contains(&a.short()),
        "{why}"
    );
    // The rogue's own batch: validly signed, but of runs never placed on
    // it; each refused, and the rogue rested.
    let own = Signed::sign(
        &ReceiptBatch::new(vec![
            unsigned(&rogue_key, 0, b"FORGED"),
            unsigned(&rogue_key, 1, b"FORGED"),
        ]),
        &rogue_key,
    );
    let opened = c.open_batch(&rogue, &own).expect("validly signed");
    let judged = c.wants_opened(&rogue, opened);
    assert_eq!(judged.len(), 2);
    for answer in &judged {
        assert!(
            matches!(answer, Err(super::Unwanted::Refused(why)) if why.contains("never placed")),
            "{answer:?}"
        );
    }
    assert!(c.jobs[&id].cooldown.contains_key(&rogue));
    // `a`'s batch: its two placed runs are wanted; a receipt in it naming
    // another worker is refused alone.
    let mut other = unsigned(&a_key, 1, b"42");
    other.worker = rogue;
    let batch = Signed::sign(
        &ReceiptBatch::new(vec![
            unsigned(&a_key, 0, b"42"),
            other,
            unsigned(&a_key, 1, b"42"),
        ]),
        &a_key,
    );
    let opened = c.open_batch(&a, &batch).expect("validly signed");
    let judged = c.wants_opened(&a, opened);
    let wanted: Vec<Option<u32>> = judged
        .iter()
        .map(|j| j.as_ref().ok().and_then(|r| r.as_ref().map(|r| r.index)))
        .collect();
    assert_eq!(wanted, [Some(0), None, Some(1)]);
    assert!(
        matches!(&judged[1], Err(super::Unwanted::Refused(why)) if why.contains("bad receipt")),
        "{:?}",
        judged[1]
    );
    for receipt in judged.into_iter().flatten().flatten() {
        c.on_result(a, "a", receipt).expect("stored");
    }
    let job = &c.jobs[&id];
    assert_eq!(job.tasks[0].state, TaskRunState::Done);
    assert_eq!(job.tasks[1].state, TaskRunState::Done);
    assert_eq!(job.record.state, JobState::Completed);
    c.check_invariants().expect("invariants");
}

#[test]
fn two_fresh_identities_refusing_their_offers_cannot_agree_under_verify_2() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(2, 2), now).expect("submit");
    let rogues = [device(66), device(67)];
    let (a_key, a) = device(1);
    let (b_key, b) = device(2);
    let present = [a, b, rogues[0].1, rogues[1].1];
    // The rogues advertise room and refuse every offer; then each sends a
    // receipt for every run it was offered.
    let cands: Vec<_> = rogues.iter().map(|(_, p)| candidate(*p)).collect();
    let actions = c.schedule_accepted(&cands, &present, now);
    let runs = offers(&actions);
    assert_eq!(runs.len(), 4, "two runs of each task: {runs:?}");
    for (index, peer, _) in &runs {
        c.on_rejected(id, *index, *peer, "rogue", RejectReason::Busy);
    }
    for (index, peer, attempt) in &runs {
        let key = &rogues.iter().find(|(_, p)| p == peer).expect("a rogue").0;
        let err = deliver(&mut c, *peer, receipt(key, id, *index, *attempt, b"FORGED"))
            .expect_err("the receipt of a refused run is refused");
        assert!(err.contains("refused attempt"), "{err}");
    }
    let job = &c.jobs[&id];
    assert!(job.tasks.iter().all(|t| t.runs.is_empty()));
    assert!(job.batch.tasks().iter().all(|t| t.results.is_empty()));
    // Two honest devices then give the right answer.
    let actions = c.schedule_accepted(&[candidate(a), candidate(b)], &present, now);
    for (index, peer, attempt) in offers(&actions) {
        let key = if peer == a { &a_key } else { &b_key };
        assert_eq!(
            deliver(&mut c, peer, receipt(key, id, index, attempt, b"42")),
            Ok(true)
        );
    }
    let job = &c.jobs[&id];
    assert_eq!(job.record.state, JobState::Completed);
    for t in &job.tasks {
        let kept = t.winner.and_then(|w| t.runs.get(w)).expect("a kept run");
        assert!(kept.peer == a || kept.peer == b);
        assert_eq!(t.runs.len(), 2);
    }
    c.check_invariants().expect("invariants");
}

#[test]
fn a_replayed_receipt_of_an_attempt_its_sender_did_not_hold_is_refused() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(1, 1), now).expect("submit");
    let (_, b) = device(2);
    let (a_key, a) = device(1);
    // Attempt 1 goes to b, which refuses it for good; attempt 2 to a.
    assert_eq!(
        offers(&c.schedule_accepted(&[candidate(b)], &[a, b], now)),
        vec![(0, b, 1)]
    );
    c.on_rejected(id, 0, b, "b", RejectReason::NotTrusted);
    assert_eq!(
        offers(&c.schedule_accepted(&[candidate(a)], &[a, b], now)),
        vec![(0, a, 2)]
    );
    let err = deliver(&mut c, a, receipt(&a_key, id, 0, 1, b"OLD"))
        .expect_err("a holds attempt 2, not 1");
    assert!(err.contains("at attempt 1"), "{err}");
    assert!(c.jobs[&id].tasks[0].runs.is_empty());
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, 0, 2, b"42")),
        Ok(true)
    );
    assert_eq!(c.jobs[&id].tasks[0].state, TaskRunState::Done);
    c.check_invariants().expect("invariants");
}

#[test]
fn a_worker_placed_before_a_restart_still_delivers_and_a_refusal_is_kept() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let (a_key, a) = device(1);
    let (b_key, b) = device(2);
    let (id, ran, refused) = {
        let mut c = fx.load();
        let id = c.submit(fx.spec(2, 1), now).expect("submit");
        let cands = [candidate(a), candidate(b)];
        let offers = offers(&c.schedule_accepted(&cands, &[a, b], now));
        let on = |peer| *offers.iter().find(|o| o.1 == peer).expect("an offer each");
        let (ran, refused) = (on(a), on(b));
        // b refuses its task; a runs its own. The daemon stops, writing
        // what it placed.
        c.on_rejected(id, refused.0, b, "b", RejectReason::Busy);
        c.write_placements();
        c.store.flush().expect("flush");
        (id, ran, refused)
    };
    // The coordinator restarts while a runs its task.
    let mut c = fx.load();
    assert_eq!(
        c.jobs[&id].tasks[ran.0 as usize].state,
        TaskRunState::Queued
    );
    let err = deliver(
        &mut c,
        b,
        receipt(&b_key, id, refused.0, refused.2, b"FORGED"),
    )
    .expect_err("b refused that run before the restart");
    assert!(err.contains("never placed"), "{err}");
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, ran.0, ran.2, b"42")),
        Ok(true)
    );
    assert_eq!(c.jobs[&id].tasks[ran.0 as usize].state, TaskRunState::Done);
    c.check_invariants().expect("invariants");
}

/// Issue 18's measure: a 12-task batch on 3 honest devices with 2 rogues
/// (fresh identities, the mesh key only) that refuse every offer and, after
/// each round of offers, send a self-signed receipt printing FORGED for
/// every task of the job at attempts 1 to 3: how many kept results are
/// forged, of how many, and how the job ended.
fn forged_kept(verify: u8) -> (usize, usize, JobState) {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let mut c = fx.load();
    let id = c.submit(fx.spec(12, verify), now).expect("submit");
    let keys: Vec<_> = (1..=5u8).map(|n| signing_key(&[n; 32])).collect();
    let peers: Vec<PeerKey> = keys.iter().map(peer_key).collect();
    let rogue = |p: &PeerKey| peers[3..].contains(p);
    let cands: Vec<_> = peers.iter().map(|p| candidate(*p)).collect();
    let sign =
        |n: usize, index: u32, attempt: u32, out: &[u8]| receipt(&keys[n], id, index, attempt, out);
    for round in 0..200u64 {
        if c.progress(&id).is_some_and(|(_, live)| !live) {
            break;
        }
        let actions = c.schedule_accepted(&cands, &peers, now + round * 2000);
        let offers: Vec<(u32, PeerKey, u32)> = offers(&actions);
        // The rogues answer their offers first: each refused.
        let mut forgers = Vec::new();
        for &(index, peer, _) in offers.iter().filter(|(_, p, _)| rogue(p)) {
            c.on_rejected(id, index, peer, "rogue", RejectReason::Busy);
            if !forgers.contains(&peer) {
                forgers.push(peer);
            }
        }
        // Then each sends a FORGED receipt for every task of the job.
        for peer in forgers {
            let n = peers.iter().position(|p| *p == peer).expect("a device");
            for task in 0..12u32 {
                for attempt in 1..=3u32 {
                    // Refused (an error) or not wanted: nothing counted.
                    let _ = deliver(&mut c, peer, sign(n, task, attempt, b"FORGED"));
                }
            }
        }
        // The honest devices run their tasks.
        for &(index, peer, attempt) in offers.iter().filter(|(_, p, _)| !rogue(p)) {
            let n = peers.iter().position(|p| *p == peer).expect("a device");
            let _ = deliver(&mut c, peer, sign(n, index, attempt, b"42"));
        }
    }
    let job = &c.jobs[&id];
    let forged = ContentHash::of(b"FORGED");
    let kept: Vec<_> = job
        .tasks
        .iter()
        .filter_map(|t| t.winner.and_then(|w| t.runs.get(w)))
        .collect();
    let bad = kept.iter().filter(|r| r.stdout == forged).count();
    (bad, kept.len(), job.record.state)
}

#[test]
fn a_job_under_forged_receipts_keeps_only_right_results() {
    // Before placements were checked: 12 of 12 FORGED, with and without
    // --verify 2.
    for verify in [1u8, 2] {
        let (bad, kept, state) = forged_kept(verify);
        eprintln!("--verify {verify}: {bad} of {kept} kept results FORGED, job {state}");
        assert_eq!((bad, kept, state), (0, 12, JobState::Completed));
    }
}

#[test]
fn a_placement_lost_with_a_process_that_did_not_stop_reruns_its_task_and_rests_nobody() {
    let fx = Fixture::new();
    let now = crate::clock::now_ms();
    let (a_key, a) = device(1);
    let (id, ran) = {
        let mut c = fx.load();
        let id = c.submit(fx.spec(1, 1), now).expect("submit");
        let ran = offers(&c.schedule_accepted(&[candidate(a)], &[a], now));
        assert_eq!(ran, vec![(0, a, 1)]);
        // Its placement is not written yet when the process ends without
        // stopping (killed): the store holds the job alone.
        assert!(c.jobs[&id].unwritten.contains(&0));
        c.store.flush().expect("flush");
        (id, ran[0])
    };
    let mut c = fx.load();
    assert_eq!(c.jobs[&id].tasks[0].attempts, 0, "the placement was lost");
    // a delivers the run it was given: refused (this process never placed
    // it), but a is not taken for a forger.
    let err = deliver(&mut c, a, receipt(&a_key, id, ran.0, ran.2, b"42"))
        .expect_err("a run this process does not know of");
    assert!(err.contains("not rested"), "{err}");
    assert!(!c.jobs[&id].cooldown.contains_key(&a));
    // The task runs again, on a, at an attempt past the lost one, and
    // counts.
    let again = offers(&c.schedule_accepted(&[candidate(a)], &[a], now));
    assert_eq!(again.len(), 1);
    let (index, peer, attempt) = again[0];
    assert_eq!(peer, a);
    assert_eq!(
        deliver(&mut c, a, receipt(&a_key, id, index, attempt, b"42")),
        Ok(true)
    );
    assert_eq!(c.jobs[&id].record.state, JobState::Completed);
    // Past the grace after resuming, a run never placed rests its sender
    // again.
    let (rogue_key, rogue) = device(66);
    c.jobs
        .get_mut(&id)
        .expect("job")
        .resumed
        .as_mut()
        .expect("resumed")
        .at_ms = 0;
    let id2 = c.submit(fx.spec(1, 1), now).expect("submit");
    assert!(c.jobs[&id2].resumed.is_none());
    let err =
        deliver(&mut c, rogue, receipt(&rogue_key, id2, 0, 5, b"FORGED")).expect_err("forged");
    assert!(err.contains("forged or replayed"), "{err}");
    assert!(c.jobs[&id2].cooldown.contains_key(&rogue));
}
