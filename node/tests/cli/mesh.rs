//! The mesh commands on one machine: identity and keys, tokens, trust, the
//! daemon's lock on its data dir, the control socket's errors. (Multi-host
//! behaviour is in `tests/netns`.)

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Sandbox, assert_code, text};

fn up(sb: &Sandbox, data: &str) -> Child {
    sb.daemon(data, &["--share", "always"], &[], &[])
}

#[test]
fn init_invite_join_and_trust() {
    let sb = Sandbox::new();
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "laptop"]),
        0,
    );
    for file in ["node.key", "swarm.key"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sb.path("a").join(file))
            .expect(file)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let key = std::fs::read_to_string(sb.path("a/swarm.key")).expect("swarm.key");
    assert!(
        key.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"),
        "{key}"
    );
    // A second init on the same dir refuses to overwrite the identity.
    assert_code(&sb.corral(&["--data-dir", "a", "init"]), 2);

    let invite = sb.corral(&["--data-dir", "a", "invite"]);
    assert_code(&invite, 0);
    let token = text(&invite.stdout);
    assert_eq!(
        token.lines().count(),
        1,
        "only the token on stdout: {token}"
    );
    assert!(token.starts_with("corral3"));

    let damaged = format!("{}00", token.trim());
    let out = sb.corral(&["--data-dir", "b", "join", &damaged]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("damaged"),
        "{}",
        text(&out.stderr)
    );
    assert_code(
        &sb.corral(&["--data-dir", "b", "join", token.trim(), "--name", "pi"]),
        0,
    );
    assert_eq!(
        std::fs::read(sb.path("a/swarm.key")).ok(),
        std::fs::read(sb.path("b/swarm.key")).ok()
    );

    // b trusts a (the inviter) and itself.
    let list = sb.corral(&["--data-dir", "b", "trust", "list", "--json"]);
    assert_code(&list, 0);
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"laptop") && names.contains(&"pi"),
        "{names:?}"
    );
    let stranger = "ab".repeat(32);
    assert_code(
        &sb.corral(&["--data-dir", "b", "trust", "add", &stranger, "--name", "x"]),
        0,
    );
    assert_code(
        &sb.corral(&["--data-dir", "b", "trust", "remove", &stranger]),
        0,
    );
    assert_code(
        &sb.corral(&["--data-dir", "b", "trust", "remove", &stranger]),
        2,
    );
    assert_code(
        &sb.corral(&["--data-dir", "b", "trust", "add", "not-a-key"]),
        2,
    );
}

#[test]
fn a_bad_mesh_key_is_refused_with_its_defect() {
    let sb = Sandbox::new();
    assert_code(&sb.corral(&["--data-dir", "a", "init"]), 0);
    std::fs::write(
        sb.path("a/swarm.key"),
        "/key/swarm/psk/1.0.0/\n/base16/\nabcdef\n",
    )
    .expect("write");
    let out = sb.corral(&["--data-dir", "a", "up", "--no-mdns"]);
    assert_code(&out, 1);
    assert!(
        text(&out.stderr).contains("6 hex digits"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn one_daemon_per_data_dir_and_the_cli_talks_to_it() {
    let sb = Sandbox::new();
    let out = sb.corral(&["--data-dir", "a", "status"]);
    assert_code(&out, 1);
    assert!(
        text(&out.stderr).contains("corral init"),
        "{}",
        text(&out.stderr)
    );
    assert_code(
        &sb.corral(&["--data-dir", "a", "init", "--name", "solo"]),
        0,
    );
    let out = sb.corral(&["--data-dir", "a", "status"]);
    assert!(
        text(&out.stderr).contains("corral up"),
        "{}",
        text(&out.stderr)
    );

    let mut daemon = up(&sb, "a");
    let second = sb.corral(&["--data-dir", "a", "up", "--no-mdns"]);
    assert_code(&second, 2);
    assert!(
        text(&second.stderr).contains("already running"),
        "{}",
        text(&second.stderr)
    );

    let status = sb.corral(&["--data-dir", "a", "status", "--json"]);
    assert_code(&status, 0);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(status["name"], "solo");
    assert_eq!(status["arch"], std::env::consts::ARCH);
    assert_eq!(status["share"], "always");
    assert!(
        status["engines"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "interp"))
    );
    assert!(
        status["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("12D3Koo"))
    );
    let peers = sb.corral(&["--data-dir", "a", "peers", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&peers.stdout).ok(),
        Some(serde_json::json!([]))
    );

    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let exited = daemon.wait().expect("daemon exits");
    assert!(exited.success(), "the daemon should exit 0 after leave");
    assert!(!sb.path("a/corral.sock").exists(), "the socket is removed");
}

#[test]
fn two_daemons_on_loopback_see_each_other_through_peer_bootstrap() {
    let sb = Sandbox::new();
    sb.mesh_of_two("one", "two");
    let mut a = up(&sb, "a");
    let addr = sb.address("a");
    let mut b = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--data-dir", "b", "up", "--no-mdns", "--share", "never"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--peer", &addr])
        .current_dir(sb.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("b starts");
    let started = Instant::now();
    let peers = loop {
        let out = sb.corral(&["--data-dir", "a", "peers", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v.as_array()
            .is_some_and(|p| p.len() == 1 && p[0]["name"] == "two")
        {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a never saw b: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // b shares nothing: its advert says so.
    assert_eq!(peers[0]["state"], "busy");
    assert_eq!(peers[0]["slots_free"], 0);
    assert!(peers[0]["speed"]["interp"].as_u64().is_some_and(|s| s > 0));
    assert_code(&sb.corral(&["--data-dir", "b", "leave"]), 0);
    assert_code(&sb.corral(&["--data-dir", "a", "leave"]), 0);
    let _ = (a.wait(), b.wait());
}
