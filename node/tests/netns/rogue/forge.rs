//! Forged results (issue 18, "Why" 1): a member with only the mesh key
//! refuses every offer and sends self-signed `FORGED` receipts for every
//! task of the job, replays them and sends some for attempts never placed.
//! None may count: the batch's results are the honest ones, none is
//! credited to the rogue — also with two rogues under `--verify 2`.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::harness::netns_available;
use crate::offload::{local_run, same_results, testkit};

const TASKS: u32 = 12;

fn batch(lan: &Lan, rogues: &[&Rogue], verify: Option<&str>) {
    let tasks = TASKS.to_string();
    let base = ["--tasks", tasks.as_str(), "--", "args", "{task}"];
    let mut args = Vec::new();
    if let Some(k) = verify {
        args.extend(["--verify", k]);
    }
    args.extend(base);
    let id = submit(lan, &args);
    let took = finish_within(lan, &id, Duration::from_secs(120));
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    let (stdouts, job) = fetch(lan, &id, &remote);
    let credited: usize = rogues.iter().map(|r| credited_to(&job, &r.name)).sum();
    eprintln!(
        "measured: forge x{} verify {verify:?}: state {} after {took:?}, {} of {TASKS} results FORGED, {credited} credited to the rogues",
        rogues.len(),
        job["state"],
        forged(&stdouts),
    );
    for rogue in rogues {
        let log = rogue.log();
        let sent = log.lines().filter(|l| l.starts_with("FORGED ")).count();
        eprintln!("{}: {sent} forged batches sent", rogue.name);
        assert!(
            sent > 0,
            "{} was never offered a task, so it forged nothing (the test proves nothing):\n{log}",
            rogue.name
        );
    }
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        forged(&stdouts),
        0,
        "forged results were taken; per device: {}",
        job["devices"]
    );
    assert_eq!(
        credited, 0,
        "tasks credited to a rogue; per device: {}",
        job["devices"]
    );
    local_run(&local, &testkit(), &base);
    same_results(&remote, Path::new(&local), TASKS);
}

#[test]
fn receipts_forged_by_a_member_count_for_nothing() {
    if !netns_available() {
        return;
    }
    let mut lan = honest_mesh();
    let rogue = Rogue::start(&mut lan, "forge", 0, "rogue-forge", &[]);
    rogue.wait_seen_by(&lan, 0);
    batch(&lan, &[&rogue], None);
}

#[test]
fn two_forging_members_do_not_make_a_verify_2_majority() {
    if !netns_available() {
        return;
    }
    let mut lan = honest_mesh();
    let a = Rogue::start(&mut lan, "forge", 0, "rogue-a", &[]);
    let b = Rogue::start(&mut lan, "forge", 0, "rogue-b", &[]);
    a.wait_seen_by(&lan, 0);
    b.wait_seen_by(&lan, 0);
    batch(&lan, &[&a, &b], Some("2"));
}
