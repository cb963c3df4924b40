//! The runtime against real modules on both engines: the sandbox's promises
//! (args, env, stdin, preopens) and every limit, with hostile modules run in
//! one process that must stay healthy afterwards.

use std::path::PathBuf;
use std::time::Duration;

use corral_protocol::receipt::{EngineKind, TaskStatus};

use super::*;

pub(super) fn wasm(name: &str) -> WasmModule {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm")
        .join(format!("{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    WasmModule::new(bytes).expect("a valid module")
}

fn runtime() -> Runtime {
    Runtime::new(None).expect("engines start")
}

pub(super) fn spec(args: &[&str]) -> RunSpec {
    RunSpec {
        args: std::iter::once("testkit.wasm")
            .chain(args.iter().copied())
            .map(String::from)
            .collect(),
        limits: Limits {
            timeout: Duration::from_secs(20),
            memory_bytes: 64 * 1024 * 1024,
            output_bytes: 1024 * 1024,
            ..Limits::default()
        },
        ..RunSpec::default()
    }
}

fn run_on(rt: &Runtime, engine: EngineKind, spec: &RunSpec) -> Outcome {
    let compiled = rt.compile(engine, &wasm("testkit")).expect("compiles");
    rt.run(&compiled, spec).expect("runs")
}

fn each_engine(test: impl Fn(&Runtime, EngineKind)) {
    let rt = runtime();
    for engine in rt.engines() {
        test(&rt, engine);
    }
}

#[test]
fn both_engines_are_available_on_this_host() {
    let engines = runtime().engines();
    assert!(engines.contains(&EngineKind::Interp));
    #[cfg(all(feature = "jit", any(target_arch = "x86_64", target_arch = "aarch64")))]
    assert!(engines.contains(&EngineKind::Jit));
}

#[test]
fn args_reach_the_guest_verbatim() {
    each_engine(|rt, engine| {
        let out = run_on(rt, engine, &spec(&["args", "a b", "", "ü{task}"]));
        assert_eq!(out.status, TaskStatus::Exited { code: 0 }, "{engine:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "testkit.wasm\nargs\na b\n\nü{task}\n",
            "{engine:?}"
        );
    });
}

#[test]
fn the_guest_sees_exactly_the_given_env() {
    each_engine(|rt, engine| {
        let mut s = spec(&["env"]);
        s.env = vec![("B".into(), "2".into()), ("A".into(), "x=1".into())];
        let out = run_on(rt, engine, &s);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "A=x=1\nB=2\n",
            "{engine:?}"
        );
        let out = run_on(rt, engine, &spec(&["env"]));
        assert_eq!(out.stdout, b"", "{engine:?}: the host's env must not leak");
    });
}

#[test]
fn stdin_bytes_are_delivered_then_eof() {
    each_engine(|rt, engine| {
        let mut s = spec(&["stdin"]);
        s.stdin = Stdin::Bytes(b"line one\nline two\n".as_slice().into());
        let out = run_on(rt, engine, &s);
        assert_eq!(out.stdout, b"line one\nline two\n", "{engine:?}");
        let out = run_on(rt, engine, &spec(&["stdin"]));
        assert_eq!(out.stdout, b"", "{engine:?}");
    });
}

#[test]
fn exit_codes_and_stderr_come_back() {
    each_engine(|rt, engine| {
        let out = run_on(rt, engine, &spec(&["exit", "42"]));
        assert_eq!(out.status, TaskStatus::Exited { code: 42 }, "{engine:?}");
        let out = run_on(rt, engine, &spec(&["stderr", "oops"]));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim_end(),
            "oops",
            "{engine:?}"
        );
    });
}

#[test]
fn a_cancelled_run_stops_at_once_and_says_why() {
    each_engine(|rt, engine| {
        let flag = Arc::new(StopSignal::new());
        let mut s = spec(&["loop"]);
        s.limits.timeout = Duration::from_secs(60);
        s.cancel = Some(flag.clone());
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.stop(StopReason::Cancelled);
        });
        let out = run_on(rt, engine, &s);
        setter.join().expect("setter");
        match &out.status {
            TaskStatus::Trapped { message } => {
                assert!(message.contains("cancelled"), "{engine:?}: {message}");
            }
            other => panic!("{engine:?}: ended as {other:?}, not cancelled"),
        }
    });
}

#[test]
fn an_infinite_loop_times_out() {
    each_engine(|rt, engine| {
        let mut s = spec(&["loop"]);
        s.limits.timeout = Duration::from_millis(300);
        let out = run_on(rt, engine, &s);
        assert_eq!(out.status, TaskStatus::TimedOut, "{engine:?}");
        assert!(
            out.duration < Duration::from_secs(10),
            "{engine:?}: {:?}",
            out.duration
        );
    });
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    each_engine(|rt, engine| {
        let out = run_on(rt, engine, &spec(&["alloc"]));
        assert_eq!(out.status, TaskStatus::MemoryLimit, "{engine:?}");
    });
}

#[test]
fn unbounded_recursion_traps() {
    each_engine(|rt, engine| {
        let out = run_on(rt, engine, &spec(&["recurse"]));
        match &out.status {
            TaskStatus::Trapped { message } => {
                assert!(message.contains("stack"), "{engine:?}: {message}")
            }
            other => panic!("{engine:?}: expected a stack overflow trap, got {other:?}"),
        }
    });
}

#[test]
fn a_stdout_flood_is_cut_at_the_cap() {
    each_engine(|rt, engine| {
        let mut s = spec(&["flood"]);
        s.limits.output_bytes = 100_000;
        let out = run_on(rt, engine, &s);
        assert_eq!(out.status, TaskStatus::OutputLimit, "{engine:?}");
        assert_eq!(out.stdout.len(), 100_000, "{engine:?}");
        assert!(out.stdout_truncated);
    });
}

#[test]
fn explicit_traps_are_reported_as_traps() {
    each_engine(|rt, engine| {
        let out = run_on(rt, engine, &spec(&["trap"]));
        assert!(
            matches!(out.status, TaskStatus::Trapped { .. }),
            "{engine:?}: {:?}",
            out.status
        );
    });
}

#[test]
fn preopens_cannot_be_escaped_and_read_only_means_read_only() {
    each_engine(|rt, engine| {
        let input = tempfile::tempdir().expect("tempdir");
        std::fs::write(input.path().join("data.txt"), "original").expect("write");
        let output = tempfile::tempdir().expect("tempdir");
        let mut s = spec(&["escape"]);
        s.preopens = vec![
            Preopen {
                host: input.path().to_path_buf(),
                guest: "/input".into(),
                writable: false,
            },
            Preopen {
                host: output.path().to_path_buf(),
                guest: "/output".into(),
                writable: true,
            },
        ];
        let out = run_on(rt, engine, &s);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains("ESCAPED"), "{engine:?}:\n{text}");
        assert!(text.contains("BLOCKED"), "{engine:?}:\n{text}");
        assert_eq!(
            out.status,
            TaskStatus::Exited { code: 0 },
            "{engine:?}:\n{text}"
        );
        assert!(!input.path().join("pwned").exists(), "{engine:?}");

        // The read-only directory is readable, and refuses every kind of write.
        let mut s = spec(&["read", "/input/data.txt"]);
        s.preopens = vec![Preopen {
            host: input.path().to_path_buf(),
            guest: "/input".into(),
            writable: false,
        }];
        assert_eq!(run_on(rt, engine, &s).stdout, b"original", "{engine:?}");
        for target in ["/input/data.txt", "/input/new.txt", "/input/sub/new.txt"] {
            s.args = ["testkit.wasm", "write", target, "changed"]
                .map(String::from)
                .to_vec();
            let out = run_on(rt, engine, &s);
            assert_eq!(
                out.status,
                TaskStatus::Exited { code: 1 },
                "{engine:?} {target}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(input.path().join("data.txt")).expect("read"),
            "original"
        );
        assert!(!input.path().join("new.txt").exists());

        // A writable one takes writes.
        let mut s = spec(&["write", "/output/sub/result.txt", "hello"]);
        s.preopens = vec![Preopen {
            host: output.path().to_path_buf(),
            guest: "/output".into(),
            writable: true,
        }];
        assert_eq!(
            run_on(rt, engine, &s).status,
            TaskStatus::Exited { code: 0 }
        );
        assert_eq!(
            std::fs::read_to_string(output.path().join("sub/result.txt")).expect("read"),
            "hello"
        );
    });
}

#[test]
fn the_process_stays_healthy_after_hostile_modules() {
    let rt = runtime();
    for engine in rt.engines() {
        for (mode, timeout) in [
            ("loop", 200),
            ("alloc", 20_000),
            ("recurse", 20_000),
            ("flood", 20_000),
            ("trap", 20_000),
        ] {
            let mut s = spec(&[mode]);
            s.limits.timeout = Duration::from_millis(timeout);
            s.limits.output_bytes = 10_000;
            let out = run_on(&rt, engine, &s);
            assert!(
                !matches!(out.status, TaskStatus::Exited { code: 0 }),
                "{engine:?} {mode} should not succeed"
            );
        }
        let out = run_on(&rt, engine, &spec(&["args", "still", "fine"]));
        assert_eq!(out.status, TaskStatus::Exited { code: 0 }, "{engine:?}");
        assert_eq!(out.stdout, b"testkit.wasm\nargs\nstill\nfine\n");
    }
}

#[test]
fn a_module_needing_more_initial_memory_than_the_cap_is_a_memory_limit() {
    each_engine(|rt, engine| {
        let mut s = spec(&["args"]);
        // Rust guests declare about 1.06 MiB of memory up front.
        s.limits.memory_bytes = 512 * 1024;
        let out = run_on(rt, engine, &s);
        assert_eq!(out.status, TaskStatus::MemoryLimit, "{engine:?}");
    });
}

#[test]
fn garbage_and_components_are_refused_with_a_reason() {
    let err = WasmModule::new(b"hello world".to_vec()).expect_err("not wasm");
    assert!(
        err.to_string().contains("not a WebAssembly module"),
        "{err}"
    );
    let err = WasmModule::new(b"\0asm\x0d\x00\x01\x00".to_vec()).expect_err("component");
    assert!(err.to_string().contains("component"), "{err}");
    let rt = runtime();
    let truncated = WasmModule::new(wasm("testkit").bytes[..1000].to_vec()).expect("header ok");
    for engine in rt.engines() {
        assert!(
            matches!(
                rt.compile(engine, &truncated),
                Err(RuntimeError::Invalid(_))
            ),
            "{engine:?}"
        );
    }
}

#[cfg(feature = "jit")]
#[test]
fn compiled_modules_are_cached_on_disk_and_reused() {
    let cache = tempfile::tempdir().expect("tempdir");
    let module = wasm("testkit");
    {
        let rt = Runtime::new(Some(cache.path().to_path_buf())).expect("runtime");
        rt.compile(EngineKind::Jit, &module).expect("compile");
    }
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .expect("cache dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&module.hash.to_hex()), "{files:?}");

    // A corrupted entry is replaced, not trusted.
    let path = cache.path().join(&files[0]);
    std::fs::write(&path, b"garbage").expect("corrupt");
    let rt = Runtime::new(Some(cache.path().to_path_buf())).expect("runtime");
    let compiled = rt.compile(EngineKind::Jit, &module).expect("recompiles");
    let out = rt.run(&compiled, &spec(&["exit", "7"])).expect("runs");
    assert_eq!(out.status, TaskStatus::Exited { code: 7 });
    assert!(std::fs::read(&path).expect("rewritten").len() > 1000);
}

/// Runs the `diskfill` guest in `mode` with a fresh writable `/out` under
/// these disk limits; gives the outcome and the directory.
fn diskfill(
    rt: &Runtime,
    engine: EngineKind,
    mode: &str,
    disk_bytes: u64,
    files: u64,
) -> (Outcome, tempfile::TempDir) {
    let out = tempfile::tempdir().expect("tempdir");
    let mut s = spec(&[mode, "/out"]);
    s.args[0] = "diskfill.wasm".into();
    s.limits.disk_bytes = disk_bytes;
    s.limits.files = files;
    s.preopens = vec![Preopen {
        host: out.path().to_path_buf(),
        guest: "/out".into(),
        writable: true,
    }];
    let compiled = rt.compile(engine, &wasm("diskfill")).expect("compiles");
    (rt.run(&compiled, &s).expect("runs"), out)
}

/// Bytes of the files and the number of entries under `dir`, as the host
/// sees them.
fn usage(dir: &std::path::Path) -> (u64, u64) {
    walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_map(Result::ok)
        .fold((0, 0), |(bytes, n), entry| {
            let file = entry.metadata().ok().filter(std::fs::Metadata::is_file);
            let len = file.map_or(0, |m| m.len());
            (bytes + len, n + 1)
        })
}

#[test]
fn a_task_writing_past_its_disk_limit_ends_disk_limit_with_nothing_over() {
    each_engine(|rt, engine| {
        let (out, dir) = diskfill(rt, engine, "bytes", 4 << 20, 100);
        assert_eq!(out.status, TaskStatus::DiskLimit, "{engine:?}: {out:?}");
        let (bytes, files) = usage(dir.path());
        assert!(bytes <= 4 << 20, "{engine:?}: {bytes} bytes on disk");
        assert!(bytes >= 3 << 20, "{engine:?}: only {bytes} bytes written");
        assert_eq!(files, 1, "{engine:?}");
    });
}

#[test]
fn a_task_creating_too_many_files_ends_disk_limit() {
    each_engine(|rt, engine| {
        let (out, dir) = diskfill(rt, engine, "files", 4 << 20, 20);
        assert_eq!(out.status, TaskStatus::DiskLimit, "{engine:?}: {out:?}");
        assert_eq!(usage(dir.path()), (0, 20), "{engine:?}");
    });
}

#[test]
fn a_sparse_write_far_out_is_charged_its_apparent_size() {
    each_engine(|rt, engine| {
        let (out, dir) = diskfill(rt, engine, "sparse", 4 << 20, 100);
        assert_eq!(out.status, TaskStatus::DiskLimit, "{engine:?}: {out:?}");
        assert_eq!(usage(dir.path()), (0, 1), "{engine:?}");
    });
}

#[test]
fn growing_a_file_by_setting_its_size_is_charged() {
    each_engine(|rt, engine| {
        let (out, dir) = diskfill(rt, engine, "grow", 4 << 20, 100);
        assert_eq!(out.status, TaskStatus::DiskLimit, "{engine:?}: {out:?}");
        assert_eq!(usage(dir.path()), (0, 1), "{engine:?}");
    });
}

#[test]
fn a_task_within_its_disk_limit_is_not_stopped() {
    each_engine(|rt, engine| {
        let (out, dir) = diskfill(rt, engine, "sparse", 2 << 40, 100);
        assert_eq!(
            out.status,
            TaskStatus::Exited { code: 0 },
            "{engine:?}: {out:?}"
        );
        assert_eq!(usage(dir.path()), ((1 << 40) + 1, 1), "{engine:?}");
    });
}

#[test]
fn deleting_gives_room_back_and_renames_work_under_the_quota() {
    each_engine(|rt, engine| {
        // 50 MiB written in all, 1 MiB at a time, under a 4 MiB limit.
        let (out, dir) = diskfill(rt, engine, "churn", 4 << 20, 3);
        assert_eq!(
            out.status,
            TaskStatus::Exited { code: 0 },
            "{engine:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(usage(dir.path()), (0, 1), "{engine:?}: only sub/ is left");
    });
}

/// A guest that checks its memory is as a fresh instance's, then leaves
/// marks all over it: every page of its 4 MiB (past what a pooled memory
/// keeps resident between runs), its one data byte, and 1 MiB grown at run
/// time. It exits 3 when it finds a mark of an earlier run.
const MARKS_LEFT_BEHIND: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 64)
  (data (i32.const 65536) "\2a")
  (func $expect (param $at i32) (param $want i32)
    (if (i32.ne (i32.load8_u (local.get $at)) (local.get $want))
      (then (call $exit (i32.const 3)))))
  (func $pages (param $from i32) (param $to i32) (param $mark i32)
    (local $at i32)
    (local.set $at (local.get $from))
    (loop $next
      (if (i32.lt_u (local.get $at) (local.get $to))
        (then
          (if (i32.eqz (local.get $mark))
            (then (if (i32.ne (local.get $at) (i32.const 65536))
              (then (call $expect (i32.add (local.get $at) (i32.const 8)) (i32.const 0)))))
            (else (i32.store8 (i32.add (local.get $at) (i32.const 8)) (local.get $mark))))
          (local.set $at (i32.add (local.get $at) (i32.const 4096)))
          (br $next)))))
  (func (export "_start")
    (call $expect (i32.const 65536) (i32.const 42))
    (call $pages (i32.const 0) (i32.const 4194304) (i32.const 0))
    (if (i32.ne (memory.grow (i32.const 16)) (i32.const 64))
      (then (call $exit (i32.const 4))))
    (call $pages (i32.const 4194304) (i32.const 5242880) (i32.const 0))
    (i32.store8 (i32.const 65536) (i32.const 7))
    (call $pages (i32.const 0) (i32.const 5242880) (i32.const 255))))"#;

/// Runs share places (a pooled instance's memory is reset, not remapped,
/// between runs): no run may see what an earlier one left in memory.
#[test]
fn a_run_never_sees_the_memory_an_earlier_run_left() {
    let module = WasmModule::new(wat::parse_str(MARKS_LEFT_BEHIND).expect("valid text"))
        .expect("a valid module");
    each_engine(|rt, engine| {
        let compiled = rt.compile(engine, &module).expect("compiles");
        for run in 0..20 {
            let out = rt.run(&compiled, &spec(&[])).expect("runs");
            assert_eq!(
                out.status,
                TaskStatus::Exited { code: 0 },
                "{engine:?}, run {run}: marks of an earlier run were left"
            );
        }
    });
}
