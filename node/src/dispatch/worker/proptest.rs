//! A property test of the worker's event-loop side: random sequences of
//! offers (trusted, untrusted, relayed, forged, expired, replayed, too
//! many, malformed), cancels from the task's coordinator and from
//! strangers, hand-backs, draining, tasks ending and time passing, on a
//! real temporary store and blob store with a manual clock, no network.
//! After every step the worker's invariants hold (`invariants.rs`) and it
//! agrees with a model of what DESIGN.md says it does: which offers it
//! takes and why it refuses the others, which tasks it holds, which are
//! stopped.

use std::collections::{BTreeMap, HashSet};

use corral_protocol::capacity::OwnerState;
use corral_protocol::envelope::{Signed, SigningKey, peer_key, signing_key};
use corral_protocol::ids::{JobId, Nonce, PeerKey};
use corral_protocol::manifest::{EngineReq, JobManifest, Limits, TaskSet};
use corral_protocol::messages::RejectReason;
use corral_scheduler::batch::MAX_AHEAD;
use proptest::prelude::*;

use super::tests::{harness, missing_module};
use super::{Gate, WorkerEvent};
use crate::clock::{Clock, ManualClock};
use crate::runtime::StopReason;

const JOBS: u16 = 4;
const TASKS: u32 = 3;
const SLOTS: u16 = 2;
const START_MS: u64 = 1_000_000;
/// Manifests expire this long after they were made.
const LIFETIME_MS: u64 = 20_000;

#[derive(Clone, Debug)]
enum Step {
    Offer {
        job: u16,
        index: u32,
        attempt: u32,
        from: From,
        owner: OwnerState,
    },
    /// A cancel of a task held (`held`: the model's nth, if any) or of
    /// any task.
    Cancel {
        job: u16,
        index: u32,
        held: Option<usize>,
        stranger: bool,
    },
    HandBackAll,
    Finish {
        pick: usize,
    },
    Drain,
    Tick {
        ms: u64,
    },
}

/// Who sends an offer, and how.
#[derive(Clone, Copy, Debug)]
enum From {
    /// The job's submitter, unchanged.
    Submitter,
    /// Someone else relays the submitter's manifest.
    Relayed,
    /// The submitter, with a byte of the manifest changed under its signature.
    Forged,
}

fn step() -> impl Strategy<Value = Step> {
    let from = prop_oneof![
        6 => Just(From::Submitter),
        1 => Just(From::Relayed),
        1 => Just(From::Forged),
    ];
    let owner = prop_oneof![
        6 => Just(OwnerState::Idle),
        1 => Just(OwnerState::Busy),
        1 => Just(OwnerState::Draining),
    ];
    prop_oneof![
        8 => (0..JOBS, 0..=TASKS, 0u32..3, from, owner).prop_map(
            |(job, index, attempt, from, owner)| Step::Offer { job, index, attempt, from, owner }
        ),
        3 => (0..JOBS, 0..TASKS, proptest::option::weighted(0.8, any::<usize>()), any::<bool>())
            .prop_map(|(job, index, held, stranger)| Step::Cancel { job, index, held, stranger }),
        1 => Just(Step::HandBackAll),
        3 => any::<usize>().prop_map(|pick| Step::Finish { pick }),
        1 => Just(Step::Drain),
        2 => (0u64..8_000).prop_map(|ms| Step::Tick { ms }),
    ]
}

/// Job `n`: the odd ones are Mallory's, whom the worker does not trust.
fn manifest(n: u16, submitter: &SigningKey) -> Signed<JobManifest> {
    let mut id = [3u8; 16];
    id[..2].copy_from_slice(&n.to_be_bytes());
    let (module_hash, module_size) = missing_module();
    let manifest = JobManifest {
        version: corral_protocol::PROTOCOL_VERSION,
        job: JobId::from_bytes(id),
        submitter: peer_key(submitter),
        module_hash,
        module_size,
        args: vec!["m".into()],
        env: BTreeMap::new(),
        dirs: Vec::new(),
        tasks: TaskSet::Count(TASKS),
        limits: Limits::default(),
        engine: EngineReq::Any,
        redundancy: 1,
        created_ms: START_MS,
        expires_ms: START_MS + LIFETIME_MS,
        nonce: Nonce([n as u8; 16]),
        stdin: None,
        output: true,
    };
    Signed::sign(&manifest, submitter)
}

/// A task the model says the worker holds.
struct HeldTask {
    coordinator: PeerKey,
    attempt: u32,
    /// Why it was stopped: the first reason given counts.
    stopped: Option<StopReason>,
    given_back: bool,
}

/// What the worker should do, written from DESIGN.md's rules for offers.
struct Model {
    trusted: PeerKey,
    draining: bool,
    held: BTreeMap<(u16, u32), HeldTask>,
    seen: HashSet<(u16, u32, u32)>,
}

impl Model {
    fn offer(
        &mut self,
        (job, index, attempt): (u16, u32, u32),
        signer: PeerKey,
        from: From,
        owner: OwnerState,
        now_ms: u64,
    ) -> Result<(), Option<RejectReason>> {
        if matches!(from, From::Relayed) || signer != self.trusted {
            return Err(Some(RejectReason::NotTrusted));
        }
        if matches!(from, From::Forged) {
            // Refused; which reason depends on the byte changed.
            return Err(None);
        }
        if now_ms >= START_MS + LIFETIME_MS {
            return Err(Some(RejectReason::Expired));
        }
        if index >= TASKS || attempt == 0 {
            return Err(Some(RejectReason::Malformed));
        }
        if self.seen.contains(&(job, index, attempt)) {
            return Err(Some(RejectReason::Replay));
        }
        if self.draining {
            return Err(Some(RejectReason::Draining));
        }
        match owner {
            OwnerState::Idle => {}
            OwnerState::Draining => return Err(Some(RejectReason::Draining)),
            OwnerState::Busy => return Err(Some(RejectReason::OwnerBusy)),
        }
        if self.held.contains_key(&(job, index))
            || self.held.len() >= usize::from(SLOTS) + usize::from(MAX_AHEAD)
        {
            return Err(Some(RejectReason::Busy));
        }
        self.seen.insert((job, index, attempt));
        self.held.insert(
            (job, index),
            HeldTask {
                coordinator: signer,
                attempt,
                stopped: None,
                given_back: false,
            },
        );
        Ok(())
    }
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // The worker spawns its fetches here; they are never polled (nothing
    // awaits), so every task it takes stays held until a step ends it.
    let _inside = rt.enter();
    let mut h = harness(SLOTS);
    let clock = ManualClock::at(START_MS);
    let alice = signing_key(&[1; 32]);
    let mallory = signing_key(&[9; 32]);
    let keys = [&alice, &mallory];
    let jobs: Vec<Signed<JobManifest>> = (0..JOBS)
        .map(|n| manifest(n, keys[usize::from(n % 2)]))
        .collect();
    let ids: Vec<JobId> = jobs
        .iter()
        .map(|s| s.verify(START_MS).expect("a valid manifest").job)
        .collect();
    let mut model = Model {
        trusted: peer_key(&alice),
        draining: false,
        held: BTreeMap::new(),
        seen: HashSet::new(),
    };
    let only_alice = |k: &PeerKey| *k == peer_key(&alice);

    for step in steps {
        match step {
            Step::Offer {
                job,
                index,
                attempt,
                from,
                owner,
            } => {
                let signer = peer_key(keys[usize::from(job % 2)]);
                let mut signed = jobs[usize::from(job)].clone();
                let sender = match from {
                    From::Submitter => signer,
                    From::Relayed => peer_key(keys[usize::from(1 - job % 2)]),
                    From::Forged => {
                        let last = signed.payload_bytes_mut().len() - 1;
                        signed.payload_bytes_mut()[last] ^= 1;
                        signer
                    }
                };
                let gate = Gate {
                    now_ms: clock.now_ms(),
                    trusted: &only_alice,
                    owner,
                };
                let got = h.worker.on_offer(sender, &signed, index, attempt, &gate);
                let want = model.offer((job, index, attempt), signer, from, owner, clock.now_ms());
                match (&got, &want) {
                    (Ok(()), Ok(())) | (Err(_), Err(None)) => {}
                    (Err(g), Err(Some(w))) if g == w => {}
                    _ => prop_assert!(
                        false,
                        "offer {step:?}: got {got:?}, the model says {want:?}"
                    ),
                }
            }
            Step::Cancel {
                job,
                index,
                held,
                stranger,
            } => {
                let (job, index) = match held {
                    Some(n) if !model.held.is_empty() => *model
                        .held
                        .keys()
                        .nth(n % model.held.len())
                        .expect("picked within the length"),
                    _ => (job, index),
                };
                let from = if stranger {
                    peer_key(&signing_key(&[5; 32]))
                } else {
                    peer_key(keys[usize::from(job % 2)])
                };
                h.worker.on_cancel(from, ids[usize::from(job)], index);
                if let Some(task) = model.held.get_mut(&(job, index))
                    && task.coordinator == from
                {
                    task.stopped.get_or_insert(StopReason::Cancelled);
                }
            }
            Step::HandBackAll => {
                let given = h.worker.hand_back_all(RejectReason::OwnerBusy);
                let mut want = 0;
                for (&(job, index), task) in model.held.iter_mut() {
                    if !task.given_back {
                        task.given_back = true;
                        task.stopped.get_or_insert(StopReason::HandedBack);
                        model.seen.remove(&(job, index, task.attempt));
                        want += 1;
                    }
                }
                prop_assert_eq!(given, want, "tasks given back");
            }
            Step::Finish { pick } => {
                if model.held.is_empty() {
                    continue;
                }
                let (&(job, index), _) = model
                    .held
                    .iter()
                    .nth(pick % model.held.len())
                    .expect("picked within the length");
                model.held.remove(&(job, index));
                h.worker.on_event(WorkerEvent::Finished {
                    job: ids[usize::from(job)],
                    index,
                });
            }
            Step::Drain => {
                h.worker.drain();
                model.draining = true;
            }
            Step::Tick { ms } => clock.advance(ms),
        }

        h.worker
            .check_invariants()
            .map_err(|broken| TestCaseError::fail(format!("after {step:?}: {broken}")))?;
        prop_assert_eq!(h.worker.running(), model.held.len(), "tasks held");
        prop_assert_eq!(h.worker.draining(), model.draining);
        for (&(job, index), task) in &model.held {
            let running = h
                .worker
                .running
                .get(&(ids[usize::from(job)], index))
                .ok_or_else(|| {
                    TestCaseError::fail(format!("task {index} of job {job} is not held"))
                })?;
            prop_assert_eq!(running.attempt, task.attempt);
            prop_assert_eq!(
                running.cancel.reason(),
                task.stopped,
                "task {} of job {} stopped",
                index,
                job
            );
            prop_assert_eq!(running.hand_back.get().is_some(), task.given_back);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_worker_takes_refuses_and_stops_tasks_as_its_rules_say(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        run(steps)?;
    }
}
