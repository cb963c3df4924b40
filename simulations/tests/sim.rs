//! corral-sim as a user runs it: scenario files in, tables, JSON, CSV and
//! SVG out; the same seed gives the same bytes; nothing is ever lost.

#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(format!("{name}.toml"))
}

/// A path as an argument.
fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral-sim"))
        .args(args)
        .output()
        .expect("corral-sim runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(name: &str, seed: &str, csv: &Path) -> serde_json::Value {
    let path = scenario(name);
    let out = sim(&[
        "run",
        arg(&path),
        "--seed",
        seed,
        "--json",
        "--csv",
        arg(csv),
    ]);
    serde_json::from_str(&ok(&out)).expect("json")
}

/// The document without its wall-clock figures.
fn simulated(mut v: serde_json::Value) -> serde_json::Value {
    v.as_object_mut().expect("object").remove("wall_s");
    for p in v["policies"].as_array_mut().expect("policies") {
        p.as_object_mut().expect("row").remove("decisions_per_s");
    }
    v
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        dir.path().join("a.csv"),
        dir.path().join("b.csv"),
        dir.path().join("c.csv"),
    );
    let first = json("churn", "7", &a);
    let second = json("churn", "7", &b);
    let other = json("churn", "8", &c);
    let read = |p: &Path| std::fs::read(p).expect("csv");
    assert_eq!(
        read(&a),
        read(&b),
        "CSV differs between two runs of one seed"
    );
    assert_eq!(simulated(first.clone()), simulated(second));
    assert_ne!(read(&a), read(&c), "a different seed changed nothing");
    assert_ne!(simulated(first), simulated(other));
}

#[test]
fn every_policy_finishes_every_task_and_no_policy_beats_the_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["home", "bimodal", "heavy-tail", "churn"] {
        let v = json(name, "1", &dir.path().join(format!("{name}.csv")));
        let oracle = v["oracle_s"].as_f64().expect("oracle");
        let lpt = v["lpt_s"].as_f64().expect("lpt");
        assert!(oracle > 0.0 && lpt >= oracle * 0.999, "{name}: {v}");
        let names: Vec<&str> = v["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .map(|p| p["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            names,
            [
                "corral",
                "random",
                "round_robin",
                "least_loaded",
                "power_of_two"
            ]
        );
        for p in v["policies"].as_array().expect("policies") {
            assert_eq!(p["tasks_lost"], 0, "{name}: {p}");
            let ratio = p["makespan_over_oracle"].as_f64().expect("ratio");
            assert!(ratio >= 0.999, "{name}: faster than the lower bound: {p}");
            for key in ["mean_jct_s", "p99_jct_s", "gossip_bytes_per_device_s"] {
                assert!(p[key].as_f64().expect(key) > 0.0, "{name}: {key}: {p}");
            }
        }
        // corral's late binding against push placement on the same world.
        let ratio = |n: &str| {
            v["policies"]
                .as_array()
                .expect("policies")
                .iter()
                .find(|p| p["name"] == n)
                .and_then(|p| p["makespan_over_oracle"].as_f64())
                .expect("ratio")
        };
        for baseline in ["random", "round_robin", "least_loaded", "power_of_two"] {
            assert!(
                ratio("corral") <= ratio(baseline),
                "{name}: corral {} lost to {baseline} {}",
                ratio("corral"),
                ratio(baseline)
            );
        }
    }
}

#[test]
fn the_table_and_the_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scenario("home");
    let table = ok(&sim(&["run", arg(&path), "--policy", "corral"]));
    assert!(table.contains("scenario home"), "{table}");
    assert!(
        table.contains("corral") && !table.contains("round_robin"),
        "{table}"
    );
    let csv = dir.path().join("home.csv");
    ok(&sim(&["run", arg(&path), "--csv", arg(&csv)]));
    let svg = dir.path().join("home.svg");
    ok(&sim(&["plot", arg(&csv), "--out", arg(&svg)]));
    let drawn = std::fs::read_to_string(&svg).expect("svg");
    assert!(drawn.starts_with("<svg"), "not an SVG");
    for name in ["corral", "least_loaded", "power_of_two", "home"] {
        assert!(drawn.contains(name), "the plot does not show {name}");
    }
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = std::fs::read_to_string(scenario("home")).expect("home");
    for (edit, needle) in [
        (base.replace("speed = 100", "speed = 0"), "classes[0].speed"),
        (base.replace("loss = 0.02", "loss = 1.5"), "gossip.loss"),
        (base.replace("tasks = 256", "tasks = 0"), "jobs[0].tasks"),
        (
            base.replace("count = 3\ntasks", "count = 3\nbogus = 1\ntasks"),
            "bogus",
        ),
        (
            base.replace("dist = \"uniform\"", "dist = \"zipf\""),
            "zipf",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, edit).expect("write");
        let out = sim(&["run", arg(&file)]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let out = sim(&["run", "no/such.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let out = sim(&["run", arg(&scenario("home")), "--policy", "fifo"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown policy"));
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "scenario,policy,makespan_over_oracle\nx,y,fast\n").expect("write");
    let out = sim(&["plot", arg(&csv), "--out", "/dev/null"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a number"));
}
