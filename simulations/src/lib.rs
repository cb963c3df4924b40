//! corral-sim: a deterministic discrete-event simulator that drives the real
//! `corral-scheduler` with up to 100,000 simulated devices and compares its
//! placement with baselines and an oracle on identical worlds (DESIGN §8).

pub mod oracle;
pub mod plot;
pub mod policy;
pub mod report;
pub mod scenario;
pub mod world;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::report::{Report, Row};
use crate::scenario::Scenario;
use crate::world::{Fleet, Workload, World};

/// Every named policy on the same world, one per core at a time: each
/// thread takes the next policy not yet run (in `names` order) as soon as
/// it finishes one, so a long run (corral's, first) does not hold the
/// shorter ones back in lockstep. Each run is independent and
/// deterministic, and the rows come back in `names` order.
pub fn simulate(scenario: &Scenario, seed: u64, names: &[String]) -> Report {
    let started = std::time::Instant::now();
    let fleet = Fleet::of(scenario);
    let workload = Workload::of(scenario, seed);
    let oracle = oracle::fluid_bound(&fleet, &workload);
    let lpt = oracle::lpt(&fleet, &workload);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, names.len().max(1));
    let next = AtomicUsize::new(0);
    let mut rows: Vec<Option<Row>> = vec![None; names.len()];
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (fleet, workload, next) = (&fleet, &workload, &next);
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = names.get(i) else { break };
                        let mut p = policy::by_name(name, fleet.speed.len(), seed)
                            .expect("names are checked");
                        let outcome = World::new(scenario, seed, fleet, workload).run(p.as_mut());
                        done.push((i, Row::of(&outcome, oracle)));
                    }
                    done
                })
            })
            .collect();
        for h in handles {
            for (i, row) in h.join().expect("a simulation panicked") {
                rows[i] = Some(row);
            }
        }
    });
    Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed,
        devices: fleet.speed.len(),
        tasks: workload.sizes.iter().map(|s| s.len() as u64).sum(),
        oracle_s: (oracle * 1000.0).round() / 1000.0,
        lpt_s: (lpt * 1000.0).round() / 1000.0,
        policies: rows.into_iter().flatten().collect(),
        wall_s: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
    }
}
