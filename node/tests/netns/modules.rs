//! Modules by name across hosts (issue 22): a module published on one host
//! is listed by another within seconds (gossip), runs there by name (its
//! blob fetched from the publisher, the task placed on the mesh), and a
//! newer version from a member the host does not trust is listed but never
//! chosen; a host that joins later learns the records. A rogue member's
//! forged, oversize and junk records are refused and logged.

use std::path::Path;
use std::time::Duration;

use crate::harness::{Lan, join, make_mesh, netns_available};
use crate::rogue::Rogue;

const LIMIT: Duration = Duration::from_secs(60);

fn testkit() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/wasm/testkit.wasm")
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn modules_of(lan: &Lan, i: usize) -> Vec<serde_json::Value> {
    let out = lan.cli(i, &["modules", "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn a_module_published_on_one_host_runs_by_name_on_another() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(3);
    // Hosts 1 and 2 join host 0's mesh: each trusts host 0 (its inviter),
    // and host 2 does not trust host 1.
    make_mesh(&lan, &[0, 1, 2]);
    for i in 0..3 {
        lan.up_with(i, &["--share", "always"]);
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("the hosts to see each other", LIMIT, || {
        (0..3).all(|i| {
            let peers = lan.peers_of(i);
            (0..3).filter(|&j| j != i).all(|j| peers.contains(&ids[j]))
        })
    });

    let tk = testkit();
    let out = lan.cli(
        0,
        &["publish", "testkit@1.0.0", &tk, "--description", "the kit"],
    );
    assert!(out.status.success(), "publish: {}", text(&out.stderr));
    let took = lan.wait_for("host 2 to list the module", LIMIT, || {
        modules_of(&lan, 2).iter().any(|m| m["version"] == "1.0.0")
    });
    println!("measured: a published record reached another host in {took:?}");
    let listed = modules_of(&lan, 2);
    assert_eq!(listed[0]["trusted"], true, "{listed:?}");
    assert_eq!(listed[0]["local"], false, "{listed:?}");

    // Run by name on host 2: the module comes from host 0, the task runs
    // somewhere on the mesh, the output is the module's.
    let out = lan.cli(2, &["run", "testkit@^1", "--", "args", "z"]);
    assert!(
        out.status.success(),
        "run: {}\n{}",
        text(&out.stderr),
        lan.log(2)
    );
    assert_eq!(text(&out.stdout), "testkit\nargs\nz\n");
    assert_eq!(modules_of(&lan, 2)[0]["local"], true);

    // Host 1, a member host 2 does not trust, publishes a newer version:
    // host 2 lists it as untrusted and keeps choosing host 0's.
    let out = lan.cli(1, &["publish", "testkit@1.5.0", &tk]);
    assert!(out.status.success(), "publish: {}", text(&out.stderr));
    lan.wait_for("host 2 to list host 1's record", LIMIT, || {
        modules_of(&lan, 2).iter().any(|m| m["version"] == "1.5.0")
    });
    let untrusted = modules_of(&lan, 2)
        .into_iter()
        .find(|m| m["version"] == "1.5.0")
        .expect("listed");
    assert_eq!(untrusted["trusted"], false);
    let out = lan.cli(2, &["run", "testkit@^1", "--", "args"]);
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("testkit@1.0.0"),
        "{}",
        text(&out.stderr)
    );
    let out = lan.cli(2, &["run", "testkit@1.5.0", "--", "args"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("untrusted_only"));
    // A host that joins later learns the records from the others' batches.
    let late = lan.add_host();
    join(&lan, 0, late);
    lan.up(late);
    let took = lan.wait_for("the late joiner to list the module", LIMIT, || {
        modules_of(&lan, late)
            .iter()
            .any(|m| m["version"] == "1.0.0")
    });
    println!("measured: a late joiner listed the module {took:?} after it was up");
    // Every daemon is still up.
    for i in 0..3 {
        assert!(lan.cli(i, &["status"]).status.success(), "host {i} is down");
    }
}

#[test]
fn hostile_records_are_refused_and_logged_and_change_nothing() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(2);
    make_mesh(&lan, &[0, 1]);
    for i in 0..2 {
        lan.up_with(i, &["--share", "always"]);
    }
    let ids: Vec<String> = (0..2).map(|i| lan.id_of(i)).collect();
    lan.wait_for("the hosts to see each other", LIMIT, || {
        lan.peers_of(0).contains(&ids[1]) && lan.peers_of(1).contains(&ids[0])
    });
    let tk = testkit();
    let out = lan.cli(0, &["publish", "testkit@1.0.0", &tk]);
    assert!(out.status.success(), "publish: {}", text(&out.stderr));
    lan.wait_for("host 1 to list the module", LIMIT, || {
        !modules_of(&lan, 1).is_empty()
    });

    // A member with the mesh key gossips forged, oversize and junk records,
    // and a valid one of its own (a newer testkit nobody trusts).
    let rogue = Rogue::start(&mut lan, "records", 1, "rogue", &[]);
    lan.wait_for("host 1 to refuse each kind of bad record", LIMIT, || {
        let log = lan.log(1);
        ["bad_signature", "signer_mismatch", "too_large", "malformed"]
            .iter()
            .all(|code| {
                log.lines()
                    .any(|l| l.contains("module record was refused") && l.contains(code))
            })
    });
    lan.wait_for("host 1 to keep the rogue's valid record", LIMIT, || {
        modules_of(&lan, 1).iter().any(|m| m["version"] == "9.0.0")
    });
    let listed = modules_of(&lan, 1);
    assert_eq!(
        listed.len(),
        2,
        "only the valid records are kept: {listed:?}"
    );
    let rogues = listed
        .iter()
        .find(|m| m["version"] == "9.0.0")
        .expect("listed");
    assert_eq!(rogues["trusted"], false);

    // Host 1 still runs host 0's module by name, never the rogue's.
    let out = lan.cli(1, &["run", "--local", "testkit", "--", "args"]);
    assert!(out.status.success(), "run: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("testkit@1.0.0"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "testkit\nargs\n");
    let out = lan.cli(1, &["run", "testkit@9", "--", "args"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("untrusted_only"));
    for i in 0..2 {
        assert!(lan.cli(i, &["status"]).status.success(), "host {i} is down");
    }
    println!(
        "rogue said:\n{}",
        rogue.log().lines().take(8).collect::<Vec<_>>().join("\n")
    );
}
