//! `corral leave` drains (DESIGN §9): a device that leaves stops taking
//! tasks, lets the ones it runs finish within its grace period, hands back
//! what is still running then, and only then goes.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::{Sandbox, assert_code, wait_until};

fn exited_within(child: &mut Child, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_leaving_device_finishes_its_task_within_the_grace_period() {
    let sb = Sandbox::new();
    let (mut a, mut b) = sb.pair(&["--grace", "30s"]);
    let id = sb.detach(&["--", "sleep-ms", "3000"]);
    wait_until(
        "the task did not start on the desk",
        Duration::from_secs(30),
        || sb.status("b")["running"].as_u64() == Some(1),
    );
    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    // The coordinator runs nothing itself: only the leaving desk can
    // finish the task, and it does before it goes.
    wait_until(
        "the leaving desk did not finish its task",
        Duration::from_secs(30),
        || sb.job(&id)["state"] == "completed",
    );
    let j = sb.job(&id);
    assert_eq!(j["tasks"][0]["peer"], "desk", "{j}");
    assert_eq!(j["tasks"][0]["attempts"], 1, "{j}");
    assert!(
        exited_within(&mut b, Duration::from_secs(10)),
        "the desk did not exit once its task was done"
    );
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = a.wait();
}

#[test]
fn a_leaving_device_hands_back_what_outlives_its_grace_period() {
    let sb = Sandbox::new();
    let (mut a, mut b) = sb.pair(&["--grace", "1s"]);
    let id = sb.detach(&["--", "sleep-ms", "6000"]);
    wait_until(
        "the task did not start on the desk",
        Duration::from_secs(30),
        || sb.status("b")["running"].as_u64() == Some(1),
    );
    let asked = Instant::now();
    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert!(
        exited_within(&mut b, Duration::from_secs(10)),
        "the desk did not go after its grace period"
    );
    // It stayed for the grace period before handing the task back.
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "{:?}",
        asked.elapsed()
    );
    let j = sb.job(&id);
    assert_eq!(j["state"], "running", "{j}");
    assert_eq!(j["tasks_failed"], 0, "{j}");
    // Nothing is lost: the desk comes back and the task runs to its end.
    let addr = sb.address("a");
    let mut b = sb.daemon(
        "b",
        &["--share", "always"],
        &["--slots", "1", "--peer", &addr],
        &[],
    );
    wait_until(
        "the handed-back task did not complete",
        Duration::from_secs(60),
        || sb.job(&id)["state"] == "completed",
    );
    let j = sb.job(&id);
    assert_eq!(j["tasks_done"], 1, "{j}");
    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = (a.wait(), b.wait());
}
