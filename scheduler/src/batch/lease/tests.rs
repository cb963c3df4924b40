//! Tests of leases: a silent holder claiming a huge speed does not stall a
//! batch, an honest slow worker is not cooled off before its lease, and a
//! claim is bounded by what receipts show.

use std::collections::BTreeMap;

use super::super::tests::{key, offers, worker};
use super::super::*;

/// A batch driven in steps of `STEP_MS` against workers that each take a
/// fixed time per task (`None`: silent, never answers).
struct Mesh {
    batch: Batch,
    /// (slots, claimed speed, ms per task or silent).
    devices: BTreeMap<u8, (u16, u64, Option<u64>)>,
    /// Runs in flight: (index, device) → when it ends.
    runs: BTreeMap<(u32, u8), u64>,
    cooled: BTreeMap<u8, u64>,
    cooldowns: Vec<(u8, u64)>,
    /// Offers made to silent devices.
    rogue_offers: usize,
    now: u64,
}

const STEP_MS: u64 = 250;

impl Mesh {
    fn new(tasks: u32, devices: &[(u8, u16, u64, Option<u64>)]) -> Self {
        Self {
            batch: Batch::new(tasks, BatchConfig::default()),
            devices: devices
                .iter()
                .map(|&(n, slots, speed, ms)| (n, (slots, speed, ms)))
                .collect(),
            runs: BTreeMap::new(),
            cooled: BTreeMap::new(),
            cooldowns: Vec::new(),
            rogue_offers: 0,
            now: 0,
        }
    }

    fn workers(&self) -> Vec<Worker> {
        self.devices
            .iter()
            .map(|(&n, &(slots, speed, _))| {
                let held = self.runs.keys().filter(|(_, d)| *d == n).count() as u16;
                let cooling = self.cooled.get(&n).is_some_and(|&until| until > self.now);
                worker(
                    n,
                    slots.saturating_sub(held),
                    if cooling { 0 } else { speed },
                )
            })
            .collect()
    }

    /// Runs until the batch is finished or `limit_ms` has passed; the time
    /// it took.
    fn run(&mut self, limit_ms: u64) -> Option<u64> {
        while self.now <= limit_ms {
            let ended: Vec<(u32, u8)> = self
                .runs
                .iter()
                .filter(|(_, end)| **end <= self.now)
                .map(|(k, _)| *k)
                .collect();
            for (index, d) in ended {
                self.runs.remove(&(index, d));
                let ms = self.devices[&d].2.unwrap_or(0);
                self.batch.observe_run(&key(d), ms);
                let decisions = self.batch.on_done(index, &key(d));
                self.apply(decisions);
            }
            if self.batch.is_finished() {
                return Some(self.now);
            }
            let workers = self.workers();
            let decisions = self.batch.schedule(&workers, self.now);
            self.apply(decisions);
            self.now += STEP_MS;
        }
        None
    }

    fn apply(&mut self, decisions: Vec<Decision>) {
        for d in decisions {
            match d {
                Decision::Offer { index, peer, .. } => {
                    let n = peer.as_bytes()[0];
                    match self.devices[&n].2 {
                        Some(ms) => {
                            self.runs.insert((index, n), self.now + ms);
                        }
                        None => self.rogue_offers += 1,
                    }
                }
                Decision::Cancel { index, peer } => {
                    self.runs.remove(&(index, peer.as_bytes()[0]));
                }
                Decision::Cooldown { peer, for_ms, .. } => {
                    let n = peer.as_bytes()[0];
                    self.cooled.insert(n, self.now + for_ms);
                    self.cooldowns.push((n, self.now));
                }
                Decision::GiveUp { .. } => {}
            }
        }
    }
}

/// An hour's timeout, as the manifest's default.
const TIMEOUT_MS: u64 = 3_600_000;

#[test]
fn a_silent_holder_claiming_a_huge_speed_does_not_stall_a_batch() {
    // Two honest workers (2 slots, 1 s a task) and a rogue that claims a
    // speed far beyond them and 64 slots, takes offers and never answers.
    let mut mesh = Mesh::new(
        12,
        &[
            (1, 2, 1_000_000, Some(1000)),
            (2, 2, 1_000_000, Some(1000)),
            (9, 64, u64::MAX / 2, None),
        ],
    );
    mesh.batch.set_hard_lease(TIMEOUT_MS);
    let took = mesh.run(10 * 60 * 1000);
    let took = took.expect("the batch finished on the honest workers");
    // Its 64 claimed slots counted for twice the others' 2 (plus one
    // queued ahead) until it showed a result: it was offered at most 5.
    assert!(mesh.rogue_offers <= 5, "{}", mesh.rogue_offers);
    assert!(took < 2 * 60 * 1000, "took {took} ms");
    assert!(
        mesh.batch
            .tasks()
            .iter()
            .all(|t| matches!(t.state, TaskState::Done(p) if p != key(9))),
        "every task done by an honest worker"
    );
    assert!(
        mesh.cooldowns.iter().any(|(n, _)| *n == 9),
        "the rogue is cooled off"
    );
    assert!(
        mesh.cooldowns.iter().all(|(n, _)| *n == 9),
        "{:?}",
        mesh.cooldowns
    );
}

#[test]
fn a_silent_holder_is_given_up_on_at_the_hard_bound_when_nothing_shows_a_speed() {
    // Only the rogue: no receipt ever shows what a task costs, so only the
    // hard bound (the job's timeout plus slack) ends its hold.
    let mut mesh = Mesh::new(1, &[(9, 1, 1_000_000, None)]);
    mesh.batch.set_hard_lease(60_000);
    let hard = mesh.batch.hard_lease_ms().expect("set");
    assert!(mesh.run(hard - STEP_MS).is_none());
    assert_eq!(mesh.batch.load_of(&key(9)), 1, "held until the hard bound");
    mesh.devices.insert(1, (1, 1_000_000, Some(1000)));
    let took = mesh.run(hard + 30_000).expect("finished once released");
    assert!(took >= hard, "{took}");
    assert!(mesh.cooldowns.iter().any(|(n, _)| *n == 9));
    assert_eq!(mesh.batch.tasks()[0].state, TaskState::Done(key(1)));
}

#[test]
fn an_honest_slow_worker_is_not_cooled_off_before_its_lease() {
    // A fast worker (1 s a task) and an honest slow one (claims a tenth of
    // the speed and takes ten times as long): nobody is cooled off.
    let mut mesh = Mesh::new(
        40,
        &[(1, 2, 1_000_000, Some(1000)), (2, 1, 100_000, Some(10_000))],
    );
    mesh.batch.set_hard_lease(TIMEOUT_MS);
    assert!(mesh.run(10 * 60 * 1000).is_some());
    assert!(mesh.cooldowns.is_empty(), "{:?}", mesh.cooldowns);
}

#[test]
fn a_heartbeat_keeps_an_honest_long_run_from_being_copied_and_its_worker_from_cooling_off() {
    // One task runs far longer than the job's others; its worker says it
    // is alive every five seconds, so it is not copied before sixteen times
    // the others' time, and never cooled off.
    let mut batch = Batch::new(3, BatchConfig::default());
    batch.set_hard_lease(TIMEOUT_MS);
    let workers = [worker(1, 1, 1_000_000), worker(2, 2, 1_000_000)];
    let placed = offers(&batch.schedule(&workers, 0));
    assert_eq!(placed.len(), 3);
    let (long, holder) = placed[0];
    for &(i, p) in &placed[1..] {
        batch.observe_run(&p, 1000);
        batch.on_done(i, &p);
    }
    let mut now = 1000;
    while now < 30_000 {
        batch.on_alive(long, &holder, now);
        let idle: Vec<Worker> = workers
            .iter()
            .filter(|w| w.peer != holder)
            .cloned()
            .collect();
        let decisions = batch.schedule(&idle, now);
        assert!(decisions.is_empty(), "at {now}: {decisions:?}");
        now += 5000;
    }
    // Still alive, but past sixteen times what the job's runs take with
    // nothing left waiting: a copy is made, and the holder is not cooled
    // off.
    let mut copied = false;
    while now < 60_000 && !copied {
        batch.on_alive(long, &holder, now);
        let decisions = batch.schedule(&workers[1..], now);
        copied = decisions
            .iter()
            .any(|d| matches!(d, Decision::Offer { index, .. } if *index == long));
        assert!(
            !decisions
                .iter()
                .any(|d| matches!(d, Decision::Cooldown { .. })),
            "{decisions:?}"
        );
        now += STEP_MS;
    }
    assert!(copied);
    assert!(now > 16 * 1000 + LEASE_SLACK_MS, "copied at {now}");
}

#[test]
fn a_claim_is_bounded_by_what_receipts_show() {
    let mut batch = Batch::new(100, BatchConfig::default());
    batch.set_hard_lease(TIMEOUT_MS);
    let rogue = u64::MAX / 2;
    let workers = [
        worker(1, 1, 1_000_000),
        worker(2, 1, 1_000_000),
        worker(3, 1, 1_000_000),
        worker(9, 1, rogue),
    ];
    // Before any receipt, an absurd claim counts for at most twice the
    // median claim: the rogue is not ranked far above the others.
    batch.schedule(&workers, 0);
    assert!(
        batch.speed_of(&key(9)) <= 2 * 1_000_000,
        "{}",
        batch.speed_of(&key(9))
    );
    // Three honest workers show a task costs 1e6 ops (1 s at 1e6 ops/s).
    for n in 1..=3 {
        batch.observe_run(&key(n), 1000);
    }
    // A peer with no receipts is not ranked above the fastest shown speed,
    // and no claim counts above the clamp.
    assert!(batch.speed_bound(&key(8), rogue) <= 1_000_000);
    assert!(batch.speed_bound(&key(8), rogue) <= MAX_CLAIMED_SPEED);
    // The rogue's own receipts show a tenth of the others' pace.
    batch.observe_run(&key(9), 10_000);
    assert!(batch.speed_bound(&key(9), rogue) <= 100_000);
    // An honest claim below what it shows stands.
    assert_eq!(batch.speed_bound(&key(1), 500_000), 500_000);
}

#[test]
fn a_device_given_its_cpu_back_shows_it_after_a_few_runs() {
    let mut batch = Batch::new(100, BatchConfig::default());
    batch.set_hard_lease(TIMEOUT_MS);
    batch.schedule(&[worker(1, 1, 1_000_000), worker(2, 1, 1_000_000)], 0);
    for _ in 0..10 {
        batch.observe_run(&key(1), 1000);
        batch.observe_run(&key(2), 10_000);
    }
    assert!(batch.speed_bound(&key(2), 1_000_000) <= 200_000);
    for _ in 0..6 {
        batch.observe_run(&key(2), 1000);
    }
    assert!(batch.speed_bound(&key(2), 1_000_000) >= 800_000);
}

#[test]
fn a_holder_shown_at_speed_0_keeps_a_lease_on_the_job_s_figures() {
    // A holder cooled off (or busy with other work) is passed at speed 0
    // and its speed at placement follows (`refresh_holder_speeds`): its
    // lease must still lapse on what receipts show, not on a speed of 0
    // (which would make it endless, up to the hard bound).
    let mut batch = Batch::new(2, BatchConfig::default());
    batch.set_hard_lease(TIMEOUT_MS);
    batch.schedule(&[worker(9, 1, 1_000_000), worker(1, 0, 1_000_000)], 0);
    batch.given.entry(key(1)).or_default().speed = 1_000_000;
    batch.observe_run(&key(1), 1000);
    batch.given.entry(key(9)).or_default().speed = 0;
    let mut now = 0;
    let mut lapsed = false;
    while now < 60_000 && !lapsed {
        lapsed = batch
            .schedule(&[worker(1, 1, 1_000_000)], now)
            .iter()
            .any(|d| matches!(d, Decision::Cooldown { peer, .. } if *peer == key(9)));
        now += STEP_MS;
    }
    assert!(lapsed, "the lease of a holder at speed 0 never lapsed");
    assert!(now <= 4 * 1000 + LEASE_SLACK_MS + STEP_MS, "{now}");
}

/// Two workers of one speed: `direct` (key 2) and `relayed` (key 1, first
/// on a tie of keys), whose path costs `transfer_ms` per task.
fn paths(transfer_ms: u64) -> (Worker, Worker) {
    let direct = worker(2, 1, 1000);
    let mut relayed = worker(1, 1, 1000);
    relayed.transfer_ms = transfer_ms;
    (direct, relayed)
}

#[test]
fn a_relayed_workers_pace_counts_its_transfer_once_a_task_s_cost_is_shown() {
    let (direct, relayed) = paths(3000);
    let mut batch = Batch::new(3, BatchConfig::default());
    assert_eq!(batch.pace(&relayed), 1000, "no receipt: no cost to weigh");
    // Before any receipt the cheaper path still goes first on a tie.
    let first = offers(&batch.schedule(&[relayed.clone(), direct.clone()], 0));
    assert_eq!(first.first().map(|(_, p)| *p), Some(key(2)), "{first:?}");
    batch.observe_run(&key(2), 1000);
    // A task costs 1000 ops (1 s here); over the relay 1 s + 3 s.
    assert_eq!(batch.pace(&relayed), 250);
    assert_eq!(batch.pace(&direct), 1000);
    assert_eq!(batch.pace(&paths(0).1), 1000);
}

#[test]
fn the_last_task_waits_for_a_direct_worker_rather_than_crawl_over_a_relay() {
    for (transfer_ms, over_relay) in [(0, true), (3000, false)] {
        let (direct, relayed) = paths(transfer_ms);
        let mut batch = Batch::new(3, BatchConfig::default());
        // The direct worker takes two tasks (one running, one ahead) and
        // finishes the first: a task's cost is shown.
        let placed = offers(&batch.schedule(std::slice::from_ref(&direct), 0));
        assert_eq!(placed, vec![(0, key(2)), (1, key(2))]);
        batch.observe_run(&key(2), 1000);
        batch.on_done(0, &key(2));
        // One task waits; the direct worker is full, the relayed one idle.
        let mut busy = direct.clone();
        busy.slots_free = 0;
        let placed = offers(&batch.schedule(&[busy, relayed], 1000));
        assert_eq!(
            placed == vec![(2, key(1))],
            over_relay,
            "transfer {transfer_ms} ms: {placed:?}"
        );
    }
}

#[test]
fn a_lone_relayed_worker_still_gets_every_task() {
    // Nobody faster to wait for: the slow-worker rule weighs paces, so the
    // last tasks go over the relay too (before, they waited forever).
    let (_, relayed) = paths(9000);
    let mut batch = Batch::new(6, BatchConfig::default());
    let mut done = 0;
    let mut now = 0;
    while !batch.is_finished() && now < 100_000 {
        let mut free = relayed.clone();
        free.slots_free = u16::from(batch.load_of(&key(1)) == 0);
        for (index, _) in offers(&batch.schedule(&[free], now)) {
            batch.observe_run(&key(1), 1000);
            batch.on_done(index, &key(1));
            done += 1;
        }
        now += 1000;
    }
    assert_eq!(done, 6, "tasks left waiting for a faster worker");
}
