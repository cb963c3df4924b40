//! Losses: a worker killed mid-batch, a single streamed task whose worker
//! dies, and a coordinator killed and restarted: nothing is lost.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_worker_killed_mid_batch_loses_nothing() {
    if !netns_available() {
        return;
    }
    let mut lan = mesh_of(
        3,
        &[&["--share", "never"], &["--slots", "1"], &["--slots", "1"]],
    );
    let module = testkit();
    let args = ["--tasks", "10", "--", "spin", "40000000{task}"];
    let mut full = vec!["run", module.as_str(), "--detach"];
    full.extend(args);
    let out = lan.cli(0, &full);
    ok(&out);
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 32, "--detach prints only the job id: {id:?}");
    wait_job(&lan, 0, &id, "host 1 to run a task", |j| {
        j["devices"]["host1"]["running"].as_u64().unwrap_or(0) > 0
    });
    lan.kill(1);
    let started = Instant::now();
    wait_job(&lan, 0, &id, "the job to finish without host 1", |j| {
        j["state"] != "running"
    });
    println!(
        "measured: job finished {:?} after a worker was killed",
        started.elapsed()
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    ok(&lan.cli(0, &["results", &id, "--out", &remote.display().to_string()]));
    local_run(&local, &module, &args);
    same_results(&remote, &local, 10);
    let job = job_json(&remote);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["tasks_done"], 10);
}

#[test]
fn a_single_task_streams_and_starts_over_when_its_worker_dies() {
    use std::io::BufRead;
    use std::sync::{Arc, Mutex};
    if !netns_available() {
        return;
    }
    // One worker, so no straggler copy runs alongside: when it dies after
    // two lines, the task starts over when the device is back.
    let mut lan = mesh_of(2, &[&["--share", "never"], &["--slots", "1"]]);
    let module = testkit();
    let mut run = lan
        .cli_command(0, &["run", &module, "--", "tick", "8", "500"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("corral run starts");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = run.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                lines.lock().expect("lines").push(line.expect("a line"));
            }
        })
    };
    let stderr = run.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    lan.wait_for("two lines of output", LIMIT, || {
        lines.lock().expect("lines").len() >= 2
    });
    lan.kill(1);
    lan.up_with(1, &["--slots", "1"]);
    let started = Instant::now();
    while run.try_wait().expect("wait").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "corral run did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("reader");
    let stderr = stderr.join().expect("stderr reader");
    assert!(run.wait().expect("status").success(), "{stderr}");
    assert!(stderr.contains("started over on host1"), "{stderr}");
    // What the dead run printed, then the whole run that finished.
    let lines = lines.lock().expect("lines").clone();
    let full: Vec<String> = (0..8).map(|i| format!("tick {i}")).collect();
    assert!(lines.len() >= 10 && lines.ends_with(&full), "{lines:?}");
    assert!(full.starts_with(&lines[..lines.len() - 8]), "{lines:?}");
}

#[test]
fn a_coordinator_killed_and_restarted_finishes_its_job() {
    if !netns_available() {
        return;
    }
    let mut lan = mesh_of(
        3,
        &[&["--share", "never"], &["--slots", "1"], &["--slots", "1"]],
    );
    let module = testkit();
    let args = ["--tasks", "12", "--", "spin", "40000000{task}"];
    let mut full = vec!["run", module.as_str(), "--detach"];
    full.extend(args);
    let out = lan.cli(0, &full);
    ok(&out);
    let id = text(&out.stdout).trim().to_string();
    wait_job(&lan, 0, &id, "a first result", |j| {
        j["tasks_done"].as_u64().unwrap_or(0) >= 1
    });
    lan.kill(0);
    std::thread::sleep(Duration::from_millis(500));
    lan.up_with(0, &["--share", "never"]);
    let started = Instant::now();
    wait_job(&lan, 0, &id, "the resumed job to finish", |j| {
        j["state"] != "running"
    });
    println!(
        "measured: resumed job finished {:?} after the coordinator restarted",
        started.elapsed()
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    ok(&lan.cli(0, &["results", &id, "--out", &remote.display().to_string()]));
    println!(
        "{}",
        std::fs::read_to_string(remote.join("job.json")).unwrap_or_default()
    );
    local_run(&local, &module, &args);
    same_results(&remote, &local, 12);
    let job = job_json(&remote);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["tasks_done"], 12, "nothing lost or counted twice");
}
