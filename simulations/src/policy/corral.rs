//! corral's policy: the real `corral-scheduler` batch state machine, one
//! batch per job, driven exactly as the daemon's coordinator drives it.

use std::collections::{BTreeMap, BTreeSet};

use corral_protocol::ids::PeerKey;
use corral_scheduler::batch::{Batch, BatchConfig, Decision, Pool, TaskState, Worker};

use super::Policy;
use crate::world::{Accepted, Micros, Place, Placed, View, Why};

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
    /// Tasks of this job each device holds: the batch's own `load_of`,
    /// kept here from its decisions (an offer adds one, a cancel takes one
    /// off, a result or a loss reads the batch's count) so that a round
    /// does not look every candidate up in the batch (checked against it
    /// in debug builds).
    held: Vec<u32>,
}

impl CorralJob {
    /// Sets device `d`'s count of this job's tasks to what the batch says.
    fn sync_held(&mut self, d: u32, peer: &PeerKey) {
        if let Some(h) = self.held.get_mut(d as usize) {
            *h = u32::try_from(self.batch.load_of(peer)).unwrap_or(u32::MAX);
        }
    }

    /// Device `d` holds `delta` more (or fewer) of this job's tasks.
    fn add_held(&mut self, d: u32, delta: i64) {
        if let Some(h) = self.held.get_mut(d as usize) {
            *h = (i64::from(*h) + delta).max(0) as u32;
        }
    }
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
    pub(super) fn new(devices: usize) -> Self {
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
                    if let Some(j) = self.jobs.get_mut(&job) {
                        j.add_held(device, 1);
                    }
                    out.places.push(Place {
                        job,
                        task: index,
                        device,
                    });
                }
                Decision::Cancel { index, peer } => {
                    let device = device_of(&peer);
                    self.add_load(device, -1);
                    if let Some(j) = self.jobs.get_mut(&job) {
                        j.add_held(device, -1);
                    }
                    out.cancels.push(Place {
                        job,
                        task: index,
                        device,
                    });
                }
                // Leases are not set in the simulator (its devices are honest).
                Decision::Cooldown { .. } => {}
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
                held: vec![0; self.load.len()],
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
                        let mine = j.held[d as usize];
                        debug_assert_eq!(mine as usize, j.batch.load_of(&key(d)));
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
                            // Every simulated device is on one network.
                            transfer_ms: 0,
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
        let decisions = j.batch.on_done(task, &peer);
        let after = j.batch.load_of(&peer);
        j.sync_held(device, &peer);
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
        j.sync_held(device, &peer);
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
