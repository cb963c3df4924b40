//! Fewer, fuller writes on a connection's socket. Yamux flushes after
//! every frame and Noise seals each flush on its own, so one task message
//! left as three or four TCP segments (the new stream with its protocol
//! header, the message, its end), each a `sendto` and, on the other
//! device, a wake-up. Here a flush that follows a write is put off until
//! the connection's task comes round again (it is woken for that at once):
//! the frames written in between leave in one write. A flush with nothing
//! written since the last one, a read, a full buffer or a close write the
//! bytes out, and at most [`MAX_PUT_OFF`] flushes in a row are put off.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::{AsyncRead, AsyncWrite};

/// Most bytes held back; a write that would pass it sends what is held
/// first.
const MAX_HELD: usize = 64 * 1024;

/// Most flushes put off in a row.
const MAX_PUT_OFF: u8 = 8;

/// A socket whose flushes are gathered (see the module's doc).
#[derive(Debug)]
pub(super) struct Coalesce<S> {
    inner: S,
    held: Vec<u8>,
    /// Bytes were written since the last flush.
    written: bool,
    /// Flushes put off in a row.
    put_off: u8,
}

impl<S> Coalesce<S> {
    /// Gathers the flushes of `inner`.
    pub(super) fn new(inner: S) -> Self {
        Self {
            inner,
            held: Vec::new(),
            written: false,
            put_off: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out the bytes held back.
    fn poll_send_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.held.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        // Whoever reads waits for an answer: what it wrote goes out first
        // (if the socket takes it now; the read goes on either way).
        if !self.held.is_empty() {
            if let Poll::Ready(Err(e)) = self.poll_send_held(cx) {
                return Poll::Ready(Err(e));
            }
            if self.held.is_empty()
                && let Poll::Ready(Err(e)) = Pin::new(&mut self.inner).poll_flush(cx)
            {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.held.len() + buf.len() > MAX_HELD {
            ready!(self.poll_send_held(cx))?;
            if buf.len() >= MAX_HELD {
                self.written = false;
                return Pin::new(&mut self.inner).poll_write(cx, buf);
            }
        }
        self.held.extend_from_slice(buf);
        self.written = true;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.written && !self.held.is_empty() && self.put_off < MAX_PUT_OFF {
            // More frames may follow in this turn of the task: flushed
            // on its next turn, which is asked for now.
            self.written = false;
            self.put_off += 1;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        self.written = false;
        self.put_off = 0;
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_held(cx))?;
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
#[path = "coalesce_tests.rs"]
mod tests;
