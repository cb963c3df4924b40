//! Where queued tasks go: the earliest predicted finish among workers with
//! room (a heap for one run per task, distinct workers of other classes
//! first under `--verify`), and the slow-worker rule that keeps the last
//! tasks of a batch off devices the rest of the mesh would beat.

use std::collections::{BTreeMap, BinaryHeap};

use corral_protocol::ids::PeerKey;

use super::{Batch, Decision, Pool, TaskState, Worker};

impl Batch {
    /// Places queued tasks (and, at the end, duplicates of stragglers) on
    /// `workers`. `now_ms` stamps the starts.
    pub fn schedule(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        self.schedule_in(workers, Pool::of(workers), now_ms)
    }

    /// As [`Batch::schedule`], with the mesh's pool given rather than worked
    /// out from `workers` (which may then be only those with room).
    /// Speeds are bounded by what receipts show, and runs past their
    /// leases are copied first (see `lease/`).
    pub fn schedule_in(&mut self, workers: &[Worker], pool: Pool, now_ms: u64) -> Vec<Decision> {
        let (mut bounded, pool) = self.bounded(workers, pool);
        let pool = self.paced(&bounded, pool);
        let mut decisions = self.check_leases(&bounded, now_ms);
        // A holder cooled off just now takes nothing more this round.
        for d in &decisions {
            if let Decision::Cooldown { peer, .. } = d
                && let Some(i) = bounded.iter().position(|w| w.peer == *peer && w.speed > 0)
            {
                bounded.to_mut()[i].speed = 0;
            }
        }
        let workers: &[Worker] = &bounded;
        decisions.extend(if self.config.redundancy == 1 {
            self.place_single(workers, pool, now_ms)
        } else {
            self.place_verified(workers, now_ms)
        });
        if self.config.duplicates
            && self.config.redundancy == 1
            && !self.tasks[self.first_open.min(self.tasks.len())..]
                .iter()
                .any(|t| t.wanted() > 0)
        {
            decisions.extend(self.duplicate_stragglers(workers, now_ms));
        }
        decisions
    }

    /// Whether task `index` can be placed now; moves the `first_open` hint
    /// past it when it never needs placing again.
    fn placeable(&mut self, index: usize) -> bool {
        let task = &self.tasks[index];
        let exhausted = task.counted() >= self.attempt_limit(task);
        if task.wanted() == 0 || exhausted {
            if index == self.first_open {
                self.first_open = index + 1;
            }
            return false;
        }
        true
    }

    /// Starts a run of task `index` on `worker` and says so.
    fn start(&mut self, index: usize, worker: &Worker, now_ms: u64) -> Decision {
        let reason = format!(
            "earliest predicted finish: {} task(s) ahead at {} ops/s",
            self.load_of(&worker.peer),
            worker.speed
        );
        if self.tasks[index].state == TaskState::Queued {
            self.waiting -= 1;
        }
        self.tasks[index].attempts += 1;
        self.run_on(index as u32, worker, now_ms, reason)
    }

    /// Gives task `index` a run on `worker` from `now_ms`, at the task's
    /// current attempt (a straggler or lease copy shares the attempt it
    /// copies), and offers it: the bookkeeping shared by a start and
    /// every copy.
    pub(super) fn run_on(
        &mut self,
        index: u32,
        worker: &Worker,
        now_ms: u64,
        reason: String,
    ) -> Decision {
        let given = self.given.entry(worker.peer).or_default();
        given.speed = worker.speed;
        given.load += 1;
        let task = &mut self.tasks[index as usize];
        match &mut task.state {
            TaskState::Running(on) => {
                on.insert(worker.peer, now_ms);
            }
            state => *state = TaskState::Running(BTreeMap::from([(worker.peer, now_ms)])),
        }
        self.sync_single(index);
        Decision::Offer {
            index,
            peer: worker.peer,
            attempt: self.tasks[index as usize].attempts,
            reason,
        }
    }

    /// One run per task: the workers with room sit in a heap ordered by
    /// predicted finish, so placing T tasks on W workers costs
    /// O((W + T) log W), not O(T × W) (the simulator runs 10,000 devices).
    fn place_single(&mut self, workers: &[Worker], pool: Pool, now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        // The mesh's rate (ops/s over every slot, busy or not) and its
        // fastest slot, for the slow-worker rule below.
        let rate = pool.rate;
        let fastest = u128::from(pool.fastest);
        let mut queue = self.waiting as u128 + pool.backlog;
        let mut heap: BinaryHeap<Candidate<'_>> = workers
            .iter()
            .filter(|w| w.speed > 0)
            .map(|w| Candidate {
                load: self.load_of(&w.peer),
                pace: self.pace(w),
                worker: w,
            })
            .filter(|c| c.has_room())
            .collect();
        let mut index = self.first_open;
        while index < self.tasks.len() && !heap.is_empty() {
            if !self.placeable(index) {
                index += 1;
                continue;
            }
            let Some(mut best) = heap.pop() else { break };
            // A slow worker takes a task only if it would finish it before
            // the rest of the mesh gets through the queue, within a factor
            // of two: waves/speed <= 2 (queue/rate + 1/fastest), where the
            // task runs in its `waves`-th round of the worker's slots (a
            // task queued behind the worker's own counts their time too).
            // Otherwise the task waits for a faster slot (a Pi Zero does not
            // get the last tasks of a batch while desktops are a moment from
            // free).
            let waves = (best.load + 1).div_ceil(usize::from(best.worker.slots_total.max(1)));
            if !useful(waves, best.pace, rate, fastest, queue) {
                continue;
            }
            decisions.push(self.start(index, best.worker, now_ms));
            queue = queue.saturating_sub(1);
            best.load += 1;
            if best.has_room() {
                heap.push(best);
            }
            index += 1;
        }
        decisions
    }

    /// K runs per task on distinct workers, another class first.
    fn place_verified(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let has_room = |b: &Self, w: &Worker| w.speed > 0 && b.load_of(&w.peer) < w.capacity();
        let class: BTreeMap<PeerKey, &str> =
            workers.iter().map(|w| (w.peer, w.class.as_str())).collect();
        let mut index = self.first_open;
        while index < self.tasks.len() {
            if !workers.iter().any(|w| has_room(self, w)) {
                break;
            }
            if !self.placeable(index) {
                index += 1;
                continue;
            }
            let wanted = self.tasks[index].wanted();
            let task = &self.tasks[index];
            let used: Vec<&str> = task
                .results
                .iter()
                .map(|(p, _)| *p)
                .chain(match &task.state {
                    TaskState::Running(on) => on.keys().copied().collect(),
                    _ => Vec::new(),
                })
                .filter_map(|p| class.get(&p).copied())
                .collect();
            // Earliest predicted finish, as in `place_single`; a class this
            // task has not run on yet comes first.
            let best = workers
                .iter()
                .filter(|w| has_room(self, w) && !task.involves(&w.peer))
                .min_by(|a, b| {
                    let seen_a = used.contains(&a.class.as_str());
                    let seen_b = used.contains(&b.class.as_str());
                    seen_a.cmp(&seen_b).then_with(|| {
                        Candidate::order(
                            (a, self.pace(a), self.load_of(&a.peer)),
                            (b, self.pace(b), self.load_of(&b.peer)),
                        )
                    })
                });
            let Some(worker) = best else {
                index += 1;
                continue;
            };
            decisions.push(self.start(index, worker, now_ms));
            if wanted == 1 {
                index += 1;
            }
        }
        decisions
    }
}

/// How much slower than the mesh's pace a worker may be and still take a
/// task (see `place_single`).
const SLOW_FACTOR: u128 = 2;

/// Whether a worker of `speed` may take a task that would run in its
/// `waves`-th round of slots, with `queue` tasks waiting in a mesh of `rate`
/// whose fastest slot has `fastest`: waves/speed <= SLOW_FACTOR ×
/// (queue/rate + 1/fastest), in integers.
pub(super) fn useful(waves: usize, speed: u64, rate: u128, fastest: u128, queue: u128) -> bool {
    waves as u128 * rate * fastest <= SLOW_FACTOR * u128::from(speed) * (queue * fastest + rate)
}

impl Batch {
    /// The slowest worker that would be given a task now (see
    /// `place_single`): a caller with thousands of workers may pass only
    /// those at least this fast, to the same effect.
    pub fn slowest_useful(&self, pool: Pool) -> u64 {
        let fastest = u128::from(pool.fastest);
        let queue = self.waiting as u128 + pool.backlog;
        let den = SLOW_FACTOR * (queue * fastest + pool.rate);
        if den == 0 {
            return 0;
        }
        let s = (pool.rate * fastest).div_ceil(den);
        u64::try_from(s).unwrap_or(u64::MAX)
    }
}

/// A worker with room, in the placement heap.
struct Candidate<'a> {
    worker: &'a Worker,
    /// Its pace ([`Batch::pace`]): its speed less its path's transfer cost.
    pace: u64,
    /// Tasks it holds, counting this round's placements.
    load: usize,
}

impl Candidate<'_> {
    /// A worker holds at most one task more than its free slots.
    fn has_room(&self) -> bool {
        self.load < self.worker.capacity()
    }

    /// `Less` when `a` (a worker, its pace and its load) is the better
    /// place for the next task: the earlier predicted finish
    /// (backlog + 1) / pace, compared as fractions to stay in integers;
    /// then the cheaper path (before receipts give transfer a pace); then
    /// a worker holding the module; then the smaller key.
    fn order(
        (a, pace_a, load_a): (&Worker, u64, usize),
        (b, pace_b, load_b): (&Worker, u64, usize),
    ) -> std::cmp::Ordering {
        let la = load_a as u128 + 1;
        let lb = load_b as u128 + 1;
        (la * u128::from(pace_b))
            .cmp(&(lb * u128::from(pace_a)))
            .then(a.transfer_ms.cmp(&b.transfer_ms))
            .then(b.cached.cmp(&a.cached))
            .then(a.peer.cmp(&b.peer))
    }
}

impl PartialEq for Candidate<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Candidate<'_> {}

impl PartialOrd for Candidate<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate<'_> {
    /// The max-heap pops the best candidate.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        Self::order(
            (other.worker, other.pace, other.load),
            (self.worker, self.pace, self.load),
        )
    }
}
