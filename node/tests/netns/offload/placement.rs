//! Where tasks go: a batch spread over hosts and matching a local run, a
//! host held to a low CPU share getting fewer tasks, and a host slowed after
//! start-up learning it from its runs.

use std::path::Path;
use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_batch_spreads_over_hosts_and_matches_a_local_run() {
    if !netns_available() {
        return;
    }
    let lan = mesh_of(
        3,
        &[&["--slots", "1"], &["--slots", "1"], &["--slots", "1"]],
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    let args = [
        "--tasks", "12", "--", "tile", "{task}", "12", "640", "480", "300",
    ];
    let started = Instant::now();
    let out_arg = remote.display().to_string();
    let module = mandelbrot_path();
    let mut full = vec!["run", module.as_str(), "--out", &out_arg];
    full.extend(args);
    let out = lan.cli(0, &full);
    ok(&out);
    println!("measured: 12 tiles over 3 hosts in {:?}", started.elapsed());
    local_run(&local, &mandelbrot(), &args);
    same_results(&remote, &local, 12);
    let job = job_json(&remote);
    assert_eq!(job["state"], "completed");
    let hosts_used = (0..3)
        .filter(|i| done_by(&job, &format!("host{i}")) > 0)
        .count();
    assert!(
        hosts_used >= 2,
        "the tiles did not spread: {}",
        job["devices"]
    );
    assert!(
        text(&out.stderr).contains("tasks per device"),
        "{}",
        text(&out.stderr)
    );
}

fn mandelbrot_path() -> String {
    mandelbrot()
}

#[test]
fn a_host_held_to_a_low_cpu_share_gets_fewer_tasks() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    lan.up_with(0, &["--share", "never"]);
    lan.up_with(1, &["--slots", "1"]);
    // The "Pi": a fifth of one CPU, for its calibration and its tasks.
    lan.up_opts(2, &["--slots", "1"], &[], Some(20));
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("host 0 to see both workers", LIMIT, || {
        let peers = lan.peers_of(0);
        peers.contains(&ids[1]) && peers.contains(&ids[2])
    });
    // Before any task runs, the slow host has read its cgroup's limit and
    // advertises a slot's share of its CPU (calibration alone measures the
    // CPU's own speed; once tasks run, the share they get takes over, and
    // on a loaded machine the unthrottled host's falls too).
    lan.wait_for("host 0 to see both workers' adverts", LIMIT, || {
        jit_speed(&lan, 0, "host1").is_some() && jit_speed(&lan, 0, "host2").is_some()
    });
    let (fast_speed, slow_speed) = (
        jit_speed(&lan, 0, "host1").expect("host1's speed"),
        jit_speed(&lan, 0, "host2").expect("host2's speed"),
    );
    println!("advertised at start-up: {fast_speed} and {slow_speed} ops/s");
    assert!(
        slow_speed * 3.0 < fast_speed,
        "a host held to 20 % of a CPU advertises {slow_speed} ops/s, an unthrottled one {fast_speed}"
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let out_dir = scratch.path().join("out").display().to_string();
    let module = testkit();
    let out = lan.cli(
        0,
        &[
            "run",
            &module,
            "--tasks",
            "16",
            "--out",
            &out_dir,
            "--",
            "spin",
            "3000000{task}",
        ],
    );
    ok(&out);
    let job = job_json(Path::new(&out_dir));
    let (fast, slow) = (done_by(&job, "host1"), done_by(&job, "host2"));
    println!("measured: unthrottled host {fast} tasks, 20%-CPU host {slow} tasks");
    assert_eq!(fast + slow, 16);
    assert!(slow < fast, "the slow host got {slow}, the fast one {fast}");
}

/// The JIT speed host `name` advertises, as `host` sees it.
fn jit_speed(lan: &Lan, host: usize, name: &str) -> Option<f64> {
    let peers = lan.cli(host, &["peers", "--json"]);
    ok(&peers);
    let peers: serde_json::Value = serde_json::from_slice(&peers.stdout).expect("peers json");
    peers
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["speed"]["jit"].as_f64())
}

/// A device slowed after start-up learns it from the CPU time its tasks
/// get — during a long task, and from short ones as they end — advertises
/// the lower speed, and a higher one again once it has its CPU back.
/// (Here a cgroup limit set under the running daemon, which it cannot read;
/// on a real device also other work on its cores.)
#[test]
fn a_host_slowed_after_start_up_learns_it_from_its_runs() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(2);
    make_mesh(&lan, &[0, 1]);
    lan.up_with(0, &["--share", "never"]);
    lan.up_with(1, &["--slots", "1"]);
    let speed = || jit_speed(&lan, 0, "host1");
    lan.wait_for("host 0 to see host 1's advert", LIMIT, || speed().is_some());
    let full = speed().expect("advertised");
    let module = testkit();
    let scratch = tempfile::tempdir().expect("tempdir");
    let batch = |tasks: u64, spin: &str, out: &str| {
        let out_dir = scratch.path().join(out).display().to_string();
        let count = tasks.to_string();
        let out = lan.cli(
            0,
            &[
                "run", &module, "--tasks", &count, "--out", &out_dir, "--", "spin", spin,
            ],
        );
        ok(&out);
        assert_eq!(done_by(&job_json(Path::new(&out_dir)), "host1"), tasks);
    };
    // A long task (3 s of one core; 15 s at a fifth of one), slowed as it
    // runs: the advert shows it before the task ends.
    let long = lan.cli(0, &["run", &module, "--detach", "--", "spin", "3000000000"]);
    ok(&long);
    let id = text(&long.stdout).trim().to_string();
    wait_job(&lan, 0, &id, "the long task to run on host 1", |j| {
        j["devices"]["host1"]["running"].as_u64().unwrap_or(0) > 0
    });
    lan.throttle(1, 20);
    // Up to 12 s (the task takes 15 s at a fifth of a core; that it is
    // still running when seen is checked below): on a loaded machine the
    // cgroup share is read later than on a quiet one.
    lan.wait_for(
        "host 1 to advertise the speed its running task shows",
        Duration::from_secs(12),
        || speed().is_some_and(|s| s < 0.5 * full),
    );
    let during = speed().expect("advertised");
    assert_eq!(
        job_state(&lan, 0, &id)["state"],
        "running",
        "learnt only at the end"
    );
    ok(&lan.cli(0, &["cancel", &id]));
    // Its CPU back (the limit raised to both cores): short runs show it.
    // (Against what it showed throttled: on a machine busy with other
    // tests an unthrottled slot may not get a whole core either.)
    lan.throttle(1, 200);
    batch(10, "200000000", "back");
    lan.wait_for(
        "host 1 to advertise a higher speed again",
        Duration::from_secs(10),
        || speed().is_some_and(|s| s > 1.5 * during),
    );
    let back = speed().expect("advertised");
    // Slowed again, between tasks this time: they show it as they end.
    lan.throttle(1, 20);
    batch(4, "100000000", "slowed");
    lan.wait_for(
        "host 1 to advertise the speed its finished runs showed",
        Duration::from_secs(10),
        || speed().is_some_and(|s| s < 0.5 * full),
    );
    println!(
        "measured: advertised {full:.0} ops/s at start, {during:.0} during a task held to 20 % of a CPU, \
         {back:.0} with its CPU back, {:.0} after four tasks held to 20 %",
        speed().unwrap_or_default()
    );
}
