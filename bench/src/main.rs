//! `corral-bench`: measures corral's performance figures in one run and
//! prints them with their goals (and, where there is one, the peer's value
//! and the ratio). The mesh figures run on network namespaces (root) through
//! the `#[ignore]`d benchmarks of `node/tests/netns/bench.rs`; a figure that
//! cannot be measured here is reported as missing, with why — never skipped
//! silently.

mod local;
mod mesh;
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
    /// Rounds of the mesh figures and the simulator; each figure is their
    /// median, printed with its range [default: 3, or 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=50))]
    rounds: Option<u16>,
    /// Also build revision REV (a commit, tag or branch) and run its mesh
    /// figures and simulator alternately with this build's, in the same
    /// rounds; the ratio is this build's median ÷ REV's.
    #[arg(long, value_name = "REV")]
    compare: Option<String>,
    /// Only the mesh benchmarks whose names hold TEXT (repeatable, e.g.
    /// `--only bench_round_trip --only bench_throughput`): no engine
    /// figures, no simulator, no big module unless asked for
    /// (`--only bench_big_module`); the figures they do not report are
    /// left out.
    #[arg(long, value_name = "TEXT")]
    only: Vec<String>,
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
    /// The lowest and highest value over the rounds (a median's figure).
    #[serde(skip_serializing_if = "Option::is_none")]
    spread: Option<[f64; 2]>,
    /// Rounds measured (0 for a best-of figure).
    #[serde(skip_serializing_if = "is_zero")]
    rounds: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Figure {
    /// A figure with no value yet.
    pub(crate) fn new(name: &str, unit: &str, goal: &str) -> Self {
        Self {
            name: name.into(),
            value: None,
            unit: unit.into(),
            peer: None,
            peer_value: None,
            ratio: None,
            goal: goal.into(),
            missing: None,
            spread: None,
            rounds: 0,
        }
    }

    /// A figure not measured, and why.
    pub(crate) fn missing(name: &str, unit: &str, goal: &str, why: String) -> Self {
        Self {
            missing: Some(why),
            ..Self::new(name, unit, goal)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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
    let only = !args.only.is_empty();
    let mut figures = if only {
        Vec::new()
    } else {
        local::figures(&root(), args.quick)
    };
    if !args.local_only {
        let big_asked = !only
            || args
                .only
                .iter()
                .any(|o| "bench_big_module".contains(o.as_str()));
        let big = if !big_asked {
            Err(anyhow::anyhow!("not asked for (--only)"))
        } else {
            big_module()
        };
        if let (Err(e), false) = (&big, only) {
            eprintln!("corral-bench: no big module, its figures will be missing: {e:#}");
        }
        let plan = mesh::Plan {
            quick: args.quick,
            rounds: args
                .rounds
                .map_or(if args.quick { 1 } else { 3 }, usize::from),
            compare: args.compare.as_deref(),
            big_module: big.as_deref().ok(),
            only: &args.only,
        };
        let measured = mesh::figures(&root(), &plan);
        figures.extend(measured.into_iter().filter(|f| !only || f.value.is_some()));
        if args.compare.is_none() && big_asked {
            big_peer(&mut figures, args.quick);
        }
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
        let given: Vec<String> = std::env::args().skip(1).collect();
        let doc = local::markdown(&figures, &given, started.elapsed(), picture);
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
