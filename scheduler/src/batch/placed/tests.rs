//! Tests of placements: results from runs never placed, refused or
//! replayed change nothing; placed runs, straggler copies and runs placed
//! before a restart still deliver; a property test against a model of the
//! offers made.

use std::collections::{BTreeMap, BTreeSet};

use corral_protocol::ids::PeerKey;
use proptest::prelude::*;

use super::super::tests::{digest, key, offers_at, verify, worker};
use super::super::{Batch, BatchConfig, Decision, TaskState};
use super::{Fit, MAX_PLACEMENTS, PlacedState, Unplaced};

#[test]
fn a_forged_result_from_a_peer_never_placed_changes_nothing() {
    let mut batch = Batch::new(1, BatchConfig::default());
    let placed = offers_at(&batch.schedule(&[worker(1, 1, 10)], 0));
    assert_eq!(placed, vec![(0, key(1), 1)]);
    let before = batch.tasks().to_vec();
    // A rogue with a fresh identity names the attempt the offer carried.
    assert_eq!(
        batch.on_result(0, &key(9), 1, digest(66)),
        Err(Unplaced::NotPlaced {
            index: 0,
            peer: key(9),
            attempt: 1
        })
    );
    assert_eq!(batch.tasks(), &before[..]);
    assert_eq!(batch.load_of(&key(9)), 0);
    // And one for a task the job does not have.
    assert_eq!(
        batch.on_result(7, &key(9), 1, digest(66)),
        Err(Unplaced::NoSuchTask { index: 7 })
    );
    // The real worker's result still counts.
    assert_eq!(batch.on_result(0, &key(1), 1, digest(1)), Ok(Vec::new()));
    assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
}

#[test]
fn two_fresh_identities_that_refused_their_offers_do_not_make_verify_2_agree() {
    let mut batch = Batch::new(1, verify(2));
    let rogues = [worker(8, 1, 1000), worker(9, 1, 1000)];
    let placed = offers_at(&batch.schedule(&rogues, 0));
    assert_eq!(placed.len(), 2, "both rogues are offered a run: {placed:?}");
    for (_, peer, _) in &placed {
        batch.on_rejected(0, peer, "busy");
    }
    for (index, peer, attempt) in &placed {
        let refused = batch.on_result(*index, peer, *attempt, digest(66));
        assert!(
            matches!(refused, Err(Unplaced::Refused { .. })),
            "{refused:?}"
        );
    }
    // Never offered at all: the same.
    assert!(matches!(
        batch.on_result(0, &key(7), 1, digest(66)),
        Err(Unplaced::NotPlaced { .. })
    ));
    let task = &batch.tasks()[0];
    assert_eq!(task.state, TaskState::Queued);
    assert!(task.results.is_empty());
    // Two honest workers then settle it.
    let honest = [worker(1, 1, 10), worker(2, 1, 10)];
    for (index, peer, attempt) in offers_at(&batch.schedule(&honest, 1)) {
        batch
            .on_result(index, &peer, attempt, digest(1))
            .expect("a placed run");
    }
    assert!(matches!(batch.tasks()[0].state, TaskState::Done(p) if p == key(1) || p == key(2)));
}

#[test]
fn a_replayed_receipt_of_an_attempt_the_peer_did_not_hold_changes_nothing() {
    let mut batch = Batch::new(1, BatchConfig::default());
    // Attempt 1 on worker 2, which refuses; attempt 2 on worker 1.
    assert_eq!(
        offers_at(&batch.schedule(&[worker(2, 1, 10)], 0)),
        vec![(0, key(2), 1)]
    );
    batch.on_rejected(0, &key(2), "limits");
    assert_eq!(
        offers_at(&batch.schedule(&[worker(1, 1, 10)], 1)),
        vec![(0, key(1), 2)]
    );
    // Worker 1 replays attempt 1, which it never held.
    assert_eq!(
        batch.on_result(0, &key(1), 1, digest(66)),
        Err(Unplaced::NotPlaced {
            index: 0,
            peer: key(1),
            attempt: 1
        })
    );
    assert!(matches!(batch.tasks()[0].state, TaskState::Running(_)));
    assert_eq!(batch.on_result(0, &key(1), 2, digest(1)), Ok(Vec::new()));
    assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
    // A resend of the counted result is a repeat, not the sender's fault.
    assert_eq!(batch.check_result(0, &key(1), 2), Ok(Fit::Repeat));
}

#[test]
fn a_straggler_copy_shares_its_attempt_and_its_result_counts() {
    let mut batch = Batch::new(1, BatchConfig::default());
    batch.schedule(&[worker(1, 1, 10)], 0);
    let copy = offers_at(&batch.schedule(&[worker(1, 0, 10), worker(2, 1, 1000)], 5));
    assert_eq!(copy, vec![(0, key(2), 1)]);
    assert_eq!(
        batch.on_result(0, &key(2), 1, digest(1)),
        Ok(vec![Decision::Cancel {
            index: 0,
            peer: key(1)
        }])
    );
    // The cancelled holder's late result is late, not forged.
    assert_eq!(batch.check_result(0, &key(1), 1), Ok(Fit::Late));
}

#[test]
fn a_worker_placed_before_a_restart_still_delivers() {
    let mut batch = Batch::new(2, BatchConfig::default());
    batch.restore_attempts(0, 3);
    batch.restore_placed(0, key(1), 3);
    assert_eq!(batch.check_result(0, &key(1), 3), Ok(Fit::Counts));
    assert!(matches!(
        batch.check_result(0, &key(1), 2),
        Err(Unplaced::NotPlaced { .. })
    ));
    assert!(matches!(
        batch.check_result(1, &key(1), 3),
        Err(Unplaced::NotPlaced { .. })
    ));
    assert_eq!(batch.on_result(0, &key(1), 3, digest(1)), Ok(Vec::new()));
    assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
}

#[test]
fn placements_stay_bounded_under_churn() {
    let config = BatchConfig {
        max_losses: u32::MAX,
        ..BatchConfig::default()
    };
    let mut batch = Batch::new(1, config);
    for round in 0..200u8 {
        let w = worker(round, 1, 10);
        assert_eq!(offers_at(&batch.schedule(&[w], u64::from(round))).len(), 1);
        batch.on_peer_lost(&key(round));
    }
    let task = &batch.tasks()[0];
    assert!(task.placed.len() <= MAX_PLACEMENTS, "{}", task.placed.len());
    // The latest one is there and may still deliver (every start had its
    // own attempt number).
    assert_eq!(task.attempts, 200);
    assert_eq!(batch.check_result(0, &key(199), 200), Ok(Fit::Counts));
    assert!(task.placed.iter().all(|p| p.state == PlacedState::Released));
}

#[derive(Clone, Debug)]
enum Event {
    Schedule,
    Done(u32, u8),
    Failed(u32, u8),
    Rejected(u32, u8),
    Busy(u32, u8),
    Lost(u8),
    /// A result of task, from peer, naming attempt, with output.
    Result(u32, u8, u32, u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Schedule),
        2 => (0u32..6, 1u8..4).prop_map(|(i, p)| Event::Done(i, p)),
        1 => (0u32..6, 1u8..4).prop_map(|(i, p)| Event::Failed(i, p)),
        1 => (0u32..6, 1u8..4).prop_map(|(i, p)| Event::Rejected(i, p)),
        1 => (0u32..6, 1u8..4).prop_map(|(i, p)| Event::Busy(i, p)),
        1 => (1u8..4).prop_map(Event::Lost),
        // Peers 1–3 are workers; 4 and 5 are never offered anything.
        4 => (0u32..7, 1u8..6, 0u32..6, 0u8..2).prop_map(|(i, p, a, d)| Event::Result(i, p, a, d)),
    ]
}

/// What the test knows independently of the batch: every run offered
/// (from the decisions) and not refused, and which run each worker holds.
#[derive(Default)]
struct Model {
    placed: BTreeSet<(u32, PeerKey, u32)>,
    holding: BTreeMap<(u32, PeerKey), u32>,
}

impl Model {
    fn decisions(&mut self, decisions: &[Decision]) {
        for d in decisions {
            match d {
                Decision::Offer {
                    index,
                    peer,
                    attempt,
                    ..
                } => {
                    self.placed.insert((*index, *peer, *attempt));
                    self.holding.insert((*index, *peer), *attempt);
                }
                Decision::Cancel { index, peer } => {
                    self.holding.remove(&(*index, *peer));
                }
                Decision::GiveUp { .. } | Decision::Cooldown { .. } => {}
            }
        }
    }

    fn refused(&mut self, index: u32, peer: PeerKey) {
        if let Some(attempt) = self.holding.remove(&(index, peer)) {
            self.placed.remove(&(index, peer, attempt));
        }
    }
}

proptest! {
    #[test]
    fn no_result_from_an_unplaced_run_ever_changes_a_task(
        events in prop::collection::vec(event(), 0..150),
        redundancy in 1u8..3,
    ) {
        let workers = [worker(1, 2, 300), worker(2, 1, 100), worker(3, 3, 50)];
        let mut batch = Batch::new(6, BatchConfig { redundancy, ..BatchConfig::default() });
        let mut model = Model::default();
        for (t, e) in events.into_iter().enumerate() {
            let decisions = match e {
                Event::Schedule => batch.schedule(&workers, t as u64),
                Event::Done(i, p) => {
                    model.holding.remove(&(i, key(p)));
                    batch.on_done(i, &key(p))
                }
                Event::Failed(i, p) => {
                    model.holding.remove(&(i, key(p)));
                    batch.on_failed(i, &key(p), "x")
                }
                Event::Rejected(i, p) => {
                    model.refused(i, key(p));
                    batch.on_rejected(i, &key(p), "not trusted")
                }
                Event::Busy(i, p) => {
                    model.refused(i, key(p));
                    batch.on_busy(i, &key(p), "busy")
                }
                Event::Lost(p) => {
                    model.holding.retain(|(_, peer), _| *peer != key(p));
                    batch.on_peer_lost(&key(p))
                }
                Event::Result(i, p, a, d) => {
                    let before = batch.clone();
                    let got = batch.on_result(i, &key(p), a, digest(d));
                    if model.placed.contains(&(i, key(p), a)) {
                        prop_assert!(got.is_ok(), "a placed run's result was refused: {got:?}");
                        model.holding.remove(&(i, key(p)));
                    } else {
                        prop_assert!(got.is_err(), "an unplaced run's result was taken");
                        prop_assert_eq!(batch.tasks(), before.tasks(), "an unplaced result changed a task");
                        prop_assert_eq!(batch.waiting(), before.waiting());
                        for n in 1..6 {
                            prop_assert_eq!(batch.load_of(&key(n)), before.load_of(&key(n)));
                        }
                    }
                    got.unwrap_or_default()
                }
            };
            model.decisions(&decisions);
            // Every holder is placed, at the attempt it was offered.
            for (i, task) in batch.tasks().iter().enumerate() {
                prop_assert!(task.placed.len() <= MAX_PLACEMENTS);
                if let TaskState::Running(on) = &task.state {
                    for peer in on.keys() {
                        let attempt = batch.attempt_of(i as u32, peer);
                        prop_assert_eq!(attempt, model.holding.get(&(i as u32, *peer)).copied());
                    }
                }
            }
        }
    }
}
