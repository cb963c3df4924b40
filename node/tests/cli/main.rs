//! `corral` as a user runs it: the real binary, real modules from
//! `examples/wasm`, real files. One integration binary for the whole CLI.

#![allow(missing_docs, unreachable_pub, clippy::new_without_default)]

mod batch;
mod dashboard;
mod durable;
mod examples;
mod install;
mod leave;
mod mesh;
mod modules;
mod offload;
mod preopens;
mod serve;
mod shipping;
mod single;
mod tiers;
mod tokens;
#[path = "../common/web.rs"]
mod web;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A scratch area with its own data dir, removed at the end of the test.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `corral ARGS` with this sandbox's data dir and no stdin.
    pub fn corral(&self, args: &[&str]) -> Output {
        self.corral_with_stdin(args, b"")
    }

    /// `corral status --json` of the daemon using data dir `data` (null when
    /// it does not answer).
    pub fn status(&self, data: &str) -> serde_json::Value {
        serde_json::from_slice(
            &self
                .corral(&["--data-dir", data, "status", "--json"])
                .stdout,
        )
        .unwrap_or_default()
    }

    /// The first address the daemon using data dir `data` listens on.
    pub fn address(&self, data: &str) -> String {
        self.status(data)["addresses"][0]
            .as_str()
            .expect("the daemon reports an address")
            .to_string()
    }

    /// `corral run testkit --detach ARGS` through daemon `a`: the job's id.
    pub fn detach(&self, args: &[&str]) -> String {
        let tk = module("testkit");
        let mut full = vec!["--data-dir", "a", "run", tk.as_str(), "--detach"];
        full.extend(args);
        let out = self.corral(&full);
        assert_code(&out, 0);
        text(&out.stdout).trim().to_string()
    }

    /// `corral job ID --json` of daemon `a` (null when it fails).
    pub fn job(&self, id: &str) -> serde_json::Value {
        serde_json::from_slice(
            &self
                .corral(&["--data-dir", "a", "job", id, "--json"])
                .stdout,
        )
        .unwrap_or_default()
    }

    /// Data dir `a` starts a mesh as `name`: the token of `corral invite
    /// ARGS`.
    pub fn mesh_and_token(&self, name: &str, args: &[&str]) -> String {
        assert_code(
            &self.corral(&["--data-dir", "a", "init", "--name", name]),
            0,
        );
        let mut full = vec!["--data-dir", "a", "invite"];
        full.extend(args);
        let invite = self.corral(&full);
        assert_code(&invite, 0);
        text(&invite.stdout).trim().to_string()
    }

    /// Data dir `a` starts a mesh as `a_name`; `b` joins it by invite as
    /// `b_name` (trusting `a` as a submitter).
    pub fn mesh_of_two(&self, a_name: &str, b_name: &str) {
        let token = self.mesh_and_token(a_name, &[]);
        assert_code(
            &self.corral(&["--data-dir", "b", "join", &token, "--name", b_name]),
            0,
        );
    }

    /// Data dirs `a` and `b` of [`Self::mesh_of_two`] (`laptop`, `desk`) up:
    /// `a` a coordinator that runs nothing itself, `b` a worker with one
    /// slot and the `extra` flags, dialling `a`.
    pub fn pair(&self, extra: &[&str]) -> (Child, Child) {
        self.mesh_of_two("laptop", "desk");
        let a = self.daemon("a", &["--share", "never"], &[], &[]);
        let addr = self.address("a");
        let mut flags = vec!["--slots", "1"];
        flags.extend(extra);
        flags.extend(["--peer", addr.as_str()]);
        let b = self.daemon("b", &["--share", "always"], &flags, &[]);
        (a, b)
    }

    /// `corral ARGS` as the sandbox runs it (its default data dir, no
    /// RUST_LOG, in the sandbox), for a caller that sets up its stdio.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_corral"));
        command
            .args(args)
            .env("CORRAL_DATA_DIR", self.path("data"))
            .env_remove("RUST_LOG")
            .current_dir(self.dir.path());
        command
    }

    /// Starts `corral up` on data dir `data` (loopback, no mDNS) with the
    /// `share` and `extra` flags and `env`, and waits for its socket.
    pub fn daemon(
        &self,
        data: &str,
        share: &[&str],
        extra: &[&str],
        env: &[(&str, &Path)],
    ) -> Child {
        let child = self
            .command(&["--data-dir", data, "up", "--no-mdns"])
            .args(share)
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("corral up starts");
        let socket = self.path(data).join("corral.sock");
        wait_until("the daemon did not start", Duration::from_secs(60), || {
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        child
    }

    /// One raw request line to data dir `data`'s daemon; its answer.
    pub fn control(&self, data: &str, request: &serde_json::Value) -> serde_json::Value {
        use std::io::{BufRead, Write};
        let mut socket =
            std::os::unix::net::UnixStream::connect(self.path(data).join("corral.sock"))
                .expect("control socket");
        writeln!(socket, "{request}").expect("request sent");
        let mut line = String::new();
        std::io::BufReader::new(socket)
            .read_line(&mut line)
            .expect("answer");
        serde_json::from_str(&line).expect("json")
    }

    pub fn corral_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("corral starts");
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(stdin).expect("write stdin");
        drop(pipe);
        child.wait_with_output().expect("corral ends")
    }
}

/// Stops a daemon a test started when the test ends, passed or not.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of a bundled module.
pub fn module(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm")
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// The examples directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Polls `done` every 50 ms until it holds; fails saying `what` after `limit`.
#[track_caller]
pub fn wait_until(what: &str, limit: std::time::Duration, done: impl Fn() -> bool) {
    let started = std::time::Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts the exit code, showing stderr when it is not the expected one.
#[track_caller]
pub fn assert_code(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// Reads and parses OUT/job.json.
pub fn job_json(out: &Path) -> serde_json::Value {
    let raw = std::fs::read(out.join("job.json")).expect("job.json exists");
    serde_json::from_slice(&raw).expect("job.json is JSON")
}
