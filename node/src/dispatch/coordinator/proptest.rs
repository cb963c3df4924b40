//! A property test of the coordinator: random sequences of submits,
//! placements, refusals, results (right, duplicated, stray), losses,
//! cancels and restarts, on a real temporary store with a manual clock, no
//! network. After every step the invariants hold (see `invariants.rs`), no
//! finished task changes again, and the store agrees with memory. A stray
//! result — from a (device, attempt) never offered the task, or refused —
//! changes nothing; a device offered a task before a restart still
//! delivers after it.

use std::collections::{BTreeMap, BTreeSet};

use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::RejectReason;
use corral_protocol::receipt::{TaskReceipt, TaskStatus};
use proptest::prelude::*;

use corral_scheduler::batch::TaskState;

use super::records::{JobRecord, JobState, TaskRecord, TaskRunState};
use super::tests::{Fixture, candidate, receipt_of};
use super::{Action, Coordinator};
use crate::blobs::BlobStore;
use crate::clock::{Clock, ManualClock};
use crate::store::{Records, Store};

const PEERS: u8 = 3;

#[derive(Clone, Debug)]
enum Step {
    Submit {
        tasks: u32,
        verify: u8,
    },
    Schedule {
        peers: u8,
    },
    Reject {
        offer: usize,
        reason: u16,
    },
    Result {
        offer: usize,
        exit: i32,
        out: u8,
    },
    Duplicate {
        answered: usize,
    },
    Stray {
        job: usize,
        index: u32,
        peer: u8,
        attempt: u32,
    },
    Late {
        carried: usize,
    },
    Lost {
        offer: usize,
    },
    PeerLost {
        peer: u8,
    },
    Cancel {
        job: usize,
    },
    Restart,
    Tick {
        ms: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (1u32..4, 1u8..3).prop_map(|(tasks, verify)| Step::Submit { tasks, verify }),
        4 => (1u8..8).prop_map(|peers| Step::Schedule { peers }),
        2 => (any::<usize>(), 1u16..13).prop_map(|(offer, reason)| Step::Reject { offer, reason }),
        5 => (any::<usize>(), 0i32..2, 0u8..2)
            .prop_map(|(offer, exit, out)| Step::Result { offer, exit, out }),
        1 => any::<usize>().prop_map(|answered| Step::Duplicate { answered }),
        2 => (any::<usize>(), 0u32..4, 0u8..PEERS, 0u32..5)
            .prop_map(|(job, index, peer, attempt)| Step::Stray { job, index, peer, attempt }),
        1 => any::<usize>().prop_map(|carried| Step::Late { carried }),
        1 => any::<usize>().prop_map(|offer| Step::Lost { offer }),
        1 => (0u8..PEERS).prop_map(|peer| Step::PeerLost { peer }),
        1 => any::<usize>().prop_map(|job| Step::Cancel { job }),
        1 => Just(Step::Restart),
        1 => (0u64..3000).prop_map(|ms| Step::Tick { ms }),
    ]
}

fn peer(n: u8) -> PeerKey {
    PeerKey::from_bytes([100 + n; 32])
}

fn reason(code: u16) -> RejectReason {
    RejectReason::ALL[usize::from(code - 1) % RejectReason::ALL.len()]
}

/// An offer as the daemon would have sent it.
#[derive(Clone, Copy, Debug)]
struct Offer {
    job: JobId,
    index: u32,
    peer: PeerKey,
    attempt: u32,
}

fn receipt(o: &Offer, exit: i32, out: u8) -> TaskReceipt {
    TaskReceipt {
        status: TaskStatus::Exited { code: exit },
        ..receipt_of(o.job, o.index, o.attempt, o.peer, &[out], 5)
    }
}

struct World {
    fx: Fixture,
    clock: ManualClock,
    store: Store,
    blobs: BlobStore,
    coord: Coordinator<ManualClock>,
    jobs: Vec<JobId>,
    offers: Vec<Offer>,
    answered: Vec<(Offer, i32, u8)>,
    /// Every (job, task, device, attempt) offered and not refused.
    placed: BTreeSet<(JobId, u32, PeerKey, u32)>,
    /// Offers running on their devices when the coordinator restarted.
    carried: Vec<Offer>,
    /// Every finished task as first seen in the store: state and the kept
    /// run's digest.
    finished: BTreeMap<(JobId, u32), (TaskRunState, Option<String>)>,
}

impl World {
    fn new() -> Self {
        let fx = Fixture::new();
        let clock = ManualClock::at(1_800_000_000_000);
        let store = Store::open(fx.dir.path()).expect("store on a temporary dir");
        let blobs = BlobStore::open(fx.dir.path()).expect("blob store on a temporary dir");
        let coord = Coordinator::load_with_clock(
            clock.clone(),
            fx.me,
            fx.key.clone(),
            store.clone(),
            blobs.clone(),
        );
        Self {
            fx,
            clock,
            store,
            blobs,
            coord,
            jobs: Vec::new(),
            offers: Vec::new(),
            answered: Vec::new(),
            placed: BTreeSet::new(),
            carried: Vec::new(),
            finished: BTreeMap::new(),
        }
    }

    fn take_offers(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Offer {
                    job,
                    index,
                    peer,
                    attempt,
                } => {
                    self.placed.insert((job, index, peer, attempt));
                    self.offers.push(Offer {
                        job,
                        index,
                        peer,
                        attempt,
                    });
                }
                // The device stops it: its offer is answered no more.
                Action::Cancel { job, index, peer } => self
                    .offers
                    .retain(|o| !(o.job == job && o.index == index && o.peer == peer)),
            }
        }
    }

    fn pick(list_len: usize, n: usize) -> Option<usize> {
        (list_len > 0).then(|| n % list_len)
    }

    fn run(&mut self, step: &Step) {
        let now = self.clock.now_ms();
        match *step {
            Step::Submit { tasks, verify } => {
                let id = self
                    .coord
                    .submit(self.fx.spec(tasks, verify), now)
                    .expect("submit of a stored module");
                self.jobs.push(id);
            }
            Step::Schedule { peers } => {
                let all: Vec<PeerKey> = (0..PEERS).map(peer).collect();
                let candidates: Vec<_> = (0..PEERS)
                    .filter(|n| peers & (1 << n) != 0)
                    .map(|n| candidate(peer(n)))
                    .collect();
                let actions = self.coord.schedule(&candidates, &all, now);
                self.take_offers(actions);
            }
            Step::Reject { offer, reason: r } => {
                if let Some(i) = Self::pick(self.offers.len(), offer) {
                    let o = self.offers.remove(i);
                    self.placed.remove(&(o.job, o.index, o.peer, o.attempt));
                    let actions = self
                        .coord
                        .on_rejected(o.job, o.index, o.peer, "p", reason(r));
                    self.take_offers(actions);
                }
            }
            Step::Result { offer, exit, out } => {
                if let Some(i) = Self::pick(self.offers.len(), offer) {
                    let o = self.offers.remove(i);
                    let actions = self
                        .coord
                        .on_result(o.peer, "p", receipt(&o, exit, out))
                        .expect("stored");
                    self.answered.push((o, exit, out));
                    self.take_offers(actions);
                }
            }
            Step::Duplicate { answered } => {
                if let Some(i) = Self::pick(self.answered.len(), answered) {
                    let (o, exit, out) = self.answered[i];
                    let actions = self
                        .coord
                        .on_result(o.peer, "p", receipt(&o, exit, out))
                        .expect("stored");
                    self.take_offers(actions);
                }
            }
            Step::Stray {
                job,
                index,
                peer: p,
                attempt,
            } => {
                if let Some(i) = Self::pick(self.jobs.len(), job) {
                    let o = Offer {
                        job: self.jobs[i],
                        index,
                        peer: peer(p),
                        attempt,
                    };
                    let placed = self.placed.contains(&(o.job, index, o.peer, attempt));
                    let before = self.snapshot(&o);
                    let actions = self
                        .coord
                        .on_result(o.peer, "p", receipt(&o, 0, 0))
                        .expect("stored");
                    if !placed {
                        assert!(actions.is_empty(), "a stray result made {actions:?}");
                        assert_eq!(self.snapshot(&o), before, "a stray result changed a task");
                    }
                    self.take_offers(actions);
                }
            }
            Step::Late { carried } => {
                if let Some(i) = Self::pick(self.carried.len(), carried) {
                    let o = self.carried.remove(i);
                    let counts = self.placed.contains(&(o.job, o.index, o.peer, o.attempt))
                        && self.coord.jobs.get(&o.job).is_some_and(|j| {
                            j.is_live()
                                && j.batch.tasks().get(o.index as usize).is_some_and(|t| {
                                    !matches!(t.state, TaskState::Done(_) | TaskState::Failed(_))
                                        && !t.results.iter().any(|(p, _)| *p == o.peer)
                                })
                        });
                    let runs = |w: &Self| w.snapshot(&o).map_or(0, |(runs, _)| runs);
                    let before = runs(self);
                    let actions = self
                        .coord
                        .on_result(o.peer, "p", receipt(&o, 0, 0))
                        .expect("stored");
                    if counts {
                        assert_eq!(
                            runs(self),
                            before + 1,
                            "a run offered before the restart was not taken"
                        );
                        self.answered.push((o, 0, 0));
                    }
                    self.take_offers(actions);
                }
            }
            Step::Lost { offer } => {
                if let Some(i) = Self::pick(self.offers.len(), offer) {
                    let o = self.offers.remove(i);
                    let actions = self.coord.on_lost(o.job, o.index, o.peer, "unreachable");
                    self.take_offers(actions);
                }
            }
            Step::PeerLost { peer: p } => {
                let lost = peer(p);
                self.offers.retain(|o| o.peer != lost);
                let actions = self.coord.on_peer_lost(&lost);
                self.take_offers(actions);
            }
            Step::Cancel { job } => {
                if let Some(i) = Self::pick(self.jobs.len(), job) {
                    let id = self.jobs[i];
                    if let Ok(actions) = self.coord.cancel(&id) {
                        self.take_offers(actions);
                    }
                }
            }
            Step::Restart => {
                let live_before: Vec<JobId> = self
                    .jobs
                    .iter()
                    .filter(|id| self.coord.progress(id).is_some_and(|(_, live)| live))
                    .copied()
                    .collect();
                // The daemon stops: it writes what it placed (see `leave`).
                self.coord.write_placements();
                self.coord = Coordinator::load_with_clock(
                    self.clock.clone(),
                    self.fx.me,
                    self.fx.key.clone(),
                    self.store.clone(),
                    self.blobs.clone(),
                );
                // The devices keep running what they were offered, and
                // may deliver it to the new process.
                self.carried.append(&mut self.offers);
                for id in live_before {
                    assert!(
                        self.coord.progress(&id).is_some_and(|(_, live)| live),
                        "job {id} running before the restart is not resumed"
                    );
                }
            }
            Step::Tick { ms } => self.clock.advance(ms),
        }
    }

    /// What a result of `o` could change: its task's recorded runs and its
    /// state in the batch.
    fn snapshot(&self, o: &Offer) -> Option<(usize, String)> {
        let job = self.coord.jobs.get(&o.job)?;
        let runs = job.tasks.get(o.index as usize)?.runs.len();
        let task = job.batch.tasks().get(o.index as usize)?;
        Some((runs, format!("{task:?}")))
    }

    /// After every step.
    fn check(&mut self) {
        if let Err(e) = self.coord.check_invariants() {
            panic!("{e}");
        }
        for id in &self.jobs {
            let tasks = self
                .store
                .scan_records::<TaskRecord>(Records::Tasks, id.as_bytes());
            let mut done = 0;
            for (key, task) in tasks {
                let index = u32::from_be_bytes(key[16..20].try_into().expect("4-byte index"));
                if task.state == TaskRunState::Done {
                    done += 1;
                }
                if matches!(task.state, TaskRunState::Done | TaskRunState::Failed) {
                    let kept = task
                        .winner
                        .and_then(|w| task.runs.get(w))
                        .map(|r| r.digest.to_hex());
                    let seen = self
                        .finished
                        .entry((*id, index))
                        .or_insert((task.state, kept.clone()));
                    assert_eq!(
                        *seen,
                        (task.state, kept),
                        "task {index} of {id} finished twice"
                    );
                } else {
                    assert!(
                        !self.finished.contains_key(&(*id, index)),
                        "task {index} of {id} was finished, now {:?}",
                        task.state
                    );
                }
            }
            // `corral jobs` counts what the store holds.
            let listed = self
                .coord
                .list()
                .into_iter()
                .find(|j| j["id"] == id.to_string())
                .expect("every job is listed");
            assert_eq!(listed["tasks_done"], done, "done count of {id}");
            let record = self
                .store
                .scan_records::<JobRecord>(Records::Jobs, id.as_bytes());
            assert_eq!(listed["state"], record[0].1.state.as_str());
            if record[0].1.state != JobState::Running {
                assert!(
                    self.coord.progress(id).is_none_or(|(_, live)| !live),
                    "job {id} ended in the store, live in memory"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_task_is_lost_or_finished_twice(steps in proptest::collection::vec(step(), 1..48)) {
        let mut world = World::new();
        world.run(&Step::Submit { tasks: 3, verify: 1 });
        world.check();
        for step in &steps {
            world.run(step);
            world.check();
        }
    }
}
