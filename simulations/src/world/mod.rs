//! The discrete-event world: devices with owners, churn and local queues,
//! a coordinator with a gossiped (stale, lossy) view of them, messages with
//! latency, and jobs arriving over time. A [`Policy`] decides placements;
//! everything else is the same for every policy on the same seed (each
//! device and each job draws from its own random stream, and gossip loss is
//! a hash of the advert), so policies are compared on identical worlds.
//!
//! This file holds the clock, the event queue and the loop that routes each
//! event to its room: [`view`] (what a policy sees and answers), `state`
//! (the ground truth), [`clock`] (simulated time), [`workload`] (fleet and jobs), `gossip` (adverts and
//! the view), `churn` (owners, departures, returns), `runs` (offers,
//! queues, results, cancels) and [`outcome`] (the figures).

mod churn;
pub mod clock;
mod gossip;
pub mod outcome;
mod runs;
mod state;
pub mod view;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::policy::Policy;
use crate::scenario::Scenario;

pub use clock::Micros;
pub use gossip::advert_wire_bytes;
pub use outcome::Outcome;
pub use view::{Accepted, Place, Placed, Seen, View, Why};
pub use workload::{Fleet, Workload};

use clock::micros;
use gossip::GOSSIP_SLOTS;
use state::{Device, Event, Job, Run};

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

    fn latency(&self) -> Micros {
        micros(self.scenario.network.latency_ms / 1000.0)
    }

    fn duration_of(&self, run: &Run) -> Micros {
        let size = self.workload.sizes[run.job as usize][run.task as usize];
        let speed = self.fleet.speed[run.device as usize] as f64;
        micros(size * 100.0 / speed).max(1)
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
            Event::JobArrives(j) => self.on_job_arrives(j, policy),
            Event::Tick => self.on_tick(policy),
            Event::OfferArrives(r) => self.offer_arrives(r, policy),
            Event::RunEnds(r) => self.on_run_ends(r),
            Event::ResultArrives(r) => self.on_result_arrives(r, policy),
            Event::RefusalArrives(r) | Event::LossArrives(r) => self.on_refusal_or_loss(r, policy),
            Event::Gossip(slot) => self.on_gossip(slot),
            Event::GossipArrives(id) => self.on_gossip_arrives(id, policy),
            Event::Rejoin(d, epoch) => self.on_rejoin(d, epoch, policy),
            Event::OwnerToggles(d) => self.on_owner_toggles(d),
            Event::HandBack(d, spell) => self.on_hand_back(d, spell),
            Event::Departs(d) => self.on_departs(d),
            Event::DepartureNoticed(d, epoch) => self.on_departure_noticed(d, epoch, policy),
            Event::Returns(d) => self.on_returns(d),
        }
    }
}
