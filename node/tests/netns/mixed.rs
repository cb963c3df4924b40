//! A mixed-architecture mesh (issue 5): this build on x86_64, the aarch64
//! cross build (JIT and interpreter) and the armv7 cross build (interpreter
//! only), the ARM daemons under qemu-user, each host in its own namespace.
//! They find each other by mDNS, show their CPU and engines, and a job with
//! `--verify 3` runs every task on all three with identical results.
//!
//! The cross builds come from `scripts/cross` (run by `scripts/test`).
//! Without them the test skips loudly; under `CORRAL_REQUIRE_CROSS=1` (CI) a
//! skip is a failure.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Emulated, Lan, make_mesh, netns_available};
use crate::offload::{job_json, local_run, mandelbrot, ok, same_results, text};

/// Emulated daemons start and calibrate slowly.
const LIMIT: Duration = Duration::from_secs(120);

fn cross(triple: &str) -> Option<Emulated> {
    match Emulated::find(triple) {
        Ok(e) => Some(e),
        Err(why) => {
            if std::env::var_os("CORRAL_REQUIRE_CROSS").is_some_and(|v| v == "1") {
                panic!("the mixed-architecture test cannot run: {why}");
            }
            eprintln!("\n!!! SKIPPING the mixed-architecture test: {why} !!!\n");
            None
        }
    }
}

fn peer<'a>(peers: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    peers.as_array()?.iter().find(|p| p["id"] == id)
}

fn engines(p: &serde_json::Value) -> Vec<String> {
    let mut e: Vec<String> = p["engines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    e.sort();
    e
}

#[test]
fn x86_aarch64_and_armv7_hosts_agree_byte_for_byte() {
    if !netns_available() {
        return;
    }
    let (Some(arm64), Some(arm32)) = (
        cross("aarch64-unknown-linux-gnu"),
        cross("armv7-unknown-linux-gnueabihf"),
    ) else {
        return;
    };
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    lan.emulate(1, arm64);
    lan.emulate(2, arm32);
    // The x86 host (this build, with the tests' switches) starts a module
    // it has no code for on the interpreter while Cranelift compiles it
    // (issue 19; every module counts as big there): tiers, engines and
    // architectures must agree. The ARM builds are release builds and do
    // not read the switch.
    for i in 0..3 {
        lan.up_opts(
            i,
            &["--slots", "1"],
            &[("CORRAL_TEST_QUICK_COMPILE_BYTES", "0")],
            None,
        );
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    let found = lan.wait_for("the x86 host to see both ARM hosts by mDNS", LIMIT, || {
        let peers = lan.peers_of(0);
        peers.contains(&ids[1]) && peers.contains(&ids[2])
    });
    println!("measured: both ARM hosts in the x86 host's view after {found:?}");
    // Their capacity adverts (arch, engines, speeds) follow by gossip.
    let peers_json = || -> serde_json::Value {
        serde_json::from_slice(&lan.cli(0, &["peers", "--json"]).stdout).unwrap_or_default()
    };
    lan.wait_for("both ARM hosts' adverts", LIMIT, || {
        let peers = peers_json();
        [&ids[1], &ids[2]]
            .iter()
            .all(|id| peer(&peers, id).is_some_and(|p| p["arch"].is_string()))
    });
    let peers = peers_json();
    let a64 = peer(&peers, &ids[1]).expect("the aarch64 host");
    let a32 = peer(&peers, &ids[2]).expect("the armv7 host");
    assert_eq!(a64["arch"], "aarch64", "{a64}");
    assert_eq!(engines(a64), ["interp", "jit"], "{a64}");
    assert_eq!(a32["arch"], "arm", "{a32}");
    assert_eq!(
        engines(a32),
        ["interp"],
        "the armv7 build is wasmi only: {a32}"
    );
    let out = lan.cli(1, &["status", "--json"]);
    ok(&out);
    let own: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(own["arch"], "aarch64", "{own}");

    // Floating point (mandelbrot tiles, NaN-canonical on every engine) run
    // on all three devices: each task's three runs must agree.
    let scratch = tempfile::tempdir().expect("tempdir");
    let mesh_out = scratch.path().join("mesh");
    let module = mandelbrot();
    let task_args = [
        "--tasks", "3", "--", "tile", "{task}", "3", "96", "48", "200",
    ];
    let mut args = vec!["run", &module, "--verify", "3", "--timeout", "5m", "--out"];
    let mesh_dir = mesh_out.display().to_string();
    args.push(&mesh_dir);
    args.extend(task_args);
    let out = lan.cli(0, &args);
    ok(&out);
    let job = job_json(&mesh_out);
    assert_eq!(job["mismatches"], 0, "{job}");
    for task in job["tasks"].as_array().expect("tasks") {
        let runs = task["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 3, "every task on all three devices: {task}");
        let mut arches: Vec<&str> = runs.iter().filter_map(|r| r["arch"].as_str()).collect();
        arches.sort_unstable();
        assert_eq!(arches, ["aarch64", "arm", "x86_64"], "{task}");
        assert!(
            runs.iter()
                .all(|r| r["stdout_sha256"] == runs[0]["stdout_sha256"]),
            "{task}"
        );
        let arm = runs.iter().find(|r| r["arch"] == "arm").expect("arm run");
        assert_eq!(arm["engine"], "interp", "{task}");
    }
    // The first task the x86 host ran did not wait for Cranelift.
    let tasks = job["tasks"].as_array().expect("tasks");
    for arch in ["x86_64", "aarch64"] {
        let engines: Vec<&str> = tasks
            .iter()
            .flat_map(|t| t["runs"].as_array().into_iter().flatten())
            .filter(|r| r["arch"] == arch)
            .filter_map(|r| r["engine"].as_str())
            .collect();
        println!("measured: {arch} ran its tasks on {engines:?}");
        if arch == "x86_64" {
            assert!(engines.contains(&"interp"), "{arch}: {engines:?}");
        }
    }
    println!(
        "measured: {}",
        text(&out.stderr).lines().last().unwrap_or("")
    );
    // And the files the mesh agreed on are the ones a local run writes.
    let local = scratch.path().join("local");
    local_run(&local, &module, &task_args);
    same_results(&mesh_out, &local, 3);
    assert!(
        Path::new(&mesh_out)
            .join("0/files/output/tile-0.ppm")
            .exists()
    );
}
