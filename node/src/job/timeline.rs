//! The recent runs of the tasks this device coordinates, for the live
//! page's timeline (issue 21): which device ran which task of which job,
//! from when to when and how it ended, and how many tasks started and
//! finished each second. Bounded: the newest [`MAX_RUNS`] runs, those that
//! ended more than [`WINDOW_MS`] ago dropped; [`RATE_SECONDS`] one-second
//! counts. Each change gets a sequence number, so a reader asks for what
//! changed since the last one it saw.

use std::collections::VecDeque;

use corral_protocol::ids::{JobId, PeerKey};
use serde_json::{Value, json};

/// Most runs kept.
pub const MAX_RUNS: usize = 2000;
/// Ended runs are kept this long.
pub const WINDOW_MS: u64 = 10 * 60 * 1000;
/// Seconds of dispatch rate kept.
pub const RATE_SECONDS: u64 = 300;

/// How a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Accepted by its device, no result yet.
    Running,
    /// Its result came: the module exited 0.
    Done,
    /// Its result came and was a failure (an exit code, a trap, a limit),
    /// or its device could not run it.
    Failed,
    /// Its device went away or handed it back (not the task's fault).
    Lost,
    /// Its job was cancelled while it ran.
    Cancelled,
}

impl RunState {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Done => "done",
            RunState::Failed => "failed",
            RunState::Lost => "lost",
            RunState::Cancelled => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
struct Run {
    id: u64,
    changed: u64,
    peer: PeerKey,
    job: JobId,
    task: u32,
    start_ms: u64,
    end_ms: Option<u64>,
    state: RunState,
}

/// Tasks started and finished in one second.
#[derive(Clone, Copy, Debug)]
struct Second {
    at: u64,
    started: u32,
    finished: u32,
}

/// The ring of recent runs and the per-second counts.
#[derive(Debug, Default)]
pub struct Timeline {
    runs: VecDeque<Run>,
    rate: VecDeque<Second>,
    next_id: u64,
    seq: u64,
}

impl Timeline {
    /// Task `task` of `job` was accepted by `peer` at `now_ms`.
    pub fn started(&mut self, peer: PeerKey, job: JobId, task: u32, now_ms: u64) {
        self.push(peer, job, task, now_ms);
        self.count(now_ms, 1, 0);
    }

    fn push(&mut self, peer: PeerKey, job: JobId, task: u32, start_ms: u64) -> usize {
        self.prune(start_ms);
        if self.runs.len() >= MAX_RUNS {
            self.runs.pop_front();
        }
        self.seq += 1;
        self.next_id += 1;
        self.runs.push_back(Run {
            id: self.next_id,
            changed: self.seq,
            peer,
            job,
            task,
            start_ms,
            end_ms: None,
            state: RunState::Running,
        });
        self.runs.len() - 1
    }

    /// The run of `task` of `job` on `peer` ended at `now_ms`, `ran_ms`
    /// after it really started when its device says so (a task may wait
    /// in its device's queue first). A run not seen starting (before a
    /// restart, or dropped from the ring) is added as it ended.
    pub fn ended(
        &mut self,
        peer: PeerKey,
        job: JobId,
        task: u32,
        state: RunState,
        ran_ms: Option<u64>,
        now_ms: u64,
    ) {
        let open = self
            .runs
            .iter()
            .rposition(|r| r.end_ms.is_none() && r.peer == peer && r.job == job && r.task == task);
        let i = match (open, ran_ms) {
            (Some(i), _) => i,
            (None, Some(ran)) => self.push(peer, job, task, now_ms.saturating_sub(ran)),
            (None, None) => return,
        };
        self.seq += 1;
        let run = &mut self.runs[i];
        run.changed = self.seq;
        run.end_ms = Some(now_ms.max(run.start_ms));
        run.state = state;
        if let Some(ran) = ran_ms {
            run.start_ms = run.start_ms.max(now_ms.saturating_sub(ran));
        }
        self.count(now_ms, 0, 1);
    }

    /// Every open run that `which` picks ended at `now_ms` as `state` (a
    /// device gone, a job cancelled).
    pub fn end_all(
        &mut self,
        which: impl Fn(&PeerKey, &JobId) -> bool,
        state: RunState,
        now_ms: u64,
    ) {
        let mut ended = 0;
        for run in self.runs.iter_mut() {
            if run.end_ms.is_none() && which(&run.peer, &run.job) {
                self.seq += 1;
                run.changed = self.seq;
                run.end_ms = Some(now_ms.max(run.start_ms));
                run.state = state;
                ended += 1;
            }
        }
        self.count(now_ms, 0, ended);
    }

    /// The runs changed after `since` (all with 0), the per-second counts
    /// and the sequence number to ask from next, as JSON; devices named by
    /// `name`.
    pub fn since(&self, since: u64, now_ms: u64, name: &dyn Fn(&PeerKey) -> String) -> Value {
        let runs: Vec<Value> = self
            .runs
            .iter()
            .filter(|r| r.changed > since)
            .filter(|r| r.end_ms.is_none_or(|end| end + WINDOW_MS >= now_ms))
            .map(|r| {
                json!({
                    "id": r.id,
                    "device": name(&r.peer),
                    "job": r.job.to_string(),
                    "task": r.task,
                    "start_ms": r.start_ms,
                    "end_ms": r.end_ms,
                    "state": r.state.name(),
                })
            })
            .collect();
        let now_s = now_ms / 1000;
        let rate: Vec<[u64; 3]> = self
            .rate
            .iter()
            .filter(|s| s.at + RATE_SECONDS > now_s)
            .map(|s| [s.at * 1000, u64::from(s.started), u64::from(s.finished)])
            .collect();
        json!({
            "seq": self.seq,
            "full": since == 0,
            "now_ms": now_ms,
            "window_ms": WINDOW_MS,
            "max_runs": MAX_RUNS,
            "runs": runs,
            "rate": rate,
        })
    }

    /// The current sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn prune(&mut self, now_ms: u64) {
        while self
            .runs
            .front()
            .is_some_and(|r| r.end_ms.is_some_and(|end| end + WINDOW_MS < now_ms))
        {
            self.runs.pop_front();
        }
    }

    fn count(&mut self, now_ms: u64, started: u32, finished: u32) {
        let at = now_ms / 1000;
        match self.rate.back_mut() {
            Some(s) if s.at == at => {
                s.started += started;
                s.finished += finished;
            }
            // A clock stepping back counts into the newest second.
            Some(s) if s.at > at => {
                s.started += started;
                s.finished += finished;
            }
            _ => self.rate.push_back(Second {
                at,
                started,
                finished,
            }),
        }
        while self.rate.front().is_some_and(|s| s.at + RATE_SECONDS <= at) {
            self.rate.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PeerKey {
        PeerKey::from_bytes([b; 32])
    }

    fn job(b: u8) -> JobId {
        JobId::from_bytes([b; 16])
    }

    fn named(p: &PeerKey) -> String {
        format!("dev{}", p.as_bytes()[0])
    }

    #[test]
    fn runs_open_and_end_and_readers_get_only_what_changed() {
        let mut t = Timeline::default();
        let t0 = 1_000_000;
        t.started(key(1), job(1), 0, t0);
        t.started(key(2), job(1), 1, t0 + 10);
        let full = t.since(0, t0 + 20, &named);
        assert_eq!(full["runs"].as_array().map(Vec::len), Some(2));
        assert_eq!(full["runs"][0]["device"], "dev1");
        assert_eq!(full["runs"][0]["state"], "running");
        let seen = full["seq"].as_u64().expect("seq");
        // Ended after 300 ms of running (it waited in a queue first).
        t.ended(key(1), job(1), 0, RunState::Done, Some(300), t0 + 1500);
        let delta = t.since(seen, t0 + 1500, &named);
        let runs = delta["runs"].as_array().expect("runs");
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0]["state"], "done");
        assert_eq!(runs[0]["start_ms"], t0 + 1200);
        assert_eq!(runs[0]["end_ms"], t0 + 1500);
        // A device gone: its open runs are lost; counted as finished.
        t.end_all(|p, _| *p == key(2), RunState::Lost, t0 + 2000);
        let all = t.since(0, t0 + 2000, &named);
        assert_eq!(all["runs"][1]["state"], "lost");
        let rate = all["rate"].as_array().expect("rate");
        let started: u64 = rate.iter().map(|s| s[1].as_u64().unwrap_or(0)).sum();
        let finished: u64 = rate.iter().map(|s| s[2].as_u64().unwrap_or(0)).sum();
        assert_eq!((started, finished), (2, 2));
    }

    #[test]
    fn the_ring_and_the_rate_stay_bounded() {
        let mut t = Timeline::default();
        let t0 = 5_000_000;
        for i in 0..(MAX_RUNS as u32 + 500) {
            let now = t0 + u64::from(i) * 1000;
            t.started(key(1), job(1), i, now);
            t.ended(key(1), job(1), i, RunState::Failed, None, now + 1);
        }
        let now = t0 + (MAX_RUNS as u64 + 500) * 1000;
        assert!(t.runs.len() <= MAX_RUNS);
        assert!(t.rate.len() as u64 <= RATE_SECONDS);
        // Only the last ten minutes are reported.
        let all = t.since(0, now, &named);
        let runs = all["runs"].as_array().expect("runs");
        assert!(runs.len() as u64 <= WINDOW_MS / 1000 + 1, "{}", runs.len());
        assert!(all["rate"].as_array().expect("rate").len() as u64 <= RATE_SECONDS);
        // A result for a run never seen starting still shows, once.
        let before = t.since(0, now, &named)["runs"].as_array().map(Vec::len);
        t.ended(key(3), job(2), 7, RunState::Done, Some(50), now);
        let after = t.since(0, now, &named);
        assert_eq!(
            after["runs"].as_array().map(Vec::len),
            before.map(|n| n + 1)
        );
        // An end with no run and no duration is ignored.
        t.ended(key(3), job(2), 8, RunState::Lost, None, now);
        assert_eq!(
            t.since(0, now, &named)["runs"].as_array().map(Vec::len),
            before.map(|n| n + 1)
        );
    }
}
