//! The task lane: one long-lived stream from this node to each peer it
//! sends task messages to (`/corral/task-lane/1`), carrying many requests
//! and their answers as framed messages with call ids ([`frames`]).
//!
//! A request-response stream per message (`/corral/task/1`) costs a new
//! Yamux stream, its protocol negotiation, its close and a timer each
//! time; on the lane a message is one frame on a stream already open, and
//! the frames queued while one is written leave in the same write. Only
//! small messages take the lane: one over [`MAX_LANE_FRAME`] (a result
//! with its output inline) still gets a stream of its own, so it never
//! holds up the messages behind it. A peer that does not speak the lane,
//! or whose lane is full, is sent requests the old way. A lane opens with
//! a greeting from the peer that took it (an empty frame of id 0); until
//! it comes nothing is written, so that a peer refusing the protocol (seen
//! only then: streams are negotiated lazily) loses no request.
//!
//! Bounds, for a peer that misbehaves: a frame's length is checked before
//! anything is read into memory, and charged to a budget shared by every
//! lane; a peer has at most [`MAX_IN_FLIGHT`] requests unanswered on its
//! lanes into this node (past it, they are not read: the peer's writes
//! wait) and at most [`LANES_PER_PEER`] lanes at once; an answer must come
//! for a call this node made to that peer on that lane; a call unanswered
//! after [`CALL_TIMEOUT`] fails.

mod frames;
mod links;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use corral_protocol::codec;
use corral_protocol::messages::{TaskRequest, TaskResponse};
use libp2p::{PeerId, StreamProtocol};
use libp2p_stream::Control;
use tokio::sync::mpsc;

use self::frames::Outgoing;
pub use self::links::Answer;
use self::links::Event;
use super::wire::Budget;

/// The lane's protocol.
pub const LANE_PROTOCOL: StreamProtocol = StreamProtocol::new("/corral/task-lane/1");
/// The largest message that takes the lane: offers, answers, heartbeats,
/// cancels and results whose output is fetched as blobs are a few KiB.
pub const MAX_LANE_FRAME: usize = 256 * 1024;
/// Requests a peer may have unanswered on its lanes into this node (as many
/// as request-response streams one connection may carry).
pub const MAX_IN_FLIGHT: usize = super::limits::MAX_TASK_STREAMS;
/// Lanes one peer may have into this node at once (it opens one; a
/// reconnect may overlap the old one for a moment).
pub const LANES_PER_PEER: usize = 4;
/// How long a new lane waits for the peer's greeting before its requests
/// go as streams.
pub const GREETING: Duration = Duration::from_secs(10);
/// How long a call on a lane waits for its answer (as a task request does).
pub const CALL_TIMEOUT: Duration = super::behaviour::TASK_TIMEOUT;
/// Bytes of lane frames being read at once, over every lane.
const LANE_BUDGET: usize = 64 * 1024 * 1024;
/// Requests queued on one lane to be written; past it, the request-response
/// way takes them.
const QUEUE: usize = 256;
/// Events from the lanes waiting for the node.
const EVENTS: usize = 1024;

/// Something a lane's task tells [`Lanes::take`].
pub struct LaneEvent(Event);

/// A request sent on a lane, to match its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallId(u64);

/// What the node learns from a lane event.
pub enum Delivery {
    /// A request from `peer`, to be answered through `answer`.
    Request {
        /// Who sent it.
        peer: PeerId,
        /// What it asks.
        request: TaskRequest,
        /// Where its answer goes.
        answer: Answer,
    },
    /// The outcome of a call.
    Answered {
        /// The call.
        call: CallId,
        /// Its answer, or why there is none.
        result: Result<TaskResponse, String>,
    },
    /// The peer does not speak the lane: send `request` the other way.
    Resend {
        /// The call it was.
        call: CallId,
        /// Whom to.
        peer: PeerId,
        /// What to send.
        request: TaskRequest,
    },
}

/// Which way a request goes.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// On the peer's lane, as this call.
    Lane(CallId),
    /// On a stream of its own: too big, a peer without the lane, or a lane
    /// with too much queued.
    Stream(TaskRequest),
}

/// A call waiting for its answer.
struct Call {
    peer: PeerId,
    lane_no: u64,
}

/// This node's lane to a peer.
struct Lane {
    lane_no: u64,
    queue: mpsc::Sender<Outgoing>,
}

/// This node's lanes and the calls on them.
pub struct Lanes {
    control: Control,
    events: mpsc::Sender<LaneEvent>,
    budget: Budget,
    lanes: HashMap<PeerId, Lane>,
    /// Peers that do not speak the lane (until they reconnect).
    plain: HashSet<PeerId>,
    calls: HashMap<CallId, Call>,
    /// Calls in the order they were made, with their deadlines.
    deadlines: VecDeque<(Instant, CallId)>,
    next: u64,
}

impl Lanes {
    /// Lanes opened through `control`; lanes peers open come in through it
    /// too. Events for [`Lanes::take`] arrive on the receiver.
    pub fn new(mut control: Control) -> anyhow::Result<(Self, mpsc::Receiver<LaneEvent>)> {
        let (events, rx) = mpsc::channel(EVENTS);
        let budget = Budget::new(LANE_BUDGET);
        let incoming = control
            .accept(LANE_PROTOCOL)
            .map_err(|e| anyhow::anyhow!("{LANE_PROTOCOL}: {e}"))?;
        tokio::spawn(links::accept(incoming, events.clone(), budget.clone()));
        let lanes = Self {
            control,
            events,
            budget,
            lanes: HashMap::new(),
            plain: HashSet::new(),
            calls: HashMap::new(),
            deadlines: VecDeque::new(),
            next: 0,
        };
        Ok((lanes, rx))
    }

    /// Sends `request` to `peer` on its lane (opened if need be), or gives
    /// it back for the request-response way.
    pub fn call(&mut self, peer: PeerId, request: TaskRequest) -> Route {
        if self.plain.contains(&peer) {
            return Route::Stream(request);
        }
        // A big one is not encoded here in full only to be thrown away.
        let Some(body) = codec::encode_within(&request, MAX_LANE_FRAME) else {
            return Route::Stream(request);
        };
        self.next += 1;
        let id = self.next;
        let mut out = Outgoing {
            id,
            body,
            _hold: None,
        };
        // A lane that ended is opened again, once.
        for _ in 0..2 {
            if !self.lanes.contains_key(&peer) {
                self.open(peer);
            }
            let Some(lane) = self.lanes.get(&peer) else {
                break;
            };
            let lane_no = lane.lane_no;
            match lane.queue.try_send(out) {
                Ok(()) => {
                    let call = CallId(id);
                    self.calls.insert(call, Call { peer, lane_no });
                    self.deadlines
                        .push_back((Instant::now() + CALL_TIMEOUT, call));
                    return Route::Lane(call);
                }
                Err(mpsc::error::TrySendError::Full(_)) => return Route::Stream(request),
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.lanes.remove(&peer);
                    out = back;
                }
            }
        }
        Route::Stream(request)
    }

    fn open(&mut self, peer: PeerId) {
        self.next += 1;
        let lane_no = self.next;
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(links::outbound(
            self.control.clone(),
            peer,
            lane_no,
            rx,
            self.events.clone(),
            self.budget.clone(),
        ));
        self.lanes.insert(peer, Lane { lane_no, queue });
    }

    /// What `event` means to the node.
    pub fn take(&mut self, event: LaneEvent) -> Vec<Delivery> {
        match event.0 {
            Event::Request {
                peer,
                request,
                answer,
            } => vec![Delivery::Request {
                peer,
                request,
                answer,
            }],
            Event::Response {
                peer,
                lane_no,
                id,
                response,
            } => {
                let call = CallId(id);
                // Only the peer called, on the lane the call went on, may
                // answer it.
                match self.calls.get(&call) {
                    Some(c) if c.peer == peer && c.lane_no == lane_no => {}
                    _ => {
                        tracing::debug!(%peer, id, "an answer on a task lane to no call of ours");
                        return Vec::new();
                    }
                }
                self.calls.remove(&call);
                let result = response.ok_or_else(|| "the peer gave no answer".to_string());
                vec![Delivery::Answered { call, result }]
            }
            Event::NotOpened {
                peer,
                lane_no,
                plain,
                error,
                queued,
            } => {
                tracing::debug!(%peer, "no task lane ({error}): requests go as streams");
                self.forget(peer, lane_no);
                if plain {
                    self.plain.insert(peer);
                }
                // What was queued goes another way: as streams of its own.
                let mut out: Vec<Delivery> = queued
                    .into_iter()
                    .filter_map(|(id, body)| {
                        let call = CallId(id);
                        self.calls.remove(&call)?;
                        Some(match codec::decode::<TaskRequest>(&body) {
                            Ok(request) => Delivery::Resend {
                                call,
                                peer,
                                request,
                            },
                            Err(e) => Delivery::Answered {
                                call,
                                result: Err(e.to_string()),
                            },
                        })
                    })
                    .collect();
                out.extend(self.fail(peer, lane_no, &error));
                out
            }
            Event::Closed { peer, lane_no, why } => {
                tracing::debug!(%peer, "a task lane ended: {why}");
                self.forget(peer, lane_no);
                self.fail(peer, lane_no, &format!("the task lane ended: {why}"))
            }
        }
    }

    fn forget(&mut self, peer: PeerId, lane_no: u64) {
        if self.lanes.get(&peer).is_some_and(|l| l.lane_no == lane_no) {
            self.lanes.remove(&peer);
        }
    }

    /// Fails the calls still waiting on lane `lane_no` to `peer`.
    fn fail(&mut self, peer: PeerId, lane_no: u64, why: &str) -> Vec<Delivery> {
        let mut failed: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, c)| c.peer == peer && c.lane_no == lane_no)
            .map(|(id, _)| *id)
            .collect();
        failed.sort_by_key(|c| c.0);
        for call in &failed {
            self.calls.remove(call);
        }
        failed
            .into_iter()
            .map(|call| Delivery::Answered {
                call,
                result: Err(why.to_string()),
            })
            .collect()
    }

    /// Calls past their deadline at `now`, failed.
    pub fn expire(&mut self, now: Instant) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(&(deadline, call)) = self.deadlines.front() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_front();
            if self.calls.remove(&call).is_some() {
                out.push(Delivery::Answered {
                    call,
                    result: Err("timed out waiting for the answer".into()),
                });
            }
        }
        // Answered calls leave their deadlines behind; keep the queue
        // from growing past the calls still waiting by much.
        if self.deadlines.len() > 2 * self.calls.len() + 1024 {
            let calls = &self.calls;
            self.deadlines.retain(|(_, c)| calls.contains_key(c));
        }
        out
    }

    /// `peer` connected again: it may speak the lane now.
    pub fn reconnected(&mut self, peer: &PeerId) {
        self.plain.remove(peer);
    }
}

/// One frame, on its own: call `id`, `body` (empty for "no answer").
pub fn frame(id: u64, body: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(frames::HEADER + body.len());
    frames::put(&mut buf, id, body);
    buf
}

/// Reads lane frames from `io` until it ends or one is refused, as
/// requests or (`answers`) as answers; how many were read. The fuzz
/// target's way in.
pub async fn read_frames<R: futures::AsyncRead + Unpin>(
    io: &mut R,
    answers: bool,
) -> std::io::Result<usize> {
    let budget = Budget::new(LANE_BUDGET);
    let mut n = 0;
    loop {
        let frame = if answers {
            frames::read::<_, TaskResponse>(io, &budget, true)
                .await?
                .map(|_| ())
        } else {
            frames::read::<_, TaskRequest>(io, &budget, false)
                .await?
                .map(|_| ())
        };
        if frame.is_none() {
            return Ok(n);
        }
        n += 1;
    }
}
