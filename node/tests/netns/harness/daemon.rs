//! Each host's daemon: `corral up` started inside the host's namespace
//! (optionally emulated or under a CPU quota), its pid and log, and
//! stopping it (SIGKILL, SIGTERM, or waiting for it to exit).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Emulated, Lan, cpu_cgroup};

pub fn corral() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

impl Lan {
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
}
