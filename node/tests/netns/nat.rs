//! A mesh across networks (DESIGN "Beyond one LAN"), in a NAT lab: a relay
//! on the public network, a home Pi behind one NAT router and a café laptop
//! behind another. Members reach each other through the relay's circuits,
//! with the mesh key end to end; a device without the key gets nowhere.

use std::time::Duration;

use crate::harness::{Lan, Nat, make_mesh, netns_available, nft_available};
use crate::offload::{done_by, job_json, ok, testkit};

const LIMIT: Duration = Duration::from_secs(60);

/// The relay's address, naming it: `/ip4/…/tcp/4001/p2p/<id>`.
fn relay_addr(lan: &Lan, relay: usize) -> String {
    format!(
        "/ip4/{}/tcp/4001/p2p/{}",
        lan.host(relay).addr,
        lan.id_of(relay)
    )
}

/// Host 0 the relay (public), host 1 a Pi behind `home`, host 2 a laptop
/// behind `cafe`; one mesh whose jobs come from the laptop. The relay and
/// the laptop run no tasks. Returns the lab and the relay's address.
fn lab(home: Nat, cafe: Nat) -> (Lan, String) {
    let mut lan = Lan::new(1);
    let home_router = lan.add_router(home);
    let cafe_router = lan.add_router(cafe);
    assert_eq!(lan.add_home_host(home_router), 1);
    assert_eq!(lan.add_home_host(cafe_router), 2);
    make_mesh(&lan, &[2, 0, 1]);
    lan.up_with(
        0,
        &[
            "--relay",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--share",
            "never",
        ],
    );
    let relay = relay_addr(&lan, 0);
    lan.up_with(1, &["--relay-addr", &relay, "--peer", &relay]);
    let pi = format!("{relay}/p2p-circuit/p2p/{}", lan.id_of(1));
    lan.up_with(
        2,
        &[
            "--relay-addr",
            &relay,
            "--peer",
            &relay,
            "--peer",
            &pi,
            "--share",
            "never",
        ],
    );
    (lan, relay)
}

/// How host `i` reaches peer `id`, as `corral peers --json` says.
fn via(lan: &Lan, i: usize, id: &str) -> String {
    let out = lan.cli(i, &["peers", "--json"]);
    ok(&out);
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peers json");
    peers
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["id"] == id)
        .and_then(|p| p["via"].as_str())
        .unwrap_or("none")
        .to_string()
}

#[test]
fn members_behind_two_nats_meet_through_the_relay_and_run_a_batch() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (lan, _) = lab(Nat::Symmetric, Nat::Symmetric);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    let took = lan.wait_for("the Pi and the laptop to see each other", LIMIT, || {
        lan.peers_of(1).contains(&laptop) && lan.peers_of(2).contains(&pi)
    });
    println!("behind two NATs, in one mesh after {took:?}");
    // Each reaches the other only through the relay's circuit.
    assert_eq!(via(&lan, 2, &pi), "relayed");
    assert_eq!(via(&lan, 1, &laptop), "relayed");
    assert_eq!(via(&lan, 2, &lan.id_of(0)), "direct");

    let out_dir = lan.scratch.path().join("out");
    let out = lan.cli(
        2,
        &[
            "run",
            &testkit(),
            "--tasks",
            "4",
            "--out",
            &out_dir.display().to_string(),
            "--timeout",
            "60s",
            "--",
            "args",
            "through the relay",
        ],
    );
    ok(&out);
    let job = job_json(&out_dir);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(done_by(&job, "host1"), 4, "every task ran on the Pi: {job}");
    for i in 0..4 {
        let stdout = std::fs::read_to_string(out_dir.join(format!("{i}/stdout"))).expect("stdout");
        assert_eq!(
            stdout.lines().last(),
            Some("through the relay"),
            "task {i}: {stdout}"
        );
    }
}

#[test]
fn a_device_without_the_mesh_key_cannot_use_the_relay_or_reach_a_member() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (mut lan, relay) = lab(Nat::EndpointIndependent, Nat::Symmetric);
    let pi = lan.id_of(1);
    lan.wait_for("the Pi to see the relay", LIMIT, || {
        lan.peers_of(1).contains(&lan.id_of(0))
    });
    // A stranger at the café: its own mesh (another key), told the relay's
    // and the Pi's circuit addresses.
    let stranger = lan.add_home_host(1);
    ok(&lan.cli(stranger, &["init", "--name", "stranger"]));
    let circuit = format!("{relay}/p2p-circuit/p2p/{pi}");
    lan.up_with(
        stranger,
        &["--relay-addr", &relay, "--peer", &relay, "--peer", &circuit],
    );
    // Past the 10 s upgrade timeout a wrong key ends at, twice over.
    std::thread::sleep(Duration::from_secs(25));
    assert!(
        lan.peers_of(stranger).is_empty(),
        "the keyless device sees {:?}",
        lan.peers_of(stranger)
    );
    let stranger_id = lan.id_of(stranger);
    for host in [0, 1, 2] {
        assert!(
            !lan.peers_of(host).contains(&stranger_id),
            "host {host} sees the keyless device"
        );
    }
    let status = lan.cli(stranger, &["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status");
    let circuits: Vec<&str> = status["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .filter(|a| a.contains("/p2p-circuit"))
        .collect();
    assert!(
        circuits.is_empty(),
        "the keyless device reserved {circuits:?}"
    );
}
