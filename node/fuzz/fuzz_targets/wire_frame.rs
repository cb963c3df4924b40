//! The request-response framing of `/corral/task/1` and `/corral/blob/1`
//! (node/src/net/wire.rs) reading arbitrary stream bytes as each of the four
//! message kinds, and the task lane's frames (node/src/net/lane) read as
//! requests and as answers: it must refuse, never panic.
#![no_main]

use corral_node::net::lane;
use corral_node::net::wire::{BLOB_PROTOCOL, FrameCodec, TASK_PROTOCOL};
use corral_protocol::messages::{BlobRequest, BlobResponse, TaskRequest, TaskResponse};
use futures::executor::block_on;
use futures::io::Cursor;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;

fuzz_target!(|data: &[u8]| {
    block_on(async {
        let mut task = FrameCodec::<TaskRequest, TaskResponse>::default();
        let _ = task
            .read_request(&TASK_PROTOCOL, &mut Cursor::new(data))
            .await;
        let _ = task
            .read_response(&TASK_PROTOCOL, &mut Cursor::new(data))
            .await;
        let mut blob = FrameCodec::<BlobRequest, BlobResponse>::default();
        let _ = blob
            .read_request(&BLOB_PROTOCOL, &mut Cursor::new(data))
            .await;
        let _ = blob
            .read_response(&BLOB_PROTOCOL, &mut Cursor::new(data))
            .await;
        let _ = lane::read_frames(&mut Cursor::new(data), false).await;
        let _ = lane::read_frames(&mut Cursor::new(data), true).await;
    });
});
