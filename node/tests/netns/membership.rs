//! Who is in the mesh, as every host sees it: discovery by mDNS alone, a
//! stranger with another mesh key, a crash, a graceful leave, a restart and
//! a late joiner.

use std::time::Duration;

use crate::harness::{Lan, join, make_mesh, netns_available};

const LIMIT: Duration = Duration::from_secs(30);

fn sees_all(lan: &Lan, hosts: &[usize], ids: &[String]) -> bool {
    hosts.iter().all(|&i| {
        let peers = lan.peers_of(i);
        hosts
            .iter()
            .filter(|&&j| j != i)
            .all(|&j| peers.contains(&ids[j]))
    })
}

#[test]
fn hosts_find_each_other_by_mdns_and_strangers_stay_out() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(4);
    make_mesh(&lan, &[0, 1, 2]);
    // Host 3 makes a mesh of its own: same LAN, another key.
    assert!(lan.cli(3, &["init", "--name", "stranger"]).status.success());
    for i in 0..3 {
        lan.up(i);
    }
    let mut ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    let took = lan.wait_for("hosts 0-2 to see each other", LIMIT, || {
        sees_all(&lan, &[0, 1, 2], &ids)
    });
    println!("measured: 3 hosts saw each other {took:?} after the last daemon was up (mDNS only)");

    // The stranger is on the same bridge, announces itself by mDNS and even
    // dials host 0 directly; without the mesh key no connection completes.
    let target = lan.lan_addr(0);
    assert!(target.contains(&lan.host(0).addr));
    lan.up_with(3, &["--peer", &target]);
    ids.push(lan.id_of(3));
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        assert!(
            !lan.peers_of(i).contains(&ids[3]),
            "host {i} sees the stranger"
        );
    }
    assert!(
        lan.peers_of(3).is_empty(),
        "the stranger sees {:?}",
        lan.peers_of(3)
    );
    // The failed handshake shows on one side or the other (a mismatched PSK
    // garbles the stream; which side notices first depends on timing).
    lan.wait_for("the stranger's connection attempt to fail", LIMIT, || {
        lan.log(0).contains("incoming connection failed") || lan.log(3).contains("cannot connect")
    });

    // A late joiner is seen by everyone, and sees everyone.
    let late = lan.add_host();
    join(&lan, 0, late);
    lan.up(late);
    let late_id = lan.id_of(late);
    let mut all_ids = ids.clone();
    all_ids.push(late_id);
    let took = lan.wait_for("everyone to see the late joiner", LIMIT, || {
        sees_all(&lan, &[0, 1, 2, late], &all_ids)
    });
    println!("measured: a late joiner was seen by every host after {took:?}");

    // Idle traffic per device: gossip adverts, pings and mDNS, all of it.
    let before: Vec<u64> = (0..3).map(|i| lan.tx_bytes(i)).collect();
    std::thread::sleep(Duration::from_secs(5));
    let per_s: Vec<u64> = (0..3).map(|i| (lan.tx_bytes(i) - before[i]) / 5).collect();
    println!(
        "measured: idle bytes sent per device per second, all protocols, 4-device mesh: {per_s:?}"
    );
}

#[test]
fn crashes_leaves_and_restarts_show_in_every_view() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    for i in 0..3 {
        lan.up(i);
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("all to see each other", LIMIT, || {
        sees_all(&lan, &[0, 1, 2], &ids)
    });

    // SIGKILL: gone from every view.
    lan.kill(2);
    let took = lan.wait_for("the killed host to disappear", LIMIT, || {
        (0..2).all(|i| !lan.peers_of(i).contains(&ids[2]))
    });
    println!("measured: a host killed with SIGKILL left every view after {took:?}");

    // Restarted on the same data dir: back, with the same id.
    lan.up(2);
    assert_eq!(lan.id_of(2), ids[2], "a restarted host keeps its id");
    let took = lan.wait_for("the restarted host to rejoin", LIMIT, || {
        sees_all(&lan, &[0, 1, 2], &ids)
    });
    println!("measured: the restarted host was back in every view after {took:?}");

    // Graceful leave: removed from every view.
    let started = std::time::Instant::now();
    let mut leave = lan
        .cli_command(1, &["leave"])
        .spawn()
        .expect("corral leave starts");
    lan.wait_for("the leaver to disappear", LIMIT, || {
        [0, 2].iter().all(|&i| !lan.peers_of(i).contains(&ids[1]))
    });
    println!(
        "measured: `corral leave` was seen by every host {:?} after it was issued",
        started.elapsed()
    );
    assert!(
        leave.wait().expect("leave ends").success(),
        "corral leave failed"
    );
    assert!(lan.wait_exit(1), "the daemon should exit 0 after leave");

    // SIGTERM (systemctl stop) is a graceful leave too.
    let started = std::time::Instant::now();
    lan.terminate(0);
    lan.wait_for("the SIGTERM'd host to disappear", LIMIT, || {
        !lan.peers_of(2).contains(&ids[0])
    });
    println!(
        "measured: SIGTERM was seen by the other host {:?} after it was sent",
        started.elapsed()
    );
    assert!(lan.wait_exit(0), "the daemon should exit 0 after SIGTERM");
}

#[test]
fn a_cut_link_drops_the_host_and_a_healed_one_brings_it_back() {
    if !netns_available() {
        return;
    }
    let mut lan = Lan::new(3);
    make_mesh(&lan, &[0, 1, 2]);
    for i in 0..3 {
        lan.up(i);
    }
    let ids: Vec<String> = (0..3).map(|i| lan.id_of(i)).collect();
    lan.wait_for("all to see each other", LIMIT, || {
        sees_all(&lan, &[0, 1, 2], &ids)
    });

    // No FIN, no RST: only the missing adverts tell.
    let started = std::time::Instant::now();
    lan.set_link(2, false);
    lan.wait_for("the cut-off host to be dropped", LIMIT, || {
        (0..2).all(|i| !lan.peers_of(i).contains(&ids[2]))
    });
    println!(
        "measured: a host whose link was cut was dropped from every view after {:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    lan.set_link(2, true);
    lan.wait_for("the partition to heal", LIMIT, || {
        sees_all(&lan, &[0, 1, 2], &ids)
    });
    println!(
        "measured: after the link came back every host saw it again after {:?}",
        started.elapsed()
    );
}
