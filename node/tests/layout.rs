//! The house's layout rules (STYLE.md, issue 16), checked on the source
//! tree: no source file over about 500 lines, no file of the node importing
//! (by `use`) one that imports it back, directly or round a cycle, and no
//! lower room of the node importing a higher one.

#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// "About 500": a file may run a little over while it has one role.
const MAX_LINES: usize = 520;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the node crate sits in the workspace")
        .to_path_buf()
}

fn rust_files(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn no_source_file_is_over_about_500_lines() {
    let root = workspace();
    let mut long = Vec::new();
    for dir in [
        "protocol/src",
        "scheduler/src",
        "node/src",
        "simulations/src",
        "bench/src",
    ] {
        for file in rust_files(&root.join(dir)) {
            let lines = std::fs::read_to_string(&file)
                .expect("read")
                .lines()
                .count();
            if lines > MAX_LINES {
                long.push(format!(
                    "{} ({lines} lines)",
                    file.strip_prefix(&root).unwrap_or(&file).display()
                ));
            }
        }
    }
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}

/// The node's module path of a file: `src/daemon/mod.rs` -> `daemon`,
/// `src/daemon/offers.rs` -> `daemon::offers`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts.join("::")
}

/// The modules a file's `use` and `crate::…` paths name, resolved to the
/// longest module that is a file of the tree.
fn imports(text: &str, me: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // Only the code before the unit tests counts.
    let code = text.split("#[cfg(test)]\nmod ").next().unwrap_or(text);
    let mut paths: Vec<Vec<String>> = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        paths.push(path_segments(rest));
    }
    for (i, _) in code.match_indices("super::") {
        // `super::` at the start of a path (not `super::super` handled by
        // repetition below).
        if code[..i].ends_with("super::") {
            continue;
        }
        let mut base: Vec<String> = me.split("::").map(String::from).collect();
        let mut rest = &code[i..];
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
        let mut full = base;
        full.extend(path_segments(rest));
        paths.push(full);
    }
    for path in paths {
        for n in (1..=path.len()).rev() {
            let candidate = path[..n].join("::");
            if modules.contains(&candidate) {
                if candidate != me && !me.starts_with(&format!("{candidate}::")) {
                    found.insert(candidate);
                }
                break;
            }
        }
    }
    found
}

/// `a::b::{c, d}` -> [a, b, c] (the first item of a brace is enough to name
/// the module the path goes into).
fn path_segments(rest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for ch in rest.chars() {
        if ch.is_alphanumeric() || ch == '_' {
            word.push(ch);
        } else if ch == ':' {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        } else if ch == '{' {
            continue;
        } else {
            break;
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

fn node_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("node/src");
    let files = rust_files(&src);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    files
        .iter()
        .map(|f| {
            let me = module_of(&src, f);
            let text = std::fs::read_to_string(f).expect("read");
            let deps = imports(&text, &me, &modules);
            (me, deps)
        })
        .collect()
}

#[test]
fn no_file_of_the_node_imports_one_that_imports_it_back() {
    let graph = node_graph();
    // Depth-first search for a cycle, reporting it.
    fn visit(
        at: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == at) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(at.to_string());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        stack.push(at.to_string());
        for next in graph.get(at).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(start, &graph, &mut stack, &mut done) {
            panic!("files import each other: {}", cycle.join(" -> "));
        }
    }
}

/// The node's rooms from low to high: a room may import its own and lower
/// ones only.
fn rank(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    match top {
        "clock" | "sync" | "config" | "identity" | "store" | "blobs" | "usage" | "units" => 0,
        "net" | "capacity" | "runtime" | "calibration" | "control" | "job" | "modules" => 1,
        "dispatch" | "http" => 2,
        "daemon" => 3,
        // The command line and what runs it: the top.
        _ => 4,
    }
}

#[test]
fn no_lower_room_of_the_node_imports_a_higher_one() {
    let graph = node_graph();
    let mut upward = Vec::new();
    for (from, deps) in &graph {
        for to in deps {
            if rank(to) > rank(from) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "lower rooms import higher ones: {upward:#?}"
    );
}

#[test]
fn the_import_scanner_sees_crate_and_super_paths() {
    let modules: BTreeSet<String> = [
        "daemon",
        "daemon::node",
        "clock",
        "control::wire",
        "control",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let text =
        "use super::node::Node;\nuse crate::clock::now_ms;\nuse crate::control::{wire::X, Y};\n";
    let found = imports(text, "daemon::offers", &modules);
    assert_eq!(
        found,
        ["daemon::node", "clock", "control::wire"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
