//! The task state machine of one batch job on its coordinator, and the
//! placement of its tasks on the peers of the view (DESIGN §3).
//!
//! Pure and deterministic: the node tells it what happened (an offer was
//! accepted or refused, a result came back, a peer was lost) and asks it what
//! to do next; it answers with [`Decision`]s, each with its reason, which the
//! node carries out (and the simulator replays). Time is passed in.
//!
//! Rules: a task is queued → offered → running → done or failed; a refused
//! or lost task goes back to the queue at once; after `max_attempts` starts
//! it fails with the last reason. Placement is late-binding: a worker holds at
//! most one task more than its free slots, so a finished task pulls the next
//! and fast devices do more. Among workers with room, the task goes where it
//! is predicted to finish first: the worker's backlog plus one task, divided
//! by its calibrated speed. When the queue is empty, an idle worker that
//! would finish a running task sooner than its current holder runs a
//! duplicate; the first result wins and the other is cancelled.

use std::collections::BTreeMap;

use corral_protocol::ids::PeerKey;

/// A worker as placement sees it (from the peer view).
#[derive(Clone, Debug, PartialEq)]
pub struct Worker {
    /// The peer.
    pub peer: PeerKey,
    /// Free task slots it advertises.
    pub slots_free: u16,
    /// Calibrated speed for the engine this job needs (operations per second);
    /// 0 means it cannot run the job at all.
    pub speed: u64,
}

/// Where a task stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for a worker.
    Queued,
    /// Running (or offered) on these workers, with the time each started.
    Running(BTreeMap<PeerKey, u64>),
    /// Finished by this worker.
    Done(PeerKey),
    /// Given up, with the reason.
    Failed(String),
}

/// One task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its state.
    pub state: TaskState,
    /// How many times it was started from the queue (speculative copies of a
    /// straggler are part of the attempt they copy).
    pub attempts: u32,
    /// The reason of the last failed attempt.
    pub last_error: Option<String>,
}

/// What the node should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Offer task `index` to `peer` (attempt number `attempt`).
    Offer {
        /// The task.
        index: u32,
        /// The worker.
        peer: PeerKey,
        /// 1-based attempt.
        attempt: u32,
        /// Why this worker.
        reason: String,
    },
    /// Cancel task `index` on `peer` (another copy finished first).
    Cancel {
        /// The task.
        index: u32,
        /// The worker.
        peer: PeerKey,
    },
    /// Task `index` failed for good.
    GiveUp {
        /// The task.
        index: u32,
        /// Why.
        reason: String,
    },
}

/// Settings of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Starts per task before it fails.
    pub max_attempts: u32,
    /// Allow straggler duplicates at the end of the batch.
    pub duplicates: bool,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            duplicates: true,
        }
    }
}

/// The tasks of one job.
#[derive(Clone, Debug)]
pub struct Batch {
    config: BatchConfig,
    tasks: Vec<Task>,
}

impl Batch {
    /// `count` queued tasks.
    pub fn new(count: u32, config: BatchConfig) -> Self {
        let task = Task {
            state: TaskState::Queued,
            attempts: 0,
            last_error: None,
        };
        Self {
            config,
            tasks: vec![task; count as usize],
        }
    }

    /// Every task, by index.
    pub fn tasks(&self) -> &[Task] {
        &self.tasks
    }

    /// Whether every task is done or failed.
    pub fn is_finished(&self) -> bool {
        self.tasks
            .iter()
            .all(|t| matches!(t.state, TaskState::Done(_) | TaskState::Failed(_)))
    }

    /// Tasks held by `peer` (running or offered).
    fn load_of(&self, peer: &PeerKey) -> usize {
        self.tasks
            .iter()
            .filter(|t| matches!(&t.state, TaskState::Running(on) if on.contains_key(peer)))
            .count()
    }

    /// Takes task `index` off `peer`; back to the queue (or failed) when no
    /// other copy runs.
    fn release(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        let max = self.config.max_attempts;
        let Some(task) = self.tasks.get_mut(index as usize) else {
            return Vec::new();
        };
        let TaskState::Running(on) = &mut task.state else {
            return Vec::new();
        };
        if on.remove(peer).is_none() {
            return Vec::new();
        }
        task.last_error = Some(reason.to_string());
        if !on.is_empty() {
            return Vec::new();
        }
        if task.attempts >= max {
            let why = format!("gave up after {} attempts: {reason}", task.attempts);
            task.state = TaskState::Failed(why.clone());
            vec![Decision::GiveUp { index, reason: why }]
        } else {
            task.state = TaskState::Queued;
            Vec::new()
        }
    }

    /// `peer` refused task `index`.
    pub fn on_rejected(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.release(index, peer, &format!("{} refused: {reason}", peer.short()))
    }

    /// Task `index` failed on `peer` (a trap, a limit, a lost connection).
    pub fn on_failed(&mut self, index: u32, peer: &PeerKey, reason: &str) -> Vec<Decision> {
        self.release(index, peer, reason)
    }

    /// `peer` left: every task it held goes back to the queue at once.
    pub fn on_peer_lost(&mut self, peer: &PeerKey) -> Vec<Decision> {
        let held: Vec<u32> = (0..self.tasks.len() as u32)
            .filter(|&i| matches!(&self.tasks[i as usize].state, TaskState::Running(on) if on.contains_key(peer)))
            .collect();
        held.into_iter()
            .flat_map(|i| self.release(i, peer, &format!("{} left the mesh", peer.short())))
            .collect()
    }

    /// A result of task `index` from `peer`. The first result wins; the other
    /// copies are cancelled. A late result of a task already done, or from a
    /// worker that no longer holds it, changes nothing.
    pub fn on_done(&mut self, index: u32, peer: &PeerKey) -> Vec<Decision> {
        let Some(task) = self.tasks.get_mut(index as usize) else {
            return Vec::new();
        };
        let TaskState::Running(on) = &task.state else {
            return Vec::new();
        };
        if !on.contains_key(peer) {
            return Vec::new();
        }
        let cancels = on
            .keys()
            .filter(|p| *p != peer)
            .map(|p| Decision::Cancel { index, peer: *p })
            .collect();
        task.state = TaskState::Done(*peer);
        cancels
    }

    /// Places queued tasks (and, at the end, duplicates of stragglers) on
    /// `workers`. `now_ms` stamps the starts.
    pub fn schedule(&mut self, workers: &[Worker], now_ms: u64) -> Vec<Decision> {
        let mut decisions = Vec::new();
        let mut load: BTreeMap<PeerKey, usize> = workers
            .iter()
            .map(|w| (w.peer, self.load_of(&w.peer)))
            .collect();
        let capacity = |w: &Worker| usize::from(w.slots_free) + 1;
        for index in 0..self.tasks.len() as u32 {
            if self.tasks[index as usize].state != TaskState::Queued {
                continue;
            }
            // Earliest predicted finish: (backlog + 1) / speed, compared as
            // fractions to stay in integers; ties go to the smaller key.
            let best = workers
                .iter()
                .filter(|w| w.speed > 0 && load.get(&w.peer).copied().unwrap_or(0) < capacity(w))
                .min_by(|a, b| {
                    let la = load[&a.peer] as u128 + 1;
                    let lb = load[&b.peer] as u128 + 1;
                    (la * u128::from(b.speed))
                        .cmp(&(lb * u128::from(a.speed)))
                        .then(a.peer.cmp(&b.peer))
                });
            let Some(worker) = best else { break };
            let task = &mut self.tasks[index as usize];
            task.attempts += 1;
            task.state = TaskState::Running(BTreeMap::from([(worker.peer, now_ms)]));
            *load.entry(worker.peer).or_insert(0) += 1;
            decisions.push(Decision::Offer {
                index,
                peer: worker.peer,
                attempt: task.attempts,
                reason: format!(
                    "earliest predicted finish: {} task(s) ahead at {} ops/s",
                    load[&worker.peer] - 1,
                    worker.speed
                ),
            });
        }
        if self.config.duplicates && !self.tasks.iter().any(|t| t.state == TaskState::Queued) {
            decisions.extend(self.duplicate_stragglers(workers, &mut load, now_ms));
        }
        decisions
    }

    /// An idle worker takes a copy of the running task whose holder is the
    /// slowest, if it is faster than that holder.
    fn duplicate_stragglers(
        &mut self,
        workers: &[Worker],
        load: &mut BTreeMap<PeerKey, usize>,
        now_ms: u64,
    ) -> Vec<Decision> {
        let speed: BTreeMap<PeerKey, u64> = workers.iter().map(|w| (w.peer, w.speed)).collect();
        let mut decisions = Vec::new();
        let idle: Vec<&Worker> = workers
            .iter()
            .filter(|w| w.speed > 0 && load.get(&w.peer) == Some(&0))
            .collect();
        for idle in idle {
            let straggler = (0..self.tasks.len() as u32)
                .filter_map(|i| match &self.tasks[i as usize].state {
                    TaskState::Running(on) if on.len() == 1 && !on.contains_key(&idle.peer) => {
                        let (holder, _) = on.iter().next()?;
                        let holder_speed = speed.get(holder).copied().unwrap_or(0);
                        (holder_speed < idle.speed).then_some((holder_speed, i))
                    }
                    _ => None,
                })
                .min();
            let Some((_, index)) = straggler else {
                continue;
            };
            let task = &mut self.tasks[index as usize];
            if let TaskState::Running(on) = &mut task.state {
                on.insert(idle.peer, now_ms);
            }
            // A speculative copy is part of the same attempt: it does not use
            // up one of the task's tries.
            *load.entry(idle.peer).or_insert(0) += 1;
            decisions.push(Decision::Offer {
                index,
                peer: idle.peer,
                attempt: task.attempts,
                reason: "straggler: an idle, faster worker runs a copy; the first result wins"
                    .into(),
            });
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(n: u8) -> PeerKey {
        PeerKey::from_bytes([n; 32])
    }

    fn worker(n: u8, slots: u16, speed: u64) -> Worker {
        Worker {
            peer: key(n),
            slots_free: slots,
            speed,
        }
    }

    fn offers(decisions: &[Decision]) -> Vec<(u32, PeerKey)> {
        decisions
            .iter()
            .filter_map(|d| match d {
                Decision::Offer { index, peer, .. } => Some((*index, *peer)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn late_binding_keeps_a_worker_one_task_ahead_of_its_slots() {
        let mut batch = Batch::new(10, BatchConfig::default());
        let placed = offers(&batch.schedule(&[worker(1, 2, 100)], 0));
        assert_eq!(placed.len(), 3, "2 free slots + 1 queued ahead");
        // A finished task pulls the next.
        batch.on_done(placed[0].0, &key(1));
        assert_eq!(offers(&batch.schedule(&[worker(1, 2, 100)], 1)).len(), 1);
    }

    #[test]
    fn faster_workers_get_more_tasks() {
        let mut batch = Batch::new(6, BatchConfig::default());
        let workers = [worker(1, 4, 400), worker(2, 4, 100)];
        let placed = offers(&batch.schedule(&workers, 0));
        let fast = placed.iter().filter(|(_, p)| *p == key(1)).count();
        let slow = placed.iter().filter(|(_, p)| *p == key(2)).count();
        assert!(fast > slow, "fast {fast}, slow {slow}");
    }

    #[test]
    fn a_lost_peer_requeues_its_tasks_at_once_and_attempts_are_bounded() {
        let mut batch = Batch::new(
            1,
            BatchConfig {
                max_attempts: 2,
                duplicates: false,
            },
        );
        assert_eq!(
            offers(&batch.schedule(&[worker(1, 1, 10)], 0)),
            vec![(0, key(1))]
        );
        assert!(batch.on_peer_lost(&key(1)).is_empty());
        assert_eq!(batch.tasks()[0].state, TaskState::Queued);
        assert_eq!(
            offers(&batch.schedule(&[worker(2, 1, 10)], 1)),
            vec![(0, key(2))]
        );
        let given_up = batch.on_failed(0, &key(2), "trap: unreachable");
        assert!(
            matches!(&given_up[..], [Decision::GiveUp { index: 0, reason }] if reason.contains("2 attempts") && reason.contains("unreachable"))
        );
        assert!(batch.is_finished());
    }

    #[test]
    fn a_refusal_names_the_worker_and_requeues() {
        let mut batch = Batch::new(1, BatchConfig::default());
        batch.schedule(&[worker(1, 1, 10)], 0);
        batch.on_rejected(0, &key(1), "submitter not trusted");
        assert_eq!(batch.tasks()[0].state, TaskState::Queued);
        assert!(
            batch.tasks()[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("refused: submitter not trusted"))
        );
    }

    #[test]
    fn stragglers_are_duplicated_on_faster_idle_workers_and_the_first_result_wins() {
        let mut batch = Batch::new(1, BatchConfig::default());
        assert_eq!(
            offers(&batch.schedule(&[worker(1, 1, 10)], 0)),
            vec![(0, key(1))]
        );
        let decisions = batch.schedule(&[worker(1, 0, 10), worker(2, 1, 1000)], 5);
        assert_eq!(offers(&decisions), vec![(0, key(2))]);
        assert_eq!(
            batch.on_done(0, &key(2)),
            vec![Decision::Cancel {
                index: 0,
                peer: key(1)
            }]
        );
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(2)));
        // The slow copy's late result changes nothing.
        assert!(batch.on_done(0, &key(1)).is_empty());
        assert_eq!(batch.tasks()[0].state, TaskState::Done(key(2)));
    }

    #[test]
    fn workers_that_cannot_run_the_job_get_nothing() {
        let mut batch = Batch::new(3, BatchConfig::default());
        assert!(batch.schedule(&[worker(1, 8, 0)], 0).is_empty());
    }

    #[derive(Clone, Debug)]
    enum Event {
        Schedule,
        Done(u32, u8),
        Failed(u32, u8),
        Rejected(u32, u8),
        Lost(u8),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Schedule),
            3 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Done(i, p)),
            1 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Failed(i, p)),
            1 => (0u32..8, 1u8..4).prop_map(|(i, p)| Event::Rejected(i, p)),
            1 => (1u8..4).prop_map(Event::Lost),
        ]
    }

    proptest! {
        #[test]
        fn no_task_is_lost_or_counted_twice_and_capacity_holds(events in prop::collection::vec(event(), 0..150)) {
            let workers = [worker(1, 2, 300), worker(2, 1, 100), worker(3, 3, 50)];
            let mut batch = Batch::new(8, BatchConfig::default());
            let mut finished: BTreeMap<u32, PeerKey> = BTreeMap::new();
            for (t, e) in events.into_iter().enumerate() {
                let decisions = match e {
                    Event::Schedule => batch.schedule(&workers, t as u64),
                    Event::Done(i, p) => batch.on_done(i, &key(p)),
                    Event::Failed(i, p) => batch.on_failed(i, &key(p), "x"),
                    Event::Rejected(i, p) => batch.on_rejected(i, &key(p), "busy"),
                    Event::Lost(p) => batch.on_peer_lost(&key(p)),
                };
                prop_assert_eq!(batch.tasks().len(), 8, "no task lost");
                for w in &workers {
                    prop_assert!(batch.load_of(&w.peer) <= usize::from(w.slots_free) + 1, "capacity exceeded");
                }
                for d in &decisions {
                    if let Decision::Offer { index, .. } = d {
                        prop_assert!(!finished.contains_key(index), "a finished task was offered again");
                    }
                }
                for (i, task) in batch.tasks().iter().enumerate() {
                    if let TaskState::Done(p) = task.state {
                        // Done once, by one worker, for good.
                        let prev = finished.insert(i as u32, p);
                        prop_assert!(prev.is_none() || prev == Some(p));
                    }
                    prop_assert!(task.attempts <= BatchConfig::default().max_attempts);
                }
            }
            // Drain: keep scheduling and completing; every task ends.
            for round in 0..100u64 {
                if batch.is_finished() { break; }
                batch.schedule(&workers, 1000 + round);
                let running: Vec<(u32, PeerKey)> = batch
                    .tasks()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, t)| match &t.state {
                        TaskState::Running(on) => on.keys().next().map(|p| (i as u32, *p)),
                        _ => None,
                    })
                    .collect();
                for (i, p) in running { batch.on_done(i, &p); }
                if round == 99 { prop_assert!(batch.is_finished(), "the batch never finished"); }
            }
        }
    }
}
