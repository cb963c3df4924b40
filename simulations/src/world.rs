//! The discrete-event world: devices with owners, churn and local queues,
//! a coordinator with a gossiped (stale, lossy) view of them, messages with
//! latency, and jobs arriving over time. A [`Policy`] decides placements;
//! everything else is the same for every policy on the same seed (each
//! device and each job draws from its own random stream, and gossip loss is
//! a hash of the advert), so policies are compared on identical worlds.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::policy::Policy;
use crate::scenario::{Scenario, Size};

/// Simulated time, microseconds.
pub type Micros = u64;

const SECOND: f64 = 1_000_000.0;

fn micros(seconds: f64) -> Micros {
    (seconds * SECOND).round().max(0.0) as Micros
}

/// A device as the coordinator last heard of it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// In the view (an advert arrived and no departure was noticed since).
    pub known: bool,
    /// Its owner was away at the last advert (it shares).
    pub idle: bool,
    /// Tasks running or queued there at the last advert.
    pub load: u32,
}

/// What a policy may look at: static device facts and the coordinator's
/// view. Never the ground truth (except through `probe`, which costs bytes).
pub struct View<'a> {
    /// Per device: speed of one slot.
    pub speed: &'a [u64],
    /// Per device: slots.
    pub slots: &'a [u16],
    /// Per device: what the coordinator heard last.
    pub seen: &'a [Seen],
    /// Devices known and idle per the view, in index order.
    pub eligible: &'a BTreeSet<u32>,
    /// Devices that joined or left `eligible` since the last round (in
    /// the order it happened; a device may appear more than once).
    pub changed: &'a [u32],
    truth_load: &'a [u32],
    probes: &'a mut u64,
}

impl View<'_> {
    /// Asks a device for its current load (a real round trip in a real
    /// system: counted as probe bytes).
    pub fn probe(&mut self, device: u32) -> u32 {
        *self.probes += 1;
        self.truth_load[device as usize]
    }
}

/// A placement: run task `task` of job `job` on `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The job.
    pub job: u32,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    JobArrives(u32),
    OfferArrives(u32),
    RunEnds(u32),
    ResultArrives(u32),
    RefusalArrives(u32),
    LossArrives(u32),
    /// Every device of one gossip slot sends its advert.
    Gossip(u32),
    /// The adverts of one round of a slot arrive (batch id).
    GossipArrives(u64),
    /// A returning device's first advert.
    Rejoin(u32, u32),
    OwnerToggles(u32),
    HandBack(u32, u64),
    Departs(u32),
    DepartureNoticed(u32, u32),
    Returns(u32),
    Tick,
}

/// Why a run came to nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The device was busy (its owner is back, or no slot): it refused or
    /// handed the task back.
    Busy,
    /// The device left, crashed or could not be reached.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Travelling,
    Queued,
    Running,
    Finished,
    Dropped,
}

#[derive(Clone, Debug)]
struct Run {
    job: u32,
    task: u32,
    device: u32,
    epoch: u32,
    state: RunState,
    /// Why it came to nothing, once it did.
    why: Why,
    /// The coordinator still waits to hear about it.
    open: bool,
}

struct Device {
    present: bool,
    owner_busy: bool,
    /// Bumps on every departure: events of an earlier life are ignored.
    epoch: u32,
    running: BTreeSet<u32>,
    queue: VecDeque<u32>,
    owner_spell: u64,
    rng: ChaCha8Rng,
    adverts: u64,
}

impl Device {
    /// Every run on the device, running or waiting.
    fn held(&self) -> Vec<u32> {
        self.running.iter().chain(&self.queue).copied().collect()
    }
}

struct Job {
    arrival: Micros,
    done: Vec<bool>,
    remaining: u32,
    finished: Option<Micros>,
    given_up: u32,
}

/// What one policy did on one scenario.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Policy name.
    pub policy: String,
    /// First arrival to last completion, seconds.
    pub makespan_s: f64,
    /// Per job: completion minus arrival, seconds (arrival order).
    pub jct_s: Vec<f64>,
    /// Runs started beyond one per task (lost, handed back, duplicated).
    pub tasks_rerun: u64,
    /// Tasks without a result at the end.
    pub tasks_lost: u64,
    /// Capacity gossip and probes sent, bytes per device per second.
    pub gossip_bytes_per_device_s: f64,
    /// Placements the policy made.
    pub decisions: u64,
    /// Wall time spent deciding (not deterministic: not in the CSV).
    pub decide_wall_s: f64,
}

/// Static facts about the devices, shared by every policy's run.
pub struct Fleet {
    /// Slot speed per device.
    pub speed: Vec<u64>,
    /// Slots per device.
    pub slots: Vec<u16>,
}

impl Fleet {
    /// The devices of a scenario, class by class.
    pub fn of(scenario: &Scenario) -> Self {
        let mut fleet = Self {
            speed: Vec::new(),
            slots: Vec::new(),
        };
        for c in &scenario.classes {
            for _ in 0..c.count {
                fleet.speed.push(u64::from(c.speed));
                fleet.slots.push(c.slots);
            }
        }
        fleet
    }
}

/// Job arrivals and task sizes, the same for every policy.
pub struct Workload {
    /// Per job: arrival time.
    pub arrivals: Vec<Micros>,
    /// Per job: task sizes in seconds on a speed-100 slot.
    pub sizes: Vec<Vec<f64>>,
}

impl Workload {
    /// Draws the jobs of a scenario.
    pub fn of(scenario: &Scenario, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x6a6f_6273);
        let mut jobs: Vec<(Micros, Vec<f64>)> = Vec::new();
        for spec in &scenario.jobs {
            let mut t = spec.start_s;
            for _ in 0..spec.count {
                let sizes = (0..spec.tasks)
                    .map(|_| sample_size(&spec.size, &mut rng))
                    .collect();
                jobs.push((micros(t), sizes));
                t += exponential(&mut rng, spec.interarrival_s);
            }
        }
        jobs.sort_by_key(|(t, _)| *t);
        Self {
            arrivals: jobs.iter().map(|(t, _)| *t).collect(),
            sizes: jobs.into_iter().map(|(_, s)| s).collect(),
        }
    }
}

fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    if mean <= 0.0 {
        return 0.0;
    }
    let u: f64 = rng.r#gen::<f64>();
    -mean * (1.0 - u).ln()
}

fn sample_size(size: &Size, rng: &mut ChaCha8Rng) -> f64 {
    match *size {
        Size::Uniform { min, max } => min + (max - min) * rng.r#gen::<f64>(),
        Size::Bimodal {
            small,
            large,
            p_large,
        } => {
            if rng.r#gen::<f64>() < p_large {
                large
            } else {
                small
            }
        }
        Size::Pareto { min, alpha, max } => {
            let u: f64 = rng.r#gen::<f64>();
            (min / (1.0 - u).powf(1.0 / alpha)).min(max)
        }
    }
}

/// A uniform number in [0, 1) from a hash of its inputs (splitmix64): the
/// same advert is lost on every policy's run.
fn hashed_unit(seed: u64, a: u64, b: u64) -> f64 {
    let mut z =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The bytes of one capacity advert on the wire: the real encoded advert
/// plus gossipsub's framing (signature, source, sequence number, topic) and
/// the stream's Noise and yamux headers, estimated at 150 bytes.
pub fn advert_wire_bytes() -> u64 {
    use corral_protocol::capacity::{CapacityAdvert, EngineSpeed, OwnerState};
    use corral_protocol::receipt::EngineKind;
    let advert = CapacityAdvert {
        peer: corral_protocol::ids::PeerKey::from_bytes([7; 32]),
        name: "pi-4-0042".into(),
        seq: 123_456,
        arch: "aarch64".into(),
        os: "linux".into(),
        engines: vec![
            EngineSpeed {
                engine: EngineKind::Jit,
                ops_per_s: 25_000_000,
            },
            EngineSpeed {
                engine: EngineKind::Interp,
                ops_per_s: 5_000_000,
            },
        ],
        slots_total: 4,
        slots_free: 2,
        cores: 4,
        host_load_pct: 12,
        free_memory_mib: 2900,
        on_battery: false,
        state: OwnerState::Idle,
        running: 2,
        queued: 0,
        version: "0.1.0".into(),
    };
    corral_protocol::codec::encode(&advert).len() as u64 + 150
}

/// Adverts go out in this many slots per gossip interval (devices spread
/// over them by index), so views go stale by up to one interval, unevenly.
const GOSSIP_SLOTS: u32 = 10;

/// Bytes of a load probe and its answer (power-of-two choices).
const PROBE_BYTES: u64 = 2 * 96;

/// One policy's run over one scenario.
pub struct World<'a> {
    scenario: &'a Scenario,
    seed: u64,
    fleet: &'a Fleet,
    workload: &'a Workload,
    now: Micros,
    seq: u64,
    events: BinaryHeap<std::cmp::Reverse<(Micros, u64, Event)>>,
    devices: Vec<Device>,
    seen: Vec<Seen>,
    eligible: BTreeSet<u32>,
    truth_load: Vec<u32>,
    jobs: Vec<Job>,
    runs: Vec<Run>,
    /// Runs by (job, task) still open, for cancels.
    open_runs: BTreeMap<(u32, u32), Vec<u32>>,
    /// Open runs per device, for departures.
    device_runs: Vec<BTreeSet<u32>>,
    /// Eligibility changes not yet shown to the policy.
    changed: Vec<u32>,
    /// Adverts in flight: (device, epoch, idle, load) per gossip batch.
    in_flight: BTreeMap<u64, Vec<(u32, u32, bool, u32)>>,
    next_batch: u64,
    /// Devices of each gossip slot.
    slots_of: Vec<Vec<u32>>,
    tick_pending: bool,
    starts: u64,
    adverts_sent: u64,
    probes: u64,
    decisions: u64,
    decide_wall: std::time::Duration,
    jobs_left: usize,
}

impl<'a> World<'a> {
    /// A fresh world for one policy.
    pub fn new(
        scenario: &'a Scenario,
        seed: u64,
        fleet: &'a Fleet,
        workload: &'a Workload,
    ) -> Self {
        let n = fleet.speed.len();
        let mut world = Self {
            scenario,
            seed,
            fleet,
            workload,
            now: 0,
            seq: 0,
            events: BinaryHeap::new(),
            devices: Vec::with_capacity(n),
            seen: vec![Seen::default(); n],
            eligible: BTreeSet::new(),
            truth_load: vec![0; n],
            jobs: Vec::new(),
            runs: Vec::new(),
            open_runs: BTreeMap::new(),
            device_runs: vec![BTreeSet::new(); n],
            changed: Vec::new(),
            in_flight: BTreeMap::new(),
            next_batch: 0,
            slots_of: vec![Vec::new(); GOSSIP_SLOTS as usize],
            tick_pending: false,
            starts: 0,
            adverts_sent: 0,
            probes: 0,
            decisions: 0,
            decide_wall: std::time::Duration::ZERO,
            jobs_left: workload.arrivals.len(),
        };
        let interval = scenario.gossip.interval_s;
        for slot in 0..GOSSIP_SLOTS {
            // Slots spread the adverts over the interval; the first round is
            // every device's join.
            let at = micros(interval * f64::from(slot) / f64::from(GOSSIP_SLOTS));
            world.push(at, Event::Gossip(slot));
        }
        for d in 0..n as u32 {
            let rng = ChaCha8Rng::seed_from_u64(seed ^ (u64::from(d) << 20) ^ 0x6465_7669);
            world.slots_of[(d % GOSSIP_SLOTS) as usize].push(d);
            world.devices.push(Device {
                present: true,
                owner_busy: false,
                epoch: 0,
                running: BTreeSet::new(),
                queue: VecDeque::new(),
                owner_spell: 0,
                rng,
                adverts: 0,
            });
            world.schedule_owner(d);
            world.schedule_departure(d);
        }
        for (j, &t) in workload.arrivals.iter().enumerate() {
            world.push(t, Event::JobArrives(j as u32));
        }
        world
    }

    fn push(&mut self, at: Micros, event: Event) {
        self.seq += 1;
        self.events.push(std::cmp::Reverse((at, self.seq, event)));
    }

    fn schedule_owner(&mut self, d: u32) {
        let owners = &self.scenario.owners;
        if owners.mean_busy_s <= 0.0 {
            return;
        }
        let dev = &mut self.devices[d as usize];
        let mean = if dev.owner_busy {
            owners.mean_busy_s
        } else {
            owners.mean_idle_s
        };
        let after = exponential(&mut dev.rng, mean);
        let at = self.now + micros(after);
        self.push(at, Event::OwnerToggles(d));
    }

    fn schedule_departure(&mut self, d: u32) {
        let rate = self.scenario.churn.leaves_per_device_hour;
        if rate <= 0.0 {
            return;
        }
        let after = exponential(&mut self.devices[d as usize].rng, 3600.0 / rate);
        let at = self.now + micros(after);
        self.push(at, Event::Departs(d));
    }

    fn latency(&self) -> Micros {
        micros(self.scenario.network.latency_ms / 1000.0)
    }

    fn duration_of(&self, run: &Run) -> Micros {
        let size = self.workload.sizes[run.job as usize][run.task as usize];
        let speed = self.fleet.speed[run.device as usize] as f64;
        micros(size * 100.0 / speed).max(1)
    }

    fn set_eligible(&mut self, d: u32) {
        let s = &self.seen[d as usize];
        let changed = if s.known && s.idle {
            self.eligible.insert(d)
        } else {
            self.eligible.remove(&d)
        };
        if changed {
            self.changed.push(d);
            self.request_tick();
        }
    }

    /// An advert of `device` (sent with `idle` and `load`) reaches the view.
    fn deliver(&mut self, device: u32, epoch: u32, idle: bool, load: u32, policy: &mut dyn Policy) {
        if self.devices[device as usize].epoch != epoch {
            return;
        }
        let join = !self.seen[device as usize].known;
        let seen = &mut self.seen[device as usize];
        seen.known = true;
        seen.idle = idle;
        seen.load = load;
        self.set_eligible(device);
        policy.on_advert(device, join);
    }

    fn request_tick(&mut self) {
        if !self.tick_pending {
            self.tick_pending = true;
            let every = micros(self.scenario.network.schedule_every_ms / 1000.0).max(1);
            // Ticks fall on a fixed grid, so batching is the same for all.
            let at = (self.now / every + 1) * every;
            self.push(at, Event::Tick);
        }
    }

    /// Runs the world to the end (every job finished, or nothing left that
    /// could finish them).
    pub fn run(mut self, policy: &mut dyn Policy) -> Outcome {
        let limit = self
            .workload
            .arrivals
            .last()
            .copied()
            .unwrap_or(0)
            .saturating_add(micros(30.0 * 24.0 * 3600.0));
        while let Some(std::cmp::Reverse((at, _, event))) = self.events.pop() {
            if self.jobs_left == 0 || at > limit {
                break;
            }
            self.now = at;
            self.handle(event, policy);
        }
        self.outcome(policy.name())
    }

    fn handle(&mut self, event: Event, policy: &mut dyn Policy) {
        match event {
            Event::JobArrives(j) => {
                let n = self.workload.sizes[j as usize].len() as u32;
                self.jobs.push(Job {
                    arrival: self.now,
                    done: vec![false; n as usize],
                    remaining: n,
                    finished: None,
                    given_up: 0,
                });
                policy.job_arrived(j, n);
                self.request_tick();
            }
            Event::Tick => {
                self.tick_pending = false;
                let started = std::time::Instant::now();
                let changed = std::mem::take(&mut self.changed);
                let mut view = View {
                    speed: &self.fleet.speed,
                    slots: &self.fleet.slots,
                    seen: &self.seen,
                    eligible: &self.eligible,
                    changed: &changed,
                    truth_load: &self.truth_load,
                    probes: &mut self.probes,
                };
                let out = policy.place(&mut view, self.now);
                self.decide_wall += started.elapsed();
                self.decisions += out.places.len() as u64;
                for p in out.places {
                    self.offer(p);
                }
                for c in out.cancels {
                    self.cancel(c);
                }
                for (job, task) in out.given_up {
                    self.give_up(job, task);
                }
            }
            Event::OfferArrives(r) => self.offer_arrives(r, policy),
            Event::RunEnds(r) => {
                let run = &self.runs[r as usize];
                let d = run.device;
                if run.state != RunState::Running || run.epoch != self.devices[d as usize].epoch {
                    return;
                }
                self.runs[r as usize].state = RunState::Finished;
                self.devices[d as usize].running.remove(&r);
                self.truth_load[d as usize] -= 1;
                self.start_next(d);
                let at = self.now + self.latency();
                self.push(at, Event::ResultArrives(r));
            }
            Event::ResultArrives(r) => {
                let (job, task, device) = {
                    let run = &self.runs[r as usize];
                    (run.job, run.task, run.device)
                };
                self.close_run(r);
                let out = policy.on_result(job, task, device);
                let j = &mut self.jobs[job as usize];
                if out.accepted {
                    assert!(
                        !j.done[task as usize],
                        "task {task} of job {job} counted twice by {}",
                        policy.name()
                    );
                    j.done[task as usize] = true;
                    j.remaining -= 1;
                    self.finish_if_done(job);
                }
                for c in out.cancels {
                    self.cancel(c);
                }
                self.request_tick();
            }
            Event::RefusalArrives(r) | Event::LossArrives(r) => {
                let (job, task, device, why) = {
                    let run = &self.runs[r as usize];
                    if !run.open {
                        return;
                    }
                    (run.job, run.task, run.device, run.why)
                };
                self.close_run(r);
                let given_up = policy.on_lost(job, task, device, why);
                for (job, task) in given_up {
                    self.give_up(job, task);
                }
                self.request_tick();
            }
            Event::Gossip(slot) => {
                let next = self.now + micros(self.scenario.gossip.interval_s);
                self.push(next, Event::Gossip(slot));
                let mut sent = Vec::new();
                for i in 0..self.slots_of[slot as usize].len() {
                    let d = self.slots_of[slot as usize][i];
                    let dev = &mut self.devices[d as usize];
                    if !dev.present {
                        continue;
                    }
                    dev.adverts += 1;
                    self.adverts_sent += 1;
                    if hashed_unit(self.seed, u64::from(d), dev.adverts)
                        >= self.scenario.gossip.loss
                    {
                        sent.push((d, dev.epoch, !dev.owner_busy, self.truth_load[d as usize]));
                    }
                }
                let id = self.next_batch;
                self.next_batch += 1;
                self.in_flight.insert(id, sent);
                let at = self.now + micros(self.scenario.gossip.delay_ms / 1000.0);
                self.push(at, Event::GossipArrives(id));
            }
            Event::GossipArrives(id) => {
                for (d, epoch, idle, load) in self.in_flight.remove(&id).unwrap_or_default() {
                    self.deliver(d, epoch, idle, load, policy);
                }
            }
            Event::Rejoin(d, epoch) => {
                let dev = &self.devices[d as usize];
                if dev.present && dev.epoch == epoch {
                    let (idle, load) = (!dev.owner_busy, self.truth_load[d as usize]);
                    self.deliver(d, epoch, idle, load, policy);
                }
            }
            Event::OwnerToggles(d) => {
                let dev = &mut self.devices[d as usize];
                dev.owner_busy = !dev.owner_busy;
                dev.owner_spell += 1;
                let busy = dev.owner_busy;
                let spell = dev.owner_spell;
                if dev.present && busy {
                    let at = self.now + micros(self.scenario.owners.grace_s);
                    self.push(at, Event::HandBack(d, spell));
                }
                if !busy {
                    // Back to sharing: start what waited.
                    self.start_next(d);
                }
                self.schedule_owner(d);
            }
            Event::HandBack(d, spell) => {
                let dev = &self.devices[d as usize];
                if !dev.present || !dev.owner_busy || dev.owner_spell != spell {
                    return;
                }
                // The owner is still there after the grace period: every
                // task on the device goes back to its coordinator.
                for r in dev.held() {
                    self.drop_run(r, true);
                }
            }
            Event::Departs(d) => {
                let crash = self.devices[d as usize].rng.r#gen::<f64>()
                    < self.scenario.churn.crash_fraction;
                let dev = &mut self.devices[d as usize];
                if !dev.present {
                    return;
                }
                dev.present = false;
                let epoch = dev.epoch;
                dev.epoch += 1;
                let held = dev.held();
                dev.running.clear();
                dev.queue.clear();
                self.truth_load[d as usize] = 0;
                for r in &held {
                    self.runs[*r as usize].state = RunState::Dropped;
                }
                // A goodbye travels one latency; a crash is noticed after
                // the missed adverts.
                let notice = if crash {
                    micros(self.scenario.gossip.detect_s)
                } else {
                    self.latency()
                };
                let at = self.now + notice;
                self.push(at, Event::DepartureNoticed(d, epoch));
                let away = exponential(
                    &mut self.devices[d as usize].rng,
                    self.scenario.churn.mean_away_s,
                );
                let back = self.now + micros(away);
                self.push(back, Event::Returns(d));
            }
            Event::DepartureNoticed(d, epoch) => {
                if self.seen[d as usize].known && !self.devices[d as usize].present {
                    self.seen[d as usize] = Seen::default();
                    self.set_eligible(d);
                }
                // Every run the coordinator still waits for on that life of
                // the device is lost (`device_runs` holds only open runs).
                let lost: Vec<u32> = self.device_runs[d as usize]
                    .iter()
                    .copied()
                    .filter(|&r| self.runs[r as usize].epoch == epoch)
                    .collect();
                for r in lost {
                    let (job, task) = (self.runs[r as usize].job, self.runs[r as usize].task);
                    self.close_run(r);
                    for (job, task) in policy.on_lost(job, task, d, Why::Lost) {
                        self.give_up(job, task);
                    }
                }
                self.request_tick();
            }
            Event::Returns(d) => {
                let dev = &mut self.devices[d as usize];
                dev.present = true;
                let epoch = dev.epoch;
                // It connects and gossips at once; then in its slot's rounds.
                let at = self.now + micros(self.scenario.gossip.delay_ms / 1000.0);
                self.push(at, Event::Rejoin(d, epoch));
                self.schedule_departure(d);
            }
        }
    }

    fn offer(&mut self, p: Place) {
        let r = self.runs.len() as u32;
        self.runs.push(Run {
            job: p.job,
            task: p.task,
            device: p.device,
            epoch: self.devices[p.device as usize].epoch,
            state: RunState::Travelling,
            why: Why::Lost,
            open: true,
        });
        self.open_runs.entry((p.job, p.task)).or_default().push(r);
        self.device_runs[p.device as usize].insert(r);
        let at = self.now + self.latency();
        self.push(at, Event::OfferArrives(r));
    }

    fn offer_arrives(&mut self, r: u32, policy: &mut dyn Policy) {
        let run = &self.runs[r as usize];
        if run.state != RunState::Travelling {
            return;
        }
        let d = run.device as usize;
        let dev = &self.devices[d];
        if !dev.present || dev.epoch != run.epoch {
            // Sent to a device that is gone: the stream fails.
            self.runs[r as usize].state = RunState::Dropped;
            let at = self.now + self.latency();
            self.push(at, Event::LossArrives(r));
            return;
        }
        let held = dev.running.len() + dev.queue.len();
        if dev.owner_busy || held >= policy.worker_holds(self.fleet.slots[d]) {
            self.runs[r as usize].state = RunState::Dropped;
            self.runs[r as usize].why = Why::Busy;
            let at = self.now + self.latency();
            self.push(at, Event::RefusalArrives(r));
            return;
        }
        self.runs[r as usize].state = RunState::Queued;
        self.devices[d].queue.push_back(r);
        self.truth_load[d] += 1;
        self.start_next(d as u32);
    }

    fn start_next(&mut self, d: u32) {
        loop {
            let dev = &self.devices[d as usize];
            if !dev.present
                || dev.owner_busy
                || dev.running.len() >= usize::from(self.fleet.slots[d as usize])
            {
                return;
            }
            let Some(r) = self.devices[d as usize].queue.pop_front() else {
                return;
            };
            self.devices[d as usize].running.insert(r);
            self.runs[r as usize].state = RunState::Running;
            self.starts += 1;
            let at = self.now + self.duration_of(&self.runs[r as usize]);
            self.push(at, Event::RunEnds(r));
        }
    }

    /// Takes a run off its device; `hand_back` tells the coordinator.
    fn drop_run(&mut self, r: u32, hand_back: bool) {
        let d = self.runs[r as usize].device as usize;
        let state = self.runs[r as usize].state;
        if !matches!(state, RunState::Queued | RunState::Running) {
            return;
        }
        if state == RunState::Running {
            self.devices[d].running.remove(&r);
        } else if let Some(at) = self.devices[d].queue.iter().position(|&q| q == r) {
            self.devices[d].queue.remove(at);
        }
        self.truth_load[d] -= 1;
        self.runs[r as usize].state = RunState::Dropped;
        if hand_back {
            self.runs[r as usize].why = Why::Busy;
            let at = self.now + self.latency();
            self.push(at, Event::LossArrives(r));
        }
        self.start_next(d as u32);
    }

    fn cancel(&mut self, p: Place) {
        let Some(runs) = self.open_runs.get(&(p.job, p.task)) else {
            return;
        };
        let found: Vec<u32> = runs
            .iter()
            .copied()
            .filter(|&r| self.runs[r as usize].device == p.device)
            .collect();
        for r in found {
            if self.runs[r as usize].state == RunState::Travelling {
                // The cancel follows the offer on the same link: the device
                // drops the task when both arrive.
                self.runs[r as usize].state = RunState::Dropped;
            }
            self.drop_run(r, false);
            self.close_run(r);
        }
    }

    fn close_run(&mut self, r: u32) {
        self.runs[r as usize].open = false;
        self.device_runs[self.runs[r as usize].device as usize].remove(&r);
        let key = (self.runs[r as usize].job, self.runs[r as usize].task);
        if let Some(v) = self.open_runs.get_mut(&key) {
            v.retain(|&x| x != r);
            if v.is_empty() {
                self.open_runs.remove(&key);
            }
        }
    }

    fn give_up(&mut self, job: u32, task: u32) {
        let j = &mut self.jobs[job as usize];
        if !j.done[task as usize] {
            j.done[task as usize] = true;
            j.given_up += 1;
            j.remaining -= 1;
            self.finish_if_done(job);
        }
    }

    fn finish_if_done(&mut self, job: u32) {
        let j = &mut self.jobs[job as usize];
        if j.remaining == 0 && j.finished.is_none() {
            j.finished = Some(self.now);
            self.jobs_left -= 1;
        }
    }

    fn outcome(&self, name: &str) -> Outcome {
        let first = self.workload.arrivals.first().copied().unwrap_or(0);
        let last = self
            .jobs
            .iter()
            .filter_map(|j| j.finished)
            .max()
            .unwrap_or(self.now);
        let tasks: u64 = self.workload.sizes.iter().map(|s| s.len() as u64).sum();
        let lost: u64 = self
            .jobs
            .iter()
            .map(|j| {
                u64::from(j.given_up)
                    + if j.finished.is_none() {
                        u64::from(j.remaining)
                    } else {
                        0
                    }
            })
            .sum::<u64>()
            + self.workload.sizes[self.jobs.len()..]
                .iter()
                .map(|s| s.len() as u64)
                .sum::<u64>();
        let simulated = (last.max(first) - first) as f64 / SECOND;
        let n = self.fleet.speed.len() as f64;
        let span = (self.now.max(1)) as f64 / SECOND;
        // Gossipsub floods: every device sends every advert on to
        // `mesh_degree` others (fewer in a smaller mesh), so each device sends
        // all adverts D times.
        let degree = f64::from(self.scenario.gossip.mesh_degree).min((n - 1.0).max(0.0));
        let gossip = self.adverts_sent as f64 * degree * advert_wire_bytes() as f64;
        let probes = self.probes as f64 * PROBE_BYTES as f64 / n;
        let done_tasks = tasks - lost;
        Outcome {
            policy: name.to_string(),
            makespan_s: simulated,
            jct_s: self
                .jobs
                .iter()
                .map(|j| {
                    j.finished
                        .map_or(f64::INFINITY, |f| (f - j.arrival) as f64 / SECOND)
                })
                .collect(),
            tasks_rerun: self.starts.saturating_sub(done_tasks),
            tasks_lost: lost,
            gossip_bytes_per_device_s: (gossip + probes) / span,
            decisions: self.decisions,
            decide_wall_s: self.decide_wall.as_secs_f64(),
        }
    }
}

/// What a policy's placement round produced.
#[derive(Default)]
pub struct Placed {
    /// Offers to send.
    pub places: Vec<Place>,
    /// Runs to cancel.
    pub cancels: Vec<Place>,
    /// Tasks the policy gave up on.
    pub given_up: Vec<(u32, u32)>,
}

/// What a result led to.
#[derive(Default)]
pub struct Accepted {
    /// The result is the task's (first) result.
    pub accepted: bool,
    /// Other copies to cancel.
    pub cancels: Vec<Place>,
}
