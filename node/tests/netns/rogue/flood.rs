//! Memory and CPU (issue 18, "Why" 3), from the network. First a cancel one
//! byte over the task request bound, alone on a connection: the victim must
//! cut it early (a size limit per message kind), not read it whole (today
//! it reads up to ~130 MiB before it decodes anything). Then everything at once against a worker: such
//! frames, blob frames, 400 streams that never finish (Yamux drops a
//! connection over 512), offers of big manifests signed by the rogue's own
//! (untrusted) key, and, from another process, a hundred extra members
//! under fresh keys that advertise. The victim must keep running, a batch
//! must still complete with the right results, and its peak RSS stay
//! bounded.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::*;
use crate::harness::netns_available;
use crate::offload::{done_by, local_run, same_results, testkit};

/// Peak resident memory the victim may reach under the flood. An idle
/// debug daemon that has run tasks sits well under 100 MiB.
const RSS_BOUND_KIB: u64 = 512 * 1024;
/// Most bytes of an oversize cancel the victim may take before cutting it
/// (a cancel is a job id and an index).
const CUT_BOUND: u64 = 16 * 1024 * 1024;
/// How long the whole flood runs before the batch is submitted.
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

/// The bytes on `prefix` lines of the rogue's log (`PREFIX N bytes` or
/// `ENDED oversize-task after N bytes (why)`).
fn figures(log: &str, prefix: &str) -> Vec<(u64, String)> {
    log.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let n = rest.split_whitespace().next()?.parse().ok()?;
            Some((n, rest.to_string()))
        })
        .collect()
}

/// Phase one: one oversize frame at a time; returns how many bytes the
/// victim took before it cut the first one, or the most it took of an
/// open one when none was cut within the limit.
fn oversize_frame_is_cut(lan: &mut Lan) -> Result<u64, u64> {
    // A cancel is a few dozen bytes; this one claims the task request
    // bound plus one.
    let rogue = Rogue::start(
        lan,
        "flood",
        1,
        "rogue-frames",
        &["--frames", "1", "--frame-variant", "1"],
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let log = rogue.log();
        // Cut by the victim (a refused stream reads `N/M: connection is
        // closed` on the rogue's side: Yamux's words for a stream closed
        // under it), not lost with a connection that dropped.
        let cut = figures(&log, "ENDED oversize-task after ")
            .into_iter()
            .find(|(_, why)| !why.contains("Connection was closed before"));
        if let Some((n, why)) = cut {
            eprintln!(
                "measured: oversize cancel frame cut after {n} bytes in {:?}: {why}",
                started.elapsed()
            );
            return Ok(n);
        }
        let most = figures(&log, "OVERSIZE_OPEN ")
            .iter()
            .map(|f| f.0)
            .max()
            .unwrap_or(0);
        if most > CUT_BOUND {
            eprintln!(
                "measured: the victim took {most} bytes of an oversize cancel frame in {:?} without cutting it",
                started.elapsed()
            );
            return Err(most);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(figures(&rogue.log(), "OVERSIZE_OPEN ")
        .iter()
        .map(|f| f.0)
        .max()
        .unwrap_or(0))
}

#[test]
fn a_flooding_member_does_not_exhaust_a_worker() {
    if !netns_available() {
        return;
    }
    let mut lan = honest_mesh();
    let pid = lan.pid(1).expect("the victim runs");
    let idle = status_kib(pid, "VmRSS:").unwrap_or(0);
    let cut = oversize_frame_is_cut(&mut lan);

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
            "400",
            "--manifests",
            "2",
            "--manifest-mib",
            "8",
        ],
    );
    // The extra members come from a process of their own, so their adverts
    // do not wait behind the flood's CPU.
    let _sybils = Rogue::start(&mut lan, "flood", 1, "rogue-sybils", &["--sybils", "100"]);
    std::thread::sleep(WARM_UP);
    let under_flood = status_kib(pid, "VmRSS:").unwrap_or(0);
    let peers = lan.peers_of(1).len();
    let args = ["--tasks", "12", "--", "args", "{task}"];
    let id = submit(&lan, &args);
    let took = finish_within(&lan, &id, Duration::from_secs(180));
    let alive = Path::new(&format!("/proc/{pid}")).exists()
        && lan.cli(1, &["status", "--json"]).status.success();
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let peak = peak.load(Ordering::Relaxed);
    let log = rogue.log();
    let reconnects = log.lines().filter(|l| l.starts_with("CONNECTED ")).count();
    let state = job_state(&lan, 0, &id);
    eprintln!(
        "measured: flood: victim VmRSS idle {} MiB, after {WARM_UP:?} of flood {} MiB, peak sampled {} MiB, VmHWM {} MiB (bound {} MiB); victim sees {peers} peers; flooder connected {reconnects} time(s); alive {alive}; job {} after {took:?}, host1 did {}",
        idle / 1024,
        under_flood / 1024,
        peak / 1024,
        hwm / 1024,
        RSS_BOUND_KIB / 1024,
        state["state"],
        done_by(&state, "host1"),
    );
    if let Some(line) = log.lines().rev().find(|l| l.starts_with("FLOOD ")) {
        eprintln!("rogue: {line}");
    }
    assert!(alive, "the victim died under the flood:\n{}", lan.log(1));
    assert!(
        matches!(cut, Ok(n) if n <= CUT_BOUND),
        "an oversize cancel frame was not cut within {CUT_BOUND} bytes: {cut:?}"
    );
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
