//! Placement policies: corral's (the real `corral-scheduler` batch state
//! machine, driven exactly as the daemon's coordinator drives it) and the
//! baselines it is compared with. The baselines push every task to a device
//! as soon as it arrives (the device queues it), as schedulers without late
//! binding do; corral keeps a device at most one task beyond its slots.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_scheduler::batch::{Batch, BatchConfig, Decision, Pool, TaskState, Worker};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::world::{Accepted, Micros, Place, Placed, View, Why};

/// Every policy's name, in table order.
pub const NAMES: [&str; 5] = [
    "corral",
    "random",
    "round_robin",
    "least_loaded",
    "power_of_two",
];

/// What the world asks of a placement policy.
pub trait Policy {
    /// Its name in tables.
    fn name(&self) -> &'static str;
    /// A job of `tasks` tasks arrived.
    fn job_arrived(&mut self, job: u32, tasks: u32);
    /// A placement round.
    fn place(&mut self, view: &mut View<'_>, now: Micros) -> Placed;
    /// A result of `task` came back from `device`.
    fn on_result(&mut self, job: u32, task: u32, device: u32) -> Accepted;
    /// A run of `task` on `device` came to nothing, for the reason `why`.
    /// Returns tasks given up.
    fn on_lost(&mut self, job: u32, task: u32, device: u32, why: Why) -> Vec<(u32, u32)>;
    /// An advert of `device` arrived (`join`: it was not in the view).
    fn on_advert(&mut self, device: u32, join: bool) {
        let _ = (device, join);
    }
    /// Tasks a device of `slots` slots accepts at once (running + queued).
    fn worker_holds(&self, slots: u16) -> usize;
}

/// A policy by name.
pub fn by_name(name: &str, devices: usize, seed: u64) -> Option<Box<dyn Policy>> {
    let kind = match name {
        "corral" => return Some(Box::new(Corral::new(devices))),
        "random" => Kind::Random,
        "round_robin" => Kind::RoundRobin,
        "least_loaded" => Kind::LeastLoaded,
        "power_of_two" => Kind::PowerOfTwo,
        _ => return None,
    };
    Some(Box::new(Push::new(kind, devices, seed)))
}

/// The key the scheduler knows device `d` by (ordered like the index).
fn key(d: u32) -> PeerKey {
    let mut bytes = [0u8; 32];
    bytes[..4].copy_from_slice(&d.to_be_bytes());
    PeerKey::from_bytes(bytes)
}

fn device_of(peer: &PeerKey) -> u32 {
    let b = peer.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A busy device is left alone this long (as the coordinator does).
const COOLDOWN: Micros = 1_000_000;

/// An unreachable device is left alone this long (as the coordinator does).
const LOST_COOLDOWN: Micros = 5_000_000;

struct CorralJob {
    batch: Batch,
    open: u32,
}

/// corral's policy: one real [`Batch`] per job, placed on the view's idle
/// devices with their free slots net of the other jobs' tasks, in job
/// arrival order, like `dispatch::coordinator`. The daemon passes every
/// candidate; with 10,000 devices this passes only those with room (kept
/// as a set as loads change) and the mesh's [`Pool`] alongside, which is
/// the same input to the scheduler.
pub struct Corral {
    jobs: BTreeMap<u32, CorralJob>,
    /// Tasks held per device over all live jobs.
    load: Vec<u32>,
    cooldown: Vec<Micros>,
    /// Devices whose cooldown ends at a time.
    cooling: BTreeMap<Micros, Vec<u32>>,
    /// Devices in the view, idle, with room and not cooling off, by speed.
    room: BTreeSet<(u64, u32)>,
    speed: Vec<u64>,
    /// Per device: in the view's eligible set (as last told).
    eligible: Vec<bool>,
    /// Σ speed × slots over eligible devices, and their speeds.
    rate: u128,
    speeds: BTreeMap<u64, u32>,
    slots: Vec<u16>,
    /// The time of the last placement round.
    now: Micros,
}

impl Corral {
    fn new(devices: usize) -> Self {
        Self {
            jobs: BTreeMap::new(),
            load: vec![0; devices],
            cooldown: vec![0; devices],
            cooling: BTreeMap::new(),
            room: BTreeSet::new(),
            speed: Vec::new(),
            eligible: vec![false; devices],
            rate: 0,
            speeds: BTreeMap::new(),
            slots: Vec::new(),
            now: 0,
        }
    }

    /// Puts device `d` in or out of the room set.
    fn refresh(&mut self, d: u32) {
        let i = d as usize;
        let has_room = self.eligible[i]
            && self.load[i] <= u32::from(self.slots[i])
            && self.cooldown[i] <= self.now;
        if has_room {
            self.room.insert((self.speed[i], d));
        } else {
            self.room.remove(&(self.speed[i], d));
        }
    }

    fn add_load(&mut self, d: u32, delta: i64) {
        let l = &mut self.load[d as usize];
        *l = (i64::from(*l) + delta).max(0) as u32;
        self.refresh(d);
    }

    /// Applies a batch call's effect on one device's load.
    fn track(&mut self, device: u32, before: usize, after: usize) {
        self.add_load(device, after as i64 - before as i64);
    }

    fn cool(&mut self, d: u32, until: Micros) {
        self.cooldown[d as usize] = until;
        self.cooling.entry(until).or_default().push(d);
        self.refresh(d);
    }

    fn decisions(&mut self, job: u32, decisions: Vec<Decision>, out: &mut Placed) {
        for d in decisions {
            match d {
                Decision::Offer { index, peer, .. } => {
                    let device = device_of(&peer);
                    self.add_load(device, 1);
                    out.places.push(Place {
                        job,
                        task: index,
                        device,
                    });
                }
                Decision::Cancel { index, peer } => {
                    let device = device_of(&peer);
                    self.add_load(device, -1);
                    out.cancels.push(Place {
                        job,
                        task: index,
                        device,
                    });
                }
                Decision::GiveUp { index, .. } => {
                    out.given_up.push((job, index));
                    self.close(job);
                }
            }
        }
    }

    fn close(&mut self, job: u32) {
        if let Some(j) = self.jobs.get_mut(&job) {
            j.open = j.open.saturating_sub(1);
            if j.open == 0 {
                self.jobs.remove(&job);
            }
        }
    }
}

impl Policy for Corral {
    fn name(&self) -> &'static str {
        "corral"
    }

    fn job_arrived(&mut self, job: u32, tasks: u32) {
        self.jobs.insert(
            job,
            CorralJob {
                batch: Batch::new(tasks, BatchConfig::default()),
                open: tasks,
            },
        );
    }

    fn place(&mut self, view: &mut View<'_>, now: Micros) -> Placed {
        let mut out = Placed::default();
        self.now = now;
        if self.slots.is_empty() {
            self.slots = view.slots.to_vec();
            self.speed = view.speed.to_vec();
        }
        for &d in view.changed {
            let i = d as usize;
            let now_eligible = view.eligible.contains(&d);
            if now_eligible != self.eligible[i] {
                self.eligible[i] = now_eligible;
                let (speed, part) = (
                    view.speed[i],
                    u128::from(view.speed[i]) * u128::from(view.slots[i]),
                );
                if now_eligible {
                    self.rate += part;
                    *self.speeds.entry(speed).or_insert(0) += 1;
                } else {
                    self.rate -= part;
                    if let Some(n) = self.speeds.get_mut(&speed) {
                        *n -= 1;
                        if *n == 0 {
                            self.speeds.remove(&speed);
                        }
                    }
                }
            }
            self.refresh(d);
        }
        while let Some(entry) = self.cooling.first_entry() {
            if *entry.key() > now {
                break;
            }
            for d in entry.remove() {
                self.refresh(d);
            }
        }
        let mut backlog = 0u128;
        let ids: Vec<u32> = self.jobs.keys().copied().collect();
        for job in ids {
            if self.room.is_empty() {
                break;
            }
            let pool = Pool {
                rate: self.rate,
                fastest: self.speeds.keys().next_back().copied().unwrap_or(0),
                backlog,
            };
            let workers: Vec<Worker> = {
                let Some(j) = self.jobs.get(&job) else {
                    continue;
                };
                // Only workers the scheduler would use now (its own
                // threshold): the same decisions, without thousands of
                // idle Pi Zeros in every round.
                let slowest = j.batch.slowest_useful(pool);
                self.room
                    .range((slowest, 0)..)
                    .map(|&(_, d)| {
                        let mine = j.batch.load_of(&key(d)) as u32;
                        let others = self.load[d as usize] - mine;
                        Worker {
                            peer: key(d),
                            slots_free: view.slots[d as usize]
                                .saturating_sub(u16::try_from(others).unwrap_or(u16::MAX)),
                            slots_total: view.slots[d as usize],
                            held_elsewhere: u16::try_from(others).unwrap_or(u16::MAX),
                            speed: view.speed[d as usize],
                            // Classes only steer --verify runs (the
                            // simulator runs each task once).
                            class: String::new(),
                            // Transfers are not simulated: no device is
                            // preferred for holding the module.
                            cached: false,
                            // Simulated tasks take seconds: late binding
                            // proper, one queued ahead.
                            ahead: 1,
                        }
                    })
                    .collect()
            };
            let Some(j) = self.jobs.get_mut(&job) else {
                continue;
            };
            let decisions = j.batch.schedule_in(&workers, pool, now / 1000);
            backlog += j.batch.waiting() as u128;
            self.decisions(job, decisions, &mut out);
        }
        out
    }

    fn on_result(&mut self, job: u32, task: u32, device: u32) -> Accepted {
        let mut accepted = Accepted::default();
        let Some(j) = self.jobs.get_mut(&job) else {
            return accepted;
        };
        let peer = key(device);
        let was_open = !matches!(
            j.batch.tasks()[task as usize].state,
            TaskState::Done(_) | TaskState::Failed(_)
        );
        let before = j.batch.load_of(&peer);
        let decisions = j
            .batch
            .on_result(task, &peer, ContentHash::from_bytes([0; 32]));
        let after = j.batch.load_of(&peer);
        let now_done =
            matches!(j.batch.tasks()[task as usize].state, TaskState::Done(p) if p == peer);
        self.track(device, before, after);
        let mut out = Placed::default();
        self.decisions(job, decisions, &mut out);
        accepted.cancels = out.cancels;
        accepted.accepted = was_open && now_done;
        if accepted.accepted {
            self.close(job);
        }
        accepted
    }

    fn on_lost(&mut self, job: u32, task: u32, device: u32, why: Why) -> Vec<(u32, u32)> {
        let Some(j) = self.jobs.get_mut(&job) else {
            return Vec::new();
        };
        let peer = key(device);
        let before = j.batch.load_of(&peer);
        let decisions = match why {
            Why::Busy => j.batch.on_busy(task, &peer, "busy"),
            Why::Lost => j.batch.on_lost(task, &peer, "left the mesh"),
        };
        let after = j.batch.load_of(&peer);
        self.track(device, before, after);
        let until = self.now
            + match why {
                Why::Busy => COOLDOWN,
                Why::Lost => LOST_COOLDOWN,
            };
        self.cool(device, until);
        let mut out = Placed::default();
        self.decisions(job, decisions, &mut out);
        out.given_up
    }

    fn worker_holds(&self, slots: u16) -> usize {
        usize::from(slots) + 1
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
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
    fn new(kind: Kind, devices: usize, seed: u64) -> Self {
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
