//! A mesh across networks (DESIGN "Beyond one LAN"), in a NAT lab: a relay
//! on the public network, a home Pi behind one NAT router and a café laptop
//! behind another. Members reach each other through the relay's circuits,
//! with the mesh key end to end, and punch a direct path where both NATs
//! allow it; a device without the key gets nowhere; a device joins from
//! another network with the invite token alone.

use std::time::Duration;

use crate::harness::{Lan, Nat, join, make_mesh, netns_available, nft_available};
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
pub(crate) fn lab(home: Nat, cafe: Nat) -> (Lan, String) {
    lab_opts(home, cafe, &[])
}

/// As [`lab`], the relay's daemon run with `relay_env` (test switches).
pub(crate) fn lab_opts(home: Nat, cafe: Nat, relay_env: &[(&str, &str)]) -> (Lan, String) {
    let mut lan = Lan::new(1);
    let home_router = lan.add_router(home);
    let cafe_router = lan.add_router(cafe);
    assert_eq!(lan.add_home_host(home_router), 1);
    assert_eq!(lan.add_home_host(cafe_router), 2);
    make_mesh(&lan, &[2, 0, 1]);
    lan.up_opts(
        0,
        &[
            "--relay",
            "--listen",
            "/ip4/0.0.0.0/tcp/4001",
            "--share",
            "never",
        ],
        relay_env,
        None,
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

/// Waits until the Pi (host 1) and the laptop (host 2) see each other;
/// how long that took.
pub(crate) fn meet(lan: &Lan, what: &str, limit: Duration) -> Duration {
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    lan.wait_for(what, limit, || {
        lan.peers_of(1).contains(&laptop) && lan.peers_of(2).contains(&pi)
    })
}

/// Host `i`'s line for peer `id` in `corral peers --json` (null if none).
fn peer(lan: &Lan, i: usize, id: &str) -> serde_json::Value {
    let out = lan.cli(i, &["peers", "--json"]);
    ok(&out);
    let peers: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peers json");
    peers
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["id"] == id)
        .cloned()
        .unwrap_or_default()
}

/// How host `i` reaches peer `id`, as `corral peers --json` says.
pub(crate) fn via(lan: &Lan, i: usize, id: &str) -> String {
    peer(lan, i, id)["via"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Host `i`'s `corral status --json`.
fn status(lan: &Lan, i: usize) -> serde_json::Value {
    let out = lan.cli(i, &["status", "--json"]);
    ok(&out);
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Runs a 4-task batch from host `from` and checks every task ran on host
/// `on` with the right output.
fn batch(lan: &Lan, from: usize, on: usize, word: &str) {
    let out_dir = lan.scratch.path().join(word.replace(' ', "-"));
    let out = lan.cli(
        from,
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
            word,
        ],
    );
    ok(&out);
    let job = job_json(&out_dir);
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(
        done_by(&job, &format!("host{on}")),
        4,
        "every task ran on host {on}: {job}"
    );
    for i in 0..4 {
        let stdout = std::fs::read_to_string(out_dir.join(format!("{i}/stdout"))).expect("stdout");
        assert_eq!(stdout.lines().last(), Some(word), "task {i}: {stdout}");
    }
}

#[test]
fn members_behind_two_nats_meet_through_the_relay_and_run_a_batch() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (lan, _) = lab(Nat::Symmetric, Nat::Symmetric);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    let took = meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    println!("behind two NATs, in one mesh after {took:?}");
    // Each reaches the other only through the relay's circuit.
    assert_eq!(via(&lan, 2, &pi), "relayed");
    assert_eq!(via(&lan, 1, &laptop), "relayed");
    assert_eq!(via(&lan, 2, &lan.id_of(0)), "direct");
    // A random port per connection defeats hole punching: still relayed
    // after DCUtR's attempts (3, each up to the 10 s upgrade timeout).
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(via(&lan, 2, &pi), "relayed");
    assert_eq!(status(&lan, 2)["reachability"]["kind"], "relayed");
    assert_eq!(status(&lan, 0)["reachability"]["kind"], "public");
    batch(&lan, 2, 1, "through the relay");
}

#[test]
fn a_port_preserving_and_a_symmetric_nat_stay_relayed_and_work() {
    if !netns_available() || !nft_available() {
        return;
    }
    // The matrix's mixed case: the Pi's router keeps ports, the café's picks
    // a new one per connection, so the port the Pi is told to punch toward
    // is never the one the laptop's next packets come from.
    let (lan, _) = lab(Nat::EndpointIndependent, Nat::Symmetric);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    let took = meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    println!("behind a port-preserving and a symmetric NAT, in one mesh after {took:?}");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(via(&lan, 2, &pi), "relayed");
    assert_eq!(via(&lan, 1, &laptop), "relayed");
    batch(&lan, 2, 1, "mixed NATs");
}

#[test]
fn members_behind_port_preserving_nats_punch_a_direct_path_that_outlives_the_relay() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (mut lan, _) = lab(Nat::EndpointIndependent, Nat::EndpointIndependent);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    let met = meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    let direct = |v: &str| v != "relayed" && v != "none";
    let punched = lan.wait_for("a direct path between the Pi and the laptop", LIMIT, || {
        direct(&via(&lan, 2, &pi)) && direct(&via(&lan, 1, &laptop))
    });
    let (seen_by_laptop, seen_by_pi) = (peer(&lan, 2, &pi), peer(&lan, 1, &laptop));
    println!(
        "behind two port-preserving NATs: one mesh after {met:?}, a direct path after \
         {punched:?}; the laptop reaches the Pi {} ({} ms), the Pi the laptop {} ({} ms)",
        seen_by_laptop["via"], seen_by_laptop["rtt_ms"], seen_by_pi["via"], seen_by_pi["rtt_ms"]
    );
    // DCUtR names the punched connection on the side(s) that dialled it; the
    // other may only know it as a direct connection to a public address.
    assert!(
        seen_by_laptop["via"] == "punched" || seen_by_pi["via"] == "punched",
        "laptop: {seen_by_laptop}\nPi: {seen_by_pi}"
    );
    // The circuit is closed once the direct path has settled.
    lan.wait_for("the circuit to be closed", Duration::from_secs(20), || {
        let paths = peer(&lan, 2, &pi)["paths"].clone();
        paths
            .as_array()
            .is_some_and(|p| p.len() == 1 && p[0]["via"] != "relayed")
    });
    // Behind the NATs, reachable through the relay; the relay is public.
    assert_eq!(status(&lan, 1)["reachability"]["kind"], "relayed");
    assert_eq!(status(&lan, 0)["reachability"]["kind"], "public");
    batch(&lan, 2, 1, "punched through");

    // The relay goes down: the punched path stays, and work still flows.
    lan.kill(0);
    std::thread::sleep(Duration::from_secs(20));
    assert!(lan.peers_of(2).contains(&pi), "the laptop lost the Pi");
    assert!(lan.peers_of(1).contains(&laptop), "the Pi lost the laptop");
    assert!(direct(&via(&lan, 2, &pi)), "{}", peer(&lan, 2, &pi));
    batch(&lan, 2, 1, "without the relay");
}

#[test]
fn a_device_joins_from_another_network_with_the_invite_token_alone() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (mut lan, relay) = lab(Nat::Symmetric, Nat::Symmetric);
    let pi = lan.id_of(1);
    lan.wait_for("the Pi to reserve an address at the relay", LIMIT, || {
        status(&lan, 1)["reachability"]["reserved"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    // A tablet at the café joins with a token from the Pi at home, and
    // starts with no address or relay given.
    let tablet = lan.add_home_host(1);
    let token = lan.cli(1, &["invite"]);
    ok(&token);
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    assert!(token.starts_with("corral3"), "{token}");
    ok(&lan.cli(tablet, &["join", &token, "--name", "tablet"]));
    lan.up(tablet);
    let took = lan.wait_for("the tablet to reach the Pi", LIMIT, || {
        lan.peers_of(tablet).contains(&pi) && lan.peers_of(1).contains(&lan.id_of(tablet))
    });
    println!("joined from another network with the token alone in {took:?}");
    assert_eq!(via(&lan, tablet, &pi), "relayed");
    // It keeps the mesh's relay and holds its own address there.
    lan.wait_for("the tablet to reserve at the relay", LIMIT, || {
        status(&lan, tablet)["reachability"]["reserved"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    });
    let relays = status(&lan, tablet)["reachability"]["relays"].clone();
    assert_eq!(relays, serde_json::json!([relay]), "{relays}");
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

#[test]
fn members_that_joined_with_the_relays_token_find_each_other_through_it() {
    if !netns_available() || !nft_available() {
        return;
    }
    // README's three commands: `corral up --relay` on the reachable
    // device, `corral invite` there, `corral join TOKEN && corral up`
    // anywhere else — no address or relay given.
    let mut lan = Lan::new(1);
    let home_router = lan.add_router(Nat::Symmetric);
    let cafe_router = lan.add_router(Nat::Symmetric);
    assert_eq!(lan.add_home_host(home_router), 1);
    assert_eq!(lan.add_home_host(cafe_router), 2);
    ok(&lan.cli(0, &["init", "--name", "host0"]));
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
    join(&lan, 0, 1);
    join(&lan, 0, 2);
    lan.up(1);
    // (The laptop keeps its work for others; nothing about reaching them.)
    lan.up_with(2, &["--share", "never"]);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    let took = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        meet(&lan, "the Pi and the laptop to find each other", LIMIT)
    }))
    .unwrap_or_else(|e| {
        for i in 0..3 {
            println!("--- host {i} ---\n{}", lan.log(i));
        }
        std::panic::resume_unwind(e)
    });
    println!("joined with the relay's token, found each other through it in {took:?}");
    assert_eq!(via(&lan, 2, &pi), "relayed");
    assert_eq!(via(&lan, 1, &laptop), "relayed");
    // The Pi takes the laptop's jobs once it trusts it.
    let key = status(&lan, 2)["key"].as_str().expect("key").to_string();
    ok(&lan.cli(1, &["trust", "add", &key, "--name", "laptop"]));
    batch(&lan, 2, 1, "found at the relay");
}

#[test]
fn a_device_whose_address_changes_rejoins() {
    if !netns_available() || !nft_available() {
        return;
    }
    let (mut lan, _) = lab(Nat::Symmetric, Nat::Symmetric);
    let (pi, laptop) = (lan.id_of(1), lan.id_of(2));
    meet(&lan, "the Pi and the laptop to see each other", LIMIT);
    // The café's router hands the laptop another address: every connection
    // it had (to the relay, and the circuit to the Pi) goes dead at once.
    lan.readdress(2, 1);
    let gone = lan.wait_for("the Pi to notice the laptop gone", LIMIT, || {
        !lan.peers_of(1).contains(&laptop)
    });
    let took = meet(&lan, "the laptop to rejoin", Duration::from_secs(90));
    println!("the Pi saw the laptop gone after {gone:?}; back in the mesh {took:?} later");
    // Each may see the other's adverts (gossip through the relay) a moment
    // before the circuit between them is up.
    lan.wait_for(
        "the laptop to reach the Pi relayed",
        Duration::from_secs(30),
        || via(&lan, 2, &pi) == "relayed",
    );
    batch(&lan, 2, 1, "from a new address");
}
