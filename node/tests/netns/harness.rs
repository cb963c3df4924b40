//! Namespaces, veth pairs, a bridge, and one daemon per host.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A set of hosts on one bridge; everything is torn down on drop.
pub struct Lan {
    prefix: String,
    bridge_ns: String,
    hosts: Vec<Host>,
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

/// A corral built for another CPU, run under Debian's qemu-user.
#[derive(Clone, Debug)]
pub struct Emulated {
    /// `qemu-aarch64` or `qemu-arm`.
    pub qemu: &'static str,
    /// The target's libraries (Debian's `libc6-*-cross`).
    pub sysroot: &'static str,
    /// The cross-built `corral`.
    pub bin: PathBuf,
}

impl Emulated {
    /// The cross build for `triple`, from `CORRAL_CROSS_TARGET_DIR` (default:
    /// the workspace's target dir), debug profile unless
    /// `CORRAL_CROSS_PROFILE` says otherwise; why not, if it or qemu is
    /// missing.
    pub fn find(triple: &str) -> Result<Self, String> {
        let (qemu, sysroot) = match triple {
            "aarch64-unknown-linux-gnu" => ("qemu-aarch64", "/usr/aarch64-linux-gnu"),
            "armv7-unknown-linux-gnueabihf" => ("qemu-arm", "/usr/arm-linux-gnueabihf"),
            other => return Err(format!("no emulator known for {other}")),
        };
        let dir = std::env::var_os("CORRAL_CROSS_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let profile = std::env::var("CORRAL_CROSS_PROFILE").unwrap_or_else(|_| "debug".into());
        let bin = dir.join(triple).join(profile).join("corral");
        if !bin.exists() {
            return Err(format!(
                "{} is missing (scripts/cross {triple} builds it)",
                bin.display()
            ));
        }
        let found = Command::new(qemu)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(format!("{qemu} is missing (Debian package qemu-user)"));
        }
        Ok(Self { qemu, sysroot, bin })
    }

    /// A command running the emulated corral.
    pub fn command(&self) -> Command {
        let mut c = Command::new(self.qemu);
        c.arg("-L").arg(self.sysroot).arg(&self.bin);
        c
    }
}

pub fn corral() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
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
            scratch: tempfile::tempdir().expect("tempdir"),
        };
        for _ in 0..n {
            lan.add_host();
        }
        lan
    }

    /// Adds one more host to the bridge; returns its index.
    pub fn add_host(&mut self) -> usize {
        let i = self.hosts.len();
        let ns = format!("{}h{i}", self.prefix);
        ip(&["netns", "add", &ns]);
        let (veth, peer) = (format!("v{i}"), format!("{}p{i}", self.prefix));
        ip(&[
            "link",
            "add",
            &veth,
            "netns",
            &ns,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
            "netns",
            &self.bridge_ns,
        ]);
        ip(&["-n", &self.bridge_ns, "link", "set", &peer, "master", "br0"]);
        ip(&["-n", &self.bridge_ns, "link", "set", &peer, "up"]);
        // Each LAN is its own bridge in its own namespaces, so every LAN can
        // use the same private subnet.
        let addr = format!("10.77.0.{}", i + 1);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            &veth,
        ]);
        ip(&["-n", &ns, "link", "set", &veth, "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
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

    /// Makes host i a device of another CPU: its daemon is the cross build
    /// under qemu-user. Calibrates its engines first, in the emulator (the
    /// daemon would start the calibration as a child process, and a foreign
    /// binary cannot be started without binfmt_misc).
    pub fn emulate(&mut self, i: usize, emulated: Emulated) {
        let out = emulated
            .command()
            .arg("--data-dir")
            .arg(&self.hosts[i].data)
            .args(["bench", "--json"])
            .output()
            .expect("qemu runs");
        assert!(
            out.status.success(),
            "calibration of host {i} under {}: {}",
            emulated.qemu,
            String::from_utf8_lossy(&out.stderr)
        );
        self.hosts[i].emulated = Some(emulated);
    }

    /// Starts `corral up` inside host i's namespace and waits for its socket.
    pub fn up(&mut self, i: usize) {
        self.up_with(i, &[]);
    }

    /// As [`Lan::up`], with extra `corral up` arguments.
    pub fn up_with(&mut self, i: usize, extra: &[&str]) {
        self.up_opts(i, extra, &[], None);
    }

    /// Starts `corral up` with extra flags, extra environment variables, and
    /// optionally held to `cpu_pct` percent of one CPU by a cgroup quota (a
    /// slow device: its calibration and its tasks run under the quota).
    pub fn up_opts(
        &mut self,
        i: usize,
        extra: &[&str],
        env: &[(&str, &str)],
        cpu_pct: Option<u32>,
    ) {
        let prefix = self.prefix.clone();
        let host = &mut self.hosts[i];
        let log = std::fs::File::create(&host.log).expect("log file");
        let group = cpu_pct.map(|pct| cpu_cgroup(&format!("{prefix}h{i}"), pct));
        let mut command = match &group {
            Some(group) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(
                        "echo $$ > {} && exec \"$@\"",
                        group.procs.display()
                    ))
                    .arg("sh")
                    .arg("ip");
                c
            }
            None => Command::new("ip"),
        };
        command.args(["netns", "exec", &host.ns]);
        if let Some(group) = &group {
            // `ip netns exec` mounts a fresh /sys, without the cgroup
            // hierarchy; mount it again (in the namespace's own mount
            // table), so the daemon sees its limit as on a real device.
            command
                .args(["sh", "-c"])
                .arg(format!("{}; exec \"$@\"", group.mount))
                .arg("sh");
        }
        match &host.emulated {
            Some(e) => command.arg(e.qemu).arg("-L").arg(e.sysroot).arg(&e.bin),
            None => command.arg(corral()),
        };
        let child = command
            .arg("--data-dir")
            .arg(&host.data)
            .arg("up")
            .args(if extra.contains(&"--share") {
                &[][..]
            } else {
                &["--share", "always"][..]
            })
            .args(extra)
            .envs(env.iter().copied())
            .env(
                "RUST_LOG",
                std::env::var("CORRAL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("corral up starts");
        host.daemon = Some(child);
        let socket = host.data.join("corral.sock");
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("host {i}'s daemon did not start:\n{}", self.log(i));
    }

    /// The pid of host i's daemon, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.hosts[i].daemon.as_ref().map(Child::id)
    }

    /// Holds host i's running daemon to `pct` percent of one CPU from now
    /// on: a cgroup limit set under it, as an owner or a container manager
    /// might. The daemon cannot read this limit (`ip netns exec` gave it a
    /// /sys without the cgroup hierarchy); only its runs can show it.
    pub fn throttle(&self, i: usize, pct: u32) {
        let pid = self.pid(i).expect("the daemon runs");
        let group = cpu_cgroup(&self.hosts[i].ns, pct);
        std::fs::write(&group.procs, pid.to_string()).expect("the daemon moves into the cgroup");
    }

    /// Kills host i's daemon with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.hosts[i].daemon.take() {
            // `ip netns exec` execs the daemon, so the child is the daemon.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM to host i's daemon (what `systemctl stop` does).
    pub fn terminate(&self, i: usize) {
        if let Some(child) = &self.hosts[i].daemon {
            let status = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            assert!(status.is_ok_and(|s| s.success()), "kill -TERM");
        }
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

    /// Waits for host i's daemon to exit by itself (after `leave` or
    /// SIGTERM) and returns whether it exited successfully.
    pub fn wait_exit(&mut self, i: usize) -> bool {
        if let Some(mut child) = self.hosts[i].daemon.take() {
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(10) {
                if let Some(status) = child.try_wait().ok().flatten() {
                    return status.success();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            panic!("host {i} did not exit after leave");
        }
        false
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.hosts[i].log).unwrap_or_default()
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
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .status();
    }
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

/// A CPU cgroup made for a slow host.
pub struct CpuGroup {
    /// The file a process writes its pid to to join it.
    pub procs: PathBuf,
    /// Shell commands that mount its hierarchy at the usual place under a
    /// fresh /sys.
    pub mount: String,
}

/// Creates a CPU cgroup limited to `pct` percent of one CPU (cgroup v1's
/// cpu controller or cgroup v2's cpu.max). It is removed when the test
/// process ends only if empty; names are unique per LAN.
pub fn cpu_cgroup(name: &str, pct: u32) -> CpuGroup {
    let quota = u64::from(pct) * 1000;
    let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        let dir = v1.join(format!("corral-{name}"));
        std::fs::create_dir_all(&dir).expect("cgroup v1 dir");
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").expect("period");
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).expect("quota");
        // The hierarchy's mount point and controllers as mounted here (cpu
        // alone, or with cpuacct, behind a `cpu` symlink): mounting it again
        // needs the same set.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (point, controllers) = corral_node::capacity::cgroup_mounts(&mounts)
            .into_iter()
            .find(|m| m.has_v1_cpu())
            .map(|m| (m.point.display().to_string(), m.controllers.join(",")))
            .unwrap_or_else(|| ("/sys/fs/cgroup/cpu".into(), "cpu".into()));
        return CpuGroup {
            procs: dir.join("cgroup.procs"),
            mount: format!(
                "mount -t tmpfs cgroup /sys/fs/cgroup && mkdir -p {point} \
                 && mount -t cgroup -o {controllers} cgroup {point}"
            ),
        };
    }
    let v2 = PathBuf::from("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    assert!(
        controllers.split_whitespace().any(|c| c == "cpu"),
        "no cgroup CPU controller (v1 /sys/fs/cgroup/cpu or v2 cpu) to hold a slow host"
    );
    let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
    let dir = v2.join(format!("corral-{name}"));
    std::fs::create_dir_all(&dir).expect("cgroup v2 dir");
    std::fs::write(dir.join("cpu.max"), format!("{quota} 100000")).expect("cpu.max");
    CpuGroup {
        procs: dir.join("cgroup.procs"),
        mount: "mount -t cgroup2 cgroup2 /sys/fs/cgroup".into(),
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
