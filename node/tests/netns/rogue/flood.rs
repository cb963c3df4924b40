//! Memory and CPU (issue 18, "Why" 3), from the network: a member floods a
//! worker with task-protocol frames one byte over the bound, blob frames,
//! a thousand streams that never finish, offers of big manifests signed by
//! its own (untrusted) key and a hundred extra members under fresh keys
//! that advertise. The victim must keep running, a batch must still
//! complete with the right results, and its peak RSS stay bounded.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::harness::netns_available;
use crate::offload::{done_by, local_run, mesh_of, same_results, testkit};

/// Peak resident memory the victim may reach under the flood. An idle
/// debug daemon that has run tasks sits well under 100 MiB.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// How long the flood runs before the batch is submitted.
const WARM_UP: Duration = Duration::from_secs(30);

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_flooding_member_does_not_exhaust_a_worker() {
    if !netns_available() {
        return;
    }
    let mut lan = mesh_of(
        3,
        &[&["--share", "never"], &["--slots", "1"], &["--slots", "1"]],
    );
    let pid = lan.pid(1).expect("the victim runs");
    let idle = status_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = Arc::new(AtomicU64::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let rogue = Rogue::start(
        &mut lan,
        "flood",
        1,
        "rogue-flood",
        &[
            "--frames",
            "8",
            "--blob-frames",
            "8",
            "--stall",
            "1000",
            "--manifests",
            "2",
            "--manifest-mib",
            "8",
            "--sybils",
            "100",
        ],
    );
    std::thread::sleep(WARM_UP);
    let under_flood = status_kib(pid, "VmRSS:").unwrap_or(0);
    let peers = lan.peers_of(1).len();
    let args = ["--tasks", "12", "--", "args", "{task}"];
    let id = submit(&lan, &args);
    let took = finish_within(&lan, &id, Duration::from_secs(180));
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists()
        && lan.cli(1, &["status", "--json"]).status.success();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak = peak.load(Ordering::Relaxed);
    let flood_lines: Vec<String> = rogue
        .log()
        .lines()
        .filter(|l| l.starts_with("FLOOD ") || l.starts_with("SYBIL_ERROR"))
        .map(String::from)
        .collect();
    let state = job_state(&lan, 0, &id);
    eprintln!(
        "measured: flood: victim VmRSS idle {} MiB, after {WARM_UP:?} of flood {} MiB, peak sampled {} MiB, VmHWM {} MiB (bound {} MiB); victim sees {peers} peers; alive {alive}; job {} after {took:?}, host1 did {}",
        idle / 1024,
        under_flood / 1024,
        peak / 1024,
        hwm / 1024,
        RSS_BOUND_KIB / 1024,
        state["state"],
        done_by(&state, "host1"),
    );
    eprintln!("rogue: {}", flood_lines.last().cloned().unwrap_or_default());
    assert!(alive, "the victim died under the flood:\n{}", lan.log(1));
    assert!(
        took.is_some(),
        "the batch did not finish under the flood: {state}"
    );
    assert!(
        hwm.max(peak) < RSS_BOUND_KIB,
        "the victim's peak RSS was {} MiB under the flood",
        hwm.max(peak) / 1024
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let (remote, local) = (scratch.path().join("remote"), scratch.path().join("local"));
    let (_, job) = fetch(&lan, &id, &remote);
    assert_eq!(job["state"], "completed", "{job}");
    local_run(&local, &testkit(), &args);
    same_results(&remote, Path::new(&local), 12);
}
