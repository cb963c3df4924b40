//! Leases through the coordinator, on a manual clock: a silent holder that
//! claims a huge speed is copied around and cooled off, and the job
//! finishes on honest workers; a heartbeat keeps an honest run's lease.

use std::collections::BTreeMap;

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::manifest::EngineReq;
use corral_protocol::receipt::{EngineKind, TaskReceipt};

use super::lease::speed_for;
use super::tests::{Fixture, candidate, receipt_of};
use super::*;
use crate::clock::{Clock, ManualClock};

/// A coordinator on a manual clock with a job of `tasks` tasks submitted.
fn with_job(fx: &Fixture, tasks: u32) -> (ManualClock, Coordinator<ManualClock>, JobId) {
    let clock = ManualClock::at(1_800_000_000_000);
    let mut coord = fx.load_with(clock.clone());
    let id = coord
        .submit(fx.spec(tasks, 1), clock.now_ms())
        .expect("submitted");
    (clock, coord, id)
}

fn peer(n: u8) -> PeerKey {
    PeerKey::from_bytes([n; 32])
}

fn receipt(job: JobId, index: u32, attempt: u32, worker: PeerKey, ms: u64) -> TaskReceipt {
    receipt_of(job, index, attempt, worker, &index.to_le_bytes(), ms)
}

const STEP_MS: u64 = 500;

#[test]
fn a_silent_holder_claiming_a_huge_speed_is_cooled_off_and_the_job_finishes() {
    let fx = Fixture::new();
    let (clock, mut coord, id) = with_job(&fx, 12);
    let rogue = peer(9);
    let honest = [peer(1), peer(2)];
    let mut candidates: Vec<Candidate> = honest.iter().map(|p| candidate(*p)).collect();
    candidates.push(Candidate {
        peer: rogue,
        slots: 64,
        engines: vec![EngineSpeed {
            engine: EngineKind::Interp,
            ops_per_s: u64::MAX / 2,
        }],
        arch: "x86_64".into(),
        relayed_rtt_ms: None,
    });
    let present: Vec<PeerKey> = candidates.iter().map(|c| c.peer).collect();
    // Honest runs take a second each; the rogue never answers.
    let mut runs: BTreeMap<(u32, PeerKey), (u32, u64)> = BTreeMap::new();
    let mut rogue_offers = 0;
    let start = clock.now_ms();
    while coord.progress(&id).is_some_and(|(_, live)| live) {
        let now = clock.now_ms();
        assert!(now - start < 10 * 60 * 1000, "the job stalled");
        let done: Vec<((u32, PeerKey), (u32, u64))> = runs
            .iter()
            .filter(|(_, (_, end))| *end <= now)
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((index, p), (attempt, _)) in done {
            runs.remove(&(index, p));
            coord
                .on_result(p, "honest", receipt(id, index, attempt, p, 1000))
                .expect("stored");
        }
        for action in coord.schedule(&candidates, &present, now) {
            match action {
                Action::Offer {
                    index,
                    peer,
                    attempt,
                    ..
                } if peer != rogue => {
                    runs.insert((index, peer), (attempt, now + 1000));
                }
                Action::Offer { .. } => rogue_offers += 1,
                Action::Cancel { index, peer, .. } => {
                    runs.remove(&(index, peer));
                }
            }
        }
        clock.advance(STEP_MS);
    }
    let took = clock.now_ms() - start;
    assert!(took < 2 * 60 * 1000, "took {took} ms");
    assert!(rogue_offers > 0, "the rogue was offered tasks to hold");
    let job = &coord.jobs[&id];
    assert_eq!(job.record.state, JobState::Completed);
    assert!(
        job.batch
            .tasks()
            .iter()
            .all(|t| matches!(t.state, TaskState::Done(p) if p != rogue))
    );
    assert!(
        job.cooldown.get(&rogue).is_some_and(|&until| until > start),
        "the rogue was cooled off"
    );
    assert!(honest.iter().all(|p| !job.cooldown.contains_key(p)));
    // `corral job` names it.
    let report = coord
        .report(&id, &|p: &PeerKey| p.short())
        .expect("a report");
    assert!(
        matches!(&report.cooled_off[..], [r] if r.reason.contains("past its lease")),
        "{:?}",
        report.cooled_off
    );
}

#[test]
fn a_worker_that_says_it_is_alive_keeps_its_lease() {
    let fx = Fixture::new();
    let (clock, mut coord, id) = with_job(&fx, 2);
    let (slow, fast) = (peer(1), peer(2));
    let candidates = [candidate(slow), candidate(fast)];
    let present = [slow, fast];
    let offers: Vec<(u32, PeerKey, u32)> = coord
        .schedule(&candidates, &present, clock.now_ms())
        .into_iter()
        .filter_map(|a| match a {
            Action::Offer {
                index,
                peer,
                attempt,
                ..
            } => Some((index, peer, attempt)),
            Action::Cancel { .. } => None,
        })
        .collect();
    assert_eq!(offers.len(), 2);
    let (long, _, _) = *offers.iter().find(|o| o.1 == slow).expect("one each");
    let (short, _, attempt) = *offers.iter().find(|o| o.1 == fast).expect("one each");
    clock.advance(1000);
    coord
        .on_result(fast, "fast", receipt(id, short, attempt, fast, 1000))
        .expect("stored");
    // The other task runs on, its worker alive all along: not copied
    // before sixteen times the job's run time (plus slack), never cooled
    // off.
    for _ in 0..(30_000 / STEP_MS) {
        if clock.now_ms().is_multiple_of(5000) {
            coord.on_alive(slow, id, &[long]);
        }
        let actions = coord.schedule(&candidates, &present, clock.now_ms());
        assert!(actions.is_empty(), "{actions:?}");
        clock.advance(STEP_MS);
    }
    assert!(!coord.jobs[&id].cooldown.contains_key(&slow));
    // Silent from now on: copied to the idle worker, and cooled off once
    // its lease lapses.
    let mut copied = false;
    for _ in 0..(120_000 / STEP_MS) {
        let actions = coord.schedule(&candidates, &present, clock.now_ms());
        if actions.contains(&Action::Offer {
            job: id,
            index: long,
            peer: fast,
            attempt: 1,
        }) {
            copied = true;
            break;
        }
        clock.advance(STEP_MS);
    }
    assert!(copied);
    for _ in 0..(120_000 / STEP_MS) {
        coord.schedule(&candidates, &present, clock.now_ms());
        clock.advance(STEP_MS);
    }
    assert!(coord.jobs[&id].cooldown.contains_key(&slow));
}

#[test]
fn a_device_without_the_jit_code_of_a_big_module_is_predicted_at_its_interpreter_speed() {
    let both = [
        EngineSpeed {
            engine: EngineKind::Jit,
            ops_per_s: 1000,
        },
        EngineSpeed {
            engine: EngineKind::Interp,
            ops_per_s: 100,
        },
    ];
    // Cold: its first tasks run on the interpreter while the JIT compiles.
    assert_eq!(speed_for(&both, EngineReq::Any, true), (100, "interp"));
    // Warm (a receipt of a JIT run of the module), or a small module.
    assert_eq!(speed_for(&both, EngineReq::Any, false), (1000, "jit"));
    // A job that asks for an engine gets it, cold or not.
    assert_eq!(speed_for(&both, EngineReq::Jit, true), (1000, "jit"));
    // A device with the JIT only waits for its compile: no other tier.
    assert_eq!(speed_for(&both[..1], EngineReq::Any, true), (1000, "jit"));
}

#[test]
fn a_receipt_says_whether_the_device_has_the_modules_jit_code() {
    let fx = Fixture::new();
    let (clock, mut coord, id) = with_job(&fx, 2);
    let worker = peer(1);
    let candidates = [candidate(worker)];
    let offered: Vec<(u32, u32)> = coord
        .schedule(&candidates, &[worker], clock.now_ms())
        .into_iter()
        .filter_map(|a| match a {
            Action::Offer { index, attempt, .. } => Some((index, attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(offered.len(), 2, "{offered:?}");
    let hash = coord.jobs[&id].manifest.module_hash;
    for (n, (index, attempt)) in offered.into_iter().enumerate() {
        coord.on_accepted(id, index, worker);
        let mut receipt = receipt(id, index, attempt, worker, 1000);
        receipt.engine = if n == 0 {
            EngineKind::Interp
        } else {
            EngineKind::Jit
        };
        coord.on_result(worker, "desk", receipt).expect("stored");
        assert_eq!(
            coord.warm.get(&(worker, hash)),
            Some(&(n == 1)),
            "after a run on {:?}",
            if n == 0 { "the interpreter" } else { "the JIT" }
        );
    }
}
