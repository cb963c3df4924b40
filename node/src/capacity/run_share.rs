//! The share of a core that this device's slots get, learnt from the runs:
//! a task's thread CPU time over the wall time it ran, blended over the
//! last few seconds of running.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Runs shorter than this say little about the CPU (a thread's wake-up
/// and the clock's grain are a large part of them).
const SHARE_MIN_RUN: Duration = Duration::from_millis(50);
/// Run time that moves the estimate halfway to what it showed: the
/// estimate follows the last few seconds of running, however they were cut
/// into tasks.
const SHARE_HALF_LIFE: Duration = Duration::from_millis(500);
/// A run still going is counted a second at a time (a task of an hour on
/// a device slowed in its first minute shows it then, not at its end).
const SHARE_SAMPLE: Duration = Duration::from_secs(1);
/// An estimate older than this is dropped: the device may be another one
/// by now (its owner's load, a cgroup limit changed), and the share read
/// at start-up is used again until a run says otherwise.
const SHARE_MAX_AGE: Duration = Duration::from_secs(600);

/// What the tasks run here show of a slot's share of a core: the CPU time
/// a task's thread got over the wall time it ran. A device throttled after
/// start-up (a cgroup limit set later, other work on its cores, `--share
/// always` while its owner works) advertises what its slots do now, not
/// what they did when corral started. Frequency changes (thermal limits)
/// are not seen: a throttled core's CPU time still counts in full.
///
/// Runs still going are counted a second at a time ([`RunShare::sample`]),
/// the rest when they end.
#[derive(Clone, Debug, Default)]
pub struct RunShare {
    estimate: Option<(f64, Instant)>,
    /// The runs going now, by thread id: when each was last counted (its
    /// start at first) and the thread's CPU time then.
    running: HashMap<i32, (Instant, Duration)>,
}

impl RunShare {
    /// A run starts on thread `tid` at `at`, the thread having used `cpu`.
    pub fn started(&mut self, tid: i32, at: Instant, cpu: Duration) {
        self.running.insert(tid, (at, cpu));
    }

    /// The run on thread `tid` ended at `at`, the thread having used `cpu`:
    /// what [`RunShare::sample`] had not counted of it is counted.
    pub fn ended(&mut self, tid: i32, at: Instant, cpu: Duration) {
        let (from, cpu_from) = self.running.remove(&tid).unwrap_or((at, cpu));
        self.observe(
            cpu.saturating_sub(cpu_from),
            at.saturating_duration_since(from),
            at,
        );
    }

    /// Counts the runs going for [`SHARE_SAMPLE`] or more since they were
    /// last counted, up to `now` (a thread's CPU time from `cpu_of`), and
    /// returns the share runs showed lately, if any did.
    pub fn sample(
        &mut self,
        now: Instant,
        cpu_of: impl Fn(i32) -> Option<Duration>,
    ) -> Option<f64> {
        let mut counted = Vec::new();
        for (&tid, (since, cpu)) in &mut self.running {
            if now.saturating_duration_since(*since) < SHARE_SAMPLE {
                continue;
            }
            // The proc file counts to the tick: the next count starts from
            // what it said.
            if let Some(used) = cpu_of(tid) {
                counted.push((
                    used.saturating_sub(*cpu),
                    now.saturating_duration_since(*since),
                ));
                (*since, *cpu) = (now, used);
            }
        }
        for (cpu, wall) in counted {
            self.observe(cpu, wall, now);
        }
        self.current(now)
    }

    /// Adds a run that got `cpu` of CPU time over `wall`, ended at `now`.
    fn observe(&mut self, cpu: Duration, wall: Duration, now: Instant) {
        if wall < SHARE_MIN_RUN {
            return;
        }
        let share = (cpu.as_secs_f64() / wall.as_secs_f64()).clamp(0.01, 1.0);
        let weight = 1.0 - 0.5f64.powf(wall.as_secs_f64() / SHARE_HALF_LIFE.as_secs_f64());
        let blended = match self.current(now) {
            Some(old) => old + weight * (share - old),
            None => share,
        };
        self.estimate = Some((blended, now));
    }

    /// The share runs showed lately, if any did.
    pub fn current(&self, now: Instant) -> Option<f64> {
        self.estimate
            .filter(|(_, at)| now.saturating_duration_since(*at) <= SHARE_MAX_AGE)
            .map(|(share, _)| share)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_teach_a_slot_its_share_of_a_core_and_old_lessons_expire() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut share = RunShare::default();
        assert_eq!(share.current(t0), None);
        // Too short to say anything.
        share.observe(ms(2), ms(20), t0);
        assert_eq!(share.current(t0), None);
        // A run held to a fifth of a core, then half a second with all of
        // it: halfway there.
        share.observe(ms(100), ms(500), t0);
        assert!((share.current(t0).expect("learnt") - 0.2).abs() < 1e-9);
        share.observe(ms(500), ms(500), t0 + ms(500));
        let blended = share.current(t0 + ms(500)).expect("learnt");
        assert!((blended - 0.6).abs() < 1e-9, "{blended}");
        // The same half second cut into five tasks weighs the same.
        let mut cut = RunShare::default();
        cut.observe(ms(100), ms(500), t0);
        for _ in 0..5 {
            cut.observe(ms(100), ms(100), t0);
        }
        assert!((cut.current(t0).expect("learnt") - 0.6).abs() < 1e-9);
        // More CPU than wall time (the clocks' grain) is a whole core.
        let mut full = RunShare::default();
        full.observe(ms(101), ms(100), t0);
        assert_eq!(full.current(t0), Some(1.0));
        // Nothing run for long: forgotten.
        let later = t0 + ms(500) + SHARE_MAX_AGE + ms(1);
        assert_eq!(share.current(later), None);
        // A fresh run after that starts over rather than blending.
        share.observe(ms(300), ms(600), later);
        assert_eq!(share.current(later), Some(0.5));
    }

    #[test]
    fn a_run_still_going_is_counted_a_second_at_a_time_and_the_rest_at_its_end() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut share = RunShare::default();
        share.started(7, t0, ms(40));
        // Not a second yet: nothing to count.
        assert_eq!(share.sample(t0 + ms(900), |_| Some(ms(500))), None);
        // Two seconds at a fifth of a core.
        let seen = share.sample(t0 + ms(2000), |tid| (tid == 7).then_some(ms(440)));
        assert!((seen.expect("counted") - 0.2).abs() < 1e-9, "{seen:?}");
        // Half a second more with a whole core, counted at its end only
        // from the last sample: halfway from 0.2 to 1.
        share.ended(7, t0 + ms(2500), ms(940));
        let ended = share.current(t0 + ms(2500)).expect("counted");
        assert!((ended - 0.6).abs() < 1e-9, "{ended}");
        // Ended runs are no longer sampled.
        assert_eq!(share.sample(t0 + ms(9000), |_| Some(ms(0))), Some(ended));
    }
}
