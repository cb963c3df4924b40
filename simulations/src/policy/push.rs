//! The baselines (random, round robin, least loaded, power of two choices):
//! every task pushed to a device as soon as it arrives, queued there, and
//! placed again the same way when lost or handed back.

use std::collections::{BTreeMap, BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Policy;
use crate::world::{Accepted, Micros, Place, Placed, View, Why};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Random,
    RoundRobin,
    LeastLoaded,
    PowerOfTwo,
}

/// The baselines: every task goes to a device at once and waits in its
/// queue; a lost or handed-back task is placed again the same way.
pub struct Push {
    kind: Kind,
    pending: VecDeque<(u32, u32)>,
    /// Per live job: which tasks have a result, and how many do not.
    done: BTreeMap<u32, (Vec<bool>, u32)>,
    rng: ChaCha8Rng,
    next: usize,
    /// Least-loaded: tasks placed on each device since its last advert.
    placed_since: Vec<u32>,
}

impl Push {
    pub(super) fn new(kind: Kind, devices: usize, seed: u64) -> Self {
        Self {
            kind,
            pending: VecDeque::new(),
            done: BTreeMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x706f_6c69),
            next: 0,
            placed_since: vec![0; devices],
        }
    }
}

/// Expected wait of one more task: (load + 1) over slots × speed, as an
/// integer key (smaller is better). The baselines that look at load are
/// speed-aware: that is the fair comparison on mixed devices.
fn per_slot(load: u32, slots: u16, speed: u64) -> u64 {
    (u64::from(load) + 1) * 1_000_000_000 / (u64::from(slots.max(1)) * speed.max(1))
}

impl Policy for Push {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Random => "random",
            Kind::RoundRobin => "round_robin",
            Kind::LeastLoaded => "least_loaded",
            Kind::PowerOfTwo => "power_of_two",
        }
    }

    fn job_arrived(&mut self, job: u32, tasks: u32) {
        self.done.insert(job, (vec![false; tasks as usize], tasks));
        self.pending.extend((0..tasks).map(|t| (job, t)));
    }

    fn place(&mut self, view: &mut View<'_>, _now: Micros) -> Placed {
        let mut out = Placed::default();
        if self.pending.is_empty() || view.eligible.is_empty() {
            return out;
        }
        let devices: Vec<u32> = view.eligible.iter().copied().collect();
        let mut heap: BinaryHeap<std::cmp::Reverse<(u64, u32)>> = BinaryHeap::new();
        if self.kind == Kind::LeastLoaded {
            heap = devices
                .iter()
                .map(|&d| {
                    let est = view.seen[d as usize].load + self.placed_since[d as usize];
                    std::cmp::Reverse((
                        per_slot(est, view.slots[d as usize], view.speed[d as usize]),
                        d,
                    ))
                })
                .collect();
        }
        while let Some((job, task)) = self.pending.pop_front() {
            if self.done.get(&job).is_none_or(|(d, _)| d[task as usize]) {
                continue;
            }
            let device = match self.kind {
                Kind::Random => devices[self.rng.gen_range(0..devices.len())],
                Kind::RoundRobin => {
                    self.next = (self.next + 1) % devices.len();
                    devices[self.next]
                }
                Kind::LeastLoaded => {
                    let Some(std::cmp::Reverse((_, d))) = heap.pop() else {
                        break;
                    };
                    self.placed_since[d as usize] += 1;
                    let est = view.seen[d as usize].load + self.placed_since[d as usize];
                    heap.push(std::cmp::Reverse((
                        per_slot(est, view.slots[d as usize], view.speed[d as usize]),
                        d,
                    )));
                    d
                }
                Kind::PowerOfTwo => {
                    let a = devices[self.rng.gen_range(0..devices.len())];
                    let b = devices[self.rng.gen_range(0..devices.len())];
                    let la = per_slot(
                        view.probe(a),
                        view.slots[a as usize],
                        view.speed[a as usize],
                    );
                    let lb = per_slot(
                        view.probe(b),
                        view.slots[b as usize],
                        view.speed[b as usize],
                    );
                    // Tasks placed this round are not in the probe yet.
                    if (la, a) <= (lb, b) { a } else { b }
                }
            };
            out.places.push(Place { job, task, device });
        }
        out
    }

    fn on_result(&mut self, job: u32, task: u32, _device: u32) -> Accepted {
        let mut accepted = Accepted::default();
        if let Some((done, open)) = self.done.get_mut(&job)
            && !done[task as usize]
        {
            done[task as usize] = true;
            *open -= 1;
            accepted.accepted = true;
            if *open == 0 {
                self.done.remove(&job);
            }
        }
        accepted
    }

    fn on_lost(&mut self, job: u32, task: u32, _device: u32, _why: Why) -> Vec<(u32, u32)> {
        if self.done.get(&job).is_some_and(|(d, _)| !d[task as usize]) {
            self.pending.push_back((job, task));
        }
        Vec::new()
    }

    fn on_advert(&mut self, device: u32, _join: bool) {
        self.placed_since[device as usize] = 0;
    }

    fn worker_holds(&self, _slots: u16) -> usize {
        usize::MAX
    }
}
