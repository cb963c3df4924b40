//! Tests of the batch: placement, losses and attempts, the slow-worker
//! rule, stragglers, verification, and a property test of its invariants.

use std::collections::BTreeMap;

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use proptest::prelude::*;

use super::placement::useful;
use super::*;

/// A device's key, from one byte.
pub(super) fn key(n: u8) -> PeerKey {
    PeerKey::from_bytes([n; 32])
}

/// A worker with `slots` free slots of `speed`, in a class of its own.
pub(super) fn worker(n: u8, slots: u16, speed: u64) -> Worker {
    Worker {
        peer: key(n),
        slots_free: slots,
        slots_total: slots.max(1),
        held_elsewhere: 0,
        speed,
        class: format!("class-{n}"),
        cached: false,
        transfer_ms: 0,
        ahead: 1,
    }
}

/// The offers among `decisions`: task, worker, attempt.
pub(super) fn offers_at(decisions: &[Decision]) -> Vec<(u32, PeerKey, u32)> {
    decisions
        .iter()
        .filter_map(|d| match d {
            Decision::Offer {
                index,
                peer,
                attempt,
                ..
            } => Some((*index, *peer, *attempt)),
            _ => None,
        })
        .collect()
}

/// The offers among `decisions`: task and worker.
pub(super) fn offers(decisions: &[Decision]) -> Vec<(u32, PeerKey)> {
    offers_at(decisions)
        .into_iter()
        .map(|(index, peer, _)| (index, peer))
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
    assert_eq!(batch.tasks()[0].counted(), 0);
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
    assert_eq!(batch.tasks()[0].counted(), 0);
    // Each offer had its own attempt number all the same.
    assert_eq!(batch.tasks()[0].attempts, 10);
}

#[test]
fn a_worker_lost_and_back_gets_a_new_attempt_and_its_first_run_still_counts() {
    let mut batch = Batch::new(1, BatchConfig::default());
    let offered = offers_at(&batch.schedule(&[worker(1, 1, 10)], 0));
    assert_eq!(offered, vec![(0, key(1), 1)]);
    // Its circuit was cut and the view gave it up; it kept running.
    batch.on_peer_lost(&key(1));
    // Back: offered the task again under another attempt number (attempt 1
    // again would be refused by the worker as a replay), and the loss
    // does not count.
    let offered = offers_at(&batch.schedule(&[worker(1, 1, 10)], 1));
    assert_eq!(offered, vec![(0, key(1), 2)]);
    assert_eq!(batch.tasks()[0].counted(), 1);
    // The first run's result is taken.
    let digest = ContentHash::from_bytes([5; 32]);
    assert!(batch.on_result(0, &key(1), 1, digest).is_ok());
    assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
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

/// A batch config with `--verify k`.
pub(super) fn verify(k: u8) -> BatchConfig {
    BatchConfig {
        redundancy: k,
        ..BatchConfig::default()
    }
}

/// A result digest, from one byte.
pub(super) fn digest(n: u8) -> ContentHash {
    ContentHash::from_bytes([n; 32])
}

/// A result of task `index` from `peer`'s run of it, whatever its attempt.
fn vote(batch: &mut Batch, index: u32, peer: &PeerKey, digest: ContentHash) -> Vec<Decision> {
    let attempt = batch.attempt_of(index, peer).expect("a placed worker");
    batch
        .on_result(index, peer, attempt, digest)
        .expect("a result from a placed run")
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
    assert!(vote(&mut batch, 0, &placed[0].1, digest(7)).is_empty());
    assert_eq!(
        batch.tasks()[0].wanted(),
        0,
        "the other run is still in flight"
    );
    vote(&mut batch, 0, &placed[1].1, digest(7));
    assert!(matches!(batch.tasks()[0].state, TaskState::Done(_)));
    assert!(!batch.tasks()[0].mismatch);
}

#[test]
fn a_mismatch_gets_one_more_run_and_the_majority_wins() {
    let mut batch = Batch::new(1, verify(2));
    let workers = [worker(1, 1, 100), worker(2, 1, 100), worker(3, 1, 100)];
    let placed = offers(&batch.schedule(&workers, 0));
    assert_eq!(placed.len(), 2);
    vote(&mut batch, 0, &key(1), digest(1));
    vote(&mut batch, 0, &key(2), digest(66)); // a liar
    assert!(batch.tasks()[0].mismatch);
    let third = offers(&batch.schedule(&workers, 1));
    assert_eq!(
        third,
        vec![(0, key(3))],
        "the tie-breaker runs on the third worker"
    );
    vote(&mut batch, 0, &key(3), digest(1));
    assert_eq!(batch.tasks()[0].state, TaskState::Done(key(1)));
}

#[test]
fn three_different_answers_fail_the_task() {
    let mut batch = Batch::new(1, verify(2));
    let workers = [worker(1, 1, 100), worker(2, 1, 100), worker(3, 1, 100)];
    batch.schedule(&workers, 0);
    vote(&mut batch, 0, &key(1), digest(1));
    vote(&mut batch, 0, &key(2), digest(2));
    batch.schedule(&workers, 1);
    let decisions = vote(&mut batch, 0, &key(3), digest(3));
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
    let decisions = vote(&mut batch, 0, &key(1), digest(1));
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
    /// A result of a task from a worker, with one of three digests.
    Done(u32, u8, u8),
    Failed(u32, u8),
    Rejected(u32, u8),
    Lost(u8),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        3 => Just(Event::Schedule),
        3 => (0u32..8, 1u8..4, 0u8..3).prop_map(|(i, p, d)| Event::Done(i, p, d)),
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
    w.ahead = MAX_AHEAD + 10;
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
                Event::Done(i, p, d) => {
                    let (peer, attempt) = (key(p), batch.attempt_of(i, &key(p)).unwrap_or(1));
                    let state = batch.tasks()[i as usize].state.clone();
                    let mismatched = batch.tasks()[i as usize].mismatch;
                    let foreseen = batch.outcome_of(i, &peer, attempt, digest(d));
                    let taken = batch.on_result(i, &peer, attempt, digest(d));
                    prop_assert_eq!(foreseen.is_err(), taken.is_err());
                    let task = &batch.tasks()[i as usize];
                    // What `outcome_of` foresaw is what the result did.
                    match foreseen {
                        Ok(Some(outcome)) => {
                            prop_assert_eq!(outcome.mismatch, task.mismatch && !mismatched);
                            let ok = match (&outcome.end, &task.state) {
                                (End::Open, TaskState::Queued | TaskState::Running(_)) => true,
                                (End::Done(w), TaskState::Done(got)) => w == got,
                                (End::Failed(w) | End::GaveUp(w), TaskState::Failed(got)) => w == got,
                                _ => false,
                            };
                            prop_assert!(ok, "foreseen {:?}, got {:?}", outcome, task.state);
                        }
                        _ => prop_assert_eq!(&task.state, &state, "nothing foreseen, nothing done"),
                    }
                    taken.unwrap_or_default()
                }
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
                prop_assert!(task.counted() < config.max_attempts + u32::from(task.needed));
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
