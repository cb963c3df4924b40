//! Crash safety as a user meets it: a coordinator that cannot store a
//! result does not acknowledge it, so the worker keeps its copy and sends
//! it again; nothing is run twice and nothing is lost.

use std::time::Duration;

use crate::{Sandbox, assert_code, wait_until};

#[test]
fn a_result_the_coordinator_cannot_store_is_kept_by_the_worker_and_sent_again() {
    let sb = Sandbox::new();
    let (mut a, mut b) = sb.pair(&[]);
    wait_until("the desk never joined", Duration::from_secs(30), || {
        sb.status("a")["peers"].as_u64().unwrap_or(0) >= 1
    });
    // The task prints, then works for 2 s: time to break the store.
    let id = sb.detach(&["--tasks", "1", "--", "tick", "1", "2000"]);
    // A real failure, no mock: the coordinator's blob store can no longer
    // make a file (its temporary directory is a plain file now; root is
    // not stopped by file modes, so chmod would not do).
    let tmp = sb.path("a/blobs/tmp");
    let away = sb.path("a/blobs/tmp.away");
    std::fs::rename(&tmp, &away).expect("move the temporary directory away");
    std::fs::write(&tmp, b"not a directory").expect("plant a file");
    // The task ends; its result cannot be stored, so it is not taken.
    std::thread::sleep(Duration::from_secs(6));
    let job = sb.job(&id);
    assert_eq!(job["state"], "running", "{job:#}");
    // The store comes back: the worker's kept copy goes through.
    std::fs::remove_file(&tmp).expect("remove the file");
    std::fs::rename(&away, &tmp).expect("put the directory back");
    wait_until("the job never ended", Duration::from_secs(60), || {
        sb.job(&id)["state"] != "running"
    });
    let job = sb.job(&id);
    assert_eq!(job["state"], "completed", "{job:#}");
    assert_eq!(
        job["tasks"][0]["attempts"], 1,
        "the result kept by the worker was taken, the task never ran again: {job:#}"
    );
    assert_code(
        &sb.corral(&["--data-dir", "a", "results", &id, "--out", "res"]),
        0,
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("res/0/stdout")).expect("stdout"),
        "tick 0\n"
    );
    let _ = a.kill();
    let _ = b.kill();
    let _ = a.wait();
    let _ = b.wait();
}

#[test]
fn a_submitted_job_survives_a_crash_right_after_submit_returns() {
    let sb = Sandbox::new();
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "laptop"]),
        0,
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        // Nobody shares: the job waits, and its record is all there is.
        let mut a = sb.daemon("a", &["--share", "never"], &[], &[]);
        let id = sb.detach(&["--tasks", "2", "--", "args", "{task}"]);
        // A power cut, as near as a test gets: SIGKILL the moment the id
        // is out, before sled's own flusher (every 500 ms) runs.
        a.kill().expect("SIGKILL");
        a.wait().expect("reaped");
        ids.push(id);
    }
    let mut a = sb.daemon("a", &["--share", "never"], &[], &[]);
    for id in &ids {
        let job = sb.job(id);
        assert_eq!(job["state"], "running", "job {id} was lost: {job:#}");
        assert_eq!(job["tasks_total"], 2, "{job:#}");
    }
    let _ = a.kill();
    let _ = a.wait();
}
