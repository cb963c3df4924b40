//! `corral run` through a daemon on loopback: a single task behaves like a
//! local command (stdout, exit code, a trap's 125), a detached job can be
//! followed, fetched and cancelled, and bad ids get clear errors.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Sandbox, assert_code, module, text};

fn up(sb: &Sandbox, data: &str, extra: &[&str]) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--data-dir", data, "up", "--no-mdns", "--share", "always"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(extra)
        .current_dir(sb.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("corral up starts");
    let socket = sb.path(data).join("corral.sock");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the daemon did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn job(sb: &Sandbox, id: &str) -> serde_json::Value {
    serde_json::from_slice(&sb.corral(&["--data-dir", "a", "job", id, "--json"]).stdout)
        .unwrap_or_default()
}

#[test]
fn jobs_run_through_the_daemon_like_local_commands() {
    let sb = Sandbox::new();
    assert_code(&sb.corral(&["--data-dir", "a", "init", "--name", "one"]), 0);
    let token = text(&sb.corral(&["--data-dir", "a", "invite"]).stdout);
    assert_code(
        &sb.corral(&["--data-dir", "b", "join", token.trim(), "--name", "two"]),
        0,
    );
    let mut a = up(&sb, "a", &["--slots", "1"]);
    let status: serde_json::Value =
        serde_json::from_slice(&sb.corral(&["--data-dir", "a", "status", "--json"]).stdout)
            .expect("json");
    let addr = status["addresses"][0]
        .as_str()
        .expect("address")
        .to_string();
    let mut b = up(&sb, "b", &["--slots", "1", "--peer", &addr]);
    let tk = module("testkit");

    let out = sb.corral(&["--data-dir", "a", "run", &tk, "--", "args", "x y"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "testkit.wasm\nargs\nx y\n");
    assert_code(
        &sb.corral(&["--data-dir", "a", "run", &tk, "--", "exit", "3"]),
        3,
    );
    // What is piped into corral reaches the task on whichever device runs it.
    let piped: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let out = sb.corral_with_stdin(&["--data-dir", "a", "run", &tk, "--", "stdin"], &piped);
    assert_code(&out, 0);
    assert!(out.stdout == piped, "stdin came back changed");
    let out = sb.corral(&["--data-dir", "a", "run", &tk, "--", "trap"]);
    assert_code(&out, 125);
    assert!(
        text(&out.stderr).contains("trapped"),
        "{}",
        text(&out.stderr)
    );

    // A batch, detached: only the id on stdout; then followed and fetched.
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        &tk,
        "--detach",
        "--tasks",
        "3",
        "--",
        "args",
        "{task}",
    ]);
    assert_code(&out, 0);
    let id = text(&out.stdout).trim().to_string();
    assert_eq!(id.len(), 32, "{id:?}");
    let started = Instant::now();
    while job(&sb, &id)["state"] == "running" {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job never ended"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(job(&sb, &id)["state"], "completed");
    assert_code(
        &sb.corral(&["--data-dir", "a", "results", &id, "--out", "res"]),
        0,
    );
    assert_eq!(
        std::fs::read_to_string(sb.path("res/2/stdout")).expect("stdout"),
        "testkit.wasm\nargs\n2\n"
    );
    let listed = text(&sb.corral(&["--data-dir", "a", "jobs"]).stdout);
    assert!(
        listed.contains(&id) && listed.contains("completed"),
        "{listed}"
    );

    // A long job is cancelled: it ends as cancelled and nothing more starts.
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        &tk,
        "--detach",
        "--tasks",
        "50",
        "--",
        "sleep-ms",
        "300",
    ]);
    let long = text(&out.stdout).trim().to_string();
    assert_code(&sb.corral(&["--data-dir", "a", "cancel", &long]), 0);
    assert_eq!(job(&sb, &long)["state"], "cancelled");
    let again = sb.corral(&["--data-dir", "a", "cancel", &long]);
    assert_code(&again, 1);
    assert!(
        text(&again.stderr).contains("already ended"),
        "{}",
        text(&again.stderr)
    );
    // Cancelling stops guests already running: two endless tasks, one on
    // each daemon, end within moments instead of at their time limit.
    let running = |data: &str| {
        let status: serde_json::Value =
            serde_json::from_slice(&sb.corral(&["--data-dir", data, "status", "--json"]).stdout)
                .unwrap_or_default();
        status["running"].as_u64().unwrap_or(0)
    };
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        &tk,
        "--detach",
        "--tasks",
        "2",
        "--timeout",
        "10m",
        "--",
        "loop",
    ]);
    let endless = text(&out.stdout).trim().to_string();
    let started = Instant::now();
    while running("a") + running("b") < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the endless tasks did not start on both daemons"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_code(&sb.corral(&["--data-dir", "a", "cancel", &endless]), 0);
    let cancelled = Instant::now();
    while running("a") + running("b") > 0 {
        assert!(
            cancelled.elapsed() < Duration::from_secs(10),
            "cancelled tasks still run: a {} b {}",
            running("a"),
            running("b")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let bad = sb.corral(&["--data-dir", "a", "job", "nope"]);
    assert_code(&bad, 1);
    assert!(text(&bad.stderr).contains("nope"), "{}", text(&bad.stderr));

    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = (a.wait(), b.wait());
}
