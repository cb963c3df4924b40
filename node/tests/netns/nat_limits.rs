//! The relay's limits in the NAT lab: a circuit cut at the relay's byte
//! cap costs a batch no member and no finished work (the view holds a
//! peer whose circuit closed, and the ends dial again), and a big blob
//! waits for a direct path before it takes the relay.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Lan, Nat, netns_available, nft_available};
use crate::nat::{lab_opts, meet, via};
use crate::offload::{done_by, job_json, ok, testkit};

const LIMIT: Duration = Duration::from_secs(60);

/// `count` input files of `size` bytes in `dir`, each different.
fn inputs(dir: &Path, count: usize, size: usize) {
    std::fs::create_dir_all(dir).expect("inputs dir");
    for i in 0..count {
        let bytes: Vec<u8> = (0..size)
            .map(|n| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[(n * 7 + i) % 37])
            .collect();
        std::fs::write(dir.join(format!("in-{i:02}")), bytes).expect("input");
    }
}

/// Runs `testkit read {input}` over `dir` from the laptop (host 2); checks
/// every task ran on the Pi (host 1) and printed its input back. The job.
fn echo_batch(lan: &Lan, dir: &Path, out_name: &str) -> serde_json::Value {
    let out_dir = lan.scratch.path().join(out_name);
    let out = lan.cli(
        2,
        &[
            "run",
            &testkit(),
            "--inputs",
            &dir.display().to_string(),
            "--out",
            &out_dir.display().to_string(),
            "--timeout",
            "120s",
            "--",
            "read",
            "{input}",
        ],
    );
    ok(&out);
    let job = job_json(&out_dir);
    assert_eq!(job["state"], "completed", "{job}");
    let tasks = job["tasks"].as_array().expect("tasks").len();
    assert_eq!(done_by(&job, "host1"), tasks as u64, "{job}");
    for task in job["tasks"].as_array().expect("tasks") {
        let i = task["index"].as_u64().expect("index");
        let input = task["input"].as_str().expect("input name");
        let name = input.rsplit('/').next().expect("file name");
        let stdout = std::fs::read(out_dir.join(format!("{i}/stdout"))).expect("stdout");
        let want = std::fs::read(dir.join(name)).expect("input");
        assert!(stdout == want, "task {i}: its output is not its input");
    }
    job
}

#[test]
fn a_circuit_cut_at_the_relays_byte_cap_loses_no_member_and_no_work() {
    if !netns_available() || !nft_available() {
        return;
    }
    // Circuits cut after 3 MiB; the batch moves about 12 MiB through them.
    let cap = ("CORRAL_TEST_RELAY_CIRCUIT_BYTES", "3145728");
    let (lan, _) = lab_opts(Nat::Symmetric, Nat::Symmetric, &[cap]);
    meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    assert_eq!(via(&lan, 2, &lan.id_of(1)), "relayed");
    let dir = lan.scratch.path().join("inputs");
    inputs(&dir, 12, 512 * 1024);
    let job = echo_batch(&lan, &dir, "cut-out");
    let cuts = lan.log(0).matches("a circuit was cut").count();
    let attempts: u64 = job["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["attempts"].as_u64().unwrap_or(0))
        .sum();
    println!("12 tasks through a relay cutting every 3 MiB: {cuts} cut(s), {attempts} start(s)");
    assert!(cuts >= 2, "the cap never cut a circuit:\n{}", lan.log(0));
    // At most the requests travelling at a cut are asked again (a fetch goes
    // on from the bytes taken): before, each cut dropped the Pi and every
    // task it held was started again.
    assert!(
        attempts <= 12 + cuts as u64,
        "{attempts} starts for 12 tasks, {cuts} cuts"
    );
    // The Pi was held while its circuit was dialled again: never dropped,
    // so no running task was taken from it and started again.
    assert!(
        !lan.log(2).contains("peer left"),
        "the laptop dropped the Pi:\n{}",
        lan.log(2)
    );
}

#[test]
fn a_big_input_waits_for_a_direct_path_then_takes_the_relay() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (lan, _) = lab_opts(Nat::Symmetric, Nat::Symmetric, &[]);
    meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    let dir = lan.scratch.path().join("big");
    inputs(&dir, 1, 6 * 1024 * 1024);
    let started = std::time::Instant::now();
    echo_batch(&lan, &dir, "big-out");
    println!(
        "a 6 MiB input over the relay, after the wait: {:?}",
        started.elapsed()
    );
    // The Pi asked for a direct path first (no punch behind symmetric
    // NATs) and then fetched over the relay.
    assert!(
        lan.log(1).contains("no direct path came"),
        "the big input did not wait for a direct path:\n{}",
        lan.log(1)
    );
}
