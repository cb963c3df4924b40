//! Lower bounds on the makespan, with every device present and idle the
//! whole time (more capacity than any policy ever has, so these bound every
//! policy from below).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::world::{Fleet, Workload};

/// Σwork/Σspeed with arrivals (a fluid that may split tasks), or a job's
/// longest task on the fastest slot, whichever ends later; seconds from the
/// first arrival.
pub fn fluid_bound(fleet: &Fleet, workload: &Workload) -> f64 {
    // Capacity in speed-100 seconds of work per second.
    let capacity: f64 = fleet
        .speed
        .iter()
        .zip(&fleet.slots)
        .map(|(&s, &n)| s as f64 * f64::from(n) / 100.0)
        .sum();
    let fastest = fleet.speed.iter().copied().max().unwrap_or(1) as f64 / 100.0;
    let start = workload.arrivals.first().copied().unwrap_or(0) as f64 / 1e6;
    let mut backlog = 0.0;
    let mut last = start;
    let mut end: f64 = start;
    for (&at, sizes) in workload.arrivals.iter().zip(&workload.sizes) {
        let at = at as f64 / 1e6;
        backlog = (backlog - capacity * (at - last)).max(0.0);
        backlog += sizes.iter().sum::<f64>();
        last = at;
        let longest = sizes.iter().copied().fold(0.0, f64::max);
        end = end.max(at + longest / fastest);
    }
    end.max(last + backlog / capacity) - start
}

/// A clairvoyant schedule: jobs in arrival order, each job's tasks longest
/// first, each on the slot where it would finish earliest (LPT). Seconds
/// from the first arrival to the last finish.
pub fn lpt(fleet: &Fleet, workload: &Workload) -> f64 {
    // Slots grouped by speed; in each group a heap of free times (µs).
    let mut groups: BTreeMap<u64, BinaryHeap<Reverse<u64>>> = BTreeMap::new();
    for (&s, &n) in fleet.speed.iter().zip(&fleet.slots) {
        let heap = groups.entry(s).or_default();
        for _ in 0..n {
            heap.push(Reverse(0));
        }
    }
    let start = workload.arrivals.first().copied().unwrap_or(0);
    let mut end = start;
    for (&at, sizes) in workload.arrivals.iter().zip(&workload.sizes) {
        let mut sorted = sizes.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        for size in sorted {
            let best = groups
                .iter()
                .filter_map(|(&speed, heap)| {
                    let Reverse(free) = *heap.peek()?;
                    let finish = free.max(at) + (size * 100.0 / speed as f64 * 1e6) as u64;
                    Some((finish, speed))
                })
                .min();
            let Some((finish, speed)) = best else { break };
            if let Some(heap) = groups.get_mut(&speed) {
                heap.pop();
                heap.push(Reverse(finish));
            }
            end = end.max(finish);
        }
    }
    (end - start) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(devices: &[(u64, u16)]) -> Fleet {
        Fleet {
            speed: devices.iter().map(|d| d.0).collect(),
            slots: devices.iter().map(|d| d.1).collect(),
        }
    }

    #[test]
    fn the_fluid_bound_is_work_over_speed_or_the_longest_task() {
        // Ten 1 s tasks on one speed-100 slot and one speed-50 slot:
        // 10 s of work at 1.5 s of work per second.
        let f = fleet(&[(100, 1), (50, 1)]);
        let w = Workload {
            arrivals: vec![0],
            sizes: vec![vec![1.0; 10]],
        };
        assert!((fluid_bound(&f, &w) - 10.0 / 1.5).abs() < 1e-9);
        // One 30 s task cannot be split: 30 s on the fastest slot.
        let w = Workload {
            arrivals: vec![0],
            sizes: vec![vec![30.0, 1.0]],
        };
        assert!((fluid_bound(&f, &w) - 30.0).abs() < 1e-9);
    }

    #[test]
    fn lpt_puts_long_tasks_first_on_the_fastest_slots() {
        // Sizes 4, 3, 2, 1 on two speed-100 slots: LPT gives {4, 1}, {3, 2}.
        let f = fleet(&[(100, 2)]);
        let w = Workload {
            arrivals: vec![0],
            sizes: vec![vec![1.0, 2.0, 3.0, 4.0]],
        };
        assert!((lpt(&f, &w) - 5.0).abs() < 1e-6);
        assert!(lpt(&f, &w) >= fluid_bound(&f, &w) - 1e-9);
    }
}
