//! Frames: round trips, and the bounds on what a peer may make us read.

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::JobId;
use corral_protocol::messages::{BlobRequest, BlobResponse, TaskRequest, TaskResponse};
use futures::AsyncRead;
use libp2p::request_response::Codec;

use super::*;

#[tokio::test]
async fn frames_round_trip_and_oversized_ones_are_refused() {
    let mut codec = FrameCodec::<BlobRequest, BlobResponse>::default();
    let request = BlobRequest {
        hash: ContentHash::of(b"x"),
        offset: 3,
        len: 10,
    };
    let mut buf = futures::io::Cursor::new(Vec::new());
    codec
        .write_request(&BLOB_PROTOCOL, &mut buf, request.clone())
        .await
        .expect("write");
    let mut read = futures::io::Cursor::new(buf.into_inner());
    let back = codec
        .read_request(&BLOB_PROTOCOL, &mut read)
        .await
        .expect("read");
    assert_eq!(back, request);

    let mut huge = futures::io::Cursor::new(vec![0u8; 200]);
    let err = codec
        .read_request(&BLOB_PROTOCOL, &mut huge)
        .await
        .expect_err("a 200-byte blob request is out of bounds");
    assert!(err.to_string().contains("larger than"), "{err}");

    let mut garbage = futures::io::Cursor::new(vec![9u8; 10]);
    assert!(
        codec
            .read_request(&BLOB_PROTOCOL, &mut garbage)
            .await
            .is_err()
    );
}

fn cancel_frame_of(len: usize, tag: u8) -> Vec<u8> {
    let mut frame = codec::encode(&TaskRequest::Cancel {
        job: JobId::from_bytes([3; 16]),
        index: 1,
    });
    frame[2] = tag;
    frame.resize(len, 0);
    frame
}

#[tokio::test]
async fn a_small_request_stops_being_read_at_its_own_bound() {
    let mut codec = FrameCodec::<TaskRequest, TaskResponse>::default();
    let mut huge = futures::io::Cursor::new(cancel_frame_of(8 * 1024 * 1024, 1));
    let err = codec
        .read_request(&TASK_PROTOCOL, &mut huge)
        .await
        .expect_err("an 8 MiB cancel is out of bounds");
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(
        huge.position() <= 128 * 1024,
        "{} bytes of a cancel were read",
        huge.position()
    );
}

/// A stream that sends what it has, then stalls (a slow or hostile peer).
struct Stalls(futures::io::Cursor<Vec<u8>>);

impl AsyncRead for Stalls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let inner = &mut self.0;
        if inner.position() < inner.get_ref().len() as u64 {
            return std::pin::Pin::new(inner).poll_read(cx, buf);
        }
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn large_frames_are_read_within_the_shared_budget() {
    const MIB: usize = 1024 * 1024;
    // Without a budget, a result-sized frame is buffered whole however
    // many arrive at once.
    let mut unbounded = FrameCodec::<TaskRequest, TaskResponse>::default();
    let mut frame = futures::io::Cursor::new(cancel_frame_of(3 * MIB, 2));
    assert!(
        unbounded
            .read_request(&TASK_PROTOCOL, &mut frame)
            .await
            .is_err()
    );
    assert_eq!(frame.position(), 3 * MIB as u64);

    let budget = Budget::new(6 * MIB);
    let mut first = FrameCodec::<TaskRequest, TaskResponse>::with_budget(budget.clone());
    let mut second = first.clone();
    // One peer's frame stalls half read, holding its bytes.
    let mut stalled = Stalls(futures::io::Cursor::new(cancel_frame_of(3 * MIB, 2)));
    let protocol = TASK_PROTOCOL;
    let mut reading = Box::pin(first.read_request(&protocol, &mut stalled));
    if let std::task::Poll::Ready(r) = futures::poll!(&mut reading) {
        panic!("the stalled read ended: {:?}", r.err());
    }
    assert!(budget.used() >= 3 * MIB, "{} bytes charged", budget.used());
    // Another frame as large does not fit beside it: refused early.
    let mut frame = futures::io::Cursor::new(cancel_frame_of(3 * MIB, 2));
    let err = second
        .read_request(&TASK_PROTOCOL, &mut frame)
        .await
        .expect_err("over the budget");
    assert!(err.to_string().contains("memory budget"), "{err}");
    assert!(frame.position() <= 2 * MIB as u64, "{}", frame.position());
    // The stream gone, its bytes are given back; so are a refused frame's.
    drop(reading);
    assert_eq!(budget.used(), 0);
    let mut frame = futures::io::Cursor::new(cancel_frame_of(3 * MIB, 2));
    let err = second
        .read_request(&TASK_PROTOCOL, &mut frame)
        .await
        .expect_err("junk does not decode");
    assert!(!err.to_string().contains("memory budget"), "{err}");
    assert_eq!(budget.used(), 0);
}
