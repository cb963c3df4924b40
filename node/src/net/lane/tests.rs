//! The lane against in-memory pipes: its frames, the bounds on what a peer
//! may make this node read or hold, and which answers count.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use corral_protocol::codec;
use corral_protocol::ids::JobId;
use corral_protocol::messages::{TaskRequest, TaskResponse};
use futures::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::PeerId;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::timeout;
use tokio_util::compat::TokioAsyncReadCompatExt;

use super::frames::{self, HEADER, Outgoing};
use super::links::{self, Event, Inbound};
use super::*;

fn cancel(index: u32) -> TaskRequest {
    TaskRequest::Cancel {
        job: JobId::from_bytes([7; 16]),
        index,
    }
}

async fn read_request(
    bytes: Vec<u8>,
    budget: &Budget,
) -> io::Result<Option<(u64, Option<TaskRequest>)>> {
    frames::read::<_, TaskRequest>(&mut futures::io::Cursor::new(bytes), budget, false).await
}

#[tokio::test]
async fn frames_round_trip_and_an_answer_may_be_empty() {
    let budget = Budget::new(1 << 20);
    let mut bytes = frame(41, &codec::encode(&cancel(3)));
    bytes.extend(frame(42, &codec::encode(&TaskResponse::Ack)));
    bytes.extend(frame(43, &[]));
    let mut io = futures::io::Cursor::new(bytes);
    let first = frames::read::<_, TaskRequest>(&mut io, &budget, false).await;
    assert_eq!(first.expect("a request").expect("a frame").0, 41);
    let second = frames::read::<_, TaskResponse>(&mut io, &budget, true).await;
    assert_eq!(
        second.expect("an answer").expect("a frame"),
        (42, Some(TaskResponse::Ack))
    );
    let third = frames::read::<_, TaskResponse>(&mut io, &budget, true).await;
    assert_eq!(third.expect("no answer").expect("a frame"), (43, None));
    let end = frames::read::<_, TaskResponse>(&mut io, &budget, true).await;
    assert!(end.expect("a clean end").is_none());
    assert_eq!(budget.used(), 0, "every frame's charge is given back");
}

#[tokio::test]
async fn an_oversize_length_is_refused_before_its_body_is_read() {
    // Only the header is there: a reader that trusted the length would
    // wait for (or allocate) the body and fail differently.
    let mut header = frame(1, &[]);
    header[8..12].copy_from_slice(&((MAX_LANE_FRAME as u32) + 1).to_le_bytes());
    let err = read_request(header, &Budget::new(usize::MAX))
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("over the lane's bound"), "{err}");
}

#[tokio::test]
async fn garbage_truncation_and_empty_requests_are_errors() {
    let budget = Budget::new(1 << 20);
    let garbage = read_request(frame(1, &[0xff; 40]), &budget).await;
    assert_eq!(
        garbage.expect_err("garbage").kind(),
        io::ErrorKind::InvalidData
    );

    let cut_header = frame(1, &codec::encode(&cancel(1)))[..HEADER - 3].to_vec();
    let err = read_request(cut_header, &budget).await.expect_err("cut");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let full = frame(1, &codec::encode(&cancel(1)));
    let cut_body = full[..full.len() - 1].to_vec();
    let err = read_request(cut_body, &budget).await.expect_err("cut");
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);

    let empty = read_request(frame(1, &[]), &budget).await;
    assert_eq!(empty.expect_err("empty").kind(), io::ErrorKind::InvalidData);
    assert_eq!(budget.used(), 0);
}

#[tokio::test]
async fn frames_being_read_are_held_to_the_budget() {
    let budget = Budget::new(100);
    let err = read_request(frame(1, &[0; 200]), &budget)
        .await
        .expect_err("over budget");
    assert_eq!(err.kind(), io::ErrorKind::OutOfMemory);
    let ok = read_request(frame(2, &codec::encode(&cancel(2))), &budget).await;
    assert!(ok.expect("within budget").is_some());
}

/// A stream that records each write it is given.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl AsyncWrite for Writes {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn frames_queued_together_leave_in_one_write() {
    let (tx, rx) = mpsc::channel(8);
    let mut expected = Vec::new();
    for id in 1..=3 {
        let body = codec::encode(&cancel(id as u32));
        expected.extend(frame(id, &body));
        tx.try_send(Outgoing {
            id,
            body,
            _hold: None,
        })
        .expect("room");
    }
    drop(tx);
    let mut writes = Writes::default();
    frames::write_all(&mut writes, rx).await.expect("written");
    assert_eq!(writes.0, vec![expected]);
}

/// A lane from `peer` into this node over a pipe with `places` for its
/// requests; the other end of the pipe, and the node's events.
fn inbound_lane(
    places: usize,
) -> (
    tokio::io::DuplexStream,
    mpsc::Receiver<LaneEvent>,
    Arc<Semaphore>,
) {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (events, rx) = mpsc::channel(1024);
    let places = Arc::new(Semaphore::new(places));
    let lane = Inbound::new(
        PeerId::random(),
        places.clone(),
        Arc::new(()),
        events,
        Budget::new(1 << 20),
    );
    tokio::spawn(lane.run(ours.compat()));
    (theirs, rx, places)
}

async fn next_request(rx: &mut mpsc::Receiver<LaneEvent>) -> Option<(TaskRequest, Answer)> {
    match timeout(Duration::from_millis(300), rx.recv()).await {
        Ok(Some(LaneEvent(Event::Request {
            request, answer, ..
        }))) => Some((request, answer)),
        _ => None,
    }
}

#[tokio::test]
async fn a_peer_that_never_waits_for_answers_has_only_its_places_read() {
    let (theirs, mut rx, places) = inbound_lane(4);
    let mut theirs = theirs.compat();
    let mut flood = Vec::new();
    for id in 0..200 {
        flood.extend(frame(id, &codec::encode(&cancel(id as u32))));
    }
    theirs.write_all(&flood).await.expect("sent");
    let mut held = Vec::new();
    while let Some(request) = next_request(&mut rx).await {
        held.push(request);
    }
    assert_eq!(held.len(), 4, "read past its places");
    assert_eq!(places.available_permits(), 0);

    // An answer frees a place: one more request is read, and the answer
    // goes back under its call's id.
    let (request, answer) = held.remove(0);
    assert_eq!(request, cancel(0));
    answer.send(TaskResponse::Ack);
    let (next, _fifth) = next_request(&mut rx).await.expect("one more is read");
    assert_eq!(next, cancel(4));
    let budget = Budget::new(1 << 20);
    let greeting = frames::read::<_, TaskResponse>(&mut theirs, &budget, true).await;
    assert_eq!(
        greeting.expect("read").expect("a frame"),
        (0, None),
        "greeted first"
    );
    let back = frames::read::<_, TaskResponse>(&mut theirs, &budget, true).await;
    assert_eq!(
        back.expect("read").expect("a frame"),
        (0, Some(TaskResponse::Ack))
    );

    // A request dropped unanswered says so at once.
    drop(held.remove(0));
    let back = frames::read::<_, TaskResponse>(&mut theirs, &budget, true).await;
    assert_eq!(back.expect("read").expect("a frame"), (1, None));
}

#[tokio::test]
async fn a_bad_frame_ends_a_lane_from_a_peer() {
    let (theirs, mut rx, _) = inbound_lane(8);
    let mut theirs = theirs.compat();
    let mut bytes = frame(5, &codec::encode(&cancel(5)));
    bytes.extend(frame(6, &[0xee; 30]));
    bytes.extend(frame(7, &codec::encode(&cancel(7))));
    theirs.write_all(&bytes).await.expect("sent");
    let (first, answer) = next_request(&mut rx).await.expect("the good one");
    assert_eq!(first, cancel(5));
    assert!(
        next_request(&mut rx).await.is_none(),
        "nothing after garbage"
    );
    // The lane is gone: the answer goes nowhere and the stream is closed.
    answer.send(TaskResponse::Ack);
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(2), theirs.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the lane was not closed");
}

#[tokio::test]
async fn answers_on_a_lane_of_ours_come_back_by_id_in_any_order() {
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let (queue_tx, queue) = mpsc::channel(8);
    let (events, mut rx) = mpsc::channel(64);
    let peer = PeerId::random();
    let lane = tokio::spawn(async move {
        let budget = Budget::new(1 << 20);
        links::serve_outbound(ours.compat(), peer, 9, queue, &events, &budget).await
    });
    for id in [11, 12, 13] {
        let body = codec::encode(&cancel(id as u32));
        queue_tx
            .try_send(Outgoing {
                id,
                body,
                _hold: None,
            })
            .expect("room");
    }
    let mut theirs = theirs.compat();
    let budget = Budget::new(1 << 20);
    for id in [11, 12, 13] {
        let got = frames::read::<_, TaskRequest>(&mut theirs, &budget, false).await;
        assert_eq!(got.expect("read").expect("a frame").0, id);
    }
    let mut answers = frame(13, &codec::encode(&TaskResponse::Ack));
    answers.extend(frame(11, &[]));
    answers.extend(frame(12, &codec::encode(&TaskResponse::Accepted)));
    answers.extend(frame(14, &[0xab; 9]));
    theirs.write_all(&answers).await.expect("sent");
    let mut got = Vec::new();
    for _ in 0..3 {
        match rx.recv().await {
            Some(LaneEvent(Event::Response {
                id,
                lane_no,
                response,
                ..
            })) => {
                assert_eq!(lane_no, 9);
                got.push((id, response));
            }
            _ => panic!("an answer was expected"),
        }
    }
    assert_eq!(
        got,
        vec![
            (13, Some(TaskResponse::Ack)),
            (11, None),
            (12, Some(TaskResponse::Accepted))
        ]
    );
    let why = timeout(Duration::from_secs(2), lane)
        .await
        .expect("ended")
        .expect("ran");
    assert!(why.contains("lane frame"), "{why}");
}

/// Lanes whose streams never open (no swarm drives the control): calls
/// wait on their queues, and the tests feed the events.
fn lanes() -> Lanes {
    let behaviour = libp2p_stream::Behaviour::new();
    Lanes::new(behaviour.new_control()).expect("lanes").0
}

/// A call that must take the lane.
fn lane_call(lanes: &mut Lanes, peer: PeerId, request: TaskRequest) -> CallId {
    match lanes.call(peer, request) {
        Route::Lane(call) => call,
        Route::Stream(_) => panic!("the call did not take the lane"),
    }
}

fn answer(peer: PeerId, lane_no: u64, call: CallId) -> LaneEvent {
    LaneEvent(Event::Response {
        peer,
        lane_no,
        id: call.0,
        response: Some(TaskResponse::Ack),
    })
}

#[tokio::test]
async fn an_answer_counts_only_from_the_peer_called_on_its_lane_and_once() {
    let mut lanes = lanes();
    let (a, b) = (PeerId::random(), PeerId::random());
    let call = lane_call(&mut lanes, a, cancel(1));
    let lane_no = lanes.lanes[&a].lane_no;
    assert!(
        lanes.take(answer(b, lane_no, call)).is_empty(),
        "another peer's answer"
    );
    assert!(
        lanes.take(answer(a, lane_no + 1, call)).is_empty(),
        "another lane's answer"
    );
    let taken = lanes.take(answer(a, lane_no, call));
    assert!(matches!(
        taken.as_slice(),
        [Delivery::Answered { call: c, result: Ok(TaskResponse::Ack) }] if *c == call
    ));
    assert!(
        lanes.take(answer(a, lane_no, call)).is_empty(),
        "a replayed answer"
    );
    assert_eq!(lanes.calls.len(), 0);
}

#[tokio::test]
async fn a_lane_that_ends_fails_its_own_calls_and_no_others() {
    let mut lanes = lanes();
    let (a, b) = (PeerId::random(), PeerId::random());
    let on_a: Vec<CallId> = (0..3)
        .map(|i| lane_call(&mut lanes, a, cancel(i)))
        .collect();
    let on_b = lane_call(&mut lanes, b, cancel(9));
    let lane_no = lanes.lanes[&a].lane_no;
    let failed = lanes.take(LaneEvent(Event::Closed {
        peer: a,
        lane_no,
        why: "reset".into(),
    }));
    let ids: Vec<CallId> = failed
        .iter()
        .map(|d| match d {
            Delivery::Answered {
                call,
                result: Err(why),
            } if why.contains("reset") => *call,
            _ => panic!("a failed call was expected"),
        })
        .collect();
    assert_eq!(ids, on_a);
    assert_eq!(lanes.calls.len(), 1);
    assert!(lanes.calls.contains_key(&on_b));
    // The next call to `a` opens a new lane.
    lane_call(&mut lanes, a, cancel(4));
    assert_ne!(lanes.lanes[&a].lane_no, lane_no);
}

#[tokio::test]
async fn requests_to_a_peer_without_the_lane_are_sent_again_as_streams() {
    let mut lanes = lanes();
    let peer = PeerId::random();
    let call = lane_call(&mut lanes, peer, cancel(1));
    let lane_no = lanes.lanes[&peer].lane_no;
    let body = codec::encode(&cancel(1));
    let back = lanes.take(LaneEvent(Event::NotOpened {
        peer,
        lane_no,
        plain: true,
        error: "unsupported".into(),
        queued: vec![(call.0, body)],
    }));
    assert!(matches!(
        back.as_slice(),
        [Delivery::Resend { call: c, peer: p, request }] if *c == call && *p == peer && *request == cancel(1)
    ));
    assert_eq!(
        lanes.call(peer, cancel(2)),
        Route::Stream(cancel(2)),
        "marked as without"
    );
    lanes.reconnected(&peer);
    assert!(
        matches!(lanes.call(peer, cancel(3)), Route::Lane(_)),
        "tried again once reconnected"
    );
}

#[tokio::test]
async fn big_requests_take_a_stream_of_their_own_and_calls_time_out() {
    let mut lanes = lanes();
    let peer = PeerId::random();
    let big = TaskRequest::Output {
        job: JobId::from_bytes([1; 16]),
        index: 0,
        attempt: 1,
        stdout_at: 0,
        stdout: vec![b'x'; MAX_LANE_FRAME],
        stderr_at: 0,
        stderr: Vec::new(),
    };
    assert!(matches!(lanes.call(peer, big), Route::Stream(_)));
    let call = lane_call(&mut lanes, peer, cancel(1));
    assert!(lanes.expire(Instant::now()).is_empty());
    let expired = lanes.expire(Instant::now() + CALL_TIMEOUT + Duration::from_secs(1));
    assert!(matches!(
        expired.as_slice(),
        [Delivery::Answered { call: c, result: Err(_) }] if *c == call
    ));
    assert_eq!(lanes.calls.len(), 0);
}

#[tokio::test]
async fn the_fuzz_seeds_read_as_lane_frames() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/wire_frame");
    let requests = std::fs::read(seeds.join("lane_requests")).expect("seed");
    let answers = std::fs::read(seeds.join("lane_answers")).expect("seed");
    let read = read_frames(&mut futures::io::Cursor::new(requests), false).await;
    assert_eq!(read.expect("requests"), 2);
    let read = read_frames(&mut futures::io::Cursor::new(answers), true).await;
    assert_eq!(read.expect("answers"), 3);
}

#[test]
fn a_refused_protocol_is_told_from_other_errors() {
    use libp2p::core::upgrade::NegotiationError;
    assert!(links::refused(&io::Error::other(NegotiationError::Failed)));
    assert!(!links::refused(&io::Error::other("reset")));
    assert!(!links::refused(&io::ErrorKind::ConnectionReset.into()));
}
