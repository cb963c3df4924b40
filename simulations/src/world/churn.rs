//! Devices coming and going: owners who take their device back (and the
//! hand-back after the grace period), departures (goodbyes and crashes),
//! how the coordinator notices them, and returns.

use rand::Rng;

use super::World;
use super::clock::micros;
use super::state::{Event, RunState};
use super::view::{Seen, Why};
use super::workload::exponential;
use crate::policy::Policy;

impl World<'_> {
    /// Schedules the next owner toggle of `d` (if owners come and go).
    pub(super) fn schedule_owner(&mut self, d: u32) {
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

    pub(super) fn schedule_departure(&mut self, d: u32) {
        let rate = self.scenario.churn.leaves_per_device_hour;
        if rate <= 0.0 {
            return;
        }
        let after = exponential(&mut self.devices[d as usize].rng, 3600.0 / rate);
        let at = self.now + micros(after);
        self.push(at, Event::Departs(d));
    }

    /// The owner of `d` takes the device back or leaves it again.
    pub(super) fn on_owner_toggles(&mut self, d: u32) {
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

    /// The grace period is over: if the owner is still there, every task
    /// on the device goes back to its coordinator.
    pub(super) fn on_hand_back(&mut self, d: u32, spell: u64) {
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

    /// `d` leaves (a goodbye, or a crash), losing everything it held.
    pub(super) fn on_departs(&mut self, d: u32) {
        let crash =
            self.devices[d as usize].rng.r#gen::<f64>() < self.scenario.churn.crash_fraction;
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

    /// The coordinator notices that `d` left in life `epoch`.
    pub(super) fn on_departure_noticed(&mut self, d: u32, epoch: u32, policy: &mut dyn Policy) {
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

    /// `d` comes back in a new life.
    pub(super) fn on_returns(&mut self, d: u32) {
        let dev = &mut self.devices[d as usize];
        dev.present = true;
        let epoch = dev.epoch;
        // It connects and gossips at once; then in its slot's rounds.
        let at = self.now + micros(self.scenario.gossip.delay_ms / 1000.0);
        self.push(at, Event::Rejoin(d, epoch));
        self.schedule_departure(d);
    }
}
