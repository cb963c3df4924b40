//! The request-response codec of `/corral/task/1` and `/corral/blob/1`: one
//! frame of the protocol crate's codec per stream direction, read with a
//! hard size bound before anything is decoded (DESIGN §7) — the bound of
//! the frame's own variant, known from its first bytes — and, for inbound
//! task requests, within a memory [`Budget`] shared by every connection.

use std::io;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use corral_protocol::codec::{self, WireMessage};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use libp2p::request_response;

/// The task protocol: offers, cancels, results.
pub const TASK_PROTOCOL: StreamProtocol = StreamProtocol::new("/corral/task/1");
/// The blob protocol: modules, trees, inputs and outputs by hash.
pub const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/corral/blob/1");

/// Bytes of inbound task requests being read at once, over every
/// connection: two of the largest (a result with both streams full is
/// about 130 MiB) and room for small ones beside them. A peer flooding
/// large frames gets its streams refused past it, instead of the device's
/// memory filling (a worker re-sends a refused result later).
pub const MAX_INBOUND_BYTES: usize = 320 * 1024 * 1024;

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A bound on the bytes of frames being read at once, shared by the
/// clones of a codec (one per connection and stream).
#[derive(Clone, Debug)]
pub struct Budget {
    used: Arc<AtomicUsize>,
    cap: usize,
}

impl Budget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            cap,
        }
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.cap)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// What one frame being read holds of a budget; given back when dropped
/// (the frame decoded, refused, or its stream gone).
pub(super) struct Charge<'a> {
    budget: Option<&'a Budget>,
    bytes: usize,
}

impl<'a> Charge<'a> {
    /// Nothing charged yet to `budget` (or to none).
    pub(super) fn new(budget: Option<&'a Budget>) -> Self {
        Self { budget, bytes: 0 }
    }

    /// Makes the charge cover `bytes` in all.
    pub(super) fn cover(&mut self, bytes: usize) -> io::Result<()> {
        let Some(budget) = self.budget else {
            return Ok(());
        };
        let more = bytes.saturating_sub(self.bytes);
        if more > 0 {
            if !budget.take(more) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "inbound requests are over their memory budget of {} bytes",
                        budget.cap
                    ),
                ));
            }
            self.bytes += more;
        }
        Ok(())
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            budget.give(self.bytes);
        }
    }
}

/// A codec for one request type and one response type; inbound requests
/// are read within its [`Budget`], if it has one.
pub struct FrameCodec<Req, Resp> {
    budget: Option<Budget>,
    _kinds: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FrameCodec<Req, Resp> {
    /// A codec reading inbound requests within `budget`.
    pub fn with_budget(budget: Budget) -> Self {
        Self {
            budget: Some(budget),
            _kinds: PhantomData,
        }
    }
}

impl<Req, Resp> Default for FrameCodec<Req, Resp> {
    fn default() -> Self {
        Self {
            budget: None,
            _kinds: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for FrameCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self {
            budget: self.budget.clone(),
            _kinds: PhantomData,
        }
    }
}

fn too_large(limit: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("frame larger than {limit} bytes"),
    )
}

/// Reads one frame: its header and first body byte, then the rest up to
/// that variant's bound, its buffer's every byte charged to `budget`
/// before it is allocated.
async fn read_frame<T, M>(io: &mut T, budget: Option<&Budget>) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: WireMessage,
{
    let mut charge = Charge::new(budget);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    let mut limit = M::MAX_BYTES;
    loop {
        // The header and the variant first, so that the rest is read up
        // to the variant's bound.
        let want = if bytes.len() < 3 {
            3 - bytes.len()
        } else {
            READ_CHUNK
        };
        let n = io.read(&mut chunk[..want]).await?;
        if n == 0 {
            break;
        }
        let len = bytes.len() + n;
        if len > limit {
            return Err(too_large(limit));
        }
        if len > bytes.capacity() {
            // Grown by doubling as a Vec does, but never past the bound,
            // and charged before it is allocated.
            let capacity = len.max(bytes.capacity() * 2).max(64).min(limit);
            charge.cover(capacity)?;
            bytes.reserve_exact(capacity - bytes.len());
        }
        bytes.extend_from_slice(&chunk[..n]);
        if len == 3 {
            limit = M::max_frame_bytes(&bytes[2..]).min(M::MAX_BYTES);
        }
    }
    codec::decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T>(io: &mut T, frame: Vec<u8>) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    io.write_all(&frame).await?;
    io.close().await
}

impl<Req, Resp> request_response::Codec for FrameCodec<Req, Resp>
where
    Req: WireMessage + Send + 'static,
    Resp: WireMessage + Send + 'static,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.budget.as_ref()).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, None).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, codec::encode(&req)).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, codec::encode(&resp)).await
    }
}

#[cfg(test)]
mod tests;
