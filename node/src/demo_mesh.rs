//! The local mesh of `corral demo`: a few daemons on loopback, each with its
//! own temporary data dir, all in a fresh mesh, bootstrapped with `--peer`
//! (mDNS does not run on loopback). No root and no set-up needed; the
//! daemons leave and the directories are removed at the end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cmd::mesh::{create_mesh, join_mesh, make_invite};
use crate::control::{self, Request};

/// The devices of the demo mesh.
pub const DEVICES: [&str; 3] = ["laptop", "desktop", "pi"];

/// A running local mesh; stopped on drop.
pub struct LocalMesh {
    root: tempfile::TempDir,
    daemons: Vec<(PathBuf, Child)>,
}

impl LocalMesh {
    /// Creates the mesh and starts one daemon per device; returns once every
    /// device sees every other.
    pub fn start() -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("corral-demo-mesh-")
            .tempdir()
            .context("cannot create the demo mesh's directory")?;
        let mut mesh = Self {
            root,
            daemons: Vec::new(),
        };
        let first = mesh.dir(0);
        std::fs::create_dir_all(&first)?;
        create_mesh(&first, DEVICES[0])?;
        mesh.spawn(&first, &[])?;
        let invite = make_invite(&first, DEVICES[0].into(), Vec::new(), Vec::new())?;
        // Each device is given every one started before it: without mDNS
        // that is how it connects to them, and a device counts only the
        // peers it is connected to (an advert relayed for one it has no
        // connection to is not taken).
        let mut addresses = vec![loopback_address(&first)?];
        for (i, name) in DEVICES.iter().enumerate().skip(1) {
            let dir = mesh.dir(i);
            std::fs::create_dir_all(&dir)?;
            join_mesh(&dir, &invite, name)?;
            mesh.spawn(&dir, &addresses)?;
            addresses.push(loopback_address(&dir)?);
        }
        mesh.wait_until_complete(Duration::from_secs(30))?;
        Ok(mesh)
    }

    /// The data dir of device `i`.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.root.path().join(DEVICES[i])
    }

    fn spawn(&mut self, dir: &Path, peers: &[String]) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the corral binary")?;
        let mut command = Command::new(exe);
        command
            .arg("--data-dir")
            .arg(dir)
            .args(["up", "--no-mdns", "--share", "always", "--slots", "1"])
            .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_remove("RUST_LOG");
        for peer in peers {
            command.args(["--peer", peer]);
        }
        // One live page for the demo mesh: the first device's (the others'
        // would only find its port taken), on any free port of loopback:
        // a `corral up` or another demo on this machine may hold the usual
        // one, and checking first would race with them. Its URL is printed.
        if peers.is_empty() {
            command.args(["--http", "127.0.0.1:0"]);
        } else {
            command.arg("--no-http");
        }
        // The "pi" runs the interpreter, as a 32-bit ARM board would.
        if dir.ends_with("pi") {
            command.args(["--engine", "interp"]);
        }
        let child = command.spawn().context("cannot start a demo daemon")?;
        self.daemons.push((dir.to_path_buf(), child));
        let started = Instant::now();
        while !control::client::daemon_running(dir) {
            if started.elapsed() > Duration::from_secs(60) {
                anyhow::bail!("a demo daemon did not start within a minute");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    fn wait_until_complete(&self, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let want = self.daemons.len() - 1;
        loop {
            let complete = self.daemons.iter().all(|(dir, _)| {
                control::client::call(dir, Request::Peers)
                    .ok()
                    .and_then(|v| v.as_array().map(Vec::len))
                    == Some(want)
            });
            if complete {
                return Ok(());
            }
            if started.elapsed() > limit {
                anyhow::bail!("the demo mesh did not form within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The peers as the first device sees them.
    pub fn peers(&self) -> anyhow::Result<serde_json::Value> {
        control::client::call(&self.daemons[0].0, Request::Peers)
    }

    /// The first device's status.
    pub fn status(&self) -> anyhow::Result<serde_json::Value> {
        control::client::call(&self.daemons[0].0, Request::Status)
    }

    /// The address of the live page the first device serves, if it does.
    pub fn page(&self) -> Option<std::net::SocketAddr> {
        self.status().ok()?["http"].as_str()?.parse().ok()
    }

    /// Every device leaves the mesh.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for (dir, _) in &self.daemons {
            let _ = control::client::call(dir, Request::Leave);
        }
        for (_, child) in &mut self.daemons {
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.daemons.clear();
    }
}

impl Drop for LocalMesh {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn loopback_address(dir: &Path) -> anyhow::Result<String> {
    let started = Instant::now();
    loop {
        let status = control::client::call(dir, Request::Status)?;
        let found = status["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .find(|a| a.starts_with("/ip4/127."))
            .map(String::from);
        if let Some(address) = found {
            return Ok(address);
        }
        if started.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("a demo daemon has no loopback address");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
