//! `lane` mode: attacks on the task lane (`/corral/task-lane/1`) of the
//! peer it dials, one after another, each reported on a `LANE ` line: a
//! frame over the lane's bound, a frame of garbage, a flood of requests
//! whose answers it never reads, more lanes at once than a peer may open,
//! and a frame cut off by a reset. Then an honest request, which must
//! still be answered, and `LANE done`.

use std::time::{Duration, Instant};

use corral_node::net::lane::{LANE_PROTOCOL, MAX_LANE_FRAME, frame};
use corral_protocol::codec;
use corral_protocol::ids::JobId;
use corral_protocol::messages::{TaskRequest, TaskResponse};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::{PeerId, Stream};
use libp2p_stream::Control;

use super::say;

/// Requests sent in the flood whose answers are never read.
const FLOOD: usize = 100_000;
/// Requests to a write in the flood.
const FLOOD_BATCH: usize = 1_000;
/// Lanes opened at once.
const LANES: usize = 10;

/// A cancel of a job no one runs: the victim only acknowledges it.
fn cancel(index: u32) -> Vec<u8> {
    codec::encode(&TaskRequest::Cancel {
        job: JobId::from_bytes([0x5a; 16]),
        index,
    })
}

async fn open(control: &mut Control, peer: PeerId, what: &str) -> Option<Stream> {
    match control.open_stream(peer, LANE_PROTOCOL).await {
        Ok(stream) => Some(stream),
        Err(e) => {
            say(&format!("LANE_ERROR {what}: cannot open a lane: {e}"));
            None
        }
    }
}

/// Whether the victim closes `stream` within `limit`.
async fn closed_within(stream: &mut Stream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `bytes` on a new lane and reports whether the victim cut it.
async fn cut(control: &mut Control, peer: PeerId, what: &str, bytes: Vec<u8>) {
    let Some(mut stream) = open(control, peer, what).await else {
        return;
    };
    let _ = stream.write_all(&bytes).await;
    let _ = stream.flush().await;
    let started = Instant::now();
    let cut = closed_within(&mut stream, Duration::from_secs(10)).await;
    say(&format!(
        "LANE {what} cut={cut} after {} ms",
        started.elapsed().as_millis()
    ));
}

/// Runs the attacks against `peer`, then the honest request.
pub(crate) async fn attack(mut control: Control, peer: PeerId) {
    let mut oversize = frame(1, &[]);
    oversize[8..12].copy_from_slice(&(MAX_LANE_FRAME as u32 + 1).to_le_bytes());
    oversize.extend(vec![0u8; 64 * 1024]);
    cut(&mut control, peer, "oversize", oversize).await;
    cut(&mut control, peer, "garbage", frame(2, &[0xee; 100])).await;

    // Requests whose answers are never read: the victim must stop reading
    // them (its writes of answers wait, then its places are full).
    let flood = open(&mut control, peer, "unread").await;
    if let Some(mut stream) = flood {
        let mut sent = 0;
        while sent < FLOOD {
            let batch: Vec<u8> = (sent..sent + FLOOD_BATCH)
                .flat_map(|i| frame(i as u64, &cancel(i as u32)))
                .collect();
            let write = async {
                stream.write_all(&batch).await?;
                stream.flush().await
            };
            match tokio::time::timeout(Duration::from_secs(5), write).await {
                Ok(Ok(())) => sent += FLOOD_BATCH,
                Ok(Err(e)) => {
                    say(&format!("LANE_ERROR unread: {e}"));
                    break;
                }
                Err(_) => break,
            }
        }
        say(&format!("LANE unread sent {sent} of {FLOOD}"));

        // More lanes than a peer may have at once, beside the flood's.
        let mut lanes = Vec::new();
        for _ in 0..LANES {
            if let Some(lane) = open(&mut control, peer, "lanes").await {
                lanes.push(lane);
            }
        }
        let mut refused = 0;
        for lane in &mut lanes {
            if closed_within(lane, Duration::from_millis(500)).await {
                refused += 1;
            }
        }
        say(&format!("LANE lanes refused {refused} of {LANES}"));
        drop(lanes);
        drop(stream);
    }

    // A frame cut off by a reset.
    if let Some(mut stream) = open(&mut control, peer, "reset").await {
        let whole = frame(3, &cancel(3));
        let _ = stream.write_all(&whole[..whole.len() / 2]).await;
        let _ = stream.flush().await;
        drop(stream);
        say("LANE reset sent");
    }

    // The victim still answers an honest request (its places are back
    // once the flood's lane is gone).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answered = match open(&mut control, peer, "honest").await {
        Some(mut stream) => honest(&mut stream).await,
        None => "no lane".to_string(),
    };
    say(&format!("LANE honest {answered}"));
    say("LANE done");
}

/// Sends one cancel and reads its answer.
async fn honest(stream: &mut Stream) -> String {
    let exchange = async {
        stream.write_all(&frame(77, &cancel(77))).await?;
        stream.flush().await?;
        // The greeting (id 0, empty) comes first.
        loop {
            let mut header = [0u8; 12];
            stream.read_exact(&mut header).await?;
            let id = u64::from_le_bytes(header[..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(header[8..].try_into().unwrap_or_default()) as usize;
            let mut body = vec![0u8; len.min(MAX_LANE_FRAME)];
            stream.read_exact(&mut body).await?;
            if id != 0 {
                return std::io::Result::Ok((id, codec::decode::<TaskResponse>(&body)));
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok((id, Ok(response)))) => format!("id={id} answer={response:?}"),
        Ok(Ok((id, Err(e)))) => format!("id={id} undecodable: {e}"),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "unanswered".to_string(),
    }
}
