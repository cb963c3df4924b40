//! Leases on placed runs (DESIGN §7): every run a batch places has a
//! deadline, and a device's speed in placement is the lower of its claim
//! and what its receipts show.
//!
//! - The hard bound: no honest run outlasts the job's timeout plus slack
//!   for the module's transfer, and a run may wait behind one other task
//!   on its worker; past twice that, the holder's run is given up on (as a
//!   run lost with its worker) and the holder cooled off.
//! - The soft lease: once receipts show what a task of this job costs
//!   (the median over the workers that returned one of claimed speed ×
//!   their recent run time), a run is expected to take that cost over its
//!   holder's bounded speed; past [`LEASE_FACTOR`] times that plus
//!   [`LEASE_SLACK_MS`] since it started or last said it was alive, the
//!   task is copied to another worker (first result wins) and the holder
//!   cooled off. A heartbeat extends the soft lease, never the hard one;
//!   a run kept alive past [`HEDGE_FACTOR`] times its expected duration
//!   plus the slack is copied once nothing waits, without a cool-off.
//! - Bounded speeds: a worker's speed is at most what its own receipts
//!   show; one with no receipt in this job ranks no higher than the
//!   fastest shown speed, or, before any receipt, than
//!   [`UNSHOWN_FACTOR`] times the lower median claim of the workers at
//!   hand; no claim counts above [`MAX_CLAIMED_SPEED`]. Its task slots
//!   count for at most [`UNSHOWN_FACTOR`] times the lower median of the
//!   workers' until a receipt of this job shows it runs tasks at all.
//!
//! Leases hold only for a batch given a hard bound
//! ([`Batch::set_hard_lease`]): the coordinator gives every job one; the
//! simulator, whose devices are honest, does not.
//!
//! Kept apart from [`Task`](super::Task): the lease state lives in
//! `Leases`, one field of the batch.

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use corral_protocol::ids::PeerKey;

use super::{Batch, Decision, Pool, TaskState, Worker};

/// The highest speed a claim counts for (operations per second of the
/// calibration module): about a hundred times a fast desktop core today
/// (1e6 to 1e8). A claim above it is clamped to it.
pub const MAX_CLAIMED_SPEED: u64 = 10_000_000_000;

/// How many times its expected duration a run may take before its task is
/// copied elsewhere.
pub const LEASE_FACTOR: u64 = 4;

/// How many times its expected duration a run kept alive by heartbeats
/// may take, once no task of the batch waits, before its task is copied
/// too (the holder is not cooled off: it says it is working).
pub const HEDGE_FACTOR: u64 = 16;

/// Leases are checked at most this often (the batch is scheduled on
/// every event).
const LEASE_CHECK_MS: u64 = 250;

/// Slack added to every soft lease: the module's transfer and compilation
/// on a worker that does not hold it yet.
pub const LEASE_SLACK_MS: u64 = 15_000;

/// Slack added to the job's timeout for the hard bound (transfer of the
/// module, its inputs and its results).
pub const HARD_SLACK_MS: u64 = 60_000;

/// A holder cooled off for a lapsed lease rests this long, doubled for each
/// lease of the job it let lapse before (up to [`MAX_LEASE_COOLDOWN_MS`]).
pub const LEASE_COOLDOWN_MS: u64 = 60_000;

/// The longest cool-off for lapsed leases.
pub const MAX_LEASE_COOLDOWN_MS: u64 = 3_600_000;

/// Before any receipt of the job, a claim counts for at most this many
/// times the lower median claim of the workers at hand; and a worker with
/// no receipt of the job, for at most this many times the lower median
/// of their task slots.
pub const UNSHOWN_FACTOR: u64 = 2;

/// What one worker's receipts of the job show.
#[derive(Clone, Copy, Debug, Default)]
struct Shown {
    /// Runs it returned.
    runs: u32,
    /// Its recent run time (ms): each run moves it halfway to that run's
    /// time, so a device given its CPU back shows it after a few runs.
    recent_ms: u64,
    /// Its speed when it was last given a task (its bounded claim).
    claim: u64,
}

impl Shown {
    fn recent_ms(&self) -> u64 {
        self.recent_ms.max(1)
    }
}

/// The lease state of a batch.
#[derive(Clone, Debug, Default)]
pub(in crate::batch) struct Leases {
    /// Longest a run may be held (ms), if leases hold for this batch.
    hard_ms: Option<u64>,
    /// What each worker's receipts show.
    shown: BTreeMap<PeerKey, Shown>,
    /// A task's cost (operations), once receipts show it.
    cost: Option<u128>,
    /// The fastest speed receipts show.
    fastest_shown: Option<u64>,
    /// When each (task, holder) last said it was alive.
    alive: BTreeMap<(u32, PeerKey), u64>,
    /// Runs whose task was copied: their soft lease ran out (`true`, the
    /// holder cooled off) or they ran far long while alive (`false`).
    lapsed: BTreeMap<(u32, PeerKey), bool>,
    /// Leases each worker let lapse.
    strikes: BTreeMap<PeerKey, u32>,
    /// When leases were last checked.
    checked_ms: Option<u64>,
}

impl Leases {
    /// A task's expected cost over `speed`, in ms.
    fn expected_ms(&self, speed: u64) -> Option<u64> {
        let cost = self.cost?;
        let ms = cost * 1000 / u128::from(speed.max(1));
        Some(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Works out the task's cost and the fastest shown speed again.
    fn refresh(&mut self) {
        let Some(cost) = lower_median(
            self.shown
                .values()
                .map(|s| u128::from(s.claim) * u128::from(s.recent_ms()) / 1000),
        ) else {
            return;
        };
        let cost = cost.max(1);
        self.cost = Some(cost);
        self.fastest_shown = self.shown.values().map(|s| shown_speed(cost, s)).max();
    }
}

/// The lower median of `values`, if there are any.
fn lower_median<T: Ord + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut v: Vec<T> = values.collect();
    v.sort_unstable();
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// The speed a worker's receipts show: the task's cost over its recent run time.
fn shown_speed(cost: u128, s: &Shown) -> u64 {
    u64::try_from(cost * 1000 / u128::from(s.recent_ms()))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Batch {
    /// Gives the batch's runs leases: `timeout_ms` is the job's timeout per
    /// task (its manifest limits).
    pub fn set_hard_lease(&mut self, timeout_ms: u64) {
        self.leases.hard_ms = Some(timeout_ms.saturating_add(HARD_SLACK_MS).saturating_mul(2));
    }

    /// The hard bound of a run (ms), if leases hold.
    pub fn hard_lease_ms(&self) -> Option<u64> {
        self.leases.hard_ms
    }

    /// A result of `peer` that ran for `duration_ms` was taken: what its
    /// receipts show of its speed and of the task's cost.
    pub fn observe_run(&mut self, peer: &PeerKey, duration_ms: u64) {
        let claim = self.speed_of(peer);
        let shown = self.leases.shown.entry(*peer).or_default();
        shown.recent_ms = if shown.runs == 0 {
            duration_ms
        } else {
            shown.recent_ms / 2 + duration_ms / 2
        };
        shown.runs = shown.runs.saturating_add(1);
        if claim > 0 {
            shown.claim = claim;
        }
        if shown.claim == 0 {
            self.leases.shown.remove(peer);
        }
        self.leases.refresh();
    }

    /// `peer` says it still runs task `index` at `now_ms`: its soft lease
    /// starts again (the hard bound stays).
    pub fn on_alive(&mut self, index: u32, peer: &PeerKey, now_ms: u64) {
        let holds = self
            .tasks
            .get(index as usize)
            .is_some_and(|t| t.held_by(peer));
        if holds && self.leases.hard_ms.is_some() {
            self.leases.alive.insert((index, *peer), now_ms);
        }
    }

    /// The pace `worker` counts for in placement, as a speed: its
    /// (bounded) speed, lowered by what moving a task's data to it costs
    /// ([`Worker::transfer_ms`]) once receipts show what a task costs: a
    /// task of cost c takes c / speed + transfer there, so it runs at
    /// c / (c / speed + transfer). Before any receipt, its speed.
    pub fn pace(&self, worker: &Worker) -> u64 {
        match self.leases.cost {
            Some(cost) if worker.transfer_ms > 0 && worker.speed > 0 => {
                let run_us = cost * 1_000_000 / u128::from(worker.speed);
                let total_us = run_us + u128::from(worker.transfer_ms) * 1000;
                u64::try_from(cost * 1_000_000 / total_us.max(1))
                    .unwrap_or(u64::MAX)
                    .clamp(1, worker.speed)
            }
            _ => worker.speed,
        }
    }

    /// `pool` with each worker's pace ([`Batch::pace`]) in place of its
    /// speed, for the slow-worker rule: a mesh of relayed workers alone is
    /// as fast as their paces, so its last task still goes to one of them.
    /// Unchanged while no worker's path costs anything.
    pub(super) fn paced(&self, workers: &[Worker], pool: Pool) -> Pool {
        let mut slower = 0u128;
        let mut fastest = 0u64;
        for w in workers {
            let pace = self.pace(w);
            slower += u128::from(w.speed - pace) * u128::from(w.slots_total.max(1));
            fastest = fastest.max(pace);
        }
        if slower == 0 {
            return pool;
        }
        Pool {
            rate: pool.rate.saturating_sub(slower).max(1),
            fastest: pool.fastest.min(fastest),
            ..pool
        }
    }

    /// The speed `peer` claiming `claim` counts for in placement: the lower
    /// of its claim and what receipts show (see the module's doc). Without
    /// leases, the claim.
    pub fn speed_bound(&self, peer: &PeerKey, claim: u64) -> u64 {
        self.bound_with(peer, claim, None)
    }

    fn bound_with(&self, peer: &PeerKey, claim: u64, unshown_cap: Option<u64>) -> u64 {
        if self.leases.hard_ms.is_none() {
            return claim;
        }
        let claim = claim.min(MAX_CLAIMED_SPEED);
        let shown = match (self.leases.cost, self.leases.shown.get(peer)) {
            (Some(cost), Some(s)) => Some(shown_speed(cost, s)),
            _ => self.leases.fastest_shown.or(unshown_cap),
        };
        shown.map_or(claim, |s| claim.min(s))
    }

    /// `workers` with their speeds bounded, and the pool to match.
    pub(super) fn bounded<'w>(
        &self,
        workers: &'w [Worker],
        pool: Pool,
    ) -> (Cow<'w, [Worker]>, Pool) {
        if self.leases.hard_ms.is_none() {
            return (Cow::Borrowed(workers), pool);
        }
        let unshown_cap = if self.leases.fastest_shown.is_none() {
            lower_median(
                workers
                    .iter()
                    .map(|w| w.speed.min(MAX_CLAIMED_SPEED))
                    .filter(|&s| s > 0),
            )
            .map(|m| m.saturating_mul(UNSHOWN_FACTOR))
        } else {
            None
        };
        let slots_cap = lower_median(
            workers
                .iter()
                .filter(|w| w.speed > 0)
                .map(|w| w.slots_total),
        )
        .map_or(u16::MAX, |m| m.max(1).saturating_mul(UNSHOWN_FACTOR as u16));
        let mut out: Option<Vec<Worker>> = None;
        let mut rate = pool.rate;
        for (i, w) in workers.iter().enumerate() {
            let speed = self.bound_with(&w.peer, w.speed, unshown_cap);
            let slots = if self.leases.shown.contains_key(&w.peer) {
                w.slots_total
            } else {
                w.slots_total.min(slots_cap)
            };
            if speed < w.speed || slots < w.slots_total {
                let before = u128::from(w.speed) * u128::from(w.slots_total.max(1));
                let after = u128::from(speed) * u128::from(slots.max(1));
                rate = rate.saturating_sub(before.saturating_sub(after));
                let bounded = &mut out.get_or_insert_with(|| workers.to_vec())[i];
                bounded.speed = speed;
                bounded.slots_total = slots;
                bounded.slots_free = bounded.slots_free.min(slots);
            }
        }
        let Some(out) = out else {
            return (Cow::Borrowed(workers), pool);
        };
        let top = out.iter().map(|w| w.speed).max().unwrap_or(0);
        let cap = self
            .leases
            .fastest_shown
            .or(unshown_cap)
            .unwrap_or(MAX_CLAIMED_SPEED);
        let pool = Pool {
            rate: rate.max(1),
            fastest: pool.fastest.min(cap.max(top)),
            ..pool
        };
        (Cow::Owned(out), pool)
    }

    /// Runs past their leases: a lapsed soft lease copies the task to a
    /// worker of `workers` (bounded speeds) and cools the holder off; a
    /// run past the hard bound is given up on as lost.
    pub(super) fn check_leases(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        let Some(hard) = self.leases.hard_ms else {
            return Vec::new();
        };
        if self
            .leases
            .checked_ms
            .is_some_and(|at| now_ms < at.saturating_add(LEASE_CHECK_MS))
        {
            return Vec::new();
        }
        self.leases.checked_ms = Some(now_ms);
        let mut lapsed = Vec::new();
        let mut expired = Vec::new();
        let mut want_copy = Vec::new();
        for (index, task) in self.tasks.iter().enumerate() {
            let TaskState::Running(on) = &task.state else {
                continue;
            };
            let index = index as u32;
            let mut live = 0;
            let mut any_lapsed = false;
            for (holder, &start) in on {
                if now_ms >= start.saturating_add(hard) {
                    expired.push((index, *holder));
                    continue;
                }
                // Its lease lapsed (`Some(true)`: cooled off already) or
                // its task was copied while it said it was alive.
                let past = self.leases.lapsed.get(&(index, *holder)).copied();
                if past == Some(true) {
                    any_lapsed = true;
                    continue;
                }
                // A holder now shown at speed 0 (cooled off, or busy with
                // other work) is judged by what receipts show, not by 0.
                let claim = Some(self.speed_of(holder))
                    .filter(|&s| s > 0)
                    .unwrap_or(u64::MAX);
                let speed = self.speed_bound(holder, claim).max(1);
                let expected = self.leases.expected_ms(speed);
                let lease = |factor: u64| {
                    expected.map(|ms| ms.saturating_mul(factor).saturating_add(LEASE_SLACK_MS))
                };
                let (soft, hedge) = (lease(LEASE_FACTOR), lease(HEDGE_FACTOR));
                let since = self
                    .leases
                    .alive
                    .get(&(index, *holder))
                    .copied()
                    .unwrap_or(start)
                    .max(start);
                match (soft, hedge) {
                    (Some(soft), _) if now_ms >= since.saturating_add(soft) => {
                        any_lapsed = true;
                        lapsed.push((index, *holder, now_ms - start, true));
                    }
                    _ if past.is_some() => any_lapsed = true,
                    // Alive, but far past what the job's runs take, at the
                    // end of the batch: a copy, with no cool-off.
                    (_, Some(hedge))
                        if self.waiting == 0 && now_ms >= start.saturating_add(hedge) =>
                    {
                        any_lapsed = true;
                        lapsed.push((index, *holder, now_ms - start, false));
                    }
                    _ => live += 1,
                }
            }
            if any_lapsed && live + task.results.len() < usize::from(task.needed) {
                want_copy.push(index);
            }
        }
        let mut decisions = Vec::new();
        let mut cooled = BTreeSet::new();
        for (index, holder, held_ms, cool) in lapsed {
            self.leases.lapsed.insert((index, holder), cool);
            if cool && cooled.insert(holder) {
                decisions.push(self.cool_off(
                    holder,
                    format!("task {index}: no result after {held_ms} ms, past its lease"),
                ));
            }
        }
        for (index, holder) in expired {
            if cooled.insert(holder) {
                decisions.push(self.cool_off(
                    holder,
                    format!("task {index}: held past the hard bound of {hard} ms"),
                ));
            }
            let reason = format!(
                "{} held the task past the hard bound of {hard} ms",
                holder.short()
            );
            decisions.extend(self.on_lost(index, &holder, &reason));
        }
        for index in want_copy {
            decisions.extend(self.copy_lapsed(index, workers, &cooled, now_ms));
        }
        self.forget_leases();
        decisions
    }

    /// A cool-off for `peer`, longer for each lease it let lapse.
    fn cool_off(&mut self, peer: PeerKey, reason: String) -> Decision {
        let strikes = self.leases.strikes.entry(peer).or_insert(0);
        let for_ms = LEASE_COOLDOWN_MS
            .saturating_mul(1 << (*strikes).min(16))
            .min(MAX_LEASE_COOLDOWN_MS);
        *strikes = strikes.saturating_add(1);
        Decision::Cooldown {
            peer,
            for_ms,
            reason,
        }
    }

    /// Copies task `index`, whose holders all let their leases lapse, to
    /// the worker with room that would finish it first.
    fn copy_lapsed(
        &mut self,
        index: u32,
        workers: &[Worker],
        cooled: &BTreeSet<PeerKey>,
        now_ms: u64,
    ) -> Option<Decision> {
        let task = self.tasks.get(index as usize)?;
        if !matches!(task.state, TaskState::Running(_)) {
            return None;
        }
        let best = workers
            .iter()
            .filter(|w| {
                w.speed > 0
                    && !cooled.contains(&w.peer)
                    && !task.involves(&w.peer)
                    && self.load_of(&w.peer) < w.capacity()
            })
            .min_by(|a, b| {
                let (la, lb) = (
                    self.load_of(&a.peer) as u128 + 1,
                    self.load_of(&b.peer) as u128 + 1,
                );
                (la * u128::from(b.speed))
                    .cmp(&(lb * u128::from(a.speed)))
                    .then(a.peer.cmp(&b.peer))
            })?;
        Some(self.run_on(
            index,
            best,
            now_ms,
            "lease: its holder is past its lease; a copy runs here, the first result wins".into(),
        ))
    }

    /// Drops lease state of runs no longer held.
    fn forget_leases(&mut self) {
        let tasks = &self.tasks;
        let held = |(index, peer): &(u32, PeerKey)| {
            tasks.get(*index as usize).is_some_and(|t| t.held_by(peer))
        };
        self.leases.alive.retain(|k, _| held(k));
        self.leases.lapsed.retain(|k, _| held(k));
    }
}
