//! The CLI against a host's data dir (outside the namespace: the control
//! socket is a file), what hosts report about themselves and each other,
//! polling, and joining hosts into one mesh.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Lan, corral};

impl Lan {
    /// Host i's listen address on the LAN, as a multiaddr.
    pub fn lan_addr(&self, i: usize) -> String {
        let out = self.cli(i, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        v["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .find(|a| a.starts_with(&format!("/ip4/{}/", self.hosts[i].addr)))
            .expect("a LAN address")
            .to_string()
    }

    /// `corral ARGS` against host i's data dir (outside the namespace: the
    /// control socket is a file).
    pub fn cli(&self, i: usize, args: &[&str]) -> std::process::Output {
        self.cli_command(i, args).output().expect("corral runs")
    }

    /// The command [`Lan::cli`] runs, to start it in the background.
    pub fn cli_command(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new(corral());
        c.arg("--data-dir").arg(&self.hosts[i].data).args(args);
        c
    }

    /// The peer ids host i sees.
    pub fn peers_of(&self, i: usize) -> Vec<String> {
        let out = self.cli(i, &["peers", "--json"]);
        if !out.status.success() {
            return Vec::new();
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["id"].as_str().map(String::from))
            .collect()
    }

    /// The peers host i has a capacity advert of (those placement can use;
    /// a peer is listed from its connection, its advert comes a moment
    /// later).
    pub fn advertised_peers_of(&self, i: usize) -> Vec<String> {
        let out = self.cli(i, &["peers", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["slots_total"].is_u64())
            .filter_map(|p| p["id"].as_str().map(String::from))
            .collect()
    }

    /// Host i's peer id.
    pub fn id_of(&self, i: usize) -> String {
        let out = self.cli(i, &["status", "--json"]);
        assert!(
            out.status.success(),
            "status of host {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// Polls until `check` holds; returns how long it took.
    pub fn wait_for(&self, what: &str, limit: Duration, check: impl Fn() -> bool) -> Duration {
        let started = Instant::now();
        while started.elapsed() < limit {
            if check() {
                return started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let logs: String = (0..self.hosts.len())
            .map(|i| format!("--- host {i} ---\n{}", tail(&self.log(i), 30)))
            .collect();
        panic!("timed out after {limit:?} waiting for {what}\n{logs}");
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Sets host 0 up as a new mesh and joins the others to it by token.
pub fn make_mesh(lan: &Lan, hosts: &[usize]) {
    let first = hosts[0];
    let out = lan.cli(first, &["init", "--name", &format!("host{first}")]);
    assert!(
        out.status.success(),
        "init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for &i in &hosts[1..] {
        join(lan, first, i);
    }
}

/// Joins host `i` to the mesh of host `inviter`.
pub fn join(lan: &Lan, inviter: usize, i: usize) {
    let token = lan.cli(inviter, &["invite"]);
    assert!(
        token.status.success(),
        "invite: {}",
        String::from_utf8_lossy(&token.stderr)
    );
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let out = lan.cli(i, &["join", &token, "--name", &format!("host{i}")]);
    assert!(
        out.status.success(),
        "join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
