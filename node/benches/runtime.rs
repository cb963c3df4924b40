//! Starting a task: instantiating a module already compiled (the JIT's
//! code from the on-disk cache, wasmi's from memory) in a fresh WASI
//! sandbox and running a trivial `_start`.

#![allow(missing_docs)]

use std::hint::black_box;

use corral_node::runtime::{RunSpec, Runtime, WasmModule, build_engines};
use criterion::{Criterion, criterion_group, criterion_main};

fn runtime(c: &mut Criterion) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm/testkit.wasm");
    let bytes = std::fs::read(&path).expect("testkit.wasm");
    let cache = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Some(cache.path().to_path_buf())).expect("runtime");
    let module = WasmModule::new(bytes).expect("module");
    let spec = RunSpec {
        args: vec!["testkit.wasm".into(), "args".into(), "x".into()],
        ..RunSpec::default()
    };
    for engine in build_engines() {
        // First compile fills the cache; the bench loads from it.
        runtime.compile(engine, &module).expect("compiles");
        c.bench_function(
            &format!("look up a compiled module (cache hit, {})", engine.name()),
            |b| {
                b.iter(|| {
                    runtime
                        .compile(engine, black_box(&module))
                        .expect("compiles")
                })
            },
        );
        let compiled = runtime.compile(engine, &module).expect("compiles");
        c.bench_function(
            &format!("instantiate and run a trivial task ({})", engine.name()),
            |b| b.iter(|| runtime.run(black_box(&compiled), &spec).expect("runs")),
        );
    }
}

criterion_group!(benches, runtime);
criterion_main!(benches);
