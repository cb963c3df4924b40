//! Unit tests of the coordinator.

use super::*;

#[test]
fn short_tasks_are_queued_ahead_by_their_run_time() {
    // Too few results, or too few of them short: late binding.
    assert_eq!(ahead(7, 7, 0), 1);
    assert_eq!(ahead(100, 89, 0), 1);
    // Under a millisecond: as many as a device may hold.
    assert_eq!(ahead(100, 100, 0), MAX_AHEAD);
    // 10 ms each: ~32 ms of work ahead.
    assert_eq!(ahead(100, 100, 1000), 3);
    // 19 ms each: one, as for long tasks.
    assert_eq!(ahead(100, 95, 95 * 19), 1);
}
