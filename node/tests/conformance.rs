//! WASI preview 1 conformance: every guest of examples/conformance (Rust) and
//! examples/c/conformance (C) runs on both engines through
//! `corral_node::runtime`, each run in a fresh temporary tree: `/sandbox`
//! read-write, `/ro` read-only, `/sandbox2` read-write. A run's transcript
//! is its stdout, how it ended and the tree afterwards; it must equal the
//! checked-in expected transcript (recorded from the JIT, i.e.
//! wasmtime-wasi's own preview 1) on the JIT, and on the interpreter too
//! except for the cases in [`KNOWN_GAPS`]. Where a wasmtime CLI is on PATH,
//! its transcript must equal the expected one as well. The test prints the
//! tally per area and engine (a case is a line of the transcript: a call's
//! result, the ending, an entry of the tree).
//!
//! `CORRAL_BLESS=1 cargo test -p corral-node --test conformance` rewrites the
//! expected transcripts from the JIT.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use corral_node::runtime::{Limits, Preopen, RunSpec, Runtime, WasmModule};
use corral_protocol::receipt::{EngineKind, TaskStatus};

/// One run of a guest: an id (the expected transcript's name), its area, the
/// module under examples/wasm/conformance, its arguments after argv[0].
struct Guest {
    id: &'static str,
    area: &'static str,
    module: &'static str,
    args: &'static [&'static str],
}

const GUESTS: &[Guest] = &[
    Guest {
        id: "paths",
        area: "paths",
        module: "conf-paths",
        args: &[],
    },
    Guest {
        id: "files",
        area: "files",
        module: "conf-files",
        args: &[],
    },
    Guest {
        id: "readdir",
        area: "readdir",
        module: "conf-readdir",
        args: &[],
    },
    Guest {
        id: "readonly",
        area: "read-only",
        module: "conf-readonly",
        args: &[],
    },
    Guest {
        id: "edges",
        area: "edges",
        module: "conf-edges",
        args: &[],
    },
    Guest {
        id: "libc",
        area: "libc (C)",
        module: "conf-libc",
        args: &[],
    },
    Guest {
        id: "stdio",
        area: "stdio+sock",
        module: "conf-stdio",
        args: &[],
    },
    Guest {
        id: "proc",
        area: "proc",
        module: "conf-proc",
        args: &["a", "b c", ""],
    },
    Guest {
        id: "exit-0",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "0"],
    },
    Guest {
        id: "exit-1",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "1"],
    },
    Guest {
        id: "exit-42",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "42"],
    },
    Guest {
        id: "exit-125",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "125"],
    },
    Guest {
        id: "exit-126",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "126"],
    },
    Guest {
        id: "exit-255",
        area: "exit",
        module: "conf-proc",
        args: &["exit", "255"],
    },
    Guest {
        id: "return-42",
        area: "exit",
        module: "conf-proc",
        args: &["return", "42"],
    },
];

/// The environment every guest gets (exactly this).
const ENV: &[(&str, &str)] = &[("A", "1"), ("EMPTY", ""), ("SPACED", "x y")];

/// Where the interpreter (wasmi_wasi, i.e. wasi-common) still differs from
/// wasmtime-wasi's preview 1: (guest id, case, why it cannot be closed).
/// A case listed here that passes fails the test, so the list only shrinks.
const KNOWN_GAPS: &[(&str, &str, &str)] = &[];

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The case a transcript line belongs to: the text before `: `, numbered
/// when it repeats (`close#2`).
fn cases(transcript: &str) -> BTreeMap<String, String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for line in transcript.lines() {
        let case = line
            .split_once(": ")
            .map_or(line, |(case, _)| case)
            .to_owned();
        let n = seen.entry(case.clone()).or_default();
        *n += 1;
        let key = if *n == 1 { case } else { format!("{case}#{n}") };
        out.insert(key, line.to_owned());
    }
    out
}

/// The tree under `root`, one line per entry, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.expect("walkable");
        let rel = entry
            .path()
            .strip_prefix(root)
            .expect("inside")
            .display()
            .to_string();
        let kind = entry.file_type();
        let what = if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).expect("a link");
            format!("-> {}", target.display())
        } else if kind.is_dir() {
            "dir".to_owned()
        } else {
            let bytes = std::fs::read(entry.path()).expect("readable");
            format!("file {:?}", String::from_utf8_lossy(&bytes))
        };
        lines.push(format!("tree {rel}: {what}"));
    }
    lines
}

fn transcript(stdout: &[u8], status: &str, root: &Path) -> String {
    let mut text = String::from_utf8_lossy(stdout).into_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("status: {status}\n"));
    for line in tree(root) {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

fn status_text(status: &TaskStatus) -> String {
    match status {
        TaskStatus::Exited { code } => format!("exit {code}"),
        // Trap messages differ between engines; that it trapped is the fact.
        TaskStatus::Trapped { .. } => "trapped".to_owned(),
        other => format!("{other:?}"),
    }
}

/// A fresh tree for one run: `sandbox/` (preopened read-write at
/// `/sandbox`), `ro/` (read-only at `/ro`, holding `file` and `dir/inner`)
/// and `sandbox2/` (read-write at `/sandbox2`), in that order.
fn fixture() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(root.path().join("sandbox")).expect("mkdir");
    std::fs::create_dir(root.path().join("sandbox2")).expect("mkdir");
    std::fs::create_dir_all(root.path().join("ro/dir")).expect("mkdir");
    std::fs::write(root.path().join("ro/file"), "data").expect("write");
    std::fs::write(root.path().join("ro/dir/inner"), "in").expect("write");
    root
}

fn run_engine(runtime: &Runtime, engine: EngineKind, guest: &Guest) -> String {
    let path = examples().join(format!("wasm/conformance/{}.wasm", guest.module));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let module = WasmModule::new(bytes).expect("a module");
    let compiled = runtime.compile(engine, &module).expect("compiles");
    let root = fixture();
    let mut args = vec![guest.module.to_owned()];
    args.extend(guest.args.iter().map(|a| (*a).to_owned()));
    let spec = RunSpec {
        args,
        env: ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        preopens: vec![
            Preopen {
                host: root.path().join("sandbox"),
                guest: "/sandbox".into(),
                writable: true,
            },
            Preopen {
                host: root.path().join("ro"),
                guest: "/ro".into(),
                writable: false,
            },
            Preopen {
                host: root.path().join("sandbox2"),
                guest: "/sandbox2".into(),
                writable: true,
            },
        ],
        limits: Limits {
            timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        ..RunSpec::default()
    };
    let outcome = runtime.run(&compiled, &spec).expect("runs");
    transcript(&outcome.stdout, &status_text(&outcome.status), root.path())
}

/// The same run under the wasmtime CLI, if one is installed. Not for the
/// read-only guest: the CLI's `--dir` has no read-only form.
fn run_wasmtime_cli(guest: &Guest) -> Option<String> {
    if guest.id == "readonly" {
        return None;
    }
    let version = Command::new("wasmtime").arg("--version").output().ok()?;
    if !version.status.success() {
        return None;
    }
    let path = examples().join(format!("wasm/conformance/{}.wasm", guest.module));
    let root = fixture();
    let mut command = Command::new("wasmtime");
    command
        .arg("run")
        .arg("--dir")
        .arg(format!(
            "{}::/sandbox",
            root.path().join("sandbox").display()
        ))
        .arg("--dir")
        .arg(format!("{}::/ro", root.path().join("ro").display()))
        .arg("--dir")
        .arg(format!(
            "{}::/sandbox2",
            root.path().join("sandbox2").display()
        ));
    for (k, v) in ENV {
        command.arg("--env").arg(format!("{k}={v}"));
    }
    command
        .arg("--argv0")
        .arg(guest.module)
        .arg(&path)
        .args(guest.args);
    let output = command.output().expect("wasmtime runs");
    let status = match output.status.code() {
        Some(code) if code < 126 => format!("exit {code}"),
        _ => "trapped".to_owned(),
    };
    Some(transcript(&output.stdout, &status, root.path()))
}

/// The cases of `got` that differ from `expected` (missing ones included).
fn failures(expected: &str, got: &str) -> Vec<String> {
    let want = cases(expected);
    let have = cases(got);
    let mut failed: Vec<String> = want
        .iter()
        .filter(|(case, line)| have.get(*case) != Some(line))
        .map(|(case, _)| case.clone())
        .collect();
    failed.extend(
        have.keys()
            .filter(|case| !want.contains_key(*case))
            .cloned(),
    );
    failed
}

#[test]
fn preview1_conformance_on_both_engines() {
    let runtime = Runtime::new(None).expect("runtime");
    let engines = runtime.engines();
    let bless = std::env::var_os("CORRAL_BLESS").is_some();
    let mut tally: BTreeMap<(&str, String), (usize, usize)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut gaps_seen = Vec::new();

    for guest in GUESTS {
        let expected_path = examples().join(format!("conformance/expected/{}.txt", guest.id));
        if bless && engines.contains(&EngineKind::Jit) {
            let got = run_engine(&runtime, EngineKind::Jit, guest);
            std::fs::create_dir_all(expected_path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&expected_path, got).expect("write expected");
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (CORRAL_BLESS=1 records it)",
                expected_path.display()
            )
        });
        let total = cases(&expected).len();
        for &engine in &engines {
            let got = run_engine(&runtime, engine, guest);
            let failed = failures(&expected, &got);
            let entry = tally
                .entry((guest.area, format!("{engine:?}")))
                .or_default();
            entry.0 += total
                - failed
                    .iter()
                    .filter(|c| cases(&expected).contains_key(*c))
                    .count();
            entry.1 += total;
            for case in failed {
                let known = KNOWN_GAPS
                    .iter()
                    .any(|(id, c, _)| *id == guest.id && *c == case);
                if engine == EngineKind::Interp && known {
                    gaps_seen.push((guest.id, case));
                    continue;
                }
                let want = cases(&expected).get(&case).cloned().unwrap_or_default();
                let have = cases(&got).get(&case).cloned().unwrap_or_default();
                problems.push(format!(
                    "{engine:?} {}: case `{case}`: expected `{want}`, got `{have}`",
                    guest.id
                ));
            }
        }
        if let Some(got) = run_wasmtime_cli(guest) {
            for case in failures(&expected, &got) {
                problems.push(format!("wasmtime CLI {}: case `{case}` differs", guest.id));
            }
        }
    }

    println!("conformance tally (cases passed / cases), per area and engine:");
    for ((area, engine), (passed, total)) in &tally {
        println!("  {area:<12} {engine}: {passed}/{total}");
    }
    for engine in &engines {
        let (p, t) = tally
            .iter()
            .filter(|((_, e), _)| *e == format!("{engine:?}"))
            .fold((0, 0), |(p, t), (_, (a, b))| (p + a, t + b));
        println!("  {:<12} {engine:?}: {p}/{t}", "ALL");
    }
    println!("known interpreter gaps: {}", KNOWN_GAPS.len());
    if engines.contains(&EngineKind::Interp) {
        for (id, case, _) in KNOWN_GAPS {
            if !gaps_seen.iter().any(|(i, c)| i == id && c == case) {
                problems.push(format!(
                    "known gap {id} `{case}` now passes on the interpreter: remove it from KNOWN_GAPS"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
