//! Straggler copies at the end of a batch: an idle worker faster than the
//! holder of a task running once runs a copy; the first result wins.

use std::collections::BTreeMap;

use corral_protocol::ids::PeerKey;

use super::{Batch, Decision, TaskState, Worker};

impl Batch {
    /// `workers` in one pass, each looked up once: the idle ones (nothing
    /// of this batch, and a slot free of other jobs too), and the holders
    /// whose speed changed since they were given their tasks (a device
    /// slowed by other work on its cores, or given its CPU back), with
    /// their speed now.
    fn idle_and_changed<'w>(
        &self,
        workers: &'w [Worker],
    ) -> (Vec<&'w Worker>, BTreeMap<PeerKey, u64>) {
        let mut idle = Vec::new();
        let mut changed = BTreeMap::new();
        for w in workers {
            match self.given.get(&w.peer) {
                Some(g) if g.load > 0 => {
                    if g.speed != w.speed {
                        changed.insert(w.peer, w.speed);
                    }
                }
                _ => {
                    if w.speed > 0 && w.slots_free > 0 {
                        idle.push(w);
                    }
                }
            }
        }
        (idle, changed)
    }

    /// Holders whose speed changed (`changed`, from `idle_and_changed`)
    /// are compared by their speed now. Only holders among the workers
    /// passed are seen.
    fn refresh_holder_speeds(&mut self, changed: &BTreeMap<PeerKey, u64>) {
        if changed.is_empty() {
            return;
        }
        for (peer, &speed) in changed {
            if let Some(g) = self.given.get_mut(peer) {
                g.speed = speed;
            }
        }
        let held: Vec<u32> = self
            .singles
            .iter()
            .map(|&(_, index)| index)
            .filter(|&index| match &self.tasks[index as usize].state {
                TaskState::Running(on) => on.keys().any(|p| changed.contains_key(p)),
                _ => false,
            })
            .collect();
        for index in held {
            self.sync_single(index);
        }
    }

    /// Each idle worker takes a copy of the running task whose holder is the
    /// slowest, if it is faster than that holder. Sorting the stragglers once
    /// makes this O(T log T) rather than O(idle workers × T).
    pub(super) fn duplicate_stragglers(
        &mut self,
        workers: &[Worker],
        now_ms: u64,
    ) -> Vec<Decision> {
        let (idle, changed) = self.idle_and_changed(workers);
        if idle.is_empty() {
            return Vec::new();
        }
        self.refresh_holder_speeds(&changed);
        let mut decisions = Vec::new();
        for idle in idle {
            // An idle worker holds nothing, so it is never the holder; the
            // slowest holder left is the only candidate worth checking.
            let Some(&(holder_speed, index)) = self.singles.first() else {
                break;
            };
            if holder_speed >= idle.speed {
                continue;
            }
            // A speculative copy is part of the same attempt: it does not use
            // up one of the task's tries.
            decisions.push(self.run_on(
                index,
                idle,
                now_ms,
                "straggler: an idle, faster worker runs a copy; the first result wins".into(),
            ));
        }
        decisions
    }
}
