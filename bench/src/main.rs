//! `corral-bench`: measures corral's performance figures in one run and
//! prints them with their goals (and, where there is one, the peer's value
//! and the ratio). The mesh figures run on network namespaces (root) through
//! the `#[ignore]`d benchmarks of `node/tests/netns/bench.rs`; a figure that
//! cannot be measured here is reported as missing, with why — never skipped
//! silently.

mod local;
mod plot;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

/// Measure corral's performance figures.
#[derive(Debug, Parser)]
#[command(name = "corral-bench")]
struct Args {
    /// Smaller runs: a few minutes in all.
    #[arg(long)]
    quick: bool,
    /// Print one JSON document: {figures: [{name, value, unit, peer, peer_value, ratio, goal}]}.
    #[arg(long)]
    json: bool,
    /// Also write the results as Markdown (docs/BENCHMARKS.md is made so).
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Only the local figures (engines against their peers), not the mesh.
    #[arg(long)]
    local_only: bool,
}

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Figure {
    name: String,
    value: Option<f64>,
    unit: String,
    peer: Option<String>,
    peer_value: Option<f64>,
    ratio: Option<f64>,
    goal: String,
    /// Why it is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    missing: Option<String>,
}

/// The mesh figures and their goals.
const MESH: [(&str, &str, &str); 13] = [
    ("round_trip_p50_ms", "ms", "<= 1"),
    ("round_trip_p99_ms", "ms", "-"),
    ("run_command_p50_ms", "ms", "-"),
    ("throughput_tasks_per_s", "tasks/s", ">= 10000"),
    ("makespan_over_ideal", "ratio", "<= 1.10"),
    ("join_s", "s", "<= 1"),
    ("crash_detect_s", "s", "<= 3"),
    ("leave_s", "s", "<= 0.1"),
    ("idle_rss_mb", "MiB", "<= 20"),
    // A 27.7 MB module (Yosys, scripts/big-module) on fresh devices.
    ("big_cold_first_task_s", "s", "<= 3"),
    ("big_cold_job_s", "s", "<= 5"),
    ("big_warm_task_s", "s", "<= wasmtime CLI, cached"),
    ("big_compile_peak_rss_mb", "MiB", "-"),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Runs the ignored netns benchmarks and collects their `BENCH` lines.
fn mesh_figures(quick: bool) -> Vec<Figure> {
    let missing = |why: String| {
        MESH.iter()
            .map(|(name, unit, goal)| Figure {
                name: (*name).into(),
                value: None,
                unit: (*unit).into(),
                peer: None,
                peer_value: None,
                ratio: None,
                goal: (*goal).into(),
                missing: Some(why.clone()),
            })
            .collect()
    };
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root_user {
        return missing("needs root for network namespaces".into());
    }
    eprintln!(
        "corral-bench: mesh figures (network namespaces; builds the release test binary first)…"
    );
    let big = big_module();
    if let Err(e) = &big {
        eprintln!("corral-bench: no big module, its figures will be missing: {e}");
    }
    let output = Command::new(env!("CARGO"))
        .current_dir(root())
        .envs(big.iter().map(|dir| ("CORRAL_BENCH_BIG_MODULE", dir)))
        .args([
            "test",
            "--release",
            "-p",
            "corral-node",
            "--test",
            "netns",
            "--",
        ])
        .args(["--ignored", "--nocapture", "--test-threads", "1", "bench::"])
        .env("CORRAL_REQUIRE_CROSS", "0")
        .env("CORRAL_REQUIRE_NETNS", "1")
        .env("CORRAL_BENCH_QUICK", if quick { "1" } else { "0" })
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) => return missing(format!("cannot run cargo: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut found: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| l.find("BENCH ").map(|at| &l[at + 6..]))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for line in stdout.lines().filter(|l| l.contains("makespan ")) {
        eprintln!("  {line}");
    }
    MESH.iter()
        .map(|(name, unit, goal)| {
            let value = found
                .iter()
                .position(|v| v["name"] == *name)
                .map(|i| found.remove(i))
                .and_then(|v| v["value"].as_f64());
            Figure {
                name: (*name).into(),
                value,
                unit: (*unit).into(),
                peer: None,
                peer_value: None,
                ratio: None,
                goal: (*goal).into(),
                missing: value.is_none().then(|| {
                    format!(
                        "the benchmark did not report it:\n{}",
                        String::from_utf8_lossy(&output.stderr)
                            .lines()
                            .rev()
                            .take(15)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    )
                }),
            }
        })
        .collect()
}

/// The directory `scripts/big-module` fetches the big module into.
fn big_module() -> anyhow::Result<PathBuf> {
    let out = Command::new(root().join("scripts/big-module"))
        .output()
        .context("cannot run scripts/big-module")?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/big-module failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The big module's warm run beside the wasmtime CLI's cached run of the
/// same synthesis (its compile cache on, warmed first).
fn big_peer(figures: &mut [Figure], quick: bool) {
    let Some(warm) = figures
        .iter_mut()
        .find(|f| f.name == "big_warm_task_s" && f.value.is_some())
    else {
        return;
    };
    let measured = big_module().map_err(|e| format!("{e:#}")).and_then(|big| {
        let cli = local::wasmtime(&root(), quick)?;
        let run = || {
            let mut c = Command::new(&cli);
            c.args(["run", "-C", "cache=y", "--dir"])
                .arg(format!("{}::/share", big.join("share").display()))
                .arg("--dir")
                .arg(format!("{}::/data", root().join("bench/big").display()))
                .arg(big.join("yosys.wasm"))
                .args(["-Q", "-T", "-s", "/data/synth.ys"]);
            c
        };
        local::best_of(1, run)?;
        local::best_of(3, run)
    });
    match measured {
        Ok(theirs) => {
            let theirs = theirs.as_secs_f64();
            warm.peer = Some(format!("wasmtime CLI {}, cached", local::WASMTIME_VERSION));
            warm.peer_value = Some(theirs);
            warm.ratio = warm.value.map(|ours| ours / theirs);
        }
        Err(e) => eprintln!("corral-bench: no wasmtime CLI figure for the big module: {e}"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corral-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut figures = local::figures(&root(), args.quick);
    if !args.local_only {
        figures.extend(mesh_figures(args.quick));
        big_peer(&mut figures, args.quick);
    }
    if let Some(path) = &args.markdown {
        // The picture goes next to the page, which links it by name.
        let svg = path.with_file_name("benchmarks.svg");
        let picture = match plot::draw(&figures, &svg) {
            Ok(()) => Some("benchmarks.svg"),
            Err(e) => {
                eprintln!("corral-bench: no picture: {e:#}");
                None
            }
        };
        let doc = local::markdown(&figures, args.quick, started.elapsed(), picture);
        std::fs::write(path, doc).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "figures": figures }))
                .context("encode")?
        );
        return Ok(());
    }
    print!("{}", local::table(&figures));
    for f in figures.iter().filter(|f| f.missing.is_some()) {
        eprintln!(
            "missing {}: {}",
            f.name,
            f.missing.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
