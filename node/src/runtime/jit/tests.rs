//! Tests of the JIT engine: the pool and its places, and the NaN setting
//! each module gets.

use std::sync::Arc;

use wasmtime::{Engine, Module, Store};

use super::JitEngine;
use super::nan::nan_bits_observable;
use super::pool::{Places, address_space_is_tight};
use crate::runtime::WasmModule;

/// `(func (export "f") (result i64) BODY)` in the binary format.
fn module(body: &[u8]) -> WasmModule {
    module_with_table(body, None)
}

/// The same with a `funcref` table of `table` elements.
fn module_with_table(body: &[u8], table: Option<u32>) -> WasmModule {
    let mut code = vec![0x00]; // no locals
    code.extend_from_slice(body);
    code.push(0x0b);
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(&[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7e]); // () -> i64
    bytes.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]);
    if let Some(min) = table {
        let mut section = vec![0x01, 0x70, 0x00]; // one funcref table, no maximum
        leb128(&mut section, min);
        bytes.push(0x04);
        bytes.push(u8::try_from(section.len()).expect("small section"));
        bytes.extend_from_slice(&section);
    }
    bytes.extend_from_slice(&[0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00]);
    let entry_len = u8::try_from(code.len()).expect("small body");
    bytes.extend_from_slice(&[0x0a, entry_len + 2, 0x01, entry_len]);
    bytes.extend_from_slice(&code);
    WasmModule::new(bytes).expect("a valid module")
}

/// 0.0 / 0.0, reinterpreted as bits: the NaN's bits are the result.
fn nan_bits() -> WasmModule {
    let mut body = vec![0x44];
    body.extend_from_slice(&0f64.to_le_bytes());
    body.push(0x44);
    body.extend_from_slice(&0f64.to_le_bytes());
    body.extend_from_slice(&[0xa3, 0xbd]); // f64.div, i64.reinterpret_f64
    module(&body)
}

fn call(jit: &JitEngine, wasm: &WasmModule) -> (i64, bool) {
    let compiled = jit.compile(wasm).expect("compiles");
    let mut store = Store::new(compiled.engine(), ());
    store.set_epoch_deadline(1000);
    let instance = wasmtime::Instance::new(&mut store, &compiled, &[]).expect("instantiates");
    let f = instance
        .get_typed_func::<(), i64>(&mut store, "f")
        .expect("exported");
    let canonical = jit
        .exact
        .flavours()
        .any(|f| Engine::same(compiled.engine(), &f.engine));
    (f.call(&mut store, ()).expect("runs"), canonical)
}

fn leb128(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn modules_run_from_the_pool_and_those_it_cannot_hold_on_demand() {
    let jit = JitEngine::new(None, None).expect("engine");
    let pooled = jit.plain.pooled.as_ref();
    assert!(
        pooled.is_some() || address_space_is_tight(None),
        "a host with room for the pool uses it"
    );
    let in_pool =
        |compiled: &Module| pooled.is_some_and(|p| Engine::same(compiled.engine(), &p.engine));
    let small = jit.compile(&module(&[0x42, 0x07])).expect("compiles");
    assert_eq!(
        in_pool(&small),
        pooled.is_some(),
        "a small module goes to the pool"
    );
    // More table elements than a pool's table holds (20,000).
    let big = module_with_table(&[0x42, 0x07], Some(30_000));
    let compiled = jit.compile(&big).expect("compiles on demand");
    assert!(
        !in_pool(&compiled),
        "the pool cannot hold a 30,000-element table"
    );
    // Remembered: the next compile goes on demand at once.
    assert!(jit.plain.refused.lock().expect("lock").contains(&big.hash) || pooled.is_none());
    for compiled in [&small, &compiled] {
        let mut store = Store::new(compiled.engine(), ());
        store.set_epoch_deadline(1000);
        let instance = wasmtime::Instance::new(&mut store, compiled, &[]).expect("instantiates");
        let f = instance
            .get_typed_func::<(), i64>(&mut store, "f")
            .expect("exported");
        assert_eq!(f.call(&mut store, ()).expect("runs"), 7);
    }
}

#[test]
fn a_run_waits_for_a_place_in_a_full_pool() {
    let places = Arc::new(Places::new(1));
    let held = places.take();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiting = {
        let places = places.clone();
        std::thread::spawn(move || {
            let _place = places.take();
            tx.send(()).expect("send");
        })
    };
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(200))
            .is_err(),
        "a second run must wait while the only place is taken"
    );
    drop(held);
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the place is handed on once given back");
    waiting.join().expect("joins");
    assert_eq!(*places.free.lock().expect("lock"), 1);
}

#[test]
fn float_code_is_compiled_with_canonical_nans_and_integer_code_without() {
    let jit = JitEngine::new(None, None).expect("engine");
    let (bits, canonical) = call(&jit, &nan_bits());
    assert!(
        canonical,
        "a module that reads a NaN's bits must get the careful engine"
    );
    // The canonical quiet NaN on every CPU (x86 alone would give the
    // negative "default NaN" 0xfff8…).
    assert_eq!(bits as u64, 0x7ff8_0000_0000_0000);
    let (seven, canonical) = call(&jit, &module(&[0x42, 0x07])); // i64.const 7
    assert_eq!(seven, 7);
    assert!(!canonical, "integer code does not need canonical NaNs");
    // sqrt(-1) truncated: a NaN, but only ever seen as 0.
    let (zero, canonical) = call(&jit, &module(&sqrt_of_minus_one()));
    assert_eq!(zero, 0);
    assert!(
        !canonical,
        "a NaN that is never looked into needs no canonicalising"
    );
}

/// i64.const -1, f64.convert_i64_s, f64.sqrt, i64.trunc_sat_f64_s.
fn sqrt_of_minus_one() -> Vec<u8> {
    vec![0x42, 0x7f, 0xb9, 0x9f, 0xfc, 0x06]
}

#[test]
fn only_instructions_that_see_nan_bits_need_canonical_nans() {
    assert!(nan_bits_observable(&nan_bits().bytes), "reinterpret");
    assert!(!nan_bits_observable(&module(&[0x42, 0x07]).bytes));
    assert!(!nan_bits_observable(&module(&sqrt_of_minus_one()).bytes));
    // copysign(1.0, sqrt(-1)) carries the NaN's sign into a number.
    let mut copysign = vec![0x44];
    copysign.extend_from_slice(&1f64.to_le_bytes());
    copysign.extend_from_slice(&[0x42, 0x7f, 0xb9, 0x9f, 0xa6, 0xbd]);
    assert!(nan_bits_observable(&module(&copysign).bytes), "copysign");
    // Two zero vectors added as four f32s or four i32s, lane 0 as i64.
    let simd = |add: &[u8]| {
        let mut body = Vec::new();
        for _ in 0..2 {
            body.extend_from_slice(&[0xfd, 0x0c]); // v128.const
            body.extend_from_slice(&[0; 16]);
        }
        body.extend_from_slice(add);
        body.extend_from_slice(&[0xfd, 0x1d, 0x00]); // i64x2.extract_lane 0
        module(&body)
    };
    assert!(
        !nan_bits_observable(&simd(&[0xfd, 0xae, 0x01]).bytes),
        "i32x4.add"
    );
    assert!(
        nan_bits_observable(&simd(&[0xfd, 0xe4, 0x01]).bytes),
        "f32x4.add"
    );
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm");
    let read = |name: &str| std::fs::read(examples.join(name)).expect("example module");
    // The prime sieve's one sqrt is truncated at once.
    assert!(!nan_bits_observable(&read("primes.wasm")));
    let mut cut = read("mandelbrot.wasm");
    cut.truncate(cut.len() / 2);
    assert!(nan_bits_observable(&cut), "a module that does not parse");
}
