//! Mesh benchmarks, run by `corral-bench` (they are `#[ignore]`d: figures,
//! not checks). Each prints `BENCH {json}` lines: a figure's name, value
//! and unit. `CORRAL_BENCH_QUICK=1` makes them smaller.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Lan, make_mesh, netns_available};

mod serve;

fn quick() -> bool {
    std::env::var_os("CORRAL_BENCH_QUICK").is_some_and(|v| v == "1")
}

fn testkit() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/testkit.wasm")
        .display()
        .to_string()
}

fn figure(name: &str, value: f64, unit: &str) {
    println!(
        "BENCH {}",
        serde_json::json!({ "name": name, "value": value, "unit": unit })
    );
}

/// The wall times of the completed jobs `ids` (coordinated by `host`), in
/// milliseconds, sorted.
fn walls_ms(lan: &Lan, host: usize, ids: &[String]) -> Vec<f64> {
    let mut wall_ms: Vec<f64> = ids
        .iter()
        .map(|id| {
            let job = job_json(lan, host, id);
            assert_eq!(job["state"], "completed", "{job}");
            job["wall_us"].as_f64().expect("wall_us") / 1000.0
        })
        .collect();
    wall_ms.sort_by(f64::total_cmp);
    wall_ms
}

fn job_json(lan: &Lan, host: usize, id: &str) -> serde_json::Value {
    serde_json::from_slice(&lan.cli(host, &["job", id, "--json"]).stdout).unwrap_or_default()
}

/// Waits for the job to end, watching the light job list (a large job's
/// full record costs the coordinator time the benchmark is measuring), and
/// returns its full record.
fn wait_done(lan: &Lan, host: usize, id: &str) -> serde_json::Value {
    let started = std::time::Instant::now();
    loop {
        let list: serde_json::Value =
            serde_json::from_slice(&lan.cli(host, &["jobs", "--json"]).stdout).unwrap_or_default();
        let state = list
            .as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["id"] == id))
            .map(|j| j["state"].clone())
            .unwrap_or_default();
        if state.as_str().is_some_and(|s| s != "running") {
            return job_json(lan, host, id);
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the job did not end: {state}"
        );
        // Often while a short job may end, then rarely: each poll is a
        // process competing for the CPUs being measured.
        let pause = if started.elapsed() < Duration::from_millis(200) {
            5
        } else {
            100
        };
        std::thread::sleep(Duration::from_millis(pause));
    }
}

fn submit(lan: &Lan, host: usize, args: &[&str]) -> String {
    let module = testkit();
    let mut full = vec!["run", module.as_str(), "--detach"];
    full.extend(args);
    let out = lan.cli(host, &full);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A coordinator that runs nothing itself and `workers` hosts, all seeing
/// each other.
fn mesh(workers: usize, quotas: &[Option<u32>], slots: &str) -> Lan {
    let n = workers + 1;
    let mut lan = Lan::new(n);
    let hosts: Vec<usize> = (0..n).collect();
    make_mesh(&lan, &hosts);
    lan.up_with(0, &["--share", "never"]);
    for i in 1..n {
        let quota = quotas.get(i - 1).copied().flatten();
        lan.up_opts(i, &["--slots", slots], &[], quota);
    }
    let ids: Vec<String> = (1..n).map(|i| lan.id_of(i)).collect();
    lan.wait_for(
        "the coordinator to see every worker",
        Duration::from_secs(60),
        || {
            let peers = lan.peers_of(0);
            ids.iter().all(|id| peers.contains(id))
        },
    );
    // Adverts (speeds) arrive within a second of the connection.
    std::thread::sleep(Duration::from_millis(1500));
    lan
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_round_trip() {
    if !netns_available() {
        return;
    }
    let lan = mesh(1, &[], "1");
    // Warm: the module crosses to the worker and is compiled there once.
    let warm = submit(&lan, 0, &["--", "exit", "0"]);
    wait_done(&lan, 0, &warm);
    // Each task as a user runs one: `corral run` waits for its result, so
    // nothing of the benchmark's own runs beside the job (a detached
    // submission's exit, polls) on this machine's two CPUs. The figures
    // are read from the coordinator afterwards.
    let runs = if quick() { 30 } else { 200 };
    let module = testkit();
    let mut command_ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = std::time::Instant::now();
        let out = lan.cli(0, &["run", &module, "--", "exit", "0"]);
        command_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list: serde_json::Value =
        serde_json::from_slice(&lan.cli(0, &["jobs", "--json"]).stdout).expect("job list");
    let ids: Vec<String> = list
        .as_array()
        .expect("job list")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .filter(|id| *id != warm)
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), runs, "{list}");
    let wall_ms = walls_ms(&lan, 0, &ids);
    figure("round_trip_p50_ms", percentile(&wall_ms, 0.5), "ms");
    figure("round_trip_p99_ms", percentile(&wall_ms, 0.99), "ms");
    command_ms.sort_by(f64::total_cmp);
    figure("run_command_p50_ms", percentile(&command_ms, 0.5), "ms");
    if std::env::var_os("CORRAL_BENCH_LOGS").is_some() {
        println!(
            "--- coordinator ---\n{}\n--- worker ---\n{}",
            lan.log(0),
            lan.log(1)
        );
    }
}

#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_throughput() {
    if !netns_available() {
        return;
    }
    let lan = mesh(2, &[], "2");
    let warm = submit(&lan, 0, &["--tasks", "4", "--", "exit", "0"]);
    wait_done(&lan, 0, &warm);
    let tasks = if quick() { 2000 } else { 20000 };
    let id = submit(&lan, 0, &["--tasks", &tasks.to_string(), "--", "exit", "0"]);
    let job = wait_done(&lan, 0, &id);
    assert_eq!(job["state"], "completed", "{}", job["state"]);
    let secs = job["wall_us"].as_f64().expect("wall_us") / 1e6;
    figure("throughput_tasks_per_s", f64::from(tasks) / secs, "tasks/s");
    if std::env::var_os("CORRAL_BENCH_LOGS").is_some() {
        for host in 0..3 {
            println!("--- host {host} ---\n{}", lan.log(host));
        }
    }
}

#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_makespan() {
    if !netns_available() {
        return;
    }
    // Three workers held to 100 %, 50 % and 25 % of one CPU (1.75 CPUs of
    // the two this machine has), one slot each.
    let quotas = [Some(100), Some(50), Some(25)];
    let share: f64 = 1.0 + 0.5 + 0.25;
    let lan = mesh(3, &quotas, "1");
    let tasks = if quick() { 14 } else { 42 };
    let id = submit(
        &lan,
        0,
        &["--tasks", &tasks.to_string(), "--", "spin", "300000000"],
    );
    let job = wait_done(&lan, 0, &id);
    assert_eq!(job["state"], "completed", "{}", job["state"]);
    let wall_ms = job["wall_us"].as_f64().expect("wall_us") / 1000.0;
    // Σwork in full-speed time: each task's run time times its host's
    // share of a CPU; the ideal makespan spreads it over Σspeed.
    let share_of = |peer: &str| match peer {
        "host1" => 1.0,
        "host2" => 0.5,
        "host3" => 0.25,
        other => panic!("task ran on {other}"),
    };
    let work_ms: f64 = job["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            t["duration_ms"].as_f64().unwrap_or(0.0) * share_of(t["peer"].as_str().unwrap_or(""))
        })
        .sum();
    let ideal_ms = work_ms / share;
    println!(
        "makespan {wall_ms:.0} ms, ideal {ideal_ms:.0} ms (Σwork {work_ms:.0} ms at full speed over {share} CPUs); per device {}",
        job["devices"]
    );
    figure("makespan_over_ideal", wall_ms / ideal_ms, "ratio");
    if std::env::var_os("CORRAL_BENCH_LOGS").is_some() {
        for host in 0..4 {
            println!("--- host {host} ---\n{}", lan.log(host));
        }
    }
}

/// Whether every host in `hosts` sees exactly the ids in `want` (besides
/// itself).
fn views_hold(lan: &Lan, hosts: &[usize], want: &[&String]) -> bool {
    hosts.iter().all(|&i| {
        let peers = lan.peers_of(i);
        want.iter().all(|id| peers.contains(id))
    })
}

/// Membership times (join, crash detection by SIGKILL, graceful leave) and
/// the idle resident memory of a daemon in a small mesh.
#[test]
#[ignore = "benchmark: run by corral-bench"]
fn bench_membership_and_idle_memory() {
    if !netns_available() {
        return;
    }
    let limit = Duration::from_secs(30);
    let rounds = if quick() { 2 } else { 5 };
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    for i in 0..3 {
        lan.up(i);
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("all three to meet", limit, || {
        views_hold(&lan, &[0, 1], &[&ids[2]]) && views_hold(&lan, &[1], &[&ids[0]])
    });
    // Host 2 leaves; each round brings it back.
    assert!(lan.cli(2, &["leave"]).status.success(), "corral leave");
    lan.wait_exit(2);
    lan.wait_for("host 2 out of every view", limit, || {
        [0, 1].iter().all(|&i| !lan.peers_of(i).contains(&ids[2]))
    });
    let (mut join, mut crash, mut leave) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Join: from the daemon answering on its socket to being in both
        // other views.
        lan.up(2);
        join.push(
            lan.wait_for("the joiner in every view", limit, || {
                views_hold(&lan, &[0, 1], &[&ids[2]])
            })
            .as_secs_f64(),
        );
        lan.kill(2);
        crash.push(
            lan.wait_for("the killed host out of every view", limit, || {
                [0, 1].iter().all(|&i| !lan.peers_of(i).contains(&ids[2]))
            })
            .as_secs_f64(),
        );
        lan.up(2);
        lan.wait_for("the joiner back", limit, || {
            views_hold(&lan, &[0, 1], &[&ids[2]])
        });
        // Leave: from issuing `corral leave` (which returns once the daemon
        // is gone) to being out of both other views.
        let started = std::time::Instant::now();
        let mut leaving = lan
            .cli_command(2, &["leave"])
            .spawn()
            .expect("corral leave starts");
        lan.wait_for("the leaver out of every view", limit, || {
            [0, 1].iter().all(|&i| !lan.peers_of(i).contains(&ids[2]))
        });
        leave.push(started.elapsed().as_secs_f64());
        assert!(
            leaving.wait().expect("leave ends").success(),
            "corral leave"
        );
        lan.wait_exit(2);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    figure("join_s", median(&mut join), "s");
    figure("crash_detect_s", median(&mut crash), "s");
    figure("leave_s", median(&mut leave), "s");

    // Idle memory: host 0 has been up, in a mesh, with nothing to do.
    std::thread::sleep(Duration::from_secs(if quick() { 2 } else { 10 }));
    let status = proc_status(&lan, 0);
    figure("idle_rss_mb", mib(&status, "VmRSS"), "MiB");
    if std::env::var_os("CORRAL_BENCH_LOGS").is_some() {
        for l in status
            .lines()
            .filter(|l| l.starts_with("Rss") || l.starts_with("Threads"))
        {
            println!("{l}");
        }
    }
}

/// The big module (`scripts/big-module`, which `corral-bench` runs first):
/// the directory holding `yosys.wasm` and its `share/`.
fn big_module() -> std::path::PathBuf {
    let dir = std::env::var_os("CORRAL_BENCH_BIG_MODULE")
        .expect("CORRAL_BENCH_BIG_MODULE: the directory scripts/big-module prints");
    std::path::PathBuf::from(dir)
}

/// `corral run` of Yosys synthesising a 16-bit counter (`bench/big`), `tasks` times,
/// from host 0; its wall time and job.json.
fn synthesise(lan: &Lan, tasks: u32, scratch: &Path) -> (f64, serde_json::Value) {
    let big = big_module();
    let design = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/big");
    let out = scratch.join(format!(
        "out-{}",
        scratch.read_dir().map_or(0, |d| d.count())
    ));
    let module = big.join("yosys.wasm").display().to_string();
    let share = format!("{}::/share", big.join("share").display());
    let data = format!("{}::/data", design.display());
    let tasks = tasks.to_string();
    let out_dir = out.display().to_string();
    let args = [
        "run",
        &module,
        "--tasks",
        &tasks,
        "--dir",
        &share,
        "--dir",
        &data,
        "--out",
        &out_dir,
        "--timeout",
        "5m",
        "--",
        "-Q",
        "-T",
        "-s",
        "/data/synth.ys",
    ];
    let started = std::time::Instant::now();
    let output = lan.cli(0, &args);
    let wall = started.elapsed().as_secs_f64();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("job.json")).expect("job.json"))
            .expect("job.json parses");
    (wall, job)
}

/// The engines job.json says the tasks ran on.
fn engines_of(job: &serde_json::Value) -> Vec<String> {
    job["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["engine"].as_str().map(String::from))
        .collect()
}

/// `/proc/PID/status` of host i's daemon.
fn proc_status(lan: &Lan, i: usize) -> String {
    let pid = lan.pid(i).expect("the host runs");
    std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status")
}

/// A memory field of a `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
fn mib(status: &str, field: &str) -> f64 {
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    kib / 1024.0
}

#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_big_module() {
    if !netns_available() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    // One fresh device: the first task of a 27.7 MB module.
    let lan = mesh(1, &[], "2");
    let (first, job) = synthesise(&lan, 1, scratch.path());
    println!("first task on {:?}", engines_of(&job));
    figure("big_cold_first_task_s", first, "s");
    // Its compile ends in the background: then a warm task.
    let started = std::time::Instant::now();
    let mut warm = Vec::new();
    while warm.len() < 3 {
        let (wall, job) = synthesise(&lan, 1, scratch.path());
        if engines_of(&job) == ["jit"] {
            warm.push(wall);
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the device never moved to the JIT"
        );
    }
    println!(
        "on the JIT {:.1} s after the first task",
        started.elapsed().as_secs_f64()
    );
    warm.sort_by(f64::total_cmp);
    figure("big_warm_task_s", warm[1], "s");
    figure(
        "big_compile_peak_rss_mb",
        mib(&proc_status(&lan, 1), "VmHWM"),
        "MiB",
    );
    drop(lan);
    // Two fresh devices, four tasks.
    let lan = mesh(2, &[], "2");
    let (job_s, job) = synthesise(&lan, 4, scratch.path());
    println!("four tasks on {:?}", engines_of(&job));
    figure("big_cold_job_s", job_s, "s");
}

/// A trivial task's round trip from a laptop behind one NAT to a Pi behind
/// another (the NAT lab of `nat.rs`): over a punched path (two
/// port-preserving NATs) and through the relay (two symmetric NATs); and
/// how long the two take to be one mesh.
#[test]
#[ignore = "a benchmark: run by corral-bench"]
fn bench_nat_round_trip() {
    if !netns_available() || !crate::harness::nft_available() {
        return;
    }
    use crate::harness::Nat;
    let runs = if quick() { 20 } else { 100 };
    for (nat, path) in [
        (Nat::EndpointIndependent, "punched"),
        (Nat::Symmetric, "relayed"),
    ] {
        let (lan, _) = crate::nat::lab(nat, nat);
        let pi = lan.id_of(1);
        let met = crate::nat::meet(
            &lan,
            "the Pi and the laptop to meet",
            Duration::from_secs(60),
        );
        if nat == Nat::Symmetric {
            figure("nat_meet_s", met.as_secs_f64(), "s");
        }
        lan.wait_for("the path", Duration::from_secs(60), || {
            crate::nat::via(&lan, 2, &pi) == path
        });
        let warm = submit(&lan, 2, &["--", "exit", "0"]);
        wait_done(&lan, 2, &warm);
        let ids: Vec<String> = (0..runs)
            .map(|_| {
                let id = submit(&lan, 2, &["--", "exit", "0"]);
                wait_done(&lan, 2, &id);
                id
            })
            .collect();
        let wall_ms = walls_ms(&lan, 2, &ids);
        figure(
            &format!("nat_{path}_round_trip_p50_ms"),
            percentile(&wall_ms, 0.5),
            "ms",
        );
    }
}
