//! The interpreter's fd numbers against wasmtime's: a guest opens, closes
//! and renumbers fds and writes each number (or errno) it gets; both
//! engines must write the sequence wasmtime's numbering gives.

use std::time::Duration;

use corral_protocol::receipt::{EngineKind, TaskStatus};

use crate::runtime::{Limits, Preopen, RunSpec, Runtime, WasmModule};

/// Each step writes one byte: an fd number, 100 + the errno of a failed
/// open, 200 + the errno of a close or renumber.
const GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber"
    (func $fd_renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "f")
  (data (i32.const 24) "missing")
  (data (i32.const 40) ".")
  (global $pos (mut i32) (i32.const 1024))
  (func $emit (param i32)
    (i32.store8 (global.get $pos) (local.get 0))
    (global.set $pos (i32.add (global.get $pos) (i32.const 1))))
  (func $open_at (param $dir i32) (param $name i32) (param $len i32)
    (local $e i32)
    (local.set $e (call $path_open (local.get $dir) (i32.const 0) (local.get $name)
      (local.get $len) (i32.const 0) (i64.const 2) (i64.const 2) (i32.const 0) (i32.const 8)))
    (if (local.get $e)
      (then (call $emit (i32.add (i32.const 100) (local.get $e))))
      (else (call $emit (i32.load (i32.const 8))))))
  (func $open (call $open_at (i32.const 3) (i32.const 16) (i32.const 1)))
  (func $close (param i32)
    (call $emit (i32.add (i32.const 200) (call $fd_close (local.get 0)))))
  (func $renumber (param i32 i32)
    (call $emit (i32.add (i32.const 200) (call $fd_renumber (local.get 0) (local.get 1)))))
  (func (export "_start")
    ;; The first host call is a path_open (wasi-libc would ask
    ;; fd_prestat_get first): corral's own path_open must give wasmtime-wasi
    ;; the store's allowance for reading guest strings itself.
    (call $open) (call $open) (call $open)
    (call $close (i32.const 4)) (call $close (i32.const 6))
    (call $open) (call $open) (call $open)
    (call $renumber (i32.const 7) (i32.const 5))
    (call $open)
    (call $renumber (i32.const 4) (i32.const 4))
    (call $close (i32.const 5)) (call $close (i32.const 5))
    (call $close (i32.const 0))
    (call $open_at (i32.const 3) (i32.const 24) (i32.const 7))
    (call $open)
    (call $open_at (i32.const 3) (i32.const 40) (i32.const 1))
    (call $open)
    (call $renumber (i32.const 99) (i32.const 4))
    (call $renumber (i32.const 4) (i32.const 99))
    (call $close (i32.const 3))
    (call $open_at (i32.const 0) (i32.const 16) (i32.const 1))
    (call $open_at (i32.const 0) (i32.const 16) (i32.const 1))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.sub (global.get $pos) (i32.const 1024)))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 12)))))
"#;

/// What wasmtime's numbering gives: the highest free number first, else
/// one past the highest ever used; a failed call frees or takes none.
const WASMTIME: &[u8] = &[
    4, 5, 6, // three opens after the preopen at 3
    200, 200, // close 4 and 6
    6, 4, 7,   // the highest free first, then a new one
    200, // renumber 7 -> 5: 7 is free
    7,   // and given out again
    200, // renumber 4 -> 4 changes nothing
    200, 208, // close 5, then again: EBADF
    200, // close stdin: 0 is free too
    144, // a missing file: ENOENT, no number taken
    5, 0, 8, // 5 (highest free), 0 (the directory "."), then new
    208, 208, // renumber from or to a closed fd: EBADF
    200, // close the preopen
    3, 9, // opened from "." at 0: the preopen's number, then new
];

#[test]
fn fd_numbers_are_given_out_as_wasmtime_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("f"), "data").expect("write");
    let bytes = wat::parse_str(GUEST).expect("the guest assembles");
    let module = WasmModule::new(bytes).expect("a module");
    let runtime = Runtime::new(None).expect("engines start");
    for writable in [false, true] {
        let spec = RunSpec {
            args: vec!["numbers".into()],
            preopens: vec![Preopen {
                host: tmp.path().to_path_buf(),
                guest: "/d".into(),
                writable,
            }],
            limits: Limits {
                timeout: Duration::from_secs(20),
                ..Limits::default()
            },
            ..RunSpec::default()
        };
        let mut engines = runtime.engines();
        assert!(engines.contains(&EngineKind::Interp));
        engines.sort_by_key(|e| *e != EngineKind::Jit);
        for engine in engines {
            let compiled = runtime.compile(engine, &module).expect("compiles");
            let outcome = runtime.run(&compiled, &spec).expect("runs");
            assert!(
                matches!(outcome.status, TaskStatus::Exited { code: 0 }),
                "{engine:?}: {:?}",
                outcome.status
            );
            assert_eq!(outcome.stdout, WASMTIME, "{engine:?}, writable {writable}");
        }
    }
}
