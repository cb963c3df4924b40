//! The devices and the jobs of a scenario, drawn once and shared by every
//! policy's run: [`Fleet`] (static device facts) and [`Workload`] (job
//! arrivals and task sizes), with the random draws they use.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::clock::{Micros, micros};
use crate::scenario::{Scenario, Size};

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

pub(super) fn exponential(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
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
