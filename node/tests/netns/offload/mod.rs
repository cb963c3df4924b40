//! Jobs offloaded across hosts (DESIGN §3): results equal a local run byte
//! for byte and spread over hosts; a slow host (a cgroup CPU quota) gets
//! fewer tasks; a worker killed mid-batch and a coordinator killed and
//! restarted lose nothing; a single task's streamed output starts over when
//! its worker dies; an untrusted submitter is refused with the reason;
//! `--verify 2` passes on honest workers and flags a lying one.

//!
//! This file holds the shared helpers (modules, comparisons, a mesh of n
//! hosts, job polling); the tests live by theme in `placement` (spread and
//! speed), `faults` (killed workers and coordinators) and `trust`
//! (refusals and verification).

mod faults;
mod placement;
mod trust;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::harness::{Lan, corral, make_mesh, netns_available};

const LIMIT: Duration = Duration::from_secs(60);

pub fn testkit() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/testkit.wasm")
        .display()
        .to_string()
}

pub fn mandelbrot() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/mandelbrot.wasm")
        .display()
        .to_string()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `corral run --local` of the same job, for comparison.
pub fn local_run(dir: &Path, module: &str, extra: &[&str]) {
    let out = std::process::Command::new(corral())
        .args(["run", "--local", module, "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("corral runs");
    ok(&out);
}

/// Every task's stdout, stderr and files equal between two OUT dirs.
pub fn same_results(a: &Path, b: &Path, tasks: u32) {
    for i in 0..tasks {
        for stream in ["stdout", "stderr"] {
            let x = std::fs::read(a.join(format!("{i}/{stream}"))).expect("result");
            let y = std::fs::read(b.join(format!("{i}/{stream}"))).expect("result");
            assert_eq!(x, y, "task {i} {stream} differs");
        }
        let files = |root: &Path| -> Vec<(String, Vec<u8>)> {
            let base = root.join(format!("{i}/files"));
            walk(&base)
        };
        assert_eq!(files(a), files(b), "task {i} files differ");
    }
}

fn walk(base: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(base) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            for (name, bytes) in walk(&p) {
                out.push((format!("{}/{name}", e.file_name().to_string_lossy()), bytes));
            }
        } else {
            out.push((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(&p).expect("read"),
            ));
        }
    }
    out.sort();
    out
}

pub fn job_json(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("job.json")).expect("job.json")).expect("json")
}

/// Tasks done per host name, from a job record.
pub fn done_by(job: &serde_json::Value, name: &str) -> u64 {
    job["devices"][name]["done"].as_u64().unwrap_or(0)
}

pub fn mesh_of(n: usize, extra: &[&[&str]]) -> Lan {
    let mut lan = Lan::new(n);
    let hosts: Vec<usize> = (0..n).collect();
    make_mesh(&lan, &hosts);
    for i in 0..n {
        let flags = extra.get(i).copied().unwrap_or(&[]);
        lan.up_with(i, flags);
    }
    let ids: Vec<String> = (0..n).map(|i| lan.id_of(i)).collect();
    // Seen with their adverts: a job submitted before a peer's advert
    // arrived runs where placement can see capacity (12 quick tiles all
    // ran on the submitter, 1 run in 25 here).
    lan.wait_for("every host to see every other's advert", LIMIT, || {
        (0..n).all(|i| {
            let peers = lan.advertised_peers_of(i);
            (0..n).filter(|&j| j != i).all(|j| peers.contains(&ids[j]))
        })
    });
    lan
}

pub fn job_state(lan: &Lan, host: usize, id: &str) -> serde_json::Value {
    let out = lan.cli(host, &["job", id, "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn wait_job(
    lan: &Lan,
    host: usize,
    id: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) {
    lan.wait_for(what, Duration::from_secs(120), || {
        check(&job_state(lan, host, id))
    });
}
