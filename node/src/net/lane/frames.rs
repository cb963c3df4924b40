//! A lane's frames: a 12-byte header — the call's id (u64) and the body's
//! length (u32), little-endian — then the body, one message of the
//! protocol crate's codec. A body of length 0 answers a call with "no
//! answer" (the request was dropped unanswered). The length is checked
//! against [`MAX_LANE_FRAME`] and charged to a [`Budget`] before anything
//! is allocated; the body is decoded with its variant's own bound.

use std::io;

use corral_protocol::codec::{self, WireMessage};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::MAX_LANE_FRAME;
use crate::net::wire::{Budget, Charge};

/// Bytes of a frame's header.
pub(super) const HEADER: usize = 12;

/// Bytes gathered into one write: frames queued while the last write was
/// under way leave together.
const BATCH_BYTES: usize = 64 * 1024;

/// A frame waiting to be written, and what it holds until it is.
pub(super) struct Outgoing {
    pub(super) id: u64,
    /// The encoded message; empty for "no answer".
    pub(super) body: Vec<u8>,
    /// An inbound lane's answer holds its request's place until written.
    pub(super) _hold: Option<OwnedSemaphorePermit>,
}

/// Appends one frame to `buf`.
pub(super) fn put(buf: &mut Vec<u8>, id: u64, body: &[u8]) {
    // A body is at most MAX_LANE_FRAME bytes: its length fits a u32.
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(body);
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the next frame: `None` when the stream ends cleanly before a
/// header, `Some((id, None))` for "no answer" (if `empty_ok`: answers only).
pub(super) async fn read<R, M>(
    io: &mut R,
    budget: &Budget,
    empty_ok: bool,
) -> io::Result<Option<(u64, Option<M>)>>
where
    R: AsyncRead + Unpin,
    M: WireMessage,
{
    let mut header = [0u8; HEADER];
    let mut got = 0;
    while got < HEADER {
        let n = io.read(&mut header[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let (id, len) = header.split_at(8);
    let id = u64::from_le_bytes(id.try_into().unwrap_or_default());
    let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
    if len > MAX_LANE_FRAME {
        return Err(invalid(format!(
            "a lane frame of {len} bytes, over the lane's bound of {MAX_LANE_FRAME}"
        )));
    }
    if len == 0 {
        return if empty_ok {
            Ok(Some((id, None)))
        } else {
            Err(invalid(
                "an empty lane frame where a request belongs".into(),
            ))
        };
    }
    let mut charge = Charge::new(Some(budget));
    charge.cover(len)?;
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    let message = codec::decode(&body).map_err(|e| invalid(format!("a lane frame: {e}")))?;
    Ok(Some((id, Some(message))))
}

/// Writes what `queue` brings until it closes (then closes `io`): each
/// frame with those queued behind it, up to [`BATCH_BYTES`], in one write
/// and one flush.
pub(super) async fn write_all<W>(mut io: W, mut queue: mpsc::Receiver<Outgoing>) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(4096);
    let mut written = Vec::new();
    while let Some(first) = queue.recv().await {
        buf.clear();
        put(&mut buf, first.id, &first.body);
        written.push(first);
        while buf.len() < BATCH_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            put(&mut buf, next.id, &next.body);
            written.push(next);
        }
        io.write_all(&buf).await?;
        io.flush().await?;
        // Their places are free once the bytes are on their way.
        written.clear();
    }
    io.close().await
}
