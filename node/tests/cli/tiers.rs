//! Tiered start on a real daemon (issue 19): a module with no JIT code on
//! the device starts its first task on the interpreter at once while
//! Cranelift compiles it in the background; later tasks run the JIT's code,
//! and both tiers give the same bytes.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Daemon, Sandbox, assert_code, job_json, module};

/// Runs 3 mandelbrot tiles from `a` into `out`; the tasks of job.json.
fn tiles(sb: &Sandbox, out: &str) -> Vec<serde_json::Value> {
    let mandelbrot = module("mandelbrot");
    let args = [
        "--data-dir",
        "a",
        "run",
        &mandelbrot,
        "--tasks",
        "3",
        "--out",
        out,
        "--",
        "tile",
        "{task}",
        "3",
        "96",
        "48",
        "200",
    ];
    assert_code(&sb.corral(&args), 0);
    let job = job_json(&sb.path(out));
    job["tasks"].as_array().expect("tasks").clone()
}

/// What a task gave: its stdout and its files, by hash.
fn result_of(task: &serde_json::Value) -> (serde_json::Value, serde_json::Value) {
    (task["stdout_sha256"].clone(), task["files"].clone())
}

#[test]
fn a_cold_module_starts_on_the_interpreter_and_later_tasks_run_on_the_jit() {
    let sb = Sandbox::new();
    sb.mesh_of_two("laptop", "desk");
    let _a = Daemon(sb.daemon("a", &["--share", "never"], &[], &[]));
    let addr = sb.address("a");
    // Every module counts as big on the desk (the bundled ones are small).
    let _b = Daemon(sb.daemon(
        "b",
        &["--share", "always"],
        &["--slots", "1", "--peer", &addr],
        &[("CORRAL_TEST_QUICK_COMPILE_BYTES", Path::new("0"))],
    ));
    crate::wait_until("the desk never joined", Duration::from_secs(30), || {
        sb.status("a")["peers"].as_u64().unwrap_or(0) >= 1
    });
    let first = tiles(&sb, "first");
    assert_eq!(
        first[0]["engine"], "interp",
        "the first task did not wait for Cranelift: {first:#?}"
    );
    // The compile ends in the background; a later job runs on the JIT.
    let started = Instant::now();
    let later = loop {
        let tasks = tiles(&sb, &format!("later-{}", started.elapsed().as_millis()));
        if tasks.iter().all(|t| t["engine"] == "jit") {
            break tasks;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the desk never moved to the JIT: {tasks:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "measured: on the JIT {:.1} s after the first job",
        started.elapsed().as_secs_f64()
    );
    for (cold, warm) in first.iter().zip(&later) {
        assert_eq!(result_of(cold), result_of(warm), "tiers disagree");
    }
}
