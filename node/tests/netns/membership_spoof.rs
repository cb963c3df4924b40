//! mDNS is a hint (issue 18): a host without the mesh key floods the LAN
//! with fake instances of the mesh and forges goodbyes for a real member.
//! The victim's dial attempts and open sockets stay bounded, a real
//! newcomer still joins, and a forged goodbye drops no connected member.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Lan, join, make_mesh, netns_available};

const LIMIT: Duration = Duration::from_secs(30);

fn spoofer() -> &'static str {
    env!("CARGO_BIN_EXE_corral-mdns-spoof")
}

/// The spoofer, killed on drop.
struct Spoof(Child);

impl Spoof {
    fn start(lan: &Lan, host: usize, args: &[&str]) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", &lan.host(host).ns, spoofer()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the spoofer starts");
        Self(child)
    }
}

impl Drop for Spoof {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// TCP connections host i's namespace has begun (SYN sent): its
/// `/proc/net/snmp` ActiveOpens. Only the daemon dials in that namespace.
fn active_opens(lan: &Lan, i: usize) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &lan.host(i).ns, "cat", "/proc/net/snmp"])
        .output()
        .expect("read /proc/net/snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (
        tcp.next().expect("Tcp names"),
        tcp.next().expect("Tcp values"),
    );
    let at = names
        .split_whitespace()
        .position(|n| n == "ActiveOpens")
        .expect("ActiveOpens");
    values
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .expect("ActiveOpens value")
}

/// Sockets the process holds open.
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_flood_of_fake_announcements_keeps_dials_and_sockets_bounded() {
    if !netns_available() {
        return;
    }
    // Host 0 is the victim, host 1 a real member joining late, host 2 the
    // spoofer (no key). Fakes point at host 2, where nothing listens on
    // port 9 (refused), and at two addresses nobody holds (no answer).
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0]);
    lan.up(0);
    let pid = lan.pid(0).expect("victim runs");
    let base_sockets = open_sockets(pid);
    let spoofer_addr = lan.host(2).addr.clone();
    let _spoof = Spoof::start(
        &lan,
        2,
        &[
            "flood",
            "--count",
            "500",
            "--port",
            "9",
            "--addr",
            &spoofer_addr,
            "--addr",
            "10.77.0.201",
            "--addr",
            "10.77.0.202",
            "--secs",
            "300",
        ],
    );
    lan.wait_for("the victim to dial fakes", LIMIT, || {
        active_opens(&lan, 0) > 20
    });

    // Watch for 20 s: dial attempts per second and the most sockets held.
    let window = Duration::from_secs(20);
    let started = Instant::now();
    let opens_before = active_opens(&lan, 0);
    let mut most_sockets = 0;
    while started.elapsed() < window {
        most_sockets = most_sockets.max(open_sockets(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    let per_s = (active_opens(&lan, 0) - opens_before) as f64 / window.as_secs_f64();
    println!(
        "measured: under 500 fake announcements the victim began {per_s:.1} TCP connections/s \
         and held at most {most_sockets} sockets ({base_sockets} before the flood)"
    );

    // A real newcomer still joins.
    join(&lan, 0, 1);
    lan.up(1);
    let id1 = lan.id_of(1);
    let took = lan.wait_for("the real newcomer to join under the flood", LIMIT, || {
        lan.peers_of(0).contains(&id1)
    });
    println!("measured: a real member joined the flooded victim after {took:?}");

    assert!(
        per_s < 60.0,
        "the victim dialled {per_s:.1} times a second under the flood"
    );
    assert!(
        most_sockets < base_sockets + 48,
        "the victim held {most_sockets} sockets under the flood ({base_sockets} before)"
    );
}

#[test]
fn forged_goodbyes_do_not_drop_a_connected_member() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1]);
    lan.up(0);
    lan.up(1);
    let id1 = lan.id_of(1);
    lan.wait_for("host 0 to see host 1", LIMIT, || {
        lan.peers_of(0).contains(&id1)
    });
    // Time for host 0 to resolve host 1's instance by mDNS too (a
    // connection may come first, from host 1's side).
    std::thread::sleep(Duration::from_secs(4));
    // Host 0 gets no multicast any more (its bridge port floods none to
    // it), so host 1's mDNS answers cannot win the race against the forged
    // goodbyes, which the spoofer sends to host 0 directly.
    let prefix = lan.host(0).ns.strip_suffix("h0").expect("namespace name");
    let status = Command::new("bridge")
        .args(["-n", &format!("{prefix}b"), "link", "set", "dev"])
        .arg(format!("{prefix}p0"))
        .args(["mcast_flood", "off"])
        .status()
        .expect("bridge runs");
    assert!(status.success(), "bridge link set mcast_flood off");
    let to = lan.host(0).addr.clone();
    let _spoof = Spoof::start(
        &lan,
        2,
        &[
            "goodbye",
            "--peer",
            &id1,
            // Not faster: each goodbye restarts mdns-sd's 1 s expiry.
            "--every-ms",
            "3000",
            "--to",
            &to,
            "--secs",
            "300",
        ],
    );
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        assert!(
            lan.peers_of(0).contains(&id1),
            "a forged goodbye dropped host 1 from host 0's view after {:?}:\n{}",
            started.elapsed(),
            lan.log(0)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        lan.log(0).contains("mDNS removal"),
        "host 0 never saw a removal, so the test tested nothing:\n{}",
        lan.log(0)
    );
}
