//! Modules by name (issue 22): `corral publish`, `corral modules` and
//! `corral run NAME` on one device without a daemon, and across two
//! daemons on loopback (a record learned by gossip, untrusted until its
//! publisher is trusted, its blob fetched from the publisher, conflicts
//! named).

use std::time::Duration;

use crate::{Daemon, Sandbox, assert_code, module, text, wait_until};

fn modules_json(sb: &Sandbox, data: &str) -> Vec<serde_json::Value> {
    let out = sb.corral(&["--data-dir", data, "modules", "--json"]);
    assert_code(&out, 0);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .expect("modules --json is JSON")
        .as_array()
        .cloned()
        .expect("a list")
}

#[test]
fn publish_list_and_run_by_name_on_one_device() {
    let sb = Sandbox::new();
    assert_code(&sb.corral(&["--data-dir", "a", "init", "--name", "one"]), 0);
    let tk = module("testkit");
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "publish",
        "testkit@1.0.0",
        &tk,
        "--description",
        "the test kit",
    ]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "testkit@1.0.0\n");

    let listed = modules_json(&sb, "a");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let size = std::fs::metadata(&tk).expect("testkit").len();
    assert_eq!(listed[0]["name"], "testkit");
    assert_eq!(listed[0]["version"], "1.0.0");
    assert_eq!(listed[0]["size"], size);
    assert_eq!(listed[0]["trusted"], true);
    assert_eq!(listed[0]["local"], true);
    assert_eq!(listed[0]["description"], "the test kit");
    let table = text(&sb.corral(&["--data-dir", "a", "modules"]).stdout);
    assert!(
        table.contains("testkit@1.0.0") && table.contains("trusted"),
        "{table}"
    );

    // Run by name: argv[0] is the name.
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        "--local",
        "testkit@^1",
        "--",
        "args",
        "x",
    ]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "testkit\nargs\nx\n");

    // The newest matching version is chosen.
    assert_code(
        &sb.corral(&["--data-dir", "a", "publish", "testkit@1.1.0", &tk]),
        0,
    );
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        "--local",
        "testkit",
        "--",
        "exit",
        "4",
    ]);
    assert_code(&out, 4);
    assert!(
        text(&out.stderr).contains("testkit@1.1.0"),
        "{}",
        text(&out.stderr)
    );
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        "--local",
        "testkit@1.0.0",
        "--",
        "args",
    ]);
    assert_code(&out, 0);
    assert!(text(&out.stderr).contains("testkit@1.0.0"));

    // A version is never published again as another module.
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "publish",
        "testkit@1.1.0",
        &module("primes"),
    ]);
    assert_code(&out, 1);
    assert!(
        text(&out.stderr).contains("publish a new version"),
        "{}",
        text(&out.stderr)
    );

    // Names nobody published, bad references and bad records exit 2 with
    // the reason.
    for (args, says) in [
        (vec!["run", "--local", "nosuch@^2"], "not_found"),
        (vec!["run", "--local", "testkit@^7"], "1.0.0, 1.1.0"),
        (vec!["run", "--local", "missing.wasm"], "cannot read module"),
        (vec!["publish", "testkit", tk.as_str()], "names no version"),
        (vec!["publish", "Test@1.0.0", tk.as_str()], "lowercase"),
        (vec!["publish", "testkit@v1", tk.as_str()], "leading `v`"),
        (
            vec!["publish", "testkit@1.0.0+b", tk.as_str()],
            "build metadata",
        ),
        (
            vec!["publish", "junk@1.0.0", "Cargo.toml"],
            "cannot read module",
        ),
    ] {
        let mut full = vec!["--data-dir", "a"];
        full.extend(args);
        let out = sb.corral(&full);
        assert_code(&out, 2);
        assert!(
            text(&out.stderr).contains(says),
            "{says}: {}",
            text(&out.stderr)
        );
    }
    std::fs::write(sb.path("not.wasm"), b"\0asm\x01\0\0\0garbage").expect("write");
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "publish",
        "junk@1.0.0",
        sb.path("not.wasm").to_str().expect("utf-8"),
    ]);
    assert_code(&out, 2);
    assert_eq!(modules_json(&sb, "a").len(), 2);
}

#[test]
fn a_record_spreads_by_gossip_and_runs_by_name_once_its_publisher_is_trusted() {
    let sb = Sandbox::new();
    sb.mesh_of_two("laptop", "desk");
    let _a = Daemon(sb.daemon("a", &["--share", "always"], &["--slots", "1"], &[]));
    let addr = sb.address("a");
    let _b = Daemon(sb.daemon(
        "b",
        &["--share", "always"],
        &["--slots", "1", "--peer", &addr],
        &[],
    ));
    wait_until("the two never met", Duration::from_secs(30), || {
        sb.status("a")["peers"] == 1 && sb.status("b")["peers"] == 1
    });
    // `b` publishes through its daemon; `a` hears it.
    let tk = module("testkit");
    let out = sb.corral(&["--data-dir", "b", "publish", "testkit@1.2.0", &tk]);
    assert_code(&out, 0);
    wait_until(
        "a never learned the record",
        Duration::from_secs(40),
        || modules_json(&sb, "a").len() == 1,
    );
    let listed = modules_json(&sb, "a");
    assert_eq!(listed[0]["trusted"], false, "{listed:?}");
    assert_eq!(listed[0]["local"], false, "{listed:?}");

    // `a` does not trust `b`: the record is never chosen.
    let out = sb.corral(&["--data-dir", "a", "run", "testkit@^1", "--", "args"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("untrusted_only"),
        "{}",
        text(&out.stderr)
    );

    // Trusted: `a` fetches the module from `b` and runs it on the mesh.
    let b_key = sb.status("b")["key"].as_str().expect("key").to_string();
    assert_code(
        &sb.corral(&["--data-dir", "a", "trust", "add", &b_key, "--name", "desk"]),
        0,
    );
    let out = sb.corral(&["--data-dir", "a", "run", "testkit@^1", "--", "args", "y"]);
    assert_code(&out, 0);
    assert_eq!(text(&out.stdout), "testkit\nargs\ny\n");
    assert_eq!(modules_json(&sb, "a")[0]["local"], true);
    // With the blob here, --local runs it too.
    let out = sb.corral(&[
        "--data-dir",
        "a",
        "run",
        "--local",
        "testkit",
        "--",
        "exit",
        "5",
    ]);
    assert_code(&out, 5);

    // `a` publishes another module as the same version: two trusted
    // publishers disagree, and `a` says so rather than choose.
    assert_code(
        &sb.corral(&[
            "--data-dir",
            "a",
            "publish",
            "testkit@1.2.0",
            &module("primes"),
        ]),
        0,
    );
    let out = sb.corral(&["--data-dir", "a", "run", "testkit@1.2.0", "--", "args"]);
    assert_code(&out, 2);
    assert!(
        text(&out.stderr).contains("conflict"),
        "{}",
        text(&out.stderr)
    );
}
