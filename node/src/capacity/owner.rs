//! The owner policy: whether this device takes work now, from `--share` and
//! the host's readings, with hysteresis so it does not flap.

use corral_protocol::capacity::OwnerState;

use super::{HostSample, Share};

/// Above this load (for `BUSY_SAMPLES` readings in a row) the owner is busy.
const BUSY_LOAD_PCT: f32 = 50.0;
/// Below this load (for `IDLE_SAMPLES` readings in a row) the owner is away.
const IDLE_LOAD_PCT: f32 = 25.0;
const BUSY_SAMPLES: u32 = 2;
const IDLE_SAMPLES: u32 = 5;

/// The owner policy with hysteresis: quick to step back when the owner comes
/// back, slow to take work again.
#[derive(Debug)]
pub struct OwnerPolicy {
    share: Share,
    state: OwnerState,
    high: u32,
    low: u32,
}

impl OwnerPolicy {
    /// A policy starting idle (or busy for `--share never`).
    pub fn new(share: Share) -> Self {
        Self {
            share,
            state: if share == Share::Never {
                OwnerState::Busy
            } else {
                OwnerState::Idle
            },
            high: 0,
            low: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> OwnerState {
        self.state
    }

    /// Follows a new `--share` (changed while the daemon runs): at once
    /// for `always` and `never`; `idle` starts idle and lets the readings
    /// decide, as at start-up. A device leaving stays leaving.
    pub fn set_share(&mut self, share: Share) {
        let draining = self.state == OwnerState::Draining;
        *self = Self::new(share);
        if draining {
            self.state = OwnerState::Draining;
        }
    }

    /// Marks the device as leaving; no reading changes that.
    pub fn drain(&mut self) {
        self.state = OwnerState::Draining;
    }

    /// Feeds one reading; returns the (possibly new) state.
    pub fn update(&mut self, sample: HostSample) -> OwnerState {
        if self.state == OwnerState::Draining {
            return self.state;
        }
        match self.share {
            Share::Always => self.state = OwnerState::Idle,
            Share::Never => self.state = OwnerState::Busy,
            Share::Idle => {
                let busy_now = sample.on_battery || sample.load_pct > BUSY_LOAD_PCT;
                let idle_now = !sample.on_battery && sample.load_pct < IDLE_LOAD_PCT;
                self.high = if busy_now { self.high + 1 } else { 0 };
                self.low = if idle_now { self.low + 1 } else { 0 };
                if self.state == OwnerState::Idle
                    && (self.high >= BUSY_SAMPLES || sample.on_battery)
                {
                    self.state = OwnerState::Busy;
                } else if self.state == OwnerState::Busy && self.low >= IDLE_SAMPLES {
                    self.state = OwnerState::Idle;
                }
            }
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::LoadSource;

    struct Script(Vec<HostSample>);

    impl LoadSource for Script {
        fn sample(&mut self) -> HostSample {
            self.0.remove(0)
        }
    }

    fn load(pct: f32) -> HostSample {
        HostSample {
            load_pct: pct,
            on_battery: false,
        }
    }

    #[test]
    fn a_new_share_applies_at_once_but_never_undoes_leaving() {
        let mut policy = OwnerPolicy::new(Share::Always);
        policy.set_share(Share::Never);
        assert_eq!(policy.state(), OwnerState::Busy);
        assert_eq!(policy.update(load(0.0)), OwnerState::Busy);
        policy.set_share(Share::Always);
        assert_eq!(policy.update(load(99.0)), OwnerState::Idle);
        policy.set_share(Share::Idle);
        assert_eq!(policy.state(), OwnerState::Idle);
        policy.drain();
        policy.set_share(Share::Always);
        assert_eq!(policy.state(), OwnerState::Draining);
        assert_eq!(policy.update(load(0.0)), OwnerState::Draining);
    }

    #[test]
    fn the_owner_coming_back_stops_work_quickly_and_it_resumes_slowly() {
        let mut source = Script(
            [10.0, 80.0, 80.0, 10.0, 10.0, 10.0, 10.0, 10.0]
                .into_iter()
                .map(load)
                .collect(),
        );
        let mut policy = OwnerPolicy::new(Share::Idle);
        let states: Vec<_> = (0..8).map(|_| policy.update(source.sample())).collect();
        use OwnerState::{Busy, Idle};
        assert_eq!(states, [Idle, Idle, Busy, Busy, Busy, Busy, Busy, Idle]);
    }

    #[test]
    fn a_load_hovering_at_the_threshold_does_not_flap() {
        let mut policy = OwnerPolicy::new(Share::Idle);
        let mut changes = 0;
        let mut last = policy.state();
        for i in 0..100 {
            let s = policy.update(load(if i % 2 == 0 { 55.0 } else { 45.0 }));
            changes += usize::from(s != last);
            last = s;
        }
        assert!(changes <= 1, "{changes} changes");
    }

    #[test]
    fn battery_makes_the_owner_busy_at_once() {
        let mut policy = OwnerPolicy::new(Share::Idle);
        assert_eq!(
            policy.update(HostSample {
                load_pct: 0.0,
                on_battery: true
            }),
            OwnerState::Busy
        );
    }

    #[test]
    fn always_and_never_ignore_the_load_and_draining_sticks() {
        let mut always = OwnerPolicy::new(Share::Always);
        assert_eq!(always.update(load(100.0)), OwnerState::Idle);
        let mut never = OwnerPolicy::new(Share::Never);
        assert_eq!(never.update(load(0.0)), OwnerState::Busy);
        always.drain();
        assert_eq!(always.update(load(0.0)), OwnerState::Draining);
    }
}
