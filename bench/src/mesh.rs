//! The mesh figures (network namespaces, `node/tests/netns/bench.rs`) and
//! the simulator's wall time at 10,000 devices, each the median of several
//! rounds with its spread. With `--compare REV` another revision is built
//! beside this one and the two run alternately in the same rounds, so both
//! meet the same hour of this shared machine; the ratio is ours ÷ theirs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::Context;

use crate::Figure;

/// The figures measured here, their units and goals.
pub(crate) const FIGURES: [(&str, &str, &str); 17] = [
    ("round_trip_p50_ms", "ms", "<= 1"),
    ("round_trip_p99_ms", "ms", "-"),
    ("run_command_p50_ms", "ms", "-"),
    ("throughput_tasks_per_s", "tasks/s", ">= 10000"),
    ("makespan_over_ideal", "ratio", "<= 1.10"),
    ("join_s", "s", "<= 1"),
    ("crash_detect_s", "s", "<= 3"),
    ("leave_s", "s", "<= 0.1"),
    ("idle_rss_mb", "MiB", "<= 20"),
    // The NAT lab: a laptop and a Pi behind two NATs, a relay between.
    ("nat_meet_s", "s", "<= 3"),
    ("nat_punched_round_trip_p50_ms", "ms", "-"),
    ("nat_relayed_round_trip_p50_ms", "ms", "-"),
    // A 27.7 MB module (Yosys, scripts/big-module) on fresh devices.
    ("big_cold_first_task_s", "s", "<= 3"),
    ("big_cold_job_s", "s", "<= 5"),
    ("big_warm_task_s", "s", "<= wasmtime CLI, cached"),
    ("big_compile_peak_rss_mb", "MiB", "-"),
    // `corral-sim run simulations/scenarios/scale-10k.toml`, whole.
    (SIM_FIGURE, "s", "<= 60"),
];

const SIM_FIGURE: &str = "sim_scale_10k_wall_s";

/// One revision's measuring programs, built in release.
struct Build {
    /// What the figures of this build are called (`this build`, or REV).
    label: String,
    /// Its source tree.
    root: PathBuf,
    /// Its netns test binary (holding the `#[ignore]`d benchmarks).
    netns: PathBuf,
    /// Its simulator.
    sim: PathBuf,
}

/// How a run measures.
pub(crate) struct Plan<'a> {
    pub quick: bool,
    pub rounds: usize,
    pub compare: Option<&'a str>,
    pub big_module: Option<&'a Path>,
    /// Only the benchmarks whose names hold one of these (none: every
    /// one, and the simulator).
    pub only: &'a [String],
}

/// Builds the revision checked out at `root` (its cargo target directory
/// `target`, or the default).
fn build(root: &Path, target: Option<&Path>, label: &str) -> anyhow::Result<Build> {
    eprintln!("corral-bench: building {label} (release)…");
    let cargo = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO"));
        c.current_dir(root).args(args);
        if let Some(dir) = target {
            c.env("CARGO_TARGET_DIR", dir);
        }
        c
    };
    let out = cargo(&[
        "test",
        "--release",
        "-p",
        "corral-node",
        "--test",
        "netns",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .stderr(Stdio::inherit())
    .output()
    .context("cannot run cargo")?;
    anyhow::ensure!(out.status.success(), "cannot build {label}'s netns tests");
    let netns = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "netns")
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .with_context(|| format!("cargo did not say where {label}'s netns tests are"))?;
    let status = cargo(&[
        "build",
        "--release",
        "-p",
        "corral-sim",
        "--bin",
        "corral-sim",
    ])
    .status()
    .context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "cannot build {label}'s simulator");
    let sim = target
        .map_or_else(|| root.join("target"), Path::to_path_buf)
        .join("release/corral-sim");
    Ok(Build {
        label: label.into(),
        root: root.into(),
        netns,
        sim,
    })
}

/// A work tree of `rev` under `root/target/compare`, with its own target
/// directory (its binaries must not replace this build's).
fn checkout(root: &Path, rev: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let git = |dir: &Path, args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .context("cannot run git")?;
        anyhow::ensure!(
            out.status.success(),
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(
        root,
        &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
    )
    .with_context(|| format!("{rev} is not a revision of this repository"))?;
    let dir = root.join("target/compare").join(&commit);
    if !dir.join(".git").exists() {
        let _ = std::fs::remove_dir_all(&dir);
        git(
            root,
            &[
                "worktree",
                "add",
                "--detach",
                &dir.to_string_lossy(),
                &commit,
            ],
        )?;
    }
    let target = root.join("target/compare-build");
    Ok((dir, target))
}

/// One round of `build`'s figures: the mesh benchmarks, then (a full run)
/// the simulator at 10,000 devices. A figure that fails is left out.
fn round(build: &Build, plan: &Plan<'_>) -> (Vec<(String, f64)>, String) {
    let mut found = Vec::new();
    let mut cmd = Command::new(&build.netns);
    cmd.current_dir(build.root.join("node")).args([
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    if plan.only.is_empty() {
        cmd.arg("bench::");
    } else {
        cmd.args(plan.only);
    }
    cmd.env("CORRAL_REQUIRE_CROSS", "0")
        .env("CORRAL_REQUIRE_NETNS", "1")
        .env("CORRAL_BENCH_QUICK", if plan.quick { "1" } else { "0" });
    if let Some(dir) = plan.big_module {
        cmd.env("CORRAL_BENCH_BIG_MODULE", dir);
    }
    let mut trouble = match cmd.output() {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            for line in stdout.lines() {
                if line.contains("makespan ") {
                    eprintln!("  {}: {line}", build.label);
                }
                let Some(at) = line.find("BENCH ") else {
                    continue;
                };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line[at + 6..])
                    && let (Some(name), Some(value)) = (v["name"].as_str(), v["value"].as_f64())
                {
                    found.push((name.to_string(), value));
                }
            }
            tail(&String::from_utf8_lossy(&out.stderr), 15)
        }
        Err(e) => format!("cannot run {}: {e}", build.netns.display()),
    };
    if !plan.quick && plan.only.is_empty() {
        match sim_wall(build) {
            Ok(secs) => found.push((SIM_FIGURE.into(), secs)),
            Err(e) => trouble.push_str(&format!("\n{e:#}")),
        }
    }
    (found, trouble)
}

/// The simulator's wall time on the 10,000-device scenario.
fn sim_wall(build: &Build) -> anyhow::Result<f64> {
    let started = Instant::now();
    let out = Command::new(&build.sim)
        .current_dir(&build.root)
        .args(["run", "simulations/scenarios/scale-10k.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("cannot run {}", build.sim.display()))?;
    let took = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        out.status.success(),
        "{}'s simulator failed: {}",
        build.label,
        tail(&String::from_utf8_lossy(&out.stderr), 5)
    );
    Ok(took)
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The median of `values` (not empty) and their range.
pub(crate) fn median_and_spread(values: &mut [f64]) -> (f64, [f64; 2]) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, [values[0], values[n - 1]])
}

/// Every figure of [`FIGURES`], measured over `plan.rounds` rounds.
pub(crate) fn figures(root: &Path, plan: &Plan<'_>) -> Vec<Figure> {
    match measure(root, plan) {
        Ok(figures) => figures,
        Err(e) => FIGURES
            .iter()
            .map(|(name, unit, goal)| Figure::missing(name, unit, goal, format!("{e:#}")))
            .collect(),
    }
}

fn measure(root: &Path, plan: &Plan<'_>) -> anyhow::Result<Vec<Figure>> {
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    anyhow::ensure!(root_user, "needs root for network namespaces");
    let ours = build(root, None, "this build")?;
    let theirs = match plan.compare {
        Some(rev) => {
            let (dir, target) = checkout(root, rev)?;
            Some(build(&dir, Some(&target), rev)?)
        }
        None => None,
    };
    let mut values: [BTreeMap<String, Vec<f64>>; 2] = Default::default();
    let mut trouble = String::new();
    for r in 0..plan.rounds {
        // Alternate which goes first, so neither always meets a machine
        // the other has just warmed (or heated).
        let mut order: Vec<(usize, &Build)> = std::iter::once((0, &ours))
            .chain(theirs.iter().map(|b| (1, b)))
            .collect();
        if r % 2 == 1 {
            order.reverse();
        }
        for (side, build) in order {
            eprintln!(
                "corral-bench: round {}/{} of {}…",
                r + 1,
                plan.rounds,
                build.label
            );
            let (found, why) = round(build, plan);
            for (name, value) in found {
                values[side].entry(name).or_default().push(value);
            }
            if side == 0 {
                trouble = why;
            }
        }
    }
    let [mut ours_values, mut theirs_values] = values;
    Ok(FIGURES
        .iter()
        .map(|(name, unit, goal)| {
            let Some(mine) = ours_values.get_mut(*name).filter(|v| !v.is_empty()) else {
                let why = if *name == SIM_FIGURE && plan.quick {
                    "not measured with --quick (about a minute a run)".to_string()
                } else {
                    format!("the benchmark did not report it:\n{trouble}")
                };
                return Figure::missing(name, unit, goal, why);
            };
            let rounds = mine.len();
            let (value, spread) = median_and_spread(mine);
            let mut f = Figure::new(name, unit, goal);
            f.value = Some(value);
            f.spread = Some(spread);
            f.rounds = rounds;
            if let (Some(rev), Some(other)) = (
                plan.compare,
                theirs_values.get_mut(*name).filter(|v| !v.is_empty()),
            ) {
                let (theirs, _) = median_and_spread(other);
                f.peer = Some(rev.to_string());
                f.peer_value = Some(theirs);
                f.ratio = Some(value / theirs);
            }
            f
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::{checkout, median_and_spread};

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn a_revision_is_checked_out_once_beside_this_tree_and_a_bad_one_is_named() {
        let repo = tempfile::tempdir().expect("a directory");
        let root = repo.path();
        git(root, &["init", "-q"]);
        std::fs::write(root.join("f"), "one").expect("write");
        git(root, &["add", "f"]);
        git(root, &["commit", "-qm", "one"]);
        let first = git(root, &["rev-parse", "HEAD"]);
        std::fs::write(root.join("f"), "two").expect("write");
        git(root, &["commit", "-qam", "two"]);

        let (dir, target) = checkout(root, "HEAD~1").expect("checked out");
        assert_eq!(dir, root.join("target/compare").join(&first));
        assert_eq!(std::fs::read_to_string(dir.join("f")).expect("read"), "one");
        assert_ne!(target, root.join("target"), "its own target directory");
        // Again: the same tree, reused.
        let (again, _) = checkout(root, &first).expect("checked out again");
        assert_eq!(again, dir);

        let err = checkout(root, "no-such-rev").expect_err("refused");
        assert!(
            format!("{err:#}").contains("no-such-rev is not a revision"),
            "{err:#}"
        );
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(median_and_spread(&mut [3.0, 1.0, 2.0]), (2.0, [1.0, 3.0]));
        assert_eq!(
            median_and_spread(&mut [4.0, 1.0, 2.0, 10.0]),
            (3.0, [1.0, 10.0])
        );
        assert_eq!(median_and_spread(&mut [5.0]), (5.0, [5.0, 5.0]));
    }
}
