//! Not an example job: the module corral's own tests run to check the sandbox
//! and the limits on both engines. One mode per first argument.
//!
//! Well-behaved modes:
//!   args               prints argv, one element per line
//!   env                prints every environment variable K=V, sorted
//!   stdin              copies stdin to stdout
//!   exit N             exits with code N
//!   stderr TEXT        writes TEXT and a newline to stderr
//!   write PATH TEXT    writes TEXT to PATH (creating parent directories);
//!                      prints `ok` (exit 0) or `error: …` (exit 1)
//!   read PATH          prints the file, or `error: …` and exits 1
//!   ls DIR             prints the sorted entry names
//!   spin N             does N rounds of arithmetic, prints `done N`
//!   sleep-ms N         busy-waits N milliseconds on the monotonic clock
//!   nap N              sleeps N milliseconds (std::thread::sleep: poll_oneoff)
//!   tick N MS          prints `tick I` (I = 0..N) to stdout and `tock I` to
//!                      stderr, busy-waiting MS milliseconds after each
//! Hostile modes, each of which a runner must stop with its own reason:
//!   loop               never ends
//!   alloc              allocates and touches 1 MiB after 1 MiB, forever
//!   recurse            recurses without bound
//!   flood              prints to stdout forever
//!   trap               executes `unreachable`
//!   escape             tries to get out of its preopens; prints BLOCKED or
//!                      ESCAPED per attempt, exits 3 if anything escaped
//!
//! As a WAGI module (`corral serve`: no arguments, GATEWAY_INTERFACE set),
//! the mode and its arguments come from the query, split at `+`
//! (`/tk?nap+500`, `/tk?trap`): a `Content-Type: text/plain` header and a
//! blank line first, then the mode's output as the body.

use std::hint::black_box;
use std::io::{Read, Write};
use std::process::ExitCode;

/// Waits `ms` milliseconds on the monotonic clock, busily: the task holds
/// its CPU the whole time, as real work would.
fn busy_wait(ms: u64) {
    let start = std::time::Instant::now();
    while start.elapsed().as_millis() < u128::from(ms) {
        black_box(0);
    }
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().collect();
    if args.len() == 1 && std::env::var_os("GATEWAY_INTERFACE").is_some() {
        let query = std::env::var("QUERY_STRING").unwrap_or_default();
        args.extend(query.split('+').map(String::from));
        print!("Content-Type: text/plain\n\n");
    }
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "args" => {
            for a in &args {
                println!("{a}");
            }
        }
        "env" => {
            let mut vars: Vec<(String, String)> = std::env::vars().collect();
            vars.sort();
            for (k, v) in vars {
                println!("{k}={v}");
            }
        }
        "stdin" => {
            let mut buf = Vec::new();
            if std::io::stdin().read_to_end(&mut buf).is_err() {
                return ExitCode::FAILURE;
            }
            let _ = std::io::stdout().write_all(&buf);
        }
        "exit" => std::process::exit(arg(2).parse().unwrap_or(1)),
        "stderr" => eprintln!("{}", arg(2)),
        "write" => {
            let path = std::path::PathBuf::from(arg(2));
            let result = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, arg(3)));
            return report(result);
        }
        "read" => match std::fs::read(arg(2)) {
            Ok(bytes) => {
                let _ = std::io::stdout().write_all(&bytes);
            }
            Err(e) => return report(Err(e)),
        },
        "ls" => match std::fs::read_dir(arg(2)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for n in names {
                    println!("{n}");
                }
            }
            Err(e) => return report(Err(e)),
        },
        "spin" => {
            let n: u64 = arg(2).parse().unwrap_or(0);
            let mut x = 0u64;
            for i in 0..n {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
            }
            println!("done {n} {}", x % 10);
        }
        "sleep-ms" => busy_wait(arg(2).parse().unwrap_or(0)),
        // A real sleep (poll_oneoff on a relative clock), not a busy wait.
        "nap" => std::thread::sleep(std::time::Duration::from_millis(
            arg(2).parse().unwrap_or(0),
        )),
        "tick" => {
            let n: u32 = arg(2).parse().unwrap_or(0);
            let ms: u64 = arg(3).parse().unwrap_or(0);
            for i in 0..n {
                println!("tick {i}");
                eprintln!("tock {i}");
                busy_wait(ms);
            }
        }
        "loop" => {
            let mut x = 0u64;
            loop {
                x = black_box(x + 1);
            }
        }
        "alloc" => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                let chunk = vec![1u8; 1 << 20];
                kept.push(black_box(chunk));
            }
        }
        "recurse" => println!("{}", recurse(0)),
        "flood" => loop {
            println!("flood flood flood flood flood flood flood flood flood flood");
        },
        "trap" => trap(),
        "escape" => return escape(),
        other => {
            eprintln!("testkit: unknown mode {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn report(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error: {:?}", e.kind());
            ExitCode::FAILURE
        }
    }
}

/// Not a tail call: the addition after the call keeps every frame alive.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    1 + recurse(depth + 1) + black_box(0)
}

#[cfg(target_arch = "wasm32")]
fn trap() -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(not(target_arch = "wasm32"))]
fn trap() -> ! {
    std::process::abort()
}

fn escape() -> ExitCode {
    let mut escaped = false;
    let mut check = |what: &str, worked: bool| {
        println!("{} {what}", if worked { "ESCAPED" } else { "BLOCKED" });
        escaped |= worked;
    };
    for path in [
        "/etc/passwd",
        "/input/../../etc/passwd",
        "../etc/passwd",
        "/output/../../etc/passwd",
        "/proc/self/environ",
    ] {
        check(&format!("read {path}"), std::fs::read(path).is_ok());
    }
    for path in ["/input/pwned", "/tmp/pwned", "/output/../pwned"] {
        check(&format!("write {path}"), std::fs::write(path, "x").is_ok());
    }
    check(
        "list /",
        std::fs::read_dir("/").is_ok_and(|mut d| d.next().is_some()),
    );
    check("read through a symlink out of /output", symlink_escape());
    if escaped {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}

/// Creates symlinks in /output pointing outside, then reads through them.
/// (`soft_link` is the stable spelling of `symlink` on every target.)
#[allow(deprecated)]
fn symlink_escape() -> bool {
    let _ = std::fs::soft_link("/etc/passwd", "/output/link");
    let _ = std::fs::soft_link("../../../../etc/passwd", "/output/link2");
    std::fs::read("/output/link").is_ok() || std::fs::read("/output/link2").is_ok()
}
