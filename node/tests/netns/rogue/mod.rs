//! A rogue member of the mesh (issue 18): `corral-rogue` joins with the mesh
//! key under a fresh identity that no device trusts and misbehaves on
//! purpose. Each test runs an honest 3-device mesh beside it and checks
//! what the issue promises: forged receipts count for nothing (`forge`), a
//! member holding tasks in silence stalls no job (`silent`), a flood of
//! frames, streams, manifests and adverts leaves the victim running with
//! its memory bounded (`flood`), and attacks on the task lane leave a
//! worker answering and running (`lane`). Figures are printed with `--nocapture`.
//!
//! This file holds the rogue process and the result checks; the tests
//! live in `forge`, `silent`, `flood` and `lane`.

mod flood;
mod forge;
mod lane;
mod silent;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::Lan;
use crate::offload::{job_json, job_state, mesh_of, ok, text};

/// The honest mesh beside a rogue: host 0 coordinates and runs nothing,
/// hosts 1 and 2 run one task at a time.
pub fn honest_mesh() -> Lan {
    mesh_of(
        3,
        &[&["--share", "never"], &["--slots", "1"], &["--slots", "1"]],
    )
}

/// The rogue binary (built with the tests' `test-hooks` feature).
fn rogue_bin() -> &'static str {
    env!("CARGO_BIN_EXE_corral-rogue")
}

/// A running `corral-rogue` on a host of its own; killed on drop.
pub struct Rogue {
    child: Child,
    log: PathBuf,
    /// Its peer id.
    pub id: String,
    /// The name in its adverts.
    pub name: String,
}

impl Rogue {
    /// Starts a rogue in `mode` on a new host of `lan`, with the mesh key
    /// of host `peer` and dialling it.
    pub fn start(lan: &mut Lan, mode: &str, peer: usize, name: &str, extra: &[&str]) -> Self {
        let addr = lan.lan_addr(peer);
        let key = lan.host(peer).data.join("swarm.key");
        let i = lan.add_host();
        let ns = lan.host(i).ns.clone();
        let log = lan.scratch.path().join(format!("rogue-{name}.log"));
        let out = std::fs::File::create(&log).expect("rogue log");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                rogue_bin(),
                "--mode",
                mode,
                "--swarm-key",
            ])
            .arg(&key)
            .args(["--peer", &addr, "--name", name])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("corral-rogue starts");
        let mut rogue = Self {
            child,
            log,
            id: String::new(),
            name: name.to_string(),
        };
        let started = Instant::now();
        while rogue.id.is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the rogue did not start:\n{}",
                rogue.log()
            );
            if let Some(line) = rogue.log().lines().find(|l| l.starts_with("PEER_ID ")) {
                rogue.id = line.split_whitespace().nth(1).expect("an id").to_string();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        rogue
    }

    /// What it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until host `host` of `lan` has its advert (it shows in
    /// `corral peers` under its name).
    pub fn wait_seen_by(&self, lan: &Lan, host: usize) {
        lan.wait_for(
            &format!("host {host} to see the rogue {}", self.name),
            Duration::from_secs(60),
            || {
                let out = lan.cli(host, &["peers", "--json"]);
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                v.as_array().into_iter().flatten().any(|p| {
                    p["id"].as_str() == Some(self.id.as_str())
                        && p["name"].as_str() == Some(self.name.as_str())
                })
            },
        );
    }
}

impl Drop for Rogue {
    fn drop(&mut self) {
        // `ip netns exec` execs the rogue, so the child is the rogue.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `args` of the testkit module on host 0, detached; returns the
/// job id.
pub fn submit(lan: &Lan, args: &[&str]) -> String {
    let module = crate::offload::testkit();
    let mut full = vec!["run", module.as_str(), "--detach"];
    full.extend(args);
    let out = lan.cli(0, &full);
    ok(&out);
    text(&out.stdout).trim().to_string()
}

/// Waits up to `limit` for the job to leave `running`; how long it took,
/// or None when it is still running at the limit.
pub fn finish_within(lan: &Lan, id: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if job_state(lan, 0, id)["state"] != "running" {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// What came back: each task's stdout from `corral results`, and the
/// record.
pub fn fetch(lan: &Lan, id: &str, dir: &Path) -> (Vec<Vec<u8>>, serde_json::Value) {
    ok(&lan.cli(0, &["results", id, "--out", &dir.display().to_string()]));
    let job = job_json(dir);
    let tasks = job["tasks"].as_array().map_or(0, Vec::len);
    let stdouts = (0..tasks)
        .map(|i| std::fs::read(dir.join(format!("{i}/stdout"))).unwrap_or_default())
        .collect();
    (stdouts, job)
}

/// How many stdouts are the rogue's `FORGED`.
pub fn forged(stdouts: &[Vec<u8>]) -> usize {
    stdouts
        .iter()
        .filter(|s| String::from_utf8_lossy(s).contains("FORGED"))
        .count()
}

/// Tasks (or, with `--verify`, runs of tasks) the record credits to a
/// device named `name`.
pub fn credited_to(job: &serde_json::Value, name: &str) -> usize {
    let tasks = job["tasks"].as_array().cloned().unwrap_or_default();
    let winners = tasks.iter().filter(|t| t["peer"] == name).count();
    let runs = tasks
        .iter()
        .flat_map(|t| t["runs"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["peer"] == name)
        .count();
    winners + runs
}
