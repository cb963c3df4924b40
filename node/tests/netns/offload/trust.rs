//! Trust: an untrusted submitter refused with the reason, and `--verify 2`
//! passing on honest workers and flagging a lying one.

use std::path::Path;

use super::*;

#[test]
fn an_untrusted_submitter_is_refused_with_the_reason() {
    if !netns_available() {
        return;
    }
    // Hosts 1 and 2 joined through host 0: they trust host 0 only, and
    // host 0 trusts nobody. Host 1 submits and shares nothing itself.
    let lan = mesh_of(3, &[&[], &["--share", "never"], &[]]);
    let module = testkit();
    let out = lan.cli(
        1,
        &[
            "run",
            &module,
            "--tasks",
            "2",
            "--out",
            "/tmp/corral-untrusted-out",
            "--",
            "args",
        ],
    );
    let _ = std::fs::remove_dir_all("/tmp/corral-untrusted-out");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    for host in ["host0", "host2"] {
        assert!(
            stderr.contains(&format!("{host} refused: submitter not trusted")),
            "{stderr}"
        );
    }
    // Trusted, the same job runs.
    let key: serde_json::Value =
        serde_json::from_slice(&lan.cli(1, &["status", "--json"]).stdout).expect("status");
    let key = key["key"].as_str().expect("key").to_string();
    ok(&lan.cli(2, &["trust", "add", &key, "--name", "host1"]));
    let out = lan.cli(1, &["run", &module, "--", "args", "trusted"]);
    ok(&out);
    assert_eq!(text(&out.stdout), "testkit.wasm\nargs\ntrusted\n");
}

#[test]
fn verify_passes_on_honest_workers_and_flags_a_lying_one() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(4);
    make_mesh(&lan, &[0, 1, 2, 3]);
    lan.up_with(0, &["--share", "never"]);
    lan.up_with(1, &["--slots", "1"]);
    lan.up_with(2, &["--slots", "1"]);
    let mut ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("host 0 to see hosts 1 and 2", LIMIT, || {
        let p = lan.peers_of(0);
        p.contains(&ids[1]) && p.contains(&ids[2])
    });
    let module = testkit();
    let scratch = tempfile::tempdir().expect("tempdir");
    let honest = scratch.path().join("honest").display().to_string();
    ok(&lan.cli(
        0,
        &[
            "run", &module, "--verify", "2", "--tasks", "4", "--out", &honest, "--", "args",
            "{task}",
        ],
    ));
    let job = job_json(Path::new(&honest));
    assert_eq!(job["mismatches"], 0);
    for task in job["tasks"].as_array().expect("tasks") {
        let runs = task["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 2, "{task}");
        assert_ne!(runs[0]["peer"], runs[1]["peer"], "two distinct devices");
        assert_eq!(runs[0]["stdout_sha256"], runs[1]["stdout_sha256"]);
    }

    // Host 3 lies about every result; host 2 leaves so it must take part.
    lan.up_opts(3, &["--slots", "1"], &[("CORRAL_TEST_FAULT", "lie")], None);
    ids.push(lan.id_of(3));
    assert!(lan.cli(2, &["leave"]).status.success());
    lan.wait_for("host 0 to see host 3 and not host 2", LIMIT, || {
        let p = lan.peers_of(0);
        p.contains(&ids[3]) && !p.contains(&ids[2])
    });
    lan.up_with(2, &["--slots", "1"]);
    lan.wait_for("host 0 to see host 2 again", LIMIT, || {
        lan.peers_of(0).contains(&ids[2])
    });
    let checked = scratch.path().join("checked").display().to_string();
    let out = lan.cli(
        0,
        &[
            "run", &module, "--verify", "2", "--tasks", "4", "--out", &checked, "--", "args",
            "{task}",
        ],
    );
    ok(&out);
    let job = job_json(Path::new(&checked));
    assert!(
        job["mismatches"].as_u64().unwrap_or(0) >= 1,
        "the liar was not caught: {job}"
    );
    assert!(
        text(&out.stderr).contains("different results"),
        "{}",
        text(&out.stderr)
    );
    let local = scratch.path().join("local");
    local_run(&local, &module, &["--tasks", "4", "--", "args", "{task}"]);
    same_results(Path::new(&checked), &local, 4);
}
