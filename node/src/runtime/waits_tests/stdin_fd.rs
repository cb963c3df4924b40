//! Corral's stdin stream follows fd 0: a guest that closes stdin and opens
//! a file, which is given the freed number 0 (as wasmtime numbers fds, on
//! both engines), reads the file there, not the stream.

use std::time::Duration;

use corral_protocol::receipt::TaskStatus;

use super::{each_engine, run, spec_with, stdin_stream};
use crate::runtime::{Preopen, WasmModule};

/// Closes fd 0, opens `f` in the preopen at fd 3, reads up to 64 bytes from
/// the fd it got and writes them to stdout; exits with the fd number it
/// got (or 100 + the errno of a failed call).
const GUEST: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "f")
  (func $check (param i32)
    (if (local.get 0) (then (call $proc_exit (i32.add (i32.const 100) (local.get 0))))))
  (func (export "_start")
    (call $check (call $fd_close (i32.const 0)))
    (call $check (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 1)
      (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 8)))
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 64))
    (call $check (call $fd_read (i32.load (i32.const 8)) (i32.const 16) (i32.const 1)
      (i32.const 32)))
    (i32.store (i32.const 20) (i32.load (i32.const 32)))
    (call $check (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 40)))
    (call $proc_exit (i32.load (i32.const 8)))))
"#;

#[test]
fn a_file_given_stdins_number_is_read_as_the_file() {
    let module = WasmModule::new(wat::parse_str(GUEST).expect("valid WAT")).expect("a module");
    each_engine(|rt, engine| {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("f"), "from the file").expect("write");
        // A stream that never sends: reading it would wait until the timeout.
        let (_keep, stdin) = stdin_stream();
        let mut spec = spec_with(Duration::from_secs(5));
        spec.stdin = stdin;
        spec.preopens = vec![Preopen {
            host: dir.path().to_path_buf(),
            guest: "/d".into(),
            writable: false,
        }];
        let out = run(rt, engine, &module, &spec);
        assert_eq!(
            out.status,
            TaskStatus::Exited { code: 0 },
            "{engine:?}: the file got fd 0 and was read: {out:?}"
        );
        assert_eq!(out.stdout, b"from the file", "{engine:?}");
    });
}
