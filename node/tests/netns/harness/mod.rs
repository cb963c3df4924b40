//! The multi-host test harness: a LAN of network namespaces, veth pairs
//! into a bridge in its own namespace, and one daemon per host; everything
//! is torn down on drop.
//!
//! This file holds the LAN itself (namespaces, links, teardown); `daemon`
//! starts and stops each host's `corral up`, `cli` runs the CLI against a
//! host and joins hosts into a mesh, `cgroup` holds a host to a CPU share,
//! `emulated` runs a cross-built daemon under qemu-user, and `nat` puts
//! hosts behind NAT routers.

mod cgroup;
mod cli;
mod daemon;
mod emulated;
mod nat;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use cgroup::cpu_cgroup;
pub use cli::{join, make_mesh};
pub use daemon::corral;
pub use emulated::Emulated;
pub use nat::{Nat, nft_available};

/// Whether this process may create namespaces. Prints why not, loudly, and
/// panics instead when CI demands the multi-host tests.
pub fn netns_available() -> bool {
    let root = nix_is_root();
    let ip = Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if root && ip {
        return true;
    }
    let why = if !root {
        "not running as root"
    } else {
        "the `ip` command (iproute2) is missing"
    };
    if std::env::var_os("CORRAL_REQUIRE_NETNS").is_some_and(|v| v == "1") {
        panic!("multi-host tests cannot run: {why}, and CORRAL_REQUIRE_NETNS=1 forbids skipping");
    }
    eprintln!(
        "\n!!! SKIPPING multi-host network-namespace tests: {why}. Run as root to include them. !!!\n"
    );
    false
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Links namespace `ns` (device `dev`, address `cidr`) by a veth pair to
/// bridge `bridge` in namespace `bridge_ns` (where its end is `peer`), and
/// brings both ends and `ns`'s loopback up.
fn plug((ns, dev, cidr): (&str, &str, &str), (bridge_ns, bridge, peer): (&str, &str, &str)) {
    ip(&[
        "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", peer, "netns", bridge_ns,
    ]);
    ip(&["-n", bridge_ns, "link", "set", peer, "master", bridge]);
    ip(&["-n", bridge_ns, "link", "set", peer, "up"]);
    ip(&["-n", ns, "addr", "add", cidr, "dev", dev]);
    ip(&["-n", ns, "link", "set", dev, "up"]);
    ip(&["-n", ns, "link", "set", "lo", "up"]);
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A set of hosts on one bridge; everything is torn down on drop.
pub struct Lan {
    prefix: String,
    bridge_ns: String,
    hosts: Vec<Host>,
    /// NAT routers' namespaces ([`nat`]).
    routers: Vec<String>,
    pub scratch: tempfile::TempDir,
}

/// One host: a namespace, an address, a data dir and maybe a daemon.
pub struct Host {
    pub ns: String,
    pub addr: String,
    pub data: PathBuf,
    daemon: Option<Child>,
    log: PathBuf,
    /// Runs a cross-built daemon under qemu-user instead of this build's.
    emulated: Option<Emulated>,
}

impl Lan {
    /// Creates `n` hosts on a fresh bridge.
    pub fn new(n: usize) -> Self {
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("cr{}x{id}", std::process::id() % 100_000);
        let bridge_ns = format!("{prefix}b");
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        let mut lan = Self {
            prefix,
            bridge_ns,
            hosts: Vec::new(),
            routers: Vec::new(),
            scratch: tempfile::tempdir().expect("tempdir"),
        };
        for _ in 0..n {
            lan.add_host();
        }
        lan
    }

    /// Adds one more host to the bridge; returns its index.
    pub fn add_host(&mut self) -> usize {
        // Each LAN is its own bridge in its own namespaces, so every LAN can
        // use the same private subnet.
        let addr = format!("10.77.0.{}", self.hosts.len() + 1);
        let bridge_ns = self.bridge_ns.clone();
        self.add_host_on(&bridge_ns, "br0", addr)
    }

    /// Adds a host with address `addr` (a /24) on bridge `bridge` of
    /// namespace `bridge_ns`, multicast (mDNS) routed on its link; returns
    /// its index. Its link is `v{index}` (see [`Lan::set_link`]).
    fn add_host_on(&mut self, bridge_ns: &str, bridge: &str, addr: String) -> usize {
        let i = self.hosts.len();
        let ns = format!("{}h{i}", self.prefix);
        ip(&["netns", "add", &ns]);
        let veth = format!("v{i}");
        plug(
            (&ns, &veth, &format!("{addr}/24")),
            (bridge_ns, bridge, &format!("{}p{i}", self.prefix)),
        );
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &veth]);
        let data = self.scratch.path().join(format!("host{i}"));
        let log = self.scratch.path().join(format!("host{i}.log"));
        self.hosts.push(Host {
            ns,
            addr,
            data,
            daemon: None,
            log,
            emulated: None,
        });
        i
    }

    pub fn host(&self, i: usize) -> &Host {
        &self.hosts[i]
    }

    /// Cuts (or restores) host i's link to the bridge.
    pub fn set_link(&self, i: usize, up: bool) {
        let ns = &self.hosts[i].ns;
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            &format!("v{i}"),
            if up { "up" } else { "down" },
        ]);
        if up {
            // Bringing the link down removed its routes.
            let _ = Command::new("ip")
                .args([
                    "-n",
                    ns,
                    "route",
                    "replace",
                    "224.0.0.0/4",
                    "dev",
                    &format!("v{i}"),
                ])
                .status();
        }
    }

    /// Bytes host i has sent on its LAN interface.
    pub fn tx_bytes(&self, i: usize) -> u64 {
        let out = Command::new("ip")
            .args([
                "-n",
                &self.hosts[i].ns,
                "-s",
                "-j",
                "link",
                "show",
                &format!("v{i}"),
            ])
            .output()
            .expect("ip link show");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
        v[0]["stats64"]["tx"]["bytes"].as_u64().expect("tx bytes")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.hosts.len() {
            self.kill(i);
        }
        for host in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &host.ns]).status();
            for root in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"] {
                let _ = std::fs::remove_dir(format!("{root}/corral-{}", host.ns));
            }
        }
        for router in &self.routers {
            let _ = Command::new("ip").args(["netns", "del", router]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .status();
    }
}
