//! How many tasks of a job a device holds queued beyond its slots: one
//! (late binding) for ordinary tasks, more for tasks so short that a device
//! would otherwise stand idle between a result and the next offer. Pure: the
//! coordinator feeds it the job's result counts.

use crate::batch::MAX_AHEAD;

/// A task this short is over before its next offer could arrive: a job made
/// of them keeps more than one task ahead on each device (see [`ahead`]).
pub const SHORT_TASK_MS: u64 = 20;

/// The run time a device may hold queued beyond its slots, for each slot,
/// for a job of short tasks: enough that its slots do not stand idle while
/// results and the next offers travel (a round trip is about a millisecond,
/// and each carries a batch), little enough that a slow device holds back
/// no more than this much of the job's end.
pub const AHEAD_MS: u64 = 32;

/// Tasks queued ahead on a device with `slots` slots for a job: one (late
/// binding) until most of its results (nine in ten of at least eight) show
/// its tasks are short, then [`AHEAD_MS`] of work for each slot at their
/// mean run time, at most [`MAX_AHEAD`]. The slots drain the queue
/// together, so a device holds back about [`AHEAD_MS`] of the job's end
/// whatever its slots. Run times come in whole milliseconds, rounded down:
/// the mean is taken half a millisecond higher (a task counted as 0 ms
/// took under one). Tasks of 10 ms get 3 ahead on one slot; tasks under a
/// millisecond get 64 a slot, at most [`MAX_AHEAD`].
pub fn ahead(results_seen: u32, short_results: u32, short_ms: u64, slots: u16) -> u16 {
    if results_seen < 8 || u64::from(short_results) * 10 < u64::from(results_seen) * 9 {
        return 1;
    }
    let results = u64::from(short_results);
    let mean_us = short_ms.saturating_mul(1000).saturating_add(results * 500) / results;
    let per_slot = AHEAD_MS * 1000 / mean_us.max(1);
    u16::try_from(per_slot.saturating_mul(u64::from(slots.max(1))))
        .unwrap_or(MAX_AHEAD)
        .clamp(1, MAX_AHEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_tasks_are_queued_ahead_by_their_run_time() {
        // Too few results, or too few of them short: late binding.
        assert_eq!(ahead(7, 7, 0, 1), 1);
        assert_eq!(ahead(100, 89, 0, 1), 1);
        // Under a millisecond (counted as half of one): 64 a slot, capped.
        assert_eq!(ahead(100, 100, 0, 1), 64);
        assert_eq!(ahead(100, 100, 0, 2), MAX_AHEAD);
        assert_eq!(ahead(100, 100, 0, 16), MAX_AHEAD);
        // 10 ms each (10.5 taken): ~32 ms of work ahead of each slot.
        assert_eq!(ahead(100, 100, 1000, 1), 3);
        assert_eq!(ahead(100, 100, 1000, 4), 12);
        // 19 ms each: one, as for long tasks.
        assert_eq!(ahead(100, 95, 95 * 19, 1), 1);
        // No slots advertised counts as one; sums that overflow saturate.
        assert_eq!(ahead(100, 100, 0, 0), 64);
        assert_eq!(ahead(100, 100, u64::MAX, 8), 1);
    }
}
