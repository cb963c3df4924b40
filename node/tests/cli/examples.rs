//! Every bundled example gives byte-identical stdout and output files on the
//! JIT and on the interpreter: the property `--verify` relies on.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Sandbox, assert_code, examples_dir, job_json, module};

/// Every file under `root` except job.json (which holds a fresh job id and
/// timings), by relative path.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n != "job.json") {
                let rel = path
                    .strip_prefix(root)
                    .expect("inside")
                    .display()
                    .to_string();
                files.insert(rel, std::fs::read(&path).expect("readable"));
            }
        }
    }
    files
}

/// Runs the same job on both engines and returns the two OUT trees.
fn on_both_engines(sb: &Sandbox, name: &str, args: &[&str]) -> BTreeMap<String, Vec<u8>> {
    let mut trees = Vec::new();
    for engine in ["jit", "interp"] {
        let out = format!("{name}-{engine}");
        let mut full = vec!["run", "--local", "--engine", engine, "--out", &out];
        full.extend_from_slice(args);
        let output = sb.corral(&full);
        assert_code(&output, 0);
        let job = job_json(&sb.path(&out));
        assert!(
            job["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .all(|t| t["engine"] == engine),
            "{name} should have run on {engine}"
        );
        trees.push(tree(&sb.path(&out)));
    }
    let interp = trees.pop().expect("two runs");
    let jit = trees.pop().expect("two runs");
    assert_eq!(
        jit.keys().collect::<Vec<_>>(),
        interp.keys().collect::<Vec<_>>(),
        "{name}: the engines wrote different files"
    );
    for (path, bytes) in &jit {
        assert!(
            interp[path] == *bytes,
            "{name}: {path} differs between jit and interp"
        );
    }
    jit
}

#[test]
fn primes_agree_and_are_right() {
    let sb = Sandbox::new();
    let primes = module("primes");
    let files = on_both_engines(
        &sb,
        "primes",
        &[&primes, "--tasks", "4", "--", "{task}", "4", "1000000"],
    );
    let total: u64 = (0..4)
        .map(|i| {
            let count = &files[&format!("{i}/files/output/count.txt")];
            String::from_utf8_lossy(count)
                .trim()
                .parse::<u64>()
                .expect("a count")
        })
        .sum();
    assert_eq!(total, 78_498, "π(10^6)");
}

#[test]
fn mandelbrot_tiles_and_stitch_agree() {
    let sb = Sandbox::new();
    let mandel = module("mandelbrot");
    let files = on_both_engines(
        &sb,
        "tiles",
        &[
            &mandel, "--tasks", "3", "--", "tile", "{task}", "3", "96", "64", "200",
        ],
    );
    assert!(
        files.contains_key("2/files/output/tile-2.ppm"),
        "{:?}",
        files.keys()
    );
    let tiles = sb.path("tiles-jit").display().to_string();
    let dir = format!("{tiles}::/data");
    let files = on_both_engines(
        &sb,
        "stitch",
        &[
            &mandel,
            "--dir",
            &dir,
            "--",
            "stitch",
            "/data",
            "3",
            "/output/mandelbrot.png",
        ],
    );
    let png = &files["0/files/output/mandelbrot.png"];
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}

#[test]
fn wordfreq_agrees_and_merges() {
    let sb = Sandbox::new();
    let words = module("wordfreq");
    let inputs = examples_dir().join("wordfreq/inputs").display().to_string();
    on_both_engines(
        &sb,
        "words",
        &[&words, "--inputs", &inputs, "--", "{input}", "10"],
    );
    let counted = sb.path("words-jit").display().to_string();
    let dir = format!("{counted}::/data");
    let files = on_both_engines(
        &sb,
        "merge",
        &[&words, "--dir", &dir, "--", "merge", "/data", "10"],
    );
    assert!(!files["0/stdout"].is_empty());
}

#[test]
fn the_c_example_agrees() {
    let sb = Sandbox::new();
    let collatz = module("collatz");
    let files = on_both_engines(
        &sb,
        "collatz",
        &[&collatz, "--tasks", "2", "--", "{task}", "2", "100000"],
    );
    // The longest chain below 100,000 starts at 77,031 (350 steps), in the second half.
    assert!(
        String::from_utf8_lossy(&files["1/stdout"]).contains("77031"),
        "{}",
        String::from_utf8_lossy(&files["1/stdout"])
    );
}
