//! Tasks held in silence (issue 18, "Why" 2): a member advertises a huge
//! speed, accepts every offer and never answers, its connection open and
//! its adverts going on. A batch of short tasks must still finish on the
//! honest devices within a generous bound, with nothing held by the rogue
//! at the end (its tasks were copied elsewhere and it was cooled off).

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::harness::netns_available;
use crate::offload::{done_by, local_run, same_results, testkit};

/// The tasks take milliseconds and may take 20 s at most; a lease, its
/// copy and the rest of the batch fit many times over.
const BOUND: Duration = Duration::from_secs(90);

#[test]
fn a_member_holding_tasks_in_silence_stalls_no_job() {
    if !netns_available() {
        return;
    }
    let mut lan = honest_mesh();
    let rogue = Rogue::start(&mut lan, "silent", 0, "rogue-silent", &[]);
    rogue.wait_seen_by(&lan, 0);
    let args = ["--tasks", "12", "--", "args", "{task}"];
    // The job's own figures bound a lease: a task may run 20 s at most.
    let mut submitted = vec!["--timeout", "20s"];
    submitted.extend(args);
    let id = submit(&lan, &submitted);
    let took = finish_within(&lan, &id, BOUND);
    let state = job_state(&lan, 0, &id);
    let held = state["devices"][&rogue.name]["running"]
        .as_u64()
        .unwrap_or(0);
    let accepted = rogue
        .log()
        .lines()
        .filter(|l| l.starts_with("OFFERED "))
        .count();
    eprintln!(
        "measured: silent rogue: job {} after {took:?} (bound {BOUND:?}), {}/12 done, rogue was offered {accepted} times and holds {held} task(s) now",
        state["state"], state["tasks_done"],
    );
    assert!(
        accepted > 0,
        "the rogue was never offered a task:\n{}",
        rogue.log()
    );
    assert!(
        took.is_some(),
        "the job was still running after {BOUND:?}: {state}"
    );
    assert_eq!(held, 0, "the rogue still holds tasks: {state}");
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    let (_, job) = fetch(&lan, &id, &remote);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(done_by(&job, &rogue.name), 0, "{job}");
    assert_eq!(credited_to(&job, &rogue.name), 0, "{job}");
    local_run(&local, &testkit(), &args);
    same_results(&remote, Path::new(&local), 12);
}
