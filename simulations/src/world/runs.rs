//! Jobs and runs: job arrivals, placement rounds, offers travelling to
//! devices, local queues and slots, results, refusals, losses, cancels and
//! giving up.

use super::World;
use super::state::{Event, Job, Run, RunState};
use super::view::{Place, View, Why};
use crate::policy::Policy;

impl World<'_> {
    /// Job `j` arrives.
    pub(super) fn on_job_arrives(&mut self, j: u32, policy: &mut dyn Policy) {
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

    /// A placement round: the policy sees the view and decides.
    pub(super) fn on_tick(&mut self, policy: &mut dyn Policy) {
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

    /// Run `r` finishes on its device; the result travels back.
    pub(super) fn on_run_ends(&mut self, r: u32) {
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

    /// The result of run `r` reaches the coordinator.
    pub(super) fn on_result_arrives(&mut self, r: u32, policy: &mut dyn Policy) {
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

    /// A refusal or a loss of run `r` reaches the coordinator.
    pub(super) fn on_refusal_or_loss(&mut self, r: u32, policy: &mut dyn Policy) {
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

    /// Sends an offer of `p` to its device.
    pub(super) fn offer(&mut self, p: Place) {
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

    /// The offer of run `r` reaches its device: queued, refused or lost.
    pub(super) fn offer_arrives(&mut self, r: u32, policy: &mut dyn Policy) {
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

    /// Starts queued runs on `d` while it shares and has a free slot.
    pub(super) fn start_next(&mut self, d: u32) {
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
    pub(super) fn drop_run(&mut self, r: u32, hand_back: bool) {
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

    pub(super) fn cancel(&mut self, p: Place) {
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

    pub(super) fn close_run(&mut self, r: u32) {
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

    pub(super) fn give_up(&mut self, job: u32, task: u32) {
        let j = &mut self.jobs[job as usize];
        if !j.done[task as usize] {
            j.done[task as usize] = true;
            j.given_up += 1;
            j.remaining -= 1;
            self.finish_if_done(job);
        }
    }

    pub(super) fn finish_if_done(&mut self, job: u32) {
        let j = &mut self.jobs[job as usize];
        if j.remaining == 0 && j.finished.is_none() {
            j.finished = Some(self.now);
            self.jobs_left -= 1;
        }
    }
}
