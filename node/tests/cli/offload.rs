//! `corral run` through a daemon on loopback: a single task behaves like a
//! local command (stdout as it is written, exit code, a trap's 125), a detached job can be
//! followed, fetched and cancelled, and bad ids get clear errors.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::{Sandbox, assert_code, module, text, wait_until};

fn up(sb: &Sandbox, data: &str, extra: &[&str]) -> Child {
    sb.daemon(data, &["--share", "always"], extra, &[])
}

#[test]
fn jobs_run_through_the_daemon_like_local_commands() {
    let sb = Sandbox::new();
    sb.mesh_of_two("one", "two");
    let mut a = up(&sb, "a", &["--slots", "1"]);
    let addr = sb.address("a");
    let mut b = up(&sb, "b", &["--slots", "1", "--peer", &addr]);
    let tk = module("testkit");

    let out = sb.corral(&["--data-dir", "a", "run", &tk, "--", "args", "x y"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "testkit.wasm\nargs\nx y\n");
    assert_code(
        &sb.corral(&["--data-dir", "a", "run", &tk, "--", "exit", "3"]),
        3,
    );
    // What is piped into corral reaches the task on whichever device runs it.
    let piped: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let out = sb.corral_with_stdin(&["--data-dir", "a", "run", &tk, "--", "stdin"], &piped);
    assert_code(&out, 0);
    assert!(out.stdout == piped, "stdin came back changed");
    let out = sb.corral(&["--data-dir", "a", "run", &tk, "--", "trap"]);
    assert_code(&out, 125);
    assert!(
        text(&out.stderr).contains("trapped"),
        "{}",
        text(&out.stderr)
    );

    // A batch, detached: only the id on stdout; then followed and fetched.
    let id = sb.detach(&["--tasks", "3", "--", "args", "{task}"]);
    assert_eq!(id.len(), 32, "{id:?}");
    wait_until("the job never ended", Duration::from_secs(60), || {
        sb.job(&id)["state"] != "running"
    });
    assert_eq!(sb.job(&id)["state"], "completed");
    assert_code(
        &sb.corral(&["--data-dir", "a", "results", &id, "--out", "res"]),
        0,
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("res/2/stdout")).expect("stdout"),
        "testkit.wasm\nargs\n2\n"
    );
    let listed = text(&sb.corral(&["--data-dir", "a", "jobs"]).stdout);
    assert!(
        listed.contains(&id) && listed.contains("completed"),
        "{listed}"
    );
    // A watcher's summary (what `corral run` follows a batch with) has the
    // counts and no task list; the full record has every task.
    let watch = |summary: bool| {
        let request = serde_json::json!({
            "v": 1, "cmd": "watch", "id": id, "seq": 0, "wait_ms": 0, "summary": summary,
        });
        sb.control("a", &request)["data"].clone()
    };
    let summary = watch(true);
    assert_eq!(summary["tasks_total"], 3, "{summary}");
    assert_eq!(summary["tasks_done"], 3, "{summary}");
    assert_eq!(
        summary["tasks"].as_array().map(Vec::len),
        Some(0),
        "{summary}"
    );
    assert_eq!(watch(false)["tasks"].as_array().map(Vec::len), Some(3));

    // A long job is cancelled: it ends as cancelled and nothing more starts.
    let long = sb.detach(&["--tasks", "50", "--", "sleep-ms", "300"]);
    assert_code(&sb.corral(&["--data-dir", "a", "cancel", &long]), 0);
    assert_eq!(sb.job(&long)["state"], "cancelled");
    let again = sb.corral(&["--data-dir", "a", "cancel", &long]);
    assert_code(&again, 1);
    assert!(
        text(&again.stderr).contains("already ended"),
        "{}",
        text(&again.stderr)
    );
    // Cancelling stops guests already running: two endless tasks, one on
    // each daemon, end within moments instead of at their time limit.
    let running = |data: &str| sb.status(data)["running"].as_u64().unwrap_or(0);
    let endless = sb.detach(&["--tasks", "2", "--timeout", "10m", "--", "loop"]);
    wait_until(
        "the endless tasks did not start on both daemons",
        Duration::from_secs(30),
        || running("a") + running("b") == 2,
    );
    assert_code(&sb.corral(&["--data-dir", "a", "cancel", &endless]), 0);
    wait_until("cancelled tasks still run", Duration::from_secs(10), || {
        running("a") + running("b") == 0
    });

    let bad = sb.corral(&["--data-dir", "a", "job", "nope"]);
    assert_code(&bad, 1);
    assert!(text(&bad.stderr).contains("nope"), "{}", text(&bad.stderr));

    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = (a.wait(), b.wait());
}

/// DESIGN §8: when the owner comes back, running tasks may go on for the
/// grace period and are then handed back; the job finishes once a device is
/// free again, the hand-back costing it no attempt. The owner's load is set
/// through a file (`CORRAL_TEST_HOST_LOAD`); the policy is the real one.
#[test]
fn a_single_remote_task_streams_its_output_as_it_runs() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    let (mut a, mut b) = sb.pair(&[]);
    let tk = module("testkit");
    // Three lines, 1.5 s apart: the task runs on the desk for 4.5 s.
    let mut run = sb
        .command(&["--data-dir", "a", "run", &tk, "--", "tick", "3", "1500"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral run starts");
    let stderr = run.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(run.stdout.take().expect("stdout")).lines() {
        lines.push((line.expect("a line"), std::time::Instant::now()));
    }
    let ended = std::time::Instant::now();
    let status = run.wait().expect("corral run ends");
    let stderr = stderr.join().expect("stderr reader");
    assert!(status.success(), "{status}: {stderr}");
    let text: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        text,
        ["tick 0", "tick 1", "tick 2"],
        "each line once, in order"
    );
    assert_eq!(stderr.matches("tock").count(), 3, "{stderr}");
    // Shown as the task wrote it, not all at once when it ended.
    let lead = ended.duration_since(lines[0].1);
    assert!(
        lead > Duration::from_millis(2500),
        "the first line came only {lead:?} before the end"
    );
    b.kill().ok();
    a.kill().ok();
    b.wait().ok();
    a.wait().ok();
}

#[test]
fn tasks_are_handed_back_when_the_owner_returns() {
    let sb = Sandbox::new();
    sb.mesh_of_two("laptop", "desk");
    let load = sb.path("owner-load");
    std::fs::write(&load, "0").expect("load file");
    let mut a = sb.daemon("a", &["--share", "never"], &[], &[]);
    let addr = sb.address("a");
    let mut b = sb.daemon(
        "b",
        &["--share", "idle"],
        &["--slots", "1", "--grace", "1s", "--peer", &addr],
        &[("CORRAL_TEST_HOST_LOAD", load.as_path())],
    );
    let running_on_b = || sb.status("b")["running"].as_u64().unwrap_or(0);
    let id = sb.detach(&["--", "sleep-ms", "8000"]);
    wait_until(
        "the task did not start on the idle desk",
        Duration::from_secs(30),
        || running_on_b() == 1,
    );

    // The owner is back: after two busy readings and the 1 s grace the
    // task, still seconds from its end, is stopped and given back.
    std::fs::write(&load, "90").expect("load file");
    wait_until(
        "the task was not handed back",
        Duration::from_secs(10),
        || running_on_b() == 0,
    );
    let j = sb.job(&id);
    assert_eq!(j["state"], "running", "{j}");
    assert_eq!(j["tasks_done"], 0, "{j}");

    // The owner leaves again: the task runs again and the job completes.
    std::fs::write(&load, "0").expect("load file");
    wait_until(
        "the job did not complete once the desk was idle",
        Duration::from_secs(60),
        || sb.job(&id)["state"] == "completed",
    );
    let j = sb.job(&id);
    assert_eq!(j["tasks_done"], 1, "{j}");
    assert_eq!(j["tasks_failed"], 0, "{j}");

    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = (a.wait(), b.wait());
}
