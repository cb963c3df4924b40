//! The task lane under attack (issue 19: one long-lived stream per peer for
//! task messages). A member opens lanes to a worker and sends a frame over
//! the lane's bound, a frame of garbage, a flood of requests whose answers
//! it never reads, more lanes than a peer may hold, and a frame cut by a
//! reset. The victim must cut the bad lanes, stop reading the flood, refuse
//! the extra lanes, still answer an honest request on a new lane, and run
//! every task of a `--verify 2` batch with the right results.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::harness::netns_available;
use crate::offload::{local_run, same_results, testkit};

/// A peer's lanes into a node at once (`net::lane::LANES_PER_PEER`).
const LANES_PER_PEER: usize = 4;

/// The figure after `prefix` on the rogue's line starting with it.
fn line<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines().find_map(|l| l.strip_prefix(prefix))
}

#[test]
fn a_member_abusing_the_task_lane_does_not_stop_a_worker() {
    if !netns_available() {
        return;
    }
    let mut lan = honest_mesh();
    let pid = lan.pid(1).expect("the victim runs");
    let rogue = Rogue::start(&mut lan, "lane", 1, "rogue-lane", &[]);
    let started = Instant::now();
    while !rogue.log().contains("LANE done") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the lane attacks did not finish:\n{}",
            rogue.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = rogue.log();
    eprintln!(
        "measured: lane attacks on host 1 in {:?}:\n{}",
        started.elapsed(),
        log.lines()
            .filter(|l| l.starts_with("LANE"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!log.contains("LANE_ERROR"), "{log}");
    for what in ["oversize", "garbage"] {
        let cut = line(&log, &format!("LANE {what} cut=")).unwrap_or("");
        assert!(
            cut.starts_with("true"),
            "a {what} lane frame was not cut:\n{log}"
        );
    }
    // The flood stops once the victim's answers fill the lane and its
    // places are taken: far short of what was sent.
    let unread = line(&log, "LANE unread sent ").unwrap_or("");
    let (sent, of) = unread.split_once(" of ").expect("the flood's line");
    let (sent, of): (usize, usize) = (sent.parse().expect("sent"), of.parse().expect("of"));
    assert!(
        sent < of,
        "the victim read all {of} requests whose answers were never read"
    );
    let refused = line(&log, "LANE lanes refused ").unwrap_or("");
    let (refused, opened) = refused.split_once(" of ").expect("the lanes' line");
    let (refused, opened): (usize, usize) = (
        refused.parse().expect("refused"),
        opened.parse().expect("opened"),
    );
    assert!(
        refused >= opened + 1 - LANES_PER_PEER,
        "{refused} of {opened} extra lanes refused, beside the flood's"
    );
    let honest = line(&log, "LANE honest ").unwrap_or("");
    assert_eq!(honest, "id=77 answer=Ack", "{log}");

    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the victim died"
    );
    // Each task on two devices: the victim and host 2 are the only ones
    // that take work (host 0 shares nothing, the rogue refuses), so every
    // task runs on the victim too.
    let args = ["--tasks", "6", "--", "args", "{task}"];
    let mut submitted = vec!["--verify", "2"];
    submitted.extend(args);
    let id = submit(&lan, &submitted);
    let took = finish_within(&lan, &id, Duration::from_secs(120));
    assert!(took.is_some(), "the batch did not finish");
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    let (_, job) = fetch(&lan, &id, &remote);
    assert_eq!(job["state"], "completed", "{job}");
    for task in job["tasks"].as_array().expect("tasks") {
        let on_victim = task["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|run| run["peer"] == "host1");
        assert!(on_victim, "a task did not run on the victim: {task}");
    }
    local_run(&local, &testkit(), &args);
    same_results(&remote, Path::new(&local), 6);
}
