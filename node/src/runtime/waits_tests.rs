//! The limits inside host calls, on both engines: guests that sleep
//! (`poll_oneoff` on a clock, relative or absolute) or read a stdin that
//! never comes end at the timeout, or promptly when cancelled or handed
//! back, each with its reason; short sleeps and other polls answer as WASI
//! says; the memory cap covers all of a module's memories together.

use std::io::Read;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use corral_protocol::receipt::{EngineKind, TaskStatus};

use super::*;

mod stdin_fd;

/// A `poll_oneoff` subscription, in WAT: userdata, tag (0 clock, 1
/// fd_read, 2 fd_write), clock id or fd, timeout (a WAT i64 expression;
/// `$now` is the clock's time read first), flags.
struct Sub {
    userdata: u64,
    tag: u8,
    id: u32,
    timeout: &'static str,
    flags: u16,
}

const fn clock(userdata: u64, id: u32, timeout: &'static str, flags: u16) -> Sub {
    Sub {
        userdata,
        tag: 0,
        id,
        timeout,
        flags,
    }
}

const fn fd(userdata: u64, tag: u8, fd: u32) -> Sub {
    Sub {
        userdata,
        tag,
        id: fd,
        timeout: "(i64.const 0)",
        flags: 0,
    }
}

const SECONDS_60: &str = "(i64.const 60000000000)";
const MS_50: &str = "(i64.const 50000000)";

/// A guest that reads clock `now_clock` into `$now`, calls `poll_oneoff`
/// with `subs` and exits with 80 + errno on an error, else nevents * 10
/// plus the first event's type, plus 50 if its userdata is not the first
/// subscription's.
fn poller(now_clock: u32, subs: &[Sub]) -> WasmModule {
    let mut stores = String::new();
    for (i, sub) in subs.iter().enumerate() {
        let at = 256 + i * 48;
        stores.push_str(&format!(
            "(i64.store (i32.const {at}) (i64.const {}))
             (i32.store8 (i32.const {}) (i32.const {}))
             (i32.store (i32.const {}) (i32.const {}))
             (i64.store (i32.const {}) {})
             (i32.store16 (i32.const {}) (i32.const {}))\n",
            sub.userdata,
            at + 8,
            sub.tag,
            at + 16,
            sub.id,
            at + 24,
            sub.timeout,
            at + 40,
            sub.flags
        ));
    }
    let n = subs.len();
    let first = subs.first().map_or(0, |s| s.userdata);
    let text = format!(
        r#"(module
          (import "wasi_snapshot_preview1" "clock_time_get"
            (func $clock (param i32 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (local $now i64) (local $errno i32)
            (drop (call $clock (i32.const {now_clock}) (i64.const 1) (i32.const 0)))
            (local.set $now (i64.load (i32.const 0)))
            {stores}
            (local.set $errno
              (call $poll (i32.const 256) (i32.const 8192) (i32.const {n}) (i32.const 16)))
            (if (local.get $errno)
              (then (call $exit (i32.add (i32.const 80) (local.get $errno)))))
            (call $exit
              (i32.add
                (i32.add
                  (i32.mul (i32.load (i32.const 16)) (i32.const 10))
                  (i32.load8_u (i32.const 8202)))
                (select (i32.const 0) (i32.const 50)
                  (i64.eq (i64.load (i32.const 8192)) (i64.const {first})))))))"#
    );
    WasmModule::new(wat::parse_str(&text).expect("valid WAT")).expect("a module")
}

/// `std::thread::sleep` on wasm32-wasip1: one relative monotonic clock.
fn sleeper() -> WasmModule {
    poller(1, &[clock(7, 1, SECONDS_60, 0)])
}

/// The sleeps that must end at the timeout: relative and absolute, on
/// both clocks.
fn long_sleeps() -> Vec<(&'static str, WasmModule)> {
    let abs = "(i64.add (local.get $now) (i64.const 60000000000))";
    vec![
        ("relative monotonic", sleeper()),
        (
            "relative realtime",
            poller(0, &[clock(7, 0, SECONDS_60, 0)]),
        ),
        ("absolute monotonic", poller(1, &[clock(7, 1, abs, 1)])),
        ("absolute realtime", poller(0, &[clock(7, 0, abs, 1)])),
        (
            "two clocks",
            poller(1, &[clock(7, 1, SECONDS_60, 0), clock(8, 1, abs, 1)]),
        ),
    ]
}

fn spec_with(timeout: Duration) -> RunSpec {
    RunSpec {
        args: vec!["guest.wasm".into()],
        limits: Limits {
            timeout,
            memory_bytes: 64 * 1024 * 1024,
            output_bytes: 1024 * 1024,
            ..Limits::default()
        },
        ..RunSpec::default()
    }
}

fn run(rt: &Runtime, engine: EngineKind, module: &WasmModule, spec: &RunSpec) -> Outcome {
    let compiled = rt.compile(engine, module).expect("compiles");
    rt.run(&compiled, spec).expect("runs")
}

fn each_engine(test: impl Fn(&Runtime, EngineKind)) {
    let rt = Runtime::new(None).expect("engines start");
    for engine in rt.engines() {
        test(&rt, engine);
    }
}

/// A reader that gives what is sent, and blocks while nothing is (for
/// ever while the sender lives).
struct Channel(Receiver<Vec<u8>>, Vec<u8>);

impl Read for Channel {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.1.is_empty() {
            match self.0.recv() {
                Ok(bytes) => self.1 = bytes,
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.1.len());
        out[..n].copy_from_slice(&self.1[..n]);
        self.1.drain(..n);
        Ok(n)
    }
}

fn stdin_stream() -> (Sender<Vec<u8>>, Stdin) {
    let (send, receive) = channel();
    (
        send,
        Stdin::Stream(StdinStream::new(Channel(receive, Vec::new()))),
    )
}

fn testkit() -> WasmModule {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm/testkit.wasm");
    WasmModule::new(std::fs::read(path).expect("testkit")).expect("a module")
}

fn assert_timed_out(out: &Outcome, what: &str) {
    assert_eq!(out.status, TaskStatus::TimedOut, "{what}");
    assert!(
        out.duration < Duration::from_secs(10),
        "{what}: {:?}",
        out.duration
    );
}

#[test]
fn a_sleeping_guest_stops_at_the_timeout() {
    each_engine(|rt, engine| {
        for (name, module) in long_sleeps() {
            let out = run(rt, engine, &module, &spec_with(Duration::from_secs(1)));
            assert_timed_out(&out, &format!("{engine:?} {name}"));
        }
        let mut s = spec_with(Duration::from_secs(1));
        s.args = vec!["testkit.wasm".into(), "nap".into(), "60000".into()];
        let out = run(rt, engine, &testkit(), &s);
        assert_timed_out(&out, &format!("{engine:?} std::thread::sleep"));
    });
}

#[test]
fn a_guest_waiting_for_stdin_stops_at_the_timeout() {
    each_engine(|rt, engine| {
        let (_send, stdin) = stdin_stream();
        let mut s = spec_with(Duration::from_secs(1));
        s.args = vec!["testkit.wasm".into(), "stdin".into()];
        s.stdin = stdin.clone();
        let out = run(rt, engine, &testkit(), &s);
        assert_timed_out(&out, &format!("{engine:?} fd_read"));
        // poll_oneoff on stdin and a long clock.
        let module = poller(1, &[fd(7, 1, 0), clock(8, 1, SECONDS_60, 0)]);
        let mut s = spec_with(Duration::from_secs(1));
        s.stdin = stdin;
        let out = run(rt, engine, &module, &s);
        assert_timed_out(&out, &format!("{engine:?} poll on stdin"));
    });
}

/// Runs `module` under a 60 s timeout, stopping it for `reason` after
/// 200 ms from another thread.
fn stopped(
    rt: &Runtime,
    engine: EngineKind,
    module: &WasmModule,
    s: &mut RunSpec,
    reason: StopReason,
) -> Outcome {
    let signal = Arc::new(StopSignal::new());
    s.limits.timeout = Duration::from_secs(60);
    s.cancel = Some(signal.clone());
    let giver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        signal.stop(reason);
    });
    let out = run(rt, engine, module, s);
    giver.join().expect("giver");
    out
}

#[test]
fn a_waiting_guest_is_cancelled_or_handed_back_promptly_with_its_reason() {
    each_engine(|rt, engine| {
        for reason in [StopReason::Cancelled, StopReason::HandedBack] {
            let (_send, stdin) = stdin_stream();
            let mut reader = spec_with(Duration::ZERO);
            reader.args = vec!["testkit.wasm".into(), "stdin".into()];
            reader.stdin = stdin;
            let mut nap = spec_with(Duration::ZERO);
            nap.args = vec!["testkit.wasm".into(), "nap".into(), "60000".into()];
            let cases = [
                ("sleep", sleeper(), spec_with(Duration::ZERO)),
                ("std::thread::sleep", testkit(), nap),
                ("stdin", testkit(), reader),
                ("loop", testkit(), {
                    let mut s = spec_with(Duration::ZERO);
                    s.args = vec!["testkit.wasm".into(), "loop".into()];
                    s
                }),
            ];
            for (name, module, mut s) in cases {
                let out = stopped(rt, engine, &module, &mut s, reason);
                let what = format!("{engine:?} {name} {reason:?}");
                assert_eq!(
                    out.status,
                    TaskStatus::Trapped {
                        message: reason.message().into()
                    },
                    "{what}"
                );
                assert!(
                    out.duration < Duration::from_secs(10),
                    "{what}: {:?}",
                    out.duration
                );
            }
        }
    });
}

#[test]
fn short_sleeps_and_other_polls_answer_as_wasi_says() {
    each_engine(|rt, engine| {
        let soon = "(i64.add (local.get $now) (i64.const 50000000))";
        let cases = [
            // One clock event, of type clock (0), with its userdata.
            ("relative", poller(1, &[clock(7, 1, MS_50, 0)]), 10, true),
            (
                "absolute monotonic",
                poller(1, &[clock(7, 1, soon, 1)]),
                10,
                true,
            ),
            (
                "absolute realtime",
                poller(0, &[clock(7, 0, soon, 1)]),
                10,
                true,
            ),
            // The earlier of two clocks only.
            (
                "two clocks",
                poller(1, &[clock(7, 1, MS_50, 0), clock(8, 1, SECONDS_60, 0)]),
                10,
                true,
            ),
            // EINVAL (28) for no subscription.
            ("none", poller(1, &[]), 108, false),
            // stdout is always ready to write (type 2), the clock not yet.
            (
                "stdout",
                poller(1, &[fd(7, 2, 1), clock(8, 1, SECONDS_60, 0)]),
                12,
                false,
            ),
        ];
        for (name, module, code, waits) in cases {
            let started = Instant::now();
            let out = run(rt, engine, &module, &spec_with(Duration::from_secs(20)));
            let what = format!("{engine:?} {name}");
            assert_eq!(out.status, TaskStatus::Exited { code }, "{what}");
            if waits {
                assert!(started.elapsed() >= Duration::from_millis(50), "{what}");
            }
        }
        // A read from a stdin stream: ready once bytes come (type 1).
        let (send, stdin) = stdin_stream();
        let mut s = spec_with(Duration::from_secs(20));
        s.stdin = stdin;
        send.send(b"x".to_vec()).expect("send");
        let module = poller(1, &[fd(7, 1, 0), clock(8, 1, SECONDS_60, 0)]);
        let out = run(rt, engine, &module, &s);
        assert_eq!(
            out.status,
            TaskStatus::Exited { code: 11 },
            "{engine:?} stdin poll"
        );
    });
}

#[test]
fn a_stdin_stream_is_read_as_it_comes_then_its_end() {
    each_engine(|rt, engine| {
        let (send, stdin) = stdin_stream();
        let mut s = spec_with(Duration::from_secs(20));
        s.args = vec!["testkit.wasm".into(), "stdin".into()];
        s.stdin = stdin;
        let feeder = std::thread::spawn(move || {
            for part in [&b"line one\n"[..], b"line two\n"] {
                std::thread::sleep(Duration::from_millis(50));
                send.send(part.to_vec()).expect("send");
            }
        });
        let out = run(rt, engine, &testkit(), &s);
        feeder.join().expect("feeder");
        assert_eq!(out.status, TaskStatus::Exited { code: 0 }, "{engine:?}");
        assert_eq!(out.stdout, b"line one\nline two\n", "{engine:?}");
    });
}

/// Two memories growing by 40 MiB each: 80 MiB in all.
fn two_memories() -> WasmModule {
    let text = r#"(module
      (memory $a 1)
      (memory $b 1)
      (memory (export "memory") 1)
      (func (export "_start")
        (if (i32.eq (memory.grow $a (i32.const 640)) (i32.const -1)) (then unreachable))
        (if (i32.eq (memory.grow $b (i32.const 640)) (i32.const -1)) (then unreachable))))"#;
    WasmModule::new(wat::parse_str(text).expect("valid WAT")).expect("a module")
}

#[test]
fn the_memory_cap_covers_all_memories_together() {
    each_engine(|rt, engine| {
        let out = run(
            rt,
            engine,
            &two_memories(),
            &spec_with(Duration::from_secs(20)),
        );
        assert_eq!(out.status, TaskStatus::MemoryLimit, "{engine:?}");
    });
}

/// Prints how long after its deadline (or its stop signal) each kind of run
/// ends, per engine: `cargo test -p corral-node --lib overshoot --
/// --ignored --nocapture`. Figures, not assertions.
#[test]
#[ignore = "a harness that prints figures"]
fn overshoot() {
    const RUNS: usize = 5;
    let timeout = Duration::from_millis(500);
    let rt = Runtime::new(None).expect("engines start");
    for engine in rt.engines() {
        let kinds: [(&str, Option<StopReason>); 5] = [
            ("timeout in guest code", None),
            ("timeout in a sleep", None),
            ("cancel in a sleep", Some(StopReason::Cancelled)),
            ("hand-back in a sleep", Some(StopReason::HandedBack)),
            ("timeout in a stdin read", None),
        ];
        for (i, (name, reason)) in kinds.into_iter().enumerate() {
            let mut figures = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let (_send, stdin) = stdin_stream();
                let mut s = spec_with(timeout);
                let module = match i {
                    0 => {
                        s.args = vec!["testkit.wasm".into(), "loop".into()];
                        testkit()
                    }
                    4 => {
                        s.args = vec!["testkit.wasm".into(), "stdin".into()];
                        s.stdin = stdin;
                        testkit()
                    }
                    _ => sleeper(),
                };
                let compiled = rt.compile(engine, &module).expect("compiles");
                let overshoot = match reason {
                    None => rt.run(&compiled, &s).expect("runs").duration - timeout,
                    Some(reason) => {
                        let signal = Arc::new(StopSignal::new());
                        s.limits.timeout = Duration::from_secs(60);
                        s.cancel = Some(signal.clone());
                        let giver = std::thread::spawn(move || {
                            std::thread::sleep(timeout);
                            signal.stop(reason);
                            Instant::now()
                        });
                        rt.run(&compiled, &s).expect("runs");
                        let ended = Instant::now();
                        ended - giver.join().expect("giver")
                    }
                };
                figures.push(overshoot);
            }
            figures.sort();
            println!(
                "{engine:?} {name}: median {:?}, max {:?} ({RUNS} runs)",
                figures[RUNS / 2],
                figures[RUNS - 1]
            );
        }
    }
}
