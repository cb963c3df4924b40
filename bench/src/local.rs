//! The figures measured on this machine alone: corral's engines against
//! their peers on the same module and the same CPU, run one after the other
//! in one run (ratios are what count on a noisy machine). A peer that is not
//! here is installed (wasmtime's CLI with cargo in a full run, pywasm3 with
//! pip) or reported missing with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Figure;

/// The wasmtime CLI corral's JIT is compared with: the same wasmtime.
pub(crate) const WASMTIME_VERSION: &str = "48.0.8";

fn figure(name: &str, unit: &str, goal: &str) -> Figure {
    Figure::new(name, unit, goal)
}

fn missing(mut f: Figure, why: impl Into<String>) -> Figure {
    f.missing = Some(why.into());
    f
}

/// Runs `cmd` to completion `runs` times; the fastest wall time. Every run
/// must succeed.
pub(crate) fn best_of(runs: usize, mut cmd: impl FnMut() -> Command) -> Result<Duration, String> {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let mut c = cmd();
        let started = Instant::now();
        let out = c
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {c:?}: {e}"))?;
        let took = started.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{c:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        best = best.min(took);
    }
    Ok(best)
}

fn cargo(root: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A wasmtime CLI of the right version: on PATH, or installed under
/// target/bench-tools (by a full run).
pub(crate) fn wasmtime(root: &Path, quick: bool) -> Result<PathBuf, String> {
    let local = root.join("target/bench-tools/bin/wasmtime");
    for candidate in [PathBuf::from("wasmtime"), local.clone()] {
        let version = Command::new(&candidate).arg("--version").output();
        if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASMTIME_VERSION)) {
            return Ok(candidate);
        }
    }
    let install = format!(
        "cargo install wasmtime-cli --version {WASMTIME_VERSION} --locked --root target/bench-tools"
    );
    if quick {
        return Err(format!(
            "wasmtime {WASMTIME_VERSION} is not installed; a full run installs it ({install})"
        ));
    }
    eprintln!("corral-bench: installing the peer: {install} (several minutes, once)…");
    let root_dir = root.join("target/bench-tools");
    let root_dir = root_dir.to_string_lossy();
    cargo(
        root,
        &[
            "install",
            "wasmtime-cli",
            "--version",
            WASMTIME_VERSION,
            "--locked",
            "--root",
            &root_dir,
        ],
    )?;
    Ok(local)
}

/// pywasm3, installed with pip if it is not there.
fn pywasm3() -> Result<(), String> {
    let have = || {
        Command::new("python3")
            .args(["-c", "import wasm3"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if have() {
        return Ok(());
    }
    eprintln!("corral-bench: installing the peer: pip install pywasm3…");
    let _ = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "pywasm3"])
        .status();
    if have() {
        Ok(())
    } else {
        Err("pywasm3 is missing and `python3 -m pip install pywasm3` did not install it".into())
    }
}

/// The engine figures, side by side with their peers.
pub(crate) fn figures(root: &Path, quick: bool) -> Vec<Figure> {
    let runs = if quick { 3 } else { 7 };
    // Sizes: long enough that start-up is small next to the compute.
    let (primes_limit, collatz_limit) = if quick {
        ("300000000", "1000000")
    } else {
        ("1000000000", "3000000")
    };
    let jit_cli = figure("jit_vs_wasmtime_cli", "ratio", "<= 1.02");
    let native = figure("jit_vs_native", "ratio", "<= 1.5");
    let wasm3 = figure("interp_vs_wasm3", "ratio", "<= 1.0");
    eprintln!("corral-bench: building corral and the native prime counter (release)…");
    let data = cargo(
        root,
        &["build", "--release", "--locked", "-p", "corral-node"],
    )
    .and_then(|()| tempfile::tempdir().map_err(|e| format!("cannot make a data dir: {e}")));
    let data = match data {
        Ok(d) => d,
        Err(e) => return vec![missing(jit_cli, &e), missing(native, &e), missing(wasm3, e)],
    };
    let corral = root.join("target/release/corral");
    let primes = root.join("examples/wasm/primes.wasm");
    let collatz = root.join("examples/wasm/collatz.wasm");
    let corral_run = |engine: &str, module: &Path, args: &[&str]| {
        let mut c = Command::new(&corral);
        c.env("CORRAL_DATA_DIR", data.path())
            .args(["run", "--local", "--engine", engine])
            .arg(module)
            .arg("--")
            .args(args);
        c
    };
    let primes_args = ["0", "1", primes_limit];
    // Warm corral's compiled-module cache first (wasmtime's own cache is on
    // by default): both sides run cached code.
    let _ = best_of(1, || corral_run("jit", &primes, &primes_args));
    let corral_jit = best_of(runs, || corral_run("jit", &primes, &primes_args));

    let mut out = Vec::new();
    // corral's JIT against the wasmtime CLI, both with epoch interruption
    // (corral always enforces a wall-clock limit).
    out.push(match (&corral_jit, wasmtime(root, quick)) {
        (Ok(ours), Ok(cli)) => {
            let _ = best_of(1, || wasmtime_run(&cli, &primes, &primes_args));
            match best_of(runs, || wasmtime_run(&cli, &primes, &primes_args)) {
                Ok(theirs) => compared(
                    jit_cli,
                    *ours,
                    theirs,
                    &format!("wasmtime CLI {WASMTIME_VERSION}"),
                ),
                Err(e) => missing(jit_cli, e),
            }
        }
        (Err(e), _) => missing(jit_cli, e.clone()),
        (_, Err(e)) => missing(jit_cli, e),
    });
    // The same program compiled for this CPU.
    out.push(match (&corral_jit, native_primes(root)) {
        (Ok(ours), Ok(bin)) => match best_of(runs, || {
            let mut c = Command::new(&bin);
            c.args(primes_args);
            c
        }) {
            Ok(theirs) => compared(native, *ours, theirs, "native (rustc, this CPU)"),
            Err(e) => missing(native, e),
        },
        (Err(e), _) => missing(native, e.clone()),
        (_, Err(e)) => missing(native, e),
    });
    // wasmi against wasm3, both interpreters, on the C example (pywasm3 has
    // no WASI of its own; bench/peers/wasm3_run.py gives it the few calls
    // the module makes).
    let collatz_args = ["0", "1", collatz_limit];
    out.push(match pywasm3() {
        Ok(()) => {
            let ours = best_of(runs, || corral_run("interp", &collatz, &collatz_args));
            let theirs = best_of(runs, || {
                let mut c = Command::new("python3");
                c.arg(root.join("bench/peers/wasm3_run.py"))
                    .arg(&collatz)
                    .args(collatz_args);
                c
            });
            match (ours, theirs) {
                (Ok(a), Ok(b)) => compared(wasm3, a, b, "wasm3 (pywasm3)"),
                (Err(e), _) | (_, Err(e)) => missing(wasm3, e),
            }
        }
        Err(e) => missing(wasm3, e),
    });
    out
}

fn wasmtime_run(cli: &Path, module: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(cli);
    c.args(["run", "-W", "timeout=3600s"])
        .arg(module)
        .args(args);
    c
}

/// The prime counter built for this machine.
fn native_primes(root: &Path) -> Result<PathBuf, String> {
    let target = root.join("target/bench-native");
    let target_dir = target.to_string_lossy().into_owned();
    let manifest = root.join("examples/Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    cargo(
        root,
        &[
            "build",
            "--release",
            "--locked",
            "--manifest-path",
            &manifest,
            "-p",
            "primes",
            "--target-dir",
            &target_dir,
        ],
    )?;
    Ok(target.join("release/primes"))
}

fn compared(mut f: Figure, ours: Duration, theirs: Duration, peer: &str) -> Figure {
    let (a, b) = (ours.as_secs_f64(), theirs.as_secs_f64());
    f.value = Some(a);
    f.unit = "s (ratio)".into();
    f.peer = Some(peer.into());
    f.peer_value = Some(b);
    f.ratio = Some(a / b);
    f
}

/// The figures as a Markdown table.
pub(crate) fn table(figures: &[Figure]) -> String {
    let mut s = String::from("| figure | value | unit | peer | peer value | ratio | goal |\n");
    s.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
    let num = |f: &Figure| match (f.value, f.spread) {
        (None, _) => "missing".to_string(),
        (Some(v), Some([low, high])) if f.rounds > 1 => {
            format!("{v:.3} ({low:.3}–{high:.3}, {} rounds)", f.rounds)
        }
        (Some(v), _) => format!("{v:.3}"),
    };
    for f in figures {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} | {} |\n",
            f.name,
            num(f),
            f.unit,
            f.peer.as_deref().unwrap_or("—"),
            f.peer_value
                .map_or_else(|| "—".into(), |v| format!("{v:.3}")),
            f.ratio.map_or_else(|| "—".into(), |v| format!("{v:.3}")),
            f.goal
        ));
    }
    s
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// docs/BENCHMARKS.md: the table, the machine, the command.
/// The page of `figures`, made by `corral-bench` run with `args` (what
/// its header says to run again).
pub(crate) fn markdown(
    figures: &[Figure],
    args: &[String],
    took: Duration,
    picture: Option<&str>,
) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::from("# Benchmarks\n\n");
    s.push_str("Generated by `corral-bench` — do not edit; run it again:\n\n```sh\n");
    s.push_str(&format!(
        "cargo run --release -p corral-bench -- {}\n```\n\n",
        args.join(" ")
    ));
    s.push_str(&format!(
        "Machine: {cpu}, {cores} cores; {}; {}. Run: {} ({:.0} s).\n\n",
        command_output("uname", &["-sr"]),
        command_output("rustc", &["--version"]),
        command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        took.as_secs_f64()
    ));
    s.push_str("Engine figures are the fastest of several runs of the whole command (start-up included) on the same module, ours and the peer's one after the other; the ratio is ours ÷ the peer's (lower is better). Mesh figures come from network namespaces on this machine (`node/tests/netns/bench.rs`); each is the median of the rounds, with the lowest and highest in brackets. `sim_scale_10k_wall_s` is the wall time of `corral-sim run simulations/scenarios/scale-10k.toml`. With `--compare REV`, the peer is revision REV, built and run alternately with this build in the same rounds, and the ratio is this build's median ÷ REV's. The round trip is a trivial task (its module already on the worker) run with `corral run` as a user runs it, one after another, timed on the coordinator from the job's submission to its result; `run_command_p50_ms` is the whole `corral run` command, process start to exit.\n\n");
    s.push_str(&table(figures));
    if let Some(file) = picture {
        s.push_str(&format!(
            "\n![Each figure against its goal: bars left of the line meet it]({file})\n"
        ));
    }
    let missing: Vec<&Figure> = figures.iter().filter(|f| f.missing.is_some()).collect();
    if !missing.is_empty() {
        s.push_str("\nMissing figures, and why:\n\n");
        for f in missing {
            let why = f.missing.as_deref().unwrap_or_default();
            let first = why.lines().next().unwrap_or_default();
            s.push_str(&format!("- `{}`: {first}\n", f.name));
        }
    }
    s
}
