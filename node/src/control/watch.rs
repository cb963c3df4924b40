//! Long polls: `corral run` and `corral job --watch` ask for a job's record
//! once it changes (or ends, or their wait is over). The daemon keeps each
//! such request here until it can be answered; a bounded number at once.

use std::time::Duration;

use corral_protocol::ids::JobId;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::server::Answer;

/// Longest a `Watch` may wait (a CLI asks again).
pub const MAX_WATCH_MS: u64 = 1000;
/// Most watchers at once; beyond, a watch is answered at once.
pub const MAX_WATCHERS: usize = 256;

/// A `Watch` request waiting for its job to change.
#[derive(Debug)]
pub struct Watcher {
    /// The job.
    pub job: JobId,
    /// The change counter the caller has seen.
    pub seq: u64,
    /// Counts only, no task list.
    pub summary: bool,
    deadline: Instant,
    reply: oneshot::Sender<Answer>,
}

impl Watcher {
    /// Answers it.
    pub fn answer(self, answer: Answer) {
        let _ = self.reply.send(answer);
    }
}

/// The watchers waiting.
#[derive(Debug, Default)]
pub struct Watchers {
    list: Vec<Watcher>,
}

impl Watchers {
    /// Keeps a watch until `job` changes from `seq`, or `wait_ms` (at most
    /// [`MAX_WATCH_MS`]) from `now`. When [`MAX_WATCHERS`] wait already,
    /// the reply is handed back to be answered at once.
    pub fn add(
        &mut self,
        job: JobId,
        seq: u64,
        wait_ms: u64,
        summary: bool,
        now: Instant,
        reply: oneshot::Sender<Answer>,
    ) -> Result<(), oneshot::Sender<Answer>> {
        if self.list.len() >= MAX_WATCHERS {
            return Err(reply);
        }
        self.list.push(Watcher {
            job,
            seq,
            summary,
            deadline: now + Duration::from_millis(wait_ms.min(MAX_WATCH_MS)),
            reply,
        });
        Ok(())
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The earliest deadline, if any wait.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.list.iter().map(|w| w.deadline).min()
    }

    /// Takes out the watchers that can be answered at `now`: their job
    /// changed, ended or is unknown (`progress` gives a job's change
    /// counter and whether it still runs), or their wait is over.
    pub fn take_ready(
        &mut self,
        now: Instant,
        progress: impl Fn(&JobId) -> Option<(u64, bool)>,
    ) -> Vec<Watcher> {
        let (ready, waiting): (Vec<Watcher>, Vec<Watcher>) = std::mem::take(&mut self.list)
            .into_iter()
            .partition(|w| match progress(&w.job) {
                Some((seq, live)) => seq != w.seq || !live || now >= w.deadline,
                None => true,
            });
        self.list = waiting;
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u8) -> JobId {
        JobId::from_bytes([n; 16])
    }

    #[test]
    fn a_watcher_waits_for_a_change_an_end_or_its_deadline() {
        let now = Instant::now();
        let mut w = Watchers::default();
        let (tx, mut rx) = oneshot::channel();
        w.add(job(1), 5, 10_000, false, now, tx).expect("room");
        // Capped at MAX_WATCH_MS.
        assert_eq!(
            w.next_deadline(),
            Some(now + Duration::from_millis(MAX_WATCH_MS))
        );
        // Same counter, still running, before the deadline: it waits.
        assert!(w.take_ready(now, |_| Some((5, true))).is_empty());
        assert_eq!(w.len(), 1);
        // The counter moved: it is answered.
        let ready = w.take_ready(now, |_| Some((6, true)));
        assert_eq!(ready.len(), 1);
        assert!(w.is_empty());
        for r in ready {
            r.answer(Ok(serde_json::json!({"seq": 6})));
        }
        assert_eq!(rx.try_recv().expect("answered").expect("ok")["seq"], 6);

        let (tx, _rx) = oneshot::channel();
        w.add(job(2), 1, 200, true, now, tx).expect("room");
        assert!(w.take_ready(now, |_| Some((1, true))).is_empty());
        // Ended.
        assert_eq!(w.take_ready(now, |_| Some((1, false))).len(), 1);
        let (tx, _rx) = oneshot::channel();
        w.add(job(3), 1, 200, true, now, tx).expect("room");
        // Deadline passed.
        let later = now + Duration::from_millis(200);
        assert_eq!(w.take_ready(later, |_| Some((1, true))).len(), 1);
        let (tx, _rx) = oneshot::channel();
        w.add(job(4), 1, 200, true, now, tx).expect("room");
        // Unknown job: answered (with an error by the caller).
        assert_eq!(w.take_ready(now, |_| None).len(), 1);
    }

    #[test]
    fn watchers_are_bounded() {
        let now = Instant::now();
        let mut w = Watchers::default();
        let mut keep = Vec::new();
        for _ in 0..MAX_WATCHERS {
            let (tx, rx) = oneshot::channel();
            keep.push(rx);
            w.add(job(1), 0, 1000, false, now, tx).expect("room");
        }
        let (tx, _rx) = oneshot::channel();
        assert!(w.add(job(1), 0, 1000, false, now, tx).is_err());
        assert_eq!(w.len(), MAX_WATCHERS);
    }
}
