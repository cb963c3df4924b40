//! The systemd units in `dist/`: systemd accepts them, and the system unit's
//! command line, run as an unprivileged user the way systemd runs it, starts
//! a daemon that answers and stops cleanly on the unit's stop signal.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::text;

fn unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The values of `key=` in the unit, in order.
fn values(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(|v| v.trim().to_string())
        .collect()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| text(&o.stdout).trim() == "0")
}

#[test]
fn systemd_accepts_the_units() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("\n!!! SKIPPING the unit check: systemd-analyze is missing !!!\n");
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    for (name, exec) in [
        ("corral.service", "/usr/local/bin/corral"),
        ("corral-user.service", "%h/.cargo/bin/corral"),
    ] {
        let text_of = unit(name);
        assert!(text_of.contains(exec), "{name} starts {exec}");
        // systemd checks that the binary exists: point it at this build.
        let checked = scratch.path().join(name);
        std::fs::write(
            &checked,
            text_of.replace(exec, env!("CARGO_BIN_EXE_corral")),
        )
        .expect("write unit");
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&checked)
            .output()
            .expect("systemd-analyze runs");
        // systemd exits 0 on unknown keys and bad values ("ignoring"): any
        // complaint about the unit is a failure here.
        let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "{name}: {said}");
        assert!(
            !said.contains(&checked.display().to_string()),
            "systemd complained about {name}:\n{said}"
        );
    }
}

#[test]
fn the_system_unit_runs_the_daemon_as_its_own_user_and_stops_it_cleanly() {
    if !is_root() {
        eprintln!("\n!!! SKIPPING the service-user check: not running as root !!!\n");
        return;
    }
    let unit = unit("corral.service");
    let exec = values(&unit, "ExecStart");
    assert_eq!(exec, ["/usr/local/bin/corral up"]);
    assert_eq!(values(&unit, "User"), ["corral"]);
    assert_eq!(values(&unit, "KillSignal"), ["SIGTERM"]);
    assert!(values(&unit, "Restart").contains(&"on-failure".to_string()));
    let env: Vec<(String, String)> = values(&unit, "Environment")
        .iter()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.into(), v.into())))
        .collect();
    assert!(
        env.iter()
            .any(|(k, v)| k == "CORRAL_DATA_DIR" && v == "/var/lib/corral")
    );
    let stop_after: u64 = values(&unit, "TimeoutStopSec")[0].parse().expect("seconds");

    // The state directory as systemd makes it, owned by the service user
    // (here `nobody`: the test does not add users to the machine).
    let scratch = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let data: PathBuf = scratch.path().join("var-lib-corral");
    std::fs::create_dir(&data).expect("state dir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let chown = Command::new("chown")
        .args(["nobody:nogroup"])
        .arg(&data)
        .status()
        .expect("chown");
    assert!(chown.success());
    let as_service = |args: &[&str]| {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_corral"))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("CORRAL_DATA_DIR", &data)
            .stdin(Stdio::null());
        c
    };
    // `corral join TOKEN` in the README; `init` here, with no other device.
    let out = as_service(&["init", "--name", "pi-test"])
        .output()
        .expect("init runs");
    assert!(out.status.success(), "init: {}", text(&out.stderr));

    // ExecStart, with the unit's environment (the data dir is the temporary
    // one; multicast stays on, as on a Pi).
    let mut daemon = as_service(&["up"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral up starts");
    let socket = data.join("corral.sock");
    let started = Instant::now();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = daemon.try_wait().expect("wait") {
            let out = daemon.wait_with_output().expect("output");
            panic!("the daemon exited {status}: {}", text(&out.stderr));
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = as_service(&["status", "--json"]).output().expect("status");
    assert!(out.status.success(), "status: {}", text(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["name"], "pi-test");
    // Everything it wrote belongs to the service user.
    let owner = Command::new("find")
        .arg(&data)
        .args(["-not", "-user", "nobody"])
        .output()
        .expect("find");
    assert_eq!(
        text(&owner.stdout),
        "",
        "files not owned by the service user"
    );

    // `systemctl stop`: the unit's KillSignal, then TimeoutStopSec.
    let kill = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let stopping = Instant::now();
    loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            assert!(status.success(), "the daemon exited {status} on SIGTERM");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(stop_after),
            "the daemon outlived TimeoutStopSec={stop_after}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("measured: stopped {:?} after SIGTERM", stopping.elapsed());
    assert!(!socket.exists(), "the control socket was left behind");
}
