//! `GET /api/events`: the page's push stream (Server-Sent Events). One hub
//! task asks the event loop for a snapshot — `status`, `peers` and the
//! newest jobs, the same control requests the CLI sends — every
//! [`TICK`] while a page listens (never while none does), and sends it to
//! every stream when it changed; a heartbeat comment keeps quiet streams
//! open. The jobs list (a store scan) is asked for only when the status's
//! `jobs_seq` moved, at most every [`JOBS_EVERY`]. The timeline (recent
//! task runs and the dispatch rate, `Request::Timeline`) goes as its own
//! `timeline` event: in full to a new stream, then only the runs that
//! changed since the last tick, coalesced per tick.
//!
//! Bounded: at most [`MAX_STREAMS`] streams, each with a queue of
//! [`QUEUE`] messages; a stream whose queue is full is dropped (its page
//! reconnects and starts from a fresh snapshot), never buffered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::control::Request;
use crate::control::server::Call;

/// Most event streams open at once.
pub(super) const MAX_STREAMS: usize = 16;
/// Messages queued per stream before it counts as too slow (a tick sends
/// up to two: a snapshot and a timeline).
const QUEUE: usize = 16;
/// How often a snapshot may go out.
const TICK: Duration = Duration::from_millis(250);
/// Most often the jobs list is read again.
const JOBS_EVERY: Duration = Duration::from_secs(1);
/// A heartbeat after this long without a snapshot.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// Newest jobs in a snapshot (the rest: `GET /api/jobs`).
const SNAPSHOT_JOBS: usize = 50;

/// The streams listening, and the hub task's wake-up.
pub(super) struct Hub {
    streams: Mutex<Vec<Listener>>,
    slots: Arc<Semaphore>,
    wake: Notify,
}

struct Listener {
    tx: mpsc::Sender<Bytes>,
    /// Has not had a snapshot yet.
    fresh: bool,
    /// Has not had the whole timeline yet.
    timeline_fresh: bool,
}

impl Hub {
    /// The hub, with its task started on this runtime.
    pub(super) fn start(calls: mpsc::Sender<Call>) -> Arc<Self> {
        let hub = Arc::new(Self {
            streams: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            wake: Notify::new(),
        });
        tokio::spawn(run(hub.clone(), calls));
        hub
    }

    /// A new stream's messages, or `None` when [`MAX_STREAMS`] are open.
    pub(super) fn subscribe(&self) -> Option<impl Stream<Item = Bytes> + Send + use<>> {
        let permit = self.slots.clone().try_acquire_owned().ok()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        self.lock().push(Listener {
            tx,
            fresh: true,
            timeline_fresh: true,
        });
        self.wake.notify_one();
        Some(Messages {
            rx,
            _permit: permit,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Listener>> {
        // A panic while holding it leaves a list that is still whole.
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `snapshot` to the streams that need it (all when `changed`,
    /// else the fresh ones), a heartbeat to all when `beat`; drops the
    /// closed and the slow. Returns how many remain.
    fn send(&self, snapshot: Option<&Bytes>, changed: bool, beat: bool) -> usize {
        let mut streams = self.lock();
        streams.retain_mut(|l| {
            let message = match snapshot {
                Some(s) if changed || l.fresh => s.clone(),
                _ if beat => Bytes::from_static(b": heartbeat\n\n"),
                _ => return !l.tx.is_closed(),
            };
            l.fresh = false;
            deliver(&l.tx, message)
        });
        streams.len()
    }
}

impl Hub {
    /// Whether a stream waits for the whole timeline.
    fn wants_full_timeline(&self) -> bool {
        self.lock().iter().any(|l| l.timeline_fresh)
    }

    /// Sends the whole timeline (`full`) to the streams that have not had
    /// it, what changed (`delta`) to the others; drops the slow.
    fn send_timeline(&self, full: Option<&Bytes>, delta: Option<&Bytes>) {
        self.lock().retain_mut(|l| {
            let message = match (l.timeline_fresh, full, delta) {
                (true, Some(full), _) => full.clone(),
                (false, _, Some(delta)) => delta.clone(),
                _ => return true,
            };
            l.timeline_fresh = false;
            deliver(&l.tx, message)
        });
    }
}

/// One stream's messages; holds its slot until the page goes away.
struct Messages {
    rx: mpsc::Receiver<Bytes>,
    _permit: OwnedSemaphorePermit,
}

impl Stream for Messages {
    type Item = Bytes;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Bytes>> {
        self.rx.poll_recv(cx)
    }
}

/// The hub's task: sleeps while no page listens; else every [`TICK`]
/// reads a snapshot and sends it on.
async fn run(hub: Arc<Hub>, calls: mpsc::Sender<Call>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<(Value, Bytes)> = None;
    let mut jobs = Jobs::default();
    let mut last_sent = Instant::now();
    let mut timeline_seq = 0u64;
    loop {
        if hub.send(None, false, false) == 0 {
            hub.wake.notified().await;
        }
        tick.tick().await;
        let Some((content, bytes)) = snapshot(&calls, &mut jobs).await else {
            // The daemon is going away.
            return;
        };
        let changed = last.as_ref().is_none_or(|(before, _)| *before != content);
        if changed {
            last = Some((content, bytes));
        }
        let beat = last_sent.elapsed() >= HEARTBEAT;
        hub.send(last.as_ref().map(|(_, b)| b), changed, beat);
        if changed || beat {
            last_sent = Instant::now();
        }
        let Some(()) = timeline(&hub, &calls, &mut timeline_seq).await else {
            return;
        };
    }
}

/// Reads what changed in the timeline since `seen` (and all of it when a
/// new stream needs it) and sends it on. `None` when the daemon no longer
/// answers.
async fn timeline(hub: &Hub, calls: &mpsc::Sender<Call>, seen: &mut u64) -> Option<()> {
    let message = |value: &Value| {
        let data = serde_json::to_string(value).ok()?;
        Some(Bytes::from(format!("event: timeline\ndata: {data}\n\n")))
    };
    // What changed first, then the whole: a change between the two reads
    // is in both (the page keeps runs by id), never in neither.
    let delta = ask(calls, Request::Timeline { since: *seen }).await?;
    let seq = delta["seq"].as_u64().unwrap_or(*seen);
    let delta = if seq != *seen {
        *seen = seq;
        message(&delta)
    } else {
        None
    };
    let full = if hub.wants_full_timeline() {
        let all = ask(calls, Request::Timeline { since: 0 }).await?;
        message(&all)
    } else {
        None
    };
    hub.send_timeline(full.as_ref(), delta.as_ref());
    Some(())
}

/// The jobs list as last read.
#[derive(Default)]
struct Jobs {
    seq: Option<Value>,
    read_at: Option<Instant>,
    list: Value,
    total: usize,
}

/// Reads a snapshot: its content (what is compared) and the SSE message
/// carrying it with the time it was read. `None` when the daemon no
/// longer answers.
async fn snapshot(calls: &mpsc::Sender<Call>, jobs: &mut Jobs) -> Option<(Value, Bytes)> {
    let status = ask(calls, Request::Status).await?;
    let mut peers = ask(calls, Request::Peers).await?;
    // `age_ms` changes with every read: the page works it out from
    // `last_seen_ms` and the snapshot's `now_ms`.
    if let Some(list) = peers.as_array_mut() {
        for peer in list.iter_mut().filter_map(Value::as_object_mut) {
            peer.remove("age_ms");
        }
    }
    let seq = status.get("jobs_seq").cloned();
    let due = jobs.read_at.is_none_or(|t| t.elapsed() >= JOBS_EVERY);
    if jobs.read_at.is_none() || (seq != jobs.seq && due) {
        let list = ask(calls, Request::Jobs).await?;
        let all = list.as_array().cloned().unwrap_or_default();
        jobs.total = all.len();
        jobs.list = Value::Array(all.into_iter().take(SNAPSHOT_JOBS).collect());
        jobs.seq = seq;
        jobs.read_at = Some(Instant::now());
    }
    let content = json!({
        "status": status,
        "peers": peers,
        "jobs": jobs.list,
        "jobs_total": jobs.total,
    });
    let mut message = content.clone();
    if let Some(m) = message.as_object_mut() {
        m.insert("now_ms".into(), json!(now_ms()));
    }
    let data = serde_json::to_string(&message).ok()?;
    let bytes = Bytes::from(format!("event: snapshot\ndata: {data}\n\n"));
    Some((content, bytes))
}

/// One control request's answer: the error's JSON when it failed, `None`
/// when the daemon is gone.
async fn ask(calls: &mpsc::Sender<Call>, request: Request) -> Option<Value> {
    let (tx, rx) = oneshot::channel();
    calls.send((request, tx)).await.ok()?;
    Some(match rx.await.ok()? {
        Ok(value) => value,
        Err(e) => json!({ "error": e.message, "code": e.code }),
    })
}

/// Queues `message` on a stream; `false` when the stream is gone or
/// fell behind (it is then dropped).
fn deliver(tx: &mpsc::Sender<Bytes>, message: Bytes) -> bool {
    match tx.try_send(message) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::debug!("a page's event stream fell behind; dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn hub() -> Hub {
        Hub {
            streams: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(MAX_STREAMS)),
            wake: Notify::new(),
        }
    }

    #[tokio::test]
    async fn streams_are_bounded_and_slow_ones_dropped() {
        let hub = hub();
        let mut open: Vec<_> = (0..MAX_STREAMS)
            .map(|_| Box::pin(hub.subscribe().expect("a slot")))
            .collect();
        assert!(hub.subscribe().is_none(), "one too many");
        let snap = Bytes::from_static(b"event: snapshot\ndata: {}\n\n");
        // The fresh ones get the snapshot even when nothing changed.
        assert_eq!(hub.send(Some(&snap), false, false), MAX_STREAMS);
        assert_eq!(open[0].next().await, Some(snap.clone()));
        // Nothing changed, no heartbeat due: nothing sent.
        assert_eq!(hub.send(Some(&snap), false, false), MAX_STREAMS);
        // Stream 0 reads; the others never do and fall behind.
        for _ in 1..QUEUE {
            assert_eq!(hub.send(Some(&snap), true, false), MAX_STREAMS);
            assert_eq!(open[0].next().await, Some(snap.clone()));
        }
        assert_eq!(
            hub.send(Some(&snap), true, false),
            1,
            "the slow are dropped"
        );
        // A dropped stream ends; its slot is free once the page is gone.
        assert_eq!(open[1].next().await, Some(snap.clone()));
        open.truncate(1);
        assert!(hub.subscribe().is_some());
    }
}
