//! Single flight and tiered start, on real modules and both engines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use corral_protocol::receipt::{EngineKind, TaskStatus};

use super::tests::{spec, wasm};
use super::*;

/// A module of `functions` functions, each a little arithmetic: enough
/// code that Cranelift takes a noticeable time over it.
fn many_functions(functions: u32) -> WasmModule {
    let mut wat = String::from("(module\n");
    for i in 0..functions {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i64) (result i64) \
             local.get 0 i64.const {i} i64.mul i64.const 7 i64.add \
             local.get 0 i64.const 3 i64.shr_u i64.xor i64.const 11 i64.rotl)\n"
        ));
    }
    wat.push(')');
    WasmModule::new(wat::parse_str(&wat).expect("valid text")).expect("a valid module")
}

#[test]
fn a_module_is_compiled_once_however_many_slots_ask_at_once() {
    let rt = Arc::new(Runtime::new(None).expect("engines start"));
    let module = many_functions(1000);
    let askers = 4;
    let start = Arc::new(Barrier::new(askers));
    let threads: Vec<_> = (0..askers)
        .map(|_| {
            let (rt, module, start) = (Arc::clone(&rt), module.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                rt.compile(EngineKind::Jit, &module).map(|c| c.engine())
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().expect("joins").ok(), Some(EngineKind::Jit));
    }
    assert_eq!(rt.jit_compiles(), 1, "four slots at once, one compile");
}

/// Waits for the background compile to end.
fn until_compiled(rt: &Runtime) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while rt.compiling().is_some() {
        assert!(
            Instant::now() < deadline,
            "the background compile never ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_big_module_starts_on_the_interpreter_and_moves_to_the_jit_once_compiled() {
    // Every module counts as big; the host has memory to spare.
    let rt = Arc::new(
        Runtime::new(None)
            .expect("engines start")
            .with_tiers(0, || Some(u64::MAX)),
    );
    let module = wasm("testkit");
    let loads = AtomicUsize::new(0);
    let load = || {
        loads.fetch_add(1, Ordering::Relaxed);
        Ok::<_, RuntimeError>(module.clone())
    };
    let first = rt.compile_auto(module.hash, load).expect("starts");
    assert_eq!(
        first.engine(),
        EngineKind::Interp,
        "no waiting for Cranelift"
    );
    until_compiled(&rt);
    let later = rt.compile_auto(module.hash, load).expect("starts");
    assert_eq!(later.engine(), EngineKind::Jit, "compiled meanwhile");
    assert_eq!(rt.jit_compiles(), 1);
    assert_eq!(loads.load(Ordering::Relaxed), 1, "the tier is remembered");
    // The same bytes out of either tier.
    let spec = spec(&["args", "a", "b c"]);
    let outputs: Vec<_> = [first, later]
        .iter()
        .map(|compiled| {
            let outcome = rt.run(compiled, &spec).expect("runs");
            assert_eq!(outcome.status, TaskStatus::Exited { code: 0 });
            (outcome.stdout, outcome.stderr)
        })
        .collect();
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn a_host_without_the_memory_for_the_compile_runs_the_module_on_the_interpreter() {
    let rt = Arc::new(
        Runtime::new(None)
            .expect("engines start")
            .with_tiers(0, || Some(32 * 1024 * 1024)),
    );
    let module = wasm("testkit");
    assert!(compile_peak_bytes(module.bytes.len()) > 32 * 1024 * 1024);
    for _ in 0..3 {
        let compiled = rt
            .compile_auto(module.hash, || Ok::<_, RuntimeError>(module.clone()))
            .expect("starts");
        assert_eq!(compiled.engine(), EngineKind::Interp);
        assert_eq!(rt.compiling(), None, "no compile started");
    }
    assert_eq!(rt.jit_compiles(), 0);
}

#[test]
fn a_small_module_or_one_compiled_before_runs_on_the_jit_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = wasm("testkit");
    // Compiled before, by another process: on disk.
    let before = Runtime::new(Some(dir.path().to_path_buf())).expect("engines start");
    before.compile(EngineKind::Jit, &module).expect("compiles");
    let rt = Arc::new(
        Runtime::new(Some(dir.path().to_path_buf()))
            .expect("engines start")
            .with_tiers(0, || Some(u64::MAX)),
    );
    let compiled = rt
        .compile_auto(module.hash, || Ok::<_, RuntimeError>(module.clone()))
        .expect("starts");
    assert_eq!(
        compiled.engine(),
        EngineKind::Jit,
        "loaded from the disk cache"
    );
    assert_eq!(rt.jit_compiles(), 0);
    // A module below the size bound compiles before its first task.
    let rt = Arc::new(Runtime::new(None).expect("engines start"));
    let compiled = rt
        .compile_auto(module.hash, || Ok::<_, RuntimeError>(module.clone()))
        .expect("starts");
    assert_eq!(compiled.engine(), EngineKind::Jit);
}

/// A module whose `_start` calls one function with `ops` instructions
/// (three bytes each), then exits with `code`.
fn one_big_function(ops: usize, code: i32) -> WasmModule {
    let mut wat = String::from(
        "(module (import \"wasi_snapshot_preview1\" \"proc_exit\" (func $exit (param i32)))\n\
         (memory (export \"memory\") 1)\n(func $big\n",
    );
    for _ in 0..ops {
        wat.push_str("i32.const 1 drop\n");
    }
    wat.push_str(&format!(
        ")\n(func (export \"_start\") call $big i32.const {code} call $exit))"
    ));
    WasmModule::new(wat::parse_str(&wat).expect("valid text")).expect("a valid module")
}

/// The interpreter translates a function when it is first called, charging
/// the translation to the run's fuel: a function bigger than a fuel slice
/// can translate must still run (the slice is refilled to what it needs).
#[test]
fn a_function_bigger_than_a_fuel_slice_translates_and_runs_on_the_interpreter() {
    let rt = Runtime::new(None).expect("engines start");
    let module = one_big_function(200_000, 7);
    let compiled = rt
        .compile(EngineKind::Interp, &module)
        .expect("it compiles");
    for _ in 0..2 {
        let out = rt.run(&compiled, &spec(&[])).expect("it runs");
        assert_eq!(out.status, TaskStatus::Exited { code: 7 }, "{out:?}");
    }
}
