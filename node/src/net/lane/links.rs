//! The tasks behind the lanes: one per lane, reading and writing its
//! stream, and one taking the lanes peers open to this node.

use std::collections::HashMap;
use std::sync::Arc;

use corral_protocol::codec;
use corral_protocol::messages::{TaskRequest, TaskResponse};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, StreamExt};
use libp2p::core::upgrade::NegotiationError;
use libp2p::{PeerId, Stream};
use libp2p_stream::{Control, IncomingStreams, OpenStreamError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::frames::{self, Outgoing};
use super::{GREETING, LANE_PROTOCOL, LANES_PER_PEER, LaneEvent, MAX_IN_FLIGHT};
use crate::net::wire::Budget;

/// What the lanes' tasks tell [`super::Lanes`].
pub(super) enum Event {
    /// A request from `peer` on a lane it opened.
    Request {
        peer: PeerId,
        request: TaskRequest,
        answer: Answer,
    },
    /// The answer to call `id` on this node's lane `lane_no` to `peer`
    /// (`None`: the peer dropped the request unanswered).
    Response {
        peer: PeerId,
        lane_no: u64,
        id: u64,
        response: Option<TaskResponse>,
    },
    /// This node's lane `lane_no` to `peer` could not be opened; what was
    /// queued on it comes back.
    NotOpened {
        peer: PeerId,
        lane_no: u64,
        /// The peer does not speak the lane's protocol.
        plain: bool,
        error: String,
        queued: Vec<(u64, Vec<u8>)>,
    },
    /// This node's lane `lane_no` to `peer` ended.
    Closed {
        peer: PeerId,
        lane_no: u64,
        why: String,
    },
}

/// Where the answer to a request that came on a lane goes. Dropped
/// unanswered, it tells the peer "no answer" at once.
pub struct Answer {
    id: u64,
    queue: mpsc::Sender<Outgoing>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Answer {
    /// Sends `response` back on the lane the request came on.
    pub fn send(mut self, response: TaskResponse) {
        self.queue_body(codec::encode(&response));
    }

    fn queue_body(&mut self, body: Vec<u8>) {
        if let Some(permit) = self.permit.take() {
            // Never full: every frame queued holds one of the peer's
            // places, and the queue has room for all of them.
            let _ = self.queue.try_send(Outgoing {
                id: self.id,
                body,
                _hold: Some(permit),
            });
        }
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.queue_body(Vec::new());
    }
}

/// Runs this node's lane `lane_no` to `peer`: opens it, writes the requests
/// `queue` brings, reads their answers, and says when it ends.
pub(super) async fn outbound(
    mut control: Control,
    peer: PeerId,
    lane_no: u64,
    mut queue: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<LaneEvent>,
    budget: Budget,
) {
    let opened = match control.open_stream(peer, LANE_PROTOCOL).await {
        Ok(mut stream) => {
            // The connection lives by its other protocols' needs, as before.
            stream.ignore_for_keep_alive();
            greeted(stream, &budget).await
        }
        Err(e) => Err((
            matches!(e, OpenStreamError::UnsupportedProtocol(_)),
            e.to_string(),
        )),
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err((plain, error)) => {
            queue.close();
            let mut queued = Vec::new();
            while let Ok(out) = queue.try_recv() {
                queued.push((out.id, out.body));
            }
            let _ = events
                .send(LaneEvent(Event::NotOpened {
                    peer,
                    lane_no,
                    plain,
                    error,
                    queued,
                }))
                .await;
            return;
        }
    };
    let why = serve_outbound(stream, peer, lane_no, queue, &events, &budget).await;
    let _ = events
        .send(LaneEvent(Event::Closed { peer, lane_no, why }))
        .await;
}

/// Waits for the greeting a lane opens with (an empty frame of id 0, from
/// the peer that took it) before any request is written: streams are
/// negotiated lazily, so a peer that refused the protocol shows it only
/// now, and what was queued can still go another way. `Err((plain, why))`,
/// `plain` for a peer that does not speak the lane.
async fn greeted(mut stream: Stream, budget: &Budget) -> Result<Stream, (bool, String)> {
    let greeting = frames::read::<_, TaskResponse>(&mut stream, budget, true);
    match tokio::time::timeout(GREETING, greeting).await {
        Ok(Ok(Some((0, None)))) => Ok(stream),
        Ok(Ok(_)) => Err((true, "the peer did not greet on its task lane".into())),
        Ok(Err(e)) if refused(&e) => {
            Err((true, format!("the peer does not speak {LANE_PROTOCOL}")))
        }
        Ok(Err(e)) => Err((false, e.to_string())),
        Err(_) => Err((
            true,
            format!("no greeting on the task lane within {GREETING:?}"),
        )),
    }
}

/// Whether `e` is the peer refusing the protocol.
pub(super) fn refused(e: &std::io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiationError>())
        .is_some_and(|n| matches!(n, NegotiationError::Failed))
}

/// Writes the requests `queue` brings on `stream` and reads their answers,
/// until either fails; returns why the lane ended.
pub(super) async fn serve_outbound<S>(
    stream: S,
    peer: PeerId,
    lane_no: u64,
    queue: mpsc::Receiver<Outgoing>,
    events: &mpsc::Sender<LaneEvent>,
    budget: &Budget,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, writer) = stream.split();
    let reading = async {
        loop {
            match frames::read::<_, TaskResponse>(&mut reader, budget, true).await {
                Ok(Some((id, response))) => {
                    let event = LaneEvent(Event::Response {
                        peer,
                        lane_no,
                        id,
                        response,
                    });
                    if events.send(event).await.is_err() {
                        return "the node stopped".to_string();
                    }
                }
                Ok(None) => return "the peer closed it".to_string(),
                Err(e) => return e.to_string(),
            }
        }
    };
    tokio::select! {
        written = frames::write_all(writer, queue) => match written {
            Ok(()) => "closed".to_string(),
            Err(e) => e.to_string(),
        },
        why = reading => why,
    }
}

/// A peer's lanes into this node: its places for requests not yet
/// answered (shared by its lanes), and its open lanes (one clone each).
struct PeerIn {
    places: Arc<Semaphore>,
    lanes: Arc<()>,
}

impl PeerIn {
    fn in_use(&self) -> bool {
        Arc::strong_count(&self.places) > 1 || Arc::strong_count(&self.lanes) > 1
    }
}

/// Takes the lanes peers open, at most [`LANES_PER_PEER`] of each at once
/// (a peer opens one; more are refused).
pub(super) async fn accept(
    mut incoming: IncomingStreams,
    events: mpsc::Sender<LaneEvent>,
    budget: Budget,
) {
    let mut peers: HashMap<PeerId, PeerIn> = HashMap::new();
    while let Some((peer, stream)) = incoming.next().await {
        peers.retain(|_, p| p.in_use());
        let entry = peers.entry(peer).or_insert_with(|| PeerIn {
            places: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            lanes: Arc::new(()),
        });
        if Arc::strong_count(&entry.lanes) > LANES_PER_PEER {
            tracing::warn!(%peer, "a peer opened more than {LANES_PER_PEER} task lanes at once: refused");
            continue;
        }
        let mut stream = stream;
        stream.ignore_for_keep_alive();
        let lane = Inbound::new(
            peer,
            entry.places.clone(),
            entry.lanes.clone(),
            events.clone(),
            budget.clone(),
        );
        tokio::spawn(lane.run(stream));
    }
}

/// A lane a peer opened to this node.
pub(super) struct Inbound {
    peer: PeerId,
    places: Arc<Semaphore>,
    _lane: Arc<()>,
    events: mpsc::Sender<LaneEvent>,
    budget: Budget,
}

impl Inbound {
    /// A lane from `peer`, its requests held to `places`, delivered on
    /// `events`.
    pub(super) fn new(
        peer: PeerId,
        places: Arc<Semaphore>,
        lane: Arc<()>,
        events: mpsc::Sender<LaneEvent>,
        budget: Budget,
    ) -> Self {
        Self {
            peer,
            places,
            _lane: lane,
            events,
            budget,
        }
    }

    /// Reads requests while the peer has places left, and writes their
    /// answers; a bad frame ends the lane.
    pub(super) async fn run<S>(self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut reader, writer) = stream.split();
        // One more than the places: the greeting goes first.
        let (queue_tx, queue) = mpsc::channel(MAX_IN_FLIGHT + 1);
        let _ = queue_tx.try_send(Outgoing {
            id: 0,
            body: Vec::new(),
            _hold: None,
        });
        let peer = self.peer;
        let reading = async move {
            loop {
                let Ok(place) = self.places.clone().acquire_owned().await else {
                    return Ok(());
                };
                let (id, request) =
                    match frames::read::<_, TaskRequest>(&mut reader, &self.budget, false).await {
                        Ok(Some((id, Some(request)))) => (id, request),
                        Ok(_) => return Ok(()),
                        Err(e) => return Err(e),
                    };
                let answer = Answer {
                    id,
                    queue: queue_tx.clone(),
                    permit: Some(place),
                };
                let event = LaneEvent(Event::Request {
                    peer,
                    request,
                    answer,
                });
                if self.events.send(event).await.is_err() {
                    return Ok(());
                }
            }
        };
        let writing = frames::write_all(writer, queue);
        tokio::pin!(writing);
        tokio::select! {
            written = &mut writing => {
                if let Err(e) = written {
                    tracing::debug!(%peer, "a task lane from a peer ended: {e}");
                }
            }
            read = reading => match read {
                // The peer is done sending: its answers still go out.
                Ok(()) => {
                    let _ = writing.await;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    tracing::warn!(%peer, "a task lane closed: {e}");
                }
                Err(e) => tracing::debug!(%peer, "a task lane from a peer ended: {e}"),
            },
        }
    }
}
